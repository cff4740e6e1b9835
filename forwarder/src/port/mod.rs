//! Ports: where frames come from and go to.
//!
//! A worker owns one queue of every port; [`PortQueue`] is that queue. The
//! worker is generic over it, so the in-memory ring of the tests and
//! benchmarks, the capture replay and (in later backends) DPDK, AF_XDP and
//! AF_PACKET all run the very same pipeline code.

#[cfg(target_os = "linux")]
pub mod afpacket;
#[cfg(target_os = "linux")]
pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;
pub mod pcap;

use arrayvec::ArrayVec;

use crate::buf::PacketBuffer;

/// The most frames moved by one burst call.
pub const MAX_BURST: usize = 64;

/// A burst of frames: a fixed array on the stack, never allocated.
pub type Burst<B> = ArrayVec<B, MAX_BURST>;

/// One queue of one port, owned by one worker.
pub trait PortQueue {
    /// The buffer type of this backend.
    type Buf: PacketBuffer;

    /// Receives up to `max` frames (at most `out.remaining_capacity()`) into `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Burst<Self::Buf>, max: usize) -> usize;

    /// Transmits the frames in `frames`, removing the ones sent from the
    /// front; frames left in `frames` were not sent (ring full) and the caller
    /// frees and counts them.
    fn tx_burst(&mut self, frames: &mut Burst<Self::Buf>);

    /// Hands frames to the host's network stack (the exception path), removing
    /// the ones taken; what is left was not taken and is freed and counted.
    fn to_host(&mut self, frames: &mut Burst<Self::Buf>);

    /// Gives a buffer back to the backend's pool.
    #[inline]
    fn free(&mut self, buf: Self::Buf) {
        drop(buf);
    }

    /// An empty buffer for a frame the data plane originates (gratuitous
    /// ARP, neighbour requests), or `None` when the backend cannot give one
    /// now; those frames are then skipped (announcements) or built in the
    /// buffer of a packet that needs them (requests).
    #[inline]
    fn alloc(&mut self) -> Option<Self::Buf> {
        None
    }

    /// Whether the port's device computes IPv4 header checksums on
    /// transmission for frames that ask
    /// ([`PacketBuffer::request_ipv4_checksum`]). A worker transmits a frame
    /// on the queue it came from, so it tells its pipeline once per queue
    /// ([`crate::pipeline::Pipeline::set_ipv4_checksum_offload`]) and no
    /// frame has to carry its port. The default: no.
    #[inline]
    fn ipv4_checksum_offload(&self) -> bool {
        false
    }

    /// Whether the port has link. Backends that cannot tell say `true`.
    #[inline]
    fn link_up(&self) -> bool {
        true
    }

    /// The backend's own counters of this queue (the kernel's ring drops,
    /// wake-ups, ...), each passed to `f` with its name; backends without
    /// any pass none. Called when a worker stops (and may make system
    /// calls), never on the packet path.
    fn port_counters(&mut self, f: &mut dyn FnMut(&'static str, u64)) {
        let _ = f;
    }
}
