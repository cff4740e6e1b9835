//! `vipa-control`: the routing node's driver.
//!
//! One task owns a [`Core`] (the [`Node`] state machine and what the
//! daemon adds: snapshot channel, back channel, operator state) and
//! selects over: control messages from the listener tasks, the state
//! machine's deadline, HTTP API requests, and a 10 ms tick that drains the
//! forwarder's new-flow events. The HTTP server and the listeners are
//! separate tasks that talk to it through channels, so nothing else
//! touches the state machine.
//!
//! # Limits
//!
//! - `Event::Announce` is logged only: the gratuitous ARP / unsolicited NA
//!   are the forwarder's to send, with the MAC of each of its ports, and
//!   it sends them when it switches to a snapshot whose owned VIPAs
//!   changed (`forwarder/src/worker.rs`), i.e. right after the snapshot
//!   that makes this node the owner is published.
//! - At start the daemon publishes an empty snapshot (no VIPA owned), so
//!   start it before the forwarder: a forwarder that finds no generation
//!   routes with its configuration's tables, every VIPA owned.
//! - Without `--snapshot` the daemon runs the protocol and the API but
//!   routes nothing (no forwarder to tell).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use vipa_proto::config::{Config, Service};
use vipa_proto::ctl::Hello;

use super::api::{self, ApiRequest, Response};
use super::convert::{self, Slots};
use super::forwarder::Watch;
use super::transport::{self, Admit, NetStats, Outbox, Resolve};
use crate::cluster::{Event, Node, Peer, Role, Snapshot, Transmit};
use crate::snapshot::{BackReader, ForwarderState, WriteError, Writer};
use vipa_proto::ctl::Message;

/// How often the forwarder's new-flow events are read.
pub const BACK_POLL: Duration = Duration::from_millis(10);
/// New-flow events taken per tick.
const EVENTS_PER_TICK: usize = 4096;
/// How often the daemon looks whether a restarted forwarder replaced its
/// back channel (one `stat`).
const BACK_RECHECK_MS: u64 = 500;

/// What `vipa-control` runs with.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The configuration (`node.name` is this node).
    pub config: Config,
    /// The snapshot channel prefix shared with `vipa-forwarder run
    /// --snapshot`; `None`: publish nothing.
    pub snapshot: Option<String>,
    /// Overrides `cluster.api`.
    pub api: Option<SocketAddr>,
}

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// This node has no address to listen on.
    #[error("node \"{0}\" (node.name) has no address: add [cluster] with a [[cluster.node]] for it (name = \"{0}\", address = \"IP:PORT\"), so that the other nodes and the agents can reach it")]
    NoAddress(String),
    /// A socket cannot be bound.
    #[error("cannot listen on {addr} ({what}): {source}; is another vipa-control running there, or is the address not configured on this host?")]
    Bind {
        /// What it is for.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot channel cannot be opened.
    #[error("snapshot channel {prefix}: {source}")]
    Snapshot {
        /// The prefix.
        prefix: String,
        /// Why.
        source: WriteError,
    },
}

/// The state the driver task owns.
pub struct Core {
    /// The state machine.
    pub node: Node,
    pub(crate) config: Config,
    slots: Slots,
    /// VIPAs the operator deactivated on this node.
    pub(crate) deactivated: BTreeSet<IpAddr>,
    /// When each VIPA's role here last changed (wall clock; the daemon's
    /// start for a VIPA that has not changed role).
    pub(crate) role_since: BTreeMap<IpAddr, SystemTime>,
    writer: Option<Writer>,
    prefix: Option<String>,
    back: Option<BackReader>,
    /// The back channel has been read without error since it was opened.
    back_worked: bool,
    /// Why the back channel cannot be read, when it cannot.
    back_error: Option<String>,
    /// When the daemon last looked whether the back channel was replaced.
    back_checked: u64,
    /// When each forwarder worker last moved (for its health).
    pub(crate) watch: Watch,
    /// When the daemon started (wall clock).
    pub(crate) started: SystemTime,
    /// Per peer, when it was last heard from (the daemon's clock, ms).
    pub(crate) heard: BTreeMap<Peer, Heard>,
    /// The last snapshot the state machine asked for.
    pub(crate) routed: Snapshot,
    /// Parallel to `routed.vipas[i].crt`: when each connection entered
    /// this node's CRT (wall clock, ms since the Unix epoch).
    pub(crate) crt_since: Vec<Vec<u64>>,
    pub(crate) stats: CoreStats,
    pub(crate) net: Arc<NetStats>,
}

