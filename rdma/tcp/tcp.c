/* SPDX-License-Identifier: MIT */
/*
 * tcp.c - the `tcp` backend: a server that serves this node's arena, and persistent,
 * pipelined client connections to every peer. The frames are in wire.h.
 *
 * Server. One accept thread, and one thread per accepted connection doing blocking I/O: read
 * the hello and answer it (the token compared in constant time), then serve requests in the
 * order they arrive. A READ is answered with one sendmsg() of the reply header and the arena
 * range itself, a WRITE's payload is received straight into the arena: no staging copy either
 * way (except the few payload bytes that arrive with a batch of headers). Ranges are checked
 * against the arena (overflow included) and the incarnation against this node's before any byte
 * moves; a well-formed request that fails them gets an error reply, a malformed one closes its
 * connection and nothing else. A connection stalled mid-frame for FRAME_STALL_MS is closed, and
 * at most SERVER_MAX_CONNS are served, so a hostile client cannot pin the server's threads.
 *
 * Client. Each peer has cfg->tcp_conns connections (default 2); the segments of one request
 * are dealt over them round robin. A connection has two threads. Its own thread (the "conn
 * thread") connects and handshakes when there is work and the connection is down, then
 * receives replies: it reads a reply header, finds the entry by id, and receives the payload
 * with one blocking recv(MSG_WAITALL) straight into the caller's buffer. Its sender thread only
 * waits for the socket to become writable when a flush could not finish: every send is a
 * non-blocking sendmsg() done under the connection's lock, first by post() itself (so a READ
 * request usually leaves on the submitter's own thread, with no hand-off), then by the sender.
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
 * Lock order: conn->lock may be held while taking peer->lock (a leaf). No lock is held across
 * blocking I/O or across kvfs_xfer_seg_done(); the non-blocking sendmsg() runs under conn->lock.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pool.h"
#include "wire.h"
#include "xfer_i.h"

#define DEFAULT_CONNS	     2
#define MAX_CONNS	     16
#define HASH_BUCKETS	     1024 /* per connection, entries by id */
#define TX_IOV		     64	  /* iovecs per sendmsg */
#define CONNECT_TIMEOUT_MS   5000
#define HANDSHAKE_TIMEOUT_MS 5000
#define FRAME_STALL_MS	     10000 /* server: a frame stuck half-way this long is hostile */
#define SEND_STALL_MS	     30000 /* server: a client that reads nothing this long is gone */
#define USER_TIMEOUT_MS	     10000 /* TCP_USER_TIMEOUT: unacknowledged data this long kills */
#define SERVER_MAX_CONNS     1024
#define SERVER_RBUF	     4096 /* server: request headers are read in batches this big */
#define SERVER_REPLY_BATCH   32	  /* server: replies sent by one sendmsg at most */
#define SCRATCH		     65536

/* ------------------------------------------------------------------------------------------ */
/* Objects */

enum entry_state { E_QUEUED, E_SENT, E_RECV, E_DONE };

struct block;

/* One segment of a posted request on one connection. Fields not marked are set at post. */
struct entry {
	struct block *blk;
	struct kvfs_xfer_req *req; /* the engine's; valid until reported or cancelled */
	uint32_t seg;
	uint8_t dir;
	uint8_t state; /* enum entry_state, guarded by conn->lock */
	int result;    /* with E_DONE, guarded by conn->lock */
	char *buf;     /* the caller's memory, len bytes */
	uint32_t len;
	uint32_t tx_off;	   /* bytes of header + payload sent, guarded by conn->lock */
	uint64_t id;		   /* guarded by conn->lock */
	uint64_t rx_mark;	   /* conn->rx_replies when fully sent, guarded by conn->lock */
	struct kvfs_wire_req hdr;  /* in wire order */
	struct entry *tx_next;	   /* send queue, or a private list while being failed */
	struct entry *h_next;	   /* id hash chain, guarded by conn->lock */
	struct entry *prev, *next; /* conn->all, guarded by conn->lock */
};

/* The entries of one posted request; freed with its last entry. */
struct block {
	_Atomic uint32_t live;
	struct entry e[];
};

enum conn_state { C_DOWN, C_CONNECTING, C_UP };

struct peer;

