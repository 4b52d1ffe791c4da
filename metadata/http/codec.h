/* SPDX-License-Identifier: MIT */
/*
 * codec.h - JSON <-> the structs of meta.h, for kvfs-meta's HTTP server and client (jansson),
 * and the field helpers the 3FS routes (metadata/hf3fs/body.h) decode their bodies with. The
 * wire format is docs/API.md.
 *
 * Decoding is strict: a body that is not JSON, a field of the wrong type or a missing required
 * field is -EPROTO; a value outside its range (negative, too large for the field, a name too
 * long, a bad policy) is -EINVAL. Either way @err (may be NULL) gets a one-line message naming
 * the field, which the server returns as {"error": ...}. Unknown fields are ignored, so either
 * side may add fields without breaking the other.
 *
 * Numbers travel as JSON integers. Unsigned 64-bit fields must be in [0, 2^63) (jansson's
 * json_int_t is int64_t); nanosecond times are signed.
 *
 * Encoders return a new reference, or NULL when out of memory. Decoders borrow their input and
 * write their ret_* only on success. No function keeps a pointer to its arguments. Thread-safe.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

struct kvfs_meta_json_error {
	char msg[192];
};

/* Parse a request or response body. Duplicate keys are refused, as is anything after the
 * value. The top level must be an object. Returns 0 and *ret (a new reference) or -EPROTO. */
int kvfs_meta_json_parse(const char *buf, size_t len, json_t **ret,
			 struct kvfs_meta_json_error *err);

/* Field @name of @obj, borrowed; JSON null counts as missing. -EPROTO when @obj is not an
 * object or a required field is missing; a missing optional field gives *ret = NULL. */
int kvfs_meta_json_field(const json_t *obj, const char *name, bool required, json_t **ret,
			 struct kvfs_meta_json_error *err);
/* Fields of an object. A missing optional field leaves *ret at @def. */
int kvfs_meta_json_u64(const json_t *obj, const char *field, bool required, uint64_t def,
		       uint64_t *ret, struct kvfs_meta_json_error *err);
int kvfs_meta_json_u32(const json_t *obj, const char *field, bool required, uint32_t def,
		       uint32_t *ret, struct kvfs_meta_json_error *err);
int kvfs_meta_json_i64(const json_t *obj, const char *field, bool required, int64_t def,
		       int64_t *ret, struct kvfs_meta_json_error *err);
int kvfs_meta_json_bool(const json_t *obj, const char *field, bool required, bool def, bool *ret,
			struct kvfs_meta_json_error *err);
/* A string without NUL bytes of at most @max bytes, copied into @buf (max + 1 bytes). */
int kvfs_meta_json_str(const json_t *obj, const char *field, bool required, const char *def,
		       char *buf, size_t max, struct kvfs_meta_json_error *err);
/*
 * Names. A file name or an xattr name is bytes (any but NUL, and '/' for file names), but a JSON
 * string must be UTF-8, so every name-carrying key K of the native API has a sibling "K_hex":
 *   - a name that is valid UTF-8 travels as a plain JSON string under K ("name": "f.bin"), so
 *     existing bodies stay valid and curl users can type names;
 *   - any other name travels under "K_hex" as lowercase hex, two digits per byte
 *     ("name_hex": "fe41"). Hex rather than base64: a name is at most 255 bytes, so size does
 *     not matter, while hex is what `xxd -p` prints and `xxd -r -p` reads back, has no padding
 *     and no alphabet variants, and its length bounds the name exactly (2 digits a byte).
 *     A sibling key rather than a value that is a string or an object: each key keeps one JSON
 *     type, which typed clients decode without guessing.
 * Encoders choose the plain form whenever jansson accepts the bytes as a string; decoders accept
 * either form for any name (a client may always send hex) but never both, and the hex form in
 * either case. A decoded name is 0..@max bytes without NUL; callers reject empty names.
 * Arrays of names ("names" of xattr list and exists) follow the same rule with two arrays: K
 * holds the UTF-8 names, "K_hex" the others (omitted when empty in answers). See docs/API.md.
 */
/* Put @name (NUL-terminated) into @obj under @key or "<key>_hex". Returns 0 or -ENOMEM. */
int kvfs_meta_json_set_name(json_t *obj, const char *key, const char *name);
/* The name under @key or "<key>_hex" into @buf (@max + 1 bytes). Errors: -EPROTO when both or
 * (required) neither are present or one is not a string; -EINVAL when longer than @max bytes,
 * when it holds a NUL byte, or when the hex is not an even number of hex digits. A missing
 * optional name gives "". */
int kvfs_meta_json_name(const json_t *obj, const char *key, bool required, char *buf, size_t max,
			struct kvfs_meta_json_error *err);
