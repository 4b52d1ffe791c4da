#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Close-to-open across nodes: once close() returns on the writer's node, an open() that starts
# later on any node sees the whole content and size. The writer rotates over the nodes and the
# readers are the other two, which have read the previous (smaller) version just before, so a
# stale size or a stale page in their kernel or daemon shows up:
#   1. one name rewritten (O_TRUNC) 36 times with growing sizes and new content each time
#   2. one file grown 24 times by a write at its end, from rotating nodes
# File operations need no network namespace (each mount is served by its node's daemon, which
# does the networking), so one driver process (mn.py c2o) writes through one mount and opens
# through the others the moment close() returns: no gap for a cache to expire in. The same
# rounds then run with one process per operation, each in its node's namespace.
. "$(dirname "$0")/lib.sh"
mn_setup
mn_up 3
sleep 2 # every node has heard of every peer (spread.sh tests reads and writes right after up)

mkdir -p "$(mnt 1)/kv/c2o"
mnts="$(mnt 1),$(mnt 2),$(mnt 3)"
step "36 rewrites with growing sizes, read on the other nodes right after close()"
check "close-to-open, rewrites" mnpy c2o "$mnts" kv/c2o/file 36 rewrite
step "24 appends from rotating nodes, the whole file read on the others right after close()"
check "close-to-open, appends" mnpy c2o "$mnts" kv/c2o/grow 24 append
log "grown file: nodes $(xattr 1 kv/c2o/grow nodes), size $(stat -c %s "$(mnt 3)/kv/c2o/grow")"

F=kv/c2o/file2
step "12 rewrites again, one process per operation in its node's namespace"
for i in $(seq 12); do
	w=$(((i - 1) % 3 + 1))
	size=$((i * 700001 + i % 7))
	on_py "$w" write "$(mnt "$w")/$F" "$size" "again$i" >/dev/null
	for r in 1 2 3; do
		[ "$r" != "$w" ] || continue
		out=$(on_py "$r" check "$(mnt "$r")/$F" "$size" "again$i") ||
			check "rewrite $i (size $size) on node $w, read on node $r: $out" false
	done
done

G=kv/c2o/grow2
step "24 appends again, one process per operation in its node's namespace"
size=0
on_py 1 write "$(mnt 1)/$G" 0 grow >/dev/null
for i in $(seq 24); do
	w=$((i % 3 + 1))
	len=$((i * 65536 + 4097))
	on_py "$w" pwrite "$(mnt "$w")/$G" "$size" "$len" grow >/dev/null
	size=$((size + len))
	for r in 1 2 3; do
		[ "$r" != "$w" ] || continue
		out=$(on_py "$r" check "$(mnt "$r")/$G" "$size" grow) ||
			check "append $i (size now $size) on node $w, read on node $r: $out" false
	done
done
