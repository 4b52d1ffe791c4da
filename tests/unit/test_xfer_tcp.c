/* SPDX-License-Identifier: MIT */
/*
 * test_xfer_tcp.c - Check runner for the `tcp` backend of rdma/: two engines in one process,
 * each serving its own arena on a free port of 127.0.0.1, talking to each other.
 *
 * Covers READ and WRITE batches with data checked against the peer's arena (random patterns,
 * random offsets and lengths), merging (64 contiguous pages -> 1 transfer), scattered batches,
 * per-op errors decided by the remote side (-EINVAL out of range, -ESTALE wrong incarnation),
 * the cluster token, the peer table (unknown peer, peer_down with ops in flight, back up),
 * deadlines against servers that never answer (a raw socket that accepts and stays silent, a
 * fake server that handshakes and then ignores requests, a real server SIGSTOPped in a child
 * process), hostile clients that must be disconnected while the server keeps serving, and
 * concurrent submitters.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "check_main.h"
#include "pool.h"
#include "wire.h"
#include "xfer.h"

#define KiB	   (1024ull)
#define MiB	   (1024ull * KiB)
#define ARENA_SIZE (128 * MiB)
#define NODE_A	   1u
#define NODE_B	   2u
#define INC_A	   11u
#define INC_B	   22u
#define SEC	   1000000000ull

struct node {
	struct kvfs_arena *arena;
	struct kvfs_xfer_engine *eng;
	char addr[64];
};

static struct node A, B;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(void *buf, size_t len)
{
	uint64_t *p = buf;

	for (size_t i = 0; i < len / 8; i++)
		p[i] = rnd();
	for (size_t i = len / 8 * 8; i < len; i++)
		((unsigned char *)buf)[i] = (unsigned char)rnd();
}

static void node_start(struct node *n, uint32_t id, uint32_t inc, const char *token,
		       uint64_t arena_size)
{
	struct kvfs_xfer_config cfg = {.self_node = id,
				       .self_incarnation = inc,
				       .default_timeout_ns = 10 * SEC,
				       .token = token,
				       .listen_addr = "127.0.0.1:0"};

	memset(n, 0, sizeof(*n));
	if (arena_size) {
		ck_assert_int_eq(kvfs_arena_create(arena_size, 0, &n->arena), 0);
		fill_random(kvfs_arena_base(n->arena), arena_size);
	}
	cfg.arena = n->arena;
	ck_assert_int_eq(kvfs_xfer_engine_create(&cfg, &n->eng), 0);
	ck_assert_int_eq(kvfs_xfer_listen_addr(n->eng, n->addr, sizeof(n->addr)), 0);
	ck_assert(strncmp(n->addr, "127.0.0.1:", 10) == 0);
	ck_assert_str_ne(n->addr, "127.0.0.1:0");
}

static void node_stop(struct node *n)
{
	kvfs_xfer_engine_destroy(n->eng);
	kvfs_arena_destroy(n->arena);
	memset(n, 0, sizeof(*n));
}

static void setup(void)
{
	node_start(&A, NODE_A, INC_A, NULL, ARENA_SIZE);
	node_start(&B, NODE_B, INC_B, NULL, ARENA_SIZE);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_peer_set(B.eng, NODE_A, INC_A, A.addr, KVFS_XFER_TCP), 0);
}

static void teardown(void)
{
	node_stop(&A);
	node_stop(&B);
}

static struct kvfs_xfer_counters tcp_counters(struct kvfs_xfer_engine *e)
{
	struct kvfs_xfer_counters c;

	kvfs_xfer_get_counters(e, KVFS_XFER_TCP, &c);
	return c;
}

static struct kvfs_xfer_op op(uint8_t dir, uint32_t node, uint64_t off, void *buf, uint32_t len)
{
	return (struct kvfs_xfer_op){.dir = dir,
				     .node = node,
				     .incarnation = 0,
				     .remote_off = off,
				     .buf = buf,
				     .len = len,
				     .result = 12345};
}

static unsigned char *arena_at(struct node *n, uint64_t off)
{
	return (unsigned char *)kvfs_arena_base(n->arena) + off;
}

/* A client socket to @addr ("127.0.0.1:port"). */
static int raw_connect(const char *addr)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(addr, ':');
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 5};

	ck_assert_int_ge(fd, 0);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Send a hello for @peer_node with @token, return the welcome's status. */
