//! Walks bytes through every parser of `vipa_proto::wire`, calling every
//! getter and `Repr::parse` on whatever passes `check_len`: the no-panic
//! rule says none of this may panic, whatever the bytes.
//!
//! Shared by `tests/wire_props.rs` and the fuzz target
//! `fuzz/fuzz_targets/parse_frame.rs` (included with `#[path]`).

#![allow(dead_code)]

use core::hint::black_box;
use core::net::{Ipv4Addr, Ipv6Addr};

use vipa_proto::wire::{
    arp, ethernet, gre, icmpv4, icmpv6, ip, ipv4, ipv6, tcp, udp, EtherType, IpProtocol,
};

/// How deep encapsulations (GRE, ICMP quotes) are followed.
const MAX_DEPTH: u32 = 3;

/// The addresses of the enclosing IP header, for pseudo-header checksums.
#[derive(Clone, Copy, Debug)]
pub enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

/// Ethernet → (802.1Q) → ARP / IPv4 / IPv6 → TCP / UDP / ICMP / ICMPv6 /
/// GRE → inner IP.
pub fn walk_frame(frame: &[u8]) {
    let Ok(eth) = ethernet::Packet::new_checked(frame) else {
        return;
    };
    black_box((
        eth.dst_addr(),
        eth.src_addr(),
        eth.ethertype(),
        eth.vlan_tag(),
        eth.vlan_id(),
        eth.payload_ethertype(),
        eth.ethertype_inner(),
        eth.header_len(),
        eth.dst_addr().is_multicast(),
    ));
    let _ = black_box(ethernet::Repr::parse(&eth));
    walk_ethertype(eth.payload_ethertype(), eth.payload(), 0);
    black_box(eth.into_payload());
}

pub fn walk_ethertype(ethertype: EtherType, bytes: &[u8], depth: u32) {
    match ethertype {
        EtherType::Arp => walk_arp(bytes),
        EtherType::Ipv4 => walk_ipv4(bytes, depth, false),
        EtherType::Ipv6 => walk_ipv6(bytes, depth, false),
        _ => {}
    }
}

pub fn walk_arp(bytes: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.hardware_type(),
        p.protocol_type(),
        p.hardware_len(),
        p.protocol_len(),
        p.operation(),
        p.sha(),
        p.spa(),
        p.tha(),
        p.tpa(),
    ));
    let _ = black_box(arp::Repr::parse(&p));
}

pub fn walk_ipv4(bytes: &[u8], depth: u32, quoted: bool) {
    let p = if quoted {
        ipv4::Packet::new_quoted(bytes)
    } else {
        ipv4::Packet::new_checked(bytes)
    };
    let Ok(p) = p else {
        return;
    };
    black_box((
        p.version(),
        p.header_len(),
        p.has_options(),
        p.dscp_ecn(),
        p.dscp(),
        p.ecn(),
        p.total_len(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
        p.hop_limit(),
        p.ttl(),
    ));
    black_box((
        p.next_header(),
        p.protocol(),
        p.checksum(),
        p.src_addr(),
        p.dst_addr(),
        p.verify_checksum(),
        p.options(),
        p.packet(),
    ));
    let _ = black_box(ipv4::Repr::parse(&p));
    let addrs = Addrs::V4(p.src_addr(), p.dst_addr());
    walk_l4(p.protocol(), p.payload(), addrs, depth, quoted);
    black_box(p.into_payload());
}

pub fn walk_ipv6(bytes: &[u8], depth: u32, quoted: bool) {
    let p = if quoted {
        ipv6::Packet::new_quoted(bytes)
    } else {
        ipv6::Packet::new_checked(bytes)
    };
    let Ok(p) = p else {
        return;
    };
    black_box((
        p.version(),
        p.traffic_class(),
        p.dscp(),
        p.ecn(),
        p.flow_label(),
        p.payload_len(),
        p.next_header(),
        p.protocol(),
        p.hop_limit(),
        p.src_addr(),
        p.dst_addr(),
        p.header_len(),
        p.packet(),
    ));
    let _ = black_box(ipv6::Repr::parse(&p));
    black_box(ipv6::solicited_node_multicast(&p.dst_addr()));
    let addrs = Addrs::V6(p.src_addr(), p.dst_addr());
    walk_l4(p.protocol(), p.payload(), addrs, depth, quoted);
    black_box(p.into_payload());
}

pub fn walk_l4(proto: IpProtocol, bytes: &[u8], addrs: Addrs, depth: u32, quoted: bool) {
    let _ = black_box(ip::transport_ports(bytes));
    match proto {
        IpProtocol::Tcp => walk_tcp(bytes, addrs),
        IpProtocol::Udp => walk_udp(bytes, addrs),
        IpProtocol::Icmp => walk_icmpv4(bytes, depth),
        IpProtocol::Icmpv6 => walk_icmpv6(bytes, addrs, depth),
        IpProtocol::Gre if !quoted => walk_gre(bytes, depth),
        _ => {}
    }
}

pub fn walk_tcp(bytes: &[u8], addrs: Addrs) {
    let Ok(p) = tcp::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.header_len(),
        p.flags(),
        (
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
            p.ack(),
            p.urg(),
            p.ece(),
            p.cwr(),
        ),
        p.window(),
        p.checksum(),
        p.urgent(),
        p.options(),
        p.payload(),
    ));
    black_box(match addrs {
        Addrs::V4(s, d) => p.verify_checksum_v4(&s, &d),
        Addrs::V6(s, d) => p.verify_checksum_v6(&s, &d),
    });
    let _ = black_box(tcp::Repr::parse(&p));
    black_box(p.into_payload());
}

