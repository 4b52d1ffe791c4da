/* SPDX-License-Identifier: MIT */
/*
 * test_pool.c - Check runner for pool/: the arena and the page allocator.
 *
 * Covers arena creation (plain, prefaulted, huge pages refused without a reservation), page
 * size rules, alignment, the contiguous-first and fewest-runs policies, all-or-nothing
 * exhaustion, pins deferring frees, reserve, invalid inputs, a multi-threaded stress run that
 * checks that no two live pages overlap and that the accounting returns to zero, and a timing
 * case that prints ns per alloc/free at scale.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "pool.h"

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static struct kvfs_palloc *mk(uint64_t cap)
{
	struct kvfs_palloc *pa = NULL;

	ck_assert_int_eq(kvfs_palloc_create(cap, &pa), 0);
	ck_assert_ptr_nonnull(pa);
	return pa;
}

static struct kvfs_palloc_stats stats(struct kvfs_palloc *pa)
{
	struct kvfs_palloc_stats st;

	kvfs_palloc_get_stats(pa, &st);
	return st;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------- */
/* Arena */

START_TEST(arena_basic)
{
	struct kvfs_arena *a = NULL;
	char *p;

	ck_assert_int_eq(kvfs_arena_create(0, 0, &a), -EINVAL);
	ck_assert_int_eq(kvfs_arena_create(1 * MiB, 0x80, &a), -EINVAL);
	ck_assert_int_eq(kvfs_arena_create(1 * MiB, 0, &a), 0);
	ck_assert_uint_eq(kvfs_arena_size(a), 16 * MiB);
	ck_assert_int_ge(kvfs_arena_fd(a), 0);
	p = kvfs_arena_base(a);
	ck_assert_ptr_nonnull(p);
	memset(p, 0xab, 16 * MiB);
	ck_assert_ptr_eq(kvfs_arena_ptr(a, 5 * MiB), p + 5 * MiB);
	ck_assert_int_eq(((unsigned char *)kvfs_arena_ptr(a, 16 * MiB - 1))[0], 0xab);
	/* The memfd is the same memory: pread sees what the mapping wrote. */
	{
		unsigned char c = 0;

		ck_assert_int_eq(pread(kvfs_arena_fd(a), &c, 1, 7 * MiB), 1);
		ck_assert_int_eq(c, 0xab);
	}
	kvfs_arena_destroy(a);
	kvfs_arena_destroy(NULL);

	ck_assert_int_eq(kvfs_arena_create(17 * MiB, 0, &a), 0);
	ck_assert_uint_eq(kvfs_arena_size(a), 32 * MiB);
	kvfs_arena_destroy(a);
}
END_TEST

START_TEST(arena_prefault)
{
	struct kvfs_arena *a = NULL;

	ck_assert_int_eq(kvfs_arena_create(32 * MiB, KVFS_ARENA_PREFAULT, &a), 0);
	ck_assert_uint_eq(kvfs_arena_size(a), 32 * MiB);
	/* Prefaulted shmem reads as zeros. */
	ck_assert_int_eq(((char *)kvfs_arena_base(a))[31 * MiB], 0);
	kvfs_arena_destroy(a);
}
END_TEST

