//! Which applications listen on the VIPAs here, and which connections to
//! the VIPAs this target holds — found with netlink `sock_diag`, as `ss`
//! finds them.
//!
//! A routing node needs both from every target (DESIGN.md §6): a target is
//! *ready* for a service only while something listens on it, and a backup
//! that takes a VIPA over rebuilds its connection routing table from the
//! connections the targets report. This module produces an [`Inventory`]
//! of the two and, polled, the [`Delta`] between one inventory and the next.
//! Sending them to the owner is not its business.
//!
//! # Polling, and why
//!
//! sock_diag answers questions; it does not announce changes. Its only
//! multicast groups (`SKNLGRP_INET_TCP_DESTROY` and friends, CAP_NET_ADMIN)
//! report sockets being destroyed, never one being created, starting to
//! listen or completing a handshake, so they cannot replace a dump, and
//! tracing socket calls with eBPF would be a different, heavier agent. So
//! [`Discovery`] dumps every [`DEFAULT_INTERVAL`] (50 ms) and compares: a
//! change is seen at most 50 ms plus one dump after it happened, which
//! leaves half of the 100 ms reporting budget for the message to the owner.
//!
//! What a dump costs, measured with `examples/sockdiag_cost.rs` (Linux
//! 6.18, 2 vCPUs, 262 144-bucket established hash, release build; N
//! connections from this host to a VIPA, so 2N sockets dumped):
//!
//! | connections | CPU per inventory (user + system) | listener dumps alone |
//! |---:|---:|---:|
//! | 0 | 0.32 ms | 20 µs |
//! | 1 000 | 2.0 ms | 25 µs |
//! | 5 000 | 11 ms | 45 µs |
//! | 9 500 | 22 ms | 60 µs |
//!
//! About 1 µs of kernel time per socket in the states asked for, plus
//! about 0.15 ms per family to walk the empty established hash; parsing and
//! classifying is about a tenth of that. A LISTEN-only dump skips the
//! established hash entirely, so [`Discovery`] dumps listeners at every poll
//! and paces the connection dumps by their cost (see there). TIME-WAIT
//! sockets, the bulk on a busy server, are left out by the kernel's state
//! filter.
//!
//! # Filtering in user space
//!
//! The kernel filters by state (`idiag_states`); addresses and ports are
//! filtered here. sock_diag can also run a filter program
//! (`INET_DIAG_REQ_BYTECODE`), but its bytecode is an undocumented jump
//! language, the crate does not build it, and it would have to be rebuilt
//! and re-verified whenever the VIPAs change; a target holds few sockets
//! that are not the VIPAs' (the VIPAs are what it serves), so reading them
//! all costs little. The rules below are pure functions of the dump
//! ([`classify`]), tested with fabricated records.
//!
//! # The rules
//!
//! - **Listener.** A TCP socket in LISTEN, or a UDP socket that is bound
//!   and not connected (state CLOSE), serves `VIPA:port` when its local
//!   address is
//!   - the VIPA itself (an IPv4-mapped `::ffff:a.b.c.d` counts as `a.b.c.d`);
//!   - `0.0.0.0`: it serves every IPv4 VIPA;
//!   - `::`: it serves every IPv6 VIPA, and every IPv4 VIPA too unless it is
//!     IPv6-only. Linux accepts IPv4 on such a socket unless `IPV6_V6ONLY`
//!     is set (`net.ipv6.bindv6only` gives the default), and sock_diag says
//!     which: the kernel attaches `INET_DIAG_SKV6ONLY` to IPv6 listening and
//!     unconnected sockets. When a kernel does not, the socket is taken to
//!     be dual-stack, the Linux default.
//!
//!   A socket bound to an interface (`SO_BINDTODEVICE`) counts like any
//!   other: which interface the VIPA's packets arrive on (a GRE device, a
//!   TUN) is not known here. A connected UDP socket receives only from its
//!   peer and is not a listener.
//! - **Connection.** A TCP socket whose *local* address is a VIPA and whose
//!   local port is a *service port* (below), in a state in which the client
//!   may still send something the target must see: ESTABLISHED, and the
//!   closing states FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK
//!   (a half-closed connection still carries data; LAST-ACK still waits for
//!   the client's final ACK). Not SYN-RECV: a SYN flood would turn into a
//!   flood of reports, and a handshake the forwarder started is routed by
//!   its flow table and Maglev until it completes, a round trip later. Not
//!   TIME-WAIT: nothing more needs to reach the application. The client is
//!   the remote address and port.
//! - **Service port.** Both ends of a connection between two sockets of this
//!   host are sockets here, and both may have the VIPA as local address
//!   (a health check from the target to its own VIPA, or a program that
//!   binds the VIPA as its source address). Only the accepted socket is a
//!   connection *to* the VIPA; it is told from the client's socket by its
//!   local port:
//!   - with configured services ([`Scope::with_services`], what the owner
//!     sends with the VIPA definition), a port of a configured TCP service;
//!     a connection outlives its listener, so connections keep being
//!     reported while the application restarts (DESIGN.md §6);
//!   - without, a port on which a TCP listener serves that VIPA now. A
//!     client socket never has such a port: Linux does not pick an
//!     ephemeral port that a listener has bound. Connections whose listener
//!     is gone are then not reported; this mode is for the operator's
//!     `vipa-agent sockets`, not for reporting.
//!
//!   Listeners are filtered by the configured services too, when there are
//!   any.
//!
//! # Limits
//!
//! - Only sockets in the agent's network namespace are seen.
//! - UDP has no connections here: a UDP service is ready while a socket is
//!   bound to it; its flows are the forwarder's business.
//! - With configured services, a socket that connects *from* `VIPA:port`
//!   where `port` is a service port (possible only while nothing listens on
//!   it, with `SO_REUSEADDR`) would be taken for a connection.

