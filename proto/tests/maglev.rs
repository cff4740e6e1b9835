//! Maglev table construction: the paper's example, Envoy's reference tables,
//! a stored table of our own, disruption, weights and properties.

use proptest::prelude::*;
use vipa_proto::maglev::{
    build, is_prime, populate, MaglevError, MaglevTable, MaglevTarget, Permutation,
    DEFAULT_TABLE_SIZE,
};

fn targets<'a>(keys: &'a [String], weights: &[u32]) -> Vec<MaglevTarget<'a>> {
    keys.iter()
        .zip(weights)
        .map(|(key, &weight)| MaglevTarget { key, weight })
        .collect()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Eisenbud et al., NSDI'16, Table 1: three backends, M = 7.
#[test]
fn paper_table_1() {
    let b0 = Permutation {
        offset: 3,
        skip: 4,
        weight: 1,
    };
    let b1 = Permutation {
        offset: 0,
        skip: 2,
        weight: 1,
    };
    let b2 = Permutation {
        offset: 3,
        skip: 1,
        weight: 1,
    };
    // The permutation columns of the table.
    let perm = |p: Permutation| {
        (0..7)
            .map(|j| (p.offset + j * p.skip) % 7)
            .collect::<Vec<_>>()
    };
    assert_eq!(perm(b0), [3, 0, 4, 1, 5, 2, 6]);
    assert_eq!(perm(b1), [0, 2, 4, 6, 1, 3, 5]);
    assert_eq!(perm(b2), [3, 4, 5, 6, 0, 1, 2]);

    // "Before": B1 B0 B1 B0 B2 B2 B0.
    assert_eq!(populate(&[b0, b1, b2], 7).unwrap(), [1, 0, 1, 0, 2, 2, 0]);
    // "After" B1 is removed: B0 B0 B0 B0 B2 B2 B2 (indices into [b0, b2]).
    assert_eq!(populate(&[b0, b2], 7).unwrap(), [0, 0, 0, 0, 1, 1, 1]);
    // A weight of 0 is the same as removing it.
    let b1_drained = Permutation { weight: 0, ..b1 };
    assert_eq!(
        populate(&[b0, b1_drained, b2], 7).unwrap(),
        [0, 0, 0, 0, 2, 2, 2]
    );
}

/// Envoy `test/common/upstream/maglev_lb_test.cc`, `Basic`: xxHash64 over the
/// host key string, seed 0 for the offset, seed 1 for the skip.
#[test]
fn envoy_basic() {
    let keys: Vec<String> = (90..=95).map(|p| format!("127.0.0.1:{p}")).collect();
    let table = build(&targets(&keys, &[1; 6]), 7).unwrap();
    assert_eq!(table.entries(), [2, 4, 0, 1, 5, 0, 3]);
    // Lookup is hash % M.
    for h in 0..21u64 {
        assert_eq!(table.lookup(h), [2, 4, 0, 1, 5, 0, 3][(h % 7) as usize]);
    }
}

/// Envoy `BasicWithHostName`: the keys are the host names "90" … "95".
#[test]
fn envoy_basic_with_host_name() {
    let keys: Vec<String> = (90..=95).map(|p| p.to_string()).collect();
    let table = build(&targets(&keys, &[1; 6]), 7).unwrap();
    assert_eq!(table.entries(), [2, 5, 0, 3, 4, 1, 0]);
}

/// Envoy `Weighted`: weights 1 and 2, M = 17; 6 and 11 slots.
#[test]
fn envoy_weighted() {
    let keys = vec!["127.0.0.1:90".to_string(), "127.0.0.1:91".to_string()];
    let table = build(&targets(&keys, &[1, 2]), 17).unwrap();
    assert_eq!(
        table.entries(),
        [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
    );
    assert_eq!(table.slot_counts(2), [6, 11]);
}

/// Envoy `LocalityWeightedSameLocalityWeights`: effective weights 1:1, M = 17.
#[test]
fn envoy_equal_weights() {
    let keys = vec!["127.0.0.1:90".to_string(), "127.0.0.1:91".to_string()];
    let expected = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1];
    assert_eq!(
        build(&targets(&keys, &[1, 1]), 17).unwrap().entries(),
        expected
    );
    // Equal weights of any size are the same as weight 1.
    assert_eq!(
        build(&targets(&keys, &[7, 7]), 17).unwrap().entries(),
        expected
    );
}

