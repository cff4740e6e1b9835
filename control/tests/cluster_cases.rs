//! Hand-driven cluster scenarios, one per bug the simulation found: the
//! messages a case needs lost are lost on purpose, so the case does not
//! depend on a seed's trajectory (`sim.rs` keeps the seeds as well).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use vipa_control::cluster::{Agent, Node, Peer, Role, TargetState, Transmit};
use vipa_proto::config::{
    ClusterConfig, ClusterNode, Distribution, L4Protocol, Moveable, Service, TargetConfig,
    VipaConfig,
};
use vipa_proto::ctl::{Connection, Message};

const VIPA: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const HTTP: Service = Service {
    protocol: L4Protocol::Tcp,
    port: 80,
};

fn target(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 20, 0, 11 + i as u8))
}

fn conn(port: u16) -> Connection {
    Connection {
        client: SocketAddr::from(([198, 51, 100, 1], port)),
        service: HTTP,
    }
}

fn cluster(nodes: usize) -> ClusterConfig {
    let mut c = ClusterConfig::single("fwd-0");
    c.nodes = (0..nodes)
        .map(|i| ClusterNode {
            name: format!("fwd-{i}"),
            address: Some(SocketAddr::from(([10, 10, 0, 1 + i as u8], 7400))),
        })
        .collect();
    c.probe_interval = Duration::from_millis(200);
    c.probe_timeout = Duration::from_millis(80);
    c.suspect_timeout = Duration::from_millis(400);
    c.refresh_interval = Duration::from_millis(500);
    c.restart_hold = Duration::from_millis(2000);
    c
}

fn vipa(nodes: usize, targets: usize) -> VipaConfig {
    VipaConfig {
        address: VIPA,
        services: vec![HTTP],
        distribution: Distribution::Maglev,
        table_size: 251,
        targets: (0..targets)
            .map(|i| TargetConfig {
                address: target(i),
                weight: 1,
            })
            .collect(),
        owner: "fwd-0".into(),
        backups: (1..nodes).map(|i| format!("fwd-{i}")).collect(),
        moveable: Moveable::Immediate,
        candidates: Vec::new(),
    }
}

/// Whether a message from a peer is delivered.
type Filter = Box<dyn FnMut(&Peer, &Transmit) -> bool>;

/// Nodes and agents exchanging messages at once (1 ms apart), through a
/// filter that may drop any of them.
struct World {
    now: u64,
    nodes: Vec<Node>,
    agents: Vec<Agent>,
    queue: VecDeque<(Peer, Transmit)>,
    /// `(from, message) -> deliver?`
    filter: Filter,
}

impl World {
    fn new(nodes: usize, targets: usize) -> World {
        let cluster = cluster(nodes);
        let vipa = vipa(nodes, targets);
        let mut w = World {
            now: 0,
            nodes: (0..nodes)
                .map(|i| {
                    Node::new(
                        &format!("fwd-{i}"),
                        &cluster,
                        std::slice::from_ref(&vipa),
                        1,
                        i as u64,
                        0,
                    )
                })
                .collect(),
            agents: (0..targets).map(|i| Agent::new(i as u64 + 1)).collect(),
            queue: VecDeque::new(),
            filter: Box::new(|_, _| true),
        };
        for a in &mut w.agents {
            a.set_listening(0, VIPA, HTTP, true);
        }
        w
    }

    fn collect(&mut self) {
        for n in &mut self.nodes {
            let from = Peer::Node(n.name().to_owned());
            while let Some(t) = n.poll_transmit() {
                self.queue.push_back((from.clone(), t));
            }
            while n.poll_event().is_some() {}
        }
        for (i, a) in self.agents.iter_mut().enumerate() {
            while let Some(t) = a.poll_transmit() {
                self.queue.push_back((Peer::Target(target(i)), t));
            }
        }
    }

