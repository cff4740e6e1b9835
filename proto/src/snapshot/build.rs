//! Serialising a snapshot from a plain Rust [`Description`].
//!
//! [`Builder::new`] checks the description and lays it out (placing every
//! CRT connection in its slot, in a scratch index of 4 bytes per slot);
//! [`Builder::len`] is then the exact size, so the writer can size the
//! shared-memory object and [`Builder::write`] straight into its mapping —
//! one sequential pass, no intermediate copy of the big CRT.

use core::net::IpAddr;

use zerocopy::{FromBytes, IntoBytes};

use super::crt::{home_slot, CrtEntry, MAX_CRT_PROBE};
use super::{
    encode_ip, section, Header, NeighborRecord, Section, ServiceRecord, TargetRecord, TargetState,
    VipaRecord, ANY_PORT, HEADER_LEN, MAGIC, MAX_VIPAS, NO_MAGLEV_TABLE, SECTIONS, SECTION_ALIGN,
    VERSION,
};
use crate::config::Config;
use crate::flowkey::FlowKey;
use crate::maglev::{self, MaglevError, MaglevTarget};

/// Everything a snapshot says, as plain values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Description {
    /// The generation number (> 0 for a published snapshot).
    pub generation: u64,
    /// The VIPAs.
    pub vipas: Vec<VipaDesc>,
    /// The target slots (see "Target slots" in the module documentation).
    pub targets: Vec<TargetDesc>,
    /// Connections the targets reported.
    pub crt: Vec<CrtDesc>,
    /// Static next-hop MACs.
    pub neighbors: Vec<NeighborDesc>,
}

/// A VIPA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipaDesc {
    /// Its address.
    pub address: IpAddr,
    /// Ownership epoch.
    pub epoch: u64,
    /// Whether this node routes it now.
    pub owned: bool,
    /// Its services.
    pub services: Vec<ServiceDesc>,
    /// Its Maglev tables (target slots, each of a ready target), all of one
    /// size; its services name the one their new connections use. Services
    /// whose ready targets are the same share a table. At most 255.
    pub maglev: Vec<Vec<u32>>,
}

/// A service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceDesc {
    /// 6 or 17.
    pub protocol: u8,
    /// The port.
    pub port: u16,
    /// The index in [`VipaDesc::maglev`] of the table new connections to
    /// this service use; `None` when no target takes them.
    pub maglev: Option<u8>,
}

/// A target slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetDesc {
    /// Its address.
    pub address: IpAddr,
    /// Its state.
    pub state: TargetState,
}

/// A connection: client and service → target slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrtDesc {
    /// The connection, as the forwarder sees its packets (client → VIPA).
    pub key: FlowKey,
    /// The target slot.
    pub target: u32,
}

/// A static neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborDesc {
    /// The next hop's address.
    pub address: IpAddr,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The forwarder port index it is reached through; `None`: every port.
    pub port: Option<u16>,
}