/* One client connection to a peer and its two threads. */
struct conn {
	struct peer *p;
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* work for the conn thread; entries leaving E_RECV or E_DONE */
	pthread_cond_t tx_cond; /* work for the sender thread */
	int fd;			/* -1 when down; guarded by lock */
	uint8_t state;		/* enum conn_state, guarded by lock */
	bool broken;		/* shut down, the conn thread will tear it down; guarded by lock */
	uint64_t break_id;	/* entries from this id on were posted after the break and wait
				 * for the next connection; guarded by lock */
	bool stopping;		/* backend fini; guarded by lock */
	int fail_code;		/* what its entries fail with when it dies; guarded by lock */
	uint64_t next_id;	/* guarded by lock */
	uint64_t rx_replies;	/* replies received, for stall detection; guarded by lock */
	struct entry *txq;	/* send queue head, guarded by lock */
	struct entry **txq_tail;
	struct entry *all;		  /* every linked entry, guarded by lock */
	struct entry *rx_active;	  /* the entry in E_RECV, guarded by lock */
	struct entry *hash[HASH_BUCKETS]; /* guarded by lock */
	pthread_t rx_thread;
	pthread_t tx_thread;
};

/* A remote node as this backend knows it: the backend peer in the engine's entry for the node.
 * Never freed before fini. */
struct peer {
	struct tcp *t;
	uint32_t node;
	pthread_mutex_t lock;
	uint32_t incarnation;	      /* 0 = unknown; guarded by lock */
	struct sockaddr_storage addr; /* guarded by lock */
	socklen_t addrlen;	      /* guarded by lock */
	bool down;		      /* guarded by lock */
	_Atomic uint32_t rr;	      /* round robin over conns */
	uint32_t nconns;
	struct conn conns[];
};

struct server;

struct tcp {
	uint32_t self_node;
	uint32_t self_incarnation;
	uint8_t token[KVFS_WIRE_TOKEN_MAX]; /* zero padded */
	uint16_t token_len;		    /* 0 = no token */
	uint32_t nconns;		    /* per peer */
	struct kvfs_xfer_engine *eng;	    /* whose peer table holds our struct peer objects */

	struct server *srv; /* NULL without a listen address */
};

/* A server connection. */
struct sconn {
	struct server *s;
	int fd; /* guarded by s->lock (stop shuts it down) */
	pthread_t thread;
	_Atomic bool finished;
	struct sconn *next; /* guarded by s->lock */
};

struct server {
	struct tcp *t;
	char *base; /* the arena; NULL with no arena (every request -EINVAL) */
	uint64_t size;
	int lfd;
	int efd; /* eventfd: stop the accept thread */
	pthread_t thread;
	pthread_mutex_t lock;
	struct sconn *conns; /* guarded by lock */
	unsigned nconns;     /* guarded by lock */
	bool stopping;	     /* guarded by lock */
	char addr[INET6_ADDRSTRLEN + 16];
};

/* ------------------------------------------------------------------------------------------ */
/* Sockets */

/* Split "host:port" or "[v6]:port" and resolve it. @passive: for bind ("" or "*" = any). */
static int parse_addr(const char *s, bool passive, struct sockaddr_storage *ret_sa,
		      socklen_t *ret_len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai;
	char host[256];
	const char *port, *end;
	char *endp;
	size_t hlen;
	unsigned long pnum;

	if (!s)
		return -EINVAL;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		s++;
		port = end + 2;
	} else {
		end = strrchr(s, ':');
		if (!end)
			return -EINVAL;
		port = end + 1;
	}
	hlen = (size_t)(end - s);
	if (hlen >= sizeof(host) || !*port)
		return -EINVAL;
	errno = 0;
	pnum = strtoul(port, &endp, 10);
	if (errno || *endp || pnum > 65535)
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	if (getaddrinfo(hlen && strcmp(host, "*") ? host : NULL, port, &hints, &ai) != 0)
		return -EINVAL;
	if (ai->ai_addrlen > sizeof(*ret_sa)) {
		freeaddrinfo(ai);
		return -EINVAL;
	}
	memset(ret_sa, 0, sizeof(*ret_sa));
	memcpy(ret_sa, ai->ai_addr, ai->ai_addrlen);
	*ret_len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static void format_addr(const struct sockaddr_storage *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
}

