"""Short HTTP connections through the VIPA: a new connection per request.

Usage: lab_http_client.py VIPA PORT RATE STATE_DIR

Sends GET / at about RATE requests a second (one at a time, `Connection:
close`, 3 s limit each) until the file STATE_DIR/stop appears. Every request
is one line in STATE_DIR/requests.log: `TIME TARGET MS CLIENT_PORT` (the
target's name from the answer, or `-` and then the error), so a caller can
count any window. At the end prints one JSON object: requests, ok, failed,
per target, and the first few errors.
"""
import json
import os
import socket
import sys
import time

vipa, port, rate, state = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
stop = os.path.join(state, "stop")
request = f"GET / HTTP/1.1\r\nHost: {vipa}\r\nConnection: close\r\n\r\n".encode()
total = ok = 0
per_target = {}
errors = []


def get():
    """One request on a new connection: (client port, target name or None, error)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((vipa, port))
        s.sendall(request)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        name = body.decode(errors="replace").strip()
        if not status.startswith(b"HTTP/1.1 200") or not name:
            raise ValueError(f"answer {status!r}, body {name!r}")
        return s.getsockname()[1], name, None
    except Exception as e:  # noqa: BLE001 - every failure counts
        return s.getsockname()[1], None, f"{type(e).__name__}: {e}"
    finally:
        s.close()


with open(os.path.join(state, "requests.log"), "a", buffering=1) as log:
    while not os.path.exists(stop):
        t0 = time.time()
        total += 1
        cport, name, err = get()
        ms = round((time.time() - t0) * 1000)
        if name:
            ok += 1
            per_target[name] = per_target.get(name, 0) + 1
            log.write(f"{t0:.3f} {name} {ms} {cport}\n")
        else:
            errors.append(f"{time.strftime('%H:%M:%S', time.localtime(t0))} port {cport}: {err}")
            log.write(f"{t0:.3f} - {ms} {cport} {err}\n")
        time.sleep(max(0.0, 1.0 / rate - (time.time() - t0)))
print(json.dumps({"requests": total, "ok": ok, "failed": total - ok, "per_target": per_target,
                  "errors": errors[:10]}))
