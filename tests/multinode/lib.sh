# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# lib.sh - helpers shared by the kvfs multinode tests.
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
# test started (by pid), then `cluster.sh down` (the daemons it recorded, the mounts with
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
: "${KVFS_SRC:=$(cd "$LIB_DIR/../.." && pwd)}"
: "${KVFS_BIN:=$KVFS_SRC/build/fs/kvfs}"
: "${KVFSCTL_BIN:=$KVFS_SRC/build/tools/kvfsctl}"
: "${KVFS_META_BIN:=$KVFS_SRC/build/metadata/http/kvfs-meta}"
: "${KVFS_BENCH_BIN:=$KVFS_SRC/build/tools/kvfs-bench}"
: "${KVFS_KEEP:=0}"
export KVFS_BIN KVFSCTL_BIN KVFS_META_BIN KVFS_BENCH_BIN
CLUSTER=$KVFS_SRC/scripts/cluster.sh
TEST_NAME=$(basename "$0" .sh)
LIB_MAIN_PID=$$
LIB_PIDS=()	# background helpers this test started (killed at cleanup)
LIB_FAILED=()	# checks that failed (see check)
WORK=""

set -Eeuo pipefail
umask 022
export LC_ALL=C

# ---------------------------------------------------------------------------------------------
# Messages

log() { printf '%s [%s] %s\n' "$(date +%T.%3N)" "$TEST_NAME" "$*"; }
step() { log "== $*"; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

lib_on_err() {
	local st=$1 cmd=${2%%$'\n'*} i where=""
	[ "${BASHPID:-$$}" = "$LIB_MAIN_PID" ] || return 0
	for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
		where+=" <- $(basename "${BASH_SOURCE[i]}"):${BASH_LINENO[i - 1]}"
		[ "${FUNCNAME[i]:-main}" != main ] || break
	done
	log "FAIL: command failed with status $st: $cmd (at${where# <-})"
}

# ---------------------------------------------------------------------------------------------
# Processes, the cluster

pid_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# bg_register PID: have cleanup kill PID (a helper started with &) if it still runs.
bg_register() { LIB_PIDS+=("$1"); }

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
		if [ "$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $20}')" = "$start" ]; then
			continue
		fi
		log "tearing down a cluster left by a killed test in $d"
		KVFS_CLUSTER_DIR=$d/cluster "$CLUSTER" down || true
		if ! awk -v w="$d" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
			rm -rf --one-file-system "$d"
		fi
	done
}

lib_cleanup() {
	local rc=$? p f
	[ "${BASHPID:-$$}" = "$LIB_MAIN_PID" ] || return "$rc"
	trap - EXIT INT TERM ERR
	set +e
	if [ "${#LIB_FAILED[@]}" -gt 0 ]; then
		log "FAIL: ${#LIB_FAILED[@]} check(s) failed: $(printf '[%s] ' "${LIB_FAILED[@]}")"
		[ "$rc" -ne 0 ] || rc=1
	fi
	cd / || true
	for p in "${LIB_PIDS[@]}"; do
		pid_alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	for p in "${LIB_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -n "$WORK" ] && [ -d "$WORK/cluster" ]; then
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
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if awk -v w="$WORK/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
			log "cleanup: something is still mounted under $WORK; leaving it in place"
		elif [ "$KVFS_KEEP" = 1 ]; then
			log "cleanup: keeping $WORK (KVFS_KEEP=1)"
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	case $rc in
	0) log "PASS" ;;
	77) ;;
	*) log "exit status $rc" ;;
	esac
	exit "$rc"
}

require_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip "required tool '$t' is not installed"
	done
}

# mn_setup [TOOL...]: check prerequisites, create WORK and install the cleanup trap.
# shellcheck disable=SC2120 # the tools are optional arguments
mn_setup() {
	local b
	[ "$(id -u)" -eq 0 ] || skip "must run as root (network namespaces, FUSE mounts)"
	[ -c /dev/fuse ] || skip "/dev/fuse is missing"
	if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then skip "/dev/fuse is not accessible"; fi
	grep -qw fuse /proc/filesystems || skip "the kernel has no fuse filesystem"
	require_tools ip nsenter fusermount3 python3 curl timeout awk "$@"
	ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work here"
	for b in "$KVFS_BIN" "$KVFSCTL_BIN" "$KVFS_META_BIN"; do
		[ -x "$b" ] || skip "binary not found at '$b' (set KVFS_BIN, KVFSCTL_BIN, KVFS_META_BIN)"
	done
	[ -x "$CLUSTER" ] || skip "no $CLUSTER"
	lib_reap_stale
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-mn-$TEST_NAME.XXXXXX")
	echo "$$ $(sed 's/^.*) //' "/proc/$$/stat" | awk '{print $20}')" >"$WORK/owner"
	export KVFS_CLUSTER_DIR=$WORK/cluster
	export KVFS_CLUSTER_PREFIX=kvmn$$
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'lib_on_err $? "$BASH_COMMAND"' ERR
	cd "$WORK"
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
# Assertions

assert_eq() { [ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"; }
assert_ne() { [ "$1" != "$2" ] || fail "$3: expected anything but '$1'"; }
assert_ge() { [ "$1" -ge "$2" ] || fail "$3: expected >= $2, got $1"; }
assert_le() { [ "$1" -le "$2" ] || fail "$3: expected <= $2, got $1"; }
assert_match() {
	printf '%s\n' "$2" | grep -Eq -- "$1" || fail "$3: '$2' does not match /$1/"
}

# check WHAT CMD...: run CMD; on failure report it and go on, failing the test at the end.
check() {
	local what=$1 st=0
	shift
	"$@" || st=$?
	if [ "$st" -ne 0 ]; then
		log "FAIL: $what (status $st); continuing"
		LIB_FAILED+=("$what")
	fi
	return 0
}

# ---------------------------------------------------------------------------------------------
# Helpers

# json_get FILE EXPR: EXPR (Python, with the JSON of FILE bound to j)
json_get() {
	python3 - "$1" "$2" <<-'EOF'
	import json, sys
	with open(sys.argv[1]) as f:
	    j = json.load(f)
	v = eval(sys.argv[2], {"j": j})
	print(json.dumps(v) if isinstance(v, (bool, type(None), dict, list)) else v)
	EOF
}

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

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }
