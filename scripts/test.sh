#!/usr/bin/env bash
# Every test of the project, as CI runs it: dependencies, a normal build and its tests, the same
# tests under AddressSanitizer + UndefinedBehaviorSanitizer, and the example stage built out of
# tree against the installed SDK (a ctest of its own in both builds).
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

bash scripts/deps.sh

echo "== build (RelWithDebInfo)"
bash scripts/build.sh "$root/build"
echo "== tests"
ctest --test-dir "$root/build" --output-on-failure -j"$jobs"

echo "== build (Debug, ASan + UBSan)"
bash scripts/build.sh "$root/build-asan" -DOF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -j"$jobs"
