//! The packet path of DESIGN.md §4, one burst at a time.
//!
//! A burst goes through two passes, as in VPP's load-balancer node:
//!
//! 1. **classify** every frame: Ethernet (one 802.1Q tag) → ARP / IPv4 /
//!    IPv6; answer what the node answers itself (ARP, neighbour solicitation,
//!    echo) in place; hand non-VIPA traffic to the host; drop what is not
//!    served; and for a VIPA flow compute its flow-table signature and
//!    *prefetch* its bucket;
//! 2. **forward** the flows: by then the buckets are in cache; look the flow
//!    up (flow table, then the snapshot's CRT, then Maglev), check the MTU
//!    and encapsulate in GRE.
//!
//! The common case has a fast path in both passes (module `fast`): an untagged
//! IPv4 TCP/UDP packet without options to a VIPA service is classified
//! from fixed offsets after one bounds check, and when its flow is in the
//! table and the target's prepared entry ([`crate::tables::FastV4`])
//! applies, it is encapsulated from that entry. Everything else, and every
//! case the fast path declines, goes the general way; the output and the
//! counters are the same either way (`tests/pipeline.rs` checks it).
//!
//! Every frame ends in exactly one of three places — transmit, host, drop —
//! and every host hand-off and drop increments a named [`Counter`]. Nothing
//! here allocates, locks, formats or logs.

mod encap;
mod fast;
mod reply;

pub(crate) use fast::fast_header_v4;

use std::sync::Arc;

use arrayvec::ArrayVec;

use vipa_proto::flowkey::FlowKey;
use vipa_proto::wire::{ethernet, icmpv4, icmpv6, ipv4, ipv6, EtherType};

use crate::buf::PacketBuffer;
use crate::counters::{Counter, Counters};
use crate::flow::{FlowTable, Inserted};
use crate::neighbor::{Lookup, Neighbors};
use crate::port::{Burst, MAX_BURST};
use crate::snapshot::FlowEventSink;
use crate::tables::NextHop;
use crate::tables::{Tables, Vipa};

/// Where the pipeline puts frames: the worker sends them on.
pub struct Outputs<B> {
    /// Frames to transmit on the queue they came from.
    pub tx: Burst<B>,
    /// Frames for the host's network stack.
    pub host: Burst<B>,
    /// Frames to free.
    pub drop: Burst<B>,
}

impl<B> Outputs<B> {
    /// Empty outputs.
    pub fn new() -> Self {
        Outputs {
            tx: Burst::new(),
            host: Burst::new(),
            drop: Burst::new(),
        }
    }
}

impl<B> Default for Outputs<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// The fate of one frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Transmit (encapsulated, or a reply built in place).
    Tx,
    /// Hand to the host; the counter says why.
    Host(Counter),
    /// Drop; the counter says why.
    Drop(Counter),
}

/// What pass 1 learned about a VIPA flow packet, for pass 2.
///
/// Kept small (24 bytes): a burst's worth is written by pass 1 and read by
/// pass 2. The flow's [`FlowKey`] is not kept: only a flow-table miss needs
/// it (for the CRT and new-flow events), and [`flow_key`] reads it again
/// from the packet then.
#[derive(Clone, Copy, Debug)]
struct FlowMeta {
    /// The flow's signature in this worker's flow table
    /// ([`FlowTable::signature_v4`]), not the cluster's flow hash: that one
    /// is computed from the packet again where it is needed
    /// ([`flow_hash`]).
    sig: u64,
    vipa: u16,
    /// The service's slot ([`Vipa::service_slot`]): what its packets and
    /// bytes are counted by, per target.
    slot: u32,
    /// Ethernet header length (14, or 18 with an 802.1Q tag).
    l2_len: u8,
    /// The inner packet is IPv6.
    v6: bool,
    /// The packet is an ICMP error about the flow: the flow is the one its
    /// quote names; it creates no flow-table entry on a miss (an error about
    /// a flow is not a flow) and is counted as such once forwarded.
    icmp_error: bool,
    /// A TCP SYN without ACK: the first packet of a connection. One that
    /// finds a remembered flow whose target takes no new connections for
    /// the service (a client port reused) is routed as new (see
    /// [`Pipeline::reuse_refused`]).
    syn: bool,
    /// What encapsulation needs from the inner IP header, read while pass 1
    /// had it at hand (pass 2 does not parse it again): an
    /// [`encap::Inner`]'s fields, kept here one by one so that the record
    /// stays 24 bytes ([`FlowMeta::inner`]).
    inner_len: u32,
    /// See `inner_len`.
    dscp_ecn: u8,
    /// See `inner_len`.
    df: bool,
}

