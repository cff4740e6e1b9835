"""Long-lived echo connections through the VIPA, every byte checked.

Usage: e2e_failover_client.py VIPA PORT N DURATION_S STATE_DIR

Opens N connections, then each sends 64 random bytes every 100 ms and reads
them back (10 s limit per round trip) until DURATION_S have passed. Writes
STATE_DIR/connected once all are open. At the end prints one JSON object:
per connection whether it survived, and when its last failure / each of its
round trips happened (wall-clock seconds), so that the caller can measure the
stall around a kill.
"""
import json
import os
import socket
import sys
import threading
import time

vipa, port, n, duration, state = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
results = [None] * n
socks = []
for i in range(n):
    s = socket.create_connection((vipa, port), timeout=5)
    s.settimeout(10)
    socks.append(s)
open(os.path.join(state, "connected"), "w").close()
end = time.time() + duration


def run(i, s):
    ok_times = []
    sent = 0
    error = None
    try:
        while time.time() < end:
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
    results[i] = {"ok": error is None, "error": error, "error_at": time.time() if error else None,
                  "bytes": sent, "times": ok_times}
    s.close()


threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(socks)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
