//! Property tests for `vipa_proto::wire`: `parse(emit(repr)) == repr` for
//! every header, and no panic on any bytes (straight, and as mutations of
//! known-good frames walked from Ethernet down to the inner packet).
//!
//! `cargo test -p vipa-proto --test wire_props -- --ignored write_seed_corpus`
//! regenerates the fuzz seed corpus in `fuzz/corpus/seed/`.

#[path = "common/frame_walk.rs"]
mod frame_walk;
#[path = "common/frames.rs"]
mod frames;

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use vipa_proto::wire::{
    arp, ethernet, gre, icmpv4, icmpv6, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress,
};

fn mac() -> impl Strategy<Value = EthernetAddress> {
    any::<[u8; 6]>().prop_map(EthernetAddress)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn ethertype() -> impl Strategy<Value = EtherType> {
    any::<u16>().prop_map(EtherType::from)
}

fn ethernet_repr() -> impl Strategy<Value = ethernet::Repr> {
    (
        mac(),
        mac(),
        proptest::option::of(any::<u16>()),
        ethertype(),
    )
        // An untagged frame cannot say "a tag follows" without one.
        .prop_filter("untagged VLAN ethertype", |(_, _, vlan, et)| {
            vlan.is_some() || *et != EtherType::Vlan
        })
        .prop_map(|(src, dst, vlan, ethertype)| ethernet::Repr {
            src,
            dst,
            vlan,
            ethertype,
        })
}

fn arp_repr() -> impl Strategy<Value = arp::Repr> {
    (any::<u16>(), mac(), v4(), mac(), v4()).prop_map(|(op, sha, spa, tha, tpa)| arp::Repr {
        operation: arp::Operation::from(op),
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_hardware_addr: tha,
        target_protocol_addr: tpa,
    })
}

fn ipv4_repr() -> impl Strategy<Value = ipv4::Repr> {
    (
        v4(),
        v4(),
        any::<u8>(),
        0usize..600,
        any::<u8>(),
        0u8..64,
        0u8..4,
        any::<bool>(),
    )
        .prop_map(
            |(src_addr, dst_addr, next_header, payload_len, hop_limit, dscp, ecn, dont_frag)| {
                ipv4::Repr {
                    src_addr,
                    dst_addr,
                    next_header,
                    payload_len,
                    hop_limit,
                    dscp,
                    ecn,
                    dont_frag,
                }
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = ipv6::Repr> {
    (
        v6(),
        v6(),
        any::<u8>(),
        0usize..600,
        any::<u8>(),
        0u8..64,
        0u8..4,
        0u32..(1 << 20),
    )
        .prop_map(
            |(src_addr, dst_addr, next_header, payload_len, hop_limit, dscp, ecn, flow_label)| {
                ipv6::Repr {
                    src_addr,
                    dst_addr,
                    next_header,
                    payload_len,
                    hop_limit,
                    dscp,
                    ecn,
                    flow_label,
                }
            },
        )
}

fn tcp_repr() -> impl Strategy<Value = tcp::Repr> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        0usize..300,
    )
        .prop_map(
            |(src_port, dst_port, seq_number, ack_number, flags, window, payload_len)| tcp::Repr {
                src_port,
                dst_port,
                seq_number,
                ack_number,
                flags,
                window,
                payload_len,
            },
        )
}

fn udp_repr() -> impl Strategy<Value = udp::Repr> {
    (any::<u16>(), any::<u16>(), 0usize..300).prop_map(|(src_port, dst_port, payload_len)| {
        udp::Repr {
            src_port,
            dst_port,
            payload_len,
        }
    })
}

fn icmpv4_repr() -> impl Strategy<Value = icmpv4::Repr> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), 0usize..100).prop_map(|(ident, seq_no, data_len)| {
            icmpv4::Repr::EchoRequest {
                ident,
                seq_no,
                data_len,
            }
        }),
        (any::<u16>(), any::<u16>(), 0usize..100).prop_map(|(ident, seq_no, data_len)| {
            icmpv4::Repr::EchoReply {
                ident,
                seq_no,
                data_len,
            }
        }),
        (any::<u8>(), any::<u16>(), 0usize..100).prop_map(|(code, next_hop_mtu, data_len)| {
            icmpv4::Repr::DstUnreachable {
                code: icmpv4::DstUnreachable::from(code),
                next_hop_mtu,
                data_len,
            }
        }),
        (any::<u8>(), 0usize..100)
            .prop_map(|(code, data_len)| icmpv4::Repr::TimeExceeded { code, data_len }),
        (any::<u8>(), any::<u8>())
            .prop_filter("types with their own variant", |(t, _)| {
                ![0, 3, 8, 11].contains(t)
            })
            .prop_map(|(t, code)| icmpv4::Repr::Other {
                msg_type: icmpv4::Message::from(t),
                code
            }),
    ]
}

