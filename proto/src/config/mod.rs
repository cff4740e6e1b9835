//! The TOML configuration shared by every vipa binary.
//!
//! [`Config::load`] reads a file (the only I/O in this crate) and
//! [`Config::from_str_with_path`] parses text; both return a fully checked
//! [`Config`] of plain `std` types or one [`ConfigError`] that names the
//! file, the line and column, the field (`vipa[0].target[1].address`) and
//! what to do about it. The format, every key, its default and its
//! constraints are documented in `docs/config.md`; `examples/vipa.toml` is a
//! complete example.
//!
//! # Design decisions
//!
//! - **Errors name the line.** The document is first parsed into a generic
//!   tree whose every key and value keeps its byte span (`toml::Spanned`);
//!   the schema is then checked by hand, so a wrong type, an unknown key, a
//!   missing key or a bad value all point at the line where it was (or, for
//!   a missing key, the line of the table it is missing from). Unknown keys
//!   are errors: a misspelt key silently ignored is worse than a refusal.
//! - **Only the first error is reported**, in the order: syntax, `[node]`,
//!   `[forwarder]`, `[dpdk]`, `[[port]]`, `[cluster]`, `[[vipa]]`, then checks that span
//!   sections (MTU against IPv6).
//! - **Outer family follows the target.** An IPv4 target is reached with GRE
//!   over IPv4 from `node.tunnel_source_v4`, an IPv6 target with GRE over
//!   IPv6 from `node.tunnel_source_v6`; both sources are optional, but every
//!   target needs the one of its family.
//! - **MTU.** A port's `mtu` (IP MTU) is 576..=9216. If any address in use is
//!   IPv6, every port needs at least 1280 (RFC 8200 §5, the IPv6 minimum link
//!   MTU). For an IPv6 VIPA every port also needs 1280 plus the GRE overhead
//!   of its targets (24 bytes over IPv4, 44 over IPv6): a packet-too-big
//!   message may not announce less than 1280, so the forwarder must be able
//!   to carry a 1280-byte IPv6 packet to any target.
//! - **Next hops.** A port's `next_hop_mac` is an optional static override:
//!   every encapsulated frame leaving the port goes to that MAC. Without it
//!   the data plane resolves next hops itself with ARP / NDP: the port's
//!   `gateway` when one is set, otherwise each target directly (targets on
//!   the port's segment). Setting both is refused: one of them would be
//!   silently ignored.
//! - **One queue of every port per worker.** `forwarder.cores` lists the CPUs
//!   that run a worker each; every worker owns one queue of every port, so a
//!   port's `queues` must equal the number of cores (and defaults to it).
//! - **One backend for all ports, for now.** The workers are generic over the
//!   port type, so one forwarder process drives one kind of port; mixing
//!   `afpacket` and `dpdk` ports is refused with that reason.
//! - **Cluster defaults keep one node valid.** Without `[cluster]` the
//!   cluster is this node alone: every VIPA's owner defaults to
//!   `node.name`, with no backups. With `[cluster]`, every routing node is
//!   listed in `[[cluster.node]]` (this one included) and every VIPA names
//!   its `owner`; `backups` are ranked (the first takes over first). Every
//!   node must be given the same `[[cluster.node]]` list and the same
//!   `owner`, `backups` and `moveable` per VIPA: ranks and epochs are
//!   computed from them on each node.
//! - **Candidate lists per routing node.** `vipa.target` lists every target
//!   that may hold connections of the VIPA; the owner of the moment asks all
//!   of them for their connections, so a takeover keeps every connection
//!   whatever the new owner's own list. `vipa.candidates.<node>` narrows the
//!   targets that node gives *new* connections to (default: all).
//! - **Maglev keys.** A target's Maglev key is its address as `std` prints it
//!   ([`TargetConfig::maglev_key`]), so every node builds the same table
//!   whatever the spelling in the file (`fd00:20:0::11` and `fd00:20::11`
//!   are the same target).

mod error;
mod parse;
mod tree;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::maglev::{self, MaglevError, MaglevTable, MaglevTarget};

pub use error::{AddressFamily, ConfigError, Location, Problem};

