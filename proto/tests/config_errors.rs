//! Every kind of configuration error names the file, the line and the field,
//! and says what to do.
//!
//! Each case edits a valid configuration and marks the line the error must
//! point at with a `# <-` comment.

use std::path::Path;

use vipa_proto::config::{AddressFamily, Config, ConfigError, Problem};

const FILE: &str = "conf/test-vipa.toml";

const BASE: &str = r#"[node]
name = "fwd-a"
tunnel_source_v4 = "10.10.0.1"
tunnel_source_v6 = "fd00:10::1"

[[port]]
name = "p0"
mac = "02:00:00:00:0a:01"
next_hop_mac = "02:00:00:00:0a:fe"

[[vipa]]
address = "192.0.2.10"
services = ["tcp/80", "udp/53"]

  [[vipa.target]]
  address = "10.20.0.11"

  [[vipa.target]]
  address = "10.20.0.12"
  weight = 2
"#;

/// BASE with each `from` replaced (first occurrence) by `to`.
fn edit(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in the base config");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The 1-based line holding the `# <-` marker.
fn marked_line(text: &str) -> usize {
    let at = text.find("# <-").expect("the test text marks a line");
    text[..at].matches('\n').count() + 1
}

/// Parses `text`, which must fail at the marked line on `field`; checks the
/// message names the file, the line and the field, and returns the error.
fn fails(text: &str, field: &str) -> ConfigError {
    let err = Config::from_str_with_path(text, Path::new(FILE))
        .expect_err("the configuration must be refused");
    let msg = err.to_string();
    let line = marked_line(text);
    assert!(
        msg.starts_with(&format!("{FILE}:{line}:")),
        "want line {line}: {msg}"
    );
    assert_eq!(err.line(), Some(line), "{msg}");
    assert_eq!(err.path(), Path::new(FILE));
    assert_eq!(err.field(), Some(field), "{msg}");
    assert!(msg.contains(&format!(": {field}: ")), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    err
}

fn problem(err: &ConfigError) -> &Problem {
    err.problem().expect("a broken rule")
}

#[test]
fn base_is_valid() {
    let c = Config::from_str_with_path(BASE, Path::new(FILE)).unwrap();
    assert_eq!(c.vipas[0].targets.len(), 2);
}

#[test]
fn invalid_address() {
    let text = edit(&[("address = \"10.20.0.12\"", "address = \"10.20.0.300\" # <-")]);
    let err = fails(&text, "vipa[0].target[1].address");
    assert!(err
        .to_string()
        .contains(": vipa[0].target[1].address: \"10.20.0.300\" is not an IPv4 or IPv6 address"));
    // The column is that of the value.
    assert_eq!(err.column(), Some(13));
    assert!(err
        .to_string()
        .starts_with(&format!("{FILE}:{}:13: ", marked_line(&text))));
}

#[test]
fn tunnel_source_of_the_wrong_family() {
    let text = edit(&[(
        "tunnel_source_v4 = \"10.10.0.1\"",
        "tunnel_source_v4 = \"fd00::1\" # <-",
    )]);
    let err = fails(&text, "node.tunnel_source_v4");
    assert_eq!(
        problem(&err),
        &Problem::InvalidAddress {
            value: "fd00::1".into(),
            expected: AddressFamily::V4
        }
    );
    assert!(err.to_string().contains("is not an IPv4 address"));
}

#[test]
fn unusable_addresses() {
    let text = edit(&[("address = \"192.0.2.10\"", "address = \"0.0.0.0\" # <-")]);
    let err = fails(&text, "vipa[0].address");
    assert!(matches!(problem(&err), Problem::UnusableAddress { .. }));
    assert!(err.to_string().contains("unicast"));

    let text = edit(&[("address = \"10.20.0.11\"", "address = \"ff02::1\" # <-")]);
    let err = fails(&text, "vipa[0].target[0].address");
    assert!(err.to_string().contains("ff02::1 is a multicast address"));
}

#[test]
fn duplicate_target() {
    let text = edit(&[("address = \"10.20.0.12\"", "address = \"10.20.0.11\" # <-")]);
    let err = fails(&text, "vipa[0].target[1].address");
    assert!(matches!(
        problem(&err),
        Problem::DuplicateTarget { first_line: 16, .. }
    ));
    assert!(err.to_string().contains("listed twice"));
    assert!(err.to_string().contains("first at line 16"));
}

#[test]
fn duplicate_target_spelled_differently() {
    let text = edit(&[
        ("address = \"10.20.0.11\"", "address = \"fd00:20::11\""),
        (
            "address = \"10.20.0.12\"",
            "address = \"FD00:20:0:0::11\" # <-",
        ),
    ]);
    let err = fails(&text, "vipa[0].target[1].address");
    assert!(matches!(problem(&err), Problem::DuplicateTarget { .. }));
}

#[test]
fn target_is_the_vipa() {
    let text = edit(&[("address = \"10.20.0.11\"", "address = \"192.0.2.10\" # <-")]);
    let err = fails(&text, "vipa[0].target[0].address");
    assert!(matches!(problem(&err), Problem::TargetIsVipa { .. }));
}

#[test]
fn no_service() {
    let text = edit(&[("services = [\"tcp/80\", \"udp/53\"]", "services = [] # <-")]);
    let err = fails(&text, "vipa[0].services");
    assert_eq!(problem(&err), &Problem::NoService);
    assert!(err.to_string().contains("services = [\"tcp/80\"]"));

    // Absent: the error points at the [[vipa]] header.
    let text = edit(&[
        ("[[vipa]]", "[[vipa]] # <-"),
        ("services = [\"tcp/80\", \"udp/53\"]\n", ""),
    ]);
    let err = fails(&text, "vipa[0].services");
    assert_eq!(problem(&err), &Problem::NoService);
}

#[test]
fn duplicate_service() {
    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/80\", \"udp/53\", \"tcp/80\"] # <-",
    )]);
    let err = fails(&text, "vipa[0].services[2]");
    assert!(matches!(problem(&err), Problem::DuplicateService { .. }));
    assert!(err.to_string().contains("tcp/80 is listed twice"));
}

