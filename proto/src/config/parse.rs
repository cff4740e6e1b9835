//! The schema: from the spanned tree to a checked [`Config`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use super::error::{AddressFamily, ConfigError, Location, Problem};
use super::tree::{self, Item, Key, Value};
use super::{
    Backend, ClusterConfig, ClusterNode, Config, Distribution, DpdkConfig, ForwarderConfig,
    MacAddr, Moveable, NodeConfig, NotVipa, PortConfig, Service, ServiceParseError, TargetConfig,
    VipaConfig, DEFAULT_BURST_SIZE, DEFAULT_CORES, DEFAULT_FLOW_IDLE_TIMEOUT,
    DEFAULT_FLOW_TABLE_CAPACITY, DEFAULT_IDLE_POLLS, DEFAULT_IDLE_SLEEP, DEFAULT_MBUFS,
    DEFAULT_MTU, DEFAULT_NEIGHBOR_REFRESH, DEFAULT_NEIGHBOR_TIMEOUT, DEFAULT_TX_DRAIN,
    DEFAULT_WEIGHT, GRE_OVERHEAD_V4, GRE_OVERHEAD_V6, IPV6_MIN_MTU, MAX_BURST_SIZE, MAX_CORE_ID,
    MAX_MTU, MAX_QUEUES, MAX_WEIGHT, MIN_MTU,
};
use crate::maglev::{self, DEFAULT_TABLE_SIZE, MAX_TABLE_SIZE};

const ROOT_KEYS: &[&str] = &["node", "forwarder", "dpdk", "port", "cluster", "vipa"];
const CLUSTER_KEYS: &[&str] = &[
    "node",
    "port",
    "probe_interval_ms",
    "probe_timeout_ms",
    "suspect_timeout_ms",
    "collect_timeout_ms",
    "refresh_interval_ms",
    "restart_hold",
    "api",
];
const CLUSTER_NODE_KEYS: &[&str] = &["name", "address"];
const MOVEABLE: &[&str] = &["immediate", "when-idle"];
const NODE_KEYS: &[&str] = &["name", "tunnel_source_v4", "tunnel_source_v6"];
const FORWARDER_KEYS: &[&str] = &[
    "flow_table_capacity",
    "flow_idle_timeout",
    "not_vipa",
    "burst_size",
    "cores",
    "idle_sleep_us",
    "idle_polls",
    "tx_drain_us",
    "neighbor_refresh",
    "neighbor_timeout",
];
const DPDK_KEYS: &[&str] = &["eal_args", "mbufs"];
const PORT_KEYS: &[&str] = &[
    "name",
    "mac",
    "mtu",
    "backend",
    "device",
    "queues",
    "gateway",
    "next_hop_mac",
];
const BACKENDS: &[&str] = &["afpacket", "afxdp", "dpdk"];
const VIPA_KEYS: &[&str] = &[
    "address",
    "services",
    "distribution",
    "table_size",
    "target",
    "owner",
    "backups",
    "moveable",
    "candidates",
];
const TARGET_KEYS: &[&str] = &["address", "weight"];

