/* SPDX-License-Identifier: MIT */
/*
 * meta_http.h - the `http` implementation of struct kvfs_meta_ops: every op is one call to
 * kvfs-meta's native API (docs/API.md) over libcurl.
 *
 * Connections: a pool of curl easy handles, each holding one keep-alive connection. A call takes
 * a handle from a mutex-guarded free list (or makes a new one), uses it without any lock held,
 * and puts it back; so there are as many connections as concurrent callers, never more.
 *
 * Deadlines and retries: every call finishes within cfg->timeout_ms, retries included. Only the
 * idempotent operations are retried (lookup, getattr, layout, readdir, statfs, getxattr,
 * listxattr, pool_list, pool_get, commit, close, node_leave, and the heartbeat), after a
 * transport failure or a 502/503/504, with exponential backoff (10 ms, 20 ms, ...). create,
 * mkdir, unlink, rmdir, rename, setattr, alloc, abort, open, setxattr, removexattr,
 * pool_create, pool_drop and node_register are sent once. When the service cannot be reached
 * (refused, reset, timed out) a call fails with -EIO; an answer from the service fails with the
 * errno of its JSON body ({"errno": N}).
 *
 * Membership: node_register (through the ops table) records this node's identity; the ops
 * table's node_self, heartbeat, node_list and node_usage slots are filled. With
 * cfg->heartbeat the client then runs a heartbeat thread of its own, every heartbeat_ms the
 * service asked for. When the service answers 410 ESTALE (the node was declared dead, or the
 * service forgot the incarnation) the thread registers again with the same id and calls
 * cfg->reregistered with the new incarnation: every page of the old incarnation is gone and the
 * daemon must drop its arena's contents and cached layouts. When the service is unreachable the
 * thread keeps trying; when it comes back (a restarted kvfs-meta resumes a node that heartbeats
 * with its current incarnation) nothing changes for the node. When the set of alive nodes
 * changes (the heartbeat's "epoch"), cfg->peers_changed gets the new list. Both callbacks run
 * on the heartbeat thread with no client lock held; they may call the client (not
 * kvfs_meta_destroy) and should be quick.
 *
 * The removed() callback of struct kvfs_meta_callbacks is not available over HTTP: names the
 * service removes on its own (eviction, a dead node) are noticed at the next lookup/open.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

struct kvfs_meta_http_config {
	const char *url;     /* "http://HOST:PORT" of kvfs-meta (a trailing '/' is fine) */
	const char *token;   /* bearer token for mutating routes; NULL/empty: none */
	uint32_t timeout_ms; /* deadline of every call, retries included; 0 = 5000 */
	uint32_t retries;    /* extra attempts of an idempotent call; 0 = 4 */
	bool heartbeat;	     /* run a heartbeat thread after node_register */
	void (*reregistered)(void *ctx, const struct kvfs_node_info *info);
	void (*peers_changed)(void *ctx, const struct kvfs_node_info *alive, size_t n);
	void *ctx; /* passed to the callbacks */
};

/*
 * Create the client. It does not contact the service (a service that is down makes the calls
 * fail, not this). Returns 0 and *ret (destroy with kvfs_meta_destroy(), which stops the
 * heartbeat thread without leaving), -EINVAL for a bad config (no url, not http://), -ENOMEM.
 */
int kvfs_meta_http_create(const struct kvfs_meta_http_config *cfg, struct kvfs_meta **ret);
