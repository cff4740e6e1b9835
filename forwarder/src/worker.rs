//! The per-core poll loop.
//!
//! A worker owns one queue of every port, its flow table and its counters.
//! One [`Worker::poll`] receives a burst from each queue, runs it through the
//! pipeline and hands the results to the same queue (transmit), to the host,
//! or back to the pool (drops). Nothing here takes a lock or allocates: the
//! bursts are fixed arrays reused from poll to poll.
//!
//! Transmit batching: by default each queue's frames are sent at the end of
//! the burst that produced them. With [`Worker::set_tx_drain`] a queue's
//! frames wait across polls until a full burst has gathered or the oldest
//! has waited the drain time, trading up to that much latency for fewer,
//! fuller transmit calls at low rates (under load every burst is full and
//! goes at once). Frames to the host and drops never wait.
//!
//! A worker that follows
//! the control plane's snapshots ([`Worker::follow`]) loads one atomic per
//! poll and switches tables between bursts when it changed
//! ([`crate::snapshot`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::counters::{Counter, Counters};
use crate::neighbor::Neighbors;
use crate::pipeline::{Outputs, Pipeline};
use crate::port::{Burst, PortQueue};
use crate::snapshot::{Follower, TableSlot};
use crate::tables::Tables;

/// A worker: queues, pipeline state, reusable bursts.
pub struct Worker<Q: PortQueue> {
    /// The queues this worker owns, each with the index of its port in the tables.
    pub queues: Vec<(usize, Q)>,
    /// The pipeline state (flow table, counters, tables).
    pub pipeline: Pipeline,
    burst_size: usize,
    rx: Burst<Q::Buf>,
    out: Outputs<Q::Buf>,
    /// This worker announces VIPAs and watches link state (one worker per
    /// process does: the one owning queue 0).
    announcer: bool,
    /// Link state of each of `queues` at the last check.
    link: Vec<bool>,
    /// Second of the last link check.
    link_checked: u32,
    /// Per queue: frames waiting for transmit (only with a drain time).
    pending: Vec<Burst<Q::Buf>>,
    /// Per queue: when the oldest pending frame was queued.
    pending_since: Vec<Option<Instant>>,
    /// How long a partial transmit batch may wait; `None` sends every burst's
    /// frames at its end.
    tx_drain: Option<Duration>,
    /// The snapshot slot this worker follows, if any.
    follow: Option<Follower>,
}

impl<Q: PortQueue> Worker<Q> {
    /// A worker over `queues` (queue handle with its port's index) using
    /// `tables`, alone: it announces and resolves next hops by itself.
    pub fn new(queues: Vec<(usize, Q)>, tables: Arc<Tables>) -> Self {
        let neighbors = Arc::new(tables.new_neighbors());
        Self::with_neighbors(queues, tables, neighbors, true)
    }

    /// A worker sharing `neighbors` with the others; `announcer` for
    /// exactly one of them (it sends announcements and watches links).
    pub fn with_neighbors(
        queues: Vec<(usize, Q)>,
        tables: Arc<Tables>,
        neighbors: Arc<Neighbors>,
        announcer: bool,
    ) -> Self {
        let burst_size = tables.burst_size;
        let link = queues.iter().map(|(_, q)| q.link_up()).collect();
        let pending = queues.iter().map(|_| Burst::new()).collect();
        let pending_since = vec![None; queues.len()];
        let mut pipeline = Pipeline::with_neighbors(tables, neighbors);
        for (port, q) in &queues {
            pipeline.set_ipv4_checksum_offload(*port, q.ipv4_checksum_offload());
        }
        Worker {
            queues,
            pipeline,
            burst_size,
            rx: Burst::new(),
            out: Outputs::new(),
            announcer,
            link,
            link_checked: 0,
            pending,
            pending_since,
            tx_drain: None,
            follow: None,
        }
    }

    /// Lets partial transmit batches wait up to `drain` for more frames
    /// (`forwarder.tx_drain_us`); zero sends every burst's frames at its end.
    pub fn set_tx_drain(&mut self, drain: Duration) {
        self.tx_drain = (!drain.is_zero()).then_some(drain);
    }

    /// Sends every waiting transmit batch now (before stopping).
    pub fn drain_tx(&mut self) {
        for (i, (_, queue)) in self.queues.iter_mut().enumerate() {
            send_pending(queue, &mut self.pending[i], &mut self.pipeline.counters);
            self.pending_since[i] = None;
        }
    }

