//! Next-hop resolution through the ports, and VIPA announcements.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use vipa_forwarder::buf::PacketBuffer;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::{arp, ethernet, icmpv6, ipv4, ipv6, tcp::flags, EtherType, EthernetAddress};

const PORT0: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0a, 1]);
const PORT1: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);
const CLIENT_ROUTER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0a, 0xfe]);
const TARGET_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x14, 0x0b]);

fn worker(extra_port: &str) -> Worker<MemPort> {
    let text = format!(
        r#"
[node]
name = "n"
tunnel_source_v4 = "10.10.0.1"
tunnel_source_v6 = "fd00:10::1"

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
{extra_port}

[[port]]
name = "p1"
mac = "02:00:00:00:0b:01"
next_hop_mac = "02:00:00:00:0b:fe"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80"]
  [[vipa.target]]
  address = "10.20.0.11"

[[vipa]]
address = "2001:db8::10"
services = ["tcp/80"]
  [[vipa.target]]
  address = "fd00:20::11"
"#
    );
    let config = Config::from_str_with_path(&text, Path::new("tests/neighbor.rs")).expect("config");
    let tables = Arc::new(Tables::from_config(&config).expect("tables"));
    Worker::new(vec![(0, MemPort::new()), (1, MemPort::new())], tables)
}

fn client() -> FrameBuilder {
    FrameBuilder::new(CLIENT_ROUTER, PORT0)
}

fn send(w: &mut Worker<MemPort>, port: usize, frame: &[u8], now: u32) -> Vec<Vec<u8>> {
    w.queues[port].1.inject(frame);
    w.poll(now);
    w.queues[port]
        .1
        .tx
        .drain(..)
        .map(|b| b.data().to_vec())
        .collect()
}

fn syn4(sport: u16) -> Vec<u8> {
    client().tcp(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        sport,
        80,
        flags::SYN,
        &[],
    )
}

#[test]
fn ipv4_target_is_resolved_by_arp_through_the_port() {
    let mut w = worker("");
    // First packet: no MAC yet, so its buffer becomes an ARP request.
    let out = send(&mut w, 0, &syn4(1000), 5);
    assert_eq!(out.len(), 1);
    let eth = ethernet::Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress::BROADCAST);
    assert_eq!(eth.src_addr(), PORT0);
    assert_eq!(eth.ethertype(), EtherType::Arp);
    let req = arp::Repr::parse(&arp::Packet::new_checked(&out[0][14..]).unwrap()).unwrap();
    assert_eq!(req.operation, arp::Operation::Request);
    assert_eq!(req.source_protocol_addr, Ipv4Addr::new(10, 10, 0, 1));
    assert_eq!(req.target_protocol_addr, Ipv4Addr::new(10, 20, 0, 11));
    assert_eq!(w.counters().get(Counter::NeighborRequests), 1);

    // Same second, still unknown: dropped, no second request.
    assert!(send(&mut w, 0, &syn4(1001), 5).is_empty());
    assert_eq!(w.counters().get(Counter::DropNeighborUnresolved), 1);

    // The target answers.
    let reply = FrameBuilder::new(TARGET_MAC, PORT0);
    let mut arp_reply =
        reply.arp_request(Ipv4Addr::new(10, 20, 0, 11), Ipv4Addr::new(10, 10, 0, 1));
    arp_reply[20..22].copy_from_slice(&2u16.to_be_bytes()); // operation: reply
    arp_reply[0..6].copy_from_slice(&PORT0.0);
    send(&mut w, 0, &arp_reply, 5);
    assert_eq!(w.counters().get(Counter::NeighborLearned), 1);

    // Now packets go, to the target's MAC.
    let out = send(&mut w, 0, &syn4(1002), 6);
    let eth = ethernet::Packet::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), TARGET_MAC);
    let ip = ipv4::Packet::new_checked(&out[0][14..]).unwrap();
    assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 20, 0, 11));

    // After the refresh time the MAC is still used and a refresh goes out in
    // a buffer of its own.
    let out = send(&mut w, 0, &syn4(1003), 40);
    assert_eq!(out.len(), 2, "the data packet and a refresh request");
    assert!(out
        .iter()
        .any(|f| ethernet::Packet::new_checked(&f[..]).unwrap().dst_addr() == TARGET_MAC));
    assert_eq!(w.counters().get(Counter::NeighborRequests), 2);

    // Past the timeout without confirmation: unknown again.
    let out = send(&mut w, 0, &syn4(1004), 200);
    assert_eq!(
        ethernet::Packet::new_checked(&out[0][..])
            .unwrap()
            .ethertype(),
        EtherType::Arp
    );
}

