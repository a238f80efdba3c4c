#!/usr/bin/env bash
# orderflow token: prints a signed JWT whose claims the auth plugin's own verifier accepts (and
# PyJWT too, when installed), for HS256, RS256 and ES256; bad arguments exit 2, keys that cannot
# sign exit 1.
source "$(dirname "$0")/testlib.bash"
: "${OF_BUILD_DIR:?}"
verifier=$OF_BUILD_DIR/plugins/auth/auth_verify_token
if [ ! -x "$verifier" ]; then
  echo "FAIL: $verifier is missing (built with the auth plugin when OF_BUILD_TESTS is on)"
  exit 1
fi

ISS=https://shop.example
AUD=orderflow-api
printf '%s\n' "0123456789abcdef0123456789abcdef-cli-test-secret" >"$TMP/secret"
chmod 600 "$TMP/secret"

# claims TOKEN: the header and the claims as one JSON object {"header":..., "claims":...}
claims() {
  python3 - "$1" <<'PY'
import base64, json, sys
parts = sys.argv[1].split(".")
assert len(parts) == 3, "three segments"
dec = lambda s: json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
print(json.dumps({"header": dec(parts[0]), "claims": dec(parts[1])}, sort_keys=True))
PY
}

# check_claims TOKEN ALG SUB ROLES_JSON TTL: the header and every claim, with python3.
check_claims() {
  run python3 - "$(claims "$1")" "$2" "$3" "$4" "$5" "$ISS" "$AUD" <<'PY'
import json, re, sys, time
d = json.loads(sys.argv[1]); alg, sub, roles, ttl, iss, aud = sys.argv[2:8]
h, c = d["header"], d["claims"]
problems = []
if h.get("alg") != alg: problems.append("alg %r" % h.get("alg"))
if h.get("typ", "JWT") != "JWT": problems.append("typ %r" % h.get("typ"))
if c.get("sub") != sub: problems.append("sub %r" % c.get("sub"))
if c.get("roles") != json.loads(roles): problems.append("roles %r" % c.get("roles"))
if c.get("iss") != iss: problems.append("iss %r" % c.get("iss"))
if c.get("aud") != aud: problems.append("aud %r" % c.get("aud"))
if c["exp"] - c["iat"] != int(ttl): problems.append("exp - iat = %d" % (c["exp"] - c["iat"]))
if c["nbf"] != c["iat"]: problems.append("nbf != iat")
if abs(c["iat"] - time.time()) > 60: problems.append("iat is not now")
if not re.fullmatch(r"[0-9a-f]{32}", c.get("jti", "")): problems.append("jti %r" % c.get("jti"))
print("; ".join(problems) if problems else "claims ok")
PY
  expect_contains "claims ok" "claims of a $2 token"
}

# ---- HS256 ---------------------------------------------------------------------------------
run "$ORDERFLOW" token --key-file "$TMP/secret" --sub 42 --roles admin,customer --iss "$ISS" \
  --aud "$AUD" --ttl 15m
expect_status 0 "HS256 token"
tok=$out
if ! [[ "$tok" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]]; then
  echo "FAIL: not one compact JWS on stdout: $tok"
  failures=$((failures + 1))
fi
check_claims "$tok" HS256 42 '["admin","customer"]' 900
run "$verifier" HS256 "$TMP/secret" "$ISS" "$AUD" "$tok"
expect_status 0 "the plugin's verifier accepts the HS256 token"
expect_contains "sub=42" "subject"
expect_contains "roles=admin,customer" "roles"
expect_contains "ttl=900" "lifetime"
run "$verifier" HS256 "$TMP/secret" "$ISS" other-api "$tok"
expect_status 1 "another audience"
expect_contains "wrong audience" "audience checked"
run "$verifier" HS256 "$TMP/secret" https://evil.example "$AUD" "$tok"
expect_contains "wrong issuer" "issuer checked"
printf '%s\n' "another-secret-another-secret-another-secret" >"$TMP/secret2"
run "$verifier" HS256 "$TMP/secret2" "$ISS" "$AUD" "$tok"
expect_contains "bad signature" "another secret"

