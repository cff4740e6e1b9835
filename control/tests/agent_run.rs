//! `vipa-agent run` with real sock_diag discovery and one `vipa-control`,
//! on loopback addresses of their own: the agent reports a listener on
//! VIPA:port and a connection to it; the node shows the target ready and
//! the connection in its CRT, and forgets both when they go.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn net() -> u8 {
    20 + (std::process::id() % 200) as u8
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, net(), 1, last))
}

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
port = 7500
api = "127.{n}.1.1:9570"
refresh_interval_ms = 200

  [[cluster.node]]
  name = "fwd-a"
  address = "127.{n}.1.1:7501"

[[vipa]]
address = "127.{n}.1.100"
services = ["tcp/8080"]
owner = "fwd-a"
table_size = 251
target = [{{ address = "127.{n}.1.11" }}]
"#
    )
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &str, args: &[&str]) -> Proc {
    Proc(
        Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn get(path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let api = SocketAddr::new(ip(1), 9570);
    let mut s = TcpStream::connect(api).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

fn until(what: &str, mut f: impl FnMut() -> Option<Value>) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: not within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn target(dpt: &Value) -> Option<Value> {
    Some(dpt["dpt"].get(0)?["targets"].get(0)?.clone())
}

#[test]
fn the_agent_reports_real_sockets_to_the_owner() {
    let dir = std::env::temp_dir().join(format!("vipa-agent-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vipa.toml");
    std::fs::write(&path, config()).unwrap();
    let path = path.to_str().unwrap();
    let address = ip(11).to_string();
    let _node = spawn(env!("CARGO_BIN_EXE_vipa-control"), &["--config", path]);
    let _agent = spawn(
        env!("CARGO_BIN_EXE_vipa-agent"),
        &[
            "run",
            "--config",
            path,
            "--address",
            &address,
            "--interval-ms",
            "20",
        ],
    );

    let vipa = SocketAddr::new(ip(100), 8080);
    let server = TcpListener::bind(vipa).unwrap();
    until("the target is ready", || {
        let t = target(&get("/v1/dpt")?)?;
        (t["ready"] == true).then_some(t)
    });

    let client = TcpStream::connect(vipa).unwrap();
    let (_accepted, _) = server.accept().unwrap();
    let me = client.local_addr().unwrap().to_string();
    until("the connection is in the CRT", || {
        let crt = get("/v1/crt")?;
        let row = crt["crt"]
            .as_array()?
            .iter()
            .find(|r| r["client"] == me.as_str())?
            .clone();
        (row["target"] == address.as_str()).then_some(row)
    });

    drop(client);
    drop(_accepted);
    until("the connection leaves the CRT", || {
        let crt = get("/v1/crt")?;
        crt["crt"].as_array()?.is_empty().then_some(crt)
    });

    drop(server);
    until("the target is restarting", || {
        let t = target(&get("/v1/dpt")?)?;
        (t["state"] == "restarting").then_some(t)
    });
    let _ = std::fs::remove_dir_all(&dir);
}
