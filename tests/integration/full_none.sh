#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A full pool with eviction "none": writes past the capacity fail with ENOSPC, every file
# written before stays intact, in-place overwrites still work, statfs tells the truth, and
# removing a file makes room again.
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start --pool fixed,page-size=1M,capacity=8M,evict=none

M=1048576
P=$MNT/fixed
sfs_bytes() {
	kvpy statfs "$1" >"$WORK/statfs.json"
	json_get "$WORK/statfs.json" "j['$2'] * (j['frsize'] or j['bsize'])"
}

step "statfs of the empty pool"
assert_eq $((8 * M)) "$(sfs_bytes "$P" blocks)" "statfs total of fixed"
assert_eq $((8 * M)) "$(sfs_bytes "$P" bavail)" "statfs available in the empty pool"

step "write 1 MiB files until one fails"
kvpy fill "$P" 1M 20 >"$WORK/fill.json"
cat "$WORK/fill.json"
assert_eq 8 "$(json_get "$WORK/fill.json" 'len(j["written"])')" "files written before the error"
assert_eq ENOSPC "$(json_get "$WORK/fill.json" '(j["error"] or {}).get("errno")')" "errno of the 9th file"
log "ENOSPC surfaced at $(json_get "$WORK/fill.json" 'j["error"]["step"]')()"
check_all() {
	local i s
	for i in $(seq 0 7); do
		s=$(json_get "$WORK/fill.json" "j['written'][$i]['sha']")
		assert_sha "$P/fill.$i" "$s" "fill.$i $1"
		assert_eq $M "$(stat -c %s "$P/fill.$i")" "size of fill.$i $1"
	done
}
check_all "after ENOSPC"
assert_eq 0 "$(pool_stat fixed evictions)" "evictions in a none pool"
assert_eq $((8 * M)) "$(pool_stat fixed used_bytes)" "used_bytes of the full pool"
assert_eq 0 "$(sfs_bytes "$P" bavail)" "statfs available in the full pool"
assert_eq $((8 * M)) "$(sfs_bytes "$P" blocks)" "statfs total of the full pool"

step "small writes fail too; nothing else changes"
assert_errno ENOSPC write "$P/small"
rm -f "$P/small" "$P/fill.8"
assert_errno ENOSPC pwrite "$P/fill.3" 1M 4096
assert_eq $M "$(stat -c %s "$P/fill.3")" "size of fill.3 after a refused append"
check_all "after refused small writes"

step "overwriting pages a file already holds needs no space"
python3 - "$P/fill.5" <<-'PY' || fail "in-place overwrite in a full pool"
	import os, sys
	fd = os.open(sys.argv[1], os.O_WRONLY)
	assert os.pwrite(fd, b"\xab" * 4096, 8192) == 4096
	os.fsync(fd)
	os.close(fd)
	with open(sys.argv[1], "rb") as f:
	    assert f.read()[8192:12288] == b"\xab" * 4096
PY
assert_eq $((8 * M)) "$(pool_stat fixed used_bytes)" "used_bytes after an in-place overwrite"

step "removing a file makes room again"
rm "$P/fill.0"
assert_eq $M "$(sfs_bytes "$P" bavail)" "statfs available after removing 1 MiB"
s=$(kvpy gen "$P/again" 1M 99) || fail "writing 1 MiB after freeing 1 MiB"
assert_sha "$P/again" "$s" "again"
assert_errno ENOSPC write "$P/one-more"
