#!/usr/bin/env python3
"""Webhook receiver for certsentinel's integration tests: records each delivery, checks its signature and body.

Any POST outside /_fake/ is a delivery. The fake records it with whether its
`x-certsentinel-signature-256` header (`sha256=` + lowercase hex HMAC-SHA256 of the raw body)
is right and, with --schema, what the JSON Schema says about the body. It answers 200
`{"ok": true}`, or a fault queued through the admin API under /_fake/ (no auth).
See README.md next to this file.

Only the Python 3.11 standard library and, with --schema, `jsonschema` are used.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import threading
import urllib.parse

from fakelib import AdminError, BaseHandler, Server, json_path, log, now_iso, serve, short

SIGNATURE_HEADER = "x-certsentinel-signature-256"
SIGNATURE_PREFIX = "sha256="
ADMIN_PREFIX = "/_fake/"
TAG_MEMBERS = ("type", "how", "kind")  # the members that pick a oneOf branch in the schema

VERBOSE = False
FAKE: "Fake"


# --------------------------------------------------------------------------------------------
# Signatures and schema checks
# --------------------------------------------------------------------------------------------

def expected_signature(secret: str, raw: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def signature_valid(secret: str | None, header: str | None, raw: bytes) -> bool:
    """False without a secret or without the header; otherwise a constant-time comparison."""
    if secret is None or header is None:
        return False
    return hmac.compare_digest(header.encode("latin-1", "replace"),
                               expected_signature(secret, raw).encode("ascii"))


def explain(error) -> list[str]:
    """One error of `iter_errors` as readable strings. A failed oneOf/anyOf (the tagged enums)
    is replaced by the errors of the branch its tag picked, so a bad field deep in an intent
    reads `$.intent.kind.stages[0].stage.kind: 'web_socket' is not one of [...]` rather than
    "... is not valid under any of the given schemas"."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [f"{json_path(error)}: {error.message}"]
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    tag_misses = []
    picked = []
    for index in sorted(branches):
        subs = branches[index]
        missed = [s for s in subs if s.validator == "const" and len(s.relative_path) == 1
                  and s.relative_path[0] in TAG_MEMBERS]
        if missed:
            tag_misses.extend(missed)
        else:
            picked.append(subs)
    if len(picked) == 1:
        return [line for sub in picked[0] for line in explain(sub)]
    if not picked and tag_misses:
        member = tag_misses[0].relative_path[0]
        known = [s.validator_value for s in tag_misses]
        got = error.instance.get(member) if isinstance(error.instance, dict) else None
        return [f"{json_path(error)}.{member}: {short(got)} is not one of {known}"]
    return [f"{json_path(error)}: {short(error.instance)} is not valid under any of the given schemas"]


def load_validator(path: str):
    import jsonschema  # only needed with --schema

    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------

class Fake:
    def __init__(self, secrets: dict[str | None, str], validator):
        self.secrets = secrets  # request path -> secret; None -> the secret for every path
        self.validator = validator
        self.lock = threading.Lock()
        self.deliveries: list[dict] = []
        self.faults: list[dict] = []

    def secret_for(self, path: str) -> str | None:
        return self.secrets.get(path, self.secrets.get(None))

    def schema_errors(self, body, is_json: bool, parse_error: str | None) -> list[str]:
        if self.validator is None:
            return []
        if not is_json:
            return [f"$: body is not JSON ({parse_error})"]
        return [line for e in self.validator.iter_errors(body) for line in explain(e)]

    def take_fault(self, path: str) -> dict | None:
        """The first queued fault for `path` with count left, counted down; under the lock."""
        for fault in self.faults:
            if fault["count"] > 0 and fault.get("path") in (None, path):
                fault["count"] -= 1
                taken = dict(fault)
                if fault["count"] == 0:
                    self.faults.remove(fault)
                return taken
        return None

    def add_fault(self, spec) -> None:
        if not isinstance(spec, dict):
            raise AdminError("expected a JSON object")
        unknown = set(spec) - {"status", "count", "retry_after", "path"}
        if unknown:
            raise AdminError(f"unknown fields: {sorted(unknown)}")
        status = spec.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise AdminError("status: expected an HTTP status code (100-599)")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise AdminError("count: expected an integer >= 1")
        retry_after = spec.get("retry_after")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (str, int)):
                raise AdminError("retry_after: expected a string such as \"1\"")
            retry_after = str(retry_after)
        path = spec.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise AdminError("path: expected a request path starting with /")
        with self.lock:
            self.faults.append({"status": status, "count": count, "retry_after": retry_after,
                                "path": path})


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

