# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# common.sh - what every kvfs shell test shares: messages, the ERR trap, process and mount
# helpers, the cleanup core, prerequisites, assertions and JSON helpers.
#
# Sourced by tests/integration/lib.sh and tests/multinode/lib.sh, never by a test directly:
# each suite's lib.sh keeps only what is its own (the single daemon of kvfs_start, the cluster
# of mn_up) and hooks it into the cleanup by defining lib_teardown. Sourcing sets the shell
# options (-Eeuo pipefail), the umask and LC_ALL=C, and the defaults of KVFS_SRC, KVFS_BIN,
# KVFSCTL_BIN and KVFS_KEEP; it starts nothing.
#
# The life of a test: lib_work PREFIX makes WORK (mktemp under TMPDIR), installs the traps and
# enters it. On EXIT, INT and TERM, also after a failure, lib_cleanup (in the test's own shell
# only) reports the failed checks, kills the helpers registered with bg_register (by pid), calls
# the suite's lib_teardown (which may raise LIB_RC, e.g. when a daemon died, and prints the
# daemon logs on failure), then removes WORK unless something is still mounted under it or
# KVFS_KEEP=1, and exits with LIB_RC. A missing prerequisite exits 77 (skip), which meson
# reports as SKIP, with the reason on stdout.

: "${KVFS_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${KVFS_BIN:=$KVFS_SRC/build/fs/kvfs}"
: "${KVFSCTL_BIN:=$KVFS_SRC/build/tools/kvfsctl}"
: "${KVFS_KEEP:=0}"
TEST_NAME=$(basename "$0" .sh)
LIB_MAIN_PID=$$
LIB_PIDS=()	# background helpers this test started (killed at cleanup)
LIB_FAILED=()	# checks that failed (see check)
LIB_RC=0	# the exit status lib_cleanup ends with (lib_teardown may raise it)
WORK=""

set -Eeuo pipefail
umask 022
export LC_ALL=C

# ---------------------------------------------------------------------------------------------
# Messages

log() { printf '%s [%s] %s\n' "$(date +%T.%3N)" "$TEST_NAME" "$*"; }
step() { log "== $*"; }
skip() { log "SKIP: $*"; exit 77; }

# fail MSG...: print the failure and exit 1 (cleanup runs from the EXIT trap).
fail() {
	log "FAIL: $*"
	exit 1
}

# ERR trap: name the failed command and where it ran (once, in the test's own shell).
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
# Processes and mounts

# pid_alive PID: true while PID exists and is not a zombie.
pid_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# proc_start PID: the start time of PID (field 22 of /proc/PID/stat), to recognise it later;
# empty when PID does not exist.
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# bg_register PID: have cleanup kill PID (a helper started with &) if it still runs.
bg_register() { LIB_PIDS+=("$1"); }

# mount_count DIR: how many entries /proc/mounts has for DIR (a stale FUSE mount counts).
mount_count() {
	awk -v d="$1" '$2 == d { n++ } END { print n + 0 }' /proc/mounts
}

is_mounted() { [ "$(mount_count "$1")" -gt 0 ]; }

# mount_type DIR: the fstype of the top entry for DIR in /proc/mounts.
mount_type() {
	awk -v d="$1" '$2 == d { t = $3 } END { print t }' /proc/mounts
}

# mounted_under DIR/: true when anything is mounted below DIR (give it a trailing slash).
mounted_under() {
	awk -v w="$1" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts
}

# lib_unmount DIR: unmount every layer mounted on DIR (never fails).
lib_unmount() {
	local d=$1 i
	for i in 1 2 3 4 5; do
		is_mounted "$d" || return 0
		fusermount3 -u "$d" 2>/dev/null || umount "$d" 2>/dev/null ||
			umount -l "$d" 2>/dev/null || true
		[ "$i" -lt 3 ] || sleep 0.2
	done
	is_mounted "$d" && log "warning: $d is still mounted"
	return 0
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
# Set-up and cleanup

# require_tools TOOL...: skip unless every TOOL is on PATH.
require_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || skip "required tool '$t' is not installed"
	done
}

# require_root WHY: skip unless running as root; WHY says what needs it.
require_root() {
	[ "$(id -u)" -eq 0 ] || skip "must run as root ($1)"
}

# require_fuse: skip unless /dev/fuse is usable and the kernel has the fuse filesystem.
require_fuse() {
	[ -c /dev/fuse ] || skip "/dev/fuse is missing"
	if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then skip "/dev/fuse is not accessible"; fi
	grep -qw fuse /proc/filesystems || skip "the kernel has no fuse filesystem"
}

