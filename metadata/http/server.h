/* SPDX-License-Identifier: MIT */
/*
 * server.h - private to metadata/: kvfs-meta's HTTP server core: listening, request bodies,
 * auth, routing, errors, /metrics and /healthz. Routes come from outside: the native /v1/
 * routes are a table of handlers (struct kvfs_meta_route, filled in native.c) that run on
 * whatever context the program passes, for which this file decodes the body, checks auth,
 * calls the handler and encodes the answer; a route set (struct kvfs_meta_route_set: the 3FS
 * routes of metadata/hf3fs/) resolves its own paths and gets the raw body. The wire format is
 * docs/API.md.
 *
 * Threads: libmicrohttpd with its internal epoll threads (one per core by default): keep-alive
 * connections are multiplexed on a few event-loop threads instead of one thread each, which on a
 * small machine avoids both oversubscription and a context switch per request. Handlers run on
 * those threads, so they must not block for long: the 3FS reads are memory only and writes are
 * one LMDB commit.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct kvfs_meta_server;

/*
 * A native route handler: decode @req (the parsed body, an object), run the operation on @ctx
 * and on success set *ret_resp to the answer (a new reference; NULL answers 204). Returns 0 or
 * a negative errno (the server maps it to the HTTP status and {"error", "errno"}), with a
 * message in @err when it has one. Called on a server thread, concurrently with other calls.
 */
typedef int (*kvfs_meta_route_fn)(void *ctx, const json_t *req, json_t **ret_resp,
				  struct kvfs_meta_json_error *err);

struct kvfs_meta_route {
	const char *path;      /* "/v1/..." */
	bool mutating;	       /* requires the bearer token when one is configured */
	kvfs_meta_route_fn fn; /* NULL: not wired yet, answers 501 */
};

/* native.c: every /v1/ route of docs/API.md, in the order documented there. */
extern const struct kvfs_meta_route kvfs_meta_native_routes[];
extern const size_t kvfs_meta_native_nroutes;

/*
 * A set of routes outside /v1/ with paths of their own and raw bodies (the 3FS routes). The
 * server resolves every path that is neither /v1/, /healthz nor /metrics through it, checks the
 * method (POST), the token and the size, and hands over the body as received; the set decodes
 * it, runs the operation and writes its answer. Routes are numbered 0 .. n - 1. The callbacks
 * run on server threads, concurrently.
 */
struct kvfs_meta_route_set {
	size_t n;
	const char *bad_param; /* the 400 message for a path with a bad parameter */
	/* 0 and the route @url names with its numeric parameter (the 3FS rank); -ENOENT when
	 * @url is none of the set's; -EINVAL when it is one but with a bad parameter (then
	 * *ret_route is set). */
	int (*resolve)(const char *url, unsigned *ret_route, uint32_t *ret_param);
	const char *(*label)(unsigned route); /* the route's name in /metrics */
	bool (*mutating)(unsigned route);     /* requires the bearer token when configured */
	/*
	 * Serve one request on @ctx. 0 and the answer in *ret_body (malloc'd JSON, *ret_len
	 * bytes; NULL answers 204), or a negative errno with a message in @err, and *ret_status
	 * set when the status must differ from kvfs_meta_http_status() of the errno.
	 */
	int (*serve)(void *ctx, unsigned route, uint32_t param, const char *body, size_t len,
		     char **ret_body, size_t *ret_len, unsigned *ret_status,
		     struct kvfs_meta_json_error *err);
	/* Appended to /metrics: malloc'd Prometheus text of the set's state. May be NULL. */
	int (*metrics)(void *ctx, char **ret_text, size_t *ret_len);
};

#define KVFS_META_BODY_MAX (16u << 20)

struct kvfs_meta_server_config {
	const char *listen; /* "ADDR:PORT" or "[V6ADDR]:PORT"; port 0 = any free */
	const char *token;  /* NULL/empty: no auth */
	size_t body_max;    /* bytes; 0 = KVFS_META_BODY_MAX */
	unsigned threads;   /* 0 = number of online CPUs */
	const struct kvfs_meta_route_set *routes; /* borrowed; NULL: none */
	void *routes_ctx;			  /* passed to the route set */
	const struct kvfs_meta_route *native;	  /* borrowed; NULL: kvfs_meta_native_routes */
	size_t nnative;
	void *native_ctx; /* passed to native handlers */
	/* Appended to /metrics when set: malloc'd Prometheus text of the native state (e.g.
	 * kvfs_meta_native_metrics); called on a server thread with native_ctx. */
	int (*native_metrics)(void *native_ctx, char **ret_text, size_t *ret_len);
};

/* Bind, listen and start serving. Returns 0 and *ret, -EINVAL for a bad listen address,
 * -EADDRINUSE etc. from bind, or -ENOMEM. */
int kvfs_meta_server_create(const struct kvfs_meta_server_config *cfg,
			    struct kvfs_meta_server **ret);

/* The bound port (useful with port 0). */
uint16_t kvfs_meta_server_port(const struct kvfs_meta_server *s);

/* Stop serving (waits for running handlers) and free. Accepts NULL. */
void kvfs_meta_server_destroy(struct kvfs_meta_server *s);

/* The HTTP status for a negative errno (the one place the sign flips for HTTP). */
unsigned kvfs_meta_http_status(int err);
