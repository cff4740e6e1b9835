//! Configuration errors: a sentence with the file, line, column and field.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{Backend, MacAddr, Service};

/// Where in which file: 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file, as given to [`super::Config::load`] or
    /// [`super::Config::from_str_with_path`].
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// A configuration that could not be read or used. The `Display` form is a
/// whole sentence: `vipa.toml:14:13: vipa[0].target[1].address:
/// "10.20.0.300" is not an IPv4 or IPv6 address`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration file: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why. Part of the message, and deliberately not the error's
        /// `source()`: a caller printing the chain would say it twice.
        cause: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{location}: not valid TOML: {message}")]
    Syntax {
        /// Where the parser stopped.
        location: Location,
        /// The parser's explanation.
        message: String,
    },
    /// Valid TOML that breaks the configuration's rules.
    #[error("{location}: {field}: {problem}")]
    Invalid {
        /// Where the offending value (or the table missing a key) is.
        location: Location,
        /// The field path, e.g. `vipa[0].target[1].address`.
        field: String,
        /// What is wrong and what to do (boxed to keep the error small).
        problem: Box<Problem>,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ConfigError::Read { path, .. } => path,
            ConfigError::Syntax { location, .. } | ConfigError::Invalid { location, .. } => {
                &location.path
            }
        }
    }

    /// Where in the file, unless the file could not be read.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { location, .. } | ConfigError::Invalid { location, .. } => {
                Some(location)
            }
        }
    }

    /// The 1-based line, unless the file could not be read.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|l| l.line)
    }

    /// The 1-based column, unless the file could not be read.
    pub fn column(&self) -> Option<usize> {
        self.location().map(|l| l.column)
    }

    /// The field path (`vipa[0].target[1].address`), for a rule broken.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The rule broken, if that is what happened.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Invalid { problem, .. } => Some(&**problem),
            _ => None,
        }
    }
}

/// Which addresses a key accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// Either.
    Any,
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::V4 => "an IPv4 address",
            AddressFamily::V6 => "an IPv6 address",
            AddressFamily::Any => "an IPv4 or IPv6 address",
        })
    }
}

