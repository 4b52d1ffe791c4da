#!/usr/bin/env bash
#
# verbs.sh: the verbs transport's engine tests (test_xfer_verbs) inside the rdma-vm guest, with
# two rxe devices on a veth pair (scripts/rdma-vm.sh --two-nodes).
#
# Usage: tests/rdma/verbs.sh [PATH/TO/test_xfer_verbs]   (default: build/tests/test_xfer_verbs)
# Exit 0 passed, 1 failed, 77 skipped (no qemu, no kernel package, no RDMA build), the reason
# printed.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM=$ROOT/scripts/rdma-vm.sh
BIN=${1:-$ROOT/build/tests/test_xfer_verbs}

if [ ! -x "$BIN" ]; then
	echo "SKIP: $BIN not built (needs libibverbs-dev and librdmacm-dev at meson setup)"
	exit 77
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
case $BIN in
"$ROOT"/*) ;;
*)
	echo "SKIP: $BIN is outside $ROOT, which is all the guest can see read-write"
	exit 77
	;;
esac

# The guest sees the host's / read-only and $ROOT read-write; run from $ROOT.
cd "$ROOT" || exit 1
"$VM" --two-nodes --timeout 240 timeout 200 "$BIN"
r=$?
case $r in
0) echo "PASS" ;;
77) ;;
124) echo "FAIL: the guest timed out" ;;
*) echo "FAIL: test_xfer_verbs exit $r" ;;
esac
[ $r = 0 ] || [ $r = 77 ] || exit 1
exit $r
