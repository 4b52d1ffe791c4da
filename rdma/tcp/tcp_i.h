/* SPDX-License-Identifier: MIT */
/*
 * tcp_i.h - private to rdma/tcp/: the `tcp` backend's objects and the calls between its files.
 *
 * The backend serves this node's arena to peers and reaches theirs over persistent, pipelined
 * TCP connections; the frames are in wire.h. Its files:
 *   client.c  the ops table: init/fini, peer_set/peer_down (a struct peer per remote node, kept
 *             in the engine's peer table), post (deal a request's segments over the peer's
 *             connections) and cancel
 *   conn.c    one client connection: its entries (one per segment in flight), the non-blocking
 *             send path, and its two threads (connect + receive, and the sender)
 *   server.c  the server: accept thread, one thread per accepted connection
 *   sock.c    socket helpers both sides share (addresses, blocking I/O, connect, tokens)
 *
 * Lock order: conn->lock may be held while taking peer->lock (a leaf). No lock is held across
 * blocking I/O or across kvfs_xfer_seg_done(); the non-blocking sendmsg() runs under conn->lock.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "htable.h"
#include "wire.h"
#include "xfer_i.h"

#define DEFAULT_CONNS	     2
#define MAX_CONNS	     16
#define HASH_BUCKETS	     1024 /* per connection, entries by id (reserved at start) */
#define TX_IOV		     64	  /* iovecs per sendmsg */
#define CONNECT_TIMEOUT_MS   5000
#define HANDSHAKE_TIMEOUT_MS 5000
#define FRAME_STALL_MS	     10000 /* server: a frame stuck half-way this long is hostile */
#define SEND_STALL_MS	     30000 /* server: a client that reads nothing this long is gone */
#define USER_TIMEOUT_MS	     10000 /* TCP_USER_TIMEOUT: unacknowledged data this long kills */
#define SERVER_MAX_CONNS     1024
#define SERVER_RBUF	     4096  /* server: request headers are read in batches this big */
#define SERVER_REPLY_BATCH   32	   /* server: replies sent by one sendmsg at most */
#define SCRATCH		     65536 /* bytes of the buffer late or refused payloads are read into */

/* Who may touch an entry's buffer: see conn.c. */
enum entry_state { E_QUEUED, E_SENT, E_RECV, E_DONE };

struct block;

/* One segment of a posted request on one connection. Fields not marked are set at post. */
struct entry {
	struct block *blk;	   /* the allocation it belongs to */
	struct kvfs_xfer_req *req; /* the engine's; valid until reported or cancelled */
	uint32_t seg;		   /* index in req->segs */
	uint8_t dir;		   /* enum kvfs_xfer_dir */
	uint8_t state;		   /* enum entry_state, guarded by conn->lock */
	int result;		   /* with E_DONE, guarded by conn->lock */
	char *buf;		   /* the caller's memory, len bytes */
	uint32_t len;		   /* bytes */
	uint32_t tx_off;	   /* bytes of header + payload sent, guarded by conn->lock */
	uint64_t id;		   /* echoed by the reply; guarded by conn->lock */
	uint64_t rx_mark;	   /* conn->rx_replies when fully sent, guarded by conn->lock */
	struct kvfs_wire_req hdr;  /* in wire order */
	struct entry *tx_next;	   /* send queue, or a private list while being failed */
	struct kvfs_hnode hnode;   /* in conn->hash by id, guarded by conn->lock */
	struct entry *prev, *next; /* conn->all, guarded by conn->lock */
};

/* The entries of one posted request; freed with its last entry. */
struct block {
	_Atomic uint32_t live; /* entries not yet reported or cancelled */
	struct entry e[];      /* one per segment of the request */
};

enum conn_state { C_DOWN, C_CONNECTING, C_UP };

struct peer;

/* One client connection to a peer and its two threads. */
struct conn {
	struct peer *p;		 /* the peer it belongs to */
	pthread_mutex_t lock;	 /* guards the fields marked so, and the entries' (see entry) */
	pthread_cond_t cond;	 /* work for the conn thread; entries leaving E_RECV or E_DONE */
	pthread_cond_t tx_cond;	 /* work for the sender thread */
	int fd;			 /* -1 when down; guarded by lock */
	uint8_t state;		 /* enum conn_state, guarded by lock */
	bool broken;		 /* shut down, the conn thread will tear it down; guarded by lock */
	uint64_t break_id;	 /* entries from this id on were posted after the break and wait
				 * for the next connection; guarded by lock */
	bool stopping;		 /* backend fini; guarded by lock */
	int fail_code;		 /* what its entries fail with when it dies; guarded by lock */
	uint64_t next_id;	 /* the next entry's id (from 1); guarded by lock */
	uint64_t rx_replies;	 /* replies received, for stall detection; guarded by lock */
	struct entry *txq;	 /* send queue head, guarded by lock */
	struct entry **txq_tail; /* its tail's next pointer, guarded by lock */
	struct entry *all;	 /* every linked entry, guarded by lock */
	struct entry *rx_active; /* the entry in E_RECV, guarded by lock */
	struct kvfs_htable hash; /* entries by id, guarded by lock */
	pthread_t rx_thread;	 /* the conn thread (kvfs_tcp_conn_main) */
	pthread_t tx_thread;	 /* the sender thread (kvfs_tcp_sender_main) */
};

