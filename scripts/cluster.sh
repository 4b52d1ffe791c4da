#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# cluster.sh - a kvfs cluster of N nodes on this one machine, in network namespaces.
#
# Topology (all of it inside namespaces; the root namespace gets no link, route or address):
#
#   netns PREFIX-br     bridge br0, and the bridge end of every veth pair (v-meta, v-n1, ...)
#   netns PREFIX-meta   eth0 10.99.0.1/24        kvfs-meta will listen on 10.99.0.1:9300
#   netns PREFIX-nI     eth0 10.99.0.(10+I)/24   node I (1..N): 10.99.0.11, .12, ...
#                                                its data port 9400, kvfs-bench xfer 9500,
#                                                iperf3 5201; mounts at DIR/nI/mnt
#
# 10.99.0.0/24 is a private test subnet that exists only inside these namespaces: none of them
# has a route out, so no traffic leaves the machine. Processes join a node's network namespace
# with nsenter --net only, so they share the root mount namespace: a FUSE mount made by a node
# is visible to `exec` on any node and to the host, as on a real cluster of separate mounts.
#
# State lives in DIR ($KVFS_CLUSTER_DIR, default /run/kvfs-cluster): the namespaces created, the
# processes started (pid and start time, so a recycled pid is never killed), the mount points.
# `down` removes exactly that: processes (SIGTERM, then SIGKILL after 5 s), anything else still
# running inside our namespaces, FUSE mounts (fusermount3 -u, falling back to umount -l), then
# the namespaces, which takes the veths and the bridge with them. `up` undoes itself on failure.
#
# Usage: scripts/cluster.sh up N | down | exec NODE CMD... | status
#   up N           build N nodes (1..200) and a metadata namespace, start their services
#   down           tear everything down (safe to repeat; a no-op when nothing is up)
#   exec NODE CMD  run CMD in node NODE's namespace (NODE: 1..N or "meta") with KVFS_MNT set
#                  to that node's mount point, KVFS_NODE and KVFS_NODE_ADDR to its id and IP
#   status         what is up
# Environment:
#   KVFS_CLUSTER_DIR     state directory (default /run/kvfs-cluster)
#   KVFS_CLUSTER_PREFIX  namespace name prefix (default kvfs), for two clusters side by side
#   KVFS_BUILD           meson build directory with the binaries (default ./build)
#   KVFS_CLUSTER_BENCH   0 to skip starting `kvfs-bench xfer --server` on every node (default 1)
#   KVFS_CLUSTER_IPERF   0 to skip starting `iperf3 -s` on every node (default 1)
#   KVFS_BENCH_ARENA     arena size for kvfs-bench xfer --server (default 256M)
# Needs root, iproute2, util-linux (nsenter).
set -Eeuo pipefail
export LC_ALL=C

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${KVFS_CLUSTER_DIR:-/run/kvfs-cluster}
PREFIX=${KVFS_CLUSTER_PREFIX:-kvfs}
BUILD=${KVFS_BUILD:-$SRC/build}
SUBNET=10.99.0
META_IP=$SUBNET.1
META_PORT=9300
DATA_PORT=9400 # the kvfs data port, used by the node hook below
export KVFS_DATA_PORT=$DATA_PORT
BENCH_PORT=9500
IPERF_PORT=5201

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//'; }

node_ip() { echo "$SUBNET.$((10 + $1))"; }
ns_of() { if [ "$1" = meta ]; then echo "$PREFIX-meta"; else echo "$PREFIX-n$1"; fi; }

