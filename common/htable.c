/* SPDX-License-Identifier: MIT */
/*
 * htable.c - the intrusive hash table of htable.h, and the two hash functions kvfs uses.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "htable.h"

/* splitmix64's finaliser: a bijection, every input bit reaches every output bit. */
uint64_t kvfs_hash_u64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* FNV-1a over the bytes, then the finaliser above (FNV alone mixes its high bits poorly). */
uint64_t kvfs_hash_bytes(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	return kvfs_hash_u64(h ^ len);
}

void kvfs_htable_init(struct kvfs_htable *t)
{
	memset(t, 0, sizeof(*t));
}

void kvfs_htable_fini(struct kvfs_htable *t)
{
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}

static int resize(struct kvfs_htable *t, size_t nbuckets)
{
	struct kvfs_hnode **nb = calloc(nbuckets, sizeof(*nb));

	if (!nb)
		return -ENOMEM;
	for (size_t i = 0; t->buckets && i <= t->mask; i++) {
		struct kvfs_hnode *n = t->buckets[i], *next;

		for (; n; n = next) {
			size_t b = n->hash & (nbuckets - 1);

			next = n->next;
			n->next = nb[b];
			nb[b] = n;
		}
	}
	free(t->buckets);
	t->buckets = nb;
	t->mask = nbuckets - 1;
	return 0;
}

int kvfs_htable_reserve(struct kvfs_htable *t, size_t n)
{
	size_t nb = 16;

	while (nb < n)
		nb *= 2;
	if (t->buckets && t->mask + 1 >= nb)
		return 0;
	return resize(t, nb);
}

int kvfs_htable_insert(struct kvfs_htable *t, struct kvfs_hnode *n, uint64_t hash)
{
	size_t b;

	if (!t->buckets) {
		if (resize(t, 16) < 0)
			return -ENOMEM;
	} else if (t->count > t->mask) {
		(void)resize(t, (t->mask + 1) * 2); /* without memory: longer chains */
	}
	n->hash = hash;
	b = hash & t->mask;
	n->next = t->buckets[b];
	t->buckets[b] = n;
	t->count++;
	return 0;
}

struct kvfs_hnode *kvfs_htable_first(const struct kvfs_htable *t, uint64_t hash)
{
	struct kvfs_hnode *n;

	if (!t->buckets)
		return NULL;
	for (n = t->buckets[hash & t->mask]; n && n->hash != hash; n = n->next)
		;
	return n;
}

struct kvfs_hnode *kvfs_htable_next(const struct kvfs_hnode *n, uint64_t hash)
{
	for (n = n->next; n && n->hash != hash; n = n->next)
		;
	return (struct kvfs_hnode *)n;
}

bool kvfs_htable_remove(struct kvfs_htable *t, struct kvfs_hnode *n)
{
	struct kvfs_hnode **pp;

	if (!t->buckets)
		return false;
	for (pp = &t->buckets[n->hash & t->mask]; *pp && *pp != n; pp = &(*pp)->next)
		;
	if (!*pp)
		return false;
	*pp = n->next;
	n->next = NULL;
	t->count--;
	return true;
}

struct kvfs_hnode *kvfs_htable_iter(const struct kvfs_htable *t, struct kvfs_hiter *it)
{
	struct kvfs_hnode *n = it->next;

	while (!n) {
		if (!t->buckets || it->bucket > t->mask)
			return NULL;
		n = t->buckets[it->bucket++];
	}
	it->next = n->next;
	return n;
}
