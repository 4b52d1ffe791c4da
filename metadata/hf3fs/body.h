/* SPDX-License-Identifier: MIT */
/*
 * body.h - private to metadata/: the request bodies of the 3FS routes, decoded two ways: with
 * jansson (body.c, strict, with a precise message for every error) and with a single-pass
 * parser for the hot routes (fastparse.c). A body the fast parser accepts, the jansson path
 * accepts with the same meaning; the fuzz target tests/fuzz/fuzz_request.c checks exactly that.
 * Thread-safe; neither keeps a pointer to its input beyond what the results point into.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "hf3fs.h"

/*
 * Request bodies with jansson. "namespace" is optional (NULL when missing, meaning "kv"); the
 * returned pointer is into @req. Each key array is malloc'd by the decoder (free() it) and
 * points into @req's strings. @max bounds the array length (-EINVAL beyond). Errors as
 * codec.h's decoders: -EPROTO for a wrong type or missing field, -EINVAL out of range.
 */
int kvfs_meta_json_3fs_namespace(const json_t *req, const char **ret_ns,
				 struct kvfs_meta_json_error *err);
/* {"keys": ["k", ...]} (exists, delete_keys, get_page_indices) */
int kvfs_meta_json_3fs_keys(const json_t *req, size_t max, struct kvfs_meta_hf3fs_key **ret,
			    size_t *ret_n, struct kvfs_meta_json_error *err);
/* {"keys": [["k", "prefix"], ...]} (reserve_and_allocate_page_indices). The prefix key must be
 * a string or null and is otherwise unused. */
int kvfs_meta_json_3fs_key_pairs(const json_t *req, size_t max, struct kvfs_meta_hf3fs_key **ret,
				 size_t *ret_n, struct kvfs_meta_json_error *err);
/* {"written_keys_to_confirm": [["k", index], ...], "pages_to_release": [index, ...]}, both
 * optional (empty). */
int kvfs_meta_json_3fs_confirm(const json_t *req, size_t max,
			       struct kvfs_meta_hf3fs_confirm **ret_confirms, size_t *ret_nc,
			       int64_t **ret_release, size_t *ret_nr,
			       struct kvfs_meta_json_error *err);
/*
 * The fast path for the hot 3FS bodies (fastparse.c): one pass over the raw body, keys as
 * (pointer, length) into @body, no per-key allocation. It accepts a strict subset of what the
 * jansson decoders above accept, with the same meaning: ASCII strings without escapes, integers
 * without fraction or exponent, only the route's fields ("namespace" plus "keys", or
 * "written_keys_to_confirm" and "pages_to_release"), each at most once, keys of at most
 * KVFS_META_HF3FS_KEY_MAX bytes, at most @max items per array. Returns 0 and fills *ret (free
 * with kvfs_meta_fast_3fs_free(); @body must outlive it), or -EAGAIN for anything else -
 * malformed bodies included - after which the caller decodes with jansson, which accepts the
 * body or reports the precise error. Never reads beyond @len; @body need not be NUL-terminated.
 */
enum kvfs_meta_3fs_shape {
	KVFS_META_3FS_KEYS,	 /* {"keys": ["k", ...]} */
	KVFS_META_3FS_KEY_PAIRS, /* {"keys": [["k", "prefix" | null], ...]} */
	KVFS_META_3FS_CONFIRM,	 /* {"written_keys_to_confirm": [...], "pages_to_release": [...]} */
};

struct kvfs_meta_3fs_body {
	char ns[KVFS_META_HF3FS_NS_MAX + 1];
	bool has_ns; /* false: no "namespace" (or null), meaning "kv" */
	struct kvfs_meta_hf3fs_key *keys;
	size_t nkeys;
	struct kvfs_meta_hf3fs_confirm *confirms;
	size_t nconfirms;
	int64_t *release;
	size_t nrelease;
};

int kvfs_meta_fast_3fs(const char *body, size_t len, enum kvfs_meta_3fs_shape shape, size_t max,
		       struct kvfs_meta_3fs_body *ret);
void kvfs_meta_fast_3fs_free(struct kvfs_meta_3fs_body *b);
