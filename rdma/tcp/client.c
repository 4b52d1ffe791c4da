/* SPDX-License-Identifier: MIT */
/*
 * client.c - the `tcp` backend's ops table: set-up and tear-down, the backend's peers, and the
 * entry points the engine calls to post and cancel.
 *
 * Each peer (struct peer, kept in the engine's peer table) has cfg->tcp_conns connections
 * (default 2, see conn.c), whose threads are started when the peer is first set; the segments
 * of one request are dealt over them round robin. A changed incarnation or address, or the
 * peer going down, breaks every connection of the peer (in flight: -ESTALE); the next post
 * reconnects. The server (server.c) is started at init when a listen address is configured.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tcp_i.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------ */
/* Peers */

/* Break every connection of @p with @err: entries in flight fail with it. */
static void peer_break(struct peer *p, int err)
{
	for (uint32_t i = 0; i < p->nconns; i++)
		kvfs_tcp_conn_fail(&p->conns[i], err);
}

static void peer_destroy(struct peer *p)
{
	for (uint32_t i = 0; i < p->nconns; i++) {
		struct conn *c = &p->conns[i];

		pthread_mutex_lock(&c->lock);
		c->stopping = true;
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
		pthread_cond_broadcast(&c->cond);
		pthread_cond_broadcast(&c->tx_cond);
		pthread_mutex_unlock(&c->lock);
	}
	for (uint32_t i = 0; i < p->nconns; i++) {
		struct conn *c = &p->conns[i];

		pthread_join(c->tx_thread, NULL);
		pthread_join(c->rx_thread, NULL);
		pthread_cond_destroy(&c->tx_cond);
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		kvfs_htable_fini(&c->hash);
	}
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static int peer_create(struct tcp *t, uint32_t node, struct peer **ret_peer)
{
	struct peer *p = calloc(1, sizeof(*p) + t->nconns * sizeof(struct conn));
	uint32_t i;
	int r = 0;

	if (!p)
		return -ENOMEM;
	p->t = t;
	p->node = node;
	pthread_mutex_init(&p->lock, NULL);
	for (i = 0; i < t->nconns; i++) {
		struct conn *c = &p->conns[i];

		c->p = p;
		c->fd = -1;
		c->next_id = 1;
		c->txq_tail = &c->txq;
		kvfs_htable_init(&c->hash);
		r = kvfs_htable_reserve(&c->hash, HASH_BUCKETS);
		if (r < 0)
			goto err_free_table;
		pthread_mutex_init(&c->lock, NULL);
		pthread_cond_init(&c->cond, NULL);
		pthread_cond_init(&c->tx_cond, NULL);
		r = -pthread_create(&c->rx_thread, NULL, kvfs_tcp_conn_main, c);
		if (r < 0)
			goto err_destroy_conn;
		r = -pthread_create(&c->tx_thread, NULL, kvfs_tcp_sender_main, c);
		if (r < 0)
			goto err_stop_rx;
		p->nconns++;
	}
	*ret_peer = p;
	return 0;

err_stop_rx:
	pthread_mutex_lock(&p->conns[i].lock);
	p->conns[i].stopping = true;
	pthread_cond_broadcast(&p->conns[i].cond);
	pthread_mutex_unlock(&p->conns[i].lock);
	pthread_join(p->conns[i].rx_thread, NULL);
err_destroy_conn:
	pthread_cond_destroy(&p->conns[i].tx_cond);
	pthread_cond_destroy(&p->conns[i].cond);
	pthread_mutex_destroy(&p->conns[i].lock);
err_free_table:
	kvfs_htable_fini(&p->conns[i].hash);
	peer_destroy(p); /* the conns built so far */
	return r;
}

static int tcp_peer_set(void *priv, uint32_t node, uint32_t incarnation, const char *addr,
			void **bpeer)
{
	struct tcp *t = priv;
	struct sockaddr_storage sa;
	struct peer *p = *bpeer;
	socklen_t salen;
	bool changed;
	int r;

	if (node == t->self_node)
		return -EINVAL;
	r = kvfs_parse_addr(addr, false, &sa, &salen);
	if (r < 0)
		return r;

	if (!p) {
		r = peer_create(t, node, &p);
		if (r < 0)
			return r;
		p->incarnation = incarnation;
		p->addr = sa;
		p->addrlen = salen;
		*bpeer = p;
		return 0;
	}

	pthread_mutex_lock(&p->lock);
	changed = p->incarnation != incarnation || p->addrlen != salen ||
		  memcmp(&p->addr, &sa, salen) != 0;
	p->incarnation = incarnation;
	p->addr = sa;
	p->addrlen = salen;
	p->down = false;
	pthread_mutex_unlock(&p->lock);
	/* What is in flight went to the old incarnation or address: it is stale. */
	if (changed)
		peer_break(p, -ESTALE);
	return 0;
}

static void tcp_peer_down(void *priv, void *bpeer)
{
	struct peer *p = bpeer;

	pthread_mutex_lock(&p->lock);
	p->down = true;
	pthread_mutex_unlock(&p->lock);
	peer_break(p, -ESTALE);
}

/* ------------------------------------------------------------------------------------------ */
/* Ops */

static int tcp_post(void *priv, struct kvfs_xfer_req *req)
{
	struct peer *p = req->bpeer;
	uint32_t n = req->nsegs, inc, start;
	struct block *blk;
	bool down;

	pthread_mutex_lock(&p->lock);
	down = p->down;
	inc = req->incarnation ? req->incarnation : p->incarnation;
	pthread_mutex_unlock(&p->lock);
	if (down)
		return -ESTALE;
	blk = malloc(sizeof(*blk) + n * sizeof(struct entry));
	if (!blk)
		return -ENOMEM;
	atomic_init(&blk->live, n);
	for (uint32_t i = 0; i < n; i++) {
		const struct kvfs_xfer_seg *s = &req->segs[i];
		struct entry *e = &blk->e[i];

		*e = (struct entry){.blk = blk,
				    .req = req,
				    .seg = i,
				    .dir = s->dir,
				    .buf = s->buf,
				    .len = (uint32_t)s->len};
		e->hdr = (struct kvfs_wire_req){.magic = KVFS_WIRE_REQ_MAGIC,
						.op = s->dir,
						.incarnation = inc,
						.off = s->remote_off,
						.len = (uint32_t)s->len};
		kvfs_wire_req_swap(&e->hdr);
	}

	/*
	 * Deal the segments over the connections. Once a connection's lock is dropped its entries
	 * may complete (even the whole request, for the last one): touch only blk and p after.
	 */
	start = atomic_fetch_add_explicit(&p->rr, 1, memory_order_relaxed);
	for (uint32_t k = 0; k < p->nconns && k < n; k++)
		kvfs_tcp_conn_queue(&p->conns[(start + k) % p->nconns], blk, k, p->nconns, n);
	return 0;
}

/* See the file comment: when this returns, nothing of @req is touched or reported again. */
static void tcp_cancel(void *priv, struct kvfs_xfer_req *req)
{
	struct peer *p = req->bpeer;

	for (uint32_t i = 0; i < p->nconns; i++)
		kvfs_tcp_conn_cancel(&p->conns[i], req);
}

static int tcp_listen_addr(void *priv, char *ret_buf, size_t len)
{
	struct tcp *t = priv;
	const char *addr;

	if (!t->srv)
		return -ENOENT;
	addr = kvfs_tcp_server_addr(t->srv);
	if (strlen(addr) + 1 > len)
		return -ENOSPC;
	memcpy(ret_buf, addr, strlen(addr) + 1);
	return 0;
}

static int tcp_init(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_config *cfg,
		    void **ret_priv)
{
	size_t tlen = cfg->token ? strlen(cfg->token) : 0;
	struct tcp *t;
	int r;

	if (tlen > KVFS_WIRE_TOKEN_MAX || cfg->tcp_conns > MAX_CONNS)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->self_node = cfg->self_node;
	t->self_incarnation = cfg->self_incarnation;
	memcpy(t->token, cfg->token ? cfg->token : "", tlen);
	t->token_len = (uint16_t)tlen;
	t->nconns = cfg->tcp_conns ? cfg->tcp_conns : DEFAULT_CONNS;
	t->eng = eng;
	if (cfg->listen_addr) {
		r = kvfs_tcp_server_start(t, cfg, &t->srv);
		if (r < 0)
			goto err_free_tcp;
	}
	*ret_priv = t;
	return 0;

err_free_tcp:
	free(t);
	return r;
}

static void tcp_fini(void *priv)
{
	struct tcp *t = priv;
	struct peer *p;
	size_t pos = 0;

	if (!t)
		return;
	kvfs_tcp_server_stop(t->srv);
	while ((p = kvfs_xfer_peer_next(t->eng, KVFS_XFER_TCP, &pos)))
		peer_destroy(p);
	free(t);
}

const struct kvfs_xfer_backend_ops kvfs_xfer_tcp_ops = {
	.name = "tcp",
	.max_transfer = KVFS_WIRE_MAX_XFER,
	.init = tcp_init,
	.fini = tcp_fini,
	.check_op = NULL, /* ranges and incarnations are the peer's to judge */
	.post = tcp_post,
	.cancel = tcp_cancel,
	.peer_set = tcp_peer_set,
	.peer_down = tcp_peer_down,
	.listen_addr = tcp_listen_addr,
};
