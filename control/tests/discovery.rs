//! Discovery against real sockets.
//!
//! Each test runs on a thread of its own that moves into a new network
//! namespace (`unshare(CLONE_NEWNET)` acts on the calling thread only), with
//! `lo` up and the VIPAs 10.99.0.100 and fd00:99::100 on `lo`, as on a
//! target. The sockets, the netlink socket and any program the thread starts
//! live in that namespace, and it disappears with the thread: nothing to
//! clean up by name, even when a test fails. Where namespaces are not
//! allowed (not root), the tests run in the host's namespace with 127.0.0.1
//! and ::1 as the VIPAs; every assertion looks only at the ports the test
//! itself opened, so other programs' sockets do not matter.
//!
//! Kernel state can lag a system call a little: loopback segments are
//! processed in softirq context (ksoftirqd on a busy machine), and a socket
//! closed by one test thread lives on while a program another thread is
//! starting still holds a copy of the descriptor (until its exec closes it).
//! So the tests wait for a condition with a deadline rather than assume it
//! holds after one look, and print how long it took.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use vipa_control::agent::discovery::{
    inventory, Connection, Delta, Discovery, Inventory, Listener, Scope,
};
use vipa_proto::config::L4Protocol;

/// Where a test runs.
#[derive(Clone, Copy, Debug)]
struct Lab {
    vipa4: IpAddr,
    vipa6: IpAddr,
    /// In a namespace of its own (else: the host's, with loopback VIPAs).
    isolated: bool,
}

impl Lab {
    fn scope(&self) -> Scope {
        Scope::new([self.vipa4, self.vipa6])
    }
}

