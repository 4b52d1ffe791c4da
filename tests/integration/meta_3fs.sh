#!/bin/bash
# SPDX-License-Identifier: MIT
#
# test_meta_3fs.sh - integration test of kvfs-meta's 3FS-compatible routes with curl.
#
# Starts the real kvfs-meta on a free loopback port with its own data directory, then runs the
# whole HiCacheHF3FS flow (404 before initialize, initialize and its repeat, reserve with LRU
# eviction on a full rank, confirm with releases, exists, get_page_indices, delete_keys, clear),
# bad input (malformed JSON, wrong types, an oversized body, unknown routes, wrong methods, a
# missing or wrong token, native names in a malformed "_hex" form or in raw bytes that are not
# UTF-8) which must get a 4xx JSON error and leave the server up, names that are not UTF-8 through
# the native routes as "name_hex"/"names_hex", and kill -9
# followed by a restart that must keep every acknowledged change, including a reservation made
# just before the kill. Then, with leases on, a restart's grace: pages never handed out serve new
# keys at once, while the pages of published keys (read before the kill) stay out of reach until
# the grace has passed.
#
# usage: test_meta_3fs.sh [path/to/kvfs-meta]     (exit 0 pass, 1 fail, 77 skip)

set -u
BIN=${1:-${KVFS_META:-build/metadata/http/kvfs-meta}}
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 not installed"; exit 77; }
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }

