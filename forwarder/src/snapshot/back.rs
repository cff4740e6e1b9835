//! The forwarder's end of the back channel ([`vipa_proto::snapshot::back`]).

use std::io;
use std::path::Path;
use std::sync::Arc;

use vipa_proto::flowkey::FlowKey;
use vipa_proto::snapshot::back::{Back, FlowEvent, Identity, Layout, RingCursor};

use super::shm::SharedWords;
use crate::counters::{Counter, Counters};
use crate::tables::ServiceCounting;

/// The back channel object, created by the forwarder at start.
#[derive(Debug)]
pub struct BackChannel {
    shm: SharedWords,
    layout: Layout,
}

/// Target slots with per-target counters in the back channel.
pub const BACK_TARGET_SLOTS: usize = 1024;
/// New-flow events each worker's ring holds.
pub const BACK_RING_CAPACITY: usize = 4096;

impl BackChannel {
    /// Creates `path` for `workers` workers (replacing an older one), with
    /// per-target figures for `target_slots` and per-(service, target)
    /// figures for `services`.
    pub fn create(
        path: &Path,
        workers: usize,
        target_slots: usize,
        services: ServiceCounting,
        ring_capacity: usize,
    ) -> io::Result<Self> {
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        let layout = Layout {
            workers,
            counters: Counter::COUNT,
            target_slots,
            service_slots: services.service_slots,
            service_targets: services.target_slots,
            ring_capacity: ring_capacity.next_power_of_two(),
            names_bytes: names.join("\n").len(),
        };
        // A fresh object: a reader of the old one keeps its old mapping.
        let _ = std::fs::remove_file(path);
        let shm = SharedWords::create(path, layout.bytes())?;
        let layout = Back::init(shm.words(), layout, &names)
            .map_err(io::Error::other)?
            .layout();
        Ok(BackChannel { shm, layout })
    }

    /// The view.
    #[inline]
    pub fn view(&self) -> Back<'_> {
        // `init` checked this layout against these words.
        Back::with_layout(self.shm.words(), self.layout).unwrap_or_else(|| unreachable!())
    }

    /// Says who writes the channel: this process, now, with `backend`
    /// (for the control plane's status page).
    pub fn set_identity(&self, backend: &str) {
        let started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.view().set_identity(&Identity {
            pid: u64::from(std::process::id()),
            started_unix_ms,
            backend: backend.to_owned(),
        });
    }

    /// Copies worker `worker`'s counters in (relaxed atomic stores).
    pub fn publish(&self, worker: usize, now: u32, c: &Counters) {
        self.view().publish_counters(
            worker,
            u64::from(now),
            c.values(),
            c.targets.iter().map(|t| [t.packets, t.bytes, t.flows]),
            &c.service_targets,
        );
    }
}

/// A worker's producer end of its new-flow ring.
#[derive(Debug)]
pub struct FlowEventSink {
    back: Arc<BackChannel>,
    worker: usize,
    cursor: RingCursor,
}

impl FlowEventSink {
    /// The sink of worker `worker`.
    pub fn new(back: Arc<BackChannel>, worker: usize) -> Self {
        let cursor = back.view().cursor(worker);
        FlowEventSink {
            back,
            worker,
            cursor,
        }
    }

    /// Reports a new flow; false when the ring is full (the event is lost).
    #[inline]
    pub fn push(&mut self, key: &FlowKey, target: u32, now: u32) -> bool {
        let ev = FlowEvent {
            key: *key,
            target,
            time: now,
        };
        let back = &self.back;
        back.view().push_event(self.worker, &mut self.cursor, &ev)
    }
}
