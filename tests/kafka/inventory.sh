#!/usr/bin/env bash
# The inventory plugin in a running orderflowd with MariaDB and Kafka (and the auth plugin for
# admin tokens): the catalog routes (201/409/400/401/403/404, paging, set_stock), reservations of
# every line or none (a failing line gives back the ones reserved before it), unknown SKUs,
# invalid orders answered inventory.rejected, a non-JSON payload dead-lettered, release and
# commit and their idempotency, and 200 concurrent orders for 50 units: exactly 50 reserved.
source "$(dirname "$0")/kafkalib.bash"
saga_setup

n="inv-$RUN_ID"
PLACED="$n.orders.placed"
COMMANDS="$n.inventory.commands"
EVENTS="$n.inventory.events"
cat >"$TMP/p.yaml" <<YAML
pipeline: $n
topics:
  $PLACED: { partitions: 4, external: true }
  $COMMANDS: { partitions: 4, external: true }
  $EVENTS: { partitions: 4 }
  $n.tapped: { partitions: 1 }
stages:
  - name: auth
    plugin: auth
    config:
      issuer: https://shop.test
      audience: shop-api
      key_file: "$TMP/secret"
  - name: inventory
    plugin: inventory
    inputs: [$PLACED, $COMMANDS]
    outputs: { events: $EVENTS }
    concurrency: 4
    dead_letter: $n.dlq
    retry: { max_attempts: 20, initial_backoff: 10ms, max_backoff: 200ms }
    breaker: { enabled: false }
  - name: tap
    plugin: tap
    inputs: [$EVENTS]
    outputs: { out: $n.tapped }
    config: { tag: ev, record: "$TMP/events" }
routes:
  - { method: GET, path: /api/v1/users/me, handler: auth.me }
  - { method: POST, path: /api/v1/products, handler: inventory.create_product, roles: [admin] }
  - { method: GET, path: /api/v1/products, handler: inventory.list_products }
  - { method: GET, path: "/api/v1/products/{sku}", handler: inventory.get_product }
  - { method: PUT, path: "/api/v1/products/{sku}/stock", handler: inventory.set_stock, roles: [admin] }
YAML
saga_host "$TMP/host.yaml" "$port" "$TMP/p.yaml" --tap --no-redis
start_daemon d1 "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
grep -q "applied migration inventory 1" "$TMP/d1.log" || fail "the inventory migration was not applied"

admin=$(tok ops admin)
customer=$(tok 42 customer)

# expect CODE WHAT: the code only (kafkalib.bash's also wants problem+json for refusals).
expect() { [ "$code" = "$1" ] || fail "$2: got $code, expected $1: $body"; }
stock() { sql -D "$db" -e "SELECT CONCAT_WS(' ', on_hand, available, reserved) FROM stock WHERE sku = '$1'"; }

