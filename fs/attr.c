/* SPDX-License-Identifier: MIT */
/*
 * attr.c - attributes: lookup, forget, getattr and setattr (chmod, chown, utimens, truncate).
 *
 * Attributes come from the metadata; a file open here may know newer ones (pending writes, or
 * a commit that landed while a reply was in flight), and fs_overlay_open() shows those. Set-id
 * bits are ours to clear (the kernel leaves it to a HANDLE_KILLPRIV file system).
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

/* Floor division: a time before 1970 has a negative second and a nanosecond in [0, 1e9). */
static void ns_to_ts(int64_t ns, struct timespec *ts)
{
	int64_t sec = ns / 1000000000ll, nsec = ns % 1000000000ll;

	if (nsec < 0) {
		sec--;
		nsec += 1000000000ll;
	}
	ts->tv_sec = sec;
	ts->tv_nsec = nsec;
}

/* Times are kept in 64-bit nanoseconds (years 1678 to 2262): later or earlier ones saturate. */
static int64_t ts_to_ns(const struct timespec *ts)
{
	int64_t ns;

	if (__builtin_mul_overflow((int64_t)ts->tv_sec, 1000000000ll, &ns) ||
	    __builtin_add_overflow(ns, (int64_t)ts->tv_nsec, &ns))
		return ts->tv_sec < 0 ? INT64_MIN : INT64_MAX;
	return ns;
}

static void attr_to_stat(const struct kvfs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink; /* 0 for a file unlinked while open (an orphan) */
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)a->size;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_blksize = a->page_size ? a->page_size : 4096;
	ns_to_ts(a->atime_ns, &st->st_atim);
	ns_to_ts(a->mtime_ns, &st->st_mtim);
	ns_to_ts(a->ctime_ns, &st->st_ctim);
}

/*
 * Attributes read from the metadata may be older than what this node knows: a file open here
 * may hold writes the metadata has not seen yet, and a commit or truncate made here may have
 * landed between the metadata read and this reply (a reader's RELEASE commits the writer's
 * pages while a GETATTR is in flight). Show the newer of the two.
 */
void fs_overlay_open(struct kvfs_fs *fs, struct kvfs_attr *a)
{
	struct fs_inode *in;

	if (!S_ISREG(a->mode))
		return;
	in = fs_inode_find(fs, a->ino);
	if (!in)
		return;
	if (!in->st) {
		fs_inode_put(fs, in, 0); /* never opened here: nothing to add */
		return;
	}
	pthread_rwlock_rdlock(&in->st->lock);
	if (in->st->last.ino == a->ino && in->st->last.version > a->version)
		*a = in->st->last;
	if (in->st->open && in->st->open->dirty) {
		a->size = in->st->open->size;
		a->blocks = (uint64_t)in->st->open->pages.count * in->st->open->page_size / 512;
		if (in->st->open->mtime_ns > a->mtime_ns)
			a->mtime_ns = a->ctime_ns = in->st->open->mtime_ns;
	}
	pthread_rwlock_unlock(&in->st->lock);
	fs_inode_put(fs, in, 0);
}

int64_t fs_start_ns;

void fs_synthetic_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = ino == FS_CTLDIR_INO ? 2 : 1;
	st->st_mode = ino == FS_CTLDIR_INO  ? S_IFDIR | 0555
		      : ino == FS_STATS_INO ? S_IFREG | 0444
					    : S_IFREG | 0600;
	st->st_blksize = 4096;
	ns_to_ts(fs_start_ns, &st->st_atim);
	st->st_mtim = st->st_ctim = st->st_atim;
}

void fs_fill_entry(struct kvfs_fs *fs, const struct kvfs_attr *a, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = a->ino;
	e->generation = 1;
	e->attr_timeout = fs->attr_timeout;
	e->entry_timeout = fs->entry_timeout;
	attr_to_stat(a, &e->attr);
}

/* Reply to a successful lookup/create/mkdir: count the kernel's new reference first. */
void fs_reply_entry(fuse_req_t req, struct kvfs_attr *a)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct fs_inode *in;

	fs_overlay_open(fs, a);
	fs_fill_entry(fs, a, &e);
	in = fs_inode_get(fs, a->ino, true);
	if (!in) {
		fs_reply_err(req, -ENOMEM);
		return;
	}
	fs_inode_put(fs, in, 0);
	if (fuse_reply_entry(req, &e) != 0)
		fs_inode_put(fs, fs_inode_find(fs, a->ino), 1);
}