/// Default `forwarder.flow_table_capacity`: flows per worker.
pub const DEFAULT_FLOW_TABLE_CAPACITY: usize = 1 << 20;
/// Default `forwarder.flow_idle_timeout`.
pub const DEFAULT_FLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `forwarder.burst_size`.
pub const DEFAULT_BURST_SIZE: usize = 32;
/// Largest `forwarder.burst_size`.
pub const MAX_BURST_SIZE: usize = 64;
/// Default `port.mtu`.
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest `port.mtu` (the IPv4 datagram every host must accept).
pub const MIN_MTU: u16 = 576;
/// Largest `port.mtu` (a common jumbo-frame limit).
pub const MAX_MTU: u16 = 9216;
/// The IPv6 minimum link MTU (RFC 8200 §5).
pub const IPV6_MIN_MTU: u16 = 1280;
/// Bytes added by GRE over IPv4: a 20-byte IPv4 header and a 4-byte GRE header.
pub const GRE_OVERHEAD_V4: u16 = 24;
/// Bytes added by GRE over IPv6: a 40-byte IPv6 header and a 4-byte GRE header.
pub const GRE_OVERHEAD_V6: u16 = 44;
/// Default target `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest target `weight`.
pub const MAX_WEIGHT: u32 = 65535;
/// Default `forwarder.cores`: one worker on CPU 0.
pub const DEFAULT_CORES: &[usize] = &[0];
/// Largest CPU id accepted in `forwarder.cores` (Linux's `NR_CPUS` limit).
pub const MAX_CORE_ID: usize = 8191;
/// Default `forwarder.idle_sleep_us`.
pub const DEFAULT_IDLE_SLEEP: Duration = Duration::from_micros(50);
/// Default `forwarder.idle_polls`.
pub const DEFAULT_IDLE_POLLS: u32 = 1000;
/// Default `forwarder.tx_drain_us`.
pub const DEFAULT_TX_DRAIN: Duration = Duration::from_micros(100);
/// Default `forwarder.neighbor_refresh`.
pub const DEFAULT_NEIGHBOR_REFRESH: Duration = Duration::from_secs(30);
/// Default `forwarder.neighbor_timeout`.
pub const DEFAULT_NEIGHBOR_TIMEOUT: Duration = Duration::from_secs(120);
/// Default `dpdk.mbufs`: mbufs per pool (2ⁿ − 1 is what DPDK's mempool likes).
pub const DEFAULT_MBUFS: u32 = 8191;
/// Largest `port.queues`.
pub const MAX_QUEUES: u16 = 1024;
/// Default `cluster.port`: the TCP port of the control protocol on routing
/// nodes and agents.
pub const DEFAULT_CLUSTER_PORT: u16 = 7400;
/// Default `cluster.probe_interval_ms`.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Default `cluster.probe_timeout_ms`.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(80);
/// Default `cluster.suspect_timeout_ms`.
pub const DEFAULT_SUSPECT_TIMEOUT: Duration = Duration::from_millis(400);
/// Default `cluster.collect_timeout_ms`.
pub const DEFAULT_COLLECT_TIMEOUT: Duration = Duration::from_millis(150);
/// Default `cluster.refresh_interval_ms`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_millis(500);
/// Default `cluster.api`.
pub const DEFAULT_API: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9470);
/// Default `cluster.restart_hold`.
pub const DEFAULT_RESTART_HOLD: Duration = Duration::from_secs(30);

/// A whole configuration file, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `[node]`: this routing node.
    pub node: NodeConfig,
    /// `[forwarder]`: data-plane tuning (all optional).
    pub forwarder: ForwarderConfig,
    /// `[dpdk]`: DPDK settings, used when the ports' backend is `dpdk`
    /// (all optional).
    pub dpdk: DpdkConfig,
    /// `[[port]]`: the network ports, in file order (at least one, all of
    /// one [`Backend`]).
    pub ports: Vec<PortConfig>,
    /// `[[vipa]]`: the VIPAs, in file order (possibly none).
    pub vipas: Vec<VipaConfig>,
    /// `[cluster]`: the routing nodes and the failover timing (optional;
    /// without it the cluster is this node alone).
    pub cluster: ClusterConfig,
}

