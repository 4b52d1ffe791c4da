#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The randomized exerciser (exerciser.py): a seeded random mix of descriptor and path operations
# (write, pwrite, read, pread, lseek, truncate by path, ftruncate, open with O_TRUNC, O_APPEND,
# O_EXCL, fallocate, rename over, unlink while open, close and reopen, a fresh descriptor after
# close) checked byte for byte against an in-memory model. In CI: a fixed set of seeds, a few
# thousand operations in a pool with 64 KiB pages (cheap multi-page files, offsets biased to
# page boundaries) and a few hundred in kv (1 MiB pages). A failure prints the seed, the op,
# the first differing byte, the last 30 ops and a shrunk, replayable reproduction.
#
# Long runs by hand (a build in ./build; KVFS_EXERCISER_ARGS replaces the CI seed set):
#   KVFS_EXERCISER_ARGS="--seed $RANDOM --seconds 7200" tests/integration/exerciser.sh
# or against any mounted kvfs with a pool made by `kvfsctl pool create ex --page-size 64K`:
#   python3 tests/integration/exerciser.py --dir /mnt/kvfs/ex/x --seed 7 --seconds 3600
# and replay a failure with the command line it prints (--seed S, --only I,J,... for the shrunk
# list of operations). See exerciser.py --help for the options.
. "$(dirname "$0")/lib.sh"
kvfs_setup
kvfs_start --pool ex,page-size=64K,capacity=256M

# exer WHAT ARGS...: one exerciser invocation; a failure is reported and the next one runs.
exer() {
	local what=$1
	shift
	log "exerciser.py $*"
	check "exerciser: $what" python3 "$LIB_DIR/exerciser.py" --shrink-seconds 20 "$@"
}

if [ -n "${KVFS_EXERCISER_ARGS:-}" ]; then
	step "by hand: $KVFS_EXERCISER_ARGS"
	# shellcheck disable=SC2086 # a list of options
	exer "by hand" --dir "$MNT/ex/hand" $KVFS_EXERCISER_ARGS
	exit 0
fi

step "64 KiB pages: 8 seeds x 400 operations on 4 names up to 8 pages"
exer "64K pages, 4 names" --dir "$MNT/ex/a" --seed 1 --runs 8 --ops 400
step "64 KiB pages: 4 seeds x 250 operations on 2 names (more collisions)"
exer "64K pages, 2 names" --dir "$MNT/ex/b" --seed 101 --runs 4 --ops 250 --files 2
# a bug that O_TRUNC runs into first must not hide the others: the same without O_TRUNC
step "64 KiB pages without O_TRUNC: 4 seeds x 400 operations"
exer "64K pages, no O_TRUNC" --dir "$MNT/ex/d" --seed 2 --runs 4 --ops 400 --no-otrunc
step "1 MiB pages (kv): 2 seeds x 200 operations up to 3 MiB"
exer "1M pages" --dir "$MNT/kv/c" --seed 201 --runs 2 --ops 200 --max-size 3M
