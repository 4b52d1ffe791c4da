/* SPDX-License-Identifier: MIT */
/*
 * inode.c - the inodes the kernel holds a lookup count on, plus those in use here.
 *
 * One hash table keyed by inode number (fs->itable, guarded by fs->itable_lock); an inode
 * lives while the kernel's lookup count or an in-flight user's reference holds it, and its
 * open-file state (struct fs_istate) is allocated at its first open. Also the leases that keep
 * a file the kernel still knows alive after its name was replaced or removed (hold_target).
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

/* The inode of @ino in the table, or NULL. Caller holds fs->itable_lock. */
static struct fs_inode *itable_find(struct kvfs_fs *fs, uint64_t ino)
{
	uint64_t h = kvfs_hash_u64(ino);

	for (struct kvfs_hnode *n = kvfs_htable_first(&fs->itable, h); n;
	     n = kvfs_htable_next(n, h)) {
		struct fs_inode *in = kvfs_container_of(n, struct fs_inode, hnode);

		if (in->ino == ino)
			return in;
	}
	return NULL;
}

void fs_inode_free(struct fs_inode *in)
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
struct fs_istate *fs_inode_state(struct kvfs_fs *fs, struct fs_inode *in)
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
struct fs_inode *fs_inode_get(struct kvfs_fs *fs, uint64_t ino, bool lookup)
{
	struct fs_inode *in;

	pthread_mutex_lock(&fs->itable_lock);
	in = itable_find(fs, ino);
	if (in)
		goto found;
	in = calloc(1, sizeof(*in));
	if (!in)
		goto err_unlock;
	in->ino = ino;
	if (kvfs_htable_insert(&fs->itable, &in->hnode, kvfs_hash_u64(ino)) < 0) {
		free(in);
		goto err_unlock;
	}
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
struct fs_inode *fs_inode_find(struct kvfs_fs *fs, uint64_t ino)
{
	struct fs_inode *in;

	pthread_mutex_lock(&fs->itable_lock);
	in = itable_find(fs, ino);
	if (in)
		in->refs++;
	pthread_mutex_unlock(&fs->itable_lock);
	return in;
}

/* Drop a reference and @nlookup kernel lookups; free when nothing holds the inode. */
void fs_inode_put(struct kvfs_fs *fs, struct fs_inode *in, uint64_t nlookup)
{
	struct fs_istate *idle = NULL;
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
		kvfs_htable_remove(&fs->itable, &in->hnode);
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
		fs_inode_free(in);
}

/*
 * A rename over a file, or an unlink, removes an inode the kernel may still hold lookups on:
 * a process that resolved the name just before may be about to open or stat it, and on a local
 * file system that open would succeed on the inode it resolved. So before removing the name,
 * take a lease on the doomed file if the kernel knows it; the metadata then keeps it as an
 * orphan (openable, pages intact) until the kernel forgets the inode, where fs_inode_put() drops
 * the lease. Without this, HiCacheFile readers racing a rename-over saw ESTALE/ENOENT for a
 * key that was published all along. Returns the inode (referenced) and the lease, or NULL.
 */
struct fs_inode *fs_hold_target(struct kvfs_fs *fs, fuse_ino_t parent, const char *name,
				uint64_t *ret_lease)
{
	struct kvfs_layout *l = NULL;
	struct fs_inode *in;
	struct kvfs_attr a;
	bool known;

	if (fs->meta->ops->lookup(fs->meta, parent, name, &a) < 0 || !S_ISREG(a.mode))
		return NULL;
	in = fs_inode_find(fs, a.ino);
	if (!in)
		return NULL;
	pthread_mutex_lock(&fs->itable_lock);
	known = in->nlookup > 0 && !in->hold_lease;
	pthread_mutex_unlock(&fs->itable_lock);
	if (!known || fs->meta->ops->open(fs->meta, a.ino, fs->node, ret_lease, &l) < 0) {
		fs_inode_put(fs, in, 0);
		return NULL;
	}
	kvfs_layout_free(l);
	return in;
}

/* After the name operation: keep the lease if the target went, else give it back. */
void fs_hold_settle(struct kvfs_fs *fs, struct fs_inode *in, uint64_t lease, bool removed)
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
	fs_inode_put(fs, in, 0);
}