/// `[cluster]`: who the routing nodes are and how fast failures are
/// detected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `[[cluster.node]]`: every routing node, this one included, in file
    /// order (names unique). Without `[cluster]`: this node alone, with no
    /// address.
    pub nodes: Vec<ClusterNode>,
    /// `port`: the TCP port agents listen on for the control protocol
    /// (1..=65535; default 7400).
    pub agent_port: u16,
    /// `probe_interval_ms`: how often each node probes one other node
    /// (SWIM protocol period; 10..=60000 ms; default 200 ms).
    pub probe_interval: Duration,
    /// `probe_timeout_ms`: how long a direct probe waits for its answer
    /// before asking others to probe indirectly (less than
    /// `probe_interval`; default 80 ms).
    pub probe_timeout: Duration,
    /// `suspect_timeout_ms`: how long a node that missed its probe is
    /// suspected before it is declared down (10..=60000 ms; default 400 ms).
    pub suspect_timeout: Duration,
    /// `collect_timeout_ms`: how long a new owner waits for the targets that
    /// have not answered yet, once a majority has (0..=60000 ms; default
    /// 150 ms).
    pub collect_timeout: Duration,
    /// `refresh_interval_ms`: how often an owner re-sends its VIPA
    /// definitions to the targets and its ownership to the other nodes
    /// (10..=60000 ms; default 500 ms).
    pub refresh_interval: Duration,
    /// `restart_hold`: how long the connections of a target whose listener
    /// has gone keep their route (whole seconds, 1..=3600; default 30 s).
    pub restart_hold: Duration,
    /// `api`: where `vipa-control` serves its HTTP API and `/metrics`
    /// (default 127.0.0.1:9470). Without authentication: keep it on a
    /// local or management address.
    pub api: SocketAddr,
}

impl ClusterConfig {
    /// The cluster of one node: `name`, no address, default timing.
    pub fn single(name: &str) -> Self {
        ClusterConfig {
            nodes: vec![ClusterNode {
                name: name.to_owned(),
                address: None,
            }],
            agent_port: DEFAULT_CLUSTER_PORT,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            suspect_timeout: DEFAULT_SUSPECT_TIMEOUT,
            collect_timeout: DEFAULT_COLLECT_TIMEOUT,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            restart_hold: DEFAULT_RESTART_HOLD,
            api: DEFAULT_API,
        }
    }

