/* SPDX-License-Identifier: MIT */
/*
 * conn.c - one client connection of the `tcp` backend: the entries it carries, how they are
 * sent and their replies received, and its two threads. client.c owns the connections (a fixed
 * set per peer) and deals a request's segments over them.
 *
 * A connection has two threads. Its own thread (the "conn thread") connects and handshakes
 * when there is work and the connection is down, then receives replies: it reads a reply
 * header, finds the entry by id, and receives the payload with one blocking recv(MSG_WAITALL)
 * straight into the caller's buffer. Its sender thread only waits for the socket to become
 * writable when a flush could not finish: every send is a non-blocking sendmsg() done under the
 * connection's lock, first by post() itself (so a READ request usually leaves on the
 * submitter's own thread, with no hand-off), then by the sender.
 *
 * Entries. Each segment of a posted request becomes one entry, allocated in one block per
 * request, linked in its connection (all entries, an id hash, and the send queue until fully
 * sent) from post until it is reported. Its state says who may touch its buffer:
 *   E_QUEUED  in the send queue, header or payload not fully sent (senders, under lock)
 *   E_SENT    waiting for its reply
 *   E_RECV    the conn thread is receiving its payload without the lock (conn->rx_active)
 *   E_DONE    being reported with kvfs_xfer_seg_done() without the lock
 * Cancel (deadline) takes the request's entries out: QUEUED and SENT ones are simply forgotten
 * (a late reply is read into a scratch buffer and dropped), unless the frame is half sent or
 * nothing at all came back since it was sent, when the connection is broken too; for RECV and
 * DONE it waits until the conn thread lets go (breaking the connection first for RECV). So when
 * cancel returns nothing touches the request again, as xfer_i.h requires.
 *
 * Failure. A broken connection fails every entry it holds with the connection's fail code:
 * -EIO for a reset or close, -EPROTO for a malformed reply, -ETIMEDOUT when cancel broke it,
 * -ESTALE when the peer was declared down or changed incarnation or address. A connect that
 * fails fails what is queued at once (-EHOSTUNREACH refused or unreachable, -ETIMEDOUT, -EACCES
 * token refused, -ESTALE not the node or incarnation expected). The next post reconnects.
 *
 * Lock order: see tcp_i.h.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tcp_i.h"

/* ------------------------------------------------------------------------------------------ */
/* Entries */

static void block_put(struct block *blk)
{
	if (atomic_fetch_sub(&blk->live, 1) == 1)
		free(blk);
}

static struct entry *hash_find(struct conn *c, uint64_t id)
{
	uint64_t h = kvfs_hash_u64(id);

	for (struct kvfs_hnode *n = kvfs_htable_first(&c->hash, h); n; n = kvfs_htable_next(n, h)) {
		struct entry *e = kvfs_container_of(n, struct entry, hnode);

		if (e->id == id)
			return e;
	}
	return NULL;
}

/* Link a new entry into @c: id, hash, all, tail of the send queue. */
static void entry_link_locked(struct conn *c, struct entry *e)
{
	e->id = c->next_id++;
	e->hdr.id = htole64(e->id);
	e->state = E_QUEUED;
	e->tx_off = 0;
	/* cannot fail: the table has room for HASH_BUCKETS entries, and past that a failed
	 * growth only lengthens its chains */
	(void)kvfs_htable_insert(&c->hash, &e->hnode, kvfs_hash_u64(e->id));
	e->prev = NULL;
	e->next = c->all;
	if (c->all)
		c->all->prev = e;
	c->all = e;
	e->tx_next = NULL;
	*c->txq_tail = e;
	c->txq_tail = &e->tx_next;
}

/* Take @e out of the hash and the list of all (not the send queue). */
static void entry_unlink_locked(struct conn *c, struct entry *e)
{
	kvfs_htable_remove(&c->hash, &e->hnode);
	if (e->prev)
		e->prev->next = e->next;
	else
		c->all = e->next;
	if (e->next)
		e->next->prev = e->prev;
}

static void txq_remove_locked(struct conn *c, struct entry *e)
{
	struct entry **pp = &c->txq;

	while (*pp && *pp != e)
		pp = &(*pp)->tx_next;
	if (!*pp)
		return;
	*pp = e->tx_next;
	if (!*pp)
		c->txq_tail = pp;
}

