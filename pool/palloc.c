/* SPDX-License-Identifier: MIT */
/*
 * palloc.c - the page allocator: pages of 64 KiB .. 16 MiB carved out of one capacity.
 *
 * Space is tracked in units of KVFS_PAGE_MIN (64 KiB). Three structures:
 *
 *   bits   one bit per unit, set = allocated (or freed but still pinned, or beyond capacity).
 *          The truth about free space; changed only under pa->lock.
 *   tree   a segment tree whose leaves are the bitmap's 64-bit words. Every node stores the
 *          free prefix, free suffix and longest free run (in units) of its range, so "the
 *          leftmost free window of L units at or after x" is one O(log words) descent that
 *          never visits a range too fragmented to hold it. Alignment is checked on the window
 *          found; a misaligned window restarts the descent past the blocking unit, which only
 *          happens when page sizes are mixed. This is what keeps a 1 MiB alloc in a 64 GiB
 *          arena (16 K words, 15 levels) in the sub-microsecond range instead of a bitmap scan.
 *          Guarded by pa->lock.
 *   state  one atomic word per unit, meaningful at the head unit of an allocated page:
 *          HEAD | order | FREED | pin count. Pins are a CAS loop on this word, with no lock.
 *          Because "freed" and the pin count live in one word, the unpin that drops the last pin
 *          and a concurrent free agree on exactly one of them releasing the page: whoever's CAS
 *          lands second sees the other's effect.
 *
 * Policy: first fit from offset 0 for a single run of n * page_size (keeps the arena dense and
 * the big runs at the top), else the fewest runs (largest first; the remainder goes to the
 * smallest run that holds it). The scattered path scans the whole bitmap and is the slow path.
 *
 * Locking: pa->lock guards bits, tree and the counters marked below. state is lock-free; the
 * only lock taken from a lock-free path is pa->lock, by the last unpin of a freed page.
 * Capacity is limited to 2^30 units (64 TiB) so that run lengths fit in 32 bits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define UNIT_SHIFT KVFS_PAGE_MIN_SHIFT
#define MAX_UNITS  (1ull << 30)

/* Layout of a state word (head unit of a page). */
#define ST_HEAD	       (1u << 31)
#define ST_FREED       (1u << 30)
#define ST_ORDER_SHIFT 24
#define ST_ORDER_MASK  (0xfu << ST_ORDER_SHIFT)
#define ST_PINS	       0x00ffffffu

struct run_node {
	uint32_t pre;  /* free units at the start of the range */
	uint32_t suf;  /* free units at the end of the range */
	uint32_t best; /* longest free run inside the range */
};

struct kvfs_palloc {
	uint64_t nunits; /* capacity in units; immutable */
	size_t nwords;	 /* bitmap words covering nunits; immutable */
	size_t nleaves;	 /* tree leaves, a power of two >= nwords; immutable */

	_Atomic uint32_t *state; /* [nunits], lock-free (see the top of the file) */
	_Atomic int64_t pinned_pages;

	pthread_mutex_t lock;
	uint64_t *bits;		 /* [nwords], guarded by lock */
	struct run_node *tree;	 /* [2 * nleaves], heap order, 1 is the root; guarded by lock */
	uint64_t free_units;	 /* guarded by lock */
	uint64_t deferred_units; /* freed while pinned; guarded by lock */
	uint64_t allocs;	 /* guarded by lock */
	uint64_t alloc_fails;	 /* guarded by lock */
};

/* A free extent usable for pages of one size, for the scattered path. */
struct extent {
	uint64_t start; /* first unit, aligned */
	uint64_t cap;	/* pages that fit */
};

static inline unsigned ctz64(uint64_t v)
{
	return v ? (unsigned)__builtin_ctzll(v) : 64;
}

static inline unsigned clz64(uint64_t v)
{
	return v ? (unsigned)__builtin_clzll(v) : 64;
}

static inline uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
	uint32_t m = a > b ? a : b;

	return m > c ? m : c;
}

static inline uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) & ~(to - 1);
}

static inline unsigned state_order(uint32_t s)
{
	return (s & ST_ORDER_MASK) >> ST_ORDER_SHIFT;
}

