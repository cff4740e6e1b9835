//! Ethernet II frames with at most one IEEE 802.1Q tag.
//!
//! ```text
//!  0      6      12         14        16         18
//! | dst  | src  | ethertype | [TCI   | ethertype] | payload ...
//! ```
//!
//! When the outer ethertype is 0x8100 the four bytes after the addresses are
//! an 802.1Q tag (TCI, then the payload's ethertype), and the header is 18
//! bytes. Only one tag is unwrapped: for a QinQ frame the inner ethertype is
//! reported as-is (0x8100, [`EtherType::Vlan`]), so a caller that expects
//! IPv4, IPv6 or ARP treats it as unknown. An 802.1ad outer tag (0x88A8) is
//! reported as [`EtherType::Unknown`].
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter, [`Packet::payload`]
//! or [`Repr::parse`] panics, whatever the bytes. Setters may panic if the
//! buffer is too short for the field written.

use core::fmt;
use core::str::FromStr;

use super::{Error, Result};

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Builds an address from the first six bytes of `data`.
    ///
    /// # Panics
    ///
    /// If `data` is shorter than six bytes.
    pub fn from_bytes(data: &[u8]) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&data[..6]);
        EthernetAddress(a)
    }

    /// The six bytes.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is ff:ff:ff:ff:ff:ff.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit (least significant bit of the first byte) is
    /// set; broadcast is a multicast address.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (not group) address.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the locally-administered bit is set.
    #[inline]
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not six colon-separated (or dash-separated) hex bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ethernet address (expected six hex bytes like 02:00:00:00:0a:01)")]
pub struct AddrParseError;

impl FromStr for EthernetAddress {
    type Err = AddrParseError;

    /// Parses `02:00:00:00:0a:01` (or `02-00-00-00-0a-01`); one or two hex
    /// digits per byte, either case.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(AddrParseError)?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(AddrParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| AddrParseError)?;
        }
        if parts.next().is_some() {
            return Err(AddrParseError);
        }
        Ok(EthernetAddress(out))
    }
}

/// The ethertype field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtherType {
    /// 0x0800.
    Ipv4,
    /// 0x0806.
    Arp,
    /// 0x86DD.
    Ipv6,
    /// 0x8100, an IEEE 802.1Q tag.
    Vlan,
    /// Any other value (including 0x88A8, 802.1ad).
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::Unknown(other) => other,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Unknown(n) => write!(f, "ethertype {n:#06x}"),
            known => write!(f, "{known:?}"),
        }
    }
}

mod field {
    use core::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::ETHERTYPE.end;
/// Length of an Ethernet header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = field::VLAN_ETHERTYPE.end;

/// A view over an Ethernet frame (without FCS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
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