static long huge_pages_free(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

START_TEST(arena_hugepages)
{
	struct kvfs_arena *a = (struct kvfs_arena *)0x1;
	long nfree = huge_pages_free();

	if (nfree >= 16) {
		/* 16 MiB of 2 MiB pages (or whatever the default huge page is) fits. */
		int r = kvfs_arena_create(16 * MiB, KVFS_ARENA_HUGEPAGES, &a);

		if (r == -ENOMEM) {
			fprintf(stderr,
				"arena_hugepages: SKIP (huge pages reserved but not usable)\n");
			return;
		}
		ck_assert_int_eq(r, 0);
		memset(kvfs_arena_base(a), 1, kvfs_arena_size(a));
		kvfs_arena_destroy(a);
	} else {
		fprintf(stderr, "arena_hugepages: no huge pages reserved; checking the refusal\n");
	}
	/* Far more than any reservation: must refuse with -ENOMEM, not fall back, not touch *ret. */
	a = (struct kvfs_arena *)0x1;
	ck_assert_int_eq(kvfs_arena_create((uint64_t)(nfree + 64) * 1024 * MiB,
					   KVFS_ARENA_HUGEPAGES | KVFS_ARENA_PREFAULT, &a),
			 -ENOMEM);
	ck_assert_ptr_eq(a, (struct kvfs_arena *)0x1);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Allocator */

START_TEST(page_size_rules)
{
	ck_assert(kvfs_page_size_valid(64 * KiB));
	ck_assert(kvfs_page_size_valid(1 * MiB));
	ck_assert(kvfs_page_size_valid(16 * MiB));
	ck_assert(!kvfs_page_size_valid(0));
	ck_assert(!kvfs_page_size_valid(32 * KiB));
	ck_assert(!kvfs_page_size_valid(32 * MiB));
	ck_assert(!kvfs_page_size_valid(3 * MiB));
	ck_assert(!kvfs_page_size_valid(1 * MiB + 64 * KiB));
}
END_TEST

START_TEST(palloc_create_rules)
{
	struct kvfs_palloc *pa = (struct kvfs_palloc *)0x1;

	ck_assert_int_eq(kvfs_palloc_create(0, &pa), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_create(64 * KiB - 1, &pa), -EINVAL);
	ck_assert_ptr_eq(pa, (struct kvfs_palloc *)0x1);
	pa = mk(1 * MiB + 100);
	ck_assert_uint_eq(kvfs_palloc_capacity(pa), 1 * MiB);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * MiB);
	ck_assert_uint_eq(stats(pa).largest_run, 1 * MiB);
	kvfs_palloc_destroy(pa);
	kvfs_palloc_destroy(NULL);

	/* A capacity that is not a multiple of 4 MiB (partial last bitmap word). */
	pa = mk(5 * 64 * KiB);
	{
		uint64_t offs[5];

		ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 5, offs), 0);
		ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 1, offs), -ENOSPC);
	}
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(alloc_alignment)
{
	struct kvfs_palloc *pa = mk(512 * MiB);
	static const uint32_t sizes[] = {64 * KiB,  128 * KiB, 1 * MiB,	 64 * KiB, 16 * MiB,
					 256 * KiB, 2 * MiB,   64 * KiB, 8 * MiB,  512 * KiB};
	uint64_t used = 0;

	for (int round = 0; round < 4; round++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			uint64_t offs[3];

			ck_assert_int_eq(kvfs_palloc_alloc(pa, sizes[i], 3, offs), 0);
			used += 3ull * sizes[i];
			for (int k = 0; k < 3; k++) {
				ck_assert_uint_eq(offs[k] % sizes[i], 0);
				ck_assert_uint_le(offs[k] + sizes[i], 512 * MiB);
				if (k)
					ck_assert_uint_gt(offs[k], offs[k - 1]);
			}
			/* The arena is young: every multi-page request is one run. */
			ck_assert_uint_eq(offs[2] - offs[0], 2ull * sizes[i]);
		}
	}
	ck_assert_uint_eq(stats(pa).used, used);
	ck_assert_uint_eq(stats(pa).allocs, 40);
	kvfs_palloc_destroy(pa);
}
END_TEST

/* Allocate every 1 MiB page of a 64 MiB allocator; returns their offsets in order. */
static struct kvfs_palloc *full_64m(uint64_t *offs)
{
	struct kvfs_palloc *pa = mk(64 * MiB);

	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 64, offs), 0);
	for (int i = 0; i < 64; i++)
		ck_assert_uint_eq(offs[i], (uint64_t)i * MiB);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 0);
	return pa;
}

