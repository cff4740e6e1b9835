//! ICMP for IPv4 (RFC 792), with the next-hop MTU of RFC 1191.
//!
//! ```text
//!  0      1      2          4                      8
//! | type | code | checksum | rest of header (4)   | data
//! ```
//!
//! The "rest of header" is the identifier and sequence number of an echo
//! message, or (destination unreachable, code 4) an unused 16-bit word and
//! the next-hop MTU (RFC 1191 §4). [`Packet::data`] is everything after the
//! 8 bytes: the echo data, or the quoted IP header and first bytes of the
//! datagram that caused an error.
//!
//! The view's buffer must be exactly the ICMP message (the IP payload): the
//! checksum covers all of it.
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok` (the buffer is at least 8
//! bytes), no getter, [`Packet::data`], checksum verification or
//! [`Repr::parse`] panics, whatever the bytes. Setters may panic if the
//! buffer is shorter than 8 bytes.

use super::{checksum, Error, Result};

/// The message types vipa cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0.
    EchoReply,
    /// 3.
    DstUnreachable,
    /// 8.
    EchoRequest,
    /// 11.
    TimeExceeded,
    /// 12.
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            12 => Message::ParamProblem,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    #[inline]
    fn from(value: Message) -> Self {
        match value {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Unknown(other) => other,
        }
    }
}

impl Message {
    /// Whether this is an error message (it quotes the offending packet).
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Message::DstUnreachable | Message::TimeExceeded | Message::ParamProblem
        )
    }
}

/// Codes of a destination-unreachable message (RFC 792, RFC 1122).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    /// 0.
    NetUnreachable,
    /// 1.
    HostUnreachable,
    /// 2.
    ProtoUnreachable,
    /// 3.
    PortUnreachable,
    /// 4: fragmentation needed and DF set; carries the next-hop MTU.
    FragNeeded,
    /// 5.
    SrcRouteFailed,
    /// 13.
    AdminProhibited,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for DstUnreachable {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            0 => DstUnreachable::NetUnreachable,
            1 => DstUnreachable::HostUnreachable,
            2 => DstUnreachable::ProtoUnreachable,
            3 => DstUnreachable::PortUnreachable,
            4 => DstUnreachable::FragNeeded,
            5 => DstUnreachable::SrcRouteFailed,
            13 => DstUnreachable::AdminProhibited,
            other => DstUnreachable::Unknown(other),
        }
    }
}

impl From<DstUnreachable> for u8 {
    #[inline]
    fn from(value: DstUnreachable) -> Self {
        match value {
            DstUnreachable::NetUnreachable => 0,
            DstUnreachable::HostUnreachable => 1,
            DstUnreachable::ProtoUnreachable => 2,
            DstUnreachable::PortUnreachable => 3,
            DstUnreachable::FragNeeded => 4,
            DstUnreachable::SrcRouteFailed => 5,
            DstUnreachable::AdminProhibited => 13,
            DstUnreachable::Unknown(other) => other,
        }
    }
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const UNUSED: Range<usize> = 4..6;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const HEADER_END: usize = 8;
}

/// Length of the header (type, code, checksum, 4 more bytes).
pub const HEADER_LEN: usize = field::HEADER_END;

/// IP protocol number of ICMP.
pub const PROTOCOL: u8 = 1;

/// A view over an ICMP message.
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

    /// Checks that the 8-byte header is there ([`Error::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
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

    /// Always [`HEADER_LEN`] (8).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::ECHO_SEQNO])
    }

    /// Next-hop MTU (bytes 6..8); meaningful for destination unreachable,
    /// code 4 (RFC 1191), zero ("unused") otherwise.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::NEXT_HOP_MTU])
    }

    /// Everything after the 8-byte header: echo data, or the quoted packet
    /// of an error message.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Same as [`Packet::data`].
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.data()
    }

    /// Whether the checksum over the whole message is right.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The data with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = value.into()
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value
    }

    /// Sets the stored checksum.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the next-hop MTU and clears the unused word before it.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.buffer.as_mut()[field::UNUSED].copy_from_slice(&[0, 0]);
        self.buffer.as_mut()[field::NEXT_HOP_MTU].copy_from_slice(&value.to_be_bytes())
    }

    /// The data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Same as [`Packet::data_mut`].
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An ICMP message header, owned. The data (echo data, quoted packet) is
/// not part of it: only its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr {
    /// Echo request (type 8).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Echo reply (type 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Why.
        code: DstUnreachable,
        /// Next-hop MTU for [`DstUnreachable::FragNeeded`], else 0.
        next_hop_mtu: u16,
        /// Length of the quoted packet.
        data_len: usize,
    },
    /// Time exceeded (type 11).
    TimeExceeded {
        /// 0: TTL exceeded in transit; 1: reassembly time exceeded.
        code: u8,
        /// Length of the quoted packet.
        data_len: usize,
    },
    /// Anything else: type and code only.
    Other {
        /// Message type.
        msg_type: Message,
        /// Code.
        code: u8,
    },
}