    /// Makes the worker follow `slot` as worker number `index`: it switches
    /// to the slot's generations between polls (one atomic load per poll)
    /// and acknowledges each one.
    pub fn follow(&mut self, slot: Arc<TableSlot>, index: usize) {
        let mut f = Follower::new(slot, index);
        if !Arc::ptr_eq(&f.slot.current().tables, &self.pipeline.tables) {
            // Not on the slot's tables yet: switch at the next poll.
            f.seen = u64::MAX;
        }
        self.follow = Some(f);
    }

    /// The snapshot generation in use (0: the configuration's tables).
    pub fn generation(&self) -> u64 {
        self.pipeline.tables.generation()
    }

    /// Takes the slot's current generation (between bursts). Out of line:
    /// the poll loop's only cost when nothing changed is one load.
    #[cold]
    #[inline(never)]
    fn switch_generation(&mut self) {
        let Some(f) = self.follow.as_mut() else {
            return;
        };
        let g = f.slot.current();
        let reset = g.slot_epoch != f.slot_epoch;
        let vipas_changed = g.tables.vipas.len() != self.pipeline.tables.vipas.len()
            || g.tables
                .vipas
                .iter()
                .zip(&self.pipeline.tables.vipas)
                .any(|(a, b)| a.address != b.address || a.epoch != b.epoch);
        self.pipeline
            .switch_tables(Arc::clone(&g.tables), Arc::clone(&g.neighbors), reset);
        f.seen = g.number;
        f.slot_epoch = g.slot_epoch;
        // The previous tables are dropped (replaced above) before the
        // acknowledgement, so the loader holds their last reference.
        f.slot.ack(f.worker, g.number);
        drop(g);
        if self.announcer && vipas_changed {
            // A VIPA taken over (or a new epoch): tell the neighbours.
            for i in 0..self.queues.len() {
                if self.link[i] {
                    self.announce(i);
                }
            }
        }
    }

    /// Start-up duties of the announcer: announce every VIPA from every port
    /// with link (gratuitous ARP, unsolicited NA), and ask for every next
    /// hop's MAC so the first packets do not wait. Returns frames sent.
    pub fn start(&mut self, now: u32) -> usize {
        if !self.announcer {
            return 0;
        }
        self.link_checked = now;
        let mut sent = 0;
        for i in 0..self.queues.len() {
            if self.link[i] {
                sent += self.announce(i);
            }
        }
        let ports: Vec<usize> = self.queues.iter().map(|(p, _)| *p).collect();
        for port in ports {
            let due: Vec<usize> = self.pipeline.neighbors.due_requests(port, now).collect();
            sent += self.send_requests(&due);
        }
        sent
    }

    /// Announces every VIPA from queue `i`'s port. Returns frames sent.
    pub fn announce(&mut self, i: usize) -> usize {
        let (port, queue) = &mut self.queues[i];
        for v in 0..self.pipeline.tables.vipas.len() {
            let Some(mut buf) = queue.alloc() else { break };
            if self.pipeline.build_announcement(*port, v, &mut buf) {
                if self.out.tx.try_push(buf).is_err() {
                    break;
                }
            } else {
                queue.free(buf);
            }
            if self.out.tx.is_full() {
                flush(queue, &mut self.out, &mut self.pipeline.counters);
            }
        }
        let n = self.out.tx.len();
        flush(queue, &mut self.out, &mut self.pipeline.counters);
        n
    }

    /// Sends a request for each next hop in `ids`, in a buffer of its own.
    fn send_requests(&mut self, ids: &[usize]) -> usize {
        let mut sent = 0;
        for &id in ids {
            let Some((_, port)) = self.pipeline.neighbors.next_hop(id) else {
                continue;
            };
            let Some(i) = self.queues.iter().position(|(p, _)| *p == port) else {
                continue;
            };
            let queue = &mut self.queues[i].1;
            let Some(mut buf) = queue.alloc() else {
                continue;
            };
            if self.pipeline.build_neighbor_request(id, &mut buf).is_some() {
                let _ = self.out.tx.try_push(buf);
                sent += 1;
            } else {
                queue.free(buf);
            }
            flush(queue, &mut self.out, &mut self.pipeline.counters);
        }
        sent
    }