static void free_1m(struct kvfs_palloc *pa, uint64_t page)
{
	uint64_t off = page * MiB;

	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), 0);
}

START_TEST(fragmentation)
{
	uint64_t offs[64], got[64];
	struct kvfs_palloc *pa = full_64m(offs);
	struct kvfs_palloc_stats st;

	/* Free every other page: 32 isolated 1 MiB holes. */
	for (int i = 1; i < 64; i += 2)
		free_1m(pa, (uint64_t)i);
	st = stats(pa);
	ck_assert_uint_eq(st.free, 32 * MiB);
	ck_assert_uint_eq(st.largest_run, 1 * MiB);

	/* No 2 MiB-aligned pair is free: a 2 MiB page cannot be had although 32 MiB are free. */
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 2 * MiB, 1, got), -ENOSPC);
	/* 64 KiB pages fit in the holes, aligned. */
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 1, got), 0);
	ck_assert_uint_eq(got[0], 1 * MiB);
	ck_assert_int_eq(kvfs_palloc_free(pa, 64 * KiB, 1, got), 0);

	/* Four 1 MiB pages: no run, so four scattered pages, ascending, all holes. */
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 4, got), 0);
	for (int k = 0; k < 4; k++) {
		ck_assert_uint_eq(got[k] % (2 * MiB), 1 * MiB);
		if (k)
			ck_assert_uint_gt(got[k], got[k - 1]);
	}
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 4, got), 0);

	/* All or nothing: 33 pages of 32 free fails and leaves everything as it was. */
	st = stats(pa);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 33, got), -ENOSPC);
	ck_assert_uint_eq(stats(pa).used, st.used);
	ck_assert_uint_eq(stats(pa).alloc_fails, st.alloc_fails + 1);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 32, got), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 0);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(contiguous_preferred)
{
	uint64_t offs[64], got[8];
	struct kvfs_palloc *pa = full_64m(offs);

	/* Scattered holes first, one 4-page run later: the run wins over first fit. */
	for (uint64_t p = 0; p < 8; p += 2)
		free_1m(pa, p);
	for (uint64_t p = 40; p < 44; p++)
		free_1m(pa, p);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 4, got), 0);
	for (int k = 0; k < 4; k++)
		ck_assert_uint_eq(got[k], (40 + (uint64_t)k) * MiB);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(fewest_runs)
{
	uint64_t offs[64], got[8];
	struct kvfs_palloc *pa = full_64m(offs);

	/* Free: {0}, {2}, {10,11,12}, {20,21}, {30}. Five pages in the fewest runs = 3 + 2. */
	free_1m(pa, 0);
	free_1m(pa, 2);
	for (uint64_t p = 10; p < 13; p++)
		free_1m(pa, p);
	free_1m(pa, 20);
	free_1m(pa, 21);
	free_1m(pa, 30);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 5, got), 0);
	ck_assert_uint_eq(got[0], 10 * MiB);
	ck_assert_uint_eq(got[1], 11 * MiB);
	ck_assert_uint_eq(got[2], 12 * MiB);
	ck_assert_uint_eq(got[3], 20 * MiB);
	ck_assert_uint_eq(got[4], 21 * MiB);
	/* Remaining {0}, {2}, {30}: two pages come from two single holes. */
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 2, got), 0);
	ck_assert_uint_lt(got[0], got[1]);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * MiB);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(exhaustion)
{
	struct kvfs_palloc *pa = mk(16 * MiB);
	uint64_t *offs = calloc(256, sizeof(*offs));
	uint64_t big[2];
	struct kvfs_palloc_stats st;

	ck_assert_int_eq(kvfs_palloc_alloc(pa, 16 * MiB, 2, big), -ENOSPC);
	ck_assert_uint_eq(stats(pa).used, 0);
	for (int i = 0; i < 256; i++)
		ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 1, &offs[i]), 0);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 1, big), -ENOSPC);
	st = stats(pa);
	ck_assert_uint_eq(st.used, 16 * MiB);
	ck_assert_uint_eq(st.free, 0);
	ck_assert_uint_eq(st.largest_run, 0);
	ck_assert_uint_eq(st.allocs, 256);
	ck_assert_uint_eq(st.alloc_fails, 2);
	/* Offsets are distinct: sorted they are exactly 0, 64K, ... */
	for (int i = 0; i < 256; i++)
		ck_assert_uint_eq(offs[i], (uint64_t)i * 64 * KiB);
	ck_assert_int_eq(kvfs_palloc_free(pa, 64 * KiB, 256, offs), 0);
	st = stats(pa);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.largest_run, 16 * MiB);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 16 * MiB, 1, big), 0);
	ck_assert_uint_eq(big[0], 0);
	free(offs);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(pin_defers_free)
{
	struct kvfs_palloc *pa = mk(2 * MiB);
	uint64_t off, other, again;
	struct kvfs_palloc_stats st;

	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &off), 0);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &other), 0);
	ck_assert_int_eq(kvfs_palloc_pin(pa, off), 0);
	ck_assert_int_eq(kvfs_palloc_pin(pa, off), 0);
	ck_assert_uint_eq(stats(pa).pinned_pages, 1);

	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), 0);
	st = stats(pa);
	ck_assert_uint_eq(st.deferred, 1 * MiB);
	ck_assert_uint_eq(st.used, 2 * MiB);
	ck_assert_uint_eq(st.free, 0);
	/* Not handed out while pinned; no new pins; no double free. */
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &again), -ENOSPC);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 64 * KiB, 1, &again), -ENOSPC);
	ck_assert_int_eq(kvfs_palloc_pin(pa, off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 1 * MiB, off), -EEXIST);

	kvfs_palloc_unpin(pa, off);
	ck_assert_uint_eq(stats(pa).deferred, 1 * MiB);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &again), -ENOSPC);
	kvfs_palloc_unpin(pa, off); /* the last pin: released now */
	st = stats(pa);
	ck_assert_uint_eq(st.deferred, 0);
	ck_assert_uint_eq(st.pinned_pages, 0);
	ck_assert_uint_eq(st.used, 1 * MiB);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &again), 0);
	ck_assert_uint_eq(again, off);

	/* Pin, unpin, then free: released at once. Unpin of an unpinned page is ignored. */
	ck_assert_int_eq(kvfs_palloc_pin(pa, other), 0);
	kvfs_palloc_unpin(pa, other);
	kvfs_palloc_unpin(pa, other);
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &other), 0);
	ck_assert_uint_eq(stats(pa).used, 1 * MiB);
	ck_assert_uint_eq(stats(pa).deferred, 0);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(reserve)
{
	struct kvfs_palloc *pa = mk(8 * MiB);
	uint64_t offs[8], off;

	ck_assert_int_eq(kvfs_palloc_reserve(pa, 1 * MiB, 2 * MiB), 0);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 1 * MiB, 2 * MiB), -EEXIST);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 64 * KiB, 2 * MiB + 64 * KiB), -EEXIST);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 4 * MiB, 0), -EEXIST);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 1 * MiB, 512 * KiB), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 1 * MiB, 8 * MiB), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 16 * MiB, 0), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 3 * MiB, 0), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_reserve(pa, 64 * KiB, 7 * MiB + 960 * KiB), 0);
	ck_assert_uint_eq(stats(pa).used, 1 * MiB + 64 * KiB);

	/* Reserved pages behave like allocated ones: pin, and never handed out. */
	ck_assert_int_eq(kvfs_palloc_pin(pa, 2 * MiB), 0);
	kvfs_palloc_unpin(pa, 2 * MiB);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 6, offs), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_uint_ne(offs[i], 2 * MiB);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &off), -ENOSPC);
	off = 2 * MiB;
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), 0);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, &off), 0);
	ck_assert_uint_eq(off, 2 * MiB);
	kvfs_palloc_destroy(pa);
}
END_TEST

