#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SGLang HiCacheHF3FS's POSIX client: one file per rank ftruncate'd to 1 TiB, whole pages moved
# with pwrite/pread at scattered page offsets by several threads sharing one descriptor.
# Holes read as zeros, st_size stays 1 TiB, st_blocks counts only the pages written.
. "$(dirname "$0")/lib.sh"
kvfs_setup getfattr
kvfs_start --pool hf64,page-size=64K
kvctl pool create hf1m --page-size 1M

TiB=1099511627776

step "64 KiB pool pages: 4 threads x (32 scattered pages + one 4-page run) in a 1 TiB file"
check "HF3FS pattern, 64 KiB pages" python3 "$LIB_DIR/hf3fs.py" --file "$MNT/hf64/rank0.bin" \
	--file-size 1T --page-size 64K --threads 4 --pages 32 --seed 1
assert_eq "$TiB" "$(stat -c %s "$MNT/hf64/rank0.bin")" "stat size of the 1 TiB file"
assert_eq $((144 * 65536 / 512)) "$(stat -c %b "$MNT/hf64/rank0.bin")" "st_blocks of 144 pages"
assert_eq 144 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$MNT/hf64/rank0.bin")" "user.kvfs.pages"
assert_eq $((144 * 65536)) "$(pool_stat hf64 used_bytes)" "hf64 used_bytes"

step "1 MiB pool pages: 4 threads x (8 scattered pages + one 4-page run), two ranks"
python3 "$LIB_DIR/hf3fs.py" --file "$MNT/hf1m/rank0.bin" --file-size 1T --page-size 1M \
	--threads 4 --pages 8 --seed 2 &
p0=$!
bg_register "$p0"
python3 "$LIB_DIR/hf3fs.py" --file "$MNT/hf1m/rank1.bin" --file-size 1T --page-size 1M \
	--threads 4 --pages 8 --seed 3 || fail "HF3FS pattern, 1 MiB pages, rank 1"
wait "$p0" || fail "HF3FS pattern, 1 MiB pages, rank 0"
for r in 0 1; do
	assert_eq "$TiB" "$(stat -c %s "$MNT/hf1m/rank$r.bin")" "stat size of rank$r.bin"
	assert_eq $((48 * 2048)) "$(stat -c %b "$MNT/hf1m/rank$r.bin")" "st_blocks of rank$r.bin"
done
assert_eq $((96 * 1048576)) "$(pool_stat hf1m used_bytes)" "hf1m used_bytes"

step "truncate the 1 TiB file to 0 frees its pages"
truncate -s 0 "$MNT/hf64/rank0.bin"
assert_eq "0 0" "$(stat -c '%s %b' "$MNT/hf64/rank0.bin")" "size and blocks after truncate -s 0"
assert_eq 0 "$(pool_stat hf64 used_bytes)" "hf64 used_bytes after truncate -s 0"
