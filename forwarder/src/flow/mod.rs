//! The worker-local flow table: flow signature → target, lossy, bounded,
//! lock-free because nobody else touches it.
//!
//! # Design
//!
//! In the manner of VPP's load-balancer sticky table (`lbhash.h`): the table
//! is an array of 64-byte buckets, one cache line each, holding four entries.
//! An entry is the flow's 64-bit signature, the index of its target and the
//! second at which it expires. A lookup touches exactly one cache line,
//! which the worker prefetches a few packets ahead.
//!
//! * **Lossy.** When all four entries of a bucket are live, an insert evicts
//!   the one closest to expiry and counts it. An evicted flow is not lost: the
//!   next packet finds its target again in the Maglev table, which maps it to
//!   the same target unless the target set changed in between.
//! * **Lazy expiry.** Nothing sweeps the table. An entry whose expiry is in
//!   the past is free; every hit pushes the expiry forward by the idle timeout.
//! * **Bounded memory.** The capacity is fixed at start (rounded up to a power
//!   of two of buckets): `capacity / 4 × 64` bytes, never more.
//! * **Signatures, not keys.** Entries hold a 64-bit signature of the
//!   5-tuple, not the 37-byte 5-tuple, so a bucket fits a cache line. Two
//!   live flows share a signature with probability about n²/2⁶⁵ (n = 10
//!   million: 3 × 10⁻⁶ for the whole table); the cost of such a collision is
//!   one flow routed like another.
//! * **Keyed signatures.** The signature is not the cluster's flow hash
//!   ([`vipa_proto::flowkey`], which must be the same on every node and is
//!   therefore public): each table draws a random key when it is made, so
//!   nobody outside can choose 5-tuples that crowd one bucket and evict a
//!   victim's flows. It is also cheaper: two 64 × 64 → 128-bit multiplies
//!   (the folded multiply of wyhash), where the cluster hash chains six
//!   multiplies on every packet. The cluster hash is computed only where
//!   it decides something: a flow the table does not know (CRT, Maglev) and
//!   the IPv6 flow label of the outer header.

use vipa_proto::flowkey::{address_words, ports_word};

/// Entries per bucket.
pub const WAYS: usize = 4;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u64; WAYS],
    target: [u32; WAYS],
    /// Second at which the entry stops being valid; 0 = never used.
    expires: [u32; WAYS],
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 64);

const EMPTY: Bucket = Bucket {
    sig: [0; WAYS],
    target: [0; WAYS],
    expires: [0; WAYS],
};

/// What an insert did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inserted {
    /// Into a free (or expired) entry, or over the same flow's entry.
    Free,
    /// By evicting a live flow.
    Evicted,
}

/// A worker's flow table.
pub struct FlowTable {
    buckets: Vec<Bucket>,
    mask: usize,
    idle_timeout: u32,
    /// The signature key (see the module docs).
    key: SignatureKey,
}

/// The key of a table's flow signatures: six random words.
pub type SignatureKey = [u64; 6];

