#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SGLang HiCacheFile's publish pattern: writers (processes and threads) write
# NAME.tmp.PID.TID.UUID and rename it over NAME.bin while readers stat, open and read the exact
# size in one read. A reader must only ever see one writer's complete page.
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start --pool hc64,page-size=64K

hc() { python3 "$LIB_DIR/hicache.py" "$@"; }

step "race on 8 keys of 1 MiB (one page each) in kv: 2 processes x 2 threads vs 2 readers"
check "HiCacheFile race on 1 MiB pages" \
	hc race --dir "$MNT/kv/hicache" --size 1M --keys 8 --procs 2 --threads 2 --readers 2 --seconds 6

step "race on 4 keys of 4 MiB + 4097 bytes (5 pages, the last partial) in kv"
check "HiCacheFile race on 4 MiB + 4097 byte pages" \
	hc race --dir "$MNT/kv/hicache-big" --size 4198401 --keys 4 --procs 2 --threads 1 --readers 2 \
	--seconds 5

step "race on 6 keys of 200003 bytes in a 64 KiB-page pool: 2 processes x 3 threads"
check "HiCacheFile race on 200003 byte pages, 64 KiB pool pages" \
	hc race --dir "$MNT/hc64/hicache" --size 200003 --keys 6 --procs 2 --threads 3 --readers 2 \
	--seconds 5

step "existence checks by os.stat on a flat directory of 1000 keys"
check "existence checks" hc exists --dir "$MNT/hc64/flat" --size 4K --count 1000
assert_eq 1000 "$(ls -f "$MNT/hc64/flat" | grep -c '_Qwen3-8B_0_1\.bin$')" "names listed in flat"
assert_eq 0 "$(ls -f "$MNT/hc64/flat" | grep -c '\.tmp\.' || true)" "temporary names left in flat"

step "stats after the races"
stats_snap "$WORK/stats.json"
renames=$(json_get "$WORK/stats.json" 'j["fs"]["renames"]')
log "fs.renames = $renames"
assert_ge "$renames" 1000 "fs.renames after the races"
