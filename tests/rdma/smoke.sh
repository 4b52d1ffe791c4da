#!/usr/bin/env bash
#
# smoke.sh: soft-RoCE smoke test for the rdma suite.
#
# Boots the rdma-vm guest (scripts/rdma-vm.sh) and, inside it, runs an ibv_rc_pingpong server
# and client on rxe0 (RC send/recv, GID index 1) and an rping pair through librdmacm. Then, with
# --two-nodes, a pingpong between rxe1 and rxe2 over the veth pair, checking that the traffic
# really crossed the veth. Proves the guest, the kernel modules and the host's rdma-core
# userspace work together before the real rdma tests run.
#
# Exit 0 on success, 1 on failure, 77 (skip) when qemu, the kernel package or the rdma-core
# tools are missing; the reason is printed.
#
# Usage: tests/rdma/smoke.sh [--quick]    (--quick: single-device pingpong only)

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM=$ROOT/scripts/rdma-vm.sh
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1

for t in ibv_rc_pingpong rping ibv_devices; do
	if ! command -v $t > /dev/null; then
		echo "SKIP: $t not found (apt-get install ibverbs-utils rdmacm-utils ibverbs-providers)"
		exit 77
	fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvfs-rdma-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1

# The guest script. Servers get a timeout so a failed client cannot hang the guest; clients
# wait until their server listens instead of sleeping a fixed time (a TCG guest on a loaded
# host can take seconds to start a program).
cat > lib.sh <<'EOF'
wait_tcp() { # port: until something listens on it (IPv4 or IPv6)
	i=0
	until cat /proc/net/tcp /proc/net/tcp6 2> /dev/null |
		grep -q ":$(printf '%04X' "$1") 0\{8,32\}:0000 0A"; do
		i=$((i + 1)); [ $i -lt 300 ] || return 1; sleep 0.1
	done
}
wait_cm() { # until an rdma_cm id listens
	i=0
	until rdma res show cm_id 2> /dev/null | grep -q LISTEN; do
		i=$((i + 1)); [ $i -lt 300 ] || return 1; sleep 0.1
	done
}
EOF

cat > guest.sh <<'EOF'
set -u
. ./lib.sh
fail=0
check() { # name client-status server-status
	if [ "$2" = 0 ] && [ "$3" = 0 ]; then echo "ok - $1"; else echo "not ok - $1 (client $2, server $3)"; fail=1; fi
}

ibv_devices
timeout 60 ibv_rc_pingpong -d "$RDMA_VM_DEV" -g "$RDMA_VM_GID_INDEX" -n 100 > srv.log 2>&1 &
wait_tcp 18515
timeout 60 ibv_rc_pingpong -d "$RDMA_VM_DEV" -g "$RDMA_VM_GID_INDEX" -n 100 127.0.0.1 > cli.log 2>&1
c=$?; wait $!; s=$?
[ $c = 0 ] || cat cli.log srv.log
check "ibv_rc_pingpong on $RDMA_VM_DEV" $c $s
[ "${QUICK:-0}" = 1 ] && exit $fail

timeout 60 rping -s -a "$RDMA_VM_ADDR" -C 5 > srv.log 2>&1 &
wait_cm
timeout 60 rping -c -a "$RDMA_VM_ADDR" -C 5 -v > cli.log 2>&1
c=$?; wait $!; s=$?
[ $c = 0 ] || cat cli.log srv.log
check "rping (librdmacm) on $RDMA_VM_DEV" $c $s
exit $fail
EOF

cat > guest2.sh <<'EOF'
set -u
. ./lib.sh
before=$(cat /sys/class/net/vn2/statistics/rx_bytes)
timeout 60 ibv_rc_pingpong -d "$RDMA_VM_NODE1_DEV" -g 1 -s 65536 -n 50 > srv.log 2>&1 &
wait_tcp 18515
timeout 60 ibv_rc_pingpong -d "$RDMA_VM_NODE2_DEV" -g 1 -s 65536 -n 50 "$RDMA_VM_NODE1_ADDR" > cli.log 2>&1
c=$?; wait $!; s=$?
after=$(cat /sys/class/net/vn2/statistics/rx_bytes)
if [ $c = 0 ] && [ $s = 0 ] && [ $((after - before)) -gt 2000000 ]; then
	echo "ok - ibv_rc_pingpong $RDMA_VM_NODE2_DEV -> $RDMA_VM_NODE1_DEV over the veth ($((after - before)) bytes)"
	exit 0
fi
cat cli.log srv.log
echo "not ok - two-node pingpong (client $c, server $s, $((after - before)) bytes on vn2)"
exit 1
EOF

QUICK=$QUICK "$VM" --timeout 300 sh guest.sh
r=$?
case $r in
0) ;;
77) exit 77 ;;
*) echo "FAIL: single-device checks (exit $r)"; exit 1 ;;
esac
[ $QUICK = 1 ] && exit 0

"$VM" --two-nodes --timeout 300 sh guest2.sh
r=$?
case $r in
0) echo "PASS"; exit 0 ;;
77) exit 77 ;;
*) echo "FAIL: two-node check (exit $r)"; exit 1 ;;
esac
