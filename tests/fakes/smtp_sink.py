#!/usr/bin/env python3
"""A real SMTP server for certsentinel's integration tests (aiosmtpd): every message it
accepts is written, as received, to DIR/NNNN.eml (numbered in arrival order), with its
envelope in DIR/NNNN.json. It listens on 127.0.0.1 only; `--port 0` picks a free port, written
atomically to `--port-file` once listening. SIGTERM or SIGINT stops it (exit 0).
`--reject-first N` answers the first N messages with 451 (a transient failure, "try again
later"), `--refuse-first N` with 550 (a permanent one)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory: str, reject_first: int, refuse_first: int):
        self.directory = directory
        self.count = 0
        self.reject_left = reject_first
        self.refuse_left = refuse_first
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.reject_left > 0:
                self.reject_left -= 1
                return "451 4.3.0 try again later (sink fault)"
            if self.refuse_left > 0:
                self.refuse_left -= 1
                return "550 5.7.1 refused (sink fault)"
            self.count += 1
            n = self.count
        base = os.path.join(self.directory, f"{n:04d}")
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        return "250 2.0.0 OK"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--dir", required=True, help="where received messages are written")
    ap.add_argument("--reject-first", type=int, default=0)
    ap.add_argument("--refuse-first", type=int, default=0)
    args = ap.parse_args()
    port = args.port
    if port == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir, args.reject_first, args.refuse_first),
                            hostname="127.0.0.1", port=port)
    controller.start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, args.port_file)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
