/* SPDX-License-Identifier: MIT */
/*
 * read.c - the read path. A read builds an iovec that points into the arena (holes point at a
 * shared zero buffer) and replies with fuse_reply_iov, with the pages pinned until the reply
 * has been copied out, so a concurrent truncate or unlink cannot hand them to a new writer
 * while the kernel still reads them. Remote pages come from the read-ahead window (io.c) or the
 * remote-hit cache (--cache-remote). Synthetic files (/.kvfs/stats, ctl) serve a buffer.
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

/*
 * One read, planned under the inode's read lock in one pass over its pages and carried out by
 * at most one engine batch. Every part of the reply is one of: a hole (the shared zero page),
 * a local page (pinned in embedded mode), the current read-ahead window, a kept copy of a
 * remote page (--cache-remote), or a remote page fetched by this read's batch, either into a
 * new window (a sequential reader, --meta) or into a bounce buffer.
 */
struct read_plan {
	uint64_t gen;	   /* the inode's content_gen the plan was made at */
	uint64_t fsize;	   /* the size it was made at */
	uint64_t version;  /* o->version: keys the remote-hit cache */
	bool keep_hits;	   /* the pool keeps copies of remote pages */
	struct iovec *iov; /* the reply */
	size_t niov;
	struct fs_hit **hits; /* remote-hit cache entries the reply points into */
	size_t nhits;
	uint64_t *pins; /* arena offsets of pinned local pages */
	size_t npins;
	struct fs_ra *ra;  /* the window the reply may point into (referenced), or NULL */
	struct fs_ra *win; /* a new window this read fills (referenced), or NULL */
	char *bounce;	   /* remote pages outside any window */
	size_t bounce_used;
	struct kvfs_xfer_op *ops; /* the batch */
	uint64_t *op_index;	  /* page index of each op */
	size_t nops, ops_cap;
};

static void plan_add_iov(struct read_plan *p, void *base, size_t len)
{
	if (p->niov && (char *)p->iov[p->niov - 1].iov_base + p->iov[p->niov - 1].iov_len == base) {
		p->iov[p->niov - 1].iov_len += len; /* contiguous in memory: one iovec */
		return;
	}
	p->iov[p->niov].iov_base = base;
	p->iov[p->niov].iov_len = len;
	p->niov++;
}

/* Undo a plan: unpin, drop references, free. @fs may be NULL when nothing was pinned. */
static void plan_release(struct kvfs_fs *fs, struct read_plan *p)
{
	for (size_t i = 0; i < p->npins; i++)
		kvfs_palloc_unpin(fs->palloc, p->pins[i]);
	for (size_t i = 0; i < p->nhits; i++)
		fs_hitcache_release(p->hits[i]);
	fs_ra_put(p->ra);
	fs_ra_put(p->win);
	free(p->iov);
	free(p->hits);
	free(p->pins);
	free(p->bounce);
	free(p->ops);
	free(p->op_index);
	memset(p, 0, sizeof(*p));
}

static bool hit_cached(struct kvfs_fs *fs, struct fs_open *o, uint64_t ino, uint64_t idx)
{
	return o->cache_hits && fs_hitcache_has(fs->hitcache, ino, o->version, idx);
}

