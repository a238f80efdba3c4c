#!/usr/bin/env bash
# The order benchmark's standard set, in one command (see README.md "Benchmark" and
# bench/RESULTS.md):
#
#   bash bench/run.sh [--quick] [--soak SECONDS] [--out DIR] [--rates "R1 R2 ..."]
#                     [--step SECONDS] [--max SECONDS] [--connections N] [--no-build] [--keep]
#
# Builds a Release tree (build-bench/), starts the local services (scripts/services.sh), creates
# a database of its own and runs orderflowd with pipelines/accounts.yaml and pipelines/orders.yaml
# on topics of its own, the simulated payment provider without latency or declines, and K
# products with plenty of stock; mints tokens for M customers; then runs bench/of-loadgen:
#
#   sweep   fixed rates, rising, until a step does not hold (the knee: the highest rate whose
#           intake and end-to-end throughput keep up within 5 %, intake p99 <= 200 ms, end-to-end
#           p99 <= 2 s, no error), with two bisection steps between the last good and first bad
#   max     as fast as the connections go
#   scarce  every order on one SKU with stock for a quarter of them (CONFIRMED or REJECTED)
#   soak    70 % of the knee for --soak seconds (default 600), RSS and CPU every second
#
# then tools/check-orders.sh over every order placed, and bench/report.py, which writes
# OUT/<date>-<commit>.json (machine, commit, every run) and the PNG plots. Exit status 1 when
# the load generator recorded an error or the checker failed.
#
# --quick: the CI smoke (tests/kafka/bench_smoke.sh): a few seconds at a low fixed rate, a short
# max run and a short scarce run, the JSON and the checker; no plots. With ORDERFLOWD, ORDERFLOW,
# OF_LOADGEN and OF_BUILD_PLUGIN_DIR set (or --no-build) nothing is built.
set -euo pipefail
umask 022 # plugin files and folders writable by group or others are refused by the loader
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

quick=0 soak=600 out="$root/bench/results" rates="" step=15 maxrun=15 conns=48 build=1 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --soak) soak=$2; shift ;;
    --out) out=$2; shift ;;
    --rates) rates=$2; shift ;;
    --step) step=$2; shift ;;
    --max) maxrun=$2; shift ;;
    --connections) conns=$2; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$rates" ] || rates="50 100 200 400 800 1600 3200 6400 12800 25600"
mkdir -p "$out"
out=$(cd "$out" && pwd)

say() { printf '== %s\n' "$*" >&2; }

# ---- build ----
if [ -n "${ORDERFLOWD:-}" ] && [ -n "${ORDERFLOW:-}" ] && [ -n "${OF_LOADGEN:-}" ] &&
  [ -n "${OF_BUILD_PLUGIN_DIR:-}" ]; then
  build=0
else
  bdir=${OF_BENCH_BUILD_DIR:-$root/build-bench}
  if [ "$build" = 1 ]; then
    say "build (Release, $bdir)"
    [ -f "$bdir/CMakeCache.txt" ] ||
      cmake -S "$root" -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOF_BUILD_TESTS=OFF >/dev/null
    # Only what the benchmark runs: the daemon, the CLI, the load generator and the plugins the
    # pipelines name.
    plugins=$(sed -nE 's/^ *plugin: *([A-Za-z0-9_-]+).*/\1/p' pipelines/orders.yaml pipelines/accounts.yaml | sort -u)
    # shellcheck disable=SC2086
    cmake --build "$bdir" --target orderflowd orderflow of-loadgen $plugins >/dev/null
  fi
  ORDERFLOWD=$bdir/host/orderflowd ORDERFLOW=$bdir/host/orderflow
  OF_LOADGEN=$bdir/bench/of-loadgen OF_BUILD_PLUGIN_DIR=$bdir/plugins
fi
for f in "$ORDERFLOWD" "$ORDERFLOW" "$OF_LOADGEN"; do
  [ -x "$f" ] || { echo "bench/run.sh: $f is missing (build first, or drop --no-build)" >&2; exit 2; }