/// The daemon's own counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreStats {
    /// Snapshots published.
    pub published: u64,
    /// Snapshots that could not be published.
    pub publish_errors: u64,
    /// The last generation published.
    pub generation: u64,
    /// New-flow events read from the forwarder.
    pub new_flows: u64,
    /// Announcements asked for.
    pub announcements: u64,
    /// When the last generation was published (wall clock).
    pub published_at: Option<SystemTime>,
}

/// When a peer was last heard from (the daemon's clock, ms).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// Any message.
    pub any: u64,
    /// A report (an agent's listeners and connections).
    pub report: Option<u64>,
}

impl Core {
    /// A core for `config`'s node, publishing with `writer` (if any).
    pub fn new(
        config: Config,
        now: u64,
        generation: u64,
        writer: Option<(String, Writer)>,
        net: Arc<NetStats>,
    ) -> Self {
        let node = Node::new(
            &config.node.name,
            &config.cluster,
            &config.vipas,
            generation,
            generation ^ u64::from(std::process::id()),
            now,
        );
        let (prefix, writer) = match writer {
            Some((p, w)) => (Some(p), Some(w)),
            None => (None, None),
        };
        let started = SystemTime::now();
        let role_since = config.vipas.iter().map(|v| (v.address, started)).collect();
        Core {
            node,
            slots: Slots::from_config(&config),
            config,
            deactivated: BTreeSet::new(),
            role_since,
            writer,
            prefix,
            back: None,
            back_worked: false,
            back_error: None,
            back_checked: 0,
            watch: Watch::default(),
            started,
            heard: BTreeMap::new(),
            routed: Snapshot::default(),
            crt_since: Vec::new(),
            stats: CoreStats::default(),
            net,
        }
    }

    /// Hands every queued transmit to `send` and carries out every event.
    pub fn drain(&mut self, mut send: impl FnMut(Transmit)) {
        loop {
            while let Some(t) = self.node.poll_transmit() {
                send(t);
            }
            match self.node.poll_event() {
                Some(e) => self.event(e),
                None => break,
            }
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::PublishSnapshot(s) => {
                self.crt_since = carry_since(&self.routed, &self.crt_since, &s, super::wall_ms());
                self.routed = s;
                self.publish();
            }
            Event::Announce { vipa, epoch } => {
                self.stats.announcements += 1;
                tracing::info!(%vipa, %epoch, "routing {vipa} with epoch {epoch}");
            }
            Event::RoleChanged { vipa, role } => {
                self.role_since.insert(vipa, SystemTime::now());
                let text = match role {
                    Role::Idle => "idle".to_owned(),
                    Role::Claiming(e) => format!("claiming with epoch {e}"),
                    Role::Owner(e) => format!("owner with epoch {e}"),
                };
                tracing::info!(%vipa, "{vipa}: {text}");
            }
            Event::NodeUp(n) => tracing::info!(node = %n, "routing node {n} is up"),
            Event::NodeDown(n) => tracing::warn!(node = %n, "routing node {n} is down"),
        }
    }

    fn publish(&mut self) {
        let Some(w) = self.writer.as_mut() else {
            return;
        };
        let result = convert::description(&self.config, &self.slots, &self.routed)
            .map_err(WriteError::from)
            .and_then(|d| w.publish(&d));
        match result {
            Ok(p) => {
                self.stats.published += 1;
                self.stats.generation = p.generation;
                self.stats.published_at = Some(SystemTime::now());
                tracing::debug!(
                    generation = p.generation,
                    bytes = p.bytes,
                    "published snapshot generation {}",
                    p.generation
                );
            }
            Err(e) => {
                // The forwarder keeps routing with the previous generation.
                self.stats.publish_errors += 1;
                tracing::error!(
                    "cannot publish the snapshot: {e}; the forwarder keeps the previous one"
                );
            }
        }
    }

    /// A message from a peer: noted (for the status page), then handed to
    /// the state machine.
    pub fn message(&mut self, now: u64, peer: &Peer, msg: Message) {
        let h = self.heard.entry(peer.clone()).or_default();
        h.any = now;
        if matches!(msg, Message::Report(_)) {
            h.report = Some(now);
        }
        self.node.handle_message(now, peer, msg);
    }

