#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Everyday shell use of a mount: ls, cat, cp, mv, rm, stat, df, getfattr/setfattr, mkdir -p,
# chmod, touch, truncate, pools made with mkdir and dropped with rmdir, no files at the root.
. "$(dirname "$0")/lib.sh"
kvfs_setup getfattr setfattr df numfmt cmp
kvfs_start --pool fixed,evict=none

dram=$(size_bytes "$KVFS_DRAM")
MiB=1048576

step "the root lists the pools and hides .kvfs"
out=$(ls -l "$MNT")
assert_match '^d.* kv$' "$(printf '%s\n' "$out" | grep ' kv$')" "ls -l of the root shows kv"
assert_match '^d.* mamba$' "$(printf '%s\n' "$out" | grep ' mamba$')" "ls -l of the root shows mamba"
assert_eq "fixed kv mamba" "$(ls -a "$MNT" | grep -vx '\.\|\.\.' | sort | xargs)" "ls -a of the root"
assert_eq directory "$(stat -c %F "$MNT/.kvfs")" ".kvfs is reachable by name"

step "cp, cat, cmp of a 3 MiB + 123 byte file"
kvpy gen "$WORK/src" $((3 * MiB + 123)) 1 >/dev/null
cp "$WORK/src" "$MNT/kv/a.bin"
cmp "$WORK/src" "$MNT/kv/a.bin" || fail "cp then cmp: content differs"
# shellcheck disable=SC2002 # cat is what is under test
assert_eq "$(sha256sum <"$WORK/src")" "$(cat "$MNT/kv/a.bin" | sha256sum)" "cat | sha256sum"
assert_eq $((3 * MiB + 123)) "$(stat -c %s "$MNT/kv/a.bin")" "stat size"
assert_eq "regular file 644" "$(stat -c '%F %a' "$MNT/kv/a.bin")" "stat type and mode"
assert_eq 1 "$(stat -c %h "$MNT/kv/a.bin")" "link count"
line=$(ls -l "$MNT/kv" | grep ' a.bin$') || fail "ls -l $MNT/kv does not list a.bin"
assert_match "^-rw-r--r-- 1 root root $((3 * MiB + 123)) " "$line" "ls -l line"
# 4 pages of 1 MiB hold 3 MiB + 123 bytes: blocks count whole pages
assert_eq $((4 * MiB / 512)) "$(stat -c %b "$MNT/kv/a.bin")" "st_blocks (512 B units) of 4 pages"

step "getfattr -d -m - shows user.kvfs.*"
xa=$(getfattr -d -m - --absolute-names "$MNT/kv/a.bin")
printf '%s\n' "$xa" | sed 's/^/    /'
for kv in 'user.kvfs.pool="kv"' 'user.kvfs.page_size="1048576"' 'user.kvfs.pages="4"' \
	'user.kvfs.nodes="1"' 'user.kvfs.tier="dram"'; do
	printf '%s\n' "$xa" | grep -qxF "$kv" || fail "getfattr -d -m - lacks $kv"
done
printf '%s\n' "$xa" | grep -q '^user\.kvfs\.version="[0-9]\+"$' || fail "no user.kvfs.version"
dxa=$(getfattr -d -m - --absolute-names "$MNT/kv")
printf '%s\n' "$dxa" | grep -qxF 'user.kvfs.pool="kv"' || fail "directory kv lacks user.kvfs.pool"

step "setfattr/getfattr of a user attribute"
setfattr -n user.owner -v "sglang rank 0" "$MNT/kv/a.bin"
assert_eq "sglang rank 0" "$(getfattr --absolute-names --only-values -n user.owner "$MNT/kv/a.bin")" "user.owner"
getfattr --absolute-names -d -m - "$MNT/kv/a.bin" | grep -qxF 'user.owner="sglang rank 0"' ||
	fail "getfattr -d does not list user.owner"
setfattr -n user.owner -v "rank 1" "$MNT/kv/a.bin"
assert_eq "rank 1" "$(getfattr --absolute-names --only-values -n user.owner "$MNT/kv/a.bin")" "user.owner replaced"
setfattr -x user.owner "$MNT/kv/a.bin"
assert_errno ENODATA getxattr "$MNT/kv/a.bin" user.owner
assert_fails "setting the computed user.kvfs.pages" setfattr -n user.kvfs.pages -v 99 "$MNT/kv/a.bin"
assert_eq 4 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$MNT/kv/a.bin")" "user.kvfs.pages after refused set"
cmp "$WORK/src" "$MNT/kv/a.bin" || fail "content changed by xattr operations"

