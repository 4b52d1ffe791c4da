# shellcheck shell=bash
# SPDX-License-Identifier: MIT
#
# lib.sh - helpers shared by the kvfs integration tests: one daemon on a private mount.
#
# What every shell test shares (messages, the cleanup core, assert_*, check, json_get...) is in
# tests/lib/common.sh, sourced here; this file adds the daemon and the kvtest.py assertions.
#
# Every test is a bash script that sources this file, calls kvfs_setup (checks prerequisites,
# makes a private work directory, installs the cleanup trap) and usually kvfs_start (mounts a
# fresh kvfs on WORK/mnt with its metadata in WORK/data). A test fails by exiting non-zero:
# the assert_* helpers print what was expected and what was seen, then exit 1. A missing
# prerequisite exits 77, which meson reports as SKIP, with the reason on stdout.
#
# Cleanup runs on EXIT, INT and TERM, also after a failure: it stops only the daemon and the
# helper processes this test started (by pid), unmounts WORK/mnt (fusermount3 -u, then
# umount -l; lib_teardown below), and removes WORK unless something is still mounted under it.
# On failure it prints the tail of the daemon log. KVFS_KEEP=1 keeps WORK for inspection.
#
# Environment (set by tests/integration/meson.build; defaults let a script run by hand from
# a source tree built in ./build):
#   KVFS_BIN	the kvfs daemon		KVFSCTL_BIN	the kvfsctl tool
#   KVFS_SRC	the source tree		KVFS_DRAM	arena size for kvfs_start (default 512M)
#   KVFS_START_TIMEOUT	seconds to wait for the mount (default 10)

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$LIB_DIR/../lib/common.sh"
: "${KVFS_DRAM:=512M}"
: "${KVFS_START_TIMEOUT:=10}"
KVFS_PID=""	# the daemon this test started, or empty
META_URL=""	# kvfs-meta of this test (KVFS_VIA_META=1), or empty
META_PID=""
KVFS_STATUS=""	# exit status of the last daemon stopped with kvfs_stop
LIB_SIGRESET=()	# command prefix that starts a program with default SIGINT/SIGQUIT handling
MNT=""
DATA=""
KVFS_LOG=""

# lib_teardown: cleanup's part for this suite (see common.sh): stop the daemon (SIGTERM, then
# SIGKILL after 10 s; the test fails if it died, ignored SIGTERM or exited non-zero), unmount
# MNT, and on failure print the tail of the daemon log.
lib_teardown() {
	local i st
	if [ -n "$KVFS_PID" ] && ! pid_alive "$KVFS_PID"; then
		st=0
		wait "$KVFS_PID" 2>/dev/null || st=$?
		log "cleanup: kvfs (pid $KVFS_PID) died during the test with status $st"
		lib_failed
	elif [ -n "$KVFS_PID" ]; then
		kill -TERM "$KVFS_PID" 2>/dev/null
		for i in $(seq 100); do
			pid_alive "$KVFS_PID" || break
			sleep 0.1
		done
		if pid_alive "$KVFS_PID"; then
			log "cleanup: kvfs (pid $KVFS_PID) ignored SIGTERM for 10 s, sending SIGKILL"
			kill -KILL "$KVFS_PID" 2>/dev/null
			lib_failed
		fi
		st=0
		wait "$KVFS_PID" 2>/dev/null || st=$?
		if [ "$st" -ne 0 ]; then
			log "cleanup: kvfs (pid $KVFS_PID) exited with status $st after SIGTERM"
			lib_failed
		fi
	fi
	[ -n "$MNT" ] && lib_unmount "$MNT"
	if lib_failing && [ -n "$KVFS_LOG" ] && [ -s "$KVFS_LOG" ]; then
		log "---- last 40 lines of the daemon log ($KVFS_LOG)"
		tail -n 40 "$KVFS_LOG" | sed 's/^/    /'
		log "----"
	fi
}

