//! The pipeline's behaviour, path by path, through the in-memory port and
//! the real worker: what comes out, and which counter moved.

mod common;

use std::net::Ipv4Addr;

use common::*;
use vipa_forwarder::buf::{HeapBuf, PacketBuffer};
use vipa_forwarder::counters::Counter;
use vipa_forwarder::pipeline::{Outputs, Pipeline};
use vipa_forwarder::port::{Burst, PortQueue};
use vipa_forwarder::worker::Worker;
use vipa_proto::build::ip_packet;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::wire::{
    arp, ethernet, gre, icmpv4, icmpv6, ipv4, ipv6, tcp::flags, EtherType, EthernetAddress,
};

fn outer_v4(frame: &[u8]) -> (ethernet::Repr, ipv4::Packet<&[u8]>) {
    let eth = ethernet::Packet::new_checked(frame).unwrap();
    let e = ethernet::Repr::parse(&eth).unwrap();
    let ip = ipv4::Packet::new_checked(&frame[e.header_len()..]).unwrap();
    (e, ip)
}

#[test]
fn tcp_to_vipa_is_gre_encapsulated_with_the_header_policy() {
    let mut w = worker();
    let mut b = builder();
    b.dscp = 46;
    b.ecn = 1;
    let input = b.tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::SYN, b"hello");
    let out = send(&mut w, 0, &input);
    assert_eq!(out.tx.len(), 1);
    let frame = &out.tx[0];
    let (e, ip) = outer_v4(frame);
    assert_eq!(e.src, PORT_MAC);
    assert_eq!(e.dst, ROUTER_MAC);
    assert_eq!(e.ethertype, EtherType::Ipv4);
    assert!(ip.verify_checksum());
    assert_eq!(ip.hop_limit(), 64);
    assert_eq!(ip.next_header(), 47);
    assert_eq!(ip.dscp(), 46);
    assert_eq!(ip.ecn(), 1);
    assert!(ip.dont_frag());
    assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 10, 0, 1));
    assert!([11u8, 12, 13].contains(&ip.dst_addr().octets()[3]));
    let g = gre::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(g.header_len(), 4);
    assert_eq!(g.protocol_type(), EtherType::Ipv4);
    assert_eq!(
        g.payload(),
        ip_packet(&input),
        "inner packet byte-identical"
    );
    assert_eq!(w.counters().get(Counter::Forwarded), 1);
    assert_eq!(w.counters().get(Counter::FlowsCreated), 1);

    // The next packet of the flow hits the flow table and goes to the same target.
    let next = builder().tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::ACK, b"more");
    let out2 = send(&mut w, 0, &next);
    let (_, ip2) = outer_v4(&out2.tx[0]);
    assert_eq!(ip2.dst_addr(), ip.dst_addr());
    assert_eq!(w.counters().get(Counter::FlowTableHits), 1);
}

#[test]
fn df_clear_inner_gives_df_clear_outer_with_an_ident() {
    let mut w = worker();
    let mut b = builder();
    b.dont_frag = false;
    let input = b.udp(v4(CLIENT4), v4(VIPA4), 5000, 53, b"q");
    let out = send(&mut w, 0, &input);
    let (_, ip) = outer_v4(&out.tx[0]);
    assert!(!ip.dont_frag());
    assert_ne!(ip.ident(), 0);
}

