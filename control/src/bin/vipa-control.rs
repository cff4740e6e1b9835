//! `vipa-control`: the routing node's daemon. Parses arguments, calls the
//! library (`vipa_control::daemon::node`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vipa_control::daemon::{self, node::NodeOptions};

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
    daemon::init_logging();
    let cli = Cli::parse();
    daemon::run_main("vipa-control", &cli.config, |config| {
        let opts = NodeOptions {
            config,
            snapshot: cli.snapshot,
            api: cli.api,
        };
        daemon::node::run(opts, daemon::shutdown_signal())
    })
}
