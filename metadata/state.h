/* SPDX-License-Identifier: MIT */
/*
 * state.h - the metadata state machine's internal API (private to metadata/).
 *
 * One struct meta_state holds the whole cluster's metadata: nodes (id, incarnation, arena size,
 * address and the page allocator of each), pools, inodes with their page maps, directory entries
 * and xattrs. It is authoritative in memory and written through to LMDB: every mutating call
 * commits one LMDB write transaction before it returns. embedded.c wraps it into struct
 * kvfs_meta_ops for in-process use; the kvfs-meta HTTP server will call the same functions.
 *
 * The functions mirror struct kvfs_meta_ops one to one (same parameters, errors and ownership;
 * see meta.h) with struct meta_state in place of struct kvfs_meta. All are thread-safe: each
 * takes the state lock for its duration and never calls out with it held. The removed()
 * callback of the config is called after the lock is dropped, from the thread whose call
 * removed the names (eviction, a lost node, a forced pool drop).
 *
 * If a write to the store fails after the in-memory state was changed (disk or map full, I/O
 * error), memory and disk may disagree: the state machine then refuses every further mutation
 * with -EIO (reads still work) until it is recreated, which reloads what the store holds.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "meta.h"

struct kvfs_palloc;
struct meta_state;

struct meta_state_config {
	const char *dir;	       /* LMDB environment directory, created if missing */
	uint64_t map_size;	       /* 0 = 8 GiB */
	bool sync;		       /* fsync every commit */
	struct kvfs_meta_callbacks cb; /* may have a NULL removed() */
};

/*
 * Open the store in cfg->dir (creating it), load everything into memory and return the state.
 * No node is alive until meta_state_node_register() is called for it. Takes an exclusive
 * flock on "<dir>/kvfs-meta.lock": a second state machine on the same directory gets -EBUSY.
 * Returns 0 and *ret, -EINVAL/-EIO for an incompatible or corrupt store, -ENOMEM, or another
 * negative errno from the file system.
 */
int meta_state_create(const struct meta_state_config *cfg, struct meta_state **ret);

/* Close the store and free everything. Owned allocators are destroyed; borrowed ones are not
 * touched. Accepts NULL. */
void meta_state_destroy(struct meta_state *s);

/*
 * Register (or re-register) a node. info->id == 0 assigns a new id; otherwise that node (known or
 * not) gets a new incarnation (its persisted counter + 1). @pa is the node's allocator, borrowed
 * for the node's lifetime in this state machine; NULL creates an owned one of info->arena_size.
 * Before returning, every file holding a page of an older incarnation of the node is dropped
 * (lru pools) or marked KVFS_ATTR_LOST with those pages removed (none pools), pending
 * allocations of older incarnations are discarded, and the allocator is rebuilt from the pages
 * of the node that remain valid. Fills info->id and info->incarnation.
 */
int meta_state_node_register(struct meta_state *s, struct kvfs_node_info *info,
			     struct kvfs_palloc *pa);
/* The node's pages are gone: drop/mark lost its files, drop its leases and pending pages and
 * forget its allocator. -ENOENT for an unknown node. */
int meta_state_node_leave(struct meta_state *s, uint32_t node);
/* The node's id, incarnation, arena size and address. -ENOENT when unknown. */
int meta_state_node_get(struct meta_state *s, uint32_t node, struct kvfs_node_info *ret);

/* As meta_state_node_leave(), but only if @incarnation (0 = any) is the node's current one:
 * -ESTALE otherwise, and nothing changes. A node that left is marked dead in the store: its
 * incarnation can never be resumed, only replaced by a new register. */
int meta_state_node_leave_inc(struct meta_state *s, uint32_t node, uint32_t incarnation);

/*
 * Make a known node alive again with its current @incarnation, without a new incarnation: used
 * by kvfs-meta after its own restart, when a node that kept running heartbeats again. Its pages
 * stay valid and an owned allocator of its arena size is rebuilt from them. Returns 0 when the
 * node is alive with @incarnation afterwards (also when it already was), -ESTALE when the
 * incarnation is not the current one or the node left or was declared dead (it must register
 * again), -ENOENT for an unknown node, -ENOMEM.
 */
