#!/usr/bin/env python3
"""Fake Jira (Cloud REST v3 or Data Center REST v2) that checks every request against the vendor's OpenAPI.

One process plays one flavour (`--flavour cloud|datacenter`). Request bodies are validated
against the request schema the vendor's OpenAPI document gives for the operation (`$ref`s
resolved within the document), Cloud's Atlassian Document Format bodies against the ADF JSON
schema, and then against what Jira itself enforces (required create fields, label spaces,
priority names, ...). Every request is recorded, refused ones included. Faults and the
records are driven through an admin API under /_fake/ (no auth). See README.md next to this
file.

Only the Python 3.11 standard library and `jsonschema` (with its `referencing`) are used.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets as secrets_mod
import socket
import sys
import threading
import time
import urllib.parse

from fakelib import AdminError, BaseHandler, Server, json_path, log, now_iso, serve, short

ADMIN_PREFIX = "/_fake/"
TAG_MEMBERS = ("type",)  # the member that picks an anyOf/oneOf branch (ADF nodes and marks)
TEXT_LIMIT = 32767       # Jira's jira.text.field.character.limit (description, comment body)

VERBOSE = False
FAKE: "Fake"


def jira_time(ts: float) -> str:
    """Jira's timestamp form, `2026-01-31T12:00:00.000+0000`."""
    d = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}+0000"


class StartupError(Exception):
    """A spec that cannot be used: the fake refuses to start."""


# --------------------------------------------------------------------------------------------
# Schema error messages
# --------------------------------------------------------------------------------------------

