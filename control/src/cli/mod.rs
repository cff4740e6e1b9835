//! `vipactl`: the operator CLI, a client of `vipa-control`'s HTTP API
//! (see [`crate::daemon::api`]).
//!
//! [`Cli`] is the command line (clap derive), [`run`] does one command and
//! returns the exit code ([`EXIT_OK`], [`EXIT_REFUSED`],
//! [`EXIT_UNREACHABLE`], [`EXIT_USAGE`]); the `render_*` functions turn the
//! API's JSON into tables.

pub mod http;
pub mod stats;
pub mod table;

pub use stats::render_stats;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use http::{Endpoint, HttpError};
use table::{bytes, thousands, Align, Table};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The daemon answered with an error (bad request, no such VIPA, …) or
/// with something that is not the API's JSON.
pub const EXIT_REFUSED: u8 = 1;
/// No connection to the daemon.
pub const EXIT_UNREACHABLE: u8 = 2;
/// Bad command line (sysexits' EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// The API address when neither --control nor VIPA_CONTROL says otherwise
/// (the daemon's default `cluster.api`).
pub const DEFAULT_CONTROL: &str = "http://127.0.0.1:9470";

const AFTER_HELP: &str = "\
Examples:
  vipactl status                                this node on one screen: VIPAs, forwarder, peers, agents
  vipactl vipa                                  who owns each VIPA, with which epoch
  vipactl config                                the VIPAs as configured: owner, backups, targets
  vipactl dpt --detail                          every target of every owned VIPA:port
  vipactl crt --vipa 192.0.2.10 --limit 20      the first 20 connections to a VIPA
  vipactl crt --client 198.51.100.7 --json      one client's connections, as JSON
  vipactl stats                                 the daemon's and the forwarder's counters
  vipactl stats --watch --interval 2            redraw every 2 s with per-second rates (Ctrl-C: exit 0)
  vipactl stats --watch --json | jq .rates      one JSON object per line, with rates
  vipactl quiesce target 10.20.0.11 --vipa 192.0.2.10
  vipactl resume port 192.0.2.10:443 --dry-run  show the request, send nothing
  vipactl --control http://fwd-b:9470 deactivate 192.0.2.10
  vipactl completions bash > /etc/bash_completion.d/vipactl
  vipactl help stats                            a command's options and examples

Exit codes:
  0   ok
  1   the daemon refused the request (bad request, no such VIPA or target)
      or did not answer with the API's JSON
  2   the daemon is unreachable (not running? another address in its
      cluster.api? set --control or VIPA_CONTROL)
  64  usage: bad arguments";

const STATUS_HELP: &str = "\
Examples:
  vipactl status                                this node
  vipactl --control http://fwd-b:9470 status    another routing node
  vipactl status --json | jq .forwarder         the forwarder's health, for a script

The forwarder is ok while its loader's heartbeat is fresh (2 s) and every
worker copies its counters (3.5 s); DOWN, STALLED or ABSENT say what to check.";

const CONFIG_HELP: &str = "\
Examples:
  vipactl config
  vipactl config --json | jq '.vipas[] | {vipa, owner, backups, moveable}'";

const VIPA_HELP: &str = "\
Examples:
  vipactl vipa
  vipactl vipa --json | jq -r '.vipas[] | select(.state == \"Active\") | .vipa'";

const DPT_HELP: &str = "\
Examples:
  vipactl dpt                                   targets of the VIPAs this node owns
  vipactl dpt --detail                          with candidate and epoch
  vipactl dpt --json | jq '.dpt[].targets[] | {target, packets, bytes}'
                                                packets and bytes per VIPA:port and target
  vipactl dpt --json | jq .traffic              per target over all VIPA:ports";

const CRT_HELP: &str = "\
Examples:
  vipactl crt --vipa 192.0.2.10 --limit 20      the first 20 connections to a VIPA
  vipactl crt --client 198.51.100.7             one client's connections
  vipactl crt --client 198.51.100.7:40000       one connection
  vipactl crt --target 10.20.0.11 --json | jq .matched";

const STATS_HELP: &str = "\
Examples:
  vipactl stats                                 counters once
  vipactl stats --watch                         redraw every second with rates; Ctrl-C to stop (exit 0)
  vipactl stats --watch --interval 5
  vipactl stats --watch --json | jq -c '.rates.forwarder'";

const QUIESCE_HELP: &str = "\
Examples:
  vipactl quiesce target 10.20.0.11 --vipa 192.0.2.10
  vipactl quiesce target 10.20.0.11 --vipa 192.0.2.10 --service tcp/443
  vipactl quiesce port 192.0.2.10:443           every target of the VIPA:port
  vipactl quiesce port 192.0.2.10:53 --protocol udp --dry-run";

const RESUME_HELP: &str = "\
Examples:
  vipactl resume target 10.20.0.11 --vipa 192.0.2.10
  vipactl resume port 192.0.2.10:443 --dry-run  show the request, send nothing";

