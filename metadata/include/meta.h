/* SPDX-License-Identifier: MIT */
/*
 * meta.h - the metadata ops table: namespace, layout, allocation and commit for kvfs.
 *
 * Every caller outside metadata/ (the FUSE daemon, kvfsctl through the daemon) goes through
 * struct kvfs_meta_ops. Two implementations fill it: `embedded` runs the state machine
 * in-process with its LMDB on local disk (the single-node default), and `http` (meta_http.h)
 * talks to kvfs-meta, which runs the same state machine. Callers never know which, beyond the
 * constructor they call; slots a backend cannot fill stay NULL and answer -EOPNOTSUPP.
 *
 * The model, after 3FS's KV backend:
 *   - The root (KVFS_ROOT_INO) holds one directory per pool. Each pool fixes a page size.
 *   - A regular file is a size plus a sparse page map: page index i -> (node, incarnation,
 *     arena offset) covering bytes [i*P, (i+1)*P).
 *   - Writers call alloc() for pages they are about to fill (invisible to others), write the
 *     bytes through the transfer engine, then commit() the size, times and pages; commit is
 *     idempotent. abort() releases pages that were allocated and never committed.
 *   - open() takes a lease that protects the file from eviction; close() drops it. An unlinked
 *     file with leases lives on (nlink 0) until its last close.
 *   - When an allocation does not fit, an `lru` pool evicts its least recently used closed
 *     files (whole); a `none` pool fails with -ENOSPC.
 *   - Pages are owned by (node, incarnation). When a node restarts with a new incarnation,
 *     files holding pages of an older incarnation of it are dropped (lru pools) or marked lost
 *     (none pools: size kept, reads fail with -EIO), never served as garbage.
 *
 * Errors are negative errnos: -ENOENT missing, -EEXIST exists, -ENOTDIR/-EISDIR type,
 * -ENOTEMPTY, -ENAMETOOLONG (name > 255 bytes), -EINVAL bad input, -ENOSPC pool full,
 * -EFBIG beyond the pool's max file size, -EIO lost data, -ESTALE stale node/generation,
 * -EPERM operation not allowed at the root (e.g. a regular file there), -ENOTSUP unsupported.
 *
 * All operations are thread-safe and may block on disk (LMDB) or the network (http); none
 * calls back into the caller except through struct kvfs_meta_callbacks.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVFS_ROOT_INO	     1ull
#define KVFS_NAME_MAX	     255
#define KVFS_POOL_NAME_MAX   64
#define KVFS_XATTR_COUNT_MAX 1024	 /* per file: user xattrs */
#define KVFS_XATTR_NAMES_MAX (64u << 10) /* per file: names + their NULs (XATTR_LIST_MAX) */
/* per file: values; twice XATTR_SIZE_MAX, so a full-size value still has company */
#define KVFS_XATTR_VALUES_MAX (128u << 10)
/* capacity and max_file_size bound: sizes cross JSON as signed 64-bit integers, and 4 EiB is far
 * above any arena */
#define KVFS_POOL_SIZE_MAX (1ull << 62)
#define KVFS_FIRST_INO	   16ull /* inode numbers below this are reserved for the daemon */

struct kvfs_palloc;

enum kvfs_evict_policy {
	KVFS_EVICT_LRU = 0,
	KVFS_EVICT_NONE = 1,
};

struct kvfs_pool_attr {
	uint32_t id; /* out: assigned by the state machine, never reused */
	char name[KVFS_POOL_NAME_MAX + 1];
	uint32_t page_size; /* power of two, 64 KiB .. 16 MiB; 0 = default 1 MiB */
	uint64_t capacity;  /* max bytes of pages this pool may hold; 0 = no limit but the arena */
	uint64_t max_file_size; /* 0 = default (16 TiB) */
	uint8_t evict;		/* enum kvfs_evict_policy */
	uint64_t root_ino;	/* out: the pool's directory */
	/* out, from pool_list/pool_stat: */
	uint64_t used;	    /* bytes of committed + allocated pages */
	uint64_t files;	    /* regular files */
	uint64_t evictions; /* files evicted since creation */
	uint64_t evicted_bytes;
};

/*
 * Whether @name may name a pool (a directory at the root, also a word in kvfsctl's output and in
 * metrics labels): 1 .. KVFS_POOL_NAME_MAX bytes, not "." or "..", no '/' and no control
 * characters (below 0x20, and 0x7f). Returns 0, -ENAMETOOLONG (too long) or -EINVAL.
 */
