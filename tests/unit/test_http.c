/* SPDX-License-Identifier: MIT */
/*
 * test_http.c - Check runner for metadata/http/: the JSON codec and the server's request
 * parsing and routing.
 *
 * The codec cases round-trip every struct of meta.h and feed each decoder wrong types, missing
 * fields and out-of-range values, checking the errno (-EPROTO for shape, -EINVAL for range) and
 * that the message names the field; names that are not UTF-8 travel as "<key>_hex" and come back
 * byte-exact. The server's routing is covered end to end by
 * metadata/http/test_meta_3fs.sh.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "check_main.h"
#include "codec.h"
#include "server.h"

static json_t *parse_ok(const char *s)
{
	json_t *j = NULL;
	struct kvfs_meta_json_error err = {{0}};

	ck_assert_msg(kvfs_meta_json_parse(s, strlen(s), &j, &err) == 0, "%s: %s", s, err.msg);
	return j;
}

static int parse_err(const char *s, struct kvfs_meta_json_error *err)
{
	json_t *j = NULL;
	int r = kvfs_meta_json_parse(s, strlen(s), &j, err);

	ck_assert_ptr_null(j);
	return r;
}

/* Structs have padding: compare them through their encodings. */
#define ck_same(enc, a, b)                                                                         \
	do {                                                                                       \
		json_t *ja_ = enc(a), *jb_ = enc(b);                                               \
		ck_assert(json_equal(ja_, jb_));                                                   \
		json_decref(ja_);                                                                  \
		json_decref(jb_);                                                                  \
	} while (0)

/* @j (consumed) through the wire: dumped as the client sends it, parsed as the server reads it. */
static json_t *wire(json_t *j)
{
	char *s;
	json_t *back;

	ck_assert_ptr_nonnull(j);
	s = json_dumps(j, JSON_COMPACT);
	ck_assert_ptr_nonnull(s);
	json_decref(j);
	back = parse_ok(s);
	free(s);
	return back;
}

static void layout_free(struct kvfs_layout *l)
{
	if (l)
		free(l->pages);
	free(l);
}

/* ---------------------------------------------------------------------------------------- */

START_TEST(parse)
{
	struct kvfs_meta_json_error err = {{0}};
	json_t *j;

	ck_assert_int_eq(parse_err("", &err), -EPROTO);
	ck_assert_int_eq(parse_err("{", &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "malformed JSON"));
	ck_assert_int_eq(parse_err("[1,2]", &err), -EPROTO);
	ck_assert_int_eq(parse_err("\"x\"", &err), -EPROTO);
	ck_assert_int_eq(parse_err("{\"a\":1,\"a\":2}", &err), -EPROTO);
	ck_assert_int_eq(parse_err("{} trailing", &err), -EPROTO);
	ck_assert_int_eq(parse_err("{\"a\":\"\\u0000\"}", &err), -EPROTO);
	j = parse_ok("  {\"a\": 1}\n");
	json_decref(j);
}
END_TEST

