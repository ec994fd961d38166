#!/usr/bin/env bash
# Proves that apigateway_fake.py publishes the CloudTrail events of successful mutating calls,
# wrapped as EventBridge does, to an SQS queue on moto (POST /_fake/events): drives the fake
# with the venv's `aws`, reads the queue back with `aws sqs`, checks every message's shape
# against what tests/fixtures/cloudtrail/ shows, exits non-zero on the first mismatch.
#
#   tests/fakes/check_events.sh            # uses /work/main/.venv (or $VENV)
set -euo pipefail

# shellcheck source=tests/fakes/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

# ---- moto (STS and SQS) and the fake ----------------------------------------------------------
start_moto
EP=""
start_fake EP fake --sts-endpoint "$MOTO_URL"
ok "fake listening on $EP (moto: $MOTO_URL)"

sqs() { "$AWS_BIN" --endpoint-url "$MOTO_URL" --output json sqs "$@"; }

# admin_rejects DESCRIPTION JSON: POST /_fake/events answers 400 {"error": ...}
admin_rejects() {
  set +e
  admin POST /_fake/events "$2" >"$TMP/rej.json"
  local rc=$?
  set -e
  [[ $rc -eq 22 ]] || fail "$1: accepted ($(cat "$TMP/rej.json"))"
  check "$TMP/rej.json" "$1 (400)" "isinstance(d.get('error'), str)"
}

# drain QUEUE_URL FILE: receives until the queue is empty; FILE gets a JSON list of the bodies.
drain() {
  local url="$1" out="$2" n
  : >"$TMP/drain.jsonl"
  while :; do
    sqs receive-message --queue-url "$url" --max-number-of-messages 10 \
      --visibility-timeout 300 --wait-time-seconds 0 >"$TMP/rm.json"
    n="$("$PY" - "$TMP/rm.json" "$TMP/drain.jsonl" <<'PYEOF'
import json, sys
text = open(sys.argv[1]).read()
msgs = json.loads(text).get("Messages", []) if text.strip() else []
with open(sys.argv[2], "a") as f:
    for m in msgs:
        f.write(json.dumps(m["Body"]) + "\n")
print(len(msgs))
PYEOF
)"
    [[ "$n" -eq 0 ]] && break
  done
  "$PY" -c "import json,sys;print(json.dumps([json.loads(l) for l in open(sys.argv[1])]))" \
    "$TMP/drain.jsonl" >"$out"
}

jget() { "$PY" -c "import json,sys;d=json.load(open(sys.argv[1]));print(eval(sys.argv[2]))" "$@"; }

sqs create-queue --queue-name ev >"$TMP/q.json"
QURL="$(jget "$TMP/q.json" "d['QueueUrl']")"
sqs create-queue --queue-name ev-dup >"$TMP/q2.json"
QDUP="$(jget "$TMP/q2.json" "d['QueueUrl']")"
ok "queues $QURL and $QDUP"

# ============================================================================================
# Admin API
# ============================================================================================
admin GET /_fake/events >"$TMP/ev0.json"
check "$TMP/ev0.json" "GET /_fake/events before enabling: off, nothing published" \
  "d['queue_url'] is None and d['duplicate'] is False and d['published']==[]"
admin_rejects "no queue_url" '{}'
admin_rejects "queue_url not a URL" '{"queue_url":"ev"}'
admin_rejects "duplicate not a boolean" "{\"queue_url\":\"$QURL\",\"duplicate\":\"yes\"}"
admin_rejects "unknown field" "{\"queue_url\":\"$QURL\",\"dupe\":true}"
admin_rejects "body not an object" '[1]'

aws apigateway generate-client-certificate --description "before events" >/dev/null
admin POST /_fake/events "{\"queue_url\":\"$QURL\",\"duplicate\":false}" >"$TMP/on.json"
check "$TMP/on.json" "POST /_fake/events enables publishing" \
  "d['ok'] and d['queue_url']=='$QURL' and d['duplicate'] is False and d['queue_region']=='us-east-1'"
drain "$QURL" "$TMP/m0.json"
check "$TMP/m0.json" "calls before enabling published nothing" "d==[]"