# defaults: HS256, no roles, 1h
run "$ORDERFLOW" token --key-file "$TMP/secret" --sub ops --iss "$ISS" --aud "$AUD"
expect_status 0 "token with defaults"
tok=$out
check_claims "$tok" HS256 ops '[]' 3600
run "$verifier" HS256 "$TMP/secret" "$ISS" "$AUD" "$tok"
expect_contains "roles=" "no roles"
expect_contains "ttl=3600" "default lifetime 1h"

# a secret file without its trailing newline signs the same
printf '%s' "0123456789abcdef0123456789abcdef-cli-test-secret" >"$TMP/secret-nonl"
run "$ORDERFLOW" token --key-file "$TMP/secret-nonl" --sub 1 --iss "$ISS" --aud "$AUD"
tok=$out
run "$verifier" HS256 "$TMP/secret" "$ISS" "$AUD" "$tok"
expect_status 0 "trailing newline is not part of the secret"

# ---- RS256 and ES256 ----------------------------------------------------------------------
if command -v openssl >/dev/null 2>&1; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TMP/rsa.pem" 2>/dev/null
  openssl pkey -in "$TMP/rsa.pem" -pubout -out "$TMP/rsa.pub" 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/ec.pem" 2>/dev/null
  openssl pkey -in "$TMP/ec.pem" -pubout -out "$TMP/ec.pub" 2>/dev/null
  for pair in RS256:rsa ES256:ec; do
    alg=${pair%%:*} key=${pair##*:}
    run "$ORDERFLOW" token --alg "$alg" --key-file "$TMP/$key.pem" --sub 7 --roles admin \
      --iss "$ISS" --aud "$AUD" --ttl 2h
    expect_status 0 "$alg token"
    tok=$out
    check_claims "$tok" "$alg" 7 '["admin"]' 7200
    run "$verifier" "$alg" "$TMP/$key.pub" "$ISS" "$AUD" "$tok"
    expect_status 0 "the plugin's verifier accepts the $alg token"
    expect_contains "sub=7" "$alg subject"
    # the same token under another configured algorithm is refused by name
    run "$verifier" HS256 "$TMP/secret" "$ISS" "$AUD" "$tok"
    expect_contains "algorithm $alg is not the configured HS256" "$alg token to an HS256 verifier"
  done
  # wrong key types cannot sign: exit 1
  run "$ORDERFLOW" token --alg RS256 --key-file "$TMP/ec.pem" --sub 1 --iss "$ISS" --aud "$AUD"
  expect_status 1 "an EC key for RS256"
  expect_contains "cannot sign" "reason"
  run "$ORDERFLOW" token --alg ES256 --key-file "$TMP/rsa.pem" --sub 1 --iss "$ISS" --aud "$AUD"
  expect_status 1 "an RSA key for ES256"
  # the HS/RS confusion is not something this tool makes: a PEM key is no HMAC secret
  run "$ORDERFLOW" token --alg HS256 --key-file "$TMP/rsa.pub" --sub 1 --iss "$ISS" --aud "$AUD"
  expect_status 1 "a public key as an HS256 secret"
  expect_contains "PEM" "reason names the PEM"
  run "$ORDERFLOW" token --alg RS256 --key-file "$TMP/secret" --sub 1 --iss "$ISS" --aud "$AUD"
  expect_status 1 "a secret as an RSA key"
else
  echo "note: openssl not installed; RS256 and ES256 not tested"
fi

# ---- interoperability: PyJWT (Debian's python3-jwt), when installed ---------------------------
if /usr/bin/python3 -c 'import jwt, cryptography' 2>/dev/null; then
  for spec in HS256:secret:secret RS256:rsa.pem:rsa.pub ES256:ec.pem:ec.pub; do
    IFS=: read -r alg priv pub <<<"$spec"
    [ -f "$TMP/$priv" ] || continue
    tok=$("$ORDERFLOW" token --alg "$alg" --key-file "$TMP/$priv" --sub 9 --iss "$ISS" --aud "$AUD")
    run /usr/bin/python3 - "$tok" "$alg" "$TMP/$pub" "$ISS" "$AUD" <<'PY'
import jwt, sys
tok, alg, keyfile, iss, aud = sys.argv[1:6]
key = open(keyfile, "rb").read()
if alg == "HS256":
    key = key.rstrip(b"\r\n")
c = jwt.decode(tok, key, algorithms=[alg], audience=aud, issuer=iss,
               options={"require": ["exp", "iat", "nbf", "sub"]})
print("pyjwt ok", c["sub"])
PY
    expect_status 0 "PyJWT verifies the $alg token"
    expect_contains "pyjwt ok 9" "PyJWT claims ($alg)"
    # and the other way round: a PyJWT token passes the plugin's verifier
    tok=$(/usr/bin/python3 - "$alg" "$TMP/$priv" "$ISS" "$AUD" <<'PY'
import jwt, sys, time
alg, keyfile, iss, aud = sys.argv[1:5]
key = open(keyfile, "rb").read()
if alg == "HS256":
    key = key.rstrip(b"\r\n")
now = int(time.time())
print(jwt.encode({"sub": "11", "roles": ["customer"], "iat": now, "exp": now + 60,
                  "iss": iss, "aud": [aud, "other"]}, key, algorithm=alg))
PY
)
    run "$verifier" "$alg" "$TMP/$pub" "$ISS" "$AUD" "$tok"
    expect_status 0 "the plugin's verifier accepts a PyJWT $alg token"
    expect_contains "sub=11" "PyJWT token subject ($alg)"
  done
fi

# ---- bad arguments: exit 2 ------------------------------------------------------------------
base=(--key-file "$TMP/secret" --sub 1 --iss "$ISS" --aud "$AUD")
bad_args() {
  local what=$1
  shift
  run "$ORDERFLOW" token "$@"
  expect_status 2 "$what"
  expect_lacks "eyJ" "$what prints no token"
}
bad_args "no arguments"
bad_args "no --key-file" --sub 1 --iss "$ISS" --aud "$AUD"
bad_args "no --sub" --key-file "$TMP/secret" --iss "$ISS" --aud "$AUD"
bad_args "no --iss" --key-file "$TMP/secret" --sub 1 --aud "$AUD"
bad_args "no --aud" --key-file "$TMP/secret" --sub 1 --iss "$ISS"
bad_args "--alg none" "${base[@]}" --alg none
bad_args "--alg in lower case" "${base[@]}" --alg hs256
bad_args "--alg HS512" "${base[@]}" --alg HS512
bad_args "--ttl without a unit" "${base[@]}" --ttl 3600
bad_args "--ttl 0s" "${base[@]}" --ttl 0s
bad_args "--ttl above 24h" "${base[@]}" --ttl 25h
bad_args "--ttl garbage" "${base[@]}" --ttl soon
bad_args "empty --sub" --key-file "$TMP/secret" --sub "" --iss "$ISS" --aud "$AUD"
bad_args "--sub with a newline" --key-file "$TMP/secret" --sub $'a\nb' --iss "$ISS" --aud "$AUD"
bad_args "--roles with an empty name" "${base[@]}" --roles admin,,customer
bad_args "--roles ending with a comma" "${base[@]}" --roles admin,
bad_args "--roles with a space" "${base[@]}" --roles "admin, customer"
bad_args "an extra argument" "${base[@]}" extra
bad_args "an unknown option" "${base[@]}" --nbf 0
run "$ORDERFLOW" token --ttl
expect_status 2 "an option without its value"

# ---- keys that cannot sign: exit 1 ----------------------------------------------------------
run "$ORDERFLOW" token --key-file "$TMP/missing" --sub 1 --iss "$ISS" --aud "$AUD"
expect_status 1 "a missing key file"
expect_contains "$TMP/missing" "the path is named"
printf 'too-short\n' >"$TMP/short"
run "$ORDERFLOW" token --key-file "$TMP/short" --sub 1 --iss "$ISS" --aud "$AUD"
expect_status 1 "a secret shorter than 32 bytes"
expect_contains "32 bytes" "reason"
run "$ORDERFLOW" token --key-file "$TMP" --sub 1 --iss "$ISS" --aud "$AUD"
expect_status 1 "a directory as the key file"

run "$ORDERFLOW" token --help
expect_status 0 "--help"
expect_contains "--key-file" "usage lists the options"
finish
