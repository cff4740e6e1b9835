//! The traffic generator of the live-port benchmarks (`vipa-packet-gen`,
//! `scripts/bench afxdp`): IPv4/UDP frames to one address and port from
//! `flows` source ports in turn (so the forwarder sees that many established
//! flows), for a given time, optionally at a given rate.
//!
//! Two ways to send:
//!
//! - [`Mode::Xdp`] (default): an XDP program (`xdp/pktgen.c`) run by
//!   `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`,
//!   Linux ≥ 5.18), the way `xdp-trafficgen` works: the kernel builds frames
//!   from the template in a page pool, the program sets the flow's source port
//!   and returns `XDP_TX`, and the frames leave through the interface's
//!   `ndo_xdp_xmit`, in batches, with no socket buffer and no copy from user
//!   space. On a veth this needs an XDP program on the peer (the device under
//!   test has one). One system call sends thousands of frames.
//! - [`Mode::AfPacket`]: the forwarder's AF_PACKET port (`TPACKET_V3`
//!   transmit ring, `PACKET_QDISC_BYPASS`, one `sendto` per burst): a socket
//!   buffer and a copy per frame. Slower; kept for comparison and for
//!   devices without `ndo_xdp_xmit`.
//!
//! In both modes the program is attached (native mode) to the interface for
//! the run and counts and drops what comes back (frames to any MAC but the
//! device under test's): [`GenReport::received`], counted where it arrives.
//! What is "sent" is what the generator handed to the kernel; a veth drops
//! what its peer's ring cannot take, so count what arrives at the device under
//! test there (the bench reads the peer's XDP statistics).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;
use vipa_forwarder::port::afpacket::{AfPacketOptions, AfPacketPort};
use vipa_forwarder::port::{Burst, PortQueue, MAX_BURST};
use vipa_proto::build::FrameBuilder;
use vipa_proto::wire::EthernetAddress;

/// The generator's XDP program, compiled from `xdp/pktgen.c` by `build.rs`.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pktgen.o"));

/// `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES` (linux/bpf.h).
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Frames per batch inside the kernel (`TEST_XDP_MAX_BATCH` is 256).
const LIVE_BATCH: u32 = 256;
/// Frames per system call when not rate-limited.
const FRAMES_PER_CALL: u32 = 1 << 15;
/// How long to keep counting what comes back after sending stops.
pub const SETTLE: Duration = Duration::from_millis(100);
/// Offset of the UDP checksum in the template (Ethernet, IPv4 without options).
const UDP_CHECKSUM: usize = 14 + 20 + 6;

/// How frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// An XDP program in `BPF_PROG_TEST_RUN` live-frames mode (`XDP_TX`).
    Xdp,
    /// An AF_PACKET `TPACKET_V3` transmit ring.
    #[value(name = "afpacket")]
    AfPacket,
}

/// What to send.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Interface to send on.
    pub iface: String,
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// Destination UDP port.
    pub port: u16,
    /// Source ports `base_port .. base_port + flows`, used in turn.
    pub flows: u16,
    pub base_port: u16,
    /// UDP payload bytes (18 makes 64-byte frames with the FCS).
    pub payload: usize,
    pub duration: Duration,
    /// Frames per second; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub mode: Mode,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct GenReport {
    pub mode: Mode,
    /// Frames handed to the kernel.
    pub sent: u64,
    pub seconds: f64,
    /// `sent / seconds`, in millions.
    pub mpps: f64,
    /// Frames that came back (to any MAC but the device under test's),
    /// counted by the XDP program on arrival from the start of sending until
    /// [`SETTLE`] after its end.
    pub received: u64,
    /// `received / seconds`, in millions.
    pub received_mpps: f64,
    /// Frame size on the wire, with the FCS.
    pub frame_bytes: usize,
    pub flows: u16,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> anyhow::Result<EthernetAddress> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "{s}: not a MAC address");
    for (d, p) in m.iter_mut().zip(parts) {
        *d = u8::from_str_radix(p, 16).map_err(|_| anyhow!("{s}: not a MAC address"))?;
    }
    Ok(EthernetAddress(m))
}

