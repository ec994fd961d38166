#!/usr/bin/env bash
# Proves that the real AWS CLI agrees with apigateway_fake.py's wire format.
# Starts the fake (and a moto server for the STS account mapping) on free ports, drives it with
# the venv's `aws`, checks every answer, exits non-zero on the first mismatch.
#
#   tests/fakes/check_with_awscli.sh            # uses /work/main/.venv (or $VENV)
set -euo pipefail

# shellcheck source=tests/fakes/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# ---- moto (STS only, for the account mapping) and the fake ------------------------------------
start_moto
EP=""
start_fake EP fake --sts-endpoint "$MOTO_URL"
ok "fake listening on $EP (sts: $MOTO_URL)"

# Exit code of the CLI for a service error: 254 in AWS CLI v2, 255 in v1 (PyPI's `awscli`).
CLI_VERSION="$("$AWS_BIN" --version 2>&1)"
if [[ "$CLI_VERSION" == aws-cli/1.* ]]; then SVC_RC=255; else SVC_RC=254; fi
ok "$CLI_VERSION (service errors exit $SVC_RC)"

# expect_error EXIT_CODE ERROR_NAME DESCRIPTION -- aws args...
expect_error() {
  local want_rc="$1" want_err="$2" desc="$3"; shift 4
  set +e
  aws "$@" >"$TMP/err.out" 2>"$TMP/err.txt"
  local rc=$?
  set -e
  [[ $rc -eq $want_rc ]] || { cat "$TMP/err.txt" >&2; fail "$desc: exit $rc, want $want_rc"; }
  grep -q "$want_err" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "$desc: no $want_err"; }
  ok "$desc (exit $rc, $want_err)"
}

calls() { admin GET /_fake/calls > "$TMP/calls.json"; }
calls_reset() { admin POST /_fake/calls/reset >/dev/null; }

# ============================================================================================
# v1 client certificates
# ============================================================================================
aws apigateway generate-client-certificate --description "cli test" --tags owner=payments \
  >"$TMP/gen.json"
check "$TMP/gen.json" "generate-client-certificate returns a 10-char id, PEM, dates, tags" \
  "re.fullmatch(r'[a-z0-9]{10}', d['clientCertificateId']) and d['description']=='cli test' \
   and d['pemEncodedCertificate'].startswith('-----BEGIN CERTIFICATE-----') \
   and isinstance(d['createdDate'], int) and d['tags']=={'owner':'payments'}"
CERT="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['clientCertificateId'])" "$TMP/gen.json")"

