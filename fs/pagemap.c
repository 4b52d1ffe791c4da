/* SPDX-License-Identifier: MIT */
/*
 * pagemap.c - the page map of an open file: page index -> page reference.
 *
 * Files are sparse (a 1 TiB file may hold three pages), so the map is an open-addressing hash
 * keyed by page index with linear probing and backward-shift deletion, not an array indexed by
 * page. Not thread-safe: the owning fs_inode's lock guards it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"

#define EMPTY UINT64_MAX

static size_t slot_of(uint64_t index, size_t cap)
{
	/* Fibonacci hashing spreads consecutive page indices over the table. */
	return (size_t)((index * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

void fs_pagemap_init(struct fs_pagemap *pm)
{
	memset(pm, 0, sizeof(*pm));
}

void fs_pagemap_fini(struct fs_pagemap *pm)
{
	free(pm->slots);
	memset(pm, 0, sizeof(*pm));
}

struct fs_page *fs_pagemap_find(const struct fs_pagemap *pm, uint64_t index)
{
	if (!pm->cap)
		return NULL;
	for (size_t i = slot_of(index, pm->cap);; i = (i + 1) & (pm->cap - 1)) {
		struct fs_page *p = &pm->slots[i];

		if (p->index == index)
			return p;
		if (p->index == EMPTY)
			return NULL;
	}
}

static int grow(struct fs_pagemap *pm)
{
	size_t ncap = pm->cap ? pm->cap * 2 : 16;
	struct fs_page *n = malloc(ncap * sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < ncap; i++)
		n[i].index = EMPTY;
	for (size_t i = 0; i < pm->cap; i++) {
		struct fs_page *p = &pm->slots[i];
		size_t j;

		if (p->index == EMPTY)
			continue;
		for (j = slot_of(p->index, ncap); n[j].index != EMPTY; j = (j + 1) & (ncap - 1))
			;
		n[j] = *p;
	}
	free(pm->slots);
	pm->slots = n;
	pm->cap = ncap;
	return 0;
}

struct fs_page *fs_pagemap_put(struct fs_pagemap *pm, uint64_t index,
			       const struct kvfs_page_ref *ref, bool pending)
{
	struct fs_page *p = fs_pagemap_find(pm, index);
	size_t i;

	if (p) {
		if (p->pending && !pending)
			pm->npending--;
		else if (!p->pending && pending)
			pm->npending++;
		p->ref = *ref;
		p->pending = pending;
		return p;
	}
	/* keep the load factor under 3/4 */
	if ((pm->count + 1) * 4 > pm->cap * 3 && grow(pm) < 0)
		return NULL;
	for (i = slot_of(index, pm->cap); pm->slots[i].index != EMPTY; i = (i + 1) & (pm->cap - 1))
		;
	p = &pm->slots[i];
	p->index = index;
	p->ref = *ref;
	p->pending = pending;
	pm->count++;
	if (pending)
		pm->npending++;
	return p;
}

/* Remove slot @i and shift later members of its probe chain back (no tombstones). */
static void remove_slot(struct fs_pagemap *pm, size_t i)
{
	size_t mask = pm->cap - 1;
	size_t j = i;

	if (pm->slots[i].pending)
		pm->npending--;
	pm->slots[i].index = EMPTY;
	pm->count--;
	for (;;) {
		size_t k;

		j = (j + 1) & mask;
		if (pm->slots[j].index == EMPTY)
			return;
		k = slot_of(pm->slots[j].index, pm->cap);
		/* move j back to i if its home k is not cyclically in (i, j] */
		if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
			pm->slots[i] = pm->slots[j];
			pm->slots[j].index = EMPTY;
			i = j;
		}
	}
}

bool fs_pagemap_drop_one(struct fs_pagemap *pm, uint64_t index)
{
	struct fs_page *p = fs_pagemap_find(pm, index);

	if (!p)
		return false;
	remove_slot(pm, (size_t)(p - pm->slots));
	return true;
}

void fs_pagemap_drop_from(struct fs_pagemap *pm, uint64_t first,
			  void (*fn)(void *ctx, const struct fs_page *p), void *ctx)
{
	size_t i = 0;

	while (i < pm->cap) {
		struct fs_page *p = &pm->slots[i];

		if (p->index != EMPTY && p->index >= first) {
			if (fn)
				fn(ctx, p);
			remove_slot(pm, i);
			/* a shifted entry may now sit at i: look at it again */
			continue;
		}
		i++;
	}
}

void fs_pagemap_each(const struct fs_pagemap *pm, void (*fn)(void *ctx, struct fs_page *p),
		     void *ctx)
{
	for (size_t i = 0; i < pm->cap; i++)
		if (pm->slots[i].index != EMPTY)
			fn(ctx, &pm->slots[i]);
}
