/* SPDX-License-Identifier: MIT */
/*
 * server.c - kvfs-meta's HTTP server core (see server.h).
 *
 * A request's life: libmicrohttpd calls on_request() once with the headers (we resolve the
 * route, check method, auth and Content-Length, and may answer right away), then once per body
 * chunk (appended up to the limit), then once more with no data: we parse the body, dispatch,
 * and queue one response. on_completed() frees the per-request state and records the metrics.
 *
 * Errors are answered as {"error": "...", "errno": N} with the status of kvfs_meta_http_status().
 * A route set (the 3FS routes, metadata/hf3fs/) gets the raw body and writes its answer
 * itself; this file only resolves, checks and sends.
 *
 * Metrics are per route: request counts by status class and a latency histogram, all relaxed
 * atomics (no lock on the request path).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sbuf.h"
#include "server.h"

/*
 * Route ids: the route set's own 0 .. nset - 1 first, then the fixed ones (healthz, metrics,
 * unknown) from s->nset on, then the native table from s->nset + F_NATIVE on.
 */
enum {
	F_HEALTHZ,
	F_METRICS,
	F_UNKNOWN,
	F_NATIVE, /* + index in the native table */
};

static const double lat_bounds_us[] = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000};
#define NBUCKETS (sizeof(lat_bounds_us) / sizeof(lat_bounds_us[0]))

struct route_metrics {
	_Atomic uint64_t by_class[6]; /* index status / 100 */
	_Atomic uint64_t hist[NBUCKETS + 1];
	_Atomic uint64_t sum_us;
};

struct kvfs_meta_server {
	struct MHD_Daemon *mhd;
	int listen_fd;
	uint16_t port;
	char *token; /* NULL: no auth */
	size_t body_max;
	const struct kvfs_meta_route_set *set; /* borrowed; NULL: none */
	void *set_ctx;
	int nset; /* set->n, or 0 */
	const struct kvfs_meta_route *native;
	size_t nnative;
	void *native_ctx;
	int (*native_metrics)(void *native_ctx, char **ret_text, size_t *ret_len);
	struct route_metrics *metrics; /* nset + F_NATIVE + nnative slots */
	_Atomic uint64_t too_large, unauthorised;
};

struct request {
	int route;
	uint32_t param; /* of a route-set route */
	bool get_route; /* /healthz or /metrics: GET, not POST */
	bool answered;	/* a response was queued before the body was read */
	bool too_large;
	unsigned status;
	struct timespec t0;
	char *body;
	size_t len, cap;
};

unsigned kvfs_meta_http_status(int err)
{
	switch (-err) {
	case 0:
		return 200;
	case ENOENT:
	case ENODATA:
		return 404;
	case EEXIST:
	case ENOTEMPTY:
	case ENOTDIR:
	case EISDIR:
	case EXDEV:
		return 409;
	case EINVAL:
	case EPROTO:
	case ENAMETOOLONG:
	case ERANGE:
	case EFBIG:
		return 400;
	case EACCES:
		return 401;
	case EPERM:
		return 403;
	case EMSGSIZE:
	case E2BIG: /* an xattr value above 64 KiB: too large, not a server fault */
		return 413;
	case ESTALE:
		return 410;
	case ENOSPC:
		return 507;
	case ENOTSUP:
	case ENOSYS:
		return 501;
	case EAGAIN:
	case EBUSY:
	case ENOMEM:
		return 503;
	case ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}

/* ---- responses ---- */

static enum MHD_Result send_buf(struct MHD_Connection *c, struct request *rq, unsigned status,
				char *body, size_t len, const char *ctype)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	if (status == 405)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					rq->get_route ? "GET" : "POST");
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	rq->status = status;
	return ret;
}

static enum MHD_Result send_sbuf(struct MHD_Connection *c, struct request *rq, unsigned status,
				 struct sbuf *b, const char *ctype)
{
	if (b->failed) {
		free(b->p);
		return MHD_NO;
	}
	return send_buf(c, rq, status, b->p, b->len, ctype);
}

static enum MHD_Result send_json(struct MHD_Connection *c, struct request *rq, unsigned status,
				 json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);

	json_decref(j);
	if (!s)
		return MHD_NO;
	return send_buf(c, rq, status, s, strlen(s), "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct request *rq, unsigned status,
				  int err, const char *msg)
{
	const char *text = msg && *msg ? msg : strerror(-err);
	json_t *j = json_pack("{ss si}", "error", text, "errno", -err);
	char ascii[256];

	/* jansson refuses a message that is not UTF-8 (a parse error quoting the body, cut in the
	 * middle of a character): send its ASCII rather than drop the connection */
	if (!j) {
		size_t i;

		for (i = 0; text[i] && i + 1 < sizeof(ascii); i++)
			ascii[i] = (unsigned char)text[i] < 0x80 ? text[i] : '?';
		ascii[i] = 0;
		j = json_pack("{ss si}", "error", ascii, "errno", -err);
	}
	if (!j)
		return MHD_NO;
	return send_json(c, rq, status ? status : kvfs_meta_http_status(err), j);
}

