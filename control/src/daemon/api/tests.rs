use std::sync::Arc;

use vipa_proto::config::{Config, L4Protocol};
use vipa_proto::ctl::{Connection, Epoch, Message};

use super::*;
use crate::cluster::{OwnedVipa, Peer, ServiceTargets, Snapshot, TargetEntry, Transmit};
use crate::daemon::transport::NetStats;

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

[cluster]
  [[cluster.node]]
  name = "fwd-a"
  address = "10.10.0.1:7400"

  [[cluster.node]]
  name = "fwd-b"
  address = "10.10.0.2:7400"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80", "tcp/443"]
owner = "fwd-a"
backups = ["fwd-b"]
table_size = 251
target = [{ address = "10.20.0.11" }, { address = "10.20.0.12", weight = 2 }]
"#;

const VIPA: &str = "192.0.2.10";

fn core() -> Core {
    let config = Config::from_str_with_path(CONFIG, std::path::Path::new("t.toml")).unwrap();
    let mut c = Core::new(config, 0, 1, None, Arc::new(NetStats::default()));
    c.drain(|_| {});
    c
}

fn req(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        body: body.as_bytes().to_vec(),
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

fn sent(core: &mut Core) -> Vec<Transmit> {
    let mut out = Vec::new();
    core.drain(|t| out.push(t));
    out
}

fn web() -> Service {
    Service {
        protocol: L4Protocol::Tcp,
        port: 80,
    }
}

#[test]
fn vipas_shows_the_role_rank_and_known_owner() {
    let mut c = core();
    let r = handle(&mut c, 0, &req("GET", "/v1/vipas", ""));
    assert_eq!(r.status, 200);
    let v = json_of(&r);
    assert_eq!(v["node"], "fwd-a");
    let vipa = &v["vipas"][0];
    assert_eq!(vipa["vipa"], VIPA);
    assert_eq!(vipa["role"], "idle");
    assert_eq!(vipa["rank"], 0);
    assert_eq!(vipa["configured_owner"], "fwd-a");
    assert_eq!(vipa["backups"][0], "fwd-b");
    assert_eq!(vipa["deactivated"], false);
    assert_eq!(vipa["owner"], Value::Null);
    assert!(vipa["since_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(vipa["for_ms"].as_u64().unwrap() < 60_000);
}

#[test]
fn dpt_and_crt_show_what_is_routed() {
    let mut c = core();
    let conn = Connection {
        client: "198.51.100.7:40000".parse().unwrap(),
        service: web(),
    };
    c.routed = Snapshot {
        vipas: vec![OwnedVipa {
            address: VIPA.parse().unwrap(),
            epoch: Epoch::new(2, 0),
            services: vec![ServiceTargets {
                service: web(),
                targets: vec![
                    TargetEntry {
                        address: "10.20.0.11".parse().unwrap(),
                        weight: 1,
                        candidate: true,
                        state: TargetState::Ready,
                    },
                    TargetEntry {
                        address: "10.20.0.12".parse().unwrap(),
                        weight: 2,
                        candidate: true,
                        state: TargetState::Quiesced,
                    },
                ],
            }],
            crt: vec![(conn, "10.20.0.11".parse().unwrap())],
        }],
    };
    let d = json_of(&handle(&mut c, 0, &req("GET", "/v1/dpt", "")));
    let row = &d["dpt"][0];
    assert_eq!(row["service"], "tcp/80");
    assert_eq!(row["epoch"], "2.0");
    assert_eq!(row["targets"][0]["ready"], true);
    assert_eq!(row["targets"][0]["connections"], 1);
    assert_eq!(row["targets"][1]["state"], "quiesced");
    assert_eq!(row["targets"][1]["ready"], false);
    assert_eq!(row["targets"][1]["weight"], 2);
    // No forwarder: no traffic figures (rather than zeros).
    assert_eq!(d["traffic"], Value::Null);
    let t = json_of(&handle(&mut c, 0, &req("GET", "/v1/crt", "")));
    assert_eq!(t["crt"][0]["client"], "198.51.100.7:40000");
    assert_eq!(t["crt"][0]["target"], "10.20.0.11");
    let m = handle(&mut c, 0, &req("GET", "/metrics", ""));
    assert_eq!(m.status, 200);
    assert!(m.body.contains("vipa_control_target_connections{vipa=\"192.0.2.10\",service=\"tcp/80\",target=\"10.20.0.11\"} 1"), "{}", m.body);
    assert!(
        m.body.contains("vipa_control_role{vipa=\"192.0.2.10\"} 0"),
        "{}",
        m.body
    );
    assert!(
        m.body.contains("vipa_control_frames_received_total 0"),
        "{}",
        m.body
    );
    assert!(m.body.ends_with("# EOF\n"));
}

#[test]
fn quiesce_goes_to_the_agents() {
    let mut c = core();
    let r = handle(
        &mut c,
        0,
        &req(
            "POST",
            "/v1/quiesce",
            r#"{"vipa": "192.0.2.10", "target": "10.20.0.12", "service": "tcp/80"}"#,
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = sent(&mut c);
    let q: Vec<_> = out
        .iter()
        .filter_map(|t| match &t.message {
            Message::Quiesce(q) => Some((t.to.clone(), q.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, Peer::Target("10.20.0.12".parse().unwrap()));
    assert_eq!(q[0].1.service, Some(web()));
    assert!(q[0].1.quiesce);

    // A whole service: every target.
    let r = handle(
        &mut c,
        0,
        &req(
            "POST",
            "/v1/resume",
            r#"{"vipa": "192.0.2.10", "service": "tcp/443"}"#,
        ),
    );
    assert_eq!(r.status, 200);
    let n = sent(&mut c)
        .iter()
        .filter(|t| matches!(&t.message, Message::Quiesce(q) if !q.quiesce))
        .count();
    assert_eq!(n, 2);
}

#[test]
fn deactivate_and_reactivate() {
    let mut c = core();
    let r = handle(
        &mut c,
        5,
        &req("POST", "/v1/deactivate", r#"{"vipa": "192.0.2.10"}"#),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        json_of(&handle(&mut c, 5, &req("GET", "/v1/vipas", "")))["vipas"][0]["deactivated"],
        true
    );
    handle(
        &mut c,
        6,
        &req("POST", "/v1/reactivate", r#"{"vipa": "192.0.2.10"}"#),
    );
    assert_eq!(
        json_of(&handle(&mut c, 6, &req("GET", "/v1/vipas", "")))["vipas"][0]["deactivated"],
        false
    );
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let mut c = core();
    let cases = [
        (req("POST", "/v1/quiesce", "nonsense"), 400, "expected e.g."),
        (
            req("POST", "/v1/quiesce", r#"{"vipa": "192.0.2.99"}"#),
            404,
            "not a VIPA",
        ),
        (
            req(
                "POST",
                "/v1/quiesce",
                r#"{"vipa": "192.0.2.10", "target": "10.9.9.9"}"#,
            ),
            400,
            "not a target",
        ),
        (
            req(
                "POST",
                "/v1/quiesce",
                r#"{"vipa": "192.0.2.10", "service": "udp/53"}"#,
            ),
            400,
            "not a service",
        ),
        (
            req(
                "POST",
                "/v1/quiesce",
                r#"{"vipa": "192.0.2.10", "service": "http"}"#,
            ),
            400,
            "service",
        ),
        (
            req(
                "POST",
                "/v1/deactivate",
                r#"{"vipa": "192.0.2.10", "x": 1}"#,
            ),
            400,
            "unknown field",
        ),
        (req("DELETE", "/v1/vipas", ""), 405, "not allowed"),
        (req("GET", "/v2/nothing", ""), 404, "no such path"),
    ];
    for (r, status, text) in cases {
        let resp = handle(&mut c, 0, &r);
        assert_eq!(
            resp.status, status,
            "{} {}: {}",
            r.method, r.path, resp.body
        );
        assert!(
            json_of(&resp)["error"].as_str().unwrap().contains(text),
            "{}",
            resp.body
        );
    }
    assert!(sent(&mut c)
        .iter()
        .all(|t| !matches!(t.message, Message::Quiesce(_))));
}

#[test]
fn status_shows_the_node_its_forwarder_peers_and_agents() {
    let mut c = core();
    let report = vipa_proto::ctl::Report {
        vipa: VIPA.parse().unwrap(),
        epoch: Epoch::new(1, 0),
        session: 1,
        seq: 0,
        reset: true,
        more: false,
        listeners: Vec::new(),
        opened: Vec::new(),
        closed: Vec::new(),
    };
    c.message(
        100,
        &Peer::Target("10.20.0.11".parse().unwrap()),
        Message::Report(report),
    );
    let r = handle(&mut c, 350, &req("GET", "/v1/status", ""));
    assert_eq!(r.status, 200);
    let s = json_of(&r);
    assert_eq!(s["node"], "fwd-a");
    assert!(s["uptime_ms"].is_u64(), "{s}");
    let v = &s["vipas"][0];
    assert_eq!(v["vipa"], VIPA);
    // The configured owner, not owning yet: Backup (see vipa_state).
    assert_eq!(
        (&v["state"], &v["role"]),
        (&json!("Backup"), &json!("idle"))
    );
    assert_eq!(v["routed"], false);
    // No --snapshot: no forwarder, and the reason says so.
    assert_eq!(s["forwarder"]["attached"], false);
    assert!(
        s["forwarder"]["problem"]
            .as_str()
            .unwrap()
            .contains("--snapshot"),
        "{s}"
    );
    assert_eq!(s["snapshot"]["channel"], Value::Null);
    let p = &s["peers"][0];
    assert_eq!(p["node"], "fwd-b");
    assert_eq!(p["address"], "10.10.0.2:7400");
    assert_eq!(p["swim"], "down");
    assert_eq!(p["last_heard_ms"], Value::Null);
    let a = &s["agents"];
    assert_eq!(a[0]["target"], "10.20.0.11");
    assert_eq!(a[0]["last_report_ms"], 250);
    assert_eq!(a[1]["target"], "10.20.0.12");
    assert_eq!(a[1]["last_heard_ms"], Value::Null);
}

#[test]
fn vipa_states_in_sysplex_words() {
    let e = Epoch::new(1, 0);
    assert_eq!(vipa_state(Some(Role::Owner(e)), false, Some(0)), "Active");
    assert_eq!(
        vipa_state(Some(Role::Claiming(e)), false, Some(1)),
        "Moving"
    );
    assert_eq!(vipa_state(Some(Role::Idle), false, Some(1)), "Backup");
    assert_eq!(vipa_state(Some(Role::Idle), true, Some(1)), "Deactivated");
    assert_eq!(vipa_state(Some(Role::Idle), false, None), "-");
    let mut c = core();
    handle(
        &mut c,
        5,
        &req("POST", "/v1/deactivate", r#"{"vipa": "192.0.2.10"}"#),
    );
    let v = json_of(&handle(&mut c, 5, &req("GET", "/v1/vipas", "")));
    assert_eq!(v["vipas"][0]["state"], "Deactivated");
}

#[test]
fn config_shows_owners_backups_targets_and_candidates() {
    const WITH_CANDIDATES: &str = r#"
[[vipa]]
address = "192.0.2.20"
services = ["udp/53"]
owner = "fwd-b"
backups = ["fwd-a"]
moveable = "when-idle"
table_size = 251
target = [{ address = "10.20.0.11", weight = 3 }, { address = "10.20.0.13" }]
candidates = { "fwd-a" = ["10.20.0.13"] }
"#;
    let text = format!("{CONFIG}{WITH_CANDIDATES}");
    let config = Config::from_str_with_path(&text, std::path::Path::new("t.toml")).unwrap();
    let mut c = Core::new(config, 0, 1, None, Arc::new(NetStats::default()));
    let v = json_of(&handle(&mut c, 0, &req("GET", "/v1/config", "")));
    assert_eq!(v["node"], "fwd-a");
    assert_eq!(v["cluster"]["nodes"][1]["address"], "10.10.0.2:7400");
    assert!(v["cluster"]["probe_interval_ms"].is_u64());
    let a = &v["vipas"][0];
    assert_eq!(a["services"], json!(["tcp/80", "tcp/443"]));
    assert_eq!(
        (&a["owner"], &a["backups"]),
        (&json!("fwd-a"), &json!(["fwd-b"]))
    );
    assert_eq!(
        (&a["moveable"], &a["distribution"]),
        (&json!("immediate"), &json!("maglev"))
    );
    assert_eq!(
        a["targets"][1],
        json!({"target": "10.20.0.12", "weight": 2})
    );
    assert_eq!(a["candidates"][1]["node"], "fwd-b");
    assert_eq!(a["candidates"][1]["rank"], 1);
    assert_eq!(a["candidates"][1]["every_target"], true);
    let b = &v["vipas"][1];
    assert_eq!(b["moveable"], "when-idle");
    assert_eq!(b["candidates"][0]["node"], "fwd-b");
    assert_eq!(
        b["candidates"][0]["targets"],
        json!(["10.20.0.11", "10.20.0.13"])
    );
    assert_eq!(b["candidates"][1]["node"], "fwd-a");
    assert_eq!(b["candidates"][1]["targets"], json!(["10.20.0.13"]));
    assert_eq!(b["candidates"][1]["every_target"], false);
}
