use super::*;

fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("vipactl").chain(args.iter().copied()))
}

#[test]
fn parses_the_read_commands() {
    let c = cli(&["--control", "http://fwd-b:9470", "vipa", "--json"]).unwrap();
    assert_eq!(c.control, "http://fwd-b:9470");
    assert_eq!(c.command, Command::Vipa { json: true });
    let c = cli(&["dpt", "--detail"]).unwrap();
    assert_eq!(
        c.command,
        Command::Dpt {
            detail: true,
            json: false
        }
    );
    let c = cli(&["stats", "--watch", "--interval", "0.5", "--json"]).unwrap();
    assert_eq!(
        c.command,
        Command::Stats {
            json: true,
            watch: true,
            interval: 0.5
        }
    );
    // Global options after the subcommand too.
    let c = cli(&["stats", "--control", "10.0.0.1:1"]).unwrap();
    assert_eq!(c.control, "10.0.0.1:1");
    let c = cli(&[
        "crt",
        "--vipa",
        "192.0.2.10",
        "--client",
        "198.51.100.7:40000",
        "--target",
        "10.20.0.11",
        "--limit",
        "5",
    ])
    .unwrap();
    let Command::Crt(a) = c.command else { panic!() };
    assert_eq!(a.vipa, Some("192.0.2.10".parse().unwrap()));
    assert_eq!(
        a.client,
        Some(ClientFilter {
            address: "198.51.100.7".parse().unwrap(),
            port: Some(40000)
        })
    );
    assert_eq!(a.limit, Some(5));
    let Command::Crt(a) = cli(&["crt", "--client", "2001:db8::7"]).unwrap().command else {
        panic!()
    };
    assert_eq!(a.client.unwrap().port, None);
    let Command::Crt(a) = cli(&["crt", "--client", "[2001:db8::7]:9"])
        .unwrap()
        .command
    else {
        panic!()
    };
    assert_eq!(a.client.unwrap().port, Some(9));
}

#[test]
fn parses_the_write_commands_into_the_api_bodies() {
    let c = cli(&["quiesce", "target", "10.20.0.11", "--vipa", "192.0.2.10"]).unwrap();
    let Command::Quiesce { what } = c.command else {
        panic!()
    };
    let (path, body, dry) = quiesce_request(&what, true);
    assert_eq!(path, "/v1/quiesce");
    assert_eq!(body, json!({"vipa": "192.0.2.10", "target": "10.20.0.11"}));
    assert!(!dry);
    let c = cli(&["resume", "port", "192.0.2.10:443", "--dry-run"]).unwrap();
    let Command::Resume { what } = c.command else {
        panic!()
    };
    let (path, body, dry) = quiesce_request(&what, false);
    assert_eq!(path, "/v1/resume");
    assert_eq!(body, json!({"vipa": "192.0.2.10", "service": "tcp/443"}));
    assert!(dry);
    let c = cli(&["quiesce", "port", "[2001:db8::10]:53", "--protocol", "udp"]).unwrap();
    let Command::Quiesce { what } = c.command else {
        panic!()
    };
    assert_eq!(
        quiesce_request(&what, true).1,
        json!({"vipa": "2001:db8::10", "service": "udp/53"})
    );
    let c = cli(&["deactivate", "192.0.2.10", "--dry-run"]).unwrap();
    assert_eq!(
        c.command,
        Command::Deactivate(VipaArg {
            vipa: "192.0.2.10".parse().unwrap(),
            dry_run: true
        })
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["quiesce", "target", "10.20.0.11"][..], // no --vipa
        &["quiesce", "port", "192.0.2.10"],       // no port
        &["crt", "--client", "nonsense"],
        &["crt", "--limit", "-1"],
        &["deactivate", "not-an-address"],
        &["stats", "--interval", "2"], // without --watch
        &["frobnicate"],
        &[],
    ] {
        let e = cli(args).unwrap_err();
        assert!(e.use_stderr(), "{args:?}: {e}");
    }
    fn argv<'a>(a: &[&'a str]) -> Vec<&'a str> {
        std::iter::once("vipactl")
            .chain(a.iter().copied())
            .collect()
    }
    assert_eq!(parse(argv(&["vipa", "--bogus"])).unwrap_err(), EXIT_USAGE);
    assert_eq!(parse(argv(&["--help"])).unwrap_err(), EXIT_OK);
}