class Handler(BaseHandler):
    server_version = "certsentinel-webhook-fake"

    def split_path(self) -> tuple[str, dict]:
        parts = urllib.parse.urlsplit(self.path)
        return parts.path, urllib.parse.parse_qs(parts.query)

    def dispatch(self):
        path, _ = self.split_path()
        try:
            raw = self.read_body()
        except (ValueError, OSError) as e:
            self.close_connection = True
            self.send_json(400, {"error": f"cannot read the body: {e}"})
            return
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            try:
                self.admin(path, raw)
            except AdminError as e:
                self.send_json(400, {"error": str(e)})
            return
        if self.command != "POST":
            self.send_json(405, {"error": "deliveries are POSTs"}, {"Allow": "POST"})
            return
        self.deliver(path, raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = dispatch

    # -- deliveries ------------------------------------------------------------------------

    def deliver(self, path: str, raw: bytes):
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            body, is_json, parse_error = json.loads(raw), True, None
        except ValueError as e:  # also UnicodeDecodeError
            body, is_json, parse_error = None, False, str(e)
        record = {
            "path": self.path,
            "headers": headers,
            "body": body,
            "raw": raw.decode("utf-8", "replace"),
            "signature_valid": signature_valid(FAKE.secret_for(path), headers.get(SIGNATURE_HEADER), raw),
            "schema_errors": FAKE.schema_errors(body, is_json, parse_error),
            "received_at": now_iso(),
        }
        # Recorded before answering, so a test that sees the answer also sees the record.
        with FAKE.lock:
            fault = FAKE.take_fault(path)
            record["status"] = fault["status"] if fault else 200
            FAKE.deliveries.append(record)
        if VERBOSE:
            log(f"delivery {self.path} -> {record['status']} signature_valid={record['signature_valid']}"
                f" schema_errors={len(record['schema_errors'])}")
        if fault:
            extra = {"Retry-After": fault["retry_after"]} if fault["retry_after"] is not None else None
            self.send_json(fault["status"], {"error": "fake fault"}, extra)
        else:
            self.send_json(200, {"ok": True})

    # -- admin API -------------------------------------------------------------------------

    def admin(self, path: str, raw: bytes):
        call = (self.command, path.rstrip("/"))
        if call == ("GET", "/_fake/health"):
            self.send_json(200, {"ok": True})
        elif call == ("GET", "/_fake/deliveries"):
            with FAKE.lock:
                doc = {"deliveries": json.loads(json.dumps(FAKE.deliveries))}
            self.send_json(200, doc)
        elif call == ("POST", "/_fake/faults"):
            try:
                spec = json.loads(raw or b"null")
            except ValueError as e:
                raise AdminError(f"body is not JSON: {e}") from None
            FAKE.add_fault(spec)
            with FAKE.lock:
                doc = {"faults": [dict(f) for f in FAKE.faults]}
            self.send_json(200, doc)
        elif call == ("GET", "/_fake/faults"):
            with FAKE.lock:
                doc = {"faults": [dict(f) for f in FAKE.faults]}
            self.send_json(200, doc)
        elif call == ("DELETE", "/_fake/faults"):
            with FAKE.lock:
                FAKE.faults.clear()
            self.send_json(200, {"ok": True})
        elif call == ("POST", "/_fake/reset"):
            with FAKE.lock:
                FAKE.deliveries.clear()
                FAKE.faults.clear()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": f"no admin call {self.command} {path}"})


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_secrets(values: list[str]) -> dict[str | None, str]:
    """`PATH=SECRET` (PATH starts with /) applies to that request path; anything else is the
    secret for every other path. A bare secret may contain `=` but must not start with `/`."""
    secrets: dict[str | None, str] = {}
    for value in values:
        if value.startswith("/") and "=" in value:
            path, secret = value.split("=", 1)
        else:
            path, secret = None, value
        if path in secrets:
            raise ValueError(f"--secret given twice for {path or 'every path'}")
        secrets[path] = secret
    return secrets


def main(argv=None):
    global FAKE, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--secret", action="append", default=[], metavar="[PATH=]SECRET",
                    help="HMAC key; PATH=SECRET for one request path (repeatable)")
    ap.add_argument("--schema", help="JSON Schema every delivery's body is checked against")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    try:
        secrets = parse_secrets(args.secret)
    except ValueError as e:
        ap.error(str(e))
    validator = load_validator(args.schema) if args.schema else None
    FAKE = Fake(secrets, validator)

    return serve(Server(args.port, Handler, args.verbose), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