int meta_state_node_resume(struct meta_state *s, uint32_t node, uint32_t incarnation);

/* One node as meta_state_node_list() reports it. */
struct meta_state_node {
	struct kvfs_node_info info;
	bool alive;	   /* has an allocator: registered (or resumed) and not left */
	bool dead;	   /* left or declared dead since its last register */
	uint64_t capacity; /* arena bytes (0 when not alive) */
	uint64_t free;	   /* free arena bytes (0 when not alive) */
};

/* Every node ever registered, alive or not. *ret_nodes is malloc'd (free it). */
int meta_state_node_list(struct meta_state *s, struct meta_state_node **ret_nodes, size_t *ret_n);

int meta_state_pool_create(struct meta_state *s, struct kvfs_pool_attr *attr);
int meta_state_pool_list(struct meta_state *s, struct kvfs_pool_attr **ret_pools, size_t *ret_n);
int meta_state_pool_get(struct meta_state *s, uint32_t pool, struct kvfs_pool_attr *ret);
int meta_state_pool_drop(struct meta_state *s, const char *name, bool force);

int meta_state_lookup(struct meta_state *s, uint64_t parent, const char *name,
		      struct kvfs_attr *ret_attr);
int meta_state_getattr(struct meta_state *s, uint64_t ino, struct kvfs_attr *ret_attr);
int meta_state_layout(struct meta_state *s, uint64_t ino, struct kvfs_layout **ret_layout);
int meta_state_create_file(struct meta_state *s, uint64_t parent, const char *name, uint32_t mode,
			   uint32_t uid, uint32_t gid, bool excl, struct kvfs_attr *ret_attr);
int meta_state_mkdir(struct meta_state *s, uint64_t parent, const char *name, uint32_t mode,
		     uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr);
int meta_state_unlink(struct meta_state *s, uint64_t parent, const char *name);
int meta_state_rmdir(struct meta_state *s, uint64_t parent, const char *name);
int meta_state_rename(struct meta_state *s, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, unsigned flags);
int meta_state_setattr(struct meta_state *s, uint64_t ino, const struct kvfs_attr *attr,
		       unsigned valid, struct kvfs_attr *ret_attr);
int meta_state_readdir(struct meta_state *s, uint64_t dir, uint64_t cookie,
		       struct kvfs_dirent *ret_ents, size_t max, size_t *ret_n);

int meta_state_alloc(struct meta_state *s, uint64_t ino, uint64_t first, uint32_t n,
		     uint32_t prefer_node, struct kvfs_page_ref *ret_refs);
int meta_state_commit(struct meta_state *s, uint64_t ino, uint64_t size, int64_t mtime_ns,
		      const struct kvfs_page_entry *pages, size_t n, struct kvfs_attr *ret_attr);
int meta_state_abort(struct meta_state *s, uint64_t ino, const struct kvfs_page_ref *refs,
		     size_t n);

int meta_state_open(struct meta_state *s, uint64_t ino, uint32_t node, uint64_t *ret_lease,
		    struct kvfs_layout **ret_layout);
int meta_state_close(struct meta_state *s, uint64_t ino, uint64_t lease);

int meta_state_setxattr(struct meta_state *s, uint64_t ino, const char *name, const void *value,
			size_t len, int flags);
int meta_state_getxattr(struct meta_state *s, uint64_t ino, const char *name, void *buf,
			size_t size, size_t *ret_len);
int meta_state_listxattr(struct meta_state *s, uint64_t ino, char *buf, size_t size,
			 size_t *ret_len);
int meta_state_removexattr(struct meta_state *s, uint64_t ino, const char *name);

int meta_state_statfs(struct meta_state *s, uint64_t ino, struct kvfs_statfs *ret);

/* Memory accounting for tests and stats: inodes held and bytes of page-map entries. */
struct meta_state_stats {
	uint64_t inodes;
	uint64_t dirents;
	uint64_t leases;
	uint64_t orphans;
};
void meta_state_get_stats(struct meta_state *s, struct meta_state_stats *ret);