pub mod output;
pub mod sockdiag;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use vipa_proto::config::{L4Protocol, Service};

use self::sockdiag::{state, DumpError, Family, SockDiag, SockRecord, SocketError};

/// How often [`Discovery`] dumps by default: a change is seen within this
/// plus one dump, half the 100 ms reporting budget.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// How many times one inventory is attempted when a dump is interrupted or
/// the socket buffer overflowed, each on a new socket, before giving up
/// until the next poll.
const ATTEMPTS: usize = 3;

/// The states in which a socket is a connection (see the module rules).
const CONNECTION_STATES: u32 = state::bit(state::ESTABLISHED)
    | state::bit(state::FIN_WAIT1)
    | state::bit(state::FIN_WAIT2)
    | state::bit(state::CLOSE_WAIT)
    | state::bit(state::CLOSING)
    | state::bit(state::LAST_ACK);

/// The UDP state dumped: bound and unconnected.
const UDP_STATES: u32 = state::bit(state::CLOSE);

// ---------------------------------------------------------------------------
// What to look for.
// ---------------------------------------------------------------------------

/// What to look for: the VIPAs, and optionally the services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    vipas: BTreeSet<IpAddr>,
    services: Option<BTreeSet<Service>>,
    udp: bool,
}

impl Scope {
    /// Listeners and connections on `vipas`, TCP and UDP, any port (an
    /// IPv4-mapped IPv6 address is taken as the IPv4 address).
    pub fn new(vipas: impl IntoIterator<Item = IpAddr>) -> Scope {
        Scope {
            vipas: vipas.into_iter().map(|ip| ip.to_canonical()).collect(),
            services: None,
            udp: true,
        }
    }

    /// Only these services: listeners on their ports, and connections to
    /// their TCP ports whether or not a listener is there now.
    pub fn with_services(mut self, services: impl IntoIterator<Item = Service>) -> Scope {
        self.services = Some(services.into_iter().collect());
        self
    }

    /// Whether to dump UDP sockets at all (only UDP listeners are reported).
    pub fn with_udp(mut self, udp: bool) -> Scope {
        self.udp = udp;
        self
    }

    /// The VIPAs.
    pub fn vipas(&self) -> &BTreeSet<IpAddr> {
        &self.vipas
    }

    /// The configured services, if any.
    pub fn services(&self) -> Option<&BTreeSet<Service>> {
        self.services.as_ref()
    }

    /// Whether UDP is looked at: asked for, and (when services are
    /// configured) some service is UDP.
    pub fn wants_udp(&self) -> bool {
        self.udp
            && self
                .services
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s.protocol == L4Protocol::Udp))
    }

    fn port_in_scope(&self, protocol: L4Protocol, port: u16) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.contains(&Service { protocol, port }))
    }

    /// The VIPAs a socket bound to `local` serves (see the module rules).
    fn served_by(&self, local: IpAddr, v6only: Option<bool>) -> impl Iterator<Item = IpAddr> + '_ {
        let local = local.to_canonical();
        let any_v4 = local == IpAddr::from([0u8; 4]);
        let any_v6 = local == IpAddr::from([0u16; 8]);
        let dual_stack = any_v6 && v6only != Some(true);
        self.vipas.iter().copied().filter(move |&vipa| match vipa {
            IpAddr::V4(_) => vipa == local || any_v4 || dual_stack,
            IpAddr::V6(_) => vipa == local || any_v6,
        })
    }
}

// ---------------------------------------------------------------------------
// What was found.
// ---------------------------------------------------------------------------

