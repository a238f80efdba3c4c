#!/usr/bin/env bash
# The payment plugin in a running orderflowd on the real broker and MariaDB, with the simulated
# provider: inventory.reserved events are captured or declined by its rules (an amount limit, a
# blocked customer, a marker in the customer id); a second reserved event for an order charges
# nothing and re-emits the recorded outcome; a refund command refunds once however often it is
# sent; transient provider failures are retried until the charge goes through (nothing is
# dead-lettered); malformed events are dead-lettered with a reason; other event types are
# ignored. A tap stage records payment.events; kcat reads them with their ce_type headers. A
# second payment stage uses the HTTP provider against a stub payment service (python3): captured,
# declined with the provider's reason (402), 500s retried, each charge and refund sent once with
# its idempotency key and the bearer key.
source "$(dirname "$0")/kafkalib.bash"
: "${OF_BUILD_PLUGIN_DIR:?}"
command -v kcat >/dev/null || { echo "FAIL: kcat is not installed (scripts/deps.sh installs it)"; exit 1; }
with_database
trap 'drop_db; cleanup' EXIT

name="pay-$RUN_ID"
INV=$name.inventory.events
CMD=$name.payment.commands
EV=$name.payment.events
DLQ=$name.dlq
HIN=$name.http.inventory.events
EV2=$name.http.payment.events

# A payment service stub for the HTTP provider: 402 above 50000 cents, two 500s for h-flaky-*,
# refunds always fine; every request is logged as "path body authorization".
hport=$(free_port)
python3 - "$hport" "$TMP/provider.log" >"$TMP/provider.out" 2>&1 <<'PY' &
import http.server, json, sys
port, log = int(sys.argv[1]), sys.argv[2]
fails = {}
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with open(log, "a") as f:
            f.write(f"{self.path} {json.dumps(req, separators=(',', ':'))} {self.headers.get('Authorization', '-').replace(' ', '_')}\n")
        oid = req["order_id"]
        if self.path.endswith("/refunds"):
            return self.reply(200, {"status": "refunded"})
        if oid.startswith("h-flaky") and fails.get(oid, 0) < 2:
            fails[oid] = fails.get(oid, 0) + 1
            return self.reply(500, {"error": "try later"})
        if req["amount_cents"] > 50000:
            return self.reply(402, {"status": "declined", "reason": "insufficient funds"})
        self.reply(200, {"status": "captured", "ref": "ch_" + oid})
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
PIDS+=($!)

cat >"$TMP/p.yaml" <<YAML
pipeline: $name
topics:
  $INV: { partitions: 3, external: true }
  $CMD: { partitions: 3, external: true }
  $EV: { partitions: 3 }
  $name.sink: { partitions: 1 }
  $HIN: { partitions: 2, external: true }
  $EV2: { partitions: 2 }
stages:
  - name: payment
    plugin: payment
    inputs: [$INV, $CMD]
    outputs: { events: $EV }
    concurrency: 3
    dead_letter: $DLQ
    retry: { max_attempts: 12, initial_backoff: 10ms, max_backoff: 100ms }
    breaker: { open_for: 200ms }
    config:
      provider: simulated
      decline_over_cents: 100000
      decline_customers: [cust-blocked]
      decline_marker: "-decline-"
      transient_failure_rate: 0.3
  - name: payment_http
    plugin: payment
    inputs: [$HIN]
    outputs: { events: $EV2 }
    retry: { max_attempts: 6, initial_backoff: 10ms, max_backoff: 100ms }
    dead_letter: $name.http.dlq
    config:
      provider: http
      url: "http://127.0.0.1:$hport/v1/charges"
      timeout: 1s
      api_key: test-key
  - name: sink
    plugin: tap
    inputs: [$EV]
    outputs: { out: $name.sink }
    config: { tag: ev, record: "$TMP/records" }
