/* SPDX-License-Identifier: MIT */
/*
 * embedded.c - the `embedded` implementation of struct kvfs_meta_ops: the state machine of
 * state.c run in-process, with its LMDB store on local disk (the single-node default).
 *
 * It owns only the wrapping: one struct meta_state, the local node's identity (id 1) and the
 * borrowed allocator of the local arena. Every op forwards to the state machine, which does its
 * own locking and calls cb.removed() without locks held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "state.h"

#define LOCAL_NODE 1u

struct embedded {
	struct kvfs_meta base;	/* first: ops table */
	struct meta_state *s;	/* owned */
	uint32_t node;		/* the local node's id (1) */
	uint32_t incarnation;	/* its incarnation (atomic: a re-register changes it) */
	struct kvfs_palloc *pa; /* the local arena's allocator (borrowed) */
};

static struct meta_state *st(struct kvfs_meta *m)
{
	return ((struct embedded *)m)->s;
}

static int e_node_register(struct kvfs_meta *m, struct kvfs_node_info *info)
{
	struct embedded *e = (struct embedded *)m;

	bool local = info->id == e->node;
	int r;

	/* the local node keeps its arena's allocator; any other gets one of its own */
	r = meta_state_node_register(e->s, info, local ? e->pa : NULL);
	if (r == 0 && local)
		__atomic_store_n(&e->incarnation, info->incarnation, __ATOMIC_RELAXED);
	return r;
}

static int e_node_leave(struct kvfs_meta *m, uint32_t node)
{
	return meta_state_node_leave(st(m), node);
}

static int e_pool_create(struct kvfs_meta *m, struct kvfs_pool_attr *attr)
{
	return meta_state_pool_create(st(m), attr);
}

static int e_pool_list(struct kvfs_meta *m, struct kvfs_pool_attr **ret_pools, size_t *ret_n)
{
	return meta_state_pool_list(st(m), ret_pools, ret_n);
}

static int e_pool_get(struct kvfs_meta *m, uint32_t pool, struct kvfs_pool_attr *ret)
{
	return meta_state_pool_get(st(m), pool, ret);
}

static int e_pool_drop(struct kvfs_meta *m, const char *name, bool force)
{
	return meta_state_pool_drop(st(m), name, force);
}

static int e_lookup(struct kvfs_meta *m, uint64_t parent, const char *name,
		    struct kvfs_attr *ret_attr)
{
	return meta_state_lookup(st(m), parent, name, ret_attr);
}

static int e_getattr(struct kvfs_meta *m, uint64_t ino, struct kvfs_attr *ret_attr)
{
	return meta_state_getattr(st(m), ino, ret_attr);
}

static int e_layout(struct kvfs_meta *m, uint64_t ino, struct kvfs_layout **ret_layout)
{
	return meta_state_layout(st(m), ino, ret_layout);
}

static int e_create(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		    uint32_t uid, uint32_t gid, bool excl, struct kvfs_attr *ret_attr)
{
	return meta_state_create_file(st(m), parent, name, mode, uid, gid, excl, ret_attr);
}

static int e_mkdir(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		   uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr)
{
	return meta_state_mkdir(st(m), parent, name, mode, uid, gid, ret_attr);
}

static int e_unlink(struct kvfs_meta *m, uint64_t parent, const char *name)
{
	return meta_state_unlink(st(m), parent, name);
}

static int e_rmdir(struct kvfs_meta *m, uint64_t parent, const char *name)
{
	return meta_state_rmdir(st(m), parent, name);
}

static int e_rename(struct kvfs_meta *m, uint64_t parent, const char *name, uint64_t newparent,
		    const char *newname, unsigned flags)
{
	return meta_state_rename(st(m), parent, name, newparent, newname, flags);
}

static int e_setattr(struct kvfs_meta *m, uint64_t ino, const struct kvfs_attr *attr,
		     unsigned valid, struct kvfs_attr *ret_attr)
{
	return meta_state_setattr(st(m), ino, attr, valid, ret_attr);
}

static int e_readdir(struct kvfs_meta *m, uint64_t dir, uint64_t cookie,
		     struct kvfs_dirent *ret_ents, size_t max, size_t *ret_n)
{
	return meta_state_readdir(st(m), dir, cookie, ret_ents, max, ret_n);
}

static int e_alloc(struct kvfs_meta *m, uint64_t ino, uint64_t first, uint32_t n,
		   uint32_t prefer_node, struct kvfs_page_ref *ret_refs)
{
	return meta_state_alloc(st(m), ino, first, n, prefer_node, ret_refs);
}

static int e_commit(struct kvfs_meta *m, uint64_t ino, uint64_t size, int64_t mtime_ns,
		    const struct kvfs_page_entry *pages, size_t n, struct kvfs_attr *ret_attr)
{
	return meta_state_commit(st(m), ino, size, mtime_ns, pages, n, ret_attr);
}

