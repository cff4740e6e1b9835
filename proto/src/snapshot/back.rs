//! The back channel: what the forwarder tells the control plane through
//! shared memory — which generation each worker uses, the loader's
//! figures, every worker's counters, and a per-worker ring of new-flow
//! events.
//!
//! The object is an array of 64-bit words, every one of them read and
//! written with atomic operations (the two processes never use plain loads
//! on memory the other one writes). Only the forwarder creates it: it fills
//! the layout words and the counter names, then stores the magic last with
//! release ordering; a reader that loads the magic with acquire ordering
//! sees a complete layout.
//!
//! # Layout (word indices)
//!
//! | words | content |
//! |---|---|
//! | 0..24 | header: magic `VIPABACK`, version, workers, counters per worker, target slots, ring capacity, names offset and length; the loader's figures ([`LoaderFigures`], words 8..15); service slots and service target slots (words 15, 16); the forwarder's identity ([`Identity`], words 17..24: process id, start, backend name) |
//! | per worker, 64-byte aligned | generation in use; the second of its last counter copy; ring head (own cache line); ring tail (own cache line); counters; per target slot packets, bytes, flows; per (service slot, service target slot) packets, bytes (index `service * service_targets + target`); the ring's entries, 6 words each |
//! | names | the counter names, `\n`-separated, 8 bytes per word (little-endian) |
//!
//! # The new-flow ring
//!
//! A single-producer (the worker), single-consumer (the control plane)
//! ring of [`FlowEvent`]s. The producer writes an entry's words (relaxed),
//! then publishes it by storing the new head (release); the consumer loads
//! the head (acquire), reads the entry, then frees it by storing the new
//! tail (release), which the producer loads (acquire) before reusing the
//! slot. When the ring is full the producer drops the event and counts it:
//! a worker never waits for the control plane.
//!
//! # Versions
//!
//! - 1: header of 16 words (no identity, loader heartbeat in seconds only).
//! - 2: header of 24 words: the loader's heartbeat on the wall clock
//!   (word 14), so that another process can tell its age without sampling
//!   it; the forwarder's process id, start time and backend name (words
//!   15..24), for `vipactl status`. The worker regions move by 8 words; a
//!   reader of either version refuses the other (`UnsupportedVersion`), as
//!   both ends come from the same release.
//! - 3: packets and bytes per (service slot, target slot) in each worker's
//!   region, after the per-target figures; the number of service slots and
//!   of target slots they are counted for in header words 15 and 16 (the
//!   identity moves to words 17..24, the backend name to 32 bytes). Service
//!   slots number every (VIPA, service) of the configuration in file order
//!   ([`crate::config::Config::service_slots`]); 0 service slots: none
//!   counted.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::flowkey::FlowKey;

/// Word 0.
pub const BACK_MAGIC: u64 = u64::from_le_bytes(*b"VIPABACK");
/// Word 1.
pub const BACK_VERSION: u64 = 3;
/// Words of the header.
pub const HEADER_WORDS: usize = 24;
/// Words per ring entry.
pub const EVENT_WORDS: usize = 6;

const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_WORKERS: usize = 2;
const W_COUNTERS: usize = 3;
const W_TARGETS: usize = 4;
const W_RING: usize = 5;
const W_NAMES_AT: usize = 6;
const W_NAMES_LEN: usize = 7;
const W_LOADER: usize = 8;
/// Words of the loader's figures.
const LOADER_WORDS: usize = 7;
const W_SERVICES: usize = W_LOADER + LOADER_WORDS;
const W_SERVICE_TARGETS: usize = W_SERVICES + 1;
const W_PID: usize = W_SERVICE_TARGETS + 1;
const W_STARTED: usize = W_PID + 1;
const W_BACKEND_LEN: usize = W_STARTED + 1;
const W_BACKEND: usize = W_BACKEND_LEN + 1;
/// Bytes of the backend name kept (a longer one is cut).
pub const BACKEND_BYTES: usize = (HEADER_WORDS - W_BACKEND) * 8;
const _: () = assert!(
    W_BACKEND + 4 <= HEADER_WORDS,
    "room for a 32-byte backend name"
);

