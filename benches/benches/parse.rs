//! Parsing: a whole frame walked through the wire views, and `Repr::parse`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vipa_proto::build::FrameBuilder;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::wire::{ethernet, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress};

fn frames() -> (Vec<u8>, Vec<u8>) {
    let b = FrameBuilder::new(
        EthernetAddress([2, 0, 0, 0, 0, 0xfe]),
        EthernetAddress([2, 0, 0, 0, 0, 1]),
    );
    let v4 = b.tcp(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        40000,
        80,
        0x10,
        &[0; 6],
    );
    let v6 = b.udp(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
        5353,
        53,
        &[0; 20],
    );
    (v4, v6)
}

/// The pipeline's own walk: views only, then the flow key and its hash.
fn key_of(frame: &[u8]) -> Option<u64> {
    let eth = ethernet::Packet::new_checked(frame).ok()?;
    let l3 = &frame[eth.header_len()..];
    match eth.payload_ethertype() {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(l3).ok()?;
            let l4 = tcp::Packet::new_checked(ip.payload()).ok()?;
            Some(
                FlowKey::v4(
                    ip.src_addr().octets(),
                    ip.dst_addr().octets(),
                    ip.next_header(),
                    l4.src_port(),
                    l4.dst_port(),
                )
                .hash(),
            )
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(l3).ok()?;
            let l4 = udp::Packet::new_checked(ip.payload()).ok()?;
            Some(
                FlowKey::v6(
                    ip.src_addr().octets(),
                    ip.dst_addr().octets(),
                    ip.next_header(),
                    l4.src_port(),
                    l4.dst_port(),
                )
                .hash(),
            )
        }
        _ => None,
    }
}

fn bench(c: &mut Criterion) {
    let (v4, v6) = frames();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("views_ipv4_tcp_flowkey", |b| {
        b.iter(|| key_of(black_box(&v4)))
    });
    g.bench_function("views_ipv6_udp_flowkey", |b| {
        b.iter(|| key_of(black_box(&v6)))
    });
    g.bench_function("repr_ipv4_tcp", |b| {
        b.iter(|| {
            let f = black_box(&v4);
            let eth = ethernet::Packet::new_checked(&f[..]).ok()?;
            let e = ethernet::Repr::parse(&eth).ok()?;
            let ip = ipv4::Packet::new_checked(&f[e.header_len()..]).ok()?;
            let i = ipv4::Repr::parse(&ip).ok()?;
            let t = tcp::Packet::new_checked(ip.payload()).ok()?;
            Some((i, tcp::Repr::parse(&t).ok()?))
        })
    });
    g.bench_function("ipv4_checksum_verify", |b| {
        b.iter(|| ipv4::Packet::new_unchecked(&black_box(&v4)[14..]).verify_checksum())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
