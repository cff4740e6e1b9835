//! User-space GRE decapsulation on a target: AF_PACKET in, TUN out.
//!
//! # Why this exists
//!
//! A vipa forwarder reaches its targets with GRE (RFC 2784): the client's
//! packet, byte for byte, behind an outer IPv4 / IPv6 header from the node's
//! tunnel address to the target, and a 4-byte GRE header (DESIGN.md §4). The
//! target must take the inner packet out and hand it to its own network
//! stack, which owns the VIPA on a loopback interface and answers the client
//! directly (direct server return).
//!
//! The usual way is the kernel's GRE device, but many kernels — container
//! hosts, minimal cloud images, and this project's CI machine — are built
//! without the `ip_gre` / `ip6_gre` modules. This module does the same job in
//! user space:
//!
//! 1. an `AF_PACKET` socket on one interface (`--iface`) receives every frame
//!    the interface receives (it taps, it does not steal);
//! 2. [`classify`] keeps only frames addressed to this host
//!    (`sll_pkttype == PACKET_HOST`) that carry IPv4 or IPv6 with protocol 47
//!    and a valid GRE header whose payload is IPv4 or IPv6, and returns the
//!    inner packet;
//! 3. the inner packet is written to a TUN device (`--tun`, created with
//!    `IFF_TUN | IFF_NO_PI` and brought up), so the kernel receives it as if
//!    it had arrived on that interface.
//!
//! Every frame is counted: received, decapsulated, or dropped for exactly one
//! [`DropReason`]. The counters are returned by [`run`] when it stops.
//!
//! # What the target must be set up with
//!
//! - the VIPA as a /32 (or /128) on `lo`, and the application listening on
//!   `VIPA:port`;
//! - `net.ipv4.conf.all.arp_ignore=1` and `arp_announce=2`, so the target
//!   never answers ARP for the VIPA (the forwarder does);
//! - `rp_filter=0` (`all`, `default` and the interfaces): packets from the
//!   client arrive on the TUN, but the route back to the client is via the
//!   physical interface, which strict reverse-path filtering would reject;
//! - GRE dropped on input, e.g. `nft add rule inet filter input meta l4proto
//!   gre drop`: without a GRE module the kernel would otherwise answer every
//!   tunnelled packet with ICMP protocol-unreachable. The AF_PACKET socket
//!   sees the frames before netfilter, so this does not hide them from us.
//!
//! # The kernel-GRE alternative
//!
//! Where the kernel has GRE (`modprobe ip_gre` succeeds), no agent is needed
//! for the data path, and no nftables rule either:
//!
//! ```text
//! modprobe ip_gre                   # creates gre0, the fallback device that
//! ip link set gre0 up               # receives GRE no other tunnel claims
//! ip addr add VIPA/32 dev lo
//! sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
//!           net.ipv4.conf.gre0.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0
//! sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
//! ```
//!
//! A named device works too (`ip link add vipa-gre type gre local
//! TARGET_ADDR`, remote left as any, then its own `rp_filter=0`). For GRE
//! over IPv6 (IPv6 targets) load `ip6_gre` and use `ip6gre0` or `ip link add
//! … type ip6gre local TARGET_ADDR`. The kernel then decapsulates in place,
//! which is much cheaper than a copy through user space.
//!
//! # Limits
//!
//! - One frame per `recvfrom` and one `write` per packet: fine for a lab or a
//!   low-rate target, not a fast path.
//! - Outer IPv4 fragments are dropped (the forwarder never fragments: it sends
//!   ICMP fragmentation-needed instead, DESIGN.md §4), as are outer IPv6
//!   packets with extension headers before GRE (they are counted as
//!   [`DropReason::NotGre`]).
//! - The outer destination address is not compared with the host's
//!   addresses: a frame sent to this host's MAC is trusted to be for it.
//! - The inner packet's own checksums are the kernel's business: a veth lab
//!   must turn checksum offload off (`ethtool -K IF tx off`) on the path
//!   through the forwarder, or the inner TCP checksum is never finished.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vipa_proto::wire::{ethernet, gre, ipv4, ipv6, EtherType};