#[test]
fn help_documents_exit_codes_and_examples() {
    use clap::CommandFactory;
    let help = Cli::command().render_long_help().to_string();
    for s in [
        "Exit codes:",
        "64  usage",
        "2   the daemon is unreachable",
        "VIPA_CONTROL",
        "vipactl quiesce target",
    ] {
        assert!(help.contains(s), "{s}: {help}");
    }
}

fn dpt_json() -> Value {
    json!({"node": "fwd-a", "dpt": [{
    "vipa": "192.0.2.10", "service": "tcp/80", "epoch": "2.0",
    "targets": [
        {"target": "10.20.0.11", "ready": true, "weight": 1, "candidate": true, "state": "ready", "connections": 1234, "packets": 8_123_400, "bytes": 6_549_800_000u64},
        {"target": "10.20.0.12", "ready": false, "weight": 20, "candidate": true, "state": "quiesced", "connections": 0, "packets": 90, "bytes": 5_400},
    ]}],
    "traffic": [
        {"target": "10.20.0.11", "connections_total": 52_310, "packets": 8_123_456, "bytes": 6_549_825_126u64},
        {"target": "10.20.0.12", "connections_total": 7, "packets": 90, "bytes": 5_400},
    ]})
}

#[test]
fn renders_the_dpt() {
    assert_eq!(
        render_dpt(&dpt_json(), false),
        "node fwd-a\n\
         VIPA:PORT          TARGET      READY  STATE     WEIGHT  ACTIVE CONNECTIONS    PACKETS    BYTES\n\
         192.0.2.10:80/tcp  10.20.0.11  yes    ready          1               1,234  8,123,400  6.1 GiB\n\
         192.0.2.10:80/tcp  10.20.0.12  no     quiesced      20                   0         90  5.3 KiB\n\
         1 VIPA:port(s), 1 of 2 target entries ready, 1,234 active connections\n\
         \n\
         per target since the forwarder started (all its VIPA:ports; connections it created):\n\
         TARGET      CONNECTIONS    PACKETS    BYTES\n\
         10.20.0.11       52,310  8,123,456  6.1 GiB\n\
         10.20.0.12            7         90  5.3 KiB\n"
    );
    let d = render_dpt(&dpt_json(), true);
    assert!(d.contains("CANDIDATE  EPOCH"), "{d}");
    assert!(d.contains("yes          2.0"), "{d}");
    assert!(render_dpt(&json!({"node": "n", "dpt": []}), false).contains("owns no VIPA"));
    let mut no_fwd = dpt_json();
    no_fwd["traffic"] = Value::Null;
    for t in no_fwd["dpt"][0]["targets"].as_array_mut().unwrap() {
        t["packets"] = Value::Null;
        t["bytes"] = Value::Null;
    }
    let r = render_dpt(&no_fwd, false);
    assert!(r.contains("no forwarder reports"), "{r}");
    assert!(r.contains("1,234        -      -"), "{r}");
}

#[test]
fn renders_the_vipas() {
    let v = json!({"node": "fwd-b", "vipas": [
        {"vipa": "192.0.2.10", "state": "Backup", "role": "idle", "for_ms": 312_000, "epoch": "3.1", "term": 3,
         "owner": "fwd-a", "deactivated": false, "configured_owner": "fwd-a", "backups": ["fwd-b"], "rank": 1},
        {"vipa": "192.0.2.20", "state": "Moving", "role": "claiming", "for_ms": 40, "epoch": "4.1", "term": 4,
         "owner": "fwd-b", "deactivated": false, "configured_owner": "fwd-a", "backups": ["fwd-b"], "rank": 1},
        {"vipa": "2001:db8::10", "state": "Deactivated", "role": "idle", "epoch": "0.0", "term": 0, "owner": null,
         "deactivated": true, "configured_owner": "fwd-a", "backups": [], "rank": null}]});
    let s = render_vipas(&v);
    assert!(
        s.starts_with(
            "node fwd-b\n\
         VIPA          STATE HERE        SINCE  OWNER  EPOCH  CONFIGURED OWNER  RANK HERE\n\
         192.0.2.10    Backup       5m 12s ago  fwd-a    3.1  fwd-a                     1\n\
         192.0.2.20    Moving         40ms ago  fwd-b    4.1  fwd-a                     1\n\
         2001:db8::10  Deactivated           -  -          -  fwd-a                     -\n"
        ),
        "{s}"
    );
    assert!(s.ends_with(STATE_LEGEND), "{s}");
}

