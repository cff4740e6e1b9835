//! Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! A Maglev table is an array of `M` slots (`M` prime); every slot names a
//! target. A new flow goes to `entries[hash % M]`. Every routing node must
//! build exactly the same table from the same targets — a backup that takes
//! over maps a connection it never saw to the target the owner chose — so
//! the construction is a pure function of the targets' keys, weights and
//! `M`, with a fixed hash and a fixed order.
//!
//! # The algorithm in a page
//!
//! 1. **Order.** Targets with weight 0 are left out (they are draining: they
//!    get no slot, so no new flow). The rest are sorted by key, bytewise, so
//!    the caller's order never matters. Two targets with the same key are an
//!    error.
//! 2. **Permutation.** Each target's key (its bytes) gives a preference list
//!    over the slots:
//!    `offset = xxh64(key, seed 0) % M`, `skip = xxh64(key, seed 1) % (M − 1) + 1`,
//!    and the target's `j`-th preference is `(offset + j · skip) % M`. Because
//!    `M` is prime and `1 ≤ skip < M`, the list visits every slot exactly
//!    once. This is the hash Envoy uses, so Envoy's reference tables are ours.
//!    xxHash64 is a published, fixed function; `std`'s `DefaultHasher` is
//!    never used (it may change between Rust releases).
//! 3. **Population.** In rounds `r = 1, 2, …`, targets take turns in sorted
//!    order; in its turn a target claims its next preferred slot that is
//!    still empty, until all `M` slots are full (the paper's Listing 1, which
//!    stops in the middle of a round when the table is full).
//! 4. **Weights** (Envoy's weighted variant). Let `w` be a target's weight,
//!    `W` the largest weight and `c` the number of slots the target has
//!    claimed so far. In round `r` the target takes its turn only if
//!    `r · w ≥ c · W`. A target of the largest weight therefore claims a slot
//!    in every round, one of a third of that weight in every third round, and
//!    every target claims one in round 1. Shares approach `w / Σw`. The test
//!    is done in exact integer arithmetic (Envoy uses floating point on
//!    normalised weights; the two agree on Envoy's reference tables).
//!
//! The table stores, for each slot, the index of the target **in the
//! caller's slice** (sorting is internal and mapped back), so
//! `targets[table.lookup(hash) as usize]` is the chosen target.
//!
//! When one target of `N` leaves, only about `M / N` slots (the ones it
//! owned) must move; Maglev moves a few more, but in practice well under 1 %
//! of the slots owned by the surviving targets (tested at `M = 65537`). The
//! paper recommends `M > 100 · N` for the shares to be within about 1 % of
//! the weights.
//!
//! # Cost
//!
//! Building is `O(M log M)` slot probes plus `O(M log N)` for the weighted
//! turn order (a binary heap keyed by the round in which a target next takes
//! its turn, so a very uneven set of weights does not cost `O(N · M)`); with
//! equal weights a plain round-robin loop is used. A 1000-target table of
//! 65537 slots builds in a few milliseconds. Nothing allocates per step.
//! Looking up is one multiplication-based remainder (no division) and one
//! load.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use xxhash_rust::xxh64::xxh64;

/// The table size Maglev recommends and vipa uses by default: a prime a
/// little above 2¹⁶, so each of up to ~650 targets owns at least 100 slots.
pub const DEFAULT_TABLE_SIZE: u32 = 65537;

/// The largest table size accepted (2²⁴; the largest prime not above it is
/// 16 777 213). A table of this size takes 64 MiB.
pub const MAX_TABLE_SIZE: u64 = 1 << 24;

/// Marks an empty slot while the table is being populated.
const EMPTY: u32 = u32::MAX;

/// A target as Maglev sees it: a stable key and a weight.
///
/// The key is what is hashed to choose the target's preference list; every
/// node must use the same key for the same target. vipa uses the target's
/// address as printed by `std` (`10.20.0.11`, `fd00:20::11` — IPv6 in the
/// RFC 5952 form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTarget<'a> {
    /// The stable key hashed for this target (its bytes are hashed).
    pub key: &'a str,
    /// Relative weight. 0 means draining: the target gets no slot.
    pub weight: u32,
}

