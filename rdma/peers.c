/* SPDX-License-Identifier: MIT */
/*
 * peers.c - the engine's peer table: the one place that knows, for every remote node, its
 * incarnation, whether it is down, which backend carries it, and each backend's own peer object.
 *
 * The table is a sorted array of pointers to entries under a rwlock: submit only reads it (once
 * per run of ops to the same node), the membership writer (peer_set / peer_down) is rare.
 * Entries are never removed (a dead peer is marked down), so pointers to them stay valid until
 * the engine is destroyed: requests keep one for the peer's counters, backends walk their slots.
 *
 * Ordering with the backends: on peer_set the backend hears first and the table routes to it
 * only after, so a routed op never reaches a backend that does not know its peer; on peer_down
 * the table marks the peer first and the backend hears last, so no op is routed to a dead peer
 * after its backend failed the ones in flight. A new node's entry is inserted before its backend
 * is asked (the backend's peer object needs a home), but routes nowhere, counts as absent and
 * cannot be declared down until a backend accepted it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"

/* Index of @node in the table or of where it would go; caller holds peers_lock. */
static size_t peer_index(const struct kvfs_xfer_engine *eng, uint32_t node)
{
	size_t lo = 0, hi = eng->npeers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (eng->peers[mid]->node < node)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The entry of @node or NULL; caller holds peers_lock. */
static struct kvfs_xfer_peer *peer_find_locked(const struct kvfs_xfer_engine *eng, uint32_t node)
{
	size_t i = peer_index(eng, node);

	return i < eng->npeers && eng->peers[i]->node == node ? eng->peers[i] : NULL;
}

/* The entry of @node, inserted (routing nowhere) when missing. Returns NULL only for -ENOMEM. */
static struct kvfs_xfer_peer *peer_get_or_insert(struct kvfs_xfer_engine *eng, uint32_t node)
{
	struct kvfs_xfer_peer *p;
	size_t i;

	pthread_rwlock_wrlock(&eng->peers_lock);
	i = peer_index(eng, node);
	if (i < eng->npeers && eng->peers[i]->node == node) {
		p = eng->peers[i];
		goto out;
	}
	if (eng->npeers == eng->peers_cap) {
		size_t cap = eng->peers_cap ? 2 * eng->peers_cap : 16;
		struct kvfs_xfer_peer **np = realloc(eng->peers, cap * sizeof(*np));

		if (!np) {
			p = NULL;
			goto out;
		}
		eng->peers = np;
		eng->peers_cap = cap;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		goto out;
	p->node = node;
	p->backend = NO_BACKEND;
	memmove(&eng->peers[i + 1], &eng->peers[i], (eng->npeers - i) * sizeof(*eng->peers));
	eng->peers[i] = p;
	eng->npeers++;
out:
	pthread_rwlock_unlock(&eng->peers_lock);
	return p;
}

/* See engine_i.h. */
unsigned kvfs_xfer_route(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_op *op,
			 struct xfer_route *rc, int *ret_err)
{
	if (op->node == eng->cfg.self_node) {
		if (eng->be[KVFS_XFER_LOCAL].ops)
			return KVFS_XFER_LOCAL;
		*ret_err = -EHOSTUNREACH;
		return NO_BACKEND;
	}
	if (!rc->valid || rc->node != op->node) {
		struct kvfs_xfer_peer *p;

		pthread_rwlock_rdlock(&eng->peers_lock);
		p = peer_find_locked(eng, op->node);
		*rc = (struct xfer_route){.valid = true, .node = op->node, .backend = NO_BACKEND};
		if (p && p->backend != NO_BACKEND) {
			rc->peer = p;
			rc->incarnation = p->incarnation;
			rc->backend = p->backend;
			rc->down = p->down;
			rc->bpeer = p->bpeer[p->backend];
		}
		pthread_rwlock_unlock(&eng->peers_lock);
	}
	if (rc->backend == NO_BACKEND || !eng->be[rc->backend].ops) {
		*ret_err = -EHOSTUNREACH;
		return NO_BACKEND;
	}
	if (rc->down ||
	    (op->incarnation && rc->incarnation && op->incarnation != rc->incarnation)) {
		*ret_err = -ESTALE;
		return NO_BACKEND;
	}
	return rc->backend;
}

/* See engine_i.h. */
struct kvfs_xfer_peer *kvfs_xfer_peer_lookup(struct kvfs_xfer_engine *eng, uint32_t node,
					     unsigned backend, void **ret_bpeer)
{
	struct kvfs_xfer_peer *p;

	pthread_rwlock_rdlock(&eng->peers_lock);
	p = peer_find_locked(eng, node);
	*ret_bpeer = p && backend < KVFS_XFER_NBACKENDS ? p->bpeer[backend] : NULL;
	pthread_rwlock_unlock(&eng->peers_lock);
	return p;
}

/* See xfer_i.h. */
void *kvfs_xfer_peer_next(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id, size_t *pos)
{
	void *bp = NULL;

	pthread_rwlock_rdlock(&eng->peers_lock);
	while (!bp && *pos < eng->npeers)
		bp = eng->peers[(*pos)++]->bpeer[id];
	pthread_rwlock_unlock(&eng->peers_lock);
	return bp;
}

/*
 * See xfer.h. Calls for one node are expected from one membership thread, not concurrently: the
 * backend peer read before the backend's peer_set is still the entry's when it is stored after.
 */
int kvfs_xfer_peer_set(struct kvfs_xfer_engine *eng, uint32_t node, uint32_t incarnation,
		       const char *addr, enum kvfs_xfer_backend_id backend)
{
	const struct kvfs_xfer_backend_ops *ops;
	struct kvfs_xfer_peer *p;
	unsigned old_backend;
	void *bpeer, *old_bpeer = NULL;
	int r;

	if (!eng || !addr || node == eng->cfg.self_node || (unsigned)backend >= NO_BACKEND ||
	    backend == KVFS_XFER_LOCAL)
		return -EINVAL;
	ops = eng->be[backend].ops;
	if (!ops || !ops->peer_set)
		return -EOPNOTSUPP;
	p = peer_get_or_insert(eng, node);
	if (!p)
		return -ENOMEM;
	pthread_rwlock_rdlock(&eng->peers_lock);
	bpeer = p->bpeer[backend];
	pthread_rwlock_unlock(&eng->peers_lock);

	/* The backend first: once the table routes to it, it must know the peer. */
	r = ops->peer_set(eng->be[backend].priv, node, incarnation, addr, &bpeer);
	if (r < 0)
		return r;

	pthread_rwlock_wrlock(&eng->peers_lock);
	old_backend = p->backend;
	if (old_backend != NO_BACKEND && old_backend != (unsigned)backend)
		old_bpeer = p->bpeer[old_backend];
	p->bpeer[backend] = bpeer;
	p->incarnation = incarnation;
	p->backend = (uint8_t)backend;
	p->down = false;
	pthread_rwlock_unlock(&eng->peers_lock);

	/* Moved to another backend: the old one fails what it still carries. */
	if (old_bpeer && eng->be[old_backend].ops && eng->be[old_backend].ops->peer_down)
		eng->be[old_backend].ops->peer_down(eng->be[old_backend].priv, old_bpeer);
	return 0;
}

/* See xfer.h. */
int kvfs_xfer_peer_down(struct kvfs_xfer_engine *eng, uint32_t node)
{
	const struct kvfs_xfer_backend_ops *ops;
	struct kvfs_xfer_peer *p;
	unsigned backend;
	void *bpeer;

	if (!eng)
		return -EINVAL;
	pthread_rwlock_wrlock(&eng->peers_lock);
	p = peer_find_locked(eng, node);
	if (!p || p->backend == NO_BACKEND) {
		pthread_rwlock_unlock(&eng->peers_lock);
		return -ENOENT;
	}
	p->down = true;
	backend = p->backend;
	bpeer = p->bpeer[backend];
	pthread_rwlock_unlock(&eng->peers_lock);

	/* After the table: nothing new is routed there while the backend fails what it holds. */
	ops = eng->be[backend].ops;
	if (ops && ops->peer_down)
		ops->peer_down(eng->be[backend].priv, bpeer);
	return 0;
}

/* See xfer.h. */
int kvfs_xfer_get_peer_counters(struct kvfs_xfer_engine *eng, uint32_t node,
				struct kvfs_xfer_counters *ret)
{
	struct kvfs_xfer_peer *p;

	pthread_rwlock_rdlock(&eng->peers_lock);
	p = peer_find_locked(eng, node);
	if (p && p->backend == NO_BACKEND)
		p = NULL;
	pthread_rwlock_unlock(&eng->peers_lock);
	if (!p)
		return -ENOENT;
	memset(ret, 0, sizeof(*ret));
	ret->ops = atomic_load_explicit(&p->cnt.ops, memory_order_relaxed);
	ret->transfers = atomic_load_explicit(&p->cnt.transfers, memory_order_relaxed);
	ret->bytes = atomic_load_explicit(&p->cnt.bytes, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&p->cnt.errors, memory_order_relaxed);
	return 0;
}

/* See engine_i.h. Backends freed their peer objects in fini. */
void kvfs_xfer_peers_fini(struct kvfs_xfer_engine *eng)
{
	for (size_t i = 0; i < eng->npeers; i++)
		free(eng->peers[i]);
	free(eng->peers);
	eng->peers = NULL;
	eng->npeers = eng->peers_cap = 0;
}