fn crt_json() -> Value {
    json!({"node": "fwd-a", "crt": [
        {"vipa": "192.0.2.10", "service": "tcp/80", "client": "198.51.100.7:40000", "target": "10.20.0.11", "age_ms": 75_000},
        {"vipa": "192.0.2.10", "service": "tcp/80", "client": "198.51.100.7:40001", "target": "10.20.0.12"},
        {"vipa": "192.0.2.20", "service": "tcp/443", "client": "198.51.100.8:5", "target": "10.20.0.11"},
    ]})
}

fn crt_args(f: impl FnOnce(&mut CrtArgs)) -> CrtArgs {
    let mut a = CrtArgs {
        vipa: None,
        client: None,
        target: None,
        limit: None,
        json: false,
    };
    f(&mut a);
    a
}

#[test]
fn filters_and_limits_the_crt() {
    let (v, n) = filter_crt(&crt_json(), &crt_args(|_| {}));
    assert_eq!((n, v.get("matched")), (3, None));
    assert!(render_crt(&v, n).ends_with("\n3 connections\n"));

    let (v, n) = filter_crt(
        &crt_json(),
        &crt_args(|a| a.target = Some("10.20.0.11".parse().unwrap())),
    );
    assert_eq!((n, &v["matched"], &v["total"]), (2, &json!(2), &json!(3)));

    let client = parse_client("198.51.100.7").unwrap();
    let (v, n) = filter_crt(
        &crt_json(),
        &crt_args(|a| {
            a.client = Some(client);
            a.limit = Some(1);
        }),
    );
    assert_eq!((n, &v["matched"]), (1, &json!(2)));
    assert_eq!(
        render_crt(&v, n),
        "node fwd-a\n\
         CLIENT              VIPA:PORT          TARGET         AGE\n\
         198.51.100.7:40000  192.0.2.10:80/tcp  10.20.0.11  1m 15s\n\
         showing 1 of 2 matching connections (3 in the CRT); raise --limit for more\n"
    );
    let client = parse_client("198.51.100.7:40001").unwrap();
    let (_, n) = filter_crt(&crt_json(), &crt_args(|a| a.client = Some(client)));
    assert_eq!(n, 1);
    let (_, n) = filter_crt(
        &crt_json(),
        &crt_args(|a| a.vipa = Some("192.0.2.20".parse().unwrap())),
    );
    assert_eq!(n, 1);
}

#[test]
fn renders_the_counters_per_worker_and_reason() {
    let v = json!({"node": "fwd-a", "control": {"frames_sent": 12, "new_flows": 1_000_000},
        "forwarder": [{"rx_packets": 10, "drop_no_vipa": 1}, {"rx_packets": 5}]});
    let s = render_stats(&v, None);
    assert!(s.contains("new_flows    1,000,000\n"), "{s}");
    assert!(
        s.contains(
            "COUNTER       WORKER 0  WORKER 1  TOTAL\n\
         drop_no_vipa         1         0      1\n\
         rx_packets          10         5     15\n"
        ),
        "{s}"
    );
    let s = render_stats(
        &json!({"node": "n", "control": {}, "forwarder": null}),
        None,
    );
    assert!(s.contains("no forwarder is attached"), "{s}");
}

#[test]
fn dpt_changes_name_the_target() {
    let before = dpt_json();
    let mut after = dpt_json();
    after["dpt"][0]["targets"][0]["state"] = json!("quiesced");
    after["dpt"][0]["targets"][0]["ready"] = json!(false);
    assert_eq!(
        dpt_changes(&before, &after),
        vec!["192.0.2.10:80/tcp 10.20.0.11: ready (ready yes) -> quiesced (ready no)"]
    );
    assert!(dpt_changes(&before, &before).is_empty());
}

#[test]
fn ages_for_people() {
    assert_eq!(age(850), "850ms");
    assert_eq!(age(42_000), "42s");
    assert_eq!(age(312_000), "5m 12s");
    assert_eq!(age(3 * 3_600_000 + 120_000), "3h 02m");
    assert_eq!(age(2 * 86_400_000 + 4 * 3_600_000), "2d 04h");
}

fn status_json() -> Value {
    json!({
        "node": "fwd-a", "version": "0.1.0", "uptime_ms": 11_000_000u64,
        "vipas": [
            {"vipa": "192.0.2.10", "state": "Active", "role": "owner", "epoch": "3.0", "owner": "fwd-a",
             "rank": 0, "for_ms": 312_000, "routed": true, "targets": 2, "targets_ready": 2, "connections": 1234},
            {"vipa": "192.0.2.20", "state": "Backup", "role": "idle", "epoch": "2.0", "owner": "fwd-b",
             "rank": 1, "for_ms": 5_000, "routed": false, "targets": 0, "targets_ready": 0, "connections": 0}],
        "snapshot": {"channel": "/dev/shm/vipa", "generation": 12, "age_ms": 4_000, "published": 12, "errors": 0},
        "forwarder": {"attached": true, "health": "ok", "problem": null, "backend": "afxdp", "pid": 4242,
            "uptime_ms": 10_900_000u64, "heartbeat_age_ms": 2, "workers": 2, "worker_generations": [12, 12],
            "generation_loaded": 12, "in_sync": true, "snapshots_loaded": 12, "snapshots_refused": 0,
            "last_refused": null, "last_refusal": null},
        "peers": [{"node": "fwd-b", "address": "10.10.0.2:7400", "swim": "up", "stream_out": true,
            "streams_in": 1, "last_heard_ms": 40}],
        "agents": [{"target": "10.20.0.11", "stream_out": true, "streams_in": 1, "last_heard_ms": 50,
            "last_report_ms": 120},
            {"target": "10.20.0.12", "stream_out": false, "streams_in": 0, "last_heard_ms": null,
            "last_report_ms": null}],
    })
}

#[test]
fn renders_the_status_on_one_screen() {
    let s = render_status(&status_json(), "http://127.0.0.1:9470");
    assert_eq!(
        s,
        "node fwd-a, up 3h 03m (vipa-control 0.1.0 at http://127.0.0.1:9470)\n\
         \n\
         VIPA        STATE        SINCE  EPOCH  OWNER  RANK  TARGETS READY  CONNECTIONS\n\
         192.0.2.10  Active  5m 12s ago    3.0  fwd-a     0         2 of 2        1,234\n\
         192.0.2.20  Backup      5s ago    2.0  fwd-b     1              -            -\n\
         \n\
         forwarder  ok: afxdp, 2 workers, pid 4242, up 3h 01m, heartbeat 2ms ago\n\
         snapshot   generation 12 published 4s ago on /dev/shm/vipa\n\
         \x20          the forwarder uses 12 on every worker; 12 loaded, 0 refused\n\
         \n\
         PEER   ADDRESS         SWIM  STREAM OUT  STREAMS IN  LAST HEARD\n\
         fwd-b  10.10.0.2:7400  up    up                   1    40ms ago\n\
         \n\
         AGENT       STREAM OUT  STREAMS IN  LAST HEARD  LAST REPORT\n\
         10.20.0.11  up                   1    50ms ago    120ms ago\n\
         10.20.0.12  down                 0           -            -\n"
    );
    assert!(s.lines().count() <= 24, "one screen");
}