#[test]
fn ipv6_flow_gets_an_ipv6_outer_header() {
    let mut w = worker();
    let mut b = builder();
    b.dscp = 10;
    b.ecn = 2;
    let input = b.udp(v6(client6()), v6(vipa6()), 5353, 53, b"query");
    let out = send(&mut w, 0, &input);
    assert_eq!(out.tx.len(), 1);
    let frame = &out.tx[0];
    let eth = ethernet::Packet::new_checked(&frame[..]).unwrap();
    assert_eq!(eth.ethertype(), EtherType::Ipv6);
    let ip = ipv6::Packet::new_checked(&frame[14..]).unwrap();
    assert_eq!(ip.next_header(), 47);
    assert_eq!(ip.hop_limit(), 64);
    assert_eq!(ip.traffic_class(), (10 << 2) | 2);
    assert_eq!(
        ip.src_addr(),
        "fd00:10::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let g = gre::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(g.protocol_type(), EtherType::Ipv6);
    assert_eq!(g.payload(), ip_packet(&input));
}

#[test]
fn ipv4_vipa_with_ipv6_target_uses_an_ipv6_outer_header() {
    let mut w = worker();
    let input = builder().tcp(
        v4(CLIENT4),
        v4(Ipv4Addr::new(192, 0, 2, 20)),
        1234,
        80,
        flags::SYN,
        &[],
    );
    let out = send(&mut w, 0, &input);
    let ip = ipv6::Packet::new_checked(&out.tx[0][14..]).unwrap();
    assert_eq!(
        ip.dst_addr(),
        "fd00:20::21".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let g = gre::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(g.protocol_type(), EtherType::Ipv4);
    assert_eq!(g.payload(), ip_packet(&input));
}

#[test]
fn arp_request_for_vipa_is_answered_from_the_ingress_port_mac() {
    let mut w = worker();
    let req = builder().arp_request(Ipv4Addr::new(192, 0, 2, 1), VIPA4);
    for (port, mac) in [(0usize, [2, 0, 0, 0, 0x0a, 1]), (1, [2, 0, 0, 0, 0x0b, 1])] {
        let out = send(&mut w, port, &req);
        assert_eq!(out.tx.len(), 1, "port {port}");
        let f = &out.tx[0];
        let eth = ethernet::Packet::new_checked(&f[..]).unwrap();
        assert_eq!(eth.src_addr(), EthernetAddress(mac));
        assert_eq!(eth.dst_addr(), ROUTER_MAC);
        let a = arp::Repr::parse(&arp::Packet::new_checked(&f[14..]).unwrap()).unwrap();
        assert_eq!(a.operation, arp::Operation::Reply);
        assert_eq!(a.source_hardware_addr, EthernetAddress(mac));
        assert_eq!(a.source_protocol_addr, VIPA4);
        assert_eq!(a.target_hardware_addr, ROUTER_MAC);
        assert_eq!(a.target_protocol_addr, Ipv4Addr::new(192, 0, 2, 1));
    }
    assert_eq!(w.counters().get(Counter::ArpReplies), 2);
    let other = builder().arp_request(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 99));
    let out = send(&mut w, 0, &other);
    assert_eq!(out.host.len(), 1);
    assert_eq!(w.counters().get(Counter::HostArp), 1);
}

#[test]
fn neighbor_solicitation_for_vipa_gets_an_advertisement() {
    let mut w = worker();
    let ns = builder().neighbor_solicit(client6(), vipa6());
    let out = send(&mut w, 0, &ns);
    assert_eq!(
        out.host.len(),
        0,
        "counters: {:?}",
        w.counters().nonzero().collect::<Vec<_>>()
    );
    assert_eq!(out.tx.len(), 1);
    let f = &out.tx[0];
    let eth = ethernet::Packet::new_checked(&f[..]).unwrap();
    assert_eq!(eth.src_addr(), PORT_MAC);
    assert_eq!(eth.dst_addr(), ROUTER_MAC);
    let ip = ipv6::Packet::new_checked(&f[14..]).unwrap();
    assert_eq!(ip.hop_limit(), 255);
    assert_eq!(ip.src_addr(), vipa6());
    assert_eq!(ip.dst_addr(), client6());
    let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    match icmpv6::Repr::parse(&icmp).unwrap() {
        icmpv6::Repr::NeighborAdvert {
            router_flag,
            solicited_flag,
            override_flag,
            target_addr,
            lladdr,
        } => {
            assert!(!router_flag && solicited_flag && override_flag);
            assert_eq!(target_addr, vipa6());
            assert_eq!(lladdr, Some(PORT_MAC));
        }
        other => panic!("not an NA: {other:?}"),
    }
    // Duplicate address detection (unspecified source) → all-nodes, S = 0.
    let dad = builder().neighbor_solicit(std::net::Ipv6Addr::UNSPECIFIED, vipa6());
    let out = send(&mut w, 0, &dad);
    let ip = ipv6::Packet::new_checked(&out.tx[0][14..]).unwrap();
    assert_eq!(
        ip.dst_addr(),
        "ff02::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(!icmp.solicited_flag());
    assert_eq!(w.counters().get(Counter::NeighborAdverts), 2);
}

#[test]
fn echo_requests_are_answered_from_the_vipa() {
    let mut w = worker();
    let ping = builder().icmpv4_echo_request(CLIENT4, VIPA4, 7, 9, b"abcdefgh");
    let out = send(&mut w, 0, &ping);
    let (e, ip) = outer_v4(&out.tx[0]);
    assert_eq!(e.dst, ROUTER_MAC);
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), VIPA4);
    assert_eq!(ip.dst_addr(), CLIENT4);
    let icmp = icmpv4::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(
        icmpv4::Repr::parse(&icmp).unwrap(),
        icmpv4::Repr::EchoReply {
            ident: 7,
            seq_no: 9,
            data_len: 8
        }
    );
    assert_eq!(icmp.data(), b"abcdefgh");

    let ping6 = builder().icmpv6_echo_request(client6(), vipa6(), 7, 9, b"abc");
    let out = send(&mut w, 0, &ping6);
    let ip = ipv6::Packet::new_checked(&out.tx[0][14..]).unwrap();
    assert_eq!(ip.src_addr(), vipa6());
    let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!(icmp.msg_type(), icmpv6::Message::EchoReply);
    assert_eq!(w.counters().get(Counter::EchoReplies), 2);

    // A corrupted echo request is dropped, not answered.
    let mut bad = ping.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let out = send(&mut w, 0, &bad);
    assert!(out.tx.is_empty());
    assert_eq!(w.counters().get(Counter::DropIcmpChecksum), 1);
}

