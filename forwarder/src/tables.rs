//! The forwarding tables a worker reads: VIPAs, services, targets, Maglev
//! tables, port facts and pre-built outer headers.
//!
//! They are built once from the configuration (and, with the control plane,
//! from its snapshots) and are immutable afterwards, so every worker reads
//! them without locks. Lookups the packet path makes are linear scans over
//! short arrays (a node owns a handful of VIPAs with a handful of services)
//! or one index into a Maglev table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vipa_proto::config::{Config, L4Protocol, NotVipa};
use vipa_proto::maglev::{self, MaglevTable, MaglevTarget};

/// Outer IPv4 + GRE overhead (20 + 4 bytes).
pub const OVERHEAD_V4: usize = 20 + 4;
/// Outer IPv6 + GRE overhead (40 + 4 bytes).
pub const OVERHEAD_V6: usize = 40 + 4;

/// One service of a VIPA: protocol and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// IP protocol number (6 or 17).
    pub protocol: u8,
    /// Destination port.
    pub port: u16,
}

/// A VIPA as the data plane sees it.
#[derive(Clone, Debug)]
pub struct Vipa {
    /// The address.
    pub address: IpAddr,
    /// Its services.
    pub services: Vec<Service>,
    /// Maglev slot → index into [`Tables::targets`]; `None` when no target has weight.
    pub maglev: Option<MaglevTable>,
}

impl Vipa {
    /// True when `protocol`/`port` is one of the VIPA's services.
    #[inline]
    pub fn serves(&self, protocol: u8, port: u16) -> bool {
        self.services
            .iter()
            .any(|s| s.port == port && s.protocol == protocol)
    }

    /// The target for a flow hash, from the Maglev table.
    #[inline]
    pub fn maglev_target(&self, hash: u64) -> Option<u32> {
        self.maglev.as_ref().map(|m| m.lookup(hash))
    }
}

/// A target: where encapsulated packets go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The target's address (its family is the outer family).
    pub address: IpAddr,
    /// The outer source address for this target's family.
    pub tunnel_source: IpAddr,
}

/// What the data plane knows about a port.
#[derive(Clone, Debug)]
pub struct PortInfo {
    /// Name from the configuration.
    pub name: String,
    /// The port's own MAC (source of everything it sends, ARP answers included).
    pub mac: [u8; 6],
    /// IP MTU of the port.
    pub mtu: usize,
    /// Static L2 next hop for encapsulated frames.
    pub next_hop_mac: [u8; 6],
}

/// Everything the pipeline reads.
#[derive(Clone, Debug)]
pub struct Tables {
    /// VIPAs, in configuration order.
    pub vipas: Vec<Vipa>,
    v4: Vec<([u8; 4], u16)>,
    v6: Vec<([u8; 16], u16)>,
    /// Targets of all VIPAs, each address once.
    pub targets: Vec<Target>,
    /// Ports, in configuration order.
    pub ports: Vec<PortInfo>,
    /// Hand non-VIPA IP traffic to the host (true) or drop it.
    pub not_vipa_to_host: bool,
    /// Flow-table capacity per worker.
    pub flow_table_capacity: usize,
    /// Seconds a flow lives without a packet.
    pub flow_idle_timeout: u32,
    /// Frames per receive burst.
    pub burst_size: usize,
}

/// A configuration the tables cannot be built from (the config validator
/// should have caught it; this is the last line of defence).
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("vipa {vipa}: {detail}")]
    Maglev { vipa: IpAddr, detail: String },
    #[error("target {target}: no tunnel source address of its family in [node]")]
    NoTunnelSource { target: IpAddr },
    #[error("too many targets ({0}); at most 2^32 - 1")]
    TooManyTargets(usize),
    #[error("too many VIPAs ({0}); at most 65535")]
    TooManyVipas(usize),
}

