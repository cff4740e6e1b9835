//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! [`data`], [`combine`] and the pseudo-header helpers return the one's
//! complement *sum*, not yet inverted; a header stores `!sum`. A received
//! header is valid when the sum over it, checksum field included, is
//! `0xFFFF`.
//!
//! [`data`] adds 64 bits at a time with an end-around carry and folds at the
//! end. That is correct because the one's complement sum is independent of
//! byte order and of the word size used to add (RFC 1071 §2 (B), (C)); the
//! words are read in native order and the folded result is swapped back to
//! network order once.
//!
//! Nothing here panics, whatever the input.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit end-around-carry accumulator to 16 bits.
#[inline]
const fn fold64(sum: u64) -> u16 {
    let (s, c) = (sum as u32).overflowing_add((sum >> 32) as u32);
    let mut s = s as u64 + c as u64;
    // At most two more folds bring any 33-bit value to 16 bits.
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The one's complement sum of `bytes` as big-endian 16-bit words; an odd
/// final byte is padded with a zero byte (RFC 1071 §4.1).
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let (s, c) = acc.overflowing_add(u64::from_ne_bytes(word));
        // No overflow here: after a carry `s` is at most 2^64 - 2.
        acc = s + c as u64;
    }
    let mut rest = chunks.remainder();
    let mut tail: u64 = 0;
    while let [a, b, more @ ..] = rest {
        tail += u16::from_ne_bytes([*a, *b]) as u64;
        rest = more;
    }
    if let [a] = rest {
        tail += u16::from_ne_bytes([*a, 0]) as u64;
    }
    let (s, c) = acc.overflowing_add(tail);
    acc = s + c as u64;
    // Native-order words summed give the native-order result; swap it to
    // network order (a no-op on big-endian machines).
    u16::from_be(fold64(acc))
}

/// The one's complement sum of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for &s in sums {
        acc += s as u64;
    }
    fold64(acc)
}

