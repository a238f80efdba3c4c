#!/usr/bin/env bash
# The broker stops for 20 s mid-stream and comes back: the host keeps running, reports itself
# not ready meanwhile, and then catches up with nothing lost.
source "$(dirname "$0")/kafkalib.bash"
name="brk-$RUN_ID"
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records" "" ", delay: 2ms"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
start_daemon d1 "$TMP/host.yaml"
produce "$name.in" 0 100 8
wait_records "$TMP/records" 100 120 || fail "the stream did not start"
bash "$SERVICES" stop kafka >/dev/null
wait_for "$TMP/d1.log" "kafka: not ready" 30 || fail "the host did not report itself not ready"
sleep 20
kill -0 "$DAEMON_PID" || fail "orderflowd died while the broker was away"
bash "$SERVICES" start kafka >/dev/null
wait_for "$TMP/d1.log" "kafka: ready" 60 || fail "the host did not report itself ready again"
# Events produced after the broker came back flow as well.
produce "$name.in" 100 120 8
wait_records "$TMP/records" 960 180 || fail "after the restart only $(distinct_records "$TMP/records") of 960 events arrived"
check_complete_in_order "$TMP/records" 120 8
finish
