//! Encapsulation: one established-flow packet through the pipeline
//! (classify, flow-table hit, GRE over IPv4 / IPv6), buffer reset per
//! iteration outside the timing.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vipa_benches::pipeline::bench_config;
use vipa_forwarder::buf::HeapBuf;
use vipa_forwarder::pipeline::Pipeline;
use vipa_forwarder::tables::Tables;
use vipa_proto::build::FrameBuilder;
use vipa_proto::wire::EthernetAddress;

fn bench(c: &mut Criterion) {
    let tables = Arc::new(Tables::from_config(&bench_config(4096)).expect("tables"));
    let b = FrameBuilder::new(
        EthernetAddress([2, 0, 0, 0, 0x0a, 0xfe]),
        EthernetAddress([2, 0, 0, 0, 0x0a, 1]),
    );
    let v4 = b.tcp(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        40000,
        80,
        0x10,
        &[0; 6],
    );
    let v6 = b.tcp(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
        40000,
        80,
        0x10,
        &[0; 6],
    );
    let mut g = c.benchmark_group("encap");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in [("ipv4_in_gre_ipv4", &v4), ("ipv6_in_gre_ipv6", &v6)] {
        let mut p = Pipeline::new(Arc::clone(&tables));
        let mut warm = HeapBuf::from_frame(frame);
        p.process_one(0, &mut warm, 1);
        g.bench_function(name, |bch| {
            bch.iter_batched_ref(
                || HeapBuf::from_frame(frame),
                |buf| black_box(p.process_one(0, buf, 1)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
