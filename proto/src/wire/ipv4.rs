//! IPv4 (RFC 791).
//!
//! ```text
//!  0        1            2            4       6             8     9       10     12    16    20
//! | ver+IHL | DSCP+ECN  | total len | ident | flags+offset | TTL | proto | csum | src | dst | options
//! ```
//!
//! The view handles options and fragments (it just reports them);
//! [`Repr::parse`] refuses both with [`Error::Unsupported`], as the
//! forwarder drops them (DESIGN.md §4).
//!
//! [`Packet::check_len`] checks lengths only: it does not look at the
//! version nibble (a caller that must reject non-IPv4 checks
//! [`Packet::version`]; [`Repr::parse`] does).
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter,
//! [`Packet::payload`], [`Packet::options`] or [`Repr::parse`] panics,
//! whatever the bytes. `check_len` guarantees `20 <= header_len <=
//! total_len <= buffer length`; [`Packet::check_len_quoted`], for the packet
//! quoted in an ICMP error, guarantees the same except the last inequality,
//! and the payload then ends with the buffer. Setters may panic if the buffer is shorter
//! than the field they write.

use core::net::Ipv4Addr;

use super::{checksum, Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
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

    /// Checks `buffer >= 20`, `IHL >= 5` ([`Error::Malformed`] otherwise),
    /// `header_len <= total_len` ([`Error::Malformed`]) and `total_len <=
    /// buffer` ([`Error::Truncated`]). The buffer may be longer than
    /// `total_len` (Ethernet padding); [`Packet::payload`] stops at
    /// `total_len`.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        let total = self.total_len() as usize;
        if total < hl {
            return Err(Error::Malformed);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Wraps the packet quoted in an ICMP error and calls
    /// [`Packet::check_len_quoted`].
    #[inline]
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len_quoted()?;
        Ok(packet)
    }

    /// The checks of [`Packet::check_len`] except `total_len <= buffer`: an
    /// ICMP error quotes the header and only the first bytes of the payload
    /// (RFC 792: "the internet header plus the first 64 bits of the
    /// original datagram's data"). [`Packet::payload`] then returns what is
    /// there. The no-panic rule holds after this check too.
    #[inline]
    pub fn check_len_quoted(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        if (self.total_len() as usize) < hl {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// Whether the header has options (IHL > 5).
    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > HEADER_LEN
    }

    /// The whole second byte (formerly TOS): DSCP << 2 | ECN.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Total length (header and payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLG_OFF])
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field × 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Same as [`Packet::hop_limit`].
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.hop_limit()
    }

    /// The protocol number.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The protocol, typed.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.next_header())
    }

    /// Header checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// Whether the header checksum is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.buffer.as_ref()[..self.header_len()]) == 0xffff
    }

    /// The option bytes (empty when IHL is 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// End of the packet: `total_len`, or the buffer's end if shorter (a
    /// quoted packet).
    #[inline]
    fn end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        len.min(self.total_len() as usize)
    }

    /// The payload: from the end of the header to `total_len` (or to the end
    /// of a quoted packet's buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.end()]
    }

    /// The header and payload without any trailing padding.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let range = self.header_len()..self.end();
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (value << 4);
    }

    /// Sets the header length in bytes (stored as IHL = `value / 4`).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((value / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value
    }

    /// Sets the DSCP (6 bits).
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (value << 2);
    }

    /// Sets the ECN (2 bits).
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let b = &mut self.buffer.as_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (value & 0x03);
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes())
    }

    #[inline]
    fn set_flags_offset(&mut self, value: u16) {
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&value.to_be_bytes())
    }

    /// Clears the flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flags_offset(0)
    }

    /// Sets the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_DF } else { v & !FLAG_DF })
    }

    /// Sets the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_MF } else { v & !FLAG_MF })
    }

    /// Sets the fragment offset in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        let v = self.flags_offset();
        self.set_flags_offset((v & !OFFSET_MASK) | ((value >> 3) & OFFSET_MASK))
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value
    }

    /// Same as [`Packet::set_hop_limit`].
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.set_hop_limit(value)
    }

    /// Sets the protocol number.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value
    }

    /// Sets the protocol, typed.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.set_next_header(value.into())
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets())
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets())
    }

    /// Computes and stores the header checksum (over `header_len` bytes).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let sum = checksum::data(&self.buffer.as_ref()[..hl]);
        self.set_checksum(!sum)
    }

    /// The payload, mutable: from the end of the header to `total_len`.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..self.end();
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv4 header without options, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol number.
    pub next_header: u8,
    /// Payload length (total length − 20).
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Repr {
    /// Reads a packet: checks lengths, version 4 ([`Error::Malformed`]),
    /// no options and no fragment ([`Error::Unsupported`]) and the header
    /// checksum ([`Error::BadChecksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if packet.has_options() || packet.is_fragment() {
            return Err(Error::Unsupported);
        }
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.total_len() as usize - packet.header_len(),
            hop_limit: packet.hop_limit(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Always [`HEADER_LEN`] (20).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header (identification 0) with its checksum.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than 20 bytes. `payload_len` above
    /// 65 515 is truncated in the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.buffer.as_mut()[field::VER_IHL] = 0x45;
        packet.set_dscp_ecn((self.dscp << 2) | (self.ecn & 0x03));
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(0);
        packet.set_flags_offset(if self.dont_frag { FLAG_DF } else { 0 });
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.0.0.2 -> 10.0.0.1 TCP, DF, TTL 64, ident 0x1c46, total 40, DSCP
    // AF11 (10) ECN ECT(0), checksum computed by hand; plus 20 payload
    // bytes and 6 bytes of Ethernet padding.
    static PACKET: [u8; 46] = [
        0x45, 0x2a, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x0a, 0x5e, 0x0a, 0x00, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x01, // header
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, // payload
        0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn read_every_field() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert!(!p.has_options());
        assert_eq!(p.dscp_ecn(), 0x2a);
        assert_eq!(p.dscp(), 10);
        assert_eq!(p.ecn(), 2);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.next_header(), 6);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0x0a5e);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 20);
        assert_eq!(p.payload()[19], 20);
        assert_eq!(p.packet().len(), 40);
        assert!(p.options().is_empty());
    }

    #[test]
    fn capture_udp_header() {
        // A well-known capture: 192.168.0.1 -> 192.168.0.199 UDP, checksum
        // b861, total length 0x73 (only the header is given here, so use
        // new_unchecked).
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let p = Packet::new_unchecked(&hdr[..]);
        assert!(p.verify_checksum());
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(Packet::new_checked(&hdr[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn build_from_scratch() {
        let repr = Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 2),
            dst_addr: Ipv4Addr::new(10, 0, 0, 1),
            next_header: 6,
            payload_len: 20,
            hop_limit: 64,
            dscp: 10,
            ecn: 2,
            dont_frag: true,
        };
        let mut buf = [0u8; 40];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.set_ident(0x1c46);
        p.fill_checksum();
        p.payload_mut().copy_from_slice(&PACKET[20..40]);
        assert_eq!(buf[..], PACKET[..40]);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&PACKET[..])).unwrap(),
            repr
        );
    }

    #[test]
    fn check_len_rules() {
        assert_eq!(
            Packet::new_checked(&PACKET[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut b = PACKET;
        b[0] = 0x44; // IHL 4
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut b = [0u8; 64];
        b[..46].copy_from_slice(&PACKET);
        b[0] = 0x4f; // IHL 15 = 60 bytes > total 40
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        assert_eq!(Packet::new_checked(&b[..50]).unwrap_err(), Error::Truncated);
        let mut b = PACKET;
        b[3] = 47; // total > buffer
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let mut b = PACKET;
        b[3] = 19; // total < header
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        assert!(Packet::new_checked(&PACKET[..40]).is_ok());
    }

    #[test]
    fn quoted() {
        // Header plus 8 bytes of a 40-byte packet, as an ICMP error quotes it.
        let q = &PACKET[..28];
        assert_eq!(Packet::new_checked(q).unwrap_err(), Error::Truncated);
        let p = Packet::new_quoted(q).unwrap();
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.payload(), &PACKET[20..28]);
        assert_eq!(p.into_payload(), &PACKET[20..28]);
        assert_eq!(
            Packet::new_quoted(&PACKET[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut b = PACKET;
        b[3] = 19;
        assert_eq!(Packet::new_quoted(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn repr_refusals() {
        let mut b = PACKET;
        b[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Malformed
        );
        let mut b = PACKET;
        b[10] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::BadChecksum
        );
        // A fragment: the view reports it, the repr refuses it.
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_more_frags(true);
        p.fill_checksum();
        assert!(p.is_fragment() && p.more_frags());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Unsupported);
        p.set_more_frags(false);
        p.set_frag_offset(1480);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment() && p.dont_frag());
        // Options: IHL 6 with a 4-byte option.
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_header_len(24);
        p.fill_checksum();
        assert!(p.has_options());
        assert_eq!(p.options(), &[1, 2, 3, 4]);
        assert_eq!(p.payload().len(), 16);
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn setters() {
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_dscp(46);
        p.set_ecn(3);
        assert_eq!((p.dscp(), p.ecn()), (46, 3));
        p.set_dont_frag(false);
        assert!(!p.dont_frag());
        p.set_ttl(1);
        p.set_protocol(IpProtocol::Gre);
        p.set_version(4);
        assert_eq!(
            (p.ttl(), p.protocol(), p.version()),
            (1, IpProtocol::Gre, 4)
        );
        p.fill_checksum();
        assert!(p.verify_checksum());
        let old = p.checksum();
        let old_word = u16::from_be_bytes([p.hop_limit(), p.next_header()]);
        p.set_ttl(0);
        let new_word = u16::from_be_bytes([p.hop_limit(), p.next_header()]);
        p.set_checksum(checksum::update16(old, old_word, new_word));
        assert!(p.verify_checksum());
        p.clear_flags();
        assert!(!p.dont_frag());
    }
}
