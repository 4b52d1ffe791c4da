#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kvfsctl: pool create/list/drop with options, layout, stats; .kvfs/stats is JSON; the
# .kvfs/ctl protocol answers errors as documented.
. "$(dirname "$0")/lib.sh"
kvfs_setup getfattr numfmt
kvfs_start

MiB=1048576

step ".kvfs/stats parses as JSON and has the documented fields"
# shellcheck disable=SC2002 # exactly what a user types
cat "$MNT/.kvfs/stats" | python3 -m json.tool >"$WORK/stats0.pretty" ||
	fail ".kvfs/stats is not JSON: $(head -c 400 "$MNT/.kvfs/stats")"
sed 's/^/    /' "$WORK/stats0.pretty" | head -n 60
stats_snap "$WORK/s0.json"
for e in 'j["node"]["id"]' 'j["node"]["incarnation"]' 'j["node"]["arena_bytes"]' \
	'j["node"]["used_bytes"]' 'j["node"]["free_bytes"]' 'j["node"]["pinned_pages"]' \
	'j["fs"]["lookups"]' 'j["fs"]["opens"]' 'j["fs"]["reads"]' 'j["fs"]["read_bytes"]' \
	'j["fs"]["writes"]' 'j["fs"]["write_bytes"]' 'j["fs"]["commits"]' 'j["fs"]["creates"]' \
	'j["fs"]["unlinks"]' 'j["fs"]["renames"]' 'j["xfer"]["local"]["bytes"]'; do
	v=$(json_get "$WORK/s0.json" "$e" 2>/dev/null) || fail ".kvfs/stats lacks $e"
	assert_match '^[0-9]+$' "$v" "$e is a count"
done
assert_eq 1 "$(json_get "$WORK/s0.json" 'j["node"]["id"]')" "node id in embedded mode"
arena=$(json_get "$WORK/s0.json" 'j["node"]["arena_bytes"]')
assert_ge "$arena" "$(size_bytes "$KVFS_DRAM")" "arena_bytes (--dram $KVFS_DRAM)"
assert_eq "kv mamba" "$(json_get "$WORK/s0.json" '" ".join(sorted(p["name"] for p in j["pools"]))')" \
	"pools in .kvfs/stats"
for f in id page_size capacity evict max_file_size used_bytes files evictions evicted_bytes; do
	json_get "$WORK/s0.json" "[p for p in j['pools'] if p['name'] == 'kv'][0]['$f']" >/dev/null ||
		fail ".kvfs/stats pool kv lacks $f"
done
assert_eq 1048576 "$(pool_stat kv page_size)" "default page size of kv"
assert_eq lru "$(pool_stat kv evict)" "default eviction policy of kv"
assert_refused "writing .kvfs/stats" write "$MNT/.kvfs/stats"
assert_errno "EPERM|EACCES|EEXIST" mkdir "$MNT/.kvfs"

step "counters move with I/O"
w0=$(json_get "$WORK/s0.json" 'j["fs"]["write_bytes"]')
c0=$(json_get "$WORK/s0.json" 'j["fs"]["creates"]')
u0=$(json_get "$WORK/s0.json" 'j["node"]["used_bytes"]')
sha=$(kvpy gen "$MNT/kv/three" $((3 * MiB)) 7)
assert_sha "$MNT/kv/three" "$sha" "3 MiB file"
stats_snap "$WORK/s1.json"
assert_ge "$(json_get "$WORK/s1.json" 'j["fs"]["write_bytes"]')" $((w0 + 3 * MiB)) "fs.write_bytes"
assert_ge "$(json_get "$WORK/s1.json" 'j["fs"]["read_bytes"]')" $((3 * MiB)) "fs.read_bytes"
assert_ge "$(json_get "$WORK/s1.json" 'j["fs"]["creates"]')" $((c0 + 1)) "fs.creates"
assert_eq $((u0 + 3 * MiB)) "$(json_get "$WORK/s1.json" 'j["node"]["used_bytes"]')" "node.used_bytes"
assert_eq $((3 * MiB)) "$(pool_stat kv used_bytes)" "kv used_bytes"
assert_eq 1 "$(pool_stat kv files)" "kv files"

