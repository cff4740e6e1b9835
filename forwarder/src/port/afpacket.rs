//! AF_PACKET port: a live interface through the kernel's packet sockets.
//!
//! This is the "runs anywhere" backend: any Linux interface (veth, bridge
//! port, a NIC without an AF_XDP or DPDK driver), no special driver, root (or
//! `CAP_NET_RAW`) only. AF_XDP and DPDK are the fast paths; this one **copies
//! every frame twice**: once out of the receive ring into a pooled
//! [`HeapBuf`] (which has the head- and tailroom the pipeline needs to
//! encapsulate in place) and once from the [`HeapBuf`] into a transmit-ring
//! slot.
//!
//! # Rings
//!
//! Each queue is one `AF_PACKET`/`SOCK_RAW` socket bound to the interface with
//! `ETH_P_ALL`, set to `TPACKET_V3`, with two memory-mapped rings in one
//! mapping (receive first, transmit after it):
//! - **Receive**: `TPACKET_V3` blocks (`PACKET_RX_RING`). The kernel fills a
//!   block with many frames and hands it over when it is full or when the
//!   block timeout ([`AfPacketOptions::rx_block_timeout_ms`], default 1 ms)
//!   retires it, so at low rates a frame can wait up to that long; at high
//!   rates blocks fill long before. A block goes back to the kernel as soon as
//!   its last frame has been copied out. Default: 32 blocks of 128 KiB
//!   (4 MiB) per queue; frames the kernel drops because every block is still
//!   ours are counted in [`AfPacketStats::rx_ring_drops`].
//! - **Transmit**: `TPACKET_V3` too (`PACKET_TX_RING`, Linux ≥ 4.11), which
//!   for transmit is frame-based like V2: fixed slots of
//!   [`AfPacketOptions::frame_size`] bytes. `tx_burst` fills slots and kicks
//!   the kernel once per burst with `sendto(fd, NULL, 0, MSG_DONTWAIT)`;
//!   frames that find no free slot stay in the burst (the worker counts them
//!   as `drop_tx_full`). `PACKET_QDISC_BYPASS` is set when the kernel has it,
//!   and `PACKET_LOSS` so that a frame the kernel refuses (longer than the
//!   MTU) is skipped instead of stalling the ring.
//!
//! # Queues
//!
//! With more than one queue the sockets join one `PACKET_FANOUT_HASH` group
//! (id derived from the ifindex unless [`AfPacketOptions::fanout_group`] is
//! set), so the kernel spreads the interface's traffic over them by a
//! symmetric flow hash and each frame reaches exactly one queue. Each socket
//! drops everything (a one-instruction BPF filter) until it has joined the
//! group, so no frame is received twice during [`AfPacketPort::open`].
//!
//! # The host sees everything
//!
//! AF_PACKET *taps*, it does not steal: the host's network stack receives
//! every frame this port receives, whatever the data plane does with it. So
//! [`PortQueue::to_host`] only drops our copy (the host already has the
//! frame), and frames the data plane answers or forwards are *also* processed
//! by the host kernel. A deployment must make that kernel ignore them: the
//! forwarder's interfaces live in a network namespace (or a host) whose
//! kernel does not own the VIPAs, does not forward, and does not answer ARP
//! for them — as in the lab of the design.
//!
//! Frames the host itself sends on the interface are seen by the tap too
//! (direction `PACKET_OUTGOING`); they are skipped and counted in
//! [`AfPacketStats::rx_outgoing`]. Our own transmissions never come back
//! (qdisc bypass skips the taps; without it the kernel does not loop a
//! socket's frames to its own fanout group).
//!
//! # VLAN tags
//!
//! The kernel strips an 802.1Q tag on receive and reports it beside the
//! frame; the tag is written back into the frame, so the pipeline sees the
//! frame as it was on the wire.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Burst, PortQueue, MAX_BURST};
use crate::buf::{HeapBuf, PacketBuffer};

/// Bytes from the start of a `tpacket3_hdr` to its `sockaddr_ll` (receive)
/// and to the frame data (transmit): `TPACKET_ALIGN(sizeof(tpacket3_hdr))`.
const HDR_ALIGNED: usize = (size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1)
    & !(libc::TPACKET_ALIGNMENT - 1);

