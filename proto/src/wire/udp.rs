//! UDP header (RFC 768).
//!
//! ```text
//!  0          2          4        6          8
//! | src port | dst port | length | checksum | payload
//! ```
//!
//! The length field bounds the datagram: [`Packet::payload`] and the
//! checksum stop there, even if the buffer is longer.
//!
//! Zero checksums differ between the families. RFC 768: "If the computed
//! checksum is zero, it is transmitted as all ones (the equivalent in one's
//! complement arithmetic). An all zero transmitted checksum value means that
//! the transmitter generated no checksum". RFC 8200 §8.1: "Unlike IPv4, the
//! default behavior when UDP packets are originated by an IPv6 node is that
//! the UDP checksum is not optional. [...] if that computation yields a
//! result of zero, it must be changed to hex FFFF for placement in the UDP
//! header. IPv6 receivers must discard UDP packets containing a zero
//! checksum".
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter,
//! [`Packet::payload`], checksum verification or [`Repr::parse`] panics,
//! whatever the bytes. `check_len` guarantees `8 <= length <= buffer
//! length`. Setters may panic if the buffer is shorter than the field they
//! write.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, Error, Result};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// IP protocol number of UDP.
pub const PROTOCOL: u8 = 17;

/// A view over a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be16(d: &[u8]) -> u16 {
    u16::from_be_bytes([d[0], d[1]])
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

    /// Checks `buffer >= 8` ([`Error::Truncated`]), length field ≥ 8
    /// ([`Error::Malformed`]) and length ≤ buffer ([`Error::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let ulen = self.length() as usize;
        if ulen < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if ulen > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Always [`HEADER_LEN`] (8).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header plus payload.
    #[inline]
    pub fn length(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Checksum as stored (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The payload: up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.length() as usize]
    }

    #[inline]
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.length() as usize]
    }

    /// Whether the checksum is right over IPv4; a zero checksum means "none"
    /// and passes (RFC 768).
    #[inline]
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = self.datagram();
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }

    /// Whether the checksum is right over IPv6; a zero checksum fails
    /// (RFC 8200 §8.1).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let data = self.datagram();
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let end = self.length() as usize;
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the length field.
    #[inline]
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes())
    }

    /// Computes and stores the checksum for IPv4 (a zero result is sent as
    /// 0xFFFF, RFC 768).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let data = self.datagram();
        let sum = !checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(if sum == 0 { 0xffff } else { sum })
    }

    /// Computes and stores the checksum for IPv6 (a zero result is sent as
    /// 0xFFFF, RFC 8200 §8.1).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.datagram();
        let sum = !checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(if sum == 0 { 0xffff } else { sum })
    }

    /// The payload, mutable: up to the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.length() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A UDP header, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Length of the payload (length field − 8).
    pub payload_len: usize,
}

impl Repr {
    /// Reads a checked datagram. The checksum is not verified (it needs the
    /// IP addresses: use [`Packet::verify_checksum_v4`] /
    /// [`Packet::verify_checksum_v6`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.length() as usize - HEADER_LEN,
        })
    }

    /// Always [`HEADER_LEN`] (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 8-byte header with checksum 0. Write the payload, then
    /// call `fill_checksum_v4` / `fill_checksum_v6`.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_length(self.buffer_len() as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DNS query 10.0.0.2:53000 -> 10.0.0.1:53, 4 payload bytes, checksum
    // computed with the reference sum below; then 2 bytes of padding.
    static DGRAM: [u8; 14] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x55, 0x55,
    ];
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn reference_checksum() -> u16 {
        let words = [
            0x0a00u32, 0x0002, 0x0a00, 0x0001, 17, 12, 0xcf08, 0x0035, 0x000c, 0, 0xdead, 0xbeef,
        ];
        let mut s: u32 = words.iter().sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn read_every_field() {
        let mut b = DGRAM;
        b[6..8].copy_from_slice(&reference_checksum().to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.length(), 12);
        assert_eq!(p.header_len(), 8);
        assert_eq!(p.checksum(), reference_checksum());
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum_v4(&SRC, &DST));
        assert!(!p.verify_checksum_v4(&SRC, &Ipv4Addr::new(10, 0, 0, 3)));
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr {
                src_port: 53000,
                dst_port: 53,
                payload_len: 4
            }
        );
    }

    #[test]
    fn build_from_scratch() {
        let repr = Repr {
            src_port: 53000,
            dst_port: 53,
            payload_len: 4,
        };
        let mut buf = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf[..], DGRAM[..12]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v4(&SRC, &DST);
        assert_eq!(p.checksum(), reference_checksum());
    }

    #[test]
    fn zero_checksum_rules() {
        let mut b = DGRAM;
        let p = Packet::new_unchecked(&mut b[..]);
        assert!(p.verify_checksum_v4(&SRC, &DST), "IPv4: zero means none");
        let s6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(!p.verify_checksum_v6(&s6, &d6), "IPv6: zero is invalid");

        // Find a payload whose checksum computes to zero and check that it
        // is sent as 0xFFFF and still verifies.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        }
        .emit(&mut p);
        let mut found = false;
        for w in 0..=u16::MAX {
            p.payload_mut().copy_from_slice(&w.to_be_bytes());
            p.fill_checksum_v6(&s6, &d6);
            if p.checksum() == 0xffff {
                assert!(p.verify_checksum_v6(&s6, &d6));
                found = true;
                break;
            }
        }
        assert!(found);
        // The v4 path maps a zero result to 0xFFFF too.
        for w in 0..=u16::MAX {
            p.payload_mut().copy_from_slice(&w.to_be_bytes());
            p.fill_checksum_v4(&SRC, &DST);
            assert_ne!(p.checksum(), 0);
        }
    }

    #[test]
    fn check_len_rules() {
        assert_eq!(
            Packet::new_checked(&DGRAM[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&DGRAM[..11]).unwrap_err(),
            Error::Truncated
        );
        let mut b = DGRAM;
        b[5] = 7;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let p = Packet::new_checked(&DGRAM[..]).unwrap();
        assert_eq!(
            p.payload().len(),
            4,
            "padding after the length is not payload"
        );
    }
}
