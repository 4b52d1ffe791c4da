/* SPDX-License-Identifier: MIT */
/*
 * fs.c - the FUSE lowlevel operations of kvfs.
 *
 * Handlers are thin and named after the operation; errors cross into FUSE in one place each,
 * as fuse_reply_err(req, -r). Namespace operations go straight to the metadata ops table. File
 * data is served from the node's arena: a read builds an iovec that points into the arena
 * (holes point at a shared zero buffer) and replies with fuse_reply_iov, with the pages pinned
 * until the reply has been copied out, so a concurrent truncate or unlink cannot hand them to a
 * new writer while the kernel still reads them. Pages on other nodes are fetched through the
 * transfer engine into a bounce buffer.
 *
 * Writes go to pages of the file: a page already there is overwritten in place, a missing one
 * is allocated from the metadata service (preferring this node), zero-filled where the write
 * does not cover it, and recorded as pending. flush, fsync and release commit the pending pages
 * and the size in one metadata call (confirm-write); that is what makes close-to-open work.
 *
 * Page cache policy: opens for writing and O_DIRECT opens use direct I/O (no page cache, no
 * read-modify-write, 1 MiB requests straight into the arena). Read-only opens use the page
 * cache and keep it across opens while the file is unchanged (same metadata version and no
 * local write since), so warm re-reads never reach the daemon; any change drops it at the next
 * open.
 *
 * Known departure from STYLE rule 10: the per-inode lock is held across metadata calls that
 * change the file (alloc, commit, truncate). In embedded mode these are in-process calls; they
 * serialise only operations on that one file, which would have to wait for each other anyway.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "fs_i.h"
#include "pool.h"
#include "xfer.h"

#define CTR(fs, name)	     atomic_fetch_add_explicit(&(fs)->ctr.name, 1, memory_order_relaxed)
#define CTR_ADD(fs, name, n) atomic_fetch_add_explicit(&(fs)->ctr.name, (n), memory_order_relaxed)

static inline struct kvfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/*
 * An inode-based operation on an inode the metadata no longer knows: its name was replaced or
 * removed between the kernel's lookup and this call. ESTALE makes the VFS walk the path again
 * with LOOKUP_REVAL (open, stat), where ENOENT would fail a name that exists.
 */
static int stale(int r)
{
	return r == -ENOENT ? -ESTALE : r;
}

static bool is_synthetic(fuse_ino_t ino)
{
	return ino == FS_CTLDIR_INO || ino == FS_STATS_INO || ino == FS_CTL_INO;
}

/* ------------------------------------------------------------------------------------------ */
/* Inode table: the inodes the kernel holds a lookup count on, plus those in use. */

static size_t ihash(uint64_t ino, size_t cap)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static int itable_grow(struct kvfs_fs *fs)
{
	size_t ncap = fs->itable_cap ? fs->itable_cap * 2 : 1024;
	struct fs_inode **n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < fs->itable_cap; i++) {
		struct fs_inode *in = fs->itable[i], *next;

		for (; in; in = next) {
			size_t h = ihash(in->ino, ncap);

			next = in->hnext;
			in->hnext = n[h];
			n[h] = in;
		}
	}
	free(fs->itable);
	fs->itable = n;
	fs->itable_cap = ncap;
	return 0;
}

static void inode_free(struct fs_inode *in)
{
	if (in->st) {
		pthread_rwlock_destroy(&in->st->lock);
		free(in->st);
	}
	free(in);
}

/*
 * The per-open state of @in (which the caller holds a reference on), created on first use.
 * Returns NULL only without memory.
 */
static struct fs_istate *inode_state(struct kvfs_fs *fs, struct fs_inode *in)
{
	struct fs_istate *st;

	pthread_mutex_lock(&fs->itable_lock);
	st = in->st;
	if (!st) {
		st = calloc(1, sizeof(*st));
		if (st) {
			pthread_rwlock_init(&st->lock, NULL);
			in->st = st;
		}
	}
	pthread_mutex_unlock(&fs->itable_lock);
	return st;
}

/*
 * Find or add @ino and take a reference; with @lookup also count one kernel lookup.
 * Returns NULL only without memory.
 */
static struct fs_inode *inode_get(struct kvfs_fs *fs, uint64_t ino, bool lookup)
{
	struct fs_inode *in;
	size_t h;

	pthread_mutex_lock(&fs->itable_lock);
	if (fs->itable_cap) {
		for (in = fs->itable[ihash(ino, fs->itable_cap)]; in; in = in->hnext)
			if (in->ino == ino)
				goto found;
	}
	if ((fs->itable_count + 1) * 2 > fs->itable_cap && itable_grow(fs) < 0)
		goto err_unlock;
	in = calloc(1, sizeof(*in));
	if (!in)
		goto err_unlock;
	in->ino = ino;
	h = ihash(ino, fs->itable_cap);
	in->hnext = fs->itable[h];
	fs->itable[h] = in;
	fs->itable_count++;
found:
	in->refs++;
	if (lookup)
		in->nlookup++;
	pthread_mutex_unlock(&fs->itable_lock);
	return in;

err_unlock:
	pthread_mutex_unlock(&fs->itable_lock);
	return NULL;
}

/* Look up without adding; takes a reference. */
static struct fs_inode *inode_find(struct kvfs_fs *fs, uint64_t ino)
{
	struct fs_inode *in = NULL;

	pthread_mutex_lock(&fs->itable_lock);
	if (fs->itable_cap) {
		for (in = fs->itable[ihash(ino, fs->itable_cap)]; in; in = in->hnext)
			if (in->ino == ino)
				break;
	}
	if (in)
		in->refs++;
	pthread_mutex_unlock(&fs->itable_lock);
	return in;
}

/* Drop a reference and @nlookup kernel lookups; free when nothing holds the inode. */
static void inode_put(struct kvfs_fs *fs, struct fs_inode *in, uint64_t nlookup)
{
	struct fs_istate *idle = NULL;
	struct fs_inode **pp;
	uint64_t hold = 0;
	bool dead;

	if (!in)
		return;
	pthread_mutex_lock(&fs->itable_lock);
	if (in->refs)
		in->refs--;
	in->nlookup = nlookup > in->nlookup ? 0 : (uint32_t)(in->nlookup - nlookup);
	/* in->st->open is only set while a handle holds a reference, so refs == 0 implies closed */
	dead = in->refs == 0 && in->nlookup == 0;
	if (!dead && in->refs == 0 && in->st && !in->st->cache_valid && !in->st->push_queued) {
		/* nobody holds the state (refs 0, and finders take refs under this lock) and it
		 * caches nothing: give the memory back; the next open makes a fresh one */
		idle = in->st;
		in->st = NULL;
	}
	if (dead) {
		for (pp = &fs->itable[ihash(in->ino, fs->itable_cap)]; *pp; pp = &(*pp)->hnext) {
			if (*pp == in) {
				*pp = in->hnext;
				break;
			}
		}
		fs->itable_count--;
		hold = in->hold_lease;
	}
	pthread_mutex_unlock(&fs->itable_lock);
	if (idle) {
		pthread_rwlock_destroy(&idle->lock);
		free(idle);
	}
	if (hold)
		fs->meta->ops->close(fs->meta, in->ino, hold);
	if (dead)
		inode_free(in);
}

/* ------------------------------------------------------------------------------------------ */
/* Attributes */

/* Floor division: a time before 1970 has a negative second and a nanosecond in [0, 1e9). */
static void ns_to_ts(int64_t ns, struct timespec *ts)
{
	int64_t sec = ns / 1000000000ll, nsec = ns % 1000000000ll;

	if (nsec < 0) {
		sec--;
		nsec += 1000000000ll;
	}
	ts->tv_sec = sec;
	ts->tv_nsec = nsec;
}

/* Times are kept in 64-bit nanoseconds (years 1678 to 2262): later or earlier ones saturate. */
static int64_t ts_to_ns(const struct timespec *ts)
{
	int64_t ns;

	if (__builtin_mul_overflow((int64_t)ts->tv_sec, 1000000000ll, &ns) ||
	    __builtin_add_overflow(ns, (int64_t)ts->tv_nsec, &ns))
		return ts->tv_sec < 0 ? INT64_MIN : INT64_MAX;
	return ns;
}

static void attr_to_stat(const struct kvfs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink; /* 0 for a file unlinked while open (an orphan) */
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = a->page_size ? a->page_size : 4096;
	ns_to_ts(a->atime_ns, &st->st_atim);
	ns_to_ts(a->mtime_ns, &st->st_mtim);
	ns_to_ts(a->ctime_ns, &st->st_ctim);
}

/*
 * Attributes read from the metadata may be older than what this node knows: a file open here
 * may hold writes the metadata has not seen yet, and a commit or truncate made here may have
 * landed between the metadata read and this reply (a reader's RELEASE commits the writer's
 * pages while a GETATTR is in flight). Show the newer of the two.
 */
static void overlay_open(struct kvfs_fs *fs, struct kvfs_attr *a)
{
	struct fs_inode *in;

	if (!S_ISREG(a->mode))
		return;
	in = inode_find(fs, a->ino);
	if (!in)
		return;
	if (!in->st) {
		inode_put(fs, in, 0); /* never opened here: nothing to add */
		return;
	}
	pthread_rwlock_rdlock(&in->st->lock);
	if (in->st->last.ino == a->ino && in->st->last.version > a->version)
		*a = in->st->last;
	if (in->st->open && in->st->open->dirty) {
		a->size = in->st->open->size;
		a->blocks = (uint64_t)in->st->open->pages.count * in->st->open->page_size / 512;
		if (in->st->open->mtime_ns > a->mtime_ns)
			a->mtime_ns = a->ctime_ns = in->st->open->mtime_ns;
	}
	pthread_rwlock_unlock(&in->st->lock);
	inode_put(fs, in, 0);
}

static int64_t start_ns;

static void synthetic_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = ino == FS_CTLDIR_INO ? 2 : 1;
	st->st_mode = ino == FS_CTLDIR_INO  ? S_IFDIR | 0555
		      : ino == FS_STATS_INO ? S_IFREG | 0444
					    : S_IFREG | 0600;
	st->st_blksize = 4096;
	ns_to_ts(start_ns, &st->st_atim);
	st->st_mtim = st->st_ctim = st->st_atim;
}

static void fill_entry(struct kvfs_fs *fs, const struct kvfs_attr *a, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = 1;
	e->attr_timeout = fs->attr_timeout;
	e->entry_timeout = fs->entry_timeout;
	attr_to_stat(a, &e->attr);
}

/* Reply to a successful lookup/create/mkdir: count the kernel's new reference first. */
static void reply_entry(fuse_req_t req, struct kvfs_attr *a)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct fs_inode *in;

	overlay_open(fs, a);
	fill_entry(fs, a, &e);
	in = inode_get(fs, a->ino, true);
	if (!in) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	inode_put(fs, in, 0);
	if (fuse_reply_entry(req, &e) != 0)
		inode_put(fs, inode_find(fs, a->ino), 1);
}