/* Point the reply at a cached copy of remote page @idx if there is one covering the range. */
static bool hit_serve(struct kvfs_fs *fs, struct read_plan *p, uint64_t ino, uint64_t idx,
		      uint64_t in_page, uint64_t n)
{
	struct fs_hit *ref;
	uint32_t len;
	const char *d = fs_hitcache_get(fs->hitcache, ino, p->version, idx, &len, &ref);

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

/* Queue a read of @len bytes at @in_page of page @idx into @buf. */
static void plan_op(struct read_plan *p, const struct kvfs_page_ref *ref, uint64_t idx,
		    uint64_t in_page, void *buf, uint64_t len)
{
	struct kvfs_xfer_op *op = &p->ops[p->nops];

	op->dir = KVFS_XFER_READ;
	op->node = ref->node;
	op->incarnation = ref->incarnation;
	op->remote_off = ref->off + in_page;
	op->buf = buf;
	op->len = (uint32_t)len;
	op->result = 0;
	p->op_index[p->nops++] = idx;
}

/*
 * A new window for a sequential reader that needs remote page @start: up to FS_RA_BYTES of the
 * file from there, with a read queued for every remote page in it that is not kept already.
 */
static int plan_window(struct kvfs_fs *fs, struct read_plan *p, struct fs_open *o, uint64_t ino,
		       uint64_t start)
{
	uint64_t P = o->page_size, w = FS_RA_BYTES / P ? FS_RA_BYTES / P : 1;
	uint64_t last = (p->fsize - 1) / P;

	if (start + w - 1 > last)
		w = last - start + 1;
	p->win = fs_ra_new(start, (uint32_t)w, (uint32_t)P, p->gen);
	if (!p->win)
		return -ENOMEM;
	for (uint64_t i = start; i < start + w; i++) {
		struct fs_page *pg = fs_pagemap_find(&o->pages, i);
		uint64_t len = p->fsize - i * P < P ? p->fsize - i * P : P;

		if (pg && !fs_is_local(fs, &pg->ref) && !hit_cached(fs, o, ino, i))
			plan_op(p, &pg->ref, i, 0, p->win->data + (i - start) * P, len);
	}
	return 0;
}

/*
 * Plan the read of [@off, @end) of @in, open here, in one pass over its pages. Caller holds
 * in->st->lock for reading. Returns 0, or a negative errno (the plan is then released).
 */
static int plan_read(struct kvfs_fs *fs, struct fs_inode *in, uint64_t off, uint64_t end,
		     struct read_plan *p)
{
	struct fs_open *o = in->st->open;
	uint64_t P = o->page_size, pos, nslots = (end - 1) / P - off / P + 1;
	bool sequential = off == 0 || off == atomic_load(&o->next_off);
	int r;

	p->gen = in->st->content_gen;
	p->fsize = o->size;
	p->version = o->version;
	p->keep_hits = o->cache_hits;
	p->iov = malloc(nslots * sizeof(*p->iov));
	p->pins = malloc(nslots * sizeof(*p->pins));
	p->hits = malloc(nslots * sizeof(*p->hits));
	if (!p->iov || !p->pins || !p->hits)
		return -ENOMEM;
	/* windows exist only with --meta (embedded: every page is local): no lock for them */
	p->ra = fs->palloc ? NULL : fs_ra_get(o, p->gen);
	for (pos = off; pos < end;) {
		uint64_t idx = pos / P, in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, idx);

		if (n > end - pos)
			n = end - pos;
		pos += n;
		if (!pg) {
			CTR(fs, read_holes);
			plan_add_iov(p, (void *)fs->zero, n);
			continue;
		}
		if (fs_is_local(fs, &pg->ref)) {
			if (fs->palloc) {
				r = kvfs_palloc_pin(fs->palloc, pg->ref.off);
				if (r < 0)
					return r;
				p->pins[p->npins++] = pg->ref.off;
			}
			plan_add_iov(p, kvfs_arena_ptr(fs->arena, pg->ref.off + in_page), n);
			continue;
		}
		if (fs_ra_has(p->ra, idx)) {
			plan_add_iov(p, p->ra->data + (idx - p->ra->first) * P + in_page, n);
			continue;
		}
		if (p->keep_hits && hit_serve(fs, p, in->ino, idx, in_page, n)) {
			CTR(fs, remote_hits);
			continue;
		}
		/* a page to fetch: this read's batch holds at most its own pages and a window */
		if (!p->ops) {
			p->ops_cap = nslots + FS_RA_BYTES / P + 1;
			p->ops = calloc(p->ops_cap, sizeof(*p->ops));
			p->op_index = malloc(p->ops_cap * sizeof(*p->op_index));
			if (!p->ops || !p->op_index)
				return -ENOMEM;
			if (fs->palloc == NULL && sequential) {
				r = plan_window(fs, p, o, in->ino, idx);
				if (r < 0)
					return r;
			}
		}
		if (p->win && idx >= p->win->first && idx < p->win->first + p->win->npages) {
			plan_add_iov(p, p->win->data + (idx - p->win->first) * P + in_page, n);
			continue;
		}
		if (!p->bounce) {
			p->bounce = malloc(end - off);
			if (!p->bounce)
				return -ENOMEM;
		}
		plan_op(p, &pg->ref, idx, in_page, p->bounce + p->bounce_used, n);
		plan_add_iov(p, p->bounce + p->bounce_used, n);
		p->bounce_used += n;
	}
	return 0;
}

/*
 * After the batch: the window's pages that came are valid (the last one reads as zeros past
 * the size: it must never show what the heap held), and the read fails if a page it needs did
 * not come.
 */