START_TEST(invalid_inputs)
{
	struct kvfs_palloc *pa = mk(32 * MiB);
	uint64_t off = 0xdead, offs[2];

	ck_assert_int_eq(kvfs_palloc_alloc(pa, 32 * KiB, 1, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 32 * MiB, 1, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 3 * MiB, 1, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 0, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 1, NULL), -EINVAL);
	ck_assert_uint_eq(off, 0xdead);

	ck_assert_int_eq(kvfs_palloc_alloc(pa, 1 * MiB, 2, offs), 0);
	/* Wrong size, middle of a page, unallocated, out of range. */
	ck_assert_int_eq(kvfs_palloc_free(pa, 2 * MiB, 1, &offs[0]), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_free(pa, 64 * KiB, 1, &offs[0]), -EINVAL);
	off = offs[0] + 64 * KiB;
	ck_assert_int_eq(kvfs_palloc_free(pa, 64 * KiB, 1, &off), -EINVAL);
	off = 20 * MiB;
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), -EINVAL);
	off = 64 * MiB;
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 1, &off), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_pin(pa, offs[0] + 64 * KiB), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_pin(pa, offs[0] + 1), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_pin(pa, 20 * MiB), -EINVAL);
	ck_assert_int_eq(kvfs_palloc_pin(pa, 1ull << 40), -EINVAL);
	kvfs_palloc_unpin(pa, 1ull << 40); /* ignored */
	ck_assert_uint_eq(stats(pa).used, 2 * MiB);
	ck_assert_uint_eq(stats(pa).pinned_pages, 0);

	/* A bad page in a list does not stop the good ones. */
	{
		uint64_t mixed[3] = {offs[0], 20 * MiB, offs[1]};

		ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, 3, mixed), -EINVAL);
	}
	ck_assert_uint_eq(stats(pa).used, 0);
	kvfs_palloc_destroy(pa);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Concurrency */

