#!/bin/bash
# SPDX-License-Identifier: MIT
#
# cluster.sh - the multinode suite's core cases with the verbs transport, for real on soft-RoCE:
# boots the rdma-vm guest with two rxe devices and runs cluster-guest.sh in it (verbs node to
# verbs node, a mixed cluster with a TCP-only node, fio verify, node kill -> EIO).
# usage: tests/rdma/cluster.sh [BUILD_DIR]   (exit 77 with the reason when it cannot run)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd) || { echo "SKIP: no build dir"; exit 77; }
for b in fs/kvfs metadata/http/kvfs-meta; do
	[ -x "$BUILD/$b" ] || { echo "SKIP: $BUILD/$b not built"; exit 77; }
done
case $BUILD in "$ROOT"/*) ;; *) echo "SKIP: $BUILD is outside $ROOT (the guest's view)"; exit 77 ;; esac
grep -q KVFS_HAVE_RDMA\ 1 "$BUILD/config.h" 2>/dev/null ||
	{ echo "SKIP: built without the rdma feature"; exit 77; }
cd "$ROOT" || exit 1
"$ROOT/scripts/rdma-vm.sh" --two-nodes --timeout 400 timeout 360 \
	bash "$ROOT/tests/rdma/cluster-guest.sh" "$BUILD"
r=$?
[ $r = 0 ] || [ $r = 77 ] || { echo "FAIL: exit $r"; exit 1; }
exit $r
