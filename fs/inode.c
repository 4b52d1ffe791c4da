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
struct fs_inode *fs_inode_find(struct kvfs_fs *fs, uint64_t ino)
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
void fs_inode_put(struct kvfs_fs *fs, struct fs_inode *in, uint64_t nlookup)
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