#define STRESS_CAP     (256 * MiB)
#define STRESS_THREADS 4
#define STRESS_LIVE    32

struct stress {
	struct kvfs_palloc *pa;
	_Atomic uint32_t *owner; /* per 64 KiB unit: thread id + 1 of the live page holder */
	_Atomic uint64_t published[STRESS_THREADS * STRESS_LIVE]; /* offsets others may pin */
	_Atomic int errors;
	_Atomic int stop;
	int iters;
};

struct stress_thread {
	struct stress *s;
	uint32_t id;
	unsigned seed;
};

struct live {
	uint32_t page_size;
	uint32_t n;
	uint64_t offs[4];
};

static void claim(struct stress *s, const struct live *l, uint32_t tid, bool take)
{
	for (uint32_t k = 0; k < l->n; k++) {
		uint64_t u0 = l->offs[k] / (64 * KiB), nu = l->page_size / (64 * KiB);

		for (uint64_t u = u0; u < u0 + nu; u++) {
			uint32_t want = take ? 0 : tid + 1;

			if (!atomic_compare_exchange_strong(&s->owner[u], &want,
							    take ? tid + 1 : 0))
				atomic_fetch_add(&s->errors, 1);
		}
	}
}

static void *stress_main(void *arg)
{
	struct stress_thread *t = arg;
	struct stress *s = t->s;
	static const uint32_t sizes[] = {64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB};
	struct live live[STRESS_LIVE];
	int nlive = 0;

	for (int it = 0; it < s->iters; it++) {
		unsigned r = (unsigned)rand_r(&t->seed);

		if (nlive < STRESS_LIVE && (r & 1)) {
			struct live *l = &live[nlive];

			l->page_size = sizes[(r >> 1) % 5];
			l->n = 1 + (r >> 4) % 4;
			if (kvfs_palloc_alloc(s->pa, l->page_size, l->n, l->offs) == 0) {
				for (uint32_t k = 0; k < l->n; k++)
					if (l->offs[k] % l->page_size ||
					    l->offs[k] + l->page_size > STRESS_CAP ||
					    (k && l->offs[k] <= l->offs[k - 1]))
						atomic_fetch_add(&s->errors, 1);
				claim(s, l, t->id, true);
				atomic_store(&s->published[t->id * STRESS_LIVE + nlive],
					     l->offs[0] + 1);
				nlive++;
			}
		} else if (nlive > 0) {
			int i = (int)((r >> 1) % (unsigned)nlive);
			struct live l = live[i];
			bool pinned = (r >> 8) & 1;

			live[i] = live[--nlive];
			atomic_store(&s->published[t->id * STRESS_LIVE + i],
				     i < nlive ? live[i].offs[0] + 1 : 0);
			atomic_store(&s->published[t->id * STRESS_LIVE + nlive], 0);
			if (pinned && kvfs_palloc_pin(s->pa, l.offs[0]) < 0)
				atomic_fetch_add(&s->errors, 1);
			/* Give up ownership first: after free (or the last unpin) it is fair game. */
			claim(s, &l, t->id, false);
			if (kvfs_palloc_free(s->pa, l.page_size, l.n, l.offs) < 0)
				atomic_fetch_add(&s->errors, 1);
			if (pinned)
				kvfs_palloc_unpin(s->pa, l.offs[0]);
		}
		/* Pin someone's page for a moment; it may be freed under us, which must be fine. */
		if ((r >> 12) % 4 == 0) {
			uint64_t p = atomic_load(
				&s->published[(r >> 14) % (STRESS_THREADS * STRESS_LIVE)]);

			if (p && kvfs_palloc_pin(s->pa, p - 1) == 0)
				kvfs_palloc_unpin(s->pa, p - 1);
		}
	}
	while (nlive > 0) {
		struct live *l = &live[--nlive];

		atomic_store(&s->published[t->id * STRESS_LIVE + nlive], 0);
		claim(s, l, t->id, false);
		if (kvfs_palloc_free(s->pa, l->page_size, l->n, l->offs) < 0)
			atomic_fetch_add(&s->errors, 1);
	}
	return NULL;
}

