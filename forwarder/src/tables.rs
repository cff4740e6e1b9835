//! The forwarding tables a worker reads: VIPAs, services, targets, Maglev
//! tables, port facts and pre-built outer headers.
//!
//! They are built from the node's configuration and a snapshot — the
//! control plane's ([`crate::snapshot`]), or the configuration's own
//! equivalent — and are immutable afterwards, so every worker reads them
//! without locks; a new generation is a new `Tables`. The fast path finds
//! an IPv4 packet's VIPA and service in one hashed probe
//! ([`ServicesV4`]), whatever the number of VIPAs and services; the other
//! lookups the packet path makes are linear scans over short arrays or
//! one index into a Maglev table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use std::sync::Arc;

use vipa_proto::config::{Config, NotVipa, PortConfig};
use vipa_proto::flowkey::FlowKey;
use vipa_proto::maglev::MaglevTable;
use vipa_proto::snapshot::{
    section, BuildError, Builder, Crt, CrtEntry, Description, Snapshot, SnapshotError, TargetState,
    ANY_PORT, NO_MAGLEV_TABLE,
};
use zerocopy::FromBytes;

use crate::neighbor::Neighbors;
use crate::snapshot::SnapshotBytes;

/// Outer IPv4 + GRE overhead (20 + 4 bytes).
pub const OVERHEAD_V4: usize = 20 + 4;
/// Outer IPv6 + GRE overhead (40 + 4 bytes).
pub const OVERHEAD_V6: usize = 40 + 4;

/// One service of a VIPA: protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// IP protocol number (6 or 17).
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
    /// The index in [`Vipa::maglev`] of the table new connections to this
    /// service use; `None` when no target takes them.
    pub maglev: Option<u8>,
    /// Its service slot ([`Config::service_slots`]), which packets and bytes
    /// are counted by per target; `None` when not counted (a VIPA or
    /// service not in the configuration, or no per-service counting, see
    /// [`ServiceCounting`]).
    pub slot: Option<u32>,
}

/// The IPv4 VIPAs' services by (destination address, protocol,
/// destination port): what [`Tables::vipa_v4`] followed by
/// [`Vipa::service_slot`] answers, in one probe of a hash table, so the
/// fast path ([`crate::pipeline`]) costs the same with one service or
/// thousands.
///
/// Open addressing with linear probing, at most half full, so that a probe
/// for an absent key (any packet to an address or port that is not a
/// service) ends at an empty slot after about two reads. The keys come
/// from the configuration, not from packets, so nobody outside chooses
/// where they land.
#[derive(Clone, Debug)]
pub struct ServicesV4 {
    /// A power of two, at least 2 and at least twice the entries.
    slots: Box<[ServiceSlotV4]>,
    /// 64 − log2(slots): the home slot is the top bits of a multiplicative hash.
    shift: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct ServiceSlotV4 {
    /// [`ServicesV4::key`]; 0 = empty.
    key: u64,
    /// [`Vipa::service_slot`]'s answer.
    slot: u32,
    /// Index in [`Tables::vipas`].
    vipa: u16,
}

impl ServicesV4 {
    /// Fibonacci hashing's multiplier (2^64 / φ, odd).
    const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The table of `services`: (address bytes, protocol, port, VIPA index,
    /// service slot); the first entry of a key wins, as the linear scans'
    /// first match does.
    pub fn new(services: &[([u8; 4], u8, u16, u16, u32)]) -> Self {
        let len = (services.len() * 2).next_power_of_two().max(2);
        let mut table = ServicesV4 {
            slots: vec![ServiceSlotV4::default(); len].into_boxed_slice(),
            shift: 64 - len.trailing_zeros(),
        };
        let mask = len - 1;
        for &(address, protocol, port, vipa, slot) in services {
            let key = Self::key(address, protocol, port);
            let mut i = table.home(key);
            while let Some(e) = table.slots.get_mut(i & mask) {
                if e.key == key {
                    break;
                }
                if e.key == 0 {
                    *e = ServiceSlotV4 { key, slot, vipa };
                    break;
                }
                i += 1;
            }
        }
        table
    }

    /// The address (as it is in the header, read little-endian), the port
    /// and the protocol in one word, with a marker bit so that no key is 0.
    #[inline(always)]
    fn key(address: [u8; 4], protocol: u8, port: u16) -> u64 {
        u64::from(u32::from_le_bytes(address))
            | u64::from(port) << 32
            | u64::from(protocol) << 48
            | 1 << 56
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(Self::MULTIPLIER) >> self.shift) as usize
    }