# ============================================================================================
# v1 calls: every successful mutation is one message, queued before the CLI returns
# ============================================================================================
aws apigateway generate-client-certificate --description "events test" \
  --tags owner=payments >"$TMP/gen.json"
CERT="$(jget "$TMP/gen.json" "d['clientCertificateId']")"
drain "$QURL" "$TMP/m1.json"
check "$TMP/m1.json" "generate-client-certificate: its event is in the queue when the CLI returns" \
  "len(d)==1 and json.loads(d[0])['detail']['eventName']=='GenerateClientCertificate'"

aws apigateway update-client-certificate --client-certificate-id "$CERT" \
  --patch-operations op=replace,path=/description,value=renamed >/dev/null
aws apigateway create-rest-api --name orders-api --tags owner=payments >"$TMP/api.json"
API="$(jget "$TMP/api.json" "d['id']")"
aws apigateway create-deployment --rest-api-id "$API" --description first >"$TMP/dep.json"
DEP="$(jget "$TMP/dep.json" "d['id']")"
aws apigateway create-deployment --rest-api-id "$API" --stage-name canary >"$TMP/dep2.json"
DEP2="$(jget "$TMP/dep2.json" "d['id']")"
aws apigateway create-stage --rest-api-id "$API" --stage-name prod --deployment-id "$DEP" \
  --description production >/dev/null
aws apigateway update-stage --rest-api-id "$API" --stage-name prod \
  --patch-operations "op=replace,path=/clientCertificateId,value=$CERT" >/dev/null
STAGE_ARN="arn:aws:apigateway:us-east-1::/restapis/$API/stages/prod"
aws apigateway tag-resource --resource-arn "$STAGE_ARN" --tags team=orders,partner=acme
aws apigateway untag-resource --resource-arn "$STAGE_ARN" --tag-keys team partner
# Reads and failed calls publish nothing.
aws apigateway get-stage --rest-api-id "$API" --stage-name prod >/dev/null
aws apigateway get-client-certificates >/dev/null
set +e
aws apigateway update-stage --rest-api-id "$API" --stage-name nosuchstage \
  --patch-operations op=replace,path=/description,value=x >/dev/null 2>&1
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "update-stage on a missing stage succeeded"
ok "a failed update-stage (exit $rc)"
aws apigateway delete-stage --rest-api-id "$API" --stage-name canary
aws apigateway delete-client-certificate --client-certificate-id "$CERT"
aws apigateway delete-rest-api --rest-api-id "$API"

# ============================================================================================
# v2 calls
# ============================================================================================
aws apigateway generate-client-certificate --description "ws backend" >"$TMP/gen2.json"
CERT2="$(jget "$TMP/gen2.json" "d['clientCertificateId']")"
# shellcheck disable=SC2016  # a literal route selection expression, not a shell expansion
aws apigatewayv2 create-api --name chat-ws --protocol-type WEBSOCKET \
  --route-selection-expression '$request.body.action' >"$TMP/ws.json"
WS="$(jget "$TMP/ws.json" "d['ApiId']")"
aws apigatewayv2 create-stage --api-id "$WS" --stage-name prod \
  --client-certificate-id "$CERT2" >/dev/null
aws apigatewayv2 update-stage --api-id "$WS" --stage-name prod --description live >/dev/null
WS_STAGE_ARN="arn:aws:apigateway:us-east-1::/apis/$WS/stages/prod"
aws apigatewayv2 tag-resource --resource-arn "$WS_STAGE_ARN" --tags tier=gold >/dev/null
aws apigatewayv2 untag-resource --resource-arn "$WS_STAGE_ARN" --tag-keys tier
aws apigatewayv2 get-stages --api-id "$WS" >/dev/null
aws apigatewayv2 delete-stage --api-id "$WS" --stage-name prod
aws apigatewayv2 delete-api --api-id "$WS"

drain "$QURL" "$TMP/msgs.json"
admin GET /_fake/events >"$TMP/pub.json"

