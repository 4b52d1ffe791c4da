/* SPDX-License-Identifier: MIT */
/*
 * bench_meta.c - `kvfs-bench meta`: throughput and latency of kvfs-meta's 3FS-compatible routes
 * with the request shape of SGLang's HiCacheHF3FS (batches of keys of 64 hex characters).
 *
 * Phases, each with 1 and then N concurrent clients (--clients 1,8), each client a thread with
 * its own keep-alive connection (raw HTTP/1.1 over a socket, so the client costs little next
 * to the server):
 *   1. reserve+confirm: each request pair reserves a batch of new keys and confirms them (the
 *      write path; every acknowledged change is in kvfs-meta's LMDB, so it survives kill -9).
 *      Reported as keys/s of confirmed keys, latency of the pair.
 *   2. exists and 3. get_page_indices over keys confirmed in phase 1, chosen at random.
 * Latency percentiles come from every request's time (a log-linear histogram, 1 us .. 10 s).
 *
 * With --url the service is used as is; otherwise --meta-bin (or $KVFS_META_BIN) is started on
 * a free loopback port with a temporary data directory and stopped at the end. Each run uses a
 * fresh rank (--rank, default derived from the time) so runs do not see each other's keys.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_meta.h"

#define KEY_LEN	    64
#define MAX_CLIENTS 64
#define HIST_SUB    32 /* linear buckets per power of two */
#define HIST_N	    (40 * HIST_SUB)

struct opts {
	char host[64];
	uint16_t port;
	const char *meta_bin;
	unsigned clients[8];
	unsigned nclients;
	unsigned batch;
	double seconds;
	uint32_t rank;
	uint32_t num_pages;
};

/* ---- latency histogram ---- */

struct hist {
	uint64_t b[HIST_N];
	uint64_t n;
};

static unsigned hist_bucket(uint64_t ns)
{
	uint64_t us = ns / 1000;
	unsigned p;

	if (us < HIST_SUB)
		return (unsigned)us;
	p = 63u - (unsigned)__builtin_clzll(us); /* us in [2^p, 2^(p+1)) */
	unsigned idx = (p - 4) * HIST_SUB + (unsigned)((us >> (p - 5)) & (HIST_SUB - 1));

	return idx < HIST_N ? idx : HIST_N - 1;
}

static double hist_value_us(unsigned idx)
{
	unsigned p, sub;

	if (idx < HIST_SUB)
		return idx;
	p = idx / HIST_SUB + 4;
	sub = idx % HIST_SUB;
	return (double)((1ull << p) + ((uint64_t)sub << (p - 5)));
}

static double hist_pct(const struct hist *h, double pct)
{
	uint64_t want = (uint64_t)((double)h->n * pct / 100.0), acc = 0;

	for (unsigned i = 0; i < HIST_N; i++) {
		acc += h->b[i];
		if (acc > want)
			return hist_value_us(i);
	}
	return 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- keys ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The 64 hex characters of key @i of writer @w. */
static void make_key(uint32_t rank, unsigned w, uint64_t i, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t seed = mix(((uint64_t)rank << 40) ^ ((uint64_t)w << 32) ^ i);

	for (int k = 0; k < 4; k++) {
		uint64_t v = mix(seed + (uint64_t)k);

		for (int j = 0; j < 16; j++)
			out[k * 16 + j] = hex[(v >> (j * 4)) & 15];
	}
}

/* ---- a keep-alive HTTP/1.1 connection ---- */

struct conn {
	int fd;
	char *buf; /* response buffer */
	size_t cap, len;
	char *req; /* request buffer */
	size_t rcap;
};

static int conn_open(struct conn *c, const struct opts *o)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o->port)};
	int one = 1;

	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1)
		return -EINVAL;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int r = -errno;

		close(c->fd);
		c->fd = -1;
		return r;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c->req);
}

static int grow(char **p, size_t *cap, size_t need)
{
	size_t nc = *cap ? *cap : 4096;
	char *np;

	if (need <= *cap)
		return 0;
	while (nc < need)
		nc *= 2;
	np = realloc(*p, nc);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}

/* POST @body to @path; the answer's body is at c->buf (NUL-terminated), *ret_body_len long.
 * Returns the HTTP status or a negative errno. */
