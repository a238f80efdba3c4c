#!/usr/bin/env bash
# A poison event goes to the dead-letter topic with its error headers while the events after it
# keep flowing; `orderflow dlq replay` brings it back and the fixed stage processes it.
source "$(dirname "$0")/kafkalib.bash"
name="psn-$RUN_ID"
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records" ", poison: POISON"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
start_daemon d1 "$TMP/host.yaml"

produce "$name.in" 0 10 4
printf 'key-2|POISON-pill\n' | kcat -P -b "$BOOT" -t "$name.in" -K '|'
produce "$name.in" 10 20 4
wait_records "$TMP/records" 80 120 || fail "events after the poison did not flow ($(distinct_records "$TMP/records") of 80)"
grep -v POISON "$TMP/records" >"$TMP/clean" || true
check_complete_in_order "$TMP/clean" 20 4
grep -q POISON "$TMP/records" && fail "the poison event reached the sink"

# The dead letter carries the event and why it failed.
dl=$(kcat -C -b "$BOOT" -t "$name.in.dlq" -o beginning -e -q -J 2>/dev/null)
python3 - "$name" <<PY || fail "dead letter lacks its headers: $dl"
import json, sys
name = sys.argv[1]
msgs = [json.loads(l) for l in """$dl""".splitlines() if l.strip()]
assert len(msgs) == 1, f"{len(msgs)} dead letters"
m = msgs[0]
assert m["key"] == "key-2" and m["payload"] == "POISON-pill", m
h = dict(zip(m["headers"][0::2], m["headers"][1::2]))
assert h["of_dlq_topic"] == f"{name}.in", h
assert h["of_dlq_stage"] == "relay" and h["of_dlq_pipeline"] == name, h
assert h["of_dlq_status"] == "rejected" and h["of_dlq_attempts"] == "1", h
assert "poison marker" in h["of_dlq_error"], h
assert h["of_dlq_partition"].isdigit() and h["of_dlq_offset"].isdigit(), h
PY

run_cli() { "$ORDERFLOW" -c "$TMP/host.yaml" "$@" >"$TMP/cli.out" 2>&1; }
run_cli dlq list "$name.in.dlq" || fail "dlq list failed: $(cat "$TMP/cli.out")"
grep -q "poison marker" "$TMP/cli.out" || fail "dlq list does not show the error"

# The stage is fixed (no poison marker any more) and restarted; the replay brings the event back.
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records"
start_daemon d2 "$TMP/host.yaml"
run_cli dlq replay "$name.in.dlq" || fail "dlq replay failed: $(cat "$TMP/cli.out")"
grep -q "replayed 1 of 1" "$TMP/cli.out" || fail "replay summary: $(cat "$TMP/cli.out")"
wait_for "$TMP/records" "POISON-pill" 60 || fail "the replayed event was not processed"
grep -q "sink key-2 POISON-pill" "$TMP/records" || fail "the replayed event lost its key"
# A second replay has nothing left to bring back.
run_cli dlq replay "$name.in.dlq" || fail "second replay failed: $(cat "$TMP/cli.out")"
grep -q "replayed 0 of 1" "$TMP/cli.out" || fail "second replay republished: $(cat "$TMP/cli.out")"
finish
