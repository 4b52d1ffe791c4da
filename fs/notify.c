/* SPDX-License-Identifier: MIT */
/*
 * notify.c - the notifier thread: everything the daemon tells the kernel on its own initiative.
 *
 * Notifications must not be sent from a request handler the kernel may be waiting on with a
 * directory locked, so one thread sends them: dentry invalidations after the state machine
 * removed a name by itself (eviction), and under --cache auto the push of a file's pages into
 * the page cache after a cold direct read.
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

static void notice_add(struct kvfs_fs *fs, struct fs_notice *n)
{
	pthread_mutex_lock(&fs->notify_lock);
	n->next = fs->notices;
	fs->notices = n;
	pthread_cond_signal(&fs->notify_cond);
	pthread_mutex_unlock(&fs->notify_lock);
}

void fs_queue_push(struct kvfs_fs *fs, uint64_t ino)
{
	struct fs_notice *n = calloc(1, sizeof(*n) + 1);
	struct fs_inode *in;

	if (n) {
		n->push = true;
		n->ino = ino;
		notice_add(fs, n);
		return;
	}
	in = fs_inode_find(fs, ino);
	if (in) {
		pthread_rwlock_wrlock(&in->st->lock);
		in->st->push_queued = false;
		pthread_rwlock_unlock(&in->st->lock);
		fs_inode_put(fs, in, 0);
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

	in = fs_inode_find(fs, ino);
	if (!in)
		return; /* the kernel forgot the inode: nothing to fill */
	if (!in->st) {
		fs_inode_put(fs, in, 0);
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
	fs_inode_put(fs, in, 0);
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