static enum MHD_Result send_empty(struct MHD_Connection *c, struct request *rq, unsigned status)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	rq->status = status;
	return ret;
}

/* ---- routing ---- */

/* Resolve @url to a route id; *ret_param for the route set's routes. -EINVAL when a route
 * set's route has a bad parameter. */
static int resolve(const struct kvfs_meta_server *s, const char *url, int *ret_route,
		   uint32_t *ret_param)
{
	unsigned sr;
	int r;

	if (!strcmp(url, "/healthz")) {
		*ret_route = s->nset + F_HEALTHZ;
		return 0;
	}
	if (!strcmp(url, "/metrics")) {
		*ret_route = s->nset + F_METRICS;
		return 0;
	}
	*ret_route = s->nset + F_UNKNOWN;
	if (!strncmp(url, "/v1/", 4)) {
		for (size_t i = 0; i < s->nnative; i++)
			if (!strcmp(url, s->native[i].path)) {
				*ret_route = s->nset + F_NATIVE + (int)i;
				return 0;
			}
		return 0;
	}
	if (!s->set)
		return 0;
	r = s->set->resolve(url, &sr, ret_param);
	if (r == -ENOENT)
		return 0;
	*ret_route = (int)sr;
	return r;
}

static bool route_mutating(const struct kvfs_meta_server *s, int route)
{
	if (route < s->nset)
		return s->set->mutating((unsigned)route);
	if (route >= s->nset + F_NATIVE)
		return s->native[route - s->nset - F_NATIVE].mutating;
	return false;
}

/* Constant-time comparison of the Authorization header with "Bearer TOKEN". */
static bool authorised(const struct kvfs_meta_server *s, struct MHD_Connection *c)
{
	const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	size_t tl = strlen(s->token), hl;
	unsigned char diff = 0;

	if (!h || strncmp(h, "Bearer ", 7))
		return false;
	h += 7;
	hl = strlen(h);
	for (size_t i = 0; i < tl; i++)
		diff |= (unsigned char)s->token[i] ^ (unsigned char)(i < hl ? h[i] : 0);
	return !diff && hl == tl;
}

/* ---- /metrics ---- */

static const char *route_name(const struct kvfs_meta_server *s, int route)
{
	static const char *fixed[] = {
		[F_HEALTHZ] = "/healthz", [F_METRICS] = "/metrics", [F_UNKNOWN] = "unknown"};

	if (route < s->nset)
		return s->set->label((unsigned)route);
	if (route >= s->nset + F_NATIVE)
		return s->native[route - s->nset - F_NATIVE].path;
	return fixed[route - s->nset];
}

static enum MHD_Result do_metrics(struct kvfs_meta_server *s, struct MHD_Connection *c,
				  struct request *rq)
{
	struct sbuf b = {0};
	int nroutes = s->nset + F_NATIVE + (int)s->nnative;

