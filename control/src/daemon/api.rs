//! `vipa-control`'s HTTP API: JSON for `vipactl` and scripts, Prometheus
//! text for `/metrics`.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/status` | the node on one page: uptime; per VIPA state, epoch, owner, targets ready; the forwarder (backend, health, generations); the snapshot published and its age; peers (SWIM, streams, last heard); agents (streams, last report) |
//! | GET | `/v1/config` | the configuration as understood (defaults filled in): the cluster's nodes and timing; per VIPA services, owner, ranked backups, moveable, distribution, table size, targets and weights, and per routing node that may own it the candidate targets it gives new connections to |
//! | GET | `/v1/vipas` | per VIPA: state here (`Active`, `Moving`, `Backup`, `Deactivated`, `-`: see [`vipa_state`]), role here and since when (`since_unix_ms`, `for_ms`), highest epoch known, its owner, deactivated |
//! | GET | `/v1/dpt` | per owned VIPA and service: every target, ready, weight, state, connections (active: in the CRT), and the packets and bytes the forwarder sent it for that VIPA:port since it started (`null` without a forwarder); per target of those, what the forwarder did for it over all VIPA:ports (`traffic`: connections created, packets, bytes; `null` without a forwarder) |
//! | GET | `/v1/crt` | every connection this node routes, its target, and since when this node has it in its CRT (`since_unix_ms`, `age_ms`) |
//! | GET | `/v1/counters` | the daemon's counters and the forwarder's, per worker |
//! | POST | `/v1/quiesce`, `/v1/resume` | body `{"vipa", "target"?, "service"?}`: one target (or every target) of the VIPA, one service (or all) |
//! | POST | `/v1/deactivate`, `/v1/reactivate` | body `{"vipa"}`: this node gives the VIPA up / takes part again |
//! | GET | `/metrics` | Prometheus text exposition |
//!
//! Errors are `{"error": "…"}` with status 400 (bad request), 404 (no such
//! path or VIPA) or 405.
//!
//! # Design decisions
//!
//! - **hyper 1 directly** (with hyper-util's tokio glue), not axum: seven
//!   routes need no router, extractor or middleware framework, and the
//!   handlers stay a plain function of the request ([`handle`]) that the
//!   tests call without a socket.
//! - The HTTP tasks never touch the state machine: they send the request
//!   to the driver task and wait for its answer.
//! - **Metrics with `prometheus-client`** (the maintained, OpenMetrics
//!   reference crate). The registry is built afresh from the state at each
//!   scrape: every value is a snapshot of state the driver owns, so there
//!   is nothing to keep in sync between scrapes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use vipa_proto::config::{Service, VipaConfig};

use super::node::Core;
use crate::cluster::{Role, TargetState};

mod config;
mod status;

/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// A request, as the driver sees it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn json(status: u16, v: Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: format!("{v:#}\n"),
        }
    }

    fn error(status: u16, msg: impl Into<String>) -> Self {
        Self::json(status, json!({ "error": msg.into() }))
    }
}

