//! `vipa-forwarder run`: the workers on live ports, until SIGINT / SIGTERM.
//!
//! # Shape
//!
//! The main thread checks what it can before touching a device (the cores
//! exist, the devices exist), opens every port's queues with the configured
//! backend, then starts one worker thread per `forwarder.cores` entry. Worker
//! `i` is pinned to `cores[i]` and owns queue `i` of every port; it builds
//! its [`Worker`] (flow table included) on its own core, so the memory is
//! first touched where it is used. Worker 0 is the announcer: it sends the
//! gratuitous ARP / unsolicited neighbour advertisements at start and watches
//! link state. All workers share one next-hop table.
//!
//! While the workers run, the main thread only sleeps, watches the workers
//! and, with `--stats FILE`, writes their counters as JSON once a second.
//!
//! With `--snapshot PREFIX` a loader thread follows the control plane's
//! snapshots ([`crate::snapshot`]): it polls the head every 2 ms, and the
//! workers switch to each generation it accepts between bursts. Each worker
//! also copies its counters into `<prefix>.back` once a second and reports
//! every flow it creates from a Maglev table in its ring there.
//!
//! # The poll loop
//!
//! One iteration: check the stop flag, read the monotonic clock once (`now`
//! = whole seconds since start + 1, so that 0 never means "now" to the flow
//! table), poll every queue once. After `forwarder.idle_polls` consecutive
//! polls that received nothing, the worker sleeps `forwarder.idle_sleep_us`
//! before each further poll until a frame arrives again (`idle_sleep_us = 0`
//! busy-polls). Once a second the worker copies its counters into
//! [`SharedCounters`] (relaxed atomic stores, no lock): that is what the
//! statistics file reads.
//!
//! # Stopping
//!
//! SIGINT and SIGTERM set one `AtomicBool` (`signal-hook`, which does only
//! async-signal-safe work in the handler). Each worker sees it at the top of
//! its next iteration: the burst it was processing has been transmitted
//! (a poll flushes what it produced), so it returns its counters and exits.
//! The main thread joins them all and prints the counters. The workers are
//! never more than one burst (or one idle sleep) from the flag; should one
//! hang anyway, a second signal exits at once with status 1.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use vipa_proto::config::{Backend, Config, PortConfig};
use vipa_proto::snapshot::head::Names;

/// How often the snapshot loader looks at the head.
const SNAPSHOT_POLL: Duration = Duration::from_millis(2);

use crate::counters::{Counter, Counters};
use crate::neighbor::Neighbors;
use crate::port::afpacket::{AfPacketError, AfPacketOptions, AfPacketPort};
use crate::port::afxdp::{AfXdpError, AfXdpOptions, AfXdpPort, AfXdpQueue, XdpAddresses};
use crate::port::PortQueue;
use crate::snapshot::{
    BackChannel, FlowEventSink, Generation, Loader, TableSlot, BACK_RING_CAPACITY,
    BACK_TARGET_SLOTS,
};
use crate::tables::{Tables, TablesError};
use crate::worker::Worker;

/// What `run` needs besides the configuration.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Write every worker's counters as JSON to this file once a second
    /// (replaced atomically: written to `FILE.tmp`, then renamed).
    pub stats: Option<PathBuf>,
    /// Follow the control plane's snapshots on this channel prefix (see
    /// [`vipa_proto::snapshot::head::Names`]): load each new generation,
    /// switch the workers to it, and write counters and new-flow events to
    /// `<prefix>.back`. Without it the configuration's tables are used for
    /// the whole run.
    pub snapshot: Option<String>,
}

