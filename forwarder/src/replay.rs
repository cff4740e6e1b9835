//! `vipa-forwarder replay`: the worker over a capture.
//!
//! The worker is the one the live backends run, on a [`PcapPort`]: what it
//! would transmit goes to the output capture, what it would hand to the host
//! to the host capture. The clock is the capture's: each burst runs at the
//! timestamp of its first frame, so flow expiry behaves as it did on the wire
//! and the same input and configuration give byte-identical output.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use vipa_proto::config::Config;

use crate::counters::Counters;
use crate::port::pcap::{PcapPort, PcapPortError};
use crate::tables::{Tables, TablesError};
use crate::worker::Worker;

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Input capture (pcap, Ethernet).
    pub input: PathBuf,
    /// Output capture of transmitted frames.
    pub output: PathBuf,
    /// Output capture of frames for the host.
    pub host: Option<PathBuf>,
    /// Name of the configured port the capture arrives on (default: the first).
    pub port: Option<String>,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Tables(#[from] TablesError),
    #[error(transparent)]
    Pcap(#[from] PcapPortError),
    #[error("port {name:?} is not in the configuration (ports: {known})")]
    UnknownPort { name: String, known: String },
    #[error("the configuration has no [[port]]; replay needs one to receive on")]
    NoPort,
}

/// Per-target result of a replay.
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

/// The result of a replay: frame totals, counters by name, targets.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Port the capture was received on.
    pub port: String,
    /// Frames read from the input.
    pub frames_in: u64,
    /// Every counter, by name (zeros included, so scripts can rely on keys).
    pub counters: std::collections::BTreeMap<&'static str, u64>,
    /// Per-target figures.
    pub targets: Vec<TargetReport>,
}

impl ReplayReport {
    fn new(port: String, frames_in: u64, counters: &Counters, tables: &Tables) -> Self {
        let all = crate::counters::Counter::ALL
            .iter()
            .map(|c| (c.name(), counters.get(*c)))
            .collect();
        let targets = tables
            .targets
            .iter()
            .zip(counters.targets.iter())
            .map(|(t, c)| TargetReport {
                address: t.address,
                flows: c.flows,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        ReplayReport {
            port,
            frames_in,
            counters: all,
            targets,
        }
    }

    /// A table for people: targets, then non-zero counters.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "replayed {} frames received on port {}",
            self.frames_in, self.port
        );
        let _ = writeln!(
            s,
            "\n{:<28} {:>10} {:>12} {:>14}",
            "target", "flows", "packets", "bytes"
        );
        for t in &self.targets {
            let _ = writeln!(
                s,
                "{:<28} {:>10} {:>12} {:>14}",
                t.address.to_string(),
                t.flows,
                t.packets,
                t.bytes
            );
        }
        let _ = writeln!(s, "\n{:<28} {:>12}", "counter", "value");
        for (name, v) in self.counters.iter().filter(|(_, v)| **v != 0) {
            let _ = writeln!(s, "{name:<28} {v:>12}");
        }
        s
    }
}

/// Replays `opts.input` through a worker configured by `config`.
pub fn replay(config: &Config, opts: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let tables = Arc::new(Tables::from_config(config)?);
    let port_index = match &opts.port {
        Some(name) => tables
            .port_index(name)
            .ok_or_else(|| ReplayError::UnknownPort {
                name: name.clone(),
                known: tables
                    .ports
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        None if tables.ports.is_empty() => return Err(ReplayError::NoPort),
        None => 0,
    };
    let port_name = tables.ports[port_index].name.clone();
    let pcap = PcapPort::open(&opts.input, &opts.output, opts.host.as_deref())?;
    let mut worker = Worker::new(vec![(port_index, pcap)], Arc::clone(&tables));
    loop {
        let now = clock(worker.queues[0].1.now());
        worker.poll(now);
        if worker.queues[0].1.finished() {
            break;
        }
    }
    let (_, pcap) = worker.queues.pop().ok_or(ReplayError::NoPort)?;
    let frames_in = pcap.frames_in;
    pcap.finish()?;
    Ok(ReplayReport::new(
        port_name,
        frames_in,
        &worker.pipeline.counters,
        &tables,
    ))
}

/// Seconds on the flow table's clock for a capture timestamp (never 0:
/// an entry expiring at 0 means "never used").
fn clock(ts: std::time::Duration) -> u32 {
    (ts.as_secs().min(u64::from(u32::MAX - 1)) as u32).saturating_add(1)
}