/// Serves HTTP on `listener`, passing requests to the driver.
pub async fn serve(
    listener: TcpListener,
    driver: mpsc::Sender<(ApiRequest, oneshot::Sender<Response>)>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accepting an API connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let driver = driver.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let driver = driver.clone();
                async move { Ok::<_, Infallible>(answer(req, &driver).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("API connection: {e}");
            }
        });
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    driver: &mpsc::Sender<(ApiRequest, oneshot::Sender<Response>)>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let resp = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Err(e) => Response::error(400, format!("cannot read the request body: {e}")),
        Ok(body) => {
            let request = ApiRequest {
                method,
                path,
                body: body.to_bytes().to_vec(),
            };
            let (tx, rx) = oneshot::channel();
            match driver.send((request, tx)).await {
                Ok(()) => rx
                    .await
                    .unwrap_or_else(|_| Response::error(503, "the daemon is stopping")),
                Err(_) => Response::error(503, "the daemon is stopping"),
            }
        }
    };
    hyper::Response::builder()
        .status(resp.status)
        .header("content-type", resp.content_type)
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// Answers `req` from (and for) the driver's state at `now`.
pub fn handle(core: &mut Core, now: u64, req: &ApiRequest) -> Response {
    match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/v1/status") => Response::json(200, status::status(core, now)),
        ("GET", "/v1/config") => Response::json(200, config::config(core)),
        ("GET", "/v1/vipas") => Response::json(200, vipas(core)),
        ("GET", "/v1/dpt") => Response::json(200, dpt(core)),
        ("GET", "/v1/crt") => Response::json(200, crt(core)),
        ("GET", "/v1/counters") => Response::json(200, counters(core)),
        ("GET", "/metrics") => metrics(core),
        ("POST", "/v1/quiesce") => quiesce(core, &req.body, true),
        ("POST", "/v1/resume") => quiesce(core, &req.body, false),
        ("POST", "/v1/deactivate") => deactivate(core, now, &req.body, true),
        ("POST", "/v1/reactivate") => deactivate(core, now, &req.body, false),
        (
            _,
            "/v1/status" | "/v1/config" | "/v1/vipas" | "/v1/dpt" | "/v1/crt" | "/v1/counters"
            | "/metrics" | "/v1/quiesce" | "/v1/resume" | "/v1/deactivate" | "/v1/reactivate",
        ) => Response::error(
            405,
            format!("{} is not allowed on {}", req.method, req.path),
        ),
        _ => Response::error(
            404,
            format!(
                "no such path {}: see /v1/status, /v1/config, /v1/vipas, /v1/dpt, /v1/crt, /v1/counters, /metrics",
                req.path
            ),
        ),
    }
}

fn role_name(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Owner(_)) => "owner",
        Some(Role::Claiming(_)) => "claiming",
        _ => "idle",
    }
}

/// The VIPA's state on this node in Sysplex Distributor's words
/// (`NETSTAT VIPADYN`):
///
/// - `Active`: this node owns and routes it.
/// - `Moving`: this node claimed it and collects the targets' reports (and
///   the previous owner's handover) before it routes: a takeover or a
///   takeback in progress.
/// - `Backup`: this node is a ranked backup (or the configured owner) and
///   does not own it now.
/// - `Deactivated`: the operator deactivated it here.
/// - `-`: this node may not own it (neither owner nor backup).
///
/// z/OS's `Quiescing` (a deactivated owner that keeps serving its
/// connections until they end) has no counterpart: a vipa owner that steps
/// down hands its connection table over with the VIPA, so the new owner
/// routes those connections at once and the old one is `Deactivated` (or
/// `Backup`) straight away.
pub fn vipa_state(role: Option<Role>, deactivated: bool, rank: Option<usize>) -> &'static str {
    match role {
        Some(Role::Owner(_)) => "Active",
        Some(Role::Claiming(_)) => "Moving",
        _ if deactivated => "Deactivated",
        _ if rank.is_some() => "Backup",
        _ => "-",
    }
}