    /// The node with this name, if listed.
    pub fn node(&self, name: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// `[[cluster.node]]`: one routing node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its `node.name` (non-empty, unique).
    pub name: String,
    /// Where its control protocol listens (TCP; SWIM over UDP on the same port); `None` only for the node
    /// of a configuration without `[cluster]`.
    pub address: Option<SocketAddr>,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster (non-empty).
    pub name: String,
    /// Outer source address of GRE over IPv4; required if any target is IPv4.
    pub tunnel_source_v4: Option<Ipv4Addr>,
    /// Outer source address of GRE over IPv6; required if any target is IPv6.
    pub tunnel_source_v6: Option<Ipv6Addr>,
}

impl NodeConfig {
    /// The outer source address for GRE to `target`: the tunnel source of
    /// the target's family, if configured (a checked [`Config`] always has
    /// it for every configured target).
    pub fn tunnel_source_for(&self, target: IpAddr) -> Option<IpAddr> {
        match target {
            IpAddr::V4(_) => self.tunnel_source_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.tunnel_source_v6.map(IpAddr::V6),
        }
    }
}

/// `[forwarder]`; every key is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Flows each worker's flow table holds (≥ 4; default 1 048 576).
    pub flow_table_capacity: usize,
    /// A flow not seen for this long is forgotten (whole seconds, > 0;
    /// default 300 s).
    pub flow_idle_timeout: Duration,
    /// What to do with IPv4 / IPv6 packets whose destination is not a VIPA.
    pub not_vipa: NotVipa,
    /// Packets received / transmitted per burst (1..=64; default 32).
    pub burst_size: usize,
    /// `cores`: the CPU ids that run one worker thread each, pinned, in file
    /// order (non-empty, distinct, 0..=8191; default `[0]`). Worker `i` runs
    /// on `cores[i]` and owns queue `i` of every port.
    pub cores: Vec<usize>,
    /// `idle_sleep_us`: how long a worker sleeps after `idle_polls`
    /// consecutive polls that received nothing (0..=1 s; default 50 µs).
    /// Zero: busy-poll forever.
    pub idle_sleep: Duration,
    /// `idle_polls`: consecutive empty polls before a worker starts
    /// sleeping (1..=10⁹; default 1000).
    pub idle_polls: u32,
    /// `tx_drain_us`: the longest a partial transmit batch waits before it
    /// is sent (0..=1 s; default 100 µs; 0 = send at the end of every poll).
    pub tx_drain: Duration,
    /// `neighbor_refresh`: a resolved next hop older than this is asked
    /// again while still used (whole seconds, 1..=86400; default 30 s).
    pub neighbor_refresh: Duration,
    /// `neighbor_timeout`: a next hop not confirmed for this long is
    /// forgotten (whole seconds, more than `neighbor_refresh`, at most
    /// 86400; default 120 s).
    pub neighbor_timeout: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            flow_table_capacity: DEFAULT_FLOW_TABLE_CAPACITY,
            flow_idle_timeout: DEFAULT_FLOW_IDLE_TIMEOUT,
            not_vipa: NotVipa::Host,
            burst_size: DEFAULT_BURST_SIZE,
            cores: DEFAULT_CORES.to_vec(),
            idle_sleep: DEFAULT_IDLE_SLEEP,
            idle_polls: DEFAULT_IDLE_POLLS,
            tx_drain: DEFAULT_TX_DRAIN,
            neighbor_refresh: DEFAULT_NEIGHBOR_REFRESH,
            neighbor_timeout: DEFAULT_NEIGHBOR_TIMEOUT,
        }
    }
}

/// `[dpdk]`; every key is optional. Read only when the ports' backend is
/// `dpdk`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// `eal_args`: arguments passed to `rte_eal_init` after the program
    /// name, in file order (default none), e.g. `["--no-huge", "--no-pci",
    /// "--vdev=net_af_packet0,iface=veth0"]`.
    pub eal_args: Vec<String>,
    /// `mbufs`: mbufs in each pool (one pool per NUMA socket; 511..=16777215;
    /// default 8191).
    pub mbufs: u32,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            eal_args: Vec::new(),
            mbufs: DEFAULT_MBUFS,
        }
    }
}

/// `port.backend`: how the forwarder reaches a port's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// `"afpacket"`: Linux AF_PACKET sockets with TPACKET_V3 rings and
    /// `PACKET_FANOUT`; runs anywhere, the default.
    #[default]
    AfPacket,
    /// `"afxdp"`: AF_XDP sockets with an XDP program that passes everything
    /// else to the kernel.
    AfXdp,
    /// `"dpdk"`: a DPDK ethdev (PCI address or vdev name); needs a build
    /// with the `dpdk` feature.
    Dpdk,
}

impl Backend {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Backend::AfPacket => "afpacket",
            Backend::AfXdp => "afxdp",
            Backend::Dpdk => "dpdk",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `forwarder.not_vipa`: the fate of IP traffic not addressed to a VIPA.
/// Counted either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum NotVipa {
    /// `"host"`: hand it to the host's network stack (exception path).
    #[default]
    Host,
    /// `"drop"`: drop it.
    Drop,
}