# kvfs_setup [TOOL...]: check prerequisites (root, /dev/fuse, the binaries, fusermount3,
# python3 and the given tools), create WORK, MNT, DATA, KVFS_LOG and install the cleanup trap.
# The current directory becomes WORK.
kvfs_setup() {
	require_root "mounts FUSE, reads /proc of the daemon"
	require_fuse
	require_tools fusermount3 python3 stat timeout awk env "$@"
	[ -x "$KVFS_BIN" ] || skip "kvfs binary not found at '$KVFS_BIN' (set KVFS_BIN)"
	[ -x "$KVFSCTL_BIN" ] || skip "kvfsctl binary not found at '$KVFSCTL_BIN' (set KVFSCTL_BIN)"

	if env --default-signal=INT true 2>/dev/null; then
		LIB_SIGRESET=(env "--default-signal=INT,QUIT")
	else # coreutils < 8.31 (python ignores SIGPIPE and SIGXFSZ itself: reset those too)
		LIB_SIGRESET=(python3 -c 'import os, signal, sys
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(s, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])')
	fi

	lib_work kvfs-it
	MNT=$WORK/mnt
	DATA=$WORK/data
	KVFS_LOG=$WORK/kvfs.log
	mkdir -p "$MNT" "$DATA"
	log "work dir $WORK, kvfs $KVFS_BIN"
	[ "${KVFS_VIA_META:-0}" = 1 ] && meta_start
	return 0
}

# meta_start: with KVFS_VIA_META=1 the same cases run against a real kvfs-meta on a free
# loopback port (its store in $WORK/meta): kvfs_start then mounts with --meta.
meta_start() {
	local port i
	[ -x "${KVFS_META_BIN:-}" ] || skip "kvfs-meta not found at '${KVFS_META_BIN:-}'"
	port=$(free_port)
	"$KVFS_META_BIN" --listen "127.0.0.1:$port" --data "$WORK/meta" >>"$WORK/kvfs-meta.log" 2>&1 &
	META_PID=$!
	bg_register "$META_PID"
	META_URL=http://127.0.0.1:$port
	for i in $(seq 100); do
		curl -sf "$META_URL/healthz" >/dev/null 2>&1 && break
		pid_alive "$META_PID" || fail "kvfs-meta exited at start: $(cat "$WORK/kvfs-meta.log")"
		sleep 0.05
	done
	log "kvfs-meta pid $META_PID at $META_URL"
}

# kvfs_start [ARG...]: start the daemon in the foreground (as a background job of this shell)
# on MNT with DATA, the pools kv and mamba and the extra ARGs, then wait until the mount
# answers. Fails with the daemon log if it exits or does not mount within KVFS_START_TIMEOUT.
kvfs_start() {
	[ -z "$KVFS_PID" ] || fail "kvfs_start: daemon $KVFS_PID is already running"
	mkdir -p "$DATA"
	is_mounted "$MNT" || mkdir -p "$MNT" # a dead mount left by kill -9 cannot be stat'ed
	echo "---- $(date +%T.%3N) start: --dram $KVFS_DRAM $*" >>"$KVFS_LOG"
	log "start kvfs -f --dram $KVFS_DRAM --data \$WORK/data --pool kv --pool mamba $* \$WORK/mnt"
	# A background job of a non-interactive shell starts with SIGINT and SIGQUIT ignored, and
	# libfuse keeps an ignored disposition: restore the defaults, as a terminal would have them.
	"${LIB_SIGRESET[@]}" \
		"$KVFS_BIN" -f --dram "$KVFS_DRAM" --data "$DATA" --pool kv --pool mamba \
		${META_URL:+--meta "$META_URL"} "$@" "$MNT" >>"$KVFS_LOG" 2>&1 &
	KVFS_PID=$!
	kvfs_wait_mounted
}

# kvfs_wait_mounted: wait until MNT is a live kvfs mount served by KVFS_PID.
kvfs_wait_mounted() {
	local deadline st=0
	deadline=$(($(date +%s%N) + KVFS_START_TIMEOUT * 1000000000))
	while :; do
		if ! pid_alive "$KVFS_PID"; then
			wait "$KVFS_PID" || st=$?
			KVFS_PID=""
			fail "kvfs exited with status $st before the mount came up (log below)"
		fi
		# read, not stat: a dead mount left by kill -9 may still answer stat from the cache
		if is_mounted "$MNT" && timeout 5 cat "$MNT/.kvfs/stats" >/dev/null 2>&1; then
			break
		fi
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "kvfs (pid $KVFS_PID) did not mount $MNT within ${KVFS_START_TIMEOUT}s"
		sleep 0.05
	done
	[ "$(mount_type "$MNT")" = fuse.kvfs ] ||
		log "note: $MNT has fstype '$(mount_type "$MNT")', expected fuse.kvfs"
	log "kvfs pid $KVFS_PID is serving $MNT"
}