fn icmpv6_repr() -> impl Strategy<Value = icmpv6::Repr> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), 0usize..100).prop_map(|(ident, seq_no, data_len)| {
            icmpv6::Repr::EchoRequest {
                ident,
                seq_no,
                data_len,
            }
        }),
        (any::<u16>(), any::<u16>(), 0usize..100).prop_map(|(ident, seq_no, data_len)| {
            icmpv6::Repr::EchoReply {
                ident,
                seq_no,
                data_len,
            }
        }),
        (any::<u32>(), 0usize..100)
            .prop_map(|(mtu, data_len)| icmpv6::Repr::PktTooBig { mtu, data_len }),
        (any::<u8>(), 0usize..100)
            .prop_map(|(code, data_len)| icmpv6::Repr::DstUnreachable { code, data_len }),
        (any::<u8>(), 0usize..100)
            .prop_map(|(code, data_len)| icmpv6::Repr::TimeExceeded { code, data_len }),
        (v6(), proptest::option::of(mac())).prop_map(|(target_addr, lladdr)| {
            icmpv6::Repr::NeighborSolicit {
                target_addr,
                lladdr,
            }
        }),
        (
            any::<(bool, bool, bool)>(),
            v6(),
            proptest::option::of(mac())
        )
            .prop_map(|((r, s, o), target_addr, lladdr)| {
                icmpv6::Repr::NeighborAdvert {
                    router_flag: r,
                    solicited_flag: s,
                    override_flag: o,
                    target_addr,
                    lladdr,
                }
            }),
        (any::<u8>(), any::<u8>())
            .prop_filter("types with their own variant", |(t, _)| {
                ![1, 2, 3, 128, 129, 135, 136].contains(t)
            })
            .prop_map(|(t, code)| icmpv6::Repr::Other {
                msg_type: icmpv6::Message::from(t),
                code
            }),
    ]
}