/// Envoy `LocalityWeightedDifferentLocalityWeights`: locality weights 8, 0, 2
/// leave :90 with 0.8, :92 with nothing and :91 with 0.2, M = 17.
#[test]
fn envoy_locality_weighted() {
    let keys: Vec<String> = (90..=92).map(|p| format!("127.0.0.1:{p}")).collect();
    let table = build(&targets(&keys, &[8, 2, 0]), 17).unwrap();
    assert_eq!(
        table.entries(),
        [1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]
    );
    assert_eq!(table.slot_counts(3), [13, 4, 0]);
}

/// Envoy `LocalityWeightedLopsided`: one host of weight 127 · 1023 and 1023
/// hosts of weight 1 at M = 65537: each light host gets exactly one slot.
#[test]
fn envoy_lopsided() {
    let keys: Vec<String> = (0..1024).map(|p| format!("127.0.0.1:{p}")).collect();
    let mut weights = vec![1; 1024];
    weights[0] = 127 * 1023;
    let table = build(&targets(&keys, &weights), 65537).unwrap();
    let counts = table.slot_counts(1024);
    assert_eq!(counts[0], 65537 - 1023);
    assert!(counts[1..].iter().all(|&c| c == 1));
}

/// A table of our own, stored, so that any change to the hash, the order or
/// the population is caught. Regenerate only with a deliberate, documented
/// change of the cluster protocol.
#[test]
fn stored_reference_table() {
    let keys: Vec<String> = (11..=15).map(|i| format!("10.20.0.{i}")).collect();
    let weights = [1, 1, 2, 1, 0];
    let table = build(&targets(&keys, &weights), 251).unwrap();
    assert_eq!(table.entries(), REFERENCE_251);
    assert_eq!(table.slot_counts(5), [51, 51, 99, 50, 0]);
}

#[rustfmt::skip]
const REFERENCE_251: [u32; 251] = [
    1, 0, 3, 2, 1, 2, 3, 3, 2, 2, 2, 2, 1, 0, 0, 2, 2, 2, 3, 2, 1, 0, 2, 3, 3,
    2, 0, 2, 1, 1, 2, 2, 1, 2, 0, 3, 1, 3, 2, 3, 3, 3, 2, 2, 2, 2, 0, 0, 1, 1,
    2, 0, 2, 0, 3, 2, 3, 3, 2, 0, 1, 2, 2, 2, 1, 0, 0, 2, 1, 2, 3, 3, 0, 3, 2,
    2, 1, 2, 0, 0, 2, 2, 0, 2, 1, 2, 2, 3, 2, 3, 3, 3, 0, 1, 2, 2, 2, 2, 0, 2,
    1, 1, 2, 3, 0, 2, 3, 2, 3, 0, 2, 0, 1, 2, 2, 0, 2, 0, 2, 2, 1, 2, 3, 3, 0,
    2, 1, 2, 1, 0, 0, 2, 2, 2, 0, 2, 0, 0, 2, 3, 3, 3, 0, 2, 1, 1, 2, 2, 1, 2,
    0, 3, 2, 3, 2, 3, 0, 3, 3, 2, 2, 0, 0, 1, 1, 2, 2, 1, 2, 0, 3, 1, 3, 3, 3,
    3, 2, 2, 2, 1, 1, 0, 0, 1, 1, 2, 3, 2, 0, 3, 2, 1, 1, 2, 0, 0, 2, 2, 2, 1,
    0, 2, 2, 1, 2, 3, 3, 1, 3, 1, 2, 1, 2, 0, 0, 1, 1, 3, 2, 1, 0, 2, 3, 2, 3,
    3, 2, 0, 1, 2, 2, 1, 2, 0, 2, 1, 1, 2, 3, 1, 0, 3, 0, 1, 1, 2, 0, 1, 2, 2,
    0,
];

