#!/usr/bin/env bash
# Installs what orderflow needs to build and test on Debian 12, as root. Idempotent and quiet
# when everything is there already.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  librdkafka-dev libmariadb-dev libhiredis-dev libyaml-dev libjwt-dev libjansson-dev
  libcivetweb-dev libcmocka-dev libcrypt-dev libssl-dev
  clang-format kcat curl openssl python3 python3-matplotlib
  rpm lintian rpmlint
  prometheus                              # promtool and a server for tests/kafka/observability.sh
  chromium                                # headless, for the dashboard test (tests/kafka/dashboard.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