/// Configuration of an AF_PACKET port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Number of queues (sockets in one fanout group); one per worker.
    pub queues: usize,
    /// Bytes per receive block; a multiple of the page size (default 128 KiB:
    /// about 80 full-size or 1000 minimum-size frames).
    pub rx_block_size: usize,
    /// Receive blocks per queue (default 32: 4 MiB of receive ring per
    /// queue). Since the kernel hands over a block at the latest after the
    /// block timeout, however few frames it holds, the count also bounds how
    /// long a worker may stall at low rates before frames are dropped
    /// (count × timeout): prefer many blocks to big ones.
    pub rx_block_count: usize,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full (default 1, the smallest): the added latency at low rates.
    pub rx_block_timeout_ms: u32,
    /// Bytes per transmit slot, header included (default 2048, a multiple of
    /// 16). The largest frame this port receives or transmits is this minus
    /// 48; received frames above it are dropped and counted.
    pub frame_size: usize,
    /// Transmit slots per queue (default 1024: 2 MiB of transmit ring);
    /// rounded up to whole 64 KiB transmit blocks (32 slots of 2048 bytes).
    pub tx_frame_count: usize,
    /// Put the interface in promiscuous mode (`PACKET_MR_PROMISC`) while the
    /// port is open (default off; veth needs none).
    pub promiscuous: bool,
    /// Ask for `PACKET_QDISC_BYPASS` (default on): transmit straight to the
    /// driver, skipping the interface's queueing discipline.
    pub qdisc_bypass: bool,
    /// Fanout group id; `None` derives it from the ifindex. Set it when
    /// another program already uses that id on this interface.
    pub fanout_group: Option<u16>,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            queues: 1,
            rx_block_size: 128 << 10,
            rx_block_count: 32,
            rx_block_timeout_ms: 1,
            frame_size: 2048,
            tx_frame_count: 1024,
            promiscuous: false,
            qdisc_bypass: true,
            fanout_group: None,
        }
    }
}

/// Errors of the AF_PACKET port: what failed, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    #[error("interface `{ifname}` does not exist in this network namespace; list the interfaces with `ip link` (or `ip netns exec NS ip link`)")]
    InterfaceMissing { ifname: String },
    #[error("`{ifname}` is not a valid interface name (1 to 15 bytes, no NUL)")]
    InvalidName { ifname: String },
    #[error("opening a packet socket on `{ifname}` was refused ({source}): AF_PACKET needs CAP_NET_RAW; run as root or grant the capability (`setcap cap_net_raw+ep BINARY`)")]
    PermissionDenied { ifname: String, source: io::Error },
    #[error("setting up the {ring} ring of queue {queue} on `{ifname}` failed ({source}); try smaller rings (`rx_block_size` × `rx_block_count`, `tx_frame_count`), check free memory and the memlock limit (`ulimit -l`), and that the kernel has TPACKET_V3 transmit (Linux ≥ 4.11)")]
    Ring {
        ifname: String,
        queue: usize,
        ring: &'static str,
        source: io::Error,
    },
    #[error("joining fanout group {group} on `{ifname}` failed ({source}); another program (or another vipa-forwarder) may use this group id on this interface: stop it or set a different `fanout_group`")]
    Fanout {
        ifname: String,
        group: u16,
        source: io::Error,
    },
    #[error("{what} on `{ifname}` failed: {source}")]
    Socket {
        ifname: String,
        what: &'static str,
        source: io::Error,
    },
    #[error("invalid AF_PACKET options: {0}")]
    Options(String),
}

/// Counters of one queue, beside the worker's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames handed to the worker.
    pub rx_frames: u64,
    /// Frames the host sent on the interface, seen by the tap and skipped.
    pub rx_outgoing: u64,
    /// Received frames longer than the port's largest frame (or truncated by
    /// the ring), dropped. GRO/GSO frames land here: turn offloads off.
    pub rx_oversize: u64,
    /// Frames the kernel dropped because the receive ring was full
    /// (`PACKET_STATISTICS`, updated by [`AfPacketPort::stats`]).
    pub rx_ring_drops: u64,
    /// Frames placed in the transmit ring.
    pub tx_frames: u64,
    /// Frames too long for a transmit slot, left unsent.
    pub tx_oversize: u64,
    /// Transmit kicks (`sendto`) that failed; the frames stay queued and the
    /// next kick sends them.
    pub tx_kick_errors: u64,
}