static int raw_hello(int fd, uint32_t peer_node, const char *token)
{
	struct kvfs_wire_hello h = {.magic = KVFS_WIRE_MAGIC,
				    .version = KVFS_WIRE_VERSION,
				    .node = 99,
				    .incarnation = 1,
				    .peer_node = peer_node};
	struct kvfs_wire_welcome w;

	if (token) {
		h.token_len = (uint16_t)strlen(token);
		memcpy(h.token, token, h.token_len);
	}
	kvfs_wire_hello_swap(&h);
	ck_assert_int_eq(send(fd, &h, sizeof(h), MSG_NOSIGNAL), (ssize_t)sizeof(h));
	ck_assert_int_eq(recv(fd, &w, sizeof(w), MSG_WAITALL), (ssize_t)sizeof(w));
	kvfs_wire_welcome_swap(&w);
	ck_assert_uint_eq(w.magic, KVFS_WIRE_MAGIC);
	return w.status;
}

/* True when the server closed @fd: recv sees EOF or a reset (not a timeout). */
static bool raw_closed(int fd)
{
	char buf[256];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
}

static void raw_send_req(int fd, uint8_t opc, uint64_t id, uint64_t off, uint32_t len)
{
	struct kvfs_wire_req q = {
		.magic = KVFS_WIRE_REQ_MAGIC, .op = opc, .id = id, .off = off, .len = len};

	kvfs_wire_req_swap(&q);
	ck_assert_int_eq(send(fd, &q, sizeof(q), MSG_NOSIGNAL), (ssize_t)sizeof(q));
}

/* ------------------------------------------------------------------------------------------ */

START_TEST(read_contiguous_merged)
{
	unsigned char *buf = malloc(64 * MiB);
	struct kvfs_xfer_op ops[65];
	struct kvfs_xfer_counters c;

	/* 64 contiguous pages of 64 KiB, submitted in reverse: one transfer. */
	for (int i = 0; i < 64; i++) {
		uint64_t k = (uint64_t)(63 - i);

		ops[i] = op(KVFS_XFER_READ, NODE_B, 5 * MiB + k * 64 * KiB, buf + k * 64 * KiB,
			    64 * KiB);
	}
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 64, 0), 0);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(ops[i].result, 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 5 * MiB), 4 * MiB), 0);
	c = tcp_counters(A.eng);
	ck_assert_uint_eq(c.ops, 64);
	ck_assert_uint_eq(c.transfers, 1);
	ck_assert_uint_eq(c.bytes, 4 * MiB);
	ck_assert_uint_eq(c.errors, 0);

	/* 64 pages of 1 MiB: 64 MiB is exactly the largest transfer, still one. */
	memset(buf, 0, 64 * MiB);
	for (int i = 0; i < 64; i++)
		ops[i] =
			op(KVFS_XFER_READ, NODE_B, (uint64_t)i * MiB, buf + (uint64_t)i * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 64, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 0), 64 * MiB), 0);
	ck_assert_uint_eq(tcp_counters(A.eng).transfers, 2);

	/* 65 pages of 1 MiB: above the max, two transfers. The 65th lands in a buffer of its
	 * own: two ops of one batch writing the same local bytes complete in no defined order
	 * (the transfers may run on different connections). */
	{
		char *last = malloc(MiB);

		ck_assert_ptr_nonnull(last);
		for (int i = 0; i < 64; i++)
			ops[i] = op(KVFS_XFER_READ, NODE_B, (uint64_t)i * MiB,
				    buf + (uint64_t)i * MiB, MiB);
		ops[64] = op(KVFS_XFER_READ, NODE_B, 64 * MiB, last, MiB);
		ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 65, 0), 0);
		ck_assert_uint_eq(tcp_counters(A.eng).transfers, 4);
		ck_assert_int_eq(memcmp(buf, arena_at(&B, 0), 64 * MiB), 0);
		ck_assert_int_eq(memcmp(last, arena_at(&B, 64 * MiB), MiB), 0);
		free(last);
	}
	/* Local routing is untouched. */
	kvfs_xfer_get_counters(A.eng, KVFS_XFER_LOCAL, &c);
	ck_assert_uint_eq(c.ops, 0);
	free(buf);
}
END_TEST

