/* SPDX-License-Identifier: MIT */
/*
 * file.c - open files: open, create, flush, fsync, release, fallocate, and the open-file state
 * they share (page map, pending pages, size), with commit and truncate.
 *
 * Writes land in pages of the file and are recorded as pending; flush, fsync and release commit
 * the pending pages and the size in one metadata call (confirm-write), which is what makes
 * close-to-open work. A truncate, by path, by handle or by O_TRUNC inside the open, goes through
 * the open state so the cut-off tail of the last page is zeroed wherever it lives.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "ops_i.h"
#include "pool.h"
#include "xfer.h"

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
int fs_commit_locked(struct kvfs_fs *fs, struct fs_inode *in)
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
	fs_ra_put(in->st->open->ra);
	pthread_mutex_destroy(&in->st->open->ra_lock);
	free(in->st->open);
	in->st->open = NULL;
}

/* Clear the set-id bits of @in (open here) if a write by @uid must. Caller holds the lock. */
int fs_killpriv_locked(struct kvfs_fs *fs, struct fs_inode *in, uid_t uid)
{
	struct fs_open *o = in->st->open;
	struct kvfs_attr want = {0}, a;
	int r;

	want.mode = fs_killpriv_mode(o->mode, uid);
	if (want.mode == o->mode)
		return 0;
	r = fs->meta->ops->setattr(fs->meta, in->ino, &want, KVFS_SET_MODE, &a);
	if (r == 0)
		o->mode = a.mode;
	return r;
}

/*
 * Set the size of @in, open here, to @size on behalf of @uid: commit pending pages first, let
 * the metadata free the pages beyond the size, drop them from the local map, and zero the rest
 * of the last page, wherever it lives, so that no later extension (truncate up, a write or
 * fallocate past the end) reads the cut-off bytes. Set-id bits go as fs_killpriv_mode() says.
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
	r = fs_commit_locked(fs, in);
	if (r < 0)
		return r;
	want.size = size;
	if (how & TRUNC_TIMES) {
		want.mtime_ns = want.ctime_ns = kvfs_now_ns(CLOCK_REALTIME);
		valid |= KVFS_SET_MTIME | KVFS_SET_CTIME;
	}
	want.mode = fs_killpriv_mode(o->mode, uid);
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
		r = fs_zero_page_range(fs, &p->ref, size % P, P);
	return r;
}

/*
 * Truncate @in, which may not be open here: a path truncate(2) of a closed file still needs the
 * page map to zero the tail of its last page, so it opens the file for the duration (a lease,
 * which also keeps that page from being freed under us).
 */
