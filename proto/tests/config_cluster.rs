//! `[cluster]` and the per-VIPA owner, backups, `moveable` and candidate
//! lists: defaults that keep one node valid, and located errors.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use vipa_proto::config::{ClusterConfig, Config, ConfigError, Moveable, Problem};

const FILE: &str = "conf/cluster.toml";

const BASE: &str = r#"[node]
name = "fwd-a"
tunnel_source_v4 = "10.10.0.1"

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"

[cluster]
probe_interval_ms = 100
restart_hold = 5

  [[cluster.node]]
  name = "fwd-a"
  address = "10.10.0.1:7400"

  [[cluster.node]]
  name = "fwd-b"
  address = "10.10.0.2:7400"

  [[cluster.node]]
  name = "fwd-c"
  address = "[fd00:10::3]:7400"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80"]
owner = "fwd-a"
backups = ["fwd-b", "fwd-c"]
moveable = "when-idle"
candidates = { fwd-b = ["10.20.0.12"] }

  [[vipa.target]]
  address = "10.20.0.11"

  [[vipa.target]]
  address = "10.20.0.12"
"#;

fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the base config");
        text = text.replacen(from, to, 1);
    }
    text
}

/// Parses `text`, which must fail at the line marked `# <-` on `field`.
fn fails(text: &str, field: &str) -> ConfigError {
    let err = Config::from_str_with_path(text, Path::new(FILE))
        .expect_err("the configuration must be refused");
    let msg = err.to_string();
    let at = text.find("# <-").expect("a marked line");
    let line = text[..at].matches('\n').count() + 1;
    assert_eq!(err.line(), Some(line), "{msg}");
    assert_eq!(err.field(), Some(field), "{msg}");
    assert!(msg.starts_with(&format!("{FILE}:{line}:")), "{msg}");
    err
}