WORK=$(mktemp -d /tmp/kvfs-meta-3fs.XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PORT=$(free_port)
U=http://127.0.0.1:$PORT
echo "s3cr3t-token" >"$WORK/token"
AUTH=(-H "Authorization: Bearer s3cr3t-token")

start() {
	"$BIN" --listen "127.0.0.1:$PORT" --data "$WORK/data" --token-file "$WORK/token" \
		--lease-ms "${LEASE_MS:-0}" --body-max 65536 "$@" 2>>"$WORK/log" &
	PID=$!
	disown "$PID" 2>/dev/null || true
	for _ in $(seq 100); do
		curl -sf "$U/healthz" >/dev/null && return 0
		sleep 0.05
	done
	echo "kvfs-meta did not start:"; cat "$WORK/log"; exit 1
}

# post PATH BODY [curl args...] -> sets CODE and BODY
post() {
	local path=$1 body=$2
	shift 2
	BODY=$(curl -s -o - -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' \
		"${AUTH[@]}" "$@" --data-binary "$body" "$U$path")
	CODE=${BODY##*$'\n'}
	BODY=${BODY%$'\n'*}
}

# expect CODE BODY-or-empty DESCRIPTION
expect() {
	if [ "$CODE" != "$1" ] || { [ -n "$2" ] && [ "$BODY" != "$2" ]; }; then
		fail "$3: got $CODE '$BODY', want $1 '$2'"
	else
		ok "$3"
	fi
}

# expect a JSON error with errno
expect_err() {
	local code=$1 desc=$2
	if [ "$CODE" != "$code" ] ||
		! python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert isinstance(d["error"], str) and isinstance(d["errno"], int)' "$BODY" 2>/dev/null; then
		fail "$desc: got $CODE '$BODY', want $code with a JSON error"
	else
		ok "$desc ($CODE)"
	fi
}

kill9() {
	kill -9 "$PID"
	# disowned, so `wait` cannot reap it: poll until it has exited (its store lock goes with it)
	for _ in $(seq 200); do
		st=$(awk '/^State:/ {print $2}' "/proc/$PID/status" 2>/dev/null)
		[ -z "$st" ] || [ "$st" = Z ] && break
		sleep 0.05
	done
	PID=
}

start

# ---- the 3FS flow ----
post /0/exists '{"keys":["a"]}'
expect_err 404 "exists before initialize"
post /0/initialize '{"num_pages":3}'
expect 204 "" "initialize"
post /0/initialize '{"num_pages":99}'
expect 204 "" "initialize repeat ignored"
post /0/exists '{"keys":["a"],"namespace":"mamba"}'
expect_err 404 "other namespace not initialized"
post /0/reserve_and_allocate_page_indices '{"keys":[["a",""],["b",""]]}'
expect 200 '{"indices":[[false,2],[false,1]]}' "reserve two"
post /0/confirm_write '{"written_keys_to_confirm":[["a",2],["b",1]],"pages_to_release":[]}'
expect 204 "" "confirm two"
post /0/reserve_and_allocate_page_indices '{"keys":[["b",""],["c",""],["d",""]]}'
expect 200 '{"indices":[[true,1],[false,0],[false,2]]}' "reserve: hit, free page, LRU eviction of a"
post /0/confirm_write '{"written_keys_to_confirm":[["c",0]],"pages_to_release":[2]}'
expect 204 "" "confirm c, release d's page"
post /0/exists '{"keys":["a","b","c","d"]}'
expect 200 '{"exists":[false,true,true,false]}' "exists"
post /0/get_page_indices '{"keys":["a","b","c","d"]}'
expect 200 '{"indices":[null,1,0,null]}' "get_page_indices"
post /0/reserve_and_allocate_page_indices '{"keys":[["e",null],["f",""],["g",""]]}'
expect 200 '{"indices":[[false,2],[false,1],[false,0]]}' "reserve: released page, then evict b, c"
post /0/confirm_write '{"written_keys_to_confirm":[["e",2],["f",1]],"pages_to_release":[0]}'
expect 204 "" "confirm e, f; release g"
post /0/reserve_and_allocate_page_indices '{"keys":[["x",""],["y",""],["z",""],["w",""]]}'
expect 200 '{"indices":[[false,0],[false,2],[false,1],[false,-1]]}' "reserve past capacity: -1"
post /0/confirm_write '{"pages_to_release":[0,1,2]}'
expect 204 "" "release all"
post /0/get_page_indices '{"keys":["e","f"]}'
expect 200 '{"indices":[null,null]}' "evicted keys gone"
post /0/reserve_and_allocate_page_indices '{"keys":[["k1",""],["k2",""]]}'
post /0/confirm_write '{"written_keys_to_confirm":[["k1",2],["k2",1]]}'
post /0/delete_keys '{"keys":["k1","nope"]}'
expect 204 "" "delete_keys"
post /0/exists '{"keys":["k1","k2"]}'
expect 200 '{"exists":[false,true]}' "exists after delete"
post /0/clear '{}'
expect 204 "" "clear"
post /0/exists '{"keys":["k2"]}'
expect 200 '{"exists":[false]}' "exists after clear"
post /7/initialize '{"num_pages":4,"namespace":"mamba"}'
expect 204 "" "initialize rank 7 namespace mamba"
post /7/exists '{"keys":[]}'
expect_err 404 "rank 7 kv not initialized"
post /7/exists '{"keys":[],"namespace":"mamba"}'
expect 200 '{"exists":[]}' "empty batch"

# ---- bad input ----
post /0/exists '{"keys":'
expect_err 400 "malformed JSON"
post /0/exists '[1,2]'
expect_err 400 "not an object"
post /0/exists '{"keys":"a"}'
expect_err 400 "keys not an array"
post /0/exists '{"keys":[1]}'
expect_err 400 "key not a string"
post /0/exists '{}'
expect_err 400 "missing keys"
post /0/initialize '{"num_pages":-1}'
expect_err 400 "negative num_pages"
post /0/initialize '{"num_pages":"3"}'
expect_err 400 "num_pages a string"
post /0/reserve_and_allocate_page_indices '{"keys":["a"]}'
expect_err 400 "reserve keys not pairs"
post /0/confirm_write '{"written_keys_to_confirm":[["a",99]]}'
expect_err 400 "confirm index out of range"
post /0/confirm_write '{"pages_to_release":["x"]}'
expect_err 400 "release not an integer"
post /0/exists '{"keys":[],"namespace":5}'
expect_err 400 "namespace not a string"
post /abc/exists '{"keys":[]}'
expect_err 400 "rank not a number"
post /0/nonsense '{}'
expect_err 404 "unknown 3FS route"
post /v2/whatever '{}'
expect_err 404 "unknown route"
post /v1/nonsense '{}'
expect_err 404 "unknown native route"
# native names are bytes: not UTF-8 travels as "<key>_hex" (docs/API.md); bad forms are 400
post /v1/pool/create '{"name":"kv"}'
ROOT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["root_ino"])' "$BODY" 2>/dev/null)
post /v1/create "{\"parent\":$ROOT,\"name_hex\":\"fe41\"}"
expect 200 "" "create of a name that is not UTF-8 (name_hex)"
post /v1/readdir "{\"dir\":$ROOT}"
case $BODY in *'"name_hex":"fe41"'*) ok "readdir answers name_hex" ;;
*) fail "readdir of a name that is not UTF-8: $BODY" ;; esac
post /v1/exists "{\"parent\":$ROOT,\"names\":[\"x\"],\"names_hex\":[\"fe41\",\"fe\"]}"
expect 200 '{"exists":[false],"exists_hex":[true,false]}' "exists with names_hex"
post /v1/lookup "$(printf '{"parent":%s,"name":"\xfe\x41"}' "$ROOT")"
expect_err 400 "raw bytes that are not UTF-8 in the body"
case $BODY in *'not UTF-8'*'_hex'*) ok "the 400 says to use _hex" ;;
*) fail "message: $BODY" ;; esac
for bad in '"name_hex":"fe4"' '"name_hex":"fezz"' '"name_hex":"fe00"' '"name_hex":7' \
	'"name":"x","name_hex":"78"' '"name":"a\u0000b"' '"name_hex":""'; do
	post /v1/lookup "{\"parent\":$ROOT,$bad}"
	expect_err 400 "lookup with $bad"
