//! Snapshots end to end: `vipa-control`'s writer publishes generations in
//! shared memory, the forwarder's loader maps and validates them, workers
//! forwarding on the in-memory port switch between bursts.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, config, VIPA4};
use vipa_control::snapshot::{BackReader, Writer};
use vipa_forwarder::buf::PacketBuffer;
use vipa_forwarder::counters::Counter;
use vipa_forwarder::port::mem::MemPort;
use vipa_forwarder::snapshot::{BackChannel, FlowEventSink, Generation, Loader, Poll, TableSlot};
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::maglev::{self, MaglevTarget};
use vipa_proto::snapshot::head::Names;
use vipa_proto::snapshot::{CrtDesc, Description, TargetState};
use vipa_proto::wire::tcp::flags;

/// A channel prefix in /dev/shm (tmpfs, like production), removed on drop.
struct Channel(String);

impl Channel {
    fn new(name: &str) -> Self {
        let c = Channel(format!("/dev/shm/vipa-test-{}-{name}", std::process::id()));
        c.clean();
        c
    }

    fn clean(&self) {
        let names = Names::new(&self.0);
        let base = format!("vipa-test-{}-", std::process::id());
        if let Ok(dir) = std::fs::read_dir(names.dir()) {
            for e in dir.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&base) && self.0.ends_with(n.split('.').next().unwrap_or("")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.clean();
    }
}

const V4_TARGETS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 20, 0, 11),
    Ipv4Addr::new(10, 20, 0, 12),
    Ipv4Addr::new(10, 20, 0, 13),
];

/// The configuration's snapshot equivalent with the first VIPA's Maglev
/// table rebuilt with weights that change with `round` (so new flows map
/// differently in every generation) and `crt` as the CRT.
fn description(round: u64, crt: &[CrtDesc]) -> Description {
    let mut d = Description::from_config(&config(), 0).unwrap();
    let keys: Vec<String> = V4_TARGETS.iter().map(|a| a.to_string()).collect();
    let weights = [
        1 + (round % 3) as u32 * 5,
        1 + ((round + 1) % 3) as u32 * 5,
        1,
    ];
    let mt: Vec<MaglevTarget<'_>> = keys
        .iter()
        .zip(weights)
        .map(|(k, weight)| MaglevTarget { key: k, weight })
        .collect();
    // The configuration puts 10.20.0.11..13 in target slots 0..3.
    d.vipas[0].maglev = vec![maglev::build(&mt, 65537).unwrap().entries().to_vec()];
    d.crt = crt.to_vec();
    d
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x6440_0000 + i) // 100.64.0.0/10
}

/// `n` connections to VIPA4:443 from distinct clients, spread over the
/// three IPv4 targets.
fn connections(n: u32) -> Vec<CrtDesc> {
    (0..n)
        .map(|i| CrtDesc {
            key: FlowKey::v4(
                client(i / 16).octets(),
                VIPA4.octets(),
                6,
                10_000 + (i % 16) as u16,
                443,
            ),
            target: i % 3,
        })
        .collect()
}

fn initial_slot(workers: usize) -> Arc<TableSlot> {
    let tables = Arc::new(Tables::from_config(&config()).unwrap());
    let neighbors = Arc::new(tables.new_neighbors());
    Arc::new(TableSlot::new(
        Generation {
            number: 0,
            tables,
            neighbors,
            slot_epoch: 0,
        },
        workers,
    ))
}

fn worker(slot: &Arc<TableSlot>, index: usize) -> Worker<MemPort> {
    let g = slot.current();
    let mut w = Worker::with_neighbors(
        vec![(0, MemPort::new())],
        Arc::clone(&g.tables),
        Arc::clone(&g.neighbors),
        false,
    );
    w.follow(Arc::clone(slot), index);
    w
}

/// The outer destination (the target) and the inner client address and
/// port of an encapsulated IPv4-in-IPv4 frame.
fn decode(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16) {
    let outer = &frame[14..];
    let target = Ipv4Addr::new(outer[16], outer[17], outer[18], outer[19]);
    let inner = &outer[24..];
    let src = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let sport = u16::from_be_bytes([inner[20], inner[21]]);
    (target, src, sport)
}

