//! Per-worker counters: one slot per event, one per drop reason.
//!
//! A worker owns its counters and increments plain integers; nothing on the
//! packet path formats, allocates or logs. Every drop and every hand-off to
//! the host has its own named slot, so an operator can tell why a packet did
//! not go where they expected.

/// Defines the [`Counter`] enum with its snake_case names, in one place.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Everything a worker counts.
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        #[repr(u8)]
        pub enum Counter {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Counter {
            /// All counters, in index order.
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            /// Number of counters.
            pub const COUNT: usize = Counter::ALL.len();

            /// The counter's stable name (used in JSON and metrics).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    /// Frames received.
    RxPackets = "rx_packets",
    /// Bytes received.
    RxBytes = "rx_bytes",
    /// Frames transmitted (forwarded and replies).
    TxPackets = "tx_packets",
    /// Bytes transmitted.
    TxBytes = "tx_bytes",
    /// Frames GRE-encapsulated to a target.
    Forwarded = "forwarded",
    /// Forwarded frames whose flow was found in the flow table.
    FlowTableHits = "flow_table_hits",
    /// Forwarded frames whose target came from the Maglev table (new or unknown flows).
    MaglevLookups = "maglev_lookups",
    /// Forwarded frames whose target came from the snapshot's CRT (a
    /// connection a target reported, not in the flow table).
    CrtHits = "crt_hits",
    /// Flows whose target slot is down, routed again (CRT, then Maglev).
    FlowsRerouted = "flows_rerouted",
    /// TCP SYNs (no ACK) that found a remembered flow or CRT connection
    /// whose target takes no new connections for the service (a reused
    /// client port), routed as new connections.
    SynRerouted = "syn_rerouted",
    /// New-flow events lost because the control plane did not empty the ring.
    FlowEventsLost = "flow_events_lost",
    /// Snapshot generations this worker switched to.
    SnapshotSwitches = "snapshot_switches",
    /// Flow tables forgotten at a switch because target slots were reassigned.
    FlowTableResets = "flow_table_resets",
    /// Flows added to the flow table.
    FlowsCreated = "flows_created",
    /// Live flows evicted from a full flow-table bucket (the table is lossy by design).
    FlowsEvicted = "flows_evicted",
    /// ARP replies sent for owned VIPAs.
    ArpReplies = "arp_replies",
    /// Neighbour advertisements sent for owned IPv6 VIPAs.
    NeighborAdverts = "neighbor_adverts",
    /// ICMP / ICMPv6 echo replies sent from a VIPA.
    EchoReplies = "echo_replies",
    /// ICMP / ICMPv6 errors about a VIPA flow forwarded to the flow's target.
    IcmpErrorsForwarded = "icmp_errors_forwarded",
    /// ICMP fragmentation-needed sent to a client (inner IPv4 with DF too big).
    IcmpFragNeededSent = "icmp_frag_needed_sent",
    /// ICMPv6 packet-too-big sent to a client.
    Icmpv6TooBigSent = "icmpv6_too_big_sent",
    /// Next-hop MACs learned or confirmed from ARP / neighbour advertisements.
    NeighborLearned = "neighbor_learned",
    /// ARP requests / neighbour solicitations sent for next hops. A request
    /// for an unknown next hop is built in the buffer of the packet that
    /// needed it: that packet is lost (the sender retransmits).
    NeighborRequests = "neighbor_requests",
    /// Gratuitous ARP announcements sent for owned VIPAs.
    GratuitousArpSent = "gratuitous_arp_sent",
    /// Unsolicited neighbour advertisements sent for owned IPv6 VIPAs.
    UnsolicitedNaSent = "unsolicited_na_sent",
    /// Ports seen losing link.
    LinkDown = "link_down",
    /// Ports seen regaining link.
    LinkUp = "link_up",
    /// Handed to the host: IP traffic to an address that is not a VIPA.
    HostNotVipa = "host_not_vipa",
    /// Handed to the host: ARP not asking for an owned VIPA.
    HostArp = "host_arp",
    /// Handed to the host: neighbour discovery not about an owned VIPA.
    HostNdp = "host_ndp",
    /// Handed to the host: neither IPv4, IPv6 nor ARP.
    HostOtherEthertype = "host_other_ethertype",
    /// Dropped: frame too short or a header inconsistent with its length.
    DropMalformed = "drop_malformed",
    /// Dropped: a frame in more than one buffer segment (a chained DPDK
    /// mbuf: receive scatter is off, so only a driver's surprise).
    DropMultiSegment = "drop_multi_segment",
    /// Dropped: a second 802.1Q tag (QinQ) is not handled.
    DropVlanStacked = "drop_vlan_stacked",
    /// Dropped: IPv4 header with options (documented limit).
    DropIpv4Options = "drop_ipv4_options",
    /// Dropped: IPv4 fragment (documented limit).
    DropIpv4Fragment = "drop_ipv4_fragment",
    /// Dropped: IPv6 fragment header (documented limit).
    DropIpv6Fragment = "drop_ipv6_fragment",
    /// Dropped: IPv6 extension header before the transport header (documented limit).
    DropIpv6ExtHeader = "drop_ipv6_ext_header",
    /// Dropped: VIPA traffic to a protocol/port that is not a service.
    DropNotAService = "drop_not_a_service",
    /// Dropped: VIPA traffic with a protocol vipa does not serve (not TCP, UDP or ICMP).
    DropVipaProtocol = "drop_vipa_protocol",
    /// Dropped: the service has no target with weight (Maglev table empty).
    DropNoTarget = "drop_no_target",
    /// Dropped: ICMP to a VIPA that is neither echo nor an error about a VIPA flow.
    DropIcmpUnhandled = "drop_icmp_unhandled",
    /// Dropped: ICMP with a bad checksum (only checked on messages the node answers).
    DropIcmpChecksum = "drop_icmp_checksum",
    /// Dropped: too big for the egress MTU after encapsulation and DF not set.
    DropMtuNoDf = "drop_mtu_no_df",
    /// Dropped: not a VIPA and the configuration says `not_vipa = "drop"`.
    DropNotVipa = "drop_not_vipa",
    /// Dropped: no headroom/tailroom to build the outgoing frame.
    DropNoBufferRoom = "drop_no_buffer_room",
    /// Dropped: the next hop's MAC is unknown and a request is already out.
    DropNeighborUnresolved = "drop_neighbor_unresolved",
    /// Dropped: the transmit ring was full.
    DropTxFull = "drop_tx_full",
    /// Dropped: the host did not take the frame.
    DropHostFull = "drop_host_full",
}

/// Per-target figures, indexed like the forwarding tables' targets.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TargetCounters {
    /// Frames sent to the target.
    pub packets: u64,
    /// Bytes of inner packets sent to the target.
    pub bytes: u64,
    /// Flows created for the target.
    pub flows: u64,
}

