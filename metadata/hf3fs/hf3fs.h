/* SPDX-License-Identifier: MIT */
/*
 * hf3fs.h - SGLang's mini 3FS metadata semantics (HiCacheHF3FS), persisted in LMDB.
 *
 * HiCacheHF3FS keeps KV pages in one big file per rank and asks a metadata server which page
 * of that file holds which key. State is per (rank, namespace): a number of pages, a map
 * key -> page index of published ("confirmed") keys with an LRU order, free pages, and pages
 * reserved by writers that have not confirmed yet ("pending").
 *
 * Semantics follow sglang's mini_3fs_metadata_server.py (free pages are handed out from the
 * top of a stack initialised 0..n-1, released pages are pushed back; a new key takes a free
 * page, else the least recently used confirmed key's page, else -1), with these differences:
 *   - every acknowledged change is in LMDB before the call returns (one write transaction per
 *     call; see hf3fs.c for the durability choice);
 *   - get_page_indices() leases each returned page for lease_ms: while leased, the page is
 *     neither evicted for a new key nor handed out again after delete/clear;
 *   - a pending page belongs to exactly one reservation. When two writers reserve the same new
 *     key, each gets its own page; the first confirm publishes, the second confirm returns the
 *     loser's page to the free list (the reference overwrote the mapping and leaked a page);
 *   - confirm of (key, index) only publishes if the page is pending for that key, and
 *     pages_to_release only frees pending pages: stale or foreign indices never corrupt a
 *     published key. Rejections are counted in the stats;
 *   - pending reservations older than reserve_ttl_ms are reclaimed when no free page is left
 *     (the reference leaked the page of a writer that died between reserve and confirm);
 *   - clear() and delete_keys() leave pending reservations alone: a writer still writing its
 *     page keeps it until it confirms or releases.
 *
 * Thread-safety: every function may be called from any thread. Calls on one (rank, namespace)
 * are serialised by its lock; reads (exists, get_page_indices) never touch the disk; mutating
 * calls block on one LMDB write transaction (and an fsync when cfg->sync).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVFS_META_HF3FS_KEY_MAX	       480	  /* bytes; LMDB keys are at most 511 */
#define KVFS_META_HF3FS_NS_MAX	       64	  /* namespace bytes */
#define KVFS_META_HF3FS_PAGES_MAX      (1u << 26) /* num_pages limit (64 Mi pages) */
#define KVFS_META_HF3FS_DEFAULT_NS     "kv"
#define KVFS_META_HF3FS_LEASE_MS       5000
#define KVFS_META_HF3FS_RESERVE_TTL_MS 600000

struct kvfs_meta_hf3fs;

struct kvfs_meta_hf3fs_config {
	const char *dir;	 /* LMDB environment directory (created if missing) */
	uint64_t map_size;	 /* 0 = 4 GiB */
	bool sync;		 /* fsync (group commit) before acknowledging a change */
	uint32_t lease_ms;	 /* get_page_indices lease and post-restart grace; 0 = none */
	uint32_t reserve_ttl_ms; /* reclaim pending pages older than this; 0 = never */
};

/* A key as it came off the wire: not NUL-terminated, may hold any bytes. */
struct kvfs_meta_hf3fs_key {
	const char *ptr;
	size_t len;
};

struct kvfs_meta_hf3fs_reserve_result {
	bool exists;   /* the key was already published; index is its page */
	int64_t index; /* the page to write, or -1 when no page could be had */
};

struct kvfs_meta_hf3fs_confirm {
	struct kvfs_meta_hf3fs_key key;
	int64_t index;
};

struct kvfs_meta_hf3fs_stats {
	uint64_t num_pages;
	uint64_t keys;	      /* confirmed keys */
	uint64_t pending;     /* reserved, not yet confirmed pages */
	uint64_t free;	      /* num_pages - keys - pending */
	uint64_t evictions;   /* keys evicted to make room (since open) */
	uint64_t reclaimed;   /* expired reservations reclaimed (since open) */
	uint64_t lease_skips; /* times a leased page was passed over (since open) */
	uint64_t rejected;    /* confirm/release entries ignored as stale (since open) */
	uint64_t full;	      /* new keys answered -1 (since open) */
};

