//! The pipeline throughput harness: the real worker loop on the in-memory
//! port, one pinned core, pre-built frames.
//!
//! Frames are built once per case from templates. Before each timed stretch
//! the harness refills a few bursts (copying a template and writing the
//! flow's source address and port, as a NIC's DMA would leave a frame in
//! memory); only the worker's `poll` calls are timed, so the generator's cost
//! stays out of the figure. Received frames, transmitted frames and freed
//! buffers go back to the pool for the next refill: nothing is allocated
//! while timing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use vipa_forwarder::buf::HeapBuf;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::EthernetAddress;

/// Bursts refilled between two timed stretches.
const BURSTS_PER_STRETCH: usize = 8;
const BURST: usize = 32;
const NOW: u32 = 1000;
const VIPA4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const VIPA6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);

/// One case's result: one JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Case name.
    pub case: String,
    /// Million packets per second on one core.
    pub mpps: f64,
    /// Nanoseconds per packet.
    pub ns_per_packet: f64,
    /// Packets timed.
    pub packets: u64,
    /// Distinct flows in the case.
    pub flows: u64,
    /// Frames transmitted / frames received while timing (1.0 = nothing dropped).
    pub tx_ratio: f64,
    /// Fastest and slowest of the timed segments, ns per packet (the
    /// figure above is their median).
    pub ns_min: f64,
    /// See `ns_min`.
    pub ns_max: f64,
    /// ns per packet divided by the baseline's (the bare in-memory port:
    /// receive and transmit, no pipeline), measured in the same run.
    pub vs_baseline: Option<f64>,
    /// The thread's CPU time per packet over the timed stretches
    /// (`CLOCK_THREAD_CPUTIME_ID`), median of the segments: unlike the wall
    /// clock it does not count time the thread spent preempted, so it is the
    /// steadier figure on a loaded machine (A/B comparisons).
    pub cpu_ns_per_packet: f64,
}

/// The calling thread's CPU time in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID
    // exists on every Linux since 2.6.12.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Timed segments per case: the reported figure is their median.
const SEGMENTS: u64 = 10;

fn summarize(
    case: &str,
    flows: u64,
    segments: &mut [f64],
    cpu_segments: &mut [f64],
    packets: u64,
    tx_ratio: f64,
) -> CaseResult {
    let wall = median(segments);
    CaseResult {
        case: case.to_owned(),
        mpps: 1e3 / wall,
        ns_per_packet: wall,
        packets,
        flows,
        tx_ratio,
        ns_min: segments.first().copied().unwrap_or(f64::NAN),
        ns_max: segments.last().copied().unwrap_or(f64::NAN),
        vs_baseline: None,
        cpu_ns_per_packet: median(cpu_segments),
    }
}

/// Harness settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Packets timed per case (scaled down for the small cases' warm-up).
    pub packets: u64,
    /// Core to pin to (None: do not pin).
    pub core: Option<usize>,
    /// Run only cases whose name contains this.
    pub filter: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            packets: 20_000_000,
            core: Some(1),
            filter: None,
        }
    }
}

/// The benchmark's configuration: one jumbo port (so IMIX frames are
/// encapsulated, not bounced), an IPv4 and an IPv6 VIPA with 16 and 4
/// targets, a flow table sized for the case.
pub fn bench_config(flow_capacity: usize) -> Config {
    let mut text = format!(
        r#"
[node]
name = "bench"
tunnel_source_v4 = "10.10.0.1"
tunnel_source_v6 = "fd00:10::1"

[forwarder]
flow_table_capacity = {flow_capacity}
flow_idle_timeout = 300

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
mtu = 9000
next_hop_mac = "02:00:00:00:0a:fe"

[[vipa]]
address = "{VIPA4}"
services = ["tcp/80", "udp/53"]
"#
    );
    for i in 0..16 {
        text.push_str(&format!(
            "[[vipa.target]]\naddress = \"10.20.0.{}\"\n",
            11 + i
        ));
    }
    text.push_str(&format!(
        "[[vipa]]\naddress = \"{VIPA6}\"\nservices = [\"tcp/80\", \"udp/53\"]\n"
    ));
    for i in 0..4 {
        text.push_str(&format!(
            "[[vipa.target]]\naddress = \"fd00:20::{}\"\n",
            11 + i
        ));
    }
    Config::from_str_with_path(&text, std::path::Path::new("<bench>"))
        .expect("the built-in benchmark configuration is valid")
}

