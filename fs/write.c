/* SPDX-License-Identifier: MIT */
/*
 * write.c - the write path. A page already in the file is overwritten in place; missing ones are
 * allocated from the metadata in runs (preferring this node, or spread over the cluster),
 * zero-filled where the write does not cover them, and recorded as pending until the next
 * commit (file.c). Writes to /.kvfs/ctl run a control request.
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
 * The remote side of one write (or fallocate): every transfer it needs, zero-fills of new pages
 * and data alike, goes to the engine as one batch, so a write over pages on a peer costs one
 * round trip per peer rather than one per page. Local pages are filled by memcpy as the batch
 * is built.
 */
struct wbatch {
	struct kvfs_xfer_op *ops;
	uint64_t *op_page; /* page index of each op */
	size_t nops, cap;
	struct kvfs_page_ref *fresh_ref; /* pages this request allocated, in index order */
	uint64_t *fresh;
	size_t nfresh, fresh_cap;
};

static void wbatch_fini(struct wbatch *b)
{
	free(b->ops);
	free(b->op_page);
	free(b->fresh);
	free(b->fresh_ref);
}

static int wbatch_grow(void **arr, size_t *cap, size_t want, size_t elem, void **arr2, size_t elem2)
{
	size_t ncap = *cap ? *cap : 16;
	void *n, *n2;

	if (want <= *cap)
		return 0;
	while (ncap < want)
		ncap *= 2;
	n = realloc(*arr, ncap * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	n2 = realloc(*arr2, ncap * elem2);
	if (!n2)
		return -ENOMEM;
	*arr2 = n2;
	*cap = ncap;
	return 0;
}

/* Move @len bytes of @buf to @in_page of page @idx: now if it is local, else in the batch. */
static int wbatch_put(struct kvfs_fs *fs, struct wbatch *b, const struct kvfs_page_ref *ref,
		      uint64_t idx, uint64_t in_page, const void *buf, uint64_t len)
{
	struct kvfs_xfer_op *op;
	int r;

	if (len == 0)
		return 0;
	if (fs_is_local(fs, ref)) {
		memcpy(kvfs_arena_ptr(fs->arena, ref->off + in_page), buf, len);
		return 0;
	}
	r = wbatch_grow((void **)&b->ops, &b->cap, b->nops + 1, sizeof(*b->ops),
			(void **)&b->op_page, sizeof(*b->op_page));
	if (r < 0)
		return r;
	op = &b->ops[b->nops];
	memset(op, 0, sizeof(*op));
	op->dir = KVFS_XFER_WRITE;
	op->node = ref->node;
	op->incarnation = ref->incarnation;
	op->remote_off = ref->off + in_page;
	op->buf = (void *)buf;
	op->len = (uint32_t)len;
	b->op_page[b->nops++] = idx;
	return 0;
}

/*
 * Make sure pages [first, last] of the open file exist, allocating the missing ones in runs
 * and zero-filling the parts of new pages outside [fill_from, fill_to) (byte offsets in the
 * file); remote zero-fills join @b. Caller holds in->st->lock for writing.
 */
static int alloc_pages(struct kvfs_fs *fs, struct fs_inode *in, uint64_t first, uint64_t last,
		       uint64_t fill_from, uint64_t fill_to, struct wbatch *b)
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
		r = wbatch_grow((void **)&b->fresh, &b->fresh_cap, b->nfresh + run,
				sizeof(*b->fresh), (void **)&b->fresh_ref, sizeof(*b->fresh_ref));
		if (r < 0)
			break;
		r = fs->meta->ops->alloc(fs->meta, in->ino, idx, (uint32_t)run, place_node(fs),
					 refs);
		if (r < 0)
			break;
		for (uint64_t k = 0; k < run; k++) {
			uint64_t pstart = (idx + k) * P, pend = pstart + P;
			uint64_t cov_from = fill_from > pstart ? fill_from : pstart;
			uint64_t cov_to = fill_to < pend ? fill_to : pend;

			if (!fs_pagemap_put(&o->pages, idx + k, &refs[k], true)) {
				fs->meta->ops->abort(fs->meta, in->ino, &refs[k], run - k);
				r = -ENOMEM;
				goto out;
			}
			b->fresh[b->nfresh] = idx + k;
			b->fresh_ref[b->nfresh++] = refs[k];
			o->dirty = true;
			if (cov_from >= cov_to)
				cov_from = cov_to = pend;
			r = wbatch_put(fs, b, &refs[k], idx + k, 0, fs->zero, cov_from - pstart);
			if (r == 0)
				r = wbatch_put(fs, b, &refs[k], idx + k, cov_to - pstart, fs->zero,
					       pend - cov_to);
			if (r < 0) {
				fs->meta->ops->abort(fs->meta, in->ino, &refs[k + 1], run - k - 1);
				goto out;
			}
		}
		idx += run;
	}
out:
	if (refs != stack_refs)
		free(refs);
	return r;
}

