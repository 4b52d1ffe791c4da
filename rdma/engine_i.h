/* SPDX-License-Identifier: MIT */
/*
 * engine_i.h - private to the engine's own files (engine.c, batch.c, peers.c): the engine, its
 * backend slots, the counters and the peer table's entries. Backends see none of this; their
 * contract is xfer_i.h.
 *
 * Lock order: eng->lock, eng->peers_lock and batch->lock are never held together, and none of
 * them is held while calling into a backend.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "xfer_i.h"

#define NO_BACKEND KVFS_XFER_NBACKENDS /* a route or a table entry that no backend carries */

/* Monotonic counts of one backend or one peer; atomics, no lock. */
struct xfer_counters {
	_Atomic uint64_t ops;	    /* operations routed to it */
	_Atomic uint64_t transfers; /* transfers issued after merging */
	_Atomic uint64_t bytes;	    /* bytes moved by successful transfers */
	_Atomic uint64_t errors;    /* operations that failed */
};

/* One slot of the engine: a backend as built into this binary. Set at create, then constant. */
struct xfer_backend {
	const struct kvfs_xfer_backend_ops *ops; /* NULL: not built / not available */
	void *priv;				 /* what ops->init returned */
	int status;				 /* 0, or why ops is NULL (init's error,
						  * -EOPNOTSUPP not built) */
	struct xfer_counters cnt;		 /* ops it carried, whatever the peer */
};

/*
 * One remote node in the peer table (peers.c). Entries are allocated one by one and never freed
 * before the engine is destroyed (a dead peer is marked down), so a request, a backend or a
 * route may keep a pointer to one.
 */
struct kvfs_xfer_peer {
	uint32_t node;	      /* constant */
	uint32_t incarnation; /* current incarnation, 0 = unknown (any); guarded by peers_lock */
	uint8_t backend;      /* carrying its ops; NO_BACKEND (routes nowhere, counts as absent)
			       * until a backend accepted it; guarded by peers_lock */
	bool down;	      /* declared dead: ops fail with -ESTALE; guarded by peers_lock */
	/* Each backend's own peer object, set by its first successful peer_set, then constant
	 * until destroy; guarded by peers_lock. */
	void *bpeer[KVFS_XFER_NBACKENDS];
	struct xfer_counters cnt; /* whatever backend carried its ops; atomics */
};

struct kvfs_xfer_engine {
	struct kvfs_xfer_config cfg; /* token and listen addresses cleared: backends copied them */
	struct xfer_backend be[KVFS_XFER_NBACKENDS]; /* indexed by enum kvfs_xfer_backend_id */

	pthread_mutex_t lock;		  /* guards inflight */
	struct kvfs_xfer_batch *inflight; /* batches not done (batch.c), guarded by lock */

	pthread_rwlock_t peers_lock;   /* the peer table: submit reads, membership writes */
	struct kvfs_xfer_peer **peers; /* sorted by node; guarded by peers_lock */
	size_t npeers;		       /* guarded by peers_lock */
	size_t peers_cap;	       /* guarded by peers_lock */
};

/* engine.c: add to @c (NULL: nothing). */
void kvfs_xfer_cnt_add(struct xfer_counters *c, uint64_t ops, uint64_t transfers, uint64_t bytes,
		       uint64_t errors);

/* batch.c: wait (up to each one's deadline) until no batch of @eng is in flight. */
void kvfs_xfer_batches_drain(struct kvfs_xfer_engine *eng);

/*
 * peers.c: what the table says about @op->node. A copy of the entry is cached in @rc for a run of
 * ops to the same node; zero it before the first call.
 */
struct xfer_route {
	bool valid;		     /* the fields below describe node */
	uint32_t node;		     /* the node looked up */
	struct kvfs_xfer_peer *peer; /* its entry, NULL: not in the table */
	uint32_t incarnation;	     /* the entry's, at lookup */
	uint8_t backend;	     /* the entry's, at lookup; NO_BACKEND: unreachable */
	bool down;		     /* the entry's, at lookup */
	void *bpeer;		     /* the entry's backend peer for backend */
};

/*
 * Which backend carries @op: KVFS_XFER_LOCAL for this node, the entry's backend for another, or
 * NO_BACKEND with *ret_err set (-EHOSTUNREACH: not in the table or no backend; -ESTALE: down, or
 * another incarnation than the table's). Takes peers_lock for reading when @rc misses.
 */
unsigned kvfs_xfer_route(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_op *op,
			 struct xfer_route *rc, int *ret_err);

/*
 * The entry of @node, or NULL, and in *ret_bpeer its backend peer for @backend (NULL when it has
 * none). Takes peers_lock for reading.
 */
struct kvfs_xfer_peer *kvfs_xfer_peer_lookup(struct kvfs_xfer_engine *eng, uint32_t node,
					     unsigned backend, void **ret_bpeer);

/* Free the table (after every backend's fini). */
void kvfs_xfer_peers_fini(struct kvfs_xfer_engine *eng);
