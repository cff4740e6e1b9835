//! The connection routing table (CRT) as a read-only open-addressing hash
//! table that the forwarder probes in place, without copying.
//!
//! # Geometry
//!
//! `home` slots, followed by `max_probe` overflow slots so that a probe never
//! wraps around. A key's probe starts at its *home slot*
//! `⌊hash · home / 2⁶⁴⌋` (Lemire's multiply-shift range reduction), where
//! `hash` is the fixed flow hash of [`FlowKey::hash`] — the one the packet
//! path computes anyway — and walks forward (linear probing) until the key,
//! an empty slot, or `max_probe + 1` slots. The builder sizes `home` to
//! 1.5 × the entries (a load of two thirds: about two slots looked at per
//! hit, and the probe is one or two cache lines).
//!
//! # Slots
//!
//! A slot is a [`CrtEntry`] of 48 bytes: the whole key (so a lookup never
//! confuses two connections), the low 32 bits of the key's hash (compared
//! first, so a probe past other keys rarely compares addresses) and the
//! target slot. `protocol == 0` marks an empty slot (all bytes zero).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{section, SnapshotError};
use crate::flowkey::FlowKey;

/// The longest probe a snapshot may declare.
pub const MAX_CRT_PROBE: u32 = 4096;

/// One CRT slot (48 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct CrtEntry {
    /// Client address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// VIPA address (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Client port.
    pub src_port: u16,
    /// VIPA (service) port.
    pub dst_port: u16,
    /// 6 or 17; 0 = empty slot.
    pub protocol: u8,
    /// Reserved, 0.
    pub reserved: [u8; 3],
    /// Low 32 bits of the key's flow hash.
    pub sig: u32,
    /// The target slot.
    pub target: u32,
}

impl CrtEntry {
    /// An occupied slot for `key` → `target`.
    pub fn new(key: &FlowKey, hash: u64, target: u32) -> Self {
        CrtEntry {
            src: key.src,
            dst: key.dst,
            src_port: key.src_port,
            dst_port: key.dst_port,
            protocol: key.protocol,
            reserved: [0; 3],
            sig: hash as u32,
            target,
        }
    }

    /// True for an empty slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.protocol == 0
    }

    /// The slot's key.
    pub fn key(&self) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
        }
    }

    #[inline]
    fn matches(&self, key: &FlowKey, sig: u32) -> bool {
        self.sig == sig
            && self.src_port == key.src_port
            && self.dst_port == key.dst_port
            && self.protocol == key.protocol
            && self.src == key.src
            && self.dst == key.dst
    }
}

/// The home slot of `hash` in a table of `home` home slots.
#[inline]
pub(crate) fn home_slot(hash: u64, home: u64) -> usize {
    ((u128::from(hash) * u128::from(home)) >> 64) as usize
}

/// A validated CRT view.
#[derive(Clone, Copy, Debug)]
pub struct Crt<'a> {
    slots: &'a [CrtEntry],
    home: u64,
    max_probe: u32,
    entries: u64,
}

impl<'a> Crt<'a> {
    /// Checks the geometry and every slot; `targets` is the number of target slots.
    pub(crate) fn new_checked(
        slots: &'a [CrtEntry],
        home: u64,
        max_probe: u32,
        entries: u64,
        targets: usize,
    ) -> Result<Self, SnapshotError> {
        let crt = section::CRT;
        let geometry = |what| SnapshotError::BadRecord {
            section: section::NAMES[crt],
            index: 0,
            what,
        };
        if max_probe > MAX_CRT_PROBE {
            return Err(geometry("longest probe above 4096"));
        }
        let expected = if home == 0 {
            0
        } else {
            home.checked_add(u64::from(max_probe))
                .ok_or_else(|| geometry("slot count overflows"))?
        };
        if slots.len() as u64 != expected {
            return Err(geometry("slot count is not home slots + longest probe"));
        }
        let mut occupied = 0u64;
        for (i, e) in slots.iter().enumerate() {
            if e.is_empty() {
                continue;
            }
            occupied += 1;
            if e.protocol != 6 && e.protocol != 17 {
                return Err(super::bad(crt, i, "protocol is neither 6 nor 17"));
            }
            if e.target as usize >= targets {
                return Err(super::bad(crt, i, "names no target"));
            }
        }
        if occupied != entries {
            return Err(geometry(
                "occupied slots differ from the header's entry count",
            ));
        }
        Ok(Crt {
            slots,
            home,
            max_probe,
            entries,
        })
    }

    /// A view over slots that were validated before (by
    /// [`super::Snapshot::new_checked`] on the same bytes): geometry only,
    /// no scan, for a reader that keeps the bytes and re-derives the view.
    /// A view with inconsistent geometry is empty.
    pub fn from_validated(slots: &'a [CrtEntry], home: u64, max_probe: u32, entries: u64) -> Self {
        let ok = home != 0 && slots.len() as u64 == home + u64::from(max_probe);
        Crt {
            slots: if ok { slots } else { &[] },
            home: if ok { home } else { 0 },
            max_probe,
            entries: if ok { entries } else { 0 },
        }
    }

    /// The target slot of `key` (whose [`FlowKey::hash`] is `hash`), if the
    /// CRT has it.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        if self.home == 0 {
            return None;
        }
        let start = home_slot(hash, self.home);
        let end = (start + self.max_probe as usize + 1).min(self.slots.len());
        let sig = hash as u32;
        for e in self.slots.get(start..end)? {
            if e.is_empty() {
                return None;
            }
            if e.matches(key, sig) {
                return Some(e.target);
            }
        }
        None
    }

    /// Number of connections in the table.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// True when the table holds no connection.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Home slots.
    pub fn home_slots(&self) -> u64 {
        self.home
    }

    /// The longest probe.
    pub fn max_probe(&self) -> u32 {
        self.max_probe
    }

    /// All slots (empty ones included).
    pub fn slots(&self) -> &'a [CrtEntry] {
        self.slots
    }

    /// The connections: (key, target slot).
    pub fn iter(&self) -> impl Iterator<Item = (FlowKey, u32)> + 'a {
        self.slots
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| (e.key(), e.target))
    }
}