done

# ---- services, database, topics ----
services=$root/scripts/services.sh
bash "$services" status >/dev/null 2>&1 || { say "services"; bash "$services" start >/dev/null; }
eval "$(bash "$services" env)"
run_id="$(date +%Y%m%d%H%M%S)$$"
db="orderflow_bench_$run_id"
n="bench-$run_id"
work=$(mktemp -d)
sql() {
  mariadb -h "$OF_MYSQL_HOST" -P "$OF_MYSQL_PORT" -u "$OF_MYSQL_USER" -p"$OF_MYSQL_PASSWORD" \
    --batch --skip-column-names "$@"
}
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [ "$keep" = 1 ]; then
    echo "kept: $work, database $db, topics $n.*" >&2
  else
    sql -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
    # The run's topics too: a broker that keeps thousands of partitions from earlier runs spends
    # CPU on them, which the next run would measure.
    timeout 60 bash "$services" kafka-cli topics --bootstrap-server "$OF_KAFKA_BOOTSTRAP" \
      --delete --topic "$n\\..*" >/dev/null 2>&1 ||
      echo "bench/run.sh: deleting the topics $n.* failed" >&2
    rm -rf "$work"
  fi
}
trap cleanup EXIT
sql -e "CREATE DATABASE \`$db\`"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
head -c 48 /dev/urandom | base64 -w0 >"$work/secret"
chmod 600 "$work/secret"
export ORDERFLOW_JWT_KEY_FILE=$work/secret ORDERFLOW_JWT_ISSUER=https://bench.orderflow \
  ORDERFLOW_JWT_AUDIENCE=shop-api
# The simulated provider: no latency, no transient failures, no declines (0 = no limit).
export ORDERFLOW_PAYMENT_PROVIDER=simulated ORDERFLOW_PAYMENT_DECLINE_OVER=0

# pipelines/orders.yaml under this run's own pipeline name and topics (as the tests do).
sed -E -e "s/^pipeline: orders$/pipeline: $n/" \
  -e "s/(^|[^A-Za-z0-9_.-])(orders\.(placed|status|dlq)|inventory\.(events|commands)|payment\.(events|commands)|notification\.webhooks|webhook\.dlq)\b/\1$n.\2/g" \
  "$root/pipelines/orders.yaml" >"$work/orders.yaml"
grep -q "inputs: \[$n.orders.placed, $n.inventory.commands\]" "$work/orders.yaml" ||
  { echo "bench/run.sh: renaming the topics of pipelines/orders.yaml failed" >&2; exit 2; }
http_threads=$((conns + 16))
cat >"$work/host.yaml" <<YAML
plugin_dirs: [ "$OF_BUILD_PLUGIN_DIR" ]
pipelines: [ "$root/pipelines/accounts.yaml", "$work/orders.yaml" ]
bus:
  type: kafka
  kafka: { bootstrap: "$OF_KAFKA_BOOTSTRAP" }
mysql: { socket: "$OF_MYSQL_SOCKET", user: "$OF_MYSQL_USER", password: "\${OF_MYSQL_PASSWORD}", database: "$db", pool_size: 40 }
redis: { host: "$OF_REDIS_HOST", port: $OF_REDIS_PORT, key_prefix: "bench$run_id:", pool_size: 16 }
http: { listen: "127.0.0.1:$port", threads: $http_threads }
log: { level: info }
drain_timeout: 10s
YAML

say "orderflowd (pipeline $n, database $db, port $port)"
"$ORDERFLOWD" -c "$work/host.yaml" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  grep -qF running "$work/daemon.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.2
done
grep -qF running "$work/daemon.log" || { tail -20 "$work/daemon.log" >&2; exit 1; }