impl FlowMeta {
    /// What encapsulation needs from the inner IP header.
    #[inline(always)]
    fn inner(&self) -> encap::Inner {
        encap::Inner {
            len: self.inner_len,
            dscp_ecn: self.dscp_ecn,
            df: self.df,
        }
    }
}

const _: () = assert!(core::mem::size_of::<FlowMeta>() <= 24);

#[derive(Clone, Copy, Debug)]
enum Pass1 {
    Done(Verdict),
    /// A packet of the fast path's kind ([`fast::classify_v4`]: untagged
    /// IPv4, no options, TCP or UDP, not an ICMP error): pass 2 may take
    /// [`Pipeline::forward_fast`] without asking again.
    Fast(FlowMeta),
    Flow(FlowMeta),
}

/// A worker's pipeline state.
pub struct Pipeline {
    /// The worker's flow table.
    pub flows: FlowTable,
    /// The worker's counters.
    pub counters: Counters,
    /// The tables in use.
    pub tables: Arc<Tables>,
    /// The next-hop table, shared by every worker.
    pub neighbors: Arc<Neighbors>,
    /// Next hops whose refresh this worker claimed during the last burst:
    /// the worker sends the requests in buffers of their own.
    pub refresh: ArrayVec<usize, 16>,
    /// Where new flows are reported to the control plane (when following snapshots).
    pub flow_events: Option<FlowEventSink>,
    /// IPv4 identification for outer headers without DF.
    ident: u16,
    /// Per port index: its device computes outer IPv4 header checksums
    /// ([`Pipeline::set_ipv4_checksum_offload`]).
    ipv4_cksum_offload: Vec<bool>,
}

impl Pipeline {
    /// A pipeline with an empty flow table sized by `tables` and a
    /// next-hop table of its own (one worker).
    pub fn new(tables: Arc<Tables>) -> Self {
        let neighbors = Arc::new(tables.new_neighbors());
        Self::with_neighbors(tables, neighbors)
    }

    /// A pipeline sharing `neighbors` with the other workers.
    pub fn with_neighbors(tables: Arc<Tables>, neighbors: Arc<Neighbors>) -> Self {
        Pipeline {
            flows: FlowTable::new(tables.flow_table_capacity, tables.flow_idle_timeout),
            counters: Counters::with_services(tables.targets.len(), tables.service_counting),
            tables,
            neighbors,
            refresh: ArrayVec::new(),
            flow_events: None,
            ident: 0,
            ipv4_cksum_offload: Vec::new(),
        }
    }

    /// Says whether the device of port `port` (an index into the tables'
    /// ports) computes IPv4 header checksums on transmission: frames
    /// leaving by it then ask the device
    /// ([`PacketBuffer::request_ipv4_checksum`]) instead of carrying a
    /// software sum. Every port starts without (what every backend but
    /// `dpdk` is); the worker sets it from its queues
    /// ([`crate::port::PortQueue::ipv4_checksum_offload`]).
    pub fn set_ipv4_checksum_offload(&mut self, port: usize, on: bool) {
        if self.ipv4_cksum_offload.len() <= port {
            self.ipv4_cksum_offload.resize(port + 1, false);
        }
        self.ipv4_cksum_offload[port] = on;
    }

    /// Whether frames leaving by `port` may leave their outer IPv4 checksum
    /// to the device.
    #[inline(always)]
    fn ipv4_checksum_offload(&self, port: usize) -> bool {
        self.ipv4_cksum_offload.get(port).copied().unwrap_or(false)
    }

