/* SPDX-License-Identifier: MIT */
/*
 * conn.c - the `verbs` backend's connections: the CM thread, which does all rdma_cm
 * work of the engine (one event channel): connecting to peers, accepting theirs, tearing
 * connections down, and the listener.
 *
 * Active side: a peer with work queued and no connection is connected by the CM thread
 * (resolve address, resolve route, create the CQ on the device's channel and the QP, connect
 * with our struct cm_priv); ESTABLISHED checks who answered (node, incarnation) and learns its
 * arena (address, length, rkey), then the queued posts go out (post.c). A broken connection is
 * torn down here once nothing is posted on it (QP, CQ, id; orphaned posts reported), and
 * reconnected if work is waiting. Other threads never call rdma_cm: they kick this one through
 * cm_efd.
 *
 * Passive side: a connect request with the right token hash gets a QP on the device's passive
 * CQ and an accept carrying our arena; the QP is only a target (its CPU never sees a transfer)
 * and is destroyed when the peer disconnects.
 *
 * Lock order: dev->poll_lock (held while a QP and its CQ are destroyed), then peer->lock, then
 * v->lock (through kvfs_verbs_dev_get).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "verbs_i.h"
#include "util.h"

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

void kvfs_verbs_cm_kick(struct verbs *v)
{
	uint64_t one = 1;

	if (write(v->cm_efd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the thread will look anyway */
	}
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
	kvfs_verbs_break_locked(p, -EHOSTUNREACH, dl);
	p->state = C_DOWN;
}

/*
 * Destroy @p's QP, CQ and cm_id (state C_BROKEN, nothing posted), report orphaned posts, and
 * reconnect if work is queued. CM thread only.
 */
void kvfs_verbs_conn_teardown(struct verbs *v, struct peer *p)
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
			kvfs_verbs_post_finish_locked(p, post, &dl);
	p->state = C_DOWN;
	p->rlen = 0;
	if (!p->down && has_queued_locked(p))
		conn_start_locked(v, p, &dl);
	pthread_mutex_unlock(&p->lock);
	kvfs_verbs_done_report(&dl);
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
		kvfs_verbs_done_report(&dl);
		if (teardown)
			kvfs_verbs_conn_teardown(v, p);
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
		d = kvfs_verbs_dev_get(v, ev->id->verbs, &r);

	pthread_mutex_lock(&p->lock);
	if (ev->id != p->id)
		goto out; /* an id being torn down */
	if (p->state != C_CONNECTING) {
		if (p->state == C_UP && (ev->event == RDMA_CM_EVENT_DISCONNECTED ||
					 ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL))
			kvfs_verbs_break_locked(p, -EIO, &dl);
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
			kvfs_verbs_pump_locked(p, &dl);
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
		kvfs_verbs_break_locked(p, r, &dl);
out:
	pthread_mutex_unlock(&p->lock);
	kvfs_verbs_done_report(&dl);
}

void kvfs_verbs_passive_destroy(struct verbs *v, struct passive *pas)
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
	d = kvfs_verbs_dev_get(v, id->verbs, &r);
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
		kvfs_verbs_passive_destroy(v, pas);
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
		kvfs_verbs_passive_destroy(v, (struct passive *)(void *)kind);
		break;
	default:
		break;
	}
}

void *kvfs_verbs_cm_main(void *arg)
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

/* Listen on cfg->verbs_listen_addr; the device behind it is set up now (arena registered). */
int kvfs_verbs_listener_start(struct verbs *v, const char *addr)
{
	char host[INET6_ADDRSTRLEN];
	socklen_t srclen;
	struct dev *d;
	uint16_t port;
	int r;

	r = kvfs_parse_addr(addr, true, &v->src, &srclen);
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
		d = kvfs_verbs_dev_get(v, v->listen_id->verbs, &r);
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