START_TEST(fields)
{
	struct kvfs_meta_json_error err = {{0}};
	json_t *j = parse_ok("{\"u\": 5, \"neg\": -1, \"big\": 4294967296, \"s\": \"str\", "
			     "\"f\": 1.5, \"b\": true, \"n\": null, \"a\": [1,2,3], "
			     "\"t\": \"1\"}");
	uint64_t u64 = 0;
	uint32_t u32 = 0;
	int64_t i64 = 0;
	bool b = false;
	char buf[8];
	json_t *arr;

	ck_assert_int_eq(kvfs_meta_json_u64(j, "u", true, 0, &u64, &err), 0);
	ck_assert_uint_eq(u64, 5);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "neg", true, 0, &u64, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "'neg'"));
	ck_assert_int_eq(kvfs_meta_json_u32(j, "big", true, 0, &u32, &err), -EINVAL);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "big", true, 0, &u64, &err), 0);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "f", true, 0, &u64, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "t", true, 0, &u64, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "b", true, 0, &u64, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "missing", true, 0, &u64, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "missing field 'missing'"));
	ck_assert_int_eq(kvfs_meta_json_u64(j, "missing", false, 42, &u64, &err), 0);
	ck_assert_uint_eq(u64, 42);
	ck_assert_int_eq(kvfs_meta_json_u64(j, "n", false, 7, &u64, &err), 0);
	ck_assert_uint_eq(u64, 7);
	ck_assert_int_eq(kvfs_meta_json_i64(j, "neg", true, 0, &i64, &err), 0);
	ck_assert_int_eq(i64, -1);
	ck_assert_int_eq(kvfs_meta_json_bool(j, "b", true, false, &b, &err), 0);
	ck_assert(b);
	ck_assert_int_eq(kvfs_meta_json_bool(j, "u", true, false, &b, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_str(j, "s", true, NULL, buf, 7, &err), 0);
	ck_assert_str_eq(buf, "str");
	ck_assert_int_eq(kvfs_meta_json_str(j, "s", true, NULL, buf, 2, &err), -EINVAL);
	ck_assert_int_eq(kvfs_meta_json_str(j, "u", true, NULL, buf, 7, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_array(j, "a", true, 3, &arr, &err), 0);
	ck_assert_int_eq(kvfs_meta_json_array(j, "a", true, 2, &arr, &err), -EINVAL);
	ck_assert_int_eq(kvfs_meta_json_array(j, "s", true, 9, &arr, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_array(j, "zz", false, 9, &arr, &err), 0);
	ck_assert_ptr_null(arr);
	json_decref(j);
}
END_TEST

START_TEST(attr_roundtrip)
{
	struct kvfs_attr a = {.ino = 1ull << 40,
			      .size = 123456789012ull,
			      .version = 7,
			      .blocks = 2048,
			      .mode = 0100644,
			      .uid = 1000,
			      .gid = 1001,
			      .nlink = 1,
			      .pool = 3,
			      .page_size = 1 << 20,
			      .atime_ns = -5,
			      .mtime_ns = 1700000000123456789ll,
			      .ctime_ns = 1700000000000000001ll,
			      .flags = KVFS_ATTR_LOST},
			 b;
	struct kvfs_meta_json_error err = {{0}};
	json_t *j = kvfs_meta_json_from_attr(&a);

	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, false, &b, &err), 0);
	ck_same(kvfs_meta_json_from_attr, &a, &b);
	json_object_del(j, "mode");
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, false, &b, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "'mode'"));
	memset(&b, 0, sizeof(b));
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, true, &b, &err), 0);
	ck_assert_uint_eq(b.mode, 0);
	ck_assert_uint_eq(b.size, a.size);
	json_object_set_new(j, "uid", json_string("root"));
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, true, &b, &err), -EPROTO);
	json_object_set_new(j, "uid", json_integer(-3));
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, true, &b, &err), -EINVAL);
	json_decref(j);
	j = json_array();
	ck_assert_int_eq(kvfs_meta_json_to_attr(j, true, &b, &err), -EPROTO);
	json_decref(j);
}
END_TEST

