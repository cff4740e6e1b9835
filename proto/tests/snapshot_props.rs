//! The snapshot reader never panics, whatever the bytes: arbitrary buffers,
//! and valid snapshots with bytes changed and the checksum rewritten (so
//! the structural checks behind the checksum are exercised too). Whatever
//! it accepts can be read and looked up without panicking.

use proptest::prelude::*;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::snapshot::{
    checksum, Builder, CrtDesc, Description, ServiceDesc, Snapshot, SnapshotBuf, TargetDesc,
    TargetState, VipaDesc,
};

fn valid() -> SnapshotBuf {
    let d = Description {
        generation: 3,
        vipas: vec![VipaDesc {
            address: "192.0.2.10".parse().unwrap(),
            epoch: 1,
            owned: true,
            services: vec![
                ServiceDesc {
                    protocol: 6,
                    port: 80,
                    maglev: Some(0),
                },
                ServiceDesc {
                    protocol: 6,
                    port: 443,
                    maglev: Some(1),
                },
            ],
            maglev: vec![vec![0, 1, 0, 1, 0], vec![1, 1, 1, 1, 1]],
        }],
        targets: vec![
            TargetDesc {
                address: "10.20.0.11".parse().unwrap(),
                state: TargetState::Ready,
            },
            TargetDesc {
                address: "fd00::1".parse().unwrap(),
                state: TargetState::Ready,
            },
        ],
        crt: (0..40)
            .map(|i| CrtDesc {
                key: FlowKey::v4([198, 51, 100, i], [192, 0, 2, 10], 6, 1000, 80),
                target: u32::from(i % 2),
            })
            .collect(),
        neighbors: vec![],
    };
    Builder::new(&d).unwrap().to_buf().unwrap()
}

fn exercise(bytes: &[u8]) {
    if let Ok(s) = Snapshot::new_checked(bytes) {
        for v in s.vipas() {
            let _ = s.vipa_address(v);
            let _ = s.services(v).len();
            for sv in s.services(v) {
                let _ = s.service_maglev(v, sv).len();
            }
        }
        for t in s.targets() {
            let _ = (s.target_address(t), s.target_state(t));
        }
        let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 1000, 80);
        let _ = s.crt().lookup(&k, k.hash());
        let _ = s.crt().iter().count();
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let buf = SnapshotBuf::from_bytes(&bytes);
        exercise(buf.as_bytes());
    }

    #[test]
    fn mutated_and_resealed_never_panic(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        truncate in any::<Option<prop::sample::Index>>(),
    ) {
        let good = valid();
        let mut bytes = good.as_bytes().to_vec();
        for (at, v) in changes {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Some(t) = truncate {
            bytes.truncate(t.index(bytes.len()));
        }
        let mut buf = SnapshotBuf::from_bytes(&bytes);
        if buf.as_bytes().len() >= 32 {
            let sum = checksum(buf.as_bytes());
            buf.as_mut_bytes()[24..32].copy_from_slice(&sum.to_ne_bytes());
        }
        exercise(buf.as_bytes());
    }
}