/// Packets and bytes are counted per (service slot, target slot): two
/// services of one VIPA, on the general path (first packets) and the fast
/// path (flow-table hits), and an ICMP error counted for the flow's service.
#[test]
fn packets_and_bytes_are_counted_per_service_and_target() {
    let mut w = worker();
    let config = config();
    let tables = tables();
    let slot = |port: u16, proto: u8| config.service_slot(v4(VIPA4), proto, port).unwrap() as u32;
    let target_slot = |a: Ipv4Addr| {
        let i = tables.targets.iter().position(|t| t.address == v4(a));
        i.unwrap() as u32
    };
    let (http, https, dns) = (slot(80, 6), slot(443, 6), slot(53, 17));
    assert_eq!((http, https, dns), (0, 1, 2), "file order");
    // (service slot, target slot) -> (packets, inner bytes) expected.
    let mut want = std::collections::BTreeMap::<(u32, u32), [u64; 2]>::new();
    let mut expect = |out: &Outcome, service: u32, inner: usize| -> Ipv4Addr {
        assert_eq!(out.tx.len(), 1);
        let (_, ip) = outer_v4(&out.tx[0]);
        let e = want
            .entry((service, target_slot(ip.dst_addr())))
            .or_default();
        e[0] += 1;
        e[1] += inner as u64;
        ip.dst_addr()
    };
    for (sport, dport, service) in [(40000, 80, http), (40001, 443, https), (40002, 80, http)] {
        for (i, f) in [flags::SYN, flags::ACK, flags::ACK].into_iter().enumerate() {
            let frame = builder().tcp(v4(CLIENT4), v4(VIPA4), sport, dport, f, &vec![7; i * 100]);
            let out = send(&mut w, 0, &frame);
            expect(&out, service, ip_packet(&frame).len());
        }
    }
    let frame = builder().udp(v4(CLIENT4), v4(VIPA4), 5353, 53, b"query");
    let out = send(&mut w, 0, &frame);
    expect(&out, dns, ip_packet(&frame).len());
    // An ICMP error about the 443 flow counts for tcp/443.
    let err = frag_needed_about_reply(40001);
    let out = send(&mut w, 0, &err);
    expect(&out, https, ip_packet(&err).len());

    let c = w.counters();
    assert!(
        c.get(Counter::FlowTableHits) >= 6,
        "the fast path counted too"
    );
    for (&(service, target), &figures) in &want {
        assert_eq!(
            c.service_target(service, target),
            figures,
            "service {service} target {target}"
        );
    }
    let counted: u64 = c.service_targets.iter().map(|p| p[0]).sum();
    assert_eq!(
        counted,
        c.get(Counter::Forwarded),
        "every forwarded packet, once"
    );
    assert_eq!(counted, 11);
    // Nothing for a service of another VIPA.
    let other = config.service_slot(v6(vipa6()), 6, 80).unwrap() as u32;
    assert!((0..6).all(|t| c.service_target(other, t) == [0, 0]));
}

/// A router's "fragmentation needed" (MTU 1400) about a 1400-byte reply
/// from VIPA:443 to the client's `client_port`: an ICMP error about the
/// flow client:client_port → VIPA:443.
fn frag_needed_about_reply(client_port: u16) -> Vec<u8> {
    let reply = builder().tcp(
        v4(VIPA4),
        v4(CLIENT4),
        443,
        client_port,
        flags::ACK,
        &[0; 1400],
    );
    builder().icmpv4_frag_needed(
        Ipv4Addr::new(203, 0, 113, 1),
        VIPA4,
        1400,
        &ip_packet(&reply)[..28],
    )
}

