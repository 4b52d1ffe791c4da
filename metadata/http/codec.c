/* SPDX-License-Identifier: MIT */
/*
 * codec.c - JSON encoding and strict decoding of kvfs-meta's bodies (see codec.h, API.md).
 *
 * Every decoder goes through the typed field helpers, so each error names its field and the
 * -EPROTO (shape) / -EINVAL (range) split is made in one place.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

void kvfs_meta_json_msg(struct kvfs_meta_json_error *err, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
}

int kvfs_meta_json_parse(const char *buf, size_t len, json_t **ret,
			 struct kvfs_meta_json_error *err)
{
	json_error_t je;
	json_t *j;

	if (!buf || !len)
		return kvfs_meta_json_fail(err, -EPROTO, "empty body: a JSON object is required");
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!j && json_error_code(&je) == json_error_invalid_utf8)
		return kvfs_meta_json_fail(
			err, -EPROTO,
			"body is not UTF-8 at line %d column %d (%s): send names "
			"that are not UTF-8 as hex under \"<key>_hex\"",
			je.line, je.column, je.text);
	if (!j)
		return kvfs_meta_json_fail(err, -EPROTO, "malformed JSON at line %d column %d: %s",
					   je.line, je.column, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return kvfs_meta_json_fail(err, -EPROTO, "the body must be a JSON object");
	}
	*ret = j;
	return 0;
}

/* The field, or NULL when missing (an error when required; JSON null counts as missing). */
int kvfs_meta_json_field(const json_t *obj, const char *name, bool required, json_t **ret,
			 struct kvfs_meta_json_error *err)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, name) : NULL;

	if (!json_is_object(obj))
		return kvfs_meta_json_fail(err, -EPROTO, "expected an object around '%s'", name);
	if (v && json_is_null(v))
		v = NULL;
	if (!v && required)
		return kvfs_meta_json_fail(err, -EPROTO, "missing field '%s'", name);
	*ret = v;
	return 0;
}