/// `sll_pkttype` of a frame addressed to this host's MAC (`<linux/if_packet.h>`).
pub const PACKET_HOST: u8 = 0;
/// `sll_pkttype` of a broadcast frame.
pub const PACKET_BROADCAST: u8 = 1;
/// `sll_pkttype` of a multicast frame.
pub const PACKET_MULTICAST: u8 = 2;
/// `sll_pkttype` of a frame for another host (promiscuous mode).
pub const PACKET_OTHERHOST: u8 = 3;
/// `sll_pkttype` of a frame this host sends.
pub const PACKET_OUTGOING: u8 = 4;
/// `SOL_PACKET` option: do not deliver outgoing frames (Linux ≥ 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Largest frame read: a 64 KiB IP packet behind Ethernet and a tag.
const RECV_BUF: usize = 65_535 + 18;
/// How often the receive loop checks the stop flag.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);
/// How often the counters are logged (at debug level) while running.
const LOG_EVERY: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The decision: frame bytes → inner packet or drop reason. Pure.
// ---------------------------------------------------------------------------

/// Defines [`DropReason`] with its names, in one place.
macro_rules! drop_reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Why a received frame was not written to the TUN device.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl DropReason {
            /// All reasons, in index order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();

            /// The reason's stable snake_case name (logs, counters).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    /// Not addressed to this host's MAC: broadcast, multicast, another host's
    /// (promiscuous mode) or sent by this host.
    NotForUs = "not_for_us",
    /// Not IPv4 / IPv6 with protocol 47 (ARP, TCP, UDP, IPv6 extension
    /// headers before GRE, a frame shorter than an Ethernet header …).
    NotGre = "not_gre",
    /// Protocol 47, but the outer IP header is broken: truncated, wrong
    /// version, bad IPv4 header checksum.
    BadOuterIp = "bad_outer_ip",
    /// Protocol 47 in an outer IPv4 fragment (vipa never fragments).
    OuterFragment = "outer_fragment",
    /// The GRE header is invalid: truncated, version not 0, or RFC 1701
    /// bits set (RFC 2784 §2.5, §2.3.1).
    BadGre = "bad_gre",
    /// The GRE checksum is present and wrong.
    GreChecksum = "gre_checksum",
    /// The GRE protocol type is neither IPv4 (0x0800) nor IPv6 (0x86DD),
    /// e.g. transparent Ethernet bridging (0x6558).
    GreProtocol = "gre_protocol",
    /// The inner packet is not a whole IP packet of the family the GRE
    /// protocol type names.
    BadInner = "bad_inner",
    /// Writing the inner packet to the TUN device failed.
    TunWrite = "tun_write",
}

/// What to do with one received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Write this inner IP packet (exactly its IP length, padding removed)
    /// to the TUN device.
    Deliver(&'a [u8]),
    /// Drop the frame and count it.
    Drop(DropReason),
}

/// Decides what to do with `frame` (an Ethernet frame as an `AF_PACKET`
/// socket delivers it) received with `sll_pkttype == pkttype`.
///
/// Accepts only frames addressed to this host ([`PACKET_HOST`]) that are
/// IPv4 (no fragment; options skipped; header checksum verified) or IPv6
/// (GRE as the first next header) with protocol 47, and a GRE header that is
/// valid per RFC 2784 (version 0; key and sequence number of RFC 2890
/// allowed and skipped; the checksum verified when present) whose protocol
/// type is IPv4 or IPv6. One 802.1Q tag is allowed. Never panics, whatever
/// the bytes.
pub fn classify(pkttype: u8, frame: &[u8]) -> Decision<'_> {
    match decapsulate(pkttype, frame) {
        Ok(inner) => Decision::Deliver(inner),
        Err(reason) => Decision::Drop(reason),
    }
}

fn decapsulate(pkttype: u8, frame: &[u8]) -> Result<&[u8], DropReason> {
    if pkttype != PACKET_HOST {
        return Err(DropReason::NotForUs);
    }
    let eth = ethernet::Packet::new_checked(frame).map_err(|_| DropReason::NotGre)?;
    let ethertype = eth.payload_ethertype();
    let l3 = eth.into_payload();
    let gre_bytes = match ethertype {
        EtherType::Ipv4 => outer_ipv4(l3)?,
        EtherType::Ipv6 => outer_ipv6(l3)?,
        _ => return Err(DropReason::NotGre),
    };
    let gre = gre::Packet::new_checked(gre_bytes).map_err(|_| DropReason::BadGre)?;
    // RFC 2784 §2.5: the checksum covers "the GRE header and the payload
    // packet"; a receiver with C set verifies it.
    if !gre.verify_checksum() {
        return Err(DropReason::GreChecksum);
    }
    let protocol = gre.protocol_type();
    let inner = gre.into_payload();
    match protocol {
        EtherType::Ipv4 => {
            let ip = ipv4::Packet::new_checked(inner).map_err(|_| DropReason::BadInner)?;
            if ip.version() != 4 {
                return Err(DropReason::BadInner);
            }
            Ok(&inner[..usize::from(ip.total_len())])
        }
        EtherType::Ipv6 => {
            let ip = ipv6::Packet::new_checked(inner).map_err(|_| DropReason::BadInner)?;
            if ip.version() != 6 {
                return Err(DropReason::BadInner);
            }
            Ok(&inner[..ipv6::HEADER_LEN + usize::from(ip.payload_len())])
        }
        _ => Err(DropReason::GreProtocol),
    }
}

