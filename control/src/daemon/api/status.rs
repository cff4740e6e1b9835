//! `GET /v1/status`: the node on one page — its VIPAs, its forwarder, the
//! snapshot, the other routing nodes and the agents.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::{role_fields, unix_ms};
use crate::cluster::Peer;
use crate::daemon::forwarder;
use crate::daemon::node::Core;

/// The status at `now` (the daemon's clock, ms since it started).
pub(super) fn status(core: &Core, now: u64) -> Value {
    let wall = SystemTime::now();
    let now_unix_ms = unix_ms(wall);
    let ago = |t: Option<u64>| t.map(|t| now.saturating_sub(t));
    json!({
        "node": core.node.name(),
        "version": env!("CARGO_PKG_VERSION"),
        "started_unix_ms": unix_ms(core.started),
        "uptime_ms": wall.duration_since(core.started).unwrap_or_default().as_millis() as u64,
        "vipas": vipas(core, wall),
        "snapshot": snapshot(core, now_unix_ms),
        "forwarder": forwarder(core, now, now_unix_ms),
        "peers": peers(core, &ago),
        "agents": agents(core, &ago),
    })
}

fn vipas(core: &Core, wall: SystemTime) -> Vec<Value> {
    core.config
        .vipas
        .iter()
        .map(|v| {
            // What this node routes of the VIPA, when it owns it.
            let routed = core.routed.vipas.iter().find(|o| o.address == v.address);
            let (mut targets, mut ready) = (BTreeSet::new(), BTreeSet::new());
            for s in routed.iter().flat_map(|o| &o.services) {
                for t in &s.targets {
                    targets.insert(t.address);
                    if t.takes_new() {
                        ready.insert(t.address);
                    }
                }
            }
            let mut fields = role_fields(core, v, wall);
            fields.insert("routed".into(), json!(routed.is_some()));
            fields.insert("targets".into(), json!(targets.len()));
            fields.insert("targets_ready".into(), json!(ready.len()));
            fields.insert(
                "connections".into(),
                json!(routed.map_or(0, |o| o.crt.len())),
            );
            Value::Object(fields)
        })
        .collect()
}

fn snapshot(core: &Core, now_unix_ms: u64) -> Value {
    let at = core.stats.published_at.map(unix_ms);
    json!({
        "channel": core.snapshot_channel(),
        "generation": core.stats.generation,
        "published_unix_ms": at,
        "age_ms": at.map(|t| now_unix_ms.saturating_sub(t)),
        "published": core.stats.published,
        "errors": core.stats.publish_errors,
    })
}

fn forwarder(core: &Core, now: u64, now_unix_ms: u64) -> Value {
    let state = match core.forwarder_state() {
        Ok(s) => s,
        Err(why) => {
            return json!({
                "attached": false,
                "health": "absent",
                "problem": why,
            })
        }
    };
    let still = core.watch.still_for(now);
    let h = forwarder::health(&state, now_unix_ms, &still);
    let l = &state.loader;
    let id = &state.identity;
    let generations: Vec<u64> = state.workers.iter().map(|w| w.generation).collect();
    json!({
        "attached": true,
        "health": h.word,
        "problem": h.problem,
        "backend": (!id.backend.is_empty()).then_some(&id.backend),
        "pid": id.pid,
        "started_unix_ms": id.started_unix_ms,
        "uptime_ms": (id.started_unix_ms != 0).then(|| now_unix_ms.saturating_sub(id.started_unix_ms)),
        "heartbeat_age_ms": (l.heartbeat_unix_ms != 0).then(|| now_unix_ms.saturating_sub(l.heartbeat_unix_ms)),
        "workers": state.workers.len(),
        "worker_generations": generations,
        "worker_still_ms": still,
        "generation_loaded": l.generation,
        "in_sync": forwarder::in_sync(&state.workers, core.stats.generation),
        "snapshots_loaded": l.loaded,
        "snapshots_refused": l.refused,
        "last_refused": (l.refused != 0).then_some(l.last_refused),
        "last_refusal": vipa_proto::snapshot::back::refusal::describe(l.last_reason),
    })
}

fn peers(core: &Core, ago: &dyn Fn(Option<u64>) -> Option<u64>) -> Vec<Value> {
    let links = core.net.links();
    core.config
        .cluster
        .nodes
        .iter()
        .filter(|n| n.name != core.node.name())
        .map(|n| {
            let peer = Peer::Node(n.name.clone());
            let link = links.get(&peer).copied().unwrap_or_default();
            let heard = core.heard.get(&peer);
            json!({
                "node": n.name,
                "address": n.address,
                "swim": if core.node.is_up(&n.name) { "up" } else { "down" },
                "stream_out": link.outgoing,
                "streams_in": link.incoming,
                "last_heard_ms": ago(heard.map(|h| h.any)),
            })
        })
        .collect()
}

fn agents(core: &Core, ago: &dyn Fn(Option<u64>) -> Option<u64>) -> Vec<Value> {
    let links = core.net.links();
    let mut seen: Vec<IpAddr> = Vec::new();
    for v in &core.config.vipas {
        for t in &v.targets {
            if !seen.contains(&t.address) {
                seen.push(t.address);
            }
        }
    }
    seen.into_iter()
        .map(|a| {
            let peer = Peer::Target(a);
            let link = links.get(&peer).copied().unwrap_or_default();
            let heard = core.heard.get(&peer);
            json!({
                "target": a,
                "stream_out": link.outgoing,
                "streams_in": link.incoming,
                "last_heard_ms": ago(heard.map(|h| h.any)),
                "last_report_ms": ago(heard.and_then(|h| h.report)),
            })
        })
        .collect()
}
