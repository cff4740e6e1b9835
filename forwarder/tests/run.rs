//! `vipa-forwarder run` on a live AF_PACKET port: two network namespaces
//! joined by a veth pair, the forwarder in one, a client in the other.
//!
//! The client asks for the VIPA's MAC with an ARP request sent on a raw
//! AF_PACKET socket; the forwarder must answer with its port's MAC. Then the
//! forwarder gets SIGTERM and must exit 0, printing its counters (with
//! `arp_replies`) and writing them to the `--stats` file.
//!
//! Needs root (network namespaces, raw sockets); skipped otherwise, and when
//! this machine cannot create network namespaces. Namespaces are named
//! `vipa-run-<pid>-{fw,cl}` and removed by a guard, also when a step fails.

use std::ffi::CString;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x02];
const VIPA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ETH_P_ARP: u16 = 0x0806;

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `ip ARGS`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces, their veth pair and the files of one test; removed
/// by name on drop.
struct Lab {
    fw: String,
    cl: String,
    fw_if: String,
    cl_if: String,
    config: PathBuf,
    stats: PathBuf,
}

impl Lab {
    fn new() -> Result<Lab, String> {
        let pid = std::process::id();
        let lab = Lab {
            fw: format!("vipa-run-{pid}-fw"),
            cl: format!("vipa-run-{pid}-cl"),
            fw_if: format!("vr{pid}f"),
            cl_if: format!("vr{pid}c"),
            config: std::env::temp_dir().join(format!("vipa-run-{pid}.toml")),
            stats: std::env::temp_dir().join(format!("vipa-run-{pid}.json")),
        };
        // Leftovers of an earlier run with the same pid would make `add` fail.
        lab.remove();
        ip(&["netns", "add", &lab.fw])?;
        ip(&["netns", "add", &lab.cl])?;
        Ok(lab)
    }

    fn wire(&self) -> Result<(), String> {
        ip(&[
            "-n",
            &self.fw,
            "link",
            "add",
            &self.fw_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.cl_if,
            "netns",
            &self.cl,
        ])?;
        for (ns, dev, mac) in [
            (&self.fw, &self.fw_if, PORT_MAC),
            (&self.cl, &self.cl_if, CLIENT_MAC),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", dev, "address", &mac_str(mac)])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&[
            "-n",
            &self.cl,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            &self.cl_if,
        ])
    }

    fn remove(&self) {
        for ns in [&self.fw, &self.cl] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.stats);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The forwarder process; killed on drop if still running.
struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Forwarder {
    fn output(&mut self) -> (String, String) {
        let mut out = String::new();
        let mut err = String::new();
        if let Some(o) = self.0.stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(e) = self.0.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        (out, err)
    }
}

/// The first CPU this process may run on.
fn first_cpu() -> usize {
    core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().map(|c| c.id).min())
        .unwrap_or(0)
}

/// An ARP request from the client for the VIPA.
fn arp_request() -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT_IP.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&VIPA.octets());
    f.resize(60, 0);
    f
}

/// The sender MAC of an ARP reply to the client about the VIPA, with the
/// frame's source MAC.
fn arp_reply(f: &[u8]) -> Option<([u8; 6], [u8; 6])> {
    if f.len() < 42 || f[12..14] != ETH_P_ARP.to_be_bytes() || f[0..6] != CLIENT_MAC {
        return None;
    }
    let arp = &f[14..];
    let is_reply = arp[0..8] == [0, 1, 0x08, 0, 6, 4, 0, 2];
    if !is_reply || arp[14..18] != VIPA.octets() || arp[24..28] != CLIENT_IP.octets() {
        return None;
    }
    let mut sender = [0; 6];
    sender.copy_from_slice(&arp[8..14]);
    let mut src = [0; 6];
    src.copy_from_slice(&f[6..12]);
    Some((sender, src))
}

/// In namespace `ns`, sends ARP requests for the VIPA on `dev` (every
/// 300 ms) until a reply arrives or `timeout` passes; returns the reply's
/// sender and source MACs.
fn ask_for_vipa(ns: &str, dev: &str, timeout: Duration) -> Result<([u8; 6], [u8; 6]), String> {
    let ns = ns.to_owned();
    let dev = dev.to_owned();
    std::thread::spawn(move || ask_in_thread(&ns, &dev, timeout))
        .join()
        .map_err(|_| "the client thread panicked".to_owned())?
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Runs on a thread of its own: `setns` moves only the calling thread.
fn ask_in_thread(ns: &str, dev: &str, timeout: Duration) -> Result<([u8; 6], [u8; 6]), String> {
    let path = CString::new(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: `path` is a valid NUL-terminated string; open has no other
    // preconditions.
    let nsfd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if nsfd < 0 {
        return Err(os_err("open the client namespace"));
    }
    // SAFETY: `nsfd` is an open namespace file; setns changes only this
    // thread's network namespace.
    let r = unsafe { libc::setns(nsfd, libc::CLONE_NEWNET) };
    // SAFETY: `nsfd` is ours and no longer needed.
    unsafe { libc::close(nsfd) };
    if r != 0 {
        return Err(os_err("setns into the client namespace"));
    }
    let name = CString::new(dev).unwrap();
    // SAFETY: `name` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(os_err("if_nametoindex of the client veth"));
    }
    let proto = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(os_err("AF_PACKET socket"));
    }
    let result = exchange(fd, ifindex, proto, timeout);
    // SAFETY: `fd` is our socket, closed once.
    unsafe { libc::close(fd) };
    result
}