START_TEST(write_scattered_then_read)
{
	unsigned char *src = malloc(32 * MiB), *dst = calloc(1, 32 * MiB);
	struct kvfs_xfer_op ops[32];
	struct kvfs_xfer_counters c;

	fill_random(src, 32 * MiB);
	/* Every other remote page: 32 separate transfers. */
	for (int i = 0; i < 32; i++)
		ops[i] = op(KVFS_XFER_WRITE, NODE_B, (uint64_t)(2 * i + 1) * MiB,
			    src + (uint64_t)i * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 32, 0), 0);
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(memcmp(arena_at(&B, (uint64_t)(2 * i + 1) * MiB),
					src + (uint64_t)i * MiB, MiB),
				 0);
	c = tcp_counters(A.eng);
	ck_assert_uint_eq(c.transfers, 32);
	ck_assert_uint_eq(c.bytes, 32 * MiB);

	/* Read them back scattered locally: every other local MiB of a 32 MiB buffer. */
	for (int i = 0; i < 16; i++)
		ops[i] = op(KVFS_XFER_READ, NODE_B, (uint64_t)(2 * i + 1) * MiB,
			    dst + (uint64_t)(2 * i) * MiB, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 16, 0), 0);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(
			memcmp(dst + (uint64_t)(2 * i) * MiB, src + (uint64_t)i * MiB, MiB), 0);
	ck_assert_uint_eq(tcp_counters(A.eng).transfers, 48);

	/* B writes into A the other way round: both servers serve. */
	ops[0] = op(KVFS_XFER_WRITE, NODE_A, 7 * MiB, src, 3 * MiB);
	ck_assert_int_eq(kvfs_xfer_run(B.eng, ops, 1, 0), 0);
	ck_assert_int_eq(memcmp(arena_at(&A, 7 * MiB), src, 3 * MiB), 0);
	free(src);
	free(dst);
}
END_TEST

START_TEST(random_integrity)
{
	enum { N = 48 };
	unsigned char *local = malloc(N * 256 * KiB), *check = malloc(N * 256 * KiB);
	struct kvfs_xfer_op ops[N];

	for (int round = 0; round < 20; round++) {
		uint64_t off = 0;

		/* Random lengths and remote gaps (some zero: those merge), mixed directions. */
		fill_random(local, N * 256 * KiB);
		for (int i = 0; i < N; i++) {
			uint32_t len = (uint32_t)(1 + rnd() % (256 * KiB));
			uint8_t dir = round % 2 ? KVFS_XFER_WRITE : KVFS_XFER_READ;

			off += rnd() % 3 == 0 ? 0 : rnd() % (512 * KiB);
			ops[i] = op(dir, NODE_B, off, local + (uint64_t)i * 256 * KiB, len);
			off += len;
		}
		ck_assert_uint_lt(off, ARENA_SIZE);
		ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, N, 0), 0);
		for (int i = 0; i < N; i++) {
			ck_assert_int_eq(ops[i].result, 0);
			ck_assert_int_eq(
				memcmp(ops[i].buf, arena_at(&B, ops[i].remote_off), ops[i].len), 0);
		}
		/* What was written reads back the same through the engine. */
		if (round % 2) {
			for (int i = 0; i < N; i++) {
				ops[i].dir = KVFS_XFER_READ;
				ops[i].buf = check + (uint64_t)i * 256 * KiB;
			}
			ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, N, 0), 0);
			for (int i = 0; i < N; i++)
				ck_assert_int_eq(memcmp(check + (uint64_t)i * 256 * KiB,
							local + (uint64_t)i * 256 * KiB,
							ops[i].len),
						 0);
		}
	}
	ck_assert_uint_eq(tcp_counters(A.eng).errors, 0);
	free(local);
	free(check);
}
END_TEST

