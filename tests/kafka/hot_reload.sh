#!/usr/bin/env bash
# Hot reload (SIGHUP) under a steady stream of events: in -> relay (tap) -> mid -> sink (tap,
# records every event it finishes). While events flow, four reloads:
#   1. stages are added (audit, on mid; auth with a route): relay and sink keep running
#      untouched, and the gateway serves the new route behind the new authenticator;
#   2. the sink's config changes (its record tag): only the sink is drained and replaced;
#   3. a broken file: refused, the old pipeline keeps running, /readyz says why (still ready);
#   4. three SIGHUPs in a row with the file fixed (the sink's tag again): coalesced, the last
#      file wins.
# Afterwards every event was recorded by the sink exactly once, in order per key (none lost by a
# drain, none taken twice by the successor), and the added stage saw every event.
source "$(dirname "$0")/kafkalib.bash"
with_database # the auth stage added by the first reload keeps its users there
trap 'drop_db; cleanup' EXIT
port=$(free_port)
n="reload-$RUN_ID"
KEYS=6
SEQS=150

# pipeline VERSION: writes $TMP/p.yaml.
pipeline() {
  local sink_tag=$1 with_audit=$2
  {
    cat <<YAML
pipeline: $n
topics:
  $n.in: { partitions: 4, external: true }
  $n.mid: { partitions: 4 }
  $n.out: { partitions: 1 }
  $n.audited: { partitions: 1 }
stages:
  - name: relay
    plugin: tap
    inputs: [$n.in]
    outputs: { out: $n.mid }
    concurrency: 3
    config: { tag: relay, delay: 5ms }
  - name: sink
    plugin: tap
    inputs: [$n.mid]
    outputs: { out: $n.out }
    concurrency: 2
    config: { tag: $sink_tag, record: "$TMP/records", delay: 5ms }
YAML
    if [ "$with_audit" = 1 ]; then
      cat <<YAML
  - name: audit
    plugin: tap
    inputs: [$n.mid]
    outputs: { out: $n.audited }
    config: { tag: audit, record: "$TMP/audit", forward: false }
  - name: auth
    plugin: auth
    config: { issuer: https://shop.test, audience: shop-api, key_file: "$TMP/secret" }
routes:
  - { method: GET, path: /api/v1/users/me, handler: auth.me }
YAML
    fi
  } >"$TMP/p.yaml.new"
  mv "$TMP/p.yaml.new" "$TMP/p.yaml"
}

head -c 48 /dev/urandom | base64 -w0 >"$TMP/secret"
chmod 600 "$TMP/secret"
pipeline sink 0
host_config "$TMP/host.yaml" "$TMP/p.yaml"
sed -i "s|plugin_dirs: \[ \"$OF_TEST_PLUGIN_DIR/tap\" \]|plugin_dirs: [ \"$OF_TEST_PLUGIN_DIR/tap\", \"$OF_BUILD_PLUGIN_DIR\" ]|" "$TMP/host.yaml"
cat >>"$TMP/host.yaml" <<YAML
http: { listen: "127.0.0.1:$port" }
mysql: { host: "$OF_MYSQL_HOST", port: $OF_MYSQL_PORT, user: "$OF_MYSQL_USER", password: "\${OF_MYSQL_PASSWORD}", database: "$db" }
YAML
start_daemon d "$TMP/host.yaml"
D=$DAEMON_PID
[ "$failures" = 0 ] || finish

# The stream: SEQS rounds of KEYS events, a round every 50 ms or so (about 8 s in all).
(
  for s in $(seq 0 $((SEQS - 1))); do
    produce "$n.in" "$s" $((s + 1)) "$KEYS"
    sleep 0.03
  done
) &
PRODUCER=$!
PIDS+=("$PRODUCER")

reloads=0
# reload: one SIGHUP, then waits for its outcome line in the log.
reload() {
  reloads=$((reloads + 1))
  kill -HUP "$D"
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(grep -cE 'reload: [0-9]+ stages? kept running|reload failed' "$TMP/d.log")" -ge "$reloads" ] && return 0
    sleep 0.1
  done
  fail "reload $reloads: no outcome in the log"
}
last_outcome() { grep -E 'reload: [0-9]+ stages? kept running|reload failed' "$TMP/d.log" | tail -n 1; }
readyz() { curl -s "http://127.0.0.1:$port/readyz"; }

http_code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$1"; }
[ "$(http_code /api/v1/users/me)" = 404 ] || fail "a route before it was configured"
sleep 1.5
# 1. add stages (and a route served by one of them)
pipeline sink 1
reload
last_outcome | grep -q "2 stages kept running, 0 stopped, 2 started" || fail "adding a stage: $(last_outcome)"
[ "$(http_code /api/v1/users/me)" = 401 ] || fail "the added route is not served (or not behind the added authenticator): $(http_code /api/v1/users/me)"
grep -q "relay: reload: draining\|sink: reload: draining" "$TMP/d.log" && fail "adding a stage drained relay or sink"

sleep 1.5
# 2. change the sink's config
pipeline sink2 1
reload
last_outcome | grep -q "3 stages kept running, 1 stopped, 1 started" || fail "changing the sink: $(last_outcome)"
[ "$(http_code /api/v1/users/me)" = 401 ] || fail "the route went away with a reload that kept its stage"
grep -q "relay: reload: draining" "$TMP/d.log" && fail "changing the sink drained the relay"
grep -q "sink: reload: draining the stage" "$TMP/d.log" || fail "the sink was not drained"

sleep 1
# 3. a broken file: refused, nothing changes
cp "$TMP/p.yaml" "$TMP/p.good"
sed -i 's/plugin: tap$/plugin: tapp/' "$TMP/p.yaml"
reload
last_outcome | grep -q "reload failed" || fail "a broken file was not refused: $(last_outcome)"
grep -q "did you mean 'tap'" "$TMP/d.log" || fail "the refusal does not say what is wrong"
r=$(readyz)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["status"] == "ready", d
c = d["checks"]["config"]
assert c["status"] == "degraded" and "error" in c["detail"], c
' "$r" || fail "/readyz after a failed reload: $r"

sleep 1
# 4. three signals in a row, the file fixed in between: the last file wins
cp "$TMP/p.good" "$TMP/p.yaml"
kill -HUP "$D"
pipeline sink3 1
kill -HUP "$D"
kill -HUP "$D"
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  grep -q "^sink3 " "$TMP/records" 2>/dev/null && break
  sleep 0.2
done
grep -q "^sink3 " "$TMP/records" || fail "the last file's sink (tag sink3) never ran"
r=$(readyz)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert "config" not in d["checks"], d
' "$r" || fail "/readyz still reports the failed reload after a good one: $r"

wait "$PRODUCER" || fail "the producer failed"
wait_records "$TMP/records" $((KEYS * SEQS)) 60 || fail "the sink recorded $(distinct_records "$TMP/records") of $((KEYS * SEQS)) events"
check_complete_in_order "$TMP/records" "$SEQS" "$KEYS"
total=$(wc -l <"$TMP/records")
[ "$total" = $((KEYS * SEQS)) ] || fail "the sink recorded $total lines for $((KEYS * SEQS)) events: some were processed twice"
for tag in sink sink2 sink3; do
  grep -q "^$tag " "$TMP/records" || fail "no event recorded under tag $tag"
done
wait_records "$TMP/audit" $((KEYS * SEQS)) 30 || fail "the added stage saw $(distinct_records "$TMP/audit") of $((KEYS * SEQS)) events"
kill -TERM "$D"
wait "$D" 2>/dev/null || true
grep -q "stopped" "$TMP/d.log" || fail "no clean stop after the reloads"
finish