def explain(error, prefix="$") -> list[str]:
    """One error of `iter_errors` as readable strings. A failed anyOf/oneOf (ADF's node and mark
    unions) is replaced by the errors of the branch its `type` picked; when several branches
    share the type (ADF has three paragraph variants), by the branch with the fewest errors."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [f"{json_path(error, prefix)}: {error.message}"]
    branches: dict[int, list] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    tag_misses = []
    picked = []
    for index in sorted(branches):
        subs = branches[index]
        missed = [s for s in subs if s.validator in ("const", "enum") and len(s.relative_path) == 1
                  and s.relative_path[0] in TAG_MEMBERS]
        if missed:
            tag_misses.extend(missed)
        else:
            picked.append(subs)
    if picked:
        best = min(picked, key=len)
        return [line for sub in best for line in explain(sub, prefix)]
    if tag_misses:
        member = tag_misses[0].relative_path[0]
        known: list = []
        for s in tag_misses:
            for v in (s.validator_value if s.validator == "enum" else [s.validator_value]):
                if v not in known:
                    known.append(v)
        got = error.instance.get(member) if isinstance(error.instance, dict) else None
        return [f"{json_path(error, prefix)}.{member}: {short(got)} is not one of {known}"]
    return [f"{json_path(error, prefix)}: {short(error.instance)} is not valid under any of the given schemas"]


# --------------------------------------------------------------------------------------------
# The OpenAPI documents and the ADF schema
# --------------------------------------------------------------------------------------------

def load_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise StartupError(f"cannot read {path}: {e}") from None


def pointer_escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def pointer_get(doc, pointer: str):
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        seg = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(seg)] if isinstance(node, list) else node[seg]
    return node


def oas30_nullable(doc) -> int:
    """OpenAPI 3.0 Schema Objects are draft-04 JSON Schema plus `nullable`. As 3.0.3 clarifies,
    `nullable: true` adds "null" to an explicitly given `type` and does nothing else (an `enum`
    still has to list null). Rewritten in place; returns how many schemas changed."""
    changed = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
            if node.get("nullable") is True and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
                changed += 1
        elif isinstance(node, list):
            stack.extend(node)
    return changed


# Defects of the generated Data Center document that contradict its own narrative
# (#/x-atlassian-narrative/documents/11, "Field input formats") and Jira's behaviour; SOURCES.md
# says to trust Jira there. Each: (JSON pointer, expected value, replacement, why).
DC_PATCHES = [
    ("/components/schemas/IssueUpdateBean/properties/fields/additionalProperties",
     {"type": "object"}, {},
     "IssueUpdateBean.fields declares every field value an object, but summary and description "
     "are strings and labels an array of strings (narrative documents/11)"),
]


def apply_patches(doc, patches) -> list[str]:
    applied = []
    for pointer, expected, replacement, why in patches:
        parent_ptr, _, last = pointer.rpartition("/")
        try:
            parent = pointer_get(doc, parent_ptr)
            current = parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        if {k: v for k, v in current.items() if k != "example"} == expected:
            parent[last] = replacement
            applied.append(f"{pointer}: {json.dumps(expected)} -> {json.dumps(replacement)} ({why})")
    return applied


def _read_only(validator, value, instance, schema):
    # OpenAPI 3.0: a readOnly property "SHOULD NOT be sent as part of the request". Jira ignores
    # such members, so these come out as warnings, not errors.
    if value is True:
        from jsonschema.exceptions import ValidationError
        yield ValidationError("is read-only in the spec; a request SHOULD NOT send it")


def format_checker():
    import jsonschema

    fc = jsonschema.FormatChecker()

    @fc.checks("int32")
    def int32(v):
        return not isinstance(v, int) or isinstance(v, bool) or -2**31 <= v < 2**31

    @fc.checks("int64")
    def int64(v):
        return not isinstance(v, int) or isinstance(v, bool) or -2**63 <= v < 2**63

    return fc


class SchemaCheck:
    """A validator for one JSON Schema pointer inside a registered document."""

    def __init__(self, cls, uri: str, pointer: str, registry, checker):
        self.pointer = pointer
        self.validator = cls({"$ref": f"{uri}#{pointer}"}, registry=registry, format_checker=checker)

    def check(self, instance, prefix="$") -> tuple[list[str], list[str]]:
        """(errors, read-only warnings) as `$.path: message` strings."""
        errors, warnings = [], []
        for e in self.validator.iter_errors(instance):
            if e.validator == "readOnly":
                warnings.append(f"{json_path(e, prefix)}: {e.message}")
            else:
                errors.extend(explain(e, prefix))
        return errors, warnings


class Spec:
    """One OpenAPI 3.0 document, loaded once, with validators built once per operation."""

    def __init__(self, path: str, name: str, patches=()):
        import jsonschema
        from referencing import Registry
        from referencing.jsonschema import DRAFT4

        doc = load_json(path)
        if not str(doc.get("openapi", "")).startswith("3.0"):
            raise StartupError(f"{path}: not an OpenAPI 3.0 document")
        self.file = os.path.basename(path)
        self.title = doc.get("info", {}).get("title")
        self.version = doc.get("info", {}).get("version")
        self.patches = apply_patches(doc, patches)
        self.nullable_rewritten = oas30_nullable(doc)
        self.doc = doc
        self.uri = f"urn:certsentinel-jira-fake:{name}"
        self.registry = Registry().with_resource(self.uri, DRAFT4.create_resource(doc))
        self.cls = jsonschema.validators.extend(jsonschema.Draft4Validator, {"readOnly": _read_only})
        self.checker = format_checker()

    def operation(self, spec_path: str, method: str) -> dict:
        try:
            op = self.doc["paths"][spec_path][method.lower()]
        except KeyError:
            raise StartupError(f"{self.file}: no operation {method} {spec_path}") from None
        return op

    def body_check(self, spec_path: str, method: str) -> SchemaCheck:
        pointer = (f"/paths/{pointer_escape(spec_path)}/{method.lower()}"
                   "/requestBody/content/application~1json/schema")
        try:
            pointer_get(self.doc, pointer)
        except (KeyError, IndexError, TypeError):
            raise StartupError(f"{self.file}: no JSON request body schema at #{pointer}") from None
        return SchemaCheck(self.cls, self.uri, pointer, self.registry, self.checker)

    def resolve(self, schema: dict) -> dict:
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 20:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                break
            schema = pointer_get(self.doc, ref[1:])
            seen += 1
        return schema

    def query_params(self, spec_path: str, method: str) -> dict[str, dict]:
        op = self.operation(spec_path, method)
        out = {}
        for p in op.get("parameters", []):
            p = self.resolve(p)
            if p.get("in") == "query":
                schema = self.resolve(p.get("schema", {}))
                if schema.get("type") == "array":
                    schema = dict(schema, items=self.resolve(schema.get("items", {})))
                out[p["name"]] = schema
        return out


def check_query(params: dict[str, dict], query: dict[str, list[str]]) -> list[str]:
    """Scalar query parameters against their declared integer/boolean types; arrays are taken
    as repeated or comma-separated values. Unknown parameters are ignored, as Jira does."""
    errors = []
    for name, values in query.items():
        schema = params.get(name)
        if schema is None:
            continue
        typ, items = schema.get("type"), None
        if typ == "array":
            items = (schema.get("items") or {}).get("type")
            values = [v.strip() for value in values for v in value.split(",") if v.strip()]
            typ = items
        for v in values:
            if typ == "integer":
                try:
                    n = int(v)
                except ValueError:
                    errors.append(f"query.{name}: {v!r} is not an integer")
                    continue
                fmt = (schema.get("items") or {}).get("format") if items else schema.get("format")
                if fmt == "int32" and not -2**31 <= n < 2**31:
                    errors.append(f"query.{name}: {v} is out of int32 range")
            elif typ == "boolean" and v not in ("true", "false"):
                errors.append(f"query.{name}: {v!r} is not true or false")
    return errors


# --------------------------------------------------------------------------------------------
# Jira's fixed configuration in the fake
# --------------------------------------------------------------------------------------------

PRIORITIES = [("1", "Highest"), ("2", "High"), ("3", "Medium"), ("4", "Low"), ("5", "Lowest")]
PRIORITY_BY_NAME = {name: pid for pid, name in PRIORITIES}
PRIORITY_BY_ID = {pid: name for pid, name in PRIORITIES}
DEFAULT_PRIORITY = "Medium"

# status name -> (status id, category id, category key, category name, colour)
STATUSES = {
    "To Do": ("10000", 2, "new", "To Do", "blue-gray"),
    "In Progress": ("3", 4, "indeterminate", "In Progress", "yellow"),
    "Done": ("10001", 3, "done", "Done", "green"),
}
INITIAL_STATUS = "To Do"
TRANSITIONS = [("11", "To Do"), ("21", "In Progress"), ("31", "Done")]  # (id, target status)
TRANSITION_TARGET = dict(TRANSITIONS)

ISSUE_FIELDS = ("summary", "description", "labels", "priority", "status", "issuetype", "project",
                "comment", "created", "updated", "resolution", "resolutiondate",
                "statuscategorychangedate")
NAVIGABLE = set(ISSUE_FIELDS) - {"comment"}
EDITABLE = ("summary", "description", "labels", "priority")
CREATABLE = EDITABLE + ("project", "issuetype")

REMOVED_SEARCH_ANSWER = {
    "errorMessages": ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                      "API. A full migration guideline is available at "
                      "https://developer.atlassian.com/changelog/#CHANGE-2046"],
    "errors": {},
}
UNBOUNDED_JQL = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."


class Flavour:
    def __init__(self, name: str):
        self.name = name
        self.cloud = name == "cloud"
        self.api = "/rest/api/3" if self.cloud else "/rest/api/2"
        self.spec_prefix = "/rest/api/3" if self.cloud else "/api/2"


# Routes: (method, path under the API prefix, handler kind, path in the spec document).
ISSUE = r"/issue/(?P<key>[^/]+)"
COMMON_ROUTES = [
    ("POST", r"/issue", "create", "/issue"),
    ("GET", ISSUE, "get", "/issue/{issueIdOrKey}"),
    ("PUT", ISSUE, "edit", "/issue/{issueIdOrKey}"),
    ("GET", ISSUE + r"/comment", "comments", "/issue/{issueIdOrKey}/comment"),
    ("POST", ISSUE + r"/comment", "comment", "/issue/{issueIdOrKey}/comment"),
    ("GET", ISSUE + r"/transitions", "transitions", "/issue/{issueIdOrKey}/transitions"),
    ("POST", ISSUE + r"/transitions", "transition", "/issue/{issueIdOrKey}/transitions"),
    ("GET", r"/myself", "myself", "/myself"),
]
CLOUD_ROUTES = [
    ("GET", r"/search/jql", "search", "/search/jql"),
    ("POST", r"/search/jql", "search", "/search/jql"),
]
DC_ROUTES = [
    ("GET", r"/search", "search", "/search"),
    ("POST", r"/search", "search", "/search"),
]
BODY_KINDS = {"create", "edit", "comment", "transition", "search"}  # POST/PUT with a JSON body


class Route:
    def __init__(self, method, pattern, kind, spec_path, operation_id, body, query):
        self.method = method
        self.pattern = pattern
        self.kind = kind
        self.spec_path = spec_path
        self.operation_id = operation_id
        self.body = body      # SchemaCheck or None
        self.query = query    # name -> schema


# --------------------------------------------------------------------------------------------
# Checks Jira makes beyond the OpenAPI schema
# --------------------------------------------------------------------------------------------

class Problems:
    """What is wrong with a request: Jira's error collection plus the schema's complaints."""

    def __init__(self):
        self.messages: list[str] = []
        self.fields: dict[str, str] = {}
        self.schema: list[str] = []
        self.warnings: list[str] = []
        self.status = 400

    def field(self, name: str, msg: str) -> None:
        self.fields.setdefault(name, msg)  # Jira reports one message per field

    def message(self, msg: str) -> None:
        self.messages.append(msg)

    def __bool__(self):
        return bool(self.messages or self.fields or self.schema)

    def lines(self) -> list[str]:
        return self.schema + [f"{k}: {v}" for k, v in self.fields.items()] + self.messages

    def answer(self) -> dict:
        return {"errorMessages": self.messages + self.schema, "errors": dict(self.fields)}


def cannot_set(name: str) -> str:
    return f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."


class Checker:
    """Jira's own rules for the fields the fake supports, per flavour."""

    def __init__(self, flavour: Flavour, adf: SchemaCheck | None, projects: set[str] | None):
        self.fl = flavour
        self.adf = adf
        self.projects = projects

    # -- single values -----------------------------------------------------------------------

    def rich_text(self, p: Problems, name: str, value, path: str) -> bool:
        """A description or comment body: ADF in Cloud v3, a string in Data Center v2."""
        if self.fl.cloud:
            if not isinstance(value, dict):
                p.field(name, "Operation value must be an Atlassian Document (see the Atlassian Document Format)")
                return False
            errors, _ = self.adf.check(value, path)
            if errors:
                p.field(name, "Operation value must be an Atlassian Document (see the Atlassian Document Format)")
                p.schema.extend(f"{line} (ADF)" for line in errors)
                return False
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        else:
            if not isinstance(value, str):
                p.field(name, "Operation value must be a string")
                return False
            size = len(value)
        if size > TEXT_LIMIT:
            p.field(name, f"The entered text is too long. It exceeds the allowed limit of {TEXT_LIMIT:,} characters.")
            return False
        return True

    def label(self, p: Problems, value) -> str | None:
        if not isinstance(value, str):
            p.field("labels", "Operation value must be a string")
            return None
        if value == "":
            p.field("labels", "The label '' is empty which is invalid.")
            return None
        if any(c.isspace() for c in value):
            p.field("labels", f"The label '{value}' contains spaces which is invalid.")
            return None
        if len(value) > 255:
            p.field("labels", f"The label '{value}' exceeds the maximum length for a single label of 255 characters.")
            return None
        return value

    def value(self, p: Problems, name: str, value, path: str, plan: dict) -> None:
        """Checks one `fields` value (or an `update` set) and puts it in the plan."""
        if name == "summary":
            if not isinstance(value, str):
                p.field(name, "Operation value must be a string")
            elif not value.strip():
                p.field(name, "You must specify a summary of the issue.")
            elif "\n" in value or "\r" in value:
                p.field(name, "The summary is invalid because it contains newline characters.")
            elif len(value) > 255:
                p.field(name, "Summary must be less than 255 characters.")
            else:
                plan["set"][name] = value
        elif name == "description":
            if value is None or self.rich_text(p, name, value, path):
                plan["set"][name] = value
        elif name == "labels":
            if not isinstance(value, list):
                p.field(name, "Operation value must be an array of strings")
                return
            labels = [self.label(p, v) for v in value]
            if None not in labels:
                plan["labels"].append(("set", labels))
        elif name == "priority":
            if not isinstance(value, dict) or not ({"name", "id"} & set(value)):
                p.field(name, "Could not find valid 'id' or 'name' in priority object.")
            elif "name" in value:
                if value["name"] in PRIORITY_BY_NAME:
                    plan["set"][name] = value["name"]
                else:
                    p.field(name, f"Priority name '{value['name']}' is not valid")
            elif value["id"] in PRIORITY_BY_ID:
                plan["set"][name] = PRIORITY_BY_ID[value["id"]]
            else:
                p.field(name, f"Priority with id '{value['id']}' does not exist")
        elif name == "project":
            key = value.get("key") if isinstance(value, dict) else None
            if (not isinstance(key, str) or not key
                    or (self.projects is not None and key.upper() not in self.projects)):
                p.field(name, "Specify a valid project ID or key")
            else:
                plan["set"][name] = key.upper()
        elif name == "issuetype":
            itype = value.get("name") if isinstance(value, dict) else None
            if not isinstance(itype, str) or not itype.strip():
                p.field(name, "Specify an issue type")
            else:
                plan["set"][name] = itype

    def comment_body(self, p: Problems, body, path: str) -> bool:
        if body is None or body == "" or (isinstance(body, dict) and not body.get("content")
                                          and body.get("type") == "doc"):
            p.field("comment", "Comment body can not be empty!")
            return False
        return self.rich_text(p, "comment", body, path)

    # -- whole bodies ------------------------------------------------------------------------

    def transition_id(self, p: Problems, body, required: bool) -> str | None:
        t = body.get("transition") if isinstance(body, dict) else None
        if t is None:
            if required:
                p.message("Missing 'transition' identifier")
            return None
        tid = t.get("id") if isinstance(t, dict) else None
        if tid is None:
            p.message("Missing 'transition' identifier")
            return None
        if not isinstance(tid, str):
            return None  # the schema has complained (IssueTransition.id is a string)
        if tid not in TRANSITION_TARGET:
            p.message(f"Transition id '{tid}' is not valid for this issue.")
            return None
        return tid

    def issue_body(self, p: Problems, body, mode: str) -> dict:
        """`mode` is create, edit or transition. Returns the plan: fields to set, label
        operations, comments to add and the transition."""
        plan = {"set": {}, "labels": [], "comments": [], "transition": None}
        if not isinstance(body, dict):
            return plan
        fields = body.get("fields") if isinstance(body.get("fields"), dict) else {}
        update = body.get("update") if isinstance(body.get("update"), dict) else {}
        allowed = {"create": CREATABLE, "edit": EDITABLE, "transition": ()}[mode]
        for name, value in fields.items():
            if name not in allowed:
                p.field(name, cannot_set(name))
            elif name in update:
                p.field(name, f"Field '{name}' cannot be set in both 'fields' and 'update'.")
            else:
                self.value(p, name, value, f"$.fields.{name}", plan)
        for name, ops in update.items():
            if not isinstance(ops, list):
                continue  # the schema has complained
            comment_ok = name == "comment" and mode != "create"
            if name not in allowed and not comment_ok:
                p.field(name, cannot_set(name))
                continue
            for i, op in enumerate(ops):
                if not isinstance(op, dict):
                    continue
                path = f"$.update.{name}[{i}]"
                if len(op) != 1:
                    p.field(name, f"Each operation on '{name}' must have exactly one of add, set, remove, edit, copy.")
                    continue
                verb, value = next(iter(op.items()))
                if name == "comment":
                    if verb != "add":
                        p.field(name, f"Operation '{verb}' is not supported for field 'comment'.")
                    elif not isinstance(value, dict):
                        p.field(name, "Operation value must be an object with a body")
                    elif self.comment_body(p, value.get("body"), f"{path}.add.body"):
                        plan["comments"].append({"body": value["body"], "visibility": value.get("visibility")})
                elif name == "labels" and verb in ("add", "remove"):
                    label = self.label(p, value)
                    if label is not None:
                        plan["labels"].append((verb, label))
                elif verb == "set":
                    self.value(p, name, value, f"{path}.set", plan)
                else:
                    p.field(name, f"Operation '{verb}' is not supported for field '{name}'.")
        if mode == "create":
            for name, msg in (("project", "Specify a valid project ID or key"),
                              ("issuetype", "Specify an issue type"),
                              ("summary", "You must specify a summary of the issue.")):
                if name not in fields and name not in plan["set"] and name not in p.fields:
                    p.field(name, msg)
        if mode in ("create", "transition"):
            plan["transition"] = self.transition_id(p, body, required=mode == "transition")
        return plan


