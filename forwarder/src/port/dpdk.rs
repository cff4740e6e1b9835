//! The `dpdk` port backend: the system DPDK 22.11 LTS through
//! [`vipa_dpdk_sys`] (cargo feature `dpdk`).
//!
//! # Pieces
//!
//! - [`Eal`] — the Environment Abstraction Layer, initialised once per
//!   process with EAL arguments from the configuration (`-l`, `-a
//!   0000:3b:02.0`, `--vdev=net_af_packet0,iface=eth0`, `--no-huge`, ...).
//!   It is never torn down: DPDK cannot initialise twice in one process, and
//!   mbufs may outlive any handle, so the EAL lives until the process exits.
//! - [`Mbuf`] — an owned `rte_mbuf` implementing [`PacketBuffer`]: the frame
//!   is the first segment's data (`buf_addr + data_off`, `data_len` bytes);
//!   growing and shrinking go through `rte_pktmbuf_prepend` / `_adj` /
//!   `_append` / `_trim`; dropping it frees it to its pool.
//! - [`DpdkPort::open`] — finds a device by name, configures one receive and
//!   one transmit queue per worker, starts it, and returns the queues
//!   ([`DpdkQueue`], one [`PortQueue`] per worker).
//!
//! # Decisions
//!
//! - **RSS.** With more than one queue, receive-side scaling hashes on the
//!   IPv4/IPv6 addresses and TCP/UDP ports (the subset of `RTE_ETH_RSS_IP |
//!   RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP` that `dev_info.flow_type_rss_offloads`
//!   offers), so every packet of a flow reaches the same worker and its flow
//!   table. A device without RSS (`net_ring`, some `net_af_packet` set-ups) is
//!   configured with **one** queue whatever was asked: [`DpdkPort::open`]
//!   returns fewer queues than requested, and [`DpdkPortInfo::rss_hf`] is 0.
//! - **Mbuf pools.** One pool per NUMA socket, shared by every port on that
//!   socket and created by the first [`DpdkPort::open`] there; it holds
//!   [`DpdkOptions::pool_mbufs`] mbufs (0: twice what the first port's rings
//!   and bursts need, at least 8191), `RTE_MBUF_DEFAULT_BUF_SIZE` data room
//!   (more when the MTU needs it), `RTE_PKTMBUF_HEADROOM` (128 bytes, the
//!   pipeline's [`crate::buf::HEADROOM`]) in front for the GRE headers. A port
//!   whose rings would not fit in what is left of its socket's pool is
//!   refused with an error that says which option to raise.
//! - **Checksums.** IPv4 header checksum offload when the device offers it,
//!   software otherwise. A device whose `tx_offload_capa` has
//!   `RTE_ETH_TX_OFFLOAD_IPV4_CKSUM` is configured with it
//!   ([`DpdkPortInfo::ipv4_cksum_offload`], in the start-up log), and its
//!   queues say so ([`PortQueue::ipv4_checksum_offload`]). The worker
//!   transmits a frame on the queue it came from, so it tells its pipeline
//!   once per queue, and encapsulation on such a port asks the [`Mbuf`]
//!   ([`PacketBuffer::request_ipv4_checksum`]): it sets `RTE_MBUF_F_TX_IPV4
//!   | RTE_MBUF_F_TX_IP_CKSUM`, `l2_len` (14, or 18 with an 802.1Q tag) and
//!   `l3_len` (20), and the outer header is written with checksum 0 and no
//!   software sum. On any other port the pipeline computes the checksum (a
//!   20-byte header: a handful of adds), as every other backend does. No
//!   frame carries its port for this (the mbuf's `port` is not read: not
//!   every driver sets it, and stamping it on receive cost ≈ 7 ns per frame,
//!   see **Receive**). `rte_eth_tx_prepare` is not called: for this offload
//!   all it would do is zero the checksum field, which encapsulation does
//!   already. No device available to the tests offers the offload
//!   (`net_ring`, `net_null` and `net_af_packet` do not), so the offload
//!   path is covered by tests with a buffer that accepts it and by
//!   [`PacketBuffer::request_ipv4_checksum`] on real mbufs, not by a device
//!   computing checksums.
//! - **Exception path.** There is no KNI / virtio-user path to the host yet:
//!   [`PortQueue::to_host`] takes nothing, so the worker frees those frames
//!   and counts them as `drop_host_full`. Put management traffic on another
//!   interface (or a port the kernel keeps) when the data-plane ports run
//!   DPDK.
//! - **Segments.** Receive scatter is not enabled, so a frame is one mbuf. A
//!   multi-segment mbuf that a driver hands over anyway shows no bytes
//!   ([`PacketBuffer::is_segmented`]), and the pipeline drops it as
//!   `drop_multi_segment`.
//! - **Receive.** [`DpdkQueue`]'s receive hands the driver's mbufs to the
//!   worker without reading or writing them. A pass over a fresh burst's
//!   mbufs (checking `nb_segs`, stamping `port`) cost ≈ 7 ns per frame on
//!   `net_null` — more than half of vipa's own work per packet — although
//!   the same fields read a moment later by the pipeline, which reads that
//!   cache line anyway, cost nothing measurable (README, *Benchmarks*).
//! - **Threads.** A [`DpdkQueue`] is `Send`: one worker thread owns it, as
//!   DPDK requires (one thread per queue). Worker threads that are not EAL
//!   lcores should call [`Eal::register_thread`] first, or mempool caches are
//!   bypassed (correct, slower).
//! - **Lifetime.** A port stays started while any of its queues lives; the
//!   last queue dropped stops it (`rte_eth_dev_stop`), after which it can be
//!   opened again.
//!
//! # Bare metal (SR-IOV virtual functions)
//!
//! Hugepages (`echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`),
//! the VF bound to `vfio-pci` (`dpdk-devbind.py --bind=vfio-pci 0000:3b:02.0`),
//! the EAL allowed to use it (`-a 0000:3b:02.0`), and `device =
//! "0000:3b:02.0"`. The VF must accept frames for the VIPA MACs it answers
//! for: `ip link set PF vf N trust on spoofchk off`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vipa_dpdk_sys as sys;

