#!/usr/bin/env bash
# `orderflow new-stage NAME` writes a stage project that, as written and with nothing else from
# the source tree, builds against the installed SDK, passes its harness test, is accepted by the
# loader, and passes its pipeline's declared test. Bad names and existing folders are refused.
set -euo pipefail
: "${OF_BUILD_DIR:?}" "${OF_SOURCE_DIR:?}" "${ORDERFLOW:?}"
source "$(dirname "$0")/testlib.bash"
umask 022

flags=()
if [ "${OF_SANITIZE:-0}" = 1 ]; then
  san="-fsanitize=address,undefined"
  flags=(-DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_MODULE_LINKER_FLAGS="$san")
fi

echo "== refused names and folders"
for bad in "" "Bad" "-x" "_x" "a b" "a/b" "a.b" "$(printf 'a%.0s' $(seq 1 64))"; do
  run "$ORDERFLOW" new-stage --dir "$TMP" -- "$bad"
  expect_status 2 "new-stage '$bad'"
  expect_contains "bad stage name" "new-stage '$bad'"
done
[ -z "$(ls -A "$TMP")" ] || { echo "FAIL: a refused name left files: $(ls -A "$TMP")"; failures=$((failures + 1)); }
mkdir "$TMP/taken"
run "$ORDERFLOW" new-stage --dir "$TMP" taken
expect_status 1 "existing folder"
expect_contains "already exists" "existing folder"
run "$ORDERFLOW" new-stage --dir "$TMP/missing" fine
expect_status 1 "missing --dir"
run "$ORDERFLOW" new-stage --templates "$TMP/taken" --dir "$TMP" fine
expect_status 1 "empty template folder"
expect_contains "no templates" "empty template folder"
[ ! -e "$TMP/fine" ] || { echo "FAIL: a failed new-stage left $TMP/fine"; failures=$((failures + 1)); }

echo "== the build tree's CLI scaffolds from the source tree's templates"
run "$ORDERFLOW" new-stage --dir "$TMP" order-tagger
expect_status 0 "new-stage order-tagger"
for f in order_tagger.c test_order_tagger.c CMakeLists.txt pipeline.yaml README.md; do
  [ -f "$TMP/order-tagger/$f" ] || { echo "FAIL: order-tagger/$f missing"; failures=$((failures + 1)); }
done
if grep -rq '@STAGE_\|@ORDERFLOW_VERSION@' "$TMP/order-tagger"; then
  echo "FAIL: placeholders left:"; grep -rn '@STAGE_\|@ORDERFLOW_VERSION@' "$TMP/order-tagger"
  failures=$((failures + 1))
fi
run "$ORDERFLOW" new-stage --dir "$TMP" order-tagger
expect_status 1 "second new-stage of the same name"

echo "== the installed SDK and CLI, nothing from the source tree"
prefix=$TMP/prefix
cmake --install "$OF_BUILD_DIR" --prefix "$prefix" >/dev/null
test -f "$prefix/share/orderflow/scaffold/STAGE.c.in"
# The installed CLI finds the installed templates next to itself (PREFIX/share).
(cd "$TMP" && "$prefix/bin/orderflow" new-stage fraud_check >/dev/null)
stage=$TMP/fraud_check
cmake -S "$stage" -B "$stage/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="-Werror ${san:-}" \
  "${flags[@]}" >/dev/null
cmake --build "$stage/build" >/dev/null
run ctest --test-dir "$stage/build" --output-on-failure
expect_status 0 "the scaffolded harness test"
test -f "$stage/build/fraud_check.so"
exports=$(nm -D --defined-only "$stage/build/fraud_check.so" | awk '$2 == "T" {print $3}')
[ "$exports" = "orderflow_stage_entry" ] || { echo "FAIL: unexpected exports: $exports"; failures=$((failures + 1)); }

mkdir "$TMP/plugins"
cp "$stage/build/fraud_check.so" "$TMP/plugins/"
chmod 755 "$TMP/plugins" && chmod 644 "$TMP/plugins/fraud_check.so"
run "$prefix/bin/orderflow" -P "$TMP/plugins" plugins fraud_check
expect_status 0 "the loader accepts the scaffolded plugin"
expect_contains "prefix" "its option table"
run "$prefix/bin/orderflow" -P "$TMP/plugins" lint "$stage/pipeline.yaml"
expect_status 0 "its pipeline snippet lints"
run "$prefix/bin/orderflow" -P "$TMP/plugins" test "$stage/pipeline.yaml"
expect_status 0 "its pipeline's declared test"
expect_contains "1 passed, 0 failed" "its pipeline's declared test"

finish
