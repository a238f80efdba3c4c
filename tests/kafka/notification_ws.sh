#!/usr/bin/env bash
# Order status over WebSocket, on two orderflowd hosts sharing Kafka (one consumer group), MariaDB
# and Redis: alice's customer stream (/api/v1/events) is opened on each host before her orders
# are placed, through either host; each stream must receive every transition of every order
# (PENDING .. CONFIRMED, and the decline's PENDING .. CANCELLED), whichever host consumed the
# status event: the hosts share them through Redis pub/sub, and both must have handled some for
# the test to count. A late per-order stream gets the history as its snapshot. Also: bob's
# stream sees none of alice's orders, bob cannot open alice's order (404), no token (401), a
# plain GET (426), the token as ?access_token=, and the hosts' shutdown closing the streams
# (1001).
source "$(dirname "$0")/kafkalib.bash"
saga_setup
port1=$port
port2=$(free_port)

# ---- a WebSocket client (RFC 6455, no library): records every text message as a JSON line ----
cat >"$TMP/wsclient.py" <<'PY'
import base64, json, os, socket, struct, sys, time

port, path, token, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
key = base64.b64encode(os.urandom(16)).decode()
hdr = f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
if token:
    hdr += f"Authorization: Bearer {token}\r\n"
s.sendall((hdr + "\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
head, _, buf = buf.partition(b"\r\n\r\n")
status = int(head.split(b" ")[1]) if head else 0
with open(out + ".status", "w") as f:
    f.write(str(status))
if status != 101:
    with open(out + ".body", "wb") as f:
        f.write(buf)
    sys.exit(0)
s.settimeout(None)

def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError
        buf += chunk
    r, buf = buf[:n], buf[n:]
    return r

def send(op, data=b""):
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    s.sendall(bytes([0x80 | op, 0x80 | len(data)]) + mask + payload)

try:
    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", need(8))[0]
        data = need(n)
        op = b0 & 0x0F
        if op == 1:
            with open(out, "a") as f:
                f.write(data.decode() + "\n")
        elif op == 9:
            send(10, data)
        elif op == 8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 0
            with open(out + ".closed", "w") as f:
                f.write(str(code))
            send(8, data[:2])
            break
except EOFError:
    pass
PY
# ws NAME PORT PATH TOKEN: a client in the background writing $TMP/NAME (+ .status, .closed).
ws() {
  python3 "$TMP/wsclient.py" "$2" "$3" "$4" "$TMP/$1" 2>>"$TMP/wsclient.log" &
  PIDS+=($!)
  local deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ] && [ ! -s "$TMP/$1.status" ]; do sleep 0.05; done
}
ws_status() { cat "$TMP/$1.status" 2>/dev/null; }

n="ntws-$RUN_ID"
saga_pipeline "$TMP/p.yaml" "$n" --status-partitions 8 --latency 300ms --notification \
  --route '{ method: GET, path: "/api/v1/orders/{id}/events", handler: notification.order_events, websocket: true }' \
  --route '{ method: GET, path: /api/v1/events, handler: notification.customer_events, websocket: true }'
for i in 1 2; do
  p=port$i
  saga_host "$TMP/host$i.yaml" "${!p}" "$TMP/p.yaml" --pool 12 --http "threads: 12" --http "websocket_connections: 6"
done
start_daemon d1 "$TMP/host1.yaml"
D1=$DAEMON_PID
start_daemon d2 "$TMP/host2.yaml"
D2=$DAEMON_PID
[ "$failures" = 0 ] || finish

admin=$(tok ops admin)
alice=$(tok alice customer)
bob=$(tok bob customer)
decliner=$(tok alice-decline-1 customer)

# on PORT COMMAND...: COMMAND (req) against the host on PORT.
on() {
  local BASE="http://127.0.0.1:$1"
  shift
  "$@"
}

on "$port1" req POST /api/v1/products '{"sku":"WS-1","name":"Socket","price_cents":250,"currency":"EUR","initial_stock":100}' "$admin"
[ "$code" = 201 ] || fail "create product: $code $body"

# ---- refusals ----
on "$port1" req GET /api/v1/events "" "$alice"
[ "$code" = 426 ] || fail "plain GET on a WebSocket route: $code, expected 426"
ws noauth "$port1" /api/v1/events ""
[ "$(ws_status noauth)" = 401 ] || fail "no token: $(ws_status noauth), expected 401"

# ---- the streams, opened before the orders ----
ws a1 "$port1" /api/v1/events "$alice"
ws a2 "$port2" "/api/v1/events?access_token=$alice" ""
ws b1 "$port1" /api/v1/events "$bob"
ws dec "$port2" /api/v1/events "$decliner"
for c in a1 a2 b1 dec; do [ "$(ws_status $c)" = 101 ] || fail "stream $c: $(ws_status $c), expected 101"; done
[ "$failures" = 0 ] || finish

# ---- orders, through both hosts ----
ids=()
for i in $(seq 1 8); do
  p=port$(((i % 2) + 1))
  on "${!p}" req POST /api/v1/orders '{"items":[{"sku":"WS-1","quantity":1}]}' "$alice"
  [ "$code" = 202 ] || fail "place $i: $code $body"
  ids+=("$(json 'd["order_id"]')")
done
on "$port2" req POST /api/v1/orders '{"items":[{"sku":"WS-1","quantity":400}]}' "$alice"
[ "$code" = 202 ] || fail "place (too many): $code $body"
rejected=$(json 'd["order_id"]')
on "$port1" req POST /api/v1/orders '{"items":[{"sku":"WS-1","quantity":1}]}' "$decliner"
[ "$code" = 202 ] || fail "place (declined): $code $body"
declined=$(json 'd["order_id"]')

# transitions FILE ORDER: "seq:to,..." of one order as a stream recorded it (repeats dropped).
transitions() {
  [ -f "$1" ] || return 0
  python3 - "$1" "$2" <<'PY'
import json, sys
seen = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("order_id") == sys.argv[2]:
        seen[d["seq"]] = d["to"]
print(",".join(f"{k}:{seen[k]}" for k in sorted(seen)))
PY
}
confirmed="1:PENDING,2:RESERVED,3:PAID,4:CONFIRMED"
wait_transitions() { # wait_transitions FILE ORDER EXPECTED
  local deadline=$((SECONDS + 60)) got=
  while [ $SECONDS -lt $deadline ]; do
    got=$(transitions "$TMP/$1" "$2")
    [ "$got" = "$3" ] && return 0
    sleep 0.3
  done
  fail "stream $1, order $2: '$got', expected '$3'"
}
for id in "${ids[@]}"; do
  wait_transitions a1 "$id" "$confirmed"
  wait_transitions a2 "$id" "$confirmed"
done
wait_transitions a1 "$rejected" "1:PENDING,2:REJECTED"
wait_transitions a2 "$rejected" "1:PENDING,2:REJECTED"
wait_transitions dec "$declined" "1:PENDING,2:RESERVED,3:CANCELLED"
[ "$failures" = 0 ] || finish

# Both hosts handled status events: the streams on each got the other's through Redis. Each host
# owns half of the status topic's partitions, and an order's events all go to the partition of
# its id: ten orders all landing on one host's half is rare (1 in 500) but happens, so until each
# host has handled some, one more order at a time (each through both streams again).
handled() { grep -c "/notification: order .* of alice" "$TMP/$1.log" || true; }
extra=0
while { [ "$(handled d1)" = 0 ] || [ "$(handled d2)" = 0 ]; } && [ $extra -lt 30 ]; do
  extra=$((extra + 1))
  p=port$(((extra % 2) + 1))
  on "${!p}" req POST /api/v1/orders '{"items":[{"sku":"WS-1","quantity":1}]}' "$alice"
  [ "$code" = 202 ] || { fail "place extra $extra: $code $body"; break; }
  id=$(json 'd["order_id"]')
  ids+=("$id")
  wait_transitions a1 "$id" "$confirmed"
  wait_transitions a2 "$id" "$confirmed"
  [ "$failures" = 0 ] || finish
done
c1=$(handled d1)
c2=$(handled d2)
echo "status changes handled: d1 $c1, d2 $c2 ($extra extra order(s))"
[ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] || fail "one host handled every status event (d1 $c1, d2 $c2): the fan-out was not put to the test"

# Bob's stream saw none of it; messages carry the customer, and only bob's could come.
if [ -s "$TMP/b1" ]; then fail "bob's stream got $(wc -l <"$TMP/b1") messages of other customers"; fi
# The decliner's stream saw only the decliner's order.
others=$(python3 -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get('order_id') != sys.argv[2]))" "$TMP/dec" "$declined")
[ "$others" = 0 ] || fail "the decliner's stream got $others messages of other orders"

