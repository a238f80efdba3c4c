#!/usr/bin/env bash
# The notification and webhook plugins in a running orderflowd with MariaDB, Redis and Kafka, in
# the full order saga (auth, inventory, payment simulated with "-decline-" customers declined,
# orders), with a webhook receiver (python3 http.server on loopback) that verifies every
# Standard Webhooks signature with the secret returned at registration and answers 500 to the
# first try of every seq-2 delivery. Checked: registration (201, secret shown once, Location),
# listing without secrets, deletion, the per-customer limit (409), refused input (400/422),
# someone else's webhook (404), no token (401); every transition of a confirmed and of a
# cancelled order delivered, signed, in order, retried deliveries with the same webhook-id, the
# delivery table; a dead endpoint ending in the dead-letter topic; 410 Gone deactivating a
# webhook; the log channel.
source "$(dirname "$0")/kafkalib.bash"
saga_setup
dead_port=$(free_port) # nobody listens there
mkdir -p "$TMP/secrets"

# ---- the webhook receiver ----
cat >"$TMP/receiver.py" <<'PY'
import base64, hashlib, hmac, json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

tmp = sys.argv[1]
lock = threading.Lock()
seen = set()

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        name = self.path.strip("/").split("?")[0]
        mid = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sigs = self.headers.get("webhook-signature", "")
        ok = False
        try:
            secret = open(os.path.join(tmp, "secrets", name)).read().strip()
            key = base64.b64decode(secret.split("_", 1)[1])
            want = base64.b64encode(hmac.new(key, f"{mid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
            ok = any(s.split(",", 1)[1] == want for s in sigs.split() if s.startswith("v1,"))
            ok = ok and abs(time.time() - int(ts)) < 300
        except Exception as e:
            print("verify:", e, file=sys.stderr)
        d = {}
        try:
            d = json.loads(body)
        except Exception:
            pass
        with lock:
            first = mid not in seen
            seen.add(mid)
            if name == "gone":
                code = 410
            elif first and d.get("data", {}).get("seq") == 2:
                code = 500
            else:
                code = 200
            rec = {"path": name, "id": mid, "ts": ts, "sig_ok": ok, "code": code,
                   "ua": self.headers.get("User-Agent", ""), "ct": self.headers.get("Content-Type", ""),
                   "body": d}
            with open(os.path.join(tmp, "received.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(os.path.join(tmp, "receiver.port"), "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
python3 "$TMP/receiver.py" "$TMP" 2>"$TMP/receiver.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$TMP/receiver.port" ] && break; sleep 0.1; done
rport=$(cat "$TMP/receiver.port")
HOOKS="http://127.0.0.1:$rport"

n="ntf-$RUN_ID"
WDLQ=$n.webhook.dlq
saga_pipeline "$TMP/p.yaml" "$n" --notification \
  --with notification "dead_letter: $n.notification.dlq" \
  --with notification "config: { max_webhooks_per_customer: 3, allow_private_addresses: true }" \
  --with webhook "concurrency: 4" \
  --with webhook "dead_letter: $WDLQ" \
  --with webhook "retry: { max_attempts: 3, initial_backoff: 100ms, max_backoff: 300ms }" \
  --with webhook "config: { timeout: 2s, allow_private_addresses: true }" \
  --route '{ method: POST, path: /api/v1/webhooks, handler: notification.webhooks_create }' \
  --route '{ method: GET, path: /api/v1/webhooks, handler: notification.webhooks_list }' \
  --route '{ method: DELETE, path: "/api/v1/webhooks/{id}", handler: notification.webhooks_delete }'
saga_host "$TMP/host.yaml" "$port" "$TMP/p.yaml" --pool 12
"$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" lint "$TMP/p.yaml" >"$TMP/lint.out" 2>&1 || fail "lint: $(cat "$TMP/lint.out")"
start_daemon d1 "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
grep -q "applied migration notification 1" "$TMP/d1.log" || fail "the notification migration was not applied"

admin=$(tok ops admin)
alice=$(tok alice customer)
bob=$(tok bob customer)
carol=$(tok carol customer)
decliner=$(tok cust-decline-7 customer)
dana=$(tok dana customer)
erin=$(tok erin customer)

# register NAME TOKEN: a webhook at the receiver's /NAME; its secret saved for the receiver.
register() {
  req POST /api/v1/webhooks "{\"url\":\"$HOOKS/$1\",\"description\":\"$1 hook\"}" "$2"
  expect 201 "register $1"
  json 'd["secret"]' >"$TMP/secrets/$1"
  json 'd["id"]'
}
received() { # received PATH: lines "order_id seq to id sig_ok code" of the deliveries to PATH
  [ -f "$TMP/received.jsonl" ] || return 0
  python3 - "$TMP/received.jsonl" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["path"] == sys.argv[2]:
        d = r["body"].get("data", {})
        print(d.get("order_id"), d.get("seq"), d.get("to"), r["id"], r["sig_ok"], r["code"])
PY
}
wait_delivered() { # wait_delivered PATH ORDER "TO,TO,..."
  local deadline=$((SECONDS + 60)) got=
  while [ $SECONDS -lt $deadline ]; do
    got=$(received "$1" | awk -v o="$2" '$1 == o && $6 == 200 {print $2, $3}' | sort -n | uniq | awk '{print $2}' | paste -sd, -)
    [ "$got" = "$3" ] && return 0
    sleep 0.3
  done
  fail "deliveries of $2 to /$1: '$got', expected '$3'"
}

# ---- catalog ----
req POST /api/v1/products "$(product WIDGET Widget 500 EUR 100)" "$admin"; expect 201 "create WIDGET"

# ---- registration ----
req POST /api/v1/webhooks "{\"url\":\"$HOOKS/alice\",\"description\":\"alice hook\"}" "$alice"; expect 201 "register alice"
wa=$(json 'd["id"]')
json 'd["secret"]' >"$TMP/secrets/alice"
grep -Eq '^whsec_[A-Za-z0-9+/]{43}=$' "$TMP/secrets/alice" || fail "secret: $(cat "$TMP/secrets/alice")"
[ "$(json 'd["url"], d["description"]')" = "('$HOOKS/alice', 'alice hook')" ] || fail "register answered $body"
grep -qi "^location: /api/v1/webhooks/$wa" <<<"$headers" || fail "no Location for $wa"
req GET /api/v1/webhooks "" "$alice"; expect 200 "list"
[ "$(json '[(i["id"], i["active"]) for i in d["items"]]')" = "[('$wa', True)]" ] || fail "alice's list: $body"
grep -q secret <<<"$body" && fail "the list shows a secret: $body"
[ "$(sql -D "$db" -e "SELECT secret FROM notification_webhooks WHERE id = '$wa'")" = "$(cat "$TMP/secrets/alice")" ] || fail "stored secret"
req GET /api/v1/webhooks "" "$bob"; expect 200 "bob's list"
[ "$(json 'd["items"]')" = "[]" ] || fail "bob sees $body"
req DELETE "/api/v1/webhooks/$wa" "" "$bob"; expect 404 "bob deletes alice's webhook"
req DELETE "/api/v1/webhooks/00000000-0000-4000-8000-000000000000" "" "$alice"; expect 404 "unknown webhook"
req DELETE "/api/v1/webhooks/not-an-id" "" "$alice"; expect 404 "malformed webhook id"
req POST /api/v1/webhooks "{\"url\":\"$HOOKS/x\"}" ""; expect 401 "register without a token"
req GET /api/v1/webhooks "" ""; expect 401 "list without a token"
# "alice " is alice to SQL (PAD SPACE): such a subject is no customer.
req GET /api/v1/webhooks "" "$(tok "alice " customer)"; expect 403 "a subject ending in a space"
req DELETE "/api/v1/webhooks/$wa" "" ""; expect 401 "delete without a token"
bad() { # bad CODE BODY WHAT
  req POST /api/v1/webhooks "$2" "$bob"; expect "$1" "$3"
}
bad 400 '{"url":' "malformed JSON"
bad 400 '["http://x/"]' "not an object"
bad 400 '{}' "no url"
bad 400 '{"url":42}' "url not a string"
bad 400 '{"url":"http://x.example/","secret":"mine"}' "unknown field"
bad 400 "{\"url\":\"http://x.example/\",\"description\":\"$(printf 'd%.0s' $(seq 1 256))\"}" "description too long"
bad 422 '{"url":"ftp://x.example/"}' "ftp"
bad 422 '{"url":"javascript:alert(1)"}' "javascript"
bad 422 '{"url":"https://user:pw@x.example/"}' "user info"
bad 422 '{"url":"https://x.example/#frag"}' "fragment"
bad 422 '{"url":"https://x.example/a b"}' "space"
bad 422 '{"url":"https://x.example/a\r\nX-Injected: 1"}' "header injection"
bad 422 '{"url":"https:///x"}' "no host"
bad 422 "{\"url\":\"https://x.example/$(printf 'a%.0s' $(seq 1 2100))\"}" "oversized url"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM notification_webhooks WHERE customer_id = 'bob'")" = 0 ] || fail "a refused webhook was stored"
# the per-customer limit (3 in this pipeline)
for i in 1 2 3; do req POST /api/v1/webhooks "{\"url\":\"https://hooks.example/c$i\"}" "$carol"; expect 201 "carol's webhook $i"; done
wc3=$(json 'd["id"]')
req POST /api/v1/webhooks '{"url":"https://hooks.example/c4"}' "$carol"; expect 409 "a fourth webhook"
req DELETE "/api/v1/webhooks/$wc3" "" "$carol"; expect 204 "delete one"
[ -z "$body" ] || fail "204 with a body: $body"
req POST /api/v1/webhooks '{"url":"https://hooks.example/c4"}' "$carol"; expect 201 "a fourth after a deletion"
register decl "$decliner" >/dev/null
req POST /api/v1/webhooks "{\"url\":\"http://127.0.0.1:$dead_port/dead\"}" "$dana"; expect 201 "register a dead endpoint"
wd=$(json 'd["id"]')
we=$(register gone "$erin")

# ---- a confirmed order and a cancelled one: every transition delivered, signed ----
req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":1}]}' "$alice"; expect 202 "place (alice)"
o1=$(json 'd["order_id"]')
req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":2}]}' "$decliner"; expect 202 "place (decliner)"
o2=$(json 'd["order_id"]')
req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":1}]}' "$dana"; expect 202 "place (dana)"
o3=$(json 'd["order_id"]')
req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":1}]}' "$erin"; expect 202 "place (erin)"
o4=$(json 'd["order_id"]')
wait_status "$o1" CONFIRMED 60
wait_status "$o2" CANCELLED 60
wait_delivered alice "$o1" "PENDING,RESERVED,PAID,CONFIRMED"
wait_delivered decl "$o2" "PENDING,RESERVED,CANCELLED"
python3 - "$TMP/received.jsonl" "$o1" "$o2" "$wa" <<'PY' || fail "delivered requests"
import json, re, sys
path, o1, o2, wa = sys.argv[1:]
recs = [json.loads(l) for l in open(path)]
mine = [r for r in recs if r["path"] in ("alice", "decl")]
assert all(r["sig_ok"] for r in recs if r["path"] != "dead"), [r for r in recs if not r["sig_ok"]]
assert all(r["ua"].startswith("orderflow-webhook/") and r["ct"] == "application/json" for r in mine), mine[0]
for order, path, n in ((o1, "alice", 4), (o2, "decl", 3)):
    rs = [r for r in mine if r["body"]["data"]["order_id"] == order]
    ok = [r for r in rs if r["code"] == 200]
    ids = {r["body"]["data"]["seq"]: r["id"] for r in ok}
    assert sorted(ids) == list(range(1, n + 1)), (order, ids)
    assert len(set(ids.values())) == n, ids                      # one id per transition
    assert all(re.fullmatch(r"msg_[0-9a-f]{32}", i) for i in ids.values()), ids
    for r in rs:
        b = r["body"]
        assert b["id"] == r["id"] and b["type"] == "order.status_changed", b
        assert set(b) == {"id", "type", "timestamp", "data"}, b
        assert set(b["data"]) == {"order_id", "customer_id", "seq", "from", "to", "reason", "at"}, b
        assert b["timestamp"] == b["data"]["at"], b
    first = [r for r in ok if r["body"]["data"]["seq"] == 1][0]["body"]["data"]
    assert first["from"] is None and first["to"] == "PENDING" and first["reason"] == "placed", first
    # the seq-2 delivery was answered 500 first, then retried with the same webhook-id
    two = [r for r in rs if r["body"]["data"]["seq"] == 2]
    assert [r["code"] for r in two][:2] == [500, 200], two
    assert len({r["id"] for r in two}) == 1, two
    # in order: one endpoint's deliveries are keyed by the webhook
    seqs = [r["body"]["data"]["seq"] for r in ok]
    assert seqs == sorted(seqs), seqs
PY
[ "$(sql -D "$db" -e "SELECT COUNT(*), SUM(delivered_at IS NOT NULL), SUM(last_status = 200), MAX(attempts) FROM notification_deliveries WHERE webhook_id = '$wa'" | tr '\t' ' ')" = "4 4 4 2" ] || \
  fail "alice's deliveries: $(sql -D "$db" -e "SELECT * FROM notification_deliveries WHERE webhook_id = '$wa'")"

# ---- a dead endpoint: tries run out, the deliveries go to the dead-letter topic ----
wait_status "$o3" CONFIRMED 60
deadline=$((SECONDS + 60))
until [ "$(kcat -C -b "$BOOT" -t "$WDLQ" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c "^$wd$")" -ge 4 ] || [ $SECONDS -gt $deadline ]; do sleep 0.5; done
kcat -C -b "$BOOT" -t "$WDLQ" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null | python3 -c '
import json, sys
wd = sys.argv[1]
rows = [l.rstrip("\n").split("\t", 2) for l in sys.stdin]
rows = [(k, dict(x.split("=", 1) for x in h.split(",") if "=" in x), json.loads(s)) for k, h, s in rows]
dead = [r for r in rows if r[0] == wd]
assert len(dead) == 4, len(dead)
assert all(h.get("of_dlq_status") == "retries-exhausted" and h.get("of_dlq_attempts") == "3" for k, h, p in dead), [h for k, h, p in dead]
assert all("cannot connect" in h.get("of_dlq_error", "") for k, h, p in dead), [h.get("of_dlq_error") for k, h, p in dead]
assert sorted(p["data"]["seq"] for k, h, p in dead) == [1, 2, 3, 4], dead
assert all("secret" not in json.dumps(p) for k, h, p in dead)
assert [k for k, h, p in rows if k != wd] == [], rows' "$wd" || fail "dead letters of the webhook stage"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM notification_deliveries WHERE webhook_id = '$wd'")" = 0 ] || fail "a dead delivery was recorded"

# ---- 410 Gone: the webhook is deactivated, later deliveries dropped ----
wait_status "$o4" CONFIRMED 60
deadline=$((SECONDS + 30))
until [ "$(sql -D "$db" -e "SELECT active FROM notification_webhooks WHERE id = '$we'")" = 0 ] || [ $SECONDS -gt $deadline ]; do sleep 0.3; done
req GET /api/v1/webhooks "" "$erin"
[ "$(json '[(i["id"], i["active"]) for i in d["items"]]')" = "[('$we', False)]" ] || fail "erin's webhook after 410: $body"
sleep 1
[ "$(received gone | wc -l)" = 1 ] || fail "deliveries after 410 Gone: $(received gone)"
[ "$(sql -D "$db" -e "SELECT last_status FROM notification_deliveries WHERE webhook_id = '$we'")" = 410 ] || fail "410 not recorded"

# ---- the log channel; no secrets anywhere in the log ----
grep -q "order $o1 of alice: RESERVED -> PAID (seq 3" "$TMP/d1.log" || fail "the change is not logged"
grep -qF "$(cat "$TMP/secrets/alice")" "$TMP/d1.log" && fail "a secret in the log"
kcat -C -b "$BOOT" -t "$WH" -o beginning -e -q 2>/dev/null | grep -q whsec_ && fail "a secret on the bus"
dlq=$(kcat -C -b "$BOOT" -t "$n.notification.dlq" -o beginning -e -q -f '%k\n' 2>/dev/null || true)
[ -z "$dlq" ] || fail "dead letters of notification: $dlq"
grep -q "ERROR" "$TMP/d1.log" && fail "errors in the log: $(grep ERROR "$TMP/d1.log" | head -3)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
finish