// Offsets inside a worker's region.
const R_GENERATION: usize = 0;
const R_PUBLISHED: usize = 1;
const R_HEAD: usize = 8;
const R_TAIL: usize = 16;
const R_COUNTERS: usize = 24;

fn line(words: usize) -> usize {
    words.div_ceil(8) * 8
}

/// The sizes that fix the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Workers.
    pub workers: usize,
    /// Counters per worker.
    pub counters: usize,
    /// Target slots with per-target counters.
    pub target_slots: usize,
    /// Service slots with per-(service, target) packets and bytes (0: none).
    pub service_slots: usize,
    /// Target slots per service slot (the stride of the per-service figures).
    pub service_targets: usize,
    /// Entries per ring (a power of two).
    pub ring_capacity: usize,
    /// Bytes of counter names.
    pub names_bytes: usize,
}

impl Layout {
    fn targets_at(&self) -> usize {
        R_COUNTERS + line(self.counters)
    }

    fn services_at(&self) -> usize {
        self.targets_at() + line(self.target_slots * 3)
    }

    /// (service, target) pairs counted per worker.
    pub fn service_pairs(&self) -> usize {
        self.service_slots * self.service_targets
    }

    fn ring_at(&self) -> usize {
        self.services_at() + line(self.service_pairs() * 2)
    }

    fn worker_words(&self) -> usize {
        self.ring_at() + line(self.ring_capacity * EVENT_WORDS)
    }

    fn worker(&self, i: usize) -> usize {
        HEADER_WORDS + i * self.worker_words()
    }

    fn names_at(&self) -> usize {
        self.worker(self.workers)
    }

    /// Total words of the object.
    pub fn words(&self) -> usize {
        self.names_at() + self.names_bytes.div_ceil(8)
    }

    /// Total bytes of the object.
    pub fn bytes(&self) -> usize {
        self.words() * 8
    }
}

/// Why a back channel cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackError {
    /// Not (yet) a back channel.
    #[error("no VIPABACK magic: the forwarder has not set up its back channel (yet)")]
    BadMagic,
    /// Another version.
    #[error("back channel version {found}, this build uses {expected}: run vipa-control and vipa-forwarder of the same release")]
    UnsupportedVersion {
        /// Found.
        found: u64,
        /// Expected.
        expected: u64,
    },
    /// The layout does not fit the object, or the capacity is not a power of two.
    #[error("back channel layout {layout:?} does not fit its {words} words")]
    BadLayout {
        /// The layout.
        layout: Layout,
        /// The object's words.
        words: usize,
    },
}

/// The loader's figures (header words 8..15).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderFigures {
    /// The newest generation handed to the workers (0: none).
    pub generation: u64,
    /// Generations loaded and handed over.
    pub loaded: u64,
    /// Generations refused.
    pub refused: u64,
    /// The last generation refused.
    pub last_refused: u64,
    /// Why (a code of the forwarder's, see its documentation; 0: none).
    pub last_reason: u64,
    /// The loader's last poll, in seconds on the forwarder's clock.
    pub heartbeat: u64,
    /// The loader's last poll, in milliseconds since the Unix epoch (the
    /// wall clock, which both processes on a node share).
    pub heartbeat_unix_ms: u64,
}

/// Why the loader refused a generation: the codes of
/// [`LoaderFigures::last_reason`].
pub mod refusal {
    /// The object is shorter than its header or its lengths say.
    pub const TRUNCATED: u64 = 1;
    /// No `VIPASNAP` magic.
    pub const BAD_MAGIC: u64 = 2;
    /// A layout version the forwarder does not read.
    pub const UNSUPPORTED_VERSION: u64 = 3;
    /// The checksum does not match.
    pub const CHECKSUM: u64 = 4;
    /// Another structural error (a section or record out of bounds, …).
    pub const STRUCTURE: u64 = 5;
    /// The object's header names another generation than its file name.
    pub const GENERATION_MISMATCH: u64 = 6;
    /// The snapshot does not fit the forwarder's configuration.
    pub const CONFIGURATION: u64 = 7;
    /// The object could not be opened or mapped.
    pub const IO: u64 = 8;

