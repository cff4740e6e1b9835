//! Snapshot hand-over with 1 M CRT connections (goal: ≤ 200 ms for build +
//! publish + switch).
//!
//! * `build_publish_switch_1m`: `vipa-control`'s writer lays the snapshot
//!   out and writes it into a new /dev/shm object and flips the head; the
//!   forwarder's loader maps it, validates it (checksum and every record)
//!   and builds the tables; a worker switches to it at its next poll. The
//!   previous generation is unmapped (by the loader) and removed (by the
//!   writer) within the same iteration.
//! * `publish_1m`: the writer's part alone.
//! * `crt_lookup_1m`: one CRT hit in the mapped table.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use vipa_control::snapshot::Writer;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::snapshot::{Generation, Loader, Poll, TableSlot};
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::config::Config;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::snapshot::head::Names;
use vipa_proto::snapshot::{CrtDesc, Description};

const CONFIG: &str = r#"
[node]
name = "bench"
tunnel_source_v4 = "10.10.0.1"
[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
next_hop_mac = "02:00:00:00:0a:fe"
[[vipa]]
address = "192.0.2.10"
services = ["tcp/443"]
  [[vipa.target]]
  address = "10.20.0.11"
  [[vipa.target]]
  address = "10.20.0.12"
  [[vipa.target]]
  address = "10.20.0.13"
"#;

fn description(config: &Config, n: u32) -> Description {
    let mut d = Description::from_config(config, 0).expect("description");
    d.crt = (0..n)
        .map(|i| CrtDesc {
            key: FlowKey::v4(
                (0x6440_0000 + i / 16).to_be_bytes(),
                [192, 0, 2, 10],
                6,
                10_000 + (i % 16) as u16,
                443,
            ),
            target: i % 3,
        })
        .collect();
    d
}

fn clean(prefix: &str) {
    let names = Names::new(prefix);
    let base = names.head();
    let stem = base
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".head"))
        .unwrap_or("")
        .to_owned();
    if let Ok(dir) = std::fs::read_dir(names.dir()) {
        for e in dir.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{stem}."))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let config = Config::from_str_with_path(CONFIG, std::path::Path::new("bench.toml"))
        .expect("bench config");
    let desc = description(&config, 1_000_000);
    let prefix = format!("/dev/shm/vipa-bench-{}", std::process::id());
    clean(&prefix);

    let mut writer = Writer::open(&prefix).expect("writer");
    let tables = Arc::new(Tables::from_config(&config).expect("tables"));
    let slot = Arc::new(TableSlot::new(
        Generation {
            number: 0,
            neighbors: Arc::new(tables.new_neighbors()),
            tables: Arc::clone(&tables),
            slot_epoch: 0,
        },
        1,
    ));
    let mut loader = Loader::new(Arc::new(config.clone()), &prefix, Arc::clone(&slot), None);
    let mut worker = Worker::new(vec![(0, MemPort::new())], tables);
    worker.follow(Arc::clone(&slot), 0);

    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.bench_function("build_publish_switch_1m", |b| {
        b.iter(|| {
            let p = writer.publish(&desc).expect("publish");
            match loader.poll() {
                Poll::Loaded(n) => assert_eq!(n, p.generation),
                other => panic!("generation {}: {other:?}", p.generation),
            }
            worker.poll(1);
            assert_eq!(worker.generation(), p.generation);
        })
    });
    g.bench_function("publish_1m", |b| {
        b.iter(|| black_box(writer.publish(&desc).expect("publish")))
    });
    // Load the newest, then time lookups in it.
    loader.poll();
    worker.poll(1);
    let t = Arc::clone(&slot.current().tables);
    let keys: Vec<(FlowKey, u64)> = desc
        .crt
        .iter()
        .step_by(7)
        .map(|c| (c.key, c.key.hash()))
        .collect();
    let mut i = 0usize;
    g.sample_size(50);
    g.bench_function("crt_lookup_1m", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let (k, h) = &keys[i];
            black_box(t.crt_lookup(k, *h))
        })
    });
    g.finish();
    drop(t);
    drop(loader);
    clean(&prefix);
}

criterion_group!(benches, bench);
criterion_main!(benches);