/// An application listening on a service of a VIPA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    /// TCP or UDP.
    pub protocol: L4Protocol,
    /// `VIPA:port` — what it serves, not what it is bound to (a wildcard
    /// listener appears once per VIPA it serves).
    pub service: SocketAddr,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.service)
    }
}

/// A TCP connection from a client to a service of a VIPA, held here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Connection {
    /// `VIPA:port`, the local end.
    pub service: SocketAddr,
    /// The client's address and port, the remote end.
    pub client: SocketAddr,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp {} <- {}", self.service, self.client)
    }
}

/// The listeners and connections on the VIPAs at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Services something listens on.
    pub listeners: BTreeSet<Listener>,
    /// Connections to the VIPAs' services.
    pub connections: BTreeSet<Connection>,
}

/// What changed from one [`Inventory`] to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Listeners that appeared.
    pub listeners_added: BTreeSet<Listener>,
    /// Listeners that went away.
    pub listeners_removed: BTreeSet<Listener>,
    /// Connections that appeared.
    pub connections_added: BTreeSet<Connection>,
    /// Connections that went away.
    pub connections_removed: BTreeSet<Connection>,
}

impl Inventory {
    /// What changed from `self` to `newer`.
    pub fn diff(&self, newer: &Inventory) -> Delta {
        Delta {
            listeners_added: newer
                .listeners
                .difference(&self.listeners)
                .copied()
                .collect(),
            listeners_removed: self
                .listeners
                .difference(&newer.listeners)
                .copied()
                .collect(),
            connections_added: newer
                .connections
                .difference(&self.connections)
                .copied()
                .collect(),
            connections_removed: self
                .connections
                .difference(&newer.connections)
                .copied()
                .collect(),
        }
    }

    /// Applies `delta` (the receiving end of a stream of deltas):
    /// `old.apply(&old.diff(&new))` makes `old` equal to `new`.
    pub fn apply(&mut self, delta: &Delta) {
        for l in &delta.listeners_removed {
            self.listeners.remove(l);
        }
        self.listeners.extend(delta.listeners_added.iter().copied());
        for c in &delta.connections_removed {
            self.connections.remove(c);
        }
        self.connections
            .extend(delta.connections_added.iter().copied());
    }

    /// The part of this inventory whose services have one of `ports` (for
    /// tests and tools that share a host with other programs).
    pub fn restricted_to_ports(&self, ports: &[u16]) -> Inventory {
        Inventory {
            listeners: self
                .listeners
                .iter()
                .filter(|l| ports.contains(&l.service.port()))
                .copied()
                .collect(),
            connections: self
                .connections
                .iter()
                .filter(|c| ports.contains(&c.service.port()))
                .copied()
                .collect(),
        }
    }
}

impl Delta {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.listeners_added.is_empty()
            && self.listeners_removed.is_empty()
            && self.connections_added.is_empty()
            && self.connections_removed.is_empty()
    }

    /// How many listeners and connections were added or removed.
    pub fn len(&self) -> usize {
        self.listeners_added.len()
            + self.listeners_removed.len()
            + self.connections_added.len()
            + self.connections_removed.len()
    }
}

/// The inventory of `records` (one complete dump of each protocol and
/// family looked at) under `scope`, by the module's rules. Pure.
pub fn classify<'a>(
    scope: &Scope,
    records: impl IntoIterator<Item = &'a SockRecord> + Clone,
) -> Inventory {
    let mut inventory = Inventory::default();
    for r in records.clone() {
        let listening = match r.protocol {
            L4Protocol::Tcp => r.state == state::LISTEN,
            L4Protocol::Udp => r.state == state::CLOSE && r.local.port() != 0,
        };
        if !listening || !scope.port_in_scope(r.protocol, r.local.port()) {
            continue;
        }
        for vipa in scope.served_by(r.local.ip(), r.v6only) {
            inventory.listeners.insert(Listener {
                protocol: r.protocol,
                service: SocketAddr::new(vipa, r.local.port()),
            });
        }
    }
    for r in records {
        let local = SocketAddr::new(r.local.ip().to_canonical(), r.local.port());
        let is_connection = r.protocol == L4Protocol::Tcp
            && CONNECTION_STATES & state::bit(r.state) != 0
            && scope.vipas.contains(&local.ip())
            && match scope.services {
                Some(_) => scope.port_in_scope(L4Protocol::Tcp, local.port()),
                None => inventory.listeners.contains(&Listener {
                    protocol: L4Protocol::Tcp,
                    service: local,
                }),
            };
        if is_connection {
            inventory.connections.insert(Connection {
                service: local,
                client: SocketAddr::new(r.remote.ip().to_canonical(), r.remote.port()),
            });
        }
    }
    inventory
}