/// Why a description cannot be serialised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A VIPA's Maglev table could not be built (from a configuration).
    #[error("vipa {vipa}: {source}")]
    Maglev {
        /// The VIPA.
        vipa: IpAddr,
        /// Why.
        source: MaglevError,
    },
    /// More VIPAs than a snapshot holds.
    #[error("{0} VIPAs; a snapshot holds at most 65535")]
    TooManyVipas(usize),
    /// Two VIPAs with one address.
    #[error("vipa {0} is described twice")]
    DuplicateVipa(IpAddr),
    /// A service with a protocol other than TCP / UDP, or port 0.
    #[error("vipa {vipa}: service {protocol}/{port} is not TCP or UDP on a port 1..=65535")]
    BadService {
        /// The VIPA.
        vipa: IpAddr,
        /// Protocol number.
        protocol: u8,
        /// Port.
        port: u16,
    },
    /// A Maglev table of 1 or 0 slots or above the maximum size, tables of
    /// different sizes, more than 255 tables, or a service naming a table
    /// that does not exist.
    #[error("vipa {vipa}: Maglev table of {len} slots; use 2..=2^24, the same size for every table of a VIPA, at most 255 tables, and services naming existing tables")]
    BadMaglevSize {
        /// The VIPA.
        vipa: IpAddr,
        /// The size.
        len: usize,
    },
    /// A Maglev entry names a missing target or one that is not ready.
    #[error("vipa {vipa}: Maglev entry {entry} names target slot {target}, which does not exist or is not ready")]
    MaglevTarget {
        /// The VIPA.
        vipa: IpAddr,
        /// The entry's index.
        entry: usize,
        /// The slot named.
        target: u32,
    },
    /// Too many targets.
    #[error("{0} target slots; at most 2^32 - 2")]
    TooManyTargets(usize),
    /// A CRT connection with a protocol other than TCP / UDP.
    #[error("CRT connection {index}: protocol {protocol} is not 6 or 17")]
    CrtProtocol {
        /// The connection's index.
        index: usize,
        /// Its protocol.
        protocol: u8,
    },
    /// A CRT connection naming a missing target.
    #[error("CRT connection {index}: target slot {target} does not exist")]
    CrtTarget {
        /// The connection's index.
        index: usize,
        /// The slot named.
        target: u32,
    },
    /// The same connection twice.
    #[error("CRT connection {index} is a duplicate of connection {first}")]
    DuplicateConnection {
        /// The later one.
        index: usize,
        /// The earlier one.
        first: usize,
    },
    /// A probe would be longer than the format allows (a broken hash).
    #[error("the CRT needs a probe of {0} slots; at most 4096")]
    ProbeTooLong(usize),
    /// The output buffer has the wrong size or alignment.
    #[error(
        "output buffer of {got} bytes (aligned: {aligned}); need exactly {needed}, 8-byte aligned"
    )]
    Buffer {
        /// Its size.
        got: usize,
        /// Needed.
        needed: usize,
        /// Whether it is aligned.
        aligned: bool,
    },
}

impl Description {
    /// The snapshot equivalent of a configuration: every VIPA owned at
    /// epoch 0, every configured target ready (in the order the forwarder's
    /// config-built tables use: first appearance, each address once), each
    /// VIPA's weighted Maglev table over its own targets, no connection, no
    /// neighbour.
    pub fn from_config(config: &Config, generation: u64) -> Result<Self, BuildError> {
        let mut targets: Vec<TargetDesc> = Vec::new();
        let mut vipas = Vec::with_capacity(config.vipas.len());
        for vc in &config.vipas {
            let mut global = Vec::with_capacity(vc.targets.len());
            for t in &vc.targets {
                let idx = targets
                    .iter()
                    .position(|x| x.address == t.address)
                    .unwrap_or_else(|| {
                        targets.push(TargetDesc {
                            address: t.address,
                            state: TargetState::Ready,
                        });
                        targets.len() - 1
                    });
                global.push(idx as u32);
            }
            let keys: Vec<String> = vc.targets.iter().map(|t| t.maglev_key()).collect();
            let mt: Vec<MaglevTarget<'_>> = vc
                .targets
                .iter()
                .zip(&keys)
                .map(|(t, k)| MaglevTarget {
                    key: k,
                    weight: t.weight,
                })
                .collect();
            // Every service of a configured VIPA has the same targets: one table.
            let maglev: Vec<Vec<u32>> = if mt.iter().all(|t| t.weight == 0) {
                Vec::new()
            } else {
                vec![maglev::build(&mt, vc.table_size as usize)
                    .map_err(|source| BuildError::Maglev {
                        vipa: vc.address,
                        source,
                    })?
                    .entries()
                    .iter()
                    .map(|&local| global[local as usize])
                    .collect()]
            };
            let table = (!maglev.is_empty()).then_some(0);
            vipas.push(VipaDesc {
                address: vc.address,
                epoch: 0,
                owned: true,
                services: vc
                    .services
                    .iter()
                    .map(|s| ServiceDesc {
                        protocol: s.protocol.number(),
                        port: s.port,
                        maglev: table,
                    })
                    .collect(),
                maglev,
            });
        }
        Ok(Description {
            generation,
            vipas,
            targets,
            crt: Vec::new(),
            neighbors: Vec::new(),
        })
    }
}

