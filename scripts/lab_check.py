"""vipactl against a live lab (scripts/lab): the JSON of every read command,
the effect of every write command. Run by scripts/lab-test.

Usage: lab_check.py ECHO_STATE_DIR

The lab (VIPA_LAB_PREFIX / VIPA_LAB_DIR in the environment) is up, and
e2e_failover_client.py holds long-lived echo connections to VIPA:9000 with
its status in ECHO_STATE_DIR. Each vipactl command is checked by one function
registered with @check("COMMAND"); the commands are the ones `vipactl
--help` lists, so a command another branch adds (status, config) is checked
when it is there, and a listed command with no check is reported. Adding a
command is one function.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

LAB = ["bash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")]
ECHO = sys.argv[1]
ENV = dict(line.split("=", 1) for line in subprocess.run(
    LAB + ["env"], check=True, capture_output=True, text=True).stdout.split())
NET = ENV["LAB_NET"]
VIPA = ENV["LAB_VIPA"]
CLIENT = ENV["LAB_CLIENT"]
TARGETS = [f"{NET}.{11 + i}" for i in range(3)]
SERVICES = {"tcp/80", "tcp/9000"}
NODES = {"a": "fwd-a", "b": "fwd-b"}

CHECKS = {}  # command -> function
passed = []


def check(command):
    def register(f):
        CHECKS[command] = f
        return f
    return register


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


def vipactl(node, *args):
    """(exit code, stdout, stderr) of vipactl against NODE's vipa-control."""
    p = subprocess.run(LAB + ["vipactl", node, *args], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def vjson(node, *args):
    rc, out, err = vipactl(node, *args)
    expect(rc == 0, f"vipactl {' '.join(args)} on {node}: exit {rc}: {err.strip()}")
    try:
        return json.loads(out)
    except ValueError as e:
        raise Failed(f"vipactl {' '.join(args)} on {node}: not JSON ({e}): {out[:200]}")


def ok(what):
    passed.append(what)
    print(f"  ok  {what}", flush=True)


def until(secs, what, f):
    """Polls f() until it returns a true value; fails with WHAT after SECS."""
    end = time.time() + secs
    last = None
    while time.time() < end:
        try:
            last = f()
            if last:
                return last
        except Failed as e:
            last = e
        time.sleep(0.1)
    raise Failed(f"timed out after {secs} s: {what} (last: {last})")


def echo_status():
    with open(os.path.join(ECHO, "status.json")) as f:
        return json.load(f)["connections"]


def echo_ports():
    return sorted(c["port"] for c in echo_status())


def echo_all_fine(since):
    """Every echo connection ok, with a round trip after SINCE."""
    conns = echo_status()
    return all(c["ok"] and (c["last_ok"] or 0) > since for c in conns)


def vipa_entry(node):
    j = vjson(node, "vipa", "--json")
    expect(j.get("node") == NODES[node], f"vipa --json on {node}: node {j.get('node')!r}")
    rows = [v for v in j["vipas"] if v["vipa"] == VIPA]
    expect(len(rows) == 1, f"vipa --json on {node}: {VIPA} listed {len(rows)} times")
    return rows[0]


def role(node):
    return vipa_entry(node)["role"]


def dpt_rows(node):
    j = vjson(node, "dpt", "--json")
    expect(j.get("node") == NODES[node], f"dpt --json on {node}: node {j.get('node')!r}")
    return j["dpt"]


def states(node):
    """{(service, target): (state, ready)} from NODE's DPT."""
    return {(r["service"], t["target"]): (t["state"], t["ready"]) for r in dpt_rows(node) for t in r["targets"]}


def all_ready(node):
    s = states(node)
    return len(s) == 6 and all(v == ("ready", True) for v in s.values())


# ---------------------------------------------------------------------------
# Read commands.

@check("vipa")
def check_vipa():
    now_ms = time.time() * 1000
    a = vipa_entry("a")
    for k, t in [("role", str), ("epoch", str), ("term", int), ("owner", str), ("deactivated", bool),
                 ("configured_owner", str), ("backups", list), ("rank", int), ("since_unix_ms", int),
                 ("for_ms", int)]:
        expect(isinstance(a.get(k), t), f"vipa --json: {k} = {a.get(k)!r}, expected a {t.__name__}")
    expect(a["role"] == "owner" and a["owner"] == "fwd-a", f"fwd-a: role {a['role']}, owner {a['owner']}")
    expect(a.get("state") == "Active", f"fwd-a: state {a.get('state')!r}, expected Active")
    expect(a["configured_owner"] == "fwd-a" and a["backups"] == ["fwd-b"], f"fwd-a: configured {a}")
    expect(a["rank"] == 0 and a["deactivated"] is False and a["term"] >= 1, f"fwd-a: {a}")
    expect(a["since_unix_ms"] <= now_ms + 1000 and a["for_ms"] >= 0, f"fwd-a: since {a['since_unix_ms']}")
    b = vipa_entry("b")
    expect(b["role"] == "idle" and b["owner"] == "fwd-a" and b["rank"] == 1, f"fwd-b: {b}")
    expect(b.get("state") == "Backup", f"fwd-b: state {b.get('state')!r}, expected Backup")
    expect(b["epoch"] == a["epoch"], f"epochs differ: fwd-a {a['epoch']}, fwd-b {b['epoch']}")
    ok("vipa --json: fwd-a owner/Active (rank 0), fwd-b idle/Backup (rank 1), same epoch, since/for_ms present")


@check("dpt")
def check_dpt():
    rows = dpt_rows("a")
    expect({r["service"] for r in rows} == SERVICES and len(rows) == 2, f"dpt services: {rows}")
    conns = {}
    for r in rows:
        expect(r["vipa"] == VIPA and isinstance(r["epoch"], str), f"dpt row: {r}")
        expect(sorted(t["target"] for t in r["targets"]) == TARGETS, f"dpt targets: {r['targets']}")
        for t in r["targets"]:
            expect(t["ready"] is True and t["state"] == "ready" and t["weight"] == 1, f"dpt target: {t}")
            expect(isinstance(t["candidate"], bool) and isinstance(t["connections"], int), f"dpt target: {t}")
            conns[r["service"]] = conns.get(r["service"], 0) + t["connections"]
    n = len(echo_ports())
    expect(conns["tcp/9000"] >= n, f"dpt: {conns['tcp/9000']} connections on tcp/9000, the client holds {n}")
    d = vjson("a", "dpt", "--json")
    traffic = d["traffic"]
    expect(sorted(t["target"] for t in traffic) == TARGETS, f"dpt traffic: {traffic}")
    for t in traffic:
        expect(all(isinstance(t.get(k), int) for k in ("connections_total", "packets", "bytes")), f"dpt traffic: {t}")
    expect(sum(t["packets"] for t in traffic) > 0 and sum(t["connections_total"] for t in traffic) >= n,
           f"dpt traffic: nothing forwarded? {traffic}")
    # Per VIPA:port and target: the echo traffic on tcp/9000, never more
    # than the per-target totals (read after them, over all VIPA:ports).
    sent = {}
    for r in d["dpt"]:
        for t in r["targets"]:
            expect(isinstance(t.get("packets"), int) and isinstance(t.get("bytes"), int), f"dpt target: {t}")
            sent[r["service"]] = sent.get(r["service"], 0) + t["packets"]
    expect(sent.get("tcp/9000", 0) > 0, f"dpt: no packets per VIPA:port on tcp/9000: {sent}")
    expect(sum(sent.values()) <= sum(t["packets"] for t in traffic),
           f"dpt: more packets per VIPA:port than per target: {sent} {traffic}")
    expect(dpt_rows("b") == [], "fwd-b (idle) has a DPT")
    ok(f"dpt --json: 2 services x 3 targets ready, weight 1, {conns['tcp/9000']} echo connections, packets and bytes per "
       f"VIPA:port and target ({sent.get('tcp/9000', 0)} on tcp/9000), traffic per target "
       f"(connections_total, packets, bytes); fwd-b empty")
    rc, out, _ = vipactl("a", "dpt", "--detail")
    expect(rc == 0 and "EPOCH" in out.upper(), f"dpt --detail: {out[:200]}")
    ok("dpt --detail (table)")


@check("crt")
def check_crt():
    ports = echo_ports()
    j = vjson("a", "crt", "--json")
    expect(j.get("node") == "fwd-a", f"crt --json: node {j.get('node')}")
    mine = {}
    for r in j["crt"]:
        expect(set(r) >= {"vipa", "service", "client", "target", "age_ms", "since_unix_ms"}, f"crt row: {r}")
        expect(isinstance(r["age_ms"], int) and r["age_ms"] >= 0, f"crt row age: {r}")
        if r["service"] == "tcp/9000" and r["client"].startswith(CLIENT + ":"):
            mine[int(r["client"].rsplit(":", 1)[1])] = r["target"]
    missing = [p for p in ports if p not in mine]
    expect(not missing, f"crt: the client's echo connections from ports {missing} are not in fwd-a's CRT")
    expect(all(mine[p] in TARGETS for p in ports), f"crt: targets {set(mine.values())}")
    f = vjson("a", "crt", "--client", CLIENT, "--limit", "2", "--json")
    expect(len(f["crt"]) == 2 and f.get("matched", 0) >= len(ports), f"crt --client --limit 2: {f}")
    t = mine[ports[0]]
    g = vjson("a", "crt", "--target", t, "--json")
    expect(g["crt"] and all(r["target"] == t for r in g["crt"]), f"crt --target {t}: {g['crt'][:3]}")
    p = vjson("a", "crt", "--client", f"{CLIENT}:{ports[0]}", "--json")
    expect(len(p["crt"]) == 1 and p["crt"][0]["target"] == t, f"crt --client {CLIENT}:{ports[0]}: {p}")
    expect(vjson("b", "crt", "--json")["crt"] == [], "fwd-b (idle) has a CRT")
    ok(f"crt --json: all {len(ports)} echo connections, each on a target; --client/--target/--limit filter; fwd-b empty")


@check("stats")
def check_stats():
    s1 = vjson("a", "stats", "--json")
    expect(s1.get("node") == "fwd-a", f"stats: node {s1.get('node')}")
    ctl = s1["control"]
    for k in ["frames_received", "frames_sent", "snapshots_published", "snapshot_generation", "new_flows",
              "connects", "messages_dropped", "peers_rejected", "snapshot_errors", "announcements"]:
        expect(isinstance(ctl.get(k), int), f"stats control.{k} = {ctl.get(k)!r}")
    fw = s1["forwarder"]
    expect(isinstance(fw, list) and len(fw) == 1, f"stats forwarder: {str(fw)[:200]} (one worker: cores = [0])")
    for k in ["rx_packets", "tx_packets", "forwarded", "gratuitous_arp_sent", "link_down", "flows_created"]:
        expect(isinstance(fw[0].get(k), int), f"stats forwarder[0].{k} = {fw[0].get(k)!r}")
    expect(fw[0]["forwarded"] > 0 and fw[0]["gratuitous_arp_sent"] > 0, f"stats: {fw[0]}")
    time.sleep(1.6)  # the forwarder copies its counters to the back channel once a second
    s2 = vjson("a", "stats", "--json")
    f1, f2 = fw[0]["forwarded"], s2["forwarder"][0]["forwarded"]
    expect(f2 > f1, f"stats: forwarded did not advance ({f1} → {f2}) while the echo client runs")
    c1, c2 = ctl["frames_received"], s2["control"]["frames_received"]
    expect(c2 > c1, f"stats: control frames_received did not advance ({c1} → {c2})")
    b = vjson("b", "stats", "--json")
    expect(b.get("node") == "fwd-b" and isinstance(b["forwarder"], list), f"stats on fwd-b: {str(b)[:200]}")
    ok(f"stats --json: control and forwarder counters; forwarded {f1} → {f2}, frames_received {c1} → {c2}")
    if "--watch" in vipactl("a", "stats", "--help")[1]:
        check_stats_watch()


def check_stats_watch():
    """stats --watch --json: a JSON line per interval with per-second rates; SIGINT ends it with 0."""
    # The forwarder copies its counters into the back channel once a second:
    # an interval shorter than that may see no change between two samples.
    p = subprocess.Popen(LAB + ["vipactl", "a", "stats", "--watch", "--json", "--interval", "1.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(3)]
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=10)
    rows = [json.loads(line) for line in lines if line.strip()]
    expect(len(rows) == 3, f"stats --watch --json: {len(rows)} lines: {lines}")
    last = rows[-1]
    expect(last.get("node") == "fwd-a" and isinstance(last.get("rates"), dict), f"stats --watch: {str(last)[:200]}")
    rates = [r.get("rates", {}).get("forwarder") or [{}] for r in rows[1:]]
    fwd = max(rates, key=lambda f: f[0].get("forwarded", 0))
    expect(fwd[0].get("forwarded", 0) > 0,
           f"stats --watch: no forwarding rate while the echo client runs: {str(rates)[:300]}")
    expect(rc == 0, f"stats --watch ended by SIGINT with exit {rc}, expected 0")
    ok(f"stats --watch --json: a line per interval with rates (forwarded {fwd[0]['forwarded']:.0f}/s); SIGINT → exit 0")


@check("status")
def check_status():
    n = len(echo_ports())
    a = vjson("a", "status", "--json")
    expect(a.get("node") == "fwd-a", f"status on a: node {a.get('node')!r}")
    f = a["forwarder"]
    expect(f["attached"] is True and f["health"] == "ok" and f["backend"] == "afpacket" and f["workers"] == 1
           and f["in_sync"] is True, f"status on a: forwarder {f}")
    snap = a["snapshot"]
    expect(snap["channel"].endswith("/a-snap") and snap["generation"] >= 1 and snap["errors"] == 0,
           f"status on a: snapshot {snap}")
    expect(f["generation_loaded"] == snap["generation"] or f["in_sync"], f"status on a: {f}, {snap}")
    peers = {p["node"]: p for p in a["peers"]}
    expect(set(peers) == {"fwd-b"} and peers["fwd-b"]["swim"] == "up", f"status on a: peers {a['peers']}")
    agents = {g["target"]: g for g in a["agents"]}
    expect(sorted(agents) == TARGETS and all(g["stream_out"] and g["last_report_ms"] is not None
                                             for g in agents.values()), f"status on a: agents {a['agents']}")
    v = [x for x in a["vipas"] if x["vipa"] == VIPA]
    expect(len(v) == 1 and v[0]["role"] == "owner" and v[0]["routed"] is True and v[0]["targets_ready"] == 3
           and v[0]["connections"] >= n, f"status on a: vipas {a['vipas']}")
    b = vjson("b", "status", "--json")
    expect(b.get("node") == "fwd-b" and b["forwarder"]["health"] == "ok", f"status on b: {str(b)[:300]}")
    vb = [x for x in b["vipas"] if x["vipa"] == VIPA]
    expect(len(vb) == 1 and vb[0]["role"] == "idle" and vb[0]["routed"] is False, f"status on b: {b['vipas']}")
    expect([p["node"] for p in b["peers"]] == ["fwd-a"] and b["peers"][0]["swim"] == "up", f"status on b: {b['peers']}")
    ok(f"status --json: fwd-a's forwarder ok (afpacket, 1 worker, in sync with generation {snap['generation']}), "
       f"peer fwd-b up, 3 agents reporting, VIPA routed with 3 ready and {v[0]['connections']} connections; "
       f"fwd-b's forwarder ok, VIPA not routed, peer fwd-a up")


@check("config")
def check_config():
    for node in ("a", "b"):
        j = vjson(node, "config", "--json")
        expect(j.get("node") == NODES[node], f"config on {node}: node {j.get('node')!r}")
        c = j["cluster"]
        expect([n["name"] for n in c["nodes"]] == ["fwd-a", "fwd-b"], f"config on {node}: nodes {c['nodes']}")
        expect(c["restart_hold_ms"] == 30000 and c["probe_interval_ms"] == 200, f"config on {node}: {c}")
        v = [x for x in j["vipas"] if x["vipa"] == VIPA]
        expect(len(v) == 1, f"config on {node}: vipas {j['vipas']}")
        v = v[0]
        expect(v["owner"] == "fwd-a" and v["backups"] == ["fwd-b"] and v["moveable"] == "immediate"
               and sorted(v["services"]) == sorted(SERVICES), f"config on {node}: {v}")
        expect(sorted((t["target"], t["weight"]) for t in v["targets"]) == [(t, 1) for t in TARGETS],
               f"config on {node}: targets {v['targets']}")
        cand = {c["node"]: c for c in v["candidates"]}
        expect(cand["fwd-a"]["rank"] == 0 and cand["fwd-b"]["rank"] == 1
               and all(c["every_target"] for c in cand.values()), f"config on {node}: candidates {v['candidates']}")
    ok("config --json on both nodes: the lab's cluster (2 nodes, restart hold 30 s), the VIPA's owner, backup, "
       "moveable, services, 3 targets of weight 1, candidates fwd-a (0) and fwd-b (1)")


@check("completions")
def check_completions():
    for shell in ("bash", "zsh", "fish"):
        rc, out, err = vipactl("a", "completions", shell)
        expect(rc == 0 and "vipactl" in out and "quiesce" in out, f"completions {shell}: exit {rc}: {err[:200]}")
    ok("completions bash|zsh|fish: scripts naming vipactl's commands")


# ---------------------------------------------------------------------------
# Write commands.

@check("quiesce")
def check_quiesce():
    t3 = TARGETS[2]
    rc, out, err = vipactl("a", "quiesce", "target", t3, "--vipa", VIPA, "--dry-run")
    expect(rc == 0 and "would send" in out, f"quiesce --dry-run: exit {rc}: {out}{err}")
    time.sleep(0.3)
    expect(all_ready("a"), "quiesce --dry-run changed the DPT")
    ok("quiesce target --dry-run: prints the request, changes nothing")

    rc, out, err = vipactl("a", "quiesce", "target", t3, "--vipa", VIPA)
    expect(rc == 0 and "quiesced" in out, f"quiesce target: exit {rc}: {out}{err}")
    until(5, f"{t3} quiesced for both services at fwd-a", lambda: all(
        v == (("quiesced", False) if t == t3 else ("ready", True)) for (s, t), v in states("a").items()))
    ok(f"quiesce target {t3}: dpt shows it quiesced (ready false) on tcp/80 and tcp/9000, the others ready")
    rc, out, err = vipactl("a", "resume", "target", t3, "--vipa", VIPA)
    expect(rc == 0 and "resumed" in out, f"resume target: exit {rc}: {out}{err}")
    until(5, "every target ready again", lambda: all_ready("a"))
    ok(f"resume target {t3}: ready again")

    rc, out, err = vipactl("a", "quiesce", "target", TARGETS[0], "--vipa", VIPA, "--service", "tcp/9000")
    expect(rc == 0, f"quiesce target --service: exit {rc}: {err}")
    until(5, f"{TARGETS[0]} quiesced for tcp/9000 only", lambda: all(
        v == (("quiesced", False) if (s, t) == ("tcp/9000", TARGETS[0]) else ("ready", True))
        for (s, t), v in states("a").items()))
    rc, _, err = vipactl("a", "resume", "target", TARGETS[0], "--vipa", VIPA, "--service", "tcp/9000")
    expect(rc == 0, f"resume target --service: exit {rc}: {err}")
    until(5, "every target ready again", lambda: all_ready("a"))
    ok("quiesce/resume target --service tcp/9000: only that service's entry changes")

    rc, out, err = vipactl("a", "quiesce", "port", f"{VIPA}:80")
    expect(rc == 0, f"quiesce port: exit {rc}: {out}{err}")
    until(5, "tcp/80 quiesced on every target, tcp/9000 ready", lambda: all(
        v == (("quiesced", False) if s == "tcp/80" else ("ready", True)) for (s, t), v in states("a").items()))
    ok(f"quiesce port {VIPA}:80: every target quiesced for tcp/80 only")
    rc, out, err = vipactl("a", "resume", "port", f"{VIPA}:80")
    expect(rc == 0, f"resume port: exit {rc}: {out}{err}")
    until(5, "every target ready again", lambda: all_ready("a"))
    ok(f"resume port {VIPA}:80: ready again")

    rc, _, err = vipactl("a", "quiesce", "target", f"{NET}.99", "--vipa", VIPA)
    expect(rc == 1 and "not a target" in err, f"quiesce of a non-target: exit {rc} (expected 1): {err}")
    ok("quiesce of an address that is not a target: refused, exit 1")


check("resume")(lambda: None)  # with quiesce, above


@check("deactivate")
def check_deactivate():
    since = time.time()
    rc, out, err = vipactl("a", "deactivate", VIPA)
    expect(rc == 0 and "deactivated" in out, f"deactivate: exit {rc}: {out}{err}")
    until(10, "fwd-b to own the VIPA after fwd-a's deactivate", lambda: role("b") == "owner")
    a = vipa_entry("a")
    expect(a["role"] == "idle" and a["deactivated"] is True and a["owner"] == "fwd-b", f"fwd-a after deactivate: {a}")
    expect(a.get("state") == "Deactivated" and vipa_entry("b").get("state") == "Active",
           f"states after deactivate: fwd-a {a.get('state')}, fwd-b {vipa_entry('b').get('state')}")
    expect(dpt_rows("a") == [], "fwd-a still has a DPT after deactivate")
    until(5, "three ready targets at fwd-b", lambda: all_ready("b"))
    ports = echo_ports()
    crt_b = {int(r["client"].rsplit(":", 1)[1]) for r in vjson("b", "crt", "--json")["crt"]
             if r["client"].startswith(CLIENT + ":") and r["service"] == "tcp/9000"}
    expect(set(ports) <= crt_b, f"fwd-b's CRT lacks the echo connections {sorted(set(ports) - crt_b)}")
    until(10, "every echo connection to echo through fwd-b", lambda: echo_all_fine(time.time() - 0.3))
    ok("deactivate on fwd-a: fwd-b owner (Active), fwd-a idle (Deactivated), fwd-b's DPT ready and CRT has every echo "
       "connection, all of them still echo")
    rc, out, err = vipactl("a", "reactivate", VIPA)
    expect(rc == 0 and "reactivated" in out, f"reactivate: exit {rc}: {out}{err}")
    until(15, "fwd-a to own the VIPA again (moveable = immediate)", lambda: role("a") == "owner")
    a = vipa_entry("a")
    expect(a["deactivated"] is False, f"fwd-a after reactivate: {a}")
    until(5, "fwd-a Active", lambda: vipa_entry("a").get("state") == "Active")
    until(5, "fwd-b idle", lambda: role("b") == "idle")
    until(5, "three ready targets at fwd-a", lambda: all_ready("a"))
    until(10, "every echo connection to echo through fwd-a", lambda: echo_all_fine(time.time() - 0.3))
    lost = [c["port"] for c in echo_status() if not c["ok"]]
    expect(not lost, f"echo connections lost across deactivate/reactivate: {lost}")
    ok(f"reactivate on fwd-a: owner again, fwd-b idle, no echo connection lost "
       f"(deactivate to reactivated: {time.time() - since:.1f} s)")


check("reactivate")(lambda: None)  # with deactivate, above


def exit_codes():
    rc, _, err = vipactl("a", "--control", "http://127.0.0.1:1", "vipa")
    expect(rc == 2, f"an unreachable daemon: exit {rc} (expected 2): {err}")
    rc, _, _ = vipactl("a", "no-such-command")
    expect(rc == 64, f"a bad command: exit {rc} (expected 64)")
    ok("exit codes: unreachable 2, usage 64")


def listed_commands():
    rc, out, _ = vipactl("a", "--help")
    expect(rc == 0, "vipactl --help failed")
    m = re.search(r"^Commands:\n(.*?)\n\n", out, re.S | re.M)
    expect(m, f"vipactl --help lists no commands: {out[:300]}")
    return [line.split()[0] for line in m.group(1).splitlines() if line.strip()]


def main():
    commands = [c for c in listed_commands() if c != "help"]
    print(f"vipactl lists: {' '.join(commands)}", flush=True)
    unchecked = [c for c in commands if c not in CHECKS]
    # Reads first (on the lab as `up` left it), then writes, each restoring it.
    order = ["status", "config", "vipa", "dpt", "crt", "stats", "completions", "quiesce", "resume", "deactivate",
             "reactivate"]
    try:
        for c in sorted((c for c in commands if c in CHECKS), key=lambda c: order.index(c) if c in order else 99):
            CHECKS[c]()
        exit_codes()
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    if unchecked:
        print(f"warning: vipactl lists commands this test does not check: {' '.join(unchecked)} "
              f"(add a @check function to {__file__})", file=sys.stderr)
    print(f"{len(passed)} checks passed")


main()
