#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A full lru pool: writing past the capacity evicts the least recently used closed files,
# whole; a file held open is never evicted; what remains is intact; statfs tells the truth.
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start --pool lru8,page-size=1M,capacity=8M,evict=lru

M=1048576
P=$MNT/lru8
declare -A sha

# sfs_bytes PATH FIELD: statvfs blocks or bavail of PATH in bytes
sfs_bytes() {
	kvpy statfs "$1" >"$WORK/statfs.json"
	json_get "$WORK/statfs.json" "j['$2'] * (j['frsize'] or j['bsize'])"
}
present() { # the names of f0..f$1 that exist
	local i out=""
	for i in $(seq 0 "$1"); do
		[ "$(kvpy try lstat "$P/f$i")" != OK ] || out+=" f$i"
	done
	echo "${out# }"
}

step "statfs of an empty pool with an 8 MiB capacity"
assert_eq $((8 * M)) "$(sfs_bytes "$P" blocks)" "statfs total of lru8"
assert_eq $((8 * M)) "$(sfs_bytes "$P" bavail)" "statfs available in the empty lru8"

step "write f0..f7 of 1 MiB each: exactly the capacity"
for i in $(seq 0 7); do
	sha[f$i]=$(kvpy gen "$P/f$i" 1M "$i")
	sleep 0.02
done
assert_eq "f0 f1 f2 f3 f4 f5 f6 f7" "$(present 7)" "files present at capacity"
assert_eq $((8 * M)) "$(pool_stat lru8 used_bytes)" "lru8 used_bytes at capacity"
assert_eq 0 "$(pool_stat lru8 evictions)" "evictions at capacity"

step "hold f2 open, read f0 (a use), then write f8 and f9"
python3 "$LIB_DIR/kvtest.py" hold "$P/f2" "$WORK/held" & # not kvpy: $! must be python
holder=$!
bg_register "$holder"
for _ in $(seq 100); do [ -s "$WORK/held" ] || sleep 0.05; done
[ -s "$WORK/held" ] || fail "the holder did not open f2"
heldfd=$(cat "$WORK/held")
sleep 0.02
assert_sha "$P/f0" "${sha[f0]}" "f0"
sleep 0.02
sha[f8]=$(kvpy gen "$P/f8" 1M 8) || fail "writing f8 past the capacity of an lru pool failed"
sleep 0.02
sha[f9]=$(kvpy gen "$P/f9" 1M 9) || fail "writing f9 past the capacity of an lru pool failed"
now_present=$(present 9)
log "present after writing f8 and f9: $now_present"
evicted=$(comm -23 <(printf 'f%s\n' $(seq 0 9) | sort) <(tr ' ' '\n' <<<"$now_present" | sort) | xargs)
log "evicted: $evicted (expected f1 f3: least recently used and closed)"
for f in f1 f3; do
	case " $now_present " in *" $f "*) fail "$f, among the least recently used closed files, was not evicted (evicted: $evicted)" ;; esac
done
for f in f0 f2 f8 f9; do
	case " $now_present " in *" $f "*) ;; *) fail "$f was evicted but should stay (evicted: $evicted)" ;; esac
done
for f in $now_present; do assert_sha "$P/$f" "${sha[$f]}" "$f after evictions"; done
assert_sha "/proc/$holder/fd/$heldfd" "${sha[f2]}" "f2 through the descriptor held open"
npresent=$(wc -w <<<"$now_present")
assert_le "$((npresent * M))" $((8 * M)) "bytes of the files left"
assert_le "$(pool_stat lru8 used_bytes)" $((8 * M)) "lru8 used_bytes"
assert_ge "$(pool_stat lru8 evictions)" 2 "lru8 evictions"
assert_ge "$(pool_stat lru8 evicted_bytes)" $((2 * M)) "lru8 evicted_bytes"

step "statfs stays honest: 8 MiB in total, the open file is not free"
assert_eq $((8 * M)) "$(sfs_bytes "$P" blocks)" "statfs total of lru8 when full"
assert_le "$(sfs_bytes "$P" bavail)" $((7 * M)) "statfs available with a 1 MiB file held open"

step "write f10..f17 (a full capacity more) while f2 stays open"
for i in $(seq 10 17); do
	sha[f$i]=$(kvpy gen "$P/f$i" 1M "$i") || fail "writing f$i in a full lru pool failed"
	sleep 0.02
done
assert_sha "$P/f2" "${sha[f2]}" "f2, held open during eviction pressure"
left=$(present 17)
log "present: $left"
for f in $left; do assert_sha "$P/$f" "${sha[$f]}" "$f"; done
assert_le "$(pool_stat lru8 used_bytes)" $((8 * M)) "lru8 used_bytes"
for f in f15 f16 f17; do
	case " $left " in *" $f "*) ;; *) fail "$f, just written, was evicted (present: $left)" ;; esac
done

step "a 9 MiB file cannot fit in an 8 MiB pool even by evicting"
kvpy fill "$P/" 9M 1 >"$WORK/big.json"
cat "$WORK/big.json"
assert_eq ENOSPC "$(json_get "$WORK/big.json" '(j["error"] or {}).get("errno")')" "errno of a 9 MiB write"
assert_sha "$P/f2" "${sha[f2]}" "f2 after the failed 9 MiB write"
kill "$holder"