/// Runs `test` on a new thread in a new network namespace set up as a
/// target (or in the host's namespace when that is not allowed).
fn in_lab<T: Send + 'static>(test: impl FnOnce(Lab) -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let lab = enter_new_netns().unwrap_or_else(|why| {
            eprintln!(
                "no network namespace of its own ({why}); using the host's with loopback VIPAs"
            );
            Lab {
                vipa4: "127.0.0.1".parse().unwrap(),
                vipa6: "::1".parse().unwrap(),
                isolated: false,
            }
        });
        test(lab)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn enter_new_netns() -> Result<Lab, String> {
    // SAFETY: unshare(2) takes a flag word and touches no memory of ours;
    // CLONE_NEWNET moves only the calling thread into the new namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare: {}", std::io::Error::last_os_error()));
    }
    // Programs started from this thread inherit its namespace.
    for args in [
        &["link", "set", "lo", "up"][..],
        &["addr", "add", "10.99.0.100/32", "dev", "lo"],
        &[
            "-6",
            "addr",
            "add",
            "fd00:99::100/128",
            "dev",
            "lo",
            "nodad",
            // The local route is then the only one: a second, which the
            // kernel adds later, made connects fail now and then meanwhile.
            "noprefixroute",
        ],
    ] {
        let status = Command::new("ip")
            .args(args)
            .status()
            .map_err(|e| format!("ip: {e}"))?;
        if !status.success() {
            return Err(format!("ip {}: {status}", args.join(" ")));
        }
    }
    let lab = Lab {
        vipa4: "10.99.0.100".parse().unwrap(),
        vipa6: "fd00:99::100".parse().unwrap(),
        isolated: true,
    };
    // The kernel installs an IPv6 address's local route from a work queue,
    // even with nodad: wait until a TCP connection to each VIPA works.
    let deadline = Instant::now() + Duration::from_secs(5);
    for vipa in [lab.vipa4, lab.vipa6] {
        let reachable = || {
            let l = TcpListener::bind(SocketAddr::new(vipa, 0))?;
            TcpStream::connect(l.local_addr()?).map(drop)
        };
        while let Err(e) = reachable() {
            if Instant::now() > deadline {
                return Err(format!("{vipa} is not usable: {e}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(lab)
}

fn tcp_listener(ip: IpAddr) -> TcpListener {
    TcpListener::bind(SocketAddr::new(ip, 0)).unwrap()
}

/// A TCP listener on `[::]:0` with IPV6_V6ONLY set as asked.
fn ipv6_wildcard_listener(v6only: bool) -> TcpListener {
    let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
    s.set_only_v6(v6only).unwrap();
    s.bind(&"[::]:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(16).unwrap();
    s.into()
}

/// Connects to `listener` and accepts: (client socket, accepted socket).
fn connect(listener: &TcpListener, to: IpAddr) -> (TcpStream, TcpStream) {
    let port = listener.local_addr().unwrap().port();
    let to = SocketAddr::new(to, port);
    let client = TcpStream::connect(to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    let (accepted, _) = listener.accept().unwrap();
    (client, accepted)
}

fn port(l: &TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

fn tcp_service(ip: IpAddr, port: u16) -> Listener {
    Listener {
        protocol: L4Protocol::Tcp,
        service: SocketAddr::new(ip, port),
    }
}

fn connection_of(client: &TcpStream) -> Connection {
    Connection {
        service: client.peer_addr().unwrap(),
        client: client.local_addr().unwrap(),
    }
}

/// How long a test waits for the kernel's state to reach what it expects.
const DEADLINE: Duration = Duration::from_secs(3);

fn snapshot(scope: &Scope, ports: &[u16]) -> Inventory {
    inventory(scope).unwrap().restricted_to_ports(ports)
}

/// The inventory of `ports` under `scope`, once it equals `want` (before
/// [`DEADLINE`]; else the test fails showing the last one).
fn expect_inventory(scope: &Scope, ports: &[u16], want: &Inventory) {
    let started = Instant::now();
    loop {
        let got = snapshot(scope, ports);
        if &got == want {
            return;
        }
        if started.elapsed() > DEADLINE {
            assert_eq!(&got, want, "not reached within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn listeners_and_connections_on_both_families() {
    in_lab(|lab| {
        let l4 = tcp_listener(lab.vipa4);
        let l6 = tcp_listener(lab.vipa6);
        // Clients on this host: their sockets have the VIPA as local address
        // too, and must not be taken for connections.
        let (c4, _a4) = connect(&l4, lab.vipa4);
        let (c6, _a6) = connect(&l6, lab.vipa6);
        assert_eq!(c4.local_addr().unwrap().ip(), lab.vipa4);

        let inv = snapshot(&lab.scope(), &[port(&l4), port(&l6)]);
        assert_eq!(
            inv.listeners,
            [
                tcp_service(lab.vipa4, port(&l4)),
                tcp_service(lab.vipa6, port(&l6))
            ]
            .into()
        );
        assert_eq!(
            inv.connections,
            [connection_of(&c4), connection_of(&c6)].into()
        );
    });
}

#[test]
fn sockets_on_other_addresses_are_not_reported() {
    in_lab(|lab| {
        if !lab.isolated {
            eprintln!("needs a namespace of its own (loopback is the VIPA here)");
            return;
        }
        let lo4 = tcp_listener("127.0.0.1".parse().unwrap());
        let lo6 = tcp_listener("::1".parse().unwrap());
        let (_c, _a) = connect(&lo4, "127.0.0.1".parse().unwrap());
        let inv = inventory(&lab.scope()).unwrap();
        assert_eq!(inv, Inventory::default(), "{inv:?}");
        drop(lo6);
    });
}

#[test]
fn wildcard_listeners_serve_the_vipas_of_their_families() {
    in_lab(|lab| {
        let any4 = tcp_listener("0.0.0.0".parse().unwrap());
        let dual = ipv6_wildcard_listener(false);
        let v6only = ipv6_wildcard_listener(true);
        // An IPv4 client of the dual-stack listener: the kernel reports the
        // accepted socket as AF_INET6 with IPv4-mapped addresses.
        let (c, _a) = connect(&dual, lab.vipa4);

        let ports = [port(&any4), port(&dual), port(&v6only)];
        let inv = snapshot(&lab.scope(), &ports);
        assert_eq!(
            inv.listeners,
            [
                tcp_service(lab.vipa4, port(&any4)),
                tcp_service(lab.vipa4, port(&dual)),
                tcp_service(lab.vipa6, port(&dual)),
                tcp_service(lab.vipa6, port(&v6only)),
            ]
            .into()
        );
        let expected = Connection {
            service: SocketAddr::new(lab.vipa4, port(&dual)),
            client: c.local_addr().unwrap(),
        };
        assert!(expected.client.is_ipv4());
        assert_eq!(inv.connections, [expected].into());
    });
}

/// Polls, as the agent does, until a delta restricted to `ports`
/// satisfies `want`, before [`DEADLINE`]. Returns the number of polls and
/// the time it took.
fn poll_until(
    discovery: &mut Discovery,
    ports: &[u16],
    want: impl Fn(&Delta) -> bool,
) -> (usize, Duration) {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < DEADLINE {
        n += 1;
        let now = Instant::now();
        if let Some(due) = discovery.poll_timeout() {
            std::thread::sleep(due.saturating_duration_since(now));
        }
        if let Some(delta) = discovery.poll(Instant::now()).unwrap() {
            if want(&restrict_delta(&delta, ports)) {
                return (n, started.elapsed());
            }
        }
    }
    panic!(
        "the change was not seen in {n} polls ({DEADLINE:?}); inventory: {:?}; {:?}",
        discovery.inventory().restricted_to_ports(ports),
        discovery.stats()
    );
}

fn restrict_delta(d: &Delta, ports: &[u16]) -> Delta {
    let keep_l = |s: &std::collections::BTreeSet<Listener>| {
        s.iter()
            .filter(|l| ports.contains(&l.service.port()))
            .copied()
            .collect()
    };
    let keep_c = |s: &std::collections::BTreeSet<Connection>| {
        s.iter()
            .filter(|c| ports.contains(&c.service.port()))
            .copied()
            .collect()
    };
    Delta {
        listeners_added: keep_l(&d.listeners_added),
        listeners_removed: keep_l(&d.listeners_removed),
        connections_added: keep_c(&d.connections_added),
        connections_removed: keep_c(&d.connections_removed),
    }
}

#[test]
fn changes_are_reported_as_they_happen() {
    in_lab(|lab| {
        const INTERVAL: Duration = Duration::from_millis(10);
        let mut d = Discovery::new(lab.scope(), INTERVAL);
        d.poll(Instant::now()).unwrap();

        // Reserve a port, then listen on it.
        let listener = tcp_listener(lab.vipa4);
        let p = port(&listener);
        let service = tcp_service(lab.vipa4, p);
        let (polls, took) = poll_until(&mut d, &[p], |delta| {
            delta.listeners_added.contains(&service)
        });
        eprintln!("listener seen after {polls} poll(s), {took:?}");

        let (mut client, mut accepted) = connect(&listener, lab.vipa4);
        let conn = connection_of(&client);
        let (polls, took) = poll_until(&mut d, &[p], |delta| {
            delta.connections_added.contains(&conn)
        });
        eprintln!("connection seen after {polls} poll(s), {took:?}");

        // The client closes its side: the accepted socket is in CLOSE-WAIT,
        // still a connection (the application may still send).
        client.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(accepted.read(&mut buf).unwrap(), 0, "EOF after the FIN");
        std::thread::sleep(INTERVAL);
        let delta = d.poll(Instant::now()).unwrap().unwrap_or_default();
        assert!(restrict_delta(&delta, &[p]).is_empty(), "{delta:?}");
        assert!(d.inventory().connections.contains(&conn));

        // The application still answers, then closes: gone.
        accepted.write_all(b"bye").unwrap();
        drop(accepted);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye");
        drop(client);
        let (polls, took) = poll_until(&mut d, &[p], |delta| {
            delta.connections_removed.contains(&conn)
        });
        eprintln!("closed connection seen after {polls} poll(s), {took:?}");

        drop(listener);
        let (polls, took) = poll_until(&mut d, &[p], |delta| {
            delta.listeners_removed.contains(&service)
        });
        eprintln!("listener gone seen after {polls} poll(s), {took:?}");
        assert!(d.inventory().restricted_to_ports(&[p]).listeners.is_empty());
        assert_eq!(d.stats().failures, 0);
    });
}

#[test]
fn with_services_connections_outlive_a_restarting_application() {
    in_lab(|lab| {
        let listener = tcp_listener(lab.vipa6);
        let p = port(&listener);
        let (client, _accepted) = connect(&listener, lab.vipa6);
        drop(listener); // the application restarts; its connection stays

        let with_services = lab
            .scope()
            .with_services([format!("tcp/{p}").parse().unwrap()]);
        let only_the_connection = Inventory {
            listeners: Default::default(),
            connections: [connection_of(&client)].into(),
        };
        expect_inventory(&with_services, &[p], &only_the_connection);

        // Without services, a connection needs a listener on its port.
        expect_inventory(&lab.scope(), &[p], &Inventory::default());
    });
}

#[test]
fn bound_udp_sockets_are_udp_listeners() {
    in_lab(|lab| {
        let bound4 = UdpSocket::bind(SocketAddr::new(lab.vipa4, 0)).unwrap();
        let bound6 = UdpSocket::bind(SocketAddr::new(lab.vipa6, 0)).unwrap();
        // Connected: receives only from its peer, not a listener.
        let connected = UdpSocket::bind(SocketAddr::new(lab.vipa4, 0)).unwrap();
        connected.connect(bound4.local_addr().unwrap()).unwrap();

        let ports: Vec<u16> = [&bound4, &bound6, &connected]
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        let mut d = Discovery::new(lab.scope(), Duration::from_millis(10));
        let inv = d.take_inventory().unwrap().restricted_to_ports(&ports);
        if d.stats().udp_unavailable {
            eprintln!("this kernel has no udp_diag; UDP is not reported");
            return;
        }
        let udp = |s: &UdpSocket| Listener {
            protocol: L4Protocol::Udp,
            service: s.local_addr().unwrap(),
        };
        assert_eq!(inv.listeners, [udp(&bound4), udp(&bound6)].into());
        assert!(inv.connections.is_empty());

        // Leaving UDP out.
        assert_eq!(
            snapshot(&lab.scope().with_udp(false), &ports),
            Inventory::default()
        );
    });
}

#[test]
fn the_cli_prints_the_inventory_and_watches_changes() {
    in_lab(|lab| {
        let exe = env!("CARGO_BIN_EXE_vipa-agent");
        let listener = tcp_listener(lab.vipa4);
        let p = port(&listener);
        let (client, _accepted) = connect(&listener, lab.vipa4);

        // Once, as JSON.
        let out = Command::new(exe)
            .args(["sockets", "--vipa", &lab.vipa4.to_string(), "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let service = SocketAddr::new(lab.vipa4, p).to_string();
        assert!(
            v["listeners"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["service"] == service.as_str() && l["protocol"] == "tcp"),
            "{v}"
        );
        assert!(
            v["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["client"] == client.local_addr().unwrap().to_string().as_str()),
            "{v}"
        );

        // Once, as a table.
        let out = Command::new(exe)
            .args(["sockets", "--vipa", &lab.vipa4.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("  tcp {service}\n")), "{text}");

        // Watching: the first line is everything; closing the listener is
        // the next change.
        let mut child = Command::new(exe)
            .args([
                "sockets",
                "--vipa",
                &lab.vipa4.to_string(),
                "--service",
                &format!("tcp/{p}"),
                "--watch",
                "--json",
                "--interval-ms",
                "10",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(first["listeners_added"][0]["service"], service.as_str());
        assert_eq!(first["connections_added"].as_array().unwrap().len(), 1);
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        drop(listener);
        let next: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(next["listeners_removed"][0]["service"], service.as_str());
        assert_eq!(next["connections_removed"].as_array().unwrap().len(), 0);
        child.kill().unwrap();
        child.wait().unwrap();
    });
}

#[test]
fn the_cli_refuses_a_missing_vipa() {
    let out = Command::new(env!("CARGO_BIN_EXE_vipa-agent"))
        .args(["sockets"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--vipa"), "{err}");
}
