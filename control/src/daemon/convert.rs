//! The cluster state machine's [`Snapshot`] as the forwarder's snapshot
//! [`Description`].
//!
//! # Design decisions
//!
//! - **Target slots come from the configuration**: every target address of
//!   every VIPA, in file order, each once — the order
//!   [`Description::from_config`] uses, so a forwarder started on its
//!   configuration and then switched to the daemon's snapshots keeps its
//!   flows. A slot never changes address while the daemon runs (the
//!   format's rule, see `vipa_proto::snapshot`).
//! - **New connections per service, flows per target.** The cluster
//!   protocol knows a state per target *and service*. Each service of a
//!   VIPA gets a Maglev table over the targets that take its new
//!   connections (services with the same set share one), so a target that
//!   listens on port 80 but not on 443 gets new connections to 80 only
//!   (seed 001). The snapshot has one state per target slot, which decides
//!   whether the flows the forwarder remembers for it are kept: a slot gets
//!   the most useful state it has anywhere (ready, then quiesced, then
//!   restarting, then down), so it keeps its flows wherever it keeps any.
//! - Only the VIPAs this node owns are described (`owned = true`); a VIPA
//!   it does not own is not routed (the forwarder's `not_vipa` rule).

use std::net::{IpAddr, SocketAddr};

use vipa_proto::config::{Config, L4Protocol, Service};
use vipa_proto::ctl::Connection;
use vipa_proto::flowkey::FlowKey;
use vipa_proto::maglev::{self, MaglevTarget, DEFAULT_TABLE_SIZE};
use vipa_proto::snapshot::{
    BuildError, CrtDesc, Description, ServiceDesc, TargetDesc, TargetState as SlotState, VipaDesc,
};

use crate::cluster::{Snapshot, TargetState};

/// Target address → slot, fixed for the daemon's life.
#[derive(Clone, Debug, Default)]
pub struct Slots {
    addresses: Vec<IpAddr>,
}

impl Slots {
    /// Every target of every VIPA of `config`, in file order, each once.
    pub fn from_config(config: &Config) -> Self {
        Slots {
            addresses: config.target_addresses(),
        }
    }

    /// The slot of `address`.
    pub fn slot(&self, address: IpAddr) -> Option<u32> {
        self.addresses
            .iter()
            .position(|a| *a == address)
            .map(|i| i as u32)
    }