    /// Runs for `ms` milliseconds.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 1;
            let now = self.now;
            self.collect();
            for (from, t) in std::mem::take(&mut self.queue) {
                if !(self.filter)(&from, &t) {
                    continue;
                }
                match &t.to {
                    Peer::Node(name) => {
                        if let Some(n) = self.nodes.iter_mut().find(|n| n.name() == name) {
                            n.handle_message(now, &from, t.message);
                        }
                    }
                    Peer::Target(a) => {
                        if let Some(i) = (0..self.agents.len()).find(|&i| target(i) == *a) {
                            self.agents[i].handle_message(now, &from, t.message);
                        }
                    }
                }
            }
            for n in &mut self.nodes {
                if n.poll_timeout().is_some_and(|at| at <= now) {
                    n.handle_timeout(now);
                }
            }
            for a in &mut self.agents {
                if a.poll_timeout().is_some_and(|at| at <= now) {
                    a.handle_timeout(now);
                }
            }
        }
        self.collect();
    }

    fn crt_target(&self, node: usize, c: &Connection) -> Option<IpAddr> {
        let s = self.nodes[node].snapshot();
        let v = s.vipas.iter().find(|v| v.address == VIPA)?;
        v.crt.iter().find(|(k, _)| k == c).map(|(_, t)| *t)
    }

    fn state(&self, node: usize, t: IpAddr) -> Option<TargetState> {
        let s = self.nodes[node].snapshot();
        let v = s.vipas.iter().find(|v| v.address == VIPA)?;
        let st = v.services.iter().find(|s| s.service == HTTP)?;
        st.targets.iter().find(|e| e.address == t).map(|e| e.state)
    }
}

fn is_report_from(from: &Peer, t: &Transmit, i: usize) -> bool {
    *from == Peer::Target(target(i)) && matches!(t.message, Message::Report(_))
}

/// Seed 742: a report that arrives ahead of the sequence (the one before
/// it was lost) is not applied until the agent resends both; the
/// connections it opens must be routed meanwhile, or a takeover that
/// completes in between publishes a CRT without them.
#[test]
fn connection_in_a_report_ahead_of_a_lost_one_is_routed() {
    let mut w = World::new(1, 3);
    w.run(100);
    assert!(matches!(w.nodes[0].role(VIPA), Some(Role::Owner(_))));
    // The report of conn 1 is lost; the one of conn 2 arrives.
    let now = w.now;
    w.agents[0].connection_opened(now, VIPA, conn(1));
    w.collect();
    w.queue.retain(|(from, t)| !is_report_from(from, t, 0));
    w.agents[0].connection_opened(now, VIPA, conn(2));
    w.run(30);
    assert_eq!(w.crt_target(0, &conn(2)), Some(target(0)));
    // The agent resends both; both are confirmed.
    w.run(200);
    assert_eq!(w.crt_target(0, &conn(1)), Some(target(0)));
    assert_eq!(w.crt_target(0, &conn(2)), Some(target(0)));
}

/// Seeds 1861, 1873, 1986: the owner is cut off from a target (its
/// forwarder still routing) while the target's application restarts; the
/// report that it listens again does not get through. The hold must not
/// drop the target's connections on the owner's stale view: only the
/// target's word after the hold does.
#[test]
fn restart_hold_expires_on_the_targets_word_only() {
    let mut w = World::new(1, 3);
    w.run(100);
    let now = w.now;
    w.agents[0].connection_opened(now, VIPA, conn(1));
    w.run(20);
    assert_eq!(w.crt_target(0, &conn(1)), Some(target(0)));
    let now = w.now;
    w.agents[0].set_listening(now, VIPA, HTTP, false);
    w.run(20);
    assert_eq!(w.state(0, target(0)), Some(TargetState::Restarting));
    // Cut off; the application comes back unheard, the hold passes.
    w.filter =
        Box::new(|from, t| *from != Peer::Target(target(0)) && t.to != Peer::Target(target(0)));
    let now = w.now;
    w.agents[0].set_listening(now, VIPA, HTTP, true);
    w.run(2500);
    assert_eq!(w.state(0, target(0)), Some(TargetState::Restarting));
    assert_eq!(w.crt_target(0, &conn(1)), Some(target(0)));
    // Heard again: ready, the connection still routed.
    w.filter = Box::new(|_, _| true);
    w.run(600);
    assert_eq!(w.state(0, target(0)), Some(TargetState::Ready));
    assert_eq!(w.crt_target(0, &conn(1)), Some(target(0)));

    // Down past the hold, and the target says so: gone.
    let now = w.now;
    w.agents[0].set_listening(now, VIPA, HTTP, false);
    w.run(2100);
    assert_eq!(w.state(0, target(0)), Some(TargetState::Down));
    assert_eq!(w.crt_target(0, &conn(1)), None);
}

