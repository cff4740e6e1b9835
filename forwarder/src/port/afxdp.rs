//! AF_XDP port: a live interface through XDP sockets, beside the kernel.
//!
//! # Pieces
//!
//! - **The XDP program** (`xdp/vipa_xdp.c`, compiled by clang in `build.rs`
//!   and embedded here) is loaded and attached with `aya`. It redirects to the
//!   socket of the frame's receive queue only what the data plane handles —
//!   IP to an owned VIPA (with one 802.1Q tag looked through), ARP requests
//!   and neighbour solicitations for an owned VIPA, and the answers to the
//!   data plane's own ARP / neighbour requests (ARP replies and neighbour
//!   advertisements to a tunnel source address from a next hop) — and passes
//!   everything else to the kernel, so management traffic on the same port
//!   keeps working. Its address map is filled from the forwarding tables
//!   before it is attached ([`XdpAddresses`]); nothing is pinned, so
//!   `/sys/fs/bpf` is not needed.
//! - **One socket per queue** (`xdpilone`), bound to receive queue `q` of the
//!   interface and entered in the program's XSKMAP at index `q`.
//!
//! # Decisions
//!
//! - **Attach mode.** Native (driver) mode first; when the driver refuses,
//!   generic (SKB) mode, which works on every interface. An interface that
//!   already has an XDP program is refused (only one program per interface
//!   works here): [`AfXdpError::AttachBusy`] says how to remove it. The mode
//!   used is in [`AfXdpInfo::mode`] and in the start-up log.
//! - **Zero-copy.** Each socket is bound with `XDP_ZEROCOPY` first and, when
//!   the driver refuses, again in copy mode (`XDP_COPY`); veth, for one, has
//!   no zero-copy. [`AfXdpInfo::zero_copy`] says which.
//! - **One UMEM per queue.** Every queue owns its UMEM, fill, completion,
//!   receive and transmit rings, so a worker never shares a ring or a frame
//!   with another thread: no lock, no atomic read-modify-write. A shared
//!   UMEM would save memory only. Default: 8192 frames of 2048 bytes (16
//!   MiB) per queue, of 4096 bytes for MTUs above 1710; rings of 4096
//!   entries. The fill and receive rings are what absorbs the time the
//!   worker is not polling (preempted, say): 4096 frames, 4 ms at 1 Mpps;
//!   twice as many frames as fill-ring entries, so frames waiting in the
//!   transmit and completion rings do not starve the fill ring.
//! - **Buffers are UMEM frames.** [`XdpBuf`] is a frame of this queue's UMEM:
//!   received frames are processed in place and transmitted from where they
//!   arrived (no copy in user space); the kernel's receive path puts 256
//!   bytes of headroom in front of every frame, more than the encapsulation
//!   needs. Frames circulate between a free list (a `Vec` sized once, so
//!   pushing never allocates), the fill ring, the worker, the transmit ring
//!   and the completion ring. `MAX_BURST` free frames are kept back from the
//!   fill ring for [`PortQueue::alloc`].
//! - **Wake-ups.** Sockets are bound with `XDP_USE_NEED_WAKEUP`; the port
//!   kicks fill (`poll`) only when the kernel asks, and transmit (`sendto`)
//!   when the kernel asks or, in copy mode, whenever descriptors wait: there
//!   the kernel sends only in the `sendto` call, up to the socket's budget
//!   per call (32 frames; raised to 256 with `XDP_MAX_TX_SKB_BUDGET` on
//!   Linux ≥ 6.17), answering `EAGAIN` when more wait. `tx_burst` kicks
//!   until its burst is out (a few times at most) and a queue with transmit
//!   descriptors still pending is kicked again on its next receive poll.
//!   Copy mode also charges every frame in flight to the socket's send
//!   buffer, which is raised to hold a full transmit ring.
//! - **Losses are named.** [`AfXdpStats`] has the kernel's `XDP_STATISTICS`
//!   (receive ring full, fill ring empty, ...) and the transmit kicks'
//!   outcomes; `vipa-forwarder run` reports them per queue when it stops.
//! - **No path to the host.** A frame that reached the socket is gone from
//!   the kernel's path; AF_XDP cannot hand it back. Since the program only
//!   redirects what the data plane handles, the frames the pipeline hands to
//!   the host are few (an ARP reply it learned a next hop from, say):
//!   [`PortQueue::to_host`] takes none, so the worker frees them and counts
//!   them as `drop_host_full`, and this port counts them in
//!   [`AfXdpStats::host_unsupported`].
//! - **Shared addresses.** When a tunnel source address is also the kernel's
//!   own address on the port (as in the lab), ARP replies and neighbour
//!   advertisements from a data-plane next hop to that address reach the
//!   data plane, not the kernel: the kernel cannot resolve the targets and
//!   gateways of the data plane on that port itself. Everything else it can.
//! - **Lifetime.** The program stays attached while any queue of the port
//!   lives; the last one dropped detaches it (aya's link is closed), and a
//!   crashed process's links are closed by the kernel. A socket's XSKMAP
//!   entry disappears with the socket, after which the program passes its
//!   frames to the kernel. The UMEM mapping is unmapped when the queue is
//!   dropped, unless frames of it are still out in [`XdpBuf`]s; then it is
//!   left mapped (leaked) so they stay valid.
//! - **Link state.** [`AfXdpQueue::link_up`]: `IFF_UP` and `IFF_RUNNING` from
//!   `SIOCGIFFLAGS` on the queue's own socket (so in the right namespace).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use aya::maps::{HashMap as BpfHashMap, XskMap};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError};
use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig};

use super::{Burst, PortQueue, MAX_BURST};
use crate::buf::{PacketBuffer, HEADROOM, TAILROOM};
use crate::tables::Tables;

/// The XDP program, compiled from `xdp/vipa_xdp.c` by `build.rs`.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vipa_xdp.o"));
const PROGRAM_NAME: &str = "vipa_xdp";
const MAP_ADDRS: &str = "vipa_addrs";
const MAP_XSKS: &str = "vipa_xsks";
/// `max_entries` of the maps in `vipa_xdp.c`.
const MAX_ADDRS: usize = 4096;
const MAX_QUEUES: usize = 256;
/// Address flags, as in `vipa_xdp.c`.
const ADDR_VIPA: u32 = 1;
const ADDR_TUNNEL_SRC: u32 = 2;
const ADDR_NEXT_HOP: u32 = 4;
/// `XDP_PACKET_HEADROOM`: where the kernel puts a received frame in its UMEM
/// frame; frames the data plane builds start there too.
const XDP_HEADROOM: u32 = 256;
/// `struct xdp_options` flag: the socket is in zero-copy mode.
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
/// Most transmit kicks per `tx_burst`: 8 × 32 frames at the kernel's
/// smallest budget, more than a burst.
const MAX_KICKS: u32 = 8;
/// The copy-mode transmit budget asked for (`XDP_MAX_TX_SKB_BUDGET`).
const TX_BUDGET: u32 = 256;
/// `XDP_MAX_TX_SKB_BUDGET` socket option (Linux ≥ 6.17).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// `SOL_XDP` / `XDP_OPTIONS` socket option.
const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (SKB) mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Driver,
    /// Generic (SKB) mode only.
    Skb,
}

