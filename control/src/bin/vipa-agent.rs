//! `vipa-agent`: runs on each target. Parses arguments, calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vipa_control::agent::decap::{self, DecapOptions};

#[derive(Parser)]
#[command(name = "vipa-agent", version, about = "vipa's agent on a target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decapsulate GRE sent to this host on IFACE into a new TUN device, until SIGINT or SIGTERM.
    ///
    /// For targets whose kernel has no GRE module. The target also needs the
    /// VIPA on lo, arp_ignore=1, arp_announce=2, rp_filter=0, and GRE dropped
    /// on input (e.g. `nft add rule inet filter input meta l4proto gre drop`).
    /// The counters are printed when it stops. Logs go to stderr; set
    /// RUST_LOG (e.g. RUST_LOG=debug) for more or less.
    ///
    /// Example: vipa-agent decap --iface eth0 --tun vipa0
    Decap {
        /// Interface the GRE packets arrive on.
        #[arg(long)]
        iface: String,
        /// Name of the TUN device to create (removed again on exit).
        #[arg(long, default_value = "vipa0")]
        tun: String,
    },
}

fn main() -> ExitCode {
    init_logging();
    match Cli::parse().command {
        Command::Decap { iface, tun } => {
            match decap::run_until_signal(&DecapOptions { iface, tun }) {
                Ok(counters) => {
                    print!("{}", counters.to_text());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("vipa-agent decap: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `tracing` to stderr, filtered by RUST_LOG (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
