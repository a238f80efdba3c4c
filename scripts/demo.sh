#!/usr/bin/env bash
# The main job: installs what is needed, builds, starts the local services and runs a pipeline
# end to end on the real Kafka broker.
#
# Until the order pipeline lands (it needs the MySQL, Redis and gateway work that follows), the
# demo runs the example pipeline pipelines/examples/triage.yaml: it lints it, draws it, runs its
# declared tests on the embedded bus, then starts orderflowd on Kafka, sends it three support
# messages and shows where each one ended up.
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh
echo "== services (Kafka, MariaDB, Redis on loopback)"
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"
echo "== build"
bash scripts/build.sh "$root/build"
cli=$root/build/host/orderflow
daemon=$root/build/host/orderflowd

echo "== orderflow version"
"$cli" version
echo "== orderflow plugins"
"$cli" plugins
echo "== orderflow lint pipelines/"
"$cli" lint pipelines/
echo "== orderflow graph --format mermaid pipelines/examples/triage.yaml"
"$cli" graph --format mermaid pipelines/examples/triage.yaml
echo "== orderflow test pipelines/examples/triage.yaml (embedded bus)"
"$cli" test pipelines/examples/triage.yaml 2>/dev/null

echo "== orderflowd on Kafka ($OF_KAFKA_BOOTSTRAP)"
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/orderflow.yaml" <<YAML
plugin_dirs: [ "$root/build/plugins" ]
pipelines: [ "$root/pipelines/examples/triage.yaml" ]
bus:
  type: kafka
  kafka: { bootstrap: "$OF_KAFKA_BOOTSTRAP" }
log: { level: info }
YAML
"$daemon" -c "$work/orderflow.yaml" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 1 150); do grep -q running "$work/daemon.log" && break; sleep 0.2; done

run=$(date +%s)
printf '%s\n' \
  "demo-$run-1|{\"text\": \"URGENT: the shop is down\"}" \
  "demo-$run-2|{\"text\": \"urgent: please refund order 42\"}" \
  "demo-$run-3|{\"text\": \"a question about an invoice\"}" |
  kcat -P -b "$OF_KAFKA_BOOTSTRAP" -t messages -K '|'
echo "sent 3 messages with keys demo-$run-1..3 to topic 'messages'"

for topic in messages.outage messages.urgent.other messages.routine; do
  for _ in $(seq 1 50); do
    got=$(kcat -C -b "$OF_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -q -f '%k %s\n' 2>/dev/null |
      grep "^demo-$run-" || true)
    [ -n "$got" ] && break
    sleep 0.2
  done
  echo "-- $topic"
  echo "${got:-(nothing)}" | sed 's/^/   /'
done
kill -TERM "$pid"
wait "$pid" || true
echo "== orderflowd log"
sed 's/^/   /' "$work/daemon.log"
echo "demo finished"
