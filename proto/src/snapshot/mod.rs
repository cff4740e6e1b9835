//! The shared-memory snapshot: what the control plane tells the data plane
//! (DESIGN.md §5), as bytes.
//!
//! A snapshot is one immutable generation of everything the forwarder
//! routes with: the VIPAs this node owns (with their ownership epoch and
//! services), the targets and their state, the Maglev tables of each VIPA
//! (one per distinct set of targets taking new connections for a service), the
//! connection routing table (CRT) and static neighbours. The control plane
//! writes it into a fresh shared-memory object, then flips the generation
//! number in a small head object ([`head`]); the forwarder maps it, checks
//! it with [`Snapshot::new_checked`] and only then routes with it.
//!
//! Nothing here does I/O: this module is the layout, a builder
//! ([`Builder`]) that serialises a plain Rust [`Description`] into a byte
//! buffer, and a validating zero-copy reader ([`Snapshot`]). The files and
//! the mapping are the business of the writer (`vipa-control`) and the
//! loader (`vipa-forwarder`). The forwarder's answers — counters and new
//! flows — travel the other way through [`back`].
//!
//! # Layout (version 2)
//!
//! All integers are in the byte order of the machine (the snapshot never
//! leaves it: it is shared memory between two processes on one host).
//! Addresses are 16 bytes, IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`),
//! with a family byte (4 or 6) next to them.
//!
//! | bytes | content |
//! |---|---|
//! | 0..160 | [`Header`]: magic `VIPASNAP`, version, lengths, checksum, generation, CRT parameters, and the offset and element count of six sections |
//! | sections | in this order, each starting on a 64-byte boundary after the previous one: [`VipaRecord`] (64 B), [`ServiceRecord`] (4 B), [`TargetRecord`] (32 B), Maglev entries (`u32`), [`CrtEntry`] (48 B), [`NeighborRecord`] (32 B) |
//!
//! The **checksum** is XXH3-64 (seed 0, the published xxHash algorithm) of
//! bytes `32..total_len`: everything after the checksum field. The fields
//! before it (magic, version, header length, total length) are checked
//! exactly, so every byte of a snapshot is covered.
//!
//! # Validation
//!
//! [`Snapshot::new_checked`] checks, in this order: the buffer holds a
//! header; magic; version; header length; the total length equals the
//! buffer's; the buffer is 8-byte aligned; the checksum; every section lies
//! inside the buffer, aligned, after the previous one; and every record:
//! families and address forms, target states, service protocols and ports,
//! each VIPA's service and Maglev ranges, each service's Maglev table
//! index, Maglev entries naming *ready*
//! targets only (a quiesced, restarting or down target gets no new flow —
//! DESIGN.md §4), no two VIPAs with one address, the CRT's geometry, and
//! every CRT entry's protocol and target. After that, no accessor can index
//! out of bounds: the packet path reads a validated snapshot without checks
//! beyond the ones a slice does anyway.
//!
//! # Target slots
//!
//! Targets are referred to by their index in the target section (a *slot*):
//! Maglev entries, CRT entries and the forwarder's flow tables hold slots.
//! A writer keeps a target in the same slot in every generation, so a flow
//! the forwarder learned in one generation goes to the same target in the
//! next; a slot may be given to another address only after it was `down`
//! for longer than the flow idle timeout. (The forwarder checks the
//! consecutive generations it loads and forgets its flows when a writer
//! breaks the rule.)

pub mod back;
mod build;
mod crt;
pub mod head;

use core::net::{IpAddr, Ipv6Addr};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub use build::{
    BuildError, Builder, CrtDesc, Description, NeighborDesc, ServiceDesc, SnapshotBuf, TargetDesc,
    VipaDesc,
};
pub use crt::{Crt, CrtEntry, MAX_CRT_PROBE};

/// First eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"VIPASNAP";
/// The layout version this code reads and writes.
///
/// Version 2 (version 1 had one Maglev table per VIPA): a VIPA has
/// `maglev_tables` tables of `maglev_len` entries each, and every service
/// names the table its new connections use, so a target ready for one
/// service of a VIPA but not for another gets new connections only for the
/// first (seed 001: ready per service, while an application listens).
pub const VERSION: u32 = 2;
/// Size of [`Header`].
pub const HEADER_LEN: usize = 160;
/// The checksum covers the bytes from here to the end.
pub const CHECKSUM_START: usize = 32;
/// Sections start on multiples of this.
pub const SECTION_ALIGN: usize = 64;
/// Number of sections.
pub const SECTIONS: usize = 6;
/// The most VIPAs a snapshot holds (the forwarder indexes them with a `u16`).
pub const MAX_VIPAS: usize = u16::MAX as usize;