/// Which socket mode to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy, falling back to copy mode.
    #[default]
    Auto,
    /// Zero-copy only.
    Required,
    /// Copy mode only.
    Off,
}

/// Configuration of an AF_XDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpOptions {
    /// Number of queues (sockets, bound to receive queues 0..queues); one per worker.
    pub queues: usize,
    /// Bytes per UMEM frame: 2048 or 4096 (a power of two, at most a page).
    /// The largest frame is this minus 256 (kernel headroom) minus 64
    /// (tailroom for replies that grow).
    pub frame_size: u32,
    /// UMEM frames per queue (default 8192).
    pub frames: u32,
    /// Entries of each ring (fill, completion, receive, transmit); a power of
    /// two (default 4096).
    pub ring_size: u32,
    /// Attach mode (default: native, else generic).
    pub attach: AttachMode,
    /// Zero-copy (default: if the driver can).
    pub zero_copy: ZeroCopy,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        AfXdpOptions {
            queues: 1,
            frame_size: 2048,
            frames: 8192,
            ring_size: 4096,
            attach: AttachMode::Auto,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

impl AfXdpOptions {
    /// The smallest frame size that holds frames of IP MTU `mtu` (plus
    /// Ethernet and one 802.1Q tag); `None` above what a page-sized frame holds.
    pub fn frame_size_for_mtu(mtu: u16) -> Option<u32> {
        let need = XDP_HEADROOM + u32::from(mtu) + 18 + TAILROOM as u32;
        [2048, 4096].into_iter().find(|&s| need <= s)
    }

    /// The largest frame this port receives or transmits.
    pub fn max_frame(&self) -> usize {
        (self.frame_size - XDP_HEADROOM) as usize - TAILROOM
    }
}

/// What the XDP program needs to know about addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XdpAddresses {
    /// Owned VIPAs: IP to them, ARP requests and neighbour solicitations for them.
    pub vipas: Vec<IpAddr>,
    /// The node's tunnel source addresses: the data plane's ARP and neighbour
    /// requests come from them, so the answers go to them.
    pub tunnel_sources: Vec<IpAddr>,
    /// Targets and gateways the data plane resolves on this port.
    pub next_hops: Vec<IpAddr>,
}

impl XdpAddresses {
    /// The addresses port `port` of `tables` handles.
    pub fn from_tables(tables: &Tables, port: usize) -> Self {
        XdpAddresses {
            vipas: tables.vipas.iter().map(|v| v.address).collect(),
            tunnel_sources: tables
                .tunnel_source_v4
                .map(IpAddr::V4)
                .into_iter()
                .chain(tables.tunnel_source_v6.map(IpAddr::V6))
                .collect(),
            next_hops: tables
                .resolve
                .iter()
                .filter(|(_, p)| *p == port)
                .map(|(a, _)| *a)
                .collect(),
        }
    }

