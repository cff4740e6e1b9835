//! The shipped example parses to what it says, and defaults apply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vipa_proto::config::{
    Backend, Config, Distribution, DpdkConfig, ForwarderConfig, L4Protocol, MacAddr, NotVipa,
    Service, TargetConfig,
};
use vipa_proto::maglev::MaglevError;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vipa.toml")
}

fn svc(protocol: L4Protocol, port: u16) -> Service {
    Service { protocol, port }
}

#[test]
fn example_parses() {
    let c = Config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.node.name, "fwd-a");
    assert_eq!(c.node.tunnel_source_v4, Some(Ipv4Addr::new(10, 10, 0, 1)));
    assert_eq!(
        c.node.tunnel_source_v6,
        Some("fd00:10::1".parse::<Ipv6Addr>().unwrap())
    );
    assert_eq!(c.forwarder, ForwarderConfig::default());

    assert_eq!(c.ports.len(), 1);
    let p = &c.ports[0];
    assert_eq!(p.name, "p0");
    assert_eq!(p.mac, MacAddr([0x02, 0, 0, 0, 0x0a, 0x01]));
    assert_eq!(p.mtu, 1500);
    assert_eq!(p.next_hop_mac, Some(MacAddr([0x02, 0, 0, 0, 0x0a, 0xfe])));
    assert_eq!(p.backend, Backend::AfPacket);
    assert_eq!(p.device, "vipa-p0");
    assert_eq!(p.queues, 1);
    assert_eq!(p.gateway, None);
    assert_eq!(c.dpdk, DpdkConfig::default());

    assert_eq!(c.vipas.len(), 2);
    let services = vec![
        svc(L4Protocol::Tcp, 80),
        svc(L4Protocol::Tcp, 443),
        svc(L4Protocol::Udp, 53),
    ];
    let v4 = &c.vipas[0];
    assert_eq!(v4.address, IpAddr::from([192, 0, 2, 10]));
    assert_eq!(v4.services, services);
    assert_eq!(v4.distribution, Distribution::Maglev);
    assert_eq!(v4.table_size, 65537);
    assert_eq!(
        v4.targets,
        vec![
            TargetConfig {
                address: IpAddr::from([10, 20, 0, 11]),
                weight: 1
            },
            TargetConfig {
                address: IpAddr::from([10, 20, 0, 12]),
                weight: 2
            },
            TargetConfig {
                address: IpAddr::from([10, 20, 0, 13]),
                weight: 1
            },
        ]
    );
    let v6 = c.vipa("2001:db8::10".parse().unwrap()).unwrap();
    assert_eq!(v6.services, services);
    assert_eq!(v6.table_size, 65537);
    let addrs: Vec<String> = v6.targets.iter().map(|t| t.maglev_key()).collect();
    assert_eq!(addrs, ["fd00:20::11", "fd00:20::12", "fd00:20::13"]);
    assert_eq!(
        c.node.tunnel_source_for(v6.targets[0].address),
        Some("fd00:10::1".parse().unwrap())
    );
    assert_eq!(
        c.node.tunnel_source_for(v4.targets[0].address),
        Some(IpAddr::from([10, 10, 0, 1]))
    );

    // The cluster: two nodes, each owning one VIPA and backing up the other.
    assert_eq!(c.cluster.nodes.len(), 2);
    assert_eq!(
        c.cluster.probe_interval,
        std::time::Duration::from_millis(200)
    );
    assert_eq!(
        (v4.owner.as_str(), v4.backups.as_slice()),
        ("fwd-a", &["fwd-b".to_owned()][..])
    );
    assert_eq!(v4.moveable, vipa_proto::config::Moveable::Immediate);
    assert_eq!(v4.candidates_for("fwd-b").len(), 2);
    assert_eq!(v4.candidates_for("fwd-a").len(), 3);
    assert_eq!(v6.owner, "fwd-b");
    assert_eq!(v6.moveable, vipa_proto::config::Moveable::WhenIdle);

    // The Maglev tables build; shares follow the weights 1:2:1.
    let t = v4.maglev_table().unwrap();
    let counts = t.slot_counts(3);
    assert_eq!(counts.iter().sum::<u32>(), 65537);
    assert!(
        (counts[1] as f64 / 65537.0 - 0.5).abs() < 0.01,
        "{counts:?}"
    );
    assert!(v6.maglev_table().is_ok());
}

