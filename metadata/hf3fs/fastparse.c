/* SPDX-License-Identifier: MIT */
/*
 * fastparse.c - a strict single-pass parser for the hot 3FS request bodies (exists,
 * get_page_indices, delete_keys, reserve_and_allocate_page_indices, confirm_write).
 *
 * jansson builds a tree with one allocation per key (and per pair), which was most of the
 * server's time on 128-key batches. This parser walks the body once and returns keys as
 * (pointer, length) into the body, with one allocation per array.
 *
 * It handles a strict subset of JSON: the bodies real clients send (ASCII strings without
 * escapes, integers without fraction or exponent, only the route's own fields, each once).
 * Anything else - including every malformed body - answers -EAGAIN, and the caller parses the
 * body with jansson (codec.c), which then accepts it or produces the exact error. So a body
 * this parser accepts is a body the jansson path accepts with the same meaning (the fuzz target
 * tests/fuzz/fuzz_request.c checks exactly that), and error messages come from one place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

struct cur {
	const char *p, *end;
};

static void ws(struct cur *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
		c->p++;
}

static bool eat(struct cur *c, char ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static bool eat_null(struct cur *c)
{
	ws(c);
	if (c->end - c->p >= 4 && !memcmp(c->p, "null", 4)) {
		c->p += 4;
		return true;
	}
	return false;
}

/* A string of ASCII without escapes or control characters. */
static bool str(struct cur *c, const char **ret, size_t *ret_len)
{
	const char *s, *q;

	if (!eat(c, '"'))
		return false;
	s = c->p;
	q = memchr(s, '"', (size_t)(c->end - s));
	if (!q)
		return false;
	for (const char *x = s; x < q; x++) {
		unsigned char ch = (unsigned char)*x;

		if (ch < 0x20 || ch >= 0x80 || ch == '\\')
			return false;
	}
	c->p = q + 1;
	*ret = s;
	*ret_len = (size_t)(q - s);
	return true;
}

/* An integer in [-10^18, 10^18]: no fraction, no exponent, no leading zeros. */
static bool integer(struct cur *c, int64_t *ret)
{
	bool neg = false;
	int64_t v = 0;
	int digits = 0;

	ws(c);
	if (c->p < c->end && *c->p == '-') {
		neg = true;
		c->p++;
	}
	if (c->p < c->end && *c->p == '0' && c->end - c->p > 1 && c->p[1] >= '0' && c->p[1] <= '9')
		return false;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (++digits > 18)
			return false;
		v = v * 10 + (*c->p++ - '0');
	}
	if (!digits)
		return false;
	if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
		return false;
	*ret = neg ? -v : v;
	return true;
}

/* Append to a growable array of @size-byte items. */
static bool push(void **arr, size_t *n, size_t *cap, size_t size, const void *item)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 128;
		void *na = realloc(*arr, nc * size);

		if (!na)
			return false;
		*arr = na;
		*cap = nc;
	}
	memcpy((char *)*arr + *n * size, item, size);
	(*n)++;
	return true;
}

static bool key(struct cur *c, struct kvfs_meta_hf3fs_key *ret)
{
	const char *s;
	size_t len;

	if (!str(c, &s, &len) || len > KVFS_META_HF3FS_KEY_MAX)
		return false;
	ret->ptr = s;
	ret->len = len;
	return true;
}

/* ["k", ...] or [["k", "prefix"|null], ...] */
static bool keys(struct cur *c, bool pairs, size_t max, struct kvfs_meta_3fs_body *b)
{
	size_t cap = 0;

	if (!eat(c, '['))
		return false;
	if (eat(c, ']'))
		return true;
	do {
		struct kvfs_meta_hf3fs_key k;

		if (pairs) {
			const char *ps;
			size_t pl;

			if (!eat(c, '[') || !key(c, &k) || !eat(c, ','))
				return false;
			if (!eat_null(c) && !str(c, &ps, &pl))
				return false;
			if (!eat(c, ']'))
				return false;
		} else if (!key(c, &k)) {
			return false;
		}
		if (b->nkeys >= max || !push((void **)&b->keys, &b->nkeys, &cap, sizeof(k), &k))
			return false;
	} while (eat(c, ','));
	return eat(c, ']');
}

