/* SPDX-License-Identifier: MIT */
/*
 * test_hf3fs.c - Check runner for metadata/http/hf3fs.c, the mini 3FS metadata state.
 *
 * The first cases replay sglang's own tests of mini_3fs_metadata_server.py (page order, -1 when
 * nothing can be had, LRU reuse on a full rank) with leases off. The rest cover what kvfs does
 * better: persistence across a clean reopen and across a crash (a forked child that _exit()s
 * without closing), leases protecting read pages from eviction and reuse, the grace after a
 * restart, no leak when two writers reserve the same key, stale confirms and releases ignored,
 * expired reservations reclaimed, clear keeping reservations, and input validation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "hf3fs.h"

static char dir[64];

static void mkdir_tmp(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_hf3fs.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static struct kvfs_meta_hf3fs *open_h(uint32_t lease_ms, uint32_t ttl_ms)
{
	struct kvfs_meta_hf3fs_config cfg = {
		.dir = dir, .map_size = 64 << 20, .lease_ms = lease_ms, .reserve_ttl_ms = ttl_ms};
	struct kvfs_meta_hf3fs *h = NULL;

	ck_assert_int_eq(kvfs_meta_hf3fs_open(&cfg, &h), 0);
	return h;
}

static struct kvfs_meta_hf3fs *setup(uint64_t pages, uint32_t lease_ms)
{
	struct kvfs_meta_hf3fs *h;
	bool created = false;

	mkdir_tmp();
	h = open_h(lease_ms, 0);
	ck_assert_int_eq(kvfs_meta_hf3fs_initialize(h, 0, NULL, pages, &created), 0);
	ck_assert(created);
	return h;
}

static void teardown(struct kvfs_meta_hf3fs *h)
{
	kvfs_meta_hf3fs_close(h);
	rm_tmp();
}

#define K(s) ((struct kvfs_meta_hf3fs_key){(s), sizeof(s) - 1})

/* reserve(keys...) into res; returns the count. */
static size_t reserve(struct kvfs_meta_hf3fs *h, const char *ns,
		      struct kvfs_meta_hf3fs_reserve_result *res, size_t n, const char **names)
{
	struct kvfs_meta_hf3fs_key keys[16];

	for (size_t i = 0; i < n; i++)
		keys[i] = (struct kvfs_meta_hf3fs_key){names[i], strlen(names[i])};
	ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 0, ns, keys, n, res), 0);
	return n;
}

static void confirm1(struct kvfs_meta_hf3fs *h, const char *key, int64_t idx)
{
	struct kvfs_meta_hf3fs_confirm c = {{key, strlen(key)}, idx};

	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, &c, 1, NULL, 0), 0);
}

static void release1(struct kvfs_meta_hf3fs *h, int64_t idx)
{
	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, NULL, 0, &idx, 1), 0);
}

static int64_t get1(struct kvfs_meta_hf3fs *h, const char *key)
{
	struct kvfs_meta_hf3fs_key k = {key, strlen(key)};
	int64_t idx;

	ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 0, NULL, &k, 1, &idx), 0);
	return idx;
}

static bool exists1(struct kvfs_meta_hf3fs *h, const char *key)
{
	struct kvfs_meta_hf3fs_key k = {key, strlen(key)};
	bool e;

	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 0, NULL, &k, 1, &e), 0);
	return e;
}

static int64_t reserve1(struct kvfs_meta_hf3fs *h, const char *key, bool *ret_exists)
{
	struct kvfs_meta_hf3fs_reserve_result r;

	reserve(h, NULL, &r, 1, &key);
	if (ret_exists)
		*ret_exists = r.exists;
	return r.index;
}

static struct kvfs_meta_hf3fs_stats stats(struct kvfs_meta_hf3fs *h)
{
	struct kvfs_meta_hf3fs_stats st;

	ck_assert_int_eq(kvfs_meta_hf3fs_stat(h, 0, NULL, &st), 0);
	return st;
}

#define ck_res(r, e, i)                                                                            \
	do {                                                                                       \
		ck_assert_int_eq((r).exists, (e));                                                 \
		ck_assert_int_eq((r).index, (i));                                                  \
	} while (0)

