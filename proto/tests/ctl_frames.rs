//! Control-protocol frames: every message round-trips, other versions and
//! garbage are refused with a reason, nothing panics.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use vipa_proto::config::{L4Protocol, Service};
use vipa_proto::ctl::{
    decode, encode, frame_len, Accepted, Claim, Connection, DecodeError, Define, EncodeError,
    Epoch, Handover, Hello, Listener, Message, NodeStatus, Quiesce, Report, ReportAck, Stale,
    VipaStatus, HEADER_LEN, MAX_FRAME_LEN, VERSION,
};

const VIPA: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

fn conn(port: u16) -> Connection {
    Connection {
        client: SocketAddr::from(([198, 51, 100, 7], port)),
        service: Service {
            protocol: L4Protocol::Tcp,
            port: 443,
        },
    }
}

fn samples() -> Vec<Message> {
    let epoch = Epoch::new(3, 1);
    let listener = Listener {
        service: conn(1).service,
        quiesced: true,
    };
    vec![
        Message::Swim(vec![1, 2, 3]),
        Message::Status(NodeStatus {
            vipas: vec![VipaStatus {
                vipa: VIPA,
                epoch,
                owner: Some("fwd-b".into()),
                routing: true,
                claiming: false,
                deactivated: false,
                connections: 7,
            }],
        }),
        Message::Claim(Claim {
            vipa: VIPA,
            epoch,
            owner: "fwd-b".into(),
        }),
        Message::Handover(Handover {
            vipa: VIPA,
            epoch,
            from_epoch: Epoch::new(2, 0),
            part: 0,
            more: false,
            connections: vec![(conn(40000), IpAddr::from([10, 20, 0, 11]))],
            targets: vec![(IpAddr::from([10, 20, 0, 11]), vec![listener])],
        }),
        Message::Define(Define {
            vipa: VIPA,
            epoch,
            owner: "fwd-b".into(),
            services: vec![conn(1).service],
            confirm: true,
            full: false,
        }),
        Message::Report(Report {
            vipa: VIPA,
            epoch,
            session: 4,
            seq: 9,
            reset: true,
            more: false,
            listeners: vec![listener],
            opened: vec![conn(1), conn(2)],
            closed: vec![conn(3)],
        }),
        Message::ReportAck(ReportAck {
            vipa: VIPA,
            epoch,
            session: 4,
            seq: 9,
        }),
        Message::Stale(Stale {
            vipa: "2001:db8::10".parse().unwrap(),
            epoch,
            owner: "fwd-a".into(),
        }),
        Message::Quiesce(Quiesce {
            vipa: VIPA,
            service: None,
            quiesce: true,
        }),
        Message::Accepted(Accepted {
            vipa: VIPA,
            epoch,
            session: 9,
            seq: 1 << 40,
        }),
        Message::Hello(Hello::Node("fwd-b".into())),
        Message::Hello(Hello::Target("10.20.0.11".parse().unwrap())),
    ]
}

#[test]
fn every_message_round_trips() {
    let mut stream = Vec::new();
    for m in samples() {
        let mut one = Vec::new();
        encode(&m, &mut one).unwrap();
        assert_eq!(frame_len(&one).unwrap(), Some(one.len()));
        assert_eq!(decode(&one).unwrap(), (m.clone(), one.len()));
        stream.extend_from_slice(&one);
    }
    // Frames back to back, as on a stream.
    let mut at = 0;
    for m in samples() {
        let (got, used) = decode(&stream[at..]).unwrap();
        assert_eq!(got, m);
        at += used;
    }
    assert_eq!(at, stream.len());
}

#[test]
fn header_layout() {
    let mut f = Vec::new();
    encode(&Message::Swim(vec![0xaa]), &mut f).unwrap();
    assert_eq!(f, [0, 0, 0, 5, b'V', b'P', VERSION, 1, 0xaa]);
}