/// `[[port]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's name (non-empty, unique).
    pub name: String,
    /// The port's own MAC address (unicast); ARP / NDP answers carry it.
    pub mac: MacAddr,
    /// IP MTU of the port (576..=9216, default 1500; see the module docs
    /// for IPv6).
    pub mtu: u16,
    /// How the port is driven (default [`Backend::AfPacket`]); the same for
    /// every port.
    pub backend: Backend,
    /// The device: an interface name for `afpacket` / `afxdp` (at most 15
    /// bytes), a PCI address or vdev name for `dpdk` (default: the port's
    /// `name`).
    pub device: String,
    /// Queues opened on the device: always the number of
    /// [`ForwarderConfig::cores`], since each worker owns one queue of every
    /// port.
    pub queues: u16,
    /// Next hop for every encapsulated frame of this port, resolved by ARP /
    /// NDP (unicast; optional).
    pub gateway: Option<IpAddr>,
    /// Static L2 next hop for encapsulated frames (unicast; optional). When
    /// absent, next hops are resolved by ARP / NDP: the `gateway`, or each
    /// target on the segment directly.
    pub next_hop_mac: Option<MacAddr>,
}

/// `[[vipa]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipaConfig {
    /// The virtual IP address (unique among VIPAs).
    pub address: IpAddr,
    /// Its services, in file order (at least one, no duplicates).
    pub services: Vec<Service>,
    /// How new flows are spread over the targets.
    pub distribution: Distribution,
    /// Maglev table size: a prime, at least the number of targets
    /// (default 65537).
    pub table_size: u32,
    /// Candidate targets, in file order (at least one, no duplicates):
    /// every target that may hold connections of this VIPA.
    pub targets: Vec<TargetConfig>,
    /// `owner`: the routing node that owns the VIPA when it is up (a
    /// `[[cluster.node]]`; default `node.name` without `[cluster]`).
    pub owner: String,
    /// `backups`: routing nodes that take the VIPA over when the owner
    /// fails, highest rank first (distinct, not the owner; default none).
    pub backups: Vec<String>,
    /// `moveable`: when the VIPA moves back to its returning owner.
    pub moveable: Moveable,
    /// `candidates`: per routing node, the targets (indices into
    /// [`Self::targets`], in the order written) it gives new connections
    /// to; a node not listed uses every target.
    pub candidates: Vec<(String, Vec<usize>)>,
}

/// `vipa.moveable`: how the VIPA goes back to its owner after a takeover
/// (Sysplex Distributor's `MOVEABLE IMMEDIATE` / `MOVEABLE WHENIDLE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Moveable {
    /// `"immediate"`: as soon as the owner is back and has collected the
    /// connections; existing connections keep their targets.
    #[default]
    Immediate,
    /// `"when-idle"`: once the backup holds no connection of the VIPA.
    WhenIdle,
}

impl VipaConfig {
    /// Builds this VIPA's Maglev table; its entries index [`Self::targets`].
    ///
    /// # Errors
    ///
    /// [`MaglevError::NoTargets`] when every target has weight 0 (all
    /// draining): the forwarder then has no target for new flows. A checked
    /// configuration cannot produce the other errors.
    pub fn maglev_table(&self) -> Result<MaglevTable, MaglevError> {
        let keys: Vec<String> = self.targets.iter().map(TargetConfig::maglev_key).collect();
        let targets: Vec<MaglevTarget<'_>> = keys
            .iter()
            .zip(&self.targets)
            .map(|(key, t)| MaglevTarget {
                key,
                weight: t.weight,
            })
            .collect();
        maglev::build(&targets, self.table_size as usize)
    }

    /// The node's rank for this VIPA: 0 for the owner, 1 for the first
    /// backup, and so on; `None` if the node may not own it.
    pub fn rank_of(&self, node: &str) -> Option<usize> {
        if self.owner == node {
            return Some(0);
        }
        self.backups.iter().position(|b| b == node).map(|i| i + 1)
    }

    /// The node of this rank (0 = owner).
    pub fn node_at_rank(&self, rank: usize) -> Option<&str> {
        match rank {
            0 => Some(&self.owner),
            r => self.backups.get(r - 1).map(String::as_str),
        }
    }

    /// The targets `node` gives new connections to: its `candidates` entry,
    /// or every target.
    pub fn candidates_for(&self, node: &str) -> Vec<TargetConfig> {
        match self.candidates.iter().find(|(n, _)| n == node) {
            Some((_, indices)) => indices.iter().map(|&i| self.targets[i]).collect(),
            None => self.targets.clone(),
        }
    }
}