START_TEST(concurrent)
{
	struct stress *s = calloc(1, sizeof(*s));
	struct stress_thread th[STRESS_THREADS];
	pthread_t tid[STRESS_THREADS];
	struct kvfs_palloc_stats st;
	const char *iters = getenv("KVFS_STRESS_ITERS");

	s->pa = mk(STRESS_CAP);
	s->owner = calloc(STRESS_CAP / (64 * KiB), sizeof(*s->owner));
	s->iters = iters ? atoi(iters) : 20000;
	for (uint32_t i = 0; i < STRESS_THREADS; i++) {
		th[i] = (struct stress_thread){.s = s, .id = i, .seed = 1234 + i};
		ck_assert_int_eq(pthread_create(&tid[i], NULL, stress_main, &th[i]), 0);
	}
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_join(tid[i], NULL);
	ck_assert_int_eq(atomic_load(&s->errors), 0);
	st = stats(s->pa);
	ck_assert_uint_eq(st.used, 0);
	ck_assert_uint_eq(st.deferred, 0);
	ck_assert_uint_eq(st.pinned_pages, 0);
	ck_assert_uint_eq(st.free, STRESS_CAP);
	ck_assert_uint_eq(st.largest_run, STRESS_CAP);
	ck_assert_uint_gt(st.allocs, 1000);
	kvfs_palloc_destroy(s->pa);
	free(s->owner);
	free(s);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* Timing at scale: prints figures; the bound only catches an O(capacity) regression. */

static void shuffle(uint64_t *v, size_t n, unsigned *seed)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)rand_r(seed) % (i + 1);
		uint64_t t = v[i];

		v[i] = v[j];
		v[j] = t;
	}
}

