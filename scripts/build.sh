#!/usr/bin/env bash
# Configures and builds orderflow into build/ (or $1), Release with debug info by default.
#   scripts/build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
shift || true
cmake -S "$root" -B "$dir" -G Ninja "$@" >/dev/null
cmake --build "$dir" -- -j"$(nproc)"
