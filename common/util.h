/* SPDX-License-Identifier: MIT */
/*
 * util.h - the small helpers every part of kvfs needs once: sizes as people write them, clocks,
 * directories, and big-endian integers for keys that must sort as numbers (LMDB compares
 * keys as bytes).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

/*
 * Parse a size as people write it: digits, then optionally K, M, G, T, P or E (powers of 1024,
 * either case) followed by an optional "iB" or "B", or just "B". Returns 0 and *ret, -EINVAL
 * (not a size) or -ERANGE (above 2^64 - 1). *ret is written only on success.
 */
int kvfs_parse_size(const char *s, uint64_t *ret);

/* Now on @clk, in nanoseconds or milliseconds. */
int64_t kvfs_now_ns(clockid_t clk);
int64_t kvfs_now_ms(clockid_t clk);

/*
 * Parse "host:port" or "[v6]:port" (a host name is resolved, which may block; the port is a
 * number, 0 allowed). @passive: an address to bind, where an empty host or "*" means any IPv4
 * address. Returns 0 with the address and its length, or -EINVAL.
 */
int kvfs_parse_addr(const char *s, bool passive, struct sockaddr_storage *ret_sa,
		    socklen_t *ret_len);

/* mkdir -p: create @path and its missing parents with @mode. Returns 0 or a negative errno. */
int kvfs_mkdir_p(const char *path, mode_t mode);

static inline void kvfs_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline void kvfs_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint32_t kvfs_get_be32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t kvfs_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}