/// Seed 780: two routing nodes partitioned long enough that each declares
/// the other down; foca, with no active member left, would never speak
/// again. Once healed, they must see each other up.
#[test]
fn membership_heals_after_both_nodes_declared_each_other_down() {
    let mut w = World::new(2, 3);
    w.run(1000);
    assert!(w.nodes[0].is_up("fwd-1") && w.nodes[1].is_up("fwd-0"));
    let between_nodes =
        |from: &Peer, t: &Transmit| matches!(from, Peer::Node(_)) && matches!(t.to, Peer::Node(_));
    w.filter = Box::new(move |from, t| !between_nodes(from, t));
    w.run(3000);
    assert!(!w.nodes[0].is_up("fwd-1") && !w.nodes[1].is_up("fwd-0"));
    w.filter = Box::new(|_, _| true);
    w.run(1500);
    assert!(w.nodes[0].is_up("fwd-1"), "fwd-0 sees fwd-1 up again");
    assert!(w.nodes[1].is_up("fwd-0"), "fwd-1 sees fwd-0 up again");
}

/// Seeds 13627, 16740: the old owner, cut off from the claimant but still
/// routing, opens a connection on a target just after the target's agent
/// accepted the claimant's epoch; the report of it to the claimant is lost.
/// A majority of the other targets confirms the epoch at once, so the
/// claimant must wait for that target's confirmation, counted only once its
/// reports are applied: else it announces a CRT without the connection,
/// which is then hashed to another target.
#[test]
fn claimant_waits_for_the_reports_a_confirmation_covers() {
    use std::cell::Cell;
    use std::rc::Rc;

    let mut w = World::new(2, 4);
    w.run(1000);
    assert!(matches!(w.nodes[0].role(VIPA), Some(Role::Owner(_))));
    // The nodes are cut from each other: fwd-1 takes over, fwd-0 routes on
    // until the targets tell it of the newer epoch.
    let lost = Rc::new(Cell::new(0));
    let lost_in = lost.clone();
    w.filter = Box::new(move |from, t| {
        if matches!(from, Peer::Node(_)) && matches!(t.to, Peer::Node(_)) {
            return false;
        }
        // The first report of conn 1 to fwd-1 is lost.
        if let (Peer::Target(a), Message::Report(r)) = (from, &t.message) {
            if *a == target(0)
                && t.to == Peer::Node("fwd-1".into())
                && !r.reset
                && r.opened.contains(&conn(1))
                && lost_in.get() == 0
            {
                lost_in.set(1);
                return false;
            }
        }
        true
    });
    let mut waited = 0;
    while w.agents[0].owner(VIPA).is_none_or(|(_, o)| o != "fwd-1") {
        w.run(1);
        waited += 1;
        assert!(waited < 5000, "fwd-1 never claimed");
    }
    assert!(matches!(w.nodes[1].role(VIPA), Some(Role::Claiming(_))));
    let now = w.now;
    w.agents[0].connection_opened(now, VIPA, conn(1));
    while !matches!(w.nodes[1].role(VIPA), Some(Role::Owner(_))) {
        w.run(1);
        waited += 1;
        assert!(waited < 5000, "fwd-1 never took over");
    }
    assert_eq!(lost.get(), 1, "the report was lost");
    assert_eq!(
        w.crt_target(1, &conn(1)),
        Some(target(0)),
        "the new owner announces with the connection"
    );
}
