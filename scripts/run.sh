#!/usr/bin/env bash
# Install what is missing, build, and mount a kvfs pool tree (pools `kv` and `mamba`) in the
# foreground with the embedded metadata store. Ctrl-C unmounts.
#
#   scripts/run.sh [MOUNTPOINT] [extra kvfs options...]
#
# MOUNTPOINT defaults to /mnt/kvfs. Environment: KVFS_DRAM (arena size, default 1G),
# KVFS_DATA (metadata directory, default next to the build: build/run-data).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/setup.sh
if [ ! -f build/build.ninja ]; then
	meson setup build
fi
ninja -C build

mnt=${1:-/mnt/kvfs}
[ $# -gt 0 ] && shift
mkdir -p "$mnt"
data=${KVFS_DATA:-$top/build/run-data}
echo "kvfs: mounting at $mnt (data in $data); Ctrl-C to unmount"
exec build/fs/kvfs -f --dram "${KVFS_DRAM:-1G}" --data "$data" --pool kv --pool mamba "$@" "$mnt"