/// Largest `flow_table_capacity` (2³⁰ flows per worker).
const MAX_FLOW_TABLE_CAPACITY: i64 = 1 << 30;
/// Largest `flow_idle_timeout`: one week, in seconds.
const MAX_FLOW_IDLE_TIMEOUT: i64 = 7 * 24 * 3600;
/// Largest `idle_sleep_us` and `tx_drain_us`: one second, in microseconds.
const MAX_MICROS: i64 = 1_000_000;
/// Largest `idle_polls`.
const MAX_IDLE_POLLS: i64 = 1_000_000_000;
/// Largest `neighbor_refresh` and `neighbor_timeout`: one day, in seconds.
const MAX_NEIGHBOR_SECS: i64 = 24 * 3600;
/// Smallest and largest `dpdk.mbufs`.
const MBUFS: RangeInclusive<i64> = 511..=16_777_215;
/// Longest Linux interface name (`IFNAMSIZ` − 1).
const MAX_IFNAME: usize = 15;
/// Range of the cluster's millisecond timings.
const CLUSTER_MILLIS: RangeInclusive<i64> = 10..=60_000;
/// Largest `restart_hold`: one hour, in seconds.
const MAX_RESTART_HOLD: i64 = 3600;

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx::new(text, path);
    let root = tree::parse(text).map_err(|e| ctx.syntax(&e))?;
    let root = ctx.table(&root, String::new(), ROOT_KEYS)?;

    let node =
        match root.get("node") {
            Some(item) => node(&ctx, item)?,
            None => return Err(ctx.invalid(
                0,
                "node",
                Problem::Missing {
                    example:
                        "a [node] table with name = \"fwd-a\" and tunnel_source_v4 = \"10.10.0.1\"",
                },
            )),
        };
    let forwarder = match root.get("forwarder") {
        Some(item) => forwarder(&ctx, item)?,
        None => ForwarderConfig::default(),
    };
    let dpdk = match root.get("dpdk") {
        Some(item) => dpdk(&ctx, item)?,
        None => DpdkConfig::default(),
    };

    let mut ports = Vec::new();
    let mut port_names: HashMap<String, usize> = HashMap::new();
    let port_items = match root.get("port") {
        Some(item) => ctx.array_of_tables(item, "port")?,
        None => &[],
    };
    if port_items.is_empty() {
        let at = root.get("port").map_or(0, |i| i.span.start);
        return Err(ctx.invalid(at, "port", Problem::NoPorts));
    }
    // Where each port's MTU was written, for the MTU checks at the end.
    let mut mtu_at = Vec::new();
    for (i, item) in port_items.iter().enumerate() {
        let (p, name_at, at, backend_at) = port(&ctx, item, format!("port[{i}]"), &forwarder)?;
        if let Some(first) = ports
            .first()
            .filter(|f: &&PortConfig| f.backend != p.backend)
        {
            return Err(ctx.invalid(
                backend_at,
                format!("port[{i}].backend"),
                Problem::MixedBackends {
                    backend: p.backend,
                    first: first.backend,
                    first_line: ctx.line(port_items[0].span.start),
                },
            ));
        }
        if let Some(&first) = port_names.get(&p.name) {
            return Err(ctx.invalid(
                name_at,
                format!("port[{i}].name"),
                Problem::DuplicatePortName {
                    name: p.name,
                    first_line: ctx.line(first),
                },
            ));
        }
        port_names.insert(p.name.clone(), name_at);
        mtu_at.push(at);
        ports.push(p);
    }

    let (cluster, has_cluster) = match root.get("cluster") {
        Some(item) => (cluster(&ctx, item, &node)?, true),
        None => (ClusterConfig::single(&node.name), false),
    };
    let nodes = Nodes {
        cluster: &cluster,
        has_cluster,
        this: &node.name,
    };

    let mut vipas = Vec::new();
    let mut vipa_lines: HashMap<IpAddr, usize> = HashMap::new();
    let vipa_items = match root.get("vipa") {
        Some(item) => ctx.array_of_tables(item, "vipa")?,
        None => &[],
    };
    for (i, item) in vipa_items.iter().enumerate() {
        let (v, address_at) = vipa(&ctx, item, format!("vipa[{i}]"), &node, &nodes)?;
        if let Some(&first) = vipa_lines.get(&v.address) {
            return Err(ctx.invalid(
                address_at,
                format!("vipa[{i}].address"),
                Problem::DuplicateVipa {
                    address: v.address,
                    first_line: ctx.line(first),
                },
            ));
        }
        vipa_lines.insert(v.address, address_at);
        vipas.push((v, address_at));
    }

    check_mtus(&ctx, &ports, &mtu_at, &vipas)?;

    Ok(Config {
        node,
        forwarder,
        dpdk,
        ports,
        vipas: vipas.into_iter().map(|(v, _)| v).collect(),
        cluster,
    })
}

/// `[cluster]` and its `[[cluster.node]]` tables.
fn cluster(ctx: &Ctx<'_>, item: &Item, this: &NodeConfig) -> Result<ClusterConfig, ConfigError> {
    let t = ctx.table(item, "cluster".into(), CLUSTER_KEYS)?;
    let mut c = ClusterConfig::single(&this.name);
    let millis = |key: &str, range: RangeInclusive<i64>, default: Duration| match t.get(key) {
        Some(i) => Ok(Duration::from_millis(
            ctx.integer(i, &t.field(key), range)? as u64
        )),
        None => Ok(default),
    };
    c.probe_interval = millis("probe_interval_ms", CLUSTER_MILLIS, c.probe_interval)?;
    c.probe_timeout = millis("probe_timeout_ms", 1..=60_000, c.probe_timeout)?;
    c.suspect_timeout = millis("suspect_timeout_ms", CLUSTER_MILLIS, c.suspect_timeout)?;
    c.collect_timeout = millis("collect_timeout_ms", 0..=60_000, c.collect_timeout)?;
    c.refresh_interval = millis("refresh_interval_ms", CLUSTER_MILLIS, c.refresh_interval)?;
    if c.probe_timeout >= c.probe_interval {
        let (at, field) = match (t.get("probe_timeout_ms"), t.get("probe_interval_ms")) {
            (Some(i), _) => (i.span.start, "probe_timeout_ms"),
            (None, Some(i)) => (i.span.start, "probe_interval_ms"),
            (None, None) => (item.span.start, "probe_timeout_ms"),
        };
        return Err(ctx.invalid(
            at,
            t.field(field),
            Problem::ProbeTimeoutTooLong {
                timeout: c.probe_timeout.as_millis() as u64,
                interval: c.probe_interval.as_millis() as u64,
            },
        ));
    }
    if let Some(i) = t.get("restart_hold") {
        c.restart_hold =
            Duration::from_secs(
                ctx.integer(i, &t.field("restart_hold"), 1..=MAX_RESTART_HOLD)? as u64,
            );
    }
    if let Some(i) = t.get("port") {
        c.agent_port = ctx.integer(i, &t.field("port"), 1..=65535)? as u16;
    }
    if let Some(i) = t.get("api") {
        c.api = ctx.socket_address(i, &t.field("api"))?;
    }

    let node_field = t.field("node");
    let node_items = match t.get("node") {
        Some(i) => ctx.array_of_tables(i, &node_field)?,
        None => &[],
    };
    let mut nodes: Vec<ClusterNode> = Vec::new();
    let mut name_at: HashMap<String, usize> = HashMap::new();
    for (j, ni) in node_items.iter().enumerate() {
        let nt = ctx.table(ni, format!("{node_field}[{j}]"), CLUSTER_NODE_KEYS)?;
        let name_item = nt.require(ctx, "name", "name = \"fwd-b\"")?;
        let name = ctx.name(name_item, &nt.field("name"))?;
        if let Some(&first) = name_at.get(name) {
            return Err(ctx.invalid(
                name_item.span.start,
                nt.field("name"),
                Problem::DuplicateNodeName {
                    name: name.to_owned(),
                    first_line: ctx.line(first),
                },
            ));
        }
        name_at.insert(name.to_owned(), name_item.span.start);
        let address = ctx.socket_address(
            nt.require(ctx, "address", "address = \"10.10.0.2:7400\"")?,
            &nt.field("address"),
        )?;
        nodes.push(ClusterNode {
            name: name.to_owned(),
            address: Some(address),
        });
    }
    if !nodes.iter().any(|n| n.name == this.name) {
        let at = t.get("node").map_or(item.span.start, |i| i.span.start);
        return Err(ctx.invalid(
            at,
            node_field,
            Problem::ThisNodeNotListed {
                name: this.name.clone(),
            },
        ));
    }
    c.nodes = nodes;
    Ok(c)
}

