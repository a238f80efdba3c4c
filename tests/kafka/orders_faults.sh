#!/usr/bin/env bash
# The order saga under faults: orderflowd as in scripts/demo.sh (pipelines/accounts.yaml and
# pipelines/orders.yaml on this test's own topics, database and port), plentiful stock, the
# simulated provider declining orders over 1000.00 and failing 20% of its tries transiently, and a
# load generator placing 600 orders over ~75 s while the test SIGKILLs and restarts orderflowd,
# restarts the Kafka broker, stops MariaDB for 30 s, and stops Redis for good. Requests that fail
# during an outage are fine; every order that got a 202 must end terminal (within 3 minutes) and
# tools/check-orders.sh must pass on them.
# shellcheck source-path=SCRIPTDIR source=kafkalib.bash
source "$(dirname "$0")/kafkalib.bash"
saga_setup
# Whatever happens, the shared services are left running for the next test.
restore() {
  bash "$SERVICES" status mariadb >/dev/null 2>&1 || bash "$SERVICES" start mariadb >/dev/null || true
  bash "$SERVICES" status kafka >/dev/null 2>&1 || bash "$SERVICES" start kafka >/dev/null || true
  bash "$SERVICES" status redis >/dev/null 2>&1 || bash "$SERVICES" start redis >/dev/null || true
}
trap 'restore; drop_db; cleanup' EXIT
t0=$SECONDS
say() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*"; }
export ORDERFLOW_JWT_KEY_FILE=$TMP/secret ORDERFLOW_JWT_ISSUER=https://shop.test ORDERFLOW_JWT_AUDIENCE=shop-api
export ORDERFLOW_PAYMENT_PROVIDER=simulated ORDERFLOW_PAYMENT_DECLINE_OVER=100000

# pipelines/orders.yaml under this test's own pipeline name and topics, the provider slower and
# failing transiently.
n="faults-$RUN_ID"
sed -E -e "s/^pipeline: orders$/pipeline: $n/" \
  -e "s/(^|[^A-Za-z0-9_.-])(orders\.(placed|status|dlq)|inventory\.(events|commands)|payment\.(events|commands))\b/\1$n.\2/g" \
  -e 's/^( +)decline_over_cents: (.*)$/\1decline_over_cents: \2\n\1transient_failure_rate: 0.2\n\1latency: 50ms/' \
  "$OF_SOURCE_DIR/pipelines/orders.yaml" >"$TMP/orders.yaml"
grep -q "inputs: \[$n.orders.placed, $n.inventory.commands\]" "$TMP/orders.yaml" || fail "renaming the topics of pipelines/orders.yaml"
grep -q "transient_failure_rate: 0.2" "$TMP/orders.yaml" || fail "setting the provider's failure rate"
saga_host "$TMP/host.yaml" "$port" "$OF_SOURCE_DIR/pipelines/accounts.yaml" "$TMP/orders.yaml" --pool 16 --rate 5000
start_daemon d1 "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
TOKEN_TTL=30m

admin=$(tok ops admin)
for p in "BOOK-1 Book 2500 100000" "LAPTOP-1 Laptop 40000 100000"; do
  read -r sku name price stock <<<"$p"
  req POST /api/v1/products "$(product "$sku" "$name" "$price" EUR "$stock")" "$admin"
  [ "$code" = 201 ] || fail "create $sku: $code $body"
  echo "$sku $stock" >>"$TMP/initial"
done
for i in $(seq 1 10); do tok "cust-$i" customer; done >"$TMP/tokens"