    /// Runs a burst received on `port` through the pipeline; `rx` is left
    /// empty, every frame is in one of `out`'s bursts.
    #[inline]
    pub fn process_burst<B: PacketBuffer>(
        &mut self,
        port: usize,
        rx: &mut Burst<B>,
        now: u32,
        out: &mut Outputs<B>,
    ) {
        // Filled by pass 1, one entry per frame (not initialised beyond).
        let mut pass1: ArrayVec<Pass1, MAX_BURST> = ArrayVec::new();
        self.counters.add(Counter::RxPackets, rx.len() as u64);
        let mut rx_bytes = 0;
        for buf in rx.iter_mut() {
            rx_bytes += buf.len() as u64;
            // Each branch pushes its own result: a record shared by both
            // would go through a temporary on the stack, written piecewise
            // and read back whole at once, which stalls store forwarding.
            // rx holds at most MAX_BURST frames.
            if let Some(m) = fast::classify_v4(&self.tables, &self.flows, buf.data()) {
                self.flows.prefetch(m.sig);
                let _ = pass1.try_push(Pass1::Fast(m));
            } else {
                let p = self.classify(port, buf, now);
                if let Pass1::Flow(m) = &p {
                    self.flows.prefetch(m.sig);
                }
                let _ = pass1.try_push(p);
            }
        }
        self.counters.add(Counter::RxBytes, rx_bytes);
        // The fast path's packets sent: flow-table hits and forwarded,
        // counted once per burst.
        let mut fast_tx = 0u64;
        // Pass 1's results are read in place (not moved out one by one: a
        // moved copy is written and read back piecewise, which stalls store
        // forwarding on the flow hash).
        for (mut buf, p) in rx.drain(..).zip(pass1.iter()) {
            let verdict = match p {
                Pass1::Done(v) => *v,
                Pass1::Flow(m) => self.forward(port, &mut buf, m, now),
                Pass1::Fast(m) => {
                    let found = self.flows.lookup(m.sig, now);
                    let fast = match found {
                        Some(t) if !m.syn => self.forward_fast(port, &mut buf, m, t, now),
                        _ => None,
                    };
                    match fast {
                        Some(Verdict::Tx) => {
                            fast_tx += 1;
                            Verdict::Tx
                        }
                        Some(v) => v,
                        None => self.forward_found(port, &mut buf, m, now, found),
                    }
                }
            };
            match verdict {
                Verdict::Tx => out.tx.push(buf),
                Verdict::Host(c) => {
                    self.counters.inc(c);
                    out.host.push(buf);
                }
                Verdict::Drop(c) => {
                    self.counters.inc(c);
                    out.drop.push(buf);
                }
            }
        }
        self.counters.add(Counter::FlowTableHits, fast_tx);
        self.counters.add(Counter::Forwarded, fast_tx);
    }

    /// Runs one frame through both passes (slow path for tests and tools).
    pub fn process_one<B: PacketBuffer>(&mut self, port: usize, buf: &mut B, now: u32) -> Verdict {
        self.counters.inc(Counter::RxPackets);
        self.counters.add(Counter::RxBytes, buf.len() as u64);
        let verdict = match self.classify(port, buf, now) {
            Pass1::Done(v) => v,
            Pass1::Flow(m) | Pass1::Fast(m) => self.forward(port, buf, &m, now),
        };
        match verdict {
            Verdict::Host(c) | Verdict::Drop(c) => self.counters.inc(c),
            Verdict::Tx => {}
        }
        verdict
    }

    /// Pass 1: decide what the frame is; answer or hand off what is not a flow.
    /// Out of line: the burst loop calls it only for what the fast path
    /// ([`fast::classify_v4`]) does not take, and keeps its registers.
    #[inline(never)]
    fn classify<B: PacketBuffer>(&mut self, port: usize, buf: &mut B, now: u32) -> Pass1 {
        let data = buf.data();
        let Ok(eth) = ethernet::Packet::new_checked(data) else {
            // A segmented frame shows no bytes (PacketBuffer::is_segmented).
            let c = if buf.is_segmented() {
                Counter::DropMultiSegment
            } else {
                Counter::DropMalformed
            };
            return Pass1::Done(Verdict::Drop(c));
        };
        let l2_len = eth.header_len();
        match eth.payload_ethertype() {
            EtherType::Ipv4 => self.classify_v4(port, buf, l2_len),
            EtherType::Ipv6 => self.classify_v6(port, buf, l2_len, now),
            EtherType::Arp => Pass1::Done(reply::arp(
                &self.tables,
                &self.neighbors,
                port,
                buf,
                l2_len,
                now,
                &mut self.counters,
            )),
            EtherType::Vlan => Pass1::Done(Verdict::Drop(Counter::DropVlanStacked)),
            _ => Pass1::Done(Verdict::Host(Counter::HostOtherEthertype)),
        }
    }

    #[inline]
    fn not_vipa(&self) -> Pass1 {
        Pass1::Done(if self.tables.not_vipa_to_host {
            Verdict::Host(Counter::HostNotVipa)
        } else {
            Verdict::Drop(Counter::DropNotVipa)
        })
    }