/// The GRE bytes of an outer IPv4 packet (up to its total length, so
/// Ethernet padding is not taken for payload).
fn outer_ipv4(l3: &[u8]) -> Result<&[u8], DropReason> {
    // Not protocol 47 (or too short to say): not ours to judge.
    if l3.get(9) != Some(&gre::PROTOCOL) || l3.len() < ipv4::HEADER_LEN {
        return Err(DropReason::NotGre);
    }
    let ip = ipv4::Packet::new_checked(l3).map_err(|_| DropReason::BadOuterIp)?;
    if ip.version() != 4 || !ip.verify_checksum() {
        return Err(DropReason::BadOuterIp);
    }
    if ip.is_fragment() {
        return Err(DropReason::OuterFragment);
    }
    Ok(ip.into_payload())
}

/// The GRE bytes of an outer IPv6 packet whose next header is GRE.
fn outer_ipv6(l3: &[u8]) -> Result<&[u8], DropReason> {
    if l3.len() < ipv6::HEADER_LEN || l3[6] != gre::PROTOCOL {
        return Err(DropReason::NotGre);
    }
    let ip = ipv6::Packet::new_checked(l3).map_err(|_| DropReason::BadOuterIp)?;
    if ip.version() != 6 {
        return Err(DropReason::BadOuterIp);
    }
    Ok(ip.into_payload())
}

// ---------------------------------------------------------------------------
// Counters.
// ---------------------------------------------------------------------------

/// What the decapsulator counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecapCounters {
    /// Frames read from the interface.
    pub received: u64,
    /// Inner packets written to the TUN device.
    pub decapsulated: u64,
    /// Bytes of those inner packets.
    pub decapsulated_bytes: u64,
    /// Frames dropped, indexed by [`DropReason`] as `usize`.
    pub drops: [u64; DropReason::COUNT],
}

impl DecapCounters {
    /// Counts one dropped frame.
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Every counter by name, in a fixed order: `received`,
    /// `decapsulated`, `decapsulated_bytes`, then `drop_<reason>`.
    pub fn named(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("received".to_string(), self.received),
            ("decapsulated".to_string(), self.decapsulated),
            ("decapsulated_bytes".to_string(), self.decapsulated_bytes),
        ];
        v.extend(
            DropReason::ALL
                .iter()
                .map(|&r| (format!("drop_{}", r.name()), self.dropped(r))),
        );
        v
    }

    /// The drop reasons that happened, as `reason=count` words (`none`
    /// when nothing was dropped).
    pub fn nonzero_drops(&self) -> String {
        let words: Vec<String> = DropReason::ALL
            .iter()
            .filter(|&&r| self.dropped(r) != 0)
            .map(|&r| format!("{}={}", r.name(), self.dropped(r)))
            .collect();
        if words.is_empty() {
            "none".to_string()
        } else {
            words.join(" ")
        }
    }

    /// One `name value` line per counter, for people and scripts.
    pub fn to_text(&self) -> String {
        self.named()
            .into_iter()
            .map(|(k, v)| format!("{k:<24} {v}\n"))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------

/// Why the decapsulator could not start or stopped. Each message says what
/// to do.
#[derive(Debug, thiserror::Error)]
pub enum DecapError {
    /// An interface name that Linux cannot have.
    #[error("{option} {name:?} is not a valid interface name: use 1 to 15 bytes without '/', whitespace or NUL")]
    InvalidName {
        /// Which option gave it (`--iface`, `--tun`).
        option: &'static str,
        /// The name given.
        name: String,
    },
    /// `--iface` names no interface in this network namespace.
    #[error("interface {iface:?} does not exist in this network namespace; the interfaces here are: {available} (see `ip link`); pass one of them with --iface")]
    InterfaceMissing {
        /// The name given.
        iface: String,
        /// The interfaces that exist.
        available: String,
    },
    /// `/dev/net/tun` is not there.
    #[error("cannot open /dev/net/tun ({detail}): load the tun module (`modprobe tun`), or run in a namespace or container that has /dev/net/tun (e.g. `docker run --device /dev/net/tun --cap-add NET_ADMIN`)")]
    TunMissing {
        /// The system's error.
        detail: String,
    },
    /// The TUN device name is taken.
    #[error("cannot create TUN device {name:?} ({detail}): an interface of that name exists and is not a free TUN device (another vipa-agent, or another kind of interface); pick another --tun name or delete it (`ip link del {name}`)")]
    TunBusy {
        /// The name given.
        name: String,
        /// The system's error.
        detail: String,
    },
    /// Not allowed to open a packet socket or create a TUN device.
    #[error("{what} was refused ({detail}): vipa-agent decap needs root, or CAP_NET_RAW and CAP_NET_ADMIN (e.g. `setcap cap_net_raw,cap_net_admin+ep vipa-agent`)")]
    Permission {
        /// What was attempted.
        what: String,
        /// The system's error.
        detail: String,
    },
    /// Any other system error.
    #[error("{what}: {source}")]
    Io {
        /// What was attempted.
        what: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

fn io_error(what: impl Into<String>, source: io::Error) -> DecapError {
    let what = what.into();
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => DecapError::Permission {
            what,
            detail: source.to_string(),
        },
        _ => DecapError::Io { what, source },
    }
}

fn check_ifname(option: &'static str, name: &str) -> Result<CString, DecapError> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name.contains(['/', '\0'])
        || name.chars().any(char::is_whitespace);
    if bad {
        return Err(DecapError::InvalidName {
            option,
            name: name.to_string(),
        });
    }
    CString::new(name).map_err(|_| DecapError::InvalidName {
        option,
        name: name.to_string(),
    })
}

/// The interface names of this network namespace, for error messages.
fn interface_names() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        "(none found)".to_string()
    } else {
        names.join(", ")
    }
}

