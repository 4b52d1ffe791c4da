/* SPDX-License-Identifier: MIT */
/*
 * fuzz_request.c - libFuzzer target for kvfs-meta's request decoding (metadata/http/codec.c,
 * metadata/hf3fs/body.c and fastparse.c): everything a client can make the server decode before
 * any state is touched.
 *
 * Input: one selector byte, then a request body. Every body goes through the strict jansson
 * parser and every native decoder (attr, pool, node, statfs, page refs and entries, layout,
 * dirent, base64 values, names in their plain and "_hex" forms, each decoded name encoded and
 * decoded back to the same bytes), and through the fast 3FS parser for all three shapes. The
 * fast parser is checked differentially: whenever it accepts a body, the jansson path must
 * accept it too and decode the same namespace, keys, confirms and releases. The selector picks
 * the array limit, so the "too many items" paths are reached with small inputs.
 *
 * Build and run: tests/fuzz/run.sh SECONDS (clang -fsanitize=fuzzer,address,undefined), or the
 * fuzz_request target meson builds when the compiler is clang.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "fuzz_request: %s failed at line %d\n", #x, __LINE__);     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static bool same_key(const struct kvfs_meta_hf3fs_key *a, const struct kvfs_meta_hf3fs_key *b)
{
	return a->len == b->len && !memcmp(a->ptr, b->ptr, a->len);
}

/* The fast parser accepted @body as @shape: jansson must agree on every value. */
static void differential(const json_t *j, enum kvfs_meta_3fs_shape shape, size_t max,
			 const struct kvfs_meta_3fs_body *fb)
{
	struct kvfs_meta_hf3fs_confirm *conf = NULL;
	struct kvfs_meta_hf3fs_key *keys = NULL;
	int64_t *rel = NULL;
	const char *ns = NULL;
	size_t n = 0, nc = 0, nr = 0;

	CHECK(j != NULL);
	CHECK(kvfs_meta_json_3fs_namespace(j, &ns, NULL) == 0);
	CHECK((ns != NULL) == fb->has_ns);
	CHECK(!ns || !strcmp(ns, fb->ns));
	switch (shape) {
	case KVFS_META_3FS_KEYS:
	case KVFS_META_3FS_KEY_PAIRS:
		CHECK((shape == KVFS_META_3FS_KEYS
			       ? kvfs_meta_json_3fs_keys(j, max, &keys, &n, NULL)
			       : kvfs_meta_json_3fs_key_pairs(j, max, &keys, &n, NULL)) == 0);
		CHECK(n == fb->nkeys);
		for (size_t i = 0; i < n; i++)
			CHECK(same_key(&keys[i], &fb->keys[i]));
		free(keys);
		break;
	case KVFS_META_3FS_CONFIRM:
		CHECK(kvfs_meta_json_3fs_confirm(j, max, &conf, &nc, &rel, &nr, NULL) == 0);
		CHECK(nc == fb->nconfirms && nr == fb->nrelease);
		for (size_t i = 0; i < nc; i++)
			CHECK(same_key(&conf[i].key, &fb->confirms[i].key) &&
			      conf[i].index == fb->confirms[i].index);
		for (size_t i = 0; i < nr; i++)
			CHECK(rel[i] == fb->release[i]);
		free(conf);
		free(rel);
		break;
	}
}

/* A decoded name must encode and decode back to the same bytes. */
static void name_back(const char *name)
{
	char back[KVFS_NAME_MAX + 1];
	json_t *o = json_object(), *arr = json_array(), *hex = json_array();
	char *wire;
	json_t *w;

	CHECK(o && arr && hex);
	CHECK(kvfs_meta_json_set_name(o, "name", name) == 0);
	wire = json_dumps(o, JSON_COMPACT);
	CHECK(wire && kvfs_meta_json_parse(wire, strlen(wire), &w, NULL) == 0);
	CHECK(kvfs_meta_json_name(w, "name", true, back, KVFS_NAME_MAX, NULL) == 0);
	CHECK(!strcmp(back, name));
	CHECK(kvfs_meta_json_append_name(arr, hex, name) == 0);
	CHECK(json_array_size(arr) + json_array_size(hex) == 1);
	CHECK(kvfs_meta_json_name_item(json_array_get(json_array_size(hex) ? hex : arr, 0),
				       json_array_size(hex) != 0, "names", 0, back, KVFS_NAME_MAX,
				       NULL) == 0);
	CHECK(!strcmp(back, name));
	json_decref(w);
	free(wire);
	json_decref(hex);
	json_decref(arr);
	json_decref(o);
}

