/* SPDX-License-Identifier: MIT */
/*
 * test_xfer_verbs.c - the `verbs` backend of rdma/ for real, on soft-RoCE: several engines in
 * one process, each with its own arena and rdma_cm listener. Run inside the rdma-vm guest
 * (tests/rdma/verbs.sh): with `--two-nodes` node A listens on RDMA_VM_NODE1_ADDR (rxe1) and the
 * others on RDMA_VM_NODE2_ADDR (rxe2), so transfers cross the veth; otherwise everything is on
 * RDMA_VM_ADDR (rxe0 loopback).
 *
 * Covers READ/WRITE batches with data checks (registered, arena and bounced local buffers),
 * what a batch costs on the wire (64 contiguous pages: 1 WR, 1 doorbell, 1 completion;
 * scattered local memory: multi-SGE WRs, 1 doorbell; scattered remote ranges: one chained post;
 * the per-op mode: one WR and one doorbell per op), ranges outside the peer's arena refused
 * locally, incarnation and token mismatches, unreachable peers, peer_down with transfers in
 * flight, a peer whose engine is destroyed under a batch, and reconnection afterwards.
 *
 * Plain C with TAP-like output ("ok - name" / "not ok - name: why"), kept short because the
 * guest's serial line is slow. Exit 0 all passed, 1 a failure, 77 no RDMA device or no address.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "xfer.h"

#define KiB	     1024ull
#define MiB	     (1024ull * KiB)
#define SEC	     1000000000ull
#define ARENA_SIZE   (64 * MiB)
#define NODE_A	     1u
#define NODE_B	     2u
#define NODE_C	     3u /* per-op client */
#define NODE_K	     4u /* the peer that gets killed */
#define NODE_T	     5u /* wrong token */
#define INC_A	     11u
#define INC_B	     22u
#define KILL_BATCHES 8 /* 32 MiB in flight when a peer is killed: rxe moves tens of MB/s */

struct node {
	struct kvfs_arena *arena;
	struct kvfs_xfer_engine *eng;
	char addr[96];
};

static struct node A, B;
static const char *addr1, *addr2;
static int failures;

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		printf("not ok - %s: ", __func__);                                                 \
		printf(__VA_ARGS__);                                                               \
		printf(" (line %d)\n", __LINE__);                                                  \
		failures++;                                                                        \
		return;                                                                            \
	} while (0)
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			FAIL("%s", #cond);                                                         \
	} while (0)
#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		if (a_ != b_)                                                                      \
			FAIL("%s = %lld, expected %lld", #a, a_, b_);                              \
	} while (0)
#define PASS(...)                                                                                  \
	do {                                                                                       \
		printf("ok - %s ", __func__);                                                      \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		fflush(stdout);                                                                    \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t xrand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(void *buf, size_t len)
{
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)xrand();
}

static int node_start(struct node *n, uint32_t id, uint32_t inc, const char *ip, uint16_t port,
		      const char *token, uint32_t flags)
{
	char listen[80];
	struct kvfs_xfer_config cfg = {.self_node = id,
				       .self_incarnation = inc,
				       .default_timeout_ns = 10 * SEC,
				       .token = token,
				       .verbs_listen_addr = listen,
				       .flags = flags};
	int r;

	snprintf(listen, sizeof(listen), "%s:%u", ip, port);
	r = kvfs_arena_create(ARENA_SIZE, 0, &n->arena);
	if (r < 0)
		return r;
	cfg.arena = n->arena;
	r = kvfs_xfer_engine_create(&cfg, &n->eng);
	if (r < 0)
		goto err_destroy_arena;
	r = kvfs_xfer_backend_status(n->eng, KVFS_XFER_VERBS);
	if (r < 0)
		goto err_destroy_engine;
	r = kvfs_xfer_backend_listen_addr(n->eng, KVFS_XFER_VERBS, n->addr, sizeof(n->addr));
	if (r < 0)
		goto err_destroy_engine;
	return 0;

err_destroy_engine:
	kvfs_xfer_engine_destroy(n->eng);
	n->eng = NULL;
err_destroy_arena:
	kvfs_arena_destroy(n->arena);
	n->arena = NULL;
	return r;
}

static void node_stop(struct node *n)
{
	kvfs_xfer_engine_destroy(n->eng);
	kvfs_arena_destroy(n->arena);
	memset(n, 0, sizeof(*n));
}