static inline int kvfs_pool_name_check(const char *name)
{
	size_t len = 0;

	if (!name || !*name)
		return -EINVAL;
	for (; name[len]; len++) {
		unsigned char c = (unsigned char)name[len];

		if (len == KVFS_POOL_NAME_MAX)
			return -ENAMETOOLONG;
		if (c < 0x20 || c == 0x7f || c == '/')
			return -EINVAL;
	}
	if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
		return -EINVAL;
	return 0;
}

/* Timestamps are nanoseconds since the epoch. */
struct kvfs_attr {
	uint64_t ino;
	uint64_t size;
	uint64_t version; /* bumped by every committed change of content or size */
	uint64_t blocks;  /* 512-byte units of pages held */
	uint32_t mode;	  /* S_IFDIR or S_IFREG | permission bits */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint32_t pool;	    /* pool id; 0 for the root */
	uint32_t page_size; /* the pool's page size; 0 for the root */
	int64_t atime_ns;
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint32_t flags; /* KVFS_ATTR_* */
};

enum {
	KVFS_ATTR_LOST = 1 << 0, /* some committed pages are gone: reads fail with -EIO */
};

/* Where one page of a file lives. */
struct kvfs_page_ref {
	uint32_t node;
	uint32_t incarnation;
	uint64_t off; /* byte offset in that node's arena */
};

struct kvfs_page_entry {
	uint64_t index; /* page index within the file */
	struct kvfs_page_ref ref;
};

/* Attributes and page map of a file, in one piece. Free with kvfs_layout_free(). */
struct kvfs_layout {
	struct kvfs_attr attr;
	size_t npages;
	struct kvfs_page_entry *pages; /* sorted by index, committed pages only */
};

void kvfs_layout_free(struct kvfs_layout *layout);

struct kvfs_dirent {
	uint64_t cookie; /* pass as @cookie to continue after this entry; never 0 */
	char name[KVFS_NAME_MAX + 1];
	struct kvfs_attr attr;
};

/* setattr() valid mask */
enum {
	KVFS_SET_MODE = 1 << 0,
	KVFS_SET_UID = 1 << 1,
	KVFS_SET_GID = 1 << 2,
	KVFS_SET_SIZE = 1 << 3, /* truncate: pages wholly beyond the size are freed */
	KVFS_SET_ATIME = 1 << 4,
	KVFS_SET_MTIME = 1 << 5,
	KVFS_SET_CTIME = 1 << 6,
};

/* rename() flags, as renameat2 */
enum {
	KVFS_RENAME_NOREPLACE = 1 << 0,
	KVFS_RENAME_EXCHANGE = 1 << 1,
};

struct kvfs_statfs {
	uint64_t capacity; /* bytes */
	uint64_t free;	   /* bytes allocatable now (an lru pool counts evictable bytes as free) */
	uint64_t used;
	uint64_t files;
	uint32_t page_size; /* 0 for the root */
};

struct kvfs_node_info {
	uint32_t id;	      /* out */
	uint32_t incarnation; /* out */
	uint64_t arena_size;
	char addr[64]; /* data address "host:port"; empty when none (embedded) */
};

struct kvfs_meta;

struct kvfs_meta_ops {
	const char *name;

	/* Node membership. register assigns a new incarnation every time. */
	int (*node_register)(struct kvfs_meta *m, struct kvfs_node_info *info);
	int (*node_leave)(struct kvfs_meta *m, uint32_t node);

	/* Pools. create fills in id and root_ino; -EEXIST if the name is taken. drop fails with
	 * -ENOTEMPTY unless @force, which removes every file in it. */
	int (*pool_create)(struct kvfs_meta *m, struct kvfs_pool_attr *attr);
	int (*pool_list)(struct kvfs_meta *m, struct kvfs_pool_attr **ret_pools, size_t *ret_n);
	int (*pool_get)(struct kvfs_meta *m, uint32_t pool, struct kvfs_pool_attr *ret);
	int (*pool_drop)(struct kvfs_meta *m, const char *name, bool force);

