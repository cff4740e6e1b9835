//! GRE (RFC 2784) with the key and sequence number extensions (RFC 2890).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C|1|K|S|s| Reserved0 |  Ver  |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```
//!
//! Bit 0 is C (checksum present); bits 2 and 3 are RFC 2890's K and S. The
//! optional words follow in that order: checksum and reserved1 when C, key
//! when K, sequence number when S, so the header is 4, 8, 12 or 16 bytes.
//!
//! RFC 2784 §2.5: "A receiver MUST discard a packet where any of bits 1-5
//! are non-zero, unless that receiver implements RFC 1701. Bits 6-12 are
//! reserved for future use. These bits MUST be sent as zero and MUST be
//! ignored on receipt." vipa implements RFC 2890 (bits 2 and 3) but not the
//! rest of RFC 1701, so bits 1, 4 and 5 set are [`Error::Malformed`], and
//! bits 6-12 are ignored (never written). RFC 2784 §2.3.1: "The Version
//! Number field MUST contain the value zero"; any other version (PPTP's
//! enhanced GRE is 1) is [`Error::Unsupported`].
//!
//! The forwarder emits the plain 4-byte header: no checksum, key or
//! sequence number (DESIGN.md §4).
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter,
//! [`Packet::payload`], checksum verification or [`Repr::parse`] panics,
//! whatever the bytes. `check_len` guarantees that the buffer holds the
//! whole header the flags announce. Setters may panic if the buffer is
//! shorter than the field they write.

use super::{checksum, Error, EtherType, Result};

mod field {
    use core::ops::Range;

    pub const FLAGS_VER: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
    pub const CHECKSUM: Range<usize> = 4..6;
    pub const RESERVED1: Range<usize> = 6..8;
}

/// Length of the header without optional fields.
pub const HEADER_LEN: usize = field::PROTOCOL.end;

/// IP protocol number of GRE.
pub const PROTOCOL: u8 = 47;

const FLAG_C: u16 = 0x8000;
const FLAG_K: u16 = 0x2000;
const FLAG_S: u16 = 0x1000;
/// Bits 1, 4 and 5: RFC 1701's routing-present, strict-source-route and the
/// top recursion-control bit.
const RFC1701_BITS: u16 = 0x4000 | 0x0800 | 0x0400;
/// Bits 6-12: ignored on receipt.
const RESERVED_IGNORED: u16 = 0x03f8;
const VERSION_MASK: u16 = 0x0007;

/// A view over a GRE packet (header and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(d: &[u8]) -> u16 {
    u16::from_be_bytes([d[0], d[1]])
}