YAML
host_config "$TMP/host.yaml" "$TMP/p.yaml"
sed -i "s|plugin_dirs: \[ \"$OF_TEST_PLUGIN_DIR/tap\" \]|plugin_dirs: [ \"$OF_TEST_PLUGIN_DIR/tap\", \"$OF_BUILD_PLUGIN_DIR\" ]|" "$TMP/host.yaml"
cat >>"$TMP/host.yaml" <<YAML
mysql: { host: "$OF_MYSQL_HOST", port: $OF_MYSQL_PORT, user: "$OF_MYSQL_USER", password: "\${OF_MYSQL_PASSWORD}", database: "$db", pool_size: 4 }
YAML
start_daemon d1 "$TMP/host.yaml"
grep -q "applied migration payment 1" "$TMP/d1.log" || fail "the payments migration was not applied"

# send TOPIC CE_TYPE: "key|payload" lines on stdin, with the ce_type header.
send() {
  kcat -P -b "$BOOT" -t "$1" -K '|' -H "ce_type=$2" -z none || fail "kcat could not produce to $1"
}
reserved() { # ORDER CUSTOMER TOTAL
  printf '%s|{"order_id":"%s","customer_id":"%s","total_cents":%s,"currency":"EUR","items":[{"sku":"SKU-1","quantity":1}]}\n' \
    "$1" "$1" "$2" "$3"
}
records() { [ -f "$TMP/records" ] && wc -l <"$TMP/records" || echo 0; }
wait_lines() { # N SECONDS
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(records)" -ge "$1" ] && return 0
    sleep 0.3
  done
  return 1
}
# events: "key ce_type payload" for every event on payment.events
events() {
  kcat -C -b "$BOOT" -t "$EV" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null | python3 -c '
import sys
for line in sys.stdin:
    k, h, s = line.rstrip("\n").split("\t", 2)
    t = [x.split("=", 1)[1] for x in h.split(",") if x.startswith("ce_type=")]
    print(k, t[0] if t else "-", s)'
}

# 1. Twenty good orders, and three declined by each rule. 30 % of the tries fail transiently.
{
  for i in $(seq 1 20); do reserved "ord-$i" "cust-$i" $((1000 + i)); done
  reserved ord-big cust-rich 150000
  reserved ord-blk cust-blocked 500
  reserved ord-mk "cust-decline-7" 500
} | send "$INV" inventory.reserved
wait_lines 23 90 || fail "only $(records) of 23 payment events came out"

events >"$TMP/ev1"
for i in $(seq 1 20); do
  grep -q "^ord-$i payment.captured {\"order_id\":\"ord-$i\",\"payment_id\":[0-9]*,\"amount_cents\":$((1000 + i)),\"currency\":\"EUR\"}$" "$TMP/ev1" ||
    fail "ord-$i was not captured: $(grep "^ord-$i " "$TMP/ev1")"
done
grep -q '^ord-big payment.declined {"order_id":"ord-big","reason":"amount 150000 over the limit of 100000"}$' "$TMP/ev1" ||
  fail "ord-big (over the limit) was not declined: $(grep '^ord-big ' "$TMP/ev1")"
grep -q '^ord-blk payment.declined .*"reason":"customer cust-blocked is blocked"' "$TMP/ev1" ||
  fail "ord-blk (blocked customer) was not declined"
grep -q '^ord-mk payment.declined .*"reason":"card declined for customer cust-decline-7"' "$TMP/ev1" ||
  fail "ord-mk (decline marker) was not declined"
read -r captured declined < <(sql -D "$db" -e \
  "SELECT SUM(state = 'CAPTURED'), SUM(state = 'DECLINED') FROM payments")
[ "$captured" = 20 ] && [ "$declined" = 3 ] || fail "payments: $captured captured, $declined declined"
[ "$(sql -D "$db" -e "SELECT provider_ref LIKE 'sim\\_%' FROM payments WHERE order_id = 'ord-3'")" = 1 ] ||
  fail "no provider reference recorded"
