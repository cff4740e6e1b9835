//! Wire formats: zero-copy views over packet bytes, one module per header.
//!
//! Every header module follows the same pattern:
//!
//! * `Packet<T: AsRef<[u8]>>` is a *view* over a buffer. Its fields are byte
//!   ranges in a private `field` module; getters read straight from the
//!   buffer, setters (on `T: AsMut<[u8]>`) write straight into it. Nothing is
//!   copied and nothing is allocated.
//! * `Packet::new_unchecked` wraps any buffer; `Packet::new_checked` also
//!   calls `check_len`, which validates exactly what the getters need.
//! * `Repr` is a plain, owned summary of a header for the slow path:
//!   `Repr::parse` reads it from a checked view, `Repr::emit` writes it into
//!   a view whose buffer is at least `Repr::buffer_len` bytes long.
//!
//! # The no-panic rule
//!
//! Once `check_len` (or `new_checked`) has returned `Ok`, no getter, no
//! `payload()`, and no `Repr::parse` panics, whatever the bytes are. This is
//! what the property tests and the fuzz target check. Setters and
//! `Repr::emit` may panic when the buffer is too short for what they are
//! asked to write: sizing the buffer is the writer's job.
//!
//! # Checksums
//!
//! * `Repr::parse` verifies the checksums that depend on nothing but the
//!   packet itself (IPv4 header, ICMPv4, GRE with the C bit) and returns
//!   [`Error::BadChecksum`] when they are wrong.
//! * Checksums over a pseudo-header (TCP, UDP, ICMPv6) need the IP addresses:
//!   `Repr::parse` does not verify them; the caller uses
//!   `verify_checksum_v4` / `verify_checksum_v6` (TCP, UDP) or
//!   `verify_checksum(src, dst)` (ICMPv6) on the view.
//! * `Repr::emit` fills the IPv4 header checksum. ICMPv4, ICMPv6 and GRE
//!   checksums cover the payload, so their `emit` computes them over the
//!   buffer as it stands (ICMPv6's `emit` takes the addresses for that):
//!   write the payload first, or call `fill_checksum` again after. TCP and
//!   UDP `emit` leave the checksum at zero: write the payload, then call
//!   `fill_checksum_v4` / `fill_checksum_v6`.
//!
//! Addresses are `core::net::Ipv4Addr` / `Ipv6Addr` and [`EthernetAddress`].

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use self::ethernet::{EtherType, EthernetAddress};
pub use self::ip::IpProtocol;

/// Why a packet could not be parsed.
///
/// `Copy` and payload-free so the per-packet path can map it to a drop
/// counter without formatting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header (or a length field) says.
    #[error("truncated packet")]
    Truncated,
    /// A field has a value the protocol forbids.
    #[error("malformed packet")]
    Malformed,
    /// A valid packet that vipa does not handle (other ARP hardware, GRE
    /// version, IPv4 options or fragments in `Repr::parse`, ...).
    #[error("unsupported packet")]
    Unsupported,
    /// The checksum does not match the bytes.
    #[error("bad checksum")]
    BadChecksum,
}

/// The result of parsing.
pub type Result<T> = core::result::Result<T, Error>;
