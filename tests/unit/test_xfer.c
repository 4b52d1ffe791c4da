/* SPDX-License-Identifier: MIT */
/*
 * test_xfer.c - Check runner for rdma/: the transfer engine over the `local` backend.
 *
 * Covers merging (contiguous on both sides -> one transfer, in any submission order; scattered
 * on either side or mixed directions -> one transfer per op), data correctness of reads and
 * writes, per-op results (-EINVAL out of range, -EHOSTUNREACH unknown node, -ESTALE wrong
 * incarnation), malformed batches, the future API, counters, and concurrent submitters.
 * Deadlines need an asynchronous backend and are tested with tcp/verbs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "pool.h"
#include "xfer.h"

#define KiB	   (1024ull)
#define MiB	   (1024ull * KiB)
#define SELF	   7u
#define INC	   3u
#define ARENA_SIZE (64 * MiB)

static struct kvfs_arena *arena;
static struct kvfs_xfer_engine *eng;

static void setup(void)
{
	struct kvfs_xfer_config cfg = {
		.self_node = SELF, .self_incarnation = INC, .default_timeout_ns = 0};
	unsigned char *p;

	ck_assert_int_eq(kvfs_arena_create(ARENA_SIZE, 0, &arena), 0);
	p = kvfs_arena_base(arena);
	for (uint64_t i = 0; i < ARENA_SIZE; i++)
		p[i] = (unsigned char)((i * 7 + (i >> 16)) & 0xff);
	cfg.arena = arena;
	ck_assert_int_eq(kvfs_xfer_engine_create(&cfg, &eng), 0);
}

static void teardown(void)
{
	kvfs_xfer_engine_destroy(eng);
	kvfs_arena_destroy(arena);
	eng = NULL;
	arena = NULL;
}

static struct kvfs_xfer_counters counters(void)
{
	struct kvfs_xfer_counters c;

	kvfs_xfer_get_counters(eng, KVFS_XFER_LOCAL, &c);
	return c;
}

static struct kvfs_xfer_op op(uint8_t dir, uint64_t off, void *buf, uint32_t len)
{
	return (struct kvfs_xfer_op){.dir = dir,
				     .node = SELF,
				     .incarnation = 0,
				     .remote_off = off,
				     .buf = buf,
				     .len = len,
				     .result = 12345};
}

START_TEST(names_and_lifecycle)
{
	struct kvfs_xfer_engine *e = (struct kvfs_xfer_engine *)0x1;
	struct kvfs_xfer_counters c;

	ck_assert_str_eq(kvfs_xfer_backend_name(KVFS_XFER_LOCAL), "local");
	ck_assert_str_eq(kvfs_xfer_backend_name(KVFS_XFER_TCP), "tcp");
	ck_assert_str_eq(kvfs_xfer_backend_name(KVFS_XFER_VERBS), "verbs");
	ck_assert_str_eq(kvfs_xfer_backend_name(KVFS_XFER_NBACKENDS), "unknown");
	ck_assert_int_eq(kvfs_xfer_engine_create(NULL, &e), -EINVAL);
	ck_assert_ptr_eq(e, (struct kvfs_xfer_engine *)0x1);
	kvfs_xfer_engine_destroy(NULL);
	kvfs_xfer_batch_put(NULL);
	c = counters();
	ck_assert_uint_eq(c.ops + c.transfers + c.bytes + c.errors, 0);
	kvfs_xfer_get_counters(eng, KVFS_XFER_VERBS, &c);
	ck_assert_uint_eq(c.ops, 0);
}
END_TEST

START_TEST(merge_contiguous_read)
{
	unsigned char *buf = malloc(64 * MiB);
	struct kvfs_xfer_op ops[64];
	struct kvfs_xfer_counters c;

	/* Submitted in reverse order: the engine sorts before merging. */
	for (int i = 0; i < 64; i++) {
		int k = 63 - i;

		ops[i] = op(KVFS_XFER_READ, (uint64_t)k * MiB, buf + (uint64_t)k * MiB, MiB);
	}
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 64, 0), 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(ops[i].result, 0);
	ck_assert_int_eq(memcmp(buf, kvfs_arena_base(arena), 64 * MiB), 0);
	c = counters();
	ck_assert_uint_eq(c.ops, 64);
	ck_assert_uint_eq(c.transfers, 1);
	ck_assert_uint_eq(c.bytes, 64 * MiB);
	ck_assert_uint_eq(c.errors, 0);
	free(buf);
}
END_TEST

