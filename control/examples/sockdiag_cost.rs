//! What one discovery inventory costs with N TCP connections to a VIPA.
//!
//! `cargo run --release -p vipa-control --example sockdiag_cost -- 0 1000 10000`
//!
//! Runs in a network namespace of its own when allowed (root), with the VIPA
//! 10.99.0.100 on `lo`; otherwise in the host's with 127.0.0.1 as the VIPA.
//! For each N it opens N connections from this host to a listener on the
//! VIPA (2N sockets: the client ends are dumped and filtered out too), then
//! times 200 inventories and prints the sockets dumped, the median and 99th
//! percentile wall time, the CPU time (user, system) per inventory, and the
//! median wall time of the listener dumps alone. Raises the open-file limit (to 200 000 when allowed).

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use vipa_control::agent::discovery::{Discovery, Scope, DEFAULT_INTERVAL};

const ROUNDS: usize = 200;

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are connection counts"))
        .collect();
    let counts = if counts.is_empty() {
        vec![0, 1_000, 10_000]
    } else {
        counts
    };
    raise_fd_limit();
    let vipa = enter_new_netns().unwrap_or_else(|why| {
        eprintln!("host namespace, VIPA 127.0.0.1 ({why})");
        "127.0.0.1".parse().unwrap()
    });
    let scope = Scope::new([vipa]).with_udp(false);
    println!("connections  sockets dumped  reported  wall median  wall p99   CPU user   CPU system  listener dumps (median)");
    for n in counts {
        let listener = TcpListener::bind(SocketAddr::new(vipa, 0)).unwrap();
        let mut held = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            held.push(client);
            held.push(accepted);
        }
        let mut discovery = Discovery::new(scope.clone(), DEFAULT_INTERVAL);
        let mut times: Vec<Duration> = Vec::with_capacity(ROUNDS);
        let mut listener_dumps: Vec<Duration> = Vec::with_capacity(ROUNDS);
        let mut reported = 0;
        let (user0, system0) = cpu_times();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let inventory = discovery.take_inventory().unwrap();
            times.push(t.elapsed());
            listener_dumps.push(discovery.stats().last_listener_dump);
            reported = inventory.connections.len();
        }
        let (user1, system1) = cpu_times();
        times.sort();
        listener_dumps.sort();
        let stats = discovery.stats();
        println!(
            "{n:>11}  {:>14}  {reported:>8}  {:>11.3?}  {:>9.3?}  {:>9.3?}  {:>10.3?}  {:>9.3?}",
            stats.last_listener_sockets + stats.last_connection_sockets,
            times[ROUNDS / 2],
            times[ROUNDS * 99 / 100],
            (user1 - user0) / ROUNDS as u32,
            (system1 - system0) / ROUNDS as u32,
            listener_dumps[ROUNDS / 2],
        );
    }
}

/// This process's user and system CPU time so far.
fn cpu_times() -> (Duration, Duration) {
    // SAFETY: `rusage` is plain old data; all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` into `usage`, valid for the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let d = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
    };
    (d(usage.ru_utime), d(usage.ru_stime))
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `lim`, which is valid and
    // lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    // Root may raise the hard limit too; otherwise the soft one to it.
    let wanted = libc::rlimit {
        rlim_cur: lim.rlim_max.max(200_000),
        rlim_max: lim.rlim_max.max(200_000),
    };
    // SAFETY: setrlimit only reads the `rlimit` it is given, valid for the
    // call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

fn enter_new_netns() -> Result<IpAddr, String> {
    // SAFETY: unshare(2) takes a flag word and touches no memory of ours.
    // This program is single-threaded, so the whole process moves.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "10.99.0.100/32", "dev", "lo"],
    ] {
        let ok = Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("ip {} failed", args.join(" ")));
        }
    }
    Ok("10.99.0.100".parse().unwrap())
}
