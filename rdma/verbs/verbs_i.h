/* SPDX-License-Identifier: MIT */
/*
 * verbs_i.h - private to rdma/verbs/: the `verbs` backend's design, its objects and the calls
 * between its files.
 *
 * The backend does one-sided RDMA READ and WRITE on RC queue pairs that librdmacm sets up. It
 * is built only when libibverbs and librdmacm are found (KVFS_HAVE_RDMA); otherwise the
 * engine's verbs slot stays empty and kvfs_xfer_peer_set(..., KVFS_XFER_VERBS) answers
 * -EOPNOTSUPP, so the caller falls back to tcp.
 *
 * Connections. Every node that serves its arena listens with rdma_cm on cfg->verbs_listen_addr.
 * A node reaching a peer opens its own RC connection to it (one QP per peer and direction): the
 * active side posts every READ and WRITE, the passive side's QP is only a target and its CPU
 * never sees a transfer. The connect's private data carries the client's node id, incarnation
 * and a hash of the cluster token (a guard against joining the wrong cluster by mistake, not
 * authentication: whoever learns an rkey can use it); the accept's carries the server's node id,
 * incarnation, and its arena's address, length and rkey (struct cm_priv). A server with another
 * token rejects with EACCES in the reject's private data; a client that reached another node or
 * incarnation than the one the peer table names drops the connection (-ESTALE).
 *
 * Memory. The arena is registered once per device (REMOTE_READ | REMOTE_WRITE | LOCAL_WRITE),
 * when the device is first used (at init for a listener bound to a device's address). A local
 * buffer is used in place when it lies in the arena or in a range the caller registered with
 * kvfs_xfer_mem_reg(); any other buffer is bounced through a registered staging area per device
 * (a WRITE is copied in at post, a READ copied out at completion), and a request too large for
 * what is free there registers its buffers just for itself (ibv_reg_mr at post, ibv_dereg_mr at
 * completion). There is deliberately no implicit MR cache: without a hook on munmap a cached
 * registration silently keeps pinning the old pages when the caller frees and reuses an
 * address, and transfers then hit memory the caller no longer sees. Callers with long-lived
 * buffers (fs read-ahead, the benchmark) register them explicitly instead.
 *
 * Posting. A request (every segment of a batch for this peer) becomes WRs, in order: segments
 * whose remote ranges follow each other share one WR with one SGE per local piece (multi-SGE
 * where local memory is scattered and the remote range contiguous; the engine already merged
 * what is contiguous on both sides), up to the device's max_sge (max_sge_rd for READ) and its
 * port's max message size. The WRs of a request form one chain posted by ONE ibv_post_send() with
 * only the last WR signalled; a chain is closed early only when it would exceed the send
 * queue (SQ_DEPTH WRs). With KVFS_XFER_F_PER_OP every segment is its own signalled WR and its own
 * ibv_post_send(), for comparison. Ranges are checked against the peer's arena length before
 * anything is posted (-EINVAL per op, the rest of the batch goes on), and the incarnation the
 * ops name against the connection's (-ESTALE). Requests wait in the peer's queue while the
 * connection is being made or the send queue is full, and are posted in order.
 *
 * Completions. Each connection has its own CQ (so a CQ can never overflow: it is as deep as the
 * send queue), and all CQs of one device share one completion channel served by one completion
 * thread. The thread sleeps on the channel instead of busy-polling: soft-RoCE (and a daemon that
 * shares its cores with FUSE and the applications) needs the CPU that a poller would burn, and
 * with one signalled WR per batch there are few wakeups to save. It drains the CQ after each
 * event (re-armed before the final poll, so nothing is missed). A chain ends with the CQE of its
 * last WR: on success that is the only CQE; after an error every later WR, signalled or not,
 * completes with an error or a flush, so the last one still arrives. wr_id is the chain's
 * address, with bit 0 set on the chain's last WR.
 *
 * Failure. Any error CQE, a DISCONNECTED event, peer_down, a changed incarnation or address, and
 * cancel (deadline) "break" the connection: the QP is moved to the error state, requests still
 * queued fail at once, posted ones complete through their flush CQEs with the break's code
 * (-EIO: connection lost; -ESTALE: peer down or replaced; -ETIMEDOUT: deadline; -EINVAL: the peer
 * refused the range or rkey), and once nothing is posted the CM thread destroys QP, CQ and id. The
 * next request reconnects. Connect failures fail what is queued: -EHOSTUNREACH (no route, no
 * listener), -EACCES (token), -ESTALE (another node or incarnation answered).
 *
 * Threads: one CM event thread per engine (all connection setup and teardown, the listener) and
 * one completion thread per device. Lock order: dev->poll_lock (held by the completion thread
 * while it polls and handles CQEs, and by the CM thread while it destroys a QP and its CQ), then
 * peer->lock, then v->lock (a rwlock: devices, registered ranges), then dev->staging_lock. The
 * engine's peer table lock (kvfs_xfer_peer_next) is taken with none of these held. No lock is
 * held across kvfs_xfer_seg_done(). ibv_post_send() runs under peer->lock (it never blocks).
 *
 * Files: verbs.c (the ops table: init/fini, peers, check_op, counters), device.c (PD, MRs,
 * staging, the caller's registered ranges), conn.c (the CM thread: connection setup and
 * teardown, the listener), post.c (requests into WR chains, posting, breaking a connection,
 * the completion thread).
 */
