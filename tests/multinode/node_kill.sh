#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# kill -9 of a node: readers of its pages get EIO within the transfer deadline (5 s) and never
# hang, a reader in the middle of a file when the node dies too; files on the other nodes keep
# working; the node restarts as itself with a higher incarnation and serves again.
. "$(dirname "$0")/lib.sh"
mn_setup
# long enough that kvfs-meta does not declare node 1 dead while it is stopped (~5-8 s below)
NODE_TIMEOUT=15
export KVFS_META_ARGS="--node-timeout-ms $((NODE_TIMEOUT * 1000))"
mn_up 3
sleep 2 # every node has heard of every peer (see spread.sh for writes right after joining)

M=1048576
DEADLINE=5	# the transfer engine's default deadline in kvfs
LIMIT=$((DEADLINE + 5)) # allowed for one failing read, with slack for a loaded machine
D=kv/kill
mkdir -p "$(mnt 1)/$D"
step "node 1 writes a, b, h (8 MiB each) and c (64 MiB); node 3 writes safe (8 MiB)"
on_py 1 write "$(mnt 1)/$D/a" $((8 * M)) a >/dev/null
on_py 1 write "$(mnt 1)/$D/b" $((8 * M)) b >/dev/null
on_py 1 write "$(mnt 1)/$D/c" $((64 * M)) c >/dev/null
on_py 1 write "$(mnt 1)/$D/h" $((8 * M)) h >/dev/null
on_py 3 write "$(mnt 3)/$D/safe" $((8 * M)) safe >/dev/null
assert_eq 1 "$(xattr 2 "$D/c" nodes)" "nodes of c"
assert_eq 3 "$(xattr 2 "$D/safe" nodes)" "nodes of safe"
check "node 2 reads a before the kill" on_py 2 check "$(mnt 2)/$D/a" $((8 * M)) a
inc1=$(node_stat 1 'j["node"]["incarnation"]')
id1=$(node_stat 1 'j["node"]["id"]')
log "node 1: id $id1, incarnation $inc1"

step "node 1 hangs (SIGSTOP): readers of h on nodes 2 and 3 get EIO within the deadline"
cl kill 1 STOP
for n in 2 3; do
	timeout $((LIMIT * 3)) "$CLUSTER" exec "$n" python3 "$LIB_DIR/mn.py" readtimed \
		"$(mnt "$n")/$D/h" >"$WORK/hung.$n" 2>&1 || echo "TIMEOUT (status $?)" >>"$WORK/hung.$n" &
	bg_register $!
done
wait
cl kill 1 CONT
for n in 2 3; do
	out=$(cat "$WORK/hung.$n")
	log "node $n reads h from a hung node 1: $out"
	read -r what secs <<<"$out"
	check "node $n: read of h (node 1 hung) fails with EIO, got '$what'" [ "$what" = EIO ]
	check "node $n: the read of h (node 1 hung) took ${secs}s, allowed ${LIMIT}s" \
		awk -v s="${secs:-999}" -v l="$LIMIT" 'BEGIN { exit !(s + 0 <= l) }'
done
# (a node that has read a file may serve it from its page cache later: b stays unread)
check "node 1 serves h again after SIGCONT" on_py 2 check "$(mnt 2)/$D/h" $((8 * M)) h

# a reader on node 2 that loops over c with O_DIRECT (no page cache) until a read fails
cat >"$WORK/loop.py" <<'PY'
import errno, mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
size, off, n, t_end = os.fstat(fd).st_size, 0, 0, time.monotonic() + 120
open(sys.argv[2], "w").close()  # started
while time.monotonic() < t_end:
    try:
        t0 = time.monotonic()
        got = os.preadv(fd, [buf], off)
    except OSError as e:
        print("%s after %d reads, that read took %.3f s" %
              (errno.errorcode.get(e.errno, e.errno), n, time.monotonic() - t0))
        sys.exit(0)
    n += 1
    off = 0 if off + got >= size else off + got
print("no error in 120 s (%d reads)" % n)
sys.exit(1)
PY
on 2 timeout 150 python3 "$WORK/loop.py" "$(mnt 2)/$D/c" "$WORK/loop.started" \
	>"$WORK/loop.out" 2>&1 &
