#!/usr/bin/env bash
# Metrics and logs of a daemon running the order saga (set-up as orders.sh): N orders placed, M of
# them rejected for too little stock, K poison events dead-lettered by inventory. Checked: the
# /metrics numbers agree with what happened (HTTP requests, stage counters against the events on
# the topics, dead letters, the inventory plugin's own counter, gauges), `promtool check metrics`
# accepts the exposition, the packaged alert rules and scrape configuration pass promtool, a real
# Prometheus server scraping the daemon answers a query for the stage counters, the JSON log is
# one object per line, SIGUSR1 switches to debug, and one order's trace_id is in the log lines of
# every stage it went through (orders, inventory, payment).
source "$(dirname "$0")/kafkalib.bash"
command -v promtool >/dev/null && command -v prometheus >/dev/null || {
  echo "FAIL: promtool and prometheus are needed (Debian package prometheus; scripts/deps.sh)"
  exit 1
}
saga_setup

n="obs-$RUN_ID"
saga_pipeline "$TMP/p.yaml" "$n" --partitions 2 --latency 50ms --dead-letters
saga_host "$TMP/host.yaml" "$port" "$TMP/p.yaml"
# The configuration says text at info; the command line asks for JSON.
LOG="$TMP/d1.log"
"$ORDERFLOWD" -c "$TMP/host.yaml" --log-format json >>"$LOG" 2>&1 &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
deadline=$((SECONDS + 60))
until grep -qF '"msg":"orderflowd ' "$LOG" 2>/dev/null; do
  kill -0 "$DAEMON_PID" 2>/dev/null && [ $SECONDS -lt $deadline ] || { fail "the daemon did not start"; finish; }
  sleep 0.2
done

# SIGUSR1: info -> debug (the runner then logs every try of every event).
kill -USR1 "$DAEMON_PID"
wait_for "$LOG" "SIGUSR1: log level info -> debug" 10 || fail "SIGUSR1 did not switch to debug"

admin=$(tok ops admin)
alice=$(tok alice customer)
req POST /api/v1/products "$(product WIDGET Widget 500 EUR 10)" "$admin"; [ "$code" = 201 ] || fail "create WIDGET: $code $body"
req POST /api/v1/products "$(product RARE Rare 9900 EUR 1)" "$admin"; [ "$code" = 201 ] || fail "create RARE: $code $body"

# ---- N orders, M rejected for too little stock; one with a caller's traceparent ----
N=4 M=1 K=2
ids=()
tp_trace=4bf92f3577b34da6a3ce929d0e0e4736
req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":1}]}' "$alice" \
  -H "traceparent: 00-$tp_trace-00f067aa0ba902b7-01"
[ "$code" = 202 ] || fail "place 1: $code $body"
o1=$(json 'd["order_id"]')
ids+=("$o1")
for i in 2 3; do
  req POST /api/v1/orders '{"items":[{"sku":"WIDGET","quantity":1}]}' "$alice"
  [ "$code" = 202 ] || fail "place $i: $code $body"
  ids+=("$(json 'd["order_id"]')")
done
req POST /api/v1/orders '{"items":[{"sku":"RARE","quantity":3}]}' "$alice"
[ "$code" = 202 ] || fail "place RARE: $code $body"
orare=$(json 'd["order_id"]')
for id in "${ids[@]}"; do wait_status "$id" CONFIRMED; done
wait_status "$orare" REJECTED

# ---- K poison events straight on inventory's input: dead-lettered ----
for i in $(seq 1 $K); do echo "poison-$i|not an event"; done | kcat -P -b "$BOOT" -t "$PLACED" -K '|'
deadline=$((SECONDS + 30))
until [ "$(kcat -C -b "$BOOT" -t "$n.inventory.dlq" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c poison)" = "$K" ] || [ $SECONDS -gt $deadline ]; do sleep 0.3; done
[ "$(kcat -C -b "$BOOT" -t "$n.inventory.dlq" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c poison)" = "$K" ] || fail "the poison events were not dead-lettered"