    /// Map entries: 16-byte key (IPv4 as `::ffff:a.b.c.d`) → flags.
    fn entries(&self) -> BTreeMap<[u8; 16], u32> {
        let mut m = BTreeMap::new();
        let key = |a: &IpAddr| match a {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        for (list, flag) in [
            (&self.vipas, ADDR_VIPA),
            (&self.tunnel_sources, ADDR_TUNNEL_SRC),
            (&self.next_hops, ADDR_NEXT_HOP),
        ] {
            for a in list {
                *m.entry(key(a)).or_insert(0) |= flag;
            }
        }
        m
    }
}

/// Errors of the AF_XDP port: what failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("interface `{ifname}` does not exist in this network namespace; list the interfaces with `ip link` (or `ip netns exec NS ip link`)")]
    InterfaceMissing { ifname: String },
    #[error("`{ifname}` is not a valid interface name (1 to 15 bytes, no NUL)")]
    InvalidName { ifname: String },
    #[error("{what} on `{ifname}` was refused ({detail}): AF_XDP needs root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK (`setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep BINARY`)")]
    PermissionDenied {
        ifname: String,
        what: &'static str,
        detail: String,
    },
    #[error("loading the XDP program failed: {detail}; the kernel needs BPF and XDP support (Linux ≥ 5.9)")]
    Load { detail: String },
    #[error("`{ifname}` already has an XDP program attached ({detail}); only one XDP program per interface works here: find it with `ip link show dev {ifname}` and remove it with `ip link set dev {ifname} xdp off` (or `xdpgeneric off`), or stop the program that attached it (another vipa-forwarder?)")]
    AttachBusy { ifname: String, detail: String },
    #[error("attaching the XDP program to `{ifname}` failed: {detail}")]
    Attach { ifname: String, detail: String },
    #[error("filling the XDP program's {map} map failed: {detail}")]
    Map { map: &'static str, detail: String },
    #[error("queue {queue} of `{ifname}`: {what} failed ({source}); {hint}")]
    Socket {
        ifname: String,
        queue: usize,
        what: &'static str,
        source: io::Error,
        hint: &'static str,
    },
    #[error("queue {queue} of `{ifname}`: the driver refused zero-copy ({source}) and zero-copy is required; allow copy mode")]
    NoZeroCopy {
        ifname: String,
        queue: usize,
        source: io::Error,
    },
    #[error("invalid AF_XDP options: {0}")]
    Options(String),
}

impl AfXdpError {
    /// The operating system's error code behind this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            AfXdpError::Socket { source, .. } | AfXdpError::NoZeroCopy { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

/// Counters of one queue, beside the worker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Frames handed to the worker.
    pub rx_frames: u64,
    /// Receive descriptors outside this queue's UMEM (a kernel bug), skipped.
    pub rx_invalid: u64,
    /// Frames placed in the transmit ring.
    pub tx_frames: u64,
    /// Transmit kicks (`sendto`).
    pub tx_wakeups: u64,
    /// Transmit kicks after which the kernel had sent nothing and asked to
    /// try again (`EAGAIN`: completion ring full or device busy; `ENOBUFS`:
    /// socket send buffer full); the frames stay in the ring for the next
    /// kick. (`EAGAIN` after sending a batch, with more waiting, is not
    /// counted: the port kicks again.)
    pub tx_kick_again: u64,
    /// Transmit kicks that reported a frame dropped by the device after the
    /// kernel took it from the ring (`EBUSY`: in copy mode the device's
    /// transmit refused it, e.g. a veth whose peer's ring was full). Lost.
    pub tx_kick_dropped: u64,
    /// Transmit kicks that failed otherwise (`ENETDOWN`, `ENXIO`, ...).
    pub tx_kick_errors: u64,
    /// Fill-ring kicks (`poll`).
    pub fill_wakeups: u64,
    /// Buffers of another queue given to this one (not sent, not taken back).
    pub foreign_buffers: u64,
    /// Frames the pipeline handed to the host: AF_XDP has no path back to
    /// the kernel, so they are dropped (see the module documentation).
    pub host_unsupported: u64,
    /// Kernel (`XDP_STATISTICS`, read by [`AfXdpQueue::stats`]): frames
    /// dropped other than for a full receive ring; in copy mode mostly for
    /// want of a free frame (fill ring empty, see below), or too long.
    pub kernel_rx_dropped: u64,
    /// Kernel: frames dropped because the receive ring was full (the worker
    /// did not keep up, or was not running).
    pub kernel_rx_ring_full: u64,
    /// Kernel: times it needed a frame and found the fill ring empty.
    pub kernel_fill_ring_empty: u64,
    /// Kernel: receive descriptors it found invalid.
    pub kernel_rx_invalid_descs: u64,
    /// Kernel: transmit descriptors it found invalid (not sent).
    pub kernel_tx_invalid_descs: u64,
    /// Kernel: times it found the transmit ring empty when asked to send.
    pub kernel_tx_ring_empty: u64,
}

impl AfXdpStats {
    /// Every counter with its name (`afxdp_` and the field's name), for reports.
    pub fn named(&self) -> [(&'static str, u64); 16] {
        [
            ("afxdp_rx_frames", self.rx_frames),
            ("afxdp_rx_invalid", self.rx_invalid),
            ("afxdp_tx_frames", self.tx_frames),
            ("afxdp_tx_wakeups", self.tx_wakeups),
            ("afxdp_tx_kick_again", self.tx_kick_again),
            ("afxdp_tx_kick_dropped", self.tx_kick_dropped),
            ("afxdp_tx_kick_errors", self.tx_kick_errors),
            ("afxdp_fill_wakeups", self.fill_wakeups),
            ("afxdp_foreign_buffers", self.foreign_buffers),
            ("afxdp_host_unsupported", self.host_unsupported),
            ("afxdp_kernel_rx_dropped", self.kernel_rx_dropped),
            ("afxdp_kernel_rx_ring_full", self.kernel_rx_ring_full),
            ("afxdp_kernel_fill_ring_empty", self.kernel_fill_ring_empty),
            (
                "afxdp_kernel_rx_invalid_descs",
                self.kernel_rx_invalid_descs,
            ),
            (
                "afxdp_kernel_tx_invalid_descs",
                self.kernel_tx_invalid_descs,
            ),
            ("afxdp_kernel_tx_ring_empty", self.kernel_tx_ring_empty),
        ]
    }
}

/// How a port was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfXdpInfo {
    /// The XDP attach mode in use: native (driver) or generic (SKB).
    pub mode: XdpMode,
    /// Whether the sockets are in zero-copy mode (else copy mode).
    pub zero_copy: bool,
    /// Bytes per UMEM frame.
    pub frame_size: u32,
    /// The interface index.
    pub ifindex: u32,
}

impl AfXdpInfo {
    /// `native` or `generic`, for people.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            XdpMode::Driver => "native",
            XdpMode::Skb => "generic",
            XdpMode::Hardware => "offload",
            XdpMode::Default => "default",
        }
    }
}

/// The loaded and attached XDP program of one port, shared by its queues;
/// dropping the last queue drops it, which detaches the program.
struct Program {
    _ebpf: Ebpf,
}

/// A frame in a queue's UMEM: what the AF_XDP port hands a worker.
pub struct XdpBuf {
    /// Start of the UMEM frame.
    chunk: NonNull<u8>,
    /// Offset of the frame in the UMEM (the kernel's address of it).
    addr: u64,
    start: u32,
    end: u32,
    size: u32,
}

// SAFETY: an `XdpBuf` is the only handle to its UMEM frame while it exists
// (the frame is in no ring and not in the free list), and the mapping stays
// valid as long as any `XdpBuf` of it exists (see `AfXdpQueue::drop`), so
// moving one to another thread moves sole access with it.
unsafe impl Send for XdpBuf {}

impl std::fmt::Debug for XdpBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "XdpBuf({} bytes at {:#x})",
            self.end - self.start,
            self.addr
        )
    }
}

impl XdpBuf {
    /// Offset of the frame's first byte in the UMEM: its transmit address.
    #[inline]
    fn tx_addr(&self) -> u64 {
        self.addr + u64::from(self.start)
    }

    /// Bytes free in front of the frame.
    pub fn headroom(&self) -> usize {
        self.start as usize
    }
}

impl PacketBuffer for XdpBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        // SAFETY: `start <= end <= size`, the frame is `size` bytes of the
        // mapping, which outlives every `XdpBuf` of it, and this buffer is
        // its only handle (see the `Send` impl).
        unsafe {
            std::slice::from_raw_parts(
                self.chunk.as_ptr().add(self.start as usize),
                (self.end - self.start) as usize,
            )
        }
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`; `&mut self` makes the access exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.chunk.as_ptr().add(self.start as usize),
                (self.end - self.start) as usize,
            )
        }
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start as usize {
            return false;
        }
        self.start -= n as u32;
        true
    }
    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        if n > (self.end - self.start) as usize {
            return false;
        }
        self.start += n as u32;
        true
    }
    #[inline]
    fn append(&mut self, n: usize) -> bool {
        if n > (self.size - self.end) as usize {
            return false;
        }
        self.end += n as u32;
        true
    }
    #[inline]
    fn truncate(&mut self, len: usize) {
        if len < (self.end - self.start) as usize {
            self.end = self.start + len as u32;
        }
    }
    #[inline]
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
}

/// The xdpilone side of a queue: dropped before the UMEM is unmapped.
struct Rings {
    fq: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    /// Keeps the UMEM registration (and the socket) alive.
    _umem: Umem,
}

/// One queue of an AF_XDP port: an XDP socket with its own UMEM.
pub struct AfXdpQueue {
    rings: Option<Rings>,
    area: NonNull<u8>,
    area_len: usize,
    frame_size: u32,
    frames: u32,
    /// UMEM offsets of free frames; capacity `frames`, so pushing never allocates.
    free: Vec<u64>,
    /// Frames out in `XdpBuf`s.
    outstanding: u32,
    /// A datagram socket in the port's namespace for interface ioctls (AF_XDP
    /// sockets answer none).
    ctl: OwnedFd,
    stats: AfXdpStats,
    info: AfXdpInfo,
    ifname: String,
    ifreq_name: [libc::c_char; libc::IFNAMSIZ],
    queue: usize,
    /// Detaches the program when the port's last queue is dropped.
    _program: Arc<Program>,
}

// SAFETY: the queue exclusively owns its socket, rings and UMEM mapping; the
// raw pointers point into mappings no other value uses, so moving the queue
// to another thread moves sole access with it. The program is only kept
// alive (never used) after `open`.
unsafe impl Send for AfXdpQueue {}

impl std::fmt::Debug for AfXdpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpQueue")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn os_error(e: xdpilone::Errno) -> io::Error {
    // xdpilone reports some errors negated.
    io::Error::from_raw_os_error(e.get_raw().abs())
}

/// The ifindex of `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, AfXdpError> {
    let invalid = || AfXdpError::InvalidName {
        ifname: ifname.to_string(),
    };
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(invalid());
    }
    let c = CString::new(ifname).map_err(|_| invalid())?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(AfXdpError::InterfaceMissing {
            ifname: ifname.to_string(),
        });
    }
    Ok(idx)
}