# The PEM's notAfter is 365 days after createdDate and equals expirationDate (raw wire check).
"$PY" - "$EP" "$CERT" <<'PYEOF' || fail "PEM notAfter == expirationDate on the wire"
import json, sys, urllib.request, datetime
from cryptography import x509
ep, cid = sys.argv[1:3]
req = urllib.request.Request(f"{ep}/clientcertificates/{cid}", headers={
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/apigateway/aws4_request, SignedHeaders=host, Signature=00"})
raw = json.loads(urllib.request.urlopen(req).read())
assert isinstance(raw["expirationDate"], int) and isinstance(raw["createdDate"], int), raw
cert = x509.load_pem_x509_certificate(raw["pemEncodedCertificate"].encode())
assert int(cert.not_valid_after_utc.timestamp()) == raw["expirationDate"], raw
assert raw["expirationDate"] - raw["createdDate"] == 365 * 86400, raw
PYEOF
ok "PEM notAfter == expirationDate (epoch seconds), valid 365 days"

# Seed 60 more certificates -> 61 in us-east-1.
"$PY" - >"$TMP/seed60.json" <<'PYEOF'
import json, datetime
now = datetime.datetime.now(datetime.timezone.utc)
print(json.dumps({"account": "123456789012", "region": "us-east-1", "certificates": [
    {"description": f"seeded {i}", "not_after": (now + datetime.timedelta(days=i)).isoformat()}
    for i in range(60)]}))
PYEOF
admin POST /_fake/seed "$(cat "$TMP/seed60.json")" >"$TMP/seeded.json"
check "$TMP/seeded.json" "admin seed returns 60 ids" "len(d['certificates'])==60"

calls_reset
aws apigateway get-client-certificates >"$TMP/all.json"
calls
check "$TMP/all.json" "get-client-certificates (CLI auto-paging) lists all 61" \
  "len(d['items'])==61 and len({c['clientCertificateId'] for c in d['items']})==61"
check "$TMP/calls.json" "... in exactly ceil(61/25)=3 calls" \
  "d['by_operation']=={'GetClientCertificates':3} and d['by_access_key']=={'testing':3}"

aws apigateway get-client-certificates --max-items 30 >"$TMP/p1.json"
check "$TMP/p1.json" "--max-items 30 gives 30 and a NextToken" \
  "len(d['items'])==30 and d.get('NextToken')"
TOKEN="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['NextToken'])" "$TMP/p1.json")"
aws apigateway get-client-certificates --starting-token "$TOKEN" >"$TMP/p2.json"
"$PY" - "$TMP/p1.json" "$TMP/p2.json" "$TMP/all.json" <<'PYEOF' || fail "--starting-token resumes"
import json, sys
a, b, all_ = (json.load(open(f)) for f in sys.argv[1:4])
ids = [c["clientCertificateId"] for c in a["items"] + b["items"]]
assert len(b["items"]) == 31 and "NextToken" not in b, b.keys()
assert ids == [c["clientCertificateId"] for c in all_["items"]]
PYEOF
ok "--starting-token resumes where --max-items stopped, no duplicates, no gaps"

calls_reset
aws apigateway get-client-certificates --page-size 500 >"$TMP/big.json"
calls
check "$TMP/big.json" "--page-size 500 lists 61" "len(d['items'])==61"
check "$TMP/calls.json" "... in one call" "d['by_operation']=={'GetClientCertificates':1}"
expect_error "$SVC_RC" BadRequestException "limit 501 is rejected" -- \
  apigateway get-client-certificates --page-size 501
BAD_TOKEN="$("$PY" -c "import base64,json;print(base64.b64encode(json.dumps({'position':'bm90LWEtdG9rZW4'}).encode()).decode())")"
expect_error "$SVC_RC" BadRequestException "an invalid position token is a 400" -- \
  apigateway get-client-certificates --starting-token "$BAD_TOKEN"

aws apigateway get-client-certificate --client-certificate-id "$CERT" >"$TMP/one.json"
check "$TMP/one.json" "get-client-certificate" \
  "d['clientCertificateId']=='$CERT' and d['description']=='cli test'"

aws apigateway update-client-certificate --client-certificate-id "$CERT" \
  --patch-operations op=replace,path=/description,value=renamed >"$TMP/upd.json"
check "$TMP/upd.json" "update-client-certificate replaces /description" \
  "d['description']=='renamed' and d['clientCertificateId']=='$CERT'"
expect_error "$SVC_RC" BadRequestException "update-client-certificate rejects unknown paths" -- \
  apigateway update-client-certificate --client-certificate-id "$CERT" \
  --patch-operations op=replace,path=/pemEncodedCertificate,value=x

# ============================================================================================
# v1 REST APIs, deployments, stages, tags
# ============================================================================================
aws apigateway create-rest-api --name orders-api --description "Order intake" \
  --tags owner=payments >"$TMP/api.json"
check "$TMP/api.json" "create-rest-api" \
  "re.fullmatch(r'[a-z0-9]{10}', d['id']) and d['name']=='orders-api' and d['tags']=={'owner':'payments'}"
API="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$TMP/api.json")"
aws apigateway get-rest-apis >"$TMP/apis.json"
check "$TMP/apis.json" "get-rest-apis lists it" "[a['id'] for a in d['items']]==['$API']"
aws apigateway get-rest-api --rest-api-id "$API" >"$TMP/api1.json"
check "$TMP/api1.json" "get-rest-api" "d['name']=='orders-api'"

