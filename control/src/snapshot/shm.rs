//! Shared memory as 64-bit atomic words: the head and the back channel.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::AtomicU64;

use memmap2::{MmapOptions, MmapRaw};

/// A file mapped shared, read and written only as atomic words.
#[derive(Debug)]
pub struct SharedWords {
    map: MmapRaw,
}

impl SharedWords {
    /// Creates (or truncates) `path` to `bytes` zero bytes and maps it.
    #[allow(dead_code)]
    pub fn create(path: &Path, bytes: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(bytes as u64)?;
        Self::map(&file)
    }

    /// Maps the existing file `path`, read-write.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::map(&file)
    }

    fn map(file: &File) -> io::Result<Self> {
        Ok(SharedWords {
            map: MmapOptions::new().map_raw(file)?,
        })
    }

    /// Creates `path` of `bytes` zero bytes (tests play the forwarder).
    #[cfg(test)]
    pub fn create_for_test(path: &Path, bytes: usize) -> Self {
        Self::create(path, bytes).expect("create shared memory")
    }

    /// The words (the length rounded down to whole words).
    pub fn words(&self) -> &[AtomicU64] {
        let n = self.map.len() / 8;
        if n == 0 {
            return &[];
        }
        // SAFETY: the mapping is page-aligned (so 8-aligned, AtomicU64's
        // alignment) and `n * 8` bytes long, and stays mapped as long as
        // `self`, which the returned slice borrows. Every access, by this
        // process and by the one at the other end, is an atomic operation
        // on a whole word, so sharing the memory mutably is sound. A file
        // truncated under the mapping by another process would fault
        // (SIGBUS); vipa's processes never truncate a mapped object.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr() as *const AtomicU64, n) }
    }
}
