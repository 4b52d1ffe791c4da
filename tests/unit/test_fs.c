/* SPDX-License-Identifier: MIT */
/*
 * test_fs.c - Check runner for the pure containers of fs/: the page map (pagemap.c) and the
 * hit cache (hitcache.c), through their contracts in fs_i.h only.
 *
 * Page map: find on an empty map, put and find, overwrite (the pending count follows the
 * flag), drop_from (the callback sees exactly the removed entries, the others stay findable),
 * each, growth from empty to 204,800 sparse indices (the table stays a power of two under 3/4
 * full), and a seeded random run of puts and drops against a plain model, small enough that
 * probe chains wrap around the end of the table and backward-shift deletion has to move them.
 *
 * Hit cache: put and get copy the bytes, keyed by (inode, version, index), so another version
 * misses; the first put of a key wins; a page larger than the bound is not kept; LRU eviction
 * at the byte bound, where a get makes a page most recently used; a reference taken by get
 * keeps the bytes readable after eviction and after drop_ino (the sanitizer build would see a
 * use after free); drop_ino leaves other inodes alone; exact statistics; many entries; and
 * threads that put, get and drop at once with the counters adding up after.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "fs_i.h"

/* ------------------------------------------------------------------------------------------ */
/* Page map */

static struct kvfs_page_ref ref_of(uint64_t index)
{
	return (struct kvfs_page_ref){.node = (uint32_t)(index % 7) + 1,
				      .incarnation = (uint32_t)(index >> 32) + 3,
				      .off = index * 65536};
}

/*
 * Check marks every assertion that passes in the forked test's log; the loops below run
 * millions of checks, so they test with `if` and abort only on a mismatch.
 */
static void ck_ref(const struct fs_page *p, uint64_t index)
{
	struct kvfs_page_ref want = ref_of(index);

	if (!p)
		ck_abort_msg("page %llu is missing", (unsigned long long)index);
	if (p->index != index || p->ref.node != want.node ||
	    p->ref.incarnation != want.incarnation || p->ref.off != want.off)
		ck_abort_msg("page %llu: found index %llu, node %u, incarnation %u, off %llu",
			     (unsigned long long)index, (unsigned long long)p->index, p->ref.node,
			     p->ref.incarnation, (unsigned long long)p->ref.off);
}

static void put(struct fs_pagemap *pm, uint64_t index, bool pending)
{
	struct kvfs_page_ref r = ref_of(index);

	if (!fs_pagemap_put(pm, index, &r, pending))
		ck_abort_msg("put of page %llu failed", (unsigned long long)index);
}

struct visit {
	size_t n;
	uint64_t sum;
	uint64_t min;
};

static void count_const(void *ctx, const struct fs_page *p)
{
	struct visit *v = ctx;

	v->n++;
	v->sum += p->index;
	if (p->index < v->min)
		v->min = p->index;
}

static void count_page(void *ctx, struct fs_page *p)
{
	count_const(ctx, p);
}

START_TEST(pagemap_empty)
{
	struct fs_pagemap pm;
	struct visit v = {.min = UINT64_MAX};

	fs_pagemap_init(&pm);
	ck_assert_ptr_null(fs_pagemap_find(&pm, 0));
	ck_assert_ptr_null(fs_pagemap_find(&pm, 12345));
	fs_pagemap_each(&pm, count_page, &v);
	fs_pagemap_drop_from(&pm, 0, count_const, &v);
	fs_pagemap_drop_from(&pm, 0, NULL, NULL);
	ck_assert_uint_eq(v.n, 0);
	ck_assert_uint_eq(pm.count, 0);
	fs_pagemap_fini(&pm);
	fs_pagemap_fini(&pm); /* fini leaves an empty map behind: a second one is harmless */
}
END_TEST