static char *arena_of(struct node *n)
{
	return kvfs_arena_base(n->arena);
}

static void counters(struct kvfs_xfer_engine *eng, struct kvfs_xfer_counters *c)
{
	kvfs_xfer_get_counters(eng, KVFS_XFER_VERBS, c);
}

/* Read or write @n pages of @psz from/to @node: remote page i at roff + i * rstride, local at
 * buf + i * lstride. */
static int pages(struct kvfs_xfer_engine *eng, uint8_t dir, uint32_t node, char *buf, uint64_t roff,
		 uint64_t rstride, uint64_t lstride, uint32_t psz, unsigned n, uint64_t timeout,
		 struct kvfs_xfer_op *ops)
{
	for (unsigned i = 0; i < n; i++)
		ops[i] = (struct kvfs_xfer_op){.dir = dir,
					       .node = node,
					       .remote_off = roff + i * rstride,
					       .buf = buf + i * lstride,
					       .len = psz};
	return kvfs_xfer_run(eng, ops, n, timeout);
}

/* ------------------------------------------------------------------------------------------ */

/* WRITE then READ random ranges, local memory bounced (plain malloc) and from A's own arena. */
static void t_write_read(void)
{
	struct kvfs_xfer_op ops[16];
	char *src = malloc(4 * MiB), *dst = malloc(4 * MiB);
	char *ab = arena_of(&A), *bb = arena_of(&B);
	uint64_t off = 0;
	int r;

	if (!src || !dst)
		FAIL("malloc");
	fill(src, 4 * MiB);
	for (int round = 0; round < 2; round++) {
		/* round 0: malloc'd buffers (bounce); round 1: buffers inside A's arena */
		char *s = round ? ab : src, *d = round ? ab + 8 * MiB : dst;

		if (round)
			memcpy(s, src, 4 * MiB);
		memset(d, 0, 4 * MiB);
		for (int i = 0; i < 16; i++) {
			uint32_t len = (uint32_t)(1 + xrand() % (200 * KiB));

			ops[i] = (struct kvfs_xfer_op){.dir = KVFS_XFER_WRITE,
						       .node = NODE_B,
						       .incarnation = INC_B,
						       .remote_off =
							       (uint64_t)round * 16 * MiB + off,
						       .buf = s + off,
						       .len = len};
			off += len + xrand() % 3 * 4096; /* some neighbours merge, some do not */
		}
		r = kvfs_xfer_run(A.eng, ops, 16, 0);
		CHECK_EQ(r, 0);
		for (int i = 0; i < 16; i++)
			CHECK(!memcmp(bb + ops[i].remote_off, ops[i].buf, ops[i].len));
		for (int i = 0; i < 16; i++) {
			ops[i].dir = KVFS_XFER_READ;
			ops[i].buf = d + ((char *)ops[i].buf - s);
		}
		r = kvfs_xfer_run(A.eng, ops, 16, 0);
		CHECK_EQ(r, 0);
		for (int i = 0; i < 16; i++)
			CHECK(!memcmp(ops[i].buf, s + ((char *)ops[i].buf - d), ops[i].len));
		off = 0;
	}
	free(src);
	free(dst);
	PASS("(bounced and arena buffers, 2 x 16 ops each way)");
}

/* 64 contiguous 64 KiB pages into a registered buffer: 1 transfer, 1 WR, 1 doorbell, 1 CQE. */
static void t_contig64(void)
{
	static struct kvfs_xfer_op ops[64];
	struct kvfs_xfer_counters c0, c1;
	char *buf = aligned_alloc(4096, 4 * MiB);
	int r;

	CHECK(buf);
	CHECK_EQ(kvfs_xfer_mem_reg(A.eng, buf, 4 * MiB), 0);
	fill(arena_of(&B) + 32 * MiB, 4 * MiB);
	counters(A.eng, &c0);
	r = pages(A.eng, KVFS_XFER_READ, NODE_B, buf, 32 * MiB, 64 * KiB, 64 * KiB, 64 * KiB, 64, 0,
		  ops);
	counters(A.eng, &c1);
	CHECK_EQ(r, 0);
	CHECK(!memcmp(buf, arena_of(&B) + 32 * MiB, 4 * MiB));
	CHECK_EQ(c1.transfers - c0.transfers, 1);
	CHECK_EQ(c1.wrs - c0.wrs, 1);
	CHECK_EQ(c1.doorbells - c0.doorbells, 1);
	CHECK_EQ(c1.completions - c0.completions, 1);
	CHECK_EQ(kvfs_xfer_mem_dereg(A.eng, buf), 0);
	free(buf);
	PASS("(64 x 64 KiB: 1 WR, 1 doorbell, 1 completion)");
}

