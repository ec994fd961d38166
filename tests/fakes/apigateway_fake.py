#!/usr/bin/env python3
"""Wire-accurate fake of the Amazon API Gateway control plane (v1 `apigateway`, v2 `apigatewayv2`).

Serves the subset of REST-JSON operations certsentinel needs (client certificates, REST APIs,
stages, tags, v2 APIs and stages) exactly as the botocore service models describe them, so that
the real AWS SDK for Rust and the real AWS CLI can talk to it.  State is partitioned per
(account, region) like AWS.  An admin API under /_fake/ (no auth) seeds state, counts calls,
injects faults and can publish the CloudTrail events of changes to an SQS queue on moto.  See
README.md next to this file.

Only the Python 3.11 standard library and `cryptography` are used.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import datetime as dt
import email.utils
import hashlib
import hmac
import itertools
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import deque

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fakelib import AdminError, BaseHandler, Server, log, serve

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
V1_DEFAULT_LIMIT = 25
V1_MAX_LIMIT = 500
V2_DEFAULT_PAGE_SIZE = 25  # GetApis without maxResults (the real default is undocumented)
V2_MAX_RESULTS_DEFAULT = 500  # overridable with --v2-max-results
CERT_VALIDITY = dt.timedelta(days=365)
V1_ERROR_SUFFIX = ":http://internal.amazon.com/coral/com.amazonaws.backplane.controlplane/"

UTC = dt.timezone.utc
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
STAGE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
V2_STAGE_NAME_RE = re.compile(r"^\$?[A-Za-z0-9_-]{1,128}$")
AUTH_RE = re.compile(r"Credential=([^/,\s]+)/([^/,\s]+)/([^/,\s]+)/([^/,\s]+)/aws4_request")
ARN_RE = re.compile(r"^arn:aws[a-z-]*:apigateway:([a-z0-9-]+)::/(.+)$")
ACM_ARN_RE = re.compile(r"^arn:aws[a-z-]*:acm:")

VERBOSE = False


# --------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------

def now_utc() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def parse_iso(value, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise AdminError(f"{field}: expected an ISO-8601 string, got {value!r}")
    try:
        d = dt.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as e:
        raise AdminError(f"{field}: {e}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.astimezone(UTC)


def epoch(d: dt.datetime) -> int:
    """v1 timestamps: epoch seconds as JSON numbers (rest-json default)."""
    return int(d.timestamp())


def iso(d: dt.datetime) -> str:
    """v2 timestamps: `timestampFormat: iso8601`; Smithy wants a trailing Z, no offsets."""
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str, headers=None, extra=None):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}


def not_found(msg):
    return ApiError(404, "NotFoundException", msg)


def bad_request(msg):
    return ApiError(400, "BadRequestException", msg)


def conflict(msg):
    return ApiError(409, "ConflictException", msg)


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------

class CertFactory:
    """One EC P-256 key for the whole run; every certificate is self-signed with it (~70 us)."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.pub = self.key.public_key()

    def make_pem(self, cert_id: str, not_before: dt.datetime, not_after: dt.datetime) -> str:
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Washington"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon.com Inc."),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ApiGateway"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ApiGateway-{cert_id}"),
        ])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --------------------------------------------------------------------------------------------
# Resources.  Each caches its JSON encoding; `dirty()` after any change.
# --------------------------------------------------------------------------------------------

class Resource:
    __slots__ = ("_json",)

    def dirty(self):
        self._json = None

    def json(self) -> str:
        j = self._json
        if j is None:
            j = self._json = json.dumps(self.to_wire(), separators=(",", ":"))
        return j


class Cert(Resource):
    __slots__ = ("id", "description", "pem", "created", "expiration", "tags")

    def __init__(self, cid, description, pem, created, expiration, tags):
        self._json = None
        self.id, self.description, self.pem = cid, description, pem
        self.created, self.expiration, self.tags = created, expiration, dict(tags or {})

    def to_wire(self):
        d = {"clientCertificateId": self.id}
        if self.description is not None:
            d["description"] = self.description
        d["pemEncodedCertificate"] = self.pem
        d["createdDate"] = epoch(self.created)
        d["expirationDate"] = epoch(self.expiration)
        if self.tags:
            d["tags"] = self.tags
        return d


class Stage(Resource):
    __slots__ = ("name", "deployment_id", "description", "client_certificate_id", "variables",
                 "tracing_enabled", "cache_cluster_enabled", "cache_cluster_size", "tags",
                 "created", "updated")

    def __init__(self, name, deployment_id, description=None, client_certificate_id=None,
                 variables=None, tracing_enabled=False, tags=None, created=None):
        self._json = None
        self.name, self.deployment_id, self.description = name, deployment_id, description
        self.client_certificate_id = client_certificate_id or None
        self.variables = dict(variables or {})
        self.tracing_enabled = bool(tracing_enabled)
        self.cache_cluster_enabled = False
        self.cache_cluster_size = None
        self.tags = dict(tags or {})
        self.created = created or now_utc()
        self.updated = self.created

    def to_wire(self):
        d = {"deploymentId": self.deployment_id}
        if self.client_certificate_id:
            d["clientCertificateId"] = self.client_certificate_id
        d["stageName"] = self.name
        if self.description is not None:
            d["description"] = self.description
        d["cacheClusterEnabled"] = self.cache_cluster_enabled
        if self.cache_cluster_size:
            d["cacheClusterSize"] = self.cache_cluster_size
        d["cacheClusterStatus"] = "AVAILABLE" if self.cache_cluster_enabled else "NOT_AVAILABLE"
        d["methodSettings"] = {}
        if self.variables:
            d["variables"] = self.variables
        d["tracingEnabled"] = self.tracing_enabled
        if self.tags:
            d["tags"] = self.tags
        d["createdDate"] = epoch(self.created)
        d["lastUpdatedDate"] = epoch(self.updated)
        return d


class RestApi(Resource):
    __slots__ = ("id", "name", "description", "created", "tags", "stages", "deployments",
                 "root_resource_id")

    def __init__(self, aid, name, description, tags, created, root_resource_id):
        self._json = None
        self.id, self.name, self.description = aid, name, description
        self.tags = dict(tags or {})
        self.created = created
        self.stages: dict[str, Stage] = {}
        self.deployments: dict[str, dict] = {}
        self.root_resource_id = root_resource_id

    def to_wire(self):
        d = {"id": self.id, "name": self.name}
        if self.description is not None:
            d["description"] = self.description
        d["createdDate"] = epoch(self.created)
        d["apiKeySource"] = "HEADER"
        d["endpointConfiguration"] = {"types": ["REGIONAL"], "ipAddressType": "ipv4"}
        if self.tags:
            d["tags"] = self.tags
        d["disableExecuteApiEndpoint"] = False
        d["rootResourceId"] = self.root_resource_id
        return d


class V2Stage(Resource):
    __slots__ = ("name", "deployment_id", "description", "client_certificate_id", "auto_deploy",
                 "variables", "tags", "created", "updated")

    def __init__(self, name, deployment_id=None, description=None, client_certificate_id=None,
                 auto_deploy=False, variables=None, tags=None, created=None):
        self._json = None
        self.name, self.deployment_id, self.description = name, deployment_id, description
        self.client_certificate_id = client_certificate_id or None
        self.auto_deploy = bool(auto_deploy)
        self.variables = dict(variables or {})
        self.tags = dict(tags or {})
        self.created = created or now_utc()
        self.updated = self.created

    def to_wire(self):
        d = {"autoDeploy": self.auto_deploy}
        if self.client_certificate_id:
            d["clientCertificateId"] = self.client_certificate_id
        d["createdDate"] = iso(self.created)
        d["defaultRouteSettings"] = {"dataTraceEnabled": False, "detailedMetricsEnabled": False}
        if self.deployment_id:
            d["deploymentId"] = self.deployment_id
        if self.description is not None:
            d["description"] = self.description
        d["lastUpdatedDate"] = iso(self.updated)
        d["routeSettings"] = {}
        d["stageName"] = self.name
        d["stageVariables"] = self.variables
        d["tags"] = self.tags
        return d


class V2Api(Resource):
    __slots__ = ("id", "name", "protocol_type", "route_selection_expression", "description",
                 "created", "tags", "stages", "region")

    def __init__(self, aid, name, protocol_type, rse, description, tags, created, region):
        self._json = None
        self.id, self.name, self.protocol_type = aid, name, protocol_type
        self.route_selection_expression = rse
        self.description = description
        self.tags = dict(tags or {})
        self.created = created
        self.stages: dict[str, V2Stage] = {}
        self.region = region

    def to_wire(self):
        scheme = "wss" if self.protocol_type == "WEBSOCKET" else "https"
        d = {
            "apiEndpoint": f"{scheme}://{self.id}.execute-api.{self.region}.amazonaws.com",
            "apiId": self.id,
            "apiKeySelectionExpression": "$request.header.x-api-key",
            "createdDate": iso(self.created),
        }
        if self.description is not None:
            d["description"] = self.description
        d["disableExecuteApiEndpoint"] = False
        d["ipAddressType"] = "ipv4"
        d["name"] = self.name
        d["protocolType"] = self.protocol_type
        d["routeSelectionExpression"] = self.route_selection_expression
        d["tags"] = self.tags
        return d


class Partition:
    """Everything in one (account, region)."""

    def __init__(self, account, region):
        self.account, self.region = account, region
        self.certs: dict[str, Cert] = {}
        self.rest_apis: dict[str, RestApi] = {}
        self.v2_apis: dict[str, V2Api] = {}
        self._sorted: dict[str, list] = {}

    def sorted_ids(self, kind: str) -> list:
        s = self._sorted.get(kind)
        if s is None:
            s = self._sorted[kind] = sorted(getattr(self, kind))
        return s

    def changed(self, kind: str):
        self._sorted.pop(kind, None)


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------

def rand_id(rng, n=10):
    return "".join(rng.choices(ID_ALPHABET, k=n))


def check_tags(tags, where="tags"):
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise bad_request(f"Invalid {where}: expected a map of strings to strings")
    for k in tags:
        if k.lower().startswith("aws:"):
            raise bad_request("Tag keys starting with 'aws:' are reserved")
    return dict(tags)