START_TEST(remote_out_of_range)
{
	unsigned char buf[8192], before[4096];
	struct kvfs_xfer_op ops[6];
	struct kvfs_xfer_counters c;

	memcpy(before, arena_at(&B, ARENA_SIZE - 4096), 4096);
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ops[1] = op(KVFS_XFER_READ, NODE_B, ARENA_SIZE, buf, 1);		  /* just past */
	ops[2] = op(KVFS_XFER_WRITE, NODE_B, ARENA_SIZE - 4096, buf, 8192);	  /* straddles */
	ops[3] = op(KVFS_XFER_READ, NODE_B, ARENA_SIZE - 4096, buf + 4096, 4096); /* fine */
	ops[4] = op(KVFS_XFER_READ, NODE_B, UINT64_MAX - 100, buf, 100);	  /* far away */
	ops[5] = op(KVFS_XFER_WRITE, NODE_B, 1ull << 40, buf, 8192);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 6, 0), -EINVAL);
	ck_assert_int_eq(ops[0].result, 0);
	ck_assert_int_eq(ops[1].result, -EINVAL);
	ck_assert_int_eq(ops[2].result, -EINVAL);
	ck_assert_int_eq(ops[3].result, 0);
	ck_assert_int_eq(ops[4].result, -EINVAL);
	ck_assert_int_eq(ops[5].result, -EINVAL);
	/* The refused write changed nothing; the connection still works. */
	ck_assert_int_eq(memcmp(arena_at(&B, ARENA_SIZE - 4096), before, 4096), 0);
	ck_assert_int_eq(memcmp(buf + 4096, before, 4096), 0);
	c = tcp_counters(A.eng);
	ck_assert_uint_eq(c.errors, 4);
	ops[0] = op(KVFS_XFER_READ, NODE_B, 12345, buf, 8192);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 12345), 8192), 0);
}
END_TEST

START_TEST(incarnations)
{
	unsigned char buf[4096];
	struct kvfs_xfer_op ops[3];

	/* The table knows B's incarnation: another one fails at submit. */
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ops[0].incarnation = INC_B + 1;
	ops[1] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ops[1].incarnation = INC_B;
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 2, 0), -ESTALE);
	ck_assert_int_eq(ops[0].result, -ESTALE);
	ck_assert_int_eq(ops[1].result, 0);

	/* Incarnation unknown to the table: B itself refuses the wrong one. */
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_B, 0, B.addr, KVFS_XFER_TCP), 0);
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ops[0].incarnation = INC_B + 1;
	ops[1] = op(KVFS_XFER_WRITE, NODE_B, 8192, buf, 4096);
	ops[1].incarnation = INC_B - 1;
	ops[2] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ops[2].incarnation = INC_B;
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 3, 0), -ESTALE);
	ck_assert_int_eq(ops[0].result, -ESTALE);
	ck_assert_int_eq(ops[1].result, -ESTALE);
	ck_assert_int_eq(ops[2].result, 0);

	/* The table names an incarnation B does not have (B restarted): the handshake says no. */
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B + 5, B.addr, KVFS_XFER_TCP), 0);
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, 4096);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), -ESTALE);
	/* Back to the truth: works again. */
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), 0);
}
END_TEST

START_TEST(peer_table)
{
	unsigned char buf[4096];
	struct kvfs_xfer_op o = op(KVFS_XFER_READ, 77, 0, buf, 4096);
	char small[4];
	int lfd;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	char addr[64];

	/* Unknown node. */
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 0), -EHOSTUNREACH);
	/* Bad arguments. */
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_A, 1, B.addr, KVFS_XFER_TCP), -EINVAL);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 77, 1, "nonsense", KVFS_XFER_TCP), -EINVAL);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 77, 1, "127.0.0.1:99999", KVFS_XFER_TCP),
			 -EINVAL);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 77, 1, B.addr, KVFS_XFER_LOCAL), -EINVAL);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 77, 1, B.addr, KVFS_XFER_VERBS), -EOPNOTSUPP);
	ck_assert_int_eq(kvfs_xfer_peer_down(A.eng, 77), -ENOENT);
	ck_assert_int_eq(kvfs_xfer_listen_addr(A.eng, small, sizeof(small)), -ENOSPC);

	/* A port nobody listens on (bound, never listening): refused at once, not a timeout. */
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 77, 1, addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 5 * SEC), -EHOSTUNREACH);
	close(lfd);

	/* Down, then up again. */
	o.node = NODE_B;
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 0), 0);
	ck_assert_int_eq(kvfs_xfer_peer_down(A.eng, NODE_B), 0);
	o.result = 1;
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 0), -ESTALE);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, NODE_B, INC_B, B.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 0), 4096), 0);
}
END_TEST

