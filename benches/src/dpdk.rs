//! The DPDK harness (`scripts/bench dpdk`): vipa's real worker on one core
//! over DPDK `net_null` virtual devices, against `dpdk-testpmd
//! --forward-mode=5tswap` on the same devices, in the same run.
//!
//! # How the frames are made
//!
//! `net_null` with `copy=0` (its default) hands out mbufs from the port's
//! pool with their length set to `size` (64) and their bytes untouched:
//! whatever the buffer last held. Before timing, the harness fills every
//! mbuf of the pool with a 64-byte TCP ACK to the benchmark VIPA, so each
//! received frame is a real packet of an established flow. Encapsulation
//! writes the outer headers into the headroom and over the first 14 bytes
//! (the inner Ethernet header), so the harness's queue wrapper
//! ([`Reframe`]) rewrites, on receive, the Ethernet header and the flow's
//! identity (source address and port: a walk over `flows` flows that
//! visits each once per `flows` frames, in a scattered order):
//! 22 bytes per frame, **inside** the timed loop — vipa pays for its own
//! traffic generator, as if a NIC had written the frame.
//!
//! testpmd's pool gets the same frame: an `LD_PRELOAD` shim
//! (`benches/dpdk/testpmd_prefill.c`, compiled here with the system's C
//! compiler against libdpdk) fills every mbuf of the pool testpmd creates,
//! once, at creation. Without it testpmd's frames were all zeros (EtherType
//! 0), and 5tswap swapped only the MAC addresses, skipping the IPv4 and TCP
//! swaps it does on real traffic (about 10 % more packets per second than
//! with real frames on this VM): a baseline doing less than its name says.
//!
//! The flows are established during an untimed warm-up; every timed frame
//! hits the flow table and is GRE-encapsulated and transmitted (the
//! `forwarded_ratio` field says so: forwarded / received).
//!
//! Both cases run on the same CPU, one forwarding core each, two `net_null`
//! ports each (testpmd pairs them; vipa's worker owns one queue of each and
//! transmits on the port a frame came from), bursts of 32 on both sides.
//! The figure per case is the median of one-second segments over all
//! rounds; rounds alternate vipa and testpmd so background load hits both
//! alike.
//!
//! Two more lines split the gap to testpmd: `vipa_port_baseline`, vipa's
//! DPDK queue alone (receive a burst, transmit it; no pipeline): what the
//! backend costs; and `vipa_port_generator`, the same with the harness's
//! frame rewriting: backend + generator, so that `vipa_established` minus
//! it is the pipeline. The vipa lines also report the worker thread's CPU
//! time per packet (`cpu_ns_per_packet`), which leaves out time the thread
//! was preempted: the figure for A/B comparisons on a busy machine.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pipeline::thread_cpu_ns;
use anyhow::{bail, Context};
use serde::Serialize;
use vipa_forwarder::buf::PacketBuffer;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::dpdk::{DpdkOptions, DpdkPort, DpdkQueue, Eal, Mbuf};
use vipa_forwarder::port::{Burst, PortQueue};
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::EthernetAddress;

/// The LD_PRELOAD shim that fills testpmd's mbuf pool with the same frame.
const PREFILL_C: &str = include_str!("../dpdk/testpmd_prefill.c");

/// The frame length `net_null` is given and the template has.
pub const FRAME_LEN: usize = 64;
/// The issue's goal: vipa at least this fraction of testpmd.
pub const GOAL: f64 = 0.65;
const VIPA4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0a, 0xfe];

/// Harness settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CPU of the forwarding core (vipa's worker, testpmd's forwarding lcore).
    pub core: usize,
    /// CPU of testpmd's main lcore (it only prints statistics).
    pub main_core: usize,
    /// Timed seconds per case per round.
    pub seconds: u64,
    /// Rounds (vipa then testpmd in each).
    pub rounds: u32,
    /// Established flows vipa's frames are spread over.
    pub flows: u32,
    /// The testpmd program.
    pub testpmd: String,
    /// Run only the vipa case (no testpmd, no ratio): for profiling.
    pub vipa_only: bool,
}

