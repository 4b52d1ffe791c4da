/* SPDX-License-Identifier: MIT */
/*
 * ops_i.h - what the files of the FUSE operations (ops.c, attr.c, dir.c, file.c, inode.c, io.c,
 * read.c, write.c, xattr.c, notify.c) share: small helpers, and each file's exports, with their
 * contracts above their definitions. Private to fs/; the rest of the daemon sees fs_i.h.
 */
#pragma once

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <stdint.h>
#include <time.h>

#include "fs_i.h"
#include "util.h"

struct kvfs_xfer_op;

#define CTR(fs, name)	     atomic_fetch_add_explicit(&(fs)->ctr.name, 1, memory_order_relaxed)
#define CTR_ADD(fs, name, n) atomic_fetch_add_explicit(&(fs)->ctr.name, (n), memory_order_relaxed)

static inline struct kvfs_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * An inode-based operation on an inode the metadata no longer knows: its name was replaced or
 * removed between the kernel's lookup and this call. ESTALE makes the VFS walk the path again
 * with LOOKUP_REVAL (open, stat), where ENOENT would fail a name that exists.
 */
static inline int stale(int r)
{
	return r == -ENOENT ? -ESTALE : r;
}

static inline bool is_synthetic(fuse_ino_t ino)
{
	return ino == FS_CTLDIR_INO || ino == FS_STATS_INO || ino == FS_CTL_INO;
}

static inline uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

enum {
	TRUNC_TIMES = 1 << 0, /* O_TRUNC, ftruncate: mtime and ctime change even at the same size */
};

/* Pushes and dentry invalidations waiting for the notifier thread (notify.c). */
struct fs_notice {
	struct fs_notice *next;
	bool push; /* push ino's pages into the page cache; else drop parent/name */
	uint64_t parent, ino;
	char name[];
};

/* When the daemon started: the times of the synthetic /.kvfs files. */
extern int64_t fs_start_ns;

/* ops.c: reply to @req with the error @r, a negative errno (0: success of a no-data op). */
void fs_reply_err(fuse_req_t req, int r);

/* inode.c */
void fs_inode_free(struct fs_inode *in);
struct fs_istate *fs_inode_state(struct kvfs_fs *fs, struct fs_inode *in);
struct fs_inode *fs_inode_get(struct kvfs_fs *fs, uint64_t ino, bool lookup);
struct fs_inode *fs_inode_find(struct kvfs_fs *fs, uint64_t ino);
void fs_inode_put(struct kvfs_fs *fs, struct fs_inode *in, uint64_t nlookup);
struct fs_inode *fs_hold_target(struct kvfs_fs *fs, fuse_ino_t parent, const char *name,
				uint64_t *ret_lease);
void fs_hold_settle(struct kvfs_fs *fs, struct fs_inode *in, uint64_t lease, bool removed);

/* attr.c */
void fs_overlay_open(struct kvfs_fs *fs, struct kvfs_attr *a);
void fs_synthetic_attr(fuse_ino_t ino, struct stat *st);
void fs_fill_entry(struct kvfs_fs *fs, const struct kvfs_attr *a, struct fuse_entry_param *e);
void fs_reply_entry(fuse_req_t req, struct kvfs_attr *a);
void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
uint32_t fs_killpriv_mode(uint32_t mode, uid_t uid);
void fs_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		   struct fuse_file_info *fi);

/* file.c */
int fs_commit_locked(struct kvfs_fs *fs, struct fs_inode *in);
int fs_killpriv_locked(struct kvfs_fs *fs, struct fs_inode *in, uid_t uid);
int fs_truncate_inode(struct kvfs_fs *fs, struct fs_inode *in, uint64_t size, unsigned how,
		      uid_t uid, struct kvfs_attr *ret_attr);
struct fs_handle *fs_handle_new(struct kvfs_fs *fs, enum fs_handle_kind kind);
void fs_handle_free(struct kvfs_fs *fs, struct fs_handle *h);
int fs_open_file(struct kvfs_fs *fs, fuse_ino_t ino, struct fuse_file_info *fi, bool trunc,
		 uid_t uid, struct fs_handle **ret_h);
void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  struct fuse_file_info *fi);
struct fs_handle *fs_handle_of(struct fuse_file_info *fi);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);

/* dir.c */
int fs_check_name(fuse_ino_t parent, const char *name);
int fs_create_file(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		   struct kvfs_attr *ret_attr);
void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void fs_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		  const char *newname, unsigned int flags);
void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi);
void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* io.c */
int fs_xfer_errno(int r);
int fs_xfer_run(struct kvfs_fs *fs, struct kvfs_xfer_op *ops, size_t n);
bool fs_is_local(const struct kvfs_fs *fs, const struct kvfs_page_ref *ref);
int fs_page_io(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t in_page, void *buf,
	       size_t len, bool write);
int fs_zero_page_range(struct kvfs_fs *fs, const struct kvfs_page_ref *ref, uint64_t from,
		       uint64_t to);
void fs_ra_put(struct fs_ra *ra);
struct fs_ra *fs_ra_get(struct fs_open *o, uint64_t gen);
bool fs_ra_has(const struct fs_ra *ra, uint64_t idx);
struct fs_ra *fs_ra_new(uint64_t first, uint32_t npages, uint32_t P, uint64_t gen);
void fs_ra_install(struct fs_open *o, struct fs_ra *ra);

/* read.c */
void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);

/* write.c */
int fs_ensure_pages(struct kvfs_fs *fs, struct fs_inode *in, uint64_t first, uint64_t last,
		    uint64_t fill_from, uint64_t fill_to);
void fs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		 struct fuse_file_info *fi);

/* xattr.c */
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* notify.c */
void fs_queue_push(struct kvfs_fs *fs, uint64_t ino);