const EMPTY: u32 = u32::MAX;

fn align_up(n: usize) -> usize {
    n.div_ceil(SECTION_ALIGN) * SECTION_ALIGN
}

/// A description laid out and ready to write.
#[derive(Debug)]
pub struct Builder<'d> {
    desc: &'d Description,
    generation: u64,
    sections: [Section; SECTIONS],
    total_len: usize,
    services: usize,
    maglev: usize,
    /// CRT home slots.
    home: u64,
    max_probe: u32,
    /// For each CRT slot, the index of its connection in `desc.crt`, or EMPTY.
    slot_of: Vec<u32>,
    /// Each connection's flow hash.
    hashes: Vec<u64>,
}

impl<'d> Builder<'d> {
    /// Checks `desc` and lays it out.
    pub fn new(desc: &'d Description) -> Result<Self, BuildError> {
        if desc.vipas.len() > MAX_VIPAS {
            return Err(BuildError::TooManyVipas(desc.vipas.len()));
        }
        if desc.targets.len() >= EMPTY as usize {
            return Err(BuildError::TooManyTargets(desc.targets.len()));
        }
        let mut services = 0usize;
        let mut maglev_len = 0usize;
        for (i, v) in desc.vipas.iter().enumerate() {
            if desc.vipas[..i].iter().any(|o| o.address == v.address) {
                return Err(BuildError::DuplicateVipa(v.address));
            }
            for s in &v.services {
                if (s.protocol != 6 && s.protocol != 17) || s.port == 0 {
                    return Err(BuildError::BadService {
                        vipa: v.address,
                        protocol: s.protocol,
                        port: s.port,
                    });
                }
            }
            let table_len = v.maglev.first().map_or(0, Vec::len);
            let bad_size = BuildError::BadMaglevSize {
                vipa: v.address,
                len: table_len,
            };
            if v.maglev.len() > usize::from(NO_MAGLEV_TABLE)
                || (!v.maglev.is_empty() && table_len < 2)
                || table_len as u64 > maglev::MAX_TABLE_SIZE
                || v.maglev.iter().any(|t| t.len() != table_len)
                || v.services
                    .iter()
                    .any(|s| s.maglev.is_some_and(|k| usize::from(k) >= v.maglev.len()))
            {
                return Err(bad_size);
            }
            for (entry, &t) in v.maglev.iter().flatten().enumerate() {
                if desc
                    .targets
                    .get(t as usize)
                    .is_none_or(|d| d.state != TargetState::Ready)
                {
                    return Err(BuildError::MaglevTarget {
                        vipa: v.address,
                        entry,
                        target: t,
                    });
                }
            }
            services += v.services.len();
            maglev_len += table_len * v.maglev.len();
        }
        for (index, c) in desc.crt.iter().enumerate() {
            if c.key.protocol != 6 && c.key.protocol != 17 {
                return Err(BuildError::CrtProtocol {
                    index,
                    protocol: c.key.protocol,
                });
            }
            if c.target as usize >= desc.targets.len() {
                return Err(BuildError::CrtTarget {
                    index,
                    target: c.target,
                });
            }
        }
        let (home, max_probe, slot_of, hashes) = place(&desc.crt)?;

        let counts = [
            desc.vipas.len(),
            services,
            desc.targets.len(),
            maglev_len,
            slot_of.len(),
            desc.neighbors.len(),
        ];
        let sizes = [
            core::mem::size_of::<VipaRecord>(),
            core::mem::size_of::<ServiceRecord>(),
            core::mem::size_of::<TargetRecord>(),
            core::mem::size_of::<u32>(),
            core::mem::size_of::<CrtEntry>(),
            core::mem::size_of::<NeighborRecord>(),
        ];
        let mut sections = [Section::default(); SECTIONS];
        let mut at = align_up(HEADER_LEN);
        for i in 0..SECTIONS {
            sections[i] = Section {
                offset: at as u64,
                count: counts[i] as u64,
            };
            at = align_up(at + counts[i] * sizes[i]);
        }
        let last = sections[SECTIONS - 1];
        let total_len = last.offset as usize + counts[SECTIONS - 1] * sizes[SECTIONS - 1];
        Ok(Builder {
            desc,
            generation: desc.generation,
            sections,
            total_len,
            services,
            maglev: maglev_len,
            home,
            max_probe,
            slot_of,
            hashes,
        })
    }

