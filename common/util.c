/* SPDX-License-Identifier: MIT */
/*
 * util.c - see util.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
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

int kvfs_parse_addr(const char *s, bool passive, struct sockaddr_storage *ret_sa,
		    socklen_t *ret_len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai;
	char host[256];
	const char *port, *end;
	char *endp;
	size_t hlen;
	unsigned long pnum;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		s++;
		port = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		port = end + 1;
	}
	hlen = (size_t)(end - s);
	if (hlen >= sizeof(host) || !isdigit((unsigned char)*port))
		return -EINVAL;
	errno = 0;
	pnum = strtoul(port, &endp, 10);
	if (errno || *endp || pnum > 65535)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(ret_sa, 0, sizeof(*ret_sa));
	if (passive && (!hlen || !strcmp(host, "*"))) {
		struct sockaddr_in *in = (struct sockaddr_in *)ret_sa;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)pnum);
		*ret_len = sizeof(*in);
		return 0;
	}
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	if (getaddrinfo(hlen ? host : NULL, port, &hints, &ai) != 0)
		return -EINVAL;
	if (ai->ai_addrlen > sizeof(*ret_sa)) {
		freeaddrinfo(ai);
		return -EINVAL;
	}
	memcpy(ret_sa, ai->ai_addr, ai->ai_addrlen);
	*ret_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
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
