//! IPv6 fixed header (RFC 8200).
//!
//! ```text
//!  0                          4             6         7           8     24    40
//! | ver(4) TC(8) flow(20)    | payload len | next hdr | hop limit | src | dst | payload
//! ```
//!
//! Extension headers are not walked: the next-header value is reported as
//! it is, so a hop-by-hop or fragment header reads as
//! [`IpProtocol::HopByHop`] / [`IpProtocol::Ipv6Frag`] and the caller
//! treats the packet as unknown. A jumbogram (payload length 0 with a
//! hop-by-hop jumbo option) is seen as a packet with an empty payload.
//!
//! [`Packet::check_len`] does not look at the version nibble; [`Repr::parse`]
//! does.
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter,
//! [`Packet::payload`] or [`Repr::parse`] panics, whatever the bytes.
//! `check_len` guarantees `40 + payload_len <= buffer length`;
//! [`Packet::check_len_quoted`], for the packet quoted in an ICMPv6 error,
//! only guarantees the 40 bytes, and the payload then ends with the buffer.
//! Setters may
//! panic if the buffer is shorter than the field they write.

use core::net::Ipv6Addr;

use super::{Error, IpProtocol, Result};

mod field {
    use core::ops::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1):
/// `ff02::1:ff00:0/104` with the low 24 bits of `addr`.
pub fn solicited_node_multicast(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// A view over an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn addr(d: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[..16]);
    Ipv6Addr::from(a)
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

    /// Checks `buffer >= 40` and `40 + payload_len <= buffer`
    /// ([`Error::Truncated`] otherwise). A longer buffer (Ethernet padding)
    /// is fine; [`Packet::payload`] stops at `payload_len`.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + self.payload_len() as usize > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Wraps the packet quoted in an ICMPv6 error and calls
    /// [`Packet::check_len_quoted`].
    #[inline]
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len_quoted()?;
        Ok(packet)
    }

    /// Checks only that the 40-byte header is there: an ICMPv6 error quotes
    /// "as much of invoking packet as possible without the ICMPv6 packet
    /// exceeding the minimum IPv6 MTU" (RFC 4443 §3.1), so the payload may
    /// be cut short. [`Packet::payload`] then returns what is there. The
    /// no-panic rule holds after this check too.
    #[inline]
    pub fn check_len_quoted(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Always [`HEADER_LEN`] (40): extension headers are payload here.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    fn first_word(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// The version nibble (6 for IPv6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class: DSCP << 2 | ECN.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// Differentiated services code point (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    /// Explicit congestion notification (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// Next header number.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Next header, typed.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.next_header())
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// End of the packet: `40 + payload_len`, or the buffer's end if
    /// shorter (a quoted packet).
    #[inline]
    fn end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        len.min(HEADER_LEN + self.payload_len() as usize)
    }

    /// The payload: `payload_len` bytes after the fixed header (or up to the
    /// end of a quoted packet's buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.end()]
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
        let end = self.end();
        &self.buffer.as_ref()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_first_word(&mut self, value: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0x0fff_ffff) | ((value as u32 & 0x0f) << 28))
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0xf00f_ffff) | ((value as u32) << 20))
    }

    /// Sets the DSCP (6 bits).
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        let tc = self.traffic_class();
        self.set_traffic_class((tc & 0x03) | (value << 2))
    }

    /// Sets the ECN (2 bits).
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        let tc = self.traffic_class();
        self.set_traffic_class((tc & 0xfc) | (value & 0x03))
    }

    /// Sets the flow label (20 bits).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        let w = self.first_word();
        self.set_first_word((w & 0xfff0_0000) | (value & 0x000f_ffff))
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the next header number.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value
    }

    /// Sets the next header, typed.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.set_next_header(value.into())
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets())
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets())
    }

    /// The payload, mutable: `payload_len` bytes after the fixed header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An IPv6 fixed header, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header number.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Reads a packet: checks lengths and version 6 ([`Error::Malformed`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            flow_label: packet.flow_label(),
        })
    }

    /// Always [`HEADER_LEN`] (40).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 40-byte header.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than 40 bytes. `payload_len` above 65 535
    /// is truncated in the length field.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let tc = ((self.dscp << 2) | (self.ecn & 0x03)) as u32;
        packet.set_first_word((6 << 28) | (tc << 20) | (self.flow_label & 0x000f_ffff));
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2001:db8::2 -> 2001:db8::1, UDP, TC 0xb8 (EF), flow 0x12345, hop
    // limit 64, 8-byte payload, then 2 bytes of padding.
    static PACKET: [u8; 50] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 0x11, 0x40, // ver/tc/flow, len, nh, hl
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // src
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // dst
        1, 2, 3, 4, 5, 6, 7, 8, // payload
        0xee, 0xee, // padding
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: "2001:db8::2".parse().unwrap(),
            dst_addr: "2001:db8::1".parse().unwrap(),
            next_header: 17,
            payload_len: 8,
            hop_limit: 64,
            dscp: 46,
            ecn: 0,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn read_every_field() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.packet().len(), 48);
        assert_eq!(Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn build_from_scratch() {
        let mut buf = [0u8; 48];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr().emit(&mut p);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf[..], PACKET[..48]);
    }

    #[test]
    fn check_len_rules() {
        assert_eq!(
            Packet::new_checked(&PACKET[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&PACKET[..47]).unwrap_err(),
            Error::Truncated
        );
        assert!(Packet::new_checked(&PACKET[..48]).is_ok());
        let mut b = PACKET;
        b[0] = 0x4b;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn quoted() {
        let q = &PACKET[..44];
        assert_eq!(Packet::new_checked(q).unwrap_err(), Error::Truncated);
        let p = Packet::new_quoted(q).unwrap();
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(
            Packet::new_quoted(&PACKET[..39]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn setters() {
        let mut b = PACKET;
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_dscp(10);
        p.set_ecn(1);
        assert_eq!(
            (p.dscp(), p.ecn(), p.flow_label(), p.version()),
            (10, 1, 0x12345, 6)
        );
        p.set_flow_label(0xfffff);
        p.set_traffic_class(0xff);
        assert_eq!(
            (p.traffic_class(), p.flow_label(), p.version()),
            (0xff, 0xfffff, 6)
        );
        p.set_version(4);
        assert_eq!((p.version(), p.traffic_class()), (4, 0xff));
        p.set_protocol(IpProtocol::Tcp);
        assert_eq!(p.next_header(), 6);
    }

    #[test]
    fn solicited_node() {
        let a: Ipv6Addr = "2001:db8::aa:bbcc:ddee".parse().unwrap();
        assert_eq!(
            solicited_node_multicast(&a),
            "ff02::1:ffcc:ddee".parse::<Ipv6Addr>().unwrap()
        );
    }
}
