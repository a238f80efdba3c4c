#!/usr/bin/env bash
# Effectively-once effects on the real broker and MariaDB: a stage that writes to the database is
# killed (SIGKILL, by the host's fault-injection point) right after a commit and before the
# publication and offset commit of that event. After a restart every event has been redelivered
# or not, but each write is applied exactly once (the inbox), and every emitted event is
# published at least once (the outbox relay publishes what the killed host left behind). The
# stage commits batches of up to 8 events (`batch: 8`), so the kill leaves a whole batch
# committed and unpublished, and the redelivered batches meet events applied before.
source "$(dirname "$0")/kafkalib.bash"
with_database
name="dbx-$RUN_ID"
dbtap_pipeline "$TMP/p.yaml" "$name" 8

# Killed by itself after the 10th commit (of a batch or of one event).
OF_FAULT_KILL_AFTER_COMMIT=10 "$ORDERFLOWD" -c "$TMP/host.yaml" >>"$TMP/d1.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_for "$TMP/d1.log" "running" 60 || fail "d1 did not start"
grep -q "applied migration dbtap 1" "$TMP/d1.log" || fail "the plugin's migration was not applied"
produce "$name.in" 0 25 8
# Bounded: a host the fault point never stops fails the test instead of hanging it.
for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the host was still running 60 s after the events (fault point not reached)"
set +e
wait "$pid"
status=$?
set -e
[ "$status" = 137 ] || fail "the host was not killed by the fault point (status $status)"
grep -q "fault injection: killed after commit 10" "$TMP/d1.log" || fail "fault point not reached"
before=$(sql -D "$db" -e "SELECT COUNT(*) FROM dbtap_writes")
[ "$before" -ge 10 ] && [ "$before" -lt 200 ] || fail "$before rows before the restart"
# Batches formed: fewer commits than events.
[ "$before" -gt 10 ] || fail "10 commits wrote $before rows: the stage did not batch"

start_daemon d2 "$TMP/host.yaml"
grep -q "applied migration" "$TMP/d2.log" && fail "migrations ran twice"
wait_records "$TMP/records" 200 120 || fail "only $(distinct_records "$TMP/records") of 200 events came out"
check_complete_in_order "$TMP/records" 25 8
read -r rows distinct < <(sql -D "$db" -e "SELECT COUNT(*), COUNT(DISTINCT payload) FROM dbtap_writes")
[ "$rows" = 200 ] && [ "$distinct" = 200 ] || fail "$rows rows for $distinct events: a write was applied twice or lost"
# The event killed between its commit and its publication came out of the outbox: when it was
# redelivered (in its key's order), or through the relay if that came first.
grep -q "it had left in the outbox\|outbox relay: published" "$TMP/d2.log" ||
  fail "the events left in the outbox were not published from it"
inbox=$(sql -D "$db" -e "SELECT COUNT(*) FROM of_inbox")
[ "$inbox" = 200 ] || fail "$inbox inbox rows for 200 events"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "d2 did not stop cleanly"
drop_db
finish
