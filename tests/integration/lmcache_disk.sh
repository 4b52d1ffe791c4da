#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# LMCache local_disk: chunks named model@ws@worker@hash@dtype.pt written with O_DIRECT from
# aligned buffers (one write each, several threads), read back buffered and with O_DIRECT;
# O_DIRECT and the page cache stay coherent.
. "$(dirname "$0")/lib.sh"
kvfs_setup getfattr
kvfs_start --pool lm64,page-size=64K

step "48 chunks of 4K..4M in kv (1 MiB pages), 4 writer threads"
check "LMCache pattern in kv" python3 "$LIB_DIR/lmcache.py" --dir "$MNT/kv/lmcache" \
	--count 48 --threads 4 --sizes 4K,256K,1060K,4M

step "48 chunks in lm64 (64 KiB pages)"
check "LMCache pattern in lm64" python3 "$LIB_DIR/lmcache.py" --dir "$MNT/lm64/lmcache" \
	--count 48 --threads 4 --sizes 4K,60K,1060K,2M

step "names and sizes as ls and getfattr see them"
n=$(ls -f "$MNT/kv/lmcache" | grep -c '^Qwen-Qwen3-8B@1@0@-\?[0-9]*@bfloat16\.pt$' || true)
assert_eq 48 "$n" "chunk names listed in kv/lmcache"
f=$(find "$MNT/kv/lmcache" -name '*@bfloat16.pt' -size 4096k | head -n 1)
[ -n "$f" ] || fail "no 4 MiB chunk found by find -size 4096k"
assert_eq 4 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$f")" "pages of a 4 MiB chunk"
f=$(find "$MNT/kv/lmcache" -name '*@bfloat16.pt' -size 1060k | head -n 1)
assert_eq 2 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$f")" "pages of a 1060 KiB chunk"