/// A worker's counters. Plain integers: only the owning worker writes them.
#[derive(Clone, Debug)]
pub struct Counters {
    values: [u64; Counter::COUNT],
    /// Per-target figures.
    pub targets: Vec<TargetCounters>,
    /// Per (service slot, target slot) `[packets, bytes]`, index
    /// `service * service_targets + target`: dense and sized once, so that
    /// counting is one bounds-checked add (see
    /// [`crate::tables::ServiceCounting`]; empty when nothing is counted
    /// per service).
    pub service_targets: Vec<[u64; 2]>,
    /// Target slots per service slot in [`Self::service_targets`].
    service_stride: usize,
}

impl Counters {
    /// Zeroed counters for `n_targets` targets, without per-service figures.
    pub fn new(n_targets: usize) -> Self {
        Self::with_services(n_targets, crate::tables::ServiceCounting::default())
    }

    /// Zeroed counters for `n_targets` targets and the (service, target)
    /// pairs of `services`.
    pub fn with_services(n_targets: usize, services: crate::tables::ServiceCounting) -> Self {
        Counters {
            values: [0; Counter::COUNT],
            targets: vec![TargetCounters::default(); n_targets],
            service_targets: vec![[0; 2]; services.pairs()],
            service_stride: services.target_slots,
        }
    }