/// What rule a value breaks; the `Display` form says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A key this table does not have (a typo, or a key in the wrong table).
    #[error("unknown key `{key}`{}; the keys allowed here are: {}",
        suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        allowed.join(", "))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The keys this table accepts.
        allowed: &'static [&'static str],
        /// The allowed key closest to the one written, if close.
        suggestion: Option<&'static str>,
    },
    /// A required key or table is absent.
    #[error("required but missing; add it, e.g. {example}")]
    Missing {
        /// What to write.
        example: &'static str,
    },
    /// A value of the wrong TOML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: &'static str,
        /// What was written.
        found: &'static str,
    },
    /// An empty string where a name is needed.
    #[error("must not be empty")]
    Empty,
    /// An integer out of its range.
    #[error("{value} is out of range; use a value from {min} to {max}")]
    OutOfRange {
        /// As written.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// One of a fixed set of strings was expected.
    #[error("{value:?} is not one of the choices; use {}", choices.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" or "))]
    UnknownChoice {
        /// As written.
        value: String,
        /// The allowed strings.
        choices: &'static [&'static str],
    },
    /// A string that is not an IP address (of the family required).
    #[error("{value:?} is not {expected}")]
    InvalidAddress {
        /// As written.
        value: String,
        /// The family the key takes.
        expected: AddressFamily,
    },
    /// An IP address that cannot be used here (unspecified, multicast,
    /// broadcast).
    #[error("{address} is {reason} address; use a unicast address")]
    UnusableAddress {
        /// The address.
        address: IpAddr,
        /// "an unspecified", "a multicast" or "the broadcast".
        reason: &'static str,
    },
    /// A string that is not a MAC address.
    #[error("{value:?} is not a MAC address; write six two-digit hexadecimal bytes separated by colons, e.g. \"02:00:00:00:0a:01\"")]
    InvalidMac {
        /// As written.
        value: String,
    },
    /// A multicast, broadcast or all-zero MAC address.
    #[error("{mac} is not a unicast MAC address (its first byte is odd, or it is all zeros); use a unicast address")]
    NotUnicastMac {
        /// The address.
        mac: MacAddr,
    },
    /// Two ports with the same name.
    #[error("port name {name:?} is already used by the port at line {first_line}; give each port its own name")]
    DuplicatePortName {
        /// The name.
        name: String,
        /// Where it was first used.
        first_line: usize,
    },
    /// No `[[port]]` at all.
    #[error("no port is configured; add at least one [[port]] table with name and mac")]
    NoPorts,
    /// `forwarder.cores` is an empty array.
    #[error(
        "no core is listed, so no worker would run; list at least one CPU id, e.g. cores = [0]"
    )]
    NoCores,
    /// The same CPU twice in `forwarder.cores`.
    #[error("CPU {core} is listed twice (first as cores[{first_index}]); each core runs one worker, list it once")]
    DuplicateCore {
        /// The CPU id.
        core: usize,
        /// Its first index in the array.
        first_index: usize,
    },
    /// `neighbor_timeout` not above `neighbor_refresh`.
    #[error("{timeout} s is not more than neighbor_refresh ({refresh} s), so next hops would be forgotten before they are refreshed; set neighbor_timeout to more than {refresh}, e.g. {}", refresh * 4)]
    NeighborTimeoutTooShort {
        /// `neighbor_timeout`, seconds.
        timeout: u64,
        /// `neighbor_refresh`, seconds.
        refresh: u64,
    },
    /// A port's `queues` differs from the number of worker cores.
    #[error("queues = {queues}, but forwarder.cores lists {cores} core{}: each worker owns one queue of every port, so queues must equal the number of cores; set queues = {cores} or remove the key", if *cores == 1 { "" } else { "s" })]
    QueuesNotCores {
        /// As written.
        queues: u16,
        /// Number of cores configured.
        cores: usize,
    },
    /// A port whose backend differs from the first port's.
    #[error("backend \"{backend}\" differs from \"{first}\", the backend of the port at line {first_line}; all ports must use one backend for now")]
    MixedBackends {
        /// This port's backend.
        backend: Backend,
        /// The first port's backend.
        first: Backend,
        /// Where the first port is.
        first_line: usize,
    },
    /// An interface name longer than Linux allows.
    #[error("{device:?} is {len} bytes long, and Linux interface names are at most 15 bytes; use the name `ip link` shows")]
    DeviceNameTooLong {
        /// As written.
        device: String,
        /// Its length in bytes.
        len: usize,
    },
    /// Both a static next-hop MAC and a gateway to resolve.
    #[error("both next_hop_mac and gateway are set, and next_hop_mac would win; keep gateway to resolve the next hop with ARP / NDP, or next_hop_mac for a static one")]
    GatewayAndStaticNextHop,
    /// Two VIPAs with the same address.
    #[error("VIPA {address} is already defined at line {first_line}; define each VIPA once")]
    DuplicateVipa {
        /// The address.
        address: IpAddr,
        /// Where it was first defined.
        first_line: usize,
    },
    /// A service string that does not parse.
    #[error("{value:?} is not a service; write \"tcp/PORT\" or \"udp/PORT\", e.g. \"tcp/443\"")]
    InvalidService {
        /// As written.
        value: String,
    },
    /// A service with port 0 or above 65535.
    #[error("{value:?} has a port out of range; service ports are 1 to 65535")]
    ServicePortOutOfRange {
        /// As written.
        value: String,
    },
    /// The same service twice in one VIPA.
    #[error("{service} is listed twice in this VIPA (first at line {first_line}); remove one")]
    DuplicateService {
        /// The service.
        service: Service,
        /// Where it was first listed.
        first_line: usize,
    },
    /// A VIPA without services.
    #[error("a VIPA needs at least one service; add e.g. services = [\"tcp/80\"]")]
    NoService,
    /// A Maglev table size that is not prime.
    #[error("{value} is not a prime number, and a Maglev table size must be prime; use {}",
        match (below, above) {
            (Some(b), Some(a)) => format!("{b} or {a}"),
            (Some(p), None) | (None, Some(p)) => p.to_string(),
            (None, None) => "65537".to_string(),
        })]
    TableSizeNotPrime {
        /// As written.
        value: u64,
        /// The nearest prime below, if in range.
        below: Option<u64>,
        /// The nearest prime above, if in range.
        above: Option<u64>,
    },
    /// Fewer slots than targets.
    #[error("table_size {value} is smaller than the number of targets ({targets}), so some would get no slot; use a prime of at least 100 times the number of targets, e.g. {suggestion}")]
    TableSizeTooSmall {
        /// The table size.
        value: u64,
        /// The number of targets.
        targets: usize,
        /// A prime that would do.
        suggestion: u64,
    },
    /// A VIPA without targets.
    #[error("a VIPA needs at least one target; add a [[vipa.target]] table with an address")]
    NoTargets,
    /// The same target twice in one VIPA.
    #[error("target {address} is listed twice in this VIPA (first at line {first_line}); remove one, or use weight to give it more traffic")]
    DuplicateTarget {
        /// The address.
        address: IpAddr,
        /// Where it was first listed.
        first_line: usize,
    },
    /// A target whose address is the VIPA itself.
    #[error("target {address} is the VIPA's own address, which would loop; use the target server's own address")]
    TargetIsVipa {
        /// The address.
        address: IpAddr,
    },
    /// A target of a family without a tunnel source on the node.
    #[error("target {address} is an {family} address, so it is reached with GRE over {family}, but node.{key} is not set; add {key} = \"…\" to [node]")]
    MissingTunnelSource {
        /// The target.
        address: IpAddr,
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// `tunnel_source_v4` or `tunnel_source_v6`.
        key: &'static str,
    },
    /// A port MTU too small for the IPv6 traffic configured.
    #[error("mtu {mtu} is too small: {reason}; set mtu to {needed} or more")]
    MtuTooSmall {
        /// The port's MTU.
        mtu: u16,
        /// The smallest that works.
        needed: u16,
        /// Why that much is needed.
        reason: String,
    },
    /// A socket address that does not parse.
    #[error("{value:?} is not an address and port; write e.g. \"10.10.0.1:7400\" or \"[fd00:10::1]:7400\"")]
    InvalidSocketAddress {
        /// As written.
        value: String,
    },
    /// Two `[[cluster.node]]` with the same name.
    #[error("node name {name:?} is already used by the node at line {first_line}; give each routing node its own name")]
    DuplicateNodeName {
        /// The name.
        name: String,
        /// Where it was first used.
        first_line: usize,
    },
    /// `node.name` is not among `[[cluster.node]]`.
    #[error("this node, {name:?} (node.name), is not listed; add a [[cluster.node]] with name = {name:?} and its address")]
    ThisNodeNotListed {
        /// `node.name`.
        name: String,
    },
    /// A node name that is not a routing node of the cluster.
    #[error("{name:?} is not a routing node of this cluster; {}",
        if known.len() == 1 && !*cluster { format!("without a [cluster] section the only node is {:?} (node.name): add [cluster] and its [[cluster.node]] tables to name others", known[0]) }
        else { format!("use one of the [[cluster.node]] names: {}", known.join(", ")) })]
    UnknownNode {
        /// As written.
        name: String,
        /// The routing nodes.
        known: Vec<String>,
        /// Whether the file has a `[cluster]` section.
        cluster: bool,
    },
    /// The owner also listed as a backup, or a backup listed twice.
    #[error("{name:?} is already {first}; a node has one rank per VIPA, list it once")]
    RankedTwice {
        /// The node.
        name: String,
        /// "the owner" or `"backups[N]"`.
        first: String,
    },
    /// A candidate that is not one of the VIPA's targets.
    #[error("{address} is not one of this VIPA's targets; candidates are chosen among the [[vipa.target]] addresses, add it there first")]
    CandidateNotTarget {
        /// The address.
        address: IpAddr,
    },
    /// The same candidate twice in one node's list.
    #[error("{address} is listed twice in this candidate list; remove one")]
    DuplicateCandidate {
        /// The address.
        address: IpAddr,
    },
    /// A node's candidate list with no target.
    #[error("the candidate list is empty, so this node would refuse every new connection; list at least one target, or remove the entry to use them all")]
    NoCandidates,
    /// `probe_timeout_ms` not below `probe_interval_ms`.
    #[error("{timeout} ms is not less than probe_interval_ms ({interval} ms); a probe must time out within its period, e.g. probe_timeout_ms = {}", interval * 2 / 5)]
    ProbeTimeoutTooLong {
        /// `probe_timeout_ms`.
        timeout: u64,
        /// `probe_interval_ms`.
        interval: u64,
    },
}
