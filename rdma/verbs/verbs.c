/* SPDX-License-Identifier: MIT */
/*
 * verbs.c - the `verbs` backend: one-sided RDMA READ and WRITE on RC queue pairs that
 * librdmacm sets up. Built only when libibverbs and librdmacm are found (KVFS_HAVE_RDMA);
 * otherwise the engine's verbs slot stays empty and kvfs_xfer_peer_set(..., KVFS_XFER_VERBS)
 * answers -EOPNOTSUPP, so the caller falls back to tcp.
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
 * peer->lock, then v->lock (a rwlock: devices, registered ranges), then
 * dev->staging_lock. No lock is held across kvfs_xfer_seg_done(). ibv_post_send() runs under
 * peer->lock (it never blocks).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "pool.h"
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

/* ------------------------------------------------------------------------------------------ */
/* Objects */

/* Connect / accept / reject private data, big-endian on the wire (56 bytes at most in a REQ). */
struct cm_priv {
	uint32_t magic;
	uint16_t version;
	uint16_t status; /* reject: a positive errno (EACCES) */
	uint32_t node;
	uint32_t incarnation;
	uint64_t addr;	     /* arena address for RDMA (0 and len 0: no arena) */
	uint64_t len;	     /* arena length */
	uint64_t token_hash; /* FNV-1a of the cluster token, 0 without one */
	uint32_t rkey;
	uint32_t reserved;
};
_Static_assert(sizeof(struct cm_priv) == 48, "cm_priv must fit an RC REQ");

struct verbs;

/* One RDMA device this engine uses: PD, then MRs and CQs, then (per connection) QPs. */
struct dev {
	struct verbs *v;
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
	bool thread_started;
	uint32_t max_sge;    /* SGEs per RDMA WRITE WR */
	uint32_t max_sge_rd; /* SGEs per RDMA READ WR */
	uint32_t max_msg;    /* bytes per WR (the port's max_msg_sz, at most 1 GiB) */
	uint32_t rd_atomic;  /* initiator depth / responder resources */
};

/* A caller-registered local range (kvfs_xfer_mem_reg). */
struct range {
	char *addr;
	size_t len;
	struct ibv_mr *mr[MAX_DEVS]; /* per device; NULL where not registered yet */
	struct range *next;	     /* guarded by v->lock */
};

struct vpost;

/* WRs posted by one ibv_post_send(), only the last signalled. At least 2-aligned (wr_id bit 0). */
struct chain {
	struct vpost *post;
	uint32_t first_wr, nwr; /* in post->wrs */
	uint32_t first_seg, nsegs;
	int result; /* first error seen, guarded by peer->lock */
	bool done;  /* its last CQE came (or it was never posted), guarded by peer->lock */
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
	uint32_t lkey;
	int result; /* decided before posting (range, incarnation) or by its chain */
};

/* One request of the engine on one peer. Fields not marked are owned by whoever holds it. */
struct vpost {
	struct peer *p;
	struct kvfs_xfer_req *req;	/* the engine's; valid until reported or cancelled */
	uint8_t state;			/* enum post_state, guarded by p->lock */
	bool built;			/* WRs built (needs the connection's device and rkey) */
	struct dev *dev;		/* where stage and mr live, once built */
	size_t stage_unit, stage_units; /* staging units taken, once built */
	uint32_t nsegs;
	uint32_t nchains, next_chain, chains_done; /* guarded by p->lock */
	struct chain *chains;
	struct ibv_send_wr *wrs;
	struct ibv_sge *sges;
	struct segx *sx;
	struct vpost *prev, *next; /* p->posts, in post order, guarded by p->lock */
	struct vpost *dnext;	   /* in a struct done_list, owned by whoever reports */
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
	uint8_t kind; /* CTX_PEER: cm_id->context points here */
	struct verbs *v;
	uint32_t node;
	pthread_mutex_t lock;
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
	uint8_t kind; /* CTX_PASSIVE */
	struct rdma_cm_id *id;
	struct passive *next; /* v->passives, CM thread only */
};

struct verbs {
	struct kvfs_xfer_engine *eng;
	uint32_t self_node;
	uint32_t self_incarnation;
	uint64_t token_hash;
	bool per_op; /* KVFS_XFER_F_PER_OP */
	char *arena_base;
	uint64_t arena_size;
	struct sockaddr_storage
		src; /* bound for listening and as source of outgoing; or AF_UNSPEC */
	char listen_str[INET6_ADDRSTRLEN + 16]; /* "" without a listener */

	struct rdma_event_channel *ech; /* every cm_id's events; the CM thread reads it */
	struct rdma_cm_id *listen_id;	/* NULL without a listener */
	int cm_efd;			/* eventfd: the CM thread has work (or must stop) */
	pthread_t cm_thread;
	_Atomic bool stopping;
	struct passive *passives; /* CM thread only (and fini after it stopped) */

	pthread_rwlock_t lock;
	struct dev *devs[MAX_DEVS]; /* guarded by lock; created by the CM thread (or init) */
	unsigned ndevs;		    /* guarded by lock */
	struct range *ranges;	    /* guarded by lock */

	_Atomic uint64_t wrs, doorbells, completions;
};

/* ------------------------------------------------------------------------------------------ */
/* Helpers */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	if (!s || !*s)
		return 0;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h ? h : 1;
}