const DEACTIVATE_HELP: &str = "\
Examples:
  vipactl deactivate 192.0.2.10                 a backup takes the VIPA over (manual takeover)
  vipactl deactivate 192.0.2.10 --dry-run";

const REACTIVATE_HELP: &str = "\
Examples:
  vipactl reactivate 192.0.2.10                 this node may own it again (takeback, per moveable)";

const COMPLETIONS_HELP: &str = "\
Examples:
  vipactl completions bash > /etc/bash_completion.d/vipactl
  vipactl completions zsh > \"${fpath[1]}/_vipactl\"
  vipactl completions fish > ~/.config/fish/completions/vipactl.fish";

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "vipactl",
    version,
    about = "Operate vipa: look at and change what a routing node's vipa-control does",
    long_about = "Operate vipa: look at and change what a routing node's vipa-control does.\n\n\
        Talks to vipa-control's HTTP API (cluster.api in its configuration). \
        Tables are for people; --json prints the API's JSON for scripts.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The vipa-control API to talk to.
    #[arg(long, global = true, env = "VIPA_CONTROL", default_value = DEFAULT_CONTROL, value_name = "URL")]
    pub control: String,
    /// Give up on the daemon after this many seconds.
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A command.
#[derive(Subcommand, Debug, PartialEq)]
pub enum Command {
    /// This node on one screen: its VIPAs, its forwarder's health, the snapshot, peers and agents.
    #[command(after_help = STATUS_HELP)]
    Status {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// The configuration the daemon runs with: per VIPA owner, ranked backups, moveable, targets and weights, candidates per routing node.
    #[command(after_help = CONFIG_HELP)]
    Config {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per VIPA: this node's state (Active, Moving, Backup, Deactivated) and since when, the owner and epoch known.
    ///
    /// States, in Sysplex Distributor's words: Active = this node owns and
    /// routes the VIPA; Moving = it claimed the VIPA and collects the
    /// targets' reports (and the previous owner's handover) before routing,
    /// a takeover or takeback in progress; Backup = it may own the VIPA but
    /// another node does (or none yet); Deactivated = deactivated here by
    /// the operator; - = this node is neither owner nor backup. z/OS's
    /// Quiescing has no counterpart: an owner that steps down hands its
    /// connection table over with the VIPA, so nothing drains on the old
    /// owner. --json also has the daemon's own word (role: owner, claiming,
    /// idle) and since_unix_ms.
    #[command(after_help = VIPA_HELP)]
    Vipa {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per owned VIPA:port and target: ready, state, weight, active connections, packets and bytes forwarded; per target: connections created, packets and bytes.
    ///
    /// Active connections are the CRT's (what the agents report and new
    /// flows not yet confirmed). The forwarder counts per target, over
    /// every VIPA:port of it, since it started: connections (flows it
    /// created), packets and bytes (inner packets) sent to the target.
    #[command(after_help = DPT_HELP)]
    Dpt {
        /// Also the epoch and whether each target is a candidate.
        #[arg(long)]
        detail: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// The connections this node routes: client -> VIPA:port -> target, with age.
    ///
    /// The age is how long this node has had the connection in its CRT:
    /// since the agent reported it or the forwarder created it, or since
    /// this node took the VIPA over for connections older than that.
    #[command(after_help = CRT_HELP)]
    Crt(CrtArgs),
    /// The daemon's counters, and the forwarder's per worker and reason; --watch for rates.
    #[command(after_help = STATS_HELP)]
    Stats {
        /// Print the API's JSON (with --watch: one object per line, with "rates").
        #[arg(long)]
        json: bool,
        /// Redraw every interval with per-second rates, until Ctrl-C (exit code 0).
        #[arg(long)]
        watch: bool,
        /// Seconds between samples with --watch.
        #[arg(
            long,
            value_name = "SECONDS",
            default_value_t = 1.0,
            requires = "watch"
        )]
        interval: f64,
    },
    /// Stop giving new connections to a target (or to every target of a VIPA:port); existing ones stay.
    #[command(after_help = QUIESCE_HELP)]
    Quiesce {
        /// What to quiesce.
        #[command(subcommand)]
        what: What,
    },
    /// Give new connections to a quiesced target (or VIPA:port) again.
    ///
    /// The agent keeps a quiesce of a whole target and a quiesce of one
    /// service apart: resume the way you quiesced (`resume port` does not
    /// undo `quiesce target`, nor the other way round).
    #[command(after_help = RESUME_HELP)]
    Resume {
        /// What to resume.
        #[command(subcommand)]
        what: What,
    },
    /// This node gives the VIPA up (a backup takes it) and does not claim it until reactivated.
    #[command(after_help = DEACTIVATE_HELP)]
    Deactivate(VipaArg),
    /// This node takes part in owning the VIPA again.
    #[command(after_help = REACTIVATE_HELP)]
    Reactivate(VipaArg),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `crt` filters.
#[derive(Args, Debug, PartialEq)]
pub struct CrtArgs {
    /// Only connections to this VIPA.
    #[arg(long, value_name = "ADDRESS")]
    pub vipa: Option<IpAddr>,
    /// Only connections from this client address (and port).
    #[arg(long, value_name = "ADDRESS[:PORT]", value_parser = parse_client)]
    pub client: Option<ClientFilter>,
    /// Only connections routed to this target.
    #[arg(long, value_name = "ADDRESS")]
    pub target: Option<IpAddr>,
    /// Print at most N connections (and how many matched).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the API's JSON (filtered, with "matched" when filtered or limited).
    #[arg(long)]
    pub json: bool,
}

/// `--client A[:P]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFilter {
    /// The address.
    pub address: IpAddr,
    /// The port, if given.
    pub port: Option<u16>,
}

fn parse_client(s: &str) -> Result<ClientFilter, String> {
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(ClientFilter {
            address: a,
            port: None,
        });
    }
    s.parse::<SocketAddr>()
        .map(|a| ClientFilter {
            address: a.ip(),
            port: Some(a.port()),
        })
        .map_err(|_| {
            format!("{s:?}: expected ADDRESS or ADDRESS:PORT, e.g. 198.51.100.7:40000 or [2001:db8::7]:40000")
        })
}

/// What `quiesce` and `resume` act on.
#[derive(Subcommand, Debug, PartialEq)]
pub enum What {
    /// One target of a VIPA (all its services, or --service).
    Target {
        /// The target's address.
        target: IpAddr,
        /// The VIPA.
        #[arg(long, value_name = "ADDRESS")]
        vipa: IpAddr,
        /// Only this service of the VIPA, e.g. tcp/443.
        #[arg(long, value_name = "PROTO/PORT")]
        service: Option<String>,
        /// Print the request instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Every target of one VIPA:port.
    Port {
        /// The VIPA and port, e.g. `192.0.2.10:443` or `[2001:db8::10]:443`.
        #[arg(value_name = "VIPA:PORT")]
        vipa_port: SocketAddr,
        /// The protocol.
        #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp"])]
        protocol: String,
        /// Print the request instead of sending it.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `deactivate VIPA`, `reactivate VIPA`.
#[derive(Args, Debug, PartialEq)]
pub struct VipaArg {
    /// The VIPA.
    pub vipa: IpAddr,
    /// Print the request instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses the command line: `Ok(cli)`, or `Err(exit code)` after printing
/// help, the version or the usage error.
pub fn parse<I, T>(args: I) -> Result<Cli, u8>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            EXIT_USAGE
        } else {
            EXIT_OK
        }
    })
}

/// An error for the operator, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

/// Does `cli`'s command, printing to `out`; returns the exit code (after
/// printing any error to stderr).
pub fn run(cli: &Cli, out: &mut dyn Write) -> u8 {
    match execute(cli, out) {
        Ok(()) => EXIT_OK,
        Err(f) => {
            eprintln!("vipactl: {}", f.message);
            f.code
        }
    }
}

fn usage(message: String) -> Failure {
    Failure {
        code: EXIT_USAGE,
        message,
    }
}

fn refused(message: String) -> Failure {
    Failure {
        code: EXIT_REFUSED,
        message,
    }
}

struct Client {
    ep: Endpoint,
    timeout: Duration,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let body = body.map(Value::to_string);
        let reply =
            http::request(&self.ep, method, path, body.as_deref(), self.timeout).map_err(|e| {
                match e {
                    HttpError::Unreachable(why) => Failure {
                        code: EXIT_UNREACHABLE,
                        message: format!(
                            "cannot reach vipa-control at {} ({why}).\n\
                         Check: is vipa-control running on that node? Does its configuration's \
                         cluster.api (or its --api) name this address? Set --control URL or \
                         VIPA_CONTROL to the right one.",
                            self.ep.url()
                        ),
                    },
                    HttpError::Protocol(why) => refused(format!(
                        "{} {path}: no usable answer from {}: {why}",
                        method,
                        self.ep.url()
                    )),
                }
            })?;
        let v: Value = serde_json::from_str(&reply.body).map_err(|e| {
            refused(format!(
                "{method} {path}: {} answered {} with no JSON ({e}); is that address vipa-control's API?",
                self.ep.url(),
                reply.status
            ))
        })?;
        if reply.status != 200 {
            let why = v["error"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_owned);
            return Err(refused(format!(
                "{method} {path}: vipa-control refused ({}): {why}",
                reply.status
            )));
        }
        Ok(v)
    }
}

