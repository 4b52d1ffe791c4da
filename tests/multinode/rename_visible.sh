#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# rename is atomic cluster-wide: a rename on node 2 is visible on node 3 (and node 1) at once,
# the old name gone, the target replaced, directories moved with their contents; a reader on
# node 3 that polls a name replaced on node 2 never sees it absent or torn.
. "$(dirname "$0")/lib.sh"
mn_setup
mn_up 3

M=1048576
K=kv/ren
# name_state NODE PATH: "present" or "ENOENT" from an os.stat on NODE
name_state() {
	on "$1" python3 -c 'import os,sys
try: os.stat(sys.argv[1]); print("present")
except FileNotFoundError: print("ENOENT")' "$2"
}
# name_gone NODE PATH: the name is absent on NODE right now (stat says ENOENT)
name_gone() {
	local st
	st=$(name_state "$1" "$2")
	[ "$st" = ENOENT ] || log "$2 on node $1: expected ENOENT, got '$st'"
	[ "$st" = ENOENT ]
}
step "node 1 writes a.bin (3 MiB) and old.bin (1 MiB); node 2 renames a.bin -> b.bin"
mkdir -p "$(mnt 1)/$K/sub"
on_py 1 write "$(mnt 1)/$K/a.bin" $((3 * M)) a >/dev/null
on_py 1 write "$(mnt 1)/$K/old.bin" $M old >/dev/null
# node 1 looks a.bin up (its kernel now caches the name), node 2 renames it, and node 1 looks
# again right away: the cached name must not outlive the rename (rename is atomic cluster-wide)
cat >"$WORK/stale.py" <<'PY'
import os, sys, time
path, ready, moved = sys.argv[1:4]
os.stat(path)
open(ready, "w").close()
while not os.path.exists(moved):
    time.sleep(0.005)
try:
    os.stat(path)
    print("present")
except FileNotFoundError:
    print("ENOENT")
PY
on 1 timeout 60 python3 "$WORK/stale.py" "$(mnt 1)/$K/a.bin" "$WORK/ready" "$WORK/moved" \
	>"$WORK/stale.out" 2>&1 &
stale=$!
bg_register "$stale"
for _ in $(seq 200); do [ -e "$WORK/ready" ] && break; sleep 0.05; done
on 2 mv "$(mnt 2)/$K/a.bin" "$(mnt 2)/$K/b.bin"
touch "$WORK/moved"
wait "$stale" || true
check "node 1: a.bin gone right after the rename on node 2 (stat: $(cat "$WORK/stale.out"))" \
	[ "$(cat "$WORK/stale.out")" = ENOENT ]
check "node 3: a.bin gone after the rename on node 2" name_gone 3 "$(mnt 3)/$K/a.bin"
for n in 1 3; do
	check "node $n: b.bin has a.bin's content" on_py "$n" check "$(mnt "$n")/$K/b.bin" $((3 * M)) a
done
sleep 1.5
log "node 1, 1.5 s after the rename: a.bin is $(name_state 1 "$(mnt 1)/$K/a.bin")"

step "node 2 renames b.bin over old.bin (replacing); node 3 sees the new content"
on 2 mv -f "$(mnt 2)/$K/b.bin" "$(mnt 2)/$K/old.bin"
check "node 3: old.bin replaced" on_py 3 check "$(mnt 3)/$K/old.bin" $((3 * M)) a
assert_eq "old.bin sub" "$(on 3 ls "$(mnt 3)/$K" | sort | tr '\n' ' ' | sed 's/ $//')" \
	"listing of $K on node 3"

step "node 2 moves a directory with files; node 3 lists and reads them under the new name"
for i in 1 2 3; do on_py 1 write "$(mnt 1)/$K/sub/f$i" $((i * 100000)) "f$i" >/dev/null; done
on 2 mv "$(mnt 2)/$K/sub" "$(mnt 2)/$K/moved"
for i in 1 2 3; do
	check "node 3 reads moved/f$i" on_py 3 check "$(mnt 3)/$K/moved/f$i" $((i * 100000)) "f$i"
done
st=$(on 3 python3 -c 'import os,sys; print(os.path.exists(sys.argv[1]))' "$(mnt 3)/$K/sub")
assert_eq False "$st" "old directory name on node 3"

step "node 2 republishes one name 30 times (tmp + rename); node 3 polls it and never misses"
on_py 2 write "$(mnt 2)/$K/hot" $((256 * 1024)) v0 >/dev/null
cat >"$WORK/poll.py" <<'PY'
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
bad = reads = 0
while not os.path.exists(stop):
    try:
        with open(path, "rb", buffering=0) as f:
            b = f.read()
        reads += 1
        if len(b) != 256 * 1024:
            bad += 1
            print("short read: %d bytes" % len(b))
    except FileNotFoundError:
        bad += 1
        print("the name was absent")
print("reads %d, bad %d" % (reads, bad))
sys.exit(1 if bad or reads == 0 else 0)
PY
on 3 timeout 120 python3 "$WORK/poll.py" "$(mnt 3)/$K/hot" "$WORK/stop" >"$WORK/poll.out" 2>&1 &
poller=$!
bg_register "$poller"
for v in $(seq 30); do
	on_py 2 write "$(mnt 2)/$K/hot.tmp.$v" $((256 * 1024)) "v$v" >/dev/null
	on 2 mv -f "$(mnt 2)/$K/hot.tmp.$v" "$(mnt 2)/$K/hot"
done
touch "$WORK/stop"
st=0
wait "$poller" || st=$?
sed 's/^/    /' "$WORK/poll.out" | tail -n 5
assert_eq 0 "$st" "poller on node 3 (never absent, never short)"
check "node 3 reads the last version" on_py 3 check "$(mnt 3)/$K/hot" $((256 * 1024)) v30
check "node 1 reads the last version" on_py 1 check "$(mnt 1)/$K/hot" $((256 * 1024)) v30