impl Repr {
    /// Reads a message: checks the length and the checksum
    /// ([`Error::BadChecksum`]). Echo messages with a non-zero code are
    /// [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let data_len = packet.data().len();
        Ok(match packet.msg_type() {
            Message::EchoRequest | Message::EchoReply if packet.code() != 0 => {
                return Err(Error::Malformed)
            }
            Message::EchoRequest => Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            Message::EchoReply => Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            },
            Message::DstUnreachable => Repr::DstUnreachable {
                code: DstUnreachable::from(packet.code()),
                next_hop_mtu: packet.next_hop_mtu(),
                data_len,
            },
            Message::TimeExceeded => Repr::TimeExceeded {
                code: packet.code(),
                data_len,
            },
            msg_type => Repr::Other {
                msg_type,
                code: packet.code(),
            },
        })
    }

    /// Always [`HEADER_LEN`] (8).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus data.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match *self {
                Repr::EchoRequest { data_len, .. }
                | Repr::EchoReply { data_len, .. }
                | Repr::DstUnreachable { data_len, .. }
                | Repr::TimeExceeded { data_len, .. } => data_len,
                Repr::Other { .. } => 0,
            }
    }

    /// Writes the 8-byte header, then the checksum over the *whole buffer
    /// as it stands*: copy the data in first (or call
    /// [`Packet::fill_checksum`] after). The buffer should be exactly
    /// [`Repr::buffer_len`] bytes. `Other` writes type and code and zeroes
    /// bytes 4..8.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        match *self {
            Repr::EchoRequest { ident, seq_no, .. } => {
                packet.set_msg_type(Message::EchoRequest);
                packet.set_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Repr::EchoReply { ident, seq_no, .. } => {
                packet.set_msg_type(Message::EchoReply);
                packet.set_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
            }
            Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => {
                packet.set_msg_type(Message::DstUnreachable);
                packet.set_code(code.into());
                packet.set_next_hop_mtu(next_hop_mtu);
            }
            Repr::TimeExceeded { code, .. } => {
                packet.set_msg_type(Message::TimeExceeded);
                packet.set_code(code);
                packet.set_next_hop_mtu(0);
            }
            Repr::Other { msg_type, code } => {
                packet.set_msg_type(msg_type);
                packet.set_code(code);
                packet.set_next_hop_mtu(0);
            }
        }
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ping` echo request: ident 0x1234, seq 1, data "abcdefgh". Checksum
    // from the reference sum in the test.
    static ECHO: [u8; 16] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd', b'e', b'f', b'g',
        b'h',
    ];

    // Fragmentation needed, next-hop MTU 1400, quoting a 20-byte IPv4
    // header and the first 8 bytes of a TCP header
    // (10.0.0.2:49152 -> 10.0.0.1:80).
    static FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x05, 0x78, // type, code, csum, unused, MTU
        0x45, 0x00, 0x05, 0xdc, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x02, 0x0a, 0x00, 0x00, 0x01, // quoted IPv4 header
        0xc0, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, // quoted TCP ports, seq
    ];

    fn reference(bytes: &[u8]) -> u16 {
        let mut s: u32 = bytes
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]) as u32)
            .sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn with_checksum<const N: usize>(b: &[u8; N]) -> [u8; N] {
        let mut b = *b;
        let c = reference(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn read_echo() {
        let b = with_checksum(&ECHO);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data(), b"abcdefgh");
        assert!(p.verify_checksum());
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data_len: 8
            }
        );
    }

    #[test]
    fn build_echo_reply() {
        let repr = Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data_len: 8,
        };
        let mut buf = [0u8; 16];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.data_mut().copy_from_slice(b"abcdefgh");
        repr.emit(&mut p);
        let mut want = ECHO;
        want[0] = 0;
        assert_eq!(buf, with_checksum(&want));
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), repr);
    }

    #[test]
    fn read_frag_needed() {
        let b = with_checksum(&FRAG_NEEDED);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::DstUnreachable);
        assert!(p.msg_type().is_error());
        assert_eq!(DstUnreachable::from(p.code()), DstUnreachable::FragNeeded);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.data().len(), 28);
        assert_eq!(p.data()[0], 0x45);
        let q = super::super::ipv4::Packet::new_unchecked(p.data());
        assert_eq!(q.dst_addr(), core::net::Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::DstUnreachable {
                code: DstUnreachable::FragNeeded,
                next_hop_mtu: 1400,
                data_len: 28
            }
        );
    }

    #[test]
    fn build_frag_needed() {
        let repr = Repr::DstUnreachable {
            code: DstUnreachable::FragNeeded,
            next_hop_mtu: 1400,
            data_len: 28,
        };
        let mut buf = [0xaau8; 36];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.data_mut().copy_from_slice(&FRAG_NEEDED[8..]);
        repr.emit(&mut p);
        assert_eq!(buf, with_checksum(&FRAG_NEEDED));
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Packet::new_checked(&ECHO[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut b = with_checksum(&ECHO);
        b[9] ^= 0xff;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::BadChecksum);
        let mut b = ECHO;
        b[1] = 1;
        let b = with_checksum(&b);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&b[..])).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn types_round_trip() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(Message::from(n)), n);
            assert_eq!(u8::from(DstUnreachable::from(n)), n);
        }
    }
}
