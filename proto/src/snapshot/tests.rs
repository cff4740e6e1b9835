use super::*;
use crate::flowkey::FlowKey;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A small description: two VIPAs, three targets (one quiesced), a few
/// connections, a neighbour.
pub(crate) fn sample(generation: u64, connections: u32) -> Description {
    let targets = vec![
        TargetDesc {
            address: ip("10.20.0.11"),
            state: TargetState::Ready,
        },
        TargetDesc {
            address: ip("10.20.0.12"),
            state: TargetState::Quiesced,
        },
        TargetDesc {
            address: ip("fd00:20::11"),
            state: TargetState::Ready,
        },
    ];
    let crt = (0..connections)
        .map(|i| CrtDesc {
            key: FlowKey::v4(
                [198, 51, (i >> 16) as u8, (i >> 8) as u8],
                [192, 0, 2, 10],
                6,
                (i & 0xffff) as u16,
                443,
            ),
            target: i % 2,
        })
        .collect();
    Description {
        generation,
        vipas: vec![
            VipaDesc {
                address: ip("192.0.2.10"),
                epoch: 3,
                owned: true,
                services: vec![
                    ServiceDesc {
                        protocol: 6,
                        port: 443,
                        maglev: Some(0),
                    },
                    ServiceDesc {
                        protocol: 17,
                        port: 53,
                        maglev: Some(1),
                    },
                ],
                maglev: vec![vec![0; 7], vec![2, 0, 2, 0, 2, 0, 2]],
            },
            VipaDesc {
                address: ip("2001:db8::10"),
                epoch: 1,
                owned: false,
                services: vec![ServiceDesc {
                    protocol: 6,
                    port: 80,
                    maglev: Some(0),
                }],
                maglev: vec![vec![2, 0, 2, 0, 2]],
            },
        ],
        targets,
        crt,
        neighbors: vec![NeighborDesc {
            address: ip("10.20.0.11"),
            mac: [2, 0, 0, 0, 0x14, 0x11],
            port: Some(0),
        }],
    }
}

fn build(d: &Description) -> SnapshotBuf {
    Builder::new(d).unwrap().to_buf().unwrap()
}

#[test]
fn round_trip() {
    let d = sample(7, 1000);
    let buf = build(&d);
    let s = Snapshot::new_checked(buf.as_bytes()).unwrap();
    assert_eq!(s.generation(), 7);
    assert_eq!(s.vipas().len(), 2);
    let v = &s.vipas()[0];
    assert_eq!(s.vipa_address(v), ip("192.0.2.10"));
    assert_eq!(v.epoch, 3);
    assert_eq!(v.owned, 1);
    assert_eq!(s.services(v).len(), 2);
    assert_eq!(s.services(v)[1].port, 53);
    assert_eq!(v.maglev_tables, 2);
    assert_eq!(s.service_maglev(v, &s.services(v)[0]), &[0; 7]);
    assert_eq!(
        s.service_maglev(v, &s.services(v)[1]),
        &[2, 0, 2, 0, 2, 0, 2]
    );
    assert_eq!(s.maglev_table(v, 2), &[] as &[u32]);
    let v6 = &s.vipas()[1];
    assert_eq!(s.vipa_address(v6), ip("2001:db8::10"));
    assert_eq!(v6.owned, 0);
    assert_eq!(s.service_maglev(v6, &s.services(v6)[0]), &[2, 0, 2, 0, 2]);
    assert_eq!(s.target_state(&s.targets()[1]), TargetState::Quiesced);
    assert_eq!(s.target_address(&s.targets()[2]), ip("fd00:20::11"));
    assert_eq!(s.neighbors().len(), 1);
    assert_eq!(s.neighbor_address(&s.neighbors()[0]), ip("10.20.0.11"));
    let crt = s.crt();
    assert_eq!(crt.len(), 1000);
    for c in &d.crt {
        assert_eq!(crt.lookup(&c.key, c.key.hash()), Some(c.target));
    }
    let mut absent = d.crt[0].key;
    absent.src_port ^= 0x8000;
    absent.dst_port = 444;
    assert_eq!(crt.lookup(&absent, absent.hash()), None);
    assert_eq!(crt.iter().count(), 1000);
}

#[test]
fn empty_snapshot() {
    let d = Description {
        generation: 1,
        ..Description::default()
    };
    let buf = build(&d);
    let s = Snapshot::new_checked(buf.as_bytes()).unwrap();
    assert!(s.vipas().is_empty());
    assert!(s.crt().is_empty());
    let k = FlowKey::default();
    assert_eq!(s.crt().lookup(&k, k.hash()), None);
}

