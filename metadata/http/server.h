/* SPDX-License-Identifier: MIT */
/*
 * server.h - kvfs-meta's HTTP server core: listening, request bodies, auth, routing, errors,
 * /metrics and /healthz, and the seven 3FS routes over hf3fs.h. The native /v1/ routes are a
 * table of handlers (struct kvfs_meta_route, filled in native.c) that run on whatever context
 * the program passes; this file only decodes the body, checks auth, calls the handler and
 * encodes the answer. The wire format is docs/API.md.
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

struct kvfs_meta_hf3fs;
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

#define KVFS_META_BODY_MAX (16u << 20)

struct kvfs_meta_server_config {
	const char *listen;	       /* "ADDR:PORT" or "[V6ADDR]:PORT"; port 0 = any free */
	const char *token;	       /* NULL/empty: no auth */
	size_t body_max;	       /* bytes; 0 = KVFS_META_BODY_MAX */
	unsigned threads;	       /* 0 = number of online CPUs */
	struct kvfs_meta_hf3fs *hf3fs; /* borrowed; NULL: the 3FS routes answer 503 */
	const struct kvfs_meta_route *native; /* borrowed; NULL: kvfs_meta_native_routes */
	size_t nnative;
	void *native_ctx; /* passed to native handlers */
	/* Appended to /metrics when set: malloc'd Prometheus text of the native state (e.g.
	 * kvfs_meta_native_metrics); called on a server thread with native_ctx. */
	int (*native_metrics)(void *native_ctx, char **ret_text, size_t *ret_len);
	bool no_fast_parse; /* decode every 3FS body with jansson (for comparisons and tests) */
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
