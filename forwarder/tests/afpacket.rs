//! The AF_PACKET port on a real veth pair between two network namespaces.
//!
//! Needs root (packet sockets, namespaces) and `ip` (iproute2); without them
//! each test prints why it was skipped and returns. Every test builds its own
//! pair of namespaces, `vipa-afp-<pid>-<test>-a` / `-b`, with the veth ends
//! `va` (in a) and `vb` (in b), and deletes them when it ends, pass or fail.
//! Nothing leaves the machine.
#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use vipa_forwarder::buf::{HeapBuf, PacketBuffer};
use vipa_forwarder::port::afpacket::{AfPacketOptions, AfPacketPort};
use vipa_forwarder::port::{Burst, PortQueue, MAX_BURST};

const MAGIC: &[u8; 8] = b"VIPA-AFP";
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];
/// Longest wait for frames that should arrive.
const WAIT: Duration = Duration::from_secs(2);
/// How long to listen for frames that must not arrive (the receive ring's
/// block timeout is 1 ms).
const QUIET: Duration = Duration::from_millis(100);

/// Runs `ip ARGS`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair; deleted on drop.
struct Lab {
    a: String,
    b: String,
}

impl Lab {
    /// The lab for test `tag`, or `None` (with the reason printed) when this
    /// machine cannot run it.
    fn new(tag: &str) -> Option<Lab> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (packet sockets need CAP_NET_RAW; the test creates network namespaces)");
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
        let lab = Lab {
            a: format!("vipa-afp-{pid}-{tag}-a"),
            b: format!("vipa-afp-{pid}-{tag}-b"),
        };
        // Leftovers of an earlier run with the same pid would make `add` fail.
        lab.delete();
        ip(&["netns", "add", &lab.a]);
        ip(&["netns", "add", &lab.b]);
        ip(&[
            "link", "add", "va", "netns", &lab.a, "type", "veth", "peer", "name", "vb", "netns",
            &lab.b,
        ]);
        ip(&["-n", &lab.a, "link", "set", "va", "up"]);
        ip(&["-n", &lab.b, "link", "set", "vb", "up"]);
        // The kernel finishes bringing a link up asynchronously (operational
        // state, queueing discipline); wait for it.
        let deadline = Instant::now() + WAIT;
        for (ns, ifname) in [(&lab.a, "va"), (&lab.b, "vb")] {
            loop {
                let out = Command::new("ip")
                    .args(["-n", ns, "-o", "link", "show", ifname])
                    .output()
                    .expect("running ip");
                if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{ifname} in {ns} did not come up"
                );
                thread::sleep(Duration::from_millis(5));
            }
        }
        Some(lab)
    }

    fn delete(&self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Opens a port on `ifname` inside namespace `ns`.
    fn open(&self, ns: &str, ifname: &str, opts: AfPacketOptions) -> Vec<AfPacketPort> {
        let ifname = ifname.to_string();
        in_netns(ns, move || AfPacketPort::open(&ifname, &opts))
            .unwrap_or_else(|e| panic!("opening the port: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`, so the
/// test's own thread stays where it was. Sockets keep the namespace they were
/// created in, so what `f` opens can be used from any thread afterwards.
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

/// A frame of `len` bytes with a local EtherType, the magic and `seq`;
/// optionally 802.1Q-tagged.
fn raw_frame(seq: u32, len: usize, vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    if let Some(tci) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    let mut i = 0u32;
    while f.len() < len {
        f.push((seq.wrapping_mul(31).wrapping_add(i)) as u8);
        i += 1;
    }
    f
}

/// An IPv4/UDP frame whose addresses and ports vary with `seq` (so the
/// fanout hash spreads them), carrying the magic and `seq`.
fn udp_frame(seq: u32) -> Vec<u8> {
    let payload_len = MAGIC.len() + 4;
    let total = 20 + 8 + payload_len;
    let mut f = Vec::new();
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&[0x08, 0x00]);
    let src = [10, 1, (seq >> 8) as u8, seq as u8];
    let dst = [10, 99, 0, 1];
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    iph[8] = 64;
    iph[9] = 17;
    iph[12..16].copy_from_slice(&src);
    iph[16..20].copy_from_slice(&dst);
    let mut sum: u32 = iph
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    iph[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&(1024 + (seq % 50_000) as u16).to_be_bytes());
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    f
}

/// The sequence number of one of our test frames; `None` for other traffic
/// (the namespaces' kernels send IPv6 neighbour discovery and the like).
fn seq_of(frame: &[u8]) -> Option<u32> {
    let at = frame.windows(MAGIC.len()).position(|w| w == MAGIC)? + MAGIC.len();
    Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
}

/// Asserts that `got` is `sent`, frame for frame, in order and intact.
/// Frames may be missing only as many as the receiving kernel reports it
/// dropped for a full receive ring (`ring_drops`): a test thread descheduled
/// on a busy machine is not a fault of the port. On a mismatch, says which
/// frames (by sequence number) are missing, extra or changed.
fn assert_frames(sent: &[Vec<u8>], got: &[Vec<u8>], ring_drops: u64, what: &str) {
    // `got` must be a subsequence of `sent`.
    let mut it = sent.iter();
    let in_order = got.iter().all(|g| it.any(|f| f == g));
    let missing = sent.len().saturating_sub(got.len()) as u64;
    if in_order && missing <= ring_drops {
        if missing != 0 {
            eprintln!("{what}: {missing} frames lost to a full receive ring (kernel-reported: {ring_drops})");
        }
        return;
    }
    let seqs = |v: &[Vec<u8>]| -> Vec<(Option<u32>, usize)> {
        v.iter().map(|f| (seq_of(f), f.len())).collect()
    };
    let changed: Vec<Option<u32>> = sent
        .iter()
        .filter(|f| got.iter().any(|g| seq_of(g) == seq_of(f) && g != *f))
        .map(|f| seq_of(f))
        .collect();
    panic!(
        "{what}: sent {} frames, got {} (ring drops {ring_drops}); changed: {changed:?}\n sent (seq, len): {:?}\n  got (seq, len): {:?}",
        sent.len(),
        got.len(),
        seqs(sent),
        seqs(got)
    );
}

/// Transmits every frame, retrying what the ring could not take yet.
fn send_all(port: &mut AfPacketPort, frames: &[Vec<u8>]) {
    let deadline = Instant::now() + WAIT;
    for chunk in frames.chunks(MAX_BURST) {
        let mut burst: Burst<HeapBuf> = Burst::new();
        for f in chunk {
            let mut b = port.alloc().expect("a buffer");
            assert!(b.append(f.len()));
            b.data_mut().copy_from_slice(f);
            burst.push(b);
        }
        while !burst.is_empty() {
            port.tx_burst(&mut burst);
            assert!(Instant::now() < deadline, "transmit ring stayed full");
            if !burst.is_empty() {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Receives on all `ports` until `want` test frames arrived (then `linger`
/// longer, to catch duplicates) or `wait` ends; returns (queue, frame).
fn receive(
    ports: &mut [&mut AfPacketPort],
    want: usize,
    wait: Duration,
    linger: Duration,
) -> Vec<(usize, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    let mut done_at: Option<Instant> = None;
    loop {
        let mut any = false;
        for (q, port) in ports.iter_mut().enumerate() {
            let mut burst = Burst::new();
            if port.rx_burst(&mut burst, MAX_BURST) > 0 {
                any = true;
            }
            for b in burst.drain(..) {
                if seq_of(b.data()).is_some() {
                    got.push((q, b.data().to_vec()));
                }
                port.free(b);
            }
        }
        let now = Instant::now();
        if got.len() >= want && done_at.is_none() {
            done_at = Some(now + linger);
        }
        if now >= deadline || done_at.is_some_and(|t| now >= t) {
            return got;
        }
        if !any {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Frames received on `port` (test frames only), with the ring drops the
/// kernel reported meanwhile.
fn receive_one(port: &mut AfPacketPort, want: usize, linger: Duration) -> (Vec<Vec<u8>>, u64) {
    let before = port.stats().rx_ring_drops;
    let got = receive(&mut [&mut *port], want, WAIT, linger);
    let drops = port.stats().rx_ring_drops - before;
    (got.into_iter().map(|(_, f)| f).collect(), drops)
}

/// Throws away whatever `port` has received so far.
fn drain(port: &mut AfPacketPort) {
    let mut burst = Burst::new();
    while port.rx_burst(&mut burst, MAX_BURST) > 0 {
        for b in burst.drain(..) {
            port.free(b);
        }
    }
}

#[test]
fn frames_arrive_intact_both_ways() {
    let Some(lab) = Lab::new("io") else { return };
    let mut a = lab.open(&lab.a, "va", AfPacketOptions::default()).remove(0);
    let mut b = lab
        .open(
            &lab.b,
            "vb",
            AfPacketOptions {
                promiscuous: true,
                ..Default::default()
            },
        )
        .remove(0);
    assert!(
        a.qdisc_bypass(),
        "PACKET_QDISC_BYPASS expected on this kernel"
    );

    // b → a: sizes from the minimum to a full 1500-byte MTU frame, and one
    // 802.1Q-tagged frame (the kernel strips the tag; the port puts it back).
    let mut frames: Vec<Vec<u8>> = [60, 61, 64, 100, 333, 512, 1000, 1513, 1514]
        .iter()
        .enumerate()
        .map(|(i, &len)| raw_frame(i as u32, len, None))
        .collect();
    frames.push(raw_frame(100, 200, Some(0x2064)));
    send_all(&mut b, &frames);
    let (got, drops) = receive_one(&mut a, frames.len(), Duration::from_millis(20));
    assert_frames(&frames, &got, drops, "b → a");

    // a → b, including a buffer grown at the front as encapsulation does.
    let mut frames: Vec<Vec<u8>> = (0..150u32)
        .map(|i| raw_frame(1000 + i, 60 + (i as usize * 97) % 1455, None))
        .collect();
    send_all(&mut a, &frames);
    let mut burst = Burst::new();
    let mut buf = a.alloc().expect("a buffer");
    let inner = raw_frame(5000, 300, None);
    assert!(buf.append(inner.len()));
    buf.data_mut().copy_from_slice(&inner);
    assert!(buf.prepend(14));
    let mut outer = inner[..14].to_vec();
    outer.extend_from_slice(&inner);
    buf.data_mut().copy_from_slice(&outer);
    burst.push(buf);
    a.tx_burst(&mut burst);
    assert!(burst.is_empty(), "one frame fits an empty ring");
    frames.push(outer);

    let (got, drops) = receive_one(&mut b, frames.len(), Duration::from_millis(20));
    assert_frames(&frames, &got, drops, "a → b");
    assert_eq!(a.stats().tx_frames, frames.len() as u64);

    // Our own transmissions never come back to us.
    let back = receive(&mut [&mut a], 1, QUIET, Duration::ZERO);
    assert!(
        back.is_empty(),
        "va received {} of its own frames",
        back.len()
    );
}

#[test]
fn fanout_delivers_each_frame_to_exactly_one_queue() {
    let Some(lab) = Lab::new("fan") else { return };
    let mut queues = lab.open(
        &lab.a,
        "va",
        AfPacketOptions {
            queues: 2,
            ..Default::default()
        },
    );
    assert_eq!(queues.len(), 2);
    assert!(queues[0].fanout_group().is_some());
    assert_eq!(queues[0].fanout_group(), queues[1].fanout_group());
    let mut b = lab.open(&lab.b, "vb", AfPacketOptions::default()).remove(0);

    let n = 400u32;
    let frames: Vec<Vec<u8>> = (0..n).map(udp_frame).collect();
    let drops_before: u64 = queues.iter_mut().map(|q| q.stats().rx_ring_drops).sum();
    send_all(&mut b, &frames);
    let (q0, rest) = queues.split_at_mut(1);
    let got = receive(
        &mut [&mut q0[0], &mut rest[0]],
        n as usize,
        WAIT,
        Duration::from_millis(50),
    );
    let drops = queues
        .iter_mut()
        .map(|q| q.stats().rx_ring_drops)
        .sum::<u64>()
        - drops_before;

    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut per_queue = [0usize; 2];
    for (q, f) in &got {
        let seq = seq_of(f).unwrap();
        *seen.entry(seq).or_default() += 1;
        per_queue[*q] += 1;
        assert!(f == &frames[seq as usize], "frame {seq} changed");
    }
    let dup: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
    assert!(dup.is_empty(), "frames received more than once: {dup:?}");
    let missing: Vec<u32> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.len() as u64 <= drops,
        "the two queues together missed {} of {n} frames, ring drops {drops}: {missing:?}",
        missing.len()
    );
    assert!(
        per_queue[0] > 0 && per_queue[1] > 0,
        "the hash spreads {n} flows over both queues: {per_queue:?}"
    );
}

#[test]
fn frames_the_host_sends_are_not_received() {
    let Some(lab) = Lab::new("out") else { return };
    let mut a = lab.open(&lab.a, "va", AfPacketOptions::default()).remove(0);
    // Another sender on va that goes through the qdisc, so the kernel shows
    // its frames to every tap on va as outgoing — as it does the host's own.
    let mut other = lab
        .open(
            &lab.a,
            "va",
            AfPacketOptions {
                qdisc_bypass: false,
                ..Default::default()
            },
        )
        .remove(0);
    let mut b = lab.open(&lab.b, "vb", AfPacketOptions::default()).remove(0);

    let frames: Vec<Vec<u8>> = (0..50).map(|i| raw_frame(i, 100, None)).collect();
    let outgoing_before = a.stats().rx_outgoing;
    send_all(&mut other, &frames);
    let (at_b, drops) = receive_one(&mut b, frames.len(), Duration::ZERO);
    assert_frames(&frames, &at_b, drops, "the frames did go out of va");
    let at_a = receive(&mut [&mut a], 1, QUIET, Duration::ZERO);
    assert!(
        at_a.is_empty(),
        "va's port received {} outgoing frames",
        at_a.len()
    );
    let st = a.stats();
    assert!(
        st.rx_outgoing - outgoing_before + st.rx_ring_drops >= frames.len() as u64,
        "the outgoing frames were seen and skipped: {st:?}"
    );
}

#[test]
fn link_state_follows_the_peer() {
    let Some(lab) = Lab::new("link") else { return };
    let a = lab.open(&lab.a, "va", AfPacketOptions::default()).remove(0);
    let wait_for = |want: bool| {
        let deadline = Instant::now() + WAIT;
        while a.link_up() != want {
            assert!(Instant::now() < deadline, "link_up() stayed {}", !want);
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(true);
    ip(&["-n", &lab.b, "link", "set", "vb", "down"]);
    wait_for(false);
    ip(&["-n", &lab.b, "link", "set", "vb", "up"]);
    wait_for(true);
}

#[test]
fn errors_name_the_interface_and_the_remedy() {
    let Some(lab) = Lab::new("err") else { return };
    let e = in_netns(&lab.a, || {
        AfPacketPort::open("vb", &AfPacketOptions::default()).map(|_| ())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("`vb`") && e.contains("ip link"), "{e}");
}

#[test]
fn small_rings_wrap_around_and_fill_up() {
    let Some(lab) = Lab::new("wrap") else { return };
    // Sixteen 16 KiB receive blocks; one 64 KiB transmit block of 32 slots.
    let small = AfPacketOptions {
        rx_block_size: 16 * 1024,
        rx_block_count: 16,
        tx_frame_count: 32,
        ..Default::default()
    };
    let mut a = lab.open(&lab.a, "va", small).remove(0);
    let mut b = lab.open(&lab.b, "vb", AfPacketOptions::default()).remove(0);

    // A full transmit ring leaves the rest of the burst to the caller.
    let mut burst: Burst<HeapBuf> = Burst::new();
    for i in 0..MAX_BURST as u32 {
        burst.push(HeapBuf::from_frame(&raw_frame(i, 100, None)));
    }
    a.tx_burst(&mut burst);
    assert_eq!(burst.len(), MAX_BURST - 32, "32 slots, then full");
    assert_eq!(
        seq_of(burst[0].data()),
        Some(32),
        "unsent frames stay in order"
    );
    drop(burst);
    let (got, drops) = receive_one(&mut b, 32, Duration::from_millis(5));
    assert_eq!(got.len() as u64 + drops, 32, "frames of the full ring");

    // About 1 MB each way through rings of 256 KiB (rx) and 64 KiB (tx).
    let mut received = 0;
    for round in 0..30u32 {
        drain(&mut a);
        let to_a: Vec<Vec<u8>> = (0..32)
            .map(|i| raw_frame(round * 100 + i, 1000, None))
            .collect();
        send_all(&mut b, &to_a);
        let (got, drops) = receive_one(&mut a, to_a.len(), Duration::ZERO);
        assert_frames(&to_a, &got, drops, &format!("round {round}, b → a"));
        received += got.len();

        let to_b: Vec<Vec<u8>> = (0..MAX_BURST as u32)
            .map(|i| raw_frame(round * 100 + i, 1000, None))
            .collect();
        send_all(&mut a, &to_b);
        let (got, drops) = receive_one(&mut b, to_b.len(), Duration::ZERO);
        assert_frames(&to_b, &got, drops, &format!("round {round}, a → b"));
    }
    // The receive ring went round many times (256 KiB, ~1 MB through it).
    assert!(
        received >= 30 * 32 / 2,
        "{received} frames; {:?}",
        a.stats()
    );
}
