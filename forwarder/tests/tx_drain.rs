//! Transmit batching with a drain timer: partial batches wait, full ones go
//! at once, and nothing waits longer than the drain time (or past a stop).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::{tcp::flags, EthernetAddress};

const CONFIG: &str = r#"
[node]
name = "n"
tunnel_source_v4 = "10.10.0.1"

[forwarder]
burst_size = 8

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
next_hop_mac = "02:00:00:00:0a:fe"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80"]
  [[vipa.target]]
  address = "10.20.0.11"
"#;

fn worker(drain: Duration) -> Worker<MemPort> {
    let config =
        Config::from_str_with_path(CONFIG, Path::new("tests/tx_drain.rs")).expect("config");
    let tables = Arc::new(Tables::from_config(&config).expect("tables"));
    let mut w = Worker::new(vec![(0, MemPort::new())], tables);
    w.set_tx_drain(drain);
    w
}

fn inject(w: &mut Worker<MemPort>, n: u16) {
    let client = FrameBuilder::new(
        EthernetAddress([2, 0, 0, 0, 0x0a, 0xfe]),
        EthernetAddress([2, 0, 0, 0, 0x0a, 1]),
    );
    for sport in 0..n {
        let frame = client.tcp(
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            1000 + sport,
            80,
            flags::SYN,
            &[],
        );
        w.queues[0].1.inject(&frame);
    }
}

#[test]
fn without_a_drain_time_every_burst_goes_at_its_end() {
    let mut w = worker(Duration::ZERO);
    inject(&mut w, 3);
    w.poll(1);
    assert_eq!(w.queues[0].1.tx.len(), 3);
}

#[test]
fn a_partial_batch_waits_for_the_drain_time() {
    let mut w = worker(Duration::from_millis(200));
    inject(&mut w, 3);
    w.poll(1);
    assert_eq!(w.queues[0].1.tx.len(), 0, "3 of a burst of 8 wait");
    assert_eq!(w.counters().get(Counter::TxPackets), 0);
    inject(&mut w, 2);
    w.poll(1);
    assert_eq!(w.queues[0].1.tx.len(), 0, "5 of 8 still wait");
    // Idle polls send them once the oldest has waited the drain time; the
    // lower bound is what this test checks, not how soon after.
    std::thread::sleep(Duration::from_millis(210));
    assert_eq!(w.poll(1), 0);
    assert_eq!(w.queues[0].1.tx.len(), 5);
    assert_eq!(w.counters().get(Counter::TxPackets), 5);
}

#[test]
fn a_full_batch_goes_at_once() {
    let mut w = worker(Duration::from_secs(3600));
    inject(&mut w, 5);
    w.poll(1);
    assert_eq!(w.queues[0].1.tx.len(), 0);
    inject(&mut w, 5);
    w.poll(1); // 5 waiting + 5 new >= 8: all ten go
    assert_eq!(w.queues[0].1.tx.len(), 10);
}

#[test]
fn drain_tx_sends_what_waits() {
    let mut w = worker(Duration::from_secs(3600));
    inject(&mut w, 3);
    w.poll(1);
    assert_eq!(w.queues[0].1.tx.len(), 0);
    w.drain_tx();
    assert_eq!(w.queues[0].1.tx.len(), 3);
    assert_eq!(w.counters().get(Counter::TxPackets), 3);
}