fn validate(opts: &AfXdpOptions) -> Result<(), AfXdpError> {
    let bad = |m: String| Err(AfXdpError::Options(m));
    if opts.queues == 0 || opts.queues > MAX_QUEUES {
        return bad(format!("queues = {}: use 1 to {MAX_QUEUES}", opts.queues));
    }
    if opts.frame_size != 2048 && opts.frame_size != 4096 {
        return bad(format!(
            "frame_size = {}: use 2048 or 4096",
            opts.frame_size
        ));
    }
    if !opts.ring_size.is_power_of_two() || opts.ring_size < 64 || opts.ring_size > 1 << 16 {
        return bad(format!(
            "ring_size = {}: use a power of two from 64 to 65536",
            opts.ring_size
        ));
    }
    if opts.frames < 2 * MAX_BURST as u32 || opts.frames > 1 << 20 {
        return bad(format!(
            "frames = {}: use {} to {}",
            opts.frames,
            2 * MAX_BURST,
            1 << 20
        ));
    }
    Ok(())
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// The OS error inside an aya program error, if any.
fn program_os_error(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        _ => None,
    }
}

/// Loads the program and fills its address map (not attached yet).
fn load_program(ifname: &str, addrs: &XdpAddresses) -> Result<Ebpf, AfXdpError> {
    let mut ebpf = Ebpf::load(PROGRAM).map_err(|e| match &e {
        EbpfError::MapError(aya::maps::MapError::CreateError { io_error, .. })
            if is_permission(io_error) =>
        {
            AfXdpError::PermissionDenied {
                ifname: ifname.to_string(),
                what: "creating the XDP program's maps",
                detail: io_error.to_string(),
            }
        }
        _ => AfXdpError::Load {
            detail: e.to_string(),
        },
    })?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .ok_or_else(|| AfXdpError::Load {
            detail: format!("the object has no program `{PROGRAM_NAME}`"),
        })?
        .try_into()
        .map_err(|e: ProgramError| AfXdpError::Load {
            detail: e.to_string(),
        })?;
    prog.load().map_err(|e| match program_os_error(&e) {
        Some(libc::EPERM) | Some(libc::EACCES) => AfXdpError::PermissionDenied {
            ifname: ifname.to_string(),
            what: "loading the XDP program",
            detail: e.to_string(),
        },
        _ => AfXdpError::Load {
            detail: e.to_string(),
        },
    })?;

    let entries = addrs.entries();
    if entries.len() > MAX_ADDRS {
        return Err(AfXdpError::Map {
            map: MAP_ADDRS,
            detail: format!("{} addresses, the map holds {MAX_ADDRS}", entries.len()),
        });
    }
    let map_err = |map: &'static str| {
        move |e: aya::maps::MapError| AfXdpError::Map {
            map,
            detail: e.to_string(),
        }
    };
    let mut map: BpfHashMap<_, [u8; 16], u32> =
        BpfHashMap::try_from(ebpf.map_mut(MAP_ADDRS).ok_or_else(|| AfXdpError::Map {
            map: MAP_ADDRS,
            detail: "not in the object".into(),
        })?)
        .map_err(map_err(MAP_ADDRS))?;
    for (k, v) in entries {
        map.insert(k, v, 0).map_err(map_err(MAP_ADDRS))?;
    }
    Ok(ebpf)
}

/// Attaches the loaded program to `ifindex` in `mode` (Auto: native, else generic).
fn attach(
    ebpf: &mut Ebpf,
    ifname: &str,
    ifindex: u32,
    mode: AttachMode,
) -> Result<XdpMode, AfXdpError> {
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM_NAME)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| AfXdpError::Load {
            detail: format!("the object has no XDP program `{PROGRAM_NAME}`"),
        })?;
    let modes: &[XdpMode] = match mode {
        AttachMode::Auto => &[XdpMode::Driver, XdpMode::Skb],
        AttachMode::Driver => &[XdpMode::Driver],
        AttachMode::Skb => &[XdpMode::Skb],
    };
    let mut last = None;
    for &m in modes {
        match prog.attach_to_if_index(ifindex, m) {
            Ok(_) => return Ok(m),
            Err(e) => {
                let detail = format!(
                    "{e} ({})",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                );
                let detail = detail.trim_end_matches(" ()").to_string();
                match program_os_error(&e) {
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        return Err(AfXdpError::AttachBusy {
                            ifname: ifname.to_string(),
                            detail,
                        })
                    }
                    Some(libc::EPERM) | Some(libc::EACCES) => {
                        return Err(AfXdpError::PermissionDenied {
                            ifname: ifname.to_string(),
                            what: "attaching the XDP program",
                            detail,
                        })
                    }
                    _ => last = Some(detail),
                }
            }
        }
    }
    Err(AfXdpError::Attach {
        ifname: ifname.to_string(),
        detail: last.unwrap_or_default(),
    })
}

