/* SPDX-License-Identifier: MIT */
/*
 * native.h - the context of kvfs-meta's native /v1/ routes: the metadata state machine it
 * serves and the membership of the nodes that share it.
 *
 * Membership: a node registers (a new incarnation each time), heartbeats every heartbeat_ms
 * with its (id, incarnation), and leaves. A timer thread declares dead every node that sent no
 * heartbeat for node_timeout_ms: meta_state_node_leave_inc() then drops its files in lru pools
 * and marks them lost in none pools. A heartbeat naming an incarnation that is not the current
 * one, or a node declared dead, answers 410 ESTALE: the node must register again (and drop its
 * arena's contents, which are no longer trusted).
 *
 * After kvfs-meta itself restarts, every node it knew that had not left is given one
 * node_timeout_ms to heartbeat again; its heartbeat resumes it with the same incarnation (its
 * pages stay valid, meta_state_node_resume()). A node that does not come back is declared dead.
 *
 * Lock order: native->lock before the state machine's lock. The membership table is guarded by
 * native->lock; declaring a node dead and resuming one run under it, so a heartbeat never sees
 * a node as alive that the state machine has declared dead.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct meta_state;
struct kvfs_meta_native;

#define KVFS_META_HEARTBEAT_MS	  1000u
#define KVFS_META_NODE_TIMEOUT_MS 6000u

struct kvfs_meta_native_config {
	struct meta_state *state; /* borrowed; must outlive the context */
	uint32_t heartbeat_ms;	  /* told to nodes at register; 0 = KVFS_META_HEARTBEAT_MS */
	uint32_t node_timeout_ms; /* declared dead after this silence; 0 = default */
};

/*
 * Create the context (pass it as native_ctx of the server config) and start its timer thread.
 * Nodes the state machine knows and that have not left get one timeout to heartbeat again.
 * Returns 0 and *ret, -EINVAL, -ENOMEM, or the errno of pthread_create.
 */
int kvfs_meta_native_create(const struct kvfs_meta_native_config *cfg,
			    struct kvfs_meta_native **ret);

/* Stop the timer thread and free. The server must be stopped first. Accepts NULL. */
void kvfs_meta_native_destroy(struct kvfs_meta_native *n);

/*
 * Prometheus text of the native state for /metrics: nodes (alive, arena bytes used/free per
 * node, declared dead), pools (pages used/free, files, evictions) and the state machine's
 * counters. Returns 0 and a malloc'd *ret_text of *ret_len bytes, or -ENOMEM. Signature of
 * kvfs_meta_server_config.native_metrics.
 */
int kvfs_meta_native_metrics(void *ctx, char **ret_text, size_t *ret_len);