START_TEST(token)
{
	struct node S, C1, C2, C3;
	unsigned char buf[4096];
	struct kvfs_xfer_op o = op(KVFS_XFER_READ, 50, 4096, buf, 4096);
	int fd;

	node_start(&S, 50, 5, "cluster-secret", 16 * MiB);
	node_start(&C1, 51, 1, "cluster-secret", 0);
	node_start(&C2, 52, 1, "cluster-secreT", 0);
	node_start(&C3, 53, 1, NULL, 0);
	ck_assert_int_eq(kvfs_xfer_peer_set(C1.eng, 50, 5, S.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_peer_set(C2.eng, 50, 5, S.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_peer_set(C3.eng, 50, 5, S.addr, KVFS_XFER_TCP), 0);
	ck_assert_int_eq(kvfs_xfer_run(C1.eng, &o, 1, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&S, 4096), 4096), 0);
	ck_assert_int_eq(kvfs_xfer_run(C2.eng, &o, 1, 0), -EACCES);
	ck_assert_int_eq(kvfs_xfer_run(C3.eng, &o, 1, 0), -EACCES);
	o.dir = KVFS_XFER_WRITE;
	ck_assert_int_eq(kvfs_xfer_run(C2.eng, &o, 1, 0), -EACCES);

	/* Raw: a wrong token is answered -EACCES and the connection closed. */
	fd = raw_connect(S.addr);
	ck_assert_int_eq(raw_hello(fd, 50, "nope"), -EACCES);
	ck_assert(raw_closed(fd));
	close(fd);
	/* A token longer than the wire allows is refused at create. */
	{
		char longtok[200];
		struct kvfs_xfer_config cfg = {.self_node = 9, .token = longtok};
		struct kvfs_xfer_engine *e = NULL;

		memset(longtok, 'x', sizeof(longtok) - 1);
		longtok[sizeof(longtok) - 1] = '\0';
		ck_assert_int_eq(kvfs_xfer_engine_create(&cfg, &e), -EINVAL);
	}
	/* The good client still works. */
	o.dir = KVFS_XFER_READ;
	ck_assert_int_eq(kvfs_xfer_run(C1.eng, &o, 1, 0), 0);
	node_stop(&C3);
	node_stop(&C2);
	node_stop(&C1);
	node_stop(&S);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* A fake server: accepts, optionally handshakes as node @node, then reads and ignores. */

struct fake {
	int lfd;
	char addr[64];
	bool handshake;
	uint32_t node;
	_Atomic bool stop;
	pthread_t thread;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd pfd[9];
	int n = 1;

	pfd[0] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
	while (!atomic_load(&f->stop)) {
		if (poll(pfd, (nfds_t)n, 20) <= 0)
			continue;
		if ((pfd[0].revents & POLLIN) && n < 9) {
			int fd = accept(f->lfd, NULL, NULL);

			if (fd >= 0 && f->handshake) {
				struct kvfs_wire_hello h;
				struct kvfs_wire_welcome w = {.magic = KVFS_WIRE_MAGIC,
							      .version = KVFS_WIRE_VERSION,
							      .node = f->node,
							      .incarnation = 1,
							      .arena_size = ARENA_SIZE};

				if (recv(fd, &h, sizeof(h), MSG_WAITALL) == (ssize_t)sizeof(h)) {
					kvfs_wire_welcome_swap(&w);
					send(fd, &w, sizeof(w), MSG_NOSIGNAL);
				}
			}
			if (fd >= 0)
				pfd[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
		}
		for (int i = 1; i < n; i++) {
			char junk[65536];

			if (pfd[i].revents & POLLIN)
				(void)!recv(pfd[i].fd, junk, sizeof(junk), MSG_DONTWAIT);
		}
	}
	for (int i = 1; i < n; i++)
		close(pfd[i].fd);
	return NULL;
}

static void fake_start(struct fake *f, bool handshake, uint32_t node)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->handshake = handshake;
	f->node = node;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->lfd, 16), 0);
	ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &len), 0);
	snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

START_TEST(deadline_silent_accept)
{
	struct fake f;
	unsigned char *buf = malloc(4 * MiB);
	struct kvfs_xfer_op ops[4];
	uint64_t t0, dt;

	/* Accepts, never says a word: the handshake hangs, the deadline does not. */
	fake_start(&f, false, 60);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 60, 1, f.addr, KVFS_XFER_TCP), 0);
	for (int i = 0; i < 4; i++)
		ops[i] = op(i % 2 ? KVFS_XFER_WRITE : KVFS_XFER_READ, 60, (uint64_t)i * 2 * MiB,
			    buf + (uint64_t)i * MiB, MiB);
	t0 = now_ns();
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 4, 300000000ull), -ETIMEDOUT);
	dt = now_ns() - t0;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(ops[i].result, -ETIMEDOUT);
	ck_assert_uint_ge(dt, 290000000ull);
	ck_assert_uint_lt(dt, 2 * SEC);
	/* Others are not held up. */
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), 0);
	fake_stop(&f);
	free(buf);
}
END_TEST

