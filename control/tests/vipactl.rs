//! `vipactl` against a real `vipa-control` process (one routing node) and
//! two agents (in this process, with fixed listeners instead of sock_diag)
//! on loopback addresses of their own: the read commands' `--json` parse,
//! `quiesce` and `resume` change what `dpt --json` reports, `--dry-run`
//! sends nothing, and an unreachable daemon is exit code 2. The test
//! plays the forwarder's part of the back channel ([`FakeForwarder`]), so
//! `status` has a forwarder to judge.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vipa_control::agent::discovery::{Connection, Inventory, Listener};
use vipa_control::daemon::agent::{self, AgentOptions, Source};
use vipa_control::snapshot::SharedWords;
use vipa_proto::config::{Config, L4Protocol};
use vipa_proto::snapshot::back::{Back, Identity, Layout, LoaderFigures};
use vipa_proto::snapshot::head::{Head, Names};

/// A second octet of 127/8 of this test's own (daemon.rs and agent_run.rs
/// use 20..=219).
fn net() -> u8 {
    225 + (std::process::id() % 30) as u8
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, net(), 2, last))
}

const VIPA: &str = "192.0.2.10";

fn config() -> String {
    let n = net();
    format!(
        r#"
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
port = 7400
probe_interval_ms = 100
probe_timeout_ms = 40
suspect_timeout_ms = 200
refresh_interval_ms = 200

  [[cluster.node]]
  name = "fwd-a"
  address = "127.{n}.2.1:7401"

[[vipa]]
address = "{VIPA}"
services = ["tcp/80"]
owner = "fwd-a"
table_size = 251
target = [{{ address = "127.{n}.2.11" }}, {{ address = "127.{n}.2.12" }}]
"#
    )
}

