//! The 5-tuple that names a flow, and the fixed hash every node computes over it.
//!
//! The hash picks the Maglev slot for a flow that no table knows yet, so two
//! routing nodes must compute the same value for the same packet: a backup that
//! takes over maps a non-SYN packet of a connection it never saw to the same
//! target the owner chose. It is therefore a fixed, documented function of the
//! key's bytes — never `std`'s `DefaultHasher`, which may change between Rust
//! releases. The forwarder computes it for a flow its flow table does not
//! know and for the outer IPv6 flow label; its flow table itself uses a
//! cheaper signature with a random key of its own (`vipa_forwarder::flow`).
//!
//! # The hash
//!
//! The key is laid out as five little-endian `u64` words:
//!
//! | word | content |
//! |---|---|
//! | 0, 1 | source address as 16 bytes (IPv4 as an IPv4-mapped IPv6 address, `::ffff:a.b.c.d`) |
//! | 2, 3 | destination address, the same way |
//! | 4 | `src_port | dst_port << 16 | protocol << 32` |
//!
//! `h = SEED`; for each word `w`: `h = (h ^ w).wrapping_mul(K).rotate_left(31)`;
//! then the 64-bit finaliser of MurmurHash3 (`fmix64`) is applied to `h`.
//! `SEED = 0x9E37_79B9_7F4A_7C15`, `K = 0xFF51_AFD7_ED55_8CCD`.
//! Changing any of this changes which target every unknown flow maps to: it is
//! part of the cluster protocol and is pinned by a test with stored values.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const K: u64 = 0xFF51_AFD7_ED55_8CCD;

/// A flow's identity as seen by the forwarder: client → VIPA:port.
///
/// Addresses are stored as 16 bytes; an IPv4 address is IPv4-mapped, so a
/// key is one fixed-size value whatever the family.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

#[inline]
fn mapped_v4(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&addr);
    out
}

impl FlowKey {
    /// A key for an IPv4 flow, from the raw address bytes as they stand in the header.
    #[inline]
    pub fn v4(src: [u8; 4], dst: [u8; 4], protocol: u8, src_port: u16, dst_port: u16) -> Self {
        FlowKey {
            src: mapped_v4(src),
            dst: mapped_v4(dst),
            src_port,
            dst_port,
            protocol,
        }
    }