/* The name decoders (codec.h's encoding of names) over the fields and arrays that carry one. */
static void names(const json_t *j)
{
	static const char *const keys[] = {"name", "newname"};
	struct kvfs_meta_json_error err;
	char name[KVFS_NAME_MAX + 1];

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (kvfs_meta_json_name(j, keys[k], false, name, KVFS_NAME_MAX, &err) == 0)
			name_back(name);
	for (int hex = 0; hex < 2; hex++) {
		const json_t *arr = json_object_get(j, hex ? "names_hex" : "names");

		for (size_t i = 0; i < json_array_size(arr); i++)
			if (kvfs_meta_json_name_item(json_array_get(arr, i), hex, "names", i, name,
						     KVFS_NAME_MAX, &err) == 0)
				name_back(name);
	}
}

/* Run every native decoder over @j and its likely members; only memory safety matters. */
static void native(const json_t *j)
{
	struct kvfs_attr a;
	struct kvfs_pool_attr p;
	struct kvfs_node_info nd;
	struct kvfs_statfs sf;
	struct kvfs_page_ref ref;
	struct kvfs_dirent de;
	struct kvfs_layout *l = NULL;
	struct kvfs_page_entry *pages = NULL;
	struct kvfs_meta_json_error err;
	json_t *v, *enc;
	size_t np = 0;
	uint64_t u;
	int64_t i64;
	bool b;
	char name[KVFS_NAME_MAX + 1];

	kvfs_meta_json_to_attr(j, true, &a, &err);
	kvfs_meta_json_to_attr(j, false, &a, &err);
	if ((v = json_object_get(j, "attr")))
		kvfs_meta_json_to_attr(v, true, &a, &err);
	if (kvfs_meta_json_to_pool(j, true, &p, &err) == 0) {
		enc = kvfs_meta_json_from_pool(&p);
		json_decref(enc);
	}
	kvfs_meta_json_to_node(j, &nd, &err);
	kvfs_meta_json_to_statfs(j, &sf, &err);
	kvfs_meta_json_to_dirent(j, &de, &err);
	if (kvfs_meta_json_to_layout(j, &l, &err) == 0) {
		enc = kvfs_meta_json_from_layout(l);
		json_decref(enc);
		free(l->pages);
		free(l);
	}
	if ((v = json_object_get(j, "pages")) &&
	    kvfs_meta_json_to_pages(v, 1024, false, &pages, &np, &err) == 0)
		free(pages);
	if ((v = json_object_get(j, "refs")) && json_is_array(v))
		for (size_t k = 0; k < json_array_size(v); k++)
			kvfs_meta_json_to_ref(json_array_get(v, k), &ref, &err);
	if ((v = json_object_get(j, "value")) && json_is_string(v)) {
		void *val = NULL;
		size_t len = 0;

		if (kvfs_meta_b64_decode(json_string_value(v), json_string_length(v), &val, &len) ==
		    0) {
			char *back = kvfs_meta_b64_encode(val, len);

			CHECK(back && strlen(back) == json_string_length(v));
			free(back);
			free(val);
		}
	}
	kvfs_meta_json_u64(j, "ino", false, 0, &u, &err);
	kvfs_meta_json_i64(j, "mtime_ns", false, 0, &i64, &err);
	kvfs_meta_json_bool(j, "excl", false, false, &b, &err);
	kvfs_meta_json_str(j, "name", false, NULL, name, KVFS_NAME_MAX, &err);
	names(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum kvfs_meta_3fs_shape shapes[] = {
		KVFS_META_3FS_KEYS, KVFS_META_3FS_KEY_PAIRS, KVFS_META_3FS_CONFIRM};
	struct kvfs_meta_json_error err;
	const char *body;
	json_t *j = NULL;
	size_t max;

	if (size < 1)
		return 0;
	max = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) : (size_t)1 << 20;
	body = (const char *)data + 1;
	size--;

	if (kvfs_meta_json_parse(body, size, &j, &err) == 0)
		native(j);
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		struct kvfs_meta_3fs_body fb;

		if (kvfs_meta_fast_3fs(body, size, shapes[s], max, &fb) == 0) {
			differential(j, shapes[s], max, &fb);
			kvfs_meta_fast_3fs_free(&fb);
		} else if (j) {
			/* the slow path must not crash either */
			struct kvfs_meta_hf3fs_key *keys = NULL;
			struct kvfs_meta_hf3fs_confirm *conf = NULL;
			int64_t *rel = NULL;
			const char *ns;
			size_t n, nc, nr;

			kvfs_meta_json_3fs_namespace(j, &ns, &err);
			if (kvfs_meta_json_3fs_keys(j, max, &keys, &n, &err) == 0)
				free(keys);
			if (kvfs_meta_json_3fs_key_pairs(j, max, &keys, &n, &err) == 0)
				free(keys);
			if (kvfs_meta_json_3fs_confirm(j, max, &conf, &nc, &rel, &nr, &err) == 0) {
				free(conf);
				free(rel);
			}
		}
	}
	json_decref(j);
	return 0;
}
