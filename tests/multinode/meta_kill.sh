#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 of kvfs-meta during a write load on all three nodes, then a restart on the same state
# directory: nothing acknowledged is lost. A file is acknowledged when its close() returned 0;
# the writers log those names (fsync'ed, outside the mount) and every one must afterwards exist
# with its size and content on every node. Writes while the service is down may fail, but
# must not hang past the load's time limit, and new writes work after the restart.
. "$(dirname "$0")/lib.sh"
mn_setup
mn_up 3
sleep 2 # every node has heard of every peer

SIZE=100000 # two pages of a 64 KiB pool: small, so many closes are in flight when it dies
COUNT=1200   # per node: the load runs well past the restart (3600 x 128 KiB < the 3 arenas)
LOAD_LIMIT=240
"$KVFSCTL_BIN" -m "$(mnt 1)" pool create load --page-size 64K --evict none >/dev/null
mkdir -p "$(mnt 1)/load/d"
step "write load: each node writes $COUNT files of $SIZE bytes (3 writers per node)"
pids=()
for n in 1 2 3; do
	for w in 1 2 3; do
		on "$n" timeout "$LOAD_LIMIT" python3 "$LIB_DIR/mn.py" load "$(mnt "$n")/load/d" \
			"n$n-w$w" $((COUNT / 3)) $SIZE "$WORK/acks.n$n-w$w" >"$WORK/load.n$n-w$w" 2>&1 &
		pids+=("$!")
		bg_register "$!"
	done
done
acked_count() { { cat "$WORK"/acks.* 2>/dev/null || true; } | wc -l; }
for _ in $(seq 300); do [ "$(acked_count)" -lt 100 ] || break; sleep 0.1; done
acked_before=$(acked_count)
step "kill -9 kvfs-meta after $acked_before acknowledged files"
cl kill-meta KILL
sleep 3
step "restart kvfs-meta on the same state"
cl restart-meta
acked_restart=$(acked_count)
st_all=0
for p in "${pids[@]}"; do
	st=0
	wait "$p" || st=$?
	[ "$st" -eq 0 ] || st_all=$st
done
for f in "$WORK"/load.*; do log "${f##*/load.}: $(cat "$f")"; done
[ "$st_all" -ne 124 ] || fail "a writer hung: still running after ${LOAD_LIMIT}s"
assert_eq 0 "$st_all" "exit status of the writers"
cat "$WORK"/acks.* >"$WORK/acked"
acked=$(wc -l <"$WORK/acked")
log "$acked files acknowledged ($acked_before before the kill, $acked_restart at the restart)"
assert_ge "$acked" $((acked_restart + 1)) "files acknowledged after the restart (the load resumed)"
assert_ge "$acked" "$acked_before" "acknowledged files"

sleep 1
log "after the load: $(python3 - "$(mnt 1)/.kvfs/stats" <<-'PY'
	import json, sys
	j = json.load(open(sys.argv[1]))
	p = [p for p in j["pools"] if p["name"] == "load"][0]
	print("pool load: used %d MiB in %d files (%d MiB if every file holds 2 pages); "
	      "cluster used %d MiB, free %d MiB" % (p["used_bytes"] >> 20, p["files"],
	      p["files"] * 2 * 65536 >> 20, j["cluster"]["used_bytes"] >> 20, j["cluster"]["free_bytes"] >> 20))
	PY
)"

step "every acknowledged file exists with its size and content, on every node"
cat >"$WORK/verify.py" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[3])
import mn
d, acked = sys.argv[1], sys.argv[2]
bad = 0
for line in open(acked):
    name, size = line.split()
    err = mn.check_file(os.path.join(d, name), int(size), name) if os.path.exists(
        os.path.join(d, name)) else "missing"
    if err:
        bad += 1
        if bad <= 5:
            print("%s: %s" % (name, err))
print("%d acknowledged files, %d bad" % (sum(1 for _ in open(acked)), bad))
sys.exit(1 if bad else 0)
PY
for n in 1 2 3; do
	check "node $n: every acknowledged file intact" \
		on "$n" timeout 300 python3 "$WORK/verify.py" "$(mnt "$n")/load/d" "$WORK/acked" "$LIB_DIR"
done

step "after the restart: new writes on every node, read on the next"
for n in 1 2 3; do
	r=$((n % 3 + 1))
	check "node $n writes after the restart" \
		on_py "$n" write "$(mnt "$n")/kv/after.$n" $((3 << 20)) "after.$n"
	check "node $r reads node $n's new file" \
		on_py "$r" check "$(mnt "$r")/kv/after.$n" $((3 << 20)) "after.$n"
	# the load pool has free space left (see the stats above): writes there work again too
	check "node $n writes to pool load after the restart" \
		on_py "$n" write "$(mnt "$n")/load/d/after.$n" "$SIZE" "after.$n"
done
