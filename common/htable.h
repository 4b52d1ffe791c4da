/* SPDX-License-Identifier: MIT */
/*
 * htable.h - one intrusive, growing hash table for all of kvfs.
 *
 * The caller embeds a struct kvfs_hnode in each element and owns the element's memory; the
 * table owns only its bucket array. Each node keeps its full 64-bit hash, so growing never
 * calls back into the caller and a lookup compares keys only where the hashes match. Chains
 * are singly linked (16 bytes per element, which matters for tables of millions of inodes);
 * removal walks one chain, whose expected length stays below one: the table doubles when it
 * holds more elements than buckets. It does not shrink. Not thread-safe: the caller's lock
 * guards it.
 *
 * Lookup pattern:
 *
 *	for (n = kvfs_htable_first(t, h); n; n = kvfs_htable_next(n, h))
 *		if (key_equal(container_of(n, ...), key))
 *			return ...;
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kvfs_hnode {
	struct kvfs_hnode *next; /* in its bucket */
	uint64_t hash;
};

struct kvfs_htable {
	struct kvfs_hnode **buckets;
	size_t mask;  /* number of buckets - 1 (a power of two), 0 while empty */
	size_t count; /* elements */
};

#define kvfs_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Hashes: one for integer keys, one for byte strings (64-bit, well mixed in every bit). */
uint64_t kvfs_hash_u64(uint64_t x);
uint64_t kvfs_hash_bytes(const void *p, size_t len);

/* An empty table (no allocation yet). */
void kvfs_htable_init(struct kvfs_htable *t);

/* Make room for @n elements before the table grows (buckets: @n rounded up to a power of two).
 * Returns 0 or -ENOMEM. After it, inserts cannot fail until @n elements are in. */
int kvfs_htable_reserve(struct kvfs_htable *t, size_t n);

/* Free the bucket array; the elements are the caller's. Accepts an empty table. */
void kvfs_htable_fini(struct kvfs_htable *t);

/*
 * Add @n under @hash (duplicates are the caller's business). Grows the table when it holds more
 * elements than buckets. Returns 0, or -ENOMEM only when the table has no buckets yet and
 * cannot get any (a failed growth leaves longer chains, not an error).
 */
int kvfs_htable_insert(struct kvfs_htable *t, struct kvfs_hnode *n, uint64_t hash);

/* The first node with @hash, or NULL; then kvfs_htable_next() for the others. */
struct kvfs_hnode *kvfs_htable_first(const struct kvfs_htable *t, uint64_t hash);
struct kvfs_hnode *kvfs_htable_next(const struct kvfs_hnode *n, uint64_t hash);

/* Remove @n; false (and nothing changes) if it is not in @t. */
bool kvfs_htable_remove(struct kvfs_htable *t, struct kvfs_hnode *n);

/*
 * Iterate over every node: start with struct kvfs_hiter it = KVFS_HITER_INIT; returns NULL at
 * the end. The node returned may be removed before the next call; nothing else may change the
 * table meanwhile.
 */
struct kvfs_hiter {
	size_t bucket;		 /* next bucket to look at */
	struct kvfs_hnode *next; /* next node in the current bucket */
};
#define KVFS_HITER_INIT                                                                            \
	{                                                                                          \
		0, NULL                                                                            \
	}
struct kvfs_hnode *kvfs_htable_iter(const struct kvfs_htable *t, struct kvfs_hiter *it);

static inline size_t kvfs_htable_count(const struct kvfs_htable *t)
{
	return t->count;
}