    /// Reads the forwarder's new-flow events into the state machine, and
    /// notes how its workers move.
    pub fn poll_back(&mut self, now: u64) {
        let Some(prefix) = &self.prefix else {
            return;
        };
        if now >= self.back_checked + BACK_RECHECK_MS {
            self.back_checked = now;
            if self.back.as_ref().is_some_and(BackReader::replaced) {
                // The forwarder restarted: its new events, counters and
                // heartbeat are in the new object.
                tracing::info!(
                    "the forwarder's back channel {prefix}.back was replaced (a forwarder started): reading the new one"
                );
                self.back = None;
                self.back_worked = false;
                self.watch.reset();
            }
        }
        if self.back.is_none() {
            // The forwarder creates it; until then there is nothing to read.
            match BackReader::open_prefix(prefix) {
                Ok(b) => self.back = Some(b),
                Err(e) => {
                    self.back_error = Some(format!(
                        "no back channel {prefix}.back ({e}): is vipa-forwarder run --snapshot {prefix} running on this node?"
                    ));
                    return;
                }
            }
        }
        let Some(back) = &self.back else {
            return;
        };
        let events = match back.drain_events(EVENTS_PER_TICK) {
            Ok(e) => e,
            Err(e) => {
                self.back_error = Some(format!("back channel {prefix}.back: {e}"));
                self.watch.reset();
                // Not set up yet by a forwarder that is starting: quiet.
                // Broken after it worked: say so.
                if self.back_worked {
                    tracing::warn!("forwarder back channel: {e}; opening it again");
                } else {
                    tracing::debug!("forwarder back channel: {e}; opening it again");
                }
                self.back = None;
                self.back_worked = false;
                return;
            }
        };
        self.back_worked = true;
        self.back_error = None;
        if let Ok(state) = back.state() {
            self.watch.observe(now, &state);
        }
        for (_, ev) in events {
            let Some(target) = self.slots.address(ev.target) else {
                continue;
            };
            let Some((vipa, conn)) = convert::connection_of(&ev.key) else {
                continue;
            };
            self.stats.new_flows += 1;
            self.node.handle_new_flow(now, vipa, conn, target);
        }
    }

    /// Every worker's forwarder counters, if a forwarder writes them.
    pub fn forwarder_counters(&self) -> Option<Vec<Vec<(String, u64)>>> {
        self.back.as_ref()?.counters().ok()
    }

    /// What the forwarder says of itself, or why there is nothing to read.
    pub fn forwarder_state(&self) -> Result<ForwarderState, String> {
        match (&self.prefix, &self.back) {
            (None, _) => Err(
                "vipa-control runs without --snapshot: it publishes nothing and no forwarder reports to it"
                    .to_owned(),
            ),
            (Some(_), Some(b)) => b.state().map_err(|e| e.to_string()),
            (Some(p), None) => Err(self.back_error.clone().unwrap_or_else(|| {
                format!("no back channel {p}.back yet: is vipa-forwarder run --snapshot {p} running on this node?")
            })),
        }
    }

    /// Per target address, `[packets, bytes, flows]` the forwarder sent
    /// and created (summed over its workers), if a forwarder reports.
    pub fn target_traffic(&self) -> Option<BTreeMap<IpAddr, [u64; 3]>> {
        let totals = self.back.as_ref()?.target_totals().ok()?;
        Some(
            totals
                .into_iter()
                .enumerate()
                .filter_map(|(slot, t)| Some((self.slots.address(slot as u32)?, t)))
                .collect(),
        )
    }

    /// Per (VIPA, service, target address), `[packets, bytes]` the
    /// forwarder sent (summed over its workers), if a forwarder reports
    /// them: its service slots are this configuration's
    /// ([`Config::service_slots`]) and its target slots this daemon's. A
    /// forwarder that counts for other numbers of slots (another
    /// configuration, or none: too many pairs) reports nothing here.
    pub fn service_traffic(&self) -> Option<BTreeMap<(IpAddr, Service, IpAddr), [u64; 2]>> {
        let (stride, totals) = self.back.as_ref()?.service_target_totals().ok()?;
        let services: Vec<(IpAddr, Service)> = self.config.service_slots().collect();
        if stride != self.slots.len() || totals.len() != services.len() * stride {
            return None;
        }
        let mut out = BTreeMap::new();
        for (i, figures) in totals.into_iter().enumerate() {
            let (vipa, service) = services[i / stride];
            if let Some(target) = self.slots.address((i % stride) as u32) {
                out.insert((vipa, service, target), figures);
            }
        }
        Some(out)
    }