static void kvfs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct kvfs_fs *fs = userdata;

	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* Page-cache consistency is ours to manage (keep_cache per open), not the kernel's
	 * mtime heuristic, which would drop warm pages on every attribute refresh. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* O_TRUNC arrives inside OPEN and is done there (open_file), one round trip instead of an
	 * OPEN and a SETATTR; set-id bits are ours to clear on write, truncate and chown (the
	 * kernel cannot for direct-I/O writes). Both are libfuse defaults: asked for here so they
	 * stay on whatever the default becomes. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_HANDLE_KILLPRIV)
		conn->want |= FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->max_readahead = 4u << 20;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	atomic_store(&fs->inited, true);
}

static void kvfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_attr a;
	int r;

	CTR(fs, lookups);
	if ((parent == KVFS_ROOT_INO && !strcmp(name, FS_CTLDIR_NAME)) ||
	    (parent == FS_CTLDIR_INO && (!strcmp(name, "stats") || !strcmp(name, "ctl")))) {
		struct fuse_entry_param e = {0};

		e.ino = parent == KVFS_ROOT_INO	 ? FS_CTLDIR_INO
			: !strcmp(name, "stats") ? FS_STATS_INO
						 : FS_CTL_INO;
		e.generation = 1;
		synthetic_attr(e.ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (parent == FS_CTLDIR_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strlen(name) > KVFS_NAME_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	r = fs->meta->ops->lookup(fs->meta, parent, name, &a);
	if (r == -ENOENT) {
		/* a negative entry: the kernel remembers the miss until a create here */
		struct fuse_entry_param e = {0};

		e.entry_timeout = fs->entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	reply_entry(req, &a);
}

static void kvfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct kvfs_fs *fs = fs_of(req);

	if (!is_synthetic(ino) && ino != KVFS_ROOT_INO)
		inode_put(fs, inode_find(fs, ino), nlookup);
	fuse_reply_none(req);
}

static void kvfs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct kvfs_fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++) {
		fuse_ino_t ino = forgets[i].ino;

		if (!is_synthetic(ino) && ino != KVFS_ROOT_INO)
			inode_put(fs, inode_find(fs, ino), forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

static void kvfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_attr a;
	struct stat st;
	int r;

	CTR(fs, getattrs);
	if (is_synthetic(ino)) {
		synthetic_attr(ino, &st);
		fuse_reply_attr(req, &st, 1.0);
		return;
	}
	r = fs->meta->ops->getattr(fs->meta, ino, &a);
	if (r < 0) {
		fuse_reply_err(req, -stale(r));
		return;
	}
	overlay_open(fs, &a);
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

/* ------------------------------------------------------------------------------------------ */
/* Open-file state */

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

static struct fs_open *open_create(struct kvfs_fs *fs, const struct kvfs_layout *l)
{
	struct fs_open *o = calloc(1, sizeof(*o));
	struct kvfs_pool_attr pa;

	if (!o)
		return NULL;
	fs_pagemap_init(&o->pages);
	pthread_mutex_init(&o->ra_lock, NULL);
	for (size_t i = 0; i < l->npages; i++) {
		if (!fs_pagemap_put(&o->pages, l->pages[i].index, &l->pages[i].ref, false)) {
			fs_pagemap_fini(&o->pages);
			free(o);
			return NULL;
		}
	}
	o->size = o->committed_size = l->attr.size;
	o->page_size = l->attr.page_size ? l->attr.page_size : (1u << 20);
	o->pool = l->attr.pool;
	o->lost = l->attr.flags & KVFS_ATTR_LOST;
	o->mtime_ns = l->attr.mtime_ns;
	o->max_file_size = UINT64_MAX;
	o->version = l->attr.version;
	o->mode = l->attr.mode;
	if (fs->meta->ops->pool_get(fs->meta, o->pool, &pa) == 0) {
		if (pa.max_file_size)
			o->max_file_size = pa.max_file_size;
		for (size_t i = 0; fs->hitcache && i < fs->nhit_pools; i++)
			if (!strcmp(fs->hit_pools[i], pa.name))
				o->cache_hits = true;
	}
	return o;
}

static void ra_put(struct fs_ra *ra)
{
	if (ra && atomic_fetch_sub(&ra->refs, 1) == 1) {
		free(ra->data);
		free(ra->valid);
		free(ra);
	}
}

/* The current window if it is still valid for @gen, with a reference; else NULL. */
static struct fs_ra *ra_get(struct fs_open *o, uint64_t gen)
{
	struct fs_ra *ra;

	pthread_mutex_lock(&o->ra_lock);
	ra = o->ra;
	if (ra && ra->gen == gen)
		atomic_fetch_add(&ra->refs, 1);
	else
		ra = NULL;
	pthread_mutex_unlock(&o->ra_lock);
	return ra;
}

static bool ra_has(const struct fs_ra *ra, uint64_t idx)
{
	return ra && idx >= ra->first && idx < ra->first + ra->npages && ra->valid[idx - ra->first];
}

struct pending_vec {
	struct kvfs_page_entry *v;
	size_t n;
};

static void collect_pending(void *ctx, struct fs_page *p)
{
	struct pending_vec *pv = ctx;

	if (p->pending) {
		pv->v[pv->n].index = p->index;
		pv->v[pv->n].ref = p->ref;
		pv->n++;
	}
}

static void mark_committed(void *ctx, struct fs_page *p)
{
	struct fs_pagemap *pm = ctx;

	if (p->pending) {
		p->pending = false;
		pm->npending--;
	}
}

/*
 * Commit what this node wrote to @in since the last commit. Caller holds in->st->lock for writing.
 */
static int commit_locked(struct kvfs_fs *fs, struct fs_inode *in)
{
	struct fs_open *o = in->st->open;
	struct pending_vec pv = {0};
	struct kvfs_attr a;
	int r;

	if (!o || !o->dirty)
		return 0;
	if (o->pages.npending) {
		pv.v = malloc(o->pages.npending * sizeof(*pv.v));
		if (!pv.v)
			return -ENOMEM;
		fs_pagemap_each(&o->pages, collect_pending, &pv);
	}
	r = fs->meta->ops->commit(fs->meta, in->ino, o->size, o->mtime_ns, pv.v, pv.n, &a);
	free(pv.v);
	if (r < 0)
		return r;
	in->st->last = a;
	fs_pagemap_each(&o->pages, mark_committed, &o->pages);
	o->dirty = false;
	o->committed_size = o->size;
	CTR(fs, commits);
	return 0;
}

struct abort_ctx {
	struct kvfs_fs *fs;
	uint64_t ino;
};

static void abort_page(void *ctx, const struct fs_page *p)
{
	struct abort_ctx *ac = ctx;

	if (p->pending)
		ac->fs->meta->ops->abort(ac->fs->meta, ac->ino, &p->ref, 1);
}

static void open_destroy(struct kvfs_fs *fs, struct fs_inode *in)
{
	struct abort_ctx ac = {fs, in->ino};

	if (!in->st->open)
		return;
	/* pages that never made it into a commit go back to the free space */
	fs_pagemap_drop_from(&in->st->open->pages, 0, abort_page, &ac);
	fs_pagemap_fini(&in->st->open->pages);
	ra_put(in->st->open->ra);
	pthread_mutex_destroy(&in->st->open->ra_lock);
	free(in->st->open);
	in->st->open = NULL;
}

/*
 * The mode a regular file keeps after a write or truncate by @uid: as on a local file system,
 * S_ISUID goes, and S_ISGID where group-execute is set (without it S_ISGID marks mandatory
 * locking and stays), unless the caller may keep them (CAP_FSETID; here: root). kvfs negotiates
 * FUSE_CAP_HANDLE_KILLPRIV, so the kernel leaves this to us on truncate and chown, and its
 * direct-I/O writes never do it at all.
 */
static uint32_t strip_setid(uint32_t mode)
{
	if (!S_ISREG(mode))
		return mode;
	mode &= ~(uint32_t)S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		mode &= ~(uint32_t)S_ISGID;
	return mode;
}

static uint32_t killpriv_mode(uint32_t mode, uid_t uid)
{
	return uid == 0 ? mode : strip_setid(mode);
}

/* Clear the set-id bits of @in (open here) if a write by @uid must. Caller holds the lock. */
static int killpriv_locked(struct kvfs_fs *fs, struct fs_inode *in, uid_t uid)
{
	struct fs_open *o = in->st->open;
	struct kvfs_attr want = {0}, a;
	int r;

	want.mode = killpriv_mode(o->mode, uid);
	if (want.mode == o->mode)
		return 0;
	r = fs->meta->ops->setattr(fs->meta, in->ino, &want, KVFS_SET_MODE, &a);
	if (r == 0)
		o->mode = a.mode;
	return r;
}

static int zero_page_range(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t from,
			   uint64_t to);

enum {
	TRUNC_TIMES = 1 << 0, /* O_TRUNC, ftruncate: mtime and ctime change even at the same size */
};

/*
 * Set the size of @in, open here, to @size on behalf of @uid: commit pending pages first, let
 * the metadata free the pages beyond the size, drop them from the local map, and zero the rest
 * of the last page, wherever it lives, so that no later extension (truncate up, a write or
 * fallocate past the end) reads the cut-off bytes. Set-id bits go as killpriv_mode() says.
 * Caller holds in->st->lock for writing.
 */
static int truncate_locked(struct kvfs_fs *fs, struct fs_inode *in, uint64_t size, unsigned how,
			   uid_t uid, struct kvfs_attr *ret_attr)
{
	struct fs_open *o = in->st->open;
	struct kvfs_attr want = {0};
	unsigned valid = KVFS_SET_SIZE;
	uint64_t P = o->page_size;
	struct fs_page *p;
	int r;

	if (size > o->max_file_size)
		return -EFBIG;
	r = commit_locked(fs, in);
	if (r < 0)
		return r;
	want.size = size;
	if (how & TRUNC_TIMES) {
		want.mtime_ns = want.ctime_ns = now_ns();
		valid |= KVFS_SET_MTIME | KVFS_SET_CTIME;
	}
	want.mode = killpriv_mode(o->mode, uid);
	if (want.mode != o->mode)
		valid |= KVFS_SET_MODE;
	r = fs->meta->ops->setattr(fs->meta, in->ino, &want, valid, ret_attr);
	if (r < 0)
		return r;
	in->st->last = *ret_attr;
	in->st->content_gen++;
	CTR(fs, truncates);
	if (atomic_load(&o->has_hits))
		fs_hitcache_drop_ino(fs->hitcache, in->ino);
	fs_pagemap_drop_from(&o->pages, div_up(size, P), NULL, NULL);
	o->size = o->committed_size = size;
	o->mtime_ns = ret_attr->mtime_ns;
	o->mode = ret_attr->mode;
	/* after the metadata call: the page stays this file's (below the size, and leased), and a
	 * failed truncate has not touched the data */
	p = size % P ? fs_pagemap_find(&o->pages, size / P) : NULL;
	if (p)
		r = zero_page_range(fs, &p->ref, size % P, P);
	return r;
}

/*
 * Truncate @in, which may not be open here: a path truncate(2) of a closed file still needs the
 * page map to zero the tail of its last page, so it opens the file for the duration (a lease,
 * which also keeps that page from being freed under us).
 */
static int truncate_inode(struct kvfs_fs *fs, struct fs_inode *in, uint64_t size, unsigned how,
			  uid_t uid, struct kvfs_attr *ret_attr)
{
	struct kvfs_layout *l = NULL;
	uint64_t lease = 0;
	int r, r2;

	pthread_rwlock_wrlock(&in->st->lock);
	if (in->st->open) {
		r = truncate_locked(fs, in, size, how, uid, ret_attr);
		goto out;
	}
	r = fs->meta->ops->open(fs->meta, in->ino, fs->node, &lease, &l);
	if (r < 0)
		goto out;
	in->st->open = S_ISREG(l->attr.mode) ? open_create(fs, l) : NULL;
	if (!in->st->open) {
		r = S_ISREG(l->attr.mode) ? -ENOMEM : -EISDIR;
		goto out_close;
	}
	r = truncate_locked(fs, in, size, how, uid, ret_attr);
	open_destroy(fs, in);
out_close:
	kvfs_layout_free(l);
	r2 = fs->meta->ops->close(fs->meta, in->ino, lease);
	if (r == 0)
		r = r2;
out:
	pthread_rwlock_unlock(&in->st->lock);
	return r;
}

/*
 * chmod, chown, utimens and truncate. A truncate goes through the file's open state (set up for
 * the call if the file is not open here); the other changes commit this node's pending writes
 * first, so that an explicit mtime is not overwritten by a later commit of older writes.
 */
static void kvfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kvfs_attr want = {0}, a;
	struct fs_inode *in;
	unsigned valid = 0;
	struct stat st;
	int r = 0;

	if (is_synthetic(ino)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		want.mode = attr->st_mode;
		valid |= KVFS_SET_MODE;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		want.uid = attr->st_uid;
		valid |= KVFS_SET_UID;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		want.gid = attr->st_gid;
		valid |= KVFS_SET_GID;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		want.atime_ns =
			(to_set & FUSE_SET_ATTR_ATIME_NOW) ? now_ns() : ts_to_ns(&attr->st_atim);
		valid |= KVFS_SET_ATIME;
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		want.mtime_ns =
			(to_set & FUSE_SET_ATTR_MTIME_NOW) ? now_ns() : ts_to_ns(&attr->st_mtim);
		valid |= KVFS_SET_MTIME;
	}

	if (to_set & FUSE_SET_ATTR_SIZE) {
		in = inode_get(fs, ino, false);
		if (!in || !inode_state(fs, in)) {
			inode_put(fs, in, 0);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		/* ftruncate(2) (a file handle) changes mtime and ctime even at the same size, as
		 * on a local file system; the kernel does not send MTIME with it, so say it here */
		r = truncate_inode(fs, in, (uint64_t)attr->st_size, fi ? TRUNC_TIMES : 0, ctx->uid,
				   &a);
		inode_put(fs, in, 0);
		if (r < 0)
			goto out;
	}
	if (!valid) {
		if (!(to_set & FUSE_SET_ATTR_SIZE))
			r = fs->meta->ops->getattr(fs->meta, ino, &a);
		goto reply;
	}

	in = inode_find(fs, ino);
	if (in && !in->st) {
		inode_put(fs, in, 0);
		in = NULL;
	}
	if (in) {
		pthread_rwlock_wrlock(&in->st->lock);
		r = commit_locked(fs, in);
	}
	/* chown of a regular file clears its set-id bits, whoever calls (chown(2), Linux) */
	if (r == 0 && (valid & (KVFS_SET_UID | KVFS_SET_GID)) && !(valid & KVFS_SET_MODE)) {
		r = fs->meta->ops->getattr(fs->meta, ino, &a);
		if (r == 0 && strip_setid(a.mode) != a.mode) {
			want.mode = strip_setid(a.mode);
			valid |= KVFS_SET_MODE;
		}
	}
	if (r == 0)
		r = fs->meta->ops->setattr(fs->meta, ino, &want, valid, &a);
	if (in) {
		if (r == 0 && in->st->open) {
			if (valid & KVFS_SET_MTIME)
				in->st->open->mtime_ns = want.mtime_ns;
			in->st->open->mode = a.mode;
		}
		pthread_rwlock_unlock(&in->st->lock);
		inode_put(fs, in, 0);
	}
reply:
	if (r < 0)
		goto out;
	overlay_open(fs, &a);
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fs->attr_timeout);
	return;
out:
	fuse_reply_err(req, -stale(r));
}

/* ------------------------------------------------------------------------------------------ */
/* Namespace */

static int check_name(fuse_ino_t parent, const char *name)
{
	if (strlen(name) > KVFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (parent == FS_CTLDIR_INO || (parent == KVFS_ROOT_INO && !strcmp(name, FS_CTLDIR_NAME)))
		return -EPERM;
	return 0;
}

static void kvfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kvfs_attr a;
	int r;

	CTR(fs, mkdirs);
	r = check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->mkdir(fs->meta, parent, name,
					 (mode & ~ctx->umask & 07777) | S_IFDIR, ctx->uid, ctx->gid,
					 &a);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	reply_entry(req, &a);
}

static void kvfs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kvfs_attr a;
	int r;

	(void)rdev;
	/* only regular files and directories live in a pool */
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	CTR(fs, creates);
	r = check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->create(fs->meta, parent, name,
					  (mode & ~ctx->umask & 07777) | S_IFREG, ctx->uid,
					  ctx->gid, true, &a);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	reply_entry(req, &a);
}

/*
 * A rename over a file, or an unlink, removes an inode the kernel may still hold lookups on:
 * a process that resolved the name just before may be about to open or stat it, and on a local
 * file system that open would succeed on the inode it resolved. So before removing the name,
 * take a lease on the doomed file if the kernel knows it; the metadata then keeps it as an
 * orphan (openable, pages intact) until the kernel forgets the inode, where inode_put() drops
 * the lease. Without this, HiCacheFile readers racing a rename-over saw ESTALE/ENOENT for a
 * key that was published all along. Returns the inode (referenced) and the lease, or NULL.
 */
static struct fs_inode *hold_target(struct kvfs_fs *fs, fuse_ino_t parent, const char *name,
				    uint64_t *ret_lease)
{
	struct kvfs_layout *l = NULL;
	struct fs_inode *in;
	struct kvfs_attr a;
	bool known;

	if (fs->meta->ops->lookup(fs->meta, parent, name, &a) < 0 || !S_ISREG(a.mode))
		return NULL;
	in = inode_find(fs, a.ino);
	if (!in)
		return NULL;
	pthread_mutex_lock(&fs->itable_lock);
	known = in->nlookup > 0 && !in->hold_lease;
	pthread_mutex_unlock(&fs->itable_lock);
	if (!known || fs->meta->ops->open(fs->meta, a.ino, fs->node, ret_lease, &l) < 0) {
		inode_put(fs, in, 0);
		return NULL;
	}
	kvfs_layout_free(l);
	return in;
}

/* After the name operation: keep the lease if the target went, else give it back. */
static void hold_settle(struct kvfs_fs *fs, struct fs_inode *in, uint64_t lease, bool removed)
{
	if (!in)
		return;
	if (removed) {
		pthread_mutex_lock(&fs->itable_lock);
		if (!in->hold_lease) {
			in->hold_lease = lease;
			lease = 0;
		}
		pthread_mutex_unlock(&fs->itable_lock);
	}
	if (lease)
		fs->meta->ops->close(fs->meta, in->ino, lease);
	inode_put(fs, in, 0);
}

static void kvfs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_inode *held = NULL;
	uint64_t lease = 0;
	int r;

	CTR(fs, unlinks);
	r = check_name(parent, name);
	if (r == 0) {
		held = hold_target(fs, parent, name, &lease);
		r = fs->meta->ops->unlink(fs->meta, parent, name);
		hold_settle(fs, held, lease, r == 0);
	}
	fuse_reply_err(req, -r);
}