#pragma once

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "xfer_i.h"

#define SQ_DEPTH	   1024 /* send queue WRs per connection; also the longest chain */
#define MAX_SGE		   32	/* SGEs per WR, lowered to what the device takes */
#define RD_ATOMIC	   16	/* RDMA READs in flight per QP, lowered to the device's limit */
#define RESOLVE_TIMEOUT_MS 2000
#define LISTEN_BACKLOG	   64
#define MAX_DEVS	   8
#define STAGING_SIZE	   (16u << 20) /* bounce area per device */
#define STAGING_UNIT	   4096u
#define STAGING_UNITS	   (STAGING_SIZE / STAGING_UNIT)
#define PRIV_MAGIC	   0x6b766662u /* "kvfb" */
#define PRIV_VERSION	   1

/* Connect / accept / reject private data, big-endian on the wire (56 bytes at most in a REQ). */
struct cm_priv {
	uint32_t magic;	      /* PRIV_MAGIC */
	uint16_t version;     /* PRIV_VERSION */
	uint16_t status;      /* reject: a positive errno (EACCES) */
	uint32_t node;	      /* the sender's node id */
	uint32_t incarnation; /* and incarnation */
	uint64_t addr;	      /* arena address for RDMA (0 and len 0: no arena) */
	uint64_t len;	      /* arena length */
	uint64_t token_hash;  /* FNV-1a of the cluster token, 0 without one */
	uint32_t rkey;	      /* the arena's MR */
	uint32_t reserved;    /* 0 */
};
_Static_assert(sizeof(struct cm_priv) == 48, "cm_priv must fit an RC REQ");

struct verbs;

/* One RDMA device this engine uses: PD, then MRs and CQs, then (per connection) QPs. */
struct dev {
	struct verbs *v;	      /* the backend */
	unsigned idx;		      /* in v->devs; index of this device's MRs in struct range */
	struct ibv_context *ctx;      /* rdma_cm's open device, not ours to close */
	struct ibv_pd *pd;	      /* everything below is registered or created in it */
	struct ibv_mr *arena_mr;      /* the arena, registered once; NULL without an arena */
	char *staging;		      /* bounce area, STAGING_SIZE bytes */
	struct ibv_mr *staging_mr;    /* its registration (LOCAL_WRITE) */
	pthread_mutex_t staging_lock; /* guards staging_used */
	uint8_t staging_used[STAGING_UNITS]; /* 1 = unit taken */
	struct ibv_comp_channel *chan;	     /* every connection CQ of this device reports here */
	struct ibv_cq *passive_cq; /* for passive QPs: they post nothing, so it stays empty */
	pthread_mutex_t poll_lock; /* the completion thread's CQ use vs CQ destruction */
	int stop_efd;		   /* eventfd: stop the completion thread */
	pthread_t thread;	   /* the completion thread */
	bool thread_started;	   /* thread is running */
	uint32_t max_sge;	   /* SGEs per RDMA WRITE WR */
	uint32_t max_sge_rd;	   /* SGEs per RDMA READ WR */
	uint32_t max_msg;	   /* bytes per WR (the port's max_msg_sz, at most 1 GiB) */
	uint32_t rd_atomic;	   /* initiator depth / responder resources */
};

/* A caller-registered local range (kvfs_xfer_mem_reg). */
struct range {
	char *addr;		     /* the caller's buffer */
	size_t len;		     /* its bytes */
	struct ibv_mr *mr[MAX_DEVS]; /* per device; NULL where not registered yet */
	struct range *next;	     /* guarded by v->lock */
};

struct vpost;

