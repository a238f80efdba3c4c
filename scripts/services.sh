#!/usr/bin/env bash
# orderflow local services: Kafka (KRaft, single node), MariaDB and Redis,
# on loopback only, with all state under a project-local folder.
#
#   scripts/services.sh install                 apt packages + Kafka jars (idempotent)
#   scripts/services.sh start   [SERVICE...]    install if needed, start, wait until answering
#   scripts/services.sh stop    [--keep-data|--purge] [SERVICE...]
#   scripts/services.sh restart [SERVICE...]    stop (keeping data) and start again
#   scripts/services.sh status  [SERVICE...]    exit 0 only if all named services answer
#   scripts/services.sh env                     export lines, for: eval "$(scripts/services.sh env)"
#   scripts/services.sh kafka-cli CLASS [ARG...]  run a Kafka CLI class from the fetched jars
#
# SERVICE is kafka, mariadb (alias mysql) or redis; none means all three.
# See docs/services.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

SVC_DIR=${OF_SERVICES_DIR:-$REPO/.local/services}
case $SVC_DIR in /*) ;; *) SVC_DIR=$PWD/$SVC_DIR ;; esac
SVC_DIR=${SVC_DIR%/}

KAFKA_PORT=${OF_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${OF_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_START_TIMEOUT=${OF_KAFKA_START_TIMEOUT:-90}
MYSQL_PORT=${OF_MYSQL_PORT:-13306}
MYSQL_USER=${OF_MYSQL_USER:-orderflow}
MYSQL_PASSWORD=${OF_MYSQL_PASSWORD:-orderflow}
MYSQL_DATABASE=${OF_MYSQL_DATABASE:-orderflow}
MYSQL_START_TIMEOUT=${OF_MYSQL_START_TIMEOUT:-60}
REDIS_PORT=${OF_REDIS_PORT:-16379}
REDIS_START_TIMEOUT=${OF_REDIS_START_TIMEOUT:-30}
STOP_TIMEOUT=${OF_SERVICES_STOP_TIMEOUT:-30}

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_PROPS_TEMPLATE=$SCRIPT_DIR/kafka/server.properties.in
KAFKA_HEAP_OPTS=${OF_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}

KDIR=$SVC_DIR/kafka
MDIR=$SVC_DIR/mariadb
RDIR=$SVC_DIR/redis
CACHE_DIR=$SVC_DIR/cache
MARKER=$SVC_DIR/.orderflow-services

ALL_SERVICES=(kafka mariadb redis)
APT_UPDATED=0

say() { printf '%s\n' "$*"; }
warn() { printf 'services.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

now() { date +%s; }

# ---------------------------------------------------------------- helpers

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $*"
  fi
}

ensure_dir() {
  case $SVC_DIR in
    '' | / | "${HOME:-/}" | "$REPO") die "refusing to use services dir '$SVC_DIR'" ;;
  esac
  mkdir -p "$SVC_DIR"
  [[ -e $MARKER ]] || printf 'orderflow services state (scripts/services.sh)\n' >"$MARKER"
}

# Serialise start/stop/install across concurrent invocations. Daemons are
# launched with fd 9 closed so that they don't inherit (and hold) the lock.
take_lock() {
  ensure_dir
  exec 9>"$SVC_DIR/.lock"
  flock -w 600 9 || die "could not lock $SVC_DIR/.lock"
}

# pid_alive PIDFILE PATTERN: print the pid if it runs and its command line
# contains PATTERN (guards against a reused pid).
pid_alive() {
  local pidfile=$1 pattern=$2 pid cmd
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$pattern"* ]] || return 1
  printf '%s\n' "$pid"
}

tcp_open() {
  # bash's /dev/tcp; the subshell closes the descriptor again
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
  local file=$1
  if [[ -s $file ]]; then
    warn "---- last lines of $file ----"
    tail -n "${2:-40}" "$file" >&2
    warn "----"
  else
    warn "(no log at $file)"
  fi
}

# term_pid PID; wait_gone PID NAME
term_pid() { kill -TERM "$1" 2>/dev/null || true; }
wait_gone() {
  local pid=$1 name=$2 deadline
  deadline=$(($(now) + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (($(now) >= deadline)); then
      warn "$name (pid $pid) did not exit within ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
}

# ---------------------------------------------------------------- install

java_major() {
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
  printf '%s\n' "${v%%.*}"
}

apt_install() {
  if ((APT_UPDATED == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$SVC_DIR/apt.log" 2>&1 ||
      { log_tail "$SVC_DIR/apt.log"; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >>"$SVC_DIR/apt.log" 2>&1 ||
    { log_tail "$SVC_DIR/apt.log"; die "apt-get install $* failed"; }
}

# The Debian packages may start their own system services on install (not in
# containers with a policy-rc.d); ours run on other ports, but don't leave the
# system instances running behind the developer's back.
disable_system_service() {
  local unit
  for unit in "$@"; do
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
      as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$unit ]]; then
      as_root /etc/init.d/"$unit" stop >/dev/null 2>&1 || true
    fi
  done
}

install_packages() {
  local pkgs=()
  if ! command -v java >/dev/null 2>&1 || (($(java_major) < 17)); then
    pkgs+=(openjdk-17-jre-headless)
  fi
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  command -v flock >/dev/null 2>&1 || pkgs+=(util-linux)
  local need_mariadb=0 need_redis=0
  if ! command -v mariadbd >/dev/null 2>&1 || ! command -v mariadb-install-db >/dev/null 2>&1 ||
    ! command -v mariadb-admin >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1; then
    need_mariadb=1
    pkgs+=(mariadb-server mariadb-client)
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    need_redis=1
    pkgs+=(redis-server redis-tools)
  fi
  ((${#pkgs[@]})) || return 0
  say "installing Debian packages: ${pkgs[*]}"
  apt_install "${pkgs[@]}"
  ((need_mariadb)) && disable_system_service mariadb mysql
  ((need_redis)) && disable_system_service redis-server
  return 0
}

kafka_version() {
  if [[ -n ${OF_KAFKA_VERSION:-} ]]; then
    printf '%s\n' "$OF_KAFKA_VERSION"
  else
    sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n1
  fi
}

# jars dir is keyed by the pom's content and the version, so editing the pom
# fetches again while a restart reuses the cache
kafka_jars_dir() {
  local key
  key=$( (cat "$KAFKA_POM"; kafka_version) | sha256sum | cut -c1-12)
  printf '%s\n' "$CACHE_DIR/kafka-$(kafka_version)-$key/jars"
}

install_kafka_jars() {
  local jars tmp log
  jars=$(kafka_jars_dir)
  [[ -e $jars/.complete ]] && return 0
  say "fetching Kafka $(kafka_version) jars with Maven (cache: ${jars%/jars})"
  mkdir -p "${jars%/jars}"
  tmp=${jars}.tmp.$$
  log=${jars%/jars}/mvn.log
  rm -rf "$tmp"
  local args=(-B -q -f "$KAFKA_POM" dependency:copy-dependencies
    "-DoutputDirectory=$tmp" -DincludeScope=runtime)
  [[ -n ${OF_KAFKA_VERSION:-} ]] && args+=("-Dkafka.version=$OF_KAFKA_VERSION")
  if ! mvn "${args[@]}" >"$log" 2>&1; then
    log_tail "$log"
    rm -rf "$tmp"
    die "Maven could not fetch the Kafka jars (see $log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $tmp"
  touch "$tmp/.complete"
  rm -rf "$jars"
  mv "$tmp" "$jars"
}

cmd_install() {
  ensure_dir
  install_packages
  install_kafka_jars
}

installed() {
  command -v java >/dev/null 2>&1 && command -v mariadbd >/dev/null 2>&1 &&
    command -v mariadb-install-db >/dev/null 2>&1 && command -v mariadb-admin >/dev/null 2>&1 &&
    command -v mariadb >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 &&
    command -v redis-cli >/dev/null 2>&1 && [[ -e $(kafka_jars_dir)/.complete ]]
}

# ---------------------------------------------------------------- kafka

# sets KTOOL to the java command line for running Kafka CLI classes
kafka_tool_cmd() {
  local jars
  jars=$(kafka_jars_dir)
  [[ -e $jars/.complete ]] || die "Kafka jars missing: run scripts/services.sh install"
  KTOOL=(java -Xshare:auto -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Xmx256m
    -Djava.awt.headless=true "-Dlog4j2.configurationFile=$KDIR/tools-log4j2.properties"
    -cp "$jars/*")
}

kafka_java() {
  kafka_tool_cmd
  "${KTOOL[@]}" "$@"
}

kafka_write_configs() {
  mkdir -p "$KDIR/data"
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" \
    -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    -e "s#@LOG_DIRS@#$KDIR/data#g" \
    "$KAFKA_PROPS_TEMPLATE" >"$KDIR/server.properties"
  cat >"$KDIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
  cat >"$KDIR/tools-log4j2.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
  cat >"$KDIR/admin.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
reconnect.backoff.max.ms=500
EOF
}

# Kafka's Uuid text form: 16 random bytes, base64url without padding.
kafka_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [[ $id == -* ]] || break
  done
  printf '%s\n' "$id"
}

kafka_pid() { pid_alive "$KDIR/kafka.pid" "$KDIR/server.properties"; }

# answering = the admin client can list topics
kafka_answers() {
  tcp_open "$KAFKA_PORT" || return 1
  [[ -e $KDIR/admin.properties ]] || kafka_write_configs
  kafka_tool_cmd
  timeout 20 "${KTOOL[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --command-config "$KDIR/admin.properties" --list >/dev/null 2>&1
}

kafka_launch() {
  local pid jars
  if pid=$(kafka_pid); then
    say "kafka: already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
    return 0
  fi
  if tcp_open "$KAFKA_PORT" || tcp_open "$KAFKA_CONTROLLER_PORT"; then
    die "kafka: port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is already in use by another process"
  fi
  jars=$(kafka_jars_dir)
  mkdir -p "$KDIR"
  kafka_write_configs
  if [[ ! -e $KDIR/data/meta.properties ]]; then
    [[ -s $KDIR/cluster.id ]] || kafka_cluster_id >"$KDIR/cluster.id"
    if ! kafka_java kafka.tools.StorageTool format -t "$(cat "$KDIR/cluster.id")" \
      -c "$KDIR/server.properties" --ignore-formatted >"$KDIR/format.log" 2>&1; then
      log_tail "$KDIR/format.log"
      die "kafka: formatting the KRaft storage failed"
    fi
  fi
  printf '==== %s starting kafka.Kafka ====\n' "$(date -u +%FT%TZ)" >>"$KDIR/kafka.log"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  setsid java $KAFKA_HEAP_OPTS -XX:+UseSerialGC -Xshare:auto -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$KDIR/log4j2.properties" \
    -cp "$jars/*" kafka.Kafka "$KDIR/server.properties" \
    </dev/null >>"$KDIR/kafka.log" 2>&1 9>&- &
  printf '%s\n' "$!" >"$KDIR/kafka.pid"
  KAFKA_LAUNCHED=1
}

kafka_wait() {
  [[ ${KAFKA_LAUNCHED:-0} == 1 ]] || return 0
  local deadline pid
  deadline=$(($(now) + KAFKA_START_TIMEOUT))
  while :; do
    if ! pid=$(kafka_pid); then
      log_tail "$KDIR/kafka.log"
      die "kafka: the broker exited during startup (log: $KDIR/kafka.log)"
    fi
    if kafka_answers; then
      say "kafka: started (pid $pid, 127.0.0.1:$KAFKA_PORT, controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
      return 0
    fi
    if (($(now) >= deadline)); then
      log_tail "$KDIR/kafka.log"
      term_pid "$pid"
      wait_gone "$pid" kafka
      die "kafka: not answering (stopped it again) on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s (log: $KDIR/kafka.log)"
    fi
    sleep 0.5
  done
}

kafka_term() {
  local pid
  if pid=$(kafka_pid); then
    term_pid "$pid"
    KAFKA_STOPPING=$pid
  fi
}

kafka_wait_stopped() {
  if [[ -n ${KAFKA_STOPPING:-} ]]; then
    wait_gone "$KAFKA_STOPPING" kafka
    say "kafka: stopped"
  else
    say "kafka: not running"
  fi
  rm -f "$KDIR/kafka.pid"
}

# ---------------------------------------------------------------- mariadb

mariadb_socket() {
  local s=$MDIR/mysqld.sock
  # unix socket paths are limited to 107 bytes; fall back to a short one
  if ((${#s} > 100)); then
    s=/tmp/orderflow-mysqld-$(printf '%s' "$SVC_DIR" | sha256sum | cut -c1-12).sock
  fi
  printf '%s\n' "$s"
}

mariadb_pid() { pid_alive "$MDIR/mariadbd.pid" "--datadir=$MDIR/data"; }

mariadb_root() {
  mariadb --no-defaults --protocol=socket --socket="$(mariadb_socket)" -uroot "$@"
}

mariadb_answers() {
  [[ -S $(mariadb_socket) ]] || tcp_open "$MYSQL_PORT" || return 1
  if [[ -S $(mariadb_socket) ]]; then
    mariadb-admin --no-defaults --protocol=socket --socket="$(mariadb_socket)" -uroot \
      --connect-timeout=2 ping >/dev/null 2>&1 && return 0
  fi
  MYSQL_PWD=$MYSQL_PASSWORD mariadb-admin --no-defaults --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" \
    -u"$MYSQL_USER" --connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_launch() {
  local pid
  if pid=$(mariadb_pid); then
    say "mariadb: already running (pid $pid, 127.0.0.1:$MYSQL_PORT)"
    return 0
  fi
  if tcp_open "$MYSQL_PORT"; then
    die "mariadb: port $MYSQL_PORT is already in use by another process"
  fi
  mkdir -p "$MDIR"
  if [[ ! -d $MDIR/data/mysql ]]; then
    rm -rf "$MDIR/data"
    if ! mariadb-install-db --no-defaults --datadir="$MDIR/data" --user=root \
      --auth-root-authentication-method=normal --skip-test-db \
      --skip-name-resolve >"$MDIR/install-db.log" 2>&1; then
      log_tail "$MDIR/install-db.log"
      die "mariadb: mariadb-install-db failed"
    fi
  fi
  rm -f "$(mariadb_socket)"
  printf '==== %s starting mariadbd ====\n' "$(date -u +%FT%TZ)" >>"$MDIR/mariadbd.log"
  # A redo log of 1 GiB: at the benchmark's rates (~40 MB of redo a second) a 64 MiB one wraps
  # every 2 s and its checkpoints force the buffer pool to flush pages twice as often
  # (bench/RESULTS.md, step 28). MariaDB resizes the log of an existing data directory at start.
  setsid mariadbd --no-defaults --datadir="$MDIR/data" --socket="$(mariadb_socket)" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --user=root --pid-file="$MDIR/mariadbd.pid.server" \
    --log-error="$MDIR/mariadbd.log" --tmpdir="$MDIR" \
    --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=1 --innodb-log-file-size=1G \
    --max-connections=500 --skip-name-resolve --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    </dev/null >>"$MDIR/mariadbd.log" 2>&1 9>&- &
  printf '%s\n' "$!" >"$MDIR/mariadbd.pid"
  MARIADB_LAUNCHED=1
}

sql_str() {
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\'\'}"
}

mariadb_setup_db() {
  local pw db user
  pw=$(sql_str "$MYSQL_PASSWORD")
  db=${MYSQL_DATABASE//\`/\`\`}
  user=$(sql_str "$MYSQL_USER")
  mariadb_root --batch <<EOF
CREATE DATABASE IF NOT EXISTS \`$db\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS $user@'127.0.0.1' IDENTIFIED BY $pw;
CREATE USER IF NOT EXISTS $user@'localhost' IDENTIFIED BY $pw;
ALTER USER $user@'127.0.0.1' IDENTIFIED BY $pw;
ALTER USER $user@'localhost' IDENTIFIED BY $pw;
GRANT ALL PRIVILEGES ON \`$db\`.* TO $user@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`$db\`.* TO $user@'localhost';
GRANT ALL PRIVILEGES ON \`${db//_/\\_}\\_%\`.* TO $user@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`${db//_/\\_}\\_%\`.* TO $user@'localhost';
FLUSH PRIVILEGES;
EOF
}

mariadb_wait() {
  [[ ${MARIADB_LAUNCHED:-0} == 1 ]] || return 0
  local deadline pid
  deadline=$(($(now) + MYSQL_START_TIMEOUT))
  while :; do
    if ! pid=$(mariadb_pid); then
      log_tail "$MDIR/mariadbd.log"
      die "mariadb: mariadbd exited during startup (log: $MDIR/mariadbd.log)"
    fi
    if mariadb-admin --no-defaults --protocol=socket --socket="$(mariadb_socket)" -uroot \
      --connect-timeout=2 ping >/dev/null 2>&1; then
      break
    fi
    if (($(now) >= deadline)); then
      log_tail "$MDIR/mariadbd.log"
      term_pid "$pid"
      wait_gone "$pid" mariadb
      die "mariadb: not answering (stopped it again) after ${MYSQL_START_TIMEOUT}s (log: $MDIR/mariadbd.log)"
    fi
    sleep 0.2
  done
  if ! mariadb_setup_db >"$MDIR/setup.log" 2>&1; then
    log_tail "$MDIR/setup.log"
    die "mariadb: creating database/user failed"
  fi
  say "mariadb: started (pid $pid, 127.0.0.1:$MYSQL_PORT, socket $(mariadb_socket), database $MYSQL_DATABASE)"
}

mariadb_term() {
  local pid
  if pid=$(mariadb_pid); then
    term_pid "$pid"
    MARIADB_STOPPING=$pid
  fi
}

mariadb_wait_stopped() {
  if [[ -n ${MARIADB_STOPPING:-} ]]; then
    wait_gone "$MARIADB_STOPPING" mariadb
    say "mariadb: stopped"
  else
    say "mariadb: not running"
  fi
  rm -f "$MDIR/mariadbd.pid" "$MDIR/mariadbd.pid.server"
  local sock
  sock=$(mariadb_socket)
  [[ $sock == "$MDIR"/* ]] || rm -f "$sock"
}

# ---------------------------------------------------------------- redis

redis_pid() { pid_alive "$RDIR/redis.pid" "redis-server"; }

redis_answers() {
  [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_launch() {
  local pid
  if pid=$(redis_pid); then
    say "redis: already running (pid $pid, 127.0.0.1:$REDIS_PORT)"
    return 0
  fi
  if tcp_open "$REDIS_PORT"; then
    die "redis: port $REDIS_PORT is already in use by another process"
  fi
  mkdir -p "$RDIR/data"
  rm -f "$RDIR/redis.pid"
  if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RDIR/data" \
    --save '' --appendonly no --daemonize yes --pidfile "$RDIR/redis.pid" \
    --logfile "$RDIR/redis.log" --protected-mode yes </dev/null >"$RDIR/launch.log" 2>&1 9>&-; then
    log_tail "$RDIR/launch.log"
    log_tail "$RDIR/redis.log"
    die "redis: redis-server failed to start"
  fi
  REDIS_LAUNCHED=1
}

redis_wait() {
  [[ ${REDIS_LAUNCHED:-0} == 1 ]] || return 0
  local deadline pid
  deadline=$(($(now) + REDIS_START_TIMEOUT))
  while ! redis_answers; do
    if (($(now) >= deadline)); then
      log_tail "$RDIR/redis.log"
      die "redis: not answering on 127.0.0.1:$REDIS_PORT after ${REDIS_START_TIMEOUT}s"
    fi
    sleep 0.1
  done
  pid=$(redis_pid) || pid='?'
  say "redis: started (pid $pid, 127.0.0.1:$REDIS_PORT)"
}

redis_term() {
  local pid
  if pid=$(redis_pid); then
    term_pid "$pid"
    REDIS_STOPPING=$pid
  fi
}

redis_wait_stopped() {
  if [[ -n ${REDIS_STOPPING:-} ]]; then
    wait_gone "$REDIS_STOPPING" redis
    say "redis: stopped"
  else
    say "redis: not running"
  fi
  rm -f "$RDIR/redis.pid"
}

# ---------------------------------------------------------------- commands

# parse service names into SERVICES
parse_services() {
  SERVICES=()
  local s
  for s in "$@"; do
    case $s in
      kafka) SERVICES+=(kafka) ;;
      mariadb | mysql) SERVICES+=(mariadb) ;;
      redis) SERVICES+=(redis) ;;
      all) SERVICES+=("${ALL_SERVICES[@]}") ;;
      *) die "unknown service '$s' (kafka, mariadb, redis)" ;;
    esac
  done
  ((${#SERVICES[@]})) || SERVICES=("${ALL_SERVICES[@]}")
}

wants() {
  local s
  for s in "${SERVICES[@]}"; do [[ $s == "$1" ]] && return 0; done
  return 1
}

cmd_start() {
  parse_services "$@"
  take_lock
  installed || cmd_install
  # launch everything first, then wait: the JVM boots while MariaDB initialises
  wants kafka && kafka_launch
  wants mariadb && mariadb_launch
  wants redis && redis_launch
  wants redis && redis_wait
  wants mariadb && mariadb_wait
  wants kafka && kafka_wait
  return 0
}

cmd_stop() {
  local mode=data args=()
  while (($#)); do
    case $1 in
      --purge) mode=purge ;;
      --keep-data) mode=keep ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  # a single service stopped on its own keeps its data (broker restarts,
  # outage tests); a plain 'stop' removes the data of all services
  ((${#args[@]})) && [[ $mode == data ]] && mode=keep
  parse_services "${args[@]+"${args[@]}"}"
  if [[ ! -d $SVC_DIR ]]; then
    say "nothing to stop ($SVC_DIR does not exist)"
    return 0
  fi
  take_lock
  wants kafka && kafka_term
  wants mariadb && mariadb_term
  wants redis && redis_term
  wants kafka && kafka_wait_stopped
  wants mariadb && mariadb_wait_stopped
  wants redis && redis_wait_stopped
  case $mode in
    keep) ;;
    data)
      wants kafka && rm -rf "$KDIR"
      wants mariadb && rm -rf "$MDIR"
      wants redis && rm -rf "$RDIR"
      rm -f "$SVC_DIR/apt.log"
      say "removed service data under $SVC_DIR (jar cache kept)"
      ;;
    purge)
      [[ -e $MARKER ]] || die "refusing to purge $SVC_DIR: no $MARKER"
      if ((${#args[@]})); then
        wants kafka && rm -rf "$KDIR" "$CACHE_DIR"
        wants mariadb && rm -rf "$MDIR"
        wants redis && rm -rf "$RDIR"
      else
        rm -rf "$SVC_DIR"
      fi
      say "purged $SVC_DIR"
      ;;
  esac
}

cmd_restart() {
  cmd_stop --keep-data "$@"
  exec 9>&-
  cmd_start "$@"
}

cmd_status() {
  parse_services "$@"
  local rc=0 pid
  if wants kafka; then
    if [[ -e $(kafka_jars_dir)/.complete ]] && kafka_answers; then
      pid=$(kafka_pid) || pid='not ours'
      say "kafka:   up   127.0.0.1:$KAFKA_PORT (pid $pid)"
    else
      say "kafka:   down 127.0.0.1:$KAFKA_PORT"
      rc=1
    fi
  fi
  if wants mariadb; then
    if command -v mariadb-admin >/dev/null 2>&1 && mariadb_answers; then
      pid=$(mariadb_pid) || pid='not ours'
      say "mariadb: up   127.0.0.1:$MYSQL_PORT (pid $pid, socket $(mariadb_socket))"
    else
      say "mariadb: down 127.0.0.1:$MYSQL_PORT"
      rc=1
    fi
  fi
  if wants redis; then
    if command -v redis-cli >/dev/null 2>&1 && redis_answers; then
      pid=$(redis_pid) || pid='not ours'
      say "redis:   up   127.0.0.1:$REDIS_PORT (pid $pid)"
    else
      say "redis:   down 127.0.0.1:$REDIS_PORT"
      rc=1
    fi
  fi
  return "$rc"
}

cmd_env() {
  printf 'export %s=%q\n' \
    OF_SERVICES_DIR "$SVC_DIR" \
    OF_KAFKA_BOOTSTRAP "127.0.0.1:$KAFKA_PORT" \
    OF_KAFKA_CLASSPATH "$(kafka_jars_dir)/*" \
    OF_MYSQL_HOST 127.0.0.1 \
    OF_MYSQL_PORT "$MYSQL_PORT" \
    OF_MYSQL_USER "$MYSQL_USER" \
    OF_MYSQL_PASSWORD "$MYSQL_PASSWORD" \
    OF_MYSQL_DATABASE "$MYSQL_DATABASE" \
    OF_MYSQL_SOCKET "$(mariadb_socket)" \
    OF_REDIS_HOST 127.0.0.1 \
    OF_REDIS_PORT "$REDIS_PORT"
}

cmd_kafka_cli() {
  (($#)) || die "usage: services.sh kafka-cli CLASS [ARG...]  (e.g. org.apache.kafka.tools.TopicCommand --list)"
  local cls=$1
  shift
  # short names for the common tools
  case $cls in
    topics) cls=org.apache.kafka.tools.TopicCommand ;;
    producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
    consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    configs) cls=org.apache.kafka.admin.ConfigCommand ;;
    api-versions) cls=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  esac
  [[ -e $KDIR/tools-log4j2.properties ]] || { mkdir -p "$KDIR"; kafka_write_configs; }
  kafka_java "$cls" "$@"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    install) take_lock; cmd_install ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env ;;
    kafka-cli) cmd_kafka_cli "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