pub fn walk_udp(bytes: &[u8], addrs: Addrs) {
    let Ok(p) = udp::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.src_port(),
        p.dst_port(),
        p.length(),
        p.checksum(),
        p.header_len(),
        p.payload(),
    ));
    black_box(match addrs {
        Addrs::V4(s, d) => p.verify_checksum_v4(&s, &d),
        Addrs::V6(s, d) => p.verify_checksum_v6(&s, &d),
    });
    let _ = black_box(udp::Repr::parse(&p));
    black_box(p.into_payload());
}

pub fn walk_icmpv4(bytes: &[u8], depth: u32) {
    let Ok(p) = icmpv4::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.msg_type(),
        p.msg_type().is_error(),
        p.code(),
        icmpv4::DstUnreachable::from(p.code()),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.next_hop_mtu(),
        p.header_len(),
        p.data(),
        p.payload(),
        p.verify_checksum(),
    ));
    let _ = black_box(icmpv4::Repr::parse(&p));
    if p.msg_type().is_error() && depth < MAX_DEPTH {
        walk_ipv4(p.data(), depth + 1, true);
    }
    black_box(p.into_payload());
}

pub fn walk_icmpv6(bytes: &[u8], addrs: Addrs, depth: u32) {
    let Ok(p) = icmpv6::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.msg_type(),
        p.msg_type().is_error(),
        p.code(),
        p.checksum(),
        p.echo_ident(),
        p.echo_seq_no(),
        p.mtu(),
        p.router_flag(),
        p.solicited_flag(),
        p.override_flag(),
        p.target_addr(),
        p.header_len(),
        p.data(),
        p.payload(),
    ));
    for option in p.ndp_options() {
        if let Ok(o) = black_box(option) {
            black_box((o.option_type, o.data, o.ll_addr()));
        }
    }
    let _ = black_box((p.source_lladdr(), p.target_lladdr()));
    if let Addrs::V6(s, d) = addrs {
        black_box(p.verify_checksum(&s, &d));
    }
    let _ = black_box(icmpv6::Repr::parse(&p));
    if p.msg_type().is_error() && depth < MAX_DEPTH {
        walk_ipv6(p.data(), depth + 1, true);
    }
    black_box(p.into_payload());
}

pub fn walk_gre(bytes: &[u8], depth: u32) {
    let Ok(p) = gre::Packet::new_checked(bytes) else {
        return;
    };
    black_box((
        p.checksum_present(),
        p.key_present(),
        p.seq_present(),
        p.version(),
        p.reserved0(),
        p.protocol_type(),
        p.header_len(),
        p.checksum(),
        p.key(),
        p.sequence(),
        p.payload(),
        p.verify_checksum(),
    ));
    let _ = black_box(gre::Repr::parse(&p));
    if depth < MAX_DEPTH {
        walk_ethertype(p.protocol_type(), p.payload(), depth + 1);
    }
    black_box(p.into_payload());
}

/// Every parser on the same bytes, each from the start.
pub fn walk_every_parser(bytes: &[u8]) {
    let v4 = Addrs::V4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let v6 = Addrs::V6(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    walk_frame(bytes);
    walk_arp(bytes);
    walk_ipv4(bytes, 0, false);
    walk_ipv4(bytes, 0, true);
    walk_ipv6(bytes, 0, false);
    walk_ipv6(bytes, 0, true);
    walk_tcp(bytes, v4);
    walk_tcp(bytes, v6);
    walk_udp(bytes, v4);
    walk_udp(bytes, v6);
    walk_icmpv4(bytes, 0);
    walk_icmpv6(bytes, v6, 0);
    walk_gre(bytes, 0);
}
