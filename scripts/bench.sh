#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench.sh - kvfs against tmpfs, side by side, in one run.
#
# Each run mounts a fresh tmpfs and a fresh kvfs and runs the same workloads on both, in
# alternating order (tmpfs first in odd runs, kvfs first in even runs) so that drift of the
# machine hits both alike. At the end it prints the median of every metric over the runs and
# the kvfs/tmpfs ratio, and writes the raw numbers (and every fio JSON report) under
# BUILD/bench/. docs/BENCHMARKS.md describes the method.
#
# Metrics (fio with --output-format=json, numbers extracted with python3):
#   write 4M files    writes of new 4 MiB files, 2 jobs, bs 1M, --fallocate=none      MiB/s
#   seq read cold     first read of those files after writing, bs 1M, 2 jobs           MiB/s
#   seq read warm     the same read again, --invalidate=0                             MiB/s
#   rand 4k cold      4 KiB random reads of freshly written files, 2 jobs               IOPS
#   rand 4k warm      the same again, --invalidate=0                                   IOPS
#   publish 64K/4M    HiCacheFile publish (write NAME.tmp.*, rename over NAME), 1 proc files/s
#   create/list/stat  a flat directory of 100,000 files: create, listdir, stat each   seconds
#   kvfs RSS          VmRSS split into RssAnon / RssFile / RssShmem with 100,000 files     MiB
#                     (the arena is memfd shared memory: it shows up as RssShmem)
#
# Usage: scripts/bench.sh [--runs N] [--quick] [--build DIR] [--dram SIZE] [--files N]
#        scripts/bench.sh multinode [--runs N] [--quick] [--build DIR] [--dram SIZE]
#        scripts/bench.sh rdma [ARGS]   (tests/rdma/bench.sh in the soft-RoCE guest)
#   multinode   the network benchmark on a 2-node cluster instead (see "multinode mode" below)
#   --runs N    interleaved runs per filesystem (default 3)
#   --quick     small sizes and 1 run unless --runs is given (a smoke test, not a benchmark)
#   --build DIR meson build directory (default ./build-release, the release build that
#               scripts/test.sh also builds; set up with --buildtype=release when missing, and
#               always rebuilt; a directory of another build type is refused)
# Environment: KVFS_ARGS adds options to the kvfs command line (e.g. "--cache page"); the
# arena is always pre-faulted (--prefault), as a serving node would run it.
# Needs root (FUSE mounts, tmpfs mounts), fio and python3.
# shellcheck disable=SC2016 # fio expands $jobnum and $filenum itself
set -Eeuo pipefail
export LC_ALL=C

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$SRC/build-release
RUNS=""
QUICK=0
DRAM=2G
FILES=""

usage() { sed -n '/^# Usage:/,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//'; }
MODE=single
case ${1:-} in
multinode | --multinode) MODE=multinode; shift ;;
rdma | --rdma)
	# the verbs backend in the soft-RoCE guest: WRs, doorbells, completions and time for
	# merged vs per-page posting (tests/rdma/bench.sh; ratios only, rxe under TCG is slow)
	shift
	exec "$SRC/tests/rdma/bench.sh" "$@"
	;;
esac
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift ;;
	--runs=*) RUNS=${1#*=} ;;
	--quick) QUICK=1 ;;
	--build) BUILD=$2; shift ;;
	--build=*) BUILD=${1#*=} ;;
	--dram) DRAM=$2; shift ;;
	--files) FILES=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac

if [ "$QUICK" = 1 ]; then
	: "${RUNS:=1}" "${FILES:=20000}"
	NFILES4M=4 RANDSIZE=16M PUB64=200 PUB4M=20
else
	: "${RUNS:=3}" "${FILES:=100000}"
	NFILES4M=128 RANDSIZE=256M PUB64=1000 PUB4M=100
fi
[ "$RUNS" -ge 1 ] 2>/dev/null || { echo "bench.sh: --runs needs a positive number" >&2; exit 2; }

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mounts tmpfs and FUSE)"
[ -c /dev/fuse ] || die "/dev/fuse is missing"
for t in fio python3 fusermount3 meson ninja; do
	command -v "$t" >/dev/null || die "'$t' is not installed"
