//! The routing-node side: ownership of each VIPA, the CRT, the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use vipa_proto::config::{ClusterConfig, Moveable, Service, VipaConfig};
use vipa_proto::ctl::{
    Claim, Connection, Define, Epoch, Handover, Listener, Message, NodeName, NodeStatus, Report,
    ReportAck, Stale, VipaStatus, LEASE_MS, MAX_CONNECTIONS_PER_MESSAGE,
};

use super::membership::{Change, Membership};
use super::{
    Event, OwnedVipa, Peer, Role, ServiceTargets, Snapshot, TargetEntry, TargetState, Transmit,
};

/// How often a claimant resends its claim and definitions to those that
/// have not answered.
pub const COLLECT_RETRY_MS: u64 = 100;
/// How long a connection the forwarder or a handover reported, and no
/// target confirmed, stays in the CRT.
pub const UNCONFIRMED_TTL_MS: u64 = 30_000;

/// The state machine of one routing node.
pub struct Node {
    name: NodeName,
    cluster: ClusterConfig,
    membership: Membership,
    vipas: Vec<VipaState>,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// No claim before this: time to hear who owns what.
    settle_until: u64,
    next_refresh: u64,
    snapshot_dirty: bool,
    /// The latest time handed in.
    now: u64,
    /// When each other node was last heard from directly.
    last_heard: HashMap<NodeName, u64>,
}

struct VipaState {
    cfg: VipaConfig,
    my_rank: Option<usize>,
    candidates: BTreeSet<IpAddr>,
    /// The highest epoch known, and its owner.
    known: Epoch,
    known_owner: Option<NodeName>,
    role: VipaRole,
    deactivated: bool,
    /// What the targets reported for the current claim.
    targets: BTreeMap<IpAddr, TargetView>,
    /// Connection → (target, expiry): from the forwarder and handovers, not
    /// yet confirmed by the target.
    unconfirmed: HashMap<Connection, (IpAddr, u64)>,
    /// Other nodes' last status for this VIPA.
    peers: HashMap<NodeName, PeerView>,
    /// What this node routed when it last stepped down, for the claimant.
    handover: Option<Vec<Handover>>,
    /// No claim before this: a node that just lost a claim lets the
    /// winner settle instead of answering at once with a higher one.
    no_claim_until: u64,
}

enum VipaRole {
    Idle,
    Collecting(Collecting),
    Owner(Epoch),
}

struct Collecting {
    epoch: Epoch,
    /// When a majority of the targets had reported.
    majority_at: Option<u64>,
    /// The previous owner, alive, whose handover is awaited.
    handover_from: Option<NodeName>,
    parts: BTreeSet<u32>,
    last_part: Option<u32>,
    next_retry: u64,
    /// The last confirmation round: when it was asked, who confirmed, with
    /// the agent's session and last report then (see `Accepted`).
    confirm: Option<(u64, Confirmations)>,
    /// When the first confirmation round was asked.
    confirm_since: Option<u64>,
}

/// Target → the agent's session and last report when it confirmed.
type Confirmations = BTreeMap<IpAddr, (u64, u64)>;