/// One case: one JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// `vipa_established`, `vipa_port_baseline` or `testpmd_5tswap`.
    pub case: String,
    /// Million packets per second on one core (median of the segments).
    pub mpps: f64,
    /// Nanoseconds per packet at that rate.
    pub ns_per_packet: f64,
    /// Slowest and fastest one-second segment.
    pub mpps_min: f64,
    /// See `mpps_min`.
    pub mpps_max: f64,
    /// One-second segments measured (all rounds).
    pub segments: usize,
    /// Frame length in bytes.
    pub frame_len: usize,
    /// Established flows (vipa), 0 for testpmd.
    pub flows: u32,
    /// vipa: frames forwarded (GRE-encapsulated and sent) / frames received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_ratio: Option<f64>,
    /// mpps / testpmd's mpps, measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_testpmd: Option<f64>,
    /// vipa: the goal for `vs_testpmd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<f64>,
    /// vipa: the worker thread's CPU time per packet (median of the
    /// segments); unlike `ns_per_packet` it leaves out time the thread was
    /// preempted, so it is the steadier figure on a busy machine (A/B).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ns_per_packet: Option<f64>,
    /// How the case was run.
    pub note: &'static str,
}

const VIPA_NOTE: &str = "real Worker on 2 net_null ports (size=64,copy=0), 1 core; mbufs \
     pre-filled with TCP ACKs to a VIPA; 22 bytes per frame (Ethernet header, source \
     address and port) rewritten on receive inside the timed loop";
const BASELINE_NOTE: &str = "vipa's DpdkQueue alone on the same ports and core: rx_burst then \
     tx_burst of the same burst, no pipeline, no rewriting (the backend's share of the cost)";
const GENERATOR_NOTE: &str = "vipa's DpdkQueue with the harness's frame rewriting (the 22 \
     bytes per frame vipa_established pays for), rx_burst then tx_burst, no pipeline: the \
     backend plus the traffic generator";
const TESTPMD_NOTE: &str =
    "dpdk-testpmd --forward-mode=5tswap on 2 net_null ports (size=64,copy=0), \
     1 forwarding core; its mbuf pool pre-filled (LD_PRELOAD shim, at pool creation) with the \
     same TCP frame as vipa's, so it swaps MACs, IPv4 addresses and TCP ports";

/// The benchmark configuration: two ports, one IPv4 VIPA with 16 targets.
fn config(flows: u32) -> anyhow::Result<Config> {
    let capacity = (flows as usize * 2).max(1024);
    let mut text = format!(
        r#"
[node]
name = "bench-dpdk"
tunnel_source_v4 = "10.10.0.1"

[forwarder]
flow_table_capacity = {capacity}
flow_idle_timeout = 300

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
mtu = 1500
next_hop_mac = "02:00:00:00:0a:fe"

[[port]]
name = "p1"
mac = "02:00:00:00:0b:01"
mtu = 1500
next_hop_mac = "02:00:00:00:0a:fe"

[[vipa]]
address = "{VIPA4}"
services = ["tcp/80"]
"#
    );
    for i in 0..16 {
        text.push_str(&format!(
            "[[vipa.target]]\naddress = \"10.20.0.{}\"\n",
            11 + i
        ));
    }
    Config::from_str_with_path(&text, std::path::Path::new("<bench-dpdk>"))
        .context("the built-in DPDK benchmark configuration")
}

/// The template: a 64-byte TCP ACK from 198.18.0.1:1024 to the VIPA, port 80.
fn template() -> Vec<u8> {
    let b = FrameBuilder::new(EthernetAddress(ROUTER_MAC), EthernetAddress(PORT_MAC));
    let payload = [0u8; FRAME_LEN - 14 - 20 - 20];
    b.tcp(
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        IpAddr::V4(VIPA4),
        1024,
        80,
        0x10,
        &payload,
    )
}

/// A DPDK queue whose received frames get their Ethernet header and flow
/// identity rewritten (see the module docs): the traffic generator.
pub struct Reframe {
    inner: DpdkQueue,
    eth: [u8; 14],
    flows: u32,
    /// The next frame's flow.
    next: u32,
    /// What `next` advances by (mod `flows`): coprime with `flows`.
    stride: u32,
    /// 198.18.0.0: the sources' network.
    src_net: u32,
}

impl Reframe {
    fn new(inner: DpdkQueue, template: &[u8], flows: u32, seed: u64) -> Self {
        let mut eth = [0u8; 14];
        eth.copy_from_slice(&template[..14]);
        let flows = flows.max(1);
        Reframe {
            inner,
            eth,
            flows,
            next: (seed % u64::from(flows)) as u32,
            stride: walk_stride(flows),
            src_net: u32::from(Ipv4Addr::new(198, 18, 0, 0)),
        }
    }
}