/* WRs posted by one ibv_post_send(), only the last signalled. At least 2-aligned (wr_id bit 0). */
struct chain {
	struct vpost *post;	   /* the post it belongs to */
	uint32_t first_wr, nwr;	   /* in post->wrs */
	uint32_t first_seg, nsegs; /* in post->req->segs */
	int result;		   /* first error seen, guarded by peer->lock */
	bool done; /* its last CQE came (or it was never posted), guarded by peer->lock */
};

enum post_state {
	P_QUEUED,    /* waiting for the connection or for send queue room; maybe partly posted */
	P_POSTED,    /* every chain posted, waiting for completions */
	P_REPORTING, /* every chain done; being reported without the lock */
	P_ORPHAN,    /* ibv_post_send failed half-way: reported when the QP is destroyed */
};

/* Per segment: where its local memory is registered and its result. */
struct segx {
	char *stage;	   /* bounce copy in dev->staging, or NULL */
	struct ibv_mr *mr; /* one-off registration, or NULL */
	uint32_t lkey;	   /* of the memory the SGEs point at */
	int result;	   /* decided before posting (range, incarnation) or by its chain */
};

/* One request of the engine on one peer. Fields not marked are owned by whoever holds it. */
struct vpost {
	struct peer *p;			/* the peer it goes to */
	struct kvfs_xfer_req *req;	/* the engine's; valid until reported or cancelled */
	uint8_t state;			/* enum post_state, guarded by p->lock */
	bool built;			/* WRs built (needs the connection's device and rkey) */
	struct dev *dev;		/* where stage and mr live, once built */
	size_t stage_unit, stage_units; /* staging units taken, once built */
	uint32_t nsegs;			/* req->nsegs */
	uint32_t nchains, next_chain, chains_done; /* guarded by p->lock */
	struct chain *chains;			   /* [nchains], once built */
	struct ibv_send_wr *wrs;		   /* every chain's WRs, once built */
	struct ibv_sge *sges;			   /* their SGEs, once built */
	struct segx *sx;			   /* [nsegs] */
	struct vpost *prev, *next;		   /* p->posts, in post order, guarded by p->lock */
	struct vpost *dnext; /* in a struct done_list, owned by whoever reports */
};

enum conn_state {
	C_DOWN,	      /* no cm_id */
	C_CONNECTING, /* resolving, connecting; the CM thread drives it */
	C_UP,	      /* established, posts go out */
	C_BROKEN,     /* QP in error; torn down by the CM thread once nothing is posted */
};

enum ctx_kind { CTX_PEER, CTX_PASSIVE };

/*
 * A remote node as this backend knows it, with its one connection: the backend peer in the
 * engine's entry for the node. Never freed before fini.
 */
struct peer {
	uint8_t kind;		      /* CTX_PEER: cm_id->context points here */
	struct verbs *v;	      /* the backend */
	uint32_t node;		      /* constant */
	pthread_mutex_t lock;	      /* guards the fields marked so */
	pthread_cond_t cond;	      /* a post left the list; guarded by lock */
	uint32_t incarnation;	      /* expected, 0 = unknown; guarded by lock */
	struct sockaddr_storage addr; /* guarded by lock */
	bool down;		      /* guarded by lock */
	uint8_t state;		      /* enum conn_state, guarded by lock */
	int fail_code;		      /* what posted chains fail with after a break; lock */
	struct rdma_cm_id *id;	      /* guarded by lock; created and destroyed by the CM thread */
	struct ibv_cq *cq;	      /* this connection's CQ, on dev->chan; lock */
	struct dev *dev;	      /* guarded by lock */
	uint64_t raddr;		      /* the peer's arena for RDMA, while C_UP; lock */
	uint64_t rlen;		      /* guarded by lock */
	uint32_t rkey;		      /* guarded by lock */
	uint32_t rinc;		      /* the incarnation that accepted; guarded by lock */
	uint64_t known_len;	      /* arena length of the last connection (check_op); lock */
	uint32_t known_inc;	      /* its incarnation; guarded by lock */
	uint32_t sq_free;	      /* send queue slots; guarded by lock */
	uint32_t nposted;	      /* posts in P_POSTED or partly posted; guarded by lock */
	struct vpost *posts, *posts_tail; /* guarded by lock */
};

/* An accepted connection: a QP that only serves as the target of the peer's READs/WRITEs. */
struct passive {
	uint8_t kind;	       /* CTX_PASSIVE */
	struct rdma_cm_id *id; /* its cm_id, context pointing here */
	struct passive *next;  /* v->passives, CM thread only */
};