fn state_name(s: TargetState) -> &'static str {
    match s {
        TargetState::Ready => "ready",
        TargetState::Quiesced => "quiesced",
        TargetState::Restarting => "restarting",
        TargetState::Down => "down",
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// What `/v1/vipas` and `/v1/status` both say of a configured VIPA at this
/// node: its state and role here, epoch and owner as known, rank, and
/// since when (wall clock `wall`).
fn role_fields(core: &Core, v: &VipaConfig, wall: SystemTime) -> Map<String, Value> {
    let role = core.node.role(v.address);
    let deactivated = core.deactivated.contains(&v.address);
    let rank = v.rank_of(core.node.name());
    let since = core.role_since.get(&v.address).copied();
    let (epoch, owner) = core
        .node
        .known_owner(v.address)
        .map(|(e, o)| (e, o.map(str::to_owned)))
        .unwrap_or_default();
    let fields = json!({
        "vipa": v.address,
        "state": vipa_state(role, deactivated, rank),
        "role": role_name(role),
        "epoch": epoch.to_string(),
        "term": epoch.term(),
        "owner": owner,
        "rank": rank,
        "deactivated": deactivated,
        "since_unix_ms": since.map(unix_ms),
        "for_ms": since.map(|t| wall.duration_since(t).unwrap_or_default().as_millis() as u64),
    });
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn vipas(core: &Core) -> Value {
    let wall = SystemTime::now();
    let list: Vec<Value> = core
        .config
        .vipas
        .iter()
        .map(|v| {
            let mut fields = role_fields(core, v, wall);
            fields.insert("configured_owner".into(), json!(v.owner));
            fields.insert("backups".into(), json!(v.backups));
            Value::Object(fields)
        })
        .collect();
    json!({ "node": core.node.name(), "vipas": list })
}

fn connection_counts(core: &Core) -> BTreeMap<(IpAddr, Service, IpAddr), u64> {
    let mut counts = BTreeMap::new();
    for v in &core.routed.vipas {
        for (c, t) in &v.crt {
            *counts.entry((v.address, c.service, *t)).or_default() += 1;
        }
    }
    counts
}

fn dpt(core: &Core) -> Value {
    let counts = connection_counts(core);
    // What the forwarder sent per VIPA:port and target (`null` without one).
    let service_traffic = core.service_traffic();
    let sent = |key: &(IpAddr, Service, IpAddr), k: usize| match &service_traffic {
        Some(by) => json!(by.get(key).map_or(0, |f| f[k])),
        None => Value::Null,
    };
    let mut rows = Vec::new();
    for v in &core.routed.vipas {
        for s in &v.services {
            let targets: Vec<Value> = s
                .targets
                .iter()
                .map(|t| {
                    let key = (v.address, s.service, t.address);
                    json!({
                        "target": t.address,
                        "ready": t.takes_new(),
                        "weight": t.weight,
                        "candidate": t.candidate,
                        "state": state_name(t.state),
                        "connections": counts.get(&key).copied().unwrap_or(0),
                        "packets": sent(&key, 0),
                        "bytes": sent(&key, 1),
                    })
                })
                .collect();
            rows.push(json!({
                "vipa": v.address,
                "service": s.service.to_string(),
                "epoch": v.epoch.to_string(),
                "targets": targets,
            }));
        }
    }
    // The forwarder also counts per target (its slot), over every VIPA:port:
    // with the connections it created, which it does not count per service.
    let traffic = core.target_traffic().map(|by_target| {
        let mut seen: Vec<IpAddr> = Vec::new();
        for s in core.routed.vipas.iter().flat_map(|v| &v.services) {
            for t in &s.targets {
                if !seen.contains(&t.address) {
                    seen.push(t.address);
                }
            }
        }
        seen.into_iter()
            .map(|a| {
                let [packets, bytes, flows] = by_target.get(&a).copied().unwrap_or_default();
                json!({
                    "target": a,
                    "connections_total": flows,
                    "packets": packets,
                    "bytes": bytes,
                })
            })
            .collect::<Vec<Value>>()
    });
    json!({ "node": core.node.name(), "dpt": rows, "traffic": traffic })
}

fn crt(core: &Core) -> Value {
    let now = unix_ms(SystemTime::now());
    let rows: Vec<Value> = core
        .routed
        .vipas
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let since = core.crt_since.get(i).map_or(&[][..], Vec::as_slice);
            v.crt.iter().enumerate().map(move |(k, (c, t))| {
                let since = since.get(k).copied();
                json!({
                    "vipa": v.address,
                    "service": c.service.to_string(),
                    "client": c.client,
                    "target": t,
                    "since_unix_ms": since,
                    "age_ms": since.map(|s| now.saturating_sub(s)),
                })
            })
        })
        .collect();
    json!({ "node": core.node.name(), "crt": rows })
}