/// Section indices, in layout order.
pub mod section {
    /// [`super::VipaRecord`]s.
    pub const VIPAS: usize = 0;
    /// [`super::ServiceRecord`]s.
    pub const SERVICES: usize = 1;
    /// [`super::TargetRecord`]s.
    pub const TARGETS: usize = 2;
    /// Maglev entries (`u32` target slots), every VIPA's tables back to back.
    pub const MAGLEV: usize = 3;
    /// [`super::CrtEntry`] slots of the CRT hash table.
    pub const CRT: usize = 4;
    /// [`super::NeighborRecord`]s.
    pub const NEIGHBORS: usize = 5;
    /// Names for error messages.
    pub const NAMES: [&str; super::SECTIONS] =
        ["vipas", "services", "targets", "maglev", "crt", "neighbors"];
}

/// Where a section is: byte offset from the start and number of elements.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct Section {
    /// Byte offset (a multiple of [`SECTION_ALIGN`]).
    pub offset: u64,
    /// Number of elements.
    pub count: u64,
}

/// The snapshot header (160 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_LEN`].
    pub header_len: u32,
    /// Length of the whole snapshot in bytes.
    pub total_len: u64,
    /// XXH3-64 of bytes `32..total_len`.
    pub checksum: u64,
    /// The generation number (also in the object's name and the head).
    pub generation: u64,
    /// CRT home slots: a key's probe starts at `⌊hash · home / 2⁶⁴⌋`.
    pub crt_home_slots: u64,
    /// Occupied CRT slots.
    pub crt_entries: u64,
    /// The longest probe: a lookup looks at most at `crt_max_probe + 1` slots.
    pub crt_max_probe: u32,
    /// Reserved, 0.
    pub flags: u32,
    /// The sections, indexed by [`section`] constants.
    pub sections: [Section; SECTIONS],
}

/// A VIPA (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct VipaRecord {
    /// The address (IPv4-mapped for IPv4).
    pub address: [u8; 16],
    /// Ownership epoch (DESIGN.md §6): grows with every ownership change.
    pub epoch: u64,
    /// First of its services in the service section.
    pub services_start: u32,
    /// Number of services.
    pub services_count: u32,
    /// First entry of its first Maglev table in the Maglev section.
    pub maglev_start: u32,
    /// The size of each of its Maglev tables; 0 when it has none.
    pub maglev_len: u32,
    /// 4 or 6.
    pub family: u8,
    /// 1 when this node owns (routes) the VIPA now, else 0.
    pub owned: u8,
    /// Number of Maglev tables (back to back from `maglev_start`); 0
    /// exactly when `maglev_len` is 0.
    pub maglev_tables: u16,
    /// Reserved, 0.
    pub reserved: [u8; 20],
}

/// A service of a VIPA (4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct ServiceRecord {
    /// Destination port (1..=65535).
    pub port: u16,
    /// 6 (TCP) or 17 (UDP).
    pub protocol: u8,
    /// Index of the VIPA's Maglev table for new connections to this
    /// service, or [`NO_MAGLEV_TABLE`] when no target takes them (new
    /// flows are dropped).
    pub maglev_table: u8,
}

/// [`ServiceRecord::maglev_table`] of a service no target takes new connections for.
pub const NO_MAGLEV_TABLE: u8 = 0xFF;

/// A target (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct TargetRecord {
    /// The address (IPv4-mapped for IPv4); its family is the GRE outer family.
    pub address: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    /// A [`TargetState`].
    pub state: u8,
    /// Reserved, 0.
    pub reserved: [u8; 14],
}

/// A static neighbour: the MAC of a next hop (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct NeighborRecord {
    /// The next hop's address (IPv4-mapped for IPv4).
    pub address: [u8; 16],
    /// Its MAC.
    pub mac: [u8; 6],
    /// Index of the forwarder port (`[[port]]` order) it is reached through;
    /// `0xFFFF` for every port.
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    /// Reserved, 0.
    pub reserved: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(core::mem::size_of::<Section>() == 16);
const _: () = assert!(core::mem::size_of::<VipaRecord>() == 64);
const _: () = assert!(core::mem::size_of::<ServiceRecord>() == 4);
const _: () = assert!(core::mem::size_of::<TargetRecord>() == 32);
const _: () = assert!(core::mem::size_of::<NeighborRecord>() == 32);
const _: () = assert!(core::mem::size_of::<CrtEntry>() == 48);
const _: () = assert!(core::mem::offset_of!(Header, checksum) == 24);
const _: () = assert!(core::mem::offset_of!(Header, generation) == CHECKSUM_START);
const _: () = assert!(core::mem::offset_of!(VipaRecord, maglev_tables) == 42);

