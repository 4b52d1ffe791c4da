/* SPDX-License-Identifier: MIT */
/*
 * kvfs-bench.c - workloads shaped like kvfs's users, one subcommand each.
 *
 *   xfer   the transfer engine's raw tcp path: `--server ADDR:PORT` serves an arena (the peer
 *          side of a node), `--connect ADDR:PORT` drives READs (or WRITEs) of --size through
 *          the engine against it for --seconds and prints MB/s and ops/s, with a fixed number
 *          of operations in flight; `--merge-check` reads 64 contiguous pages in one batch and
 *          prints how many transfers the engine issued (expected 1) after checking the data.
 *   verbs  the verbs transport, merged posting vs one WR and one doorbell per page
 *          (KVFS_XFER_F_PER_OP), in one process: a server engine on --server-ip and two client
 *          engines on --client-ip read --pages pages of --page-size, contiguous and scattered,
 *          --runs times each, and print WRs, doorbells, completions and the median time per
 *          batch. Needs RDMA (run it in scripts/rdma-vm.sh; tests/rdma/bench.sh does).
 *
 * Subcommands live in one table (commands[] below); each parses its own options. Output is one
 * line of `key=value` pairs per result, easy to grep from scripts/bench.sh. Exit codes: 0 ok,
 * 1 a failure (the errno text is printed once), 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_meta.h"
#include "pool.h"
#include "xfer.h"
#include "util.h"

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

#define SERVER_NODE 1u
#define CLIENT_NODE 2u
#define NSEC	    1000000000ull

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

/* A size as kvfs_parse_size() reads it, and not zero (every size here is a count of bytes). */
static int parse_size(const char *s, uint64_t *ret)
{
	uint64_t v = 0;
	int r = kvfs_parse_size(s, &v);

	if (r == 0 && v == 0)
		r = -EINVAL;
	if (r == 0)
		*ret = v;
	return r;
}

/* The server's arena content: a pattern any client can recompute from the offset. */
static uint64_t pattern_word(uint64_t off)
{
	return (off / 8) * 0x9e3779b97f4a7c15ull ^ 0x6b76667362656e63ull;
}

static void pattern_fill(void *base, uint64_t size)
{
	uint64_t *w = base;

	for (uint64_t i = 0; i < size / 8; i++)
		w[i] = pattern_word(i * 8);
}

/* Compare @len bytes at @buf with the pattern at arena offset @off (both 8-byte aligned). */
static bool pattern_check(const void *buf, uint64_t off, uint64_t len)
{
	const uint64_t *w = buf;

	for (uint64_t i = 0; i < len / 8; i++)
		if (w[i] != pattern_word(off + i * 8))
			return false;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* xfer */

struct xfer_opts {
	const char *server;
	const char *connect;
	const char *token;
	uint64_t size;
	uint64_t arena;
	uint64_t span;
	double seconds;
	uint32_t depth;
	uint32_t batch;
	uint32_t conns;
	uint32_t node;
	bool write;
	bool merge_check;
	bool quiet;
};

static void xfer_usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs-bench xfer --server ADDR:PORT [--arena SIZE] [--token T]\n"
		"       kvfs-bench xfer --connect ADDR:PORT [--size SIZE] [--seconds N] [--depth N]\n"
		"                       [--batch N] [--span SIZE] [--conns N] [--write] [--token T]\n"
		"       kvfs-bench xfer --connect ADDR:PORT --merge-check [--size SIZE]\n"
		"  --server      serve an arena of --arena bytes (default 1G) as node 1 until SIGINT\n"
		"  --connect     run against such a server as node 2\n"
		"  --size        bytes per operation (default 1M); every op is its own transfer\n"
		"  --seconds     how long to run (default 5)\n"
		"  --depth       operations in flight (default: 32 MiB worth, at least 8)\n"
		"  --batch       operations per submitted batch (default depth/4)\n"
		"  --span        part of the server's arena to cycle over (default 256M)\n"
		"  --conns       tcp connections to the server (default 2)\n"
		"  --write       WRITE instead of READ (overwrites the server's pattern in the\n"
		"                span: later reads fail their data check until it restarts)\n"
		"  --merge-check read 64 contiguous pages of --size in one batch, check the data, and\n"
		"                print the transfers issued (exit 1 unless it is 1)\n");
}