fn counters(core: &Core) -> Value {
    let n = &core.net;
    let forwarder: Option<Vec<BTreeMap<String, u64>>> = core
        .forwarder_counters()
        .map(|w| w.into_iter().map(|c| c.into_iter().collect()).collect());
    json!({
        "node": core.node.name(),
        "control": {
            "frames_received": n.frames_in.load(Ordering::Relaxed),
            "frames_sent": n.frames_out.load(Ordering::Relaxed),
            "messages_dropped": n.dropped.load(Ordering::Relaxed),
            "peers_rejected": n.rejected.load(Ordering::Relaxed),
            "connects": n.connects.load(Ordering::Relaxed),
            "snapshots_published": core.stats.published,
            "snapshot_errors": core.stats.publish_errors,
            "snapshot_generation": core.stats.generation,
            "new_flows": core.stats.new_flows,
            "announcements": core.stats.announcements,
        },
        "forwarder": forwarder,
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuiesceBody {
    vipa: IpAddr,
    target: Option<IpAddr>,
    service: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VipaBody {
    vipa: IpAddr,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], example: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        Response::error(
            400,
            format!("bad request body: {e}; expected e.g. {example}"),
        )
    })
}

fn quiesce(core: &mut Core, body: &[u8], on: bool) -> Response {
    let b: QuiesceBody = match parse(
        body,
        r#"{"vipa": "192.0.2.10", "target": "10.20.0.11", "service": "tcp/80"}"#,
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(v) = core.config.vipas.iter().find(|v| v.address == b.vipa) else {
        return Response::error(
            404,
            format!("{} is not a VIPA of this configuration", b.vipa),
        );
    };
    let service = match b.service.as_deref().map(str::parse::<Service>) {
        None => None,
        Some(Ok(s)) if v.services.contains(&s) => Some(s),
        Some(Ok(s)) => {
            return Response::error(400, format!("{s} is not a service of {}", b.vipa));
        }
        Some(Err(e)) => return Response::error(400, format!("service: {e}")),
    };
    let targets: Vec<IpAddr> = match b.target {
        Some(t) if v.targets.iter().any(|x| x.address == t) => vec![t],
        Some(t) => return Response::error(400, format!("{t} is not a target of {}", b.vipa)),
        None => v.targets.iter().map(|t| t.address).collect(),
    };
    for t in &targets {
        core.node.quiesce(b.vipa, *t, service, on);
    }
    Response::json(
        200,
        json!({
            "vipa": b.vipa,
            "targets": targets,
            "service": service.map(|s| s.to_string()),
            "quiesced": on,
        }),
    )
}

fn deactivate(core: &mut Core, now: u64, body: &[u8], on: bool) -> Response {
    let b: VipaBody = match parse(body, r#"{"vipa": "192.0.2.10"}"#) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !core.config.vipas.iter().any(|v| v.address == b.vipa) {
        return Response::error(
            404,
            format!("{} is not a VIPA of this configuration", b.vipa),
        );
    }
    core.node.set_deactivated(now, b.vipa, on);
    if on {
        core.deactivated.insert(b.vipa);
    } else {
        core.deactivated.remove(&b.vipa);
    }
    Response::json(200, json!({ "vipa": b.vipa, "deactivated": on }))
}

type Labels = Vec<(String, String)>;

fn metrics(core: &Core) -> Response {
    let mut reg = Registry::default();
    let label = |pairs: &[(&str, String)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };

    let role = Family::<Labels, Gauge>::default();
    let epoch = Family::<Labels, Gauge>::default();
    let crt = Family::<Labels, Gauge>::default();
    for v in &core.config.vipas {
        let l = label(&[("vipa", v.address.to_string())]);
        let r = match core.node.role(v.address) {
            Some(Role::Owner(_)) => 2,
            Some(Role::Claiming(_)) => 1,
            _ => 0,
        };
        role.get_or_create(&l).set(r);
        let e = core.node.known_owner(v.address).map_or(0, |(e, _)| e.0);
        epoch
            .get_or_create(&l)
            .set(i64::try_from(e).unwrap_or(i64::MAX));
        let n = core
            .routed
            .vipas
            .iter()
            .find(|o| o.address == v.address)
            .map_or(0, |o| o.crt.len());
        crt.get_or_create(&l).set(n as i64);
    }
    reg.register(
        "vipa_control_role",
        "Role for the VIPA: 0 idle, 1 claiming, 2 owner",
        role,
    );
    reg.register(
        "vipa_control_epoch",
        "Highest ownership epoch known for the VIPA (term << 8 | rank)",
        epoch,
    );
    reg.register(
        "vipa_control_crt_connections",
        "Connections in the CRT this node routes the VIPA with",
        crt,
    );

    let ready = Family::<Labels, Gauge>::default();
    let conns = Family::<Labels, Gauge>::default();
    let counts = connection_counts(core);
    for v in &core.routed.vipas {
        for s in &v.services {
            for t in &s.targets {
                let l = label(&[
                    ("vipa", v.address.to_string()),
                    ("service", s.service.to_string()),
                    ("target", t.address.to_string()),
                ]);
                ready.get_or_create(&l).set(i64::from(t.takes_new()));
                let c = counts
                    .get(&(v.address, s.service, t.address))
                    .copied()
                    .unwrap_or(0);
                conns.get_or_create(&l).set(c as i64);
            }
        }
    }
    reg.register(
        "vipa_control_target_ready",
        "1 when the target takes new connections of the service",
        ready,
    );
    reg.register(
        "vipa_control_target_connections",
        "Connections of the service routed to the target",
        conns,
    );

    let up = Family::<Labels, Gauge>::default();
    for n in &core.config.cluster.nodes {
        if n.name != core.node.name() {
            up.get_or_create(&label(&[("node", n.name.clone())]))
                .set(i64::from(core.node.is_up(&n.name)));
        }
    }
    reg.register(
        "vipa_control_node_up",
        "1 when the failure detector considers the routing node up",
        up,
    );

    let counter = |reg: &mut Registry, name: &str, help: &str, v: u64| {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        reg.register(name, help, c);
    };
    let n = &core.net;
    counter(
        &mut reg,
        "vipa_control_frames_received",
        "Control frames received",
        n.frames_in.load(Ordering::Relaxed),
    );
    counter(
        &mut reg,
        "vipa_control_frames_sent",
        "Control frames sent",
        n.frames_out.load(Ordering::Relaxed),
    );
    counter(
        &mut reg,
        "vipa_control_messages_dropped",
        "Control messages dropped (no connection, queue full)",
        n.dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut reg,
        "vipa_control_peers_rejected",
        "Control streams closed or datagrams ignored for what they carried",
        n.rejected.load(Ordering::Relaxed),
    );
    counter(
        &mut reg,
        "vipa_control_snapshots_published",
        "Snapshot generations published",
        core.stats.published,
    );
    counter(
        &mut reg,
        "vipa_control_snapshot_errors",
        "Snapshots that could not be published",
        core.stats.publish_errors,
    );
    counter(
        &mut reg,
        "vipa_control_new_flows",
        "New-flow events read from the forwarder",
        core.stats.new_flows,
    );

    if let Some(workers) = core.forwarder_counters() {
        let fwd = Family::<Labels, Gauge>::default();
        for (w, cs) in workers.iter().enumerate() {
            for (name, v) in cs {
                fwd.get_or_create(&label(&[
                    ("worker", w.to_string()),
                    ("counter", name.clone()),
                ]))
                .set(i64::try_from(*v).unwrap_or(i64::MAX));
            }
        }
        reg.register(
            "vipa_forwarder_counter",
            "The forwarder's counters, per worker (from its back channel)",
            fwd,
        );
    }
    if let Some(by_target) = core.target_traffic() {
        let packets = Family::<Labels, Gauge>::default();
        let bytes = Family::<Labels, Gauge>::default();
        let flows = Family::<Labels, Gauge>::default();
        for (t, [p, b, f]) in by_target {
            let l = label(&[("target", t.to_string())]);
            let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            packets.get_or_create(&l).set(g(p));
            bytes.get_or_create(&l).set(g(b));
            flows.get_or_create(&l).set(g(f));
        }
        reg.register(
            "vipa_forwarder_target_packets",
            "Packets the forwarder sent to the target since it started (all workers)",
            packets,
        );
        reg.register(
            "vipa_forwarder_target_bytes",
            "Bytes of inner packets the forwarder sent to the target since it started",
            bytes,
        );
        reg.register(
            "vipa_forwarder_target_flows",
            "Flows (connections) the forwarder created for the target since it started",
            flows,
        );
    }
    if let Some(by_service) = core.service_traffic() {
        let packets = Family::<Labels, Gauge>::default();
        let bytes = Family::<Labels, Gauge>::default();
        for ((vipa, service, target), [p, b]) in by_service {
            let l = label(&[
                ("vipa", vipa.to_string()),
                ("service", service.to_string()),
                ("target", target.to_string()),
            ]);
            let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            packets.get_or_create(&l).set(g(p));
            bytes.get_or_create(&l).set(g(b));
        }
        reg.register(
            "vipa_forwarder_service_target_packets",
            "Packets the forwarder sent to the target for the VIPA:port since it started (all workers)",
            packets,
        );
        reg.register(
            "vipa_forwarder_service_target_bytes",
            "Bytes of inner packets the forwarder sent to the target for the VIPA:port since it started",
            bytes,
        );
    }

    let mut out = String::new();
    match encode(&mut out, &reg) {
        Ok(()) => Response {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: out,
        },
        Err(e) => Response::error(500, format!("cannot encode the metrics: {e}")),
    }
}

#[cfg(test)]
mod tests;
