# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# lib.sh - helpers shared by the kvfs multinode tests: a cluster in network namespaces.
#
# What every shell test shares (messages, the cleanup core, assert_*, check, json_get...) is in
# tests/lib/common.sh, sourced here; this file adds the cluster and the per-node helpers.
#
# Every test is a bash script that sources this file, calls mn_setup (checks prerequisites,
# makes a private work directory, installs the cleanup trap) and mn_up N (builds a cluster of
# N nodes with scripts/cluster.sh: kvfs-meta and one kvfs per node, each in its own network
# namespace). `on NODE CMD...` runs CMD in that node's namespace with KVFS_MNT set to its
# mount point; `mnt NODE` prints the mount point. A test fails by exiting non-zero: the
# assert_* helpers print what was expected and what was seen, then exit 1. A missing
# prerequisite exits 77, which meson reports as SKIP, with the reason on stdout.
#
# Isolation: each test has its own work directory (WORK, mktemp under /tmp), its cluster state
# in WORK/cluster and a namespace prefix unique to the test process (kvmn<pid>), so two tests,
# or a test and a hand-made cluster, cannot collide. The 10.99.0.0/24 subnet exists only inside
# each cluster's namespaces.
#
# Cleanup runs on EXIT, INT and TERM, also after a failure: it kills the helper processes this
# test started (by pid), then (lib_teardown below) `cluster.sh down` (the daemons it recorded, the mounts with
# fusermount3 -u then umount -l, the namespaces), and removes WORK unless something is still
# mounted under it. On failure it prints the tail of every daemon log. KVFS_KEEP=1 keeps WORK.
# A cluster left behind by an earlier run of a multinode test that was killed with SIGKILL
# (its owner pid gone) is torn down by the next mn_setup.
#
# Environment (set by tests/multinode/meson.build; defaults let a script run by hand from a
# source tree built in ./build):
#   KVFS_BIN KVFSCTL_BIN KVFS_META_BIN KVFS_BENCH_BIN   the binaries
#   KVFS_SRC                                            the source tree
# and the cluster.sh variables (KVFS_CLUSTER_DRAM, KVFS_CLUSTER_DRAM_I, KVFS_CLUSTER_ARGS,
# KVFS_META_ARGS) to shape the cluster before mn_up.

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$LIB_DIR/../lib/common.sh"
: "${KVFS_META_BIN:=$KVFS_SRC/build/metadata/http/kvfs-meta}"
: "${KVFS_BENCH_BIN:=$KVFS_SRC/build/tools/kvfs-bench}"
export KVFS_BIN KVFSCTL_BIN KVFS_META_BIN KVFS_BENCH_BIN
CLUSTER=$KVFS_SRC/scripts/cluster.sh

# ---------------------------------------------------------------------------------------------
# Processes, the cluster

# cl ARGS...: scripts/cluster.sh on this test's cluster.
cl() { "$CLUSTER" "$@"; }

# on NODE CMD...: run CMD in NODE's namespace (KVFS_MNT is its mount point).
on() { "$CLUSTER" exec "$@"; }

# mnt NODE: node NODE's mount point.
mnt() { echo "$KVFS_CLUSTER_DIR/n$1/mnt"; }

# mnpy ARGS...: the test helper (tests/multinode/mn.py), in the current namespace.
mnpy() { python3 "$LIB_DIR/mn.py" "$@"; }

# on_py NODE ARGS...: the test helper in NODE's namespace.
on_py() {
	local node=$1
	shift
	on "$node" python3 "$LIB_DIR/mn.py" "$@"
}

lib_reap_stale() {
	local d pid start
	for d in "${TMPDIR:-/tmp}"/kvfs-mn-*/; do
		if [ ! -f "$d/owner" ] || [ ! -f "$d/cluster/prefix" ]; then continue; fi
		read -r pid start <"$d/owner" || continue
		[ "$(proc_start "$pid")" != "$start" ] || continue
		log "tearing down a cluster left by a killed test in $d"
		KVFS_CLUSTER_DIR=$d/cluster "$CLUSTER" down || true
		mounted_under "$d" || rm -rf --one-file-system "$d"
	done
}

