#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# SIGINT and SIGTERM unmount cleanly: the daemon exits 0 and the mount is gone from
# /proc/mounts, also with a file held open and with I/O in flight.
. "$(dirname "$0")/lib.sh"
kvfs_setup

# stop_and_check SIG WHAT
stop_and_check() {
	kvfs_stop "$1" 10
	assert_eq 0 "$KVFS_STATUS" "exit status after SIG$1 ($2)"
	assert_eq 0 "$(mount_count "$MNT")" "entries for $MNT in /proc/mounts after SIG$1 ($2)"
}

for sig in INT TERM; do
	step "SIG$sig on an idle mount"
	kvfs_start
	echo "$sig" >"$MNT/kv/$sig"
	stop_and_check "$sig" "idle"
done

step "SIGTERM with a file held open"
kvfs_start
kvpy gen "$MNT/kv/held" 1M 1 >/dev/null
python3 "$LIB_DIR/kvtest.py" hold "$MNT/kv/held" "$WORK/held" &
holder=$!
bg_register "$holder"
for _ in $(seq 100); do [ -s "$WORK/held" ] || sleep 0.05; done
[ -s "$WORK/held" ] || fail "the holder did not open the file"
stop_and_check TERM "a file held open"
kill "$holder" 2>/dev/null || true

step "SIGINT with reads and writes in flight"
kvfs_start
python3 - "$MNT/kv" <<-'PY' &
	import os, sys
	d = sys.argv[1]
	buf = os.urandom(1 << 20)
	i = 0
	try:
	    while True:
	        p = os.path.join(d, "busy%d" % (i % 4))
	        with open(p, "wb") as f:
	            f.write(buf)
	        with open(p, "rb") as f:
	            f.read()
	        i += 1
	except OSError as e:
	    print("busy loop stopped after %d rounds: %s" % (i, e))
PY
busy=$!
bg_register "$busy"
sleep 1
stop_and_check INT "I/O in flight"
for _ in $(seq 50); do pid_alive "$busy" || break; sleep 0.1; done
pid_alive "$busy" && fail "a process doing I/O on the mount hangs after the daemon exited"
wait "$busy" || true

step "the data directory is still good"
kvfs_start
assert_eq "kv mamba" "$(ls "$MNT" | xargs)" "pools after the signal tests"