/// Whether the socket `fd` is in zero-copy mode (`XDP_OPTIONS`).
fn socket_zero_copy(fd: libc::c_int) -> bool {
    let mut opts: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid and writable; the kernel writes at
    // most `len` bytes into `opts`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_OPTIONS,
            (&mut opts as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && opts & XDP_OPTIONS_ZEROCOPY != 0
}

/// Raises the frames a copy-mode socket sends per `sendto`
/// (`XDP_MAX_TX_SKB_BUDGET`, Linux ≥ 6.17; the kernel clamps it to 32 ..=
/// the transmit ring's size).
fn set_tx_budget(fd: libc::c_int, frames: u32) -> io::Result<()> {
    // SAFETY: `frames` is a valid u32 that outlives the call; the kernel
    // reads exactly `size_of::<u32>()` bytes of it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&frames as *const u32).cast(),
            size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the socket's send buffer to `bytes`: `SO_SNDBUFFORCE` (root or
/// CAP_NET_ADMIN), else `SO_SNDBUF` (capped by `net.core.wmem_max`).
fn set_send_buffer(fd: libc::c_int, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX / 2);
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: `v` is a valid c_int that outlives the call; the kernel
        // reads `size_of::<c_int>()` bytes of it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

/// A datagram socket for interface ioctls, in the calling thread's namespace.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An anonymous, page-aligned mapping of `len` bytes, populated.
fn map_area(len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh private anonymous mapping at an address the kernel
    // chooses; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))
}

/// Opens an AF_XDP port.
#[derive(Debug)]
pub struct AfXdpPort;

impl AfXdpPort {
    /// Opens `opts.queues` queues on `ifname` (in the calling thread's network
    /// namespace): loads the XDP program with `addrs`, creates and binds one
    /// socket per receive queue, then attaches the program.
    pub fn open(
        ifname: &str,
        addrs: &XdpAddresses,
        opts: &AfXdpOptions,
    ) -> Result<(Vec<AfXdpQueue>, AfXdpInfo), AfXdpError> {
        validate(opts)?;
        let idx = ifindex(ifname)?;
        let mut ebpf = load_program(ifname, addrs)?;

        let mut sockets = Vec::with_capacity(opts.queues);
        let mut zero_copy = opts.zero_copy;
        for q in 0..opts.queues {
            let s = open_socket(ifname, idx, q, opts, zero_copy)?;
            // Once the first socket has settled the mode, the others follow it.
            zero_copy = if s.zero_copy {
                ZeroCopy::Required
            } else {
                ZeroCopy::Off
            };
            sockets.push(s);
        }
        {
            let mut xsks: XskMap<_> =
                XskMap::try_from(ebpf.map_mut(MAP_XSKS).ok_or_else(|| AfXdpError::Map {
                    map: MAP_XSKS,
                    detail: "not in the object".into(),
                })?)
                .map_err(|e| AfXdpError::Map {
                    map: MAP_XSKS,
                    detail: e.to_string(),
                })?;
            for (q, s) in sockets.iter().enumerate() {
                xsks.set(q as u32, s.fd, 0).map_err(|e| AfXdpError::Map {
                    map: MAP_XSKS,
                    detail: format!("queue {q}: {e}"),
                })?;
            }
        }
        let mode = attach(&mut ebpf, ifname, idx, opts.attach)?;
        let info = AfXdpInfo {
            mode,
            zero_copy: sockets.first().is_some_and(|s| s.zero_copy),
            frame_size: opts.frame_size,
            ifindex: idx,
        };
        let program = Arc::new(Program { _ebpf: ebpf });
        let mut ctls = Vec::with_capacity(sockets.len());
        for s in &sockets {
            ctls.push(control_socket().map_err(|source| AfXdpError::Socket {
                ifname: ifname.to_string(),
                queue: s.queue,
                what: "creating the control socket for link state",
                source,
                hint: "check the limit on open files (`ulimit -n`)",
            })?);
        }
        let mut ifreq_name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (d, s) in ifreq_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        let queues = sockets
            .into_iter()
            .zip(ctls)
            .map(|(mut s, ctl)| {
                let rings = s.rings.take();
                let q = AfXdpQueue {
                    rings,
                    area: s.area,
                    area_len: s.area_len,
                    frame_size: opts.frame_size,
                    frames: opts.frames,
                    free: std::mem::take(&mut s.free),
                    outstanding: 0,
                    ctl,
                    stats: AfXdpStats::default(),
                    info,
                    ifname: ifname.to_string(),
                    ifreq_name,
                    queue: s.queue,
                    _program: Arc::clone(&program),
                };
                // The queue owns the mapping now.
                s.area_len = 0;
                q
            })
            .collect::<Vec<_>>();
        let mut queues = queues;
        for q in &mut queues {
            q.refill();
        }
        Ok((queues, info))
    }
}

/// A bound socket before it becomes a queue; unmaps its area when dropped.
struct OpenSocket {
    rings: Option<Rings>,
    area: NonNull<u8>,
    /// 0 once the area has been handed on.
    area_len: usize,
    free: Vec<u64>,
    fd: libc::c_int,
    zero_copy: bool,
    queue: usize,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.rings = None;
        if self.area_len != 0 {
            // SAFETY: `area`/`area_len` is the mapping made by `map_area` for
            // this socket, unmapped once; no buffer of it was handed out.
            unsafe {
                libc::munmap(self.area.as_ptr().cast(), self.area_len);
            }
        }
    }
}

/// Creates, configures and binds the socket of queue `q` with its own UMEM.
fn open_socket(
    ifname: &str,
    ifindex: u32,
    q: usize,
    opts: &AfXdpOptions,
    zero_copy: ZeroCopy,
) -> Result<OpenSocket, AfXdpError> {
    let sock_err = |what: &'static str, hint: &'static str| {
        move |e: xdpilone::Errno| {
            let source = os_error(e);
            if is_permission(&source) {
                AfXdpError::PermissionDenied {
                    ifname: ifname.to_string(),
                    what: "creating an AF_XDP socket",
                    detail: source.to_string(),
                }
            } else {
                AfXdpError::Socket {
                    ifname: ifname.to_string(),
                    queue: q,
                    what,
                    source,
                    hint,
                }
            }
        }
    };
    let area_len = opts.frames as usize * opts.frame_size as usize;
    let area = map_area(area_len).map_err(|source| AfXdpError::Socket {
        ifname: ifname.to_string(),
        queue: q,
        what: "allocating the UMEM",
        source,
        hint: "use fewer `frames`",
    })?;
    let mut s = OpenSocket {
        rings: None,
        area,
        area_len,
        free: Vec::with_capacity(opts.frames as usize),
        fd: -1,
        zero_copy: false,
        queue: q,
    };
    s.free.extend(
        (0..u64::from(opts.frames))
            .rev()
            .map(|i| i * u64::from(opts.frame_size)),
    );

    let attempts: &[u16] = match zero_copy {
        ZeroCopy::Auto => &[SocketConfig::XDP_BIND_ZEROCOPY, SocketConfig::XDP_BIND_COPY],
        ZeroCopy::Required => &[SocketConfig::XDP_BIND_ZEROCOPY],
        ZeroCopy::Off => &[SocketConfig::XDP_BIND_COPY],
    };
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex).map_err(sock_err(
        "reading the interface",
        "check that the interface exists",
    ))?;
    info.set_queue(q as u32);
    let ring = NonZeroU32::new(opts.ring_size);
    for (i, &mode) in attempts.iter().enumerate() {
        let config = UmemConfig {
            fill_size: opts.ring_size,
            complete_size: opts.ring_size,
            frame_size: opts.frame_size,
            headroom: 0,
            flags: 0,
        };
        let slice = ptr::slice_from_raw_parts_mut(area.as_ptr(), area_len);
        // SAFETY: `slice` is our page-aligned mapping of `area_len` bytes,
        // which stays mapped as long as the UMEM (and every frame handed
        // out) lives: `OpenSocket` and `AfXdpQueue` drop the rings first.
        let umem =
            unsafe { Umem::new(config, NonNull::new_unchecked(slice)) }.map_err(sock_err(
                "registering the UMEM",
                "check the memlock limit (`ulimit -l`) or run as root",
            ))?;
        let sock = Socket::with_shared(&info, &umem).map_err(sock_err(
            "creating the AF_XDP socket",
            "the kernel needs AF_XDP (CONFIG_XDP_SOCKETS)",
        ))?;
        let fq = umem.fq_cq(&sock).map_err(sock_err(
            "creating the fill and completion rings",
            "use a smaller `ring_size`",
        ))?;
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: ring,
                    tx_size: ring,
                    bind_flags: mode | SocketConfig::XDP_BIND_NEED_WAKEUP,
                },
            )
            .map_err(sock_err(
                "creating the receive and transmit rings",
                "use a smaller `ring_size`",
            ))?;
        let rx = user.map_rx().map_err(sock_err(
            "mapping the receive ring",
            "use a smaller `ring_size`",
        ))?;
        let tx = user.map_tx().map_err(sock_err(
            "mapping the transmit ring",
            "use a smaller `ring_size`",
        ))?;
        match umem.bind(&user) {
            Ok(()) => {
                s.fd = user.as_raw_fd();
                // Copy mode: each frame in flight on transmit is a socket
                // buffer charged to the socket's send buffer until the
                // device frees it; the default (`wmem_default`, 208 KiB)
                // holds a few hundred, far fewer than the transmit ring, and
                // sends fail with EAGAIN beyond that. Room for the ring.
                if !socket_zero_copy(s.fd) {
                    // Copy mode sends at most the socket's budget per kick
                    // (32 by default); Linux ≥ 6.17 lets it be raised, to
                    // the ring's size at most. Older kernels: 32, more kicks.
                    let _ = set_tx_budget(s.fd, opts.ring_size.min(TX_BUDGET));
                    let want = opts.ring_size as usize * (opts.frame_size as usize + 1024);
                    if let Err(e) = set_send_buffer(s.fd, want) {
                        tracing::warn!(
                            ifname,
                            queue = q,
                            "cannot raise the AF_XDP socket's send buffer to {want} bytes ({e}); transmit may stall under load"
                        );
                    }
                }
                s.zero_copy = socket_zero_copy(s.fd);
                s.rings = Some(Rings {
                    fq,
                    rx,
                    tx,
                    _umem: umem,
                });
                return Ok(s);
            }
            Err(e) => {
                let source = os_error(e);
                let last = i + 1 == attempts.len();
                if !last && mode == SocketConfig::XDP_BIND_ZEROCOPY {
                    tracing::debug!(
                        ifname,
                        queue = q,
                        "zero-copy refused ({source}); trying copy mode"
                    );
                    continue;
                }
                if mode == SocketConfig::XDP_BIND_ZEROCOPY {
                    return Err(AfXdpError::NoZeroCopy {
                        ifname: ifname.to_string(),
                        queue: q,
                        source,
                    });
                }
                return Err(match source.raw_os_error() {
                    Some(libc::EBUSY) => AfXdpError::Socket {
                        ifname: ifname.to_string(),
                        queue: q,
                        what: "binding the AF_XDP socket",
                        source,
                        hint: "another AF_XDP socket is bound to this queue: stop the program that holds it",
                    },
                    Some(libc::EINVAL) => AfXdpError::Socket {
                        ifname: ifname.to_string(),
                        queue: q,
                        what: "binding the AF_XDP socket",
                        source,
                        hint: "the interface may have fewer receive queues than configured (`ethtool -l`): configure fewer queues (forwarder.cores)",
                    },
                    _ if is_permission(&source) => AfXdpError::PermissionDenied {
                        ifname: ifname.to_string(),
                        what: "binding an AF_XDP socket",
                        detail: source.to_string(),
                    },
                    _ => AfXdpError::Socket {
                        ifname: ifname.to_string(),
                        queue: q,
                        what: "binding the AF_XDP socket",
                        source,
                        hint: "check that the interface is up and the kernel has AF_XDP",
                    },
                });
            }
        }
    }
    unreachable!("at least one bind attempt is made")
}

