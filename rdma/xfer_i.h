/* SPDX-License-Identifier: MIT */
/*
 * xfer_i.h - private to rdma/: the backend ops table and the engine's internal objects.
 *
 * How a batch flows:
 *   submit    the engine validates the ops, routes each to a backend (or fails it at once),
 *             sorts each peer's ops by (direction, remote offset) and merges neighbours into
 *             struct kvfs_xfer_seg. All segments of one peer form one struct kvfs_xfer_req,
 *             which is handed to the backend's post() in a single call.
 *   complete  the backend reports each segment exactly once with kvfs_xfer_seg_done(), from any
 *             thread (the submitting thread for `local`, a completion thread for tcp/verbs).
 *             The engine writes the results of the segment's ops, counts, and when the batch's
 *             last segment is done marks it done and signals its condvar.
 *   deadline  whoever polls or waits past the deadline times the batch out: every segment not
 *             yet done fails with -ETIMEDOUT and the backend's cancel() is called for each
 *             request still posted. cancel() must guarantee that the backend touches none of
 *             the request's buffers, and calls kvfs_xfer_seg_done() for none of its segments,
 *             after it returns (tcp: forget replies not yet started, drop the connection only
 *             when one is half received or half sent; verbs: move the QP to error and drain).
 *             A kvfs_xfer_seg_done() that races with cancel (before cancel returns) is safe:
 *             the caller whose deadline fired holds a reference on the batch until cancel
 *             returns, and a segment completed twice keeps its first result.
 *   peers     ops to another node are routed through the engine's peer table (xfer.c):
 *             unknown node -EHOSTUNREACH, down or other incarnation -ESTALE, else the peer's
 *             backend, which learns about the peer through peer_set() and peer_down().
 *
 * Lock order: batch->lock is a leaf; nothing else is held while taking it except by the
 * backend's own locks, which must never be held while calling kvfs_xfer_seg_done() if the
 * backend's cancel() takes them (cancel runs without batch->lock held).
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "xfer.h"

struct kvfs_xfer_batch;
struct kvfs_xfer_engine;

/* One transfer after merging: ops[order[first] .. order[first + nops - 1]] of the batch. */
struct kvfs_xfer_seg {
	uint8_t dir;	     /* enum kvfs_xfer_dir */
	uint64_t remote_off; /* in the peer's arena */
	void *buf;	     /* local memory, len bytes */
	uint64_t len;
	uint32_t first; /* index into batch->order of its first op */
	uint32_t nops;
	bool done; /* guarded by batch->lock */
};

/* Everything one batch sends to one peer, posted as one call. */
struct backend_counters;

struct kvfs_xfer_req {
	struct kvfs_xfer_batch *batch;
	enum kvfs_xfer_backend_id backend;
	uint32_t node;
	uint32_t incarnation; /* the incarnation the ops named (0 = any) */
	struct kvfs_xfer_seg *segs;
	uint32_t nsegs;
	uint32_t pending;		   /* segments not yet done; guarded by batch->lock */
	void *backend_ctx;		   /* free for the backend while posted */
	struct backend_counters *peer_cnt; /* engine-private: the peer's counters, or NULL */
};

/*
 * A transport. Slots left NULL make the matching engine call fail with -EOPNOTSUPP (or, for
 * check_op and cancel, mean "nothing to do").
 */
struct kvfs_xfer_backend_ops {
	const char *name;
	/* Largest merged transfer the backend accepts (bytes); 0 = no limit. */
	uint64_t max_transfer;

	/* Set up for @eng; *ret_priv is passed back to every other call. */
	int (*init)(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_config *cfg,
		    void **ret_priv);
	void (*fini)(void *priv);

	/*
	 * Vet one op before merging (range in the peer's arena, incarnation). Returns 0 or the
	 * op's negative errno; a failed op is completed at once and not merged.
	 */
	int (*check_op)(void *priv, const struct kvfs_xfer_op *op);

	/*
	 * Start every segment of @req. Must not block on the network. Each segment is later (or
	 * before returning) reported exactly once with kvfs_xfer_seg_done(). Returning an error
	 * means nothing was started and nothing will be reported: the engine fails the whole
	 * request with that error.
	 */
	int (*post)(void *priv, struct kvfs_xfer_req *req);

	/* The deadline passed with @req still posted: stop touching its buffers (see above). */
	void (*cancel)(void *priv, struct kvfs_xfer_req *req);

	/*
	 * The peer table changed: @node is at @addr with @incarnation (0 = unknown), up. Called
	 * with no engine lock held; may block resolving @addr, never on the network. NULL: the
	 * backend cannot carry remote peers (peer_set answers -EOPNOTSUPP).
	 */
	int (*peer_set)(void *priv, uint32_t node, uint32_t incarnation, const char *addr);

	/* @node is dead: fail its posted requests with -ESTALE now, refuse new ones. */
	void (*peer_down)(void *priv, uint32_t node);

	/* Where this backend serves the arena ("host:port"); -ENOENT when it does not. */
	int (*listen_addr)(void *priv, char *ret_buf, size_t len);

	/* Added for verbs; NULL = nothing to do (0). See kvfs_xfer_mem_reg / _dereg. */
	int (*mem_reg)(void *priv, void *buf, size_t len);
	int (*mem_dereg)(void *priv, void *buf);

	/* Add the backend's own counters (wrs, doorbells, completions) to @ret. */
	void (*counters)(void *priv, struct kvfs_xfer_counters *ret);
};

extern const struct kvfs_xfer_backend_ops kvfs_xfer_local_ops;
extern const struct kvfs_xfer_backend_ops kvfs_xfer_tcp_ops;
#if KVFS_HAVE_RDMA
extern const struct kvfs_xfer_backend_ops kvfs_xfer_verbs_ops; /* xfer_verbs.c */
#endif

/*
 * Report segment @seg of @req finished with @result (0 or a negative errno). Thread-safe, never
 * blocks beyond batch->lock. May release the batch's last reference (if the caller already put
 * it after a timeout), so @req must not be used after this returns.
 */
void kvfs_xfer_seg_done(struct kvfs_xfer_req *req, uint32_t seg, int result);

/* The op behind the i-th op of @seg, for backends that copy per op (e.g. scatter lists). */
struct kvfs_xfer_op *kvfs_xfer_seg_op(struct kvfs_xfer_req *req, const struct kvfs_xfer_seg *seg,
				      uint32_t i);