# lib_work PREFIX: create WORK (TMPDIR/PREFIX-TEST.XXXXXX), install the cleanup traps and make
# WORK the current directory.
lib_work() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1-$TEST_NAME.XXXXXX")
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'lib_on_err $? "$BASH_COMMAND"' ERR
	cd "$WORK"
}

# lib_failed: make the test fail at cleanup even if it had passed until then.
lib_failed() { [ "$LIB_RC" -ne 0 ] || LIB_RC=1; }

# lib_cleanup: the EXIT trap (see the top of this file). The suite's lib_teardown runs with
# `set +e`, after the helpers are killed and before WORK goes; it may call lib_failed.
lib_cleanup() {
	local rc=$? p
	[ "${BASHPID:-$$}" = "$LIB_MAIN_PID" ] || return "$rc"
	trap - EXIT INT TERM ERR
	set +e
	LIB_RC=$rc
	if [ "${#LIB_FAILED[@]}" -gt 0 ]; then
		log "FAIL: ${#LIB_FAILED[@]} check(s) failed: $(printf '[%s] ' "${LIB_FAILED[@]}")"
		lib_failed
	fi
	cd / || true
	for p in "${LIB_PIDS[@]}"; do
		pid_alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	lib_teardown
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if mounted_under "$WORK/"; then
			log "cleanup: something is still mounted under $WORK; leaving it in place"
		elif [ "$KVFS_KEEP" = 1 ]; then
			log "cleanup: keeping $WORK (KVFS_KEEP=1)"
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	case $LIB_RC in
	0) log "PASS" ;;
	77) ;;
	*) log "exit status $LIB_RC" ;;
	esac
	exit "$LIB_RC"
}

# lib_failing: true when the test is failing (LIB_RC neither 0 nor 77), for lib_teardown to
# decide whether to print the daemon logs.
lib_failing() { [ "$LIB_RC" -ne 0 ] && [ "$LIB_RC" -ne 77 ]; }

# ---------------------------------------------------------------------------------------------
# Assertions. Each prints what it checked and exits 1 on mismatch.

# assert_eq EXPECTED ACTUAL WHAT
assert_eq() {
	[ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}

assert_ne() {
	[ "$1" != "$2" ] || fail "$3: expected anything but '$1'"
}

# assert_ge A B WHAT: A >= B (integers)
assert_ge() {
	[ "$1" -ge "$2" ] || fail "$3: expected >= $2, got $1"
}

# assert_le A B WHAT: A <= B (integers)
assert_le() {
	[ "$1" -le "$2" ] || fail "$3: expected <= $2, got $1"
}

# assert_match REGEX STRING WHAT (extended regex, grep -E)
assert_match() {
	printf '%s\n' "$2" | grep -Eq -- "$1" || fail "$3: '$2' does not match /$1/"
}

assert_nomatch() {
	if printf '%s\n' "$2" | grep -Eq -- "$1"; then
		fail "$3: '$2' unexpectedly matches /$1/"
	fi
}

# check WHAT CMD...: run CMD; on failure report it and go on, failing the test at the end.
# For independent workloads, so that one failure does not hide the next.
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

# assert_ok WHAT CMD...: CMD must succeed (its output is shown on failure).
assert_ok() {
	local what=$1 out st=0
	shift
	out=$("$@" 2>&1) || st=$?
	[ "$st" -eq 0 ] || fail "$what: '$*' exited $st: $out"
}

# assert_fails WHAT CMD...: CMD must fail.
assert_fails() {
	local what=$1 out st=0
	shift
	out=$("$@" 2>&1) || st=$?
	[ "$st" -ne 0 ] || fail "$what: '$*' succeeded but should fail (output: $out)"
}

# ---------------------------------------------------------------------------------------------
# Helpers

# json_get FILE EXPR: print the Python expression EXPR evaluated with the JSON in FILE bound
# to j (e.g. 'j["node"]["arena_bytes"]'). Booleans print as true/false, None as null.
json_get() {
	python3 - "$1" "$2" <<-'EOF'
	import json, sys
	with open(sys.argv[1]) as f:
	    j = json.load(f)
	v = eval(sys.argv[2], {"j": j})
	print(json.dumps(v) if isinstance(v, (bool, type(None), dict, list)) else v)
	EOF
}

# now: seconds since the epoch with nanoseconds; since T: seconds elapsed since T (3 decimals)
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }'; }

# size_bytes SIZE: 64K -> 65536 (K, M, G, T are powers of 1024)
size_bytes() { numfmt --from=iec "$1"; }
