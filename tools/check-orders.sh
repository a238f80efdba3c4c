#!/usr/bin/env bash
# check-orders.sh: proves, with SQL, the guarantees of the order saga (docs/orders.md) on the
# tables of the orders, inventory and payment plugins, after any run. See docs/checker.md.
#
#   tools/check-orders.sh [--host H] [--port P] [--user U] [--password-env VAR] [--database D]
#                         [--orders FILE] [--initial FILE]
#
#   --orders FILE   order ids (one a line) that were accepted with a 202; checked: each exists and
#                   is terminal, and the per-order checks cover these orders. Without it: every
#                   order in the table.
#   --initial FILE  lines "SKU QTY": the initial on-hand stock, for on_hand = initial - committed.
#
# Defaults come from `scripts/services.sh env` (OF_MYSQL_*); the password from the variable named
# by --password-env (default OF_MYSQL_PASSWORD). Prints PASS/FAIL per check with counts and up to
# 10 offenders; exits 1 when a check fails, 2 on a usage or connection error. Read-only (the id
# list lives in a session-temporary table).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${OF_MYSQL_HOST:-}" ] && [ -f "$root/scripts/services.sh" ]; then
  eval "$(bash "$root/scripts/services.sh" env)"
fi
host=${OF_MYSQL_HOST:-127.0.0.1} port=${OF_MYSQL_PORT:-3306} user=${OF_MYSQL_USER:-orderflow}
database=${OF_MYSQL_DATABASE:-orderflow} password_env=OF_MYSQL_PASSWORD orders_file='' initial_file=''

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --host) host=$2 ;;
    --port) port=$2 ;;
    --user) user=$2 ;;
    --password-env) password_env=$2 ;;
    --database) database=$2 ;;
    --orders) orders_file=$2 ;;
    --initial) initial_file=$2 ;;
    -h | --help) usage ;;
    *) echo "check-orders: unknown argument $1" >&2; usage ;;
  esac
  shift 2 || usage
done
[[ $database =~ ^[A-Za-z0-9_]+$ ]] || { echo "check-orders: bad database name" >&2; exit 2; }
export MYSQL_PWD=${!password_env:-}

# The prelude of every query: the ids under check (scope) and the initial stock, as temporary
# tables of the query's own session.
prelude=$(mktemp)
trap 'rm -f "$prelude"' EXIT
{
  echo "CREATE TEMPORARY TABLE chk_listed (id VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY);"
  echo "CREATE TEMPORARY TABLE chk_initial (sku VARCHAR(64) COLLATE utf8mb4_bin PRIMARY KEY, qty BIGINT NOT NULL);"
  if [ -n "$orders_file" ]; then
    [ -r "$orders_file" ] || { echo "check-orders: cannot read $orders_file" >&2; exit 2; }
    # Only id-shaped tokens: the file is the test's, but it must never become SQL.
    # 1,000 rows a statement: every query runs this prelude, and a benchmark lists 100,000s.
    grep -oE '^[A-Za-z0-9_-]{1,64}' "$orders_file" | sort -u |
      awk '{ printf "%s(\x27%s\x27)", (NR % 1000 == 1 ? (NR > 1 ? ";\n" : "") "INSERT INTO chk_listed VALUES " : ","), $1 }
           END { if (NR) print ";" }'
    echo "CREATE TEMPORARY TABLE chk_scope AS SELECT id FROM chk_listed;"
  else
    echo "CREATE TEMPORARY TABLE chk_scope AS SELECT id FROM orders;"
  fi
  if [ -n "$initial_file" ]; then
    [ -r "$initial_file" ] || { echo "check-orders: cannot read $initial_file" >&2; exit 2; }
    grep -E '^[A-Za-z0-9_.-]{1,64}[[:space:]]+[0-9]+[[:space:]]*$' "$initial_file" |
      awk '{ printf "INSERT INTO chk_initial VALUES (\x27%s\x27, %s);\n", $1, $2 }'
  fi
} >"$prelude"

q() { # q SQL: rows, tab-separated, after the prelude
  { cat "$prelude"; printf '%s;\n' "$1"; } |
    mariadb -h "$host" -P "$port" -u "$user" -D "$database" --batch --skip-column-names
}

q "SELECT 1 FROM orders LIMIT 0" >/dev/null ||
  { echo "check-orders: cannot query $user@$host:$port/$database" >&2; exit 2; }

failed=0
# check NAME SQL: SQL selects one row per violation (an id first, details after); none is a PASS.
check() {
  local rows n
  rows=$(q "$2") || { echo "ERROR $1: the query failed"; failed=$((failed + 1)); return; }
  n=$(grep -c . <<<"$rows" || true)
  if [ "$n" = 0 ]; then
    printf 'PASS  %s\n' "$1"
  else
    printf 'FAIL  %s: %d violation(s)\n' "$1" "$n"
    head -n 10 <<<"$rows" | sed 's/^/        /'
    [ "$n" -le 10 ] || echo "        ..."
    failed=$((failed + 1))
  fi
}
info() { printf 'INFO  %s\n' "$*"; }