    /// Once a second (announcer only): a port that lost link makes every
    /// other port with link announce every VIPA with its own MAC, so
    /// neighbours move the VIPAs to a port that works; a port that regains
    /// link announces them again.
    fn watch_links(&mut self, now: u32) {
        if !self.announcer || now == self.link_checked {
            return;
        }
        self.link_checked = now;
        for i in 0..self.queues.len() {
            let up = self.queues[i].1.link_up();
            if up == self.link[i] {
                continue;
            }
            self.link[i] = up;
            if up {
                self.pipeline.counters.inc(Counter::LinkUp);
                self.announce(i);
            } else {
                self.pipeline.counters.inc(Counter::LinkDown);
                for j in 0..self.queues.len() {
                    if j != i && self.link[j] {
                        self.announce(j);
                    }
                }
            }
        }
    }

    /// The worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.pipeline.counters
    }

    /// Polls every queue once; `now` is in seconds on the worker's clock.
    /// Returns the number of frames received.
    #[inline]
    pub fn poll(&mut self, now: u32) -> usize {
        if let Some(f) = &self.follow {
            if f.changed() {
                self.switch_generation();
            }
        }
        let mut received = 0;
        let mut waiting = false;
        for (i, (port, queue)) in self.queues.iter_mut().enumerate() {
            let port = *port;
            let n = queue.rx_burst(&mut self.rx, self.burst_size);
            if n != 0 {
                received += n;
                self.pipeline
                    .process_burst(port, &mut self.rx, now, &mut self.out);
            }
            let Some(_) = self.tx_drain else {
                if n != 0 {
                    flush(queue, &mut self.out, &mut self.pipeline.counters);
                }
                continue;
            };
            if n != 0 {
                let pending = &mut self.pending[i];
                // Room for this burst's frames; a burst is at most MAX_BURST.
                if pending.len() + self.out.tx.len() > pending.capacity() {
                    send_pending(queue, pending, &mut self.pipeline.counters);
                    self.pending_since[i] = None;
                }
                if !self.out.tx.is_empty() && pending.is_empty() {
                    self.pending_since[i] = Some(Instant::now());
                }
                pending.extend(self.out.tx.drain(..));
                flush(queue, &mut self.out, &mut self.pipeline.counters);
                if pending.len() >= self.burst_size {
                    send_pending(queue, pending, &mut self.pipeline.counters);
                    self.pending_since[i] = None;
                }
            }
            waiting |= !self.pending[i].is_empty();
        }
        if let (true, Some(drain)) = (waiting, self.tx_drain) {
            let t = Instant::now();
            for (i, (_, queue)) in self.queues.iter_mut().enumerate() {
                if self.pending_since[i].is_some_and(|since| t.duration_since(since) >= drain) {
                    send_pending(queue, &mut self.pending[i], &mut self.pipeline.counters);
                    self.pending_since[i] = None;
                }
            }
        }
        if !self.pipeline.refresh.is_empty() {
            let due = std::mem::take(&mut self.pipeline.refresh);
            self.send_requests(&due);
        }
        self.watch_links(now);
        received
    }
}

/// Transmits a queue's waiting frames; frees and counts what could not go.
#[inline]
fn send_pending<Q: PortQueue>(queue: &mut Q, pending: &mut Burst<Q::Buf>, counters: &mut Counters) {
    if pending.is_empty() {
        return;
    }
    let queued = pending.len();
    let bytes: usize = pending.iter().map(crate::buf::PacketBuffer::len).sum();
    queue.tx_burst(pending);
    let unsent = pending.len();
    let unsent_bytes: usize = if unsent == 0 {
        0
    } else {
        pending.iter().map(crate::buf::PacketBuffer::len).sum()
    };
    counters.add(Counter::TxPackets, (queued - unsent) as u64);
    counters.add(Counter::TxBytes, (bytes - unsent_bytes) as u64);
    if unsent != 0 {
        counters.add(Counter::DropTxFull, unsent as u64);
        for b in pending.drain(..) {
            queue.free(b);
        }
    }
}

/// Sends what the pipeline produced for one queue; frees what could not go.
#[inline]
fn flush<Q: PortQueue>(queue: &mut Q, out: &mut Outputs<Q::Buf>, counters: &mut Counters) {
    send_pending(queue, &mut out.tx, counters);
    if !out.host.is_empty() {
        queue.to_host(&mut out.host);
        if !out.host.is_empty() {
            counters.add(Counter::DropHostFull, out.host.len() as u64);
            for b in out.host.drain(..) {
                queue.free(b);
            }
        }
    }
    for b in out.drop.drain(..) {
        queue.free(b);
    }
}
