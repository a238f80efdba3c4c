#!/usr/bin/env bash
# orderflow dlq list / replay against the real Kafka broker of scripts/services.sh (started
# when it is down): dead letters written with kcat, shown with their headers, republished to
# their original topic (or --to) without the of_dlq_* headers, progress kept between replays,
# and the errors (missing topic, unreachable broker, bad command lines). Needs kcat (deps.sh).
source "$(dirname "$0")/../cli/testlib.bash"
SERVICES=$OF_SOURCE_DIR/scripts/services.sh

command -v kcat >/dev/null || { echo "FAIL: kcat is not installed (scripts/deps.sh installs it)"; exit 1; }
if ! bash "$SERVICES" status kafka >/dev/null 2>&1; then
  bash "$SERVICES" start kafka >"$TMP/services.log" 2>&1 ||
    { echo "FAIL: cannot start Kafka"; cat "$TMP/services.log"; exit 1; }
fi
eval "$(bash "$SERVICES" env)"
B=${OF_KAFKA_BOOTSTRAP:?}

# Unique per run: the broker is shared, and a replay's progress is kept per dead-letter topic.
id="dlqt-$(date +%s%N | tail -c 9)-$$"
DLQ=$id-orders-dlq
ORIG=$id-orders
OTHER=$id-other

create_topic() {
  bash "$SERVICES" kafka-cli topics --bootstrap-server "$B" --create --topic "$1" \
    --partitions "$2" --replication-factor 1 >"$TMP/topic.log" 2>&1 ||
    { echo "FAIL: creating topic $1"; cat "$TMP/topic.log"; exit 1; }
}
create_topic "$DLQ" 2
create_topic "$ORIG" 1
create_topic "$OTHER" 1

# dead_letter PARTITION KEY PAYLOAD [HEADER=VALUE...]: one event on the dead-letter topic.
dead_letter() {
  local part=$1 key=$2 payload=$3
  shift 3
  local hs=()
  for h in "$@"; do hs+=(-H "$h"); done
  printf '%s' "$payload" | kcat -P -b "$B" -t "$DLQ" -p "$part" -k "$key" -D '#~#' "${hs[@]}" ||
    { echo "FAIL: kcat could not produce to $DLQ"; exit 1; }
}

# dlq_headers ORIGINAL_OFFSET STATUS ERROR: the headers the runner adds.
dlq_headers() {
  echo "of_dlq_topic=$ORIG" "of_dlq_partition=2" "of_dlq_offset=$1" "of_dlq_pipeline=triage" \
    "of_dlq_stage=urgency" "of_dlq_attempts=3" "of_dlq_status=$2"
}

# the events on TOPIC as kcat's JSON envelopes, one per line
read_topic() {
  kcat -C -b "$B" -t "$1" -e -q -J
}

count_events() {
  read_topic "$1" | grep -c . || true
}

IFS=' ' read -r -a h1 <<<"$(dlq_headers 41 retries-exhausted)"
dead_letter 0 order-1 '{"id":1}' "${h1[@]}" "of_dlq_error=payment service timed out" trace-id=t1
IFS=' ' read -r -a h2 <<<"$(dlq_headers 42 rejected)"
dead_letter 1 order-2 $'line1\nline2\x01' "${h2[@]}" "of_dlq_error=bad total" x-tenant=acme
IFS=' ' read -r -a h3 <<<"$(dlq_headers 43 rejected)"
dead_letter 0 order-3 third "${h3[@]}" "of_dlq_error=no such customer"

# --- list
run "$ORDERFLOW" dlq list --bootstrap "$B" "$DLQ"
expect_status 0 "list"
expect_contains "partition 0 offset 0" "list: position"
expect_contains "  key:       order-1" "list: key"
expect_contains "  from:      $ORIG partition 2 offset 41" "list: original topic, partition, offset"
expect_contains "  pipeline:  triage" "list: pipeline"
expect_contains "  stage:     urgency" "list: stage"
expect_contains "  attempts:  3" "list: attempts"
expect_contains "  status:    retries-exhausted" "list: status"
expect_contains "  error:     payment service timed out" "list: error"
expect_contains "  header:    trace-id=t1" "list: other headers"
expect_contains '  payload:   (8 bytes) {"id":1}' "list: payload"
expect_contains 'payload:   (12 bytes) line1\nline2\x01' "list: non-printable bytes escaped"
expect_contains "partition 1 offset 0" "list: second partition"
expect_contains "3 dead letters in $DLQ" "list: summary"
# partition order, then offset order
[ "$(grep -o '^partition [0-9] offset [0-9]' <<<"$out" | tr '\n' ,)" = \
  "partition 0 offset 0,partition 0 offset 1,partition 1 offset 0," ] ||
  { echo "FAIL: list order"; echo "$out" | sed 's/^/    /'; failures=$((failures + 1)); }

