#!/usr/bin/env bash
# The HTTP gateway and the auth plugin in a running orderflowd with MariaDB, Redis and Kafka:
# registration and login, every JWT attack (alg none, wrong key, expired, not yet valid, wrong
# issuer and audience), the error statuses as problem+json, malformed and oversized bodies, rate
# limiting, roles and the first admin from `orderflow token`, /readyz, and MariaDB and Redis
# outages (a 503, never a 500 or a crash).
source "$(dirname "$0")/kafkalib.bash"
bash "$SERVICES" status redis >/dev/null 2>&1 || bash "$SERVICES" start redis >/dev/null
with_database
port=$(free_port)
BASE="http://127.0.0.1:$port"
head -c 48 /dev/urandom | base64 -w0 >"$TMP/secret"
chmod 600 "$TMP/secret"

cat >"$TMP/p.yaml" <<YAML
pipeline: acc-$RUN_ID
stages:
  - name: auth
    plugin: auth
    config:
      issuer: https://shop.test
      audience: shop-api
      key_file: "$TMP/secret"
      min_password_length: 10
routes:
  - { method: POST, path: /api/v1/auth/register, handler: auth.register, auth: none }
  - { method: POST, path: /api/v1/auth/login, handler: auth.login, auth: none }
  - { method: GET, path: /api/v1/users/me, handler: auth.me }
  - { method: POST, path: /api/v1/admin/users, handler: auth.create_admin, roles: [admin] }
YAML
host_config "$TMP/host.yaml" "$TMP/p.yaml"
sed -i "s|plugin_dirs: \[ \"$OF_TEST_PLUGIN_DIR/tap\" \]|plugin_dirs: [ \"$OF_BUILD_PLUGIN_DIR\" ]|" "$TMP/host.yaml"
cat >>"$TMP/host.yaml" <<YAML
mysql: { host: "$OF_MYSQL_HOST", port: $OF_MYSQL_PORT, user: "$OF_MYSQL_USER", password: "$OF_MYSQL_PASSWORD", database: "$db", acquire_timeout: 2s, connect_timeout: 1s }
redis: { host: "$OF_REDIS_HOST", port: $OF_REDIS_PORT, key_prefix: "t$RUN_ID:" }
http:
  listen: "127.0.0.1:$port"
  max_body: 4KiB
  rate_limit: { per_address: 20/s, burst: 40 }
YAML
start_daemon d1 "$TMP/host.yaml"

# req METHOD PATH [BODY] [extra curl args...]: as kafkalib.bash's, without a token argument.
req() {
  local method=$1 path=$2 data=${3-}
  shift 3 || shift $#
  local args=(-s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data-binary "$data")
  code=$(curl "${args[@]}" "$@" "$BASE$path")
  body=$(cat "$TMP/body")
  headers=$(cat "$TMP/headers")
}

req GET /healthz ""; expect 200 "healthz"
req GET /readyz ""; expect 200 "readyz with every dependency up"

req POST /api/v1/auth/register '{"email":"Ada@Example.com","password":"correct horse battery","display_name":"Ada"}'
expect 201 "register"
req POST /api/v1/auth/register '{"email":"ada@example.com","password":"correct horse battery","display_name":"Ada"}'
expect 409 "duplicate email"
req POST /api/v1/auth/register "{\"email\":\"x'; DROP TABLE users; --@e.com\",\"password\":\"correct horse battery\",\"display_name\":\"Robert'); DROP TABLE users;--\"}"
[ "$code" = 201 ] || [ "$code" = 400 ] || fail "SQL in fields: $code"
[ "$(sql -D "$db" -e 'SELECT COUNT(*) FROM users')" -ge 1 ] || fail "the users table is gone"
req POST /api/v1/auth/register '{"email": "a@b.c", "password": '; expect 400 "malformed JSON"
grep -q "line\|column\|position" <<<"$body" || fail "malformed JSON: no position in $body"
req POST /api/v1/auth/register "{\"email\":\"big@example.com\",\"password\":\"$(head -c 8000 /dev/zero | tr '\0' a)\",\"display_name\":\"B\"}"
expect 413 "oversized body"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H 'Content-Type: text/plain' \
  --data-binary 'email=a' "$BASE/api/v1/auth/register")
[ "$code" = 415 ] || fail "wrong content type: $code $(cat "$TMP/body")"
req GET /api/v1/auth/register ""; expect 405 "wrong method"
grep -qi '^allow: POST' <<<"$headers" || fail "405 without Allow"
req GET /api/v1/nothing ""; expect 404 "unknown path"

req POST /api/v1/auth/login '{"email":"ada@example.com","password":"wrong password!"}'; expect 401 "wrong password"
req POST /api/v1/auth/login '{"email":"nobody@example.com","password":"correct horse battery"}'; expect 401 "unknown user"
req POST /api/v1/auth/login '{"email":"ada@example.com","password":"correct horse battery"}'; expect 200 "login"
token=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' <<<"$body")

req GET /api/v1/users/me ""; expect 401 "no token"
grep -qi '^www-authenticate: Bearer' <<<"$headers" || fail "401 without WWW-Authenticate"
req GET /api/v1/users/me "" -H "Authorization: Bearer $token"; expect 200 "me"
grep -q 'ada@example.com' <<<"$body" || fail "me: $body"