#[test]
fn icmp_error_about_a_flow_goes_to_the_flows_target() {
    let mut w = worker();
    let syn = builder().tcp(v4(CLIENT4), v4(VIPA4), 40000, 443, flags::SYN, &[]);
    let first = send(&mut w, 0, &syn);
    let (_, ip) = outer_v4(&first.tx[0]);
    let target = ip.dst_addr();
    // The target's reply (VIPA:443 → client) was too big somewhere.
    let err = frag_needed_about_reply(40000);
    let out = send(&mut w, 0, &err);
    assert_eq!(out.tx.len(), 1);
    let (_, eip) = outer_v4(&out.tx[0]);
    assert_eq!(eip.dst_addr(), target);
    assert_eq!(
        gre::Packet::new_checked(eip.payload()).unwrap().payload(),
        ip_packet(&err)
    );
    assert_eq!(w.counters().get(Counter::IcmpErrorsForwarded), 1);
    assert_eq!(
        w.counters().get(Counter::FlowsCreated),
        1,
        "an error is not a flow"
    );
    // Found in the flow table: the quoted flow's signature is the flow's.
    assert_eq!(w.counters().get(Counter::FlowTableHits), 1);
    assert_eq!(
        w.counters().get(Counter::MaglevLookups),
        1,
        "the SYN's only"
    );
}

#[test]
fn icmpv6_error_about_a_flow_goes_to_the_flows_target_with_its_flow_label() {
    let mut w = worker();
    let syn = builder().tcp(v6(client6()), v6(vipa6()), 40000, 80, flags::SYN, &[]);
    let first = send(&mut w, 0, &syn);
    let ip = ipv6::Packet::new_checked(&first.tx[0][14..]).unwrap();
    let (target, label) = (ip.dst_addr(), ip.flow_label());
    // The outer flow label is the cluster's flow hash, the same on every
    // node (not the worker's keyed flow-table signature).
    let hash = FlowKey::v6(client6().octets(), vipa6().octets(), 6, 40000, 80).hash();
    assert_eq!(label, (hash & 0xF_FFFF) as u32);
    // The target's reply (VIPA:80 → client) was too big somewhere.
    let reply = builder().tcp(
        v6(vipa6()),
        v6(client6()),
        80,
        40000,
        flags::ACK,
        &[0; 1400],
    );
    let err = builder().icmpv6_packet_too_big(
        "2001:db8:ff::1".parse().unwrap(),
        vipa6(),
        1400,
        &ip_packet(&reply)[..48],
    );
    let out = send(&mut w, 0, &err);
    assert_eq!(out.tx.len(), 1);
    let eip = ipv6::Packet::new_checked(&out.tx[0][14..]).unwrap();
    assert_eq!(eip.dst_addr(), target);
    assert_eq!(eip.flow_label(), label, "the flow's flow label");
    assert_eq!(w.counters().get(Counter::IcmpErrorsForwarded), 1);
    assert_eq!(w.counters().get(Counter::FlowTableHits), 1);
    assert_eq!(
        w.counters().get(Counter::MaglevLookups),
        1,
        "the SYN's only"
    );
}

#[test]
fn too_big_with_df_bounces_frag_needed_with_the_tunnel_mtu() {
    let mut w = worker();
    let big = builder().tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::ACK, &[0x55; 1460]);
    let out = send(&mut w, 0, &big);
    assert_eq!(out.tx.len(), 1);
    let (e, ip) = outer_v4(&out.tx[0]);
    assert_eq!(e.dst, ROUTER_MAC);
    assert_eq!(ip.src_addr(), VIPA4);
    assert_eq!(ip.dst_addr(), CLIENT4);
    assert!(ip.verify_checksum());
    assert!(ip.total_len() as usize <= 576);
    let icmp = icmpv4::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(icmp.msg_type(), icmpv4::Message::DstUnreachable);
    assert_eq!(icmp.code(), 4);
    assert_eq!(icmp.next_hop_mtu(), 1500 - 24);
    assert_eq!(icmp.data(), &ip_packet(&big)[..icmp.data().len()]);
    assert_eq!(w.counters().get(Counter::IcmpFragNeededSent), 1);

    let mut no_df = builder();
    no_df.dont_frag = false;
    let big = no_df.udp(v4(CLIENT4), v4(VIPA4), 4000, 53, &[0; 1472]);
    let out = send(&mut w, 0, &big);
    assert!(out.tx.is_empty());
    assert_eq!(w.counters().get(Counter::DropMtuNoDf), 1);

    let big6 = builder().tcp(
        v6(client6()),
        v6(vipa6()),
        40000,
        80,
        flags::ACK,
        &[0; 1440],
    );
    let out = send(&mut w, 0, &big6);
    let ip = ipv6::Packet::new_checked(&out.tx[0][14..]).unwrap();
    assert!(ip.payload_len() as usize + 40 <= 1280);
    let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!(icmp.msg_type(), icmpv6::Message::PktTooBig);
    assert_eq!(icmp.mtu(), 1500 - 44);
}