use super::{Burst, PortQueue, MAX_BURST};
use crate::buf::PacketBuffer;

/// What can go wrong setting DPDK up. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    /// `Eal::init` was called before in this process.
    #[error(
        "the DPDK EAL was already initialised (or tried) in this process; it can be initialised \
         only once: reuse the first Eal"
    )]
    AlreadyInitialized,
    /// An argument or device name holds a NUL byte.
    #[error("DPDK argument {0:?} contains a NUL byte")]
    NulByte(String),
    /// `rte_eal_init` failed.
    #[error(
        "DPDK EAL initialisation failed: {msg} (rte_errno {code}); check the EAL arguments \
         {args:?}: hugepages (or --no-huge), the cores (-l), the devices (-a / --vdev), and run \
         as root (vfio-pci needs it)"
    )]
    Eal {
        /// `rte_errno`.
        code: i32,
        /// `rte_strerror(code)`.
        msg: String,
        /// The arguments given.
        args: Vec<String>,
    },
    /// `rte_thread_register` failed.
    #[error(
        "registering a worker thread with the DPDK EAL failed: {msg} (rte_errno {code}); every \
         lcore id is taken: give the EAL fewer cores (-l) or more lcores (--lcores)"
    )]
    Thread {
        /// `rte_errno`.
        code: i32,
        /// Its text.
        msg: String,
    },
    /// No DPDK port has that name.
    #[error(
        "DPDK device {device:?} not found ({available} ports available): a PCI device must be \
         bound to vfio-pci (dpdk-devbind.py --bind=vfio-pci {device}) and allowed in the EAL \
         arguments (-a {device}); a virtual device must be created by the EAL arguments \
         (--vdev=net_af_packet0,iface=eth0) and named as there (net_af_packet0)"
    )]
    DeviceNotFound {
        /// The name asked for.
        device: String,
        /// `rte_eth_dev_count_avail()`.
        available: u16,
    },
    /// The device is open already (its queues are alive).
    #[error("DPDK device {0:?} is already open in this process")]
    AlreadyOpen(String),
    /// A configuration step of a device failed.
    #[error("DPDK device {device:?}: {step} failed: {msg} (error {code})")]
    Device {
        /// The device.
        device: String,
        /// What was being done.
        step: &'static str,
        /// The (positive) errno.
        code: i32,
        /// Its text.
        msg: String,
    },
    /// The mbuf pool of the device's socket cannot serve its rings.
    #[error(
        "DPDK device {device:?}: the mbuf pool of NUMA socket {socket} has {free} mbufs left \
         but the port's rings and bursts need {need}: raise pool_mbufs (now {capacity})"
    )]
    PoolTooSmall {
        /// The device.
        device: String,
        /// The socket.
        socket: i32,
        /// Mbufs not yet promised to a port.
        free: u32,
        /// Mbufs this port needs.
        need: u32,
        /// The pool's size.
        capacity: u32,
    },
    /// Creating the mbuf pool failed.
    #[error(
        "creating the mbuf pool of NUMA socket {socket} ({mbufs} mbufs of {buf_size} bytes) \
         failed: {msg} (rte_errno {code}); give the EAL more memory (-m, or more hugepages) or \
         lower pool_mbufs"
    )]
    Pool {
        /// The socket.
        socket: i32,
        /// Mbufs asked for.
        mbufs: u32,
        /// Bytes per mbuf buffer.
        buf_size: u32,
        /// `rte_errno`.
        code: i32,
        /// Its text.
        msg: String,
    },
    /// An option out of range.
    #[error("DPDK device {device:?}: {what}")]
    Option {
        /// The device.
        device: String,
        /// What is wrong.
        what: String,
    },
}