#[test]
fn from_config_matches_maglev_and_target_order() {
    let text = "[node]\nname = \"n\"\ntunnel_source_v4 = \"10.10.0.1\"\n[[port]]\nname = \"p0\"\nmac = \"02:00:00:00:0a:01\"\n\
        [[vipa]]\naddress = \"192.0.2.10\"\nservices = [\"tcp/80\"]\ntable_size = 13\n  [[vipa.target]]\n  address = \"10.20.0.11\"\n  [[vipa.target]]\n  address = \"10.20.0.12\"\n\
        [[vipa]]\naddress = \"192.0.2.20\"\nservices = [\"udp/53\"]\ntable_size = 13\n  [[vipa.target]]\n  address = \"10.20.0.12\"\n  weight = 0\n";
    let config =
        crate::config::Config::from_str_with_path(text, std::path::Path::new("t.toml")).unwrap();
    let d = Description::from_config(&config, 1).unwrap();
    assert_eq!(d.targets.len(), 2);
    assert_eq!(
        d.vipas[0].maglev,
        [config.vipas[0].maglev_table().unwrap().entries()]
    );
    assert_eq!(d.vipas[0].services[0].maglev, Some(0));
    assert!(d.vipas[1].maglev.is_empty(), "all weights 0: no table");
    assert_eq!(d.vipas[1].services[0].maglev, None);
    let buf = build(&d);
    Snapshot::new_checked(buf.as_bytes()).unwrap();
}

#[test]
fn refusals() {
    let buf = build(&sample(9, 100));
    let good = buf.as_bytes();

    // Truncated: shorter than the header, and shorter than the total.
    let t = SnapshotBuf::from_bytes(&good[..100]);
    assert!(matches!(
        Snapshot::new_checked(t.as_bytes()),
        Err(SnapshotError::Truncated { .. })
    ));
    let t = SnapshotBuf::from_bytes(&good[..good.len() - 1]);
    assert_eq!(
        Snapshot::new_checked(t.as_bytes()).unwrap_err(),
        SnapshotError::Truncated {
            needed: good.len() as u64,
            got: good.len() as u64 - 1
        }
    );
    // Longer than the header says.
    let mut long = good.to_vec();
    long.extend_from_slice(&[0; 8]);
    let t = SnapshotBuf::from_bytes(&long);
    assert!(matches!(
        Snapshot::new_checked(t.as_bytes()),
        Err(SnapshotError::LengthMismatch { .. })
    ));

    // Magic.
    let mut m = buf.clone();
    m.as_mut_bytes()[0] = b'X';
    assert!(matches!(
        Snapshot::new_checked(m.as_bytes()),
        Err(SnapshotError::BadMagic { .. })
    ));

    // Version.
    let mut m = buf.clone();
    m.as_mut_bytes()[8..12].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(
        Snapshot::new_checked(m.as_bytes()).unwrap_err(),
        SnapshotError::UnsupportedVersion {
            found: 1,
            expected: 2
        }
    );

    // Any corrupted byte after the checksum field: checksum mismatch.
    for at in [32, 40, HEADER_LEN + 3, good.len() / 2, good.len() - 1] {
        let mut m = buf.clone();
        m.as_mut_bytes()[at] ^= 0x10;
        assert!(
            matches!(
                Snapshot::new_checked(m.as_bytes()),
                Err(SnapshotError::Checksum { .. })
            ),
            "byte {at}"
        );
    }

    // Misaligned buffer.
    let mut words = vec![0u64; good.len() / 8 + 2];
    let bytes = &mut zerocopy::IntoBytes::as_mut_bytes(words.as_mut_slice())[4..4 + good.len()];
    bytes.copy_from_slice(good);
    assert_eq!(
        Snapshot::new_checked(bytes).unwrap_err(),
        SnapshotError::Misaligned
    );
}

/// Rewrites the checksum after a change, so structural checks are reached.
fn reseal(b: &mut SnapshotBuf) {
    let sum = checksum(b.as_bytes());
    b.as_mut_bytes()[24..32].copy_from_slice(&sum.to_ne_bytes());
}