static int plan_settle(struct read_plan *p, uint64_t first, uint64_t last, uint32_t P)
{
	int r = 0;

	for (size_t i = 0; i < p->nops; i++) {
		struct kvfs_xfer_op *op = &p->ops[i];
		uint64_t idx = p->op_index[i];

		if (p->win && (char *)op->buf >= p->win->data &&
		    (char *)op->buf < p->win->data + (size_t)p->win->npages * P) {
			p->win->valid[idx - p->win->first] = op->result == 0;
			if (op->len < P)
				memset((char *)op->buf + op->len, 0, P - op->len);
		}
		if (op->result && idx >= first && idx <= last)
			r = fs_xfer_errno(op->result < 0 ? op->result : -EIO);
	}
	return r;
}

/* After a reply: keep copies of whole remote pages this read fetched (window or bounce). */
static void hit_keep(struct kvfs_fs *fs, const struct read_plan *p, uint64_t ino, uint64_t P)
{
	for (size_t i = 0; i < p->nops; i++) {
		const struct kvfs_xfer_op *op = &p->ops[i];
		uint64_t idx = p->op_index[i],
			 full = p->fsize - idx * P < P ? p->fsize - idx * P : P;

		/* only whole pages: the op read from the page's start to its end (or EOF) */
		if (op->result || op->remote_off % P || op->len != full)
			continue;
		fs_hitcache_put(fs->hitcache, ino, p->version, idx, op->buf, op->len);
	}
}

#define READ_RETRIES 3

/*
 * Read: plan under the lock, one engine batch without it, then a re-check: if this node
 * changed the file meanwhile (a write or truncate bumped content_gen) what was fetched may be
 * older than that change, so the read is planned again (a few times; then it is served as a
 * read that raced the change). The reply points into the arena, the window, kept copies and
 * the bounce buffer; pins and references are dropped after it is out.
 */
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
	struct read_plan p = {0};
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end = 0, P = 0, inum;
	bool changed = false;
	int r = 0;

	(void)ino;
	if (h->kind == FS_H_STATS || h->kind == FS_H_CTL) {
		serve_buffer(req, h, size, off);
		return;
	}
	CTR(fs, reads);
	in = h->inode;
	inum = in->ino;	  /* the handle may be gone once the reply is out */
	o = in->st->open; /* stays while this handle is open */
	for (int attempt = 0; attempt < READ_RETRIES; attempt++) {
		pthread_rwlock_rdlock(&in->st->lock);
		if (o->lost) {
			pthread_rwlock_unlock(&in->st->lock);
			r = -EIO;
			goto err;
		}
		if ((uint64_t)off >= o->size) {
			pthread_rwlock_unlock(&in->st->lock);
			fuse_reply_buf(req, NULL, 0);
			return;
		}
		end = (uint64_t)off + size < o->size ? (uint64_t)off + size : o->size;
		P = o->page_size;
		r = plan_read(fs, in, (uint64_t)off, end, &p);
		pthread_rwlock_unlock(&in->st->lock);
		if (r < 0)
			goto err;
		if (!p.nops)
			break;
		/* one batch: the engine groups by peer and merges contiguous pages */
		fs_xfer_run(fs, p.ops, p.nops);
		r = plan_settle(&p, (uint64_t)off / P, (end - 1) / P, (uint32_t)P);
		if (r < 0)
			goto err;
		pthread_rwlock_rdlock(&in->st->lock);
		changed = in->st->content_gen != p.gen;
		pthread_rwlock_unlock(&in->st->lock);
		if (!changed || attempt == READ_RETRIES - 1)
			break;
		plan_release(fs, &p);
	}
	if (p.win && !changed) {
		fs_ra_install(o, p.win);
		CTR(fs, readaheads);
	}
	/* before the reply: once it is out the reader may close, and RELEASE may free o */
	atomic_store(&o->next_off, end);
	if (p.keep_hits && p.nops)
		atomic_store(&o->has_hits, true);
	fuse_reply_iov(req, p.iov, (int)p.niov);
	CTR_ADD(fs, read_bytes, end - (uint64_t)off);
	/* keep copies of what came from other nodes (o may be gone: the plan's values only) */
	if (p.keep_hits && !changed)
		hit_keep(fs, &p, inum, P);
	plan_release(fs, &p);
	return;

err:
	plan_release(fs, &p);
	CTR(fs, read_errors);
	fs_reply_err(req, r);
}