    /// The VIPA index and service slot of a packet to `address`
    /// (header bytes), `protocol`, destination `port`; `None` when that is
    /// not a service of an IPv4 VIPA.
    #[inline(always)]
    pub fn get(&self, address: [u8; 4], protocol: u8, port: u16) -> Option<(u16, u32)> {
        let key = Self::key(address, protocol, port);
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        // Ends: the table is at most half full, so an empty slot exists.
        loop {
            let e = self.slots.get(i & mask)?;
            if e.key == key {
                return Some((e.vipa, e.slot));
            }
            if e.key == 0 {
                return None;
            }
            i += 1;
        }
    }
}

/// How many (service slot, target slot) pairs the forwarder counts packets
/// and bytes for, from the configuration: every (VIPA, service) of the
/// file ([`Config::service_slots`]) times every target slot
/// ([`Config::target_addresses`]). Each worker keeps a dense array of that
/// many `[packets, bytes]` (16 bytes a pair) and copies it to the back
/// channel once a second; above [`ServiceCounting::MAX_PAIRS`] pairs (16
/// MiB a worker) nothing is counted per service (the per-target figures
/// still are).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCounting {
    /// Service slots counted (0: none).
    pub service_slots: usize,
    /// Target slots per service slot.
    pub target_slots: usize,
}

impl ServiceCounting {
    /// The most (service, target) pairs counted.
    pub const MAX_PAIRS: usize = 1 << 20;

    /// The counting `config` calls for.
    pub fn from_config(config: &Config) -> Self {
        let service_slots = config.service_slots().count();
        let target_slots = config.target_addresses().len();
        if service_slots.saturating_mul(target_slots) > Self::MAX_PAIRS {
            return ServiceCounting::default();
        }
        ServiceCounting {
            service_slots,
            target_slots,
        }
    }

    /// (service, target) pairs counted.
    pub fn pairs(&self) -> usize {
        self.service_slots * self.target_slots
    }
}

/// A VIPA as the data plane sees it.
#[derive(Clone, Debug)]
pub struct Vipa {
    /// The address.
    pub address: IpAddr,
    /// Its services.
    pub services: Vec<Service>,
    /// Its Maglev tables (slot → index into [`Tables::targets`]); each
    /// service names the one its new connections use.
    pub maglev: Vec<MaglevTable>,
    /// Every service uses the same table (or none): the usual case, in
    /// which a new flow needs no service lookup.
    one_table: bool,
    /// For each table, the target slots it holds, sorted (what
    /// [`Self::takes_new`] answers from).
    members: Vec<Vec<u32>>,
    /// Ownership epoch (0 from a configuration).
    pub epoch: u64,
}

/// The service slot ([`Vipa::service_slot`]) of a service whose packets
/// and bytes are not counted per target ([`Service::slot`] `None`).
pub const UNCOUNTED_SERVICE: u32 = u32::MAX;

impl Vipa {
    /// The service slot ([`Service::slot`]) of `protocol`/`port`, or
    /// [`UNCOUNTED_SERVICE`] when it is not counted; `None` when it is not
    /// one of the VIPA's services. Read while the classifier has the
    /// services at hand, so that counting a forwarded packet reads no table.
    #[inline]
    pub fn service_slot(&self, protocol: u8, port: u16) -> Option<u32> {
        self.services
            .iter()
            .find(|s| s.port == port && s.protocol == protocol)
            .map(|s| s.slot.unwrap_or(UNCOUNTED_SERVICE))
    }

