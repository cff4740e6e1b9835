//! Flow table hit and miss at 1 K, 1 M and 10 M live flows.
//!
//! Hashes are looked up in a random order, so the large tables pay the
//! cache and TLB misses a real worker pays.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vipa_forwarder::flow::FlowTable;

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(1));
    for (name, flows) in [("1k", 1_000u64), ("1m", 1_000_000), ("10m", 10_000_000)] {
        let mut table = FlowTable::new((flows as usize) * 2, 300);
        let mut seed = 0x1234_5678_9abc_def1u64;
        let hashes: Vec<u64> = (0..flows).map(|_| xorshift(&mut seed)).collect();
        for (i, h) in hashes.iter().enumerate() {
            table.insert(*h, i as u32, 1);
        }
        let mut pick = 0x9E37_79B9u64;
        g.bench_function(format!("hit_{name}"), |b| {
            b.iter(|| {
                let h = hashes[(xorshift(&mut pick) % flows) as usize];
                black_box(table.lookup(h, 2))
            })
        });
        let mut miss = 0xdead_beef_u64;
        g.bench_function(format!("miss_{name}"), |b| {
            b.iter(|| black_box(table.lookup(xorshift(&mut miss) | 1 << 63, 2)))
        });
        g.bench_function(format!("insert_{name}"), |b| {
            b.iter_batched(
                || xorshift(&mut miss),
                |h| black_box(table.insert(h, 1, 2)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