# Every message body is an EventBridge event around a CloudTrail record (see the fixtures).
"$PY" - "$TMP/msgs.json" "$TMP/pub.json" "$TMP/m1.json" "$CERT" "$API" "$DEP" "$DEP2" "$CERT2" \
  "$WS" <<'PYEOF' || fail "message shapes"
import json, re, sys, uuid
msgs, pub, first = (json.load(open(f)) for f in sys.argv[1:4])
cert, api, dep, dep2, cert2, ws = sys.argv[4:10]
ACCOUNT, REGION = "123456789012", "us-east-1"
bodies = first + msgs
events = [json.loads(b) for b in bodies]

# The admin log lists every published body, in call order; the queue holds exactly those.
assert [p["body"] for p in pub["published"]] == bodies, "queue != GET /_fake/events"
assert all(p["sent"] == 1 for p in pub["published"]), pub["published"]
names = [e["detail"]["eventName"] for e in events]
want = ["GenerateClientCertificate", "UpdateClientCertificate", "CreateRestApi",
        "CreateDeployment", "CreateDeployment", "CreateStage", "UpdateStage", "TagResource",
        "UntagResource", "DeleteStage", "DeleteClientCertificate", "DeleteRestApi",
        "GenerateClientCertificate", "CreateApi", "CreateStage", "UpdateStage", "TagResource",
        "UntagResource", "DeleteStage", "DeleteApi"]
assert names == want, names
assert [p["event_name"] for p in pub["published"]] == want
assert [p["event_id"] for p in pub["published"]] == [e["detail"]["eventID"] for e in events]

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ids = set()
for e in events:
    assert list(e) == ["version", "id", "detail-type", "source", "account", "time", "region",
                       "resources", "detail"], list(e)
    assert e["version"] == "0" and e["detail-type"] == "AWS API Call via CloudTrail"
    assert e["source"] == "aws.apigateway" and e["resources"] == []
    assert e["account"] == ACCOUNT and e["region"] == REGION and TS.match(e["time"])
    d = e["detail"]
    for k in ("eventVersion", "userIdentity", "eventTime", "eventSource", "eventName",
              "awsRegion", "sourceIPAddress", "userAgent", "requestParameters",
              "responseElements", "requestID", "eventID", "readOnly", "eventType",
              "managementEvent", "recipientAccountId", "eventCategory"):
        assert k in d, (k, d)
    assert d["eventSource"] == "apigateway.amazonaws.com" and d["awsRegion"] == REGION
    assert d["readOnly"] is False and d["eventType"] == "AwsApiCall"
    assert d["managementEvent"] is True and d["eventCategory"] == "Management"
    assert d["recipientAccountId"] == ACCOUNT and d["userIdentity"]["accountId"] == ACCOUNT
    assert d["userIdentity"]["accessKeyId"] == "testing"
    assert d["userIdentity"]["arn"].startswith(f"arn:aws:iam::{ACCOUNT}:")
    assert d["sourceIPAddress"] == "198.51.100.7" and d["userAgent"].startswith("aws-cli/")
    assert TS.match(d["eventTime"]) and "errorCode" not in d
    uuid.UUID(e["id"]), uuid.UUID(d["eventID"]), uuid.UUID(d["requestID"])
    assert e["id"] != d["eventID"]
    ids.add(d["eventID"])
assert len(ids) == len(events), "eventIDs are not unique"