fn ifreq_with_name(name: &CString) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of
    // integers, addresses and a pointer); all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

// ---------------------------------------------------------------------------
// The TUN device.
// ---------------------------------------------------------------------------

/// A TUN device (`IFF_TUN | IFF_NO_PI`) owned by this process: it disappears
/// when dropped (it is not persistent).
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates (or attaches to a free, non-persistent) TUN device `name`
    /// and brings it up.
    pub fn open(name: &str) -> Result<Tun, DecapError> {
        let cname = check_ifname("--tun", name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => DecapError::TunMissing {
                    detail: e.to_string(),
                },
                _ if e.raw_os_error() == Some(libc::ENODEV)
                    || e.raw_os_error() == Some(libc::ENXIO) =>
                {
                    DecapError::TunMissing {
                        detail: e.to_string(),
                    }
                }
                _ => io_error("opening /dev/net/tun", e),
            })?;
        let mut req = ifreq_with_name(&cname);
        // IFF_TUN: IP packets, no Ethernet header. IFF_NO_PI: no 4-byte
        // packet-information prefix; the kernel reads the family from the
        // version nibble of each packet written.
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; `req` is a
        // valid, initialised ifreq that lives across the call, and the fd is
        // an open /dev/net/tun.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) | Some(libc::EINVAL) | Some(libc::EEXIST) => {
                    DecapError::TunBusy {
                        name: name.to_string(),
                        detail: e.to_string(),
                    }
                }
                _ => io_error(format!("creating TUN device {name:?}"), e),
            });
        }
        // The kernel writes back the name it used.
        let actual: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let tun = Tun {
            file,
            name: String::from_utf8_lossy(&actual).into_owned(),
        };
        tun.set_up()?;
        Ok(tun)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets `IFF_UP` with SIOCGIFFLAGS / SIOCSIFFLAGS on a datagram socket.
    fn set_up(&self) -> Result<(), DecapError> {
        let what = || format!("bringing TUN device {:?} up", self.name);
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io_error(what(), io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let cname = check_ifname("--tun", &self.name)?;
        let mut req = ifreq_with_name(&cname);
        // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into
        // `req`, a valid ifreq that lives across the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io_error(what(), io::Error::last_os_error()));
        }
        // SAFETY: SIOCGIFFLAGS filled `ifru_flags`, so reading that union
        // member reads initialised memory.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        // SAFETY: SIOCSIFFLAGS only reads `req`, valid for the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io_error(what(), io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Writes one IP packet; the kernel receives it on the device.
    pub fn write_packet(&self, packet: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(packet)?;
        if n != packet.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", packet.len()),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The packet socket.
// ---------------------------------------------------------------------------

/// A blocking `AF_PACKET` / `SOCK_RAW` socket bound to one interface, with a
/// receive timeout so the caller can check a stop flag.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    iface: String,
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, name, &val)
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to an initialised `T` that outlives the call and
    // the length passed is exactly its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl PacketSocket {
    /// Opens a packet socket on `iface` that receives every frame of every
    /// protocol, except (where the kernel can) the frames this host sends.
    pub fn open(iface: &str, timeout: Duration) -> Result<PacketSocket, DecapError> {
        let cname = check_ifname("--iface", iface)?;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(DecapError::InterfaceMissing {
                iface: iface.to_string(),
                available: interface_names(),
            });
        }
        let what = || format!("opening a packet socket on {iface:?}");
        // Protocol 0: the socket receives nothing until bound below, so no
        // frame of another interface slips in.
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io_error(what(), io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // Frames this host sends (the targets' replies) are of no use here;
        // older kernels lack the option and deliver them as PACKET_OUTGOING,
        // which `classify` drops as not for us.
        let _ = setsockopt_int(&fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
        // A larger receive buffer rides out bursts; best effort.
        let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|e| io_error(format!("setting a receive timeout on {iface:?}"), e))?;

        // SAFETY: `sockaddr_ll` is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as libc::c_int;
        // SAFETY: `sll` is a valid sockaddr_ll that outlives the call and the
        // length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io_error(
                format!("binding the packet socket to {iface:?}"),
                io::Error::last_os_error(),
            ));
        }
        Ok(PacketSocket {
            fd,
            iface: iface.to_string(),
        })
    }

    /// The interface's name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Receives one frame into `buf`: `Ok(Some((len, pkttype)))`, or
    /// `Ok(None)` when the timeout passed (or a signal interrupted the wait).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes, `sll` and
        // `len` are valid for writes and their sizes match; all outlive the
        // call.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some((n as usize, sll.sll_pkttype)))
    }
}