/// One queue of an AF_PACKET port: a packet socket with its two rings.
pub struct AfPacketPort {
    /// The mapping of both rings: receive first, transmit after it.
    ring: *mut u8,
    ring_len: usize,
    rx_block_size: usize,
    rx_block_count: usize,
    /// The block being read (or to be read next).
    rx_block: usize,
    /// Frames of the current block not yet read; the block is ours while
    /// `rx_open`.
    rx_open: bool,
    rx_left: u32,
    /// Offset of the next frame header in the current block.
    rx_off: usize,
    tx_base: *mut u8,
    tx_block_size: usize,
    tx_frames_per_block: usize,
    tx_frame_size: usize,
    tx_frame_count: usize,
    /// Next transmit slot to fill.
    tx_head: usize,
    /// A kick failed; retry before the next receive.
    tx_kick_pending: bool,
    /// Largest frame received or transmitted.
    max_frame: usize,
    pool: Vec<HeapBuf>,
    stats: AfPacketStats,
    ifname: String,
    ifreq_name: [libc::c_char; libc::IFNAMSIZ],
    ifindex: i32,
    queue: usize,
    fanout_group: Option<u16>,
    mac: [u8; 6],
    qdisc_bypass: bool,
    /// Closed after the rings are unmapped (fields drop after `Drop::drop`).
    fd: OwnedFd,
}

// SAFETY: the port exclusively owns its socket and its ring mapping; the raw
// pointers point into that mapping and are never shared with another value,
// so moving the port to another thread moves sole access with it. It is not
// `Sync`: `&AfPacketPort` gives no access to ring memory except `link_up`
// and accessors that only read immutable fields or issue ioctls.
unsafe impl Send for AfPacketPort {}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("fanout_group", &self.fanout_group)
            .finish_non_exhaustive()
    }
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// The ifindex of `ifname` in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<i32, AfPacketError> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(AfPacketError::InvalidName {
            ifname: ifname.to_string(),
        });
    }
    let c = CString::new(ifname).map_err(|_| AfPacketError::InvalidName {
        ifname: ifname.to_string(),
    })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(AfPacketError::InterfaceMissing {
            ifname: ifname.to_string(),
        });
    }
    Ok(idx as i32)
}

/// The fanout group id used for `ifindex` when none is configured.
pub fn default_fanout_group(ifindex: i32) -> u16 {
    (ifindex & 0xffff) as u16
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a valid, initialised `T` for the duration of the call
    // and the length passed is exactly its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_os_error())
    }
}

fn validate(opts: &AfPacketOptions) -> Result<(), AfPacketError> {
    let page = page_size();
    let bad = |m: String| Err(AfPacketError::Options(m));
    if opts.queues == 0 || opts.queues > 1024 {
        return bad(format!("queues = {}: use 1 to 1024", opts.queues));
    }
    if opts.frame_size < HDR_ALIGNED + 64
        || !opts.frame_size.is_multiple_of(libc::TPACKET_ALIGNMENT)
        || opts.frame_size > 1 << 16
    {
        return bad(format!(
            "frame_size = {}: use a multiple of 16 between {} and 65536 (2048 suits an MTU of 1500)",
            opts.frame_size,
            HDR_ALIGNED + 64
        ));
    }
    if !opts.rx_block_size.is_multiple_of(page) || opts.rx_block_size < opts.frame_size {
        return bad(format!(
            "rx_block_size = {}: use a multiple of the page size ({page}) of at least frame_size ({})",
            opts.rx_block_size, opts.frame_size
        ));
    }
    if opts.rx_block_count == 0 || opts.tx_frame_count == 0 {
        return bad("rx_block_count and tx_frame_count must be at least 1".into());
    }
    if opts.rx_block_size.saturating_mul(opts.rx_block_count) > 1 << 31
        || opts.frame_size.saturating_mul(opts.tx_frame_count) > 1 << 31
    {
        return bad("a ring larger than 2 GiB: use fewer or smaller blocks".into());
    }
    Ok(())
}

