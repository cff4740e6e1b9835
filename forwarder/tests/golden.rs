//! Golden packets: every case of `golden/cases.txt` (built with scapy by
//! `golden/generate.py`, independently of vipa's wire code) runs through the
//! real worker on the in-memory port; the verdict, the counter and the
//! output bytes must match exactly.

use std::path::Path;
use std::sync::Arc;

use vipa_forwarder::buf::PacketBuffer;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::config::Config;

/// Must match the constants of `golden/generate.py`.
const GOLDEN_CONFIG: &str = r#"
[node]
name = "fwd-golden"
tunnel_source_v4 = "10.10.0.1"
tunnel_source_v6 = "fd00:10::1"

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
mtu = 1500
next_hop_mac = "02:00:00:00:0a:fe"

[[port]]
name = "p1"
mac = "02:00:00:00:0b:01"
mtu = 1500
next_hop_mac = "02:00:00:00:0b:fe"

[[vipa]]
address = "192.0.2.30"
services = ["tcp/80", "tcp/443", "udp/53"]
  [[vipa.target]]
  address = "10.20.0.31"

[[vipa]]
address = "2001:db8::30"
services = ["tcp/80"]
  [[vipa.target]]
  address = "fd00:20::31"

[[vipa]]
address = "192.0.2.40"
services = ["tcp/80"]
  [[vipa.target]]
  address = "fd00:20::41"
"#;

struct Case {
    desc: String,
    port: usize,
    verdict: String,
    input: Vec<u8>,
    output: Option<Vec<u8>>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cases.txt"),
    )
    .expect("golden/cases.txt");
    let mut out = Vec::new();
    for block in text
        .split("\n\n")
        .filter(|b| b.lines().any(|l| l.starts_with("desc ")))
    {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .map(str::to_owned)
        };
        out.push(Case {
            desc: field("desc").expect("desc"),
            port: field("port").expect("port").parse().expect("port number"),
            verdict: field("verdict").expect("verdict"),
            input: unhex(&field("in").expect("in")),
            output: field("out").map(|h| unhex(&h)),
        });
    }
    out
}

fn hexdump_diff(got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "lengths {} vs {}; first difference at byte {first}\n got: {:02x?}\nwant: {:02x?}",
        got.len(),
        want.len(),
        &got[first.saturating_sub(4)..got.len().min(first + 12)],
        &want[first.saturating_sub(4)..want.len().min(first + 12)],
    )
}

#[test]
fn golden_packets() {
    let config =
        Config::from_str_with_path(GOLDEN_CONFIG, Path::new("tests/golden.rs")).expect("config");
    let tables = Arc::new(Tables::from_config(&config).expect("tables"));
    let cases = cases();
    assert!(cases.len() >= 25, "golden file has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut w = Worker::new(
            vec![(0, MemPort::new()), (1, MemPort::new())],
            Arc::clone(&tables),
        );
        w.queues[c.port].1.inject(&c.input);
        w.poll(100);
        let q = &mut w.queues[c.port].1;
        let tx: Vec<Vec<u8>> = q.tx.drain(..).map(|b| b.data().to_vec()).collect();
        let host = q.host.len();
        let counters = w.pipeline.counters.clone();
        let counter = |name: &str| {
            Counter::ALL
                .iter()
                .find(|k| k.name() == name)
                .map(|k| counters.get(*k))
                .unwrap_or_else(|| panic!("{}: no counter {name}", c.desc))
        };
        let problem = match c.verdict.split_once(':') {
            None => {
                let want = c.output.as_ref().expect("tx case has an output");
                match tx.as_slice() {
                    [got] if got == want => None,
                    [got] => Some(hexdump_diff(got, want)),
                    other => Some(format!("{} frames transmitted, want 1", other.len())),
                }
            }
            Some(("host", name)) => (host != 1 || !tx.is_empty() || counter(name) != 1)
                .then(|| format!("host {host}, tx {}, {name} = {}", tx.len(), counter(name))),
            Some(("drop", name)) => (host != 0 || !tx.is_empty() || counter(name) != 1)
                .then(|| format!("host {host}, tx {}, {name} = {}", tx.len(), counter(name))),
            Some(_) => Some(format!("unknown verdict {}", c.verdict)),
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}", c.desc));
        }
    }
    assert!(
        failures.is_empty(),
        "golden failures:\n{}",
        failures.join("\n")
    );
}