/* Append @name (NUL-terminated) to @arr when it is UTF-8, else as hex to @arr_hex. Returns 0 or
 * -ENOMEM. */
int kvfs_meta_json_append_name(json_t *arr, json_t *arr_hex, const char *name);
/* Decode @v, item @i of the name array @what (@hex: of its "_hex" twin), as
 * kvfs_meta_json_name() does. */
int kvfs_meta_json_name_item(const json_t *v, bool hex, const char *what, size_t i, char *buf,
			     size_t max, struct kvfs_meta_json_error *err);

/* The array field, borrowed; -EPROTO when missing (required) or not an array, -EINVAL when
 * longer than @max. A missing optional array gives *ret = NULL. */
int kvfs_meta_json_array(const json_t *obj, const char *field, bool required, size_t max,
			 json_t **ret, struct kvfs_meta_json_error *err);

/* Format into @err (may be NULL). */
void kvfs_meta_json_msg(struct kvfs_meta_json_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Format into @err (may be NULL) and evaluate to @r. A macro, not a function, so that the
 * compiler sees the (non-zero) error value at every "return kvfs_meta_json_fail(...)": behind
 * a call it cannot, and gcc -O2/-O3 then reports the callers' output variables as "may be used
 * uninitialized" on a path where the helper returned 0, which never happens. */
#define kvfs_meta_json_fail(err, r, ...) (kvfs_meta_json_msg((err), __VA_ARGS__), (r))

/* struct kvfs_attr as an object with every field. Decoding with @partial accepts missing
 * fields (left 0), for setattr bodies. */
json_t *kvfs_meta_json_from_attr(const struct kvfs_attr *a);
int kvfs_meta_json_to_attr(const json_t *j, bool partial, struct kvfs_attr *ret,
			   struct kvfs_meta_json_error *err);

/* A page ref as [node, incarnation, off]; a page entry as [index, node, incarnation, off]. */
json_t *kvfs_meta_json_from_ref(const struct kvfs_page_ref *ref);
int kvfs_meta_json_to_ref(const json_t *j, struct kvfs_page_ref *ret,
			  struct kvfs_meta_json_error *err);
json_t *kvfs_meta_json_from_pages(const struct kvfs_page_entry *pages, size_t n);
/* An array of page entries. *ret_pages is malloc'd (NULL when empty); -EINVAL when longer than
 * @max, or when @sorted and the indices are not strictly increasing. */
int kvfs_meta_json_to_pages(const json_t *j, size_t max, bool sorted,
			    struct kvfs_page_entry **ret_pages, size_t *ret_n,
			    struct kvfs_meta_json_error *err);

/* A layout as {"attr": {...}, "pages": [[index, node, incarnation, off], ...]}. The decoded
 * layout is malloc'd: free with kvfs_layout_free(). */
json_t *kvfs_meta_json_from_layout(const struct kvfs_layout *l);
int kvfs_meta_json_to_layout(const json_t *j, struct kvfs_layout **ret,
			     struct kvfs_meta_json_error *err);

/* struct kvfs_dirent as {"cookie", "name" or "name_hex", "attr"}. */
json_t *kvfs_meta_json_from_dirent(const struct kvfs_dirent *d);
int kvfs_meta_json_to_dirent(const json_t *j, struct kvfs_dirent *ret,
			     struct kvfs_meta_json_error *err);

/* struct kvfs_pool_attr; "evict" is "lru" or "none". Decoding for pool create accepts
 * missing output fields (@partial). */
json_t *kvfs_meta_json_from_pool(const struct kvfs_pool_attr *p);
int kvfs_meta_json_to_pool(const json_t *j, bool partial, struct kvfs_pool_attr *ret,
			   struct kvfs_meta_json_error *err);

json_t *kvfs_meta_json_from_statfs(const struct kvfs_statfs *s);
int kvfs_meta_json_to_statfs(const json_t *j, struct kvfs_statfs *ret,
			     struct kvfs_meta_json_error *err);

/* struct kvfs_node_info as {"id", "incarnation", "arena_size", "addr"}; on decode id and
 * incarnation may be missing (a register request). */
json_t *kvfs_meta_json_from_node(const struct kvfs_node_info *n);
int kvfs_meta_json_to_node(const json_t *j, struct kvfs_node_info *ret,
			   struct kvfs_meta_json_error *err);

/* Base64 (RFC 4648, padded) for xattr values. encode returns a malloc'd NUL-terminated string
 * or NULL when out of memory; decode returns 0 and a malloc'd *ret (free it) of *ret_len bytes,
 * -EINVAL for bad input, -ENOMEM. */
char *kvfs_meta_b64_encode(const void *buf, size_t len);
int kvfs_meta_b64_decode(const char *s, size_t len, void **ret, size_t *ret_len);
