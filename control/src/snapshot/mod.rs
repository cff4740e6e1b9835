//! The control plane's end of the snapshot channel (DESIGN.md §5): the
//! [`Writer`] publishes generations, the [`BackReader`] reads what the
//! forwarder writes back (the generations it uses, its counters, its
//! new-flow events).
//!
//! # Publishing
//!
//! [`Writer::publish`] numbers the generation (the head's current one plus
//! one), lays it out ([`vipa_proto::snapshot::Builder`]), creates
//! `<prefix>.gen.<N>` new, sizes it, maps it and writes the snapshot
//! straight into the mapping, unmaps it, and only then stores `N` in the
//! head (release order): a reader never sees a generation half written.
//! A published object is never written again. No `fsync`: the objects
//! live in memory (`/dev/shm`), and a crash loses the channel anyway.
//!
//! # Clean-up
//!
//! After publishing, objects of generations older than both the current one
//! and the oldest one the forwarder still uses (its back channel says which
//! generation its loader and every worker use) are removed. Removing the
//! name does not unmap anything: a forwarder that still maps an object
//! keeps it until it unmaps it. Without a back channel (no forwarder yet)
//! only the current generation is kept.

mod shm;

use std::fs::OpenOptions;
use std::io;
use std::path::PathBuf;

use memmap2::MmapOptions;
use vipa_proto::snapshot::back::{Back, BackError, FlowEvent, Identity, LoaderFigures};
use vipa_proto::snapshot::head::{Head, HeadError, Names, HEAD_LEN};
use vipa_proto::snapshot::{BuildError, Builder, Description};

pub use shm::SharedWords;

/// Why a generation could not be published.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The object.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The description cannot be serialised.
    #[error("the snapshot cannot be built: {0}")]
    Build(#[from] BuildError),
    /// The head object is not usable.
    #[error("head object: {0}")]
    Head(#[from] HeadError),
}

/// What one publication produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The generation number.
    pub generation: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Older generation objects removed.
    pub removed: usize,
}

/// Publishes snapshot generations on one channel.
#[derive(Debug)]
pub struct Writer {
    names: Names,
    head: SharedWords,
}

impl Writer {
    /// Opens (creating it if needed) the head of channel `prefix`.
    pub fn open(prefix: &str) -> Result<Self, WriteError> {
        let names = Names::new(prefix);
        let path = names.head();
        let io = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if file.metadata().map_err(io)?.len() < HEAD_LEN as u64 {
            file.set_len(HEAD_LEN as u64).map_err(io)?;
        }
        drop(file);
        let head = SharedWords::open(&path).map_err(io)?;
        Head::init(head.words())?;
        Ok(Writer { names, head })
    }

    fn head(&self) -> Head<'_> {
        // `open` initialised and checked it; the words cannot change length.
        Head::open(self.head.words()).unwrap_or_else(|_| unreachable!("checked at open"))
    }

    /// The current generation (0: none yet).
    pub fn generation(&self) -> u64 {
        self.head().generation()
    }

    /// The channel's names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Publishes `desc` as the next generation (its `generation` field is
    /// ignored) and removes the generations nobody uses any more.
    pub fn publish(&mut self, desc: &Description) -> Result<Published, WriteError> {
        let generation = self.generation() + 1;
        let builder = Builder::new(desc)?.with_generation(generation);
        let path = self.names.generation(generation);
        let io = |source| WriteError::Io {
            path: path.clone(),
            source,
        };
        // Left over by a writer that crashed before publishing it.
        let _ = std::fs::remove_file(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(builder.len() as u64).map_err(io)?;
        // SAFETY: the object was just created (`create_new`) under a name no
        // reader looks at before the head names it, which happens below,
        // after this mapping is gone; nothing else maps or resizes it.
        let mut map = unsafe { MmapOptions::new().populate().map_mut(&file) }.map_err(io)?;
        builder.write(&mut map)?;
        drop(map);
        drop(file);
        self.head().publish(generation, builder.len() as u64);
        let removed = self.clean();
        Ok(Published {
            generation,
            bytes: builder.len() as u64,
            removed,
        })
    }

    /// Removes generation objects older than the current one and the
    /// oldest one the forwarder uses; returns how many.
    pub fn clean(&self) -> usize {
        let current = self.generation();
        let in_use = BackReader::open(&self.names.back().to_string_lossy())
            .ok()
            .and_then(|b| b.view().ok().map(|v| v.oldest_in_use()))
            .filter(|&g| g != 0)
            .unwrap_or(current);
        let keep_from = current.min(in_use);
        let Ok(dir) = std::fs::read_dir(self.names.dir()) else {
            return 0;
        };
        let mut removed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(g) = name.to_str().and_then(|n| self.names.parse_generation(n)) else {
                continue;
            };
            if g < keep_from && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// What [`BackReader::state`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwarderState {
    /// Who writes the channel.
    pub identity: Identity,
    /// The loader's figures.
    pub loader: LoaderFigures,
    /// Per worker.
    pub workers: Vec<WorkerState>,
}

/// One worker, as the back channel shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerState {
    /// The snapshot generation it uses (0: the configuration's tables).
    pub generation: u64,
    /// Its clock (seconds) when it last copied its counters in.
    pub published: u64,
}

