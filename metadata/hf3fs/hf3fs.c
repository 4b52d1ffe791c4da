/* SPDX-License-Identifier: MIT */
/*
 * hf3fs.c - the mini 3FS metadata state (see hf3fs.h), in memory and written through to LMDB.
 *
 * Memory is authoritative for reads: exists() and get_page_indices() are hash lookups under
 * the (rank, namespace)'s mutex and never touch the disk. Every mutating call changes memory and
 * writes the same change into one LMDB write transaction, committed before the call returns; if
 * the commit fails the space is reloaded from the store, so memory never claims more than disk.
 *
 * Durability: the environment is opened with MDB_NOSYNC | MDB_WRITEMAP by default. With
 * WRITEMAP, LMDB writes its pages straight into a shared mapping of the file instead of one
 * pwrite per dirty page at commit (128 random keys dirty up to 128 leaf pages: the write() calls
 * were most of a reserve's cost). A committed transaction is
 * in the kernel's page cache when mdb_txn_commit() returns, so it survives kill -9 of this
 * process (the acknowledged-change guarantee the service gives), but not a power loss or kernel
 * crash, which may also damage the store (LMDB's documented NOSYNC trade-off). With cfg->sync
 * each commit is fsync'd by LMDB before the call returns (power-loss safe, one fsync per
 * request). This is a cache: losing it on a power cut costs recomputation, not correctness.
 *
 * What is not persisted: LRU recency from reads (get_page_indices, reserve hits) is written only
 * at a clean close (kvfs_meta_hf3fs_close) or with the key's next confirm; after a crash the LRU
 * order is that of the last persisted touch.
 *
 * Leases are memory only, so after a restart (or a reload after a failed commit) the leases a
 * reader may still hold are unknown, and every page a reader could have obtained is treated as
 * leased for lease_ms from the load (the "grace"). A reader obtains a page only from
 * get_page_indices, only for a published key, and only while the key is published. So:
 *   - a published key's page: leased for the grace (its LRU eviction waits);
 *   - a free page that was ever handed out: delete_keys and clear free published keys' pages,
 *     possibly seconds before the crash while a reader still held them (pages_to_release and a
 *     losing second confirm free only pending pages, which no reader holds, but where a free
 *     page came from is not stored): leased for the grace, like a key's page;
 *   - a pending page: a page is reserved only when no reader holds it (take_page skips leased
 *     pages) and a reserved page is never returned by get, so no lease can cover it; an expired
 *     reservation may be reclaimed at once;
 *   - a page never handed out since the space was created: nobody can hold it. The store keeps
 *     "unused", the low-water mark of fresh (pages are first handed out from the top down, so
 *     pages [0, unused) never were; clear does not raise it, as pre-clear readers may remain).
 *     These are free at once: right after a restart a rank with never-used pages serves new
 *     keys, and a full rank answers -1 until the grace has passed, as before.
 * A store written before the record existed loads with unused = 0: which of its pages were
 * ever used cannot be known, so every free page waits for the grace there, as it always did.
 *
 * Store layout (one LMDB environment, four named databases):
 *   meta:   "version" -> u32 1, "next_id" -> u32, "unused" | be32 space id -> u32 unused
 *   spaces: be32 rank | ns bytes          -> struct disk_space
 *   keys:   be32 space id | key bytes      -> struct disk_key      (published keys)
 *   pend:   be32 space id | be32 page      -> struct disk_pend | key bytes (reservations)
 * Free pages are not stored: a page is free when no key and no reservation holds it.
 *
 * Free pages in memory: pages [0, fresh) not handed out since open/clear, and a stack of pages
 * freed since. take_page() pops the stack first, then fresh - 1, which reproduces the
 * reference's list(range(n)).pop() / append() order exactly. Either source may hold a page that
 * is in use (after clear fresh covers every page), so take_page() skips pages that have
 * an owner, and moves pages that are still leased to the deferred list, which returns them to
 * the stack when their lease has run out. After a load, fresh is unused and the free pages above
 * it start on the deferred list (leased for the grace) or, with leases off, on the stack.
 *
 * Locks: h->reg_lock (registry of spaces) before space->lock before LMDB's writer lock. Spaces
 * are never removed while open, so a space pointer stays valid without reg_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hf3fs.h"
#include "htable.h"
#include "util.h"

#define DEFAULT_MAP_SIZE (4ull << 30)
#define EVICT_SCAN_MAX	 1024 /* leased LRU entries passed over before giving up with -1 */
#define STORE_VERSION	 1u

enum page_state {
	PAGE_FREE = 0,
	PAGE_PENDING,
	PAGE_KEY,
};

/* A published key. */
struct entry {
	struct kvfs_hnode hnode;     /* in sp->keys, by key */
	struct entry *lprev, *lnext; /* LRU list, head = least recently used */
	uint64_t seq;		     /* recency: larger = more recent */
	uint64_t pseq;		     /* seq as last written to the store */
	uint32_t page;
	uint16_t klen;
	char key[];
};

/* A page reserved by a writer that has not confirmed or released it yet. */
struct pend {
	struct pend *prev, *next; /* reservation order, head = oldest */
	int64_t t_ms;		  /* CLOCK_REALTIME at reservation (persisted) */
	uint32_t page;
	uint16_t klen;
	char key[];
};

struct page {
	void *owner;	     /* struct entry * (PAGE_KEY), struct pend * (PAGE_PENDING), NULL */
	int64_t lease_until; /* CLOCK_MONOTONIC ms; 0 = none */
	uint8_t state;	     /* enum page_state */
};

struct u32vec {
	uint32_t *v;
	size_t n, cap;
};

struct space {
	struct space *next;		     /* guarded by h->reg_lock */
	uint32_t id;			     /* immutable: store id */
	uint32_t rank;			     /* immutable */
	char ns[KVFS_META_HF3FS_NS_MAX + 1]; /* immutable */
	uint32_t num_pages;		     /* immutable */

