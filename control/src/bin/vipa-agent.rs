//! `vipa-agent`: runs on each target. Parses arguments, calls the library.

use std::process::ExitCode;

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vipa_control::agent::decap::{self, DecapOptions};
use vipa_control::agent::discovery::output::{self, SocketsOptions};
use vipa_control::agent::discovery::Scope;
use vipa_proto::config::Service;

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
    /// Print the listeners on the VIPAs and the connections to them, as the agent sees them.
    ///
    /// A listener serves VIPA:port when it is bound to the VIPA or to a
    /// wildcard (0.0.0.0 serves the IPv4 VIPAs; :: serves the IPv6 VIPAs,
    /// and the IPv4 ones too unless IPV6_V6ONLY is set). A connection is a
    /// TCP socket whose local end is VIPA:port, where port is a --service
    /// port, or (without --service) a port something listens on now. With
    /// --watch, prints each change with a UTC timestamp until SIGINT or
    /// SIGTERM; the first lines are everything there is.
    ///
    /// Example: vipa-agent sockets --vipa 10.99.0.100
    ///
    /// Example: vipa-agent sockets --vipa 10.99.0.100 --vipa fd00:99::100 --service tcp/80 --watch --json
    Sockets {
        /// A VIPA (IPv4 or IPv6); repeat for more.
        #[arg(long = "vipa", required = true, value_name = "ADDRESS")]
        vipas: Vec<IpAddr>,
        /// Only this service (tcp/PORT or udp/PORT); repeat for more.
        #[arg(long = "service", value_name = "PROTO/PORT")]
        services: Vec<Service>,
        /// Leave UDP out.
        #[arg(long)]
        no_udp: bool,
        /// JSON instead of text (with --watch: one object per line).
        #[arg(long)]
        json: bool,
        /// Keep watching and print changes as they happen.
        #[arg(long)]
        watch: bool,
        /// With --watch: how often to look, in milliseconds.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        interval_ms: u64,
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
        Command::Sockets {
            vipas,
            services,
            no_udp,
            json,
            watch,
            interval_ms,
        } => {
            let mut scope = Scope::new(vipas).with_udp(!no_udp);
            if !services.is_empty() {
                scope = scope.with_services(services);
            }
            let opts = SocketsOptions {
                scope,
                json,
                watch,
                interval: Duration::from_millis(interval_ms),
            };
            match output::run_sockets_until_signal(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("vipa-agent sockets: {e}");
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