fn print_json(out: &mut dyn Write, v: &Value) -> Result<(), Failure> {
    writeln!(out, "{v:#}").map_err(|e| refused(format!("writing the output: {e}")))
}

fn print(out: &mut dyn Write, s: &str) -> Result<(), Failure> {
    out.write_all(s.as_bytes())
        .map_err(|e| refused(format!("writing the output: {e}")))
}

fn execute(cli: &Cli, out: &mut dyn Write) -> Result<(), Failure> {
    // Needs no daemon.
    if let Command::Completions { shell } = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut cmd, "vipactl", &mut script);
        return out
            .write_all(&script)
            .map_err(|e| refused(format!("writing the output: {e}")));
    }
    let ep = Endpoint::parse(&cli.control).map_err(|e| usage(format!("--control: {e}")))?;
    if !(cli.timeout > 0.0 && cli.timeout <= 3600.0) {
        return Err(usage(format!(
            "--timeout {}: expected seconds in (0, 3600]",
            cli.timeout
        )));
    }
    let c = Client {
        ep,
        timeout: Duration::from_secs_f64(cli.timeout),
    };
    match &cli.command {
        Command::Status { json } => {
            let v = c.call("GET", "/v1/status", None)?;
            if *json {
                print_json(out, &v)
            } else {
                print(out, &render_status(&v, &c.ep.url()))
            }
        }
        Command::Config { json } => {
            let v = c.call("GET", "/v1/config", None)?;
            if *json {
                print_json(out, &v)
            } else {
                print(out, &render_config(&v))
            }
        }
        Command::Vipa { json } => {
            let v = c.call("GET", "/v1/vipas", None)?;
            if *json {
                print_json(out, &v)
            } else {
                print(out, &render_vipas(&v))
            }
        }
        Command::Dpt { detail, json } => {
            let v = c.call("GET", "/v1/dpt", None)?;
            if *json {
                print_json(out, &v)
            } else {
                print(out, &render_dpt(&v, *detail))
            }
        }
        Command::Crt(a) => {
            let v = c.call("GET", "/v1/crt", None)?;
            let (v, shown) = filter_crt(&v, a);
            if a.json {
                print_json(out, &v)
            } else {
                print(out, &render_crt(&v, shown))
            }
        }
        Command::Stats {
            json,
            watch,
            interval,
        } => {
            if *watch {
                if !(*interval >= 0.1 && *interval <= 3600.0) {
                    return Err(usage(format!(
                        "--interval {interval}: expected seconds in [0.1, 3600]"
                    )));
                }
                let mut fetch = || c.call("GET", "/v1/counters", None);
                return stats::watch(out, Duration::from_secs_f64(*interval), *json, &mut fetch);
            }
            let v = c.call("GET", "/v1/counters", None)?;
            if *json {
                print_json(out, &v)
            } else {
                print(out, &render_stats(&v, None))
            }
        }
        Command::Quiesce { what } => write_quiesce(&c, out, what, true),
        Command::Resume { what } => write_quiesce(&c, out, what, false),
        Command::Deactivate(a) => write_deactivate(&c, out, a, true),
        Command::Reactivate(a) => write_deactivate(&c, out, a, false),
        Command::Completions { .. } => Ok(()),
    }
}