class Fake:
    def __init__(self, sts_endpoint=None, v2_max_results=V2_MAX_RESULTS_DEFAULT):
        self.lock = threading.Lock()
        self.certs = CertFactory()
        self.secret = os.urandom(16)
        self.sts_endpoint = sts_endpoint
        self.v2_max_results = v2_max_results
        self.rng = random.Random()
        # CloudTrail events (POST /_fake/events): where they go, and what was published.
        # Configuration, like the flags: /_fake/reset keeps both.
        self.events: dict | None = None
        self.published: list[dict] = []
        self._reset_locked()

    # ---- state ------------------------------------------------------------------------------

    def _reset_locked(self):
        self.partitions: dict[tuple, Partition] = {}
        self.key_accounts: dict[str, str] = {}
        self.sts_cache: dict[str, str] = {}
        self.faults: list[dict] = []
        self.hooks: list[dict] = []
        # Seconds added to the Date header of every answer: a service whose clock differs
        # from the caller's.
        self.clock_offset = 0
        self._reset_calls_locked()

    def _reset_calls_locked(self):
        self.calls_total = 0
        self.calls_by_op: dict[str, int] = {}
        self.calls_by_key: dict[str, int] = {}
        self.calls_by_partition: dict[str, int] = {}
        self.recent = deque(maxlen=500)

    def part(self, account, region) -> Partition:
        p = self.partitions.get((account, region))
        if p is None:
            p = self.partitions[(account, region)] = Partition(account, region)
        return p

    def new_id(self, existing, n=10, rng=None):
        rng = rng or self.rng
        while True:
            i = rand_id(rng, n)
            if i not in existing:
                return i

    # ---- accounts ---------------------------------------------------------------------------

    def resolve_account(self, key: str) -> str:
        with self.lock:
            acct = self.key_accounts.get(key) or self.sts_cache.get(key)
        if acct:
            return acct
        if not self.sts_endpoint:
            return DEFAULT_ACCOUNT
        acct = self._ask_sts(key)
        with self.lock:
            self.sts_cache[key] = acct
        return acct

    def _ask_sts(self, key: str) -> str:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "X-Amz-Date": amz_date,
            "Authorization": (f"AWS4-HMAC-SHA256 Credential={key}/{amz_date[:8]}/us-east-1/sts/"
                              f"aws4_request, SignedHeaders=content-type;host;x-amz-date, "
                              f"Signature={'0' * 64}"),
        }
        req = urllib.request.Request(self.sts_endpoint, method="POST", headers=headers,
                                     data=b"Action=GetCallerIdentity&Version=2011-06-15")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            raise ApiError(403, "UnrecognizedClientException",
                           f"The security token included in the request is invalid. "
                           f"(STS said {e.code}: {body[:200]})")
        except OSError as e:
            raise ApiError(500, "InternalFailure", f"fake: cannot reach STS endpoint: {e}")
        m = re.search(r"<Account>\s*(\d{12})\s*</Account>", text)
        if not m:
            raise ApiError(500, "InternalFailure", f"fake: no <Account> in STS answer: {text[:200]}")
        return m.group(1)

    # ---- calls, faults, hooks -----------------------------------------------------------------

    def record_call_locked(self, op, key, account, region, path):
        self.calls_total += 1
        self.calls_by_op[op] = self.calls_by_op.get(op, 0) + 1
        if key is not None:
            self.calls_by_key[key] = self.calls_by_key.get(key, 0) + 1
        if account is not None:
            pk = f"{account}/{region}"
            self.calls_by_partition[pk] = self.calls_by_partition.get(pk, 0) + 1
        self.recent.append({"operation": op, "access_key": key, "account": account,
                            "region": region, "path": path, "time": time.time()})

    @staticmethod
    def _op_matches(pattern, op):
        if pattern == "*" or pattern == op:
            return True
        if pattern == "v2:*":
            return op.startswith("v2:")
        if pattern == "v1:*":
            return not op.startswith("v2:")
        return False

    def run_hooks_locked(self, op, account, region):
        fired = []
        for h in self.hooks:
            if not self._op_matches(h["operation"], op):
                continue
            h["remaining"] -= 1
            if h["remaining"] <= 0:
                fired.append(h)
        for h in fired:
            self.hooks.remove(h)
            d = h["delete"]
            self._delete_resource_locked(d.get("kind"), d.get("account") or account,
                                         d.get("region") or region, d.get("id"), d.get("stage"))
            if VERBOSE:
                log(f"hook fired on {op}: deleted {d}")

    def take_slow_locked(self, op, account, region):
        """Seconds to wait before answering, if a `slow` fault matches (and is used up)."""
        for f in self.faults:
            if f["kind"] != "slow" or not self._op_matches(f["operation"], op):
                continue
            if f.get("account") and f["account"] != account:
                continue
            if f.get("region") and f["region"] != region:
                continue
            f["remaining"] -= 1
            if f["remaining"] <= 0:
                self.faults.remove(f)
            return float(f.get("seconds", 1))
        return 0

    def take_fault_locked(self, op, account, region):
        for f in self.faults:
            if f["kind"] == "slow":
                continue
            if not self._op_matches(f["operation"], op):
                continue
            if f.get("account") and f["account"] != account:
                continue
            if f.get("region") and f["region"] != region:
                continue
            f["remaining"] -= 1
            if f["remaining"] <= 0:
                self.faults.remove(f)
            return f
        return None

    @staticmethod
    def fault_error(f) -> ApiError:
        kind = f["kind"]
        if kind == "throttle":
            ra = f.get("retry_after_seconds", 1)
            return ApiError(429, "TooManyRequestsException", f.get("message") or "Too Many Requests",
                            headers={"Retry-After": str(ra)})
        if kind == "error":
            return ApiError(f.get("status", 500), f.get("error_type") or "InternalFailure",
                            f.get("message") or "Internal server error")
        if kind == "unavailable":
            return ApiError(503, "ServiceUnavailableException",
                            f.get("message") or "Service Unavailable",
                            headers={"Retry-After": str(f.get("retry_after_seconds", 1))})
        if kind == "access_denied":
            return ApiError(403, "AccessDeniedException", f.get("message") or
                            "User: arn:aws:sts::123456789012:assumed-role/certsentinel/fake is not "
                            "authorized to perform this action")
        if kind == "unauthorized":
            return ApiError(401, "UnauthorizedException", f.get("message") or "Unauthorized")
        raise AssertionError(kind)

    def _delete_resource_locked(self, kind, account, region, rid, stage):
        p = self.partitions.get((account, region))
        if p is None:
            return False
        if kind == "client_certificate":
            if p.certs.pop(rid, None) is not None:
                p.changed("certs")
                return True
        elif kind == "rest_api":
            if p.rest_apis.pop(rid, None) is not None:
                p.changed("rest_apis")
                return True
        elif kind == "v2_api":
            if p.v2_apis.pop(rid, None) is not None:
                p.changed("v2_apis")
                return True
        elif kind == "stage":
            api = p.rest_apis.get(rid)
            if api and api.stages.pop(stage, None) is not None:
                return True
        elif kind == "v2_stage":
            api = p.v2_apis.get(rid)
            if api and api.stages.pop(stage, None) is not None:
                return True
        return False

    # ---- CloudTrail events ------------------------------------------------------------------

    def set_events_locked(self, cfg):
        """Enable (cfg from parse_events_config) or disable (None) publishing.  Enabling
        starts a new `published` log; disabling keeps the old one for inspection."""
        self.events = cfg
        if cfg is not None:
            self.published = []

    def event_locked(self, op, key, account, region, user_agent, request_id, m, query, body,
                     out):
        """The event for a call that just succeeded, logged in `published`; returns
        (config, entry) for publish(), or None.  A bug here must not fail the call."""
        cfg = self.events
        if cfg is None or op not in EVENT_BUILDERS:
            return None
        try:
            ev = build_event(op, key, account, region, user_agent, request_id, m, query, body,
                             out)
            text = json.dumps(ev, ensure_ascii=False, separators=(",", ":"))
        except Exception as e:  # noqa: BLE001
            log(f"events: cannot build the {op} event: {e!r}")
            return None
        entry = {"event_id": ev["detail"]["eventID"], "event_name": ev["detail"]["eventName"],
                 "body": text, "sent": 0}
        self.published.append(entry)
        return cfg, entry

    def publish(self, cfg, entry):
        """Sends one event (twice with `duplicate`: at-least-once delivery) to the queue.
        Called without the lock, before the caller gets its answer.  Failures are logged."""
        sent = 0
        for _ in range(2 if cfg["duplicate"] else 1):
            try:
                mid = sqs_send(cfg, entry["body"])
            except Exception as e:  # noqa: BLE001
                log(f"events: cannot publish {entry['event_name']} {entry['event_id']} to "
                    f"{cfg['queue_url']}: {e}")
                continue
            sent += 1
            if VERBOSE:
                log(f"events: {entry['event_name']} {entry['event_id']} -> SQS message {mid}")
        with self.lock:
            entry["sent"] = sent

    # ---- paging -------------------------------------------------------------------------------

    def _salt(self, listing: str) -> str:
        return hmac.new(self.secret, listing.encode(), hashlib.sha256).hexdigest()[:12]

    def make_token(self, listing: str, last_key: str) -> str:
        raw = json.dumps({"k": last_key, "s": self._salt(listing)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def read_token(self, listing: str, token: str, param: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            d = json.loads(raw)
            if d["s"] != self._salt(listing) or not isinstance(d["k"], str):
                raise ValueError
            return d["k"]
        except Exception:
            raise bad_request(f"Invalid {param} specified: {token[:64]}") from None

    def page(self, listing, ids, limit, token, param):
        """Key-based paging over a sorted id list: deletions between pages never skip items."""
        start = 0
        if token:
            start = bisect.bisect_right(ids, self.read_token(listing, token, param))
        chunk = ids[start:start + limit]
        nxt = None
        if start + limit < len(ids) and chunk:
            nxt = self.make_token(listing, chunk[-1])
        return chunk, nxt

    # ---- seeding --------------------------------------------------------------------------

    def create_cert_locked(self, p: Partition, cid=None, description=None, not_before=None,
                           not_after=None, tags=None, expiration_override=None, pem_override=None,
                           created=None, rng=None):
        if cid is None:
            cid = self.new_id(p.certs, rng=rng)
        elif cid in p.certs:
            raise AdminError(f"client certificate {cid} already exists in {p.account}/{p.region}")
        now = now_utc()
        if not_after is None:
            not_after = (not_before or now) + CERT_VALIDITY
        if not_before is None:
            not_before = not_after - CERT_VALIDITY
        pem = pem_override if pem_override is not None else \
            self.certs.make_pem(cid, not_before, not_after)
        c = Cert(cid, description, pem, created or not_before,
                 expiration_override or not_after, tags)
        p.certs[cid] = c
        p.changed("certs")
        return c

    def create_rest_api_locked(self, p, aid=None, name="api", description=None, tags=None,
                               created=None, rng=None):
        if aid is None:
            aid = self.new_id(p.rest_apis, rng=rng)
        elif aid in p.rest_apis:
            raise AdminError(f"REST API {aid} already exists in {p.account}/{p.region}")
        api = RestApi(aid, name, description, tags, created or now_utc(),
                      rand_id(rng or self.rng, 10))
        p.rest_apis[aid] = api
        p.changed("rest_apis")
        return api

    def create_deployment_locked(self, api: RestApi, description=None, created=None, rng=None):
        did = self.new_id(api.deployments, n=6, rng=rng)
        api.deployments[did] = {"id": did, "description": description,
                                "created": created or now_utc()}
        return did

    def create_v2_api_locked(self, p, aid=None, name="api", protocol_type="HTTP", rse=None,
                             description=None, tags=None, created=None, rng=None):
        if aid is None:
            aid = self.new_id(p.v2_apis, rng=rng)
        elif aid in p.v2_apis:
            raise AdminError(f"v2 API {aid} already exists in {p.account}/{p.region}")
        if rse is None:
            rse = ("$request.body.action" if protocol_type == "WEBSOCKET"
                   else "${request.method} ${request.path}")
        api = V2Api(aid, name, protocol_type, rse, description, tags, created or now_utc(),
                    p.region)
        p.v2_apis[aid] = api
        p.changed("v2_apis")
        return api

    def seed_locked(self, spec: dict, rng=None) -> dict:
        if not isinstance(spec, dict):
            raise AdminError("seed body must be a JSON object")
        account = str(spec.get("account") or DEFAULT_ACCOUNT)
        region = spec.get("region") or DEFAULT_REGION
        p = self.part(account, region)
        out = {"account": account, "region": region, "certificates": [], "rest_apis": [],
               "v2_apis": []}

        def opt_time(d, k, where):
            return parse_iso(d[k], f"{where}.{k}") if d.get(k) is not None else None

        for i, c in enumerate(spec.get("certificates") or []):
            where = f"certificates[{i}]"
            cert = self.create_cert_locked(
                p, cid=c.get("id"), description=c.get("description"),
                not_before=opt_time(c, "not_before", where),
                not_after=opt_time(c, "not_after", where), tags=c.get("tags"),
                expiration_override=opt_time(c, "expiration_date_override", where),
                pem_override=c.get("pem_override"), created=opt_time(c, "created_date", where),
                rng=rng)
            out["certificates"].append({"id": cert.id})

        for i, a in enumerate(spec.get("rest_apis") or []):
            where = f"rest_apis[{i}]"
            if not a.get("name"):
                raise AdminError(f"{where}.name is required")
            api = self.create_rest_api_locked(p, aid=a.get("id"), name=a["name"],
                                              description=a.get("description"),
                                              tags=a.get("tags"),
                                              created=opt_time(a, "created_date", where), rng=rng)
            did = self.create_deployment_locked(api, created=api.created, rng=rng)
            stages_out = []
            for j, s in enumerate(a.get("stages") or []):
                sw = f"{where}.stages[{j}]"
                if not s.get("name"):
                    raise AdminError(f"{sw}.name is required")
                if s["name"] in api.stages:
                    raise AdminError(f"{sw}: duplicate stage {s['name']}")
                st = Stage(s["name"], s.get("deployment_id") or did, s.get("description"),
                           s.get("client_certificate_id"), s.get("variables"),
                           s.get("tracing_enabled", False), s.get("tags"),
                           opt_time(s, "created_date", sw))
                if s.get("last_updated_date"):
                    st.updated = parse_iso(s["last_updated_date"], f"{sw}.last_updated_date")
                api.stages[st.name] = st
                stages_out.append({"name": st.name})
            out["rest_apis"].append({"id": api.id, "name": api.name, "deployment_id": did,
                                     "stages": stages_out})

        for i, a in enumerate(spec.get("v2_apis") or []):
            where = f"v2_apis[{i}]"
            if not a.get("name"):
                raise AdminError(f"{where}.name is required")
            pt = a.get("protocol_type") or "HTTP"
            if pt not in ("HTTP", "WEBSOCKET"):
                raise AdminError(f"{where}.protocol_type must be HTTP or WEBSOCKET")
            api = self.create_v2_api_locked(p, aid=a.get("id"), name=a["name"], protocol_type=pt,
                                            rse=a.get("route_selection_expression"),
                                            description=a.get("description"), tags=a.get("tags"),
                                            created=opt_time(a, "created_date", where), rng=rng)
            stages_out = []
            for j, s in enumerate(a.get("stages") or []):
                sw = f"{where}.stages[{j}]"
                if not s.get("name"):
                    raise AdminError(f"{sw}.name is required")
                if s["name"] in api.stages:
                    raise AdminError(f"{sw}: duplicate stage {s['name']}")
                st = V2Stage(s["name"], s.get("deployment_id") or rand_id(rng or self.rng, 6),
                             s.get("description"), s.get("client_certificate_id"),
                             s.get("auto_deploy", pt == "HTTP"), s.get("variables"),
                             s.get("tags"), opt_time(s, "created_date", sw))
                if s.get("last_updated_date"):
                    st.updated = parse_iso(s["last_updated_date"], f"{sw}.last_updated_date")
                api.stages[st.name] = st
                stages_out.append({"name": st.name})
            out["v2_apis"].append({"id": api.id, "name": api.name, "stages": stages_out})
        return out

    def state_locked(self, account=None, region=None) -> dict:
        res = []
        for (acct, reg), p in sorted(self.partitions.items()):
            if (account and acct != account) or (region and reg != region):
                continue
            res.append({
                "account": acct, "region": reg,
                "certificates": [c.to_wire() for c in p.certs.values()],
                "rest_apis": [dict(a.to_wire(), stages=[s.to_wire() for s in a.stages.values()],
                                   deployments=sorted(a.deployments))
                              for a in p.rest_apis.values()],
                "v2_apis": [dict(a.to_wire(), stages=[s.to_wire() for s in a.stages.values()])
                            for a in p.v2_apis.values()],
            })
        return {"partitions": res}


# --------------------------------------------------------------------------------------------
# Operation handlers (called with the lock held).  ctx = (fake, partition, query, body)
# Each returns (status, body_str_or_None).
# --------------------------------------------------------------------------------------------

def q1(query, name):
    v = query.get(name)
    return v[-1] if v else None


def body_obj(body) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object")
    return body


def v1_limit(query):
    raw = q1(query, "limit")
    if raw is None or raw == "":
        return V1_DEFAULT_LIMIT
    try:
        n = int(raw)
    except ValueError:
        raise bad_request(f"Invalid limit: {raw!r} is not an integer") from None
    if n < 1 or n > V1_MAX_LIMIT:
        raise bad_request(f"1 validation error detected: Value '{n}' at 'limit' failed to satisfy "
                          f"constraint: Member must have value less than or equal to "
                          f"{V1_MAX_LIMIT} and greater than or equal to 1")
    return n


def v2_max_results(fake, query, default):
    raw = q1(query, "maxResults")
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise bad_request(f"Invalid maxResults: {raw!r} is not an integer") from None
    if n < 1 or n > fake.v2_max_results:
        raise bad_request(f"maxResults must be between 1 and {fake.v2_max_results}")
    return n


# Faults that answer a listing successfully but with a broken paging token, as a buggy or
# hostile service could: "repeat_token" always hands out the same token, "endless_token" a new
# one each time, so a client that trusts tokens pages forever.
PAGE_FAULTS = ("repeat_token", "endless_token", "omit_item")
# Of those, the faults whose broken token comes back to us.
TOKEN_FAULTS = ("repeat_token", "endless_token")
_endless = itertools.count(1)


def page_fault(fault, out):
    """A listing's answer, broken as `fault` says: "omit_item" leaves out the item whose id
    is `fault["id"]` (a page that lost an item, as concurrent changes can make a listing do)."""
    kind = fault["kind"]
    doc = json.loads(out)
    items = "items" if "items" in doc else "item"
    if kind == "omit_item":
        doc[items] = [i for i in doc.get(items, []) if fault.get("id") not in (i.get("id"), i.get("apiId"))]
        return json.dumps(doc)
    key = "nextToken" if items == "items" else "position"
    doc[key] = "c3RpbGwtdGhlLXNhbWU" if kind == "repeat_token" else f"bm90LXRoZS1lbmQ{next(_endless)}"
    return json.dumps(doc)


def listing_json(items_key, items_json, token_key, token):
    s = '{"' + items_key + '":[' + ",".join(items_json) + "]"
    if token:
        s += ',"' + token_key + '":' + json.dumps(token)
    return s + "}"


def get_cert(p, cid):
    c = p.certs.get(cid)
    if c is None:
        raise not_found("Invalid Client Certificate identifier specified")
    return c


def get_rest_api(p, aid):
    a = p.rest_apis.get(aid)
    if a is None:
        raise not_found(f"Invalid API identifier specified {p.account}:{aid}")
    return a


def get_stage(p, aid, name):
    s = get_rest_api(p, aid).stages.get(name)
    if s is None:
        raise not_found("Invalid stage identifier specified")
    return s


def get_v2_api(p, aid):
    a = p.v2_apis.get(aid)
    if a is None:
        raise ApiError(404, "NotFoundException",
                       f"Invalid API identifier specified {p.account}:{aid}",
                       extra={"resourceType": "Api"})
    return a


def get_v2_stage(p, aid, name):
    s = get_v2_api(p, aid).stages.get(name)
    if s is None:
        raise ApiError(404, "NotFoundException", f"Invalid stage identifier specified {name}",
                       extra={"resourceType": "Stage"})
    return s


def check_cert_ref(p, value, v2=False):
    """clientCertificateId on a stage: an existing client certificate id or an ACM ARN."""
    if not value:
        return None
    if not isinstance(value, str):
        raise bad_request("Invalid client certificate identifier")
    if ACM_ARN_RE.match(value):
        return value
    if value not in p.certs:
        raise bad_request(f"Invalid client certificate identifier specified: {value}")
    return value


# ---- v1 client certificates ------------------------------------------------------------------

def op_get_client_certificates(fake, p, query, body, m):
    limit = v1_limit(query)
    ids, nxt = fake.page(f"certs|{p.account}|{p.region}", p.sorted_ids("certs"), limit,
                         q1(query, "position"), "position")
    return 200, listing_json("item", [p.certs[i].json() for i in ids], "position", nxt)


def op_get_client_certificate(fake, p, query, body, m):
    return 200, get_cert(p, m[0]).json()


def op_generate_client_certificate(fake, p, query, body, m):
    b = body_obj(body)
    desc = b.get("description")
    if desc is not None and not isinstance(desc, str):
        raise bad_request("Invalid description")
    tags = check_tags(b.get("tags"))
    now = now_utc()
    c = fake.create_cert_locked(p, description=desc, not_before=now,
                                not_after=now + CERT_VALIDITY, tags=tags, created=now)
    return 201, c.json()


def op_update_client_certificate(fake, p, query, body, m):
    c = get_cert(p, m[0])
    new_desc = c.description
    for op in patch_ops(body):
        path, kind = op.get("path"), op.get("op")
        if path == "/description" and kind in ("replace", "add"):
            new_desc = op.get("value")
        elif path == "/description" and kind == "remove":
            new_desc = None
        else:
            raise bad_request(f"Invalid patch path '{path}' specified for op '{kind}'. "
                              f"Must be one of: [/description]")
    c.description = new_desc
    c.dirty()
    return 200, c.json()


def op_delete_client_certificate(fake, p, query, body, m):
    get_cert(p, m[0])
    del p.certs[m[0]]
    p.changed("certs")
    return 202, None


# ---- v1 REST APIs ----------------------------------------------------------------------------

def op_get_rest_apis(fake, p, query, body, m):
    limit = v1_limit(query)
    ids, nxt = fake.page(f"restapis|{p.account}|{p.region}", p.sorted_ids("rest_apis"), limit,
                         q1(query, "position"), "position")
    return 200, listing_json("item", [p.rest_apis[i].json() for i in ids], "position", nxt)


def op_get_rest_api(fake, p, query, body, m):
    return 200, get_rest_api(p, m[0]).json()


def op_create_rest_api(fake, p, query, body, m):
    b = body_obj(body)
    name = b.get("name")
    if not name or not isinstance(name, str):
        raise bad_request("Invalid REST API name specified")
    api = fake.create_rest_api_locked(p, name=name, description=b.get("description"),
                                      tags=check_tags(b.get("tags")))
    return 201, api.json()


def op_delete_rest_api(fake, p, query, body, m):
    get_rest_api(p, m[0])
    del p.rest_apis[m[0]]  # its stages (and their tags) go with it
    p.changed("rest_apis")
    return 202, None


def op_create_deployment(fake, p, query, body, m):
    api = get_rest_api(p, m[0])
    b = body_obj(body)
    stage_name = b.get("stageName")
    if stage_name is not None and not STAGE_NAME_RE.match(str(stage_name)):
        raise bad_request("Stage name only allows a-zA-Z0-9_-")
    now = now_utc()
    did = fake.create_deployment_locked(api, b.get("description"), now)
    if stage_name:
        st = api.stages.get(stage_name)
        if st is None:
            api.stages[stage_name] = Stage(stage_name, did, b.get("stageDescription"),
                                           variables=b.get("variables"),
                                           tracing_enabled=b.get("tracingEnabled") or False,
                                           created=now)
        else:
            st.deployment_id = did
            st.updated = now
            st.dirty()
    d = {"id": did}
    if b.get("description") is not None:
        d["description"] = b["description"]
    d["createdDate"] = epoch(now)
    return 201, json.dumps(d)


# ---- v1 stages -------------------------------------------------------------------------------

def op_get_stages(fake, p, query, body, m):
    api = get_rest_api(p, m[0])
    dep = q1(query, "deploymentId")
    items = [s.json() for s in api.stages.values() if not dep or s.deployment_id == dep]
    return 200, '{"item":[' + ",".join(items) + "]}"


def op_get_stage(fake, p, query, body, m):
    return 200, get_stage(p, m[0], m[1]).json()


def op_create_stage(fake, p, query, body, m):
    api = get_rest_api(p, m[0])
    b = body_obj(body)
    name, did = b.get("stageName"), b.get("deploymentId")
    if not name or not isinstance(name, str) or not STAGE_NAME_RE.match(name):
        raise bad_request("Stage name only allows a-zA-Z0-9_- and must be 1 to 128 characters")
    if not did:
        raise bad_request("Deployment id cannot be empty")
    if did not in api.deployments:
        raise bad_request("Deployment id does not exist")
    if name in api.stages:
        raise conflict("Stage already exists")
    variables = b.get("variables") or {}
    if not isinstance(variables, dict):
        raise bad_request("Invalid variables")
    st = Stage(name, did, b.get("description"), None, variables,
               bool(b.get("tracingEnabled", False)), check_tags(b.get("tags")))
    st.cache_cluster_enabled = bool(b.get("cacheClusterEnabled", False))
    st.cache_cluster_size = b.get("cacheClusterSize")
    api.stages[name] = st
    return 201, st.json()


STAGE_PATCH_PATHS = ["/clientCertificateId", "/description", "/tracingEnabled", "/deploymentId",
                     "/cacheClusterEnabled", "/cacheClusterSize", "/variables/{name}"]


def patch_ops(body):
    b = body_obj(body)
    ops = b.get("patchOperations") or []
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise bad_request("Invalid patchOperations")
    for o in ops:
        if o.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
            raise bad_request(f"Invalid patch operation specified: {o.get('op')!r}")
    return ops


def parse_bool(value, path):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"Invalid value for {path}: {value!r} (expected true or false)")


def op_update_stage(fake, p, query, body, m):
    api = get_rest_api(p, m[0])
    st = get_stage(p, m[0], m[1])
    new = {"client_certificate_id": st.client_certificate_id, "description": st.description,
           "tracing_enabled": st.tracing_enabled, "deployment_id": st.deployment_id,
           "cache_cluster_enabled": st.cache_cluster_enabled,
           "cache_cluster_size": st.cache_cluster_size, "variables": dict(st.variables)}
    for op in patch_ops(body):
        path, kind, value = op.get("path") or "", op.get("op"), op.get("value")
        if kind in ("move", "copy", "test"):
            raise bad_request(f"Invalid patch operation specified. Must be one of: "
                              f"[add, remove, replace] for path {path}")
        if path == "/clientCertificateId" and kind in ("replace", "add"):
            new["client_certificate_id"] = check_cert_ref(p, value)
        elif path == "/clientCertificateId" and kind == "remove":
            new["client_certificate_id"] = None
        elif path == "/description" and kind in ("replace", "add"):
            new["description"] = value
        elif path == "/description" and kind == "remove":
            new["description"] = None
        elif path == "/tracingEnabled" and kind == "replace":
            new["tracing_enabled"] = parse_bool(value, path)
        elif path == "/deploymentId" and kind == "replace":
            if value not in api.deployments:
                raise bad_request("Deployment id does not exist")
            new["deployment_id"] = value
        elif path == "/cacheClusterEnabled" and kind == "replace":
            new["cache_cluster_enabled"] = parse_bool(value, path)
        elif path == "/cacheClusterSize" and kind == "replace":
            new["cache_cluster_size"] = value
        elif path.startswith("/variables/") and len(path) > len("/variables/"):
            var = urllib.parse.unquote(path[len("/variables/"):])
            if kind == "remove":
                new["variables"].pop(var, None)
            else:
                new["variables"][var] = "" if value is None else str(value)
        else:
            raise bad_request(f"Invalid patch path '{path}' specified for op '{kind}'. "
                              f"Must be one of: [{', '.join(STAGE_PATCH_PATHS)}]")
    for k, v in new.items():
        setattr(st, k, v)
    st.updated = now_utc()
    st.dirty()
    return 200, st.json()


def op_delete_stage(fake, p, query, body, m):
    api = get_rest_api(p, m[0])
    get_stage(p, m[0], m[1])
    del api.stages[m[1]]
    return 202, None


# ---- tags (shared by v1 and v2) --------------------------------------------------------------

def resource_for_arn(p, arn):
    mm = ARN_RE.match(arn or "")
    if not mm:
        raise bad_request(f"Invalid resource ARN specified: {arn}")
    region, rest = mm.group(1), mm.group(2)
    parts = rest.split("/")
    if region != p.region:
        raise not_found(f"Invalid resource identifier specified: {arn} (wrong region)")
    if len(parts) == 2 and parts[0] == "clientcertificates":
        return get_cert(p, parts[1])
    if len(parts) == 2 and parts[0] == "restapis":
        return get_rest_api(p, parts[1])
    if len(parts) == 4 and parts[0] == "restapis" and parts[2] == "stages":
        return get_stage(p, parts[1], parts[3])
    if len(parts) == 2 and parts[0] == "apis":
        return get_v2_api(p, parts[1])
    if len(parts) == 4 and parts[0] == "apis" and parts[2] == "stages":
        return get_v2_stage(p, parts[1], parts[3])
    raise bad_request(f"Invalid resource ARN specified: {arn} (tagging not supported)")


def op_get_tags(fake, p, query, body, m):
    r = resource_for_arn(p, m[0])
    return 200, json.dumps({"tags": r.tags})


def _tag(p, arn, body):
    r = resource_for_arn(p, arn)
    tags = check_tags(body_obj(body).get("tags"))
    if not tags:
        raise bad_request("tags must not be empty")
    r.tags.update(tags)
    r.dirty()


def op_tag_resource(fake, p, query, body, m):
    _tag(p, m[0], body)
    return 204, None


def op_untag_resource(fake, p, query, body, m):
    r = resource_for_arn(p, m[0])
    keys = query.get("tagKeys")
    if not keys:
        raise bad_request("tagKeys is required")
    for k in keys:
        r.tags.pop(k, None)
    r.dirty()
    return 204, None


def op_v2_tag_resource(fake, p, query, body, m):
    _tag(p, m[0], body)
    return 201, "{}"


# ---- v2 ------------------------------------------------------------------------------------

def op_v2_get_apis(fake, p, query, body, m):
    n = v2_max_results(fake, query, V2_DEFAULT_PAGE_SIZE)
    ids, nxt = fake.page(f"v2apis|{p.account}|{p.region}", p.sorted_ids("v2_apis"), n,
                         q1(query, "nextToken"), "nextToken")
    return 200, listing_json("items", [p.v2_apis[i].json() for i in ids], "nextToken", nxt)


def op_v2_get_api(fake, p, query, body, m):
    return 200, get_v2_api(p, m[0]).json()


def op_v2_create_api(fake, p, query, body, m):
    b = body_obj(body)
    name, pt = b.get("name"), b.get("protocolType")
    if not name or not isinstance(name, str) or len(name) > 128:
        raise bad_request("Invalid API name specified")
    if pt not in ("WEBSOCKET", "HTTP"):
        raise bad_request(f"Invalid protocolType specified: {pt!r}")
    rse = b.get("routeSelectionExpression")
    if pt == "WEBSOCKET" and not rse:
        raise bad_request("RouteSelectionExpression is required for WEBSOCKET APIs")
    api = fake.create_v2_api_locked(p, name=name, protocol_type=pt, rse=rse,
                                    description=b.get("description"),
                                    tags=check_tags(b.get("tags")))
    return 201, api.json()


def op_v2_delete_api(fake, p, query, body, m):
    get_v2_api(p, m[0])
    del p.v2_apis[m[0]]
    p.changed("v2_apis")
    return 204, None


def op_v2_get_stages(fake, p, query, body, m):
    api = get_v2_api(p, m[0])
    names = sorted(api.stages)
    n = v2_max_results(fake, query, max(len(names), 1))
    chunk, nxt = fake.page(f"v2stages|{p.account}|{p.region}|{api.id}", names, n,
                           q1(query, "nextToken"), "nextToken")
    return 200, listing_json("items", [api.stages[s].json() for s in chunk], "nextToken", nxt)


def op_v2_get_stage(fake, p, query, body, m):
    return 200, get_v2_stage(p, m[0], m[1]).json()


def v2_cert_ref(p, api, value):
    if not value:
        return None
    if api.protocol_type != "WEBSOCKET":
        raise bad_request("ClientCertificateId is supported only for WebSocket APIs")
    return check_cert_ref(p, value, v2=True)


def op_v2_create_stage(fake, p, query, body, m):
    api = get_v2_api(p, m[0])
    b = body_obj(body)
    name = b.get("stageName")
    if not name or not isinstance(name, str) or not V2_STAGE_NAME_RE.match(name):
        raise bad_request("Invalid stage name specified")
    if name in api.stages:
        raise conflict(f"Stage {name} already exists")
    variables = b.get("stageVariables") or {}
    if not isinstance(variables, dict):
        raise bad_request("Invalid stageVariables")
    st = V2Stage(name, b.get("deploymentId"), b.get("description"),
                 v2_cert_ref(p, api, b.get("clientCertificateId")),
                 bool(b.get("autoDeploy", False)), variables, check_tags(b.get("tags")))
    api.stages[name] = st
    return 201, st.json()


def op_v2_update_stage(fake, p, query, body, m):
    api = get_v2_api(p, m[0])
    st = get_v2_stage(p, m[0], m[1])
    b = body_obj(body)
    cert = st.client_certificate_id
    if "clientCertificateId" in b:
        cert = v2_cert_ref(p, api, b["clientCertificateId"])
    if "stageVariables" in b and not isinstance(b["stageVariables"], dict):
        raise bad_request("Invalid stageVariables")
    st.client_certificate_id = cert
    if "description" in b:
        st.description = b["description"]
    if "deploymentId" in b:
        st.deployment_id = b["deploymentId"] or None
    if "autoDeploy" in b:
        st.auto_deploy = bool(b["autoDeploy"])
    if "stageVariables" in b:
        st.variables.update(b["stageVariables"])
    st.updated = now_utc()
    st.dirty()
    return 200, st.json()


def op_v2_delete_stage(fake, p, query, body, m):
    api = get_v2_api(p, m[0])
    get_v2_stage(p, m[0], m[1])
    del api.stages[m[1]]
    return 204, None


# ---- routing -----------------------------------------------------------------------------------
# (method, path segments pattern) -> (operation name, handler).  "*" captures one decoded segment.

# The Account service's ListRegions (REST-JSON, `POST /listRegions`), so that "every region
# enabled for the account" is served by the same fake. A believable slice of AWS's regions:
# default ones, an opt-in region that was enabled, and opt-in regions that were not.
REGION_OPT_STATUS = {
    "us-east-1": "ENABLED_BY_DEFAULT",
    "us-east-2": "ENABLED_BY_DEFAULT",
    "us-west-2": "ENABLED_BY_DEFAULT",
    "eu-west-1": "ENABLED_BY_DEFAULT",
    "eu-central-1": "ENABLED_BY_DEFAULT",
    "ap-southeast-2": "ENABLED_BY_DEFAULT",
    "ap-east-1": "ENABLED",
    "af-south-1": "DISABLED",
    "me-south-1": "DISABLED",
}


def op_list_regions(fake, p, query, body, m):
    req = body_obj(body)
    wanted = req.get("RegionOptStatusContains")
    if wanted is not None and (not isinstance(wanted, list) or not all(
            w in ("ENABLED", "ENABLING", "DISABLING", "DISABLED", "ENABLED_BY_DEFAULT")
            for w in wanted)):
        raise bad_request("RegionOptStatusContains must be a list of region opt statuses")
    regions = [{"RegionName": name, "RegionOptStatus": status}
               for name, status in sorted(REGION_OPT_STATUS.items())
               if wanted is None or status in wanted]
    return 200, json.dumps({"Regions": regions})


ROUTES = {
    ("POST", ("listRegions",)): ("account:ListRegions", op_list_regions),
    ("GET", ("clientcertificates",)): ("GetClientCertificates", op_get_client_certificates),
    ("POST", ("clientcertificates",)): ("GenerateClientCertificate", op_generate_client_certificate),
    ("GET", ("clientcertificates", "*")): ("GetClientCertificate", op_get_client_certificate),
    ("PATCH", ("clientcertificates", "*")): ("UpdateClientCertificate", op_update_client_certificate),
    ("DELETE", ("clientcertificates", "*")): ("DeleteClientCertificate", op_delete_client_certificate),
    ("GET", ("restapis",)): ("GetRestApis", op_get_rest_apis),
    ("POST", ("restapis",)): ("CreateRestApi", op_create_rest_api),
    ("GET", ("restapis", "*")): ("GetRestApi", op_get_rest_api),
    ("DELETE", ("restapis", "*")): ("DeleteRestApi", op_delete_rest_api),
    ("POST", ("restapis", "*", "deployments")): ("CreateDeployment", op_create_deployment),
    ("GET", ("restapis", "*", "stages")): ("GetStages", op_get_stages),
    ("POST", ("restapis", "*", "stages")): ("CreateStage", op_create_stage),
    ("GET", ("restapis", "*", "stages", "*")): ("GetStage", op_get_stage),
    ("PATCH", ("restapis", "*", "stages", "*")): ("UpdateStage", op_update_stage),
    ("DELETE", ("restapis", "*", "stages", "*")): ("DeleteStage", op_delete_stage),
    ("GET", ("tags", "*")): ("GetTags", op_get_tags),
    ("PUT", ("tags", "*")): ("TagResource", op_tag_resource),
    ("DELETE", ("tags", "*")): ("UntagResource", op_untag_resource),
    ("GET", ("v2", "apis")): ("v2:GetApis", op_v2_get_apis),
    ("POST", ("v2", "apis")): ("v2:CreateApi", op_v2_create_api),
    ("GET", ("v2", "apis", "*")): ("v2:GetApi", op_v2_get_api),
    ("DELETE", ("v2", "apis", "*")): ("v2:DeleteApi", op_v2_delete_api),
    ("GET", ("v2", "apis", "*", "stages")): ("v2:GetStages", op_v2_get_stages),
    ("POST", ("v2", "apis", "*", "stages")): ("v2:CreateStage", op_v2_create_stage),
    ("GET", ("v2", "apis", "*", "stages", "*")): ("v2:GetStage", op_v2_get_stage),
    ("PATCH", ("v2", "apis", "*", "stages", "*")): ("v2:UpdateStage", op_v2_update_stage),
    ("DELETE", ("v2", "apis", "*", "stages", "*")): ("v2:DeleteStage", op_v2_delete_stage),
    ("GET", ("v2", "tags", "*")): ("v2:GetTags", op_get_tags),
    ("POST", ("v2", "tags", "*")): ("v2:TagResource", op_v2_tag_resource),
    ("DELETE", ("v2", "tags", "*")): ("v2:UntagResource", op_untag_resource),
}
ALL_OPERATIONS = sorted({v[0] for v in ROUTES.values()})

# Index routes by (method, number of segments).
_ROUTE_INDEX: dict[tuple, list] = {}
for (_meth, _pat), _val in ROUTES.items():
    _ROUTE_INDEX.setdefault((_meth, len(_pat)), []).append((_pat, _val))


def route(method, raw_path):
    """Returns (op, handler, captures) or None.  Splits the raw path before percent-decoding
    so that an ARN label (`%2F` inside) stays one segment."""
    stripped = raw_path.strip("/")
    segs = stripped.split("/") if stripped else []
    # Tags: the ARN label may arrive with unencoded slashes; take everything after /tags/.
    if len(segs) >= 2 and segs[0] == "tags":
        segs = ["tags", "/".join(segs[1:])]
    elif len(segs) >= 3 and segs[0] == "v2" and segs[1] == "tags":
        segs = ["v2", "tags", "/".join(segs[2:])]
    for pat, val in _ROUTE_INDEX.get((method, len(segs)), ()):
        caps = []
        for lit, seg in zip(pat, segs):
            if lit == "*":
                caps.append(urllib.parse.unquote(seg))
            elif lit != seg:
                break
        else:
            return val[0], val[1], caps
    return None


# --------------------------------------------------------------------------------------------
# CloudTrail events, as EventBridge forwards them to SQS
#
# With `POST /_fake/events` (or --events-queue-url), every successful mutating call publishes
# the CloudTrail record AWS would write, wrapped in the EventBridge envelope, as one message
# to an SQS queue on a moto server: what an EventBridge rule (`source: aws.apigateway`,
# `detail-type: AWS API Call via CloudTrail`) with an SQS target delivers.  The shapes follow
# tests/fixtures/cloudtrail/ (see its README.md for the evidence and the assumptions).
# Failed calls and reads publish nothing (a rule in state ENABLED never sees reads).
# --------------------------------------------------------------------------------------------

EVENT_VERSION = "1.09"
EVENT_SOURCE_IP = "198.51.100.7"  # documentation range, as in the fixtures
SQS_API_VERSION = "2012-11-05"
SQS_TIMEOUT = 5  # seconds per SendMessage; the client waits for it
SQS_HOST_REGION_RE = re.compile(r"(?:^|\.)sqs\.([a-z0-9-]+)\.|^([a-z0-9-]+)\.queue\.")
CT_DATE_FIELDS = ("createdDate", "lastUpdatedDate", "expirationDate")


def ct_date(seconds: int) -> str:
    """v1 dates inside responseElements: CloudTrail logs API Gateway's Java-style dates,
    `Mar 5, 2025 2:02:33 PM`, not the epoch seconds of the wire."""
    d = dt.datetime.fromtimestamp(seconds, UTC)
    hour = d.hour % 12 or 12
    return f"{d:%b} {d.day}, {d.year} {hour}:{d:%M:%S} {'AM' if d.hour < 12 else 'PM'}"


def ct_resource(doc, links: dict):
    """A v1 answer as CloudTrail logs it: the resource's fields (dates rewritten) plus the
    HAL links (`self`, `stageUpdate`, ...), each `{ids..., "template": false}`."""
    out = dict(doc)
    for k in CT_DATE_FIELDS:
        if isinstance(out.get(k), int):
            out[k] = ct_date(out[k])
    for name, ids in links.items():
        out[name] = dict(ids, template=False)
    return out


def cert_links(cid):
    ids = {"clientCertificateId": cid}
    return {"clientcertificateUpdate": ids, "clientcertificateDelete": ids, "self": ids}


def stage_links(aid, name):
    ids = {"restApiId": aid, "stageName": name}
    return {"stageUpdate": ids, "stageFlushAuthorizerCache": ids, "stageDelete": ids, "self": ids}


# Builders: (captures, query, request body, answer document) -> (requestParameters,
# responseElements).  v1 wraps a request body as `<operation>Input` and adds `"template":
# false`, as the fixtures show; v2 logs `apiId` / `stageName` and the body's fields as sent.

def ev_generate_client_certificate(m, query, body, doc):
    return ({"generateClientCertificateInput": body, "template": False},
            ct_resource(doc, cert_links(doc["clientCertificateId"])))


def ev_update_client_certificate(m, query, body, doc):
    return ({"clientCertificateId": m[0], "updateClientCertificateInput": body,
             "template": False},
            ct_resource(doc, cert_links(m[0])))


def ev_delete_client_certificate(m, query, body, doc):
    return {"clientCertificateId": m[0], "template": False}, None


def ev_create_rest_api(m, query, body, doc):
    ids = {"restApiId": doc["id"]}
    return ({"createRestApiInput": body, "template": False},
            ct_resource(doc, {"restapiUpdate": ids, "restapiDelete": ids, "self": ids}))


def ev_delete_rest_api(m, query, body, doc):
    return {"restApiId": m[0], "template": False}, None


def ev_create_deployment(m, query, body, doc):
    ids = {"restApiId": m[0], "deploymentId": doc["id"]}
    links = {"deploymentUpdate": ids, "deploymentStages": ids, "deploymentDelete": ids,
             "self": ids}
    resp = ct_resource(doc, links)
    resp["deploymentStages"]["templateSkipList"] = ["position"]
    return {"restApiId": m[0], "createDeploymentInput": body, "template": False}, resp


def ev_create_stage(m, query, body, doc):
    return ({"restApiId": m[0], "createStageInput": body, "template": False},
            ct_resource(doc, stage_links(m[0], doc["stageName"])))


def ev_update_stage(m, query, body, doc):
    return ({"restApiId": m[0], "stageName": m[1], "updateStageInput": body, "template": False},
            ct_resource(doc, stage_links(m[0], m[1])))


def ev_delete_stage(m, query, body, doc):
    return {"restApiId": m[0], "stageName": m[1], "template": False}, None


def ev_tag_resource(m, query, body, doc):
    return {"tagResourceInput": body, "resourceArn": m[0], "template": False}, None


def ev_untag_resource(m, query, body, doc):
    return {"resourceArn": m[0], "tagKeys": query.get("tagKeys") or [], "template": False}, None


def ev_v2(names):
    """A v2 builder: the URI ids under `names` (apiId, stageName), then the body as sent; the
    answer as is (null when empty)."""
    def build(m, query, body, doc):
        params = dict(zip(names, m))
        params.update((k, v) for k, v in body.items() if k not in params)
        return params, (doc or None)
    return build


def ev_v2_tag_resource(m, query, body, doc):
    return dict({"resourceArn": m[0]}, **body), None


def ev_v2_untag_resource(m, query, body, doc):
    return {"resourceArn": m[0], "tagKeys": query.get("tagKeys") or []}, None


# Fake operation name -> builder.  The event's eventName drops the `v2:` prefix: CloudTrail
# logs v2 calls under the same event source with the plain operation name.
EVENT_BUILDERS = {
    "GenerateClientCertificate": ev_generate_client_certificate,
    "UpdateClientCertificate": ev_update_client_certificate,
    "DeleteClientCertificate": ev_delete_client_certificate,
    "CreateRestApi": ev_create_rest_api,
    "DeleteRestApi": ev_delete_rest_api,
    "CreateDeployment": ev_create_deployment,
    "CreateStage": ev_create_stage,
    "UpdateStage": ev_update_stage,
    "DeleteStage": ev_delete_stage,
    "TagResource": ev_tag_resource,
    "UntagResource": ev_untag_resource,
    "v2:CreateApi": ev_v2(()),
    "v2:DeleteApi": ev_v2(("apiId",)),
    "v2:CreateStage": ev_v2(("apiId",)),
    "v2:UpdateStage": ev_v2(("apiId", "stageName")),
    "v2:DeleteStage": ev_v2(("apiId", "stageName")),
    "v2:TagResource": ev_v2_tag_resource,
    "v2:UntagResource": ev_v2_untag_resource,
}
assert set(EVENT_BUILDERS) <= set(ALL_OPERATIONS), set(EVENT_BUILDERS) - set(ALL_OPERATIONS)


def caller_identity(key, account):
    """The IAM user the fake says a key belongs to (STS GetCallerIdentity, CloudTrail)."""
    return (f"arn:aws:iam::{account}:user/certsentinel-fake",
            "AIDA" + hashlib.sha1(key.encode()).hexdigest()[:17].upper())


def build_event(op, key, account, region, user_agent, request_id, m, query, body, out) -> dict:
    """The EventBridge event for one successful call: envelope + CloudTrail record."""
    doc = json.loads(out) if out else None
    params, resp = EVENT_BUILDERS[op](m, query, body_obj(body), doc)
    arn, user_id = caller_identity(key, account)
    when = iso(now_utc())
    detail = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"type": "IAMUser", "principalId": user_id, "arn": arn,
                         "accountId": account, "accessKeyId": key,
                         "userName": "certsentinel-fake"},
        "eventTime": when,
        "eventSource": "apigateway.amazonaws.com",
        "eventName": op.split(":")[-1],
        "awsRegion": region,
        "sourceIPAddress": EVENT_SOURCE_IP,
        "userAgent": user_agent,
        "requestParameters": params,
        "responseElements": resp,
        "requestID": request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": f"apigateway.{region}.amazonaws.com"},
    }
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.apigateway", "account": account, "time": when, "region": region,
            "resources": [], "detail": detail}