START_TEST(deadline_silent_server)
{
	struct fake f;
	unsigned char *buf = malloc(64 * MiB);
	struct kvfs_xfer_op ops[8];
	struct kvfs_xfer_batch *b;
	uint64_t t0, dt;

	/* Handshakes, then never answers a request (big writes fill its socket too). */
	fake_start(&f, true, 61);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 61, 1, f.addr, KVFS_XFER_TCP), 0);
	for (int i = 0; i < 8; i++)
		ops[i] = op(i < 4 ? KVFS_XFER_READ : KVFS_XFER_WRITE, 61, (uint64_t)i * 16 * MiB,
			    buf + (uint64_t)i * 8 * MiB, 8 * MiB);
	t0 = now_ns();
	ck_assert_int_eq(kvfs_xfer_submit(A.eng, ops, 8, 400000000ull, &b), 0);
	ck_assert_int_eq(kvfs_xfer_poll(b), 0);
	ck_assert_int_eq(kvfs_xfer_wait(b), -ETIMEDOUT);
	dt = now_ns() - t0;
	kvfs_xfer_batch_put(b);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(ops[i].result, -ETIMEDOUT);
	ck_assert_uint_lt(dt, 2 * SEC);
	/* Again on the reconnected connection: same result, same promptness. */
	t0 = now_ns();
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 2, 200000000ull), -ETIMEDOUT);
	ck_assert_uint_lt(now_ns() - t0, 2 * SEC);
	ck_assert_uint_eq(tcp_counters(A.eng).errors, 10);
	fake_stop(&f);
	free(buf);
}
END_TEST

START_TEST(peer_down_in_flight)
{
	struct fake f;
	unsigned char *buf = malloc(8 * MiB);
	struct kvfs_xfer_op ops[8], good;
	struct kvfs_xfer_batch *b;
	uint64_t t0, dt;

	fake_start(&f, true, 62);
	ck_assert_int_eq(kvfs_xfer_peer_set(A.eng, 62, 1, f.addr, KVFS_XFER_TCP), 0);
	for (int i = 0; i < 8; i++)
		ops[i] = op(i % 3 ? KVFS_XFER_READ : KVFS_XFER_WRITE, 62, (uint64_t)i * 2 * MiB,
			    buf + (uint64_t)i * MiB, MiB);
	/* A long deadline: only peer_down can end this quickly. */
	ck_assert_int_eq(kvfs_xfer_submit(A.eng, ops, 8, 30 * SEC, &b), 0);
	usleep(100000);
	ck_assert_int_eq(kvfs_xfer_poll(b), 0);
	t0 = now_ns();
	ck_assert_int_eq(kvfs_xfer_peer_down(A.eng, 62), 0);
	ck_assert_int_eq(kvfs_xfer_wait(b), -ESTALE);
	dt = now_ns() - t0;
	kvfs_xfer_batch_put(b);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(ops[i].result, -ESTALE);
	ck_assert_uint_lt(dt, SEC / 2);
	/* Later ops fail at once; another peer is unaffected. */
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), -ESTALE);
	good = op(KVFS_XFER_READ, NODE_B, 0, buf, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &good, 1, 0), 0);
	fake_stop(&f);
	free(buf);
}
END_TEST

/* A real server in a child process, stopped with SIGSTOP: deadline, then recovery. */
START_TEST(deadline_stopped_process)
{
	int pfd[2];
	pid_t pid;
	char addr[64] = {0};
	struct node C;
	unsigned char *buf = malloc(MiB);
	struct kvfs_xfer_op o;
	uint64_t t0;
	int status;

	/* Fork before this process has any thread. */
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct node S;

		close(pfd[0]);
		node_start(&S, 70, 7, NULL, 16 * MiB);
		memset(kvfs_arena_base(S.arena), 0x5a, 16 * MiB);
		if (write(pfd[1], S.addr, sizeof(S.addr)) != (ssize_t)sizeof(S.addr))
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	ck_assert_int_eq(read(pfd[0], addr, sizeof(addr)), (ssize_t)sizeof(addr));
	close(pfd[0]);

	node_start(&C, 71, 1, NULL, 0);
	ck_assert_int_eq(kvfs_xfer_peer_set(C.eng, 70, 7, addr, KVFS_XFER_TCP), 0);
	o = op(KVFS_XFER_READ, 70, 0, buf, MiB);
	ck_assert_int_eq(kvfs_xfer_run(C.eng, &o, 1, 0), 0);
	ck_assert_int_eq(buf[MiB - 1], 0x5a);

	kill(pid, SIGSTOP);
	t0 = now_ns();
	ck_assert_int_eq(kvfs_xfer_run(C.eng, &o, 1, 500000000ull), -ETIMEDOUT);
	ck_assert_uint_lt(now_ns() - t0, 2 * SEC);

	kill(pid, SIGCONT);
	memset(buf, 0, MiB);
	ck_assert_int_eq(kvfs_xfer_run(C.eng, &o, 1, 0), 0);
	ck_assert_int_eq(buf[0], 0x5a);

	/* kill -9: the connection resets, ops fail fast rather than at the deadline. */
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	t0 = now_ns();
	ck_assert_int_lt(kvfs_xfer_run(C.eng, &o, 1, 5 * SEC), 0);
	ck_assert_uint_lt(now_ns() - t0, 2 * SEC);
	node_stop(&C);
	free(buf);
}
END_TEST