#[test]
fn minimal_config_gets_defaults() {
    let text = r#"
[node]
name = "n"
tunnel_source_v6 = "fd00:10::1"

[[port]]
name = "eth0"
mac = "02-00-00-00-0A-01"
next_hop_mac = "02:00:00:00:0a:fe"

[[vipa]]
address = "2001:db8::10"
services = ["udp/53"]
target = [{ address = "fd00:20:0:0::11", weight = 0 }]
"#;
    let c = Config::from_str_with_path(text, Path::new("mem.toml")).unwrap();
    assert_eq!(c.node.tunnel_source_v4, None);
    assert_eq!(c.forwarder.flow_table_capacity, 1 << 20);
    assert_eq!(c.forwarder.flow_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.forwarder.not_vipa, NotVipa::Host);
    assert_eq!(c.forwarder.burst_size, 32);
    assert_eq!(c.forwarder.cores, [0]);
    assert_eq!(c.forwarder.idle_sleep, Duration::from_micros(50));
    assert_eq!(c.forwarder.idle_polls, 1000);
    assert_eq!(c.forwarder.tx_drain, Duration::from_micros(100));
    assert_eq!(c.forwarder.neighbor_refresh, Duration::from_secs(30));
    assert_eq!(c.forwarder.neighbor_timeout, Duration::from_secs(120));
    assert_eq!(c.dpdk.eal_args, Vec::<String>::new());
    assert_eq!(c.dpdk.mbufs, 8191);
    assert_eq!(c.ports[0].mtu, 1500);
    assert_eq!(c.ports[0].backend, Backend::AfPacket);
    assert_eq!(c.ports[0].device, "eth0");
    assert_eq!(c.ports[0].queues, 1);
    assert_eq!(c.ports[0].gateway, None);
    assert_eq!(c.ports[0].mac.to_string(), "02:00:00:00:0a:01");
    let v = &c.vipas[0];
    assert_eq!(v.distribution, Distribution::Maglev);
    assert_eq!(v.table_size, 65537);
    // The key is the canonical spelling, whatever the file says.
    assert_eq!(v.targets[0].maglev_key(), "fd00:20::11");
    // Every target draining: no table, and the forwarder counts a drop.
    assert_eq!(v.maglev_table(), Err(MaglevError::NoTargets));
}