#[test]
fn non_vipa_goes_to_host_and_non_services_are_dropped() {
    let mut w = worker();
    let other = builder().tcp(
        v4(CLIENT4),
        v4(Ipv4Addr::new(192, 0, 2, 50)),
        1,
        80,
        flags::SYN,
        &[],
    );
    assert_eq!(send(&mut w, 0, &other).host.len(), 1);
    let ssh = builder().tcp(v4(CLIENT4), v4(VIPA4), 1, 22, flags::SYN, &[]);
    let out = send(&mut w, 0, &ssh);
    assert!(out.tx.is_empty() && out.host.is_empty());
    let c = w.counters();
    assert_eq!(c.get(Counter::HostNotVipa), 1);
    assert_eq!(c.get(Counter::DropNotAService), 1);
}

#[test]
fn vlan_tag_is_kept_on_replies_and_encapsulated_frames() {
    let mut w = worker();
    let mut b = builder();
    b.vlan = Some(42);
    let out = send(
        &mut w,
        0,
        &b.tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::SYN, &[]),
    );
    let eth = ethernet::Packet::new_checked(&out.tx[0][..]).unwrap();
    assert_eq!(eth.vlan_id(), Some(42));
    assert_eq!(eth.payload_ethertype(), EtherType::Ipv4);
    let out = send(
        &mut w,
        0,
        &b.arp_request(Ipv4Addr::new(192, 0, 2, 1), VIPA4),
    );
    let eth = ethernet::Packet::new_checked(&out.tx[0][..]).unwrap();
    assert_eq!(eth.vlan_id(), Some(42));
}

#[test]
fn options_fragments_and_garbage_are_dropped_and_counted() {
    let mut w = worker();
    let mut opts = builder().tcp(v4(CLIENT4), v4(VIPA4), 1, 80, flags::SYN, &[]);
    opts.splice(34..34, [1u8, 1, 1, 0]);
    opts[14] = 0x46;
    let total = (opts.len() - 14) as u16;
    opts[16..18].copy_from_slice(&total.to_be_bytes());
    ipv4::Packet::new_unchecked(&mut opts[14..]).fill_checksum();
    send(&mut w, 0, &opts);
    let mut frag = builder().udp(v4(CLIENT4), v4(VIPA4), 1, 53, &[0; 16]);
    frag[20] |= 0x20;
    send(&mut w, 0, &frag);
    send(&mut w, 0, &[1, 2, 3]);
    let mut trunc = builder().tcp(v4(CLIENT4), v4(VIPA4), 1, 80, flags::SYN, &[]);
    trunc.truncate(40);
    send(&mut w, 0, &trunc);
    let c = w.counters();
    assert_eq!(c.get(Counter::DropIpv4Options), 1);
    assert_eq!(c.get(Counter::DropIpv4Fragment), 1);
    assert_eq!(c.get(Counter::DropMalformed), 2);
    assert_eq!(c.get(Counter::TxPackets), 0);
}

#[test]
fn every_frame_ends_in_exactly_one_place() {
    let mut w = worker();
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut frames = 0u64;
    for len in 0..300usize {
        let mut f: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // Make some of them look like IPv4 to the VIPA so deeper code runs.
        if len > 40 && len % 2 == 0 {
            f[12] = 0x08;
            f[13] = 0x00;
            f[14] = 0x45;
            f[30..34].copy_from_slice(&VIPA4.octets());
        }
        send(&mut w, 0, &f);
        frames += 1;
    }
    let c = w.counters();
    let host: u64 = [
        "host_not_vipa",
        "host_arp",
        "host_ndp",
        "host_other_ethertype",
    ]
    .iter()
    .map(|n| c.nonzero().find(|(k, _)| k == n).map_or(0, |(_, v)| v))
    .sum();
    assert_eq!(c.get(Counter::RxPackets), frames);
    assert_eq!(c.get(Counter::TxPackets) + host + c.drops(), frames);
}