#[inline]
fn be32(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and calls [`Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in order: 4 bytes ([`Error::Truncated`]), version 0
    /// ([`Error::Unsupported`]), bits 1, 4, 5 clear ([`Error::Malformed`]),
    /// and the optional fields present ([`Error::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 0 {
            return Err(Error::Unsupported);
        }
        if self.flags_ver() & RFC1701_BITS != 0 {
            return Err(Error::Malformed);
        }
        if len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn flags_ver(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLAGS_VER])
    }

    /// C bit: checksum and reserved1 present.
    #[inline]
    pub fn checksum_present(&self) -> bool {
        self.flags_ver() & FLAG_C != 0
    }

    /// K bit (RFC 2890): key present.
    #[inline]
    pub fn key_present(&self) -> bool {
        self.flags_ver() & FLAG_K != 0
    }

    /// S bit (RFC 2890): sequence number present.
    #[inline]
    pub fn seq_present(&self) -> bool {
        self.flags_ver() & FLAG_S != 0
    }

    /// Version (must be 0).
    #[inline]
    pub fn version(&self) -> u8 {
        (self.flags_ver() & VERSION_MASK) as u8
    }

    /// Bits 6-12 of the first word, as a 7-bit number (ignored on receipt).
    #[inline]
    pub fn reserved0(&self) -> u16 {
        (self.flags_ver() & RESERVED_IGNORED) >> 3
    }

    /// Protocol type of the payload (an ethertype).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(be16(&self.buffer.as_ref()[field::PROTOCOL]))
    }

    /// 4 + 4 × (C + K + S).
    #[inline]
    pub fn header_len(&self) -> usize {
        let f = self.flags_ver();
        HEADER_LEN
            + 4 * ((f & FLAG_C != 0) as usize
                + (f & FLAG_K != 0) as usize
                + (f & FLAG_S != 0) as usize)
    }

    #[inline]
    fn key_offset(&self) -> usize {
        HEADER_LEN + 4 * self.checksum_present() as usize
    }

    #[inline]
    fn seq_offset(&self) -> usize {
        self.key_offset() + 4 * self.key_present() as usize
    }

    /// The checksum field, if C is set.
    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        if !self.checksum_present() {
            return None;
        }
        self.buffer.as_ref().get(field::CHECKSUM).map(be16)
    }

    /// The key, if K is set.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        if !self.key_present() {
            return None;
        }
        let o = self.key_offset();
        self.buffer.as_ref().get(o..o + 4).map(be32)
    }

    /// The sequence number, if S is set.
    #[inline]
    pub fn sequence(&self) -> Option<u32> {
        if !self.seq_present() {
            return None;
        }
        let o = self.seq_offset();
        self.buffer.as_ref().get(o..o + 4).map(be32)
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Whether the checksum (over header and payload, RFC 2784 §2.5) is
    /// right; `true` when C is clear.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(hl..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_flags_ver(&mut self, value: u16) {
        self.buffer.as_mut()[field::FLAGS_VER].copy_from_slice(&value.to_be_bytes())
    }

    /// Writes the first word: C, K, S, version 0, every reserved bit 0.
    /// Set the flags before the optional fields: they decide the offsets.
    #[inline]
    pub fn set_flags(&mut self, checksum: bool, key: bool, seq: bool) {
        let mut f = 0;
        if checksum {
            f |= FLAG_C;
        }
        if key {
            f |= FLAG_K;
        }
        if seq {
            f |= FLAG_S;
        }
        self.set_flags_ver(f)
    }

    /// Sets the version bits.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let f = self.flags_ver();
        self.set_flags_ver((f & !VERSION_MASK) | (value as u16 & VERSION_MASK))
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&u16::from(value).to_be_bytes())
    }

    /// Sets the checksum field and zeroes reserved1 (C must be set).
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
        self.buffer.as_mut()[field::RESERVED1].copy_from_slice(&[0, 0]);
    }

    /// Sets the key (K must be set).
    #[inline]
    pub fn set_key(&mut self, value: u32) {
        let o = self.key_offset();
        self.buffer.as_mut()[o..o + 4].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the sequence number (S must be set).
    #[inline]
    pub fn set_sequence(&mut self, value: u32) {
        let o = self.seq_offset();
        self.buffer.as_mut()[o..o + 4].copy_from_slice(&value.to_be_bytes())
    }

    /// Computes and stores the checksum over the whole buffer (C must be
    /// set).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A GRE header, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Protocol type of the payload.
    pub protocol_type: EtherType,
    /// Key (RFC 2890), if present.
    pub key: Option<u32>,
    /// Sequence number (RFC 2890), if present.
    pub sequence: Option<u32>,
    /// Whether a checksum is present.
    pub checksum: bool,
}

