/* SPDX-License-Identifier: MIT */
/*
 * xattr.c - extended attributes: user.kvfs.* are computed from the layout and read-only; other
 * user.* names are stored by the metadata (bounded per file there).
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

#define KVFS_XATTR_PREFIX "user.kvfs."

static const char *const synth_xattrs[] = {"pool",  "page_size", "pages",
					   "nodes", "tier",	 "version"};

static int synth_xattr(struct kvfs_fs *fs, fuse_ino_t ino, const char *which, char *out,
		       size_t outsz)
{
	struct kvfs_layout *l = NULL;
	struct kvfs_pool_attr pa;
	int r;

	r = fs->meta->ops->layout(fs->meta, ino, &l);
	if (r < 0)
		return r;
	if (!strcmp(which, "pool")) {
		r = fs->meta->ops->pool_get(fs->meta, l->attr.pool, &pa);
		if (r == 0)
			snprintf(out, outsz, "%s", pa.name);
	} else if (!strcmp(which, "page_size")) {
		snprintf(out, outsz, "%u", l->attr.page_size);
	} else if (!strcmp(which, "pages")) {
		snprintf(out, outsz, "%zu", l->npages);
	} else if (!strcmp(which, "tier")) {
		snprintf(out, outsz, "dram");
	} else if (!strcmp(which, "version")) {
		snprintf(out, outsz, "%llu", (unsigned long long)l->attr.version);
	} else if (!strcmp(which, "nodes")) {
		/* distinct node ids in ascending order */
		size_t used = 0;
		uint32_t last = 0;

		out[0] = 0;
		for (;;) {
			uint32_t next = UINT32_MAX;

			for (size_t i = 0; i < l->npages; i++)
				if (l->pages[i].ref.node > last && l->pages[i].ref.node < next)
					next = l->pages[i].ref.node;
			if (next == UINT32_MAX)
				break;
			used += (size_t)snprintf(out + used, outsz - used, "%s%u", used ? "," : "",
						 next);
			if (used >= outsz)
				break;
			last = next;
		}
	} else {
		r = -ENODATA;
	}
	kvfs_layout_free(l);
	return r;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct kvfs_fs *fs = fs_of(req);
	char small[1024];
	size_t len = 0;
	void *buf = NULL;
	int r;

	if (is_synthetic(ino) || ino == KVFS_ROOT_INO) {
		fs_reply_err(req, -ENODATA);
		return;
	}
	if (!strncmp(name, KVFS_XATTR_PREFIX, strlen(KVFS_XATTR_PREFIX))) {
		/* flush local writes first so pages/version describe what this node sees */
		struct fs_inode *in = fs_inode_find(fs, ino);

		if (in && in->st) {
			pthread_rwlock_wrlock(&in->st->lock);
			fs_commit_locked(fs, in);
			pthread_rwlock_unlock(&in->st->lock);
		}
		fs_inode_put(fs, in, 0);
		r = synth_xattr(fs, ino, name + strlen(KVFS_XATTR_PREFIX), small, sizeof(small));
		if (r < 0)
			goto err;
		len = strlen(small);
		if (size == 0) {
			fuse_reply_xattr(req, len);
		} else if (size < len) {
			fs_reply_err(req, -ERANGE);
		} else {
			fuse_reply_buf(req, small, len);
		}
		return;
	}
	if (strncmp(name, "user.", 5)) {
		r = -ENODATA;
		goto err;
	}
	if (size) {
		buf = malloc(size);
		if (!buf) {
			r = -ENOMEM;
			goto err;
		}
	}
	r = fs->meta->ops->getxattr(fs->meta, ino, name, buf, size, &len);
	if (r < 0)
		goto err;
	if (size == 0)
		fuse_reply_xattr(req, len);
	else
		fuse_reply_buf(req, buf, len);
	free(buf);
	return;
err:
	free(buf);
	fs_reply_err(req, r);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct kvfs_fs *fs = fs_of(req);
	size_t stored = 0, synth = 0, total;
	char *buf = NULL;
	int r;

	if (is_synthetic(ino) || ino == KVFS_ROOT_INO) {
		if (size == 0)
			fuse_reply_xattr(req, 0);
		else
			fuse_reply_buf(req, NULL, 0);
		return;
	}
	for (size_t i = 0; i < sizeof(synth_xattrs) / sizeof(synth_xattrs[0]); i++)
		synth += strlen(KVFS_XATTR_PREFIX) + strlen(synth_xattrs[i]) + 1;
	r = fs->meta->ops->listxattr(fs->meta, ino, NULL, 0, &stored);
	if (r < 0)
		goto err;
	total = synth + stored;
	if (size == 0) {
		fuse_reply_xattr(req, total);
		return;
	}
	if (size < total) {
		r = -ERANGE;
		goto err;
	}
	buf = malloc(total ? total : 1);
	if (!buf) {
		r = -ENOMEM;
		goto err;
	}
	{
		size_t used = 0;

		for (size_t i = 0; i < sizeof(synth_xattrs) / sizeof(synth_xattrs[0]); i++)
			used += (size_t)sprintf(buf + used, "%s%s", KVFS_XATTR_PREFIX,
						synth_xattrs[i]) +
				1;
		if (stored) {
			size_t got = 0;

			r = fs->meta->ops->listxattr(fs->meta, ino, buf + used, stored, &got);
			if (r < 0)
				goto err;
			used += got;
		}
		fuse_reply_buf(req, buf, used);
	}
	free(buf);
	return;
err:
	free(buf);
	fs_reply_err(req, r);
}

/*
 * May @name of @ino be set or removed? Only user.* attributes of files and directories in
 * pools are stored; the computed user.kvfs.* (and anything on the root or the control tree)
 * answer @computed_err; other namespaces EOPNOTSUPP.
 */
static int xattr_writable(fuse_ino_t ino, const char *name, int computed_err)
{
	if (is_synthetic(ino) || ino == KVFS_ROOT_INO ||
	    !strncmp(name, KVFS_XATTR_PREFIX, strlen(KVFS_XATTR_PREFIX)))
		return computed_err;
	if (strncmp(name, "user.", 5))
		return -EOPNOTSUPP;
	return 0;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
		    size_t size, int flags)
{
	struct kvfs_fs *fs = fs_of(req);
	/* setting a computed one: ENOTSUP, which cp -a and mv pass over quietly */
	int r = xattr_writable(ino, name, -EOPNOTSUPP);

	if (r == 0)
		r = fs->meta->ops->setxattr(fs->meta, ino, name, value, size, flags);
	fs_reply_err(req, r);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct kvfs_fs *fs = fs_of(req);
	int r = xattr_writable(ino, name, -EPERM);

	if (r == 0)
		r = fs->meta->ops->removexattr(fs->meta, ino, name);
	fs_reply_err(req, r);
}