fn exchange(
    fd: i32,
    ifindex: u32,
    proto: u16,
    timeout: Duration,
) -> Result<([u8; 6], [u8; 6]), String> {
    // SAFETY: sockaddr_ll is plain data; all zeros is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    let sll_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a valid sockaddr_ll of the length given.
    let r = unsafe { libc::bind(fd, (&raw const sll).cast(), sll_len) };
    if r != 0 {
        return Err(os_err("bind the AF_PACKET socket"));
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `tv` is a valid timeval of the length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(os_err("SO_RCVTIMEO"));
    }
    let request = arp_request();
    let deadline = Instant::now() + timeout;
    let mut next_send = Instant::now();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            // SAFETY: `request` is valid for its length; `sll` as above.
            let n = unsafe {
                libc::sendto(
                    fd,
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&raw const sll).cast(),
                    sll_len,
                )
            };
            if n < 0 {
                return Err(os_err("send the ARP request"));
            }
            next_send = Instant::now() + Duration::from_millis(300);
        }
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 {
            if let Some(found) = arp_reply(&buf[..n as usize]) {
                return Ok(found);
            }
        }
    }
    Err(format!(
        "no ARP reply for {VIPA} within {} ms",
        timeout.as_millis()
    ))
}

/// Waits until `f` holds, the child exits, or `timeout` passes.
fn wait_for(fwd: &mut Forwarder, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        if let Ok(Some(_)) = fwd.0.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn answers_arp_for_the_vipa_and_stops_on_sigterm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for network namespaces and raw sockets");
        return;
    }
    let lab = match Lab::new() {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("skipped: cannot create network namespaces here ({e})");
            return;
        }
    };
    lab.wire().unwrap();
    std::fs::write(
        &lab.config,
        format!(
            r#"[node]
name = "run-test"
tunnel_source_v4 = "10.10.0.1"

[forwarder]
cores = [{cpu}]
flow_table_capacity = 1024
idle_sleep_us = 200

[[port]]
name = "p0"
device = "{dev}"
mac = "{mac}"
next_hop_mac = "02:00:00:00:aa:fe"

[[vipa]]
address = "{VIPA}"
services = ["tcp/80"]
target = [{{ address = "10.20.0.11" }}]
"#,
            cpu = first_cpu(),
            dev = lab.fw_if,
            mac = mac_str(PORT_MAC),
        ),
    )
    .unwrap();

    let child = Command::new("ip")
        .args(["netns", "exec", &lab.fw])
        .arg(env!("CARGO_BIN_EXE_vipa-forwarder"))
        .arg("run")
        .arg("--config")
        .arg(&lab.config)
        .arg("--stats")
        .arg(&lab.stats)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ip netns exec vipa-forwarder");
    let mut fwd = Forwarder(child);

    // The statistics file appears once every worker is up.
    let started = wait_for(&mut fwd, Duration::from_secs(5), || lab.stats.exists());
    if !started {
        let _ = fwd.0.kill();
        let _ = fwd.0.wait();
        let (out, err) = fwd.output();
        panic!("the forwarder did not start\nstdout:\n{out}\nstderr:\n{err}");
    }

    let answer = ask_for_vipa(&lab.cl, &lab.cl_if, Duration::from_secs(3));

    // SIGTERM: `ip netns exec` execs the forwarder, so the pid is its own.
    // SAFETY: kill(2) on our own child's pid.
    let r = unsafe { libc::kill(fwd.0.id() as i32, libc::SIGTERM) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(s) = fwd.0.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = fwd.output();
    let status = status.unwrap_or_else(|| {
        panic!("the forwarder did not stop within 3 s of SIGTERM\nstdout:\n{out}\nstderr:\n{err}")
    });

    // Shown with --nocapture.
    eprintln!("stdout:\n{out}\nstderr:\n{err}");
    let (sender, src) = answer.unwrap_or_else(|e| panic!("{e}\nstdout:\n{out}\nstderr:\n{err}"));
    assert_eq!(sender, PORT_MAC, "ARP reply carries the port's MAC");
    assert_eq!(src, PORT_MAC, "ARP reply comes from the port's MAC");
    assert!(
        status.success(),
        "exit status {status}\nstdout:\n{out}\nstderr:\n{err}"
    );

    // The start-up summary, then the counters.
    assert!(out.contains("backend afpacket"), "{out}");
    assert!(out.contains(&lab.fw_if), "{out}");
    assert!(out.contains("static 02:00:00:00:aa:fe"), "{out}");
    assert!(out.contains(&format!("vipa {VIPA}")), "{out}");
    let arp_line = out
        .lines()
        .find(|l| l.starts_with("arp_replies "))
        .unwrap_or_else(|| panic!("no arp_replies counter printed\n{out}"));
    let total: u64 = arp_line
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(total >= 1, "{arp_line}");

    // The statistics file has the final counters.
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lab.stats).unwrap()).unwrap();
    assert!(
        stats["total"]["arp_replies"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["workers"].as_array().unwrap().len(), 1, "{stats}");
    assert!(
        stats["workers"][0]["counters"]["rx_packets"]
            .as_u64()
            .unwrap()
            >= 1
    );
}