    #[inline]
    fn classify_v4<B: PacketBuffer>(&mut self, port: usize, buf: &mut B, l2_len: usize) -> Pass1 {
        let data = buf.data();
        let Ok(ip) = ipv4::Packet::new_checked(&data[l2_len..]) else {
            return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
        };
        if ip.version() != 4 {
            return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
        }
        let dst = ip.dst_addr().octets();
        let Some(vipa) = self.tables.vipa_v4(&dst) else {
            return self.not_vipa();
        };
        if ip.has_options() {
            return Pass1::Done(Verdict::Drop(Counter::DropIpv4Options));
        }
        if ip.is_fragment() {
            return Pass1::Done(Verdict::Drop(Counter::DropIpv4Fragment));
        }
        let src = ip.src_addr().octets();
        let proto = ip.next_header();
        let inner = encap::Inner {
            len: u32::from(ip.total_len()),
            dscp_ecn: ip.dscp_ecn(),
            df: ip.dont_frag(),
        };
        let payload = ip.payload();
        match proto {
            PROTO_TCP | PROTO_UDP => {
                let Some((sport, dport)) = ports(proto, payload) else {
                    return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
                };
                let Some(service) = self.tables.vipas[vipa as usize].service_slot(proto, dport)
                else {
                    return Pass1::Done(Verdict::Drop(Counter::DropNotAService));
                };
                let sig = self.flows.signature_v4(src, dst, proto, sport, dport);
                Pass1::Flow(FlowMeta {
                    sig,
                    vipa,
                    slot: service,
                    l2_len: l2_len as u8,
                    v6: false,
                    icmp_error: false,
                    syn: is_syn(proto, payload),
                    inner_len: inner.len,
                    dscp_ecn: inner.dscp_ecn,
                    df: inner.df,
                })
            }
            PROTO_ICMP => {
                let Ok(icmp) = icmpv4::Packet::new_checked(payload) else {
                    return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
                };
                match icmp.msg_type() {
                    icmpv4::Message::EchoRequest => Pass1::Done(reply::echo_v4(
                        &self.tables,
                        port,
                        buf,
                        l2_len,
                        &mut self.counters,
                    )),
                    m if m.is_error() => match quoted_flow_v4(icmp.data(), &dst).and_then(
                        |(qproto, client, cport, vport)| {
                            let service =
                                self.tables.vipas[vipa as usize].service_slot(qproto, vport)?;
                            Some((qproto, client, cport, vport, service))
                        },
                    ) {
                        Some((qproto, client, cport, vport, service)) => {
                            let sig = self.flows.signature_v4(client, dst, qproto, cport, vport);
                            Pass1::Flow(FlowMeta {
                                sig,
                                vipa,
                                slot: service,
                                l2_len: l2_len as u8,
                                v6: false,
                                icmp_error: true,
                                syn: false,
                                inner_len: inner.len,
                                dscp_ecn: inner.dscp_ecn,
                                df: inner.df,
                            })
                        }
                        _ => Pass1::Done(Verdict::Drop(Counter::DropIcmpUnhandled)),
                    },
                    _ => Pass1::Done(Verdict::Drop(Counter::DropIcmpUnhandled)),
                }
            }
            _ => Pass1::Done(Verdict::Drop(Counter::DropVipaProtocol)),
        }
    }

    #[inline]
    fn classify_v6<B: PacketBuffer>(
        &mut self,
        port: usize,
        buf: &mut B,
        l2_len: usize,
        now: u32,
    ) -> Pass1 {
        let data = buf.data();
        let Ok(ip) = ipv6::Packet::new_checked(&data[l2_len..]) else {
            return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
        };
        if ip.version() != 6 {
            return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
        }
        let proto = ip.next_header();
        let payload = ip.payload();
        // Neighbour discovery goes to solicited-node multicast addresses, not
        // to the VIPA: look at it before the destination check.
        if proto == PROTO_ICMPV6
            && payload.len() >= 4
            && (ND_FIRST_TYPE..=ND_LAST_TYPE).contains(&payload[0])
        {
            return Pass1::Done(reply::neighbor(
                &self.tables,
                &self.neighbors,
                port,
                buf,
                l2_len,
                now,
                &mut self.counters,
            ));
        }
        let dst = ip.dst_addr().octets();
        let Some(vipa) = self.tables.vipa_v6(&dst) else {
            return self.not_vipa();
        };
        let src = ip.src_addr().octets();
        // IPv6 is never fragmented on the path: the outer header gets DF.
        let inner = encap::Inner {
            len: ipv6::HEADER_LEN as u32 + u32::from(ip.payload_len()),
            dscp_ecn: ip.traffic_class(),
            df: true,
        };
        match proto {
            PROTO_TCP | PROTO_UDP => {
                let Some((sport, dport)) = ports(proto, payload) else {
                    return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
                };
                let Some(service) = self.tables.vipas[vipa as usize].service_slot(proto, dport)
                else {
                    return Pass1::Done(Verdict::Drop(Counter::DropNotAService));
                };
                let sig = self.flows.signature_v6(&src, &dst, proto, sport, dport);
                Pass1::Flow(FlowMeta {
                    sig,
                    vipa,
                    slot: service,
                    l2_len: l2_len as u8,
                    v6: true,
                    icmp_error: false,
                    syn: is_syn(proto, payload),
                    inner_len: inner.len,
                    dscp_ecn: inner.dscp_ecn,
                    df: inner.df,
                })
            }
            PROTO_ICMPV6 => {
                let Ok(icmp) = icmpv6::Packet::new_checked(payload) else {
                    return Pass1::Done(Verdict::Drop(Counter::DropMalformed));
                };
                match icmp.msg_type() {
                    icmpv6::Message::EchoRequest => Pass1::Done(reply::echo_v6(
                        &self.tables,
                        port,
                        buf,
                        l2_len,
                        &mut self.counters,
                    )),
                    m if m.is_error() => match quoted_flow_v6(icmp.data(), &dst).and_then(
                        |(qproto, client, cport, vport)| {
                            let service =
                                self.tables.vipas[vipa as usize].service_slot(qproto, vport)?;
                            Some((qproto, client, cport, vport, service))
                        },
                    ) {
                        Some((qproto, client, cport, vport, service)) => {
                            let sig = self.flows.signature_v6(&client, &dst, qproto, cport, vport);
                            Pass1::Flow(FlowMeta {
                                sig,
                                vipa,
                                slot: service,
                                l2_len: l2_len as u8,
                                v6: true,
                                icmp_error: true,
                                syn: false,
                                inner_len: inner.len,
                                dscp_ecn: inner.dscp_ecn,
                                df: inner.df,
                            })
                        }
                        _ => Pass1::Done(Verdict::Drop(Counter::DropIcmpUnhandled)),
                    },
                    _ => Pass1::Done(Verdict::Drop(Counter::DropIcmpUnhandled)),
                }
            }
            PROTO_IPV6_FRAGMENT => Pass1::Done(Verdict::Drop(Counter::DropIpv6Fragment)),
            h if is_ipv6_extension(h) => Pass1::Done(Verdict::Drop(Counter::DropIpv6ExtHeader)),
            _ => Pass1::Done(Verdict::Drop(Counter::DropVipaProtocol)),
        }
    }

