/* SPDX-License-Identifier: MIT */
/*
 * check_main.h - the contract between a Check runner's test file and the main() all runners
 * share (check_main.c).
 *
 * A runner is tests/unit/test_<module>.c linked with check_main.c: the test file defines its
 * tests and unit_suite(); main() runs the suite in Check's default mode (each test forked,
 * CK_DEFAULT_TIMEOUT and CK_RUN_CASE/CK_RUN_SUITE from the environment, Check's closing
 * "NN%: Checks: ..." line on stdout) and exits 0 when every test passed, 1 when one failed and
 * 77 (meson SKIP) when the runner cannot run here.
 */
#pragma once

#include <check.h>

/*
 * The suite this runner runs, with its test cases and their timeouts. main() owns it from then
 * on. Returns NULL when a prerequisite is missing, after printing "SKIP: <reason>" to stderr.
 * Runs before any test, in the runner's own process: it may also set process-wide state every
 * test needs (e.g. ignore SIGPIPE).
 */
Suite *unit_suite(void);
