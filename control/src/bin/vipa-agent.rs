//! `vipa-agent`: runs on each target. Parses arguments, calls the library.

use std::process::ExitCode;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vipa_control::agent::decap::{self, DecapOptions};
use vipa_control::agent::discovery::output::{self, SocketsOptions};
use vipa_control::agent::discovery::Scope;
use vipa_control::daemon::{
    self,
    agent::{self, AgentOptions, Source},
};
use vipa_proto::config::Service;

#[derive(Parser)]
#[command(name = "vipa-agent", version, about = "vipa's agent on a target")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report this target's listeners and connections on its VIPAs to their owners, until SIGINT or SIGTERM.
    ///
    /// Watches the sockets on every VIPA whose target list names --address
    /// (netlink sock_diag), listens for the routing nodes on
    /// ADDRESS:cluster.port (TCP), and reports to whichever node owns each
    /// VIPA with the newest epoch, following it across takeovers. The
    /// configuration is the routing nodes' (or one with the same `[cluster]`
    /// and `[[vipa]]` sections). With --decap, also decapsulates GRE from
    /// IFACE into a TUN device (see `vipa-agent decap --help`). Logs go to
    /// stderr; set RUST_LOG (e.g. RUST_LOG=debug) for more or less.
    ///
    /// Example: vipa-agent run --config /etc/vipa/vipa.toml --address 10.20.0.11 --decap eth0
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// This target's address, as the VIPAs' target lists name it.
        #[arg(long)]
        address: IpAddr,
        /// Listen for the routing nodes here instead of ADDRESS:cluster.port.
        #[arg(long, value_name = "ADDRESS:PORT")]
        listen: Option<SocketAddr>,
        /// How often to look at the sockets, in milliseconds.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        interval_ms: u64,
        /// Also decapsulate GRE arriving on this interface.
        #[arg(long, value_name = "IFACE")]
        decap: Option<String>,
        /// With --decap: the TUN device to create.
        #[arg(long, default_value = "vipa0")]
        tun: String,
    },
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
    daemon::init_logging();
    match Cli::parse().command {
        Command::Run {
            config,
            address,
            listen,
            interval_ms,
            decap,
            tun,
        } => run(
            config,
            address,
            listen,
            interval_ms,
            decap.map(|iface| DecapOptions { iface, tun }),
        ),
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

fn run(
    config: PathBuf,
    address: IpAddr,
    listen: Option<SocketAddr>,
    interval_ms: u64,
    decap: Option<DecapOptions>,
) -> ExitCode {
    daemon::run_main("vipa-agent run", &config, |config| {
        let opts = AgentOptions {
            config,
            address,
            listen,
            decap,
        };
        let source = Source::SockDiag(Duration::from_millis(interval_ms));
        agent::run(opts, source, daemon::shutdown_signal())
    })
}
