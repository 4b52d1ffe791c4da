/* SPDX-License-Identifier: MIT */
/*
 * sbuf.h - private to metadata/: a growable output buffer for answers written by hand (the
 * server's /metrics, the 3FS routes' JSON). On allocation failure it sticks at failed and
 * ignores further appends; the writer checks once at the end. Not thread-safe: one per answer.
 */
#pragma once

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sbuf {
	char *p; /* malloc'd; NULL until the first append */
	size_t len, cap;
	bool failed;
};

static inline void sb_reserve(struct sbuf *b, size_t more)
{
	size_t cap;
	char *np;

	if (b->failed || b->len + more <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	np = realloc(b->p, cap);
	if (!np) {
		b->failed = true;
		return;
	}
	b->p = np;
	b->cap = cap;
}

static inline void sb_add(struct sbuf *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	if (b->failed)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define sb_lit(b, s) sb_add(b, s, sizeof(s) - 1)

static inline void sb_printf(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static inline void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	sb_reserve(b, (size_t)n + 1);
	if (b->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

static inline void sb_i64(struct sbuf *b, int64_t x)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%" PRId64, x);

	sb_add(b, tmp, (size_t)n);
}
