/* SPDX-License-Identifier: MIT */
/*
 * batch.c - batches: routing each op, grouping and merging, posting, the future (poll, wait,
 * put) and its deadline.
 *
 * A batch is routed and posted by the submitting thread; backends complete segments from
 * wherever they run (inline for `local`) through kvfs_xfer_seg_done(); deadlines are enforced
 * by whoever polls or waits on the batch (and by engine destroy), which is enough because a
 * batch nobody waits for has nobody to tell either. See xfer_i.h for the flow and the backend
 * contract.
 *
 * Routing (peers.c): ops to cfg->self_node go to `local`; ops to another node go to the backend
 * its entry in the peer table names. A node missing from the table completes at once with
 * -EHOSTUNREACH, one that is down or named with another incarnation than the table's with
 * -ESTALE; those ops are counted by no backend (none carried them). Ops rejected by a backend's
 * check_op (-EINVAL out of range, -ESTALE old incarnation) count as that backend's ops and
 * errors, never as transfers.
 *
 * Merging: each (backend, node, incarnation) group is sorted by (direction, remote offset,
 * buffer) and neighbours that are contiguous both in the peer's arena and in local memory are
 * merged, up to the backend's max_transfer (not at all with KVFS_XFER_F_PER_OP). Overlapping
 * ops in one batch are not merged and run in an unspecified order.
 *
 * Batch lifetime: the caller's reference, plus one "in flight" reference from submit until
 * the batch is done, dropped by whoever finishes it (last segment or deadline). Lock order: see
 * engine_i.h; batch->lock is a leaf.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_i.h"

/* One submitted batch, allocated in one block with its arrays. Set at submit unless marked. */
struct kvfs_xfer_batch {
	_Atomic unsigned refs;	      /* the caller's, plus one while in flight */
	struct kvfs_xfer_engine *eng; /* the engine it was submitted to */
	struct kvfs_xfer_op *ops;     /* the caller's array; results written as segments finish */
	size_t nops;		      /* ops[] length */
	uint64_t deadline_ns;	      /* CLOCK_MONOTONIC */

	uint32_t *order; /* [nops] routed op indices, grouped and sorted; [0, nrouted) */
	uint8_t *route;	 /* [nops] backend id per op, NO_BACKEND when completed at submit */
	struct kvfs_xfer_seg *segs; /* [nops] room; the merged segments, grouped by request */
	struct kvfs_xfer_req *reqs; /* [nops] room; one per (backend, node, incarnation) */
	uint32_t nreqs;		    /* reqs[] used */

	pthread_mutex_t lock; /* guards the fields below and every seg->done, req->pending */
	pthread_cond_t cond;  /* done or expiring changed */
	uint32_t pending;     /* segments not done; guarded by lock */
	bool done;	      /* guarded by lock */
	bool expiring;	      /* a deadline handler runs; guarded by lock */

	struct kvfs_xfer_batch *prev, *next; /* in eng->inflight, guarded by eng->lock */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void batch_free(struct kvfs_xfer_batch *b)
{
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void batch_unref(struct kvfs_xfer_batch *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		batch_free(b);
}

/* The batch just became done (its in-flight reference is ours now): unlink and drop it. */
static void batch_retire(struct kvfs_xfer_batch *b)
{
	struct kvfs_xfer_engine *eng = b->eng;

	pthread_mutex_lock(&eng->lock);
	if (b->prev)
		b->prev->next = b->next;
	else
		eng->inflight = b->next;
	if (b->next)
		b->next->prev = b->prev;
	b->prev = b->next = NULL;
	pthread_mutex_unlock(&eng->lock);
	batch_unref(b);
}

/* See engine_i.h. */
void kvfs_xfer_batches_drain(struct kvfs_xfer_engine *eng)
{
	pthread_mutex_lock(&eng->lock);
	while (eng->inflight) {
		struct kvfs_xfer_batch *b = eng->inflight;

		atomic_fetch_add(&b->refs, 1);
		pthread_mutex_unlock(&eng->lock);
		kvfs_xfer_wait(b);
		kvfs_xfer_batch_put(b);
		pthread_mutex_lock(&eng->lock);
	}
	pthread_mutex_unlock(&eng->lock);
}

/*
 * Complete one segment with @result; caller holds b->lock. Returns true when this finished the
 * batch (the caller then retires it after unlocking).
 */
static bool seg_complete_locked(struct kvfs_xfer_batch *b, struct kvfs_xfer_req *req,
				struct kvfs_xfer_seg *seg, int result)
{
	struct xfer_counters *be = &b->eng->be[req->backend].cnt;
	struct xfer_counters *pc = req->peer ? &req->peer->cnt : NULL;