# --------------------------------------------------------------------------------------------
# JQL: the small subset the fake understands
# --------------------------------------------------------------------------------------------

class JqlError(Exception):
    pass


JQL_TOKEN = re.compile(r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|=)|(?P<comma>,)"""
                       r"""|(?P<word>[^\s=!,()"'~<>]+)|(?P<other>\S))""")
JQL_FIELDS = {"project": ("=", "!="), "labels": ("=",), "status": ("=", "!="),
              "statuscategory": ("=", "!="), "key": ("=",), "issuekey": ("=",)}
JQL_ORDER = {"created", "updated", "key", "issuekey", "id"}
JQL_RESERVED = {"and", "or", "not", "order", "by", "in", "is", "empty", "null"}
JQL_RESERVED_CHARS = set("+.;?|*/%^$#@[]")  # Jira: values holding these must be quoted


def jql_tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(text):
        m = JQL_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            break
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
    return tokens


def parse_jql(text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, bool]]]:
    """`clause (AND clause)* [ORDER BY field [ASC|DESC], ...]`, clause = `field op value`.
    Keywords and field names are case-insensitive. Returns (clauses, order)."""
    tokens = jql_tokens(text or "")
    clauses: list[tuple[str, str, str]] = []
    order: list[tuple[str, bool]] = []
    i = 0

    def word(j):
        return tokens[j][1].lower() if j < len(tokens) and tokens[j][0] == "word" else None

    def unsupported(what):
        raise JqlError(f"Error in the JQL Query: {what} (this fake understands only "
                       f"`field = value` clauses on {', '.join(sorted(JQL_FIELDS))} joined by AND, "
                       f"and ORDER BY {', '.join(sorted(JQL_ORDER))})")

    while i < len(tokens) and word(i) != "order":
        if clauses:
            if word(i) != "and":
                unsupported(f"expected AND or ORDER BY at {tokens[i][1]!r}")
            i += 1
        if word(i) is None:
            unsupported(f"expected a field name at {tokens[i][1]!r}" if i < len(tokens) else
                        "expected a field name but got the end of the query")
        field = word(i)
        if field not in JQL_FIELDS:
            unsupported(f"the field {tokens[i][1]!r} is not supported")
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "op":
            got = tokens[i + 1][1] if i + 1 < len(tokens) else "the end of the query"
            unsupported(f"expected = or != after {tokens[i][1]!r} but got {got!r}")
        op = tokens[i + 1][1]
        if op not in JQL_FIELDS[field]:
            unsupported(f"the operator {op!r} is not supported for {tokens[i][1]!r}")
        if i + 2 >= len(tokens) or tokens[i + 2][0] not in ("str", "word"):
            got = tokens[i + 2][1] if i + 2 < len(tokens) else "the end of the query"
            unsupported(f"expected a value after {tokens[i][1]} {op} but got {got!r}")
        kind, value = tokens[i + 2]
        if kind == "word" and value.lower() in JQL_RESERVED:
            unsupported(f"the reserved word {value!r} must be quoted to be used as a value")
        if kind == "word" and JQL_RESERVED_CHARS & set(value):
            ch = min(JQL_RESERVED_CHARS & set(value))
            raise JqlError(f"Error in the JQL Query: The character '{ch}' is a reserved JQL character. "
                           f"You must enclose it in a string or use the escape '\\u{ord(ch):04x}' instead. "
                           f"(in {value!r})")
        clauses.append((field, op, value))
        i += 3
    if i < len(tokens):
        if word(i + 1) != "by":
            unsupported("expected BY after ORDER")
        i += 2
        while True:
            f = word(i)
            if f not in JQL_ORDER:
                unsupported(f"cannot order by {tokens[i][1] if i < len(tokens) else 'nothing'!r}")
            desc = False
            i += 1
            if word(i) in ("asc", "desc"):
                desc = word(i) == "desc"
                i += 1
            order.append((f, desc))
            if i < len(tokens) and tokens[i][0] == "comma":
                i += 1
                continue
            break
        if i < len(tokens):
            unsupported(f"unexpected {tokens[i][1]!r} after ORDER BY")
    return clauses, order