aws apigateway create-deployment --rest-api-id "$API" --description first >"$TMP/dep.json"
DEP="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['id'])" "$TMP/dep.json")"
ok "create-deployment -> $DEP"
expect_error "$SVC_RC" BadRequestException "create-stage with an unknown deployment" -- \
  apigateway create-stage --rest-api-id "$API" --stage-name prod --deployment-id nope00

aws apigateway create-stage --rest-api-id "$API" --stage-name prod --deployment-id "$DEP" \
  --description production --variables backend=orders.internal --tags owner=payments \
  >"$TMP/stage.json"
check "$TMP/stage.json" "create-stage (no certificate: CreateStage has no such field)" \
  "d['stageName']=='prod' and d['deploymentId']=='$DEP' and 'clientCertificateId' not in d \
   and d['tags']=={'owner':'payments'} and d['variables']=={'backend':'orders.internal'}"
expect_error "$SVC_RC" ConflictException "create-stage twice" -- \
  apigateway create-stage --rest-api-id "$API" --stage-name prod --deployment-id "$DEP"
aws apigateway create-stage --rest-api-id "$API" --stage-name staging --deployment-id "$DEP" \
  >/dev/null

aws apigateway update-stage --rest-api-id "$API" --stage-name prod \
  --patch-operations "op=replace,path=/clientCertificateId,value=$CERT" \
  "op=replace,path=/tracingEnabled,value=true" >"$TMP/us.json"
check "$TMP/us.json" "update-stage replace /clientCertificateId and /tracingEnabled" \
  "d['clientCertificateId']=='$CERT' and d['tracingEnabled'] is True and d['description']=='production'"
ACM_ARN="arn:aws:acm:us-east-1:123456789012:certificate/0b5f2a4e-1111-2222-3333-444455556666"
aws apigateway update-stage --rest-api-id "$API" --stage-name staging \
  --patch-operations "op=replace,path=/clientCertificateId,value=$ACM_ARN" >"$TMP/us2.json"
check "$TMP/us2.json" "update-stage stores an ACM certificate ARN as given" \
  "d['clientCertificateId']=='$ACM_ARN'"
expect_error "$SVC_RC" BadRequestException "update-stage rejects unknown paths" -- \
  apigateway update-stage --rest-api-id "$API" --stage-name prod \
  --patch-operations op=replace,path=/notAThing,value=1
expect_error "$SVC_RC" BadRequestException "update-stage rejects an unknown certificate id" -- \
  apigateway update-stage --rest-api-id "$API" --stage-name prod \
  --patch-operations op=replace,path=/clientCertificateId,value=zzzzzzzzzz

calls_reset
aws apigateway get-stages --rest-api-id "$API" >"$TMP/stages.json"
calls
check "$TMP/stages.json" "get-stages returns every stage with tags inline" \
  "sorted(s['stageName'] for s in d['item'])==['prod','staging'] and \
   [s for s in d['item'] if s['stageName']=='prod'][0]['tags']=={'owner':'payments'} and \
   [s for s in d['item'] if s['stageName']=='prod'][0]['clientCertificateId']=='$CERT'"
check "$TMP/calls.json" "... in one call" "d['by_operation']=={'GetStages':1}"
expect_error "$SVC_RC" NotFoundException "get-stages on a missing API" -- \
  apigateway get-stages --rest-api-id doesnotexist

aws apigateway get-stage --rest-api-id "$API" --stage-name prod >"$TMP/gs.json"
check "$TMP/gs.json" "get-stage" "d['stageName']=='prod' and d['clientCertificateId']=='$CERT'"

STAGE_ARN="arn:aws:apigateway:us-east-1::/restapis/$API/stages/prod"
aws apigateway tag-resource --resource-arn "$STAGE_ARN" --tags team=orders,partner=acme-payments
aws apigateway get-tags --resource-arn "$STAGE_ARN" >"$TMP/tags.json"
check "$TMP/tags.json" "tag-resource + get-tags (ARN label percent-encoded in the path)" \
  "d['tags']=={'owner':'payments','team':'orders','partner':'acme-payments'}"