/// `[[vipa.target]]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TargetConfig {
    /// The target's address; its family decides the outer (GRE) family.
    pub address: IpAddr,
    /// Relative weight (0..=65535, default 1); 0 = draining: no new flows.
    pub weight: u32,
}

impl TargetConfig {
    /// The key Maglev hashes for this target: its address as `std` prints it
    /// (IPv6 in the RFC 5952 form).
    pub fn maglev_key(&self) -> String {
        self.address.to_string()
    }
}

/// `vipa.distribution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Distribution {
    /// `"maglev"`: weighted Maglev consistent hashing ([`crate::maglev`]).
    #[default]
    Maglev,
}

/// A transport protocol a service is offered on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum L4Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl L4Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        })
    }
}

/// A service of a VIPA: `tcp/443`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Service {
    /// The transport protocol.
    pub protocol: L4Protocol,
    /// The destination port, 1..=65535.
    pub port: u16,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

/// Why a service string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceParseError {
    /// Not `tcp/PORT` or `udp/PORT`.
    #[error("is not a service; write \"tcp/PORT\" or \"udp/PORT\", e.g. \"tcp/443\"")]
    Format,
    /// The port is 0 or above 65535.
    #[error("has a port out of range; use a port from 1 to 65535")]
    Port,
}

impl FromStr for Service {
    type Err = ServiceParseError;

    /// Parses `tcp/80` or `udp/53` (lower case, decimal port 1..=65535).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (proto, port) = s.split_once('/').ok_or(ServiceParseError::Format)?;
        let protocol = match proto {
            "tcp" => L4Protocol::Tcp,
            "udp" => L4Protocol::Udp,
            _ => return Err(ServiceParseError::Format),
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ServiceParseError::Format);
        }
        match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(ServiceParseError::Port),
            Ok(port) => Ok(Service { protocol, port }),
        }
    }
}

/// A MAC address, written `02:00:00:00:0a:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The group (multicast / broadcast) bit is clear and the address is
    /// not all zeros.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A string that is not six hexadecimal bytes separated by colons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("is not a MAC address; write six two-digit hexadecimal bytes separated by colons, e.g. \"02:00:00:00:0a:01\"")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses six two-digit hexadecimal bytes separated by `:` (or all by
    /// `-`), either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

impl Config {
    /// Parses and checks `text`; `path` is only used to name the file in
    /// errors.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Syntax`] for text that is not TOML,
    /// [`ConfigError::Invalid`] for the first value that breaks the schema.
    pub fn from_str_with_path(text: &str, path: &Path) -> Result<Config, ConfigError> {
        parse::parse(text, path)
    }

    /// Reads the file at `path`, then as [`Config::from_str_with_path`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] if the file cannot be read, otherwise as
    /// [`Config::from_str_with_path`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Config::from_str_with_path(&text, path)
    }

    /// The VIPA with this address, if configured.
    pub fn vipa(&self, address: IpAddr) -> Option<&VipaConfig> {
        self.vipas.iter().find(|v| v.address == address)
    }

    /// Every target address of every VIPA, in file order, each once: the
    /// target slots the control plane assigns and the forwarder counts by.
    pub fn target_addresses(&self) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = Vec::new();
        for v in &self.vipas {
            for t in &v.targets {
                if !addresses.contains(&t.address) {
                    addresses.push(t.address);
                }
            }
        }
        addresses
    }

    /// Every (VIPA, service), in file order: the service slots the
    /// forwarder counts packets and bytes by, per target slot. The
    /// forwarder and vipa-control both number them with this, from the
    /// same configuration file.
    pub fn service_slots(&self) -> impl Iterator<Item = (IpAddr, Service)> + '_ {
        self.vipas
            .iter()
            .flat_map(|v| v.services.iter().map(move |s| (v.address, *s)))
    }

    /// The service slot of `protocol`/`port` (IP protocol number) of the
    /// VIPA `address` (see [`Config::service_slots`]).
    pub fn service_slot(&self, address: IpAddr, protocol: u8, port: u16) -> Option<usize> {
        self.service_slots()
            .position(|(a, s)| a == address && s.protocol.number() == protocol && s.port == port)
    }
}
