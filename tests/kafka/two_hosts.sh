#!/usr/bin/env bash
# Two orderflowd processes in one group share the partitions; when one is killed with SIGKILL
# mid-stream, the other takes its partitions over and finishes every event.
source "$(dirname "$0")/kafkalib.bash"
name="pair-$RUN_ID"
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records" "" ", delay: 5ms"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
start_daemon a "$TMP/host.yaml"
pid_a=$DAEMON_PID
start_daemon b "$TMP/host.yaml"
pid_b=$DAEMON_PID
# Both must own partitions before the stream starts.
wait_for "$TMP/b.log" "assigned" 60 || fail "the second host got no partitions"
produce "$name.in" 0 150 8
wait_records "$TMP/records" 150 120 || fail "the stream did not start"
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
wait_records "$TMP/records" 1200 180 || fail "host b finished only $(distinct_records "$TMP/records") of 1200 events"
check_complete_in_order "$TMP/records" 150 8
grep -q "assigned" "$TMP/a.log" || fail "host a never owned a partition"
kill -0 "$pid_b" || fail "host b died"
finish