/* Local pages scattered, remote contiguous: multi-SGE WRs in one post. And the reverse. */
static void t_scatter(void)
{
	static struct kvfs_xfer_op ops[64];
	struct kvfs_xfer_counters c0, c1, c2;
	char *buf = aligned_alloc(4096, 2 * 64 * 4 * KiB);
	char *bb = arena_of(&B) + 40 * MiB;
	uint64_t sge_wrs;
	int r;

	CHECK(buf);
	CHECK_EQ(kvfs_xfer_mem_reg(A.eng, buf, 2 * 64 * 4 * KiB), 0);
	fill(bb, 2 * 64 * 4 * KiB);
	counters(A.eng, &c0);
	/* every other local page, remote contiguous */
	r = pages(A.eng, KVFS_XFER_READ, NODE_B, buf, 40 * MiB, 4 * KiB, 8 * KiB, 4 * KiB, 64, 0,
		  ops);
	counters(A.eng, &c1);
	CHECK_EQ(r, 0);
	for (int i = 0; i < 64; i++)
		CHECK(!memcmp(buf + i * 8 * KiB, bb + i * 4 * KiB, 4 * KiB));
	sge_wrs = c1.wrs - c0.wrs;
	CHECK_EQ(c1.transfers - c0.transfers, 64); /* not contiguous on both sides */
	CHECK(sge_wrs >= 1 && sge_wrs <= 8);	   /* 64 SGEs, max_sge per WR */
	CHECK_EQ(c1.doorbells - c0.doorbells, 1);
	CHECK_EQ(c1.completions - c0.completions, 1);
	/* every other remote page, local contiguous: 64 WRs chained, one doorbell */
	r = pages(A.eng, KVFS_XFER_READ, NODE_B, buf, 40 * MiB, 8 * KiB, 4 * KiB, 4 * KiB, 64, 0,
		  ops);
	counters(A.eng, &c2);
	CHECK_EQ(r, 0);
	for (int i = 0; i < 64; i++)
		CHECK(!memcmp(buf + i * 4 * KiB, bb + i * 8 * KiB, 4 * KiB));
	CHECK_EQ(c2.wrs - c1.wrs, 64);
	CHECK_EQ(c2.doorbells - c1.doorbells, 1);
	CHECK_EQ(c2.completions - c1.completions, 1);
	CHECK_EQ(kvfs_xfer_mem_dereg(A.eng, buf), 0);
	free(buf);
	PASS("(scattered local: %" PRIu64 " WRs; scattered remote: 64 WRs; 1 doorbell each)",
	     sge_wrs);
}

/* The per-op mode: every op one signalled WR and one doorbell. Also bounds before connecting. */
static void t_per_op(void)
{
	static struct kvfs_xfer_op ops[64];
	struct kvfs_xfer_counters c0, c1;
	struct node C = {0};
	char *buf = aligned_alloc(4096, 64 * 4 * KiB);
	struct kvfs_xfer_op bad[2];
	int r;

	CHECK(buf);
	r = node_start(&C, NODE_C, 1, addr2, 0, NULL, KVFS_XFER_F_PER_OP);
	CHECK_EQ(r, 0);
	CHECK_EQ(kvfs_xfer_peer_set(C.eng, NODE_B, INC_B, B.addr, KVFS_XFER_VERBS), 0);
	CHECK_EQ(kvfs_xfer_mem_reg(C.eng, buf, 64 * 4 * KiB), 0);
	/* First batch, not connected yet: the range is judged once the peer's arena is known. */
	bad[0] = (struct kvfs_xfer_op){
		.dir = KVFS_XFER_READ, .node = NODE_B, .remote_off = 0, .buf = buf, .len = 4096};
	bad[1] = (struct kvfs_xfer_op){.dir = KVFS_XFER_READ,
				       .node = NODE_B,
				       .remote_off = ARENA_SIZE - 100,
				       .buf = buf + 4096,
				       .len = 4096};
	r = kvfs_xfer_run(C.eng, bad, 2, 0);
	CHECK_EQ(r, -EINVAL);
	CHECK_EQ(bad[0].result, 0);
	CHECK_EQ(bad[1].result, -EINVAL);
	counters(C.eng, &c0);
	r = pages(C.eng, KVFS_XFER_READ, NODE_B, buf, 32 * MiB, 4 * KiB, 4 * KiB, 4 * KiB, 64, 0,
		  ops);
	counters(C.eng, &c1);
	CHECK_EQ(r, 0);
	CHECK(!memcmp(buf, arena_of(&B) + 32 * MiB, 64 * 4 * KiB));
	CHECK_EQ(c1.transfers - c0.transfers, 64);
	CHECK_EQ(c1.wrs - c0.wrs, 64);
	CHECK_EQ(c1.doorbells - c0.doorbells, 64);
	CHECK_EQ(c1.completions - c0.completions, 64);
	kvfs_xfer_mem_dereg(C.eng, buf);
	node_stop(&C);
	free(buf);
	PASS("(64 contiguous pages: 64 WRs, 64 doorbells, 64 completions)");
}