fn builder() -> FrameBuilder {
    FrameBuilder::new(
        EthernetAddress([0x02, 0, 0, 0, 0x0a, 0xfe]),
        EthernetAddress([0x02, 0, 0, 0, 0x0a, 0x01]),
    )
}

/// A frame template and where to write a flow's identity into it.
struct Template {
    frame: Vec<u8>,
    v6: bool,
}

impl Template {
    fn tcp_v4(frame_len: usize, flags: u8) -> Self {
        let b = builder();
        let payload = vec![0u8; frame_len.saturating_sub(14 + 20 + 20)];
        Template {
            frame: b.tcp(
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V4(VIPA4),
                1024,
                80,
                flags,
                &payload,
            ),
            v6: false,
        }
    }

    fn tcp_v6(frame_len: usize, flags: u8) -> Self {
        let b = builder();
        let payload = vec![0u8; frame_len.saturating_sub(14 + 40 + 20)];
        Template {
            frame: b.tcp(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 1)),
                IpAddr::V6(VIPA6),
                1024,
                80,
                flags,
                &payload,
            ),
            v6: true,
        }
    }

    /// Copies the template into `buf` and writes flow `flow`'s source
    /// address and port (2^16 ports per address).
    #[inline]
    fn fill(&self, buf: &mut HeapBuf, flow: u64) {
        buf.set_frame(&self.frame);
        let data = vipa_forwarder::buf::PacketBuffer::data_mut(buf);
        let port = 1024 + (flow & 0xffff) as u16 % 64000;
        let host = (flow >> 16) as u32;
        if self.v6 {
            data[14 + 8 + 12..14 + 8 + 16].copy_from_slice(&host.to_be_bytes());
            data[54..56].copy_from_slice(&port.to_be_bytes());
        } else {
            let a = 0xC612_0000u32 | (host & 0xffff); // 198.18.x.y
            data[26..30].copy_from_slice(&a.to_be_bytes());
            data[34..36].copy_from_slice(&port.to_be_bytes());
        }
    }
}

/// Feeds a case's warm-up frames to the `push` it is given.
type WarmUp<'a> = dyn FnMut(&mut dyn FnMut(&HeapBuf)) + 'a;

/// Returns every buffer the port holds to the pool.
fn recycle(worker: &mut Worker<MemPort>, pool: &mut Vec<HeapBuf>) {
    let q = &mut worker.queues[0].1;
    pool.extend(q.tx.drain(..));
    pool.extend(q.host.drain(..));
    pool.append(&mut q.pool);
}

/// Polls until the receive ring is empty, then recycles.
fn drain(worker: &mut Worker<MemPort>, pool: &mut Vec<HeapBuf>) {
    while !worker.queues[0].1.rx.is_empty() {
        worker.poll(NOW);
    }
    recycle(worker, pool);
}