/// The neighbour port value meaning "every port".
pub const ANY_PORT: u16 = 0xFFFF;

/// What a target may receive (DESIGN.md §4, §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TargetState {
    /// Gets new flows (may be in Maglev tables) and keeps its flows.
    #[default]
    Ready = 0,
    /// Quiesced by the operator: keeps its flows, gets no new one.
    Quiesced = 1,
    /// Its application is restarting: keeps its flows (the control plane
    /// marks it `Down` when the hold time is over), gets no new one.
    Restarting = 2,
    /// Gone: flows the forwarder remembers for it are routed again (CRT,
    /// then Maglev), as if unknown.
    Down = 3,
}

impl TargetState {
    /// The state with this byte value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => TargetState::Ready,
            1 => TargetState::Quiesced,
            2 => TargetState::Restarting,
            3 => TargetState::Down,
            _ => return None,
        })
    }

    /// The name used in logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            TargetState::Ready => "ready",
            TargetState::Quiesced => "quiesced",
            TargetState::Restarting => "restarting",
            TargetState::Down => "down",
        }
    }
}

/// An address as 16 bytes and a family byte.
pub fn encode_ip(a: IpAddr) -> ([u8; 16], u8) {
    match a {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 4),
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

/// The address of 16 bytes and a family byte; `None` when the family is
/// not 4 or 6, or is 4 and the bytes are not IPv4-mapped.
pub fn decode_ip(bytes: [u8; 16], family: u8) -> Option<IpAddr> {
    let v6 = Ipv6Addr::from(bytes);
    match family {
        4 => v6.to_ipv4_mapped().map(IpAddr::V4),
        6 => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// Why a snapshot was refused. Each says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than its header, or than the length its header gives.
    #[error("truncated: {got} bytes, the snapshot needs {needed}")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes there.
        got: u64,
    },
    /// Not a snapshot.
    #[error("bad magic {found:02x?}: not a vipa snapshot")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// Written by a different version of vipa.
    #[error("snapshot layout version {found}, this build reads version {expected}: run vipa-control and vipa-forwarder of the same release")]
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The header length field is wrong.
    #[error("header length {found}, expected {expected}")]
    BadHeaderLen {
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// More bytes than the header says.
    #[error("the header says {header} bytes but there are {actual}")]
    LengthMismatch {
        /// The header's total length.
        header: u64,
        /// The buffer's length.
        actual: u64,
    },
    /// The buffer does not start on an 8-byte boundary.
    #[error("the snapshot buffer is not 8-byte aligned")]
    Misaligned,
    /// The contents do not match the checksum.
    #[error("checksum mismatch: stored {stored:#018x}, computed {computed:#018x} (corrupted or partly written)")]
    Checksum {
        /// In the header.
        stored: u64,
        /// Of the bytes.
        computed: u64,
    },
    /// A section is out of bounds, misaligned or overlaps the previous one.
    #[error("section {section}: offset {offset} with {count} elements is {what}")]
    BadSection {
        /// Its name.
        section: &'static str,
        /// Its offset.
        offset: u64,
        /// Its element count.
        count: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// A record has a value it may not have.
    #[error("{section}[{index}]: {what}")]
    BadRecord {
        /// The section's name.
        section: &'static str,
        /// The record's index.
        index: u64,
        /// What is wrong.
        what: &'static str,
    },
}

fn bad(section: usize, index: usize, what: &'static str) -> SnapshotError {
    SnapshotError::BadRecord {
        section: section::NAMES[section],
        index: index as u64,
        what,
    }
}

/// A validated snapshot: zero-copy views into the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    header: &'a Header,
    vipas: &'a [VipaRecord],
    services: &'a [ServiceRecord],
    targets: &'a [TargetRecord],
    maglev: &'a [u32],
    crt: Crt<'a>,
    neighbors: &'a [NeighborRecord],
}

/// The checksum of a snapshot's bytes (see the module documentation).
#[inline]
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes.get(CHECKSUM_START..).unwrap_or(&[]))
}

