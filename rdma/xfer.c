/* SPDX-License-Identifier: MIT */
/*
 * xfer.c - the transfer engine: batches, routing, merging, futures, deadlines, counters.
 *
 * The engine owns no thread. A batch is routed and posted by the submitting thread; backends
 * complete segments from wherever they run (inline for `local`) through kvfs_xfer_seg_done();
 * deadlines are enforced by whoever polls or waits on the batch (and by engine destroy), which
 * is enough because a batch nobody waits for has nobody to tell either. See xfer_i.h for the
 * flow and the backend contract.
 *
 * Routing: ops to cfg->self_node go to `local`; ops to another node go to the backend its entry
 * in the peer table names. A node missing from the table completes at once with -EHOSTUNREACH,
 * one that is down or named with another incarnation than the table's with -ESTALE; those ops
 * are counted by no backend (none carried them). Ops rejected by a backend's check_op (-EINVAL
 * out of range, -ESTALE old incarnation) count as that backend's ops and errors, never as
 * transfers.
 *
 * The peer table is a sorted array under a rwlock: submit only reads it (once per run of ops to
 * the same node), the membership writer (peer_set / peer_down) is rare. Backends keep their own
 * view of each peer (addresses, connections); the engine tells them first on peer_set, so a
 * routed op never reaches a backend that has not heard of its peer, and last on peer_down, so
 * no op is routed to a dead peer after its backend failed the ones in flight.
 *
 * Merging: each (backend, node, incarnation) group is sorted by (direction, remote offset,
 * buffer) and neighbours that are contiguous both in the peer's arena and in local memory are
 * merged, up to the backend's max_transfer (not at all with KVFS_XFER_F_PER_OP). Overlapping ops in one batch are not merged and run
 * in an unspecified order.
 *
 * Batch lifetime: the caller's reference, plus one "in flight" reference from submit until
 * the batch is done, dropped by whoever finishes it (last segment or deadline). Lock order:
 * eng->lock, eng->peers_lock and batch->lock are never held together, and none of them is held
 * while calling into a backend.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "xfer_i.h"

#define DEFAULT_TIMEOUT_NS (30ull * 1000000000ull) /* when the config leaves it 0 */
#define NO_BACKEND	   KVFS_XFER_NBACKENDS

struct backend_counters {
	_Atomic uint64_t ops;
	_Atomic uint64_t transfers;
	_Atomic uint64_t bytes;
	_Atomic uint64_t errors;
};

struct backend {
	const struct kvfs_xfer_backend_ops *ops; /* NULL: not built / not available */
	void *priv;
	int status; /* 0, or why ops is NULL (init's error, -EOPNOTSUPP not built) */
	struct backend_counters cnt;
};

/* One remote node in the peer table. Entries are never removed (a dead peer is marked down),
 * so cnt, allocated with the entry, stays valid until the engine is destroyed: requests keep
 * a pointer to it. */
struct peer {
	uint32_t node;
	uint32_t incarnation;	      /* current incarnation, 0 = unknown (any) */
	uint8_t backend;	      /* enum kvfs_xfer_backend_id carrying its ops */
	bool down;		      /* declared dead: ops fail with -ESTALE */
	struct backend_counters *cnt; /* this peer's counters, whatever backend carried them */
};

struct kvfs_xfer_engine {
	struct kvfs_xfer_config cfg; /* token and listen_addr cleared: backends copied them */
	struct backend be[KVFS_XFER_NBACKENDS];

	pthread_mutex_t lock;
	struct kvfs_xfer_batch *inflight; /* batches not done, guarded by lock */

	pthread_rwlock_t peers_lock;
	struct peer *peers; /* sorted by node; guarded by peers_lock */
	size_t npeers;	    /* guarded by peers_lock */
	size_t peers_cap;   /* guarded by peers_lock */
};

struct kvfs_xfer_batch {
	_Atomic unsigned refs;
	struct kvfs_xfer_engine *eng;
	struct kvfs_xfer_op *ops; /* the caller's array */
	size_t nops;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */

