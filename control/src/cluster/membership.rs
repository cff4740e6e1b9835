//! Which routing nodes are alive: SWIM, through the `foca` crate, driven by
//! the same clock and the same outbox as the rest of the state machine.
//!
//! foca is sans-IO too: it asks its `Runtime` to send datagrams and to call
//! it back after a delay. Here the datagrams become [`Message::Swim`] to
//! the node of that name, and the delays become deadlines on the caller's
//! clock, fired from [`Membership::handle_timeout`].
//!
//! # Detection time
//!
//! SWIM probes one member per `probe_interval` (foca's protocol period),
//! waits `probe_timeout` for the answer, then asks others to probe it
//! indirectly; a member that answers nobody is *suspected*, and declared
//! down `suspect_timeout` later unless it refutes. With `n` routing nodes a
//! given node is probed by each other node at least every `n − 1` periods
//! (foca walks its member list in a shuffled round), so the worst case is
//! about `probe_interval × (n − 1) + probe_timeout + suspect_timeout`. The
//! simulation measures it.
//!
//! # Identities
//!
//! A member is its node name plus a generation. A restarted node must use a
//! higher generation (the daemon passes its start time), and a node
//! declared down by mistake renews itself with the next generation, so it
//! rejoins at once instead of waiting for the cluster to forget it.
//!
//! # Alone
//!
//! foca does nothing on its own once it has no active member left: no
//! probes, no periodic announces (not even to down members). After a
//! partition between two nodes, each has declared the other down and
//! neither would ever speak again. So while no other member is active,
//! this node announces itself to every configured node once per
//! `probe_interval`; a node that had declared it down answers that it is
//! down (`notify_down_members`), it renews its identity, and the next
//! announce joins.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use vipa_proto::config::ClusterConfig;
use vipa_proto::ctl::{Message, NodeName};

use super::{Peer, Transmit};

/// A SWIM member: a node name and the generation of its process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// `node.name`.
    pub name: NodeName,
    /// Grows with every restart and every renewal.
    pub generation: u64,
}

impl foca::Identity for SwimId {
    type Addr = NodeName;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            name: self.name.clone(),
            generation: self.generation + 1,
        })
    }

    fn addr(&self) -> NodeName {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// A membership change, for the node state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Up(NodeName),
    Down(NodeName),
}

type Swim = Foca<SwimId, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// foca and its pending timers.
pub(super) struct Membership {
    foca: Swim,
    runtime: AccumulatingRuntime<SwimId>,
    /// Deadline (ms), insertion order, timer: earliest first, and in the
    /// order foca asked among equal deadlines.
    timers: BinaryHeap<Reverse<(u64, u64, TimerSlot)>>,
    timer_seq: u64,
    peers: Vec<NodeName>,
    /// While no other member is active: when to announce again.
    next_announce: u64,
    announce_every: u64,
}

/// `foca::Timer` in a heap: ordered only by the heap's other fields.
struct TimerSlot(Timer<SwimId>);

impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// foca's settings from `[cluster]`.
pub fn swim_config(cluster: &ClusterConfig) -> foca::Config {
    let mut c = foca::Config::simple();
    c.probe_period = cluster.probe_interval;
    c.probe_rtt = cluster.probe_timeout;
    c.suspect_to_down_after = cluster.suspect_timeout;
    // With two or three routing nodes there are at most one or two others
    // to probe indirectly.
    c.num_indirect_probes = NonZeroUsize::new(2).expect("non-zero");
    c.max_transmissions = NonZeroU8::new(6).expect("non-zero");
    // A node declared down learns it and renews its identity, so that a
    // healed partition heals membership too.
    c.notify_down_members = true;
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(1).expect("non-zero"),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: cluster.probe_interval * 5,
        num_members: NonZeroUsize::new(2).expect("non-zero"),
    });
    // Spread "down" news every period rather than only on probes: the
    // backup that must take over learns it one period sooner.
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: cluster.probe_interval,
        num_members: NonZeroUsize::new(2).expect("non-zero"),
    });
    c
}

impl Membership {
    /// This node, `generation` (higher after every restart), its RNG seed;
    /// announces itself to every other configured node.
    pub fn new(
        cluster: &ClusterConfig,
        name: &str,
        generation: u64,
        seed: u64,
        now: u64,
        out: &mut Vec<Transmit>,
    ) -> Self {
        let id = SwimId {
            name: name.to_owned(),
            generation,
        };
        let foca = Foca::new(
            id,
            swim_config(cluster),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
        );
        let peers: Vec<NodeName> = cluster
            .nodes
            .iter()
            .filter(|n| n.name != name)
            .map(|n| n.name.clone())
            .collect();
        let mut m = Membership {
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            peers,
            next_announce: now,
            announce_every: (cluster.probe_interval.as_millis() as u64).max(1),
        };
        m.announce(now, out);
        m
    }

    /// Sends a join request to every other configured node (foca ignores
    /// the generation of the destination).
    pub fn announce(&mut self, now: u64, out: &mut Vec<Transmit>) {
        self.announce_to_all(now);
        self.drain(now, out, &mut Vec::new());
    }

    fn announce_to_all(&mut self, now: u64) {
        for peer in self.peers.clone() {
            let dst = SwimId {
                name: peer,
                generation: 0,
            };
            // An error here only means the announce was not sent; it is
            // sent again while this node is alone.
            let _ = self.foca.announce(dst, &mut self.runtime);
        }
        self.next_announce = now + self.announce_every;
    }

    /// Whether `name` is an active member (this node always is).
    pub fn is_up(&self, name: &str) -> bool {
        self.foca.identity().name == name || self.foca.iter_members().any(|m| m.id().name == name)
    }

    /// A SWIM datagram from another node.
    pub fn handle_data(
        &mut self,
        now: u64,
        data: &[u8],
        out: &mut Vec<Transmit>,
        changes: &mut Vec<Change>,
    ) {
        // Malformed or unwanted datagrams are foca's to refuse; nothing to
        // do about them but drop them.
        let _ = self.foca.handle_data(data, &mut self.runtime);
        self.drain(now, out, changes);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: u64, out: &mut Vec<Transmit>, changes: &mut Vec<Change>) {
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, TimerSlot(timer)))) = self.timers.pop() else {
                break;
            };
            let _ = self.foca.handle_timer(timer, &mut self.runtime);
            self.drain(now, out, changes);
        }
        if self.alone() && now >= self.next_announce {
            self.announce_to_all(now);
            self.drain(now, out, changes);
        }
    }

    /// No other member is active, and there are others to find.
    fn alone(&self) -> bool {
        !self.peers.is_empty() && self.foca.num_members() == 0
    }

    /// The next timer deadline.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let announce = self.alone().then_some(self.next_announce);
        timer.into_iter().chain(announce).min()
    }

    fn drain(&mut self, now: u64, out: &mut Vec<Transmit>, changes: &mut Vec<Change>) {
        while let Some((to, data)) = self.runtime.to_send() {
            out.push(Transmit {
                to: Peer::Node(to.name),
                message: Message::Swim(data.to_vec()),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let at = now + after.as_millis() as u64;
            self.timer_seq += 1;
            self.timers
                .push(Reverse((at, self.timer_seq, TimerSlot(timer))));
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => changes.push(Change::Up(id.name)),
                OwnedNotification::MemberDown(id) => changes.push(Change::Down(id.name)),
                _ => {}
            }
        }
    }
}