impl AfPacketPort {
    /// Opens `opts.queues` queues on `ifname` (in the calling thread's network
    /// namespace); with more than one they share its traffic through one
    /// fanout group.
    pub fn open(ifname: &str, opts: &AfPacketOptions) -> Result<Vec<AfPacketPort>, AfPacketError> {
        validate(opts)?;
        let idx = ifindex(ifname)?;
        let group =
            (opts.queues > 1).then(|| opts.fanout_group.unwrap_or(default_fanout_group(idx)));
        (0..opts.queues)
            .map(|q| Self::open_queue(ifname, q, group, opts))
            .collect()
    }

    /// Opens one queue on `ifname`; with `fanout_group` it joins that
    /// `PACKET_FANOUT_HASH` group (all queues of a port must use the same).
    /// `opts.queues` is not used here.
    pub fn open_queue(
        ifname: &str,
        queue: usize,
        fanout_group: Option<u16>,
        opts: &AfPacketOptions,
    ) -> Result<AfPacketPort, AfPacketError> {
        validate(opts)?;
        let idx = ifindex(ifname)?;
        let name = ifname.to_string();
        let sock_err = |what: &'static str| {
            let source = last_os_error();
            AfPacketError::Socket {
                ifname: name.clone(),
                what,
                source,
            }
        };