// ---------------------------------------------------------------------------
// Change detection.
// ---------------------------------------------------------------------------

/// Remembers the last inventory and says what changed. Pure.
#[derive(Clone, Debug, Default)]
pub struct ChangeDetector {
    current: Inventory,
}

impl ChangeDetector {
    /// Starts from an empty inventory: the first update reports everything
    /// as added.
    pub fn new() -> ChangeDetector {
        ChangeDetector::default()
    }

    /// Takes a new inventory; returns what changed, or `None` when nothing
    /// did.
    pub fn update(&mut self, newer: Inventory) -> Option<Delta> {
        let delta = self.current.diff(&newer);
        self.current = newer;
        (!delta.is_empty()).then_some(delta)
    }

    /// The last inventory taken.
    pub fn current(&self) -> &Inventory {
        &self.current
    }
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// Why an inventory could not be taken. The poller keeps its last
/// inventory and tries again at the next poll.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The kernel has no sock_diag handler for TCP.
    #[error("the kernel cannot list TCP sockets through sock_diag ({family}: {detail}); load the modules (`modprobe tcp_diag inet_diag`) or use a kernel with CONFIG_INET_TCP_DIAG")]
    TcpDiagMissing {
        /// The family that failed.
        family: &'static str,
        /// The system's error.
        detail: String,
    },
    /// The socket could not be opened or a dump failed.
    #[error("listing sockets with sock_diag failed: {0}")]
    Socket(#[from] SocketError),
}

// ---------------------------------------------------------------------------
// The poller.
// ---------------------------------------------------------------------------

/// Figures about the dumps a [`Discovery`] ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    /// Inventories taken.
    pub inventories: u64,
    /// Inventories that failed (after retries).
    pub failures: u64,
    /// Attempts thrown away and repeated (interrupted dump, ENOBUFS).
    pub retries: u64,
    /// Listening sockets in the last listener dumps (all of them, not only
    /// the VIPAs').
    pub last_listener_sockets: usize,
    /// Wall time of the last listener dumps (TCP and UDP, both families).
    pub last_listener_dump: Duration,
    /// Connected sockets in the last connection dumps (all of them).
    pub last_connection_sockets: usize,
    /// Wall time of the last connection dumps (both families).
    pub last_connection_dump: Duration,
    /// The interval between connection dumps now: the poll interval, or
    /// longer when a dump is expensive (see [`Discovery`]).
    pub connection_interval: Duration,
    /// Whether UDP turned out not to be listable (no `udp_diag`); UDP is
    /// then left out.
    pub udp_unavailable: bool,
}

/// At most this share of one core goes to connection dumps: a dump that
/// took `t` is followed by the next one no sooner than `t × this`.
const CONNECTION_DUMP_SPACING: u32 = 10;

/// Dumps sockets every interval and reports what changed.
///
/// Each poll runs two kinds of dumps. The *listener* dumps (TCP LISTEN,
/// UDP unconnected) are cheap whatever the number of connections — the
/// kernel then walks only its listening and bind tables — and run at every
/// poll, so readiness changes are always seen within one interval. The
/// *connection* dumps walk the whole established-socket table and cost about
/// a microsecond of kernel time per socket in the states asked for (measured,
/// see `examples/sockdiag_cost.rs`); they run at every poll too, unless the
/// last one took more than a tenth of the interval: then the next waits ten
/// times as long as the last took, which holds them to a tenth of one core.
/// Up to a few thousand connections that never stretches a 50 ms interval;
/// with tens of thousands, connection changes are seen later (a connection
/// not yet reported is still routed right by the forwarder's flow table and
/// Maglev, DESIGN.md §4).
///
/// The caller owns the clock: [`Discovery::poll`] takes `now`, and
/// [`Discovery::poll_timeout`] says when to call it next. `poll` blocks for
/// the duration of the dumps (a few netlink round trips).
#[derive(Debug)]
pub struct Discovery {
    scope: Scope,
    interval: Duration,
    diag: Option<SockDiag>,
    detector: ChangeDetector,
    next_poll: Option<Instant>,
    next_connection_dump: Option<Instant>,
    listening: Vec<SockRecord>,
    connected: Vec<SockRecord>,
    stats: DumpStats,
}

