/* SPDX-License-Identifier: MIT */
/*
 * routes.h - private to metadata/: the seven routes of SGLang's mini 3FS metadata server
 * (docs/DESIGN.md, "3FS compatibility") as a route set of kvfs-meta's HTTP server, over the
 * store of hf3fs.h. Their request bodies are decoded by body.h.
 *
 * The server core (metadata/http/server.c) knows nothing of 3FS: it resolves a path through
 * kvfs_meta_3fs_routes, checks method, token and size, and hands over the raw body. Here the
 * hot bodies take the single-pass parser (fastparse.c) and everything else jansson; answers
 * are written by hand (no intermediate tree), errors go back as a negative errno with a
 * message, which the server maps to the HTTP status in its one place.
 */
#pragma once

#include <stdbool.h>

struct kvfs_meta_hf3fs;
struct kvfs_meta_route_set;

/* The context of kvfs_meta_3fs_routes (pass it as routes_ctx of the server config). */
struct kvfs_meta_3fs_ctx {
	struct kvfs_meta_hf3fs *store; /* borrowed; NULL: the routes answer 503 */
	bool no_fast_parse; /* decode every body with jansson (for comparisons and tests) */
};

extern const struct kvfs_meta_route_set kvfs_meta_3fs_routes;
