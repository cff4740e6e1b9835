//! Next-hop resolution by the data plane itself: ARP and NDP, sent and
//! learned through the ports.
//!
//! Encapsulated frames go to a next hop's MAC: the target's own, when the
//! target is on the port's segment, or the port's configured gateway's. A
//! static `next_hop_mac` in the configuration bypasses all of this.
//!
//! # Sharing without locks
//!
//! With RSS or fanout, the ARP reply to a request one worker sent may arrive
//! on another worker's queue, so the table is shared by all workers. Each
//! entry is a handful of atomics: the MAC (48 bits, 0 = unknown) and the
//! seconds at which it was last confirmed and last requested. A worker that
//! learns a MAC stores it; every worker reads it with one relaxed load per
//! packet — a MAC is written whole in one `u64`, so a reader sees either the
//! old or the new one, never half of each. Requests are rate-limited to one
//! per entry per second by a compare-and-swap on the request time, so one
//! worker sends it and the others do not.
//!
//! # Life of an entry
//!
//! * **unknown** → the next packet towards it is turned into a request (the
//!   data packet is lost: counted `neighbor_requests`); while a request is
//!   outstanding, further packets are dropped (`drop_neighbor_unresolved`);
//! * **reachable** (confirmed less than `refresh` seconds ago) → used;
//! * **stale** (confirmed between `refresh` and `timeout` seconds ago) →
//!   still used, and a refresh request is sent (at most once a second);
//! * **expired** (not confirmed for `timeout` seconds) → unknown again.
//!
//! Learning: any ARP packet whose sender protocol address is a next hop, and
//! any neighbour advertisement whose target is one, confirms the entry
//! (`neighbor_learned`). The frame then continues as before (ARP to the host
//! unless it asks for a VIPA).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// One next hop's state.
#[derive(Debug)]
struct Entry {
    address: IpAddr,
    /// Index of the port the next hop is reached through.
    port: usize,
    /// The MAC in the low 48 bits; 0 when unknown.
    mac: AtomicU64,
    /// Second (worker clock) of the last confirmation.
    confirmed: AtomicU32,
    /// Second of the last request sent.
    requested: AtomicU32,
}

/// What the data plane knows about a next hop now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Use this MAC.
    Reachable([u8; 6]),
    /// Use this MAC, and send a refresh request (this caller won the right to).
    Stale([u8; 6]),
    /// No MAC: send a request (this caller won the right to).
    Request,
    /// No MAC, and a request went out less than a second ago.
    Pending,
}

/// The shared next-hop table.
#[derive(Debug)]
pub struct Neighbors {
    entries: Vec<Entry>,
    refresh: u32,
    timeout: u32,
}

fn pack(mac: [u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&mac);
    u64::from_le_bytes(b)
}

fn unpack(v: u64) -> [u8; 6] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

impl Neighbors {
    /// A table for these next hops (address, port), all unknown.
    /// `refresh` and `timeout` are in seconds (`timeout > refresh`).
    pub fn new(next_hops: &[(IpAddr, usize)], refresh: u32, timeout: u32) -> Self {
        Neighbors {
            entries: next_hops
                .iter()
                .map(|&(address, port)| Entry {
                    address,
                    port,
                    mac: AtomicU64::new(0),
                    confirmed: AtomicU32::new(0),
                    requested: AtomicU32::new(0),
                })
                .collect(),
            refresh: refresh.max(1),
            timeout: timeout.max(refresh.max(1) + 1),
        }
    }

    /// Number of next hops.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no next hop to resolve.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The address and port of next hop `id`.
    pub fn next_hop(&self, id: usize) -> Option<(IpAddr, usize)> {
        self.entries.get(id).map(|e| (e.address, e.port))
    }