T="('CONFIRMED','REJECTED','CANCELLED')"
echo "== check-orders: $user@$host:$port/$database${orders_file:+, orders from $orders_file}${initial_file:+, initial stock from $initial_file}"
info "orders in scope: $(q "SELECT COUNT(*) FROM chk_scope"); by status: $(q "
  SELECT GROUP_CONCAT(CONCAT(s, ' ', n) ORDER BY s SEPARATOR ', ') FROM
  (SELECT COALESCE(o.status, 'MISSING') s, COUNT(*) n FROM chk_scope c LEFT JOIN orders o ON o.id = c.id GROUP BY 1) x")"
if [ -n "$orders_file" ]; then
  info "orders in the table but not in the list: $(q "SELECT COUNT(*) FROM orders WHERE id NOT IN (SELECT id FROM chk_listed)") (not terminal: $(q "SELECT COUNT(*) FROM orders WHERE id NOT IN (SELECT id FROM chk_listed) AND status NOT IN $T"))"
fi

# ---- (a) every order exists and is terminal ----
check "(a) every order exists" "
  SELECT c.id FROM chk_scope c LEFT JOIN orders o ON o.id = c.id WHERE o.id IS NULL"
check "(a) every order is terminal (CONFIRMED, REJECTED, CANCELLED)" "
  SELECT o.id, o.status FROM chk_scope c JOIN orders o ON o.id = c.id WHERE o.status NOT IN $T"

# ---- (b) the history is a valid path ----
check "(b) history starts NULL->PENDING at seq 1" "
  SELECT c.id FROM chk_scope c JOIN orders o ON o.id = c.id
  LEFT JOIN order_history h ON h.order_id = c.id AND h.seq = 1
  WHERE h.seq IS NULL OR h.from_status IS NOT NULL OR h.to_status <> 'PENDING'"
check "(b) history seqs are 1..n without gaps" "
  SELECT h.order_id, COUNT(*) n, MIN(h.seq) lo, MAX(h.seq) hi FROM chk_scope c
  JOIN order_history h ON h.order_id = c.id GROUP BY h.order_id
  HAVING MIN(h.seq) <> 1 OR MAX(h.seq) <> COUNT(*)"
check "(b) each row's from = the previous row's to" "
  SELECT h2.order_id, h2.seq, h1.to_status, h2.from_status FROM chk_scope c
  JOIN order_history h2 ON h2.order_id = c.id
  JOIN order_history h1 ON h1.order_id = h2.order_id AND h1.seq = h2.seq - 1
  WHERE NOT (h1.to_status <=> h2.from_status)"
check "(b) every transition is one of the saga's" "
  SELECT h.order_id, h.seq, CONCAT(COALESCE(h.from_status, 'NULL'), '->', h.to_status) FROM chk_scope c
  JOIN order_history h ON h.order_id = c.id
  WHERE (COALESCE(h.from_status, 'NULL'), h.to_status) NOT IN
    (('NULL','PENDING'), ('PENDING','RESERVED'), ('RESERVED','PAID'), ('PAID','CONFIRMED'),
     ('PENDING','REJECTED'), ('PENDING','CANCELLED'), ('RESERVED','CANCELLED'), ('PAID','CANCELLED'))"
check "(b) no transition out of a terminal state" "
  SELECT h.order_id, h.seq, h.from_status, h.to_status FROM chk_scope c
  JOIN order_history h ON h.order_id = c.id WHERE h.from_status IN $T"
check "(b) history ends at the order's status" "
  SELECT o.id, o.status, h.to_status FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN order_history h ON h.order_id = o.id
  AND h.seq = (SELECT MAX(seq) FROM order_history WHERE order_id = o.id)
  WHERE h.to_status <> o.status"

# ---- (c) payments ----
info "payments in scope by state: $(q "
  SELECT COALESCE(GROUP_CONCAT(CONCAT(state, ' ', n) ORDER BY state SEPARATOR ', '), 'none') FROM
  (SELECT p.state, COUNT(*) n FROM chk_scope c JOIN payments p ON p.order_id = c.id GROUP BY p.state) x")"
check "(c) at most one payment per order" "
  SELECT p.order_id, COUNT(*) FROM payments p GROUP BY p.order_id HAVING COUNT(*) > 1"
check "(c) every payment belongs to an order" "
  SELECT p.order_id, p.id FROM payments p LEFT JOIN orders o ON o.id = p.order_id WHERE o.id IS NULL"
check "(c) every CONFIRMED order has one CAPTURED payment of its total" "
  SELECT o.id, o.total_cents, o.currency, p.state, p.amount_cents, p.currency FROM chk_scope c
  JOIN orders o ON o.id = c.id LEFT JOIN payments p ON p.order_id = o.id
  WHERE o.status = 'CONFIRMED' AND (p.id IS NULL OR p.state <> 'CAPTURED'
    OR p.amount_cents <> o.total_cents OR p.currency <> o.currency)"
check "(c) no CAPTURED payment of an order that is not CONFIRMED" "
  SELECT o.id, o.status, p.state FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN payments p ON p.order_id = o.id WHERE o.status <> 'CONFIRMED' AND p.state = 'CAPTURED'"
