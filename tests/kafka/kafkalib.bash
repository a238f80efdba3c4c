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
# Process groups to kill whole (a program started with setsid that forks helpers, chromium).
PGROUPS=()
failures=0

cleanup() {
  for g in "${PGROUPS[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$failures" != 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
    for f in "$TMP"/*.log; do
      [ -f "$f" ] || continue
      # Warnings and errors first (the tail alone is often the test's own polling), then the tail.
      echo "--- $f (warnings and errors, last 60)"
      grep -E '"level":"(warn|error)"| (warn|error) ' "$f" | tail -n 60 || true
      echo "--- $f (tail)"
      tail -n 30 "$f"
    done
  fi
  # KEEP_TMP=1 keeps the folder (logs, configurations, records) and the test's topics for a look
  # after the run. A killed process's children may still be writing for a moment: one more try
  # after it.
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "kept $TMP"
  else
    # The test's topics (their names hold RUN_ID): a development broker would otherwise keep
    # thousands of partitions from earlier runs, which slow it down.
    timeout 30 bash "$SERVICES" kafka-cli topics --bootstrap-server "$BOOT" --delete \
      --topic ".*$RUN_ID.*" >/dev/null 2>&1 || true
    rm -rf "$TMP" 2>/dev/null || { sleep 1; rm -rf "$TMP"; }
  fi
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
# dbtap_pipeline FILE NAME [BATCH]: the write stage commits up to BATCH events a transaction
# (default 1).
dbtap_pipeline() {
  local file=$1 name=$2 batch=${3:-1}
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
    batch: $batch
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

# ---- HTTP, and the order saga on the real services (orders.sh and the tests built like it) ----

# free_port: a TCP port on loopback that nobody listens on (now).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# req METHOD PATH BODY TOKEN [curl args...]: a request to $BASE, with BODY as JSON and TOKEN as the
# bearer token when they are not empty; sets $code, $body and $headers.
req() {
  local method=$1 path=$2 data=$3 token=$4
  shift 4
  local args=(-s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  code=$(curl "${args[@]}" "$@" "$BASE$path")
  body=$(cat "$TMP/body")
  headers=$(cat "$TMP/headers")
}
# expect CODE WHAT: the last req was answered CODE, as problem+json when CODE is an error.
expect() {
  [ "$code" = "$1" ] || fail "$2: got $code, expected $1: $body"
  if [ "$1" -ge 400 ]; then
    grep -qi '^content-type: application/problem+json' <<<"$headers" || fail "$2: not problem+json"
  fi
}
# json EXPR: EXPR (Python, the document as d) of the last answer's body.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1" <<<"$body"; }

# saga_setup: what a test of the order saga needs first: the plugins built by this tree, Redis,
# this test's own database $db (dropped at exit), a free port in $port with its URL in $BASE, and
# a fresh HS256 key in $TMP/secret for the auth stage and tok().
saga_setup() {
  : "${OF_BUILD_PLUGIN_DIR:?}"
  bash "$SERVICES" status redis >/dev/null 2>&1 || bash "$SERVICES" start redis >/dev/null
  with_database
  trap 'drop_db; cleanup' EXIT
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  head -c 48 /dev/urandom | base64 -w0 >"$TMP/secret"
  chmod 600 "$TMP/secret"
}

# tok SUBJECT ROLES: a token the saga's auth stage accepts, valid for $TOKEN_TTL (10m).
tok() {
  "$ORDERFLOW" token --key-file "$TMP/secret" --sub "$1" --roles "$2" --iss https://shop.test \
    --aud shop-api --ttl "${TOKEN_TTL:-10m}"
}

# product SKU NAME PRICE_CENTS CURRENCY STOCK: the body that creates a product.
product() { printf '{"sku":"%s","name":"%s","price_cents":%s,"currency":"%s","initial_stock":%s}' "$@"; }

# status ID [TOKEN]: the order's status as GET answers it (to $admin by default).
status() { req GET "/api/v1/orders/$1" "" "${2:-$admin}"; json 'd["status"]'; }
# wait_status ID STATUS [SECONDS]: waits (60 s) until the order is in STATUS.
wait_status() {
  local deadline=$((SECONDS + ${3:-120})) s=
  while [ $SECONDS -lt $deadline ]; do
    s=$(status "$1")
    [ "$s" = "$2" ] && return 0
    sleep 0.2
  done
  fail "order $1 is $s, not $2"
}

# saga_topics NAME: the names of the saga's topics for the pipeline NAME, in PLACED ICMD IEV PCMD
# PEV STATUS and WH (the notification stage's webhook deliveries).
saga_topics() {
  PLACED=$1.orders.placed
  ICMD=$1.inventory.commands
  IEV=$1.inventory.events
  PCMD=$1.payment.commands
  PEV=$1.payment.events
  STATUS=$1.orders.status
  WH=$1.notification.webhooks
}

# saga_pipeline FILE NAME [OPTION...]: the order saga as the pipeline NAME on its own topics
# (saga_topics): auth (HS256, $TMP/secret), inventory, payment (the simulated provider; customers
# with "-decline-" in their id are declined) and orders, and the routes that create products,
# place an order and read one. Options:
#   --partitions N          of each topic (4)
#   --status-partitions N   of the orders.status topic (--partitions)
#   --concurrency N         of each stage (2)
#   --payment-concurrency N of payment (--concurrency)
#   --latency DURATION      of a simulated charge (200ms)
#   --dead-letters          the stages dead-letter to NAME.STAGE.dlq (the webhook stage excepted)
#   --notification          the notification stage (orders.status -> WH) and the webhook stage
#   --with STAGE LINE       LINE added to STAGE as it is ("config: { ... }"); repeatable
#   --topic LINE            another topic ("NAME: { partitions: 1 }"); repeatable
#   --stage YAML            another stage, a "- name: ..." item indented as the others; repeatable
#   --route ROUTE           another route ("{ method: ..., path: ..., handler: ... }"); repeatable
saga_pipeline() {
  local file=$1 name=$2
  shift 2
  local partitions=4 status_partitions='' concurrency=2 payment_concurrency='' latency=200ms
  local dead_letters=0 notification=0 topics='' stages='' routes=''
  local -A more=()
  while [ $# -gt 0 ]; do
    case $1 in
      --partitions) partitions=$2; shift 2 ;;
      --status-partitions) status_partitions=$2; shift 2 ;;
      --concurrency) concurrency=$2; shift 2 ;;
      --payment-concurrency) payment_concurrency=$2; shift 2 ;;
      --latency) latency=$2; shift 2 ;;
      --dead-letters) dead_letters=1; shift ;;
      --notification) notification=1; shift ;;
      --with) more[$2]+="    $3"$'\n'; shift 3 ;;
      --topic) topics+="  $2"$'\n'; shift 2 ;;
      --stage) stages+="$2"$'\n'; shift 2 ;;
      --route) routes+="  - $2"$'\n'; shift 2 ;;
      *) echo "saga_pipeline: unknown option $1" >&2; return 2 ;;
    esac
  done
  saga_topics "$name"
  local st
  if [ "$dead_letters" = 1 ]; then
    for st in inventory payment orders notification; do
      more[$st]+="    dead_letter: $name.$st.dlq"$'\n'
    done
  fi
  local retry="retry: { max_attempts: 20, initial_backoff: 10ms, max_backoff: 200ms }"
  {
    cat <<YAML
pipeline: $name
topics:
  $PLACED: { partitions: $partitions }
  $ICMD: { partitions: $partitions }
  $IEV: { partitions: $partitions }
  $PCMD: { partitions: $partitions }
  $PEV: { partitions: $partitions }
  $STATUS: { partitions: ${status_partitions:-$partitions} }
YAML
    [ "$notification" = 1 ] && echo "  $WH: { partitions: $partitions }"
    printf '%s' "$topics"
    cat <<YAML
stages:
  - name: auth
    plugin: auth
    config: { issuer: https://shop.test, audience: shop-api, key_file: "$TMP/secret" }
${more[auth]-}  - name: inventory
    plugin: inventory
    inputs: [$PLACED, $ICMD]
    outputs: { events: $IEV }
    concurrency: $concurrency
    $retry
${more[inventory]-}  - name: payment
    plugin: payment
    inputs: [$IEV, $PCMD]
    outputs: { events: $PEV }
    concurrency: ${payment_concurrency:-$concurrency}
    config: { provider: simulated, decline_marker: "-decline-", latency: $latency }
${more[payment]-}  - name: orders
    plugin: orders
    inputs: [$IEV, $PEV]
    outputs: { placed: $PLACED, status: $STATUS, inventory: $ICMD, payment: $PCMD }
    concurrency: $concurrency
    $retry
YAML
    printf '%s' "${more[orders]-}"
    if [ "$notification" = 1 ]; then
      cat <<YAML
  - name: notification
    plugin: notification
    inputs: [$STATUS]
    outputs: { webhooks: $WH }
    concurrency: $concurrency
    $retry
${more[notification]-}  - name: webhook
    plugin: webhook
    inputs: [$WH]
    breaker: { enabled: false }
YAML
      printf '%s' "${more[webhook]-}"
    fi
    printf '%s' "$stages"
    cat <<YAML
routes:
  - { method: GET, path: /api/v1/users/me, handler: auth.me }
  - { method: POST, path: /api/v1/products, handler: inventory.create_product, roles: [admin] }
  - { method: POST, path: /api/v1/orders, handler: orders.place }
  - { method: GET, path: "/api/v1/orders/{id}", handler: orders.get }
YAML
    printf '%s' "$routes"
  } >"$file"
}

# saga_host FILE PORT PIPELINE... [OPTION...]: a host configuration (host_config) with the plugins
# built by this tree, this test's database $db, Redis under this run's own key prefix, and HTTP on
# 127.0.0.1:PORT, rate-limited per address. Options:
#   --pool N       MySQL connections (8)
#   --rate N       requests a second per address, and the burst (1000)
#   --tap          the test plugin tap too
#   --no-redis     no Redis
#   --http LINE    LINE added to the http: section ("threads: 12"); repeatable
saga_host() {
  local file=$1 port=$2
  shift 2
  local pool=8 rate=1000 dirs="\"$OF_BUILD_PLUGIN_DIR\"" redis=1 http='' pipelines=()
  while [ $# -gt 0 ]; do
    case $1 in
      --pool) pool=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --tap) dirs+=", \"$OF_TEST_PLUGIN_DIR/tap\""; shift ;;
      --no-redis) redis=0; shift ;;
      --http) http+="  $2"$'\n'; shift 2 ;;
      --*) echo "saga_host: unknown option $1" >&2; return 2 ;;
      *) pipelines+=("$1"); shift ;;
    esac
  done
  host_config "$file" "${pipelines[@]}"
  sed -i "s|^plugin_dirs: .*|plugin_dirs: [ $dirs ]|" "$file"
  {
    echo "mysql: { host: \"$OF_MYSQL_HOST\", port: $OF_MYSQL_PORT, user: \"$OF_MYSQL_USER\", password: \"\${OF_MYSQL_PASSWORD}\", database: \"$db\", pool_size: $pool }"
    [ "$redis" = 1 ] && echo "redis: { host: \"$OF_REDIS_HOST\", port: $OF_REDIS_PORT, key_prefix: \"t$RUN_ID:\" }"
    echo "http:"
    echo "  listen: \"127.0.0.1:$port\""
    echo "  rate_limit: { per_address: $rate/s, burst: $rate }"
    printf '%s' "$http"
  } >>"$file"
}