impl Tables {
    /// Builds the tables from a validated configuration.
    pub fn from_config(config: &Config) -> Result<Self, TablesError> {
        if config.vipas.len() > u16::MAX as usize {
            return Err(TablesError::TooManyVipas(config.vipas.len()));
        }
        let mut targets: Vec<Target> = Vec::new();
        let mut vipas = Vec::with_capacity(config.vipas.len());
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (vi, vc) in config.vipas.iter().enumerate() {
            // Global index of each of this VIPA's targets.
            let mut global = Vec::with_capacity(vc.targets.len());
            for t in &vc.targets {
                let idx = match targets.iter().position(|x| x.address == t.address) {
                    Some(i) => i,
                    None => {
                        let tunnel_source = match t.address {
                            IpAddr::V4(_) => config.node.tunnel_source_v4.map(IpAddr::V4),
                            IpAddr::V6(_) => config.node.tunnel_source_v6.map(IpAddr::V6),
                        }
                        .ok_or(TablesError::NoTunnelSource { target: t.address })?;
                        targets.push(Target {
                            address: t.address,
                            tunnel_source,
                        });
                        targets.len() - 1
                    }
                };
                global.push(u32::try_from(idx).map_err(|_| TablesError::TooManyTargets(idx))?);
            }
            let keys: Vec<String> = vc.targets.iter().map(|t| t.address.to_string()).collect();
            let mt: Vec<MaglevTarget> = vc
                .targets
                .iter()
                .zip(keys.iter())
                .map(|(t, k)| MaglevTarget {
                    key: k.as_str(),
                    weight: t.weight,
                })
                .collect();
            let maglev = if mt.iter().all(|t| t.weight == 0) {
                None
            } else {
                let table = maglev::build(&mt, vc.table_size as usize).map_err(|e| {
                    TablesError::Maglev {
                        vipa: vc.address,
                        detail: e.to_string(),
                    }
                })?;
                Some(MaglevTable::from_entries(
                    table
                        .entries()
                        .iter()
                        .map(|&local| global[local as usize])
                        .collect(),
                ))
            };
            let services = vc
                .services
                .iter()
                .map(|s| Service {
                    protocol: match s.protocol {
                        L4Protocol::Tcp => 6,
                        L4Protocol::Udp => 17,
                    },
                    port: s.port,
                })
                .collect();
            match vc.address {
                IpAddr::V4(a) => v4.push((a.octets(), vi as u16)),
                IpAddr::V6(a) => v6.push((a.octets(), vi as u16)),
            }
            vipas.push(Vipa {
                address: vc.address,
                services,
                maglev,
            });
        }
        let ports = config
            .ports
            .iter()
            .map(|p| PortInfo {
                name: p.name.clone(),
                mac: p.mac.0,
                mtu: p.mtu as usize,
                next_hop_mac: p.next_hop_mac.0,
            })
            .collect();
        Ok(Tables {
            vipas,
            v4,
            v6,
            targets,
            ports,
            not_vipa_to_host: config.forwarder.not_vipa == NotVipa::Host,
            flow_table_capacity: config.forwarder.flow_table_capacity,
            flow_idle_timeout: u32::try_from(config.forwarder.flow_idle_timeout.as_secs())
                .unwrap_or(u32::MAX),
            burst_size: config.forwarder.burst_size,
        })
    }

    /// The VIPA with this IPv4 address, as raw header bytes.
    #[inline]
    pub fn vipa_v4(&self, addr: &[u8]) -> Option<u16> {
        self.v4
            .iter()
            .find(|(a, _)| a.as_slice() == addr)
            .map(|&(_, i)| i)
    }

    /// The VIPA with this IPv6 address, as raw header bytes.
    #[inline]
    pub fn vipa_v6(&self, addr: &[u8]) -> Option<u16> {
        self.v6
            .iter()
            .find(|(a, _)| a.as_slice() == addr)
            .map(|&(_, i)| i)
    }

    /// True when this node owns the IPv4 address `addr` as a VIPA.
    pub fn owns_v4(&self, addr: Ipv4Addr) -> bool {
        self.vipa_v4(&addr.octets()).is_some()
    }

    /// True when this node owns the IPv6 address `addr` as a VIPA.
    pub fn owns_v6(&self, addr: Ipv6Addr) -> bool {
        self.vipa_v6(&addr.octets()).is_some()
    }

    /// The index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }
}