#[derive(Default)]
struct TargetView {
    session: Option<u64>,
    expected_seq: u64,
    /// A full report has been applied in this epoch.
    synced: bool,
    /// A full report being received in parts.
    incoming: Option<HashSet<Connection>>,
    listeners: BTreeMap<Service, ListenerState>,
    connections: HashSet<Connection>,
    /// When the last full report was applied.
    full_at: Option<u64>,
    /// A full report was asked for (`Define { full }`, repeated with each
    /// refresh until it is in): a listener is restarting past its hold,
    /// and only news from the target tells whether it came back.
    want_full: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerState {
    Listening { quiesced: bool },
    Restarting { since: u64 },
    Gone,
}

struct PeerView {
    epoch: Epoch,
    routing: bool,
    claiming: bool,
    deactivated: bool,
    connections: u32,
    at: u64,
}

impl Node {
    /// Node `name` of `cluster`, for `vipas` (the whole configuration's),
    /// with `generation` higher than any previous process of this node
    /// (e.g. its start time in ms) and `seed` for SWIM's random choices.
    pub fn new(
        name: &str,
        cluster: &ClusterConfig,
        vipas: &[VipaConfig],
        generation: u64,
        seed: u64,
        now: u64,
    ) -> Self {
        let mut out = Vec::new();
        let membership = Membership::new(cluster, name, generation, seed, now, &mut out);
        let vipas = vipas
            .iter()
            .map(|cfg| VipaState {
                my_rank: cfg.rank_of(name),
                candidates: cfg.candidates_for(name).iter().map(|t| t.address).collect(),
                cfg: cfg.clone(),
                known: Epoch::NONE,
                known_owner: None,
                role: VipaRole::Idle,
                deactivated: false,
                targets: BTreeMap::new(),
                unconfirmed: HashMap::new(),
                peers: HashMap::new(),
                handover: None,
                no_claim_until: 0,
            })
            .collect();
        let alone = cluster.nodes.len() <= 1;
        Node {
            name: name.to_owned(),
            cluster: cluster.clone(),
            membership,
            vipas,
            out: out.into(),
            events: VecDeque::new(),
            settle_until: if alone {
                now
            } else {
                now + (cluster.refresh_interval + cluster.probe_interval).as_millis() as u64
            },
            next_refresh: now,
            snapshot_dirty: false,
            now,
            last_heard: HashMap::new(),
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role for `vipa`.
    pub fn role(&self, vipa: IpAddr) -> Option<Role> {
        self.vipas
            .iter()
            .find(|v| v.cfg.address == vipa)
            .map(|v| v.role())
    }

    /// The highest epoch this node knows for `vipa`, and its owner.
    pub fn known_owner(&self, vipa: IpAddr) -> Option<(Epoch, Option<&str>)> {
        let v = self.vipas.iter().find(|v| v.cfg.address == vipa)?;
        Some((v.known, v.known_owner.as_deref()))
    }

    /// Whether SWIM considers `node` up.
    pub fn is_up(&self, node: &str) -> bool {
        self.membership.is_up(node)
    }

    /// A message from a peer.
    pub fn handle_message(&mut self, now: u64, from: &Peer, message: Message) {
        self.now = self.now.max(now);
        if let Peer::Node(n) = from {
            self.last_heard.insert(n.clone(), now);
        }
        match (from, message) {
            (Peer::Node(_), Message::Swim(data)) => {
                let mut out = Vec::new();
                let mut changes = Vec::new();
                self.membership
                    .handle_data(now, &data, &mut out, &mut changes);
                self.out.extend(out);
                self.membership_changed(changes);
            }
            (Peer::Node(n), Message::Status(s)) => self.status(now, n, s),
            (Peer::Node(n), Message::Claim(c)) => self.claim_received(now, n, c),
            (Peer::Node(n), Message::Handover(h)) => self.handover_received(now, n, h),
            (_, Message::Stale(s)) => {
                if let Some(i) = self.index(s.vipa) {
                    self.learn(now, i, s.epoch, Some(s.owner));
                }
            }
            (Peer::Target(t), Message::Report(r)) => self.report(now, *t, r),
            (Peer::Target(t), Message::Accepted(a)) => self.accepted(now, *t, a),
            _ => {}
        }
        self.decide(now);
    }

    /// The forwarder gave a new flow of `vipa` to `target`.
    pub fn handle_new_flow(&mut self, now: u64, vipa: IpAddr, conn: Connection, target: IpAddr) {
        let Some(i) = self.index(vipa) else {
            return;
        };
        let v = &mut self.vipas[i];
        if !matches!(v.role, VipaRole::Owner(_)) {
            return;
        }
        let known = v
            .targets
            .get(&target)
            .is_some_and(|t| t.connections.contains(&conn));
        if !known {
            v.unconfirmed
                .insert(conn, (target, now + UNCONFIRMED_TTL_MS));
            self.snapshot_dirty = true;
        }
    }

    /// Operator: quiesce (or resume) `target` for `vipa`, or one service.
    /// The state is kept by the target's agent, so it survives any move.
    pub fn quiesce(&mut self, vipa: IpAddr, target: IpAddr, service: Option<Service>, on: bool) {
        self.out.push_back(Transmit {
            to: Peer::Target(target),
            message: Message::Quiesce(vipa_proto::ctl::Quiesce {
                vipa,
                service,
                quiesce: on,
            }),
        });
    }

    /// Operator: deactivate `vipa` on this node (it gives the VIPA up to
    /// the next live backup and takes no part until reactivated), or
    /// reactivate it.
    pub fn set_deactivated(&mut self, now: u64, vipa: IpAddr, deactivated: bool) {
        let Some(i) = self.index(vipa) else {
            return;
        };
        self.vipas[i].deactivated = deactivated;
        if deactivated {
            self.step_down(i);
        }
        self.send_status();
        self.decide(now);
    }

    /// Timers: membership, refresh, claims, restart holds.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        let mut changes = Vec::new();
        self.membership.handle_timeout(now, &mut out, &mut changes);
        self.out.extend(out);
        self.membership_changed(changes);

        let hold = self.cluster.restart_hold.as_millis() as u64;
        let mut ask_full = Vec::new();
        for (i, v) in self.vipas.iter_mut().enumerate() {
            let epoch = v.my_epoch();
            for (&address, t) in &mut v.targets {
                // A listener restarting past its hold is gone only if the
                // target says so after the hold: one that came back while
                // its reports could not get through (this node cut off from
                // the targets, its forwarder still routing) keeps its
                // connections. A target silent for `UNCONFIRMED_TTL_MS`
                // more loses them as unconfirmed connections do.
                let full_at = t.full_at;
                let mut expired = false;
                for state in t.listeners.values_mut() {
                    if let ListenerState::Restarting { since } = *state {
                        let end = since + hold;
                        if now < end {
                            continue;
                        }
                        if full_at.is_some_and(|at| at >= end) || now >= end + UNCONFIRMED_TTL_MS {
                            *state = ListenerState::Gone;
                            self.snapshot_dirty = true;
                        } else {
                            expired = true;
                        }
                    }
                }
                if let (true, false, Some(epoch)) = (expired, t.want_full, epoch) {
                    t.want_full = true;
                    ask_full.push((i, epoch, address));
                }
            }
            let before = v.unconfirmed.len();
            v.unconfirmed.retain(|_, (_, expiry)| *expiry > now);
            if v.unconfirmed.len() != before {
                self.snapshot_dirty = true;
            }
        }

        for (i, epoch, address) in ask_full {
            self.define(i, epoch, &[address], false);
        }

        if now >= self.next_refresh {
            self.next_refresh = now + self.cluster.refresh_interval.as_millis() as u64;
            self.send_status();
            for i in 0..self.vipas.len() {
                if let VipaRole::Owner(epoch) = self.vipas[i].role {
                    let targets: Vec<IpAddr> = self.vipas[i]
                        .cfg
                        .targets
                        .iter()
                        .map(|t| t.address)
                        .collect();
                    self.define(i, epoch, &targets, false);
                }
            }
        }
        for i in 0..self.vipas.len() {
            self.collect_retry(now, i);
        }
        self.decide(now);
    }

    /// The earliest time [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let hold = self.cluster.restart_hold.as_millis() as u64;
        let mut t = self.next_refresh;
        if let Some(m) = self.membership.poll_timeout() {
            t = t.min(m);
        }
        // Deadlines already passed are not repeated: a claim waiting for a
        // handover past its collect deadline retries on `next_retry`.
        let future = |at: u64| (at > self.now).then_some(at);
        if let Some(at) = future(self.settle_until) {
            t = t.min(at);
        }
        for v in &self.vipas {
            if let Some(at) = future(v.no_claim_until) {
                t = t.min(at);
            }
            if let VipaRole::Collecting(c) = &v.role {
                t = t.min(c.next_retry);
                if let Some(at) = c
                    .confirm
                    .as_ref()
                    .and_then(|(asked, _)| future(asked + LEASE_MS + 1))
                {
                    t = t.min(at);
                }
                if let Some(at) = c
                    .majority_at
                    .and_then(|at| future(at + self.cluster.collect_timeout.as_millis() as u64))
                {
                    t = t.min(at);
                }
            }
            for tv in v.targets.values() {
                for s in tv.listeners.values() {
                    if let ListenerState::Restarting { since } = s {
                        // Past the hold, it waits for the target's word, or
                        // gives up on a silent one.
                        let at = future(since + hold).unwrap_or(since + hold + UNCONFIRMED_TTL_MS);
                        t = t.min(at);
                    }
                }
            }
            if let Some(e) = v.unconfirmed.values().map(|(_, e)| *e).min() {
                t = t.min(e);
            }
        }
        Some(t)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event; a pending snapshot comes before announcements.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.snapshot_dirty {
            self.snapshot_dirty = false;
            return Some(Event::PublishSnapshot(self.snapshot()));
        }
        self.events.pop_front()
    }

