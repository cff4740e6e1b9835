//! Packet buffers: what a port hands a worker and takes back.
//!
//! The pipeline never owns memory; it edits a frame in place and may grow it
//! at the front (encapsulation) or the back (a neighbour advertisement with an
//! option the solicitation lacked), exactly what a DPDK `rte_mbuf` allows with
//! `rte_pktmbuf_prepend` / `rte_pktmbuf_adj` / `rte_pktmbuf_append` /
//! `rte_pktmbuf_trim`. Every backend implements [`PacketBuffer`] over its own
//! buffer type, so one worker serves them all without copying frames.

/// Bytes kept free in front of a received frame for encapsulation headers.
pub const HEADROOM: usize = 128;
/// Bytes kept free behind a frame for replies that grow.
pub const TAILROOM: usize = 64;
/// Size of a standard buffer: headroom + a jumbo-free frame + tailroom.
pub const DEFAULT_BUF_SIZE: usize = 2048 + HEADROOM;

/// A frame in a buffer with room at both ends.
pub trait PacketBuffer {
    /// The frame, from its first byte (destination MAC) to its last.
    fn data(&self) -> &[u8];
    /// The frame, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the frame by `n` bytes at the front; `false` (and no change) when
    /// the headroom is too small.
    fn prepend(&mut self, n: usize) -> bool;
    /// Removes `n` bytes from the front; `false` (and no change) when the frame is shorter.
    fn adj(&mut self, n: usize) -> bool;
    /// Grows the frame by `n` bytes at the back; `false` when the tailroom is too small.
    fn append(&mut self, n: usize) -> bool;
    /// Shortens the frame to `len` bytes (no-op when it is not longer).
    fn truncate(&mut self, len: usize);
    /// Shortens the frame to `len` bytes (no-op when it is not longer),
    /// then grows it by `front` bytes at the front: what encapsulation does
    /// (drop the Ethernet padding, make room for the outer headers), in one
    /// call. `false` when the headroom is too small, the frame then
    /// shortened but not grown, exactly as [`PacketBuffer::truncate`]
    /// followed by [`PacketBuffer::prepend`], which is the default.
    #[inline]
    fn reframe(&mut self, front: usize, len: usize) -> bool {
        self.truncate(len);
        self.prepend(front)
    }
    /// [`PacketBuffer::reframe`], then the frame's first `N` bytes to
    /// write the new headers into: `None` when the headroom is too small
    /// or the frame is then shorter than `N` (the frame left as `reframe`
    /// left it). What the fast path's encapsulation does per packet, in one
    /// call, so that a backend can do it without asking twice.
    #[inline]
    fn reframe_head<const N: usize>(&mut self, front: usize, len: usize) -> Option<&mut [u8; N]> {
        if !self.reframe(front, len) {
            return None;
        }
        self.data_mut().first_chunk_mut::<N>()
    }
    /// Marks the frame for the device to compute its IPv4 header checksum
    /// on transmission: the header starts `l2_len` bytes into the frame and
    /// is `l3_len` bytes long. `true` when the buffer carries the request
    /// (the caller then writes 0 in the checksum field and skips its own
    /// sum), `false` (and no change) when the caller must compute it.
    ///
    /// Only the device of a port that offers the offload honours the mark,
    /// so the pipeline asks only for frames leaving by such a port (the
    /// port a frame arrived on: see
    /// [`crate::port::PortQueue::ipv4_checksum_offload`]). The default: no
    /// (every backend but `dpdk`).
    #[inline]
    fn request_ipv4_checksum(&mut self, l2_len: usize, l3_len: usize) -> bool {
        let _ = (l2_len, l3_len);
        false
    }
    /// True when the buffer holds the frame in pieces that [`Self::data`]
    /// cannot show as one slice (a chained DPDK mbuf, which a driver hands
    /// over only when receive scatter is on, and vipa does not turn it on).
    /// [`Self::data`] then shows no bytes, and the pipeline drops the frame
    /// as `drop_multi_segment`. The default: never.
    #[inline]
    fn is_segmented(&self) -> bool {
        false
    }
    /// Frame length in bytes.
    #[inline]
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True when the frame has no bytes.
    #[inline]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A heap buffer with head- and tailroom: the buffer of the in-memory and
/// capture backends (and of tests).
#[derive(Clone)]
pub struct HeapBuf {
    mem: Box<[u8]>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for HeapBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeapBuf({} bytes)", self.end - self.start)
    }
}

impl HeapBuf {
    /// An empty buffer able to hold a frame of `max_frame` bytes plus head- and tailroom.
    pub fn with_capacity(max_frame: usize) -> Self {
        let mem = vec![0u8; HEADROOM + max_frame + TAILROOM].into_boxed_slice();
        HeapBuf {
            mem,
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `frame`.
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut b = HeapBuf::with_capacity(frame.len().max(DEFAULT_BUF_SIZE - HEADROOM));
        b.set_frame(frame);
        b
    }

    /// Replaces the content with `frame` (resets head- and tailroom); false when it does not fit.
    #[inline]
    pub fn set_frame(&mut self, frame: &[u8]) -> bool {
        if HEADROOM + frame.len() + TAILROOM > self.mem.len() {
            return false;
        }
        self.start = HEADROOM;
        self.end = HEADROOM + frame.len();
        self.mem[self.start..self.end].copy_from_slice(frame);
        true
    }

    /// Bytes free in front of the frame.
    pub fn headroom(&self) -> usize {
        self.start
    }
}

impl PacketBuffer for HeapBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.mem.len() {
            return false;
        }
        self.end += n;
        true
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
    #[inline]
    fn len(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_shrinks_at_both_ends() {
        let mut b = HeapBuf::from_frame(&[1, 2, 3, 4]);
        assert!(b.prepend(2));
        assert_eq!(b.len(), 6);
        b.data_mut()[..2].copy_from_slice(&[9, 9]);
        assert_eq!(b.data(), &[9, 9, 1, 2, 3, 4]);
        assert!(b.adj(3));
        assert_eq!(b.data(), &[2, 3, 4]);
        assert!(b.append(1));
        assert_eq!(b.len(), 4);
        b.truncate(1);
        assert_eq!(b.data(), &[2]);
        assert!(!b.adj(2));
        assert!(!b.prepend(HEADROOM + 10));
        assert_eq!(b.data(), &[2]);
    }
}
