"""Long-lived echo connections through the VIPA, every byte checked.

Usage: e2e_failover_client.py VIPA PORT N DURATION_S STATE_DIR

Opens N connections, then each sends 64 random bytes every 100 ms and reads
them back (10 s limit per round trip) until DURATION_S have passed, or, with
DURATION_S = 0, until the file STATE_DIR/stop appears. Writes
STATE_DIR/connected once all are open, and STATE_DIR/status.json every
0.5 s while running (per connection: local port, ok, error, the time of its
last good round trip and of the last 200, for callers that measure a stall
while it runs; written atomically). At the end prints one JSON object: per
connection its local port, whether it survived, and when its last failure /
each of its round trips happened (wall-clock seconds), so that the caller
can measure the stall around a kill.
"""
import json
import os
import socket
import sys
import threading
import time

vipa, port, n, duration, state = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
results = [None] * n
live = [{"ok": True, "error": None, "error_at": None, "times": []} for _ in range(n)]
socks = []
for i in range(n):
    s = socket.create_connection((vipa, port), timeout=5)
    s.settimeout(10)
    socks.append(s)
    live[i]["port"] = s.getsockname()[1]
open(os.path.join(state, "connected"), "w").close()
end = time.time() + duration if duration > 0 else None
stop_file = os.path.join(state, "stop")


def running():
    return time.time() < end if end is not None else not os.path.exists(stop_file)


def run(i, s):
    me = live[i]
    ok_times = me["times"]
    sent = 0
    error = None
    try:
        while running():
            data = os.urandom(64)
            s.sendall(data)
            got = b""
            while len(got) < len(data):
                chunk = s.recv(len(data) - len(got))
                if not chunk:
                    raise ConnectionError("closed by the server")
                got += chunk
            if got != data:
                raise ValueError("echo differs from what was sent")
            sent += len(data)
            ok_times.append(time.time())
            time.sleep(0.1)
    except Exception as e:  # noqa: BLE001 - every failure counts
        error = f"{type(e).__name__}: {e}"
        me.update(ok=False, error=error, error_at=time.time())
    results[i] = {"port": me["port"], "ok": error is None, "error": error,
                  "error_at": time.time() if error else None, "bytes": sent, "times": ok_times}
    s.close()


def write_status():
    rows = []
    for me in live:
        times = me["times"][-200:]
        rows.append({"port": me["port"], "ok": me["ok"], "error": me["error"], "error_at": me["error_at"],
                     "round_trips": len(me["times"]), "last_ok": times[-1] if times else None,
                     "recent": times})
    tmp = os.path.join(state, "status.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"at": time.time(), "connections": rows}, f)
    os.replace(tmp, os.path.join(state, "status.json"))


threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(socks)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    write_status()
    time.sleep(0.5)
write_status()
for t in threads:
    t.join()
print(json.dumps(results))