    /// The snapshot channel's prefix, if the daemon publishes.
    pub fn snapshot_channel(&self) -> Option<&str> {
        self.prefix.as_deref()
    }
}

/// When each connection of `new` entered the CRT: carried over from `old`
/// (whose times are `old_since`) for the connections it had, `now` for the
/// others.
///
/// Both CRTs are sorted by connection (the state machine's promise), so one
/// merge walk per VIPA does it, with no hashing: this runs on every
/// publication, next to writing the whole snapshot.
pub(crate) fn carry_since(
    old: &Snapshot,
    old_since: &[Vec<u64>],
    new: &Snapshot,
    now: u64,
) -> Vec<Vec<u64>> {
    new.vipas
        .iter()
        .map(|v| {
            let prev = old.vipas.iter().position(|o| o.address == v.address);
            let (crt, since): (&[_], &[u64]) = match prev {
                Some(i) => (
                    &old.vipas[i].crt,
                    old_since.get(i).map_or(&[], Vec::as_slice),
                ),
                None => (&[], &[]),
            };
            let mut j = 0;
            v.crt
                .iter()
                .map(|(conn, _)| {
                    while j < crt.len() && crt[j].0 < *conn {
                        j += 1;
                    }
                    match crt.get(j) {
                        Some((c, _)) if c == conn => since.get(j).copied().unwrap_or(now),
                        _ => now,
                    }
                })
                .collect()
        })
        .collect()
}

/// The configuration's peers, for the transport.
fn resolver(config: &Config) -> Resolve {
    let nodes: Vec<(String, SocketAddr)> = config
        .cluster
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), n.address?)))
        .collect();
    let agent_port = config.cluster.agent_port;
    Arc::new(move |p: &Peer| match p {
        Peer::Node(name) => nodes.iter().find(|(n, _)| n == name).map(|(_, a)| *a),
        Peer::Target(ip) => Some(SocketAddr::new(*ip, agent_port)),
    })
}

fn admitter(config: &Config) -> Admit {
    let me = config.node.name.clone();
    let nodes: Vec<String> = config
        .cluster
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .filter(|n| *n != me)
        .collect();
    let targets: BTreeSet<IpAddr> = config
        .vipas
        .iter()
        .flat_map(|v| v.targets.iter().map(|t| t.address))
        .collect();
    Arc::new(move |h: &Hello| match h {
        Hello::Node(n) if nodes.contains(n) => Ok(Peer::Node(n.clone())),
        Hello::Node(n) => Err(format!(
            "\"{n}\" is not another routing node of this cluster (known: {})",
            nodes.join(", ")
        )),
        Hello::Target(t) if targets.contains(t) => Ok(Peer::Target(*t)),
        Hello::Target(t) => Err(format!("{t} is not a target of any VIPA of this node")),
    })
}