static void kvfs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	int r;

	CTR(fs, rmdirs);
	r = check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->rmdir(fs->meta, parent, name);
	fuse_reply_err(req, -r);
}

static void kvfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
			const char *newname, unsigned int flags)
{
	struct kvfs_fs *fs = fs_of(req);
	unsigned kflags = 0;
	int r;

	CTR(fs, renames);
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		kflags |= KVFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		kflags |= KVFS_RENAME_EXCHANGE;
	r = check_name(parent, name);
	if (r == 0)
		r = check_name(newparent, newname);
	if (r == 0) {
		struct fs_inode *held = NULL;
		uint64_t lease = 0;

		if (!kflags)
			held = hold_target(fs, newparent, newname, &lease);
		r = fs->meta->ops->rename(fs->meta, parent, name, newparent, newname, kflags);
		hold_settle(fs, held, lease, r == 0);
	}
	fuse_reply_err(req, -r);
}

/* Hard links and symlinks: a page pool holds regular files and directories only. */
static void kvfs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static void kvfs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

/* ------------------------------------------------------------------------------------------ */
/* Open, read, write, commit */

/*
 * Handles live until the kernel's RELEASE; files still open when the file system is unmounted
 * never get one, so every handle is also on fs->handles and teardown frees what is left.
 */
static struct fs_handle *handle_new(struct kvfs_fs *fs, enum fs_handle_kind kind)
{
	struct fs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->kind = kind;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles;
	if (h->next)
		h->next->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->handles_lock);
	return h;
}

static void handle_free(struct kvfs_fs *fs, struct fs_handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h);
}

/*
 * Take a lease on @ino and set up (or join) its open state; decides the page-cache policy of
 * this open in @fi. With @trunc (O_TRUNC) the file is truncated here, in the open (kvfs
 * negotiates atomic O_TRUNC, so no SETATTR follows), on behalf of @uid. Returns 0 with *ret_h,
 * or a negative errno.
 */