/* Ranges outside the peer's arena fail locally with -EINVAL; the rest of the batch goes on. */
static void t_bounds(void)
{
	struct kvfs_xfer_counters c0, c1;
	char buf[3][4096];
	struct kvfs_xfer_op ops[3] = {
		{.dir = KVFS_XFER_READ,
		 .node = NODE_B,
		 .remote_off = 4096,
		 .buf = buf[0],
		 .len = 4096},
		{.dir = KVFS_XFER_READ,
		 .node = NODE_B,
		 .remote_off = ARENA_SIZE,
		 .buf = buf[1],
		 .len = 1},
		{.dir = KVFS_XFER_WRITE,
		 .node = NODE_B,
		 .remote_off = ARENA_SIZE - 1000,
		 .buf = buf[2],
		 .len = 4096},
	};
	int r;

	counters(A.eng, &c0);
	r = kvfs_xfer_run(A.eng, ops, 3, 0);
	counters(A.eng, &c1);
	CHECK_EQ(r, -EINVAL);
	CHECK_EQ(ops[0].result, 0);
	CHECK_EQ(ops[1].result, -EINVAL);
	CHECK_EQ(ops[2].result, -EINVAL);
	CHECK_EQ(c1.wrs - c0.wrs, 1);
	CHECK(!memcmp(buf[0], arena_of(&B) + 4096, 4096));
	PASS("%s", "");
}

/* Incarnations: an op naming another one, and a peer table expecting another one. */
static void t_incarnation(void)
{
	char buf[4096];
	struct kvfs_xfer_op op = {.dir = KVFS_XFER_READ,
				  .node = NODE_B,
				  .incarnation = INC_B + 1,
				  .buf = buf,
				  .len = sizeof(buf)};
	int r;

	r = kvfs_xfer_run(A.eng, &op, 1, 0);
	CHECK_EQ(r, -ESTALE);
	/* The table says B is incarnation 99: the connection to the real B (22) is refused. */
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, NODE_B, 99, B.addr, KVFS_XFER_VERBS), 0);
	op.incarnation = 0;
	r = kvfs_xfer_run(A.eng, &op, 1, 5 * SEC);
	CHECK_EQ(r, -ESTALE);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_VERBS), 0);
	r = kvfs_xfer_run(A.eng, &op, 1, 5 * SEC);
	CHECK_EQ(r, 0);
	PASS("%s", "");
}

/* A node with another cluster token is refused (-EACCES); nobody listening: -EHOSTUNREACH. */
static void t_refused(void)
{
	struct node T = {0};
	char buf[4096], addr[96];
	struct kvfs_xfer_op op = {.dir = KVFS_XFER_READ, .node = NODE_B, .buf = buf, .len = 4096};
	uint64_t t0;
	int r;

	r = node_start(&T, NODE_T, 1, addr2, 0, "another-cluster", 0);
	CHECK_EQ(r, 0);
	CHECK_EQ(kvfs_xfer_peer_set(T.eng, NODE_B, INC_B, B.addr, KVFS_XFER_VERBS), 0);
	r = kvfs_xfer_run(T.eng, &op, 1, 5 * SEC);
	node_stop(&T);
	CHECK_EQ(r, -EACCES);

	/* a port nobody listens on */
	snprintf(addr, sizeof(addr), "%s:1", addr2);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, 77, 0, addr, KVFS_XFER_VERBS), 0);
	op.node = 77;
	t0 = now_ns();
	r = kvfs_xfer_run(A.eng, &op, 1, 5 * SEC);
	CHECK_EQ(r, -EHOSTUNREACH);
	CHECK(now_ns() - t0 < 4 * SEC);
	PASS("(refused port answered in %.0f ms)", (double)(now_ns() - t0) / 1e6);
}