impl GenOptions {
    /// The frame of flow `i` (checksum zero: the XDP program rewrites the
    /// source port without fixing it, and the other mode does the same).
    pub fn frame(&self, i: u16) -> Vec<u8> {
        let b = FrameBuilder::new(self.src_mac, self.dst_mac);
        let payload = vec![0x5a; self.payload];
        let mut f = b.udp(
            IpAddr::V4(self.src_ip),
            IpAddr::V4(self.dst_ip),
            self.base_port.wrapping_add(i),
            self.port,
            &payload,
        );
        f[UDP_CHECKSUM..UDP_CHECKSUM + 2].fill(0);
        f
    }
}

/// Sends as `opts` says; returns what was sent.
pub fn run(opts: &GenOptions) -> anyhow::Result<GenReport> {
    anyhow::ensure!(opts.flows >= 1, "--flows must be at least 1");
    anyhow::ensure!(
        u32::from(opts.base_port) + u32::from(opts.flows) <= 65536,
        "base port + flows exceeds 65535"
    );
    let attached = Attached::new(opts)?;
    let before = attached.received()?;
    let (sent, seconds) = match opts.mode {
        Mode::Xdp => run_xdp(opts, &attached)?,
        Mode::AfPacket => run_afpacket(opts)?,
    };
    // What was on its way back when sending stopped.
    std::thread::sleep(SETTLE);
    let received = attached.received()? - before;
    Ok(GenReport {
        mode: opts.mode,
        sent,
        seconds,
        mpps: sent as f64 / seconds / 1e6,
        received,
        received_mpps: received as f64 / seconds / 1e6,
        frame_bytes: opts.frame(0).len() + 4,
        flows: opts.flows,
    })
}

/// Paces a sender: how many frames may go now.
struct Pace {
    start: Instant,
    end: Instant,
    rate: Option<f64>,
}

impl Pace {
    fn new(opts: &GenOptions) -> Self {
        let start = Instant::now();
        Pace {
            start,
            end: start + opts.duration,
            rate: opts.rate.filter(|r| *r > 0.0),
        }
    }

    /// Frames that may go now after `sent` (up to `max`); 0 when the time is up.
    fn allowance(&self, sent: u64, max: u64) -> u64 {
        loop {
            let now = Instant::now();
            if now >= self.end {
                return 0;
            }
            let Some(rate) = self.rate else { return max };
            let due = (now.duration_since(self.start).as_secs_f64() * rate) as u64;
            if due > sent {
                return (due - sent).min(max);
            }
            std::hint::spin_loop();
        }
    }
}

/// The test-run part of `union bpf_attr` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` (linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// The generator's XDP program, attached to the interface for a run.
struct Attached {
    ebpf: Ebpf,
    fd: libc::c_int,
    ifindex: u32,
}

impl Attached {
    fn new(opts: &GenOptions) -> anyhow::Result<Self> {
        let ifindex = vipa_forwarder::port::afxdp::ifindex(&opts.iface)?;
        let flows = u32::from(opts.flows);
        let base = u32::from(opts.base_port);
        let dut = opts.dst_mac.0;
        let gen = opts.src_mac.0;
        let mut ebpf = EbpfLoader::new()
            .override_global("FLOWS", &flows, true)
            .override_global("BASE_PORT", &base, true)
            .override_global("DUT_MAC", &dut, true)
            .override_global("GEN_MAC", &gen, true)
            .load(PROGRAM)
            .context("loading the generator's XDP program (needs root or CAP_BPF)")?;
        let prog: &mut Xdp = ebpf
            .program_mut("vipa_pktgen")
            .ok_or_else(|| anyhow!("the object has no program vipa_pktgen"))?
            .try_into()?;
        prog.load().context("loading the generator's XDP program")?;
        prog.attach_to_if_index(ifindex, XdpMode::Driver)
            .with_context(|| {
                format!(
                    "attaching the generator's XDP program to `{}` (native mode; is another XDP program attached? `ip link show dev {}`)",
                    opts.iface, opts.iface
                )
            })?;
        let fd = prog.fd()?.as_fd().as_raw_fd();
        Ok(Attached { ebpf, fd, ifindex })
    }

    /// Frames received (counted and dropped by the program) so far.
    fn received(&self) -> anyhow::Result<u64> {
        let map: PerCpuArray<_, u64> = PerCpuArray::try_from(
            self.ebpf
                .map("rx_frames")
                .ok_or_else(|| anyhow!("the object has no map rx_frames"))?,
        )?;
        Ok(map.get(&0, 0)?.iter().sum())
    }
}