# Forged tokens: each refused with 401 and its own reason.
forge() { # forge ALG KEY CLAIMS_JSON
  python3 - "$@" <<'PY'
import base64, hashlib, hmac, json, sys
alg, key, claims = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
head = b(json.dumps({"alg": alg, "typ": "JWT"}).encode())
body = b(json.dumps(claims).encode())
msg = f"{head}.{body}".encode()
sig = "" if alg.lower() == "none" else b(hmac.new(open(key, "rb").read().rstrip(b"\n"), msg, hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}
now=$(date +%s)
good="{\"sub\":\"1\",\"roles\":[\"customer\"],\"iss\":\"https://shop.test\",\"aud\":\"shop-api\",\"iat\":$now,\"exp\":$((now + 600))}"
attack() { # attack NAME TOKEN REASON
  req GET /api/v1/users/me "" -H "Authorization: Bearer $2"
  expect 401 "$1"
  grep -qi "$3" <<<"$body$headers" || fail "$1: reason '$3' not given: $body"
}
# The forger is right: with the right key and claims its token is accepted.
req GET /api/v1/users/me "" -H "Authorization: Bearer $(forge HS256 "$TMP/secret" "$good")"
expect 200 "a correctly forged token"
attack "alg none" "$(forge none "$TMP/secret" "$good")" "none"
# Algorithm confusion: a token whose header claims another algorithm is refused before any
# signature check, whatever it was signed with.
attack "another algorithm" "$(forge RS256 "$TMP/secret" "$good")" "algorithm"
echo "another secret that is long enough to be a key!!" >"$TMP/other"
attack "wrong key" "$(forge HS256 "$TMP/other" "$good")" "signature"
attack "expired" "$(forge HS256 "$TMP/secret" "${good/\"exp\":$((now + 600))/\"exp\":$((now - 600))}")" "expired"
attack "not yet valid" "$(forge HS256 "$TMP/secret" "${good/\"iat\":$now/\"iat\":$((now + 600)),\"nbf\":$((now + 600))}")" "not yet valid"
attack "wrong issuer" "$(forge HS256 "$TMP/secret" "${good/shop.test/evil.test}")" "issuer"
attack "wrong audience" "$(forge HS256 "$TMP/secret" "${good/shop-api/other-api}")" "audience"
attack "garbage" "not.a.token" "malformed"

# Roles: a customer cannot create an admin; an ops token from `orderflow token` can.
req POST /api/v1/admin/users '{"email":"root@example.com","password":"correct horse battery","display_name":"Root"}' -H "Authorization: Bearer $token"
expect 403 "customer on an admin route"
ops=$("$ORDERFLOW" token --key-file "$TMP/secret" --sub ops --roles admin --iss https://shop.test --aud shop-api --ttl 5m)
req POST /api/v1/admin/users '{"email":"root@example.com","password":"correct horse battery","display_name":"Root"}' -H "Authorization: Bearer $ops"
expect 201 "admin created with an ops token"

# Rate limiting per client address: a burst beyond the bucket gets 429 with Retry-After.
seen429=0
for _ in $(seq 1 600); do
  c=$(curl -s -o /dev/null -D "$TMP/rl-headers" -w '%{http_code}' "$BASE/api/v1/nothing")
  [ "$c" = 429 ] && { seen429=1; break; }
done
[ "$seen429" = 1 ] || fail "600 requests at once were never rate limited"
grep -qi '^retry-after: [0-9]' "$TMP/rl-headers" || fail "429 without Retry-After"
sleep 3

# Redis down for good: the cache degrades, /readyz says which, everything else works.
bash "$SERVICES" stop redis --keep-data >/dev/null
req GET /readyz ""; expect 503 "readyz with redis down"
grep -q redis <<<"$body" || fail "readyz does not name redis: $body"
req POST /api/v1/auth/login '{"email":"ada@example.com","password":"correct horse battery"}'; expect 200 "login with redis down"
bash "$SERVICES" start redis >/dev/null

# MariaDB down: a clear 503, no crash, and service again once it is back.
bash "$SERVICES" stop mariadb >/dev/null
req POST /api/v1/auth/login '{"email":"ada@example.com","password":"correct horse battery"}'
expect 503 "login with the database down"
kill -0 "$DAEMON_PID" || fail "orderflowd died with the database down"
bash "$SERVICES" start mariadb >/dev/null
for _ in $(seq 1 40); do
  req POST /api/v1/auth/login '{"email":"ada@example.com","password":"correct horse battery"}'
  [ "$code" = 200 ] && break
  sleep 0.5
done
expect 200 "login after the database came back"

req GET /api/openapi.json ""; expect 200 "openapi"
for p in /api/v1/auth/register /api/v1/auth/login /api/v1/users/me /api/v1/admin/users; do
  grep -q "\"$p\"" <<<"$body" || fail "openapi lacks $p"
done
grep -q 'correct horse battery' "$TMP/d1.log" && fail "a password appeared in the log"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "orderflowd did not stop cleanly"
drop_db
finish