def jql_matches(issue: dict, clauses) -> bool:
    for field, op, value in clauses:
        if field == "project":
            ok = issue["project"] == value.upper() or issue["project_id"] == value
        elif field == "labels":
            ok = value in issue["labels"]
        elif field == "status":
            ok = issue["status"].lower() == value.lower() or STATUSES[issue["status"]][0] == value
        elif field == "statuscategory":
            _, cid, ckey, cname, _ = STATUSES[issue["status"]]
            ok = value.lower() in (ckey, cname.lower(), str(cid))
        else:  # key, issuekey
            ok = value in (issue["key"], issue["id"])
        if op == "!=":
            ok = not ok
        if not ok:
            return False
    return True


def jql_sort(issues: list[dict], order) -> list[dict]:
    if not order:
        order = [("created", True)]  # newest first
    for field, desc in reversed(order):
        if field in ("key", "issuekey"):
            keyf = lambda i: (i["project"], int(i["key"].rsplit("-", 1)[1]))  # noqa: E731
        elif field == "updated":
            keyf = lambda i: (i["updated"], int(i["id"]))  # noqa: E731
        else:  # created, id
            keyf = lambda i: int(i["id"])  # noqa: E731
        issues.sort(key=keyf, reverse=desc)
    return issues


def select_fields(values: list[str], default: str) -> set[str]:
    tokens = [t.strip() for v in values for t in v.split(",") if t.strip()] or [default]
    chosen: set[str] = set()
    excluded: set[str] = set()
    for t in tokens:
        if t == "*all":
            chosen |= set(ISSUE_FIELDS)
        elif t == "*navigable":
            chosen |= NAVIGABLE
        elif t.startswith("-"):
            excluded.add(t[1:])
        else:
            chosen.add(t)
    return chosen - excluded


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------