"$ORDERFLOW" dlq list --json --bootstrap "$B" "$DLQ" >"$TMP/list.json" 2>"$TMP/list.err"
status=$?
out=$(cat "$TMP/list.json")
expect_status 0 "list --json"
expect_contains '"partition":0,"offset":0,' "json: position"
expect_contains '"key":"order-1","topic":"'"$ORIG"'","original_partition":2,"original_offset":41,"pipeline":"triage","stage":"urgency","attempts":3,"status":"retries-exhausted","error":"payment service timed out","headers":[{"name":"trace-id","value":"t1"}],"payload":"{\"id\":1}"}' "json: one event"
expect_contains '"payload":"line1\nline2\u0001"' "json: payload escaped by JSON"
[ "$(grep -c '^{' "$TMP/list.json")" = 3 ] || { echo "FAIL: json: 3 lines"; failures=$((failures + 1)); }
grep -qF "3 dead letters in $DLQ" "$TMP/list.err" ||
  { echo "FAIL: json: summary on stderr"; failures=$((failures + 1)); }

run "$ORDERFLOW" dlq list --limit 1 --bootstrap "$B" "$DLQ"
expect_status 0 "list --limit"
expect_contains "3 dead letters in $DLQ (first 1 shown)" "list --limit summary"
expect_lacks "partition 1 offset 0" "list --limit stops"

# list with the host configuration's bus.kafka
cat >"$TMP/host.yaml" <<YAML
bus:
  type: kafka
  kafka:
    bootstrap: "$B"
    client_id: dlq-test
    properties: { socket.keepalive.enable: true }
YAML
run "$ORDERFLOW" -c "$TMP/host.yaml" dlq list "$DLQ"
expect_status 0 "list with -c"
expect_contains "3 dead letters in $DLQ" "list with -c summary"
printf 'bus: { type: memory }\n' >"$TMP/memory.yaml"
run "$ORDERFLOW" -c "$TMP/memory.yaml" dlq list "$DLQ"
expect_status 1 "list with a memory bus"
expect_contains "the bus is not kafka" "memory bus message"

# --- replay --dry-run publishes nothing
run "$ORDERFLOW" dlq replay --dry-run --bootstrap "$B" "$DLQ"
expect_status 0 "replay --dry-run"
expect_contains "would replay partition 0 offset 0 (key order-1) to $ORIG" "dry run: what goes where"
expect_contains "would replay partition 1 offset 0 (key order-2) to $ORIG" "dry run: second partition"
expect_contains "dry run: would replay 3 of 3 dead letters from $DLQ" "dry run summary"
[ "$(count_events "$ORIG")" = 0 ] || { echo "FAIL: dry run published"; failures=$((failures + 1)); }

# --- replay to the original topic
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$DLQ"
expect_status 0 "replay"
expect_contains "replayed partition 0 offset 1 (key order-3) to $ORIG" "replay: each event"
expect_contains "replayed 3 of 3 dead letters from $DLQ" "replay summary"
read_topic "$ORIG" >"$TMP/orig.json"
out=$(cat "$TMP/orig.json")
[ "$(grep -c . "$TMP/orig.json")" = 3 ] || { echo "FAIL: replay: 3 events in $ORIG"; echo "$out"; failures=$((failures + 1)); }
expect_contains '"headers":["trace-id","t1"],"key":"order-1","payload":"{\"id\":1}"' "replayed: key, payload, headers kept"
expect_contains '"headers":["x-tenant","acme"],"key":"order-2","payload":"line1\nline2\u0001"' "replayed: binary payload kept"
expect_contains '"key":"order-3","payload":"third"' "replayed: event without other headers"
expect_lacks "of_dlq_" "replayed: of_dlq_* headers removed"

# a second replay republishes nothing
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$DLQ"
expect_status 0 "second replay"
expect_contains "replayed 0 of 3 dead letters from $DLQ (3 replayed before" "second replay summary"
[ "$(count_events "$ORIG")" = 3 ] || { echo "FAIL: second replay published again"; failures=$((failures + 1)); }