    /// Pass 2: find the flow's target and encapsulate.
    #[inline]
    fn forward<B: PacketBuffer>(
        &mut self,
        port: usize,
        buf: &mut B,
        m: &FlowMeta,
        now: u32,
    ) -> Verdict {
        let found = self.flows.lookup(m.sig, now);
        self.forward_found(port, buf, m, now, found)
    }

    /// Pass 2 after the flow-table lookup (`found`, which refreshed the
    /// flow when it hit). Out of line, as [`Pipeline::classify`].
    #[inline(never)]
    fn forward_found<B: PacketBuffer>(
        &mut self,
        port: usize,
        buf: &mut B,
        m: &FlowMeta,
        now: u32,
        found: Option<u32>,
    ) -> Verdict {
        // DESIGN.md §4 step 4: flow table, then CRT, then Maglev.
        let target = match found {
            Some(t) if self.tables.keeps_flows(t) && !self.reuse_refused(m, buf.data(), t) => {
                self.counters.inc(Counter::FlowTableHits);
                t
            }
            stale => {
                match stale {
                    Some(t) if self.tables.keeps_flows(t) => {
                        self.counters.inc(Counter::SynRerouted)
                    }
                    Some(_) => self.counters.inc(Counter::FlowsRerouted),
                    None => {}
                }
                match self.lookup_new(m, buf.data(), now) {
                    Some(t) => t,
                    None => return Verdict::Drop(Counter::DropNoTarget),
                }
            }
        };
        let dst_mac = match self.tables.next_hop(port, target) {
            NextHop::Static(mac) => mac,
            NextHop::Resolve(id) => match self.neighbors.lookup(id, now) {
                Lookup::Reachable(mac) => mac,
                Lookup::Stale(mac) => {
                    let _ = self.refresh.try_push(id);
                    mac
                }
                Lookup::Request => return self.request_in_place(port, buf, id),
                Lookup::Pending => return Verdict::Drop(Counter::DropNeighborUnresolved),
            },
        };
        // The outer IPv6 header's flow label comes from the cluster's flow
        // hash (the same on every node, so a takeover keeps the flow on its
        // underlay path); an IPv4 outer header does not need it.
        let hash = if self.tables.target_is_v6(target) {
            flow_hash(buf.data(), m).unwrap_or(0)
        } else {
            0
        };
        let cksum_offload = self.ipv4_checksum_offload(port);
        let verdict = encap::encapsulate(
            &self.tables,
            port,
            cksum_offload,
            buf,
            m.l2_len as usize,
            m.v6,
            m.inner(),
            target,
            m.slot,
            dst_mac,
            hash,
            &mut self.ident,
            &mut self.counters,
        );
        if verdict == Verdict::Tx && m.icmp_error {
            self.counters.inc(Counter::IcmpErrorsForwarded);
        }
        verdict
    }
}

