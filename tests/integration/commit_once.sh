#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# One metadata commit per change, not per close (issue 8): numpy's tofile() writes through a
# dup of the file's descriptor, so a publish ends in two FLUSHes (and a RELEASE); fsync then
# close ends in an FSYNC, a FLUSH and a RELEASE. Only the first of each may reach the metadata.
# Counted twice: the daemon's own commit counter, and, in the -http variant, kvfs-meta's count
# of /v1/commit requests (what would cost a round trip).
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start

# commits: the daemon's commit count, then kvfs-meta's /v1/commit count (0 when embedded)
commits() {
	local meta=0
	stats_snap "$WORK/c.json"
	if [ -n "$META_URL" ]; then
		meta=$(curl -sf "$META_URL/metrics" | awk '
			/^kvfs_meta_requests_total\{route="\/v1\/commit"/ { n += $NF }
			END { print n + 0 }')
	fi
	echo "$(json_get "$WORK/c.json" 'j["fs"]["commits"]') $meta"
}

# expect_commits N WHAT CMD...: run CMD and check that it committed exactly N times
expect_commits() {
	local n=$1 what=$2 before after b_fs b_meta a_fs a_meta
	shift 2
	before=$(commits)
	"$@"
	after=$(commits)
	read -r b_fs b_meta <<<"$before"
	read -r a_fs a_meta <<<"$after"
	assert_eq "$n" $((a_fs - b_fs)) "daemon commits of $what"
	[ -z "$META_URL" ] || assert_eq "$n" $((a_meta - b_meta)) "/v1/commit calls of $what"
}

step "write through a dup'd descriptor, two closes: one commit"
expect_commits 1 "a dup'd publish" python3 - "$MNT/kv/dup.bin" <<-'EOF'
	import os, sys
	with open(sys.argv[1], "wb") as f:
	    fd = os.dup(f.fileno())
	    os.write(fd, b"x" * 300000)
	    os.close(fd)
EOF
assert_eq 300000 "$(stat -c %s "$MNT/kv/dup.bin")" "size after the dup'd publish"

step "fsync, then close: one commit"
expect_commits 1 "fsync then close" python3 - "$MNT/kv/sync.bin" <<-'EOF'
	import os, sys
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
	os.write(fd, b"y" * 5000)
	os.fsync(fd)
	os.close(fd)
EOF

step "a read-only open and close: no commit"
expect_commits 0 "a read" sh -c 'cat "$1" >/dev/null' sh "$MNT/kv/sync.bin"

step "write, fsync, write, close: two commits (each holds new data)"
expect_commits 2 "two changes" python3 - "$MNT/kv/two.bin" <<-'EOF'
	import os, sys
	fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
	os.write(fd, b"a" * 10)
	os.fsync(fd)
	os.write(fd, b"b" * 10)
	os.close(fd)
EOF
assert_eq 20 "$(stat -c %s "$MNT/kv/two.bin")" "size after two commits"

if python3 -c 'import numpy' 2>/dev/null; then
	step "numpy tofile into an open file: one commit"
	expect_commits 1 "numpy tofile" python3 - "$MNT/kv/np.bin" <<-'EOF'
		import sys, numpy
		with open(sys.argv[1], "wb") as f:
		    numpy.arange(100000, dtype=numpy.float32).tofile(f)
	EOF
	assert_eq 400000 "$(stat -c %s "$MNT/kv/np.bin")" "size after tofile"
else
	log "numpy is not installed for $(command -v python3): the dup'd-descriptor case stands in"
fi
