//! `vipa-control`: the routing node's daemon. Parses arguments, calls the
//! library (`vipa_control::daemon::node`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vipa_control::daemon::{self, node::NodeOptions};
use vipa_proto::config::Config;

/// vipa's control-plane daemon on a routing node.
///
/// Runs the cluster protocol with the other routing nodes and the agents
/// on the targets, publishes what this node routes to `vipa-forwarder run
/// --snapshot PREFIX`, and serves the HTTP API and /metrics on
/// cluster.api. Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) for
/// more or less. Stops on SIGINT or SIGTERM.
///
/// Example: vipa-control --config /etc/vipa/vipa.toml --snapshot /dev/shm/vipa
#[derive(Parser)]
#[command(name = "vipa-control", version)]
struct Cli {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
    /// The snapshot channel shared with the forwarder (`vipa-forwarder run --snapshot PREFIX`); without it nothing is published.
    #[arg(long, value_name = "PREFIX")]
    snapshot: Option<String>,
    /// Serve the HTTP API here instead of cluster.api.
    #[arg(long, value_name = "ADDRESS:PORT")]
    api: Option<SocketAddr>,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vipa-control: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vipa-control: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = NodeOptions {
        config,
        snapshot: cli.snapshot,
        api: cli.api,
    };
    match rt.block_on(daemon::node::run(opts, daemon::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipa-control: {e}");
            ExitCode::FAILURE
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