/// Why the forwarder could not start (or stopped abnormally). Each message
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The tables could not be built from the configuration.
    #[error(transparent)]
    Tables(#[from] TablesError),
    /// A configured core is not one this process may run on.
    #[error("forwarder.cores: CPU {core} is not available to this process; it may use CPUs {available}: list some of those in forwarder.cores")]
    NoSuchCore {
        /// The configured CPU id.
        core: usize,
        /// The CPUs this process may use, e.g. `0, 1`.
        available: String,
    },
    /// The ports' backend is `dpdk` but the binary was built without it.
    #[error("this build has no DPDK support: rebuild with --features dpdk (or use backend = \"afpacket\")")]
    NoDpdk,
    /// DPDK could not be set up (EAL initialisation).
    #[error("{0}")]
    Dpdk(String),
    /// A device named in the configuration does not exist.
    #[error("port {port}: device {device:?} does not exist; the interfaces here are: {available} (see `ip link`); set device in the port's [[port]] table")]
    DeviceMissing {
        /// The port's name.
        port: String,
        /// The device.
        device: String,
        /// The interfaces that do exist.
        available: String,
    },
    /// Opening a device was refused for lack of privileges.
    #[error("port {port}: opening device {device:?} was refused ({detail}); vipa-forwarder needs root, or CAP_NET_RAW and CAP_NET_ADMIN (e.g. `setcap cap_net_raw,cap_net_admin,cap_sys_nice+ep vipa-forwarder`)")]
    Permission {
        /// The port's name.
        port: String,
        /// The device.
        device: String,
        /// The system's error.
        detail: String,
    },
    /// A device is held by someone else.
    #[error("port {port}: device {device:?} is busy ({detail}); another program holds it (an XDP program, a DPDK process, another vipa-forwarder): stop it, or use another device")]
    Busy {
        /// The port's name.
        port: String,
        /// The device.
        device: String,
        /// The system's error.
        detail: String,
    },
    /// A device could not be opened for another reason.
    #[error("port {port}: cannot open device {device:?}: {detail}")]
    Open {
        /// The port's name.
        port: String,
        /// The device.
        device: String,
        /// What went wrong.
        detail: String,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGINT / SIGTERM handlers: {0}")]
    Signals(std::io::Error),
    /// A worker thread could not be started.
    #[error("cannot start the worker thread for CPU {core}: {source}")]
    Spawn {
        /// Its core.
        core: usize,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot channel could not be set up.
    #[error("snapshot channel {prefix:?}: cannot create the back channel {path}: {source}; check that the directory exists and is writable (/dev/shm for a plain prefix)")]
    SnapshotChannel {
        /// The prefix.
        prefix: String,
        /// The back channel's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A worker thread panicked (a bug: please report it with the log).
    #[error("the worker on CPU {core} panicked: {message}; this is a bug, please report it with the log above")]
    WorkerPanicked {
        /// Its core.
        core: usize,
        /// The panic message.
        message: String,
    },
}

/// Counters of one worker, by name.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerReport {
    /// Index of the worker (= the queue it owns on every port).
    pub worker: usize,
    /// The CPU it ran on.
    pub core: usize,
    /// Every counter, zeros included (so scripts can rely on the keys).
    pub counters: BTreeMap<&'static str, u64>,
}

/// Per-target figures, summed over the workers.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The target's address.
    pub address: IpAddr,
    /// Flows created for it.
    pub flows: u64,
    /// Frames sent to it.
    pub packets: u64,
    /// Inner bytes sent to it.
    pub bytes: u64,
}

/// Counters of every worker and their sum: what `--stats` writes each
/// second and what `run` prints when it stops.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Seconds since the workers started.
    pub uptime_s: u64,
    /// Per worker.
    pub workers: Vec<WorkerReport>,
    /// Sum over the workers, every counter.
    pub total: BTreeMap<&'static str, u64>,
    /// Per target, summed over the workers.
    pub targets: Vec<TargetReport>,
    /// The backends' own counters per queue (kernel ring drops, wake-ups,
    /// ...), read when the workers stop: only in the final report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<QueueReport>,
}

/// The backend's own counters of one queue of one port.
#[derive(Clone, Debug, Serialize)]
pub struct QueueReport {
    /// The port's name.
    pub port: String,
    /// The queue (= the worker that owned it).
    pub queue: usize,
    /// The backend's counters, by name (`afxdp_kernel_rx_ring_full`, ...).
    pub counters: BTreeMap<&'static str, u64>,
}

fn by_name(c: &Counters) -> BTreeMap<&'static str, u64> {
    Counter::ALL.iter().map(|&k| (k.name(), c.get(k))).collect()
}

impl RunReport {
    /// A report from each worker's counters (`cores[i]` ran worker `i`).
    pub fn new(uptime: Duration, cores: &[usize], workers: &[Counters], tables: &Tables) -> Self {
        let mut total = Counters::new(tables.targets.len());
        for w in workers {
            total.merge(w);
        }
        RunReport {
            uptime_s: uptime.as_secs(),
            workers: workers
                .iter()
                .zip(cores)
                .enumerate()
                .map(|(worker, (c, &core))| WorkerReport {
                    worker,
                    core,
                    counters: by_name(c),
                })
                .collect(),
            total: by_name(&total),
            targets: tables
                .targets
                .iter()
                .zip(&total.targets)
                .map(|(t, c)| TargetReport {
                    address: t.address,
                    flows: c.flows,
                    packets: c.packets,
                    bytes: c.bytes,
                })
                .collect(),
            queues: Vec::new(),
        }
    }

    /// A table for people: each non-zero counter per worker and in total,
    /// then the targets that got traffic.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "\ncounters after {} s (non-zero):", self.uptime_s);
        let heads: Vec<String> = self
            .workers
            .iter()
            .map(|w| format!("w{} cpu{}", w.worker, w.core))
            .collect();
        let _ = write!(s, "{:<28}", "counter");
        for h in &heads {
            let _ = write!(s, " {h:>14}");
        }
        let _ = writeln!(s, " {:>14}", "total");
        for (name, total) in self.total.iter().filter(|(_, v)| **v != 0) {
            let _ = write!(s, "{name:<28}");
            for w in &self.workers {
                let _ = write!(s, " {:>14}", w.counters.get(name).copied().unwrap_or(0));
            }
            let _ = writeln!(s, " {total:>14}");
        }
        if self.targets.iter().any(|t| t.packets != 0) {
            let _ = writeln!(
                s,
                "\n{:<28} {:>10} {:>12} {:>14}",
                "target", "flows", "packets", "bytes"
            );
            for t in self.targets.iter().filter(|t| t.packets != 0) {
                let _ = writeln!(
                    s,
                    "{:<28} {:>10} {:>12} {:>14}",
                    t.address.to_string(),
                    t.flows,
                    t.packets,
                    t.bytes
                );
            }
        }
        for q in &self.queues {
            let nonzero: Vec<String> = q
                .counters
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            if !nonzero.is_empty() {
                let _ = writeln!(
                    s,
                    "\nport {} queue {}: {}",
                    q.port,
                    q.queue,
                    nonzero.join(", ")
                );
            }
        }
        s
    }
}

