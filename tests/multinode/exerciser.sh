#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The randomized exerciser (tests/integration/exerciser.py) across two nodes: descriptor and
# path operations on node 1's mount, checked against the model, with --peer-dir on node 2's
# mount: whole-file reads there of files closed on node 1 (close-to-open), and files written
# there (pages on node 2) that node 1 then truncates, reopens with O_TRUNC, writes and reads.
# Then the same with the roles swapped. A pool with 64 KiB pages makes multi-page files cheap.
# File operations need no network namespace (each mount is served by its node's daemon), so
# one process drives both mounts.
#
# Long runs by hand: KVFS_EXERCISER_ARGS replaces the CI seed set, e.g.
#   KVFS_EXERCISER_ARGS="--seed $RANDOM --seconds 3600" tests/multinode/exerciser.sh
. "$(dirname "$0")/lib.sh"
mn_setup
mn_up 2
EXER=$KVFS_SRC/tests/integration/exerciser.py

"$KVFSCTL_BIN" -m "$(mnt 1)" pool create ex --page-size 64K --capacity 256M >/dev/null
for i in $(seq 100); do # node 2 learns of the pool through its replica
	[ -d "$(mnt 2)/ex" ] && break
	sleep 0.1
done
[ -d "$(mnt 2)/ex" ] || fail "pool ex made on node 1 is not visible on node 2 after 10 s"
mkdir -p "$(mnt 1)/ex/x"
for i in $(seq 100); do
	[ -d "$(mnt 2)/ex/x" ] && break
	sleep 0.1
done

# exer WHAT ARGS...: one exerciser invocation; a failure is reported and the next one runs.
exer() {
	local what=$1
	shift
	log "exerciser.py $*"
	check "exerciser: $what" python3 "$EXER" --shrink-seconds 30 "$@"
}

if [ -n "${KVFS_EXERCISER_ARGS:-}" ]; then
	step "by hand: $KVFS_EXERCISER_ARGS"
	# shellcheck disable=SC2086 # a list of options
	exer "by hand" --dir "$(mnt 1)/ex/x/hand" --peer-dir "$(mnt 2)/ex/x/hand" $KVFS_EXERCISER_ARGS
	exit 0
fi

step "node 1 with node 2 as the peer: 6 seeds x 300 operations"
exer "node 1, peer node 2" --dir "$(mnt 1)/ex/x/a" --peer-dir "$(mnt 2)/ex/x/a" \
	--seed 1 --runs 6 --ops 300
step "node 2 with node 1 as the peer: 4 seeds x 300 operations on 2 names"
exer "node 2, peer node 1" --dir "$(mnt 2)/ex/x/b" --peer-dir "$(mnt 1)/ex/x/b" \
	--seed 101 --runs 4 --ops 300 --files 2
