#!/usr/bin/env bash
# The orders plugin in a running orderflowd with MariaDB, Redis and Kafka, in the full saga: auth
# (tokens from `orderflow token`), inventory (products seeded through its admin routes), payment
# (simulated provider: a 2 s charge, customers with "-decline-" declined), orders, and a tap
# recording orders.status. Checked: place -> 202 + Location -> RESERVED -> PAID -> CONFIRMED with
# its history and inventory.commit; too little stock -> REJECTED; a declined payment -> CANCELLED
# and the stock back; a customer cancel of a RESERVED order -> CANCELLED, stock back, and the
# late capture refunded; Idempotency-Key; someone else's order -> 404; list paging and filter;
# bad bodies -> 400/422 problem+json; the Redis status cache.
source "$(dirname "$0")/kafkalib.bash"
saga_setup

n="ord-$RUN_ID"
saga_topics "$n"
saga_pipeline "$TMP/p.yaml" "$n" --concurrency 4 --payment-concurrency 8 --latency 2s --dead-letters \
  --topic "$n.tapped: { partitions: 1 }" \
  --stage "  - name: tap
    plugin: tap
    inputs: [$STATUS]
    outputs: { out: $n.tapped }
    config: { tag: st, record: \"$TMP/status\" }" \
  --route '{ method: GET, path: "/api/v1/products/{sku}", handler: inventory.get_product }' \
  --route '{ method: GET, path: /api/v1/orders, handler: orders.list }' \
  --route '{ method: POST, path: "/api/v1/orders/{id}/cancel", handler: orders.cancel }'
saga_host "$TMP/host.yaml" "$port" "$TMP/p.yaml" --tap
start_daemon d1 "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
grep -q "applied migration orders 1" "$TMP/d1.log" || fail "the orders migration was not applied"

admin=$(tok ops admin)
alice=$(tok alice customer)
bob=$(tok bob customer)
decliner=$(tok cust-decline-1 customer)

stock() { sql -D "$db" -e "SELECT CONCAT_WS(' ', on_hand, available, reserved) FROM stock WHERE sku = '$1'"; }
wait_stock() { # wait_stock SKU "ON_HAND AVAILABLE RESERVED"
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(stock "$1")" = "$2" ] && return 0
    sleep 0.2
  done
  fail "stock of $1 is $(stock "$1"), not $2"
}
# topic_events TOPIC: "key ce_type payload" lines.
topic_events() {
  kcat -C -b "$BOOT" -t "$1" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null | python3 -c '
import sys
for line in sys.stdin:
    k, h, s = line.rstrip("\n").split("\t", 2)
    t = [x.split("=", 1)[1] for x in h.split(",") if x.startswith("ce_type=")]
    print(k, t[0] if t else "-", s)'
}
wait_event() { # wait_event TOPIC KEY CE_TYPE
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    topic_events "$1" | grep -q "^$2 $3 " && return 0
    sleep 0.3
  done
  fail "no $3 for $2 on $1"
}
history() { req GET "/api/v1/orders/$1" "" "$admin"; json '",".join(h["to"] for h in d["history"])'; }
order_body() { # order_body SKU:QTY...
  python3 -c 'import json,sys; print(json.dumps({"items":[{"sku":a.split(":")[0],"quantity":int(a.split(":")[1])} for a in sys.argv[1:]]}))' "$@"
}

# ---- catalog ----
req POST /api/v1/products "$(product WIDGET Widget 500 EUR 10)" "$admin"; expect 201 "create WIDGET"
req POST /api/v1/products "$(product GADGET Gadget 1250 EUR 5)" "$admin"; expect 201 "create GADGET"
req POST /api/v1/products "$(product RARE Rare 9900 EUR 1)" "$admin"; expect 201 "create RARE"
req POST /api/v1/products "$(product TEA Tea 300 GBP 5)" "$admin"; expect 201 "create TEA"

# ---- (1) place, and the happy path to CONFIRMED ----
req POST /api/v1/orders "$(order_body WIDGET:2 GADGET:1)" "$alice"; expect 202 "place"
o1=$(json 'd["order_id"]')
[ "$(json 'd["status"]')" = PENDING ] || fail "place answered $body"
grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$o1" || fail "order id $o1 is not a UUID v7"
# Its first 48 bits are the time it was placed (ms): within a minute of now.
o1_ms=$((16#${o1:0:8}${o1:9:4})); now_ms=$(($(date +%s%N) / 1000000))
((o1_ms <= now_ms && now_ms - o1_ms < 60000)) || fail "order id $o1 does not carry the time ($o1_ms vs $now_ms)"
grep -qi "^location: /api/v1/orders/$o1"$'\r'"\?$" <<<"$headers" || fail "no Location for $o1: $headers"
req GET "/api/v1/orders/$o1" "" "$alice"; expect 200 "get o1"
[ "$(json 'd["customer_id"], d["total_cents"], d["currency"], [(i["sku"], i["quantity"], i["unit_price_cents"]) for i in d["items"]]')" = \
  "('alice', 2250, 'EUR', [('WIDGET', 2, 500), ('GADGET', 1, 1250)])" ] || fail "o1: $body"
wait_event "$PLACED" "$o1" order.placed
topic_events "$PLACED" | grep "^$o1 " | python3 -c '
import json, sys, re
k, t, s = sys.stdin.readline().rstrip("\n").split(" ", 2)
d = json.loads(s)
assert d["order_id"] == k and d["customer_id"] == "alice" and d["total_cents"] == 2250 and d["currency"] == "EUR", d
assert d["items"] == [{"sku": "WIDGET", "quantity": 2, "unit_price_cents": 500}, {"sku": "GADGET", "quantity": 1, "unit_price_cents": 1250}], d
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["placed_at"]), d' || fail "order.placed payload"
wait_status "$o1" CONFIRMED 30
[ "$(history "$o1")" = "PENDING,RESERVED,PAID,CONFIRMED" ] || fail "o1 history: $(history "$o1")"
req GET "/api/v1/orders/$o1" "" "$alice"
[ "$(json '[(h["seq"], h["from"]) for h in d["history"]]')" = "[(1, None), (2, 'PENDING'), (3, 'RESERVED'), (4, 'PAID')]" ] || fail "o1 history rows: $body"
wait_event "$ICMD" "$o1" inventory.commit
wait_stock WIDGET "8 8 0"
wait_stock GADGET "4 4 0"
[ "$(redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" GET "t$RUN_ID:order:$o1:status")" = "4:CONFIRMED" ] || fail "cached status of o1"

# ---- too little stock -> REJECTED ----
req POST /api/v1/orders "$(order_body RARE:3)" "$alice"; expect 202 "place RARE:3"
o2=$(json 'd["order_id"]')
wait_status "$o2" REJECTED 30
req GET "/api/v1/orders/$o2" "" "$alice"
[ "$(json 'd["history"][-1]["reason"]')" = "insufficient stock (sku RARE)" ] || fail "o2 reason: $body"
[ "$(stock RARE)" = "1 1 0" ] || fail "RARE after a rejection: $(stock RARE)"

# ---- payment declined -> CANCELLED, stock back ----
req POST /api/v1/orders "$(order_body WIDGET:3)" "$decliner"; expect 202 "place (decliner)"
o3=$(json 'd["order_id"]')
wait_status "$o3" CANCELLED 30
[ "$(history "$o3")" = "PENDING,RESERVED,CANCELLED" ] || fail "o3 history: $(history "$o3")"
req GET "/api/v1/orders/$o3" "" "$decliner"
grep -q '^payment declined: ' <<<"$(json 'd["history"][-1]["reason"]')" || fail "o3 reason: $body"
wait_event "$ICMD" "$o3" inventory.release
wait_stock WIDGET "8 8 0"

# ---- customer cancel of a RESERVED order: stock back, the late capture refunded ----
req POST /api/v1/orders "$(order_body GADGET:2)" "$alice"; expect 202 "place GADGET:2"
o4=$(json 'd["order_id"]')
wait_status "$o4" RESERVED 30
req POST "/api/v1/orders/$o4/cancel" "" "$alice"; expect 200 "cancel a RESERVED order"
[ "$(json 'd["status"]')" = CANCELLED ] || fail "cancel answered $body"
req GET "/api/v1/orders/$o4" "" "$alice"
[ "$(json '[h["to"] for h in d["history"]], d["history"][-1]["reason"]')" = "(['PENDING', 'RESERVED', 'CANCELLED'], 'cancelled by the customer')" ] || fail "o4: $body"
wait_event "$ICMD" "$o4" inventory.release
wait_stock GADGET "4 4 0"
wait_event "$PEV" "$o4" payment.captured
wait_event "$PCMD" "$o4" payment.refund
wait_event "$PEV" "$o4" payment.refunded
[ "$(status "$o4")" = CANCELLED ] || fail "o4 left CANCELLED"
req POST "/api/v1/orders/$o4/cancel" "" "$alice"; expect 409 "cancel a cancelled order"
req POST "/api/v1/orders/$o1/cancel" "" "$alice"; expect 409 "cancel a confirmed order"

# ---- (2) idempotency and ownership ----
req POST /api/v1/orders "$(order_body TEA:1)" "$alice" -H 'Idempotency-Key: k-1'; expect 202 "keyed place"
k1=$(json 'd["order_id"]')
req POST /api/v1/orders "$(order_body TEA:1)" "$alice" -H 'Idempotency-Key: k-1'; expect 200 "keyed place again"
[ "$(json 'd["order_id"]')" = "$k1" ] || fail "the same key gave another order: $body"
grep -qi "^location: /api/v1/orders/$k1" <<<"$headers" || fail "repeat without the same Location"
req POST /api/v1/orders "$(order_body TEA:2)" "$alice" -H 'Idempotency-Key: k-1'; expect 422 "same key, other body"
# A repeat is answered with its first order even when its lines can no longer be priced (a
# product that cannot be sold any more); without the key that is a 422.
sql -D "$db" -e "UPDATE products SET currency = '' WHERE sku = 'TEA'"
req POST /api/v1/orders "$(order_body TEA:1)" "$alice" -H 'Idempotency-Key: k-1'; expect 200 "keyed repeat of an unpriceable order"
[ "$(json 'd["order_id"]')" = "$k1" ] || fail "the unpriceable repeat gave another order: $body"
req POST /api/v1/orders "$(order_body TEA:1)" "$alice"; expect 422 "an unpriceable order"
sql -D "$db" -e "UPDATE products SET currency = 'GBP' WHERE sku = 'TEA'"
req POST /api/v1/orders "$(order_body TEA:1)" "$bob" -H 'Idempotency-Key: k-1'; expect 202 "bob's own k-1"
[ "$(json 'd["order_id"]')" != "$k1" ] || fail "bob got alice's order"
bob1=$(json 'd["order_id"]')
req POST /api/v1/orders "$(order_body TEA:1)" "$alice" -H "Idempotency-Key: $(printf 'x%.0s' $(seq 1 129))"; expect 400 "key too long"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM orders WHERE idempotency_key = 'k-1'")" = 2 ] || fail "orders with k-1"
req GET "/api/v1/orders/$o1" "" "$bob"; expect 404 "bob reads alice's order"
req POST "/api/v1/orders/$k1/cancel" "" "$bob"; expect 404 "bob cancels alice's order"
req GET "/api/v1/orders/00000000-0000-4000-8000-000000000000" "" "$alice"; expect 404 "unknown order"
req GET "/api/v1/orders/not-an-id" "" "$alice"; expect 404 "malformed id"
req GET "/api/v1/orders/$o1" "" ""; expect 401 "no token"
# "alice " is alice to SQL (PAD SPACE): such a subject would read and list her orders.
req GET "/api/v1/orders/$o1" "" "$(tok "alice " customer)"; expect 403 "a subject ending in a space"
req GET /api/v1/orders "" "$(tok "alice " customer)"; expect 403 "list as a subject ending in a space"
req GET "/api/v1/orders/$bob1" "" "$admin"; expect 200 "admin reads bob's order"

# ---- (3) list ----
for i in 1 2 3; do req POST /api/v1/orders "$(order_body TEA:1)" "$alice"; expect 202 "place more $i"; done
mine=$(sql -D "$db" -e "SELECT id FROM orders WHERE customer_id = 'alice' ORDER BY created_at DESC, id DESC" | tr '\n' ' ')
seen="" after="" pages=0
while :; do
  req GET "/api/v1/orders?limit=3${after:+&after=$after}" "" "$alice"; expect 200 "list page"
  seen+="$(json '" ".join(i["order_id"] for i in d["items"])') "
  after=$(json 'd["next_after"] or ""')
  pages=$((pages + 1))
  [ -z "$after" ] || [ $pages -gt 10 ] && break
done
[ "$(tr -s ' ' <<<"$seen")" = "$(tr -s ' ' <<<"$mine")" ] || fail "paging: $seen vs $mine"
[ "$pages" = 3 ] || fail "8 orders in pages of 3: $pages pages"
req GET "/api/v1/orders?status=CANCELLED" "" "$alice"; expect 200 "list cancelled"
[ "$(json '[i["order_id"] for i in d["items"]]')" = "['$o4']" ] || fail "cancelled filter: $body"
req GET "/api/v1/orders" "" "$bob"
[ "$(json '[i["order_id"] for i in d["items"]]')" = "['$bob1']" ] || fail "bob's list: $body"
req GET "/api/v1/orders?limit=0" "" "$alice"; expect 400 "limit 0"
req GET "/api/v1/orders?limit=101" "" "$alice"; expect 400 "limit 101"
req GET "/api/v1/orders?status=LOST" "" "$alice"; expect 400 "unknown status"
req GET "/api/v1/orders?after=$bob1" "" "$alice"; expect 400 "someone else's cursor"

# ---- bad bodies ----
bad() { # bad CODE BODY WHAT
  req POST /api/v1/orders "$2" "$alice"; expect "$1" "$3"
}
before=$(sql -D "$db" -e "SELECT COUNT(*) FROM orders")
bad 400 '{"items":' "malformed JSON"
bad 400 '[1]' "not an object"
bad 400 '{"items":[]}' "no lines"
bad 400 '{"items":[{"sku":"WIDGET","quantity":1}],"total_cents":1}' "unknown field"
bad 400 '{"items":[{"sku":"WIDGET","quantity":1,"unit_price_cents":1}]}' "a client price"
bad 400 '{"items":[{"sku":"WIDGET","quantity":0}]}' "quantity 0"
bad 400 '{"items":[{"sku":"WIDGET","quantity":1001}]}' "quantity 1001"
bad 400 '{"items":[{"sku":"WIDGET","quantity":"1"}]}' "quantity as a string"
bad 400 '{"items":[{"sku":"a b","quantity":1}]}' "bad sku"
bad 400 '{"items":[{"sku":"WIDGET","quantity":1},{"sku":"WIDGET","quantity":2}]}' "duplicate sku"
bad 400 "$(python3 -c 'import json; print(json.dumps({"items":[{"sku":f"S{i}","quantity":1} for i in range(101)]}))')" "101 lines"
bad 422 '{"items":[{"sku":"WIDGET","quantity":1},{"sku":"NOPE","quantity":1}]}' "unknown sku"
grep -q NOPE <<<"$body" || fail "422 does not name the sku: $body"
bad 422 '{"items":[{"sku":"WIDGET","quantity":1},{"sku":"TEA","quantity":1}]}' "mixed currencies"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM orders")" = "$before" ] || fail "a refused order was stored"