/* "ip:port" or "[v6]:port" (a host name is resolved, may block). Port 0 is allowed. */
static int parse_addr(const char *s, struct sockaddr_storage *ret_sa)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	char host[256];
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long port;

	if (!s)
		return -EINVAL;
	colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 2 || s[hl - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return -EINVAL;
	if (!hl || !strcmp(host, "*")) {
		struct sockaddr_in *in = (struct sockaddr_in *)ret_sa;

		memset(ret_sa, 0, sizeof(*ret_sa));
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return -EINVAL;
	memset(ret_sa, 0, sizeof(*ret_sa));
	memcpy(ret_sa, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (ret_sa->ss_family == AF_INET)
		((struct sockaddr_in *)ret_sa)->sin_port = htons((uint16_t)port);
	else if (ret_sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ret_sa)->sin6_port = htons((uint16_t)port);
	else
		return -EINVAL;
	return 0;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	size_t len =
		a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	return a->ss_family == b->ss_family && !memcmp(a, b, len);
}

static void priv_fill(const struct verbs *v, const struct dev *d, struct cm_priv *ret)
{
	bool arena = d && d->arena_mr;

	*ret = (struct cm_priv){.magic = htobe32(PRIV_MAGIC),
				.version = htobe16(PRIV_VERSION),
				.node = htobe32(v->self_node),
				.incarnation = htobe32(v->self_incarnation),
				.addr = htobe64(arena ? (uint64_t)(uintptr_t)v->arena_base : 0),
				.len = htobe64(arena ? v->arena_size : 0),
				.token_hash = htobe64(v->token_hash),
				.rkey = htobe32(arena ? d->arena_mr->rkey : 0)};
}

/* Decode @len bytes of private data; -EPROTO when it is not ours. */
static int priv_parse(const void *data, size_t len, struct cm_priv *ret)
{
	struct cm_priv q;

	if (!data || len < sizeof(q))
		return -EPROTO;
	memcpy(&q, data, sizeof(q));
	if (be32toh(q.magic) != PRIV_MAGIC || be16toh(q.version) != PRIV_VERSION)
		return -EPROTO;
	*ret = (struct cm_priv){.status = be16toh(q.status),
				.node = be32toh(q.node),
				.incarnation = be32toh(q.incarnation),
				.addr = be64toh(q.addr),
				.len = be64toh(q.len),
				.token_hash = be64toh(q.token_hash),
				.rkey = be32toh(q.rkey)};
	return 0;
}

static void cm_kick(struct verbs *v)
{
	uint64_t one = 1;

	if (write(v->cm_efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the thread will look anyway */
	}
}

static int wc_error(enum ibv_wc_status st, int fail_code)
{
	switch (st) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_WR_FLUSH_ERR:
		return fail_code ? fail_code : -EIO;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
		return -EINVAL; /* the peer refused the range or the rkey */
	default:
		return fail_code ? fail_code : -EIO;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Devices */

static void *comp_main(void *arg);

/* Staging: first fit over units; caller holds nothing. Returns the first unit or -ENOSPC. */
static long staging_alloc(struct dev *d, size_t units)
{
	size_t run = 0;
	long r = -ENOSPC;

	if (!units || units > STAGING_UNITS)
		return -ENOSPC;
	pthread_mutex_lock(&d->staging_lock);
	for (size_t i = 0; i < STAGING_UNITS; i++) {
		run = d->staging_used[i] ? 0 : run + 1;
		if (run == units) {
			memset(&d->staging_used[i + 1 - units], 1, units);
			r = (long)(i + 1 - units);
			break;
		}
	}
	pthread_mutex_unlock(&d->staging_lock);
	return r;
}

static void staging_free(struct dev *d, size_t first, size_t units)
{
	pthread_mutex_lock(&d->staging_lock);
	memset(&d->staging_used[first], 0, units);
	pthread_mutex_unlock(&d->staging_lock);
}

/* Tear down a device; accepts a half-built one (NULL members). No QP may use it any more. */
static void dev_destroy(struct dev *d)
{
	struct verbs *v;

	if (!d)
		return;
	v = d->v;
	if (d->thread_started) {
		uint64_t one = 1;

		if (write(d->stop_efd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd counter */
		}
		pthread_join(d->thread, NULL);
	}
	if (d->stop_efd >= 0)
		close(d->stop_efd);
	for (struct range *rg = v->ranges; rg; rg = rg->next)
		if (rg->mr[d->idx]) {
			ibv_dereg_mr(rg->mr[d->idx]);
			rg->mr[d->idx] = NULL;
		}
	if (d->passive_cq)
		ibv_destroy_cq(d->passive_cq);
	if (d->chan)
		ibv_destroy_comp_channel(d->chan);
	if (d->staging_mr)
		ibv_dereg_mr(d->staging_mr);
	free(d->staging);
	if (d->arena_mr)
		ibv_dereg_mr(d->arena_mr);
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	pthread_mutex_destroy(&d->poll_lock);
	pthread_mutex_destroy(&d->staging_lock);
	free(d);
}

/*
 * The device behind @ctx, set up on first use: PD, the arena's MR, the staging area, the
 * registered ranges, a completion channel and its thread. Caller holds v->lock for writing.
 */
static int dev_get_locked(struct verbs *v, struct ibv_context *ctx, struct dev **ret_dev)
{
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	struct dev *d;
	int r;

	for (unsigned i = 0; i < v->ndevs; i++)
		if (v->devs[i]->ctx == ctx) {
			*ret_dev = v->devs[i];
			return 0;
		}
	if (v->ndevs == MAX_DEVS)
		return -ENOSPC;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->v = v;
	d->idx = v->ndevs;
	d->ctx = ctx;
	d->stop_efd = -1;
	pthread_mutex_init(&d->staging_lock, NULL);
	pthread_mutex_init(&d->poll_lock, NULL);

	r = -ibv_query_device(ctx, &da);
	if (r < 0)
		goto err_destroy;
	r = -ibv_query_port(ctx, 1, &pa);
	if (r < 0)
		goto err_destroy;
	d->max_sge = (uint32_t)(da.max_sge < MAX_SGE ? da.max_sge : MAX_SGE);
	d->max_sge_rd = da.max_sge_rd > 0 && (uint32_t)da.max_sge_rd < d->max_sge
				? (uint32_t)da.max_sge_rd
				: d->max_sge;
	d->max_msg = pa.max_msg_sz && pa.max_msg_sz < (1u << 30) ? pa.max_msg_sz : (1u << 30);
	d->rd_atomic =
		(uint32_t)(da.max_qp_init_rd_atom < RD_ATOMIC ? da.max_qp_init_rd_atom : RD_ATOMIC);
	if (d->rd_atomic > (uint32_t)da.max_qp_rd_atom)
		d->rd_atomic = (uint32_t)da.max_qp_rd_atom;
	if (!d->max_sge || !d->rd_atomic) {
		r = -EOPNOTSUPP;
		goto err_destroy;
	}

	d->pd = ibv_alloc_pd(ctx);
	if (!d->pd) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	if (v->arena_base && v->arena_size) {
		d->arena_mr = ibv_reg_mr(d->pd, v->arena_base, v->arena_size,
					 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
						 IBV_ACCESS_REMOTE_WRITE);
		if (!d->arena_mr) {
			r = errno ? -errno : -ENOMEM;
			goto err_destroy;
		}
	}
	d->staging = aligned_alloc(STAGING_UNIT, STAGING_SIZE);
	if (!d->staging) {
		r = -ENOMEM;
		goto err_destroy;
	}
	d->staging_mr = ibv_reg_mr(d->pd, d->staging, STAGING_SIZE, IBV_ACCESS_LOCAL_WRITE);
	if (!d->staging_mr) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	for (struct range *rg = v->ranges; rg; rg = rg->next) {
		rg->mr[d->idx] = ibv_reg_mr(d->pd, rg->addr, rg->len, IBV_ACCESS_LOCAL_WRITE);
		if (!rg->mr[d->idx]) {
			r = errno ? -errno : -ENOMEM;
			goto err_destroy;
		}
	}
	d->chan = ibv_create_comp_channel(ctx);
	if (!d->chan) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	if (fcntl(d->chan->fd, F_SETFL, fcntl(d->chan->fd, F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		goto err_destroy;
	}
	d->passive_cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	if (!d->passive_cq) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	d->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_efd < 0) {
		r = -errno;
		goto err_destroy;
	}
	r = -pthread_create(&d->thread, NULL, comp_main, d);
	if (r < 0)
		goto err_destroy;
	d->thread_started = true;
	v->devs[v->ndevs++] = d;
	*ret_dev = d;
	return 0;

err_destroy:
	/* dev_destroy releases in reverse order whatever was built (NULL members are skipped) */
	dev_destroy(d);
	return r;
}

static struct dev *dev_get(struct verbs *v, struct ibv_context *ctx, int *ret_err)
{
	struct dev *d = NULL;

	pthread_rwlock_wrlock(&v->lock);
	*ret_err = dev_get_locked(v, ctx, &d);
	pthread_rwlock_unlock(&v->lock);
	return d;
}

/* lkey of a local range in the arena or a registered range; false: bounce it. */
static bool lkey_find(struct verbs *v, struct dev *d, const char *buf, uint64_t len,
		      uint32_t *ret_lkey)
{
	bool found = false;

	if (d->arena_mr && buf >= v->arena_base && len <= v->arena_size &&
	    (uint64_t)(buf - v->arena_base) <= v->arena_size - len) {
		*ret_lkey = d->arena_mr->lkey;
		return true;
	}
	pthread_rwlock_rdlock(&v->lock);
	for (struct range *rg = v->ranges; rg; rg = rg->next)
		if (rg->mr[d->idx] && buf >= rg->addr && len <= rg->len &&
		    (size_t)(buf - rg->addr) <= rg->len - len) {
			*ret_lkey = rg->mr[d->idx]->lkey;
			found = true;
			break;
		}
	pthread_rwlock_unlock(&v->lock);
	return found;
}

/* ------------------------------------------------------------------------------------------ */
/* Posts */

static void post_link_locked(struct peer *p, struct vpost *post)
{
	post->prev = p->posts_tail;
	post->next = NULL;
	if (p->posts_tail)
		p->posts_tail->next = post;
	else
		p->posts = post;
	p->posts_tail = post;
}

static void post_unlink_locked(struct peer *p, struct vpost *post)
{
	if (post->prev)
		post->prev->next = post->next;
	else
		p->posts = post->next;
	if (post->next)
		post->next->prev = post->prev;
	else
		p->posts_tail = post->prev;
	post->prev = post->next = NULL;
}

/* Give back staging and one-off registrations. */
static void post_release(struct vpost *post)
{
	if (post->sx)
		for (uint32_t i = 0; i < post->nsegs; i++)
			if (post->sx[i].mr) {
				ibv_dereg_mr(post->sx[i].mr);
				post->sx[i].mr = NULL;
			}
	if (post->stage_units) {
		staging_free(post->dev, post->stage_unit, post->stage_units);
		post->stage_units = 0;
	}
}

static void post_free(struct vpost *post)
{
	post_release(post);
	free(post->chains);
	free(post->wrs);
	free(post->sges);
	free(post->sx);
	free(post);
}

/* A list of posts to report once the lock is dropped, linked through ->next. */
struct done_list {
	struct vpost *head;
};

static void done_add(struct done_list *dl, struct vpost *post)
{
	post->dnext = dl->head;
	dl->head = post;
}

/*
 * Every chain of @post is done: mark it for reporting. It stays on p->posts until reported, so
 * a cancel of its request waits for the report to end. Caller holds p->lock.
 */
static void post_finish_locked(struct peer *p, struct vpost *post, struct done_list *dl)
{
	for (uint32_t c = 0; c < post->nchains; c++) {
		const struct chain *ch = &post->chains[c];

		for (uint32_t s = ch->first_seg; s < ch->first_seg + ch->nsegs; s++)
			if (!post->sx[s].result)
				post->sx[s].result = ch->result;
	}
	if (post->next_chain && post->state != P_ORPHAN) /* it counted as posted */
		p->nposted--;
	post->state = P_REPORTING;
	done_add(dl, post);
}

/* Fail a post none of whose chains is posted, every segment with @err. Caller holds p->lock. */
static void post_fail_locked(struct peer *p, struct vpost *post, int err, struct done_list *dl)
{
	for (uint32_t s = 0; s < post->nsegs; s++)
		if (!post->sx[s].result)
			post->sx[s].result = err;
	post->nchains = 0;
	post_finish_locked(p, post, dl);
}

/*
 * Report what @dl holds: copy bounced READs out, release memory, tell the engine, free. Runs
 * without any lock; a cancel waiting for one of these posts is woken after.
 */
static void done_report(struct done_list *dl)
{
	struct vpost *post, *next;

	for (post = dl->head; post; post = next) {
		struct peer *p = post->p;
		struct kvfs_xfer_req *req = post->req;
		const struct kvfs_xfer_seg *segs = req->segs;
		uint32_t n = post->nsegs;

		next = post->dnext;
		for (uint32_t s = 0; s < n; s++)
			if (!post->sx[s].result && post->sx[s].stage &&
			    segs[s].dir == KVFS_XFER_READ)
				memcpy(segs[s].buf, post->sx[s].stage, segs[s].len);
		post_release(post);
		/* After the last seg_done, req may be gone. */
		for (uint32_t s = 0; s < n; s++)
			kvfs_xfer_seg_done(req, s, post->sx[s].result);
		pthread_mutex_lock(&p->lock);
		post_unlink_locked(p, post);
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		post_free(post);
	}
	dl->head = NULL;
}

/*
 * Local memory for segment @s: arena or registered range in place, else staging (taken for the
 * whole post at once), else a one-off registration. Returns 0 or the segment's error.
 */
static int seg_local(struct verbs *v, struct vpost *post, uint32_t s, char **ret_stage_cursor)
{
	const struct kvfs_xfer_seg *seg = &post->req->segs[s];
	struct segx *x = &post->sx[s];
	struct dev *d = post->dev;

	if (lkey_find(v, d, seg->buf, seg->len, &x->lkey))
		return 0;
	if (*ret_stage_cursor) {
		x->stage = *ret_stage_cursor;
		x->lkey = d->staging_mr->lkey;
		*ret_stage_cursor += (seg->len + STAGING_UNIT - 1) / STAGING_UNIT * STAGING_UNIT;
		if (seg->dir == KVFS_XFER_WRITE)
			memcpy(x->stage, seg->buf, seg->len);
		return 0;
	}
	x->mr = ibv_reg_mr(d->pd, seg->buf, seg->len,
			   seg->dir == KVFS_XFER_READ ? IBV_ACCESS_LOCAL_WRITE : 0);
	if (!x->mr)
		return errno ? -errno : -ENOMEM;
	x->lkey = x->mr->lkey;
	return 0;
}

/*
 * Turn @post into chains of WRs for the current connection. Caller holds p->lock, p->state is
 * C_UP. Segments the peer's arena cannot hold fail with -EINVAL here, without a WR. Returns 0
 * or an error for the whole post.
 */
static int post_build_locked(struct peer *p, struct vpost *post)
{
	struct verbs *v = p->v;
	const struct kvfs_xfer_req *req = post->req;
	struct dev *d = p->dev;
	uint32_t n = post->nsegs, nwr = 0, nsge = 0, nchains = 0, chunks = 0;
	size_t bounce = 0;
	char *cursor = NULL;
	struct ibv_send_wr *wr = NULL;

	if (req->incarnation && req->incarnation != p->rinc)
		return -ESTALE;
	post->dev = d;
	for (uint32_t s = 0; s < n; s++) {
		const struct kvfs_xfer_seg *seg = &req->segs[s];
		uint32_t lk;

		if (seg->remote_off >= p->rlen || seg->len > p->rlen - seg->remote_off) {
			post->sx[s].result = -EINVAL;
			continue;
		}
		/* pieces: split by max_msg, plus one where it continues a WR begun before */
		chunks += (uint32_t)((seg->len + d->max_msg - 1) / d->max_msg) + 1;
		if (!lkey_find(v, d, seg->buf, seg->len, &lk))
			bounce += (seg->len + STAGING_UNIT - 1) / STAGING_UNIT;
	}
	if (bounce) {
		long u = staging_alloc(d, bounce);

		if (u >= 0) {
			post->stage_unit = (size_t)u;
			post->stage_units = bounce;
			cursor = d->staging + (size_t)u * STAGING_UNIT;
		}
	}
	post->chains = calloc(n ? n : 1, sizeof(*post->chains));
	post->wrs = calloc(chunks ? chunks : 1, sizeof(*post->wrs));
	post->sges = calloc(chunks ? chunks : 1, sizeof(*post->sges));
	if (!post->chains || !post->wrs || !post->sges)
		return -ENOMEM;
	post->built = true;

	for (uint32_t s = 0; s < n; s++) {
		const struct kvfs_xfer_seg *seg = &req->segs[s];
		struct chain *ch = nchains ? &post->chains[nchains - 1] : NULL;
		uint64_t left = seg->len, roff = seg->remote_off;
		char *laddr;
		uint32_t need;
		int r;

		if (post->sx[s].result)
			continue;
		r = seg_local(v, post, s, &cursor);
		if (r < 0) {
			post->sx[s].result = r;
			continue;
		}
		laddr = post->sx[s].stage ? post->sx[s].stage : seg->buf;
		need = (uint32_t)((seg->len + d->max_msg - 1) / d->max_msg) + 1;
		/* A chain ends at a segment boundary: per op always, else when the SQ is full. */
		if (!ch || v->per_op || ch->nwr + need > SQ_DEPTH) {
			ch = &post->chains[nchains++];
			*ch = (struct chain){.post = post, .first_wr = nwr, .first_seg = s};
			wr = NULL;
		}
		ch->nsegs = s + 1 - ch->first_seg;
		while (left) {
			uint32_t max_sge = seg->dir == KVFS_XFER_READ ? d->max_sge_rd : d->max_sge;
			uint64_t chunk;
			bool append = false;
			struct ibv_sge *last;
			uint64_t wlen = 0;

			/* The current WR's length and whether this piece continues it remotely. */
			if (wr) {
				for (int i = 0; i < wr->num_sge; i++)
					wlen += wr->sg_list[i].length;
				append = !v->per_op &&
					 wr->opcode == (seg->dir == KVFS_XFER_READ
								? IBV_WR_RDMA_READ
								: IBV_WR_RDMA_WRITE) &&
					 wr->wr.rdma.remote_addr + wlen == p->raddr + roff &&
					 wlen < d->max_msg;
			}
			last = append ? &wr->sg_list[wr->num_sge - 1] : NULL;
			/* A piece contiguous with the last SGE only lengthens it. */
			if (append &&
			    !(last->lkey == post->sx[s].lkey &&
			      last->addr + last->length == (uint64_t)(uintptr_t)laddr) &&
			    (uint32_t)wr->num_sge >= max_sge)
				append = false;
			if (!append) {
				wr = &post->wrs[nwr++];
				*wr = (struct ibv_send_wr){
					.wr_id = (uint64_t)(uintptr_t)ch,
					.sg_list = &post->sges[nsge],
					.num_sge = 0,
					.opcode = seg->dir == KVFS_XFER_READ ? IBV_WR_RDMA_READ
									     : IBV_WR_RDMA_WRITE,
					.wr.rdma = {.remote_addr = p->raddr + roff,
						    .rkey = p->rkey}};
				if (nwr > ch->first_wr + 1)
					post->wrs[nwr - 2].next = wr;
				ch->nwr++;
				wlen = 0;
				last = NULL;
			}
			chunk = left < d->max_msg - wlen ? left : d->max_msg - wlen;
			if (last && last->lkey == post->sx[s].lkey &&
			    last->addr + last->length == (uint64_t)(uintptr_t)laddr) {
				last->length += (uint32_t)chunk;
			} else {
				post->sges[nsge++] =
					(struct ibv_sge){.addr = (uint64_t)(uintptr_t)laddr,
							 .length = (uint32_t)chunk,
							 .lkey = post->sx[s].lkey};
				wr->num_sge++;
			}
			laddr += chunk;
			roff += chunk;
			left -= chunk;
		}
	}
	/* Close each chain: the last WR is signalled and carries the "last" bit. */
	for (uint32_t c = 0; c < nchains; c++) {
		struct chain *ch = &post->chains[c];
		struct ibv_send_wr *lw = &post->wrs[ch->first_wr + ch->nwr - 1];

		lw->next = NULL;
		lw->send_flags = IBV_SEND_SIGNALED;
		lw->wr_id |= 1;
	}
	post->nchains = nchains;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections: posting, breaking */

/*
 * Post what the send queue has room for, in order. Caller holds p->lock. A post that cannot be
 * built fails whole; one whose segments all failed their checks is done without a WR.
 */
static void pump_locked(struct peer *p, struct done_list *dl)
{
	struct verbs *v = p->v;
	struct vpost *post, *next;

	if (p->state != C_UP)
		return;
	for (post = p->posts; post; post = next) {
		next = post->next;
		if (post->state != P_QUEUED)
			continue;
		if (!post->built) {
			int r = post_build_locked(p, post);

			if (r < 0) {
				post_release(post);
				post_fail_locked(p, post, r, dl);
				continue;
			}
			if (!post->nchains) {
				post_finish_locked(p, post, dl);
				continue;
			}
		}
		while (post->next_chain < post->nchains) {
			struct chain *ch = &post->chains[post->next_chain];
			struct ibv_send_wr *bad = NULL;
			int r;

			if (ch->nwr > p->sq_free)
				return; /* in order: later posts wait too */
			r = -ibv_post_send(p->id->qp, &post->wrs[ch->first_wr], &bad);
			atomic_fetch_add_explicit(&v->doorbells, 1, memory_order_relaxed);
			if (r < 0) {
				/*
				 * Nothing or part of the chain went out, without its signalled WR: its
				 * memory stays in use until the QP is gone. Break; the CM thread
				 * reports it after destroying the QP.
				 */
				uint32_t sent =
					(uint32_t)(bad ? bad - &post->wrs[ch->first_wr] : 0);

				atomic_fetch_add_explicit(&v->wrs, sent, memory_order_relaxed);
				for (uint32_t c = post->next_chain; c < post->nchains; c++)
					post->chains[c].result = r;
				if (post->next_chain) /* orphans do not hold the teardown back */
					p->nposted--;
				post->next_chain = post->nchains;
				post->state = P_ORPHAN;
				/* breaking fails the posts after this one */
				p->fail_code = -EIO;
				p->state = C_BROKEN;
				ibv_modify_qp(p->id->qp,
					      &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
					      IBV_QP_STATE);
				for (struct vpost *q = next, *qn; q; q = qn) {
					qn = q->next;
					if (q->state == P_QUEUED)
						post_fail_locked(p, q, -EIO, dl);
				}
				cm_kick(v);
				return;
			}
			atomic_fetch_add_explicit(&v->wrs, ch->nwr, memory_order_relaxed);
			p->sq_free -= ch->nwr;
			if (!post->next_chain)
				p->nposted++;
			post->next_chain++;
		}
		post->state = P_POSTED;
	}
}

/*
 * Break the connection with @err: QP to error (posted chains flush with @err), queued posts
 * fail now (a partly posted one: its unposted chains), the CM thread tears it down once
 * nothing is posted. Caller holds p->lock.
 */
static void break_locked(struct peer *p, int err, struct done_list *dl)
{
	struct vpost *post, *next;

	if (p->state == C_UP || p->state == C_CONNECTING) {
		p->fail_code = err;
		if (p->state == C_UP && p->id && p->id->qp)
			ibv_modify_qp(p->id->qp, &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
				      IBV_QP_STATE);
		p->state = C_BROKEN;
		cm_kick(p->v);
	}
	for (post = p->posts; post; post = next) {
		next = post->next;
		if (post->state != P_QUEUED)
			continue;
		if (!post->next_chain) {
			post_fail_locked(p, post, err, dl);
			continue;
		}
		for (uint32_t c = post->next_chain; c < post->nchains; c++) {
			post->chains[c].result = err;
			post->chains[c].done = true;
			post->chains_done++;
		}
		post->next_chain = post->nchains;
		post->state = P_POSTED;
		if (post->chains_done == post->nchains)
			post_finish_locked(p, post, dl);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Completion thread (one per device) */

static void wc_handle(struct verbs *v, const struct ibv_wc *wc, struct done_list *dl)
{
	struct chain *ch = (struct chain *)(uintptr_t)(wc->wr_id & ~(uint64_t)1);
	bool last = wc->wr_id & 1;
	struct vpost *post = ch->post;
	struct peer *p = post->p;

	pthread_mutex_lock(&p->lock);
	if (wc->status != IBV_WC_SUCCESS) {
		int err = wc_error(wc->status, p->fail_code);

		if (!ch->result)
			ch->result = err;
		if (p->state == C_UP)
			break_locked(p, err == -EINVAL ? -EIO : err, dl);
	}
	if (last && !ch->done) {
		ch->done = true;
		p->sq_free += ch->nwr;
		if (++post->chains_done == post->nchains && post->state == P_POSTED)
			post_finish_locked(p, post, dl);
		pump_locked(p, dl);
		if (p->state == C_BROKEN && !p->nposted)
			cm_kick(v);
	}
	pthread_mutex_unlock(&p->lock);
}

#define WC_BATCH 32

static void *comp_main(void *arg)
{
	struct dev *d = arg;
	struct verbs *v = d->v;
	struct pollfd pfd[2] = {{.fd = d->chan->fd, .events = POLLIN},
				{.fd = d->stop_efd, .events = POLLIN}};
	struct ibv_wc *wcs = malloc((SQ_DEPTH + WC_BATCH) * sizeof(*wcs));

	if (!wcs)
		return NULL;
	for (;;) {
		struct done_list dl = {0};
		struct ibv_cq *cq;
		void *cq_ctx;
		int n = 0, k;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		/* Under poll_lock: the CM thread destroys CQs only when we are not in one. */
		pthread_mutex_lock(&d->poll_lock);
		if (ibv_get_cq_event(d->chan, &cq, &cq_ctx) < 0) {
			pthread_mutex_unlock(&d->poll_lock);
			continue;
		}
		ibv_ack_cq_events(cq, 1);
		if (ibv_req_notify_cq(cq, 0) == 0) {
			/* Drain: re-armed before the last poll, so no CQE slips by. */
			while (n < SQ_DEPTH && (k = ibv_poll_cq(cq, WC_BATCH, wcs + n)) > 0)
				n += k;
		}
		atomic_fetch_add_explicit(&v->completions, (uint64_t)n, memory_order_relaxed);
		/*
		 * Still under poll_lock: a teardown that destroys this CQ (and frees orphaned
		 * chains) waits until no polled CQE of it is left unhandled.
		 */
		for (int i = 0; i < n; i++)
			wc_handle(v, &wcs[i], &dl);
		pthread_mutex_unlock(&d->poll_lock);
		done_report(&dl);
	}
	free(wcs);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* CM thread: connection setup and teardown, the listener */

static bool has_queued_locked(const struct peer *p)
{
	for (const struct vpost *post = p->posts; post; post = post->next)
		if (post->state == P_QUEUED)
			return true;
	return false;
}

/* Start connecting @p (state C_DOWN, work queued). Caller holds p->lock; CM thread only. */
static void conn_start_locked(struct verbs *v, struct peer *p, struct done_list *dl)
{
	struct sockaddr_storage src = v->src;
	struct rdma_cm_id *id;
	int r;

	if (rdma_create_id(v->ech, &id, p, RDMA_PS_TCP) < 0) {
		r = -errno;
		goto err_fail;
	}
	if (src.ss_family == AF_INET)
		((struct sockaddr_in *)&src)->sin_port = 0;
	else if (src.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&src)->sin6_port = 0;
	if (rdma_resolve_addr(id, src.ss_family ? (struct sockaddr *)&src : NULL,
			      (struct sockaddr *)&p->addr, RESOLVE_TIMEOUT_MS) < 0) {
		r = -errno;
		goto err_destroy_id;
	}
	p->id = id;
	p->state = C_CONNECTING;
	p->fail_code = 0;
	return;

err_destroy_id:
	rdma_destroy_id(id);
err_fail:
	(void)r;
	break_locked(p, -EHOSTUNREACH, dl);
	p->state = C_DOWN;
}

/*
 * Destroy @p's QP, CQ and cm_id (state C_BROKEN, nothing posted), report orphaned posts, and
 * reconnect if work is queued. CM thread only.
 */
static void conn_teardown(struct verbs *v, struct peer *p)
{
	struct done_list dl = {0};
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	struct dev *d;

	pthread_mutex_lock(&p->lock);
	id = p->id;
	cq = p->cq;
	d = p->dev;
	p->id = NULL;
	p->cq = NULL;
	p->dev = NULL;
	pthread_mutex_unlock(&p->lock);

	if (id) {
		rdma_disconnect(id); /* DREQ: the peer frees its side; fails harmlessly if unsent */
		if (d)
			pthread_mutex_lock(&d->poll_lock);
		if (id->qp)
			rdma_destroy_qp(id);
		if (cq)
			ibv_destroy_cq(cq);
		if (d)
			pthread_mutex_unlock(&d->poll_lock);
		rdma_destroy_id(id);
	}

	pthread_mutex_lock(&p->lock);
	for (struct vpost *post = p->posts; post; post = post->next)
		if (post->state == P_ORPHAN)
			post_finish_locked(p, post, &dl);
	p->state = C_DOWN;
	p->rlen = 0;
	if (!p->down && has_queued_locked(p))
		conn_start_locked(v, p, &dl);
	pthread_mutex_unlock(&p->lock);
	done_report(&dl);
}

/* Work kicked through cm_efd: teardowns and connects. */
static void cm_work(struct verbs *v)
{
	struct peer *p;
	size_t pos = 0;

	while ((p = kvfs_xfer_peer_next(v->eng, KVFS_XFER_VERBS, &pos))) {
		struct done_list dl = {0};
		bool teardown = false;

		pthread_mutex_lock(&p->lock);
		if (p->state == C_BROKEN && !p->nposted)
			teardown = true;
		else if (p->state == C_DOWN && !p->down && has_queued_locked(p))
			conn_start_locked(v, p, &dl);
		pthread_mutex_unlock(&p->lock);
		done_report(&dl);
		if (teardown)
			conn_teardown(v, p);
	}
}

/* ROUTE_RESOLVED: CQ on the device's channel, QP, connect. Caller holds p->lock. */
static int conn_connect_locked(struct verbs *v, struct peer *p)
{
	struct dev *d = p->dev;
	struct ibv_qp_init_attr qa;
	struct rdma_conn_param cp;
	struct cm_priv priv;

	p->cq = ibv_create_cq(d->ctx, SQ_DEPTH + 1, NULL, d->chan, 0);
	if (!p->cq)
		return errno ? -errno : -ENOMEM;
	if (ibv_req_notify_cq(p->cq, 0))
		return -EIO;
	qa = (struct ibv_qp_init_attr){.send_cq = p->cq,
				       .recv_cq = p->cq,
				       .cap = {.max_send_wr = SQ_DEPTH,
					       .max_recv_wr = 1,
					       .max_send_sge = d->max_sge,
					       .max_recv_sge = 1},
				       .qp_type = IBV_QPT_RC,
				       .sq_sig_all = 0};
	if (rdma_create_qp(p->id, d->pd, &qa) < 0)
		return -errno;
	priv_fill(v, d, &priv);
	cp = (struct rdma_conn_param){.private_data = &priv,
				      .private_data_len = sizeof(priv),
				      .responder_resources = (uint8_t)d->rd_atomic,
				      .initiator_depth = (uint8_t)d->rd_atomic,
				      .retry_count = 7,
				      .rnr_retry_count = 7};
	if (rdma_connect(p->id, &cp) < 0)
		return -errno;
	return 0;
}

/* ESTABLISHED: check who answered, learn its arena. Caller holds p->lock. */
static int conn_established_locked(struct peer *p, const void *data, size_t len)
{
	struct cm_priv a;

	if (priv_parse(data, len, &a) < 0)
		return -EPROTO;
	if (a.node != p->node || (p->incarnation && a.incarnation != p->incarnation))
		return -ESTALE;
	p->raddr = a.addr;
	p->rlen = a.len;
	p->rkey = a.rkey;
	p->rinc = a.incarnation;
	p->known_len = a.len;
	p->known_inc = a.incarnation;
	p->sq_free = SQ_DEPTH;
	p->state = C_UP;
	return 0;
}

static void cm_active_event(struct verbs *v, struct peer *p, const struct rdma_cm_event *ev)
{
	struct done_list dl = {0};
	struct dev *d = NULL;
	int r = 0;

	if (ev->event == RDMA_CM_EVENT_ADDR_RESOLVED)
		d = dev_get(v, ev->id->verbs, &r);

	pthread_mutex_lock(&p->lock);
	if (ev->id != p->id)
		goto out; /* an id being torn down */
	if (p->state != C_CONNECTING) {
		if (p->state == C_UP && (ev->event == RDMA_CM_EVENT_DISCONNECTED ||
					 ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL))
			break_locked(p, -EIO, &dl);
		goto out;
	}
	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (r < 0)
			break;
		p->dev = d;
		if (rdma_resolve_route(ev->id, RESOLVE_TIMEOUT_MS) < 0)
			r = -EHOSTUNREACH;
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		r = conn_connect_locked(v, p);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		r = conn_established_locked(p, ev->param.conn.private_data,
					    ev->param.conn.private_data_len);
		if (r == 0)
			pump_locked(p, &dl);
		break;
	case RDMA_CM_EVENT_REJECTED: {
		struct cm_priv rj;

		r = -EHOSTUNREACH;
		if (priv_parse(ev->param.conn.private_data, ev->param.conn.private_data_len, &rj) ==
			    0 &&
		    rj.status)
			r = -(int)rj.status;
		break;
	}
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		r = -EIO;
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_CONNECT_ERROR:
		r = -EHOSTUNREACH;
		break;
	default:
		break;
	}
	if (r < 0)
		break_locked(p, r, &dl);
out:
	pthread_mutex_unlock(&p->lock);
	done_report(&dl);
}

static void passive_destroy(struct verbs *v, struct passive *pas)
{
	for (struct passive **pp = &v->passives; *pp; pp = &(*pp)->next)
		if (*pp == pas) {
			*pp = pas->next;
			break;
		}
	if (pas->id->qp)
		rdma_destroy_qp(pas->id);
	rdma_destroy_id(pas->id);
	free(pas);
}

/* A connect request on the listener: check it, give it a QP, accept with our arena. */
static void cm_connect_request(struct verbs *v, const struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct ibv_qp_init_attr qa;
	struct rdma_conn_param cp;
	struct cm_priv c, a;
	struct passive *pas;
	struct dev *d;
	int r;

	if (priv_parse(ev->param.conn.private_data, ev->param.conn.private_data_len, &c) < 0)
		goto err_reject;
	if (c.token_hash != v->token_hash) {
		priv_fill(v, NULL, &a);
		a.status = htobe16(EACCES);
		rdma_reject(id, &a, sizeof(a));
		rdma_destroy_id(id);
		return;
	}
	d = dev_get(v, id->verbs, &r);
	if (!d)
		goto err_reject;
	pas = calloc(1, sizeof(*pas));
	if (!pas)
		goto err_reject;
	pas->kind = CTX_PASSIVE;
	pas->id = id;
	qa = (struct ibv_qp_init_attr){
		.send_cq = d->passive_cq,
		.recv_cq = d->passive_cq,
		.cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
		.qp_type = IBV_QPT_RC};
	if (rdma_create_qp(id, d->pd, &qa) < 0)
		goto err_free_passive;
	id->context = pas;
	pas->next = v->passives;
	v->passives = pas;
	priv_fill(v, d, &a);
	cp = (struct rdma_conn_param){
		.private_data = &a,
		.private_data_len = sizeof(a),
		.responder_resources = (uint8_t)(ev->param.conn.initiator_depth < d->rd_atomic
							 ? ev->param.conn.initiator_depth
							 : d->rd_atomic),
		.initiator_depth = 0,
		.retry_count = 7,
		.rnr_retry_count = 7};
	if (rdma_accept(id, &cp) < 0)
		passive_destroy(v, pas);
	return;

err_free_passive:
	free(pas);
err_reject:
	rdma_reject(id, NULL, 0);
	rdma_destroy_id(id);
}

static void cm_event(struct verbs *v, const struct rdma_cm_event *ev)
{
	const uint8_t *kind = ev->id ? ev->id->context : NULL;

	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
		cm_connect_request(v, ev);
		return;
	}
	if (!kind)
		return; /* the listener */
	if (*kind == CTX_PEER) {
		cm_active_event(v, (struct peer *)(void *)kind, ev);
		return;
	}
	switch (ev->event) {
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
		passive_destroy(v, (struct passive *)(void *)kind);
		break;
	default:
		break;
	}
}

static void *cm_main(void *arg)
{
	struct verbs *v = arg;
	struct pollfd pfd[2] = {{.fd = v->ech->fd, .events = POLLIN},
				{.fd = v->cm_efd, .events = POLLIN}};

	while (!atomic_load(&v->stopping)) {
		struct rdma_cm_event *e;
		uint64_t cnt;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN) {
			if (read(v->cm_efd, &cnt, sizeof(cnt)) < 0) {
				/* EAGAIN: another wakeup took it */
			}
			if (atomic_load(&v->stopping))
				break;
			cm_work(v);
		}
		while (rdma_get_cm_event(v->ech, &e) == 0) {
			/* Work on a copy: acking first lets a handler destroy the event's id. */
			struct rdma_cm_event ev = *e;
			uint8_t pd[256];

			if (e->param.conn.private_data && e->param.conn.private_data_len) {
				/* private_data_len is a uint8_t: it always fits */
				memcpy(pd, e->param.conn.private_data,
				       e->param.conn.private_data_len);
				ev.param.conn.private_data = pd;
			}
			rdma_ack_cm_event(e);
			cm_event(v, &ev);
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Peers */

static int verbs_peer_set(void *priv, uint32_t node, uint32_t incarnation, const char *addr,
			  void **bpeer)
{
	struct verbs *v = priv;
	struct done_list dl = {0};
	struct sockaddr_storage sa;
	struct peer *p = *bpeer;
	bool changed;
	int r;

	if (node == v->self_node)
		return -EINVAL;
	r = parse_addr(addr, &sa);
	if (r < 0)
		return r;

	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->kind = CTX_PEER;
		p->v = v;
		p->node = node;
		p->incarnation = incarnation;
		p->addr = sa;
		pthread_mutex_init(&p->lock, NULL);
		pthread_cond_init(&p->cond, NULL);
		*bpeer = p;
		return 0;
	}

	pthread_mutex_lock(&p->lock);
	changed = p->incarnation != incarnation || !same_addr(&p->addr, &sa);
	p->incarnation = incarnation;
	p->addr = sa;
	p->down = false;
	/* What is in flight went to the old incarnation or address: it is stale. */
	if (changed)
		break_locked(p, -ESTALE, &dl);
	pthread_mutex_unlock(&p->lock);
	done_report(&dl);
	return 0;
}

static void verbs_peer_down(void *priv, void *bpeer)
{
	struct peer *p = bpeer;
	struct done_list dl = {0};

	pthread_mutex_lock(&p->lock);
	p->down = true;
	break_locked(p, -ESTALE, &dl);
	pthread_mutex_unlock(&p->lock);
	done_report(&dl);
}

/* ------------------------------------------------------------------------------------------ */
/* Backend ops */

/* Ranges are judged here once a connection told us the peer's arena length. */
static int verbs_check_op(void *priv, void *bpeer, const struct kvfs_xfer_op *op)
{
	struct peer *p = bpeer;
	int r = 0;

	pthread_mutex_lock(&p->lock);
	if (p->state == C_UP) {
		if (op->incarnation && op->incarnation != p->known_inc)
			r = -ESTALE;
		else if (op->remote_off >= p->known_len || op->len > p->known_len - op->remote_off)
			r = -EINVAL;
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

static int verbs_post(void *priv, struct kvfs_xfer_req *req)
{
	struct verbs *v = priv;
	struct peer *p = req->bpeer;
	struct done_list dl = {0};
	struct vpost *post;

	post = calloc(1, sizeof(*post));
	if (!post)
		return -ENOMEM;
	post->sx = calloc(req->nsegs, sizeof(*post->sx));
	if (!post->sx) {
		free(post);
		return -ENOMEM;
	}
	post->p = p;
	post->req = req;
	post->nsegs = req->nsegs;
	post->state = P_QUEUED;

	pthread_mutex_lock(&p->lock);
	if (p->down) {
		pthread_mutex_unlock(&p->lock);
		post_free(post);
		return -ESTALE;
	}
	post_link_locked(p, post);
	if (p->state == C_UP)
		pump_locked(p, &dl);
	else if (p->state == C_DOWN)
		cm_kick(v);
	pthread_mutex_unlock(&p->lock);
	done_report(&dl);
	return 0;
}

/* See xfer_i.h: when this returns, nothing of @req is touched or reported again. */
static void verbs_cancel(void *priv, struct kvfs_xfer_req *req)
{
	struct peer *p = req->bpeer;
	struct done_list dl = {0};
	struct vpost *post;

	pthread_mutex_lock(&p->lock);
again:
	for (post = p->posts; post; post = post->next) {
		if (post->req != req)
			continue;
		if (post->state == P_QUEUED && !post->next_chain) {
			post_unlink_locked(p, post);
			post_free(post);
			goto again;
		}
		if (post->state == P_QUEUED || post->state == P_POSTED) {
			/* On the wire past its deadline: the peer is stuck; flush everything. */
			break_locked(p, -ETIMEDOUT, &dl);
			pthread_mutex_unlock(&p->lock);
			done_report(&dl);
			pthread_mutex_lock(&p->lock);
			goto again;
		}
		/* P_REPORTING, P_ORPHAN: wait until it is reported */
		pthread_cond_wait(&p->cond, &p->lock);
		goto again;
	}
	pthread_mutex_unlock(&p->lock);
}

static int verbs_listen_addr(void *priv, char *ret_buf, size_t len)
{
	struct verbs *v = priv;

	if (!v->listen_str[0])
		return -ENOENT;
	if (strlen(v->listen_str) + 1 > len)
		return -ENOSPC;
	memcpy(ret_buf, v->listen_str, strlen(v->listen_str) + 1);
	return 0;
}

static int verbs_mem_reg(void *priv, void *buf, size_t len)
{
	struct verbs *v = priv;
	struct range *rg;
	unsigned i;
	int r = 0;

	rg = calloc(1, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	rg->addr = buf;
	rg->len = len;
	pthread_rwlock_wrlock(&v->lock);
	for (struct range *o = v->ranges; o; o = o->next)
		if (o->addr == (char *)buf) {
			r = -EEXIST;
			goto err_unlock;
		}
	for (i = 0; i < v->ndevs; i++) {
		rg->mr[i] = ibv_reg_mr(v->devs[i]->pd, buf, len, IBV_ACCESS_LOCAL_WRITE);
		if (!rg->mr[i]) {
			r = errno ? -errno : -ENOMEM;
			goto err_dereg;
		}
	}
	rg->next = v->ranges;
	v->ranges = rg;
	pthread_rwlock_unlock(&v->lock);
	return 0;

err_dereg:
	while (i-- > 0)
		ibv_dereg_mr(rg->mr[i]);
err_unlock:
	pthread_rwlock_unlock(&v->lock);
	free(rg);
	return r;
}

static int verbs_mem_dereg(void *priv, void *buf)
{
	struct verbs *v = priv;
	struct range *rg = NULL;

	pthread_rwlock_wrlock(&v->lock);
	for (struct range **pp = &v->ranges; *pp; pp = &(*pp)->next)
		if ((*pp)->addr == (char *)buf) {
			rg = *pp;
			*pp = rg->next;
			break;
		}
	pthread_rwlock_unlock(&v->lock);
	if (!rg)
		return -ENOENT;
	for (unsigned i = 0; i < MAX_DEVS; i++)
		if (rg->mr[i])
			ibv_dereg_mr(rg->mr[i]);
	free(rg);
	return 0;
}

static void verbs_counters(void *priv, struct kvfs_xfer_counters *ret)
{
	struct verbs *v = priv;

	ret->wrs = atomic_load_explicit(&v->wrs, memory_order_relaxed);
	ret->doorbells = atomic_load_explicit(&v->doorbells, memory_order_relaxed);
	ret->completions = atomic_load_explicit(&v->completions, memory_order_relaxed);
}

/* Listen on cfg->verbs_listen_addr; the device behind it is set up now (arena registered). */
static int listener_start(struct verbs *v, const char *addr)
{
	char host[INET6_ADDRSTRLEN];
	struct dev *d;
	uint16_t port;
	int r;

	r = parse_addr(addr, &v->src);
	if (r < 0)
		return r;
	if (rdma_create_id(v->ech, &v->listen_id, NULL, RDMA_PS_TCP) < 0)
		return -errno;
	if (rdma_bind_addr(v->listen_id, (struct sockaddr *)&v->src) < 0) {
		r = -errno;
		goto err_destroy_id;
	}
	if (rdma_listen(v->listen_id, LISTEN_BACKLOG) < 0) {
		r = -errno;
		goto err_destroy_id;
	}
	if (v->listen_id->verbs) {
		d = dev_get(v, v->listen_id->verbs, &r);
		if (!d)
			goto err_destroy_id;
	}
	port = ntohs(rdma_get_src_port(v->listen_id));
	if (v->src.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&v->src)->sin6_addr, host,
			  sizeof(host));
		snprintf(v->listen_str, sizeof(v->listen_str), "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&v->src)->sin_addr, host, sizeof(host));
		snprintf(v->listen_str, sizeof(v->listen_str), "%s:%u", host, port);
		/* A wildcard listener: outgoing connections pick their own source. */
		if (((struct sockaddr_in *)&v->src)->sin_addr.s_addr == htonl(INADDR_ANY))
			v->src.ss_family = AF_UNSPEC;
	}
	return 0;

err_destroy_id:
	rdma_destroy_id(v->listen_id);
	v->listen_id = NULL;
	return r;
}

static void verbs_fini(void *priv);

static int verbs_init(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_config *cfg,
		      void **ret_priv)
{
	struct ibv_device **list;
	struct verbs *v;
	int n = 0, r;

	/* No device, no backend: peer_set(VERBS) then answers -EOPNOTSUPP and tcp is used. */
	list = ibv_get_device_list(&n);
	if (list)
		ibv_free_device_list(list);
	if (!list || n <= 0)
		return -ENODEV;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->eng = eng;
	v->self_node = cfg->self_node;
	v->self_incarnation = cfg->self_incarnation;
	v->token_hash = fnv1a(cfg->token);
	v->per_op = cfg->flags & KVFS_XFER_F_PER_OP;
	if (cfg->arena) {
		v->arena_base = kvfs_arena_base(cfg->arena);
		v->arena_size = kvfs_arena_size(cfg->arena);
	}
	v->cm_efd = -1;
	pthread_rwlock_init(&v->lock, NULL);

	v->ech = rdma_create_event_channel();
	if (!v->ech) {
		r = errno ? -errno : -ENODEV;
		goto err_free;
	}
	if (fcntl(v->ech->fd, F_SETFL, fcntl(v->ech->fd, F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		goto err_fini;
	}
	v->cm_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->cm_efd < 0) {
		r = -errno;
		goto err_fini;
	}
	if (cfg->verbs_listen_addr) {
		r = listener_start(v, cfg->verbs_listen_addr);
		if (r < 0)
			goto err_fini;
	}
	r = -pthread_create(&v->cm_thread, NULL, cm_main, v);
	if (r < 0)
		goto err_fini;
	*ret_priv = v;
	return 0;

err_fini:
	/* verbs_fini undoes, in reverse, whatever was set up (no CM thread yet) */
	verbs_fini(v);
	return r;
err_free:
	pthread_rwlock_destroy(&v->lock);
	free(v);
	return r;
}

/* The engine waited for every batch: nothing is posted. Accepts a half-built backend. */
static void verbs_fini(void *priv)
{
	struct verbs *v = priv;
	struct peer *p;
	size_t pos = 0;

	if (!v)
		return;
	if (v->cm_efd >= 0 && v->ech) {
		atomic_store(&v->stopping, true);
		cm_kick(v);
		if (v->cm_thread)
			pthread_join(v->cm_thread, NULL);
	}
	while ((p = kvfs_xfer_peer_next(v->eng, KVFS_XFER_VERBS, &pos))) {
		if (p->id) {
			if (p->id->qp)
				ibv_modify_qp(p->id->qp,
					      &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
					      IBV_QP_STATE);
			p->state = C_BROKEN;
			p->nposted = 0;
			conn_teardown(v, p); /* does not reconnect: stopping, and nothing queued */
		}
		while (p->posts) {
			struct vpost *post = p->posts;

			post_unlink_locked(p, post);
			post_free(post);
		}
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
	while (v->passives)
		passive_destroy(v, v->passives);
	if (v->listen_id)
		rdma_destroy_id(v->listen_id);
	for (unsigned i = v->ndevs; i-- > 0;)
		dev_destroy(v->devs[i]);
	while (v->ranges) {
		struct range *rg = v->ranges;

		v->ranges = rg->next;
		free(rg);
	}
	if (v->cm_efd >= 0)
		close(v->cm_efd);
	if (v->ech)
		rdma_destroy_event_channel(v->ech);
	pthread_rwlock_destroy(&v->lock);
	free(v);
}

const struct kvfs_xfer_backend_ops kvfs_xfer_verbs_ops = {
	.name = "verbs",
	.max_transfer = 0, /* post splits by the device's message size */
	.init = verbs_init,
	.fini = verbs_fini,
	.check_op = verbs_check_op,
	.post = verbs_post,
	.cancel = verbs_cancel,
	.peer_set = verbs_peer_set,
	.peer_down = verbs_peer_down,
	.listen_addr = verbs_listen_addr,
	.mem_reg = verbs_mem_reg,
	.mem_dereg = verbs_mem_dereg,
	.counters = verbs_counters,
};