/* ---------------------------------------------------------------------------------------- */
/* The reference's behaviour (leases off) */

START_TEST(ref_oversized_batch)
{
	struct kvfs_meta_hf3fs *h = setup(2, 0);
	struct kvfs_meta_hf3fs_reserve_result r[3];
	const char *abc[] = {"a", "b", "c"};

	reserve(h, NULL, r, 3, abc);
	ck_res(r[0], false, 1);
	ck_res(r[1], false, 0);
	ck_res(r[2], false, -1);
	confirm1(h, "a", 1);
	confirm1(h, "b", 0);
	ck_assert_int_eq(get1(h, "a"), 1);
	ck_assert_int_eq(get1(h, "b"), 0);
	ck_assert_int_eq(get1(h, "c"), -1);
	/* a is least recently used: its page goes to c */
	ck_assert_int_eq(reserve1(h, "c", NULL), 1);
	ck_assert(!exists1(h, "a"));
	confirm1(h, "c", 1);
	ck_assert_int_eq(get1(h, "b"), 0);
	ck_assert_int_eq(get1(h, "c"), 1);
	ck_assert_uint_eq(stats(h).evictions, 1);
	ck_assert_uint_eq(stats(h).full, 1);
	teardown(h);
}
END_TEST

START_TEST(ref_overlapping_batches)
{
	struct kvfs_meta_hf3fs *h = setup(3, 0);
	struct kvfs_meta_hf3fs_reserve_result r[2];
	const char *ab[] = {"a", "b"}, *cd[] = {"c", "d"};

	reserve(h, NULL, r, 2, ab);
	ck_res(r[0], false, 2);
	ck_res(r[1], false, 1);
	reserve(h, NULL, r, 2, cd);
	ck_res(r[0], false, 0);
	ck_res(r[1], false, -1);
	confirm1(h, "a", 2);
	confirm1(h, "b", 1);
	release1(h, 0);
	ck_assert_int_eq(reserve1(h, "d", NULL), 0);
	confirm1(h, "d", 0);
	ck_assert_int_eq(get1(h, "a"), 2);
	ck_assert_int_eq(get1(h, "b"), 1);
	ck_assert_int_eq(get1(h, "d"), 0);
	teardown(h);
}
END_TEST

START_TEST(ref_all_in_flight)
{
	struct kvfs_meta_hf3fs *h = setup(1, 0);

	ck_assert_int_eq(reserve1(h, "a", NULL), 0);
	ck_assert_int_eq(reserve1(h, "b", NULL), -1);
	ck_assert_int_eq(reserve1(h, "b", NULL), -1);
	release1(h, 0);
	ck_assert_int_eq(reserve1(h, "b", NULL), 0);
	teardown(h);
}
END_TEST

START_TEST(ref_mixed_hits_and_lru)
{
	struct kvfs_meta_hf3fs *h = setup(3, 0);
	struct kvfs_meta_hf3fs_reserve_result r[3];
	const char *ab[] = {"a", "b"}, *bcd[] = {"b", "c", "d"};

	reserve(h, NULL, r, 2, ab);
	confirm1(h, "a", 2);
	confirm1(h, "b", 1);
	reserve(h, NULL, r, 3, bcd);
	ck_res(r[0], true, 1);
	ck_res(r[1], false, 0);
	ck_res(r[2], false, 2);
	confirm1(h, "c", 0);
	confirm1(h, "d", 2);
	ck_assert_int_eq(get1(h, "a"), -1);
	ck_assert_int_eq(get1(h, "b"), 1);
	ck_assert_int_eq(get1(h, "c"), 0);
	ck_assert_int_eq(get1(h, "d"), 2);
	teardown(h);
}
END_TEST

START_TEST(ref_zero_capacity)
{
	struct kvfs_meta_hf3fs *h = setup(0, 0);
	struct kvfs_meta_hf3fs_reserve_result r[2];
	const char *ab[] = {"a", "b"};

	ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 0, NULL, NULL, 0, r), 0);
	reserve(h, NULL, r, 2, ab);
	ck_res(r[0], false, -1);
	ck_res(r[1], false, -1);
	teardown(h);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Routes' basics */