	pthread_mutex_t lock;
	/* Everything below is guarded by lock. */
	struct page *pages; /* num_pages slots */
	uint32_t fresh;
	uint32_t unused;	/* pages [0, unused) never handed out since creation */
	uint32_t unused_stored; /* unused as in the store */
	struct u32vec stack;
	struct u32vec deferred;
	int64_t deferred_next;	 /* no page on deferred is free before this (CLOCK_MONOTONIC ms) */
	struct kvfs_htable keys; /* published keys by key */
	size_t nkeys;
	struct entry *lru_head, *lru_tail;
	struct pend *pend_head, *pend_tail;
	size_t npending;
	uint64_t next_seq;
	bool broken; /* memory could not be rebuilt after a failed write: calls get -EIO */
	struct kvfs_meta_hf3fs_stats st; /* counters; sizes are filled in by stat */
};

struct kvfs_meta_hf3fs {
	MDB_env *env;
	MDB_dbi db_meta, db_spaces, db_keys, db_pend;
	int lock_fd; /* flock'd "<dir>/hf3fs.lock" */
	uint32_t lease_ms;
	uint32_t reserve_ttl_ms;

	pthread_rwlock_t reg_lock;
	struct space *spaces; /* guarded by reg_lock */
	uint32_t next_id;     /* guarded by reg_lock */
};

struct disk_space {
	uint32_t id;
	uint32_t num_pages;
};

struct disk_key {
	uint32_t page;
	uint32_t pad;
	uint64_t seq;
};

struct disk_pend {
	int64_t t_ms;
};

/* LMDB returns positive errnos or its own negative MDB_* codes: make them a negative errno. */
static int lmdb_err(int rc)
{
	if (!rc)
		return 0;
	if (rc > 0)
		return -rc;
	return rc == MDB_MAP_FULL ? -ENOSPC : -EIO;
}

/* A lazily begun write transaction; the first failure sticks in r. */
struct wtx {
	struct kvfs_meta_hf3fs *h;
	MDB_txn *txn;
	int r;
};

