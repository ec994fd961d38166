#!/usr/bin/env bash
# Lints deploy/ and every shell script of the repository with linters this script installs
# itself (pinned in deploy/requirements.txt), so a clean machine or CI reaches the same verdict
# as the last person who ran it. Zero findings pass; every finding fails, unless it is
# suppressed in the file it is about, with the reason beside it.
#
#   bash deploy/lint.sh
#
# Environment:
#   CERTSENTINEL_DEPLOY_VENV  the linters' venv (default: .venv-deploy at the repository root)
#   CERTSENTINEL_FIXTURES     the CloudTrail fixtures for the checker
#                             (default: tests/fixtures/cloudtrail)
#   CERTSENTINEL_BIN          a built certsentinel, to check-config the example configuration
#                             (default: target/release or target/debug when present)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${CERTSENTINEL_DEPLOY_VENV:-$repo/.venv-deploy}"
# The Kubernetes version whose API schemas the manifests are held to (kubernetes-validate
# ships them). They use only long-GA v1 APIs, so later versions accept them too; raise it as
# your clusters move.
k8s_version=1.34.0
started=$SECONDS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- the linters -----------------------------------------------------------------------------
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "deploy/lint.sh needs Python 3.11 or later (python3 is $(python3 --version 2>&1))" >&2
  exit 2
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv" >&2
  python3 -m venv "$venv"
fi
# Installing is skipped when the venv already holds exactly deploy/requirements.txt.
if ! cmp -s deploy/requirements.txt "$venv/.deploy-requirements.txt"; then
  echo "installing the linters into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
  cp deploy/requirements.txt "$venv/.deploy-requirements.txt"
fi
py="$venv/bin/python"
# No __pycache__ left beside the checker.
export PYTHONDONTWRITEBYTECODE=1

# --- the steps -------------------------------------------------------------------------------
results=()
failed=0
step() {
  local name="$1"
  shift
  printf '\n== %s\n' "$name"
  local status=0
  "$@" || status=$?
  case "$status" in
    0) results+=("ok      $name") ;;
    # A tool this machine lacks: said as such, never counted as a pass.
    75) results+=("SKIPPED $name") ;;
    *) results+=("FAILED  $name"); failed=1 ;;
  esac
}

# A linter that exits 0 but prints something (a warning it does not count) fails the step.
silent() {
  local out
  out="$("$@" 2>&1)" || { printf '%s\n' "$out"; return 1; }
  [[ -z "$out" ]] || { printf '%s\n' "$out"; return 1; }
}

cloudformation() {
  # Informational checks too, and every region: the member template is deployed to all of them.
  "$venv/bin/cfn-lint" --include-checks I --regions ALL_REGIONS -- deploy/cloudformation/*.yaml
}

checker() {
  "$py" deploy/tests/check_deploy.py --dump-policies "$work/policies"
}

iam() {
  # The JSON documents, and the identity policies of the templates as the checker wrote them.
  "$py" deploy/tests/audit_iam.py deploy/iam/member-read-policy.json \
    deploy/iam/member-trust-policy.json deploy/iam/daemon-policy.json "$work/policies"
}

kubernetes() {
  local manifests=()
  local f
  for f in deploy/kubernetes/*.yaml; do
    # Not a Kubernetes resource; check_deploy.py checks what it lists.
    [[ "$f" == */kustomization.yaml ]] || manifests+=("$f")
  done
  silent "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$k8s_version" \
    "${manifests[@]}"
}

dockerfile() {
  "$venv/bin/hadolint" --no-color deploy/container/Dockerfile
}

shell_scripts() {
  # Tracked and new (not ignored) files: *.sh, and any file whose first line is a sh or bash
  # shebang (.ci/run has no extension).
  local f first
  while IFS= read -r -d '' f; do
    [[ -f "$f" ]] || continue
    if [[ "$f" == *.sh ]]; then
      printf '%s\n' "$f"
      continue
    fi
    IFS= read -r first <"$f" || true
    if [[ "$first" =~ ^#!.*[/[:space:]](ba|da|k)?sh([[:space:]]|$) ]]; then
      printf '%s\n' "$f"
    fi
  done < <(git ls-files -z --cached --others --exclude-standard)
}

shell() {
  local scripts=()
  mapfile -t scripts < <(shell_scripts | sort -u)
  printf '%s\n' "${scripts[@]}"
  "$venv/bin/shellcheck" --external-sources --source-path=SCRIPTDIR "${scripts[@]}"
}

systemd_unit() {
  if ! command -v systemd-analyze >/dev/null; then
    echo "skipped: systemd-analyze is not on this machine"
    return 75
  fi
  # Verified unmodified, in a scratch root holding the system's own units (for the targets it
  # orders against) and a stand-in at the ExecStart path, which verify insists exists.
  local root="$work/systemd-root" units
  units="$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)"
  [[ -d "$units" ]] || units=/usr/lib/systemd/system
  [[ -d "$units" ]] || units=/lib/systemd/system
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/usr/local/bin"
  cp -a "$units" "$root/usr/lib/systemd/system"
  cp deploy/systemd/certsentinel.service "$root/etc/systemd/system/"
  install -m 0755 /dev/null "$root/usr/local/bin/certsentinel"
  # verify exits 0 on unknown keys and bad values, which it only prints: any output fails.
  silent systemd-analyze verify --root="$root" certsentinel.service || return 1
  echo "systemd-analyze verify: no findings"
  if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
    # The hardening must not regress: exposure at most 2.0 of 10 (it is 1.3 today).
    systemd-analyze security --offline=yes --root="$root" --threshold=20 --no-pager \
      certsentinel.service | tail -n 1
  fi
}

step "cfn-lint: deploy/cloudformation" cloudformation
step "check_deploy.py: event pattern, IAM drift, consistency" checker
step "parliament: deploy/iam and the templates' policies" iam
step "kubernetes-validate --strict ($k8s_version): deploy/kubernetes" kubernetes
step "hadolint: deploy/container/Dockerfile" dockerfile
step "shellcheck: every shell script of the repository" shell
step "systemd-analyze: deploy/systemd/certsentinel.service" systemd_unit

printf '\n== summary (%ss)\n' "$((SECONDS - started))"
printf '%s\n' "${results[@]}"
if (( failed )); then exit 1; fi
