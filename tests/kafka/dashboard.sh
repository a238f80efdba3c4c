#!/usr/bin/env bash
# The live dashboard (/dashboard) in headless Chromium, driven over the DevTools protocol by a
# small client below: the page loads with no other asset, goes live over its WebSocket, lists
# the stages of a running order pipeline, and shows an order placed after it loaded moving to
# CONFIRMED without a reload (a marker set in the page survives, and a state before the final one
# was seen on the way). A screenshot is kept in the build tree (test-artifacts/dashboard.png).
source "$(dirname "$0")/kafkalib.bash"
command -v chromium >/dev/null || { echo "FAIL: chromium is not installed (scripts/deps.sh)"; exit 1; }
saga_setup
cdp_port=$(free_port)
ARTIFACTS=${OF_BUILD_DIR:-$OF_SOURCE_DIR/build}/test-artifacts
mkdir -p "$ARTIFACTS"

n="dash-$RUN_ID"
saga_pipeline "$TMP/p.yaml" "$n" --partitions 2 --latency 1500ms --notification
saga_host "$TMP/host.yaml" "$port" "$TMP/p.yaml" --pool 12
start_daemon d "$TMP/host.yaml"
[ "$failures" = 0 ] || finish
admin=$(tok ops admin)
alice=$(tok alice customer)
req POST /api/v1/products "$(product DASH-1 Dash 100 EUR 10)" "$admin"
[ "$code" = 201 ] || fail "create product: $code $body"

# The page's own answer: HTML, no store, a policy that lets nothing else load.
curl -s -D "$TMP/page.h" -o "$TMP/page.html" "http://127.0.0.1:$port/dashboard"
grep -qi '^content-type: text/html' "$TMP/page.h" || fail "/dashboard is not HTML"
grep -qi "^content-security-policy: default-src 'none'" "$TMP/page.h" || fail "/dashboard has no strict CSP"
grep -Eq '(src|href)="https?:' "$TMP/page.html" && fail "/dashboard loads an external asset"

# Its own process group: the cleanup kills chromium's helper processes with it.
setsid chromium --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TMP/chrome" \
  --remote-debugging-port="$cdp_port" --window-size=1400,900 \
  "http://127.0.0.1:$port/dashboard" >"$TMP/chromium.log" 2>&1 &
PIDS+=($!)
PGROUPS+=($!)

cat >"$TMP/cdp.py" <<'PY'
# A DevTools-protocol client on a raw WebSocket (no library): evaluate, poll, screenshot.
import base64, json, os, socket, struct, sys, time, urllib.request

cdp_port, order_cmd, shot = sys.argv[1], sys.argv[2], sys.argv[3]

def targets():
    with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list", timeout=2) as r:
        return json.load(r)

deadline = time.time() + 30
page = None
while time.time() < deadline and not page:
    try:
        page = next((t for t in targets() if t.get("type") == "page" and "/dashboard" in t.get("url", "")), None)
    except Exception:
        pass
    if not page:
        time.sleep(0.3)
if not page:
    sys.exit("no dashboard page in Chromium")
url = page["webSocketDebuggerUrl"]
host, _, path = url[len("ws://"):].partition("/")
h, _, p = host.partition(":")
s = socket.create_connection((h, int(p)), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, _, buf = buf.partition(b"\r\n\r\n")
assert b" 101 " in head.split(b"\r\n")[0], head

def send(obj):
    data = json.dumps(obj).encode()
    mask = os.urandom(4)
    n = len(data)
    hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise EOFError
        buf += chunk
    r, buf = buf[:n], buf[n:]
    return r

def recv():
    payload = b""
    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", need(8))[0]
        payload += need(n)
        if b0 & 0x80:
            return json.loads(payload)

next_id = 0
def call(method, **params):
    global next_id
    next_id += 1
    send({"id": next_id, "method": method, "params": params})
    while True:
        m = recv()
        if m.get("id") == next_id:
            if "error" in m:
                raise RuntimeError(m["error"])
            return m["result"]

def js(expr):
    r = call("Runtime.evaluate", expression=expr, returnByValue=True)
    return r["result"].get("value")

def wait(expr, what, secs=30):
    end = time.time() + secs
    while time.time() < end:
        v = js(expr)
        if v:
            return v
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}; page text: {js('document.body.innerText')[:2000]}")

wait("document.getElementById('connText') && document.getElementById('connText').textContent === 'live'", "the page to go live")
wait("document.querySelectorAll('#stages tbody tr').length >= 6", "the stage rows")
stages = js("[...document.querySelectorAll('#stages tbody tr')].map(r => r.dataset.stage)")
for want in ("inventory", "payment", "orders", "notification"):
    if not any(x.endswith("/" + want) for x in stages):
        sys.exit(f"stage {want} missing from the page: {stages}")
js("window.__notReloaded = 42")

order = os.popen(order_cmd).read().strip()
if not order:
    sys.exit("placing the order failed")
print("order", order)
seen = set()
end = time.time() + 60
state = None
while time.time() < end:
    state = js(f"(r => r ? r.querySelector('[data-state]').dataset.state : null)(document.querySelector('#items tr[data-key=\"{order}\"]'))")
    if state:
        seen.add(state)
    if state == "CONFIRMED":
        break
    time.sleep(0.1)
if state != "CONFIRMED":
    sys.exit(f"order {order} did not reach CONFIRMED on the page (last: {state}, seen: {seen})")
if js("window.__notReloaded") != 42:
    sys.exit("the page was reloaded")
if not seen & {"PENDING", "RESERVED", "PAID"}:
    sys.exit(f"no state before the final one was shown: {seen}")
# The counters arrive once a second: let the confirmation reach them before the picture.
wait("[...document.querySelectorAll('#stages tbody tr')].some(r => r.dataset.stage.endsWith('/orders') && Number(r.children[5].textContent) >= 2)", "the orders stage's counters")
shot_data = call("Page.captureScreenshot", format="png")["data"]
open(shot, "wb").write(base64.b64decode(shot_data))
print("states seen:", sorted(seen), "screenshot:", shot)
PY
cat >"$TMP/place.sh" <<SH
curl -s -X POST -H "Authorization: Bearer $alice" -H 'Content-Type: application/json' \
  --data-binary '{"items":[{"sku":"DASH-1","quantity":1}]}' "http://127.0.0.1:$port/api/v1/orders" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["order_id"])'
SH
python3 "$TMP/cdp.py" "$cdp_port" "bash $TMP/place.sh" "$ARTIFACTS/dashboard.png" >"$TMP/cdp.out" 2>&1 ||
  fail "dashboard in Chromium: $(cat "$TMP/cdp.out")"
cat "$TMP/cdp.out"
[ -s "$ARTIFACTS/dashboard.png" ] || fail "no screenshot"
python3 -c 'import sys; d=open(sys.argv[1],"rb").read(8); sys.exit(d != b"\x89PNG\r\n\x1a\n")' "$ARTIFACTS/dashboard.png" ||
  fail "the screenshot is not a PNG"
finish
