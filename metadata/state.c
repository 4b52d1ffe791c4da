/* SPDX-License-Identifier: MIT */
/*
 * state.c - the metadata state machine: nodes, pools, the namespace, page maps, allocation,
 * commit, eviction, leases and xattrs, authoritative in memory and written through to LMDB.
 *
 * Memory (everything guarded by s->lock, one mutex around the whole machine):
 *   - struct inode per file or directory, found by number in an intrusive chained hash table
 *     (ino_tab). There are no hard links, so the name lives in the inode itself (parent, name,
 *     seq) and a second intrusive table (name_tab) finds it by (parent, name) in O(1).
 *   - A directory holds its children in an array of {seq, inode} in seq order. seq is a
 *     per-directory counter taken at link time and is the readdir cookie: a listing continues
 *     with the first seq above the cookie (binary search), so concurrent creates and removes
 *     never make it repeat an entry. Removal leaves a tombstone; tombstones are compacted when
 *     they are more than half of the array.
 *   - A regular file holds a sorted array of committed pages and a small unsorted array of
 *     pending (allocated, not yet committed) pages, 16 bytes per page (index, node,
 *     incarnation, offset in 64 KiB units). A closed file (no lease, no pending page) with pages
 *     in an lru pool sits on its pool's intrusive LRU list; a global clock stamps every use so
 *     heads of different pools compare for the global LRU.
 *   - Leases live in a small hash table (lease id -> ino, node); they are volatile: a restart
 *     forgets them (every holder died with the process in embedded mode).
 *   - About 180 bytes per inode + the name + 16 bytes per page + ~16 bytes of directory slot and
 *     ~16 bytes of hash buckets.
 *
 * LMDB (one environment, named databases, fixed-size little-endian records, big-endian keys so
 * cursors walk by inode):
 *   meta     "version" u32, "next_ino" u64, "next_pool" u32, "next_node" u32
 *   nodes    u32 id -> struct rec_node (incarnation counter, arena size, address)
 *   pools    u32 id -> struct rec_pool
 *   inodes   u64 ino -> struct rec_inode (attrs, pool id); nlink 0 marks an orphan
 *   dirents  u64 parent + name bytes -> struct rec_dirent (child ino, seq)
 *   pages    u64 ino + u64 index -> struct rec_page (node, incarnation, offset)
 *   pending  u64 ino + u64 index + u32 node + u64 offset -> u32 incarnation
 *   xattrs   u64 ino + name bytes -> value
 * Each mutating call runs in one write transaction committed before it returns. Unless
 * cfg->sync, the environment runs MDB_NOSYNC | MDB_NOMETASYNC: a commit is in the kernel's page
 * cache when the call returns, so killing the process (even -9) loses nothing acknowledged; a
 * power cut may lose the last commits (LMDB stays consistent). On load, orphans (nlink 0) are
 * deleted: their lease holders are gone.
 *
 * Allocation order in alloc(): the pool's capacity first (evicting from the pool's own LRU in an
 * lru pool), then the arena: the preferred node, any other alive node, then evict (the pool's
 * own LRU first, then the global LRU of the other lru pools) and retry. A none pool never evicts
 * its own files, but when the arena is full it may take space from lru pools, whose files are a
 * cache by definition. Names removed on the machine's own initiative are reported through
 * cb.removed() after the lock is dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "state.h"
#include "htable.h"
#include "util.h"

#define DB_VERSION	      1u
#define DEFAULT_MAP_SIZE      (8ull << 30)
#define DEFAULT_PAGE_SIZE     (1u << 20)
#define DEFAULT_MAX_FILE_SIZE (16ull << 40)
#define XATTR_VALUE_MAX	      (64u * 1024)
#define OFF_SHIFT	      KVFS_PAGE_MIN_SHIFT /* page offsets are stored in 64 KiB units */
#define MAX_ARENA	      ((uint64_t)UINT32_MAX << OFF_SHIFT)
#define TAB_MIN		      1024
#define DIR_COMPACT_MIN	      32
#define TRIM_EVERY	      32 /* commits between drops of the store's mapped pages */

/* ------------------------------------------------------------------------------------------ */
/* Persistent records */

struct rec_inode {
	uint64_t size;
	uint64_t version;
	int64_t atime;
	int64_t mtime;
	int64_t ctime;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint32_t flags;
	uint32_t pool;
};

struct rec_dirent {
	uint64_t ino;
	uint64_t seq;
};

struct rec_page {
	uint32_t node;
	uint32_t inc;
	uint64_t off;
};

struct rec_pool {
	uint32_t page_size;
	uint32_t evict;
	uint64_t capacity;
	uint64_t max_file_size;
	uint64_t root_ino;
	uint64_t evictions;
	uint64_t evicted_bytes;
	char name[KVFS_POOL_NAME_MAX + 1];
	uint8_t dropped; /* dropped while open files (orphans) still used it */
};

struct rec_node {
	uint32_t incarnation;
	uint32_t flags; /* REC_NODE_*; 0 in stores written before the flag existed */
	uint64_t arena_size;
	char addr[64];
};

enum {
	REC_NODE_DEAD = 1 << 0, /* left or declared dead: its incarnation may not resume */
};

/* ------------------------------------------------------------------------------------------ */
/* In-memory objects */

struct page {
	uint32_t index;
	uint32_t node;
	uint32_t inc;
	uint32_t off; /* arena offset >> OFF_SHIFT */
};

struct xattr {
	struct xattr *next;
	uint32_t vlen;
	uint16_t nlen;
	char data[]; /* name, NUL, value */
};

struct pool;

struct dslot {
	uint64_t seq;
	struct inode *in; /* NULL: tombstone */
};

struct dir {
	struct dslot *slots;
	uint32_t n; /* slots used, tombstones included */
	uint32_t cap;
	uint32_t live; /* slots with an inode */
	uint64_t next_seq;
};

struct inode {
	struct kvfs_hnode ino_node;  /* in s->inos, by ino */
	struct kvfs_hnode name_node; /* in s->names, by (parent, name) while named */
	uint64_t ino;
	uint64_t parent; /* 0 when nameless: root or orphan */
	uint64_t seq;	 /* cookie in the parent's listing */
	char *name;	 /* NUL-terminated; NULL when nameless */
	uint16_t name_len;
	uint8_t in_lru;
	struct pool *pool; /* NULL for the root */
	struct xattr *xattrs;
	uint64_t size;
	uint64_t version;
	int64_t atime;
	int64_t mtime;
	int64_t ctime;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint32_t flags;
	uint32_t nleases;
	union {
		struct {
			struct page *pages; /* committed, sorted by index */
			struct page *pend;  /* allocated, not committed, unsorted */
			struct page *cut;   /* cut off by a truncate while leased (see cut_pages) */
			uint32_t npages;
			uint32_t npend;
			uint32_t ncut;
			struct inode *lru_prev;
			struct inode *lru_next;
			uint64_t lru_stamp;
		} f;
		struct dir *d;
	};
};

struct pool {
	struct pool *next;
	uint32_t id;
	char name[KVFS_POOL_NAME_MAX + 1];
	uint32_t page_size;
	uint8_t evict;
	bool dropped; /* gone from the namespace, kept while inodes refer to it */
	uint64_t capacity;
	uint64_t max_file_size;
	struct inode *root;
	uint64_t root_ino; /* only while loading, before root is resolved */
	uint64_t refs;	   /* inodes whose ->pool is this */
	uint64_t files;	   /* regular files with a name */
	uint64_t pages;	   /* committed + pending pages of its files */
	uint64_t evictions;
	uint64_t evicted_bytes;
	struct inode *lru_head; /* least recently used first */
	struct inode *lru_tail;
	uint64_t lru_pages; /* pages of files on the LRU list (evictable) */
};

struct node {
	uint32_t id;
	uint32_t inc;
	uint64_t arena_size;
	char addr[64];
	struct kvfs_palloc *pa; /* NULL while the node is not alive */
	bool owned;
	bool dead; /* left or declared dead (persisted): this incarnation cannot resume */
};

struct lease {
	struct kvfs_hnode hnode; /* in s->leases, by id */
	uint64_t id;
	uint64_t ino;
	uint32_t node;
};

struct removed {
	uint64_t parent;
	uint64_t ino;
	char *name;
};

/* Names removed during one call, reported after the lock is dropped. */
struct rmlist {
	struct removed *v;
	size_t n;
	size_t cap;
};

struct meta_state {
	pthread_mutex_t lock;
	int lock_fd;
	MDB_env *env;
	MDB_dbi db_meta, db_nodes, db_pools, db_inodes, db_dirents, db_pages, db_pend, db_xattrs;
	struct kvfs_meta_callbacks cb;

	/* all below guarded by lock */
	bool broken;		 /* a store write failed after memory changed: refuse mutations */
	MDB_txn *txn;		 /* the write transaction of the running call */
	int txn_err;		 /* first store error of that transaction */
	unsigned commits;	 /* since the last store_trim() */
	void *map_base;		 /* LMDB's mapping of data.mdb (NULL: not found, no trimming) */
	struct kvfs_htable inos; /* every inode, by ino */
	size_t ninodes;
	struct kvfs_htable names; /* named inodes, by (parent, name) */
	size_t nnames;
	struct kvfs_htable leases; /* by id */
	size_t nleases;
	uint64_t next_lease;
	struct pool *pools;
	struct node *nodes;
	size_t nnodes;
	uint32_t next_pool;
	uint32_t next_node;
	uint64_t next_ino;
	uint64_t clock; /* LRU stamps */
	uint64_t norphans;
	struct inode *root;
};

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t name_hash(uint64_t parent, const char *name, size_t len)
{
	return kvfs_hash_bytes(name, len) ^ kvfs_hash_u64(parent);
}

static size_t pow2_ceil(size_t n)
{
	size_t c = 1;

	while (c < n)
		c <<= 1;
	return c;
}

static int mdb_to_errno(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_INVALID:
	case MDB_CORRUPTED:
	case MDB_VERSION_MISMATCH:
	case MDB_INCOMPATIBLE:
		return -EIO;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/*
 * A name is any bytes but '/' and NUL, 1..@max bytes, and not "." or "..".
 * Returns 0 and *ret_len, -EINVAL or -ENAMETOOLONG.
 */
static int check_name(const char *name, size_t max, size_t *ret_len)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, max + 1);
	if (len == 0)
		return -EINVAL;
	if (len > max)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len))
		return -EINVAL;
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return -EINVAL;
	*ret_len = len;
	return 0;
}

static bool is_dir(const struct inode *in)
{
	return S_ISDIR(in->mode);
}

static bool is_reg(const struct inode *in)
{
	return S_ISREG(in->mode);
}

/* ------------------------------------------------------------------------------------------ */
/* Store access. Every write records the first error in s->txn_err; op_end() checks it. */

static int op_begin(struct meta_state *s)
{
	int rc;

	if (s->broken)
		return -EIO;
	rc = mdb_txn_begin(s->env, NULL, 0, &s->txn);
	if (rc)
		return mdb_to_errno(rc);
	s->txn_err = 0;
	return 0;
}

/*
 * Drop the store's pages from our address space. LMDB reads its B-trees through a shared file
 * mapping, and the kernel maps 64 KiB around every fault, so the pages walked by a few hundred
 * writes make the mapping resident (up to the whole store, ~400 bytes per file) and count in the
 * daemon's RSS although memory holds the authoritative copy. Every TRIM_EVERY commits we unmap
 * them; they stay in the page cache and the next walk faults the few it needs back (minor
 * faults). This bounds the store's share of RSS to a few MiB. Safe because every use of the
 * environment happens under s->lock and no read transaction outlives a call.
 */
static void store_trim(struct meta_state *s)
{
	MDB_envinfo info;
	MDB_stat st;

	s->commits = 0;
	if (!s->map_base || mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st))
		return;
	madvise(s->map_base, (info.me_last_pgno + 1) * (size_t)st.ms_psize, MADV_DONTNEED);
}

/*
 * Find where LMDB mapped data.mdb: mdb_env_info() only reports the address with MDB_FIXEDMAP,
 * so look for the mapping of the file's inode at offset 0 in /proc/self/maps.
 */
static void *store_map_base(MDB_env *env)
{
	char line[512];
	struct stat st;
	void *base = NULL;
	FILE *f;
	int fd;

	if (mdb_env_get_fd(env, &fd) || fstat(fd, &st) < 0)
		return NULL;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return NULL;
	while (!base && fgets(line, sizeof(line), f)) {
		unsigned long start, end, off, ino;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s %lx %*s %lu", &start, &end, perms, &off, &ino) == 5 &&
		    ino == st.st_ino && off == 0 && perms[3] == 's')
			base = (void *)start;
	}
	fclose(f);
	return base;
}

/* Commit the call's transaction. A failure marks the machine broken: memory already changed. */
static int op_end(struct meta_state *s)
{
	int r = s->txn_err;

	if (r) {
		mdb_txn_abort(s->txn);
	} else {
		r = mdb_to_errno(mdb_txn_commit(s->txn));
	}
	s->txn = NULL;
	if (r)
		s->broken = true;
	else if (++s->commits >= TRIM_EVERY)
		store_trim(s);
	return r;
}