    /// A VIPA with these services and Maglev tables.
    pub fn new(
        address: IpAddr,
        services: Vec<Service>,
        maglev: Vec<MaglevTable>,
        epoch: u64,
    ) -> Self {
        let one_table = services.windows(2).all(|w| w[0].maglev == w[1].maglev);
        let members = maglev
            .iter()
            .map(|t: &MaglevTable| {
                let mut m = t.entries().to_vec();
                m.sort_unstable();
                m.dedup();
                m
            })
            .collect();
        Vipa {
            address,
            services,
            maglev,
            one_table,
            members,
            epoch,
        }
    }

    /// True when `target` takes new connections for `protocol`/`port` (it
    /// is in that service's Maglev table).
    pub fn takes_new(&self, protocol: u8, port: u16, target: u32) -> bool {
        self.services
            .iter()
            .find(|s| s.port == port && s.protocol == protocol)
            .and_then(|s| self.members.get(usize::from(s.maglev?)))
            .is_some_and(|m| m.binary_search(&target).is_ok())
    }

    /// True when every service uses the same Maglev table (or none), so
    /// that [`Self::maglev_target`] does not look at the service.
    #[inline]
    pub fn one_table(&self) -> bool {
        self.one_table
    }

    /// The target for a new flow to `protocol`/`port` with this hash, from
    /// the service's Maglev table; `None` when no target takes new
    /// connections for that service (or it is not a service).
    #[inline]
    pub fn maglev_target(&self, protocol: u8, port: u16, hash: u64) -> Option<u32> {
        let service = if self.one_table {
            self.services.first()
        } else {
            self.services
                .iter()
                .find(|s| s.port == port && s.protocol == protocol)
        }?;
        let table = self.maglev.get(usize::from(service.maglev?))?;
        Some(table.lookup(hash))
    }
}

/// A target: where encapsulated packets go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The target's address (its family is the outer family).
    pub address: IpAddr,
    /// The outer source address for this target's family.
    pub tunnel_source: IpAddr,
    /// The constant part of the outer IPv4 header towards this target
    /// (`None` for an IPv6 target).
    pub outer_v4: Option<OuterV4>,
    /// What it may receive.
    pub state: TargetState,
}

/// The outer IPv4 header towards one target, as far as it does not depend
/// on the packet: built with the tables, so that encapsulation writes the
/// header with three 8-byte stores and computes its checksum from a
/// precomputed partial sum, without reading the header back.
///
/// The per-packet fields are DSCP/ECN (byte 1), total length, identification
/// and the flags (bytes 2–7) and the checksum (bytes 10–11). RFC 1071 §2 (B):
/// the one's complement sum may be added in any order, so the sum of the
/// constant words plus the sum of the per-packet words is the sum of the
/// whole header, and the checksum is the same as a full computation over
/// the written header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterV4 {
    /// Bytes 8–15 as a big-endian integer: TTL, protocol (GRE), a zero
    /// checksum, source address.
    pub ttl_proto_src: u64,
    /// The destination address as a big-endian integer.
    pub dst: u32,
    /// The unfolded sum of the constant 16-bit words: version / IHL (DSCP
    /// 0), TTL / protocol, source and destination address.
    pub sum: u32,
}

/// Outer TTL / hop limit of encapsulated packets.
pub const OUTER_TTL: u8 = 64;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;

impl OuterV4 {
    /// The constant part of a header from `src` to `dst`.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        let (s, d) = (u32::from(src), u32::from(dst));
        let ttl_proto = (u32::from(OUTER_TTL) << 8) | u32::from(IPPROTO_GRE);
        OuterV4 {
            ttl_proto_src: (u64::from(ttl_proto) << 48) | u64::from(s),
            dst: d,
            // Version 4, header length 5 words: 0x45 in the high byte.
            sum: 0x4500 + ttl_proto + (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff),
        }
    }
}