impl Repr {
    /// Reads a packet; verifies the checksum when present
    /// ([`Error::BadChecksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            protocol_type: packet.protocol_type(),
            key: packet.key(),
            sequence: packet.sequence(),
            checksum: packet.checksum_present(),
        })
    }

    /// 4 + 4 × (C + K + S).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
            + 4 * (self.checksum as usize
                + self.key.is_some() as usize
                + self.sequence.is_some() as usize)
    }

    /// Same as [`Repr::header_len`]: the payload is not part of the repr.
    pub const fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes the header. With `checksum`, the checksum is computed over the
    /// *whole buffer as it stands*: copy the payload in first (or call
    /// [`Packet::fill_checksum`] after).
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`Repr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(self.checksum, self.key.is_some(), self.sequence.is_some());
        packet.set_protocol_type(self.protocol_type);
        if let Some(key) = self.key {
            packet.set_key(key);
        }
        if let Some(seq) = self.sequence {
            packet.set_sequence(seq);
        }
        if self.checksum {
            packet.fill_checksum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The forwarder's header: no options, IPv4 inside, then 4 payload bytes.
    static PLAIN: [u8; 8] = [0x00, 0x00, 0x08, 0x00, 0x45, 0x00, 0x00, 0x14];

    // C, K and S set, IPv6 inside, key 0x01020304, sequence 7, 2 payload
    // bytes; checksum computed by the reference sum in the test.
    static FULL: [u8; 18] = [
        0xb0, 0x00, 0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00,
        0x07, 0x60, 0x00,
    ];

    fn full_with_checksum() -> [u8; 18] {
        let mut s: u32 = FULL
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]) as u32)
            .sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        let mut b = FULL;
        b[4..6].copy_from_slice(&(!(s as u16)).to_be_bytes());
        b
    }

    #[test]
    fn read_plain() {
        let p = Packet::new_checked(&PLAIN[..]).unwrap();
        assert!(!p.checksum_present() && !p.key_present() && !p.seq_present());
        assert_eq!(p.version(), 0);
        assert_eq!(p.reserved0(), 0);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!(p.header_len(), 4);
        assert_eq!((p.checksum(), p.key(), p.sequence()), (None, None, None));
        assert_eq!(p.payload(), &[0x45, 0x00, 0x00, 0x14]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn build_plain() {
        let repr = Repr {
            protocol_type: EtherType::Ipv4,
            key: None,
            sequence: None,
            checksum: false,
        };
        assert_eq!(repr.header_len(), 4);
        let mut buf = [0xffu8; 8];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&PLAIN[4..]);
        assert_eq!(buf, PLAIN);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), repr);
    }

    #[test]
    fn read_and_build_full() {
        let b = full_with_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.checksum_present() && p.key_present() && p.seq_present());
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.protocol_type(), EtherType::Ipv6);
        assert_eq!(p.key(), Some(0x0102_0304));
        assert_eq!(p.sequence(), Some(7));
        assert_eq!(p.checksum(), Some(u16::from_be_bytes([b[4], b[5]])));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[0x60, 0x00]);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr {
                protocol_type: EtherType::Ipv6,
                key: Some(0x0102_0304),
                sequence: Some(7),
                checksum: true
            }
        );
        let mut out = [0u8; 18];
        let mut q = Packet::new_unchecked(&mut out[..]);
        q.set_flags(true, true, true);
        q.payload_mut().copy_from_slice(&[0x60, 0x00]);
        repr.emit(&mut q);
        assert_eq!(out, b);
    }

    #[test]
    fn key_only_offsets() {
        let b = [0x20, 0x00, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x45];
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.key(), Some(0xdead_beef));
        assert_eq!(p.sequence(), None);
        assert_eq!(p.checksum(), None);
        assert_eq!(p.payload(), &[0x45]);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Packet::new_checked(&PLAIN[..3]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&FULL[..15]).unwrap_err(),
            Error::Truncated
        );
        let mut b = PLAIN;
        b[1] = 0x01; // version 1 (PPTP)
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Unsupported);
        for bit in [0x40u8, 0x08, 0x04] {
            let mut b = PLAIN;
            b[0] = bit; // bits 1, 4, 5
            assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        }
        let mut b = PLAIN;
        b[0] = 0x03; // bits 6-7
        b[1] = 0xf8; // bits 8-12
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.reserved0(), 0x7f);
        let mut b = full_with_checksum();
        b[17] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::BadChecksum);
    }
}
