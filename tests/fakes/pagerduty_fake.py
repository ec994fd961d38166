#!/usr/bin/env python3
"""Fake of the PagerDuty Events API v2 for certsentinel's integration tests: validates events, keeps alerts.

`POST /v2/enqueue` (and `/enqueue`) is checked against the request body schema of `POST /enqueue`
in PagerDuty's OpenAPI document (--spec) plus the rules PagerDuty's documentation adds, answered
like PagerDuty (202 or 400), and applied to per-(routing_key, dedup_key) alert state. Every event
is recorded; faults are queued and everything is read through the admin API under /_fake/ (no auth).
See README.md next to this file.

Only the Python 3.11 standard library and `jsonschema` (with `referencing`) are used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import sys
import threading
import urllib.parse
import uuid

from fakelib import AdminError, BaseHandler, Server, json_path, log, now_iso, serve

DEFAULT_SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vendor-specs",
                            "pagerduty-events-v2.openapiv3.json")
EVENT_PATHS = ("/v2/enqueue", "/enqueue")
ADMIN_PREFIX = "/_fake/"
# JSON pointer of the request body schema of POST /enqueue in the OpenAPI document.
REQUEST_SCHEMA_POINTER = "/paths/~1enqueue/post/requestBody/content/application~1json/schema"

# Limits from PagerDuty's developer documentation (docs/events-API-v2/02-Trigger-Events.md and
# 01-Overview.md); the OpenAPI document carries none of them.
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
SEVERITIES = ("critical", "error", "warning", "info")
BODY_MAX_BYTES = 512 * 1024
DEFAULT_ROUTING_KEY_LENGTH = 32

VERBOSE = False
FAKE: "Fake"


# --------------------------------------------------------------------------------------------
# Validation: the OpenAPI document's schema, then the documented rules
# --------------------------------------------------------------------------------------------

def make_format_checker():
    """Formats as PagerDuty documents them, not as JSON Schema defines them:
    - `date-time` is ISO 8601 ("PD-CEF timestamp is ISO 8601"). The RFC 3339 check jsonschema
      would do rejects `2015-07-17T08:42:58.315+0000`, the timestamp of the document's own example.
    - `url` (not a JSON Schema format; jsonschema would ignore it) is an absolute http(s) URL."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def iso8601_date_time(value):
        if not isinstance(value, str):
            return True
        if len(value) <= 10:  # a date alone is not a date-time
            raise ValueError("no time part")
        dt.datetime.fromisoformat(value)
        return True

    @checker.checks("url")
    def absolute_url(value):
        if not isinstance(value, str):
            return True
        parts = urllib.parse.urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.netloc)

    return checker


