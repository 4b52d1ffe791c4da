#!/usr/bin/env bash
#
# rdma-vm.sh: run a command in a throwaway qemu guest that has soft-RoCE (rxe) ready.
#
# These machines have no RDMA in their kernel and their /dev/kvm cannot boot a stock kernel,
# so the guest runs under TCG: Debian's linux-image-amd64 (fetched with apt-get download and
# unpacked, never installed), the uncompressed vmlinux, a busybox initramfs with the virtio,
# 9p, overlay, veth, dummy, fuse and rxe modules, and the host's / mounted read-only over 9p
# under a tmpfs overlay, so the guest runs the host's own userspace and build tree. The
# current directory is shared read-write at the same path. Everything but the boot is cached
# (see RDMA_VM_CACHE), so a run costs about one boot (~5 s). docs/RDMA-TESTING.md has the
# details, timings and troubleshooting.
#
# Usage: scripts/rdma-vm.sh [OPTIONS] [--] CMD [ARG...]
#   One argument is shell text run by the guest's /bin/sh; several are run as an argv.
#   The exit status is CMD's; its stdout and stderr come back separately.
#   Exit 77: qemu, busybox-static, kmod or the kernel package cannot be had (reason on stderr).
#   Exit 124: the guest hit the overall timeout. Exit 125: the guest could not run CMD.
#
# Options:
#   --two-nodes     also create rxe1 on vn1 (192.168.77.1) and rxe2 on vn2 (192.168.77.2), the
#                   two ends of a veth pair, for two "nodes" in one guest
#   --timeout SEC   overall limit on the guest (default $RDMA_VM_TIMEOUT or 600)
#   --smp N         guest CPUs (default $RDMA_VM_SMP or 2)
#   --mem MB        guest memory (default $RDMA_VM_MEM or 2048)
#   --console       copy the guest's kernel console to stderr as it boots
#   --keep          keep the per-run directory (logs, console) and print its path
#   --prepare       only fetch and build the cached kernel and initramfs, then exit
#   -h, --help      this text
#
# In the guest: RDMA_VM=1, RDMA_VM_DEV=rxe0, RDMA_VM_ADDR=10.0.2.15, RDMA_VM_GID_INDEX=1, and
# with --two-nodes RDMA_VM_NODE{1,2}_{ADDR,DEV,NETDEV}. The caller's environment is passed
# through (except TMPDIR outside the working directory and a few shell variables).
#
# Environment: RDMA_VM_CACHE (cache dir, default ${XDG_CACHE_HOME:-~/.cache}/kvfs-rdma-vm),
# RDMA_VM_KERNEL_PKG (kernel package, default what linux-image-amd64 depends on),
# RDMA_VM_KERNEL_DEB (use this .deb, no download), RDMA_VM_MODULES (extra modules for the
# initramfs), RDMA_VM_BOOT_TIMEOUT (seconds until a boot counts as hung, default 30),
# RDMA_VM_BOOT_TRIES (default 3), RDMA_VM_QEMU (qemu binary), RDMA_VM_APPEND (extra kernel
# arguments), RDMA_VM_WORK_CACHE (9p cache mode of the working directory, default mmap).

set -euo pipefail

ME=rdma-vm
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INIT_TEMPLATE=$SRC_DIR/rdma-vm/init

TIMEOUT=${RDMA_VM_TIMEOUT:-600}
SMP=${RDMA_VM_SMP:-2}
MEM=${RDMA_VM_MEM:-2048}
BOOT_TIMEOUT=${RDMA_VM_BOOT_TIMEOUT:-30}
BOOT_TRIES=${RDMA_VM_BOOT_TRIES:-3}
QEMU=${RDMA_VM_QEMU:-qemu-system-x86_64}
CACHE=${RDMA_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/kvfs-rdma-vm}
BUSYBOX=${RDMA_VM_BUSYBOX:-/bin/busybox}
# Modules the initramfs loads at boot, dependencies resolved from modules.dep. crc32 is what
# rxe asks the crypto API for when a device is created.
MODULES="virtio_pci virtio_net 9pnet_virtio 9p overlay veth dummy fuse rdma_rxe ib_uverbs"
MODULES+=" rdma_ucm crc32_generic crc32_pclmul ${RDMA_VM_MODULES:-}"

TWO_NODES=0
CONSOLE=0
KEEP=0
PREPARE=0