static int open_file(struct kvfs_fs *fs, fuse_ino_t ino, struct fuse_file_info *fi, bool trunc,
		     uid_t uid, struct fs_handle **ret_h)
{
	struct kvfs_layout *l = NULL;
	struct fs_handle *h;
	struct fs_inode *in;
	bool inval_attrs;
	uint64_t lease, version;
	int r;

	h = handle_new(fs, FS_H_FILE);
	if (!h)
		return -ENOMEM;
	in = inode_get(fs, ino, false);
	if (!in) {
		r = -ENOMEM;
		goto err_free_handle;
	}
	if (!inode_state(fs, in)) {
		r = -ENOMEM;
		goto err_put_inode;
	}
	r = stale(fs->meta->ops->open(fs->meta, ino, fs->node, &lease, &l));
	if (r < 0)
		goto err_put_inode;
	if (!S_ISREG(l->attr.mode)) {
		r = -EISDIR;
		goto err_close;
	}

	pthread_rwlock_wrlock(&in->st->lock);
	if (!in->st->open) {
		in->st->open = open_create(fs, l);
		if (!in->st->open) {
			pthread_rwlock_unlock(&in->st->lock);
			r = -ENOMEM;
			goto err_close;
		}
	}
	in->st->open->nopen++;
	version = l->attr.version;
	if (trunc) {
		struct kvfs_attr ta;

		r = truncate_locked(fs, in, 0, TRUNC_TIMES, uid, &ta);
		if (r < 0) {
			if (--in->st->open->nopen == 0)
				open_destroy(fs, in);
			pthread_rwlock_unlock(&in->st->lock);
			goto err_close;
		}
		version = ta.version;
	}
	/* another node may have changed size and times behind this kernel's attribute cache */
	inval_attrs = fs->palloc == NULL && l->attr.version != in->st->seen_version;
	in->st->seen_version = version;
	if ((fi->flags & O_DIRECT) || (fi->flags & O_ACCMODE) != O_RDONLY ||
	    fs->cache_mode == FS_CACHE_DIRECT) {
		fi->direct_io = 1;
		/*
		 * Write handles commit at FLUSH, before close() returns. Committing at the
		 * asynchronous RELEASE instead saved a round trip but let a reader of the renamed
		 * file read the metadata before the commit and miss the open state after it:
		 * HiCacheFile readers saw size 0 for a published key.
		 */
	} else {
		bool warm = in->st->cache_valid && in->st->cached_version == version &&
			    in->st->cached_gen == in->st->content_gen;

		/* nothing to commit from a read-only handle: spare close() its FLUSH round trip */
		fi->noflush = 1;
		if (warm || fs->cache_mode == FS_CACHE_PAGE) {
			fi->keep_cache = warm;
			in->st->cache_valid = true;
			in->st->cached_version = version;
			in->st->cached_gen = in->st->content_gen;
		} else {
			/* cold under auto: read directly, push into the page cache at release */
			fi->direct_io = 1;
			h->push_on_release = true;
		}
	}
	pthread_rwlock_unlock(&in->st->lock);
	/* close-to-open: attributes only (offset -1), which takes no lock the kernel holds here;
	 * a read past the stale cached size then fetches the new one */
	if (inval_attrs && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);

	kvfs_layout_free(l);
	h->inode = in;
	h->lease = lease;
	h->flags = fi->flags;
	*ret_h = h;
	CTR(fs, opens);
	return 0;

err_close:
	fs->meta->ops->close(fs->meta, ino, lease);
	kvfs_layout_free(l);
err_put_inode:
	inode_put(fs, in, 0);
err_free_handle:
	handle_free(fs, h);
	return r;
}

static void kvfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h;
	int r;

	if (ino == FS_STATS_INO && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	if (ino == FS_STATS_INO || ino == FS_CTL_INO) {
		h = handle_new(fs, ino == FS_STATS_INO ? FS_H_STATS : FS_H_CTL);
		if (!h) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		if (ino == FS_STATS_INO) {
			r = kvfs_fs_stats_json(fs, &h->buf, &h->len);
			if (r < 0) {
				handle_free(fs, h);
				fuse_reply_err(req, -r);
				return;
			}
		}
		fi->direct_io = 1;
		fi->nonseekable = 0;
		fi->fh = (uintptr_t)h;
		if (fuse_reply_open(req, fi) != 0)
			handle_free(fs, h);
		return;
	}
	if (ino == FS_CTLDIR_INO || ino == KVFS_ROOT_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	r = open_file(fs, ino, fi, fi->flags & O_TRUNC, fuse_req_ctx(req)->uid, &h);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)h;
	if (fuse_reply_open(req, fi) != 0) {
		/* the opener was interrupted: undo as release would */
		struct fuse_file_info dummy = *fi;

		(void)dummy;
		pthread_rwlock_wrlock(&h->inode->st->lock);
		if (--h->inode->st->open->nopen == 0)
			open_destroy(fs, h->inode);
		pthread_rwlock_unlock(&h->inode->st->lock);
		fs->meta->ops->close(fs->meta, ino, h->lease);
		inode_put(fs, h->inode, 0);
		handle_free(fs, h);
	}
}

/* Is the caller of @req one of group @gid? */
static bool in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[64];
	int n;

	if (fuse_req_ctx(req)->gid == gid)
		return true;
	n = fuse_req_getgroups(req, 64, groups);
	for (int i = 0; i < n && i < 64; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* The permission check the kernel makes with default_permissions, for a file it did not. */
static int may_access(fuse_req_t req, const struct kvfs_attr *a, unsigned mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	unsigned bits = a->mode;

	if (ctx->uid == 0)
		return 0;
	if (ctx->uid == a->uid)
		bits >>= 6;
	else if (in_group(req, a->gid))
		bits >>= 3;
	return (bits & mask) == mask ? 0 : -EACCES;
}

static unsigned access_mask(int flags)
{
	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		return (flags & O_TRUNC) ? W_OK | R_OK : R_OK;
	case O_WRONLY:
		return W_OK;
	default:
		return R_OK | W_OK;
	}
}

/*
 * The kernel sends CREATE after a lookup found no name. The name may have appeared since (another
 * process or node): without O_EXCL that is an open of the existing file, permission checks and
 * O_TRUNC included (the kernel skips both for what CREATE returns, believing it new). A new file
 * needs no truncation, which spares a publish's open(O_CREAT|O_TRUNC) a metadata call.
 */
static void kvfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct fs_handle *h;
	struct kvfs_attr a;
	bool existed = false;
	int r;

	CTR(fs, creates);
	r = check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->create(fs->meta, parent, name,
					  (mode & ~ctx->umask & 07777) | S_IFREG, ctx->uid,
					  ctx->gid, true, &a);
	if (r == -EEXIST && !(fi->flags & O_EXCL)) {
		existed = true;
		r = fs->meta->ops->lookup(fs->meta, parent, name, &a);
		if (r == 0 && S_ISDIR(a.mode))
			r = -EISDIR;
		if (r == 0)
			r = may_access(req, &a, access_mask(fi->flags));
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	r = open_file(fs, a.ino, fi, existed && (fi->flags & O_TRUNC), ctx->uid, &h);
	if (r == 0 && existed && (fi->flags & O_TRUNC))
		r = fs->meta->ops->getattr(fs->meta, a.ino, &a);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fill_entry(fs, &a, &e);
	inode_put(fs, inode_get(fs, a.ino, true), 0);
	fi->fh = (uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) != 0) {
		pthread_rwlock_wrlock(&h->inode->st->lock);
		if (--h->inode->st->open->nopen == 0)
			open_destroy(fs, h->inode);
		pthread_rwlock_unlock(&h->inode->st->lock);
		fs->meta->ops->close(fs->meta, a.ino, h->lease);
		inode_put(fs, h->inode, 1);
		handle_free(fs, h);
	}
}

static struct fs_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