/// A worker's counters as the other threads see them: copied in by the
/// worker once a second with relaxed stores (no lock, no allocation), read
/// by the statistics writer. A reader may see one counter of a second and
/// another of the next; each value is whole.
#[derive(Debug)]
pub struct SharedCounters {
    values: Vec<AtomicU64>,
    /// Per target: packets, bytes, flows.
    targets: Vec<[AtomicU64; 3]>,
}

impl SharedCounters {
    /// Zeros for `n_targets` targets.
    pub fn new(n_targets: usize) -> Self {
        SharedCounters {
            values: Counter::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            targets: (0..n_targets)
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    /// Copies `c` in (the owning worker calls this).
    pub fn publish(&self, c: &Counters) {
        for (slot, &k) in self.values.iter().zip(Counter::ALL) {
            slot.store(c.get(k), Ordering::Relaxed);
        }
        for (slot, t) in self.targets.iter().zip(&c.targets) {
            slot[0].store(t.packets, Ordering::Relaxed);
            slot[1].store(t.bytes, Ordering::Relaxed);
            slot[2].store(t.flows, Ordering::Relaxed);
        }
    }

    /// The last values published.
    pub fn read(&self) -> Counters {
        let mut c = Counters::new(self.targets.len());
        for (slot, &k) in self.values.iter().zip(Counter::ALL) {
            c.add(k, slot.load(Ordering::Relaxed));
        }
        for (slot, t) in self.targets.iter().zip(c.targets.iter_mut()) {
            t.packets = slot[0].load(Ordering::Relaxed);
            t.bytes = slot[1].load(Ordering::Relaxed);
            t.flows = slot[2].load(Ordering::Relaxed);
        }
        c
    }
}

/// Installs SIGINT and SIGTERM handlers: the first sets `stop`; a second
/// one, while stopping, exits at once with status 1 (for a worker that does
/// not stop).
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Result<(), RunError> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag before this signal sets it.
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(stop))
            .map_err(RunError::Signals)?;
        signal_hook::flag::register(sig, Arc::clone(stop)).map_err(RunError::Signals)?;
    }
    Ok(())
}

/// Runs the forwarder described by `config` until SIGINT or SIGTERM; returns
/// the counters of every worker.
pub fn run(config: &Config, opts: &RunOptions) -> Result<RunReport, RunError> {
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signals(&stop)?;
    run_until(config, opts, &stop)
}

/// As [`run`], but stops when `stop` becomes true (whoever sets it).
pub fn run_until(
    config: &Config,
    opts: &RunOptions,
    stop: &Arc<AtomicBool>,
) -> Result<RunReport, RunError> {
    let tables = Arc::new(Tables::from_config(config)?);
    check_cores(&config.forwarder.cores)?;
    let backend = config
        .ports
        .first()
        .map_or(Backend::default(), |p| p.backend);
    match backend {
        Backend::AfPacket => {
            let ports = open_afpacket(config)?;
            run_workers(config, opts, stop, tables, ports, Vec::new(), || {})
        }
        Backend::AfXdp => {
            let (ports, notes) = open_afxdp(config, &tables)?;
            run_workers(config, opts, stop, tables, ports, notes, || {})
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => {
            let (ports, notes) = open_dpdk(config)?;
            run_workers(config, opts, stop, tables, ports, notes, dpdk_thread_init)
        }
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => Err(RunError::NoDpdk),
    }
}

/// Initialises the EAL with `[dpdk] eal_args` and opens every port's queues.
/// Returns the queues and a line per port for the start-up summary.
#[cfg(feature = "dpdk")]
fn open_dpdk(
    config: &Config,
) -> Result<(Vec<Vec<crate::port::dpdk::DpdkQueue>>, Vec<String>), RunError> {
    use crate::port::dpdk::{DpdkOptions, DpdkPort, Eal};
    let eal = match Eal::get() {
        Some(eal) => eal,
        None => Eal::init(&config.dpdk.eal_args).map_err(|e| RunError::Dpdk(e.to_string()))?,
    };
    let mut ports = Vec::with_capacity(config.ports.len());
    let mut notes = Vec::with_capacity(config.ports.len());
    for p in &config.ports {
        let opts = DpdkOptions {
            pool_mbufs: config.dpdk.mbufs,
            // Leave the driver's default (1500) alone: some virtual devices
            // cannot set an MTU at all.
            mtu: (p.mtu != vipa_proto::config::DEFAULT_MTU).then_some(p.mtu),
            promiscuous: true,
            ..DpdkOptions::default()
        };
        let queues =
            DpdkPort::open(&eal, &p.device, p.queues, &opts).map_err(|e| RunError::Open {
                port: p.name.clone(),
                device: p.device.clone(),
                detail: e.to_string(),
            })?;
        if let Some(q) = queues.first() {
            let info = q.info();
            tracing::info!(
                port = %p.name,
                device = %p.device,
                driver = %info.driver,
                socket = info.socket,
                queues = info.queues,
                rss = info.rss_hf != 0,
                ipv4_cksum_offload = info.ipv4_cksum_offload,
                "opened"
            );
            notes.push(format!(
                "port {}: DPDK {} on socket {}, {} queue{}{}, outer IPv4 checksum {}",
                p.name,
                info.driver,
                info.socket,
                info.queues,
                if info.queues == 1 { "" } else { "s" },
                if info.rss_hf != 0 { " (RSS)" } else { "" },
                if info.ipv4_cksum_offload {
                    "offloaded to the device"
                } else {
                    "in software (the device does not offer the offload)"
                }
            ));
        }
        if queues.len() < usize::from(p.queues) {
            tracing::warn!(
                port = %p.name,
                device = %p.device,
                "the device has no RSS, so it has {} queue(s) instead of {}: only the first worker(s) receive its traffic; list fewer forwarder.cores to match",
                queues.len(),
                p.queues
            );
        }
        ports.push(queues);
    }
    Ok((ports, notes))
}

/// Makes a worker thread an EAL lcore, so its mbuf allocations use a
/// per-lcore mempool cache.
#[cfg(feature = "dpdk")]
fn dpdk_thread_init() {
    if let Some(eal) = crate::port::dpdk::Eal::get() {
        if let Err(e) = eal.register_thread() {
            tracing::warn!("{e}; this worker's mbufs bypass the mempool cache (slower)");
        }
    }
}

/// The CPUs this process may run on (its affinity mask).
fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids
}

