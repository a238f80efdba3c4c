#!/usr/bin/env bash
# A two-stage pipeline on the real broker carries N keyed events end to end, in key order,
# through several worker threads and partitions.
source "$(dirname "$0")/kafkalib.bash"
name="e2e-$RUN_ID"
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
start_daemon d1 "$TMP/host.yaml"
produce "$name.in" 0 100 10
wait_records "$TMP/records" 1000 120 || fail "only $(distinct_records "$TMP/records") of 1000 events arrived"
check_complete_in_order "$TMP/records" 100 10
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not exit cleanly after SIGTERM"
grep -q '"stopped"\|stopped' "$TMP/d1.log" || fail "no clean stop logged"
finish