fn run_xdp(opts: &GenOptions, a: &Attached) -> anyhow::Result<(u64, f64)> {
    let frame = opts.frame(0);
    let ctx = XdpMd {
        data_end: frame.len() as u32,
        ingress_ifindex: a.ifindex,
        ..XdpMd::default()
    };
    let pace = Pace::new(opts);
    let per_call = match pace.rate {
        // About 100 µs worth per call, at least one frame.
        Some(r) => ((r / 10_000.0) as u32).clamp(1, FRAMES_PER_CALL),
        None => FRAMES_PER_CALL,
    };
    let mut sent = 0u64;
    loop {
        let n = pace.allowance(sent, u64::from(per_call)) as u32;
        if n == 0 {
            break;
        }
        let mut attr = TestRunAttr {
            prog_fd: a.fd as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat: n,
            ctx_size_in: size_of::<XdpMd>() as u32,
            ctx_in: &ctx as *const XdpMd as u64,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: LIVE_BATCH.min(n),
            ..TestRunAttr::default()
        };
        // SAFETY: bpf(BPF_PROG_TEST_RUN) reads `attr` (valid for its size)
        // and, through it, `frame` and `ctx`, which outlive the call; with
        // live frames it writes nothing back but `attr`'s retval/duration.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                &mut attr as *mut TestRunAttr,
                size_of::<TestRunAttr>() as u32,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if sent == 0 {
                bail!("BPF_PROG_TEST_RUN with live frames on `{}` failed: {e}; it needs Linux ≥ 5.18, and on a veth an XDP program on the peer", opts.iface);
            }
            return Err(e).context("BPF_PROG_TEST_RUN");
        }
        sent += u64::from(n);
    }
    Ok((sent, pace.start.elapsed().as_secs_f64()))
}

fn run_afpacket(opts: &GenOptions) -> anyhow::Result<(u64, f64)> {
    let frames: Vec<Vec<u8>> = (0..opts.flows).map(|i| opts.frame(i)).collect();
    let aopts = AfPacketOptions {
        tx_frame_count: 4096,
        rx_block_count: 2,
        ..AfPacketOptions::default()
    };
    let mut port = AfPacketPort::open(&opts.iface, &aopts)
        .map_err(|e| anyhow!("{e}"))?
        .remove(0);
    let pace = Pace::new(opts);
    let (mut sent, mut k) = (0u64, 0usize);
    let mut rx: Burst<_> = Burst::new();
    loop {
        let n = pace.allowance(sent, MAX_BURST as u64) as usize;
        if n == 0 {
            break;
        }
        let mut burst: Burst<_> = Burst::new();
        for _ in 0..n {
            let Some(mut buf) = port.alloc() else { break };
            buf.set_frame(&frames[k]);
            k = (k + 1) % frames.len();
            burst.push(buf);
        }
        let n = burst.len();
        port.tx_burst(&mut burst);
        sent += (n - burst.len()) as u64;
        for buf in burst.drain(..) {
            port.free(buf);
        }
        // Whatever comes back (forwarded frames) is not ours to keep.
        port.rx_burst(&mut rx, MAX_BURST);
        for buf in rx.drain(..) {
            port.free(buf);
        }
    }
    Ok((sent, pace.start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_their_flow_and_no_udp_checksum() {
        let o = GenOptions {
            iface: "x".into(),
            src_mac: parse_mac("02:00:00:00:00:01").unwrap(),
            dst_mac: parse_mac("02:00:00:00:00:02").unwrap(),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 100),
            port: 9,
            flows: 4,
            base_port: 10_000,
            payload: 18,
            duration: Duration::from_secs(1),
            rate: None,
            mode: Mode::Xdp,
        };
        let f = o.frame(3);
        assert_eq!(f.len() + 4, 64);
        assert_eq!(&f[34..36], &10_003u16.to_be_bytes());
        assert_eq!(&f[UDP_CHECKSUM..UDP_CHECKSUM + 2], &[0, 0]);
        assert!(parse_mac("02:00").is_err());
        assert_eq!(size_of::<TestRunAttr>(), 80);
        assert!(PROGRAM.starts_with(b"\x7fELF"));
    }
}
