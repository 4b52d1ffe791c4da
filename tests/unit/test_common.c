/* SPDX-License-Identifier: MIT */
/*
 * test_common.c - Check runner for common/: the intrusive hash table and the small helpers.
 *
 * The table against a reference model (insert, find with colliding hashes, remove in every
 * position of a chain, iterate while removing, growth over a million elements with chains
 * kept short), the hash functions' spread, and the size parser, clocks, mkdir -p and
 * big-endian keys at their edges.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"
#include "htable.h"
#include "util.h"

struct elem {
	uint64_t key;
	struct kvfs_hnode node;
	int seen;
};

static struct elem *find(struct kvfs_htable *t, uint64_t key, uint64_t h)
{
	for (struct kvfs_hnode *n = kvfs_htable_first(t, h); n; n = kvfs_htable_next(n, h)) {
		struct elem *e = kvfs_container_of(n, struct elem, node);

		if (e->key == key)
			return e;
	}
	return NULL;
}

START_TEST(table_basics)
{
	struct kvfs_htable t;
	struct elem e[64];
	struct kvfs_hiter it = KVFS_HITER_INIT;
	size_t n = 0;

	kvfs_htable_init(&t);
	ck_assert_ptr_null(find(&t, 1, 1));
	ck_assert_ptr_null(kvfs_htable_iter(&t, &it));
	for (int i = 0; i < 64; i++) {
		e[i].key = (uint64_t)i;
		e[i].seen = 0;
		/* every fourth key shares a hash: chains with foreign members */
		ck_assert_int_eq(kvfs_htable_insert(&t, &e[i].node, (uint64_t)(i / 4)), 0);
	}
	ck_assert_uint_eq(kvfs_htable_count(&t), 64);
	for (int i = 0; i < 64; i++)
		ck_assert_ptr_eq(find(&t, (uint64_t)i, (uint64_t)(i / 4)), &e[i]);
	ck_assert_ptr_null(find(&t, 64, 16));
	/* remove first, middle and last of a shared-hash run */
	kvfs_htable_remove(&t, &e[0].node);
	kvfs_htable_remove(&t, &e[5].node);
	kvfs_htable_remove(&t, &e[11].node);
	ck_assert_ptr_null(find(&t, 0, 0));
	ck_assert_ptr_null(find(&t, 5, 1));
	ck_assert_ptr_null(find(&t, 11, 2));
	ck_assert_ptr_eq(find(&t, 4, 1), &e[4]);
	ck_assert_ptr_eq(find(&t, 10, 2), &e[10]);
	ck_assert_uint_eq(kvfs_htable_count(&t), 61);
	/* iterate, removing every node as it comes */
	for (struct kvfs_hnode *nd; (nd = kvfs_htable_iter(&t, &it));) {
		struct elem *x = kvfs_container_of(nd, struct elem, node);

		x->seen++;
		n++;
		kvfs_htable_remove(&t, nd);
	}
	ck_assert_uint_eq(n, 61);
	ck_assert_uint_eq(kvfs_htable_count(&t), 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(e[i].seen, (i == 0 || i == 5 || i == 11) ? 0 : 1);
	kvfs_htable_fini(&t);
	kvfs_htable_fini(&t); /* twice is fine */
	/* reserve: the buckets are there before the first insert, and never shrink */
	ck_assert_int_eq(kvfs_htable_reserve(&t, 1000), 0);
	ck_assert_uint_eq(t.mask + 1, 1024);
	ck_assert_int_eq(kvfs_htable_reserve(&t, 10), 0);
	ck_assert_uint_eq(t.mask + 1, 1024);
	kvfs_htable_fini(&t);
}
END_TEST

START_TEST(table_growth)
{
	const size_t N = 1000000;
	struct elem *e = calloc(N, sizeof(*e));
	struct kvfs_htable t;
	size_t longest = 0;

	ck_assert_ptr_nonnull(e);
	kvfs_htable_init(&t);
	for (size_t i = 0; i < N; i++) {
		e[i].key = i * 4096; /* page offsets: the low bits carry nothing */
		ck_assert_int_eq(kvfs_htable_insert(&t, &e[i].node, kvfs_hash_u64(e[i].key)), 0);
	}
	ck_assert_uint_ge(t.mask + 1, N / 2);
	for (size_t b = 0; b <= t.mask; b++) {
		size_t len = 0;

		for (struct kvfs_hnode *n = t.buckets[b]; n; n = n->next)
			len++;
		if (len > longest)
			longest = len;
	}
	ck_assert_uint_le(longest, 16);
	for (size_t i = 0; i < N; i += 7)
		ck_assert_ptr_eq(find(&t, e[i].key, kvfs_hash_u64(e[i].key)), &e[i]);
	for (size_t i = 0; i < N; i += 2)
		kvfs_htable_remove(&t, &e[i].node);
	ck_assert_uint_eq(kvfs_htable_count(&t), N / 2);
	for (size_t i = 0; i < N; i += 1001)
		ck_assert_ptr_eq(find(&t, e[i].key, kvfs_hash_u64(e[i].key)), i % 2 ? &e[i] : NULL);
	kvfs_htable_fini(&t);
	free(e);
}
END_TEST

