//! `vipa-bench`: throughput harnesses. Parses arguments, calls the library.
//!
//! Figures are medians of ten timed segments per case; the first line is
//! the baseline (the bare in-memory port) measured in the same run.

use clap::{Parser, Subcommand};
use vipa_benches::pipeline::{run_all, Settings};

#[derive(Parser)]
#[command(name = "vipa-bench", about = "vipa throughput harnesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The worker loop on the in-memory port, one pinned core, pre-built frames.
    Pipeline {
        /// One JSON line per case.
        #[arg(long)]
        json: bool,
        /// Packets timed per case.
        #[arg(long, default_value_t = 20_000_000)]
        packets: u64,
        /// Core to pin to (-1: do not pin).
        #[arg(long, default_value_t = 1)]
        core: i64,
        /// Only cases whose name contains this.
        #[arg(long)]
        filter: Option<String>,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Pipeline {
            json,
            packets,
            core,
            filter,
        } => {
            let settings = Settings {
                packets,
                core: usize::try_from(core).ok(),
                filter,
            };
            if !json {
                println!(
                    "{:<18} {:>8} {:>10} {:>16} {:>8} {:>10} {:>10} {:>6} {:>10}",
                    "case",
                    "Mpps",
                    "ns/packet",
                    "(min..max)",
                    "cpu ns",
                    "packets",
                    "flows",
                    "tx/rx",
                    "×baseline"
                );
            }
            run_all(&settings, |r| {
                if json {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                } else {
                    let range = format!("({:.1}..{:.1})", r.ns_min, r.ns_max);
                    let ratio = r.vs_baseline.map_or("-".to_owned(), |x| format!("{x:.2}"));
                    println!(
                        "{:<18} {:>8.2} {:>10.1} {:>16} {:>8.1} {:>10} {:>10} {:>6.3} {:>10}",
                        r.case,
                        r.mpps,
                        r.ns_per_packet,
                        range,
                        r.cpu_ns_per_packet,
                        r.packets,
                        r.flows,
                        r.tx_ratio,
                        ratio
                    );
                }
            });
        }
    }
}
