//! One `sock_diag` dump: the request, a parser for the kernel's answer, and
//! the netlink socket that carries them.
//!
//! The parser ([`DumpParser`]) is pure — bytes in, [`SockRecord`]s out — so
//! it is tested with fabricated messages and fed arbitrary bytes by a
//! property test; [`SockDiag`] only moves bytes.
//!
//! # The netlink rules this follows
//!
//! - A dump answer is a multipart message. netlink(7): "In multipart
//!   messages (multiple nlmsghdr headers with associated payload in one byte
//!   stream) the first and all following headers have the NLM_F_MULTI flag
//!   set, except for the last header which has the type NLMSG_DONE." One
//!   `recv` returns one datagram holding zero or more whole messages; the
//!   dump is over at `NLMSG_DONE` and not before, however many datagrams
//!   that takes.
//! - netlink(7): "NLMSG_ERROR message signals an error and the payload
//!   contains an nlmsgerr structure" whose `error` is a "Negative errno or 0
//!   for acknowledgements". A non-zero error ends the dump with
//!   [`DumpError::Kernel`]; zero (an acknowledgement) is ignored. The
//!   kernel also puts a negative errno in the `NLMSG_DONE` payload when a
//!   dump fails part-way, so that code is checked too.
//! - `<linux/netlink.h>`: `NLM_F_DUMP_INTR` means "Dump was inconsistent due
//!   to sequence change". Such a dump is thrown away
//!   ([`DumpError::Interrupted`]) and the caller dumps again.
//! - netlink(7): "The kernel can't send a netlink message if the socket
//!   buffer is full: the message will be dropped … It is up to the
//!   application to detect when this happens (via the ENOBUFS error returned
//!   by recvmsg(2)) and resynchronize." For a dump the way to resynchronize
//!   is to start a new dump on a new socket; [`SockDiag`] is dropped after
//!   any error for that reason (a socket whose dump was abandoned may still
//!   have one running in the kernel, which refuses a second with EBUSY).
//! - Messages whose sequence number is not the current request's are
//!   leftovers of an abandoned dump and are skipped; `NLMSG_NOOP` and types
//!   this module does not know are skipped too. Nothing the kernel (or
//!   anyone) sends makes the parser panic.
//!
//! # What is read from each socket
//!
//! The fixed `struct inet_diag_msg` header (family, state, the socket id
//! with both addresses and ports, the bound interface, uid, inode) through
//! [`InetResponseHeader::parse`], and of the attributes only
//! `INET_DIAG_SKV6ONLY`, found by walking them with
//! [`netlink_packet_core::NlasIterator`]. The other attributes are not
//! parsed at all, so an attribute a future kernel adds, or one the crate
//! decodes differently, cannot make a socket disappear from the inventory.
//! sock_diag(7) on `INET_DIAG_TCLASS`: "IPv6 sockets only. For LISTEN and
//! CLOSE sockets, this is followed by INET_DIAG_SKV6ONLY attribute with
//! associated __u8 payload value meaning whether the socket is IPv6-only or
//! not." IPv6 dumps therefore ask for `INET_DIAG_TCLASS` (current kernels
//! send `INET_DIAG_SKV6ONLY` for listening and unconnected sockets even
//! without it).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::Parseable;
use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, INET_DIAG_SKV6ONLY, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};
use vipa_proto::config::L4Protocol;

