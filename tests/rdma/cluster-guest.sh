#!/bin/bash
# SPDX-License-Identifier: MIT
#
# cluster-guest.sh - runs INSIDE the rdma-vm guest (--two-nodes): a kvfs cluster with real
# mounts where nodes A and B talk verbs over rxe1/rxe2 and node C has no RDMA (TCP only), so
# one run covers verbs-to-verbs, the mixed cluster (verbs nodes <-> TCP node) and a node kill.
# Started by tests/rdma/cluster.sh; BUILD is the host build directory (visible over 9p).
set -u
BUILD=$1
W=$(mktemp -d "$PWD/.kvfs-rdma-cluster.XXXXXX") # only the work tree is writable in the guest
A_IP=$RDMA_VM_NODE1_ADDR
B_IP=$RDMA_VM_NODE2_ADDR
fails=0
pids=()

log() { echo "[cluster] $*"; }
bad() { echo "[cluster] FAIL: $*"; fails=$((fails + 1)); }
cleanup() {
	for m in "$W"/mnt-*; do fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$W"
}
trap cleanup EXIT

"$BUILD/metadata/http/kvfs-meta" --listen 127.0.0.1:9300 --data "$W/meta" \
	--node-timeout-ms 3000 >"$W/meta.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	[ -s "$W/meta.log" ] && grep -q listening "$W/meta.log" && break
	sleep 0.1
done

# node NAME ARGS...: mount $W/mnt-NAME against the service
node() {
	local n=$1
	shift
	mkdir -p "$W/mnt-$n"
	"$BUILD/fs/kvfs" -f --meta http://127.0.0.1:9300 --dram 128M --data "$W/data-$n" \
		--pool kv "$@" "$W/mnt-$n" >"$W/kvfs-$n.log" 2>&1 &
	pids+=($!)
	eval "PID_$n=$!"
	for _ in $(seq 300); do
		cat "$W/mnt-$n/.kvfs/stats" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	bad "node $n did not mount: $(tail -3 "$W/kvfs-$n.log")"
	return 1
}

# xfer BACKEND FIELD on node N
xfer() {
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["xfer"][sys.argv[2]][sys.argv[3]])' \
		"$W/mnt-$1/.kvfs/stats" "$2" "$3"
}

node A --node-addr "$A_IP:9400" --rdma-addr "$A_IP:9401" || exit 1
node B --node-addr "$B_IP:9400" --rdma-addr "$B_IP:9401" || exit 1
node C --node-addr 127.0.0.1:9402 || exit 1
sleep 2 # a heartbeat round: every node knows the others' addresses

head -c $((3 * 1048576 + 12345)) /dev/urandom >"$W/src"
cp "$W/src" "$W/mnt-A/kv/fromA" || bad "write on A"

log "verbs: write on A, read on B"
before=$(xfer B verbs transfers)
cmp -s "$W/src" "$W/mnt-B/kv/fromA" && log "ok: B read A's file intact" || bad "B read of A's file"
after=$(xfer B verbs transfers)
[ "$after" -gt "$before" ] && log "ok: B used verbs ($((after - before)) transfers)" ||
	bad "B moved no data over verbs"

log "mixed: the TCP-only node C reads A's file, A reads C's file"
cmp -s "$W/src" "$W/mnt-C/kv/fromA" && log "ok: C read A's file over tcp" || bad "C read of A's file"
[ "$(xfer C verbs transfers)" = 0 ] || bad "C (no RDMA) used verbs"
cp "$W/src" "$W/mnt-C/kv/fromC" || bad "write on C"
before=$(xfer A tcp transfers)
cmp -s "$W/src" "$W/mnt-A/kv/fromC" && log "ok: A read C's file" || bad "A read of C's file"
[ "$(xfer A tcp transfers)" -gt "$before" ] && log "ok: A reached C over tcp" ||
	bad "A did not use tcp for the TCP-only node"

if command -v fio >/dev/null; then
	log "fio verify: write on A, verify on B over verbs"
	fio --name=w --directory="$W/mnt-A/kv" --rw=write --bs=256k --size=4M --nrfiles=2 \
		--verify=crc32c --do_verify=0 --verify_state_save=0 --fallocate=none --filename_format='f.$filenum' \
		>"$W/fio-w.log" 2>&1 || bad "fio write on A"
	fio --name=w --directory="$W/mnt-B/kv" --rw=read --bs=256k --size=4M --nrfiles=2 \
		--verify=crc32c --verify_only --verify_state_save=0 --filename_format='f.$filenum' \
		>"$W/fio-v.log" 2>&1 && log "ok: fio verify on B" || bad "fio verify on B: $(grep -m2 -i 'verify\|err' "$W/fio-v.log")"
fi

log "node kill: A dies, readers of its pages on B get EIO within the deadline"
cp "$W/src" "$W/mnt-A/kv/doomed" || bad "write doomed on A"
kill -9 "$PID_A"
t0=$(date +%s)
if timeout 30 cat "$W/mnt-B/kv/doomed" >/dev/null 2>"$W/doomed.err"; then
	bad "read of a dead node's pages succeeded"
else
	rc=$?
	if [ $rc = 124 ]; then
		bad "read of a dead node's pages hung"
	elif grep -q "Input/output error" "$W/doomed.err"; then
		log "ok: EIO in $(($(date +%s) - t0)) s"
	else
		bad "read of a dead node's pages: want EIO, got: $(head -c 100 "$W/doomed.err")"
	fi
fi
cmp -s "$W/src" "$W/mnt-B/kv/fromC" && log "ok: other files keep working" || bad "B read of C's file after A died"

[ $fails = 0 ] && log "PASS" || log "$fails failure(s)"
exit $((fails > 0))