    /// Checks that the buffer holds the whole header: 14 bytes, or 18 when
    /// the outer ethertype is 802.1Q.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if data.len() < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// 14, or 18 with an 802.1Q tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.ethertype() == EtherType::Vlan {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The outer ethertype (0x8100 for a tagged frame).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let d = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType::from(u16::from_be_bytes([d[0], d[1]]))
    }

    /// The 802.1Q tag control information (PCP, DEI, VID) if the frame is
    /// tagged.
    #[inline]
    pub fn vlan_tag(&self) -> Option<u16> {
        if self.ethertype() == EtherType::Vlan {
            let d = &self.buffer.as_ref()[field::VLAN_TCI];
            Some(u16::from_be_bytes([d[0], d[1]]))
        } else {
            None
        }
    }

    /// The 12-bit VLAN identifier if the frame is tagged.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tag().map(|tci| tci & 0x0fff)
    }

    /// The ethertype of the payload: after the 802.1Q tag if there is one.
    /// A second tag is not unwrapped (it reads as [`EtherType::Vlan`]).
    #[inline]
    pub fn payload_ethertype(&self) -> EtherType {
        if self.ethertype() == EtherType::Vlan {
            let d = &self.buffer.as_ref()[field::VLAN_ETHERTYPE];
            EtherType::from(u16::from_be_bytes([d[0], d[1]]))
        } else {
            self.ethertype()
        }
    }

    /// Same as [`Packet::payload_ethertype`].
    #[inline]
    pub fn ethertype_inner(&self) -> EtherType {
        self.payload_ethertype()
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The payload, after the tag if there is one.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let hl = self.header_len();
        &self.buffer.as_ref()[hl..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0)
    }

    /// Sets the outer ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(value).to_be_bytes())
    }

    /// Sets the 802.1Q TCI bytes (the outer ethertype must be, or be set
    /// to, [`EtherType::Vlan`]).
    #[inline]
    pub fn set_vlan_tag(&mut self, tci: u16) {
        self.buffer.as_mut()[field::VLAN_TCI].copy_from_slice(&tci.to_be_bytes())
    }

    /// Sets the payload's ethertype: the one after the tag in a tagged
    /// frame, the outer one otherwise.
    #[inline]
    pub fn set_payload_ethertype(&mut self, value: EtherType) {
        let range = if self.ethertype() == EtherType::Vlan {
            field::VLAN_ETHERTYPE
        } else {
            field::ETHERTYPE
        };
        self.buffer.as_mut()[range].copy_from_slice(&u16::from(value).to_be_bytes())
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

/// An Ethernet header, owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src: EthernetAddress,
    /// Destination address.
    pub dst: EthernetAddress,
    /// The 802.1Q TCI, if the frame is tagged.
    pub vlan: Option<u16>,
    /// The payload's ethertype (after the tag).
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads a checked frame.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            vlan: packet.vlan_tag(),
            ethertype: packet.payload_ethertype(),
        })
    }

    /// 14, or 18 with a tag.
    pub const fn header_len(&self) -> usize {
        if self.vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Same as [`Repr::header_len`]: the payload is not part of the repr.
    pub const fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// Writes the 14 or 18 header bytes.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`Repr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_dst_addr(self.dst);
        packet.set_src_addr(self.src);
        match self.vlan {
            Some(tci) => {
                packet.set_ethertype(EtherType::Vlan);
                packet.set_vlan_tag(tci);
                packet.buffer.as_mut()[field::VLAN_ETHERTYPE]
                    .copy_from_slice(&u16::from(self.ethertype).to_be_bytes());
            }
            None => packet.set_ethertype(self.ethertype),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // dst 02:00:00:00:0a:01, src 52:54:00:12:34:56, IPv4, then 4 payload
    // bytes.
    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0xaa,
        0xbb, 0xcc, 0xdd,
    ];

    // Same, tagged with VLAN 100 priority 3 (TCI 0x6064), carrying IPv6.
    static TAGGED: [u8; 20] = [
        0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0x60,
        0x64, 0x86, 0xdd, 0xaa, 0xbb,
    ];

    #[test]
    fn address_text() {
        let a: EthernetAddress = "02:00:00:00:0a:01".parse().unwrap();
        assert_eq!(a, EthernetAddress([2, 0, 0, 0, 10, 1]));
        assert_eq!(a.to_string(), "02:00:00:00:0a:01");
        assert_eq!(format!("{a:?}"), "02:00:00:00:0a:01");
        assert_eq!(
            "52-54-00-AB-cd-1"
                .parse::<EthernetAddress>()
                .unwrap()
                .to_string(),
            "52:54:00:ab:cd:01"
        );
        for bad in [
            "",
            "02:00:00:00:0a",
            "02:00:00:00:0a:01:02",
            "02:00:00:00:0a:1g",
            "002:00:00:00:0a:01",
            "02::00:00:0a:01",
            "+2:00:00:00:0a:01",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        let mcast = EthernetAddress([0x33, 0x33, 0xff, 0, 0, 1]);
        assert!(mcast.is_multicast() && !mcast.is_unicast() && !mcast.is_broadcast());
        let ucast = EthernetAddress([0x02, 0, 0, 0, 10, 1]);
        assert!(ucast.is_unicast() && ucast.is_local() && !ucast.is_multicast());
    }

    #[test]
    fn read_untagged() {
        let p = Packet::new_checked(&FRAME[..]).unwrap();
        assert_eq!(p.dst_addr(), EthernetAddress([2, 0, 0, 0, 10, 1]));
        assert_eq!(
            p.src_addr(),
            EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(p.ethertype(), EtherType::Ipv4);
        assert_eq!(p.payload_ethertype(), EtherType::Ipv4);
        assert_eq!(p.vlan_tag(), None);
        assert_eq!(p.header_len(), 14);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn read_tagged() {
        let p = Packet::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(p.ethertype(), EtherType::Vlan);
        assert_eq!(p.vlan_tag(), Some(0x6064));
        assert_eq!(p.vlan_id(), Some(100));
        assert_eq!(p.payload_ethertype(), EtherType::Ipv6);
        assert_eq!(p.ethertype_inner(), EtherType::Ipv6);
        assert_eq!(p.header_len(), 18);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn qinq_is_not_unwrapped() {
        let mut f = TAGGED;
        f[16] = 0x81;
        f[17] = 0x00;
        let p = Packet::new_checked(&f[..]).unwrap();
        assert_eq!(p.payload_ethertype(), EtherType::Vlan);
        let mut f = FRAME;
        f[12] = 0x88;
        f[13] = 0xa8;
        let p = Packet::new_checked(&f[..]).unwrap();
        assert_eq!(p.payload_ethertype(), EtherType::Unknown(0x88a8));
        assert_eq!(p.header_len(), 14);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&TAGGED[..17]).unwrap_err(),
            Error::Truncated
        );
        assert!(Packet::new_checked(&TAGGED[..18])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn build_untagged() {
        let repr = Repr::parse(&Packet::new_unchecked(&FRAME[..])).unwrap();
        assert_eq!(repr.vlan, None);
        let mut buf = [0u8; 18];
        buf[14..].copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src: EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            dst: EthernetAddress([2, 0, 0, 0, 10, 1]),
            vlan: None,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut p);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn build_tagged() {
        let repr = Repr {
            src: EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            dst: EthernetAddress([2, 0, 0, 0, 10, 1]),
            vlan: Some(0x6064),
            ethertype: EtherType::Ipv6,
        };
        assert_eq!(repr.header_len(), 18);
        let mut buf = [0u8; 20];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, TAGGED);
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), repr);
    }
}