static int u32vec_push(struct u32vec *v, uint32_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		uint32_t *nv = realloc(v->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

/* ---- write transactions ---- */

static int wtx_begin(struct wtx *w)
{
	if (w->r)
		return w->r;
	if (!w->txn) {
		int r = lmdb_err(mdb_txn_begin(w->h->env, NULL, 0, &w->txn));

		if (r) {
			w->txn = NULL;
			w->r = r;
		}
	}
	return w->r;
}

static void wtx_put(struct wtx *w, MDB_dbi dbi, const void *k, size_t klen, const void *v,
		    size_t vlen)
{
	MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};

	if (wtx_begin(w))
		return;
	w->r = lmdb_err(mdb_put(w->txn, dbi, &key, &val, 0));
}

static void wtx_del(struct wtx *w, MDB_dbi dbi, const void *k, size_t klen)
{
	MDB_val key = {klen, (void *)k};
	int r;

	if (wtx_begin(w))
		return;
	r = mdb_del(w->txn, dbi, &key, NULL);
	if (r && r != MDB_NOTFOUND)
		w->r = lmdb_err(r);
}

/* Commit (or abort after an error). Returns 0 or a negative errno. */
static int wtx_end(struct wtx *w)
{
	int r = w->r;

	if (!w->txn)
		return r;
	if (r)
		mdb_txn_abort(w->txn);
	else
		r = lmdb_err(mdb_txn_commit(w->txn));
	w->txn = NULL;
	return r;
}

static size_t key_dkey(const struct space *sp, const char *key, size_t klen, unsigned char *buf)
{
	kvfs_put_be32(buf, sp->id);
	memcpy(buf + 4, key, klen);
	return 4 + klen;
}

static void store_key(struct wtx *w, struct space *sp, struct entry *e)
{
	unsigned char k[4 + KVFS_META_HF3FS_KEY_MAX];
	struct disk_key dk = {.page = e->page, .seq = e->seq};

	wtx_put(w, w->h->db_keys, k, key_dkey(sp, e->key, e->klen, k), &dk, sizeof(dk));
	e->pseq = e->seq;
}

static void unstore_key(struct wtx *w, struct space *sp, const struct entry *e)
{
	unsigned char k[4 + KVFS_META_HF3FS_KEY_MAX];

	wtx_del(w, w->h->db_keys, k, key_dkey(sp, e->key, e->klen, k));
}

static void store_pend(struct wtx *w, struct space *sp, const struct pend *p)
{
	unsigned char k[8], v[sizeof(struct disk_pend) + KVFS_META_HF3FS_KEY_MAX];
	struct disk_pend dp = {.t_ms = p->t_ms};

	kvfs_put_be32(k, sp->id);
	kvfs_put_be32(k + 4, p->page);
	memcpy(v, &dp, sizeof(dp));
	memcpy(v + sizeof(dp), p->key, p->klen);
	wtx_put(w, w->h->db_pend, k, 8, v, sizeof(dp) + p->klen);
}

static void unstore_pend(struct wtx *w, struct space *sp, uint32_t page)
{
	unsigned char k[8];

	kvfs_put_be32(k, sp->id);
	kvfs_put_be32(k + 4, page);
	wtx_del(w, w->h->db_pend, k, 8);
}

#define UNUSED_DKEY_LEN 10

static void unused_dkey(const struct space *sp, unsigned char *buf)
{
	memcpy(buf, "unused", 6);
	kvfs_put_be32(buf + 6, sp->id);
}

/* Write sp->unused if it has dropped since it was last stored. */
static void store_unused(struct wtx *w, struct space *sp)
{
	unsigned char k[UNUSED_DKEY_LEN];

	if (sp->unused == sp->unused_stored)
		return;
	unused_dkey(sp, k);
	wtx_put(w, w->h->db_meta, k, sizeof(k), &sp->unused, sizeof(sp->unused));
	sp->unused_stored = sp->unused;
}

/* ---- the in-memory structures (all under sp->lock) ---- */

static struct entry *find_entry(const struct space *sp, const char *key, size_t klen, uint64_t hv)
{
	for (struct kvfs_hnode *n = kvfs_htable_first(&sp->keys, hv); n;
	     n = kvfs_htable_next(n, hv)) {
		struct entry *e = kvfs_container_of(n, struct entry, hnode);

		if (e->klen == klen && !memcmp(e->key, key, klen))
			return e;
	}
	return NULL;
}

static void lru_unlink(struct space *sp, struct entry *e)
{
	if (e->lprev)
		e->lprev->lnext = e->lnext;
	else
		sp->lru_head = e->lnext;
	if (e->lnext)
		e->lnext->lprev = e->lprev;
	else
		sp->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_append(struct space *sp, struct entry *e)
{
	e->lprev = sp->lru_tail;
	e->lnext = NULL;
	if (sp->lru_tail)
		sp->lru_tail->lnext = e;
	else
		sp->lru_head = e;
	sp->lru_tail = e;
}

static void touch(struct space *sp, struct entry *e)
{
	e->seq = sp->next_seq++;
	if (sp->lru_tail != e) {
		lru_unlink(sp, e);
		lru_append(sp, e);
	}
}

/* Insert a published key on @page at the LRU tail (seq 0 = assign the next one). */
static struct entry *add_entry(struct space *sp, const char *key, size_t klen, uint64_t hv,
			       uint32_t page, uint64_t seq)
{
	struct entry *e;

	e = malloc(sizeof(*e) + klen);
	if (!e)
		return NULL;
	memcpy(e->key, key, klen);
	e->klen = klen;
	e->page = page;
	e->seq = seq ? seq : sp->next_seq++;
	e->pseq = 0;
	if (kvfs_htable_insert(&sp->keys, &e->hnode, hv) < 0) {
		free(e);
		return NULL;
	}
	lru_append(sp, e);
	sp->nkeys++;
	sp->pages[page].state = PAGE_KEY;
	sp->pages[page].owner = e;
	return e;
}

/* Unlink and free a published key; its page is left ownerless (the caller frees or reuses it). */
static void remove_entry(struct space *sp, struct entry *e)
{
	kvfs_htable_remove(&sp->keys, &e->hnode);
	lru_unlink(sp, e);
	sp->nkeys--;
	sp->pages[e->page].state = PAGE_FREE;
	sp->pages[e->page].owner = NULL;
	free(e);
}

static struct pend *add_pend(struct space *sp, const char *key, size_t klen, uint32_t page,
			     int64_t t_ms)
{
	struct pend *p = malloc(sizeof(*p) + klen);

	if (!p)
		return NULL;
	memcpy(p->key, key, klen);
	p->klen = klen;
	p->page = page;
	p->t_ms = t_ms;
	p->next = NULL;
	p->prev = sp->pend_tail;
	if (sp->pend_tail)
		sp->pend_tail->next = p;
	else
		sp->pend_head = p;
	sp->pend_tail = p;
	sp->npending++;
	sp->pages[page].state = PAGE_PENDING;
	sp->pages[page].owner = p;
	return p;
}

static void remove_pend(struct space *sp, struct pend *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		sp->pend_head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		sp->pend_tail = p->prev;
	sp->npending--;
	sp->pages[p->page].state = PAGE_FREE;
	sp->pages[p->page].owner = NULL;
	free(p);
}

/* Return an ownerless page to the free stack. Only fails for memory, in which case the page is
 * lost until the next open or clear (which rebuild the free pages from ownership). */
static void free_page(struct space *sp, uint32_t page)
{
	(void)u32vec_push(&sp->stack, page);
}

static bool page_leased(const struct space *sp, uint32_t page, int64_t now)
{
	return sp->pages[page].lease_until > now;
}

/* Park a free but leased page until its lease runs out. */
static int defer_page(struct space *sp, uint32_t page)
{
	int r = u32vec_push(&sp->deferred, page);

	if (!r && sp->pages[page].lease_until < sp->deferred_next)
		sp->deferred_next = sp->pages[page].lease_until;
	return r;
}

/*
 * Find a page for a new key: a free page, else an expired reservation's, else the least recently
 * used unleased key's (which is removed, in memory and in @w). Returns the page or -1. A page
 * taken from fresh lowers sp->unused; the caller stores it (store_unused) in @w.
 */
static int64_t take_page(struct kvfs_meta_hf3fs *h, struct space *sp, struct wtx *w, int64_t now,
			 int64_t wall)
{
	bool drained = false;

	for (;;) {
		uint32_t page;

		if (sp->stack.n) {
			page = sp->stack.v[--sp->stack.n];
		} else if (sp->fresh) {
			page = --sp->fresh;
			if (page < sp->unused)
				sp->unused = page;
		} else if (!drained && sp->deferred.n && now >= sp->deferred_next) {
			size_t keep = 0;

			/* Leases all have one length, but pages are deferred in pop order, not
			 * expiry order: check them all (the list holds recently read pages, and
			 * after a load the pages in their grace, which all expire together). */
			sp->deferred_next = INT64_MAX;
			for (size_t i = 0; i < sp->deferred.n; i++) {
				uint32_t d = sp->deferred.v[i];

				if (page_leased(sp, d, now)) {
					sp->deferred.v[keep++] = d;
					if (sp->pages[d].lease_until < sp->deferred_next)
						sp->deferred_next = sp->pages[d].lease_until;
				} else {
					free_page(sp, d);
				}
			}
			sp->deferred.n = keep;
			drained = true;
			continue;
		} else {
			break;
		}
		if (sp->pages[page].state != PAGE_FREE)
			continue; /* in use: reached through fresh after clear */
		if (page_leased(sp, page, now)) {
			sp->st.lease_skips++;
			if (defer_page(sp, page) < 0)
				return -1;
			continue;
		}
		return page;
	}

	if (h->reserve_ttl_ms && sp->pend_head &&
	    sp->pend_head->t_ms + (int64_t)h->reserve_ttl_ms <= wall) {
		uint32_t page = sp->pend_head->page;

		unstore_pend(w, sp, page);
		remove_pend(sp, sp->pend_head);
		sp->st.reclaimed++;
		return page;
	}

	struct entry *e = sp->lru_head;

	for (int n = 0; e && n < EVICT_SCAN_MAX; e = e->lnext, n++) {
		uint32_t page = e->page;

		if (page_leased(sp, page, now)) {
			sp->st.lease_skips++;
			continue;
		}
		unstore_key(w, sp, e);
		remove_entry(sp, e);
		sp->st.evictions++;
		return page;
	}
	return -1;
}

static void space_free_contents(struct space *sp)
{
	/* every published key is on the LRU list */
	while (sp->lru_head) {
		struct entry *e = sp->lru_head;

		sp->lru_head = e->lnext;
		free(e);
	}
	kvfs_htable_fini(&sp->keys);
	while (sp->pend_head) {
		struct pend *p = sp->pend_head;

		sp->pend_head = p->next;
		free(p);
	}
	free(sp->pages);
	free(sp->stack.v);
	free(sp->deferred.v);
	sp->pages = NULL;
	sp->stack = (struct u32vec){0};
	sp->deferred = (struct u32vec){0};
	sp->deferred_next = INT64_MAX;
	sp->nkeys = sp->npending = 0;
	sp->lru_head = sp->lru_tail = NULL;
	sp->pend_head = sp->pend_tail = NULL;
}

static int cmp_entry_seq(const void *a, const void *b)
{
	const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_pend_t(const void *a, const void *b)
{
	const struct pend *x = *(struct pend *const *)a, *y = *(struct pend *const *)b;

	if (x->t_ms != y->t_ms)
		return x->t_ms < y->t_ms ? -1 : 1;
	return x->page < y->page ? -1 : x->page > y->page;
}

/*
 * (Re)build a space's memory from the store through @txn. Leases given out before a crash are
 * not known: every published key's page and every free page at or above "unused" starts leased
 * for lease_ms (the grace; see the top of the file). Returns 0, -ENOMEM or -EIO (corrupt store).
 */
static int space_load(struct kvfs_meta_hf3fs *h, struct space *sp, MDB_txn *txn)
{
	unsigned char prefix[4];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	struct entry **order = NULL;
	struct pend **porder = NULL;
	size_t n = 0, cap = 0, pn = 0, pcap = 0;
	uint64_t maxseq = 0;
	int r, rc;

	space_free_contents(sp);
	sp->pages = calloc(sp->num_pages ? sp->num_pages : 1, sizeof(*sp->pages));
	if (!sp->pages || kvfs_htable_reserve(&sp->keys, 1024) < 0) {
		r = -ENOMEM;
		goto err_free_contents;
	}
	sp->next_seq = 1;
	kvfs_put_be32(prefix, sp->id);
	{
		unsigned char uk[UNUSED_DKEY_LEN];

		unused_dkey(sp, uk);
		k = (MDB_val){sizeof(uk), uk};
		rc = mdb_get(txn, h->db_meta, &k, &v);
		if (rc && rc != MDB_NOTFOUND) {
			r = -EIO;
			goto err_free_contents;
		}
		/* missing: a store from before the record, where any page may have been used */
		sp->unused = 0;
		if (!rc && v.mv_size == sizeof(sp->unused))
			memcpy(&sp->unused, v.mv_data, sizeof(sp->unused));
		if (sp->unused > sp->num_pages) {
			r = -EIO;
			goto err_free_contents;
		}
		sp->unused_stored = sp->unused;
	}

	r = lmdb_err(mdb_cursor_open(txn, h->db_keys, &cur));
	if (r)
		goto err_free_contents;
	k = (MDB_val){4, prefix};
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct disk_key dk;
		struct entry *e;

		if (k.mv_size < 4 || memcmp(k.mv_data, prefix, 4))
			break;
		if (v.mv_size != sizeof(dk) || k.mv_size - 4 > KVFS_META_HF3FS_KEY_MAX) {
			r = -EIO;
			goto err_close_cursor;
		}
		memcpy(&dk, v.mv_data, sizeof(dk));
		if (dk.page >= sp->num_pages || sp->pages[dk.page].state != PAGE_FREE) {
			r = -EIO;
			goto err_close_cursor;
		}
		e = add_entry(sp, (char *)k.mv_data + 4, k.mv_size - 4,
			      kvfs_hash_bytes((char *)k.mv_data + 4, k.mv_size - 4), dk.page,
			      dk.seq ? dk.seq : 1);
		if (!e) {
			r = -ENOMEM;
			goto err_close_cursor;
		}
		e->pseq = e->seq;
		if (e->seq > maxseq)
			maxseq = e->seq;
		if (n == cap) {
			struct entry **no;

			cap = cap ? cap * 2 : 1024;
			no = realloc(order, cap * sizeof(*no));
			if (!no) {
				r = -ENOMEM;
				goto err_close_cursor;
			}
			order = no;
		}
		order[n++] = e;
	}
	if (rc && rc != MDB_NOTFOUND) {
		r = -EIO;
		goto err_close_cursor;
	}
	mdb_cursor_close(cur);
	cur = NULL;

	/* add_entry appended in key order; rebuild the LRU list in recency order. */
	if (n)
		qsort(order, n, sizeof(*order), cmp_entry_seq);
	sp->lru_head = sp->lru_tail = NULL;
	for (size_t i = 0; i < n; i++)
		lru_append(sp, order[i]);
	sp->next_seq = maxseq + 1;

	r = lmdb_err(mdb_cursor_open(txn, h->db_pend, &cur));
	if (r)
		goto err_free_order;
	k = (MDB_val){4, prefix};
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct disk_pend dp;
		uint32_t page;
		struct pend *p;

		if (k.mv_size < 4 || memcmp(k.mv_data, prefix, 4))
			break;
		if (k.mv_size != 8 || v.mv_size < sizeof(dp) ||
		    v.mv_size - sizeof(dp) > KVFS_META_HF3FS_KEY_MAX) {
			r = -EIO;
			goto err_close_cursor;
		}
		page = kvfs_get_be32((unsigned char *)k.mv_data + 4);
		if (page >= sp->num_pages || sp->pages[page].state != PAGE_FREE) {
			r = -EIO;
			goto err_close_cursor;
		}
		memcpy(&dp, v.mv_data, sizeof(dp));
		p = add_pend(sp, (char *)v.mv_data + sizeof(dp), v.mv_size - sizeof(dp), page,
			     dp.t_ms);
		if (!p) {
			r = -ENOMEM;
			goto err_close_cursor;
		}
		if (pn == pcap) {
			struct pend **no;

			pcap = pcap ? pcap * 2 : 256;
			no = realloc(porder, pcap * sizeof(*no));
			if (!no) {
				r = -ENOMEM;
				goto err_close_cursor;
			}
			porder = no;
		}
		porder[pn++] = p;
	}
	if (rc && rc != MDB_NOTFOUND) {
		r = -EIO;
		goto err_close_cursor;
	}
	mdb_cursor_close(cur);
	if (pn)
		qsort(porder, pn, sizeof(*porder), cmp_pend_t);
	sp->pend_head = sp->pend_tail = NULL;
	for (size_t i = 0; i < pn; i++) {
		porder[i]->prev = sp->pend_tail;
		porder[i]->next = NULL;
		if (sp->pend_tail)
			sp->pend_tail->next = porder[i];
		else
			sp->pend_head = porder[i];
		sp->pend_tail = porder[i];
	}
	free(porder);
	free(order);
	order = NULL;
	porder = NULL;

	/* Pages are first handed out from the top down, so an owned page below "unused" means
	 * the record is wrong: trust ownership and lower the mark (memory only: it is stored
	 * again when fresh next drops below it). */
	for (uint32_t i = 0; i < sp->unused; i++) {
		if (sp->pages[i].state != PAGE_FREE) {
			sp->unused = i;
			break;
		}
	}
	sp->fresh = sp->unused;
	{
		int64_t grace = h->lease_ms ? kvfs_now_ms(CLOCK_MONOTONIC) + h->lease_ms : 0;

		/* ascending, so that the highest page is popped first, as from fresh */
		for (uint32_t i = sp->unused; i < sp->num_pages; i++) {
			struct page *pg = &sp->pages[i];

			if (pg->state == PAGE_PENDING)
				continue;
			pg->lease_until = grace;
			if (pg->state == PAGE_FREE &&
			    (grace ? defer_page(sp, i) : u32vec_push(&sp->stack, i)) < 0) {
				r = -ENOMEM;
				goto err_free_contents;
			}
		}
	}
	return 0;

err_close_cursor:
	mdb_cursor_close(cur);
err_free_order:
	free(porder);
	free(order);
err_free_contents:
	space_free_contents(sp);
	return r;
}

/* After a failed commit: make memory match the store again. If even that fails, the space is
 * marked broken and every call on it fails with -EIO until the next open. */
static int space_reload(struct kvfs_meta_hf3fs *h, struct space *sp)
{
	MDB_txn *txn;
	int r;

	r = lmdb_err(mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn));
	if (r)
		return r;
	r = space_load(h, sp, txn);
	mdb_txn_abort(txn);
	return r;
}

