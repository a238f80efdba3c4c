#!/usr/bin/env bash
# MariaDB down for 30 s in the middle of a stream: the database stage waits and retries (no
# event is dead-lettered, the host keeps running), and when the database is back every event is
# written exactly once and comes out.
source "$(dirname "$0")/kafkalib.bash"
with_database
name="dbo-$RUN_ID"
dbtap_pipeline "$TMP/p.yaml" "$name"

start_daemon d1 "$TMP/host.yaml"
produce "$name.in" 0 10 8
wait_records "$TMP/records" 80 60 || fail "the stream did not start"
bash "$SERVICES" stop mariadb >/dev/null
produce "$name.in" 10 20 8
sleep 30
kill -0 "$DAEMON_PID" || fail "orderflowd died while the database was away"
grep -q "database: .*waits and is tried again" "$TMP/d1.log" || fail "no wait for the database logged"
bash "$SERVICES" start mariadb >/dev/null
wait_records "$TMP/records" 160 120 || fail "after the outage only $(distinct_records "$TMP/records") of 160 events came out"
check_complete_in_order "$TMP/records" 20 8
read -r rows distinct < <(sql -D "$db" -e "SELECT COUNT(*), COUNT(DISTINCT payload) FROM dbtap_writes")
[ "$rows" = 160 ] && [ "$distinct" = 160 ] || fail "$rows rows for $distinct events"
dlq=$(kcat -C -b "$BOOT" -t "$name.in.dlq" -o beginning -e -q 2>/dev/null | wc -l)
[ "$dlq" = 0 ] || fail "$dlq events were dead-lettered during the outage"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
drop_db
finish