done

# ---- build
# numbers from a debug or sanitizer build mean nothing: measure a release build only
if [ ! -f "$BUILD/build.ninja" ]; then
	log "meson setup --buildtype=release $BUILD"
	meson setup --buildtype=release "$BUILD" "$SRC" >&2
fi
btype=$(python3 -c 'import json, sys
for o in json.load(open(sys.argv[1])):
    if o["name"] == "buildtype":
        print(o["value"])' "$BUILD/meson-info/intro-buildoptions.json") ||
	die "cannot read the build type of $BUILD"
[ "$btype" = release ] ||
	die "$BUILD is a '$btype' build; benchmark a release build (default ./build-release)"
log "ninja -C $BUILD"
ninja -C "$BUILD" >&2 || die "build failed"
KVFS=$BUILD/fs/kvfs
[ -x "$KVFS" ] || die "no kvfs binary at $KVFS"
HICACHE=$SRC/tests/integration/hicache.py
KVTEST=$SRC/tests/integration/kvtest.py

# ==========================================================================================
# multinode mode (scripts/bench.sh multinode): the network path, not kvfs against tmpfs.
#
# A 2-node cluster from scripts/cluster.sh (network namespaces joined by veth through a bridge,
# all inside this machine), with `kvfs-bench xfer --server` and `iperf3 -s` on every node.
# Every run measures, on the same node 1 -> node 2 path, in an order that rotates from run to
# run (so drift lands on every metric alike):
#   iperf3 1 stream       iperf3 -c node2 from node 1 (data flows 1 -> 2), 1 stream   Gbit/s
#   engine READ 1M/64K    kvfs-bench xfer --connect node1 run on node 2: READs of 1 MiB and
#                         of 64 KiB, each its own transfer; default 2 connections, and 1
#   mount seq read 4M     fio on node 2, 1 and 2 jobs, reading 4 MiB files that node 1 wrote
#                         (bs 1M, direct=0, cold: never read on node 2 before)       Gbit/s
#   transfers/64 pages    a 4 MiB file in a pool with 64 KiB pages (64 contiguous pages)
#                         written on node 1, read once on node 2 (cat, then a fresh one with
#                         a single 4 MiB O_DIRECT pread); the delta of node 2's
#                         xfer.tcp.transfers (expected: 1 per contiguous run)
# plus, once, `kvfs-bench xfer --merge-check` (the engine alone: 64 contiguous 64 KiB READs in
# one batch). The summary is the median of the runs and the ratio to iperf3 of the same runs.
# Needs root, iproute2, nsenter, iperf3, fio, python3, curl.
MN_PREFIX=kvbench$$
mn_cluster() { "$SRC/scripts/cluster.sh" "$@"; }

# mn_num FILE EXPR: EXPR over the JSON document in FILE (j)
mn_num() {
	python3 - "$1" "$2" <<-'PY'
	import json, sys
	t = open(sys.argv[1]).read()  # fio may print warnings before the JSON document
	j = json.loads(t if t.startswith("{") else t[t.index("\n{") + 1:])
	print("%.3f" % eval(sys.argv[2], {"j": j}))
	PY
}

# mn_transfers NODE: node NODE's xfer.tcp.transfers
mn_transfers() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["xfer"]["tcp"]["transfers"])' \
		"$MN_DIR/n$1/mnt/.kvfs/stats"
}

mn_record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$MN_RESULTS"; }

mn_iperf() { # mn_iperf RUN
	local f=$MN_RAW/run$1-iperf3.json
	mn_cluster exec 1 iperf3 -c 10.99.0.12 -p 5201 -B 10.99.0.11 -t "$MN_SECS" -J >"$f" ||
		die "iperf3 failed: $(tail -n 5 "$f")"
	mn_record "$1" "iperf3 1 stream" \
		"$(mn_num "$f" 'j["end"]["sum_received"]["bits_per_second"] / 1e9')" Gbit/s
}

