/* SPDX-License-Identifier: MIT */
/*
 * ops.c - the FUSE lowlevel operations table of kvfs, its INIT and STATFS, the one place where an
 * error crosses into FUSE, and the set-up and tear-down of the daemon's file-system state.
 *
 * The handlers live by concern: attr.c (lookup, forget, getattr, setattr), dir.c (names and
 * listings), file.c (open, create, flush, release, fallocate and the open-file state they
 * share), read.c and write.c (the data paths), io.c (page transfers and remote read-ahead),
 * xattr.c, and notify.c (the thread that talks to the kernel behind its back). Each is thin
 * and named after the operation (fs_op_*); every error leaves through fs_reply_err(req, r)
 * with r a negative errno, flipped here and nowhere else. Namespace operations go straight to
 * the metadata ops table; data never passes through it.
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

void fs_reply_err(fuse_req_t req, int r)
{
	fuse_reply_err(req, -r);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct kvfs_fs *fs = userdata;

	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* Page-cache consistency is ours to manage (keep_cache per open), not the kernel's
	 * mtime heuristic, which would drop warm pages on every attribute refresh. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* O_TRUNC arrives inside OPEN and is done there (fs_open_file), one round trip instead of an
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

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_statfs s;
	struct statvfs sv = {0};
	int r;

	r = fs->meta->ops->statfs(fs->meta, is_synthetic(ino) ? KVFS_ROOT_INO : ino, &s);
	if (r < 0) {
		fs_reply_err(req, r);
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

const struct fuse_lowlevel_ops kvfs_fs_ops = {
	.init = op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.setattr = fs_op_setattr,
	.mknod = fs_op_mknod,
	.mkdir = fs_op_mkdir,
	.unlink = fs_op_unlink,
	.rmdir = fs_op_rmdir,
	.symlink = fs_op_symlink,
	.rename = fs_op_rename,
	.link = fs_op_link,
	.open = fs_op_open,
	.create = fs_op_create,
	.read = fs_op_read,
	.write = fs_op_write,
	.flush = fs_op_flush,
	.release = fs_op_release,
	.fsync = fs_op_fsync,
	.fallocate = fs_op_fallocate,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.fsyncdir = fs_op_fsyncdir,
	.statfs = op_statfs,
	.setxattr = fs_op_setxattr,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.removexattr = fs_op_removexattr,
};

int kvfs_fs_init(struct kvfs_fs *fs)
{
	fs_start_ns = kvfs_now_ns(CLOCK_REALTIME);
	pthread_mutex_init(&fs->itable_lock, NULL);
	pthread_mutex_init(&fs->peers_lock, NULL);
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->notify_lock, NULL);
	pthread_cond_init(&fs->notify_cond, NULL);
	return 0;
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
		fs_handle_free(fs, fs->handles);
	for (struct kvfs_hiter it = KVFS_HITER_INIT;;) {
		struct kvfs_hnode *n = kvfs_htable_iter(&fs->itable, &it);
		struct fs_inode *in;

		if (!n)
			break;
		in = kvfs_container_of(n, struct fs_inode, hnode);
		kvfs_htable_remove(&fs->itable, n);
		if (in->st && in->st->open) {
			fs_pagemap_fini(&in->st->open->pages);
			fs_ra_put(in->st->open->ra);
			free(in->st->open);
			in->st->open = NULL;
		}
		fs_inode_free(in);
	}
	kvfs_htable_fini(&fs->itable);
	pthread_cond_destroy(&fs->notify_cond);
	pthread_mutex_destroy(&fs->notify_lock);
	pthread_mutex_destroy(&fs->itable_lock);
	pthread_mutex_destroy(&fs->peers_lock);
	pthread_mutex_destroy(&fs->handles_lock);
}