# ---- (4) the status cache: read when at least as new as the history, else MySQL ----
key="t$RUN_ID:order:$o2:status"
[ "$(redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" GET "$key")" = "2:REJECTED" ] || fail "cached status of o2"
redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" SET "$key" "1:PENDING" >/dev/null
[ "$(status "$o2")" = REJECTED ] || fail "an older cached status was believed"
redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" SET "$key" "3:CONFIRMED" >/dev/null
[ "$(status "$o2")" = CONFIRMED ] || fail "a newer cached status was not read"
redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" DEL "$key" >/dev/null
[ "$(status "$o2")" = REJECTED ] || fail "no fallback to MySQL without a cached status"
ttl=$(redis-cli -h "$OF_REDIS_HOST" -p "$OF_REDIS_PORT" TTL "t$RUN_ID:order:$o1:status")
[ "$ttl" -gt 86000 ] && [ "$ttl" -le 86400 ] || fail "cache ttl $ttl"

# ---- orders.status: one order.status_changed per transition (placing included), with its seq ----
# Orders may still be moving (a late refund, say): compare until the history and the topic agree
# (at most 60 s), so the check is of what was published, not of when it was read.
seqs() {
  topic_events "$STATUS" | python3 -c '
import json, sys
seen = sorted((k, json.loads(s)["seq"]) for k, t, s in (l.rstrip("\n").split(" ", 2) for l in sys.stdin))
print("\n".join(f"{k} {q}" for k, q in seen))' >"$TMP/status_seqs"
  sql -D "$db" -e "SELECT order_id, seq FROM order_history ORDER BY order_id, seq" | tr '\t' ' ' >"$TMP/history_seqs"
}
deadline=$((SECONDS + 60))
seqs
until cmp -s "$TMP/status_seqs" "$TMP/history_seqs" || [ $SECONDS -gt $deadline ]; do sleep 0.5; seqs; done
# every history row has exactly one status event with its seq
cmp -s "$TMP/status_seqs" "$TMP/history_seqs" || fail "status events and history rows differ: $(diff "$TMP/status_seqs" "$TMP/history_seqs" | head -5)"
transitions=$(wc -l <"$TMP/history_seqs")
until [ "$(wc -l <"$TMP/status" 2>/dev/null || echo 0)" -ge "$transitions" ] || [ $SECONDS -gt $deadline ]; do sleep 0.3; done
[ "$(wc -l <"$TMP/status")" = "$transitions" ] || fail "$(wc -l <"$TMP/status") status events recorded for $transitions transitions"
topic_events "$STATUS" | grep "^$o1 " | python3 -c '
import json, sys
rows = [json.loads(l.rstrip("\n").split(" ", 2)[2]) for l in sys.stdin]
assert [(r["seq"], r["from"], r["to"]) for r in rows] == [(1, None, "PENDING"), (2, "PENDING", "RESERVED"), (3, "RESERVED", "PAID"), (4, "PAID", "CONFIRMED")], rows
assert rows[0]["reason"] == "placed", rows
assert all(r["customer_id"] == "alice" and r["at"].endswith("Z") for r in rows), rows' || fail "o1 status events"

dlq=$(kcat -C -b "$BOOT" -t "$n.orders.dlq" -o beginning -e -q -f '%k\n' 2>/dev/null || true)
[ -z "$dlq" ] || fail "dead letters of orders: $dlq"
grep -q "ERROR" "$TMP/d1.log" && fail "errors in the log: $(grep ERROR "$TMP/d1.log" | head -3)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
finish