mn_xfer() { # mn_xfer RUN SIZE CONNS
	local f=$MN_RAW/run$1-xfer-$2-c$3.txt v
	mn_cluster exec 2 "$KVFS_BENCH" xfer --connect 10.99.0.11:9500 --size "$2" --conns "$3" \
		--seconds "$MN_SECS" >"$f" 2>&1 || die "kvfs-bench xfer failed: $(tail -n 5 "$f")"
	v=$(sed -n 's/.* Gbps=\([0-9.]*\) .*/\1/p' "$f")
	[ -n "$v" ] || die "no Gbps in $f"
	if [ "$3" = 2 ]; then
		mn_record "$1" "engine READ $2" "$v" Gbit/s
	else
		mn_record "$1" "engine READ $2, 1 conn" "$v" Gbit/s
	fi
}

mn_fio() { # mn_fio RUN JOBS: node 1 writes, node 2 reads cold
	local run=$1 jobs=$2 d=kv/bench/r$1-j$2 f
	mkdir -p "$MN_DIR/n1/mnt/$d"
	mn_cluster exec 1 fio --name=w --directory="$MN_DIR/n1/mnt/$d" --ioengine=psync \
		--rw=write --bs=1M --filesize=4M --nrfiles="$MN_FILES" --numjobs="$jobs" \
		--fallocate=none --filename_format='f.$jobnum.$filenum' --file_service_type=sequential \
		--output-format=json --output="$MN_RAW/run$run-write-j$jobs.json" >/dev/null ||
		die "fio write on node 1 failed"
	f=$MN_RAW/run$run-seqread-j$jobs.json
	mn_cluster exec 2 fio --name=r --directory="$MN_DIR/n2/mnt/$d" --ioengine=psync \
		--rw=read --bs=1M --direct=0 --filesize=4M --nrfiles="$MN_FILES" --numjobs="$jobs" \
		--filename_format='f.$jobnum.$filenum' --file_service_type=sequential \
		--group_reporting --output-format=json --output="$f" >/dev/null ||
		die "fio read on node 2 failed: $(tail -n 5 "$f")"
	mn_record "$run" "mount seq read 4M, $jobs job$([ "$jobs" = 1 ] || echo s)" \
		"$(mn_num "$f" 'j["jobs"][0]["read"]["bw_bytes"] * 8 / 1e9')" Gbit/s
	rm -rf "${MN_DIR:?}/n1/mnt/$d"
}

mn_pages64() { # mn_pages64 RUN: transfers node 2 issues to read 64 contiguous 64 KiB pages
	local run=$1 f t0 t1 pages
	for how in cat direct; do
		f=$MN_DIR/n1/mnt/p64/r$run-$how
		mn_cluster exec 1 dd if=/dev/urandom of="$f" bs=1M count=4 status=none
		pages=$(getfattr --only-values -n user.kvfs.pages "$f" 2>/dev/null || echo "?")
		f=$MN_DIR/n2/mnt/p64/r$run-$how
		t0=$(mn_transfers 2)
		if [ "$how" = cat ]; then
			mn_cluster exec 2 cat "$f" >/dev/null
		else
			mn_cluster exec 2 dd if="$f" of=/dev/null bs=4M count=1 iflag=direct status=none
		fi
		t1=$(mn_transfers 2)
		mn_record "$run" "64-page read: transfers ($how)" $((t1 - t0)) transfers
		echo "run $run $how: pages $pages, transfers $((t1 - t0))" >>"$MN_RAW/pages64.txt"
	done
}