# ---- a late per-order stream: the history as its snapshot ----
ws late "$port2" "/api/v1/orders/${ids[0]}/events" "$alice"
[ "$(ws_status late)" = 101 ] || fail "late order stream: $(ws_status late)"
wait_transitions late "${ids[0]}" "$confirmed"
ws bobs "$port1" "/api/v1/orders/${ids[0]}/events" "$bob"
[ "$(ws_status bobs)" = 404 ] || fail "bob opening alice's order: $(ws_status bobs), expected 404"
ws admins "$port1" "/api/v1/orders/${ids[1]}/events" "$admin"
[ "$(ws_status admins)" = 101 ] || fail "admin opening alice's order: $(ws_status admins), expected 101"
wait_transitions admins "${ids[1]}" "$confirmed"

# ---- shutdown: the streams are told the host is going away ----
kill -TERM "$D1"
wait "$D1" 2>/dev/null || true
for c in a1 b1 admins; do
  deadline=$((SECONDS + 10))
  while [ $SECONDS -lt $deadline ] && [ ! -s "$TMP/$c.closed" ]; do sleep 0.1; done
  [ "$(cat "$TMP/$c.closed" 2>/dev/null)" = 1001 ] || fail "stream $c on the stopped host: close code '$(cat "$TMP/$c.closed" 2>/dev/null)', expected 1001"
done
kill -TERM "$D2"
wait "$D2" 2>/dev/null || true
finish
