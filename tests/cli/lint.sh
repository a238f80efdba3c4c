#!/usr/bin/env bash
# orderflow lint: every mistake of a broken pipeline with its file:line:column and exit 1; the
# shipped pipelines/ exit 0; host configurations are linted with their pipelines.
source "$(dirname "$0")/testlib.bash"
P=(-P "$OF_BUILD_PLUGIN_DIR")

run "$ORDERFLOW" "${P[@]}" lint "$OF_SOURCE_DIR/pipelines"
expect_status 0 "lint pipelines/"
expect_contains "0 errors" "pipelines/ is clean"

f=$OF_SOURCE_DIR/tests/fixtures/cli/broken_pipeline.yaml
run "$ORDERFLOW" "${P[@]}" lint "$f"
expect_status 1 "lint of a broken pipeline"
expect_contains "$f:13:18: error: stage 'first': output 'unmatched' goes to undeclared topic 'nowhere'" "undeclared output topic"
expect_contains "$f:14:5: error: unknown key 'concurency' in stage 'first' (did you mean 'concurrency'?); allowed: name, plugin," "unknown key with hint and allowed keys"
expect_contains "$f:17:20: error: stage 'first' config: option 'max_payload': expected a size" "bad size in config: against the option table"
expect_contains "$f:18:11: error: duplicate stage name 'first' (first defined at line 8)" "duplicate stage"
expect_contains "$f:19:13: error: stage 'first': unknown plugin 'keyword-routr' (did you mean 'keyword-router'?)" "unknown plugin"
expect_contains "$f:21:18: error: stage 'first' concurrency: expected an integer" "wrong type"
expect_contains "$f:23:21: error: stage 'first' retry.max_attempts must be between 1 and 1000; got 0" "out of range"
expect_contains "$f:6:3: warning: topic 'spare' is declared but no stage reads or writes it" "unused topic warning"
expect_contains "7 errors, 1 warning" "every problem counted"

# A required option missing, and an enum value not allowed: the option table is enforced.
cat >"$TMP/opts.yaml" <<'YAML'
pipeline: opts
topics:
  a: { external: true }
  b: {}
  c: {}
stages:
  - name: s
    plugin: keyword-router
    inputs: [a]
    outputs: { matched: b, unmatched: c }
    config:
      case: shouty
YAML
run "$ORDERFLOW" "${P[@]}" lint "$TMP/opts.yaml"
expect_status 1 "option table violations"
expect_contains "$TMP/opts.yaml:12:13: error:" "bad enum value position"
expect_contains "sensitive, insensitive" "enum values listed"
expect_contains "'keyword'" "missing required option named"

# Unmapped plugin output and a topic consumed but never produced (a warning only).
cat >"$TMP/unmapped.yaml" <<'YAML'
pipeline: unmapped
topics:
  a: {}
  b: {}
stages:
  - name: s
    plugin: keyword-router
    inputs: [a]
    outputs: { matched: b }
    config: { keyword: k }
YAML
run "$ORDERFLOW" "${P[@]}" lint "$TMP/unmapped.yaml"
expect_status 1 "unmapped output"
expect_contains "unmatched" "the unmapped output is named"
expect_contains "warning: topic 'a' is consumed by stage 's' but nothing produces it" "consumed-never-produced warning"

# Warnings alone exit 0.
sed 's/unmatched: c }/unmatched: c }/; s/outputs: { matched: b }/outputs: { matched: b, unmatched: b }/' "$TMP/unmapped.yaml" >"$TMP/warn.yaml"
run "$ORDERFLOW" "${P[@]}" lint "$TMP/warn.yaml"
expect_status 0 "warnings alone"
expect_contains "0 errors, 1 warning" "one warning"

# Broken YAML and hostile files get a clear error, never a crash.
printf 'pipeline: x\nstages: [\n' >"$TMP/syntax.yaml"
run "$ORDERFLOW" "${P[@]}" lint "$TMP/syntax.yaml"
expect_status 1 "syntax error"
expect_contains "$TMP/syntax.yaml:" "syntax error position"
python3 -c "
import sys
lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]']
for i in range(1, 10):
    lines.append('%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]' % ((chr(97+i),)*2 + (chr(96+i),)*10))
lines.append('stages: *j')
open(sys.argv[1], 'w').write('\n'.join(lines) + '\n')" "$TMP/laughs.yaml"
run "$ORDERFLOW" "${P[@]}" lint "$TMP/laughs.yaml"
expect_status 1 "billion laughs"
expect_contains "$TMP/laughs.yaml" "billion laughs named"
head -c 5000000 /dev/zero | tr '\0' 'a' >"$TMP/huge.yaml"
run "$ORDERFLOW" "${P[@]}" lint "$TMP/huge.yaml"
expect_status 1 "oversized file"
printf 'pipeline: bin\x00\x01\n' >"$TMP/nul.yaml"
run "$ORDERFLOW" "${P[@]}" lint "$TMP/nul.yaml"
expect_status 1 "NUL byte"

# Interpolation: an unset variable without default is an error with its position.
sed 's/keyword: down/keyword: ${OF_LINT_UNSET_VAR}/' "$OF_SOURCE_DIR/pipelines/examples/triage.yaml" >"$TMP/env.yaml"
run env -u OF_LINT_UNSET_VAR "$ORDERFLOW" "${P[@]}" lint "$TMP/env.yaml"
expect_status 1 "unset variable"
expect_contains "OF_LINT_UNSET_VAR" "variable named"
OF_LINT_UNSET_VAR=down run "$ORDERFLOW" "${P[@]}" lint "$TMP/env.yaml"
expect_status 0 "variable set"

# A host configuration is linted with the pipelines it lists, using its own plugin_dirs.
cat >"$TMP/host.yaml" <<YAML
plugin_dirs: [ "$OF_BUILD_PLUGIN_DIR" ]
pipelines: [ "$f" ]
YAML
run "$ORDERFLOW" lint "$TMP/host.yaml"
expect_status 1 "host config with a broken pipeline"
expect_contains "$f:18:11: error: duplicate stage name" "its pipeline linted"

run "$ORDERFLOW" "${P[@]}" lint "$TMP/does-not-exist.yaml"
expect_status 1 "missing file"
expect_contains "no such file" "missing file said"
finish