/* peer_down with a batch in flight: it ends promptly with -ESTALE (or had finished); back up. */
static void t_peer_down(void)
{
	static struct kvfs_xfer_op ops[64];
	struct kvfs_xfer_batch *b;
	char *buf = malloc(4 * MiB);
	uint64_t t0, dt;
	int r, stale = 0;

	CHECK(buf);
	for (unsigned i = 0; i < 64; i++)
		ops[i] = (struct kvfs_xfer_op){.dir = KVFS_XFER_READ,
					       .node = NODE_B,
					       .remote_off = i * 64 * KiB,
					       .buf = buf + i * 64 * KiB,
					       .len = 64 * KiB};
	CHECK_EQ(kvfs_xfer_submit(A.eng, ops, 64, 10 * SEC, &b), 0);
	t0 = now_ns();
	CHECK_EQ(kvfs_xfer_peer_down(A.eng, NODE_B), 0);
	kvfs_xfer_wait(b);
	dt = now_ns() - t0;
	kvfs_xfer_batch_put(b);
	for (int i = 0; i < 64; i++) {
		CHECK(ops[i].result == 0 || ops[i].result == -ESTALE);
		stale += ops[i].result == -ESTALE;
	}
	CHECK(dt < 2 * SEC);
	r = pages(A.eng, KVFS_XFER_READ, NODE_B, buf, 0, 4096, 4096, 4096, 1, 0, ops);
	CHECK_EQ(r, -ESTALE);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_VERBS), 0);
	r = pages(A.eng, KVFS_XFER_READ, NODE_B, buf, 0, 64 * KiB, 64 * KiB, 64 * KiB, 64, 0, ops);
	CHECK_EQ(r, 0);
	free(buf);
	PASS("(%d of 64 ops -ESTALE, batch over in %.0f ms; reconnected)", stale, (double)dt / 1e6);
}

/*
 * A peer whose engine is destroyed: a batch in flight fails (-EIO) before its deadline, later
 * ones fail fast; the node restarted with a new incarnation on the same port is reached again.
 */
static void t_killed_peer(void)
{
	static struct kvfs_xfer_op ops[64], fl[KILL_BATCHES][64];
	struct kvfs_xfer_batch *b[KILL_BATCHES];
	struct node K = {0};
	char *buf = malloc(KILL_BATCHES * 4 * MiB);
	char kaddr[96];
	unsigned port;
	uint64_t t0, dt1, dt2;
	int r, r2, failed = 0;

	CHECK(buf);
	CHECK_EQ(node_start(&K, NODE_K, 1, addr2, 0, NULL, 0), 0);
	snprintf(kaddr, sizeof(kaddr), "%s", K.addr);
	CHECK(sscanf(strrchr(kaddr, ':') + 1, "%u", &port) == 1);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, NODE_K, 1, kaddr, KVFS_XFER_VERBS), 0);
	r = pages(A.eng, KVFS_XFER_READ, NODE_K, buf, 0, 64 * KiB, 64 * KiB, 64 * KiB, 64, 0, ops);
	CHECK_EQ(r, 0);

	/* in flight while the peer goes away: enough data that the last batches cannot be done */
	for (int k = 0; k < KILL_BATCHES; k++) {
		for (unsigned i = 0; i < 64; i++)
			fl[k][i] = (struct kvfs_xfer_op){
				.dir = KVFS_XFER_READ,
				.node = NODE_K,
				.remote_off = (uint64_t)k * 4 * MiB + i * 64 * KiB,
				.buf = buf + (uint64_t)k * 4 * MiB + i * 64 * KiB,
				.len = 64 * KiB};
		CHECK_EQ(kvfs_xfer_submit(A.eng, fl[k], 64, 5 * SEC, &b[k]), 0);
	}
	t0 = now_ns();
	node_stop(&K);
	for (int k = 0; k < KILL_BATCHES; k++) {
		kvfs_xfer_wait(b[k]);
		kvfs_xfer_batch_put(b[k]);
	}
	dt1 = now_ns() - t0;
	for (int k = 0; k < KILL_BATCHES; k++)
		for (int i = 0; i < 64; i++) {
			int q = fl[k][i].result;

			CHECK(q == 0 || q == -EIO || q == -ETIMEDOUT);
			failed += q != 0;
		}
	CHECK(failed > 0);
	CHECK(dt1 < 6 * SEC);

	/* after: nobody listens there any more */
	t0 = now_ns();
	r2 = pages(A.eng, KVFS_XFER_READ, NODE_K, buf, 0, 4096, 4096, 4096, 1, 5 * SEC, ops);
	dt2 = now_ns() - t0;
	CHECK(r2 < 0);
	CHECK(dt2 < 6 * SEC);

	/* restarted with a new incarnation on the same port: reconnect */
	CHECK_EQ(node_start(&K, NODE_K, 2, addr2, (uint16_t)port, NULL, 0), 0);
	fill(arena_of(&K), 64 * KiB);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, NODE_K, 2, K.addr, KVFS_XFER_VERBS), 0);
	r = pages(A.eng, KVFS_XFER_READ, NODE_K, buf, 0, 4096, 4096, 4096, 16, 0, ops);
	CHECK_EQ(r, 0);
	CHECK(!memcmp(buf, arena_of(&K), 64 * KiB));
	node_stop(&K);
	free(buf);
	PASS("(%d of %d in flight failed, all done %.0f ms after the kill; then %d in %.0f ms; "
	     "reconnected)",
	     failed, KILL_BATCHES * 64, (double)dt1 / 1e6, r2, (double)dt2 / 1e6);
}