	sb_lit(&b, "# HELP kvfs_meta_requests_total HTTP requests by route and status class.\n"
		   "# TYPE kvfs_meta_requests_total counter\n");
	for (int r = 0; r < nroutes; r++)
		for (int k = 1; k < 6; k++) {
			uint64_t v = atomic_load_explicit(&s->metrics[r].by_class[k],
							  memory_order_relaxed);

			if (v)
				sb_printf(&b,
					  "kvfs_meta_requests_total{route=\"%s\",code=\"%dxx\"} "
					  "%" PRIu64 "\n",
					  route_name(s, r), k, v);
		}
	sb_lit(&b, "# HELP kvfs_meta_request_seconds Request latency by route.\n"
		   "# TYPE kvfs_meta_request_seconds histogram\n");
	for (int r = 0; r < nroutes; r++) {
		struct route_metrics *m = &s->metrics[r];
		uint64_t cum = 0;

		if (!atomic_load_explicit(&m->hist[NBUCKETS], memory_order_relaxed)) {
			uint64_t any = 0;

			for (size_t i = 0; i < NBUCKETS; i++)
				any |= atomic_load_explicit(&m->hist[i], memory_order_relaxed);
			if (!any)
				continue;
		}
		for (size_t i = 0; i <= NBUCKETS; i++) {
			cum += atomic_load_explicit(&m->hist[i], memory_order_relaxed);
			if (i < NBUCKETS)
				sb_printf(
					&b,
					"kvfs_meta_request_seconds_bucket{route=\"%s\",le=\"%g\"} "
					"%" PRIu64 "\n",
					route_name(s, r), lat_bounds_us[i] / 1e6, cum);
			else
				sb_printf(
					&b,
					"kvfs_meta_request_seconds_bucket{route=\"%s\",le=\"+Inf\"}"
					" %" PRIu64 "\n",
					route_name(s, r), cum);
		}
		sb_printf(&b, "kvfs_meta_request_seconds_sum{route=\"%s\"} %.6f\n",
			  route_name(s, r),
			  (double)atomic_load_explicit(&m->sum_us, memory_order_relaxed) / 1e6);
		sb_printf(&b, "kvfs_meta_request_seconds_count{route=\"%s\"} %" PRIu64 "\n",
			  route_name(s, r), cum);
	}
	sb_printf(&b,
		  "# TYPE kvfs_meta_rejected_too_large_total counter\n"
		  "kvfs_meta_rejected_too_large_total %" PRIu64 "\n"
		  "# TYPE kvfs_meta_rejected_unauthorised_total counter\n"
		  "kvfs_meta_rejected_unauthorised_total %" PRIu64 "\n",
		  atomic_load(&s->too_large), atomic_load(&s->unauthorised));
	if (s->set && s->set->metrics) {
		char *txt = NULL;
		size_t len = 0;

		if (s->set->metrics(s->set_ctx, &txt, &len) == 0)
			sb_add(&b, txt, len);
		free(txt);
	}
	if (s->native_metrics) {
		char *txt = NULL;
		size_t len = 0;

		if (s->native_metrics(s->native_ctx, &txt, &len) == 0)
			sb_add(&b, txt, len);
		free(txt);
	}
	return send_sbuf(c, rq, 200, &b, "text/plain; version=0.0.4");
}

/* ---- dispatch ---- */

static enum MHD_Result dispatch(struct kvfs_meta_server *s, struct MHD_Connection *c,
				struct request *rq)
{
	struct kvfs_meta_json_error err = {{0}};
	json_t *req = NULL, *resp = NULL;
	const struct kvfs_meta_route *nr;
	int r = 0;

	if (rq->too_large) {
		atomic_fetch_add(&s->too_large, 1);
		snprintf(err.msg, sizeof(err.msg), "request body larger than %zu bytes",
			 s->body_max);
		return send_error(c, rq, 413, -EMSGSIZE, err.msg);
	}
	if (rq->route == s->nset + F_HEALTHZ) {
		char *ok = strdup("{\"status\":\"ok\"}");

		return ok ? send_buf(c, rq, 200, ok, strlen(ok), "application/json") : MHD_NO;
	}
	if (rq->route == s->nset + F_METRICS)
		return do_metrics(s, c, rq);

	if (rq->route < s->nset) {
		char *body = NULL;
		size_t len = 0;
		unsigned status = 0;

		r = s->set->serve(s->set_ctx, (unsigned)rq->route, rq->param, rq->body, rq->len,
				  &body, &len, &status, &err);
		if (r)
			return send_error(c, rq, status, r, err.msg);
		if (!body)
			return send_empty(c, rq, 204);
		return send_buf(c, rq, 200, body, len, "application/json");
	}

	r = kvfs_meta_json_parse(rq->body, rq->len, &req, &err);
	if (!req)
		return send_error(c, rq, 400, r, err.msg);