#[test]
fn forwarder_section() {
    let text = r#"
[node]
name = "n"
[forwarder]
flow_table_capacity = 4
flow_idle_timeout = 30
not_vipa = "drop"
burst_size = 64
cores = [3, 1]
idle_sleep_us = 0
idle_polls = 1
tx_drain_us = 0
neighbor_refresh = 1
neighbor_timeout = 2
[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
next_hop_mac = "02:00:00:00:0a:fe"
mtu = 9000
"#;
    let c = Config::from_str_with_path(text, Path::new("mem.toml")).unwrap();
    assert_eq!(
        c.forwarder,
        ForwarderConfig {
            flow_table_capacity: 4,
            flow_idle_timeout: Duration::from_secs(30),
            not_vipa: NotVipa::Drop,
            burst_size: 64,
            cores: vec![3, 1],
            idle_sleep: Duration::ZERO,
            idle_polls: 1,
            tx_drain: Duration::ZERO,
            neighbor_refresh: Duration::from_secs(1),
            neighbor_timeout: Duration::from_secs(2),
        }
    );
    assert_eq!(c.ports[0].mtu, 9000);
    // Queues default to the number of cores.
    assert_eq!(c.ports[0].queues, 2);
    assert!(c.vipas.is_empty());
}

#[test]
fn live_port_keys() {
    let text = r#"
[node]
name = "n"
[forwarder]
cores = [0, 1]
[dpdk]
eal_args = ["--no-huge", "--no-pci", "--vdev=net_af_packet0,iface=veth0"]
mbufs = 4095
[[port]]
name = "uplink"
mac = "02:00:00:00:0a:01"
backend = "dpdk"
device = "net_af_packet0"
queues = 2
gateway = "10.10.0.254"
[[port]]
name = "p1"
mac = "02:00:00:00:0b:01"
backend = "dpdk"
device = "0000:3b:02.0"
"#;
    let c = Config::from_str_with_path(text, Path::new("mem.toml")).unwrap();
    assert_eq!(
        c.dpdk,
        DpdkConfig {
            eal_args: vec![
                "--no-huge".into(),
                "--no-pci".into(),
                "--vdev=net_af_packet0,iface=veth0".into()
            ],
            mbufs: 4095,
        }
    );
    let p = &c.ports[0];
    assert_eq!(p.backend, Backend::Dpdk);
    assert_eq!(p.backend.to_string(), "dpdk");
    assert_eq!(p.device, "net_af_packet0");
    assert_eq!(p.queues, 2);
    assert_eq!(p.gateway, Some(IpAddr::from([10, 10, 0, 254])));
    // No static next hop: resolved by ARP / NDP.
    assert_eq!(p.next_hop_mac, None);
    let p = &c.ports[1];
    assert_eq!(p.device, "0000:3b:02.0");
    assert_eq!(p.queues, 2);
    assert_eq!(p.gateway, None);
    assert_eq!(p.next_hop_mac, None);

    for (text, backend) in [
        ("\"afpacket\"", Backend::AfPacket),
        ("\"afxdp\"", Backend::AfXdp),
    ] {
        let t = format!(
            "[node]\nname = \"n\"\n[[port]]\nname = \"veth0\"\nmac = \"02:00:00:00:0a:01\"\nbackend = {text}\ngateway = \"fd00:10::fe\"\n"
        );
        let c = Config::from_str_with_path(&t, Path::new("mem.toml")).unwrap();
        assert_eq!(c.ports[0].backend, backend);
        assert_eq!(c.ports[0].backend.name(), &text[1..text.len() - 1]);
        assert_eq!(c.ports[0].device, "veth0");
        assert_eq!(c.ports[0].gateway, Some("fd00:10::fe".parse().unwrap()));
    }
}

#[test]
fn service_and_mac_text_forms() {
    for s in ["tcp/1", "tcp/443", "udp/53", "udp/65535"] {
        assert_eq!(s.parse::<Service>().unwrap().to_string(), s);
    }
    assert_eq!(L4Protocol::Tcp.number(), 6);
    assert_eq!(L4Protocol::Udp.number(), 17);
    let mac: MacAddr = "02:AB:cd:00:0a:01".parse().unwrap();
    assert_eq!(mac.to_string(), "02:ab:cd:00:0a:01");
    assert!(mac.is_unicast());
    assert!(!MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_unicast());
    assert!(!MacAddr::default().is_unicast());
}

#[test]
fn example_file_is_the_documented_one() {
    // docs/config.md quotes the example's keys; make sure both exist.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md"))
            .unwrap();
    for key in [
        "tunnel_source_v4",
        "tunnel_source_v6",
        "flow_table_capacity",
        "flow_idle_timeout",
        "not_vipa",
        "burst_size",
        "cores",
        "idle_sleep_us",
        "idle_polls",
        "tx_drain_us",
        "neighbor_refresh",
        "neighbor_timeout",
        "eal_args",
        "mbufs",
        "backend",
        "device",
        "queues",
        "gateway",
        "next_hop_mac",
        "mtu",
        "services",
        "distribution",
        "table_size",
        "weight",
    ] {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/config.md lacks `{key}`"
        );
    }
}
