#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Write on node 1, read on nodes 2 and 3: fio with verify=crc32c (the write job on node 1, a
# verify-only read job with the same block size on each other node), and SGLang HiCacheFile's
# publish (NAME.tmp.* then rename over NAME) on node 1, read back on node 2 with one readinto.
# shellcheck disable=SC2016 # fio expands $jobnum itself
. "$(dirname "$0")/lib.sh"
mn_setup fio
mn_up 3

# fio_on NODE NAME FIO-ARGS...: one fio job group in NODE's namespace on its mount; every job
# must end with error 0 and move EXPECT bytes (read + write, summed over jobs).
fio_on() {
	local node=$1 name=$2 expect=$3 out=$WORK/fio-$2.json st=0
	shift 3
	log "fio $name on node $node: $*"
	on "$node" fio --name="$name" --directory="$(mnt "$node")/kv/fio" --ioengine=psync \
		--fallocate=none --verify_state_save=0 --output-format=json --output="$out" \
		"$@" >"$WORK/fio-$name.log" 2>&1 || st=$?
	if [ "$st" -ne 0 ]; then
		sed 's/^/    /' "$WORK/fio-$name.log" | tail -n 20
		check "fio $name on node $node exited with status $st (a verify or I/O error)" false
		return 0
	fi
	check "fio $name on node $node: see above" python3 - "$out" "$expect" <<-'PY'
	import json, sys
	t = open(sys.argv[1]).read()  # fio may print warnings before the JSON document
	j = json.loads(t if t.startswith("{") else t[t.index("\n{") + 1:])
	moved = sum(x["read"]["io_bytes"] + x["write"]["io_bytes"] for x in j["jobs"])
	bad = [(x["jobname"], x["error"]) for x in j["jobs"] if x["error"]]
	print("    %d jobs moved %d B, errors %s" % (len(j["jobs"]), moved, bad or "none"))
	sys.exit(0 if not bad and moved == int(sys.argv[2]) else 1)
	PY
}

M=1048576
mkdir -p "$(mnt 1)/kv/fio"
step "node 1 writes 3 files of 12 MiB + 4 files of 3 MiB (bs 64k and 4k), verify=crc32c"
fio_on 1 w64k $((2 * 3 * 12 * M)) --rw=write --bs=64k --size=12M --numjobs=3 \
	--filename_format='big.$jobnum' --verify=crc32c --do_verify=1 --end_fsync=1
fio_on 1 w4k $((2 * 4 * 3 * M)) --rw=write --bs=4k --size=3M --numjobs=4 \
	--filename_format='small.$jobnum' --verify=crc32c --do_verify=1
log "layout of big.0: $("$KVFSCTL_BIN" -m "$(mnt 1)" layout "$(mnt 1)/kv/fio/big.0" | head -c 300)"

for n in 2 3; do
	step "node $n: verify-only reads of node 1's files (sequential, random, O_DIRECT)"
	fio_on "$n" "seq-n$n" $((3 * 12 * M)) --rw=read --bs=64k --size=12M --numjobs=3 \
		--filename_format='big.$jobnum' --verify=crc32c
	fio_on "$n" "rand-n$n" $((4 * 3 * M)) --rw=randread --bs=4k --size=3M --numjobs=4 \
		--filename_format='small.$jobnum' --verify=crc32c
	fio_on "$n" "direct-n$n" $((3 * 12 * M)) --rw=randread --bs=64k --size=12M --numjobs=3 \
		--direct=1 --filename_format='big.$jobnum' --verify=crc32c
	assert_eq $((12 * M)) "$(on "$n" stat -c %s "$(mnt "$n")/kv/fio/big.2")" \
		"size of big.2 seen from node $n"
done
tcp=$(node_stat 2 'j["xfer"]["tcp"]["bytes"]')
log "node 2 xfer.tcp.bytes = $tcp"
assert_ge "$tcp" $((36 * M)) "bytes node 2 fetched over tcp (it read 36 MiB of node 1's pages)"

step "HiCacheFile publish on node 1: 40 keys of 64 KiB + 7 and 8 keys of 4 MiB, read on node 2"
check "publish 64K on node 1" on_py 1 publish "$(mnt 1)/kv/hc" 40 $((64 * 1024 + 7)) s64
check "publish 4M on node 1" on_py 1 publish "$(mnt 1)/kv/hc4m" 8 $((4 * M)) s4m
check "HiCacheFile read of 64K keys on node 2" \
	on_py 2 verify "$(mnt 2)/kv/hc" 40 $((64 * 1024 + 7)) s64
check "HiCacheFile read of 4M keys on node 2" on_py 2 verify "$(mnt 2)/kv/hc4m" 8 $((4 * M)) s4m
check "HiCacheFile read of 4M keys on node 3" on_py 3 verify "$(mnt 3)/kv/hc4m" 8 $((4 * M)) s4m

step "republish the 4M keys on node 3 with new content; node 2 reads the new version"
check "republish on node 3" on_py 3 publish "$(mnt 3)/kv/hc4m" 8 $((4 * M)) s4m-v2
check "node 2 sees the new version" on_py 2 verify "$(mnt 2)/kv/hc4m" 8 $((4 * M)) s4m-v2
check "node 1 sees the new version" on_py 1 verify "$(mnt 1)/kv/hc4m" 8 $((4 * M)) s4m-v2