/* A peer at an address nobody answers: the batch ends at its deadline with -ETIMEDOUT. */
static void t_deadline(void)
{
	char buf[4096], addr[96];
	const char *dot = strrchr(addr2, '.');
	struct kvfs_xfer_op op = {.dir = KVFS_XFER_READ, .node = 78, .buf = buf, .len = 4096};
	uint64_t t0, dt;
	int r;

	/* same subnet, nobody there: ARP never answers */
	CHECK(dot);
	snprintf(addr, sizeof(addr), "%.*s.213:7000", (int)(dot - addr2), addr2);
	CHECK_EQ(kvfs_xfer_peer_set(A.eng, 78, 0, addr, KVFS_XFER_VERBS), 0);
	t0 = now_ns();
	r = kvfs_xfer_run(A.eng, &op, 1, SEC);
	dt = now_ns() - t0;
	CHECK(r == -ETIMEDOUT || r == -EHOSTUNREACH);
	CHECK(dt < 3 * SEC);
	PASS("(%d after %.0f ms)", r, (double)dt / 1e6);
}

int main(void)
{
	const char *one = getenv("RDMA_VM_ADDR");
	int r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	addr1 = getenv("RDMA_VM_NODE1_ADDR");
	addr2 = getenv("RDMA_VM_NODE2_ADDR");
	if (!addr1 || !addr2)
		addr1 = addr2 = one;
	if (!addr1) {
		printf("SKIP: no RDMA_VM_ADDR / RDMA_VM_NODE{1,2}_ADDR (run in scripts/rdma-vm.sh)\n");
		return 77;
	}
	r = node_start(&A, NODE_A, INC_A, addr1, 0, NULL, 0);
	if (r < 0) {
		printf("SKIP: no verbs engine on %s: %s\n", addr1, strerror(-r));
		return 77;
	}
	r = node_start(&B, NODE_B, INC_B, addr2, 0, NULL, 0);
	if (r < 0) {
		printf("not ok - engine B on %s: %s\n", addr2, strerror(-r));
		return 1;
	}
	printf("# A %s, B %s\n", A.addr, B.addr);
	if (kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_VERBS) < 0 ||
	    kvfs_xfer_peer_set(B.eng, NODE_A, INC_A, A.addr, KVFS_XFER_VERBS) < 0) {
		printf("not ok - peer_set\n");
		return 1;
	}

	t_write_read();
	t_contig64();
	t_scatter();
	t_per_op();
	t_bounds();
	t_incarnation();
	t_refused();
	t_peer_down();
	t_killed_peer();
	t_deadline();
	t_write_read(); /* everything still works after all that */

	node_stop(&A);
	node_stop(&B);
	printf("# %d failed\n", failures);
	return failures ? 1 : 0;
}