# ---- /metrics: the numbers agree with what happened ----
count_topic() { kcat -C -b "$BOOT" -t "$1" -o beginning -e -q -f '.\n' 2>/dev/null | wc -l; }
# count_type TOPIC TYPE...: the topic's events whose ce_type is one of the TYPEs.
count_type() {
  local t=$1
  shift
  kcat -C -b "$BOOT" -t "$t" -o beginning -e -q -f '%h\n' 2>/dev/null |
    python3 -c 'import sys; ts = set(sys.argv[1:]); print(sum(1 for l in sys.stdin if any(h.startswith("ce_type=") and h[8:] in ts for h in l.strip().split(","))))' "$@"
}
scrape() { curl -sf -D "$TMP/mheaders" -o "$TMP/metrics" "$BASE/metrics"; }
# metric 'NAME{label="v",...}': the value of the one series with those labels (sum if several).
metric() {
  python3 - "$1" "$TMP/metrics" <<'PY'
import re, sys
want, path = sys.argv[1], sys.argv[2]
m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?', want)
name, sel = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
total, found = 0.0, False
for line in open(path):
    if line.startswith("#") or not line.strip():
        continue
    mm = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)\n?', line)
    if not mm or mm.group(1) != name:
        continue
    labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', mm.group(2) or ""))
    if all(labels.get(k) == v for k, v in sel.items()):
        total += float(mm.group(3))
        found = True
