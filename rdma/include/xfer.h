/* SPDX-License-Identifier: MIT */
/*
 * xfer.h - the transfer engine, the one rdma/ header other modules see: every byte that moves
 * between a node's arena and a buffer goes through one batch API, whatever carries it (memcpy,
 * TCP, RDMA verbs).
 *
 * A caller fills an array of struct kvfs_xfer_op and submits it as one batch. The engine groups
 * the operations by peer, sorts them by remote offset, and merges neighbours that are contiguous
 * both in the peer's arena and in local memory into one transfer, so a 64-page contiguous read
 * costs one transfer. The batch is a future: poll it or wait on it; each operation gets its own
 * result. Every batch has a deadline; operations not done by then fail with -ETIMEDOUT, and
 * operations to a peer declared dead fail with -ESTALE.
 *
 * Backends fill struct kvfs_xfer_backend_ops (see xfer_i.h). The engine picks one per peer:
 * `local` for this node; for other nodes the backend named when the peer was added to the peer
 * table with kvfs_xfer_peer_set(): `tcp`, or `verbs` (RDMA, built only with libibverbs and
 * librdmacm, see rdma/verbs/) where both sides have RDMA. kvfs_xfer_backend_status() says
 * whether a backend is usable on this engine (and why not).
 *
 * The peer table is fed by whoever knows the membership (the daemon, from the metadata
 * service): kvfs_xfer_peer_set() when a node joins or restarts with a new incarnation,
 * kvfs_xfer_peer_down() when it is declared dead, which fails its operations in flight with
 * -ESTALE at once instead of letting them run into their deadline.
 *
 * Errors an operation can end with, one meaning each (STYLE.md rule 4):
 *   -EINVAL        range outside the peer's arena (decided by the peer), malformed op
 *   -EHOSTUNREACH  no such peer in the table, or its address refuses connections
 *   -ESTALE        the peer is down, or the incarnation named is not the peer's current one
 *   -ETIMEDOUT     not done by the batch's deadline (the peer did not answer in time)
 *   -EACCES        the peer refused this node's cluster token
 *   -EIO           the connection broke while the operation was in flight
 *   -EPROTO        the peer sent a malformed reply (the connection is dropped)
 */
#pragma once

#include <stdint.h>
#include <stddef.h>

struct kvfs_arena;
struct kvfs_xfer_engine;
struct kvfs_xfer_batch;

enum kvfs_xfer_dir {
	KVFS_XFER_READ = 0,  /* peer arena -> local buffer */
	KVFS_XFER_WRITE = 1, /* local buffer -> peer arena */
};

struct kvfs_xfer_op {
	uint8_t dir;	      /* enum kvfs_xfer_dir */
	uint32_t node;	      /* peer node id (may be this node) */
	uint32_t incarnation; /* the peer incarnation the offset belongs to; 0 = any */
	uint64_t remote_off;  /* byte offset in the peer's arena */
	void *buf;	      /* local buffer */
	uint32_t len;	      /* bytes */
	int result;	      /* out: 0 or a negative errno, valid once the batch is done */
};

enum kvfs_xfer_backend_id {
	KVFS_XFER_LOCAL = 0,
	KVFS_XFER_TCP = 1,
	KVFS_XFER_VERBS = 2,
	KVFS_XFER_NBACKENDS
};

#define KVFS_XFER_TOKEN_MAX 128 /* bytes of a cluster token */

struct kvfs_xfer_config {
	uint32_t self_node;	     /* this node's id */
	uint32_t self_incarnation;   /* this node's incarnation */
	struct kvfs_arena *arena;    /* this node's arena (the local backend serves it) */
	uint64_t default_timeout_ns; /* deadline of a batch submitted with timeout 0 */

	/* Remote peers; zeroed fields: no token, no tcp server, 2 connections per tcp peer. */
	const char *token;	 /* cluster token, copied; NULL or "" = none; at most
				  * KVFS_XFER_TOKEN_MAX bytes */
	const char *listen_addr; /* "host:port" the tcp server serves this arena on; port 0 picks
				  * a free one (see kvfs_xfer_listen_addr); NULL = no server */
	uint32_t tcp_conns;	 /* connections per tcp peer; 0 = 2 */

	/* The verbs listener, and flags for the whole engine; zeroed: none. */
	const char *verbs_listen_addr; /* "ip:port" of an RDMA device's address where rdma_cm
					* serves this arena; port 0 picks a free one (see
					* kvfs_xfer_backend_listen_addr); NULL = no server (outgoing
					* connections only) */
	uint32_t flags;		       /* KVFS_XFER_F_* */
};

/*
 * No merging: every op is its own transfer, and the verbs backend posts each as one signalled
 * WR with its own ibv_post_send() (one doorbell per op). Only for measuring what merging buys.
 */
#define KVFS_XFER_F_PER_OP 0x1u

/* Counters per backend; all monotonic. */
struct kvfs_xfer_counters {
	uint64_t ops;	    /* operations submitted */
	uint64_t transfers; /* transfers issued after merging */
	uint64_t bytes;	    /* bytes moved */
	uint64_t errors;    /* operations that failed */
	/* verbs only (zero for the other backends): */
	uint64_t wrs;	      /* work requests posted */
	uint64_t doorbells;   /* ibv_post_send() calls */
	uint64_t completions; /* work completions polled from the CQs */
};