// ---------------------------------------------------------------------------
// The loop.
// ---------------------------------------------------------------------------

/// What [`run`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecapOptions {
    /// Interface GRE arrives on.
    pub iface: String,
    /// Name of the TUN device to create for the inner packets.
    pub tun: String,
}

/// Decapsulates from `opts.iface` into a new TUN device `opts.tun` until
/// `stop` is set (checked at least every 200 ms), then returns the counters.
/// The TUN device is removed when this returns.
pub fn run(opts: &DecapOptions, stop: &AtomicBool) -> Result<DecapCounters, DecapError> {
    // The interface first: a typo there is the likelier mistake, and it
    // should not leave a TUN device behind even for a moment.
    let sock = PacketSocket::open(&opts.iface, RECV_TIMEOUT)?;
    let tun = Tun::open(&opts.tun)?;
    tracing::info!(
        iface = sock.iface(),
        tun = tun.name(),
        "decapsulating GRE to this host from {} into TUN device {} (up)",
        sock.iface(),
        tun.name()
    );

    let mut counters = DecapCounters::default();
    let mut buf = vec![0u8; RECV_BUF];
    let mut next_log = Instant::now() + LOG_EVERY;
    let mut tun_errors_logged = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let got = sock
            .recv(&mut buf)
            .map_err(|e| io_error(format!("receiving on {:?}", opts.iface), e));
        match got {
            Ok(Some((n, pkttype))) => {
                counters.received += 1;
                match classify(pkttype, &buf[..n]) {
                    Decision::Deliver(inner) => match tun.write_packet(inner) {
                        Ok(()) => {
                            counters.decapsulated += 1;
                            counters.decapsulated_bytes += inner.len() as u64;
                        }
                        Err(e) => {
                            counters.drop(DropReason::TunWrite);
                            // The first few, then every 1000th: a broken TUN
                            // must not flood the log.
                            let k = counters.dropped(DropReason::TunWrite);
                            if tun_errors_logged < 5 || k % 1000 == 0 {
                                tun_errors_logged += 1;
                                tracing::warn!(
                                    tun = tun.name(),
                                    count = k,
                                    "writing a {}-byte packet to the TUN device failed: {e}",
                                    inner.len()
                                );
                            }
                        }
                    },
                    Decision::Drop(reason) => counters.drop(reason),
                }
            }
            Ok(None) => {}
            Err(DecapError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENETDOWN) => {
                // The link went down; the socket stays bound and receives
                // again when it comes back.
                tracing::warn!(iface = %opts.iface, "interface is down; waiting for it");
                std::thread::sleep(RECV_TIMEOUT);
            }
            Err(e) => return Err(e),
        }
        if Instant::now() >= next_log {
            next_log += LOG_EVERY;
            tracing::debug!(
                received = counters.received,
                decapsulated = counters.decapsulated,
                "decap counters"
            );
        }
    }
    let drops: u64 = counters.drops.iter().sum();
    tracing::info!(
        received = counters.received,
        decapsulated = counters.decapsulated,
        dropped = drops,
        reasons = %counters.nonzero_drops(),
        "stopping; removing TUN device {}",
        tun.name()
    );
    drop(tun);
    Ok(counters)
}