/// Whether `target` takes new connections for the service of `key` (the
/// flow's key, when it could be read) at `vipa`.
fn takes_new(vipa: &Vipa, key: &Option<FlowKey>, target: u32) -> bool {
    key.as_ref()
        .is_some_and(|k| vipa.takes_new(k.protocol, k.dst_port, target))
}

impl Pipeline {
    /// True when `m` is a TCP SYN that found a remembered flow (or CRT
    /// connection) to `target`, and `target` takes no new connections for
    /// the service (quiesced, restarting, not listening on it): the client
    /// reused a port of an old connection, and this is a new connection,
    /// which goes where new connections go (as IPVS's `conn_reuse_mode`).
    /// A SYN to a target that still takes new connections stays (a
    /// retransmitted SYN keeps its target). Reads the key from the packet,
    /// so only SYNs pay for it.
    #[inline]
    fn reuse_refused(&self, m: &FlowMeta, data: &[u8], target: u32) -> bool {
        m.syn
            && !takes_new(
                &self.tables.vipas[m.vipa as usize],
                &flow_key(data, m),
                target,
            )
    }

    /// A flow the flow table does not know (or whose target is down, or a
    /// SYN [`Self::reuse_refused`] sends here): the CRT's target if a live
    /// one (for a SYN: one that takes new connections), else the Maglev
    /// table's. Records the flow
    /// (unless `m` is an ICMP error) and reports Maglev-made flows.
    /// `data` is the frame as pass 1 saw it: the cluster's flow hash is
    /// computed from it (pass 1 computed only the flow-table signature),
    /// and the flow's key is read from it again when the CRT or the
    /// new-flow events need it.
    #[inline(never)]
    fn lookup_new(&mut self, m: &FlowMeta, data: &[u8], now: u32) -> Option<u32> {
        let vipa = &self.tables.vipas[m.vipa as usize];
        // Pass 1 parsed the same headers the same way: they are there.
        let hash = flow_hash(data, m)?;
        // The key is read again only when something needs it: the CRT, the
        // new-flow events, or a VIPA whose services use different Maglev
        // tables (targets ready for some of its services only).
        let want_key = self.tables.has_crt()
            || (!m.icmp_error && self.flow_events.is_some())
            || !vipa.one_table();
        let key = if want_key { flow_key(data, m) } else { None };
        let crt = match &key {
            Some(key) => self.tables.crt_lookup(key, hash),
            None => None,
        };
        let (t, from_crt) = match crt {
            Some(t) if self.tables.keeps_flows(t) && (!m.syn || takes_new(vipa, &key, t)) => {
                self.counters.inc(Counter::CrtHits);
                (t, true)
            }
            _ => {
                let (protocol, port) = key.as_ref().map_or((0, 0), |k| (k.protocol, k.dst_port));
                let t = vipa.maglev_target(protocol, port, hash)?;
                self.counters.inc(Counter::MaglevLookups);
                (t, false)
            }
        };
        if !m.icmp_error {
            if self.flows.insert(m.sig, t, now) == Inserted::Evicted {
                self.counters.inc(Counter::FlowsEvicted);
            }
            self.counters.inc(Counter::FlowsCreated);
            if let Some(tc) = self.counters.targets.get_mut(t as usize) {
                tc.flows += 1;
            }
            if !from_crt {
                if let (Some(sink), Some(key)) = (&mut self.flow_events, &key) {
                    if !sink.push(key, t, now) {
                        self.counters.inc(Counter::FlowEventsLost);
                    }
                }
            }
        }
        Some(t)
    }

    /// Switches to `tables` and `neighbors` (between bursts): forgets the
    /// flows when `reset_flows` (target slots were reassigned), makes room
    /// for per-target counters of new target slots.
    pub fn switch_tables(
        &mut self,
        tables: Arc<Tables>,
        neighbors: Arc<Neighbors>,
        reset_flows: bool,
    ) {
        if reset_flows {
            self.flows.clear();
            self.counters.inc(Counter::FlowTableResets);
        }
        if self.counters.targets.len() < tables.targets.len() {
            self.counters.targets.resize(
                tables.targets.len(),
                crate::counters::TargetCounters::default(),
            );
        }
        self.tables = tables;
        self.neighbors = neighbors;
        self.refresh.clear();
        self.counters.inc(Counter::SnapshotSwitches);
    }

