/* SPDX-License-Identifier: MIT */
/*
 * routes.c - the seven 3FS routes of kvfs-meta (see routes.h): path resolution, body decoding,
 * the calls into the store (hf3fs.c), the hand-written answers and the per-space gauges of
 * /metrics.
 *
 * A request's body is decoded once: the hot routes (exists, get, delete, reserve, confirm) try
 * the single-pass parser first (fastparse.c) and fall back to jansson for anything it does not
 * take, so error messages come from one decoder. Answers are written into an sbuf by hand: on
 * 128-key batches building a jansson tree was most of the server's time.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "routes.h"
#include "sbuf.h"
#include "server.h"

#define MAX_BATCH (1u << 20) /* array items per request */

enum {
	R_INITIALIZE,
	R_EXISTS,
	R_RESERVE,
	R_CONFIRM,
	R_DELETE,
	R_CLEAR,
	R_GET,
	R_COUNT,
};

static const struct {
	const char *name;
	const char *label; /* in /metrics */
	bool mutating;
} routes[R_COUNT] = {
	[R_INITIALIZE] = {"initialize", "/{rank}/initialize", true},
	[R_EXISTS] = {"exists", "/{rank}/exists", false},
	[R_RESERVE] = {"reserve_and_allocate_page_indices",
		       "/{rank}/reserve_and_allocate_page_indices", true},
	[R_CONFIRM] = {"confirm_write", "/{rank}/confirm_write", true},
	[R_DELETE] = {"delete_keys", "/{rank}/delete_keys", true},
	[R_CLEAR] = {"clear", "/{rank}/clear", true},
	/* takes a lease and counts a use, but changes nothing a client can see: a read */
	[R_GET] = {"get_page_indices", "/{rank}/get_page_indices", false},
};

/* "/{rank}/{name}": -ENOENT when not a 3FS route, -EINVAL when its rank is bad. */
static int resolve(const char *url, unsigned *ret_route, uint32_t *ret_rank)
{
	const char *slash;
	char *end;
	unsigned long rank;

	if (url[0] != '/' || !(slash = strchr(url + 1, '/')))
		return -ENOENT;
	for (unsigned r = 0; r < R_COUNT; r++) {
		if (strcmp(slash + 1, routes[r].name))
			continue;
		*ret_route = r;
		errno = 0;
		rank = strtoul(url + 1, &end, 10);
		if (end != slash || url[1] < '0' || url[1] > '9' || errno || rank > UINT32_MAX)
			return -EINVAL;
		*ret_rank = (uint32_t)rank;
		return 0;
	}
	return -ENOENT;
}

static const char *label(unsigned route)
{
	return routes[route].label;
}

static bool mutating(unsigned route)
{
	return routes[route].mutating;
}

/* The keys of @req (decoded with jansson, *ret_own: free them) or of @fb (borrowed). */
static int keys_of(const json_t *req, const struct kvfs_meta_3fs_body *fb, bool pairs,
		   struct kvfs_meta_hf3fs_key **ret, size_t *ret_n, bool *ret_own,
		   struct kvfs_meta_json_error *err)
{
	if (fb) {
		*ret = fb->keys;
		*ret_n = fb->nkeys;
		*ret_own = false;
		return 0;
	}
	*ret_own = true;
	return pairs ? kvfs_meta_json_3fs_key_pairs(req, MAX_BATCH, ret, ret_n, err)
		     : kvfs_meta_json_3fs_keys(req, MAX_BATCH, ret, ret_n, err);
}

/*
 * Route @route for @rank on @x's store. The body is either @req (jansson) or @fb (the fast
 * parser), never both. Answers as the route set's serve().
 */