START_TEST(scattered_not_merged)
{
	unsigned char *buf = malloc(64 * MiB);
	unsigned char *base = kvfs_arena_base(arena);
	struct kvfs_xfer_op ops[32];
	struct kvfs_xfer_counters c;

	/* Remote every other page, local contiguous: 32 transfers. */
	for (int i = 0; i < 32; i++)
		ops[i] = op(KVFS_XFER_READ, (uint64_t)(2 * i) * MiB, buf + (uint64_t)i * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 32, 0), 0);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(
			memcmp(buf + (uint64_t)i * MiB, base + (uint64_t)(2 * i) * MiB, MiB), 0);
	c = counters();
	ck_assert_uint_eq(c.transfers, 32);

	/* Remote contiguous, local every other: 32 more. */
	for (int i = 0; i < 32; i++)
		ops[i] = op(KVFS_XFER_READ, (uint64_t)i * MiB, buf + (uint64_t)(2 * i) * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 32, 0), 0);
	ck_assert_uint_eq(counters().transfers, 64);

	/* Contiguous on both sides but alternating directions: nothing merges. */
	for (int i = 0; i < 4; i++)
		ops[i] = op(i % 2 ? KVFS_XFER_WRITE : KVFS_XFER_READ, (uint64_t)(40 + i) * MiB,
			    buf + (uint64_t)i * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 4, 0), 0);
	c = counters();
	ck_assert_uint_eq(c.transfers, 68);
	ck_assert_uint_eq(c.ops, 68);
	ck_assert_uint_eq(c.bytes, 68 * MiB);

	/* Two runs of 3 with a gap: 2 transfers. */
	for (int i = 0; i < 6; i++) {
		uint64_t page = (uint64_t)(i < 3 ? i : i + 1);

		ops[i] = op(KVFS_XFER_READ, page * 64 * KiB, buf + page * 64 * KiB, 64 * KiB);
	}
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 6, 0), 0);
	ck_assert_uint_eq(counters().transfers, 70);
	free(buf);
}
END_TEST

START_TEST(write_then_read)
{
	unsigned char *src = malloc(4 * MiB), *dst = calloc(1, 4 * MiB);
	unsigned char *base = kvfs_arena_base(arena);
	struct kvfs_xfer_op ops[8];

	for (uint64_t i = 0; i < 4 * MiB; i++)
		src[i] = (unsigned char)(i * 13 + 5);
	/* Write 4 pages of 1 MiB to scattered arena pages 9, 3, 30, 31 with odd lengths mixed in. */
	ops[0] = op(KVFS_XFER_WRITE, 9 * MiB, src, MiB);
	ops[1] = op(KVFS_XFER_WRITE, 3 * MiB, src + MiB, MiB);
	ops[2] = op(KVFS_XFER_WRITE, 30 * MiB, src + 2 * MiB, MiB);
	ops[3] = op(KVFS_XFER_WRITE, 31 * MiB, src + 3 * MiB, MiB - 1);
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 4, 0), 0);
	ck_assert_int_eq(memcmp(base + 9 * MiB, src, MiB), 0);
	ck_assert_int_eq(memcmp(base + 3 * MiB, src + MiB, MiB), 0);
	ck_assert_int_eq(memcmp(base + 30 * MiB, src + 2 * MiB, 2 * MiB - 1), 0);
	ck_assert_uint_eq(counters().transfers, 3);

	ops[0] = op(KVFS_XFER_READ, 3 * MiB, dst + MiB, MiB);
	ops[1] = op(KVFS_XFER_READ, 9 * MiB, dst, MiB);
	ops[2] = op(KVFS_XFER_READ, 30 * MiB, dst + 2 * MiB, 2 * MiB - 1);
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 3, 0), 0);
	ck_assert_int_eq(memcmp(dst, src, 4 * MiB - 1), 0);
	ck_assert_int_eq(dst[4 * MiB - 1], 0);

	/* A small unaligned read in the middle of a page. */
	{
		unsigned char small[100];

		ops[0] = op(KVFS_XFER_READ, 9 * MiB + 4097, small, sizeof(small));
		ck_assert_int_eq(kvfs_xfer_run(eng, ops, 1, 0), 0);
		ck_assert_int_eq(memcmp(small, src + 4097, sizeof(small)), 0);
	}
	free(src);
	free(dst);
}
END_TEST