        // Protocol 0: the socket receives nothing until it is bound below,
        // neither from other interfaces nor before the rings exist.
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            let source = last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => AfPacketError::PermissionDenied {
                    ifname: name,
                    source,
                },
                _ => AfPacketError::Socket {
                    ifname: name,
                    what: "creating the packet socket",
                    source,
                },
            });
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut ifreq_name = [0 as libc::c_char; libc::IFNAMSIZ];
        for (d, s) in ifreq_name.iter_mut().zip(ifname.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = ifreq_name;
        // SAFETY: SIOCGIFHWADDR reads ifr_name and writes the hardware
        // address into `ifr`, which is a valid, writable ifreq.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut ifr) } != 0 {
            return Err(sock_err("reading the MAC address (SIOCGIFHWADDR)"));
        }
        let mut mac = [0u8; 6];
        // SAFETY: after SIOCGIFHWADDR succeeded, `ifru_hwaddr` is the active
        // union member.
        let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }

        // Drop everything until the socket is in its fanout group.
        let mut drop_all = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: drop_all.as_mut_ptr(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .map_err(|_| sock_err("attaching the start-up filter (SO_ATTACH_FILTER)"))?;

        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &v3).map_err(|source| {
            AfPacketError::Ring {
                ifname: name.clone(),
                queue,
                ring: "TPACKET_V3 version",
                source,
            }
        })?;
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_LOSS, &one)
            .map_err(|_| sock_err("setting PACKET_LOSS"))?;
        let qdisc_bypass = opts.qdisc_bypass
            && setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one).is_ok();

        let rx_frames_per_block = opts.rx_block_size / opts.frame_size;
        let rx_req = libc::tpacket_req3 {
            tp_block_size: opts.rx_block_size as u32,
            tp_block_nr: opts.rx_block_count as u32,
            tp_frame_size: opts.frame_size as u32,
            tp_frame_nr: (rx_frames_per_block * opts.rx_block_count) as u32,
            tp_retire_blk_tov: opts.rx_block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req).map_err(|source| {
            AfPacketError::Ring {
                ifname: name.clone(),
                queue,
                ring: "receive",
                source,
            }
        })?;

        // Transmit blocks of 64 KiB (or one slot when slots are larger).
        let page = page_size();
        let tx_block_size = (64 * 1024).max(opts.frame_size).div_ceil(page) * page;
        let tx_frames_per_block = tx_block_size / opts.frame_size;
        let tx_block_count = opts.tx_frame_count.div_ceil(tx_frames_per_block);
        let tx_frame_count = tx_block_count * tx_frames_per_block;
        let tx_req = libc::tpacket_req3 {
            tp_block_size: tx_block_size as u32,
            tp_block_nr: tx_block_count as u32,
            tp_frame_size: opts.frame_size as u32,
            tp_frame_nr: tx_frame_count as u32,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req).map_err(|source| {
            AfPacketError::Ring {
                ifname: name.clone(),
                queue,
                ring: "transmit",
                source,
            }
        })?;

        let rx_len = opts.rx_block_size * opts.rx_block_count;
        let ring_len = rx_len + tx_block_size * tx_block_count;
        // SAFETY: mapping a packet socket's rings: a fresh shared mapping of
        // exactly the rings' size at an address the kernel chooses; the
        // result is checked against MAP_FAILED.
        let ring = unsafe {
            libc::mmap(
                ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(AfPacketError::Ring {
                ifname: name,
                queue,
                ring: "shared (mmap)",
                source: last_os_error(),
            });
        }
        let ring = ring.cast::<u8>();

        let max_frame = opts.frame_size - HDR_ALIGNED;
        let port = AfPacketPort {
            ring,
            ring_len,
            rx_block_size: opts.rx_block_size,
            rx_block_count: opts.rx_block_count,
            rx_block: 0,
            rx_open: false,
            rx_left: 0,
            rx_off: 0,
            // SAFETY: `rx_len < ring_len`: the transmit ring starts inside the mapping.
            tx_base: unsafe { ring.add(rx_len) },
            tx_block_size,
            tx_frames_per_block,
            tx_frame_size: opts.frame_size,
            tx_frame_count,
            tx_head: 0,
            tx_kick_pending: false,
            max_frame,
            pool: (0..2 * MAX_BURST)
                .map(|_| HeapBuf::with_capacity(max_frame))
                .collect(),
            stats: AfPacketStats::default(),
            ifname: name.clone(),
            ifreq_name,
            ifindex: idx,
            queue,
            fanout_group,
            mac,
            qdisc_bypass,
            fd,
        };
        // From here on, `port`'s Drop unmaps and closes on every error path.

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = idx;
        // SAFETY: `sll` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                port.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let source = last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => {
                    AfPacketError::InterfaceMissing { ifname: name }
                }
                _ => AfPacketError::Socket {
                    ifname: name,
                    what: "binding the packet socket to the interface",
                    source,
                },
            });
        }

        if opts.promiscuous {
            // SAFETY: packet_mreq is plain data; all-zero is a valid value.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = idx;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            setsockopt(
                &port.fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
            .map_err(|_| sock_err("enabling promiscuous mode (PACKET_ADD_MEMBERSHIP)"))?;
        }

        if let Some(group) = fanout_group {
            let arg: libc::c_int =
                ((libc::PACKET_FANOUT_HASH as libc::c_int) << 16) | group as libc::c_int;
            setsockopt(&port.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(
                |source| AfPacketError::Fanout {
                    ifname: name.clone(),
                    group,
                    source,
                },
            )?;
        }

        let zero: libc::c_int = 0;
        setsockopt(&port.fd, libc::SOL_SOCKET, libc::SO_DETACH_FILTER, &zero)
            .map_err(|_| sock_err("removing the start-up filter (SO_DETACH_FILTER)"))?;
        Ok(port)
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index (in the namespace the port was opened in).
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// This queue's number.
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// The fanout group this queue joined, if any.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout_group
    }

    /// The interface's MAC address, read when the port was opened.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether `PACKET_QDISC_BYPASS` is in effect.
    pub fn qdisc_bypass(&self) -> bool {
        self.qdisc_bypass
    }

    /// The largest frame this port receives or transmits.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether the interface is administratively up and has carrier
    /// (`IFF_UP` and `IFF_RUNNING`, from `SIOCGIFFLAGS` on the port's own
    /// socket, so it is right in whatever namespace the port lives in). One
    /// system call: poll it on a timer, not per burst.
    pub fn link_up(&self) -> bool {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = self.ifreq_name;
        // SAFETY: SIOCGIFFLAGS reads ifr_name and writes the flags into
        // `ifr`, a valid, writable ifreq.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) } != 0 {
            return false;
        }
        // SAFETY: after SIOCGIFFLAGS succeeded `ifru_flags` is the active member.
        let flags = libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags });
        flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
    }

    /// This queue's counters; also collects the kernel's ring-full drops.
    pub fn stats(&mut self) -> AfPacketStats {
        // SAFETY: tpacket_stats_v3 is plain data; all-zero is a valid value.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid and writable; the kernel writes at
        // most `len` bytes into `st` and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            // The kernel resets its counters on every read: accumulate.
            self.stats.rx_ring_drops += u64::from(st.tp_drops);
        }
        self.stats
    }

    /// Kicks the kernel to send the queued transmit slots.
    pub fn flush(&mut self) {
        // SAFETY: sendto with no buffer and no address on our own bound
        // socket; MSG_DONTWAIT keeps it from waiting for completion.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null(),
                0,
            )
        };
        if rc < 0 {
            self.stats.tx_kick_errors += 1;
            self.tx_kick_pending = true;
        } else {
            self.tx_kick_pending = false;
        }
    }

    /// The descriptor of receive block `i`.
    #[inline]
    fn rx_block_ptr(&self, i: usize) -> *mut libc::tpacket_block_desc {
        debug_assert!(i < self.rx_block_count);
        // SAFETY: `i < rx_block_count`, so the block lies inside the receive ring.
        unsafe { self.ring.add(i * self.rx_block_size).cast() }
    }

    /// The status word of receive block `i`, shared with the kernel.
    #[inline]
    fn rx_block_status(&self, i: usize) -> &AtomicU32 {
        let bd = self.rx_block_ptr(i);
        // SAFETY: `bd` points to a block descriptor inside our mapping, which
        // lives as long as `self`; `block_status` is a naturally aligned u32
        // (the block is page-aligned, the field at offset 8) that the kernel
        // and we only ever access atomically.
        unsafe { AtomicU32::from_ptr(ptr::addr_of_mut!((*bd).hdr.bh1.block_status)) }
    }

    /// Gives the current receive block back to the kernel and moves on.
    #[inline]
    fn rx_release(&mut self) {
        // Release: our reads of the block happen before the kernel refills it.
        self.rx_block_status(self.rx_block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx_open = false;
        self.rx_left = 0;
        self.rx_block = (self.rx_block + 1) % self.rx_block_count;
    }

    /// A pooled buffer for a frame of up to `max_frame` bytes, emptied.
    #[inline]
    fn take_buf(&mut self) -> HeapBuf {
        match self.pool.pop() {
            Some(mut b) => {
                b.set_frame(&[]);
                b
            }
            None => HeapBuf::with_capacity(self.max_frame),
        }
    }

    /// Copies the frame whose header is at `off` in the current block into a
    /// buffer (`None` when it is skipped, counted); also returns the offset
    /// from this frame to the next (0 for the last, or a header out of bounds).
    #[inline]
    fn rx_copy(&mut self, block: *const u8, off: usize) -> (Option<HeapBuf>, usize) {
        if off + HDR_ALIGNED + size_of::<libc::sockaddr_ll>() > self.rx_block_size {
            self.stats.rx_oversize += 1;
            return (None, 0);
        }
        // SAFETY: the header lies inside the block (checked above) and the
        // block is ours (status USER observed with Acquire), so the kernel
        // does not write it; read unaligned, assuming nothing of the offsets.
        let h: libc::tpacket3_hdr = unsafe { ptr::read_unaligned(block.add(off).cast()) };
        // SAFETY: the sockaddr_ll follows the header inside the block (checked above).
        let sll: libc::sockaddr_ll =
            unsafe { ptr::read_unaligned(block.add(off + HDR_ALIGNED).cast()) };
        let next = h.tp_next_offset as usize;
        if sll.sll_pkttype == libc::PACKET_OUTGOING {
            self.stats.rx_outgoing += 1;
            return (None, next);
        }
        let mac = off + usize::from(h.tp_mac);
        let snap = h.tp_snaplen as usize;
        if snap < h.tp_len as usize || mac + snap > self.rx_block_size {
            self.stats.rx_oversize += 1;
            return (None, next);
        }
        let vlan = h.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && snap >= 12;
        let total = snap + if vlan { 4 } else { 0 };
        if total > self.max_frame {
            self.stats.rx_oversize += 1;
            return (None, next);
        }
        // SAFETY: `mac..mac + snap` lies inside the block (checked above) and
        // the kernel does not write a block it has handed to us.
        let data = unsafe { std::slice::from_raw_parts(block.add(mac), snap) };
        let mut b = self.take_buf();
        if !b.append(total) || b.len() != total {
            // A foreign buffer given to `free`, too small: replace it.
            b = HeapBuf::with_capacity(self.max_frame);
            b.append(total);
        }
        let d = b.data_mut();
        if vlan {
            let tpid =
                if h.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && h.hv1.tp_vlan_tpid != 0 {
                    h.hv1.tp_vlan_tpid
                } else {
                    0x8100
                };
            d[..12].copy_from_slice(&data[..12]);
            d[12..14].copy_from_slice(&tpid.to_be_bytes());
            d[14..16].copy_from_slice(&(h.hv1.tp_vlan_tci as u16).to_be_bytes());
            d[16..].copy_from_slice(&data[12..]);
        } else {
            d.copy_from_slice(data);
        }
        (Some(b), next)
    }

    /// Places one frame in the next transmit slot; false when the ring is full
    /// or the frame does not fit a slot.
    #[inline]
    fn tx_one(&mut self, frame: &[u8]) -> bool {
        if frame.len() > self.max_frame {
            self.stats.tx_oversize += 1;
            return false;
        }
        let i = self.tx_head;
        // SAFETY: `i < tx_frame_count`, so the slot lies inside the transmit ring.
        let slot = unsafe {
            self.tx_base.add(
                (i / self.tx_frames_per_block) * self.tx_block_size
                    + (i % self.tx_frames_per_block) * self.tx_frame_size,
            )
        };
        let hdr = slot.cast::<libc::tpacket3_hdr>();
        // SAFETY: the slot is inside our mapping, which outlives `self`;
        // `tp_status` is a 4-aligned u32 (slots are 16-aligned) that the kernel
        // and we only access atomically.
        let status = unsafe { AtomicU32::from_ptr(ptr::addr_of_mut!((*hdr).tp_status)) };
        // Acquire: the kernel is done with the slot before we write it.
        let s = status.load(Ordering::Acquire);
        if s & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
            return false;
        }
        // SAFETY: the slot is ours (neither requested nor being sent); the
        // frame fits behind the header (`len <= frame_size - 48`); header
        // fields other than `tp_status` are written with plain stores before
        // the Release below publishes them.
        unsafe {
            ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(HDR_ALIGNED), frame.len());
            ptr::addr_of_mut!((*hdr).tp_len).write(frame.len() as u32);
            ptr::addr_of_mut!((*hdr).tp_snaplen).write(frame.len() as u32);
            ptr::addr_of_mut!((*hdr).tp_next_offset).write(0);
        }
        // Release: the frame and its length are visible before the request.
        status.store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx_head = (i + 1) % self.tx_frame_count;
        true
    }
}