/// TCP states as the kernel numbers them (`include/net/tcp_states.h`); UDP
/// sockets reuse them (`TCP_CLOSE` = bound, unconnected; `TCP_ESTABLISHED`
/// = connected).
pub mod state {
    /// An open connection.
    pub const ESTABLISHED: u8 = 1;
    /// A SYN has been sent (client side of a handshake).
    pub const SYN_SENT: u8 = 2;
    /// A SYN has been received and answered (server side of a handshake).
    pub const SYN_RECV: u8 = 3;
    /// This side closed; its FIN is not acknowledged yet.
    pub const FIN_WAIT1: u8 = 4;
    /// This side closed and its FIN is acknowledged; the peer may still send.
    pub const FIN_WAIT2: u8 = 5;
    /// Both sides closed; waiting out stray segments.
    pub const TIME_WAIT: u8 = 6;
    /// No connection (for UDP: bound but not connected).
    pub const CLOSE: u8 = 7;
    /// The peer closed; this side may still send.
    pub const CLOSE_WAIT: u8 = 8;
    /// The peer closed, then this side; waiting for the last ACK.
    pub const LAST_ACK: u8 = 9;
    /// A listening socket.
    pub const LISTEN: u8 = 10;
    /// Both sides closed at the same time.
    pub const CLOSING: u8 = 11;

    /// The state's name as `ss` prints it.
    pub fn name(state: u8) -> &'static str {
        match state {
            ESTABLISHED => "ESTAB",
            SYN_SENT => "SYN-SENT",
            SYN_RECV => "SYN-RECV",
            FIN_WAIT1 => "FIN-WAIT-1",
            FIN_WAIT2 => "FIN-WAIT-2",
            TIME_WAIT => "TIME-WAIT",
            CLOSE => "UNCONN",
            CLOSE_WAIT => "CLOSE-WAIT",
            LAST_ACK => "LAST-ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            _ => "UNKNOWN",
        }
    }

    /// The `idiag_states` bit of `state`.
    pub const fn bit(state: u8) -> u32 {
        1 << state
    }
}

/// An IP address family to dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `AF_INET`.
    V4,
    /// `AF_INET6` (including IPv4 connections on dual-stack sockets, whose
    /// addresses are IPv4-mapped).
    V6,
}

impl Family {
    /// Both families, IPv4 first.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    fn af(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }

    /// `inet` or `inet6`, as `ss` says.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }
}

/// One socket as a dump reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SockRecord {
    /// The transport protocol that was dumped.
    pub protocol: L4Protocol,
    /// The family of the socket (a dual-stack IPv6 socket is [`Family::V6`]
    /// even when its addresses are IPv4-mapped).
    pub family: Family,
    /// The socket state ([`state`]).
    pub state: u8,
    /// The local address and port, with an IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) turned into the IPv4 address it stands for.
    pub local: SocketAddr,
    /// The remote address and port, mapped the same way; unspecified for
    /// listening and unconnected sockets.
    pub remote: SocketAddr,
    /// `INET_DIAG_SKV6ONLY` when the kernel sent it (IPv6 listening and
    /// unconnected sockets): whether the socket refuses IPv4.
    pub v6only: Option<bool>,
    /// The interface the socket is bound to (`SO_BINDTODEVICE`), 0 for none.
    pub interface: u32,
    /// The socket owner's uid.
    pub uid: u32,
    /// The socket's inode number.
    pub inode: u32,
}

/// Why a dump failed.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The kernel answered with an error (`NLMSG_ERROR`, or a negative code
    /// in `NLMSG_DONE`).
    #[error("the kernel refused the {family} {protocol} socket dump: {}", io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The family dumped.
        family: &'static str,
        /// The protocol dumped.
        protocol: L4Protocol,
        /// The errno (positive).
        errno: i32,
    },
    /// The kernel set `NLM_F_DUMP_INTR`: the table changed during the dump.
    #[error("the socket table changed during the dump (NLM_F_DUMP_INTR); dump again")]
    Interrupted,
    /// `NLMSG_OVERRUN`: data was lost.
    #[error("the kernel reported NLMSG_OVERRUN (data lost); dump again")]
    Overrun,
    /// A message that is not what sock_diag sends.
    #[error("unreadable sock_diag message: {0}")]
    Malformed(String),
}

/// What the bytes fed so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The dump goes on: receive more.
    More,
    /// `NLMSG_DONE` arrived: the dump is complete.
    Done,
}