aws apigateway untag-resource --resource-arn "$STAGE_ARN" --tag-keys team partner
aws apigateway get-tags --resource-arn "$STAGE_ARN" >"$TMP/tags2.json"
check "$TMP/tags2.json" "untag-resource (repeated tagKeys)" "d['tags']=={'owner':'payments'}"
aws apigateway get-tags --resource-arn "arn:aws:apigateway:us-east-1::/clientcertificates/$CERT" \
  >"$TMP/tags3.json"
check "$TMP/tags3.json" "get-tags on a client certificate ARN" "d['tags']=={'owner':'payments'}"

aws apigateway delete-stage --rest-api-id "$API" --stage-name staging
expect_error "$SVC_RC" NotFoundException "get-stage after delete-stage" -- \
  apigateway get-stage --rest-api-id "$API" --stage-name staging

aws apigateway delete-client-certificate --client-certificate-id "$CERT"
expect_error "$SVC_RC" NotFoundException "get-client-certificate after delete" -- \
  apigateway get-client-certificate --client-certificate-id "$CERT"
aws apigateway get-stage --rest-api-id "$API" --stage-name prod >"$TMP/gs2.json"
check "$TMP/gs2.json" "a stage keeps naming a deleted certificate" "d['clientCertificateId']=='$CERT'"

# ============================================================================================
# Faults, hooks, auth, partitioning
# ============================================================================================
admin POST /_fake/faults '{"operation":"GetRestApis","kind":"throttle","count":2,"retry_after_seconds":1}' >/dev/null
calls_reset
aws apigateway get-rest-apis >"$TMP/thr.json"
calls
check "$TMP/thr.json" "get-rest-apis succeeds after 2 throttles (the CLI retried)" \
  "[a['id'] for a in d['items']]==['$API']"
check "$TMP/calls.json" "... and the fake saw 3 calls" "d['by_operation']['GetRestApis']==3"

admin POST /_fake/faults '{"operation":"GetStage","kind":"throttle","count":10,"retry_after_seconds":1}' >/dev/null
expect_error "$SVC_RC" TooManyRequestsException "throttled past the CLI's retries" -- \
  apigateway get-stage --rest-api-id "$API" --stage-name prod
admin DELETE /_fake/faults >/dev/null

admin POST /_fake/faults '{"operation":"GetRestApi","kind":"access_denied","count":1}' >/dev/null
expect_error "$SVC_RC" AccessDeniedException "access_denied fault" -- \
  apigateway get-rest-api --rest-api-id "$API"

admin POST /_fake/hooks "{\"operation\":\"GetStage\",\"nth\":2,\"delete\":{\"kind\":\"stage\",\"id\":\"$API\",\"stage\":\"prod\"}}" >/dev/null
aws apigateway get-stage --rest-api-id "$API" --stage-name prod >/dev/null
ok "hook: 1st GetStage still finds the stage"
expect_error "$SVC_RC" NotFoundException "hook: stage deleted just before the 2nd GetStage" -- \
  apigateway get-stage --rest-api-id "$API" --stage-name prod

expect_error "$SVC_RC" MissingAuthenticationTokenException "unsigned request is a 403" -- \
  apigateway get-rest-apis --no-sign-request

# Region partitioning: nothing of us-east-1 is visible in eu-west-1.
aws apigateway get-client-certificates --region eu-west-1 >"$TMP/eu.json"
check "$TMP/eu.json" "eu-west-1 is a separate partition" "d['items']==[]"

# Account partitioning through the admin key map.
admin POST /_fake/keys '{"access_key_id":"AKIAOTHERACCOUNT","account":"999999999999"}' >/dev/null
AWS_ACCESS_KEY_ID=AKIAOTHERACCOUNT aws apigateway get-rest-apis >"$TMP/other.json"
check "$TMP/other.json" "a mapped key sees its own (empty) account" "d['items']==[]"