# --to (with --from-beginning, since all were replayed already)
run "$ORDERFLOW" dlq replay --from-beginning --to "$OTHER" --bootstrap "$B" "$DLQ"
expect_status 0 "replay --to"
expect_contains "replayed partition 1 offset 0 (key order-2) to $OTHER" "replay --to: where"
expect_contains "replayed 3 of 3 dead letters from $DLQ" "replay --to summary"
out=$(read_topic "$OTHER")
[ "$(grep -c . <<<"$out")" = 3 ] || { echo "FAIL: --to: 3 events in $OTHER"; failures=$((failures + 1)); }
expect_contains '"key":"order-1","payload":"{\"id\":1}"' "--to: event kept"
expect_lacks "of_dlq_" "--to: of_dlq_* headers removed"
[ "$(count_events "$ORIG")" = 3 ] || { echo "FAIL: --to also published to $ORIG"; failures=$((failures + 1)); }

# an event without of_dlq_topic stops the replay there, and progress is kept before it
dead_letter 1 order-4 orphan of_dlq_status=rejected
IFS=' ' read -r -a h5 <<<"$(dlq_headers 44 rejected)"
dead_letter 1 order-5 fifth "${h5[@]}"
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$DLQ"
expect_status 1 "replay of an event without of_dlq_topic"
expect_contains "partition 1 offset 1 has no of_dlq_topic header and no --to was given: stopped there" "orphan: which offset"
expect_contains "replayed 0 of 5 dead letters from $DLQ" "orphan: summary"
[ "$(count_events "$ORIG")" = 3 ] || { echo "FAIL: orphan: nothing after it may be published"; failures=$((failures + 1)); }
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$DLQ"
expect_status 1 "orphan again: not committed past"
expect_contains "partition 1 offset 1 has no of_dlq_topic" "orphan again: same offset"

# --limit, then the rest
run "$ORDERFLOW" dlq replay --limit 1 --to "$ORIG" --bootstrap "$B" "$DLQ"
expect_status 0 "replay --limit 1"
expect_contains "replayed partition 1 offset 1 (key order-4) to $ORIG" "--limit: the first pending"
expect_contains "replayed 1 of 5 dead letters from $DLQ" "--limit summary"
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$DLQ"
expect_status 0 "replay the rest"
expect_contains "replayed 1 of 5 dead letters from $DLQ (4 replayed before" "the rest: summary"
[ "$(count_events "$ORIG")" = 5 ] || { echo "FAIL: 5 events in $ORIG at the end"; failures=$((failures + 1)); }

# --- errors
run "$ORDERFLOW" dlq list --bootstrap "$B" "$id-missing"
expect_status 1 "list of a missing topic"
expect_contains "topic '$id-missing' does not exist" "missing topic message"
run "$ORDERFLOW" dlq replay --bootstrap "$B" "$id-missing"
expect_status 1 "replay of a missing topic"
expect_contains "topic '$id-missing' does not exist" "replay: missing topic message"

for sub in list replay; do
  start=$SECONDS
  run "$ORDERFLOW" dlq "$sub" --bootstrap 127.0.0.1:1 "$DLQ"
  expect_status 1 "$sub: unreachable broker"
  expect_contains "cannot connect to the Kafka brokers at 127.0.0.1:1" "$sub: unreachable message"
  [ $((SECONDS - start)) -le 15 ] || { echo "FAIL: $sub: unreachable took $((SECONDS - start)) s"; failures=$((failures + 1)); }
done

run "$ORDERFLOW" dlq list --bootstrap "$B"
expect_status 2 "missing topic argument"
expect_contains "missing the dead-letter TOPIC" "missing topic argument message"
run "$ORDERFLOW" dlq replay --limit 0 --bootstrap "$B" "$DLQ"
expect_status 2 "--limit 0"
expect_contains "--limit takes a positive whole number; got '0'" "--limit 0 message"
run "$ORDERFLOW" dlq replay --limit ten --bootstrap "$B" "$DLQ"
expect_status 2 "--limit ten"
run "$ORDERFLOW" dlq list --dry-run --bootstrap "$B" "$DLQ"
expect_status 2 "list has no --dry-run"
expect_contains "unknown option '--dry-run'" "unknown option message"
run "$ORDERFLOW" dlq list "$DLQ"
expect_status 2 "no broker given"
expect_contains "give --bootstrap HOST:PORT, or -c CONFIG" "no broker message"
run "$ORDERFLOW" dlq purge "$DLQ"
expect_status 2 "unknown subcommand"
[ "$(count_events "$ORIG")" = 5 ] || { echo "FAIL: errors published something"; failures=$((failures + 1)); }

# best effort: the run's topics go again
bash "$SERVICES" kafka-cli topics --bootstrap-server "$B" --delete --topic "$id-.*" >/dev/null 2>&1 || true
finish