/// Parses the answer to one dump request, datagram by datagram.
#[derive(Debug)]
pub struct DumpParser {
    sequence: u32,
    family: Family,
    protocol: L4Protocol,
    interrupted: bool,
    skipped: u64,
}

impl DumpParser {
    /// A parser for the answer to the request with `sequence`.
    pub fn new(sequence: u32, family: Family, protocol: L4Protocol) -> DumpParser {
        DumpParser {
            sequence,
            family,
            protocol,
            interrupted: false,
            skipped: 0,
        }
    }

    /// Messages skipped so far: other sequence numbers, `NLMSG_NOOP`,
    /// acknowledgements, unknown types.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Parses one received datagram, appending its sockets to `out`.
    ///
    /// Returns [`Progress::Done`] at `NLMSG_DONE` (anything after it in the
    /// datagram is ignored). On an error the dump is over and whatever was
    /// appended to `out` must be thrown away. Never panics.
    pub fn feed(
        &mut self,
        datagram: &[u8],
        out: &mut Vec<SockRecord>,
    ) -> Result<Progress, DumpError> {
        let mut rest = datagram;
        while !rest.is_empty() {
            let msg = NetlinkBuffer::new_checked(rest)
                .map_err(|e| DumpError::Malformed(format!("netlink header: {e}")))?;
            let len = msg.length() as usize;
            let payload = msg.payload();
            // NLMSG_ALIGN: each message starts on a 4-byte boundary; the
            // last one in a datagram may lack the padding.
            let step = len.saturating_add(3) & !3;
            rest = rest.get(step..).unwrap_or(&[]);

            if msg.sequence_number() != self.sequence {
                self.skipped += 1;
                continue;
            }
            if msg.flags() & NLM_F_DUMP_INTR != 0 {
                self.interrupted = true;
            }
            match msg.message_type() {
                NLMSG_NOOP => self.skipped += 1,
                NLMSG_ERROR => {
                    let err = ErrorBuffer::new_checked(payload)
                        .map_err(|e| DumpError::Malformed(format!("NLMSG_ERROR: {e}")))?;
                    match err.code() {
                        // error == 0 is an acknowledgement, not an error.
                        None => self.skipped += 1,
                        Some(code) => return Err(self.kernel_error(code.get())),
                    }
                }
                NLMSG_DONE => {
                    // Linux allows an empty NLMSG_DONE payload.
                    let code = if payload.len() < 4 {
                        0
                    } else {
                        DoneBuffer::new_checked(payload)
                            .map_err(|e| DumpError::Malformed(format!("NLMSG_DONE: {e}")))?
                            .code()
                    };
                    if code < 0 {
                        return Err(self.kernel_error(code));
                    }
                    if self.interrupted {
                        return Err(DumpError::Interrupted);
                    }
                    return Ok(Progress::Done);
                }
                NLMSG_OVERRUN => return Err(DumpError::Overrun),
                SOCK_DIAG_BY_FAMILY => out.push(self.record(payload)?),
                _ => self.skipped += 1,
            }
        }
        Ok(Progress::More)
    }

    fn kernel_error(&self, code: i32) -> DumpError {
        DumpError::Kernel {
            family: self.family.name(),
            protocol: self.protocol,
            errno: code.checked_neg().unwrap_or(i32::MAX),
        }
    }

    fn record(&self, payload: &[u8]) -> Result<SockRecord, DumpError> {
        let header = InetResponseHeader::parse(payload)
            .map_err(|e| DumpError::Malformed(format!("inet_diag_msg: {e}")))?;
        let family = match header.family {
            AF_INET => Family::V4,
            AF_INET6 => Family::V6,
            other => {
                return Err(DumpError::Malformed(format!(
                    "inet_diag_msg of address family {other} in an {} dump",
                    self.family.name()
                )))
            }
        };
        let id = &header.socket_id;
        // The attributes follow the fixed header, NLA-aligned.
        let attributes = payload.get(INET_DIAG_MSG_LEN..).unwrap_or(&[]);
        Ok(SockRecord {
            protocol: self.protocol,
            family,
            state: header.state,
            local: unmapped(id.source_address, id.source_port),
            remote: unmapped(id.destination_address, id.destination_port),
            v6only: v6only_attribute(attributes),
            interface: id.interface_id,
            uid: header.uid,
            inode: header.inode,
        })
    }
}