bench_multinode() {
	local run mn_order m i n
	for t in ip nsenter iperf3 fio python3 curl getfattr; do
		command -v "$t" >/dev/null || die "'$t' is not installed"
	done
	KVFS_BENCH=$BUILD/tools/kvfs-bench
	[ -x "$KVFS_BENCH" ] || die "no kvfs-bench at $KVFS_BENCH"
	if [ "$QUICK" = 1 ]; then MN_SECS=2 MN_FILES=8; else MN_SECS=5 MN_FILES=64; fi
	MN_OUT=$BUILD/bench/$(date +%Y%m%d-%H%M%S)-multinode
	MN_RAW=$MN_OUT/raw
	mkdir -p "$MN_RAW"
	MN_RESULTS=$MN_OUT/results.tsv
	printf 'run\tmetric\tvalue\tunit\n' >"$MN_RESULTS"
	MN_WORK=$(mktemp -d /tmp/kvfs-bench-mn.XXXXXX)
	MN_DIR=$MN_WORK/cluster
	export KVFS_CLUSTER_DIR=$MN_DIR KVFS_CLUSTER_PREFIX=$MN_PREFIX KVFS_BUILD=$BUILD
	export KVFS_CLUSTER_DRAM=$DRAM KVFS_BENCH_ARENA=512M KVFS_CLUSTER_ARGS="--prefault ${KVFS_ARGS:-}"
	export KVFS_CLUSTER_TIMEOUT=120 # pre-faulting the arenas takes a while on a loaded VM
	trap 'mn_cluster down; rm -rf --one-file-system "$MN_WORK"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	log "multinode: results in $MN_OUT (runs: $RUNS, arena: $DRAM per node)"
	mn_cluster up 2 --bench >"$MN_OUT/cluster.log" 2>&1 ||
		die "cluster.sh up failed: $(tail -n 5 "$MN_OUT/cluster.log")"
	sleep 2 # one heartbeat: each node knows the other
	"$BUILD/tools/kvfsctl" -m "$MN_DIR/n1/mnt" pool create p64 --page-size 64K >/dev/null
	mkdir -p "$MN_DIR/n1/mnt/kv/bench"
	mn_cluster exec 2 "$KVFS_BENCH" xfer --connect 10.99.0.11:9500 --size 64K --merge-check \
		>"$MN_RAW/merge-check.txt" 2>&1 || true
	log "engine merge check: $(cat "$MN_RAW/merge-check.txt")"

	local metrics=(iperf x1m x64k x1m1 x64k1 fio1 fio2 pages)
	for run in $(seq "$RUNS"); do
		mn_order=()
		n=${#metrics[@]}
		for i in $(seq 0 $((n - 1))); do # rotate by the run number, reverse on even runs
			m=${metrics[$(((i + run - 1) % n))]}
			if [ $((run % 2)) = 0 ]; then mn_order=("$m" "${mn_order[@]}"); else mn_order+=("$m"); fi
		done
		log "run $run: ${mn_order[*]}"
		for m in "${mn_order[@]}"; do
			case $m in
			iperf) mn_iperf "$run" ;;
			x1m) mn_xfer "$run" 1M 2 ;;
			x64k) mn_xfer "$run" 64K 2 ;;
			x1m1) mn_xfer "$run" 1M 1 ;;
			x64k1) mn_xfer "$run" 64K 1 ;;
			fio1) mn_fio "$run" 1 ;;
			fio2) mn_fio "$run" 2 ;;
			pages) mn_pages64 "$run" ;;
			esac
		done
	done
	cp "$MN_DIR/n2/mnt/.kvfs/stats" "$MN_RAW/n2-stats.json"
	cp "$MN_DIR/n2/log" "$MN_OUT/kvfs-n2.log"

	python3 - "$MN_RESULTS" "$RUNS" "$(head -n 1 "$MN_RAW/merge-check.txt")" <<-'PY' |
	import collections, statistics, sys
	rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
	vals, units, order = collections.defaultdict(list), {}, []
	byrun = collections.defaultdict(dict)
	for run, metric, value, unit in rows:
	    if metric not in units:
	        order.append(metric)
	    units[metric] = unit
	    vals[metric].append(float(value))
	    byrun[run][metric] = float(value)
	med = {m: statistics.median(v) for m, v in vals.items()}
	base = med.get("iperf3 1 stream")
	# the ratio within each run (same minute, same machine state), then its median
	rr = collections.defaultdict(list)
	for r in byrun.values():
	    for m, v in r.items():
	        if units[m] == "Gbit/s" and r.get("iperf3 1 stream"):
	            rr[m].append(v / r["iperf3 1 stream"])
	targets = {"engine READ 1M": 0.9, "engine READ 64K": 0.9, "mount seq read 4M, 1 job": 0.8,
	           "mount seq read 4M, 2 jobs": 0.8}
	print("kvfs multinode, node 1 -> node 2 over veth, median of %s run(s)" % sys.argv[2])
	print("%-34s %-9s %8s %9s %9s %7s  %s" % ("metric", "unit", "median", "vs iperf3",
	      "run ratio", "target", "runs"))
	order.sort(key=lambda m: units[m] != "Gbit/s")
	for m in order:
	    ratio = "%.2f" % (med[m] / base) if base and units[m] == "Gbit/s" else "-"
	    rrm = "%.2f" % statistics.median(rr[m]) if rr[m] else "-"
	    tgt = (">= %.1f" % targets[m]) if m in targets else ("1" if units[m] == "transfers" else "-")
	    print("%-34s %-9s %8.3g %9s %9s %7s  %s" % (m, units[m], med[m], ratio, rrm, tgt,
	          " ".join("%.3g" % x for x in vals[m])))
	print("vs iperf3: ratio of the medians; run ratio: median over runs of the ratio to that "
	      "run's iperf3")
	print("engine alone (kvfs-bench xfer --merge-check, 64 x 64K): %s" % sys.argv[3])
	PY
		tee "$MN_OUT/summary.txt"
	log "raw results: $MN_RESULTS, summary: $MN_OUT/summary.txt"
}

