# Helpers for the tests against the real Kafka broker (sourced). The broker is the project's
# own (scripts/services.sh); each test uses its own topics and groups, so tests never see each
# other's events.
set -euo pipefail
: "${ORDERFLOWD:?}" "${ORDERFLOW:?}" "${OF_SOURCE_DIR:?}" "${OF_TEST_PLUGIN_DIR:?}"
SERVICES="$OF_SOURCE_DIR/scripts/services.sh"
bash "$SERVICES" status >/dev/null 2>&1 || bash "$SERVICES" start kafka >/dev/null
eval "$(bash "$SERVICES" env)"
BOOT=${OF_KAFKA_BOOTSTRAP:?}
TMP=$(mktemp -d)
RUN_ID="t$(date +%s%N | tail -c 9)$$"
PIDS=()
failures=0

cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$failures" != 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
    for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

finish() {
  if [ "$failures" != 0 ]; then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "all checks passed"
}

# host_config FILE PIPELINE...: a host configuration on this broker with fast failover.
host_config() {
  local file=$1
  shift
  {
    echo "plugin_dirs: [ \"$OF_TEST_PLUGIN_DIR/tap\" ]"
    echo "pipelines:"
    for p in "$@"; do echo "  - \"$p\""; done
    echo "bus:"
    echo "  type: kafka"
    echo "  kafka:"
    echo "    bootstrap: \"$BOOT\""
    echo "    properties:"
    echo "      session.timeout.ms: 6000"
    echo "      heartbeat.interval.ms: 500"
    echo "      reconnect.backoff.max.ms: 1000"
    echo "      topic.metadata.refresh.interval.ms: 2000"
    echo "log: { level: info }"
    echo "drain_timeout: 10s"
  } >"$file"
}

# start_daemon NAME CONFIG: starts orderflowd in the background, logging to $TMP/NAME.log;
# sets DAEMON_PID.
start_daemon() {
  "$ORDERFLOWD" -c "$2" >>"$TMP/$1.log" 2>&1 &
  DAEMON_PID=$!
  PIDS+=("$DAEMON_PID")
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    grep -qF running "$TMP/$1.log" 2>/dev/null && return 0
    kill -0 "$DAEMON_PID" 2>/dev/null || break # refused to start: no point waiting
    sleep 0.2
  done
  fail "$1 did not start"
}

# wait_for FILE TEXT SECONDS: waits until FILE contains TEXT.
wait_for() {
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# produce TOPIC FROM TO KEYS: events key-K with payload K:SEQ for SEQ in FROM..TO-1.
produce() {
  local topic=$1 from=$2 to=$3 keys=$4
  python3 - "$from" "$to" "$keys" <<'PY' | kcat -P -b "$BOOT" -t "$topic" -K '|' -z none
import sys
a, b, k = map(int, sys.argv[1:])
for seq in range(a, b):
    for key in range(k):
        print(f"key-{key}|{key}:{seq}")
PY
}

# distinct_records FILE: how many distinct payloads were recorded.
distinct_records() {
  [ -f "$1" ] || { echo 0; return; }
  awk '{print $3}' "$1" | sort -u | wc -l
}

# wait_records FILE N SECONDS: waits until N distinct payloads were recorded.
wait_records() {
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(distinct_records "$1")" -ge "$2" ] && return 0
    sleep 0.3
  done
  return 1
}

# check_complete_in_order FILE SEQS KEYS: every key's payloads K:0..K:SEQS-1 were recorded, and
# each first appears after the one before it (repeats after a crash are allowed).
check_complete_in_order() {
  python3 - "$@" <<'PY' || fail "records incomplete or out of order in $1"
import sys
path, seqs, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
nxt = [0] * keys
for line in open(path):
    tag, key, payload = line.split()
    k, s = map(int, payload.split(":"))
    if s == nxt[k]:
        nxt[k] += 1
    elif s > nxt[k]:
        sys.exit(f"key {k}: {s} before {nxt[k]}")
bad = [k for k in range(keys) if nxt[k] != seqs]
if bad:
    sys.exit(f"keys {bad} incomplete: {[nxt[k] for k in bad]} of {seqs}")
PY
}

# pipeline FILE NAME [TAP2 OPTIONS...]: in -> relay (tap) -> mid -> sink (tap, records).
two_stage_pipeline() {
  local file=$1 name=$2 record=$3 relay_extra=${4:-} sink_extra=${5:-}
  cat >"$file" <<YAML
pipeline: $name
topics:
  $name.in: { partitions: 4, external: true }
  $name.mid: { partitions: 4 }
  $name.sink: { partitions: 1 }
  $name.out: { partitions: 1 }
stages:
  - name: relay
    plugin: tap
    inputs: [$name.in]
    outputs: { out: $name.mid }
    concurrency: 3
    retry: { max_attempts: 3, initial_backoff: 10ms, max_backoff: 100ms }
    config: { tag: relay$relay_extra }
  - name: sink
    plugin: tap
    inputs: [$name.mid]
    outputs: { out: $name.out }
    concurrency: 2
    config: { tag: sink, record: "$record"$sink_extra }
YAML
}

# with_database: starts MariaDB when it is down, creates this test's own database $db (dropped by
# drop_db) and defines sql() for the test's queries.
with_database() {
  bash "$SERVICES" status mariadb >/dev/null 2>&1 || bash "$SERVICES" start mariadb >/dev/null
  eval "$(bash "$SERVICES" env)"
  db="orderflow_t${RUN_ID//[^a-z0-9]/}"
  sql -e "CREATE DATABASE \`$db\`"
}
sql() {
  mariadb -h "$OF_MYSQL_HOST" -P "$OF_MYSQL_PORT" -u "$OF_MYSQL_USER" -p"$OF_MYSQL_PASSWORD" \
    --batch --skip-column-names "$@"
}
drop_db() { sql -e "DROP DATABASE IF EXISTS \`$db\`" || true; }

# dbtap_pipeline FILE NAME: in -> write (dbtap: one row per event) -> written -> sink (tap,
# records to $TMP/records); and the host configuration $TMP/host.yaml with this test's database.
dbtap_pipeline() {
  local file=$1 name=$2
  cat >"$file" <<YAML
pipeline: $name
topics:
  $name.in: { partitions: 4, external: true }
  $name.written: { partitions: 4 }
  $name.out: { partitions: 1 }
stages:
  - name: write
    plugin: dbtap
    inputs: [$name.in]
    outputs: { out: $name.written }
    concurrency: 3
  - name: sink
    plugin: tap
    inputs: [$name.written]
    outputs: { out: $name.out }
    config: { tag: sink, record: "$TMP/records" }
YAML
  host_config "$TMP/host.yaml" "$file"
  cat >>"$TMP/host.yaml" <<YAML
mysql:
  host: "$OF_MYSQL_HOST"
  port: $OF_MYSQL_PORT
  user: "$OF_MYSQL_USER"
  password: "\${OF_MYSQL_PASSWORD}"
  database: "$db"
  pool_size: 4
YAML
}
