//! The cluster protocol (DESIGN.md §6) as state machines with no I/O, in the
//! style of quinn-proto: [`Node`] on each routing node, [`Agent`] on each
//! target. Each takes time as milliseconds on the caller's monotonic clock
//! and randomness as a seed; the caller moves [`Transmit`]s to peers, hands
//! back what arrives (`handle_message`), sleeps until `poll_timeout` and
//! calls `handle_timeout`. A test runs a whole cluster in memory with a
//! virtual clock (`control/tests/sim.rs`).
//!
//! # The protocol in a page
//!
//! - **Epochs.** Every ownership claim of a VIPA carries a new
//!   [`Epoch`]: the highest term the claimant
//!   knows plus one, and its rank. Whoever knows a higher epoch ignores
//!   the lower one and answers [`Stale`](vipa_proto::ctl::Stale); an owner
//!   that learns a higher epoch steps down at once.
//! - **Targets are the witnesses.** A claimant sends
//!   [`Define`](vipa_proto::ctl::Define) to every target of the VIPA. An
//!   agent accepts a higher epoch, refuses a lower one with `Stale`, and
//!   answers the owner it accepted with a full
//!   [`Report`](vipa_proto::ctl::Report): its listeners on the VIPA and
//!   its established connections. The claimant routes only once a
//!   majority of the targets have reported for its epoch (and all of them,
//!   or `collect_timeout` after the majority). Two claimants cannot both
//!   collect a majority in the wrong order, so a node cut off from the
//!   others (or restarted with no memory) cannot announce a VIPA after a
//!   newer owner did.
//! - **Confirmation.** Last, the claimant asks every target again
//!   (`Define` with `confirm`); an agent still on that epoch answers
//!   [`Accepted`](vipa_proto::ctl::Accepted) with the number of the last
//!   report it sent, and accepts no newer epoch for `LEASE_MS`. An answer
//!   counts once the claimant has applied that agent's reports up to that
//!   number; it announces when a majority counts within `LEASE_MS` of
//!   asking and every target that reported does (or, after
//!   `collect_timeout` more, a majority alone). So no newer owner can have
//!   announced first, and a connection whose report was lost just after
//!   the target took the epoch is in the CRT it announces with.
//! - **Takeover.** When SWIM (`foca`) declares the owner down, the
//!   highest-ranked live backup claims. It builds the CRT from the reports
//!   (every connection on every target of the VIPA, whatever its own
//!   candidate list), emits [`Event::PublishSnapshot`] and then
//!   [`Event::Announce`] (gratuitous ARP / unsolicited NA). New connections
//!   use its own candidate list.
//! - **Takeback.** When the configured owner is up again and the VIPA is
//!   `immediate` (or `when-idle` and the backup reports no connection), it
//!   claims. The backup steps down and answers with a
//!   [`Handover`](vipa_proto::ctl::Handover): every connection it routed
//!   and its view of the targets. The owner waits for the handover (while
//!   the backup is alive) as well as the reports, so its CRT holds every
//!   connection the backup had.
//! - **Readiness.** A target is *ready* for a service while its agent
//!   reports a listener on VIPA:port that is not quiesced. When the
//!   listener goes, the target is *restarting*: no new connections, and its
//!   connections keep their route for `restart_hold`; back in time, it is
//!   ready again. Past the hold, the connections lose their route once the
//!   target confirms (a full report asked for then) that the listener is
//!   still gone, or after `UNCONFIRMED_TTL_MS` of silence: an owner cut off
//!   from the target does not act on what it last heard.
//! - **Sequence gaps.** A report ahead of a lost one is applied in order
//!   once the agent resends; meanwhile the connections it opens are routed
//!   as unconfirmed, so a CRT published in between has them.
//! - **Reports** are sequenced per agent session and epoch and acknowledged
//!   cumulatively; the agent resends what is not acknowledged, and replaces
//!   a long backlog by a new full report.
//! - **Operator.** Quiesce / resume go to the agent, so the state lives on
//!   the target and survives every move of the VIPA; deactivate /
//!   reactivate make a node give up a VIPA (the next backup takes it over
//!   with a handover) and take part again.

mod agent;
mod membership;
mod node;

use std::net::IpAddr;

use vipa_proto::config::Service;
use vipa_proto::ctl::{Connection, Epoch, Message, NodeName};

pub use agent::{Agent, AGENT_RETRANSMIT_MS, MAX_UNACKED_REPORTS};
pub use membership::{swim_config, SwimId};
pub use node::{Node, COLLECT_RETRY_MS, UNCONFIRMED_TTL_MS};

/// Who a message comes from or goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// A routing node, by name (the daemon maps it to
    /// `[[cluster.node]].address`).
    Node(NodeName),
    /// The agent of a target, by the target's address (the daemon adds
    /// `cluster.port`).
    Target(IpAddr),
}

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The destination.
    pub to: Peer,
    /// The message.
    pub message: Message,
}

/// What a routing node's role for a VIPA is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Neither owning nor claiming.
    Idle,
    /// Claimed with this epoch; collecting reports (and a handover).
    Claiming(Epoch),
    /// Owns and routes with this epoch.
    Owner(Epoch),
}

/// What the node state machine asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Give the forwarder this complete state (it replaces the previous
    /// one): the VIPAs this node routes now.
    PublishSnapshot(Snapshot),
    /// Announce the VIPA: gratuitous ARP / unsolicited neighbour
    /// advertisements from every port (after the snapshot that routes it).
    Announce {
        /// The VIPA.
        vipa: IpAddr,
        /// The epoch it is routed with.
        epoch: Epoch,
    },
    /// The role for a VIPA changed.
    RoleChanged {
        /// The VIPA.
        vipa: IpAddr,
        /// The new role.
        role: Role,
    },
    /// A routing node joined or came back.
    NodeUp(NodeName),
    /// A routing node was declared down.
    NodeDown(NodeName),
}

/// What the forwarder routes: plain data the daemon turns into the
/// shared-memory snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The VIPAs this node owns now, in configuration order.
    pub vipas: Vec<OwnedVipa>,
}

/// One VIPA this node routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedVipa {
    /// The VIPA.
    pub address: IpAddr,
    /// The epoch it is owned with.
    pub epoch: Epoch,
    /// Per service, every target and its state.
    pub services: Vec<ServiceTargets>,
    /// The connection routing table: connection → target, sorted.
    pub crt: Vec<(Connection, IpAddr)>,
}

/// The targets of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTargets {
    /// The service.
    pub service: Service,
    /// Every target of the VIPA, in configuration order.
    pub targets: Vec<TargetEntry>,
}

/// One target of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetEntry {
    /// Its address.
    pub address: IpAddr,
    /// Its configured weight.
    pub weight: u32,
    /// In this node's candidate list.
    pub candidate: bool,
    /// What its agent reports.
    pub state: TargetState,
}

impl TargetEntry {
    /// Whether new connections may go to it: a ready candidate with weight.
    pub fn takes_new(&self) -> bool {
        self.candidate && self.weight > 0 && self.state == TargetState::Ready
    }
}

/// A target's state for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// An application listens: takes new connections.
    Ready,
    /// Quiesced by the operator: keeps its connections, takes no new ones.
    Quiesced,
    /// Its listener went away less than `restart_hold` ago: keeps its
    /// connections, takes no new ones.
    Restarting,
    /// No listener (or no report yet): takes nothing new; its connections
    /// have no route.
    Down,
}