/// [`run`] until SIGINT or SIGTERM.
pub fn run_until_signal(opts: &DecapOptions) -> Result<DecapCounters, DecapError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| io_error("installing signal handlers", e))?;
    }
    run(opts, &stop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use vipa_proto::build::{ip_packet, FrameBuilder};
    use vipa_proto::wire::{tcp, EthernetAddress};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 10));
    const VIPA: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 100));
    const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
    const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 11));
    const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    const VIPA6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
    const NODE6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1));
    const TARGET6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11));

    fn builder() -> FrameBuilder {
        FrameBuilder::new(
            EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
            EthernetAddress([0x02, 0, 0, 0, 0, 0x11]),
        )
    }

    /// A client's TCP segment to the VIPA: the inner IP packet.
    fn inner(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let frame = builder().tcp(src, dst, 40000, 8080, tcp::flags::SYN, payload);
        ip_packet(&frame).to_vec()
    }

    /// A GRE header with the given options, `protocol` and `payload`.
    fn gre(
        protocol: u16,
        payload: &[u8],
        checksum: bool,
        key: Option<u32>,
        seq: Option<u32>,
    ) -> Vec<u8> {
        let repr = gre::Repr {
            protocol_type: EtherType::from(protocol),
            key,
            sequence: seq,
            checksum,
        };
        let mut buf = vec![0u8; repr.header_len() + payload.len()];
        let mut p = gre::Packet::new_unchecked(&mut buf[..]);
        p.set_flags(checksum, key.is_some(), seq.is_some());
        p.payload_mut().copy_from_slice(payload);
        repr.emit(&mut p);
        buf
    }

    fn plain_gre(protocol: u16, payload: &[u8]) -> Vec<u8> {
        gre(protocol, payload, false, None, None)
    }

    /// An Ethernet frame from the node to the target carrying `gre_bytes`.
    fn outer(src: IpAddr, dst: IpAddr, gre_bytes: &[u8]) -> Vec<u8> {
        builder().ip_raw(src, dst, gre::PROTOCOL, gre_bytes)
    }

    fn v4_frame() -> (Vec<u8>, Vec<u8>) {
        let i = inner(CLIENT, VIPA, b"GET / HTTP/1.1\r\n\r\n");
        (outer(NODE, TARGET, &plain_gre(0x0800, &i)), i)
    }

    /// Refills the outer IPv4 header checksum after a change.
    fn refill_outer_v4(frame: &mut [u8]) {
        ipv4::Packet::new_unchecked(&mut frame[14..]).fill_checksum();
    }

    #[test]
    fn ipv4_in_ipv4_is_delivered_byte_for_byte() {
        let (frame, i) = v4_frame();
        assert_eq!(classify(PACKET_HOST, &frame), Decision::Deliver(&i[..]));
    }

    #[test]
    fn every_family_combination_is_delivered() {
        for (isrc, idst) in [(CLIENT, VIPA), (CLIENT6, VIPA6)] {
            for (osrc, odst) in [(NODE, TARGET), (NODE6, TARGET6)] {
                let i = inner(isrc, idst, b"x");
                let proto = if isrc.is_ipv4() { 0x0800 } else { 0x86dd };
                let frame = outer(osrc, odst, &plain_gre(proto, &i));
                assert_eq!(
                    classify(PACKET_HOST, &frame),
                    Decision::Deliver(&i[..]),
                    "inner {isrc} in outer {osrc}"
                );
            }
        }
    }

    #[test]
    fn key_sequence_and_checksum_are_skipped() {
        let i = inner(CLIENT, VIPA, b"hello");
        for (c, k, s) in [
            (false, Some(7), None),
            (false, None, Some(9)),
            (false, Some(7), Some(9)),
            (true, None, None),
            (true, Some(0xdead_beef), Some(1)),
        ] {
            let frame = outer(NODE, TARGET, &gre(0x0800, &i, c, k, s));
            assert_eq!(
                classify(PACKET_HOST, &frame),
                Decision::Deliver(&i[..]),
                "C={c} K={k:?} S={s:?}"
            );
        }
    }

    #[test]
    fn bad_gre_checksum_is_dropped() {
        let i = inner(CLIENT, VIPA, b"hello");
        let mut frame = outer(NODE, TARGET, &gre(0x0800, &i, true, Some(3), None));
        let last = frame.len() - 1;
        frame[last] ^= 0x01; // the inner payload, covered by the GRE checksum
        assert_eq!(
            classify(PACKET_HOST, &frame),
            Decision::Drop(DropReason::GreChecksum)
        );
    }

    #[test]
    fn vlan_tagged_frame_is_delivered() {
        let i = inner(CLIENT, VIPA, b"tagged");
        let mut b = builder();
        b.vlan = Some(42);
        let frame = b.ip_raw(NODE, TARGET, gre::PROTOCOL, &plain_gre(0x0800, &i));
        assert_eq!(classify(PACKET_HOST, &frame), Decision::Deliver(&i[..]));
    }

    #[test]
    fn ethernet_padding_is_not_delivered() {
        // A bare 20-byte inner IPv4 header: the outer frame is 14 + 20 + 4 +
        // 20 = 58 bytes, padded to the 60-byte minimum on the wire.
        let i = builder().ip_raw(CLIENT, VIPA, 253, &[]);
        let i = ip_packet(&i).to_vec();
        let mut frame = outer(NODE, TARGET, &plain_gre(0x0800, &i));
        frame.resize(60, 0);
        assert_eq!(classify(PACKET_HOST, &frame), Decision::Deliver(&i[..]));
    }

    #[test]
    fn frames_not_for_this_host_are_dropped() {
        let (frame, _) = v4_frame();
        for t in [
            PACKET_BROADCAST,
            PACKET_MULTICAST,
            PACKET_OTHERHOST,
            PACKET_OUTGOING,
            7,
        ] {
            assert_eq!(
                classify(t, &frame),
                Decision::Drop(DropReason::NotForUs),
                "pkttype {t}"
            );
        }
    }

    #[test]
    fn other_traffic_is_not_gre() {
        let b = builder();
        let cases = [
            b.arp_request(Ipv4Addr::new(10, 99, 0, 1), Ipv4Addr::new(10, 99, 0, 11)),
            b.tcp(CLIENT, TARGET, 1, 2, tcp::flags::SYN, b""),
            b.udp(CLIENT6, TARGET6, 1, 2, b"dns"),
            b.ip_raw(NODE, TARGET, 4, &inner(CLIENT, VIPA, b"")), // IP-in-IP
            vec![0u8; 10],                                        // runt
            {
                let mut f = b.udp(CLIENT, TARGET, 1, 2, b"");
                f[12] = 0x88; // some other ethertype
                f[13] = 0xb5;
                f
            },
            {
                // IPv4 header cut before the protocol byte
                let (f, _) = v4_frame();
                f[..14 + 8].to_vec()
            },
        ];
        for (n, frame) in cases.iter().enumerate() {
            assert_eq!(
                classify(PACKET_HOST, frame),
                Decision::Drop(DropReason::NotGre),
                "case {n}"
            );
        }
    }

    #[test]
    fn broken_outer_headers_are_bad_outer_ip() {
        // IPv4 header checksum wrong.
        let (mut f, _) = v4_frame();
        f[14 + 8] ^= 0x10; // TTL, not refilled
        assert_eq!(
            classify(PACKET_HOST, &f),
            Decision::Drop(DropReason::BadOuterIp)
        );
        // IPv4 total length beyond the frame.
        let (f, _) = v4_frame();
        let cut = &f[..f.len() - 3];
        assert_eq!(
            classify(PACKET_HOST, cut),
            Decision::Drop(DropReason::BadOuterIp)
        );
        // Version 6 in an IPv4 ethertype.
        let (mut f, _) = v4_frame();
        f[14] = 0x65;
        refill_outer_v4(&mut f);
        assert_eq!(
            classify(PACKET_HOST, &f),
            Decision::Drop(DropReason::BadOuterIp)
        );
        // IPv6 payload length beyond the frame.
        let i = inner(CLIENT6, VIPA6, b"abc");
        let f = outer(NODE6, TARGET6, &plain_gre(0x86dd, &i));
        assert_eq!(
            classify(PACKET_HOST, &f[..f.len() - 1]),
            Decision::Drop(DropReason::BadOuterIp)
        );
    }

    #[test]
    fn outer_fragments_are_dropped() {
        for (mf, offset) in [(true, 0u16), (false, 185), (true, 8)] {
            let (mut f, _) = v4_frame();
            {
                let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
                ip.set_more_frags(mf);
                ip.set_frag_offset(offset * 8);
            }
            refill_outer_v4(&mut f);
            assert_eq!(
                classify(PACKET_HOST, &f),
                Decision::Drop(DropReason::OuterFragment),
                "MF={mf} offset={offset}"
            );
        }
    }

    #[test]
    fn invalid_gre_headers_are_bad_gre() {
        let i = inner(CLIENT, VIPA, b"");
        let base = plain_gre(0x0800, &i);
        let mut cases = Vec::new();
        let mut v1 = base.clone();
        v1[1] = 0x01; // version 1 (PPTP's enhanced GRE)
        cases.push(v1);
        for bit in [0x40u8, 0x08, 0x04] {
            let mut b = base.clone();
            b[0] = bit; // RFC 1701 bits 1, 4, 5
            cases.push(b);
        }
        cases.push(base[..3].to_vec()); // truncated header
        let mut k = base[..4].to_vec();
        k[0] = 0x20; // K set, but no key
        cases.push(k);
        for (n, g) in cases.iter().enumerate() {
            let f = outer(NODE, TARGET, g);
            assert_eq!(
                classify(PACKET_HOST, &f),
                Decision::Drop(DropReason::BadGre),
                "case {n}"
            );
        }
        // Bits 6-12 are ignored on receipt (RFC 2784 §2.5).
        let mut r = base;
        r[0] = 0x03;
        r[1] = 0xf8;
        let f = outer(NODE, TARGET, &r);
        assert_eq!(classify(PACKET_HOST, &f), Decision::Deliver(&i[..]));
    }

    #[test]
    fn non_ip_payloads_are_gre_protocol() {
        let i = inner(CLIENT, VIPA, b"");
        for proto in [0x6558u16, 0x0806, 0x8847] {
            let f = outer(NODE, TARGET, &plain_gre(proto, &i));
            assert_eq!(
                classify(PACKET_HOST, &f),
                Decision::Drop(DropReason::GreProtocol),
                "protocol {proto:#06x}"
            );
        }
    }

    #[test]
    fn inner_not_matching_the_protocol_type_is_bad_inner() {
        let i4 = inner(CLIENT, VIPA, b"four");
        let i6 = inner(CLIENT6, VIPA6, b"six");
        let cases = [
            plain_gre(0x0800, &i6),                 // says IPv4, is IPv6
            plain_gre(0x86dd, &i4),                 // says IPv6, is IPv4
            plain_gre(0x0800, &[]),                 // nothing inside
            plain_gre(0x0800, &i4[..i4.len() - 1]), // inner cut short
            plain_gre(0x86dd, &i6[..30]),           // inner header cut short
        ];
        for (n, g) in cases.iter().enumerate() {
            let f = outer(NODE, TARGET, g);
            assert_eq!(
                classify(PACKET_HOST, &f),
                Decision::Drop(DropReason::BadInner),
                "case {n}"
            );
        }
    }

    #[test]
    fn counters_have_a_name_per_reason() {
        let mut c = DecapCounters {
            received: 3,
            decapsulated: 1,
            ..Default::default()
        };
        c.drop(DropReason::NotGre);
        c.drop(DropReason::TunWrite);
        let text = c.to_text();
        for r in DropReason::ALL {
            assert!(text.contains(&format!("drop_{}", r.name())), "{text}");
        }
        assert_eq!(c.dropped(DropReason::NotGre), 1);
        assert_eq!(c.nonzero_drops(), "not_gre=1 tun_write=1");
        assert_eq!(DecapCounters::default().nonzero_drops(), "none");
        assert!(text.contains("received"));
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_bytes(pkttype in 0u8..8, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = classify(pkttype, &bytes);
        }

        #[test]
        fn never_panics_on_damaged_gre_frames(cut in 0usize..120, pos in 0usize..120, xor in 1u8..=255) {
            let i = inner(CLIENT, VIPA, b"0123456789");
            let mut f = outer(NODE, TARGET, &gre(0x0800, &i, true, Some(1), Some(2)));
            let p = pos % f.len();
            f[p] ^= xor;
            f.truncate(f.len().saturating_sub(cut % f.len()));
            match classify(PACKET_HOST, &f) {
                // Whatever is delivered lies inside the frame and is a whole
                // IP packet of its version.
                Decision::Deliver(d) => proptest::prop_assert!(!d.is_empty() && d.len() <= f.len()),
                Decision::Drop(_) => {}
            }
        }
    }
}
