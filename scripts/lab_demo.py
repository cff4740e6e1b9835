"""Measurements for scripts/demo, from what the lab's clients write.

  lab_demo.py stall STATUS SINCE TIMEOUT
      Waits (up to TIMEOUT s) until every live echo connection has had a
      good round trip after SINCE (unix seconds); prints
      {"alive", "lost", "stall_ms", "median_ms"}: stall_ms is the longest time
      from SINCE to a connection's first round trip after it (as
      scripts/e2e-failover measures a takeover), median_ms the median.
  lab_demo.py gap STATUS FROM TO
      {"alive", "lost", "gap_ms"}: the longest pause between two round trips
      of any connection that overlaps [FROM, TO] (a takeback, a link loss).
  lab_demo.py window LOG FROM [TO]
      HTTP requests started in [FROM, TO) (lab_http_client.py's log):
      {"ok", "failed", "per_target", "reused_ok", "reused_failed"}: the
      last two count requests on a client port an earlier request used, by
      the target that earlier one went to.
  lab_demo.py by-target CRT STATUS
      The echo connections (their local ports) per target name, from
      `vipactl crt --json` and the echo client's status.
  lab_demo.py kept STATUS SINCE PORT...
      How many of these connections are ok with a round trip after SINCE.
  lab_demo.py reuse-note WINDOW_JSON TARGET
      A sentence on the requests of a window that went to TARGET on reused
      client ports (nothing when none did).
  lab_demo.py lost ECHO_LOG
      How many connections the echo client's final JSON says were lost.
  lab_demo.py summary RESULTS
      The final table, from the demo's results file (KEY=VALUE lines;
      echo_log and http_log name the clients' logs).
"""
import json
import sys
import time


def status(path):
    with open(path) as f:
        return json.load(f)["connections"]


