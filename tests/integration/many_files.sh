#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A flat directory of 100,000 HiCacheFile-named files: create, list with ls -f (every name
# exactly once), stat present and absent names, remove. Prints the time of each phase.
. "$(dirname "$0")/lib.sh"
kvfs_setup
: "${KVFS_MANY:=100000}"
N=$KVFS_MANY
kvfs_start

D=$MNT/kv/flat
mkdir "$D"
python3 - "$N" >"$WORK/expected" <<-'PY'
	import hashlib, sys
	for i in range(int(sys.argv[1])):
	    print("%s_Qwen3-8B_0_1.bin" % hashlib.sha256(b"kvfs-%d" % i).hexdigest())
PY
sort -o "$WORK/expected" "$WORK/expected"

step "create $N empty files"
t_create=$(kvpy mkmany "$D" "$N") || fail "creating $N files failed"
log "created $N files in ${t_create}s"
assert_eq "$N" "$(pool_stat kv files)" "kv files in .kvfs/stats"

step "ls -f | wc -l"
t0=$(now)
count=$(ls -f "$D" | wc -l)
t_ls=$(since "$t0")
log "ls -f listed $count entries in ${t_ls}s"
assert_eq $((N + 2)) "$count" "ls -f | wc -l ($N files + . and ..)"
ls -f "$D" | grep -vx '\.\|\.\.' | sort >"$WORK/listed"
dups=$(uniq -d "$WORK/listed" | wc -l)
assert_eq 0 "$dups" "names listed more than once"
if ! cmp -s "$WORK/expected" "$WORK/listed"; then
	diff "$WORK/expected" "$WORK/listed" | head -n 10 | sed 's/^/    /'
	fail "the listing differs from the names created"
fi
t0=$(now)
lsl=$(ls -l "$D" | grep -c '^-rw-r--r-- 1 root root 0 ')
t_lsl=$(since "$t0")
log "ls -l showed $lsl empty files in ${t_lsl}s"
assert_eq "$N" "$lsl" "files shown by ls -l as empty regular files"

step "stat $N present and $N absent names"
out=$(kvpy statmany "$D" "$N") || true
read -r t_stat bad <<<"$out"
log "stat of $((2 * N)) names in ${t_stat}s, wrong answers: $bad"
assert_eq 0 "$bad" "wrong answers from stat"

step "remove $N files"
t_rm=$(kvpy rmmany "$D" "$N") || fail "removing the files failed"
log "removed $N files in ${t_rm}s"
assert_eq 2 "$(ls -f "$D" | wc -l)" "ls -f | wc -l after removing every file"
assert_eq 0 "$(pool_stat kv files)" "kv files after removing every file"
rmdir "$D"

log "summary: files=$N create=${t_create}s ls_f=${t_ls}s ls_l=${t_lsl}s stat_2n=${t_stat}s unlink=${t_rm}s"