/// xorshift64*: the harness's deterministic choice of the next flow.
#[inline]
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Runs `packets` packets produced by `fill` (called with a packet sequence
/// number) through a fresh worker, timing only the worker.
fn run_case(
    case: &str,
    config: &Config,
    flows: u64,
    warm: &mut WarmUp<'_>,
    packets: u64,
    fill: &mut dyn FnMut(u64, &mut HeapBuf),
) -> CaseResult {
    let tables = Arc::new(Tables::from_config(config).expect("benchmark tables"));
    let mut worker = Worker::new(vec![(0, MemPort::new())], tables);
    let stretch = BURST * BURSTS_PER_STRETCH;
    let mut pool: Vec<HeapBuf> = (0..stretch * 2)
        .map(|_| HeapBuf::with_capacity(2048))
        .collect();

    // Warm-up: establish the case's flows, untimed, a stretch at a time.
    {
        let mut push = |frame: &HeapBuf| {
            let q = &mut worker.queues[0].1;
            let mut b = pool.pop().unwrap_or_else(|| HeapBuf::with_capacity(2048));
            b.set_frame(vipa_forwarder::buf::PacketBuffer::data(frame));
            q.rx.push_back(b);
            if q.rx.len() >= stretch {
                drain(&mut worker, &mut pool);
            }
        };
        warm(&mut push);
        drain(&mut worker, &mut pool);
    }
    let rx0 = worker.counters().get(Counter::RxPackets);
    let tx0 = worker.counters().get(Counter::TxPackets);

    let per_segment = (packets / SEGMENTS).max(stretch as u64);
    let mut segments = Vec::new();
    let mut cpu_segments = Vec::new();
    let mut seq = 0u64;
    while seq < packets {
        let mut elapsed = Duration::ZERO;
        let mut cpu = 0u64;
        let start_seq = seq;
        while seq - start_seq < per_segment && seq < packets {
            {
                let q = &mut worker.queues[0].1;
                for _ in 0..stretch {
                    let mut b = pool.pop().unwrap_or_else(|| HeapBuf::with_capacity(2048));
                    fill(seq, &mut b);
                    seq += 1;
                    q.rx.push_back(b);
                }
            }
            let c0 = thread_cpu_ns();
            let t0 = Instant::now();
            for _ in 0..BURSTS_PER_STRETCH {
                worker.poll(NOW);
            }
            elapsed += t0.elapsed();
            cpu += thread_cpu_ns().saturating_sub(c0);
            recycle(&mut worker, &mut pool);
        }
        segments.push(elapsed.as_nanos() as f64 / (seq - start_seq) as f64);
        cpu_segments.push(cpu as f64 / (seq - start_seq) as f64);
    }
    let rx = worker.counters().get(Counter::RxPackets) - rx0;
    let tx = worker.counters().get(Counter::TxPackets) - tx0;
    summarize(
        case,
        flows,
        &mut segments,
        &mut cpu_segments,
        rx,
        tx as f64 / rx.max(1) as f64,
    )
}

/// The baseline: the same refill and timing around the bare in-memory port
/// (receive a burst, transmit it), without the pipeline.
fn baseline(settings: &Settings) -> CaseResult {
    use vipa_forwarder::port::{Burst, PortQueue};
    let t = Template::tcp_v4(64, 0x10);
    let mut port = MemPort::new();
    let stretch = BURST * BURSTS_PER_STRETCH;
    let mut pool: Vec<HeapBuf> = (0..stretch * 2)
        .map(|_| HeapBuf::with_capacity(2048))
        .collect();
    let mut burst: Burst<HeapBuf> = Burst::new();
    let per_segment = (settings.packets / SEGMENTS).max(stretch as u64);
    let mut segments = Vec::new();
    let mut cpu_segments = Vec::new();
    let mut seq = 0u64;
    while seq < settings.packets {
        let mut elapsed = Duration::ZERO;
        let mut cpu = 0u64;
        let start_seq = seq;
        while seq - start_seq < per_segment && seq < settings.packets {
            for _ in 0..stretch {
                let mut b = pool.pop().unwrap_or_else(|| HeapBuf::with_capacity(2048));
                t.fill(&mut b, seq % 1000);
                seq += 1;
                port.rx.push_back(b);
            }
            let c0 = thread_cpu_ns();
            let t0 = Instant::now();
            for _ in 0..BURSTS_PER_STRETCH {
                port.rx_burst(&mut burst, BURST);
                port.tx_burst(&mut burst);
            }
            elapsed += t0.elapsed();
            cpu += thread_cpu_ns().saturating_sub(c0);
            pool.extend(port.tx.drain(..));
        }
        segments.push(elapsed.as_nanos() as f64 / (seq - start_seq) as f64);
        cpu_segments.push(cpu as f64 / (seq - start_seq) as f64);
    }
    summarize(
        "baseline_mem_port",
        0,
        &mut segments,
        &mut cpu_segments,
        seq,
        1.0,
    )
}

fn established(name: &str, flows: u64, settings: &Settings) -> CaseResult {
    let capacity = (flows as usize * 2).max(1024);
    let config = bench_config(capacity);
    let t = Template::tcp_v4(64, 0x10);
    let mut scratch = HeapBuf::with_capacity(2048);
    let mut warm = |push: &mut dyn FnMut(&HeapBuf)| {
        for f in 0..flows {
            t.fill(&mut scratch, f);
            push(&scratch);
        }
    };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut fill = |_seq: u64, b: &mut HeapBuf| {
        let f = next_random(&mut rng) % flows;
        t.fill(b, f);
    };
    run_case(name, &config, flows, &mut warm, settings.packets, &mut fill)
}

fn syn_new_flows(settings: &Settings) -> CaseResult {
    let config = bench_config(1 << 20);
    let t = Template::tcp_v4(64, 0x02);
    let mut warm = |_: &mut dyn FnMut(&HeapBuf)| {};
    // Every packet is a SYN of a flow never seen before.
    let mut fill = |seq: u64, b: &mut HeapBuf| t.fill(b, seq);
    run_case(
        "syn_new_flows",
        &config,
        settings.packets,
        &mut warm,
        settings.packets,
        &mut fill,
    )
}

/// Simple IMIX by packet count 7:4:1 of 64, 570 and 1500-byte frames;
/// one packet in five IPv6; one in a hundred a SYN of a new flow; the rest
/// spread over 100 000 established flows.
fn mixed_imix(settings: &Settings) -> CaseResult {
    const FLOWS: u64 = 100_000;
    let config = bench_config(1 << 20);
    let sizes = [64usize, 64, 64, 64, 64, 64, 64, 570, 570, 570, 570, 1500];
    let v4: Vec<Template> = sizes.iter().map(|&s| Template::tcp_v4(s, 0x10)).collect();
    let v6: Vec<Template> = sizes.iter().map(|&s| Template::tcp_v6(s, 0x10)).collect();
    let syn4 = Template::tcp_v4(64, 0x02);
    let mut scratch = HeapBuf::with_capacity(2048);
    let mut warm = |push: &mut dyn FnMut(&HeapBuf)| {
        for f in 0..FLOWS {
            v4[0].fill(&mut scratch, f);
            push(&scratch);
            v6[0].fill(&mut scratch, f);
            push(&scratch);
        }
    };
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut fill = |seq: u64, b: &mut HeapBuf| {
        let r = next_random(&mut rng);
        if r.is_multiple_of(100) {
            syn4.fill(b, (1 << 40) + seq);
            return;
        }
        let size = (r >> 8) as usize % sizes.len();
        let flow = (r >> 16) % FLOWS;
        if (r >> 40).is_multiple_of(5) {
            v6[size].fill(b, flow);
        } else {
            v4[size].fill(b, flow);
        }
    };
    run_case(
        "mixed_imix",
        &config,
        FLOWS * 2,
        &mut warm,
        settings.packets,
        &mut fill,
    )
}

/// Runs every case (or those matching the filter), pinned.
pub fn run_all(settings: &Settings, mut report: impl FnMut(&CaseResult)) {
    if let Some(core) = settings.core {
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        if let Some(id) = ids.into_iter().find(|c| c.id == core) {
            core_affinity::set_for_current(id);
        }
    }
    let wanted = |name: &str| settings.filter.as_deref().is_none_or(|f| name.contains(f));
    let base = baseline(settings);
    report(&base);
    let cases: [(&str, &dyn Fn() -> CaseResult); 6] = [
        ("established_1k", &|| {
            established("established_1k", 1_000, settings)
        }),
        ("established_1m", &|| {
            established("established_1m", 1_000_000, settings)
        }),
        ("established_10m", &|| {
            established("established_10m", 10_000_000, settings)
        }),
        ("syn_new_flows", &|| syn_new_flows(settings)),
        ("mixed_imix", &|| mixed_imix(settings)),
        ("icmp_echo", &|| echo(settings)),
    ];
    for (name, case) in cases {
        if wanted(name) {
            let mut r = case();
            r.vs_baseline = Some(r.ns_per_packet / base.ns_per_packet);
            report(&r);
        }
    }
}

/// Echo requests to the VIPA: the reply path (built in place), for reference.
fn echo(settings: &Settings) -> CaseResult {
    let config = bench_config(1024);
    let frame =
        builder().icmpv4_echo_request(Ipv4Addr::new(198, 18, 0, 1), VIPA4, 7, 1, &[0u8; 18]);
    let mut warm = |_: &mut dyn FnMut(&HeapBuf)| {};
    let mut fill = |_seq: u64, b: &mut HeapBuf| {
        b.set_frame(&frame);
    };
    run_case(
        "icmp_echo",
        &config,
        1,
        &mut warm,
        settings.packets / 4,
        &mut fill,
    )
}