static void serve_buffer(fuse_req_t req, struct fs_handle *h, size_t size, off_t off)
{
	pthread_mutex_lock(&h->lock);
	if (!h->buf || (size_t)off >= h->len) {
		pthread_mutex_unlock(&h->lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > h->len - (size_t)off)
		size = h->len - (size_t)off;
	/* fuse_reply_buf copies before returning, so the lock covers no blocking wait */
	fuse_reply_buf(req, h->buf + off, size);
	pthread_mutex_unlock(&h->lock);
}

#define READ_IOV_INLINE 32

struct read_plan {
	uint64_t *op_index; /* page index of each op (for the remote-hit cache) */
	struct iovec *iov;
	size_t niov;
	struct fs_hit **hits; /* remote-hit cache entries the reply points into */
	size_t nhits;
	uint64_t *pins; /* arena offsets of pinned local pages */
	size_t npins;
	char *bounce; /* remote pages */
	struct kvfs_xfer_op *ops;
	size_t nops;
};

static int plan_add_iov(struct read_plan *p, void *base, size_t len)
{
	if (p->niov && (char *)p->iov[p->niov - 1].iov_base + p->iov[p->niov - 1].iov_len == base) {
		p->iov[p->niov - 1].iov_len += len; /* contiguous in memory: one iovec */
		return 0;
	}
	p->iov[p->niov].iov_base = base;
	p->iov[p->niov].iov_len = len;
	p->niov++;
	return 0;
}

/*
 * What a reader or writer sees when moving a page failed: the node holding it is gone
 * (ESTALE, EHOSTUNREACH, ECONNREFUSED), did not answer in time (ETIMEDOUT) or broke the
 * protocol. To a file's user that is the page being unreadable: EIO, as the design promises,
 * never a network errno. ENOMEM stays what it is.
 */
static int xfer_errno(int r)
{
	return r < 0 && r != -ENOMEM ? -EIO : r;
}

/*
 * Run a batch; when a page sits on a node the engine does not know yet (it joined after our
 * last membership update, which comes with heartbeats), refresh the peer table from the
 * metadata service and try once more.
 */
static int xfer_run(struct kvfs_fs *fs, struct kvfs_xfer_op *ops, size_t n)
{
	int r = kvfs_xfer_run(fs->xfer, ops, n, 0);

	if (r == -EHOSTUNREACH && fs->refresh_peers && fs->refresh_peers(fs) == 0)
		r = kvfs_xfer_run(fs->xfer, ops, n, 0);
	return r;
}

static bool is_local(const struct kvfs_fs *fs, const struct kvfs_page_ref *ref)
{
	return ref->node == fs->node && ref->incarnation == fs->incarnation;
}

/*
 * Fetch the remote pages of [@start, @start + window) into a new read-ahead window of @o and
 * install it. Called without in->st->lock; @refs/@idx were collected under it at generation @gen.
 * Returns the window with a reference for the caller, or NULL (the read then falls back to
 * fetching just what it needs).
 */
static struct fs_ra *ra_fetch(struct kvfs_fs *fs, struct fs_open *o, uint64_t start,
			      uint32_t npages, uint32_t P, uint64_t size, uint64_t gen,
			      const uint64_t *idx, const struct kvfs_page_ref *refs, size_t n,
			      int *ret_err)
{
	struct kvfs_xfer_op *ops;
	struct fs_ra *ra, *old;

	ra = calloc(1, sizeof(*ra));
	ops = calloc(n, sizeof(*ops));
	if (!ra || !ops)
		goto err_free;
	ra->valid = calloc(npages, 1);
	ra->data = malloc((size_t)npages * P);
	if (!ra->valid || !ra->data)
		goto err_free;
	ra->first = start;
	ra->npages = npages;
	ra->page_size = P;
	ra->gen = gen;
	atomic_store(&ra->refs, 2); /* o->ra and the caller */
	for (size_t i = 0; i < n; i++) {
		uint64_t pstart = idx[i] * P;

		ops[i].dir = KVFS_XFER_READ;
		ops[i].node = refs[i].node;
		ops[i].incarnation = refs[i].incarnation;
		ops[i].remote_off = refs[i].off;
		ops[i].buf = ra->data + (idx[i] - start) * P;
		ops[i].len = (uint32_t)(size - pstart < P ? size - pstart : P);
	}
	/* one batch: the engine merges pages contiguous on a peer into one transfer */
	*ret_err = xfer_run(fs, ops, n);
	for (size_t i = 0; i < n; i++) {
		ra->valid[idx[i] - start] = ops[i].result == 0;
		/* the last page is fetched up to the size only: the rest of it reads as zeros if
		 * the file grows here later (it must never show what the heap held before) */
		if (ops[i].len < P)
			memset((char *)ops[i].buf + ops[i].len, 0, P - ops[i].len);
	}
	free(ops);
	pthread_mutex_lock(&o->ra_lock);
	old = o->ra;
	o->ra = ra;
	pthread_mutex_unlock(&o->ra_lock);
	ra_put(old);
	CTR(fs, readaheads);
	return ra;

err_free:
	if (ra) {
		free(ra->valid);
		free(ra->data);
	}
	free(ra);
	free(ops);
	return NULL;
}

/*
 * A sequential read (from offset 0, or where the last read ended) that needs a remote page the
 * current window lacks plans a new window: the remote pages of up to FS_RA_BYTES from there.
 * Caller holds in->st->lock. Returns the number of pages to fetch into ret_idx/ret_refs (arrays of
 * at least FS_RA_BYTES / P + 1 entries), 0 when no fetch is needed.
 */
static bool hit_cached(struct kvfs_fs *fs, struct fs_open *o, uint64_t ino, uint64_t idx)
{
	return o->cache_hits && fs_hitcache_has(fs->hitcache, ino, o->version, idx);
}

static size_t ra_plan(struct kvfs_fs *fs, struct fs_open *o, uint64_t ino, const struct fs_ra *cur,
		      uint64_t off, uint64_t end, uint64_t *ret_start, uint32_t *ret_npages,
		      uint64_t *ret_idx, struct kvfs_page_ref *ret_refs)
{
	uint64_t P = o->page_size, start = UINT64_MAX, last_page, w;
	size_t n = 0;

	if (off != 0 && off != atomic_load(&o->next_off))
		return 0;
	for (uint64_t i = off / P; i <= (end - 1) / P; i++) {
		struct fs_page *pg = fs_pagemap_find(&o->pages, i);

		if (pg && !is_local(fs, &pg->ref) && !ra_has(cur, i) &&
		    !hit_cached(fs, o, ino, i)) {
			start = i;
			break;
		}
	}
	if (start == UINT64_MAX)
		return 0;
	w = FS_RA_BYTES / P ? FS_RA_BYTES / P : 1;
	last_page = (o->size - 1) / P;
	if (start + w - 1 > last_page)
		w = last_page - start + 1;
	for (uint64_t i = start; i < start + w; i++) {
		struct fs_page *pg = fs_pagemap_find(&o->pages, i);

		if (pg && !is_local(fs, &pg->ref) && !hit_cached(fs, o, ino, i)) {
			ret_idx[n] = i;
			ret_refs[n] = pg->ref;
			n++;
		}
	}
	*ret_start = start;
	*ret_npages = (uint32_t)w;
	return n;
}

/* Point the reply at a cached copy of remote page @idx if there is one covering the range. */
static bool hit_serve(struct kvfs_fs *fs, struct read_plan *p, uint64_t ino, uint64_t version,
		      uint64_t idx, uint64_t in_page, uint64_t n)
{
	struct fs_hit *ref;
	uint32_t len;
	const char *d = fs_hitcache_get(fs->hitcache, ino, version, idx, &len, &ref);

	if (!d)
		return false;
	if (in_page + n > len) {
		fs_hitcache_release(ref);
		return false;
	}
	p->hits[p->nhits++] = ref;
	plan_add_iov(p, (void *)(d + in_page), n);
	return true;
}

/* After a reply: keep copies of whole remote pages this read fetched (window or bounce). */
static void hit_keep(struct kvfs_fs *fs, const struct read_plan *p, const struct fs_ra *ra,
		     uint64_t ino, uint64_t version, uint64_t P, uint64_t fsize)
{
	if (ra) {
		for (uint32_t i = 0; i < ra->npages; i++) {
			uint64_t idx = ra->first + i, start = idx * P;

			if (ra->valid[i] && start < fsize)
				fs_hitcache_put(fs->hitcache, ino, version, idx, ra->data + i * P,
						(uint32_t)(fsize - start < P ? fsize - start : P));
		}
	}
	for (size_t i = 0; i < p->nops; i++) {
		const struct kvfs_xfer_op *op = &p->ops[i];
		uint64_t in_page = op->remote_off % P, idx, full;

		/* only whole pages: the op read from the page's start to its end (or EOF) */
		if (op->result || in_page || !p->op_index)
			continue;
		idx = p->op_index[i];
		full = fsize - idx * P < P ? fsize - idx * P : P;
		if (op->len == full)
			fs_hitcache_put(fs->hitcache, ino, version, idx, op->buf, op->len);
	}
}

static void kvfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = handle_of(fi);
	struct read_plan p = {0};
	struct fs_ra *ra = NULL;
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end, pos, P, nslots, remote_bytes = 0, gen, fsize, version = 0;
	int r = 0, ra_err = 0;
	bool fresh_ra = false, keep_hits = false;

	(void)ino;
	if (h->kind == FS_H_STATS || h->kind == FS_H_CTL) {
		serve_buffer(req, h, size, off);
		return;
	}
	CTR(fs, reads);
	in = h->inode;
	pthread_rwlock_rdlock(&in->st->lock);
	o = in->st->open;
	if (o->lost) {
		r = -EIO;
		goto err_unlock;
	}
	if ((uint64_t)off >= o->size) {
		pthread_rwlock_unlock(&in->st->lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	end = (uint64_t)off + size;
	if (end > o->size)
		end = o->size;
	P = o->page_size;
	gen = in->st->content_gen;

	/* remote pages: a sequential reader fetches a window ahead, without in->st->lock held */
	if (fs->palloc == NULL) {
		size_t cap = FS_RA_BYTES / P + 1, n;
		uint64_t *idx = malloc(cap * sizeof(*idx)), start = 0;
		struct kvfs_page_ref *refs = malloc(cap * sizeof(*refs));
		uint32_t npages = 0;

		ra = ra_get(o, gen);
		n = idx && refs ? ra_plan(fs, o, in->ino, ra, (uint64_t)off, end, &start, &npages,
					  idx, refs)
				: 0;
		if (n) {
			uint64_t size_now = o->size;

			pthread_rwlock_unlock(&in->st->lock);
			ra_put(ra);
			ra = ra_fetch(fs, o, start, npages, (uint32_t)P, size_now, gen, idx, refs,
				      n, &ra_err);
			fresh_ra = ra != NULL;
			pthread_rwlock_rdlock(&in->st->lock);
			if (ra && ra->gen != in->st->content_gen) {
				ra_put(ra); /* written meanwhile: read what is there now */
				ra = NULL;
				fresh_ra = false;
			}
		}
		free(idx);
		free(refs);
	}

	nslots = (end - 1) / P - (uint64_t)off / P + 1;
	p.iov = malloc(nslots * sizeof(*p.iov));
	p.pins = malloc(nslots * sizeof(*p.pins));
	p.hits = malloc(nslots * sizeof(*p.hits));
	if (!p.iov || !p.pins || !p.hits) {
		r = -ENOMEM;
		goto err_unlock;
	}
	keep_hits = o->cache_hits;
	version = o->version;
	fsize = o->size;
	/* first pass: how much comes from other nodes and is not in the window */
	for (pos = (uint64_t)off; pos < end;) {
		uint64_t idx = pos / P, in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, idx);

		if (n > end - pos)
			n = end - pos;
		if (pg && !is_local(fs, &pg->ref) && !ra_has(ra, idx))
			remote_bytes += n;
		pos += n;
	}
	/* the read-ahead batch already failed for pages this read needs (a dead or hung peer):
	 * fail now rather than wait a second deadline for the same peer */
	if (remote_bytes && ra_err < 0 && ra_err != -ENOMEM) {
		r = -EIO;
		goto err_unlock;
	}
	if (remote_bytes) {
		p.bounce = malloc(remote_bytes);
		p.ops = calloc(nslots, sizeof(*p.ops));
		p.op_index = malloc(nslots * sizeof(*p.op_index));
		if (!p.bounce || !p.ops || !p.op_index) {
			r = -ENOMEM;
			goto err_unlock;
		}
	}
	remote_bytes = 0;
	for (pos = (uint64_t)off; pos < end;) {
		uint64_t idx = pos / P, in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, idx);

		if (n > end - pos)
			n = end - pos;
		if (!pg) {
			CTR(fs, read_holes);
			plan_add_iov(&p, (void *)fs->zero, n);
		} else if (is_local(fs, &pg->ref)) {
			if (fs->palloc) {
				r = kvfs_palloc_pin(fs->palloc, pg->ref.off);
				if (r < 0)
					goto err_unlock;
				p.pins[p.npins++] = pg->ref.off;
			}
			plan_add_iov(&p, kvfs_arena_ptr(fs->arena, pg->ref.off + in_page), n);
		} else if (ra_has(ra, idx)) {
			plan_add_iov(&p, ra->data + (idx - ra->first) * P + in_page, n);
		} else if (keep_hits && hit_serve(fs, &p, in->ino, version, idx, in_page, n)) {
			CTR(fs, remote_hits);
		} else {
			struct kvfs_xfer_op *op = &p.ops[p.nops++];

			op->dir = KVFS_XFER_READ;
			op->node = pg->ref.node;
			op->incarnation = pg->ref.incarnation;
			op->remote_off = pg->ref.off + in_page;
			op->buf = p.bounce + remote_bytes;
			op->len = (uint32_t)n;
			p.op_index[p.nops - 1] = idx;
			plan_add_iov(&p, p.bounce + remote_bytes, n);
			remote_bytes += n;
		}
		pos += n;
	}
	pthread_rwlock_unlock(&in->st->lock);

	if (p.nops) {
		r = xfer_errno(xfer_run(fs, p.ops, p.nops));
		if (r < 0)
			goto err_unpin;
	}
	/* before the reply: once it is out the reader may close, and RELEASE may free o */
	atomic_store(&o->next_off, end);
	if (keep_hits && (fresh_ra || p.nops))
		atomic_store(&o->has_hits, true);
	fuse_reply_iov(req, p.iov, (int)p.niov);
	CTR_ADD(fs, read_bytes, end - (uint64_t)off);
	for (size_t i = 0; i < p.npins; i++)
		kvfs_palloc_unpin(fs->palloc, p.pins[i]);
	/* keep copies of what came from other nodes (o may be gone: captured values only) */
	if (keep_hits)
		hit_keep(fs, &p, fresh_ra ? ra : NULL, h->inode->ino, version, P, fsize);
	for (size_t i = 0; i < p.nhits; i++)
		fs_hitcache_release(p.hits[i]);
	free(p.hits);
	ra_put(ra);
	free(p.iov);
	free(p.pins);
	free(p.bounce);
	free(p.ops);
	free(p.op_index);
	return;

err_unlock:
	pthread_rwlock_unlock(&in->st->lock);
err_unpin:
	for (size_t i = 0; i < p.npins; i++)
		kvfs_palloc_unpin(fs->palloc, p.pins[i]);
	for (size_t i = 0; i < p.nhits; i++)
		fs_hitcache_release(p.hits[i]);
	free(p.hits);
	ra_put(ra);
	free(p.iov);
	free(p.pins);
	free(p.bounce);
	free(p.ops);
	free(p.op_index);
	CTR(fs, read_errors);
	fuse_reply_err(req, -r);
}