#[test]
fn service_port_zero_and_too_large() {
    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/0\"] # <-",
    )]);
    let err = fails(&text, "vipa[0].services[0]");
    assert!(matches!(
        problem(&err),
        Problem::ServicePortOutOfRange { .. }
    ));
    assert!(err.to_string().contains("1 to 65535"));

    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/80\", \"udp/65536\"] # <-",
    )]);
    let err = fails(&text, "vipa[0].services[1]");
    assert!(matches!(
        problem(&err),
        Problem::ServicePortOutOfRange { .. }
    ));
}

#[test]
fn invalid_service() {
    for bad in ["http/80", "tcp80", "TCP/80", "tcp/", "tcp/+80", "tcp/80/x"] {
        let text = edit(&[(
            "services = [\"tcp/80\", \"udp/53\"]",
            &format!("services = [\"{bad}\"] # <-"),
        )]);
        let err = fails(&text, "vipa[0].services[0]");
        assert!(
            matches!(problem(&err), Problem::InvalidService { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("\"tcp/PORT\" or \"udp/PORT\""));
    }
}

#[test]
fn table_size_not_prime() {
    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/80\"]\ntable_size = 65536 # <-",
    )]);
    let err = fails(&text, "vipa[0].table_size");
    assert_eq!(
        problem(&err),
        &Problem::TableSizeNotPrime {
            value: 65536,
            below: Some(65521),
            above: Some(65537)
        }
    );
    assert!(err.to_string().contains("use 65521 or 65537"), "{err}");
}

#[test]
fn table_size_out_of_range() {
    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/80\"]\ntable_size = 1 # <-",
    )]);
    let err = fails(&text, "vipa[0].table_size");
    assert!(matches!(problem(&err), Problem::OutOfRange { .. }));
}

#[test]
fn table_size_smaller_than_targets() {
    let text = edit(&[
        (
            "services = [\"tcp/80\", \"udp/53\"]",
            "services = [\"tcp/80\"]\ntable_size = 2 # <-",
        ),
        (
            "  weight = 2\n",
            "  weight = 2\n\n  [[vipa.target]]\n  address = \"10.20.0.13\"\n",
        ),
    ]);
    let err = fails(&text, "vipa[0].table_size");
    assert_eq!(
        problem(&err),
        &Problem::TableSizeTooSmall {
            value: 2,
            targets: 3,
            suggestion: 65537
        }
    );
    assert!(err.to_string().contains("number of targets (3)"));
}