#[test]
fn ipv6_target_is_resolved_by_neighbor_solicitation() {
    let mut w = worker("");
    let syn6 = client().tcp(
        IpAddr::V6("2001:db8:1::7".parse().unwrap()),
        IpAddr::V6("2001:db8::10".parse().unwrap()),
        1000,
        80,
        flags::SYN,
        &[],
    );
    let out = send(&mut w, 0, &syn6, 5);
    let ip = ipv6::Packet::new_checked(&out[0][14..]).unwrap();
    let target: Ipv6Addr = "fd00:20::11".parse().unwrap();
    assert_eq!(ip.dst_addr(), ipv6::solicited_node_multicast(&target));
    assert_eq!(ip.src_addr(), "fd00:10::1".parse::<Ipv6Addr>().unwrap());
    assert_eq!(ip.hop_limit(), 255);
    let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!(
        icmpv6::Repr::parse(&icmp).unwrap(),
        icmpv6::Repr::NeighborSolicit {
            target_addr: target,
            lladdr: Some(PORT0)
        }
    );
    // The target advertises itself.
    let mut na = FrameBuilder::new(TARGET_MAC, PORT0).neighbor_solicit(target, target);
    // Turn the solicitation into an advertisement of `target` with its MAC:
    // build it properly with the wire Repr instead of patching bytes.
    let repr = icmpv6::Repr::NeighborAdvert {
        router_flag: false,
        solicited_flag: true,
        override_flag: true,
        target_addr: target,
        lladdr: Some(TARGET_MAC),
    };
    na.truncate(14 + 40);
    na.resize(14 + 40 + repr.buffer_len(), 0);
    let src = target;
    let dst: Ipv6Addr = "fd00:10::1".parse().unwrap();
    {
        let mut ip = ipv6::Packet::new_unchecked(&mut na[14..]);
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.set_payload_len(repr.buffer_len() as u16);
    }
    repr.emit(
        &src,
        &dst,
        &mut icmpv6::Packet::new_unchecked(&mut na[54..]),
    );
    send(&mut w, 0, &na, 5);
    assert_eq!(w.counters().get(Counter::NeighborLearned), 1);
    let out = send(&mut w, 0, &syn6, 6);
    assert_eq!(
        ethernet::Packet::new_checked(&out[0][..])
            .unwrap()
            .dst_addr(),
        TARGET_MAC
    );
}

#[test]
fn a_gateway_is_resolved_instead_of_the_targets() {
    let mut w = worker("gateway = \"10.10.0.254\"");
    let out = send(&mut w, 0, &syn4(1000), 5);
    let req = arp::Repr::parse(&arp::Packet::new_checked(&out[0][14..]).unwrap()).unwrap();
    assert_eq!(req.target_protocol_addr, Ipv4Addr::new(10, 10, 0, 254));
}

#[test]
fn start_announces_every_vipa_from_every_port_and_link_loss_moves_them() {
    let mut w = worker("next_hop_mac = \"02:00:00:00:0a:fe\"");
    w.start(1);
    for (port, mac) in [(0usize, PORT0), (1, PORT1)] {
        let frames: Vec<Vec<u8>> = w.queues[port]
            .1
            .tx
            .drain(..)
            .map(|b| b.data().to_vec())
            .collect();
        assert_eq!(frames.len(), 2, "one GARP and one NA on port {port}");
        let garp = arp::Repr::parse(&arp::Packet::new_checked(&frames[0][14..]).unwrap()).unwrap();
        assert_eq!(garp.source_protocol_addr, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(garp.target_protocol_addr, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(garp.source_hardware_addr, mac);
        let ip = ipv6::Packet::new_checked(&frames[1][14..]).unwrap();
        assert_eq!(ip.dst_addr(), "ff02::1".parse::<Ipv6Addr>().unwrap());
        let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.override_flag() && !icmp.solicited_flag());
        assert_eq!(icmp.target_lladdr().unwrap(), Some(mac));
    }
    assert_eq!(w.counters().get(Counter::GratuitousArpSent), 2);
    assert_eq!(w.counters().get(Counter::UnsolicitedNaSent), 2);

    // Port 0 loses link: port 1 announces everything with its own MAC.
    w.queues[0].1.link = false;
    w.poll(2);
    assert_eq!(w.counters().get(Counter::LinkDown), 1);
    assert!(w.queues[0].1.tx.is_empty());
    let frames: Vec<Vec<u8>> = w.queues[1]
        .1
        .tx
        .drain(..)
        .map(|b| b.data().to_vec())
        .collect();
    assert_eq!(frames.len(), 2);
    let garp = arp::Repr::parse(&arp::Packet::new_checked(&frames[0][14..]).unwrap()).unwrap();
    assert_eq!(garp.source_hardware_addr, PORT1);

    // Link back: port 0 announces again.
    w.queues[0].1.link = true;
    w.poll(3);
    assert_eq!(w.counters().get(Counter::LinkUp), 1);
    assert_eq!(w.queues[0].1.tx.len(), 2);
}