static void db_put(struct meta_state *s, MDB_dbi dbi, const void *k, size_t kl, const void *v,
		   size_t vl)
{
	MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
	MDB_val val = {.mv_size = vl, .mv_data = (void *)v};
	int rc;

	if (s->txn_err)
		return;
	rc = mdb_put(s->txn, dbi, &key, &val, 0);
	if (rc)
		s->txn_err = mdb_to_errno(rc);
}

static void db_del(struct meta_state *s, MDB_dbi dbi, const void *k, size_t kl)
{
	MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
	int rc;

	if (s->txn_err)
		return;
	rc = mdb_del(s->txn, dbi, &key, NULL);
	if (rc && rc != MDB_NOTFOUND)
		s->txn_err = mdb_to_errno(rc);
}

static void db_put_inode(struct meta_state *s, const struct inode *in)
{
	struct rec_inode r = {
		.size = in->size,
		.version = in->version,
		.atime = in->atime,
		.mtime = in->mtime,
		.ctime = in->ctime,
		.mode = in->mode,
		.uid = in->uid,
		.gid = in->gid,
		.nlink = in->nlink,
		.flags = in->flags,
		.pool = in->pool ? in->pool->id : 0,
	};
	uint8_t k[8];

	kvfs_put_be64(k, in->ino);
	db_put(s, s->db_inodes, k, sizeof(k), &r, sizeof(r));
}

static void db_del_inode(struct meta_state *s, uint64_t ino)
{
	uint8_t k[8];

	kvfs_put_be64(k, ino);
	db_del(s, s->db_inodes, k, sizeof(k));
}

static size_t dirent_key(uint8_t *k, uint64_t parent, const char *name, size_t len)
{
	kvfs_put_be64(k, parent);
	memcpy(k + 8, name, len);
	return 8 + len;
}

static void db_put_dirent(struct meta_state *s, const struct inode *in)
{
	uint8_t k[8 + KVFS_NAME_MAX];
	struct rec_dirent r = {.ino = in->ino, .seq = in->seq};

	db_put(s, s->db_dirents, k, dirent_key(k, in->parent, in->name, in->name_len), &r,
	       sizeof(r));
}

static void db_del_dirent(struct meta_state *s, const struct inode *in)
{
	uint8_t k[8 + KVFS_NAME_MAX];

	db_del(s, s->db_dirents, k, dirent_key(k, in->parent, in->name, in->name_len));
}

static void page_key(uint8_t *k, uint64_t ino, uint64_t index)
{
	kvfs_put_be64(k, ino);
	kvfs_put_be64(k + 8, index);
}

static void db_put_page(struct meta_state *s, uint64_t ino, const struct page *p)
{
	uint8_t k[16];
	struct rec_page r = {.node = p->node, .inc = p->inc, .off = (uint64_t)p->off << OFF_SHIFT};

	page_key(k, ino, p->index);
	db_put(s, s->db_pages, k, sizeof(k), &r, sizeof(r));
}

static void db_del_page(struct meta_state *s, uint64_t ino, uint32_t index)
{
	uint8_t k[16];

	page_key(k, ino, index);
	db_del(s, s->db_pages, k, sizeof(k));
}

static void pend_key(uint8_t *k, uint64_t ino, const struct page *p)
{
	kvfs_put_be64(k, ino);
	kvfs_put_be64(k + 8, p->index);
	kvfs_put_be32(k + 16, p->node);
	kvfs_put_be64(k + 20, (uint64_t)p->off << OFF_SHIFT);
}

static void db_put_pend(struct meta_state *s, uint64_t ino, const struct page *p)
{
	uint8_t k[28];

	pend_key(k, ino, p);
	db_put(s, s->db_pend, k, sizeof(k), &p->inc, sizeof(p->inc));
}

static void db_del_pend(struct meta_state *s, uint64_t ino, const struct page *p)
{
	uint8_t k[28];

	pend_key(k, ino, p);
	db_del(s, s->db_pend, k, sizeof(k));
}

static void db_put_pool(struct meta_state *s, const struct pool *p)
{
	struct rec_pool r;
	uint8_t k[4];

	memset(&r, 0, sizeof(r));
	r.page_size = p->page_size;
	r.evict = p->evict;
	r.capacity = p->capacity;
	r.max_file_size = p->max_file_size;
	r.root_ino = p->root->ino;
	r.evictions = p->evictions;
	r.evicted_bytes = p->evicted_bytes;
	r.dropped = p->dropped;
	memcpy(r.name, p->name, sizeof(r.name));
	kvfs_put_be32(k, p->id);
	db_put(s, s->db_pools, k, sizeof(k), &r, sizeof(r));
}

static void db_put_node(struct meta_state *s, const struct node *n)
{
	struct rec_node r;
	uint8_t k[4];

	memset(&r, 0, sizeof(r));
	r.incarnation = n->inc;
	r.flags = n->dead ? REC_NODE_DEAD : 0;
	r.arena_size = n->arena_size;
	memcpy(r.addr, n->addr, sizeof(r.addr));
	kvfs_put_be32(k, n->id);
	db_put(s, s->db_nodes, k, sizeof(k), &r, sizeof(r));
}

static void db_put_counter(struct meta_state *s, const char *key, const void *v, size_t vl)
{
	db_put(s, s->db_meta, key, strlen(key), v, vl);
}

static size_t xattr_key(uint8_t *k, uint64_t ino, const char *name, size_t nlen)
{
	kvfs_put_be64(k, ino);
	memcpy(k + 8, name, nlen);
	return 8 + nlen;
}

/* ------------------------------------------------------------------------------------------ */
/* Hash tables (common/htable.h): inodes by number, names by (parent, name), leases by id */

static void ino_tab_insert(struct meta_state *s, struct inode *in)
{
	(void)kvfs_htable_insert(&s->inos, &in->ino_node, kvfs_hash_u64(in->ino)); /* reserved */
	s->ninodes++;
}

static struct inode *ino_find(struct meta_state *s, uint64_t ino)
{
	uint64_t h = kvfs_hash_u64(ino);

	for (struct kvfs_hnode *n = kvfs_htable_first(&s->inos, h); n; n = kvfs_htable_next(n, h)) {
		struct inode *in = kvfs_container_of(n, struct inode, ino_node);

		if (in->ino == ino)
			return in;
	}
	return NULL;
}

static void ino_tab_remove(struct meta_state *s, struct inode *in)
{
	if (kvfs_htable_remove(&s->inos, &in->ino_node))
		s->ninodes--;
}

static struct inode *name_find(struct meta_state *s, uint64_t parent, const char *name, size_t len)
{
	uint64_t h = name_hash(parent, name, len);

	for (struct kvfs_hnode *n = kvfs_htable_first(&s->names, h); n;
	     n = kvfs_htable_next(n, h)) {
		struct inode *in = kvfs_container_of(n, struct inode, name_node);

		if (in->parent == parent && in->name_len == len && memcmp(in->name, name, len) == 0)
			return in;
	}
	return NULL;
}

static void name_tab_insert(struct meta_state *s, struct inode *in)
{
	(void)kvfs_htable_insert(&s->names, &in->name_node,
				 name_hash(in->parent, in->name, in->name_len));
	s->nnames++;
}

static void name_tab_remove(struct meta_state *s, struct inode *in)
{
	if (kvfs_htable_remove(&s->names, &in->name_node))
		s->nnames--;
}

static void lease_tab_insert(struct meta_state *s, struct lease *ls)
{
	(void)kvfs_htable_insert(&s->leases, &ls->hnode, kvfs_hash_u64(ls->id));
	s->nleases++;
}

/* Unlink and return the lease @id, or NULL. */
static struct lease *lease_take(struct meta_state *s, uint64_t id)
{
	uint64_t h = kvfs_hash_u64(id);

	for (struct kvfs_hnode *n = kvfs_htable_first(&s->leases, h); n;
	     n = kvfs_htable_next(n, h)) {
		struct lease *l = kvfs_container_of(n, struct lease, hnode);

		if (l->id == id) {
			kvfs_htable_remove(&s->leases, n);
			s->nleases--;
			return l;
		}
	}
	return NULL;
}

/* The next inode of an iteration over all of them (it starts as KVFS_HITER_INIT), or NULL. */
static struct inode *ino_next(struct meta_state *s, struct kvfs_hiter *it)
{
	struct kvfs_hnode *n = kvfs_htable_iter(&s->inos, it);

	return n ? kvfs_container_of(n, struct inode, ino_node) : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Nodes and pages */

static struct node *node_find(struct meta_state *s, uint32_t id)
{
	for (size_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].id == id)
			return &s->nodes[i];
	}
	return NULL;
}

/* Return a page to its node's allocator if it belongs to the node's live incarnation. */
static void page_release(struct meta_state *s, uint32_t page_size, const struct page *p)
{
	struct node *n = node_find(s, p->node);
	uint64_t off = (uint64_t)p->off << OFF_SHIFT;

	if (n && n->pa && n->inc == p->inc)
		kvfs_palloc_free(n->pa, page_size, 1, &off);
}

/* Free the pages a truncate cut off while the file was leased. */
static void cut_release(struct meta_state *s, struct inode *in)
{
	for (uint32_t i = 0; i < in->f.ncut; i++)
		page_release(s, in->pool->page_size, &in->f.cut[i]);
	free(in->f.cut);
	in->f.cut = NULL;
	in->f.ncut = 0;
}

static void page_to_ref(const struct page *p, struct kvfs_page_ref *r)
{
	r->node = p->node;
	r->incarnation = p->inc;
	r->off = (uint64_t)p->off << OFF_SHIFT;
}

static bool page_is(const struct page *p, const struct kvfs_page_ref *r)
{
	return p->node == r->node && p->inc == r->incarnation &&
	       ((uint64_t)p->off << OFF_SHIFT) == r->off;
}