START_TEST(out_of_range)
{
	unsigned char buf[8192];
	struct kvfs_xfer_op ops[5];
	struct kvfs_xfer_counters c;

	ops[0] = op(KVFS_XFER_READ, 0, buf, 4096);
	ops[1] = op(KVFS_XFER_READ, ARENA_SIZE, buf, 1);		  /* just past the end */
	ops[2] = op(KVFS_XFER_WRITE, ARENA_SIZE - 4096, buf, 8192);	  /* straddles the end */
	ops[3] = op(KVFS_XFER_READ, ARENA_SIZE - 4096, buf + 4096, 4096); /* last bytes: fine */
	ops[4] = op(KVFS_XFER_READ, UINT64_MAX - 100, buf, 100);	  /* far away */
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 5, 0), -EINVAL);
	ck_assert_int_eq(ops[0].result, 0);
	ck_assert_int_eq(ops[1].result, -EINVAL);
	ck_assert_int_eq(ops[2].result, -EINVAL);
	ck_assert_int_eq(ops[3].result, 0);
	ck_assert_int_eq(ops[4].result, -EINVAL);
	ck_assert_int_eq(
		memcmp(buf + 4096, (char *)kvfs_arena_base(arena) + ARENA_SIZE - 4096, 4096), 0);
	c = counters();
	ck_assert_uint_eq(c.ops, 5);
	ck_assert_uint_eq(c.errors, 3);
	ck_assert_uint_eq(c.transfers, 2);
	ck_assert_uint_eq(c.bytes, 8192);
}
END_TEST

START_TEST(peers_and_incarnations)
{
	unsigned char buf[4096];
	struct kvfs_xfer_op ops[5];
	struct kvfs_xfer_counters c;

	ops[0] = op(KVFS_XFER_READ, 0, buf, 4096);
	ops[0].node = SELF + 1; /* nobody knows that node */
	ops[1] = op(KVFS_XFER_READ, 0, buf, 4096);
	ops[1].incarnation = INC - 1; /* an earlier life of this node */
	ops[2] = op(KVFS_XFER_READ, 0, buf, 4096);
	ops[2].incarnation = INC;
	ops[3] = op(KVFS_XFER_READ, 4096, buf, 4096);
	ops[3].incarnation = 0; /* any */
	ops[4] = op(KVFS_XFER_WRITE, 0, buf, 4096);
	ops[4].incarnation = INC + 1;
	/* The first failing op in array order decides wait's result. */
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 5, 0), -EHOSTUNREACH);
	ck_assert_int_eq(ops[0].result, -EHOSTUNREACH);
	ck_assert_int_eq(ops[1].result, -ESTALE);
	ck_assert_int_eq(ops[2].result, 0);
	ck_assert_int_eq(ops[3].result, 0);
	ck_assert_int_eq(ops[4].result, -ESTALE);
	c = counters();
	ck_assert_uint_eq(c.ops, 4); /* the unreachable op had no backend */
	ck_assert_uint_eq(c.errors, 2);
	ck_assert_uint_eq(c.transfers, 2); /* incarnation INC and 0 are separate groups */

	ops[0].node = 0;
	ops[0].result = 1;
	ck_assert_int_eq(kvfs_xfer_run(eng, ops, 1, 0), -EHOSTUNREACH);
	ck_assert_int_eq(ops[0].result, -EHOSTUNREACH);
}
END_TEST

START_TEST(malformed)
{
	unsigned char buf[16];
	struct kvfs_xfer_op ops[2];
	struct kvfs_xfer_batch *b = (struct kvfs_xfer_batch *)0x1;

	ops[0] = op(KVFS_XFER_READ, 0, buf, 16);
	ops[1] = op(KVFS_XFER_READ, 16, buf, 0);
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 2, 0, &b), -EINVAL);
	ops[1] = op(2, 16, buf, 16);
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 2, 0, &b), -EINVAL);
	ops[1] = op(KVFS_XFER_READ, 16, NULL, 16);
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 2, 0, &b), -EINVAL);
	ck_assert_int_eq(kvfs_xfer_submit(eng, NULL, 2, 0, &b), -EINVAL);
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 1, 0, NULL), -EINVAL);
	ck_assert_ptr_eq(b, (struct kvfs_xfer_batch *)0x1);
	/* A rejected batch moved nothing and counted nothing. */
	ck_assert_int_eq(ops[0].result, 12345);
	ck_assert_uint_eq(counters().ops, 0);
}
END_TEST