/// A buffer whose device computes IPv4 header checksums (what an `Mbuf` on
/// a port with the offload is): records every request.
struct OffloadBuf {
    buf: HeapBuf,
    requests: Vec<(usize, usize)>,
}

impl OffloadBuf {
    /// A copy of `frame`, asked nothing yet.
    fn new(frame: &[u8]) -> Self {
        OffloadBuf {
            buf: HeapBuf::from_frame(frame),
            requests: Vec::new(),
        }
    }
}

impl PacketBuffer for OffloadBuf {
    fn data(&self) -> &[u8] {
        self.buf.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.buf.data_mut()
    }
    fn prepend(&mut self, n: usize) -> bool {
        self.buf.prepend(n)
    }
    fn adj(&mut self, n: usize) -> bool {
        self.buf.adj(n)
    }
    fn append(&mut self, n: usize) -> bool {
        self.buf.append(n)
    }
    fn truncate(&mut self, len: usize) {
        self.buf.truncate(len)
    }
    fn request_ipv4_checksum(&mut self, l2_len: usize, l3_len: usize) -> bool {
        self.requests.push((l2_len, l3_len));
        true
    }
}

/// Runs `frame` through a fresh pipeline in an [`OffloadBuf`] on port 0,
/// whose device computes IPv4 checksums: the frames to transmit (the
/// requests each got in `requests`).
fn through_offload(frame: &[u8]) -> Vec<OffloadBuf> {
    through_offload_port(frame, true)
}

/// [`through_offload`] on a port whose device offers the offload
/// (`port_offload`) or not.
fn through_offload_port(frame: &[u8], port_offload: bool) -> Vec<OffloadBuf> {
    let mut p = Pipeline::new(tables());
    p.set_ipv4_checksum_offload(0, port_offload);
    let mut rx = Burst::new();
    rx.push(OffloadBuf::new(frame));
    let mut out = Outputs::new();
    p.process_burst(0, &mut rx, 100, &mut out);
    out.tx.drain(..).collect()
}

#[test]
fn a_buffer_that_offloads_gets_checksum_zero_and_the_request() {
    let mut tagged = builder();
    tagged.vlan = Some(42);
    for (b, l2_len) in [(builder(), 14), (tagged, 18)] {
        for input in [
            b.tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::SYN, b"hello"),
            b.udp(v6(client6()), v6(vipa6()), 5000, 53, b"q"),
        ] {
            let offloaded = through_offload(&input);
            let software = send(&mut worker(), 0, &input).tx;
            // The IPv4 VIPA has IPv4 targets, the IPv6 one IPv6 targets.
            let v4_targets = input[l2_len - 2..l2_len] == [0x08, 0x00];
            assert_eq!((offloaded.len(), software.len()), (1, 1));
            let (frame, requests) = (offloaded[0].buf.data(), &offloaded[0].requests);
            if !v4_targets {
                // An IPv6 outer header: no checksum to offload.
                assert!(requests.is_empty());
                assert_eq!(frame, software[0]);
                continue;
            }
            assert_eq!(requests, &[(l2_len, 20)], "one request, l2 {l2_len}, l3 20");
            let (_, ip) = outer_v4(frame);
            assert_eq!(ip.checksum(), 0, "the device fills the checksum in");
            // Everything else is what software checksumming writes.
            let mut expected = software[0].clone();
            assert!(ipv4::Packet::new_checked(&expected[l2_len..])
                .unwrap()
                .verify_checksum());
            expected[l2_len + 10..l2_len + 12].fill(0);
            assert_eq!(frame, expected);
        }
    }
    // An IPv6 outer header (IPv4 VIPA, IPv6 target) has no checksum to offload.
    let input = builder().tcp(
        v4(CLIENT4),
        v4(Ipv4Addr::new(192, 0, 2, 20)),
        40000,
        80,
        flags::SYN,
        b"x",
    );
    let offloaded = through_offload(&input);
    assert_eq!(offloaded.len(), 1);
    assert!(offloaded[0].requests.is_empty());
    assert_eq!(
        offloaded[0].buf.data(),
        send(&mut worker(), 0, &input).tx[0]
    );
    // Replies are checksummed in software, never offloaded.
    let reply = through_offload(&builder().icmpv4_echo_request(CLIENT4, VIPA4, 7, 1, b"ping"));
    assert_eq!(reply.len(), 1);
    assert!(reply[0].requests.is_empty());
}