/// `rte_strerror` of a (positive) errno as an owned string.
fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that
    // stays valid at least until the next call on this thread; it is copied
    // at once.
    unsafe {
        let p = sys::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
fn errno() -> i32 {
    // SAFETY: the shim only reads the thread-local rte_errno.
    unsafe { sys::vipa_rte_errno() }
}

/// EAL state: 0 never tried, 1 being initialised or failed, 2 ready.
static EAL_STATE: AtomicU8 = AtomicU8::new(0);

/// Proof that the DPDK EAL is initialised in this process (it stays so
/// until the process exits).
#[derive(Clone, Copy, Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises the EAL with `args` (EAL arguments, without a program
    /// name: `["-l", "1", "--no-huge", "--vdev=net_null0"]`). Once per
    /// process: a second call fails with [`DpdkError::AlreadyInitialized`]
    /// (use [`Eal::get`]). The calling thread becomes the main lcore.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::from(c"vipa"));
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| DpdkError::NulByte(a.clone()))?);
        }
        if EAL_STATE
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::AlreadyInitialized);
        }
        // The EAL may keep pointers into argv (getopt permutes it, some
        // drivers keep their devargs): argv and its strings live for the
        // rest of the process. Once per process, a few bytes.
        let strings: &'static [CString] = Vec::leak(owned);
        let argv: &'static mut [*mut c_char] = Vec::leak(
            strings
                .iter()
                .map(|s| s.as_ptr().cast_mut())
                .chain(std::iter::once(ptr::null_mut()))
                .collect(),
        );
        let argc = c_int::try_from(strings.len()).unwrap_or(c_int::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings (plus a NULL
        // terminator) that live forever; EAL_STATE guarantees this runs once.
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let code = errno();
            return Err(DpdkError::Eal {
                code,
                msg: strerror(code),
                args: args.to_vec(),
            });
        }
        EAL_STATE.store(2, Ordering::Release);
        Ok(Eal { _private: () })
    }

    /// The EAL, when [`Eal::init`] succeeded earlier in this process.
    pub fn get() -> Option<Eal> {
        (EAL_STATE.load(Ordering::Acquire) == 2).then_some(Eal { _private: () })
    }

    /// Makes the calling thread an EAL lcore (`rte_thread_register`), so
    /// that its mbuf allocations and frees use a per-lcore mempool cache;
    /// returns its lcore id. Threads started by the EAL (and the thread
    /// that called [`Eal::init`]) are lcores already.
    pub fn register_thread(&self) -> Result<u32, DpdkError> {
        if let Some(id) = self.lcore_id() {
            return Ok(id);
        }
        // SAFETY: the EAL is initialised (self proves it); registering the
        // calling thread has no other precondition.
        let rc = unsafe { sys::rte_thread_register() };
        if rc != 0 {
            let code = errno();
            return Err(DpdkError::Thread {
                code,
                msg: strerror(code),
            });
        }
        Ok(self.lcore_id().unwrap_or(u32::MAX))
    }

    /// The calling thread's lcore id, `None` for a thread unknown to the EAL.
    pub fn lcore_id(&self) -> Option<u32> {
        // SAFETY: reads a thread-local set by the EAL.
        let id = unsafe { sys::rte_lcore_id() };
        (id != u32::MAX).then_some(id)
    }
}

/// An owned `rte_mbuf`: one frame in one segment. Dropping it frees it.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an Mbuf is the only handle to its rte_mbuf; DPDK mbufs may be
// used and freed from any thread (the mempool's default ring is
// multi-producer/multi-consumer).
unsafe impl Send for Mbuf {}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mbuf({} bytes)", self.len())
    }
}

impl Mbuf {
    /// Takes ownership of `m` (`None` when null).
    ///
    /// # Safety
    /// `m` is a valid mbuf that nothing else owns or will free.
    #[inline]
    pub unsafe fn from_raw(m: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(m).map(Mbuf)
    }

    /// Gives up ownership: the caller frees the mbuf (or hands it to DPDK).
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer (still owned by `self`).
    #[inline]
    pub fn as_ptr(&self) -> *mut sys::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf; the shared borrow of self keeps
        // every writer away.
        unsafe { self.0.as_ref() }
    }

    /// Bytes free in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.raw().data_off)
    }

    /// Bytes free behind the frame (in this segment).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let m = self.raw();
        usize::from(m.buf_len).saturating_sub(usize::from(m.data_off) + usize::from(m.data_len))
    }

    /// Number of segments (1 unless a driver chained the frame, which
    /// vipa's port set-up does not ask for: see
    /// [`PacketBuffer::is_segmented`]).
    #[inline]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The DPDK port the frame arrived on (`RTE_MBUF_PORT_INVALID`, 0xFFFF,
    /// for an mbuf allocated here).
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Sets the frame to a copy of `frame` (resets the headroom); false
    /// (and unchanged) when it does not fit.
    pub fn set_frame(&mut self, frame: &[u8]) -> bool {
        let room = usize::from(self.raw().buf_len);
        let Ok(len) = u16::try_from(frame.len()) else {
            return false;
        };
        let start = (sys::RTE_PKTMBUF_HEADROOM as usize).min(room);
        if start + frame.len() > room {
            return false;
        }
        // SAFETY: the mbuf is exclusively ours (&mut self); start + len
        // bytes lie inside its buffer (checked above); a single-segment
        // frame's lengths are data_len = pkt_len.
        unsafe {
            let m = self.0.as_mut();
            m.data_off = start as u16;
            m.data_len = len;
            m.pkt_len = u32::from(len);
        }
        self.data_mut().copy_from_slice(frame);
        true
    }
}

