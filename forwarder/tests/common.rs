//! Shared set-up for the forwarder's integration tests.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use vipa_forwarder::buf::{HeapBuf, PacketBuffer};
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::EthernetAddress;

pub const PORT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0a, 0x01]);
pub const ROUTER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0a, 0xfe]);
pub const VIPA4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

pub fn vipa6() -> Ipv6Addr {
    "2001:db8::10".parse().unwrap()
}
pub fn client6() -> Ipv6Addr {
    "2001:db8:1::7".parse().unwrap()
}

/// The configuration the tests run against: one IPv4 VIPA with IPv4
/// targets, one IPv6 VIPA with IPv6 targets, one IPv4 VIPA with IPv6
/// targets (cross-family outer header).
pub const CONFIG: &str = r#"
[node]
name = "fwd-test"
tunnel_source_v4 = "10.10.0.1"
tunnel_source_v6 = "fd00:10::1"

[forwarder]
flow_table_capacity = 4096
flow_idle_timeout = 60

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
address = "192.0.2.10"
services = ["tcp/80", "tcp/443", "udp/53"]
  [[vipa.target]]
  address = "10.20.0.11"
  [[vipa.target]]
  address = "10.20.0.12"
  [[vipa.target]]
  address = "10.20.0.13"

[[vipa]]
address = "2001:db8::10"
services = ["tcp/80", "udp/53"]
  [[vipa.target]]
  address = "fd00:20::11"
  [[vipa.target]]
  address = "fd00:20::12"

[[vipa]]
address = "192.0.2.20"
services = ["tcp/80"]
  [[vipa.target]]
  address = "fd00:20::21"
"#;

pub fn config() -> Config {
    Config::from_str_with_path(CONFIG, Path::new("tests/common.rs")).expect("test config")
}

pub fn tables() -> Arc<Tables> {
    Arc::new(Tables::from_config(&config()).expect("tables"))
}

pub fn builder() -> FrameBuilder {
    FrameBuilder::new(ROUTER_MAC, PORT_MAC)
}

pub fn worker() -> Worker<MemPort> {
    Worker::new(vec![(0, MemPort::new()), (1, MemPort::new())], tables())
}

/// What one frame became.
#[derive(Debug)]
pub struct Outcome {
    pub tx: Vec<Vec<u8>>,
    pub host: Vec<Vec<u8>>,
}

/// Sends one frame into port `port` of `w` and collects what came out.
pub fn send(w: &mut Worker<MemPort>, port: usize, frame: &[u8]) -> Outcome {
    w.queues[port].1.inject(frame);
    w.poll(100);
    let q = &mut w.queues[port].1;
    Outcome {
        tx: q.tx.drain(..).map(|b: HeapBuf| b.data().to_vec()).collect(),
        host: q
            .host
            .drain(..)
            .map(|b: HeapBuf| b.data().to_vec())
            .collect(),
    }
}

pub fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}
pub fn v6(a: Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}
