#!/usr/bin/env bash
# Install what is missing, build, and run every test suite:
#   1. format check (clang-format, the repo's .clang-format)
#   2. normal build: unit + integration (+ multinode/rdma when present) suites
#   3. a bounded libFuzzer run over the metadata request decoding (when clang is present)
#   4. release build (buildtype=release, -O3, in build-release): the unit suites again; gcc
#      reports some warnings (maybe-uninitialized) only at -O2 and above, and -Werror is on,
#      so a release build that does not build must fail the run here, not at benchmark time
#   5. sanitizer build (ASan + UBSan): the unit suites again, and the daemon under the most
#      concurrent integration cases
# Prints one closing line "N passed, N failed, N skipped" and exits non-zero on any failure.
#
#   scripts/test.sh [--quick]   (--quick: skip the sanitizer build)
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
quick=0
[ "${1:-}" = "--quick" ] && quick=1

scripts/setup.sh || { echo "test.sh: setup failed"; exit 1; }

passed=0 failed=0 skipped=0
failures=()

# Count the results of one `meson test` run from its JSON log.
tally() {
	local log=$1 label=$2
	local counts
	counts=$(python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
names = []
for line in open(sys.argv[1]):
    t = json.loads(line)
    r = t.get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
        names.append(t.get("name", "?"))
print(p, f, s, " ".join(names))
PY
)
	read -r p f s names <<<"$counts"
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	if [ "$f" -gt 0 ]; then
		failures+=("$label: $names")
	fi
}

step() { printf '\n==== %s ====\n' "$*"; }

step "format check"
fmt_bad=()
while IFS= read -r f; do
	clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || fmt_bad+=("$f")
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find fs pool rdma metadata tools tests -name '*.[ch]')
if [ ${#fmt_bad[@]} -eq 0 ]; then
	echo "format: ok"; passed=$((passed + 1))
else
	echo "format: not formatted: ${fmt_bad[*]}"; failed=$((failed + 1)); failures+=("format: ${fmt_bad[*]}")
fi

step "build"
if [ ! -f build/build.ninja ]; then
	meson setup build || { echo "test.sh: meson setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C build || { echo "test.sh: build failed"; echo "0 passed, 1 failed"; exit 1; }

# List once: a listing that fails must fail the run, not silently skip suites.
if ! listing=$(meson test -C build --list 2>&1); then
	echo "$listing"; echo "test.sh: cannot list the tests"; echo "0 passed, 1 failed"; exit 1
fi
for suite in unit integration multinode rdma; do
	if ! grep -q "^kvfs:$suite / " <<<"$listing"; then
		case $suite in
		unit | integration) failed=$((failed + 1)); failures+=("$suite: no tests registered") ;;
		esac
		continue
	fi
	step "suite $suite"
	meson test -C build --suite "$suite" --print-errorlogs --num-processes 1 \
		--logbase "testlog-$suite"
	tally "build/meson-logs/testlog-$suite.json" "$suite"
done

step "fuzz: request decoding (libFuzzer, ${KVFS_FUZZ_SECONDS:-60} s)"
mkdir -p build/fuzz
tests/fuzz/run.sh "${KVFS_FUZZ_SECONDS:-60}" "$top/build/fuzz" >build/fuzz/run.log 2>&1
fuzz_rc=$?
tail -n 3 build/fuzz/run.log
case $fuzz_rc in
0) passed=$((passed + 1)) ;;
77) skipped=$((skipped + 1)) ;;
*) failed=$((failed + 1)); failures+=("fuzz: see build/fuzz") ;;
esac

step "release build (buildtype=release): unit suites"
if [ ! -f build-release/build.ninja ]; then
	meson setup build-release --buildtype=release
fi
if ninja -C build-release; then
	meson test -C build-release --suite unit --print-errorlogs --logbase testlog-release
	tally "build-release/meson-logs/testlog-release.json" "release-unit"
else
	failed=$((failed + 1)); failures+=("release: build failed")
fi

if [ $quick -eq 0 ]; then
	step "sanitizer build (address,undefined): unit suites"
	if [ ! -f build-asan/build.ninja ]; then
		meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
	fi
	if ninja -C build-asan; then
		meson test -C build-asan --suite unit --print-errorlogs --logbase testlog-asan
		tally "build-asan/meson-logs/testlog-asan.json" "asan-unit"
		# the daemon itself under ASan/UBSan, on the cases with the most concurrency: races
		# between a reply and the kernel's RELEASE show up here and nowhere else
		step "sanitizer build: daemon under concurrent integration cases"
		meson test -C build-asan --suite integration --print-errorlogs --num-processes 1 \
			--logbase testlog-asan-it signals signals-http hicache_file hicache_file-http \
			fio_verify fio_verify-http shell-http
		tally "build-asan/meson-logs/testlog-asan-it.json" "asan-integration"
	else
		failed=$((failed + 1)); failures+=("asan: build failed")
	fi
fi

echo
for f in "${failures[@]}"; do echo "FAILED $f"; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