die() { echo "$ME: $*" >&2; exit 125; }
skip() { echo "$ME: SKIP: $*" >&2; exit 77; }
note() { echo "$ME: $*" >&2; }
usage() { sed -n '/^# Usage:/,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
	case $1 in
	--two-nodes) TWO_NODES=1 ;;
	--timeout) TIMEOUT=${2:?--timeout needs a value}; shift ;;
	--smp) SMP=${2:?--smp needs a value}; shift ;;
	--mem) MEM=${2:?--mem needs a value}; shift ;;
	--console) CONSOLE=1 ;;
	--keep) KEEP=1 ;;
	--prepare) PREPARE=1 ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "$ME: unknown option $1 (see --help)" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
if [ $# -eq 0 ] && [ $PREPARE = 0 ]; then
	usage >&2
	exit 2
fi

# ---- prerequisites: anything missing is a skip, not a failure --------------------------------

command -v "$QEMU" > /dev/null || skip "$QEMU not found (apt-get install qemu-system-x86)"
command -v depmod > /dev/null || [ -x /sbin/depmod ] || skip "depmod not found (apt-get install kmod)"
PATH=$PATH:/sbin:/usr/sbin
[ -x "$BUSYBOX" ] || skip "$BUSYBOX not found (apt-get install busybox-static)"
if head -c 1024 "$BUSYBOX" | LC_ALL=C grep -qa "ld-linux"; then # PT_INTERP
	skip "$BUSYBOX is dynamically linked (apt-get install busybox-static)"
fi
command -v flock > /dev/null || skip "flock not found (apt-get install util-linux)"
for t in rdma ip; do
	command -v $t > /dev/null || skip "$t not found on the host (apt-get install iproute2)"
done

mkdir -p "$CACHE" || skip "cannot create cache directory $CACHE"

# ---- kernel: fetch, unpack, extract vmlinux, depmod (once per kernel package version) -------

# Echo every offset of each compression magic in $1 as "offset command" lines, in the order
# the kernel's scripts/extract-vmlinux tries them.
compressed_payloads() {
	local f=$1 magic cmd
	while read -r magic cmd; do
		command -v "${cmd%% *}" > /dev/null || continue
		LC_ALL=C grep -obUaP "$magic" "$f" 2> /dev/null | cut -d: -f1 | sed "s|\$| $cmd|"
	done <<-'EOF'
		\x1f\x8b\x08 gzip -dc
		\xfd7zXZ\x00 xz -dc
		BZh bzip2 -dc
		\x5d\x00\x00\x00 xz -dc --format=lzma
		\x89LZO lzop -dc
		\x02!L\x18 lz4 -dc
		\x28\xb5\x2f\xfd zstd -dc
	EOF
}

is_elf() { [ "$(head -c 4 "$1" 2> /dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

# Write the uncompressed vmlinux inside bzImage $1 to $2 (decompressing in the guest would
# cost ~3 s of every TCG boot).
extract_vmlinux() {
	local img=$1 out=$2 off cmd
	while read -r off cmd; do
		# shellcheck disable=SC2086 # cmd is a command line
		tail -c "+$((off + 1))" "$img" | $cmd > "$out" 2> /dev/null || true
		is_elf "$out" && return 0
	done < <(compressed_payloads "$img")
	return 1
}

# Resolve the kernel package and version to use; sets PKG, PKG_VER, KEY.
resolve_kernel() {
	PKG='' PKG_VER='' KEY=''
	if [ -n "${RDMA_VM_KERNEL_DEB:-}" ]; then
		[ -r "$RDMA_VM_KERNEL_DEB" ] || skip "RDMA_VM_KERNEL_DEB=$RDMA_VM_KERNEL_DEB not readable"
		KEY=$(basename "$RDMA_VM_KERNEL_DEB" .deb)
		return 0
	fi
	# apt-cache costs ~1 s a call here: remember the answer until the package lists change.
	local memo=$CACHE/resolved-${RDMA_VM_KERNEL_PKG:-linux-image-amd64}
	if [ -s "$memo" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' \
		-newer "$memo" -print -quit 2> /dev/null)" ]; then
		read -r PKG PKG_VER < "$memo" || true
		if [ -n "$PKG" ] && [ -e "$CACHE/${PKG}_$PKG_VER/done" ]; then
			KEY=${PKG}_$PKG_VER
			return 0
		fi
	fi
	if command -v apt-cache > /dev/null; then
		PKG=${RDMA_VM_KERNEL_PKG:-}
		if [ -z "$PKG" ]; then
			PKG=$(apt-cache depends linux-image-amd64 2> /dev/null |
				sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1) || true
		fi
		if [ -n "$PKG" ]; then
			PKG_VER=$(apt-cache show --no-all-versions "$PKG" 2> /dev/null |
				sed -n 's/^Version: //p' | head -n 1) || true
		fi
	fi
	if [ -n "$PKG" ] && [ -n "$PKG_VER" ]; then
		KEY=${PKG}_$PKG_VER
		echo "$PKG $PKG_VER" > "$memo.$$" && mv "$memo.$$" "$memo"
		return 0
	fi
	# No apt metadata: fall back to the newest kernel already in the cache.
	local d
	KEY=$(for d in "$CACHE"/linux-image-*/done; do
		[ -e "$d" ] && basename "$(dirname "$d")"
	done | sort -V | tail -n 1) || true
	[ -n "$KEY" ] || skip "cannot resolve kernel package ${RDMA_VM_KERNEL_PKG:-linux-image-amd64}" \
		"with apt-cache (apt-get update?) and $CACHE holds no kernel;" \
		"set RDMA_VM_KERNEL_DEB=/path/to/linux-image.deb"
}

# Build $CACHE/$KEY/{vmlinux,modules/,kver,done}. Caller holds the cache lock.
build_kernel() {
	local dir=$CACHE/$KEY tmp deb kver='' vmlinuz d
	tmp=$(mktemp -d "$CACHE/.build.XXXXXX")
	chmod 755 "$tmp"
	if [ -n "${RDMA_VM_KERNEL_DEB:-}" ]; then
		deb=$RDMA_VM_KERNEL_DEB
	else
		note "downloading $PKG=$PKG_VER"
		if ! (cd "$tmp" && apt-get download "$PKG=$PKG_VER" > "$tmp/apt.log" 2>&1); then
			cat "$tmp/apt.log" >&2
			rm -rf "$tmp"
			skip "cannot download kernel package $PKG=$PKG_VER with apt-get download"
		fi
		rm -f "$tmp/apt.log"
		deb=$(ls "$tmp"/*.deb)
	fi
	note "unpacking $(basename "$deb")"
	dpkg -x "$deb" "$tmp/modules" || { rm -rf "$tmp"; skip "dpkg -x $deb failed"; }
	rm -f "$tmp"/*.deb
	for d in "$tmp"/modules/lib/modules/*/; do
		[ -d "$d" ] && kver=$(basename "$d")
	done
	vmlinuz=$tmp/modules/boot/vmlinuz-$kver
	if [ -z "$kver" ] || [ ! -f "$vmlinuz" ]; then
		rm -rf "$tmp"
		skip "no kernel image in $deb"
	fi
	extract_vmlinux "$vmlinuz" "$tmp/vmlinux" ||
		{ rm -rf "$tmp"; skip "cannot extract vmlinux from $vmlinuz"; }
	depmod -b "$tmp/modules" "$kver" || { rm -rf "$tmp"; skip "depmod -b failed"; }
	# Only the modules are needed from here on; the image, System.map and docs are not.
	rm -rf "$tmp/modules/boot" "$tmp/modules/usr"
	echo "$kver" > "$tmp/kver"
	touch "$tmp/done"
	rm -rf "$dir"
	mv "$tmp" "$dir"
}

# Print the module paths (relative to lib/modules/KVER) to insmod, dependencies first.
module_order() {
	local moddir=$1
	awk -v want="$MODULES" '
		function norm(s) { sub(/.*\//, "", s); sub(/\.ko(\.[a-z]+)?$/, "", s);
			gsub(/-/, "_", s); return s }
		function visit(n,   i, k, d) {
			if (n in seen) return
			seen[n] = 1
			k = split(deps[n], d, " ")
			for (i = k; i >= 1; i--) visit(norm(d[i]))
			print path[n]
		}
		{ p = $1; sub(/:$/, "", p); n = norm(p); path[n] = p
		  $1 = ""; deps[n] = $0 }
		END { k = split(want, w, " ")
		      for (i = 1; i <= k; i++) { n = w[i]; gsub(/-/, "_", n); if (n in path) visit(n) } }
	' "$moddir/modules.dep"
}

# Build the initramfs for this kernel and init template; echo its path.
build_initramfs() {
	local kdir=$1 kver=$2 hash out tmp m
	hash=$( (cat "$INIT_TEMPLATE"; echo "$MODULES"; cksum < "$BUSYBOX") | cksum | cut -d' ' -f1)
	out=$kdir/initramfs-$hash.cpio
	if [ ! -e "$out" ]; then
		tmp=$(mktemp -d "$CACHE/.initramfs.XXXXXX")
		mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,mnt,newroot,tmp,etc}
		mkdir -p "$tmp/lib/modules/$kver"
		cp "$BUSYBOX" "$tmp/bin/busybox"
		ln -s busybox "$tmp/bin/sh"
		ln -s ../bin/busybox "$tmp/sbin/modprobe"
		cp "$INIT_TEMPLATE" "$tmp/init"
		chmod 755 "$tmp/init"
		module_order "$kdir/modules/lib/modules/$kver" > "$tmp/modules.order"
		while read -r m; do
			mkdir -p "$tmp/lib/modules/$kver/$(dirname "$m")"
			cp "$kdir/modules/lib/modules/$kver/$m" "$tmp/lib/modules/$kver/$m"
		done < "$tmp/modules.order"
		sed -i "s|^|$kver/|" "$tmp/modules.order"
		(cd "$tmp" && find . | sort | "$BUSYBOX" cpio -o -H newc 2> /dev/null) > "$tmp.cpio"
		mv "$tmp.cpio" "$out"
		rm -rf "$tmp"
		# Drop initramfs images of other init versions not used for a day.
		find "$kdir" -maxdepth 1 -name 'initramfs-*.cpio' -mtime +0 -delete 2> /dev/null || true
	fi
	touch "$out"
	echo "$out"
}

resolve_kernel
exec 9> "$CACHE/.lock"
flock 9
if [ ! -e "$CACHE/$KEY/done" ]; then
	build_kernel
fi
# The guest reaches the modules through the 9p view of the host's /, where a symlink in the
# path would resolve against the guest's root: use the physical path.
KDIR=$(cd "$CACHE/$KEY" && pwd -P)
KVER=$(cat "$KDIR/kver")
INITRAMFS=$(build_initramfs "$KDIR" "$KVER")
flock -u 9
exec 9>&-
if [ $PREPARE = 1 ]; then
	echo "$ME: ready: $KDIR/vmlinux $INITRAMFS (kernel $KVER)"
	exit 0
fi

# ---- the run --------------------------------------------------------------------------------

sq() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

WORK=$(pwd -P)
RUN=$(mktemp -d "${TMPDIR:-/tmp}/rdma-vm.XXXXXX")
QPID=''
TAILS=()

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	local p
	[ -z "$QPID" ] || kill "$QPID" 2> /dev/null || true
	for p in "${TAILS[@]}"; do kill "$p" 2> /dev/null || true; done
	if [ "$KEEP" = 1 ]; then note "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

{
	echo "RVM_KVER=$(sq "$KVER")"
	echo "RVM_MODDIR=$(sq "$KDIR/modules/lib/modules")"
	if [ "$WORK" = / ]; then echo "RVM_WORKDIR="; else echo "RVM_WORKDIR=$(sq "$WORK")"; fi
	echo "RVM_WORK_CACHE=${RDMA_VM_WORK_CACHE:-mmap}"
	echo "RVM_MSIZE=${RDMA_VM_MSIZE:-512000}"
	echo "RVM_TWO_NODES=$TWO_NODES"
} > "$RUN/config"

{
	echo "# generated by $ME"
	while read -r name; do
		case $name in
		PWD | OLDPWD | SHLVL | _ | HOSTNAME | RDMA_VM | RDMA_VM_* | BASH_* | SSH_* | DISPLAY) continue ;;
		TMPDIR | TMP | TEMP)
			case ${!name} in "$WORK"/*) ;; *) continue ;; esac ;;
		esac
		echo "export $name=$(sq "${!name}")"
	done < <(compgen -e)
	echo "cd $(sq "$WORK") || exit 125"
	if [ $# -eq 1 ]; then
		printf '%s\n' "$1"
	else
		printf 'exec'
		for a; do printf ' %s' "$(sq "$a")"; done
		echo
	fi
} > "$RUN/cmd.sh"

# Skip the delay-loop calibration of each CPU (0.7 s under TCG): loops per jiffy from the
# host's BogoMIPS (the guest's TSC runs at the host's rate) at the Debian kernel's HZ=250.
LPJ=$(awk '/^bogomips/ { printf "%d", $3 * 500000 / 250; exit }' /proc/cpuinfo 2> /dev/null) || true
# pci=noacpi: PCI interrupt routing from the BIOS table instead of ACPI's link devices, whose
# AML costs ~0.15 s per device under TCG; the virtio devices use MSI-X and MMIO BARs anyway.
APPEND="lpj=${LPJ:-10000000} console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off nokaslr"
APPEND+=" pci=noacpi"
APPEND+=" i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd tsc=reliable no_timer_check"
APPEND+=" random.trust_cpu=on ${RDMA_VM_APPEND:-}"

# Start one boot; sets QPID. Output files go to attempt directory $1.
start_guest() {
	local att=$1
	# shellcheck disable=SC2054 # the commas are inside qemu option values
	local -a args=(
		-name rdma-vm -nodefaults -no-user-config -display none -monitor none -no-reboot
		-machine pc -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM"
		-kernel "$KDIR/vmlinux" -initrd "$INITRAMFS" -append "$APPEND"
		-serial "file:$att/console" -serial "file:$att/stdout" -serial "file:$att/stderr"
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=
		-virtfs local,path=/,mount_tag=rvmroot,security_model=none,readonly=on,multidevs=remap
		-virtfs "local,path=$RUN,mount_tag=rvmctl,security_model=none"
	)
	if [ "$WORK" != / ]; then
		args+=(-virtfs "local,path=$WORK,mount_tag=rvmwork,security_model=none,multidevs=remap")
	fi
	timeout -k 10 "$TIMEOUT" "$QEMU" "${args[@]}" < /dev/null > "$att/qemu.log" 2>&1 &
	QPID=$!
}

# Show why attempt $1 failed.
explain() {
	local att=$1
	[ -s "$RUN/error" ] && note "guest setup failed: $(cat "$RUN/error")"
	[ -s "$att/qemu.log" ] && { note "qemu said:"; tail -n 20 "$att/qemu.log" >&2; }
	if [ -s "$att/console" ]; then
		note "last kernel messages (full console: run with --keep):"
		tail -n 30 "$att/console" >&2
	fi
}

booted=0
for try in $(seq 1 "$BOOT_TRIES"); do
	att=$RUN/attempt$try
	mkdir -p "$att"
	rm -f "$RUN/booted" "$RUN/status" "$RUN/error"
	start_guest "$att"
	if [ $CONSOLE = 1 ]; then
		tail -c +1 -s 0.1 -F --pid="$QPID" "$att/console" >&2 2> /dev/null &
		TAILS+=($!)
	fi
	deadline=$((SECONDS + BOOT_TIMEOUT))
	while [ ! -e "$RUN/booted" ] && kill -0 "$QPID" 2> /dev/null && [ $SECONDS -lt $deadline ]; do
		sleep 0.05
	done
	if [ -e "$RUN/booted" ]; then
		booted=1
		break
	fi
	kill "$QPID" 2> /dev/null || true
	wait "$QPID" 2> /dev/null || true
	QPID=''
	if [ $SECONDS -ge $deadline ]; then
		note "boot $try/$BOOT_TRIES did not come up within ${BOOT_TIMEOUT}s"
	else
		note "boot $try/$BOOT_TRIES failed"
	fi
	explain "$att"
done
[ $booted = 1 ] || die "guest did not come up after $BOOT_TRIES tries"

tail -c +1 -s 0.1 -f --pid="$QPID" "$att/stdout" &
TAILS+=($!)
tail -c +1 -s 0.1 -f --pid="$QPID" "$att/stderr" >&2 &
TAILS+=($!)
qrc=0
wait "$QPID" || qrc=$?
QPID=''
for p in "${TAILS[@]}"; do wait "$p" 2> /dev/null || true; done
TAILS=()

if [ -e "$RUN/status" ]; then
	exit "$(cat "$RUN/status")"
fi
if [ $qrc = 124 ] || [ $qrc = 137 ]; then
	note "guest timed out after ${TIMEOUT}s (--timeout / RDMA_VM_TIMEOUT)"
	explain "$att"
	exit 124
fi
note "guest ended without an exit status (qemu exit $qrc)"
explain "$att"
exit 125