/// `sizeof(struct inet_diag_msg)`: 4 bytes, a 48-byte `inet_diag_sockid`,
/// then five `__u32`.
pub const INET_DIAG_MSG_LEN: usize = 4 + 48 + 5 * 4;

/// The value of `INET_DIAG_SKV6ONLY` among `attributes`, if present and
/// readable. A malformed attribute list ends the search (the socket is
/// still reported, as if the attribute were absent).
fn v6only_attribute(attributes: &[u8]) -> Option<bool> {
    NlasIterator::new(attributes)
        .map_while(Result::ok)
        .find(|nla| nla.kind() == INET_DIAG_SKV6ONLY)
        .and_then(|nla| nla.value().first().map(|&b| b != 0))
}

/// `ip:port`, with an IPv4-mapped IPv6 address turned into IPv4: a
/// dual-stack socket that accepted an IPv4 client reports both ends as
/// `::ffff:a.b.c.d`, and to the rest of vipa that is an IPv4 connection.
pub fn unmapped(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

/// The bytes of a dump request (`SOCK_DIAG_BY_FAMILY`, `NLM_F_REQUEST |
/// NLM_F_DUMP`, `struct inet_diag_req_v2`) for sockets of `family` and
/// `protocol` in any state of `states` (a mask of [`state::bit`]s).
pub fn dump_request(sequence: u32, family: Family, protocol: L4Protocol, states: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let (extensions, socket_id) = match family {
        Family::V4 => (ExtensionFlags::empty(), SocketId::new_v4()),
        // See the module documentation: asking for TCLASS is what the man
        // page ties INET_DIAG_SKV6ONLY to.
        Family::V6 => (ExtensionFlags::TCLASS, SocketId::new_v6()),
    };
    let request = InetRequest {
        family: family.af(),
        protocol: match protocol {
            L4Protocol::Tcp => IPPROTO_TCP,
            L4Protocol::Udp => IPPROTO_UDP,
        },
        extensions,
        states: StateFlags::from_bits_retain(states),
        socket_id,
    };
    let mut message = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    message.finalize();
    let mut bytes = vec![0u8; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

// ---------------------------------------------------------------------------
// The socket.
// ---------------------------------------------------------------------------

/// Largest datagram read. The kernel sizes a dump datagram by the largest
/// buffer the reader has offered, capped at 32 KiB (`netlink_recvmsg`);
/// twice that leaves room, and a truncated datagram is detected anyway.
const RECV_BUFFER: usize = 64 * 1024;

/// How long to wait for the kernel before giving up on a dump. A dump of
/// tens of thousands of sockets takes milliseconds; this only bounds a
/// kernel that never answers.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the sock_diag socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The dump itself failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// No answer within [`RECV_TIMEOUT`].
    #[error("the kernel did not answer a sock_diag dump within {} ms", RECV_TIMEOUT.as_millis())]
    Timeout,
    /// A datagram larger than the receive buffer.
    #[error("a sock_diag datagram of {len} bytes did not fit the {RECV_BUFFER}-byte buffer")]
    Truncated {
        /// The datagram's length.
        len: usize,
    },
}

/// A `NETLINK_SOCK_DIAG` socket that runs one dump at a time.
///
/// After an error the socket may still have a dump running in the kernel;
/// drop it and open a new one.
pub struct SockDiag {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for SockDiag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockDiag")
            .field("fd", &self.socket.as_raw_fd())
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl SockDiag {
    /// Opens a sock_diag socket in this thread's network namespace. Needs no
    /// privilege: any user may list sockets (as `ss` does).
    pub fn open() -> Result<SockDiag, SocketError> {
        let io = |what| move |source| SocketError::Io { what, source };
        let mut socket =
            Socket::new(NETLINK_SOCK_DIAG).map_err(io("opening a NETLINK_SOCK_DIAG socket"))?;
        socket
            .bind_auto()
            .map_err(io("binding the NETLINK_SOCK_DIAG socket"))?;
        set_receive_timeout(&socket, RECV_TIMEOUT)
            .map_err(io("setting SO_RCVTIMEO on the NETLINK_SOCK_DIAG socket"))?;
        Ok(SockDiag {
            socket,
            sequence: 0,
            buffer: vec![0u8; RECV_BUFFER],
        })
    }

    /// Dumps the sockets of `family` and `protocol` whose state is in
    /// `states` and appends them to `out` (on error, `out` may hold part of
    /// the dump and must be discarded).
    pub fn dump(
        &mut self,
        family: Family,
        protocol: L4Protocol,
        states: u32,
        out: &mut Vec<SockRecord>,
    ) -> Result<(), SocketError> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = dump_request(self.sequence, family, protocol, states);
        loop {
            match self.socket.send(&request, 0) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SocketError::Io {
                        what: "sending a sock_diag dump request",
                        source,
                    })
                }
            }
        }
        let mut parser = DumpParser::new(self.sequence, family, protocol);
        loop {
            // MSG_TRUNC: return the datagram's real length, so a datagram
            // larger than the buffer is seen rather than silently cut.
            let len = match self.socket.recv(&mut &mut self.buffer[..], libc::MSG_TRUNC) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(SocketError::Timeout)
                }
                Err(source) => {
                    return Err(SocketError::Io {
                        what: "receiving a sock_diag dump",
                        source,
                    })
                }
            };
            if len > self.buffer.len() {
                return Err(SocketError::Truncated { len });
            }
            if parser.feed(&self.buffer[..len], out)? == Progress::Done {
                return Ok(());
            }
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is an initialised `timeval` that outlives the call, the
    // length passed is its size, and the kernel only reads it; the fd is
    // open for as long as `socket` lives.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEQ: u32 = 7;
    const NLM_F_MULTI: u16 = 0x2;

    /// One netlink message, padded to 4 bytes, built by hand (not with the
    /// crates under test).
    pub(crate) fn nlmsg(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut m = Vec::with_capacity(len + 3);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(len.next_multiple_of(4), 0);
        m
    }

    /// One netlink attribute, padded.
    pub(crate) fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut a = Vec::new();
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(len.next_multiple_of(4), 0);
        a
    }

    fn addr16(ip: IpAddr) -> [u8; 16] {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => b = v6.octets(),
        }
        b
    }

    /// A `struct inet_diag_msg` followed by `attributes`.
    pub(crate) fn inet_diag_msg(
        family: u8,
        state: u8,
        local: SocketAddr,
        remote: SocketAddr,
        interface: u32,
        attributes: &[u8],
    ) -> Vec<u8> {
        let mut m = vec![family, state, 0, 0];
        m.extend_from_slice(&local.port().to_be_bytes());
        m.extend_from_slice(&remote.port().to_be_bytes());
        m.extend_from_slice(&addr16(local.ip()));
        m.extend_from_slice(&addr16(remote.ip()));
        m.extend_from_slice(&interface.to_ne_bytes());
        m.extend_from_slice(&[0xab; 8]); // cookie
        for v in [0u32, 1, 2, 1000, 123_456] {
            // expires, rqueue, wqueue, uid, inode
            m.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(m.len(), INET_DIAG_MSG_LEN);
        m.extend_from_slice(attributes);
        m
    }

    pub(crate) fn sock_msg(
        family: u8,
        state: u8,
        local: &str,
        remote: &str,
        attributes: &[u8],
    ) -> Vec<u8> {
        let payload = inet_diag_msg(
            family,
            state,
            local.parse().unwrap(),
            remote.parse().unwrap(),
            0,
            attributes,
        );
        nlmsg(SOCK_DIAG_BY_FAMILY, NLM_F_MULTI, SEQ, &payload)
    }

    fn done(code: i32) -> Vec<u8> {
        nlmsg(NLMSG_DONE, NLM_F_MULTI, SEQ, &code.to_ne_bytes())
    }

    fn error(code: i32) -> Vec<u8> {
        let mut p = code.to_ne_bytes().to_vec();
        p.extend_from_slice(&[0u8; 16]); // the request's header
        nlmsg(NLMSG_ERROR, 0, SEQ, &p)
    }

    fn parse(datagrams: &[Vec<u8>]) -> (Result<Progress, DumpError>, Vec<SockRecord>) {
        let mut parser = DumpParser::new(SEQ, Family::V6, L4Protocol::Tcp);
        let mut out = Vec::new();
        let mut last = Ok(Progress::More);
        for d in datagrams {
            last = parser.feed(d, &mut out);
            if !matches!(last, Ok(Progress::More)) {
                break;
            }
        }
        (last, out)
    }

    #[test]
    fn request_is_an_inet_diag_req_v2_dump() {
        let states = state::bit(state::LISTEN) | state::bit(state::ESTABLISHED);
        let r = dump_request(9, Family::V6, L4Protocol::Tcp, states);
        // nlmsghdr (16) + inet_diag_req_v2 (1+1+1+1+4+48 = 56)
        assert_eq!(r.len(), 72);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20); // SOCK_DIAG_BY_FAMILY
        let flags = u16::from_ne_bytes(r[6..8].try_into().unwrap());
        assert_eq!(flags, 0x01 | 0x300, "NLM_F_REQUEST | NLM_F_DUMP");
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 9);
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(r[18], 1 << (6 - 1), "INET_DIAG_TCLASS, for SKV6ONLY");
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), states);
        assert!(r[24..].iter().all(|&b| b == 0), "no socket id in a dump");

        let r = dump_request(1, Family::V4, L4Protocol::Udp, 1 << state::CLOSE);
        assert_eq!((r[16], r[17], r[18]), (libc::AF_INET as u8, 17, 0));
    }

    #[test]
    fn a_dump_spans_datagrams_until_done() {
        let first = [
            sock_msg(AF_INET, state::LISTEN, "10.0.0.1:80", "0.0.0.0:0", &[]),
            sock_msg(
                AF_INET,
                state::ESTABLISHED,
                "10.0.0.1:80",
                "10.9.9.9:40000",
                &[],
            ),
        ]
        .concat();
        let second = [
            sock_msg(AF_INET6, state::LISTEN, "[::]:443", "[::]:0", &[]),
            done(0),
        ]
        .concat();
        let mut parser = DumpParser::new(SEQ, Family::V4, L4Protocol::Tcp);
        let mut out = Vec::new();
        assert_eq!(parser.feed(&first, &mut out).unwrap(), Progress::More);
        assert_eq!(out.len(), 2);
        assert_eq!(parser.feed(&second, &mut out).unwrap(), Progress::Done);
        assert_eq!(out.len(), 3);
        assert_eq!(parser.skipped(), 0);
    }

    #[test]
    fn every_field_of_a_record_is_read() {
        let payload = inet_diag_msg(
            AF_INET,
            state::ESTABLISHED,
            "10.99.0.100:8080".parse().unwrap(),
            "10.99.0.10:40001".parse().unwrap(),
            3,
            &nla(8, &[0]), // INET_DIAG_SHUTDOWN
        );
        let (r, out) = parse(&[[nlmsg(SOCK_DIAG_BY_FAMILY, 2, SEQ, &payload), done(0)].concat()]);
        assert_eq!(r.unwrap(), Progress::Done);
        assert_eq!(
            out,
            vec![SockRecord {
                protocol: L4Protocol::Tcp,
                family: Family::V4,
                state: state::ESTABLISHED,
                local: "10.99.0.100:8080".parse().unwrap(),
                remote: "10.99.0.10:40001".parse().unwrap(),
                v6only: None,
                interface: 3,
                uid: 1000,
                inode: 123_456,
            }]
        );
    }

    #[test]
    fn v6only_is_read_after_other_attributes() {
        let tclass = nla(6, &[0]);
        let attrs = |v: u8| [tclass.clone(), nla(INET_DIAG_SKV6ONLY, &[v])].concat();
        let msgs = [
            sock_msg(AF_INET6, state::LISTEN, "[::]:80", "[::]:0", &attrs(1)),
            sock_msg(AF_INET6, state::LISTEN, "[::]:81", "[::]:0", &attrs(0)),
            sock_msg(AF_INET6, state::LISTEN, "[::]:82", "[::]:0", &tclass),
            // A broken attribute list: the socket stays, v6only unknown.
            sock_msg(AF_INET6, state::LISTEN, "[::]:83", "[::]:0", &[9, 0, 11, 0]),
            done(0),
        ];
        let (r, out) = parse(&[msgs.concat()]);
        assert_eq!(r.unwrap(), Progress::Done);
        let v6only: Vec<_> = out.iter().map(|r| (r.local.port(), r.v6only)).collect();
        assert_eq!(
            v6only,
            [(80, Some(true)), (81, Some(false)), (82, None), (83, None)]
        );
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let m = sock_msg(
            AF_INET6,
            state::ESTABLISHED,
            "[::ffff:10.99.0.100]:80",
            "[::ffff:10.99.0.10]:40000",
            &[],
        );
        let (_, out) = parse(&[[m, done(0)].concat()]);
        assert_eq!(out[0].family, Family::V6);
        assert_eq!(out[0].local, "10.99.0.100:80".parse().unwrap());
        assert_eq!(out[0].remote, "10.99.0.10:40000".parse().unwrap());
        // A real IPv6 address is left alone.
        assert_eq!(
            unmapped(IpAddr::V6(Ipv6Addr::LOCALHOST), 1),
            "[::1]:1".parse().unwrap()
        );
        assert_eq!(
            unmapped(IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
            "127.0.0.1:1".parse().unwrap()
        );
    }

    #[test]
    fn kernel_errors_end_the_dump() {
        let (r, _) = parse(&[error(-libc::ENOENT)]);
        assert!(
            matches!(r, Err(DumpError::Kernel { errno, protocol: L4Protocol::Tcp, family: "inet6" }) if errno == libc::ENOENT),
            "{r:?}"
        );
        let (r, _) = parse(&[[
            sock_msg(AF_INET, 10, "1.2.3.4:5", "0.0.0.0:0", &[]),
            done(-libc::ENOMEM),
        ]
        .concat()]);
        assert!(
            matches!(r, Err(DumpError::Kernel { errno, .. }) if errno == libc::ENOMEM),
            "{r:?}"
        );
        let (r, _) = parse(&[nlmsg(NLMSG_OVERRUN, 0, SEQ, &[])]);
        assert!(matches!(r, Err(DumpError::Overrun)), "{r:?}");
        // i32::MIN has no positive errno; it must not overflow.
        let (r, _) = parse(&[error(i32::MIN)]);
        assert!(
            matches!(
                r,
                Err(DumpError::Kernel {
                    errno: i32::MAX,
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn acknowledgements_noops_strays_and_unknown_types_are_skipped() {
        let stray = nlmsg(
            SOCK_DIAG_BY_FAMILY,
            2,
            SEQ - 1,
            &inet_diag_msg(
                AF_INET,
                10,
                "1.1.1.1:1".parse().unwrap(),
                "0.0.0.0:0".parse().unwrap(),
                0,
                &[],
            ),
        );
        let msgs = [
            error(0),
            nlmsg(NLMSG_NOOP, 0, SEQ, &[]),
            stray,
            nlmsg(0x1234, 0, SEQ, b"what"),
            sock_msg(AF_INET, state::LISTEN, "10.0.0.1:80", "0.0.0.0:0", &[]),
            nlmsg(NLMSG_DONE, 2, SEQ, &[]), // an empty NLMSG_DONE is allowed
        ];
        let mut parser = DumpParser::new(SEQ, Family::V4, L4Protocol::Tcp);
        let mut out = Vec::new();
        assert_eq!(
            parser.feed(&msgs.concat(), &mut out).unwrap(),
            Progress::Done
        );
        assert_eq!(out.len(), 1);
        assert_eq!(parser.skipped(), 4);
    }

    #[test]
    fn an_interrupted_dump_is_thrown_away() {
        let mut m = sock_msg(AF_INET, state::LISTEN, "10.0.0.1:80", "0.0.0.0:0", &[]);
        m[6..8].copy_from_slice(&(NLM_F_MULTI | NLM_F_DUMP_INTR).to_ne_bytes());
        let (r, _) = parse(&[m, done(0)]);
        assert!(matches!(r, Err(DumpError::Interrupted)), "{r:?}");
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let good = sock_msg(AF_INET, state::LISTEN, "10.0.0.1:80", "0.0.0.0:0", &[]);
        let mut cases: Vec<Vec<u8>> = vec![
            good[..10].to_vec(), // shorter than a header
            {
                let mut m = good.clone();
                m[0..4].copy_from_slice(&1000u32.to_ne_bytes()); // longer than the datagram
                m
            },
            {
                let mut m = good.clone();
                m[0..4].copy_from_slice(&8u32.to_ne_bytes()); // shorter than a header
                m
            },
            // An inet_diag_msg cut short.
            nlmsg(SOCK_DIAG_BY_FAMILY, 2, SEQ, &good[16..60]),
            // A family that is neither AF_INET nor AF_INET6.
            {
                let mut m = good.clone();
                m[16] = libc::AF_UNIX as u8;
                m
            },
            // An NLMSG_ERROR too short for its error code.
            nlmsg(NLMSG_ERROR, 0, SEQ, &[1, 2]),
        ];
        for (n, c) in cases.drain(..).enumerate() {
            let (r, _) = parse(&[c]);
            assert!(matches!(r, Err(DumpError::Malformed(_))), "case {n}: {r:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut out = Vec::new();
            let _ = DumpParser::new(SEQ, Family::V4, L4Protocol::Tcp).feed(&bytes, &mut out);
        }

        #[test]
        fn never_panics_on_well_framed_messages_with_any_payload(
            kind in proptest::prop_oneof![proptest::strategy::Just(SOCK_DIAG_BY_FAMILY), proptest::strategy::Just(NLMSG_ERROR), proptest::strategy::Just(NLMSG_DONE), 0u16..64],
            flags in proptest::num::u16::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let mut out = Vec::new();
            let _ = DumpParser::new(SEQ, Family::V6, L4Protocol::Udp).feed(&nlmsg(kind, flags, SEQ, &payload), &mut out);
        }

        #[test]
        fn never_panics_on_damaged_dumps(pos in 0usize..400, xor in 1u8..=255, cut in 0usize..400) {
            let v6only = nla(INET_DIAG_SKV6ONLY, &[1]);
            let mut d = [
                sock_msg(AF_INET6, state::LISTEN, "[::]:80", "[::]:0", &v6only),
                sock_msg(AF_INET, state::ESTABLISHED, "10.0.0.1:80", "10.0.0.2:9", &[]),
                done(0),
            ].concat();
            let p = pos % d.len();
            d[p] ^= xor;
            d.truncate(d.len() - cut % d.len());
            let mut out = Vec::new();
            let _ = DumpParser::new(SEQ, Family::V6, L4Protocol::Tcp).feed(&d, &mut out);
        }
    }
}