impl PortQueue for AfPacketPort {
    type Buf = HeapBuf;

    fn rx_burst(&mut self, out: &mut Burst<HeapBuf>, max: usize) -> usize {
        if self.tx_kick_pending {
            self.flush();
        }
        let want = max.min(out.remaining_capacity());
        let mut n = 0;
        while n < want {
            if !self.rx_open {
                // Acquire: the block's frames are visible once we see USER.
                let s = self.rx_block_status(self.rx_block).load(Ordering::Acquire);
                if s & libc::TP_STATUS_USER == 0 {
                    break;
                }
                let bd = self.rx_block_ptr(self.rx_block);
                // SAFETY: the block is ours (USER seen with Acquire); the
                // descriptor is at its start, inside the mapping.
                let (num, first) = unsafe {
                    let h = ptr::addr_of!((*bd).hdr.bh1);
                    (
                        ptr::addr_of!((*h).num_pkts).read(),
                        ptr::addr_of!((*h).offset_to_first_pkt).read(),
                    )
                };
                self.rx_open = true;
                self.rx_left = num;
                self.rx_off = first as usize;
                if num == 0 {
                    self.rx_release();
                }
                continue;
            }
            let block = self.rx_block_ptr(self.rx_block).cast::<u8>();
            let (got, next) = self.rx_copy(block, self.rx_off);
            self.rx_left -= 1;
            self.rx_off += next;
            if self.rx_left == 0 || next == 0 {
                self.rx_release();
            }
            if let Some(b) = got {
                self.stats.rx_frames += 1;
                out.push(b);
                n += 1;
            }
        }
        n
    }

