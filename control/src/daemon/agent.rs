//! `vipa-agent run`: the target's driver.
//!
//! Discovery (netlink sock_diag, [`Discovery`]) runs on a thread of its
//! own, since a dump blocks for a few netlink round trips, and sends what
//! changed to the driver task. The driver feeds the [`Agent`] state
//! machine, which reports to whichever routing node owns each VIPA with
//! the highest epoch it has seen (it follows the owner across takeovers by
//! itself: a new owner's `Define` is all it takes). The agent listens for
//! the routing nodes on `target address:cluster.port` (TCP) and dials the
//! owner at its `[[cluster.node]].address`.
//!
//! With `--decap IFACE` the user-space GRE decapsulator
//! ([`decap`]) runs on another thread of the same
//! process.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use vipa_proto::config::{Config, L4Protocol, Service};
use vipa_proto::ctl::{self, Hello};

use super::transport::{self, Admit, NetStats, Outbox, Resolve};
use crate::agent::decap::{self, DecapError, DecapOptions};
use crate::agent::discovery::{Delta, Discovery, Inventory, Scope};
use crate::cluster::{Agent, Peer};

/// What `vipa-agent run` runs with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The configuration (the routing nodes' file, or one with the same
    /// `[cluster]` and `[[vipa]]` sections).
    pub config: Config,
    /// This target's address, as the VIPAs' `target` lists name it.
    pub address: IpAddr,
    /// Where to listen for the routing nodes; default `address:cluster.port`.
    pub listen: Option<SocketAddr>,
    /// Run the GRE decapsulator on this interface.
    pub decap: Option<DecapOptions>,
}

/// Where listeners and connections come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// netlink sock_diag, polled at this interval.
    SockDiag(Duration),
    /// A fixed inventory, for tests.
    Fixed(Inventory),
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The address is no VIPA's target.
    #[error("{0} is not a target of any [[vipa]] in the configuration; pass the address the VIPAs' target lists name (--address)")]
    NotATarget(IpAddr),
    /// The listener cannot be bound.
    #[error("cannot listen for the routing nodes on {addr} (TCP): {source}; is {ip} configured on this host, and is no other vipa-agent running?", ip = addr.ip())]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The decapsulator failed.
    #[error("decapsulator: {0}")]
    Decap(#[from] DecapError),
}

/// The scope of discovery: the VIPAs `address` serves, and their services.
pub fn scope_for(config: &Config, address: IpAddr) -> Option<Scope> {
    let vipas: Vec<_> = config
        .vipas
        .iter()
        .filter(|v| v.targets.iter().any(|t| t.address == address))
        .collect();
    if vipas.is_empty() {
        return None;
    }
    let services: Vec<Service> = vipas.iter().flat_map(|v| v.services.clone()).collect();
    Some(Scope::new(vipas.iter().map(|v| v.address)).with_services(services))
}

/// Feeds what changed into the state machine.
pub fn apply(agent: &mut Agent, now: u64, delta: &Delta) {
    for (l, on) in delta
        .listeners_removed
        .iter()
        .map(|l| (l, false))
        .chain(delta.listeners_added.iter().map(|l| (l, true)))
    {
        let service = Service {
            protocol: l.protocol,
            port: l.service.port(),
        };
        agent.set_listening(now, l.service.ip(), service, on);
    }
    let conn = |c: &crate::agent::discovery::Connection| ctl::Connection {
        client: c.client,
        service: Service {
            protocol: L4Protocol::Tcp,
            port: c.service.port(),
        },
    };
    for c in &delta.connections_removed {
        agent.connection_closed(now, c.service.ip(), conn(c));
    }
    for c in &delta.connections_added {
        agent.connection_opened(now, c.service.ip(), conn(c));
    }
}