def parse_events_config(b) -> dict:
    """The body of `POST /_fake/events` (and --events-queue-url): where events go."""
    if not isinstance(b, dict):
        raise AdminError("body must be a JSON object")
    unknown = set(b) - {"queue_url", "duplicate", "queue_region"}
    if unknown:
        raise AdminError(f"unknown fields {sorted(unknown)}; expected queue_url, duplicate, "
                         f"queue_region")
    url = b.get("queue_url")
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("http", "https") or not parts.netloc \
            or not parts.path.strip("/"):
        raise AdminError(f"queue_url must be an SQS queue URL such as "
                         f"http://127.0.0.1:PORT/123456789012/name, got {url!r}")
    dup = b.get("duplicate", False)
    if not isinstance(dup, bool):
        raise AdminError(f"duplicate must be true or false, got {dup!r}")
    qr = b.get("queue_region")
    if qr is None:
        # A real queue URL names its region (sqs.REGION.amazonaws.com); moto's
        # http://127.0.0.1:PORT/ACCOUNT/NAME does not, and moto then wants it from the
        # signature's credential scope.
        hm = SQS_HOST_REGION_RE.search(parts.hostname or "")
        qr = (hm.group(1) or hm.group(2)) if hm else DEFAULT_REGION
    elif not isinstance(qr, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", qr):
        raise AdminError(f"queue_region must be a region name, got {qr!r}")
    return {"queue_url": url, "duplicate": dup, "queue_region": qr}


def sqs_send(cfg: dict, body: str) -> str:
    """SQS SendMessage in the query protocol over plain urllib; returns the MessageId.  moto
    checks no signature but needs a SigV4-shaped Authorization header (its region comes from
    the credential scope), and takes the account from `x-moto-account-id`: the queue's owner
    as its URL names it."""
    url = cfg["queue_url"]
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "X-Amz-Date": amz_date,
        "Authorization": (f"AWS4-HMAC-SHA256 Credential=testing/{amz_date[:8]}/"
                          f"{cfg['queue_region']}/sqs/aws4_request, "
                          f"SignedHeaders=content-type;host;x-amz-date, Signature={'0' * 64}"),
    }
    segs = urllib.parse.urlsplit(url).path.strip("/").split("/")
    if len(segs) == 2 and re.fullmatch(r"\d{12}", segs[0]):
        headers["x-moto-account-id"] = segs[0]
    data = urllib.parse.urlencode({"Action": "SendMessage", "QueueUrl": url,
                                   "MessageBody": body, "Version": SQS_API_VERSION})
    req = urllib.request.Request(url, method="POST", headers=headers, data=data.encode("utf-8"))
    try:
        with urllib.request.urlopen(req, timeout=SQS_TIMEOUT) as resp:
            text = resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        raise OSError(f"SQS said {e.code}: {e.read().decode('utf-8', 'replace')[:200]}") from None
    mm = re.search(r"<MessageId>([^<]+)</MessageId>", text)
    if not mm:
        raise OSError(f"no <MessageId> in SQS answer: {text[:200]}")
    return mm.group(1)


