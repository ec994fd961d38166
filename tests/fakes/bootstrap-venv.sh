#!/usr/bin/env bash
# Creates, or refreshes when tests/fakes/requirements.txt changed, the Python venv that the
# tests and the sandbox use: the fake API Gateway control plane, moto_server and the AWS CLI.
# Idempotent and quick when nothing changed. CERTSENTINEL_VENV overrides its place (.venv).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CERTSENTINEL_VENV:-$root/.venv}"
req="$root/tests/fakes/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi
echo "setting up the Python venv at $venv (fake control plane, moto, AWS CLI)..." >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