/*
 * Open (or create) the store in cfg->dir and load every (rank, namespace) into memory.
 * Returns 0 and *ret, -EINVAL for a bad config, -EIO for a corrupt store, -ENOMEM, or the
 * negative errno of a failed LMDB/file call. Only one process may open a directory (LMDB's
 * lock file plus an flock of "<dir>/hf3fs.lock": a second open gets -EBUSY).
 */
int kvfs_meta_hf3fs_open(const struct kvfs_meta_hf3fs_config *cfg, struct kvfs_meta_hf3fs **ret);

/* Persist the LRU recency of reads since the last write, close the store, free everything.
 * Accepts NULL. No call may be running. */
void kvfs_meta_hf3fs_close(struct kvfs_meta_hf3fs *h);

/*
 * Create (rank, ns) with @num_pages (0 .. KVFS_META_HF3FS_PAGES_MAX). A repeat is ignored (0, and
 * *ret_created false), even with another num_pages, as in the reference. @ns NULL = "kv".
 * -EINVAL for a namespace longer than KVFS_META_HF3FS_NS_MAX or too many pages.
 */
int kvfs_meta_hf3fs_initialize(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			       uint64_t num_pages, bool *ret_created);

/* For each key, whether it is published. @ret_exists has @n slots. -ENOENT for an unknown
 * (rank, ns), -EINVAL for a key longer than KVFS_META_HF3FS_KEY_MAX. Never blocks on disk. */
int kvfs_meta_hf3fs_exists(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			   const struct kvfs_meta_hf3fs_key *keys, size_t n, bool *ret_exists);

/*
 * Reserve pages for @n keys (prefix keys are accepted by the route but unused, as in the
 * reference). A published key answers {true, its index} and counts as a use. A new key gets a
 * page: a free one that is not leased, else the page of an expired reservation, else the page
 * of the least recently used published key that is not leased (that key is removed), else -1.
 * For lease_ms after open, every page a reader could hold counts as leased (published keys'
 * pages, free pages ever handed out); pages never handed out are free at once (see hf3fs.c).
 * @ret has @n slots. -ENOENT, -EINVAL as above; -EIO if the store could not be written (the
 * in-memory state is then reloaded from the store, so nothing half-done is visible).
 */
int kvfs_meta_hf3fs_reserve(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			    const struct kvfs_meta_hf3fs_key *keys, size_t n,
			    struct kvfs_meta_hf3fs_reserve_result *ret);

/*
 * Publish @nc (key, index) pairs and release @nr pages. A pair publishes only if the page is
 * pending for that key; if the key is already published elsewhere the page is freed (the
 * second of two writers). A released page is freed only if it is pending. Anything else is
 * ignored and counted as rejected. -EINVAL if an index is outside [0, num_pages) (nothing is
 * applied then).
 */
int kvfs_meta_hf3fs_confirm(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			    const struct kvfs_meta_hf3fs_confirm *confirms, size_t nc,
			    const int64_t *release, size_t nr);

/* Remove published keys; their pages become free (after their lease). *ret_deleted (may be
 * NULL) counts the keys that existed. */
int kvfs_meta_hf3fs_delete(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			   const struct kvfs_meta_hf3fs_key *keys, size_t n, size_t *ret_deleted);

/* Remove every published key of (rank, ns). Pending reservations stay. */
int kvfs_meta_hf3fs_clear(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns);

/* For each key, its page index or -1 when not published. Each hit counts as a use and leases
 * its page for lease_ms. Never blocks on disk. */
int kvfs_meta_hf3fs_get(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			const struct kvfs_meta_hf3fs_key *keys, size_t n, int64_t *ret_indices);

/* Counters of one (rank, ns). -ENOENT when unknown. */
int kvfs_meta_hf3fs_stat(struct kvfs_meta_hf3fs *h, uint32_t rank, const char *ns,
			 struct kvfs_meta_hf3fs_stats *ret);

/*
 * Call @fn for every (rank, ns) with its counters, for /metrics. @fn runs with the registry
 * read-locked: it must not call back into @h.
 */
void kvfs_meta_hf3fs_foreach(struct kvfs_meta_hf3fs *h,
			     void (*fn)(void *ctx, uint32_t rank, const char *ns,
					const struct kvfs_meta_hf3fs_stats *st),
			     void *ctx);
