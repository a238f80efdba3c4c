#!/usr/bin/env bash
# orderflowd refuses to start on any configuration error, runs a valid configuration, and
# stops cleanly on SIGTERM.
source "$(dirname "$0")/testlib.bash"
: "${ORDERFLOWD:?}"
pipeline=$OF_SOURCE_DIR/pipelines/examples/triage.yaml

cat >"$TMP/good.yaml" <<YAML
plugin_dirs: [ "$OF_BUILD_PLUGIN_DIR" ]
pipelines: [ "$pipeline" ]
bus: { type: memory }
log: { level: info, format: json }
drain_timeout: 5s
YAML

run "$ORDERFLOWD" -c "$TMP/good.yaml" --check
expect_status 0 "--check on a valid configuration"
expect_contains "configuration OK (1 pipeline" "--check summary"

# A configuration with mistakes: every one reported with its position, and no start.
cat >"$TMP/bad.yaml" <<YAML
plugin_dirs: [ "$OF_BUILD_PLUGIN_DIR" ]
pipelines: [ "$pipeline" ]
bus: { type: carrier-pigeon }
log: { level: chatty }
drain_timout: 5s
YAML
run "$ORDERFLOWD" -c "$TMP/bad.yaml"
expect_status 1 "invalid configuration"
expect_contains "$TMP/bad.yaml:3:" "bad bus type has a position"
expect_contains "$TMP/bad.yaml:4:" "bad log level has a position"
expect_contains "$TMP/bad.yaml:5:1:" "unknown key has a position"
expect_contains "not starting" "refusal said"

# A pipeline with an error refuses the start as well.
sed 's/concurrency: 2/concurrency: 0/' "$pipeline" >"$TMP/zero.yaml"
sed "s|$pipeline|$TMP/zero.yaml|" "$TMP/good.yaml" >"$TMP/zero-host.yaml"
run "$ORDERFLOWD" -c "$TMP/zero-host.yaml"
expect_status 1 "pipeline with an error"
expect_contains "$TMP/zero.yaml:" "pipeline error has a position"

# A stage whose init fails: the daemon exits 1 with the plugin's reason.
sed 's/keyword: down/keyword: ""/' "$pipeline" >"$TMP/emptykw.yaml"
sed "s|$pipeline|$TMP/emptykw.yaml|" "$TMP/good.yaml" >"$TMP/emptykw-host.yaml"
run "$ORDERFLOWD" -c "$TMP/emptykw-host.yaml"
expect_status 1 "stage init failure"
expect_contains "keyword must not be empty" "init failure reason"

# A valid configuration runs until SIGTERM, then drains and exits 0.
"$ORDERFLOWD" -c "$TMP/good.yaml" 2>"$TMP/log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q '"msg":"orderflowd' "$TMP/log" && break
  sleep 0.1
done
kill -0 "$pid" 2>/dev/null || { echo "FAIL: daemon exited early"; cat "$TMP/log"; failures=$((failures + 1)); }
kill -HUP "$pid"   # not a reload yet: logged, and the daemon keeps running
sleep 0.2
kill -0 "$pid" 2>/dev/null || { echo "FAIL: daemon died on SIGHUP"; failures=$((failures + 1)); }
kill -TERM "$pid"
set +e
wait "$pid"
status=$?
set -e
out=$(cat "$TMP/log")
expect_status 0 "exit after SIGTERM"
expect_contains '"level":"info"' "JSON log format from the configuration"
expect_contains "draining" "drain logged"
expect_contains '"msg":"stopped"' "stop logged"
finish