/// Publishes snapshots with 1 M CRT entries in a loop while two workers
/// forward: CRT connections always reach their CRT target, flows the
/// workers created keep their target across every switch (although each
/// generation's Maglev table maps them differently), nothing is dropped,
/// and every replaced generation is unmapped once both workers moved on.
#[test]
fn publish_loop_with_1m_connections_loses_and_remaps_nothing() {
    let ch = Channel::new("loop");
    const GENERATIONS: u64 = 4;
    let crt = connections(1_000_000);
    // Connections the workers send on: every 4099th one, with its target.
    let probes: Vec<(Ipv4Addr, u16, Ipv4Addr)> = crt
        .iter()
        .step_by(4099)
        .map(|c| {
            let IpAddr::V4(src) = c.key.src_addr() else {
                unreachable!()
            };
            (src, c.key.src_port, V4_TARGETS[c.target as usize])
        })
        .collect();

    let mut writer = Writer::open(&ch.0).unwrap();
    let slot = initial_slot(2);
    let back = Arc::new(
        BackChannel::create(
            &Names::new(&ch.0).back(),
            2,
            64,
            Tables::from_config(&config()).unwrap().service_counting,
            1 << 14,
        )
        .unwrap(),
    );
    let mut loader = Loader::new(
        Arc::new(config()),
        &ch.0,
        Arc::clone(&slot),
        Some(Arc::clone(&back)),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));

    let mut handles = Vec::new();
    for index in 0..2usize {
        let slot = Arc::clone(&slot);
        let back = Arc::clone(&back);
        let done = Arc::clone(&done);
        let probes = probes.clone();
        handles.push(std::thread::spawn(move || {
            let mut w = worker(&slot, index);
            w.pipeline.flow_events = Some(FlowEventSink::new(back, index));
            let b = builder();
            // New flows of this worker only (flow tables are per worker):
            // clients 203.0.113.x, not in the CRT.
            let new_flows: Vec<(Ipv4Addr, u16)> = (0..64u16)
                .map(|i| (Ipv4Addr::new(203, 0, 113, index as u8), 20_000 + i))
                .collect();
            let mut first_target: HashMap<(Ipv4Addr, u16), Ipv4Addr> = HashMap::new();
            let mut sent = 0u64;
            let mut generations_seen = vec![w.generation()];
            let mut round = 0usize;
            // Traffic starts with the first snapshot (generation 0, the
            // configuration, has no CRT: its flows would be Maglev's).
            while w.generation() == 0 {
                w.poll(100);
                std::thread::yield_now();
            }
            generations_seen = vec![w.generation()];
            loop {
                let last = done.load(Ordering::Acquire);
                // One burst: a few CRT connections, a few new flows.
                for k in 0..16 {
                    let frame = if k % 2 == 0 {
                        let (src, port, _) = probes[(round * 8 + k / 2) % probes.len()];
                        b.tcp(src.into(), VIPA4.into(), port, 443, flags::ACK, b"x")
                    } else {
                        let (src, port) = new_flows[(round * 8 + k / 2) % new_flows.len()];
                        b.tcp(src.into(), VIPA4.into(), port, 443, flags::ACK, b"y")
                    };
                    w.queues[0].1.inject(&frame);
                    sent += 1;
                }
                w.poll(100);
                if *generations_seen.last().unwrap() != w.generation() {
                    generations_seen.push(w.generation());
                }
                let q = &mut w.queues[0].1;
                while let Some(buf) = q.tx.pop_front() {
                    let (target, src, port) = decode(buf.data());
                    if let Some(&(_, _, want)) =
                        probes.iter().find(|(s, p, _)| *s == src && *p == port)
                    {
                        assert_eq!(
                            target,
                            want,
                            "CRT connection {src}:{port} in generation {}",
                            w.generation()
                        );
                    } else {
                        let first = *first_target.entry((src, port)).or_insert(target);
                        assert_eq!(
                            target,
                            first,
                            "flow {src}:{port} moved in generation {}",
                            w.generation()
                        );
                    }
                    q.pool.push(buf);
                }
                round += 1;
                if last {
                    break;
                }
            }
            let c = w.counters();
            assert_eq!(c.drops(), 0, "{:?}", c.nonzero().collect::<Vec<_>>());
            assert_eq!(c.get(Counter::TxPackets), sent);
            assert_eq!(c.get(Counter::Forwarded), sent);
            assert_eq!(c.get(Counter::FlowTableResets), 0);
            (
                generations_seen,
                c.get(Counter::CrtHits),
                c.get(Counter::SnapshotSwitches),
            )
        }));
    }

    let loader_stop = Arc::clone(&stop);
    let loader_thread = std::thread::spawn(move || {
        while !loader_stop.load(Ordering::Relaxed) {
            if let Poll::Refused(g, e) = loader.poll() {
                panic!("generation {g} refused: {e}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        loader
    });

    let started = Instant::now();
    for round in 1..=GENERATIONS {
        let p = writer.publish(&description(round, &crt)).unwrap();
        assert_eq!(p.generation, round);
        // Let the workers forward on this generation for a moment.
        let deadline = Instant::now() + Duration::from_secs(120);
        while (slot.acked(0) != round || slot.acked(1) != round) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            (slot.acked(0), slot.acked(1)),
            (round, round),
            "workers switched"
        );
    }
    eprintln!(
        "{GENERATIONS} generations of 1M connections in {:?}",
        started.elapsed()
    );
    done.store(true, Ordering::Release);
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let mut loader = loader_thread.join().unwrap();
    loader.poll();
    assert_eq!(loader.figures().loaded, GENERATIONS);
    assert_eq!(loader.figures().refused, 0);
    assert_eq!(loader.retired(), 0, "every replaced generation unmapped");
    for (seen, crt_hits, switches) in results {
        assert_eq!(*seen.last().unwrap(), GENERATIONS);
        assert!(crt_hits > 0);
        assert_eq!(switches, seen.len() as u64);
    }

    // The back channel: both workers on the last generation, and the new
    // flows reported (64 per worker, each once).
    let r = BackReader::open_prefix(&ch.0).unwrap();
    let v = r.view().unwrap();
    assert_eq!(v.worker_generation(0), GENERATIONS);
    assert_eq!(v.oldest_in_use(), GENERATIONS);
    let events = r.drain_events(1000).unwrap();
    assert_eq!(events.len(), 128, "every new flow reported once");
    assert!(events
        .iter()
        .all(|(_, e)| e.key.dst_port == 443 && e.target < 3));
    // Older generations are gone from shared memory.
    writer.clean();
    assert!(!Names::new(&ch.0).generation(1).exists());
}

/// Writes a snapshot object by hand (bypassing the writer) and flips the head.
fn publish_raw(ch: &Channel, writer: &Writer, generation: u64, bytes: &[u8]) {
    let names = Names::new(&ch.0);
    std::fs::write(names.generation(generation), bytes).unwrap();
    let head = vipa_control::snapshot::SharedWords::open(&names.head()).unwrap();
    vipa_proto::snapshot::head::Head::open(head.words())
        .unwrap()
        .publish(generation, bytes.len() as u64);
    assert_eq!(writer.generation(), generation);
}

/// Truncated, corrupted, wrong-version and wrong-magic snapshots are
/// refused and counted; the generation in use stays in use and keeps
/// forwarding; a good one afterwards is taken.
#[test]
fn bad_snapshots_are_refused_and_the_old_one_stays() {
    let ch = Channel::new("refuse");
    let mut writer = Writer::open(&ch.0).unwrap();
    let slot = initial_slot(1);
    let mut loader = Loader::new(Arc::new(config()), &ch.0, Arc::clone(&slot), None);
    let mut w = worker(&slot, 0);
    let crt = connections(1000);

    writer.publish(&description(1, &crt)).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(1)));
    w.poll(100);
    assert_eq!(w.generation(), 1);
    let good = std::fs::read(Names::new(&ch.0).generation(1)).unwrap();

    let b = builder();
    let probe = crt[7];
    let IpAddr::V4(src) = probe.key.src_addr() else {
        unreachable!()
    };
    let forward_one = |w: &mut Worker<MemPort>| {
        let out = common::send(
            w,
            0,
            &b.tcp(
                src.into(),
                VIPA4.into(),
                probe.key.src_port,
                443,
                flags::ACK,
                b"z",
            ),
        );
        assert_eq!(out.tx.len(), 1);
        decode(&out.tx[0]).0
    };
    assert_eq!(forward_one(&mut w), V4_TARGETS[probe.target as usize]);

    let mut bad_version = good.clone();
    bad_version[8..12].copy_from_slice(&1u32.to_ne_bytes()); // the old layout
    let mut bad_magic = good.clone();
    bad_magic[..8].copy_from_slice(b"NOTASNAP");
    let mut corrupted = good.clone();
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0x40;
    // Generation 1's bytes under another number (the checksum is right).
    let wrong_generation = good.clone();
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("truncated", good[..good.len() - 100].to_vec(), 1),
        ("truncated header", good[..64].to_vec(), 1),
        ("corrupted", corrupted, 4),
        ("wrong version", bad_version, 3),
        ("wrong magic", bad_magic, 2),
        ("generation mismatch", wrong_generation, 6),
    ];
    let mut generation = 1;
    for (i, (what, bytes, code)) in cases.into_iter().enumerate() {
        generation += 1;
        publish_raw(&ch, &writer, generation, &bytes);
        match loader.poll() {
            Poll::Refused(g, e) => {
                assert_eq!(g, generation, "{what}");
                assert_eq!(e.code(), code, "{what}: {e}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(loader.figures().refused, i as u64 + 1, "{what}: counted");
        assert_eq!(loader.figures().last_refused, generation);
        assert!(matches!(loader.poll(), Poll::Idle), "{what}: tried once");
        w.poll(100);
        assert_eq!(w.generation(), 1, "{what}: the old generation stays in use");
        assert_eq!(
            forward_one(&mut w),
            V4_TARGETS[probe.target as usize],
            "{what}"
        );
    }

    // A good generation afterwards is taken.
    let p = writer.publish(&description(2, &crt)).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(g) if g == p.generation));
    w.poll(100);
    assert_eq!(w.generation(), p.generation);
    assert_eq!(forward_one(&mut w), V4_TARGETS[probe.target as usize]);
    assert_eq!(loader.figures().loaded, 2);
}

