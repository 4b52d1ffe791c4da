/* SPDX-License-Identifier: MIT */
/*
 * fs_i.h - private state of the kvfs FUSE daemon, shared by all of fs/ (main.c, ctl.c, pagemap.c,
 * hitcache.c and the FUSE operations, which share ops_i.h besides).
 *
 * Lock order (outer first): fs_inode.lock, then kvfs_fs.itable_lock. The metadata state
 * machine and the page allocator have their own internal locks, always taken innermost; no
 * lock of ours is held across a FUSE reply.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "htable.h"
#include "meta.h"

struct kvfs_arena;
struct kvfs_palloc;
struct kvfs_xfer_engine;
struct fuse_session;

/* Reserved inode numbers of the synthetic control tree (below KVFS_FIRST_INO). */
#define FS_CTLDIR_INO	  2ull /* /.kvfs */
#define FS_STATS_INO	  3ull /* /.kvfs/stats */
#define FS_CTL_INO	  4ull /* /.kvfs/ctl */
#define FS_CTLDIR_NAME	  ".kvfs"
#define KVFS_FS_MAX_PEERS 256

/* ------------------------------------------------------------------------------------------ */
/* Page map of an open file: page index -> where it lives, open addressing. */

struct fs_page {
	uint64_t index; /* UINT64_MAX marks an empty slot */
	struct kvfs_page_ref ref;
	bool pending; /* allocated and written here, not yet committed */
};

struct fs_pagemap {
	struct fs_page *slots;
	size_t cap;   /* power of two */
	size_t count; /* live entries */
	size_t npending;
};

void fs_pagemap_init(struct fs_pagemap *pm);
void fs_pagemap_fini(struct fs_pagemap *pm);
struct fs_page *fs_pagemap_find(const struct fs_pagemap *pm, uint64_t index);
/* Insert or overwrite. Returns the slot, or NULL without memory. */
struct fs_page *fs_pagemap_put(struct fs_pagemap *pm, uint64_t index,
			       const struct kvfs_page_ref *ref, bool pending);
/* Remove the entry of @index; false if there was none. */
bool fs_pagemap_drop_one(struct fs_pagemap *pm, uint64_t index);
/* Remove every entry with index >= @first; call @fn on each removed one. */
void fs_pagemap_drop_from(struct fs_pagemap *pm, uint64_t first,
			  void (*fn)(void *ctx, const struct fs_page *p), void *ctx);
/* Visit every entry. */
void fs_pagemap_each(const struct fs_pagemap *pm, void (*fn)(void *ctx, struct fs_page *p),
		     void *ctx);

/* ------------------------------------------------------------------------------------------ */

/*
 * What the daemon knows of a file while it is open on this node. Loaded from the metadata
 * layout at the first open, kept until the last release. Writes land here first (pending
 * pages, the new size) and are committed on flush/fsync/release.
 */
/*
 * Remote pages fetched ahead of a sequential reader, in one engine batch (so a run of pages that
 * is contiguous on the peer costs one transfer). Replies point into it, hence the references:
 * one for fs_open.ra and one per read in flight.
 */
struct fs_ra {
	_Atomic unsigned refs;
	uint64_t first; /* page index of data[0] */
	uint32_t npages;
	uint32_t page_size;
	uint64_t gen;	/* the inode's content_gen when fetched: any local change voids it */
	uint8_t *valid; /* per page: fetched successfully */
	char *data;
};

#define FS_RA_BYTES (16u << 20) /* read-ahead window for remote pages */

struct fs_open {
	struct fs_pagemap pages;
	pthread_mutex_t ra_lock;
	struct fs_ra *ra;	   /* guarded by ra_lock */
	_Atomic uint64_t next_off; /* where the last read ended: sequential detection */
	uint64_t size;		   /* current size, including uncommitted writes */
	uint64_t committed_size;
	uint64_t version;      /* metadata version at the first open: keys the remote-hit cache */
	bool cache_hits;       /* the pool asked for remote hits to be kept (--cache-remote) */
	_Atomic bool has_hits; /* some of its pages are in the remote-hit cache */
	uint32_t page_size;
	uint32_t pool;
	uint32_t mode; /* as last seen or set here: writes clear its set-id bits */
	uint64_t max_file_size;
	bool dirty;	  /* size or pages changed since the last commit */
	bool lost;	  /* KVFS_ATTR_LOST: reads fail with EIO */
	int64_t mtime_ns; /* of the last local write */
	unsigned nopen;	  /* open handles */
};