static int engine_for(const struct xfer_opts *o, uint32_t node, const char *listen,
		      struct kvfs_arena *arena, struct kvfs_xfer_engine **ret)
{
	struct kvfs_xfer_config cfg = {.self_node = node,
				       .self_incarnation = 1,
				       .arena = arena,
				       .default_timeout_ns = 30 * NSEC,
				       .token = o->token,
				       .listen_addr = listen,
				       .tcp_conns = o->conns};

	return kvfs_xfer_engine_create(&cfg, ret);
}

static int xfer_serve(const struct xfer_opts *o)
{
	struct kvfs_arena *arena;
	struct kvfs_xfer_engine *eng;
	char addr[128];
	sigset_t set;
	int r, sig;

	r = kvfs_arena_create(o->arena, KVFS_ARENA_PREFAULT, &arena);
	if (r < 0) {
		fprintf(stderr, "kvfs-bench: arena of %" PRIu64 " bytes: %s\n", o->arena,
			strerror(-r));
		return EXIT_FAIL;
	}
	pattern_fill(kvfs_arena_base(arena), kvfs_arena_size(arena));

	/* Signals are taken by sigwait below, before any engine thread exists. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	r = engine_for(o, SERVER_NODE, o->server, arena, &eng);
	if (r < 0) {
		fprintf(stderr, "kvfs-bench: serve on %s: %s\n", o->server, strerror(-r));
		kvfs_arena_destroy(arena);
		return EXIT_FAIL;
	}
	kvfs_xfer_listen_addr(eng, addr, sizeof(addr));
	printf("listening=%s node=%u arena=%" PRIu64 "\n", addr, SERVER_NODE,
	       kvfs_arena_size(arena));
	fflush(stdout);
	sigwait(&set, &sig);
	kvfs_xfer_engine_destroy(eng);
	kvfs_arena_destroy(arena);
	return EXIT_OK;
}

static int xfer_connect_engine(const struct xfer_opts *o, struct kvfs_xfer_engine **ret)
{
	int r;

	r = engine_for(o, CLIENT_NODE, NULL, NULL, ret);
	if (r < 0) {
		fprintf(stderr, "kvfs-bench: engine: %s\n", strerror(-r));
		return r;
	}
	r = kvfs_xfer_peer_set(*ret, SERVER_NODE, 0, o->connect, KVFS_XFER_TCP);
	if (r < 0) {
		fprintf(stderr, "kvfs-bench: peer %s: %s\n", o->connect, strerror(-r));
		kvfs_xfer_engine_destroy(*ret);
	}
	return r;
}

static int xfer_merge_check(const struct xfer_opts *o)
{
	struct kvfs_xfer_engine *eng;
	struct kvfs_xfer_counters c;
	struct kvfs_xfer_op ops[64];
	char *buf;
	bool ok;
	int r;

	if (o->size * 64 > (64ull << 20) || o->size % 8) {
		fprintf(stderr, "kvfs-bench: --merge-check needs --size a multiple of 8, <= 1M\n");
		return EXIT_USAGE;
	}
	buf = malloc(o->size * 64);
	if (!buf || xfer_connect_engine(o, &eng) < 0) {
		free(buf);
		return EXIT_FAIL;
	}
	for (int i = 0; i < 64; i++)
		ops[i] = (struct kvfs_xfer_op){.dir = KVFS_XFER_READ,
					       .node = SERVER_NODE,
					       .remote_off = (uint64_t)i * o->size,
					       .buf = buf + (uint64_t)i * o->size,
					       .len = (uint32_t)o->size};
	r = kvfs_xfer_run(eng, ops, 64, 0);
	kvfs_xfer_get_counters(eng, KVFS_XFER_TCP, &c);
	ok = r == 0 && pattern_check(buf, 0, o->size * 64);
	printf("merge-check ops=%" PRIu64 " transfers=%" PRIu64 " bytes=%" PRIu64
	       " data=%s result=%s\n",
	       c.ops, c.transfers, c.bytes, ok ? "ok" : "BAD", r ? strerror(-r) : "ok");
	kvfs_xfer_engine_destroy(eng);
	free(buf);
	return ok && c.transfers == 1 ? EXIT_OK : EXIT_FAIL;
}

/* One batch slot of the throughput loop. */
struct slot {
	struct kvfs_xfer_op *ops;
	struct kvfs_xfer_batch *b;
};

static int xfer_throughput(const struct xfer_opts *o)
{
	uint32_t nslots = o->depth / o->batch;
	/* A page of gap after each op's buffer: local memory is never contiguous, so every op
	 * is its own transfer and the numbers are per transfer of --size. */
	uint64_t stride = o->size + 4096;
	struct kvfs_xfer_engine *eng;
	struct kvfs_xfer_counters c;
	struct slot *slots;
	struct kvfs_xfer_op *ops;
	uint64_t cursor = 0, t0, t1, done_ops = 0, done_bytes = 0, deadline;
	char *buf;
	int r, failed = 0;
	double secs;

	slots = calloc(nslots, sizeof(*slots));
	ops = calloc((size_t)nslots * o->batch, sizeof(*ops));
	buf = aligned_alloc(4096, (size_t)nslots * o->batch * stride);
	if (!slots || !ops || !buf) {
		fprintf(stderr, "kvfs-bench: %s\n", strerror(ENOMEM));
		free(slots);
		free(ops);
		free(buf);
		return EXIT_FAIL;
	}
	memset(buf, 0, (size_t)nslots * o->batch * stride);
	if (xfer_connect_engine(o, &eng) < 0) {
		free(slots);
		free(ops);
		free(buf);
		return EXIT_FAIL;
	}

	t0 = now_ns();
	deadline = t0 + (uint64_t)(o->seconds * (double)NSEC);
	for (uint32_t s = 0, k = 0; s < nslots; s++) {
		slots[s].ops = &ops[(size_t)s * o->batch];
		for (uint32_t i = 0; i < o->batch; i++, k++)
			slots[s].ops[i] = (struct kvfs_xfer_op){.dir = o->write ? KVFS_XFER_WRITE
										: KVFS_XFER_READ,
								.node = SERVER_NODE,
								.buf = buf + (uint64_t)k * stride,
								.len = (uint32_t)o->size};
	}
	/* Keep every slot in flight: reap the oldest, resubmit it, until time is up. */
	for (uint64_t n = 0; !failed; n++) {
		struct slot *sl = &slots[n % nslots];

		if (sl->b) {
			r = kvfs_xfer_wait(sl->b);
			kvfs_xfer_batch_put(sl->b);
			sl->b = NULL;
			if (r < 0) {
				failed = r;
				break;
			}
			done_ops += o->batch;
			done_bytes += (uint64_t)o->batch * o->size;
			if (now_ns() >= deadline)
				break;
		}
		for (uint32_t i = 0; i < o->batch; i++) {
			if (cursor + o->size > o->span)
				cursor = 0;
			sl->ops[i].remote_off = cursor;
			cursor += o->size;
		}
		failed = kvfs_xfer_submit(eng, sl->ops, o->batch, 0, &sl->b);
	}
	/* Drain what is still in flight (it counts: the clock runs until it is done). */
	for (uint32_t s = 0; s < nslots; s++) {
		if (!slots[s].b)
			continue;
		r = kvfs_xfer_wait(slots[s].b);
		kvfs_xfer_batch_put(slots[s].b);
		slots[s].b = NULL;
		if (r < 0 && !failed)
			failed = r;
		if (r == 0) {
			done_ops += o->batch;
			done_bytes += (uint64_t)o->batch * o->size;
		}
	}
	t1 = now_ns();
	kvfs_xfer_get_counters(eng, KVFS_XFER_TCP, &c);
	secs = (double)(t1 - t0) / (double)NSEC;
	if (!failed && !o->write && o->size % 8 == 0 &&
	    !pattern_check(buf, slots[0].ops[0].remote_off, o->size))
		failed = -EBADMSG;
	if (failed)
		fprintf(stderr, "kvfs-bench: xfer: %s\n",
			failed == -EBADMSG ? "data mismatch" : strerror(-failed));
	printf("xfer op=%s size=%" PRIu64 " depth=%u batch=%u conns=%u seconds=%.2f ops=%" PRIu64
	       " MBps=%.1f Gbps=%.2f ops_per_s=%.0f transfers=%" PRIu64 " errors=%" PRIu64 "\n",
	       o->write ? "write" : "read", o->size, o->depth, o->batch, o->conns ? o->conns : 2,
	       secs, done_ops, (double)done_bytes / secs / 1e6, (double)done_bytes * 8 / secs / 1e9,
	       (double)done_ops / secs, c.transfers, c.errors);
	kvfs_xfer_engine_destroy(eng);
	free(slots);
	free(ops);
	free(buf);
	return failed ? EXIT_FAIL : EXIT_OK;
}

static int cmd_xfer(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"server", required_argument, NULL, 's'}, {"connect", required_argument, NULL, 'c'},
		{"size", required_argument, NULL, 'S'},	  {"seconds", required_argument, NULL, 't'},
		{"depth", required_argument, NULL, 'd'},  {"batch", required_argument, NULL, 'b'},
		{"arena", required_argument, NULL, 'a'},  {"span", required_argument, NULL, 'p'},
		{"conns", required_argument, NULL, 'n'},  {"token", required_argument, NULL, 'T'},
		{"write", no_argument, NULL, 'w'},	  {"merge-check", no_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0},
	};
	struct xfer_opts o = {
		.size = 1 << 20, .arena = 1ull << 30, .span = 256ull << 20, .seconds = 5};
	uint64_t v = 0;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o.server = optarg;
			break;
		case 'c':
			o.connect = optarg;
			break;
		case 'S':
			if (parse_size(optarg, &o.size) < 0 || o.size > (64u << 20))
				goto bad;
			break;
		case 'a':
			if (parse_size(optarg, &o.arena) < 0)
				goto bad;
			break;
		case 'p':
			if (parse_size(optarg, &o.span) < 0)
				goto bad;
			break;
		case 't':
			o.seconds = strtod(optarg, NULL);
			if (!(o.seconds > 0))
				goto bad;
			break;
		case 'd':
		case 'b':
		case 'n':
			if (parse_size(optarg, &v) < 0 || v > 65536)
				goto bad;
			if (ch == 'd')
				o.depth = (uint32_t)v;
			else if (ch == 'b')
				o.batch = (uint32_t)v;
			else
				o.conns = (uint32_t)v;
			break;
		case 'T':
			o.token = optarg;
			break;
		case 'w':
			o.write = true;
			break;
		case 'm':
			o.merge_check = true;
			break;
		case 'h':
			xfer_usage(stdout);
			return EXIT_OK;
		default:
			goto bad;
		}
	}
	if (optind != argc || !o.server == !o.connect)
		goto bad;
	if (o.server)
		return xfer_serve(&o);
	if (o.merge_check)
		return xfer_merge_check(&o);
	if (!o.depth) {
		o.depth = (uint32_t)((32ull << 20) / o.size);
		if (o.depth < 8)
			o.depth = 8;
	}
	if (!o.batch)
		o.batch = o.depth >= 4 ? o.depth / 4 : 1;
	if (o.batch > o.depth || o.span < o.size)
		goto bad;
	o.depth -= o.depth % o.batch;
	return xfer_throughput(&o);