# ---- catalog routes ----
req POST /api/v1/products "$(product WIDGET 'Widget' 500 EUR 10)" "$admin"; expect 201 "create WIDGET"
[ "$(json 'd["stock"]["available"]')" = 10 ] || fail "created product: $body"
req POST /api/v1/products "$(product GADGET 'Gadget ✓' 1250 EUR 5)" "$admin"; expect 201 "create GADGET"
req POST /api/v1/products "$(product HOT 'Hot item' 99 EUR 50)" "$admin"; expect 201 "create HOT"
req POST /api/v1/products "$(product WIDGET 'Again' 1 EUR 1)" "$admin"; expect 409 "duplicate sku"
req POST /api/v1/products '{"sku":"X1","name":"X","currency":"EUR"}' "$admin"; expect 400 "no price"
grep -q price_cents <<<"$body" || fail "400 does not name price_cents: $body"
req POST /api/v1/products '{"sku":"X1","name":"X","price_cents":1,"currency":"eur"}' "$admin"; expect 400 "bad currency"
grep -q currency <<<"$body" || fail "400 does not name currency: $body"
req POST /api/v1/products '{"sku":"a b","name":"X","price_cents":1,"currency":"EUR"}' "$admin"; expect 400 "bad sku"
grep -q sku <<<"$body" || fail "400 does not name sku: $body"
req POST /api/v1/products '{"sku":"X1","name":"X","price_cents":-1,"currency":"EUR"}' "$admin"; expect 400 "negative price"
req POST /api/v1/products '{"sku":"X1","name":"X","price_cents":1,"currency":"EUR","colour":"red"}' "$admin"; expect 400 "unknown field"
req POST /api/v1/products '{"sku":' "$admin"; expect 400 "malformed JSON"
req POST /api/v1/products "$(product X2 'X' 1 EUR 1)" "$customer"; expect 403 "customer creates a product"
req POST /api/v1/products "$(product X2 'X' 1 EUR 1)" ""; expect 401 "anonymous creates a product"
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM products WHERE sku LIKE 'X%'")" = 0 ] || fail "a refused product was stored"
req GET /api/v1/products/WIDGET "" "$customer"; expect 200 "get WIDGET"
[ "$(json 'd["price_cents"], d["currency"], d["stock"]["on_hand"]')" = "(500, 'EUR', 10)" ] || fail "get: $body"
grep -Eq '"created_at":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z"' <<<"$body" || fail "created_at: $body"
req GET /api/v1/products/NOPE "" "$customer"; expect 404 "unknown product"
req GET /api/v1/products "" ""; expect 401 "list without a token"
req GET "/api/v1/products?limit=2" "" "$customer"; expect 200 "list page 1"
[ "$(json '[p["sku"] for p in d["items"]], d["next_after"]')" = "(['GADGET', 'HOT'], 'HOT')" ] || fail "page 1: $body"
req GET "/api/v1/products?limit=2&after=HOT" "" "$customer"; expect 200 "list page 2"
[ "$(json '[p["sku"] for p in d["items"]], d["next_after"]')" = "(['WIDGET'], None)" ] || fail "page 2: $body"
req GET "/api/v1/products?limit=0" "" "$customer"; expect 400 "limit 0"
req GET "/api/v1/products?limit=101" "" "$customer"; expect 400 "limit 101"
req PUT /api/v1/products/NOPE/stock '{"on_hand":3}' "$admin"; expect 404 "set_stock unknown"
req PUT /api/v1/products/WIDGET/stock '{"on_hand":3}' "$customer"; expect 403 "customer sets stock"
req PUT /api/v1/products/WIDGET/stock '{"on_hand":-3}' "$admin"; expect 400 "negative stock"
grep -q on_hand <<<"$body" || fail "400 does not name on_hand: $body"

# ---- orders ----
# place KEY JSON...: order.placed events (key|payload lines) to the placed topic.
place() { printf '%s\n' "$@" | kcat -P -b "$BOOT" -t "$PLACED" -K '|' -z none -H ce_type=order.placed; }
send_command() { printf '%s\n' "$2" | kcat -P -b "$BOOT" -t "$COMMANDS" -K '|' -z none -H "ce_type=$1"; }
order() { # order ID LINES(sku:qty,...)
  python3 - "$@" <<'PY'
import json, sys
oid, lines = sys.argv[1], sys.argv[2]
items = [{"sku": s, "quantity": int(q), "unit_price_cents": 100} for s, q in (l.split(":") for l in lines.split(","))]
print(oid + "|" + json.dumps({"order_id": oid, "customer_id": "c-1", "items": items,
      "total_cents": 100 * sum(i["quantity"] for i in items), "currency": "EUR",
      "placed_at": "2025-01-01T00:00:00.000Z"}, separators=(",", ":")))
PY
}
# events: every event on the events topic as "key ce_type payload" lines.
events() {
  kcat -C -b "$BOOT" -t "$EVENTS" -o beginning -e -q -f '%k\t%h\t%s\n' 2>/dev/null | python3 -c '
import re, sys
for line in sys.stdin:
    k, h, s = line.rstrip("\n").split("\t", 2)
    m = re.search(r"(?:^|,)ce_type=([^,]*)", h)
    print(k, m.group(1) if m else "-", s)'
}
tapped() { [ -f "$TMP/events" ] && wc -l <"$TMP/events" || echo 0; }
wait_tapped() { # wait_tapped N: until the tap recorded N events
  local deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(tapped)" -ge "$1" ] && return 0
    sleep 0.3
  done
  fail "only $(tapped) of $1 events came out"
}
types_of() { events | awk -v k="$1" '$1 == k {print $2}' | sort | tr '\n' ' ' | sed 's/ $//'; }

place "$(order o-1 WIDGET:3,GADGET:2)" "$(order o-2 GADGET:1,WIDGET:100)" "$(order o-3 WIDGET:1,NOPE:1)"
wait_tapped 3
events >"$TMP/ev1"
grep -q '^o-1 inventory.reserved {"order_id":"o-1","customer_id":"c-1","total_cents":500,"currency":"EUR","items":\[{"sku":"GADGET","quantity":2},{"sku":"WIDGET","quantity":3}\]}$' "$TMP/ev1" ||
  fail "o-1 not reserved as expected: $(grep o-1 "$TMP/ev1")"
grep -q '^o-2 inventory.rejected {"order_id":"o-2","reason":"insufficient stock","sku":"WIDGET"}$' "$TMP/ev1" ||
  fail "o-2 not rejected for WIDGET: $(grep o-2 "$TMP/ev1")"