/*
 * A remote node as this backend knows it: the backend peer in the engine's entry for the node.
 * Never freed before fini.
 */
struct peer {
	struct tcp *t;		      /* the backend */
	uint32_t node;		      /* constant */
	pthread_mutex_t lock;	      /* guards the fields marked so */
	uint32_t incarnation;	      /* 0 = unknown; guarded by lock */
	struct sockaddr_storage addr; /* guarded by lock */
	socklen_t addrlen;	      /* guarded by lock */
	bool down;		      /* guarded by lock */
	_Atomic uint32_t rr;	      /* round robin over conns */
	uint32_t nconns;	      /* conns[] built */
	struct conn conns[];	      /* t->nconns of them */
};

struct server;

/* The backend (the engine's priv for it). Set at init, then constant. */
struct tcp {
	uint32_t self_node;		    /* this node */
	uint32_t self_incarnation;	    /* and its incarnation */
	uint8_t token[KVFS_WIRE_TOKEN_MAX]; /* zero padded */
	uint16_t token_len;		    /* 0 = no token */
	uint32_t nconns;		    /* per peer */
	struct kvfs_xfer_engine *eng;	    /* whose peer table holds our struct peer objects */
	struct server *srv;		    /* NULL without a listen address */
};

/* sock.c */
/* "ip:port" or "[v6]:port" into @buf. */
void kvfs_tcp_format_addr(const struct sockaddr_storage *sa, char *buf, size_t len);
/* SO_RCVTIMEO / SO_SNDTIMEO in milliseconds; 0 = none. */
void kvfs_tcp_set_timeouts(int fd, int rcv_ms, int snd_ms);
/* Options for a data connection (best effort). */
void kvfs_tcp_sock_tune(int fd);
/* Receive exactly @len bytes (blocking). -EIO on EOF or error, -ETIMEDOUT on SO_RCVTIMEO. */
int kvfs_tcp_recv_full(int fd, void *buf, size_t len);
/* Receive and drop @len bytes. */
int kvfs_tcp_drain(int fd, uint64_t len);
/* Send all of @iov (blocking; @iov is consumed). */
int kvfs_tcp_send_iov(int fd, struct iovec *iov, int n, int flags);
/* Send all of @buf (blocking). */
int kvfs_tcp_send_full(int fd, const void *buf, size_t len);
/* Connect @fd with a timeout. Returns 0 or the domain errno for an unreachable peer. */
int kvfs_tcp_connect_timeout(int fd, const struct sockaddr_storage *sa, socklen_t len, int ms);
/* Equal tokens, in time independent of where they differ. */
bool kvfs_tcp_token_equal(const uint8_t *a, uint16_t alen, const uint8_t *b, uint16_t blen);

/* server.c */

/* Listen on cfg->listen_addr and serve cfg->arena. Returns 0 and *ret_srv, or an error. */
int kvfs_tcp_server_start(struct tcp *t, const struct kvfs_xfer_config *cfg,
			  struct server **ret_srv);
/* Stop accepting, break every connection, join every thread. Accepts NULL. */
void kvfs_tcp_server_stop(struct server *s);
/* Where the server listens ("host:port"). */
const char *kvfs_tcp_server_addr(const struct server *s);

/* conn.c */

/* The threads of connection @arg (a struct conn), started by the peer that owns it. */
void *kvfs_tcp_conn_main(void *arg);
void *kvfs_tcp_sender_main(void *arg);
/* Queue blk->e[first], e[first + step], ... below @n on @c and send what can go now. */
void kvfs_tcp_conn_queue(struct conn *c, struct block *blk, uint32_t first, uint32_t step,
			 uint32_t n);
/* Fail every entry of @c with @err, breaking the connection if it is up. */
void kvfs_tcp_conn_fail(struct conn *c, int err);
/* Take @req's entries off @c; when this returns, @c touches none of them again. */
void kvfs_tcp_conn_cancel(struct conn *c, const struct kvfs_xfer_req *req);