/// Target states: a down target's flows are routed again, a quiesced one
/// keeps its flows and gets no new ones, a snapshot that reassigns a live
/// target slot makes the workers forget their flows.
#[test]
fn target_states_and_slot_reassignment() {
    let ch = Channel::new("states");
    let mut writer = Writer::open(&ch.0).unwrap();
    let slot = initial_slot(1);
    let mut loader = Loader::new(Arc::new(config()), &ch.0, Arc::clone(&slot), None);
    let mut w = worker(&slot, 0);
    let b = builder();
    let send = |w: &mut Worker<MemPort>, port: u16, tcp_flags: u8| {
        let out = common::send(
            w,
            0,
            &b.tcp(
                Ipv4Addr::new(198, 51, 100, 9).into(),
                VIPA4.into(),
                port,
                80,
                tcp_flags,
                b"",
            ),
        );
        assert_eq!(out.tx.len(), 1);
        decode(&out.tx[0]).0
    };
    // Flows on generation 0 (the configuration).
    let before: Vec<Ipv4Addr> = (0..60)
        .map(|p| send(&mut w, 30_000 + p, flags::SYN))
        .collect();
    let slot_of = |a: Ipv4Addr| V4_TARGETS.iter().position(|t| *t == a).unwrap();

    // Target 0 down, target 1 quiesced: Maglev over target 2 only.
    let mut d = Description::from_config(&config(), 0).unwrap();
    d.targets[0].state = TargetState::Down;
    d.targets[1].state = TargetState::Quiesced;
    d.vipas[0].maglev = vec![vec![2; 13]];
    writer.publish(&d).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(1)));
    // The connections' later segments.
    let after: Vec<Ipv4Addr> = (0..60)
        .map(|p| send(&mut w, 30_000 + p, flags::ACK))
        .collect();
    for (b, a) in before.iter().zip(&after) {
        match slot_of(*b) {
            0 => assert_eq!(slot_of(*a), 2, "down: routed again"),
            s => assert_eq!(slot_of(*a), s, "quiesced or ready: kept"),
        }
    }
    assert!(w.counters().get(Counter::FlowsRerouted) > 0);
    // New flows go to the ready target only.
    for p in 0..20 {
        assert_eq!(slot_of(send(&mut w, 40_000 + p, flags::SYN)), 2);
    }

    // Slot 1 given to another address while quiesced (not down): a
    // reassignment, so the worker forgets its flows.
    let mut d = Description::from_config(&config(), 0).unwrap();
    d.targets[1].address = "10.20.0.99".parse().unwrap();
    writer.publish(&d).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(2)));
    w.poll(100);
    assert_eq!(w.counters().get(Counter::FlowTableResets), 1);
}

