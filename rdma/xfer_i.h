/* SPDX-License-Identifier: MIT */
/*
 * xfer_i.h - private to rdma/: the backend ops table, the request a backend is handed, and the
 * few engine calls a backend may make. The engine's own objects (the engine, batches, the peer
 * table's entries) are in engine_i.h, which backends do not include.
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
 *
 * Peers. The engine owns the one peer table (peers.c): for each remote node its incarnation,
 * whether it is down, and which backend carries it. Unknown node -EHOSTUNREACH, down or other
 * incarnation -ESTALE, else the op goes to the peer's backend. A backend keeps no table of its
 * own: what it needs per peer (addresses, connections, queues) is its "backend peer", an object
 * it creates in its first peer_set() for the node and the engine then keeps in the node's entry,
 * one slot per backend. The engine hands that object back in every per-peer call (check_op,
 * peer_set, peer_down, and req->bpeer for post and cancel), so a backend never looks a node up.
 * Entries and backend peers live until the engine is destroyed: a backend frees its peers in
 * fini(), walking its slots with kvfs_xfer_peer_next(). A node moved to another backend keeps its
 * old backend peer (down) for when it comes back.
 *
 * Lock order: batch->lock is a leaf; nothing else is held while taking it except by the
 * backend's own locks, which must never be held while calling kvfs_xfer_seg_done() if the
 * backend's cancel() takes them (cancel runs without batch->lock held). The engine holds none
 * of its locks while calling into a backend; kvfs_xfer_peer_next() takes the peer table's lock,
 * so a backend must not call it from peer_set() or peer_down().
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "xfer.h"

struct kvfs_xfer_batch;
struct kvfs_xfer_engine;
struct kvfs_xfer_peer;

/* One transfer after merging: ops[order[first] .. order[first + nops - 1]] of the batch. */
struct kvfs_xfer_seg {
	uint8_t dir;	     /* enum kvfs_xfer_dir */
	uint64_t remote_off; /* in the peer's arena */
	void *buf;	     /* local memory, len bytes */
	uint64_t len;	     /* bytes */
	uint32_t first;	     /* index into batch->order of its first op */
	uint32_t nops;	     /* ops merged into it */
	bool done;	     /* guarded by batch->lock */
};

/* Everything one batch sends to one peer, posted as one call. Read-only for the backend. */
struct kvfs_xfer_req {
	struct kvfs_xfer_batch *batch;	   /* the batch it belongs to */
	enum kvfs_xfer_backend_id backend; /* the backend it is posted to */
	uint32_t node;			   /* the peer */
	uint32_t incarnation;		   /* the incarnation the ops named (0 = any) */
	void *bpeer;		     /* the backend's own peer object for node (NULL: local) */
	struct kvfs_xfer_peer *peer; /* engine-private: the node's table entry, NULL: local */
	struct kvfs_xfer_seg *segs;  /* [nsegs], in (direction, remote offset) order */
	uint32_t nsegs;		     /* at least 1 */
	uint32_t pending;	     /* segments not yet done; guarded by batch->lock */
};

/*
 * A transport. Slots left NULL make the matching engine call fail with -EOPNOTSUPP (or, for
 * check_op, cancel, peer_down, mem_reg, mem_dereg and counters, mean "nothing to do").
 */
struct kvfs_xfer_backend_ops {
	const char *name; /* for logs: "local", "tcp", "verbs" */
	/* Largest merged transfer the backend accepts (bytes); 0 = no limit. */
	uint64_t max_transfer;

	/*
	 * Set up for @eng (kept for kvfs_xfer_peer_next); *ret_priv is passed back to every other
	 * call. A failure leaves the backend out: its peers are unreachable (see engine.c).
	 */
	int (*init)(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_config *cfg,
		    void **ret_priv);
	/*
	 * Tear down, after every batch is done: stop the backend's threads, free every backend
	 * peer it created (kvfs_xfer_peer_next), then the rest. Accepts a half-built backend.
	 */
	void (*fini)(void *priv);

	/*
	 * Vet one op before merging (range in the peer's arena, incarnation). @bpeer is the op's
	 * backend peer, NULL for this node. Returns 0 or the op's negative errno; a failed op is
	 * completed at once and not merged.
	 */
	int (*check_op)(void *priv, void *bpeer, const struct kvfs_xfer_op *op);

	/*
	 * Start every segment of @req (to req->bpeer). Must not block on the network. Each segment
	 * is later (or before returning) reported exactly once with kvfs_xfer_seg_done().
	 * Returning an error means nothing was started and nothing will be reported: the engine
	 * fails the whole request with that error.
	 */
	int (*post)(void *priv, struct kvfs_xfer_req *req);

	/* The deadline passed with @req still posted: stop touching its buffers (see above). */
	void (*cancel)(void *priv, struct kvfs_xfer_req *req);

	/*
	 * Peer @node is at @addr with @incarnation (0 = unknown), up. *bpeer is NULL the first
	 * time this backend is asked to carry @node: on success the backend stores its new backend
	 * peer there (never NULL), which the engine keeps in the node's entry; later calls pass it
	 * back. On failure *bpeer is left as it was. Called with no engine lock held, for one node
	 * from one thread at a time; may block resolving @addr, never on the network. NULL: the
	 * backend cannot carry remote peers (peer_set answers -EOPNOTSUPP).
	 */
	int (*peer_set)(void *priv, uint32_t node, uint32_t incarnation, const char *addr,
			void **bpeer);

	/* @bpeer's node is dead or moved away: fail its posted requests with -ESTALE now, refuse
	 * new ones until the next peer_set(). */
	void (*peer_down)(void *priv, void *bpeer);

	/* Where this backend serves the arena ("host:port"); -ENOENT when it does not. */
	int (*listen_addr)(void *priv, char *ret_buf, size_t len);

	/* Register / deregister a caller's buffer (verbs). See kvfs_xfer_mem_reg / _dereg. */
	int (*mem_reg)(void *priv, void *buf, size_t len);
	int (*mem_dereg)(void *priv, void *buf);

	/* Add the backend's own counters (wrs, doorbells, completions) to @ret. */
	void (*counters)(void *priv, struct kvfs_xfer_counters *ret);
};

extern const struct kvfs_xfer_backend_ops kvfs_xfer_local_ops; /* local.c */
extern const struct kvfs_xfer_backend_ops kvfs_xfer_tcp_ops;   /* tcp/ */
#if KVFS_HAVE_RDMA
extern const struct kvfs_xfer_backend_ops kvfs_xfer_verbs_ops; /* verbs/ */
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

/*
 * Walk backend @id's peers: returns the backend peer of the first entry at or after *pos (in
 * node order) that has one for @id and moves *pos past it, or NULL when none is left. Start
 * with *pos = 0. Takes the peer table's lock for reading; entries added meanwhile may be missed
 * or seen twice, which callers (a pass over work to do, fini) tolerate.
 */
void *kvfs_xfer_peer_next(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id, size_t *pos);