START_TEST(init_repeat_and_namespaces)
{
	struct kvfs_meta_hf3fs *h = setup(4, 0);
	bool created = true, e;
	int64_t idx;
	struct kvfs_meta_hf3fs_key k = K("a");

	ck_assert_int_eq(kvfs_meta_hf3fs_initialize(h, 0, "kv", 100, &created), 0);
	ck_assert(!created);
	ck_assert_uint_eq(stats(h).num_pages, 4);
	/* unknown rank / namespace */
	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 1, NULL, &k, 1, &e), -ENOENT);
	ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 0, "mamba", &k, 1, &idx), -ENOENT);
	ck_assert_int_eq(kvfs_meta_hf3fs_clear(h, 7, NULL), -ENOENT);
	ck_assert_int_eq(kvfs_meta_hf3fs_initialize(h, 0, "mamba", 2, &created), 0);
	ck_assert(created);
	/* state is per (rank, namespace) */
	ck_assert_int_eq(reserve1(h, "a", NULL), 3);
	confirm1(h, "a", 3);
	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 0, "mamba", &k, 1, &e), 0);
	ck_assert(!e);
	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 0, "kv", &k, 1, &e), 0);
	ck_assert(e);
	teardown(h);
}
END_TEST

START_TEST(exists_get_delete_clear)
{
	struct kvfs_meta_hf3fs *h = setup(4, 0);
	struct kvfs_meta_hf3fs_key keys[3] = {K("a"), K("zz"), K("b")};
	bool ex[3];
	int64_t idx[3];
	size_t deleted = 99;
	bool e;

	confirm1(h, "a", reserve1(h, "a", NULL));
	confirm1(h, "b", reserve1(h, "b", NULL));
	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 0, NULL, keys, 3, ex), 0);
	ck_assert(ex[0] && !ex[1] && ex[2]);
	ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 0, NULL, keys, 3, idx), 0);
	ck_assert_int_eq(idx[0], 3);
	ck_assert_int_eq(idx[1], -1);
	ck_assert_int_eq(idx[2], 2);
	/* a known key answers exists=true with its index */
	ck_assert_int_eq(reserve1(h, "a", &e), 3);
	ck_assert(e);

	ck_assert_int_eq(kvfs_meta_hf3fs_delete(h, 0, NULL, keys, 2, &deleted), 0);
	ck_assert_uint_eq(deleted, 1);
	ck_assert(!exists1(h, "a"));
	ck_assert_uint_eq(stats(h).free, 3);
	/* the freed page is handed out next (pushed on the stack) */
	ck_assert_int_eq(reserve1(h, "c", NULL), 3);
	ck_assert_uint_eq(stats(h).pending, 1);

	ck_assert_int_eq(kvfs_meta_hf3fs_clear(h, 0, NULL), 0);
	ck_assert(!exists1(h, "b"));
	ck_assert_uint_eq(stats(h).keys, 0);
	/* the reservation survives clear and can still be confirmed */
	ck_assert_uint_eq(stats(h).pending, 1);
	confirm1(h, "c", 3);
	ck_assert_int_eq(get1(h, "c"), 3);
	/* fresh pages again, skipping the one in use */
	ck_assert_int_eq(reserve1(h, "d", NULL), 2);
	ck_assert_int_eq(reserve1(h, "e", NULL), 1);
	ck_assert_int_eq(reserve1(h, "f", NULL), 0);
	ck_assert_int_eq(reserve1(h, "g", NULL), 3); /* evicts c, the only published key */
	teardown(h);
}
END_TEST