retries=$(grep -c "charge for order .* failed (attempt" "$TMP/d1.log" || true)
[ "$retries" -ge 1 ] || fail "no transient failure was retried (rate 0.3 over 23 orders)"
echo "transient failures retried: $retries"

# 2. The same order reserved again; refunds (twice, of an unknown order, of a declined one);
#    other inventory events; malformed events.
reserved ord-1 cust-1 1001 | send "$INV" inventory.reserved
printf 'ord-2|{"order_id":"ord-2","reason":"customer cancelled"}\n' | send "$CMD" payment.refund
printf 'ord-2|{"order_id":"ord-2","reason":"customer cancelled"}\n' | send "$CMD" payment.refund
printf 'ord-none|{"order_id":"ord-none","reason":"x"}\n' | send "$CMD" payment.refund
printf 'ord-big|{"order_id":"ord-big","reason":"x"}\n' | send "$CMD" payment.refund
printf 'ord-3|{"order_id":"ord-3","reason":"out of stock","sku":"SKU-1"}\n' | send "$INV" inventory.rejected
printf 'ord-4|{"order_id":"ord-4"}\n' | send "$INV" inventory.committed
printf 'ord-bad|{"order_id":"ord-bad",\n' | send "$INV" inventory.reserved
printf 'ord-miss|{"order_id":"ord-miss","customer_id":"c"}\n' | send "$INV" inventory.reserved
printf 'ord-cmd|[1,2]\n' | send "$CMD" payment.refund
wait_lines 25 60 || fail "only $(records) of 25 payment events came out"
sleep 3 # anything that should not come out has had time to

events >"$TMP/ev2"
[ "$(wc -l <"$TMP/ev2")" = 25 ] || fail "$(wc -l <"$TMP/ev2") events on payment.events, expected 25"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM payments WHERE order_id = 'ord-1'")" = 1 ] ||
  fail "ord-1 has more than one payment"
[ "$(grep -c '^ord-1 payment.captured' "$TMP/ev2")" = 2 ] || fail "ord-1's outcome was not re-emitted"
[ "$(grep '^ord-1 payment.captured' "$TMP/ev2" | sed 's/.*"payment_id":\([0-9]*\).*/\1/' | sort -u | wc -l)" = 1 ] ||
  fail "ord-1's re-emitted capture has another payment id"
grep -q "order ord-1 already has payment .* (CAPTURED): not charged again" "$TMP/d1.log" ||
  fail "the second reserved event for ord-1 was not recognised"
[ "$(grep -c '^ord-2 payment.refunded' "$TMP/ev2")" = 1 ] || fail "ord-2 was not refunded exactly once"
grep -q '^ord-2 payment.refunded {"order_id":"ord-2","payment_id":[0-9]*,"amount_cents":1002,"currency":"EUR"}$' "$TMP/ev2" ||
  fail "ord-2's refund event is wrong: $(grep '^ord-2 payment.refunded' "$TMP/ev2")"
[ "$(sql -D "$db" -e "SELECT CONCAT(state, '/', reason) FROM payments WHERE order_id = 'ord-2'")" = "REFUNDED/customer cancelled" ] ||
  fail "ord-2 is not REFUNDED in the table"
[ "$(sql -D "$db" -e "SELECT state FROM payments WHERE order_id = 'ord-big'")" = DECLINED ] ||
  fail "refunding a declined payment changed it"
grep -Eq '^(ord-none|ord-bad|ord-miss|ord-cmd) ' "$TMP/ev2" && fail "an event was emitted for an unknown or malformed input"
[ "$(grep -c '^ord-3 ' "$TMP/ev2")" = 1 ] && [ "$(grep -c '^ord-4 ' "$TMP/ev2")" = 1 ] ||
  fail "an event was emitted for inventory.rejected or inventory.committed"