	/* Namespace. lookup/getattr do not take a lease. mkdir at the root creates a pool with
	 * defaults; rmdir at the root drops an empty pool. */
	int (*lookup)(struct kvfs_meta *m, uint64_t parent, const char *name,
		      struct kvfs_attr *ret_attr);
	int (*getattr)(struct kvfs_meta *m, uint64_t ino, struct kvfs_attr *ret_attr);
	int (*layout)(struct kvfs_meta *m, uint64_t ino, struct kvfs_layout **ret_layout);
	int (*create)(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		      uint32_t uid, uint32_t gid, bool excl, struct kvfs_attr *ret_attr);
	int (*mkdir)(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		     uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr);
	int (*unlink)(struct kvfs_meta *m, uint64_t parent, const char *name);
	int (*rmdir)(struct kvfs_meta *m, uint64_t parent, const char *name);
	/* Atomic; replaces an existing non-directory target (or an empty directory by a
	 * directory). Renames across pools fail with -EXDEV. */
	int (*rename)(struct kvfs_meta *m, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, unsigned flags);
	int (*setattr)(struct kvfs_meta *m, uint64_t ino, const struct kvfs_attr *attr,
		       unsigned valid, struct kvfs_attr *ret_attr);
	/* Up to @max entries after @cookie (0 = from the start), in a stable order that survives
	 * concurrent creates and removes (no entry is returned twice; entries created during the
	 * listing may or may not appear). *ret_n == 0 means the end. */
	int (*readdir)(struct kvfs_meta *m, uint64_t dir, uint64_t cookie,
		       struct kvfs_dirent *ret_ents, size_t max, size_t *ret_n);

	/* Data placement. alloc reserves pages for indices [first, first + n) of file @ino on
	 * @prefer_node (0 = any), evicting in an lru pool if needed; the pages are not visible until
	 * committed. Indices already committed are an error (-EEXIST): overwrite those in place. */
	int (*alloc)(struct kvfs_meta *m, uint64_t ino, uint64_t first, uint32_t n,
		     uint32_t prefer_node, struct kvfs_page_ref *ret_refs);
	/* Publish @n pages (from alloc) and the file's new size and mtime (mtime_ns 0 = now). If
	 * @size is below pages already committed they stay (use setattr to shrink). Idempotent:
	 * committing a page already committed with the same ref is a no-op. Bumps version. */
	int (*commit)(struct kvfs_meta *m, uint64_t ino, uint64_t size, int64_t mtime_ns,
		      const struct kvfs_page_entry *pages, size_t n, struct kvfs_attr *ret_attr);
	/* Release pages allocated and never committed. */
	int (*abort)(struct kvfs_meta *m, uint64_t ino, const struct kvfs_page_ref *refs, size_t n);

	/* Leases. open counts a use for LRU and returns the layout (attributes + page map);
	 * close drops the lease (a file unlinked while open is freed at its last close). */
	int (*open)(struct kvfs_meta *m, uint64_t ino, uint32_t node, uint64_t *ret_lease,
		    struct kvfs_layout **ret_layout);
	int (*close)(struct kvfs_meta *m, uint64_t ino, uint64_t lease);

	/* User xattrs (names include the "user." prefix). get/list with size 0 return the needed
	 * size in *ret_len; -ERANGE when @size is too small; -ENODATA when missing. setxattr:
	 * -E2BIG for a value above 64 KiB (XATTR_SIZE_MAX); -ENOSPC (as ext4 does at its own,
	 * smaller, limit) when the file would hold more than KVFS_XATTR_COUNT_MAX attributes, more
	 * than KVFS_XATTR_NAMES_MAX bytes of names with their NULs (so that listxattr's answer
	 * always fits XATTR_LIST_MAX and cp -a, getfattr -d, rsync -X can copy them all) or more
	 * than KVFS_XATTR_VALUES_MAX bytes of values. Replacing a value with one no larger always
	 * succeeds. */
	int (*setxattr)(struct kvfs_meta *m, uint64_t ino, const char *name, const void *value,
			size_t len, int flags);
	int (*getxattr)(struct kvfs_meta *m, uint64_t ino, const char *name, void *buf, size_t size,
			size_t *ret_len);
	int (*listxattr)(struct kvfs_meta *m, uint64_t ino, char *buf, size_t size,
			 size_t *ret_len);
	int (*removexattr)(struct kvfs_meta *m, uint64_t ino, const char *name);

	/* Capacity of a pool, or of the whole node when @ino is the root. */
	int (*statfs)(struct kvfs_meta *m, uint64_t ino, struct kvfs_statfs *ret);