loop=$!
bg_register "$loop"
for _ in $(seq 100); do [ -e "$WORK/loop.started" ] && break; sleep 0.05; done
sleep 0.5

step "kill -9 node 1 while node 2 reads c"
t_kill=$(now)
cl kill 1 KILL
st=0
wait "$loop" || st=$?
log "in-flight reader: $(cat "$WORK/loop.out") (ended $(since "$t_kill") s after the kill)"
[ "$st" != 124 ] || fail "the in-flight reader of c on node 2 hung until its timeout"
check "in-flight reader of c on node 2 ended with status $st" [ "$st" = 0 ]
check "error of the in-flight reader: '$(cat "$WORK/loop.out")', expected EIO" \
	grep -q '^EIO ' "$WORK/loop.out"

step "fresh readers of node 1's pages on nodes 2 and 3: EIO within ${LIMIT}s, never a hang"
for n in 2 3; do
	out=$(timeout $((LIMIT * 3)) "$CLUSTER" exec "$n" python3 "$LIB_DIR/mn.py" readtimed \
		"$(mnt "$n")/$D/b" 2>&1) || out="TIMEOUT (status $?)"
	log "node $n reads b: $out"
	read -r what secs <<<"$out"
	check "node $n: read of b (on dead node 1) fails with EIO, got '$what'" [ "$what" = EIO ]
	check "node $n: the failing read took ${secs}s, allowed ${LIMIT}s" \
		awk -v s="${secs:-999}" -v l="$LIMIT" 'BEGIN { exit !(s + 0 <= l) }'
done

step "files on the other nodes keep working"
check "node 2 reads safe (node 3)" on_py 2 check "$(mnt 2)/$D/safe" $((8 * M)) safe
check "node 3 writes and node 2 reads a new file" on_py 3 write "$(mnt 3)/$D/new" $((5 * M)) new
check "node 2 reads new" on_py 2 check "$(mnt 2)/$D/new" $((5 * M)) new
check "node 2 lists $D" on 2 ls "$(mnt 2)/$D"

step "after the node timeout (${NODE_TIMEOUT} s) kvfs-meta has declared node 1 dead: b is EIO or gone"
sleep $((NODE_TIMEOUT + 3))
out=$(timeout $((LIMIT * 3)) "$CLUSTER" exec 2 python3 "$LIB_DIR/mn.py" readtimed \
	"$(mnt 2)/$D/b" 2>&1) || out="TIMEOUT"
log "node 2 reads b after node 1 was declared dead: $out"
case $out in
EIO* | ENOENT*) ;;
*) check "node 2 reads b of a dead node 1: expected EIO or ENOENT, got '$out'" false ;;
esac
check "node 3 reads safe" on_py 3 check "$(mnt 3)/$D/safe" $((8 * M)) safe

step "restart node 1: same id, higher incarnation, serving again"
cl restart 1
inc1b=$(node_stat 1 'j["node"]["incarnation"]')
id1b=$(node_stat 1 'j["node"]["id"]')
log "node 1 after restart: id $id1b, incarnation $inc1b"
assert_eq "$id1" "$id1b" "node id of node 1 after restart"
assert_ge "$inc1b" $((inc1 + 1)) "incarnation of node 1 after restart"
for f in a b c; do
	out=$(timeout $((LIMIT * 3)) "$CLUSTER" exec 2 python3 "$LIB_DIR/mn.py" readtimed \
		"$(mnt 2)/$D/$f" 2>&1) || out="TIMEOUT"
	log "node 2 reads $f (its pages were on the old incarnation): $out"
	case $out in
	OK*) check "node 2 read $f from node 1's old incarnation: must not succeed" false ;;
	EIO* | ENOENT*) ;;
	*) check "node 2 reads $f of the old incarnation: expected EIO or ENOENT, got '$out'" false ;;
	esac
done
check "node 1 reads safe (node 3)" on_py 1 check "$(mnt 1)/$D/safe" $((8 * M)) safe
check "node 1 writes after the restart" on_py 1 write "$(mnt 1)/$D/again" $((6 * M)) again
check "node 3 reads node 1's new file" on_py 3 check "$(mnt 3)/$D/again" $((6 * M)) again