# Start time of a pid (field 22 of /proc/PID/stat), to recognise it later.
proc_start() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# start_proc NAME NS LOG CMD...: run CMD in NS's network namespace in the background, record it.
start_proc() {
	local name=$1 ns=$2 log=$3 pid
	shift 3
	nsenter --net="/run/netns/$ns" -- "$@" >"$log" 2>&1 </dev/null &
	pid=$!
	echo "$pid $(proc_start "$pid") $name" >>"$DIR/pids"
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

# ---- hooks: what runs in the cluster ------------------------------------------------------

start_meta() {
	# HOOK(meta, issue 3): start the metadata service once kvfs-meta has --listen, e.g.
	#   start_proc kvfs-meta "$PREFIX-meta" "$DIR/meta/log" \
	#       "$BUILD/metadata/kvfs-meta" --listen "$META_IP:$META_PORT" --db "$DIR/meta/db"
	#   wait_port "$PREFIX-meta" "$META_IP" "$META_PORT" || die "kvfs-meta did not start"
	:
}

start_node() { # start_node I
	local i=$1 ns ip
	ns=$(ns_of "$i")
	ip=$(node_ip "$i")
	# HOOK(node, issue 3/4): start the daemon once kvfs has --meta and --node-addr, e.g.
	#   start_proc "kvfs-n$i" "$ns" "$DIR/n$i/log" "$BUILD/fs/kvfs" -f \
	#       --meta "http://$META_IP:$META_PORT" --node-addr "$ip:$DATA_PORT" "$DIR/n$i/mnt"
	#   echo "$DIR/n$i/mnt" >>"$DIR/mounts"   (and wait until it is a mountpoint)
	if [ "${KVFS_CLUSTER_BENCH:-1}" != 0 ]; then
		[ -x "$BUILD/tools/kvfs-bench" ] || die "no $BUILD/tools/kvfs-bench (set KVFS_BUILD)"
		start_proc "kvfs-bench-n$i" "$ns" "$DIR/n$i/bench.log" "$BUILD/tools/kvfs-bench" \
			xfer --server "$ip:$BENCH_PORT" --arena "${KVFS_BENCH_ARENA:-256M}"
		wait_port "$ns" "$ip" "$BENCH_PORT" || die "kvfs-bench on node $i did not start"
	fi
	if [ "${KVFS_CLUSTER_IPERF:-1}" != 0 ] && command -v iperf3 >/dev/null; then
		start_proc "iperf3-n$i" "$ns" "$DIR/n$i/iperf3.log" iperf3 -s -B "$ip" -p "$IPERF_PORT"
		wait_port "$ns" "$ip" "$IPERF_PORT" || die "iperf3 on node $i did not start"
	fi
}

# ---- commands -----------------------------------------------------------------------------

cmd_up() {
	local n=${1:-} i
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
		die "up: N must be 1..200"
	fi
	[ "$(id -u)" = 0 ] || die "needs root"
	command -v nsenter >/dev/null || die "needs nsenter (util-linux)"
	[ ! -e "$DIR/namespaces" ] || die "already up in $DIR (run: $0 down)"
	mkdir -p "$DIR"
	: >"$DIR/namespaces"
	: >"$DIR/pids"
	: >"$DIR/mounts"
	trap 'echo "cluster.sh: up failed, tearing down" >&2; cmd_down' ERR

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
		start_node "$i"
	done
	# The path through the bridge works: the last node reaches the first node's service.
	if [ "${KVFS_CLUSTER_BENCH:-1}" != 0 ]; then
		wait_port "$PREFIX-n$n" "$(node_ip 1)" "$BENCH_PORT" || die "no path n$n -> n1"
	fi
	trap - ERR
	echo "cluster up: $n nodes, state in $DIR"
	cmd_status
}

# kill_recorded: every process up started, if it is still the same process.
kill_recorded() {
	local pid start name alive=()
	[ -f "$DIR/pids" ] || return 0
	while read -r pid start name; do
		[ -n "$pid" ] || continue
		if [ "$(proc_start "$pid")" = "$start" ]; then
			kill -TERM "$pid" 2>/dev/null && alive+=("$pid:$start")
		fi
	done <"$DIR/pids"
	for _ in $(seq 50); do
		local left=()
		for e in "${alive[@]}"; do
			[ "$(proc_start "${e%%:*}")" = "${e#*:}" ] && left+=("$e")
		done
		alive=("${left[@]}")
		[ ${#alive[@]} -eq 0 ] && return 0
		sleep 0.1
	done
	for e in "${alive[@]}"; do
		echo "cluster.sh: pid ${e%%:*} ignored SIGTERM, killing" >&2
		kill -KILL "${e%%:*}" 2>/dev/null || true
	done
}

cmd_down() {
	local m ns pid
	trap - ERR
	set +e
	[ -d "$DIR" ] || return 0
	kill_recorded
	# Anything else running inside our namespaces (started with `exec`) goes too.
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
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" ||
				echo "cluster.sh: cannot unmount $m" >&2
		fi
	done
	if [ -f "$DIR/namespaces" ]; then
		while read -r ns; do
			[ -e "/run/netns/$ns" ] && ip netns del "$ns"
		done < <(tac "$DIR/namespaces")
	fi
	rm -rf "$DIR"
	set -e
}

cmd_exec() {
	local node=${1:-} n ns
	[ -f "$DIR/nodes" ] || die "not up"
	n=$(cat "$DIR/nodes")
	shift || true
	[ $# -gt 0 ] || die "exec: no command"
	if [ "$node" = meta ]; then
		export KVFS_NODE=meta KVFS_NODE_ADDR=$META_IP
		unset KVFS_MNT
	else
		if ! [[ $node =~ ^[0-9]+$ ]] || [ "$node" -lt 1 ] || [ "$node" -gt "$n" ]; then
			die "exec: NODE must be 1..$n or meta"
		fi
		KVFS_NODE_ADDR=$(node_ip "$node")
		export KVFS_MNT="$DIR/n$node/mnt" KVFS_NODE=$node KVFS_NODE_ADDR
	fi
	export KVFS_META_URL="http://$META_IP:$META_PORT"
	ns=$(ns_of "$node")
	exec nsenter --net="/run/netns/$ns" -- "$@"
}

cmd_status() {
	local pid start name state
	[ -f "$DIR/nodes" ] || { echo "cluster: down"; return 0; }
	echo "nodes: $(cat "$DIR/nodes")  meta: $META_IP  state: $DIR"
	echo "namespaces: $(tr '\n' ' ' <"$DIR/namespaces")"
	while read -r pid start name; do
		state=dead
		[ "$(proc_start "$pid")" = "$start" ] && state=running
		echo "  $name pid $pid $state"
	done <"$DIR/pids"
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
exec) shift; cmd_exec "$@" ;;
status) cmd_status ;;
-h | --help) usage ;;
*) usage >&2; exit 2 ;;
esac
