#!/usr/bin/env python3
"""Checks that deploy/ says the same thing everywhere, and what the daemon needs.

1. Event pattern: the member rule's EventBridge pattern (and the central rule's, which must be
   the same) is replayed, with moto's EventBridge pattern matcher, against every recorded
   CloudTrail fixture EventBridge would see (envelope "eventbridge", and the event inside an
   SNS notification): it must match exactly those whose expected action is "reread". Synthetic
   WebSocket shapes, of which no recording exists, are added.
2. IAM: the policies inside the CloudFormation templates carry the same statements as the
   documents in deploy/iam (placeholders there stand for parameters and pseudo parameters).
3. Consistency: names, ports, paths and secrets agree between the templates, the Kubernetes
   manifests, the example configuration, the Dockerfile and the systemd unit; the example
   configuration passes `certsentinel check-config` when a built binary is at hand.

Usage: check_deploy.py [--fixtures DIR] [--dump-policies DIR]
The fixtures are the repository's tests/fixtures/cloudtrail unless --fixtures or
$CERTSENTINEL_FIXTURES names them. Exit 0: all checks passed; 1: a check failed; 2: an input
is missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
MEMBER_TEMPLATE = DEPLOY / "cloudformation" / "member.yaml"
CENTRAL_TEMPLATE = DEPLOY / "cloudformation" / "central.yaml"
IAM = DEPLOY / "iam"
KUBERNETES = DEPLOY / "kubernetes"

# The calls the daemon acts on (README, "The daemon and change events"). The pattern must name
# exactly these: one left out is a change noticed only at the next scan, one added is traffic
# the daemon acknowledges unread.
DAEMON_EVENT_NAMES = {
    "GenerateClientCertificate",
    "UpdateClientCertificate",
    "DeleteClientCertificate",
    "CreateStage",
    "UpdateStage",
    "DeleteStage",
    "CreateDeployment",
    "DeleteRestApi",
    "DeleteApi",
    "TagResource",
    "UntagResource",
}

# moto's matcher treats an operator it does not know as a match, which would make this check
# pass for a pattern EventBridge reads differently. The pattern may only use operators whose
# moto semantics are pinned by matcher_self_test() below.
CHECKED_OPERATORS = {"exists", "anything-but", "prefix"}

# The placeholders of deploy/iam/*.json (deploy/iam/README.md), with the example values the
# audit renders them with.
PLACEHOLDER_EXAMPLES = {
    "CENTRAL_ACCOUNT_ID": "111122223333",
    "CENTRAL_REGION": "us-east-1",
    "ORGANIZATION_ID": "o-a1b2c3d4e5",
    "EXTERNAL_ID": "example-external-id-0123456789",
}

# What each template's parameters and pseudo parameters stand for in the JSON documents;
# parameters not listed resolve to their Default.
MEMBER_VALUES = {
    "AWS::Partition": "aws",
    # The read role's account: in the JSON document, the policy variable that means it.
    "AWS::AccountId": "${aws:PrincipalAccount}",
    "CentralAccountId": "CENTRAL_ACCOUNT_ID",
    "ExternalId": "EXTERNAL_ID",
    "CentralEventBusArn": "arn:aws:events:CENTRAL_REGION:CENTRAL_ACCOUNT_ID:event-bus/certsentinel-events",
}
CENTRAL_VALUES = {
    "AWS::Partition": "aws",
    "AWS::AccountId": "CENTRAL_ACCOUNT_ID",
    "AWS::Region": "CENTRAL_REGION",
    "OrganizationId": "ORGANIZATION_ID",
    "OidcProvider": "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
}


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.passed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.items.append(what)
            print(f"  FAIL  {what}")
            for line in detail.splitlines():
                print(f"          {line}")
        return ok


def render_placeholders(text: str) -> str:
    for name, value in PLACEHOLDER_EXAMPLES.items():
        text = text.replace(name, value)
    return text


def load_template(path: Path) -> dict[str, Any]:
    """A template with its short-form intrinsics (!Sub, !GetAtt, !If, ...) in their long
    form, read with PyYAML alone so that the tests' venv (moto, which brings PyYAML) runs this
    checker too; cfn-lint, in the lint's venv, reads the same files its own way."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(), Loader=Loader)


