/* SPDX-License-Identifier: MIT */
/*
 * hitcache.c - copies of remote pages kept in this node's DRAM for later reads (write-back of
 * remote hits, as LMCache does for non-blocking gets), for the pools that ask for it
 * (--cache-remote POOL,...).
 *
 * Consistency: an entry is keyed by (inode, metadata version, page index). A reader that opens
 * after a writer's close on any node gets the new version from the metadata and so never finds
 * an old copy: close-to-open holds. A local write to a file drops its entries at once (a write
 * to a remote page goes straight to its owner and would leave the copy stale within this open).
 *
 * Entries are reference counted: a reply pointing into one keeps it alive even if it is evicted
 * meanwhile. Eviction is LRU by bytes against the configured size. One mutex guards the table;
 * it is never held across a reply, a transfer or an allocation of page data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

struct fs_hit {
	struct fs_hit *hnext;	    /* hash chain; guarded by hc->lock */
	struct fs_hit *prev, *next; /* LRU, most recent at head; guarded by hc->lock */
	uint64_t ino, version, index;
	_Atomic unsigned refs; /* the table's + one per reader */
	bool linked;	       /* in the table; guarded by hc->lock */
	uint32_t len;
	char data[];
};

struct fs_hitcache {
	pthread_mutex_t lock;
	struct fs_hit **table;	    /* guarded by lock */
	size_t cap;		    /* buckets, power of two */
	struct fs_hit *head, *tail; /* guarded by lock */
	uint64_t bytes, max_bytes;  /* guarded by lock */
	_Atomic uint64_t hits, misses, inserts, evictions;
};

static size_t bucket(const struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t idx)
{
	uint64_t h = (ino * 0x9E3779B97F4A7C15ull) ^ (version * 0xC2B2AE3D27D4EB4Full) ^ idx;

	return (size_t)(h ^ (h >> 29)) & (hc->cap - 1);
}

int fs_hitcache_create(uint64_t max_bytes, struct fs_hitcache **ret)
{
	struct fs_hitcache *hc = calloc(1, sizeof(*hc));

	if (!hc)
		return -ENOMEM;
	hc->cap = 4096;
	hc->table = calloc(hc->cap, sizeof(*hc->table));
	if (!hc->table) {
		free(hc);
		return -ENOMEM;
	}
	pthread_mutex_init(&hc->lock, NULL);
	hc->max_bytes = max_bytes;
	*ret = hc;
	return 0;
}

static void hit_put(struct fs_hit *h)
{
	if (h && atomic_fetch_sub(&h->refs, 1) == 1)
		free(h);
}

/* Unlink @h from the table and LRU; the caller drops the table's reference after unlocking. */
static void unlink_locked(struct fs_hitcache *hc, struct fs_hit *h)
{
	struct fs_hit **pp = &hc->table[bucket(hc, h->ino, h->version, h->index)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == h) {
			*pp = h->hnext;
			break;
		}
	}
	if (h->prev)
		h->prev->next = h->next;
	else
		hc->head = h->next;
	if (h->next)
		h->next->prev = h->prev;
	else
		hc->tail = h->prev;
	h->linked = false;
	hc->bytes -= h->len;
}

void fs_hitcache_destroy(struct fs_hitcache *hc)
{
	if (!hc)
		return;
	while (hc->head) {
		struct fs_hit *h = hc->head;

		unlink_locked(hc, h);
		hit_put(h);
	}
	free(hc->table);
	pthread_mutex_destroy(&hc->lock);
	free(hc);
}

