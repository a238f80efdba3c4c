#!/usr/bin/env bash
# orderflow plugins lists plugins with options, defaults and outputs, and reports refused files.
source "$(dirname "$0")/testlib.bash"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins
expect_status 0 "plugins"
expect_contains "keyword-router 1.0.0" "name and version"
expect_contains "outputs: matched unmatched" "outputs"
expect_contains "keyword" "required option listed"
expect_contains "required" "required flag shown"
expect_contains "default 64KiB" "size default shown"
expect_contains "sensitive|insensitive" "enum values shown"
expect_contains "accepts: (every type)" "a plugin without accepts takes every type"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins payment
expect_status 0 "plugins payment"
expect_contains "accepts: inventory.reserved payment.refund" "accepted event types"
expect_contains "batches: set-based (process_batch" "payment takes its batches as sets"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins auth
expect_status 0 "plugins auth"
expect_contains "batches: one process() call per event" "a database stage without process_batch"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins inventory
expect_status 0 "plugins inventory"
expect_contains "batches: set-based (process_batch" "inventory takes its batches as sets"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins notification
expect_status 0 "plugins notification"
expect_contains "batches: set-based (process_batch" "a stage with process_batch (ABI 1.5)"

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" plugins no-such-plugin
expect_status 1 "unknown plugin"
expect_contains "no plugin named 'no-such-plugin'" "unknown plugin message"

# A directory holding a plugin built for another ABI: the good one is listed, the bad one named.
mkdir -p "$TMP/mixed"
cp "$OF_BUILD_PLUGIN_DIR/keyword-router.so" "$TMP/mixed/"
cp "$OF_TEST_PLUGIN_DIR/bad_abi/"*.so "$TMP/mixed/"
chmod 755 "$TMP/mixed"
chmod 644 "$TMP/mixed/"*.so
run "$ORDERFLOW" -P "$TMP/mixed" plugins
expect_status 1 "directory with a refused plugin"
expect_contains "keyword-router 1.0.0" "good plugin still listed"
expect_contains "ABI 2" "refusal names the ABI found"

# The environment variable is honoured when no -P is given (the test plugin 'good' lives only
# in its own folder, so it is found through the variable or not at all).
ORDERFLOW_PLUGIN_PATH=/nonexistent-dir-of-nothing:$OF_TEST_PLUGIN_DIR/good run "$ORDERFLOW" plugins good
expect_contains "good " "found through ORDERFLOW_PLUGIN_PATH"
expect_contains "/nonexistent-dir-of-nothing" "a missing directory in the path is reported"
finish