static int post(struct conn *c, const char *path, const char *body, size_t blen,
		const char **ret_body, size_t *ret_body_len)
{
	size_t hlen, body_at = 0, clen = 0;
	int status = 0, n;

	if (grow(&c->req, &c->rcap, blen + 256))
		return -ENOMEM;
	n = snprintf(c->req, c->rcap,
		     "POST %s HTTP/1.1\r\nHost: kvfs-meta\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n",
		     path, blen);
	hlen = (size_t)n;
	memcpy(c->req + hlen, body, blen);
	for (size_t sent = 0; sent < hlen + blen;) {
		ssize_t w = send(c->fd, c->req + sent, hlen + blen - sent, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		sent += (size_t)w;
	}
	c->len = 0;
	for (;;) {
		ssize_t rd;

		if (grow(&c->buf, &c->cap, c->len + 65536 + 1))
			return -ENOMEM;
		rd = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
		if (rd < 0 && errno == EINTR)
			continue;
		if (rd <= 0)
			return rd < 0 ? -errno : -ECONNRESET;
		c->len += (size_t)rd;
		c->buf[c->len] = 0;
		if (!body_at) {
			char *e = strstr(c->buf, "\r\n\r\n"), *cl;

			if (!e)
				continue;
			body_at = (size_t)(e - c->buf) + 4;
			status = atoi(c->buf + 9);
			cl = strcasestr(c->buf, "\r\ncontent-length:");
			clen = cl && cl < e ? strtoull(cl + 17, NULL, 10) : 0;
		}
		if (c->len >= body_at + clen)
			break;
	}
	memmove(c->buf, c->buf + body_at, clen);
	c->buf[clen] = 0;
	*ret_body = c->buf;
	*ret_body_len = clen;
	return status;
}

/* ---- phases ---- */

enum phase { PH_WRITE, PH_EXISTS, PH_GET };

struct shared {
	const struct opts *o;
	enum phase ph;
	unsigned nclients;
	uint64_t population; /* keys confirmed by writer 0..: keys (w, i) with i < per_writer[w] */
	uint64_t per_writer[MAX_CLIENTS];
	uint64_t write_base[MAX_CLIENTS]; /* first key index of this write phase per writer */
	uint64_t deadline;
	_Atomic bool failed;
};

struct worker {
	struct shared *sh;
	unsigned id;
	pthread_t th;
	struct hist h;
	uint64_t keys;
	uint64_t reqs;
	uint64_t written; /* PH_WRITE: keys confirmed */
};

static size_t body_keys(char *out, const struct opts *o, unsigned w, const uint64_t *idx,
			const unsigned *writers, unsigned n, bool pairs)
{
	char *p = out;

	p += sprintf(p, "{\"keys\":[");
	for (unsigned k = 0; k < n; k++) {
		if (k)
			*p++ = ',';
		if (pairs)
			*p++ = '[';
		*p++ = '"';
		make_key(o->rank, writers ? writers[k] : w, idx[k], p);
		p += KEY_LEN;
		*p++ = '"';
		if (pairs)
			p += sprintf(p, ",null]");
	}
	p += sprintf(p, "]}");
	return (size_t)(p - out);
}

/* The page indices of a reserve answer {"indices":[[bool,idx],...]}. */
static int parse_reserve(const char *b, int64_t *idx, unsigned n)
{
	const char *p = strstr(b, "\"indices\"");

	for (unsigned k = 0; p && k < n; k++) {
		p = strchr(p + 1, '[');
		if (p && p[1] == '[')
			p = strchr(p + 1, '[');
		if (!p || !(p = strchr(p, ',')))
			return -EPROTO;
		idx[k] = strtoll(p + 1, NULL, 10);
	}
	return p ? 0 : -EPROTO;
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct shared *sh = wk->sh;
	const struct opts *o = sh->o;
	unsigned n = o->batch;
	size_t cap = (size_t)n * (KEY_LEN + 32) + 64;
	char *body = malloc(cap), *body2 = malloc(cap), path[96];
	uint64_t *idx = calloc(n, sizeof(*idx)), rng = mix(wk->id + 77);
	unsigned *writers = calloc(n, sizeof(*writers));
	int64_t *pages = calloc(n, sizeof(*pages));
	struct conn c;
	const char *resp;
	size_t rlen;
	uint64_t next = sh->write_base[wk->id];

	if (!body || !body2 || !idx || !writers || !pages || conn_open(&c, o)) {
		atomic_store(&sh->failed, true);
		goto out_free;
	}
	while (!atomic_load_explicit(&sh->failed, memory_order_relaxed)) {
		uint64_t t0 = now_ns(), t1;
		size_t len;
		int st;

		if (t0 >= sh->deadline)
			break;
		if (sh->ph == PH_WRITE) {
			char *p;

			for (unsigned k = 0; k < n; k++)
				idx[k] = next + k;
			len = body_keys(body, o, wk->id, idx, NULL, n, true);
			snprintf(path, sizeof(path),
				 "/%" PRIu32 "/reserve_and_allocate_page_indices", o->rank);
			st = post(&c, path, body, len, &resp, &rlen);
			if (st != 200 || parse_reserve(resp, pages, n)) {
				fprintf(stderr, "kvfs-bench meta: reserve answered %d: %.200s\n",
					st, st > 0 ? resp : strerror(-st));
				atomic_store(&sh->failed, true);
				break;
			}
			p = body2 + sprintf(body2, "{\"written_keys_to_confirm\":[");
			for (unsigned k = 0; k < n; k++) {
				if (k)
					*p++ = ',';
				*p++ = '[';
				*p++ = '"';
				make_key(o->rank, wk->id, idx[k], p);
				p += KEY_LEN;
				p += sprintf(p, "\",%" PRId64 "]", pages[k]);
			}
			p += sprintf(p, "],\"pages_to_release\":[]}");
			snprintf(path, sizeof(path), "/%" PRIu32 "/confirm_write", o->rank);
			st = post(&c, path, body2, (size_t)(p - body2), &resp, &rlen);
			if (st != 204) {
				fprintf(stderr, "kvfs-bench meta: confirm answered %d\n", st);
				atomic_store(&sh->failed, true);
				break;
			}
			next += n;
			wk->written += n;
		} else {
			for (unsigned k = 0; k < n; k++) {
				unsigned w;

				rng = mix(rng);
				w = (unsigned)(rng % sh->nclients);
				while (!sh->per_writer[w])
					w = (w + 1) % MAX_CLIENTS;
				writers[k] = w;
				idx[k] = (rng >> 20) % sh->per_writer[w];
			}
			len = body_keys(body, o, 0, idx, writers, n, false);
			snprintf(path, sizeof(path), "/%" PRIu32 "/%s", o->rank,
				 sh->ph == PH_EXISTS ? "exists" : "get_page_indices");
			st = post(&c, path, body, len, &resp, &rlen);
			if (st != 200) {
				fprintf(stderr, "kvfs-bench meta: %s answered %d\n", path, st);
				atomic_store(&sh->failed, true);
				break;
			}
		}
		t1 = now_ns();
		wk->h.b[hist_bucket(t1 - t0)]++;
		wk->h.n++;
		wk->reqs++;
		wk->keys += n;
	}
	conn_close(&c);
out_free:
	free(body);
	free(body2);
	free(idx);
	free(writers);
	free(pages);
	return NULL;
}

struct result {
	const char *op;
	unsigned clients;
	double keys_per_s;
	double p50_us, p99_us;
};

static int run_phase(struct shared *sh, enum phase ph, unsigned nclients, struct result *res)
{
	struct worker *w = calloc(nclients, sizeof(*w));
	struct hist h = {{0}, 0};
	uint64_t t0, keys = 0;
	double secs;

	if (!w)
		return -ENOMEM;
	sh->ph = ph;
	t0 = now_ns();
	sh->deadline = t0 + (uint64_t)(sh->o->seconds * 1e9);
	for (unsigned i = 0; i < nclients; i++) {
		w[i].sh = sh;
		w[i].id = i;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i])) {
			atomic_store(&sh->failed, true);
			nclients = i;
			break;
		}
	}
	for (unsigned i = 0; i < nclients; i++) {
		pthread_join(w[i].th, NULL);
		keys += w[i].keys;
		for (unsigned b = 0; b < HIST_N; b++)
			h.b[b] += w[i].h.b[b];
		h.n += w[i].h.n;
		if (ph == PH_WRITE) {
			sh->per_writer[i] = sh->write_base[i] + w[i].written;
			sh->write_base[i] += w[i].written;
		}
	}
	secs = (double)(now_ns() - t0) / 1e9;
	free(w);
	res->op = ph == PH_WRITE    ? "reserve+confirm"
		  : ph == PH_EXISTS ? "exists"
				    : "get_page_indices";
	res->clients = nclients;
	res->keys_per_s = (double)keys / secs;
	res->p50_us = hist_pct(&h, 50);
	res->p99_us = hist_pct(&h, 99);
	return atomic_load(&sh->failed) ? -EIO : 0;
}