/// When one target of N leaves, fewer than 1 % of the slots owned by the
/// surviving targets change owner; when it comes back, the same holds.
#[test]
fn disruption_bounded() {
    for n in [100usize, 1000] {
        let keys = keys("10.1.", n);
        let all = targets(&keys, &vec![1; n]);
        let before = build(&all, DEFAULT_TABLE_SIZE as usize).unwrap();
        for removed in [0, n / 2, n - 1] {
            let mut rest = all.clone();
            rest.remove(removed);
            let after = build(&rest, DEFAULT_TABLE_SIZE as usize).unwrap();
            // Map `after`'s indices back to `all`'s.
            let back = |i: u32| {
                let i = i as usize;
                if i >= removed {
                    i + 1
                } else {
                    i
                }
            };
            let mut surviving = 0usize;
            let mut moved = 0usize;
            for (slot, &owner) in before.entries().iter().enumerate() {
                if owner as usize == removed {
                    continue;
                }
                surviving += 1;
                if back(after.entries()[slot]) != owner as usize {
                    moved += 1;
                }
            }
            let share = moved as f64 / surviving as f64;
            assert!(
                share < 0.01,
                "n={n} removed={removed}: {moved} of {surviving} surviving slots moved"
            );
            // Adding it back restores exactly the original table.
            let again = build(&all, DEFAULT_TABLE_SIZE as usize).unwrap();
            assert_eq!(again, before);
        }
    }
}

/// Adding a target moves fewer than 1 % of the existing targets' slots, apart
/// from the ones the new target takes.
#[test]
fn disruption_on_add_bounded() {
    for n in [100usize, 1000] {
        let keys = keys("10.2.", n + 1);
        let all = targets(&keys, &vec![1; n + 1]);
        let before = build(&all[..n], DEFAULT_TABLE_SIZE as usize).unwrap();
        let after = build(&all, DEFAULT_TABLE_SIZE as usize).unwrap();
        let mut moved = 0usize;
        for (slot, &owner) in after.entries().iter().enumerate() {
            if owner as usize != n && before.entries()[slot] != owner {
                moved += 1;
            }
        }
        assert!(
            (moved as f64) < 0.01 * DEFAULT_TABLE_SIZE as f64,
            "n={n}: {moved} slots moved between old targets"
        );
    }
}

/// Shares follow weights within ±1 % (absolute) at M = 65537.
#[test]
fn weights_respected() {
    for weights in [
        vec![1u32, 2, 3, 4],
        vec![1, 1, 1, 10],
        vec![5, 3, 0, 2, 7, 1],
    ] {
        let keys = keys("192.168.7.", weights.len());
        let table = build(&targets(&keys, &weights), 65537).unwrap();
        let total: u32 = weights.iter().sum();
        for (i, (&c, &w)) in table
            .slot_counts(weights.len())
            .iter()
            .zip(&weights)
            .enumerate()
        {
            let share = f64::from(c) / 65537.0;
            let want = f64::from(w) / f64::from(total);
            assert!(
                (share - want).abs() <= 0.01,
                "{weights:?}: target {i} has {share:.4}, want {want:.4}"
            );
        }
    }
}