START_TEST(future_api)
{
	unsigned char buf[4096];
	struct kvfs_xfer_op ops[2];
	struct kvfs_xfer_batch *b = NULL;

	ops[0] = op(KVFS_XFER_READ, 0, buf, 2048);
	ops[1] = op(KVFS_XFER_READ, 2048, buf + 2048, 2048);
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 2, 1000000000ull, &b), 0);
	ck_assert_ptr_nonnull(b);
	/* The local backend completes inline: done at once, waits are idempotent. */
	ck_assert_int_eq(kvfs_xfer_poll(b), 1);
	ck_assert_int_eq(kvfs_xfer_wait(b), 0);
	ck_assert_int_eq(kvfs_xfer_wait(b), 0);
	ck_assert_int_eq(kvfs_xfer_poll(b), 1);
	kvfs_xfer_batch_put(b);
	ck_assert_int_eq(memcmp(buf, kvfs_arena_base(arena), 4096), 0);
	ck_assert_uint_eq(counters().transfers, 1);

	/* An empty batch is done with nothing to do. */
	ck_assert_int_eq(kvfs_xfer_submit(eng, NULL, 0, 0, &b), 0);
	ck_assert_int_eq(kvfs_xfer_poll(b), 1);
	ck_assert_int_eq(kvfs_xfer_wait(b), 0);
	kvfs_xfer_batch_put(b);

	/* A batch whose every op failed at submit is done too. */
	ops[0].node = 99;
	ck_assert_int_eq(kvfs_xfer_submit(eng, ops, 1, 0, &b), 0);
	ck_assert_int_eq(kvfs_xfer_poll(b), 1);
	ck_assert_int_eq(kvfs_xfer_wait(b), -EHOSTUNREACH);
	kvfs_xfer_batch_put(b);
}
END_TEST

START_TEST(no_arena)
{
	struct kvfs_xfer_config cfg = {.self_node = 1, .self_incarnation = 1};
	struct kvfs_xfer_engine *e = NULL;
	unsigned char buf[16];
	struct kvfs_xfer_op o = op(KVFS_XFER_READ, 0, buf, 16);

	o.node = 1;
	ck_assert_int_eq(kvfs_xfer_engine_create(&cfg, &e), 0);
	ck_assert_int_eq(kvfs_xfer_run(e, &o, 1, 0), -EINVAL);
	kvfs_xfer_engine_destroy(e);
}
END_TEST

#define NTHREADS 4
#define ROUNDS	 200

static _Atomic int thread_errors;

static void *writer_main(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	uint64_t region = id * 8 * MiB; /* disjoint 8 MiB regions */
	unsigned char *src = malloc(8 * MiB), *dst = malloc(8 * MiB);
	struct kvfs_xfer_op ops[8];

	for (int r = 0; r < ROUNDS; r++) {
		memset(src, (int)(id * 31 + (uint64_t)r), 8 * MiB);
		for (int i = 0; i < 8; i++)
			ops[i] = op(KVFS_XFER_WRITE, region + (uint64_t)i * MiB,
				    src + (uint64_t)i * MiB, MiB);
		if (kvfs_xfer_run(eng, ops, 8, 0) != 0)
			thread_errors++;
		for (int i = 0; i < 8; i++)
			ops[i] = op(KVFS_XFER_READ, region + (uint64_t)i * MiB,
				    dst + (uint64_t)i * MiB, MiB);
		if (kvfs_xfer_run(eng, ops, 8, 0) != 0 || memcmp(src, dst, 8 * MiB) != 0)
			thread_errors++;
	}
	free(src);
	free(dst);
	return NULL;
}

START_TEST(concurrent_submitters)
{
	pthread_t t[NTHREADS];
	struct kvfs_xfer_counters c;

	for (uintptr_t i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, writer_main, (void *)i), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(thread_errors, 0);
	c = counters();
	ck_assert_uint_eq(c.ops, NTHREADS * ROUNDS * 16);
	ck_assert_uint_eq(c.transfers, NTHREADS * ROUNDS * 2);
	ck_assert_uint_eq(c.bytes, NTHREADS * ROUNDS * 16 * MiB);
	ck_assert_uint_eq(c.errors, 0);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("xfer");
	TCase *tc = tcase_create("local");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, names_and_lifecycle);
	tcase_add_test(tc, merge_contiguous_read);
	tcase_add_test(tc, scattered_not_merged);
	tcase_add_test(tc, write_then_read);
	tcase_add_test(tc, out_of_range);
	tcase_add_test(tc, peers_and_incarnations);
	tcase_add_test(tc, malformed);
	tcase_add_test(tc, future_api);
	tcase_add_test(tc, no_arena);
	tcase_add_test(tc, concurrent_submitters);
	suite_add_tcase(s, tc);
	return s;
}