class Fake:
    def __init__(self, flavour: Flavour, spec: Spec, checker: Checker, routes: list[Route], *,
                 user: str | None, token: str | None, pat: str | None, search_lag: float,
                 projects: set[str] | None, adf_file: str | None):
        self.fl = flavour
        self.spec = spec
        self.checker = checker
        self.routes = routes
        self.user = user
        self.token = token
        self.pat = pat
        self.initial_lag = search_lag if flavour.cloud else 0.0
        self.projects = projects
        self.adf_file = adf_file
        self.salt = secrets_mod.token_hex(8)
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.faults: list[dict] = []
        self.reset_state()

    def reset_state(self) -> None:
        self.issues: dict[str, dict] = {}   # id -> issue
        self.by_key: dict[str, str] = {}    # key -> id
        self.project_counters: dict[str, int] = {}
        self.project_ids: dict[str, str] = {}
        self.next_issue_id = 10001
        self.next_comment_id = 10000
        self.search_lag = self.initial_lag

    # -- routing and auth --------------------------------------------------------------------

    def route(self, method: str, path: str):
        """(route, params), or (None, allowed methods) when the path is known but not the
        method, or (None, None)."""
        if not path.startswith(self.fl.api + "/"):
            return None, None
        rest = path[len(self.fl.api):]
        allowed = []
        for r in self.routes:
            m = r.pattern.fullmatch(rest)
            if m:
                if r.method == method:
                    return r, {k: urllib.parse.unquote(v) for k, v in m.groupdict().items()}
                allowed.append(r.method)
        return None, (allowed or None)

    def auth_error(self, header: str | None) -> str | None:
        if not header:
            return "authorization: missing"
        scheme, _, cred = header.strip().partition(" ")
        cred = cred.strip()
        if self.fl.cloud:
            if scheme.lower() != "basic":
                return f"authorization: expected Basic (email:API token), got {scheme or 'nothing'}"
            try:
                decoded = base64.b64decode(cred, validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return "authorization: Basic credentials are not base64 of user:token"
            want = f"{self.user}:{self.token}"
            if not hmac.compare_digest(decoded.encode("utf-8"), want.encode("utf-8")):
                return "authorization: wrong user or API token"
            return None
        if scheme.lower() != "bearer":
            return f"authorization: expected Bearer (personal access token), got {scheme or 'nothing'}"
        if not hmac.compare_digest(cred.encode("utf-8"), self.pat.encode("utf-8")):
            return "authorization: wrong personal access token"
        return None

    # -- faults ------------------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> dict | None:
        """The first queued fault matching the request, counted down; under the lock."""
        for fault in self.faults:
            if fault["count"] <= 0:
                continue
            if fault["method"] is not None and fault["method"] != method:
                continue
            if fault["path_prefix"] is not None and not path.startswith(fault["path_prefix"]):
                continue
            fault["count"] -= 1
            taken = dict(fault)
            if fault["count"] == 0:
                self.faults.remove(fault)
            return taken
        return None

    def add_fault(self, spec) -> None:
        if not isinstance(spec, dict):
            raise AdminError("expected a JSON object")
        unknown = set(spec) - {"kind", "status", "count", "retry_after", "method", "path_prefix", "seconds"}
        if unknown:
            raise AdminError(f"unknown fields: {sorted(unknown)}")
        kind = spec.get("kind", "status")
        if kind not in ("status", "lose_answer", "delay_answer"):
            raise AdminError("kind: expected \"status\" (the default), \"lose_answer\" or \"delay_answer\"")
        seconds = spec.get("seconds", 0)
        if kind == "delay_answer" and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
            raise AdminError("delay_answer needs seconds > 0: how long Jira acts before it answers")
        status = spec.get("status")
        if kind == "status":
            if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
                raise AdminError("status: expected an HTTP status code (100-599)")
        elif status is not None or spec.get("retry_after") is not None:
            raise AdminError("lose_answer takes no status or retry_after: nothing is answered")
        count = spec.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise AdminError("count: expected an integer >= 1")
        retry_after = spec.get("retry_after")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (str, int)):
                raise AdminError("retry_after: expected a string such as \"1\"")
            retry_after = str(retry_after)
        method = spec.get("method")
        if method is not None:
            if not isinstance(method, str) or not method.isalpha():
                raise AdminError("method: expected an HTTP method such as \"POST\"")
            method = method.upper()
        prefix = spec.get("path_prefix")
        if prefix is not None and (not isinstance(prefix, str) or not prefix.startswith("/")):
            raise AdminError("path_prefix: expected a path starting with /")
        with self.lock:
            self.faults.append({"kind": kind, "status": status, "count": count, "retry_after": retry_after,
                                "method": method, "path_prefix": prefix, "seconds": seconds})

    # -- issues (callers hold the lock) ------------------------------------------------------

    def find(self, key_or_id: str) -> dict | None:
        iid = key_or_id if key_or_id in self.issues else self.by_key.get(key_or_id)
        return self.issues.get(iid) if iid else None

    def publish(self, issue: dict, now: float) -> None:
        """A new version for search, visible once the lag has passed (Cloud's index)."""
        snap = {k: copy.deepcopy(v) for k, v in issue.items() if k != "versions"}
        versions = issue["versions"]
        versions.append((now + self.search_lag, snap))
        # Keep only the newest version already visible and those after it.
        visible = [i for i, (at, _) in enumerate(versions) if at <= now]
        if len(visible) > 1:
            del versions[: visible[-1]]

    def search_view(self, issue: dict, now: float, reconcile: set[str]) -> dict | None:
        if issue["id"] in reconcile:
            return issue
        view = None
        for at, snap in issue["versions"]:
            if at <= now:
                view = snap
        return view

    def apply_plan(self, issue: dict, plan: dict, now: float, author: dict) -> None:
        for name, value in plan["set"].items():
            if name in ("summary", "description", "priority", "issuetype"):
                issue[name] = value
        for verb, value in plan["labels"]:
            if verb == "set":
                issue["labels"] = list(value)
            elif verb == "add":
                issue["labels"].append(value)
            elif value in issue["labels"]:
                issue["labels"].remove(value)
        issue["labels"] = sorted(set(issue["labels"]))
        for c in plan["comments"]:
            self.add_comment(issue, c["body"], c.get("visibility"), now, author)
        if plan["transition"] is not None:
            self.move(issue, TRANSITION_TARGET[plan["transition"]], now)
        issue["updated"] = now

    def move(self, issue: dict, status: str, now: float) -> None:
        if STATUSES[status][2] != STATUSES[issue["status"]][2]:
            issue["statuscategorychangedate"] = now
        issue["status"] = status
        done = STATUSES[status][2] == "done"
        issue["resolution"] = "Done" if done else None
        issue["resolutiondate"] = now if done else None

    def add_comment(self, issue: dict, body, visibility, now: float, author: dict) -> dict:
        c = {"id": str(self.next_comment_id), "body": body, "created": now, "updated": now,
             "author": author}
        if visibility is not None:
            c["visibility"] = visibility
        self.next_comment_id += 1
        issue["comments"].append(c)
        issue["updated"] = now
        return c

    def create(self, plan: dict, now: float, author: dict) -> dict:
        project = plan["set"]["project"]
        if project not in self.project_ids:
            self.project_ids[project] = str(10000 + len(self.project_ids))
        n = self.project_counters.get(project, 0) + 1
        self.project_counters[project] = n
        issue = {
            "id": str(self.next_issue_id), "key": f"{project}-{n}", "project": project,
            "project_id": self.project_ids[project], "issuetype": plan["set"]["issuetype"],
            "summary": "", "description": None, "labels": [], "priority": DEFAULT_PRIORITY,
            "status": INITIAL_STATUS, "resolution": None, "resolutiondate": None,
            "statuscategorychangedate": now, "comments": [], "created": now, "updated": now,
            "versions": [],
        }
        self.next_issue_id += 1
        self.apply_plan(issue, plan, now, author)
        issue["updated"] = now
        self.issues[issue["id"]] = issue
        self.by_key[issue["key"]] = issue["id"]
        return issue


# --------------------------------------------------------------------------------------------
# Wire forms
# --------------------------------------------------------------------------------------------