    /// Counts a packet of `bytes` sent to `target` for service slot
    /// `service`; nothing for a pair outside the array (no panic, no
    /// allocation), such as a service not counted
    /// ([`crate::tables::UNCOUNTED_SERVICE`]).
    #[inline(always)]
    pub fn add_service_target(&mut self, service: u32, target: u32, bytes: u64) {
        if target as usize >= self.service_stride {
            return;
        }
        // In u64: a service slot (u32) times at most MAX_PAIRS target
        // slots cannot overflow it, and an index past the array (such as
        // UNCOUNTED_SERVICE's) is simply not counted.
        let i = u64::from(service) * self.service_stride as u64 + u64::from(target);
        if let Some(c) = usize::try_from(i)
            .ok()
            .and_then(|i| self.service_targets.get_mut(i))
        {
            c[0] += 1;
            c[1] += bytes;
        }
    }

    /// Packets and bytes sent to `target` for service slot `service`.
    pub fn service_target(&self, service: u32, target: u32) -> [u64; 2] {
        if target as usize >= self.service_stride {
            return [0; 2];
        }
        let i = (service as usize)
            .saturating_mul(self.service_stride)
            .saturating_add(target as usize);
        self.service_targets.get(i).copied().unwrap_or_default()
    }

    /// Adds one.
    #[inline(always)]
    pub fn inc(&mut self, c: Counter) {
        self.values[c as usize] += 1;
    }

    /// Adds `n`.
    #[inline(always)]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.values[c as usize] += n;
    }

    /// Every counter, in index order.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    /// Non-zero counters with their names, in index order.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL
            .iter()
            .map(|c| (c.name(), self.get(*c)))
            .filter(|(_, v)| *v != 0)
    }

    /// Adds another worker's counters into these (for totals).
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.values.iter_mut().zip(other.values.iter()) {
            *a += b;
        }
        if self.targets.len() < other.targets.len() {
            self.targets
                .resize(other.targets.len(), TargetCounters::default());
        }
        for (a, b) in self.targets.iter_mut().zip(other.targets.iter()) {
            a.packets += b.packets;
            a.bytes += b.bytes;
            a.flows += b.flows;
        }
        if self.service_targets.len() < other.service_targets.len() {
            self.service_targets
                .resize(other.service_targets.len(), [0; 2]);
            self.service_stride = other.service_stride;
        }
        for (a, b) in self
            .service_targets
            .iter_mut()
            .zip(other.service_targets.iter())
        {
            a[0] += b[0];
            a[1] += b[1];
        }
    }

    /// Sum of every drop counter.
    pub fn drops(&self) -> u64 {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("drop_"))
            .map(|c| self.get(*c))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch == '_' || ch.is_ascii_digit())));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::COUNT);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn service_target_pairs_are_dense_and_bounded() {
        let mut c = Counters::with_services(
            3,
            crate::tables::ServiceCounting {
                service_slots: 2,
                target_slots: 3,
            },
        );
        c.add_service_target(1, 2, 100);
        c.add_service_target(1, 2, 50);
        c.add_service_target(0, 1, 10);
        // Outside the array: ignored, never aliased onto another pair.
        c.add_service_target(0, 3, 1);
        c.add_service_target(2, 0, 1);
        c.add_service_target(u32::MAX, u32::MAX, 1);
        assert_eq!(c.service_target(1, 2), [2, 150]);
        assert_eq!(c.service_target(0, 1), [1, 10]);
        assert_eq!(c.service_targets.iter().map(|p| p[0]).sum::<u64>(), 3);
        let mut total = Counters::new(0);
        total.merge(&c);
        total.merge(&c);
        assert_eq!(total.service_target(1, 2), [4, 300]);
    }
}