const void *fs_hitcache_get(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
			    uint32_t *ret_len, struct fs_hit **ret_ref)
{
	struct fs_hit *h;

	pthread_mutex_lock(&hc->lock);
	for (h = hc->table[bucket(hc, ino, version, index)]; h; h = h->hnext)
		if (h->ino == ino && h->version == version && h->index == index)
			break;
	if (h) {
		atomic_fetch_add(&h->refs, 1);
		if (h != hc->head) { /* most recently used to the front */
			h->prev->next = h->next;
			if (h->next)
				h->next->prev = h->prev;
			else
				hc->tail = h->prev;
			h->prev = NULL;
			h->next = hc->head;
			hc->head->prev = h;
			hc->head = h;
		}
	}
	pthread_mutex_unlock(&hc->lock);
	atomic_fetch_add(h ? &hc->hits : &hc->misses, 1);
	if (!h)
		return NULL;
	*ret_len = h->len;
	*ret_ref = h;
	return h->data;
}

bool fs_hitcache_has(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index)
{
	struct fs_hit *h;
	bool found;

	pthread_mutex_lock(&hc->lock);
	for (h = hc->table[bucket(hc, ino, version, index)]; h; h = h->hnext)
		if (h->ino == ino && h->version == version && h->index == index)
			break;
	found = h != NULL;
	pthread_mutex_unlock(&hc->lock);
	return found;
}

void fs_hitcache_release(struct fs_hit *ref)
{
	hit_put(ref);
}

void fs_hitcache_put(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
		     const void *data, uint32_t len)
{
	struct fs_hit *h, *old, *victims = NULL;
	size_t b;

	if (len > hc->max_bytes)
		return;
	h = malloc(sizeof(*h) + len); /* copied outside the lock */
	if (!h)
		return;
	memset(h, 0, sizeof(*h));
	h->ino = ino;
	h->version = version;
	h->index = index;
	h->len = len;
	atomic_store(&h->refs, 1);
	memcpy(h->data, data, len);

	pthread_mutex_lock(&hc->lock);
	b = bucket(hc, ino, version, index);
	for (old = hc->table[b]; old; old = old->hnext)
		if (old->ino == ino && old->version == version && old->index == index)
			break;
	if (old) {
		pthread_mutex_unlock(&hc->lock);
		free(h); /* another reader cached it first */
		return;
	}
	while (hc->bytes + len > hc->max_bytes && hc->tail) {
		struct fs_hit *v = hc->tail;

		unlink_locked(hc, v);
		v->hnext = victims; /* off the table now: hnext is free to chain victims */
		victims = v;
		atomic_fetch_add(&hc->evictions, 1);
	}
	h->hnext = hc->table[b];
	hc->table[b] = h;
	h->next = hc->head;
	if (hc->head)
		hc->head->prev = h;
	hc->head = h;
	if (!hc->tail)
		hc->tail = h;
	h->linked = true;
	hc->bytes += len;
	pthread_mutex_unlock(&hc->lock);
	atomic_fetch_add(&hc->inserts, 1);
	while (victims) {
		struct fs_hit *n = victims->hnext;

		hit_put(victims);
		victims = n;
	}
}

void fs_hitcache_drop_ino(struct fs_hitcache *hc, uint64_t ino)
{
	struct fs_hit *h, *next, *victims = NULL;

	pthread_mutex_lock(&hc->lock);
	for (h = hc->head; h; h = next) {
		next = h->next;
		if (h->ino != ino)
			continue;
		unlink_locked(hc, h);
		h->hnext = victims;
		victims = h;
	}
	pthread_mutex_unlock(&hc->lock);
	while (victims) {
		struct fs_hit *n = victims->hnext;

		hit_put(victims);
		victims = n;
	}
}

void fs_hitcache_stats(struct fs_hitcache *hc, uint64_t *ret_bytes, uint64_t *ret_hits,
		       uint64_t *ret_misses, uint64_t *ret_inserts, uint64_t *ret_evictions)
{
	pthread_mutex_lock(&hc->lock);
	*ret_bytes = hc->bytes;
	pthread_mutex_unlock(&hc->lock);
	*ret_hits = atomic_load(&hc->hits);
	*ret_misses = atomic_load(&hc->misses);
	*ret_inserts = atomic_load(&hc->inserts);
	*ret_evictions = atomic_load(&hc->evictions);
}