int fs_truncate_inode(struct kvfs_fs *fs, struct fs_inode *in, uint64_t size, unsigned how,
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
 * Handles live until the kernel's RELEASE; files still open when the file system is unmounted
 * never get one, so every handle is also on fs->handles and teardown frees what is left.
 */
struct fs_handle *fs_handle_new(struct kvfs_fs *fs, enum fs_handle_kind kind)
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

void fs_handle_free(struct kvfs_fs *fs, struct fs_handle *h)
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
int fs_open_file(struct kvfs_fs *fs, fuse_ino_t ino, struct fuse_file_info *fi, bool trunc,
		 uid_t uid, struct fs_handle **ret_h)
{
	struct kvfs_layout *l = NULL;
	struct fs_handle *h;
	struct fs_inode *in;
	bool inval_attrs;
	uint64_t lease, version;
	int r;

	h = fs_handle_new(fs, FS_H_FILE);
	if (!h)
		return -ENOMEM;
	in = fs_inode_get(fs, ino, false);
	if (!in) {
		r = -ENOMEM;
		goto err_free_handle;
	}
	if (!fs_inode_state(fs, in)) {
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
	fs_inode_put(fs, in, 0);
err_free_handle:
	fs_handle_free(fs, h);
	return r;
}

void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h;
	int r;

	if (ino == FS_STATS_INO && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fs_reply_err(req, -EACCES);
		return;
	}
	if (ino == FS_STATS_INO || ino == FS_CTL_INO) {
		h = fs_handle_new(fs, ino == FS_STATS_INO ? FS_H_STATS : FS_H_CTL);
		if (!h) {
			fs_reply_err(req, -ENOMEM);
			return;
		}
		if (ino == FS_STATS_INO) {
			r = kvfs_fs_stats_json(fs, &h->buf, &h->len);
			if (r < 0) {
				fs_handle_free(fs, h);
				fs_reply_err(req, r);
				return;
			}
		}
		fi->direct_io = 1;
		fi->nonseekable = 0;
		fi->fh = (uintptr_t)h;
		if (fuse_reply_open(req, fi) != 0)
			fs_handle_free(fs, h);
		return;
	}
	if (ino == FS_CTLDIR_INO || ino == KVFS_ROOT_INO) {
		fs_reply_err(req, -EISDIR);
		return;
	}
	r = fs_open_file(fs, ino, fi, fi->flags & O_TRUNC, fuse_req_ctx(req)->uid, &h);
	if (r < 0) {
		fs_reply_err(req, r);
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
		fs_inode_put(fs, h->inode, 0);
		fs_handle_free(fs, h);
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
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct fs_handle *h;
	struct kvfs_attr a;
	bool existed = false;
	int r;

	r = fs_create_file(req, parent, name, mode, &a);
	if (r == -EEXIST && !(fi->flags & O_EXCL)) {
		existed = true;
		r = fs->meta->ops->lookup(fs->meta, parent, name, &a);
		if (r == 0 && S_ISDIR(a.mode))
			r = -EISDIR;
		if (r == 0)
			r = may_access(req, &a, access_mask(fi->flags));
	}
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	r = fs_open_file(fs, a.ino, fi, existed && (fi->flags & O_TRUNC), ctx->uid, &h);
	if (r == 0 && existed && (fi->flags & O_TRUNC))
		r = fs->meta->ops->getattr(fs->meta, a.ino, &a);
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	fs_fill_entry(fs, &a, &e);
	fs_inode_put(fs, fs_inode_get(fs, a.ino, true), 0);
	fi->fh = (uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) != 0) {
		pthread_rwlock_wrlock(&h->inode->st->lock);
		if (--h->inode->st->open->nopen == 0)
			open_destroy(fs, h->inode);
		pthread_rwlock_unlock(&h->inode->st->lock);
		fs->meta->ops->close(fs->meta, a.ino, h->lease);
		fs_inode_put(fs, h->inode, 1);
		fs_handle_free(fs, h);
	}
}

struct fs_handle *fs_handle_of(struct fuse_file_info *fi)
{
	return (struct fs_handle *)(uintptr_t)fi->fh;
}

static int commit_handle(struct kvfs_fs *fs, struct fs_handle *h)
{
	int r;

	if (h->kind != FS_H_FILE)
		return 0;
	pthread_rwlock_wrlock(&h->inode->st->lock);
	r = fs_commit_locked(fs, h->inode);
	pthread_rwlock_unlock(&h->inode->st->lock);
	return r;
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fs_reply_err(req, commit_handle(fs_of(req), fs_handle_of(fi)));
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);

	(void)ino;
	(void)datasync;
	CTR(fs, fsyncs);
	fs_reply_err(req, commit_handle(fs, fs_handle_of(fi)));
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
	int r = 0;

	if (h->kind == FS_H_FILE) {
		struct fs_inode *in = h->inode;

		bool push = false;

		CTR(fs, releases);
		pthread_rwlock_wrlock(&in->st->lock);
		r = fs_commit_locked(fs, in);
		if (--in->st->open->nopen == 0)
			open_destroy(fs, in);
		if (h->push_on_release && !in->st->push_queued && !in->st->cache_valid) {
			in->st->push_queued = true;
			push = true;
		}
		pthread_rwlock_unlock(&in->st->lock);
		if (push)
			fs_queue_push(fs, in->ino);
		fs->meta->ops->close(fs->meta, ino, h->lease);
		fs_inode_put(fs, in, 0);
	}
	fs_handle_free(fs, h);
	/* release cannot report errors to close(); flush already did */
	(void)r;
	fs_reply_err(req, 0);
}

void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end;
	int r;

	(void)ino;
	if (mode & ~FALLOC_FL_KEEP_SIZE) {
		fs_reply_err(req, -EOPNOTSUPP);
		return;
	}
	if (h->kind != FS_H_FILE || off < 0 || len <= 0) {
		fs_reply_err(req, -(h->kind != FS_H_FILE ? EBADF : EINVAL));
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
	r = fs_ensure_pages(fs, in, (uint64_t)off / o->page_size, (end - 1) / o->page_size, 0, 0);
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
		o->mtime_ns = kvfs_now_ns(CLOCK_REALTIME);
		r = fs_commit_locked(fs, in);
	}
out:
	pthread_rwlock_unlock(&in->st->lock);
	fs_reply_err(req, r);
}