#[test]
fn unknown_key() {
    let text = edit(&[("weight = 2", "wieght = 2 # <-")]);
    let err = fails(&text, "vipa[0].target[1].wieght");
    assert!(matches!(
        problem(&err),
        Problem::UnknownKey {
            suggestion: Some("weight"),
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("unknown key `wieght` (did you mean `weight`?)"),
        "{msg}"
    );
    assert!(msg.contains("address, weight"), "{msg}");
    // The column is that of the key.
    assert_eq!(err.column(), Some(3));
}

#[test]
fn unknown_table() {
    let text = edit(&[("[node]", "[nodes] # <-\nx = 1\n\n[node]")]);
    let err = fails(&text, "nodes");
    assert!(err.to_string().contains("did you mean `node`"));

    let text = format!("{BASE}\n[forwarder]\nburst = 8 # <-\n");
    let err = fails(&text, "forwarder.burst");
    assert!(matches!(problem(&err), Problem::UnknownKey { .. }));
}

#[test]
fn unknown_key_in_inline_table() {
    let text = edit(&[(
        "  [[vipa.target]]\n  address = \"10.20.0.11\"\n",
        "  target = [{ address = \"10.20.0.11\" }, { address = \"10.20.0.12\", port = 80 }] # <-\n",
    )]);
    // The second [[vipa.target]] now extends the inline array: a TOML error.
    let err = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");

    let text = edit(&[(
        "  [[vipa.target]]\n  address = \"10.20.0.11\"\n\n  [[vipa.target]]\n  address = \"10.20.0.12\"\n  weight = 2\n",
        "  target = [{ address = \"10.20.0.11\" }, { address = \"10.20.0.12\", port = 80 }] # <-\n",
    )]);
    let err = fails(&text, "vipa[0].target[1].port");
    assert!(matches!(
        problem(&err),
        Problem::UnknownKey {
            suggestion: None,
            ..
        }
    ));
}

#[test]
fn duplicate_port_name() {
    let text = format!(
        "{BASE}\n[[port]]\nname = \"p0\" # <-\nmac = \"02:00:00:00:0b:01\"\nnext_hop_mac = \"02:00:00:00:0b:fe\"\n"
    );
    let err = fails(&text, "port[1].name");
    assert!(matches!(
        problem(&err),
        Problem::DuplicatePortName { first_line: 7, .. }
    ));
    assert!(err.to_string().contains("\"p0\" is already used"));
}

#[test]
fn duplicate_vipa() {
    let text = format!(
        "{BASE}\n[[vipa]]\naddress = \"192.0.2.10\" # <-\nservices = [\"tcp/22\"]\n  [[vipa.target]]\n  address = \"10.20.0.99\"\n"
    );
    let err = fails(&text, "vipa[1].address");
    assert!(matches!(
        problem(&err),
        Problem::DuplicateVipa { first_line: 12, .. }
    ));
    assert!(err.to_string().contains("already defined at line 12"));
}

#[test]
fn invalid_mac() {
    for bad in [
        "02:00:00:00:0a",
        "02:00:00:00:0a:01:02",
        "02:00:00:00:0a:1",
        "02:00:00:00:0a:zz",
        "0200.0000.0a01",
        "02:00-00:00:0a:01",
    ] {
        let text = edit(&[(
            "mac = \"02:00:00:00:0a:01\"",
            &format!("mac = \"{bad}\" # <-"),
        )]);
        let err = fails(&text, "port[0].mac");
        assert!(
            matches!(problem(&err), Problem::InvalidMac { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("is not a MAC address"));
    }
}

#[test]
fn multicast_mac() {
    let text = edit(&[(
        "next_hop_mac = \"02:00:00:00:0a:fe\"",
        "next_hop_mac = \"ff:ff:ff:ff:ff:ff\" # <-",
    )]);
    let err = fails(&text, "port[0].next_hop_mac");
    assert!(matches!(problem(&err), Problem::NotUnicastMac { .. }));
}

#[test]
fn missing_required_key() {
    // A key missing from a table: the error points at the table's header.
    let text = edit(&[("[node]", "[node] # <-"), ("name = \"fwd-a\"\n", "")]);
    let err = fails(&text, "node.name");
    assert!(matches!(problem(&err), Problem::Missing { .. }));
    assert!(err
        .to_string()
        .contains("required but missing; add it, e.g. name = \"fwd-a\""));

    let text = edit(&[
        ("[[port]]", "[[port]] # <-"),
        ("mac = \"02:00:00:00:0a:01\"\n", ""),
    ]);
    let err = fails(&text, "port[0].mac");
    assert!(matches!(problem(&err), Problem::Missing { .. }));

    // next_hop_mac is optional: next hops are then resolved by ARP / NDP.
    let text = edit(&[("next_hop_mac = \"02:00:00:00:0a:fe\"\n", "")]);
    let c = Config::from_str_with_path(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.ports[0].next_hop_mac, None);

    let text = edit(&[
        ("address = \"10.20.0.12\"\n", ""),
        ("  weight = 2", "  weight = 2 # <-"),
    ]);
    // The target table now starts at its header, two lines up.
    let err = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_err();
    assert_eq!(err.line(), Some(marked_line(&text) - 1));
    assert_eq!(err.field(), Some("vipa[0].target[1].address"));

    // No [node] at all: line 1.
    let text = BASE.replacen(
        "[node]\nname = \"fwd-a\"\ntunnel_source_v4 = \"10.10.0.1\"\ntunnel_source_v6 = \"fd00:10::1\"\n",
        "# <-\n",
        1,
    );
    let err = fails(&text, "node");
    assert!(err.to_string().contains("a [node] table"));
}

#[test]
fn empty_name() {
    let text = edit(&[("name = \"p0\"", "name = \" \" # <-")]);
    let err = fails(&text, "port[0].name");
    assert_eq!(problem(&err), &Problem::Empty);
}

#[test]
fn ipv6_target_without_tunnel_source_v6() {
    let text = edit(&[
        ("tunnel_source_v6 = \"fd00:10::1\"\n", ""),
        ("address = \"10.20.0.12\"", "address = \"fd00:20::12\" # <-"),
    ]);
    let err = fails(&text, "vipa[0].target[1].address");
    assert!(matches!(
        problem(&err),
        Problem::MissingTunnelSource {
            key: "tunnel_source_v6",
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("node.tunnel_source_v6 is not set; add tunnel_source_v6"));
}

#[test]
fn ipv4_target_without_tunnel_source_v4() {
    let text = edit(&[
        ("tunnel_source_v4 = \"10.10.0.1\"\n", ""),
        ("address = \"10.20.0.11\"", "address = \"10.20.0.11\" # <-"),
    ]);
    let err = fails(&text, "vipa[0].target[0].address");
    assert!(matches!(
        problem(&err),
        Problem::MissingTunnelSource { family: "IPv4", .. }
    ));
}

#[test]
fn wrong_types() {
    let text = edit(&[(
        "next_hop_mac = \"02:00:00:00:0a:fe\"",
        "next_hop_mac = \"02:00:00:00:0a:fe\"\nmtu = \"1500\" # <-",
    )]);
    let err = fails(&text, "port[0].mtu");
    assert_eq!(
        problem(&err),
        &Problem::WrongType {
            expected: "an integer",
            found: "a string"
        }
    );
    assert!(err
        .to_string()
        .contains("expected an integer, found a string"));

    let text = edit(&[("weight = 2", "weight = 1.5 # <-")]);
    let err = fails(&text, "vipa[0].target[1].weight");
    assert!(err.to_string().contains("found a floating-point number"));

    let text = edit(&[("name = \"fwd-a\"", "name = true # <-")]);
    fails(&text, "node.name");

    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = \"tcp/80\" # <-",
    )]);
    fails(&text, "vipa[0].services");

    // [port] instead of [[port]].
    let text = edit(&[("[[port]]", "[port] # <-")]);
    let err = fails(&text, "port");
    assert!(err.to_string().contains("[[…]]"), "{err}");
}

#[test]
fn out_of_range() {
    let cases: &[(&str, &str)] = &[
        ("burst_size = 0", "forwarder.burst_size"),
        ("burst_size = 65", "forwarder.burst_size"),
        ("flow_table_capacity = 3", "forwarder.flow_table_capacity"),
        ("flow_idle_timeout = 0", "forwarder.flow_idle_timeout"),
        ("flow_idle_timeout = -5", "forwarder.flow_idle_timeout"),
    ];
    for (line, field) in cases {
        let text = format!("{BASE}\n[forwarder]\n{line} # <-\n");
        let err = fails(&text, field);
        assert!(matches!(problem(&err), Problem::OutOfRange { .. }), "{err}");
        assert!(err.to_string().contains("out of range; use a value from"));
    }
    let text = edit(&[("weight = 2", "weight = -1 # <-")]);
    fails(&text, "vipa[0].target[1].weight");
    let text = edit(&[("weight = 2", "weight = 65536 # <-")]);
    fails(&text, "vipa[0].target[1].weight");
    let text = edit(&[("name = \"p0\"", "name = \"p0\"\nmtu = 9217 # <-")]);
    let err = fails(&text, "port[0].mtu");
    assert!(err.to_string().contains("from 576 to 9216"));
}

#[test]
fn unknown_choice() {
    let text = format!("{BASE}\n[forwarder]\nnot_vipa = \"forward\" # <-\n");
    let err = fails(&text, "forwarder.not_vipa");
    assert!(
        err.to_string().contains("use \"host\" or \"drop\""),
        "{err}"
    );

    let text = edit(&[(
        "services = [\"tcp/80\", \"udp/53\"]",
        "services = [\"tcp/80\"]\ndistribution = \"round-robin\" # <-",
    )]);
    let err = fails(&text, "vipa[0].distribution");
    assert!(matches!(problem(&err), Problem::UnknownChoice { .. }));
}

#[test]
fn no_ports() {
    let text = edit(&[
        (
            "[[port]]\nname = \"p0\"\nmac = \"02:00:00:00:0a:01\"\nnext_hop_mac = \"02:00:00:00:0a:fe\"\n",
            "",
        ),
        ("[node]", "[node] # <-"),
    ]);
    let err = fails(&text, "port");
    assert_eq!(problem(&err), &Problem::NoPorts);
    assert!(err.to_string().contains("add at least one [[port]]"));
}

#[test]
fn no_targets() {
    let text = edit(&[
        ("[[vipa]]", "[[vipa]] # <-"),
        (
            "  [[vipa.target]]\n  address = \"10.20.0.11\"\n\n  [[vipa.target]]\n  address = \"10.20.0.12\"\n  weight = 2\n",
            "",
        ),
    ]);
    let err = fails(&text, "vipa[0].target");
    assert_eq!(problem(&err), &Problem::NoTargets);
}

#[test]
fn mtu_too_small_for_ipv6() {
    // An IPv6 VIPA with IPv6 targets needs 1280 + 40 + 4.
    let text = format!(
        "{}\n[[vipa]]\naddress = \"2001:db8::10\"\nservices = [\"tcp/80\"]\n  [[vipa.target]]\n  address = \"fd00:20::11\"\n",
        edit(&[("name = \"p0\"", "name = \"p0\"\nmtu = 1300 # <-")])
    );
    let err = fails(&text, "port[0].mtu");
    assert!(matches!(
        problem(&err),
        Problem::MtuTooSmall { needed: 1324, .. }
    ));
    assert!(err.to_string().contains("set mtu to 1324 or more"), "{err}");

    // With IPv4 targets: 1280 + 20 + 4.
    let text = format!(
        "{}\n[[vipa]]\naddress = \"2001:db8::10\"\nservices = [\"tcp/80\"]\n  [[vipa.target]]\n  address = \"10.20.0.99\"\n",
        edit(&[("name = \"p0\"", "name = \"p0\"\nmtu = 1300 # <-")])
    );
    let err = fails(&text, "port[0].mtu");
    assert!(matches!(
        problem(&err),
        Problem::MtuTooSmall { needed: 1304, .. }
    ));

    // An IPv4 VIPA with an IPv6 target: the IPv6 minimum link MTU.
    let text = edit(&[
        ("name = \"p0\"", "name = \"p0\"\nmtu = 1200 # <-"),
        ("address = \"10.20.0.12\"", "address = \"fd00:20::12\""),
    ]);
    let err = fails(&text, "port[0].mtu");
    assert!(matches!(
        problem(&err),
        Problem::MtuTooSmall { needed: 1280, .. }
    ));

    // Without IPv6, 576 is fine; the default MTU is fine with IPv6.
    let text = edit(&[("name = \"p0\"", "name = \"p0\"\nmtu = 576")]);
    assert!(Config::from_str_with_path(&text, Path::new(FILE)).is_ok());
}

/// `[forwarder]` with `lines` appended to BASE.
fn with_forwarder(lines: &str) -> String {
    format!("{BASE}\n[forwarder]\n{lines}\n")
}

#[test]
fn cores() {
    let err = fails(&with_forwarder("cores = [] # <-"), "forwarder.cores");
    assert_eq!(problem(&err), &Problem::NoCores);
    assert!(err.to_string().contains("e.g. cores = [0]"), "{err}");

    let err = fails(
        &with_forwarder("cores = [1,\n 1] # <-"),
        "forwarder.cores[1]",
    );
    assert_eq!(
        problem(&err),
        &Problem::DuplicateCore {
            core: 1,
            first_index: 0
        }
    );
    assert!(
        err.to_string()
            .contains("CPU 1 is listed twice (first as cores[0])"),
        "{err}"
    );

    for bad in ["-1", "8192"] {
        let err = fails(
            &with_forwarder(&format!("cores = [{bad}] # <-")),
            "forwarder.cores[0]",
        );
        assert!(matches!(problem(&err), Problem::OutOfRange { .. }), "{err}");
    }
    let err = fails(&with_forwarder("cores = 1 # <-"), "forwarder.cores");
    assert!(err
        .to_string()
        .contains("expected an array, found an integer"));
    let err = fails(
        &with_forwarder("cores = [\"0\"] # <-"),
        "forwarder.cores[0]",
    );
    assert!(err
        .to_string()
        .contains("expected an integer, found a string"));
}

#[test]
fn poll_and_neighbor_timing() {
    let cases: &[(&str, &str)] = &[
        ("idle_sleep_us = -1", "forwarder.idle_sleep_us"),
        ("idle_sleep_us = 1000001", "forwarder.idle_sleep_us"),
        ("idle_polls = 0", "forwarder.idle_polls"),
        ("tx_drain_us = -1", "forwarder.tx_drain_us"),
        ("tx_drain_us = 1000001", "forwarder.tx_drain_us"),
        ("neighbor_refresh = 0", "forwarder.neighbor_refresh"),
        ("neighbor_timeout = 1", "forwarder.neighbor_timeout"),
        ("neighbor_timeout = 86401", "forwarder.neighbor_timeout"),
    ];
    for (line, field) in cases {
        let err = fails(&with_forwarder(&format!("{line} # <-")), field);
        assert!(matches!(problem(&err), Problem::OutOfRange { .. }), "{err}");
    }
    let err = fails(
        &with_forwarder("idle_sleep_us = 1.5 # <-"),
        "forwarder.idle_sleep_us",
    );
    assert!(matches!(problem(&err), Problem::WrongType { .. }));

    // The timeout must be longer than the refresh, whichever was written.
    let err = fails(
        &with_forwarder("neighbor_refresh = 30\nneighbor_timeout = 30 # <-"),
        "forwarder.neighbor_timeout",
    );
    assert_eq!(
        problem(&err),
        &Problem::NeighborTimeoutTooShort {
            timeout: 30,
            refresh: 30
        }
    );
    assert!(
        err.to_string()
            .contains("set neighbor_timeout to more than 30"),
        "{err}"
    );
    let err = fails(
        &with_forwarder("neighbor_timeout = 20 # <-"),
        "forwarder.neighbor_timeout",
    );
    assert!(err.to_string().contains("neighbor_refresh (30 s)"), "{err}");
    let err = fails(
        &with_forwarder("neighbor_refresh = 300 # <-"),
        "forwarder.neighbor_refresh",
    );
    assert!(matches!(
        problem(&err),
        Problem::NeighborTimeoutTooShort { timeout: 120, .. }
    ));
    // 0 µs: busy-poll, send at the end of every poll.
    let ok = with_forwarder("idle_sleep_us = 0\ntx_drain_us = 0\nneighbor_timeout = 31");
    assert!(Config::from_str_with_path(&ok, Path::new(FILE)).is_ok());
}

#[test]
fn queues_must_equal_cores() {
    let text = format!(
        "{}\n[forwarder]\ncores = [0, 1]\n",
        edit(&[("name = \"p0\"", "name = \"p0\"\nqueues = 1 # <-")])
    );
    let err = fails(&text, "port[0].queues");
    assert_eq!(
        problem(&err),
        &Problem::QueuesNotCores {
            queues: 1,
            cores: 2
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("each worker owns one queue of every port"),
        "{msg}"
    );
    assert!(msg.contains("set queues = 2"), "{msg}");

    let text = edit(&[("name = \"p0\"", "name = \"p0\"\nqueues = 0 # <-")]);
    let err = fails(&text, "port[0].queues");
    assert!(matches!(problem(&err), Problem::OutOfRange { .. }));

    let text = edit(&[("name = \"p0\"", "name = \"p0\"\nqueues = 1")]);
    assert_eq!(
        Config::from_str_with_path(&text, Path::new(FILE))
            .unwrap()
            .ports[0]
            .queues,
        1
    );
}

#[test]
fn backends() {
    let text = edit(&[("name = \"p0\"", "name = \"p0\"\nbackend = \"xdp\" # <-")]);
    let err = fails(&text, "port[0].backend");
    assert!(
        err.to_string()
            .contains("use \"afpacket\" or \"afxdp\" or \"dpdk\""),
        "{err}"
    );

    // A second port with another backend (the first has the default).
    let text = format!(
        "{BASE}\n[[port]]\nname = \"p1\"\nmac = \"02:00:00:00:0b:01\"\nbackend = \"dpdk\" # <-\n"
    );
    let err = fails(&text, "port[1].backend");
    assert!(matches!(
        problem(&err),
        Problem::MixedBackends { first_line: 6, .. }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("all ports must use one backend for now"),
        "{msg}"
    );
    assert!(msg.contains("\"dpdk\" differs from \"afpacket\""), "{msg}");

    // The same backend spelt out and by default is fine.
    let text = format!(
        "{BASE}\n[[port]]\nname = \"p1\"\nmac = \"02:00:00:00:0b:01\"\nbackend = \"afpacket\"\n"
    );
    let c = Config::from_str_with_path(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.ports.len(), 2);
}

#[test]
fn devices() {
    let text = edit(&[(
        "name = \"p0\"",
        "name = \"p0\"\ndevice = \"a-very-long-ifname\" # <-",
    )]);
    let err = fails(&text, "port[0].device");
    assert!(matches!(
        problem(&err),
        Problem::DeviceNameTooLong { len: 18, .. }
    ));
    assert!(err.to_string().contains("at most 15 bytes"), "{err}");

    // Without device, the name is the interface name.
    let text = edit(&[("name = \"p0\"", "name = \"uplink-to-the-router\" # <-")]);
    fails(&text, "port[0].name");

    let text = edit(&[("name = \"p0\"", "name = \"p0\"\ndevice = \"\" # <-")]);
    let err = fails(&text, "port[0].device");
    assert_eq!(problem(&err), &Problem::Empty);

    // DPDK devices are PCI addresses or vdev names of any length.
    let text = edit(&[(
        "name = \"p0\"",
        "name = \"p0\"\nbackend = \"dpdk\"\ndevice = \"net_af_packet0,iface=veth-long-name\"",
    )]);
    let c = Config::from_str_with_path(&text, Path::new(FILE)).unwrap();
    assert_eq!(c.ports[0].device, "net_af_packet0,iface=veth-long-name");
}

#[test]
fn gateway() {
    let text = edit(&[(
        "next_hop_mac = \"02:00:00:00:0a:fe\"",
        "gateway = \"10.10.0.256\" # <-",
    )]);
    let err = fails(&text, "port[0].gateway");
    assert!(matches!(problem(&err), Problem::InvalidAddress { .. }));

    let text = edit(&[(
        "next_hop_mac = \"02:00:00:00:0a:fe\"",
        "gateway = \"ff02::1\" # <-",
    )]);
    let err = fails(&text, "port[0].gateway");
    assert!(matches!(problem(&err), Problem::UnusableAddress { .. }));

    let text = edit(&[(
        "next_hop_mac = \"02:00:00:00:0a:fe\"",
        "next_hop_mac = \"02:00:00:00:0a:fe\"\ngateway = \"10.10.0.254\" # <-",
    )]);
    let err = fails(&text, "port[0].gateway");
    assert_eq!(problem(&err), &Problem::GatewayAndStaticNextHop);
    assert!(err.to_string().contains("both next_hop_mac and gateway"));
}

#[test]
fn dpdk_section() {
    let with = |lines: &str| format!("{BASE}\n[dpdk]\n{lines}\n");
    let err = fails(&with("eal_arg = [] # <-"), "dpdk.eal_arg");
    assert!(matches!(
        problem(&err),
        Problem::UnknownKey {
            suggestion: Some("eal_args"),
            ..
        }
    ));
    let err = fails(&with("eal_args = \"--no-huge\" # <-"), "dpdk.eal_args");
    assert!(matches!(problem(&err), Problem::WrongType { .. }));
    let err = fails(
        &with("eal_args = [\"--no-huge\", 3] # <-"),
        "dpdk.eal_args[1]",
    );
    assert!(matches!(problem(&err), Problem::WrongType { .. }));
    let err = fails(&with("eal_args = [\"\"] # <-"), "dpdk.eal_args[0]");
    assert_eq!(problem(&err), &Problem::Empty);
    for bad in ["0", "510", "16777216"] {
        let err = fails(&with(&format!("mbufs = {bad} # <-")), "dpdk.mbufs");
        assert!(matches!(problem(&err), Problem::OutOfRange { .. }), "{err}");
    }
    let text = format!("{BASE}\n[dpdk] # <-\nmbufs = 511\n");
    assert_eq!(
        Config::from_str_with_path(&text, Path::new(FILE))
            .unwrap()
            .dpdk
            .mbufs,
        511
    );
}

#[test]
fn syntax_error() {
    let text = edit(&[("name = \"fwd-a\"", "name = \"fwd-a # <-")]);
    let err = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert_eq!(err.line(), Some(marked_line(&text)));
    assert_eq!(err.field(), None);
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{FILE}:2:")), "{msg}");
    assert!(msg.contains("not valid TOML"), "{msg}");

    // A key defined twice is a TOML error too.
    let text = edit(&[("weight = 2", "weight = 2\n  weight = 3 # <-")]);
    let err = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_err();
    assert_eq!(err.line(), Some(marked_line(&text)), "{err}");
}

#[test]
fn dates_are_refused() {
    let text = edit(&[("name = \"fwd-a\"", "name = 1979-05-27 # <-")]);
    let err = Config::from_str_with_path(&text, Path::new(FILE)).unwrap_err();
    assert_eq!(err.line(), Some(2));
    assert!(err.to_string().contains("dates and times"), "{err}");
}

#[test]
fn unreadable_file() {
    let path = Path::new("/nonexistent/vipa/config.toml");
    let err = Config::load(path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert_eq!(err.line(), None);
    let msg = err.to_string();
    assert!(
        msg.starts_with("/nonexistent/vipa/config.toml: cannot read"),
        "{msg}"
    );
    // The cause is in the sentence once, not again as a source to chain.
    assert_eq!(msg.matches("os error").count(), 1, "{msg}");
    assert!(std::error::Error::source(&err).is_none());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text: a configuration or an error pointing inside the file.
        #[test]
        fn arbitrary_text(text in "\\PC{0,200}") {
            check(&text);
        }

        /// The base configuration with one line removed or one byte changed.
        #[test]
        fn mutated_base(line in 0usize..20, at in 0usize..BASE.len(), byte in any::<u8>()) {
            let lines: Vec<&str> = BASE.lines().collect();
            let without: String = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != line % lines.len())
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            check(&without);
            let mut bytes = BASE.as_bytes().to_vec();
            bytes[at] = byte;
            if let Ok(changed) = String::from_utf8(bytes) {
                check(&changed);
            }
        }
    }

    fn check(text: &str) {
        if let Err(err) = Config::from_str_with_path(text, Path::new(FILE)) {
            let lines = text.split('\n').count();
            let line = err.line().expect("a location");
            assert!((1..=lines).contains(&line), "{err}");
            assert!(err.to_string().starts_with(FILE));
        }
    }
}