step "mv within a directory, between directories and between pools"
mkdir -p "$MNT/kv/a/b/c"
assert_eq directory "$(stat -c %F "$MNT/kv/a/b/c")" "mkdir -p a/b/c"
mv "$MNT/kv/a.bin" "$MNT/kv/b.bin"
assert_missing "$MNT/kv/a.bin"
mv "$MNT/kv/b.bin" "$MNT/kv/a/b/c/"
cmp "$WORK/src" "$MNT/kv/a/b/c/b.bin" || fail "content differs after mv"
mv "$MNT/kv/a/b/c/b.bin" "$MNT/mamba/m.bin" # another pool: mv copies and unlinks
cmp "$WORK/src" "$MNT/mamba/m.bin" || fail "content differs after mv to another pool"
assert_missing "$MNT/kv/a/b/c/b.bin"
v2=$(getfattr --absolute-names --only-values -n user.kvfs.pool "$MNT/mamba/m.bin")
assert_eq mamba "$v2" "user.kvfs.pool after moving to mamba"
echo "small" >"$MNT/kv/a/small"
mv -f "$MNT/kv/a/small" "$MNT/mamba/m.bin" # another pool, replacing an existing file
assert_eq small "$(cat "$MNT/mamba/m.bin")" "mv -f over an existing file"

step "rm"
rm "$MNT/mamba/m.bin"
assert_missing "$MNT/mamba/m.bin"
assert_eq "" "$(ls -A "$MNT/mamba")" "mamba is empty after rm"

step "chmod, touch, utimens"
kvpy gen "$MNT/kv/t" 1000 2 >/dev/null
chmod 600 "$MNT/kv/t"
assert_eq 600 "$(stat -c %a "$MNT/kv/t")" "mode after chmod 600"
chmod 750 "$MNT/kv/a"
assert_eq 750 "$(stat -c %a "$MNT/kv/a")" "directory mode after chmod 750"
touch -m -d @1000000000.123456789 "$MNT/kv/t"
assert_eq 1000000000.123456789 "$(stat -c %.9Y "$MNT/kv/t")" "mtime after touch -m -d"
touch -a -d @1100000000 "$MNT/kv/t"
assert_eq 1100000000 "$(stat -c %X "$MNT/kv/t")" "atime after touch -a -d"
assert_eq 1000000000 "$(stat -c %Y "$MNT/kv/t")" "mtime kept by touch -a"
before=$(date +%s)
touch "$MNT/kv/t"
assert_ge "$(stat -c %Y "$MNT/kv/t")" "$before" "mtime after plain touch"
touch "$MNT/kv/new-empty"
assert_eq "regular empty file 0" "$(stat -c '%F %s' "$MNT/kv/new-empty")" "touch creates"
assert_eq 0 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$MNT/kv/new-empty")" "pages of an empty file"
ctime0=$(stat -c %Z "$MNT/kv/t")
assert_ge "$ctime0" "$before" "ctime after touch"

step "truncate up and down"
kvpy gen "$WORK/t2" $((2 * MiB)) 3 >/dev/null
cp "$WORK/t2" "$MNT/kv/t2"
ver0=$(getfattr --absolute-names --only-values -n user.kvfs.version "$MNT/kv/t2")
truncate -s $((5 * MiB)) "$MNT/kv/t2"
ver1=$(getfattr --absolute-names --only-values -n user.kvfs.version "$MNT/kv/t2")
[ "$ver1" -gt "$ver0" ] || fail "user.kvfs.version not bumped by truncate: $ver0 -> $ver1"
assert_eq $((5 * MiB)) "$(stat -c %s "$MNT/kv/t2")" "size after truncate up"
cmp -n $((2 * MiB)) "$WORK/t2" "$MNT/kv/t2" || fail "data before the old end changed by truncate up"
assert_eq "$(head -c $((3 * MiB)) /dev/zero | sha256sum)" \
	"$(tail -c $((3 * MiB)) "$MNT/kv/t2" | sha256sum)" "bytes past the old end read as zeros"