/* Create / destroy the engine. Destroy waits for batches in flight. Destroy accepts NULL. */
int kvfs_xfer_engine_create(const struct kvfs_xfer_config *cfg, struct kvfs_xfer_engine **ret);
void kvfs_xfer_engine_destroy(struct kvfs_xfer_engine *eng);

/*
 * Submit @n operations as one batch with a deadline @timeout_ns from now (0: the engine's
 * default). The @ops array must stay valid, and untouched by the caller, until the batch is
 * done and released. Returns 0 and *ret_batch (a reference the caller must put), or -EINVAL for
 * a malformed operation (zero length, unknown direction), -ENOMEM.
 * Operations to an unknown peer complete with -EHOSTUNREACH; to an older incarnation of a peer
 * with -ESTALE. Never blocks on the network.
 */
int kvfs_xfer_submit(struct kvfs_xfer_engine *eng, struct kvfs_xfer_op *ops, size_t n,
		     uint64_t timeout_ns, struct kvfs_xfer_batch **ret_batch);

/* Returns 1 when the batch is done, 0 when not yet. Never blocks. */
int kvfs_xfer_poll(struct kvfs_xfer_batch *batch);

/*
 * Block until the batch is done (every operation succeeded, failed, or hit the deadline).
 * Returns 0 when every operation succeeded, else the first failed operation's negative errno.
 */
int kvfs_xfer_wait(struct kvfs_xfer_batch *batch);

/* Release the caller's reference. Accepts NULL. A batch still in flight is completed first. */
void kvfs_xfer_batch_put(struct kvfs_xfer_batch *batch);

/* Convenience: submit, wait, put. Returns kvfs_xfer_wait's result. */
int kvfs_xfer_run(struct kvfs_xfer_engine *eng, struct kvfs_xfer_op *ops, size_t n,
		  uint64_t timeout_ns);

/* Copy the counters of backend @id. */
void kvfs_xfer_get_counters(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
			    struct kvfs_xfer_counters *ret);

const char *kvfs_xfer_backend_name(enum kvfs_xfer_backend_id id);

/* Copy the counters of peer @node (whatever backend carried its operations; ops, transfers
 * after merging, bytes, errors). Returns 0, or -ENOENT for a node not in the peer table. */
int kvfs_xfer_get_peer_counters(struct kvfs_xfer_engine *eng, uint32_t node,
				struct kvfs_xfer_counters *ret);

/*
 * Add or update peer @node (not this node) in the peer table: its current @incarnation
 * (0 = unknown: the peer's answer decides), its data address @addr ("host:port", "[v6]:port")
 * and the @backend that carries its operations (KVFS_XFER_TCP or KVFS_XFER_VERBS). A peer that
 * was down is up again. When the incarnation or the address changes, operations in flight to
 * the old one fail with -ESTALE and new ones go to the new address. May block resolving a host
 * name; does not connect (connections are made on first use, by the backend's own threads).
 * Calls for one node must not run concurrently with each other (one membership thread makes
 * them). Returns 0, -EINVAL (self node, bad address), -EOPNOTSUPP (backend not available), -ENOMEM.
 */
int kvfs_xfer_peer_set(struct kvfs_xfer_engine *eng, uint32_t node, uint32_t incarnation,
		       const char *addr, enum kvfs_xfer_backend_id backend);

/*
 * Declare @node dead: its operations in flight fail with -ESTALE promptly (without waiting for
 * their deadline) and new ones fail with -ESTALE at submit, until kvfs_xfer_peer_set() brings
 * it back. Never blocks on the network. Returns 0 or -ENOENT for a node not in the table.
 */
int kvfs_xfer_peer_down(struct kvfs_xfer_engine *eng, uint32_t node);

/*
 * Whether backend @id can carry peers on this engine: 0 when it can, -EOPNOTSUPP when it is not
 * built (verbs without libibverbs/librdmacm), else the error its initialisation failed with
 * (e.g. -ENODEV: no RDMA device; then kvfs_xfer_peer_set() with it answers -EOPNOTSUPP).
 */
int kvfs_xfer_backend_status(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id);

/*
 * Register @len bytes at @buf as a local buffer that transfers may use without a bounce copy
 * (verbs: an ibv_reg_mr on each device; other backends: nothing to do). Buffers inside the
 * engine's own arena never need it. The range must stay mapped until kvfs_xfer_mem_dereg(),
 * which must not be called while a transfer using it is in flight. Returns 0, -EEXIST (@buf
 * already registered), -EINVAL, -ENOMEM, or the device's error. May block (pins memory).
 */
int kvfs_xfer_mem_reg(struct kvfs_xfer_engine *eng, void *buf, size_t len);

/* Undo kvfs_xfer_mem_reg(eng, @buf, ...). Returns 0 or -ENOENT. */
int kvfs_xfer_mem_dereg(struct kvfs_xfer_engine *eng, void *buf);

/*
 * Like kvfs_xfer_listen_addr() for backend @id (KVFS_XFER_TCP or KVFS_XFER_VERBS): where it
 * serves this node's arena, as "host:port". -ENOENT when it does not.
 */
int kvfs_xfer_backend_listen_addr(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
				  char *ret_buf, size_t len);

/*
 * The address the tcp server actually listens on, as "host:port" (the port the kernel picked
 * when cfg->listen_addr asked for port 0). Returns 0 and writes at most @len bytes including
 * the NUL to @ret_buf, -ENOENT when there is no server, -ENOSPC when @len is too small.
 */
int kvfs_xfer_listen_addr(struct kvfs_xfer_engine *eng, char *ret_buf, size_t len);
