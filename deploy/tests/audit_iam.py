#!/usr/bin/env python3
"""Audits IAM policy documents with parliament, applying deploy/iam/parliament.yaml.

Usage: audit_iam.py FILE_OR_DIR...
Each deploy/iam document is rendered with the example values of its placeholders first (what
an operator applies after filling them in); directories contribute their *.json files (the
templates' policies written by check_deploy.py --dump-policies). Every finding of every
severity fails the audit unless a suppression of deploy/iam/parliament.yaml matches it, and
a suppression that matches nothing fails it too, so the list cannot go stale.

parliament 1.6.4 ignores `ignore_locations` given in a --config file (parliament.misc.make_list
drops plain values and nothing ever matches), so the suppressions are applied here, with the
same meaning: every key of one entry must fullmatch (case-insensitively) the finding's location
value, or every element of it when the value is a list.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_deploy import DEPLOY, render_placeholders  # noqa: E402

with warnings.catch_warnings():
    # parliament imports pkg_resources, which warns about its own deprecation.
    warnings.simplefilter("ignore")
    import parliament

SUPPRESSIONS = DEPLOY / "iam" / "parliament.yaml"


def location_matches(entry: dict[str, Any], location: dict[str, Any]) -> bool:
    for key, patterns in entry.items():
        patterns = patterns if isinstance(patterns, list) else [patterns]
        value = location.get(key)
        if value is None:
            return False
        values = value if isinstance(value, list) else [value]
        if not values or not all(any(re.fullmatch(p.lower(), str(v).lower()) for p in patterns) for v in values):
            return False
    return True


def main(paths: list[str]) -> int:
    suppressions = yaml.safe_load(SUPPRESSIONS.read_text())
    # The community auditors' issue definitions, as parliament --include-community-auditors loads them.
    parliament.override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")
    used: set[tuple[str, int]] = set()
    files: list[Path] = []
    for arg in paths:
        path = Path(arg)
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    if not files:
        print("audit_iam: no policy documents given", file=sys.stderr)
        return 2

    reported = 0
    for path in files:
        text = path.read_text()
        if path.resolve().parent == (DEPLOY / "iam").resolve():
            text = render_placeholders(text)
        policy = parliament.analyze_policy_string(text, str(path), include_community_auditors=True)
        findings = []
        for finding in policy.findings:
            finding = parliament.enhance_finding(finding)
            rules = (suppressions.get(finding.issue) or {}).get("ignore_locations") or []
            hit = next((i for i, rule in enumerate(rules) if location_matches(rule, finding.location)), None)
            if hit is None:
                findings.append(finding)
            else:
                used.add((finding.issue, hit))
        status = "ok  " if not findings else "FAIL"
        print(f"  {status}  {path} ({len(policy.findings) - len(findings)} suppressed)")
        for finding in findings:
            reported += 1
            print(f"          {finding.severity} {finding.issue}: {finding.title} - {finding.detail} - {finding.location}")

    for issue, settings in suppressions.items():
        for i, _ in enumerate((settings or {}).get("ignore_locations") or []):
            if (issue, i) not in used:
                reported += 1
                print(f"  FAIL  suppression {issue}[{i}] in {SUPPRESSIONS.name} matches nothing: remove it")
    return 1 if reported else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
