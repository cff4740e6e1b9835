"""The lab's application on a target: HTTP and a TCP echo on the VIPA.

Usage: lab_server.py NAME ADDRESS [--http PORT] [--echo PORT] [--pause SECONDS]

- HTTP (default port 80): every GET answers "NAME\\n" (header X-Target: NAME),
  HTTP/1.1 with keep-alive, so both curl and wrk work.
- Echo (default port 9000): every connection gets back what it sends, for as
  long as it stays open (the lab's long-lived connections).

SIGHUP is a graceful reload, as web servers do it: the listening sockets are
closed, the program waits --pause seconds (default 6) and listens again,
while every established connection goes on being served. To vipa's agent it
looks like an application restart (the listener goes and comes back);
SIGTERM / SIGINT stop the program.
"""
import argparse
import http.server
import selectors
import signal
import socket
import sys
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("address")
p.add_argument("--http", type=int, default=80)
p.add_argument("--echo", type=int, default=9000)
p.add_argument("--pause", type=float, default=6.0)
args = p.parse_args()
BODY = (args.name + "\n").encode()


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} {args.name}: {msg}", file=sys.stderr, flush=True)


class Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vipa-lab"

    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("X-Target", args.name)
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, fmt, *a):  # quiet: wrk sends thousands
        pass


def serve_http(conn, peer):
    try:
        conn.settimeout(60)
        Http(conn, peer, None)
    except Exception:  # noqa: BLE001 - a client that goes away
        pass
    finally:
        conn.close()


def serve_echo(conn, _peer):
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((args.address, port))
    s.listen(512)
    s.setblocking(False)
    return s


reload_asked = threading.Event()
stop_asked = threading.Event()
signal.signal(signal.SIGHUP, lambda *_: reload_asked.set())
signal.signal(signal.SIGTERM, lambda *_: stop_asked.set())
signal.signal(signal.SIGINT, lambda *_: stop_asked.set())

handlers = {args.http: serve_http, args.echo: serve_echo}
while not stop_asked.is_set():
    sel = selectors.DefaultSelector()
    listeners = []
    for port, handler in handlers.items():
        s = listen(port)
        listeners.append(s)
        sel.register(s, selectors.EVENT_READ, handler)
    log(f"listening on {args.address} ports {', '.join(map(str, handlers))}")
    while not (stop_asked.is_set() or reload_asked.is_set()):
        for key, _ in sel.select(timeout=0.1):
            try:
                conn, peer = key.fileobj.accept()
            except BlockingIOError:
                continue
            conn.setblocking(True)
            # Headers and body leave as two writes: without this, Nagle
            # holds the second for the client's delayed ACK (40 ms).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=key.data, args=(conn, peer), daemon=True).start()
    sel.close()
    for s in listeners:
        s.close()
    if reload_asked.is_set() and not stop_asked.is_set():
        reload_asked.clear()
        log(f"reload: listeners closed for {args.pause:g} s, established connections still served")
        stop_asked.wait(args.pause)
log("stopped")