static void set_timeouts(int fd, int rcv_ms, int snd_ms)
{
	struct timeval rtv = {.tv_sec = rcv_ms / 1000, .tv_usec = (rcv_ms % 1000) * 1000};
	struct timeval stv = {.tv_sec = snd_ms / 1000, .tv_usec = (snd_ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rtv, sizeof(rtv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof(stv));
}

/*
 * Options for a data connection (best effort: a failure only costs speed). No explicit
 * SO_SNDBUF / SO_RCVBUF: setting them turns off the kernel's autotuning, which grows the
 * buffers up to tcp_rmem/tcp_wmem's maximum (larger than rmem_max allows explicitly).
 */
static void sock_tune(int fd)
{
	int one = 1, idle = 10, intvl = 5, cnt = 3;
	unsigned user_timeout = USER_TIMEOUT_MS;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

/* A socket error as the domain errno of xfer.h: the connection broke. */
static int io_error(int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		return -ETIMEDOUT;
	return -EIO;
}

/* Receive exactly @len bytes (blocking). -EIO on EOF or error, -ETIMEDOUT on SO_RCVTIMEO. */
static int recv_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n == 0) {
			return -EIO;
		} else if (errno != EINTR) {
			return io_error(errno);
		}
	}
	return 0;
}

/* Receive and drop @len bytes. */
static int drain(int fd, uint64_t len)
{
	char scratch[SCRATCH];

	while (len) {
		size_t n = len < sizeof(scratch) ? (size_t)len : sizeof(scratch);
		int r = recv_full(fd, scratch, n);

		if (r < 0)
			return r;
		len -= n;
	}
	return 0;
}

