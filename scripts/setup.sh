#!/usr/bin/env bash
# Install every build and test dependency of kvfs on Debian 12. Idempotent: packages that are
# already installed are skipped, and apt-get runs only when something is missing.
set -euo pipefail

PKGS=(
	# build
	build-essential meson ninja-build pkg-config clang-format
	# libraries (see README: "Library choices")
	libfuse3-dev fuse3 liblmdb-dev lmdb-utils libjansson-dev libmicrohttpd-dev
	libcurl4-openssl-dev check liburing-dev libibverbs-dev librdmacm-dev
	# tests and benchmarks
	fio attr iproute2 iperf3 procps psmisc util-linux coreutils findutils python3 curl
	# fuzzing (libFuzzer ships with clang)
	clang
	# RDMA tests in a soft-RoCE guest under qemu (scripts/rdma-vm.sh); the guest runs the
	# host's userspace over 9p, so the verbs tools and providers are host packages
	qemu-system-x86 busybox-static kmod xz-utils rdma-core ibverbs-providers ibverbs-utils
	rdmacm-utils perftest
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "setup: all ${#PKGS[@]} packages present"
	exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