fn gre_repr() -> impl Strategy<Value = gre::Repr> {
    (
        ethertype(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(protocol_type, key, sequence, checksum)| gre::Repr {
            protocol_type,
            key,
            sequence,
            checksum,
        })
}

/// A known-good frame with a few bytes changed and maybe cut short.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let samples: Vec<Vec<u8>> = frames::sample_frames()
        .into_iter()
        .map(|(_, f)| f)
        .collect();
    (
        0..samples.len(),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(move |(i, flips, cut)| {
            let mut f = samples[i].clone();
            for (at, x) in flips {
                let n = at.index(f.len());
                f[n] ^= x;
            }
            if let Some(cut) = cut {
                f.truncate(cut.index(f.len() + 1));
            }
            f
        })
}

proptest! {
    #[test]
    fn ethernet_round_trip(repr in ethernet_repr(), payload in vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; repr.buffer_len() + payload.len()];
        let mut p = ethernet::Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&payload);
        let p = ethernet::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ethernet::Repr::parse(&p).unwrap(), repr);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn arp_round_trip(repr in arp_repr()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
        let p = arp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(arp::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn ipv4_round_trip(repr in ipv4_repr(), pad in 0usize..8) {
        let mut buf = vec![0u8; repr.buffer_len() + pad];
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(p.payload().len(), repr.payload_len);
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn ipv6_round_trip(repr in ipv6_repr(), pad in 0usize..8) {
        let mut buf = vec![0u8; repr.buffer_len() + pad];
        repr.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]));
        let p = ipv6::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(p.payload().len(), repr.payload_len);
        prop_assert_eq!(ipv6::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn tcp_round_trip(repr in tcp_repr(), src in v4(), dst in v4(), src6 in v6(), dst6 in v6()) {
        let mut buf = vec![0x5au8; repr.buffer_len()];
        let mut p = tcp::Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.fill_checksum_v4(&src, &dst);
        prop_assert!(p.verify_checksum_v4(&src, &dst));
        p.fill_checksum_v6(&src6, &dst6);
        prop_assert!(p.verify_checksum_v6(&src6, &dst6));
        let p = tcp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(tcp::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn udp_round_trip(repr in udp_repr(), src in v4(), dst in v4(), src6 in v6(), dst6 in v6()) {
        let mut buf = vec![0xa5u8; repr.buffer_len()];
        let mut p = udp::Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.fill_checksum_v4(&src, &dst);
        prop_assert!(p.verify_checksum_v4(&src, &dst));
        p.fill_checksum_v6(&src6, &dst6);
        prop_assert!(p.checksum() != 0);
        prop_assert!(p.verify_checksum_v6(&src6, &dst6));
        let p = udp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(udp::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn icmpv4_round_trip(repr in icmpv4_repr(), fill in any::<u8>()) {
        let mut buf = vec![fill; repr.buffer_len()];
        repr.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]));
        let p = icmpv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(icmpv4::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn icmpv6_round_trip(repr in icmpv6_repr(), src in v6(), dst in v6(), fill in any::<u8>()) {
        let mut buf = vec![fill; repr.buffer_len()];
        repr.emit(&src, &dst, &mut icmpv6::Packet::new_unchecked(&mut buf[..]));
        let p = icmpv6::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum(&src, &dst));
        prop_assert_eq!(icmpv6::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn gre_round_trip(repr in gre_repr(), payload in vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0xffu8; repr.buffer_len() + payload.len()];
        buf[repr.header_len()..].copy_from_slice(&payload);
        repr.emit(&mut gre::Packet::new_unchecked(&mut buf[..]));
        let p = gre::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_eq!(gre::Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn no_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..200)) {
        frame_walk::walk_every_parser(&bytes);
    }

    #[test]
    fn no_panic_on_mutated_frames(frame in mutated_frame()) {
        frame_walk::walk_frame(&frame);
        // Also from every layer boundary a parser might start at.
        for start in [14, 18, 34, 38, 54, 58, 62] {
            if let Some(rest) = frame.get(start..) {
                frame_walk::walk_every_parser(rest);
            }
        }
    }
}

/// The sample frames are valid at every layer they claim to have.
#[test]
fn sample_frames_parse() {
    for (name, f) in frames::sample_frames() {
        frame_walk::walk_frame(&f);
        if name.starts_with("truncated") || name == "qinq_ipv4" || name == "ndp_option_len_zero" {
            continue;
        }
        let eth = ethernet::Packet::new_checked(&f[..]).unwrap();
        ethernet::Repr::parse(&eth).unwrap();
        match eth.payload_ethertype() {
            EtherType::Arp => {
                arp::Repr::parse(&arp::Packet::new_checked(eth.payload()).unwrap()).unwrap();
            }
            EtherType::Ipv4 => {
                let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
                ipv4::Repr::parse(&ip).unwrap();
                let (s, d) = (ip.src_addr(), ip.dst_addr());
                match ip.next_header() {
                    tcp::PROTOCOL => assert!(
                        tcp::Packet::new_checked(ip.payload())
                            .unwrap()
                            .verify_checksum_v4(&s, &d),
                        "{name}"
                    ),
                    udp::PROTOCOL => assert!(
                        udp::Packet::new_checked(ip.payload())
                            .unwrap()
                            .verify_checksum_v4(&s, &d),
                        "{name}"
                    ),
                    icmpv4::PROTOCOL => {
                        icmpv4::Repr::parse(&icmpv4::Packet::new_checked(ip.payload()).unwrap())
                            .unwrap();
                    }
                    gre::PROTOCOL => {
                        gre::Repr::parse(&gre::Packet::new_checked(ip.payload()).unwrap()).unwrap();
                    }
                    other => panic!("{name}: protocol {other}"),
                }
            }
            EtherType::Ipv6 => {
                let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
                ipv6::Repr::parse(&ip).unwrap();
                let (s, d) = (ip.src_addr(), ip.dst_addr());
                match ip.next_header() {
                    tcp::PROTOCOL => assert!(
                        tcp::Packet::new_checked(ip.payload())
                            .unwrap()
                            .verify_checksum_v6(&s, &d),
                        "{name}"
                    ),
                    udp::PROTOCOL => assert!(
                        udp::Packet::new_checked(ip.payload())
                            .unwrap()
                            .verify_checksum_v6(&s, &d),
                        "{name}"
                    ),
                    icmpv6::PROTOCOL => {
                        let p = icmpv6::Packet::new_checked(ip.payload()).unwrap();
                        assert!(p.verify_checksum(&s, &d), "{name}");
                        icmpv6::Repr::parse(&p).unwrap();
                    }
                    other => panic!("{name}: next header {other}"),
                }
            }
            other => panic!("{name}: {other}"),
        }
    }
}

/// The ICMP error seeds quote a packet whose tuple can be read back.
#[test]
fn quoted_tuple_from_frag_needed() {
    let frames = frames::sample_frames();
    let f = &frames
        .iter()
        .find(|(n, _)| *n == "icmp_frag_needed_tcp")
        .unwrap()
        .1;
    let eth = ethernet::Packet::new_checked(&f[..]).unwrap();
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    let icmp = icmpv4::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(icmp.next_hop_mtu(), 1400);
    let quoted = ipv4::Packet::new_quoted(icmp.data()).unwrap();
    assert_eq!(
        (quoted.src_addr(), quoted.dst_addr()),
        (frames::VIPA4, frames::CLIENT4)
    );
    assert_eq!(
        vipa_proto::wire::ip::transport_ports(quoted.payload()).unwrap(),
        (80, 49152)
    );
}

/// Writes the fuzz seed corpus. Run with `--ignored write_seed_corpus`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/seed");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, frame) in frames::sample_frames() {
        std::fs::write(dir.join(format!("{name}.bin")), frame).unwrap();
    }
}