step "kvfsctl pool create with options"
kvctl pool create p64 --page-size 64K --capacity 32M --evict none --max-file-size 8M
kvctl pool create plru --page-size 4M --capacity 64M --evict lru
kvctl pool list | sed 's/^/    /'
kvctl pool list >"$WORK/list.txt"
for p in kv mamba p64 plru; do grep -qw "$p" "$WORK/list.txt" || fail "pool list lacks $p"; done
kvctl pool list --json >"$WORK/list.json" || fail "pool list --json failed"
python3 -m json.tool "$WORK/list.json" >/dev/null || fail "pool list --json is not JSON"
# accept either a bare list or the ctl reply {"ok":true,"pools":[...]}
pools_expr='(j["pools"] if isinstance(j, dict) else j)'
pget() { json_get "$WORK/list.json" "[p for p in $pools_expr if p['name'] == '$1'][0]['$2']"; }
assert_eq 65536 "$(pget p64 page_size)" "p64 page_size"
assert_eq $((32 * MiB)) "$(pget p64 capacity)" "p64 capacity"
assert_eq none "$(pget p64 evict)" "p64 evict"
assert_eq $((8 * MiB)) "$(pget p64 max_file_size)" "p64 max_file_size"
assert_eq $((4 * MiB)) "$(pget plru page_size)" "plru page_size"
assert_eq $((64 * MiB)) "$(pget plru capacity)" "plru capacity"
assert_eq lru "$(pget plru evict)" "plru evict"
assert_eq 17592186044416 "$(pget plru max_file_size)" "plru max_file_size (default 16 TiB)"
assert_eq directory "$(stat -c %F "$MNT/p64")" "p64 is a directory at the root"
echo x >"$MNT/p64/f"
assert_eq 65536 "$(getfattr --absolute-names --only-values -n user.kvfs.page_size "$MNT/p64/f")" "page size of a file in p64"
assert_eq 65536 "$(pool_stat p64 used_bytes)" "p64 used_bytes after a 2-byte file"

step "kvfsctl refuses bad pool options and existing names"
assert_fails "pool create of an existing name" kvctl pool create p64
assert_fails "page size 32K" kvctl pool create bad1 --page-size 32K
assert_fails "page size 3M (not a power of two)" kvctl pool create bad2 --page-size 3M
assert_fails "page size 32M (above 16M)" kvctl pool create bad3 --page-size 32M
assert_fails "evict policy 'fifo'" kvctl pool create bad4 --evict fifo
for b in bad1 bad2 bad3 bad4; do assert_missing "$MNT/$b"; done
assert_eq 65536 "$(pool_stat p64 page_size)" "p64 page size after a refused re-create"

step "pool names with control characters or '/', overlong names and huge sizes are refused"
long=$(printf 'p%.0s' $(seq 256))
assert_fails "kvfsctl: a name with a newline" kvctl pool create "$(printf 'a\nb')"
assert_fails "kvfsctl: a name with \\x01" kvctl pool create "$(printf 'a\001')"
assert_fails "kvfsctl: a name with /" kvctl pool create a/b
assert_fails "kvfsctl: a 256-byte name" kvctl pool create "$long"
assert_fails "kvfsctl: capacity 16777215T (2^64 - 2^40)" kvctl pool create big1 --capacity 16777215T
assert_fails "kvfsctl: capacity 99999999999999999999" \
	kvctl pool create big2 --capacity 99999999999999999999
assert_fails "kvfsctl: max file size 8E" kvctl pool create big3 --max-file-size 8388608T
for req in '{"cmd":"pool_create","name":"a\nb"}' '{"cmd":"pool_create","name":"a\u0001"}' \
	'{"cmd":"pool_create","name":"a\u0000b"}' '{"cmd":"pool_create","name":"a/b"}' \
	'{"cmd":"pool_create","name":".."}' "{\"cmd\":\"pool_create\",\"name\":\"$long\"}" \
	'{"cmd":"pool_create","name":"big1","capacity":"16777215T"}' \
	'{"cmd":"pool_create","name":"big2","capacity":"99999999999999999999"}' \
	'{"cmd":"pool_create","name":"big3","max_file_size":"8388608T"}' \
	'{"cmd":"pool_create","name":"big4","capacity":9223372036854775807}'; do
	kvpy ctl "$MNT" "$req" >"$WORK/ctlbad.json"
	# a \u0000 is refused by the request parser already: the write fails with EINVAL
	[ "$(cat "$WORK/ctlbad.json")" = EINVAL ] && continue
	assert_eq 22 "$(json_get "$WORK/ctlbad.json" 'j["errno"]' 2>&1)" ".kvfs/ctl ${req:0:60}: EINVAL"
done
kvpy ctl "$MNT" '{"cmd":"pool_list"}' >"$WORK/ctlnames.json"
assert_eq "kv mamba p64 plru" \
	"$(json_get "$WORK/ctlnames.json" '" ".join(sorted(p["name"] for p in j["pools"]))')" \
	"no pool created by the refused requests"
kvctl pool create huge --capacity 4194304T
assert_eq 4611686018427387904 "$(pool_stat huge capacity)" "a 2^62-byte capacity comes back unsigned"
kvctl pool list | grep -w huge | grep -q 4E || fail "pool list does not show huge's capacity as 4E"
kvctl pool drop huge

step "kvfs --pool refuses bad names and huge sizes"
mkdir -p "$WORK/nomnt"
for spec in "$(printf 'a\001')" a/b .. "$long" "big,capacity=16777215T" \
	"big,capacity=99999999999999999999"; do
	out=$(timeout 10 "$KVFS_BIN" -f --dram 64M --data "$WORK/nodata" --pool "$spec" "$WORK/nomnt" 2>&1) &&
		fail "kvfs --pool '${spec:0:40}' started"
	assert_match "cannot parse" "$out" "kvfs --pool '${spec:0:40}' refused"
done