/// The bytes [`Mbuf`]'s `data` shows: the frame of a one-segment mbuf;
/// none of a chained one, which the pipeline then drops and counts
/// ([`PacketBuffer::is_segmented`]). Checked here, where the frame is
/// first read, rather than by the receive: a pass over a fresh burst's
/// mbufs costs more than its loads (≈ 7 ns per frame on `net_null`,
/// README), while this test is one more field of a cache line being read
/// anyway.
#[inline(always)]
fn frame_len(m: &sys::rte_mbuf) -> usize {
    if m.nb_segs == 1 {
        usize::from(m.data_len)
    } else {
        0
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf; it is not used after this.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl PacketBuffer for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len (or less) lies inside
        // the mbuf's buffer (a DPDK invariant of every mbuf); the bytes stay
        // valid and unaliased by writers while self is borrowed.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
                frame_len(m),
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr, m.data_off, frame_len(m));
        // SAFETY: as in data(), and &mut self makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>().add(usize::from(off)), len) }
    }

    /// What `rte_pktmbuf_prepend` does, inline (it is a `static inline` C
    /// function that bindgen can only reach through an out-of-line wrapper,
    /// and encapsulation prepends once per packet).
    #[inline]
    fn prepend(&mut self, n: usize) -> bool {
        // SAFETY: the mbuf is exclusively ours (&mut self).
        let m = unsafe { self.0.as_mut() };
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        if n > m.data_off {
            return false;
        }
        // data_off + data_len <= buf_len (a u16): the sums cannot overflow.
        m.data_off -= n;
        m.data_len += n;
        m.pkt_len += u32::from(n);
        true
    }

    #[inline]
    fn adj(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; rte_pktmbuf_adj returns NULL, changing
        // nothing, when the first segment is shorter than n.
        !unsafe { sys::rte_pktmbuf_adj(self.0.as_ptr(), n) }.is_null()
    }

    #[inline]
    fn append(&mut self, n: usize) -> bool {
        let Ok(n) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: we own the mbuf; rte_pktmbuf_append returns NULL, changing
        // nothing, when the last segment's tailroom is too small.
        !unsafe { sys::rte_pktmbuf_append(self.0.as_ptr(), n) }.is_null()
    }

    #[inline]
    fn truncate(&mut self, len: usize) {
        let cur = self.len();
        if len < cur {
            // cur fits a u16 (data_len), so does the difference.
            let cut = (cur - len) as u16;
            // SAFETY: we own the mbuf; cut is at most the single segment's
            // length, which rte_pktmbuf_trim accepts.
            unsafe { sys::rte_pktmbuf_trim(self.0.as_ptr(), cut) };
        }
    }

    /// Both changes as three field writes on a one-segment frame (every
    /// frame the pipeline encapsulates), with no call: what
    /// `rte_pktmbuf_trim` and `rte_pktmbuf_prepend` do to a single segment.
    #[inline]
    fn reframe(&mut self, front: usize, len: usize) -> bool {
        if self.segments() != 1 {
            self.truncate(len);
            return self.prepend(front);
        }
        // SAFETY: the mbuf is exclusively ours (&mut self).
        let m = unsafe { self.0.as_mut() };
        // One segment: pkt_len = data_len, and the last segment is this one.
        let kept = m.data_len.min(u16::try_from(len).unwrap_or(u16::MAX));
        let grown = match u16::try_from(front) {
            Ok(front) if front <= m.data_off => {
                // data_off + data_len <= buf_len (a u16) before and after.
                m.data_off -= front;
                m.data_len = kept + front;
                true
            }
            _ => {
                m.data_len = kept;
                false
            }
        };
        m.pkt_len = u32::from(m.data_len);
        grown
    }

    /// The common case (one segment, enough headroom, `len` within the
    /// frame) with the mbuf's fields read once; anything else as the
    /// trait's default.
    #[inline]
    fn reframe_head<const N: usize>(&mut self, front: usize, len: usize) -> Option<&mut [u8; N]> {
        // SAFETY: the mbuf is exclusively ours (&mut self).
        let m = unsafe { self.0.as_mut() };
        let (off, data_len) = (usize::from(m.data_off), usize::from(m.data_len));
        if m.nb_segs == 1 && front <= off && len <= data_len && front + len >= N {
            // front + len ≤ data_off + data_len ≤ buf_len, a u16.
            let off = off - front;
            m.data_off = off as u16;
            m.data_len = (front + len) as u16;
            m.pkt_len = (front + len) as u32;
            // SAFETY: buf_addr + off .. + front + len (≥ N bytes) lies
            // inside the mbuf's buffer (the DPDK invariant data_off +
            // data_len ≤ buf_len, kept above); &mut self makes the borrow
            // exclusive.
            return Some(unsafe { &mut *m.buf_addr.cast::<u8>().add(off).cast::<[u8; N]>() });
        }
        if !self.reframe(front, len) {
            return None;
        }
        self.data_mut().first_chunk_mut::<N>()
    }

    #[inline]
    fn len(&self) -> usize {
        frame_len(self.raw())
    }

    #[inline]
    fn request_ipv4_checksum(&mut self, l2_len: usize, l3_len: usize) -> bool {
        use sys::vipa_mbuf_tx_offload_layout as layout;
        if l2_len >= 1 << layout::VIPA_MBUF_L2_LEN_BITS
            || l3_len >= 1 << layout::VIPA_MBUF_L3_LEN_BITS
        {
            return false;
        }
        // SAFETY: the mbuf is exclusively ours (&mut self).
        let m = unsafe { self.0.as_mut() };
        m.ol_flags |= sys::RTE_MBUF_F_TX_IPV4 | sys::RTE_MBUF_F_TX_IP_CKSUM;
        // The whole tx_offload word in one store, as rte_mbuf_tx_offload()
        // builds it: l2_len and l3_len, every other length (L4, TSO, outer
        // headers: unused without their flags) 0.
        m.__bindgen_anon_3.tx_offload = ((l2_len as u64) << layout::VIPA_MBUF_L2_LEN_OFS)
            | ((l3_len as u64) << layout::VIPA_MBUF_L3_LEN_OFS);
        true
    }

    #[inline]
    fn is_segmented(&self) -> bool {
        self.raw().nb_segs != 1
    }
}