# Dead letters: exactly the three malformed events, rejected with a reason.
kcat -C -b "$BOOT" -t "$DLQ" -o beginning -e -q -f '%k\t%h\n' 2>/dev/null >"$TMP/dlq" || true
[ "$(wc -l <"$TMP/dlq")" = 3 ] || fail "$(wc -l <"$TMP/dlq") dead letters, expected 3: $(cat "$TMP/dlq")"
grep -q '^ord-bad	.*of_dlq_status=rejected.*' "$TMP/dlq" && grep -q '^ord-bad	.*malformed JSON' "$TMP/dlq" ||
  fail "ord-bad was not rejected as malformed JSON"
grep -q '^ord-miss	.*total_cents must be an integer' "$TMP/dlq" || fail "ord-miss was not rejected for its missing field"
grep -q '^ord-cmd	.*not a JSON object' "$TMP/dlq" || fail "ord-cmd was not rejected"
grep -q "retries-exhausted" "$TMP/dlq" && fail "a transient failure was dead-lettered"

# 3. The HTTP provider: captured, declined (402), retried after 500s, refunded once.
{
  reserved h-1 cust-1 1500
  reserved h-big cust-1 90000
  reserved h-flaky-1 cust-1 700
} | send "$HIN" inventory.reserved
reserved h-1 cust-1 1500 | send "$HIN" inventory.reserved
printf 'h-1|{"order_id":"h-1","reason":"cancelled"}\n' | send "$HIN" payment.refund
printf 'h-1|{"order_id":"h-1","reason":"cancelled"}\n' | send "$HIN" payment.refund
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  n=$(kcat -C -b "$BOOT" -t "$EV2" -o beginning -e -q -f '.\n' 2>/dev/null | wc -l)
  [ "$n" -ge 5 ] && break
  sleep 0.3
done
sleep 2
EV=$EV2 events >"$TMP/ev3"
[ "$(wc -l <"$TMP/ev3")" = 5 ] || fail "http: $(wc -l <"$TMP/ev3") events, expected 5: $(cat "$TMP/ev3")"
[ "$(grep -c '^h-1 payment.captured {"order_id":"h-1","payment_id":[0-9]*,"amount_cents":1500,"currency":"EUR"}$' "$TMP/ev3")" = 2 ] ||
  fail "http: h-1 not captured (and re-emitted once)"
grep -q '^h-1 payment.refunded ' "$TMP/ev3" || fail "http: h-1 not refunded"
grep -q '^h-big payment.declined {"order_id":"h-big","reason":"insufficient funds"}$' "$TMP/ev3" ||
  fail "http: h-big not declined with the provider's reason"
grep -q '^h-flaky-1 payment.captured ' "$TMP/ev3" || fail "http: h-flaky-1 not captured after the 500s"
grep -q "charge for order h-flaky-1 failed (attempt 2): charge: provider answered HTTP 500" "$TMP/d1.log" ||
  fail "http: the 500s were not retried"
[ "$(grep -c '^/v1/charges {"order_id":"h-1","amount_cents":1500,"currency":"EUR","idempotency_key":"h-1"} Bearer_test-key$' "$TMP/provider.log")" = 1 ] ||
  fail "http: h-1 was not charged exactly once with its idempotency key: $(cat "$TMP/provider.log")"
[ "$(grep -c '^/v1/charges/refunds {"order_id":"h-1","idempotency_key":"h-1:refund"}' "$TMP/provider.log")" = 1 ] ||
  fail "http: h-1 was not refunded exactly once"
[ "$(sql -D "$db" -e "SELECT CONCAT(state, '/', provider_ref) FROM payments WHERE order_id = 'h-1'")" = "REFUNDED/ch_h-1" ] ||
  fail "http: h-1's row is wrong"
grep -q "test-key" "$TMP/d1.log" && fail "the api key was logged"

kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "the daemon did not stop cleanly"
finish