impl PortQueue for Reframe {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Burst<Mbuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.rx_burst(out, max);
        for m in &mut out[start..] {
            let flow = self.next;
            self.next += self.stride;
            if self.next >= self.flows {
                self.next -= self.flows;
            }
            let d = m.data_mut();
            if d.len() >= 36 {
                d[..14].copy_from_slice(&self.eth);
                // 198.18.x.y, source port 1024 + flow % 60000. The address
                // is written whole, as the pipeline reads it: a 4-byte read
                // over a narrower fresh store would stall on store-to-load
                // forwarding, a cost of this generator, not of a NIC's DMA.
                // (The network is a field, not a constant: with constant
                // high bytes the compiler splits the write in two 2-byte
                // stores, and the pipeline's 4-byte read stalls.)
                d[26..30].copy_from_slice(&(self.src_net | (flow / 60_000)).to_be_bytes());
                d[34..36].copy_from_slice(&(1024 + (flow % 60_000) as u16).to_be_bytes());
            }
        }
        n
    }

    #[inline]
    fn tx_burst(&mut self, frames: &mut Burst<Mbuf>) {
        self.inner.tx_burst(frames);
    }

    #[inline]
    fn to_host(&mut self, frames: &mut Burst<Mbuf>) {
        self.inner.to_host(frames);
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.inner.alloc()
    }

    #[inline]
    fn link_up(&self) -> bool {
        self.inner.link_up()
    }

    #[inline]
    fn ipv4_checksum_offload(&self) -> bool {
        self.inner.ipv4_checksum_offload()
    }
}

/// The step of the generator's walk over `flows` flows: coprime with
/// `flows`, so that the walk visits every flow once per `flows` frames,
/// and near `flows` / φ, so that consecutive frames are far apart in the
/// flow space (the flow table's hash scatters them in any case).
fn walk_stride(flows: u32) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let flows = flows.max(1);
    let mut s = ((f64::from(flows) * 0.618_034) as u32).max(1);
    while gcd(s, flows) != 1 {
        s += 1;
    }
    s % flows
}

/// Both ports' vdev arguments (the same for vipa and testpmd).
fn vdevs() -> [String; 2] {
    [
        format!("--vdev=net_null0,size={FRAME_LEN},copy=0"),
        format!("--vdev=net_null1,size={FRAME_LEN},copy=0"),
    ]
}

/// EAL arguments shared by both cases (no hugepages, no PCI, no files).
fn common_eal() -> Vec<String> {
    let mut a: Vec<String> = [
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "512",
        "--log-level=warning",
    ]
    .map(String::from)
    .to_vec();
    a.extend(vdevs());
    a
}

/// The vipa side: EAL, ports, pool filled, worker.
struct Vipa {
    worker: Worker<Reframe>,
    start: Instant,
}

impl Vipa {
    fn new(settings: &Settings) -> anyhow::Result<Vipa> {
        let mut args = vec!["-l".to_owned(), settings.core.to_string()];
        args.extend(common_eal());
        let eal = Eal::init(&args)?;
        let opts = DpdkOptions::default();
        let mut queues = Vec::new();
        for (i, dev) in ["net_null0", "net_null1"].into_iter().enumerate() {
            let mut q = DpdkPort::open(&eal, dev, 1, &opts)?;
            queues.push((i, q.remove(0)));
        }
        // Fill every mbuf of the pool with the template.
        let t = template();
        let mut all = Vec::new();
        while let Some(m) = queues[0].1.alloc_frame(&t) {
            all.push(m);
        }
        if all.is_empty() {
            bail!("the mbuf pool is empty");
        }
        drop(all);
        let tables = Arc::new(Tables::from_config(&config(settings.flows)?)?);
        let queues = queues
            .into_iter()
            .map(|(i, q)| {
                (
                    i,
                    Reframe::new(q, &t, settings.flows, 0x9E37_79B9 + i as u64),
                )
            })
            .collect();
        let mut vipa = Vipa {
            worker: Worker::new(queues, tables),
            start: Instant::now(),
        };
        // Warm-up: establish the flows (untimed).
        vipa.run_for(Duration::from_millis(500));
        Ok(vipa)
    }

    fn now(&self) -> u32 {
        self.start.elapsed().as_secs() as u32 + 1
    }

