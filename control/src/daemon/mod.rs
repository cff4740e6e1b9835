//! The tokio drivers around the cluster state machines (DESIGN.md §3):
//! `vipa-control` on routing nodes ([`node`]) and `vipa-agent run` on
//! targets ([`agent`]).
//!
//! In the style of quinn: the state machines decide, the drivers only move
//! bytes, fire timers and carry out events. Each driver is one task that
//! owns its state machine and `select!`s over the messages that arrived,
//! the state machine's next deadline, the operator's requests and, for
//! the node, the forwarder's back channel; after every step it sends what
//! the state machine queued and handles its events. Time is milliseconds
//! since the process started ([`tokio::time::Instant`], monotonic).
//!
//! - [`transport`]: TCP streams (hello first) and SWIM datagrams.
//! - [`convert`]: the state machine's snapshot as the forwarder's.
//! - [`api`]: the HTTP JSON API and Prometheus `/metrics`.
//! - [`forwarder`]: the forwarder's health, from its back channel.

pub mod agent;
pub mod api;
pub mod convert;
pub mod forwarder;
pub mod node;
pub mod transport;

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use vipa_proto::config::Config;

/// Milliseconds since the Unix epoch: a process generation / agent session
/// that grows with every restart.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

/// How both daemons log: `tracing` to stderr, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The `main` of both daemons: loads the configuration at `config`, runs
/// the future `daemon` makes of it on a current-thread tokio runtime until
/// it ends (it watches [`shutdown_signal`] itself), and turns any failure
/// into one line on stderr, prefixed with `name`, and a failing exit code.
pub fn run_main<F, E>(name: &str, config: &Path, daemon: impl FnOnce(Config) -> F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
