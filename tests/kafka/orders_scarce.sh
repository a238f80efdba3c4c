#!/usr/bin/env bash
# A scarce SKU under a burst: orderflowd as in scripts/demo.sh (pipelines/accounts.yaml and
# pipelines/orders.yaml, here on this test's own topics, database and port), one SKU with 20 units,
# 10 customers placing 150 orders of one unit at once from 20 parallel connections. Checked: every
# order gets a 202, every order ends terminal, exactly 20 CONFIRMED and 130 REJECTED, stock
# 0/0/0 and never negative while the burst is processed, and tools/check-orders.sh passes.
# shellcheck source-path=SCRIPTDIR source=kafkalib.bash
source "$(dirname "$0")/kafkalib.bash"
saga_setup
t0=$SECONDS
export ORDERFLOW_JWT_KEY_FILE=$TMP/secret ORDERFLOW_JWT_ISSUER=https://shop.test ORDERFLOW_JWT_AUDIENCE=shop-api

# pipelines/orders.yaml under this test's own pipeline name and topics.
n="scarce-$RUN_ID"
sed -E -e "s/^pipeline: orders$/pipeline: $n/" \
  -e "s/(^|[^A-Za-z0-9_.-])(orders\.(placed|status|dlq)|inventory\.(events|commands)|payment\.(events|commands))\b/\1$n.\2/g" \
  "$OF_SOURCE_DIR/pipelines/orders.yaml" >"$TMP/orders.yaml"
grep -q "inputs: \[$n.orders.placed, $n.inventory.commands\]" "$TMP/orders.yaml" || fail "renaming the topics of pipelines/orders.yaml"
saga_host "$TMP/host.yaml" "$port" "$OF_SOURCE_DIR/pipelines/accounts.yaml" "$TMP/orders.yaml" --pool 16 --rate 5000
start_daemon d1 "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
req POST /api/v1/products "$(product SCARCE-1 Scarce 1999 EUR 20)" "$(tok ops admin)"
[ "$code" = 201 ] || fail "create SCARCE-1: $code $body"
echo "SCARCE-1 20" >"$TMP/initial"
for i in $(seq 1 10); do tok "cust-$i" customer; done >"$TMP/tokens"

# The burst: 150 orders of one unit, 10 customers, 20 connections at once. Prints the codes.
t1=$SECONDS
python3 - "$BASE" "$TMP/tokens" "$TMP/ids" <<'PY' >"$TMP/codes"
import http.client, json, sys, threading, urllib.parse
from concurrent.futures import ThreadPoolExecutor
base, tokens, out = sys.argv[1], open(sys.argv[2]).read().split(), sys.argv[3]
u = urllib.parse.urlsplit(base)
start = threading.Barrier(20)
local = threading.local()
def place(i):
    if not hasattr(local, "c"):
        local.c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            start.wait(10)  # the first 20 requests leave together
        except threading.BrokenBarrierError:
            pass
    try:
        local.c.request("POST", "/api/v1/orders", json.dumps({"items": [{"sku": "SCARCE-1", "quantity": 1}]}),
                        {"Authorization": "Bearer " + tokens[i % len(tokens)], "Content-Type": "application/json"})
        r = local.c.getresponse()
        body = r.read()
        return r.status, json.loads(body).get("order_id") if r.status == 202 else body[:200]
    except Exception as e:
        local.c.close()
        del local.c
        return "error", repr(e)
with ThreadPoolExecutor(20) as ex:
    results = list(ex.map(place, range(150)))
with open(out, "w") as f:
    for s, v in results:
        if s == 202:
            print(v, file=f)
for s, v in results:
    print(s, "" if s == 202 else v)
PY
accepted=$(grep -c '^202 ' "$TMP/codes" || true)
[ "$accepted" = 150 ] || fail "$accepted of 150 orders got a 202: $(grep -v '^202 ' "$TMP/codes" | sort | uniq -c | head -5)"
[ "$(sort -u "$TMP/ids" | wc -l)" = "$accepted" ] || fail "duplicate order ids among the 202s"
echo "placed $accepted orders in $((SECONDS - t1)) s"

# Until every order is terminal (bounded), sampling the stock: never negative.
stock() { sql -D "$db" -e "SELECT CONCAT_WS(' ', on_hand, available, reserved) FROM stock WHERE sku = 'SCARCE-1'"; }
t2=$SECONDS deadline=$((SECONDS + 180)) open=-1
while [ $SECONDS -lt $deadline ]; do
  read -r on_hand available reserved < <(stock)
  if [ "$on_hand" -lt 0 ] || [ "$available" -lt 0 ] || [ "$reserved" -lt 0 ]; then
    fail "negative stock: on_hand $on_hand, available $available, reserved $reserved"
  fi
  open=$(sql -D "$db" -e "SELECT COUNT(*) FROM orders WHERE status NOT IN ('CONFIRMED','REJECTED','CANCELLED')")
  [ "$open" = 0 ] && break
  sleep 0.3
done
[ "$open" = 0 ] || fail "$open order(s) not terminal after 180 s"
echo "every order terminal $((SECONDS - t2)) s after the burst"

counts=$(sql -D "$db" -e "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status" | tr '\t\n' ' ')
[ "$counts" = "CONFIRMED 20 REJECTED 130 " ] || fail "statuses: $counts (expected CONFIRMED 20 REJECTED 130)"
[ "$(stock)" = "0 0 0" ] || fail "stock of SCARCE-1 (on_hand available reserved): $(stock)"
reasons=$(sql -D "$db" -e "SELECT DISTINCT h.reason FROM order_history h JOIN orders o ON o.id = h.order_id
  WHERE o.status = 'REJECTED' AND h.to_status = 'REJECTED'")
[ "$reasons" = "insufficient stock (sku SCARCE-1)" ] || fail "reasons of the rejections: $reasons"

"$OF_SOURCE_DIR/tools/check-orders.sh" --host "$OF_MYSQL_HOST" --port "$OF_MYSQL_PORT" --user "$OF_MYSQL_USER" \
  --password-env OF_MYSQL_PASSWORD --database "$db" --orders "$TMP/ids" --initial "$TMP/initial" ||
  fail "tools/check-orders.sh"

for t in "$n.orders.dlq" "$n.orders.placed.dlq" "$n.inventory.events.dlq"; do
  d=$(kcat -C -b "$BOOT" -t "$t" -o beginning -e -q -f '%k\n' 2>/dev/null | wc -l)
  [ "$d" = 0 ] || fail "$d dead letter(s) in $t"
done
grep -q "ERROR" "$TMP/d1.log" && fail "errors in the log: $(grep ERROR "$TMP/d1.log" | head -3)"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
echo "total $((SECONDS - t0)) s"
finish
