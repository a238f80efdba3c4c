# Helpers for the CLI tests (sourced). Each check prints what it expected and what it got.
set -euo pipefail
: "${ORDERFLOW:?}" "${OF_SOURCE_DIR:?}" "${OF_BUILD_PLUGIN_DIR:?}"
failures=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# run CMD...: runs a command, keeping its status in $status and its output in $out.
run() {
  set +e
  out=$("$@" 2>&1)
  status=$?
  set -e
}

expect_status() {
  if [ "$status" != "$1" ]; then
    echo "FAIL: $2: exit status $status, expected $1"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}

expect_contains() {
  if ! grep -qF -- "$1" <<<"$out"; then
    echo "FAIL: $2: output lacks: $1"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}

expect_lacks() {
  if grep -qF -- "$1" <<<"$out"; then
    echo "FAIL: $2: output has: $1"
    failures=$((failures + 1))
  fi
}

finish() {
  if [ "$failures" != 0 ]; then
    echo "$failures check(s) failed"
    exit 1
  fi
  echo "all checks passed"
}