class Render:
    def __init__(self, fake: Fake, base: str):
        self.fake = fake
        self.fl = fake.fl
        self.base = base
        self.api = base + self.fl.api

    def user(self) -> dict:
        f = self.fake
        if self.fl.cloud:
            return {"self": f"{self.api}/user?accountId=fake-account-0001", "accountId": "fake-account-0001",
                    "accountType": "atlassian", "emailAddress": f.user, "displayName": "certsentinel",
                    "active": True, "timeZone": "Etc/UTC"}
        return {"self": f"{self.api}/user?username=certsentinel", "name": "certsentinel", "key": "certsentinel",
                "emailAddress": "certsentinel@example.invalid", "displayName": "certsentinel",
                "active": True, "timeZone": "Etc/UTC"}

    def status(self, name: str) -> dict:
        sid, cid, ckey, cname, colour = STATUSES[name]
        return {"self": f"{self.api}/status/{sid}", "description": "", "iconUrl": f"{self.base}/images/icons/status.png",
                "name": name, "id": sid,
                "statusCategory": {"self": f"{self.api}/statuscategory/{cid}", "id": cid, "key": ckey,
                                   "colorName": colour, "name": cname}}

    def comment(self, issue: dict, c: dict) -> dict:
        out = {"self": f"{self.api}/issue/{issue['id']}/comment/{c['id']}", "id": c["id"],
               "author": c["author"], "body": c["body"], "updateAuthor": c["author"],
               "created": jira_time(c["created"]), "updated": jira_time(c["updated"])}
        if "visibility" in c:
            out["visibility"] = c["visibility"]
        if self.fl.cloud:
            out["jsdPublic"] = True
        return out

    def comments(self, issue: dict) -> dict:
        cs = [self.comment(issue, c) for c in issue["comments"]]
        return {"comments": cs, "self": f"{self.api}/issue/{issue['id']}/comment",
                "maxResults": len(cs), "total": len(cs), "startAt": 0}

    def fields(self, issue: dict, wanted: set[str] | None = None) -> dict:
        pid = PRIORITY_BY_NAME[issue["priority"]]
        all_fields = {
            "summary": lambda: issue["summary"],
            "description": lambda: issue["description"],
            "labels": lambda: list(issue["labels"]),
            "priority": lambda: {"self": f"{self.api}/priority/{pid}", "iconUrl": f"{self.base}/images/icons/priority.svg",
                                 "name": issue["priority"], "id": pid},
            "status": lambda: self.status(issue["status"]),
            "issuetype": lambda: {"self": f"{self.api}/issuetype/10001", "id": "10001", "name": issue["issuetype"],
                                  "subtask": False},
            "project": lambda: {"self": f"{self.api}/project/{issue['project_id']}", "id": issue["project_id"],
                                "key": issue["project"], "name": issue["project"]},
            "comment": lambda: self.comments(issue),
            "created": lambda: jira_time(issue["created"]),
            "updated": lambda: jira_time(issue["updated"]),
            "resolution": lambda: ({"self": f"{self.api}/resolution/10000", "id": "10000", "name": issue["resolution"]}
                                   if issue["resolution"] else None),
            "resolutiondate": lambda: jira_time(issue["resolutiondate"]) if issue["resolutiondate"] else None,
            "statuscategorychangedate": lambda: jira_time(issue["statuscategorychangedate"]),
        }
        return {name: make() for name, make in all_fields.items() if wanted is None or name in wanted}

    def issue(self, issue: dict, wanted: set[str] | None = None) -> dict:
        return {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                "id": issue["id"], "self": f"{self.api}/issue/{issue['id']}", "key": issue["key"],
                "fields": self.fields(issue, wanted)}

    def transitions(self, only: str | None) -> dict:
        out = []
        for tid, target in TRANSITIONS:
            if only is not None and only != tid:
                continue
            t = {"id": tid, "name": target, "to": self.status(target), "hasScreen": False,
                 "isGlobal": True, "isInitial": False, "isAvailable": True, "isConditional": False}
            if self.fl.cloud:
                t["isLooped"] = False
            else:
                t["opsbarSequence"] = int(tid)
            out.append(t)
        return {"expand": "transitions", "transitions": out}

    def admin_issue(self, issue: dict) -> dict:
        doc = self.issue(issue)
        doc["created_at"] = dt.datetime.fromtimestamp(issue["created"], dt.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        doc["search_versions"] = [{"visible_at": dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"), "labels": s["labels"], "status": s["status"]}
            for at, s in issue["versions"]]
        return doc


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------

class Answer:
    def __init__(self, status: int, doc=None, headers=None):
        self.status = status
        self.doc = doc
        self.headers = headers or {}


def error_answer(status: int, *messages: str, fields: dict | None = None, headers=None) -> Answer:
    return Answer(status, {"errorMessages": list(messages), "errors": fields or {}}, headers)


class Handler(BaseHandler):
    server_version = "certsentinel-jira-fake"

    def send_json(self, status: int, doc, extra_headers=None):
        """Jira's own framing: `None` is an empty answer (a transition's 204 has no body and no
        Content-Length), and JSON says its charset."""
        body = b"" if doc is None else json.dumps(doc).encode("utf-8")
        self.send_response(status)
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        if doc is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        if status != 204:  # RFC 9110: no Content-Length on 204
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def dispatch(self):
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        try:
            raw = self.read_body()
        except (ValueError, OSError) as e:
            self.close_connection = True
            self.send_json(400, {"errorMessages": [f"cannot read the body: {e}"], "errors": {}})
            return
        if path.startswith(ADMIN_PREFIX) or path == ADMIN_PREFIX.rstrip("/"):
            try:
                self.admin(path, urllib.parse.parse_qs(parts.query), raw)
            except AdminError as e:
                self.send_json(400, {"error": str(e)})
            return
        self.api(path, urllib.parse.parse_qs(parts.query, keep_blank_values=True), raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = dispatch

    # -- the Jira API ------------------------------------------------------------------------

    def recorded_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            name = name.lower()
            if name == "authorization":
                value = "[present]"
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return headers

    def base_url(self) -> str:
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        return f"http://{host}"

    def api(self, path: str, query: dict[str, list[str]], raw: bytes):
        method = self.command
        body, parse_error = None, None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as e:  # also UnicodeDecodeError
                parse_error = str(e)
        record = {"method": method, "path": self.path, "operation": None,
                  "headers": self.recorded_headers(), "body": body,
                  "raw": raw.decode("utf-8", "replace") if parse_error else None,
                  "valid": False, "errors": [], "warnings": [], "status": None,
                  "fault": None, "answered": True, "received_at": now_iso()}
        route, params = FAKE.route(method, path)
        p = Problems()
        plan = None
        early: Answer | None = None
        if route is None:
            removed = path in ("/rest/api/3/search", "/rest/api/2/search") and FAKE.fl.cloud
            if removed and method in ("GET", "POST"):
                early = Answer(410, REMOVED_SEARCH_ANSWER)
                record["errors"] = [f"{method} {path} has been removed from Jira Cloud (CHANGE-2046); "
                                    "use /rest/api/3/search/jql"]
            elif params:
                early = error_answer(405, f"Method {method} is not allowed here", headers={"Allow": ", ".join(params)})
                record["errors"] = [f"{method} is not allowed on {path} (only {', '.join(params)})"]
            else:
                early = error_answer(501, f"{method} {path} is not served by this fake Jira "
                                          f"({FAKE.fl.name}, {FAKE.fl.api})")
                record["errors"] = [f"no operation {method} {path} in the fake ({FAKE.fl.name})"]
        else:
            record["operation"] = route.operation_id
            auth = FAKE.auth_error(self.headers.get("Authorization"))
            p.schema.extend(check_query(route.query, query))
            if route.kind in BODY_KINDS and method in ("POST", "PUT"):
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if ctype != "application/json":
                    p.status = 415
                    p.message(f"Unsupported Media Type: Content-Type must be application/json, got {ctype or 'none'}")
                elif not raw:
                    p.message("No content to map due to end-of-input")
                elif parse_error:
                    p.message(f"The request body is not valid JSON: {parse_error}")
                else:
                    errors, warnings = route.body.check(body)
                    p.schema.extend(errors)
                    p.warnings.extend(warnings)
                    plan = self.check_semantics(route, body, query, p)
            elif route.kind == "search":
                plan = self.check_semantics(route, None, query, p)
            if route.kind == "search" and plan is None and not p:
                p.message("The search request is not valid.")
            record["errors"] = ([auth] if auth else []) + p.lines()
            record["warnings"] = p.warnings
            record["valid"] = not record["errors"]
            if auth:
                early = error_answer(401, "You are not authenticated. Authentication required to perform this operation.")
            elif p:
                early = Answer(p.status, p.answer())

        with FAKE.lock:
            fault = FAKE.take_fault(method, path)
            if fault is not None and fault["kind"] == "status":
                extra = {"Retry-After": fault["retry_after"]} if fault["retry_after"] is not None else None
                answer = error_answer(fault["status"], "fake fault", headers=extra)
            elif early is not None:
                answer = early
            else:
                try:
                    answer = self.perform(route, params, query, body, plan)
                except Exception as e:  # a bug in the fake: answer 500 and say so
                    answer = error_answer(500, f"the fake failed: {type(e).__name__}: {e}")
                    record["errors"].append(f"fake bug: {type(e).__name__}: {e}")
            record["status"] = answer.status
            if fault is not None:
                record["fault"] = fault["kind"] if fault["kind"] != "status" else f"status {fault['status']}"
            if fault is not None and fault["kind"] == "lose_answer":
                record["answered"] = False
            FAKE.requests.append(record)
        if VERBOSE:
            log(f"{method} {self.path} -> {answer.status} valid={record['valid']}"
                f"{' fault=' + record['fault'] if record['fault'] else ''}"
                f"{' errors=' + json.dumps(record['errors']) if record['errors'] else ''}")
        if fault is not None and fault["kind"] == "delay_answer":
            # Jira acted; its answer takes this long (the client may be gone by then).
            time.sleep(fault["seconds"])
        if not record["answered"]:
            # Jira acted, but the client never hears of it: close without a status line.
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_json(answer.status, answer.doc, answer.headers)

    def check_semantics(self, route: Route, body, query, p: Problems):
        """Jira's own rules (stateless); returns what `perform` needs."""
        ck = FAKE.checker
        if route.kind == "create":
            return ck.issue_body(p, body, "create")
        if route.kind == "edit":
            return ck.issue_body(p, body, "edit")
        if route.kind == "transition":
            return ck.issue_body(p, body, "transition")
        if route.kind == "comment":
            if isinstance(body, dict):
                if "body" not in body:
                    p.field("comment", "Comment body can not be empty!")
                else:
                    ck.comment_body(p, body["body"], "$.body")
            return {"body": body.get("body") if isinstance(body, dict) else None,
                    "visibility": body.get("visibility") if isinstance(body, dict) else None}
        if route.kind == "search":
            return self.search_request(route, body, query, p)
        return None

    def search_request(self, route: Route, body, query, p: Problems) -> dict | None:
        fl = FAKE.fl
        if route.method == "POST":
            src = body if isinstance(body, dict) else {}
            jql = src.get("jql")
            fields = src.get("fields")
            fields = fields if isinstance(fields, list) and all(isinstance(f, str) for f in fields) else []
            max_results = src.get("maxResults")
            token = src.get("nextPageToken")
            start_at = src.get("startAt")
            reconcile = src.get("reconcileIssues") or []
        else:
            def one(name):
                vals = query.get(name)
                return vals[-1] if vals else None
            jql = one("jql")
            fields = query.get("fields", [])
            max_results = one("maxResults")
            token = one("nextPageToken")
            start_at = one("startAt")
            reconcile = [v for value in query.get("reconcileIssues", []) for v in value.split(",") if v.strip()]
        try:
            max_results = None if max_results is None else int(max_results)
            start_at = 0 if start_at is None else int(start_at)
            reconcile = {str(int(r)) for r in reconcile}
        except (TypeError, ValueError):
            return None  # the schema or the query check has complained
        if fl.cloud and len(reconcile) > 50:
            p.message("reconcileIssues accepts at most 50 issue ids")
        if max_results is not None and max_results < 0:
            p.message("maxResults must not be negative")
        if start_at < 0:
            p.message("startAt must not be negative")
        if jql is not None and not isinstance(jql, str):
            return None
        try:
            clauses, order = parse_jql(jql or "")
        except JqlError as e:
            p.message(str(e))
            return None
        if fl.cloud and not clauses:
            p.message(UNBOUNDED_JQL)
            return None
        if FAKE.projects is not None:
            for field, _, value in clauses:
                if field == "project" and value.upper() not in FAKE.projects:
                    p.message(f"The value '{value}' does not exist for the field 'project'.")
        offset = start_at
        fingerprint = hashlib.sha256(f"{FAKE.salt}\0{jql}".encode()).hexdigest()[:16]
        if fl.cloud and token is not None:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode() + b"==="))
                if decoded["f"] != fingerprint:
                    raise ValueError
                offset = int(decoded["o"])
            except (ValueError, KeyError, TypeError):
                p.message("The nextPageToken is invalid or belongs to another query.")
                return None
        if fl.cloud:
            limit = 50 if max_results is None else min(max_results, 5000)
            wanted = select_fields(fields, "id")
        else:
            limit = 50 if max_results is None else min(max_results, 1000)
            wanted = select_fields(fields, "*navigable")
        return {"clauses": clauses, "order": order, "offset": offset, "limit": limit, "wanted": wanted,
                "reconcile": reconcile, "fingerprint": fingerprint}

    def perform(self, route: Route, params: dict, query, body, plan) -> Answer:
        """Acts on the state; the caller holds the lock."""
        render = Render(FAKE, self.base_url())
        now = time.time()
        kind = route.kind
        if kind == "myself":
            return Answer(200, render.user())
        if kind == "search":
            return self.search(render, plan, now)
        if kind == "create":
            issue = FAKE.create(plan, now, render.user())
            FAKE.publish(issue, now)
            return Answer(201, {"id": issue["id"], "key": issue["key"], "self": f"{render.api}/issue/{issue['id']}"})
        issue = FAKE.find(params["key"])
        if issue is None:
            return error_answer(404, "Issue does not exist or you do not have permission to see it.")
        if kind == "get":
            wanted = select_fields(query.get("fields", []), "*all")
            return Answer(200, render.issue(issue, wanted))
        if kind == "edit":
            FAKE.apply_plan(issue, plan, now, render.user())
            FAKE.publish(issue, now)
            if FAKE.fl.cloud and (query.get("returnIssue") or [""])[-1] == "true":
                return Answer(200, render.issue(issue))
            return Answer(204)
        if kind == "comments":
            return Answer(200, {"startAt": 0, "maxResults": len(issue["comments"]), "total": len(issue["comments"]),
                                "comments": [render.comment(issue, c) for c in issue["comments"]]})
        if kind == "comment":
            c = FAKE.add_comment(issue, plan["body"], plan["visibility"], now, render.user())
            FAKE.publish(issue, now)
            return Answer(201, render.comment(issue, c))
        if kind == "transitions":
            return Answer(200, render.transitions((query.get("transitionId") or [None])[-1]))
        if kind == "transition":
            FAKE.apply_plan(issue, plan, now, render.user())
            FAKE.publish(issue, now)
            return Answer(204)
        return error_answer(501, f"{kind} is not implemented")

    def search(self, render: Render, plan: dict, now: float) -> Answer:
        fl = FAKE.fl
        views = []
        for issue in FAKE.issues.values():
            view = FAKE.search_view(issue, now, plan["reconcile"]) if fl.cloud else issue
            if view is not None and jql_matches(view, plan["clauses"]):
                views.append(view)
        jql_sort(views, plan["order"])
        page = views[plan["offset"]: plan["offset"] + plan["limit"]]
        wanted = plan["wanted"]
        if fl.cloud:
            if wanted <= {"id"}:
                issues = [{"id": v["id"]} for v in page]
            else:
                issues = [render.issue(v, wanted) for v in page]
            doc = {"issues": issues}
            end = plan["offset"] + len(page)
            if end < len(views) and plan["limit"] > 0:
                token = base64.urlsafe_b64encode(json.dumps({"o": end, "f": plan["fingerprint"]}).encode())
                doc["nextPageToken"] = token.decode().rstrip("=")
                doc["isLast"] = False
            else:
                doc["isLast"] = True
            return Answer(200, doc)
        return Answer(200, {"expand": "schema,names", "startAt": plan["offset"], "maxResults": plan["limit"],
                            "total": len(views), "issues": [render.issue(v, wanted) for v in page]})

    # -- admin API ---------------------------------------------------------------------------

    def admin(self, path: str, query, raw: bytes):
        call = (self.command, path.rstrip("/"))

        def body():
            try:
                return json.loads(raw or b"null")
            except ValueError as e:
                raise AdminError(f"body is not JSON: {e}") from None

        if call == ("GET", "/_fake/health"):
            self.send_json(200, {"ok": True, "flavour": FAKE.fl.name, "api": FAKE.fl.api,
                                 "spec": {"file": FAKE.spec.file, "title": FAKE.spec.title,
                                          "version": FAKE.spec.version, "patches": FAKE.spec.patches},
                                 "adf_schema": FAKE.adf_file, "search_lag_seconds": FAKE.search_lag})
        elif call == ("GET", "/_fake/requests"):
            with FAKE.lock:
                doc = {"requests": json.loads(json.dumps(FAKE.requests))}
            self.send_json(200, doc)
        elif call == ("GET", "/_fake/issues"):
            render = Render(FAKE, self.base_url())
            with FAKE.lock:
                doc = {"issues": json.loads(json.dumps(
                    [render.admin_issue(i) for i in sorted(FAKE.issues.values(), key=lambda i: int(i["id"]))]))}
            self.send_json(200, doc)
        elif call == ("POST", "/_fake/faults"):
            FAKE.add_fault(body())
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
        elif call == ("POST", "/_fake/search-lag"):
            spec = body()
            seconds = spec.get("seconds") if isinstance(spec, dict) else None
            if not FAKE.fl.cloud:
                raise AdminError("search lag is a Jira Cloud behaviour; Data Center search is immediate")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise AdminError("expected {\"seconds\": N} with N >= 0")
            with FAKE.lock:
                FAKE.search_lag = float(seconds)
            self.send_json(200, {"search_lag_seconds": float(seconds)})
        elif call == ("POST", "/_fake/reset"):
            with FAKE.lock:
                FAKE.reset_state()
                FAKE.requests.clear()
                FAKE.faults.clear()
            self.send_json(200, {"ok": True})
        else:
            self.send_json(404, {"error": f"no admin call {self.command} {path}"})


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def build_routes(flavour: Flavour, spec: Spec) -> list[Route]:
    routes = []
    for method, pattern, kind, spec_suffix in COMMON_ROUTES + (CLOUD_ROUTES if flavour.cloud else DC_ROUTES):
        spec_path = flavour.spec_prefix + spec_suffix
        op = spec.operation(spec_path, method)
        body = spec.body_check(spec_path, method) if kind in BODY_KINDS and method in ("POST", "PUT") else None
        routes.append(Route(method, re.compile(pattern), kind, spec_path, op.get("operationId"), body,
                            spec.query_params(spec_path, method)))
    return routes


def main(argv=None):
    global FAKE, VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--flavour", required=True, choices=("cloud", "datacenter"))
    ap.add_argument("--cloud-spec", help="jira-cloud-platform.swagger-v3.v3.json (cloud)")
    ap.add_argument("--dc-spec", help="jira-software-dc-10.3.24.swagger.v3.json (datacenter)")
    ap.add_argument("--adf-schema", help="adf-schema-full.v1.json (cloud)")
    ap.add_argument("--user", help="cloud: the account e-mail of Basic auth")
    ap.add_argument("--token", help="cloud: the API token of Basic auth")
    ap.add_argument("--pat", help="datacenter: the personal access token (Bearer)")
    ap.add_argument("--search-lag-seconds", type=float, default=0.0,
                    help="cloud: /search/jql misses issues changed less than this long ago (default 0)")
    ap.add_argument("--projects", help="comma-separated project keys that exist (default: any)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    cloud = args.flavour == "cloud"
    if cloud:
        for name in ("cloud_spec", "adf_schema", "user", "token"):
            if not getattr(args, name):
                ap.error(f"--flavour cloud needs --{name.replace('_', '-')}")
        if args.pat or args.dc_spec:
            ap.error("--pat and --dc-spec are for --flavour datacenter")
    else:
        for name in ("dc_spec", "pat"):
            if not getattr(args, name):
                ap.error(f"--flavour datacenter needs --{name.replace('_', '-')}")
        if args.user or args.token or args.cloud_spec or args.adf_schema:
            ap.error("--user, --token, --cloud-spec and --adf-schema are for --flavour cloud")
        if args.search_lag_seconds:
            ap.error("--search-lag-seconds is for --flavour cloud: Data Center search is immediate")
    if args.search_lag_seconds < 0:
        ap.error("--search-lag-seconds must be >= 0")
    projects = None
    if args.projects:
        projects = {p.strip().upper() for p in args.projects.split(",") if p.strip()}

    flavour = Flavour(args.flavour)
    try:
        if cloud:
            import jsonschema
            from referencing import Registry
            from referencing.jsonschema import DRAFT4

            spec = Spec(args.cloud_spec, "jira-cloud-v3")
            adf_doc = load_json(args.adf_schema)
            if "doc_node" not in adf_doc.get("definitions", {}):
                raise StartupError(f"{args.adf_schema}: no #/definitions/doc_node")
            jsonschema.Draft4Validator.check_schema(adf_doc)
            adf_uri = "urn:certsentinel-jira-fake:adf"
            adf = SchemaCheck(jsonschema.Draft4Validator, adf_uri, "/definitions/doc_node",
                              Registry().with_resource(adf_uri, DRAFT4.create_resource(adf_doc)),
                              format_checker())
        else:
            spec = Spec(args.dc_spec, "jira-dc-v2", DC_PATCHES)
            adf = None
        routes = build_routes(flavour, spec)
    except StartupError as e:
        log(f"jira_fake: {e}")
        return 2
    checker = Checker(flavour, adf, projects)
    FAKE = Fake(flavour, spec, checker, routes, user=args.user, token=args.token, pat=args.pat,
                search_lag=args.search_lag_seconds, projects=projects,
                adf_file=os.path.basename(args.adf_schema) if args.adf_schema else None)

    return serve(Server(args.port, Handler, args.verbose), args.port_file)


if __name__ == "__main__":
    sys.exit(main())