fn check_cores(cores: &[usize]) -> Result<(), RunError> {
    let available = available_cores();
    if available.is_empty() {
        // The mask could not be read: let pinning warn instead.
        return Ok(());
    }
    match cores.iter().find(|c| !available.contains(c)) {
        None => Ok(()),
        Some(&core) => Err(RunError::NoSuchCore {
            core,
            available: cpu_list(&available),
        }),
    }
}

/// `0-3, 6` style list.
fn cpu_list(ids: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if j > i + 1 {
            format!("{}-{}", ids[i], ids[j])
        } else if j == i + 1 {
            format!("{}, {}", ids[i], ids[j])
        } else {
            ids[i].to_string()
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// Network interfaces of this namespace, sorted.
fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The interface index of `device`, or `None` when there is no such interface.
fn if_index(device: &str) -> Option<u32> {
    let name = CString::new(device).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Checks that a port's interface exists (afpacket / afxdp).
fn check_interface(p: &PortConfig) -> Result<(), RunError> {
    if if_index(&p.device).is_some() {
        return Ok(());
    }
    let available = interfaces();
    Err(RunError::DeviceMissing {
        port: p.name.clone(),
        device: p.device.clone(),
        available: if available.is_empty() {
            "(none found)".into()
        } else {
            available.join(", ")
        },
    })
}

/// Warns when the interface's own MAC or MTU disagree with the
/// configuration; returns whether the configured MAC is the device's own
/// (true when that cannot be read).
fn check_interface_facts(p: &PortConfig) -> bool {
    let sys = Path::new("/sys/class/net").join(&p.device);
    let mut own_mac = true;
    if let Ok(addr) = std::fs::read_to_string(sys.join("address")) {
        let addr = addr.trim();
        if addr.parse().ok() != Some(p.mac) {
            own_mac = false;
            tracing::warn!(
                port = %p.name,
                device = %p.device,
                "the configured mac {} is not the device's address {addr}: the device is put in promiscuous mode so frames to {} reach the forwarder; set mac = \"{addr}\" unless that is intended",
                p.mac,
                p.mac
            );
        }
    }
    if let Some(mtu) = std::fs::read_to_string(sys.join("mtu"))
        .ok()
        .and_then(|m| m.trim().parse::<u32>().ok())
    {
        if mtu < u32::from(p.mtu) {
            tracing::warn!(
                port = %p.name,
                device = %p.device,
                "the configured mtu {} is above the device's mtu {mtu}: larger frames will not leave; lower mtu or run `ip link set dev {} mtu {}`",
                p.mtu,
                p.device,
                p.mtu
            );
        }
    }
    own_mac
}

/// Turns an error from opening an AF_PACKET port into one a person can act on.
fn afpacket_error(p: &PortConfig, e: AfPacketError) -> RunError {
    let port = p.name.clone();
    let device = p.device.clone();
    let os = match &e {
        AfPacketError::InterfaceMissing { .. } | AfPacketError::InvalidName { .. } => {
            return RunError::DeviceMissing {
                port,
                device,
                available: interfaces().join(", "),
            }
        }
        AfPacketError::PermissionDenied { source, .. } => {
            return RunError::Permission {
                port,
                device,
                detail: source.to_string(),
            }
        }
        AfPacketError::Ring { source, .. }
        | AfPacketError::Fanout { source, .. }
        | AfPacketError::Socket { source, .. } => source.raw_os_error(),
        AfPacketError::Options(_) => None,
    };
    match os {
        Some(libc::EPERM) | Some(libc::EACCES) => RunError::Permission {
            port,
            device,
            detail: e.to_string(),
        },
        Some(libc::EBUSY) => RunError::Busy {
            port,
            device,
            detail: e.to_string(),
        },
        Some(libc::ENODEV) | Some(libc::ENXIO) => RunError::DeviceMissing {
            port,
            device,
            available: interfaces().join(", "),
        },
        _ => RunError::Open {
            port,
            device,
            detail: e.to_string(),
        },
    }
}

/// Bytes per AF_PACKET slot for a port of IP MTU `mtu`: the largest frame
/// (MTU + Ethernet + one 802.1Q tag) plus the ring's 48-byte slot header,
/// rounded up to 16, and never below the backend's default of 2048.
fn afpacket_frame_size(mtu: u16) -> usize {
    let need = usize::from(mtu) + 14 + 4 + 48;
    need.div_ceil(16).max(2048 / 16) * 16
}

/// Opens every port's queues with AF_PACKET: per port, `queues` sockets in
/// one fanout group.
fn open_afpacket(config: &Config) -> Result<Vec<Vec<AfPacketPort>>, RunError> {
    let mut ports = Vec::with_capacity(config.ports.len());
    for p in &config.ports {
        check_interface(p)?;
        let own_mac = check_interface_facts(p);
        let opts = AfPacketOptions {
            queues: usize::from(p.queues),
            frame_size: afpacket_frame_size(p.mtu),
            // Frames to a MAC that is not the device's own are filtered out by
            // a real NIC unless it is promiscuous.
            promiscuous: !own_mac,
            ..AfPacketOptions::default()
        };
        let queues = AfPacketPort::open(&p.device, &opts).map_err(|e| afpacket_error(p, e))?;
        tracing::info!(
            port = %p.name,
            device = %p.device,
            queues = queues.len(),
            promiscuous = opts.promiscuous,
            "opened"
        );
        ports.push(queues);
    }
    Ok(ports)
}

/// Opens every port's queues with AF_XDP: per port, the XDP program
/// (native mode, else generic) with the port's addresses and one socket per
/// queue (zero-copy, else copy mode). Returns the queues and a line per port
/// for the start-up summary.
fn open_afxdp(
    config: &Config,
    tables: &Tables,
) -> Result<(Vec<Vec<AfXdpQueue>>, Vec<String>), RunError> {
    let mut ports = Vec::with_capacity(config.ports.len());
    let mut notes = Vec::with_capacity(config.ports.len());
    for (i, p) in config.ports.iter().enumerate() {
        check_interface(p)?;
        if !check_interface_facts(p) {
            tracing::warn!(
                port = %p.name,
                device = %p.device,
                "AF_XDP does not make the device promiscuous: frames to the configured mac reach the forwarder only if the device accepts them"
            );
        }
        let frame_size = AfXdpOptions::frame_size_for_mtu(p.mtu).ok_or_else(|| RunError::Open {
            port: p.name.clone(),
            device: p.device.clone(),
            detail: format!(
                "mtu {} is above what the afxdp backend handles ({}); lower mtu or use backend = \"afpacket\"",
                p.mtu,
                4096 - 256 - 18 - crate::buf::TAILROOM
            ),
        })?;
        let opts = AfXdpOptions {
            queues: usize::from(p.queues),
            frame_size,
            ..AfXdpOptions::default()
        };
        let addrs = XdpAddresses::from_tables(tables, i);
        let (queues, info) =
            AfXdpPort::open(&p.device, &addrs, &opts).map_err(|e| afxdp_error(p, e))?;
        let copy = if info.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        };
        tracing::info!(
            port = %p.name,
            device = %p.device,
            queues = queues.len(),
            xdp_mode = info.mode_name(),
            zero_copy = info.zero_copy,
            "opened"
        );
        notes.push(format!(
            "port {}: XDP program attached in {} mode, {} AF_XDP socket{} in {copy}",
            p.name,
            info.mode_name(),
            queues.len(),
            if queues.len() == 1 { "" } else { "s" }
        ));
        ports.push(queues);
    }
    Ok((ports, notes))
}

/// Turns an error from opening an AF_XDP port into one a person can act on.
fn afxdp_error(p: &PortConfig, e: AfXdpError) -> RunError {
    let port = p.name.clone();
    let device = p.device.clone();
    match &e {
        AfXdpError::InterfaceMissing { .. } | AfXdpError::InvalidName { .. } => {
            RunError::DeviceMissing {
                port,
                device,
                available: interfaces().join(", "),
            }
        }
        AfXdpError::PermissionDenied { .. } => RunError::Permission {
            port,
            device,
            detail: e.to_string(),
        },
        AfXdpError::AttachBusy { .. } => RunError::Busy {
            port,
            device,
            detail: e.to_string(),
        },
        _ if e.raw_os_error() == Some(libc::EBUSY) => RunError::Busy {
            port,
            device,
            detail: e.to_string(),
        },
        _ => RunError::Open {
            port,
            device,
            detail: e.to_string(),
        },
    }
}

/// What a worker thread reports once it is set up on its core.
struct Ready {
    pinned: bool,
    flow_capacity: usize,
    flow_memory: usize,
}

/// One running worker, seen from the main thread.
struct Running {
    core: usize,
    shared: Arc<SharedCounters>,
    handle: thread::JoinHandle<(Counters, QueueCounters)>,
}

/// Starts a worker per core over `ports` (per port, one queue per core),
/// waits for the stop flag, joins them and reports.
/// `thread_init` runs first on each worker thread, once it is pinned.
fn run_workers<Q>(
    config: &Config,
    opts: &RunOptions,
    stop: &Arc<AtomicBool>,
    tables: Arc<Tables>,
    ports: Vec<Vec<Q>>,
    notes: Vec<String>,
    thread_init: fn(),
) -> Result<RunReport, RunError>
where
    Q: PortQueue + Send + 'static,
{
    let cores = config.forwarder.cores.clone();
    let mut neighbors = Arc::new(tables.new_neighbors());
    let start = Instant::now();

    // Snapshots: a slot for the workers, the back channel, the loader (its
    // first poll here, so the workers start on the current generation).
    let mut follow: Option<(Arc<TableSlot>, Arc<BackChannel>)> = None;
    let mut loader_thread = None;
    if let Some(prefix) = &opts.snapshot {
        let path = Names::new(prefix).back();
        let back = BackChannel::create(
            &path,
            cores.len(),
            BACK_TARGET_SLOTS,
            tables.service_counting,
            BACK_RING_CAPACITY,
        )
        .map_err(|source| RunError::SnapshotChannel {
            prefix: prefix.clone(),
            path: path.clone(),
            source,
        })?;
        back.set_identity(&backend_name(config));
        let back = Arc::new(back);
        let slot = Arc::new(TableSlot::new(
            Generation {
                number: tables.generation(),
                tables: Arc::clone(&tables),
                neighbors: Arc::clone(&neighbors),
                slot_epoch: 0,
            },
            cores.len(),
        ));
        let mut loader = Loader::new(
            Arc::new(config.clone()),
            prefix,
            Arc::clone(&slot),
            Some(Arc::clone(&back)),
        );
        loader.poll();
        neighbors = Arc::clone(&slot.current().neighbors);
        let stop = Arc::clone(stop);
        loader_thread = Some(
            thread::Builder::new()
                .name("vipa-loader".into())
                .spawn(move || loader.run(&stop, SNAPSHOT_POLL))
                .map_err(|source| RunError::Spawn { core: 0, source })?,
        );
        tracing::info!(prefix = %prefix, back = %path.display(), "following snapshots");
        follow = Some((slot, back));
    }
    let current_tables = |tables: &Arc<Tables>| {
        follow.as_ref().map_or_else(
            || Arc::clone(tables),
            |(s, _)| Arc::clone(&s.current().tables),
        )
    };

    // Queue i of every port, for worker i.
    let mut per_worker: Vec<Vec<(usize, Q)>> = cores.iter().map(|_| Vec::new()).collect();
    for (port, queues) in ports.into_iter().enumerate() {
        for (w, q) in queues.into_iter().enumerate() {
            if let Some(list) = per_worker.get_mut(w) {
                list.push((port, q));
            }
        }
    }

    let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
    let mut running: Vec<Running> = Vec::with_capacity(cores.len());
    for (w, (queues, &core)) in per_worker.into_iter().zip(&cores).enumerate() {
        let shared = Arc::new(SharedCounters::new(tables.targets.len()));
        let ctx = WorkerCtx {
            index: w,
            core,
            queues,
            tables: current_tables(&tables),
            neighbors: Arc::clone(&neighbors),
            follow: follow.as_ref().map(|(s, b)| (Arc::clone(s), Arc::clone(b))),
            stop: Arc::clone(stop),
            shared: Arc::clone(&shared),
            ready: ready_tx.clone(),
            start,
            idle_polls: config.forwarder.idle_polls,
            idle_sleep: config.forwarder.idle_sleep,
            tx_drain: config.forwarder.tx_drain,
            thread_init,
        };
        let spawned = thread::Builder::new()
            .name(format!("vipa-w{w}-cpu{core}"))
            .spawn(move || worker_main(ctx));
        match spawned {
            Ok(handle) => running.push(Running {
                core,
                shared,
                handle,
            }),
            Err(source) => {
                stop.store(true, Ordering::Relaxed);
                for r in running {
                    let _ = r.handle.join();
                }
                return Err(RunError::Spawn { core, source });
            }
        }
    }
    drop(ready_tx);

    // Wait until every worker is set up on its core (or one died trying).
    let mut flow = (0, 0);
    for _ in 0..running.len() {
        match ready_rx.recv() {
            Ok(r) => {
                flow = (r.flow_capacity, r.flow_memory);
                if !r.pinned {
                    tracing::warn!("a worker could not be pinned to its CPU; it runs unpinned");
                }
            }
            Err(_) => break,
        }
    }
    print!("{}", summary(config, &tables, &notes, flow.0, flow.1));
    let _ = std::io::stdout().flush();
    tracing::info!(
        workers = running.len(),
        "forwarding; stop with SIGINT (Ctrl-C) or SIGTERM"
    );

    // Watch: statistics once a second; a worker that ends early stops all.
    let mut next_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if running.iter().any(|r| r.handle.is_finished()) {
            tracing::error!("a worker ended on its own; stopping the others");
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if let Some(path) = &opts.stats {
            if Instant::now() >= next_stats {
                let counters: Vec<Counters> = running.iter().map(|r| r.shared.read()).collect();
                let report =
                    RunReport::new(start.elapsed(), &cores, &counters, &current_tables(&tables));
                if let Err(e) = write_stats(path, &report) {
                    tracing::warn!(path = %path.display(), "cannot write the statistics: {e}");
                }
                next_stats += Duration::from_secs(1);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("stopping: the workers finish their current burst");

    let mut finals = Vec::with_capacity(running.len());
    let mut queues = Vec::new();
    let mut panicked = None;
    for (w, r) in running.into_iter().enumerate() {
        match r.handle.join() {
            Ok((c, q)) => {
                finals.push(c);
                queues.extend(q.into_iter().map(|(port, counters)| {
                    QueueReport {
                        port: config
                            .ports
                            .get(port)
                            .map_or_else(String::new, |p| p.name.clone()),
                        queue: w,
                        counters,
                    }
                }));
            }
            Err(p) => {
                let message = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                finals.push(r.shared.read());
                panicked.get_or_insert(RunError::WorkerPanicked {
                    core: r.core,
                    message,
                });
            }
        }
    }
    if let Some(h) = loader_thread {
        let _ = h.join();
    }
    let mut report = RunReport::new(start.elapsed(), &cores, &finals, &current_tables(&tables));
    report.queues = queues;
    if let Some(path) = &opts.stats {
        if let Err(e) = write_stats(path, &report) {
            tracing::warn!(path = %path.display(), "cannot write the statistics: {e}");
        }
    }
    match panicked {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Everything a worker thread takes with it.
struct WorkerCtx<Q: PortQueue> {
    index: usize,
    core: usize,
    queues: Vec<(usize, Q)>,
    tables: Arc<Tables>,
    neighbors: Arc<Neighbors>,
    /// The snapshot slot to follow and the back channel, with `--snapshot`.
    follow: Option<(Arc<TableSlot>, Arc<BackChannel>)>,
    stop: Arc<AtomicBool>,
    shared: Arc<SharedCounters>,
    ready: mpsc::Sender<Ready>,
    start: Instant,
    idle_polls: u32,
    idle_sleep: Duration,
    /// `forwarder.tx_drain_us`: the longest a partial transmit batch waits.
    tx_drain: Duration,
    thread_init: fn(),
}

/// Seconds on the workers' clock: whole seconds since start, plus one (an
/// expiry of 0 means "never used" to the flow table).
#[inline]
fn clock(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_secs())
        .unwrap_or(u32::MAX - 1)
        .saturating_add(1)
}

/// Per queue of a worker: its port's index and the backend's counters.
type QueueCounters = Vec<(usize, BTreeMap<&'static str, u64>)>;

/// A worker thread: pin, build the worker, poll until stopped. Returns its
/// counters and its queues' backend counters.
fn worker_main<Q: PortQueue>(ctx: WorkerCtx<Q>) -> (Counters, QueueCounters) {
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: ctx.core });
    (ctx.thread_init)();
    let mut worker = Worker::with_neighbors(ctx.queues, ctx.tables, ctx.neighbors, ctx.index == 0);
    if let Some((slot, back)) = &ctx.follow {
        worker.follow(Arc::clone(slot), ctx.index);
        // A worker that starts on the slot's current generation never
        // switches to it, so it would never acknowledge it: say now which
        // one it uses (the back channel shows it to vipa-control).
        slot.ack(ctx.index, worker.generation());
        worker.pipeline.flow_events = Some(FlowEventSink::new(Arc::clone(back), ctx.index));
    }
    let _ = ctx.ready.send(Ready {
        pinned,
        flow_capacity: worker.pipeline.flows.capacity(),
        flow_memory: worker.pipeline.flows.memory_bytes(),
    });
    drop(ctx.ready);
    tracing::debug!(
        worker = ctx.index,
        core = ctx.core,
        pinned,
        "worker started"
    );

    worker.set_tx_drain(ctx.tx_drain);
    let mut now = clock(ctx.start);
    worker.start(now);
    let mut published = 0;
    let mut idle: u32 = 0;
    while !ctx.stop.load(Ordering::Relaxed) {
        now = clock(ctx.start);
        if worker.poll(now) != 0 {
            idle = 0;
        } else if idle < ctx.idle_polls {
            idle += 1;
        } else if !ctx.idle_sleep.is_zero() {
            thread::sleep(ctx.idle_sleep);
        }
        if now != published {
            ctx.shared.publish(worker.counters());
            if let Some((_, back)) = &ctx.follow {
                back.publish(ctx.index, now, worker.counters());
            }
            published = now;
        }
    }
    worker.drain_tx();
    ctx.shared.publish(worker.counters());
    if let Some((_, back)) = &ctx.follow {
        back.publish(ctx.index, now, worker.counters());
    }
    tracing::debug!(worker = ctx.index, core = ctx.core, "worker stopped");
    let queues = worker
        .queues
        .iter_mut()
        .map(|(port, q)| {
            let mut m = BTreeMap::new();
            q.port_counters(&mut |k, v| {
                m.insert(k, v);
            });
            (*port, m)
        })
        .collect();
    (worker.counters().clone(), queues)
}

/// Writes `report` as JSON to `path` atomically (a temporary file renamed).
fn write_stats(path: &Path, report: &RunReport) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let json = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// The backend the ports run on, as the configuration names it.
fn backend_name(config: &Config) -> String {
    config
        .ports
        .first()
        .map_or(Backend::default(), |p| p.backend)
        .to_string()
}

/// The start-up summary: backend, ports, cores, VIPAs, flow table.
fn summary(
    config: &Config,
    tables: &Tables,
    notes: &[String],
    flow_capacity: usize,
    flow_memory: usize,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let backend = config
        .ports
        .first()
        .map_or(Backend::default(), |p| p.backend);
    let _ = writeln!(
        s,
        "vipa-forwarder {}: node {}, backend {backend}",
        env!("CARGO_PKG_VERSION"),
        config.node.name
    );
    let _ = writeln!(
        s,
        "{:<12} {:<16} {:<17} {:>5} {:>6}  next hop",
        "port", "device", "mac", "mtu", "queues"
    );
    for p in &config.ports {
        let next_hop = match (p.next_hop_mac, p.gateway) {
            (Some(mac), _) => format!("static {mac}"),
            (None, Some(gw)) => format!("gateway {gw} (resolved)"),
            (None, None) => "resolved per target".to_owned(),
        };
        let _ = writeln!(
            s,
            "{:<12} {:<16} {:<17} {:>5} {:>6}  {next_hop}",
            p.name, p.device, p.mac, p.mtu, p.queues
        );
    }
    for n in notes {
        let _ = writeln!(s, "{n}");
    }
    let cores: Vec<String> = config
        .forwarder
        .cores
        .iter()
        .enumerate()
        .map(|(i, c)| format!("cpu{c} (worker {i})"))
        .collect();
    let _ = writeln!(s, "cores: {}", cores.join(", "));
    let idle = if config.forwarder.idle_sleep.is_zero() {
        "busy-poll".to_owned()
    } else {
        format!(
            "sleep {} µs after {} empty polls",
            config.forwarder.idle_sleep.as_micros(),
            config.forwarder.idle_polls
        )
    };
    let _ = writeln!(s, "idle: {idle}");
    if config.vipas.is_empty() {
        let _ = writeln!(s, "vipas: none");
    }
    for v in &config.vipas {
        let services: Vec<String> = v.services.iter().map(ToString::to_string).collect();
        let ready = v.targets.iter().filter(|t| t.weight > 0).count();
        let _ = writeln!(
            s,
            "vipa {:<24} {:<28} {} target{} ({ready} with weight)",
            v.address.to_string(),
            services.join(" "),
            v.targets.len(),
            if v.targets.len() == 1 { "" } else { "s" }
        );
    }
    let workers = config.forwarder.cores.len();
    let _ = writeln!(
        s,
        "flow table: {flow_capacity} flows, {} per worker ({} for {workers} worker{}), idle timeout {} s",
        mib(flow_memory),
        mib(flow_memory * workers),
        if workers == 1 { "" } else { "s" },
        tables.flow_idle_timeout
    );
    s
}

/// Bytes for people: `64 KiB`, `64.0 MiB`.
fn mib(bytes: usize) -> String {
    if bytes < 1 << 20 {
        format!("{} KiB", bytes.div_ceil(1024))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(mib(64 * 1024), "64 KiB");
        assert_eq!(mib(1), "1 KiB");
        assert_eq!(mib(64 << 20), "64.0 MiB");
        assert_eq!(afpacket_frame_size(1500), 2048);
        assert_eq!(afpacket_frame_size(9000), 9072);
        assert_eq!(afpacket_frame_size(9000) % 16, 0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 1]), "0, 1");
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3, 6, 8, 9");
        assert_eq!(cpu_list(&[]), "");
    }

    #[test]
    fn missing_core_is_named_with_the_available_ones() {
        let err = check_cores(&[usize::MAX]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("is not available"), "{msg}");
        assert!(msg.contains("it may use CPUs 0"), "{msg}");
        assert!(check_cores(&[available_cores()[0]]).is_ok());
    }

    #[test]
    fn missing_device_is_named_with_the_interfaces() {
        let text = "[node]\nname = \"n\"\n[[port]]\nname = \"p0\"\ndevice = \"vipa-nosuch0\"\nmac = \"02:00:00:00:0a:01\"\n";
        let config = Config::from_str_with_path(text, Path::new("t.toml")).unwrap();
        let err = run_until(
            &config,
            &RunOptions::default(),
            &Arc::new(AtomicBool::new(true)),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("port p0: device \"vipa-nosuch0\" does not exist"),
            "{msg}"
        );
        assert!(msg.contains("lo"), "{msg}");
        assert!(msg.contains("`ip link`"), "{msg}");
    }

    #[test]
    fn afxdp_missing_device_is_named() {
        let text = "[node]\nname = \"n\"\n[[port]]\nname = \"p0\"\nbackend = \"afxdp\"\ndevice = \"vipa-nosuch0\"\nmac = \"02:00:00:00:0a:01\"\n";
        let config = Config::from_str_with_path(text, Path::new("t.toml")).unwrap();
        let err = run_until(
            &config,
            &RunOptions::default(),
            &Arc::new(AtomicBool::new(true)),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("port p0: device \"vipa-nosuch0\" does not exist"),
            "{msg}"
        );
    }

    #[test]
    fn backends_not_built() {
        let text = |b: &str| {
            format!("[node]\nname = \"n\"\n[[port]]\nname = \"p0\"\nbackend = \"{b}\"\nmac = \"02:00:00:00:0a:01\"\n")
        };
        let stop = Arc::new(AtomicBool::new(true));
        if cfg!(not(feature = "dpdk")) {
            let c = Config::from_str_with_path(&text("dpdk"), Path::new("t.toml")).unwrap();
            let msg = run_until(&c, &RunOptions::default(), &stop)
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("this build has no DPDK support: rebuild with --features dpdk"),
                "{msg}"
            );
        }
    }

    #[test]
    fn shared_counters_round_trip() {
        let mut c = Counters::new(2);
        c.add(Counter::RxPackets, 7);
        c.add(Counter::ArpReplies, 1);
        c.targets[1].packets = 5;
        let shared = SharedCounters::new(2);
        shared.publish(&c);
        let back = shared.read();
        assert_eq!(back.get(Counter::RxPackets), 7);
        assert_eq!(back.get(Counter::ArpReplies), 1);
        assert_eq!(back.targets[1].packets, 5);
    }
}