/// The routing nodes a VIPA may name.
struct Nodes<'a> {
    cluster: &'a ClusterConfig,
    has_cluster: bool,
    this: &'a str,
}

impl Nodes<'_> {
    /// `item` as the name of a routing node.
    fn name(&self, ctx: &Ctx<'_>, item: &Item, field: &str) -> Result<String, ConfigError> {
        let name = ctx.name(item, field)?;
        if self.cluster.node(name).is_none() {
            return Err(ctx.invalid(
                item.span.start,
                field,
                Problem::UnknownNode {
                    name: name.to_owned(),
                    known: self.cluster.nodes.iter().map(|n| n.name.clone()).collect(),
                    cluster: self.has_cluster,
                },
            ));
        }
        Ok(name.to_owned())
    }
}

/// A VIPA's place in the cluster, as [`VipaConfig`] holds it.
struct VipaRoles {
    owner: String,
    backups: Vec<String>,
    moveable: Moveable,
    candidates: Vec<(String, Vec<usize>)>,
}

/// `owner`, `backups`, `moveable` and `candidates` of a VIPA table.
fn vipa_cluster(
    ctx: &Ctx<'_>,
    t: &Table<'_>,
    targets: &[TargetConfig],
    nodes: &Nodes<'_>,
) -> Result<VipaRoles, ConfigError> {
    let owner = match t.get("owner") {
        Some(i) => nodes.name(ctx, i, &t.field("owner"))?,
        // One node alone needs no owner written; a cluster does, so that
        // no two nodes silently both believe they are the owner.
        None if !nodes.has_cluster => nodes.this.to_owned(),
        None => {
            return Err(ctx.invalid(
                t.start,
                t.field("owner"),
                Problem::Missing {
                    example: "owner = \"fwd-a\" (a [[cluster.node]] name)",
                },
            ))
        }
    };
    let mut backups: Vec<String> = Vec::new();
    if let Some(i) = t.get("backups") {
        let field = t.field("backups");
        for (j, b) in ctx.array(i, &field)?.iter().enumerate() {
            let f = format!("{field}[{j}]");
            let name = nodes.name(ctx, b, &f)?;
            let first = if name == owner {
                Some("the owner".to_owned())
            } else {
                backups
                    .iter()
                    .position(|x| *x == name)
                    .map(|k| format!("backups[{k}]"))
            };
            if let Some(first) = first {
                return Err(ctx.invalid(b.span.start, f, Problem::RankedTwice { name, first }));
            }
            backups.push(name);
        }
    }
    let moveable = match t.get("moveable") {
        Some(i) => match ctx.choice(i, &t.field("moveable"), MOVEABLE)? {
            0 => Moveable::Immediate,
            _ => Moveable::WhenIdle,
        },
        None => Moveable::default(),
    };
    let mut candidates = Vec::new();
    if let Some(i) = t.get("candidates") {
        let field = t.field("candidates");
        let Value::Table(entries) = &i.value else {
            return Err(ctx.wrong_type(i, &field, "a table of node = [target addresses]"));
        };
        for (key, list) in entries {
            let f = format!("{field}.{}", key.name);
            if nodes.cluster.node(&key.name).is_none() {
                return Err(ctx.invalid(
                    key.span.start,
                    f,
                    Problem::UnknownNode {
                        name: key.name.clone(),
                        known: nodes.cluster.nodes.iter().map(|n| n.name.clone()).collect(),
                        cluster: nodes.has_cluster,
                    },
                ));
            }
            let items = ctx.array(list, &f)?;
            if items.is_empty() {
                return Err(ctx.invalid(list.span.start, f, Problem::NoCandidates));
            }
            let mut indices: Vec<usize> = Vec::new();
            for (j, a) in items.iter().enumerate() {
                let af = format!("{f}[{j}]");
                let address = ctx.address(a, &af, AddressFamily::Any)?;
                let Some(k) = targets.iter().position(|t| t.address == address) else {
                    return Err(ctx.invalid(
                        a.span.start,
                        af,
                        Problem::CandidateNotTarget { address },
                    ));
                };
                if indices.contains(&k) {
                    return Err(ctx.invalid(
                        a.span.start,
                        af,
                        Problem::DuplicateCandidate { address },
                    ));
                }
                indices.push(k);
            }
            candidates.push((key.name.clone(), indices));
        }
    }
    Ok(VipaRoles {
        owner,
        backups,
        moveable,
        candidates,
    })
}

