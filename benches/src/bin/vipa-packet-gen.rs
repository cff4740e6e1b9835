//! `vipa-packet-gen`: the traffic generator of the live-port benchmarks
//! (`scripts/bench afxdp`). Sends IPv4/UDP frames to one address from
//! `--flows` source ports in turn, for `--seconds`, as fast as it can (or at
//! `--rate-mpps`), and prints what it sent as one JSON line. `--mode xdp`
//! (default) sends with an XDP program in `BPF_PROG_TEST_RUN` live-frames
//! mode, `--mode afpacket` through an AF_PACKET transmit ring; see
//! `vipa_benches::packet_gen`. Run it inside the generator's network namespace
//! (`ip netns exec`), never on a real network.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Parser;
use vipa_benches::packet_gen::{self, parse_mac, GenOptions, Mode};

#[derive(Parser)]
#[command(name = "vipa-packet-gen")]
struct Cli {
    /// Interface to send on.
    #[arg(long)]
    iface: String,
    /// Source MAC (the interface's).
    #[arg(long)]
    src_mac: String,
    /// Destination MAC (the device under test).
    #[arg(long)]
    dst_mac: String,
    /// Source IPv4 address.
    #[arg(long)]
    src_ip: Ipv4Addr,
    /// Destination IPv4 address (the VIPA).
    #[arg(long)]
    dst_ip: Ipv4Addr,
    /// Destination UDP port.
    #[arg(long, default_value_t = 9)]
    port: u16,
    /// Flows: source ports --base-port .. --base-port + flows, in turn.
    #[arg(long, default_value_t = 1024)]
    flows: u16,
    /// The first source port.
    #[arg(long, default_value_t = 10_000)]
    base_port: u16,
    /// UDP payload bytes (18 makes 64-byte frames with the FCS).
    #[arg(long, default_value_t = 18)]
    payload: usize,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Millions of frames per second; 0: as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate_mpps: f64,
    /// How to send.
    #[arg(long, value_enum, default_value_t = Mode::Xdp)]
    mode: Mode,
    /// CPU to pin to.
    #[arg(long)]
    core: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(core) = cli.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("vipa-packet-gen: cannot pin to CPU {core}; running unpinned");
        }
    }
    let opts = GenOptions {
        iface: cli.iface,
        src_mac: parse_mac(&cli.src_mac)?,
        dst_mac: parse_mac(&cli.dst_mac)?,
        src_ip: cli.src_ip,
        dst_ip: cli.dst_ip,
        port: cli.port,
        flows: cli.flows,
        base_port: cli.base_port,
        payload: cli.payload,
        duration: Duration::from_secs_f64(cli.seconds),
        rate: (cli.rate_mpps > 0.0).then_some(cli.rate_mpps * 1e6),
        mode: cli.mode,
    };
    let report = packet_gen::run(&opts)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
