//! `vipa-packet-gen`: a traffic generator for the live-port benchmarks
//! (`scripts/bench afxdp`). Sends IPv4/UDP frames to one address over
//! `--flows` source ports, as fast as an AF_PACKET transmit ring takes them,
//! for `--seconds`, and prints what it sent. Run it inside the generator's
//! network namespace (`ip netns exec`), never on a real network.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Parser;
use vipa_forwarder::port::afpacket::{AfPacketOptions, AfPacketPort};
use vipa_forwarder::port::{Burst, PortQueue, MAX_BURST};
use vipa_proto::build::FrameBuilder;
use vipa_proto::wire::EthernetAddress;

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
    /// Flows (source ports).
    #[arg(long, default_value_t = 256)]
    flows: u16,
    /// UDP payload bytes (18 makes 64-byte frames with the FCS).
    #[arg(long, default_value_t = 18)]
    payload: usize,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// CPU to pin to.
    #[arg(long)]
    core: Option<usize>,
}

fn mac(s: &str) -> anyhow::Result<EthernetAddress> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "{s}: not a MAC address");
    for (d, p) in m.iter_mut().zip(parts) {
        *d = u8::from_str_radix(p, 16).map_err(|_| anyhow::anyhow!("{s}: not a MAC address"))?;
    }
    Ok(EthernetAddress(m))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(core) = cli.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("vipa-packet-gen: cannot pin to CPU {core}; running unpinned");
        }
    }
    let b = FrameBuilder::new(mac(&cli.src_mac)?, mac(&cli.dst_mac)?);
    let payload = vec![0x5a; cli.payload];
    let frames: Vec<Vec<u8>> = (0..cli.flows.max(1))
        .map(|i| {
            b.udp(
                IpAddr::V4(cli.src_ip),
                IpAddr::V4(cli.dst_ip),
                10_000 + i,
                cli.port,
                &payload,
            )
        })
        .collect();
    let opts = AfPacketOptions {
        tx_frame_count: 4096,
        rx_block_count: 2,
        ..AfPacketOptions::default()
    };
    let mut port = AfPacketPort::open(&cli.iface, &opts)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .remove(0);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(cli.seconds);
    let (mut sent, mut k) = (0u64, 0usize);
    let mut rx: Burst<_> = Burst::new();
    while Instant::now() < end {
        let mut burst: Burst<_> = Burst::new();
        for _ in 0..MAX_BURST {
            let Some(mut buf) = port.alloc() else { break };
            buf.set_frame(&frames[k]);
            k = (k + 1) % frames.len();
            burst.push(buf);
        }
        let n = burst.len();
        port.tx_burst(&mut burst);
        sent += (n - burst.len()) as u64;
        for buf in burst.drain(..) {
            port.free(buf);
        }
        // Whatever comes back (forwarded frames) is not ours to keep.
        port.rx_burst(&mut rx, MAX_BURST);
        for buf in rx.drain(..) {
            port.free(buf);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let frame_len = frames[0].len() + 4;
    println!(
        "{}",
        serde_json::json!({
            "sent": sent,
            "seconds": secs,
            "mpps": sent as f64 / secs / 1e6,
            "frame_bytes": frame_len,
        })
    );
    Ok(())
}