/// A section's elements, or why not.
fn section_slice<'a, T: FromBytes + KnownLayout + Immutable>(
    bytes: &'a [u8],
    sections: &[Section; SECTIONS],
    index: usize,
    prev_end: &mut u64,
) -> Result<&'a [T], SnapshotError> {
    let s = sections[index];
    let err = |what| SnapshotError::BadSection {
        section: section::NAMES[index],
        offset: s.offset,
        count: s.count,
        what,
    };
    if !s.offset.is_multiple_of(SECTION_ALIGN as u64) {
        return Err(err("not 64-byte aligned"));
    }
    if s.offset < *prev_end {
        return Err(err("overlapping the previous section"));
    }
    let len = s
        .count
        .checked_mul(core::mem::size_of::<T>() as u64)
        .and_then(|l| l.checked_add(s.offset))
        .filter(|&end| end <= bytes.len() as u64)
        .ok_or_else(|| err("beyond the end of the snapshot"))?;
    *prev_end = len;
    let range = &bytes[s.offset as usize..len as usize];
    <[T]>::ref_from_bytes(range).map_err(|_| err("not a whole number of aligned elements"))
}

impl<'a> Snapshot<'a> {
    /// Checks everything listed in the module documentation and returns
    /// the views, or the first problem found.
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, SnapshotError> {
        let got = bytes.len() as u64;
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated {
                needed: HEADER_LEN as u64,
                got,
            });
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&bytes[..8]);
        if magic != MAGIC {
            return Err(SnapshotError::BadMagic { found: magic });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(8) {
            return Err(SnapshotError::Misaligned);
        }
        let header =
            Header::ref_from_bytes(&bytes[..HEADER_LEN]).map_err(|_| SnapshotError::Misaligned)?;
        if header.version != VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: header.version,
                expected: VERSION,
            });
        }
        if header.header_len != HEADER_LEN as u32 {
            return Err(SnapshotError::BadHeaderLen {
                found: header.header_len,
                expected: HEADER_LEN as u32,
            });
        }
        if header.total_len > got {
            return Err(SnapshotError::Truncated {
                needed: header.total_len,
                got,
            });
        }
        if header.total_len != got {
            return Err(SnapshotError::LengthMismatch {
                header: header.total_len,
                actual: got,
            });
        }
        let computed = checksum(bytes);
        if computed != header.checksum {
            return Err(SnapshotError::Checksum {
                stored: header.checksum,
                computed,
            });
        }
        if header.flags != 0 {
            return Err(SnapshotError::BadRecord {
                section: "header",
                index: 0,
                what: "reserved flags are not zero",
            });
        }
        let s = &header.sections;
        let mut end = HEADER_LEN as u64;
        let vipas: &[VipaRecord] = section_slice(bytes, s, section::VIPAS, &mut end)?;
        let services: &[ServiceRecord] = section_slice(bytes, s, section::SERVICES, &mut end)?;
        let targets: &[TargetRecord] = section_slice(bytes, s, section::TARGETS, &mut end)?;
        let maglev: &[u32] = section_slice(bytes, s, section::MAGLEV, &mut end)?;
        let crt_slots: &[CrtEntry] = section_slice(bytes, s, section::CRT, &mut end)?;
        let neighbors: &[NeighborRecord] = section_slice(bytes, s, section::NEIGHBORS, &mut end)?;

        if targets.len() >= u32::MAX as usize {
            return Err(bad(section::TARGETS, 0, "more than 2^32 - 2 targets"));
        }
        for (i, t) in targets.iter().enumerate() {
            if decode_ip(t.address, t.family).is_none() {
                return Err(bad(section::TARGETS, i, "bad family or address form"));
            }
            if TargetState::from_u8(t.state).is_none() {
                return Err(bad(section::TARGETS, i, "unknown state"));
            }
        }
        for (i, sv) in services.iter().enumerate() {
            if sv.protocol != 6 && sv.protocol != 17 {
                return Err(bad(section::SERVICES, i, "protocol is neither 6 nor 17"));
            }
            if sv.port == 0 {
                return Err(bad(section::SERVICES, i, "port 0"));
            }
        }
        if vipas.len() > MAX_VIPAS {
            return Err(bad(section::VIPAS, MAX_VIPAS, "more than 65535 VIPAs"));
        }
        for (i, v) in vipas.iter().enumerate() {
            if decode_ip(v.address, v.family).is_none() {
                return Err(bad(section::VIPAS, i, "bad family or address form"));
            }
            if v.owned > 1 {
                return Err(bad(section::VIPAS, i, "owned is neither 0 nor 1"));
            }
            let se = u64::from(v.services_start) + u64::from(v.services_count);
            if se > services.len() as u64 {
                return Err(bad(
                    section::VIPAS,
                    i,
                    "services beyond the service section",
                ));
            }
            if (v.maglev_len == 0) != (v.maglev_tables == 0) {
                return Err(bad(
                    section::VIPAS,
                    i,
                    "Maglev table size and count disagree",
                ));
            }
            if v.maglev_len == 1 || u64::from(v.maglev_len) > crate::maglev::MAX_TABLE_SIZE {
                return Err(bad(section::VIPAS, i, "Maglev table size out of range"));
            }
            if v.maglev_tables > u16::from(NO_MAGLEV_TABLE) {
                return Err(bad(section::VIPAS, i, "more than 255 Maglev tables"));
            }
            let me =
                u64::from(v.maglev_start) + u64::from(v.maglev_len) * u64::from(v.maglev_tables);
            if me > maglev.len() as u64 {
                return Err(bad(
                    section::VIPAS,
                    i,
                    "Maglev tables beyond the Maglev section",
                ));
            }
            let table = &maglev[v.maglev_start as usize..me as usize];
            for &e in table {
                match targets.get(e as usize) {
                    None => return Err(bad(section::VIPAS, i, "Maglev entry names no target")),
                    Some(t) if t.state != TargetState::Ready as u8 => {
                        return Err(bad(
                            section::VIPAS,
                            i,
                            "Maglev entry names a target that is not ready",
                        ))
                    }
                    Some(_) => {}
                }
            }
            let own = &services[v.services_start as usize..se as usize];
            if own.iter().any(|sv| {
                sv.maglev_table != NO_MAGLEV_TABLE && u16::from(sv.maglev_table) >= v.maglev_tables
            }) {
                return Err(bad(
                    section::VIPAS,
                    i,
                    "a service names a missing Maglev table",
                ));
            }
            if vipas[..i].iter().any(|o| o.address == v.address) {
                return Err(bad(section::VIPAS, i, "address of an earlier VIPA"));
            }
        }
        for (i, n) in neighbors.iter().enumerate() {
            if decode_ip(n.address, n.family).is_none() {
                return Err(bad(section::NEIGHBORS, i, "bad family or address form"));
            }
        }
        let crt = Crt::new_checked(
            crt_slots,
            header.crt_home_slots,
            header.crt_max_probe,
            header.crt_entries,
            targets.len(),
        )?;
        Ok(Snapshot {
            header,
            vipas,
            services,
            targets,
            maglev,
            crt,
            neighbors,
        })
    }

    /// The header.
    pub fn header(&self) -> &'a Header {
        self.header
    }

    /// The generation number.
    pub fn generation(&self) -> u64 {
        self.header.generation
    }

    /// Every VIPA, owned or not.
    pub fn vipas(&self) -> &'a [VipaRecord] {
        self.vipas
    }

    /// A VIPA's address.
    pub fn vipa_address(&self, v: &VipaRecord) -> IpAddr {
        decode_ip(v.address, v.family).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }

    /// A VIPA's services.
    pub fn services(&self, v: &VipaRecord) -> &'a [ServiceRecord] {
        let start = v.services_start as usize;
        self.services
            .get(start..start + v.services_count as usize)
            .unwrap_or(&[])
    }

    /// A VIPA's Maglev table `index` (target slots); empty when it has no
    /// such table.
    pub fn maglev_table(&self, v: &VipaRecord, index: u8) -> &'a [u32] {
        if u16::from(index) >= v.maglev_tables {
            return &[];
        }
        let len = v.maglev_len as usize;
        let start = v.maglev_start as usize + usize::from(index) * len;
        self.maglev.get(start..start + len).unwrap_or(&[])
    }

    /// The Maglev table new connections to service `s` of VIPA `v` use;
    /// empty when no target takes them.
    pub fn service_maglev(&self, v: &VipaRecord, s: &ServiceRecord) -> &'a [u32] {
        self.maglev_table(v, s.maglev_table)
    }

    /// Every target slot.
    pub fn targets(&self) -> &'a [TargetRecord] {
        self.targets
    }

    /// A target's address.
    pub fn target_address(&self, t: &TargetRecord) -> IpAddr {
        decode_ip(t.address, t.family).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }

    /// A target's state.
    pub fn target_state(&self, t: &TargetRecord) -> TargetState {
        TargetState::from_u8(t.state).unwrap_or(TargetState::Down)
    }

    /// The connection routing table.
    pub fn crt(&self) -> Crt<'a> {
        self.crt
    }

    /// Static neighbours.
    pub fn neighbors(&self) -> &'a [NeighborRecord] {
        self.neighbors
    }

    /// A neighbour's address.
    pub fn neighbor_address(&self, n: &NeighborRecord) -> IpAddr {
        decode_ip(n.address, n.family).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }
}

#[cfg(test)]
mod tests;