# ---- products and tokens ----
tok() {
  "$ORDERFLOW" token --key-file "$work/secret" --sub "$1" --roles "$2" --iss "$ORDERFLOW_JWT_ISSUER" \
    --aud "$ORDERFLOW_JWT_AUDIENCE" --ttl 24h
}
if [ "$quick" = 1 ]; then n_skus=10 n_customers=20; else n_skus=100 n_customers=200; fi
stock=1000000000
admin=$(tok bench-admin admin)
product() { # SKU STOCK
  local code
  code=$(curl -s -o "$work/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $admin" \
    -H 'Content-Type: application/json' \
    --data-binary "{\"sku\":\"$1\",\"name\":\"Bench $1\",\"price_cents\":1999,\"currency\":\"EUR\",\"initial_stock\":$2}" \
    "$base/api/v1/products")
  [ "$code" = 201 ] || { echo "bench/run.sh: create $1: $code $(cat "$work/body")" >&2; exit 1; }
  echo "$1 $2" >>"$work/initial"
}
say "$n_skus products, $n_customers customers"
for i in $(seq -w 1 "$n_skus"); do
  product "BENCH-$i" "$stock"
  echo "BENCH-$i" >>"$work/skus"
done
for i in $(seq 1 "$n_customers"); do tok "bench-cust-$i" customer; done >"$work/tokens"

# ---- the runs ----
watch=(--watch "orderflowd=$pid")
while read -r svc _ _ _ spid _; do
  spid=${spid#(pid } spid=${spid%)} spid=${spid%,}
  [[ $spid =~ ^[0-9]+$ ]] && watch+=(--watch "${svc%:}=$spid")
done < <(bash "$services" status 2>/dev/null | grep -E '^[a-z]+: +up')
failed=0
runs=()
# load LABEL ARGS...: one load generator run, its JSON in $work/runs/LABEL.json.
mkdir -p "$work/runs"
load() {
  local label=$1
  shift
  local rc=0
  "$OF_LOADGEN" --url "$base" --tokens "$work/tokens" --bootstrap "$OF_KAFKA_BOOTSTRAP" \
    --topic "$n.orders.status" --label "$label" --idempotency-prefix "$run_id-$label" \
    --ids "$work/ids" --out "$work/runs/$label.json" "${watch[@]}" "$@" || rc=$?
  [ -f "$work/runs/$label.json" ] || { echo "bench/run.sh: $label wrote no result" >&2; exit 1; }
  runs+=("$work/runs/$label.json")
  if [ "$rc" != 0 ]; then
    echo "bench/run.sh: $label: the load generator recorded errors (exit $rc)" >&2
    failed=1
  fi
}
# holds FILE RATE: the step kept up (see the header).
holds() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r, rate = json.load(open(sys.argv[1])), float(sys.argv[2])
ok = (r["errors"]["total"] == 0 and r["intake"]["throughput_per_s"] >= 0.95 * rate
      and r["e2e"]["throughput_per_s"] >= 0.95 * rate and r["intake"]["latency"]["p99_ms"] <= 200
      and r["e2e"]["latency"]["p99_ms"] <= 2000)
sys.exit(0 if ok else 1)
PY
}

if [ "$quick" = 1 ]; then
  say "quick: fixed rate, max, scarce"
  load quick-rate --skus "$work/skus" --rate 100 --duration 3 --warmup 1 --connections 8 --e2e-timeout 60
  load quick-max --skus "$work/skus" --rate 0 --duration 2 --connections 8 --e2e-timeout 60
  product SCARCE-1 50
  echo SCARCE-1 >"$work/scarce"
  load quick-scarce --skus "$work/scarce" --rate 100 --duration 2 --connections 8 \
    --expect CONFIRMED,REJECTED --e2e-timeout 60
  knee=0
