//! ICMPv6 (RFC 4443) and the neighbour discovery messages vipa answers
//! (RFC 4861).
//!
//! ```text
//!  0      1      2          4                    8              24
//! | type | code | checksum | rest of header (4) | [target (NS, NA)] | data / options
//! ```
//!
//! Bytes 4..8 are the echo identifier and sequence number, the MTU of a
//! packet-too-big message, the pointer of a parameter problem, the flags of a
//! neighbour advertisement (R, S, O), or unused. [`Packet::header_len`] is 8,
//! or the fixed part of a neighbour-discovery message (24 for NS and NA); the
//! NDP options follow it and are read with [`Packet::ndp_options`].
//!
//! The checksum covers an IPv6 pseudo-header (RFC 4443 §2.3), so verifying
//! and filling it takes the addresses. The view's buffer must be exactly the
//! ICMPv6 message (the IP payload).
//!
//! # The no-panic rule
//!
//! After [`Packet::check_len`] has returned `Ok`, no getter, [`Packet::data`],
//! option iteration, checksum verification or [`Repr::parse`] panics,
//! whatever the bytes. `check_len` guarantees 8 bytes, and the whole fixed
//! part for the neighbour-discovery types. [`Packet::target_addr`] on a
//! message too short to have a target returns `::` rather than panicking.
//! Setters may panic if the buffer is shorter than the field they write.

use core::net::Ipv6Addr;

use super::{checksum, Error, EthernetAddress, Result};

/// ICMPv6 message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// 1.
    DstUnreachable,
    /// 2.
    PktTooBig,
    /// 3.
    TimeExceeded,
    /// 4.
    ParamProblem,
    /// 128.
    EchoRequest,
    /// 129.
    EchoReply,
    /// 133.
    RouterSolicit,
    /// 134.
    RouterAdvert,
    /// 135.
    NeighborSolicit,
    /// 136.
    NeighborAdvert,
    /// 137.
    Redirect,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            1 => Message::DstUnreachable,
            2 => Message::PktTooBig,
            3 => Message::TimeExceeded,
            4 => Message::ParamProblem,
            128 => Message::EchoRequest,
            129 => Message::EchoReply,
            133 => Message::RouterSolicit,
            134 => Message::RouterAdvert,
            135 => Message::NeighborSolicit,
            136 => Message::NeighborAdvert,
            137 => Message::Redirect,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    #[inline]
    fn from(value: Message) -> Self {
        match value {
            Message::DstUnreachable => 1,
            Message::PktTooBig => 2,
            Message::TimeExceeded => 3,
            Message::ParamProblem => 4,
            Message::EchoRequest => 128,
            Message::EchoReply => 129,
            Message::RouterSolicit => 133,
            Message::RouterAdvert => 134,
            Message::NeighborSolicit => 135,
            Message::NeighborAdvert => 136,
            Message::Redirect => 137,
            Message::Unknown(other) => other,
        }
    }
}

impl Message {
    /// Whether this is an error message (types 0..=127, RFC 4443 §2.1).
    #[inline]
    pub fn is_error(&self) -> bool {
        u8::from(*self) < 128
    }

    /// Length of the fixed part before data or options.
    #[inline]
    fn header_len(&self) -> usize {
        match self {
            Message::NeighborSolicit | Message::NeighborAdvert => 24,
            Message::RouterAdvert => 16,
            Message::Redirect => 40,
            _ => 8,
        }
    }
}

/// NDP option types (RFC 4861 §4.6).
pub mod ndp_option {
    /// Source link-layer address.
    pub const SOURCE_LL_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LL_ADDR: u8 = 2;
    /// Prefix information.
    pub const PREFIX_INFO: u8 = 3;
    /// Redirected header.
    pub const REDIRECTED_HDR: u8 = 4;
    /// MTU.
    pub const MTU: u8 = 5;
}

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    pub const NA_FLAGS: usize = 4;
    pub const RESERVED: Range<usize> = 4..8;
    pub const TARGET: Range<usize> = 8..24;
}

/// Length of the common header (type, code, checksum, 4 more bytes).
pub const HEADER_LEN: usize = 8;
/// Length of a neighbour solicitation or advertisement before options.
pub const ND_HEADER_LEN: usize = field::TARGET.end;
/// Length of an Ethernet link-layer address option.
pub const LL_ADDR_OPTION_LEN: usize = 8;