    /// Polls for `d`; returns (received, forwarded, elapsed, thread CPU ns).
    fn run_for(&mut self, d: Duration) -> (u64, u64, Duration, u64) {
        let c = self.worker.counters();
        let (rx0, fw0) = (c.get(Counter::RxPackets), c.get(Counter::Forwarded));
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        let mut now = self.now();
        loop {
            for _ in 0..64 {
                self.worker.poll(now);
            }
            let e = t0.elapsed();
            if e >= d {
                let c = self.worker.counters();
                return (
                    c.get(Counter::RxPackets) - rx0,
                    c.get(Counter::Forwarded) - fw0,
                    e,
                    thread_cpu_ns().saturating_sub(c0),
                );
            }
            now = self.now();
        }
    }

    /// The bare backend: each queue's received burst transmitted as it is
    /// (no pipeline; with `reframe`, the harness's frame rewriting),
    /// one-second segments for `seconds`.
    fn measure_bare(&mut self, seconds: u64, reframe: bool) -> Vec<Segment> {
        let mut burst: Burst<Mbuf> = Burst::new();
        (0..seconds)
            .map(|_| {
                let c0 = thread_cpu_ns();
                let t0 = Instant::now();
                let mut n = 0u64;
                loop {
                    for _ in 0..64 {
                        for (_, q) in self.worker.queues.iter_mut() {
                            n += if reframe {
                                q.rx_burst(&mut burst, 32)
                            } else {
                                q.inner.rx_burst(&mut burst, 32)
                            } as u64;
                            q.inner.tx_burst(&mut burst);
                            burst.clear();
                        }
                    }
                    let e = t0.elapsed();
                    if e >= Duration::from_secs(1) {
                        let cpu = thread_cpu_ns().saturating_sub(c0);
                        break Segment::new(n, e, cpu);
                    }
                }
            })
            .collect()
    }

    /// One-second segments for `seconds`.
    fn measure(&mut self, seconds: u64, rx: &mut u64, fw: &mut u64) -> Vec<Segment> {
        (0..seconds)
            .map(|_| {
                let (r, f, e, cpu) = self.run_for(Duration::from_secs(1));
                *rx += r;
                *fw += f;
                Segment::new(r, e, cpu)
            })
            .collect()
    }
}

/// One timed segment of a vipa case.
#[derive(Clone, Copy, Debug)]
struct Segment {
    mpps: f64,
    /// The worker thread's CPU time per packet.
    cpu_ns: f64,
}

impl Segment {
    fn new(packets: u64, elapsed: Duration, cpu_ns: u64) -> Self {
        let p = packets.max(1) as f64;
        Segment {
            mpps: packets as f64 / elapsed.as_secs_f64() / 1e6,
            cpu_ns: cpu_ns as f64 / p,
        }
    }
}

