#!/usr/bin/env bash
# Two hosts of one pipeline stopped together, while their groups are still rebalancing after the
# second one joined: each stops within its drain, not a stage after another. A consumer's close
# leaves its group, and during a rebalance the coordinator holds that LeaveGroup behind the
# consumer's pending JoinGroup until the request times out (5 s); closed one by one, the five
# stages here took about 25 s, closed together about 5.
source "$(dirname "$0")/kafkalib.bash"
name="stop2-$RUN_ID"
{
  echo "pipeline: $name"
  echo "topics:"
  echo "  $name.s0: { partitions: 3, external: true }"
  for i in 1 2 3 4 5; do echo "  $name.s$i: { partitions: 3 }"; done
  echo "stages:"
  for i in 1 2 3 4 5; do
    echo "  - { name: t$i, plugin: tap, inputs: [$name.s$((i - 1))], outputs: { out: $name.s$i }, config: { tag: t$i } }"
  done
} >"$TMP/p.yaml"
host_config "$TMP/host.yaml" "$TMP/p.yaml"
# The drain itself is short here: what is measured is the leaving of the groups after it. The
# client's default heartbeat (3 s) keeps the rebalance open long enough to stop inside it.
sed -i -e 's/^drain_timeout: .*/drain_timeout: 1s/' -e '/session.timeout.ms\|heartbeat.interval.ms/d' \
  "$TMP/host.yaml"
start_daemon a "$TMP/host.yaml"
pid_a=$DAEMON_PID
wait_for "$TMP/a.log" "assigned" 60 || fail "host a got no partitions"
start_daemon b "$TMP/host.yaml"
pid_b=$DAEMON_PID
# Host b's first assignment in each of the five groups (0 partitions, as a's partitions are
# revoked first), then the stop: inside the round that hands b its partitions. (Before a
# consumer's first assignment librdkafka 2.0 aborts on its destroy: confluentinc/librdkafka#4312.)
deadline=$((SECONDS + 60))
while [ "$(grep -c 'partitions\? assigned' "$TMP/b.log" || true)" -lt 5 ] && [ $SECONDS -lt $deadline ]; do
  sleep 0.05
done
[ $SECONDS -lt $deadline ] || fail "host b got no assignment in some group"
sleep 0.2
start=$SECONDS
kill -TERM "$pid_a" "$pid_b"
for p in "$pid_a" "$pid_b"; do
  rc=0
  wait "$p" || rc=$?
  [ "$rc" = 0 ] || fail "host $p exited with $rc"
done
took=$((SECONDS - start))
echo "both hosts stopped in ${took} s"
# 1 s of drain and one 5 s leave, with room for a slow machine; one by one it is 5 x 5 s.
[ "$took" -le 16 ] || fail "stopping both hosts took ${took} s (the groups were left one by one)"
grep -q "stopped" "$TMP/a.log" || fail "host a did not report its stop"
grep -q "stopped" "$TMP/b.log" || fail "host b did not report its stop"
finish