START_TEST(hostile_clients)
{
	unsigned char buf[4096];
	struct kvfs_xfer_op o = op(KVFS_XFER_READ, NODE_B, 4096, buf, 4096);
	struct kvfs_wire_rep p;
	char junk[200];
	int fd;

	/* Garbage instead of a hello (longer than one, so it is read whole). */
	memset(junk, 'z', sizeof(junk));
	memcpy(junk, "GET / HTTP/1.1\r\n", 16);
	fd = raw_connect(B.addr);
	ck_assert_int_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
	ck_assert(raw_closed(fd));
	close(fd);

	/* A short hello, then the client leaves. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(send(fd, "KVFS", 4, MSG_NOSIGNAL), 4);
	shutdown(fd, SHUT_WR);
	ck_assert(raw_closed(fd));
	close(fd);

	/* Good hello, then garbage frames. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	ck_assert_int_eq(send(fd,
			      "\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef"
			      "\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef\xde\xad\xbe\xef",
			      32, MSG_NOSIGNAL),
			 32);
	ck_assert(raw_closed(fd));
	close(fd);

	/* A huge length. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	raw_send_req(fd, KVFS_WIRE_READ, 1, 0, KVFS_WIRE_MAX_XFER + 1);
	ck_assert(raw_closed(fd));
	close(fd);

	/* A zero length, an unknown op. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	raw_send_req(fd, KVFS_WIRE_READ, 1, 0, 0);
	ck_assert(raw_closed(fd));
	close(fd);
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	raw_send_req(fd, 7, 1, 0, 16);
	ck_assert(raw_closed(fd));
	close(fd);

	/* A short request frame, then the client leaves. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	ck_assert_int_eq(send(fd, "\x4b\x51\x00\x00", 4, MSG_NOSIGNAL), 4);
	shutdown(fd, SHUT_WR);
	ck_assert(raw_closed(fd));
	close(fd);

	/* A hello for another node. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_A, NULL), -ESTALE);
	ck_assert(raw_closed(fd));
	close(fd);

	/* Out-of-range offsets are answered -EINVAL, the connection lives, and a good read on it
	 * after them works; a WRITE past the end has its payload drained, not applied. */
	fd = raw_connect(B.addr);
	ck_assert_int_eq(raw_hello(fd, NODE_B, NULL), 0);
	raw_send_req(fd, KVFS_WIRE_READ, 1, ARENA_SIZE, 16);
	raw_send_req(fd, KVFS_WIRE_READ, 2, UINT64_MAX - 8, 16);
	raw_send_req(fd, KVFS_WIRE_WRITE, 3, ARENA_SIZE - 8, 16);
	ck_assert_int_eq(send(fd, "0123456789abcdef", 16, MSG_NOSIGNAL), 16);
	raw_send_req(fd, KVFS_WIRE_READ, 4, 100, 16);
	for (uint64_t id = 1; id <= 4; id++) {
		ck_assert_int_eq(recv(fd, &p, sizeof(p), MSG_WAITALL), (ssize_t)sizeof(p));
		kvfs_wire_rep_swap(&p);
		ck_assert_uint_eq(p.id, id);
		ck_assert_int_eq(p.status, id == 4 ? 0 : -EINVAL);
	}
	ck_assert_uint_eq(p.len, 16);
	ck_assert_int_eq(recv(fd, buf, 16, MSG_WAITALL), 16);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 100), 16), 0);
	close(fd);

	/* The engine client never noticed any of it. */
	ck_assert_int_eq(kvfs_xfer_run(A.eng, &o, 1, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 4096), 4096), 0);
}
END_TEST