impl Discovery {
    /// A poller for `scope` that dumps every `interval` (at least 1 ms).
    pub fn new(scope: Scope, interval: Duration) -> Discovery {
        let interval = interval.max(Duration::from_millis(1));
        Discovery {
            scope,
            interval,
            diag: None,
            detector: ChangeDetector::new(),
            next_poll: None,
            next_connection_dump: None,
            listening: Vec::new(),
            connected: Vec::new(),
            stats: DumpStats {
                connection_interval: interval,
                ..DumpStats::default()
            },
        }
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Changes what to look for (the owner sent new VIPA definitions); the
    /// next poll dumps everything at once and reports the difference.
    pub fn set_scope(&mut self, scope: Scope) {
        self.scope = scope;
        self.next_poll = None;
        self.next_connection_dump = None;
    }

    /// When [`Discovery::poll`] has work to do; `None`: now.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_poll
    }

    /// The last inventory taken (empty before the first).
    pub fn inventory(&self) -> &Inventory {
        self.detector.current()
    }

    /// Figures about the dumps so far.
    pub fn stats(&self) -> &DumpStats {
        &self.stats
    }

    /// If a poll is due at `now`, dumps and returns what changed since the
    /// last inventory (everything, the first time). On error the last
    /// inventory stands and the next attempt is one interval later.
    pub fn poll(&mut self, now: Instant) -> Result<Option<Delta>, DiscoveryError> {
        if self.next_poll.is_some_and(|due| now < due) {
            return Ok(None);
        }
        self.next_poll = Some(now + self.interval);
        let connections_due = self.next_connection_dump.is_none_or(|due| now >= due);
        let inventory = self.dump(connections_due)?;
        if connections_due {
            self.stats.connection_interval =
                connection_interval(self.interval, self.stats.last_connection_dump);
            self.next_connection_dump = Some(now + self.stats.connection_interval);
        }
        Ok(self.detector.update(inventory))
    }

    /// Dumps everything now and returns the inventory, without touching
    /// the change detector.
    pub fn take_inventory(&mut self) -> Result<Inventory, DiscoveryError> {
        self.dump(true)
    }