def load_validator(spec_path: str):
    """A draft-4 validator (OpenAPI 3.0 schema objects are draft-4 style) for the request body of
    POST /enqueue. The whole document is registered under its file URI, so the body schema's
    `#/components/schemas/...` references resolve inside the document."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    uri = pathlib.Path(spec_path).resolve().as_uri()
    registry = Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT4))
    root = {"$ref": f"{uri}#{REQUEST_SCHEMA_POINTER}"}
    validator = jsonschema.Draft4Validator(root, registry=registry, format_checker=make_format_checker())
    # Fail at start-up, not on the first event, if the document lacks the operation or a $ref is dangling.
    body_schema = registry.resolver().lookup(root["$ref"]).contents
    jsonschema.Draft4Validator.check_schema(body_schema)
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        jsonschema.Draft4Validator.check_schema(schema)
    list(validator.iter_errors({"payload": {}, "links": [{}], "images": [{}]}))
    return validator


def documented_errors(body: dict, routing_key_length: int) -> list[str]:
    """What PagerDuty's documentation requires beyond the OpenAPI schema. Type errors are left to
    the schema, so a wrong type is not reported twice."""
    errors: list[str] = []
    action = body.get("event_action")
    routing_key = body.get("routing_key")
    dedup_key = body.get("dedup_key")
    payload = body.get("payload")

    if routing_key_length and isinstance(routing_key, str) and len(routing_key) != routing_key_length:
        errors.append(f"$.routing_key: Length of 'routing_key' is incorrect "
                      f"(should be {routing_key_length} characters)")
    if isinstance(dedup_key, str) and len(dedup_key) > DEDUP_KEY_MAX:
        errors.append(f"$.dedup_key: 'dedup_key' is too long ({len(dedup_key)} characters; "
                      f"the maximum is {DEDUP_KEY_MAX})")
    if action in ("acknowledge", "resolve") and (dedup_key is None or dedup_key == ""):
        errors.append(f"$.dedup_key: 'dedup_key' is required for {action} events")
    if action == "trigger":
        if payload is None:
            errors.append("$.payload: 'payload' is required for trigger events "
                          "(with 'summary', 'source' and 'severity')")
    if isinstance(payload, dict):
        summary = payload.get("summary")
        if isinstance(summary, str) and len(summary) > SUMMARY_MAX:
            errors.append(f"$.payload.summary: 'summary' is too long (maximum is {SUMMARY_MAX} characters)")
        # The schema's enum already says this; kept so the rule holds whatever --spec says.
        severity = payload.get("severity")
        if "severity" in payload and severity not in SEVERITIES:
            errors.append(f"$.payload.severity: {json.dumps(severity)} is not one of {list(SEVERITIES)}")
    return errors


def validate(validator, body, routing_key_length: int) -> list[str]:
    errors = sorted(validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [f"{json_path(e)}: {e.message}" for e in errors]
    if isinstance(body, dict):
        for line in documented_errors(body, routing_key_length):
            field = line.split(":", 1)[0]
            # Skip a documented rule the schema already reported for the same member (severity).
            if not (field == "$.payload.severity" and any(x.startswith(field + ":") for x in lines)):
                lines.append(line)
    return lines


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------

class Fake:
    def __init__(self, validator, routing_key_length: int):
        self.validator = validator
        self.routing_key_length = routing_key_length
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.alerts: list[dict] = []  # every alert ever opened, in order
        self.open: dict[tuple[str, str], dict] = {}  # (routing_key, dedup_key) -> open alert
        self.faults: list[dict] = []

    def apply(self, body: dict, at: str) -> tuple[str, str]:
        """Applies a valid event to the alerts; under the lock. Returns (dedup_key, effect)."""
        action = body["event_action"]
        routing_key = body["routing_key"]
        dedup_key = body.get("dedup_key") or None
        if action == "trigger":
            if dedup_key is None:
                dedup_key = uuid.uuid4().hex  # PagerDuty generates a UUID
            payload = body["payload"]
            alert = self.open.get((routing_key, dedup_key))
            if alert is None:
                alert = {"routing_key": routing_key, "dedup_key": dedup_key, "status": "triggered",
                         "opened_at": at, "resolved_at": None, "severity": payload.get("severity"),
                         "summary": payload.get("summary"), "triggers": 1, "acknowledges": 0,
                         "acknowledged_at": None}
                self.alerts.append(alert)
                self.open[(routing_key, dedup_key)] = alert
                return dedup_key, "opened"
            alert["triggers"] += 1
            alert["severity"] = payload.get("severity")
            alert["summary"] = payload.get("summary")
            return dedup_key, "updated"
        alert = self.open.get((routing_key, dedup_key))
        if alert is None:
            # Documented: acknowledge/resolve without an open alert (or through another
            # routing_key) are dropped; the API still answers 202.
            return dedup_key, "dropped"
        if action == "acknowledge":
            alert["acknowledges"] += 1
            alert["acknowledged_at"] = at
            return dedup_key, "acknowledged"
        alert["status"] = "resolved"
        alert["resolved_at"] = at
        del self.open[(routing_key, dedup_key)]
        return dedup_key, "resolved"

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
        if path is not None and path not in EVENT_PATHS:
            raise AdminError(f"path: expected one of {list(EVENT_PATHS)}")
        with self.lock:
            self.faults.append({"status": status, "count": count, "retry_after": retry_after,
                                "path": path})

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.alerts.clear()
            self.open.clear()
            self.faults.clear()


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

class Handler(BaseHandler):
    server_version = "certsentinel-pagerduty-fake"

    def dispatch(self):
        path = urllib.parse.urlsplit(self.path).path
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
        if path not in EVENT_PATHS:
            self.send_json(404, {"status": "Not found", "message": f"no such endpoint: {path}"})
            return
        if self.command != "POST":
            self.send_json(405, {"status": "Method not allowed", "message": "events are POSTs"},
                           {"Allow": "POST"})
            return
        self.enqueue(path, raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = dispatch

    # -- events ----------------------------------------------------------------------------

    def enqueue(self, path: str, raw: bytes):
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        received_at = now_iso()
        unrecognized = False
        try:
            body = json.loads(raw)
        except ValueError:  # also UnicodeDecodeError
            body, unrecognized = None, True
        if unrecognized:
            errors = ["JSON parse error"]
        elif len(raw) > BODY_MAX_BYTES:
            errors = [f"$: the event is {len(raw)} bytes; Events API payloads are limited to 512 KB"]
        else:
            errors = validate(FAKE.validator, body, FAKE.routing_key_length)
        record = {
            "path": self.path,
            "headers": headers,
            "body": body,
            "raw": raw.decode("utf-8", "replace"),
            "valid": not errors,
            "errors": errors,
            "received_at": received_at,
        }
        extra = None
        # Recorded and applied before answering, so a test that sees the answer sees the state.
        with FAKE.lock:
            fault = FAKE.take_fault(path)
            if fault:
                status = fault["status"]
                answer = {"status": "fake fault", "message": f"fault injected by the fake (HTTP {status})"}
                if fault["retry_after"] is not None:
                    extra = {"Retry-After": fault["retry_after"]}
                effect = None
            elif unrecognized:
                status = 400
                answer = {"status": "Unrecognized object", "message": "Event object format is unrecognized",
                          "errors": errors}
                effect = None
            elif errors:
                status = 400
                answer = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
                effect = None
            else:
                dedup_key, effect = FAKE.apply(body, received_at)
                status = 202
                answer = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
            record["status"] = status
            record["effect"] = effect
            record["response"] = answer
            FAKE.events.append(record)
        if VERBOSE:
            log(f"event {self.path} -> {status} valid={record['valid']} effect={effect}"
                + "".join(f"\n  {e}" for e in errors))
        self.send_json(status, answer, extra)

    # -- admin API -------------------------------------------------------------------------

    def admin(self, path: str, raw: bytes):
        call = (self.command, path.rstrip("/"))
        if call == ("GET", "/_fake/health"):
            self.send_json(200, {"ok": True})
        elif call == ("GET", "/_fake/events"):
            with FAKE.lock:
                doc = {"events": json.loads(json.dumps(FAKE.events))}
            self.send_json(200, doc)
        elif call == ("GET", "/_fake/alerts"):
            with FAKE.lock:
                doc = {"alerts": json.loads(json.dumps(FAKE.alerts))}
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
            FAKE.reset()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": f"no admin call {self.command} {path}"})


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def main(argv=None):
    global FAKE, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--spec", default=DEFAULT_SPEC,
                    help=f"PagerDuty's Events API v2 OpenAPI document (default {DEFAULT_SPEC})")
    ap.add_argument("--routing-key-length", type=int, default=DEFAULT_ROUTING_KEY_LENGTH, metavar="N",
                    help="required length of routing_key (PagerDuty: 32); 0 accepts any length")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    if args.routing_key_length < 0:
        ap.error("--routing-key-length: expected 0 or more")

    try:
        validator = load_validator(args.spec)
    except (OSError, ValueError, LookupError) as e:
        ap.error(f"--spec {args.spec}: {e}")
    except Exception as e:  # jsonschema / referencing errors
        ap.error(f"--spec {args.spec}: {type(e).__name__}: {e}")
    FAKE = Fake(validator, args.routing_key_length)

    return serve(Server(args.port, Handler, args.verbose), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