START_TEST(layout_roundtrip)
{
	struct kvfs_page_entry pages[3] = {{0, {1, 2, 0}},
					   {5, {2, 9, 1ull << 33}},
					   {1ull << 40, {4294967295u, 4294967295u, 4096}}};
	struct kvfs_layout l = {.attr = {.ino = 99, .mode = 0100600, .nlink = 1},
				.npages = 3,
				.pages = pages},
			   *out = NULL;
	struct kvfs_meta_json_error err = {{0}};
	struct kvfs_page_entry *pp;
	struct kvfs_page_ref ref;
	size_t n;
	json_t *j = kvfs_meta_json_from_layout(&l), *bad;

	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(kvfs_meta_json_to_layout(j, &out, &err), 0);
	ck_assert_uint_eq(out->npages, 3);
	{
		json_t *ja = kvfs_meta_json_from_pages(out->pages, 3),
		       *jb = kvfs_meta_json_from_pages(pages, 3);

		ck_assert(json_equal(ja, jb));
		json_decref(ja);
		json_decref(jb);
	}
	ck_assert_uint_eq(out->attr.ino, 99);
	layout_free(out);
	json_decref(j);

	/* empty layout */
	l.npages = 0;
	j = kvfs_meta_json_from_layout(&l);
	ck_assert_int_eq(kvfs_meta_json_to_layout(j, &out, &err), 0);
	ck_assert_uint_eq(out->npages, 0);
	layout_free(out);
	json_decref(j);

	/* unsorted, wrong arity, wrong types, out of range */
	bad = parse_ok("{\"p\": [[5,1,1,0],[5,1,1,0]]}");
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "p"), 10, true, &pp, &n, &err),
		-EINVAL);
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "p"), 10, false, &pp, &n, &err), 0);
	free(pp);
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "p"), 1, false, &pp, &n, &err),
		-EINVAL);
	json_decref(bad);
	bad = parse_ok("{\"p\": [[5,1,1]], \"q\": [[1,\"a\",1,0]], \"r\": [[1,4294967296,1,0]],"
		       "\"s\": {}, \"ref\": [1,2,3], \"ref2\": [1,2], \"ref3\": [1,-2,3]}");
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "p"), 10, true, &pp, &n, &err),
		-EPROTO);
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "q"), 10, true, &pp, &n, &err),
		-EPROTO);
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "r"), 10, true, &pp, &n, &err),
		-EINVAL);
	ck_assert_int_eq(
		kvfs_meta_json_to_pages(json_object_get(bad, "s"), 10, true, &pp, &n, &err),
		-EPROTO);
	ck_assert_int_eq(kvfs_meta_json_to_ref(json_object_get(bad, "ref"), &ref, &err), 0);
	ck_assert_uint_eq(ref.node, 1);
	ck_assert_uint_eq(ref.incarnation, 2);
	ck_assert_uint_eq(ref.off, 3);
	ck_assert_int_eq(kvfs_meta_json_to_ref(json_object_get(bad, "ref2"), &ref, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_to_ref(json_object_get(bad, "ref3"), &ref, &err), -EINVAL);
	ck_assert_int_eq(kvfs_meta_json_to_layout(bad, &out, &err), -EPROTO);
	json_decref(bad);
	{
		json_t *rj = kvfs_meta_json_from_ref(&pages[1].ref);

		ck_assert_int_eq(kvfs_meta_json_to_ref(rj, &ref, &err), 0);
		ck_assert(ref.node == 2 && ref.incarnation == 9 && ref.off == 1ull << 33);
		json_decref(rj);
	}
}
END_TEST

START_TEST(dirent_pool_statfs_node)
{
	struct kvfs_dirent d = {.cookie = 17, .attr = {.ino = 20, .mode = 040755}}, d2;
	struct kvfs_pool_attr p = {.id = 2,
				   .page_size = 1 << 20,
				   .capacity = 1ull << 34,
				   .evict = KVFS_EVICT_NONE,
				   .root_ino = 17,
				   .used = 5,
				   .files = 1},
			      p2;
	struct kvfs_statfs s = {.capacity = 100,
				.free = 50,
				.used = 50,
				.files = 3,
				.page_size = 65536},
			   s2;
	struct kvfs_node_info ni = {.id = 3, .incarnation = 8, .arena_size = 1ull << 30}, ni2;
	struct kvfs_meta_json_error err = {{0}};
	json_t *j;

	memset(d.name, 'x', KVFS_NAME_MAX);
	d.name[KVFS_NAME_MAX] = 0;
	j = kvfs_meta_json_from_dirent(&d);
	ck_assert_int_eq(kvfs_meta_json_to_dirent(j, &d2, &err), 0);
	ck_assert_str_eq(d2.name, d.name);
	ck_assert_uint_eq(d2.cookie, 17);
	ck_assert_uint_eq(d2.attr.mode, 040755);
	json_object_set_new(j, "cookie", json_integer(0));
	ck_assert_int_eq(kvfs_meta_json_to_dirent(j, &d2, &err), -EINVAL);
	json_decref(j);
	memset(d.name, 0xff, KVFS_NAME_MAX); /* not UTF-8: travels as "name_hex" */
	j = wire(kvfs_meta_json_from_dirent(&d));
	ck_assert_ptr_null(json_object_get(j, "name"));
	ck_assert_uint_eq(json_string_length(json_object_get(j, "name_hex")), 2 * KVFS_NAME_MAX);
	ck_assert_int_eq(kvfs_meta_json_to_dirent(j, &d2, &err), 0);
	ck_assert_str_eq(d2.name, d.name);
	json_object_set_new(j, "name", json_string("x"));
	ck_assert_int_eq(kvfs_meta_json_to_dirent(j, &d2, &err), -EPROTO);
	json_decref(j);

	snprintf(p.name, sizeof(p.name), "kv");
	j = kvfs_meta_json_from_pool(&p);
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), 0);
	ck_same(kvfs_meta_json_from_pool, &p, &p2);
	json_object_set_new(j, "evict", json_string("fifo"));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	json_object_set_new(j, "evict", json_string("lru"));
	json_object_set_new(j, "page_size", json_integer(3 << 20));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "page_size"));
	json_object_set_new(j, "name", json_string("a/b"));
	json_object_set_new(j, "page_size", json_integer(0));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	json_object_set_new(j, "name", json_string("a\nb"));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	json_object_set_new(j, "name", json_string("a\x01"));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	json_object_set_new(j, "name", json_string(".."));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	json_object_set_new(j, "name", json_string("kv"));
	json_object_set_new(j, "capacity", json_integer((json_int_t)(KVFS_POOL_SIZE_MAX + 1)));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "capacity"));
	json_object_set_new(j, "capacity", json_integer((json_int_t)KVFS_POOL_SIZE_MAX));
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), 0);
	json_decref(j);
	j = parse_ok("{\"name\": \"mamba\", \"page_size\": 65536}");
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, false, &p2, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_to_pool(j, true, &p2, &err), 0);
	ck_assert_str_eq(p2.name, "mamba");
	ck_assert_uint_eq(p2.evict, KVFS_EVICT_LRU);
	json_decref(j);

	j = kvfs_meta_json_from_statfs(&s);
	ck_assert_int_eq(kvfs_meta_json_to_statfs(j, &s2, &err), 0);
	ck_same(kvfs_meta_json_from_statfs, &s, &s2);
	json_decref(j);

	snprintf(ni.addr, sizeof(ni.addr), "10.0.0.2:9400");
	j = kvfs_meta_json_from_node(&ni);
	ck_assert_int_eq(kvfs_meta_json_to_node(j, &ni2, &err), 0);
	ck_same(kvfs_meta_json_from_node, &ni, &ni2);
	json_object_set_new(j, "addr",
			    json_string("0123456789012345678901234567890123456789"
					"0123456789012345678901234567890123456789"));
	ck_assert_int_eq(kvfs_meta_json_to_node(j, &ni2, &err), -EINVAL);
	json_decref(j);
}
END_TEST