def stall(path, since, timeout):
    end = time.time() + timeout
    while True:
        conns = status(path)
        live = [c for c in conns if c["ok"]]
        firsts = [next((t for t in c["recent"] if t > since), None) for c in live]
        if all(f is not None for f in firsts) or time.time() > end:
            break
        time.sleep(0.1)
    done = sorted(f for f in firsts if f is not None)
    return {"alive": len(done), "lost": len(conns) - len(done),
            "stall_ms": round((done[-1] - since) * 1000) if done else None,
            "median_ms": round((done[len(done) // 2] - since) * 1000) if done else None}


def gap(path, start, stop):
    conns = status(path)
    worst = 0.0
    for c in conns:
        ts = c["recent"]
        for a, b in zip(ts, ts[1:]):
            if b >= start and a <= stop:
                worst = max(worst, b - a)
    live = sum(1 for c in conns if c["ok"])
    return {"alive": live, "lost": len(conns) - live, "gap_ms": round(worst * 1000)}


def window(path, start, stop):
    """Counts requests started in [start, stop); "reused" are those whose
    client port an earlier request used, and where that one went (the
    forwarder's flow table remembers a finished flow, so a new connection on
    a reused port goes where the old one went)."""
    ok = failed = 0
    per = {}
    reused_ok = {}
    reused_failed = {}
    last = {}  # client port -> target of its latest request
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            t, name, port = float(parts[0]), parts[1], parts[3]
            before = last.get(port)
            if name != "-":
                last[port] = name
            if t < start or t >= stop:
                continue
            if name == "-":
                failed += 1
                if before:
                    reused_failed[before] = reused_failed.get(before, 0) + 1
            else:
                ok += 1
                per[name] = per.get(name, 0) + 1
                if before == name:
                    reused_ok[name] = reused_ok.get(name, 0) + 1
    return {"ok": ok, "failed": failed, "per_target": dict(sorted(per.items())),
            "reused_ok": reused_ok, "reused_failed": reused_failed}


def by_target(crt_path, status_path):
    with open(crt_path) as f:
        crt = json.load(f)["crt"]
    ports = {c["port"] for c in status(status_path)}
    out = {}
    for row in crt:
        port = int(row["client"].rsplit(":", 1)[1])
        if row["service"].endswith("/9000") and port in ports:
            name = "t" + str(int(row["target"].rsplit(".", 1)[1]) - 10)
            out.setdefault(name, []).append(port)
    return {k: sorted(v) for k, v in sorted(out.items())}


def kept(path, since, ports):
    conns = {c["port"]: c for c in status(path)}
    good = sum(1 for p in ports if conns.get(p, {}).get("ok") and (conns[p]["last_ok"] or 0) > since)
    return {"of": len(ports), "kept": good}


def last_json(path):
    """The last line of a client's log: its final JSON."""
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def num(v):
    try:
        return f"{int(v):,}"
    except (TypeError, ValueError):
        return str(v)


def summary(path):
    r = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                r[k] = v
    echo = last_json(r["echo_log"])
    httpf = last_json(r["http_log"])
    e_open = len(echo)
    e_kept = sum(1 for c in echo if c["ok"])
    h_req = httpf.get("requests", 0)
    h_ok = httpf.get("ok", 0)
    spread = ", ".join(f"{k} {num(v)}" for k, v in sorted(httpf.get("per_target", {}).items()))
    before = int(r.get("restart_refused_before") or 0)
    reused = int(r.get("restart_refused_reused") or 0)
    why = f"; {before} refused by t2 before the owner knew of its restart" if before else ""
    why += f"; {reused} refused by t2 on reused client ports (flow table)" if reused else ""
    rows = [("long-lived echo (byte-checked, 10 round trips/s)", e_open, e_kept, e_open - e_kept, ""),
            ("short HTTP (a new connection per request)", h_req, h_ok, h_req - h_ok, spread + why)]
    if r.get("wrk_requests"):
        errs = int(r.get("wrk_errors") or 0)
        rows.append(("wrk burst, 5 s (16 keep-alive connections)", 16, max(0, 16 - errs), errs,
                     f"{num(r['wrk_requests'])} requests, {num(r.get('wrk_rps'))} requests/s; "
                     f"lost = wrk's socket errors and non-2xx"))
    out = ["", f"  {'connections':<50} {'opened':>7} {'kept':>7} {'lost':>6}  notes"]
    for name, a, b, c, note in rows:
        out.append(f"  {name:<50} {num(a):>7} {num(b):>7} {num(c):>6}  {note}")
    out.append("")
    out.append(f"  {'event':<54} {'time':>9}  {'echo kept':>9}  notes")
    ev = [
        ("takeover: kill -9 of fwd-a (control + forwarder)", r.get("takeover_ms"), r.get("takeover_kept"),
         f"fwd-b owner after {num(r.get('takeover_owner_ms'))} ms; time = longest stall of a connection"),
        ("takeback: fwd-a started again", r.get("takeback_ms"), r.get("takeback_kept"),
         f"longest stall of a connection {num(r.get('takeback_gap_ms'))} ms"),
        ("quiesce t3, then resume", None, r.get("quiesce_kept"),
         f"new HTTP to t3 while quiesced: {r.get('quiesce_new_t3')}"
         + (f" ({r['quiesce_reused_t3']} on reused client ports)" if r.get("quiesce_reused_t3", "0") != "0" else "")
         + f"; after resume: {r.get('resume_new_t3')}"),
        ("application restart on t2 (listener away 6 s)", r.get("restart_ms"), r.get("restart_kept"),
         f"time = restarting in the DPT; new HTTP sent to t2 meanwhile (refused): {r.get('restart_refused')}"
         + (f", {r['restart_refused_reused']} of them on reused client ports" if r.get("restart_refused_reused", "0") != "0" else "")),
        (f"link loss on fwd-a {r.get('link_port', '?')}", r.get("link_ms"), r.get("link_kept"),
         f"time = until the client's ARP entry moved to {r.get('link_other', '?')}; "
         f"longest stall {num(r.get('link_gap_ms'))} ms"),
    ]
    for name, ms, kept_, note in ev:
        t = f"{num(ms)} ms" if ms not in (None, "") else "-"
        out.append(f"  {name:<54} {t:>9}  {kept_ or '-':>9}  {note}")
    print("\n".join(out))


cmd = sys.argv[1]
a = sys.argv[2:]
if cmd == "stall":
    print(json.dumps(stall(a[0], float(a[1]), float(a[2]))))
elif cmd == "gap":
    print(json.dumps(gap(a[0], float(a[1]), float(a[2]))))
elif cmd == "window":
    print(json.dumps(window(a[0], float(a[1]), float(a[2]) if len(a) > 2 else float("inf"))))
elif cmd == "by-target":
    print(json.dumps(by_target(a[0], a[1])))
elif cmd == "kept":
    print(json.dumps(kept(a[0], float(a[1]), [int(p) for p in a[2:]])))
elif cmd == "reuse-note":
    w, t = json.loads(a[0]), a[1]
    n_ok, n_failed = w["reused_ok"].get(t, 0), w["reused_failed"].get(t, 0)
    if n_ok or n_failed:
        print(f" — of these, {n_ok} answered by {t} and {n_failed} refused by it came on client ports whose"
              f" earlier connection {t} had served: the forwarder's flow table remembers a flow for 300 s"
              f" and sends the port there again (a known limit)")
elif cmd == "lost":
    print(sum(1 for c in last_json(a[0]) if not c["ok"]))
elif cmd == "summary":
    summary(a[0])
else:
    sys.exit(f"lab_demo.py: unknown command {cmd}")
