//! `vipa-dpdk-bench`: vipa's worker against `dpdk-testpmd --forward-mode=5tswap`
//! on DPDK `net_null` devices, one core each, in the same run. Parses
//! arguments, calls the library (`vipa_benches::dpdk`).

use clap::Parser;
use vipa_benches::dpdk::{run, Settings};

#[derive(Parser)]
#[command(
    name = "vipa-dpdk-bench",
    about = "vipa's worker vs dpdk-testpmd 5tswap on net_null, one core each"
)]
struct Cli {
    /// One JSON line per case.
    #[arg(long)]
    json: bool,
    /// CPU of the forwarding core.
    #[arg(long, default_value_t = 1)]
    core: usize,
    /// CPU of testpmd's main lcore (statistics only).
    #[arg(long, default_value_t = 0)]
    main_core: usize,
    /// Timed seconds per case per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds (vipa, then testpmd, in each).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Established flows.
    #[arg(long, default_value_t = 10_000)]
    flows: u32,
    /// The testpmd program.
    #[arg(long, default_value = "dpdk-testpmd")]
    testpmd: String,
    /// Only the vipa case (no testpmd, no ratio): for profiling.
    #[arg(long)]
    vipa_only: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings {
        core: cli.core,
        main_core: cli.main_core,
        seconds: cli.seconds.max(1),
        rounds: cli.rounds,
        flows: cli.flows,
        testpmd: cli.testpmd,
        vipa_only: cli.vipa_only,
    };
    let results = run(&settings)?;
    if cli.json {
        for r in &results {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    println!(
        "{:<20} {:>8} {:>10} {:>16} {:>9} {:>10} {:>11} {:>10}",
        "case", "Mpps", "ns/packet", "(min..max)", "segments", "forwarded", "×testpmd", "cpu ns/p"
    );
    for r in &results {
        let range = format!("({:.2}..{:.2})", r.mpps_min, r.mpps_max);
        let fw = r
            .forwarded_ratio
            .map_or("-".to_owned(), |x| format!("{x:.3}"));
        let ratio = r.vs_testpmd.map_or("-".to_owned(), |x| format!("{x:.2}"));
        let cpu = r
            .cpu_ns_per_packet
            .map_or("-".to_owned(), |x| format!("{x:.1}"));
        println!(
            "{:<20} {:>8.2} {:>10.1} {:>16} {:>9} {:>10} {:>11} {:>10}",
            r.case, r.mpps, r.ns_per_packet, range, r.segments, fw, ratio, cpu
        );
    }
    if let Some(v) = results
        .iter()
        .find(|r| r.case == "vipa_established")
        .and_then(|r| r.vs_testpmd)
    {
        println!(
            "vipa / testpmd = {v:.2} (goal {:.2}: {})",
            vipa_benches::dpdk::GOAL,
            if v >= vipa_benches::dpdk::GOAL {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    for r in &results {
        println!("{}: {}", r.case, r.note);
    }
    Ok(())
}