/// Runs the daemon until `shutdown` resolves.
///
/// # Errors
///
/// When a socket cannot be bound or the snapshot channel cannot be
/// opened; once running, nothing a peer sends stops it.
pub async fn run(
    opts: NodeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let config = opts.config;
    let name = config.node.name.clone();
    let addr = config
        .cluster
        .node(&name)
        .and_then(|n| n.address)
        .ok_or_else(|| DaemonError::NoAddress(name.clone()))?;
    let api_addr = opts.api.unwrap_or(config.cluster.api);
    let bind = |what, addr| move |source| DaemonError::Bind { what, addr, source };

    let listener = TcpListener::bind(addr)
        .await
        .map_err(bind("control protocol, TCP", addr))?;
    let udp = Arc::new(
        UdpSocket::bind(addr)
            .await
            .map_err(bind("SWIM, UDP", addr))?,
    );
    let api_listener = TcpListener::bind(api_addr)
        .await
        .map_err(bind("HTTP API", api_addr))?;
    let writer = match opts.snapshot {
        Some(prefix) => {
            let w = Writer::open(&prefix).map_err(|source| DaemonError::Snapshot {
                prefix: prefix.clone(),
                source,
            })?;
            Some((prefix, w))
        }
        None => {
            tracing::warn!(
                "no --snapshot prefix: running the protocol and the API, routing nothing"
            );
            None
        }
    };

    let net = Arc::new(NetStats::default());
    let (inbox_tx, mut inbox) = mpsc::channel(4096);
    tokio::spawn(transport::serve(
        listener,
        admitter(&config),
        inbox_tx.clone(),
        Arc::clone(&net),
    ));
    let by_addr: Vec<(SocketAddr, String)> = config
        .cluster
        .nodes
        .iter()
        .filter(|n| n.name != name)
        .filter_map(|n| Some((n.address?, n.name.clone())))
        .collect();
    let node_of = Arc::new(move |from: SocketAddr| {
        by_addr
            .iter()
            .find(|(a, _)| *a == from)
            .map(|(_, n)| n.clone())
    });
    tokio::spawn(transport::serve_udp(
        Arc::clone(&udp),
        node_of,
        inbox_tx,
        Arc::clone(&net),
    ));
    let (api_tx, mut api_rx) = mpsc::channel::<(ApiRequest, oneshot::Sender<Response>)>(64);
    tokio::spawn(api::serve(api_listener, api_tx));
    tracing::info!(node = %name, %addr, api = %api_addr, "vipa-control {name}: control protocol on {addr} (TCP, SWIM over UDP), HTTP API on http://{api_addr}");

    let mut outbox = Outbox::new(
        Hello::Node(name.clone()),
        resolver(&config),
        Some(udp),
        Arc::clone(&net),
    );
    let start = Instant::now();
    let now = move || start.elapsed().as_millis() as u64;
    let mut core = Core::new(config, now(), super::wall_ms(), writer, net);
    // What this node routes at start: nothing. A forwarder that follows
    // the channel and starts after this never routes from its own
    // configuration's tables (every VIPA owned) on a node that owns none.
    core.publish();
    let mut back_tick = tokio::time::interval(BACK_POLL);
    back_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tokio::pin!(shutdown);
    let mut last_timeout = 0;
    loop {
        core.drain(|t| outbox.send(t));
        // At least 1 ms between timeouts: never spin on a deadline the
        // state machine does not move.
        let due = core
            .node
            .poll_timeout()
            .unwrap_or(u64::MAX / 2)
            .max(last_timeout + 1);
        let deadline = start + Duration::from_millis(due);
        tokio::select! {
            m = inbox.recv() => {
                if let Some((peer, msg)) = m {
                    core.message(now(), &peer, msg);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                last_timeout = now();
                core.node.handle_timeout(last_timeout);
            }
            r = api_rx.recv() => {
                if let Some((req, reply)) = r {
                    let resp = api::handle(&mut core, now(), &req);
                    let _ = reply.send(resp);
                }
            }
            _ = back_tick.tick() => core.poll_back(now()),
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("vipa-control {name} stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::OwnedVipa;
    use vipa_proto::config::{L4Protocol, Service};
    use vipa_proto::ctl::{Connection, Epoch};

    fn conn(port: u16) -> Connection {
        Connection {
            client: SocketAddr::new([198, 51, 100, 7].into(), port),
            service: Service {
                protocol: L4Protocol::Tcp,
                port: 80,
            },
        }
    }

    fn snap(ports: &[u16]) -> Snapshot {
        Snapshot {
            vipas: vec![OwnedVipa {
                address: [192, 0, 2, 10].into(),
                epoch: Epoch::new(1, 0),
                services: Vec::new(),
                crt: ports
                    .iter()
                    .map(|&p| (conn(p), IpAddr::from([10, 20, 0, 11])))
                    .collect(),
            }],
        }
    }

    #[test]
    fn crt_ages_carry_over_publications() {
        let a = snap(&[1, 3, 5]);
        let since_a = carry_since(&Snapshot::default(), &[], &a, 100);
        assert_eq!(since_a, [[100, 100, 100]]);
        // 3 ends, 2 and 6 begin: the others keep their time.
        let b = snap(&[1, 2, 5, 6]);
        let since_b = carry_since(&a, &since_a, &b, 200);
        assert_eq!(since_b, [[100, 200, 100, 200]]);
        // The VIPA given up and taken again: everything is new.
        let gone = carry_since(&b, &since_b, &Snapshot::default(), 300);
        assert!(gone.is_empty());
        assert_eq!(
            carry_since(&Snapshot::default(), &gone, &b, 400),
            [[400; 4]]
        );
    }
}