step "kvfsctl finds the mount through KVFS_MNT and /proc/self/mounts"
KVFS_MNT=$MNT "$KVFSCTL_BIN" pool list | grep -qw p64 || fail "KVFS_MNT=\$MNT kvfsctl pool list"
if [ "$(awk '$3 == "fuse.kvfs"' /proc/mounts | wc -l)" -eq 1 ]; then
	(cd / && env -u KVFS_MNT "$KVFSCTL_BIN" pool list) | grep -qw p64 ||
		fail "kvfsctl without -m does not find the only fuse.kvfs mount"
else
	log "note: more than one fuse.kvfs mount, not checking the automatic choice"
fi

step "kvfsctl layout"
kvctl layout "$MNT/kv/three" | sed 's/^/    /'
kvctl layout "$MNT/kv/three" --json >"$WORK/layout.json"
assert_eq $((3 * MiB)) "$(json_get "$WORK/layout.json" 'j["size"]')" "layout size"
assert_eq $((MiB)) "$(json_get "$WORK/layout.json" 'j["page_size"]')" "layout page_size"
assert_eq "[0, 1, 2]" "$(json_get "$WORK/layout.json" '[p["index"] for p in j["pages"]]')" "layout page indices"
assert_eq "[1, 1, 1]" "$(json_get "$WORK/layout.json" '[p["node"] for p in j["pages"]]')" "layout nodes"
assert_eq "$(stat -c %i "$MNT/kv/three")" "$(json_get "$WORK/layout.json" 'j["ino"]')" "layout ino = st_ino"
# a sparse file: only page 5 of a 64K-page pool is written
python3 - "$MNT/p64/sparse" <<-'EOF'
	import os, sys
	fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644)
	assert os.pwrite(fd, b"s" * 65536, 5 * 65536) == 65536
	os.close(fd)
EOF
kvctl layout "$MNT/p64/sparse" --json >"$WORK/layout2.json"
assert_eq "[5]" "$(json_get "$WORK/layout2.json" '[p["index"] for p in j["pages"]]')" "pages of a sparse file"
assert_eq $((6 * 65536)) "$(json_get "$WORK/layout2.json" 'j["size"]')" "size of the sparse file"
assert_fails "layout of a missing file" kvctl layout "$MNT/kv/missing"

step "kvfsctl stats"
kvctl stats | sed 's/^/    /' | head -n 40
kvctl stats --json >"$WORK/ctlstats.json" || fail "kvfsctl stats --json failed"
st_expr='(j["stats"] if "stats" in j else j)'
assert_eq "$arena" "$(json_get "$WORK/ctlstats.json" "${st_expr}['node']['arena_bytes']")" "stats --json arena_bytes"
assert_eq "kv mamba p64 plru" \
	"$(json_get "$WORK/ctlstats.json" "' '.join(sorted(p['name'] for p in ${st_expr}['pools']))")" "pools in stats"

step ".kvfs/ctl protocol"
kvpy ctl "$MNT" '{"cmd":"pool_list"}' >"$WORK/ctl1.json"
assert_eq true "$(json_get "$WORK/ctl1.json" 'j["ok"]')" "pool_list ok"
assert_eq "kv mamba p64 plru" "$(json_get "$WORK/ctl1.json" '" ".join(sorted(p["name"] for p in j["pools"]))')" "pool_list names"
assert_eq EINVAL "$(kvpy ctl "$MNT" 'this is not json')" "write of a non-JSON request"
assert_eq EINVAL "$(kvpy ctl "$MNT" '{"nocmd":1}')" "write of a request without cmd"
kvpy ctl "$MNT" '{"cmd":"pool_drop","name":"nosuchpool","force":false}' >"$WORK/ctl2.json"
assert_eq false "$(json_get "$WORK/ctl2.json" 'j["ok"]')" "pool_drop of a missing pool: ok"
assert_eq 2 "$(json_get "$WORK/ctl2.json" 'j["errno"]')" "pool_drop of a missing pool: errno ENOENT"
kvpy ctl "$MNT" '{"cmd":"layout","path":"kv/three"}' >"$WORK/ctl3.json"
assert_eq 3 "$(json_get "$WORK/ctl3.json" 'len(j["pages"])')" "ctl layout pages"

step "kvfsctl pool drop"
assert_fails "pool drop of a non-empty pool" kvctl pool drop p64
assert_exists "$MNT/p64/f"
assert_sha "$MNT/kv/three" "$sha" "kv/three after a refused drop of p64"
kvctl pool drop p64 --force
assert_missing "$MNT/p64"
kvctl pool drop plru
assert_missing "$MNT/plru"
kvctl pool list >"$WORK/list2.txt"
if grep -qw -e p64 -e plru "$WORK/list2.txt"; then fail "dropped pools still listed"; fi
assert_fails "pool drop of a missing pool" kvctl pool drop p64
assert_sha "$MNT/kv/three" "$sha" "kv/three after dropping other pools"
# a dropped name can be created again, with new options
kvctl pool create p64 --page-size 128K
assert_eq 131072 "$(pool_stat p64 page_size)" "re-created p64 page size"
assert_eq 0 "$(pool_stat p64 files)" "re-created p64 is empty"