/// Everything encapsulation needs to send an IPv4 packet to one IPv4
/// target from one port, prepared with the tables for the established-flow
/// fast path (`pipeline::fast`): one entry per (port, target), indexed like
/// the next hops, present only for an IPv4 target that keeps its flows
/// ([`Tables::keeps_flows`]). The bytes written from it are those the
/// general encapsulation writes for an untagged inner IPv4 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastV4 {
    /// The frame's first 38 bytes with the per-packet fields zero: the
    /// Ethernet header (the next hop's MAC when it is static, zeros when it
    /// is resolved: `resolve` says which; the port's MAC; 0x0800), the
    /// outer IPv4 header's constant part (version and IHL, TTL, protocol,
    /// addresses; DSCP/ECN, length, identification, flags and checksum
    /// zero) and the GRE header (protocol 0x0800).
    pub hdr: [u8; 14 + OVERHEAD_V4],
    /// The unfolded sum of the outer IPv4 header's constant words
    /// ([`OuterV4::sum`]).
    pub sum: u32,
    /// The largest inner packet that fits the port's MTU after the outer
    /// IPv4 and GRE headers (`mtu − 24`; 0 when the MTU is smaller, and in
    /// [`FastV4::NONE`]: no packet takes the fast path).
    pub max_inner: u32,
    /// The next hop's id in [`Neighbors`] when it is resolved, `u32::MAX`
    /// when `hdr` holds a static MAC.
    pub resolve: u32,
}

impl FastV4 {
    /// `resolve` of an entry whose Ethernet header is complete.
    pub const STATIC: u32 = u32::MAX;
    /// The entry of a (port, target) the fast path does not serve: every
    /// packet is larger than its `max_inner`, so the general path decides.
    pub const NONE: FastV4 = FastV4 {
        hdr: [0; 14 + OVERHEAD_V4],
        sum: 0,
        max_inner: 0,
        resolve: FastV4::STATIC,
    };
}

/// The CRT of a mapped snapshot, looked up in place.
#[derive(Clone)]
struct CrtRef {
    bytes: Arc<SnapshotBytes>,
    offset: usize,
    slots: usize,
    home: u64,
    max_probe: u32,
    entries: u64,
}

impl std::fmt::Debug for CrtRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrtRef")
            .field("entries", &self.entries)
            .field("home", &self.home)
            .field("max_probe", &self.max_probe)
            .finish()
    }
}

impl CrtRef {
    #[inline]
    fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let bytes = self
            .bytes
            .as_bytes()
            .get(self.offset..self.offset + self.slots * core::mem::size_of::<CrtEntry>())?;
        let slots = <[CrtEntry]>::ref_from_bytes(bytes).ok()?;
        Crt::from_validated(slots, self.home, self.max_probe, self.entries).lookup(key, hash)
    }
}

/// What the data plane knows about a port.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// Name from the configuration.
    pub name: String,
    /// The port's own MAC (source of everything it sends, ARP answers included).
    pub mac: [u8; 6],
    /// IP MTU of the port.
    pub mtu: usize,
    /// Static L2 next hop for encapsulated frames (no resolution when set).
    pub next_hop_mac: Option<[u8; 6]>,
    /// Next hop for every target (resolved by ARP/NDP), when configured;
    /// otherwise targets are on the port's segment and resolved directly.
    pub gateway: Option<IpAddr>,
}

/// Where an encapsulated frame to a target goes on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// A configured MAC.
    Static([u8; 6]),
    /// The MAC of next hop `id` in the shared [`Neighbors`] table.
    Resolve(usize),
}

/// Whole seconds of a configured duration, saturating.
fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The static next hop and the gateway of a configured port.
fn port_next_hop(p: &PortConfig) -> (Option<[u8; 6]>, Option<IpAddr>) {
    (p.next_hop_mac.map(|m| m.0), p.gateway)
}