    /// Writes `generation` instead of the description's (the writer numbers
    /// generations itself).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// The generation that will be written.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The exact size of the snapshot in bytes.
    pub fn len(&self) -> usize {
        self.total_len
    }

    /// Never true: a snapshot has at least a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The CRT's home slots and longest probe.
    pub fn crt_geometry(&self) -> (u64, u32) {
        (self.home, self.max_probe)
    }

    /// Writes the snapshot into `out` (exactly [`Self::len`] bytes, 8-byte
    /// aligned; its previous contents do not matter) and returns the checksum.
    pub fn write(&self, out: &mut [u8]) -> Result<u64, BuildError> {
        let aligned = (out.as_ptr() as usize).is_multiple_of(8);
        if out.len() != self.total_len || !aligned {
            return Err(BuildError::Buffer {
                got: out.len(),
                needed: self.total_len,
                aligned,
            });
        }
        let d = self.desc;
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            header_len: HEADER_LEN as u32,
            total_len: self.total_len as u64,
            checksum: 0,
            generation: self.generation,
            crt_home_slots: self.home,
            crt_entries: d.crt.len() as u64,
            crt_max_probe: self.max_probe,
            flags: 0,
            sections: self.sections,
        };
        out[..HEADER_LEN].copy_from_slice(header.as_bytes());
        // Zero the gaps between sections (the checksum covers them).
        let mut end = HEADER_LEN;
        let sizes = [64usize, 4, 32, 4, 48, 32];
        for (s, size) in self.sections.iter().zip(sizes) {
            out[end..s.offset as usize].fill(0);
            end = s.offset as usize + s.count as usize * size;
        }