#[test]
fn the_status_names_a_sick_or_missing_forwarder() {
    let mut v = status_json();
    v["forwarder"]["health"] = json!("down");
    v["forwarder"]["problem"] = json!(
        "no heartbeat from the forwarder for 15s: is vipa-forwarder (pid 4242) still running?"
    );
    v["forwarder"]["in_sync"] = json!(false);
    v["forwarder"]["worker_generations"] = json!([11, 12]);
    v["forwarder"]["snapshots_refused"] = json!(1);
    v["forwarder"]["last_refused"] = json!(13);
    v["forwarder"]["last_refusal"] = json!("checksum mismatch");
    let s = render_status(&v, "u");
    assert!(s.contains("forwarder  DOWN: afxdp"), "{s}");
    assert!(
        s.contains("           no heartbeat from the forwarder for 15s"),
        "{s}"
    );
    assert!(
        s.contains("workers use 11, 12 (switching, or 12 refused); 12 loaded, 1 refused (last: generation 13, checksum mismatch)"),
        "{s}"
    );
    v["forwarder"] = json!({"attached": false, "health": "absent", "problem": "no back channel /dev/shm/vipa.back yet"});
    let s = render_status(&v, "u");
    assert!(
        s.contains("forwarder  ABSENT\n           no back channel"),
        "{s}"
    );
    v["snapshot"]["channel"] = json!(null);
    assert!(render_status(&v, "u").contains("without --snapshot"));
}

#[test]
fn renders_the_configuration() {
    let v = json!({"node": "fwd-a",
        "cluster": {"nodes": [{"name": "fwd-a", "address": "10.10.0.1:7400"}, {"name": "fwd-b", "address": "10.10.0.2:7400"}],
            "agent_port": 7400, "api": "127.0.0.1:9470", "probe_interval_ms": 200, "probe_timeout_ms": 80,
            "suspect_timeout_ms": 400, "collect_timeout_ms": 150, "refresh_interval_ms": 500, "restart_hold_ms": 30_000},
        "vipas": [{"vipa": "192.0.2.10", "services": ["tcp/80", "tcp/443"], "owner": "fwd-a", "backups": ["fwd-b"],
            "moveable": "when-idle", "distribution": "maglev", "table_size": 65537,
            "targets": [{"target": "10.20.0.11", "weight": 1}, {"target": "10.20.0.12", "weight": 0}],
            "candidates": [
                {"node": "fwd-a", "rank": 0, "targets": ["10.20.0.11", "10.20.0.12"], "every_target": true},
                {"node": "fwd-b", "rank": 1, "targets": ["10.20.0.11"], "every_target": false}]}]});
    assert_eq!(
        render_config(&v),
        "node fwd-a\n\
         cluster  fwd-a 10.10.0.1:7400 (this node), fwd-b 10.10.0.2:7400; agents on port 7400; API 127.0.0.1:9470\n\
         timing   probe every 200ms (answer within 80ms), suspect 400ms, collect 150ms, refresh 500ms, restart hold 30s\n\
         \n\
         VIPA        SERVICES         OWNER  BACKUPS (BY RANK)  MOVEABLE   DISTRIBUTION  TABLE SIZE\n\
         192.0.2.10  tcp/80, tcp/443  fwd-a  fwd-b              when-idle  maglev            65,537\n\
         \n\
         VIPA        TARGET      WEIGHT  NEW CONNECTIONS FROM\n\
         192.0.2.10  10.20.0.11       1  fwd-a, fwd-b\n\
         192.0.2.10  10.20.0.12       0  fwd-a\n\
         (weight 0: draining, no new connections; a node that lists no candidates gives new connections to every target)\n"
    );
    assert!(render_config(&json!({"node": "n", "cluster": {}, "vipas": []})).contains("no VIPAs"));
}