if [ "$MODE" = multinode ]; then
	bench_multinode
	exit 0
fi
# ==========================================================================================

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$BUILD/bench/$STAMP
mkdir -p "$OUT/raw"
RESULTS=$OUT/results.tsv
printf 'run\tfs\tmetric\tvalue\tunit\n' >"$RESULTS"

# ---- mounts and cleanup
WORK=$(mktemp -d /tmp/kvfs-bench.XXXXXX)
TMNT=$WORK/tmpfs
KMNT=$WORK/kvfs
KDATA=$WORK/kvfs-data
KPID=""
mkdir -p "$TMNT" "$KMNT"

is_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; }

kvfs_up() {
	rm -rf "$KDATA"
	mkdir -p "$KDATA"
	# shellcheck disable=SC2086 # KVFS_ARGS is a list of options
	"$KVFS" -f --dram "$DRAM" --prefault --data "$KDATA" --pool kv --pool hc64,page-size=64K \
		${KVFS_ARGS:-} "$KMNT" >>"$OUT/kvfs.log" 2>&1 &
	KPID=$!
	# pre-faulting a multi-GiB arena takes seconds on a loaded VM: allow a minute
	for _ in $(seq 1200); do
		kill -0 "$KPID" 2>/dev/null || die "kvfs exited at start (see $OUT/kvfs.log)"
		if is_mounted "$KMNT" && timeout 5 cat "$KMNT/.kvfs/stats" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.05
	done
	die "kvfs did not mount within 60 s (see $OUT/kvfs.log)"
}

kvfs_down() {
	[ -n "$KPID" ] || return 0
	kill -TERM "$KPID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$KPID" 2>/dev/null || true
	wait "$KPID" 2>/dev/null || true
	KPID=""
	is_mounted "$KMNT" && { fusermount3 -u "$KMNT" 2>/dev/null || umount -l "$KMNT"; }
	return 0
}