#[test]
fn errors() {
    let keys = keys("k", 3);
    assert_eq!(build(&[], 7), Err(MaglevError::NoTargets));
    assert_eq!(
        build(&targets(&keys, &[0, 0, 0]), 7),
        Err(MaglevError::NoTargets)
    );
    assert_eq!(
        build(&targets(&keys, &[1, 1, 1]), 8),
        Err(MaglevError::NotPrime(8))
    );
    assert_eq!(
        build(&targets(&keys, &[1, 1, 1]), 1),
        Err(MaglevError::NotPrime(1))
    );
    assert_eq!(
        build(&targets(&keys, &[1, 1, 1]), 2),
        Err(MaglevError::TooManyTargets {
            targets: 3,
            table_size: 2
        })
    );
    // Zero-weight targets do not count against the size.
    assert!(build(&targets(&keys, &[1, 0, 1]), 2).is_ok());
    assert_eq!(
        build(&targets(&keys, &[1, 1, 1]), 16_777_259),
        Err(MaglevError::TooLarge(16_777_259))
    );
    let dup = vec!["a".to_string(), "b".to_string(), "a".to_string()];
    assert_eq!(
        build(&targets(&dup, &[1, 1, 0]), 7),
        Err(MaglevError::DuplicateKey("a".into()))
    );
    let bad = Permutation {
        offset: 7,
        skip: 1,
        weight: 1,
    };
    assert!(matches!(
        populate(&[bad], 7),
        Err(MaglevError::InvalidPermutation { index: 0, .. })
    ));
    let bad = Permutation {
        offset: 0,
        skip: 0,
        weight: 1,
    };
    assert!(matches!(
        populate(&[bad], 7),
        Err(MaglevError::InvalidPermutation { .. })
    ));
    // Messages are sentences.
    assert!(MaglevError::NotPrime(8).to_string().contains("65537"));
}

#[test]
fn single_target_owns_everything() {
    let keys = keys("only", 1);
    let table = build(&targets(&keys, &[3]), 13).unwrap();
    assert!(table.entries().iter().all(|&e| e == 0));
    assert_eq!(table.table_size(), 13);
}

#[test]
fn is_prime_is_exported() {
    assert!(is_prime(DEFAULT_TABLE_SIZE.into()));
    assert!(!is_prime(65536));
}

/// Slot → key: what must be identical on every node.
fn owners<'a>(targets: &[MaglevTarget<'a>], table: &MaglevTable) -> Vec<&'a str> {
    table
        .entries()
        .iter()
        .map(|&e| targets[e as usize].key)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn properties(
        set in proptest::collection::btree_map("[a-z0-9.:]{1,12}", 1u32..=10, 1..50),
        m_choice in 0usize..3,
        seed in any::<u64>(),
    ) {
        let m = [251usize, 1009, 4099][m_choice];
        let list: Vec<(String, u32)> = set.into_iter().collect();
        let n = list.len();
        let t: Vec<MaglevTarget> = list.iter().map(|(k, w)| MaglevTarget { key: k, weight: *w }).collect();
        let table = build(&t, m).unwrap();
        prop_assert_eq!(table.table_size(), m);
        prop_assert!(table.entries().iter().all(|&e| (e as usize) < n));
        // M ≥ 5 · n here: every target gets a slot.
        prop_assert!(table.slot_counts(n).iter().all(|&c| c >= 1));
        let reference = owners(&t, &table);

        // Shuffle (Fisher–Yates with a xorshift seeded by proptest).
        let mut mixed = list.clone();
        let mut x = seed | 1;
        for i in (1..mixed.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            mixed.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let shuffled: Vec<MaglevTarget> = mixed.iter().map(|(k, w)| MaglevTarget { key: k, weight: *w }).collect();
        let again = build(&shuffled, m).unwrap();
        prop_assert_eq!(owners(&shuffled, &again), reference);
    }

    #[test]
    fn lookup_is_hash_mod_m(hash in any::<u64>(), m_choice in 0usize..4) {
        let m = [7usize, 251, 65537, 16_777_213][m_choice];
        let table = MaglevTable::from_entries((0..m as u32).collect());
        prop_assert_eq!(u64::from(table.lookup(hash)), hash % m as u64);
    }
}
