#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fio with verify=crc32c: sequential writes of new files (several jobs), random reads that
# verify every block, randrw on the existing files, O_DIRECT, all with --fallocate=none.
# shellcheck disable=SC2016 # fio expands $jobnum and $filenum itself
. "$(dirname "$0")/lib.sh"
kvfs_setup fio
kvfs_start

D=$MNT/kv/fio
mkdir -p "$D"

# run_fio NAME EXPECT_READ EXPECT_WRITE FIO-ARGS...: run one fio job group; every job must
# finish with error 0; EXPECT_* (bytes, summed over jobs, "-" = do not check) must match.
run_fio() {
	local name=$1 er=$2 ew=$3 out=$WORK/fio-$1.json st=0
	shift 3
	log "fio $name: $*"
	fio --name="$name" --directory="$D" --ioengine=psync --fallocate=none \
		--verify_state_save=0 --group_reporting=0 --output-format=json --output="$out" \
		"$@" >"$WORK/fio-$name.log" 2>&1 || st=$?
	if [ "$st" -ne 0 ]; then
		sed 's/^/    /' "$WORK/fio-$name.log" | tail -n 20
		check "fio $name exited with status $st (a verify error or an I/O error)" false
		return 0
	fi
	check "fio $name: see above" python3 - "$out" "$name" "$er" "$ew" <<-'PY'
	import json, sys
	t = open(sys.argv[1]).read()  # fio may print warnings before the JSON document
	j = json.loads(t if t.startswith("{") else t[t.index("\n{") + 1:])
	name, er, ew = sys.argv[2:5]
	rb = sum(x["read"]["io_bytes"] for x in j["jobs"])
	wb = sum(x["write"]["io_bytes"] for x in j["jobs"])
	bad = [(x["jobname"], x["error"]) for x in j["jobs"] if x["error"]]
	rbw = sum(x["read"]["bw_bytes"] for x in j["jobs"]) / 2**20
	wbw = sum(x["write"]["bw_bytes"] for x in j["jobs"]) / 2**20
	print("    %s: %d jobs, read %d B (%.1f MiB/s), written %d B (%.1f MiB/s)"
	      % (name, len(j["jobs"]), rb, rbw, wb, wbw))
	ok = not bad
	if bad:
	    print("    jobs with errors: %s" % bad)
	if er != "-" and rb != int(er):
	    print("    read %d bytes, expected %s" % (rb, er)); ok = False
	if ew != "-" and wb != int(ew):
	    print("    wrote %d bytes, expected %s" % (wb, ew)); ok = False
	sys.exit(0 if ok else 1)
	PY
}

M=1048576
# verify reads every block back after the write pass, so a write job also reads its size
step "sequential writes of new files, 4 jobs x 2 files x 8 MiB, bs 64k, then verify"
run_fio seqw $((64 * M)) $((64 * M)) --rw=write --bs=64k --size=16M --nrfiles=2 \
	--numjobs=4 --filename_format='seq.$jobnum.$filenum' --verify=crc32c --do_verify=1 \
	--end_fsync=1

step "random reads of those files, 4 jobs, bs 64k, every block verified"
run_fio randr $((64 * M)) 0 --rw=randread --bs=64k --size=16M --nrfiles=2 --numjobs=4 \
	--filename_format='seq.$jobnum.$filenum' --verify=crc32c

step "sequential 4k writes of new files, 2 jobs x 4 MiB, then 4k random reads verified"
run_fio seqw4k $((8 * M)) $((8 * M)) --rw=write --bs=4k --size=4M --numjobs=2 \
	--filename_format='small.$jobnum' --verify=crc32c --do_verify=1
run_fio randr4k $((8 * M)) 0 --rw=randread --bs=4k --size=4M --numjobs=2 \
	--filename_format='small.$jobnum' --verify=crc32c

step "4 jobs reading the same file at random, every block verified"
run_fio shared $((32 * M)) 0 --rw=randread --bs=64k --size=8M --numjobs=4 \
	--filename=seq.0.0 --verify=crc32c

step "randrw on the existing files, 2 jobs, bs 16k, written blocks verified at the end"
run_fio randrw - - --rw=randrw --rwmixread=50 --bs=16k --size=8M --numjobs=2 \
	--filename_format='seq.$jobnum.0' --verify=crc32c --do_verify=1

step "O_DIRECT: random writes then random reads of new files, 3 jobs, bs 128k"
run_fio dwrite - $((24 * M)) --rw=randwrite --direct=1 --bs=128k --size=8M --numjobs=3 \
	--filename_format='direct.$jobnum' --verify=crc32c --do_verify=0
run_fio dread $((24 * M)) 0 --rw=randread --direct=1 --bs=128k --size=8M --numjobs=3 \
	--filename_format='direct.$jobnum' --verify=crc32c

step "sizes and cleanup"
assert_eq $((8 * M)) "$(stat -c %s "$D/seq.3.1")" "size of a sequentially written file"
assert_eq $((8 * M)) "$(stat -c %s "$D/direct.2")" "size of a randomly written file"
rm -rf "$D"
assert_eq 0 "$(pool_stat kv used_bytes)" "kv used_bytes after rm -rf"