/* [["k", index], ...] */
static bool confirms(struct cur *c, size_t max, struct kvfs_meta_3fs_body *b)
{
	size_t cap = 0;

	if (!eat(c, '['))
		return false;
	if (eat(c, ']'))
		return true;
	do {
		struct kvfs_meta_hf3fs_confirm cf;

		if (!eat(c, '[') || !key(c, &cf.key) || !eat(c, ',') || !integer(c, &cf.index) ||
		    !eat(c, ']'))
			return false;
		if (b->nconfirms >= max ||
		    !push((void **)&b->confirms, &b->nconfirms, &cap, sizeof(cf), &cf))
			return false;
	} while (eat(c, ','));
	return eat(c, ']');
}

/* [index, ...] */
static bool releases(struct cur *c, size_t max, struct kvfs_meta_3fs_body *b)
{
	size_t cap = 0;

	if (!eat(c, '['))
		return false;
	if (eat(c, ']'))
		return true;
	do {
		int64_t v;

		if (!integer(c, &v) || b->nrelease >= max ||
		    !push((void **)&b->release, &b->nrelease, &cap, sizeof(v), &v))
			return false;
	} while (eat(c, ','));
	return eat(c, ']');
}

static bool field_is(const char *s, size_t len, const char *name)
{
	return strlen(name) == len && !memcmp(s, name, len);
}

static bool parse(struct cur *c, enum kvfs_meta_3fs_shape shape, size_t max,
		  struct kvfs_meta_3fs_body *b)
{
	bool seen_ns = false, seen_keys = false, seen_conf = false, seen_rel = false;

	if (!eat(c, '{'))
		return false;
	if (!eat(c, '}')) {
		do {
			const char *f, *ns;
			size_t fl, nl;

			if (!str(c, &f, &fl) || !eat(c, ':'))
				return false;
			if (field_is(f, fl, "namespace")) {
				if (seen_ns)
					return false;
				seen_ns = true;
				if (eat_null(c))
					continue;
				if (!str(c, &ns, &nl) || nl > KVFS_META_HF3FS_NS_MAX)
					return false;
				memcpy(b->ns, ns, nl);
				b->ns[nl] = 0;
				b->has_ns = true;
			} else if (shape != KVFS_META_3FS_CONFIRM && field_is(f, fl, "keys")) {
				if (seen_keys)
					return false;
				seen_keys = true;
				if (!keys(c, shape == KVFS_META_3FS_KEY_PAIRS, max, b))
					return false;
			} else if (shape == KVFS_META_3FS_CONFIRM &&
				   field_is(f, fl, "written_keys_to_confirm")) {
				if (seen_conf)
					return false;
				seen_conf = true;
				if (!eat_null(c) && !confirms(c, max, b))
					return false;
			} else if (shape == KVFS_META_3FS_CONFIRM &&
				   field_is(f, fl, "pages_to_release")) {
				if (seen_rel)
					return false;
				seen_rel = true;
				if (!eat_null(c) && !releases(c, max, b))
					return false;
			} else {
				return false; /* another field: let jansson check and skip it */
			}
		} while (eat(c, ','));
		if (!eat(c, '}'))
			return false;
	}
	ws(c);
	if (c->p != c->end)
		return false;
	return shape == KVFS_META_3FS_CONFIRM || seen_keys;
}

int kvfs_meta_fast_3fs(const char *body, size_t len, enum kvfs_meta_3fs_shape shape, size_t max,
		       struct kvfs_meta_3fs_body *ret)
{
	struct kvfs_meta_3fs_body b;
	struct cur c = {body, body + len};

	memset(&b, 0, sizeof(b));
	if (!body || !parse(&c, shape, max, &b)) {
		kvfs_meta_fast_3fs_free(&b);
		return -EAGAIN;
	}
	*ret = b;
	return 0;
}

void kvfs_meta_fast_3fs_free(struct kvfs_meta_3fs_body *b)
{
	if (!b)
		return;
	free(b->keys);
	free(b->confirms);
	free(b->release);
	b->keys = NULL;
	b->confirms = NULL;
	b->release = NULL;
}