START_TEST(pagemap_put_find)
{
	static const uint64_t idx[] = {
		0, 1, 2, 15, 16, 17, 1000, 1ull << 32, (1ull << 40) + 5, UINT64_MAX - 1};
	struct fs_pagemap pm;
	size_t i;

	fs_pagemap_init(&pm);
	for (i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		put(&pm, idx[i], i % 2 == 0);
	ck_assert_uint_eq(pm.count, 10);
	ck_assert_uint_eq(pm.npending, 5);
	for (i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
		struct fs_page *p = fs_pagemap_find(&pm, idx[i]);

		ck_ref(p, idx[i]);
		ck_assert(p->pending == (i % 2 == 0));
	}
	ck_assert_ptr_null(fs_pagemap_find(&pm, 3));
	ck_assert_ptr_null(fs_pagemap_find(&pm, 1001));
	ck_assert_ptr_null(fs_pagemap_find(&pm, (1ull << 32) + 1));
	fs_pagemap_fini(&pm);
}
END_TEST

START_TEST(pagemap_overwrite)
{
	struct fs_pagemap pm;
	struct kvfs_page_ref r = {.node = 9, .incarnation = 9, .off = 4096};
	struct fs_page *p;

	fs_pagemap_init(&pm);
	put(&pm, 7, true);
	ck_assert_uint_eq(pm.npending, 1);
	/* pending -> committed: the same slot, a new ref, one pending less */
	p = fs_pagemap_put(&pm, 7, &r, false);
	ck_assert_ptr_eq(p, fs_pagemap_find(&pm, 7));
	ck_assert_uint_eq(p->ref.node, 9);
	ck_assert_uint_eq(p->ref.off, 4096);
	ck_assert(!p->pending);
	ck_assert_uint_eq(pm.count, 1);
	ck_assert_uint_eq(pm.npending, 0);
	/* committed -> committed, then committed -> pending, then pending -> pending */
	put(&pm, 7, false);
	ck_assert_uint_eq(pm.npending, 0);
	put(&pm, 7, true);
	ck_assert_uint_eq(pm.npending, 1);
	put(&pm, 7, true);
	ck_assert_uint_eq(pm.npending, 1);
	ck_assert_uint_eq(pm.count, 1);
	ck_ref(fs_pagemap_find(&pm, 7), 7);
	fs_pagemap_fini(&pm);
}
END_TEST

START_TEST(pagemap_drop_from)
{
	struct fs_pagemap pm;
	struct visit v = {.min = UINT64_MAX};
	uint64_t i, want = 0;

	fs_pagemap_init(&pm);
	for (i = 0; i < 100; i++)
		put(&pm, i, i % 3 == 0);
	for (i = 50; i < 100; i++)
		want += i;
	fs_pagemap_drop_from(&pm, 50, count_const, &v);
	ck_assert_uint_eq(v.n, 50);
	ck_assert_uint_eq(v.sum, want);
	ck_assert_uint_eq(v.min, 50);
	ck_assert_uint_eq(pm.count, 50);
	ck_assert_uint_eq(pm.npending, 17); /* 0, 3, ..., 48 */
	for (i = 0; i < 100; i++) {
		if (i < 50)
			ck_ref(fs_pagemap_find(&pm, i), i);
		else
			ck_assert_ptr_null(fs_pagemap_find(&pm, i));
	}
	/* past the end: nothing goes; from 0 without a callback: everything goes */
	fs_pagemap_drop_from(&pm, 1000, NULL, NULL);
	ck_assert_uint_eq(pm.count, 50);
	fs_pagemap_drop_from(&pm, 0, NULL, NULL);
	ck_assert_uint_eq(pm.count, 0);
	ck_assert_uint_eq(pm.npending, 0);
	ck_assert_ptr_null(fs_pagemap_find(&pm, 0));
	/* and the map is usable again */
	put(&pm, 3, false);
	ck_ref(fs_pagemap_find(&pm, 3), 3);
	fs_pagemap_fini(&pm);
}
END_TEST

static void bump_off(void *ctx, struct fs_page *p)
{
	(void)ctx;
	p->ref.off += 1;
}

START_TEST(pagemap_each)
{
	struct fs_pagemap pm;
	struct visit v = {.min = UINT64_MAX};
	uint64_t i, want = 0;

	fs_pagemap_init(&pm);
	for (i = 0; i < 1000; i++) {
		put(&pm, i * 1000003, false);
		want += i * 1000003;
	}
	fs_pagemap_each(&pm, count_page, &v);
	ck_assert_uint_eq(v.n, 1000);
	ck_assert_uint_eq(v.sum, want);
	ck_assert_uint_eq(v.min, 0);
	/* the callback may change what an entry points to */
	fs_pagemap_each(&pm, bump_off, NULL);
	for (i = 0; i < 1000; i++) {
		uint64_t idx = i * 1000003;

		ck_assert_uint_eq(fs_pagemap_find(&pm, idx)->ref.off, ref_of(idx).off + 1);
	}
	fs_pagemap_fini(&pm);
}
END_TEST

START_TEST(pagemap_growth)
{
	const uint64_t n = 204800; /* 3,200 runs of 64: half of it is whole runs */
	struct fs_pagemap pm;
	size_t last_cap = 0;
	uint64_t i;

	fs_pagemap_init(&pm);
	for (i = 0; i < n; i++) {
		/* sparse, as a 1 TiB file with a few pages is: consecutive runs far apart */
		uint64_t idx = (i / 64) * 1000000007ull + i % 64;

		put(&pm, idx, i % 5 == 0);
		if ((pm.cap & (pm.cap - 1)) || pm.count * 4 > pm.cap * 3 || pm.cap < last_cap)
			ck_abort_msg("%zu entries in %zu slots (%zu before)", pm.count, pm.cap,
				     last_cap);
		last_cap = pm.cap;
	}
	ck_assert_uint_eq(pm.count, n);
	ck_assert_uint_eq(pm.npending, n / 5);
	for (i = 0; i < n; i++) {
		uint64_t idx = (i / 64) * 1000000007ull + i % 64;

		ck_ref(fs_pagemap_find(&pm, idx), idx);
		if (fs_pagemap_find(&pm, idx + 64))
			ck_abort_msg("page %llu was never put", (unsigned long long)idx + 64);
	}
	/* cut the upper half: the lower half stays whole */
	fs_pagemap_drop_from(&pm, (n / 2 / 64) * 1000000007ull, NULL, NULL);
	ck_assert_uint_eq(pm.count, n / 2);
	for (i = 0; i < n / 2; i++) {
		uint64_t idx = (i / 64) * 1000000007ull + i % 64;

		ck_ref(fs_pagemap_find(&pm, idx), idx);
	}
	fs_pagemap_fini(&pm);
}
END_TEST

/* xorshift64*: the same sequence on every run, so a failure replays */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

START_TEST(pagemap_model)
{
	enum { SPACE = 512, OPS = 200000 };
	struct fs_pagemap pm;
	unsigned char model[SPACE] = {0}; /* 0 absent, 1 committed, 2 pending */
	uint64_t seed = 0x9E3779B97F4A7C15ull;
	size_t count = 0, npending = 0;
	int op;

	fs_pagemap_init(&pm);
	for (op = 0; op < OPS; op++) {
		uint64_t r = rnd(&seed), idx = (r >> 8) % SPACE;

		if ((r & 0xff) == 0) { /* now and then, a truncate */
			fs_pagemap_drop_from(&pm, idx, NULL, NULL);
			for (uint64_t i = idx; i < SPACE; i++) {
				count -= model[i] != 0;
				npending -= model[i] == 2;
				model[i] = 0;
			}
		} else {
			bool pending = r & 0x100;

			put(&pm, idx, pending);
			count += model[idx] == 0;
			npending -= model[idx] == 2;
			npending += pending;
			model[idx] = pending ? 2 : 1;
		}
		if (pm.count != count || pm.npending != npending)
			ck_abort_msg("op %d: count %zu pending %zu, model %zu and %zu", op,
				     pm.count, pm.npending, count, npending);
		if (op % 997 == 0 || op == OPS - 1) {
			for (uint64_t i = 0; i < SPACE; i++) {
				struct fs_page *p = fs_pagemap_find(&pm, i);

				if (!model[i] && p)
					ck_abort_msg("op %d: page %llu is there, model has none",
						     op, (unsigned long long)i);
				if (!model[i])
					continue;
				ck_ref(p, i);
				if (p->pending != (model[i] == 2))
					ck_abort_msg("op %d: page %llu pending %d", op,
						     (unsigned long long)i, p->pending);
			}
		}
	}
	fs_pagemap_fini(&pm);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Hit cache */

static struct fs_hitcache *hc_make(uint64_t max_bytes)
{
	struct fs_hitcache *hc = NULL;

	ck_assert_int_eq(fs_hitcache_create(max_bytes, &hc), 0);
	ck_assert_ptr_nonnull(hc);
	return hc;
}

/* fill @buf with bytes that name (ino, version, index) */
static void pattern(void *buf, uint32_t len, uint64_t ino, uint64_t version, uint64_t index)
{
	unsigned char *b = buf;

	for (uint32_t i = 0; i < len; i++)
		b[i] = (unsigned char)(ino * 31 + version * 17 + index * 7 + i);
}

static void hc_put(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
		   uint32_t len)
{
	unsigned char *buf = malloc(len ? len : 1);

	if (!buf)
		ck_abort_msg("out of memory");
	pattern(buf, len, ino, version, index);
	fs_hitcache_put(hc, ino, version, index, buf, len);
	free(buf); /* the cache keeps a copy */
}

/* get (ino, version, index): it must be there with @len bytes of its pattern; returns the ref */
static struct fs_hit *hc_get_ok(struct fs_hitcache *hc, uint64_t ino, uint64_t version,
				uint64_t index, uint32_t len, const void **ret_data)
{
	unsigned char *want = malloc(len ? len : 1);
	struct fs_hit *ref = NULL;
	uint32_t got_len = 0;
	const void *data;

	if (!want)
		ck_abort_msg("out of memory");
	data = fs_hitcache_get(hc, ino, version, index, &got_len, &ref);
	pattern(want, len, ino, version, index);
	if (!data || !ref || got_len != len || memcmp(data, want, len) != 0)
		ck_abort_msg("(%llu, %llu, %llu): %s", (unsigned long long)ino,
			     (unsigned long long)version, (unsigned long long)index,
			     !data	      ? "not cached"
			     : got_len != len ? "wrong length"
					      : "wrong bytes");
	free(want);
	if (ret_data)
		*ret_data = data;
	return ref;
}

struct hc_stats {
	uint64_t bytes, hits, misses, inserts, evictions;
};

static struct hc_stats hc_stats(struct fs_hitcache *hc)
{
	struct hc_stats st;

	fs_hitcache_stats(hc, &st.bytes, &st.hits, &st.misses, &st.inserts, &st.evictions);
	return st;
}

START_TEST(hitcache_create_destroy)
{
	struct hc_stats st;
	struct fs_hitcache *hc = hc_make(1 << 20);

	st = hc_stats(hc);
	ck_assert_uint_eq(st.bytes, 0);
	ck_assert_uint_eq(st.hits + st.misses + st.inserts + st.evictions, 0);
	fs_hitcache_destroy(hc);
	fs_hitcache_destroy(NULL);
	/* a cache destroyed with entries in it frees them */
	hc = hc_make(1 << 20);
	hc_put(hc, 1, 1, 0, 4096);
	hc_put(hc, 1, 1, 1, 4096);
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_put_get)
{
	struct fs_hitcache *hc = hc_make(1 << 20);
	struct fs_hit *ref = NULL;
	uint32_t len = 0;
	struct hc_stats st;

	hc_put(hc, 5, 2, 9, 4096);
	ck_assert(fs_hitcache_has(hc, 5, 2, 9));
	fs_hitcache_release(hc_get_ok(hc, 5, 2, 9, 4096, NULL));
	/* the key is all three: another inode, version or index misses */
	ck_assert_ptr_null(fs_hitcache_get(hc, 5, 3, 9, &len, &ref));
	ck_assert_ptr_null(fs_hitcache_get(hc, 5, 1, 9, &len, &ref));
	ck_assert_ptr_null(fs_hitcache_get(hc, 6, 2, 9, &len, &ref));
	ck_assert_ptr_null(fs_hitcache_get(hc, 5, 2, 8, &len, &ref));
	ck_assert(!fs_hitcache_has(hc, 5, 3, 9));
	ck_assert(!fs_hitcache_has(hc, 4, 2, 9));
	ck_assert(!fs_hitcache_has(hc, 5, 2, 10));
	ck_assert_ptr_null(ref); /* a miss writes no output */
	ck_assert_uint_eq(len, 0);
	/* a new version of the file is a new entry beside the old one */
	hc_put(hc, 5, 3, 9, 100);
	fs_hitcache_release(hc_get_ok(hc, 5, 3, 9, 100, NULL));
	fs_hitcache_release(hc_get_ok(hc, 5, 2, 9, 4096, NULL));
	st = hc_stats(hc);
	ck_assert_uint_eq(st.bytes, 4196);
	ck_assert_uint_eq(st.hits, 3);
	ck_assert_uint_eq(st.misses, 4); /* has() counts nothing */
	ck_assert_uint_eq(st.inserts, 2);
	ck_assert_uint_eq(st.evictions, 0);
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_first_put_wins)
{
	struct fs_hitcache *hc = hc_make(1 << 20);
	unsigned char other[64];

	hc_put(hc, 1, 1, 0, 64);
	memset(other, 0xee, sizeof(other));
	fs_hitcache_put(hc, 1, 1, 0, other, sizeof(other)); /* another reader got there first */
	fs_hitcache_release(hc_get_ok(hc, 1, 1, 0, 64, NULL));
	ck_assert_uint_eq(hc_stats(hc).inserts, 1);
	ck_assert_uint_eq(hc_stats(hc).bytes, 64);
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_too_big)
{
	struct fs_hitcache *hc = hc_make(8192);

	hc_put(hc, 1, 1, 0, 8193); /* larger than the whole cache: not kept */
	ck_assert(!fs_hitcache_has(hc, 1, 1, 0));
	ck_assert_uint_eq(hc_stats(hc).inserts, 0);
	hc_put(hc, 1, 1, 1, 8192); /* exactly the bound: kept */
	ck_assert(fs_hitcache_has(hc, 1, 1, 1));
	ck_assert_uint_eq(hc_stats(hc).bytes, 8192);
	fs_hitcache_destroy(hc);

	hc = hc_make(0); /* a zero bound keeps nothing but empty pages */
	hc_put(hc, 1, 1, 0, 1);
	ck_assert(!fs_hitcache_has(hc, 1, 1, 0));
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_lru)
{
	struct fs_hitcache *hc = hc_make(4000);
	struct hc_stats st;
	uint64_t i;

	for (i = 0; i < 4; i++)
		hc_put(hc, 1, 1, i, 1000);
	ck_assert_uint_eq(hc_stats(hc).bytes, 4000);
	/* page 0 becomes the most recently used: page 1 is now the oldest */
	fs_hitcache_release(hc_get_ok(hc, 1, 1, 0, 1000, NULL));
	hc_put(hc, 1, 1, 4, 1000);
	ck_assert(fs_hitcache_has(hc, 1, 1, 0));
	ck_assert(!fs_hitcache_has(hc, 1, 1, 1));
	for (i = 2; i < 5; i++)
		ck_assert(fs_hitcache_has(hc, 1, 1, i));
	st = hc_stats(hc);
	ck_assert_uint_eq(st.bytes, 4000);
	ck_assert_uint_eq(st.evictions, 1);
	/* has() does not refresh: 2 is the oldest now, then 3; a 2000-byte page takes both */
	ck_assert(fs_hitcache_has(hc, 1, 1, 2));
	hc_put(hc, 1, 1, 5, 2000);
	ck_assert(!fs_hitcache_has(hc, 1, 1, 2));
	ck_assert(!fs_hitcache_has(hc, 1, 1, 3));
	ck_assert(fs_hitcache_has(hc, 1, 1, 0));
	ck_assert(fs_hitcache_has(hc, 1, 1, 4));
	ck_assert(fs_hitcache_has(hc, 1, 1, 5));
	st = hc_stats(hc);
	ck_assert_uint_eq(st.bytes, 4000);
	ck_assert_uint_eq(st.evictions, 3);
	/* the bound holds whatever the sizes */
	for (i = 0; i < 1000; i++) {
		hc_put(hc, 2, 1, i, (uint32_t)(i * 37 % 1500) + 1);
		if (hc_stats(hc).bytes > 4000)
			ck_abort_msg("%llu bytes cached, bound 4000",
				     (unsigned long long)hc_stats(hc).bytes);
	}
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_ref_outlives_eviction)
{
	struct fs_hitcache *hc = hc_make(3 * 4096);
	unsigned char want[4096];
	const void *data = NULL;
	struct fs_hit *ref;
	uint64_t i;

	hc_put(hc, 1, 1, 0, 4096);
	ref = hc_get_ok(hc, 1, 1, 0, 4096, &data);
	/* a reply still points into page 0 while later puts push it out */
	for (i = 1; i <= 6; i++)
		hc_put(hc, 1, 1, i, 4096);
	ck_assert(!fs_hitcache_has(hc, 1, 1, 0));
	ck_assert_uint_eq(hc_stats(hc).evictions, 4);
	pattern(want, sizeof(want), 1, 1, 0);
	ck_assert_mem_eq(data, want, sizeof(want));
	fs_hitcache_release(ref);

	/* the same across drop_ino, and across destroying the cache itself */
	ref = hc_get_ok(hc, 1, 1, 6, 4096, &data);
	fs_hitcache_drop_ino(hc, 1);
	ck_assert(!fs_hitcache_has(hc, 1, 1, 6));
	ck_assert_uint_eq(hc_stats(hc).bytes, 0);
	pattern(want, sizeof(want), 1, 1, 6);
	ck_assert_mem_eq(data, want, sizeof(want));
	fs_hitcache_release(ref);

	hc_put(hc, 2, 1, 0, 4096);
	ref = hc_get_ok(hc, 2, 1, 0, 4096, &data);
	fs_hitcache_destroy(hc);
	pattern(want, sizeof(want), 2, 1, 0);
	ck_assert_mem_eq(data, want, sizeof(want));
	fs_hitcache_release(ref);
}
END_TEST

START_TEST(hitcache_drop_ino)
{
	struct fs_hitcache *hc = hc_make(1 << 20);
	uint64_t i;

	for (i = 0; i < 10; i++) {
		hc_put(hc, 1, 1, i, 100);
		hc_put(hc, 1, 2, i, 100);
		hc_put(hc, 2, 1, i, 100);
	}
	ck_assert_uint_eq(hc_stats(hc).bytes, 3000);
	fs_hitcache_drop_ino(hc, 1); /* every version of inode 1 */
	for (i = 0; i < 10; i++) {
		ck_assert(!fs_hitcache_has(hc, 1, 1, i));
		ck_assert(!fs_hitcache_has(hc, 1, 2, i));
		fs_hitcache_release(hc_get_ok(hc, 2, 1, i, 100, NULL));
	}
	ck_assert_uint_eq(hc_stats(hc).bytes, 1000);
	ck_assert_uint_eq(hc_stats(hc).evictions, 0); /* a drop is not an eviction */
	fs_hitcache_drop_ino(hc, 3);		      /* nothing cached: nothing happens */
	ck_assert_uint_eq(hc_stats(hc).bytes, 1000);
	fs_hitcache_drop_ino(hc, 2);
	ck_assert_uint_eq(hc_stats(hc).bytes, 0);
	/* an emptied cache takes entries again */
	hc_put(hc, 1, 3, 0, 100);
	fs_hitcache_release(hc_get_ok(hc, 1, 3, 0, 100, NULL));
	fs_hitcache_destroy(hc);
}
END_TEST

START_TEST(hitcache_many)
{
	const uint64_t n = 50000;
	struct fs_hitcache *hc = hc_make(n * 64);
	struct hc_stats st;
	uint64_t i;

	for (i = 0; i < n; i++)
		hc_put(hc, i % 97, i / 97, i, 64);
	for (i = 0; i < n; i++)
		fs_hitcache_release(hc_get_ok(hc, i % 97, i / 97, i, 64, NULL));
	st = hc_stats(hc);
	ck_assert_uint_eq(st.bytes, n * 64);
	ck_assert_uint_eq(st.inserts, n);
	ck_assert_uint_eq(st.hits, n);
	ck_assert_uint_eq(st.evictions, 0);
	/* one more page makes the oldest go */
	hc_put(hc, 1000, 1, 0, 64);
	ck_assert(!fs_hitcache_has(hc, 0, 0, 0));
	ck_assert_uint_eq(hc_stats(hc).evictions, 1);
	fs_hitcache_destroy(hc);
}
END_TEST

struct hc_worker {
	struct fs_hitcache *hc;
	unsigned id;
	uint64_t gets; /* hits and misses */
	uint64_t bad;  /* copies whose length or bytes were not their key's */
};

static void *hc_worker_main(void *arg)
{
	struct hc_worker *w = arg;
	uint64_t seed = 0x1234567ull + w->id;
	unsigned char buf[512], want[512];

	for (int i = 0; i < 20000; i++) {
		uint64_t r = rnd(&seed), ino = r % 4, index = (r >> 8) % 64;
		uint32_t len = 0;
		struct fs_hit *ref;
		const void *data;

		switch ((r >> 20) % 8) {
		case 0:
			fs_hitcache_drop_ino(w->hc, ino);
			break;
		case 1:
		case 2:
		case 3:
			pattern(buf, sizeof(buf), ino, 1, index);
			fs_hitcache_put(w->hc, ino, 1, index, buf, sizeof(buf));
			break;
		default:
			w->gets++;
			data = fs_hitcache_get(w->hc, ino, 1, index, &len, &ref);
			if (!data)
				break;
			/* every copy of a key holds that key's bytes, however it raced */
			pattern(want, sizeof(want), ino, 1, index);
			if (len != sizeof(want) || memcmp(data, want, sizeof(want)) != 0)
				w->bad++;
			fs_hitcache_release(ref);
		}
	}
	return NULL;
}

START_TEST(hitcache_threads)
{
	enum { NT = 4 };
	struct fs_hitcache *hc = hc_make(40 * 512);
	struct hc_worker w[NT];
	pthread_t t[NT];
	uint64_t gets = 0;
	struct hc_stats st;
	int i;

	for (i = 0; i < NT; i++) {
		w[i] = (struct hc_worker){.hc = hc, .id = (unsigned)i};
		ck_assert_int_eq(pthread_create(&t[i], NULL, hc_worker_main, &w[i]), 0);
	}
	for (i = 0; i < NT; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_uint_eq(w[i].bad, 0);
		gets += w[i].gets;
	}
	st = hc_stats(hc);
	ck_assert_uint_eq(st.hits + st.misses, gets);
	ck_assert_uint_le(st.bytes, 40 * 512);
	ck_assert_uint_gt(st.hits, 0);
	ck_assert_uint_gt(st.evictions, 0);
	fs_hitcache_destroy(hc);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("fs");
	TCase *pm = tcase_create("pagemap"), *hc = tcase_create("hitcache");

	tcase_add_test(pm, pagemap_empty);
	tcase_add_test(pm, pagemap_put_find);
	tcase_add_test(pm, pagemap_overwrite);
	tcase_add_test(pm, pagemap_drop_from);
	tcase_add_test(pm, pagemap_each);
	tcase_add_test(pm, pagemap_growth);
	tcase_add_test(pm, pagemap_model);
	suite_add_tcase(s, pm);

	tcase_add_test(hc, hitcache_create_destroy);
	tcase_add_test(hc, hitcache_put_get);
	tcase_add_test(hc, hitcache_first_put_wins);
	tcase_add_test(hc, hitcache_too_big);
	tcase_add_test(hc, hitcache_lru);
	tcase_add_test(hc, hitcache_ref_outlives_eviction);
	tcase_add_test(hc, hitcache_drop_ino);
	tcase_add_test(hc, hitcache_many);
	tcase_add_test(hc, hitcache_threads);
	suite_add_tcase(s, hc);
	return s;
}
