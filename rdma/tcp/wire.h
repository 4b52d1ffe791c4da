/* SPDX-License-Identifier: MIT */
/*
 * wire.h - private to rdma/tcp/ (and its unit test): the frames of the `tcp` transfer protocol.
 *
 * A connection starts with a handshake, then carries pipelined requests:
 *
 *   client -> server   struct kvfs_wire_hello    magic, version, who the client is, which node
 *                                                and incarnation it expects, the cluster token
 *   server -> client   struct kvfs_wire_welcome  status (0, -EACCES bad token, -ESTALE not the
 *                                                node or incarnation asked for, -EPROTO), the
 *                                                server's node, incarnation and arena size;
 *                                                a non-zero status is followed by a close
 *   client -> server   struct kvfs_wire_req      READ or WRITE {id, incarnation, offset, len};
 *                                                a WRITE is followed by len payload bytes
 *   server -> client   struct kvfs_wire_rep      {id, status, len}; a successful READ is
 *                                                followed by len payload bytes
 *
 * Requests are answered by id; a client must accept replies in any order (the server in
 * tcp/server.c answers in order per connection). A well-formed request the server cannot serve
 * gets an error reply and the connection lives on: -EINVAL range outside the arena, -ESTALE
 * incarnation not the server's. A malformed one (bad magic, unknown op, non-zero reserved bits,
 * len 0 or above KVFS_WIRE_MAX_XFER, a frame cut short or stalled mid-way) closes the
 * connection.
 *
 * All integers are little-endian; every frame is a multiple of 8 bytes with natural alignment,
 * so the structs are sent as they are after conversion. The token travels in the clear: it
 * keeps strangers and misconfigured nodes out of a private data network, it does not protect
 * against someone who can read that network's traffic.
 */
#pragma once

#include <endian.h>
#include <stdint.h>

#define KVFS_WIRE_MAGIC	    0x5346564bu /* "KVFS" */
#define KVFS_WIRE_VERSION   1u
#define KVFS_WIRE_REQ_MAGIC 0x514bu	/* "KQ" */
#define KVFS_WIRE_REP_MAGIC 0x504bu	/* "KP" */
#define KVFS_WIRE_TOKEN_MAX 128u	/* = KVFS_XFER_TOKEN_MAX */
#define KVFS_WIRE_MAX_XFER  (64u << 20) /* largest READ or WRITE of one request */

enum kvfs_wire_op {
	KVFS_WIRE_READ = 0, /* same values as enum kvfs_xfer_dir */
	KVFS_WIRE_WRITE = 1,
};

struct kvfs_wire_hello {
	uint32_t magic;			    /* KVFS_WIRE_MAGIC */
	uint16_t version;		    /* KVFS_WIRE_VERSION */
	uint16_t token_len;		    /* bytes of token used, <= KVFS_WIRE_TOKEN_MAX */
	uint32_t node;			    /* the client's node id */
	uint32_t incarnation;		    /* the client's incarnation */
	uint32_t peer_node;		    /* the server node the client means to reach */
	uint32_t peer_incarnation;	    /* its incarnation as the client knows it, 0 = any */
	uint8_t token[KVFS_WIRE_TOKEN_MAX]; /* zero padded */
};

struct kvfs_wire_welcome {
	uint32_t magic;	      /* KVFS_WIRE_MAGIC */
	uint16_t version;     /* KVFS_WIRE_VERSION */
	uint16_t reserved;    /* 0 */
	int32_t status;	      /* 0 or a negative errno */
	uint32_t node;	      /* the server's node id */
	uint32_t incarnation; /* the server's incarnation */
	uint32_t reserved2;   /* 0 */
	uint64_t arena_size;  /* bytes served */
};

struct kvfs_wire_req {
	uint16_t magic;	      /* KVFS_WIRE_REQ_MAGIC */
	uint8_t op;	      /* enum kvfs_wire_op */
	uint8_t flags;	      /* 0 */
	uint32_t incarnation; /* the server incarnation the offset belongs to, 0 = any */
	uint64_t id;	      /* the client's, echoed in the reply */
	uint64_t off;	      /* byte offset in the server's arena */
	uint32_t len;	      /* 1 .. KVFS_WIRE_MAX_XFER */
	uint32_t reserved;    /* 0 */
};

struct kvfs_wire_rep {
	uint16_t magic;	   /* KVFS_WIRE_REP_MAGIC */
	uint8_t op;	   /* the request's op */
	uint8_t flags;	   /* 0 */
	int32_t status;	   /* 0 or a negative errno */
	uint64_t id;	   /* the request's id */
	uint32_t len;	   /* payload bytes that follow (a successful READ: the request's len) */
	uint32_t reserved; /* 0 */
};

_Static_assert(sizeof(struct kvfs_wire_hello) == 152, "hello frame size");
_Static_assert(sizeof(struct kvfs_wire_welcome) == 32, "welcome frame size");
_Static_assert(sizeof(struct kvfs_wire_req) == 32, "request frame size");
_Static_assert(sizeof(struct kvfs_wire_rep) == 24, "reply frame size");

/* Convert every integer field in place between host and wire order (its own inverse). */
static inline void kvfs_wire_hello_swap(struct kvfs_wire_hello *h)
{
	h->magic = htole32(h->magic);
	h->version = htole16(h->version);
	h->token_len = htole16(h->token_len);
	h->node = htole32(h->node);
	h->incarnation = htole32(h->incarnation);
	h->peer_node = htole32(h->peer_node);
	h->peer_incarnation = htole32(h->peer_incarnation);
}

static inline void kvfs_wire_welcome_swap(struct kvfs_wire_welcome *w)
{
	w->magic = htole32(w->magic);
	w->version = htole16(w->version);
	w->reserved = htole16(w->reserved);
	w->status = (int32_t)htole32((uint32_t)w->status);
	w->node = htole32(w->node);
	w->incarnation = htole32(w->incarnation);
	w->reserved2 = htole32(w->reserved2);
	w->arena_size = htole64(w->arena_size);
}

static inline void kvfs_wire_req_swap(struct kvfs_wire_req *q)
{
	q->magic = htole16(q->magic);
	q->incarnation = htole32(q->incarnation);
	q->id = htole64(q->id);
	q->off = htole64(q->off);
	q->len = htole32(q->len);
	q->reserved = htole32(q->reserved);
}

static inline void kvfs_wire_rep_swap(struct kvfs_wire_rep *p)
{
	p->magic = htole16(p->magic);
	p->status = (int32_t)htole32((uint32_t)p->status);
	p->id = htole64(p->id);
	p->len = htole32(p->len);
	p->reserved = htole32(p->reserved);
}
