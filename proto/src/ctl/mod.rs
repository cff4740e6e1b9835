//! The control protocol between routing nodes and the agents on targets
//! (DESIGN.md §6): the messages and their frames.
//!
//! # Frame
//!
//! ```text
//!  0               4       6       7       8
//! +---------------+-------+-------+-------+---------------------------+
//! | length (BE)   | "VP"  | vers. | kind  | body (postcard)           |
//! +---------------+-------+-------+-------+---------------------------+
//! ```
//!
//! `length` counts the bytes after itself (4 + body), so a stream reader
//! knows the frame's size from its first four bytes, and a datagram carries
//! exactly one frame. The magic and the version come first so that a peer
//! speaking another version is refused with a sentence that says so
//! ([`DecodeError::UnsupportedVersion`]) rather than a parse error deep in
//! a body. A frame is at most [`MAX_FRAME_LEN`] bytes; lists of connections
//! are split into messages of at most [`MAX_CONNECTIONS_PER_MESSAGE`].
//!
//! # Design decisions
//!
//! - **Bodies are [postcard].** Its wire format is specified and frozen
//!   for 1.x (varints, no field names, no self-description), it is
//!   maintained, and it never panics on malformed input; serde derives keep
//!   the message definitions readable. The explicit `kind` byte in the
//!   header keeps the message type outside the body so that an unknown
//!   kind is refused by name.
//! - **Epochs order ownership.** Every ownership change carries an
//!   [`Epoch`]: a term that only grows and the claimant's rank in the
//!   VIPA's ranked list. Two nodes that claim at the same time have
//!   different ranks, so no two claims share an epoch, and the higher one
//!   wins everywhere. Anything stamped with an older epoch than the one a
//!   receiver knows is ignored (and answered with [`Stale`]).
//! - **Datagram-safe.** Every message is idempotent or sequenced (agent
//!   reports carry a sequence number and are acknowledged cumulatively), so
//!   the protocol survives loss, duplication and reordering, and also runs
//!   unchanged over a stream.

mod frame;

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::config::Service;

pub use frame::{decode, encode, frame_len, DecodeError, EncodeError};

/// Magic bytes after the length: "VP".
pub const MAGIC: [u8; 2] = *b"VP";
/// The protocol version this build speaks. Version 2: [`Accepted`] carries
/// the agent's session and last report number.
pub const VERSION: u8 = 2;
/// Bytes before the body: length (4), magic (2), version (1), kind (1).
pub const HEADER_LEN: usize = 8;
/// Largest frame, header included: 4 MiB.
pub const MAX_FRAME_LEN: usize = 4 << 20;
/// Most connections in one [`Report`] or [`Handover`] (about 40 bytes each,
/// well under [`MAX_FRAME_LEN`]); longer lists are split.
pub const MAX_CONNECTIONS_PER_MESSAGE: usize = 16_384;

/// A routing node's name (`node.name`, `[[cluster.node]].name`).
pub type NodeName = String;

/// The ownership epoch of a VIPA: `term << 8 | rank`. Terms grow by one
/// with every claim; the rank (0 = configured owner, 1 = first backup …)
/// makes concurrent claims distinct. [`Epoch::NONE`] is below every claim.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// No claim yet.
    pub const NONE: Epoch = Epoch(0);

    /// The epoch of a claim in `term` by the node of `rank`.
    pub fn new(term: u64, rank: u8) -> Epoch {
        Epoch(term << 8 | u64::from(rank))
    }

    /// The term: how many ownership changes came before, roughly.
    pub fn term(self) -> u64 {
        self.0 >> 8
    }

    /// The claimant's rank.
    pub fn rank(self) -> u8 {
        self.0 as u8
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.term(), self.rank())
    }
}

/// One client connection to a service of a VIPA (the VIPA is the message's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Connection {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The service: protocol and VIPA port.
    pub service: Service,
}

/// An application listening on VIPA:port on a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Listener {
    /// The service it listens on.
    pub service: Service,
    /// Quiesced by the operator: no new connections, existing ones kept.
    pub quiesced: bool,
}

/// Every message of the protocol. The comment on each says who sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Node → node: a SWIM (`foca`) membership datagram, carried opaquely.
    Swim(Vec<u8>),
    /// Node → node, every `refresh_interval` and on change: what this node
    /// knows and holds.
    Status(NodeStatus),
    /// Node → node: "I own this VIPA from this epoch". An owner with an
    /// older epoch steps down and answers with its [`Handover`].
    Claim(Claim),
    /// Old owner → new owner: the connections it routed and the targets it
    /// knew, in parts.
    Handover(Handover),
    /// Owner → agent, on claim and every `refresh_interval`: the VIPA, its
    /// services and who owns it from which epoch.
    Define(Define),
    /// Agent → owner: listeners and connections, in full or as changes.
    Report(Report),
    /// Owner → agent: every report up to `seq` is applied.
    ReportAck(ReportAck),
    /// Anyone → the sender of an old epoch: the newer one.
    Stale(Stale),
    /// Node → agent: quiesce or resume the target (or one service of it).
    Quiesce(Quiesce),
    /// Agent → claimant: the epoch is confirmed, under a short lease.
    Accepted(Accepted),
    /// Anyone, first on a stream: who is speaking. A datagram needs none
    /// (its source address says who sent it).
    Hello(Hello),
}

/// [`Message::Hello`]: the first frame on every control-protocol stream,
/// so that the receiver knows which peer the stream's messages come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hello {
    /// A routing node, by `node.name`.
    Node(NodeName),
    /// The agent of the target with this address (as configured in
    /// `vipa.target`).
    Target(IpAddr),
}