    /// The code in words; `None` for 0 (nothing refused).
    pub fn describe(code: u64) -> Option<&'static str> {
        Some(match code {
            0 => return None,
            TRUNCATED => "truncated",
            BAD_MAGIC => "bad magic",
            UNSUPPORTED_VERSION => "unsupported snapshot version",
            CHECKSUM => "checksum mismatch",
            STRUCTURE => "malformed section or record",
            GENERATION_MISMATCH => "generation mismatch",
            CONFIGURATION => "does not fit the forwarder's configuration",
            IO => "cannot open or map the object",
            _ => "unknown reason",
        })
    }
}

/// Who writes the back channel (header words 15..24).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The forwarder's process id.
    pub pid: u64,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Its packet I/O backend (`afxdp`, `afpacket`, `dpdk`, …), at most
    /// [`BACKEND_BYTES`] bytes; empty until the forwarder sets it.
    pub backend: String,
}

/// A new flow a worker created from a Maglev table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    /// The flow (client → VIPA).
    pub key: FlowKey,
    /// The target slot chosen.
    pub target: u32,
    /// The second it was created (the worker's clock).
    pub time: u32,
}

impl FlowEvent {
    fn encode(&self) -> [u64; EVENT_WORDS] {
        let k = &self.key;
        let w = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        [
            w(&k.src[..8]),
            w(&k.src[8..]),
            w(&k.dst[..8]),
            w(&k.dst[8..]),
            u64::from(k.src_port) | u64::from(k.dst_port) << 16 | u64::from(k.protocol) << 32,
            u64::from(self.target) | u64::from(self.time) << 32,
        ]
    }

    fn decode(w: [u64; EVENT_WORDS]) -> Self {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..8].copy_from_slice(&w[0].to_le_bytes());
        src[8..].copy_from_slice(&w[1].to_le_bytes());
        dst[..8].copy_from_slice(&w[2].to_le_bytes());
        dst[8..].copy_from_slice(&w[3].to_le_bytes());
        FlowEvent {
            key: FlowKey {
                src,
                dst,
                src_port: w[4] as u16,
                dst_port: (w[4] >> 16) as u16,
                protocol: (w[4] >> 32) as u8,
            },
            target: w[5] as u32,
            time: (w[5] >> 32) as u32,
        }
    }
}

/// The producer's private copy of its ring's indices.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingCursor {
    head: u64,
    tail: u64,
}

/// A view over a mapped back channel.
#[derive(Clone, Copy, Debug)]
pub struct Back<'a> {
    words: &'a [AtomicU64],
    layout: Layout,
}

impl<'a> Back<'a> {
    /// The forwarder's side: lays out a fresh object of at least
    /// `layout.words()` words (zeroing it) and publishes it.
    pub fn init(words: &'a [AtomicU64], layout: Layout, names: &[&str]) -> Result<Self, BackError> {
        let joined = names.join("\n");
        let layout = Layout {
            names_bytes: joined.len(),
            ..layout
        };
        if words.len() < layout.words() || !layout.ring_capacity.is_power_of_two() {
            return Err(BackError::BadLayout {
                layout,
                words: words.len(),
            });
        }
        words[W_MAGIC].store(0, Ordering::Release);
        for w in &words[1..] {
            w.store(0, Ordering::Relaxed);
        }
        words[W_VERSION].store(BACK_VERSION, Ordering::Relaxed);
        words[W_WORKERS].store(layout.workers as u64, Ordering::Relaxed);
        words[W_COUNTERS].store(layout.counters as u64, Ordering::Relaxed);
        words[W_TARGETS].store(layout.target_slots as u64, Ordering::Relaxed);
        words[W_RING].store(layout.ring_capacity as u64, Ordering::Relaxed);
        words[W_SERVICES].store(layout.service_slots as u64, Ordering::Relaxed);
        words[W_SERVICE_TARGETS].store(layout.service_targets as u64, Ordering::Relaxed);
        words[W_NAMES_AT].store(layout.names_at() as u64, Ordering::Relaxed);
        words[W_NAMES_LEN].store(layout.names_bytes as u64, Ordering::Relaxed);
        for (i, chunk) in joined.as_bytes().chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            words[layout.names_at() + i].store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        words[W_MAGIC].store(BACK_MAGIC, Ordering::Release);
        Ok(Back { words, layout })
    }