# The load: 600 orders on a schedule of one every 125 ms from 8 threads; the ids that got a 202
# go to $TMP/ids as they come, a summary of the answers to $TMP/load.out at the end. Orders of up
# to 3 books and up to 3 laptops: those over 1000.00 (3 laptops) are declined.
python3 - "$BASE" "$TMP/tokens" "$TMP/ids" >"$TMP/load.out" 2>&1 <<'PY' &
import collections, http.client, json, random, sys, threading, time, urllib.parse
base, tokens, out = sys.argv[1], open(sys.argv[2]).read().split(), sys.argv[3]
u = urllib.parse.urlsplit(base)
TOTAL, PERIOD, THREADS = 600, 0.125, 8
lock = threading.Lock()
codes = collections.Counter()
ids = open(out, "a", buffering=1)
t0 = time.monotonic()
def worker(k):
    rnd = random.Random(k)
    conn = None
    for i in range(k, TOTAL, THREADS):
        delay = t0 + i * PERIOD - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        items = [{"sku": s, "quantity": rnd.randint(1, 3)} for s in ("BOOK-1", "LAPTOP-1") if rnd.random() < 0.6]
        items = items or [{"sku": "BOOK-1", "quantity": 1}]
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            conn.request("POST", "/api/v1/orders", json.dumps({"items": items}),
                         {"Authorization": "Bearer " + tokens[i % len(tokens)], "Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            key = str(r.status)
            if r.status == 202:
                with lock:
                    ids.write(json.loads(body)["order_id"] + "\n")
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:
            key = type(e).__name__
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            codes[key] += 1
threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("answers:", " ".join(f"{k}={v}" for k, v in sorted(codes.items())), f"in {time.monotonic() - t0:.0f} s")
PY
load=$!
PIDS+=("$load")
say "load started (600 orders over ~75 s)"
accepted() { sort -u "$TMP/ids" 2>/dev/null | grep -c . || true; }

sleep 8
say "SIGKILL orderflowd ($(accepted) orders accepted so far)"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
start_daemon d2 "$TMP/host.yaml"
say "orderflowd restarted"

sleep 5
say "restarting the Kafka broker"
bash "$SERVICES" restart kafka >/dev/null || fail "restarting Kafka"
say "Kafka is back"

sleep 5
say "stopping MariaDB for 30 s ($(accepted) accepted so far)"
bash "$SERVICES" stop mariadb >/dev/null || fail "stopping MariaDB"
sleep 30
kill -0 "$DAEMON_PID" 2>/dev/null || fail "orderflowd died while the database was away"
bash "$SERVICES" start mariadb >/dev/null || fail "starting MariaDB"
say "MariaDB is back"

sleep 3
say "stopping Redis for good"
bash "$SERVICES" stop redis --keep-data >/dev/null || fail "stopping Redis"

wait "$load" || fail "the load generator failed"
say "load done: $(cat "$TMP/load.out"); $(accepted) distinct ids accepted"
[ "$(accepted)" -ge 100 ] || fail "only $(accepted) orders were accepted"
kill -0 "$DAEMON_PID" 2>/dev/null || fail "orderflowd is not running after the faults"

# Until every accepted order is terminal (bounded).
sort -u "$TMP/ids" >"$TMP/ids.sorted"
{
  echo "CREATE TEMPORARY TABLE ids (id CHAR(36) COLLATE utf8mb4_bin PRIMARY KEY);"
  sed 's/.*/INSERT INTO ids VALUES ('"'&'"');/' "$TMP/ids.sorted"
  echo "SELECT COUNT(*) FROM ids c LEFT JOIN orders o ON o.id = c.id
    WHERE o.status IS NULL OR o.status NOT IN ('CONFIRMED','REJECTED','CANCELLED');"
} >"$TMP/open.sql"
t1=$SECONDS deadline=$((SECONDS + 180)) open=-1
while [ $SECONDS -lt $deadline ]; do
  open=$(sql -D "$db" <"$TMP/open.sql" 2>/dev/null) || open="? (MariaDB did not answer)"
  [ "$open" = 0 ] && break
  [ $(((SECONDS - t1) % 10)) = 0 ] && say "$open accepted order(s) not terminal yet"
  sleep 1
done
if [ "$open" = 0 ]; then
  say "every accepted order terminal $((SECONDS - t1)) s after the load"
else
  fail "$open accepted order(s) not terminal 180 s after the load"
fi
say "statuses: $(sql -D "$db" -e "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status" | tr '\t\n' ' ')"

"$OF_SOURCE_DIR/tools/check-orders.sh" --host "$OF_MYSQL_HOST" --port "$OF_MYSQL_PORT" --user "$OF_MYSQL_USER" \
  --password-env OF_MYSQL_PASSWORD --database "$db" --orders "$TMP/ids.sorted" --initial "$TMP/initial" ||
  fail "tools/check-orders.sh"
for t in "$n.orders.dlq" "$n.orders.placed.dlq" "$n.inventory.events.dlq"; do
  d=$(kcat -C -b "$BOOT" -t "$t" -o beginning -e -q -f '%k\n' 2>/dev/null | wc -l)
  [ "$d" = 0 ] || say "note: $d dead letter(s) in $t"
done
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
say "total"
finish