    fn tx_burst(&mut self, frames: &mut Burst<HeapBuf>) {
        if frames.is_empty() {
            return;
        }
        let pending = std::mem::take(frames);
        let mut sent = 0u64;
        let mut full = false;
        for b in pending {
            if !full && self.tx_one(b.data()) {
                sent += 1;
                self.pool.push(b);
            } else {
                // Once the ring is full every later frame stays too, in order.
                full |= b.len() <= self.max_frame;
                frames.push(b);
            }
        }
        if sent != 0 {
            self.stats.tx_frames += sent;
            self.flush();
        }
    }

    /// The host already has every frame (AF_PACKET taps, it does not steal):
    /// taking a frame "to the host" is dropping our copy.
    fn to_host(&mut self, frames: &mut Burst<HeapBuf>) {
        self.pool.extend(frames.drain(..));
    }

    #[inline]
    fn free(&mut self, buf: HeapBuf) {
        self.pool.push(buf);
    }

    #[inline]
    fn alloc(&mut self) -> Option<HeapBuf> {
        Some(self.take_buf())
    }

    #[inline]
    fn link_up(&self) -> bool {
        AfPacketPort::link_up(self)
    }

    fn port_counters(&mut self, f: &mut dyn FnMut(&'static str, u64)) {
        let s = self.stats();
        for (name, v) in [
            ("afpacket_rx_frames", s.rx_frames),
            ("afpacket_rx_outgoing", s.rx_outgoing),
            ("afpacket_rx_oversize", s.rx_oversize),
            ("afpacket_rx_ring_drops", s.rx_ring_drops),
            ("afpacket_tx_frames", s.tx_frames),
            ("afpacket_tx_oversize", s.tx_oversize),
            ("afpacket_tx_kick_errors", s.tx_kick_errors),
        ] {
            f(name, v);
        }
    }
}

impl Drop for AfPacketPort {
    fn drop(&mut self) {
        // SAFETY: `ring`/`ring_len` is exactly the mapping made in
        // `open_queue`, unmapped once here; nothing borrows it past `self`.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
        // `fd` closes when the fields drop, after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_match_the_kernel() {
        assert_eq!(HDR_ALIGNED, 48);
        assert_eq!(libc::TPACKET3_HDRLEN, 48 + size_of::<libc::sockaddr_ll>());
    }

