#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Files whose pages sit on several nodes read back intact everywhere:
#   1. one file written in parts from different nodes (each part's pages on its writer)
#   2. node 1 has a small arena (16 MiB): a 40 MiB file written there spills to nodes 2 and 3
# user.kvfs.nodes must name several nodes, and every node must read both files intact.
. "$(dirname "$0")/lib.sh"
mn_setup getfattr
export KVFS_CLUSTER_DRAM_1=16M
mn_up 3

M=1048576
mkdir -p "$(mnt 1)/kv/spread"
step "right after the cluster is up, node 1 (16 MiB arena) writes 24 MiB: 8 MiB must spill"
# the metadata service knows every node by now (each registered before its mount came up), so
# pages it allocates on a peer must be writable at once, not after the next heartbeat
check "write spilling to peers that joined just now" \
	on_py 1 write "$(mnt 1)/kv/spread/early" $((24 * M)) early
rm -f "$(mnt 1)/kv/spread/early"
sleep 2 # one heartbeat period and more: the rest does not depend on that

step "a 12 MiB file written in parts: MiB 0-3 on node 1, 4-7 on node 2, 8-11 on node 3"
on_py 1 write "$(mnt 1)/kv/spread/parts" $((4 * M)) parts >/dev/null
on 2 truncate -s $((12 * M)) "$(mnt 2)/kv/spread/parts"
on_py 2 pwrite "$(mnt 2)/kv/spread/parts" $((4 * M)) $((4 * M)) parts >/dev/null
on_py 3 pwrite "$(mnt 3)/kv/spread/parts" $((8 * M)) $((4 * M)) parts >/dev/null
nodes_parts=$(xattr 2 kv/spread/parts nodes)
log "parts: user.kvfs.nodes=$nodes_parts"
assert_match '^[0-9]+,[0-9]+,[0-9]+$' "$nodes_parts" "user.kvfs.nodes of a file from 3 nodes"

step "node 1 (16 MiB arena) writes a 40 MiB file and a 9 MiB + 3 byte one"
check "write big on node 1" on_py 1 write "$(mnt 1)/kv/spread/big" $((40 * M)) big
check "write odd on node 1" on_py 1 write "$(mnt 1)/kv/spread/odd" $((9 * M + 3)) odd
nodes_big=$(xattr 1 kv/spread/big nodes)
log "big: user.kvfs.nodes=$nodes_big pages=$(xattr 1 kv/spread/big pages)"
assert_match '^[0-9]+(,[0-9]+)+$' "$nodes_big" "user.kvfs.nodes of a file beyond node 1's arena"
for n in 1 2 3; do
	log "node $n stats: used_bytes $(node_stat "$n" 'j["cluster"]["used_bytes"]')," \
		"free_bytes $(node_stat "$n" 'j["cluster"]["free_bytes"]')"
done

for n in 1 2 3; do
	step "node $n reads all three back"
	check "node $n: big intact" on_py "$n" check "$(mnt "$n")/kv/spread/big" $((40 * M)) big
	check "node $n: odd intact" on_py "$n" check "$(mnt "$n")/kv/spread/odd" $((9 * M + 3)) odd
	check "node $n: parts intact" on_py "$n" check "$(mnt "$n")/kv/spread/parts" $((12 * M)) parts
done

step "fio verify across nodes: node 2 writes 48 MiB, nodes 3 and 1 verify it"
if on 2 fio --name=sp --filename="$(mnt 2)/kv/spread/fio" --rw=write --bs=128k --size=48M \
	--ioengine=psync --fallocate=none --verify=crc32c --do_verify=1 >"$WORK/fio-w.log" 2>&1; then
	for n in 3 1; do
		check "node $n: fio verify of node 2's file" on "$n" fio --name=sp \
			--filename="$(mnt "$n")/kv/spread/fio" --rw=read --bs=128k --size=48M \
			--ioengine=psync --verify=crc32c --output="$WORK/fio-r$n.log"
	done
else
	tail -n 20 "$WORK/fio-w.log" | sed 's/^/    /'
	check "fio write on node 2" false
fi

step "delete: the pages go back on every node"
rm -f "$(mnt 1)"/kv/spread/*
sleep 1
for n in 1 2 3; do
	log "node $n used_bytes after rm: $(node_stat "$n" 'j["cluster"]["used_bytes"]')"
done
