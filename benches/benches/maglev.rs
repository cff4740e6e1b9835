//! Maglev table construction: 1000 targets at M = 65537, and the lookup.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vipa_proto::maglev::{build, MaglevTarget};

fn bench(c: &mut Criterion) {
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256))
        .collect();
    let equal: Vec<MaglevTarget> = keys
        .iter()
        .map(|k| MaglevTarget { key: k, weight: 1 })
        .collect();
    let weighted: Vec<MaglevTarget> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| MaglevTarget {
            key: k,
            weight: 1 + (i % 4) as u32,
        })
        .collect();
    let mut g = c.benchmark_group("maglev");
    g.sample_size(20);
    g.bench_function("build_1000_targets_m65537", |b| {
        b.iter(|| build(black_box(&equal), 65537))
    });
    g.bench_function("build_1000_weighted_m65537", |b| {
        b.iter(|| build(black_box(&weighted), 65537))
    });
    let table = build(&equal, 65537).expect("table");
    let mut h = 0x1234_5678u64;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
            black_box(table.lookup(h))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