# kvfs_stop [SIGNAL] [TIMEOUT]: signal the daemon (default TERM) and wait up to TIMEOUT seconds
# (default 10) for it to exit. Sets KVFS_STATUS to its exit status (128+N when killed by
# signal N). Fails if it does not exit in time.
kvfs_stop() {
	local sig=${1:-TERM} t=${2:-10} deadline
	[ -n "$KVFS_PID" ] || fail "kvfs_stop: no daemon running"
	kill -"$sig" "$KVFS_PID"
	deadline=$(($(date +%s%N) + t * 1000000000))
	while pid_alive "$KVFS_PID"; do
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "kvfs (pid $KVFS_PID) still runs ${t}s after SIG$sig"
		sleep 0.05
	done
	KVFS_STATUS=0
	wait "$KVFS_PID" || KVFS_STATUS=$?
	log "kvfs pid $KVFS_PID exited with status $KVFS_STATUS after SIG$sig"
	KVFS_PID=""
}

# kvfs_restart [ARG...]: stop with SIGTERM (must exit 0 and unmount), start again on the same
# DATA and MNT with ARGs.
kvfs_restart() {
	kvfs_stop TERM
	assert_eq 0 "$KVFS_STATUS" "exit status of kvfs after SIGTERM"
	assert_eq 0 "$(mount_count "$MNT")" "mount entries for $MNT after a clean stop"
	kvfs_start "$@"
}

# ---------------------------------------------------------------------------------------------
# Assertions through kvtest.py (the generic ones are in common.sh)

# assert_refused WHAT OP ARG...: the kvtest.py operation must fail (any errno); prints it.
assert_refused() {
	local what=$1 got
	shift
	got=$(kvpy try "$@")
	[ "$got" != OK ] || fail "$what: '$*' succeeded but should fail"
	log "ok: $what -> $got"
}

# assert_exists PATH / assert_missing PATH (missing means lstat fails with ENOENT)
assert_exists() {
	local r
	r=$(kvpy try lstat "$1")
	[ "$r" = OK ] || fail "expected $1 to exist, lstat gave $r"
}

assert_missing() {
	local r
	r=$(kvpy try lstat "$1")
	[ "$r" = ENOENT ] || fail "expected $1 to be absent (ENOENT), lstat gave $r"
}

# assert_errno EXPECTED OP ARG...: run one syscall through kvtest.py and compare its errno
# name ("OK" on success). EXPECTED may list alternatives: "EPERM|EOPNOTSUPP".
assert_errno() {
	local want=$1 got
	shift
	got=$(kvpy try "$@")
	case "|$want|" in
	*"|$got|"*) log "ok: $* -> $got" ;;
	*) fail "$*: expected $want, got $got" ;;
	esac
}

# assert_sha PATH SHA256 WHAT
assert_sha() {
	local got
	got=$(kvpy sha "$1") || fail "$3: cannot read $1: $got"
	[ "$got" = "$2" ] || fail "$3: content of $1 changed (sha256 $got, expected $2)"
}

# ---------------------------------------------------------------------------------------------
# Helpers

# kvpy ARGS...: run the syscall helper (tests/integration/kvtest.py).
kvpy() { python3 "$LIB_DIR/kvtest.py" "$@"; }

# kvctl ARGS...: run kvfsctl against this test's mount.
kvctl() { "$KVFSCTL_BIN" -m "$MNT" "$@"; }

# stats_snap FILE: copy MNT/.kvfs/stats to FILE and check that it is one JSON document.
stats_snap() {
	cat "$MNT/.kvfs/stats" >"$1" || fail "cannot read $MNT/.kvfs/stats"
	python3 -m json.tool "$1" >/dev/null || fail ".kvfs/stats is not valid JSON: $(head -c 400 "$1")"
}

# pool_stat POOL FIELD: FIELD of POOL's entry in .kvfs/stats.
pool_stat() {
	stats_snap "$WORK/.pool_stat.json"
	json_get "$WORK/.pool_stat.json" \
		"[p for p in j['pools'] if p['name'] == '$1'][0]['$2']"
}