/* End a mutating call: commit @w; on failure reload @sp so memory matches disk. */
static int finish(struct kvfs_meta_hf3fs *h, struct space *sp, struct wtx *w)
{
	int r = wtx_end(w);

	if (r < 0 && space_reload(h, sp) < 0)
		sp->broken = true;
	return r;
}

/* ---- registry ---- */

static size_t space_dkey(uint32_t rank, const char *ns, unsigned char *buf)
{
	size_t len = strlen(ns);

	kvfs_put_be32(buf, rank);
	memcpy(buf + 4, ns, len);
	return 4 + len;
}

static int check_ns(const char **ns)
{
	if (!*ns)
		*ns = KVFS_META_HF3FS_DEFAULT_NS;
	return strlen(*ns) > KVFS_META_HF3FS_NS_MAX ? -EINVAL : 0;
}

static struct space *find_space_locked(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns)
{
	for (struct space *sp = h->spaces; sp; sp = sp->next)
		if (sp->rank == rank && !strcmp(sp->ns, ns))
			return sp;
	return NULL;
}

static int get_space(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns, struct space **ret)
{
	struct space *sp;
	int r = check_ns(&ns);

	if (r)
		return r;
	pthread_rwlock_rdlock(&h->reg_lock);
	sp = find_space_locked(h, rank, ns);
	pthread_rwlock_unlock(&h->reg_lock);
	if (!sp)
		return -ENOENT;
	*ret = sp;
	return 0;
}