done
post /v1/unlink "{\"parent\":$ROOT,\"name_hex\":\"FE41\"}"
expect 204 "" "unlink by upper-case name_hex"
python3 -c 'print("{\"keys\":[" + ",".join(["\"%064x\"" % i for i in range(2000)]) + "]}")' >"$WORK/big"
post /0/exists "@$WORK/big"
expect_err 413 "oversized body"
post /0/exists "@$WORK/big" -H 'Transfer-Encoding: chunked'
expect_err 413 "oversized chunked body"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "$U/0/exists")
[ "$CODE" = 405 ] && ok "GET on a POST route (405)" || fail "GET on a POST route: $CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$U/metrics")
[ "$CODE" = 405 ] && ok "POST on /metrics (405)" || fail "POST on /metrics: $CODE"
AUTH=()
post /0/initialize '{"num_pages":3}'
expect_err 401 "missing token on a mutating route"
post /0/confirm_write '{}' -H 'Authorization: Bearer wrong'
expect_err 401 "wrong token"
post /0/exists '{"keys":[]}'
expect 200 '{"exists":[]}' "read route without token"
AUTH=(-H "Authorization: Bearer s3cr3t-token")
curl -sf "$U/healthz" >/dev/null && ok "server alive after bad input" || fail "server died"
curl -s "$U/metrics" | grep -q 'kvfs_meta_requests_total{route="/{rank}/exists",code="4xx"}' &&
	ok "metrics count errors" || fail "metrics"

# ---- kill -9 keeps every acknowledged change ----
post /0/initialize '{"num_pages":1000}' # ignored (exists with 3)
post /1/initialize '{"num_pages":1000}'
python3 - "$U" >"$WORK/acked" <<'EOF' || fail "load before kill"
import json, sys, urllib.request
U = sys.argv[1]
H = {"Content-Type": "application/json", "Authorization": "Bearer s3cr3t-token"}
def post(p, b):
    r = urllib.request.urlopen(urllib.request.Request(U + p, json.dumps(b).encode(), H))
    return r.read()
