/* SPDX-License-Identifier: MIT */
/*
 * dir.c - names and listings: mkdir, mknod, unlink, rmdir, rename (link and symlink refused), and
 * opendir/readdir/readdirplus, streamed from the metadata in batches, with the synthetic
 * /.kvfs directory listed in the format the kernel asked for.
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

int fs_check_name(fuse_ino_t parent, const char *name)
{
	if (strlen(name) > KVFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (parent == FS_CTLDIR_INO || (parent == KVFS_ROOT_INO && !strcmp(name, FS_CTLDIR_NAME)))
		return -EPERM;
	return 0;
}

void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct kvfs_attr a;
	int r;

	CTR(fs, mkdirs);
	r = fs_check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->mkdir(fs->meta, parent, name,
					 (mode & ~ctx->umask & 07777) | S_IFDIR, ctx->uid, ctx->gid,
					 &a);
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	fs_reply_entry(req, &a);
}

/*
 * Create the regular file @name in @parent for the caller of @req (its umask, uid and gid),
 * failing with -EEXIST if the name is taken: MKNOD and CREATE both make files this way.
 * Returns 0 and the new file's attributes, or a negative errno.
 */
int fs_create_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct kvfs_attr *ret_attr)
{
	struct kvfs_fs *fs = fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int r;

	CTR(fs, creates);
	r = fs_check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->create(fs->meta, parent, name,
					  (mode & ~ctx->umask & 07777) | S_IFREG, ctx->uid,
					  ctx->gid, true, ret_attr);
	return r;
}

void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct kvfs_attr a;
	int r;

	(void)rdev;
	/* only regular files and directories live in a pool */
	if (!S_ISREG(mode)) {
		fs_reply_err(req, -EPERM);
		return;
	}
	r = fs_create_file(req, parent, name, mode, &a);
	if (r < 0) {
		fs_reply_err(req, r);
		return;
	}
	fs_reply_entry(req, &a);
}

void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_inode *held = NULL;
	uint64_t lease = 0;
	int r;

	CTR(fs, unlinks);
	r = fs_check_name(parent, name);
	if (r == 0) {
		held = fs_hold_target(fs, parent, name, &lease);
		r = fs->meta->ops->unlink(fs->meta, parent, name);
		fs_hold_settle(fs, held, lease, r == 0);
	}
	fs_reply_err(req, r);
}

void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	int r;

	CTR(fs, rmdirs);
	r = fs_check_name(parent, name);
	if (r == 0)
		r = fs->meta->ops->rmdir(fs->meta, parent, name);
	fs_reply_err(req, r);
}

void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags)
{
	struct kvfs_fs *fs = fs_of(req);
	unsigned kflags = 0;
	int r;

	CTR(fs, renames);
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fs_reply_err(req, -EINVAL);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		kflags |= KVFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		kflags |= KVFS_RENAME_EXCHANGE;
	r = fs_check_name(parent, name);
	if (r == 0)
		r = fs_check_name(newparent, newname);
	if (r == 0) {
		struct fs_inode *held = NULL;
		uint64_t lease = 0;

		if (!kflags)
			held = fs_hold_target(fs, newparent, newname, &lease);
		r = fs->meta->ops->rename(fs->meta, parent, name, newparent, newname, kflags);
		fs_hold_settle(fs, held, lease, r == 0);
	}
	fs_reply_err(req, r);
}

/* Hard links and symlinks: a page pool holds regular files and directories only. */
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fs_reply_err(req, -EPERM);
}

void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fs_reply_err(req, -EPERM);
}

void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);
	struct fs_handle *h = fs_handle_new(fs, FS_H_DIR);

	(void)ino;
	if (!h) {
		fs_reply_err(req, -ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)h;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) != 0)
		fs_handle_free(fs, h);
}

#define DIRENT_BATCH 128

