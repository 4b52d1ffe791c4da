/* SPDX-License-Identifier: MIT */
/*
 * arena.c - a node's DRAM arena: one memfd, sized once and mapped once, MAP_SHARED.
 *
 * The memfd (rather than anonymous memory) gives the arena a file descriptor, so the FUSE
 * daemon can later splice from it and the verbs backend can register it in one piece. The
 * arena never grows or moves: offsets handed out by palloc stay valid for its whole life.
 *
 * With KVFS_ARENA_HUGEPAGES the memfd lives on hugetlbfs (MFD_HUGETLB, default huge page size).
 * hugetlbfs reserves its pages when the mapping is made, so a machine without enough reserved
 * huge pages fails here, with -ENOMEM, rather than with SIGBUS on a later first touch. There is
 * deliberately no fallback to small pages: an operator who asked for huge pages wants to know.
 *
 * With KVFS_ARENA_PREFAULT the backing pages are allocated up front (fallocate, which reports
 * -ENOSPC/-ENOMEM instead of a later SIGBUS) and mapped with MAP_POPULATE, so the first
 * transfer into a page does not pay for a page fault (expensive on VMs).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

struct kvfs_arena {
	void *base;	/* the mapping, size bytes, MAP_SHARED */
	uint64_t size;	/* bytes, a multiple of KVFS_PAGE_MAX (and of the huge page size) */
	int fd;		/* the memfd backing the mapping */
	unsigned flags; /* KVFS_ARENA_* it was created with */
};

bool kvfs_page_size_valid(uint64_t size)
{
	return size >= KVFS_PAGE_MIN && size <= KVFS_PAGE_MAX && (size & (size - 1)) == 0;
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

/*
 * Create the arena: see pool.h. @size 0 is -EINVAL. With huge pages the size is also rounded
 * up to the huge page size when that exceeds 16 MiB (1 GiB default huge pages).
 */
int kvfs_arena_create(uint64_t size, unsigned flags, struct kvfs_arena **ret_arena)
{
	bool huge = flags & KVFS_ARENA_HUGEPAGES;
	struct kvfs_arena *a;
	struct stat st;
	int mflags = MAP_SHARED;
	int fd, r;

	if (size == 0 || size > UINT64_MAX - KVFS_PAGE_MAX ||
	    (flags & ~(unsigned)(KVFS_ARENA_HUGEPAGES | KVFS_ARENA_PREFAULT)))
		return -EINVAL;
	size = round_up(size, KVFS_PAGE_MAX);
	if ((uint64_t)(off_t)size != size)
		return -EINVAL;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;

	fd = memfd_create("kvfs-arena", MFD_CLOEXEC | (huge ? MFD_HUGETLB : 0));
	if (fd < 0) {
		/* A kernel without hugetlbfs support answers EINVAL/ENOENT: no huge pages. */
		r = huge ? -ENOMEM : -errno;
		goto err_free;
	}
	if (huge) {
		/* hugetlbfs reports its page size as the block size. */
		if (fstat(fd, &st) == 0 && st.st_blksize > 0)
			size = round_up(size, (uint64_t)st.st_blksize);
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		r = huge ? -ENOMEM : -errno;
		goto err_close_fd;
	}
	if (flags & KVFS_ARENA_PREFAULT) {
		if (fallocate(fd, 0, 0, (off_t)size) < 0) {
			r = -errno;
			/* A tmpfs without fallocate (old kernels): MAP_POPULATE alone still faults. */
			if (huge || r != -EOPNOTSUPP) {
				if (huge)
					r = -ENOMEM;
				goto err_close_fd;
			}
		}
		mflags |= MAP_POPULATE;
	}

	a->base = mmap(NULL, size, PROT_READ | PROT_WRITE, mflags, fd, 0);
	if (a->base == MAP_FAILED) {
		r = huge ? -ENOMEM : -errno;
		goto err_close_fd;
	}
	a->size = size;
	a->fd = fd;
	a->flags = flags;
	*ret_arena = a;
	return 0;

err_close_fd:
	close(fd);
err_free:
	free(a);
	return r;
}

/* Unmap and close. Accepts NULL. Pages still in use by anyone are simply gone. */
void kvfs_arena_destroy(struct kvfs_arena *arena)
{
	if (!arena)
		return;
	munmap(arena->base, arena->size);
	close(arena->fd);
	free(arena);
}

/* The mapping's first byte. */
void *kvfs_arena_base(const struct kvfs_arena *arena)
{
	return arena->base;
}

/* Bytes mapped (the rounded size). */
uint64_t kvfs_arena_size(const struct kvfs_arena *arena)
{
	return arena->size;
}

/* The memfd; owned by the arena, do not close. */
int kvfs_arena_fd(const struct kvfs_arena *arena)
{
	return arena->fd;
}