class Unresolvable(Exception):
    pass


class Resolver:
    """Resolves the intrinsic functions the compared policies use (Ref, Fn::Sub, Fn::GetAtt of
    a queue's Arn) to the placeholders of the JSON documents."""

    def __init__(self, template: dict[str, Any], values: dict[str, str]) -> None:
        self.template = template
        self.values = values

    def ref(self, name: str) -> str:
        if name in self.values:
            return self.values[name]
        param = self.template.get("Parameters", {}).get(name)
        if param is not None and "Default" in param:
            return str(param["Default"])
        raise Unresolvable(f"Ref {name}")

    def getatt(self, resource: str, attribute: str) -> str:
        res = self.template["Resources"].get(resource, {})
        if res.get("Type") == "AWS::SQS::Queue" and attribute == "Arn":
            name = self.resolve(res["Properties"]["QueueName"])
            return (
                f"arn:{self.ref('AWS::Partition')}:sqs:{self.ref('AWS::Region')}:"
                f"{self.ref('AWS::AccountId')}:{name}"
            )
        raise Unresolvable(f"Fn::GetAtt {resource}.{attribute}")

    def sub(self, value: Any) -> str:
        text, extra = (value[0], value[1]) if isinstance(value, list) else (value, {})
        extra = {k: self.resolve(v) for k, v in extra.items()}

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and not name.startswith("AWS::"):
                return self.getatt(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, value),) = node.items()
                if key == "Ref":
                    return self.ref(value)
                if key == "Fn::Sub":
                    return self.sub(value)
                if key == "Fn::GetAtt":
                    parts = value if isinstance(value, list) else value.split(".", 1)
                    return self.getatt(*parts)
                if key.startswith("Fn::"):
                    raise Unresolvable(key)
            return {k: self.resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v) for v in node]
        return node


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def normalise_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """A statement with every list-or-scalar field as a sorted list, so that equal meaning
    compares equal."""
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key in ("Action", "NotAction", "Resource", "NotResource"):
            out[key] = sorted(as_list(value))
        elif key == "Principal" and isinstance(value, dict):
            out[key] = {k: sorted(as_list(v)) for k, v in value.items()}
        elif key == "Condition":
            out[key] = {
                op: {k: sorted(as_list(v)) for k, v in pairs.items()} for op, pairs in value.items()
            }
        else:
            out[key] = value
    return out


def compare_policies(failures: Failures, what: str, template_doc: Any, json_path: Path) -> None:
    document = json.loads(json_path.read_text())
    ours = {s.get("Sid", ""): normalise_statement(s) for s in as_list(template_doc["Statement"])}
    theirs = {s.get("Sid", ""): normalise_statement(s) for s in as_list(document["Statement"])}
    problems = []
    if template_doc.get("Version") != document.get("Version"):
        problems.append(f"Version {template_doc.get('Version')} != {document.get('Version')}")
    for sid in sorted(set(ours) | set(theirs)):
        if sid not in theirs:
            problems.append(f"statement {sid!r} only in the template")
        elif sid not in ours:
            problems.append(f"statement {sid!r} only in {json_path.name}")
        elif ours[sid] != theirs[sid]:
            for key in sorted(set(ours[sid]) | set(theirs[sid])):
                a, b = ours[sid].get(key), theirs[sid].get(key)
                if a != b:
                    problems.append(
                        f"statement {sid!r} {key}:\n  template: {json.dumps(a)}\n"
                        f"  {json_path.name}: {json.dumps(b)}"
                    )
    failures.check(not problems, f"{what} = deploy/iam/{json_path.name}", "\n".join(problems))


def inline_policy(template: dict[str, Any], resource: str, name: str) -> Any:
    for policy in template["Resources"][resource]["Properties"]["Policies"]:
        if policy["PolicyName"] == name:
            return policy["PolicyDocument"]
    raise KeyError(f"{resource} has no inline policy {name}")


# --- 1. the event pattern ------------------------------------------------------------------