grep -q '^o-3 inventory.rejected {"order_id":"o-3","reason":"unknown sku","sku":"NOPE"}$' "$TMP/ev1" ||
  fail "o-3 not rejected as unknown: $(grep o-3 "$TMP/ev1")"
# o-2 reserved GADGET before WIDGET failed: all or nothing gave it back.
[ "$(stock WIDGET)" = "10 7 3" ] || fail "WIDGET stock after o-1..o-3: $(stock WIDGET)"
[ "$(stock GADGET)" = "5 3 2" ] || fail "GADGET stock after o-1..o-3 (o-2's line not undone?): $(stock GADGET)"
[ "$(sql -D "$db" -e "SELECT GROUP_CONCAT(CONCAT(order_id,':',sku,':',quantity,':',state) ORDER BY order_id, sku) FROM reservations")" = "o-1:GADGET:2:RESERVED,o-1:WIDGET:3:RESERVED" ] ||
  fail "reservations: $(sql -D "$db" -e 'SELECT * FROM reservations')"
req PUT /api/v1/products/WIDGET/stock '{"on_hand":2}' "$admin"; expect 409 "stock below the reserved units"
req PUT /api/v1/products/WIDGET/stock '{"on_hand":12}' "$admin"; expect 200 "set stock"
[ "$(stock WIDGET)" = "12 9 3" ] || fail "WIDGET stock after set_stock: $(stock WIDGET)"

# Invalid orders: answered inventory.rejected "invalid order: ..." (not dead letters).
place 'i-1|{"order_id":"i-1","customer_id":"c","items":[{"sku":"WIDGET","quantity":0}],"total_cents":0,"currency":"EUR"}' \
  'i-2|{"order_id":"i-2","customer_id":"c","total_cents":0,"currency":"EUR"}' \
  'i-3|{"order_id":"i-3","customer_id":"c","items":[{"sku":"WIDGET","quantity":1},{"sku":"WIDGET","quantity":1}],"total_cents":0,"currency":"EUR"}' \
  'i-4|{"order_id":"i-4","customer_id":"c","items":[{"sku":"WIDGET","quantity":1000001}],"total_cents":0,"currency":"EUR"}' \
  'i-5|[1,2,3]' \
  'i-6|{"order_id":"i-6","order_id":"x"}' \
  'i-7|{"order_id":"i-7","customer_id":"c","items":[{"sku":"WIDGET","quantity":"1"}],"total_cents":0,"currency":"EUR"}' \
  'i-8|{"order_id":"i-8","customer_id":"c","items":[{"sku":"WIDGET","quantity":99999999999999999999999}],"total_cents":0,"currency":"EUR"}' \
  'bad-1|this is not JSON at all'
wait_tapped 11
events >"$TMP/ev2"
for i in 1 2 3 4 5 6 7 8; do
  grep -q "^i-$i inventory.rejected {\"order_id\":\"i-$i\",\"reason\":\"invalid order: [^\"]*\"}$" "$TMP/ev2" ||
    fail "i-$i not rejected as invalid: $(grep "^i-$i " "$TMP/ev2")"
done
grep -q '^bad-1 ' "$TMP/ev2" && fail "a non-JSON payload was answered"
dlq=$(kcat -C -b "$BOOT" -t "$n.dlq" -o beginning -e -q -f '%k %h\n' 2>/dev/null || true)
grep -q '^bad-1 .*of_dlq_error=the payload is not JSON' <<<"$dlq" || fail "the non-JSON payload is not in the dead-letter topic: $dlq"
[ "$(grep -c . <<<"$dlq")" = 1 ] || fail "dead letters: $dlq"
[ "$(stock WIDGET)" = "12 9 3" ] || fail "invalid orders changed stock: $(stock WIDGET)"