/// A node's view of one VIPA, in [`NodeStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipaStatus {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The highest epoch this node knows and its owner (if any).
    pub epoch: Epoch,
    /// The owner at `epoch`.
    pub owner: Option<NodeName>,
    /// Whether this node routes the VIPA now (with `epoch`).
    pub routing: bool,
    /// Whether this node is claiming the VIPA now (with `epoch`).
    pub claiming: bool,
    /// Whether the operator deactivated the VIPA on this node (it neither
    /// owns nor takes it over until reactivated).
    pub deactivated: bool,
    /// Connections of the VIPA this node routes now (for `when-idle`).
    pub connections: u32,
}

/// [`Message::Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// One entry per configured VIPA.
    pub vipas: Vec<VipaStatus>,
}

/// [`Message::Claim`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The claim's epoch.
    pub epoch: Epoch,
    /// The claimant.
    pub owner: NodeName,
}

/// [`Message::Handover`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The claim this answers.
    pub epoch: Epoch,
    /// The epoch the sender routed with.
    pub from_epoch: Epoch,
    /// Part number, from 0.
    pub part: u32,
    /// More parts follow.
    pub more: bool,
    /// Connections and their targets.
    pub connections: Vec<(Connection, IpAddr)>,
    /// Targets and their listeners, as the old owner last knew them (first
    /// part only).
    pub targets: Vec<(IpAddr, Vec<Listener>)>,
}

/// [`Message::Define`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Define {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The owner's epoch.
    pub epoch: Epoch,
    /// The owner, to which reports go.
    pub owner: NodeName,
    /// The services to watch.
    pub services: Vec<Service>,
    /// Answer with [`Accepted`] if this epoch is the agent's, and accept no
    /// newer one for [`LEASE_MS`] (see [`Accepted`]).
    pub confirm: bool,
    /// Send a full report even if this epoch is already the agent's: the
    /// owner has none from this agent (it restarted and claimed the same
    /// epoch again, or lost track of the agent's session).
    pub full: bool,
}

/// [`Message::Accepted`]: agent → claimant, answering a confirming
/// [`Define`]: "`epoch` is the newest I have accepted, and I accept no newer
/// one for [`LEASE_MS`] from now". A claimant that gets this from a
/// majority of the targets within [`LEASE_MS`] of asking knows that no
/// other node can have collected a majority for a newer epoch before the
/// answers arrived, so its announcement cannot follow a newer one.
///
/// It also says which reports the agent had sent for `epoch` when it
/// answered: the claimant counts the confirmation only once it has applied
/// them all, so a report that was lost (a connection the old owner opened
/// just before the agent accepted the claim) is in the CRT it announces
/// with, not resent after the announcement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The epoch confirmed.
    pub epoch: Epoch,
    /// The agent session ([`Report::session`]).
    pub session: u64,
    /// The last report the agent had sent for `epoch` in `session`
    /// ([`Report::seq`]; 0 if none).
    pub seq: u64,
}

/// How long an agent's promise in [`Accepted`] lasts, in milliseconds of
/// its own clock. Only durations are compared, so the clocks of the nodes
/// need not agree, only tick at about the same rate.
pub const LEASE_MS: u64 = 100;

/// [`Message::Report`]. A full report is a message with `reset` (the
/// receiver forgets what the target reported before) followed by parts
/// with `more` until one without; changes are single messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The owner's epoch this report is for.
    pub epoch: Epoch,
    /// The agent process: a restarted agent has another session, and the
    /// owner then waits for its full report.
    pub session: u64,
    /// Sequence number within the session and `epoch`, one per message.
    pub seq: u64,
    /// This message starts a full report.
    pub reset: bool,
    /// More parts of a full report follow.
    pub more: bool,
    /// Every listener on the VIPA now (always complete).
    pub listeners: Vec<Listener>,
    /// Connections established (since the previous report, or all of them
    /// in a full report).
    pub opened: Vec<Connection>,
    /// Connections ended since the previous report.
    pub closed: Vec<Connection>,
}

/// [`Message::ReportAck`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The epoch.
    pub epoch: Epoch,
    /// The agent session acknowledged.
    pub session: u64,
    /// Every report of the session up to and including this one is
    /// applied.
    pub seq: u64,
}

/// [`Message::Stale`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stale {
    /// The VIPA.
    pub vipa: IpAddr,
    /// The newer epoch the sender knows.
    pub epoch: Epoch,
    /// Its owner.
    pub owner: NodeName,
}

/// [`Message::Quiesce`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quiesce {
    /// The VIPA.
    pub vipa: IpAddr,
    /// One service, or the whole target.
    pub service: Option<Service>,
    /// `true`: quiesce; `false`: resume.
    pub quiesce: bool,
}

impl Message {
    /// The `kind` byte of the frame header.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Swim(_) => 1,
            Message::Status(_) => 2,
            Message::Claim(_) => 3,
            Message::Handover(_) => 4,
            Message::Define(_) => 5,
            Message::Report(_) => 6,
            Message::ReportAck(_) => 7,
            Message::Stale(_) => 8,
            Message::Quiesce(_) => 9,
            Message::Accepted(_) => 10,
            Message::Hello(_) => 11,
        }
    }

    /// The VIPA the message is about, if one.
    pub fn vipa(&self) -> Option<IpAddr> {
        match self {
            Message::Swim(_) | Message::Status(_) | Message::Hello(_) => None,
            Message::Claim(m) => Some(m.vipa),
            Message::Handover(m) => Some(m.vipa),
            Message::Define(m) => Some(m.vipa),
            Message::Report(m) => Some(m.vipa),
            Message::ReportAck(m) => Some(m.vipa),
            Message::Stale(m) => Some(m.vipa),
            Message::Quiesce(m) => Some(m.vipa),
            Message::Accepted(m) => Some(m.vipa),
        }
    }
}
