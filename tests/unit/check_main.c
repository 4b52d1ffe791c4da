/* SPDX-License-Identifier: MIT */
/*
 * check_main.c - the one main() of the Check runners (see check_main.h): each runner under
 * tests/unit/ is its test file plus this, so how a runner starts, reports and exits is said
 * once.
 */
#include <stdlib.h>

#include "check_main.h"

int main(void)
{
	Suite *s = unit_suite();
	SRunner *sr;
	int failed;

	if (!s)
		return 77;
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