def pattern_operators(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$or":
                for branch in value:
                    pattern_operators(branch, found)
            else:
                pattern_operators(value, found)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                found.update(item.keys())
    return found


def pattern_event_names(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "eventName" and isinstance(value, list):
                found.update(v for v in value if isinstance(v, str))
            elif key == "$or":
                for branch in value:
                    pattern_event_names(branch, found)
            else:
                pattern_event_names(value, found)
    return found


def matcher_self_test(event_pattern_cls: Any) -> list[str]:
    """Known answers of EventBridge's documented semantics for the operators we use: if a moto
    upgrade changed them, the fixture replay below would prove nothing."""
    cases = [
        ({"a": [{"exists": False}]}, {}, True),
        ({"a": [{"exists": False}]}, {"a": "x"}, False),
        ({"a": [{"anything-but": [""]}]}, {"a": "x"}, True),
        ({"a": [{"anything-but": [""]}]}, {"a": ""}, False),
        # A missing field matches nothing but exists:false.
        ({"a": [{"anything-but": [""]}]}, {}, False),
        ({"a": [{"prefix": "ab"}]}, {"a": "abc"}, True),
        ({"a": ["x"]}, {"a": "y"}, False),
        ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"b": "y"}, True),
        ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"b": "z"}, False),
        ({"d": {"$or": [{"a": ["x"]}, {"n": {"s": ["y"]}}]}}, {"d": {"n": {"s": "y"}}}, True),
        ({"d": {"$or": [{"a": ["x"]}, {"n": {"s": ["y"]}}]}}, {"d": {"n": {"t": "y"}}}, False),
    ]
    wrong = []
    for pattern, event, expected in cases:
        got = event_pattern_cls.load(json.dumps(pattern)).matches_event(event)
        if got != expected:
            wrong.append(f"{json.dumps(pattern)} on {json.dumps(event)}: {got}, EventBridge: {expected}")
    return wrong


def synthetic_events(fixtures: Path) -> list[tuple[str, dict[str, Any], bool]]:
    """WebSocket (API Gateway v2) shapes, of which no recording exists: they share the event
    source and these request parameters are the v2 API's own member names."""
    base = json.loads((fixtures / "CreateDeployment.json").read_text())

    def variant(event_name: str, request: dict[str, Any] | None, **detail: Any) -> dict[str, Any]:
        event = copy.deepcopy(base)
        event["detail"]["eventName"] = event_name
        event["detail"]["requestParameters"] = request
        event["detail"]["responseElements"] = None
        event["detail"].update(detail)
        return event

    return [
        ("WebSocket CreateDeployment to stage prod", variant("CreateDeployment", {"apiId": "w1x2y3z4a5", "stageName": "prod"}), True),
        ("WebSocket CreateDeployment with stageName \"\"", variant("CreateDeployment", {"apiId": "w1x2y3z4a5", "stageName": ""}), False),
        ("WebSocket CreateDeployment without a stage", variant("CreateDeployment", {"apiId": "w1x2y3z4a5", "description": "x"}), False),
        ("REST CreateDeployment whose input names no stage", variant("CreateDeployment", {"restApiId": "a1b2c3d4e5", "createDeploymentInput": {"description": "x"}, "template": False}), False),
        ("WebSocket DeleteApi", variant("DeleteApi", {"apiId": "w1x2y3z4a5"}), True),
        ("WebSocket UpdateStage", variant("UpdateStage", {"apiId": "w1x2y3z4a5", "stageName": "prod", "clientCertificateId": "9xy8zw7vut"}), True),
        ("failed DeleteApi (errorCode)", variant("DeleteApi", {"apiId": "w1x2y3z4a5"}, errorCode="AccessDenied", errorMessage="denied"), False),
        ("CreateRestApi (a call the daemon does not act on)", variant("CreateRestApi", {"name": "x"}), False),
    ]