static int run(const struct kvfs_meta_3fs_ctx *x, unsigned route, uint32_t rank, const json_t *req,
	       const struct kvfs_meta_3fs_body *fb, char **ret_body, size_t *ret_len,
	       unsigned *ret_status, struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_hf3fs_key *keys = NULL;
	struct sbuf out = {0};
	const char *ns;
	bool own = false;
	size_t n = 0;
	int r;

	if (!x || !x->store) {
		*ret_status = 503;
		return kvfs_meta_json_fail(err, -ENOTSUP, "3FS compatibility is disabled");
	}
	if (fb) {
		ns = fb->has_ns ? fb->ns : NULL;
	} else {
		r = kvfs_meta_json_3fs_namespace(req, &ns, err);
		if (r)
			return r;
	}

	switch (route) {
	case R_INITIALIZE: {
		uint64_t pages;

		r = kvfs_meta_json_u64(req, "num_pages", true, 0, &pages, err);
		if (!r)
			r = kvfs_meta_hf3fs_initialize(x->store, rank, ns, pages, NULL);
		if (r == -EINVAL && !err->msg[0])
			snprintf(err->msg, sizeof(err->msg), "num_pages must be at most %u",
				 KVFS_META_HF3FS_PAGES_MAX);
		break;
	}
	case R_EXISTS: {
		bool *ex;

		r = keys_of(req, fb, false, &keys, &n, &own, err);
		if (r)
			break;
		ex = malloc(n ? n : 1);
		if (!ex) {
			r = -ENOMEM;
			break;
		}
		r = kvfs_meta_hf3fs_exists(x->store, rank, ns, keys, n, ex);
		if (!r) {
			sb_reserve(&out, 16 + n * 6);
			sb_lit(&out, "{\"exists\":[");
			for (size_t i = 0; i < n; i++) {
				if (i)
					sb_lit(&out, ",");
				if (ex[i])
					sb_lit(&out, "true");
				else
					sb_lit(&out, "false");
			}
			sb_lit(&out, "]}");
		}
		free(ex);
		break;
	}
	case R_GET: {
		int64_t *idx;

		r = keys_of(req, fb, false, &keys, &n, &own, err);
		if (r)
			break;
		idx = malloc((n ? n : 1) * sizeof(*idx));
		if (!idx) {
			r = -ENOMEM;
			break;
		}
		r = kvfs_meta_hf3fs_get(x->store, rank, ns, keys, n, idx);
		if (!r) {
			sb_reserve(&out, 16 + n * 8);
			sb_lit(&out, "{\"indices\":[");
			for (size_t i = 0; i < n; i++) {
				if (i)
					sb_lit(&out, ",");
				if (idx[i] < 0)
					sb_lit(&out, "null");
				else
					sb_i64(&out, idx[i]);
			}
			sb_lit(&out, "]}");
		}
		free(idx);
		break;
	}
	case R_RESERVE: {
		struct kvfs_meta_hf3fs_reserve_result *res;

		r = keys_of(req, fb, true, &keys, &n, &own, err);
		if (r)
			break;
		res = malloc((n ? n : 1) * sizeof(*res));
		if (!res) {
			r = -ENOMEM;
			break;
		}
		r = kvfs_meta_hf3fs_reserve(x->store, rank, ns, keys, n, res);
		if (!r) {
			sb_reserve(&out, 16 + n * 16);
			sb_lit(&out, "{\"indices\":[");
			for (size_t i = 0; i < n; i++) {
				if (i)
					sb_lit(&out, ",");
				if (res[i].exists)
					sb_lit(&out, "[true,");
				else
					sb_lit(&out, "[false,");
				sb_i64(&out, res[i].index);
				sb_lit(&out, "]");
			}
			sb_lit(&out, "]}");
		}
		free(res);
		break;
	}
	case R_CONFIRM: {
		struct kvfs_meta_hf3fs_confirm *conf;
		int64_t *rel;
		size_t nc, nr;

		if (fb) {
			conf = fb->confirms;
			nc = fb->nconfirms;
			rel = fb->release;
			nr = fb->nrelease;
		} else {
			r = kvfs_meta_json_3fs_confirm(req, MAX_BATCH, &conf, &nc, &rel, &nr, err);
			if (r)
				break;
		}
		r = kvfs_meta_hf3fs_confirm(x->store, rank, ns, conf, nc, rel, nr);
		if (r == -EINVAL)
			snprintf(err->msg, sizeof(err->msg),
				 "a page index is outside [0, num_pages)");
		if (!fb) {
			free(conf);
			free(rel);
		}
		break;
	}
	case R_DELETE:
		r = keys_of(req, fb, false, &keys, &n, &own, err);
		if (!r)
			r = kvfs_meta_hf3fs_delete(x->store, rank, ns, keys, n, NULL);
		break;
	case R_CLEAR:
		r = kvfs_meta_hf3fs_clear(x->store, rank, ns);
		break;
	default:
		r = -ENOSYS;
	}
	if (own)
		free(keys);

	if (r == -ENOENT)
		snprintf(err->msg, sizeof(err->msg),
			 "Rank %" PRIu32 " namespace '%s' not initialized. Please call /%" PRIu32
			 "/initialize first.",
			 rank, ns ? ns : KVFS_META_HF3FS_DEFAULT_NS, rank);
	else if (r == -EINVAL && !err->msg[0])
		snprintf(err->msg, sizeof(err->msg), "a key is longer than %d bytes",
			 KVFS_META_HF3FS_KEY_MAX);
	if (!r && out.failed)
		r = kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
	if (r) {
		free(out.p);
		return r;
	}
	*ret_body = out.p; /* NULL when nothing was written: 204 */
	*ret_len = out.len;
	return 0;
}

