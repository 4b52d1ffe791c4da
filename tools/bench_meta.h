/* SPDX-License-Identifier: MIT */
/*
 * bench_meta.h - `kvfs-bench meta`: kvfs-meta's 3FS routes under load (tools/bench_meta.c).
 */
#pragma once

/*
 * Run the benchmark with its own options (argv[0] is "meta"; --help lists them). Prints a table
 * and one JSON line to stdout. Returns the process exit code: 0, 1 on a failure (service
 * unreachable, an unexpected answer), 2 for bad options.
 */
int kvfs_bench_meta_main(int argc, char **argv);