/*
 * What an inode needs once it has been opened here: its lock, open-file state and page-cache
 * bookkeeping. Most inodes the kernel knows were only looked up (stat of a flat directory of
 * 100,000 keys), so this lives apart and is allocated at the first open: a looked-up-only inode
 * costs 48 bytes instead of ~160.
 */
struct fs_istate {
	pthread_rwlock_t lock;
	struct fs_open *open;	 /* guarded by lock; non-NULL while open */
	uint64_t content_gen;	 /* guarded by lock; bumped by every local change of content */
	uint64_t cached_version; /* guarded by lock; meta version the kernel page cache holds */
	uint64_t cached_gen;	 /* guarded by lock; content_gen the kernel page cache holds */
	uint64_t seen_version;	 /* guarded by lock; metadata version at the last open (--meta) */
	struct kvfs_attr last;	 /* guarded by lock; as the metadata answered our latest change
				    (commit, truncate): newer than a reply read before it */
	bool cache_valid;	 /* guarded by lock */
	bool push_queued;	 /* guarded by lock; a page-cache push is waiting (--cache auto) */
};

/* An inode the kernel knows (lookup count > 0) or that is in use here. */
struct fs_inode {
	uint64_t ino;
	struct kvfs_hnode hnode; /* in fs->itable; guarded by fs->itable_lock */
	uint64_t hold_lease;	 /* guarded by fs->itable_lock; see fs_hold_target() in inode.c */
	_Atomic(struct fs_istate *) st; /* set once (under fs->itable_lock), freed with it */
	uint32_t nlookup;		/* guarded by fs->itable_lock */
	uint32_t refs;			/* in-flight users; guarded by fs->itable_lock */
};

/*
 * How read-only opens use the kernel page cache.
 *   page:   always through the page cache, kept across opens while the file is unchanged.
 *   direct: never (every read is one copy from the arena into the reader's buffer).
 *   auto:   the first read of a changed file is direct (one copy, nothing duplicated for a
 *           read-once KV load); when that handle closes the daemon pushes the file into the
 *           page cache in the background (notify_store), and later opens read it warm.
 */
enum fs_cache_mode {
	FS_CACHE_AUTO,
	FS_CACHE_PAGE,
	FS_CACHE_DIRECT,
};

enum fs_handle_kind {
	FS_H_FILE,
	FS_H_DIR,
	FS_H_STATS,
	FS_H_CTL,
};

struct fs_handle {
	struct fs_handle *prev, *next; /* on fs->handles; guarded by fs->handles_lock */
	enum fs_handle_kind kind;
	struct fs_inode *inode; /* FS_H_FILE */
	uint64_t lease;		/* FS_H_FILE */
	int flags;		/* open flags */
	bool push_on_release;	/* FS_H_FILE: a cold direct read under --cache auto */
	char *buf;		/* FS_H_STATS, FS_H_CTL: the reply to serve */
	size_t len;
	pthread_mutex_t lock; /* FS_H_CTL: one request at a time */
};

struct fs_counters {
	_Atomic uint64_t lookups, getattrs, opens, releases, reads, read_bytes, writes, write_bytes,
		commits, creates, unlinks, renames, mkdirs, rmdirs, readdirs, truncates, fsyncs,
		evict_notices, read_holes, read_errors, write_errors, cache_pushes,
		cache_push_bytes, readaheads, remote_hits;
};

struct kvfs_fs {
	struct kvfs_meta *meta;
	struct kvfs_arena *arena;
	struct kvfs_palloc *palloc; /* embedded mode only: pins need the allocator that allocates.
				       With --meta the service allocates in our arena and open
				       leases keep pages from reuse; palloc is NULL then. */
	struct kvfs_xfer_engine *xfer;
	struct fuse_session *se;
	uint32_t node;
	_Atomic uint32_t
		incarnation; /* replaced only before the session starts or, with --meta, when
				 the service made us re-register: old pages then read as remote
				 pages of a stale incarnation and fail with EIO, never garbage */
	uint64_t arena_size;