impl AfXdpQueue {
    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// This queue's number (the receive queue its socket is bound to).
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// How the port was opened.
    pub fn info(&self) -> AfXdpInfo {
        self.info
    }

    /// The largest frame this queue receives or transmits.
    pub fn max_frame(&self) -> usize {
        (self.frame_size - XDP_HEADROOM) as usize - TAILROOM
    }

    /// Free frames (not in a ring, not out in a buffer).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Whether the interface is administratively up and has carrier
    /// (`IFF_UP` and `IFF_RUNNING`). One system call: poll it on a timer,
    /// not per burst.
    pub fn link_up(&self) -> bool {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = self.ifreq_name;
        // SAFETY: SIOCGIFFLAGS reads ifr_name and writes the flags into
        // `ifr`, a valid, writable ifreq; `ctl` is our open socket, in the
        // port's namespace.
        if unsafe { libc::ioctl(self.ctl.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) } != 0 {
            return false;
        }
        // SAFETY: after SIOCGIFFLAGS succeeded `ifru_flags` is the active member.
        let flags = libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags });
        flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
    }

    /// This queue's counters, with the kernel's socket statistics.
    pub fn stats(&mut self) -> AfXdpStats {
        if let Some(r) = &self.rings {
            if let Ok(k) = r.fq.statistics_v2() {
                self.stats.kernel_rx_dropped = k.rx_dropped;
                self.stats.kernel_rx_ring_full = k.rx_ring_full;
                self.stats.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs;
                self.stats.kernel_rx_invalid_descs = k.rx_invalid_descs;
                self.stats.kernel_tx_invalid_descs = k.tx_invalid_descs;
                self.stats.kernel_tx_ring_empty = k.tx_ring_empty_descs;
            }
        }
        self.stats
    }

    /// Whether `b` is a frame of this queue's UMEM.
    #[inline]
    fn owns(&self, b: &XdpBuf) -> bool {
        b.chunk.as_ptr() as usize == self.area.as_ptr() as usize + b.addr as usize
            && b.addr < self.area_len as u64
            && b.size == self.frame_size
    }

    /// A buffer for the free frame at UMEM offset `addr`.
    #[inline]
    fn buf_at(&self, addr: u64, start: u32, end: u32) -> XdpBuf {
        debug_assert!(addr + u64::from(self.frame_size) <= self.area_len as u64);
        XdpBuf {
            // SAFETY: `addr` is a frame offset inside the mapping (checked by
            // the callers), so the pointer is inside it and not null.
            chunk: unsafe { NonNull::new_unchecked(self.area.as_ptr().add(addr as usize)) },
            addr,
            start,
            end,
            size: self.frame_size,
        }
    }

    /// Whether the kernel has to be kicked to send what waits in the
    /// transmit ring: always in copy mode (the kernel sends only in
    /// `sendto`, whatever the flag says), else when it asks.
    #[inline]
    fn tx_needs_kick(&self) -> bool {
        self.rings
            .as_ref()
            .is_some_and(|r| r.tx.pending() != 0 && (!self.info.zero_copy || r.tx.needs_wakeup()))
    }

    /// Kicks transmit (`sendto`) up to `max` times while descriptors wait;
    /// stops early when the kernel cannot take more now. In copy mode a kick
    /// sends up to the socket's transmit budget (32 frames unless raised
    /// with `XDP_MAX_TX_SKB_BUDGET`, see `open_socket`) and says `EAGAIN`
    /// when more wait.
    #[inline]
    fn kick_tx(&mut self, max: u32) {
        let mut kicks = 0;
        while kicks < max && self.tx_needs_kick() {
            let Some(r) = &self.rings else { return };
            let before = r.tx.pending();
            kicks += 1;
            self.stats.tx_wakeups += 1;
            // SAFETY: sendto with no buffer and no address on the queue's
            // own bound AF_XDP socket (the descriptor stays owned by
            // `r.tx`); MSG_DONTWAIT keeps it from blocking.
            let rc = unsafe {
                libc::sendto(
                    r.tx.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EBUSY) => self.stats.tx_kick_dropped += 1,
                // A batch went and more wait: kick again.
                Some(libc::EAGAIN) if r.tx.pending() < before => {}
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    self.stats.tx_kick_again += 1;
                    return;
                }
                _ => {
                    self.stats.tx_kick_errors += 1;
                    return;
                }
            }
        }
    }

    /// Takes transmitted frames back from the completion ring.
    #[inline]
    fn reap(&mut self) {
        let Some(r) = &mut self.rings else { return };
        let mask = !(u64::from(self.frame_size) - 1);
        let mut c = r.fq.complete(self.frames);
        while let Some(a) = c.read() {
            debug_assert!(self.free.len() < self.free.capacity());
            self.free.push(a & mask);
        }
        c.release();
    }

    /// Gives free frames to the fill ring, keeping `MAX_BURST` for `alloc`.
    #[inline]
    fn refill(&mut self) {
        let Some(r) = &mut self.rings else { return };
        let spare = self.free.len().saturating_sub(MAX_BURST) as u32;
        if spare == 0 {
            return;
        }
        // Twice, as in `tx_burst`: the first reservation may be short of
        // the room there is (xdpilone's cached view of the consumer).
        let mut spare = spare;
        for _ in 0..2 {
            let mut w = r.fq.fill(spare);
            let cap = w.capacity();
            for _ in 0..cap {
                let Some(a) = self.free.pop() else { break };
                w.insert_once(a);
            }
            w.commit();
            spare = spare.saturating_sub(cap);
            if cap == 0 || spare == 0 {
                break;
            }
        }
    }
}

