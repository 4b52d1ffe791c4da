#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A hostile TCP client on node 2 attacks node 1's data port (10.99.0.11:9400): garbage instead
# of a hello, short and stalled frames, bad magic/version/token length, the wrong node,
# requests outside the arena (past the end, straddling it, overflowing 64 bits), a stale
# incarnation, a WRITE past the end, malformed requests (len 0, len too large, unknown op, bad
# magic, reserved bits), a WRITE whose payload never comes, 64 idle connections; the cluster
# has a token: a hello without it or with a wrong one is refused, the rest uses it (a peer
# that got in and misbehaves). Each must be
# refused (an error reply, or the connection closed) and node 1 must keep serving: its daemon
# stays up and nodes 2 and 3 read its files intact during and after the attack.
. "$(dirname "$0")/lib.sh"
mn_setup
export KVFS_CLUSTER_TOKEN=mn-hostile-$$-token
mn_up 3
sleep 2 # every node has heard of every peer

M=1048576
mkdir -p "$(mnt 1)/kv/h"
on_py 1 write "$(mnt 1)/kv/h/before" $((6 * M)) before >/dev/null
id1=$(node_stat 1 'j["node"]["id"]')
pid1=$(cl pid 1)
tcp_before=$(node_stat 2 'j["xfer"]["tcp"]["transfers"]')

step "node 2 attacks 10.99.0.11:9400 (node id $id1) while node 3 keeps reading node 1's file"
# shellcheck disable=SC2016 # expanded by the inner bash
on 3 timeout 300 bash -c 'while [ ! -e "$1" ]; do
	python3 "$2" check "$KVFS_MNT/kv/h/before" $((6 << 20)) before >/dev/null || { echo bad; exit 1; }
	sleep 0.2
done' _ "$WORK/stop" "$LIB_DIR/mn.py" >"$WORK/reader.out" 2>&1 &
reader=$!
bg_register "$reader"
st=0
on 2 timeout 400 python3 "$LIB_DIR/mn.py" hostile 10.99.0.11 9400 "$id1" \
	"$KVFS_CLUSTER_TOKEN" >"$WORK/hostile.out" 2>&1 ||
	st=$?
touch "$WORK/stop"
sed 's/^/    /' "$WORK/hostile.out"
check "every hostile case refused (see above; status $st)" [ "$st" = 0 ]
rst=0
wait "$reader" || rst=$?
check "node 3 read node 1's file intact during the attack" [ "$rst" = 0 ]

step "node 1 keeps serving"
[ "$(cl pid 1 2>/dev/null)" = "$pid1" ] || fail "node 1's kvfs (pid $pid1) died during the attack"
check "node 2 reads node 1's file" on_py 2 check "$(mnt 2)/kv/h/before" $((6 * M)) before
on_py 1 write "$(mnt 1)/kv/h/after" $((5 * M + 1)) after >/dev/null
check "node 3 reads a file node 1 wrote after the attack" \
	on_py 3 check "$(mnt 3)/kv/h/after" $((5 * M + 1)) after
check "node 2 reads a file node 1 wrote after the attack" \
	on_py 2 check "$(mnt 2)/kv/h/after" $((5 * M + 1)) after
tcp_after=$(node_stat 2 'j["xfer"]["tcp"]["transfers"]')
assert_ge "$tcp_after" $((tcp_before + 1)) "node 2's tcp transfers (its reads used the network)"
log "node 1 log lines about the attack: $(grep -ci 'proto\|refus\|malformed\|bad' \
	"$KVFS_CLUSTER_DIR/n1/log" || true)"