/// A queue of [`OffloadBuf`]s whose device offers the offload or not: what
/// the worker tells its pipeline.
struct OffloadPort {
    rx: Vec<OffloadBuf>,
    tx: Vec<OffloadBuf>,
    offload: bool,
}

impl PortQueue for OffloadPort {
    type Buf = OffloadBuf;
    fn rx_burst(&mut self, out: &mut Burst<OffloadBuf>, max: usize) -> usize {
        let n = self.rx.len().min(max).min(out.remaining_capacity());
        out.extend(self.rx.drain(..n));
        n
    }
    fn tx_burst(&mut self, frames: &mut Burst<OffloadBuf>) {
        self.tx.extend(frames.drain(..));
    }
    fn to_host(&mut self, _frames: &mut Burst<OffloadBuf>) {}
    fn ipv4_checksum_offload(&self) -> bool {
        self.offload
    }
}

#[test]
fn the_worker_offloads_checksums_on_the_queues_that_offer_it() {
    let input = builder().tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::SYN, b"hello");
    for offload in [false, true] {
        let port = OffloadPort {
            rx: vec![OffloadBuf::new(&input)],
            tx: Vec::new(),
            offload,
        };
        let mut w = Worker::new(vec![(0, port)], tables());
        w.poll(100);
        let sent = &w.queues[0].1.tx;
        assert_eq!(sent.len(), 1);
        let expected: &[(usize, usize)] = if offload { &[(14, 20)] } else { &[] };
        assert_eq!(sent[0].requests, expected, "offload {offload}");
    }
}

#[test]
fn a_port_without_the_offload_never_asks_the_buffer() {
    // Only the port's device computes checksums: a buffer that could carry
    // the request is not asked on a port that does not offer it (the
    // pipeline's default for every port), on the fast path (the flow's
    // second packet) or the general one (its first, and a tagged frame).
    let mut tagged = builder();
    tagged.vlan = Some(42);
    for b in [builder(), tagged] {
        for flag in [flags::SYN, flags::ACK] {
            let input = b.tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flag, b"hello");
            let mut p = Pipeline::new(tables());
            let mut out = Outputs::new();
            for _ in 0..2 {
                let mut rx = Burst::new();
                rx.push(OffloadBuf::new(&input));
                p.process_burst(0, &mut rx, 100, &mut out);
            }
            let software = send(&mut worker(), 0, &input).tx;
            assert_eq!(out.tx.len(), 2);
            for sent in out.tx.iter() {
                assert!(sent.requests.is_empty(), "the buffer was never asked");
                assert_eq!(sent.buf.data(), software[0], "checksummed in software");
            }
            // The same through the helper, with the port's offload on and off.
            assert!(through_offload_port(&input, false)[0].requests.is_empty());
            assert_eq!(through_offload_port(&input, true)[0].requests.len(), 1);
        }
    }
}

