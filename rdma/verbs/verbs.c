/* SPDX-License-Identifier: MIT */
/*
 * verbs.c - the `verbs` backend's face to the engine: its ops table, set-up and tear-down (the
 * event channel, the listener, the CM thread; devices come later, on first use), its peers
 * (struct peer, one connection each, kept in the engine's peer table), check_op and the
 * counters. The design of the whole backend is written once, in verbs_i.h.
 *
 * Lock order: see verbs_i.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pool.h"
#include "verbs_i.h"
#include "util.h"

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	if (!s || !*s)
		return 0;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h ? h : 1;
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	size_t len =
		a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	return a->ss_family == b->ss_family && !memcmp(a, b, len);
}

/* ------------------------------------------------------------------------------------------ */
/* Peers */

static int verbs_peer_set(void *priv, uint32_t node, uint32_t incarnation, const char *addr,
			  void **bpeer)
{
	struct verbs *v = priv;
	struct done_list dl = {0};
	struct sockaddr_storage sa;
	socklen_t salen;
	struct peer *p = *bpeer;
	bool changed;
	int r;

	if (node == v->self_node)
		return -EINVAL;
	r = kvfs_parse_addr(addr, false, &sa, &salen);
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
		kvfs_verbs_break_locked(p, -ESTALE, &dl);
	pthread_mutex_unlock(&p->lock);
	kvfs_verbs_done_report(&dl);
	return 0;
}

static void verbs_peer_down(void *priv, void *bpeer)
{
	struct peer *p = bpeer;
	struct done_list dl = {0};

	pthread_mutex_lock(&p->lock);
	p->down = true;
	kvfs_verbs_break_locked(p, -ESTALE, &dl);
	pthread_mutex_unlock(&p->lock);
	kvfs_verbs_done_report(&dl);
}

/* ------------------------------------------------------------------------------------------ */
/* Ops */

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

static void verbs_counters(void *priv, struct kvfs_xfer_counters *ret)
{
	struct verbs *v = priv;

	ret->wrs = atomic_load_explicit(&v->wrs, memory_order_relaxed);
	ret->doorbells = atomic_load_explicit(&v->doorbells, memory_order_relaxed);
	ret->completions = atomic_load_explicit(&v->completions, memory_order_relaxed);
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
		r = kvfs_verbs_listener_start(v, cfg->verbs_listen_addr);
		if (r < 0)
			goto err_fini;
	}
	r = -pthread_create(&v->cm_thread, NULL, kvfs_verbs_cm_main, v);
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
		kvfs_verbs_cm_kick(v);
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
			kvfs_verbs_conn_teardown(
				v, p); /* does not reconnect: stopping, and nothing queued */
		}
		while (p->posts) {
			struct vpost *post = p->posts;

			kvfs_verbs_post_unlink_locked(p, post);
			kvfs_verbs_post_free(post);
		}
		pthread_cond_destroy(&p->cond);
		pthread_mutex_destroy(&p->lock);
		free(p);
	}
	while (v->passives)
		kvfs_verbs_passive_destroy(v, v->passives);
	if (v->listen_id)
		rdma_destroy_id(v->listen_id);
	for (unsigned i = v->ndevs; i-- > 0;)
		kvfs_verbs_dev_destroy(v->devs[i]);
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
	.post = kvfs_verbs_post,
	.cancel = kvfs_verbs_cancel,
	.peer_set = verbs_peer_set,
	.peer_down = verbs_peer_down,
	.listen_addr = verbs_listen_addr,
	.mem_reg = kvfs_verbs_mem_reg,
	.mem_dereg = kvfs_verbs_mem_dereg,
	.counters = verbs_counters,
};