check "(c) a CANCELLED order's payment is REFUNDED or DECLINED" "
  SELECT o.id, p.state FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN payments p ON p.order_id = o.id
  WHERE o.status = 'CANCELLED' AND p.state NOT IN ('REFUNDED', 'DECLINED')"
check "(c) a REJECTED order has no payment" "
  SELECT o.id, p.state FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN payments p ON p.order_id = o.id WHERE o.status = 'REJECTED'"
check "(c) a REFUNDED payment is of its order's total" "
  SELECT o.id, o.total_cents, p.amount_cents FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN payments p ON p.order_id = o.id
  WHERE p.state = 'REFUNDED' AND p.amount_cents <> o.total_cents"

# ---- (d) stock and reservations ----
info "stock (sku on_hand/available/reserved, committed): $(q "
  SELECT COALESCE(GROUP_CONCAT(CONCAT(s.sku, ' ', s.on_hand, '/', s.available, '/', s.reserved, ' c=',
    COALESCE((SELECT SUM(quantity) FROM reservations r WHERE r.sku = s.sku AND r.state = 'COMMITTED'), 0))
    ORDER BY s.sku SEPARATOR '; '), 'no stock rows') FROM (SELECT * FROM stock ORDER BY sku LIMIT 10) s")"
check "(d) on_hand, available, reserved >= 0" "
  SELECT sku, on_hand, available, reserved FROM stock WHERE on_hand < 0 OR available < 0 OR reserved < 0"
check "(d) available = on_hand - reserved" "
  SELECT sku, on_hand, available, reserved FROM stock WHERE available <> on_hand - reserved"
check "(d) reserved = the RESERVED reservations' quantities" "
  SELECT s.sku, s.reserved, COALESCE(SUM(r.quantity), 0) FROM stock s
  LEFT JOIN reservations r ON r.sku = s.sku AND r.state = 'RESERVED'
  GROUP BY s.sku, s.reserved HAVING s.reserved <> COALESCE(SUM(r.quantity), 0)"
check "(d) COMMITTED quantities = the CONFIRMED orders' quantities, per SKU" "
  SELECT sku, SUM(committed), SUM(confirmed) FROM (
    SELECT r.sku, r.quantity committed, 0 confirmed FROM reservations r WHERE r.state = 'COMMITTED'
    UNION ALL
    SELECT i.sku, 0, i.quantity FROM order_items i JOIN orders o ON o.id = i.order_id
    WHERE o.status = 'CONFIRMED') x
  GROUP BY sku HAVING SUM(committed) <> SUM(confirmed)"
if [ -n "$initial_file" ]; then
  check "(d) on_hand = initial - COMMITTED quantities" "
    SELECT i.sku, i.qty initial, s.on_hand, COALESCE(SUM(r.quantity), 0) committed FROM chk_initial i
    LEFT JOIN stock s ON s.sku = i.sku
    LEFT JOIN reservations r ON r.sku = i.sku AND r.state = 'COMMITTED'
    GROUP BY i.sku, i.qty, s.on_hand
    HAVING s.on_hand IS NULL OR s.on_hand <> i.qty - COALESCE(SUM(r.quantity), 0)"
else
  info "no --initial: on_hand = initial - committed not checked (on_hand + committed is listed above)"
fi
check "(d) no RESERVED reservation left for a terminal order" "
  SELECT r.order_id, r.sku, o.status FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN reservations r ON r.order_id = o.id WHERE o.status IN $T AND r.state = 'RESERVED'"
check "(d) a REJECTED order has no reservation" "
  SELECT r.order_id, r.sku, r.state FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN reservations r ON r.order_id = o.id WHERE o.status = 'REJECTED'"
check "(d) a CANCELLED order's reservations are RELEASED" "
  SELECT r.order_id, r.sku, r.state FROM chk_scope c JOIN orders o ON o.id = c.id
  JOIN reservations r ON r.order_id = o.id WHERE o.status = 'CANCELLED' AND r.state <> 'RELEASED'"
check "(d) a CONFIRMED order's lines are all COMMITTED with their quantities" "
  SELECT i.order_id, i.sku, i.quantity, r.state, r.quantity FROM chk_scope c
  JOIN orders o ON o.id = c.id AND o.status = 'CONFIRMED'
  JOIN order_items i ON i.order_id = o.id
  LEFT JOIN reservations r ON r.order_id = i.order_id AND r.sku = i.sku
  WHERE r.state IS NULL OR r.state <> 'COMMITTED' OR r.quantity <> i.quantity
  UNION ALL
  SELECT r.order_id, r.sku, NULL, r.state, r.quantity FROM chk_scope c
  JOIN orders o ON o.id = c.id AND o.status = 'CONFIRMED'
  JOIN reservations r ON r.order_id = o.id
  LEFT JOIN order_items i ON i.order_id = r.order_id AND i.sku = r.sku WHERE i.sku IS NULL"

if [ "$failed" != 0 ]; then
  echo "== check-orders: $failed check(s) FAILED"
  exit 1
fi
echo "== check-orders: all checks PASS"