static int serve(void *ctx, unsigned route, uint32_t rank, const char *body, size_t len,
		 char **ret_body, size_t *ret_len, unsigned *ret_status,
		 struct kvfs_meta_json_error *err)
{
	const struct kvfs_meta_3fs_ctx *x = ctx;
	json_t *req = NULL;
	int r = 0;

	/* The hot bodies take the fast parser; what it does not handle goes to jansson. */
	if (route == R_EXISTS || route == R_GET || route == R_DELETE || route == R_RESERVE ||
	    route == R_CONFIRM) {
		struct kvfs_meta_3fs_body fb;
		enum kvfs_meta_3fs_shape shape = route == R_RESERVE   ? KVFS_META_3FS_KEY_PAIRS
						 : route == R_CONFIRM ? KVFS_META_3FS_CONFIRM
								      : KVFS_META_3FS_KEYS;

		if (!(x && x->no_fast_parse) &&
		    kvfs_meta_fast_3fs(body, len, shape, MAX_BATCH, &fb) == 0) {
			r = run(x, route, rank, NULL, &fb, ret_body, ret_len, ret_status, err);
			kvfs_meta_fast_3fs_free(&fb);
			return r;
		}
	}

	/* The reference's clear is sent with a body; accept an empty one there too. */
	if (!len && route == R_CLEAR)
		req = json_object();
	else
		r = kvfs_meta_json_parse(body, len, &req, err);
	if (!req) {
		*ret_status = 400;
		return r;
	}
	r = run(x, route, rank, req, NULL, ret_body, ret_len, ret_status, err);
	json_decref(req);
	return r;
}

/* ---- /metrics ---- */

static void metrics_space(void *ctx, uint32_t rank, const char *ns,
			  const struct kvfs_meta_hf3fs_stats *st)
{
	struct sbuf *b = ctx;
	const struct {
		const char *name;
		uint64_t v;
	} g[] = {
		{"kvfs_meta_3fs_pages", st->num_pages},
		{"kvfs_meta_3fs_keys", st->keys},
		{"kvfs_meta_3fs_pages_pending", st->pending},
		{"kvfs_meta_3fs_pages_free", st->free},
		{"kvfs_meta_3fs_evictions_total", st->evictions},
		{"kvfs_meta_3fs_reclaimed_total", st->reclaimed},
		{"kvfs_meta_3fs_lease_skips_total", st->lease_skips},
		{"kvfs_meta_3fs_rejected_total", st->rejected},
		{"kvfs_meta_3fs_full_total", st->full},
	};

	/* Namespaces are plain strings from clients: escape for the label. */
	char esc[2 * KVFS_META_HF3FS_NS_MAX + 1], *o = esc;

	for (const char *p = ns; *p; p++) {
		if (*p == '"' || *p == '\\')
			*o++ = '\\';
		*o++ = *p == '\n' ? ' ' : *p;
	}
	*o = 0;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		sb_printf(b, "%s{rank=\"%" PRIu32 "\",namespace=\"%s\"} %" PRIu64 "\n", g[i].name,
			  rank, esc, g[i].v);
}

static int metrics(void *ctx, char **ret_text, size_t *ret_len)
{
	const struct kvfs_meta_3fs_ctx *x = ctx;
	struct sbuf b = {0};

	if (x && x->store) {
		sb_lit(&b, "# 3FS state per (rank, namespace): gauges and counters since start.\n");
		kvfs_meta_hf3fs_foreach(x->store, metrics_space, &b);
	}
	if (b.failed) {
		free(b.p);
		return -ENOMEM;
	}
	*ret_text = b.p;
	*ret_len = b.len;
	return 0;
}

const struct kvfs_meta_route_set kvfs_meta_3fs_routes = {
	.n = R_COUNT,
	.bad_param = "rank must be an unsigned 32-bit integer",
	.resolve = resolve,
	.label = label,
	.mutating = mutating,
	.serve = serve,
	.metrics = metrics,
};