/* Report an entry in E_DONE and forget it. Called without c->lock. */
static void entry_finish(struct conn *c, struct entry *e)
{
	kvfs_xfer_seg_done(e->req, e->seg, e->result);
	pthread_mutex_lock(&c->lock);
	entry_unlink_locked(c, e);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	block_put(e->blk);
}

/*
 * Fail every entry of @c with an id below @limit that nobody else is handling with @err.
 * Drops c->lock while reporting; returns with it held.
 */
static void fail_upto_locked(struct conn *c, int err, uint64_t limit)
{
	struct entry *list = NULL, **pp;

	/* Out of the send queue first (the rest keeps its order): tx_next is reused below. */
	for (pp = &c->txq; *pp;) {
		if ((*pp)->id < limit)
			*pp = (*pp)->tx_next;
		else
			pp = &(*pp)->tx_next;
	}
	c->txq_tail = pp;
	for (struct entry *e = c->all; e; e = e->next) {
		if (e->state == E_DONE || e->state == E_RECV || e->id >= limit)
			continue;
		e->state = E_DONE;
		e->result = err;
		e->tx_next = list;
		list = e;
	}
	if (!list)
		return;
	pthread_mutex_unlock(&c->lock);
	while (list) {
		struct entry *e = list;

		list = e->tx_next;
		entry_finish(c, e);
	}
	pthread_mutex_lock(&c->lock);
}

/* Shut the connection down with @err for its entries; the conn thread tears it down. */
static void conn_break_locked(struct conn *c, int err)
{
	if (c->fd < 0 || c->broken)
		return;
	c->broken = true;
	c->break_id = c->next_id;
	c->fail_code = err;
	shutdown(c->fd, SHUT_RDWR);
}

/*
 * Send what the queue holds without blocking. Returns 0 (all sent, or nothing to do),
 * -EAGAIN (the socket is full: the sender thread takes over), or an error.
 */
static int flush_locked(struct conn *c)
{
	const uint32_t hsz = sizeof(struct kvfs_wire_req);

	if (c->state != C_UP || c->broken)
		return 0;
	while (c->txq) {
		struct iovec iov[TX_IOV];
		struct msghdr mh = {.msg_iov = iov};
		size_t n = 0;
		ssize_t w;

		for (struct entry *e = c->txq; e && n + 2 <= TX_IOV; e = e->tx_next) {
			uint32_t off = e->tx_off;

			if (off < hsz)
				iov[n++] = (struct iovec){.iov_base = (char *)&e->hdr + off,
							  .iov_len = hsz - off};
			if (e->dir == KVFS_XFER_WRITE) {
				uint32_t done = off > hsz ? off - hsz : 0;

				iov[n++] = (struct iovec){.iov_base = e->buf + done,
							  .iov_len = e->len - done};
			}
		}
		mh.msg_iovlen = n;
		w = sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -EAGAIN;
			return -EIO;
		}
		while (w > 0) {
			struct entry *e = c->txq;
			uint32_t total = hsz + (e->dir == KVFS_XFER_WRITE ? e->len : 0);
			uint32_t rem = total - e->tx_off;

			if ((size_t)w < rem) {
				e->tx_off += (uint32_t)w;
				break;
			}
			w -= rem;
			e->tx_off = total;
			e->state = E_SENT;
			e->rx_mark = c->rx_replies;
			c->txq = e->tx_next;
			if (!c->txq)
				c->txq_tail = &c->txq;
		}
	}
	return 0;
}

/* New entries were queued: send them now if possible, else wake whoever will. */
static void conn_kick_locked(struct conn *c)
{
	int r;

	if (c->state == C_DOWN) {
		pthread_cond_signal(&c->cond);
		return;
	}
	r = flush_locked(c);
	if (r == -EAGAIN)
		pthread_cond_signal(&c->tx_cond);
	else if (r < 0)
		conn_break_locked(c, r);
}

/* ------------------------------------------------------------------------------------------ */
/* Threads */