	if (seg->done || b->done)
		return false;
	seg->done = true;
	for (uint32_t i = 0; i < seg->nops; i++)
		b->ops[b->order[seg->first + i]].result = result;
	if (result == 0) {
		kvfs_xfer_cnt_add(be, 0, 0, seg->len, 0);
		kvfs_xfer_cnt_add(pc, 0, 0, seg->len, 0);
	} else {
		kvfs_xfer_cnt_add(be, 0, 0, 0, seg->nops);
		kvfs_xfer_cnt_add(pc, 0, 0, 0, seg->nops);
	}
	req->pending--;
	if (--b->pending)
		return false;
	b->done = true;
	pthread_cond_broadcast(&b->cond);
	return true;
}

/* See xfer_i.h. */
void kvfs_xfer_seg_done(struct kvfs_xfer_req *req, uint32_t seg, int result)
{
	struct kvfs_xfer_batch *b = req->batch;
	bool finished;

	pthread_mutex_lock(&b->lock);
	finished = seg < req->nsegs && seg_complete_locked(b, req, &req->segs[seg], result);
	pthread_mutex_unlock(&b->lock);
	if (finished)
		batch_retire(b);
}

/* See xfer_i.h. */
struct kvfs_xfer_op *kvfs_xfer_seg_op(struct kvfs_xfer_req *req, const struct kvfs_xfer_seg *seg,
				      uint32_t i)
{
	return &req->batch->ops[req->batch->order[seg->first + i]];
}

/*
 * The deadline passed: cancel every request still posted, then fail what is left with
 * -ETIMEDOUT. Runs once per batch; a concurrent caller just waits for the result.
 */
static void batch_expire(struct kvfs_xfer_batch *b)
{
	struct kvfs_xfer_engine *eng = b->eng;
	bool finished = false;

	pthread_mutex_lock(&b->lock);
	if (b->done || b->expiring) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	b->expiring = true;
	pthread_mutex_unlock(&b->lock);

	/* Without b->lock: cancel may wait for the backend's completion path, which takes it. */
	for (uint32_t i = 0; i < b->nreqs; i++) {
		struct kvfs_xfer_req *req = &b->reqs[i];
		const struct kvfs_xfer_backend_ops *ops = eng->be[req->backend].ops;
		bool posted;

		pthread_mutex_lock(&b->lock);
		posted = req->pending > 0;
		pthread_mutex_unlock(&b->lock);
		if (posted && ops->cancel)
			ops->cancel(eng->be[req->backend].priv, req);
	}

	pthread_mutex_lock(&b->lock);
	for (uint32_t i = 0; i < b->nreqs; i++)
		for (uint32_t s = 0; s < b->reqs[i].nsegs; s++)
			finished |= seg_complete_locked(b, &b->reqs[i], &b->reqs[i].segs[s],
							-ETIMEDOUT);
	b->expiring = false;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
	if (finished)
		batch_retire(b);
}

/* Sort key for merging: (backend, node, incarnation, dir, remote_off, buf). */
static int cmp_ops(const void *pa, const void *pb, void *ctx)
{
	const struct kvfs_xfer_batch *b = ctx;
	uint32_t ia = *(const uint32_t *)pa, ib = *(const uint32_t *)pb;
	const struct kvfs_xfer_op *x = &b->ops[ia], *y = &b->ops[ib];

#define CMP(a, c)                                                                                  \
	do {                                                                                       \
		if ((a) != (c))                                                                    \
			return (a) < (c) ? -1 : 1;                                                 \
	} while (0)
	CMP(b->route[ia], b->route[ib]);
	CMP(x->node, y->node);
	CMP(x->incarnation, y->incarnation);
	CMP(x->dir, y->dir);
	CMP(x->remote_off, y->remote_off);
	CMP((uintptr_t)x->buf, (uintptr_t)y->buf);
	CMP(ia, ib);
#undef CMP
	return 0;
}

static bool same_peer(const struct kvfs_xfer_batch *b, uint32_t ia, uint32_t ib)
{
	return b->route[ia] == b->route[ib] && b->ops[ia].node == b->ops[ib].node &&
	       b->ops[ia].incarnation == b->ops[ib].incarnation;
}

/* Group the routed ops into requests and merge each request's ops into segments. */
static void batch_build(struct kvfs_xfer_batch *b, uint32_t nrouted)
{
	struct kvfs_xfer_engine *eng = b->eng;
	uint32_t nsegs = 0;

	qsort_r(b->order, nrouted, sizeof(*b->order), cmp_ops, b);
	for (uint32_t i = 0; i < nrouted; i++) {
		uint32_t oi = b->order[i];
		const struct kvfs_xfer_op *op = &b->ops[oi];
		struct kvfs_xfer_req *req = b->nreqs ? &b->reqs[b->nreqs - 1] : NULL;
		struct kvfs_xfer_seg *seg = nsegs ? &b->segs[nsegs - 1] : NULL;
		uint64_t max;

		if (!req || !same_peer(b, b->order[i - 1], oi)) {
			req = &b->reqs[b->nreqs++];
			*req = (struct kvfs_xfer_req){.batch = b,
						      .backend = b->route[oi],
						      .node = op->node,
						      .incarnation = op->incarnation,
						      .segs = &b->segs[nsegs]};
			if (req->backend != KVFS_XFER_LOCAL)
				req->peer = kvfs_xfer_peer_lookup(eng, op->node, req->backend,
								  &req->bpeer);
			seg = NULL;
		}
		kvfs_xfer_cnt_add(req->peer ? &req->peer->cnt : NULL, 1, 0, 0, 0);
		max = eng->be[req->backend].ops->max_transfer;
		if (seg && !(eng->cfg.flags & KVFS_XFER_F_PER_OP) && seg->dir == op->dir &&
		    seg->remote_off + seg->len == op->remote_off &&
		    (char *)seg->buf + seg->len == (char *)op->buf &&
		    (!max || seg->len + op->len <= max)) {
			seg->len += op->len;
			seg->nops++;
			continue;
		}
		b->segs[nsegs++] = (struct kvfs_xfer_seg){.dir = op->dir,
							  .remote_off = op->remote_off,
							  .buf = op->buf,
							  .len = op->len,
							  .first = i,
							  .nops = 1};
		req->nsegs++;
	}
	b->pending = nsegs;
	for (uint32_t i = 0; i < b->nreqs; i++)
		b->reqs[i].pending = b->reqs[i].nsegs;
}

/* Hand every request to its backend; a refused request fails whole. */
static void batch_post(struct kvfs_xfer_batch *b)
{
	struct kvfs_xfer_engine *eng = b->eng;

	for (uint32_t i = 0; i < b->nreqs; i++) {
		struct kvfs_xfer_req *req = &b->reqs[i];
		struct xfer_backend *be = &eng->be[req->backend];
		uint32_t nsegs = req->nsegs;
		int r;

		kvfs_xfer_cnt_add(&be->cnt, 0, nsegs, 0, 0);
		kvfs_xfer_cnt_add(req->peer ? &req->peer->cnt : NULL, 0, nsegs, 0, 0);
		r = be->ops->post ? be->ops->post(be->priv, req) : -EOPNOTSUPP;
		if (r < 0)
			for (uint32_t s = 0; s < nsegs; s++)
				kvfs_xfer_seg_done(req, s, r);
	}
}

/* See xfer.h. */
int kvfs_xfer_submit(struct kvfs_xfer_engine *eng, struct kvfs_xfer_op *ops, size_t n,
		     uint64_t timeout_ns, struct kvfs_xfer_batch **ret_batch)
{
	struct xfer_route rc = {0};
	struct kvfs_xfer_batch *b;
	pthread_condattr_t ca;
	uint32_t nrouted = 0;
	size_t sz;

	if (!eng || !ret_batch || (n && !ops) || n > UINT32_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (ops[i].len == 0 || ops[i].dir > KVFS_XFER_WRITE || !ops[i].buf ||
		    ops[i].remote_off > UINT64_MAX - ops[i].len)
			return -EINVAL;

	/* One allocation: the batch, segs[n], reqs[n], order[n], route[n] (most aligned first). */
	sz = sizeof(*b) + n * (sizeof(struct kvfs_xfer_seg) + sizeof(struct kvfs_xfer_req) +
			       sizeof(uint32_t) + sizeof(uint8_t));
	b = calloc(1, sz);
	if (!b)
		return -ENOMEM;
	b->segs = (struct kvfs_xfer_seg *)(b + 1);
	b->reqs = (struct kvfs_xfer_req *)(b->segs + n);
	b->order = (uint32_t *)(b->reqs + n);
	b->route = (uint8_t *)(b->order + n);
	b->eng = eng;
	b->ops = ops;
	b->nops = n;
	b->deadline_ns = now_ns() + (timeout_ns ? timeout_ns : eng->cfg.default_timeout_ns);
	atomic_init(&b->refs, 1);
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);

	for (uint32_t i = 0; i < n; i++) {
		struct kvfs_xfer_op *op = &ops[i];
		int err = 0;
		unsigned id = kvfs_xfer_route(eng, op, &rc, &err);

		b->route[i] = (uint8_t)id;
		if (id == NO_BACKEND) {
			op->result = err;
			continue;
		}
		kvfs_xfer_cnt_add(&eng->be[id].cnt, 1, 0, 0, 0);
		if (eng->be[id].ops->check_op)
			err = eng->be[id].ops->check_op(
				eng->be[id].priv, id == KVFS_XFER_LOCAL ? NULL : rc.bpeer, op);
		if (err < 0) {
			op->result = err;
			b->route[i] = NO_BACKEND;
			kvfs_xfer_cnt_add(&eng->be[id].cnt, 0, 0, 0, 1);
			continue;
		}
		op->result = -EINPROGRESS;
		b->order[nrouted++] = i;
	}

	if (nrouted == 0) {
		b->done = true;
		*ret_batch = b;
		return 0;
	}
	batch_build(b, nrouted);

	/* The in-flight reference, dropped by whoever finishes the batch. */
	atomic_fetch_add(&b->refs, 1);
	pthread_mutex_lock(&eng->lock);
	b->next = eng->inflight;
	if (b->next)
		b->next->prev = b;
	eng->inflight = b;
	pthread_mutex_unlock(&eng->lock);

	batch_post(b);
	*ret_batch = b;
	return 0;
}

/* See xfer.h. Past the deadline, poll times the batch out (which may call a backend's cancel). */
int kvfs_xfer_poll(struct kvfs_xfer_batch *b)
{
	bool done;

	pthread_mutex_lock(&b->lock);
	done = b->done;
	pthread_mutex_unlock(&b->lock);
	if (done || now_ns() < b->deadline_ns)
		return done;
	batch_expire(b);
	pthread_mutex_lock(&b->lock);
	done = b->done;
	pthread_mutex_unlock(&b->lock);
	return done;
}

/* See xfer.h. */
int kvfs_xfer_wait(struct kvfs_xfer_batch *b)
{
	struct timespec ts = {.tv_sec = (time_t)(b->deadline_ns / 1000000000ull),
			      .tv_nsec = (long)(b->deadline_ns % 1000000000ull)};

	pthread_mutex_lock(&b->lock);
	while (!b->done) {
		if (b->expiring) {
			pthread_cond_wait(&b->cond, &b->lock);
			continue;
		}
		if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) == ETIMEDOUT && !b->done) {
			pthread_mutex_unlock(&b->lock);
			batch_expire(b);
			pthread_mutex_lock(&b->lock);
		}
	}
	pthread_mutex_unlock(&b->lock);

	for (size_t i = 0; i < b->nops; i++)
		if (b->ops[i].result < 0)
			return b->ops[i].result;
	return 0;
}

/* See xfer.h. Blocks until the batch is done (or its deadline) if it is still in flight. */
void kvfs_xfer_batch_put(struct kvfs_xfer_batch *b)
{
	if (!b)
		return;
	kvfs_xfer_wait(b);
	batch_unref(b);
}

/* See xfer.h. */
int kvfs_xfer_run(struct kvfs_xfer_engine *eng, struct kvfs_xfer_op *ops, size_t n,
		  uint64_t timeout_ns)
{
	struct kvfs_xfer_batch *b;
	int r;

	r = kvfs_xfer_submit(eng, ops, n, timeout_ns, &b);
	if (r < 0)
		return r;
	r = kvfs_xfer_wait(b);
	kvfs_xfer_batch_put(b);
	return r;
}