/// Settings of [`DpdkPort::open`].
#[derive(Clone, Debug)]
pub struct DpdkOptions {
    /// Receive descriptors per queue (the driver may adjust it).
    pub rx_descriptors: u16,
    /// Transmit descriptors per queue (the driver may adjust it).
    pub tx_descriptors: u16,
    /// Mbufs in the pool of the port's NUMA socket, when this open creates
    /// it (0: twice what this port needs, at least 8191).
    pub pool_mbufs: u32,
    /// Device MTU to set (`None`: leave the driver's default, usually 1500).
    pub mtu: Option<u16>,
    /// Switch promiscuous mode on (frames for the VIPA MACs and for
    /// addresses other than the port's own).
    pub promiscuous: bool,
}

impl Default for DpdkOptions {
    fn default() -> Self {
        DpdkOptions {
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            pool_mbufs: 0,
            mtu: None,
            promiscuous: true,
        }
    }
}

/// What [`DpdkPort::open`] found and set up (for the start-up summary).
#[derive(Clone, Debug)]
pub struct DpdkPortInfo {
    /// The device name given.
    pub device: String,
    /// DPDK port id.
    pub port_id: u16,
    /// The driver (`net_iavf`, `net_af_packet`, ...).
    pub driver: String,
    /// NUMA socket of the device and its pool (-1: unknown, the caller's).
    pub socket: i32,
    /// The port's MAC address.
    pub mac: [u8; 6],
    /// Queues asked for.
    pub requested_queues: u16,
    /// Queues configured (1 when the device has no RSS).
    pub queues: u16,
    /// RSS hash functions enabled (0: no RSS).
    pub rss_hf: u64,
    /// The device offers IPv4 header checksum offload, so the port is
    /// configured with it and the outer IPv4 checksum of encapsulated frames
    /// is left to the device (see the module docs).
    pub ipv4_cksum_offload: bool,
    /// Promiscuous mode is on.
    pub promiscuous: bool,
    /// Receive / transmit descriptors per queue after the driver's adjustment.
    pub descriptors: (u16, u16),
}

/// A registered mbuf pool.
struct Pool {
    socket: i32,
    mp: NonNull<sys::rte_mempool>,
    capacity: u32,
    committed: u32,
}

// SAFETY: rte_mempool pointers may be used from any thread (the pool's
// operations are thread-safe); the registry only hands them out.
unsafe impl Send for Pool {}