/* The backend (the engine's priv for it). Fields not marked are set at init. */
struct verbs {
	struct kvfs_xfer_engine *eng; /* whose peer table holds our struct peer objects */
	uint32_t self_node;	      /* this node */
	uint32_t self_incarnation;    /* and its incarnation */
	uint64_t token_hash;	      /* fnv1a of the cluster token, 0 without one */
	bool per_op;		      /* KVFS_XFER_F_PER_OP */
	char *arena_base;	      /* this node's arena, NULL without one */
	uint64_t arena_size;	      /* its bytes */
	struct sockaddr_storage
		src; /* bound for listening and as source of outgoing; or AF_UNSPEC */
	char listen_str[INET6_ADDRSTRLEN + 16]; /* "" without a listener */

	struct rdma_event_channel *ech; /* every cm_id's events; the CM thread reads it */
	struct rdma_cm_id *listen_id;	/* NULL without a listener */
	int cm_efd;			/* eventfd: the CM thread has work (or must stop) */
	pthread_t cm_thread;		/* kvfs_verbs_cm_main */
	_Atomic bool stopping;		/* fini: the CM thread exits */
	struct passive *passives;	/* CM thread only (and fini after it stopped) */

	pthread_rwlock_t lock;	    /* guards devs, ndevs, ranges */
	struct dev *devs[MAX_DEVS]; /* guarded by lock; created by the CM thread (or init) */
	unsigned ndevs;		    /* guarded by lock */
	struct range *ranges;	    /* guarded by lock */

	_Atomic uint64_t wrs, doorbells, completions; /* the backend's counters */
};

/* A list of posts to report once the lock is dropped, linked through ->dnext. */
struct done_list {
	struct vpost *head; /* linked through dnext */
};

/* verbs.c */

/* "ip:port" or "[v6]:port" (a host name is resolved, may block). Port 0 is allowed. */
/* device.c */

/* Staging: first fit over units. Returns the first unit or -ENOSPC. */
long kvfs_verbs_staging_alloc(struct dev *d, size_t units);
void kvfs_verbs_staging_free(struct dev *d, size_t first, size_t units);
/* The device behind @ctx, set up on first use (completion thread included); NULL: *ret_err. */
struct dev *kvfs_verbs_dev_get(struct verbs *v, struct ibv_context *ctx, int *ret_err);
/* Tear down a device; accepts a half-built one. No QP may use it any more. */
void kvfs_verbs_dev_destroy(struct dev *d);
/* lkey of a local range in the arena or a registered range; false: bounce it. */
bool kvfs_verbs_lkey_find(struct verbs *v, struct dev *d, const char *buf, uint64_t len,
			  uint32_t *ret_lkey);
/* The mem_reg / mem_dereg slots. */
int kvfs_verbs_mem_reg(void *priv, void *buf, size_t len);
int kvfs_verbs_mem_dereg(void *priv, void *buf);

/* post.c */

/* The post and cancel slots. */
int kvfs_verbs_post(void *priv, struct kvfs_xfer_req *req);
void kvfs_verbs_cancel(void *priv, struct kvfs_xfer_req *req);
void kvfs_verbs_post_unlink_locked(struct peer *p, struct vpost *post);
void kvfs_verbs_post_free(struct vpost *post);
/* Every chain of @post is done: queue it on @dl for reporting. Caller holds p->lock. */
void kvfs_verbs_post_finish_locked(struct peer *p, struct vpost *post, struct done_list *dl);
/* Report what @dl holds, without any lock. */
void kvfs_verbs_done_report(struct done_list *dl);
/* Post what the send queue has room for, in order. Caller holds p->lock. */
void kvfs_verbs_pump_locked(struct peer *p, struct done_list *dl);
/* Break the connection with @err (see the file comment of post.c). Caller holds p->lock. */
void kvfs_verbs_break_locked(struct peer *p, int err, struct done_list *dl);
/* The completion thread of device @arg (a struct dev). */
void *kvfs_verbs_comp_main(void *arg);

/* conn.c */

/* Wake the CM thread: a connection needs setting up or tearing down. */
void kvfs_verbs_cm_kick(struct verbs *v);
/* The CM thread of backend @arg (a struct verbs). */
void *kvfs_verbs_cm_main(void *arg);
/* Listen on @addr; the device behind it is set up now (arena registered). */
int kvfs_verbs_listener_start(struct verbs *v, const char *addr);
/* Destroy @p's QP, CQ and cm_id (nothing posted). CM thread, or fini after it stopped. */
void kvfs_verbs_conn_teardown(struct verbs *v, struct peer *p);
/* Destroy an accepted connection. CM thread, or fini after it stopped. */
void kvfs_verbs_passive_destroy(struct verbs *v, struct passive *pas);