	nr = &s->native[rq->route - s->nset - F_NATIVE];
	if (!nr->fn) {
		json_decref(req);
		snprintf(err.msg, sizeof(err.msg), "%s has no handler in this server", nr->path);
		return send_error(c, rq, 501, -ENOSYS, err.msg);
	}
	r = nr->fn(s->native_ctx, req, &resp, &err);
	json_decref(req);
	if (r) {
		json_decref(resp);
		return send_error(c, rq, 0, r, err.msg);
	}
	if (!resp)
		return send_empty(c, rq, 204);
	return send_json(c, rq, 200, resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct kvfs_meta_server *s = cls;
	struct request *rq = *con_cls;

	if (!rq) {
		const char *cl;
		bool get_route;
		int r;

		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		clock_gettime(CLOCK_MONOTONIC, &rq->t0);
		*con_cls = rq;
		r = resolve(s, url, &rq->route, &rq->param);
		rq->answered = true;
		get_route = rq->route == s->nset + F_HEALTHZ || rq->route == s->nset + F_METRICS;
		rq->get_route = get_route;
		if (r)
			return send_error(c, rq, 400, r, s->set->bad_param);
		if (rq->route == s->nset + F_UNKNOWN)
			return send_error(c, rq, 404, -ENOENT, "unknown route");
		if (get_route ? strcmp(method, "GET") && strcmp(method, "HEAD")
			      : strcmp(method, "POST"))
			return send_error(c, rq, 405, -EINVAL, "method not allowed");
		if (s->token && route_mutating(s, rq->route) && !authorised(s, c)) {
			atomic_fetch_add(&s->unauthorised, 1);
			return send_error(c, rq, 401, -EACCES,
					  "missing or wrong 'Authorization: Bearer' token");
		}
		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		if (cl && strtoull(cl, NULL, 10) > s->body_max) {
			atomic_fetch_add(&s->too_large, 1);
			return send_error(c, rq, 413, -EMSGSIZE, "request body too large");
		}
		rq->answered = false;
		return MHD_YES;
	}
	if (rq->answered) {
		*upload_data_size = 0; /* discard the body of an answered request */
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (rq->too_large || rq->len + n > s->body_max) {
			rq->too_large = true;
			return MHD_YES;
		}
		if (rq->len + n + 1 > rq->cap) {
			size_t cap = rq->cap ? rq->cap : 4096;
			char *nb;

			while (cap < rq->len + n + 1)
				cap *= 2;
			nb = realloc(rq->body, cap);
			if (!nb)
				return MHD_NO;
			rq->body = nb;
			rq->cap = cap;
		}
		memcpy(rq->body + rq->len, upload_data, n);
		rq->len += n;
		return MHD_YES;
	}
	rq->answered = true;
	return dispatch(s, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct kvfs_meta_server *s = cls;
	struct request *rq = *con_cls;
	struct route_metrics *m;
	struct timespec t1;
	uint64_t us;
	size_t b = 0;

	if (!rq)
		return;
	*con_cls = NULL;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	us = (uint64_t)(t1.tv_sec - rq->t0.tv_sec) * 1000000 +
	     (uint64_t)((t1.tv_nsec - rq->t0.tv_nsec) / 1000);
	m = &s->metrics[rq->route];
	atomic_fetch_add_explicit(&m->by_class[rq->status / 100 % 6], 1, memory_order_relaxed);
	while (b < NBUCKETS && (double)us > lat_bounds_us[b])
		b++;
	atomic_fetch_add_explicit(&m->hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->sum_us, us, memory_order_relaxed);
	free(rq->body);
	free(rq);
}

/* ---- lifecycle ---- */

static int listen_on(const char *spec, int *ret_fd, uint16_t *ret_port)
{
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	char host[128];
	const char *colon;
	char *end;
	unsigned long port;
	int fd, one = 1, r;

	if (!spec || !*spec)
		spec = "127.0.0.1:9300";
	colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] == 0 || port > 65535 || errno)
		return -EINVAL;
	if (host[0] == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		size_t hl = strlen(host);

		if (hl < 2 || host[hl - 1] != ']')
			return -EINVAL;
		host[hl - 1] = 0;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
			return -EINVAL;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &a->sin_addr) != 1)
			return -EINVAL;
		sl = sizeof(*a);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1024) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	*ret_fd = fd;
	return 0;
}

int kvfs_meta_server_create(const struct kvfs_meta_server_config *cfg,
			    struct kvfs_meta_server **ret)
{
	struct kvfs_meta_server *s;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = cfg->threads ? cfg->threads : ncpu > 0 ? (unsigned)ncpu : 1;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->listen_fd = -1;
	s->body_max = cfg->body_max ? cfg->body_max : KVFS_META_BODY_MAX;
	s->set = cfg->routes;
	s->set_ctx = cfg->routes_ctx;
	s->nset = cfg->routes ? (int)cfg->routes->n : 0;
	s->native = cfg->native ? cfg->native : kvfs_meta_native_routes;
	s->nnative = cfg->native ? cfg->nnative : kvfs_meta_native_nroutes;
	s->native_ctx = cfg->native_ctx;
	s->native_metrics = cfg->native_metrics;
	if (cfg->token && *cfg->token) {
		s->token = strdup(cfg->token);
		if (!s->token) {
			r = -ENOMEM;
			goto err_free;
		}
	}
	s->metrics = calloc((size_t)s->nset + F_NATIVE + s->nnative, sizeof(*s->metrics));
	if (!s->metrics) {
		r = -ENOMEM;
		goto err_free;
	}
	r = listen_on(cfg->listen, &s->listen_fd, &s->port);
	if (r)
		goto err_free;
	s->mhd = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, on_request, s,
				  MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
				  MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_COMPLETED,
				  on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, 120u,
				  MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
	if (!s->mhd) {
		r = -EIO;
		goto err_close_listen;
	}
	*ret = s;
	return 0;

err_close_listen:
	close(s->listen_fd);
err_free:
	free(s->metrics);
	free(s->token);
	free(s);
	return r;
}

uint16_t kvfs_meta_server_port(const struct kvfs_meta_server *s)
{
	return s->port;
}

void kvfs_meta_server_destroy(struct kvfs_meta_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->mhd);
	close(s->listen_fd);
	free(s->metrics);
	free(s->token);
	free(s);
}