	/*
	 * Cluster membership beyond register/leave. A backend without a cluster (embedded: one
	 * node, no service to heartbeat) leaves these NULL and the kvfs_meta_node_*() and
	 * kvfs_meta_heartbeat() wrappers below answer -EOPNOTSUPP. All may block on the network.
	 */
	/* This node's identity from its last node_register; -ENOENT before it. */
	int (*node_self)(struct kvfs_meta *m, struct kvfs_node_info *ret);
	/* Tell the service now that this node is alive (a backend may also do so on its own
	 * thread). 0 and the number of alive nodes in *ret_alive (may be NULL); -ESTALE when the
	 * node must register again; -EIO when the service is unreachable; -ENOENT before
	 * node_register. */
	int (*heartbeat)(struct kvfs_meta *m, uint32_t *ret_alive);
	/* The nodes the service knows (alive ones only with @alive_only) with their data
	 * addresses: the daemon's peer list. *ret_nodes is malloc'd (free it). */
	int (*node_list)(struct kvfs_meta *m, bool alive_only, struct kvfs_node_info **ret_nodes,
			 size_t *ret_n);
	/* Node @node's arena as the service sees it (for stats when the service, not this
	 * process, allocates in it): capacity and free bytes. -ENOENT when the node is not
	 * alive. */
	int (*node_usage)(struct kvfs_meta *m, uint32_t node, uint64_t *ret_capacity,
			  uint64_t *ret_free);

	void (*destroy)(struct kvfs_meta *m);
};

/* Every implementation embeds this first. */
struct kvfs_meta {
	const struct kvfs_meta_ops *ops;
};

/*
 * Called by the state machine after it removed a name on its own (eviction, a lost node), so
 * the daemon can drop kernel caches. Called without any state-machine lock held, possibly from
 * inside another operation's call (e.g. an alloc that evicted): it must not block on, or call
 * into, the state machine. May be NULL.
 */
struct kvfs_meta_callbacks {
	void (*removed)(void *ctx, uint64_t parent, const char *name, uint64_t ino);
	void *ctx;
};

struct kvfs_meta_embedded_config {
	const char *dir;		  /* LMDB environment directory (created if missing) */
	uint64_t map_size;		  /* LMDB map size; 0 = default (8 GiB) */
	struct kvfs_palloc *local_palloc; /* allocator of this node's arena (borrowed) */
	uint64_t local_arena_size;
	struct kvfs_meta_callbacks cb;
	bool sync; /* fsync every commit (default: survive a process crash, not
					      a power loss) */
};

/*
 * Open (or create) the embedded state machine. Registers the local node (id 1) with a new
 * incarnation; files whose pages belonged to an earlier incarnation are dropped (lru pools) or
 * marked lost (none pools) before this returns, and the allocator is rebuilt from what remains.
 * Returns 0 and *ret, or a negative errno (-EIO/-EINVAL for a corrupt or incompatible store).
 */
int kvfs_meta_embedded_create(const struct kvfs_meta_embedded_config *cfg, struct kvfs_meta **ret);

/* The local node's identity in embedded mode. */
void kvfs_meta_embedded_node(struct kvfs_meta *m, uint32_t *ret_node, uint32_t *ret_incarnation);

/* The membership slots through the ops table; -EOPNOTSUPP where the backend leaves them empty.
 * Contracts as the slots above. */
static inline int kvfs_meta_node_self(struct kvfs_meta *m, struct kvfs_node_info *ret)
{
	return m->ops->node_self ? m->ops->node_self(m, ret) : -EOPNOTSUPP;
}

static inline int kvfs_meta_heartbeat(struct kvfs_meta *m, uint32_t *ret_alive)
{
	return m->ops->heartbeat ? m->ops->heartbeat(m, ret_alive) : -EOPNOTSUPP;
}

static inline int kvfs_meta_node_list(struct kvfs_meta *m, bool alive_only,
				      struct kvfs_node_info **ret_nodes, size_t *ret_n)
{
	return m->ops->node_list ? m->ops->node_list(m, alive_only, ret_nodes, ret_n) : -EOPNOTSUPP;
}

static inline int kvfs_meta_node_usage(struct kvfs_meta *m, uint32_t node, uint64_t *ret_capacity,
				       uint64_t *ret_free)
{
	return m->ops->node_usage ? m->ops->node_usage(m, node, ret_capacity, ret_free)
				  : -EOPNOTSUPP;
}

/* Destroy through the ops table. Accepts NULL. */
static inline void kvfs_meta_destroy(struct kvfs_meta *m)
{
	if (m)
		m->ops->destroy(m);
}