static inline uint64_t leaf_word(const struct kvfs_palloc *pa, size_t w)
{
	return w < pa->nwords ? pa->bits[w] : ~0ull;
}

static void leaf_set(struct run_node *n, uint64_t w)
{
	uint64_t f = ~w;
	uint32_t best = 0;

	n->pre = ctz64(w);
	n->suf = clz64(w);
	/* Hop from run to run of free bits: O(runs), not O(bits). */
	while (f) {
		uint32_t run;

		f >>= ctz64(f);
		run = ctz64(~f);
		if (run > best)
			best = run;
		f = run == 64 ? 0 : f >> run;
	}
	n->best = best;
}

static void node_pull(struct run_node *t, size_t i, uint32_t half)
{
	const struct run_node *l = &t[2 * i], *r = &t[2 * i + 1];

	t[i].pre = l->pre == half ? half + r->pre : l->pre;
	t[i].suf = r->suf == half ? half + l->suf : r->suf;
	t[i].best = max3(l->best, r->best, l->suf + r->pre);
}

/* Recompute the leaves of words [w0, w1] and every ancestor. Caller holds the lock. */
static void tree_update(struct kvfs_palloc *pa, size_t w0, size_t w1)
{
	size_t lo = pa->nleaves + w0, hi = pa->nleaves + w1;
	uint32_t half = 64;

	for (size_t i = lo; i <= hi; i++)
		leaf_set(&pa->tree[i], leaf_word(pa, i - pa->nleaves));
	for (lo >>= 1, hi >>= 1; lo >= 1; lo >>= 1, hi >>= 1, half <<= 1)
		for (size_t i = lo; i <= hi; i++)
			node_pull(pa->tree, i, half);
}

/* Set or clear bits [a, b) and update the tree and free count. Caller holds the lock. */
static void range_mark(struct kvfs_palloc *pa, uint64_t a, uint64_t b, bool set)
{
	size_t w0 = a >> 6, w1 = (b - 1) >> 6;

	for (size_t w = w0; w <= w1; w++) {
		uint64_t lo = w == w0 ? a & 63 : 0;
		uint64_t hi = w == w1 ? ((b - 1) & 63) + 1 : 64;
		uint64_t mask = (hi == 64 ? ~0ull : (1ull << hi) - 1) & ~((1ull << lo) - 1);

		if (set)
			pa->bits[w] |= mask;
		else
			pa->bits[w] &= ~mask;
	}
	tree_update(pa, w0, w1);
	if (set)
		pa->free_units -= b - a;
	else
		pa->free_units += b - a;
}

/* First allocated unit in [a, b), or b. Caller holds the lock. */
static uint64_t first_set(const struct kvfs_palloc *pa, uint64_t a, uint64_t b)
{
	while (a < b) {
		uint64_t w = pa->bits[a >> 6] & (~0ull << (a & 63));

		if (w)
			return (a & ~63ull) + ctz64(w) < b ? (a & ~63ull) + ctz64(w) : b;
		a = (a & ~63ull) + 64;
	}
	return b;
}

/* First free unit at or after a, or nunits. */
static uint64_t next_free(const struct kvfs_palloc *pa, uint64_t a)
{
	while (a < pa->nunits) {
		uint64_t w = ~pa->bits[a >> 6] & (~0ull << (a & 63));

		if (w)
			return (a & ~63ull) + ctz64(w);
		a = (a & ~63ull) + 64;
	}
	return pa->nunits;
}

/* Position of the first window of @len free bits inside word @w, or -1. */
static int window_in_word(uint64_t w, uint64_t len)
{
	uint64_t cur = ~w;
	uint64_t have = 1;

	if (len > 64)
		return -1;
	/* cur bit i set <=> units [i, i + have) are free; double "have" until it reaches len. */
	while (have < len && cur) {
		uint64_t s = have < len - have ? have : len - have;

		cur &= cur >> s;
		have += s;
	}
	return cur ? (int)ctz64(cur) : -1;
}

struct find_ctx {
	uint64_t x;	/* windows must start at or after this unit */
	uint64_t len;	/* units wanted */
	uint64_t carry; /* free units (at or after x) that end right before the current node */
};