	enum fs_cache_mode cache_mode;
	double entry_timeout;
	double attr_timeout;
	const void *zero; /* KVFS_PAGE_MAX bytes of zeros for holes */

	pthread_mutex_t itable_lock;
	struct kvfs_htable itable; /* of fs_inode by ino; guarded by itable_lock */

	/* kernel cache invalidations requested by the state machine (eviction) */
	pthread_mutex_t notify_lock;
	pthread_cond_t notify_cond;
	struct fs_notice *notices; /* guarded by notify_lock */
	bool notify_stop;	   /* guarded by notify_lock */
	pthread_t notify_thread;
	bool notify_started;

	char *token; /* cluster token (--token-file), or NULL */

	struct fs_hitcache *hitcache; /* --cache-remote: NULL when off */
	char **hit_pools;	      /* names of the pools that keep remote hits */
	size_t nhit_pools;

	pthread_mutex_t handles_lock;
	struct fs_handle *handles; /* guarded by handles_lock: every live handle */

	/* peers the engine knows, kept in step with membership (--meta) */
	_Atomic bool xfer_ready;
	bool use_verbs; /* set before xfer_ready: the verbs backend can carry peers */
	/* --meta: reload the peer table from the service now; 0 or a negative errno */
	int (*refresh_peers)(struct kvfs_fs *fs);
	pthread_mutex_t peers_lock;
	uint32_t peers[KVFS_FS_MAX_PEERS]; /* guarded by peers_lock */
	size_t npeers;			   /* guarded by peers_lock */
	size_t place_next;		   /* guarded by peers_lock: --placement spread cursor */
	bool placement_spread;		   /* --placement spread */

	char *mountpoint;
	_Atomic bool inited; /* FUSE INIT done */
	struct fs_counters ctr;
};

/* hitcache.c: copies of remote pages, keyed by (inode, metadata version, page index) */
struct fs_hit;
struct fs_hitcache;
int fs_hitcache_create(uint64_t max_bytes, struct fs_hitcache **ret);
void fs_hitcache_destroy(struct fs_hitcache *hc);
/* A cached page with a reference (release it after use), or NULL. */
const void *fs_hitcache_get(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
			    uint32_t *ret_len, struct fs_hit **ret_ref);
void fs_hitcache_release(struct fs_hit *ref);
/* Copy @len bytes of page @index in; evicts least recently used pages to make room. */
void fs_hitcache_put(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index,
		     const void *data, uint32_t len);
void fs_hitcache_drop_ino(struct fs_hitcache *hc, uint64_t ino);
bool fs_hitcache_has(struct fs_hitcache *hc, uint64_t ino, uint64_t version, uint64_t index);
void fs_hitcache_stats(struct fs_hitcache *hc, uint64_t *ret_bytes, uint64_t *ret_hits,
		       uint64_t *ret_misses, uint64_t *ret_inserts, uint64_t *ret_evictions);

/* ops.c, notify.c */
extern const struct fuse_lowlevel_ops kvfs_fs_ops;
int kvfs_fs_init(struct kvfs_fs *fs);
void kvfs_fs_fini(struct kvfs_fs *fs);
void kvfs_fs_meta_removed(void *ctx, uint64_t parent, const char *name, uint64_t ino);
int kvfs_fs_start_notifier(struct kvfs_fs *fs);
void kvfs_fs_stop_notifier(struct kvfs_fs *fs);
/* Ask the notifier to drop the kernel's dentry of @name in @parent (ino 0: not a deletion). */

/* ctl.c */
int kvfs_fs_stats_json(struct kvfs_fs *fs, char **ret_buf, size_t *ret_len);
/* Run one control request (a JSON text); always produces a reply (an error reply on failure).
 * Returns 0, or -EINVAL when the request is not a JSON object with a "cmd". */
int kvfs_fs_ctl(struct kvfs_fs *fs, const char *req, size_t len, char **ret_buf, size_t *ret_len);
