/* SPDX-License-Identifier: MIT */
/*
 * io.c - moving page data: one page to or from the arena or a peer (through the transfer engine),
 * and the read-ahead window of remote pages fetched in one engine batch for a sequential
 * reader. A window is valid for the inode's content_gen it was fetched at; any local change
 * voids it.
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
 * What a reader or writer sees when moving a page failed: the node holding it is gone
 * (ESTALE, EHOSTUNREACH, ECONNREFUSED), did not answer in time (ETIMEDOUT) or broke the
 * protocol. To a file's user that is the page being unreadable: EIO, as the design promises,
 * never a network errno. ENOMEM stays what it is.
 */
int fs_xfer_errno(int r)
{
	return r < 0 && r != -ENOMEM ? -EIO : r;
}

/*
 * Run a batch; when a page sits on a node the engine does not know yet (it joined after our
 * last membership update, which comes with heartbeats), refresh the peer table from the
 * metadata service and try once more.
 */
int fs_xfer_run(struct kvfs_fs *fs, struct kvfs_xfer_op *ops, size_t n)
{
	int r = kvfs_xfer_run(fs->xfer, ops, n, 0);

	if (r == -EHOSTUNREACH && fs->refresh_peers && fs->refresh_peers(fs) == 0)
		r = kvfs_xfer_run(fs->xfer, ops, n, 0);
	return r;
}

bool fs_is_local(const struct kvfs_fs *fs, const struct kvfs_page_ref *ref)
{
	return ref->node == fs->node && ref->incarnation == fs->incarnation;
}

/* Copy @len bytes between @buf and the page @pg at @in_page, locally or via the engine. */
int fs_page_io(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t in_page, void *buf,
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
	return fs_xfer_errno(fs_xfer_run(fs, &op, 1));
}

int fs_zero_page_range(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t from,
		       uint64_t to)
{
	if (to <= from)
		return 0;
	return fs_page_io(fs, ref, from, (void *)fs->zero, to - from, true);
}

void fs_ra_put(struct fs_ra *ra)
{
	if (ra && atomic_fetch_sub(&ra->refs, 1) == 1) {
		free(ra->data);
		free(ra->valid);
		free(ra);
	}
}

/* The current window if it is still valid for @gen, with a reference; else NULL. */
struct fs_ra *fs_ra_get(struct fs_open *o, uint64_t gen)
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

bool fs_ra_has(const struct fs_ra *ra, uint64_t idx)
{
	return ra && idx >= ra->first && idx < ra->first + ra->npages && ra->valid[idx - ra->first];
}

/*
 * A new, empty read-ahead window of @npages pages from page @first, for content generation
 * @gen, with one reference for the caller. The read path fills it in its engine batch and
 * installs it with fs_ra_install(). NULL without memory.
 */
struct fs_ra *fs_ra_new(uint64_t first, uint32_t npages, uint32_t P, uint64_t gen)
{
	struct fs_ra *ra = calloc(1, sizeof(*ra));

	if (!ra)
		return NULL;
	ra->valid = calloc(npages, 1);
	ra->data = malloc((size_t)npages * P);
	if (!ra->valid || !ra->data) {
		free(ra->valid);
		free(ra->data);
		free(ra);
		return NULL;
	}
	ra->first = first;
	ra->npages = npages;
	ra->page_size = P;
	ra->gen = gen;
	atomic_store(&ra->refs, 1);
	return ra;
}

/* Make @ra (filled) the window of @o; @o takes a reference of its own. */
void fs_ra_install(struct fs_open *o, struct fs_ra *ra)
{
	struct fs_ra *old;

	atomic_fetch_add(&ra->refs, 1);
	pthread_mutex_lock(&o->ra_lock);
	old = o->ra;
	o->ra = ra;
	pthread_mutex_unlock(&o->ra_lock);
	fs_ra_put(old);
}