/*
 * Leftmost window of c->len free units starting at or after c->x within node @i covering
 * units [start, start + span). Returns its first unit, or -1 with c->carry updated.
 */
static int64_t find_rec(const struct kvfs_palloc *pa, size_t i, uint64_t start, uint64_t span,
			struct find_ctx *c)
{
	const struct run_node *n = &pa->tree[i];
	int64_t r;

	if (start + span <= c->x)
		return -1;
	if (start >= c->x) {
		if (c->carry + n->pre >= c->len)
			return (int64_t)(start - c->carry);
		if (n->best < c->len) {
			c->carry = n->pre == span ? c->carry + span : n->suf;
			return -1;
		}
	}
	if (span == 64) {
		uint64_t w = leaf_word(pa, i - pa->nleaves);
		int k;

		if (start < c->x)
			w |= (1ull << (c->x - start)) - 1;
		if (c->carry + ctz64(w) >= c->len)
			return (int64_t)(start - c->carry);
		k = window_in_word(w, c->len);
		if (k >= 0)
			return (int64_t)(start + (uint64_t)k);
		c->carry = w == 0 ? c->carry + 64 : clz64(w);
		return -1;
	}
	r = find_rec(pa, 2 * i, start, span / 2, c);
	if (r >= 0)
		return r;
	return find_rec(pa, 2 * i + 1, start + span / 2, span / 2, c);
}

/* Leftmost window of @len free units at or after unit @x, or -1. */
static int64_t find_window(const struct kvfs_palloc *pa, uint64_t len, uint64_t x)
{
	struct find_ctx c = {.x = x, .len = len};

	return find_rec(pa, 1, 0, (uint64_t)pa->nleaves * 64, &c);
}

/*
 * First unit of a free run of @len units aligned to @align units, or -1 when none was found
 * cheaply (the caller falls back to the exhaustive scan). First fit, unless misaligned windows
 * (mixed page sizes) keep getting in the way: after MISALIGNED_TRIES of them, take the first
 * window long enough to hold an aligned run whatever its alignment.
 */
#define MISALIGNED_TRIES 16

static int64_t find_aligned(const struct kvfs_palloc *pa, uint64_t len, uint64_t align)
{
	uint64_t x = 0;
	int64_t p;

	for (int tries = 0; tries < MISALIGNED_TRIES && x + len <= pa->nunits; tries++) {
		uint64_t a, blocked;

		p = find_window(pa, len, x);
		if (p < 0)
			return -1;
		a = round_up((uint64_t)p, align);
		if (a == (uint64_t)p)
			return p;
		if (a + len > pa->nunits)
			return -1;
		blocked = first_set(pa, a, a + len);
		if (blocked == a + len)
			return (int64_t)a;
		x = blocked + 1;
	}
	if (align == 1)
		return -1;
	p = find_window(pa, len + align - 1, 0);
	return p < 0 ? -1 : (int64_t)round_up((uint64_t)p, align);
}

/* Mark @n pages of order @order from unit @u as allocated; append their offsets. */
static void take_pages(struct kvfs_palloc *pa, uint64_t u, uint64_t n, unsigned order,
		       uint64_t *offs)
{
	uint64_t units = 1ull << order;

	range_mark(pa, u, u + n * units, true);
	for (uint64_t i = 0; i < n; i++) {
		atomic_store_explicit(&pa->state[u + i * units],
				      ST_HEAD | (uint32_t)order << ST_ORDER_SHIFT,
				      memory_order_release);
		offs[i] = (u + i * units) << UNIT_SHIFT;
	}
}

/* Heap order for the scattered path: a min-heap on (cap, then later start). */
static bool ext_less(const struct extent *x, const struct extent *y)
{
	return x->cap != y->cap ? x->cap < y->cap : x->start > y->start;
}