    /// The id of the next hop with this address reached through `port`.
    #[inline]
    pub fn find(&self, address: IpAddr, port: usize) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.port == port && e.address == address)
    }

    /// Claims the right to send a request for `e` at `now` (one per second).
    fn claim_request(e: &Entry, now: u32) -> bool {
        let last = e.requested.load(Ordering::Relaxed);
        last != now
            && e.requested
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The MAC of next hop `id` when [`Neighbors::lookup`] would say
    /// `Reachable` without claiming anything (known and younger than the
    /// refresh time); `None` otherwise. No side effects: the fast path asks
    /// this, and leaves every other case to `lookup`.
    #[inline]
    pub fn fresh(&self, id: usize, now: u32) -> Option<[u8; 6]> {
        let e = self.entries.get(id)?;
        let mac = e.mac.load(Ordering::Relaxed);
        let age = now.saturating_sub(e.confirmed.load(Ordering::Relaxed));
        (mac != 0 && age < self.refresh).then(|| unpack(mac))
    }

    /// The state of next hop `id` at `now` (seconds, ≥ 1).
    #[inline]
    pub fn lookup(&self, id: usize, now: u32) -> Lookup {
        let Some(e) = self.entries.get(id) else {
            return Lookup::Pending;
        };
        let mac = e.mac.load(Ordering::Relaxed);
        let age = now.saturating_sub(e.confirmed.load(Ordering::Relaxed));
        if mac != 0 && age < self.refresh {
            return Lookup::Reachable(unpack(mac));
        }
        if mac != 0 && age < self.timeout {
            return if Self::claim_request(e, now) {
                Lookup::Stale(unpack(mac))
            } else {
                Lookup::Reachable(unpack(mac))
            };
        }
        if Self::claim_request(e, now) {
            Lookup::Request
        } else {
            Lookup::Pending
        }
    }

    /// Records that `address` (seen on `port`) is at `mac`; returns true
    /// when `address` is a next hop of that port.
    #[inline]
    pub fn learn(&self, address: IpAddr, port: usize, mac: [u8; 6], now: u32) -> bool {
        let Some(id) = self.find(address, port) else {
            return false;
        };
        if mac == [0; 6] || mac[0] & 1 != 0 {
            // Multicast or zero: not a neighbour's address.
            return false;
        }
        let e = &self.entries[id];
        e.mac.store(pack(mac), Ordering::Relaxed);
        e.confirmed.store(now, Ordering::Relaxed);
        true
    }

    /// Takes over what `old` knows about the next hops both tables have
    /// (for a new generation whose next hops changed), so a snapshot switch
    /// does not make workers ask again for MACs they know.
    pub fn adopt(&self, old: &Neighbors) {
        for e in &self.entries {
            if let Some(id) = old.find(e.address, e.port) {
                let o = &old.entries[id];
                e.mac
                    .store(o.mac.load(Ordering::Relaxed), Ordering::Relaxed);
                e.confirmed
                    .store(o.confirmed.load(Ordering::Relaxed), Ordering::Relaxed);
                e.requested
                    .store(o.requested.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
    }

    /// Next hops of `port` whose entries are unknown or stale at `now` and
    /// for which this caller won the right to send a request now.
    pub fn due_requests(&self, port: usize, now: u32) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.port == port)
            .filter_map(move |(id, _)| match self.lookup(id, now) {
                Lookup::Stale(_) | Lookup::Request => Some(id),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Neighbors {
        Neighbors::new(
            &[
                ("10.0.0.1".parse().unwrap(), 0),
                ("fd00::1".parse().unwrap(), 0),
            ],
            30,
            120,
        )
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    #[test]
    fn unknown_then_requested_once_a_second_then_learned() {
        let n = table();
        assert_eq!(n.lookup(0, 10), Lookup::Request);
        assert_eq!(n.lookup(0, 10), Lookup::Pending, "one request per second");
        assert_eq!(n.lookup(0, 11), Lookup::Request);
        assert!(n.learn("10.0.0.1".parse().unwrap(), 0, MAC, 11));
        assert_eq!(n.lookup(0, 12), Lookup::Reachable(MAC));
    }

    #[test]
    fn stale_entries_refresh_and_expire() {
        let n = table();
        n.learn("10.0.0.1".parse().unwrap(), 0, MAC, 100);
        assert_eq!(n.lookup(0, 129), Lookup::Reachable(MAC));
        assert_eq!(n.lookup(0, 130), Lookup::Stale(MAC));
        assert_eq!(
            n.lookup(0, 130),
            Lookup::Reachable(MAC),
            "refresh claimed once"
        );
        assert_eq!(
            n.lookup(0, 220),
            Lookup::Request,
            "expired after the timeout"
        );
    }

    #[test]
    fn learning_ignores_strangers_and_multicast() {
        let n = table();
        assert!(!n.learn("10.0.0.2".parse().unwrap(), 0, MAC, 1));
        assert!(
            !n.learn("10.0.0.1".parse().unwrap(), 1, MAC, 1),
            "other port"
        );
        assert!(!n.learn("10.0.0.1".parse().unwrap(), 0, [1, 0, 0x5e, 0, 0, 1], 1));
        assert!(n.learn("fd00::1".parse().unwrap(), 0, MAC, 1));
        assert_eq!(n.find("fd00::1".parse().unwrap(), 0), Some(1));
    }

    #[test]
    fn due_requests_lists_each_entry_once_per_second() {
        let n = table();
        assert_eq!(n.due_requests(0, 5).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(n.due_requests(0, 5).count(), 0);
        assert_eq!(n.due_requests(1, 6).count(), 0);
    }
}