/// Pools by socket, and the ports open now.
struct Registry {
    pools: Vec<Pool>,
    open: Vec<u16>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    pools: Vec::new(),
    open: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The mbuf cache per lcore of every pool.
const POOL_CACHE: u32 = 256;

/// A started port; stopped when its last queue is dropped.
struct PortHandle {
    info: DpdkPortInfo,
    /// Mbufs promised to this port in its socket's pool.
    committed: u32,
}

impl Drop for PortHandle {
    fn drop(&mut self) {
        // SAFETY: the port was configured and started by DpdkPort::open and
        // no queue of it is left (this runs when the last one is dropped).
        unsafe { sys::rte_eth_dev_stop(self.info.port_id) };
        let mut reg = registry();
        reg.open.retain(|&p| p != self.info.port_id);
        if let Some(pool) = reg.pools.iter_mut().find(|p| p.socket == self.info.socket) {
            pool.committed = pool.committed.saturating_sub(self.committed);
        }
    }
}

/// Opens DPDK ports.
#[derive(Debug)]
pub struct DpdkPort;

impl DpdkPort {
    /// Opens `device` (a PCI address such as `0000:3b:02.0`, or a virtual
    /// device's name such as `net_af_packet0`) with `queues` receive and
    /// transmit queues (one per worker), RSS across them, started, and
    /// promiscuous when `opts` says so. Returns the queues: fewer than
    /// asked when the device has fewer, and one when it has no RSS.
    pub fn open(
        _eal: &Eal,
        device: &str,
        queues: u16,
        opts: &DpdkOptions,
    ) -> Result<Vec<DpdkQueue>, DpdkError> {
        let dev_err = |step: &'static str, rc: c_int| DpdkError::Device {
            device: device.to_owned(),
            step,
            code: rc.abs(),
            msg: strerror(rc.abs()),
        };
        if queues == 0 {
            return Err(DpdkError::Option {
                device: device.into(),
                what: "queues must be at least 1".into(),
            });
        }
        let name = CString::new(device).map_err(|_| DpdkError::NulByte(device.into()))?;
        let mut port_id = 0u16;
        // SAFETY: name is a valid C string, port_id a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(name.as_ptr(), &mut port_id) };
        if rc != 0 {
            return Err(DpdkError::DeviceNotFound {
                device: device.into(),
                // SAFETY: no precondition beyond an initialised EAL.
                available: unsafe { sys::rte_eth_dev_count_avail() },
            });
        }
        // Hold the registry for the whole set-up: no other open races this one.
        let mut reg = registry();
        if reg.open.contains(&port_id) {
            return Err(DpdkError::AlreadyOpen(device.into()));
        }

        let mut dev_info = sys::rte_eth_dev_info::default();
        // SAFETY: port_id is valid (just looked up), dev_info a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_info_get(port_id, &mut dev_info) };
        if rc != 0 {
            return Err(dev_err("rte_eth_dev_info_get", rc));
        }
        let driver = if dev_info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: the driver name is a static NUL-terminated string of the driver.
            unsafe { CStr::from_ptr(dev_info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: port_id is valid.
        let mut socket = unsafe { sys::rte_eth_dev_socket_id(port_id) };
        if socket < 0 {
            // Unknown (virtual devices): the caller's socket.
            // SAFETY: reads the calling thread's socket; no precondition.
            socket = unsafe { sys::rte_socket_id() } as i32;
        }

        // RSS on addresses and ports when the device has it and there is
        // more than one queue; otherwise one queue.
        // SAFETY: reading constants defined by the C shim.
        let wanted =
            unsafe { sys::vipa_eth_rss_ip | sys::vipa_eth_rss_tcp | sys::vipa_eth_rss_udp };
        let rss_hf = wanted & dev_info.flow_type_rss_offloads;
        let max_q = dev_info.max_rx_queues.min(dev_info.max_tx_queues).max(1);
        let (nq, rss_hf) = if queues > 1 && rss_hf != 0 {
            (queues.min(max_q), rss_hf)
        } else {
            (1, 0)
        };
        let mut conf = sys::rte_eth_conf::default();
        if rss_hf != 0 {
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            conf.rx_adv_conf.rss_conf.rss_key = ptr::null_mut();
        }
        // IPv4 header checksum offload whenever the device has it: the
        // pipeline then leaves the outer header's checksum to the device.
        // SAFETY: reading a constant defined by the C shim.
        let cksum_flag = unsafe { sys::vipa_eth_tx_offload_ipv4_cksum };
        let cksum = dev_info.tx_offload_capa & cksum_flag != 0;
        if cksum {
            conf.txmode.offloads |= cksum_flag;
        }

        // SAFETY: port_id is valid and stopped (not in `open`); conf is a
        // fully initialised configuration.
        let rc = unsafe { sys::rte_eth_dev_configure(port_id, nq, nq, &conf) };
        if rc != 0 {
            return Err(dev_err("rte_eth_dev_configure", rc));
        }
        let (mut rxd, mut txd) = (opts.rx_descriptors, opts.tx_descriptors);
        // SAFETY: port_id is configured; rxd/txd are valid in/out pointers.
        let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &mut rxd, &mut txd) };
        if rc != 0 {
            return Err(dev_err("rte_eth_dev_adjust_nb_rx_tx_desc", rc));
        }
        if let Some(mtu) = opts.mtu {
            // SAFETY: port_id is configured and stopped.
            let rc = unsafe { sys::rte_eth_dev_set_mtu(port_id, mtu) };
            if rc != 0 {
                return Err(dev_err("rte_eth_dev_set_mtu", rc));
            }
        }