# Account partitioning through STS (moto): an assumed role's key maps to the role's account.
"$AWS_BIN" --endpoint-url "$MOTO_URL" --output json sts assume-role \
  --role-arn arn:aws:iam::210987654321:role/certsentinel-reader --role-session-name check \
  >"$TMP/role.json"
read -r RK RS RT < <("$PY" -c "import json,sys;c=json.load(open(sys.argv[1]))['Credentials'];print(c['AccessKeyId'],c['SecretAccessKey'],c['SessionToken'])" "$TMP/role.json")
admin POST /_fake/seed '{"account":"210987654321","region":"us-east-1","rest_apis":[{"id":"r0le4cct01","name":"role-api"}]}' >/dev/null
AWS_ACCESS_KEY_ID="$RK" AWS_SECRET_ACCESS_KEY="$RS" AWS_SESSION_TOKEN="$RT" \
  aws apigateway get-rest-apis >"$TMP/role_apis.json"
check "$TMP/role_apis.json" "an assumed-role key sees account 210987654321 (via STS)" \
  "[a['id'] for a in d['items']]==['r0le4cct01']"

# ============================================================================================
# v2 (apigatewayv2)
# ============================================================================================
aws apigateway generate-client-certificate --description "ws backend" >"$TMP/gen2.json"
CERT2="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['clientCertificateId'])" "$TMP/gen2.json")"

# shellcheck disable=SC2016 # an API Gateway selection expression, not a shell variable
aws apigatewayv2 create-api --name chat-ws --protocol-type WEBSOCKET \
  --route-selection-expression '$request.body.action' --tags owner=platform >"$TMP/ws.json"
check "$TMP/ws.json" "apigatewayv2 create-api (WEBSOCKET)" \
  "d['Name']=='chat-ws' and d['ProtocolType']=='WEBSOCKET' and d['Tags']=={'owner':'platform'} \
   and d['ApiEndpoint'].startswith('wss://') and re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', d['CreatedDate'])"
WS="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['ApiId'])" "$TMP/ws.json")"
aws apigatewayv2 create-api --name storefront --protocol-type HTTP >"$TMP/http.json"
HTTPAPI="$("$PY" -c "import json,sys;print(json.load(open(sys.argv[1]))['ApiId'])" "$TMP/http.json")"

aws apigatewayv2 create-stage --api-id "$WS" --stage-name prod --client-certificate-id "$CERT2" \
  --tags owner=platform >"$TMP/wsst.json"
check "$TMP/wsst.json" "apigatewayv2 create-stage --client-certificate-id" \
  "d['StageName']=='prod' and d['ClientCertificateId']=='$CERT2' and d['Tags']=={'owner':'platform'}"
aws apigatewayv2 create-stage --api-id "$WS" --stage-name dev >/dev/null
# shellcheck disable=SC2016 # `$default` is API Gateway's default stage name, not a variable
expect_error "$SVC_RC" BadRequestException "client certificates only on WebSocket stages" -- \
  apigatewayv2 create-stage --api-id "$HTTPAPI" --stage-name '$default' --client-certificate-id "$CERT2"
# shellcheck disable=SC2016 # API Gateway's default stage name
aws apigatewayv2 create-stage --api-id "$HTTPAPI" --stage-name '$default' --auto-deploy >/dev/null

aws apigatewayv2 update-stage --api-id "$WS" --stage-name dev --client-certificate-id "$CERT2" \
  >"$TMP/wsup.json"
check "$TMP/wsup.json" "apigatewayv2 update-stage --client-certificate-id" \
  "d['ClientCertificateId']=='$CERT2'"