def check_event_pattern(failures: Failures, fixtures: Path, member: dict[str, Any], central: dict[str, Any]) -> None:
    print("\n1. EventBridge event pattern")
    from moto.events.models import EventPattern

    pattern = member["Resources"]["ForwardRule"]["Properties"]["EventPattern"]
    central_pattern = central["Resources"]["EventRule"]["Properties"]["EventPattern"]
    failures.check(pattern == central_pattern, "central.yaml EventRule pattern = member.yaml ForwardRule pattern")
    operators = pattern_operators(pattern, set())
    failures.check(
        operators <= CHECKED_OPERATORS,
        f"pattern operators {sorted(operators)} are ones whose matcher semantics are self-tested",
        f"not self-tested: {sorted(operators - CHECKED_OPERATORS)}",
    )
    names = pattern_event_names(pattern, set())
    failures.check(
        names == DAEMON_EVENT_NAMES,
        "pattern names exactly the calls the daemon acts on",
        f"missing: {sorted(DAEMON_EVENT_NAMES - names)}\nextra: {sorted(names - DAEMON_EVENT_NAMES)}",
    )
    wrong = matcher_self_test(EventPattern)
    failures.check(not wrong, "moto's matcher agrees with EventBridge on the operators used", "\n".join(wrong))
    matcher = EventPattern.load(json.dumps(pattern))

    expected = json.loads((fixtures / "expected.json").read_text())["fixtures"]
    described = {e["file"] for e in expected}
    on_disk = {p.name for p in fixtures.glob("*.json")} - {"expected.json"}
    failures.check(
        on_disk <= described,
        f"every fixture in {fixtures} is described in expected.json",
        f"not described (cannot tell what it must cause): {sorted(on_disk - described)}",
    )
    tested = {"reread": 0, "ignore": 0}
    for entry in expected:
        envelope, action, name = entry.get("envelope"), entry["action"], entry["file"]
        if envelope not in ("eventbridge", "sns"):
            print(f"  skip  {name}: envelope {envelope or 'none'} ({action}), not an event EventBridge matches")
            continue
        body = json.loads((fixtures / name).read_text())
        if envelope == "sns":
            # What EventBridge matched before SNS wrapped it (EventBridge -> SNS -> SQS).
            body = json.loads(body["Message"])
        want = action == "reread"
        got = matcher.matches_event(body)
        tested[action] = tested.get(action, 0) + 1
        verb = "forwarded" if want else "left out"
        failures.check(
            got == want,
            f"{name} ({envelope}, {action}{': ' + entry['reason'] if entry.get('reason') else ''}) is {verb}",
            f"the pattern {'matches' if got else 'does not match'} it",
        )
    failures.check(
        tested["reread"] > 0 and tested["ignore"] > 0,
        f"fixtures exercised both ways ({tested['reread']} forwarded, {tested['ignore']} left out)",
    )
    for what, event, want in synthetic_events(fixtures):
        got = matcher.matches_event(event)
        failures.check(got == want, f"synthetic: {what} is {'forwarded' if want else 'left out'}")


# --- 2. IAM --------------------------------------------------------------------------------


def check_policies(failures: Failures, member: dict[str, Any], central: dict[str, Any]) -> None:
    print("\n2. IAM policies: templates against deploy/iam")
    m = Resolver(member, MEMBER_VALUES)
    c = Resolver(central, CENTRAL_VALUES)
    read_role = member["Resources"]["ReadRole"]["Properties"]
    compare_policies(failures, "member.yaml ReadRole policy", m.resolve(inline_policy(member, "ReadRole", "certsentinel-read")), IAM / "member-read-policy.json")
    compare_policies(failures, "member.yaml ReadRole trust", m.resolve(read_role["AssumeRolePolicyDocument"]), IAM / "member-trust-policy.json")
    compare_policies(failures, "central.yaml DaemonRole policy", c.resolve(inline_policy(central, "DaemonRole", "certsentinel-daemon")), IAM / "daemon-policy.json")

    # The IRSA trust is a JSON string (its condition keys are computed): it must still parse.
    irsa = central["Resources"]["DaemonRole"]["Properties"]["AssumeRolePolicyDocument"]["Fn::If"][1]
    try:
        trust = json.loads(c.resolve(irsa))
        stmt = trust["Statement"][0]
        provider = CENTRAL_VALUES["OidcProvider"]
        ok = (
            stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
            and stmt["Principal"]["Federated"].endswith(f":oidc-provider/{provider}")
            and stmt["Condition"]["StringEquals"] == {
                f"{provider}:sub": "system:serviceaccount:certsentinel:certsentinel",
                f"{provider}:aud": "sts.amazonaws.com",
            }
        )
        failures.check(ok, "central.yaml IRSA trust parses and names one service account", json.dumps(trust, indent=2))
    except (ValueError, KeyError, Unresolvable) as e:
        failures.check(False, "central.yaml IRSA trust parses and names one service account", repr(e))

    def default(template: dict[str, Any], name: str) -> Any:
        return template["Parameters"][name]["Default"]

    failures.check(default(member, "DaemonRoleName") == default(central, "DaemonRoleName"), "DaemonRoleName defaults agree")
    failures.check(default(member, "ReadRoleName") == default(central, "ReadRoleName"), "ReadRoleName defaults agree")
    forward = member["Resources"]["ForwardRule"]["Properties"]["Name"]
    trusted = m.resolve(member["Resources"]["ForwarderRole"]["Properties"]["AssumeRolePolicyDocument"])
    source_arn = trusted["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"]
    failures.check(source_arn.endswith(f":rule/{forward}"), "the forwarder role trusts the forwarding rule by name")