START_TEST(hash_spread)
{
	char name[32];
	unsigned buckets[256] = {0};

	/* HiCacheFile-like names differing in their last characters land everywhere */
	for (int i = 0; i < 25600; i++) {
		int len = snprintf(name, sizeof(name), "page_%08d.bin", i);

		buckets[kvfs_hash_bytes(name, (size_t)len) & 255]++;
	}
	for (int b = 0; b < 256; b++) {
		ck_assert_uint_gt(buckets[b], 50);
		ck_assert_uint_lt(buckets[b], 150);
	}
	ck_assert_uint_ne(kvfs_hash_bytes("", 0), kvfs_hash_bytes("\0", 1));
	ck_assert_uint_ne(kvfs_hash_u64(0), kvfs_hash_u64(1));
}
END_TEST

START_TEST(sizes)
{
	static const struct {
		const char *s;
		int r;
		uint64_t v;
	} cases[] = {
		{"0", 0, 0},
		{"4096", 0, 4096},
		{"64K", 0, 64ull << 10},
		{"64k", 0, 64ull << 10},
		{"1M", 0, 1ull << 20},
		{"1MiB", 0, 1ull << 20},
		{"1MB", 0, 1ull << 20},
		{"2g", 0, 2ull << 30},
		{"3T", 0, 3ull << 40},
		{"5P", 0, 5ull << 50},
		{"15E", 0, 15ull << 60},
		{"16E", -ERANGE, 0},
		{"100B", 0, 100},
		{"18446744073709551615", 0, UINT64_MAX},
		{"18446744073709551616", -ERANGE, 0},
		{"99999999999999999999", -ERANGE, 0},
		{"16777216T", -ERANGE, 0},
		{"", -EINVAL, 0},
		{"K", -EINVAL, 0},
		{"-1", -EINVAL, 0},
		{" 1", -EINVAL, 0},
		{"1 ", -EINVAL, 0},
		{"1X", -EINVAL, 0},
		{"1KK", -EINVAL, 0},
		{"1iB", -EINVAL, 0},
		{"1.5G", -EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;

		ck_assert_msg(kvfs_parse_size(cases[i].s, &v) == cases[i].r, "'%s'", cases[i].s);
		ck_assert_msg(v == (cases[i].r ? 12345 : cases[i].v), "'%s': %llu", cases[i].s,
			      (unsigned long long)v);
	}
	ck_assert_int_eq(kvfs_parse_size(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(helpers)
{
	char dir[] = "/tmp/kvfs-common-XXXXXX", path[256];
	uint8_t b[8];
	struct stat st;
	int64_t a;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	ck_assert_int_eq(kvfs_mkdir_p(path, 0700), 0);
	ck_assert_int_eq(kvfs_mkdir_p(path, 0700), 0); /* exists: fine */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	snprintf(path, sizeof(path), "%s/a/file", dir);
	fclose(fopen(path, "w"));
	snprintf(path, sizeof(path), "%s/a/file/x", dir);
	ck_assert_int_eq(kvfs_mkdir_p(path, 0700), -ENOTDIR);
	ck_assert_int_eq(kvfs_mkdir_p("", 0700), -EINVAL);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);

	kvfs_put_be64(b, 0x0102030405060708ull);
	ck_assert_int_eq(b[0], 1);
	ck_assert_int_eq(b[7], 8);
	ck_assert_uint_eq(kvfs_get_be64(b), 0x0102030405060708ull);
	kvfs_put_be32(b, 0xa0b0c0d0u);
	ck_assert_int_eq(b[0], 0xa0);
	ck_assert_uint_eq(kvfs_get_be32(b), 0xa0b0c0d0u);

	a = kvfs_now_ns(CLOCK_MONOTONIC);
	ck_assert_int_ge(kvfs_now_ns(CLOCK_MONOTONIC), a);
	ck_assert_int_gt(kvfs_now_ms(CLOCK_REALTIME), 1600000000000ll);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, table_basics);
	tcase_add_test(tc, table_growth);
	tcase_add_test(tc, hash_spread);
	tcase_add_test(tc, sizes);
	tcase_add_test(tc, helpers);
	suite_add_tcase(s, tc);
	return s;
}
