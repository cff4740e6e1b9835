//! The target side: what `vipa-agent` tells the owner of each VIPA.
//!
//! The agent is told what exists (listeners, connections, quiesce) by its
//! driver (sock_diag on a real target, the simulation in tests) and reports
//! it to whichever node owns the VIPA with the highest epoch it has seen.
//! It is the arbiter of epochs for its VIPAs: it never goes back to a lower
//! epoch, and tells a node that defines one that it is stale.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;

use vipa_proto::config::Service;
use vipa_proto::ctl::{
    Accepted, Connection, Define, Epoch, Listener, Message, NodeName, Report, Stale, LEASE_MS,
    MAX_CONNECTIONS_PER_MESSAGE,
};

use super::{Peer, Transmit};

/// How long a report waits for its acknowledgement before the agent sends
/// it (and every later one) again.
pub const AGENT_RETRANSMIT_MS: u64 = 100;
/// Reports waiting for acknowledgement beyond which the agent replaces them
/// all by one new full report (an owner that is away must not make the
/// backlog grow without bound).
pub const MAX_UNACKED_REPORTS: usize = 64;

/// The agent state machine of one target.
pub struct Agent {
    session: u64,
    vipas: BTreeMap<IpAddr, AgentVipa>,
    out: VecDeque<Transmit>,
}

#[derive(Default)]
struct AgentVipa {
    epoch: Epoch,
    owner: Option<NodeName>,
    listeners: BTreeSet<Service>,
    quiesced: BTreeSet<Service>,
    quiesce_all: bool,
    connections: BTreeSet<Connection>,
    /// Changes not reported yet.
    opened: Vec<Connection>,
    closed: Vec<Connection>,
    listeners_changed: bool,
    next_seq: u64,
    unacked: VecDeque<Report>,
    /// When `unacked` was last sent.
    sent_at: u64,
    /// No newer epoch is accepted before this (the promise of
    /// [`Accepted`]).
    promised_until: u64,
}