/* See tcp_i.h: sends what post() could not, while the socket is full. */
void *kvfs_tcp_sender_main(void *arg)
{
	struct conn *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		struct pollfd pfd;
		int r;

		if (c->state != C_UP || c->broken || !c->txq) {
			pthread_cond_wait(&c->tx_cond, &c->lock);
			continue;
		}
		r = flush_locked(c);
		if (r == -EAGAIN) {
			pfd = (struct pollfd){.fd = c->fd, .events = POLLOUT};
			pthread_mutex_unlock(&c->lock);
			poll(&pfd, 1, 100);
			pthread_mutex_lock(&c->lock);
		} else if (r < 0) {
			conn_break_locked(c, r);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Send the hello, check the welcome. */
static int client_handshake(struct tcp *t, int fd, uint32_t node, uint32_t incarnation)
{
	struct kvfs_wire_hello h = {0};
	struct kvfs_wire_welcome w;
	int r;

	h.magic = KVFS_WIRE_MAGIC;
	h.version = KVFS_WIRE_VERSION;
	h.token_len = t->token_len;
	h.node = t->self_node;
	h.incarnation = t->self_incarnation;
	h.peer_node = node;
	h.peer_incarnation = incarnation;
	memcpy(h.token, t->token, sizeof(h.token));
	kvfs_wire_hello_swap(&h);
	kvfs_tcp_set_timeouts(fd, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS);
	r = kvfs_tcp_send_full(fd, &h, sizeof(h));
	if (r == 0)
		r = kvfs_tcp_recv_full(fd, &w, sizeof(w));
	if (r < 0)
		return r == -ETIMEDOUT ? r : -EHOSTUNREACH;
	kvfs_tcp_set_timeouts(fd, 0, 0);
	kvfs_wire_welcome_swap(&w);
	if (w.magic != KVFS_WIRE_MAGIC || w.version != KVFS_WIRE_VERSION)
		return -EPROTO;
	if (w.status < 0)
		return w.status == -EACCES || w.status == -ESTALE ? w.status : -EPROTO;
	if (w.node != node || (incarnation && w.incarnation != incarnation))
		return -ESTALE;
	return 0;
}

/*
 * Connect and handshake; entered and left with c->lock held. On success c is C_UP; on failure
 * *ret_limit says which entries the failure is for (see fail_upto_locked).
 */
static int conn_open_locked(struct conn *c, uint64_t *ret_limit)
{
	struct peer *p = c->p;
	struct sockaddr_storage sa;
	socklen_t salen;
	uint32_t inc;
	bool down;
	int fd, r;

	*ret_limit = UINT64_MAX;
	c->state = C_CONNECTING;
	c->fail_code = 0;
	c->broken = false;
	pthread_mutex_lock(&p->lock);
	sa = p->addr;
	salen = p->addrlen;
	inc = p->incarnation;
	down = p->down;
	pthread_mutex_unlock(&p->lock);
	if (down) {
		c->state = C_DOWN;
		return -ESTALE;
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		c->state = C_DOWN;
		return -EIO;
	}
	kvfs_tcp_sock_tune(fd);
	c->fd = fd;
	pthread_mutex_unlock(&c->lock);

	r = kvfs_tcp_connect_timeout(fd, &sa, salen, CONNECT_TIMEOUT_MS);
	if (r == 0)
		r = client_handshake(p->t, fd, p->node, inc);

	pthread_mutex_lock(&c->lock);
	if (c->fail_code) /* peer_down, peer_set or fini broke it meanwhile */
		r = c->fail_code;
	if (r < 0) {
		close(fd);
		c->fd = -1;
		c->state = C_DOWN;
		if (c->broken)
			*ret_limit = c->break_id;
		c->broken = false;
		c->fail_code = 0;
		return r;
	}
	c->state = C_UP;
	return 0;
}

/* Receive replies until the connection breaks; returns why. Runs without c->lock. */
static int conn_receive(struct conn *c, int fd)
{
	for (;;) {
		struct kvfs_wire_rep p;
		struct entry *e;
		bool bad;
		int r;

		r = kvfs_tcp_recv_full(fd, &p, sizeof(p));
		if (r < 0)
			return -EIO;
		kvfs_wire_rep_swap(&p);
		if (p.magic != KVFS_WIRE_REP_MAGIC || p.op > KVFS_WIRE_WRITE || p.flags ||
		    p.reserved || p.status > 0 || p.status < -4095 || p.len > KVFS_WIRE_MAX_XFER)
			return -EPROTO;

		pthread_mutex_lock(&c->lock);
		c->rx_replies++;
		e = hash_find(c, p.id);
		if (!e) {
			/* Cancelled at its deadline: drop the late reply. */
			bad = !p.id || p.id >= c->next_id;
			pthread_mutex_unlock(&c->lock);
			if (bad)
				return -EPROTO;
			if (kvfs_tcp_drain(fd, p.len) < 0)
				return -EIO;
			continue;
		}
		if (p.status == 0 && e->dir == KVFS_XFER_READ)
			bad = p.len != e->len;
		else
			bad = p.len != 0;
		if (bad || e->state != E_SENT || p.op != e->dir) {
			pthread_mutex_unlock(&c->lock);
			return -EPROTO;
		}
		if (p.len) {
			e->state = E_RECV;
			c->rx_active = e;
			pthread_mutex_unlock(&c->lock);
			r = kvfs_tcp_recv_full(fd, e->buf, p.len);
			pthread_mutex_lock(&c->lock);
			c->rx_active = NULL;
			pthread_cond_broadcast(&c->cond);
			if (r < 0) {
				e->state = E_SENT; /* failed with the others */
				pthread_mutex_unlock(&c->lock);
				return -EIO;
			}
		}
		e->state = E_DONE;
		e->result = p.status;
		pthread_mutex_unlock(&c->lock);
		entry_finish(c, e);
	}
}

/* See tcp_i.h. Connect on demand, receive, fail everything when the connection dies. */
void *kvfs_tcp_conn_main(void *arg)
{
	struct conn *c = arg;

	pthread_mutex_lock(&c->lock);
	while (!c->stopping) {
		uint64_t limit;
		int fd, r;

		if (!c->txq) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		r = conn_open_locked(c, &limit);
		if (r < 0) {
			fail_upto_locked(c, r, limit);
			continue;
		}
		conn_kick_locked(c);
		fd = c->fd;
		pthread_mutex_unlock(&c->lock);

		r = conn_receive(c, fd);

		pthread_mutex_lock(&c->lock);
		if (c->fail_code)
			r = c->fail_code;
		close(c->fd);
		c->fd = -1;
		c->state = C_DOWN;
		/* Entries posted after a break were never sent: they wait for a new connection. */
		limit = c->broken ? c->break_id : UINT64_MAX;
		c->broken = false;
		c->fail_code = 0;
		fail_upto_locked(c, r, limit);
	}
	fail_upto_locked(c, -ESTALE, UINT64_MAX);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points for client.c */

/* See tcp_i.h. */
void kvfs_tcp_conn_queue(struct conn *c, struct block *blk, uint32_t first, uint32_t step,
			 uint32_t n)
{
	pthread_mutex_lock(&c->lock);
	for (uint32_t i = first; i < n; i += step)
		entry_link_locked(c, &blk->e[i]);
	conn_kick_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/* See tcp_i.h. */
void kvfs_tcp_conn_fail(struct conn *c, int err)
{
	pthread_mutex_lock(&c->lock);
	if (c->fd >= 0) {
		conn_break_locked(c, err);
		c->fail_code = err;
	} else {
		fail_upto_locked(c, err, UINT64_MAX);
	}
	pthread_mutex_unlock(&c->lock);
}

/* See tcp_i.h and the file comment. */
void kvfs_tcp_conn_cancel(struct conn *c, const struct kvfs_xfer_req *req)
{
	struct entry *e, *next;

	pthread_mutex_lock(&c->lock);
again:
	for (e = c->all; e; e = next) {
		next = e->next;
		if (e->req != req)
			continue;
		switch (e->state) {
		case E_QUEUED:
			if (e->tx_off) /* half sent: the stream cannot go on without it */
				conn_break_locked(c, -ETIMEDOUT);
			txq_remove_locked(c, e);
			entry_unlink_locked(c, e);
			block_put(e->blk);
			break;
		case E_SENT:
			/* Nothing came back since it left: the peer is stuck. */
			if (c->rx_replies == e->rx_mark)
				conn_break_locked(c, -ETIMEDOUT);
			entry_unlink_locked(c, e);
			block_put(e->blk);
			break;
		case E_RECV:
			conn_break_locked(c, -ETIMEDOUT);
			pthread_cond_wait(&c->cond, &c->lock);
			goto again;
		default: /* E_DONE: being reported right now */
			pthread_cond_wait(&c->cond, &c->lock);
			goto again;
		}
	}
	pthread_mutex_unlock(&c->lock);
}
