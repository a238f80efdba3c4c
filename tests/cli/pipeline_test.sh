#!/usr/bin/env bash
# orderflow test runs a pipeline's declared tests through the embedded bus and fails when an
# expected event differs, is missing, or an unexpected one appears.
source "$(dirname "$0")/testlib.bash"
f=$OF_SOURCE_DIR/pipelines/examples/triage.yaml

run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" test "$f"
expect_status 0 "declared tests pass"
expect_contains "PASS triage: urgent messages about an outage reach messages.outage" "first test"
expect_contains "PASS triage: oversized messages are dead-lettered with the reason" "second test"
expect_contains "2 passed, 0 failed" "summary"

# An expectation that differs from what the stage emits.
# (only the expectation, the last mention, is changed)
python3 - "$f" "$TMP/differs.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
i = s.rindex("URGENT: the shop is down")
open(sys.argv[2], "w").write(s[:i] + "URGENT: the shop is up" + s[i + len("URGENT: the shop is down"):])
PY
grep -q 'shop is up' "$TMP/differs.yaml"
run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" test "$TMP/differs.yaml"
expect_status 1 "a differing event fails"
expect_contains "FAIL triage: urgent messages about an outage" "failing test named"
expect_contains "differs" "difference explained"
expect_contains "shop is down" "actual payload shown"
expect_contains "1 passed, 1 failed" "summary with a failure"

# A header expectation that does not hold.
sed 's/of_dlq_attempts: "1"/of_dlq_attempts: "7"/' "$f" >"$TMP/header.yaml"
run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" test "$TMP/header.yaml"
expect_status 1 "a differing header fails"
expect_contains "header 'of_dlq_attempts'" "header named"

# Nothing may arrive on a topic declared empty.
sed 's/expect_empty: \[messages.urgent, messages.routine\]/expect_empty: [messages.dlq]/' "$f" >"$TMP/empty.yaml"
run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" test --filter oversized "$TMP/empty.yaml"
expect_status 1 "an event on a must-be-empty topic fails"
expect_contains "expected no event on 'messages.dlq'" "empty topic violation"
expect_contains "0 passed, 1 failed" "filter runs only one test"

# An event nobody expected.
python3 - "$f" "$TMP/extra.yaml" <<'PY'
import sys
s = open(sys.argv[1]).read()
s = s.replace("""        - key: m-3
          value: {"text": "urgent: refund please"}
""", """        - key: m-3
          value: {"text": "urgent: refund please"}
        - key: m-4
          value: {"text": "routine chatter"}
""", 1)
open(sys.argv[2], "w").write(s)
PY
run "$ORDERFLOW" -P "$OF_BUILD_PLUGIN_DIR" test --filter outage "$TMP/extra.yaml"
expect_status 1 "an unexpected event fails"
expect_contains "unexpected event on 'messages.routine'" "unexpected event named"
finish
