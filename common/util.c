/* SPDX-License-Identifier: MIT */
/*
 * util.c - see util.h.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

int kvfs_parse_size(const char *s, uint64_t *ret)
{
	static const char units[] = "KMGTPE";
	const char *u;
	unsigned shift = 0;
	uint64_t v = 0, x;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++)
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
			return -ERANGE;
	if (*s && (u = strchr(units, toupper((unsigned char)*s)))) {
		shift = 10 * (unsigned)(u - units + 1);
		s++;
		if (toupper((unsigned char)*s) == 'I')
			s++;
	}
	if (toupper((unsigned char)*s) == 'B')
		s++;
	if (*s)
		return -EINVAL;
	if (__builtin_mul_overflow(v, (uint64_t)1 << shift, &x))
		return -ERANGE;
	*ret = x;
	return 0;
}

int64_t kvfs_now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

int64_t kvfs_now_ms(clockid_t clk)
{
	return kvfs_now_ns(clk) / 1000000;
}

int kvfs_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}