static struct space *space_new(uint32_t id, uint32_t rank, const char *ns, uint32_t num_pages)
{
	struct space *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->id = id;
	sp->rank = rank;
	snprintf(sp->ns, sizeof(sp->ns), "%s", ns);
	sp->num_pages = num_pages;
	pthread_mutex_init(&sp->lock, NULL);
	return sp;
}

static void space_destroy(struct space *sp)
{
	if (!sp)
		return;
	space_free_contents(sp);
	pthread_mutex_destroy(&sp->lock);
	free(sp);
}

/* Take @sp's lock; -EIO (unlocked) when the space is broken. */
static int lock_space(struct space *sp)
{
	pthread_mutex_lock(&sp->lock);
	if (sp->broken) {
		pthread_mutex_unlock(&sp->lock);
		return -EIO;
	}
	return 0;
}

static int check_keys(const struct kvfs_meta_hf3fs_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i].len > KVFS_META_HF3FS_KEY_MAX || (keys[i].len && !keys[i].ptr))
			return -EINVAL;
	return 0;
}

/* ---- open / close ---- */

static int load_all(struct kvfs_meta_hf3fs *h)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int r, rc;

	r = lmdb_err(mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn));
	if (r)
		return r;
	k = (MDB_val){7, "next_id"};
	rc = mdb_get(txn, h->db_meta, &k, &v);
	if (!rc && v.mv_size == 4)
		memcpy(&h->next_id, v.mv_data, 4);
	else
		h->next_id = 1;

	r = lmdb_err(mdb_cursor_open(txn, h->db_spaces, &cur));
	if (r)
		goto err_abort;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct disk_space ds;
		char ns[KVFS_META_HF3FS_NS_MAX + 1];
		struct space *sp;

		if (k.mv_size < 4 || k.mv_size - 4 > KVFS_META_HF3FS_NS_MAX ||
		    v.mv_size != sizeof(ds)) {
			r = -EIO;
			goto err_close_cursor;
		}
		memcpy(&ds, v.mv_data, sizeof(ds));
		memcpy(ns, (char *)k.mv_data + 4, k.mv_size - 4);
		ns[k.mv_size - 4] = 0;
		if (ds.num_pages > KVFS_META_HF3FS_PAGES_MAX || ds.id >= h->next_id) {
			r = -EIO;
			goto err_close_cursor;
		}
		sp = space_new(ds.id, kvfs_get_be32(k.mv_data), ns, ds.num_pages);
		if (!sp) {
			r = -ENOMEM;
			goto err_close_cursor;
		}
		sp->next = h->spaces;
		h->spaces = sp;
		r = space_load(h, sp, txn);
		if (r)
			goto err_close_cursor;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return 0;

