//! `vipa-forwarder`: the data plane binary. Parses arguments, calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vipa_forwarder::replay::{replay, ReplayOptions};
use vipa_forwarder::run::RunOptions;
use vipa_proto::config::Config;

#[derive(Parser)]
#[command(name = "vipa-forwarder", version, about = "vipa's data plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward on the configured ports until SIGINT or SIGTERM, then print the counters.
    ///
    /// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more or less.
    ///
    /// Example: vipa-forwarder run --config /etc/vipa/vipa.toml --stats /run/vipa/stats.json
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Write every worker's counters as JSON to this file once a second.
        #[arg(long)]
        stats: Option<PathBuf>,
        /// Print the final counters as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Follow the control plane's snapshots on this channel: a name in
        /// /dev/shm (e.g. "vipa": /dev/shm/vipa.head, vipa.gen.N, vipa.back)
        /// or a path prefix. Without it the configuration's tables are used.
        #[arg(long, value_name = "PREFIX")]
        snapshot: Option<String>,
    },
    /// Run the pipeline over a capture: transmitted frames to --out, host frames to --host.
    ///
    /// Example: vipa-forwarder replay --config examples/vipa.toml --in in.pcap --out out.pcap --json
    Replay {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Input capture (pcap, Ethernet link type).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output capture for frames the data plane transmits.
        #[arg(long)]
        out: PathBuf,
        /// Output capture for frames handed to the host.
        #[arg(long)]
        host: Option<PathBuf>,
        /// Configured port the capture arrives on (default: the first).
        #[arg(long)]
        port: Option<String>,
        /// Print the counters as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipa-forwarder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            config,
            stats,
            json,
            snapshot,
        } => {
            init_logging();
            let cfg = Config::load(&config)?;
            let report = vipa_forwarder::run::run(&cfg, &RunOptions { stats, snapshot })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Command::Replay {
            config,
            input,
            out,
            host,
            port,
            json,
        } => {
            let cfg = Config::load(&config)?;
            let report = replay(
                &cfg,
                &ReplayOptions {
                    input,
                    output: out,
                    host,
                    port,
                },
            )
            .context("replay failed")?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