static void heap_sift_down(struct extent *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;

		if (l < n && ext_less(&h[l], &h[m]))
			m = l;
		if (l + 1 < n && ext_less(&h[l + 1], &h[m]))
			m = l + 1;
		if (m == i)
			return;
		struct extent t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_push(struct extent *h, size_t *n, struct extent e)
{
	size_t i = (*n)++;

	h[i] = e;
	while (i > 0 && ext_less(&h[i], &h[(i - 1) / 2])) {
		struct extent t = h[i];

		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static int cmp_extent_desc(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	if (x->cap != y->cap)
		return x->cap > y->cap ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The slow path: no single run was found for n pages. Scan every free extent, keeping the n
 * largest (a min-heap: O(extents * log n), no allocation proportional to the arena); take the
 * largest runs until n pages are covered, the last from the smallest kept run that holds the
 * remainder. Caller holds the lock. Returns 0, -ENOSPC or -ENOMEM.
 */
static int alloc_scattered(struct kvfs_palloc *pa, unsigned order, uint64_t n, uint64_t *offs)
{
	uint64_t units = 1ull << order, total = 0, rem, done = 0, u = 0;
	size_t nheap = 0, k, j;
	struct extent *heap;

	heap = malloc(n * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	while ((u = next_free(pa, u)) < pa->nunits) {
		uint64_t e = first_set(pa, u, pa->nunits);
		uint64_t s = round_up(u, units), t = e & ~(units - 1);

		if (s < t) {
			struct extent x = {.start = s, .cap = (t - s) / units};

			total += x.cap;
			if (nheap < n) {
				heap_push(heap, &nheap, x);
			} else if (ext_less(&heap[0], &x)) {
				heap[0] = x;
				heap_sift_down(heap, nheap, 0);
			}
		}
		u = e;
	}
	if (total < n) {
		free(heap);
		return -ENOSPC;
	}

	qsort(heap, nheap, sizeof(*heap), cmp_extent_desc);
	for (k = 0, rem = n; heap[k].cap < rem; k++)
		rem -= heap[k].cap;
	/* heap[k] holds the remainder; so may a smaller run further down, which fragments less. */
	for (j = nheap - 1; j > k && heap[j].cap < rem; j--)
		;
	for (size_t i = 0; i < k; i++) {
		take_pages(pa, heap[i].start, heap[i].cap, order, offs + done);
		done += heap[i].cap;
	}
	take_pages(pa, heap[j].start, rem, order, offs + done);
	free(heap);
	qsort(offs, n, sizeof(*offs), cmp_u64);
	return 0;
}

/* Clear a released page's bits. Caller holds the lock. */
static void release_page(struct kvfs_palloc *pa, uint64_t u, unsigned order)
{
	range_mark(pa, u, u + (1ull << order), false);
}

/*
 * Validate a (page_size, off) pair; on success returns the head unit in *ret_unit and the order.
 * Returns the order (>= 0) or -EINVAL.
 */
static int page_check(const struct kvfs_palloc *pa, uint64_t page_size, uint64_t off,
		      uint64_t *ret_unit)
{
	unsigned order;

	if (!kvfs_page_size_valid(page_size) || (off & (page_size - 1)))
		return -EINVAL;
	order = (unsigned)__builtin_ctzll(page_size) - UNIT_SHIFT;
	if ((off >> UNIT_SHIFT) + (1ull << order) > pa->nunits)
		return -EINVAL;
	*ret_unit = off >> UNIT_SHIFT;
	return (int)order;
}

/* See pool.h. */
int kvfs_palloc_create(uint64_t capacity, struct kvfs_palloc **ret)
{
	uint64_t nunits = capacity >> UNIT_SHIFT;
	struct kvfs_palloc *pa;
	size_t nleaves = 1;

	if (nunits == 0 || nunits > MAX_UNITS)
		return -EINVAL;
	pa = calloc(1, sizeof(*pa));
	if (!pa)
		return -ENOMEM;
	pa->nunits = nunits;
	pa->nwords = (size_t)((nunits + 63) / 64);
	while (nleaves < pa->nwords)
		nleaves <<= 1;
	pa->nleaves = nleaves;
	pa->free_units = nunits;

	pa->state = calloc(nunits, sizeof(*pa->state));
	if (!pa->state)
		goto err_free_pa;
	pa->bits = calloc(pa->nwords, sizeof(*pa->bits));
	if (!pa->bits)
		goto err_free_state;
	pa->tree = calloc(2 * nleaves, sizeof(*pa->tree));
	if (!pa->tree)
		goto err_free_bits;
	if (nunits & 63)
		pa->bits[pa->nwords - 1] = ~0ull << (nunits & 63);
	tree_update(pa, 0, nleaves - 1);
	pthread_mutex_init(&pa->lock, NULL);
	*ret = pa;
	return 0;

err_free_bits:
	free(pa->bits);
err_free_state:
	free((void *)pa->state);
err_free_pa:
	free(pa);
	return -ENOMEM;
}

/* See pool.h. */
void kvfs_palloc_destroy(struct kvfs_palloc *pa)
{
	if (!pa)
		return;
	pthread_mutex_destroy(&pa->lock);
	free(pa->tree);
	free(pa->bits);
	free((void *)pa->state);
	free(pa);
}

/* See pool.h. Takes pa->lock; the scattered path may scan the bitmap under it. */
int kvfs_palloc_alloc(struct kvfs_palloc *pa, uint32_t page_size, uint32_t n, uint64_t *ret_offs)
{
	unsigned order;
	uint64_t need;
	int64_t p;
	int r;

	if (!kvfs_page_size_valid(page_size) || n == 0 || !ret_offs)
		return -EINVAL;
	order = (unsigned)__builtin_ctz(page_size) - UNIT_SHIFT;
	need = (uint64_t)n << order;

	pthread_mutex_lock(&pa->lock);
	/* Not enough free units, or no free run can hold even one page: fail without a scan. */
	if (need > pa->free_units || pa->tree[1].best < (1u << order)) {
		r = -ENOSPC;
		goto out_unlock;
	}
	p = find_aligned(pa, need, 1ull << order);
	if (p >= 0) {
		take_pages(pa, (uint64_t)p, n, order, ret_offs);
		r = 0;
	} else {
		r = alloc_scattered(pa, order, n, ret_offs);
	}
out_unlock:
	if (r == 0)
		pa->allocs++;
	else if (r == -ENOSPC)
		pa->alloc_fails++;
	pthread_mutex_unlock(&pa->lock);
	return r;
}

/* Free one page; caller holds the lock. */
static int free_one(struct kvfs_palloc *pa, uint32_t page_size, uint64_t off)
{
	uint64_t u;
	uint32_t s, ns;
	int order = page_check(pa, page_size, off, &u);

	if (order < 0)
		return order;
	s = atomic_load_explicit(&pa->state[u], memory_order_acquire);
	do {
		if (!(s & ST_HEAD) || (s & ST_FREED) || state_order(s) != (unsigned)order)
			return -EINVAL;
		ns = (s & ST_PINS) ? s | ST_FREED : 0;
	} while (!atomic_compare_exchange_weak_explicit(&pa->state[u], &s, ns, memory_order_acq_rel,
							memory_order_acquire));
	if (ns == 0)
		release_page(pa, u, (unsigned)order);
	else
		pa->deferred_units += 1ull << order;
	return 0;
}

/* See pool.h. Returns the last error of the call (each bad page is skipped). */
int kvfs_palloc_free(struct kvfs_palloc *pa, uint32_t page_size, uint32_t n, const uint64_t *offs)
{
	int r = 0;

	if (!kvfs_page_size_valid(page_size) || (n && !offs))
		return -EINVAL;
	pthread_mutex_lock(&pa->lock);
	for (uint32_t i = 0; i < n; i++) {
		int q = free_one(pa, page_size, offs[i]);

		if (q < 0)
			r = q;
	}
	pthread_mutex_unlock(&pa->lock);
	return r;
}

/* See pool.h. */
int kvfs_palloc_reserve(struct kvfs_palloc *pa, uint32_t page_size, uint64_t off)
{
	uint64_t u, units;
	int order = page_check(pa, page_size, off, &u);
	int r = 0;

	if (order < 0)
		return order;
	units = 1ull << order;
	pthread_mutex_lock(&pa->lock);
	if (first_set(pa, u, u + units) != u + units) {
		r = -EEXIST;
	} else {
		range_mark(pa, u, u + units, true);
		atomic_store_explicit(&pa->state[u], ST_HEAD | (uint32_t)order << ST_ORDER_SHIFT,
				      memory_order_release);
	}
	pthread_mutex_unlock(&pa->lock);
	return r;
}

/* See pool.h. Lock-free; -EOVERFLOW past 2^24 - 1 nested pins of one page. */
int kvfs_palloc_pin(struct kvfs_palloc *pa, uint64_t off)
{
	uint64_t u = off >> UNIT_SHIFT;
	uint32_t s;

	if ((off & (KVFS_PAGE_MIN - 1)) || u >= pa->nunits)
		return -EINVAL;
	s = atomic_load_explicit(&pa->state[u], memory_order_acquire);
	do {
		if (!(s & ST_HEAD) || (s & ST_FREED))
			return -EINVAL;
		if ((s & ST_PINS) == ST_PINS)
			return -EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(
		&pa->state[u], &s, s + 1, memory_order_acq_rel, memory_order_acquire));
	if ((s & ST_PINS) == 0)
		atomic_fetch_add_explicit(&pa->pinned_pages, 1, memory_order_relaxed);
	return 0;
}

/*
 * See pool.h. Lock-free unless this drops the last pin of a freed page, which then takes
 * pa->lock to return the page. Unpinning a page with no pins is a caller bug and is ignored.
 */
void kvfs_palloc_unpin(struct kvfs_palloc *pa, uint64_t off)
{
	uint64_t u = off >> UNIT_SHIFT;
	uint32_t s, ns;

	if ((off & (KVFS_PAGE_MIN - 1)) || u >= pa->nunits)
		return;
	s = atomic_load_explicit(&pa->state[u], memory_order_acquire);
	do {
		if (!(s & ST_HEAD) || !(s & ST_PINS))
			return;
		ns = s - 1;
		if (!(ns & ST_PINS) && (ns & ST_FREED))
			ns = 0;
	} while (!atomic_compare_exchange_weak_explicit(&pa->state[u], &s, ns, memory_order_acq_rel,
							memory_order_acquire));
	if (!(ns & ST_PINS))
		atomic_fetch_sub_explicit(&pa->pinned_pages, 1, memory_order_relaxed);
	if (ns == 0) {
		unsigned order = state_order(s);

		pthread_mutex_lock(&pa->lock);
		release_page(pa, u, order);
		pa->deferred_units -= 1ull << order;
		pthread_mutex_unlock(&pa->lock);
	}
}

/* See pool.h. A consistent snapshot of the locked counters; pinned_pages is read apart. */
void kvfs_palloc_get_stats(struct kvfs_palloc *pa, struct kvfs_palloc_stats *ret)
{
	int64_t pinned = atomic_load_explicit(&pa->pinned_pages, memory_order_relaxed);

	memset(ret, 0, sizeof(*ret));
	pthread_mutex_lock(&pa->lock);
	ret->capacity = pa->nunits << UNIT_SHIFT;
	ret->used = (pa->nunits - pa->free_units) << UNIT_SHIFT;
	ret->free = pa->free_units << UNIT_SHIFT;
	ret->deferred = pa->deferred_units << UNIT_SHIFT;
	ret->largest_run = (uint64_t)pa->tree[1].best << UNIT_SHIFT;
	ret->allocs = pa->allocs;
	ret->alloc_fails = pa->alloc_fails;
	pthread_mutex_unlock(&pa->lock);
	ret->pinned_pages = pinned > 0 ? (uint64_t)pinned : 0;
}

/* Bytes managed; immutable. */
uint64_t kvfs_palloc_capacity(const struct kvfs_palloc *pa)
{
	return pa->nunits << UNIT_SHIFT;
}

/* Bytes allocatable now (a snapshot). */
uint64_t kvfs_palloc_free_bytes(struct kvfs_palloc *pa)
{
	uint64_t f;

	pthread_mutex_lock(&pa->lock);
	f = pa->free_units;
	pthread_mutex_unlock(&pa->lock);
	return f << UNIT_SHIFT;
}