    /// The control plane's side: checks magic, version and layout.
    pub fn open(words: &'a [AtomicU64]) -> Result<Self, BackError> {
        if words.len() < HEADER_WORDS || words[W_MAGIC].load(Ordering::Acquire) != BACK_MAGIC {
            return Err(BackError::BadMagic);
        }
        let found = words[W_VERSION].load(Ordering::Relaxed);
        if found != BACK_VERSION {
            return Err(BackError::UnsupportedVersion {
                found,
                expected: BACK_VERSION,
            });
        }
        let get =
            |i: usize| usize::try_from(words[i].load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let fields = [
            get(W_WORKERS),
            get(W_COUNTERS),
            get(W_TARGETS),
            get(W_RING),
            get(W_NAMES_LEN),
            get(W_SERVICES),
            get(W_SERVICE_TARGETS),
        ];
        let layout = Layout {
            workers: fields[0],
            counters: fields[1],
            target_slots: fields[2],
            ring_capacity: fields[3],
            names_bytes: fields[4],
            service_slots: fields[5],
            service_targets: fields[6],
        };
        // Bound every size by the object before any arithmetic on them.
        let fits = fields.iter().all(|&f| f <= words.len())
            && layout.ring_capacity.is_power_of_two()
            && layout
                .service_slots
                .checked_mul(layout.service_targets)
                .is_some_and(|p| p <= words.len())
            && layout
                .workers
                .checked_mul(
                    layout.ring_capacity * EVENT_WORDS
                        + layout.target_slots * 3
                        + layout.service_pairs() * 2,
                )
                .is_some_and(|w| w <= words.len())
            && layout.words() <= words.len()
            && get(W_NAMES_AT) == layout.names_at();
        if !fits {
            return Err(BackError::BadLayout {
                layout,
                words: words.len(),
            });
        }
        Ok(Back { words, layout })
    }

    /// A view with a layout already checked by [`Self::init`] or
    /// [`Self::open`] on the same words (cheap: for a hot path that keeps
    /// the layout); `None` if the words are too few for it.
    #[inline]
    pub fn with_layout(words: &'a [AtomicU64], layout: Layout) -> Option<Self> {
        (words.len() >= layout.words()).then_some(Back { words, layout })
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The counter names, in index order.
    pub fn names(&self) -> Vec<String> {
        let at = self.layout.names_at();
        let n = self.layout.names_bytes;
        let mut bytes: Vec<u8> = self.words[at..at + n.div_ceil(8)]
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        bytes.truncate(n);
        String::from_utf8_lossy(&bytes)
            .split('\n')
            .map(str::to_owned)
            .collect()
    }

    /// Stores the loader's figures.
    pub fn set_loader(&self, f: &LoaderFigures) {
        let v = [
            f.generation,
            f.loaded,
            f.refused,
            f.last_refused,
            f.last_reason,
            f.heartbeat,
            f.heartbeat_unix_ms,
        ];
        for (i, x) in v.into_iter().enumerate() {
            self.words[W_LOADER + i].store(x, Ordering::Relaxed);
        }
    }

    /// The loader's figures.
    pub fn loader(&self) -> LoaderFigures {
        let g = |i: usize| self.words[W_LOADER + i].load(Ordering::Relaxed);
        LoaderFigures {
            generation: g(0),
            loaded: g(1),
            refused: g(2),
            last_refused: g(3),
            last_reason: g(4),
            heartbeat: g(5),
            heartbeat_unix_ms: g(6),
        }
    }

    /// Stores who writes the channel (the backend name cut to
    /// [`BACKEND_BYTES`]); the name's length is stored last (release), so a
    /// reader that sees it sees the name.
    pub fn set_identity(&self, id: &Identity) {
        self.words[W_PID].store(id.pid, Ordering::Relaxed);
        self.words[W_STARTED].store(id.started_unix_ms, Ordering::Relaxed);
        let mut bytes = id.backend.as_bytes();
        if bytes.len() > BACKEND_BYTES {
            // Cut on a character boundary.
            let mut n = BACKEND_BYTES;
            while !id.backend.is_char_boundary(n) {
                n -= 1;
            }
            bytes = &bytes[..n];
        }
        self.words[W_BACKEND_LEN].store(0, Ordering::Release);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.words[W_BACKEND + i].store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.words[W_BACKEND_LEN].store(bytes.len() as u64, Ordering::Release);
    }

    /// Who writes the channel.
    pub fn identity(&self) -> Identity {
        let len = usize::try_from(self.words[W_BACKEND_LEN].load(Ordering::Acquire))
            .unwrap_or(usize::MAX)
            .min(BACKEND_BYTES);
        let mut bytes: Vec<u8> = self.words[W_BACKEND..HEADER_WORDS]
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect();
        bytes.truncate(len);
        Identity {
            pid: self.words[W_PID].load(Ordering::Relaxed),
            started_unix_ms: self.words[W_STARTED].load(Ordering::Relaxed),
            backend: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn w(&self, worker: usize, off: usize) -> &'a AtomicU64 {
        &self.words[self.layout.worker(worker) + off]
    }

    /// Records the generation worker `worker` uses now.
    pub fn set_worker_generation(&self, worker: usize, generation: u64) {
        if worker < self.layout.workers {
            self.w(worker, R_GENERATION)
                .store(generation, Ordering::Release);
        }
    }

    /// The generation worker `worker` uses.
    pub fn worker_generation(&self, worker: usize) -> u64 {
        if worker < self.layout.workers {
            self.w(worker, R_GENERATION).load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// Worker `worker`'s clock (whole seconds since the forwarder started)
    /// when it last copied its counters in: it moves once a second while
    /// the worker polls, so a reader that sees it stand still knows the
    /// worker is stuck.
    pub fn worker_published(&self, worker: usize) -> u64 {
        if worker < self.layout.workers {
            self.w(worker, R_PUBLISHED).load(Ordering::Acquire)
        } else {
            0
        }
    }

    /// The oldest generation the forwarder still uses (the workers' and the
    /// loader's); 0 when it uses none.
    pub fn oldest_in_use(&self) -> u64 {
        (0..self.layout.workers)
            .map(|w| self.worker_generation(w))
            .chain([self.loader().generation])
            .filter(|&g| g != 0)
            .min()
            .unwrap_or(0)
    }

    /// Copies worker `worker`'s counters in (`counters` in index order,
    /// per target slot `[packets, bytes, flows]`, and per (service slot,
    /// target slot) `[packets, bytes]` in index order
    /// `service * service_targets + target`; extra values are left out).
    pub fn publish_counters(
        &self,
        worker: usize,
        now: u64,
        counters: &[u64],
        targets: impl Iterator<Item = [u64; 3]>,
        service_targets: &[[u64; 2]],
    ) {
        if worker >= self.layout.workers {
            return;
        }
        let base = self.layout.worker(worker);
        for (slot, &v) in self.words[base + R_COUNTERS..]
            .iter()
            .zip(counters.iter().take(self.layout.counters))
        {
            slot.store(v, Ordering::Relaxed);
        }
        let t0 = base + self.layout.targets_at();
        for (i, t) in targets.take(self.layout.target_slots).enumerate() {
            for (k, v) in t.into_iter().enumerate() {
                self.words[t0 + i * 3 + k].store(v, Ordering::Relaxed);
            }
        }
        let s0 = base + self.layout.services_at();
        for (i, st) in service_targets
            .iter()
            .take(self.layout.service_pairs())
            .enumerate()
        {
            for (k, v) in st.iter().enumerate() {
                self.words[s0 + i * 2 + k].store(*v, Ordering::Relaxed);
            }
        }
        self.w(worker, R_PUBLISHED).store(now, Ordering::Release);
    }

    /// Worker `worker`'s counters, in index order.
    pub fn counters(&self, worker: usize) -> Vec<u64> {
        if worker >= self.layout.workers {
            return Vec::new();
        }
        let base = self.layout.worker(worker) + R_COUNTERS;
        self.words[base..base + self.layout.counters]
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect()
    }

    /// Worker `worker`'s per-target-slot `[packets, bytes, flows]`.
    pub fn target_counters(&self, worker: usize) -> Vec<[u64; 3]> {
        if worker >= self.layout.workers {
            return Vec::new();
        }
        let base = self.layout.worker(worker) + self.layout.targets_at();
        (0..self.layout.target_slots)
            .map(|i| {
                let g = |k: usize| self.words[base + i * 3 + k].load(Ordering::Relaxed);
                [g(0), g(1), g(2)]
            })
            .collect()
    }

    /// Worker `worker`'s per-(service slot, target slot) `[packets, bytes]`,
    /// index `service * service_targets + target`.
    pub fn service_target_counters(&self, worker: usize) -> Vec<[u64; 2]> {
        if worker >= self.layout.workers {
            return Vec::new();
        }
        let base = self.layout.worker(worker) + self.layout.services_at();
        (0..self.layout.service_pairs())
            .map(|i| {
                let g = |k: usize| self.words[base + i * 2 + k].load(Ordering::Relaxed);
                [g(0), g(1)]
            })
            .collect()
    }

    /// A producer cursor for worker `worker`'s ring, from its current indices.
    pub fn cursor(&self, worker: usize) -> RingCursor {
        if worker >= self.layout.workers {
            return RingCursor::default();
        }
        RingCursor {
            head: self.w(worker, R_HEAD).load(Ordering::Relaxed),
            tail: self.w(worker, R_TAIL).load(Ordering::Acquire),
        }
    }

    /// Producer: appends `ev` to worker `worker`'s ring; false when the ring
    /// is full (the event is dropped; the caller counts it).
    #[inline]
    pub fn push_event(&self, worker: usize, cursor: &mut RingCursor, ev: &FlowEvent) -> bool {
        if worker >= self.layout.workers {
            return false;
        }
        let cap = self.layout.ring_capacity as u64;
        if cursor.head.wrapping_sub(cursor.tail) >= cap {
            cursor.tail = self.w(worker, R_TAIL).load(Ordering::Acquire);
            if cursor.head.wrapping_sub(cursor.tail) >= cap {
                return false;
            }
        }
        let base = self.layout.worker(worker)
            + self.layout.ring_at()
            + (cursor.head & (cap - 1)) as usize * EVENT_WORDS;
        for (slot, v) in self.words[base..base + EVENT_WORDS].iter().zip(ev.encode()) {
            slot.store(v, Ordering::Relaxed);
        }
        cursor.head = cursor.head.wrapping_add(1);
        self.w(worker, R_HEAD).store(cursor.head, Ordering::Release);
        true
    }

    /// Consumer: takes the oldest event of worker `worker`'s ring.
    pub fn pop_event(&self, worker: usize) -> Option<FlowEvent> {
        if worker >= self.layout.workers {
            return None;
        }
        let tail = self.w(worker, R_TAIL).load(Ordering::Relaxed);
        let head = self.w(worker, R_HEAD).load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let cap = self.layout.ring_capacity as u64;
        let base = self.layout.worker(worker)
            + self.layout.ring_at()
            + (tail & (cap - 1)) as usize * EVENT_WORDS;
        let mut w = [0u64; EVENT_WORDS];
        for (v, slot) in w.iter_mut().zip(&self.words[base..base + EVENT_WORDS]) {
            *v = slot.load(Ordering::Relaxed);
        }
        self.w(worker, R_TAIL)
            .store(tail.wrapping_add(1), Ordering::Release);
        Some(FlowEvent::decode(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            workers: 2,
            counters: 3,
            target_slots: 4,
            service_slots: 2,
            service_targets: 3,
            ring_capacity: 4,
            names_bytes: 0,
        }
    }

    #[test]
    fn round_trip_counters_names_and_ring() {
        let l = layout();
        let words: Vec<AtomicU64> = (0..l.words() + 8).map(|_| AtomicU64::new(7)).collect();
        let w = Back::init(&words, l, &["rx_packets", "tx_packets", "drop_x"]).unwrap();
        let r = Back::open(&words).unwrap();
        assert_eq!(r.names(), ["rx_packets", "tx_packets", "drop_x"]);
        let per_service: Vec<[u64; 2]> = (0..7).map(|i| [i, 100 + i]).collect();
        w.publish_counters(1, 5, &[1, 2, 3, 4], [[9, 8, 7]].into_iter(), &per_service);
        assert_eq!(r.counters(1), [1, 2, 3]);
        assert_eq!(r.counters(0), [0, 0, 0]);
        assert_eq!(r.target_counters(1)[0], [9, 8, 7]);
        assert_eq!(r.layout().service_pairs(), 6);
        // Service 1, target 2 is pair 5; the seventh value is left out.
        assert_eq!(r.service_target_counters(1), per_service[..6]);
        assert_eq!(r.service_target_counters(1)[5], [5, 105]);
        assert_eq!(r.service_target_counters(0), [[0, 0]; 6]);
        // The per-service words sit between the per-target words and the ring.
        assert!(l.services_at() >= l.targets_at() + 4 * 3);
        assert!(l.ring_at() >= l.services_at() + 6 * 2);
        w.set_worker_generation(0, 4);
        w.set_worker_generation(1, 3);
        w.set_loader(&LoaderFigures {
            generation: 5,
            ..LoaderFigures::default()
        });
        assert_eq!(r.oldest_in_use(), 3);
        assert_eq!(r.worker_published(1), 5);
        assert_eq!(r.worker_published(0), 0);

        let mut c = w.cursor(1);
        let ev = |i: u16| FlowEvent {
            key: FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 6, i, 80),
            target: u32::from(i),
            time: 42,
        };
        for i in 0..4 {
            assert!(w.push_event(1, &mut c, &ev(i)));
        }
        assert!(!w.push_event(1, &mut c, &ev(4)), "full");
        assert_eq!(r.pop_event(1), Some(ev(0)));
        assert!(w.push_event(1, &mut c, &ev(4)), "room again");
        for i in 1..5 {
            assert_eq!(r.pop_event(1), Some(ev(i)));
        }
        assert_eq!(r.pop_event(1), None);
        assert_eq!(r.pop_event(0), None);
    }

    #[test]
    fn identity_and_loader_figures_round_trip() {
        let l = layout();
        let words: Vec<AtomicU64> = (0..l.words() + 8).map(|_| AtomicU64::new(0)).collect();
        let w = Back::init(&words, l, &["a"]).unwrap();
        let r = Back::open(&words).unwrap();
        assert_eq!(r.identity(), Identity::default());
        let id = Identity {
            pid: 4242,
            started_unix_ms: 1_700_000_000_000,
            backend: "afxdp".into(),
        };
        w.set_identity(&id);
        assert_eq!(r.identity(), id);
        // A long name is cut to what fits, on a character boundary.
        w.set_identity(&Identity {
            backend: "é".repeat(40),
            ..id.clone()
        });
        let cut = r.identity().backend;
        assert_eq!(cut, "é".repeat(BACKEND_BYTES / 2));
        let f = LoaderFigures {
            generation: 7,
            loaded: 6,
            refused: 1,
            last_refused: 5,
            last_reason: refusal::CHECKSUM,
            heartbeat: 12,
            heartbeat_unix_ms: 1_700_000_012_000,
        };
        w.set_loader(&f);
        assert_eq!(r.loader(), f);
        // The identity and the loader's figures do not overlap.
        assert_eq!(r.identity().pid, 4242);
        assert_eq!(refusal::describe(f.last_reason), Some("checksum mismatch"));
        assert_eq!(refusal::describe(0), None);
    }

    #[test]
    fn open_refuses_another_version() {
        let l = layout();
        let words: Vec<AtomicU64> = (0..l.words() + 8).map(|_| AtomicU64::new(0)).collect();
        Back::init(&words, l, &["a"]).unwrap();
        words[W_VERSION].store(1, Ordering::Relaxed);
        assert_eq!(
            Back::open(&words).unwrap_err(),
            BackError::UnsupportedVersion {
                found: 1,
                expected: BACK_VERSION
            }
        );
    }

    #[test]
    fn open_refuses_garbage() {
        let words: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
        assert_eq!(Back::open(&words).unwrap_err(), BackError::BadMagic);
        words[0].store(BACK_MAGIC, Ordering::Relaxed);
        words[1].store(BACK_VERSION, Ordering::Relaxed);
        words[W_WORKERS].store(u64::MAX, Ordering::Relaxed);
        words[W_RING].store(4, Ordering::Relaxed);
        assert!(matches!(
            Back::open(&words),
            Err(BackError::BadLayout { .. })
        ));
        // Service sizes whose product overflows are refused, not multiplied.
        words[W_WORKERS].store(1, Ordering::Relaxed);
        words[W_SERVICES].store(1 << 40, Ordering::Relaxed);
        words[W_SERVICE_TARGETS].store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            Back::open(&words),
            Err(BackError::BadLayout { .. })
        ));
    }
}