void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_attr a;
	int r;

	CTR(fs, lookups);
	if ((parent == KVFS_ROOT_INO && !strcmp(name, FS_CTLDIR_NAME)) ||
	    (parent == FS_CTLDIR_INO && (!strcmp(name, "stats") || !strcmp(name, "ctl")))) {
		struct fuse_entry_param e = {0};

		e.ino = parent == KVFS_ROOT_INO	 ? FS_CTLDIR_INO
			: !strcmp(name, "stats") ? FS_STATS_INO
						 : FS_CTL_INO;
		e.generation = 1;
		fs_synthetic_attr(e.ino, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	if (parent == FS_CTLDIR_INO) {
		fs_reply_err(req, -ENOENT);
		return;
	}
	if (strlen(name) > KVFS_NAME_MAX) {
		fs_reply_err(req, -ENAMETOOLONG);
		return;
	}
	r = fs->meta->ops->lookup(fs->meta, parent, name, &a);
	if (r == -ENOENT) {
		/* a negative entry: the kernel remembers the miss until a create here */
		struct fuse_entry_param e = {0};

		e.entry_timeout = fs->entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	fs_reply_entry(req, &a);
}

void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct kvfs_fs *fs = fs_of(req);

	if (!is_synthetic(ino) && ino != KVFS_ROOT_INO)
		fs_inode_put(fs, fs_inode_find(fs, ino), nlookup);
	fuse_reply_none(req);
}

void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct kvfs_fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++) {
		fuse_ino_t ino = forgets[i].ino;

		if (!is_synthetic(ino) && ino != KVFS_ROOT_INO)
			fs_inode_put(fs, fs_inode_find(fs, ino), forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_attr a;
	struct stat st;
	int r;

	CTR(fs, getattrs);
	if (is_synthetic(ino)) {
		fs_synthetic_attr(ino, &st);
		fuse_reply_attr(req, &st, 1.0);
		return;
	}
	r = fs->meta->ops->getattr(fs->meta, ino, &a);
	if (r < 0) {
		fs_reply_err(req, stale(r));
		return;
	}
	fs_overlay_open(fs, &a);
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fs->attr_timeout);
}

/*
 * The mode a regular file keeps after a write or truncate by @uid: as on a local file system,
 * S_ISUID goes, and S_ISGID where group-execute is set (without it S_ISGID marks mandatory
 * locking and stays), unless the caller may keep them (CAP_FSETID; here: root). kvfs negotiates
 * FUSE_CAP_HANDLE_KILLPRIV, so the kernel leaves this to us on truncate and chown, and its
 * direct-I/O writes never do it at all.
 */
static uint32_t strip_setid(uint32_t mode)
{
	if (!S_ISREG(mode))
		return mode;
	mode &= ~(uint32_t)S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		mode &= ~(uint32_t)S_ISGID;
	return mode;
}

uint32_t fs_killpriv_mode(uint32_t mode, uid_t uid)
{
	return uid == 0 ? mode : strip_setid(mode);
}

/*
 * chmod, chown, utimens and truncate. A truncate goes through the file's open state (set up for
 * the call if the file is not open here); the other changes commit this node's pending writes
 * first, so that an explicit mtime is not overwritten by a later commit of older writes.
 */
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kvfs_attr want = {0}, a;
	struct fs_inode *in;
	unsigned valid = 0;
	struct stat st;
	int r = 0;

	if (is_synthetic(ino)) {
		fs_reply_err(req, -EPERM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		want.mode = attr->st_mode;
		valid |= KVFS_SET_MODE;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		want.uid = attr->st_uid;
		valid |= KVFS_SET_UID;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		want.gid = attr->st_gid;
		valid |= KVFS_SET_GID;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		want.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW) ? kvfs_now_ns(CLOCK_REALTIME)
								   : ts_to_ns(&attr->st_atim);
		valid |= KVFS_SET_ATIME;
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		want.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW) ? kvfs_now_ns(CLOCK_REALTIME)
								   : ts_to_ns(&attr->st_mtim);
		valid |= KVFS_SET_MTIME;
	}

	if (to_set & FUSE_SET_ATTR_SIZE) {
		in = fs_inode_get(fs, ino, false);
		if (!in || !fs_inode_state(fs, in)) {
			fs_inode_put(fs, in, 0);
			fs_reply_err(req, -ENOMEM);
			return;
		}
		/* ftruncate(2) (a file handle) changes mtime and ctime even at the same size, as
		 * on a local file system; the kernel does not send MTIME with it, so say it here */
		r = fs_truncate_inode(fs, in, (uint64_t)attr->st_size, fi ? TRUNC_TIMES : 0,
				      ctx->uid, &a);
		fs_inode_put(fs, in, 0);
		if (r < 0)
			goto out;
	}
	if (!valid) {
		if (!(to_set & FUSE_SET_ATTR_SIZE))
			r = fs->meta->ops->getattr(fs->meta, ino, &a);
		goto reply;
	}

	in = fs_inode_find(fs, ino);
	if (in && !in->st) {
		fs_inode_put(fs, in, 0);
		in = NULL;
	}
	if (in) {
		pthread_rwlock_wrlock(&in->st->lock);
		r = fs_commit_locked(fs, in);
	}
	/* chown of a regular file clears its set-id bits, whoever calls (chown(2), Linux) */
	if (r == 0 && (valid & (KVFS_SET_UID | KVFS_SET_GID)) && !(valid & KVFS_SET_MODE)) {
		r = fs->meta->ops->getattr(fs->meta, ino, &a);
		if (r == 0 && strip_setid(a.mode) != a.mode) {
			want.mode = strip_setid(a.mode);
			valid |= KVFS_SET_MODE;
		}
	}
	if (r == 0)
		r = fs->meta->ops->setattr(fs->meta, ino, &want, valid, &a);
	if (in) {
		if (r == 0 && in->st->open) {
			if (valid & KVFS_SET_MTIME)
				in->st->open->mtime_ns = want.mtime_ns;
			in->st->open->mode = a.mode;
		}
		pthread_rwlock_unlock(&in->st->lock);
		fs_inode_put(fs, in, 0);
	}
reply:
	if (r < 0)
		goto out;
	fs_overlay_open(fs, &a);
	attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, fs->attr_timeout);
	return;
out:
	fs_reply_err(req, stale(r));
}