    /// The address in `slot`.
    pub fn address(&self, slot: u32) -> Option<IpAddr> {
        self.addresses.get(slot as usize).copied()
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// No slot at all.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

fn rank(s: SlotState) -> u8 {
    match s {
        SlotState::Ready => 3,
        SlotState::Quiesced => 2,
        SlotState::Restarting => 1,
        SlotState::Down => 0,
    }
}

fn slot_state(s: TargetState) -> SlotState {
    match s {
        TargetState::Ready => SlotState::Ready,
        TargetState::Quiesced => SlotState::Quiesced,
        TargetState::Restarting => SlotState::Restarting,
        TargetState::Down => SlotState::Down,
    }
}

/// The forwarder's description of what `snap` routes (generation 0: the
/// writer numbers it).
///
/// # Errors
///
/// A Maglev table that cannot be built (a table size the configuration
/// check lets through cannot fail; kept for safety).
pub fn description(
    config: &Config,
    slots: &Slots,
    snap: &Snapshot,
) -> Result<Description, BuildError> {
    let mut targets: Vec<TargetDesc> = slots
        .addresses
        .iter()
        .map(|&address| TargetDesc {
            address,
            state: SlotState::Down,
        })
        .collect();
    let mut vipas = Vec::with_capacity(snap.vipas.len());
    let mut crt = Vec::new();
    for v in &snap.vipas {
        let table_size = config
            .vipas
            .iter()
            .find(|c| c.address == v.address)
            .map_or(DEFAULT_TABLE_SIZE, |c| c.table_size);
        // Per service: the (slot, weight) of the targets that take its new
        // connections, by slot; services with the same set share a table.
        let mut sets: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut table_of: Vec<(Service, usize)> = Vec::new();
        for st in &v.services {
            let mut takes_new: Vec<(u32, u32)> = Vec::new();
            for t in &st.targets {
                let Some(slot) = slots.slot(t.address) else {
                    continue;
                };
                let state = slot_state(t.state);
                let cur = &mut targets[slot as usize].state;
                if rank(state) > rank(*cur) {
                    *cur = state;
                }
                if t.takes_new() && !takes_new.iter().any(|(s, _)| *s == slot) {
                    takes_new.push((slot, t.weight));
                }
            }
            if takes_new.is_empty() {
                continue;
            }
            takes_new.sort_unstable();
            let index = sets
                .iter()
                .position(|s| *s == takes_new)
                .unwrap_or_else(|| {
                    sets.push(takes_new);
                    sets.len() - 1
                });
            table_of.push((st.service, index));
        }
        if sets.len() > usize::from(u8::MAX) {
            return Err(BuildError::BadMaglevSize {
                vipa: v.address,
                len: table_size as usize,
            });
        }
        let mut maglev = Vec::with_capacity(sets.len());
        for set in &sets {
            let keys: Vec<String> = set
                .iter()
                .map(|&(slot, _)| slots.addresses[slot as usize].to_string())
                .collect();
            let mt: Vec<MaglevTarget<'_>> = set
                .iter()
                .zip(&keys)
                .map(|(&(_, weight), key)| MaglevTarget { key, weight })
                .collect();
            let table: Vec<u32> = maglev::build(&mt, table_size as usize)
                .map_err(|source| BuildError::Maglev {
                    vipa: v.address,
                    source,
                })?
                .entries()
                .iter()
                .map(|&local| set[local as usize].0)
                .collect();
            maglev.push(table);
        }
        let services = match config.vipas.iter().find(|c| c.address == v.address) {
            Some(c) => c.services.clone(),
            None => v.services.iter().map(|s| s.service).collect(),
        };
        vipas.push(VipaDesc {
            address: v.address,
            epoch: v.epoch.0,
            owned: true,
            services: services
                .iter()
                .map(|s| ServiceDesc {
                    protocol: s.protocol.number(),
                    port: s.port,
                    maglev: table_of
                        .iter()
                        .find(|(service, _)| service == s)
                        .map(|&(_, index)| index as u8),
                })
                .collect(),
            maglev,
        });
        for (conn, target) in &v.crt {
            if let Some(slot) = slots.slot(*target) {
                crt.push(CrtDesc {
                    key: flow_key(v.address, conn),
                    target: slot,
                });
            }
        }
    }
    Ok(Description {
        generation: 0,
        vipas,
        targets,
        crt,
        neighbors: Vec::new(),
    })
}

/// The forwarder's key of a connection to `vipa` (client → VIPA).
pub fn flow_key(vipa: IpAddr, conn: &Connection) -> FlowKey {
    FlowKey::new(
        conn.client.ip(),
        vipa,
        conn.service.protocol.number(),
        conn.client.port(),
        conn.service.port,
    )
}

/// The connection a forwarder flow key stands for, and its VIPA; `None`
/// for a protocol other than TCP / UDP.
pub fn connection_of(key: &FlowKey) -> Option<(IpAddr, Connection)> {
    let protocol = match key.protocol {
        6 => L4Protocol::Tcp,
        17 => L4Protocol::Udp,
        _ => return None,
    };
    Some((
        key.dst_addr(),
        Connection {
            client: SocketAddr::new(key.src_addr(), key.src_port),
            service: Service {
                protocol,
                port: key.dst_port,
            },
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{OwnedVipa, ServiceTargets, TargetEntry};
    use vipa_proto::ctl::Epoch;
    use vipa_proto::snapshot::Builder;

    const CONFIG: &str = r#"
[node]
name = "fwd-a"
tunnel_source_v4 = "10.10.0.1"

[[port]]
name = "p0"
mac = "02:00:00:00:00:01"
backend = "afpacket"
device = "eth0"
next_hop_mac = "02:00:00:00:00:02"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80", "tcp/443"]
table_size = 251
target = [{ address = "10.20.0.11" }, { address = "10.20.0.12", weight = 2 }]

[[vipa]]
address = "192.0.2.20"
services = ["tcp/80"]
table_size = 251
target = [{ address = "10.20.0.13" }, { address = "10.20.0.11" }]
"#;

    fn config() -> Config {
        Config::from_str_with_path(CONFIG, std::path::Path::new("test.toml")).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entry(addr: &str, weight: u32, state: TargetState) -> TargetEntry {
        TargetEntry {
            address: ip(addr),
            weight,
            candidate: true,
            state,
        }
    }

    #[test]
    fn slots_follow_the_configuration_and_the_from_config_order() {
        let c = config();
        let slots = Slots::from_config(&c);
        let from_config = Description::from_config(&c, 1).unwrap();
        let addrs: Vec<IpAddr> = from_config.targets.iter().map(|t| t.address).collect();
        assert_eq!(slots.addresses, addrs);
        assert_eq!(slots.slot(ip("10.20.0.13")), Some(2));
        assert_eq!(slots.address(1), Some(ip("10.20.0.12")));
        assert_eq!(slots.slot(ip("10.9.9.9")), None);
    }

    #[test]
    fn nothing_owned_describes_every_slot_down_and_no_vipa() {
        let c = config();
        let d = description(&c, &Slots::from_config(&c), &Snapshot::default()).unwrap();
        assert!(d.vipas.is_empty());
        assert_eq!(d.targets.len(), 3);
        assert!(d.targets.iter().all(|t| t.state == SlotState::Down));
        Builder::new(&d).unwrap();
    }

    #[test]
    fn an_owned_vipa_becomes_a_valid_snapshot() {
        let c = config();
        let slots = Slots::from_config(&c);
        let web = Service {
            protocol: L4Protocol::Tcp,
            port: 80,
        };
        let tls = Service {
            protocol: L4Protocol::Tcp,
            port: 443,
        };
        let conn = Connection {
            client: "198.51.100.7:40000".parse().unwrap(),
            service: web,
        };
        let snap = Snapshot {
            vipas: vec![OwnedVipa {
                address: ip("192.0.2.10"),
                epoch: Epoch::new(3, 1),
                services: vec![
                    ServiceTargets {
                        service: web,
                        targets: vec![
                            entry("10.20.0.11", 1, TargetState::Quiesced),
                            entry("10.20.0.12", 2, TargetState::Ready),
                        ],
                    },
                    ServiceTargets {
                        service: tls,
                        targets: vec![
                            entry("10.20.0.11", 1, TargetState::Restarting),
                            entry("10.20.0.12", 2, TargetState::Down),
                        ],
                    },
                ],
                crt: vec![(conn, ip("10.20.0.11"))],
            }],
        };
        let d = description(&c, &slots, &snap).unwrap();
        assert_eq!(d.vipas.len(), 1);
        let v = &d.vipas[0];
        assert_eq!(v.epoch, Epoch::new(3, 1).0);
        assert!(v.owned);
        assert_eq!(v.services.len(), 2);
        // Only the ready target gets new connections, and only for the
        // service it is ready for: 443 has no table.
        assert_eq!(v.maglev.len(), 1);
        assert_eq!(v.maglev[0].len(), 251);
        assert!(v.maglev[0].iter().all(|&s| s == 1));
        let port_of = |p: u16| v.services.iter().find(|s| s.port == p).unwrap().maglev;
        assert_eq!(port_of(80), Some(0));
        assert_eq!(port_of(443), None);
        // Best state per slot; the unowned VIPA's target is down.
        assert_eq!(d.targets[0].state, SlotState::Quiesced);
        assert_eq!(d.targets[1].state, SlotState::Ready);
        assert_eq!(d.targets[2].state, SlotState::Down);
        assert_eq!(d.crt.len(), 1);
        assert_eq!(d.crt[0].target, 0);
        assert_eq!(connection_of(&d.crt[0].key), Some((ip("192.0.2.10"), conn)));
        // The builder's own checks accept it (Maglev names ready slots only).
        Builder::new(&d).unwrap();
    }

    #[test]
    fn no_ready_target_means_an_empty_table() {
        let c = config();
        let snap = Snapshot {
            vipas: vec![OwnedVipa {
                address: ip("192.0.2.20"),
                epoch: Epoch::new(1, 0),
                services: vec![ServiceTargets {
                    service: Service {
                        protocol: L4Protocol::Tcp,
                        port: 80,
                    },
                    targets: vec![entry("10.20.0.13", 1, TargetState::Down)],
                }],
                crt: vec![],
            }],
        };
        let d = description(&c, &Slots::from_config(&c), &snap).unwrap();
        assert!(d.vipas[0].maglev.is_empty());
        assert!(d.vipas[0].services.iter().all(|s| s.maglev.is_none()));
        Builder::new(&d).unwrap();
    }

    #[test]
    fn services_with_different_ready_targets_get_their_own_tables() {
        let c = config();
        let slots = Slots::from_config(&c);
        let service = |port| Service {
            protocol: L4Protocol::Tcp,
            port,
        };
        // 10.20.0.11 listens on 80 only; 10.20.0.12 on both.
        let snap = Snapshot {
            vipas: vec![OwnedVipa {
                address: ip("192.0.2.10"),
                epoch: Epoch::new(1, 0),
                services: vec![
                    ServiceTargets {
                        service: service(80),
                        targets: vec![
                            entry("10.20.0.11", 1, TargetState::Ready),
                            entry("10.20.0.12", 1, TargetState::Ready),
                        ],
                    },
                    ServiceTargets {
                        service: service(443),
                        targets: vec![
                            entry("10.20.0.11", 1, TargetState::Restarting),
                            entry("10.20.0.12", 1, TargetState::Ready),
                        ],
                    },
                ],
                crt: vec![],
            }],
        };
        let d = description(&c, &slots, &snap).unwrap();
        let v = &d.vipas[0];
        assert_eq!(v.maglev.len(), 2);
        let table = |p: u16| {
            let k = v
                .services
                .iter()
                .find(|s| s.port == p)
                .unwrap()
                .maglev
                .unwrap();
            &v.maglev[usize::from(k)]
        };
        assert!(table(80).contains(&0) && table(80).contains(&1));
        assert!(table(443).iter().all(|&s| s == 1), "443 only to 10.20.0.12");
        // Both ready somewhere: the slots keep their flows.
        assert_eq!(d.targets[0].state, SlotState::Ready);
        Builder::new(&d).unwrap();

        // The same ready set for both services: one shared table.
        let mut same = snap.clone();
        same.vipas[0].services[1].targets[0].state = TargetState::Ready;
        let d = description(&c, &slots, &same).unwrap();
        assert_eq!(d.vipas[0].maglev.len(), 1);
        assert!(d.vipas[0].services.iter().all(|s| s.maglev == Some(0)));
    }

    #[test]
    fn other_protocols_are_no_connection() {
        let key = FlowKey::new(ip("198.51.100.7"), ip("192.0.2.10"), 1, 0, 0);
        assert_eq!(connection_of(&key), None);
    }
}