    /// A key for an IPv6 flow.
    #[inline]
    pub fn v6(src: [u8; 16], dst: [u8; 16], protocol: u8, src_port: u16, dst_port: u16) -> Self {
        FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            protocol,
        }
    }

    /// A key from `std` addresses (slow path, tests, tools). Mixed families are
    /// not a flow; the IPv6 form of an IPv4 address is used for both then.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8, src_port: u16, dst_port: u16) -> Self {
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(v4) => mapped_v4(v4.octets()),
            IpAddr::V6(v6) => v6.octets(),
        };
        FlowKey {
            src: bytes(src),
            dst: bytes(dst),
            src_port,
            dst_port,
            protocol,
        }
    }

    /// The source address, unmapped back to IPv4 when it was one.
    pub fn src_addr(&self) -> IpAddr {
        unmap(self.src)
    }

    /// The destination address, unmapped back to IPv4 when it was one.
    pub fn dst_addr(&self) -> IpAddr {
        unmap(self.dst)
    }

    /// The fixed flow hash described in the module documentation.
    #[inline]
    pub fn hash(&self) -> u64 {
        hash_words([
            u64::from_le_bytes(self.src[..8].try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(self.src[8..].try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(self.dst[..8].try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(self.dst[8..].try_into().unwrap_or([0; 8])),
            ports_word(self.protocol, self.src_port, self.dst_port),
        ])
    }

    /// `FlowKey::v4(src, dst, protocol, src_port, dst_port).hash()`, computed
    /// from the header fields in registers, without building the key (the
    /// packet path: a key written to memory byte by byte and read back as
    /// words stalls store forwarding).
    #[inline(always)]
    pub fn hash_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, src_port: u16, dst_port: u16) -> u64 {
        // The mapped address `::ffff:a.b.c.d` as two little-endian words:
        // 0, then bytes 0, 0, ff, ff, a, b, c, d.
        let mapped = |a: [u8; 4]| 0xffff_0000u64 | (u64::from(u32::from_le_bytes(a)) << 32);
        hash_words([
            0,
            mapped(src),
            0,
            mapped(dst),
            ports_word(protocol, src_port, dst_port),
        ])
    }

    /// `FlowKey::v6(src, dst, protocol, src_port, dst_port).hash()`, without
    /// building the key (see [`FlowKey::hash_v4`]).
    #[inline(always)]
    pub fn hash_v6(
        src: &[u8; 16],
        dst: &[u8; 16],
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    ) -> u64 {
        let ([s0, s1], [d0, d1]) = (address_words(src), address_words(dst));
        hash_words([s0, s1, d0, d1, ports_word(protocol, src_port, dst_port)])
    }
}

/// A 16-byte address as two little-endian words (words 0–1 or 2–3 of the
/// hash input).
#[inline(always)]
pub fn address_words(a: &[u8; 16]) -> [u64; 2] {
    let half = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&a[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [half(0), half(1)]
}

/// Word 4 of the hash input: the ports and the protocol in one word.
#[inline(always)]
pub fn ports_word(protocol: u8, src_port: u16, dst_port: u16) -> u64 {
    u64::from(src_port) | u64::from(dst_port) << 16 | u64::from(protocol) << 32
}

/// The hash of the five input words (module documentation).
#[inline(always)]
fn hash_words(words: [u64; 5]) -> u64 {
    let mut h = SEED;
    for w in words {
        h = (h ^ w).wrapping_mul(K).rotate_left(31);
    }
    fmix64(h)
}

fn unmap(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    k ^= k >> 33;
    k = k.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    k ^= k >> 33;
    k
}

impl From<(Ipv4Addr, Ipv4Addr, u8, u16, u16)> for FlowKey {
    fn from((s, d, p, sp, dp): (Ipv4Addr, Ipv4Addr, u8, u16, u16)) -> Self {
        FlowKey::v4(s.octets(), d.octets(), p, sp, dp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_is_mapped_and_round_trips() {
        let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 80);
        assert_eq!(k.src_addr(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(k.dst_addr(), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
        let n = FlowKey::new(k.src_addr(), k.dst_addr(), 6, 40000, 80);
        assert_eq!(k, n);
        assert_eq!(k.hash(), n.hash());
    }

    /// Stored values: if this fails, the hash changed, and with it the target
    /// every unknown flow maps to on every node. Do not update casually.
    #[test]
    fn hash_is_pinned() {
        let k = FlowKey::v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 80);
        let v6 = FlowKey::new(
            "2001:db8:1::7".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
            17,
            5353,
            53,
        );
        assert_eq!(k.hash(), PINNED_V4);
        assert_eq!(v6.hash(), PINNED_V6);
        assert_eq!(FlowKey::default().hash(), PINNED_ZERO);
    }

    #[test]
    fn hash_from_fields_is_the_key_hash() {
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            let (s4, d4) = ([b[0], b[1], b[2], b[3]], [b[4], b[5], b[6], b[7]]);
            let (p, sp, dp) = (b[2], (x >> 8) as u16, (x >> 40) as u16);
            assert_eq!(
                FlowKey::hash_v4(s4, d4, p, sp, dp),
                FlowKey::v4(s4, d4, p, sp, dp).hash()
            );
            let mut s6 = [0u8; 16];
            let mut d6 = [0u8; 16];
            for i in 0..16 {
                s6[i] = b[i % 8].rotate_left(i as u32);
                d6[i] = b[(i + 3) % 8] ^ i as u8;
            }
            assert_eq!(
                FlowKey::hash_v6(&s6, &d6, p, sp, dp),
                FlowKey::v6(s6, d6, p, sp, dp).hash()
            );
        }
        assert_eq!(
            FlowKey::hash_v4([198, 51, 100, 7], [192, 0, 2, 10], 6, 40000, 80),
            PINNED_V4
        );
    }

    const PINNED_V4: u64 = 13189221270991454718;
    const PINNED_V6: u64 = 8898599789363573208;
    const PINNED_ZERO: u64 = 17083365109730742828;

    #[test]
    fn every_field_changes_the_hash() {
        let base = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 6, 1000, 80);
        let h = base.hash();
        let mut k = base;
        k.src_port = 1001;
        assert_ne!(k.hash(), h);
        let mut k = base;
        k.dst_port = 81;
        assert_ne!(k.hash(), h);
        let mut k = base;
        k.protocol = 17;
        assert_ne!(k.hash(), h);
        let mut k = base;
        k.src[15] ^= 1;
        assert_ne!(k.hash(), h);
        let mut k = base;
        k.dst[0] ^= 1;
        assert_ne!(k.hash(), h);
    }
}
