#!/usr/bin/env bash
# MariaDB down for 30 s in the middle of a stream: the database stage waits and retries (no
# event is dead-lettered, the host keeps running), and when the database is back every event is
# written exactly once and comes out.
source "$(dirname "$0")/kafkalib.bash"
bash "$SERVICES" status mariadb >/dev/null 2>&1 || bash "$SERVICES" start mariadb >/dev/null
eval "$(bash "$SERVICES" env)"
db="orderflow_t${RUN_ID//[^a-z0-9]/}"
sql() {
  mariadb -h "$OF_MYSQL_HOST" -P "$OF_MYSQL_PORT" -u "$OF_MYSQL_USER" -p"$OF_MYSQL_PASSWORD" \
    --batch --skip-column-names "$@"
}
sql -e "CREATE DATABASE \`$db\`"
drop_db() { sql -e "DROP DATABASE IF EXISTS \`$db\`" || true; }

name="dbo-$RUN_ID"
cat >"$TMP/p.yaml" <<YAML
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
  - name: sink
    plugin: tap
    inputs: [$name.written]
    outputs: { out: $name.out }
    config: { tag: sink, record: "$TMP/records" }
YAML
host_config "$TMP/host.yaml" "$TMP/p.yaml"
cat >>"$TMP/host.yaml" <<YAML
mysql:
  host: "$OF_MYSQL_HOST"
  port: $OF_MYSQL_PORT
  user: "$OF_MYSQL_USER"
  password: "\${OF_MYSQL_PASSWORD}"
  database: "$db"
  pool_size: 4
YAML

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