#define NTHREADS 4
#define ROUNDS	 100

static _Atomic int thread_errors;

static void *worker_main(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	uint64_t region = id * 16 * MiB; /* disjoint regions of B's arena */
	unsigned char *src = malloc(8 * MiB), *dst = malloc(8 * MiB);
	struct kvfs_xfer_op ops[16];

	for (int r = 0; r < ROUNDS; r++) {
		memset(src, (int)(id * 31 + (uint64_t)r), 8 * MiB);
		/* 16 half-MiB writes, scattered remotely (every other slot). */
		for (int i = 0; i < 16; i++)
			ops[i] = op(KVFS_XFER_WRITE, NODE_B, region + (uint64_t)i * MiB,
				    src + (uint64_t)i * 512 * KiB, 512 * KiB);
		if (kvfs_xfer_run(A.eng, ops, 16, 0) != 0)
			thread_errors++;
		for (int i = 0; i < 16; i++)
			ops[i] = op(KVFS_XFER_READ, NODE_B, region + (uint64_t)i * MiB,
				    dst + (uint64_t)i * 512 * KiB, 512 * KiB);
		if (kvfs_xfer_run(A.eng, ops, 16, 0) != 0 || memcmp(src, dst, 8 * MiB) != 0)
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
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker_main, (void *)i), 0);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(thread_errors, 0);
	c = tcp_counters(A.eng);
	ck_assert_uint_eq(c.ops, NTHREADS * ROUNDS * 32);
	ck_assert_uint_eq(c.transfers, NTHREADS * ROUNDS * 32);
	ck_assert_uint_eq(c.bytes, NTHREADS * ROUNDS * 16 * MiB);
	ck_assert_uint_eq(c.errors, 0);
}
END_TEST

/* Many short deadlines racing with replies: results are 0 or -ETIMEDOUT, nothing leaks. */
START_TEST(deadline_races)
{
	unsigned char *buf = malloc(16 * MiB);
	struct kvfs_xfer_op ops[16];
	int ok = 0, timedout = 0;

	for (int r = 0; r < 200; r++) {
		for (int i = 0; i < 16; i++)
			ops[i] = op(i % 2 ? KVFS_XFER_WRITE : KVFS_XFER_READ, NODE_B,
				    (uint64_t)i * 2 * MiB, buf + (uint64_t)i * MiB, MiB);
		kvfs_xfer_run(A.eng, ops, 16, (uint64_t)(50000 + (r % 20) * 100000));
		for (int i = 0; i < 16; i++) {
			ck_assert(ops[i].result == 0 || ops[i].result == -ETIMEDOUT ||
				  ops[i].result == -EIO);
			ok += ops[i].result == 0;
			timedout += ops[i].result != 0;
		}
	}
	/* And after all that, a clean read. */
	ops[0] = op(KVFS_XFER_READ, NODE_B, 0, buf, MiB);
	ck_assert_int_eq(kvfs_xfer_run(A.eng, ops, 1, 0), 0);
	ck_assert_int_eq(memcmp(buf, arena_at(&B, 0), MiB), 0);
	ck_assert_int_gt(ok + timedout, 0);
	free(buf);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s = suite_create("xfer_tcp");
	TCase *tc = tcase_create("tcp");
	TCase *tp = tcase_create("process");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, read_contiguous_merged);
	tcase_add_test(tc, write_scattered_then_read);
	tcase_add_test(tc, random_integrity);
	tcase_add_test(tc, remote_out_of_range);
	tcase_add_test(tc, incarnations);
	tcase_add_test(tc, peer_table);
	tcase_add_test(tc, token);
	tcase_add_test(tc, deadline_silent_accept);
	tcase_add_test(tc, deadline_silent_server);
	tcase_add_test(tc, peer_down_in_flight);
	tcase_add_test(tc, hostile_clients);
	tcase_add_test(tc, concurrent_submitters);
	tcase_add_test(tc, deadline_races);
	suite_add_tcase(s, tc);

	/* No fixture: the test forks before it starts any thread. */
	tcase_set_timeout(tp, 60);
	tcase_add_test(tp, deadline_stopped_process);
	suite_add_tcase(s, tp);
	return s;
}
