/* SPDX-License-Identifier: MIT */
/*
 * server.c - the `tcp` backend's server: it serves this node's arena to the peers' client
 * connections (conn.c) with the frames of wire.h.
 *
 * One accept thread, and one thread per accepted connection doing blocking I/O: read the hello
 * and answer it (the token compared in constant time), then serve requests in the order they
 * arrive. A READ is answered with one sendmsg() of the reply header and the arena range itself,
 * a WRITE's payload is received straight into the arena: no staging copy either way (except the
 * few payload bytes that arrive with a batch of headers). Ranges are checked against the arena
 * (overflow included) and the incarnation against this node's before any byte moves; a
 * well-formed request that fails them gets an error reply, a malformed one closes its
 * connection and nothing else. A connection stalled mid-frame for FRAME_STALL_MS is closed, and
 * at most SERVER_MAX_CONNS are served, so a hostile client cannot pin the server's threads.
 *
 * Lock order: s->lock is a leaf; no lock is held across blocking I/O.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pool.h"
#include "tcp_i.h"
#include "util.h"

/* A server connection. */
struct sconn {
	struct server *s;      /* the server */
	int fd;		       /* guarded by s->lock (stop shuts it down) */
	pthread_t thread;      /* serves it (sconn_main) */
	_Atomic bool finished; /* the thread is done: reap may join it */
	struct sconn *next;    /* guarded by s->lock */
};

/* The server. Fields not marked are set at start. */
struct server {
	struct tcp *t;	      /* the backend */
	char *base;	      /* the arena; NULL with no arena (every request -EINVAL) */
	uint64_t size;	      /* its bytes */
	int lfd;	      /* the listening socket */
	int efd;	      /* eventfd: stop the accept thread */
	pthread_t thread;     /* the accept thread (server_main) */
	pthread_mutex_t lock; /* guards the fields marked so */
	struct sconn *conns;  /* guarded by lock */
	unsigned nconns;      /* guarded by lock */
	bool stopping;	      /* guarded by lock */
	char addr[INET6_ADDRSTRLEN + 16]; /* where it listens, "host:port" */
};

/* Answer the client's hello. Returns 0 when the connection may carry requests. */
static int server_handshake(struct server *s, int fd)
{
	const struct tcp *t = s->t;
	struct kvfs_wire_hello h;
	struct kvfs_wire_welcome w = {0};
	int r;

	r = kvfs_tcp_recv_full(fd, &h, sizeof(h));
	if (r < 0)
		return r;
	kvfs_wire_hello_swap(&h);
	if (h.magic != KVFS_WIRE_MAGIC || h.token_len > KVFS_WIRE_TOKEN_MAX)
		return -EPROTO; /* not our protocol: no answer */
	if (h.version != KVFS_WIRE_VERSION)
		w.status = -EPROTO;
	else if (t->token_len &&
		 !kvfs_tcp_token_equal(h.token, h.token_len, t->token, t->token_len))
		w.status = -EACCES;
	else if (h.peer_node != t->self_node ||
		 (h.peer_incarnation && h.peer_incarnation != t->self_incarnation))
		w.status = -ESTALE;
	w.magic = KVFS_WIRE_MAGIC;
	w.version = KVFS_WIRE_VERSION;
	w.node = t->self_node;
	w.incarnation = t->self_incarnation;
	w.arena_size = s->size;
	r = w.status;
	kvfs_wire_welcome_swap(&w);
	if (kvfs_tcp_send_full(fd, &w, sizeof(w)) < 0)
		return -EIO;
	return r;
}

/* A request header is well formed (not: servable). */
static bool req_valid(const struct kvfs_wire_req *q)
{
	return q->magic == KVFS_WIRE_REQ_MAGIC && q->op <= KVFS_WIRE_WRITE && !q->flags &&
	       !q->reserved && q->len && q->len <= KVFS_WIRE_MAX_XFER;
}

/*
 * Serve requests until the client leaves or misbehaves. Headers are read in batches into
 * @rbuf; replies to the requests of one batch go out together, as one sendmsg() of headers
 * and arena ranges (up to SERVER_REPLY_BATCH of them). A WRITE's payload is taken from what is
 * buffered, then received straight into the arena. Returns when the connection must close.
 */
static void server_serve(struct server *s, int fd)
{
	struct kvfs_wire_rep reps[SERVER_REPLY_BATCH];
	struct iovec iov[2 * SERVER_REPLY_BATCH];
	char rbuf[SERVER_RBUF];
	size_t rpos = 0, rlen = 0;
	int nrep = 0, niov = 0;

	for (;;) {
		struct kvfs_wire_req q;
		struct kvfs_wire_rep *p;
		int32_t status;
		size_t have;
		int r;

		/* Replies wait only while more requests are already here to batch them with. */
		if (nrep && (rlen - rpos < sizeof(q) || nrep == SERVER_REPLY_BATCH)) {
			if (kvfs_tcp_send_iov(fd, iov, niov, 0) < 0)
				return;
			nrep = niov = 0;
		}
		while (rlen - rpos < sizeof(q)) {
			ssize_t n;

			if (rpos) {
				memmove(rbuf, rbuf + rpos, rlen - rpos);
				rlen -= rpos;
				rpos = 0;
			}
			n = recv(fd, rbuf + rlen, sizeof(rbuf) - rlen, 0);
			if (n > 0) {
				rlen += (size_t)n;
				continue;
			}
			if (n == 0)
				return; /* gone (mid-frame: a short frame) */
			if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && !rlen))
				continue; /* idle between requests is fine */
			return;		  /* an error, or a frame stalled half-way */
		}
		memcpy(&q, rbuf + rpos, sizeof(q));
		rpos += sizeof(q);
		kvfs_wire_req_swap(&q);
		if (!req_valid(&q))
			return;

		status = 0;
		if (q.incarnation && q.incarnation != s->t->self_incarnation)
			status = -ESTALE;
		else if (!s->base || q.off >= s->size || q.len > s->size - q.off)
			status = -EINVAL;

		if (q.op == KVFS_WIRE_WRITE) {
			char *dst = status ? NULL : s->base + q.off;

			/* Do not hold earlier replies back while a payload streams in. */
			if (nrep) {
				if (kvfs_tcp_send_iov(fd, iov, niov, 0) < 0)
					return;
				nrep = niov = 0;
			}
			have = rlen - rpos < q.len ? rlen - rpos : q.len;
			if (dst)
				memcpy(dst, rbuf + rpos, have);
			rpos += have;
			r = dst ? kvfs_tcp_recv_full(fd, dst + have, q.len - have)
				: kvfs_tcp_drain(fd, q.len - have);
			if (r < 0)
				return;
		}
		p = &reps[nrep];
		*p = (struct kvfs_wire_rep){
			.magic = KVFS_WIRE_REP_MAGIC, .op = q.op, .status = status, .id = q.id};
		if (q.op == KVFS_WIRE_READ && !status)
			p->len = q.len;
		iov[niov++] = (struct iovec){.iov_base = p, .iov_len = sizeof(*p)};
		if (p->len)
			iov[niov++] =
				(struct iovec){.iov_base = s->base + q.off, .iov_len = p->len};
		kvfs_wire_rep_swap(p);
		nrep++;
	}
}