/* Copy @len bytes between @buf and the page @pg at @in_page, locally or via the engine. */
static int page_io(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t in_page, void *buf,
		   size_t len, bool write)
{
	struct kvfs_xfer_op op = {0};

	if (ref->node == fs->node && ref->incarnation == fs->incarnation) {
		void *dst = kvfs_arena_ptr(fs->arena, ref->off + in_page);

		if (write)
			memcpy(dst, buf, len);
		else
			memcpy(buf, dst, len);
		return 0;
	}
	op.dir = write ? KVFS_XFER_WRITE : KVFS_XFER_READ;
	op.node = ref->node;
	op.incarnation = ref->incarnation;
	op.remote_off = ref->off + in_page;
	op.buf = buf;
	op.len = (uint32_t)len;
	return xfer_errno(xfer_run(fs, &op, 1));
}

static int zero_page_range(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t from,
			   uint64_t to)
{
	if (to <= from)
		return 0;
	return page_io(fs, ref, from, (void *)fs->zero, to - from, true);
}

/*
 * The node a new run of pages should live on: this node (--placement local, the default: a
 * writer's pages are local, and the service spills to peers only when this arena is full), or
 * with --placement spread the next of this node and its alive peers in turn, so one writer's
 * pages fill the cluster evenly. Either way the service falls back to any node with room.
 */
static uint32_t place_node(struct kvfs_fs *fs)
{
	uint32_t node = fs->node;

	if (fs->placement_spread) {
		pthread_mutex_lock(&fs->peers_lock);
		if (fs->npeers) {
			size_t k = fs->place_next++ % (fs->npeers + 1);

			node = k == fs->npeers ? fs->node : fs->peers[k];
		}
		pthread_mutex_unlock(&fs->peers_lock);
	}
	return node;
}

/*
 * Make sure pages [first, last] of the open file exist, allocating the missing ones in runs
 * and zero-filling the parts of new pages outside [fill_from, fill_to) (byte offsets in the
 * file). Caller holds in->st->lock for writing.
 */
static int ensure_pages(struct kvfs_fs *fs, struct fs_inode *in, uint64_t first, uint64_t last,
			uint64_t fill_from, uint64_t fill_to)
{
	struct fs_open *o = in->st->open;
	uint64_t P = o->page_size, idx = first;
	struct kvfs_page_ref stack_refs[16], *refs = stack_refs;
	int r = 0;

	while (idx <= last) {
		uint64_t run = 0;

		if (fs_pagemap_find(&o->pages, idx)) {
			idx++;
			continue;
		}
		while (idx + run <= last && !fs_pagemap_find(&o->pages, idx + run))
			run++;
		if (run > 16) {
			if (refs != stack_refs)
				free(refs);
			refs = malloc(run * sizeof(*refs));
			if (!refs)
				return -ENOMEM;
		}
		r = fs->meta->ops->alloc(fs->meta, in->ino, idx, (uint32_t)run, place_node(fs),
					 refs);
		if (r < 0)
			break;
		for (uint64_t k = 0; k < run; k++) {
			uint64_t pstart = (idx + k) * P, pend = pstart + P;
			uint64_t cov_from = fill_from > pstart ? fill_from : pstart;
			uint64_t cov_to = fill_to < pend ? fill_to : pend;

			if (cov_from >= cov_to) {
				r = zero_page_range(fs, &refs[k], 0, P);
			} else {
				r = zero_page_range(fs, &refs[k], 0, cov_from - pstart);
				if (r == 0)
					r = zero_page_range(fs, &refs[k], cov_to - pstart, P);
			}
			if (r == 0 && !fs_pagemap_put(&o->pages, idx + k, &refs[k], true))
				r = -ENOMEM;
			if (r < 0) {
				fs->meta->ops->abort(fs->meta, in->ino, &refs[k], run - k);
				goto out;
			}
		}
		o->dirty = true;
		idx += run;
	}
out:
	if (refs != stack_refs)
		free(refs);
	return r;
}

static void kvfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = handle_of(fi);
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end, pos, P;
	int r = 0;

	(void)ino;
	if (h->kind == FS_H_CTL) {
		char *reply = NULL;
		size_t len = 0;

		r = kvfs_fs_ctl(fs, buf, size, &reply, &len);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
		pthread_mutex_lock(&h->lock);
		free(h->buf);
		h->buf = reply;
		h->len = len;
		pthread_mutex_unlock(&h->lock);
		fuse_reply_write(req, size);
		return;
	}
	if (h->kind != FS_H_FILE) {
		fuse_reply_err(req, EBADF);
		return;
	}
	CTR(fs, writes);
	in = h->inode;
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	pthread_rwlock_wrlock(&in->st->lock);
	o = in->st->open;
	if (h->flags & O_APPEND)
		off = (off_t)o->size;
	end = (uint64_t)off + size;
	if (end > o->max_file_size || end < (uint64_t)off) {
		r = -EFBIG;
		goto err_unlock;
	}
	if (o->lost) {
		r = -EIO;
		goto err_unlock;
	}
	r = killpriv_locked(fs, in, fuse_req_ctx(req)->uid);
	if (r < 0)
		goto err_unlock;
	P = o->page_size;
	r = ensure_pages(fs, in, (uint64_t)off / P, (end - 1) / P, (uint64_t)off, end);
	if (r < 0)
		goto err_unlock;
	for (pos = (uint64_t)off; pos < end;) {
		uint64_t in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, pos / P);

		if (n > end - pos)
			n = end - pos;
		r = page_io(fs, &pg->ref, in_page, (void *)(buf + (pos - (uint64_t)off)), n, true);
		if (r < 0)
			break;
		pos += n;
	}
	/* a page that failed (a peer gone) ends the write short: what went before it counts, so
	 * the size covers every byte written and none beyond it is left behind the end */
	if (pos == (uint64_t)off)
		goto err_unlock;
	if (pos > o->size)
		o->size = pos;
	o->dirty = true;
	o->mtime_ns = now_ns();
	in->st->content_gen++;
	if (atomic_load(&o->has_hits)) /* copies of pages we may just have written over */
		fs_hitcache_drop_ino(fs->hitcache, in->ino);
	pthread_rwlock_unlock(&in->st->lock);
	CTR_ADD(fs, write_bytes, pos - (uint64_t)off);
	fuse_reply_write(req, pos - (uint64_t)off);
	return;

err_unlock:
	pthread_rwlock_unlock(&in->st->lock);
	CTR(fs, write_errors);
	fuse_reply_err(req, -r);
}

static void queue_push(struct kvfs_fs *fs, uint64_t ino);

static int commit_handle(struct kvfs_fs *fs, struct fs_handle *h)
{
	int r;

	if (h->kind != FS_H_FILE)
		return 0;
	pthread_rwlock_wrlock(&h->inode->st->lock);
	r = commit_locked(fs, h->inode);
	pthread_rwlock_unlock(&h->inode->st->lock);
	return r;
}

static void kvfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, -commit_handle(fs_of(req), handle_of(fi)));
}

static void kvfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);

	(void)ino;
	(void)datasync;
	CTR(fs, fsyncs);
	fuse_reply_err(req, -commit_handle(fs, handle_of(fi)));
}

static void kvfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = handle_of(fi);
	int r = 0;

	if (h->kind == FS_H_FILE) {
		struct fs_inode *in = h->inode;

		bool push = false;

		CTR(fs, releases);
		pthread_rwlock_wrlock(&in->st->lock);
		r = commit_locked(fs, in);
		if (--in->st->open->nopen == 0)
			open_destroy(fs, in);
		if (h->push_on_release && !in->st->push_queued && !in->st->cache_valid) {
			in->st->push_queued = true;
			push = true;
		}
		pthread_rwlock_unlock(&in->st->lock);
		if (push)
			queue_push(fs, in->ino);
		fs->meta->ops->close(fs->meta, ino, h->lease);
		inode_put(fs, in, 0);
	}
	handle_free(fs, h);
	/* release cannot report errors to close(); flush already did */
	(void)r;
	fuse_reply_err(req, 0);
}

static void kvfs_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			   struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = handle_of(fi);
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end;
	int r;

	(void)ino;
	if (mode & ~FALLOC_FL_KEEP_SIZE) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (h->kind != FS_H_FILE || off < 0 || len <= 0) {
		fuse_reply_err(req, h->kind != FS_H_FILE ? EBADF : EINVAL);
		return;
	}
	in = h->inode;
	pthread_rwlock_wrlock(&in->st->lock);
	o = in->st->open;
	end = (uint64_t)off + (uint64_t)len;
	if (end > o->max_file_size) {
		r = -EFBIG;
		goto out;
	}
	/* new pages are zero-filled whole: nothing of the range is covered by data */
	r = ensure_pages(fs, in, (uint64_t)off / o->page_size, (end - 1) / o->page_size, 0, 0);
	if (r < 0)
		goto out;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > o->size) {
		o->size = end;
		o->dirty = true;
	}
	/* new pages (and a new size) are a change of content: read-ahead windows and kept
	 * copies of remote pages fetched before it are void */
	in->st->content_gen++;
	if (atomic_load(&o->has_hits))
		fs_hitcache_drop_ino(fs->hitcache, in->ino);
	if (o->dirty) {
		o->mtime_ns = now_ns();
		r = commit_locked(fs, in);
	}