/*
 * Offsets handed to the kernel: 1 after ".", 2 after "..", cookie + 2 after an entry whose
 * metadata cookie is `cookie`.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct kvfs_fs *fs = fs_of(req);
	struct kvfs_dirent *ents = NULL;
	char *buf;
	size_t used = 0;
	int r = 0;

	CTR(fs, readdirs);
	buf = malloc(size);
	if (!buf) {
		fs_reply_err(req, -ENOMEM);
		return;
	}
	if (ino == FS_CTLDIR_INO) {
		static const char *const names[] = {".", "..", "stats", "ctl"};
		static const fuse_ino_t inos[] = {FS_CTLDIR_INO, KVFS_ROOT_INO, FS_STATS_INO,
						  FS_CTL_INO};

		for (off_t i = off; i < 4; i++) {
			struct fuse_entry_param e = {0};
			size_t n;

			/* READDIRPLUS wants entries in its own format: a plain dirent there made
			 * `ls .kvfs` list nothing. "." and ".." carry no entry (ino 0): the
			 * kernel does not instantiate them; stats and ctl it does, as a lookup
			 * would (forget ignores synthetic inodes). */
			fs_synthetic_attr(inos[i], &e.attr);
			if (i == 1) { /* the root: a directory */
				e.attr.st_ino = KVFS_ROOT_INO;
				e.attr.st_mode = S_IFDIR | 0755;
			}
			if (plus) {
				e.ino = i >= 2 ? inos[i] : 0;
				e.generation = 1;
				n = fuse_add_direntry_plus(req, buf + used, size - used, names[i],
							   &e, i + 1);
			} else {
				n = fuse_add_direntry(req, buf + used, size - used, names[i],
						      &e.attr, i + 1);
			}
			if (n > size - used)
				break;
			used += n;
		}
		goto reply;
	}

	while (off < 2) {
		struct stat st = {0};
		struct fuse_entry_param e = {0};
		size_t n;

		st.st_ino = off == 0 ? ino : KVFS_ROOT_INO;
		st.st_mode = S_IFDIR;
		e.attr = st;
		if (plus)
			n = fuse_add_direntry_plus(req, buf + used, size - used,
						   off == 0 ? "." : "..", &e, off + 1);
		else
			n = fuse_add_direntry(req, buf + used, size - used, off == 0 ? "." : "..",
					      &st, off + 1);
		if (n > size - used)
			goto reply;
		used += n;
		off++;
	}

	ents = malloc(DIRENT_BATCH * sizeof(*ents));
	if (!ents) {
		r = -ENOMEM;
		goto err;
	}
	for (uint64_t cookie = (uint64_t)off - 2;;) {
		size_t got = 0, want;

		/* entries are about 32-48 bytes in the reply: do not fetch far more than fits */
		want = (size - used) / 32 + 1;
		if (want > DIRENT_BATCH)
			want = DIRENT_BATCH;
		r = fs->meta->ops->readdir(fs->meta, ino, cookie, ents, want, &got);
		if (r < 0) {
			if (used)
				break; /* deliver what we have; the error comes back next call */
			goto err;
		}
		if (!got)
			break;
		for (size_t i = 0; i < got; i++) {
			struct kvfs_dirent *d = &ents[i];
			off_t next = (off_t)(d->cookie + 2);
			size_t n;

			if (plus) {
				struct fuse_entry_param e;

				fs_overlay_open(fs, &d->attr);
				fs_fill_entry(fs, &d->attr, &e);
				n = fuse_add_direntry_plus(req, buf + used, size - used, d->name,
							   &e, next);
				if (n > size - used)
					goto reply;
				/* the kernel now holds a lookup on it */
				fs_inode_put(fs, fs_inode_get(fs, d->attr.ino, true), 0);
			} else {
				struct stat st = {0};

				st.st_ino = d->attr.ino;
				st.st_mode = d->attr.mode;
				n = fuse_add_direntry(req, buf + used, size - used, d->name, &st,
						      next);
				if (n > size - used)
					goto reply;
			}
			used += n;
			cookie = d->cookie;
		}
	}
reply:
	fuse_reply_buf(req, buf, used);
	free(ents);
	free(buf);
	return;
err:
	free(ents);
	free(buf);
	fs_reply_err(req, r);
}

void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct kvfs_fs *fs = fs_of(req);

	(void)ino;
	fs_handle_free(fs, fs_handle_of(fi));
	fs_reply_err(req, 0);
}

void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fs_reply_err(req, 0);
}