    /// The next hop `id` is unknown: this packet cannot go, so its buffer
    /// carries the request that will let the next ones go.
    fn request_in_place<B: PacketBuffer>(
        &mut self,
        port: usize,
        buf: &mut B,
        id: usize,
    ) -> Verdict {
        let vlan = ethernet::Packet::new_unchecked(buf.data()).vlan_tag();
        match self.neighbors.next_hop(id) {
            Some((address, _))
                if reply::neighbor_request(&self.tables, port, address, vlan, buf) =>
            {
                self.counters.inc(Counter::NeighborRequests);
                Verdict::Tx
            }
            _ => Verdict::Drop(Counter::DropNeighborUnresolved),
        }
    }

    /// Writes into `buf` a request for next hop `id` (for the worker's
    /// refreshes and start-up resolution); returns the port it must leave by.
    pub fn build_neighbor_request<B: PacketBuffer>(
        &mut self,
        id: usize,
        buf: &mut B,
    ) -> Option<usize> {
        let (address, port) = self.neighbors.next_hop(id)?;
        if !reply::neighbor_request(&self.tables, port, address, None, buf) {
            return None;
        }
        self.counters.inc(Counter::NeighborRequests);
        Some(port)
    }

    /// Writes into `buf` an announcement of VIPA number `vipa` from `port`
    /// (gratuitous ARP or unsolicited neighbour advertisement).
    pub fn build_announcement<B: PacketBuffer>(
        &mut self,
        port: usize,
        vipa: usize,
        buf: &mut B,
    ) -> bool {
        let Some(v) = self.tables.vipas.get(vipa) else {
            return false;
        };
        let address = v.address;
        if !reply::announce(&self.tables, port, address, buf) {
            return false;
        }
        self.counters.inc(if address.is_ipv4() {
            Counter::GratuitousArpSent
        } else {
            Counter::UnsolicitedNaSent
        });
        true
    }
}

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const PROTO_IPV6_FRAGMENT: u8 = 44;
/// Neighbour discovery message types: router solicitation (133) to
/// redirect (137), RFC 4861 §4.
const ND_FIRST_TYPE: u8 = 133;
const ND_LAST_TYPE: u8 = 137;

/// IPv6 extension headers (RFC 8200 §4 and the IANA registry) other than the
/// fragment header: vipa does not walk the chain (documented limit).
#[inline]
fn is_ipv6_extension(h: u8) -> bool {
    matches!(h, 0 | 43 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254)
}

/// The key of the flow pass 1 classified as `m`, read again from the
/// frame `data` (unchanged since pass 1, which checked every header read
/// here): the client → VIPA tuple of a TCP or UDP packet, or the flow an
/// ICMP error's quote names. `None` only for a frame pass 1 would not have
/// classified as a flow.
fn flow_key(data: &[u8], m: &FlowMeta) -> Option<FlowKey> {
    let l3 = data.get(m.l2_len as usize..)?;
    if m.v6 {
        let ip = ipv6::Packet::new_checked(l3).ok()?;
        let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
        let proto = ip.next_header();
        if m.icmp_error {
            let icmp = icmpv6::Packet::new_checked(ip.payload()).ok()?;
            let (qproto, client, cport, vport) = quoted_flow_v6(icmp.data(), &dst)?;
            Some(FlowKey::v6(client, dst, qproto, cport, vport))
        } else {
            let (sport, dport) = ports(proto, ip.payload())?;
            Some(FlowKey::v6(src, dst, proto, sport, dport))
        }
    } else {
        let ip = ipv4::Packet::new_checked(l3).ok()?;
        let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
        let proto = ip.next_header();
        if m.icmp_error {
            let icmp = icmpv4::Packet::new_checked(ip.payload()).ok()?;
            let (qproto, client, cport, vport) = quoted_flow_v4(icmp.data(), &dst)?;
            Some(FlowKey::v4(client, dst, qproto, cport, vport))
        } else {
            let (sport, dport) = ports(proto, ip.payload())?;
            Some(FlowKey::v4(src, dst, proto, sport, dport))
        }
    }
}

/// The cluster's flow hash ([`FlowKey::hash`]) of `m`'s flow, from the
/// packet's headers (pass 1 made sure they are there): from the header
/// fields in registers, without building the key (see
/// [`FlowKey::hash_v4`]), except for an ICMP error, whose flow is the one
/// its quote names.
fn flow_hash(data: &[u8], m: &FlowMeta) -> Option<u64> {
    if m.icmp_error {
        return flow_key(data, m).map(|k| k.hash());
    }
    let l3 = data.get(m.l2_len as usize..)?;
    if m.v6 {
        let ip = ipv6::Packet::new_checked(l3).ok()?;
        let proto = ip.next_header();
        let (sport, dport) = ports(proto, ip.payload())?;
        let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
        Some(FlowKey::hash_v6(&src, &dst, proto, sport, dport))
    } else {
        // Pass 1 took only IPv4 headers without options (20 bytes) with the
        // ports after them: the fields are at fixed offsets.
        let h: &[u8; 24] = l3.get(..24)?.try_into().ok()?;
        let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let src = [h[12], h[13], h[14], h[15]];
        let dst = [h[16], h[17], h[18], h[19]];
        Some(FlowKey::hash_v4(src, dst, h[9], be16(20), be16(22)))
    }
}