truncate -s 1000 "$MNT/kv/t2"
assert_eq 1000 "$(stat -c %s "$MNT/kv/t2")" "size after truncate down"
assert_eq "$(head -c 1000 "$WORK/t2" | sha256sum)" "$(sha256sum <"$MNT/kv/t2")" "content after truncate down"
assert_eq 1 "$(getfattr --absolute-names --only-values -n user.kvfs.pages "$MNT/kv/t2")" "pages after truncate down to 1000"
truncate -s 0 "$MNT/kv/t2"
assert_eq "0 0" "$(stat -c '%s %b' "$MNT/kv/t2")" "size and blocks after truncate to 0"

step "df reports real totals"
sfs() { # sfs PATH FIELD: a statvfs field; "total"/"avail" in bytes (f_frsize units)
	kvpy statfs "$1" >"$WORK/statfs.json"
	case $2 in
	total) json_get "$WORK/statfs.json" 'j["blocks"] * (j["frsize"] or j["bsize"])' ;;
	avail) json_get "$WORK/statfs.json" 'j["bavail"] * (j["frsize"] or j["bsize"])' ;;
	*) json_get "$WORK/statfs.json" "j['$2']" ;;
	esac
}
kvpy statfs "$MNT"
assert_eq 4096 "$(sfs "$MNT" bsize)" "statvfs f_bsize"
total=$(sfs "$MNT" total)
if [ "$total" -lt "$dram" ] || [ "$total" -gt $((dram + 16 * MiB)) ]; then
	fail "statfs total of the root: expected the arena ($dram bytes), got $total"
fi
free0=$(sfs "$MNT" avail)
assert_le "$free0" "$total" "free space <= total"
# A file in an evict=none pool is not evictable: the available space must shrink by its size.
kvpy gen "$MNT/fixed/big" $((32 * MiB)) 4 >/dev/null
free1=$(sfs "$MNT" avail)
assert_le "$free1" $((free0 - 32 * MiB)) "statfs available after writing 32 MiB into a none pool (before: $free0)"
# A file in an lru pool counts as available (it can be evicted), but it is still used space.
kvpy gen "$MNT/kv/big" $((32 * MiB)) 5 >/dev/null
df -h "$MNT" | sed 's/^/    /'
df_line=$(df -B1 --output=size,used,avail "$MNT" | tail -n 1)
read -r dsz dused davail <<<"$df_line"
log "df: size $dsz used $dused avail $davail"
assert_eq "$total" "$dsz" "df size"
assert_ge "$dused" $((64 * MiB)) "df used with 32 MiB in a none pool and 32 MiB in an lru pool"
rm "$MNT/fixed/big" "$MNT/kv/big"
free2=$(sfs "$MNT" avail)
assert_ge "$free2" $((free1 + 32 * MiB)) "statfs available after removing both files"
read -r _ dused _ <<<"$(df -B1 --output=size,used,avail "$MNT" | tail -n 1)"
assert_le "$dused" $((8 * MiB)) "df used after removing both files"

step "mkdir at the root creates a pool, rmdir drops it"
mkdir "$MNT/newpool"
assert_eq directory "$(stat -c %F "$MNT/newpool")" "new pool"
ls "$MNT" | grep -qx newpool || fail "ls of the root does not show newpool"
kvctl pool list | grep -qw newpool || fail "kvfsctl pool list does not show newpool"
echo hello >"$MNT/newpool/f"
assert_eq 1048576 "$(getfattr --absolute-names --only-values -n user.kvfs.page_size "$MNT/newpool/f")" "default page size"
assert_eq newpool "$(getfattr --absolute-names --only-values -n user.kvfs.pool "$MNT/newpool/f")" "pool of a file in newpool"
rm "$MNT/newpool/f"
rmdir "$MNT/newpool"
assert_missing "$MNT/newpool"
if kvctl pool list | grep -qw newpool; then fail "kvfsctl pool list still shows newpool"; fi

step "regular files at the root are refused"
assert_errno "EPERM|EACCES" create "$MNT/file-at-root"
assert_missing "$MNT/file-at-root"
if (echo x >"$MNT/file-at-root2") 2>/dev/null; then fail "echo > a file at the root succeeded"; fi
assert_missing "$MNT/file-at-root2"
assert_eq "fixed kv mamba" "$(ls "$MNT" | xargs)" "root listing at the end"