#[test]
fn rates_come_from_successive_samples() {
    let before = json!({"node": "fwd-a", "control": {"frames_sent": 100, "new_flows": 7},
        "forwarder": [{"rx_packets": 1_000, "drop_no_vipa": 4}, {"rx_packets": 500}]});
    let after = json!({"node": "fwd-a", "control": {"frames_sent": 300, "new_flows": 7},
        "forwarder": [{"rx_packets": 21_000, "drop_no_vipa": 5, "drop_tx_full": 0}, {"rx_packets": 100}]});
    let r = stats::counter_rates(&before, &after, 2.0);
    assert_eq!(r["control"]["frames_sent"], 100.0);
    assert_eq!(r["control"]["new_flows"], 0.0);
    assert_eq!(r["forwarder"][0]["rx_packets"], 10_000.0);
    assert_eq!(r["forwarder"][0]["drop_no_vipa"], 0.5);
    // Went down: the forwarder restarted; no rate rather than a wrong one.
    assert_eq!(r["forwarder"][1]["rx_packets"], Value::Null);
    // No forwarder in the later sample.
    let gone = json!({"node": "fwd-a", "control": {}, "forwarder": null});
    assert_eq!(
        stats::counter_rates(&before, &gone, 1.0)["forwarder"],
        Value::Null
    );

    let s = render_stats(&after, Some(&r));
    assert!(s.contains("COUNTER      VALUE  PER SECOND\n"), "{s}");
    assert!(s.contains("frames_sent    300         100\n"), "{s}");
    assert!(
        s.contains(
            "COUNTER       WORKER 0 /s  WORKER 1 /s   TOTAL  TOTAL /s\n\
             drop_no_vipa          0.5          0.0       5       0.5\n\
             rx_packets         10,000            -  21,100         -\n\
             (1 counters still at 0 not shown; vipactl stats shows all)\n"
        ),
        "{s}"
    );
    assert!(render_stats(&after, None).contains("drop_tx_full"));
}

#[test]
fn a_watch_redraws_and_a_later_failure_does_not_end_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = AtomicUsize::new(0);
    let mut out = Vec::new();
    // The third sample raises SIGINT as Ctrl-C would: the watch ends, 0.
    let mut fetch = || {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        match n {
            0 => Ok(json!({"node": "n", "control": {"c": 10}, "forwarder": null})),
            1 => Err(refused("the daemon went away".into())),
            _ => {
                signal_hook::low_level::raise(signal_hook::consts::SIGINT).unwrap();
                Ok(json!({"node": "n", "control": {"c": 30}, "forwarder": null}))
            }
        }
    };
    stats::watch(&mut out, Duration::from_millis(100), false, &mut fetch).unwrap();
    let s = String::from_utf8(out).unwrap();
    let screens: Vec<&str> = s.split(stats::CLEAR).filter(|x| !x.is_empty()).collect();
    assert_eq!(screens.len(), 3, "{s}");
    assert!(screens[0].contains("rates from the next sample on"), "{s}");
    assert!(screens[1].contains("the daemon went away"), "{s}");
    // Rates over the two good samples, about 0.2 s apart.
    assert!(screens[2].contains("c           30"), "{s}");
    assert!(screens[2].contains("PER SECOND"), "{s}");

    // The first sample's failure is the command's.
    let mut fail = || Err(refused("no".into()));
    let e = stats::watch(&mut Vec::new(), Duration::from_millis(10), true, &mut fail).unwrap_err();
    assert_eq!(e.code, EXIT_REFUSED);
}

#[test]
fn every_command_has_help_with_examples() {
    use clap::CommandFactory;
    let mut top = Cli::command();
    top.build();
    for sub in top.get_subcommands_mut() {
        let name = sub.get_name().to_owned();
        if name == "help" {
            continue;
        }
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Examples:"), "{name}: {help}");
        assert!(
            help.contains(&format!("vipactl {name}")),
            "{name}'s examples use it: {help}"
        );
    }
}

#[test]
fn completions_need_no_daemon() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef vipactl"),
        ("fish", "complete -c vipactl"),
    ] {
        // An address nothing listens on: completions must not ask it.
        let c = cli(&["--control", "http://127.0.0.1:1", "completions", shell]).unwrap();
        let mut out = Vec::new();
        assert_eq!(run(&c, &mut out), EXIT_OK, "{shell}");
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["status", "quiesce", "watch", "dry-run"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    assert!(cli(&["completions", "tcsh"]).is_err());
}
