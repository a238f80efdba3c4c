#!/usr/bin/env bash
# orderflowd killed with SIGKILL mid-stream and restarted: every event is processed at least
# once, nothing is lost, and each key's events still arrive in order.
source "$(dirname "$0")/kafkalib.bash"
name="kill-$RUN_ID"
# A slow sink keeps events in flight when the kill comes.
two_stage_pipeline "$TMP/p.yaml" "$name" "$TMP/records" "" ", delay: 5ms"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
start_daemon d1 "$TMP/host.yaml"
produce "$name.in" 0 150 8
# Kill once part of the stream went through, none of it gracefully.
wait_records "$TMP/records" 200 120 || fail "the stream did not start"
kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
before=$(distinct_records "$TMP/records")
[ "$before" -lt 1200 ] || fail "the kill came too late to test anything ($before of 1200 done)"
start_daemon d2 "$TMP/host.yaml"
wait_records "$TMP/records" 1200 180 || fail "after the restart only $(distinct_records "$TMP/records") of 1200 events arrived"
check_complete_in_order "$TMP/records" 150 8
echo "recorded $(wc -l <"$TMP/records") lines for 1200 events ($before before the kill)"
finish
