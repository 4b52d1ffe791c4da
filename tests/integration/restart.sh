#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Stop with SIGTERM and start again on the same --data: pools (with their options),
# directories, empty files, modes, times and user xattrs come back; files whose pages were in
# DRAM are gone (absent, or reads fail with EIO), never served as garbage.
. "$(dirname "$0")/lib.sh"
kvfs_setup getfattr
kvfs_start --pool opt1,page-size=64K,capacity=16M,evict=none,max-file-size=8M

M=1048576
kvctl pool create p2 --page-size 2M --capacity 64M --evict lru
mkdir "$MNT/p3"

step "populate: directories, empty files, a sparse file, files with data"
mkdir -p "$MNT/kv/a/b/c" "$MNT/p2/d" "$MNT/p3/e" "$MNT/opt1/dir"
touch "$MNT/kv/a/empty" "$MNT/p2/d/empty0" "$MNT/opt1/dir/empty1" "$MNT/p3/e/empty2"
chmod 600 "$MNT/kv/a/empty"
chmod 700 "$MNT/kv/a/b"
assert_errno OK setxattr "$MNT/kv/a/empty" user.tag keep
touch -m -d @1234567890 "$MNT/kv/a/empty"
truncate -s 1G "$MNT/kv/a/sparse"
declare -A data=([kv/a/data1]=3M [opt1/dir/data2]=1M [p2/d/data3]=5M [p3/e/data4]=10)
for f in "${!data[@]}"; do
	kvpy gen "$MNT/$f" "${data[$f]}" 5 >/dev/null
done
stats_snap "$WORK/before.json"
inc0=$(json_get "$WORK/before.json" 'j["node"]["incarnation"]')

# check_tree WHEN: the metadata that must survive a restart
check_tree() {
	local d f
	assert_eq "kv mamba opt1 p2 p3" "$(ls "$MNT" | xargs)" "pools $1"
	kvctl pool list --json >"$WORK/pools.json" || fail "kvfsctl pool list --json $1"
	pg() { json_get "$WORK/pools.json" "[p for p in (j['pools'] if isinstance(j, dict) else j) if p['name'] == '$1'][0]['$2']"; }
	assert_eq "65536 $((16 * M)) none $((8 * M))" \
		"$(pg opt1 page_size) $(pg opt1 capacity) $(pg opt1 evict) $(pg opt1 max_file_size)" \
		"opt1 page_size capacity evict max_file_size $1"
	assert_eq "$((2 * M)) $((64 * M)) lru" "$(pg p2 page_size) $(pg p2 capacity) $(pg p2 evict)" \
		"p2 page_size capacity evict $1"
	assert_eq "$M lru" "$(pg p3 page_size) $(pg p3 evict)" "p3 page_size evict $1"
	for d in kv/a/b/c p2/d p3/e opt1/dir; do
		assert_eq directory "$(stat -c %F "$MNT/$d" 2>&1)" "$d $1"
	done
	assert_eq 700 "$(stat -c %a "$MNT/kv/a/b")" "mode of kv/a/b $1"
	for f in kv/a/empty p2/d/empty0 opt1/dir/empty1 p3/e/empty2; do
		assert_eq "regular empty file" "$(stat -c %F "$MNT/$f" 2>&1)" "$f $1"
	done
	assert_eq "600 1234567890" "$(stat -c '%a %Y' "$MNT/kv/a/empty")" "mode and mtime of kv/a/empty $1"
	assert_eq keep "$(getfattr --absolute-names --only-values -n user.tag "$MNT/kv/a/empty" 2>&1)" "user.tag of kv/a/empty $1"
	assert_eq "1073741824 0" "$(stat -c '%s %b' "$MNT/kv/a/sparse")" "size and blocks of the sparse file $1"
	assert_eq "$(head -c $M /dev/zero | sha256sum)" \
		"$(tail -c +$((512 * M)) "$MNT/kv/a/sparse" | head -c $M | sha256sum)" "a hole in the sparse file $1"
}

# check_gone FILE SIZE: FILE had SIZE bytes in DRAM before a restart. It must be absent, or
# present with its size and unreadable (EIO).
check_gone() {
	local f=$MNT/$1 r sz
	r=$(kvpy try lstat "$f")
	if [ "$r" = ENOENT ]; then
		log "ok: $1 is gone (ENOENT)"
		return
	fi
	[ "$r" = OK ] || fail "$1 after restart: lstat gave $r (expected ENOENT, or the file with reads failing with EIO)"
	sz=$(stat -c %s "$f")
	r=$(kvpy readcheck "$f")
	case $r in
	EIO) log "ok: $1 is still listed (size $sz) and reads fail with EIO" ;;
	OK*) fail "$1 ($2 bytes in DRAM before the restart) reads successfully after it: '$r', size $sz (garbage or zeros served instead of EIO or ENOENT)" ;;
	*) fail "$1 after restart: read gave $r, expected EIO" ;;
	esac
	[ "$sz" = "$(size_bytes "$2")" ] || fail "$1 is still listed but its size changed: $sz, was $2"
}

check_tree "before the restart"

step "SIGTERM and start again on the same data directory (new --pool options are ignored)"
kvfs_restart --pool opt1,page-size=1M,evict=lru
check_tree "after the restart"
for f in "${!data[@]}"; do check_gone "$f" "${data[$f]}"; done
stats_snap "$WORK/after.json"
inc1=$(json_get "$WORK/after.json" 'j["node"]["incarnation"]')
[ "$inc1" -gt "$inc0" ] || fail "incarnation did not grow across the restart: $inc0 -> $inc1"
assert_eq 0 "$(json_get "$WORK/after.json" 'j["node"]["used_bytes"]')" \
	"node.used_bytes after restart (no page survives in the new arena)"

step "the filesystem is usable after the restart"
s=$(kvpy gen "$MNT/kv/a/new" 2M 9)
assert_sha "$MNT/kv/a/new" "$s" "a file written after the restart"
s8=$(kvpy gen "$MNT/opt1/dir/new8" 8M 10) || fail "writing 8 MiB into opt1 (16 MiB, none) after restart: lost files must not hold capacity"
assert_sha "$MNT/opt1/dir/new8" "$s8" "opt1/dir/new8"
assert_eq $((8 * M)) "$(pool_stat opt1 used_bytes)" "opt1 used_bytes (lost pages must not count)"
for f in "${!data[@]}"; do rm -f "$MNT/$f" || fail "cannot remove $f after the restart"; done
for f in "${!data[@]}"; do assert_missing "$MNT/$f"; done
mkdir "$MNT/kv/after"
touch "$MNT/kv/after/e"

step "a second restart keeps what was made after the first"
kvfs_restart
check_tree "after the second restart"
assert_eq directory "$(stat -c %F "$MNT/kv/after")" "kv/after"
assert_eq "regular empty file" "$(stat -c %F "$MNT/kv/after/e")" "kv/after/e"
check_gone kv/a/new 2M
check_gone opt1/dir/new8 8M
