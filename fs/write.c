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
 * Make sure pages [first, last] of the open file exist, allocating the missing ones in runs
 * and zero-filling the parts of new pages outside [fill_from, fill_to) (byte offsets in the
 * file). Caller holds in->st->lock for writing.
 */
int fs_ensure_pages(struct kvfs_fs *fs, struct fs_inode *in, uint64_t first, uint64_t last,
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
				r = fs_zero_page_range(fs, &refs[k], 0, P);
			} else {
				r = fs_zero_page_range(fs, &refs[k], 0, cov_from - pstart);
				if (r == 0)
					r = fs_zero_page_range(fs, &refs[k], cov_to - pstart, P);
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

void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
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
	r = fs_ensure_pages(fs, in, (uint64_t)off / P, (end - 1) / P, (uint64_t)off, end);
	if (r < 0)
		goto err_unlock;
	for (pos = (uint64_t)off; pos < end;) {
		uint64_t in_page = pos % P, n = P - in_page;
		struct fs_page *pg = fs_pagemap_find(&o->pages, pos / P);

		if (n > end - pos)
			n = end - pos;
		r = fs_page_io(fs, &pg->ref, in_page, (void *)(buf + (pos - (uint64_t)off)), n,
			       true);
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
	fs_reply_err(req, r);
}