	uint32_t *order; /* [nops] routed op indices, grouped and sorted; [0, nrouted) valid */
	uint8_t *route;	 /* [nops] backend id per op, NO_BACKEND when completed at submit */
	struct kvfs_xfer_seg *segs;
	struct kvfs_xfer_req *reqs;
	uint32_t nreqs;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t pending; /* segments not done; guarded by lock */
	bool done;	  /* guarded by lock */
	bool expiring;	  /* a deadline handler runs; guarded by lock */

	struct kvfs_xfer_batch *prev, *next; /* in eng->inflight, guarded by eng->lock */
};

static const char *const backend_names[KVFS_XFER_NBACKENDS] = {
	[KVFS_XFER_LOCAL] = "local",
	[KVFS_XFER_TCP] = "tcp",
	[KVFS_XFER_VERBS] = "verbs",
};

static const struct kvfs_xfer_backend_ops *const builtin_backends[KVFS_XFER_NBACKENDS] = {
	[KVFS_XFER_LOCAL] = &kvfs_xfer_local_ops,
	[KVFS_XFER_TCP] = &kvfs_xfer_tcp_ops,
#if KVFS_HAVE_RDMA
	[KVFS_XFER_VERBS] = &kvfs_xfer_verbs_ops,
#endif
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void cnt_add(struct backend_counters *c, uint64_t ops, uint64_t transfers, uint64_t bytes,
		    uint64_t errors)
{
	if (!c)
		return;
	if (ops)
		atomic_fetch_add_explicit(&c->ops, ops, memory_order_relaxed);
	if (transfers)
		atomic_fetch_add_explicit(&c->transfers, transfers, memory_order_relaxed);
	if (bytes)
		atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
	if (errors)
		atomic_fetch_add_explicit(&c->errors, errors, memory_order_relaxed);
}

static void counters_add(struct backend *be, uint64_t ops, uint64_t transfers, uint64_t bytes,
			 uint64_t errors)
{
	cnt_add(&be->cnt, ops, transfers, bytes, errors);
}

/* See xfer.h. */
const char *kvfs_xfer_backend_name(enum kvfs_xfer_backend_id id)
{
	return (unsigned)id < KVFS_XFER_NBACKENDS ? backend_names[id] : "unknown";
}

/*
 * See xfer.h. Backends that fail to initialise are left out (their peers are unreachable),
 * except `local`, and `tcp` when a listen address was asked for: those failures fail create.
 */
int kvfs_xfer_engine_create(const struct kvfs_xfer_config *cfg, struct kvfs_xfer_engine **ret)
{
	struct kvfs_xfer_engine *eng;
	int r;

	if (!cfg || !ret || (cfg->token && strlen(cfg->token) > KVFS_XFER_TOKEN_MAX))
		return -EINVAL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return -ENOMEM;
	eng->cfg = *cfg;
	if (!eng->cfg.default_timeout_ns)
		eng->cfg.default_timeout_ns = DEFAULT_TIMEOUT_NS;
	pthread_mutex_init(&eng->lock, NULL);
	pthread_rwlock_init(&eng->peers_lock, NULL);

	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = builtin_backends[id];

		if (!ops) {
			eng->be[id].status = -EOPNOTSUPP;
			continue;
		}
		if (ops->init) {
			r = ops->init(eng, &eng->cfg, &eng->be[id].priv);
			if (r < 0) {
				eng->be[id].status = r;
				/*
				 * The local backend is not optional: without it nothing works. A
				 * server that was asked for and cannot listen is an error too.
				 */
				if (id == KVFS_XFER_LOCAL ||
				    (id == KVFS_XFER_TCP && cfg->listen_addr))
					goto err_fini_backends;
				continue;
			}
		}
		eng->be[id].ops = ops;
	}
	/* The caller's strings need not outlive create: backends took copies. */
	eng->cfg.token = NULL;
	eng->cfg.listen_addr = NULL;
	eng->cfg.verbs_listen_addr = NULL;
	*ret = eng;
	return 0;

err_fini_backends:
	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++)
		if (eng->be[id].ops && eng->be[id].ops->fini)
			eng->be[id].ops->fini(eng->be[id].priv);
	pthread_rwlock_destroy(&eng->peers_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
	return r;
}

