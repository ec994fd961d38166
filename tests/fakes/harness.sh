# shellcheck shell=bash
# What the fake's shell checks share (sourced by check_with_awscli.sh and check_events.sh):
# the venv's tools, a scratch directory, moto and the fake on free ports, stopped on exit
# (with the fake's log shown on a failure), the AWS CLI aimed at the fake, the fake's admin
# API, and `check`/`ok`/`fail`. The sourcing script sets `set -euo pipefail` first.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-${CERTSENTINEL_VENV:-$ROOT/.venv}}"
PY="$VENV/bin/python"
AWS_BIN="$VENV/bin/aws"
MOTO_BIN="$VENV/bin/moto_server"
TMP="$(mktemp -d)"
# Every process started here, stopped on exit.
PIDS=()

cleanup() {
  local rc=$? pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    echo "---- fake log ----" >&2; tail -n 30 "$TMP/fake.log" >&2 || true
  fi
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

# start_moto -> sets MOTO_URL once moto_server listens on a free port
start_moto() {
  "$MOTO_BIN" -H 127.0.0.1 -p 0 >"$TMP/moto.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    MOTO_URL="$(grep -o 'http://127.0.0.1:[0-9]*' "$TMP/moto.log" | head -n1 || true)"
    [[ -n "$MOTO_URL" ]] && return 0
    sleep 0.1
  done
  fail "moto_server did not start"
}

# start_fake VAR NAME [ARGS...] -> the fake with ARGS on a free port, its output in
# $TMP/NAME.out and $TMP/NAME.log; sets VAR to its endpoint once it says it listens (not
# printed: a command substitution's subshell would lose its process id, and cleanup with it)
start_fake() {
  local var="$1" name="$2" port
  shift 2
  "$PY" "$HERE/apigateway_fake.py" --port 0 --port-file "$TMP/$name.port" "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [[ -s "$TMP/$name.port" ]] && break; sleep 0.1; done
  [[ -s "$TMP/$name.port" ]] || fail "fake did not write its port file"
  port="$(cat "$TMP/$name.port")"
  [[ "$port" =~ ^[0-9]+$ ]] || fail "port file holds '$port'"
  for _ in $(seq 50); do
    grep -q "listening on 127.0.0.1:$port" "$TMP/$name.out" && break
    sleep 0.1
  done
  grep -q "listening on 127.0.0.1:$port" "$TMP/$name.out" || fail "no 'listening on' line"
  printf -v "$var" 'http://127.0.0.1:%s' "$port"
}

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_PAGER="" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_ENDPOINT_URL 2>/dev/null || true

# aws ARGS... -> the venv's AWS CLI against the fake at $EP, JSON out
aws() { "$AWS_BIN" --endpoint-url "$EP" --output json "$@"; }

# admin METHOD PATH [JSON] [ENDPOINT] -> prints the JSON answer of the fake's admin API (at
# $EP unless ENDPOINT); exits 22 on an HTTP error, printing its body
admin() {
  "$PY" - "${4:-$EP}" "$1" "$2" "${3:-}" <<'PYEOF'
import sys, urllib.request, urllib.error
ep, method, path, body = sys.argv[1:5]
req = urllib.request.Request(ep + path, method=method, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req).read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode())
    sys.exit(22)
PYEOF
}

# check FILE DESCRIPTION PYTHON_EXPR   (d = parsed JSON of FILE; json, re, datetime imported)
check() {
  local file="$1" desc="$2" expr="$3"
  "$PY" - "$file" "$expr" <<'PYEOF' || fail "$desc"
import json, re, sys, datetime
file, expr = sys.argv[1], sys.argv[2]
text = open(file).read()
d = json.loads(text) if text.strip() else None
try:
    ok = eval(expr)
except Exception as e:
    print(f"  expression raised {e!r}", file=sys.stderr); ok = False
if not ok:
    print(f"  expression: {expr}\n  value: {text[:1500]}", file=sys.stderr)
    sys.exit(1)
PYEOF
  ok "$desc"
}