/* ---- setup ---- */

static int simple_post(const struct opts *o, const char *path, const char *body, int *ret_status)
{
	struct conn c;
	const char *resp;
	size_t rlen;
	int r = conn_open(&c, o);

	if (r == 0) {
		r = post(&c, path, body, strlen(body), &resp, &rlen);
		if (r > 0) {
			*ret_status = r;
			r = 0;
		}
	}
	conn_close(&c);
	return r;
}

static pid_t spawn_meta(struct opts *o, char *dir)
{
	char listen[32], data[128], log[128];
	int64_t t0 = (int64_t)(now_ns() / 1000000);
	pid_t pid;

	if (!mkdtemp(dir))
		return -1;
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	snprintf(listen, sizeof(listen), "127.0.0.1:0");
	pid = fork();
	if (pid == 0) {
		FILE *f = freopen(log, "w", stderr);

		(void)f;
		execl(o->meta_bin, o->meta_bin, "--listen", listen, "--data", data, (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	strcpy(o->host, "127.0.0.1");
	for (;;) {
		char buf[512] = {0};
		FILE *f = fopen(log, "r");
		char *p;

		if (f) {
			buf[fread(buf, 1, sizeof(buf) - 1, f)] = 0;
			fclose(f);
		}
		p = strstr(buf, "(port ");
		if (p) {
			o->port = (uint16_t)atoi(p + 6);
			return pid;
		}
		if ((int64_t)(now_ns() / 1000000) - t0 > 10000 || waitpid(pid, NULL, WNOHANG)) {
			fprintf(stderr, "kvfs-bench meta: %s did not start: %s\n", o->meta_bin,
				buf);
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			return -1;
		}
		usleep(10000);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvfs-bench meta [options]\n"
		   "  --url http://HOST:PORT  a running kvfs-meta (IPv4)\n"
		   "  --meta-bin PATH         else start this kvfs-meta on a free port\n"
		   "                          (default $KVFS_META_BIN)\n"
		   "  --clients LIST          concurrent clients per phase (default 1,8)\n"
		   "  --batch N               keys per request (default 128)\n"
		   "  --seconds S             per phase (default 5)\n"
		   "  --rank R                3FS rank to use (default: fresh per run)\n"
		   "  --num-pages N           pages of that rank (default 2097152)\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{"url", required_argument, NULL, 'u'},
		{"meta-bin", required_argument, NULL, 'm'},
		{"clients", required_argument, NULL, 'c'},
		{"batch", required_argument, NULL, 'b'},
		{"seconds", required_argument, NULL, 's'},
		{"rank", required_argument, NULL, 'r'},
		{"num-pages", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'u': {
			unsigned port = 0;

			if (sscanf(optarg, "http://%63[0-9.]:%u", o->host, &port) != 2 || !port ||
			    port > 65535)
				return -EINVAL;
			o->port = (uint16_t)port;
			break;
		}
		case 'm':
			o->meta_bin = optarg;
			break;
		case 'c': {
			char *s = optarg, *end;

			o->nclients = 0;
			while (*s && o->nclients < 8) {
				unsigned long v = strtoul(s, &end, 10);

				if (end == s || !v || v > MAX_CLIENTS)
					return -EINVAL;
				o->clients[o->nclients++] = (unsigned)v;
				s = *end == ',' ? end + 1 : end;
				if (*end && *end != ',')
					return -EINVAL;
			}
			break;
		}
		case 'b':
			o->batch = (unsigned)strtoul(optarg, NULL, 10);
			if (!o->batch || o->batch > 65536)
				return -EINVAL;
			break;
		case 's':
			o->seconds = strtod(optarg, NULL);
			if (!(o->seconds > 0))
				return -EINVAL;
			break;
		case 'r':
			o->rank = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			o->num_pages = (uint32_t)strtoul(optarg, NULL, 10);
			if (!o->num_pages)
				return -EINVAL;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			return -EINVAL;
		}
	}
	return optind < argc ? -EINVAL : 0;
}

int kvfs_bench_meta_main(int argc, char **argv)
{
	struct opts o = {.clients = {1, 8},
			 .nclients = 2,
			 .batch = 128,
			 .seconds = 5,
			 .num_pages = 1u << 21};
	struct result res[24];
	struct shared sh;
	char dir[] = "/tmp/kvfs-bench-meta.XXXXXX", body[96], path[64];
	unsigned nres = 0;
	pid_t pid = 0;
	int r, st = 0, rc = 1;

	o.rank = (uint32_t)(mix(now_ns()) % 1000000) + 1000;
	r = parse_opts(argc, argv, &o);
	if (r)
		return r > 0 ? 0 : (usage(stderr), 2);
	if (!o.port) {
		if (!o.meta_bin)
			o.meta_bin = getenv("KVFS_META_BIN");
		if (!o.meta_bin) {
			fprintf(stderr, "kvfs-bench meta: give --url or --meta-bin\n");
			return 2;
		}
		pid = spawn_meta(&o, dir);
		if (pid < 0)
			return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, sizeof(path), "/%" PRIu32 "/initialize", o.rank);
	snprintf(body, sizeof(body), "{\"num_pages\":%" PRIu32 "}", o.num_pages);
	r = simple_post(&o, path, body, &st);
	if (r || st != 204) {
		fprintf(stderr, "kvfs-bench meta: initialize at %s:%u: %s (status %d)\n", o.host,
			o.port, r ? strerror(-r) : "unexpected answer", st);
		goto out;
	}

	memset(&sh, 0, sizeof(sh));
	sh.o = &o;
	for (unsigned i = 0; i < o.nclients; i++) {
		sh.nclients = o.clients[i];
		if (run_phase(&sh, PH_WRITE, o.clients[i], &res[nres++]))
			goto out;
	}
	sh.nclients = MAX_CLIENTS;
	for (enum phase ph = PH_EXISTS; ph <= PH_GET; ph++)
		for (unsigned i = 0; i < o.nclients; i++)
			if (run_phase(&sh, ph, o.clients[i], &res[nres++]))
				goto out;

	printf("kvfs-bench meta: %s:%u rank %" PRIu32 ", %u keys of %d hex chars per request, "
	       "%.1f s per phase\n",
	       o.host, o.port, o.rank, o.batch, KEY_LEN, o.seconds);
	printf("%-18s %8s %14s %10s %10s\n", "operation", "clients", "keys/s", "p50 us", "p99 us");
	for (unsigned i = 0; i < nres; i++)
		printf("%-18s %8u %14.0f %10.0f %10.0f\n", res[i].op, res[i].clients,
		       res[i].keys_per_s, res[i].p50_us, res[i].p99_us);
	printf("{\"bench\":\"meta\",\"batch\":%u,\"seconds\":%.1f,\"results\":[", o.batch,
	       o.seconds);
	for (unsigned i = 0; i < nres; i++)
		printf("%s{\"op\":\"%s\",\"clients\":%u,\"keys_per_s\":%.0f,\"p50_us\":%.0f,"
		       "\"p99_us\":%.0f}",
		       i ? "," : "", res[i].op, res[i].clients, res[i].keys_per_s, res[i].p50_us,
		       res[i].p99_us);
	printf("]}\n");
	fflush(stdout);
	rc = 0;
out:
	if (pid > 0) {
		char cmd[128];

		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "kvfs-bench meta: could not remove %s\n", dir);
	}
	return rc;
}