/// Frames around every condition of the fast path (`pipeline::fast`):
/// ordinary TCP/UDP flows (sent twice, so the second packet finds its flow
/// and takes the fast path's second half), and each way a frame can miss
/// one of its conditions by a little.
fn fast_path_cases() -> Vec<Vec<u8>> {
    let mut cases = Vec::new();
    let clients = [CLIENT4, Ipv4Addr::new(203, 0, 113, 9)];
    for (i, client) in clients.into_iter().enumerate() {
        let sport = 40000 + i as u16;
        let mut b = builder();
        cases.push(b.tcp(v4(client), v4(VIPA4), sport, 80, flags::ACK, b"x"));
        cases.push(b.tcp(v4(client), v4(VIPA4), sport, 443, flags::ACK, &[]));
        cases.push(b.udp(v4(client), v4(VIPA4), sport, 53, b"q"));
        b.dont_frag = false;
        cases.push(b.udp(v4(client), v4(VIPA4), sport + 1, 53, &[1; 100]));
        b.dscp = 46;
        b.ecn = 3;
        cases.push(b.tcp(v4(client), v4(VIPA4), sport + 2, 80, flags::SYN, &[]));
        b.dont_frag = true;
        // Inner lengths 1476 (fits: 1476 + 24 = 1500) and 1477, DF and not.
        cases.push(b.tcp(v4(client), v4(VIPA4), sport + 3, 80, flags::ACK, &[7; 1436]));
        cases.push(b.tcp(v4(client), v4(VIPA4), sport + 3, 80, flags::ACK, &[7; 1437]));
        b.dont_frag = false;
        cases.push(b.udp(v4(client), v4(VIPA4), sport + 4, 53, &[7; 1449]));
        // An IPv4 VIPA with an IPv6 target: no fast entry.
        cases.push(b.tcp(
            v4(client),
            v4(Ipv4Addr::new(192, 0, 2, 20)),
            sport,
            80,
            flags::ACK,
            &[],
        ));
        // Not a service, not a VIPA.
        cases.push(b.tcp(v4(client), v4(VIPA4), sport, 22, flags::ACK, &[]));
        cases.push(b.udp(v4(client), v4(Ipv4Addr::new(192, 0, 2, 99)), sport, 53, &[]));
        // Tagged, IPv6.
        let mut t = builder();
        t.vlan = Some(7);
        cases.push(t.tcp(v4(client), v4(VIPA4), sport, 80, flags::ACK, &[]));
        cases.push(builder().tcp(v6(client6()), v6(vipa6()), sport, 80, flags::ACK, &[]));
    }
    let base = builder().tcp(v4(CLIENT4), v4(VIPA4), 40000, 80, flags::ACK, &[0; 20]);
    let udp = builder().udp(v4(CLIENT4), v4(VIPA4), 40000, 53, &[0; 20]);
    let edit = |f: &[u8], at: usize, bytes: &[u8]| {
        let mut f = f.to_vec();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        f
    };
    // Padding after the packet (a 60-byte minimum frame and more).
    let mut padded = builder().udp(v4(CLIENT4), v4(VIPA4), 40000, 53, b"");
    padded.resize(60, 0xEE);
    cases.push(padded.clone());
    padded.resize(200, 0xEE);
    cases.push(padded);
    // Fragments (MF, an offset), options, version 6 in an IPv4 EtherType.
    cases.push(edit(&base, 20, &[0x20, 0]));
    cases.push(edit(&base, 20, &[0x40, 1]));
    cases.push(edit(&base, 14, &[0x46]));
    cases.push(edit(&base, 14, &[0x65]));
    // Total length: above the frame, below the transport header, exact.
    let total = u16::from_be_bytes([base[16], base[17]]);
    cases.push(edit(&base, 16, &(total + 1).to_be_bytes()));
    cases.push(edit(&base, 16, &39u16.to_be_bytes()));
    cases.push(edit(&base, 16, &40u16.to_be_bytes()));
    cases.push(edit(&udp, 16, &27u16.to_be_bytes()));
    cases.push(edit(&udp, 16, &28u16.to_be_bytes()));
    // Other protocols, short frames.
    cases.push(edit(&base, 23, &[1]));
    cases.push(edit(&base, 23, &[47]));
    for len in [0, 13, 14, 33, 34, 37, 38, 41] {
        cases.push(base[..len].to_vec());
    }
    cases
}

/// The fast path changes nothing but speed: every case, through the
/// burst path (which takes it) and through `process_one` (the general
/// path, which never does), gives the same frames, verdicts and counters,
/// on both ports, with flows established by earlier packets.
#[test]
fn fast_path_matches_the_general_path() {
    let tables = tables();
    let mut fast = Pipeline::new(tables.clone());
    let mut general = Pipeline::new(tables);
    let cases = fast_path_cases();
    for round in 0..3 {
        for port in [0usize, 1] {
            for (i, frame) in cases.iter().enumerate() {
                let mut rx: Burst<HeapBuf> = Burst::new();
                rx.push(HeapBuf::from_frame(frame));
                let mut out = Outputs::new();
                fast.process_burst(port, &mut rx, 100 + round, &mut out);
                let mut buf = HeapBuf::from_frame(frame);
                let verdict = general.process_one(port, &mut buf, 100 + round);
                let what = format!("round {round} port {port} case {i}");
                let (place, got) = match verdict {
                    vipa_forwarder::pipeline::Verdict::Tx => (&out.tx, "tx"),
                    vipa_forwarder::pipeline::Verdict::Host(_) => (&out.host, "host"),
                    vipa_forwarder::pipeline::Verdict::Drop(_) => (&out.drop, "drop"),
                };
                assert_eq!(place.len(), 1, "{what}: not in {got}");
                assert_eq!(place[0].data(), buf.data(), "{what}: bytes differ");
            }
        }
    }
    assert_eq!(fast.counters.values(), general.counters.values());
    assert_eq!(fast.counters.targets, general.counters.targets);
    assert!(fast.counters.get(Counter::FlowTableHits) > 50);
}
