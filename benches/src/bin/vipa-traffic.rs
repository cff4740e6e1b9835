//! `vipa-traffic`: writes the demo capture. Parses arguments, calls the library.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use clap::Parser;
use vipa_benches::capture::{frames, write_pcap, CaptureSpec};

/// Writes a realistic capture towards the example configuration's VIPAs:
/// thousands of TCP and UDP flows over IPv4 and IPv6, ARP and neighbour
/// solicitations for the VIPAs, pings, an ICMP fragmentation-needed about a
/// live flow, oversized packets, IPv4 options and fragments, and garbage.
#[derive(Parser)]
#[command(name = "vipa-traffic")]
struct Cli {
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// TCP flows over IPv4 (IPv6 gets a third as many).
    #[arg(long, default_value_t = 3000)]
    tcp_flows: usize,
    /// UDP flows over IPv4 (IPv6 gets a third as many).
    #[arg(long, default_value_t = 900)]
    udp_flows: usize,
    /// Seed of the generator (same seed, same bytes).
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// Print a JSON summary instead of a sentence.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let spec = CaptureSpec {
        tcp_flows_v4: cli.tcp_flows,
        udp_flows_v4: cli.udp_flows,
        seed: cli.seed,
        ..CaptureSpec::default()
    };
    let (frames, summary) = frames(&spec);
    let file = File::create(&cli.out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", cli.out.display()))?;
    write_pcap(BufWriter::new(file), &frames)?;
    if cli.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "wrote {}: {} frames, {} TCP and {} UDP flows, {} special frames ({})",
            cli.out.display(),
            summary.frames,
            summary.tcp_flows,
            summary.udp_flows,
            summary.specials.len(),
            summary
                .specials
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