tmpfs_up() { mount -t tmpfs -o size=$((2 * $(numfmt --from=iec "$DRAM"))) kvfs-bench "$TMNT"; }
tmpfs_down() { is_mounted "$TMNT" && umount "$TMNT"; return 0; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	cd /
	kvfs_down
	tmpfs_down
	if is_mounted "$KMNT" || is_mounted "$TMNT"; then
		log "leaving $WORK: still mounted"
	else
		rm -rf --one-file-system "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- measurements

# record RUN FS METRIC VALUE UNIT
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# fio_num FILE EXPR: evaluate EXPR over the single (group_reporting) job j of a fio report
fio_num() {
	python3 - "$1" "$2" <<-'PY'
	import json, sys
	t = open(sys.argv[1]).read()  # fio may print warnings before the JSON document
	j = json.loads(t if t.startswith("{") else t[t.index("\n{") + 1:])
	if any(x["error"] for x in j["jobs"]):
	    sys.exit("fio job error in %s" % sys.argv[1])
	print("%.1f" % eval(sys.argv[2], {"j": j["jobs"][0]}))
	PY
}

# fio_run TAG DIR ARGS...: one fio job group, JSON report in raw/
fio_run() {
	local tag=$1 dir=$2
	shift 2
	fio --name="$tag" --directory="$dir" --ioengine=psync --group_reporting \
		--output-format=json --output="$RAW/$tag.json" "$@" >/dev/null 2>"$RAW/$tag.err" ||
		die "fio $tag failed: $(tail -n 5 "$RAW/$tag.err")"
	echo "$RAW/$tag.json"
}

# bench_fs RUN FS POOLDIR POOL64DIR (POOL64DIR: a pool with 64 KiB pages on kvfs)
bench_fs() {
	local run=$1 fs=$2 d=$3 d64=$4 f v
	RAW=$OUT/raw/run$run-$fs
	mkdir -p "$RAW"
	log "run $run: $fs"

	# sequential: write new 4 MiB files, then read them cold and warm
	mkdir -p "$d/seq"
	local seq=(--bs=1M --filesize=4M --nrfiles="$NFILES4M" --numjobs=2
		--filename_format='f.$jobnum.$filenum' --file_service_type=sequential)
	f=$(fio_run write4m "$d/seq" --rw=write --fallocate=none "${seq[@]}")
	record "$run" "$fs" "write 4M files" "$(fio_num "$f" 'j["write"]["bw_bytes"] / 2**20')" MiB/s
	f=$(fio_run seqcold "$d/seq" --rw=read --invalidate=1 "${seq[@]}")
	record "$run" "$fs" "seq read 1M cold" "$(fio_num "$f" 'j["read"]["bw_bytes"] / 2**20')" MiB/s
	f=$(fio_run seqwarm "$d/seq" --rw=read --invalidate=0 "${seq[@]}")
	record "$run" "$fs" "seq read 1M warm" "$(fio_num "$f" 'j["read"]["bw_bytes"] / 2**20')" MiB/s
	rm -rf "$d/seq"

	# random 4 KiB reads: lay the files out with 1M writes, then read every block once, twice
	mkdir -p "$d/rand"
	local rnd=(--size="$RANDSIZE" --numjobs=2 --filename_format='r.$jobnum')
	fio_run layout "$d/rand" --rw=write --bs=1M --fallocate=none "${rnd[@]}" >/dev/null
	f=$(fio_run randcold "$d/rand" --rw=randread --bs=4k --invalidate=1 "${rnd[@]}")
	record "$run" "$fs" "rand read 4k cold" "$(fio_num "$f" 'j["read"]["iops"]')" IOPS
	f=$(fio_run randwarm "$d/rand" --rw=randread --bs=4k --invalidate=0 "${rnd[@]}")
	record "$run" "$fs" "rand read 4k warm" "$(fio_num "$f" 'j["read"]["iops"]')" IOPS
	rm -rf "$d/rand"

	# HiCacheFile publish: write NAME.tmp.PID.TID.UUID, rename over NAME
	python3 "$HICACHE" bench --dir "$d64/pub64" --size 64K --count "$PUB64" >"$RAW/pub64.json"
	v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["files_per_s"])' "$RAW/pub64.json")
	record "$run" "$fs" "publish 64K" "$v" files/s
	rm -rf "$d64/pub64"
	python3 "$HICACHE" bench --dir "$d/pub4m" --size 4M --count "$PUB4M" >"$RAW/pub4m.json"
	v=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["files_per_s"])' "$RAW/pub4m.json")
	record "$run" "$fs" "publish 4M" "$v" files/s
	rm -rf "$d/pub4m"

	# a flat directory of FILES files: create, list, stat each; daemon memory while it exists
	mkdir -p "$d/flat"
	v=$(python3 "$KVTEST" mkmany "$d/flat" "$FILES")
	record "$run" "$fs" "create $FILES files" "$v" s
	python3 - "$d/flat" >"$RAW/flat.txt" <<-'PY'
	import os, sys, time
	d = sys.argv[1]
	t0 = time.monotonic()
	names = os.listdir(d)
	t1 = time.monotonic()
	for n in names:
	    os.stat(os.path.join(d, n))
	t2 = time.monotonic()
	print("%.3f %.3f %d" % (t1 - t0, t2 - t1, len(names)))
	PY
	read -r tl ts nn <"$RAW/flat.txt"
	[ "$nn" = "$FILES" ] || die "$fs: listdir returned $nn names, expected $FILES"
	record "$run" "$fs" "list $FILES files" "$tl" s
	record "$run" "$fs" "stat $FILES files" "$ts" s
	if [ "$fs" = kvfs ]; then
		rss "$run" files
		cp "$KMNT/.kvfs/stats" "$RAW/kvfs-stats.json"
	fi
	rm -rf "$d/flat"
}