/* @name through "name"/"name_hex" and back, byte-exact; @hex: the form it must travel in. */
static void name_roundtrip(const char *name, bool hex)
{
	struct kvfs_meta_json_error err = {{0}};
	char buf[KVFS_NAME_MAX + 1];
	json_t *j = json_object();

	ck_assert_int_eq(kvfs_meta_json_set_name(j, "name", name), 0);
	j = wire(j);
	ck_assert_msg(json_object_get(j, hex ? "name_hex" : "name") != NULL &&
			      json_object_get(j, hex ? "name" : "name_hex") == NULL,
		      "name of %zu bytes starting %02x: wrong form", strlen(name),
		      (unsigned char)name[0]);
	ck_assert_msg(kvfs_meta_json_name(j, "name", true, buf, KVFS_NAME_MAX, &err) == 0, "%s",
		      err.msg);
	ck_assert_str_eq(buf, name);
	json_decref(j);
}

START_TEST(names)
{
	static const char *const not_utf8[] = {"\xfe\xff",
					       "\x80",
					       "a\xc3",
					       "\xc0\xaf", /* overlong '/' */
					       "\xed\xa0\x80",
					       "\xf4\x90\x80\x80", /* surrogate, above U+10FFFF */
					       "\xe5\x90\x8d\xe5",
					       "user.\xfe\xff",
					       "\x01\x7f\xfe\xff"};
	static const char *const utf8[] = {"f.bin",
					   "\xe5\x90\x8d\xe5\x89\x8d.bin",
					   "\xf0\x9f\x98\x80",
					   "new\nline",
					   "q\"'\\*?[]",
					   "\x01\x7f"};
	struct kvfs_meta_json_error err = {{0}};
	char name[KVFS_NAME_MAX + 2], buf[KVFS_NAME_MAX + 1];
	json_t *j, *arr, *hex;

	/* every byte but NUL and '/', alone and inside a name */
	for (int b = 1; b < 256; b++) {
		if (b == '/')
			continue;
		snprintf(name, sizeof(name), "%c", b);
		name_roundtrip(name, b >= 0x80);
		snprintf(name, sizeof(name), "a%cz", b);
		name_roundtrip(name, b >= 0x80);
	}
	for (size_t i = 0; i < sizeof(not_utf8) / sizeof(not_utf8[0]); i++)
		name_roundtrip(not_utf8[i], true);
	for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++)
		name_roundtrip(utf8[i], false);

	/* 255 bytes that are not UTF-8 fit (510 hex digits); 256 do not */
	memset(name, 0xfe, KVFS_NAME_MAX);
	name[KVFS_NAME_MAX] = 0;
	name_roundtrip(name, true);
	for (int i = 0; i < KVFS_NAME_MAX; i++)
		name[i] = (char)(1 + i % 254 + (i % 254 >= '/' - 1)); /* 0x01..0xff without '/' */
	name_roundtrip(name, true);
	j = json_object();
	name[KVFS_NAME_MAX] = (char)0xfe;
	name[KVFS_NAME_MAX + 1] = 0;
	ck_assert_int_eq(kvfs_meta_json_set_name(j, "name", name), 0);
	ck_assert_int_eq(kvfs_meta_json_name(j, "name", true, buf, KVFS_NAME_MAX, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "'name_hex' is longer than 255 bytes"));
	json_decref(j);

	/* hex is accepted for any name, in either case; both forms at once are not */
	j = parse_ok("{\"a_hex\": \"662E62696E\", \"b_hex\": \"fE41\", \"c\": \"x\", "
		     "\"c_hex\": \"78\", \"odd_hex\": \"fe4\", \"bad_hex\": \"fezz\", "
		     "\"nul_hex\": \"fe00\", \"int_hex\": 12, \"empty_hex\": \"\", \"n\": null}");
	ck_assert_int_eq(kvfs_meta_json_name(j, "a", true, buf, KVFS_NAME_MAX, &err), 0);
	ck_assert_str_eq(buf, "f.bin");
	ck_assert_int_eq(kvfs_meta_json_name(j, "b", true, buf, KVFS_NAME_MAX, &err), 0);
	ck_assert_str_eq(buf, "\xfe"
			      "A");
	ck_assert_int_eq(kvfs_meta_json_name(j, "c", true, buf, KVFS_NAME_MAX, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "'c' or 'c_hex', not both"));
	strcpy(buf, "kept");
	ck_assert_int_eq(kvfs_meta_json_name(j, "odd", true, buf, KVFS_NAME_MAX, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "'odd_hex' must be an even number of hex digits"));
	ck_assert_int_eq(kvfs_meta_json_name(j, "bad", true, buf, KVFS_NAME_MAX, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "'bad_hex': character 2 is not a hex digit"));
	ck_assert_int_eq(kvfs_meta_json_name(j, "nul", true, buf, KVFS_NAME_MAX, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "NUL"));
	ck_assert_str_eq(buf, "kept"); /* written only on success */
	ck_assert_int_eq(kvfs_meta_json_name(j, "int", true, buf, KVFS_NAME_MAX, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "'int_hex' must be a string"));
	ck_assert_int_eq(kvfs_meta_json_name(j, "empty", true, buf, KVFS_NAME_MAX, &err), 0);
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(kvfs_meta_json_name(j, "n", true, buf, KVFS_NAME_MAX, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "missing field 'n' (or 'n_hex')"));
	ck_assert_int_eq(kvfs_meta_json_name(j, "n", false, buf, KVFS_NAME_MAX, &err), 0);
	ck_assert_str_eq(buf, "");
	json_decref(j);
	j = json_pack("{ss#}", "name", "a\0b", (size_t)3); /* a NUL can only come from code */
	ck_assert_int_eq(kvfs_meta_json_name(j, "name", true, buf, KVFS_NAME_MAX, &err), -EINVAL);
	json_decref(j);

	/* a body that is not UTF-8 says what to do instead */
	ck_assert_int_eq(parse_err("{\"name\": \"\xfe\xff\"}", &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "not UTF-8"));
	ck_assert_ptr_nonnull(strstr(err.msg, "_hex"));

	/* arrays: UTF-8 names in one, the others in the _hex twin */
	arr = json_array();
	hex = json_array();
	ck_assert_int_eq(kvfs_meta_json_append_name(arr, hex, "user.a"), 0);
	ck_assert_int_eq(kvfs_meta_json_append_name(arr, hex, "user.\xfe\xff"), 0);
	ck_assert_int_eq(kvfs_meta_json_append_name(arr, hex, "user.\xe5\x90\x8d"), 0);
	j = wire(json_pack("{so so}", "names", arr, "names_hex", hex));
	arr = json_object_get(j, "names");
	hex = json_object_get(j, "names_hex");
	ck_assert_uint_eq(json_array_size(arr), 2);
	ck_assert_uint_eq(json_array_size(hex), 1);
	ck_assert_str_eq(json_string_value(json_array_get(hex, 0)), "757365722efeff");
	ck_assert_int_eq(kvfs_meta_json_name_item(json_array_get(hex, 0), true, "names", 0, buf,
						  KVFS_NAME_MAX, &err),
			 0);
	ck_assert_str_eq(buf, "user.\xfe\xff");
	ck_assert_int_eq(kvfs_meta_json_name_item(json_array_get(arr, 1), false, "names", 1, buf,
						  KVFS_NAME_MAX, &err),
			 0);
	ck_assert_str_eq(buf, "user.\xe5\x90\x8d");
	ck_assert_int_eq(kvfs_meta_json_name_item(json_array_get(arr, 1), true, "names", 1, buf,
						  KVFS_NAME_MAX, &err),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "names_hex[1]"));
	json_decref(j);
}
END_TEST