print(("%g" % total) if found else "absent")
PY
}
expect_metric() { # expect_metric SERIES VALUE
  local got
  got=$(metric "$1")
  [ "$got" = "$2" ] || fail "$1 = $got, expected $2"
}
# Everything settles: every stage's received events equal what its input topics hold.
P="pipeline=\"$n\""
deadline=$((SECONDS + 30))
while :; do
  recv_inventory=$(( $(count_topic "$PLACED") + $(count_topic "$ICMD") ))
  recv_payment=$(( $(count_topic "$IEV") + $(count_topic "$PCMD") ))
  recv_orders=$(( $(count_topic "$IEV") + $(count_topic "$PEV") ))
  scrape || fail "GET /metrics failed"
  [ "$(metric "orderflow_stage_events_received_total{$P,stage=\"inventory\"}")" = "$recv_inventory" ] &&
    [ "$(metric "orderflow_stage_events_received_total{$P,stage=\"payment\"}")" = "$recv_payment" ] &&
    [ "$(metric "orderflow_stage_events_received_total{$P,stage=\"orders\"}")" = "$recv_orders" ] &&
    [ "$(metric "orderflow_stage_in_flight{$P}")" = 0 ] && break
  [ $SECONDS -gt $deadline ] && break
  sleep 0.5
done
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$TMP/mheaders" || fail "/metrics content type: $(cat "$TMP/mheaders")"
for st in inventory payment orders; do
  v=recv_$st
  expect_metric "orderflow_stage_events_received_total{$P,stage=\"$st\",plugin=\"$st\"}" "${!v}"
done
# N placed (202), the products created (201), the GETs of the polling loops (200).
expect_metric "orderflow_http_requests_total{route=\"/api/v1/orders\",method=\"POST\",status_class=\"2xx\"}" "$N"
expect_metric "orderflow_http_requests_total{route=\"/api/v1/products\",method=\"POST\",status_class=\"2xx\"}" 2
expect_metric "orderflow_http_request_duration_seconds_count{route=\"/api/v1/orders\",method=\"POST\"}" "$N"
[ "$(metric "orderflow_http_requests_total{route=\"/api/v1/orders/{id}\",method=\"GET\",status_class=\"2xx\"}")" != absent ] || fail "GET /api/v1/orders/{id} not counted under its route pattern"
grep -q "route=\"/api/v1/orders/$o1\"" "$TMP/metrics" && fail "a raw path is a label value"
# M rejected: the inventory plugin's own counter; the saga's rejections are no dead letters.
expect_metric "orderflow_plugin_inventory_rejected_total{$P,stage=\"inventory\",plugin=\"inventory\"}" "$M"
expect_metric "orderflow_plugin_inventory_reserved_total{$P,stage=\"inventory\"}" $((N - M))
[ "$(sql -D "$db" -e "SELECT COUNT(*) FROM orders WHERE status = 'REJECTED'")" = "$M" ] || fail "rejected orders in MySQL"
# K dead letters, all at inventory, rejected there; nothing retried to exhaustion.
expect_metric "orderflow_stage_events_dead_lettered_total{$P}" "$K"
expect_metric "orderflow_stage_events_dead_lettered_total{$P,stage=\"inventory\"}" "$K"
expect_metric "orderflow_stage_events_rejected_total{$P,stage=\"inventory\"}" "$K"
expect_metric "orderflow_stage_events_processed_total{$P,stage=\"inventory\"}" $((recv_inventory - K))
# payment and orders act on some of their topics' types (their plugins' `accepts`): the host
# acknowledges the others without process().
acc_payment=$(( $(count_type "$IEV" inventory.reserved) + $(count_type "$PCMD" payment.refund) ))
acc_orders=$(( $(count_type "$IEV" inventory.reserved inventory.rejected) +
  $(count_type "$PEV" payment.captured payment.declined) ))
[ "$acc_payment" -gt 0 ] && [ "$acc_payment" -lt "$recv_payment" ] || fail "payment accepts $acc_payment of $recv_payment"
expect_metric "orderflow_stage_events_processed_total{$P,stage=\"payment\"}" "$acc_payment"
expect_metric "orderflow_stage_processing_seconds_count{$P,stage=\"payment\"}" "$acc_payment"
expect_metric "orderflow_stage_events_skipped_total{$P,stage=\"payment\"}" $((recv_payment - acc_payment))
expect_metric "orderflow_stage_events_processed_total{$P,stage=\"orders\"}" "$acc_orders"
expect_metric "orderflow_stage_events_skipped_total{$P,stage=\"orders\"}" $((recv_orders - acc_orders))
expect_metric "orderflow_stage_events_skipped_total{$P,stage=\"inventory\"}" 0
expect_metric "orderflow_stage_breaker_state{$P,stage=\"orders\",state=\"closed\"}" 1
expect_metric "orderflow_stage_breaker_state{$P,stage=\"orders\",state=\"open\"}" 0
expect_metric "orderflow_stage_in_flight{$P}" 0
expect_metric "orderflow_stage_consumer_lag{$P,stage=\"inventory\"}" 0
[ "$(metric "orderflow_stage_consumer_lag{$P,stage=\"inventory\",topic=\"$PLACED\"}")" != absent ] || fail "no consumer lag for $PLACED"
expect_metric "orderflow_ready" 1
expect_metric "orderflow_build_info" 1
expect_metric "orderflow_ws_connections" 0
expect_metric "orderflow_mysql_pool_size" 8
[ "$(metric 'orderflow_outbox_unpublished')" != absent ] || fail "no outbox backlog"
[ "$(metric 'orderflow_mysql_pool_connections{state="in_use"}')" != absent ] || fail "no MySQL pool gauge"
[ "$(metric 'orderflow_redis_errors_total')" != absent ] || fail "no Redis errors counter"
python3 - "$TMP/metrics" <<'PY' || fail "process metrics"
import re, sys
t = open(sys.argv[1]).read()
v = lambda n: float(re.search(r'^' + n + r' (\S+)$', t, re.M).group(1))
assert v("orderflow_process_resident_memory_bytes") > 1e6
assert v("orderflow_process_threads") >= 10
assert v("orderflow_process_open_fds") >= 5
assert 0 < v("orderflow_uptime_seconds") < 3600
assert re.search(r'^orderflow_build_info\{version="[^"]+",abi="\d+\.\d+"\} 1$', t, re.M)
PY
promtool check metrics <"$TMP/metrics" >"$TMP/promtool.out" 2>&1 || fail "promtool check metrics: $(head -20 "$TMP/promtool.out")"
promtool check rules "$OF_SOURCE_DIR/packaging/prometheus/alerts.yml" >/dev/null || fail "promtool check rules alerts.yml"
promtool check config "$OF_SOURCE_DIR/packaging/prometheus/orderflow.yml" >/dev/null || fail "promtool check config orderflow.yml"

# ---- a real Prometheus server scrapes the daemon ----
pport=$(free_port)
cat >"$TMP/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: orderflow
    static_configs: [ { targets: [ "127.0.0.1:$port" ] } ]
YAML
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address="127.0.0.1:$pport" >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
q="orderflow_stage_events_received_total{pipeline=\"$n\"}"
deadline=$((SECONDS + 60)) answer=
while [ $SECONDS -lt $deadline ]; do
  answer=$(curl -sf -G "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$q" 2>/dev/null || true)
  python3 - "$answer" <<'PY' 2>/dev/null && break
import json, sys
d = json.loads(sys.argv[1])
got = {r["metric"]["stage"] for r in d["data"]["result"]}
assert {"inventory", "payment", "orders"} <= got, got
PY
  sleep 1
done
python3 - "$answer" "$recv_inventory" <<'PY' || fail "Prometheus' answer: $answer"
import json, sys
d = json.loads(sys.argv[1])
assert d["status"] == "success", d
r = {x["metric"]["stage"]: x for x in d["data"]["result"]}
assert r["inventory"]["value"][1] == sys.argv[2], r["inventory"]
assert r["inventory"]["metric"]["plugin"] == "inventory" and r["inventory"]["metric"]["job"] == "orderflow", r
PY
up=$(curl -sf -G "http://127.0.0.1:$pport/api/v1/query" --data-urlencode 'query=up{job="orderflow"}' || true)
grep -q '"value":\[[0-9.]*,"1"\]' <<<"$up" || fail "Prometheus does not see the target up: $up"

# ---- the Grafana dashboard: every panel's query is valid PromQL for this server and names only
# metric families the daemon exposes ----
python3 - "$OF_SOURCE_DIR/packaging/grafana/orderflow.json" "$TMP/metrics" "$pport" <<'PY' || fail "packaging/grafana/orderflow.json"
import json, re, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
exposed = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", open(sys.argv[2]).read(), re.M)}
suffix = re.compile(r"_(bucket|sum|count)$")
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
assert len(exprs) >= 15, len(exprs)
for e in exprs:
    for name in set(re.findall(r"\b(orderflow_[a-z0-9_]+)", e)):
        if name not in exposed and suffix.sub("", name) not in exposed:
            sys.exit(f"{name} (in {e}) is not exposed by the daemon")
    q = e.replace("$pipeline", ".*")
    url = f"http://127.0.0.1:{sys.argv[3]}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        d = json.load(urllib.request.urlopen(url, timeout=5))
    except urllib.error.HTTPError as err:
        sys.exit(f"Prometheus refuses {q}: {err.read()[:300]}")
    assert d["status"] == "success", (q, d)
print(f"grafana: {len(exprs)} queries checked")
PY

# ---- logs: JSON lines, one order followed by its trace_id through every stage ----
python3 - "$LOG" <<'PY' || fail "the log is not one JSON object per line"
import json, sys
for i, line in enumerate(open(sys.argv[1]), 1):
    d = json.loads(line)
    assert {"time", "level", "msg"} <= d.keys(), (i, d)
PY
python3 - "$LOG" "$tp_trace" "$o1" <<'PY' || fail "the trace of order $o1 through the stages"
import json, sys
path, trace, order = sys.argv[1:]
lines = [json.loads(l) for l in open(path)]
mine = [d for d in lines if d.get("trace_id") == trace]
stages = {d.get("stage") for d in mine}
assert {"orders", "inventory", "payment"} <= stages, stages
# The caller's traceparent was continued, and the stages' lines for it carry the order's key.
placed = [d for d in mine if f"order {order} placed" in d["msg"]]
assert placed, "no 'placed' line with the caller's trace id"
assert any(d.get("key") == order for d in mine if d.get("stage") == "inventory"), "no key"
# No other order shares it.
others = {d.get("key") for d in mine if d.get("key")}
assert others == {order}, others
PY
# An order placed without a traceparent gets a fresh trace, continued too.
o2=${ids[1]}
t2=$(python3 -c '
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if "order %s placed" % sys.argv[2] in d["msg"]:
        print(d.get("trace_id", "")); break' "$LOG" "$o2")
[ -n "$t2" ] && [ "$t2" != "$tp_trace" ] || fail "order $o2 has no trace id of its own: '$t2'"
[ "$(grep -F "\"trace_id\":\"$t2\"" "$LOG" | grep -c '"stage":"payment"')" -ge 1 ] || fail "order $o2's trace does not reach payment"
grep -qF "$admin" "$LOG" && fail "a bearer token is in the log"
grep -qF "$(cat "$TMP/secret")" "$LOG" && fail "the signing secret is in the log"

kill -USR1 "$DAEMON_PID"
wait_for "$LOG" "SIGUSR1: log level debug -> info" 10 || fail "SIGUSR1 did not switch back to info"
grep '"level":"error"' "$LOG" | head -3 | grep -q . && fail "errors in the log: $(grep '"level":"error"' "$LOG" | head -3)"
# OF_OBS_KEEP=DIR keeps the scrape and the log there (for looking at them).
[ -n "${OF_OBS_KEEP:-}" ] && cp "$TMP/metrics" "$LOG" "$TMP/promtool.out" "$OF_OBS_KEEP/"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
finish