def dump_policies(directory: Path, member: dict[str, Any], central: dict[str, Any]) -> None:
    """The identity policies of the templates, rendered with example values, for the audit."""
    directory.mkdir(parents=True, exist_ok=True)
    examples = {k: render_placeholders(v) for k, v in MEMBER_VALUES.items()}
    examples["AWS::AccountId"] = "444455556666"
    for template, values, prefix in ((member, examples, "cfn-member"), (central, {k: render_placeholders(v) for k, v in CENTRAL_VALUES.items()}, "cfn-central")):
        resolver = Resolver(template, values)
        for name, resource in template["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            for policy in resource["Properties"].get("Policies", []):
                path = directory / f"{prefix}-{name}-{policy['PolicyName']}.json"
                path.write_text(json.dumps(resolver.resolve(policy["PolicyDocument"]), indent=2) + "\n")


# --- 3. consistency ------------------------------------------------------------------------


def load_manifests() -> dict[str, dict[str, Any]]:
    import yaml

    out = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[f"{doc['kind']}/{path.name}"] = doc
    return out


def find(manifests: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one manifest of a kind (examples aside)."""
    (doc,) = [d for k, d in manifests.items() if k.startswith(kind + "/") and "example" not in k]
    return doc


def string_values(node: Any) -> list[str]:
    """Every string value of a parsed configuration (comments are not values)."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in string_values(v)]
    if isinstance(node, list):
        return [s for v in node for s in string_values(v)]
    return [node] if isinstance(node, str) else []


def check_consistency(failures: Failures, member: dict[str, Any], central: dict[str, Any], certsentinel_bin: str | None) -> None:
    print("\n3. Consistency between the deployment files")
    import yaml

    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    failures.check(listed == present, "kustomization.yaml lists every manifest but the secret example", f"listed: {sorted(listed)}\npresent: {sorted(present)}")

    manifests = load_manifests()
    deployment = find(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    service = find(manifests, "Service")
    account = find(manifests, "ServiceAccount")
    configmap = find(manifests, "ConfigMap")
    secret = manifests["Secret/secret.example.yaml"]
    config_text = configmap["data"]["certsentinel.toml"]
    config = tomllib.loads(config_text)

    defaults = central["Parameters"]
    failures.check(
        account["metadata"]["name"] == pod["serviceAccountName"] == defaults["ServiceAccountName"]["Default"],
        "service account name = Deployment's = central ServiceAccountName default",
    )
    failures.check(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/" + defaults["DaemonRoleName"]["Default"]),
        "IRSA annotation names the DaemonRoleName role",
    )
    failures.check(config["aws"]["accounts"]["role_name"] == defaults["ReadRoleName"]["Default"], "aws.accounts.role_name = ReadRoleName default")
    failures.check(
        all(url.endswith("/" + defaults["QueueName"]["Default"]) for url in config["events"]["queue_url"]),
        "events.queue_url names the QueueName queue",
    )
    port = int(config["daemon"]["listen"].rsplit(":", 1)[1])
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    failures.check(
        port == container["ports"][0]["containerPort"] == service["spec"]["ports"][0]["port"]
        == int(env["CERTSENTINEL__DAEMON__LISTEN"].rsplit(":", 1)[1])
        == int(service["metadata"]["annotations"]["prometheus.io/port"]),
        f"listener port {port} = container port = Service port = scrape annotation",
    )
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    failures.check(config["store"]["path"].startswith(mounts["state"] + "/"), "store.path lies on the state volume")
    failures.check(container["args"][-1] == f"{mounts['config']}/certsentinel.toml", "--config names the ConfigMap's file")
    stop = config["daemon"]["stop_timeout_secs"]
    failures.check(pod["terminationGracePeriodSeconds"] >= stop + 10, f"terminationGracePeriodSeconds leaves 10 s above stop_timeout_secs ({stop})")
    unit = (DEPLOY / "systemd" / "certsentinel.service").read_text()
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M)
    failures.check(bool(timeout) and int(timeout.group(1)) >= stop + 10, "systemd TimeoutStopSec leaves 10 s above stop_timeout_secs")
    dockerfile = (DEPLOY / "container" / "Dockerfile").read_text()
    failures.check(
        f"CERTSENTINEL__DAEMON__LISTEN=0.0.0.0:{port}" in dockerfile and f"127.0.0.1:{port}/healthz" in dockerfile,
        "the image listens on, and its HEALTHCHECK probes, the same port",
    )
    failures.check(
        f"runAsUser: {pod['securityContext']['runAsUser']}" in (KUBERNETES / "deployment.yaml").read_text()
        and f"USER {pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" in dockerfile,
        "the pod runs as the image's numeric user",
    )

    referenced = {
        name
        for value in string_values(config)
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
    }
    provided = set(secret["stringData"])
    failures.check(referenced <= provided, "every ${NAME} of the configuration is a key of the Secret", f"missing: {sorted(referenced - provided)}")
    unused = {k for k in provided - referenced if not k.startswith("CERTSENTINEL__")}
    failures.check(not unused, "every key of the Secret is used", f"unused: {sorted(unused)}")

    if not certsentinel_bin:
        print("  skip  certsentinel check-config of the ConfigMap's configuration: no binary "
              "(set CERTSENTINEL_BIN, or build target/release/certsentinel)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "certsentinel.toml"
        path.write_text(config_text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTSENTINEL__")}
        env.update(secret["stringData"])
        env["CERTSENTINEL__STORE__PATH"] = str(Path(tmp) / "state")
        run = subprocess.run([certsentinel_bin, "check-config", "--config", str(path)], env=env, capture_output=True, text=True, timeout=120, check=False)
        failures.check(run.returncode == 0, f"`{certsentinel_bin} check-config` accepts the ConfigMap's configuration", run.stderr[-2000:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", help="directory of the CloudTrail fixtures (default: $CERTSENTINEL_FIXTURES, else tests/fixtures/cloudtrail)")
    parser.add_argument("--dump-policies", metavar="DIR", help="also write the templates' identity policies, rendered with example values, to DIR")
    args = parser.parse_args()

    member = load_template(MEMBER_TEMPLATE)
    central = load_template(CENTRAL_TEMPLATE)
    if args.dump_policies:
        # First, so that the policy audit has them even when a check below fails.
        dump_policies(Path(args.dump_policies), member, central)

    source = "--fixtures" if args.fixtures else "$CERTSENTINEL_FIXTURES" if os.environ.get("CERTSENTINEL_FIXTURES") else "the default"
    fixtures = Path(args.fixtures or os.environ.get("CERTSENTINEL_FIXTURES") or REPO / "tests" / "fixtures" / "cloudtrail")
    if not (fixtures / "expected.json").is_file():
        print(
            f"check_deploy: no CloudTrail fixtures at {fixtures} (from {source}): expected.json is missing.\n"
            "Point --fixtures or CERTSENTINEL_FIXTURES at a directory of recorded CloudTrail events.",
            file=sys.stderr,
        )
        return 2
    certsentinel_bin = os.environ.get("CERTSENTINEL_BIN") or next(
        (str(p) for p in (REPO / "target" / "release" / "certsentinel", REPO / "target" / "debug" / "certsentinel") if p.is_file()),
        None,
    )

    failures = Failures()
    print(f"fixtures: {fixtures}")
    check_event_pattern(failures, fixtures, member, central)
    check_policies(failures, member, central)
    check_consistency(failures, member, central, certsentinel_bin)

    print(f"\n{failures.passed} passed, {len(failures.items)} failed")
    for what in failures.items:
        print(f"  failed: {what}")
    return 1 if failures.items else 0


if __name__ == "__main__":
    sys.exit(main())