START_TEST(hf3fs_bodies)
{
	struct kvfs_meta_json_error err = {{0}};
	struct kvfs_meta_hf3fs_key *keys = NULL;
	struct kvfs_meta_hf3fs_confirm *c = NULL;
	int64_t *rel = NULL;
	size_t n, nc, nr;
	const char *ns = "?";
	json_t *j;

	j = parse_ok("{\"keys\": [\"a\", \"bc\"], \"namespace\": \"mamba\"}");
	ck_assert_int_eq(kvfs_meta_json_3fs_namespace(j, &ns, &err), 0);
	ck_assert_str_eq(ns, "mamba");
	ck_assert_int_eq(kvfs_meta_json_3fs_keys(j, 16, &keys, &n, &err), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(keys[1].len, 2);
	ck_assert(!memcmp(keys[1].ptr, "bc", 2));
	free(keys);
	ck_assert_int_eq(kvfs_meta_json_3fs_keys(j, 1, &keys, &n, &err), -EINVAL);
	ck_assert_int_eq(kvfs_meta_json_3fs_key_pairs(j, 16, &keys, &n, &err), -EPROTO);
	json_decref(j);

	j = parse_ok("{\"keys\": []}");
	ck_assert_int_eq(kvfs_meta_json_3fs_namespace(j, &ns, &err), 0);
	ck_assert_ptr_null(ns);
	ck_assert_int_eq(kvfs_meta_json_3fs_keys(j, 16, &keys, &n, &err), 0);
	ck_assert_uint_eq(n, 0);
	free(keys);
	json_decref(j);

	j = parse_ok("{\"keys\": [\"a\", 1], \"namespace\": 5}");
	ck_assert_int_eq(kvfs_meta_json_3fs_namespace(j, &ns, &err), -EPROTO);
	ck_assert_int_eq(kvfs_meta_json_3fs_keys(j, 16, &keys, &n, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "key 1"));
	json_decref(j);
	j = parse_ok("{\"nokeys\": []}");
	ck_assert_int_eq(kvfs_meta_json_3fs_keys(j, 16, &keys, &n, &err), -EPROTO);
	json_decref(j);

	j = parse_ok("{\"keys\": [[\"a\", \"\"], [\"b\", null], [\"c\", \"a\"]]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_key_pairs(j, 16, &keys, &n, &err), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert(!memcmp(keys[2].ptr, "c", 1));
	free(keys);
	json_decref(j);
	j = parse_ok("{\"keys\": [[\"a\"]]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_key_pairs(j, 16, &keys, &n, &err), -EPROTO);
	json_decref(j);
	j = parse_ok("{\"keys\": [[\"a\", 3]]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_key_pairs(j, 16, &keys, &n, &err), -EPROTO);
	json_decref(j);

	j = parse_ok("{\"written_keys_to_confirm\": [[\"a\", 3], [\"b\", 0]], "
		     "\"pages_to_release\": [7]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_confirm(j, 16, &c, &nc, &rel, &nr, &err), 0);
	ck_assert_uint_eq(nc, 2);
	ck_assert_uint_eq(nr, 1);
	ck_assert_int_eq(c[0].index, 3);
	ck_assert_int_eq(rel[0], 7);
	free(c);
	free(rel);
	json_decref(j);
	j = parse_ok("{}");
	ck_assert_int_eq(kvfs_meta_json_3fs_confirm(j, 16, &c, &nc, &rel, &nr, &err), 0);
	ck_assert_uint_eq(nc + nr, 0);
	free(c);
	free(rel);
	json_decref(j);
	j = parse_ok("{\"written_keys_to_confirm\": [[\"a\", \"3\"]]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_confirm(j, 16, &c, &nc, &rel, &nr, &err), -EPROTO);
	json_decref(j);
	j = parse_ok("{\"pages_to_release\": [1.0]}");
	ck_assert_int_eq(kvfs_meta_json_3fs_confirm(j, 16, &c, &nc, &rel, &nr, &err), -EPROTO);
	json_decref(j);
	j = parse_ok("{\"pages_to_release\": 1}");
	ck_assert_int_eq(kvfs_meta_json_3fs_confirm(j, 16, &c, &nc, &rel, &nr, &err), -EPROTO);
	json_decref(j);
}
END_TEST

/* The fast parser: accepts the common bodies with the same meaning as jansson, and answers
 * -EAGAIN (fall back to jansson) for everything else. */
static int fast(const char *body, enum kvfs_meta_3fs_shape shape, size_t max,
		struct kvfs_meta_3fs_body *b)
{
	return kvfs_meta_fast_3fs(body, strlen(body), shape, max, b);
}

START_TEST(fast_parser)
{
	static const char *const fallback_keys[] = {
		"",
		"{",
		"[]",
		"{}", /* keys missing: jansson reports it */
		"{\"keys\": null}",
		"{\"keys\": [\"a\"], \"keys\": []}", /* duplicate */
		"{\"keys\": [\"a\\\"b\"]}",	     /* an escape */
		"{\"keys\": [\"\xc3\xa9\"]}",	     /* non-ASCII */
		"{\"keys\": [\"a\"], \"other\": 1}", /* unknown field */
		"{\"keys\": [\"a\",]}",
		"{\"keys\": [\"a\"]} x",
		"{\"keys\": [1]}",
		"{\"keys\": [\"a\"], \"namespace\": 5}",
		"{\"keys\": [\"a\"]",
	};
	struct kvfs_meta_3fs_body b;
	char big[600];

	for (size_t i = 0; i < sizeof(fallback_keys) / sizeof(fallback_keys[0]); i++)
		ck_assert_msg(fast(fallback_keys[i], KVFS_META_3FS_KEYS, 16, &b) == -EAGAIN, "%s",
			      fallback_keys[i]);

	ck_assert_int_eq(fast(" {\"namespace\" : \"ns1\", \"keys\":[ \"a\" ,\"bc\",\"\"]}\n",
			      KVFS_META_3FS_KEYS, 16, &b),
			 0);
	ck_assert(b.has_ns);
	ck_assert_str_eq(b.ns, "ns1");
	ck_assert_uint_eq(b.nkeys, 3);
	ck_assert_uint_eq(b.keys[1].len, 2);
	ck_assert_mem_eq(b.keys[1].ptr, "bc", 2);
	ck_assert_uint_eq(b.keys[2].len, 0);
	kvfs_meta_fast_3fs_free(&b);
	ck_assert_int_eq(fast("{\"keys\": [], \"namespace\": null}", KVFS_META_3FS_KEYS, 16, &b),
			 0);
	ck_assert(!b.has_ns);
	ck_assert_uint_eq(b.nkeys, 0);
	kvfs_meta_fast_3fs_free(&b);
	/* limits: array length and key length go to jansson for the exact error */
	ck_assert_int_eq(fast("{\"keys\": [\"a\", \"b\", \"c\"]}", KVFS_META_3FS_KEYS, 2, &b),
			 -EAGAIN);
	memset(big, 'x', sizeof(big));
	snprintf(big, sizeof(big), "{\"keys\": [\"%0*d\"]}", KVFS_META_HF3FS_KEY_MAX + 1, 0);
	ck_assert_int_eq(fast(big, KVFS_META_3FS_KEYS, 2, &b), -EAGAIN);

	ck_assert_int_eq(fast("{\"keys\": [[\"k1\", \"\"], [\"k2\", null]]}",
			      KVFS_META_3FS_KEY_PAIRS, 16, &b),
			 0);
	ck_assert_uint_eq(b.nkeys, 2);
	ck_assert_mem_eq(b.keys[1].ptr, "k2", 2);
	kvfs_meta_fast_3fs_free(&b);
	ck_assert_int_eq(fast("{\"keys\": [[\"k1\"]]}", KVFS_META_3FS_KEY_PAIRS, 16, &b), -EAGAIN);
	ck_assert_int_eq(fast("{\"keys\": [[\"k1\", 3]]}", KVFS_META_3FS_KEY_PAIRS, 16, &b),
			 -EAGAIN);

	ck_assert_int_eq(fast("{\"written_keys_to_confirm\": [[\"a\", 3], [\"b\", -1]], "
			      "\"pages_to_release\": [7, 0]}",
			      KVFS_META_3FS_CONFIRM, 16, &b),
			 0);
	ck_assert_uint_eq(b.nconfirms, 2);
	ck_assert_int_eq(b.confirms[1].index, -1);
	ck_assert_uint_eq(b.nrelease, 2);
	ck_assert_int_eq(b.release[0], 7);
	kvfs_meta_fast_3fs_free(&b);
	ck_assert_int_eq(fast("{}", KVFS_META_3FS_CONFIRM, 16, &b), 0);
	ck_assert_uint_eq(b.nconfirms + b.nrelease, 0);
	kvfs_meta_fast_3fs_free(&b);
	ck_assert_int_eq(fast("{\"pages_to_release\": [1.0]}", KVFS_META_3FS_CONFIRM, 16, &b),
			 -EAGAIN);
	ck_assert_int_eq(fast("{\"pages_to_release\": [01]}", KVFS_META_3FS_CONFIRM, 16, &b),
			 -EAGAIN);
	ck_assert_int_eq(fast("{\"pages_to_release\": [1234567890123456789]}",
			      KVFS_META_3FS_CONFIRM, 16, &b),
			 -EAGAIN);
	ck_assert_int_eq(fast("{\"keys\": []}", KVFS_META_3FS_CONFIRM, 16, &b), -EAGAIN);
}
END_TEST

START_TEST(base64)
{
	static const char *const vec[][2] = {
		{"", ""},	 {"f", "Zg=="},	       {"fo", "Zm8="},
		{"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}};
	void *out;
	size_t len;

	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		char *e = kvfs_meta_b64_encode(vec[i][0], strlen(vec[i][0]));

		ck_assert_str_eq(e, vec[i][1]);
		free(e);
		ck_assert_int_eq(kvfs_meta_b64_decode(vec[i][1], strlen(vec[i][1]), &out, &len), 0);
		ck_assert_uint_eq(len, strlen(vec[i][0]));
		ck_assert_mem_eq(out, vec[i][0], len);
		free(out);
	}
	ck_assert_int_eq(kvfs_meta_b64_decode("Zg=", 3, &out, &len), -EINVAL);
	ck_assert_int_eq(kvfs_meta_b64_decode("Z===", 4, &out, &len), -EINVAL);
	ck_assert_int_eq(kvfs_meta_b64_decode("Zg=a", 4, &out, &len), -EINVAL);
	ck_assert_int_eq(kvfs_meta_b64_decode("Z!==", 4, &out, &len), -EINVAL);
}
END_TEST

/* The single errno -> status mapping: the xattr bounds are client errors, not 500s. */
START_TEST(status_mapping)
{
	ck_assert_uint_eq(kvfs_meta_http_status(0), 200);
	ck_assert_uint_eq(kvfs_meta_http_status(-ENOSPC), 507);
	ck_assert_uint_eq(kvfs_meta_http_status(-E2BIG), 413);
	ck_assert_uint_eq(kvfs_meta_http_status(-EMSGSIZE), 413);
	ck_assert_uint_eq(kvfs_meta_http_status(-EIO), 500);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("http");
	TCase *codec = tcase_create("codec");

	tcase_add_test(codec, parse);
	tcase_add_test(codec, fields);
	tcase_add_test(codec, attr_roundtrip);
	tcase_add_test(codec, layout_roundtrip);
	tcase_add_test(codec, dirent_pool_statfs_node);
	tcase_add_test(codec, names);
	tcase_add_test(codec, hf3fs_bodies);
	tcase_add_test(codec, fast_parser);
	tcase_add_test(codec, base64);
	tcase_add_test(codec, status_mapping);
	suite_add_tcase(s, codec);
	return s;
}