static int int_value(const json_t *v, const char *name, json_int_t *ret,
		     struct kvfs_meta_json_error *err)
{
	if (!json_is_integer(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field '%s' must be an integer", name);
	*ret = json_integer_value(v);
	return 0;
}

int kvfs_meta_json_u64(const json_t *obj, const char *name, bool required, uint64_t def,
		       uint64_t *ret, struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	json_int_t x = 0;
	int r = kvfs_meta_json_field(obj, name, required, &v, err);

	if (r)
		return r;
	if (!v) {
		*ret = def;
		return 0;
	}
	r = int_value(v, name, &x, err);
	if (r)
		return r;
	if (x < 0)
		return kvfs_meta_json_fail(err, -EINVAL, "field '%s' must not be negative", name);
	*ret = (uint64_t)x;
	return 0;
}

int kvfs_meta_json_u32(const json_t *obj, const char *name, bool required, uint32_t def,
		       uint32_t *ret, struct kvfs_meta_json_error *err)
{
	uint64_t x;
	int r = kvfs_meta_json_u64(obj, name, required, def, &x, err);

	if (r)
		return r;
	if (x > UINT32_MAX)
		return kvfs_meta_json_fail(err, -EINVAL, "field '%s' is out of range", name);
	*ret = (uint32_t)x;
	return 0;
}

int kvfs_meta_json_i64(const json_t *obj, const char *name, bool required, int64_t def,
		       int64_t *ret, struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	json_int_t x = 0;
	int r = kvfs_meta_json_field(obj, name, required, &v, err);

	if (r)
		return r;
	if (!v) {
		*ret = def;
		return 0;
	}
	r = int_value(v, name, &x, err);
	if (r)
		return r;
	*ret = x;
	return 0;
}

int kvfs_meta_json_bool(const json_t *obj, const char *name, bool required, bool def, bool *ret,
			struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	int r = kvfs_meta_json_field(obj, name, required, &v, err);

	if (r)
		return r;
	if (!v) {
		*ret = def;
		return 0;
	}
	if (!json_is_boolean(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field '%s' must be true or false", name);
	*ret = json_is_true(v);
	return 0;
}

int kvfs_meta_json_str(const json_t *obj, const char *name, bool required, const char *def,
		       char *buf, size_t max, struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	size_t len;
	int r = kvfs_meta_json_field(obj, name, required, &v, err);

	if (r)
		return r;
	if (!v) {
		snprintf(buf, max + 1, "%s", def ? def : "");
		return 0;
	}
	if (!json_is_string(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field '%s' must be a string", name);
	len = json_string_length(v);
	if (len > max)
		return kvfs_meta_json_fail(err, -EINVAL, "field '%s' is longer than %zu bytes",
					   name, max);
	if (memchr(json_string_value(v), 0, len))
		return kvfs_meta_json_fail(err, -EINVAL, "field '%s' contains a NUL byte", name);
	memcpy(buf, json_string_value(v), len);
	buf[len] = 0;
	return 0;
}

int kvfs_meta_json_array(const json_t *obj, const char *name, bool required, size_t max,
			 json_t **ret, struct kvfs_meta_json_error *err)
{
	json_t *v = NULL;
	int r = kvfs_meta_json_field(obj, name, required, &v, err);

	if (r)
		return r;
	if (v && !json_is_array(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field '%s' must be an array", name);
	if (v && json_array_size(v) > max)
		return kvfs_meta_json_fail(err, -EINVAL, "field '%s' has more than %zu items", name,
					   max);
	*ret = v;
	return 0;
}

/* ---- names (the encoding is described in codec.h) ---- */

static const char hex_digits[] = "0123456789abcdef";

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "<key>_hex"; keys are our own short constants. */
static void hex_key(const char *key, char *buf, size_t size)
{
	snprintf(buf, size, "%s_hex", key);
}

/*
 * The JSON value of the name @name of @len bytes: the string itself when jansson takes it, else
 * its hex, with *ret_hex saying which. jansson refuses exactly the bytes that are not UTF-8, so
 * the plain form is chosen by the same rule that json_loads() will check on the other side; a
 * refusal for memory falls back to hex too, which is still a correct encoding of any name.
 * NULL when out of memory.
 */
static json_t *name_value(const char *name, size_t len, bool *ret_hex)
{
	json_t *v = json_stringn(name, len);
	char *hex;

	*ret_hex = false;
	if (v)
		return v;
	hex = malloc(2 * len + 1);
	if (!hex)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		hex[2 * i] = hex_digits[(unsigned char)name[i] >> 4];
		hex[2 * i + 1] = hex_digits[(unsigned char)name[i] & 15];
	}
	hex[2 * len] = 0;
	v = json_stringn_nocheck(hex, 2 * len);
	free(hex);
	*ret_hex = true;
	return v;
}

static int set_name(json_t *obj, const char *key, const char *name, size_t len)
{
	char hkey[64];
	bool hex;
	json_t *v = name_value(name, len, &hex);

	if (!v)
		return -ENOMEM;
	hex_key(key, hkey, sizeof(hkey));
	return json_object_set_new(obj, hex ? hkey : key, v) ? -ENOMEM : 0; /* v consumed */
}

int kvfs_meta_json_set_name(json_t *obj, const char *key, const char *name)
{
	return set_name(obj, key, name, strlen(name));
}

int kvfs_meta_json_append_name(json_t *arr, json_t *arr_hex, const char *name)
{
	bool hex;
	json_t *v = name_value(name, strlen(name), &hex);

	if (!v)
		return -ENOMEM;
	return json_array_append_new(hex ? arr_hex : arr, v) ? -ENOMEM : 0;
}

/* Decode the name value @v (@hex: its hex form) into @buf; @what names it in messages. */
static int name_of(const json_t *v, bool hex, const char *what, char *buf, size_t max,
		   struct kvfs_meta_json_error *err)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return kvfs_meta_json_fail(err, -EPROTO, "%s must be a string", what);
	s = json_string_value(v);
	len = json_string_length(v);
	if (!hex) {
		if (len > max)
			return kvfs_meta_json_fail(err, -EINVAL, "%s is longer than %zu bytes",
						   what, max);
		if (memchr(s, 0, len))
			return kvfs_meta_json_fail(err, -EINVAL, "%s contains a NUL byte", what);
		memcpy(buf, s, len);
		buf[len] = 0;
		return 0;
	}
	if (len % 2)
		return kvfs_meta_json_fail(
			err, -EINVAL, "%s must be an even number of hex digits (2 a byte)", what);
	if (len / 2 > max)
		return kvfs_meta_json_fail(err, -EINVAL, "%s is longer than %zu bytes", what, max);
	/* check all before writing @buf: it is an output, written only on success */
	for (size_t i = 0; i < len; i += 2) {
		int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);

		if (hi < 0 || lo < 0)
			return kvfs_meta_json_fail(err, -EINVAL,
						   "%s: character %zu is not a hex digit", what,
						   hi < 0 ? i : i + 1);
		if (!hi && !lo)
			return kvfs_meta_json_fail(err, -EINVAL, "%s contains a NUL byte (00)",
						   what);
	}
	for (size_t i = 0; i < len; i += 2)
		buf[i / 2] = (char)(hex_value(s[i]) << 4 | hex_value(s[i + 1]));
	buf[len / 2] = 0;
	return 0;
}

int kvfs_meta_json_name(const json_t *obj, const char *key, bool required, char *buf, size_t max,
			struct kvfs_meta_json_error *err)
{
	char hkey[64], what[80];
	json_t *v = NULL, *h = NULL;
	int r;

	hex_key(key, hkey, sizeof(hkey));
	if ((r = kvfs_meta_json_field(obj, key, false, &v, err)) ||
	    (r = kvfs_meta_json_field(obj, hkey, false, &h, err)))
		return r;
	if (v && h)
		return kvfs_meta_json_fail(err, -EPROTO, "give field '%s' or '%s', not both", key,
					   hkey);
	if (!v && !h) {
		if (required)
			return kvfs_meta_json_fail(err, -EPROTO, "missing field '%s' (or '%s')",
						   key, hkey);
		buf[0] = 0;
		return 0;
	}
	snprintf(what, sizeof(what), "field '%s'", h ? hkey : key);
	return name_of(h ? h : v, h != NULL, what, buf, max, err);
}

int kvfs_meta_json_name_item(const json_t *v, bool hex, const char *what, size_t i, char *buf,
			     size_t max, struct kvfs_meta_json_error *err)
{
	char w[80];

	snprintf(w, sizeof(w), "%s%s[%zu]", what, hex ? "_hex" : "", i);
	return name_of(v, hex, w, buf, max, err);
}

/* json_pack with "I" takes json_int_t; unsigned fields above INT64_MAX cannot be represented
 * and never occur (sizes are bounded by the pool's max file size). */
#define JI(x) ((json_int_t)(x))

json_t *kvfs_meta_json_from_attr(const struct kvfs_attr *a)
{
	return json_pack("{sI sI sI sI sI sI sI sI sI sI sI sI sI sI}", "ino", JI(a->ino), "size",
			 JI(a->size), "version", JI(a->version), "blocks", JI(a->blocks), "mode",
			 JI(a->mode), "uid", JI(a->uid), "gid", JI(a->gid), "nlink", JI(a->nlink),
			 "pool", JI(a->pool), "page_size", JI(a->page_size), "atime_ns",
			 JI(a->atime_ns), "mtime_ns", JI(a->mtime_ns), "ctime_ns", JI(a->ctime_ns),
			 "flags", JI(a->flags));
}

int kvfs_meta_json_to_attr(const json_t *j, bool partial, struct kvfs_attr *ret,
			   struct kvfs_meta_json_error *err)
{
	struct kvfs_attr a = {0};
	bool req = !partial;
	int r;

	if (!json_is_object(j))
		return kvfs_meta_json_fail(err, -EPROTO, "'attr' must be an object");
	if ((r = kvfs_meta_json_u64(j, "ino", req, 0, &a.ino, err)) ||
	    (r = kvfs_meta_json_u64(j, "size", req, 0, &a.size, err)) ||
	    (r = kvfs_meta_json_u64(j, "version", req, 0, &a.version, err)) ||
	    (r = kvfs_meta_json_u64(j, "blocks", req, 0, &a.blocks, err)) ||
	    (r = kvfs_meta_json_u32(j, "mode", req, 0, &a.mode, err)) ||
	    (r = kvfs_meta_json_u32(j, "uid", req, 0, &a.uid, err)) ||
	    (r = kvfs_meta_json_u32(j, "gid", req, 0, &a.gid, err)) ||
	    (r = kvfs_meta_json_u32(j, "nlink", req, 0, &a.nlink, err)) ||
	    (r = kvfs_meta_json_u32(j, "pool", req, 0, &a.pool, err)) ||
	    (r = kvfs_meta_json_u32(j, "page_size", req, 0, &a.page_size, err)) ||
	    (r = kvfs_meta_json_i64(j, "atime_ns", req, 0, &a.atime_ns, err)) ||
	    (r = kvfs_meta_json_i64(j, "mtime_ns", req, 0, &a.mtime_ns, err)) ||
	    (r = kvfs_meta_json_i64(j, "ctime_ns", req, 0, &a.ctime_ns, err)) ||
	    (r = kvfs_meta_json_u32(j, "flags", false, 0, &a.flags, err)))
		return r;
	*ret = a;
	return 0;
}

json_t *kvfs_meta_json_from_ref(const struct kvfs_page_ref *ref)
{
	return json_pack("[I I I]", JI(ref->node), JI(ref->incarnation), JI(ref->off));
}

/* Element @i of a fixed-size integer tuple. */
static int tuple_u64(const json_t *t, size_t i, const char *what, uint64_t max, uint64_t *ret,
		     struct kvfs_meta_json_error *err)
{
	json_t *v = json_array_get(t, i);
	json_int_t x = 0;

	if (!json_is_integer(v))
		return kvfs_meta_json_fail(err, -EPROTO, "%s: element %zu must be an integer", what,
					   i);
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > max)
		return kvfs_meta_json_fail(err, -EINVAL, "%s: element %zu is out of range", what,
					   i);
	*ret = (uint64_t)x;
	return 0;
}

int kvfs_meta_json_to_ref(const json_t *j, struct kvfs_page_ref *ret,
			  struct kvfs_meta_json_error *err)
{
	uint64_t node, inc, off;
	int r;

	if (!json_is_array(j) || json_array_size(j) != 3)
		return kvfs_meta_json_fail(err, -EPROTO,
					   "a page ref must be [node, incarnation, off]");
	if ((r = tuple_u64(j, 0, "page ref", UINT32_MAX, &node, err)) ||
	    (r = tuple_u64(j, 1, "page ref", UINT32_MAX, &inc, err)) ||
	    (r = tuple_u64(j, 2, "page ref", INT64_MAX, &off, err)))
		return r;
	*ret = (struct kvfs_page_ref){.node = node, .incarnation = inc, .off = off};
	return 0;
}

json_t *kvfs_meta_json_from_pages(const struct kvfs_page_entry *pages, size_t n)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct kvfs_page_entry *p = &pages[i];

		if (json_array_append_new(arr, json_pack("[I I I I]", JI(p->index), JI(p->ref.node),
							 JI(p->ref.incarnation), JI(p->ref.off)))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

int kvfs_meta_json_to_pages(const json_t *j, size_t max, bool sorted,
			    struct kvfs_page_entry **ret_pages, size_t *ret_n,
			    struct kvfs_meta_json_error *err)
{
	struct kvfs_page_entry *pages = NULL;
	size_t n;
	int r;

	if (!json_is_array(j))
		return kvfs_meta_json_fail(err, -EPROTO, "'pages' must be an array");
	n = json_array_size(j);
	if (n > max)
		return kvfs_meta_json_fail(err, -EINVAL, "'pages' has more than %zu items", max);
	if (n) {
		pages = calloc(n, sizeof(*pages));
		if (!pages)
			return kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *t = json_array_get(j, i);
		uint64_t idx, node, inc, off;

		if (!json_is_array(t) || json_array_size(t) != 4) {
			r = kvfs_meta_json_fail(err, -EPROTO,
						"page %zu must be [index, node, incarnation, off]",
						i);
			goto err_free;
		}
		if ((r = tuple_u64(t, 0, "page", INT64_MAX, &idx, err)) ||
		    (r = tuple_u64(t, 1, "page", UINT32_MAX, &node, err)) ||
		    (r = tuple_u64(t, 2, "page", UINT32_MAX, &inc, err)) ||
		    (r = tuple_u64(t, 3, "page", INT64_MAX, &off, err)))
			goto err_free;
		if (sorted && i && idx <= pages[i - 1].index) {
			r = kvfs_meta_json_fail(err, -EINVAL,
						"page indices must be strictly increasing");
			goto err_free;
		}
		pages[i] = (struct kvfs_page_entry){
			.index = idx, .ref = {.node = node, .incarnation = inc, .off = off}};
	}
	*ret_pages = pages;
	*ret_n = n;
	return 0;

err_free:
	free(pages);
	return r;
}

json_t *kvfs_meta_json_from_layout(const struct kvfs_layout *l)
{
	return json_pack("{s o s o}", "attr", kvfs_meta_json_from_attr(&l->attr), "pages",
			 kvfs_meta_json_from_pages(l->pages, l->npages));
}

int kvfs_meta_json_to_layout(const json_t *j, struct kvfs_layout **ret,
			     struct kvfs_meta_json_error *err)
{
	struct kvfs_layout *l;
	json_t *a = NULL, *p = NULL;
	int r;

	if ((r = kvfs_meta_json_field(j, "attr", true, &a, err)) ||
	    (r = kvfs_meta_json_field(j, "pages", true, &p, err)))
		return r;
	l = calloc(1, sizeof(*l));
	if (!l)
		return kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
	r = kvfs_meta_json_to_attr(a, false, &l->attr, err);
	if (r)
		goto err_free;
	r = kvfs_meta_json_to_pages(p, SIZE_MAX, true, &l->pages, &l->npages, err);
	if (r)
		goto err_free;
	*ret = l;
	return 0;

err_free:
	free(l);
	return r;
}

json_t *kvfs_meta_json_from_dirent(const struct kvfs_dirent *d)
{
	json_t *j = json_pack("{sI so}", "cookie", JI(d->cookie), "attr",
			      kvfs_meta_json_from_attr(&d->attr));

	if (j && set_name(j, "name", d->name, strnlen(d->name, KVFS_NAME_MAX))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

int kvfs_meta_json_to_dirent(const json_t *j, struct kvfs_dirent *ret,
			     struct kvfs_meta_json_error *err)
{
	struct kvfs_dirent d = {0};
	json_t *a = NULL;
	int r;

	if ((r = kvfs_meta_json_u64(j, "cookie", true, 0, &d.cookie, err)) ||
	    (r = kvfs_meta_json_name(j, "name", true, d.name, KVFS_NAME_MAX, err)) ||
	    (r = kvfs_meta_json_field(j, "attr", true, &a, err)) ||
	    (r = kvfs_meta_json_to_attr(a, false, &d.attr, err)))
		return r;
	if (!d.cookie)
		return kvfs_meta_json_fail(err, -EINVAL, "field 'cookie' must not be 0");
	*ret = d;
	return 0;
}

json_t *kvfs_meta_json_from_pool(const struct kvfs_pool_attr *p)
{
	return json_pack("{sI ss sI sI sI ss sI sI sI sI sI}", "id", JI(p->id), "name", p->name,
			 "page_size", JI(p->page_size), "capacity", JI(p->capacity),
			 "max_file_size", JI(p->max_file_size), "evict",
			 p->evict == KVFS_EVICT_NONE ? "none" : "lru", "root_ino", JI(p->root_ino),
			 "used", JI(p->used), "files", JI(p->files), "evictions", JI(p->evictions),
			 "evicted_bytes", JI(p->evicted_bytes));
}

int kvfs_meta_json_to_pool(const json_t *j, bool partial, struct kvfs_pool_attr *ret,
			   struct kvfs_meta_json_error *err)
{
	struct kvfs_pool_attr p = {0};
	char evict[8];
	bool req = !partial;
	int r;

	if ((r = kvfs_meta_json_u32(j, "id", req, 0, &p.id, err)) ||
	    (r = kvfs_meta_json_str(j, "name", true, NULL, p.name, KVFS_POOL_NAME_MAX, err)) ||
	    (r = kvfs_meta_json_u32(j, "page_size", false, 0, &p.page_size, err)) ||
	    (r = kvfs_meta_json_u64(j, "capacity", false, 0, &p.capacity, err)) ||
	    (r = kvfs_meta_json_u64(j, "max_file_size", false, 0, &p.max_file_size, err)) ||
	    (r = kvfs_meta_json_str(j, "evict", false, "lru", evict, sizeof(evict) - 1, err)) ||
	    (r = kvfs_meta_json_u64(j, "root_ino", req, 0, &p.root_ino, err)) ||
	    (r = kvfs_meta_json_u64(j, "used", req, 0, &p.used, err)) ||
	    (r = kvfs_meta_json_u64(j, "files", req, 0, &p.files, err)) ||
	    (r = kvfs_meta_json_u64(j, "evictions", req, 0, &p.evictions, err)) ||
	    (r = kvfs_meta_json_u64(j, "evicted_bytes", req, 0, &p.evicted_bytes, err)))
		return r;
	if (kvfs_pool_name_check(p.name))
		return kvfs_meta_json_fail(err, -EINVAL,
					   "field 'name' must be a pool name: not '.' or '..', "
					   "no '/' and no control characters");
	if (p.capacity > KVFS_POOL_SIZE_MAX || p.max_file_size > KVFS_POOL_SIZE_MAX)
		return kvfs_meta_json_fail(err, -EINVAL,
					   "fields 'capacity' and 'max_file_size' must be at most "
					   "2^62");
	if (!strcmp(evict, "lru"))
		p.evict = KVFS_EVICT_LRU;
	else if (!strcmp(evict, "none"))
		p.evict = KVFS_EVICT_NONE;
	else
		return kvfs_meta_json_fail(err, -EINVAL,
					   "field 'evict' must be \"lru\" or \"none\"");
	if (p.page_size && (p.page_size & (p.page_size - 1) || p.page_size < (64u << 10) ||
			    p.page_size > (16u << 20)))
		return kvfs_meta_json_fail(err, -EINVAL,
					   "field 'page_size' must be a power of two in 64 KiB .. "
					   "16 MiB");
	*ret = p;
	return 0;
}

json_t *kvfs_meta_json_from_statfs(const struct kvfs_statfs *s)
{
	return json_pack("{sI sI sI sI sI}", "capacity", JI(s->capacity), "free", JI(s->free),
			 "used", JI(s->used), "files", JI(s->files), "page_size", JI(s->page_size));
}

int kvfs_meta_json_to_statfs(const json_t *j, struct kvfs_statfs *ret,
			     struct kvfs_meta_json_error *err)
{
	struct kvfs_statfs s = {0};
	int r;

	if ((r = kvfs_meta_json_u64(j, "capacity", true, 0, &s.capacity, err)) ||
	    (r = kvfs_meta_json_u64(j, "free", true, 0, &s.free, err)) ||
	    (r = kvfs_meta_json_u64(j, "used", true, 0, &s.used, err)) ||
	    (r = kvfs_meta_json_u64(j, "files", true, 0, &s.files, err)) ||
	    (r = kvfs_meta_json_u32(j, "page_size", true, 0, &s.page_size, err)))
		return r;
	*ret = s;
	return 0;
}

json_t *kvfs_meta_json_from_node(const struct kvfs_node_info *n)
{
	return json_pack("{sI sI sI ss}", "id", JI(n->id), "incarnation", JI(n->incarnation),
			 "arena_size", JI(n->arena_size), "addr", n->addr);
}

int kvfs_meta_json_to_node(const json_t *j, struct kvfs_node_info *ret,
			   struct kvfs_meta_json_error *err)
{
	struct kvfs_node_info n = {0};
	int r;

	if ((r = kvfs_meta_json_u32(j, "id", false, 0, &n.id, err)) ||
	    (r = kvfs_meta_json_u32(j, "incarnation", false, 0, &n.incarnation, err)) ||
	    (r = kvfs_meta_json_u64(j, "arena_size", true, 0, &n.arena_size, err)) ||
	    (r = kvfs_meta_json_str(j, "addr", false, "", n.addr, sizeof(n.addr) - 1, err)))
		return r;
	*ret = n;
	return 0;
}

/* ---- base64 (xattr values) ---- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *kvfs_meta_b64_encode(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);

		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = 0;
	return out;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int kvfs_meta_b64_decode(const char *s, size_t len, void **ret, size_t *ret_len)
{
	unsigned char *out, *o;
	size_t pad = 0;

	if (len % 4)
		return -EINVAL;
	if (len && s[len - 1] == '=')
		pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
	out = malloc(len / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	o = out;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];

		for (int k = 0; k < 4; k++) {
			v[k] = b64_value(s[i + k]);
			if (v[k] < 0 && !(last && s[i + k] == '=' && k >= 4 - (int)pad)) {
				free(out);
				return -EINVAL;
			}
			if (v[k] < 0)
				v[k] = 0;
		}
		*o++ = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (!(last && pad == 2))
			*o++ = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (!(last && pad >= 1))
			*o++ = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	*ret = out;
	*ret_len = (size_t)(o - out);
	return 0;
}