/// Reads the forwarder's back channel.
#[derive(Debug)]
pub struct BackReader {
    shm: SharedWords,
    path: PathBuf,
    /// The object mapped: (device, inode), from before it was opened.
    object: (u64, u64),
}

/// The (device, inode) of the file at `path`.
fn object_of(path: &std::path::Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl BackReader {
    /// Maps the back channel at `path` (`<prefix>.back`).
    pub fn open(path: &str) -> io::Result<Self> {
        let path = PathBuf::from(path);
        // Noted before the open: if a new object replaces the old one in
        // between, the reader maps the new one under the old one's
        // identity, and `replaced` makes it open again; the other order
        // could keep the old mapping for ever.
        let object = object_of(&path)?;
        Ok(BackReader {
            shm: SharedWords::open(&path)?,
            path,
            object,
        })
    }

    /// Whether the name now holds another object than the one mapped: a
    /// forwarder that starts creates its back channel afresh (a reader of
    /// the old one keeps its mapping, which nobody writes any more). True
    /// also when the name is gone.
    pub fn replaced(&self) -> bool {
        object_of(&self.path).map_or(true, |o| o != self.object)
    }

    /// Maps the back channel of channel `prefix`.
    pub fn open_prefix(prefix: &str) -> io::Result<Self> {
        Self::open(&Names::new(prefix).back().to_string_lossy())
    }

    /// The checked view.
    pub fn view(&self) -> Result<Back<'_>, BackError> {
        Back::open(self.shm.words())
    }

    /// Every worker's counters by name.
    pub fn counters(&self) -> Result<Vec<Vec<(String, u64)>>, BackError> {
        let v = self.view()?;
        let names = v.names();
        Ok((0..v.layout().workers)
            .map(|w| names.iter().cloned().zip(v.counters(w)).collect())
            .collect())
    }

    /// What the forwarder says of itself: who it is, its loader's figures,
    /// and per worker the generation it uses and its clock at its last
    /// counter copy.
    pub fn state(&self) -> Result<ForwarderState, BackError> {
        let v = self.view()?;
        Ok(ForwarderState {
            identity: v.identity(),
            loader: v.loader(),
            workers: (0..v.layout().workers)
                .map(|w| WorkerState {
                    generation: v.worker_generation(w),
                    published: v.worker_published(w),
                })
                .collect(),
        })
    }

    /// Per target slot, `[packets, bytes, flows]` summed over the workers
    /// (as of each worker's last copy, once a second).
    pub fn target_totals(&self) -> Result<Vec<[u64; 3]>, BackError> {
        let v = self.view()?;
        let mut sum = vec![[0u64; 3]; v.layout().target_slots];
        for w in 0..v.layout().workers {
            for (s, t) in sum.iter_mut().zip(v.target_counters(w)) {
                for (a, b) in s.iter_mut().zip(t) {
                    *a = a.wrapping_add(b);
                }
            }
        }
        Ok(sum)
    }

    /// Per (service slot, target slot) `[packets, bytes]` summed over the
    /// workers, with the number of target slots per service slot (the
    /// index is `service * that + target`).
    pub fn service_target_totals(&self) -> Result<(usize, Vec<[u64; 2]>), BackError> {
        let v = self.view()?;
        let mut sum = vec![[0u64; 2]; v.layout().service_pairs()];
        for w in 0..v.layout().workers {
            for (s, t) in sum.iter_mut().zip(v.service_target_counters(w)) {
                for (a, b) in s.iter_mut().zip(t) {
                    *a = a.wrapping_add(b);
                }
            }
        }
        Ok((v.layout().service_targets, sum))
    }

    /// Takes up to `max` new-flow events, worker by worker: (worker, event).
    pub fn drain_events(&self, max: usize) -> Result<Vec<(usize, FlowEvent)>, BackError> {
        let v = self.view()?;
        let mut out = Vec::new();
        for w in 0..v.layout().workers {
            while out.len() < max {
                match v.pop_event(w) {
                    Some(e) => out.push((w, e)),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