#[test]
fn another_version_is_refused_by_name() {
    let mut f = Vec::new();
    encode(&samples()[2], &mut f).unwrap();
    // Version 1 (before `Accepted` carried the report number) and a newer
    // one are both refused.
    for other in [1, VERSION + 1] {
        let mut g = f.clone();
        g[6] = other;
        assert_eq!(
            decode(&g).unwrap_err(),
            DecodeError::UnsupportedVersion {
                version: other,
                supported: VERSION
            }
        );
    }
    f[6] = VERSION + 1;
    let err = decode(&f).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("version {} is not supported", VERSION + 1)),
        "{err}"
    );
    // Even from a truncated frame.
    assert!(matches!(
        decode(&f[..7]),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn bad_frames() {
    let mut f = Vec::new();
    encode(&samples()[2], &mut f).unwrap();
    let mut bad = f.clone();
    bad[4] = b'X';
    assert!(matches!(decode(&bad), Err(DecodeError::BadMagic { .. })));
    let mut bad = f.clone();
    bad[7] = 200;
    assert_eq!(decode(&bad), Err(DecodeError::UnknownKind { kind: 200 }));
    assert!(matches!(
        decode(&f[..f.len() - 1]),
        Err(DecodeError::Incomplete { .. })
    ));
    let mut bad = f.clone();
    bad[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&bad), Err(DecodeError::BadLength { .. })));
    let mut bad = f.clone();
    bad.push(0);
    let n = (bad.len() - 4) as u32;
    bad[..4].copy_from_slice(&n.to_be_bytes());
    assert!(matches!(
        decode(&bad),
        Err(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    assert_eq!(frame_len(&[0, 0]), Ok(None));
    assert!(decode(&[]).is_err());
}

#[test]
fn too_large_is_refused_and_leaves_the_buffer() {
    let mut out = vec![7u8];
    let big = Message::Swim(vec![0; MAX_FRAME_LEN]);
    assert!(matches!(
        encode(&big, &mut out),
        Err(EncodeError::TooLarge { .. })
    ));
    assert_eq!(out, [7]);
}

#[test]
fn epochs_order_by_term_then_rank() {
    assert!(Epoch::new(2, 0) > Epoch::new(1, 3));
    assert!(Epoch::new(2, 1) > Epoch::new(2, 0));
    assert!(Epoch::NONE < Epoch::new(0, 1));
    let e = Epoch::new(77, 5);
    assert_eq!((e.term(), e.rank()), (77, 5));
    assert_eq!(e.to_string(), "77.5");
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = frame_len(&bytes);
    }

    /// A valid header in front of garbage reaches the body decoders.
    #[test]
    fn garbage_bodies_never_panic(kind in 0u8..12, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut f = ((body.len() + HEADER_LEN - 4) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(b"VP");
        f.push(VERSION);
        f.push(kind);
        f.extend_from_slice(&body);
        let _ = decode(&f);
    }

    /// Any byte of a valid frame changed: an error or a message, no panic.
    #[test]
    fn mutated_frames_never_panic(which in 0usize..10, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut f = Vec::new();
        encode(&samples()[which], &mut f).unwrap();
        let i = at.index(f.len());
        f[i] = byte;
        let _ = decode(&f);
    }

    #[test]
    fn reports_round_trip(seq in any::<u64>(), ports in proptest::collection::vec(any::<u16>(), 0..50), reset: bool, more: bool) {
        let m = Message::Report(Report {
            vipa: VIPA,
            epoch: Epoch(seq ^ 0x55),
            session: seq / 3,
            seq,
            reset,
            more,
            listeners: vec![],
            opened: ports.iter().map(|&p| conn(p)).collect(),
            closed: ports.iter().rev().map(|&p| conn(p)).collect(),
        });
        let mut f = Vec::new();
        encode(&m, &mut f).unwrap();
        prop_assert_eq!(decode(&f).unwrap(), (m, f.len()));
    }

    #[test]
    fn accepted_round_trips(epoch: u64, session: u64, seq: u64) {
        let m = Message::Accepted(Accepted {
            vipa: VIPA,
            epoch: Epoch(epoch),
            session,
            seq,
        });
        let mut f = Vec::new();
        encode(&m, &mut f).unwrap();
        prop_assert_eq!(decode(&f).unwrap(), (m, f.len()));
    }
}
