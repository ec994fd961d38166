#!/usr/bin/env bash
# The sandbox: starts a local, wire-accurate API Gateway control plane seeded with a believable
# estate (two regions, dozens of certificates) and moto for ACM, imports one ACM certificate and
# attaches it to a stage with the AWS CLI, then runs `certsentinel scan --once` against it all.
# Extra arguments go to the scan, e.g. `tests/sandbox.sh --format json`. Everything listens on
# 127.0.0.1 and stops when the script ends. The state database is kept between runs
# (target/sandbox-state), and every run builds the same estate (dates count from today's
# midnight, moto's ids are seeded), so a second run the same day decides nothing.
# CERTSENTINEL_BIN runs a certsentinel already built instead of building one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash tests/fakes/bootstrap-venv.sh
venv="${CERTSENTINEL_VENV:-$root/.venv}"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$venv/bin/python" tests/fakes/apigateway_fake.py --port 0 --port-file "$work/fake.port" \
  --seed sandbox >/dev/null &
pids+=($!)
# Where the tickets go: a Jira (Cloud) fake, a PagerDuty fake and a real SMTP server.
specs="$root/tests/vendor-specs"
"$venv/bin/python" tests/fakes/jira_fake.py --port 0 --port-file "$work/jira.port" --flavour cloud \
  --cloud-spec "$specs/jira-cloud-platform.swagger-v3.v3.json" \
  --adf-schema "$specs/adf-schema-full.v1.json" --user robot@example.com --token sandbox-jira-token \
  >/dev/null &
pids+=($!)
"$venv/bin/python" tests/fakes/pagerduty_fake.py --port 0 --port-file "$work/pd.port" \
  --spec "$specs/pagerduty-events-v2.openapiv3.json" >/dev/null &
pids+=($!)
mail="$root/target/sandbox-mail"
rm -rf "$mail"
"$venv/bin/python" tests/fakes/smtp_sink.py --port 0 --port-file "$work/smtp.port" --dir "$mail" \
  >/dev/null &
pids+=($!)
moto_port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  [ -s "$work/fake.port" ] && [ -s "$work/jira.port" ] && [ -s "$work/pd.port" ] \
    && [ -s "$work/smtp.port" ] && curl -fs "http://127.0.0.1:$moto_port/moto-api/" >/dev/null 2>&1 \
    && break
  sleep 0.1
done
jira_url="http://127.0.0.1:$(cat "$work/jira.port")"
pd_url="http://127.0.0.1:$(cat "$work/pd.port")"

# The sandbox's configuration, with the ports of this run: payments and identity get Jira
# tickets and pages, every other owner (and no owner) Jira tickets; the partner e-mail.
cat tests/sandbox.toml > "$work/sandbox.toml"
cat >> "$work/sandbox.toml" <<TOML

[notify.jira]
flavour = "cloud"
base_url = "$jira_url"
user = "robot@example.com"
token = "\${SANDBOX_JIRA_TOKEN}"

[notify.pagerduty]
url = "$pd_url/v2/enqueue"

[notify.email]
smtp_host = "127.0.0.1"
smtp_port = $(cat "$work/smtp.port")
tls = "none"
from = "certsentinel@example.com"

[[notify.routes]]
owners = ["payments", "identity"]
jira_project = "PAY"
pagerduty_routing_key = "\${SANDBOX_PD_KEY}"

[notify.default_route]
jira_project = "OPS"

[partners.acme-payments]
contacts = ["pki@acme-payments.example"]
TOML
export SANDBOX_JIRA_TOKEN=sandbox-jira-token SANDBOX_PD_KEY=sandboxroutingkey000000000000000
fake_url="http://127.0.0.1:$(cat "$work/fake.port")"
moto_url="http://127.0.0.1:$moto_port"

export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox-secret AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
export AWS_ENDPOINT_URL_API_GATEWAY="$fake_url" AWS_ENDPOINT_URL_APIGATEWAYV2="$fake_url"
export AWS_ENDPOINT_URL_ACM="$moto_url" AWS_ENDPOINT_URL_STS="$moto_url"

# moto's ids come from its random generator: seeded, the imported certificate gets the same
# ARN on every run.
curl -fs -X POST "$moto_url/moto-api/seed?a=42" >/dev/null

# An imported ACM certificate with 25 days left, presented by platform-gateway/edge.
"$venv/bin/python" - "$work" <<'PY'
import datetime as dt, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.platform.example.com")])
now = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=340)).not_valid_after(now + dt.timedelta(days=25))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256()))
open(f"{sys.argv[1]}/acm.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{sys.argv[1]}/acm.key", "wb").write(key.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
PY
arn="$("$venv/bin/aws" --endpoint-url "$moto_url" acm import-certificate \
  --certificate "fileb://$work/acm.pem" --private-key "fileb://$work/acm.key" \
  --query CertificateArn --output text)"
api="$("$venv/bin/aws" --endpoint-url "$fake_url" apigateway get-rest-apis \
  --query "items[?name=='platform-gateway'].id | [0]" --output text)"
"$venv/bin/aws" --endpoint-url "$fake_url" apigateway update-stage --rest-api-id "$api" \
  --stage-name edge --patch-operations "op=replace,path=/clientCertificateId,value=$arn" >/dev/null

bin="${CERTSENTINEL_BIN:-}"
if [ -z "$bin" ]; then
  echo "building certsentinel (the first build takes a few minutes)..." >&2
  cargo build --bin certsentinel >&2
  bin="$root/target/debug/certsentinel"
fi
status=0
"$bin" --config "$work/sandbox.toml" scan --once "$@" || status=$?

# What was sent, before the fakes stop with the script.
"$venv/bin/python" - "$jira_url" "$pd_url" "$mail" >&2 <<'PY'
import json, os, sys, urllib.request
jira, pd, mail = sys.argv[1:4]
get = lambda url: json.load(urllib.request.urlopen(url))
issues = get(f"{jira}/_fake/issues")["issues"]
alerts = get(f"{pd}/_fake/alerts")["alerts"]
mails = sorted(f for f in os.listdir(mail) if f.endswith(".eml")) if os.path.isdir(mail) else []
print(f"\nsent by this run: {len(issues)} Jira issues, {len(alerts)} PagerDuty alerts, "
      f"{len(mails)} partner e-mails (the e-mails are in {mail})")
for i in issues[:8]:
    f = i["fields"]
    print(f"  {i['key']:7} {f['priority']['name']:8} {f['summary']}")
if len(issues) > 8:
    print(f"  ... and {len(issues) - 8} more")
for a in alerts:
    summary = a['summary'] if len(a['summary']) <= 90 else a['summary'][:89] + "…"
    print(f"  page {a['severity']:8} {a['status']:9} {summary}")
if not issues and not alerts and not mails:
    print("  (nothing new: the state database in target/sandbox-state already holds what an earlier\n"
          "   run decided and sent today; remove that directory to watch a first run again)")
PY

# The report over what the sandbox's state holds, as a page to open in a browser.
page="$root/target/sandbox-report.html"
if "$bin" --config "$work/sandbox.toml" report --format html --out "$page"; then
  echo "the report page over this state: $page" >&2
else
  echo "the report page could not be written (above: why)" >&2
fi
# Not a bare `exit $status`: shellcheck 0.11 then takes the EXIT trap's function for unused.
if [ "$status" -ne 0 ]; then exit "$status"; fi