        // The socket's pool: created now, or what is left of it.
        let burst = MAX_BURST as u32;
        let need = u32::from(nq) * (u32::from(rxd) + u32::from(txd) + 4 * burst) + POOL_CACHE;
        let frame = u32::from(opts.mtu.unwrap_or(1500)) + 14 + 4 + 4;
        let data_room = (sys::RTE_MBUF_DEFAULT_BUF_SIZE)
            .max(sys::RTE_PKTMBUF_HEADROOM + frame + crate::buf::TAILROOM as u32);
        let data_room = u16::try_from(data_room).map_err(|_| DpdkError::Option {
            device: device.into(),
            what: format!("an MTU of {frame} bytes does not fit one mbuf"),
        })?;
        let pool_index = match reg.pools.iter().position(|p| p.socket == socket) {
            Some(i) => i,
            None => {
                let mbufs = if opts.pool_mbufs > 0 {
                    opts.pool_mbufs
                } else {
                    // 2^k - 1 is the mempool ring's best size.
                    (2 * need).max(8191).next_power_of_two() - 1
                };
                let pname = CString::new(format!("vipa_mbuf_s{socket}"))
                    .map_err(|_| DpdkError::NulByte(device.into()))?;
                // SAFETY: pname is a valid C string; the other arguments are
                // plain values; the EAL is initialised.
                let mp = unsafe {
                    sys::rte_pktmbuf_pool_create(
                        pname.as_ptr(),
                        mbufs,
                        POOL_CACHE,
                        0,
                        data_room,
                        socket,
                    )
                };
                let Some(mp) = NonNull::new(mp) else {
                    let code = errno();
                    return Err(DpdkError::Pool {
                        socket,
                        mbufs,
                        buf_size: u32::from(data_room),
                        code,
                        msg: strerror(code),
                    });
                };
                reg.pools.push(Pool {
                    socket,
                    mp,
                    capacity: mbufs,
                    committed: 0,
                });
                reg.pools.len() - 1
            }
        };
        let pool = &mut reg.pools[pool_index];
        if pool.committed + need > pool.capacity {
            return Err(DpdkError::PoolTooSmall {
                device: device.into(),
                socket,
                free: pool.capacity - pool.committed,
                need,
                capacity: pool.capacity,
            });
        }
        let mp = pool.mp;
        for q in 0..nq {
            // SAFETY: port_id is configured with nq queues; mp is a valid
            // pool; a NULL rxconf/txconf asks for the driver's defaults.
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(
                    port_id,
                    q,
                    rxd,
                    socket as u32,
                    ptr::null(),
                    mp.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(dev_err("rte_eth_rx_queue_setup", rc));
            }
            // SAFETY: as above.
            let rc =
                unsafe { sys::rte_eth_tx_queue_setup(port_id, q, txd, socket as u32, ptr::null()) };
            if rc != 0 {
                return Err(dev_err("rte_eth_tx_queue_setup", rc));
            }
        }
        // SAFETY: every queue is set up.
        let rc = unsafe { sys::rte_eth_dev_start(port_id) };
        if rc != 0 {
            return Err(dev_err("rte_eth_dev_start", rc));
        }
        let promiscuous = opts.promiscuous && {
            // SAFETY: the port is started.
            let rc = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
            rc == 0
        };
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: port_id is valid, mac a valid out-pointer.
        unsafe { sys::rte_eth_macaddr_get(port_id, &mut mac) };
        reg.pools[pool_index].committed += need;
        reg.open.push(port_id);
        drop(reg);

        let handle = Arc::new(PortHandle {
            info: DpdkPortInfo {
                device: device.into(),
                port_id,
                driver,
                socket,
                mac: mac.addr_bytes,
                requested_queues: queues,
                queues: nq,
                rss_hf,
                ipv4_cksum_offload: cksum,
                promiscuous,
                descriptors: (rxd, txd),
            },
            committed: need,
        });
        Ok((0..nq)
            .map(|q| DpdkQueue {
                port_id,
                queue_id: q,
                pool: mp,
                handle: Arc::clone(&handle),
            })
            .collect())
    }
}

/// Counters of a port as the device keeps them (`rte_eth_stats_get`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpdkPortStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Frames the device dropped because no receive descriptor was free.
    pub imissed: u64,
    /// Receive errors.
    pub ierrors: u64,
    /// Transmit errors.
    pub oerrors: u64,
    /// Receive failures for want of an mbuf.
    pub rx_nombuf: u64,
}