#[test]
fn new_connections_follow_each_services_own_maglev_table() {
    // Seed 001: a target takes new connections for a service only while an
    // application listens on it. Targets 0 and 1 listen on 80 only, target
    // 2 on 80 and 443; nobody on 53.
    let ch = Channel::new("per-service");
    let mut writer = Writer::open(&ch.0).unwrap();
    let slot = initial_slot(1);
    let mut loader = Loader::new(Arc::new(config()), &ch.0, Arc::clone(&slot), None);
    let mut w = worker(&slot, 0);
    let mut d = Description::from_config(&config(), 0).unwrap();
    let all = d.vipas[0].maglev[0].clone();
    let len = all.len();
    d.vipas[0].maglev = vec![all, vec![2; len]];
    for s in &mut d.vipas[0].services {
        s.maglev = match s.port {
            80 => Some(0),
            443 => Some(1),
            _ => None,
        };
    }
    writer.publish(&d).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(1)));

    let b = builder();
    let client = IpAddr::from(Ipv4Addr::new(198, 51, 100, 9));
    let slot_of = |a: Ipv4Addr| V4_TARGETS.iter().position(|t| *t == a).unwrap();
    let mut on_80 = std::collections::HashSet::new();
    for p in 0..60u16 {
        let out = common::send(
            &mut w,
            0,
            &b.tcp(client, VIPA4.into(), 20_000 + p, 80, flags::SYN, b""),
        );
        on_80.insert(slot_of(decode(&out.tx[0]).0));
        let out = common::send(
            &mut w,
            0,
            &b.tcp(client, VIPA4.into(), 20_000 + p, 443, flags::SYN, b""),
        );
        assert_eq!(
            slot_of(decode(&out.tx[0]).0),
            2,
            "443: only the target listening on it"
        );
    }
    assert_eq!(on_80.len(), 3, "80: every target");
    let dropped = w.counters().get(Counter::DropNoTarget);
    let out = common::send(&mut w, 0, &b.udp(client, VIPA4.into(), 5353, 53, b"q"));
    assert!(out.tx.is_empty(), "53: no target takes it");
    assert_eq!(w.counters().get(Counter::DropNoTarget), dropped + 1);
}