/// A target's preference list over the slots, given directly, and its
/// weight: the `j`-th preferred slot is `(offset + j · skip) % M`.
///
/// [`build`] derives these from the keys; [`populate`] takes them as they
/// are, which is how the paper's worked example (Table 1) is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permutation {
    /// First preferred slot; must be `< M`.
    pub offset: u64,
    /// Step between preferences; must be in `1..M`.
    pub skip: u64,
    /// Relative weight; 0 means no slot.
    pub weight: u32,
}

impl Permutation {
    /// The preference list of `key` in a table of `table_size` slots, with
    /// the given weight: `offset = xxh64(key, 0) % M`,
    /// `skip = xxh64(key, 1) % (M − 1) + 1`.
    ///
    /// `table_size` must be at least 2 (any prime is).
    pub fn for_key(key: &[u8], table_size: u64, weight: u32) -> Permutation {
        debug_assert!(table_size >= 2);
        Permutation {
            offset: xxh64(key, 0) % table_size,
            skip: xxh64(key, 1) % (table_size - 1) + 1,
            weight,
        }
    }
}

/// Why a Maglev table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaglevError {
    /// The table size is not a prime number.
    #[error(
        "Maglev table size {0} is not a prime number; use a prime such as {DEFAULT_TABLE_SIZE}"
    )]
    NotPrime(u64),
    /// The table size is above [`MAX_TABLE_SIZE`].
    #[error("Maglev table size {0} is larger than the maximum, {MAX_TABLE_SIZE}")]
    TooLarge(u64),
    /// No target has a positive weight (or there is no target at all): there
    /// is nothing to put in the table. The forwarder counts packets for such
    /// a service as dropped for having no target.
    #[error("no target with a positive weight: nothing to put in the Maglev table")]
    NoTargets,
    /// More targets with a positive weight than slots.
    #[error("{targets} targets with a positive weight do not fit in a Maglev table of {table_size} slots; use a larger prime table size")]
    TooManyTargets {
        /// Targets with a positive weight.
        targets: usize,
        /// The table size.
        table_size: u64,
    },
    /// Two targets have the same key, so they would have the same
    /// preference list.
    #[error("two Maglev targets have the same key {0:?}")]
    DuplicateKey(String),
    /// A [`Permutation`] given to [`populate`] has `offset ≥ M`, `skip = 0`
    /// or `skip ≥ M`.
    #[error("Maglev permutation {index} (offset {offset}, skip {skip}) is not valid for a table of {table_size} slots")]
    InvalidPermutation {
        /// Its index in the slice.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its skip.
        skip: u64,
        /// The table size.
        table_size: u64,
    },
}

/// A built Maglev table: `table_size` slots, each holding the index of a
/// target in the slice the table was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    entries: Vec<u32>,
    /// `⌈2¹²⁸ / M⌉`, for the remainder without division (Lemire, Kaser and
    /// Kurz, "Faster Remainder by Direct Computation", 2019).
    fastmod: u128,
}

impl MaglevTable {
    /// Wraps entries computed elsewhere (for example [`populate`]'s). The
    /// length must be at least 2 and at most [`MAX_TABLE_SIZE`]; it need
    /// not be prime here.
    ///
    /// # Panics
    ///
    /// If `entries.len()` is out of that range.
    pub fn from_entries(entries: Vec<u32>) -> MaglevTable {
        let m = entries.len() as u64;
        assert!(
            (2..=MAX_TABLE_SIZE).contains(&m),
            "Maglev table size {m} out of range"
        );
        MaglevTable {
            entries,
            fastmod: u128::MAX / u128::from(m) + 1,
        }
    }

    /// The target for a flow hash: `entries[hash % M]`, as an index into the
    /// slice the table was built from.
    #[inline]
    pub fn lookup(&self, hash: u64) -> u32 {
        self.entries[self.slot(hash)]
    }

