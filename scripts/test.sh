#!/usr/bin/env bash
# Every test of the project, as CI runs it: dependencies, the local services (Kafka, MariaDB,
# Redis on loopback), a normal build and all its tests, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. The example stage is built out of tree against
# the installed SDK by a test of its own in both builds.
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

bash scripts/deps.sh
echo "== services"
bash scripts/services.sh start

run_tests() {
  local dir=$1
  # Tests that share the broker (and restart it) run one at a time after the others.
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" -LE 'kafka|packaging'
  ctest --test-dir "$dir" --output-on-failure -L kafka
}

echo "== build (RelWithDebInfo)"
bash scripts/build.sh "$root/build"
echo "== tests"
run_tests "$root/build"

echo "== build (Debug, ASan + UBSan)"
bash scripts/build.sh "$root/build-asan" -DOF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_tests "$root/build-asan"

# The .deb and .rpm packages: built, checked, installed on this machine, run, and purged
# (tests/packaging/packages.sh); last, since it installs and removes packages system-wide.
echo "== packages"
ctest --test-dir "$root/build" --output-on-failure -L packaging
