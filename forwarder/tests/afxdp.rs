//! The AF_XDP port on a real veth pair between two network namespaces.
//!
//! Needs root (BPF, XDP, namespaces) and `ip` (iproute2); without them each
//! test prints why it was skipped and returns. Every test builds its own pair
//! of namespaces, `vipa-xdpt-<pid>-<test>-a` / `-b`, with the veth ends `va`
//! (in a, 10.77.0.1/24, where the XDP program is attached) and `vb` (in b,
//! 10.77.0.2/24, an AF_PACKET port that plays client and target), and deletes
//! them when it ends, pass or fail. Nothing leaves the machine, and no XDP
//! program is attached outside these namespaces.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vipa_forwarder::buf::{HeapBuf, PacketBuffer};
use vipa_forwarder::port::afpacket::{AfPacketOptions, AfPacketPort};
use vipa_forwarder::port::afxdp::{
    AfXdpError, AfXdpInfo, AfXdpOptions, AfXdpPort, AfXdpQueue, XdpAddresses,
};
use vipa_forwarder::port::{Burst, PortQueue, MAX_BURST};
use vipa_forwarder::tables::Tables;
use vipa_forwarder::worker::Worker;
use vipa_proto::build::FrameBuilder;
use vipa_proto::config::Config;
use vipa_proto::wire::EthernetAddress;

const MAGIC: &[u8; 8] = b"VIPA-XDP";
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIPA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
/// The data plane's tunnel source: not the kernel's address, so the kernel's
/// own ARP exchanges stay with the kernel.
const TUNNEL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
/// Longest wait for frames that should arrive.
const WAIT: Duration = Duration::from_secs(3);
/// How long to listen for frames that must not arrive.
const QUIET: Duration = Duration::from_millis(200);

/// Runs `ip ARGS`, panicking with its output when it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces joined by a veth pair; deleted on drop.
struct Lab {
    a: String,
    b: String,
    a_mac: EthernetAddress,
    b_mac: EthernetAddress,
}