else
  knee=0 bad=0
  for r in $rates; do
    say "sweep: $r orders/s for $step s"
    load "sweep-$r" --skus "$work/skus" --rate "$r" --duration "$step" --warmup 3 \
      --connections "$conns" --e2e-timeout 300
    if holds "$work/runs/sweep-$r.json" "$r"; then knee=$r; else bad=$r; break; fi
  done
  # two bisection steps between the last rate that held and the first that did not
  for _ in 1 2; do
    [ "$bad" != 0 ] && [ "$knee" != 0 ] || break
    mid=$(((knee + bad) / 2))
    say "sweep: $mid orders/s for $step s (between $knee and $bad)"
    load "sweep-$mid" --skus "$work/skus" --rate "$mid" --duration "$step" --warmup 3 \
      --connections "$conns" --e2e-timeout 300
    if holds "$work/runs/sweep-$mid.json" "$mid"; then knee=$mid; else bad=$mid; fi
  done
  [ "$knee" != 0 ] || { echo "bench/run.sh: not even the lowest rate held" >&2; failed=1; knee=${rates%% *}; }
  say "knee: $knee orders/s"
  say "max: as fast as possible for $maxrun s"
  load max --skus "$work/skus" --rate 0 --duration "$maxrun" --warmup 3 --connections "$conns" \
    --e2e-timeout 300
  soak_rate=$((knee * 7 / 10))
  scarce_n=$((soak_rate * 10))
  product SCARCE-1 $((scarce_n / 4))
  echo SCARCE-1 >"$work/scarce"
  say "scarce: $soak_rate orders/s for 10 s on SCARCE-1 (stock $((scarce_n / 4)))"
  load scarce --skus "$work/scarce" --rate "$soak_rate" --duration 10 --connections "$conns" \
    --expect CONFIRMED,REJECTED --e2e-timeout 180
  say "soak: $soak_rate orders/s (70 % of the knee) for $soak s"
  load soak --skus "$work/skus" --rate "$soak_rate" --duration "$soak" --warmup 5 \
    --connections "$conns" --e2e-timeout 300
fi

# ---- the checker over every order placed ----
say "tools/check-orders.sh over $(wc -l <"$work/ids") orders"
check_rc=0
"$root/tools/check-orders.sh" --host "$OF_MYSQL_HOST" --port "$OF_MYSQL_PORT" --user "$OF_MYSQL_USER" \
  --password-env OF_MYSQL_PASSWORD --database "$db" --orders "$work/ids" --initial "$work/initial" \
  >"$work/check.txt" 2>&1 || check_rc=$?
cat "$work/check.txt" >&2
[ "$check_rc" = 0 ] || failed=1
# The daemon's own view: dead letters and ERROR lines.
dlq=0
for t in "$n.orders.dlq" "$n.orders.placed.dlq" "$n.inventory.events.dlq"; do
  d=$(kcat -C -b "$OF_KAFKA_BOOTSTRAP" -t "$t" -o beginning -e -q -f '%k\n' 2>/dev/null | wc -l)
  dlq=$((dlq + d))
done
log_errors=$(grep -cE '^[^ ]+ +(error|ERROR) ' "$work/daemon.log" || true)
[ "$dlq" = 0 ] || { echo "bench/run.sh: $dlq dead letter(s)" >&2; failed=1; }
[ "$log_errors" = 0 ] || { echo "bench/run.sh: errors in the daemon log:" >&2; grep -m5 -E '^[^ ]+ +(error|ERROR) ' "$work/daemon.log" >&2; failed=1; }

# ---- the report ----
py=python3
python3 -c 'import matplotlib' 2>/dev/null || { [ -x /usr/bin/python3 ] && py=/usr/bin/python3; }
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | grep -c . || true)
plots=--plots
[ "$quick" = 1 ] && plots=--no-plots
result=$("$py" "$root/bench/report.py" "$plots" --out "$out" --commit "$commit" --dirty "$dirty" \
  --mode "$([ "$quick" = 1 ] && echo quick || echo standard)" --knee "$knee" --soak "$soak" \
  --checker "$work/check.txt" --checker-rc "$check_rc" --dead-letters "$dlq" \
  --log-errors "$log_errors" --host-config "$work/host.yaml" "${runs[@]}")
say "results: $result"
if [ "$failed" != 0 ]; then
  echo "bench/run.sh: FAILED (see above)" >&2
  keep=1
  exit 1
fi
say "benchmark passed: no error, the checker passes"