# --------------------------------------------------------------------------------------------
# HTTP layer
# --------------------------------------------------------------------------------------------

FAKE: Fake = None  # set in main()


class Handler(BaseHandler):
    server_version = "certsentinel-apigateway-fake"

    # -- plumbing ----------------------------------------------------------------------------

    def send(self, status: int, body: str | bytes | None, extra_headers=None, request_id=None):
        if isinstance(body, str):
            body = body.encode("utf-8")
        reason = self.responses.get(status, ("Unknown",))[0]
        lines = [f"HTTP/1.1 {status} {reason}",
                 f"Date: {email.utils.formatdate(time.time() + FAKE.clock_offset, usegmt=True)}",
                 f"x-amzn-RequestId: {request_id or uuid.uuid4()}"]
        if extra_headers:
            lines.extend(f"{k}: {v}" for k, v in extra_headers.items())
        if status != 204:
            if body is None:
                body = b""
            if not (extra_headers and "Content-Type" in extra_headers):
                lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        else:
            body = b""
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if VERBOSE:
            log(f"{self.command} {self.path} -> {status}")

    def send_caller_identity(self, key, account, body_bytes):
        """STS GetCallerIdentity, for the account this fake gives `key` (the same account its
        API Gateway answers for): in the query protocol's XML, or in JSON when the client
        speaks the JSON protocol (X-Amz-Target)."""
        arn, user_id = caller_identity(key, account)
        target = self.headers.get("X-Amz-Target") or ""
        if target.endswith("GetCallerIdentity"):
            body = json.dumps({"Account": account, "Arn": arn, "UserId": user_id})
            self.send(200, body, {"Content-Type": "application/x-amz-json-1.0"})
            return
        if b"Action=GetCallerIdentity" not in (body_bytes or b""):
            self.send_error_json(ApiError(400, "InvalidAction", "only GetCallerIdentity is served"), False)
            return
        xml = ('<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
               f"<GetCallerIdentityResult><Arn>{arn}</Arn><UserId>{user_id}</UserId>"
               f"<Account>{account}</Account></GetCallerIdentityResult>"
               f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
               "</GetCallerIdentityResponse>")
        self.send(200, xml, {"Content-Type": "text/xml"})

    def send_error_json(self, e: ApiError, v2: bool):
        headers = {"x-amzn-ErrorType": e.error_type + ("" if v2 else V1_ERROR_SUFFIX)}
        headers.update(e.headers)
        payload = {"message": e.message}
        payload.update(e.extra)
        self.send(e.status, json.dumps(payload), headers)

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, method):
        raw_path, _, raw_query = self.path.partition("?")
        try:
            body = self.read_body()
        except Exception as e:  # noqa: BLE001
            self.close_connection = True
            self.send(400, json.dumps({"message": f"cannot read body: {e}"}))
            return
        if raw_path.startswith("/_fake/") or raw_path == "/_fake":
            self.admin(method, raw_path, raw_query, body)
            return
        v2 = raw_path.startswith("/v2/")
        try:
            self.api_call(method, raw_path, raw_query, body, v2)
        except ApiError as e:
            self.send_error_json(e, v2)
        except Exception as e:  # noqa: BLE001
            log(f"internal error on {method} {self.path}: {e!r}")
            self.send_error_json(ApiError(500, "InternalFailure", f"fake crashed: {e!r}"), v2)

    def api_call(self, method, raw_path, raw_query, body_bytes, v2):
        fake = FAKE
        auth = self.headers.get("Authorization") or ""
        am = AUTH_RE.search(auth)
        r = route(method, raw_path)
        op = r[0] if r else "Unknown"
        if not am:
            with fake.lock:
                fake.record_call_locked(op, None, None, None, raw_path)
            raise ApiError(403, "MissingAuthenticationTokenException",
                           "Missing Authentication Token")
        key, region = am.group(1), am.group(3)
        account = fake.resolve_account(key)
        if method == "POST" and raw_path in ("", "/") and am.group(4) == "sts":
            with fake.lock:
                fake.record_call_locked("sts:GetCallerIdentity", key, account, region, raw_path)
            self.send_caller_identity(key, account, body_bytes)
            return
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True) if raw_query else {}
        body = None
        if body_bytes and r is not None:
            try:
                body = json.loads(body_bytes)
            except ValueError:
                raise bad_request("Invalid JSON in request body") from None
        request_id = str(uuid.uuid4())
        event = None
        with fake.lock:
            # Counted when it arrives, even if its answer is slow.
            fake.record_call_locked(op, key, account, region, raw_path)
            slow = fake.take_slow_locked(op, account, region)
        if slow:
            # A slow answer: the call waits, then is served as usual (other calls go on).
            time.sleep(slow)
        with fake.lock:
            if r is None:
                raise ApiError(501, "NotImplemented",
                               f"certsentinel fake: no such operation: {method} {raw_path}")
            fake.run_hooks_locked(op, account, region)
            fault = fake.take_fault_locked(op, account, region)
            if fault is not None and fault["kind"] not in PAGE_FAULTS:
                raise fake.fault_error(fault)
            p = fake.part(account, region)
            if fault is not None and fault["kind"] in TOKEN_FAULTS:
                # The broken token we handed out is not ours to decode: serve the first page
                # again, with another broken token.
                query = {k: v for k, v in query.items() if k not in ("position", "nextToken")}
            status, out = r[1](fake, p, query, body, r[2])
            if fault is not None:
                out = page_fault(fault, out)
            if fake.events is not None and 200 <= status < 300:
                event = fake.event_locked(op, key, account, region,
                                          self.headers.get("User-Agent") or "", request_id,
                                          r[2], query, body, out)
        if event is not None:
            # After the change, before the answer: when the client returns, it is queued.
            fake.publish(*event)
        self.send(status, out, request_id=request_id)

    # -- admin ----------------------------------------------------------------------------------

    def admin(self, method, raw_path, raw_query, body_bytes):
        fake = FAKE
        path = raw_path.rstrip("/")
        query = urllib.parse.parse_qs(raw_query) if raw_query else {}
        try:
            body = json.loads(body_bytes) if body_bytes.strip() else {}
        except ValueError:
            self.send(400, json.dumps({"error": "invalid JSON body"}))
            return
        try:
            status, out = self.admin_route(fake, method, path, query, body)
        except AdminError as e:
            status, out = 400, {"error": str(e)}
        except Exception as e:  # noqa: BLE001
            log(f"admin error on {method} {raw_path}: {e!r}")
            status, out = 500, {"error": repr(e)}
        self.send(status, json.dumps(out))

    def admin_route(self, fake, method, path, query, body):
        if path == "/_fake/health":
            return 200, {"ok": True}
        if path == "/_fake/reset" and method == "POST":
            with fake.lock:
                fake._reset_locked()
            return 200, {"ok": True}
        if path == "/_fake/seed" and method == "POST":
            t = time.perf_counter()
            with fake.lock:
                out = fake.seed_locked(body)
            out["seconds"] = round(time.perf_counter() - t, 3)
            return 200, out
        if path == "/_fake/calls" and method == "GET":
            with fake.lock:
                out = {"total": fake.calls_total, "by_operation": dict(fake.calls_by_op),
                       "by_access_key": dict(fake.calls_by_key),
                       "by_partition": dict(fake.calls_by_partition)}
                if query.get("log"):
                    out["recent"] = list(fake.recent)
            return 200, out
        if path == "/_fake/calls/reset" and method == "POST":
            with fake.lock:
                fake._reset_calls_locked()
            return 200, {"ok": True}
        if path == "/_fake/faults":
            if method == "POST":
                f = self.parse_fault(body)
                with fake.lock:
                    fake.faults.append(f)
                return 200, {"ok": True, "queued": f}
            if method == "GET":
                with fake.lock:
                    return 200, {"faults": [dict(f) for f in fake.faults]}
            if method == "DELETE":
                with fake.lock:
                    fake.faults.clear()
                return 200, {"ok": True}
        if path == "/_fake/clock":
            if method == "POST":
                with fake.lock:
                    fake.clock_offset = int(body.get("offset_seconds", 0))
            return 200, {"offset_seconds": fake.clock_offset}
        if path == "/_fake/hooks":
            if method == "POST":
                h = self.parse_hook(body)
                with fake.lock:
                    fake.hooks.append(h)
                return 200, {"ok": True, "queued": h}
            if method == "GET":
                with fake.lock:
                    return 200, {"hooks": [dict(h) for h in fake.hooks]}
            if method == "DELETE":
                with fake.lock:
                    fake.hooks.clear()
                return 200, {"ok": True}
        if path == "/_fake/keys":
            if method == "POST":
                if not body.get("access_key_id") or not re.fullmatch(r"\d{12}",
                                                                     str(body.get("account"))):
                    raise AdminError("need access_key_id and a 12-digit account")
                with fake.lock:
                    fake.key_accounts[body["access_key_id"]] = str(body["account"])
                return 200, {"ok": True}
            if method == "GET":
                with fake.lock:
                    return 200, {"keys": dict(fake.key_accounts), "sts_cache": dict(fake.sts_cache)}
        if path == "/_fake/events":
            if method == "POST":
                cfg = parse_events_config(body)
                with fake.lock:
                    fake.set_events_locked(cfg)
                return 200, dict(cfg, ok=True)
            if method == "DELETE":
                with fake.lock:
                    fake.set_events_locked(None)
                return 200, {"ok": True}
            if method == "GET":
                with fake.lock:
                    cfg = fake.events or {"queue_url": None, "duplicate": False,
                                          "queue_region": None}
                    return 200, dict(cfg, published=[dict(e) for e in fake.published])
        if path == "/_fake/state" and method == "GET":
            with fake.lock:
                return 200, fake.state_locked(q1(query, "account"), q1(query, "region"))
        return 404, {"error": f"no admin endpoint {method} {path}"}

    @staticmethod
    def _check_op(op):
        if op in ("*", "v1:*", "v2:*") or op in ALL_OPERATIONS:
            return op
        raise AdminError(f"unknown operation {op!r}; one of {ALL_OPERATIONS} or *, v1:*, v2:*")

    def parse_fault(self, b):
        kinds = ("throttle", "error", "unavailable", "access_denied", "unauthorized",
                 "slow") + PAGE_FAULTS
        if b.get("kind") not in kinds:
            raise AdminError(f"kind must be one of {kinds}")
        count = int(b.get("count", 1))
        if count < 1:
            raise AdminError("count must be >= 1")
        f = {"operation": self._check_op(b.get("operation") or "*"), "kind": b["kind"],
             "count": count, "remaining": count}
        for k in ("retry_after_seconds", "status", "error_type", "message", "account", "region", "id",
                  "seconds"):
            if b.get(k) is not None:
                f[k] = b[k]
        if "status" in f:
            f["status"] = int(f["status"])
        return f

    def parse_hook(self, b):
        d = b.get("delete")
        if not isinstance(d, dict):
            raise AdminError("hook needs a 'delete' object")
        if d.get("kind") not in ("rest_api", "client_certificate", "stage", "v2_api", "v2_stage"):
            raise AdminError("delete.kind must be rest_api|client_certificate|stage|v2_api|v2_stage")
        if not d.get("id"):
            raise AdminError("delete.id is required")
        if d["kind"] in ("stage", "v2_stage") and not d.get("stage"):
            raise AdminError("delete.stage is required for stages")
        nth = int(b.get("nth", 1))
        if nth < 1:
            raise AdminError("nth must be >= 1")
        return {"operation": self._check_op(b.get("operation") or "*"), "nth": nth,
                "remaining": nth, "delete": d}


