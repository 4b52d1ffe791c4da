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

		if (pg && !fs_is_local(fs, &pg->ref) && !fs_ra_has(cur, i) &&
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

		if (pg && !fs_is_local(fs, &pg->ref) && !hit_cached(fs, o, ino, i)) {
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

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_of(fi);
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

		ra = fs_ra_get(o, gen);
		n = idx && refs ? ra_plan(fs, o, in->ino, ra, (uint64_t)off, end, &start, &npages,
					  idx, refs)
				: 0;
		if (n) {
			uint64_t size_now = o->size;

			pthread_rwlock_unlock(&in->st->lock);
			fs_ra_put(ra);
			ra = fs_ra_fetch(fs, o, start, npages, (uint32_t)P, size_now, gen, idx,
					 refs, n, &ra_err);
			fresh_ra = ra != NULL;
			pthread_rwlock_rdlock(&in->st->lock);
			if (ra && ra->gen != in->st->content_gen) {
				fs_ra_put(ra); /* written meanwhile: read what is there now */
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
		if (pg && !fs_is_local(fs, &pg->ref) && !fs_ra_has(ra, idx))
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
		} else if (fs_is_local(fs, &pg->ref)) {
			if (fs->palloc) {
				r = kvfs_palloc_pin(fs->palloc, pg->ref.off);
				if (r < 0)
					goto err_unlock;
				p.pins[p.npins++] = pg->ref.off;
			}
			plan_add_iov(&p, kvfs_arena_ptr(fs->arena, pg->ref.off + in_page), n);
		} else if (fs_ra_has(ra, idx)) {
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
		r = fs_xfer_errno(fs_xfer_run(fs, p.ops, p.nops));
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
	fs_ra_put(ra);
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
	fs_ra_put(ra);
	free(p.iov);
	free(p.pins);
	free(p.bounce);
	free(p.ops);
	free(p.op_index);
	CTR(fs, read_errors);
	fs_reply_err(req, r);
}