fn node(ctx: &Ctx<'_>, item: &Item) -> Result<NodeConfig, ConfigError> {
    let t = ctx.table(item, "node".into(), NODE_KEYS)?;
    let name = ctx.name(
        t.require(ctx, "name", "name = \"fwd-a\"")?,
        &t.field("name"),
    )?;
    let tunnel_source_v4 = match t.get("tunnel_source_v4") {
        Some(i) => match ctx.address(i, &t.field("tunnel_source_v4"), AddressFamily::V4)? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => unreachable!("family checked"),
        },
        None => None,
    };
    let tunnel_source_v6 = match t.get("tunnel_source_v6") {
        Some(i) => match ctx.address(i, &t.field("tunnel_source_v6"), AddressFamily::V6)? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => unreachable!("family checked"),
        },
        None => None,
    };
    Ok(NodeConfig {
        name: name.to_owned(),
        tunnel_source_v4,
        tunnel_source_v6,
    })
}

fn forwarder(ctx: &Ctx<'_>, item: &Item) -> Result<ForwarderConfig, ConfigError> {
    let t = ctx.table(item, "forwarder".into(), FORWARDER_KEYS)?;
    let flow_table_capacity = match t.get("flow_table_capacity") {
        Some(i) => ctx.integer(
            i,
            &t.field("flow_table_capacity"),
            4..=MAX_FLOW_TABLE_CAPACITY,
        )? as usize,
        None => DEFAULT_FLOW_TABLE_CAPACITY,
    };
    let flow_idle_timeout = match t.get("flow_idle_timeout") {
        Some(i) => Duration::from_secs(ctx.integer(
            i,
            &t.field("flow_idle_timeout"),
            1..=MAX_FLOW_IDLE_TIMEOUT,
        )? as u64),
        None => DEFAULT_FLOW_IDLE_TIMEOUT,
    };
    let not_vipa = match t.get("not_vipa") {
        Some(i) => match ctx.choice(i, &t.field("not_vipa"), &["host", "drop"])? {
            0 => NotVipa::Host,
            _ => NotVipa::Drop,
        },
        None => NotVipa::Host,
    };
    let burst_size = match t.get("burst_size") {
        Some(i) => ctx.integer(i, &t.field("burst_size"), 1..=MAX_BURST_SIZE as i64)? as usize,
        None => DEFAULT_BURST_SIZE,
    };
    let cores = match t.get("cores") {
        Some(i) => cores(ctx, i, &t.field("cores"))?,
        None => DEFAULT_CORES.to_vec(),
    };
    let idle_sleep = match t.get("idle_sleep_us") {
        Some(i) => {
            Duration::from_micros(ctx.integer(i, &t.field("idle_sleep_us"), 0..=MAX_MICROS)? as u64)
        }
        None => DEFAULT_IDLE_SLEEP,
    };
    let idle_polls = match t.get("idle_polls") {
        Some(i) => ctx.integer(i, &t.field("idle_polls"), 1..=MAX_IDLE_POLLS)? as u32,
        None => DEFAULT_IDLE_POLLS,
    };
    let tx_drain = match t.get("tx_drain_us") {
        Some(i) => {
            Duration::from_micros(ctx.integer(i, &t.field("tx_drain_us"), 0..=MAX_MICROS)? as u64)
        }
        None => DEFAULT_TX_DRAIN,
    };
    let neighbor_refresh = match t.get("neighbor_refresh") {
        Some(i) => Duration::from_secs(ctx.integer(
            i,
            &t.field("neighbor_refresh"),
            1..=MAX_NEIGHBOR_SECS,
        )? as u64),
        None => DEFAULT_NEIGHBOR_REFRESH,
    };
    let neighbor_timeout = match t.get("neighbor_timeout") {
        Some(i) => Duration::from_secs(ctx.integer(
            i,
            &t.field("neighbor_timeout"),
            2..=MAX_NEIGHBOR_SECS,
        )? as u64),
        None => DEFAULT_NEIGHBOR_TIMEOUT,
    };
    if neighbor_timeout <= neighbor_refresh {
        // Point at whichever of the two was written last-resort: the
        // timeout if written, else the refresh, else the table.
        let (at, field) = match (t.get("neighbor_timeout"), t.get("neighbor_refresh")) {
            (Some(i), _) => (i.span.start, "neighbor_timeout"),
            (None, Some(i)) => (i.span.start, "neighbor_refresh"),
            (None, None) => (item.span.start, "neighbor_timeout"),
        };
        return Err(ctx.invalid(
            at,
            t.field(field),
            Problem::NeighborTimeoutTooShort {
                timeout: neighbor_timeout.as_secs(),
                refresh: neighbor_refresh.as_secs(),
            },
        ));
    }
    Ok(ForwarderConfig {
        flow_table_capacity,
        flow_idle_timeout,
        not_vipa,
        burst_size,
        cores,
        idle_sleep,
        idle_polls,
        tx_drain,
        neighbor_refresh,
        neighbor_timeout,
    })
}