/// Everything the pipeline reads.
#[derive(Clone, Debug)]
pub struct Tables {
    generation: u64,
    /// VIPAs, in configuration order.
    pub vipas: Vec<Vipa>,
    v4: Vec<([u8; 4], u16)>,
    v6: Vec<([u8; 16], u16)>,
    /// The IPv4 VIPAs' services, for the fast path's one probe.
    pub services_v4: ServicesV4,
    /// Targets of all VIPAs, each address once.
    pub targets: Vec<Target>,
    /// Ports, in configuration order.
    pub ports: Vec<PortInfo>,
    /// Hand non-VIPA IP traffic to the host (true) or drop it.
    pub not_vipa_to_host: bool,
    /// Flow-table capacity per worker.
    pub flow_table_capacity: usize,
    /// Seconds a flow lives without a packet.
    pub flow_idle_timeout: u32,
    /// Frames per receive burst.
    pub burst_size: usize,
    /// Next hop of each (port, target): index `port * targets.len() + target`.
    next_hops: Vec<NextHop>,
    /// The fast path's entry of each (port, target), indexed like `next_hops`.
    fast_v4: Vec<FastV4>,
    /// The next hops to resolve: (address, port), indexed by [`NextHop::Resolve`] ids.
    pub resolve: Vec<(IpAddr, usize)>,
    /// Seconds after which a learned MAC is refreshed.
    pub neighbor_refresh: u32,
    /// Seconds after which an unconfirmed MAC is forgotten.
    pub neighbor_timeout: u32,
    /// The node's IPv4 tunnel address (source of its ARP requests too).
    pub tunnel_source_v4: Option<Ipv4Addr>,
    /// The node's IPv6 tunnel address (source of its neighbour solicitations too).
    pub tunnel_source_v6: Option<Ipv6Addr>,
    /// The snapshot's CRT (none from a configuration).
    crt: Option<CrtRef>,
    /// The (service, target) pairs counted (the same for every generation:
    /// it comes from the configuration).
    pub service_counting: ServiceCounting,
}

/// A configuration (or snapshot) the tables cannot be built from (the
/// validators should have caught it; this is the last line of defence).
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("the snapshot built from the configuration is invalid: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("target {target}: no tunnel source address of its family in [node]")]
    NoTunnelSource { target: IpAddr },
}

impl Tables {
    /// Builds the tables from a validated configuration: the configuration
    /// is turned into its snapshot equivalent
    /// ([`Description::from_config`]), serialised and read back, so the
    /// config-built tables and the snapshot-built ones come from one path.
    pub fn from_config(config: &Config) -> Result<Self, TablesError> {
        let desc = Description::from_config(config, 0)?;
        let buf = Builder::new(&desc)?.to_buf()?;
        let snap = Snapshot::new_checked(buf.as_bytes())?;
        Self::from_snapshot(config, &snap, None)
    }