    /// The listener dumps, the connection dumps if `connections`, and the
    /// inventory of their records (the last connection records when the
    /// connections are not dumped). Retries transient failures.
    fn dump(&mut self, connections: bool) -> Result<Inventory, DiscoveryError> {
        self.stats.inventories += 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.dump_once(connections) {
                Ok(()) => {
                    let records = self.listening.iter().chain(&self.connected);
                    return Ok(classify(&self.scope, records));
                }
                Err(e) => {
                    // Whatever the error, the socket may have a dump running:
                    // never reuse it.
                    self.diag = None;
                    if attempt < ATTEMPTS && is_transient(&e) {
                        self.stats.retries += 1;
                        continue;
                    }
                    self.stats.failures += 1;
                    return Err(e);
                }
            }
        }
    }

    fn dump_once(&mut self, connections: bool) -> Result<(), DiscoveryError> {
        let diag = match self.diag.take() {
            Some(diag) => diag,
            None => SockDiag::open()?,
        };
        let diag = self.diag.insert(diag);

        let started = Instant::now();
        self.listening.clear();
        dump_tcp(diag, state::bit(state::LISTEN), &mut self.listening)?;
        if self.scope.wants_udp() && !self.stats.udp_unavailable {
            for family in Family::BOTH {
                let before = self.listening.len();
                match diag.dump(family, L4Protocol::Udp, UDP_STATES, &mut self.listening) {
                    Ok(()) => {}
                    Err(SocketError::Dump(DumpError::Kernel { errno, .. }))
                        if errno == libc::ENOENT =>
                    {
                        // No udp_diag in this kernel: say so once, go on
                        // with TCP. The error ended the dump cleanly, so the
                        // socket is still usable.
                        tracing::warn!(
                            "this kernel cannot list UDP sockets through sock_diag (no udp_diag module: `modprobe udp_diag`); UDP listeners are not reported"
                        );
                        self.stats.udp_unavailable = true;
                        self.listening.truncate(before);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.stats.last_listener_dump = started.elapsed();
        self.stats.last_listener_sockets = self.listening.len();

        if connections {
            let started = Instant::now();
            self.connected.clear();
            dump_tcp(diag, CONNECTION_STATES, &mut self.connected)?;
            self.stats.last_connection_dump = started.elapsed();
            self.stats.last_connection_sockets = self.connected.len();
        }
        Ok(())
    }
}

/// The time from one connection dump to the next: the poll interval, or
/// [`CONNECTION_DUMP_SPACING`] times what the last one took if that is
/// longer.
fn connection_interval(interval: Duration, last_dump: Duration) -> Duration {
    last_dump
        .saturating_mul(CONNECTION_DUMP_SPACING)
        .max(interval)
}

/// Dumps TCP sockets of both families in `states`.
fn dump_tcp(
    diag: &mut SockDiag,
    states: u32,
    out: &mut Vec<SockRecord>,
) -> Result<(), DiscoveryError> {
    for family in Family::BOTH {
        diag.dump(family, L4Protocol::Tcp, states, out)
            .map_err(|e| match e {
                SocketError::Dump(DumpError::Kernel { errno, .. }) if errno == libc::ENOENT => {
                    DiscoveryError::TcpDiagMissing {
                        family: family.name(),
                        detail: std::io::Error::from_raw_os_error(errno).to_string(),
                    }
                }
                e => DiscoveryError::Socket(e),
            })?;
    }
    Ok(())
}

/// Errors worth an immediate new attempt on a new socket.
fn is_transient(e: &DiscoveryError) -> bool {
    match e {
        DiscoveryError::Socket(SocketError::Dump(DumpError::Interrupted))
        | DiscoveryError::Socket(SocketError::Dump(DumpError::Overrun)) => true,
        DiscoveryError::Socket(SocketError::Io { source, .. }) => {
            source.raw_os_error() == Some(libc::ENOBUFS)
        }
        _ => false,
    }
}

/// One inventory of `scope`, now.
pub fn inventory(scope: &Scope) -> Result<Inventory, DiscoveryError> {
    Discovery::new(scope.clone(), DEFAULT_INTERVAL).take_inventory()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIPA4: &str = "10.99.0.100";
    const VIPA4B: &str = "10.99.0.101";
    const VIPA6: &str = "fd00:99::100";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn scope() -> Scope {
        Scope::new([ip(VIPA4), ip(VIPA4B), ip(VIPA6)])
    }

    fn rec(protocol: L4Protocol, state: u8, local: &str, remote: &str) -> SockRecord {
        let local = sa(local);
        SockRecord {
            protocol,
            family: if local.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            },
            state,
            local: sockdiag::unmapped(local.ip(), local.port()),
            remote: sa(remote),
            v6only: local.is_ipv6().then_some(false),
            interface: 0,
            uid: 0,
            inode: 1,
        }
    }

    fn tcp_listen(local: &str) -> SockRecord {
        let any = if sa(local).is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        rec(L4Protocol::Tcp, state::LISTEN, local, any)
    }

    fn tcp(state: u8, local: &str, remote: &str) -> SockRecord {
        rec(L4Protocol::Tcp, state, local, remote)
    }

    fn listeners(inv: &Inventory) -> Vec<String> {
        inv.listeners.iter().map(|l| l.to_string()).collect()
    }

    fn connections(inv: &Inventory) -> Vec<String> {
        inv.connections.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn a_listener_on_a_vipa_serves_that_vipa_only() {
        let inv = classify(
            &scope(),
            &[
                tcp_listen("10.99.0.100:80"),
                tcp_listen("[fd00:99::100]:443"),
                tcp_listen("127.0.0.1:80"),            // not a VIPA
                tcp_listen("10.99.0.200:8080"),        // not a VIPA
                tcp_listen("[::ffff:10.99.0.101]:25"), // mapped: the IPv4 VIPA
            ],
        );
        assert_eq!(
            listeners(&inv),
            [
                "tcp 10.99.0.100:80",
                "tcp 10.99.0.101:25",
                "tcp [fd00:99::100]:443"
            ]
        );
    }

    #[test]
    fn wildcard_listeners_serve_every_vipa_of_their_families() {
        let v4_any = classify(&scope(), &[tcp_listen("0.0.0.0:80")]);
        assert_eq!(
            listeners(&v4_any),
            ["tcp 10.99.0.100:80", "tcp 10.99.0.101:80"]
        );

        let mut dual = tcp_listen("[::]:80");
        dual.v6only = Some(false);
        let mut unknown = tcp_listen("[::]:81");
        unknown.v6only = None;
        let mut v6only = tcp_listen("[::]:82");
        v6only.v6only = Some(true);
        let inv = classify(&scope(), &[dual, unknown, v6only]);
        assert_eq!(
            listeners(&inv),
            [
                "tcp 10.99.0.100:80",
                "tcp 10.99.0.100:81",
                "tcp 10.99.0.101:80",
                "tcp 10.99.0.101:81",
                "tcp [fd00:99::100]:80",
                "tcp [fd00:99::100]:81",
                "tcp [fd00:99::100]:82",
            ]
        );
    }

    #[test]
    fn udp_listeners_are_bound_unconnected_sockets() {
        let inv = classify(
            &scope(),
            &[
                rec(L4Protocol::Udp, state::CLOSE, "10.99.0.100:53", "0.0.0.0:0"),
                rec(L4Protocol::Udp, state::CLOSE, "0.0.0.0:123", "0.0.0.0:0"),
                // Connected: receives only from its peer.
                rec(
                    L4Protocol::Udp,
                    state::ESTABLISHED,
                    "10.99.0.100:54",
                    "10.0.0.1:9",
                ),
                // No port (cannot normally be dumped, but must not count).
                rec(L4Protocol::Udp, state::CLOSE, "10.99.0.100:0", "0.0.0.0:0"),
            ],
        );
        assert_eq!(
            listeners(&inv),
            [
                "udp 10.99.0.100:53",
                "udp 10.99.0.100:123",
                "udp 10.99.0.101:123"
            ]
        );
        assert!(inv.connections.is_empty());
    }

    #[test]
    fn the_accepted_socket_is_the_connection_and_the_client_socket_is_not() {
        // A client on this host connecting to its own VIPA: both ends have
        // the VIPA as local address.
        let records = [
            tcp_listen("10.99.0.100:80"),
            tcp(state::ESTABLISHED, "10.99.0.100:80", "10.99.0.100:40000"), // accepted
            tcp(state::ESTABLISHED, "10.99.0.100:40000", "10.99.0.100:80"), // client
            tcp(state::ESTABLISHED, "10.99.0.100:80", "192.0.2.7:5555"),    // remote client
        ];
        let inv = classify(&scope(), &records);
        assert_eq!(
            connections(&inv),
            [
                "tcp 10.99.0.100:80 <- 10.99.0.100:40000",
                "tcp 10.99.0.100:80 <- 192.0.2.7:5555"
            ]
        );
    }

    #[test]
    fn connections_need_a_vipa_and_a_live_state() {
        let records = [
            tcp_listen("0.0.0.0:80"),
            tcp(state::ESTABLISHED, "10.99.0.7:80", "192.0.2.1:1"), // not a VIPA
            tcp(state::SYN_RECV, "10.99.0.100:80", "192.0.2.1:2"),
            tcp(state::TIME_WAIT, "10.99.0.100:80", "192.0.2.1:3"),
            tcp(state::FIN_WAIT1, "10.99.0.100:80", "192.0.2.1:4"),
            tcp(state::FIN_WAIT2, "10.99.0.100:80", "192.0.2.1:5"),
            tcp(state::CLOSE_WAIT, "10.99.0.100:80", "192.0.2.1:6"),
            tcp(state::CLOSING, "10.99.0.100:80", "192.0.2.1:7"),
            tcp(state::LAST_ACK, "10.99.0.100:80", "192.0.2.1:8"),
            tcp(state::ESTABLISHED, "10.99.0.101:80", "192.0.2.1:9"),
        ];
        let clients: Vec<u16> = classify(&scope(), &records)
            .connections
            .iter()
            .map(|c| c.client.port())
            .collect();
        assert_eq!(clients, [4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_are_ipv4_connections() {
        let records = [
            tcp_listen("[::]:80"),
            tcp(
                state::ESTABLISHED,
                "[::ffff:10.99.0.100]:80",
                "[::ffff:192.0.2.1]:1234",
            ),
        ];
        let inv = classify(&scope(), &records);
        assert_eq!(connections(&inv), ["tcp 10.99.0.100:80 <- 192.0.2.1:1234"]);
    }

    #[test]
    fn without_services_a_connection_needs_its_listener() {
        let accepted = tcp(state::ESTABLISHED, "10.99.0.100:80", "192.0.2.1:1");
        assert!(classify(&scope(), std::slice::from_ref(&accepted))
            .connections
            .is_empty());
        // A listener on another VIPA's port 80 does not count for this VIPA.
        let inv = classify(&scope(), &[tcp_listen("10.99.0.101:80"), accepted]);
        assert!(inv.connections.is_empty());
    }

    #[test]
    fn with_services_connections_outlive_their_listener() {
        let scope = scope().with_services(["tcp/80".parse().unwrap(), "udp/53".parse().unwrap()]);
        let records = [
            // The application restarts: no listener, the connection stays.
            tcp(state::ESTABLISHED, "10.99.0.100:80", "192.0.2.1:1"),
            // Not a service port.
            tcp(state::ESTABLISHED, "10.99.0.100:8080", "192.0.2.1:2"),
            tcp_listen("10.99.0.100:8080"),
            rec(L4Protocol::Udp, state::CLOSE, "10.99.0.100:53", "0.0.0.0:0"),
            rec(L4Protocol::Udp, state::CLOSE, "10.99.0.100:80", "0.0.0.0:0"),
        ];
        let inv = classify(&scope, &records);
        assert_eq!(listeners(&inv), ["udp 10.99.0.100:53"]);
        assert_eq!(connections(&inv), ["tcp 10.99.0.100:80 <- 192.0.2.1:1"]);
    }

    #[test]
    fn udp_is_dumped_only_when_wanted() {
        assert!(scope().wants_udp());
        assert!(!scope().with_udp(false).wants_udp());
        assert!(!scope()
            .with_services(["tcp/80".parse().unwrap()])
            .wants_udp());
        assert!(scope()
            .with_services(["udp/53".parse().unwrap()])
            .wants_udp());
    }

    #[test]
    fn mapped_vipas_are_taken_as_ipv4() {
        let s = Scope::new([ip("::ffff:10.99.0.100")]);
        assert_eq!(s.vipas().iter().collect::<Vec<_>>(), [&ip(VIPA4)]);
    }

    fn listener(s: &str) -> Listener {
        Listener {
            protocol: L4Protocol::Tcp,
            service: sa(s),
        }
    }

    fn conn(client: &str) -> Connection {
        Connection {
            service: sa("10.99.0.100:80"),
            client: sa(client),
        }
    }

    #[test]
    fn expensive_connection_dumps_are_spaced_out() {
        let ms = Duration::from_millis;
        assert_eq!(connection_interval(ms(50), ms(0)), ms(50));
        assert_eq!(connection_interval(ms(50), ms(5)), ms(50));
        assert_eq!(connection_interval(ms(50), ms(8)), ms(80));
        assert_eq!(connection_interval(ms(50), Duration::MAX), Duration::MAX);
    }

    #[test]
    fn diff_says_what_was_added_and_removed() {
        let old = Inventory {
            listeners: [listener("10.99.0.100:80"), listener("10.99.0.100:81")].into(),
            connections: [conn("192.0.2.1:1"), conn("192.0.2.1:2")].into(),
        };
        let new = Inventory {
            listeners: [listener("10.99.0.100:80"), listener("10.99.0.100:82")].into(),
            connections: [conn("192.0.2.1:2"), conn("192.0.2.1:3")].into(),
        };
        let d = old.diff(&new);
        assert_eq!(d.listeners_added, [listener("10.99.0.100:82")].into());
        assert_eq!(d.listeners_removed, [listener("10.99.0.100:81")].into());
        assert_eq!(d.connections_added, [conn("192.0.2.1:3")].into());
        assert_eq!(d.connections_removed, [conn("192.0.2.1:1")].into());
        assert_eq!(d.len(), 4);
        let mut applied = old.clone();
        applied.apply(&d);
        assert_eq!(applied, new);
        assert!(new.diff(&new).is_empty());
    }

    #[test]
    fn the_detector_reports_everything_first_then_only_changes() {
        let inv = Inventory {
            listeners: [listener("10.99.0.100:80")].into(),
            connections: [conn("192.0.2.1:1")].into(),
        };
        let mut d = ChangeDetector::new();
        let first = d.update(inv.clone()).expect("everything is new");
        assert_eq!(first.listeners_added, inv.listeners);
        assert_eq!(first.connections_added, inv.connections);
        assert_eq!(d.update(inv.clone()), None);
        let gone = d.update(Inventory::default()).expect("all gone");
        assert_eq!(gone.connections_removed, inv.connections);
        assert_eq!(d.current(), &Inventory::default());
    }

    #[test]
    fn restricted_to_ports_keeps_only_those_services() {
        let inv = Inventory {
            listeners: [listener("10.99.0.100:80"), listener("10.99.0.100:81")].into(),
            connections: [conn("192.0.2.1:1")].into(),
        };
        let r = inv.restricted_to_ports(&[81]);
        assert_eq!(r.listeners, [listener("10.99.0.100:81")].into());
        assert!(r.connections.is_empty());
    }

    fn arb_inventory() -> impl proptest::strategy::Strategy<Value = Inventory> {
        use proptest::prelude::*;
        let l = (0u16..8).prop_map(|p| listener(&format!("10.99.0.100:{p}")));
        let c = (0u16..16).prop_map(|p| conn(&format!("192.0.2.1:{p}")));
        (
            proptest::collection::btree_set(l, 0..6),
            proptest::collection::btree_set(c, 0..10),
        )
            .prop_map(|(listeners, connections)| Inventory {
                listeners,
                connections,
            })
    }

    proptest::proptest! {
        #[test]
        fn applying_a_diff_gives_the_newer_inventory(old in arb_inventory(), new in arb_inventory()) {
            let d = old.diff(&new);
            let mut applied = old.clone();
            applied.apply(&d);
            proptest::prop_assert_eq!(&applied, &new);
            proptest::prop_assert!(d.listeners_added.is_disjoint(&d.listeners_removed));
            proptest::prop_assert_eq!(d.is_empty(), old == new);
        }
    }
}