/// IP next-header number of ICMPv6.
pub const PROTOCOL: u8 = 58;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// One NDP option: its type and the bytes after the type and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdpOption<'a> {
    /// The option type; see [`ndp_option`].
    pub option_type: u8,
    /// The option's bytes after the type and length octets.
    pub data: &'a [u8],
}

impl NdpOption<'_> {
    /// The Ethernet address carried by a link-layer address option.
    #[inline]
    pub fn ll_addr(&self) -> Option<EthernetAddress> {
        self.data.get(..6).map(EthernetAddress::from_bytes)
    }
}

/// An iterator over NDP options (RFC 4861 §4.6).
///
/// Yields `Err(Error::Malformed)` for a zero length ("Nodes MUST silently
/// discard an ND packet that contains an option with length zero") and
/// `Err(Error::Truncated)` for an option running past the end; either error
/// ends the iteration.
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    data: &'a [u8],
}

impl<'a> NdpOptions<'a> {
    /// Iterates over the options in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        NdpOptions { data }
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let data = self.data;
        let (&option_type, &units) = match data {
            [] => return None,
            [t, l, ..] => (t, l),
            [_] => {
                self.data = &[];
                return Some(Err(Error::Truncated));
            }
        };
        let len = units as usize * 8;
        if len == 0 {
            self.data = &[];
            return Some(Err(Error::Malformed));
        }
        match (data.get(2..len), data.get(len..)) {
            (Some(body), Some(rest)) => {
                self.data = rest;
                Some(Ok(NdpOption {
                    option_type,
                    data: body,
                }))
            }
            _ => {
                self.data = &[];
                Some(Err(Error::Truncated))
            }
        }
    }
}

/// A view over an ICMPv6 message.
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

    /// Checks that the buffer holds 8 bytes and the fixed part of the
    /// message type ([`Error::Truncated`]).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.header_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length of the fixed part: 24 for NS and NA, 16 for RA, 40 for
    /// redirect, 8 otherwise.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.msg_type().header_len()
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Code.
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

    /// Packet-too-big MTU (bytes 4..8).
    #[inline]
    pub fn mtu(&self) -> u32 {
        let d = &self.buffer.as_ref()[field::MTU];
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// Neighbour advertisement R flag: the sender is a router.
    #[inline]
    pub fn router_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & FLAG_ROUTER != 0
    }

    /// Neighbour advertisement S flag: sent in response to a solicitation.
    #[inline]
    pub fn solicited_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & FLAG_SOLICITED != 0
    }

    /// Neighbour advertisement O flag: override an existing cache entry.
    #[inline]
    pub fn override_flag(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & FLAG_OVERRIDE != 0
    }

    /// Target address of a neighbour solicitation or advertisement (bytes
    /// 8..24); `::` if the message is shorter than 24 bytes.
    #[inline]
    pub fn target_addr(&self) -> Ipv6Addr {
        match self.buffer.as_ref().get(field::TARGET) {
            Some(d) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(d);
                Ipv6Addr::from(a)
            }
            None => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// Everything after [`Packet::header_len`]: echo data, the quoted
    /// packet of an error, or NDP options.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Same as [`Packet::data`].
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.data()
    }

    /// The NDP options after the fixed part (meaningful for types
    /// 133..=137).
    #[inline]
    pub fn ndp_options(&self) -> NdpOptions<'_> {
        NdpOptions::new(self.data())
    }

    fn find_ll_addr(&self, kind: u8) -> Result<Option<EthernetAddress>> {
        let mut found = None;
        for option in self.ndp_options() {
            let option = option?;
            if option.option_type == kind && found.is_none() {
                found = Some(option.ll_addr().ok_or(Error::Malformed)?);
            }
        }
        Ok(found)
    }

    /// The first source link-layer address option (type 1). Walks every
    /// option, so a malformed option anywhere is an error.
    #[inline]
    pub fn source_lladdr(&self) -> Result<Option<EthernetAddress>> {
        self.find_ll_addr(ndp_option::SOURCE_LL_ADDR)
    }

    /// The first target link-layer address option (type 2). Walks every
    /// option, so a malformed option anywhere is an error.
    #[inline]
    pub fn target_lladdr(&self) -> Result<Option<EthernetAddress>> {
        self.find_ll_addr(ndp_option::TARGET_LL_ADDR)
    }

    /// Whether the checksum is right for this source and destination.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The data with the buffer's lifetime, consuming the view.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        let hl = self.header_len();
        self.buffer.as_ref().get(hl..).unwrap_or(&[])
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

    /// Sets bytes 4..8 (MTU of packet-too-big; 0 for "unused").
    #[inline]
    pub fn set_mtu(&mut self, value: u32) {
        self.buffer.as_mut()[field::MTU].copy_from_slice(&value.to_be_bytes())
    }

    /// Sets the neighbour advertisement flags and clears the rest of the
    /// reserved field.
    #[inline]
    pub fn set_na_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let mut f = 0;
        if router {
            f |= FLAG_ROUTER;
        }
        if solicited {
            f |= FLAG_SOLICITED;
        }
        if override_ {
            f |= FLAG_OVERRIDE;
        }
        self.buffer.as_mut()[field::RESERVED].copy_from_slice(&[f, 0, 0, 0]);
    }

    /// Sets the target address (bytes 8..24).
    #[inline]
    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&value.octets())
    }

    /// The data after [`Packet::header_len`], mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Same as [`Packet::data_mut`].
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }

    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, PROTOCOL, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(!sum)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// An ICMPv6 message, owned. Echo data and quoted packets are not part of