impl PortQueue for AfXdpQueue {
    type Buf = XdpBuf;

    fn rx_burst(&mut self, out: &mut Burst<XdpBuf>, max: usize) -> usize {
        self.reap();
        self.refill();
        let want = max.min(out.remaining_capacity()) as u32;
        let fs = u64::from(self.frame_size);
        let area_len = self.area_len as u64;
        // Copy mode sends at most a batch per kick: kick again while
        // descriptors wait.
        self.kick_tx(1);
        let Some(r) = &mut self.rings else { return 0 };
        if want == 0 {
            return 0;
        }
        let mut n = 0u32;
        let mut invalid = 0u64;
        {
            let mut rx = r.rx.receive(want);
            while let Some(d) = rx.read() {
                let chunk = d.addr & !(fs - 1);
                let start = d.addr - chunk;
                if chunk + fs > area_len || start + u64::from(d.len) > fs {
                    invalid += 1;
                    continue;
                }
                let b = XdpBuf {
                    // SAFETY: `chunk + fs <= area_len` (checked above), so the
                    // frame lies inside the mapping; the pointer is not null.
                    chunk: unsafe {
                        NonNull::new_unchecked(self.area.as_ptr().add(chunk as usize))
                    },
                    addr: chunk,
                    start: start as u32,
                    end: start as u32 + d.len,
                    size: self.frame_size,
                };
                out.push(b);
                n += 1;
            }
            rx.release();
        }
        if n == 0 && r.fq.needs_wakeup() {
            r.fq.wake();
            self.stats.fill_wakeups += 1;
        }
        self.stats.rx_invalid += invalid;
        self.stats.rx_frames += u64::from(n);
        self.outstanding += n;
        n as usize
    }

    fn tx_burst(&mut self, frames: &mut Burst<XdpBuf>) {
        if frames.is_empty() {
            return;
        }
        self.reap();
        let pending = std::mem::take(frames);
        let mut sent = 0u32;
        let mut foreign = 0u64;
        {
            let Some(r) = &mut self.rings else {
                *frames = pending;
                return;
            };
            let mut left = pending.into_iter();
            // xdpilone reserves from its cached view of the kernel's
            // consumer and refreshes that view only when it shows no room
            // at all, so a first reservation can come back short while the
            // ring has room: once it is used up, a second one sees the
            // ring as it is. (A short burst dropped as "ring full" was the
            // bulk of `drop_tx_full` at low rates.)
            for _ in 0..2 {
                if left.len() == 0 {
                    break;
                }
                let mut w = r.tx.transmit(left.len() as u32);
                let cap = w.capacity();
                let mut placed = 0;
                while placed < cap {
                    let Some(b) = left.next() else { break };
                    let mine = b.chunk.as_ptr() as usize
                        == self.area.as_ptr() as usize + b.addr as usize
                        && b.addr < self.area_len as u64
                        && b.size == self.frame_size;
                    if mine {
                        w.insert_once(XdpDesc {
                            addr: b.tx_addr(),
                            len: b.len() as u32,
                            options: 0,
                        });
                        placed += 1;
                    } else {
                        foreign += 1;
                        frames.push(b);
                    }
                }
                w.commit();
                sent += placed;
                if cap == 0 {
                    break;
                }
            }
            // The ring is full: the caller frees and counts these.
            frames.extend(left);
        }
        self.outstanding -= sent;
        self.stats.tx_frames += u64::from(sent);
        self.stats.foreign_buffers += foreign;
        if sent != 0 {
            // Copy mode sends at most the socket's budget per kick: kick
            // until the burst (and whatever waited before it) is out, a few
            // times at most.
            self.kick_tx(MAX_KICKS);
        }
    }