#[test]
fn structural_refusals_behind_a_good_checksum() {
    let d = sample(9, 10);
    let buf = build(&d);
    let s = Snapshot::new_checked(buf.as_bytes()).unwrap();
    let sections = s.header().sections;

    // A Maglev entry naming the quiesced target.
    let mut m = buf.clone();
    let at = sections[section::MAGLEV].offset as usize;
    m.as_mut_bytes()[at..at + 4].copy_from_slice(&1u32.to_ne_bytes());
    reseal(&mut m);
    assert_eq!(
        Snapshot::new_checked(m.as_bytes()).unwrap_err().to_string(),
        "vipas[0]: Maglev entry names a target that is not ready"
    );

    // A service naming a Maglev table its VIPA does not have (the second
    // service record is udp/53 of VIPA 0, which has two tables).
    let mut m = buf.clone();
    let at = sections[section::SERVICES].offset as usize + 4 + 3;
    m.as_mut_bytes()[at] = 2;
    reseal(&mut m);
    assert_eq!(
        Snapshot::new_checked(m.as_bytes()).unwrap_err().to_string(),
        "vipas[0]: a service names a missing Maglev table"
    );
    // ... and no table at all is fine: no new flow for that service.
    m.as_mut_bytes()[at] = NO_MAGLEV_TABLE;
    reseal(&mut m);
    let ok = Snapshot::new_checked(m.as_bytes()).unwrap();
    let v = &ok.vipas()[0];
    assert!(ok.service_maglev(v, &ok.services(v)[1]).is_empty());

    // A table count without a table size (VipaRecord bytes 42..44).
    let mut m = buf.clone();
    let at = sections[section::VIPAS].offset as usize + 42;
    m.as_mut_bytes()[at..at + 2].copy_from_slice(&3u16.to_ne_bytes());
    reseal(&mut m);
    assert_eq!(
        Snapshot::new_checked(m.as_bytes()).unwrap_err().to_string(),
        "vipas[0]: Maglev tables beyond the Maglev section"
    );

    // A section beyond the end.
    let mut m = buf.clone();
    let off = HEADER_LEN - 16 * (SECTIONS - section::NEIGHBORS) + 8;
    m.as_mut_bytes()[off..off + 8].copy_from_slice(&1_000_000u64.to_ne_bytes());
    reseal(&mut m);
    assert!(matches!(
        Snapshot::new_checked(m.as_bytes()),
        Err(SnapshotError::BadSection {
            section: "neighbors",
            ..
        })
    ));

    // A CRT entry naming a missing target.
    let mut m = buf.clone();
    let crt = sections[section::CRT].offset as usize;
    let first = s.crt().slots().iter().position(|e| !e.is_empty()).unwrap();
    let at = crt + first * 48 + 44;
    m.as_mut_bytes()[at..at + 4].copy_from_slice(&99u32.to_ne_bytes());
    reseal(&mut m);
    assert_eq!(
        Snapshot::new_checked(m.as_bytes()).unwrap_err(),
        SnapshotError::BadRecord {
            section: "crt",
            index: first as u64,
            what: "names no target"
        }
    );

    // An unknown target state.
    let mut m = buf.clone();
    let at = sections[section::TARGETS].offset as usize + 32 + 17;
    m.as_mut_bytes()[at] = 9;
    reseal(&mut m);
    assert!(Snapshot::new_checked(m.as_bytes())
        .unwrap_err()
        .to_string()
        .starts_with("targets[1]: unknown state"));
}

#[test]
fn builder_refuses_bad_descriptions() {
    let mut d = sample(1, 10);
    d.crt.push(d.crt[3]);
    assert_eq!(
        Builder::new(&d).unwrap_err(),
        BuildError::DuplicateConnection {
            index: 10,
            first: 3
        }
    );
    let mut d = sample(1, 10);
    d.vipas[0].maglev[1][2] = 1;
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::MaglevTarget { target: 1, .. })
    ));
    let mut d = sample(1, 10);
    d.vipas[0].maglev[1].pop();
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::BadMaglevSize { .. })
    ));
    let mut d = sample(1, 10);
    d.vipas[1].services[0].maglev = Some(1);
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::BadMaglevSize { .. })
    ));
    let mut d = sample(1, 10);
    d.crt[0].target = 3;
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::CrtTarget { .. })
    ));
    let mut d = sample(1, 10);
    d.crt[0].key.protocol = 1;
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::CrtProtocol { .. })
    ));
    let mut d = sample(1, 0);
    d.vipas[1].address = d.vipas[0].address;
    assert!(matches!(
        Builder::new(&d),
        Err(BuildError::DuplicateVipa(_))
    ));
}

#[test]
fn large_crt_probes_stay_short() {
    let d = sample(1, 200_000);
    let b = Builder::new(&d).unwrap();
    let (home, max_probe) = b.crt_geometry();
    assert_eq!(home, 300_000);
    assert!(max_probe < 200, "longest probe {max_probe}");
    let buf = b.to_buf().unwrap();
    let s = Snapshot::new_checked(buf.as_bytes()).unwrap();
    for c in d.crt.iter().step_by(97) {
        assert_eq!(s.crt().lookup(&c.key, c.key.hash()), Some(c.target));
    }
}

#[test]
fn names() {
    let n = head::Names::new("vipa");
    assert_eq!(n.head(), std::path::PathBuf::from("/dev/shm/vipa.head"));
    assert_eq!(
        n.generation(12),
        std::path::PathBuf::from("/dev/shm/vipa.gen.12")
    );
    assert_eq!(n.parse_generation("vipa.gen.12"), Some(12));
    assert_eq!(n.parse_generation("vipa.head"), None);
    assert_eq!(n.parse_generation("vipax.gen.1"), None);
    let t = head::Names::new("/tmp/x/run1");
    assert_eq!(t.back(), std::path::PathBuf::from("/tmp/x/run1.back"));
    assert_eq!(t.dir(), std::path::PathBuf::from("/tmp/x"));
}

#[test]
fn head_publish() {
    use std::sync::atomic::AtomicU64;
    let words: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    assert_eq!(
        head::Head::open(&words).unwrap_err(),
        head::HeadError::BadMagic
    );
    let w = head::Head::init(&words).unwrap();
    let r = head::Head::open(&words).unwrap();
    assert!(r.is_empty());
    w.publish(5, 1234);
    assert_eq!(r.generation(), 5);
    assert_eq!(r.len(), 1234);
}