/* Send all of @iov (blocking; @iov is consumed). */
static int send_iov(int fd, struct iovec *iov, int n, int flags)
{
	while (n > 0) {
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return io_error(errno);
		}
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int send_full(int fd, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return send_iov(fd, &iov, 1, 0);
}

/* Connect @fd with a timeout. Returns 0 or the domain errno for an unreachable peer. */
static int connect_timeout(int fd, const struct sockaddr_storage *sa, socklen_t len, int ms)
{
	int flags = fcntl(fd, F_GETFL), err = 0;
	socklen_t elen = sizeof(err);
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -EIO;
	if (connect(fd, (const struct sockaddr *)sa, len) < 0) {
		if (errno != EINPROGRESS)
			err = errno;
		else if (poll(&pfd, 1, ms) == 0)
			err = ETIMEDOUT;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
			err = errno;
	}
	if (fcntl(fd, F_SETFL, flags) < 0 && !err)
		err = EIO;
	switch (err) {
	case 0:
		return 0;
	case ETIMEDOUT:
		return -ETIMEDOUT;
	case ECONNREFUSED:
	case ENETUNREACH:
	case EHOSTUNREACH:
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

/* Equal tokens, in time independent of where they differ. */
static bool token_equal(const uint8_t *a, uint16_t alen, const uint8_t *b, uint16_t blen)
{
	volatile unsigned diff = alen ^ blen;

	for (unsigned i = 0; i < KVFS_WIRE_TOKEN_MAX; i++)
		diff |= (unsigned)(a[i] ^ b[i]);
	return diff == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Server */

/* Answer the client's hello. Returns 0 when the connection may carry requests. */
static int server_handshake(struct server *s, int fd)
{
	const struct tcp *t = s->t;
	struct kvfs_wire_hello h;
	struct kvfs_wire_welcome w = {0};
	int r;

	r = recv_full(fd, &h, sizeof(h));
	if (r < 0)
		return r;
	kvfs_wire_hello_swap(&h);
	if (h.magic != KVFS_WIRE_MAGIC || h.token_len > KVFS_WIRE_TOKEN_MAX)
		return -EPROTO; /* not our protocol: no answer */
	if (h.version != KVFS_WIRE_VERSION)
		w.status = -EPROTO;
	else if (t->token_len && !token_equal(h.token, h.token_len, t->token, t->token_len))
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
	if (send_full(fd, &w, sizeof(w)) < 0)
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
			if (send_iov(fd, iov, niov, 0) < 0)
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
				if (send_iov(fd, iov, niov, 0) < 0)
					return;
				nrep = niov = 0;
			}
			have = rlen - rpos < q.len ? rlen - rpos : q.len;
			if (dst)
				memcpy(dst, rbuf + rpos, have);
			rpos += have;
			r = dst ? recv_full(fd, dst + have, q.len - have) : drain(fd, q.len - have);
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

	sock_tune(fd);
	set_timeouts(fd, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS);
	if (server_handshake(s, fd) == 0) {
		set_timeouts(fd, FRAME_STALL_MS, SEND_STALL_MS);
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

static int server_start(struct tcp *t, const struct kvfs_xfer_config *cfg, struct server **ret_srv)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	struct server *s;
	int one = 1, r;

	r = parse_addr(cfg->listen_addr, true, &sa, &salen);
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
	format_addr(&sa, s->addr, sizeof(s->addr));
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
static void server_stop(struct server *s)
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

/* ------------------------------------------------------------------------------------------ */
/* Client: entries */

static void block_put(struct block *blk)
{
	if (atomic_fetch_sub(&blk->live, 1) == 1)
		free(blk);
}

static struct entry **hash_slot(struct conn *c, uint64_t id)
{
	return &c->hash[(id * 0x9e3779b97f4a7c15ull) >> 54 & (HASH_BUCKETS - 1)];
}

static struct entry *hash_find(struct conn *c, uint64_t id)
{
	struct entry *e = *hash_slot(c, id);

	while (e && e->id != id)
		e = e->h_next;
	return e;
}

/* Link a new entry into @c: id, hash, all, tail of the send queue. */
static void entry_link_locked(struct conn *c, struct entry *e)
{
	struct entry **slot;

	e->id = c->next_id++;
	e->hdr.id = htole64(e->id);
	e->state = E_QUEUED;
	e->tx_off = 0;
	slot = hash_slot(c, e->id);
	e->h_next = *slot;
	*slot = e;
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
	struct entry **pp = hash_slot(c, e->id);

	while (*pp != e)
		pp = &(*pp)->h_next;
	*pp = e->h_next;
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
/* Client: connection threads */

static void *sender_main(void *arg)
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
	set_timeouts(fd, HANDSHAKE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS);
	r = send_full(fd, &h, sizeof(h));
	if (r == 0)
		r = recv_full(fd, &w, sizeof(w));
	if (r < 0)
		return r == -ETIMEDOUT ? r : -EHOSTUNREACH;
	set_timeouts(fd, 0, 0);
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
	sock_tune(fd);
	c->fd = fd;
	pthread_mutex_unlock(&c->lock);

	r = connect_timeout(fd, &sa, salen, CONNECT_TIMEOUT_MS);
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

		r = recv_full(fd, &p, sizeof(p));
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
			if (drain(fd, p.len) < 0)
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
			r = recv_full(fd, e->buf, p.len);
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

/* The conn thread: connect on demand, receive, fail everything when the connection dies. */
static void *conn_main(void *arg)
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
/* Client: peers */

/* Break every connection of @p with @err: entries in flight fail with it. */
static void peer_break(struct peer *p, int err)
{
	for (uint32_t i = 0; i < p->nconns; i++) {
		struct conn *c = &p->conns[i];

		pthread_mutex_lock(&c->lock);
		if (c->fd >= 0) {
			conn_break_locked(c, err);
			c->fail_code = err;
		} else {
			fail_upto_locked(c, err, UINT64_MAX);
		}
		pthread_mutex_unlock(&c->lock);
	}
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
		pthread_mutex_init(&c->lock, NULL);
		pthread_cond_init(&c->cond, NULL);
		pthread_cond_init(&c->tx_cond, NULL);
		r = -pthread_create(&c->rx_thread, NULL, conn_main, c);
		if (r < 0)
			goto err_destroy_conn;
		r = -pthread_create(&c->tx_thread, NULL, sender_main, c);
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
	r = parse_addr(addr, false, &sa, &salen);
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
/* Backend ops */

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
	for (uint32_t k = 0; k < p->nconns && k < n; k++) {
		struct conn *c = &p->conns[(start + k) % p->nconns];

		pthread_mutex_lock(&c->lock);
		for (uint32_t i = k; i < n; i += p->nconns)
			entry_link_locked(c, &blk->e[i]);
		conn_kick_locked(c);
		pthread_mutex_unlock(&c->lock);
	}
	return 0;
}

/* See the file comment: when this returns, nothing of @req is touched or reported again. */
static void tcp_cancel(void *priv, struct kvfs_xfer_req *req)
{
	struct peer *p = req->bpeer;

	for (uint32_t i = 0; i < p->nconns; i++) {
		struct conn *c = &p->conns[i];
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
}

static int tcp_listen_addr(void *priv, char *ret_buf, size_t len)
{
	struct tcp *t = priv;

	if (!t->srv)
		return -ENOENT;
	if (strlen(t->srv->addr) + 1 > len)
		return -ENOSPC;
	memcpy(ret_buf, t->srv->addr, strlen(t->srv->addr) + 1);
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
		r = server_start(t, cfg, &t->srv);
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
	server_stop(t->srv);
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