    /// Builds the tables from the node's configuration (ports, tunnel
    /// sources, tuning) and a validated snapshot (VIPAs, targets, Maglev,
    /// CRT, neighbours). Only the VIPAs the snapshot marks owned are routed.
    /// `bytes` holds `snap`'s bytes when the CRT is to be used: the tables
    /// keep them (no copy) and look connections up in place.
    pub fn from_snapshot(
        config: &Config,
        snap: &Snapshot<'_>,
        bytes: Option<Arc<SnapshotBytes>>,
    ) -> Result<Self, TablesError> {
        let mut targets = Vec::with_capacity(snap.targets().len());
        for t in snap.targets() {
            let address = snap.target_address(t);
            let tunnel_source = config
                .node
                .tunnel_source_for(address)
                .ok_or(TablesError::NoTunnelSource { target: address })?;
            let outer_v4 = match (address, tunnel_source) {
                (IpAddr::V4(dst), IpAddr::V4(src)) => Some(OuterV4::new(src, dst)),
                _ => None,
            };
            targets.push(Target {
                address,
                tunnel_source,
                outer_v4,
                state: snap.target_state(t),
            });
        }
        let service_counting = ServiceCounting::from_config(config);
        let counted = service_counting.service_slots > 0;
        let mut vipas = Vec::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for v in snap.vipas().iter().filter(|v| v.owned == 1) {
            let address = snap.vipa_address(v);
            let index = vipas.len() as u16;
            match address {
                IpAddr::V4(a) => v4.push((a.octets(), index)),
                IpAddr::V6(a) => v6.push((a.octets(), index)),
            }
            let maglev = (0..v.maglev_tables)
                .map(|k| MaglevTable::from_entries(snap.maglev_table(v, k as u8).to_vec()))
                .collect();
            let services = snap
                .services(v)
                .iter()
                .map(|s| Service {
                    protocol: s.protocol,
                    port: s.port,
                    maglev: (s.maglev_table != NO_MAGLEV_TABLE).then_some(s.maglev_table),
                    slot: counted
                        .then(|| config.service_slot(address, s.protocol, s.port))
                        .flatten()
                        .and_then(|i| u32::try_from(i).ok()),
                })
                .collect();
            vipas.push(Vipa::new(address, services, maglev, v.epoch));
        }
        let ports: Vec<PortInfo> = config
            .ports
            .iter()
            .map(|p| {
                let (next_hop_mac, gateway) = port_next_hop(p);
                PortInfo {
                    name: p.name.clone(),
                    mac: p.mac.0,
                    mtu: p.mtu as usize,
                    next_hop_mac,
                    gateway,
                }
            })
            .collect();
        let static_mac = |address: IpAddr, port: usize| {
            snap.neighbors()
                .iter()
                .find(|n| {
                    (n.port == ANY_PORT || usize::from(n.port) == port)
                        && snap.neighbor_address(n) == address
                })
                .map(|n| n.mac)
        };
        let mut resolve: Vec<(IpAddr, usize)> = Vec::new();
        let mut next_hops = Vec::with_capacity(ports.len() * targets.len());
        for (pi, p) in ports.iter().enumerate() {
            for t in &targets {
                let address = p.gateway.unwrap_or(t.address);
                let hop = match (p.next_hop_mac, static_mac(address, pi)) {
                    (Some(mac), _) | (None, Some(mac)) => NextHop::Static(mac),
                    (None, None) => {
                        let id = resolve
                            .iter()
                            .position(|&(a, port)| a == address && port == pi)
                            .unwrap_or_else(|| {
                                resolve.push((address, pi));
                                resolve.len() - 1
                            });
                        NextHop::Resolve(id)
                    }
                };
                next_hops.push(hop);
            }
        }
        let mut fast_v4 = Vec::with_capacity(next_hops.len());
        for (pi, p) in ports.iter().enumerate() {
            for (ti, t) in targets.iter().enumerate() {
                let hop = match next_hops[pi * targets.len() + ti] {
                    NextHop::Static(mac) => Some((mac, FastV4::STATIC)),
                    // Ids count next hops: they fit a u32 below the marker.
                    NextHop::Resolve(id) => u32::try_from(id)
                        .ok()
                        .filter(|&id| id != FastV4::STATIC)
                        .map(|id| ([0; 6], id)),
                };
                let entry = match (t.outer_v4, hop) {
                    (Some(outer), Some((dst, resolve))) if t.state != TargetState::Down => FastV4 {
                        hdr: crate::pipeline::fast_header_v4(dst, p.mac, &outer),
                        sum: outer.sum,
                        max_inner: u32::try_from(p.mtu.saturating_sub(OVERHEAD_V4))
                            .unwrap_or(u32::MAX),
                        resolve,
                    },
                    _ => FastV4::NONE,
                };
                fast_v4.push(entry);
            }
        }
        // vipa_v4 answers with the first VIPA of an address.
        let mut seen = std::collections::HashSet::new();
        let services_v4 = ServicesV4::new(
            &v4.iter()
                .filter(|(address, _)| seen.insert(*address))
                .flat_map(|&(address, index)| {
                    vipas[usize::from(index)].services.iter().map(move |s| {
                        (
                            address,
                            s.protocol,
                            s.port,
                            index,
                            s.slot.unwrap_or(UNCOUNTED_SERVICE),
                        )
                    })
                })
                .collect::<Vec<_>>(),
        );
        let crt = match bytes {
            Some(bytes) if !snap.crt().is_empty() => {
                let c = snap.crt();
                let s = snap.header().sections[section::CRT];
                Some(CrtRef {
                    bytes,
                    offset: s.offset as usize,
                    slots: c.slots().len(),
                    home: c.home_slots(),
                    max_probe: c.max_probe(),
                    entries: c.len(),
                })
            }
            _ => None,
        };
        Ok(Tables {
            generation: snap.generation(),
            vipas,
            v4,
            v6,
            services_v4,
            targets,
            ports,
            not_vipa_to_host: config.forwarder.not_vipa == NotVipa::Host,
            flow_table_capacity: config.forwarder.flow_table_capacity,
            flow_idle_timeout: secs(config.forwarder.flow_idle_timeout),
            burst_size: config.forwarder.burst_size,
            next_hops,
            fast_v4,
            resolve,
            neighbor_refresh: secs(config.forwarder.neighbor_refresh),
            neighbor_timeout: secs(config.forwarder.neighbor_timeout),
            tunnel_source_v4: config.node.tunnel_source_v4,
            tunnel_source_v6: config.node.tunnel_source_v6,
            crt,
            service_counting,
        })
    }