static void *sconn_main(void *arg)
{
	struct sconn *sc = arg;
	struct server *s = sc->s;
	int fd = sc->fd;

	kvfs_tcp_sock_tune(fd);
	kvfs_tcp_set_timeouts(fd, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS);
	if (server_handshake(s, fd) == 0) {
		kvfs_tcp_set_timeouts(fd, FRAME_STALL_MS, SEND_STALL_MS);
		server_serve(s, fd);
	}
	pthread_mutex_lock(&s->lock);
	close(sc->fd);
	sc->fd = -1;
	pthread_mutex_unlock(&s->lock);
	atomic_store(&sc->finished, true);
	return NULL;
}

/* Join and free connections whose thread finished; only the accept thread calls this. */
static void server_reap(struct server *s, bool all)
{
	struct sconn *dead = NULL, **pp;

	pthread_mutex_lock(&s->lock);
	for (pp = &s->conns; *pp;) {
		struct sconn *sc = *pp;

		if (all || atomic_load(&sc->finished)) {
			*pp = sc->next;
			sc->next = dead;
			dead = sc;
			s->nconns--;
		} else {
			pp = &sc->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	while (dead) {
		struct sconn *sc = dead;

		dead = sc->next;
		pthread_join(sc->thread, NULL);
		free(sc);
	}
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = s->lfd, .events = POLLIN},
					{.fd = s->efd, .events = POLLIN}};
		struct sconn *sc;
		int fd;

		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			break;
		server_reap(s, false);
		if (pfd[1].revents)
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				poll(NULL, 0, 10); /* out of something: do not spin */
			continue;
		}
		sc = calloc(1, sizeof(*sc));
		pthread_mutex_lock(&s->lock);
		if (!sc || s->stopping || s->nconns >= SERVER_MAX_CONNS) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			free(sc);
			continue;
		}
		sc->s = s;
		sc->fd = fd;
		if (pthread_create(&sc->thread, NULL, sconn_main, sc) != 0) {
			pthread_mutex_unlock(&s->lock);
			close(fd);
			free(sc);
			continue;
		}
		sc->next = s->conns;
		s->conns = sc;
		s->nconns++;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

int kvfs_tcp_server_start(struct tcp *t, const struct kvfs_xfer_config *cfg,
			  struct server **ret_srv)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	struct server *s;
	int one = 1, r;

	r = kvfs_parse_addr(cfg->listen_addr, true, &sa, &salen);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->t = t;
	if (cfg->arena) {
		s->base = kvfs_arena_base(cfg->arena);
		s->size = kvfs_arena_size(cfg->arena);
	}
	pthread_mutex_init(&s->lock, NULL);

	s->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		r = -errno;
		goto err_free_server;
	}
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&sa, salen) < 0 || listen(s->lfd, 128) < 0) {
		r = -errno;
		goto err_close_listen;
	}
	salen = sizeof(sa);
	if (getsockname(s->lfd, (struct sockaddr *)&sa, &salen) < 0) {
		r = -errno;
		goto err_close_listen;
	}
	kvfs_tcp_format_addr(&sa, s->addr, sizeof(s->addr));
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0) {
		r = -errno;
		goto err_close_listen;
	}
	r = -pthread_create(&s->thread, NULL, server_main, s);
	if (r < 0)
		goto err_close_eventfd;
	*ret_srv = s;
	return 0;

err_close_eventfd:
	close(s->efd);
err_close_listen:
	close(s->lfd);
err_free_server:
	pthread_mutex_destroy(&s->lock);
	free(s);
	return r;
}

/* Stop accepting, break every connection, join every thread. Accepts NULL. */
void kvfs_tcp_server_stop(struct server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (write(s->efd, &one, sizeof(one)) < 0) {
		/* An eventfd write cannot fail below its maximum count. */
	}
	pthread_join(s->thread, NULL);
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	for (struct sconn *sc = s->conns; sc; sc = sc->next)
		if (sc->fd >= 0)
			shutdown(sc->fd, SHUT_RDWR);
	pthread_mutex_unlock(&s->lock);
	server_reap(s, true);
	close(s->efd);
	close(s->lfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* See tcp_i.h. */
const char *kvfs_tcp_server_addr(const struct server *s)
{
	return s->addr;
}
