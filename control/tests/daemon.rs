//! Two `vipa-control` processes and three agents (in this process, with
//! fixed listeners instead of sock_diag) on loopback addresses of their
//! own: the configured owner becomes owner, and when it is killed the
//! backup takes over with a higher epoch, as the HTTP API shows.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vipa_control::agent::discovery::{Inventory, Listener};
use vipa_control::daemon::agent::{self, AgentOptions, Source};
use vipa_proto::config::{Config, L4Protocol};

/// A second octet of 127/8 of this test's own, so that concurrent runs do
/// not collide.
fn net() -> u8 {
    20 + (std::process::id() % 200) as u8
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, net(), 0, last))
}

const VIPA: &str = "192.0.2.10";

fn config(name: &str) -> String {
    let n = net();
    format!(
        r#"
[node]
name = "{name}"
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
  address = "127.{n}.0.1:7401"

  [[cluster.node]]
  name = "fwd-b"
  address = "127.{n}.0.2:7401"

[[vipa]]
address = "{VIPA}"
services = ["tcp/80"]
owner = "fwd-a"
backups = ["fwd-b"]
table_size = 251
target = [{{ address = "127.{n}.0.11" }}, {{ address = "127.{n}.0.12" }}, {{ address = "127.{n}.0.13" }}]
"#
    )
}

struct Daemon {
    child: Child,
    api: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vipa-daemon-test-{}", std::process::id()))
}

fn start(name: &str, last: u8) -> Daemon {
    let dir = dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config(name)).unwrap();
    let api = SocketAddr::new(ip(last), 9470);
    let child = Command::new(env!("CARGO_BIN_EXE_vipa-control"))
        .arg("--config")
        .arg(&path)
        .arg("--api")
        .arg(api.to_string())
        .arg("--snapshot")
        .arg(dir.join(format!("{name}-snap")))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Daemon { child, api }
}

async fn get(api: SocketAddr, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(api).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).await.ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

/// The VIPA's entry in `/v1/vipas`.
async fn vipa(api: SocketAddr) -> Option<Value> {
    Some(get(api, "/v1/vipas").await?["vipas"][0].clone())
}

async fn until<F, Fut>(what: &str, limit: Duration, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
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
async fn the_owner_routes_and_the_backup_takes_over_when_it_is_killed() {
    // The agents: each "listens" on VIPA:80.
    let cfg = Config::from_str_with_path(&config("fwd-a"), std::path::Path::new("t.toml")).unwrap();
    for last in [11, 12, 13] {
        let mut inv = Inventory::default();
        inv.listeners.insert(Listener {
            protocol: L4Protocol::Tcp,
            service: SocketAddr::new(VIPA.parse().unwrap(), 80),
        });
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
    let mut a = start("fwd-a", 1);
    let b = start("fwd-b", 2);

    let owned = until("fwd-a owns the VIPA", Duration::from_secs(15), || async {
        let v = vipa(a.api).await?;
        (v["role"] == "owner").then_some(v)
    })
    .await;
    assert_eq!(owned["owner"], "fwd-a");
    let term = owned["term"].as_u64().unwrap();
    // fwd-b knows it too, and stays idle.
    until("fwd-b learns the owner", Duration::from_secs(5), || async {
        let v = vipa(b.api).await?;
        (v["owner"] == "fwd-a" && v["role"] == "idle").then_some(v)
    })
    .await;
    // The DPT shows the three ready targets.
    let dpt = get(a.api, "/v1/dpt").await.unwrap();
    let targets = dpt["dpt"][0]["targets"].as_array().unwrap().clone();
    assert_eq!(targets.len(), 3, "{dpt}");
    assert!(targets.iter().all(|t| t["ready"] == true), "{dpt}");

    // Garbage on the control port closes that stream only.
    let mut g = TcpStream::connect(SocketAddr::new(ip(1), 7401))
        .await
        .unwrap();
    g.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), g.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    assert_eq!(vipa(a.api).await.unwrap()["role"], "owner");

    // Kill the owner: the backup takes over with a newer epoch.
    let killed = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let took = until("fwd-b takes over", Duration::from_secs(10), || async {
        let v = vipa(b.api).await?;
        (v["role"] == "owner").then_some(v)
    })
    .await;
    eprintln!("takeover after {:?}", killed.elapsed());
    assert_eq!(took["owner"], "fwd-b");
    assert!(took["term"].as_u64().unwrap() > term, "{took}");
    let metrics = reqwest_free_metrics(b.api).await;
    assert!(
        metrics.contains("vipa_control_role{vipa=\"192.0.2.10\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vipa_control_node_up{node=\"fwd-a\"} 0"),
        "{metrics}"
    );

    // Each published what it routes: a head and the current generation.
    let counters = get(b.api, "/v1/counters").await.unwrap();
    let generation = counters["control"]["snapshot_generation"].as_u64().unwrap();
    assert!(generation >= 1, "{counters}");
    assert!(dir().join(format!("fwd-b-snap.gen.{generation}")).exists());
    assert!(dir().join("fwd-a-snap.head").exists());
    let _ = std::fs::remove_dir_all(dir());
}

async fn reqwest_free_metrics(api: SocketAddr) -> String {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}