/// it: only their length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr {
    /// Echo request (128).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Echo reply (129).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Length of the echo data.
        data_len: usize,
    },
    /// Packet too big (2).
    PktTooBig {
        /// The next-hop link's MTU.
        mtu: u32,
        /// Length of the quoted packet.
        data_len: usize,
    },
    /// Destination unreachable (1).
    DstUnreachable {
        /// 0 no route, 1 prohibited, 3 address unreachable, 4 port
        /// unreachable, ...
        code: u8,
        /// Length of the quoted packet.
        data_len: usize,
    },
    /// Time exceeded (3).
    TimeExceeded {
        /// 0: hop limit exceeded; 1: reassembly time exceeded.
        code: u8,
        /// Length of the quoted packet.
        data_len: usize,
    },
    /// Neighbour solicitation (135).
    NeighborSolicit {
        /// The address being resolved.
        target_addr: Ipv6Addr,
        /// Source link-layer address option, if present.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbour advertisement (136).
    NeighborAdvert {
        /// R: the sender is a router.
        router_flag: bool,
        /// S: in response to a solicitation.
        solicited_flag: bool,
        /// O: override an existing entry.
        override_flag: bool,
        /// The address advertised.
        target_addr: Ipv6Addr,
        /// Target link-layer address option, if present.
        lladdr: Option<EthernetAddress>,
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
    /// Reads a checked message. The checksum is not verified (it needs the
    /// addresses: use [`Packet::verify_checksum`]). Echo, NS and NA with a
    /// non-zero code, and NDP messages with malformed options, are
    /// [`Error::Malformed`] / [`Error::Truncated`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        let data_len = packet.data().len();
        let msg_type = packet.msg_type();
        let code = packet.code();
        match msg_type {
            Message::EchoRequest
            | Message::EchoReply
            | Message::NeighborSolicit
            | Message::NeighborAdvert
                if code != 0 =>
            {
                Err(Error::Malformed)
            }
            Message::EchoRequest => Ok(Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            Message::EchoReply => Ok(Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data_len,
            }),
            Message::PktTooBig => Ok(Repr::PktTooBig {
                mtu: packet.mtu(),
                data_len,
            }),
            Message::DstUnreachable => Ok(Repr::DstUnreachable { code, data_len }),
            Message::TimeExceeded => Ok(Repr::TimeExceeded { code, data_len }),
            Message::NeighborSolicit => Ok(Repr::NeighborSolicit {
                target_addr: packet.target_addr(),
                lladdr: packet.source_lladdr()?,
            }),
            Message::NeighborAdvert => Ok(Repr::NeighborAdvert {
                router_flag: packet.router_flag(),
                solicited_flag: packet.solicited_flag(),
                override_flag: packet.override_flag(),
                target_addr: packet.target_addr(),
                lladdr: packet.target_lladdr()?,
            }),
            msg_type => Ok(Repr::Other { msg_type, code }),
        }
    }

    /// Length of the fixed part (8, or 24 for NS and NA; see
    /// [`Packet::header_len`]).
    pub fn header_len(&self) -> usize {
        match self {
            Repr::NeighborSolicit { .. } | Repr::NeighborAdvert { .. } => ND_HEADER_LEN,
            Repr::Other { msg_type, .. } => msg_type.header_len(),
            _ => HEADER_LEN,
        }
    }

    /// The whole message: fixed part plus data or the link-layer option.
    pub fn buffer_len(&self) -> usize {
        match *self {
            Repr::EchoRequest { data_len, .. }
            | Repr::EchoReply { data_len, .. }
            | Repr::PktTooBig { data_len, .. }
            | Repr::DstUnreachable { data_len, .. }
            | Repr::TimeExceeded { data_len, .. } => HEADER_LEN + data_len,
            Repr::NeighborSolicit { lladdr, .. } | Repr::NeighborAdvert { lladdr, .. } => {
                ND_HEADER_LEN
                    + if lladdr.is_some() {
                        LL_ADDR_OPTION_LEN
                    } else {
                        0
                    }
            }
            Repr::Other { msg_type, .. } => msg_type.header_len(),
        }
    }

    /// Writes the message, then the checksum over the *whole buffer as it
    /// stands* for `src_addr` → `dst_addr`: for echo and error messages,
    /// copy the data in first (or call [`Packet::fill_checksum`] after).
    /// NS and NA are complete (fixed part and link-layer option). The buffer
    /// should be exactly [`Repr::buffer_len`] bytes. `Other` writes type and
    /// code and zeroes the rest of its fixed part (bytes 4..8, or up to 16
    /// or 40 for a router advertisement or redirect).
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`Repr::buffer_len`] for NS and NA, or
    /// than 8 bytes otherwise.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src_addr: &Ipv6Addr,
        dst_addr: &Ipv6Addr,
        packet: &mut Packet<T>,
    ) {
        let write_lladdr = |packet: &mut Packet<T>, kind: u8, lladdr: Option<EthernetAddress>| {
            if let Some(a) = lladdr {
                let opt = &mut packet.buffer.as_mut()[ND_HEADER_LEN..ND_HEADER_LEN + 8];
                opt[0] = kind;
                opt[1] = 1;
                opt[2..8].copy_from_slice(&a.0);
            }
        };
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
            Repr::PktTooBig { mtu, .. } => {
                packet.set_msg_type(Message::PktTooBig);
                packet.set_code(0);
                packet.set_mtu(mtu);
            }
            Repr::DstUnreachable { code, .. } => {
                packet.set_msg_type(Message::DstUnreachable);
                packet.set_code(code);
                packet.set_mtu(0);
            }
            Repr::TimeExceeded { code, .. } => {
                packet.set_msg_type(Message::TimeExceeded);
                packet.set_code(code);
                packet.set_mtu(0);
            }
            Repr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                packet.set_msg_type(Message::NeighborSolicit);
                packet.set_code(0);
                packet.set_mtu(0);
                packet.set_target_addr(target_addr);
                write_lladdr(packet, ndp_option::SOURCE_LL_ADDR, lladdr);
            }
            Repr::NeighborAdvert {
                router_flag,
                solicited_flag,
                override_flag,
                target_addr,
                lladdr,
            } => {
                packet.set_msg_type(Message::NeighborAdvert);
                packet.set_code(0);
                packet.set_na_flags(router_flag, solicited_flag, override_flag);
                packet.set_target_addr(target_addr);
                write_lladdr(packet, ndp_option::TARGET_LL_ADDR, lladdr);
            }
            Repr::Other { msg_type, code } => {
                packet.set_msg_type(msg_type);
                packet.set_code(code);
                packet.buffer.as_mut()[4..msg_type.header_len()].fill(0);
            }
        }
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn reference(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        bytes.extend_from_slice(msg);
        let mut s: u32 = bytes
            .chunks(2)
            .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]) as u32)
            .sum();
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    // Neighbour solicitation from fe80::5054:ff:fe12:3456 for
    // 2001:db8::10, with a source link-layer address option
    // 52:54:00:12:34:56 (checksum left 0, filled in the test).
    static NS: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // type, code, csum, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, // target
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // SLLAO
    ];

    // The matching solicited advertisement (S and O set) with a target
    // link-layer address option 02:00:00:00:0a:01.
    static NA: [u8; 32] = [
        0x88, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, // type, code, csum, flags
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, // target
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, // TLLAO
    ];

    fn with_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, b: &[u8; 32]) -> [u8; 32] {
        let mut b = *b;
        let c = reference(src, dst, &b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn read_ns() {
        let src = addr("fe80::5054:ff:fe12:3456");
        let dst = addr("ff02::1:ff00:10");
        let b = with_checksum(&src, &dst, &NS);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::NeighborSolicit);
        assert_eq!(p.code(), 0);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.target_addr(), addr("2001:db8::10"));
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&src, &addr("ff02::1")));
        assert_eq!(
            p.source_lladdr().unwrap(),
            Some(EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
        );
        assert_eq!(p.target_lladdr().unwrap(), None);
        let opts: Vec<_> = p.ndp_options().collect();
        assert_eq!(opts.len(), 1);
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::NeighborSolicit {
                target_addr: addr("2001:db8::10"),
                lladdr: Some(EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
            }
        );
    }

    #[test]
    fn build_na() {
        let src = addr("2001:db8::10");
        let dst = addr("fe80::5054:ff:fe12:3456");
        let repr = Repr::NeighborAdvert {
            router_flag: false,
            solicited_flag: true,
            override_flag: true,
            target_addr: addr("2001:db8::10"),
            lladdr: Some(EthernetAddress([2, 0, 0, 0, 10, 1])),
        };
        assert_eq!(repr.buffer_len(), 32);
        let mut buf = [0xffu8; 32];
        repr.emit(&src, &dst, &mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, with_checksum(&src, &dst, &NA));
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.router_flag() && p.solicited_flag() && p.override_flag());
        assert_eq!(
            p.target_lladdr().unwrap(),
            Some(EthernetAddress([2, 0, 0, 0, 10, 1]))
        );
        assert_eq!(Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn build_ns() {
        let src = addr("fe80::5054:ff:fe12:3456");
        let dst = addr("ff02::1:ff00:10");
        let repr = Repr::NeighborSolicit {
            target_addr: addr("2001:db8::10"),
            lladdr: Some(EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])),
        };
        let mut buf = [0u8; 32];
        repr.emit(&src, &dst, &mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, with_checksum(&src, &dst, &NS));
    }

    #[test]
    fn echo_and_packet_too_big() {
        let src = addr("2001:db8::1");
        let dst = addr("2001:db8::2");
        // Echo request ident 0x1234 seq 7 with "hi".
        let msg = [0x80, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, b'h', b'i'];
        let mut b = msg;
        b[2..4].copy_from_slice(&reference(&src, &dst, &msg).to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 7));
        assert_eq!(p.data(), b"hi");
        assert!(p.verify_checksum(&src, &dst));
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(
            repr,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 7,
                data_len: 2
            }
        );
        let mut out = [0u8; 10];
        let mut q = Packet::new_unchecked(&mut out[..]);
        q.data_mut().copy_from_slice(b"hi");
        repr.emit(&src, &dst, &mut q);
        assert_eq!(out, b);

        // Packet too big, MTU 1280, quoting 48 bytes.
        let repr = Repr::PktTooBig {
            mtu: 1280,
            data_len: 48,
        };
        let mut out = [0u8; 56];
        repr.emit(&src, &dst, &mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..8], [2, 0, out[2], out[3], 0, 0, 0x05, 0x00]);
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.mtu(), 1280);
        assert!(p.msg_type().is_error());
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(Repr::parse(&p).unwrap(), repr);
    }

    #[test]
    fn bad_options() {
        let mut b = NS;
        b[25] = 0; // option length 0
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.source_lladdr().unwrap_err(), Error::Malformed);
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Malformed);
        let mut b = NS;
        b[25] = 2; // runs past the end
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.source_lladdr().unwrap_err(), Error::Truncated);
        let p = Packet::new_checked(&NS[..25]).unwrap();
        assert_eq!(p.ndp_options().next(), Some(Err(Error::Truncated)));
        assert_eq!(
            Packet::new_checked(&NS[..23]).unwrap_err(),
            Error::Truncated
        );
        // A short echo has no target; the getter does not panic.
        let p = Packet::new_checked(&[0x80u8, 0, 0, 0, 0, 0, 0, 0][..]).unwrap();
        assert_eq!(p.target_addr(), Ipv6Addr::UNSPECIFIED);
    }

    #[test]
    fn types_round_trip() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(Message::from(n)), n);
        }
    }
}
