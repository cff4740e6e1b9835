//! `GET /v1/config`: the configuration the daemon runs with, as it
//! understood it (defaults filled in): the cluster and every VIPA with its
//! owner, ranked backups, moveable, distribution, targets and weights, and
//! the candidate targets of each routing node that may own it.

use serde_json::{json, Value};
use vipa_proto::config::{Distribution, Moveable};

use crate::daemon::node::Core;

/// The configuration as JSON.
pub(super) fn config(core: &Core) -> Value {
    let c = &core.config;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let nodes: Vec<Value> = c
        .cluster
        .nodes
        .iter()
        .map(|n| json!({ "name": n.name, "address": n.address }))
        .collect();
    let vipas: Vec<Value> = c
        .vipas
        .iter()
        .map(|v| {
            let targets: Vec<Value> = v
                .targets
                .iter()
                .map(|t| json!({ "target": t.address, "weight": t.weight }))
                .collect();
            // Every node that may own the VIPA, by rank, with the targets
            // it gives new connections to.
            let candidates: Vec<Value> = std::iter::once(&v.owner)
                .chain(&v.backups)
                .enumerate()
                .map(|(rank, node)| {
                    let list: Vec<Value> = v
                        .candidates_for(node)
                        .iter()
                        .map(|t| json!(t.address))
                        .collect();
                    json!({
                        "node": node,
                        "rank": rank,
                        "targets": list,
                        "every_target": !v.candidates.iter().any(|(n, _)| n == node),
                    })
                })
                .collect();
            json!({
                "vipa": v.address,
                "services": v.services.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "owner": v.owner,
                "backups": v.backups,
                "moveable": match v.moveable {
                    Moveable::Immediate => "immediate",
                    Moveable::WhenIdle => "when-idle",
                },
                "distribution": match v.distribution {
                    Distribution::Maglev => "maglev",
                },
                "table_size": v.table_size,
                "targets": targets,
                "candidates": candidates,
            })
        })
        .collect();
    json!({
        "node": c.node.name,
        "cluster": {
            "nodes": nodes,
            "agent_port": c.cluster.agent_port,
            "api": c.cluster.api,
            "probe_interval_ms": ms(c.cluster.probe_interval),
            "probe_timeout_ms": ms(c.cluster.probe_timeout),
            "suspect_timeout_ms": ms(c.cluster.suspect_timeout),
            "collect_timeout_ms": ms(c.cluster.collect_timeout),
            "refresh_interval_ms": ms(c.cluster.refresh_interval),
            "restart_hold_ms": ms(c.cluster.restart_hold),
        },
        "vipas": vipas,
    })
}