rp = [e["detail"]["requestParameters"] for e in events]
re_ = [e["detail"]["responseElements"] for e in events]
stage_arn = f"arn:aws:apigateway:us-east-1::/restapis/{api}/stages/prod"
ws_arn = f"arn:aws:apigateway:us-east-1::/apis/{ws}/stages/prod"
expect = [
    ({"generateClientCertificateInput": {"description": "events test",
                                         "tags": {"owner": "payments"}}, "template": False},
     lambda r: r["clientCertificateId"] == cert and r["self"] == {"clientCertificateId": cert,
                                                                  "template": False}),
    ({"clientCertificateId": cert, "updateClientCertificateInput": {"patchOperations": [
        {"op": "replace", "path": "/description", "value": "renamed"}]}, "template": False},
     lambda r: r["description"] == "renamed"),
    ({"createRestApiInput": {"name": "orders-api", "tags": {"owner": "payments"}},
      "template": False}, lambda r: r["id"] == api),
    ({"restApiId": api, "createDeploymentInput": {"description": "first"}, "template": False},
     lambda r: r["id"] == dep and r["deploymentStages"]["templateSkipList"] == ["position"]),
    ({"restApiId": api, "createDeploymentInput": {"stageName": "canary"}, "template": False},
     lambda r: r["id"] == dep2),
    ({"restApiId": api, "createStageInput": {"stageName": "prod", "deploymentId": dep,
                                             "description": "production"}, "template": False},
     lambda r: r["stageName"] == "prod" and r["stageUpdate"] == {
         "restApiId": api, "stageName": "prod", "template": False}
     and re.match(r"^[A-Z][a-z]{2} \d{1,2}, \d{4} \d{1,2}:\d\d:\d\d [AP]M$", r["createdDate"])),
    ({"restApiId": api, "stageName": "prod", "updateStageInput": {"patchOperations": [
        {"op": "replace", "path": "/clientCertificateId", "value": cert}]}, "template": False},
     lambda r: r["clientCertificateId"] == cert and r["self"]["stageName"] == "prod"),
    ({"tagResourceInput": {"tags": {"team": "orders", "partner": "acme"}},
      "resourceArn": stage_arn, "template": False}, lambda r: r is None),
    ({"resourceArn": stage_arn, "tagKeys": ["team", "partner"], "template": False},
     lambda r: r is None),
    ({"restApiId": api, "stageName": "canary", "template": False}, lambda r: r is None),
    ({"clientCertificateId": cert, "template": False}, lambda r: r is None),
    ({"restApiId": api, "template": False}, lambda r: r is None),
    ({"generateClientCertificateInput": {"description": "ws backend"}, "template": False},
     lambda r: r["clientCertificateId"] == cert2),
    ({"name": "chat-ws", "protocolType": "WEBSOCKET",
      "routeSelectionExpression": "$request.body.action"}, lambda r: r["apiId"] == ws),
    ({"apiId": ws, "stageName": "prod", "clientCertificateId": cert2},
     lambda r: r["clientCertificateId"] == cert2),
    ({"apiId": ws, "stageName": "prod", "description": "live"},
     lambda r: r["description"] == "live"),
    ({"resourceArn": ws_arn, "tags": {"tier": "gold"}}, lambda r: r is None),
    ({"resourceArn": ws_arn, "tagKeys": ["tier"]}, lambda r: r is None),
    ({"apiId": ws, "stageName": "prod"}, lambda r: r is None),
    ({"apiId": ws}, lambda r: r is None),
]
for i, ((params, resp_ok), name) in enumerate(zip(expect, want)):
    assert rp[i] == params, (i, name, rp[i], params)
    assert resp_ok(re_[i]), (i, name, re_[i])
print(f"  {len(events)} events checked")
PYEOF
ok "20 messages: right events in call order, envelope + CloudTrail record, ids, parameters"
check "$TMP/pub.json" "GET /_fake/events shows the setting" \
  "d['queue_url']=='$QURL' and d['duplicate'] is False and len(d['published'])==20"

# ============================================================================================
# Account and region come from the caller, as the fake partitions them
# ============================================================================================
admin POST /_fake/keys '{"access_key_id":"AKIAOTHERACCOUNT","account":"999999999999"}' >/dev/null
AWS_ACCESS_KEY_ID=AKIAOTHERACCOUNT aws apigateway generate-client-certificate \
  --region eu-west-1 >"$TMP/gen3.json"
CERT3="$(jget "$TMP/gen3.json" "d['clientCertificateId']")"
AWS_ACCESS_KEY_ID=AKIAOTHERACCOUNT aws apigateway tag-resource --region eu-west-1 \
  --resource-arn "arn:aws:apigateway:eu-west-1::/clientcertificates/$CERT3" --tags a=b
