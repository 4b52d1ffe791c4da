#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 the daemon: the mount point is left as a dead FUSE mount; the next kvfs on the same
# mount point cleans it up and mounts again, and every namespace change that returned before
# the crash is still there.
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start

step "populate, then kill -9"
kvctl pool create px --page-size 128K --evict none
mkdir -p "$MNT/kv/d1/d2"
touch "$MNT/kv/d1/e" "$MNT/px/e"
kvpy gen "$MNT/kv/d1/data" 1M 1 >/dev/null
kvfs_stop KILL
assert_eq 137 "$KVFS_STATUS" "exit status after SIGKILL"
assert_eq 1 "$(mount_count "$MNT")" "mount entries for the dead mount"
assert_errno ENOTCONN open "$MNT/.kvfs/stats"

step "start again on the same mount point: the dead mount is cleaned up"
kvfs_start
assert_eq 1 "$(mount_count "$MNT")" "mount entries for $MNT after the restart"
assert_eq "kv mamba px" "$(ls "$MNT" | xargs)" "pools after the crash"
assert_eq 131072 "$(pool_stat px page_size)" "px page size after the crash"
assert_eq none "$(pool_stat px evict)" "px eviction policy after the crash"
for d in kv/d1 kv/d1/d2; do assert_eq directory "$(stat -c %F "$MNT/$d")" "$d after the crash"; done
for f in kv/d1/e px/e; do assert_eq "regular empty file" "$(stat -c %F "$MNT/$f")" "$f after the crash"; done
r=$(kvpy readcheck "$MNT/kv/d1/data")
case $r in
ENOENT | EIO) log "ok: kv/d1/data after the crash -> $r" ;;
*) fail "kv/d1/data (in DRAM before the crash) after the restart: expected ENOENT or EIO, got '$r'" ;;
esac

step "kill -9 during a stream of creates: every create that returned is still there"
python3 - "$MNT/kv/stream" "$WORK/created.log" <<-'PY' &
	import os, sys
	d, logf = sys.argv[1], sys.argv[2]
	os.makedirs(d, exist_ok=True)
	with open(logf, "w", buffering=1) as log:
	    i = 0
	    try:
	        while True:
	            if i % 10 == 0:
	                os.mkdir(os.path.join(d, "dir%d" % i))
	                log.write("dir%d\n" % i)
	            else:
	                os.close(os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
	                log.write("f%d\n" % i)
	            i += 1
	    except OSError as e:
	        print("creator stopped after %d creates: %s" % (i, e))
PY
creator=$!
bg_register "$creator"
for _ in $(seq 100); do
	[ "$(wc -l 2>/dev/null <"$WORK/created.log" || echo 0)" -ge 500 ] && break
	sleep 0.05
done
kvfs_stop KILL
wait "$creator" || true
n=$(wc -l <"$WORK/created.log")
log "$n creates returned before the kill"
assert_ge "$n" 1 "creates before the kill"
kvfs_start
missing=0
while read -r name; do
	[ "$(kvpy try lstat "$MNT/kv/stream/$name")" = OK ] || { missing=$((missing + 1)); log "missing: $name"; }
done < <(tail -n 50 "$WORK/created.log")
ls -f "$MNT/kv/stream" | grep -vx '\.\|\.\.' | sort >"$WORK/listed"
sort "$WORK/created.log" >"$WORK/created.sorted"
lost=$(comm -23 "$WORK/created.sorted" "$WORK/listed" | wc -l)
extra=$(comm -13 "$WORK/created.sorted" "$WORK/listed" | wc -l)
log "after the crash: $(wc -l <"$WORK/listed") names listed, $lost created names lost, $extra extra (the create in flight)"
assert_eq 0 "$lost" "creates that returned before kill -9 but are gone after the restart"
assert_eq 0 "$missing" "the last 50 created names found by lookup"
assert_le "$extra" 1 "names listed that were never reported created"
while read -r name; do
	stat "$MNT/kv/stream/$name" >/dev/null || fail "stat of listed name $name fails"
done <"$WORK/listed"

step "SIGTERM now exits cleanly"
kvfs_stop TERM
assert_eq 0 "$KVFS_STATUS" "exit status after SIGTERM"
assert_eq 0 "$(mount_count "$MNT")" "mount entries after SIGTERM"