bad:
	xfer_usage(stderr);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------------------------------ */
/* verbs */

enum { PAT_CONTIG, PAT_SCATTER_REMOTE, PAT_SCATTER_LOCAL, NPATTERNS };

static const char *const pattern_names[NPATTERNS] = {"contig", "scatter-remote", "scatter-local"};

struct verbs_opts {
	const char *server_ip;
	const char *client_ip;
	uint64_t page_size;
	uint32_t pages;
	uint32_t runs;
};

static void verbs_usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs-bench verbs --server-ip IP --client-ip IP [--pages N] [--page-size SIZE]\n"
		"                        [--runs N]\n"
		"  --server-ip   address of the RDMA device serving the arena (node 1)\n"
		"  --client-ip   address of the RDMA device the clients use (may be the same)\n"
		"  --pages       pages per batch (default 64)\n"
		"  --page-size   bytes per page (default 64K)\n"
		"  --runs        timed batches per pattern and mode, interleaved (default 15)\n"
		"Patterns: contig (remote and local contiguous), scatter-remote (every other remote\n"
		"page), scatter-local (every other local page). Modes: merged, per-op. One line each:\n"
		"  verbs pattern=P mode=M pages=N page_size=S runs=R wrs=.. doorbells=.. completions=..\n"
		"  transfers=.. median_us=.. min_us=.. (counts per batch)\n");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int verbs_engine(uint32_t node, const char *ip, struct kvfs_arena *arena, uint32_t flags,
			struct kvfs_xfer_engine **ret)
{
	char listen[80];
	struct kvfs_xfer_config cfg = {.self_node = node,
				       .self_incarnation = 1,
				       .arena = arena,
				       .default_timeout_ns = 60 * NSEC,
				       .verbs_listen_addr = listen,
				       .flags = flags};
	int r;