struct Daemon {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn api() -> String {
    format!("http://{}", SocketAddr::new(ip(1), 9470))
}

/// Packets and bytes the fake forwarder adds to target slot 0 per round.
const PACKETS_PER_ROUND: u64 = 10;
const BYTES_PER_ROUND: u64 = 1_500;

/// The forwarder's end of the back channel, as `vipa-forwarder run
/// --snapshot` keeps it: a loader heartbeat, the generation the workers use
/// (the head's), counters copied every round with a moving stamp, and
/// traffic to target slot 0. Stops when dropped.
struct FakeForwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeForwarder {
    fn start(prefix: &str) -> Self {
        let names = Names::new(prefix);
        let layout = Layout {
            workers: 2,
            counters: 2,
            target_slots: 4,
            // The configuration's one VIPA:port and two target slots.
            service_slots: 1,
            service_targets: 2,
            ring_capacity: 8,
            names_bytes: 0,
        };
        let back = SharedWords::create(&names.back(), layout.bytes() + 64).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let wall = || {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
            };
            let b = Back::init(back.words(), layout, &["rx_packets", "tx_packets"]).unwrap();
            b.set_identity(&Identity {
                pid: u64::from(std::process::id()),
                started_unix_ms: wall(),
                backend: "test-fake".into(),
            });
            let mut round = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                round += 1;
                let generation = SharedWords::open(&names.head())
                    .ok()
                    .and_then(|h| Head::open(h.words()).ok().map(|h| h.generation()))
                    .unwrap_or(0);
                for w in 0..2 {
                    b.set_worker_generation(w, generation);
                    let slot0 = [PACKETS_PER_ROUND * round, BYTES_PER_ROUND * round, 1];
                    // All of it to tcp/80 of the VIPA (service slot 0).
                    let per_service = [[slot0[0], slot0[1]], [0, 0]];
                    b.publish_counters(
                        w,
                        round,
                        &[round, round],
                        [slot0].into_iter(),
                        &per_service,
                    );
                }
                b.set_loader(&LoaderFigures {
                    generation,
                    loaded: generation,
                    heartbeat: round,
                    heartbeat_unix_ms: wall(),
                    ..LoaderFigures::default()
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        FakeForwarder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs vipactl against the test's daemon.
async fn vipactl(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vipactl"));
    cmd.env("VIPA_CONTROL", api()).args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn json(args: &[&str]) -> Value {
    let o = vipactl(args).await;
    assert!(
        o.status.success(),
        "{args:?}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// The states of the DPT's targets of tcp/80, by address.
async fn states() -> Vec<(String, String, bool)> {
    let d = json(&["dpt", "--json"]).await;
    d["dpt"]
        .as_array()
        .and_then(|rows| rows.first())
        .and_then(|r| r["targets"].as_array())
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["target"].as_str().unwrap_or_default().to_owned(),
                        t["state"].as_str().unwrap_or_default().to_owned(),
                        t["ready"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn until<F, Fut, T>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vipactl_reads_and_quiesces_through_the_api() {
    let cfg = Config::from_str_with_path(&config(), std::path::Path::new("t.toml")).unwrap();
    for last in [11, 12] {
        let mut inv = Inventory::default();
        inv.listeners.insert(Listener {
            protocol: L4Protocol::Tcp,
            service: SocketAddr::new(VIPA.parse().unwrap(), 80),
        });
        // One established connection on the first target: the CRT's.
        if last == 11 {
            inv.connections.insert(Connection {
                service: SocketAddr::new(VIPA.parse().unwrap(), 80),
                client: "198.51.100.7:40000".parse().unwrap(),
            });
        }
        let opts = AgentOptions {
            config: cfg.clone(),
            address: ip(last),
            listen: None,
            decap: None,
        };
        tokio::spawn(async move {
            agent::run(opts, Source::Fixed(inv), std::future::pending())
                .await
                .unwrap();
        });
    }
    let dir = std::env::temp_dir().join(format!("vipactl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fwd-a.toml");
    std::fs::write(&path, config()).unwrap();
    let prefix = dir.join("snap").to_string_lossy().into_owned();
    let child = Command::new(env!("CARGO_BIN_EXE_vipa-control"))
        .arg("--config")
        .arg(&path)
        .arg("--api")
        .arg(SocketAddr::new(ip(1), 9470).to_string())
        .arg("--snapshot")
        .arg(&prefix)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _daemon = Daemon { child, dir };

    // status --json before a forwarder: it says none reports, and why.
    let s = until("the API answers", Duration::from_secs(15), || async {
        let o = vipactl(&["status", "--json"]).await;
        serde_json::from_slice::<Value>(&o.stdout).ok()
    })
    .await;
    assert_eq!(s["node"], "fwd-a");
    assert_eq!(s["forwarder"]["attached"], false, "{s}");
    assert!(
        s["forwarder"]["problem"]
            .as_str()
            .unwrap()
            .contains("vipa-forwarder run --snapshot"),
        "{s}"
    );
    let _forwarder = FakeForwarder::start(&prefix);

    // vipa --json: the API's JSON; the node becomes the owner.
    until("fwd-a owns the VIPA", Duration::from_secs(15), || async {
        let o = vipactl(&["vipa", "--json"]).await;
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        (v["vipas"][0]["role"] == "owner").then_some(())
    })
    .await;
    let v = json(&["vipa", "--json"]).await;
    assert_eq!(v["node"], "fwd-a");
    assert_eq!(v["vipas"][0]["vipa"], VIPA);
    assert!(v["vipas"][0]["for_ms"].is_u64(), "{v}");
    assert!(v["vipas"][0]["since_unix_ms"].is_u64(), "{v}");
    assert_eq!(v["vipas"][0]["state"], "Active");
    let table = vipactl(&["vipa"]).await;
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.contains("STATE HERE") && table.contains("Active"),
        "{table}"
    );

    // dpt --json: both targets ready.
    until(
        "both targets are ready",
        Duration::from_secs(10),
        || async {
            let s = states().await;
            (s.len() == 2 && s.iter().all(|t| t.2)).then_some(())
        },
    )
    .await;
    let d = json(&["dpt", "--json"]).await;
    assert_eq!(d["dpt"][0]["service"], "tcp/80");

    // crt --json: the agent's connection, with its age here.
    let c = until(
        "the CRT has the connection",
        Duration::from_secs(10),
        || async {
            let c = json(&["crt", "--json"]).await;
            (c["crt"].as_array().map(Vec::len) == Some(1)).then_some(c)
        },
    )
    .await;
    let row = &c["crt"][0];
    assert_eq!(row["client"], "198.51.100.7:40000");
    assert_eq!(row["target"], ip(11).to_string());
    assert!(
        row["age_ms"].is_u64() && row["since_unix_ms"].is_u64(),
        "{c}"
    );
    let c = json(&["crt", "--json", "--limit", "1"]).await;
    assert!(c["matched"].is_u64(), "{c}");
    let s = json(&["stats", "--json"]).await;
    assert!(s["control"]["snapshot_generation"].is_u64(), "{s}");

    // config --json: the configuration as the daemon understood it.
    let c = json(&["config", "--json"]).await;
    assert_eq!(c["vipas"][0]["vipa"], VIPA);
    assert_eq!(c["vipas"][0]["owner"], "fwd-a");
    assert_eq!(c["vipas"][0]["moveable"], "immediate");
    assert_eq!(c["vipas"][0]["targets"][0]["weight"], 1);
    assert_eq!(c["vipas"][0]["candidates"][0]["every_target"], true);
    let table = String::from_utf8(vipactl(&["config"]).await.stdout).unwrap();
    assert!(table.contains("NEW CONNECTIONS FROM"), "{table}");

    // status --json: the VIPA is Active here, the forwarder healthy and on
    // the generation published, both agents have reported.
    let s = until(
        "status shows a healthy forwarder in sync and both agents",
        Duration::from_secs(10),
        || async {
            let s = json(&["status", "--json"]).await;
            let f = &s["forwarder"];
            let agents_reported = s["agents"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|a| a["last_report_ms"].is_u64()));
            (f["health"] == "ok" && f["in_sync"] == true && agents_reported).then_some(s)
        },
    )
    .await;
    let v = &s["vipas"][0];
    assert_eq!(
        (&v["state"], &v["role"]),
        (&"Active".into(), &"owner".into())
    );
    assert_eq!((&v["targets"], &v["targets_ready"]), (&2.into(), &2.into()));
    let f = &s["forwarder"];
    assert_eq!(f["backend"], "test-fake");
    assert_eq!(f["workers"], 2);
    assert!(f["heartbeat_age_ms"].as_u64().unwrap() < 2_000, "{s}");
    assert_eq!(f["generation_loaded"], s["snapshot"]["generation"]);
    assert!(s["snapshot"]["age_ms"].is_u64(), "{s}");
    assert!(s["uptime_ms"].is_u64(), "{s}");
    assert_eq!(s["peers"].as_array().map(Vec::len), Some(0), "one node");
    // dpt --json: what the forwarder sent each target, summed over its
    // workers (slot 0 is the first target of the configuration).
    let d = json(&["dpt", "--json"]).await;
    let traffic = d["traffic"].as_array().expect("a forwarder reports");
    let t11 = &traffic[0];
    assert_eq!(t11["target"], ip(11).to_string());
    let packets = t11["packets"].as_u64().unwrap();
    assert!(packets >= 2 * PACKETS_PER_ROUND, "{d}");
    assert_eq!(
        t11["bytes"].as_u64().unwrap() * PACKETS_PER_ROUND,
        packets * BYTES_PER_ROUND,
        "{d}"
    );
    assert_eq!(t11["connections_total"], 2, "{d}");
    assert_eq!(traffic[1]["packets"], 0, "{d}");
    // The same per VIPA:port and target, on the DPT's rows (the fake
    // forwarder sends everything to tcp/80 of target slot 0).
    let rows = d["dpt"][0]["targets"].as_array().expect("targets");
    let row = |a: IpAddr| rows.iter().find(|t| t["target"] == a.to_string()).unwrap();
    let r11 = row(ip(11));
    let row_packets = r11["packets"].as_u64().expect("packets per row");
    assert!(row_packets >= 2 * PACKETS_PER_ROUND, "{d}");
    assert_eq!(
        r11["bytes"].as_u64().unwrap() * PACKETS_PER_ROUND,
        row_packets * BYTES_PER_ROUND,
        "{d}"
    );
    assert_eq!(row(ip(12))["packets"], 0, "{d}");
    assert_eq!(row(ip(12))["bytes"], 0, "{d}");
    let table = String::from_utf8(vipactl(&["dpt"]).await.stdout).unwrap();
    assert!(
        table.contains("ACTIVE CONNECTIONS") && table.contains("BYTES"),
        "{table}"
    );
    let header = table.lines().nth(1).unwrap_or_default();
    assert!(
        header.contains("PACKETS") && header.contains("BYTES"),
        "per VIPA:port columns: {table}"
    );

    // stats --watch --json: a JSON object per line, rates from the second
    // on; Ctrl-C (SIGINT) ends it with exit code 0.
    let lines = tokio::task::spawn_blocking(|| {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vipactl"))
            .env("VIPA_CONTROL", api())
            .args(["stats", "--watch", "--json", "--interval", "0.2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            lines.push(l);
        }
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) with a pid this test spawned and has not reaped
        // yet (so it cannot name another process) and a valid signal.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = child.wait().unwrap();
        (lines, status)
    })
    .await
    .unwrap();
    let (lines, status) = lines;
    assert_eq!(status.code(), Some(0), "Ctrl-C ends a watch: 0");
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    let second: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(first["rates"], Value::Null);
    assert!(first["forwarder"].is_array(), "{first}");
    assert!(
        second["rates"]["control"]["frames_received"].is_f64(),
        "{second}"
    );
    assert!(second["interval_s"].as_f64().unwrap() >= 0.2, "{second}");
    // The fake forwarder counts 1 rx packet per worker per 100 ms round.
    let rx = second["rates"]["forwarder"][0]["rx_packets"]
        .as_f64()
        .unwrap();
    assert!((1.0..=40.0).contains(&rx), "{second}");

    let table = String::from_utf8(vipactl(&["status"]).await.stdout).unwrap();
    for want in [
        "node fwd-a",
        "Active",
        "forwarder  ok: test-fake, 2 workers",
        "AGENT",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }

    // --dry-run sends nothing.
    let t11 = ip(11).to_string();
    let o = vipactl(&["quiesce", "target", &t11, "--vipa", VIPA, "--dry-run"]).await;
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"target\": \"127."));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(states().await.iter().all(|t| t.2));

    // quiesce: the target is no longer ready; the output says what changed.
    let o = vipactl(&["quiesce", "target", &t11, "--vipa", VIPA]).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("quiesced"), "{out}");
    until("the target is quiesced", Duration::from_secs(5), || async {
        let s = states().await;
        s.iter()
            .any(|t| t.0 == t11 && t.1 == "quiesced" && !t.2)
            .then_some(())
    })
    .await;
    // The other one stays ready.
    assert!(states().await.iter().any(|t| t.0 != t11 && t.2));

    // resume target: ready again.
    let o = vipactl(&["resume", "target", &t11, "--vipa", VIPA]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all_ready = || async {
        let s = states().await;
        (s.len() == 2 && s.iter().all(|t| t.2)).then_some(())
    };
    until(
        "the target is ready again",
        Duration::from_secs(5),
        all_ready,
    )
    .await;

    // quiesce port / resume port: every target of VIPA:80.
    let port = format!("{VIPA}:80");
    let o = vipactl(&["quiesce", "port", &port]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    until(
        "every target is quiesced",
        Duration::from_secs(5),
        || async {
            let s = states().await;
            (s.len() == 2 && s.iter().all(|t| t.1 == "quiesced")).then_some(())
        },
    )
    .await;
    let o = vipactl(&["resume", "port", &port]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    until(
        "every target is ready again",
        Duration::from_secs(5),
        all_ready,
    )
    .await;

    // A refused request is exit code 1, with the daemon's reason.
    let o = vipactl(&["quiesce", "port", &format!("{VIPA}:81")]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a service"));
}

#[test]
fn an_unreachable_daemon_is_exit_code_2_naming_the_address() {
    // A port on loopback nothing listens on: bind, note, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = Command::new(env!("CARGO_BIN_EXE_vipactl"))
        .args(["--control", &url, "vipa"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&url), "{err}");
    assert!(
        err.contains("cluster.api") && err.contains("VIPA_CONTROL"),
        "{err}"
    );

    // Write commands with --dry-run need no daemon.
    let o = Command::new(env!("CARGO_BIN_EXE_vipactl"))
        .args(["--control", &url, "deactivate", "192.0.2.10", "--dry-run"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("POST") && out.contains("/v1/deactivate"),
        "{out}"
    );

    // Usage errors are 64.
    let o = Command::new(env!("CARGO_BIN_EXE_vipactl"))
        .args(["crt", "--client", "nonsense"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
}