#[test]
fn a_syn_on_a_reused_client_port_goes_where_new_connections_go() {
    // A client port whose old flow went to a target that now takes no new
    // connections (quiesced): a SYN on it is a new connection and goes to
    // a target that takes them; the other packets of the old flows keep
    // their target; a SYN to a target that still takes new ones stays.
    let ch = Channel::new("syn-reuse");
    let mut writer = Writer::open(&ch.0).unwrap();
    let slot = initial_slot(1);
    let mut loader = Loader::new(Arc::new(config()), &ch.0, Arc::clone(&slot), None);
    let mut w = worker(&slot, 0);
    let b = builder();
    let client = IpAddr::from(Ipv4Addr::new(198, 51, 100, 9));
    let slot_of = |a: Ipv4Addr| V4_TARGETS.iter().position(|t| *t == a).unwrap();
    let send = |w: &mut Worker<MemPort>, port: u16, f: u8| {
        let out = common::send(w, 0, &b.tcp(client, VIPA4.into(), port, 80, f, b""));
        assert_eq!(out.tx.len(), 1);
        slot_of(decode(&out.tx[0]).0)
    };
    // Flows on the configuration's tables: each port's first target.
    let first: Vec<usize> = (0..60)
        .map(|p| send(&mut w, 31_000 + p, flags::SYN))
        .collect();
    assert!(first.contains(&1), "some flows on target 1");
    // Retransmitted SYNs to a ready target stay.
    for p in 0..60 {
        assert_eq!(send(&mut w, 31_000 + p, flags::SYN), first[p as usize]);
    }
    assert_eq!(w.counters().get(Counter::SynRerouted), 0);

    // Target 1 quiesced.
    let mut d = Description::from_config(&config(), 0).unwrap();
    d.targets[1].state = TargetState::Quiesced;
    let table: Vec<u32> = d.vipas[0].maglev[0]
        .iter()
        .map(|&t| if t == 1 { 0 } else { t })
        .collect();
    d.vipas[0].maglev = vec![table];
    writer.publish(&d).unwrap();
    assert!(matches!(loader.poll(), Poll::Loaded(1)));

    let mut rerouted = 0;
    for p in 0..60u16 {
        let was = first[p as usize];
        // The old connection's segments keep their target ...
        assert_eq!(send(&mut w, 31_000 + p, flags::ACK), was);
        // ... a new connection on the same port goes elsewhere if its
        // target is quiesced, and stays if not.
        let now = send(&mut w, 31_000 + p, flags::SYN);
        if was == 1 {
            assert_ne!(
                now,
                1,
                "port {}: a new connection to the quiesced target",
                31_000 + p
            );
            rerouted += 1;
        } else {
            assert_eq!(now, was);
        }
    }
    assert_eq!(w.counters().get(Counter::SynRerouted), rerouted);
}
