#!/usr/bin/env bash
# The main job: installs what is needed, builds, starts the local services (Kafka, MariaDB,
# Redis) and orderflowd with pipelines/orders.yaml and pipelines/accounts.yaml, creates a demo
# admin, products and a customer, places three orders - one confirmed, one declined by the
# payment provider, one rejected for lack of stock - and prints each order's path to its final
# state.
set -euo pipefail
# Plugin files and folders writable by group or others are refused by the loader.
umask 022
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/deps.sh
echo "== services (Kafka, MariaDB, Redis on loopback)"
bash scripts/services.sh start
eval "$(bash scripts/services.sh env)"
echo "== build"
bash scripts/build.sh "$root/build"
cli=$root/build/host/orderflow
daemon=$root/build/host/orderflowd
echo "== orderflow lint pipelines/"
"$cli" lint pipelines/

work=$(mktemp -d)
pid=
receiver=
# Under `set -e` a failing command at the end of an && list would end the trap early (the receiver
# is already gone when the demo succeeds), leaving the daemon running: every step may fail.
cleanup() {
  if [ -n "$receiver" ]; then kill "$receiver" 2>/dev/null || true; fi
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
port=${ORDERFLOW_DEMO_PORT:-18080}
base="http://127.0.0.1:$port"
head -c 48 /dev/urandom | base64 -w0 >"$work/jwt-secret"
chmod 600 "$work/jwt-secret"
export ORDERFLOW_JWT_KEY_FILE=$work/jwt-secret ORDERFLOW_JWT_ISSUER=https://demo.orderflow \
  ORDERFLOW_JWT_AUDIENCE=shop-api
# The demo's webhook receiver listens on loopback, which the webhook stage refuses by default.
export ORDERFLOW_WEBHOOK_ALLOW_PRIVATE=true
cat >"$work/orderflow.yaml" <<YAML
plugin_dirs: [ "$root/build/plugins" ]
pipelines: [ "$root/pipelines/accounts.yaml", "$root/pipelines/orders.yaml" ]
bus:
  type: kafka
  kafka: { bootstrap: "$OF_KAFKA_BOOTSTRAP" }
mysql:
  host: "$OF_MYSQL_HOST"
  port: $OF_MYSQL_PORT
  user: "$OF_MYSQL_USER"
  password: "\${OF_MYSQL_PASSWORD}"
  database: "$OF_MYSQL_DATABASE"
  pool_size: 64
redis: { host: "$OF_REDIS_HOST", port: $OF_REDIS_PORT }
http: { listen: "127.0.0.1:$port" }
log: { level: info }
YAML

echo "== orderflowd (log in $work/daemon.log)"
"$daemon" -c "$work/orderflow.yaml" 2>"$work/daemon.log" &
pid=$!
for _ in $(seq 1 300); do
  grep -q "running" "$work/daemon.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
  sleep 0.2
done

# call METHOD PATH TOKEN [JSON]: prints the body; the HTTP status goes to $work/status (a file,
# since callers often run it in a command substitution).
call() {
  local args=(-s -o "$work/body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $3")
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  curl "${args[@]}" "$base$2" >"$work/status"
  cat "$work/body"
}
status() { cat "$work/status"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== a demo admin (its token from orderflow token) and products"
admin=$("$cli" token --key-file "$work/jwt-secret" --sub demo-admin --roles admin \
  --iss "$ORDERFLOW_JWT_ISSUER" --aud "$ORDERFLOW_JWT_AUDIENCE" --ttl 10m)
for p in "BOOK-1 Paperback 2500 100" "LAPTOP-1 Laptop 150000 5" "RARE-1 Rare-print 9900 1"; do
  read -r sku name price stock <<<"$p"
  call POST /api/v1/products "$admin" \
    "{\"sku\":\"$sku\",\"name\":\"$name\",\"price_cents\":$price,\"currency\":\"EUR\",\"initial_stock\":$stock}" >/dev/null
  # On a second run the product exists (409): its stock is put back for the demo.
  [ "$(status)" = 409 ] && call PUT "/api/v1/products/$sku/stock" "$admin" "{\"on_hand\":$stock}" >/dev/null
  echo "   $sku  $name  $price cents  stock $stock"
done

echo "== a customer registers and logs in"
email="customer-$(date +%s)@demo.orderflow"
call POST /api/v1/auth/register "" \
  "{\"email\":\"$email\",\"password\":\"a demo password\",\"display_name\":\"Demo Customer\"}" >/dev/null
token=$(call POST /api/v1/auth/login "" "{\"email\":\"$email\",\"password\":\"a demo password\"}" |
  json '["access_token"]')
echo "   $email"

echo "== the customer registers a webhook (a receiver on loopback that checks each signature)"
cat >"$work/receiver.py" <<'PY'
import base64, hashlib, hmac, json, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

work = sys.argv[1]

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        mid, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
        key = base64.b64decode(open(work + "/webhook-secret").read().strip().split("_", 1)[1])
        want = base64.b64encode(hmac.new(key, f"{mid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        ok = any(s == "v1," + want for s in self.headers.get("webhook-signature", "").split())
        d = json.loads(body).get("data", {})
        with open(work + "/webhooks.jsonl", "a") as f:
            f.write(json.dumps({"id": mid, "ok": ok, "order": d.get("order_id"), "seq": d.get("seq"), "to": d.get("to")}) + "\n")
        self.send_response(204)
        self.end_headers()

srv = HTTPServer(("127.0.0.1", 0), H)
open(work + "/receiver.port", "w").write(str(srv.server_address[1]))
srv.serve_forever()
PY
python3 "$work/receiver.py" "$work" &
receiver=$!
for _ in $(seq 1 50); do [ -s "$work/receiver.port" ] && break; sleep 0.1; done
call POST /api/v1/webhooks "$token" \
  "{\"url\":\"http://127.0.0.1:$(cat "$work/receiver.port")/hooks\",\"description\":\"demo\"}" |
  json '["secret"]' >"$work/webhook-secret"
echo "   HTTP $(status): deliveries signed with a secret shown once (whsec_...)"

echo "== three orders"
declare -A orders
for o in "confirmed:BOOK-1:2" "declined:LAPTOP-1:1" "rejected:RARE-1:2"; do
  IFS=: read -r what sku qty <<<"$o"
  id=$(call POST /api/v1/orders "$token" "{\"items\":[{\"sku\":\"$sku\",\"quantity\":$qty}]}" |
    json '["order_id"]')
  echo "   $qty x $sku -> HTTP $(status), order $id (expected to end $what)"
  orders[$what]=$id
done

echo "== each order's path to its final state"
declare -A expect=([confirmed]=CONFIRMED [declined]=CANCELLED [rejected]=REJECTED)
wrong=0
for what in confirmed declined rejected; do
  id=${orders[$what]}
  for _ in $(seq 1 150); do
    st=$(call GET "/api/v1/orders/$id" "$token" | json '["status"]')
    case "$st" in CONFIRMED | REJECTED | CANCELLED) break ;; esac
    sleep 0.2
  done
  echo "-- order $id: $st"
  [ "$st" = "${expect[$what]}" ] || wrong=$((wrong + 1))
  call GET "/api/v1/orders/$id" "$token" | python3 -c '
import json, sys
o = json.load(sys.stdin)
for h in o.get("history", []):
    print("   %-24s %-9s -> %-9s %s" % (h.get("at", ""), h.get("from") or "", h.get("to", ""), h.get("reason", "")))'
done
echo "== webhook deliveries (every status change, signed)"
want=0
for what in confirmed declined rejected; do
  want=$((want + $(call GET "/api/v1/orders/${orders[$what]}" "$token" | json '["history"].__len__()')))
done
for _ in $(seq 1 100); do
  [ "$(sort -u "$work/webhooks.jsonl" 2>/dev/null | wc -l)" -ge "$want" ] && break
  sleep 0.2
done
python3 - "$work/webhooks.jsonl" "$want" <<'PY' || wrong=$((wrong + 1))
import json, sys
seen = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    seen[(r["order"], r["seq"])] = r
bad = sum(1 for r in seen.values() if not r["ok"])
print(f"   {len(seen)} of {sys.argv[2]} status changes delivered, {len(seen) - bad} with a valid signature")
sys.exit(0 if len(seen) == int(sys.argv[2]) and bad == 0 else 1)
PY
kill "$receiver" 2>/dev/null || true

if [ "$wrong" != 0 ]; then
  echo "demo failed: $wrong order(s) did not end as expected; see $work/daemon.log" >&2
  trap - EXIT
  kill "$pid" 2>/dev/null
  exit 1
fi
echo "demo finished"