out:
	pthread_rwlock_unlock(&in->st->lock);
	fuse_reply_err(req, -r);
}

/* ------------------------------------------------------------------------------------------ */
/* Directories */

static void kvfs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = handle_new(fs, FS_H_DIR);

	(void)ino;
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) != 0)
		handle_free(fs, h);
}

#define DIRENT_BATCH 128

/*
 * Offsets handed to the kernel: 1 after ".", 2 after "..", cookie + 2 after an entry whose
 * metadata cookie is `cookie`.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_dirent *ents = NULL;
	char *buf;
	size_t used = 0;
	int r = 0;

	CTR(fs, readdirs);
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino == FS_CTLDIR_INO) {
		static const char *const names[] = {".", "..", "stats", "ctl"};
		static const fuse_ino_t inos[] = {FS_CTLDIR_INO, KVFS_ROOT_INO, FS_STATS_INO,
						  FS_CTL_INO};

		for (off_t i = off; i < 4; i++) {
			struct fuse_entry_param e = {0};
			size_t n;

			/* READDIRPLUS wants entries in its own format: a plain dirent there made
			 * `ls .kvfs` list nothing. "." and ".." carry no entry (ino 0): the
			 * kernel does not instantiate them; stats and ctl it does, as a lookup
			 * would (forget ignores synthetic inodes). */
			synthetic_attr(inos[i], &e.attr);
			if (i == 1) { /* the root: a directory */
				e.attr.st_ino = KVFS_ROOT_INO;
				e.attr.st_mode = S_IFDIR | 0755;
			}
			if (plus) {
				e.ino = i >= 2 ? inos[i] : 0;
				e.generation = 1;
				n = fuse_add_direntry_plus(req, buf + used, size - used, names[i],
							   &e, i + 1);
			} else {
				n = fuse_add_direntry(req, buf + used, size - used, names[i],
						      &e.attr, i + 1);
			}
			if (n > size - used)
				break;
			used += n;
		}
		goto reply;
	}

	while (off < 2) {
		struct stat st = {0};
		struct fuse_entry_param e = {0};
		size_t n;

		st.st_ino = off == 0 ? ino : KVFS_ROOT_INO;
		st.st_mode = S_IFDIR;
		e.attr = st;
		if (plus)
			n = fuse_add_direntry_plus(req, buf + used, size - used,
						   off == 0 ? "." : "..", &e, off + 1);
		else
			n = fuse_add_direntry(req, buf + used, size - used, off == 0 ? "." : "..",
					      &st, off + 1);
		if (n > size - used)
			goto reply;
		used += n;
		off++;
	}

	ents = malloc(DIRENT_BATCH * sizeof(*ents));
	if (!ents) {
		r = -ENOMEM;
		goto err;
	}
	for (uint64_t cookie = (uint64_t)off - 2;;) {
		size_t got = 0, want;

		/* entries are about 32-48 bytes in the reply: do not fetch far more than fits */
		want = (size - used) / 32 + 1;
		if (want > DIRENT_BATCH)
			want = DIRENT_BATCH;
		r = fs->meta->ops->readdir(fs->meta, ino, cookie, ents, want, &got);
		if (r < 0) {
			if (used)
				break; /* deliver what we have; the error comes back next call */
			goto err;
		}
		if (!got)
			break;
		for (size_t i = 0; i < got; i++) {
			struct kvfs_dirent *d = &ents[i];
			off_t next = (off_t)(d->cookie + 2);
			size_t n;

			if (plus) {
				struct fuse_entry_param e;

				overlay_open(fs, &d->attr);
				fill_entry(fs, &d->attr, &e);
				n = fuse_add_direntry_plus(req, buf + used, size - used, d->name,
							   &e, next);
				if (n > size - used)
					goto reply;
				/* the kernel now holds a lookup on it */
				inode_put(fs, inode_get(fs, d->attr.ino, true), 0);
			} else {
				struct stat st = {0};

				st.st_ino = d->attr.ino;
				st.st_mode = d->attr.mode;
				n = fuse_add_direntry(req, buf + used, size - used, d->name, &st,
						      next);
				if (n > size - used)
					goto reply;
			}
			used += n;
			cookie = d->cookie;
		}
	}
reply:
	fuse_reply_buf(req, buf, used);
	free(ents);
	free(buf);
	return;
err:
	free(ents);
	free(buf);
	fuse_reply_err(req, -r);
}

static void kvfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void kvfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			     struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void kvfs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);

	(void)ino;
	handle_free(fs, handle_of(fi));
	fuse_reply_err(req, 0);
}

static void kvfs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void kvfs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_statfs s;
	struct statvfs sv = {0};
	int r;

	r = fs->meta->ops->statfs(fs->meta, is_synthetic(ino) ? KVFS_ROOT_INO : ino, &s);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = s.capacity / 4096;
	/* df must show what is used: an lru pool's evictable bytes are in use until evicted */
	{
		uint64_t avail = s.capacity > s.used ? s.capacity - s.used : 0;

		if (avail > s.free)
			avail = s.free;
		sv.f_bfree = avail / 4096;
		sv.f_bavail = avail / 4096;
	}
	sv.f_files = s.files + (1ull << 32);
	sv.f_ffree = 1ull << 32;
	sv.f_favail = 1ull << 32;
	sv.f_namemax = KVFS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

/* ------------------------------------------------------------------------------------------ */
/* Extended attributes: user.kvfs.* are computed, other user.* are stored. */

#define KVFS_XATTR_PREFIX "user.kvfs."

static const char *const synth_xattrs[] = {"pool",  "page_size", "pages",
					   "nodes", "tier",	 "version"};

static int synth_xattr(struct kvfs_fs *fs, fuse_ino_t ino, const char *which, char *out,
		       size_t outsz)
{
	struct kvfs_layout *l = NULL;
	struct kvfs_pool_attr pa;
	int r;

	r = fs->meta->ops->layout(fs->meta, ino, &l);
	if (r < 0)
		return r;
	if (!strcmp(which, "pool")) {
		r = fs->meta->ops->pool_get(fs->meta, l->attr.pool, &pa);
		if (r == 0)
			snprintf(out, outsz, "%s", pa.name);
	} else if (!strcmp(which, "page_size")) {
		snprintf(out, outsz, "%u", l->attr.page_size);
	} else if (!strcmp(which, "pages")) {
		snprintf(out, outsz, "%zu", l->npages);
	} else if (!strcmp(which, "tier")) {
		snprintf(out, outsz, "dram");
	} else if (!strcmp(which, "version")) {
		snprintf(out, outsz, "%llu", (unsigned long long)l->attr.version);
	} else if (!strcmp(which, "nodes")) {
		/* distinct node ids in ascending order */
		size_t used = 0;
		uint32_t last = 0;

		out[0] = 0;
		for (;;) {
			uint32_t next = UINT32_MAX;

			for (size_t i = 0; i < l->npages; i++)
				if (l->pages[i].ref.node > last && l->pages[i].ref.node < next)
					next = l->pages[i].ref.node;
			if (next == UINT32_MAX)
				break;
			used += (size_t)snprintf(out + used, outsz - used, "%s%u", used ? "," : "",
						 next);
			if (used >= outsz)
				break;
			last = next;
		}
	} else {
		r = -ENODATA;
	}
	kvfs_layout_free(l);
	return r;
}

static void kvfs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct kvfs_fs *fs = fs_of(req);
	char small[1024];
	size_t len = 0;
	void *buf = NULL;
	int r;

	if (is_synthetic(ino) || ino == KVFS_ROOT_INO) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	if (!strncmp(name, KVFS_XATTR_PREFIX, strlen(KVFS_XATTR_PREFIX))) {
		/* flush local writes first so pages/version describe what this node sees */
		struct fs_inode *in = inode_find(fs, ino);

		if (in && in->st) {
			pthread_rwlock_wrlock(&in->st->lock);
			commit_locked(fs, in);
			pthread_rwlock_unlock(&in->st->lock);
		}
		inode_put(fs, in, 0);
		r = synth_xattr(fs, ino, name + strlen(KVFS_XATTR_PREFIX), small, sizeof(small));
		if (r < 0)
			goto err;
		len = strlen(small);
		if (size == 0) {
			fuse_reply_xattr(req, len);
		} else if (size < len) {
			fuse_reply_err(req, ERANGE);
		} else {
			fuse_reply_buf(req, small, len);
		}
		return;
	}
	if (strncmp(name, "user.", 5)) {
		r = -ENODATA;
		goto err;
	}
	if (size) {
		buf = malloc(size);
		if (!buf) {
			r = -ENOMEM;
			goto err;
		}
	}
	r = fs->meta->ops->getxattr(fs->meta, ino, name, buf, size, &len);
	if (r < 0)
		goto err;
	if (size == 0)
		fuse_reply_xattr(req, len);
	else
		fuse_reply_buf(req, buf, len);
	free(buf);
	return;
err:
	free(buf);
	fuse_reply_err(req, -r);
}

static void kvfs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct kvfs_fs *fs = fs_of(req);
	size_t stored = 0, synth = 0, total;
	char *buf = NULL;
	int r;

	if (is_synthetic(ino) || ino == KVFS_ROOT_INO) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	for (size_t i = 0; i < sizeof(synth_xattrs) / sizeof(synth_xattrs[0]); i++)
		synth += strlen(KVFS_XATTR_PREFIX) + strlen(synth_xattrs[i]) + 1;
	r = fs->meta->ops->listxattr(fs->meta, ino, NULL, 0, &stored);
	if (r < 0)
		goto err;
	total = synth + stored;
	if (size == 0) {
		fuse_reply_xattr(req, total);
		return;
	}
	if (size < total) {
		r = -ERANGE;
		goto err;
	}
	buf = malloc(total ? total : 1);
	if (!buf) {
		r = -ENOMEM;
		goto err;
	}
	{
		size_t used = 0;

		for (size_t i = 0; i < sizeof(synth_xattrs) / sizeof(synth_xattrs[0]); i++)
			used += (size_t)sprintf(buf + used, "%s%s", KVFS_XATTR_PREFIX,
						synth_xattrs[i]) +
				1;
		if (stored) {
			size_t got = 0;

			r = fs->meta->ops->listxattr(fs->meta, ino, buf + used, stored, &got);
			if (r < 0)
				goto err;
			used += got;
		}
		fuse_reply_buf(req, buf, used);
	}
	free(buf);
	return;
err:
	free(buf);
	fuse_reply_err(req, -r);
}

