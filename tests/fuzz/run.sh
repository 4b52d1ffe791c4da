#!/bin/bash
# SPDX-License-Identifier: MIT
#
# run.sh - build the request-decoding fuzz target with clang (libFuzzer + ASan + UBSan) and run
# it for a bounded time. scripts/test.sh calls this when clang is present.
#
# usage: tests/fuzz/run.sh SECONDS [BUILD_DIR]     (exit 0 pass, 1 crash/failure, 77 skip)
#
# The corpus starts from tests/fuzz/corpus (read only) and grows in BUILD_DIR/corpus; a crash
# leaves its input in BUILD_DIR as crash-*, which the target reproduces when passed as argument.

set -u
SECS=${1:-30}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${2:-${TMPDIR:-/tmp}/kvfs-fuzz}
CC=${CLANG:-clang}

command -v "$CC" >/dev/null || { echo "SKIP: clang not installed"; exit 77; }
pkg-config --exists jansson 2>/dev/null || [ -e /usr/include/jansson.h ] ||
	{ echo "SKIP: jansson headers missing"; exit 77; }
mkdir -p "$OUT/corpus" || exit 1
OUT=$(cd "$OUT" && pwd) # absolute: the run below changes into it

# shellcheck disable=SC2046
if ! "$CC" -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE \
	-I"$ROOT/metadata/http" -I"$ROOT/metadata/hf3fs" -I"$ROOT/metadata/include" \
	"$ROOT/tests/fuzz/fuzz_request.c" "$ROOT/metadata/http/codec.c" \
	"$ROOT/metadata/hf3fs/body.c" "$ROOT/metadata/hf3fs/fastparse.c" \
	$(pkg-config --cflags --libs jansson 2>/dev/null || echo -ljansson) \
	-o "$OUT/fuzz_request" 2>"$OUT/build.log"; then
	if grep -q "fuzzer" "$OUT/build.log" && ! grep -q "error:" "$OUT/build.log"; then
		echo "SKIP: this clang has no libFuzzer"; exit 77
	fi
	cat "$OUT/build.log"; exit 1
fi

cd "$OUT" || exit 1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	./fuzz_request -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 "$OUT/corpus" "$ROOT/tests/fuzz/corpus" >"$OUT/fuzz.log" 2>&1
rc=$?
tail -n 15 "$OUT/fuzz.log"
if [ $rc -ne 0 ]; then
	echo "FAIL: fuzz_request found a crash (input in $OUT/crash-*)"
	exit 1
fi
echo "ok: fuzz_request ran ${SECS}s without a failure"