fn discovery_thread(scope: Scope, interval: Duration, tx: mpsc::Sender<Delta>) {
    let mut d = Discovery::new(scope, interval);
    let mut last_error = String::new();
    loop {
        match d.poll(std::time::Instant::now()) {
            Ok(Some(delta)) => {
                if tx.blocking_send(delta).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    tracing::warn!("discovery: {msg}; the last inventory stands, retrying");
                    last_error = msg;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
        let wait = d.poll_timeout().map_or(interval, |t| {
            t.saturating_duration_since(std::time::Instant::now())
        });
        std::thread::sleep(wait.max(Duration::from_millis(1)));
    }
}

/// Runs the agent until `shutdown` resolves.
///
/// # Errors
///
/// An address that is no target, a listener that cannot be bound, or a
/// decapsulator that cannot start.
pub async fn run(
    opts: AgentOptions,
    source: Source,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let config = opts.config;
    let scope = scope_for(&config, opts.address).ok_or(AgentError::NotATarget(opts.address))?;
    let listen = opts
        .listen
        .unwrap_or(SocketAddr::new(opts.address, config.cluster.agent_port));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: listen,
            source,
        })?;

    let stop = Arc::new(AtomicBool::new(false));
    let decap_thread = match opts.decap {
        Some(d) => {
            let stop = Arc::clone(&stop);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = std::thread::spawn(move || {
                let r = decap::run(&d, &stop);
                let _ = ready_tx.send(());
                r
            });
            // A decapsulator that fails at once (no such interface) stops
            // the agent with its reason.
            if ready_rx.recv_timeout(Duration::from_millis(300)).is_ok() {
                if let Ok(Err(e)) = h.join() {
                    return Err(e.into());
                }
                None
            } else {
                Some(h)
            }
        }
        None => None,
    };

    let net = Arc::new(NetStats::default());
    let nodes: Vec<(String, SocketAddr)> = config
        .cluster
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), n.address?)))
        .collect();
    let names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    let admit: Admit = Arc::new(move |h: &Hello| match h {
        Hello::Node(n) if names.contains(n) => Ok(Peer::Node(n.clone())),
        other => Err(format!(
            "{other:?} is not a routing node of this cluster (known: {})",
            names.join(", ")
        )),
    });
    let resolve: Resolve = Arc::new(move |p: &Peer| match p {
        Peer::Node(name) => nodes.iter().find(|(n, _)| n == name).map(|(_, a)| *a),
        Peer::Target(_) => None,
    });
    let (inbox_tx, mut inbox) = mpsc::channel(4096);
    tokio::spawn(transport::serve(
        listener,
        admit,
        inbox_tx,
        Arc::clone(&net),
    ));
    let mut outbox = Outbox::new(Hello::Target(opts.address), resolve, None, net);

    let (delta_tx, mut deltas) = mpsc::channel(64);
    match source {
        Source::SockDiag(interval) => {
            let scope = scope.clone();
            std::thread::spawn(move || discovery_thread(scope, interval, delta_tx));
        }
        Source::Fixed(inv) => {
            let _ = delta_tx.send(Inventory::default().diff(&inv)).await;
        }
    }
    tracing::info!(address = %opts.address, %listen, vipas = ?scope.vipas(), "vipa-agent for target {}: listening for the routing nodes on {listen}", opts.address);

    let start = Instant::now();
    let now = move || start.elapsed().as_millis() as u64;
    let mut agent = Agent::new(super::wall_ms());
    tokio::pin!(shutdown);
    let mut last_timeout = 0;
    let mut deltas_open = true;
    loop {
        while let Some(t) = agent.poll_transmit() {
            outbox.send(t);
        }
        let due = agent
            .poll_timeout()
            .unwrap_or(u64::MAX / 2)
            .max(last_timeout + 1);
        tokio::select! {
            m = inbox.recv() => {
                if let Some((peer, msg)) = m {
                    agent.handle_message(now(), &peer, msg);
                }
            }
            d = deltas.recv(), if deltas_open => match d {
                Some(d) => apply(&mut agent, now(), &d),
                // A fixed inventory was given, or discovery stopped: the
                // last inventory stands.
                None => deltas_open = false,
            },
            _ = tokio::time::sleep_until(start + Duration::from_millis(due)) => {
                last_timeout = now();
                agent.handle_timeout(last_timeout);
            }
            _ = &mut shutdown => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = decap_thread {
        match h.join() {
            Ok(Ok(counters)) => eprint!("{}", counters.to_text()),
            Ok(Err(e)) => tracing::error!("decapsulator: {e}"),
            Err(_) => tracing::error!("the decapsulator thread panicked"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::discovery;

    #[test]
    fn deltas_become_listeners_and_connections() {
        let vipa: IpAddr = "192.0.2.10".parse().unwrap();
        let mut inv = Inventory::default();
        inv.listeners.insert(discovery::Listener {
            protocol: L4Protocol::Tcp,
            service: SocketAddr::new(vipa, 80),
        });
        inv.connections.insert(discovery::Connection {
            service: SocketAddr::new(vipa, 80),
            client: "198.51.100.7:40000".parse().unwrap(),
        });
        let mut a = Agent::new(1);
        apply(&mut a, 0, &Inventory::default().diff(&inv));
        let conns: Vec<_> = a.connections(vipa).copied().collect();
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].service.port, 80);
        apply(&mut a, 1, &inv.diff(&Inventory::default()));
        assert_eq!(a.connections(vipa).count(), 0);
    }
}