/// The sum of the IPv4 pseudo-header (RFC 793 §3.1, RFC 768): source,
/// destination, zero, protocol, and the TCP/UDP length.
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, length: u32) -> u16 {
    let s = u32::from_be_bytes(src.octets()) as u64;
    let d = u32::from_be_bytes(dst.octets()) as u64;
    let acc = (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + proto as u64
        + (length >> 16) as u64
        + (length & 0xffff) as u64;
    fold64(acc)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// the 32-bit upper-layer packet length, three zero bytes and next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let s = u128::from_be_bytes(src.octets());
    let d = u128::from_be_bytes(dst.octets());
    let mut acc: u64 = 0;
    for v in [s, d] {
        acc += (v >> 96) as u32 as u64;
        acc += (v >> 64) as u32 as u64;
        acc += (v >> 32) as u32 as u64;
        acc += v as u32 as u64;
    }
    acc += length as u64 + next_header as u64;
    fold64(acc)
}

/// Updates a stored checksum after one 16-bit word of the data changed from
/// `old_word` to `new_word` (RFC 1624).
///
/// RFC 1624 §3: "The problem is avoided by not assuming this property. The
/// correct equation is given below: HC' = ~(C + (-m) + m') = ~(~HC + ~m +
/// m')". Unlike RFC 1141's `HC + m + ~m'`, this never produces `0xFFFF`
/// (`~(+0)`): one's complement addition of inputs that are not all zero
/// never yields +0, so the result equals a recomputation from scratch for any
/// data that is not entirely zero (every IP header has a non-zero version).
///
/// The sum below uses end-around carries throughout, so the case raised by
/// RFC 1624 erratum 4782 (`m == m'`, `HC == 0`) also gives back `0x0000`.
#[inline]
pub const fn update16(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    let acc = (!old_checksum) as u64 + (!old_word) as u64 + new_word as u64;
    !fold64(acc)
}

/// [`update16`] for a 32-bit field (an IPv4 address, a sequence number):
/// both halves are updated in one sum.
#[inline]
pub const fn update32(old_checksum: u16, old_value: u32, new_value: u32) -> u16 {
    let acc = (!old_checksum) as u64
        + (!(old_value >> 16) as u16) as u64
        + (!(old_value as u16)) as u64
        + (new_value >> 16) as u64
        + (new_value & 0xffff) as u64;
    !fold64(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Word-by-word reference implementation.
    fn reference(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], 0])
            };
            acc += w as u32;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// A tiny deterministic generator, so tests need no crate.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 16
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(data(&bytes[..4]), 0xf204);
        assert_eq!(combine(&[data(&bytes[..4]), data(&bytes[4..])]), 0xddf2);
    }

    #[test]
    fn ipv4_header_from_a_capture() {
        // 192.168.0.1 -> 192.168.0.199, checksum b861 (a classic example).
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(data(&hdr), 0xffff);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(!data(&zeroed), 0xb861);
    }

    #[test]
    fn matches_reference_on_all_lengths_and_alignments() {
        let mut rng = Lcg(1);
        let mut buf = [0u8; 300];
        for b in buf.iter_mut() {
            *b = rng.next() as u8;
        }
        for start in 0..9 {
            for end in start..buf.len() {
                assert_eq!(data(&buf[start..end]), reference(&buf[start..end]));
            }
        }
        let ones = [0xffu8; 1001];
        assert_eq!(data(&ones), reference(&ones));
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0x12]), 0x1200);
    }

    #[test]
    fn pseudo_headers() {
        let s = Ipv4Addr::new(10, 0, 0, 1);
        let d = Ipv4Addr::new(10, 0, 0, 2);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&s.octets());
        bytes.extend_from_slice(&d.octets());
        bytes.extend_from_slice(&[0, 6, 0x01, 0x02]);
        assert_eq!(pseudo_header_v4(&s, &d, 6, 0x0102), reference(&bytes));

        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "fe80::ffff:1234:5678:9abc".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&s.octets());
        bytes.extend_from_slice(&d.octets());
        bytes.extend_from_slice(&0x0001_2345u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(pseudo_header_v6(&s, &d, 58, 0x0001_2345), reference(&bytes));
    }

    #[test]
    fn rfc1624_section4_example() {
        // RFC 1624 §4: the other header words sum to 0xCD7A, m = 0x5555
        // changes to m' = 0x3285. HC = 0xDD2F; the correct HC' is 0x0000,
        // where RFC 1141's equation gives 0xFFFF.
        let hc = !combine(&[0xcd7a, 0x5555]);
        assert_eq!(hc, 0xdd2f);
        assert_eq!(update16(hc, 0x5555, 0x3285), 0x0000);
        assert_eq!(!combine(&[0xcd7a, 0x3285]), 0x0000);
    }

    #[test]
    fn rfc1624_erratum_4782_case() {
        // m == m' and HC == 0: the checksum must stay 0x0000, not 0xFFFF.
        assert_eq!(update16(0x0000, 0x5555, 0x5555), 0x0000);
        for m in [0x0000, 0x0001, 0x5555, 0xfffe, 0xffff] {
            for hc in [0x0000, 0x1234, 0xfffe] {
                assert_eq!(update16(hc, m, m), hc);
            }
        }
    }

    /// Builds `words` (checksum at index 0), changes `words[i]`, and checks
    /// that the incremental update equals the checksum recomputed.
    fn check_update(mut words: Vec<u16>, i: usize, new: u16) {
        words[0] = 0;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let hc = !data(&bytes);
        let old = words[i];
        words[i] = new;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let full = !data(&bytes);
        let all_zero = words.iter().all(|&w| w == 0);
        let inc = update16(hc, old, new);
        if all_zero {
            // The one case RFC 1624 excludes: recomputation over all-zero
            // data gives ~(+0) = 0xFFFF, the update gives ~(-0) = 0x0000.
            // Both are the same number in one's complement.
            assert_eq!(full, 0xffff);
            assert_eq!(inc, 0x0000);
        } else {
            assert_eq!(inc, full, "words {words:04x?} i {i} old {old:04x}");
        }
    }

    #[test]
    fn update16_matches_recomputation_at_corners() {
        let corners = [0x0000u16, 0x0001, 0x00ff, 0x7fff, 0x8000, 0xfffe, 0xffff];
        for &a in &corners {
            for &b in &corners {
                for &old in &corners {
                    for &new in &corners {
                        check_update(vec![0, a, b, old], 3, new);
                    }
                }
            }
        }
        // A header that sums to 0xFFFF has stored checksum 0x0000 (HC = +0).
        check_update(vec![0, 0xfff0, 0x000f], 1, 0xfff0);
        check_update(vec![0, 0xfff0, 0x000f], 1, 0x1234);
        check_update(vec![0, 0xffff], 1, 0x0000);
        check_update(vec![0, 0x0000], 1, 0xffff);
    }

    #[test]
    fn update16_and_update32_match_recomputation_random() {
        let mut rng = Lcg(7);
        for _ in 0..20_000 {
            let n = 2 + (rng.next() % 12) as usize;
            let words: Vec<u16> = (0..n).map(|_| rng.next() as u16).collect();
            let i = 1 + (rng.next() as usize % (n - 1));
            check_update(words.clone(), i, rng.next() as u16);

            // update32 on words i, i+1.
            if i + 1 < n {
                let mut w = words;
                w[0] = 0;
                let b: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
                let hc = !data(&b);
                let old = (w[i] as u32) << 16 | w[i + 1] as u32;
                let new = rng.next() as u32;
                w[i] = (new >> 16) as u16;
                w[i + 1] = new as u16;
                let b: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
                if w.iter().any(|&x| x != 0) {
                    assert_eq!(update32(hc, old, new), !data(&b));
                }
            }
        }
    }
}