/// The testpmd pool-filling shim (`benches/dpdk/testpmd_prefill.c`),
/// compiled into `dir` with the system's C compiler against libdpdk.
fn build_prefill(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("vipa-testpmd-prefill.c");
    let lib = dir.join("vipa-testpmd-prefill.so");
    std::fs::write(&src, PREFILL_C).with_context(|| format!("writing {}", src.display()))?;
    let flags = |what: &str| -> anyhow::Result<Vec<String>> {
        let out = Command::new("pkg-config")
            .args([what, "libdpdk"])
            .output()
            .context("running pkg-config (apt-get install pkg-config libdpdk-dev)")?;
        if !out.status.success() {
            bail!("pkg-config {what} libdpdk failed: install libdpdk-dev");
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect())
    };
    let (cflags, libs) = (flags("--cflags")?, flags("--libs")?);
    // cc, else clang (which scripts/bench installs for bindgen).
    for compiler in ["cc", "clang"] {
        let Ok(status) = Command::new(compiler)
            .args(["-O2", "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .args(&cflags)
            .arg(&src)
            .args(&libs)
            .arg("-ldl")
            .status()
        else {
            continue;
        };
        if !status.success() {
            bail!("compiling {} with {compiler} failed", src.display());
        }
        return Ok(lib);
    }
    bail!("no C compiler (cc or clang) to build the testpmd prefill shim")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs testpmd for `seconds` (+2 s of start-up and warm-up) and returns
/// its per-second Mpps (both ports' Rx-pps summed), warm-up dropped.
fn testpmd(settings: &Settings, prefill: &Path) -> anyhow::Result<Vec<f64>> {
    let run = settings.seconds + 8;
    let mut cmd = Command::new("timeout");
    cmd.env("LD_PRELOAD", prefill);
    cmd.env("VIPA_TESTPMD_FRAME", hex(&template()));
    cmd.args(["-s", "INT", &run.to_string(), &settings.testpmd]);
    cmd.arg(format!(
        "--lcores=0@{},1@{}",
        settings.main_core, settings.core
    ));
    cmd.args(common_eal());
    cmd.args([
        "--",
        "--forward-mode=5tswap",
        "--stats-period=1",
        "--nb-cores=1",
        "--rxq=1",
        "--txq=1",
        "--burst=32",
        "--no-mlockall",
        "--total-num-mbufs=16384",
    ]);
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| {
            format!(
                "running {}: install it with apt-get install dpdk",
                settings.testpmd
            )
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pps: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Rx-pps:")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .collect();
    if pps.len() < 4 {
        bail!(
            "testpmd printed no statistics (exit {:?}):\n{}\n{}",
            out.status.code(),
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Two ports per period; the first periods are start-up.
    let periods: Vec<f64> = pps.chunks_exact(2).map(|p| (p[0] + p[1]) / 1e6).collect();
    let skip = 2.min(periods.len().saturating_sub(1));
    Ok(periods[skip..]
        .iter()
        .copied()
        .take(settings.seconds as usize)
        .collect())
}

/// A vipa case's result: the wall-clock figures and the median CPU time.
fn summarize_vipa(case: &str, segs: Vec<Segment>, flows: u32, note: &'static str) -> CaseResult {
    let mut cpu: Vec<f64> = segs.iter().map(|s| s.cpu_ns).collect();
    cpu.sort_by(f64::total_cmp);
    let mut r = summarize(case, segs.iter().map(|s| s.mpps).collect(), flows, note);
    r.cpu_ns_per_packet = cpu.get(cpu.len() / 2).copied();
    r
}

fn summarize(case: &str, mut segs: Vec<f64>, flows: u32, note: &'static str) -> CaseResult {
    segs.sort_by(f64::total_cmp);
    let median = segs.get(segs.len() / 2).copied().unwrap_or(f64::NAN);
    CaseResult {
        case: case.into(),
        mpps: median,
        ns_per_packet: 1e3 / median,
        mpps_min: segs.first().copied().unwrap_or(f64::NAN),
        mpps_max: segs.last().copied().unwrap_or(f64::NAN),
        segments: segs.len(),
        frame_len: FRAME_LEN,
        flows,
        forwarded_ratio: None,
        vs_testpmd: None,
        goal: None,
        cpu_ns_per_packet: None,
        note,
    }
}

/// Runs the cases; returns [testpmd, port baseline, vipa] (with the
/// ratios to testpmd), or [port baseline, vipa] when `vipa_only`.
pub fn run(settings: &Settings) -> anyhow::Result<Vec<CaseResult>> {
    let prefill_dir = std::env::temp_dir().join(format!("vipa-dpdk-bench-{}", std::process::id()));
    let prefill = if settings.vipa_only {
        None
    } else {
        std::fs::create_dir_all(&prefill_dir)
            .with_context(|| format!("creating {}", prefill_dir.display()))?;
        Some(build_prefill(&prefill_dir)?)
    };
    let mut vipa = Vipa::new(settings)?;
    let (mut vsegs, mut tsegs, mut bsegs, mut rsegs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rx, mut fw) = (0, 0);
    for _ in 0..settings.rounds.max(1) {
        vsegs.extend(vipa.measure(settings.seconds, &mut rx, &mut fw));
        bsegs.extend(vipa.measure_bare(settings.seconds.div_ceil(2), false));
        rsegs.extend(vipa.measure_bare(settings.seconds.div_ceil(2), true));
        if let Some(prefill) = &prefill {
            tsegs.extend(testpmd(settings, prefill)?);
        }
    }
    let _ = std::fs::remove_dir_all(&prefill_dir);
    let mut v = summarize_vipa("vipa_established", vsegs, settings.flows, VIPA_NOTE);
    v.forwarded_ratio = Some(fw as f64 / rx.max(1) as f64);
    let mut b = summarize_vipa("vipa_port_baseline", bsegs, 0, BASELINE_NOTE);
    let mut r = summarize_vipa("vipa_port_generator", rsegs, settings.flows, GENERATOR_NOTE);
    if settings.vipa_only {
        return Ok(vec![b, r, v]);
    }
    let t = summarize("testpmd_5tswap", tsegs, 0, TESTPMD_NOTE);
    v.vs_testpmd = Some(v.mpps / t.mpps);
    v.goal = Some(GOAL);
    b.vs_testpmd = Some(b.mpps / t.mpps);
    r.vs_testpmd = Some(r.mpps / t.mpps);
    Ok(vec![t, b, r, v])
}
