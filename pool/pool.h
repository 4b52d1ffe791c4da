/* SPDX-License-Identifier: MIT */
/*
 * pool.h - a node's DRAM arena and the page allocator that carves it.
 *
 * The arena is one memfd mapped once; every page of every pool on this node is a range of it,
 * named by its byte offset. Offsets, not pointers, cross module and node boundaries: the
 * transfer engine and the metadata service speak (node, offset), and only the owning node turns
 * an offset into an address with kvfs_arena_ptr().
 *
 * The allocator (palloc) hands out pages of any power-of-two size from 64 KiB to 16 MiB out of
 * one capacity, so pools of different page sizes share one arena. A page of size P is P-aligned
 * within the arena. Multi-page requests are all or nothing and prefer one contiguous run, so a
 * file written in one go usually sits in one run and a read of it costs one transfer.
 *
 * Pinning: a page in use by a reader or an in-flight reply is pinned. Freeing a pinned page is
 * allowed (truncate, unlink, eviction) but the page only returns to the free space when its last
 * pin goes, so it is never handed out while anything still reads it.
 *
 * The allocator does not need an arena: kvfs-meta keeps one palloc per node to allocate pages
 * of arenas it never maps. All functions are thread-safe unless stated otherwise.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVFS_PAGE_MIN_SHIFT 16 /* 64 KiB */
#define KVFS_PAGE_MAX_SHIFT 24 /* 16 MiB */
#define KVFS_PAGE_MIN	    (1u << KVFS_PAGE_MIN_SHIFT)
#define KVFS_PAGE_MAX	    (1u << KVFS_PAGE_MAX_SHIFT)

/* Returns true when @size is a valid page size: a power of two in [64 KiB, 16 MiB]. */
bool kvfs_page_size_valid(uint64_t size);

/* ------------------------------------------------------------------------------------------ */
/* Arena */

struct kvfs_arena;

enum {
	KVFS_ARENA_HUGEPAGES = 1 << 0, /* back the memfd with huge pages (MFD_HUGETLB) */
	KVFS_ARENA_PREFAULT = 1 << 1,  /* touch every page at creation (MAP_POPULATE) */
};

/*
 * Create an arena of @size bytes (rounded up to KVFS_PAGE_MAX) backed by a memfd and mapped
 * shared read-write. @flags is a mask of KVFS_ARENA_*. With KVFS_ARENA_HUGEPAGES, failure to
 * get huge pages returns -ENOMEM rather than silently falling back.
 * Returns 0 and *ret_arena, or a negative errno.
 */
int kvfs_arena_create(uint64_t size, unsigned flags, struct kvfs_arena **ret_arena);

/* Unmap and close. Accepts NULL. */
void kvfs_arena_destroy(struct kvfs_arena *arena);

void *kvfs_arena_base(const struct kvfs_arena *arena);
uint64_t kvfs_arena_size(const struct kvfs_arena *arena);
int kvfs_arena_fd(const struct kvfs_arena *arena);

/* Address of byte @off of the arena; the caller guarantees off < size. */
static inline void *kvfs_arena_ptr(const struct kvfs_arena *arena, uint64_t off)
{
	return (char *)kvfs_arena_base(arena) + off;
}

/* ------------------------------------------------------------------------------------------ */
/* Page allocator */

struct kvfs_palloc;

struct kvfs_palloc_stats {
	uint64_t capacity;     /* bytes managed */
	uint64_t used;	       /* bytes allocated, including freed-but-pinned pages */
	uint64_t free;	       /* bytes allocatable now */
	uint64_t pinned_pages; /* pages with a pin count > 0 */
	uint64_t deferred;     /* bytes freed while pinned, waiting for their last unpin */
	uint64_t largest_run;  /* largest free contiguous run in bytes */
	uint64_t allocs;       /* successful kvfs_palloc_alloc calls */
	uint64_t alloc_fails;  /* calls that returned -ENOSPC */
};

/*
 * Create an allocator for @capacity bytes (rounded down to KVFS_PAGE_MIN; offsets 0..capacity).
 * Returns 0 and *ret, -EINVAL for a capacity below one minimal page, or -ENOMEM.
 */
int kvfs_palloc_create(uint64_t capacity, struct kvfs_palloc **ret);

/* Accepts NULL. Pages still allocated are simply forgotten. */
void kvfs_palloc_destroy(struct kvfs_palloc *pa);

/*
 * Allocate @n pages of @page_size bytes each, all or nothing. On success writes their arena
 * offsets to ret_offs[0..n-1] in ascending order and returns 0. The allocator first looks for a
 * single run of n * page_size bytes, then for the fewest runs that add up to n pages.
 * Returns -EINVAL for an invalid page size or n == 0, -ENOSPC when n pages are not free
 * (nothing is allocated then). Does not block beyond its internal lock.
 */
int kvfs_palloc_alloc(struct kvfs_palloc *pa, uint32_t page_size, uint32_t n, uint64_t *ret_offs);

/*
 * Free @n pages previously returned by kvfs_palloc_alloc (or marked by kvfs_palloc_reserve)
 * with the same @page_size. A pinned page is released when its last pin goes. Freeing a page
 * that is not allocated is a caller bug: it returns -EINVAL and changes nothing for that page
 * (other pages of the call are still freed).
 */
int kvfs_palloc_free(struct kvfs_palloc *pa, uint32_t page_size, uint32_t n, const uint64_t *offs);

/*
 * Mark the page at @off (size @page_size) as allocated, for rebuilding the allocator from
 * persisted page maps. Returns -EINVAL if misaligned or out of range, -EEXIST if any part of it
 * is already allocated.
 */
int kvfs_palloc_reserve(struct kvfs_palloc *pa, uint32_t page_size, uint64_t off);

/*
 * Pin / unpin the allocated page that starts at @off. Pins nest (a count). Pin is lock-free on
 * the fast path; the unpin that drops the last pin of a freed page returns it to the free space.
 * Pinning a page that is not allocated returns -EINVAL.
 */
int kvfs_palloc_pin(struct kvfs_palloc *pa, uint64_t off);
void kvfs_palloc_unpin(struct kvfs_palloc *pa, uint64_t off);

void kvfs_palloc_get_stats(struct kvfs_palloc *pa, struct kvfs_palloc_stats *ret);
uint64_t kvfs_palloc_capacity(const struct kvfs_palloc *pa);
uint64_t kvfs_palloc_free_bytes(struct kvfs_palloc *pa);