START_TEST(validation)
{
	struct kvfs_meta_hf3fs *h = setup(4, 0);
	char big[KVFS_META_HF3FS_KEY_MAX + 2];
	char ns[KVFS_META_HF3FS_NS_MAX + 2];
	struct kvfs_meta_hf3fs_key k = {big, sizeof(big) - 1};
	struct kvfs_meta_hf3fs_confirm c = {K("a"), 4};
	struct kvfs_meta_hf3fs_reserve_result r;
	int64_t rel = -1;
	bool e;

	memset(big, 'x', sizeof(big));
	memset(ns, 'n', sizeof(ns));
	ns[sizeof(ns) - 1] = 0;
	ck_assert_int_eq(kvfs_meta_hf3fs_exists(h, 0, NULL, &k, 1, &e), -EINVAL);
	ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 0, NULL, &k, 1, &r), -EINVAL);
	k.len = KVFS_META_HF3FS_KEY_MAX; /* the longest allowed key works */
	ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 0, NULL, &k, 1, &r), 0);
	ck_assert_int_eq(kvfs_meta_hf3fs_initialize(h, 0, ns, 1, NULL), -EINVAL);
	ck_assert_int_eq(
		kvfs_meta_hf3fs_initialize(h, 1, NULL, KVFS_META_HF3FS_PAGES_MAX + 1ull, NULL),
		-EINVAL);
	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, &c, 1, NULL, 0), -EINVAL);
	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, NULL, 0, &rel, 1), -EINVAL);
	/* nothing of a rejected request is applied */
	c.index = r.index;
	c.key = (struct kvfs_meta_hf3fs_key){big, KVFS_META_HF3FS_KEY_MAX};
	rel = 9;
	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, &c, 1, &rel, 1), -EINVAL);
	ck_assert_uint_eq(stats(h).keys, 0);
	ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, &c, 1, NULL, 0), 0);
	ck_assert_uint_eq(stats(h).keys, 1);
	teardown(h);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Better than the reference */

START_TEST(two_writers_same_key)
{
	struct kvfs_meta_hf3fs *h = setup(4, 0);
	int64_t p1 = reserve1(h, "k", NULL), p2 = reserve1(h, "k", NULL);

	ck_assert_int_ne(p1, p2);
	ck_assert_uint_eq(stats(h).pending, 2);
	confirm1(h, "k", p2); /* the second reservation confirms first and wins */
	confirm1(h, "k", p1); /* the loser's page goes back */
	ck_assert_int_eq(get1(h, "k"), p2);
	ck_assert_uint_eq(stats(h).keys, 1);
	ck_assert_uint_eq(stats(h).pending, 0);
	ck_assert_uint_eq(stats(h).free, 3);
	ck_assert_int_eq(reserve1(h, "x", NULL), p1);
	/* both in one batch */
	{
		struct kvfs_meta_hf3fs_reserve_result r[2];
		const char *yy[] = {"y", "y"};

		reserve(h, NULL, r, 2, yy);
		ck_assert_int_ge(r[0].index, 0);
		ck_assert_int_ge(r[1].index, 0);
		ck_assert_int_ne(r[0].index, r[1].index);
		confirm1(h, "y", r[0].index);
		confirm1(h, "y", r[1].index);
		ck_assert_int_eq(get1(h, "y"), r[0].index);
		ck_assert_uint_eq(stats(h).free, 1);
	}
	teardown(h);
}
END_TEST

START_TEST(stale_confirm_and_release)
{
	struct kvfs_meta_hf3fs *h = setup(4, 0);
	int64_t pa = reserve1(h, "a", NULL), pb;

	confirm1(h, "b", pa); /* the page is pending for another key */
	confirm1(h, "a", 0);  /* a free page, never reserved */
	ck_assert_uint_eq(stats(h).keys, 0);
	ck_assert_uint_eq(stats(h).rejected, 2);
	confirm1(h, "a", pa);
	confirm1(h, "a", pa); /* a repeat is a no-op */
	ck_assert_int_eq(get1(h, "a"), pa);
	release1(h, pa); /* published: not freed */
	ck_assert_int_eq(get1(h, "a"), pa);
	ck_assert_uint_eq(stats(h).rejected, 3);
	pb = reserve1(h, "b", NULL);
	ck_assert_int_ne(pb, pa);
	release1(h, pb);
	release1(h, pb); /* already free: no-op */
	ck_assert_uint_eq(stats(h).free, 3);
	teardown(h);
}
END_TEST

START_TEST(lease_protects_from_eviction)
{
	struct kvfs_meta_hf3fs *h = setup(2, 300);

	confirm1(h, "a", reserve1(h, "a", NULL));
	confirm1(h, "b", reserve1(h, "b", NULL));
	ck_assert_int_eq(get1(h, "a"), 1);
	ck_assert_int_eq(get1(h, "b"), 0);
	/* both pages are being read: no page for a new key */
	ck_assert_int_eq(reserve1(h, "c", NULL), -1);
	ck_assert_uint_ge(stats(h).lease_skips, 2);
	usleep(350 * 1000);
	ck_assert_int_eq(reserve1(h, "c", NULL), 1); /* a is LRU */
	ck_assert(!exists1(h, "a"));
	teardown(h);
}
END_TEST