/// The request `quiesce`/`resume` sends: path and body.
pub fn quiesce_request(what: &What, on: bool) -> (&'static str, Value, bool) {
    let path = if on { "/v1/quiesce" } else { "/v1/resume" };
    match what {
        What::Target {
            target,
            vipa,
            service,
            dry_run,
        } => {
            let mut b = json!({ "vipa": vipa, "target": target });
            if let Some(s) = service {
                b["service"] = json!(s);
            }
            (path, b, *dry_run)
        }
        What::Port {
            vipa_port,
            protocol,
            dry_run,
        } => (
            path,
            json!({ "vipa": vipa_port.ip(), "service": format!("{protocol}/{}", vipa_port.port()) }),
            *dry_run,
        ),
    }
}

fn dry(c: &Client, out: &mut dyn Write, path: &str, body: &Value) -> Result<(), Failure> {
    print(
        out,
        &format!(
            "would send: POST {}{path}\n{body:#}\n(--dry-run: nothing sent)\n",
            c.ep.url()
        ),
    )
}

fn write_quiesce(c: &Client, out: &mut dyn Write, what: &What, on: bool) -> Result<(), Failure> {
    let (path, body, dry_run) = quiesce_request(what, on);
    if dry_run {
        return dry(c, out, path, &body);
    }
    let before = c.call("GET", "/v1/dpt", None).ok();
    let r = c.call("POST", path, Some(&body))?;
    let verb = if on { "quiesced" } else { "resumed" };
    let targets: Vec<String> = r["targets"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let service = r["service"].as_str().unwrap_or("all services");
    let mut s = format!(
        "{verb} {} on {} ({service})\n",
        targets.join(", "),
        text(&r["vipa"])
    );
    // What the node's DPT shows changed (it updates as the node publishes).
    let mut changes = Vec::new();
    if let Some(before) = before {
        for _ in 0..10 {
            if let Ok(after) = c.call("GET", "/v1/dpt", None) {
                changes = dpt_changes(&before, &after);
                if !changes.is_empty() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if changes.is_empty() {
        s.push_str(
            "this node's DPT shows no change (already so, or this node does not own the VIPA)\n",
        );
    } else {
        for ch in changes {
            s.push_str(&format!("  {ch}\n"));
        }
    }
    print(out, &s)
}

fn write_deactivate(c: &Client, out: &mut dyn Write, a: &VipaArg, on: bool) -> Result<(), Failure> {
    let path = if on {
        "/v1/deactivate"
    } else {
        "/v1/reactivate"
    };
    let body = json!({ "vipa": a.vipa });
    if a.dry_run {
        return dry(c, out, path, &body);
    }
    let before = c
        .call("GET", "/v1/vipas", None)
        .ok()
        .and_then(|v| vipa_entry(&v, a.vipa));
    c.call("POST", path, Some(&body))?;
    let mut s = if on {
        format!(
            "deactivated {} on this node: it gives the VIPA up and will not claim it until reactivated\n",
            a.vipa
        )
    } else {
        format!(
            "reactivated {} on this node: it takes part in owning the VIPA again\n",
            a.vipa
        )
    };
    if let Some(b) = before {
        s.push_str(&format!(
            "  before: {} here (role {}), owner {}\n",
            text(&b["state"]),
            text(&b["role"]),
            text(&b["owner"])
        ));
    }
    if let Some(n) = c
        .call("GET", "/v1/vipas", None)
        .ok()
        .and_then(|v| vipa_entry(&v, a.vipa))
    {
        s.push_str(&format!(
            "  now:    {} here (role {}), owner {}\n",
            text(&n["state"]),
            text(&n["role"]),
            text(&n["owner"])
        ));
    }
    print(out, &s)
}

fn vipa_entry(v: &Value, vipa: IpAddr) -> Option<Value> {
    v["vipas"]
        .as_array()?
        .iter()
        .find(|e| e["vipa"].as_str() == Some(&vipa.to_string()))
        .cloned()
}

/// A JSON value as a table cell: strings bare, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) => n.as_u64().map_or_else(|| n.to_string(), thousands),
        other => other.to_string(),
    }
}

/// `192.0.2.10` and `tcp/80` as `192.0.2.10:80/tcp` (`[v6]:80/tcp`).
fn vipa_port(vipa: &Value, service: &Value) -> String {
    let v = text(vipa);
    let v = if v.contains(':') { format!("[{v}]") } else { v };
    match service.as_str().and_then(|s| s.split_once('/')) {
        Some((proto, port)) => format!("{v}:{port}/{proto}"),
        None => format!("{v} {}", text(service)),
    }
}

fn rows<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// A duration for people: `850ms`, `42s`, `5m 12s`, `3h 02m`, `2d 04h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `N ago`, or `-` for nothing.
fn ago(ms: &Value) -> String {
    ms.as_u64()
        .map_or_else(|| "-".to_owned(), |ms| format!("{} ago", age(ms)))
}

/// An epoch for people: `-` for none.
fn epoch_text(e: &Value) -> String {
    match e.as_str() {
        Some("0.0") | None => "-".to_owned(),
        Some(s) => s.to_owned(),
    }
}

/// `vipactl status`: the node on one screen (from `/v1/status`; `url` is
/// where it came from).
pub fn render_status(v: &Value, url: &str) -> String {
    let mut s = format!(
        "node {}, up {} (vipa-control {} at {url})\n\n",
        text(&v["node"]),
        v["uptime_ms"].as_u64().map_or_else(|| "-".to_owned(), age),
        text(&v["version"]),
    );

    let mut t = Table::new(&[
        ("VIPA", Align::Left),
        ("STATE", Align::Left),
        ("SINCE", Align::Right),
        ("EPOCH", Align::Right),
        ("OWNER", Align::Left),
        ("RANK", Align::Right),
        ("TARGETS READY", Align::Right),
        ("CONNECTIONS", Align::Right),
    ]);
    for e in rows(v, "vipas") {
        let routed = e["routed"] == true;
        t.row(vec![
            text(&e["vipa"]),
            text(&e["state"]),
            ago(&e["for_ms"]),
            epoch_text(&e["epoch"]),
            text(&e["owner"]),
            text(&e["rank"]),
            if routed {
                format!("{} of {}", text(&e["targets_ready"]), text(&e["targets"]))
            } else {
                "-".to_owned()
            },
            if routed {
                text(&e["connections"])
            } else {
                "-".to_owned()
            },
        ]);
    }
    if t.is_empty() {
        s.push_str("no VIPAs configured\n");
    } else {
        s.push_str(&t.render());
    }
    s.push('\n');

    let f = &v["forwarder"];
    let health = f["health"].as_str().unwrap_or("unknown");
    // Anything but ok in capitals: it is what a person looks for first.
    let word = if health == "ok" {
        health.to_owned()
    } else {
        health.to_uppercase()
    };
    if f["attached"] == true {
        let mut parts = vec![f["backend"]
            .as_str()
            .map_or_else(|| "backend unknown".to_owned(), str::to_owned)];
        parts.push(format!("{} workers", text(&f["workers"])));
        // A pid is a name, not a quantity: no thousands separator.
        parts.push(format!("pid {}", f["pid"]));
        if let Some(up) = f["uptime_ms"].as_u64() {
            parts.push(format!("up {}", age(up)));
        }
        parts.push(format!("heartbeat {}", ago(&f["heartbeat_age_ms"])));
        s.push_str(&format!("forwarder  {word}: {}\n", parts.join(", ")));
    } else {
        s.push_str(&format!("forwarder  {word}\n"));
    }
    if let Some(p) = f["problem"].as_str() {
        s.push_str(&format!("           {p}\n"));
    }

    let snap = &v["snapshot"];
    if snap["channel"].is_null() {
        s.push_str("snapshot   none published (vipa-control runs without --snapshot)\n");
    } else {
        let g = snap["generation"].as_u64().unwrap_or(0);
        let mut line = format!(
            "snapshot   generation {g} published {} on {}",
            ago(&snap["age_ms"]),
            text(&snap["channel"])
        );
        if snap["errors"].as_u64().unwrap_or(0) > 0 {
            line.push_str(&format!(
                ", {} could not be published (see its log)",
                text(&snap["errors"])
            ));
        }
        s.push_str(&line);
        s.push('\n');
        if f["attached"] == true {
            let gens: Vec<u64> = f["worker_generations"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let mut line = if f["in_sync"] == true {
                format!("           the forwarder uses {g} on every worker")
            } else {
                let list: Vec<String> = gens.iter().map(u64::to_string).collect();
                format!(
                    "           the forwarder's workers use {} (switching, or {g} refused)",
                    list.join(", ")
                )
            };
            line.push_str(&format!(
                "; {} loaded, {} refused",
                text(&f["snapshots_loaded"]),
                text(&f["snapshots_refused"])
            ));
            if let Some(why) = f["last_refusal"].as_str() {
                line.push_str(&format!(
                    " (last: generation {}, {why})",
                    text(&f["last_refused"])
                ));
            }
            s.push_str(&line);
            s.push('\n');
        }
    }

    let link = |e: &Value| {
        (
            if e["stream_out"] == true {
                "up"
            } else {
                "down"
            }
            .to_owned(),
            text(&e["streams_in"]),
        )
    };
    let peers = rows(v, "peers");
    if !peers.is_empty() {
        let mut t = Table::new(&[
            ("PEER", Align::Left),
            ("ADDRESS", Align::Left),
            ("SWIM", Align::Left),
            ("STREAM OUT", Align::Left),
            ("STREAMS IN", Align::Right),
            ("LAST HEARD", Align::Right),
        ]);
        for p in peers {
            let (out, inc) = link(p);
            t.row(vec![
                text(&p["node"]),
                text(&p["address"]),
                text(&p["swim"]),
                out,
                inc,
                ago(&p["last_heard_ms"]),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    let agents = rows(v, "agents");
    if !agents.is_empty() {
        let mut t = Table::new(&[
            ("AGENT", Align::Left),
            ("STREAM OUT", Align::Left),
            ("STREAMS IN", Align::Right),
            ("LAST HEARD", Align::Right),
            ("LAST REPORT", Align::Right),
        ]);
        for a in agents {
            let (out, inc) = link(a);
            t.row(vec![
                text(&a["target"]),
                out,
                inc,
                ago(&a["last_heard_ms"]),
                ago(&a["last_report_ms"]),
            ]);
        }
        s.push('\n');
        s.push_str(&t.render());
    }
    s
}

/// A list of JSON strings as `a, b`, or `-` when empty.
fn list(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// `vipactl config`: the cluster, the VIPAs, and per VIPA and target its
/// weight and the routing nodes that give it new connections.
pub fn render_config(v: &Value) -> String {
    let me = v["node"].as_str().unwrap_or_default();
    let c = &v["cluster"];
    let nodes: Vec<String> = rows(c, "nodes")
        .iter()
        .map(|n| {
            let this = if n["name"].as_str() == Some(me) {
                " (this node)"
            } else {
                ""
            };
            format!("{} {}{this}", text(&n["name"]), text(&n["address"]))
        })
        .collect();
    let ms = |k: &str| c[k].as_u64().map_or_else(|| "-".to_owned(), age);
    let mut s = format!(
        "node {me}\n\
         cluster  {}; agents on port {}; API {}\n\
         timing   probe every {} (answer within {}), suspect {}, collect {}, refresh {}, restart hold {}\n\n",
        nodes.join(", "),
        c["agent_port"],
        text(&c["api"]),
        ms("probe_interval_ms"),
        ms("probe_timeout_ms"),
        ms("suspect_timeout_ms"),
        ms("collect_timeout_ms"),
        ms("refresh_interval_ms"),
        ms("restart_hold_ms"),
    );
    let mut t = Table::new(&[
        ("VIPA", Align::Left),
        ("SERVICES", Align::Left),
        ("OWNER", Align::Left),
        ("BACKUPS (BY RANK)", Align::Left),
        ("MOVEABLE", Align::Left),
        ("DISTRIBUTION", Align::Left),
        ("TABLE SIZE", Align::Right),
    ]);
    let mut targets = Table::new(&[
        ("VIPA", Align::Left),
        ("TARGET", Align::Left),
        ("WEIGHT", Align::Right),
        ("NEW CONNECTIONS FROM", Align::Left),
    ]);
    for e in rows(v, "vipas") {
        t.row(vec![
            text(&e["vipa"]),
            list(&e["services"]),
            text(&e["owner"]),
            list(&e["backups"]),
            text(&e["moveable"]),
            text(&e["distribution"]),
            text(&e["table_size"]),
        ]);
        for tg in rows(e, "targets") {
            // The routing nodes (by rank) whose candidate list holds it.
            let from: Vec<String> = rows(e, "candidates")
                .iter()
                .filter(|n| rows(n, "targets").contains(&tg["target"]))
                .map(|n| text(&n["node"]))
                .collect();
            targets.row(vec![
                text(&e["vipa"]),
                text(&tg["target"]),
                text(&tg["weight"]),
                if from.is_empty() {
                    "- (keeps connections only)".to_owned()
                } else {
                    from.join(", ")
                },
            ]);
        }
    }
    if t.is_empty() {
        s.push_str("no VIPAs configured\n");
        return s;
    }
    s.push_str(&t.render());
    s.push('\n');
    s.push_str(&targets.render());
    s.push_str("(weight 0: draining, no new connections; a node that lists no candidates gives new connections to every target)\n");
    s
}

/// What the states of `vipactl vipa` and `status` mean (their legend).
pub const STATE_LEGEND: &str = "\
(state here: Active = this node owns and routes the VIPA; Moving = it claimed the VIPA and collects the \
targets' reports before routing (takeover or takeback); Backup = it may own the VIPA, another node does \
or none does yet; Deactivated = deactivated here by the operator; - = not an owner or backup here. \
Epoch: term.rank of the owner's claim; rank: 0 configured owner, 1.. backups)\n";

/// `vipactl vipa` as a table.
pub fn render_vipas(v: &Value) -> String {
    let mut t = Table::new(&[
        ("VIPA", Align::Left),
        ("STATE HERE", Align::Left),
        ("SINCE", Align::Right),
        ("OWNER", Align::Left),
        ("EPOCH", Align::Right),
        ("CONFIGURED OWNER", Align::Left),
        ("RANK HERE", Align::Right),
    ]);
    for e in rows(v, "vipas") {
        t.row(vec![
            text(&e["vipa"]),
            text(&e["state"]),
            ago(&e["for_ms"]),
            text(&e["owner"]),
            epoch_text(&e["epoch"]),
            text(&e["configured_owner"]),
            text(&e["rank"]),
        ]);
    }
    let mut s = format!("node {}\n", text(&v["node"]));
    if t.is_empty() {
        s.push_str("no VIPAs configured\n");
    } else {
        s.push_str(&t.render());
        s.push_str(STATE_LEGEND);
    }
    s
}

/// `vipactl dpt` as tables: per VIPA:port and target (with the packets
/// and bytes the forwarder sent it for that VIPA:port), then per target
/// what the forwarder did for it over all VIPA:ports (with the connections
/// it created, which it counts per target only).
pub fn render_dpt(v: &Value, detail: bool) -> String {
    let mut cols = vec![
        ("VIPA:PORT", Align::Left),
        ("TARGET", Align::Left),
        ("READY", Align::Left),
        ("STATE", Align::Left),
        ("WEIGHT", Align::Right),
        ("ACTIVE CONNECTIONS", Align::Right),
        ("PACKETS", Align::Right),
        ("BYTES", Align::Right),
    ];
    if detail {
        cols.push(("CANDIDATE", Align::Left));
        cols.push(("EPOCH", Align::Right));
    }
    let mut t = Table::new(&cols);
    let (mut services, mut ready, mut total, mut conns) = (0, 0, 0, 0u64);
    for row in rows(v, "dpt") {
        services += 1;
        let vp = vipa_port(&row["vipa"], &row["service"]);
        for tg in rows(row, "targets") {
            total += 1;
            ready += usize::from(tg["ready"] == true);
            conns += tg["connections"].as_u64().unwrap_or(0);
            let mut cells = vec![
                vp.clone(),
                text(&tg["target"]),
                text(&tg["ready"]),
                text(&tg["state"]),
                text(&tg["weight"]),
                text(&tg["connections"]),
                text(&tg["packets"]),
                tg["bytes"].as_u64().map_or_else(|| "-".to_owned(), bytes),
            ];
            if detail {
                cells.push(text(&tg["candidate"]));
                cells.push(text(&row["epoch"]));
            }
            t.row(cells);
        }
    }
    let mut s = format!("node {}\n", text(&v["node"]));
    if services == 0 {
        s.push_str("this node owns no VIPA: its DPT is empty (see vipactl vipa)\n");
        return s;
    }
    s.push_str(&t.render());
    s.push_str(&format!(
        "{services} VIPA:port(s), {ready} of {total} target entries ready, {} active connections\n\n",
        thousands(conns)
    ));
    let Some(traffic) = v["traffic"].as_array() else {
        s.push_str(
            "no forwarder reports to this daemon: no packet or byte counts (see vipactl status)\n",
        );
        return s;
    };
    let mut t = Table::new(&[
        ("TARGET", Align::Left),
        ("CONNECTIONS", Align::Right),
        ("PACKETS", Align::Right),
        ("BYTES", Align::Right),
    ]);
    for tg in traffic {
        t.row(vec![
            text(&tg["target"]),
            text(&tg["connections_total"]),
            text(&tg["packets"]),
            tg["bytes"].as_u64().map_or_else(|| "-".to_owned(), bytes),
        ]);
    }
    s.push_str(
        "per target since the forwarder started (all its VIPA:ports; connections it created):\n",
    );
    s.push_str(&t.render());
    s
}

/// The rows of `v` (the API's `/v1/crt`) that `a` selects, at most
/// `a.limit` of them; returns the filtered JSON (with `matched` and `total`
/// when filtered or limited) and how many are in it.
pub fn filter_crt(v: &Value, a: &CrtArgs) -> (Value, usize) {
    let all = rows(v, "crt");
    let selects = |r: &&Value| {
        let ip = |k: &str| r[k].as_str().and_then(|s| s.parse::<IpAddr>().ok());
        a.vipa.is_none_or(|x| ip("vipa") == Some(x))
            && a.target.is_none_or(|x| ip("target") == Some(x))
            && a.client.is_none_or(|f| {
                r["client"]
                    .as_str()
                    .and_then(|s| s.parse::<SocketAddr>().ok())
                    .is_some_and(|c| c.ip() == f.address && f.port.is_none_or(|p| p == c.port()))
            })
    };
    let matched: Vec<&Value> = all.iter().filter(selects).collect();
    let n = matched.len();
    let shown: Vec<Value> = matched
        .into_iter()
        .take(a.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let k = shown.len();
    let mut out = json!({ "node": v["node"], "crt": shown });
    if a.vipa.is_some() || a.client.is_some() || a.target.is_some() || a.limit.is_some() {
        out["matched"] = json!(n);
        out["total"] = json!(all.len());
    }
    (out, k)
}

/// `vipactl crt` as a table (from [`filter_crt`]'s JSON).
pub fn render_crt(v: &Value, shown: usize) -> String {
    let mut t = Table::new(&[
        ("CLIENT", Align::Left),
        ("VIPA:PORT", Align::Left),
        ("TARGET", Align::Left),
        ("AGE", Align::Right),
    ]);
    for r in rows(v, "crt") {
        t.row(vec![
            text(&r["client"]),
            vipa_port(&r["vipa"], &r["service"]),
            text(&r["target"]),
            r["age_ms"].as_u64().map_or_else(|| "-".to_owned(), age),
        ]);
    }
    let mut s = format!("node {}\n", text(&v["node"]));
    if !t.is_empty() {
        s.push_str(&t.render());
    }
    let total = v["total"].as_u64();
    let matched = v["matched"].as_u64();
    s.push_str(&match (matched, total) {
        (Some(m), Some(tot)) if (m as usize) > shown => format!(
            "showing {} of {} matching connections ({} in the CRT); raise --limit for more\n",
            thousands(shown as u64),
            thousands(m),
            thousands(tot)
        ),
        (Some(m), Some(tot)) => format!(
            "{} matching connections ({} in the CRT)\n",
            thousands(m),
            thousands(tot)
        ),
        _ => format!("{} connections\n", thousands(shown as u64)),
    });
    s
}

/// Lines saying how targets changed between two `/v1/dpt` answers.
pub fn dpt_changes(before: &Value, after: &Value) -> Vec<String> {
    let index = |v: &Value| {
        let mut m = std::collections::BTreeMap::new();
        for row in rows(v, "dpt") {
            let vp = vipa_port(&row["vipa"], &row["service"]);
            for t in rows(row, "targets") {
                m.insert(
                    (vp.clone(), text(&t["target"])),
                    (text(&t["state"]), text(&t["ready"])),
                );
            }
        }
        m
    };
    let (b, a) = (index(before), index(after));
    let mut out = Vec::new();
    for (k, now) in &a {
        match b.get(k) {
            Some(was) if was != now => out.push(format!(
                "{} {}: {} (ready {}) -> {} (ready {})",
                k.0, k.1, was.0, was.1, now.0, now.1
            )),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