        let mut services = Vec::with_capacity(self.services);
        let mut maglev_at = 0u32;
        let vipas: Vec<VipaRecord> = d
            .vipas
            .iter()
            .map(|v| {
                let (address, family) = encode_ip(v.address);
                let r = VipaRecord {
                    address,
                    epoch: v.epoch,
                    services_start: services.len() as u32,
                    services_count: v.services.len() as u32,
                    maglev_start: maglev_at,
                    maglev_len: v.maglev.first().map_or(0, Vec::len) as u32,
                    family,
                    owned: u8::from(v.owned),
                    maglev_tables: v.maglev.len() as u16,
                    reserved: [0; 20],
                };
                services.extend(v.services.iter().map(|s| ServiceRecord {
                    port: s.port,
                    protocol: s.protocol,
                    maglev_table: s.maglev.unwrap_or(NO_MAGLEV_TABLE),
                }));
                maglev_at += v.maglev.iter().map(Vec::len).sum::<usize>() as u32;
                r
            })
            .collect();
        let targets: Vec<TargetRecord> = d
            .targets
            .iter()
            .map(|t| {
                let (address, family) = encode_ip(t.address);
                TargetRecord {
                    address,
                    family,
                    state: t.state as u8,
                    reserved: [0; 14],
                }
            })
            .collect();
        let neighbors: Vec<NeighborRecord> = d
            .neighbors
            .iter()
            .map(|n| {
                let (address, family) = encode_ip(n.address);
                NeighborRecord {
                    address,
                    mac: n.mac,
                    port: n.port.unwrap_or(ANY_PORT),
                    family,
                    reserved: [0; 7],
                }
            })
            .collect();
        self.put(out, section::VIPAS, vipas.as_bytes());
        self.put(out, section::SERVICES, services.as_bytes());
        self.put(out, section::TARGETS, targets.as_bytes());
        let mg = self.range(section::MAGLEV, 4);
        let mut at = mg.start;
        for table in d.vipas.iter().flat_map(|v| &v.maglev) {
            let b = table.as_bytes();
            out[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        debug_assert_eq!(at - mg.start, self.maglev * 4);
        self.put(out, section::NEIGHBORS, neighbors.as_bytes());

        let range = self.range(section::CRT, core::mem::size_of::<CrtEntry>());
        let slots =
            <[CrtEntry]>::mut_from_bytes(&mut out[range]).map_err(|_| BuildError::Buffer {
                got: self.total_len,
                needed: self.total_len,
                aligned: false,
            })?;
        for (slot, &idx) in slots.iter_mut().zip(&self.slot_of) {
            *slot = if idx == EMPTY {
                CrtEntry::default()
            } else {
                let c = &d.crt[idx as usize];
                CrtEntry::new(&c.key, self.hashes[idx as usize], c.target)
            };
        }

        let sum = super::checksum(out);
        out[24..32].copy_from_slice(&sum.to_ne_bytes());
        Ok(sum)
    }

    /// Builds into a fresh aligned heap buffer.
    pub fn to_buf(&self) -> Result<SnapshotBuf, BuildError> {
        let mut buf = SnapshotBuf::zeroed(self.total_len);
        self.write(buf.as_mut_bytes())?;
        Ok(buf)
    }

    fn range(&self, index: usize, size: usize) -> core::ops::Range<usize> {
        let s = self.sections[index];
        s.offset as usize..s.offset as usize + s.count as usize * size
    }

    fn put(&self, out: &mut [u8], index: usize, bytes: &[u8]) {
        let start = self.sections[index].offset as usize;
        out[start..start + bytes.len()].copy_from_slice(bytes);
    }
}

/// Places every connection: returns (home slots, longest probe, slot →
/// connection index, hashes).
#[allow(clippy::type_complexity)]
fn place(crt: &[CrtDesc]) -> Result<(u64, u32, Vec<u32>, Vec<u64>), BuildError> {
    let n = crt.len();
    if n == 0 {
        return Ok((0, 0, Vec::new(), Vec::new()));
    }
    let home = (n + n / 2).max(16);
    let hashes: Vec<u64> = crt.iter().map(|c| c.key.hash()).collect();
    let mut slot_of = vec![EMPTY; home + 64];
    let mut max_probe = 0usize;
    for (i, &h) in hashes.iter().enumerate() {
        let start = home_slot(h, home as u64);
        let mut s = start;
        loop {
            if s >= slot_of.len() {
                slot_of.resize(s + 64, EMPTY);
            }
            let o = slot_of[s];
            if o == EMPTY {
                slot_of[s] = i as u32;
                break;
            }
            if hashes[o as usize] == h && crt[o as usize].key == crt[i].key {
                return Err(BuildError::DuplicateConnection {
                    index: i,
                    first: o as usize,
                });
            }
            s += 1;
        }
        max_probe = max_probe.max(s - start);
    }
    if max_probe > MAX_CRT_PROBE as usize {
        return Err(BuildError::ProbeTooLong(max_probe));
    }
    // Exactly `home + max_probe` slots: the longest probe from the last
    // home slot ends inside the table, and nothing beyond it is used.
    slot_of.resize(home + max_probe, EMPTY);
    Ok((home as u64, max_probe as u32, slot_of, hashes))
}

/// A snapshot in an 8-byte-aligned heap buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotBuf {
    words: Vec<u64>,
    len: usize,
}

impl SnapshotBuf {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        SnapshotBuf {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// A copy of `bytes`, aligned.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.as_mut_bytes().copy_from_slice(bytes);
        b
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.words.as_bytes()[..self.len]
    }

    /// The bytes, writable.
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.words.as_mut_bytes()[..self.len]
    }
}