    #[test]
    fn options_are_checked() {
        assert!(validate(&AfPacketOptions::default()).is_ok());
        let o = AfPacketOptions {
            frame_size: 2000 + 1,
            ..Default::default()
        };
        assert!(matches!(validate(&o), Err(AfPacketError::Options(_))));
        let o = AfPacketOptions {
            rx_block_size: 12345,
            ..Default::default()
        };
        assert!(matches!(validate(&o), Err(AfPacketError::Options(_))));
        let o = AfPacketOptions {
            queues: 0,
            ..Default::default()
        };
        assert!(matches!(validate(&o), Err(AfPacketError::Options(_))));
    }

    #[test]
    fn permission_denied_says_what_to_do() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("skipped: runs as root, so the socket is not refused");
            return;
        }
        match AfPacketPort::open("lo", &AfPacketOptions::default()) {
            Err(e @ AfPacketError::PermissionDenied { .. }) => {
                let m = e.to_string();
                assert!(m.contains("CAP_NET_RAW") && m.contains("root"), "{m}");
            }
            Ok(_) => eprintln!("skipped: this user has CAP_NET_RAW"),
            Err(e) => panic!("expected permission denied, got: {e}"),
        }
    }

    #[test]
    fn missing_interface_is_named() {
        let e = ifindex("vipa-nope0").unwrap_err();
        assert!(matches!(e, AfPacketError::InterfaceMissing { .. }));
        assert!(e.to_string().contains("vipa-nope0"));
        assert!(e.to_string().contains("ip link"));
        assert!(matches!(
            ifindex("much-too-long-interface-name"),
            Err(AfPacketError::InvalidName { .. })
        ));
    }
}
