use std::sync::atomic::AtomicU64;

use vipa_proto::flowkey::FlowKey;
use vipa_proto::snapshot::back::{Layout, LoaderFigures};
use vipa_proto::snapshot::{Snapshot, TargetDesc, TargetState};

use super::*;

fn prefix(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vipa-control-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("ch").to_string_lossy().into_owned()
}

fn desc(targets: usize) -> Description {
    Description {
        targets: (0..targets)
            .map(|i| TargetDesc {
                address: format!("10.20.0.{}", i + 1).parse().unwrap(),
                state: TargetState::Ready,
            })
            .collect(),
        ..Description::default()
    }
}

#[test]
fn publish_numbers_generations_and_cleans_up() {
    let p = prefix("publish");
    let mut w = Writer::open(&p).unwrap();
    assert_eq!(w.generation(), 0);
    let a = w.publish(&desc(1)).unwrap();
    assert_eq!(a.generation, 1);
    let b = w.publish(&desc(2)).unwrap();
    assert_eq!(b.generation, 2);
    assert_eq!(b.removed, 1, "no forwarder: only the current one is kept");
    let names = w.names().clone();
    assert!(!names.generation(1).exists());
    let bytes = std::fs::read(names.generation(2)).unwrap();
    let buf = vipa_proto::snapshot::SnapshotBuf::from_bytes(&bytes);
    let s = Snapshot::new_checked(buf.as_bytes()).unwrap();
    assert_eq!(s.generation(), 2);
    assert_eq!(s.targets().len(), 2);

    // A reopened writer continues the numbering.
    let mut w2 = Writer::open(&p).unwrap();
    assert_eq!(w2.publish(&desc(1)).unwrap().generation, 3);
}

#[test]
fn clean_keeps_what_the_forwarder_uses() {
    let p = prefix("keep");
    let mut w = Writer::open(&p).unwrap();
    w.publish(&desc(1)).unwrap();
    w.publish(&desc(1)).unwrap();
    // A forwarder whose worker 1 is still on generation 2 (1 was removed).
    let names = w.names().clone();
    let layout = Layout {
        workers: 2,
        counters: 2,
        target_slots: 1,
        service_slots: 0,
        service_targets: 0,
        ring_capacity: 8,
        names_bytes: 0,
    };
    let shm = SharedWords::create_for_test(&names.back(), layout.bytes() + 64);
    let back = Back::init(shm.words(), layout, &["rx_packets", "drop_x"]).unwrap();
    back.set_worker_generation(0, 3);
    back.set_worker_generation(1, 2);
    back.set_loader(&LoaderFigures {
        generation: 3,
        ..LoaderFigures::default()
    });
    for _ in 0..2 {
        w.publish(&desc(1)).unwrap();
    }
    assert!(names.generation(2).exists(), "worker 1 uses it");
    assert!(names.generation(3).exists());
    assert!(names.generation(4).exists());
    back.set_worker_generation(1, 4);
    back.set_worker_generation(0, 4);
    back.set_loader(&LoaderFigures {
        generation: 4,
        ..LoaderFigures::default()
    });
    assert_eq!(w.clean(), 2);
    assert!(!names.generation(3).exists());
}

#[test]
fn back_reader_reads_counters_and_events() {
    let p = prefix("back");
    let names = Names::new(&p);
    let layout = Layout {
        workers: 2,
        counters: 2,
        target_slots: 2,
        service_slots: 2,
        service_targets: 2,
        ring_capacity: 4,
        names_bytes: 0,
    };
    let shm = SharedWords::create_for_test(&names.back(), layout.bytes() + 64);
    let fwd = Back::init(shm.words(), layout, &["rx_packets", "tx_packets"]).unwrap();
    fwd.publish_counters(1, 9, &[5, 4], [[1, 2, 3]].into_iter(), &[[1, 2]]);
    fwd.publish_counters(
        0,
        8,
        &[1, 1],
        [[10, 20, 30], [0, 0, 1]].into_iter(),
        &[[10, 20], [0, 0], [0, 0], [3, 4]],
    );
    let mut cursor = fwd.cursor(0);
    let key = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 443);
    for t in 0..3 {
        assert!(fwd.push_event(
            0,
            &mut cursor,
            &FlowEvent {
                key,
                target: t,
                time: 12
            }
        ));
    }

    fwd.set_identity(&Identity {
        pid: 7,
        started_unix_ms: 1_000,
        backend: "afpacket".into(),
    });
    fwd.set_worker_generation(1, 3);

    let r = BackReader::open_prefix(&p).unwrap();
    let c = r.counters().unwrap();
    assert_eq!(
        c[1],
        [("rx_packets".to_owned(), 5), ("tx_packets".to_owned(), 4)]
    );
    assert_eq!(c[0][0].1, 1);
    assert_eq!(r.target_totals().unwrap(), [[11, 22, 33], [0, 0, 1]]);
    assert_eq!(
        r.service_target_totals().unwrap(),
        (2, vec![[11, 22], [0, 0], [0, 0], [3, 4]])
    );
    let st = r.state().unwrap();
    assert_eq!(st.identity.backend, "afpacket");
    assert_eq!(
        st.workers,
        [
            WorkerState {
                generation: 0,
                published: 8
            },
            WorkerState {
                generation: 3,
                published: 9
            }
        ]
    );
    let ev = r.drain_events(2).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].1.key, key);
    assert_eq!(ev[1].1.target, 1);
    let ev = r.drain_events(10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0],
        (
            0,
            FlowEvent {
                key,
                target: 2,
                time: 12
            }
        )
    );
    let _: &[AtomicU64] = r.shm.words();

    // A forwarder that starts again creates a new object under the name.
    assert!(!r.replaced());
    let _ = std::fs::remove_file(names.back());
    assert!(r.replaced(), "name gone");
    let _again = SharedWords::create_for_test(&names.back(), layout.bytes() + 64);
    assert!(r.replaced(), "another object");
    assert!(!BackReader::open_prefix(&p).unwrap().replaced());
}