/// One receive + transmit queue of a DPDK port, owned by one worker.
pub struct DpdkQueue {
    port_id: u16,
    queue_id: u16,
    pool: NonNull<sys::rte_mempool>,
    handle: Arc<PortHandle>,
}

// SAFETY: DPDK requires that one thread at a time uses a queue, which
// owning the DpdkQueue (&mut for receive and transmit) ensures; the pool
// and the port's control functions used through &self are thread-safe.
unsafe impl Send for DpdkQueue {}

impl std::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DpdkQueue({} port {} queue {})",
            self.handle.info.device, self.port_id, self.queue_id
        )
    }
}

impl DpdkQueue {
    /// What the port is and how it was set up.
    pub fn info(&self) -> &DpdkPortInfo {
        &self.handle.info
    }

    /// This queue's index on its port.
    pub fn queue_id(&self) -> u16 {
        self.queue_id
    }

    /// Whether the link is up (`rte_eth_link_get_nowait`).
    pub fn link_up(&self) -> bool {
        let mut link = sys::rte_eth_link::default();
        // SAFETY: the port is valid and started (self keeps it so); link is
        // a valid out-pointer; the _nowait variant does not block.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.port_id, &mut link) };
        rc == 0 && u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP
    }

    /// An empty mbuf from the port's pool (headroom 128 bytes), `None` when
    /// the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid for the life of the process;
        // rte_pktmbuf_alloc returns a fresh, owned mbuf or NULL.
        unsafe { Mbuf::from_raw(sys::rte_pktmbuf_alloc(self.pool.as_ptr())) }
    }

    /// An mbuf from the port's pool holding a copy of `frame`.
    pub fn alloc_frame(&self, frame: &[u8]) -> Option<Mbuf> {
        let mut m = self.alloc()?;
        m.set_frame(frame).then_some(m)
    }

    /// Mbufs free in the pool (of every port on this socket).
    pub fn pool_available(&self) -> u32 {
        // SAFETY: the pool is valid; the count is a racy snapshot by design.
        unsafe { sys::rte_mempool_avail_count(self.pool.as_ptr()) }
    }

    /// The device's counters (whole port, every queue).
    pub fn port_stats(&self) -> Option<DpdkPortStats> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: the port is valid; s is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_stats_get(self.port_id, &mut s) };
        (rc == 0).then_some(DpdkPortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

impl PortQueue for DpdkQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<Mbuf>, max: usize) -> usize {
        let want = max.min(out.remaining_capacity()).min(MAX_BURST);
        if want == 0 {
            return 0;
        }
        let start = out.len();
        // The driver writes the mbuf pointers straight into the burst's
        // free room (no intermediate array, no copy).
        // SAFETY: Mbuf is repr(transparent) over NonNull<rte_mbuf>, so the
        // room after `start` is room for `want` (≤ remaining capacity)
        // mbuf pointers; the queue is set up and owned by this thread.
        let n = unsafe {
            sys::rte_eth_rx_burst(
                self.port_id,
                self.queue_id,
                out.as_mut_ptr().add(start).cast::<*mut sys::rte_mbuf>(),
                want as u16,
            )
        };
        let n = usize::from(n).min(want);
        // SAFETY: the driver returned n valid, non-null mbufs in those
        // slots and hands them over: the first start + n elements are
        // initialised Mbufs, each owned once.
        unsafe { out.set_len(start + n) };
        // Nothing here reads or writes the mbufs: a chained one is dropped
        // by the pipeline (frame_len), and the checksum offload is asked
        // per queue (ipv4_checksum_offload), not per mbuf's port.
        n
    }

    #[inline]
    fn tx_burst(&mut self, frames: &mut Burst<Mbuf>) {
        if frames.is_empty() {
            return;
        }
        let n = frames.len() as u16;
        // SAFETY: Mbuf is repr(transparent) over a non-null rte_mbuf pointer,
        // so the burst is an array of n valid mbuf pointers; the queue is set
        // up and owned by this thread. The driver takes ownership of the
        // first `sent` mbufs.
        let sent = unsafe {
            sys::rte_eth_tx_burst(
                self.port_id,
                self.queue_id,
                frames.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                n,
            )
        };
        // The driver owns the sent mbufs now: take them out without freeing.
        for m in frames.drain(..usize::from(sent).min(usize::from(n))) {
            let _ = m.into_raw();
        }
    }

    /// No exception path yet (see the module docs): takes nothing, so the
    /// worker frees these frames and counts them as `drop_host_full`.
    #[inline]
    fn to_host(&mut self, _frames: &mut Burst<Mbuf>) {}

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        DpdkQueue::alloc(self)
    }

    #[inline]
    fn link_up(&self) -> bool {
        DpdkQueue::link_up(self)
    }

    #[inline]
    fn ipv4_checksum_offload(&self) -> bool {
        self.handle.info.ipv4_cksum_offload
    }
}