	snprintf(listen, sizeof(listen), "%s:0", ip);
	r = kvfs_xfer_engine_create(&cfg, ret);
	if (r < 0)
		return r;
	r = kvfs_xfer_backend_status(*ret, KVFS_XFER_VERBS);
	if (r < 0) {
		kvfs_xfer_engine_destroy(*ret);
		return r;
	}
	return 0;
}

/* One batch of pattern @pat; adds its counter deltas to @acc and returns its time in ns. */
static int verbs_batch(const struct verbs_opts *o, struct kvfs_xfer_engine *eng, char *buf,
		       const char *remote_copy, int pat, struct kvfs_xfer_op *ops,
		       struct kvfs_xfer_counters *acc, uint64_t *ret_ns)
{
	struct kvfs_xfer_counters c0, c1;
	uint64_t rs = pat == PAT_SCATTER_REMOTE ? 2 : 1, ls = pat == PAT_SCATTER_LOCAL ? 2 : 1;
	uint64_t t0;
	int r;

	for (uint32_t i = 0; i < o->pages; i++)
		ops[i] = (struct kvfs_xfer_op){.dir = KVFS_XFER_READ,
					       .node = SERVER_NODE,
					       .remote_off = i * rs * o->page_size,
					       .buf = buf + i * ls * o->page_size,
					       .len = (uint32_t)o->page_size};
	kvfs_xfer_get_counters(eng, KVFS_XFER_VERBS, &c0);
	t0 = now_ns();
	r = kvfs_xfer_run(eng, ops, o->pages, 0);
	*ret_ns = now_ns() - t0;
	kvfs_xfer_get_counters(eng, KVFS_XFER_VERBS, &c1);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < o->pages; i++)
		if (memcmp(ops[i].buf, remote_copy + ops[i].remote_off, o->page_size))
			return -EIO;
	acc->wrs += c1.wrs - c0.wrs;
	acc->doorbells += c1.doorbells - c0.doorbells;
	acc->completions += c1.completions - c0.completions;
	acc->transfers += c1.transfers - c0.transfers;
	return 0;
}