# --------------------------------------------------------------------------------------------
# Sandbox estate
# --------------------------------------------------------------------------------------------

def sandbox_specs(now: dt.datetime):
    """A believable estate for demos: account 123456789012, us-east-1 and eu-west-1."""

    def days(n):
        return (now + dt.timedelta(days=n)).isoformat()

    def cert(cid, left, desc, tags=None, age_days=None):
        c = {"id": cid, "not_after": days(left), "description": desc, "tags": tags or {}}
        if age_days is not None:  # a certificate generated recently (rotation in progress)
            c["not_before"] = days(-age_days)
            c["not_after"] = days(-age_days + 365)
        return c

    def dates(spec):
        """APIs created long ago; a stage was last updated when its certificate was attached
        (two days after the certificate was generated)."""
        born = {c["id"]: dt.datetime.fromisoformat(c.get("not_before") or c["not_after"])
                - (dt.timedelta(0) if c.get("not_before") else CERT_VALIDITY)
                for c in spec["certificates"]}
        for group in ("rest_apis", "v2_apis"):
            for a in spec[group]:
                a.setdefault("created_date", days(-730))
                for s in a["stages"]:
                    s.setdefault("created_date", days(-700))
                    cid = s.get("client_certificate_id")
                    if cid in born:
                        upd = min(born[cid] + dt.timedelta(days=2), now)
                        s.setdefault("last_updated_date", upd.isoformat())
                    else:
                        s.setdefault("last_updated_date", days(-100))
        return spec

    acm = f"arn:aws:acm:us-east-1:{DEFAULT_ACCOUNT}:certificate/3f1b6f0e-8c2a-4d57-9b1e-6a0c2f7d9e41"
    use1 = {
        "account": DEFAULT_ACCOUNT, "region": "us-east-1",
        "certificates": [
            cert("q7ordexp01", -12, "orders-api backend mTLS 2024", {"owner": "payments"}),
            cert("l3dgr05day", 5, "ledger-api backend mTLS"),
            cert("l3dgrnew01", 365, "ledger-api backend mTLS (rotation, new)",
                 {"owner": "payments"}, age_days=0.2),
            cert("idnt20days", 20, "identity-api backend mTLS"),
            cert("srch45days", 45, "search-api backend mTLS", {"owner": "search"}),
            cert("pltf300day", 300, "platform-gateway backend mTLS", {"owner": "platform"}),
            cert("acme20days", 20, "payments-partner-api -> acme-payments endpoint"),
            cert("lgcy05days", 5, "legacy-reports backend"),
            cert("ntfy45days", 45, "notifications websocket backend", {"owner": "platform"}),
            cert("chatexpird", -3, "chat websocket backend"),
            cert("ctlg300day", 300, "catalog-api backend mTLS", {"owner": "search"}),
            cert("pric20days", 20, "pricing-api backend mTLS"),
            cert("auth300day", 300, "auth-api backend mTLS", {"owner": "identity"}),
            cert("rpts45days", 45, "reports-api backend mTLS"),
            cert("old2023exp", -420, "old orders cert, replaced 2024", {"owner": "payments"}),
            cert("unusd05day", 5, "spare, never attached"),
            cert("unusd20day", 20, "test cert for staging", {"owner": "identity"}),
            cert("unusd300dy", 300, "pre-generated for ledger rotation", {"owner": "payments"}),
            cert("unusdexp02", -30, None),
            cert("mystery001", 120, None),
            cert("mystery002", 200, "who made this?"),
            cert("usrs45days", 45, "users-api backend mTLS", {"owner": "identity"}),
            cert("whks300day", 300, "webhooks-api backend mTLS", {"owner": "payments"}),
            cert("sugg05days", 5, "suggest-api backend mTLS", {"owner": "search"}),
            cert("unusdexp03", -200, "orders-api backend mTLS 2023, superseded"),
        ],
        "rest_apis": [
            {"id": "ord3rsapi1", "name": "orders-api", "description": "Order intake",
             "tags": {"owner": "payments"},
             "stages": [{"name": "prod", "client_certificate_id": "q7ordexp01",
                         "tags": {"owner": "payments"}},
                        {"name": "staging", "client_certificate_id": "q7ordexp01"},
                        {"name": "dev"}]},
            {"id": "l3dg3rapi1", "name": "ledger-api", "tags": {"owner": "payments"},
             "stages": [{"name": "prod", "client_certificate_id": "l3dgr05day"},
                        {"name": "canary", "client_certificate_id": "l3dgrnew01"}]},
            {"id": "id3ntityap", "name": "identity-api",
             "stages": [{"name": "prod", "client_certificate_id": "idnt20days",
                         "tags": {"owner": "identity"}},
                        {"name": "staging", "client_certificate_id": "idnt20days",
                         "tags": {"owner": "identity"}}]},
            {"id": "s3archapi1", "name": "search-api",
             "stages": [{"name": "prod", "client_certificate_id": "srch45days"}]},
            {"id": "pl4tformgw", "name": "platform-gateway", "tags": {"owner": "platform"},
             "stages": [{"name": "prod", "client_certificate_id": "pltf300day"},
                        {"name": "edge", "client_certificate_id": acm}]},
            {"id": "p4rtnerapi", "name": "payments-partner-api",
             "stages": [{"name": "prod", "client_certificate_id": "acme20days",
                         "tags": {"owner": "payments", "partner": "acme-payments"}}]},
            {"id": "l3gacyrpts", "name": "legacy-reports-api",
             "stages": [{"name": "prod", "client_certificate_id": "lgcy05days"}]},
            {"id": "c4talogapi", "name": "catalog-api", "tags": {"owner": "search"},
             "stages": [{"name": "prod", "client_certificate_id": "ctlg300day"},
                        {"name": "dev"}]},
            {"id": "pr1cingapi", "name": "pricing-api",
             "stages": [{"name": "prod", "client_certificate_id": "pric20days",
                         "tags": {"owner": "payments"}}]},
            {"id": "au7hapi001", "name": "auth-api",
             "stages": [{"name": "prod", "client_certificate_id": "auth300day"}]},
            {"id": "r3portsapi", "name": "reports-api",
             "stages": [{"name": "prod", "client_certificate_id": "rpts45days"}]},
            {"id": "us3rsapi01", "name": "users-api", "tags": {"owner": "identity"},
             "stages": [{"name": "prod", "client_certificate_id": "usrs45days"},
                        {"name": "sandbox"}]},
            {"id": "w3bhooks01", "name": "webhooks-api",
             "stages": [{"name": "prod", "client_certificate_id": "whks300day"}]},
            {"id": "sugg3stapi", "name": "suggest-api",
             "stages": [{"name": "prod", "client_certificate_id": "sugg05days"},
                        {"name": "beta", "client_certificate_id": "sugg05days"}]},
            {"id": "h3althchk1", "name": "healthcheck-api", "stages": [{"name": "prod"}]},
        ],
        "v2_apis": [
            {"id": "n0tifywsap", "name": "notifications-ws", "protocol_type": "WEBSOCKET",
             "tags": {"owner": "platform"},
             "stages": [{"name": "production", "client_certificate_id": "ntfy45days"}]},
            {"id": "ch4twsapi1", "name": "chat-ws", "protocol_type": "WEBSOCKET",
             "stages": [{"name": "prod", "client_certificate_id": "chatexpird"},
                        {"name": "dev"}]},
            {"id": "st0refront", "name": "storefront-http", "protocol_type": "HTTP",
             "tags": {"owner": "search"}, "stages": [{"name": "$default"}]},
        ],
    }
    euw1 = {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-1",
        "certificates": [
            cert("euordexp01", -40, "orders-api-eu backend mTLS", {"owner": "payments"}),
            cert("eucat05day", 5, "catalog-api-eu backend mTLS"),
            cert("euidn20day", 20, "identity-api-eu backend mTLS", {"owner": "identity"}),
            cert("eusrc45day", 45, "search-api-eu backend mTLS"),
            cert("eupla300dy", 300, "platform-gateway-eu backend mTLS", {"owner": "platform"}),
            cert("euunused01", 20, "spare (eu)"),
            cert("euunused02", -5, None),
            cert("euunused03", 300, "gdpr-export backend (not yet attached)",
                 {"owner": "platform"}),
            cert("euws45days", 45, "eu notifications websocket backend"),
        ],
        "rest_apis": [
            {"id": "euord3rsap", "name": "orders-api-eu", "tags": {"owner": "payments"},
             "stages": [{"name": "prod", "client_certificate_id": "euordexp01"}]},
            {"id": "euc4talog1", "name": "catalog-api-eu",
             "stages": [{"name": "prod", "client_certificate_id": "eucat05day"}]},
            {"id": "euid3ntity", "name": "identity-api-eu",
             "stages": [{"name": "prod", "client_certificate_id": "euidn20day"}]},
            {"id": "eus3arch01", "name": "search-api-eu",
             "stages": [{"name": "prod", "client_certificate_id": "eusrc45day",
                         "tags": {"owner": "search"}}]},
            {"id": "eupl4tform", "name": "platform-gateway-eu",
             "stages": [{"name": "prod", "client_certificate_id": "eupla300dy"}]},
        ],
        "v2_apis": [
            {"id": "eun0tifyws", "name": "notifications-ws-eu", "protocol_type": "WEBSOCKET",
             "stages": [{"name": "production", "client_certificate_id": "euws45days",
                         "tags": {"owner": "platform"}}]},
            {"id": "euh77papi1", "name": "checkout-http-eu", "protocol_type": "HTTP",
             "tags": {"owner": "payments"}, "stages": [{"name": "$default"}]},
        ],
    }
    return [dates(use1), dates(euw1)]


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def main(argv=None):
    global FAKE, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--seed", choices=("none", "sandbox"), default="none")
    ap.add_argument("--sts-endpoint", help="moto server URL to map access keys to accounts")
    ap.add_argument("--v2-max-results", type=int, default=V2_MAX_RESULTS_DEFAULT,
                    help="largest maxResults accepted by v2 GetApis/GetStages (default 500)")
    ap.add_argument("--events-queue-url", metavar="URL",
                    help="publish CloudTrail events of successful mutating calls to this SQS "
                         "queue (as POST /_fake/events does)")
    ap.add_argument("--events-queue-region", metavar="REGION",
                    help="the queue's region, for moto (default: from the URL, else us-east-1)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    FAKE = Fake(args.sts_endpoint, args.v2_max_results)
    if args.events_queue_url:
        try:
            cfg = parse_events_config({"queue_url": args.events_queue_url,
                                       "queue_region": args.events_queue_region})
        except AdminError as e:
            ap.error(f"--events-queue-url: {e}")
        with FAKE.lock:
            FAKE.set_events_locked(cfg)
    elif args.events_queue_region:
        ap.error("--events-queue-region needs --events-queue-url")
    if args.seed == "sandbox":
        rng = random.Random(20261125)
        with FAKE.lock:
            # Dates count from today's midnight (UTC), so the estate is the same on every run
            # of one day: a scan of a second run finds nothing new.
            for spec in sandbox_specs(now_utc().replace(hour=0, minute=0, second=0)):
                FAKE.seed_locked(spec, rng=rng)

    return serve(Server(args.port, Handler, args.verbose), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
