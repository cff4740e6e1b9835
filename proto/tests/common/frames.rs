//! Known-good frames built with the `Repr`s: the seeds of the fuzz corpus
//! and the starting points of the mutation property test.

#![allow(dead_code)]

use core::net::{Ipv4Addr, Ipv6Addr};

use vipa_proto::wire::{
    arp, ethernet, gre, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress,
};

pub const CLIENT_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
pub const NODE_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x0a, 0x01]);
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const VIPA4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const ROUTER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const NODE4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const TARGET4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10);
pub const VIPA6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);

pub fn eth(vlan: Option<u16>, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let repr = ethernet::Repr {
        src: CLIENT_MAC,
        dst: NODE_MAC,
        vlan,
        ethertype,
    };
    let mut buf = vec![0u8; repr.header_len() + payload.len()];
    let mut p = ethernet::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    buf
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let repr = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: proto,
        payload_len: payload.len(),
        hop_limit: 64,
        dscp: 0,
        ecn: 0,
        dont_frag: true,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = ipv4::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    buf
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let repr = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len: payload.len(),
        hop_limit: if next_header == icmpv6::PROTOCOL {
            255
        } else {
            64
        },
        dscp: 0,
        ecn: 0,
        flow_label: 0,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = ipv6::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    buf
}

fn tcp_segment(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let repr = tcp::Repr {
        src_port: sport,
        dst_port: dport,
        seq_number: 0x1234_5678,
        ack_number: if flags & tcp::flags::ACK != 0 { 1 } else { 0 },
        flags,
        window: 64240,
        payload_len: payload.len(),
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = tcp::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    buf
}

pub fn tcp_v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = tcp_segment(sport, dport, flags, payload);
    tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v4(&src, &dst);
    ipv4(src, dst, tcp::PROTOCOL, &seg)
}

pub fn tcp_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut seg = tcp_segment(sport, dport, flags, payload);
    tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum_v6(&src, &dst);
    ipv6(src, dst, tcp::PROTOCOL, &seg)
}

fn udp_datagram(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let repr = udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload_len: payload.len(),
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut p = udp::Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(payload);
    buf
}

pub fn udp_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = udp_datagram(sport, dport, payload);
    udp::Packet::new_unchecked(&mut d[..]).fill_checksum_v4(&src, &dst);
    ipv4(src, dst, udp::PROTOCOL, &d)
}

pub fn udp_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = udp_datagram(sport, dport, payload);
    udp::Packet::new_unchecked(&mut d[..]).fill_checksum_v6(&src, &dst);
    ipv6(src, dst, udp::PROTOCOL, &d)
}

/// An ICMPv4 message inside IPv4; `data` is the echo data or quoted packet.
pub fn icmpv4(src: Ipv4Addr, dst: Ipv4Addr, repr: icmpv4::Repr, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; icmpv4::HEADER_LEN + data.len()];
    let mut p = icmpv4::Packet::new_unchecked(&mut buf[..]);
    p.data_mut().copy_from_slice(data);
    repr.emit(&mut p);
    ipv4(src, dst, icmpv4::PROTOCOL, &buf)
}

/// An ICMPv6 message inside IPv6; `data` is copied after the fixed part.
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, repr: icmpv6::Repr, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len().max(repr.header_len() + data.len())];
    let hl = repr.header_len();
    buf[hl..hl + data.len()].copy_from_slice(data);
    repr.emit(&src, &dst, &mut icmpv6::Packet::new_unchecked(&mut buf[..]));
    ipv6(src, dst, icmpv6::PROTOCOL, &buf)
}

pub fn gre(repr: gre::Repr, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; repr.header_len() + payload.len()];
    buf[repr.header_len()..].copy_from_slice(payload);
    repr.emit(&mut gre::Packet::new_unchecked(&mut buf[..]));
    buf
}

