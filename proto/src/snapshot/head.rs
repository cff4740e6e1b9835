//! The head object: the one word that says which generation is current,
//! and the names of the shared-memory objects.
//!
//! The writer publishes generation `N` by writing the whole snapshot into
//! the object `<prefix>.gen.<N>` first and then storing `N` into the head's
//! generation word with release ordering; a reader that loads `N` with
//! acquire ordering and then opens `<prefix>.gen.<N>` sees the complete
//! snapshot. The head is eight 64-bit words (64 bytes), read and written
//! only with atomic operations:
//!
//! | word | content |
//! |---|---|
//! | 0 | magic `VIPAHEAD` (little-endian bytes), stored last at creation |
//! | 1 | [`HEAD_VERSION`] |
//! | 2 | current generation (0: none published yet) |
//! | 3 | its length in bytes (informational) |
//! | 4..8 | reserved, 0 |

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Word 0 of a head object.
pub const HEAD_MAGIC: u64 = u64::from_le_bytes(*b"VIPAHEAD");
/// Word 1 of a head object.
pub const HEAD_VERSION: u64 = 1;
/// Words in a head object.
pub const HEAD_WORDS: usize = 8;
/// Bytes in a head object.
pub const HEAD_LEN: usize = HEAD_WORDS * 8;

/// Why a head object cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Shorter than a head.
    #[error("the head object has {0} bytes; a head has 64")]
    Truncated(usize),
    /// Not a head (or not initialised yet).
    #[error("the head object has no VIPAHEAD magic (not initialised yet, or not a vipa head)")]
    BadMagic,
    /// Another version.
    #[error("head version {found}, this build uses {expected}: run vipa-control and vipa-forwarder of the same release")]
    UnsupportedVersion {
        /// Found.
        found: u64,
        /// Expected.
        expected: u64,
    },
}

/// A view over a mapped head object.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    words: &'a [AtomicU64],
}

impl<'a> Head<'a> {
    /// The writer's side: initialises a fresh (all-zero) head, or checks an
    /// existing one.
    pub fn init(words: &'a [AtomicU64]) -> Result<Self, HeadError> {
        if words.len() < HEAD_WORDS {
            return Err(HeadError::Truncated(words.len() * 8));
        }
        if words[0].load(Ordering::Acquire) == 0 {
            words[1].store(HEAD_VERSION, Ordering::Relaxed);
            words[0].store(HEAD_MAGIC, Ordering::Release);
        }
        Self::open(words)
    }

    /// The reader's side: checks magic and version.
    pub fn open(words: &'a [AtomicU64]) -> Result<Self, HeadError> {
        if words.len() < HEAD_WORDS {
            return Err(HeadError::Truncated(words.len() * 8));
        }
        if words[0].load(Ordering::Acquire) != HEAD_MAGIC {
            return Err(HeadError::BadMagic);
        }
        let found = words[1].load(Ordering::Relaxed);
        if found != HEAD_VERSION {
            return Err(HeadError::UnsupportedVersion {
                found,
                expected: HEAD_VERSION,
            });
        }
        Ok(Head { words })
    }

    /// The current generation (0: none yet), with acquire ordering.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.words[2].load(Ordering::Acquire)
    }

    /// The current generation's length in bytes.
    pub fn len(&self) -> u64 {
        self.words[3].load(Ordering::Relaxed)
    }

    /// True when nothing was published yet.
    pub fn is_empty(&self) -> bool {
        self.generation() == 0
    }

    /// Makes `generation` (of `len` bytes, already written whole) current.
    pub fn publish(&self, generation: u64, len: u64) {
        self.words[3].store(len, Ordering::Relaxed);
        self.words[2].store(generation, Ordering::Release);
    }
}

/// The files of one snapshot channel: `<prefix>.head`, `<prefix>.gen.<N>`
/// and `<prefix>.back`. A prefix without `/` names objects in `/dev/shm`
/// (POSIX shared memory); one with `/` is a path prefix (tests, or a
/// hugetlbfs mount).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    base: PathBuf,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        let base = if prefix.contains('/') {
            PathBuf::from(prefix)
        } else {
            PathBuf::from("/dev/shm").join(prefix)
        };
        Names { base }
    }

    fn with(&self, suffix: &str) -> PathBuf {
        let mut s = self.base.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    }

    /// The head object.
    pub fn head(&self) -> PathBuf {
        self.with(".head")
    }

    /// Generation `n`'s snapshot.
    pub fn generation(&self, n: u64) -> PathBuf {
        self.with(&format!(".gen.{n}"))
    }

    /// The forwarder's back channel ([`super::back`]).
    pub fn back(&self) -> PathBuf {
        self.with(".back")
    }

    /// The generation number of a file name of this channel's
    /// `<prefix>.gen.<N>` form (for clean-up).
    pub fn parse_generation(&self, file_name: &str) -> Option<u64> {
        let base = self.base.file_name()?.to_str()?;
        file_name
            .strip_prefix(base)?
            .strip_prefix(".gen.")?
            .parse()
            .ok()
    }

    /// The directory the objects live in.
    pub fn dir(&self) -> PathBuf {
        self.base
            .parent()
            .map_or_else(|| PathBuf::from("."), |p| p.to_path_buf())
    }
}
