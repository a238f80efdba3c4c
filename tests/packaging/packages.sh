#!/usr/bin/env bash
# The packages, end to end (issue 7): builds the .deb and .rpm packages with CPack, checks their
# contents, control data, scripts and dependencies (lintian, rpm -qp..., rpmlint), installs the
# .debs on this machine, runs the installed daemon as its unit does (under systemd when it is
# PID 1, otherwise the unit's own command line as the orderflow user) against the local services,
# places an order through it, scaffolds a stage with the installed `orderflow new-stage`, builds
# and tests it against the installed SDK alone, runs it in the installed daemon, and purges both
# packages, checking that nothing is left behind.
#
# Needs root and a Debian machine (apt-get, dpkg); skipped (77) otherwise. It installs and removes
# packages system-wide: CI runs it on its own (ctest -L packaging, after the other tests).
set -euo pipefail
umask 022
: "${OF_SOURCE_DIR:?}"
root=$OF_SOURCE_DIR
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "SKIP: needs root on a Debian machine (apt-get, dpkg)"
  exit 77
fi

SERVICES=$root/scripts/services.sh
bash "$SERVICES" start >/dev/null
eval "$(bash "$SERVICES" env)"
BOOT=$OF_KAFKA_BOOTSTRAP
TMP=$(mktemp -d)
chmod 755 "$TMP"
RUN_ID="$(date +%s%N | tail -c 9)$$"
DB="orderflow_pkg$RUN_ID"
PKG_BUILD=${OF_PKG_BUILD_DIR:-${OF_BUILD_DIR:-$root/build}/packaging-build}
UNIT=/lib/systemd/system/orderflowd.service
failures=0
daemon_pid=
notify_pid=
installed=0
systemd=0
[ -d /run/systemd/system ] && systemd=1

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
sql() {
  mariadb -h "$OF_MYSQL_HOST" -P "$OF_MYSQL_PORT" -u "$OF_MYSQL_USER" -p"$OF_MYSQL_PASSWORD" \
    --batch --skip-column-names "$@"
}
stop_daemon() {
  if [ "$systemd" = 1 ]; then
    systemctl stop orderflowd.service 2>/dev/null || true
  elif [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  daemon_pid=
}
purge() {
  rm -f /usr/lib/orderflow/plugins/pkgcheck*.so /etc/orderflow/pipelines/pkgcheck*.yaml \
    /etc/default/orderflow
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 purge -y -qq orderflow orderflow-dev >"$TMP/purge.log" 2>&1
}
cleanup() {
  stop_daemon
  if [ -n "${notify_pid:-}" ]; then kill "$notify_pid" 2>/dev/null || true; fi
  if [ "$installed" = 1 ]; then purge || cat "$TMP/purge.log"; fi
  sql -e "DROP DATABASE IF EXISTS \`$DB\`" 2>/dev/null || true
  if [ "$failures" != 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
    for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 40 "$f"; }; done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# A previous run that died half-way may have left the packages installed.
if dpkg-query -W -f='${Status}' orderflow 2>/dev/null | grep -q installed ||
  dpkg-query -W -f='${Status}' orderflow-dev 2>/dev/null | grep -q installed; then
  echo "== removing orderflow packages left by an earlier run"
  purge
fi

echo "== build the packages ($PKG_BUILD)"
out=$TMP/pkgs
bash "$root/packaging/build-packages.sh" "$out" "$PKG_BUILD" >"$TMP/build.log" 2>&1 ||
  { cat "$TMP/build.log"; exit 1; }
deb=$(ls "$out"/orderflow_*_amd64.deb)
devdeb=$(ls "$out"/orderflow-dev_*_amd64.deb)

echo "== .deb contents and control data"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$TMP/deb.files"
for f in /usr/sbin/orderflowd /usr/bin/orderflow /etc/orderflow/orderflow.yaml \
  /etc/orderflow/pipelines/orders.yaml /etc/orderflow/pipelines/accounts.yaml \
  /usr/lib/orderflow/plugins/orders.so /usr/lib/orderflow/plugins/auth.so \
  /usr/lib/orderflow/plugins/inventory.so /usr/lib/orderflow/plugins/payment.so \
  /usr/lib/orderflow/tlsshim/libssl.so $UNIT /usr/share/man/man8/orderflowd.8.gz \
  /usr/share/man/man1/orderflow.1.gz /usr/share/man/man5/orderflow-pipeline.5.gz \
  /var/lib/orderflow/ /usr/share/doc/orderflow/copyright; do
  grep -qx "$f" "$TMP/deb.files" || fail "orderflow.deb lacks $f"
done
dpkg-deb -c "$devdeb" | awk '{print $6}' | sed 's|^\./|/|' >"$TMP/devdeb.files"
for f in /usr/include/orderflow/stage.h /usr/include/orderflow/host_api.h \
  /usr/include/orderflow/harness.h /usr/lib/x86_64-linux-gnu/pkgconfig/orderflow.pc \
  /usr/lib/x86_64-linux-gnu/cmake/Orderflow/OrderflowConfig.cmake \
  /usr/lib/x86_64-linux-gnu/liborderflow-harness.so /usr/share/orderflow/scaffold/STAGE.c.in \
  /usr/share/orderflow/examples/keyword-router/keyword_router.c; do
  grep -qx "$f" "$TMP/devdeb.files" || fail "orderflow-dev.deb lacks $f"
done
depends=$(dpkg-deb -f "$deb" Depends)
echo "   Depends: $depends"
for d in librdkafka1 libmariadb3 libhiredis0.14 libyaml-0-2 libjwt0 libjansson4 libcivetweb1 \
  libssl3 libcrypt1 adduser; do
  grep -qE "(^|, )$d( |,|$)" <<<"$depends" || fail "orderflow.deb does not depend on $d"
done
grep -q "orderflow (= " <<<"$(dpkg-deb -f "$devdeb" Depends)" || fail "orderflow-dev does not depend on orderflow"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$TMP/conffiles"
for f in /etc/orderflow/orderflow.yaml /etc/orderflow/pipelines/orders.yaml \
  /etc/orderflow/pipelines/accounts.yaml; do
  grep -qx "$f" "$TMP/conffiles" || fail "$f is not a conffile"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst | grep -v '^ *#' >"$TMP/postinst"
grep -Eq 'systemctl[^|]*(start|enable|restart)|deb-systemd-invoke[^|]*start' "$TMP/postinst" &&
  fail "postinst starts or enables the service"

echo "== lintian"
if command -v lintian >/dev/null; then
  lintian --fail-on error,warning --info "$deb" "$devdeb" >"$TMP/lintian.log" 2>&1 ||
    { cat "$TMP/lintian.log"; fail "lintian"; }
  grep -E '^[EWI]:' "$TMP/lintian.log" | sed 's/^/   /' || true
else
  fail "lintian is not installed (scripts/deps.sh installs it)"
fi

echo "== .rpm file list, scripts and dependencies"
rpm=$(ls "$out"/orderflow-0*.x86_64.rpm)
devrpm=$(ls "$out"/orderflow-devel-0*.x86_64.rpm)
rpm -qpl "$rpm" >"$TMP/rpm.files"
for f in /usr/sbin/orderflowd /usr/bin/orderflow /etc/orderflow/orderflow.yaml \
  /usr/lib/orderflow/plugins/orders.so /usr/lib/systemd/system/orderflowd.service \
  /usr/share/man/man8/orderflowd.8.gz /var/lib/orderflow; do
  grep -qx "$f" "$TMP/rpm.files" || fail "orderflow.rpm lacks $f"
done
for d in /usr /usr/bin /usr/sbin /etc /var /var/lib /usr/lib/systemd/system /usr/share/man/man8; do
  grep -qx "$d" "$TMP/rpm.files" && fail "orderflow.rpm claims the system folder $d"
done
rpm -qpl "$devrpm" >"$TMP/devrpm.files"
for f in /usr/include/orderflow/stage.h /usr/lib64/pkgconfig/orderflow.pc \
  /usr/lib64/cmake/Orderflow/OrderflowConfig.cmake /usr/lib64/liborderflow-harness.so \
  /usr/share/orderflow/scaffold/STAGE.c.in; do
  grep -qx "$f" "$TMP/devrpm.files" || fail "orderflow-devel.rpm lacks $f"
done
rpm -qp --queryformat '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" >"$TMP/rpm.flags"
for f in /etc/orderflow/orderflow.yaml /etc/orderflow/pipelines/orders.yaml; do
  grep -qx "cn $f" "$TMP/rpm.flags" || fail "$f is not %config(noreplace) in the rpm"
done
rpm -qp --scripts "$rpm" | grep -v '^ *#' >"$TMP/rpm.scripts"
grep -q "useradd -r" "$TMP/rpm.scripts" || fail "the rpm does not add the system user"
grep -q "daemon-reload" "$TMP/rpm.scripts" || fail "the rpm does not reload systemd"
grep -Eq 'systemctl[^|]*(start|enable|restart) ' "$TMP/rpm.scripts" && fail "the rpm starts the service"
rpm -qpR "$rpm" >"$TMP/rpm.requires"
for d in librdkafka mariadb-connector-c hiredis libyaml libjwt jansson civetweb openssl-libs \
  libxcrypt shadow-utils; do
  grep -qx "$d" "$TMP/rpm.requires" || fail "orderflow.rpm does not require $d"
done
grep -q '^orderflow = ' <(rpm -qpR "$devrpm") || fail "orderflow-devel does not require orderflow"
echo "   Requires: $(grep -v rpmlib "$TMP/rpm.requires" | tr '\n' ' ')"
if command -v rpmlint >/dev/null; then
  rpmlint -r "$root/packaging/rpm/orderflow.rpmlintrc" "$rpm" "$devrpm" >"$TMP/rpmlint.log" 2>&1 ||
    { cat "$TMP/rpmlint.log"; fail "rpmlint"; }
  tail -1 "$TMP/rpmlint.log" | sed 's/^/   /'
else
  echo "   rpmlint is not installed: skipped"
fi

echo "== install the .debs"
cp "$deb" "$devdeb" "$TMP/"
(cd "$TMP" && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "./$(basename "$deb")" \
  "./$(basename "$devdeb")" >"$TMP/install.log" 2>&1) || { cat "$TMP/install.log"; exit 1; }
installed=1
getent passwd orderflow | grep -q ':/var/lib/orderflow:/usr/sbin/nologin$' ||
  fail "no system user orderflow with home /var/lib/orderflow"
[ "$(getent passwd orderflow | cut -d: -f3)" -lt 1000 ] || fail "orderflow is not a system user"
[ "$(stat -c '%U:%G %a' /var/lib/orderflow)" = "orderflow:orderflow 750" ] ||
  fail "/var/lib/orderflow is $(stat -c '%U:%G %a' /var/lib/orderflow)"
[ "$(stat -c '%U:%G %a' /etc/orderflow/secrets/jwt-secret)" = "orderflow:orderflow 600" ] ||
  fail "jwt-secret is $(stat -c '%U:%G %a' /etc/orderflow/secrets/jwt-secret)"
pgrep -u orderflow >/dev/null && fail "the installation started the service"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$UNIT" >"$TMP/verify.log" 2>&1 || { cat "$TMP/verify.log"; fail "systemd-analyze verify"; }
fi
man -w orderflowd >/dev/null 2>&1 || fail "man orderflowd not found"
/usr/sbin/orderflowd --version | grep -q "orderflowd" || fail "orderflowd --version"

echo "== the service's environment and database"
sql -e "CREATE DATABASE \`$DB\`"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$port"
ISS=https://pkgtest.orderflow
cat >/etc/default/orderflow <<ENV
ORDERFLOW_KAFKA_BOOTSTRAP=$BOOT
ORDERFLOW_MYSQL_HOST=$OF_MYSQL_HOST
ORDERFLOW_MYSQL_PORT=$OF_MYSQL_PORT
ORDERFLOW_MYSQL_USER=$OF_MYSQL_USER
ORDERFLOW_MYSQL_PASSWORD=$OF_MYSQL_PASSWORD
ORDERFLOW_MYSQL_DATABASE=$DB
ORDERFLOW_REDIS_HOST=$OF_REDIS_HOST
ORDERFLOW_REDIS_PORT=$OF_REDIS_PORT
ORDERFLOW_REDIS_KEY_PREFIX=pkg$RUN_ID:
ORDERFLOW_HTTP_LISTEN=127.0.0.1:$port
ORDERFLOW_JWT_ISSUER=$ISS
ORDERFLOW_JWT_AUDIENCE=shop-api
ENV
chmod 600 /etc/default/orderflow

# start_daemon: the unit under systemd, else its ExecStartPre and ExecStart command lines, as
# its User (setpriv), in its WorkingDirectory, with its EnvironmentFile and UMask, and NOTIFY_SOCKET set
# to a socket of this test, which must get READY=1.
exec_line() { sed -n "s/^$1=//p" "$UNIT"; }
start_daemon() {
  if [ "$systemd" = 1 ]; then
    systemctl daemon-reload
    systemctl start orderflowd.service || { journalctl -u orderflowd -n 50 --no-pager; return 1; }
    return 0
  fi
  local sock=$TMP/notify/sock
  if [ -z "$notify_pid" ]; then
    # One listener for the whole test (its output must not outlive it: ctest waits for it).
    mkdir -m 755 "$TMP/notify"
    python3 - "$sock" "$TMP/notify.log" >/dev/null 2>&1 <<'PY' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode().replace("\n", " ") + "\n")
PY
    notify_pid=$!
    for _ in $(seq 1 50); do [ -S "$sock" ] && break; sleep 0.1; done
  fi
  : >"$TMP/notify.log"
  (
    set -a
    . /etc/default/orderflow
    set +a
    cd /var/lib/orderflow
    umask 027
    # shellcheck disable=SC2046
    setpriv --reuid=orderflow --regid=orderflow --init-groups --no-new-privs -- \
      $(exec_line ExecStartPre) >"$TMP/check.log" 2>&1
  ) || { cat "$TMP/check.log"; return 1; }
  (
    set -a
    . /etc/default/orderflow
    set +a
    cd /var/lib/orderflow
    umask 027
    export NOTIFY_SOCKET=$sock
    # setpriv execs the daemon itself (runuser would stay its parent and turn a slow stop into
    # a SIGKILL), with NoNewPrivileges as the unit has it.
    # shellcheck disable=SC2046
    exec setpriv --reuid=orderflow --regid=orderflow --init-groups --no-new-privs -- \
      $(exec_line ExecStart)
  ) >>"$TMP/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do
    grep -q "READY=1" "$TMP/notify.log" 2>/dev/null && return 0
    kill -0 "$daemon_pid" 2>/dev/null || { echo "orderflowd exited:"; tail -40 "$TMP/daemon.log"; return 1; }
    sleep 0.2
  done
  echo "orderflowd sent no READY=1 in 120 s"
  return 1
}

echo "== start the installed service ($([ "$systemd" = 1 ] && echo systemd || echo "no systemd: the unit's command line as orderflow"))"
start_daemon || { fail "the installed daemon did not start"; exit 1; }
[ "$systemd" = 1 ] || [ "$(ps -o uid=,comm= -p "$daemon_pid" | tr -s ' ' | sed 's/^ //')" = "$(id -u orderflow) orderflowd" ] ||
  fail "orderflowd does not run as orderflow: $(ps -o uid=,comm= -p "$daemon_pid")"
curl -fsS "$BASE/healthz" >/dev/null || fail "/healthz"
for _ in $(seq 1 150); do
  curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$BASE/readyz" >/dev/null || fail "/readyz: $(curl -s "$BASE/readyz")"

echo "== place an order through it"
call() {
  local args=(-s -o "$TMP/body" -w '%{http_code}' -X "$1")
  [ -n "$3" ] && args+=(-H "Authorization: Bearer $3")
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  curl "${args[@]}" "$BASE$2" >"$TMP/status"
  cat "$TMP/body"
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
admin=$(/usr/bin/orderflow token --key-file /etc/orderflow/secrets/jwt-secret --sub pkg-admin \
  --roles admin --iss "$ISS" --aud shop-api --ttl 10m)
sku="PKG-$RUN_ID"
call POST /api/v1/products "$admin" \
  "{\"sku\":\"$sku\",\"name\":\"Package test\",\"price_cents\":2500,\"currency\":\"EUR\",\"initial_stock\":10}" >/dev/null
[ "$(cat "$TMP/status")" = 201 ] || fail "create product: HTTP $(cat "$TMP/status") $(cat "$TMP/body")"
email="pkg-$RUN_ID@test.orderflow"
call POST /api/v1/auth/register "" \
  "{\"email\":\"$email\",\"password\":\"a package test password\",\"display_name\":\"Pkg\"}" >/dev/null
token=$(call POST /api/v1/auth/login "" "{\"email\":\"$email\",\"password\":\"a package test password\"}" |
  json '["access_token"]')
id=$(call POST /api/v1/orders "$token" "{\"items\":[{\"sku\":\"$sku\",\"quantity\":2}]}" | json '["order_id"]')
[ "$(cat "$TMP/status")" = 202 ] || fail "place order: HTTP $(cat "$TMP/status") $(cat "$TMP/body")"
st=
for _ in $(seq 1 300); do
  st=$(call GET "/api/v1/orders/$id" "$token" | json '["status"]' 2>/dev/null || true)
  case "$st" in CONFIRMED | REJECTED | CANCELLED) break ;; esac
  sleep 0.2
done
echo "   order $id: $st"
[ "$st" = CONFIRMED ] || fail "the order ended $st, not CONFIRMED"

echo "== a stage scaffolded by the installed orderflow new-stage, built against orderflow-dev"
name="pkgcheck$RUN_ID"
stage=$TMP/$name
unset ORDERFLOW_SCAFFOLD_DIR ORDERFLOW_PLUGIN_PATH
(cd "$TMP" && /usr/bin/orderflow new-stage "$name" >/dev/null) || fail "orderflow new-stage"
# The installed CMake package, found without any hint, and nothing of the source tree.
(cd "$stage" && env -u CMAKE_PREFIX_PATH cmake -S . -B build >"$TMP/stage-build.log" 2>&1 &&
  cmake --build build >>"$TMP/stage-build.log" 2>&1) || { cat "$TMP/stage-build.log"; fail "the scaffolded stage does not build"; }
grep -rq "$root" "$stage/build/CMakeCache.txt" && fail "the scaffolded build refers to the source tree"
ctest --test-dir "$stage/build" --output-on-failure >"$TMP/stage-test.log" 2>&1 ||
  { cat "$TMP/stage-test.log"; fail "the scaffolded stage's harness test"; }
install -m 0644 "$stage/build/$name.so" /usr/lib/orderflow/plugins/
install -m 0644 "$stage/pipeline.yaml" "/etc/orderflow/pipelines/$name.yaml"
/usr/bin/orderflow -c /etc/orderflow/orderflow.yaml plugins "$name" >/dev/null || fail "orderflow plugins $name"

echo "== the installed daemon runs it"
stop_daemon
[ "$systemd" = 1 ] || grep -q "STOPPING=1" "$TMP/notify.log" || fail "no STOPPING=1 at the stop"
start_daemon || { fail "the daemon did not start with the new stage"; exit 1; }
for i in 1 2 3; do echo "k-$i|event $i"; done | kcat -P -b "$BOOT" -t "$name.in" -K '|' -z none
got=
for _ in $(seq 1 150); do
  got=$(kcat -C -b "$BOOT" -t "$name.out" -o beginning -e -q -f '%k|%s\n' 2>/dev/null | sort)
  [ "$(wc -l <<<"$got")" -ge 3 ] && [ -n "$got" ] && break
  sleep 0.2
done
want=$(printf '%s\n' "k-1|$name: event 1" "k-2|$name: event 2" "k-3|$name: event 3")
[ "$got" = "$want" ] || fail "the scaffolded stage's output: got [$got], want [$want]"
stop_daemon

echo "== purge"
purge || { cat "$TMP/purge.log"; fail "apt-get purge"; }
installed=0
for p in /etc/orderflow /usr/lib/orderflow /var/lib/orderflow /usr/share/orderflow \
  /usr/include/orderflow /usr/sbin/orderflowd /usr/bin/orderflow $UNIT \
  /usr/lib/x86_64-linux-gnu/cmake/Orderflow /usr/share/doc/orderflow; do
  [ -e "$p" ] && fail "$p is left after the purge"
done
getent passwd orderflow >/dev/null && fail "the user orderflow is left after the purge"
getent group orderflow >/dev/null && fail "the group orderflow is left after the purge"
dpkg-query -W orderflow >/dev/null 2>&1 && fail "dpkg still knows orderflow"

if [ "$failures" != 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
