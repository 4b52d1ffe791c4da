#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# cluster.sh - a kvfs cluster of N nodes on this one machine, in network namespaces.
#
# Topology (all of it inside namespaces; the root namespace gets no link, route or address):
#
#   netns PREFIX-br     bridge br0, and the bridge end of every veth pair (v-meta, v-n1, ...)
#   netns PREFIX-meta   eth0 10.99.0.1/24        kvfs-meta listens on 10.99.0.1:9300
#   netns PREFIX-nI     eth0 10.99.0.(10+I)/24   node I (1..N): 10.99.0.11, .12, ...
#                                                kvfs data port 9400, kvfs-bench xfer 9500,
#                                                iperf3 5201; mounts at DIR/nI/mnt
#
# 10.99.0.0/24 is a private test subnet that exists only inside these namespaces: none of them
# has a route out, so no traffic leaves the machine. Processes join a node's network namespace
# with nsenter --net only, so they share the root mount namespace: a FUSE mount made by a node
# is visible to `exec` on any node and to the host, as on a real cluster of separate mounts.
# Two clusters can run side by side with different KVFS_CLUSTER_DIR and KVFS_CLUSTER_PREFIX
# (the subnet is private to each cluster's namespaces).
#
# What runs: kvfs-meta in PREFIX-meta (state in DIR/meta/data), and on every node
#   kvfs -f --meta http://10.99.0.1:9300 --node-addr 10.99.0.(10+I):9400 --data DIR/nI/data
#        --dram SIZE --pool kv DIR/nI/mnt
# (logs in DIR/meta/log and DIR/nI/log). `up` returns once every mount answers a read of
# MNT/.kvfs/stats. A node's data directory keeps its node id, so `restart NODE` brings it back
# as the same node with a new incarnation.
#
# State lives in DIR ($KVFS_CLUSTER_DIR, default /run/kvfs-cluster): the namespace prefix, the
# namespaces created, the processes started (pid, start time and name, so a recycled pid is
# never signalled), the mount points. `down` removes exactly that: the node daemons (SIGTERM,
# then SIGKILL after 10 s), then kvfs-meta and the helpers, anything else still running inside
# our namespaces (started with `exec`), FUSE mounts (fusermount3 -u, falling back to
# umount -l), then the namespaces, which takes the veths and the bridge with them. `up` undoes
# itself on failure.
#
# Usage: scripts/cluster.sh COMMAND
#   up N [--bench]     build N nodes (1..200) and a metadata namespace, start kvfs-meta and a
#                      kvfs per node; --bench also starts `kvfs-bench xfer --server` on
#                      IP:9500 and `iperf3 -s` on IP:5201 on every node
#   down               tear everything down (safe to repeat; a no-op when nothing is up)
#   exec NODE CMD...   run CMD in node NODE's namespace (NODE: 1..N or meta) with KVFS_MNT set
#                      to that node's mount point, KVFS_NODE and KVFS_NODE_ADDR to its id and
#                      IP, KVFS_META_URL to the metadata service
#   kill NODE [SIG]    signal node NODE's kvfs (default TERM) and wait until it has exited;
#                      after KILL its mount is left dead, as a crash leaves it. STOP, CONT,
#                      HUP, USR1, USR2 are sent without waiting (STOP: a hung node)
#   restart NODE       stop node NODE's kvfs if it runs (TERM, then KILL), clear its mount,
#                      start it again on the same data directory and wait for the mount
#   kill-meta [SIG]    signal kvfs-meta (default TERM) and wait until it has exited
#   restart-meta       stop kvfs-meta if it runs, start it again on the same state directory
#   pid NODE|meta      print the pid of that daemon (exit 1 when it does not run)
#   mnt NODE           print node NODE's mount point
#   status             what is up
# Environment:
#   KVFS_CLUSTER_DIR     state directory (default /run/kvfs-cluster)
#   KVFS_CLUSTER_PREFIX  namespace name prefix (default kvfs; `up` records it in DIR, later
#                        commands read it from there)
#   KVFS_BUILD           meson build directory with the binaries (default ./build)
#   KVFS_BIN, KVFS_META_BIN, KVFS_BENCH_BIN   the binaries (default: under KVFS_BUILD)
#   KVFS_CLUSTER_DRAM    arena size of every node (default 256M)
#   KVFS_CLUSTER_DRAM_I  arena size of node I, overriding KVFS_CLUSTER_DRAM (e.g. _1=16M)
#   KVFS_CLUSTER_ARGS    extra kvfs options for every node (split on blanks)
#   KVFS_META_ARGS       extra kvfs-meta options (e.g. "--node-timeout-ms 3000")
#   KVFS_CLUSTER_TOKEN   a cluster token: written to DIR/token (mode 600) and given to kvfs-meta
#                        and every kvfs with --token-file (default: none)
#   KVFS_CLUSTER_TIMEOUT seconds to wait for each daemon to come up (default 30)
#   KVFS_CLUSTER_BENCH   1: start the kvfs-bench servers as with --bench (default 0)
#   KVFS_CLUSTER_IPERF   1: start the iperf3 servers as with --bench (default 0)
#   KVFS_BENCH_ARENA     arena size for kvfs-bench xfer --server (default 256M)
# Needs root, iproute2, util-linux (nsenter), fuse3 (fusermount3), curl.
set -Eeuo pipefail
export LC_ALL=C

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${KVFS_CLUSTER_DIR:-/run/kvfs-cluster}
PREFIX=${KVFS_CLUSTER_PREFIX:-kvfs}
[ -f "$DIR/prefix" ] && PREFIX=$(cat "$DIR/prefix")
BUILD=${KVFS_BUILD:-$SRC/build}
KVFS=${KVFS_BIN:-$BUILD/fs/kvfs}
KVFS_META=${KVFS_META_BIN:-$BUILD/metadata/http/kvfs-meta}
KVFS_BENCH=${KVFS_BENCH_BIN:-$BUILD/tools/kvfs-bench}
SUBNET=10.99.0
META_IP=$SUBNET.1
META_PORT=9300
META_URL=http://$META_IP:$META_PORT
DATA_PORT=9400
export KVFS_DATA_PORT=$DATA_PORT
BENCH_PORT=9500
IPERF_PORT=5201
TIMEOUT=${KVFS_CLUSTER_TIMEOUT:-30}