START_TEST(timing)
{
	const uint64_t cap = 4 * GiB, npages = cap / MiB;
	struct kvfs_palloc *pa = mk(cap);
	uint64_t *offs = calloc(npages, sizeof(*offs));
	unsigned seed = 42;
	uint64_t t0, t1, rounds = 200000, ns_alloc, ns_free, ns_pair, ns_frag;
	size_t nlive = npages / 2;
	int bad = 0;

	/* Fill page by page, empty page by page. No ck_assert in timed loops: each one is a write
	 * to Check's pipe. */
	t0 = now_ns();
	for (uint64_t i = 0; i < npages; i++)
		bad += kvfs_palloc_alloc(pa, 1 * MiB, 1, &offs[i]) != 0;
	ns_alloc = (now_ns() - t0) / npages;
	t0 = now_ns();
	for (uint64_t i = 0; i < npages; i++)
		kvfs_palloc_free(pa, 1 * MiB, 1, &offs[i]);
	ns_free = (now_ns() - t0) / npages;
	/* Half full, in random holes. */
	for (uint64_t i = 0; i < npages; i++)
		bad += kvfs_palloc_alloc(pa, 1 * MiB, 1, &offs[i]) != 0;
	shuffle(offs, npages, &seed);
	ck_assert_int_eq(kvfs_palloc_free(pa, 1 * MiB, (uint32_t)(npages - nlive), offs + nlive),
			 0);

	/* Steady state: free a random live page, allocate one. */
	t0 = now_ns();
	for (uint64_t i = 0; i < rounds; i++) {
		size_t k = (size_t)rand_r(&seed) % nlive;

		bad += kvfs_palloc_free(pa, 1 * MiB, 1, &offs[k]) != 0;
		bad += kvfs_palloc_alloc(pa, 1 * MiB, 1, &offs[k]) != 0;
	}
	t1 = now_ns();
	ns_pair = (t1 - t0) / rounds;

	/* 8-page (8 MiB) requests in the same fragmented arena: contiguous first, else runs. */
	t0 = now_ns();
	for (uint64_t i = 0; i < 2000; i++) {
		uint64_t got[8];

		bad += kvfs_palloc_alloc(pa, 1 * MiB, 8, got) != 0;
		bad += kvfs_palloc_free(pa, 1 * MiB, 8, got) != 0;
	}
	ns_frag = (now_ns() - t0) / 2000;

	fprintf(stderr,
		"timing (4 GiB, 1 MiB pages): fill alloc %llu ns/op, free %llu ns/op, free+alloc "
		"%llu ns/pair (half full, random holes), 8-page alloc+free %llu ns/pair\n",
		(unsigned long long)ns_alloc, (unsigned long long)ns_free,
		(unsigned long long)ns_pair, (unsigned long long)ns_frag);
	ck_assert_int_eq(bad, 0);
	ck_assert_uint_lt(ns_pair, 1000000);
	ck_assert_uint_eq(stats(pa).used, nlive * MiB);
	free(offs);
	kvfs_palloc_destroy(pa);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("arena");

	tcase_add_test(tc, arena_basic);
	tcase_add_test(tc, arena_prefault);
	tcase_add_test(tc, arena_hugepages);
	suite_add_tcase(s, tc);

	tc = tcase_create("palloc");
	tcase_add_test(tc, page_size_rules);
	tcase_add_test(tc, palloc_create_rules);
	tcase_add_test(tc, alloc_alignment);
	tcase_add_test(tc, fragmentation);
	tcase_add_test(tc, contiguous_preferred);
	tcase_add_test(tc, fewest_runs);
	tcase_add_test(tc, exhaustion);
	tcase_add_test(tc, pin_defers_free);
	tcase_add_test(tc, reserve);
	tcase_add_test(tc, invalid_inputs);
	suite_add_tcase(s, tc);

	tc = tcase_create("scale");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, concurrent);
	tcase_add_test(tc, timing);
	suite_add_tcase(s, tc);
	return s;
}