static int verbs_bench(const struct verbs_opts *o)
{
	uint64_t span = 2 * (uint64_t)o->pages * o->page_size;
	struct kvfs_xfer_engine *srv = NULL, *cli[2] = {NULL, NULL};
	struct kvfs_arena *arena = NULL;
	struct kvfs_xfer_op *ops = NULL;
	uint64_t *ns = NULL;
	char *buf = NULL, addr[96];
	int r;

	r = kvfs_arena_create(span, 0, &arena);
	if (r < 0)
		goto out;
	for (uint64_t i = 0; i < span; i++)
		((char *)kvfs_arena_base(arena))[i] = (char)(i * 7 + i / 4093);
	r = verbs_engine(SERVER_NODE, o->server_ip, arena, 0, &srv);
	if (r < 0)
		goto out;
	r = kvfs_xfer_backend_listen_addr(srv, KVFS_XFER_VERBS, addr, sizeof(addr));
	if (r < 0)
		goto out;
	buf = aligned_alloc(4096, span);
	ops = calloc(o->pages, sizeof(*ops));
	ns = calloc((size_t)o->runs * NPATTERNS * 2, sizeof(*ns));
	if (!buf || !ops || !ns) {
		r = -ENOMEM;
		goto out;
	}
	for (int m = 0; m < 2; m++) {
		r = verbs_engine(CLIENT_NODE + (uint32_t)m, o->client_ip, NULL,
				 m ? KVFS_XFER_F_PER_OP : 0, &cli[m]);
		if (r < 0)
			goto out;
		r = kvfs_xfer_peer_set(cli[m], SERVER_NODE, 1, addr, KVFS_XFER_VERBS);
		if (r < 0)
			goto out;
		r = kvfs_xfer_mem_reg(cli[m], buf, span);
		if (r < 0)
			goto out;
	}
	for (int pat = 0; pat < NPATTERNS; pat++) {
		struct kvfs_xfer_counters acc[2] = {{0}};
		uint64_t warm;

		/* warm-up: connects, faults the pages in */
		for (int m = 0; m < 2; m++) {
			struct kvfs_xfer_counters junk = {0};

			r = verbs_batch(o, cli[m], buf, kvfs_arena_base(arena), pat, ops, &junk,
					&warm);
			if (r < 0)
				goto out;
		}
		/* interleaved, so drift in the guest's speed hits both modes alike */
		for (uint32_t i = 0; i < o->runs; i++)
			for (int m = 0; m < 2; m++) {
				r = verbs_batch(o, cli[m], buf, kvfs_arena_base(arena), pat, ops,
						&acc[m], &ns[(pat * 2 + m) * o->runs + i]);
				if (r < 0)
					goto out;
			}
		for (int m = 0; m < 2; m++) {
			uint64_t *t = &ns[(pat * 2 + m) * o->runs];

			qsort(t, o->runs, sizeof(*t), cmp_u64);
			printf("verbs pattern=%s mode=%s pages=%u page_size=%" PRIu64
			       " runs=%u wrs=%.1f doorbells=%.1f completions=%.1f transfers=%.1f"
			       " median_us=%.0f min_us=%.0f\n",
			       pattern_names[pat], m ? "per-op" : "merged", o->pages, o->page_size,
			       o->runs, (double)acc[m].wrs / o->runs,
			       (double)acc[m].doorbells / o->runs,
			       (double)acc[m].completions / o->runs,
			       (double)acc[m].transfers / o->runs, (double)t[o->runs / 2] / 1e3,
			       (double)t[0] / 1e3);
		}
	}
	r = 0;

out:
	for (int m = 0; m < 2; m++)
		kvfs_xfer_engine_destroy(cli[m]);
	kvfs_xfer_engine_destroy(srv);
	kvfs_arena_destroy(arena);
	free(ns);
	free(ops);
	free(buf);
	if (r < 0)
		fprintf(stderr, "kvfs-bench: verbs: %s\n", strerror(-r));
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

static int cmd_verbs(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"server-ip", required_argument, NULL, 's'},
		{"client-ip", required_argument, NULL, 'c'},
		{"pages", required_argument, NULL, 'n'},
		{"page-size", required_argument, NULL, 'S'},
		{"runs", required_argument, NULL, 'r'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct verbs_opts o = {.page_size = 64 << 10, .pages = 64, .runs = 15};
	uint64_t v = 0;
	int ch;

	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o.server_ip = optarg;
			break;
		case 'c':
			o.client_ip = optarg;
			break;
		case 'S':
			if (parse_size(optarg, &o.page_size) < 0 || !o.page_size ||
			    o.page_size > (16u << 20))
				goto bad;
			break;
		case 'n':
		case 'r':
			if (parse_size(optarg, &v) < 0 || !v || v > 4096)
				goto bad;
			if (ch == 'n')
				o.pages = (uint32_t)v;
			else
				o.runs = (uint32_t)v;
			break;
		case 'h':
			verbs_usage(stdout);
			return EXIT_OK;
		default:
			goto bad;
		}
	}
	if (optind != argc || !o.server_ip || !o.client_ip)
		goto bad;
	return verbs_bench(&o);

bad:
	verbs_usage(stderr);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------------------------------ */

static const struct command commands[] = {
	{"xfer", cmd_xfer, "transfer engine throughput over tcp, and the merge check"},
	{"verbs", cmd_verbs, "verbs transport: merged vs per-op posting (WRs, doorbells, time)"},
	{"meta", kvfs_bench_meta_main,
	 "kvfs-meta keys/s and latency (3FS routes, 128-key batches)"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kvfs-bench COMMAND [OPTIONS]   (kvfs-bench COMMAND --help)\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "kvfs-bench: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