    /// AF_XDP has no path back to the kernel: takes nothing (the worker
    /// frees the frames and counts them as `drop_host_full`).
    fn to_host(&mut self, frames: &mut Burst<XdpBuf>) {
        self.stats.host_unsupported += frames.len() as u64;
    }

    #[inline]
    fn free(&mut self, buf: XdpBuf) {
        if self.owns(&buf) {
            self.free.push(buf.addr);
            self.outstanding -= 1;
        } else {
            self.stats.foreign_buffers += 1;
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<XdpBuf> {
        if self.free.is_empty() {
            self.reap();
        }
        let addr = self.free.pop()?;
        self.outstanding += 1;
        Some(self.buf_at(
            addr,
            XDP_HEADROOM.max(HEADROOM as u32),
            XDP_HEADROOM.max(HEADROOM as u32),
        ))
    }

    #[inline]
    fn link_up(&self) -> bool {
        AfXdpQueue::link_up(self)
    }

    fn port_counters(&mut self, f: &mut dyn FnMut(&'static str, u64)) {
        for (name, v) in self.stats().named() {
            f(name, v);
        }
    }
}

impl Drop for AfXdpQueue {
    fn drop(&mut self) {
        // Close the socket (and its rings, and the UMEM registration) first.
        self.rings = None;
        if self.outstanding == 0 {
            // SAFETY: `area`/`area_len` is the mapping made for this queue,
            // unmapped once; no `XdpBuf` of it exists (`outstanding == 0`)
            // and the kernel no longer uses it (the socket is closed).
            unsafe {
                libc::munmap(self.area.as_ptr().cast(), self.area_len);
            }
        } else {
            tracing::warn!(
                ifname = %self.ifname,
                queue = self.queue,
                frames = self.outstanding,
                "AF_XDP queue closed with frames still in use; its UMEM stays mapped"
            );
        }
        // `_program` drops after this; the last queue's detaches the program.
    }
}

/// The program handle is shared by queues on different threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Program>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn options_are_checked() {
        assert!(validate(&AfXdpOptions::default()).is_ok());
        for o in [
            AfXdpOptions {
                frame_size: 3000,
                ..Default::default()
            },
            AfXdpOptions {
                ring_size: 1000,
                ..Default::default()
            },
            AfXdpOptions {
                queues: 0,
                ..Default::default()
            },
            AfXdpOptions {
                frames: 10,
                ..Default::default()
            },
        ] {
            assert!(matches!(validate(&o), Err(AfXdpError::Options(_))), "{o:?}");
        }
    }

    #[test]
    fn frame_sizes_follow_the_mtu() {
        assert_eq!(AfXdpOptions::frame_size_for_mtu(1500), Some(2048));
        assert_eq!(AfXdpOptions::frame_size_for_mtu(1710), Some(2048));
        assert_eq!(AfXdpOptions::frame_size_for_mtu(1711), Some(4096));
        assert_eq!(AfXdpOptions::frame_size_for_mtu(9000), None);
        let o = AfXdpOptions::default();
        assert_eq!(o.max_frame(), 2048 - 256 - 64);
        assert!(o.max_frame() >= 1518);
    }

    #[test]
    fn address_flags_are_merged() {
        let a = XdpAddresses {
            vipas: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
            tunnel_sources: vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            next_hops: vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)),
            ],
        };
        let m = a.entries();
        assert_eq!(m.len(), 4);
        let k = |o: [u8; 4]| Ipv4Addr::from(o).to_ipv6_mapped().octets();
        assert_eq!(m[&k([10, 0, 0, 100])], ADDR_VIPA);
        assert_eq!(m[&k([10, 0, 0, 1])], ADDR_TUNNEL_SRC | ADDR_NEXT_HOP);
        assert_eq!(m[&k([10, 0, 0, 11])], ADDR_NEXT_HOP);
        assert_eq!(m[&Ipv6Addr::LOCALHOST.octets()], ADDR_TUNNEL_SRC);
    }

    #[test]
    fn the_program_is_embedded() {
        assert!(PROGRAM.starts_with(b"\x7fELF"));
        let ebpf = aya_obj_check(PROGRAM);
        assert!(ebpf, "the object has no `{PROGRAM_NAME}` program or maps");
    }

    /// Whether the object names our program and maps (a byte search: parsing
    /// it needs the kernel).
    fn aya_obj_check(obj: &[u8]) -> bool {
        let has = |s: &str| obj.windows(s.len()).any(|w| w == s.as_bytes());
        has(PROGRAM_NAME) && has(MAP_ADDRS) && has(MAP_XSKS)
    }

    #[test]
    fn missing_interface_is_named() {
        let e = ifindex("vipa-nope0").unwrap_err();
        assert!(matches!(e, AfXdpError::InterfaceMissing { .. }));
        assert!(e.to_string().contains("vipa-nope0"));
        assert!(matches!(
            ifindex("much-too-long-interface-name"),
            Err(AfXdpError::InvalidName { .. })
        ));
    }

    #[test]
    fn buffers_grow_and_shrink_within_their_frame() {
        let mut mem = vec![0u8; 2048];
        let mut b = XdpBuf {
            chunk: NonNull::new(mem.as_mut_ptr()).unwrap(),
            addr: 0,
            start: 256,
            end: 256 + 60,
            size: 2048,
        };
        assert_eq!(b.len(), 60);
        assert!(b.prepend(24));
        assert_eq!(b.headroom(), 232);
        assert!(!b.prepend(233));
        assert!(b.append(2048 - 316));
        assert!(!b.append(1));
        b.truncate(10);
        assert_eq!(b.len(), 10);
        assert!(b.adj(10));
        assert!(b.is_empty());
        assert!(b.data_mut().is_empty());
    }
}
