//! In-memory port: rings of [`HeapBuf`] for tests, golden packets and benchmarks.
//!
//! Receive pops from an input ring, transmit pushes to an output ring, the
//! host path pushes to a third. `free` returns buffers to a pool so that a
//! benchmark can run without allocating. Loss and reordering can be switched
//! on for tests that need an imperfect link.

use std::collections::VecDeque;

use super::{Burst, PortQueue};
use crate::buf::HeapBuf;

/// An in-memory port queue.
pub struct MemPort {
    /// Frames waiting to be received.
    pub rx: VecDeque<HeapBuf>,
    /// Frames transmitted, in order.
    pub tx: VecDeque<HeapBuf>,
    /// Frames handed to the host.
    pub host: VecDeque<HeapBuf>,
    /// Buffers freed by the worker (dropped frames), for reuse.
    pub pool: Vec<HeapBuf>,
    /// Most frames the tx ring holds; transmit beyond it leaves frames unsent.
    pub tx_capacity: Option<usize>,
    /// Link state reported to the worker (tests flip it).
    pub link: bool,
    /// Drop every n-th received frame (0 = never): a lossy link.
    pub rx_loss_every: usize,
    /// Swap every n-th pair of received frames (0 = never): a reordering link.
    pub rx_reorder_every: usize,
    rx_seen: usize,
}

impl Default for MemPort {
    fn default() -> Self {
        MemPort {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            host: VecDeque::new(),
            pool: Vec::new(),
            tx_capacity: None,
            link: true,
            rx_loss_every: 0,
            rx_reorder_every: 0,
            rx_seen: 0,
        }
    }
}

impl MemPort {
    /// An empty port with link.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one frame for reception.
    pub fn inject(&mut self, frame: &[u8]) {
        let mut b = self
            .pool
            .pop()
            .unwrap_or_else(|| HeapBuf::with_capacity(2048));
        if !b.set_frame(frame) {
            b = HeapBuf::from_frame(frame);
        }
        self.rx.push_back(b);
    }
}

impl PortQueue for MemPort {
    type Buf = HeapBuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        let want = max.min(out.remaining_capacity());
        let mut n = 0;
        while n < want {
            let Some(b) = self.rx.pop_front() else { break };
            self.rx_seen += 1;
            if self.rx_loss_every != 0 && self.rx_seen.is_multiple_of(self.rx_loss_every) {
                self.pool.push(b);
                continue;
            }
            if self.rx_reorder_every != 0 && self.rx_seen.is_multiple_of(self.rx_reorder_every) {
                if let Some(next) = self.rx.pop_front() {
                    self.rx.push_front(b);
                    out.push(next);
                    n += 1;
                    continue;
                }
            }
            out.push(b);
            n += 1;
        }
        n
    }

    #[inline]
    fn tx_burst(&mut self, frames: &mut Burst<HeapBuf>) {
        let room = match self.tx_capacity {
            Some(cap) => cap.saturating_sub(self.tx.len()),
            None => usize::MAX,
        };
        let n = frames.len().min(room);
        self.tx.extend(frames.drain(..n));
    }

    #[inline]
    fn to_host(&mut self, frames: &mut Burst<HeapBuf>) {
        self.host.extend(frames.drain(..));
    }

    #[inline]
    fn free(&mut self, buf: HeapBuf) {
        self.pool.push(buf);
    }

    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(
            self.pool
                .pop()
                .unwrap_or_else(|| HeapBuf::with_capacity(2048)),
        )
    }

    fn link_up(&self) -> bool {
        self.link
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PacketBuffer;

    #[test]
    fn loss_and_reorder() {
        let mut p = MemPort::new();
        for i in 0..6u8 {
            p.inject(&[i]);
        }
        p.rx_loss_every = 3;
        let mut out = Burst::new();
        p.rx_burst(&mut out, 32);
        let got: Vec<u8> = out.iter().map(|b| b.data()[0]).collect();
        assert_eq!(got, vec![0, 1, 3, 4]);

        let mut p = MemPort::new();
        for i in 0..4u8 {
            p.inject(&[i]);
        }
        p.rx_reorder_every = 2;
        let mut out = Burst::new();
        p.rx_burst(&mut out, 32);
        let got: Vec<u8> = out.iter().map(|b| b.data()[0]).collect();
        assert_eq!(got, vec![0, 2, 1, 3]);
    }

    #[test]
    fn tx_capacity_leaves_unsent() {
        let mut p = MemPort::new();
        p.tx_capacity = Some(1);
        let mut b = Burst::new();
        b.push(HeapBuf::from_frame(&[1]));
        b.push(HeapBuf::from_frame(&[2]));
        p.tx_burst(&mut b);
        assert_eq!(p.tx.len(), 1);
        assert_eq!(b.len(), 1);
    }
}