# lib_teardown: cleanup's part for this suite (see common.sh): reap the killed helpers, on
# failure print the cluster's status and the tail of every daemon log, then `cluster.sh down`.
lib_teardown() {
	local p f
	for p in "${LIB_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if lib_failing && [ -n "$WORK" ] && [ -d "$WORK/cluster" ]; then
		"$CLUSTER" status 2>/dev/null | sed 's/^/    /'
		for f in "$WORK"/cluster/meta/log "$WORK"/cluster/n*/log; do
			[ -s "$f" ] || continue
			log "---- last 25 lines of ${f#"$WORK"/}"
			tail -n 25 "$f" | sed 's/^/    /'
		done
		log "----"
	fi
	if [ -n "$WORK" ] && [ -d "$WORK/cluster" ]; then
		# keep the logs when asked: copy them out before down removes the state directory
		[ "$KVFS_KEEP" = 1 ] && cp -r "$WORK/cluster" "$WORK/cluster-kept" 2>/dev/null
		"$CLUSTER" down || log "cleanup: cluster.sh down failed"
	fi
}

# mn_setup [TOOL...]: check prerequisites, create WORK and install the cleanup trap.
# shellcheck disable=SC2120 # the tools are optional arguments
mn_setup() {
	local b
	require_root "network namespaces, FUSE mounts"
	require_fuse
	require_tools ip nsenter fusermount3 python3 curl timeout awk "$@"
	ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work here"
	for b in "$KVFS_BIN" "$KVFSCTL_BIN" "$KVFS_META_BIN"; do
		[ -x "$b" ] || skip "binary not found at '$b' (set KVFS_BIN, KVFSCTL_BIN, KVFS_META_BIN)"
	done
	[ -x "$CLUSTER" ] || skip "no $CLUSTER"
	lib_reap_stale
	lib_work kvfs-mn
	echo "$$ $(proc_start $$)" >"$WORK/owner"
	export KVFS_CLUSTER_DIR=$WORK/cluster
	export KVFS_CLUSTER_PREFIX=kvmn$$
	# a namespace with our name can only be a leftover of a test that had our pid
	[ ! -e "/run/netns/$KVFS_CLUSTER_PREFIX-br" ] ||
		fail "namespace $KVFS_CLUSTER_PREFIX-br already exists"
	log "work dir $WORK, namespaces $KVFS_CLUSTER_PREFIX-*, kvfs $KVFS_BIN"
	# the namespace's "ip netns add" needs a netns-capable kernel: try one before the cluster
	if ! ip netns add "$KVFS_CLUSTER_PREFIX-probe" 2>/dev/null; then
		skip "cannot create a network namespace (ip netns add failed)"
	fi
	ip netns del "$KVFS_CLUSTER_PREFIX-probe"
}

# mn_up N [--bench]: the cluster; fails with the daemon logs if it does not come up.
mn_up() {
	local st=0
	log "cluster.sh up $* (dram ${KVFS_CLUSTER_DRAM:-256M}${KVFS_META_ARGS:+, meta: $KVFS_META_ARGS})"
	cl up "$@" >"$WORK/up.log" 2>&1 || st=$?
	if [ "$st" -ne 0 ]; then
		sed 's/^/    /' "$WORK/up.log"
		fail "cluster.sh up $* exited with status $st"
	fi
	sed 's/^/    /' "$WORK/up.log"
}

# ---------------------------------------------------------------------------------------------
# Helpers (the assertions and json_get are in common.sh)

# node_stat NODE EXPR: EXPR over node NODE's /.kvfs/stats (e.g. 'j["node"]["incarnation"]')
node_stat() {
	local f=$WORK/.stats.$1.json
	timeout 10 cat "$(mnt "$1")/.kvfs/stats" >"$f" || fail "cannot read node $1's .kvfs/stats"
	json_get "$f" "$2"
}

# xattr NODE PATH NAME: user.kvfs.NAME of PATH (relative to the mount) as seen from NODE
xattr() {
	on "$1" getfattr --only-values -n "user.kvfs.$3" "$(mnt "$1")/$2" 2>/dev/null
}