/// The 128-bit product of `a` and `b`, its halves XORed (wyhash's `mum`):
/// every output bit depends on every input bit of both.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A key from the operating system's randomness (through `std`'s
/// `RandomState`, which seeds its SipHash keys from it).
fn random_key() -> SignatureKey {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let mut key = [0u64; 6];
    for (i, k) in key.iter_mut().enumerate() {
        *k = state.hash_one(i);
    }
    key
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("capacity", &self.capacity())
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl FlowTable {
    /// A table for at least `capacity` flows (rounded up so the bucket count is
    /// a power of two) that forgets a flow after `idle_timeout` seconds without a packet.
    /// Its signatures use a random key.
    pub fn new(capacity: usize, idle_timeout: u32) -> Self {
        Self::with_key(capacity, idle_timeout, random_key())
    }

    /// [`FlowTable::new`] with a given signature key (tests, reproducible
    /// replays).
    pub fn with_key(capacity: usize, idle_timeout: u32, key: SignatureKey) -> Self {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        FlowTable {
            buckets: vec![EMPTY; buckets],
            mask: buckets - 1,
            idle_timeout: idle_timeout.max(1),
            key,
        }
    }

    /// The signature of an IPv4 flow, from the header fields as they stand
    /// (addresses in network order).
    #[inline(always)]
    pub fn signature_v4(
        &self,
        src: [u8; 4],
        dst: [u8; 4],
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    ) -> u64 {
        let k = &self.key;
        let addrs = u64::from(u32::from_le_bytes(src)) | u64::from(u32::from_le_bytes(dst)) << 32;
        let rest = ports_word(protocol, src_port, dst_port);
        let t = folded_multiply(addrs ^ k[0], rest ^ k[1]);
        folded_multiply(t ^ k[4], k[5] | 1)
    }

    /// The signature of an IPv6 flow.
    #[inline(always)]
    pub fn signature_v6(
        &self,
        src: &[u8; 16],
        dst: &[u8; 16],
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    ) -> u64 {
        let k = &self.key;
        let ([s0, s1], [d0, d1]) = (address_words(src), address_words(dst));
        let t = folded_multiply(s0 ^ k[0], s1 ^ k[1]) ^ folded_multiply(d0 ^ k[2], d1 ^ k[3]);
        let rest = ports_word(protocol, src_port, dst_port);
        folded_multiply(t ^ rest ^ k[4], k[5] | 1)
    }

    /// Number of entries (the most flows the table can hold).
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// Memory held by the table, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }

    #[inline(always)]
    fn index(&self, sig: u64) -> usize {
        // The signature's last step is a folded multiply: its low bits
        // depend on every input bit, like the high ones.
        sig as usize & self.mask
    }

    /// Starts loading the bucket of signature `sig` into the cache.
    #[inline(always)]
    pub fn prefetch(&self, sig: u64) {
        // No bounds check: a prefetch never faults, and the index is
        // masked into the table anyway.
        prefetch_read(
            self.buckets
                .as_ptr()
                .wrapping_add(self.index(sig))
                .cast::<u8>(),
        );
    }

    /// The target of the flow with signature `sig`, if it is live at `now`
    /// (seconds); a hit keeps the flow alive for another idle timeout.
    #[inline]
    pub fn lookup(&mut self, sig: u64, now: u32) -> Option<u32> {
        let timeout = self.idle_timeout;
        let i = self.index(sig);
        let b = &mut self.buckets[i];
        // All four ways compared without a branch each (which way holds a
        // flow is random, so per-way branches mispredict). At most one way
        // holds a signature ([`FlowTable::insert`] reuses the way of the
        // same signature, live or not), so the match's expiry alone
        // decides.
        let mut hits = 0u32;
        for w in 0..WAYS {
            hits |= u32::from(b.sig[w] == sig) << w;
        }
        if hits == 0 {
            return None;
        }
        let w = hits.trailing_zeros() as usize & (WAYS - 1);
        if b.expires[w] <= now {
            return None;
        }
        b.expires[w] = now.saturating_add(timeout);
        Some(b.target[w])
    }

    /// Records that the flow with signature `sig` goes to `target`.
    #[inline]
    pub fn insert(&mut self, sig: u64, target: u32, now: u32) -> Inserted {
        let expires = now.saturating_add(self.idle_timeout);
        let i = self.index(sig);
        let b = &mut self.buckets[i];
        // The same flow's entry first (so a flow never has two), then a free
        // or expired one, else the live entry closest to expiry.
        let (victim, outcome) = if let Some(w) = (0..WAYS).find(|&w| b.sig[w] == sig) {
            (w, Inserted::Free)
        } else if let Some(w) = (0..WAYS).find(|&w| b.expires[w] <= now) {
            (w, Inserted::Free)
        } else {
            let w = (0..WAYS).min_by_key(|&w| b.expires[w]).unwrap_or(0);
            (w, Inserted::Evicted)
        };
        b.sig[victim] = sig;
        b.target[victim] = target;
        b.expires[victim] = expires;
        outcome
    }

    /// Forgets the flow with signature `sig`.
    pub fn remove(&mut self, sig: u64) {
        let i = self.index(sig);
        let b = &mut self.buckets[i];
        for w in 0..WAYS {
            if b.sig[w] == sig {
                b.expires[w] = 0;
            }
        }
    }

    /// Counts live entries at `now` (walks the whole table: not for the packet path).
    pub fn live(&self, now: u32) -> usize {
        self.buckets
            .iter()
            .map(|b| b.expires.iter().filter(|&&e| e > now).count())
            .sum()
    }

    /// Forgets every flow (e.g. when the target table is replaced).
    pub fn clear(&mut self) {
        self.buckets.fill(EMPTY);
    }
}

#[inline(always)]
fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the address;
    // `p` points into the table's own allocation anyway. SSE is part of the
    // x86_64 baseline, so the instruction exists on every target CPU.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_idle_expiry() {
        let mut t = FlowTable::new(1024, 10);
        assert_eq!(t.lookup(42, 1), None);
        assert_eq!(t.insert(42, 7, 1), Inserted::Free);
        assert_eq!(t.lookup(42, 5), Some(7));
        // The hit at 5 extended the life to 15.
        assert_eq!(t.lookup(42, 14), Some(7));
        assert_eq!(t.lookup(42, 23), Some(7));
        assert_eq!(t.lookup(42, 33), None);
        assert_eq!(t.live(33), 0);
    }

    #[test]
    fn reinsert_overwrites_same_flow() {
        let mut t = FlowTable::new(4, 10);
        t.insert(9, 1, 1);
        assert_eq!(t.insert(9, 2, 1), Inserted::Free);
        assert_eq!(t.lookup(9, 2), Some(2));
        assert_eq!(t.live(2), 1);
    }

    #[test]
    fn full_bucket_evicts_oldest_and_memory_is_bounded() {
        // One bucket: capacity 4.
        let mut t = FlowTable::new(4, 100);
        assert_eq!(t.capacity(), 4);
        assert_eq!(t.memory_bytes(), 64);
        for (i, h) in [1u64, 2, 3, 4].iter().enumerate() {
            assert_eq!(t.insert(*h, i as u32, 10 + i as u32), Inserted::Free);
        }
        assert_eq!(t.insert(5, 9, 20), Inserted::Evicted);
        assert_eq!(t.lookup(1, 20), None, "the oldest flow is the one evicted");
        assert_eq!(t.lookup(5, 20), Some(9));
        assert_eq!(t.live(20), 4);
    }

    #[test]
    fn expired_entries_are_reused_before_evicting() {
        let mut t = FlowTable::new(4, 5);
        for h in 1..=4u64 {
            t.insert(h, 0, 1);
        }
        assert_eq!(t.insert(99, 3, 10), Inserted::Free);
    }

    #[test]
    fn remove_and_clear() {
        let mut t = FlowTable::new(64, 5);
        t.insert(1, 1, 1);
        t.insert(2, 2, 1);
        t.remove(1);
        assert_eq!(t.lookup(1, 1), None);
        assert_eq!(t.lookup(2, 1), Some(2));
        t.clear();
        assert_eq!(t.live(1), 0);
    }

    /// Flows as a load test makes them: one VIPA service, clients from a
    /// few addresses, consecutive source ports.
    fn structured_flows(n: usize) -> impl Iterator<Item = ([u8; 4], u16)> {
        (0..n).map(|i| {
            let i = i as u32;
            let addr = (0xC612_0000u32 | (i >> 15)).to_be_bytes();
            (addr, 1024 + (i & 0x7FFF) as u16)
        })
    }

    #[test]
    fn signatures_are_keyed_and_fixed_per_table() {
        let key = [1, 2, 3, 4, 5, 6];
        let a = FlowTable::with_key(1024, 10, key);
        let b = FlowTable::with_key(1024, 10, key);
        let sig = |t: &FlowTable| t.signature_v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 80);
        assert_eq!(sig(&a), sig(&b), "same key, same signature");
        // Each field matters, and source and destination are not
        // interchangeable.
        let base = sig(&a);
        for (src, dst, proto, sport, dport) in [
            ([198, 51, 100, 8], [192, 0, 2, 10], 6, 40000, 80),
            ([198, 51, 100, 7], [192, 0, 2, 11], 6, 40000, 80),
            ([198, 51, 100, 7], [192, 0, 2, 10], 17, 40000, 80),
            ([198, 51, 100, 7], [192, 0, 2, 10], 6, 40001, 80),
            ([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 81),
            ([192, 0, 2, 10], [198, 51, 100, 7], 6, 80, 40000),
        ] {
            assert_ne!(a.signature_v4(src, dst, proto, sport, dport), base);
        }
        let v6 = |t: &FlowTable, last: u8| {
            let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            src[15] = last;
            let dst = [
                0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x30,
            ];
            t.signature_v6(&src, &dst, 6, 40000, 443)
        };
        assert_eq!(v6(&a, 7), v6(&b, 7));
        assert_ne!(v6(&a, 7), v6(&a, 8));
        // Tables made with new() draw their own keys.
        let (c, d) = (FlowTable::new(1024, 10), FlowTable::new(1024, 10));
        assert_ne!(sig(&c), sig(&d), "two random keys gave the same signature");
    }

    #[test]
    fn structured_flows_get_distinct_signatures_and_spread_over_the_buckets() {
        let n = 1 << 17;
        let mut t = FlowTable::new(8 * n, 1000);
        let vipa = [192, 0, 2, 10];
        let sigs: Vec<u64> = structured_flows(n)
            .map(|(src, port)| t.signature_v4(src, vipa, 6, port, 443))
            .collect();
        let mut sorted = sigs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), n, "two flows share a signature");
        for &s in &sigs {
            t.insert(s, 1, 1);
        }
        let found = sigs.iter().filter(|s| t.lookup(**s, 2).is_some()).count();
        // Half a flow per four-way bucket: a uniform spread loses only the
        // Poisson(0.5) tail beyond 4 (about 0.02 % of the flows); a
        // signature whose bucket bits follow the source port in steps
        // would pile flows into a fraction of the buckets.
        assert!(found * 1000 / n >= 998, "kept {found} of {n}");
    }

    #[test]
    fn holds_most_of_its_capacity_with_random_hashes() {
        let mut t = FlowTable::new(1 << 16, 1000);
        let n = t.capacity() / 2;
        let mut x: u64 = 0x1234_5678;
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            hashes.push(x);
            t.insert(x, 1, 1);
        }
        let found = hashes.iter().filter(|h| t.lookup(**h, 2).is_some()).count();
        // Four-way buckets at 50 % load lose only the flows of buckets that
        // drew more than four (Poisson(2) tail: about 2 %).
        assert!(found * 100 / n >= 95, "kept {found} of {n}");
    }
}