fn mac_of(ns: &str, ifname: &str) -> EthernetAddress {
    let out = ip(&["-n", ns, "-o", "link", "show", ifname]);
    let at = out.find("link/ether ").expect("an Ethernet address") + "link/ether ".len();
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(out[at..at + 17].split(':')) {
        *m = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    EthernetAddress(mac)
}

fn delete_namespaces(names: [&str; 2]) {
    for ns in names {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Lab {
    /// The lab for test `tag`, or `None` (with the reason printed) when this
    /// machine cannot run it.
    fn new(tag: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (XDP programs and AF_XDP sockets; the test creates network namespaces)");
            return None;
        }
        if !Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("skipped: `ip` (iproute2) is not installed");
            return None;
        }
        let pid = std::process::id();
        let a = format!("vipa-xdpt-{pid}-{tag}-a");
        let b = format!("vipa-xdpt-{pid}-{tag}-b");
        // Leftovers of an earlier run with the same pid would make `add` fail.
        delete_namespaces([&a, &b]);
        ip(&["netns", "add", &a]);
        // From here on a panic deletes what exists.
        let guard = NsGuard([a.clone(), b.clone()]);
        ip(&["netns", "add", &b]);
        ip(&[
            "link", "add", "va", "netns", &a, "type", "veth", "peer", "name", "vb", "netns", &b,
        ]);
        for (ns, ifname, addr) in [(&a, "va", A_IP), (&b, "vb", B_IP)] {
            // No IPv6: its router solicitations would only be noise.
            let _ = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .arg("net.ipv6.conf.all.disable_ipv6=1")
                .status();
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                ifname,
            ]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
        wait_up(&a, "va");
        wait_up(&b, "vb");
        std::mem::forget(guard);
        Some(Lab {
            a_mac: mac_of(&a, "va"),
            b_mac: mac_of(&b, "vb"),
            a,
            b,
        })
    }

    fn addresses() -> XdpAddresses {
        XdpAddresses {
            vipas: vec![IpAddr::V4(VIPA)],
            tunnel_sources: vec![IpAddr::V4(TUNNEL)],
            next_hops: vec![IpAddr::V4(B_IP)],
        }
    }

    /// Opens the AF_XDP port on `va` in namespace a.
    fn open_xdp(&self, addrs: XdpAddresses) -> Result<(Vec<AfXdpQueue>, AfXdpInfo), AfXdpError> {
        in_netns(&self.a, move || {
            AfXdpPort::open("va", &addrs, &AfXdpOptions::default())
        })
    }

    /// Opens an AF_PACKET port on `vb` in namespace b (promiscuous: it sees
    /// every frame the forwarder sends, whatever its destination MAC).
    fn open_peer(&self) -> AfPacketPort {
        in_netns(&self.b, || {
            AfPacketPort::open(
                "vb",
                &AfPacketOptions {
                    promiscuous: true,
                    ..Default::default()
                },
            )
        })
        .unwrap_or_else(|e| panic!("opening the peer port: {e}"))
        .remove(0)
    }

    /// Whether `va` has an XDP program attached (`ip link` shows `prog/xdp`).
    fn xdp_attached(&self) -> bool {
        ip(&["-n", &self.a, "-d", "link", "show", "va"]).contains("prog/xdp")
    }
}

/// Deletes the namespaces when a `Lab` could not be finished.
struct NsGuard([String; 2]);

impl Drop for NsGuard {
    fn drop(&mut self) {
        delete_namespaces([&self.0[0], &self.0[1]]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        delete_namespaces([&self.a, &self.b]);
    }
}

fn wait_up(ns: &str, ifname: &str) {
    let deadline = Instant::now() + WAIT;
    while !ip(&["-n", ns, "-o", "link", "show", ifname]).contains("state UP") {
        assert!(
            Instant::now() < deadline,
            "{ifname} in {ns} did not come up"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`, so the
/// test's own thread stays where it was. Sockets, and XDP attachments, keep
/// the namespace they were made in.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid namespace descriptor; it only changes this
        // (dedicated, short-lived) thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

fn udp_to(lab: &Lab, dst: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut payload = MAGIC.to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    FrameBuilder::new(lab.b_mac, lab.a_mac).udp(
        IpAddr::V4(B_IP),
        IpAddr::V4(dst),
        4000 + seq as u16,
        53,
        &payload,
    )
}

fn send(port: &mut AfPacketPort, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(MAX_BURST) {
        let mut burst: Burst<HeapBuf> = Burst::new();
        for f in chunk {
            burst.push(HeapBuf::from_frame(f));
        }
        port.tx_burst(&mut burst);
        assert!(burst.is_empty(), "the peer's transmit ring was full");
    }
}

/// Frames received on the AF_XDP queue within `wait` (until `want` arrived).
fn receive_xdp(q: &mut AfXdpQueue, want: usize, wait: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        let mut burst = Burst::new();
        if q.rx_burst(&mut burst, MAX_BURST) == 0 {
            thread::sleep(Duration::from_micros(200));
        }
        for b in burst.drain(..) {
            got.push(b.data().to_vec());
            q.free(b);
        }
    }
    got
}

/// Frames received on the peer matching `keep` within `wait` (until `want` arrived).
fn receive_peer(
    p: &mut AfPacketPort,
    want: usize,
    wait: Duration,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        let mut burst = Burst::new();
        if p.rx_burst(&mut burst, MAX_BURST) == 0 {
            thread::sleep(Duration::from_micros(200));
        }
        for b in burst.drain(..) {
            if keep(b.data()) {
                got.push(b.data().to_vec());
            }
            p.free(b);
        }
    }
    got
}

fn has_magic(f: &[u8]) -> bool {
    f.windows(MAGIC.len()).any(|w| w == MAGIC)
}

fn ping(ns: &str, addr: Ipv4Addr) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "1",
        ])
        .arg(addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn only_data_plane_frames_reach_the_socket() {
    let Some(lab) = Lab::new("steer") else { return };
    let (mut queues, info) = lab
        .open_xdp(Lab::addresses())
        .unwrap_or_else(|e| panic!("opening the AF_XDP port: {e}"));
    eprintln!(
        "XDP mode {}, {}",
        info.mode_name(),
        if info.zero_copy {
            "zero-copy"
        } else {
            "copy mode"
        }
    );
    assert!(lab.xdp_attached());
    let q = &mut queues[0];
    let mut peer = lab.open_peer();

    // To the VIPA: to the socket. To the namespace's own address: to the kernel.
    let to_vipa: Vec<Vec<u8>> = (0..100).map(|i| udp_to(&lab, VIPA, i)).collect();
    let to_host: Vec<Vec<u8>> = (100..110).map(|i| udp_to(&lab, A_IP, i)).collect();
    let arp = FrameBuilder::new(lab.b_mac, lab.a_mac);
    let arp_vipa = arp.arp_request(B_IP, VIPA);
    let arp_other = arp.arp_request(B_IP, Ipv4Addr::new(10, 77, 0, 55));
    // Replies to the data plane's own requests: to the tunnel source from a
    // next hop (to the socket); from anyone else (to the kernel).
    let as_reply = |mut f: Vec<u8>| {
        f[20..22].copy_from_slice(&[0, 2]);
        f[32..38].copy_from_slice(&lab.a_mac.0);
        f
    };
    let reply_next_hop = as_reply(arp.arp_request(B_IP, TUNNEL));
    let reply_other = as_reply(arp.arp_request(Ipv4Addr::new(10, 77, 0, 9), TUNNEL));
    send(&mut peer, &to_host);
    send(&mut peer, &to_vipa);
    send(
        &mut peer,
        &[
            arp_vipa.clone(),
            arp_other,
            reply_next_hop.clone(),
            reply_other,
        ],
    );
    let got = receive_xdp(q, 102, WAIT);
    let mut extra = receive_xdp(q, usize::MAX, QUIET);
    let got: Vec<Vec<u8>> = got.into_iter().chain(extra.drain(..)).collect();
    let magic: Vec<&Vec<u8>> = got.iter().filter(|f| has_magic(f)).collect();
    assert_eq!(magic.len(), 100, "every frame to the VIPA and nothing else");
    for (s, g) in to_vipa.iter().zip(&magic) {
        assert_eq!(s, *g, "frames arrive intact and in order");
    }
    let arps: Vec<&Vec<u8>> = got.iter().filter(|f| f[12..14] == [0x08, 0x06]).collect();
    assert_eq!(
        arps.len(),
        2,
        "only the ARP request for the VIPA and the reply from the next hop"
    );
    assert_eq!(arps[0][..arp_vipa.len()], arp_vipa[..]);
    assert_eq!(arps[1][..reply_next_hop.len()], reply_next_hop[..]);
    assert_eq!(got.len(), 102, "nothing else: {} frames", got.len());

    // Management traffic still works through the kernel.
    assert!(ping(&lab.b, A_IP), "ping from b to a's own address");
    assert!(ping(&lab.a, B_IP), "ping from a to b");

    // Transmit: frames sent from the socket arrive on the peer intact.
    let back: Vec<Vec<u8>> = (0..40).map(|i| udp_to(&lab, B_IP, 1000 + i)).collect();
    for chunk in back.chunks(MAX_BURST) {
        let mut burst = Burst::new();
        for f in chunk {
            let mut b = q.alloc().expect("a free frame");
            assert!(b.append(f.len()));
            b.data_mut().copy_from_slice(f);
            burst.push(b);
        }
        q.tx_burst(&mut burst);
        assert!(burst.is_empty(), "the transmit ring took the burst");
    }
    // UDP frames only: the peer also sees a's kernel's ICMP errors about
    // the earlier frames to its own address, which quote the magic.
    let got = receive_peer(&mut peer, back.len(), WAIT, |f| {
        f.len() > 23 && f[23] == 17 && has_magic(f)
    });
    assert_eq!(got.len(), back.len(), "every transmitted frame arrives");
    assert!(got == back, "transmitted frames arrive intact and in order");
    let st = q.stats();
    assert_eq!(st.rx_frames, 102);
    assert_eq!(st.tx_frames, 40);
    assert_eq!(st.foreign_buffers, 0);
}

#[test]
fn a_worker_forwards_vipa_traffic_and_answers_arp() {
    let Some(lab) = Lab::new("fwd") else { return };
    let text = format!(
        r#"
[node]
name = "xdp-test"
tunnel_source_v4 = "{TUNNEL}"

[[port]]
name = "p0"
backend = "afxdp"
device = "va"
mac = "{a}"
next_hop_mac = "{b}"

[[vipa]]
address = "{VIPA}"
services = ["tcp/80"]
  [[vipa.target]]
  address = "{B_IP}"
"#,
        a = lab.a_mac,
        b = lab.b_mac
    );
    let config = Config::from_str_with_path(&text, Path::new("tests/afxdp.rs")).expect("config");
    let tables = Arc::new(Tables::from_config(&config).expect("tables"));
    let addrs = XdpAddresses::from_tables(&tables, 0);
    assert_eq!(addrs.vipas, vec![IpAddr::V4(VIPA)]);
    let (mut queues, _) = lab
        .open_xdp(addrs)
        .unwrap_or_else(|e| panic!("opening the AF_XDP port: {e}"));
    let mut worker = Worker::new(vec![(0, queues.remove(0))], tables);
    let mut peer = lab.open_peer();

    let client = FrameBuilder::new(lab.b_mac, lab.a_mac);
    let syns: Vec<Vec<u8>> = (0..20u16)
        .map(|i| {
            client.tcp(
                IpAddr::V4(B_IP),
                IpAddr::V4(VIPA),
                40000 + i,
                80,
                vipa_proto::wire::tcp::flags::SYN,
                MAGIC,
            )
        })
        .collect();
    send(&mut peer, &syns);
    send(&mut peer, &[client.arp_request(B_IP, VIPA)]);

    let deadline = Instant::now() + WAIT;
    let mut gre = Vec::new();
    let mut arp_replies = 0;
    while (gre.len() < syns.len() || arp_replies == 0) && Instant::now() < deadline {
        worker.poll(1);
        let mut burst = Burst::new();
        peer.rx_burst(&mut burst, MAX_BURST);
        for b in burst.drain(..) {
            let f = b.data();
            // Outer IPv4, protocol 47 (GRE), from the tunnel source to the target.
            if f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 47 {
                assert_eq!(f[26..30], TUNNEL.octets());
                assert_eq!(f[30..34], B_IP.octets());
                assert_eq!(f[..6], lab.b_mac.0, "to the next hop's MAC");
                gre.push(f.to_vec());
            }
            // ARP reply (operation 2) from the port's MAC for the VIPA (the
            // namespace's kernel answers for its own address too).
            if f.len() >= 42
                && f[12..14] == [0x08, 0x06]
                && f[20..22] == [0, 2]
                && f[28..32] == VIPA.octets()
            {
                assert_eq!(f[22..28], lab.a_mac.0);
                assert_eq!(f[28..32], VIPA.octets());
                arp_replies += 1;
            }
            peer.free(b);
        }
        thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(gre.len(), syns.len(), "every SYN forwarded in GRE");
    for (g, s) in gre.iter().zip(&syns) {
        // 14 outer Ethernet + 20 outer IPv4 + 4 GRE, then the inner IP packet.
        assert_eq!(g[38..], s[14..], "the inner packet is what arrived");
    }
    assert_eq!(arp_replies, 1);
    let c = worker.counters();
    use vipa_forwarder::counters::Counter;
    assert_eq!(c.get(Counter::Forwarded), syns.len() as u64);
    assert_eq!(c.get(Counter::ArpReplies), 1);
}

/// A transmit burst that does not fit in xdpilone's cached view of the ring
/// (a short burst before it used part of that view) still goes whole: the
/// port reserves again instead of dropping the rest as "ring full".
#[test]
fn bursts_go_whole_whatever_came_before() {
    let Some(lab) = Lab::new("txres") else { return };
    let addrs = Lab::addresses();
    let opts = AfXdpOptions {
        ring_size: 64,
        frames: 512,
        ..AfXdpOptions::default()
    };
    let (mut queues, _) = in_netns(&lab.a, move || AfXdpPort::open("va", &addrs, &opts))
        .unwrap_or_else(|e| panic!("opening the AF_XDP port: {e}"));
    let q = &mut queues[0];
    let frame = udp_to(&lab, B_IP, 1);
    let mut total = 0u64;
    for n in [10, MAX_BURST, 33, MAX_BURST, 1, MAX_BURST, MAX_BURST] {
        let mut burst = Burst::new();
        for _ in 0..n {
            let mut b = q.alloc().expect("a free frame");
            assert!(b.append(frame.len()));
            b.data_mut().copy_from_slice(&frame);
            burst.push(b);
        }
        q.tx_burst(&mut burst);
        assert!(
            burst.is_empty(),
            "{} of a burst of {n} after {total} frames were refused",
            burst.len()
        );
        total += n as u64;
        // Completions come back when the peer has the frames.
        let deadline = Instant::now() + WAIT;
        while q.free_frames() < 512 - MAX_BURST * 2 {
            assert!(
                Instant::now() < deadline,
                "transmitted frames never completed"
            );
            let mut rx = Burst::new();
            q.rx_burst(&mut rx, MAX_BURST);
            for b in rx.drain(..) {
                q.free(b);
            }
        }
    }
    let st = q.stats();
    assert_eq!(st.tx_frames, total);
    assert_eq!(st.tx_kick_errors, 0);
    assert_eq!(st.kernel_tx_invalid_descs, 0);
}

#[test]
fn link_state_follows_the_interface() {
    let Some(lab) = Lab::new("link") else { return };
    let (queues, _) = lab
        .open_xdp(Lab::addresses())
        .unwrap_or_else(|e| panic!("opening the AF_XDP port: {e}"));
    let q = &queues[0];
    assert!(q.link_up());
    ip(&["-n", &lab.a, "link", "set", "va", "down"]);
    assert!(!q.link_up(), "down after `ip link set down`");
    ip(&["-n", &lab.a, "link", "set", "va", "up"]);
    let deadline = Instant::now() + WAIT;
    while !q.link_up() {
        assert!(Instant::now() < deadline, "link did not come back");
        thread::sleep(Duration::from_millis(10));
    }
    // The peer going down takes the carrier away (the kernel updates the
    // operational state asynchronously).
    ip(&["-n", &lab.b, "link", "set", "vb", "down"]);
    let deadline = Instant::now() + WAIT;
    while q.link_up() {
        assert!(Instant::now() < deadline, "still up with the peer down");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_program_is_refused_and_dropping_detaches() {
    let Some(lab) = Lab::new("busy") else { return };
    let (queues, _) = lab
        .open_xdp(Lab::addresses())
        .unwrap_or_else(|e| panic!("opening the AF_XDP port: {e}"));
    assert!(lab.xdp_attached());
    let err = lab
        .open_xdp(Lab::addresses())
        .expect_err("a second program on the same interface");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            AfXdpError::AttachBusy { .. } | AfXdpError::Socket { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains("va"), "{msg}");
    drop(queues);
    assert!(
        !lab.xdp_attached(),
        "the program is detached with the last queue"
    );
    let (again, _) = lab
        .open_xdp(Lab::addresses())
        .unwrap_or_else(|e| panic!("opening the AF_XDP port again: {e}"));
    assert!(lab.xdp_attached());
    drop(again);
}

#[test]
fn a_missing_interface_is_named() {
    let Some(lab) = Lab::new("missing") else {
        return;
    };
    let err = in_netns(&lab.a, || {
        AfXdpPort::open("vipa-nope0", &Lab::addresses(), &AfXdpOptions::default())
    })
    .expect_err("no such interface");
    assert!(matches!(err, AfXdpError::InterfaceMissing { .. }), "{err}");
    assert!(err.to_string().contains("ip link"));
}