static int e_abort(struct kvfs_meta *m, uint64_t ino, const struct kvfs_page_ref *refs, size_t n)
{
	return meta_state_abort(st(m), ino, refs, n);
}

static int e_open(struct kvfs_meta *m, uint64_t ino, uint32_t node, uint64_t *ret_lease,
		  struct kvfs_layout **ret_layout)
{
	return meta_state_open(st(m), ino, node, ret_lease, ret_layout);
}

static int e_close(struct kvfs_meta *m, uint64_t ino, uint64_t lease)
{
	return meta_state_close(st(m), ino, lease);
}

static int e_setxattr(struct kvfs_meta *m, uint64_t ino, const char *name, const void *value,
		      size_t len, int flags)
{
	return meta_state_setxattr(st(m), ino, name, value, len, flags);
}

static int e_getxattr(struct kvfs_meta *m, uint64_t ino, const char *name, void *buf, size_t size,
		      size_t *ret_len)
{
	return meta_state_getxattr(st(m), ino, name, buf, size, ret_len);
}

static int e_listxattr(struct kvfs_meta *m, uint64_t ino, char *buf, size_t size, size_t *ret_len)
{
	return meta_state_listxattr(st(m), ino, buf, size, ret_len);
}

static int e_removexattr(struct kvfs_meta *m, uint64_t ino, const char *name)
{
	return meta_state_removexattr(st(m), ino, name);
}

static int e_statfs(struct kvfs_meta *m, uint64_t ino, struct kvfs_statfs *ret)
{
	return meta_state_statfs(st(m), ino, ret);
}

static void e_destroy(struct kvfs_meta *m)
{
	struct embedded *e = (struct embedded *)m;

	if (!e)
		return;
	meta_state_destroy(e->s);
	free(e);
}

static const struct kvfs_meta_ops embedded_ops = {
	.name = "embedded",
	.node_register = e_node_register,
	.node_leave = e_node_leave,
	.pool_create = e_pool_create,
	.pool_list = e_pool_list,
	.pool_get = e_pool_get,
	.pool_drop = e_pool_drop,
	.lookup = e_lookup,
	.getattr = e_getattr,
	.layout = e_layout,
	.create = e_create,
	.mkdir = e_mkdir,
	.unlink = e_unlink,
	.rmdir = e_rmdir,
	.rename = e_rename,
	.setattr = e_setattr,
	.readdir = e_readdir,
	.alloc = e_alloc,
	.commit = e_commit,
	.abort = e_abort,
	.open = e_open,
	.close = e_close,
	.setxattr = e_setxattr,
	.getxattr = e_getxattr,
	.listxattr = e_listxattr,
	.removexattr = e_removexattr,
	.statfs = e_statfs,
	.destroy = e_destroy,
};

/*
 * Open the store in cfg->dir and register the local node (id 1) with a new incarnation, which
 * drops or marks lost every file that held pages of the previous run (DRAM does not survive a
 * restart) and rebuilds cfg->local_palloc from what remains. Without a local_palloc, an owned
 * allocator of local_arena_size bytes is used (useful for tools that never touch data).
 */
int kvfs_meta_embedded_create(const struct kvfs_meta_embedded_config *cfg, struct kvfs_meta **ret)
{
	struct meta_state_config sc;
	struct kvfs_node_info info;
	struct embedded *e;
	int r;

	if (!cfg || !cfg->dir || (!cfg->local_palloc && !cfg->local_arena_size))
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->base.ops = &embedded_ops;
	e->node = LOCAL_NODE;
	e->pa = cfg->local_palloc;

	memset(&sc, 0, sizeof(sc));
	sc.dir = cfg->dir;
	sc.map_size = cfg->map_size;
	sc.sync = cfg->sync;
	sc.cb = cfg->cb;
	r = meta_state_create(&sc, &e->s);
	if (r < 0)
		goto err_free;

	memset(&info, 0, sizeof(info));
	info.id = LOCAL_NODE;
	info.arena_size = cfg->local_arena_size;
	if (e->pa)
		info.arena_size = kvfs_palloc_capacity(e->pa);
	r = meta_state_node_register(e->s, &info, e->pa);
	if (r < 0)
		goto err_destroy_state;
	e->incarnation = info.incarnation;
	*ret = &e->base;
	return 0;

err_destroy_state:
	meta_state_destroy(e->s);
err_free:
	free(e);
	return r;
}

void kvfs_meta_embedded_node(struct kvfs_meta *m, uint32_t *ret_node, uint32_t *ret_incarnation)
{
	struct embedded *e = (struct embedded *)m;

	if (ret_node)
		*ret_node = e->node;
	if (ret_incarnation)
		*ret_incarnation = __atomic_load_n(&e->incarnation, __ATOMIC_RELAXED);
}
