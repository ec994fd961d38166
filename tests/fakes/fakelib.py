"""What every HTTP fake in this folder shares: the threaded server on 127.0.0.1, the handler
plumbing (TCP_NODELAY, chunked bodies, JSON answers, quiet logs unless --verbose), the port
file the tests wait for, and a clean stop on SIGTERM or SIGINT.

The fakes run as scripts from this folder, so Python finds this module beside them. Nothing
here knows a service: each fake keeps its own routes, checks and admin API.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AdminError(Exception):
    """A bad admin request: answered 400 with the message."""


def json_path(error, prefix="$") -> str:
    """Where a jsonschema error sits, as `$.a.b[0]`."""
    path = prefix
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def short(value, limit=120) -> str:
    text = json.dumps(value, sort_keys=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Server(ThreadingHTTPServer):
    """Listens on 127.0.0.1 only: the fakes are for tests on this machine."""

    daemon_threads = True
    allow_reuse_address = True
    # The benches open many connections at once; the default backlog of 5 refuses some.
    request_queue_size = 256

    def __init__(self, port: int, handler, verbose: bool = False):
        super().__init__(("127.0.0.1", port), handler)
        self.verbose = verbose


class BaseHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; a fake sets `server_version` and adds its routes."""

    protocol_version = "HTTP/1.1"
    sys_version = ""

    def setup(self):
        super().setup()
        # Small requests answered at once: Nagle would add 40 ms to every keep-alive call.
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 - signature from the base class
        if self.server.verbose:
            log("%s - %s" % (self.address_string(), format % args))

    def read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, status: int, doc, extra_headers=None):
        body = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def write_port_file(path, port):
    """Atomically, so a test polling the file never reads half a number."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def serve(server: Server, port_file: str | None) -> int:
    """Announce the port (file and stdout), serve until SIGTERM or SIGINT, close the socket."""
    port = server.server_address[1]

    def stop(signum, frame):
        # shutdown() waits for serve_forever to return, so it cannot run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    if port_file:
        write_port_file(port_file, port)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0
