//! The loader: polls the head, maps, validates, builds, hands over, reclaims.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::MmapOptions;
use vipa_proto::config::Config;
use vipa_proto::snapshot::back::{refusal, LoaderFigures};
use vipa_proto::snapshot::head::{Head, Names};
use vipa_proto::snapshot::{Snapshot, SnapshotError, TargetState};

use super::{BackChannel, Generation, SharedWords, SnapshotBytes, TableSlot};
use crate::tables::{Tables, TablesError};

/// How the loader runs.
#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// The channel's prefix (see [`Names`]).
    pub prefix: String,
    /// How often the head is polled.
    pub interval: Duration,
}

/// Why a generation was refused. [`LoadError::code`] is what the back
/// channel's `last_reason` word holds.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The object could not be opened or mapped.
    #[error("cannot map {path}: {source}")]
    Io {
        /// The object.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The bytes are not a valid snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The header's generation is not the one in the name.
    #[error("the object of generation {name} holds generation {header}")]
    GenerationMismatch {
        /// From the head and the name.
        name: u64,
        /// From the header.
        header: u64,
    },
    /// The snapshot does not fit this node's configuration.
    #[error(transparent)]
    Tables(#[from] TablesError),
}

impl LoadError {
    /// A small number for the back channel ([`refusal`]): 1 truncated,
    /// 2 bad magic, 3 unsupported version, 4 checksum, 5 other structural
    /// error, 6 generation mismatch, 7 does not fit the configuration, 8 I/O.
    pub fn code(&self) -> u64 {
        match self {
            LoadError::Snapshot(SnapshotError::Truncated { .. }) => refusal::TRUNCATED,
            LoadError::Snapshot(SnapshotError::BadMagic { .. }) => refusal::BAD_MAGIC,
            LoadError::Snapshot(SnapshotError::UnsupportedVersion { .. }) => {
                refusal::UNSUPPORTED_VERSION
            }
            LoadError::Snapshot(SnapshotError::Checksum { .. }) => refusal::CHECKSUM,
            LoadError::Snapshot(_) => refusal::STRUCTURE,
            LoadError::GenerationMismatch { .. } => refusal::GENERATION_MISMATCH,
            LoadError::Tables(_) => refusal::CONFIGURATION,
            LoadError::Io { .. } => refusal::IO,
        }
    }
}

/// What one poll did.
#[derive(Debug)]
pub enum Poll {
    /// Nothing new.
    Idle,
    /// No head yet, or the generation's object is gone (superseded): try again.
    Waiting,
    /// This generation was loaded and handed to the workers.
    Loaded(u64),
    /// This generation was refused; the one in use stays.
    Refused(u64, LoadError),
}

/// The loader. [`Loader::poll`] does one round; [`Loader::run`] polls until stopped.
#[derive(Debug)]
pub struct Loader {
    config: Arc<Config>,
    names: Names,
    slot: Arc<TableSlot>,
    back: Option<Arc<BackChannel>>,
    head: Option<SharedWords>,
    current: Arc<Generation>,
    retired: Vec<Arc<Generation>>,
    figures: LoaderFigures,
    last_tried: u64,
    start: Instant,
}

impl Loader {
    /// A loader for the channel `prefix`, publishing into `slot` (whose
    /// current generation is the one in use), mirroring its figures and
    /// the workers' generations into `back`.
    pub fn new(
        config: Arc<Config>,
        prefix: &str,
        slot: Arc<TableSlot>,
        back: Option<Arc<BackChannel>>,
    ) -> Self {
        let current = slot.current();
        Loader {
            config,
            names: Names::new(prefix),
            figures: LoaderFigures {
                generation: current.number,
                ..LoaderFigures::default()
            },
            slot,
            back,
            head: None,
            current,
            retired: Vec::new(),
            last_tried: 0,
            start: Instant::now(),
        }
    }

    /// The loader's figures.
    pub fn figures(&self) -> LoaderFigures {
        self.figures
    }

    /// Generations replaced but still used by a worker.
    pub fn retired(&self) -> usize {
        self.retired.len()
    }

    /// One round: reclaim, mirror, look at the head, load what is new.
    pub fn poll(&mut self) -> Poll {
        self.reclaim();
        let outcome = self.poll_head();
        self.mirror();
        outcome
    }

    fn poll_head(&mut self) -> Poll {
        if self.head.is_none() {
            match SharedWords::open(&self.names.head()) {
                Ok(w) if Head::open(w.words()).is_ok() => self.head = Some(w),
                _ => return Poll::Waiting,
            }
        }
        let Some(head) = self.head.as_ref().and_then(|w| Head::open(w.words()).ok()) else {
            return Poll::Waiting;
        };
        let g = head.generation();
        if g == 0 || g <= self.current.number || g == self.last_tried {
            return Poll::Idle;
        }
        self.last_tried = g;
        let started = Instant::now();
        match self.load(g) {
            Ok(next) => {
                let t = &next.tables;
                tracing::info!(
                    generation = g,
                    vipas = t.vipas.len(),
                    targets = t.targets.len(),
                    connections = t.crt_len(),
                    reset_flows = next.slot_epoch != self.current.slot_epoch,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "snapshot loaded"
                );
                let old = self.slot.publish(next);
                self.current = self.slot.current();
                self.retired.push(old);
                self.figures.generation = g;
                self.figures.loaded += 1;
                Poll::Loaded(g)
            }
            Err(LoadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                // Superseded and removed between the head and the open.
                self.last_tried = 0;
                Poll::Waiting
            }
            Err(e) => {
                tracing::warn!(
                    generation = g,
                    in_use = self.current.number,
                    "snapshot refused, keeping the generation in use: {e}"
                );
                self.figures.refused += 1;
                self.figures.last_refused = g;
                self.figures.last_reason = e.code();
                Poll::Refused(g, e)
            }
        }
    }

    /// Maps, validates and builds generation `g`.
    fn load(&self, g: u64) -> Result<Generation, LoadError> {
        let path = self.names.generation(g);
        let io = |source| LoadError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the writer creates each generation object new, writes it
        // whole before publishing its number, and never writes it again;
        // the mapping is read-only. (Another process truncating the object
        // while it is mapped would fault: a documented limit of shared
        // memory, as for any mapped file.)
        let map = unsafe { MmapOptions::new().populate().map(&file) }.map_err(io)?;
        let bytes = Arc::new(SnapshotBytes::Mapped(map));
        let snap = Snapshot::new_checked(bytes.as_bytes())?;
        if snap.generation() != g {
            return Err(LoadError::GenerationMismatch {
                name: g,
                header: snap.generation(),
            });
        }
        let tables = Tables::from_snapshot(&self.config, &snap, Some(Arc::clone(&bytes)))?;
        let old = &self.current.tables;
        let reassigned = old
            .targets
            .iter()
            .zip(&tables.targets)
            .any(|(o, n)| o.address != n.address && o.state != TargetState::Down);
        let slot_epoch = self.current.slot_epoch + u64::from(reassigned);
        let neighbors = if tables.resolve == old.resolve {
            Arc::clone(&self.current.neighbors)
        } else {
            let n = tables.new_neighbors();
            n.adopt(&self.current.neighbors);
            Arc::new(n)
        };
        Ok(Generation {
            number: g,
            tables: Arc::new(tables),
            neighbors,
            slot_epoch,
        })
    }

    /// Drops the replaced generations no worker uses any more (the last
    /// reference: this unmaps them, here rather than on a worker).
    fn reclaim(&mut self) {
        let oldest = self.slot.oldest_acked();
        self.retired.retain(|g| g.number >= oldest);
    }

    fn mirror(&mut self) {
        self.figures.heartbeat = self.start.elapsed().as_secs();
        // The wall clock too: the control plane tells a stopped forwarder
        // by this word's age, with no clock of the forwarder's to share.
        self.figures.heartbeat_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if let Some(back) = &self.back {
            let view = back.view();
            for w in 0..self.slot.workers() {
                view.set_worker_generation(w, self.slot.acked(w));
            }
            view.set_loader(&self.figures);
        }
    }

    /// Polls every `interval` until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool, interval: Duration) {
        while !stop.load(Ordering::Relaxed) {
            self.poll();
            std::thread::sleep(interval);
        }
    }
}