err_close_cursor:
	mdb_cursor_close(cur);
err_abort:
	mdb_txn_abort(txn);
	return r;
}

int kvfs_meta_hf3fs_open(const struct kvfs_meta_hf3fs_config *cfg, struct kvfs_meta_hf3fs **ret)
{
	struct kvfs_meta_hf3fs *h;
	char path[PATH_MAX];
	unsigned flags = MDB_NOTLS;
	MDB_txn *txn;
	int r;

	if (!cfg || !cfg->dir || !*cfg->dir)
		return -EINVAL;
	if (mkdir(cfg->dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->lease_ms = cfg->lease_ms;
	h->reserve_ttl_ms = cfg->reserve_ttl_ms;
	pthread_rwlock_init(&h->reg_lock, NULL);

	if (snprintf(path, sizeof(path), "%s/hf3fs.lock", cfg->dir) >= (int)sizeof(path)) {
		r = -ENAMETOOLONG;
		goto err_free;
	}
	h->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (h->lock_fd < 0) {
		r = -errno;
		goto err_free;
	}
	if (flock(h->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto err_close_lock;
	}

	r = lmdb_err(mdb_env_create(&h->env));
	if (r)
		goto err_close_lock;
	mdb_env_set_maxdbs(h->env, 4);
	mdb_env_set_mapsize(h->env, cfg->map_size ? cfg->map_size : DEFAULT_MAP_SIZE);
	if (!cfg->sync)
		flags |= MDB_NOSYNC | MDB_WRITEMAP;
	r = lmdb_err(mdb_env_open(h->env, cfg->dir, flags, 0600));
	if (r)
		goto err_close_env;

	r = lmdb_err(mdb_txn_begin(h->env, NULL, 0, &txn));
	if (r)
		goto err_close_env;
	if (mdb_dbi_open(txn, "meta", MDB_CREATE, &h->db_meta) ||
	    mdb_dbi_open(txn, "spaces", MDB_CREATE, &h->db_spaces) ||
	    mdb_dbi_open(txn, "keys", MDB_CREATE, &h->db_keys) ||
	    mdb_dbi_open(txn, "pend", MDB_CREATE, &h->db_pend)) {
		mdb_txn_abort(txn);
		r = -EIO;
		goto err_close_env;
	}
	{
		MDB_val k = {7, "version"}, v;
		uint32_t ver = STORE_VERSION;

		if (!mdb_get(txn, h->db_meta, &k, &v)) {
			if (v.mv_size != 4 || memcmp(v.mv_data, &ver, 4)) {
				mdb_txn_abort(txn);
				r = -EINVAL;
				goto err_close_env;
			}
		} else {
			v = (MDB_val){4, &ver};
			if (mdb_put(txn, h->db_meta, &k, &v, 0)) {
				mdb_txn_abort(txn);
				r = -EIO;
				goto err_close_env;
			}
		}
	}
	if (mdb_txn_commit(txn)) {
		r = -EIO;
		goto err_close_env;
	}

	r = load_all(h);
	if (r)
		goto err_free_spaces;
	*ret = h;
	return 0;

err_free_spaces:
	while (h->spaces) {
		struct space *sp = h->spaces;

		h->spaces = sp->next;
		space_destroy(sp);
	}
err_close_env:
	mdb_env_close(h->env);
err_close_lock:
	close(h->lock_fd);
err_free:
	pthread_rwlock_destroy(&h->reg_lock);
	free(h);
	return r;
}

void kvfs_meta_hf3fs_close(struct kvfs_meta_hf3fs *h)
{
	if (!h)
		return;
	/* Persist recency gathered from reads, best effort: a failure only costs LRU order. */
	for (struct space *sp = h->spaces; sp; sp = sp->next) {
		struct wtx w = {.h = h};

		for (struct entry *e = sp->lru_head; e; e = e->lnext)
			if (e->seq != e->pseq)
				store_key(&w, sp, e);
		(void)wtx_end(&w);
	}
	mdb_env_sync(h->env, 1);
	while (h->spaces) {
		struct space *sp = h->spaces;

		h->spaces = sp->next;
		space_destroy(sp);
	}
	mdb_env_close(h->env);
	close(h->lock_fd);
	pthread_rwlock_destroy(&h->reg_lock);
	free(h);
}

/* ---- the seven operations ---- */

int kvfs_meta_hf3fs_initialize(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			       uint64_t num_pages, bool *ret_created)
{
	unsigned char k[4 + KVFS_META_HF3FS_NS_MAX];
	struct disk_space ds;
	struct wtx w = {.h = h};
	struct space *sp;
	MDB_txn *txn;
	int r = check_ns(&ns);

	if (r)
		return r;
	if (num_pages > KVFS_META_HF3FS_PAGES_MAX)
		return -EINVAL;

	pthread_rwlock_wrlock(&h->reg_lock);
	if (find_space_locked(h, rank, ns)) {
		pthread_rwlock_unlock(&h->reg_lock);
		if (ret_created)
			*ret_created = false;
		return 0;
	}
	sp = space_new(h->next_id, rank, ns, (uint32_t)num_pages);
	if (!sp) {
		r = -ENOMEM;
		goto err_unlock;
	}
	ds = (struct disk_space){.id = sp->id, .num_pages = sp->num_pages};
	{
		uint32_t next = h->next_id + 1;

		wtx_put(&w, h->db_spaces, k, space_dkey(rank, ns, k), &ds, sizeof(ds));
		wtx_put(&w, h->db_meta, "next_id", 7, &next, sizeof(next));
		sp->unused = sp->num_pages; /* nothing was ever handed out */
		sp->unused_stored = 0;
		store_unused(&w, sp);
	}
	/* Build the (empty) memory state inside the same transaction, then publish. */
	txn = w.txn;
	r = w.r ? w.r : space_load(h, sp, txn);
	if (r)
		w.r = r;
	r = wtx_end(&w);
	if (r)
		goto err_destroy_space;
	h->next_id++;
	sp->next = h->spaces;
	h->spaces = sp;
	pthread_rwlock_unlock(&h->reg_lock);
	if (ret_created)
		*ret_created = true;
	return 0;

err_destroy_space:
	space_destroy(sp);
err_unlock:
	pthread_rwlock_unlock(&h->reg_lock);
	return r;
}

int kvfs_meta_hf3fs_exists(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			   const struct kvfs_meta_hf3fs_key *keys, size_t n, bool *ret_exists)
{
	struct space *sp;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	r = check_keys(keys, n);
	if (r)
		return r;
	r = lock_space(sp);
	if (r)
		return r;
	for (size_t i = 0; i < n; i++)
		ret_exists[i] = find_entry(sp, keys[i].ptr, keys[i].len,
					   kvfs_hash_bytes(keys[i].ptr, keys[i].len)) != NULL;
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

int kvfs_meta_hf3fs_get(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			const struct kvfs_meta_hf3fs_key *keys, size_t n, int64_t *ret_indices)
{
	struct space *sp;
	int64_t until;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	r = check_keys(keys, n);
	if (r)
		return r;
	until = h->lease_ms ? kvfs_now_ms(CLOCK_MONOTONIC) + h->lease_ms : 0;
	r = lock_space(sp);
	if (r)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct entry *e = find_entry(sp, keys[i].ptr, keys[i].len,
					     kvfs_hash_bytes(keys[i].ptr, keys[i].len));

		if (!e) {
			ret_indices[i] = -1;
			continue;
		}
		touch(sp, e);
		if (until)
			sp->pages[e->page].lease_until = until;
		ret_indices[i] = e->page;
	}
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

int kvfs_meta_hf3fs_reserve(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			    const struct kvfs_meta_hf3fs_key *keys, size_t n,
			    struct kvfs_meta_hf3fs_reserve_result *ret)
{
	struct wtx w = {.h = h};
	struct space *sp;
	int64_t now, wall;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	r = check_keys(keys, n);
	if (r)
		return r;
	now = kvfs_now_ms(CLOCK_MONOTONIC);
	wall = kvfs_now_ms(CLOCK_REALTIME);
	r = lock_space(sp);
	if (r)
		return r;
	/* Hits first, then new keys in order, as the reference does. */
	for (size_t i = 0; i < n; i++) {
		struct entry *e = find_entry(sp, keys[i].ptr, keys[i].len,
					     kvfs_hash_bytes(keys[i].ptr, keys[i].len));

		ret[i].exists = e != NULL;
		ret[i].index = -1;
		if (e) {
			touch(sp, e);
			ret[i].index = e->page;
		}
	}
	for (size_t i = 0; i < n && !w.r; i++) {
		int64_t page;
		struct pend *p;

		if (ret[i].exists)
			continue;
		page = take_page(h, sp, &w, now, wall);
		if (page < 0) {
			sp->st.full++;
			continue;
		}
		p = add_pend(sp, keys[i].ptr, keys[i].len, (uint32_t)page, wall);
		if (!p) {
			w.r = -ENOMEM;
			break;
		}
		store_pend(&w, sp, p);
		ret[i].index = page;
	}
	store_unused(&w, sp);
	r = finish(h, sp, &w);
	pthread_mutex_unlock(&sp->lock);
	return r;
}

int kvfs_meta_hf3fs_confirm(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			    const struct kvfs_meta_hf3fs_confirm *confirms, size_t nc,
			    const int64_t *release, size_t nr)
{
	struct wtx w = {.h = h};
	struct space *sp;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	for (size_t i = 0; i < nc; i++)
		if (confirms[i].key.len > KVFS_META_HF3FS_KEY_MAX ||
		    (confirms[i].key.len && !confirms[i].key.ptr) || confirms[i].index < 0 ||
		    confirms[i].index >= sp->num_pages)
			return -EINVAL;
	for (size_t i = 0; i < nr; i++)
		if (release[i] < 0 || release[i] >= sp->num_pages)
			return -EINVAL;

	r = lock_space(sp);
	if (r)
		return r;
	for (size_t i = 0; i < nc && !w.r; i++) {
		const struct kvfs_meta_hf3fs_confirm *c = &confirms[i];
		uint32_t page = (uint32_t)c->index;
		struct page *pg = &sp->pages[page];
		uint64_t hv = kvfs_hash_bytes(c->key.ptr, c->key.len);
		struct entry *e;
		struct pend *p;

		if (pg->state == PAGE_KEY) {
			e = pg->owner;
			if (e->klen == c->key.len && !memcmp(e->key, c->key.ptr, e->klen))
				touch(sp, e); /* a repeated confirm */
			else
				sp->st.rejected++;
			continue;
		}
		p = pg->owner;
		if (pg->state != PAGE_PENDING || p->klen != c->key.len ||
		    memcmp(p->key, c->key.ptr, p->klen)) {
			sp->st.rejected++;
			continue;
		}
		unstore_pend(&w, sp, page);
		remove_pend(sp, p);
		e = find_entry(sp, c->key.ptr, c->key.len, hv);
		if (e) {
			/* Another writer of the same key confirmed first: keep its page (a reader
			 * may hold it) and return ours. */
			touch(sp, e);
			free_page(sp, page);
			continue;
		}
		e = add_entry(sp, c->key.ptr, c->key.len, hv, page, 0);
		if (!e) {
			w.r = -ENOMEM;
			break;
		}
		store_key(&w, sp, e);
	}
	for (size_t i = 0; i < nr && !w.r; i++) {
		uint32_t page = (uint32_t)release[i];
		struct page *pg = &sp->pages[page];

		if (pg->state == PAGE_PENDING) {
			unstore_pend(&w, sp, page);
			remove_pend(sp, pg->owner);
			free_page(sp, page);
		} else if (pg->state == PAGE_KEY) {
			sp->st.rejected++; /* published: releasing it would corrupt the key */
		}
	}
	r = finish(h, sp, &w);
	pthread_mutex_unlock(&sp->lock);
	return r;
}

int kvfs_meta_hf3fs_delete(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			   const struct kvfs_meta_hf3fs_key *keys, size_t n, size_t *ret_deleted)
{
	struct wtx w = {.h = h};
	struct space *sp;
	size_t deleted = 0;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	r = check_keys(keys, n);
	if (r)
		return r;
	r = lock_space(sp);
	if (r)
		return r;
	for (size_t i = 0; i < n && !w.r; i++) {
		struct entry *e = find_entry(sp, keys[i].ptr, keys[i].len,
					     kvfs_hash_bytes(keys[i].ptr, keys[i].len));
		uint32_t page;

		if (!e)
			continue;
		page = e->page;
		unstore_key(&w, sp, e);
		remove_entry(sp, e);
		free_page(sp, page);
		deleted++;
	}
	r = finish(h, sp, &w);
	pthread_mutex_unlock(&sp->lock);
	if (!r && ret_deleted)
		*ret_deleted = deleted;
	return r;
}

int kvfs_meta_hf3fs_clear(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns)
{
	struct wtx w = {.h = h};
	unsigned char prefix[4];
	MDB_cursor *cur;
	MDB_val k, v;
	struct space *sp;
	int r = get_space(h, rank, ns, &sp);
	int rc;

	if (r)
		return r;
	kvfs_put_be32(prefix, sp->id);
	r = lock_space(sp);
	if (r)
		return r;
	if (!wtx_begin(&w)) {
		w.r = lmdb_err(mdb_cursor_open(w.txn, h->db_keys, &cur));
		if (!w.r) {
			k = (MDB_val){4, prefix};
			for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); !rc;
			     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
				if (k.mv_size < 4 || memcmp(k.mv_data, prefix, 4))
					break;
				rc = mdb_cursor_del(cur, 0);
				if (rc)
					break;
			}
			if (rc && rc != MDB_NOTFOUND)
				w.r = -EIO;
			mdb_cursor_close(cur);
		}
	}
	if (!w.r) {
		while (sp->lru_head)
			remove_entry(sp, sp->lru_head);
		/* Every page not reserved is free again; fresh covers them all (reserved ones
		 * are skipped by take_page, leased ones deferred). */
		sp->stack.n = 0;
		sp->deferred.n = 0;
		sp->deferred_next = INT64_MAX;
		sp->fresh = sp->num_pages;
	}
	r = finish(h, sp, &w);
	pthread_mutex_unlock(&sp->lock);
	return r;
}

static void fill_stats(const struct space *sp, struct kvfs_meta_hf3fs_stats *st)
{
	*st = sp->st;
	st->num_pages = sp->num_pages;
	st->keys = sp->nkeys;
	st->pending = sp->npending;
	st->free = sp->num_pages - sp->nkeys - sp->npending;
}

int kvfs_meta_hf3fs_stat(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			 struct kvfs_meta_hf3fs_stats *ret)
{
	struct space *sp;
	int r = get_space(h, rank, ns, &sp);

	if (r)
		return r;
	pthread_mutex_lock(&sp->lock);
	fill_stats(sp, ret);
	pthread_mutex_unlock(&sp->lock);
	return 0;
}

void kvfs_meta_hf3fs_foreach(struct kvfs_meta_hf3fs *h,
			     void (*fn)(void *ctx, uint32_t rank, const char *ns,
					const struct kvfs_meta_hf3fs_stats *st),
			     void *ctx)
{
	pthread_rwlock_rdlock(&h->reg_lock);
	for (struct space *sp = h->spaces; sp; sp = sp->next) {
		struct kvfs_meta_hf3fs_stats st;

		pthread_mutex_lock(&sp->lock);
		fill_stats(sp, &st);
		pthread_mutex_unlock(&sp->lock);
		fn(ctx, sp->rank, sp->ns, &st);
	}
	pthread_rwlock_unlock(&h->reg_lock);
}
