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
 * meanwhile. Eviction is LRU by bytes against the configured size; the table (common/htable.h)
 * grows with the entries. One mutex guards the table; it is never held across a reply, a
 * transfer or an allocation of page data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

struct fs_hit {
	struct kvfs_hnode hnode;    /* in hc->table; guarded by hc->lock */
	struct fs_hit *victim;	    /* off the table: chains victims to free after unlocking */
	struct fs_hit *prev, *next; /* LRU, most recent at head; guarded by hc->lock */
	uint64_t ino, version, index;
	_Atomic unsigned refs; /* the table's + one per reader */
	bool linked;	       /* in the table; guarded by hc->lock */
	uint32_t len;
	char data[];
};

struct fs_hitcache {
	pthread_mutex_t lock;
	struct kvfs_htable table;   /* of fs_hit by (ino, version, index); guarded by lock */
	struct fs_hit *head, *tail; /* guarded by lock */
	uint64_t bytes, max_bytes;  /* guarded by lock */
	_Atomic uint64_t hits, misses, inserts, evictions;
};

static uint64_t key_hash(uint64_t ino, uint64_t version, uint64_t idx)
{
	uint64_t k[3] = {ino, version, idx};

	return kvfs_hash_bytes(k, sizeof(k));
}

/* The entry for the key, or NULL. Caller holds hc->lock. */
static struct fs_hit *find_locked(struct fs_hitcache *hc, uint64_t ino, uint64_t version,
				  uint64_t idx)
{
	uint64_t hash = key_hash(ino, version, idx);

	for (struct kvfs_hnode *n = kvfs_htable_first(&hc->table, hash); n;
	     n = kvfs_htable_next(n, hash)) {
		struct fs_hit *h = kvfs_container_of(n, struct fs_hit, hnode);

		if (h->ino == ino && h->version == version && h->index == idx)
			return h;
	}
	return NULL;
}

int fs_hitcache_create(uint64_t max_bytes, struct fs_hitcache **ret)
{
	struct fs_hitcache *hc = calloc(1, sizeof(*hc));

	if (!hc)
		return -ENOMEM;
	kvfs_htable_init(&hc->table);
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
	kvfs_htable_remove(&hc->table, &h->hnode);
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
	kvfs_htable_fini(&hc->table);
	pthread_mutex_destroy(&hc->lock);
	free(hc);
}

const void *fs_hitcache_get(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
			    uint32_t *ret_len, struct fs_hit **ret_ref)
{
	struct fs_hit *h;

	pthread_mutex_lock(&hc->lock);
	h = find_locked(hc, ino, version, index);
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
	bool found;

	pthread_mutex_lock(&hc->lock);
	found = find_locked(hc, ino, version, index) != NULL;
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
	struct fs_hit *h, *victims = NULL;

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
	if (find_locked(hc, ino, version, index)) {
		pthread_mutex_unlock(&hc->lock);
		free(h); /* another reader cached it first */
		return;
	}
	while (hc->bytes + len > hc->max_bytes && hc->tail) {
		struct fs_hit *v = hc->tail;

		unlink_locked(hc, v);
		v->victim = victims;
		victims = v;
		atomic_fetch_add(&hc->evictions, 1);
	}
	if (kvfs_htable_insert(&hc->table, &h->hnode, key_hash(ino, version, index)) < 0) {
		pthread_mutex_unlock(&hc->lock);
		free(h);
		goto out;
	}
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
out:
	while (victims) {
		struct fs_hit *n = victims->victim;

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
		h->victim = victims;
		victims = h;
	}
	pthread_mutex_unlock(&hc->lock);
	while (victims) {
		struct fs_hit *n = victims->victim;

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