/// `forwarder.cores`: a non-empty array of distinct CPU ids.
fn cores(ctx: &Ctx<'_>, item: &Item, field: &str) -> Result<Vec<usize>, ConfigError> {
    let items = ctx.array(item, field)?;
    if items.is_empty() {
        return Err(ctx.invalid(item.span.start, field, Problem::NoCores));
    }
    let mut cores: Vec<usize> = Vec::with_capacity(items.len());
    for (j, c) in items.iter().enumerate() {
        let f = format!("{field}[{j}]");
        let core = ctx.integer(c, &f, 0..=MAX_CORE_ID as i64)? as usize;
        if let Some(first_index) = cores.iter().position(|&x| x == core) {
            return Err(ctx.invalid(
                c.span.start,
                f,
                Problem::DuplicateCore { core, first_index },
            ));
        }
        cores.push(core);
    }
    Ok(cores)
}

fn dpdk(ctx: &Ctx<'_>, item: &Item) -> Result<DpdkConfig, ConfigError> {
    let t = ctx.table(item, "dpdk".into(), DPDK_KEYS)?;
    let eal_args = match t.get("eal_args") {
        Some(i) => {
            let field = t.field("eal_args");
            ctx.array(i, &field)?
                .iter()
                .enumerate()
                .map(|(j, a)| ctx.name(a, &format!("{field}[{j}]")).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let mbufs = match t.get("mbufs") {
        Some(i) => ctx.integer(i, &t.field("mbufs"), MBUFS)? as u32,
        None => DEFAULT_MBUFS,
    };
    Ok(DpdkConfig { eal_args, mbufs })
}

/// A port, the offset of its name, the offset of its MTU (or of its table
/// when the MTU is the default) and the offset of its backend (or of its
/// table).
fn port(
    ctx: &Ctx<'_>,
    item: &Item,
    field: String,
    forwarder: &ForwarderConfig,
) -> Result<(PortConfig, usize, usize, usize), ConfigError> {
    let t = ctx.table(item, field, PORT_KEYS)?;
    let name_item = t.require(ctx, "name", "name = \"p0\"")?;
    let name = ctx.name(name_item, &t.field("name"))?;
    let mac = ctx.mac(
        t.require(ctx, "mac", "mac = \"02:00:00:00:0a:01\"")?,
        &t.field("mac"),
    )?;
    let (mtu, mtu_at) = match t.get("mtu") {
        Some(i) => (
            ctx.integer(i, &t.field("mtu"), MIN_MTU.into()..=MAX_MTU.into())? as u16,
            i.span.start,
        ),
        None => (DEFAULT_MTU, item.span.start),
    };
    let (backend, backend_at) = match t.get("backend") {
        Some(i) => (
            match ctx.choice(i, &t.field("backend"), BACKENDS)? {
                0 => Backend::AfPacket,
                1 => Backend::AfXdp,
                _ => Backend::Dpdk,
            },
            i.span.start,
        ),
        None => (Backend::default(), item.span.start),
    };
    let device = match t.get("device") {
        Some(i) => {
            let device = ctx.name(i, &t.field("device"))?;
            if backend != Backend::Dpdk && device.len() > MAX_IFNAME {
                return Err(ctx.invalid(
                    i.span.start,
                    t.field("device"),
                    Problem::DeviceNameTooLong {
                        device: device.to_owned(),
                        len: device.len(),
                    },
                ));
            }
            device.to_owned()
        }
        None if backend != Backend::Dpdk && name.len() > MAX_IFNAME => {
            // The device defaults to the name, which is then an interface name.
            return Err(ctx.invalid(
                name_item.span.start,
                t.field("name"),
                Problem::DeviceNameTooLong {
                    device: name.to_owned(),
                    len: name.len(),
                },
            ));
        }
        None => name.to_owned(),
    };
    let cores = forwarder.cores.len();
    let queues = match t.get("queues") {
        Some(i) => {
            let q = ctx.integer(i, &t.field("queues"), 1..=MAX_QUEUES.into())? as u16;
            if usize::from(q) != cores {
                return Err(ctx.invalid(
                    i.span.start,
                    t.field("queues"),
                    Problem::QueuesNotCores { queues: q, cores },
                ));
            }
            q
        }
        None => match u16::try_from(cores) {
            Ok(q) if q <= MAX_QUEUES => q,
            _ => {
                return Err(ctx.invalid(
                    item.span.start,
                    t.field("queues"),
                    Problem::OutOfRange {
                        value: cores as i64,
                        min: 1,
                        max: MAX_QUEUES.into(),
                    },
                ))
            }
        },
    };
    let gateway = match t.get("gateway") {
        Some(i) => Some(ctx.address(i, &t.field("gateway"), AddressFamily::Any)?),
        None => None,
    };
    let next_hop_mac = match t.get("next_hop_mac") {
        Some(i) => Some(ctx.mac(i, &t.field("next_hop_mac"))?),
        None => None,
    };
    if let (Some(_), Some(g)) = (next_hop_mac, t.get("gateway")) {
        return Err(ctx.invalid(
            g.span.start,
            t.field("gateway"),
            Problem::GatewayAndStaticNextHop,
        ));
    }
    Ok((
        PortConfig {
            name: name.to_owned(),
            mac,
            mtu,
            backend,
            device,
            queues,
            gateway,
            next_hop_mac,
        },
        name_item.span.start,
        mtu_at,
        backend_at,
    ))
}

/// A VIPA and the offset of its address.
fn vipa(
    ctx: &Ctx<'_>,
    item: &Item,
    field: String,
    node: &NodeConfig,
    nodes: &Nodes<'_>,
) -> Result<(VipaConfig, usize), ConfigError> {
    let t = ctx.table(item, field, VIPA_KEYS)?;
    let address_item = t.require(ctx, "address", "address = \"192.0.2.10\"")?;
    let address = ctx.address(address_item, &t.field("address"), AddressFamily::Any)?;

    // Services.
    let services_field = t.field("services");
    let service_items = match t.get("services") {
        Some(i) => ctx.array(i, &services_field)?,
        None => &[],
    };
    if service_items.is_empty() {
        let at = t.get("services").map_or(item.span.start, |i| i.span.start);
        return Err(ctx.invalid(at, services_field, Problem::NoService));
    }
    let mut services = Vec::new();
    let mut service_lines: HashMap<Service, usize> = HashMap::new();
    for (j, s) in service_items.iter().enumerate() {
        let f = format!("{services_field}[{j}]");
        let text = ctx.string(s, &f)?;
        let service = text.parse::<Service>().map_err(|e| {
            let value = text.to_owned();
            ctx.invalid(
                s.span.start,
                f.clone(),
                match e {
                    ServiceParseError::Format => Problem::InvalidService { value },
                    ServiceParseError::Port => Problem::ServicePortOutOfRange { value },
                },
            )
        })?;
        if let Some(&first) = service_lines.get(&service) {
            return Err(ctx.invalid(
                s.span.start,
                f,
                Problem::DuplicateService {
                    service,
                    first_line: ctx.line(first),
                },
            ));
        }
        service_lines.insert(service, s.span.start);
        services.push(service);
    }

    let distribution = match t.get("distribution") {
        Some(i) => {
            ctx.choice(i, &t.field("distribution"), &["maglev"])?;
            Distribution::Maglev
        }
        None => Distribution::Maglev,
    };

    let table_size_item = t.get("table_size");
    let table_size = match table_size_item {
        Some(i) => {
            let m = ctx.integer(i, &t.field("table_size"), 2..=MAX_TABLE_SIZE as i64)? as u64;
            if !maglev::is_prime(m) {
                return Err(ctx.invalid(
                    i.span.start,
                    t.field("table_size"),
                    Problem::TableSizeNotPrime {
                        value: m,
                        below: maglev::prime_below(m),
                        above: maglev::prime_above(m).filter(|&p| p <= MAX_TABLE_SIZE),
                    },
                ));
            }
            m as u32
        }
        None => DEFAULT_TABLE_SIZE,
    };

    // Targets.
    let target_field = t.field("target");
    let target_items = match t.get("target") {
        Some(i) => ctx.array_of_tables(i, &target_field)?,
        None => &[],
    };
    if target_items.is_empty() {
        let at = t.get("target").map_or(item.span.start, |i| i.span.start);
        return Err(ctx.invalid(at, target_field, Problem::NoTargets));
    }
    let mut targets = Vec::new();
    let mut target_lines: HashMap<IpAddr, usize> = HashMap::new();
    for (j, ti) in target_items.iter().enumerate() {
        let tt = ctx.table(ti, format!("{target_field}[{j}]"), TARGET_KEYS)?;
        let a_item = tt.require(ctx, "address", "address = \"10.20.0.11\"")?;
        let a_field = tt.field("address");
        let a = ctx.address(a_item, &a_field, AddressFamily::Any)?;
        if a == address {
            return Err(ctx.invalid(
                a_item.span.start,
                a_field,
                Problem::TargetIsVipa { address: a },
            ));
        }
        if let Some(&first) = target_lines.get(&a) {
            return Err(ctx.invalid(
                a_item.span.start,
                a_field,
                Problem::DuplicateTarget {
                    address: a,
                    first_line: ctx.line(first),
                },
            ));
        }
        let missing = match a {
            IpAddr::V4(_) if node.tunnel_source_v4.is_none() => Some(("IPv4", "tunnel_source_v4")),
            IpAddr::V6(_) if node.tunnel_source_v6.is_none() => Some(("IPv6", "tunnel_source_v6")),
            _ => None,
        };
        if let Some((family, key)) = missing {
            return Err(ctx.invalid(
                a_item.span.start,
                a_field,
                Problem::MissingTunnelSource {
                    address: a,
                    family,
                    key,
                },
            ));
        }
        target_lines.insert(a, a_item.span.start);
        let weight = match tt.get("weight") {
            Some(w) => ctx.integer(w, &tt.field("weight"), 0..=MAX_WEIGHT.into())? as u32,
            None => DEFAULT_WEIGHT,
        };
        targets.push(TargetConfig { address: a, weight });
    }

    if targets.len() as u64 > u64::from(table_size) {
        let n = targets.len() as u64;
        let suggestion = if n * 100 <= u64::from(DEFAULT_TABLE_SIZE) {
            u64::from(DEFAULT_TABLE_SIZE)
        } else {
            maglev::prime_above(n * 100).unwrap_or(u64::from(DEFAULT_TABLE_SIZE))
        };
        return Err(ctx.invalid(
            table_size_item.map_or(item.span.start, |i| i.span.start),
            t.field("table_size"),
            Problem::TableSizeTooSmall {
                value: table_size.into(),
                targets: targets.len(),
                suggestion,
            },
        ));
    }

    let VipaRoles {
        owner,
        backups,
        moveable,
        candidates,
    } = vipa_cluster(ctx, &t, &targets, nodes)?;

    Ok((
        VipaConfig {
            address,
            services,
            distribution,
            table_size,
            targets,
            owner,
            backups,
            moveable,
            candidates,
        },
        address_item.span.start,
    ))
}

/// The IPv6 MTU rules of the module documentation.
fn check_mtus(
    ctx: &Ctx<'_>,
    ports: &[PortConfig],
    mtu_at: &[usize],
    vipas: &[(VipaConfig, usize)],
) -> Result<(), ConfigError> {
    // The strictest requirement: (needed, reason).
    let mut need: Option<(u16, String)> = None;
    let mut require = |needed: u16, reason: String| {
        if need.as_ref().is_none_or(|(n, _)| needed > *n) {
            need = Some((needed, reason));
        }
    };
    for (v, at) in vipas {
        let line = ctx.line(*at);
        if let Some(t) = v.targets.iter().find(|t| t.address.is_ipv6()) {
            require(
                IPV6_MIN_MTU,
                format!(
                    "target {} (line {line}) is IPv6, and every IPv6 link must carry {IPV6_MIN_MTU}-byte packets (RFC 8200 §5)",
                    t.address
                ),
            );
        }
        if v.address.is_ipv6() {
            let (overhead, outer) = if v.targets.iter().any(|t| t.address.is_ipv6()) {
                (GRE_OVERHEAD_V6, "IPv6")
            } else {
                (GRE_OVERHEAD_V4, "IPv4")
            };
            require(
                IPV6_MIN_MTU + overhead,
                format!(
                    "VIPA {} (line {line}) is IPv6, so a {IPV6_MIN_MTU}-byte IPv6 packet (the smallest a packet-too-big message may ask for, RFC 8200 §5) must fit after {overhead} bytes of outer {outer} and GRE headers",
                    v.address
                ),
            );
        }
    }
    if let Some((needed, reason)) = need {
        for (i, (p, &at)) in ports.iter().zip(mtu_at).enumerate() {
            if p.mtu < needed {
                return Err(ctx.invalid(
                    at,
                    format!("port[{i}].mtu"),
                    Problem::MtuTooSmall {
                        mtu: p.mtu,
                        needed,
                        reason,
                    },
                ));
            }
        }
    }
    Ok(())
}

/// The text being parsed, to turn byte offsets into lines and build errors.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

/// A table whose keys have been checked against the allowed ones.
struct Table<'a> {
    field: String,
    entries: &'a [(Key, Item)],
    /// Where the table starts: its header, or `{`.
    start: usize,
}

impl<'a> Table<'a> {
    fn get(&self, key: &str) -> Option<&'a Item> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, item)| item)
    }

    fn field(&self, key: &str) -> String {
        if self.field.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.field)
        }
    }

    /// The value of a required key; missing, the error points at the table.
    fn require(
        &self,
        ctx: &Ctx<'_>,
        key: &str,
        example: &'static str,
    ) -> Result<&'a Item, ConfigError> {
        self.get(key)
            .ok_or_else(|| ctx.invalid(self.start, self.field(key), Problem::Missing { example }))
    }
}

