//! Following the control plane's snapshots (DESIGN.md §5).
//!
//! # The hand-over
//!
//! * The control plane writes generation `N` whole into `<prefix>.gen.<N>`,
//!   then stores `N` in the head object (`<prefix>.head`, release order).
//! * The [`Loader`] (a thread of its own) polls the head. For a new `N` it
//!   maps the object read-only, checks it with
//!   [`vipa_proto::snapshot::Snapshot::new_checked`] (magic, version,
//!   lengths, XXH3 checksum, every record), checks the generation in the
//!   header against the name, builds [`Tables`] from the node's
//!   configuration and the snapshot — the CRT stays in the mapping, looked
//!   up in place — and only then publishes a [`Generation`] in the
//!   [`TableSlot`]. A snapshot it refuses is logged (`tracing`, with the
//!   reason) and counted, and the generation in use stays in use.
//! * A worker loads the slot's version once per poll — one atomic load,
//!   relaxed on x86 in practice (an acquire load is a plain `mov`) — and
//!   only when it changed takes the new generation (a mutex held for one
//!   `Arc` clone, between bursts, never per packet), then acknowledges the
//!   generation in its own cache-padded word.
//! * The loader keeps every generation it replaced until every worker has
//!   acknowledged a newer one; then it drops it, so the unmapping (the last
//!   `Arc` of the mapping) happens on the loader's thread, never on a worker.
//!
//! # Flows across generations
//!
//! Flow tables hold target *slots*. The loader compares each new
//! generation's slots with the previous one's: when a slot that was not
//! down names another address (a writer that broke the slot rule of
//! [`vipa_proto::snapshot`]), the generation gets a new *slot epoch* and
//! workers forget their flows when they switch to it (counted
//! `flow_table_resets`); connections the targets reported are still in the
//! CRT. Otherwise flows keep their target across the switch.
//!
//! A flow whose target slot is down is routed again (CRT, then Maglev) and
//! counted `flows_rerouted`; quiesced and restarting targets keep their
//! flows and get no new one (their slots are absent from the Maglev tables:
//! the snapshot reader refuses anything else).

mod back;
mod loader;
mod shm;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;
use vipa_proto::snapshot::SnapshotBuf;

pub use back::{BackChannel, FlowEventSink, BACK_RING_CAPACITY, BACK_TARGET_SLOTS};
pub use loader::{LoadError, Loader, LoaderOptions, Poll};
pub use shm::SharedWords;

use crate::neighbor::Neighbors;
use crate::tables::Tables;

/// A snapshot's bytes: mapped from shared memory, or on the heap (the
/// configuration's equivalent, tests).
pub enum SnapshotBytes {
    /// A read-only mapping of a generation object.
    Mapped(memmap2::Mmap),
    /// An aligned heap buffer.
    Heap(SnapshotBuf),
}

impl SnapshotBytes {
    /// The bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            SnapshotBytes::Mapped(m) => m,
            SnapshotBytes::Heap(b) => b.as_bytes(),
        }
    }
}

impl std::fmt::Debug for SnapshotBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            SnapshotBytes::Mapped(_) => "mapped",
            SnapshotBytes::Heap(_) => "heap",
        };
        write!(f, "SnapshotBytes({kind}, {} bytes)", self.as_bytes().len())
    }
}

/// What the workers switch to.
#[derive(Debug)]
pub struct Generation {
    /// The snapshot generation (0: the configuration's tables).
    pub number: u64,
    /// The tables.
    pub tables: Arc<Tables>,
    /// The next-hop table for these tables' next hops (the same `Arc` as
    /// the previous generation's when the next hops did not change).
    pub neighbors: Arc<Neighbors>,
    /// Changes when target slots were reassigned: flows must be forgotten.
    pub slot_epoch: u64,
}

/// Where the loader publishes generations and the workers pick them up.
#[derive(Debug)]
pub struct TableSlot {
    version: CachePadded<AtomicU64>,
    current: Mutex<Arc<Generation>>,
    acks: Box<[CachePadded<AtomicU64>]>,
}

impl TableSlot {
    /// A slot holding `first`, for `workers` workers (each acknowledging `first`).
    pub fn new(first: Generation, workers: usize) -> Self {
        let n = first.number;
        TableSlot {
            version: CachePadded::new(AtomicU64::new(n)),
            current: Mutex::new(Arc::new(first)),
            acks: (0..workers)
                .map(|_| CachePadded::new(AtomicU64::new(n)))
                .collect(),
        }
    }

    /// The current generation's number: the one atomic load a worker makes per poll.
    #[inline(always)]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.lock() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Makes `next` current; returns the generation it replaces.
    pub fn publish(&self, next: Generation) -> Arc<Generation> {
        let number = next.number;
        let next = Arc::new(next);
        let old = {
            let mut g = match self.current.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::replace(&mut *g, next)
        };
        self.version.store(number, Ordering::Release);
        old
    }

    /// Worker `worker` now uses generation `number` (and dropped the one before).
    #[inline]
    pub fn ack(&self, worker: usize, number: u64) {
        if let Some(a) = self.acks.get(worker) {
            a.store(number, Ordering::Release);
        }
    }

    /// The generation worker `worker` acknowledged last.
    pub fn acked(&self, worker: usize) -> u64 {
        self.acks
            .get(worker)
            .map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.acks.len()
    }

    /// The oldest generation a worker still uses.
    pub fn oldest_acked(&self) -> u64 {
        (0..self.acks.len())
            .map(|w| self.acked(w))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// A worker's end of a [`TableSlot`].
#[derive(Debug)]
pub struct Follower {
    /// The slot.
    pub slot: Arc<TableSlot>,
    /// The worker's index (its acknowledgement word).
    pub worker: usize,
    /// The generation in use.
    pub seen: u64,
    /// The slot epoch in use.
    pub slot_epoch: u64,
}

impl Follower {
    /// Worker `worker`'s follower, starting on the slot's current generation.
    pub fn new(slot: Arc<TableSlot>, worker: usize) -> Self {
        let g = slot.current();
        Follower {
            seen: g.number,
            slot_epoch: g.slot_epoch,
            slot,
            worker,
        }
    }

    /// True when the slot holds another generation than the one in use.
    #[inline(always)]
    pub fn changed(&self) -> bool {
        self.slot.version() != self.seen
    }
}