# ---- release and commit ----
place "$(order o-4 WIDGET:4)"
wait_tapped 12
send_command inventory.release 'o-1|{"order_id":"o-1","reason":"payment declined"}'
send_command inventory.commit 'o-4|{"order_id":"o-4"}'
wait_tapped 14
send_command inventory.release 'o-1|{"order_id":"o-1","reason":"again"}'
send_command inventory.commit 'o-4|{"order_id":"o-4"}'
send_command inventory.release 'o-4|{"order_id":"o-4","reason":"too late"}'
send_command inventory.release 'o-404|{"order_id":"o-404","reason":"unknown"}'
send_command inventory.commit 'o-1|{"order_id":"o-1"}'
# The commands after the first two change nothing and emit nothing: wait for their inbox rows.
deadline=$((SECONDS + 60))
until [ "$(sql -D "$db" -e "SELECT COUNT(*) FROM of_inbox WHERE event_id LIKE '$COMMANDS/%'")" -ge 7 ] || [ $SECONDS -gt $deadline ]; do sleep 0.3; done
sleep 1
[ "$(types_of o-1)" = "inventory.released inventory.reserved" ] || fail "o-1 events: $(types_of o-1)"
[ "$(types_of o-4)" = "inventory.committed inventory.reserved" ] || fail "o-4 events: $(types_of o-4)"
[ "$(types_of o-404)" = "" ] || fail "an unknown order was answered: $(types_of o-404)"
events >"$TMP/ev4"
grep -q '^o-1 inventory.released {"order_id":"o-1"}$' "$TMP/ev4" || fail "released payload"
grep -q '^o-4 inventory.committed {"order_id":"o-4"}$' "$TMP/ev4" || fail "committed payload"
[ "$(stock WIDGET)" = "8 8 0" ] || fail "WIDGET after release and commit: $(stock WIDGET)"
[ "$(stock GADGET)" = "5 5 0" ] || fail "GADGET after release: $(stock GADGET)"
[ "$(sql -D "$db" -e "SELECT GROUP_CONCAT(CONCAT(order_id,':',sku,':',state) ORDER BY order_id, sku) FROM reservations")" = "o-1:GADGET:RELEASED,o-1:WIDGET:RELEASED,o-4:WIDGET:COMMITTED" ] ||
  fail "reservations after release/commit: $(sql -D "$db" -e 'SELECT * FROM reservations')"
# A second order.placed for a reserved order (another event id) is not reserved twice.
# Its first try finds the reservation rows when it inserts its own (and rolls back); one asking
# for more than the stock has must not be answered with a rejection either.
place "$(order o-4 WIDGET:4)"
place "$(order o-4 WIDGET:100)"
sleep 2
[ "$(stock WIDGET)" = "8 8 0" ] || fail "a repeated order.placed reserved again: $(stock WIDGET)"
[ "$(types_of o-4)" = "inventory.committed inventory.reserved" ] || fail "a repeated order.placed was answered: $(types_of o-4)"

# ---- 200 concurrent orders for 50 units ----
before=$(tapped)
python3 -c '
for i in range(200):
    print(f"c-{i}|{{\"order_id\":\"c-{i}\",\"customer_id\":\"c\",\"items\":[{{\"sku\":\"HOT\",\"quantity\":1,\"unit_price_cents\":99}}],\"total_cents\":99,\"currency\":\"EUR\"}}")
' | kcat -P -b "$BOOT" -t "$PLACED" -K '|' -z none -H ce_type=order.placed
wait_tapped $((before + 200))
events | awk '$1 ~ /^c-/' >"$TMP/ev3"
reserved=$(grep -c ' inventory.reserved ' "$TMP/ev3" || true)
rejected=$(grep -c ' inventory.rejected {"order_id":"c-[0-9]*","reason":"insufficient stock","sku":"HOT"}' "$TMP/ev3" || true)
[ "$reserved" = 50 ] && [ "$rejected" = 150 ] || fail "concurrent orders: $reserved reserved, $rejected rejected (expected 50, 150)"
[ "$(awk '{print $1}' "$TMP/ev3" | sort -u | wc -l)" = 200 ] || fail "not one answer per concurrent order"
[ "$(stock HOT)" = "50 0 50" ] || fail "HOT stock after the rush: $(stock HOT)"
[ "$(sql -D "$db" -e "SELECT CONCAT(COUNT(*), ' ', SUM(quantity)) FROM reservations WHERE sku = 'HOT' AND state = 'RESERVED'")" = "50 50" ] ||
  fail "HOT reservations: $(sql -D "$db" -e "SELECT COUNT(*) FROM reservations WHERE sku = 'HOT'")"
# The reserved orders are exactly the ones with reservation rows.
diff <(grep ' inventory.reserved ' "$TMP/ev3" | awk '{print $1}' | sort) \
  <(sql -D "$db" -e "SELECT order_id FROM reservations WHERE sku = 'HOT' ORDER BY order_id" | sort) >/dev/null ||
  fail "reserved events and reservation rows differ"
req PUT /api/v1/products/HOT/stock '{"on_hand":49}' "$admin"; expect 409 "HOT below reserved"
req PUT /api/v1/products/HOT/stock '{"on_hand":60}' "$admin"; expect 200 "HOT restocked"
[ "$(stock HOT)" = "60 10 50" ] || fail "HOT after restock: $(stock HOT)"

grep -q "ERROR" "$TMP/d1.log" && fail "errors in the log: $(grep ERROR "$TMP/d1.log" | head -3)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
finish
