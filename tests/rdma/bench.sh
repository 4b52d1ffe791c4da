#!/usr/bin/env bash
#
# bench.sh: the verbs transport's posting benchmark on soft-RoCE (meant to be hooked in as
# `scripts/bench.sh rdma`). Boots the rdma-vm guest with two rxe devices (--two-nodes) and runs
# `kvfs-bench verbs` there: 64-page reads, contiguous and scattered, with the merged engine
# (one chained ibv_post_send per batch, only its last WR signalled) and the per-op mode (one WR
# and one doorbell per page), interleaved, median of --runs batches each. Prints a table of WRs,
# doorbells and completions per batch, the median time, and per-op/merged ratios.
#
# rxe is software under TCG emulation: absolute times mean nothing, ratios measured in one
# guest do.
#
# Usage: tests/rdma/bench.sh [--bin PATH/TO/kvfs-bench] [--runs N] [--page-size SIZE]... [--mtu N]
#   (default kvfs-bench: build/tools/kvfs-bench; several --page-size values run in one guest;
#    default 64K; --mtu sets the veth pair's MTU first, e.g. 9000)
# Exit 0, 1 on failure, 77 when the guest or an RDMA build is missing (reason printed).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM=$ROOT/scripts/rdma-vm.sh
BIN=$ROOT/build/tools/kvfs-bench
RUNS=15
MTU=
SIZES=()
while [ $# -gt 0 ]; do
	case $1 in
	--bin) BIN=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--page-size) SIZES+=("$2"); shift 2 ;;
	--mtu) MTU=$2; shift 2 ;;
	*) echo "usage: $0 [--bin PATH] [--runs N] [--page-size SIZE]... [--mtu N]" >&2; exit 2 ;;
	esac
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(64K)

if [ ! -x "$BIN" ] || ! "$BIN" verbs --help > /dev/null 2>&1; then
	echo "SKIP: $BIN missing or without the verbs subcommand"
	exit 77
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
cd "$ROOT" || exit 1

OUT=$(mktemp "$ROOT/.rdma-bench.XXXXXX")
trap 'rm -f "$OUT"' EXIT
CMD="set -e"
# A jumbo MTU on the veth pair lets rxe use 4096-byte packets instead of 1024 (rxe's path MTU
# follows the netdev's), a quarter of the per-packet software work per byte.
[ -z "$MTU" ] || CMD="$CMD; ip link set \$RDMA_VM_NODE1_NETDEV mtu $MTU; ip link set \$RDMA_VM_NODE2_NETDEV mtu $MTU"
for s in "${SIZES[@]}"; do
	CMD="$CMD; timeout 300 $BIN verbs --server-ip \$RDMA_VM_NODE1_ADDR --client-ip \$RDMA_VM_NODE2_ADDR --runs $RUNS --page-size $s"
done
"$VM" --two-nodes --timeout 600 "$CMD" > "$OUT"
r=$?
case $r in
0) ;;
77) exit 77 ;;
*) cat "$OUT"; echo "FAIL: kvfs-bench verbs in the guest (exit $r)"; exit 1 ;;
esac

awk '
/^verbs / {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	key = f["page_size"] " " f["pattern"]
	if (!(key in seen)) { seen[key] = 1; order[n++] = key }
	m = f["mode"]
	wrs[key, m] = f["wrs"]; db[key, m] = f["doorbells"]; cq[key, m] = f["completions"]
	us[key, m] = f["median_us"]; pages[key] = f["pages"]; runs = f["runs"]
}
END {
	printf "verbs transport on soft-RoCE (rxe1 <-> rxe2, qemu TCG), median of %s batches\n", runs
	printf "%-9s %-15s %-7s %9s %9s %9s %11s %9s\n", "page", "pattern", "mode", "WRs", "doorbells", "CQEs", "median_us", "speedup"
	for (i = 0; i < n; i++) {
		k = order[i]; split(k, p, " ")
		for (j = 0; j < 2; j++) {
			m = j ? "per-op" : "merged"
			sp = j ? "1.00x" : sprintf("%.2fx", us[k, "per-op"] / us[k, "merged"])
			printf "%-9s %-15s %-7s %9s %9s %9s %11s %9s\n", (p[1] / 1024) "K x" pages[k], p[2], m, wrs[k, m], db[k, m], cq[k, m], us[k, m], sp
		}
	}
	printf "ratios per-op/merged: "
	for (i = 0; i < n; i++) {
		k = order[i]; split(k, p, " ")
		printf "%s%s %sK: WRs %.0fx doorbells %.0fx time %.2fx", (i ? "; " : ""), p[2], p[1] / 1024,
			wrs[k, "per-op"] / wrs[k, "merged"], db[k, "per-op"] / db[k, "merged"], us[k, "per-op"] / us[k, "merged"]
	}
	printf "\n"
}' "$OUT"