START_TEST(lease_defers_reuse_after_delete)
{
	struct kvfs_meta_hf3fs *h = setup(2, 300);
	struct kvfs_meta_hf3fs_key ka = K("a");

	confirm1(h, "a", reserve1(h, "a", NULL)); /* page 1 */
	ck_assert_int_eq(get1(h, "a"), 1);
	ck_assert_int_eq(kvfs_meta_hf3fs_delete(h, 0, NULL, &ka, 1, NULL), 0);
	/* page 1 is on top of the stack but leased: the new key gets page 0 */
	ck_assert_int_eq(reserve1(h, "b", NULL), 0);
	ck_assert_int_eq(reserve1(h, "c", NULL), -1);
	usleep(350 * 1000);
	ck_assert_int_eq(reserve1(h, "c", NULL), 1);
	/* same after clear */
	confirm1(h, "c", 1);
	ck_assert_int_eq(get1(h, "c"), 1);
	ck_assert_int_eq(kvfs_meta_hf3fs_clear(h, 0, NULL), 0);
	release1(h, 0);
	ck_assert_int_eq(reserve1(h, "d", NULL), 0);
	ck_assert_int_eq(reserve1(h, "e", NULL), -1);
	teardown(h);
}
END_TEST

START_TEST(expired_reservation_reclaimed)
{
	struct kvfs_meta_hf3fs *h;
	bool created;

	mkdir_tmp();
	h = open_h(0, 100);
	ck_assert_int_eq(kvfs_meta_hf3fs_initialize(h, 0, NULL, 1, &created), 0);
	ck_assert_int_eq(reserve1(h, "a", NULL), 0); /* the writer dies */
	ck_assert_int_eq(reserve1(h, "b", NULL), -1);
	usleep(150 * 1000);
	ck_assert_int_eq(reserve1(h, "b", NULL), 0);
	ck_assert_uint_eq(stats(h).reclaimed, 1);
	confirm1(h, "a", 0); /* the late writer's confirm is refused */
	ck_assert(!exists1(h, "a"));
	confirm1(h, "b", 0);
	ck_assert(exists1(h, "b"));
	teardown(h);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Persistence */

START_TEST(persist_clean_reopen)
{
	struct kvfs_meta_hf3fs *h = setup(3, 0);
	int64_t pc;

	confirm1(h, "a", reserve1(h, "a", NULL)); /* 2 */
	confirm1(h, "b", reserve1(h, "b", NULL)); /* 1 */
	confirm1(h, "c", reserve1(h, "c", NULL)); /* 0 */
	ck_assert_int_eq(get1(h, "a"), 2);	  /* LRU now b, c, a */
	kvfs_meta_hf3fs_close(h);

	h = open_h(0, 0);
	ck_assert_int_eq(get1(h, "a"), 2);
	ck_assert_int_eq(get1(h, "b"), 1);
	ck_assert_int_eq(get1(h, "c"), 0); /* LRU a, b, c */
	ck_assert_uint_eq(stats(h).num_pages, 3);
	pc = reserve1(h, "d", NULL);
	ck_assert_int_eq(pc, 2); /* a was evicted */
	kvfs_meta_hf3fs_close(h);

	/* the reservation survived: it can be confirmed after a reopen */
	h = open_h(0, 0);
	ck_assert_uint_eq(stats(h).pending, 1);
	ck_assert(!exists1(h, "a"));
	confirm1(h, "d", pc);
	ck_assert_int_eq(get1(h, "d"), 2);
	teardown(h);
}
END_TEST

START_TEST(persist_crash)
{
	struct kvfs_meta_hf3fs *h;
	pid_t pid;
	int status;

	mkdir_tmp();
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct kvfs_meta_hf3fs_config cfg = {.dir = dir, .map_size = 64 << 20};
		struct kvfs_meta_hf3fs_key ka = {"k0", 2};

		if (kvfs_meta_hf3fs_open(&cfg, &h) ||
		    kvfs_meta_hf3fs_initialize(h, 5, "ns", 8, NULL))
			_exit(1);
		for (int i = 0; i < 6; i++) {
			char key[8];
			struct kvfs_meta_hf3fs_key k = {key, (size_t)snprintf(key, 8, "k%d", i)};
			struct kvfs_meta_hf3fs_reserve_result r;
			struct kvfs_meta_hf3fs_confirm c;

			if (kvfs_meta_hf3fs_reserve(h, 5, "ns", &k, 1, &r))
				_exit(2);
			if (i == 5)
				break; /* leave one reserved */
			c = (struct kvfs_meta_hf3fs_confirm){k, r.index};
			if (kvfs_meta_hf3fs_confirm(h, 5, "ns", &c, 1, NULL, 0))
				_exit(3);
		}
		if (kvfs_meta_hf3fs_delete(h, 5, "ns", &ka, 1, NULL))
			_exit(4);
		_exit(0); /* no close: a crash */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);

	h = open_h(200, 0);
	{
		struct kvfs_meta_hf3fs_key keys[6] = {K("k0"), K("k1"), K("k2"),
						      K("k3"), K("k4"), K("k5")};
		int64_t idx[6];
		struct kvfs_meta_hf3fs_stats st;
		struct kvfs_meta_hf3fs_reserve_result r;

		ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 5, "ns", keys, 6, idx), 0);
		ck_assert_int_eq(idx[0], -1);
		for (int i = 1; i < 5; i++)
			ck_assert_int_eq(idx[i], 7 - i);
		ck_assert_int_eq(idx[5], -1);
		ck_assert_int_eq(kvfs_meta_hf3fs_stat(h, 5, "ns", &st), 0);
		ck_assert_uint_eq(st.keys, 4);
		ck_assert_uint_eq(st.pending, 1);
		ck_assert_uint_eq(st.free, 3);
		/* the grace: pages never handed out (1, 0) at once; k0's page 7, freed just
		 * before the crash, and the published keys' pages not until it has passed */
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 5, "ns", &keys[0], 1, &r), 0);
		ck_assert_int_eq(r.index, 1);
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 5, "ns", &K("k6"), 1, &r), 0);
		ck_assert_int_eq(r.index, 0);
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 5, "ns", &K("k7"), 1, &r), 0);
		ck_assert_int_eq(r.index, -1);
		usleep(250 * 1000);
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 5, "ns", &K("k7"), 1, &r), 0);
		ck_assert_int_eq(r.index, 7);
		/* then LRU eviction: k1 on page 6 (k5's reservation on page 2 is still held) */
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 5, "ns", &K("k8"), 1, &r), 0);
		ck_assert_int_eq(r.index, 6);
	}
	teardown(h);
}
END_TEST

