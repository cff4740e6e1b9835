//! `vipa-bench`: throughput harnesses. Parses arguments, calls the library.

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
                    "{:<18} {:>10} {:>14} {:>12} {:>10} {:>9}",
                    "case", "Mpps", "ns/packet", "packets", "flows", "tx/rx"
                );
            }
            run_all(&settings, |r| {
                if json {
                    println!("{}", serde_json::to_string(r).unwrap_or_default());
                } else {
                    println!(
                        "{:<18} {:>10.2} {:>14.1} {:>12} {:>10} {:>9.3}",
                        r.case, r.mpps, r.ns_per_packet, r.packets, r.flows, r.tx_ratio
                    );
                }
            });
        }
    }
}