/// True for a TCP segment with SYN set and ACK clear: a connection's first.
#[inline]
fn is_syn(proto: u8, l4: &[u8]) -> bool {
    proto == PROTO_TCP
        && l4
            .get(13)
            .is_some_and(|&f| f & (TCP_SYN | TCP_ACK) == TCP_SYN)
}

/// TCP flag bits (RFC 9293 §3.1, byte 13 of the header).
pub(super) const TCP_SYN: u8 = 0x02;
/// See [`TCP_SYN`].
pub(super) const TCP_ACK: u8 = 0x10;

/// Source and destination port of a TCP or UDP header, when the header is whole.
#[inline]
fn ports(proto: u8, l4: &[u8]) -> Option<(u16, u16)> {
    let min = if proto == PROTO_TCP { 20 } else { 8 };
    if l4.len() < min {
        return None;
    }
    Some((
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    ))
}

/// The flow an ICMPv4 error is about: the quoted packet went from the VIPA
/// (`vipa`) to a client, so the flow is the quote's tuple reversed.
/// Returns (protocol, client address, client port, VIPA port).
///
/// RFC 792: the data of an error is "the internet header plus the first 64
/// bits of the original datagram's data" — exactly enough for both ports.
#[inline]
fn quoted_flow_v4(quote: &[u8], vipa: &[u8; 4]) -> Option<(u8, [u8; 4], u16, u16)> {
    if quote.len() < ipv4::HEADER_LEN {
        return None;
    }
    // The quote is truncated, so its total length does not match its size:
    // read it unchecked, after the length test above and the one below.
    let q = ipv4::Packet::new_unchecked(quote);
    let hl = q.header_len();
    if q.version() != 4 || hl < ipv4::HEADER_LEN || quote.len() < hl + 4 {
        return None;
    }
    if q.src_addr().octets() != *vipa {
        return None;
    }
    let proto = q.next_header();
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let l4 = &quote[hl..];
    let vport = u16::from_be_bytes([l4[0], l4[1]]);
    let cport = u16::from_be_bytes([l4[2], l4[3]]);
    Some((proto, q.dst_addr().octets(), cport, vport))
}

/// The flow an ICMPv6 error is about (see [`quoted_flow_v4`]).
///
/// RFC 4443 §3.1: the error carries "as much of invoking packet as possible
/// without the ICMPv6 packet exceeding the minimum IPv6 MTU".
#[inline]
fn quoted_flow_v6(quote: &[u8], vipa: &[u8; 16]) -> Option<(u8, [u8; 16], u16, u16)> {
    if quote.len() < ipv6::HEADER_LEN + 4 {
        return None;
    }
    let q = ipv6::Packet::new_unchecked(quote);
    if q.version() != 6 || q.src_addr().octets() != *vipa {
        return None;
    }
    let proto = q.next_header();
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let l4 = &quote[ipv6::HEADER_LEN..];
    let vport = u16::from_be_bytes([l4[0], l4[1]]);
    let cport = u16::from_be_bytes([l4[2], l4[3]]);
    Some((proto, q.dst_addr().octets(), cport, vport))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_need_a_whole_header() {
        assert_eq!(
            ports(PROTO_UDP, &[0, 53, 0, 80, 0, 8, 0, 0]),
            Some((53, 80))
        );
        assert_eq!(ports(PROTO_UDP, &[0, 53, 0, 80]), None);
        assert_eq!(ports(PROTO_TCP, &[0; 19]), None);
    }

    #[test]
    fn quoted_v4_flow_is_reversed() {
        let mut q = [0u8; 28];
        q[0] = 0x45;
        q[9] = 6;
        q[12..16].copy_from_slice(&[192, 0, 2, 10]);
        q[16..20].copy_from_slice(&[198, 51, 100, 7]);
        q[20..22].copy_from_slice(&443u16.to_be_bytes());
        q[22..24].copy_from_slice(&40000u16.to_be_bytes());
        assert_eq!(
            quoted_flow_v4(&q, &[192, 0, 2, 10]),
            Some((6, [198, 51, 100, 7], 40000, 443))
        );
        assert_eq!(quoted_flow_v4(&q, &[192, 0, 2, 11]), None);
        assert_eq!(quoted_flow_v4(&q[..23], &[192, 0, 2, 10]), None);
    }
}
