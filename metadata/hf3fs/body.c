/* SPDX-License-Identifier: MIT */
/*
 * body.c - the 3FS request bodies with jansson (see body.h): the path every body takes that
 * the fast parser (fastparse.c) does not, and so the one place their error messages come from.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int kvfs_meta_json_3fs_namespace(const json_t *req, const char **ret_ns,
				 struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	int r = kvfs_meta_json_field(req, "namespace", false, &v, err);

	if (r)
		return r;
	if (!v) {
		*ret_ns = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field 'namespace' must be a string");
	if (json_string_length(v) > KVFS_META_HF3FS_NS_MAX ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return kvfs_meta_json_fail(err, -EINVAL,
					   "field 'namespace' must be at most %d bytes, no NUL",
					   KVFS_META_HF3FS_NS_MAX);
	*ret_ns = json_string_value(v);
	return 0;
}

static int key_of(const json_t *v, const char *what, size_t i, struct kvfs_meta_hf3fs_key *ret,
		  struct kvfs_meta_json_error *err)
{
	if (!json_is_string(v))
		return kvfs_meta_json_fail(err, -EPROTO, "%s %zu must be a string", what, i);
	if (json_string_length(v) > KVFS_META_HF3FS_KEY_MAX)
		return kvfs_meta_json_fail(err, -EINVAL, "%s %zu is longer than %d bytes", what, i,
					   KVFS_META_HF3FS_KEY_MAX);
	*ret = (struct kvfs_meta_hf3fs_key){json_string_value(v), json_string_length(v)};
	return 0;
}

int kvfs_meta_json_3fs_keys(const json_t *req, size_t max, struct kvfs_meta_hf3fs_key **ret,
			    size_t *ret_n, struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_hf3fs_key *keys;
	json_t *arr = NULL;
	size_t n;
	int r = kvfs_meta_json_array(req, "keys", true, max, &arr, err);

	if (r)
		return r;
	n = json_array_size(arr);
	keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!keys)
		return kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		r = key_of(json_array_get(arr, i), "key", i, &keys[i], err);
		if (r) {
			free(keys);
			return r;
		}
	}
	*ret = keys;
	*ret_n = n;
	return 0;
}

int kvfs_meta_json_3fs_key_pairs(const json_t *req, size_t max, struct kvfs_meta_hf3fs_key **ret,
				 size_t *ret_n, struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_hf3fs_key *keys;
	json_t *arr = NULL;
	size_t n;
	int r = kvfs_meta_json_array(req, "keys", true, max, &arr, err);

	if (r)
		return r;
	n = json_array_size(arr);
	keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!keys)
		return kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *t = json_array_get(arr, i), *prefix;

		if (!json_is_array(t) || json_array_size(t) != 2) {
			r = kvfs_meta_json_fail(err, -EPROTO, "keys[%zu] must be [key, prefix_key]",
						i);
			goto err_free;
		}
		prefix = json_array_get(t, 1);
		if (!json_is_string(prefix) && !json_is_null(prefix)) {
			r = kvfs_meta_json_fail(
				err, -EPROTO, "keys[%zu]: prefix_key must be a string or null", i);
			goto err_free;
		}
		r = key_of(json_array_get(t, 0), "key", i, &keys[i], err);
		if (r)
			goto err_free;
	}
	*ret = keys;
	*ret_n = n;
	return 0;

err_free:
	free(keys);
	return r;
}

int kvfs_meta_json_3fs_confirm(const json_t *req, size_t max,
			       struct kvfs_meta_hf3fs_confirm **ret_confirms, size_t *ret_nc,
			       int64_t **ret_release, size_t *ret_nr,
			       struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_hf3fs_confirm *c = NULL;
	int64_t *rel = NULL;
	json_t *ca = NULL, *ra = NULL;
	size_t nc, nr;
	int r;

	if ((r = kvfs_meta_json_array(req, "written_keys_to_confirm", false, max, &ca, err)) ||
	    (r = kvfs_meta_json_array(req, "pages_to_release", false, max, &ra, err)))
		return r;
	nc = ca ? json_array_size(ca) : 0;
	nr = ra ? json_array_size(ra) : 0;
	c = malloc((nc ? nc : 1) * sizeof(*c));
	rel = malloc((nr ? nr : 1) * sizeof(*rel));
	if (!c || !rel) {
		r = kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
		goto err_free;
	}
	for (size_t i = 0; i < nc; i++) {
		const json_t *t = json_array_get(ca, i), *idx;

		if (!json_is_array(t) || json_array_size(t) != 2) {
			r = kvfs_meta_json_fail(err, -EPROTO,
						"written_keys_to_confirm[%zu] must be [key, index]",
						i);
			goto err_free;
		}
		r = key_of(json_array_get(t, 0), "written_keys_to_confirm key", i, &c[i].key, err);
		if (r)
			goto err_free;
		idx = json_array_get(t, 1);
		if (!json_is_integer(idx)) {
			r = kvfs_meta_json_fail(err, -EPROTO,
						"written_keys_to_confirm[%zu]: index must be an "
						"integer",
						i);
			goto err_free;
		}
		c[i].index = json_integer_value(idx);
	}
	for (size_t i = 0; i < nr; i++) {
		const json_t *idx = json_array_get(ra, i);

		if (!json_is_integer(idx)) {
			r = kvfs_meta_json_fail(err, -EPROTO,
						"pages_to_release[%zu] must be an integer", i);
			goto err_free;
		}
		rel[i] = json_integer_value(idx);
	}
	*ret_confirms = c;
	*ret_nc = nc;
	*ret_release = rel;
	*ret_nr = nr;
	return 0;

err_free:
	free(c);
	free(rel);
	return r;
}