/* Make room for @add more entries in a page array of @n (capacity: at least pow2_ceil(n)). */
static int pages_reserve(struct page **arr, uint32_t n, size_t add)
{
	size_t want = (size_t)n + add;
	struct page *p;

	if (add == 0 || (n && pow2_ceil(n) >= want))
		return 0;
	if (want > UINT32_MAX)
		return -EFBIG;
	p = realloc(*arr, pow2_ceil(want) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

/* First committed page with index >= @index. */
static uint32_t pages_lower(const struct inode *in, uint64_t index)
{
	uint32_t lo = 0, hi = in->f.npages;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (in->f.pages[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void pages_shrink(struct page **arr, uint32_t n)
{
	if (n == 0) {
		free(*arr);
		*arr = NULL;
	}
}

/* ------------------------------------------------------------------------------------------ */
/* LRU: closed files with pages and nothing pending, in lru pools. */

static bool lru_eligible(const struct inode *in)
{
	return is_reg(in) && in->pool && in->pool->evict == KVFS_EVICT_LRU && !in->pool->dropped &&
	       in->nlink > 0 && in->nleases == 0 && in->f.npend == 0 && in->f.npages > 0;
}

static void lru_remove(struct inode *in)
{
	struct pool *p = in->pool;

	if (!in->in_lru)
		return;
	if (in->f.lru_prev)
		in->f.lru_prev->f.lru_next = in->f.lru_next;
	else
		p->lru_head = in->f.lru_next;
	if (in->f.lru_next)
		in->f.lru_next->f.lru_prev = in->f.lru_prev;
	else
		p->lru_tail = in->f.lru_prev;
	in->f.lru_prev = in->f.lru_next = NULL;
	in->in_lru = 0;
	p->lru_pages -= in->f.npages;
}

/* Put @in on (or off) its pool's LRU list as its state says; joining counts as a use. */
static void lru_update(struct meta_state *s, struct inode *in)
{
	struct pool *p = in->pool;

	if (!is_reg(in))
		return;
	if (!lru_eligible(in)) {
		lru_remove(in);
		return;
	}
	if (in->in_lru)
		return;
	in->f.lru_stamp = ++s->clock;
	in->f.lru_prev = p->lru_tail;
	in->f.lru_next = NULL;
	if (p->lru_tail)
		p->lru_tail->f.lru_next = in;
	else
		p->lru_head = in;
	p->lru_tail = in;
	in->in_lru = 1;
	p->lru_pages += in->f.npages;
}

static uint64_t evictable_bytes(struct meta_state *s, const struct pool *except)
{
	uint64_t b = 0;

	for (struct pool *p = s->pools; p; p = p->next) {
		if (p != except && !p->dropped && p->evict == KVFS_EVICT_LRU)
			b += p->lru_pages * p->page_size;
	}
	return b;
}

static void lru_remove_all(struct pool *p)
{
	while (p->lru_head)
		lru_remove(p->lru_head);
}

/* ------------------------------------------------------------------------------------------ */
/* Directories */

static struct dir *dir_new(void)
{
	struct dir *d = calloc(1, sizeof(*d));

	if (d)
		d->next_seq = 1;
	return d;
}

static void dir_compact(struct dir *d)
{
	uint32_t j = 0;

	for (uint32_t i = 0; i < d->n; i++) {
		if (d->slots[i].in)
			d->slots[j++] = d->slots[i];
	}
	d->n = j;
}

/* Make room for @k appends. */
static int dir_reserve(struct dir *d, uint32_t k)
{
	struct dslot *t;
	size_t cap;

	if (d->n + k <= d->cap)
		return 0;
	if (d->n - d->live >= DIR_COMPACT_MIN && (d->n - d->live) * 4 >= d->n) {
		dir_compact(d);
		if (d->n + k <= d->cap)
			return 0;
	}
	cap = d->cap ? (size_t)d->cap * 2 : 8;
	while (cap < (size_t)d->n + k)
		cap *= 2;
	if (cap > UINT32_MAX)
		return -ENOSPC;
	t = realloc(d->slots, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	d->slots = t;
	d->cap = (uint32_t)cap;
	return 0;
}

/* First slot with seq > @cookie. */
static uint32_t dir_after(const struct dir *d, uint64_t cookie)
{
	uint32_t lo = 0, hi = d->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (d->slots[mid].seq <= cookie)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void dir_remove(struct dir *d, struct inode *in)
{
	uint32_t i = dir_after(d, in->seq - 1);

	if (i < d->n && d->slots[i].in == in) {
		d->slots[i].in = NULL;
		d->live--;
	}
	if (d->live == 0) {
		d->n = 0;
	} else if (d->n - d->live >= DIR_COMPACT_MIN && (d->n - d->live) * 2 > d->n) {
		dir_compact(d);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Inode lifecycle */

static void fill_attr(const struct inode *in, struct kvfs_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = in->ino;
	a->size = in->size;
	a->version = in->version;
	a->mode = in->mode;
	a->uid = in->uid;
	a->gid = in->gid;
	a->nlink = in->nlink;
	a->atime_ns = in->atime;
	a->mtime_ns = in->mtime;
	a->ctime_ns = in->ctime;
	a->flags = in->flags;
	if (in->pool) {
		a->pool = in->pool->id;
		a->page_size = in->pool->page_size;
		if (is_reg(in))
			a->blocks = (uint64_t)in->f.npages * (in->pool->page_size / 512);
	}
}

/* A new unnamed inode; memory only (the caller links and persists it). */
static struct inode *inode_new(struct meta_state *s, uint64_t ino, uint32_t mode, struct pool *p)
{
	struct inode *in = calloc(1, sizeof(*in));

	if (!in)
		return NULL;
	if (S_ISDIR(mode)) {
		in->d = dir_new();
		if (!in->d) {
			free(in);
			return NULL;
		}
	}
	in->ino = ino;
	in->mode = mode;
	in->pool = p;
	if (p)
		p->refs++;
	ino_tab_insert(s, in);
	return in;
}

/* Free a dropped pool once no inode refers to it; caller holds a transaction. */
static void pool_free_if_dead(struct meta_state *s, struct pool *p)
{
	struct pool **pp;
	uint8_t k[4];

	if (!p->dropped || p->refs)
		return;
	kvfs_put_be32(k, p->id);
	db_del(s, s->db_pools, k, sizeof(k));
	for (pp = &s->pools; *pp && *pp != p; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = p->next;
	free(p);
}

static void xattrs_free(struct xattr *x)
{
	while (x) {
		struct xattr *next = x->next;

		free(x);
		x = next;
	}
}

/* Free an inode whose name is already gone: its pages, its store records and its memory. */
static void inode_destroy(struct meta_state *s, struct inode *in)
{
	struct pool *p = in->pool;
	uint8_t k[8 + KVFS_NAME_MAX];

	if (is_reg(in)) {
		lru_remove(in);
		for (uint32_t i = 0; i < in->f.npages; i++) {
			page_release(s, p->page_size, &in->f.pages[i]);
			db_del_page(s, in->ino, in->f.pages[i].index);
		}
		for (uint32_t i = 0; i < in->f.npend; i++) {
			page_release(s, p->page_size, &in->f.pend[i]);
			db_del_pend(s, in->ino, &in->f.pend[i]);
		}
		p->pages -= in->f.npages + in->f.npend;
		cut_release(s, in);
		free(in->f.pages);
		free(in->f.pend);
		if (in->nlink == 0 && s->norphans)
			s->norphans--;
	} else if (is_dir(in) && in->d) {
		free(in->d->slots);
		free(in->d);
	}
	for (struct xattr *x = in->xattrs; x; x = x->next)
		db_del(s, s->db_xattrs, k, xattr_key(k, in->ino, x->data, x->nlen));
	xattrs_free(in->xattrs);
	db_del_inode(s, in->ino);
	ino_tab_remove(s, in);
	free(in->name);
	if (p) {
		p->refs--;
		pool_free_if_dead(s, p);
	}
	free(in);
}

/*
 * Give @in the name (@dir, @name) which the caller allocated; the caller reserved a slot in
 * @dir. Persists the dirent.
 */
static void name_link(struct meta_state *s, struct inode *dir, struct inode *in, char *name,
		      size_t len)
{
	in->parent = dir->ino;
	in->name = name;
	in->name_len = (uint16_t)len;
	in->seq = dir->d->next_seq++;
	dir->d->slots[dir->d->n++] = (struct dslot){.seq = in->seq, .in = in};
	dir->d->live++;
	name_tab_insert(s, in);
	db_put_dirent(s, in);
}

/* Take the name away from @in (which keeps its memory). */
static void name_unlink(struct meta_state *s, struct inode *in)
{
	struct inode *dir = ino_find(s, in->parent);

	db_del_dirent(s, in);
	name_tab_remove(s, in);
	if (dir && is_dir(dir))
		dir_remove(dir->d, in);
	free(in->name);
	in->name = NULL;
	in->name_len = 0;
	in->parent = 0;
}

static void dir_touch(struct meta_state *s, struct inode *dir, int64_t now)
{
	dir->mtime = dir->ctime = now;
	db_put_inode(s, dir);
}

static void rmlist_add(struct rmlist *rm, const struct inode *in)
{
	struct removed *v;

	if (!rm || !in->name)
		return;
	if (rm->n == rm->cap) {
		size_t cap = rm->cap ? rm->cap * 2 : 8;

		v = realloc(rm->v, cap * sizeof(*v));
		if (!v)
			return; /* best effort: the kernel cache then times out on its own */
		rm->v = v;
		rm->cap = cap;
	}
	rm->v[rm->n].name = strdup(in->name);
	if (!rm->v[rm->n].name)
		return;
	rm->v[rm->n].parent = in->parent;
	rm->v[rm->n].ino = in->ino;
	rm->n++;
}

/* Call cb.removed for every collected name; the lock must not be held. */
static void rmlist_deliver(struct meta_state *s, struct rmlist *rm)
{
	for (size_t i = 0; i < rm->n; i++) {
		if (s->cb.removed)
			s->cb.removed(s->cb.ctx, rm->v[i].parent, rm->v[i].name, rm->v[i].ino);
		free(rm->v[i].name);
	}
	free(rm->v);
	rm->v = NULL;
	rm->n = rm->cap = 0;
}

/*
 * Remove the name of the non-directory @in (unlink, replaced by rename, evicted, dropped). A file
 * still leased becomes an orphan (nlink 0) freed at its last close; otherwise it is freed now,
 * pending pages included. Does not touch the parent's times.
 */
static void file_remove(struct meta_state *s, struct inode *in, int64_t now)
{
	in->pool->files--;
	name_unlink(s, in);
	in->nlink = 0;
	lru_remove(in);
	if (in->nleases > 0) {
		in->ctime = now;
		s->norphans++;
		db_put_inode(s, in);
		return;
	}
	inode_destroy(s, in);
}

/* Remove the empty directory @in and its name. */
static void dir_remove_inode(struct meta_state *s, struct inode *in)
{
	struct inode *parent = ino_find(s, in->parent);

	name_unlink(s, in);
	if (parent && parent->nlink > 2)
		parent->nlink--;
	in->nlink = 0;
	inode_destroy(s, in);
}

/* Evict the closed file @in whole; counts in its pool's eviction statistics. */
static void evict(struct meta_state *s, struct inode *in, struct rmlist *rm, int64_t now)
{
	struct pool *p = in->pool;
	struct inode *parent = ino_find(s, in->parent);

	p->evictions++;
	p->evicted_bytes += (uint64_t)in->f.npages * p->page_size;
	db_put_pool(s, p);
	rmlist_add(rm, in);
	file_remove(s, in, now);
	if (parent)
		dir_touch(s, parent, now);
}

/* ------------------------------------------------------------------------------------------ */
/* Lookup helpers */

static int get_dir(struct meta_state *s, uint64_t ino, struct inode **ret)
{
	struct inode *in = ino_find(s, ino);

	if (!in)
		return -ENOENT;
	if (!is_dir(in))
		return -ENOTDIR;
	*ret = in;
	return 0;
}

static int get_file(struct meta_state *s, uint64_t ino, struct inode **ret)
{
	struct inode *in = ino_find(s, ino);

	if (!in)
		return -ENOENT;
	if (is_dir(in))
		return -EISDIR;
	if (!is_reg(in))
		return -EINVAL;
	*ret = in;
	return 0;
}

static struct pool *pool_by_name(struct meta_state *s, const char *name)
{
	for (struct pool *p = s->pools; p; p = p->next) {
		if (!p->dropped && strcmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

static struct pool *pool_by_id(struct meta_state *s, uint32_t id)
{
	for (struct pool *p = s->pools; p; p = p->next) {
		if (!p->dropped && p->id == id)
			return p;
	}
	return NULL;
}

static void fill_pool(const struct pool *p, struct kvfs_pool_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->id = p->id;
	memcpy(a->name, p->name, sizeof(a->name));
	a->page_size = p->page_size;
	a->capacity = p->capacity;
	a->max_file_size = p->max_file_size;
	a->evict = p->evict;
	a->root_ino = p->root->ino;
	a->used = p->pages * p->page_size;
	a->files = p->files;
	a->evictions = p->evictions;
	a->evicted_bytes = p->evicted_bytes;
}

static struct kvfs_layout *layout_make(const struct inode *in)
{
	struct kvfs_layout *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	fill_attr(in, &l->attr);
	if (is_reg(in) && in->f.npages) {
		l->pages = malloc(in->f.npages * sizeof(*l->pages));
		if (!l->pages) {
			free(l);
			return NULL;
		}
		for (uint32_t i = 0; i < in->f.npages; i++) {
			l->pages[i].index = in->f.pages[i].index;
			page_to_ref(&in->f.pages[i], &l->pages[i].ref);
		}
		l->npages = in->f.npages;
	}
	return l;
}

void kvfs_layout_free(struct kvfs_layout *layout)
{
	if (!layout)
		return;
	free(layout->pages);
	free(layout);
}

/* ------------------------------------------------------------------------------------------ */
/* Pools */

static uint64_t alloc_ino(struct meta_state *s)
{
	uint64_t ino = s->next_ino++;

	db_put_counter(s, "next_ino", &s->next_ino, sizeof(s->next_ino));
	return ino;
}

/* Validate and default a pool's options in place. */
static int pool_attr_check(struct kvfs_pool_attr *a, size_t *ret_len)
{
	int r;

	r = kvfs_pool_name_check(a->name);
	if (r < 0)
		return r;
	*ret_len = strlen(a->name);
	/* sizes are signed 64-bit in JSON: larger ones would come back negative */
	if (a->capacity > KVFS_POOL_SIZE_MAX || a->max_file_size > KVFS_POOL_SIZE_MAX)
		return -EINVAL;
	if (a->page_size == 0)
		a->page_size = DEFAULT_PAGE_SIZE;
	if (!kvfs_page_size_valid(a->page_size))
		return -EINVAL;
	if (a->max_file_size == 0)
		a->max_file_size = DEFAULT_MAX_FILE_SIZE;
	/* page indices are 32-bit */
	if (a->max_file_size / a->page_size > UINT32_MAX)
		return -EINVAL;
	if (a->evict != KVFS_EVICT_LRU && a->evict != KVFS_EVICT_NONE)
		return -EINVAL;
	if (a->capacity && a->capacity < a->page_size)
		return -EINVAL;
	return 0;
}

/* Create a pool and its directory under the root; caller holds the lock and a transaction. */
static int pool_create_locked(struct meta_state *s, struct kvfs_pool_attr *a, uint32_t mode,
			      uint32_t uid, uint32_t gid)
{
	struct pool *p;
	struct inode *dir;
	size_t len;
	char *name;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	r = pool_attr_check(a, &len);
	if (r < 0)
		return r;
	if (name_find(s, KVFS_ROOT_INO, a->name, len))
		return -EEXIST;
	r = dir_reserve(s->root->d, 1);
	if (r < 0)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	name = strndup(a->name, len);
	if (!name)
		goto err_free_pool;

	p->id = s->next_pool++;
	memcpy(p->name, a->name, len);
	p->page_size = a->page_size;
	p->capacity = a->capacity;
	p->max_file_size = a->max_file_size;
	p->evict = a->evict;
	dir = inode_new(s, 0, S_IFDIR | (mode & 07777), p);
	if (!dir)
		goto err_free_name;
	ino_tab_remove(s, dir);
	dir->ino = alloc_ino(s);
	ino_tab_insert(s, dir);
	p->next = s->pools;
	s->pools = p;
	p->root = dir;
	dir->uid = uid;
	dir->gid = gid;
	dir->nlink = 2;
	dir->version = 1;
	dir->atime = dir->mtime = dir->ctime = now;
	name_link(s, s->root, dir, name, len);
	s->root->nlink++;
	dir_touch(s, s->root, now);
	db_put_inode(s, dir);
	db_put_pool(s, p);
	db_put_counter(s, "next_pool", &s->next_pool, sizeof(s->next_pool));
	a->id = p->id;
	a->root_ino = dir->ino;
	return 0;

err_free_name:
	free(name);
err_free_pool:
	free(p);
	return -ENOMEM;
}

/* Collect the subtree of @top, breadth first (every directory before its children). */
static int subtree(struct inode *top, struct inode ***ret, size_t *ret_n)
{
	size_t n = 1, cap = 64;
	struct inode **v = malloc(cap * sizeof(*v));

	if (!v)
		return -ENOMEM;
	v[0] = top;
	for (size_t i = 0; i < n; i++) {
		struct inode *in = v[i];

		if (!is_dir(in))
			continue;
		for (uint32_t j = 0; j < in->d->n; j++) {
			if (!in->d->slots[j].in)
				continue;
			if (n == cap) {
				struct inode **t = realloc(v, cap * 2 * sizeof(*v));

				if (!t) {
					free(v);
					return -ENOMEM;
				}
				v = t;
				cap *= 2;
			}
			v[n++] = in->d->slots[j].in;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int pool_drop_locked(struct meta_state *s, const char *name, bool force, struct rmlist *rm)
{
	struct pool *p;
	struct inode **v;
	size_t n;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	p = pool_by_name(s, name);
	if (!p)
		return -ENOENT;
	if (p->root->d->live && !force)
		return -ENOTEMPTY;
	r = subtree(p->root, &v, &n);
	if (r < 0)
		return r;
	/* children before their parents */
	for (size_t i = n; i-- > 1;) {
		if (is_dir(v[i]))
			dir_remove_inode(s, v[i]);
		else
			file_remove(s, v[i], now);
	}
	free(v);
	rmlist_add(rm, p->root);
	/* the record stays, marked dropped, while orphans refer to the pool: a restart then finds
	 * their pool and deletes both */
	p->dropped = true;
	lru_remove_all(p);
	db_put_pool(s, p);
	dir_remove_inode(s, p->root); /* the pool goes with its last reference */
	dir_touch(s, s->root, now);
	return 0;
}

int meta_state_pool_create(struct meta_state *s, struct kvfs_pool_attr *attr)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = op_begin(s);
	if (r < 0)
		goto out;
	r = pool_create_locked(s, attr, 0755, 0, 0);
	if (r < 0) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
		goto out;
	}
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_pool_list(struct meta_state *s, struct kvfs_pool_attr **ret_pools, size_t *ret_n)
{
	struct kvfs_pool_attr *v;
	size_t n = 0, i = 0;

	pthread_mutex_lock(&s->lock);
	for (struct pool *p = s->pools; p; p = p->next)
		n += !p->dropped;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	for (struct pool *p = s->pools; p; p = p->next) {
		if (!p->dropped)
			fill_pool(p, &v[i++]);
	}
	pthread_mutex_unlock(&s->lock);
	/* oldest first: the list is kept newest first */
	for (size_t a = 0, b = n ? n - 1 : 0; a < b; a++, b--) {
		struct kvfs_pool_attr t = v[a];

		v[a] = v[b];
		v[b] = t;
	}
	*ret_pools = v;
	*ret_n = n;
	return 0;
}

int meta_state_pool_get(struct meta_state *s, uint32_t pool, struct kvfs_pool_attr *ret)
{
	struct pool *p;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	p = pool_by_id(s, pool);
	if (p)
		fill_pool(p, ret);
	else
		r = -ENOENT;
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_pool_drop(struct meta_state *s, const char *name, bool force)
{
	struct rmlist rm = {0};
	int r;

	if (!name)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (!pool_by_name(s, name)) {
		r = -ENOENT;
		goto out;
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	r = pool_drop_locked(s, name, force, &rm);
	if (r < 0) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
		goto out;
	}
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	rmlist_deliver(s, &rm);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Namespace */

int meta_state_lookup(struct meta_state *s, uint64_t parent, const char *name,
		      struct kvfs_attr *ret_attr)
{
	struct inode *dir, *in;
	size_t len;
	int r;

	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	in = name_find(s, parent, name, len);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	fill_attr(in, ret_attr);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_getattr(struct meta_state *s, uint64_t ino, struct kvfs_attr *ret_attr)
{
	struct inode *in;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (in)
		fill_attr(in, ret_attr);
	else
		r = -ENOENT;
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_layout(struct meta_state *s, uint64_t ino, struct kvfs_layout **ret_layout)
{
	struct kvfs_layout *l = NULL;
	struct inode *in;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in)
		r = -ENOENT;
	else if (!(l = layout_make(in)))
		r = -ENOMEM;
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		*ret_layout = l;
	return r;
}

/* Create a file or directory @name in @dir (not the root). */
static int make_node(struct meta_state *s, struct inode *dir, const char *name, size_t len,
		     uint32_t mode, uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr)
{
	struct inode *in;
	char *copy;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	r = dir_reserve(dir->d, 1);
	if (r < 0)
		return r;
	copy = strndup(name, len);
	if (!copy)
		return -ENOMEM;
	r = op_begin(s);
	if (r < 0)
		goto err_free_copy;
	in = inode_new(s, 0, mode, dir->pool);
	if (!in) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
		r = -ENOMEM;
		goto err_free_copy;
	}
	ino_tab_remove(s, in);
	in->ino = alloc_ino(s);
	ino_tab_insert(s, in);
	in->uid = uid;
	in->gid = gid;
	/* BSD group semantics under a set-group-ID directory, as local file systems do: the new
	 * node takes the directory's group, and a new directory keeps the bit (the kernel has
	 * already stripped S_ISGID from a file the caller may not give it to) */
	if (dir->mode & S_ISGID) {
		in->gid = dir->gid;
		if (S_ISDIR(mode))
			in->mode |= S_ISGID;
	}
	in->version = 1;
	in->atime = in->mtime = in->ctime = now;
	if (S_ISDIR(mode)) {
		in->nlink = 2;
		dir->nlink++;
	} else {
		in->nlink = 1;
		dir->pool->files++;
	}
	name_link(s, dir, in, copy, len);
	db_put_inode(s, in);
	dir_touch(s, dir, now);
	fill_attr(in, ret_attr);
	return op_end(s);

err_free_copy:
	free(copy);
	return r;
}

int meta_state_create_file(struct meta_state *s, uint64_t parent, const char *name, uint32_t mode,
			   uint32_t uid, uint32_t gid, bool excl, struct kvfs_attr *ret_attr)
{
	struct inode *dir, *in;
	struct kvfs_attr a;
	size_t len;
	int r;

	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	if (dir == s->root) {
		r = -EPERM;
		goto out;
	}
	if (dir->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	in = name_find(s, parent, name, len);
	if (in) {
		if (excl)
			r = -EEXIST;
		else if (is_dir(in))
			r = -EISDIR;
		else
			fill_attr(in, &a);
		goto out;
	}
	r = make_node(s, dir, name, len, S_IFREG | (mode & 07777), uid, gid, &a);
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		*ret_attr = a;
	return r;
}

int meta_state_mkdir(struct meta_state *s, uint64_t parent, const char *name, uint32_t mode,
		     uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr)
{
	struct inode *dir;
	struct kvfs_attr a;
	size_t len;
	int r;

	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	if (name_find(s, parent, name, len)) {
		r = -EEXIST;
		goto out;
	}
	if (dir == s->root) {
		struct kvfs_pool_attr pa;

		if (len > KVFS_POOL_NAME_MAX) {
			r = -ENAMETOOLONG;
			goto out;
		}
		memset(&pa, 0, sizeof(pa));
		memcpy(pa.name, name, len);
		r = op_begin(s);
		if (r < 0)
			goto out;
		r = pool_create_locked(s, &pa, mode, uid, gid);
		if (r < 0) {
			mdb_txn_abort(s->txn);
			s->txn = NULL;
			goto out;
		}
		fill_attr(ino_find(s, pa.root_ino), &a);
		r = op_end(s);
		goto out;
	}
	if (dir->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	r = make_node(s, dir, name, len, S_IFDIR | (mode & 07777), uid, gid, &a);
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		*ret_attr = a;
	return r;
}

int meta_state_unlink(struct meta_state *s, uint64_t parent, const char *name)
{
	struct inode *dir, *in;
	size_t len;
	int r;

	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	in = name_find(s, parent, name, len);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	if (is_dir(in)) {
		r = -EISDIR;
		goto out;
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	file_remove(s, in, kvfs_now_ns(CLOCK_REALTIME));
	dir_touch(s, dir, kvfs_now_ns(CLOCK_REALTIME));
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_rmdir(struct meta_state *s, uint64_t parent, const char *name)
{
	struct inode *dir, *in;
	size_t len;
	int r;

	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	in = name_find(s, parent, name, len);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	if (!is_dir(in)) {
		r = -ENOTDIR;
		goto out;
	}
	if (in->d->live) {
		r = -ENOTEMPTY;
		goto out;
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	if (dir == s->root) {
		r = pool_drop_locked(s, name, false, NULL);
		if (r < 0) {
			mdb_txn_abort(s->txn);
			s->txn = NULL;
			goto out;
		}
	} else {
		dir_remove_inode(s, in);
		dir_touch(s, dir, kvfs_now_ns(CLOCK_REALTIME));
	}
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* True when @dir is @top or lies below it. */
static bool in_subtree(struct meta_state *s, struct inode *dir, struct inode *top)
{
	while (dir) {
		if (dir == top)
			return true;
		if (dir == s->root || !dir->parent)
			return false;
		dir = ino_find(s, dir->parent);
	}
	return false;
}

static int rename_exchange(struct meta_state *s, struct inode *dir, struct inode *src,
			   struct inode *newdir, struct inode *dst)
{
	char *n1, *n2;
	size_t l1 = src->name_len, l2 = dst->name_len;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	if (is_dir(src) && in_subtree(s, newdir, src))
		return -EINVAL;
	if (is_dir(dst) && in_subtree(s, dir, dst))
		return -EINVAL;
	r = dir_reserve(dir->d, dir == newdir ? 2 : 1);
	if (r < 0)
		return r;
	if (dir != newdir) {
		r = dir_reserve(newdir->d, 1);
		if (r < 0)
			return r;
	}
	n1 = strndup(dst->name, l2); /* src's new name */
	n2 = strndup(src->name, l1);
	if (!n1 || !n2) {
		free(n1);
		free(n2);
		return -ENOMEM;
	}
	r = op_begin(s);
	if (r < 0) {
		free(n1);
		free(n2);
		return r;
	}
	name_unlink(s, src);
	name_unlink(s, dst);
	name_link(s, newdir, src, n1, l2);
	name_link(s, dir, dst, n2, l1);
	if (dir != newdir && is_dir(src) != is_dir(dst)) {
		struct inode *gains = is_dir(src) ? newdir : dir;
		struct inode *loses = is_dir(src) ? dir : newdir;

		gains->nlink++;
		loses->nlink--;
	}
	src->ctime = dst->ctime = now;
	db_put_inode(s, src);
	db_put_inode(s, dst);
	dir_touch(s, dir, now);
	if (newdir != dir)
		dir_touch(s, newdir, now);
	return op_end(s);
}

int meta_state_rename(struct meta_state *s, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, unsigned flags)
{
	struct inode *dir, *newdir, *src, *dst;
	size_t len, newlen;
	char *copy;
	int64_t now;
	int r;

	if (flags & ~(unsigned)(KVFS_RENAME_NOREPLACE | KVFS_RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & KVFS_RENAME_NOREPLACE) && (flags & KVFS_RENAME_EXCHANGE))
		return -EINVAL;
	r = check_name(name, KVFS_NAME_MAX, &len);
	if (r < 0)
		return r;
	r = check_name(newname, KVFS_NAME_MAX, &newlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	r = get_dir(s, parent, &dir);
	if (r < 0)
		goto out;
	r = get_dir(s, newparent, &newdir);
	if (r < 0)
		goto out;
	src = name_find(s, parent, name, len);
	if (!src) {
		r = -ENOENT;
		goto out;
	}
	if (dir == s->root || newdir == s->root) {
		/* pools are not renamed, and nothing moves between the root and a pool */
		r = dir == newdir ? -EPERM : -EXDEV;
		goto out;
	}
	if (dir->pool != newdir->pool) {
		r = -EXDEV;
		goto out;
	}
	if (newdir->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	dst = name_find(s, newparent, newname, newlen);
	if (flags & KVFS_RENAME_EXCHANGE) {
		if (!dst)
			r = -ENOENT;
		else if (dst != src)
			r = rename_exchange(s, dir, src, newdir, dst);
		goto out;
	}
	if (dst == src)
		goto out; /* same file: nothing to do */
	if (dst && (flags & KVFS_RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto out;
	}
	if (is_dir(src) && in_subtree(s, newdir, src)) {
		r = -EINVAL;
		goto out;
	}
	if (dst) {
		if (is_dir(dst) && !is_dir(src)) {
			r = -EISDIR;
			goto out;
		}
		if (!is_dir(dst) && is_dir(src)) {
			r = -ENOTDIR;
			goto out;
		}
		if (is_dir(dst) && dst->d->live) {
			r = -ENOTEMPTY;
			goto out;
		}
	}
	r = dir_reserve(newdir->d, 1);
	if (r < 0)
		goto out;
	copy = strndup(newname, newlen);
	if (!copy) {
		r = -ENOMEM;
		goto out;
	}
	r = op_begin(s);
	if (r < 0) {
		free(copy);
		goto out;
	}
	now = kvfs_now_ns(CLOCK_REALTIME);
	if (dst) {
		if (is_dir(dst))
			dir_remove_inode(s, dst);
		else
			file_remove(s, dst, now);
	}
	name_unlink(s, src);
	name_link(s, newdir, src, copy, newlen);
	if (is_dir(src) && dir != newdir) {
		dir->nlink--;
		newdir->nlink++;
	}
	src->ctime = now;
	db_put_inode(s, src);
	dir_touch(s, dir, now);
	if (newdir != dir)
		dir_touch(s, newdir, now);
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Free committed pages of @in with index >= @first; the caller took @in off the LRU. */
/*
 * Remove the committed pages of @in from index @first on. A lease holder (a node with the file
 * open) may still read or write them through the page map it was given at open, so while there
 * are leases the pages leave the file but not the allocator: they wait on in->f.cut until the
 * last lease goes. Freed at once, a page could be handed to another file while a node still
 * wrote into it, or served to that node's readers: one file's bytes in another. Not persisted:
 * after a restart no lease survives and the allocator is rebuilt from the pages files hold.
 */
static void truncate_pages(struct meta_state *s, struct inode *in, uint64_t first)
{
	uint32_t i = pages_lower(in, first), n = in->f.npages - i;
	struct page *cut = NULL;

	if (n == 0)
		return;
	if (in->nleases > 0) {
		cut = realloc(in->f.cut, ((size_t)in->f.ncut + n) * sizeof(*cut));
		if (cut)
			in->f.cut = cut;
	}
	for (uint32_t j = i; j < in->f.npages; j++) {
		if (cut)
			in->f.cut[in->f.ncut++] = in->f.pages[j];
		else /* no lease, or no memory to wait: free now, as before */
			page_release(s, in->pool->page_size, &in->f.pages[j]);
		db_del_page(s, in->ino, in->f.pages[j].index);
	}
	in->pool->pages -= n;
	in->f.npages = i;
	pages_shrink(&in->f.pages, i);
}

int meta_state_setattr(struct meta_state *s, uint64_t ino, const struct kvfs_attr *attr,
		       unsigned valid, struct kvfs_attr *ret_attr)
{
	struct inode *in;
	struct kvfs_attr a;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	if (valid & KVFS_SET_SIZE) {
		if (is_dir(in)) {
			r = -EISDIR;
			goto out;
		}
		if (attr->size > in->pool->max_file_size) {
			r = -EFBIG;
			goto out;
		}
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	if (valid & KVFS_SET_MODE)
		in->mode = (in->mode & S_IFMT) | (attr->mode & 07777);
	if (valid & KVFS_SET_UID)
		in->uid = attr->uid;
	if (valid & KVFS_SET_GID)
		in->gid = attr->gid;
	if (valid & KVFS_SET_ATIME)
		in->atime = attr->atime_ns;
	if (valid & KVFS_SET_SIZE) {
		uint64_t ps = in->pool->page_size;

		lru_remove(in);
		truncate_pages(s, in, (attr->size + ps - 1) / ps);
		/* as truncate(2) on a local file system: the times change with the size only
		 * (open's O_TRUNC and ftruncate(2) pass MTIME and CTIME to change them anyway) */
		if (in->size != attr->size) {
			in->mtime = in->ctime = now;
			in->size = attr->size;
		}
		if (in->size == 0)
			in->flags &= ~(uint32_t)KVFS_ATTR_LOST;
		in->version++;
		lru_update(s, in);
	}
	if (valid & KVFS_SET_MTIME)
		in->mtime = attr->mtime_ns;
	if (valid & KVFS_SET_CTIME)
		in->ctime = attr->ctime_ns;
	else if (valid & ~(unsigned)KVFS_SET_SIZE)
		in->ctime = now;
	db_put_inode(s, in);
	fill_attr(in, &a);
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0 && ret_attr)
		*ret_attr = a;
	return r;
}

int meta_state_readdir(struct meta_state *s, uint64_t dir, uint64_t cookie,
		       struct kvfs_dirent *ret_ents, size_t max, size_t *ret_n)
{
	struct inode *d;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&s->lock);
	r = get_dir(s, dir, &d);
	if (r < 0)
		goto out;
	for (uint32_t i = dir_after(d->d, cookie); i < d->d->n && n < max; i++) {
		struct inode *in = d->d->slots[i].in;

		if (!in)
			continue;
		ret_ents[n].cookie = in->seq;
		memcpy(ret_ents[n].name, in->name, in->name_len + 1u);
		fill_attr(in, &ret_ents[n].attr);
		n++;
	}
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		*ret_n = n;
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Allocation, commit, abort */

/* Allocate @n pages on one node: @prefer first, then any other alive node. */
static int alloc_on_nodes(struct meta_state *s, uint32_t prefer, uint32_t ps, uint32_t n,
			  uint64_t *offs, struct node **ret_node)
{
	struct node *pn = prefer ? node_find(s, prefer) : NULL;
	int r;

	if (pn && pn->pa) {
		r = kvfs_palloc_alloc(pn->pa, ps, n, offs);
		if (r != -ENOSPC) {
			if (r == 0)
				*ret_node = pn;
			return r;
		}
	}
	for (size_t i = 0; i < s->nnodes; i++) {
		struct node *nd = &s->nodes[i];

		if (nd == pn || !nd->pa)
			continue;
		r = kvfs_palloc_alloc(nd->pa, ps, n, offs);
		if (r != -ENOSPC) {
			if (r == 0)
				*ret_node = nd;
			return r;
		}
	}
	return -ENOSPC;
}

static uint64_t arena_free_bytes(struct meta_state *s)
{
	uint64_t b = 0;

	for (size_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].pa)
			b += kvfs_palloc_free_bytes(s->nodes[i].pa);
	}
	return b;
}

static uint64_t arena_bytes(struct meta_state *s)
{
	uint64_t b = 0;

	for (size_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].pa)
			b += kvfs_palloc_capacity(s->nodes[i].pa);
	}
	return b;
}

/* The least recently used closed file: @own pool's first if it is lru, then global. */
static struct inode *lru_victim(struct meta_state *s, struct pool *own, bool global)
{
	struct inode *best = NULL;

	if (own->evict == KVFS_EVICT_LRU && own->lru_head)
		return own->lru_head;
	if (!global)
		return NULL;
	for (struct pool *p = s->pools; p; p = p->next) {
		if (p->dropped || p->evict != KVFS_EVICT_LRU || !p->lru_head)
			continue;
		if (!best || p->lru_head->f.lru_stamp < best->f.lru_stamp)
			best = p->lru_head;
	}
	return best;
}

int meta_state_alloc(struct meta_state *s, uint64_t ino, uint64_t first, uint32_t n,
		     uint32_t prefer_node, struct kvfs_page_ref *ret_refs)
{
	struct rmlist rm = {0};
	struct inode *in;
	struct pool *p;
	struct node *nd = NULL;
	uint64_t *offs = NULL, ps, limit, need;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	uint32_t i;
	int r;

	if (n == 0)
		return -EINVAL;
	offs = malloc(n * sizeof(*offs));
	if (!offs)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	r = get_file(s, ino, &in);
	if (r < 0)
		goto out;
	p = in->pool;
	ps = p->page_size;
	limit = (p->max_file_size + ps - 1) / ps;
	if (first >= limit || n > limit - first) {
		r = -EFBIG;
		goto out;
	}
	i = pages_lower(in, first);
	if (i < in->f.npages && in->f.pages[i].index < first + n) {
		r = -EEXIST;
		goto out;
	}
	r = pages_reserve(&in->f.pend, in->f.npend, n);
	if (r < 0)
		goto out;
	/* can it fit at all? Then nothing is evicted for an allocation that fails anyway */
	lru_remove(in);
	need = (uint64_t)n * ps;
	if (p->capacity) {
		uint64_t cap_pages = p->capacity / ps;
		uint64_t evictable = p->evict == KVFS_EVICT_LRU ? p->lru_pages : 0;

		if (p->pages + n > cap_pages + evictable) {
			r = -ENOSPC;
			goto out_lru;
		}
	}
	if (arena_free_bytes(s) + evictable_bytes(s, NULL) < need) {
		r = -ENOSPC;
		goto out_lru;
	}
	r = op_begin(s);
	if (r < 0)
		goto out_lru;
	if (p->capacity) {
		while (p->pages + n > p->capacity / ps) {
			struct inode *v = lru_victim(s, p, false);

			if (!v)
				break; /* cannot happen after the check above */
			evict(s, v, &rm, now);
		}
	}
	for (;;) {
		struct inode *v;

		r = alloc_on_nodes(s, prefer_node, (uint32_t)ps, n, offs, &nd);
		if (r != -ENOSPC)
			break;
		v = lru_victim(s, p, true);
		if (!v)
			break;
		evict(s, v, &rm, now);
	}
	if (r == 0) {
		for (i = 0; i < n; i++) {
			struct page *pg = &in->f.pend[in->f.npend++];

			pg->index = (uint32_t)(first + i);
			pg->node = nd->id;
			pg->inc = nd->inc;
			pg->off = (uint32_t)(offs[i] >> OFF_SHIFT);
			db_put_pend(s, in->ino, pg);
			page_to_ref(pg, &ret_refs[i]);
		}
		p->pages += n;
	}
	/* evictions stay done even when the allocation still failed */
	if (op_end(s) < 0 && r == 0)
		r = -EIO;
out_lru:
	lru_update(s, in);
out:
	pthread_mutex_unlock(&s->lock);
	free(offs);
	rmlist_deliver(s, &rm);
	return r;
}

/* Index of the pending page of @in equal to @ref (and at @index unless it is UINT64_MAX). */
static int64_t pend_find(const struct inode *in, uint64_t index, const struct kvfs_page_ref *ref)
{
	for (uint32_t i = 0; i < in->f.npend; i++) {
		const struct page *pg = &in->f.pend[i];

		if ((index == UINT64_MAX || pg->index == index) && page_is(pg, ref))
			return i;
	}
	return -1;
}

static void pend_drop(struct inode *in, uint32_t i)
{
	in->f.pend[i] = in->f.pend[--in->f.npend];
	pages_shrink(&in->f.pend, in->f.npend);
}

/* Insert or replace the committed page @pg; returns the replaced page's slot or NULL. */
static void pages_put(struct meta_state *s, struct inode *in, const struct page *pg)
{
	uint32_t i = pages_lower(in, pg->index);

	if (i < in->f.npages && in->f.pages[i].index == pg->index) {
		/* a racing writer committed this index first: last commit wins */
		page_release(s, in->pool->page_size, &in->f.pages[i]);
		in->f.pages[i] = *pg;
		in->pool->pages--;
		return;
	}
	memmove(&in->f.pages[i + 1], &in->f.pages[i], (in->f.npages - i) * sizeof(*pg));
	in->f.pages[i] = *pg;
	in->f.npages++;
}

int meta_state_commit(struct meta_state *s, uint64_t ino, uint64_t size, int64_t mtime_ns,
		      const struct kvfs_page_entry *pages, size_t n, struct kvfs_attr *ret_attr)
{
	struct inode *in;
	struct kvfs_attr a;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	pthread_mutex_lock(&s->lock);
	r = get_file(s, ino, &in);
	if (r < 0)
		goto out;
	if (size > in->pool->max_file_size) {
		r = -EFBIG;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t j = pages_lower(in, pages[i].index);
		bool committed = j < in->f.npages && in->f.pages[j].index == pages[i].index &&
				 page_is(&in->f.pages[j], &pages[i].ref);

		if (!committed && pend_find(in, pages[i].index, &pages[i].ref) < 0) {
			r = -ESTALE; /* never allocated, aborted, or of a lost incarnation */
			goto out;
		}
	}
	r = pages_reserve(&in->f.pages, in->f.npages, n);
	if (r < 0)
		goto out;
	r = op_begin(s);
	if (r < 0)
		goto out;
	lru_remove(in);
	for (size_t i = 0; i < n; i++) {
		int64_t k = pend_find(in, pages[i].index, &pages[i].ref);
		struct page pg;

		if (k < 0)
			continue; /* already committed (idempotent retry or duplicate) */
		pg = in->f.pend[k];
		db_del_pend(s, in->ino, &pg);
		pend_drop(in, (uint32_t)k);
		pages_put(s, in, &pg);
		db_put_page(s, in->ino, &pg);
	}
	if (size > in->size)
		in->size = size;
	in->version++;
	in->mtime = mtime_ns ? mtime_ns : now;
	in->ctime = now;
	db_put_inode(s, in);
	lru_update(s, in);
	fill_attr(in, &a);
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0 && ret_attr)
		*ret_attr = a;
	return r;
}

int meta_state_abort(struct meta_state *s, uint64_t ino, const struct kvfs_page_ref *refs, size_t n)
{
	struct inode *in;
	int r;

	pthread_mutex_lock(&s->lock);
	r = get_file(s, ino, &in);
	if (r < 0)
		goto out;
	r = op_begin(s);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		int64_t k = pend_find(in, UINT64_MAX, &refs[i]);

		if (k < 0)
			continue; /* idempotent */
		page_release(s, in->pool->page_size, &in->f.pend[k]);
		db_del_pend(s, in->ino, &in->f.pend[k]);
		pend_drop(in, (uint32_t)k);
		in->pool->pages--;
	}
	lru_update(s, in);
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Leases */

int meta_state_open(struct meta_state *s, uint64_t ino, uint32_t node, uint64_t *ret_lease,
		    struct kvfs_layout **ret_layout)
{
	struct kvfs_layout *l = NULL;
	struct lease *ls;
	struct inode *in;
	int r;

	ls = malloc(sizeof(*ls));
	if (!ls)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	r = get_file(s, ino, &in);
	if (r < 0)
		goto err_unlock;
	if (ret_layout) {
		l = layout_make(in);
		if (!l) {
			r = -ENOMEM;
			goto err_unlock;
		}
	}
	ls->id = ++s->next_lease;
	ls->ino = ino;
	ls->node = node;
	lease_tab_insert(s, ls);
	in->nleases++;
	lru_remove(in);
	in->f.lru_stamp = ++s->clock;
	*ret_lease = ls->id;
	pthread_mutex_unlock(&s->lock);
	if (ret_layout)
		*ret_layout = l;
	return 0;

err_unlock:
	pthread_mutex_unlock(&s->lock);
	free(ls);
	return r;
}

/* Drop one lease of @in; frees an orphan at its last lease. Caller holds a transaction. */
static void lease_drop(struct meta_state *s, struct inode *in)
{
	in->nleases--;
	if (in->nlink == 0 && in->nleases == 0) {
		inode_destroy(s, in);
		return;
	}
	if (in->nleases == 0 && is_reg(in) && in->f.ncut)
		cut_release(s, in);
	lru_update(s, in); /* a close counts as a use: it joins the LRU at the tail */
}

int meta_state_close(struct meta_state *s, uint64_t ino, uint64_t lease)
{
	struct lease *ls;
	struct inode *in;
	int r;

	pthread_mutex_lock(&s->lock);
	ls = lease_take(s, lease);
	if (!ls) {
		r = -ENOENT;
		goto out;
	}
	if (ls->ino != ino) {
		/* put it back: the caller named the wrong file */
		lease_tab_insert(s, ls);
		r = -EINVAL;
		goto out;
	}
	free(ls);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	if (in->nlink == 0 && in->nleases == 1) {
		r = op_begin(s);
		if (r < 0) {
			in->nleases--;
			goto out;
		}
		lease_drop(s, in);
		r = op_end(s);
	} else {
		lease_drop(s, in);
		r = 0;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Xattrs */

static struct xattr **xattr_find(struct inode *in, const char *name, size_t nlen)
{
	struct xattr **pp = &in->xattrs;

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->nlen == nlen && memcmp((*pp)->data, name, nlen) == 0)
			return pp;
	}
	return pp;
}

static int check_xattr_name(const char *name, size_t *ret_len)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, KVFS_NAME_MAX + 1);
	if (len == 0)
		return -EINVAL;
	if (len > KVFS_NAME_MAX)
		return -ERANGE;
	*ret_len = len;
	return 0;
}

/* Whether @in can hold an attribute with a @nlen-byte name and a @vlen-byte value in place of
 * @old (NULL: an added one) within the per-file bounds (meta.h). Returns 0 or -ENOSPC. */
static int xattr_fits(const struct inode *in, const struct xattr *old, size_t nlen, size_t vlen)
{
	size_t n = 1, names = nlen + 1, values = vlen;

	for (const struct xattr *x = in->xattrs; x; x = x->next) {
		if (x == old)
			continue;
		n++;
		names += x->nlen + 1u; /* listxattr ends each name with a NUL */
		values += x->vlen;
	}
	if (n > KVFS_XATTR_COUNT_MAX || names > KVFS_XATTR_NAMES_MAX ||
	    values > KVFS_XATTR_VALUES_MAX)
		return -ENOSPC;
	return 0;
}

int meta_state_setxattr(struct meta_state *s, uint64_t ino, const char *name, const void *value,
			size_t len, int flags)
{
	struct xattr **pp, *x, *old;
	struct inode *in;
	uint8_t k[8 + KVFS_NAME_MAX];
	size_t nlen;
	int r;

	r = check_xattr_name(name, &nlen);
	if (r < 0)
		return r;
	if (strncmp(name, "user.", 5) != 0)
		return -ENOTSUP;
	if (len > XATTR_VALUE_MAX)
		return -E2BIG;
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	x = malloc(sizeof(*x) + nlen + 1 + len);
	if (!x)
		return -ENOMEM;
	x->nlen = (uint16_t)nlen;
	x->vlen = (uint32_t)len;
	memcpy(x->data, name, nlen + 1);
	if (len)
		memcpy(x->data + nlen + 1, value, len);
	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto err_unlock;
	}
	pp = xattr_find(in, name, nlen);
	old = *pp;
	if (old && (flags & XATTR_CREATE)) {
		r = -EEXIST;
		goto err_unlock;
	}
	if (!old && (flags & XATTR_REPLACE)) {
		r = -ENODATA;
		goto err_unlock;
	}
	r = xattr_fits(in, old, nlen, len);
	if (r < 0)
		goto err_unlock;
	r = op_begin(s);
	if (r < 0)
		goto err_unlock;
	x->next = old ? old->next : NULL;
	*pp = x;
	free(old);
	db_put(s, s->db_xattrs, k, xattr_key(k, ino, name, nlen), x->data + nlen + 1, len);
	in->ctime = kvfs_now_ns(CLOCK_REALTIME);
	db_put_inode(s, in);
	r = op_end(s);
	pthread_mutex_unlock(&s->lock);
	return r;

err_unlock:
	pthread_mutex_unlock(&s->lock);
	free(x);
	return r;
}

int meta_state_getxattr(struct meta_state *s, uint64_t ino, const char *name, void *buf,
			size_t size, size_t *ret_len)
{
	struct inode *in;
	struct xattr *x;
	size_t nlen;
	int r;

	r = check_xattr_name(name, &nlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	x = *xattr_find(in, name, nlen);
	if (!x) {
		r = -ENODATA;
		goto out;
	}
	if (size) {
		if (size < x->vlen) {
			r = -ERANGE;
			goto out;
		}
		memcpy(buf, x->data + x->nlen + 1, x->vlen);
	}
	*ret_len = x->vlen;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_listxattr(struct meta_state *s, uint64_t ino, char *buf, size_t size,
			 size_t *ret_len)
{
	struct inode *in;
	size_t need = 0;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	for (struct xattr *x = in->xattrs; x; x = x->next)
		need += x->nlen + 1u;
	if (size) {
		char *p = buf;

		if (size < need) {
			r = -ERANGE;
			goto out;
		}
		for (struct xattr *x = in->xattrs; x; x = x->next) {
			memcpy(p, x->data, x->nlen + 1u);
			p += x->nlen + 1u;
		}
	}
	*ret_len = need;
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_removexattr(struct meta_state *s, uint64_t ino, const char *name)
{
	struct xattr **pp, *x;
	struct inode *in;
	uint8_t k[8 + KVFS_NAME_MAX];
	size_t nlen;
	int r;

	r = check_xattr_name(name, &nlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	pp = xattr_find(in, name, nlen);
	x = *pp;
	if (!x) {
		r = -ENODATA;
		goto out;
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	*pp = x->next;
	free(x);
	db_del(s, s->db_xattrs, k, xattr_key(k, ino, name, nlen));
	in->ctime = kvfs_now_ns(CLOCK_REALTIME);
	db_put_inode(s, in);
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* statfs */

int meta_state_statfs(struct meta_state *s, uint64_t ino, struct kvfs_statfs *ret)
{
	struct kvfs_statfs st;
	struct inode *in;
	uint64_t arena_free;
	int r = 0;

	memset(&st, 0, sizeof(st));
	pthread_mutex_lock(&s->lock);
	in = ino_find(s, ino);
	if (!in) {
		r = -ENOENT;
		goto out;
	}
	arena_free = arena_free_bytes(s) + evictable_bytes(s, NULL);
	if (!in->pool) {
		st.capacity = arena_bytes(s);
		st.used = st.capacity > arena_free_bytes(s) ? st.capacity - arena_free_bytes(s) : 0;
		st.free = arena_free;
		for (struct pool *p = s->pools; p; p = p->next)
			st.files += p->dropped ? 0 : p->files;
	} else {
		struct pool *p = in->pool;
		uint64_t ps = p->page_size;

		st.page_size = p->page_size;
		st.used = p->pages * ps;
		st.files = p->files;
		st.capacity = p->capacity ? p->capacity / ps * ps : arena_bytes(s);
		st.free = arena_free;
		if (p->capacity) {
			uint64_t cap_free = st.capacity > st.used ? st.capacity - st.used : 0;

			if (p->evict == KVFS_EVICT_LRU)
				cap_free += p->lru_pages * ps;
			if (cap_free < st.free)
				st.free = cap_free;
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		*ret = st;
	return r;
}

void meta_state_get_stats(struct meta_state *s, struct meta_state_stats *ret)
{
	pthread_mutex_lock(&s->lock);
	ret->inodes = s->ninodes;
	ret->dirents = s->nnames;
	ret->leases = s->nleases;
	ret->orphans = s->norphans;
	pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Node membership */

static bool page_bad(const struct page *pg, uint32_t node, uint32_t keep_inc)
{
	return pg->node == node && pg->inc != keep_inc;
}

/* Collect every regular file (the caller frees *ret). */
static int all_files(struct meta_state *s, struct inode ***ret, size_t *ret_n)
{
	struct inode **v = malloc((s->ninodes ? s->ninodes : 1) * sizeof(*v));
	size_t n = 0;

	if (!v)
		return -ENOMEM;
	{
		struct kvfs_hiter it = KVFS_HITER_INIT;

		for (struct inode *in; (in = ino_next(s, &it));) {
			if (is_reg(in))
				v[n++] = in;
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/*
 * Forget every page and pending page of @node whose incarnation is not @keep_inc (0: all of
 * them), without returning them to any allocator (that memory is gone). A file that lost a
 * committed page is dropped in an lru pool and marked KVFS_ATTR_LOST in a none pool. Caller holds
 * a transaction.
 */
static int invalidate_node(struct meta_state *s, uint32_t node, uint32_t keep_inc,
			   struct rmlist *rm)
{
	struct inode **v;
	size_t n;
	int64_t now = kvfs_now_ns(CLOCK_REALTIME);
	int r;

	r = all_files(s, &v, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct inode *in = v[i];
		struct pool *p = in->pool;
		bool lost = false;
		uint32_t j, k;

		lru_remove(in);
		for (j = 0; j < in->f.npend;) {
			if (page_bad(&in->f.pend[j], node, keep_inc)) {
				db_del_pend(s, in->ino, &in->f.pend[j]);
				in->f.pend[j] = in->f.pend[--in->f.npend];
				p->pages--;
			} else {
				j++;
			}
		}
		pages_shrink(&in->f.pend, in->f.npend);
		for (j = 0, k = 0; j < in->f.npages; j++) {
			if (page_bad(&in->f.pages[j], node, keep_inc)) {
				db_del_page(s, in->ino, in->f.pages[j].index);
				p->pages--;
				lost = true;
			} else {
				in->f.pages[k++] = in->f.pages[j];
			}
		}
		in->f.npages = k;
		pages_shrink(&in->f.pages, k);
		if (lost && p->evict == KVFS_EVICT_LRU && in->nlink > 0) {
			struct inode *parent = ino_find(s, in->parent);

			rmlist_add(rm, in);
			file_remove(s, in, now);
			if (parent)
				dir_touch(s, parent, now);
			continue;
		}
		if (lost) {
			in->flags |= KVFS_ATTR_LOST;
			in->version++;
			in->ctime = now;
			db_put_inode(s, in);
		}
		lru_update(s, in);
	}
	free(v);
	return 0;
}

/* Mark in @nd's allocator every page (committed or pending) of its live incarnation. */
static int rebuild_palloc(struct meta_state *s, struct node *nd)
{
	struct inode **v;
	size_t n;
	int r;

	r = all_files(s, &v, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct inode *in = v[i];
		uint32_t ps = in->pool->page_size;

		for (uint32_t j = 0; j < in->f.npages && r == 0; j++) {
			const struct page *pg = &in->f.pages[j];

			if (pg->node == nd->id && pg->inc == nd->inc)
				r = kvfs_palloc_reserve(nd->pa, ps, (uint64_t)pg->off << OFF_SHIFT);
		}
		for (uint32_t j = 0; j < in->f.npend && r == 0; j++) {
			const struct page *pg = &in->f.pend[j];

			if (pg->node == nd->id && pg->inc == nd->inc)
				r = kvfs_palloc_reserve(nd->pa, ps, (uint64_t)pg->off << OFF_SHIFT);
		}
	}
	free(v);
	return r < 0 ? -EIO : 0; /* a page held twice or outside the arena: corrupt store */
}

/* Return every page of @nd's live incarnation to its allocator (the node restarts). */
static void release_node_pages(struct meta_state *s, struct node *nd)
{
	{
		struct kvfs_hiter it = KVFS_HITER_INIT;

		for (struct inode *in; (in = ino_next(s, &it));) {
			if (!is_reg(in))
				continue;
			for (uint32_t j = 0; j < in->f.npages; j++) {
				if (in->f.pages[j].node == nd->id)
					page_release(s, in->pool->page_size, &in->f.pages[j]);
			}
			for (uint32_t j = 0; j < in->f.npend; j++) {
				if (in->f.pend[j].node == nd->id)
					page_release(s, in->pool->page_size, &in->f.pend[j]);
			}
		}
	}
}

static struct node *node_add(struct meta_state *s, uint32_t id)
{
	struct node *v = realloc(s->nodes, (s->nnodes + 1) * sizeof(*v));

	if (!v)
		return NULL;
	s->nodes = v;
	memset(&v[s->nnodes], 0, sizeof(*v));
	v[s->nnodes].id = id;
	return &v[s->nnodes++];
}

int meta_state_node_register(struct meta_state *s, struct kvfs_node_info *info,
			     struct kvfs_palloc *pa)
{
	struct rmlist rm = {0};
	struct kvfs_palloc *owned = NULL, *old = NULL;
	struct node *nd;
	uint64_t arena = info->arena_size;
	uint32_t id, inc;
	int r;

	if (pa && !arena)
		arena = kvfs_palloc_capacity(pa);
	if (arena < KVFS_PAGE_MIN || arena > MAX_ARENA)
		return -EINVAL;
	if (!pa) {
		r = kvfs_palloc_create(arena, &owned);
		if (r < 0)
			return r;
		pa = owned;
	}
	pthread_mutex_lock(&s->lock);
	id = info->id ? info->id : s->next_node;
	nd = node_find(s, id);
	if (!nd) {
		nd = node_add(s, id);
		if (!nd) {
			r = -ENOMEM;
			goto err_unlock;
		}
	}
	r = op_begin(s);
	if (r < 0)
		goto err_unlock;
	if (id >= s->next_node) {
		s->next_node = id + 1;
		db_put_counter(s, "next_node", &s->next_node, sizeof(s->next_node));
	}
	if (nd->pa) {
		release_node_pages(s, nd);
		if (nd->owned)
			old = nd->pa;
	}
	nd->inc = nd->inc + 1 ? nd->inc + 1 : 1;
	nd->arena_size = arena;
	memcpy(nd->addr, info->addr, sizeof(nd->addr));
	nd->addr[sizeof(nd->addr) - 1] = '\0';
	nd->pa = pa;
	nd->owned = owned != NULL;
	nd->dead = false;
	db_put_node(s, nd);
	r = invalidate_node(s, id, nd->inc, &rm);
	if (r == 0)
		r = rebuild_palloc(s, nd);
	if (r < 0)
		s->txn_err = s->txn_err ? s->txn_err : r;
	inc = nd->inc;
	r = op_end(s);
	pthread_mutex_unlock(&s->lock);
	kvfs_palloc_destroy(old);
	rmlist_deliver(s, &rm);
	if (r == 0) {
		info->id = id;
		info->incarnation = inc;
		info->arena_size = arena;
	}
	return r;

err_unlock:
	pthread_mutex_unlock(&s->lock);
	kvfs_palloc_destroy(owned);
	return r;
}

int meta_state_node_leave(struct meta_state *s, uint32_t node)
{
	return meta_state_node_leave_inc(s, node, 0);
}

int meta_state_node_leave_inc(struct meta_state *s, uint32_t node, uint32_t incarnation)
{
	struct rmlist rm = {0};
	struct kvfs_palloc *old = NULL;
	struct node *nd;
	int r;

	pthread_mutex_lock(&s->lock);
	nd = node_find(s, node);
	if (!nd) {
		r = -ENOENT;
		goto out;
	}
	if (incarnation && nd->inc != incarnation) {
		r = -ESTALE;
		goto out;
	}
	r = op_begin(s);
	if (r < 0)
		goto out;
	/* the node's leases go with it */
	for (struct kvfs_hiter it = KVFS_HITER_INIT;;) {
		struct kvfs_hnode *n = kvfs_htable_iter(&s->leases, &it);
		struct lease *l;
		struct inode *in;

		if (!n)
			break;
		l = kvfs_container_of(n, struct lease, hnode);
		if (l->node != node)
			continue;
		kvfs_htable_remove(&s->leases, n);
		s->nleases--;
		in = ino_find(s, l->ino);
		if (in)
			lease_drop(s, in);
		free(l);
	}
	if (nd->owned)
		old = nd->pa;
	nd->pa = NULL;
	nd->owned = false;
	nd->dead = true;
	db_put_node(s, nd);
	r = invalidate_node(s, node, 0, &rm);
	if (r < 0)
		s->txn_err = s->txn_err ? s->txn_err : r;
	r = op_end(s);
out:
	pthread_mutex_unlock(&s->lock);
	kvfs_palloc_destroy(old);
	rmlist_deliver(s, &rm);
	return r;
}

int meta_state_node_get(struct meta_state *s, uint32_t node, struct kvfs_node_info *ret)
{
	struct node *nd;
	int r = 0;

	pthread_mutex_lock(&s->lock);
	nd = node_find(s, node);
	if (nd) {
		memset(ret, 0, sizeof(*ret));
		ret->id = nd->id;
		ret->incarnation = nd->inc;
		ret->arena_size = nd->arena_size;
		memcpy(ret->addr, nd->addr, sizeof(ret->addr));
	} else {
		r = -ENOENT;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

int meta_state_node_resume(struct meta_state *s, uint32_t node, uint32_t incarnation)
{
	struct kvfs_palloc *pa = NULL;
	struct node *nd;
	uint64_t arena;
	int r;

	pthread_mutex_lock(&s->lock);
	nd = node_find(s, node);
	if (!nd) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	if (nd->inc != incarnation || nd->dead) {
		pthread_mutex_unlock(&s->lock);
		return -ESTALE;
	}
	if (nd->pa) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	arena = nd->arena_size;
	pthread_mutex_unlock(&s->lock);

	/* allocate outside the lock, then re-check: a register or leave may have raced */
	r = kvfs_palloc_create(arena, &pa);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	nd = node_find(s, node);
	if (!nd || nd->inc != incarnation || nd->dead) {
		r = nd ? -ESTALE : -ENOENT;
	} else if (nd->pa) {
		r = 0;
	} else {
		nd->pa = pa;
		nd->owned = true;
		r = rebuild_palloc(s, nd);
		if (r < 0) {
			nd->pa = NULL;
			nd->owned = false;
		} else {
			pa = NULL;
		}
	}
	pthread_mutex_unlock(&s->lock);
	kvfs_palloc_destroy(pa);
	return r;
}

int meta_state_node_list(struct meta_state *s, struct meta_state_node **ret_nodes, size_t *ret_n)
{
	struct meta_state_node *v;
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->nnodes;
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&s->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct node *nd = &s->nodes[i];

		v[i].info.id = nd->id;
		v[i].info.incarnation = nd->inc;
		v[i].info.arena_size = nd->arena_size;
		memcpy(v[i].info.addr, nd->addr, sizeof(v[i].info.addr));
		v[i].alive = nd->pa != NULL;
		v[i].dead = nd->dead;
		if (nd->pa) {
			v[i].capacity = kvfs_palloc_capacity(nd->pa);
			v[i].free = kvfs_palloc_free_bytes(nd->pa);
		}
	}
	pthread_mutex_unlock(&s->lock);
	*ret_nodes = v;
	*ret_n = n;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Loading the store */

static int cmp_slot(const void *a, const void *b)
{
	const struct dslot *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_lru(const void *a, const void *b)
{
	const struct inode *x = *(struct inode *const *)a, *y = *(struct inode *const *)b;

	if (x->mtime != y->mtime)
		return x->mtime < y->mtime ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static int get_counter(MDB_txn *txn, MDB_dbi dbi, const char *key, void *v, size_t vl)
{
	MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, d;
	int rc = mdb_get(txn, dbi, &k, &d);

	if (rc)
		return mdb_to_errno(rc);
	if (d.mv_size != vl)
		return -EIO;
	memcpy(v, d.mv_data, vl);
	return 0;
}

/* A fresh store: the root directory and the counters. */
static int store_init(struct meta_state *s)
{
	uint32_t version = DB_VERSION;
	struct inode *root;
	int r;

	r = op_begin(s);
	if (r < 0)
		return r;
	root = inode_new(s, KVFS_ROOT_INO, S_IFDIR | 0755, NULL);
	if (!root) {
		mdb_txn_abort(s->txn);
		s->txn = NULL;
		return -ENOMEM;
	}
	root->nlink = 2;
	root->version = 1;
	root->atime = root->mtime = root->ctime = kvfs_now_ns(CLOCK_REALTIME);
	s->root = root;
	s->next_ino = KVFS_FIRST_INO;
	s->next_pool = 1;
	s->next_node = 1;
	db_put_inode(s, root);
	db_put_counter(s, "version", &version, sizeof(version));
	db_put_counter(s, "next_ino", &s->next_ino, sizeof(s->next_ino));
	db_put_counter(s, "next_pool", &s->next_pool, sizeof(s->next_pool));
	db_put_counter(s, "next_node", &s->next_node, sizeof(s->next_node));
	r = op_end(s);
	if (r < 0)
		s->broken = false; /* nothing to disagree with: the caller gives up */
	return r;
}

static int load_nodes(struct meta_state *s, MDB_cursor *c)
{
	MDB_val k, d;
	int rc;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		struct rec_node rn;
		struct node *nd;

		if (k.mv_size != 4 || d.mv_size != sizeof(rn))
			return -EIO;
		memcpy(&rn, d.mv_data, sizeof(rn));
		nd = node_add(s, kvfs_get_be32(k.mv_data));
		if (!nd)
			return -ENOMEM;
		nd->inc = rn.incarnation;
		nd->dead = (rn.flags & REC_NODE_DEAD) != 0;
		nd->arena_size = rn.arena_size;
		memcpy(nd->addr, rn.addr, sizeof(nd->addr));
		nd->addr[sizeof(nd->addr) - 1] = '\0';
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

static int load_pools(struct meta_state *s, MDB_cursor *c)
{
	MDB_val k, d;
	int rc;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		struct rec_pool rp;
		struct pool *p;

		if (k.mv_size != 4 || d.mv_size != sizeof(rp))
			return -EIO;
		memcpy(&rp, d.mv_data, sizeof(rp));
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->id = kvfs_get_be32(k.mv_data);
		memcpy(p->name, rp.name, sizeof(p->name));
		p->name[KVFS_POOL_NAME_MAX] = '\0';
		p->page_size = rp.page_size;
		p->evict = (uint8_t)rp.evict;
		p->capacity = rp.capacity;
		p->max_file_size = rp.max_file_size;
		p->evictions = rp.evictions;
		p->evicted_bytes = rp.evicted_bytes;
		p->dropped = rp.dropped;
		p->root_ino = rp.root_ino; /* resolved once inodes are in */
		p->next = s->pools;
		s->pools = p;
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

static struct pool *pool_by_id_any(struct meta_state *s, uint32_t id)
{
	for (struct pool *p = s->pools; p; p = p->next) {
		if (p->id == id)
			return p;
	}
	return NULL;
}

static int load_inodes(struct meta_state *s, MDB_cursor *c)
{
	MDB_val k, d;
	int rc;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		struct rec_inode ri;
		struct pool *p = NULL;
		struct inode *in;
		uint64_t ino;

		if (k.mv_size != 8 || d.mv_size != sizeof(ri))
			return -EIO;
		memcpy(&ri, d.mv_data, sizeof(ri));
		ino = kvfs_get_be64(k.mv_data);
		if (ri.pool) {
			p = pool_by_id_any(s, ri.pool);
			if (!p)
				return -EIO;
		} else if (ino != KVFS_ROOT_INO) {
			return -EIO;
		}
		if (!S_ISDIR(ri.mode) && !S_ISREG(ri.mode))
			return -EIO;
		in = inode_new(s, ino, ri.mode, p);
		if (!in)
			return -ENOMEM;
		in->size = ri.size;
		in->version = ri.version;
		in->atime = ri.atime;
		in->mtime = ri.mtime;
		in->ctime = ri.ctime;
		in->uid = ri.uid;
		in->gid = ri.gid;
		in->nlink = ri.nlink;
		in->flags = ri.flags;
		if (ino == KVFS_ROOT_INO)
			s->root = in;
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

static int load_dirents(struct meta_state *s, MDB_cursor *c)
{
	MDB_val k, d;
	int rc, r;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		struct rec_dirent rd;
		struct inode *dir, *in;
		size_t len = k.mv_size - 8;

		if (k.mv_size <= 8 || len > KVFS_NAME_MAX || d.mv_size != sizeof(rd))
			return -EIO;
		memcpy(&rd, d.mv_data, sizeof(rd));
		dir = ino_find(s, kvfs_get_be64(k.mv_data));
		in = ino_find(s, rd.ino);
		if (!dir || !is_dir(dir) || !in || in->name || in == s->root || rd.seq == 0)
			return -EIO;
		r = dir_reserve(dir->d, 1);
		if (r < 0)
			return r;
		in->name = strndup((const char *)k.mv_data + 8, len);
		if (!in->name)
			return -ENOMEM;
		in->name_len = (uint16_t)len;
		in->parent = dir->ino;
		in->seq = rd.seq;
		name_tab_insert(s, in);
		dir->d->slots[dir->d->n++] = (struct dslot){.seq = rd.seq, .in = in};
		dir->d->live++;
		if (rd.seq >= dir->d->next_seq)
			dir->d->next_seq = rd.seq + 1;
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

/* Committed pages (@pend false) or pending pages. */
static int load_pages(struct meta_state *s, MDB_cursor *c, bool pend)
{
	MDB_val k, d;
	int rc, r;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		const uint8_t *kb = k.mv_data;
		struct inode *in;
		struct page pg;
		uint64_t index, off;

		if (k.mv_size != (pend ? 28u : 16u) ||
		    d.mv_size != (pend ? 4u : sizeof(struct rec_page)))
			return -EIO;
		in = ino_find(s, kvfs_get_be64(kb));
		index = kvfs_get_be64(kb + 8);
		if (!in || !is_reg(in) || index > UINT32_MAX)
			return -EIO;
		if (pend) {
			pg.node = kvfs_get_be32(kb + 16);
			off = kvfs_get_be64(kb + 20);
			memcpy(&pg.inc, d.mv_data, 4);
		} else {
			struct rec_page rp;

			memcpy(&rp, d.mv_data, sizeof(rp));
			pg.node = rp.node;
			pg.inc = rp.inc;
			off = rp.off;
		}
		if (off & (KVFS_PAGE_MIN - 1) || off >= MAX_ARENA)
			return -EIO;
		pg.index = (uint32_t)index;
		pg.off = (uint32_t)(off >> OFF_SHIFT);
		if (pend) {
			r = pages_reserve(&in->f.pend, in->f.npend, 1);
			if (r < 0)
				return r;
			in->f.pend[in->f.npend++] = pg;
		} else {
			r = pages_reserve(&in->f.pages, in->f.npages, 1);
			if (r < 0)
				return r;
			in->f.pages[in->f.npages++] = pg; /* keys come in index order */
		}
		in->pool->pages++;
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

static int load_xattrs(struct meta_state *s, MDB_cursor *c)
{
	MDB_val k, d;
	int rc;

	for (rc = mdb_cursor_get(c, &k, &d, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &d, MDB_NEXT)) {
		size_t nlen = k.mv_size - 8;
		struct inode *in;
		struct xattr *x;

		if (k.mv_size <= 8 || nlen > KVFS_NAME_MAX || d.mv_size > XATTR_VALUE_MAX)
			return -EIO;
		in = ino_find(s, kvfs_get_be64(k.mv_data));
		if (!in)
			return -EIO;
		x = malloc(sizeof(*x) + nlen + 1 + d.mv_size);
		if (!x)
			return -ENOMEM;
		x->nlen = (uint16_t)nlen;
		x->vlen = (uint32_t)d.mv_size;
		memcpy(x->data, (const char *)k.mv_data + 8, nlen);
		x->data[nlen] = '\0';
		memcpy(x->data + nlen + 1, d.mv_data, d.mv_size);
		x->next = in->xattrs;
		in->xattrs = x;
	}
	return rc == MDB_NOTFOUND ? 0 : mdb_to_errno(rc);
}

static bool dead_pools(struct meta_state *s)
{
	for (struct pool *p = s->pools; p; p = p->next) {
		if (p->dropped && !p->refs)
			return true;
	}
	return false;
}

/* Fix up derived state after loading: pool roots, counters, listings, orphans, LRU. */
static int load_finish(struct meta_state *s)
{
	struct inode **v, **lru;
	size_t n, nlru = 0, norphan = 0;
	int r;

	for (struct pool *p = s->pools; p; p = p->next) {
		struct inode *root = ino_find(s, p->root_ino);

		if (p->dropped)
			continue;
		if (!root || !is_dir(root) || root->pool != p || root->parent != KVFS_ROOT_INO)
			return -EIO;
		p->root = root;
	}
	{
		struct kvfs_hiter it = KVFS_HITER_INIT;

		for (struct inode *in; (in = ino_next(s, &it));) {
			if (is_dir(in) && in->d->n > 1)
				qsort(in->d->slots, in->d->n, sizeof(struct dslot), cmp_slot);
		}
	}
	r = all_files(s, &v, &n);
	if (r < 0)
		return r;
	lru = malloc((n ? n : 1) * sizeof(*lru));
	if (!lru) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		if (!v[i]->name || v[i]->nlink == 0) {
			v[norphan++] = v[i]; /* its holders are gone */
			continue;
		}
		v[i]->pool->files++;
		if (lru_eligible(v[i]))
			lru[nlru++] = v[i];
	}
	qsort(lru, nlru, sizeof(*lru), cmp_lru);
	for (size_t i = 0; i < nlru; i++)
		lru_update(s, lru[i]);
	free(lru);
	{
		struct kvfs_hiter it = KVFS_HITER_INIT;

		for (struct inode *in; (in = ino_next(s, &it));) {
			if (is_dir(in) && in != s->root && !in->name) {
				free(v);
				return -EIO; /* a directory without a name: the tree is broken */
			}
		}
	}
	if (norphan || dead_pools(s)) {
		r = op_begin(s);
		if (r == 0) {
			for (size_t i = 0; i < norphan; i++) {
				v[i]->nlink = 0;
				inode_destroy(s, v[i]);
			}
			for (struct pool *p = s->pools, *next; p; p = next) {
				next = p->next;
				pool_free_if_dead(s, p);
			}
			r = op_end(s);
		}
	}
	free(v);
	return r;
}

static int load(struct meta_state *s)
{
	MDB_dbi dbs[] = {s->db_nodes, s->db_pools, s->db_inodes, s->db_dirents,
			 s->db_pages, s->db_pend,  s->db_xattrs};
	MDB_txn *txn;
	MDB_cursor *c;
	uint32_t version;
	int r, rc;

	rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return mdb_to_errno(rc);
	r = get_counter(txn, s->db_meta, "version", &version, sizeof(version));
	if (r == -ENOENT) {
		mdb_txn_abort(txn);
		return store_init(s);
	}
	if (r == 0 && version != DB_VERSION)
		r = -EINVAL;
	if (r == 0)
		r = get_counter(txn, s->db_meta, "next_ino", &s->next_ino, sizeof(s->next_ino));
	if (r == 0)
		r = get_counter(txn, s->db_meta, "next_pool", &s->next_pool, sizeof(s->next_pool));
	if (r == 0)
		r = get_counter(txn, s->db_meta, "next_node", &s->next_node, sizeof(s->next_node));
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]) && r == 0; i++) {
		rc = mdb_cursor_open(txn, dbs[i], &c);
		if (rc) {
			r = mdb_to_errno(rc);
			break;
		}
		switch (i) {
		case 0:
			r = load_nodes(s, c);
			break;
		case 1:
			r = load_pools(s, c);
			break;
		case 2:
			r = load_inodes(s, c);
			break;
		case 3:
			r = load_dirents(s, c);
			break;
		case 4:
			r = load_pages(s, c, false);
			break;
		case 5:
			r = load_pages(s, c, true);
			break;
		default:
			r = load_xattrs(s, c);
			break;
		}
		mdb_cursor_close(c);
	}
	mdb_txn_abort(txn);
	if (r == 0 && !s->root)
		r = -EIO;
	if (r == 0)
		r = load_finish(s);
	if (r == -ENOENT)
		r = -EIO; /* a counter is missing */
	return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Create and destroy */

static int open_dbs(struct meta_state *s)
{
	static const char *names[] = {"meta",	 "nodes", "pools",   "inodes",
				      "dirents", "pages", "pending", "xattrs"};
	MDB_dbi *dbis[] = {&s->db_meta,	   &s->db_nodes, &s->db_pools, &s->db_inodes,
			   &s->db_dirents, &s->db_pages, &s->db_pend,  &s->db_xattrs};
	MDB_txn *txn;
	int rc;

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc)
		return mdb_to_errno(rc);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		rc = mdb_dbi_open(txn, names[i], MDB_CREATE, dbis[i]);
		if (rc) {
			mdb_txn_abort(txn);
			return mdb_to_errno(rc);
		}
	}
	return mdb_to_errno(mdb_txn_commit(txn));
}

int meta_state_create(const struct meta_state_config *cfg, struct meta_state **ret)
{
	struct meta_state *s;
	char *path = NULL;
	unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
	int r, rc;

	if (!cfg || !cfg->dir || !*cfg->dir)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->lock_fd = -1;
	s->cb = cfg->cb;
	/* reserved, so that the first inserts cannot fail; past that a failed growth only
	 * lengthens chains */
	if (kvfs_htable_reserve(&s->inos, TAB_MIN) < 0 ||
	    kvfs_htable_reserve(&s->names, TAB_MIN) < 0 ||
	    kvfs_htable_reserve(&s->leases, 64) < 0) {
		r = -ENOMEM;
		goto err_destroy;
	}

	r = kvfs_mkdir_p(cfg->dir, 0755);
	if (r < 0)
		goto err_destroy;
	if (asprintf(&path, "%s/kvfs-meta.lock", cfg->dir) < 0) {
		r = -ENOMEM;
		goto err_destroy;
	}
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	free(path);
	if (s->lock_fd < 0) {
		r = -errno;
		goto err_destroy;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto err_destroy;
	}

	rc = mdb_env_create(&s->env);
	if (rc) {
		r = mdb_to_errno(rc);
		goto err_destroy;
	}
	mdb_env_set_maxdbs(s->env, 8);
	mdb_env_set_mapsize(s->env, cfg->map_size ? cfg->map_size : DEFAULT_MAP_SIZE);
	if (!cfg->sync)
		flags |= MDB_NOSYNC | MDB_NOMETASYNC;
	rc = mdb_env_open(s->env, cfg->dir, flags, 0644);
	if (rc) {
		r = mdb_to_errno(rc);
		goto err_destroy;
	}
	r = open_dbs(s);
	if (r < 0)
		goto err_destroy;
	s->map_base = store_map_base(s->env);
	r = load(s);
	if (r < 0)
		goto err_destroy;
	store_trim(s);
	*ret = s;
	return 0;

err_destroy:
	meta_state_destroy(s);
	return r;
}

void meta_state_destroy(struct meta_state *s)
{
	if (!s)
		return;
	for (struct kvfs_hiter it = KVFS_HITER_INIT;;) {
		struct inode *in = ino_next(s, &it);

		if (!in)
			break;
		if (is_reg(in)) {
			free(in->f.pages);
			free(in->f.pend);
			free(in->f.cut);
		} else if (in->d) {
			free(in->d->slots);
			free(in->d);
		}
		xattrs_free(in->xattrs);
		free(in->name);
		free(in);
	}
	for (struct kvfs_hiter it = KVFS_HITER_INIT;;) {
		struct kvfs_hnode *n = kvfs_htable_iter(&s->leases, &it);

		if (!n)
			break;
		free(kvfs_container_of(n, struct lease, hnode));
	}
	while (s->pools) {
		struct pool *p = s->pools;

		s->pools = p->next;
		free(p);
	}
	for (size_t i = 0; i < s->nnodes; i++) {
		if (s->nodes[i].owned)
			kvfs_palloc_destroy(s->nodes[i].pa);
	}
	free(s->nodes);
	kvfs_htable_fini(&s->inos);
	kvfs_htable_fini(&s->names);
	kvfs_htable_fini(&s->leases);
	if (s->env)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