pub fn arp(operation: arp::Operation, tpa: Ipv4Addr) -> Vec<u8> {
    let repr = arp::Repr {
        operation,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: CLIENT4,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: tpa,
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
    buf
}

/// Named frames covering every parser, valid and a few truncated ones.
pub fn sample_frames() -> Vec<(&'static str, Vec<u8>)> {
    let syn4 = tcp_v4(CLIENT4, VIPA4, 49152, 80, tcp::flags::SYN, &[]);
    let syn6 = tcp_v6(CLIENT6, VIPA6, 49153, 443, tcp::flags::SYN, &[]);
    let data4 = tcp_v4(
        CLIENT4,
        VIPA4,
        49152,
        80,
        tcp::flags::ACK | tcp::flags::PSH,
        &[0x47; 1400],
    );
    let mut arp_frame = eth(None, EtherType::Arp, &arp(arp::Operation::Request, VIPA4));
    arp_frame.resize(60, 0); // Ethernet minimum, padded

    // A router says the client's 1500-byte segment (VIPA → client) needs
    // fragmenting; it quotes the IPv4 header and 8 bytes of TCP.
    let reply = tcp_v4(VIPA4, CLIENT4, 80, 49152, tcp::flags::ACK, &[0x47; 1460]);
    let frag_needed = icmpv4(
        ROUTER4,
        VIPA4,
        icmpv4::Repr::DstUnreachable {
            code: icmpv4::DstUnreachable::FragNeeded,
            next_hop_mtu: 1400,
            data_len: 28,
        },
        &reply[..28],
    );
    let echo4 = icmpv4(
        CLIENT4,
        VIPA4,
        icmpv4::Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data_len: 16,
        },
        b"0123456789abcdef",
    );
    let ns = icmpv6(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456),
        ipv6::solicited_node_multicast(&VIPA6),
        icmpv6::Repr::NeighborSolicit {
            target_addr: VIPA6,
            lladdr: Some(CLIENT_MAC),
        },
        &[],
    );
    let reply6 = tcp_v6(VIPA6, CLIENT6, 443, 49153, tcp::flags::ACK, &[0x47; 1400]);
    let ptb = icmpv6(
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1),
        VIPA6,
        icmpv6::Repr::PktTooBig {
            mtu: 1280,
            data_len: 1232,
        },
        &reply6[..1232],
    );
    let echo6 = icmpv6(
        CLIENT6,
        VIPA6,
        icmpv6::Repr::EchoRequest {
            ident: 7,
            seq_no: 1,
            data_len: 8,
        },
        b"pingping",
    );
    let plain_gre = gre::Repr {
        protocol_type: EtherType::Ipv4,
        key: None,
        sequence: None,
        checksum: false,
    };
    let gre4 = ipv4(NODE4, TARGET4, gre::PROTOCOL, &gre(plain_gre, &syn4));
    let full_gre = gre::Repr {
        protocol_type: EtherType::Ipv6,
        key: Some(0xdead_beef),
        sequence: Some(1),
        checksum: true,
    };
    let gre6_in4 = ipv4(NODE4, TARGET4, gre::PROTOCOL, &gre(full_gre, &syn6));

    let mut frames = vec![
        ("arp_request", arp_frame),
        ("ipv4_tcp_syn", eth(None, EtherType::Ipv4, &syn4)),
        ("ipv4_tcp_data", eth(None, EtherType::Ipv4, &data4)),
        ("ipv6_tcp_syn", eth(None, EtherType::Ipv6, &syn6)),
        (
            "ipv4_udp",
            eth(
                None,
                EtherType::Ipv4,
                &udp_v4(CLIENT4, VIPA4, 5353, 53, b"query"),
            ),
        ),
        (
            "ipv6_udp",
            eth(
                None,
                EtherType::Ipv6,
                &udp_v6(CLIENT6, VIPA6, 5353, 53, b"query"),
            ),
        ),
        ("icmp_echo_request", eth(None, EtherType::Ipv4, &echo4)),
        (
            "icmp_frag_needed_tcp",
            eth(None, EtherType::Ipv4, &frag_needed),
        ),
        ("icmpv6_neighbor_solicit", eth(None, EtherType::Ipv6, &ns)),
        (
            "icmpv6_packet_too_big_tcp",
            eth(None, EtherType::Ipv6, &ptb),
        ),
        ("icmpv6_echo_request", eth(None, EtherType::Ipv6, &echo6)),
        ("gre_ipv4_in_ipv4", eth(None, EtherType::Ipv4, &gre4)),
        (
            "gre_keyed_ipv6_in_ipv4",
            eth(None, EtherType::Ipv4, &gre6_in4),
        ),
        ("vlan_ipv4_tcp_syn", eth(Some(100), EtherType::Ipv4, &syn4)),
        ("qinq_ipv4", eth(Some(100), EtherType::Vlan, &syn4)),
    ];
    let truncated = [
        ("truncated_ipv4_tcp", frames[1].1[..40].to_vec()),
        ("truncated_vlan_tag", frames[13].1[..16].to_vec()),
    ];
    let mut zero_option = frames[8].1.clone();
    zero_option[14 + 40 + 24 + 1] = 0; // NDP option length 0: malformed
    frames.push(("ndp_option_len_zero", zero_option));
    frames.extend(truncated);
    frames
}