impl Agent {
    /// A new agent process; `session` must differ from the previous
    /// process's (the daemon passes its start time).
    pub fn new(session: u64) -> Self {
        Agent {
            session,
            vipas: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// An application listens on `vipa`:`service` now (`true`) or no more.
    pub fn set_listening(&mut self, now: u64, vipa: IpAddr, service: Service, listening: bool) {
        let v = self.vipas.entry(vipa).or_default();
        let changed = if listening {
            v.listeners.insert(service)
        } else {
            v.listeners.remove(&service)
        };
        if changed {
            v.listeners_changed = true;
            self.flush(now, vipa);
        }
    }

    /// A connection to `vipa` is established.
    pub fn connection_opened(&mut self, now: u64, vipa: IpAddr, conn: Connection) {
        let v = self.vipas.entry(vipa).or_default();
        if v.connections.insert(conn) {
            v.closed.retain(|c| *c != conn);
            v.opened.push(conn);
            self.flush(now, vipa);
        }
    }

    /// A connection to `vipa` ended.
    pub fn connection_closed(&mut self, now: u64, vipa: IpAddr, conn: Connection) {
        let v = self.vipas.entry(vipa).or_default();
        if v.connections.remove(&conn) {
            // Reported as closed even if its opening was not reported yet:
            // the owner may know it from the forwarder's new-flow events.
            v.opened.retain(|c| *c != conn);
            v.closed.push(conn);
            self.flush(now, vipa);
        }
    }

    /// The connections to `vipa` this agent knows.
    pub fn connections(&self, vipa: IpAddr) -> impl Iterator<Item = &Connection> {
        self.vipas
            .get(&vipa)
            .into_iter()
            .flat_map(|v| &v.connections)
    }

    /// The owner and epoch this agent reports to for `vipa`.
    pub fn owner(&self, vipa: IpAddr) -> Option<(Epoch, &str)> {
        let v = self.vipas.get(&vipa)?;
        Some((v.epoch, v.owner.as_deref()?))
    }

    /// A message from a routing node.
    pub fn handle_message(&mut self, now: u64, from: &Peer, message: Message) {
        let Peer::Node(from) = from else {
            return;
        };
        match message {
            Message::Define(d) => self.define(now, from, d),
            Message::ReportAck(a) => {
                if let Some(v) = self.vipas.get_mut(&a.vipa) {
                    if a.epoch == v.epoch && a.session == self.session {
                        while v.unacked.front().is_some_and(|r| r.seq <= a.seq) {
                            v.unacked.pop_front();
                        }
                    }
                }
            }
            Message::Quiesce(q) => {
                let v = self.vipas.entry(q.vipa).or_default();
                match q.service {
                    None => v.quiesce_all = q.quiesce,
                    Some(s) if q.quiesce => {
                        v.quiesced.insert(s);
                    }
                    Some(s) => {
                        v.quiesced.remove(&s);
                    }
                }
                v.listeners_changed = true;
                self.flush(now, q.vipa);
            }
            _ => {}
        }
    }

    fn define(&mut self, now: u64, from: &str, d: Define) {
        let v = self.vipas.entry(d.vipa).or_default();
        if d.epoch < v.epoch {
            if let Some(owner) = v.owner.clone() {
                self.out.push_back(Transmit {
                    to: Peer::Node(from.to_owned()),
                    message: Message::Stale(Stale {
                        vipa: d.vipa,
                        epoch: v.epoch,
                        owner,
                    }),
                });
            }
            return;
        }
        if d.epoch == v.epoch {
            if d.full && d.owner.as_str() == v.owner.as_deref().unwrap_or("") {
                v.unacked.clear();
                v.opened.clear();
                v.closed.clear();
                v.listeners_changed = false;
                Self::queue_full(self.session, d.vipa, v);
                Self::send_unacked(&mut self.out, v, now);
            }
            // Otherwise a refresh, or a duplicate: the reports in flight
            // are resent by the timer.
            if d.confirm {
                // With the last report sent (the full one just queued
                // included): the claimant counts this once it has applied
                // them all, so that none lost is missing from its CRT.
                v.promised_until = now + LEASE_MS;
                self.out.push_back(Transmit {
                    to: Peer::Node(from.to_owned()),
                    message: Message::Accepted(Accepted {
                        vipa: d.vipa,
                        epoch: d.epoch,
                        session: self.session,
                        seq: v.next_seq.saturating_sub(1),
                    }),
                });
            }
            return;
        }
        if now < v.promised_until {
            // Promised to the current owner; the claimant asks again.
            return;
        }
        v.epoch = d.epoch;
        v.owner = Some(d.owner);
        v.next_seq = 1;
        v.unacked.clear();
        v.opened.clear();
        v.closed.clear();
        v.listeners_changed = false;
        Self::queue_full(self.session, d.vipa, v);
        Self::send_unacked(&mut self.out, v, now);
    }

    /// A full report: `reset`, then parts until one without `more`.
    fn queue_full(session: u64, vipa: IpAddr, v: &mut AgentVipa) {
        let listeners = v.listener_list();
        let all: Vec<Connection> = v.connections.iter().copied().collect();
        let mut chunks = all.chunks(MAX_CONNECTIONS_PER_MESSAGE).peekable();
        let mut first = true;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let more = chunks.peek().is_some();
            v.unacked.push_back(Report {
                vipa,
                epoch: v.epoch,
                session,
                seq: v.next_seq,
                reset: first,
                more,
                listeners: listeners.clone(),
                opened: chunk.to_vec(),
                closed: Vec::new(),
            });
            v.next_seq += 1;
            first = false;
            if !more {
                break;
            }
        }
    }

    /// Reports the changes of `vipa`, if it has an owner.
    fn flush(&mut self, now: u64, vipa: IpAddr) {
        let session = self.session;
        let Some(v) = self.vipas.get_mut(&vipa) else {
            return;
        };
        if v.owner.is_none() {
            return;
        }
        if v.opened.is_empty() && v.closed.is_empty() && !v.listeners_changed {
            return;
        }
        let first_new = v.next_seq;
        let had_backlog = !v.unacked.is_empty();
        if v.unacked.len() >= MAX_UNACKED_REPORTS {
            v.unacked.clear();
            v.opened.clear();
            v.closed.clear();
            v.listeners_changed = false;
            Self::queue_full(session, vipa, v);
        } else {
            let opened = std::mem::take(&mut v.opened);
            let closed = std::mem::take(&mut v.closed);
            // Split long change lists; `opened` first, so a connection
            // opened and closed in one batch is never left open.
            let mut chunks: Vec<(Vec<Connection>, Vec<Connection>)> = opened
                .chunks(MAX_CONNECTIONS_PER_MESSAGE)
                .map(|c| (c.to_vec(), Vec::new()))
                .collect();
            chunks.extend(
                closed
                    .chunks(MAX_CONNECTIONS_PER_MESSAGE)
                    .map(|c| (Vec::new(), c.to_vec())),
            );
            if chunks.is_empty() {
                chunks.push((Vec::new(), Vec::new()));
            }
            let listeners = v.listener_list();
            for (opened, closed) in chunks {
                v.unacked.push_back(Report {
                    vipa,
                    epoch: v.epoch,
                    session,
                    seq: v.next_seq,
                    reset: false,
                    more: false,
                    listeners: listeners.clone(),
                    opened,
                    closed,
                });
                v.next_seq += 1;
            }
            v.listeners_changed = false;
        }
        // Only what is new goes now; the backlog waits for its timer, so a
        // lost acknowledgement does not resend everything on each change.
        let owner = v.owner.clone().expect("checked above");
        for r in v.unacked.iter().filter(|r| r.seq >= first_new) {
            self.out.push_back(Transmit {
                to: Peer::Node(owner.clone()),
                message: Message::Report(r.clone()),
            });
        }
        if !had_backlog {
            v.sent_at = now;
        }
    }

    fn send_unacked(out: &mut VecDeque<Transmit>, v: &mut AgentVipa, now: u64) {
        let Some(owner) = v.owner.clone() else {
            return;
        };
        for r in &v.unacked {
            out.push_back(Transmit {
                to: Peer::Node(owner.clone()),
                message: Message::Report(r.clone()),
            });
        }
        v.sent_at = now;
    }

    /// Resends unacknowledged reports whose time has come.
    pub fn handle_timeout(&mut self, now: u64) {
        for v in self.vipas.values_mut() {
            if !v.unacked.is_empty() && now >= v.sent_at + AGENT_RETRANSMIT_MS {
                Self::send_unacked(&mut self.out, v, now);
            }
        }
    }

    /// When [`Self::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.vipas
            .values()
            .filter(|v| !v.unacked.is_empty())
            .map(|v| v.sent_at + AGENT_RETRANSMIT_MS)
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
}

impl AgentVipa {
    fn listener_list(&self) -> Vec<Listener> {
        self.listeners
            .iter()
            .map(|&service| Listener {
                service,
                quiesced: self.quiesce_all || self.quiesced.contains(&service),
            })
            .collect()
    }
}