/* See xfer.h. Waits (up to each batch's deadline) for every batch in flight. */
void kvfs_xfer_engine_destroy(struct kvfs_xfer_engine *eng)
{
	if (!eng)
		return;
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

	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++)
		if (eng->be[id].ops && eng->be[id].ops->fini)
			eng->be[id].ops->fini(eng->be[id].priv);
	for (size_t i = 0; i < eng->npeers; i++)
		free(eng->peers[i].cnt);
	free(eng->peers);
	pthread_rwlock_destroy(&eng->peers_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
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

/*
 * Complete one segment with @result; caller holds b->lock. Returns true when this finished the
 * batch (the caller then retires it after unlocking).
 */
static bool seg_complete_locked(struct kvfs_xfer_batch *b, struct kvfs_xfer_req *req,
				struct kvfs_xfer_seg *seg, int result)
{
	struct backend *be = &b->eng->be[req->backend];

	if (seg->done || b->done)
		return false;
	seg->done = true;
	for (uint32_t i = 0; i < seg->nops; i++)
		b->ops[b->order[seg->first + i]].result = result;
	if (result == 0) {
		counters_add(be, 0, 0, seg->len, 0);
		cnt_add(req->peer_cnt, 0, 0, seg->len, 0);
	} else {
		counters_add(be, 0, 0, 0, seg->nops);
		cnt_add(req->peer_cnt, 0, 0, 0, seg->nops);
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

/* Index of @node in the peer table or of where it would go; caller holds peers_lock. */
static size_t peer_index(const struct kvfs_xfer_engine *eng, uint32_t node)
{
	size_t lo = 0, hi = eng->npeers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (eng->peers[mid].node < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A copy of one peer's entry, cached by submit for a run of ops to the same node. */
struct route_cache {
	bool valid;
	bool found;
	struct peer p;
};

/* Routing: which backend carries @op, or NO_BACKEND with *ret_err set. */
static unsigned route_op(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_op *op,
			 struct route_cache *rc, int *ret_err)
{
	if (op->node == eng->cfg.self_node) {
		if (eng->be[KVFS_XFER_LOCAL].ops)
			return KVFS_XFER_LOCAL;
		*ret_err = -EHOSTUNREACH;
		return NO_BACKEND;
	}
	if (!rc->valid || rc->p.node != op->node) {
		size_t i;

		pthread_rwlock_rdlock(&eng->peers_lock);
		i = peer_index(eng, op->node);
		rc->found = i < eng->npeers && eng->peers[i].node == op->node;
		if (rc->found)
			rc->p = eng->peers[i];
		else
			rc->p.node = op->node;
		pthread_rwlock_unlock(&eng->peers_lock);
		rc->valid = true;
	}
	if (!rc->found || !eng->be[rc->p.backend].ops) {
		*ret_err = -EHOSTUNREACH;
		return NO_BACKEND;
	}
	if (rc->p.down ||
	    (op->incarnation && rc->p.incarnation && op->incarnation != rc->p.incarnation)) {
		*ret_err = -ESTALE;
		return NO_BACKEND;
	}
	return rc->p.backend;
}

/* See xfer.h. Calls for one node are expected from one membership thread, not concurrently. */
int kvfs_xfer_peer_set(struct kvfs_xfer_engine *eng, uint32_t node, uint32_t incarnation,
		       const char *addr, enum kvfs_xfer_backend_id backend)
{
	const struct kvfs_xfer_backend_ops *ops;
	struct backend_counters *cnt;
	int old_backend = -1;
	size_t i;
	int r;

	if (!eng || !addr || node == eng->cfg.self_node || (unsigned)backend >= NO_BACKEND ||
	    backend == KVFS_XFER_LOCAL)
		return -EINVAL;
	ops = eng->be[backend].ops;
	if (!ops || !ops->peer_set)
		return -EOPNOTSUPP;
	/* The backend first: once the table routes to it, it must know the peer. */
	r = ops->peer_set(eng->be[backend].priv, node, incarnation, addr);
	if (r < 0)
		return r;

	pthread_rwlock_wrlock(&eng->peers_lock);
	i = peer_index(eng, node);
	if (i == eng->npeers || eng->peers[i].node != node) {
		cnt = calloc(1, sizeof(*cnt));
		if (!cnt) {
			pthread_rwlock_unlock(&eng->peers_lock);
			if (ops->peer_down)
				ops->peer_down(eng->be[backend].priv, node);
			return -ENOMEM;
		}
		if (eng->npeers == eng->peers_cap) {
			size_t cap = eng->peers_cap ? 2 * eng->peers_cap : 16;
			struct peer *np = realloc(eng->peers, cap * sizeof(*np));

			if (!np) {
				pthread_rwlock_unlock(&eng->peers_lock);
				free(cnt);
				if (ops->peer_down)
					ops->peer_down(eng->be[backend].priv, node);
				return -ENOMEM;
			}
			eng->peers = np;
			eng->peers_cap = cap;
		}
		memmove(&eng->peers[i + 1], &eng->peers[i],
			(eng->npeers - i) * sizeof(*eng->peers));
		eng->npeers++;
	} else {
		cnt = eng->peers[i].cnt;
		if (eng->peers[i].backend != backend)
			old_backend = eng->peers[i].backend;
	}
	eng->peers[i] = (struct peer){
		.node = node, .incarnation = incarnation, .backend = (uint8_t)backend, .cnt = cnt};
	pthread_rwlock_unlock(&eng->peers_lock);

	/* Moved to another backend: the old one fails what it still carries. */
	if (old_backend >= 0 && eng->be[old_backend].ops && eng->be[old_backend].ops->peer_down)
		eng->be[old_backend].ops->peer_down(eng->be[old_backend].priv, node);
	return 0;
}

/* See xfer.h. */
int kvfs_xfer_peer_down(struct kvfs_xfer_engine *eng, uint32_t node)
{
	const struct kvfs_xfer_backend_ops *ops;
	unsigned backend;
	size_t i;

	if (!eng)
		return -EINVAL;
	pthread_rwlock_wrlock(&eng->peers_lock);
	i = peer_index(eng, node);
	if (i == eng->npeers || eng->peers[i].node != node) {
		pthread_rwlock_unlock(&eng->peers_lock);
		return -ENOENT;
	}
	eng->peers[i].down = true;
	backend = eng->peers[i].backend;
	pthread_rwlock_unlock(&eng->peers_lock);

	/* After the table: nothing new is routed there while the backend fails what it holds. */
	ops = eng->be[backend].ops;
	if (ops && ops->peer_down)
		ops->peer_down(eng->be[backend].priv, node);
	return 0;
}

/* See xfer.h. */
int kvfs_xfer_backend_listen_addr(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
				  char *ret_buf, size_t len)
{
	const struct kvfs_xfer_backend_ops *ops;

	if (!eng || !ret_buf || (unsigned)id >= KVFS_XFER_NBACKENDS)
		return -EINVAL;
	ops = eng->be[id].ops;
	if (!ops || !ops->listen_addr)
		return -ENOENT;
	return ops->listen_addr(eng->be[id].priv, ret_buf, len);
}

/* See xfer.h. */
int kvfs_xfer_listen_addr(struct kvfs_xfer_engine *eng, char *ret_buf, size_t len)
{
	return kvfs_xfer_backend_listen_addr(eng, KVFS_XFER_TCP, ret_buf, len);
}

/* See xfer.h. */
int kvfs_xfer_backend_status(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id)
{
	if (!eng || (unsigned)id >= KVFS_XFER_NBACKENDS)
		return -EINVAL;
	return eng->be[id].ops ? 0 : eng->be[id].status;
}

/* See xfer.h. Every backend with a mem_reg slot registers; a failure undoes the others. */
int kvfs_xfer_mem_reg(struct kvfs_xfer_engine *eng, void *buf, size_t len)
{
	int id, r = 0;

	if (!eng || !buf || !len)
		return -EINVAL;
	for (id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_reg) {
			r = ops->mem_reg(eng->be[id].priv, buf, len);
			if (r < 0)
				goto err_dereg;
		}
	}
	return 0;

err_dereg:
	while (--id >= 0) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_reg && ops->mem_dereg)
			ops->mem_dereg(eng->be[id].priv, buf);
	}
	return r;
}

/* See xfer.h. */
int kvfs_xfer_mem_dereg(struct kvfs_xfer_engine *eng, void *buf)
{
	int r = 0;

	if (!eng || !buf)
		return -EINVAL;
	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_dereg) {
			int q = ops->mem_dereg(eng->be[id].priv, buf);

			if (q < 0 && !r)
				r = q;
		}
	}
	return r;
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

/* The counters of peer @node, or NULL (this node, or not in the table). */
static struct backend_counters *peer_counters(struct kvfs_xfer_engine *eng, uint32_t node)
{
	struct backend_counters *c = NULL;
	size_t i;

	pthread_rwlock_rdlock(&eng->peers_lock);
	i = peer_index(eng, node);
	if (i < eng->npeers && eng->peers[i].node == node)
		c = eng->peers[i].cnt;
	pthread_rwlock_unlock(&eng->peers_lock);
	return c;
}

int kvfs_xfer_get_peer_counters(struct kvfs_xfer_engine *eng, uint32_t node,
				struct kvfs_xfer_counters *ret)
{
	struct backend_counters *c = peer_counters(eng, node);

	if (!c)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	ret->ops = atomic_load_explicit(&c->ops, memory_order_relaxed);
	ret->transfers = atomic_load_explicit(&c->transfers, memory_order_relaxed);
	ret->bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
	return 0;
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
						      .segs = &b->segs[nsegs],
						      .peer_cnt = peer_counters(eng, op->node)};
			seg = NULL;
		}
		cnt_add(req->peer_cnt, 1, 0, 0, 0);
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
		struct backend *be = &eng->be[req->backend];
		uint32_t nsegs = req->nsegs;
		int r;

		counters_add(be, 0, nsegs, 0, 0);
		cnt_add(req->peer_cnt, 0, nsegs, 0, 0);
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
	struct route_cache rc = {0};
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
		unsigned id = route_op(eng, op, &rc, &err);

		b->route[i] = (uint8_t)id;
		if (id == NO_BACKEND) {
			op->result = err;
			continue;
		}
		counters_add(&eng->be[id], 1, 0, 0, 0);
		if (eng->be[id].ops->check_op)
			err = eng->be[id].ops->check_op(eng->be[id].priv, op);
		if (err < 0) {
			op->result = err;
			b->route[i] = NO_BACKEND;
			counters_add(&eng->be[id], 0, 0, 0, 1);
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

/* See xfer.h. Zeroes for a backend that is not built. */
void kvfs_xfer_get_counters(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
			    struct kvfs_xfer_counters *ret)
{
	memset(ret, 0, sizeof(*ret));
	if ((unsigned)id >= KVFS_XFER_NBACKENDS)
		return;
	ret->ops = atomic_load_explicit(&eng->be[id].cnt.ops, memory_order_relaxed);
	ret->transfers = atomic_load_explicit(&eng->be[id].cnt.transfers, memory_order_relaxed);
	ret->bytes = atomic_load_explicit(&eng->be[id].cnt.bytes, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&eng->be[id].cnt.errors, memory_order_relaxed);
	if (eng->be[id].ops && eng->be[id].ops->counters)
		eng->be[id].ops->counters(eng->be[id].priv, ret);
}