drain "$QURL" "$TMP/m3.json"
check "$TMP/m3.json" "another account and region: envelope, record and ARN follow the caller" \
  "[ (e['account'], e['region'], e['detail']['recipientAccountId'], e['detail']['awsRegion'], \
      e['detail']['userIdentity']['accountId'], e['detail']['eventName']) \
     for e in map(json.loads, d)] == \
   [('999999999999','eu-west-1','999999999999','eu-west-1','999999999999',n) \
    for n in ('GenerateClientCertificate','TagResource')] and \
   json.loads(d[1])['detail']['requestParameters']['resourceArn'] == \
   'arn:aws:apigateway:eu-west-1::/clientcertificates/$CERT3'"

# ============================================================================================
# duplicate: every event twice (at-least-once delivery); re-sending an old one
# ============================================================================================
admin POST /_fake/events "{\"queue_url\":\"$QDUP\",\"duplicate\":true}" >/dev/null
aws apigateway generate-client-certificate --description dup >/dev/null
drain "$QDUP" "$TMP/dup.json"
check "$TMP/dup.json" "duplicate: true sends each event twice, same body, same eventID" \
  "len(d)==2 and d[0]==d[1] and json.loads(d[0])['detail']['eventName']=='GenerateClientCertificate'"
admin GET /_fake/events >"$TMP/pub2.json"
check "$TMP/pub2.json" "re-enabling starts a new log; the entry says it was sent twice" \
  "d['queue_url']=='$QDUP' and d['duplicate'] is True and len(d['published'])==1 \
   and d['published'][0]['sent']==2"
# A test simulates late delivery by sending a logged body again.
"$PY" -c "import json,sys;sys.stdout.write(json.load(open(sys.argv[1]))['published'][0]['body'])" \
  "$TMP/pub2.json" >"$TMP/old_body.json"
sqs send-message --queue-url "$QDUP" --message-body "file://$TMP/old_body.json" >/dev/null
drain "$QDUP" "$TMP/late.json"
check "$TMP/late.json" "a logged body re-sent with aws sqs arrives byte for byte" \
  "d==[open('$TMP/old_body.json').read()]"

# ============================================================================================
# A queue that does not answer never fails the client's call; DELETE turns publishing off
# ============================================================================================
admin POST /_fake/events "{\"queue_url\":\"$MOTO_URL/123456789012/no-such-queue\"}" >/dev/null
aws apigateway generate-client-certificate --description "lost event" >/dev/null
ok "generate-client-certificate succeeds while publishing fails"
grep -q "events: cannot publish GenerateClientCertificate" "$TMP/fake.log" \
  || fail "no publish failure on the fake's stderr"
ok "... and the failure is logged on stderr"
admin GET /_fake/events >"$TMP/pub3.json"
check "$TMP/pub3.json" "... and logged in published with sent 0" \
  "len(d['published'])==1 and d['published'][0]['sent']==0"

admin DELETE /_fake/events >/dev/null
aws apigateway generate-client-certificate --description "after delete" >/dev/null
admin GET /_fake/events >"$TMP/off.json"
check "$TMP/off.json" "DELETE /_fake/events: off again, the last log kept" \
  "d['queue_url'] is None and len(d['published'])==1"
drain "$QURL" "$TMP/none.json"
check "$TMP/none.json" "... and nothing more reaches the queue" "d==[]"

# ============================================================================================
# --events-queue-url enables it at start
# ============================================================================================
EP2=""
start_fake EP2 fake2 --events-queue-url "$QURL"
"$AWS_BIN" --endpoint-url "$EP2" --output json apigatewayv2 create-api --name flagged \
  --protocol-type HTTP >/dev/null
drain "$QURL" "$TMP/flag.json"
check "$TMP/flag.json" "--events-queue-url: the second fake publishes from the start" \
  "len(d)==1 and json.loads(d[0])['detail']['eventName']=='CreateApi'"
admin GET /_fake/events "" "$EP2" >"$TMP/flag_pub.json"
check "$TMP/flag_pub.json" "... and GET /_fake/events shows it" \
  "d['queue_url']=='$QURL' and d['duplicate'] is False and len(d['published'])==1"

echo "ALL CHECKS PASSED"