# rss RUN WHEN: the daemon's memory from /proc/PID/status, in MiB
rss() {
	local k v
	[ -r "/proc/$KPID/status" ] || die "no /proc/$KPID/status"
	for k in RssAnon RssFile RssShmem VmRSS; do
		v=$(awk -v k="$k:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$KPID/status")
		if [ "$2" = base ]; then
			record "$1" kvfs "$k, fresh mount" "$v" MiB
		else
			record "$1" kvfs "$k, $FILES files" "$v" MiB
		fi
	done
}

log "results in $OUT (runs: $RUNS, files: $FILES, arena: $DRAM$([ "$QUICK" = 1 ] && echo ', quick'))"
t0=$(date +%s)
for run in $(seq "$RUNS"); do
	tmpfs_up
	kvfs_up
	rss "$run" base
	if [ $((run % 2)) -eq 1 ]; then order="tmpfs kvfs"; else order="kvfs tmpfs"; fi
	for fs in $order; do
		if [ "$fs" = tmpfs ]; then
			mkdir -p "$TMNT/kv" "$TMNT/hc64"
			bench_fs "$run" tmpfs "$TMNT/kv" "$TMNT/hc64"
		else
			bench_fs "$run" kvfs "$KMNT/kv" "$KMNT/hc64"
		fi
	done
	kvfs_down
	tmpfs_down
done
log "done in $(($(date +%s) - t0)) s"

# ---- summary: median per metric and fs, kvfs/tmpfs ratio
python3 - "$RESULTS" "$RUNS" <<-'PY' | tee "$OUT/summary.txt"
import collections, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
vals = collections.defaultdict(list)
units, order = {}, []
for run, fs, metric, value, unit in rows:
    if metric not in units:
        order.append(metric)
    units[metric] = unit
    vals[(metric, fs)].append(float(value))
def fmt(x):
    return "-" if x is None else ("%.0f" % x if abs(x) >= 100 else "%.3g" % x)
print("kvfs vs tmpfs, median of %s run(s) per metric" % sys.argv[2])
print("%-26s %-8s %12s %12s %8s  %s" % ("metric", "unit", "tmpfs", "kvfs", "ratio", "better"))
order.sort(key=lambda m: units[m] == "MiB")  # daemon memory last
for m in order:
    t = statistics.median(vals[(m, "tmpfs")]) if vals[(m, "tmpfs")] else None
    k = statistics.median(vals[(m, "kvfs")]) if vals[(m, "kvfs")] else None
    ratio = "%.2f" % (k / t) if t and k is not None else "-"
    better = {"s": "lower", "MiB": "lower"}.get(units[m], "higher")
    print("%-26s %-8s %12s %12s %8s  %s" % (m, units[m], fmt(t), fmt(k), ratio, better))
PY
log "raw results: $RESULTS, summary: $OUT/summary.txt, fio reports: $OUT/raw/"