/* A restart keeps which pages were never handed out, also across clear: those serve new keys
 * at once, every other page waits for the grace. */
START_TEST(persist_grace_spares_unused_pages)
{
	struct kvfs_meta_hf3fs *h = setup(4, 200);

	confirm1(h, "a", reserve1(h, "a", NULL)); /* 3 */
	ck_assert_int_eq(get1(h, "a"), 3);
	confirm1(h, "b", reserve1(h, "b", NULL)); /* 2 */
	ck_assert_int_eq(get1(h, "b"), 2);
	ck_assert_int_eq(kvfs_meta_hf3fs_delete(h, 0, NULL, &K("b"), 1, NULL),
			 0); /* 2: free, read */
	kvfs_meta_hf3fs_close(h);

	h = open_h(200, 0);
	ck_assert_int_eq(reserve1(h, "c", NULL), 1);
	ck_assert_int_eq(reserve1(h, "d", NULL), 0);
	ck_assert_int_eq(reserve1(h, "e", NULL), -1); /* 2 and a's 3 are in their grace */
	usleep(250 * 1000);
	ck_assert_int_eq(reserve1(h, "e", NULL), 2);
	ck_assert_int_eq(reserve1(h, "f", NULL), 3); /* a evicted */

	/* clear frees every page, but all of them have been handed out: none is spared */
	confirm1(h, "e", 2);
	ck_assert_int_eq(get1(h, "e"), 2);
	ck_assert_int_eq(kvfs_meta_hf3fs_clear(h, 0, NULL), 0);
	kvfs_meta_hf3fs_close(h);
	h = open_h(200, 0);
	ck_assert_uint_eq(stats(h).pending, 3); /* c, d, f: clear keeps reservations */
	ck_assert_int_eq(reserve1(h, "g", NULL), -1);
	usleep(250 * 1000);
	ck_assert_int_eq(reserve1(h, "g", NULL), 2);
	teardown(h);
}
END_TEST