calls_reset
aws apigatewayv2 get-apis >"$TMP/v2apis.json"
aws apigatewayv2 get-stages --api-id "$WS" >"$TMP/v2stages.json"
# shellcheck disable=SC2016 # API Gateway's default stage name
aws apigatewayv2 get-stage --api-id "$HTTPAPI" --stage-name '$default' >"$TMP/v2def.json"
calls
check "$TMP/v2apis.json" "apigatewayv2 get-apis returns HTTP and WebSocket APIs" \
  "sorted((a['Name'],a['ProtocolType']) for a in d['Items'])==[('chat-ws','WEBSOCKET'),('storefront','HTTP')]"
check "$TMP/v2stages.json" "apigatewayv2 get-stages returns both stages with certificates" \
  "sorted((s['StageName'],s.get('ClientCertificateId')) for s in d['Items'])==[('dev','$CERT2'),('prod','$CERT2')]"
check "$TMP/v2def.json" "apigatewayv2 get-stage of \$default (percent-encoded)" \
  "d['StageName']=='\$default' and d['AutoDeploy'] is True"
check "$TMP/calls.json" "v2 calls are counted as v2:<Operation>, one per listing" \
  "d['by_operation']=={'v2:GetApis':1,'v2:GetStages':1,'v2:GetStage':1}"

# v2 paging: 60 more APIs -> 62; CLI auto-paging with the default page size (25) = 3 calls.
admin POST /_fake/seed "$("$PY" -c "import json;print(json.dumps({'v2_apis':[{'name':f'api-{i}','protocol_type':'HTTP'} for i in range(60)]}))")" >/dev/null
calls_reset
aws apigatewayv2 get-apis >"$TMP/v2all.json"
calls
check "$TMP/v2all.json" "apigatewayv2 get-apis pages through 62 APIs" \
  "len(d['Items'])==62 and len({a['ApiId'] for a in d['Items']})==62"
check "$TMP/calls.json" "... in ceil(62/25)=3 calls" "d['by_operation']=={'v2:GetApis':3}"
calls_reset
aws apigatewayv2 get-apis --page-size 500 >"$TMP/v2big.json"
calls
check "$TMP/calls.json" "apigatewayv2 get-apis --page-size 500: one call" \
  "d['by_operation']=={'v2:GetApis':1}"
expect_error "$SVC_RC" BadRequestException "apigatewayv2 maxResults 501 is rejected" -- \
  apigatewayv2 get-apis --page-size 501

WS_ARN="arn:aws:apigateway:us-east-1::/apis/$WS"
aws apigatewayv2 tag-resource --resource-arn "$WS_ARN" --tags tier=gold >/dev/null
aws apigatewayv2 get-tags --resource-arn "$WS_ARN" >"$TMP/v2tags.json"
check "$TMP/v2tags.json" "apigatewayv2 tag-resource + get-tags" \
  "d['Tags']=={'owner':'platform','tier':'gold'}"
aws apigatewayv2 untag-resource --resource-arn "$WS_ARN" --tag-keys tier
aws apigatewayv2 get-tags --resource-arn "$WS_ARN" >"$TMP/v2tags2.json"
check "$TMP/v2tags2.json" "apigatewayv2 untag-resource" "d['Tags']=={'owner':'platform'}"

aws apigatewayv2 delete-stage --api-id "$WS" --stage-name dev
aws apigatewayv2 delete-api --api-id "$HTTPAPI"
expect_error "$SVC_RC" NotFoundException "apigatewayv2 get-api after delete-api" -- \
  apigatewayv2 get-api --api-id "$HTTPAPI"

aws apigateway delete-rest-api --rest-api-id "$API"
expect_error "$SVC_RC" NotFoundException "get-stages after delete-rest-api" -- \
  apigateway get-stages --rest-api-id "$API"

# ============================================================================================
# Reset, sandbox-free: everything goes
# ============================================================================================
admin POST /_fake/reset >/dev/null
calls_reset
aws apigateway get-client-certificates >"$TMP/empty.json"
calls
check "$TMP/empty.json" "after reset: no certificates" "d['items']==[]"
check "$TMP/calls.json" "... and listing zero items costs one call" \
  "d['by_operation']=={'GetClientCertificates':1}"

echo "ALL CHECKS PASSED"