    /// `hash % M`, computed without a division.
    #[inline]
    pub fn slot(&self, hash: u64) -> usize {
        let m = self.entries.len() as u64;
        // Lemire's fastmod for a 64-bit numerator and a divisor below 2^32:
        // with c = ⌈2^128 / m⌉, hash % m = ⌊((c · hash) mod 2^128) · m / 2^128⌋.
        let low = self.fastmod.wrapping_mul(u128::from(hash));
        let hi = low >> 64;
        let lo = low & u128::from(u64::MAX);
        let r = (hi * u128::from(m) + ((lo * u128::from(m)) >> 64)) >> 64;
        r as usize
    }

    /// All slots, in order.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The number of slots, `M`.
    pub fn table_size(&self) -> usize {
        self.entries.len()
    }

    /// How many slots each of `targets` targets owns.
    pub fn slot_counts(&self, targets: usize) -> Vec<u32> {
        let mut counts = vec![0u32; targets];
        for &e in &self.entries {
            if let Some(c) = counts.get_mut(e as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Builds the Maglev table of `targets` with `table_size` slots.
///
/// The entries are indices into `targets` (the caller's order), whatever
/// that order is: the result depends only on the set of (key, weight)
/// pairs. Targets with weight 0 get no slot.
///
/// # Errors
///
/// [`MaglevError::NotPrime`] / [`MaglevError::TooLarge`] for a bad size,
/// [`MaglevError::NoTargets`] if no target has a positive weight,
/// [`MaglevError::TooManyTargets`] if more targets have a positive weight
/// than there are slots, [`MaglevError::DuplicateKey`] if two targets (of
/// any weight) share a key.
pub fn build(targets: &[MaglevTarget<'_>], table_size: usize) -> Result<MaglevTable, MaglevError> {
    let m = table_size as u64;
    check_table_size(m)?;

    let mut order: Vec<usize> = (0..targets.len()).collect();
    order.sort_unstable_by(|&a, &b| targets[a].key.as_bytes().cmp(targets[b].key.as_bytes()));
    if let Some(w) = order
        .windows(2)
        .find(|w| targets[w[0]].key == targets[w[1]].key)
    {
        return Err(MaglevError::DuplicateKey(targets[w[0]].key.to_owned()));
    }
    order.retain(|&i| targets[i].weight > 0);

    let perms: Vec<Permutation> = order
        .iter()
        .map(|&i| Permutation::for_key(targets[i].key.as_bytes(), m, targets[i].weight))
        .collect();
    let mut entries = populate(&perms, table_size)?;
    for e in &mut entries {
        *e = order[*e as usize] as u32;
    }
    Ok(MaglevTable::from_entries(entries))
}

/// Populates a table of `table_size` slots from preference lists given
/// directly, in the given order (no sorting, no hashing): step 3 and 4 of
/// the module documentation. Entries are indices into `perms`; entries with
/// weight 0 get no slot.
///
/// # Errors
///
/// As [`build`], and [`MaglevError::InvalidPermutation`] for an offset or a
/// skip out of range.
pub fn populate(perms: &[Permutation], table_size: usize) -> Result<Vec<u32>, MaglevError> {
    let m = table_size as u64;
    check_table_size(m)?;
    for (index, p) in perms.iter().enumerate() {
        if p.offset >= m || p.skip == 0 || p.skip >= m {
            return Err(MaglevError::InvalidPermutation {
                index,
                offset: p.offset,
                skip: p.skip,
                table_size: m,
            });
        }
    }
    let positive = perms.iter().filter(|p| p.weight > 0).count();
    if positive == 0 {
        return Err(MaglevError::NoTargets);
    }
    if positive as u64 > m {
        return Err(MaglevError::TooManyTargets {
            targets: positive,
            table_size: m,
        });
    }

    let mut filler = Filler {
        table: vec![EMPTY; table_size],
        m: m as u32,
        filled: 0,
    };
    // Per target: the next slot of its preference list (kept reduced
    // modulo M, so advancing is an addition and a conditional subtraction).
    let mut next: Vec<u32> = perms.iter().map(|p| p.offset as u32).collect();
    let skips: Vec<u32> = perms.iter().map(|p| p.skip as u32).collect();

    let max_w = perms.iter().map(|p| p.weight).max().unwrap_or(0);
    let equal = perms.iter().all(|p| p.weight == 0 || p.weight == max_w);
    if equal {
        // Every target with a positive weight takes its turn in every round.
        let active: Vec<u32> = (0..perms.len() as u32)
            .filter(|&i| perms[i as usize].weight > 0)
            .collect();
        'rounds: loop {
            for &i in &active {
                let i = i as usize;
                filler.claim(i as u32, &mut next[i], skips[i]);
                if filler.full() {
                    break 'rounds;
                }
            }
        }
    } else {
        // Target i takes its turn in round r iff r · w_i ≥ c_i · W. Turns are
        // taken in (round, index) order; after a turn in round r the target's
        // next turn is in round max(r + 1, ⌈c_i · W / w_i⌉).
        let max_w = u64::from(max_w);
        let mut counts = vec![0u64; perms.len()];
        let mut turns: BinaryHeap<Reverse<(u64, u32)>> = perms
            .iter()
            .enumerate()
            .filter(|(_, p)| p.weight > 0)
            .map(|(i, _)| Reverse((1, i as u32)))
            .collect();
        while let Some(Reverse((round, i))) = turns.pop() {
            let iu = i as usize;
            filler.claim(i, &mut next[iu], skips[iu]);
            if filler.full() {
                break;
            }
            counts[iu] += 1;
            let w = u64::from(perms[iu].weight);
            let due = (counts[iu] * max_w).div_ceil(w);
            turns.push(Reverse((due.max(round + 1), i)));
        }
    }
    Ok(filler.table)
}

/// The table being populated.
struct Filler {
    table: Vec<u32>,
    m: u32,
    filled: usize,
}

impl Filler {
    /// Target `i` claims the first empty slot from `*next` on in its
    /// preference list, and `*next` moves past it. There is always an empty
    /// slot when this is called, and the list visits every slot, so the
    /// probe ends.
    #[inline]
    fn claim(&mut self, i: u32, next: &mut u32, skip: u32) {
        let mut c = *next;
        while self.table[c as usize] != EMPTY {
            c = step(c, skip, self.m);
        }
        self.table[c as usize] = i;
        self.filled += 1;
        *next = step(c, skip, self.m);
    }

    #[inline]
    fn full(&self) -> bool {
        self.filled == self.table.len()
    }
}

/// `(c + skip) % m` for `c, skip < m ≤ 2³²`, without a division.
#[inline]
fn step(c: u32, skip: u32, m: u32) -> u32 {
    let (sum, overflow) = c.overflowing_add(skip);
    if overflow || sum >= m {
        sum.wrapping_sub(m)
    } else {
        sum
    }
}

fn check_table_size(m: u64) -> Result<(), MaglevError> {
    if m > MAX_TABLE_SIZE {
        return Err(MaglevError::TooLarge(m));
    }
    if !is_prime(m) {
        return Err(MaglevError::NotPrime(m));
    }
    Ok(())
}

/// Whether `n` is prime. Exact for every `u64` (trial division by small
/// primes, then a Miller–Rabin test with the first twelve primes as bases,
/// which is deterministic below 3.3 · 10²⁴).
pub fn is_prime(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for p in BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    if n < 37 * 37 {
        return true;
    }
    let mul = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    };
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    'bases: for a in BASES {
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

/// The largest prime `< n`, if any.
pub fn prime_below(n: u64) -> Option<u64> {
    (2..n).rev().find(|&k| is_prime(k))
}

/// The smallest prime `> n`, if one fits in a `u64`.
pub fn prime_above(n: u64) -> Option<u64> {
    (n.checked_add(1)?..=u64::MAX).find(|&k| is_prime(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's construction as written (every target visited in every
    /// round, an O(N · M) loop), to check the heap-ordered one against.
    fn populate_reference(perms: &[Permutation], m: usize) -> Vec<u32> {
        let mut table = vec![EMPTY; m];
        let max_w = u64::from(perms.iter().map(|p| p.weight).max().unwrap());
        let mut next: Vec<u64> = vec![0; perms.len()];
        let mut counts = vec![0u64; perms.len()];
        let mut filled = 0;
        let mut round = 1u64;
        while filled < m {
            for (i, p) in perms.iter().enumerate() {
                if filled == m {
                    break;
                }
                if p.weight == 0 || round * u64::from(p.weight) < counts[i] * max_w {
                    continue;
                }
                let mut c = ((p.offset + p.skip * next[i]) % m as u64) as usize;
                while table[c] != EMPTY {
                    next[i] += 1;
                    c = ((p.offset + p.skip * next[i]) % m as u64) as usize;
                }
                table[c] = i as u32;
                next[i] += 1;
                counts[i] += 1;
                filled += 1;
            }
            round += 1;
        }
        table
    }

    #[test]
    fn heap_order_matches_envoy_loop() {
        let m = 251u64;
        for n in 1..20u32 {
            for variant in 0..5u32 {
                let perms: Vec<Permutation> = (0..n)
                    .map(|i| {
                        let key = format!("t{n}-{i}-{variant}");
                        let w = match variant {
                            0 => 1,
                            1 => i % 4,
                            2 => 1 + i * 7 % 11,
                            3 => {
                                if i == 0 {
                                    1000
                                } else {
                                    1
                                }
                            }
                            _ => 1 + (i * i) % 5,
                        };
                        Permutation::for_key(key.as_bytes(), m, w)
                    })
                    .collect();
                if perms.iter().all(|p| p.weight == 0) {
                    continue;
                }
                assert_eq!(
                    populate(&perms, m as usize).unwrap(),
                    populate_reference(&perms, m as usize),
                    "n={n} variant={variant}"
                );
            }
        }
    }

    #[test]
    fn step_wraps() {
        assert_eq!(step(5, 3, 7), 1);
        assert_eq!(step(3, 3, 7), 6);
        assert_eq!(step(u32::MAX - 1, u32::MAX - 1, u32::MAX), u32::MAX - 2);
    }

    #[test]
    fn primes() {
        let mut sieve = vec![true; 100_000];
        sieve[0] = false;
        sieve[1] = false;
        for i in 2..sieve.len() {
            if sieve[i] {
                for j in (i * i..sieve.len()).step_by(i) {
                    sieve[j] = false;
                }
            }
        }
        for (n, &p) in sieve.iter().enumerate() {
            assert_eq!(is_prime(n as u64), p, "{n}");
        }
        assert!(is_prime(65537));
        assert!(is_prime((1 << 61) - 1));
        assert!(is_prime(18_446_744_073_709_551_557)); // 2^64 - 59
        assert!(!is_prime(u64::MAX));
        assert!(!is_prime(3_215_031_751)); // strong pseudoprime to 2, 3, 5, 7
        assert!(!is_prime(561) && !is_prime(41_041) && !is_prime(825_265));
        assert_eq!(prime_below(65536), Some(65521));
        assert_eq!(prime_above(65536), Some(65537));
        assert_eq!(prime_below(2), None);
        assert_eq!(prime_above(u64::MAX), None);
    }

    #[test]
    fn fastmod_matches_remainder() {
        for m in [2u64, 3, 7, 17, 251, 65537, 16_777_213, 1 << 24] {
            let t = MaglevTable::from_entries(vec![0; m as usize]);
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for k in [
                0,
                1,
                m - 1,
                m,
                m + 1,
                u64::MAX,
                u64::MAX - 1,
                u64::MAX / m * m,
            ] {
                assert_eq!(t.slot(k) as u64, k % m, "{k} % {m}");
            }
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                assert_eq!(t.slot(x) as u64, x % m, "{x} % {m}");
            }
        }
    }
}