START_TEST(persist_many_and_lock)
{
	struct kvfs_meta_hf3fs *h = setup(5000, 0), *h2 = NULL;
	struct kvfs_meta_hf3fs_config cfg = {.dir = dir};
	struct kvfs_meta_hf3fs_key keys[100];
	struct kvfs_meta_hf3fs_reserve_result r[100];
	struct kvfs_meta_hf3fs_confirm c[100];
	char names[100][16];
	int64_t idx[100];

	ck_assert_int_eq(kvfs_meta_hf3fs_open(&cfg, &h2), -EBUSY);
	/* 60 batches of 100 over 5000 pages: 1000 evictions, all in LRU order */
	for (int b = 0; b < 60; b++) {
		for (int i = 0; i < 100; i++) {
			keys[i].ptr = names[i];
			keys[i].len = (size_t)snprintf(names[i], 16, "key-%d", b * 100 + i);
		}
		ck_assert_int_eq(kvfs_meta_hf3fs_reserve(h, 0, NULL, keys, 100, r), 0);
		for (int i = 0; i < 100; i++) {
			ck_assert(!r[i].exists);
			ck_assert_int_ge(r[i].index, 0);
			c[i] = (struct kvfs_meta_hf3fs_confirm){keys[i], r[i].index};
		}
		ck_assert_int_eq(kvfs_meta_hf3fs_confirm(h, 0, NULL, c, 100, NULL, 0), 0);
	}
	ck_assert_uint_eq(stats(h).evictions, 1000);
	kvfs_meta_hf3fs_close(h);
	h = open_h(0, 0);
	ck_assert_uint_eq(stats(h).keys, 5000);
	for (int i = 0; i < 100; i++) {
		keys[i].ptr = names[i];
		keys[i].len = (size_t)snprintf(names[i], 16, "key-%d", 900 + i);
	}
	ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 0, NULL, keys, 100, idx), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(idx[i], -1); /* evicted */
	for (int i = 0; i < 100; i++)
		keys[i].len = (size_t)snprintf(names[i], 16, "key-%d", 1000 + i);
	ck_assert_int_eq(kvfs_meta_hf3fs_get(h, 0, NULL, keys, 100, idx), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_ge(idx[i], 0);
	teardown(h);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("hf3fs");
	TCase *ref = tcase_create("reference"), *basic = tcase_create("basic"),
	      *better = tcase_create("better"), *persist = tcase_create("persist");

	tcase_add_test(ref, ref_oversized_batch);
	tcase_add_test(ref, ref_overlapping_batches);
	tcase_add_test(ref, ref_all_in_flight);
	tcase_add_test(ref, ref_mixed_hits_and_lru);
	tcase_add_test(ref, ref_zero_capacity);
	tcase_add_test(basic, init_repeat_and_namespaces);
	tcase_add_test(basic, exists_get_delete_clear);
	tcase_add_test(basic, validation);
	tcase_add_test(better, two_writers_same_key);
	tcase_add_test(better, stale_confirm_and_release);
	tcase_add_test(better, lease_protects_from_eviction);
	tcase_add_test(better, lease_defers_reuse_after_delete);
	tcase_add_test(better, expired_reservation_reclaimed);
	tcase_add_test(persist, persist_clean_reopen);
	tcase_add_test(persist, persist_crash);
	tcase_add_test(persist, persist_grace_spares_unused_pages);
	tcase_add_test(persist, persist_many_and_lock);
	suite_add_tcase(s, ref);
	suite_add_tcase(s, basic);
	suite_add_tcase(s, better);
	suite_add_tcase(s, persist);
	return s;
}
