#!/usr/bin/env bash
# The main job: installs what is needed, builds, and runs a pipeline end to end.
#
# Until the order pipeline lands (it needs the Kafka, MySQL and gateway work that follows the
# foundation), the demo runs the example pipeline pipelines/examples/triage.yaml: it lints it,
# draws it, runs its declared tests through the embedded bus and real stage runner, then starts
# orderflowd on it and stops it with SIGTERM.
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh
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
echo "== orderflow test pipelines/examples/triage.yaml"
"$cli" test pipelines/examples/triage.yaml

echo "== orderflowd (started, then stopped with SIGTERM)"
cfg=$(mktemp --suffix=.yaml)
trap 'rm -f "$cfg"' EXIT
cat >"$cfg" <<YAML
plugin_dirs: [ "$root/build/plugins" ]
pipelines: [ "$root/pipelines/examples/triage.yaml" ]
bus: { type: memory }
log: { level: info }
YAML
"$daemon" -c "$cfg" &
pid=$!
sleep 1
kill -TERM "$pid"
wait "$pid"
echo "demo finished"