acked = {}
for b in range(20):
    keys = ["%064x" % (b * 32 + i) for i in range(32)]
    res = json.loads(post("/1/reserve_and_allocate_page_indices", {"keys": [[k, ""] for k in keys]}))["indices"]
    post("/1/confirm_write", {"written_keys_to_confirm": [[k, r[1]] for k, r in zip(keys, res)]})
    acked.update({k: r[1] for k, r in zip(keys, res)})
post("/1/delete_keys", {"keys": ["%064x" % 0]})
del acked["%064x" % 0]
res = json.loads(post("/1/reserve_and_allocate_page_indices", {"keys": [["pending", ""]]}))["indices"]
print(json.dumps({"acked": acked, "pending": res[0][1]}))
EOF
kill9
start
python3 - "$U" "$WORK/acked" <<'EOF' && ok "kill -9: every acknowledged change survived" || fail "kill -9 lost changes"
import json, sys, urllib.request
U = sys.argv[1]
st = json.load(open(sys.argv[2]))
H = {"Content-Type": "application/json", "Authorization": "Bearer s3cr3t-token"}
def post(p, b):
    r = urllib.request.urlopen(urllib.request.Request(U + p, json.dumps(b).encode(), H))
    return r.read()
keys = list(st["acked"]) + ["%064x" % 0]
got = json.loads(post("/1/get_page_indices", {"keys": keys}))["indices"]
assert got[:-1] == [st["acked"][k] for k in keys[:-1]], "indices changed"
assert got[-1] is None, "deleted key came back"
assert len(set(got[:-1])) == len(got) - 1, "a page is used twice"
# the reservation made before the kill is still owned and can be confirmed
post("/1/confirm_write", {"written_keys_to_confirm": [["pending", st["pending"]]]})
assert json.loads(post("/1/get_page_indices", {"keys": ["pending"]}))["indices"] == [st["pending"]]
# and rank 0's state (3 pages, cleared) is intact
assert json.loads(post("/0/exists", {"keys": ["k2"]}))["exists"] == [False]
EOF

# ---- the grace after a restart spares pages never handed out ----
kill9
LEASE_MS=3000 start
post /2/initialize '{"num_pages":6}'
post /2/reserve_and_allocate_page_indices '{"keys":[["g1",""],["g2",""],["g3",""]]}'
expect 200 '{"indices":[[false,5],[false,4],[false,3]]}' "grace: reserve three of six"
post /2/confirm_write '{"written_keys_to_confirm":[["g1",5],["g2",4],["g3",3]]}'
post /2/get_page_indices '{"keys":["g1","g2","g3"]}'
expect 200 '{"indices":[5,4,3]}' "grace: read them (leased)"
kill9
t0=$(date +%s%N)
LEASE_MS=3000 start
post /2/reserve_and_allocate_page_indices '{"keys":[["n1",""],["n2",""],["n3",""],["n4",""]]}'
t1=$(date +%s%N)
if [ $(((t1 - t0) / 1000000)) -lt 2500 ]; then
	expect 200 '{"indices":[[false,2],[false,1],[false,0],[false,-1]]}' \
		"grace: right after a restart, the never-used pages at once, then -1"
else
	echo "SKIP grace check: the request took longer than the grace"
fi
sleep 3.2
post /2/reserve_and_allocate_page_indices '{"keys":[["n4",""]]}'
expect 200 '{"indices":[[false,5]]}' "grace: after it, the LRU key is evicted"

kill -TERM "$PID"
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$PID" 2>/dev/null && fail "still running after SIGTERM" || ok "clean shutdown on SIGTERM"
grep -q "stopping" "$WORK/log" || fail "no shutdown message"
PID=

if [ "$FAILS" -ne 0 ]; then
	echo "$FAILS failure(s); server log:"
	cat "$WORK/log"
	exit 1
fi
echo "all passed"