    /// What this node routes now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            vipas: self
                .vipas
                .iter()
                .filter_map(|v| match v.role {
                    VipaRole::Owner(epoch) => Some(v.owned(epoch)),
                    _ => None,
                })
                .collect(),
        }
    }

    fn index(&self, vipa: IpAddr) -> Option<usize> {
        self.vipas.iter().position(|v| v.cfg.address == vipa)
    }

    fn membership_changed(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Up(n) => {
                    // Tell the newcomer at once what this node holds.
                    let status = self.status_message();
                    self.out.push_back(Transmit {
                        to: Peer::Node(n.clone()),
                        message: status,
                    });
                    self.events.push_back(Event::NodeUp(n));
                }
                Change::Down(n) => self.events.push_back(Event::NodeDown(n)),
            }
        }
    }

    fn status_message(&self) -> Message {
        Message::Status(NodeStatus {
            vipas: self
                .vipas
                .iter()
                .map(|v| VipaStatus {
                    vipa: v.cfg.address,
                    epoch: v.known,
                    owner: v.known_owner.clone(),
                    routing: matches!(v.role, VipaRole::Owner(_)),
                    claiming: matches!(v.role, VipaRole::Collecting(_)),
                    deactivated: v.deactivated,
                    connections: v.connection_count() as u32,
                })
                .collect(),
        })
    }

    fn send_status(&mut self) {
        let status = self.status_message();
        for n in &self.cluster.nodes {
            if n.name != self.name {
                self.out.push_back(Transmit {
                    to: Peer::Node(n.name.clone()),
                    message: status.clone(),
                });
            }
        }
    }

    fn status(&mut self, now: u64, from: &str, s: NodeStatus) {
        for vs in s.vipas {
            let Some(i) = self.index(vs.vipa) else {
                continue;
            };
            self.vipas[i].peers.insert(
                from.to_owned(),
                PeerView {
                    epoch: vs.epoch,
                    routing: vs.routing,
                    claiming: vs.claiming,
                    deactivated: vs.deactivated,
                    connections: vs.connections,
                    at: now,
                },
            );
            self.learn(now, i, vs.epoch, vs.owner);
        }
    }

    /// Learns of `epoch` owned by `owner`; steps down or abandons a claim
    /// if it is newer than this node's.
    fn learn(&mut self, _now: u64, i: usize, epoch: Epoch, owner: Option<NodeName>) {
        let v = &mut self.vipas[i];
        if epoch <= v.known {
            return;
        }
        v.known = epoch;
        v.known_owner = owner;
        if v.my_epoch().is_some_and(|mine| mine < epoch) {
            self.step_down(i);
        }
    }

    /// Gives `vipa` up: a claim is abandoned, an owner keeps what it routed
    /// for the next owner's handover and stops routing.
    fn step_down(&mut self, i: usize) {
        let backoff = self.cluster.probe_interval.as_millis() as u64;
        let v = &mut self.vipas[i];
        v.no_claim_until = self.now + backoff;
        match std::mem::replace(&mut v.role, VipaRole::Idle) {
            VipaRole::Idle => return,
            VipaRole::Collecting(_) => {}
            VipaRole::Owner(epoch) => {
                v.handover = Some(v.handover_parts(epoch));
                self.snapshot_dirty = true;
            }
        }
        v.targets.clear();
        v.unconfirmed.clear();
        self.events.push_back(Event::RoleChanged {
            vipa: v.cfg.address,
            role: Role::Idle,
        });
    }

    fn claim_received(&mut self, now: u64, from: &str, c: Claim) {
        let Some(i) = self.index(c.vipa) else {
            return;
        };
        if c.epoch < self.vipas[i].known {
            let v = &self.vipas[i];
            if let Some(owner) = v.known_owner.clone() {
                self.out.push_back(Transmit {
                    to: Peer::Node(from.to_owned()),
                    message: Message::Stale(Stale {
                        vipa: c.vipa,
                        epoch: v.known,
                        owner,
                    }),
                });
            }
            return;
        }
        self.learn(now, i, c.epoch, Some(c.owner));
        // Whatever this node routed last goes to the claimant (again, if
        // the claim is repeated because a part was lost); a node that
        // routed nothing (or restarted since) says so, so the claimant does
        // not wait for it.
        let v = &self.vipas[i];
        if matches!(v.role, VipaRole::Idle) {
            let empty = || {
                vec![Handover {
                    vipa: c.vipa,
                    epoch: c.epoch,
                    from_epoch: Epoch::NONE,
                    part: 0,
                    more: false,
                    connections: Vec::new(),
                    targets: Vec::new(),
                }]
            };
            let parts = match &v.handover {
                Some(parts) if parts.iter().all(|p| p.from_epoch < c.epoch) => parts.clone(),
                _ => empty(),
            };
            for mut p in parts {
                p.epoch = c.epoch;
                self.out.push_back(Transmit {
                    to: Peer::Node(from.to_owned()),
                    message: Message::Handover(p),
                });
            }
        }
    }

    fn handover_received(&mut self, now: u64, from: &str, h: Handover) {
        let Some(i) = self.index(h.vipa) else {
            return;
        };
        let v = &mut self.vipas[i];
        let VipaRole::Collecting(c) = &mut v.role else {
            return;
        };
        if c.epoch != h.epoch || c.handover_from.as_deref() != Some(from) {
            return;
        }
        c.parts.insert(h.part);
        if !h.more {
            c.last_part = Some(h.part);
        }
        for (conn, target) in h.connections {
            let confirmed = v
                .targets
                .get(&target)
                .is_some_and(|t| t.connections.contains(&conn));
            if !confirmed {
                v.unconfirmed
                    .insert(conn, (target, now + UNCONFIRMED_TTL_MS));
            }
        }
        // The old owner's view of the targets stands in for targets that
        // have not reported yet.
        for (address, listeners) in h.targets {
            let tv = v.targets.entry(address).or_default();
            if !tv.synced {
                for l in listeners {
                    tv.listeners.insert(
                        l.service,
                        ListenerState::Listening {
                            quiesced: l.quiesced,
                        },
                    );
                }
            }
        }
        self.try_complete(now, i);
    }

    fn report(&mut self, now: u64, target: IpAddr, r: Report) {
        let Some(i) = self.index(r.vipa) else {
            return;
        };
        let services: Vec<Service> = self.vipas[i].cfg.services.clone();
        let v = &mut self.vipas[i];
        let Some(epoch) = v.my_epoch() else {
            return;
        };
        if !v.cfg.targets.iter().any(|t| t.address == target) {
            return;
        }
        if r.epoch < epoch {
            // The agent has not heard of this epoch yet.
            self.define(i, epoch, &[target], false);
            return;
        }
        if r.epoch > epoch {
            return;
        }
        let tv = v.targets.entry(target).or_default();
        let accept = if tv.session != Some(r.session) {
            r.reset
        } else {
            r.seq == tv.expected_seq || (r.reset && r.seq > tv.expected_seq)
        };
        if !accept && (tv.session != Some(r.session) || r.seq > tv.expected_seq) {
            // Ahead of the sequence: an earlier report was lost or is late.
            // It is applied in order when the agent sends it again; until
            // then the connections it opens are routed as unconfirmed, so
            // that a CRT published meanwhile (a takeover completing) does
            // not lack them.
            for c in &r.opened {
                if !tv.connections.contains(c) {
                    v.unconfirmed.insert(*c, (target, now + UNCONFIRMED_TTL_MS));
                    self.snapshot_dirty |= matches!(v.role, VipaRole::Owner(_));
                }
            }
            for c in &r.closed {
                if v.unconfirmed.get(c).is_some_and(|(t, _)| *t == target) {
                    v.unconfirmed.remove(c);
                }
            }
        }
        if accept {
            tv.session = Some(r.session);
            tv.expected_seq = r.seq + 1;
            // A full report in parts is gathered aside and swapped in at
            // its last part, so the CRT never lacks the connections a
            // target is re-sending.
            if r.reset {
                tv.incoming = Some(HashSet::new());
            }
            let set = match tv.incoming.as_mut() {
                Some(incoming) => incoming,
                None => &mut tv.connections,
            };
            for c in &r.opened {
                set.insert(*c);
                v.unconfirmed.remove(c);
            }
            for c in &r.closed {
                set.remove(c);
                if v.unconfirmed.get(c).is_some_and(|(t, _)| *t == target) {
                    v.unconfirmed.remove(c);
                }
            }
            let mut full_now = false;
            if !r.more {
                if let Some(full) = tv.incoming.take() {
                    tv.connections = full;
                    tv.synced = true;
                    tv.full_at = Some(now);
                    tv.want_full = false;
                    full_now = true;
                }
            }
            let hold = self.cluster.restart_hold.as_millis() as u64;
            for s in services {
                let now_state = match r.listeners.iter().find(|l| l.service == s) {
                    Some(l) => ListenerState::Listening {
                        quiesced: l.quiesced,
                    },
                    None => match tv.listeners.get(&s) {
                        Some(ListenerState::Listening { .. }) => {
                            ListenerState::Restarting { since: now }
                        }
                        // Past the hold, a full report without the
                        // listener confirms that it is gone.
                        Some(ListenerState::Restarting { since })
                            if full_now && now >= since + hold =>
                        {
                            ListenerState::Gone
                        }
                        Some(state @ ListenerState::Restarting { .. }) => *state,
                        Some(ListenerState::Gone) => ListenerState::Gone,
                        // First news of this target: connections without a
                        // listener are held as for a restart.
                        None if tv.connections.iter().any(|c| c.service == s) => {
                            ListenerState::Restarting { since: now }
                        }
                        None => ListenerState::Gone,
                    },
                };
                tv.listeners.insert(s, now_state);
            }
            self.snapshot_dirty |= matches!(v.role, VipaRole::Owner(_));
        }
        let session = r.session;
        let acked = tv.expected_seq.saturating_sub(1);
        if tv.session == Some(session) {
            self.out.push_back(Transmit {
                to: Peer::Target(target),
                message: Message::ReportAck(ReportAck {
                    vipa: r.vipa,
                    epoch,
                    session,
                    seq: acked,
                }),
            });
        }
        self.try_complete(now, i);
    }

    fn accepted(&mut self, now: u64, target: IpAddr, a: vipa_proto::ctl::Accepted) {
        let Some(i) = self.index(a.vipa) else {
            return;
        };
        let VipaRole::Collecting(c) = &mut self.vipas[i].role else {
            return;
        };
        if c.epoch != a.epoch {
            return;
        }
        if let Some((asked, who)) = &mut c.confirm {
            if now <= *asked + LEASE_MS {
                who.insert(target, (a.session, a.seq));
            }
        }
        self.try_complete(now, i);
    }

    fn define(&mut self, i: usize, epoch: Epoch, targets: &[IpAddr], confirm: bool) {
        let v = &self.vipas[i];
        for &t in targets {
            self.out.push_back(Transmit {
                to: Peer::Target(t),
                message: Message::Define(Define {
                    vipa: v.cfg.address,
                    epoch,
                    owner: self.name.clone(),
                    services: v.cfg.services.clone(),
                    confirm,
                    full: !v
                        .targets
                        .get(&t)
                        .is_some_and(|tv| tv.synced && !tv.want_full),
                }),
            });
        }
    }

    /// Claims `vipa` with the next epoch.
    fn claim(&mut self, now: u64, i: usize) {
        let v = &mut self.vipas[i];
        let Some(rank) = v.my_rank else {
            return;
        };
        let epoch = Epoch::new(v.known.term() + 1, rank.min(255) as u8);
        // The previous owner, if alive, hands its connections over.
        let previous = v.known_owner.clone().filter(|o| *o != self.name);
        let handover_from = previous.filter(|o| self.membership.is_up(o));
        v.known = epoch;
        v.known_owner = Some(self.name.clone());
        v.targets.clear();
        v.unconfirmed.clear();
        v.handover = None;
        v.role = VipaRole::Collecting(Collecting {
            epoch,
            majority_at: None,
            handover_from,
            parts: BTreeSet::new(),
            last_part: None,
            next_retry: now + COLLECT_RETRY_MS,
            confirm: None,
            confirm_since: None,
        });
        self.events.push_back(Event::RoleChanged {
            vipa: v.cfg.address,
            role: Role::Claiming(epoch),
        });
        let claim = Message::Claim(Claim {
            vipa: v.cfg.address,
            epoch,
            owner: self.name.clone(),
        });
        for n in &self.cluster.nodes {
            if n.name != self.name {
                self.out.push_back(Transmit {
                    to: Peer::Node(n.name.clone()),
                    message: claim.clone(),
                });
            }
        }
        let targets: Vec<IpAddr> = v.cfg.targets.iter().map(|t| t.address).collect();
        self.define(i, epoch, &targets, false);
        self.try_complete(now, i);
    }

    fn collect_retry(&mut self, now: u64, i: usize) {
        let v = &mut self.vipas[i];
        let VipaRole::Collecting(c) = &mut v.role else {
            return;
        };
        if now < c.next_retry {
            self.try_complete(now, i);
            return;
        }
        c.next_retry = now + COLLECT_RETRY_MS;
        let epoch = c.epoch;
        let waiting_handover = c.handover_from.clone().filter(|_| !c.handover_done());
        let unsynced: Vec<IpAddr> = v
            .cfg
            .targets
            .iter()
            .map(|t| t.address)
            .filter(|a| !v.targets.get(a).is_some_and(|t| t.synced))
            .collect();
        if let Some(from) = waiting_handover {
            self.out.push_back(Transmit {
                to: Peer::Node(from),
                message: Message::Claim(Claim {
                    vipa: v.cfg.address,
                    epoch,
                    owner: self.name.clone(),
                }),
            });
        }
        self.define(i, epoch, &unsynced, false);
        self.try_complete(now, i);
    }

    /// Becomes owner once the reports (and the handover) are in.
    fn try_complete(&mut self, now: u64, i: usize) {
        let collect_timeout = self.cluster.collect_timeout.as_millis() as u64;
        let v = &mut self.vipas[i];
        let VipaRole::Collecting(c) = &mut v.role else {
            return;
        };
        let total = v.cfg.targets.len();
        let synced = v.targets.values().filter(|t| t.synced).count();
        if synced < majority(total) {
            return;
        }
        let majority_at = *c.majority_at.get_or_insert(now);
        if synced < total && now < majority_at + collect_timeout {
            return;
        }
        if let Some(from) = &c.handover_from {
            if !c.handover_done() && self.membership.is_up(from) {
                return;
            }
        }
        // Last, a majority must confirm under lease that this epoch is
        // still theirs (see `Accepted`), so that no newer owner can have
        // announced before this one does.
        //
        // A confirmation counts once every report the agent had sent when
        // it answered is applied, and every target that reported in this
        // epoch must confirm so (for `collect_timeout` more, after which a
        // majority is enough, as for the reports): a report that was lost
        // (a connection the old owner opened just after the agent took
        // this epoch) is resent, and in the CRT, before the announcement,
        // instead of the connection being hashed to another target.
        let epoch = c.epoch;
        let since = *c.confirm_since.get_or_insert(now);
        let confirmed = match &c.confirm {
            Some((asked, who)) if now <= asked + LEASE_MS => {
                let applied = |t: &IpAddr| {
                    who.get(t).is_some_and(|&(session, seq)| {
                        v.targets
                            .get(t)
                            .is_some_and(|tv| tv.session == Some(session) && tv.expected_seq > seq)
                    })
                };
                let count = v.cfg.targets.iter().filter(|t| applied(&t.address)).count();
                let all_reported = v.targets.iter().all(|(t, tv)| !tv.synced || applied(t));
                count >= majority(total)
                    && (all_reported || now >= since + collect_timeout + LEASE_MS)
            }
            _ => {
                c.confirm = Some((now, BTreeMap::new()));
                let targets: Vec<IpAddr> = v.cfg.targets.iter().map(|t| t.address).collect();
                self.define(i, epoch, &targets, true);
                return;
            }
        };
        if !confirmed {
            return;
        }
        v.role = VipaRole::Owner(epoch);
        v.handover = None;
        self.snapshot_dirty = true;
        let vipa = v.cfg.address;
        // The snapshot goes first (poll_event), then the announcement.
        self.events.push_back(Event::RoleChanged {
            vipa,
            role: Role::Owner(epoch),
        });
        self.events.push_back(Event::Announce { vipa, epoch });
        self.send_status();
    }

    /// Claims what this node should own now (DESIGN.md §6).
    fn decide(&mut self, now: u64) {
        if now < self.settle_until {
            return;
        }
        for i in 0..self.vipas.len() {
            let v = &self.vipas[i];
            let Some(my_rank) = v.my_rank else {
                continue;
            };
            if v.deactivated || !matches!(v.role, VipaRole::Idle) || now < v.no_claim_until {
                continue;
            }
            // Up for SWIM, or heard from directly since SWIM could have
            // noticed: a node that SWIM still has down after a restart or
            // a healed partition, but that talks, is not taken over.
            let recent =
                (self.cluster.probe_interval + self.cluster.suspect_timeout).as_millis() as u64;
            let live = |n: &str| {
                let up = self.membership.is_up(n)
                    || self.last_heard.get(n).is_some_and(|&at| now <= at + recent);
                up && !v.peers.get(n).is_some_and(|p| p.deactivated)
            };
            // The known owner counts while it is live and, by its last
            // status, routes or claims the VIPA: one that restarted (and
            // forgot) is no owner, whatever SWIM says.
            let fresh = 2 * self.cluster.refresh_interval.as_millis() as u64;
            let owner = v.known_owner.as_deref().filter(|o| {
                *o != self.name
                    && live(o)
                    && v.peers.get(*o).is_none_or(|p| {
                        now > p.at + fresh || p.epoch < v.known || p.routing || p.claiming
                    })
            });
            match owner {
                None => {
                    // Takeover: only if no live node ranks above this one.
                    let above_alive = (0..my_rank)
                        .filter_map(|r| v.cfg.node_at_rank(r))
                        .any(|n| n != self.name && live(n));
                    if !above_alive {
                        self.claim(now, i);
                    }
                }
                Some(owner) if my_rank == 0 => {
                    // Takeback by the configured owner.
                    let go = match v.cfg.moveable {
                        Moveable::Immediate => true,
                        Moveable::WhenIdle => v.peers.get(owner).is_some_and(|p| {
                            p.routing
                                && p.epoch == v.known
                                && p.connections == 0
                                && now
                                    <= p.at + 2 * self.cluster.refresh_interval.as_millis() as u64
                        }),
                    };
                    if go {
                        self.claim(now, i);
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// More than half of `total`.
fn majority(total: usize) -> usize {
    total / 2 + 1
}

impl Collecting {
    fn handover_done(&self) -> bool {
        self.last_part
            .is_some_and(|last| self.parts.len() as u64 == u64::from(last) + 1)
    }
}

impl VipaState {
    fn role(&self) -> Role {
        match &self.role {
            VipaRole::Idle => Role::Idle,
            VipaRole::Collecting(c) => Role::Claiming(c.epoch),
            VipaRole::Owner(e) => Role::Owner(*e),
        }
    }

    fn my_epoch(&self) -> Option<Epoch> {
        match &self.role {
            VipaRole::Idle => None,
            VipaRole::Collecting(c) => Some(c.epoch),
            VipaRole::Owner(e) => Some(*e),
        }
    }

    fn connection_count(&self) -> usize {
        match self.role {
            VipaRole::Owner(_) => self.crt().len(),
            _ => 0,
        }
    }

    /// Connection → target: what the targets reported, except where a
    /// listener is gone past its hold, plus what is not confirmed yet.
    fn crt(&self) -> BTreeMap<Connection, IpAddr> {
        let mut crt = BTreeMap::new();
        for (conn, (target, _)) in &self.unconfirmed {
            crt.insert(*conn, *target);
        }
        for (address, tv) in &self.targets {
            for conn in &tv.connections {
                if tv.listeners.get(&conn.service) != Some(&ListenerState::Gone) {
                    crt.insert(*conn, *address);
                }
            }
        }
        crt
    }

    fn owned(&self, epoch: Epoch) -> OwnedVipa {
        let services = self
            .cfg
            .services
            .iter()
            .map(|&service| ServiceTargets {
                service,
                targets: self
                    .cfg
                    .targets
                    .iter()
                    .map(|t| TargetEntry {
                        address: t.address,
                        weight: t.weight,
                        candidate: self.candidates.contains(&t.address),
                        state: match self
                            .targets
                            .get(&t.address)
                            .and_then(|tv| tv.listeners.get(&service))
                        {
                            Some(ListenerState::Listening { quiesced: false }) => {
                                TargetState::Ready
                            }
                            Some(ListenerState::Listening { quiesced: true }) => {
                                TargetState::Quiesced
                            }
                            Some(ListenerState::Restarting { .. }) => TargetState::Restarting,
                            Some(ListenerState::Gone) | None => TargetState::Down,
                        },
                    })
                    .collect(),
            })
            .collect();
        OwnedVipa {
            address: self.cfg.address,
            epoch,
            services,
            crt: self.crt().into_iter().collect(),
        }
    }

    fn handover_parts(&self, epoch: Epoch) -> Vec<Handover> {
        let crt: Vec<(Connection, IpAddr)> = self.crt().into_iter().collect();
        let targets: Vec<(IpAddr, Vec<Listener>)> = self
            .targets
            .iter()
            .map(|(a, tv)| {
                let listeners = tv
                    .listeners
                    .iter()
                    .filter_map(|(s, st)| match st {
                        ListenerState::Listening { quiesced } => Some(Listener {
                            service: *s,
                            quiesced: *quiesced,
                        }),
                        _ => None,
                    })
                    .collect();
                (*a, listeners)
            })
            .collect();
        let chunks: Vec<&[(Connection, IpAddr)]> = if crt.is_empty() {
            vec![&[]]
        } else {
            crt.chunks(MAX_CONNECTIONS_PER_MESSAGE).collect()
        };
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(part, chunk)| Handover {
                vipa: self.cfg.address,
                epoch,
                from_epoch: epoch,
                part: part as u32,
                more: part < last,
                connections: chunk.to_vec(),
                targets: if part == 0 {
                    targets.clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }
}