die() { echo "cluster.sh: $*" >&2; exit 1; }
note() { echo "cluster.sh: $*" >&2; }
usage() { sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//'; }

node_ip() { echo "$SUBNET.$((10 + $1))"; }
ns_of() { if [ "$1" = meta ]; then echo "$PREFIX-meta"; else echo "$PREFIX-n$1"; fi; }
name_of() { if [ "$1" = meta ]; then echo kvfs-meta; else echo "kvfs-n$1"; fi; }
mnt_of() { echo "$DIR/n$1/mnt"; }

# Start time of a pid (field 22 of /proc/PID/stat), to recognise it later.
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# alive PID START: PID still runs (not a zombie) and is the process that started at START.
alive() {
	local st
	[ "$(proc_start "$1")" = "$2" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

is_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; }

# unmount DIR: every layer mounted on DIR (a dead FUSE mount too); never fails.
unmount() {
	local i
	for i in 1 2 3 4 5; do
		is_mounted "$1" || return 0
		fusermount3 -u "$1" 2>/dev/null || umount "$1" 2>/dev/null || umount -l "$1" 2>/dev/null ||
			true
		[ "$i" -lt 3 ] || sleep 0.2
	done
	is_mounted "$1" && note "cannot unmount $1"
	return 0
}

# Programs started from a non-interactive shell in the background ignore SIGINT and SIGQUIT,
# and libfuse keeps an ignored disposition: give them the defaults back.
SIGRESET=()
if env --default-signal=INT true 2>/dev/null; then SIGRESET=(env "--default-signal=INT,QUIT"); fi

# start_proc NAME NS LOG CMD...: run CMD in NS's network namespace in the background, record it.
# nsenter --net does not fork: the pid recorded is CMD's own.
start_proc() {
	local name=$1 ns=$2 log=$3 pid
	shift 3
	"${SIGRESET[@]}" nsenter --net="/run/netns/$ns" -- "$@" >>"$log" 2>&1 </dev/null &
	pid=$!
	echo "$pid $(proc_start "$pid") $name" >>"$DIR/pids"
}

# find_proc NAME: "PID START" of the running process recorded as NAME (the latest), or fail.
find_proc() {
	local pid start name found=""
	[ -f "$DIR/pids" ] || return 1
	while read -r pid start name; do
		[ "$name" = "$1" ] && alive "$pid" "$start" && found="$pid $start"
	done <"$DIR/pids"
	[ -n "$found" ] && echo "$found"
}

# wait_port NS IP PORT: until something listens there (5 s).
wait_port() {
	local i
	for i in $(seq 50); do
		if nsenter --net="/run/netns/$1" -- bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

add_member() { # add_member NAME IP: a namespace with eth0 on the bridge
	local name=$1 ip=$2 ns="$PREFIX-$1"
	ip netns add "$ns"
	echo "$ns" >>"$DIR/namespaces"
	ip -n "$ns" link set lo up
	ip -n "$PREFIX-br" link add "v-$name" type veth peer name eth0 netns "$ns"
	ip -n "$PREFIX-br" link set "v-$name" master br0 up
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set eth0 up
}

# ---- the services -------------------------------------------------------------------------

TOKEN_ARGS=()
[ -f "$DIR/token" ] && TOKEN_ARGS=(--token-file "$DIR/token")

start_meta() {
	local deadline pid start
	[ -x "$KVFS_META" ] || die "no kvfs-meta at $KVFS_META (set KVFS_BUILD or KVFS_META_BIN)"
	mkdir -p "$DIR/meta/data"
	echo "---- $(date +%T.%3N) start" >>"$DIR/meta/log"
	# shellcheck disable=SC2086 # KVFS_META_ARGS is a list of options
	start_proc kvfs-meta "$PREFIX-meta" "$DIR/meta/log" "$KVFS_META" \
		--listen "$META_IP:$META_PORT" --data "$DIR/meta/data" "${TOKEN_ARGS[@]}" \
		${KVFS_META_ARGS:-}
	read -r pid start _ < <(tail -n 1 "$DIR/pids")
	deadline=$((SECONDS + TIMEOUT))
	until nsenter --net="/run/netns/$PREFIX-meta" -- \
		curl -sf -m 2 "$META_URL/healthz" >/dev/null 2>&1; do
		alive "$pid" "$start" || die "kvfs-meta exited at start: $(tail -n 5 "$DIR/meta/log")"
		[ "$SECONDS" -lt "$deadline" ] || die "kvfs-meta did not answer within ${TIMEOUT}s"
		sleep 0.05
	done
}

# start_kvfs I: node I's daemon, then wait until its mount answers.
start_kvfs() {
	local i=$1 ns ip mnt dram var pid start deadline
	ns=$(ns_of "$i")
	ip=$(node_ip "$i")
	mnt=$(mnt_of "$i")
	var=KVFS_CLUSTER_DRAM_$i
	dram=${!var:-${KVFS_CLUSTER_DRAM:-256M}}
	[ -x "$KVFS" ] || die "no kvfs at $KVFS (set KVFS_BUILD or KVFS_BIN)"
	mkdir -p "$DIR/n$i/data"
	unmount "$mnt"
	mkdir -p "$mnt"
	grep -qxF "$mnt" "$DIR/mounts" 2>/dev/null || echo "$mnt" >>"$DIR/mounts"
	echo "---- $(date +%T.%3N) start --dram $dram ${KVFS_CLUSTER_ARGS:-}" >>"$DIR/n$i/log"
	# shellcheck disable=SC2086 # KVFS_CLUSTER_ARGS is a list of options
	start_proc "kvfs-n$i" "$ns" "$DIR/n$i/log" "$KVFS" -f --meta "$META_URL" \
		--node-addr "$ip:$DATA_PORT" --data "$DIR/n$i/data" --dram "$dram" --pool kv \
		"${TOKEN_ARGS[@]}" ${KVFS_CLUSTER_ARGS:-} "$mnt"
	read -r pid start _ < <(tail -n 1 "$DIR/pids")
	deadline=$((SECONDS + TIMEOUT))
	# read, not stat: a dead mount left by kill -9 may still answer stat from the cache
	until is_mounted "$mnt" && timeout 5 cat "$mnt/.kvfs/stats" >/dev/null 2>&1; do
		alive "$pid" "$start" || die "kvfs on node $i exited at start: $(tail -n 5 "$DIR/n$i/log")"
		[ "$SECONDS" -lt "$deadline" ] || die "kvfs on node $i did not mount within ${TIMEOUT}s"
		sleep 0.05
	done
}

start_helpers() { # start_helpers I: the benchmark servers of node I
	local i=$1 ns ip
	ns=$(ns_of "$i")
	ip=$(node_ip "$i")
	if [ "${KVFS_CLUSTER_BENCH:-0}" = 1 ]; then
		[ -x "$KVFS_BENCH" ] || die "no kvfs-bench at $KVFS_BENCH (set KVFS_BUILD)"
		start_proc "kvfs-bench-n$i" "$ns" "$DIR/n$i/bench.log" "$KVFS_BENCH" \
			xfer --server "$ip:$BENCH_PORT" --arena "${KVFS_BENCH_ARENA:-256M}"
		wait_port "$ns" "$ip" "$BENCH_PORT" || die "kvfs-bench on node $i did not start"
	fi
	if [ "${KVFS_CLUSTER_IPERF:-0}" = 1 ]; then
		command -v iperf3 >/dev/null || die "iperf3 is not installed"
		start_proc "iperf3-n$i" "$ns" "$DIR/n$i/iperf3.log" iperf3 -s -B "$ip" -p "$IPERF_PORT"
		wait_port "$ns" "$ip" "$IPERF_PORT" || die "iperf3 on node $i did not start"
	fi
}

# stop NAME [SIG] [SECS]: signal the running process recorded as NAME and wait until it has
# exited (SIGKILL after SECS, default 10). Returns 1 when it was not running.
stop() {
	local name=$1 sig=${2:-TERM} t=${3:-10} pid start i
	read -r pid start < <(find_proc "$name") || return 1
	kill -s "$sig" "$pid" 2>/dev/null || true
	for i in $(seq $((t * 20))); do
		alive "$pid" "$start" || return 0
		sleep 0.05
	done
	note "$name (pid $pid) still runs ${t}s after SIG$sig, killing it"
	kill -KILL "$pid" 2>/dev/null || true
	for i in $(seq 100); do
		alive "$pid" "$start" || return 0
		sleep 0.05
	done
	die "$name (pid $pid) survives SIGKILL"
}

# ---- commands -----------------------------------------------------------------------------

nodes() { [ -f "$DIR/nodes" ] || die "not up (no $DIR/nodes)"; cat "$DIR/nodes"; }

check_node() { # check_node NODE: 1..N
	local n
	n=$(nodes)
	if ! [[ $1 =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$n" ]; then
		die "NODE must be 1..$n, not '$1'"
	fi
}

up_abort() {
	local rc=$?
	trap - EXIT
	if [ "$rc" != 0 ]; then
		note "up failed, tearing down"
		cmd_down
	fi
	exit "$rc"
}

cmd_up() {
	local n=${1:-} i
	shift || true
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
		die "up: N must be 1..200"
	fi
	case ${1:-} in
	--bench) KVFS_CLUSTER_BENCH=1 KVFS_CLUSTER_IPERF=1 ;;
	"") ;;
	*) die "up: unknown option '$1'" ;;
	esac
	[ "$(id -u)" = 0 ] || die "needs root"
	command -v nsenter >/dev/null || die "needs nsenter (util-linux)"
	command -v fusermount3 >/dev/null || die "needs fusermount3 (fuse3)"
	command -v curl >/dev/null || die "needs curl"
	[ -c /dev/fuse ] || die "needs /dev/fuse"
	[ ! -e "$DIR/namespaces" ] || die "already up in $DIR (run: $0 down)"
	[ ! -e "/run/netns/$PREFIX-br" ] || die "namespace $PREFIX-br exists (another cluster?)"
	mkdir -p "$DIR"
	echo "$PREFIX" >"$DIR/prefix"
	if [ -n "${KVFS_CLUSTER_TOKEN:-}" ]; then
		(umask 077 && printf '%s\n' "$KVFS_CLUSTER_TOKEN" >"$DIR/token")
		TOKEN_ARGS=(--token-file "$DIR/token")
	fi
	: >"$DIR/namespaces"
	: >"$DIR/pids"
	: >"$DIR/mounts"
	# die exits without ERR: undo on any non-zero exit until the cluster is complete
	trap up_abort EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	ip netns add "$PREFIX-br"
	echo "$PREFIX-br" >>"$DIR/namespaces"
	ip -n "$PREFIX-br" link set lo up
	ip -n "$PREFIX-br" link add br0 type bridge
	ip -n "$PREFIX-br" link set br0 up
	add_member meta "$META_IP"
	mkdir -p "$DIR/meta"
	for i in $(seq "$n"); do
		add_member "n$i" "$(node_ip "$i")"
		mkdir -p "$DIR/n$i/mnt"
	done
	echo "$n" >"$DIR/nodes"

	start_meta
	for i in $(seq "$n"); do
		start_kvfs "$i"
		start_helpers "$i"
	done
	# The path through the bridge works: the last node reaches the first node's data port.
	wait_port "$PREFIX-n$n" "$(node_ip 1)" "$DATA_PORT" || die "no path n$n -> n1:$DATA_PORT"
	trap - EXIT INT TERM
	echo "cluster up: $n nodes, state in $DIR"
	cmd_status
}

# kill_recorded PASS: every process `up` started, if it is still the same process. Pass
# "nodes" takes the kvfs daemons (they may tell kvfs-meta they leave), "rest" the others.
kill_recorded() {
	local pass=$1 pid start name e alive=() left
	[ -f "$DIR/pids" ] || return 0
	while read -r pid start name; do
		[ -n "$pid" ] || continue
		case $pass:$name in nodes:kvfs-n*) ;; rest:kvfs-n*) continue ;; nodes:*) continue ;; esac
		if alive "$pid" "$start"; then
			kill -TERM "$pid" 2>/dev/null && alive+=("$pid:$start")
		fi
	done <"$DIR/pids"
	for _ in $(seq 100); do
		left=()
		for e in "${alive[@]}"; do
			alive "${e%%:*}" "${e#*:}" && left+=("$e")
		done
		alive=("${left[@]}")
		[ ${#alive[@]} -eq 0 ] && return 0
		sleep 0.1
	done
	for e in "${alive[@]}"; do
		note "pid ${e%%:*} ignored SIGTERM for 10 s, killing"
		kill -KILL "${e%%:*}" 2>/dev/null || true
	done
}

cmd_down() {
	local m ns pid
	trap - ERR
	set +e
	[ -d "$DIR" ] || return 0
	kill_recorded nodes
	kill_recorded rest
	# Anything else running inside our namespaces (started with `exec`) goes too: these
	# namespaces were made by this cluster, so whatever runs there was started through it.
	if [ -f "$DIR/namespaces" ]; then
		while read -r ns; do
			[ -e "/run/netns/$ns" ] || continue
			for pid in $(ip netns pids "$ns" 2>/dev/null); do
				kill -KILL "$pid" 2>/dev/null
			done
		done <"$DIR/namespaces"
	fi
	# Mounts: the recorded ones and any node mount point that is mounted.
	for m in $(cat "$DIR/mounts" 2>/dev/null) "$DIR"/n*/mnt; do
		unmount "$m"
	done
	if [ -f "$DIR/namespaces" ]; then
		while read -r ns; do
			[ -e "/run/netns/$ns" ] && ip netns del "$ns"
		done < <(tac "$DIR/namespaces")
	fi
	if awk -v d="$DIR/" 'index($2, d) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
		note "something is still mounted under $DIR; leaving it"
	else
		rm -rf --one-file-system "$DIR"
	fi
	set -e
}

cmd_exec() {
	local node=${1:-} ns
	shift || true
	[ $# -gt 0 ] || die "exec: no command"
	nodes >/dev/null
	if [ "$node" = meta ]; then
		export KVFS_NODE=meta KVFS_NODE_ADDR=$META_IP
		unset KVFS_MNT
	else
		check_node "$node"
		KVFS_NODE_ADDR=$(node_ip "$node")
		export KVFS_MNT="$DIR/n$node/mnt" KVFS_NODE=$node KVFS_NODE_ADDR
	fi
	export KVFS_META_URL=$META_URL KVFS_CLUSTER_DIR=$DIR
	ns=$(ns_of "$node")
	exec nsenter --net="/run/netns/$ns" -- "$@"
}

cmd_kill() {
	local node=${1:-} sig=${2:-TERM} pid start
	nodes >/dev/null
	[ "$node" = meta ] || check_node "$node"
	case ${sig#SIG} in
	STOP | CONT | TSTP | USR1 | USR2 | HUP) # does not end it: signal, do not wait
		read -r pid start _ < <(find_proc "$(name_of "$node")") ||
			die "$(name_of "$node") is not running"
		kill -s "${sig#SIG}" "$pid"
		;;
	*) stop "$(name_of "$node")" "${sig#SIG}" || die "$(name_of "$node") is not running" ;;
	esac
}

cmd_restart() {
	local node=${1:-}
	nodes >/dev/null
	if [ "$node" = meta ]; then
		stop kvfs-meta TERM || true
		start_meta
		return 0
	fi
	check_node "$node"
	stop "kvfs-n$node" TERM || true
	unmount "$(mnt_of "$node")"
	start_kvfs "$node"
}

cmd_pid() {
	local node=${1:-} pid start
	nodes >/dev/null
	[ "$node" = meta ] || check_node "$node"
	read -r pid start < <(find_proc "$(name_of "$node")") || exit 1
	echo "$pid"
}

cmd_status() {
	local pid start name state
	[ -f "$DIR/nodes" ] || { echo "cluster: down"; return 0; }
	echo "nodes: $(cat "$DIR/nodes")  meta: $META_URL  prefix: $PREFIX  state: $DIR"
	echo "namespaces: $(tr '\n' ' ' <"$DIR/namespaces")"
	while read -r pid start name; do
		state=dead
		alive "$pid" "$start" && state=running
		echo "  $name pid $pid $state"
	done <"$DIR/pids"
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
exec) shift; cmd_exec "$@" ;;
kill) shift; cmd_kill "$@" ;;
restart) shift; cmd_restart "$@" ;;
kill-meta) shift; cmd_kill meta "$@" ;;
restart-meta) cmd_restart meta ;;
pid) shift; cmd_pid "$@" ;;
mnt) shift; check_node "${1:-}"; mnt_of "$1" ;;
status) cmd_status ;;
-h | --help) usage ;;
*) usage >&2; exit 2 ;;
esac