impl<'a> Ctx<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ctx {
            text,
            path,
            line_starts,
        }
    }

    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        Location {
            path: self.path.to_path_buf(),
            line,
            column,
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.location(offset).line
    }

    fn invalid(&self, offset: usize, field: impl Into<String>, problem: Problem) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(offset),
            field: field.into(),
            problem: Box::new(problem),
        }
    }

    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let offset = e.span().map_or(0, |s| s.start);
        let message = if e.message().contains("$__toml_private_datetime") {
            "dates and times are not used in this configuration; quote the value if it is a string"
                .to_owned()
        } else {
            e.message().trim().replace('\n', "; ")
        };
        ConfigError::Syntax {
            location: self.location(offset),
            message,
        }
    }

    fn wrong_type(&self, item: &Item, field: &str, expected: &'static str) -> ConfigError {
        self.invalid(
            item.span.start,
            field,
            Problem::WrongType {
                expected,
                found: item.value.kind(),
            },
        )
    }

    /// A table whose keys are all in `allowed`.
    fn table<'i>(
        &self,
        item: &'i Item,
        field: String,
        allowed: &'static [&'static str],
    ) -> Result<Table<'i>, ConfigError> {
        let Value::Table(entries) = &item.value else {
            return Err(self.wrong_type(item, &field, "a table"));
        };
        let table = Table {
            field,
            entries,
            start: item.span.start,
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                return Err(self.invalid(
                    key.span.start,
                    table.field(&key.name),
                    Problem::UnknownKey {
                        key: key.name.clone(),
                        allowed,
                        suggestion: closest(&key.name, allowed),
                    },
                ));
            }
        }
        Ok(table)
    }

    fn array<'i>(&self, item: &'i Item, field: &str) -> Result<&'i [Item], ConfigError> {
        match &item.value {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type(item, field, "an array")),
        }
    }

    /// `[[name]]` tables (or an inline array of inline tables).
    fn array_of_tables<'i>(&self, item: &'i Item, field: &str) -> Result<&'i [Item], ConfigError> {
        match &item.value {
            Value::Array(items) => Ok(items),
            _ => Err(self.wrong_type(
                item,
                field,
                "an array of tables (write the header with double brackets: [[…]])",
            )),
        }
    }

    fn string<'i>(&self, item: &'i Item, field: &str) -> Result<&'i str, ConfigError> {
        match &item.value {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type(item, field, "a string")),
        }
    }

    fn name<'i>(&self, item: &'i Item, field: &str) -> Result<&'i str, ConfigError> {
        let s = self.string(item, field)?;
        if s.trim().is_empty() {
            return Err(self.invalid(item.span.start, field, Problem::Empty));
        }
        Ok(s)
    }

    fn integer(
        &self,
        item: &Item,
        field: &str,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let Value::Integer(v) = item.value else {
            return Err(self.wrong_type(item, field, "an integer"));
        };
        if !range.contains(&v) {
            return Err(self.invalid(
                item.span.start,
                field,
                Problem::OutOfRange {
                    value: v,
                    min: *range.start(),
                    max: *range.end(),
                },
            ));
        }
        Ok(v)
    }

    /// The index of the string among `choices`.
    fn choice(
        &self,
        item: &Item,
        field: &str,
        choices: &'static [&'static str],
    ) -> Result<usize, ConfigError> {
        let s = self.string(item, field)?;
        choices.iter().position(|c| *c == s).ok_or_else(|| {
            self.invalid(
                item.span.start,
                field,
                Problem::UnknownChoice {
                    value: s.to_owned(),
                    choices,
                },
            )
        })
    }

    /// A unicast IP address of the given family.
    fn address(
        &self,
        item: &Item,
        field: &str,
        family: AddressFamily,
    ) -> Result<IpAddr, ConfigError> {
        let s = self.string(item, field)?;
        let parsed = match family {
            AddressFamily::V4 => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
            AddressFamily::V6 => s.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            AddressFamily::Any => s.parse::<IpAddr>().ok(),
        };
        let address = parsed.ok_or_else(|| {
            self.invalid(
                item.span.start,
                field,
                Problem::InvalidAddress {
                    value: s.to_owned(),
                    expected: family,
                },
            )
        })?;
        let reason = if address.is_unspecified() {
            Some("an unspecified")
        } else if address.is_multicast() {
            Some("a multicast")
        } else if address == IpAddr::V4(Ipv4Addr::BROADCAST) {
            Some("the broadcast")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(self.invalid(
                item.span.start,
                field,
                Problem::UnusableAddress { address, reason },
            ));
        }
        Ok(address)
    }

    /// An IP address and port (`10.10.0.1:7400`, `[fd00:10::1]:7400`).
    fn socket_address(&self, item: &Item, field: &str) -> Result<SocketAddr, ConfigError> {
        let s = self.string(item, field)?;
        s.parse::<SocketAddr>().map_err(|_| {
            self.invalid(
                item.span.start,
                field,
                Problem::InvalidSocketAddress {
                    value: s.to_owned(),
                },
            )
        })
    }

    /// A unicast MAC address.
    fn mac(&self, item: &Item, field: &str) -> Result<MacAddr, ConfigError> {
        let s = self.string(item, field)?;
        let mac = s.parse::<MacAddr>().map_err(|_| {
            self.invalid(
                item.span.start,
                field,
                Problem::InvalidMac {
                    value: s.to_owned(),
                },
            )
        })?;
        if !mac.is_unicast() {
            return Err(self.invalid(item.span.start, field, Problem::NotUnicastMac { mac }));
        }
        Ok(mac)
    }
}

/// The allowed key within edit distance 2 of `key`, if any.
fn closest(key: &str, allowed: &[&'static str]) -> Option<&'static str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