/*
 * May @name of @ino be set or removed? Only user.* attributes of files and directories in
 * pools are stored; the computed user.kvfs.* (and anything on the root or the control tree)
 * answer @computed_err; other namespaces EOPNOTSUPP.
 */
static int xattr_writable(fuse_ino_t ino, const char *name, int computed_err)
{
	if (is_synthetic(ino) || ino == KVFS_ROOT_INO ||
	    !strncmp(name, KVFS_XATTR_PREFIX, strlen(KVFS_XATTR_PREFIX)))
		return computed_err;
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	return 0;
}

static void kvfs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			  size_t size, int flags)
{
	struct kvfs_fs *fs = fs_of(req);
	/* setting a computed one: ENOTSUP, which cp -a and mv pass over quietly */
	int r = xattr_writable(ino, name, -EOPNOTSUPP);

	if (r == 0)
		r = fs->meta->ops->setxattr(fs->meta, ino, name, value, size, flags);
	fuse_reply_err(req, -r);
}

static void kvfs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	int r = xattr_writable(ino, name, -EPERM);

	if (r == 0)
		r = fs->meta->ops->removexattr(fs->meta, ino, name);
	fuse_reply_err(req, -r);
}

const struct fuse_lowlevel_ops kvfs_fs_ops = {
	.init = kvfs_init,
	.lookup = kvfs_lookup,
	.forget = kvfs_forget,
	.forget_multi = kvfs_forget_multi,
	.getattr = kvfs_getattr,
	.setattr = kvfs_setattr,
	.mknod = kvfs_mknod,
	.mkdir = kvfs_mkdir,
	.unlink = kvfs_unlink,
	.rmdir = kvfs_rmdir,
	.symlink = kvfs_symlink,
	.rename = kvfs_rename,
	.link = kvfs_link,
	.open = kvfs_open,
	.create = kvfs_create,
	.read = kvfs_read,
	.write = kvfs_write,
	.flush = kvfs_flush,
	.release = kvfs_release,
	.fsync = kvfs_fsync,
	.fallocate = kvfs_fallocate,
	.opendir = kvfs_opendir,
	.readdir = kvfs_readdir,
	.readdirplus = kvfs_readdirplus,
	.releasedir = kvfs_releasedir,
	.fsyncdir = kvfs_fsyncdir,
	.statfs = kvfs_statfs,
	.setxattr = kvfs_setxattr,
	.getxattr = kvfs_getxattr,
	.listxattr = kvfs_listxattr,
	.removexattr = kvfs_removexattr,
};

/* ------------------------------------------------------------------------------------------ */
/* Kernel cache invalidation after the state machine removed names on its own (eviction). */

struct fs_notice {
	struct fs_notice *next;
	bool push; /* push ino's pages into the page cache; else drop parent/name */
	uint64_t parent, ino;
	char name[];
};

static void notice_add(struct kvfs_fs *fs, struct fs_notice *n)
{
	pthread_mutex_lock(&fs->notify_lock);
	n->next = fs->notices;
	fs->notices = n;
	pthread_cond_signal(&fs->notify_cond);
	pthread_mutex_unlock(&fs->notify_lock);
}

static void queue_push(struct kvfs_fs *fs, uint64_t ino)
{
	struct fs_notice *n = calloc(1, sizeof(*n) + 1);
	struct fs_inode *in;

	if (n) {
		n->push = true;
		n->ino = ino;
		notice_add(fs, n);
		return;
	}
	in = inode_find(fs, ino);
	if (in) {
		pthread_rwlock_wrlock(&in->st->lock);
		in->st->push_queued = false;
		pthread_rwlock_unlock(&in->st->lock);
		inode_put(fs, in, 0);
	}
}

/*
 * Copy a file's pages into the kernel page cache (fuse_lowlevel_notify_store), then declare
 * the cache valid for the version and local generation seen before the copy, unless either
 * moved meanwhile. Runs on the notifier thread.
 *
 * A store extends the kernel's idea of the size when it reaches past it, and fills the cache
 * with what the page holds now. So each store runs under the inode's read lock, and only while
 * nothing changed here since the layout was read (a local write or truncate takes the lock for
 * writing and bumps content_gen): a push racing a truncate stops instead of growing the file
 * back. The layout comes with a lease, so no page of it is freed and given to another file
 * while it is copied (the metadata keeps pages cut by a truncate until the last lease goes);
 * in embedded mode the pages are pinned as well.
 */
static void push_to_page_cache(struct kvfs_fs *fs, uint64_t ino)
{
	struct kvfs_layout *l = NULL;
	struct fs_inode *in;
	uint64_t gen, P, lease = 0;
	bool ok = true;

	in = inode_find(fs, ino);
	if (!in)
		return; /* the kernel forgot the inode: nothing to fill */
	if (!in->st) {
		inode_put(fs, in, 0);
		return;
	}
	pthread_rwlock_rdlock(&in->st->lock);
	gen = in->st->content_gen;
	pthread_rwlock_unlock(&in->st->lock);
	if (fs->meta->ops->open(fs->meta, ino, fs->node, &lease, &l) < 0) {
		ok = false;
		lease = 0;
		goto out;
	}
	if ((l->attr.flags & KVFS_ATTR_LOST) || !S_ISREG(l->attr.mode)) {
		ok = false;
		goto out;
	}
	P = l->attr.page_size;
	for (size_t i = 0; i < l->npages && ok; i++) {
		const struct kvfs_page_entry *pe = &l->pages[i];
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(0);
		uint64_t off = pe->index * P, len;

		if (off >= l->attr.size)
			break;
		if (pe->ref.node != fs->node || pe->ref.incarnation != fs->incarnation)
			continue; /* remote pages stay remote until read */
		len = l->attr.size - off < P ? l->attr.size - off : P;
		pthread_rwlock_rdlock(&in->st->lock);
		if (in->st->content_gen != gen) {
			ok = false;
		} else if (fs->palloc && kvfs_palloc_pin(fs->palloc, pe->ref.off) < 0) {
			ok = false;
		} else {
			bv.buf[0].mem = kvfs_arena_ptr(fs->arena, pe->ref.off);
			bv.buf[0].size = len;
			if (fuse_lowlevel_notify_store(fs->se, ino, off, &bv, 0) < 0)
				ok = false;
			if (fs->palloc)
				kvfs_palloc_unpin(fs->palloc, pe->ref.off);
			CTR_ADD(fs, cache_push_bytes, len);
		}
		pthread_rwlock_unlock(&in->st->lock);
	}
out:
	pthread_rwlock_wrlock(&in->st->lock);
	in->st->push_queued = false;
	if (ok && l && in->st->content_gen == gen) {
		in->st->cache_valid = true;
		in->st->cached_version = l->attr.version;
		in->st->cached_gen = gen;
		CTR(fs, cache_pushes);
	}
	pthread_rwlock_unlock(&in->st->lock);
	if (lease)
		fs->meta->ops->close(fs->meta, ino, lease);
	kvfs_layout_free(l);
	inode_put(fs, in, 0);
}

void kvfs_fs_meta_removed(void *ctx, uint64_t parent, const char *name, uint64_t ino)
{
	struct kvfs_fs *fs = ctx;
	size_t len = strlen(name);
	struct fs_notice *n = malloc(sizeof(*n) + len + 1);

	if (!n)
		return; /* the kernel keeps a stale dentry until its timeout: lookups still fail */
	n->push = false;
	n->parent = parent;
	n->ino = ino;
	memcpy(n->name, name, len + 1);
	notice_add(fs, n);
}

/* Notifications must not be sent from a request handler that the kernel may be waiting on
 * with the directory locked, so one thread sends them. */
static void *notify_main(void *arg)
{
	struct kvfs_fs *fs = arg;

	pthread_mutex_lock(&fs->notify_lock);
	for (;;) {
		struct fs_notice *n;

		while (!fs->notices && !fs->notify_stop)
			pthread_cond_wait(&fs->notify_cond, &fs->notify_lock);
		if (!fs->notices && fs->notify_stop)
			break;
		n = fs->notices;
		fs->notices = NULL;
		pthread_mutex_unlock(&fs->notify_lock);
		while (n) {
			struct fs_notice *next = n->next;

			if (fs->se && n->push) {
				push_to_page_cache(fs, n->ino);
			} else if (fs->se && n->ino) {
				fuse_lowlevel_notify_delete(fs->se, n->parent, n->ino, n->name,
							    strlen(n->name));
				CTR(fs, evict_notices);
			} else if (fs->se) {
				/* a name appeared or went behind the kernel's back */
				fuse_lowlevel_notify_inval_entry(fs->se, n->parent, n->name,
								 strlen(n->name));
			}
			free(n);
			n = next;
		}
		pthread_mutex_lock(&fs->notify_lock);
	}
	pthread_mutex_unlock(&fs->notify_lock);
	return NULL;
}

int kvfs_fs_init(struct kvfs_fs *fs)
{
	start_ns = now_ns();
	pthread_mutex_init(&fs->itable_lock, NULL);
	pthread_mutex_init(&fs->peers_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->notify_lock, NULL);
	pthread_cond_init(&fs->notify_cond, NULL);
	return 0;
}

int kvfs_fs_start_notifier(struct kvfs_fs *fs)
{
	int r = -pthread_create(&fs->notify_thread, NULL, notify_main, fs);

	if (r == 0)
		fs->notify_started = true;
	return r;
}

void kvfs_fs_stop_notifier(struct kvfs_fs *fs)
{
	if (fs->notify_started) {
		pthread_mutex_lock(&fs->notify_lock);
		fs->notify_stop = true;
		pthread_cond_signal(&fs->notify_cond);
		pthread_mutex_unlock(&fs->notify_lock);
		pthread_join(fs->notify_thread, NULL);
		fs->notify_started = false;
	}
}

void kvfs_fs_fini(struct kvfs_fs *fs)
{
	kvfs_fs_stop_notifier(fs);
	while (fs->notices) {
		struct fs_notice *n = fs->notices;

		fs->notices = n->next;
		free(n);
	}
	while (fs->handles)
		handle_free(fs, fs->handles);
	for (size_t i = 0; i < fs->itable_cap; i++) {
		struct fs_inode *in = fs->itable[i], *next;

		for (; in; in = next) {
			next = in->hnext;
			if (in->st && in->st->open) {
				fs_pagemap_fini(&in->st->open->pages);
				ra_put(in->st->open->ra);
				free(in->st->open);
				in->st->open = NULL;
			}
			inode_free(in);
		}
	}
	free(fs->itable);
	fs->itable = NULL;
	fs->itable_cap = fs->itable_count = 0;
	pthread_cond_destroy(&fs->notify_cond);
	pthread_mutex_destroy(&fs->notify_lock);
	pthread_mutex_destroy(&fs->itable_lock);
	pthread_mutex_destroy(&fs->peers_lock);
	pthread_mutex_destroy(&fs->handles_lock);
}