/* Drop the pages this request allocated from page @from on, and give them back. */
static void drop_fresh(struct kvfs_fs *fs, struct fs_inode *in, struct wbatch *b, uint64_t from)
{
	struct fs_open *o = in->st->open;

	for (size_t i = 0; i < b->nfresh; i++) {
		struct fs_page *pg = fs_pagemap_find(&o->pages, b->fresh[i]);

		if (b->fresh[i] < from || !pg || !pg->pending)
			continue;
		fs_pagemap_drop_one(&o->pages, b->fresh[i]);
		fs->meta->ops->abort(fs->meta, in->ino, &b->fresh_ref[i], 1);
	}
}

/*
 * Run the batch. Returns the lowest page index a transfer failed for (UINT64_MAX: none, or
 * nothing to send); the pages this request allocated from there on are dropped from the file
 * and given back, since what they hold is unknown. Caller holds in->st->lock for writing.
 */
static uint64_t wbatch_run(struct kvfs_fs *fs, struct fs_inode *in, struct wbatch *b)
{
	uint64_t bad = UINT64_MAX;

	if (b->nops) {
		fs_xfer_run(fs, b->ops, b->nops);
		for (size_t i = 0; i < b->nops; i++)
			if (b->ops[i].result && b->op_page[i] < bad)
				bad = b->op_page[i];
	}
	if (bad != UINT64_MAX)
		drop_fresh(fs, in, b, bad);
	return bad;
}

/*
 * Make sure pages [first, last] of the open file exist, zero-filled outside [fill_from,
 * fill_to). Caller holds in->st->lock for writing. Returns 0 or a negative errno (-EIO when a
 * peer could not be written; the new pages are then given back).
 */
int fs_ensure_pages(struct kvfs_fs *fs, struct fs_inode *in, uint64_t first, uint64_t last,
		    uint64_t fill_from, uint64_t fill_to)
{
	struct wbatch b = {0};
	int r;

	r = alloc_pages(fs, in, first, last, fill_from, fill_to, &b);
	if (r == 0 && wbatch_run(fs, in, &b) != UINT64_MAX)
		r = -EIO;
	if (r < 0)
		drop_fresh(fs, in, &b, 0); /* a new page's zero-fill may not have been sent */
	wbatch_fini(&b);
	return r;
}

/*
 * Write: under the inode's write lock, allocate the missing pages, copy into the local ones,
 * and send what goes to peers (new pages' zero-fills and data) as one engine batch. A page that
 * failed (a peer gone) ends the write short at that page: what went before it counts, so the
 * size covers every byte written and none beyond it is left behind the end.
 */
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
	struct wbatch b = {0};
	struct fs_inode *in;
	struct fs_open *o;
	uint64_t end, pos, P, bad;
	int r = 0;

	(void)ino;
	if (h->kind == FS_H_CTL) {
		char *reply = NULL;
		size_t len = 0;

		r = kvfs_fs_ctl(fs, buf, size, &reply, &len);
		if (r < 0) {
			fs_reply_err(req, r);
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
		fs_reply_err(req, -EBADF);
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
	r = fs_killpriv_locked(fs, in, fuse_req_ctx(req)->uid);
	if (r < 0)
		goto err_unlock;
	P = o->page_size;
	r = alloc_pages(fs, in, (uint64_t)off / P, (end - 1) / P, (uint64_t)off, end, &b);
	for (pos = (uint64_t)off; r == 0 && pos < end;) {
		uint64_t in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, pos / P);

		if (n > end - pos)
			n = end - pos;
		r = wbatch_put(fs, &b, &pg->ref, pos / P, in_page, buf + (pos - (uint64_t)off), n);
		pos += n;
	}
	if (r < 0) {
		drop_fresh(fs, in, &b, 0); /* a new page's zero-fill may not have been sent */
		goto err_unlock;
	}
	bad = wbatch_run(fs, in, &b);
	pos = bad == UINT64_MAX ? end : bad * P;
	if (pos <= (uint64_t)off) {
		r = -EIO;
		goto err_unlock;
	}
	if (pos > end)
		pos = end;
	if (pos > o->size)
		o->size = pos;
	o->dirty = true;
	o->mtime_ns = kvfs_now_ns(CLOCK_REALTIME);
	in->st->content_gen++;
	if (atomic_load(&o->has_hits)) /* copies of pages we may just have written over */
		fs_hitcache_drop_ino(fs->hitcache, in->ino);
	pthread_rwlock_unlock(&in->st->lock);
	wbatch_fini(&b);
	CTR_ADD(fs, write_bytes, pos - (uint64_t)off);
	fuse_reply_write(req, pos - (uint64_t)off);
	return;

err_unlock:
	/* pages may have been written over, or allocated and dropped again */
	in->st->content_gen++;
	pthread_rwlock_unlock(&in->st->lock);
	wbatch_fini(&b);
	CTR(fs, write_errors);
	fs_reply_err(req, r);
}