    /// The snapshot generation these tables come from (0: the configuration).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True when a flow may still go to target slot `target`: it exists and
    /// is not down (quiesced and restarting targets keep their flows).
    #[inline]
    pub fn keeps_flows(&self, target: u32) -> bool {
        self.targets
            .get(target as usize)
            .is_some_and(|t| t.state != TargetState::Down)
    }

    /// True when `target` is an IPv6 address (its packets get an outer
    /// IPv6 header).
    #[inline]
    pub fn target_is_v6(&self, target: u32) -> bool {
        self.targets
            .get(target as usize)
            .is_some_and(|t| t.address.is_ipv6())
    }

    /// The target the CRT names for this connection, if any.
    #[inline]
    pub fn crt_lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        self.crt.as_ref()?.lookup(key, hash)
    }

    /// True when the tables carry a CRT (a snapshot's, with at least one
    /// connection): a flow-table miss looks there before Maglev.
    #[inline]
    pub fn has_crt(&self) -> bool {
        self.crt.is_some()
    }

    /// Connections in the CRT.
    pub fn crt_len(&self) -> u64 {
        self.crt.as_ref().map_or(0, |c| c.entries)
    }

    /// The VIPA with this IPv4 address, as raw header bytes.
    #[inline]
    pub fn vipa_v4(&self, addr: &[u8]) -> Option<u16> {
        self.v4
            .iter()
            .find(|(a, _)| a.as_slice() == addr)
            .map(|&(_, i)| i)
    }

    /// The VIPA with this IPv6 address, as raw header bytes.
    #[inline]
    pub fn vipa_v6(&self, addr: &[u8]) -> Option<u16> {
        self.v6
            .iter()
            .find(|(a, _)| a.as_slice() == addr)
            .map(|&(_, i)| i)
    }

    /// True when this node owns the IPv4 address `addr` as a VIPA.
    pub fn owns_v4(&self, addr: Ipv4Addr) -> bool {
        self.vipa_v4(&addr.octets()).is_some()
    }

    /// True when this node owns the IPv6 address `addr` as a VIPA.
    pub fn owns_v6(&self, addr: Ipv6Addr) -> bool {
        self.vipa_v6(&addr.octets()).is_some()
    }

    /// Where frames to `target` leave `port` for.
    #[inline]
    pub fn next_hop(&self, port: usize, target: u32) -> NextHop {
        self.next_hops[port * self.targets.len() + target as usize]
    }

    /// The fast path's entry for sending to `target` from `port` (see
    /// [`FastV4`]): [`FastV4::NONE`] for a target that is not IPv4 or is
    /// down, `None` for one unknown.
    #[inline]
    pub fn fast_entry(&self, port: usize, target: u32) -> Option<&FastV4> {
        let n = self.targets.len();
        let t = target as usize;
        if t >= n {
            return None;
        }
        self.fast_v4.get(port * n + t)
    }

    /// A fresh shared next-hop table for these tables' next hops (all unknown).
    pub fn new_neighbors(&self) -> Neighbors {
        Neighbors::new(&self.resolve, self.neighbor_refresh, self.neighbor_timeout)
    }

    /// The index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with `vipas` IPv4 VIPAs of `services` services
    /// each (TCP and UDP, ports from 80 up), four targets each.
    fn many(vipas: u8, services: u16) -> Config {
        let mut text = String::from(
            "[node]\nname = \"t\"\ntunnel_source_v4 = \"10.10.0.1\"\n\n\
             [[port]]\nname = \"p0\"\nmac = \"02:00:00:00:0a:01\"\n\
             next_hop_mac = \"02:00:00:00:0a:fe\"\n",
        );
        for v in 0..vipas {
            let list: Vec<String> = (0..services)
                .map(|s| format!("\"{}/{}\"", if s % 2 == 0 { "tcp" } else { "udp" }, 80 + s))
                .collect();
            text.push_str(&format!(
                "\n[[vipa]]\naddress = \"192.0.2.{}\"\nservices = [{}]\n",
                v + 1,
                list.join(", ")
            ));
            for t in 0..4 {
                text.push_str(&format!(
                    "[[vipa.target]]\naddress = \"10.20.{v}.{}\"\n",
                    t + 1
                ));
            }
        }
        Config::from_str_with_path(&text, std::path::Path::new("t.toml")).expect("config")
    }

    /// What the general path answers: the VIPA scan, then its service scan.
    fn scans(t: &Tables, dst: [u8; 4], proto: u8, port: u16) -> Option<(u16, u32)> {
        let v = t.vipa_v4(&dst)?;
        Some((v, t.vipas[usize::from(v)].service_slot(proto, port)?))
    }

    #[test]
    fn services_v4_answers_as_the_scans_do() {
        for (vipas, services) in [(1, 1), (3, 2), (40, 25)] {
            let t = Tables::from_config(&many(vipas, services)).expect("tables");
            let mut found = 0;
            // Every VIPA and its neighbours, both protocols (and one that
            // is neither), the service ports and those around them.
            for last in 0..=vipas + 1 {
                for proto in [6, 17, 1] {
                    for port in (0..services + 3).map(|p| 78 + p).chain([0, u16::MAX]) {
                        let dst = [192, 0, 2, last];
                        let want = scans(&t, dst, proto, port);
                        assert_eq!(
                            t.services_v4.get(dst, proto, port),
                            want,
                            "{dst:?} {proto} {port}"
                        );
                        found += usize::from(want.is_some());
                    }
                }
            }
            assert_eq!(found, usize::from(vipas) * usize::from(services));
        }
    }

    #[test]
    fn services_v4_keeps_the_first_entry_of_a_key_and_ends_on_absent_keys() {
        let a = [192, 0, 2, 1];
        let s = ServicesV4::new(&[(a, 6, 80, 0, 7), (a, 6, 80, 1, 9), (a, 17, 80, 0, 8)]);
        assert_eq!(s.get(a, 6, 80), Some((0, 7)));
        assert_eq!(s.get(a, 17, 80), Some((0, 8)));
        assert_eq!(s.get(a, 6, 81), None);
        let empty = ServicesV4::new(&[]);
        assert_eq!(empty.get(a, 6, 80), None);
        // Consecutive ports of one address (the keys of a large service
        // set): all found, and every absent port ends.
        let n = 5000u16;
        let big = ServicesV4::new(
            &(0..n)
                .map(|p| (a, 6, p, 0, u32::from(p)))
                .collect::<Vec<_>>(),
        );
        assert_eq!(big.slots.len(), 16384);
        for p in 0..n {
            assert_eq!(big.get(a, 6, p), Some((0, u32::from(p))));
        }
        for p in n..=u16::MAX {
            assert_eq!(big.get(a, 6, p), None);
        }
    }
}