#[test]
fn cluster_parses() {
    let c = Config::from_str_with_path(BASE, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cluster.nodes.len(), 3);
    assert_eq!(
        c.cluster.node("fwd-c").unwrap().address,
        Some("[fd00:10::3]:7400".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.cluster.probe_interval, Duration::from_millis(100));
    assert_eq!(c.cluster.restart_hold, Duration::from_secs(5));
    assert_eq!(c.cluster.api, vipa_proto::config::DEFAULT_API);
    let v = &c.vipas[0];
    assert_eq!(v.owner, "fwd-a");
    assert_eq!(v.backups, ["fwd-b", "fwd-c"]);
    assert_eq!(v.moveable, Moveable::WhenIdle);
    assert_eq!(v.rank_of("fwd-c"), Some(2));
    assert_eq!(v.node_at_rank(1), Some("fwd-b"));
    let b: Vec<IpAddr> = v
        .candidates_for("fwd-b")
        .iter()
        .map(|t| t.address)
        .collect();
    assert_eq!(b, [IpAddr::from([10, 20, 0, 12])]);
    assert_eq!(v.candidates_for("fwd-a").len(), 2);
}

#[test]
fn one_node_needs_no_cluster_section() {
    let text = r#"[node]
name = "solo"
tunnel_source_v4 = "10.10.0.1"
[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
[[vipa]]
address = "192.0.2.10"
services = ["tcp/80"]
target = [{ address = "10.20.0.11" }]
"#;
    let c = Config::from_str_with_path(text, Path::new(FILE)).unwrap();
    assert_eq!(c.cluster, ClusterConfig::single("solo"));
    assert_eq!(c.vipas[0].owner, "solo");
    assert!(c.vipas[0].backups.is_empty());
    assert_eq!(c.vipas[0].moveable, Moveable::Immediate);

    let err = fails(
        &text.replace(
            "services = [\"tcp/80\"]",
            "services = [\"tcp/80\"]\nbackups = [\"fwd-b\"] # <-",
        ),
        "vipa[0].backups[0]",
    );
    assert!(
        err.to_string().contains("without a [cluster] section"),
        "{err}"
    );
}

#[test]
fn unknown_owner_and_backup() {
    let err = fails(
        &edit(&[("owner = \"fwd-a\"", "owner = \"fwd-x\" # <-")]),
        "vipa[0].owner",
    );
    assert!(
        matches!(err.problem(), Some(Problem::UnknownNode { name, .. }) if name == "fwd-x"),
        "{err}"
    );
    assert!(err.to_string().contains("fwd-a, fwd-b, fwd-c"), "{err}");
    fails(
        &edit(&[(
            "backups = [\"fwd-b\", \"fwd-c\"]",
            "backups = [\"fwd-b\", \"fwd-d\"] # <-",
        )]),
        "vipa[0].backups[1]",
    );
}

#[test]
fn owner_is_required_in_a_cluster() {
    let err = fails(
        &edit(&[
            ("[[vipa]]\n", "[[vipa]] # <-\n"),
            ("owner = \"fwd-a\"\n", ""),
        ]),
        "vipa[0].owner",
    );
    assert!(matches!(err.problem(), Some(Problem::Missing { .. })));
}

#[test]
fn ranked_twice() {
    let err = fails(
        &edit(&[(
            "backups = [\"fwd-b\", \"fwd-c\"]",
            "backups = [\"fwd-b\", \"fwd-a\"] # <-",
        )]),
        "vipa[0].backups[1]",
    );
    assert!(err.to_string().contains("already the owner"), "{err}");
    let err = fails(
        &edit(&[(
            "backups = [\"fwd-b\", \"fwd-c\"]",
            "backups = [\"fwd-b\", \"fwd-b\"] # <-",
        )]),
        "vipa[0].backups[1]",
    );
    assert!(err.to_string().contains("already backups[0]"), "{err}");
}

#[test]
fn moveable_choices() {
    let err = fails(
        &edit(&[("moveable = \"when-idle\"", "moveable = \"later\" # <-")]),
        "vipa[0].moveable",
    );
    assert!(
        err.to_string().contains("\"immediate\" or \"when-idle\""),
        "{err}"
    );
}

#[test]
fn candidates() {
    fails(
        &edit(&[(
            "candidates = { fwd-b = [\"10.20.0.12\"] }",
            "candidates = { fwd-b = [\"10.20.0.13\"] } # <-",
        )]),
        "vipa[0].candidates.fwd-b[0]",
    );
    fails(
        &edit(&[(
            "candidates = { fwd-b = [\"10.20.0.12\"] }",
            "candidates = { fwd-z = [\"10.20.0.12\"] } # <-",
        )]),
        "vipa[0].candidates.fwd-z",
    );
    fails(
        &edit(&[(
            "candidates = { fwd-b = [\"10.20.0.12\"] }",
            "candidates = { fwd-b = [] } # <-",
        )]),
        "vipa[0].candidates.fwd-b",
    );
    fails(
        &edit(&[(
            "candidates = { fwd-b = [\"10.20.0.12\"] }",
            "candidates = { fwd-b = [\"10.20.0.12\", \"10.20.0.12\"] } # <-",
        )]),
        "vipa[0].candidates.fwd-b[1]",
    );
}

#[test]
fn cluster_nodes() {
    let err = fails(
        &edit(&[
            ("  [[cluster.node]]\n", "  [[cluster.node]] # <-\n"),
            (
                "  name = \"fwd-a\"\n  address",
                "  name = \"fwd-q\"\n  address",
            ),
        ]),
        "cluster.node",
    );
    // Pointed at the first [[cluster.node]], where the list starts.
    assert!(
        matches!(err.problem(), Some(Problem::ThisNodeNotListed { .. })),
        "{err}"
    );
}

#[test]
fn cluster_node_errors() {
    fails(
        &edit(&[("name = \"fwd-c\"", "name = \"fwd-b\" # <-")]),
        "cluster.node[2].name",
    );
    fails(
        &edit(&[(
            "address = \"10.10.0.2:7400\"",
            "address = \"10.10.0.2\" # <-",
        )]),
        "cluster.node[1].address",
    );
    fails(
        &edit(&[(
            "probe_interval_ms = 100",
            "probe_interval_ms = 100\nprobe_timeout_ms = 100 # <-",
        )]),
        "cluster.probe_timeout_ms",
    );
    fails(
        &edit(&[("restart_hold = 5", "restart_hold = 0 # <-")]),
        "cluster.restart_hold",
    );
    fails(
        &edit(&[(
            "restart_hold = 5",
            "restart_hold = 5\nprobe_period = 3 # <-",
        )]),
        "cluster.probe_period",
    );
    fails(
        &edit(&[(
            "restart_hold = 5",
            "restart_hold = 5\napi = \"localhost\" # <-",
        )]),
        "cluster.api",
    );
}

#[test]
fn cluster_api() {
    let text = edit(&[("restart_hold = 5", "restart_hold = 5\napi = \"[::1]:9000\"")]);
    let c = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cluster.api, "[::1]:9000".parse::<SocketAddr>().unwrap());
}
