#!/usr/bin/env bash
# orderflow graph draws the example pipeline as DOT and Mermaid.
source "$(dirname "$0")/testlib.bash"
f=$OF_SOURCE_DIR/pipelines/examples/triage.yaml

run "$ORDERFLOW" graph "$f"
expect_status 0 "graph dot"
expect_contains 'digraph "triage" {' "dot header"
expect_contains 't0 [shape=ellipse, label="messages", style=dashed];' "external topic is dashed"
expect_contains 's0 [shape=box, style=rounded, label="urgency\n(keyword-router x2)"];' "stage node"
expect_contains 't0 -> s0;' "input edge"
expect_contains 's0 -> t1 [label="matched"];' "output edge"
expect_contains '[style=dashed, color=red, label="dead letter"]' "dead-letter edge"
# DOT output is balanced: one opening and one closing brace line.
[ "$(tail -n1 <<<"$out")" = "}" ] || { echo "FAIL: dot not closed"; failures=$((failures + 1)); }

run "$ORDERFLOW" graph --format mermaid "$f"
expect_status 0 "graph mermaid"
expect_contains "flowchart LR" "mermaid header"
expect_contains 't0(["messages"])' "mermaid topic"
expect_contains 's1["outages<br/>keyword-router x1"]' "mermaid stage"
expect_contains 's0 -- "unmatched" --> t2' "mermaid output edge"
expect_contains 's1 -. "dead letter" .-> t' "mermaid dead letter"

run "$ORDERFLOW" graph --format svg "$f"
expect_status 2 "unknown format"
expect_contains "unknown format 'svg'" "unknown format message"

printf 'pipeline: [\n' >"$TMP/bad.yaml"
run "$ORDERFLOW" graph "$TMP/bad.yaml"
expect_status 1 "graph of broken YAML"
expect_contains "$TMP/bad.yaml:" "position of the syntax error"
finish
