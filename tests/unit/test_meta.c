/* SPDX-License-Identifier: MIT */
/*
 * test_meta.c - unit tests of the metadata state machine through its embedded ops table.
 *
 * Every case runs against a real page allocator (kvfs_palloc_create, no arena needed) and a real
 * LMDB store in a fresh temporary directory, removed at the end. Cases cover each op and its
 * errors, names, rename and orphans, readdir cookies under concurrent change, a 100,000-entry
 * directory (timed), persistence across restarts (incarnations), eviction, capacity, abort and
 * concurrent use. Timings and memory figures are printed to stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "meta.h"
#include "pool.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define PS  (64 * KiB)

static char tmpdir[256];
static struct kvfs_palloc *pa;
static struct kvfs_meta *m;
static const struct kvfs_meta_ops *ops;

/* names reported through cb.removed */
static pthread_mutex_t rm_lock = PTHREAD_MUTEX_INITIALIZER;
static char rm_names[64][KVFS_NAME_MAX + 1];
static int rm_count;

static void on_removed(void *ctx, uint64_t parent, const char *name, uint64_t ino)
{
	struct kvfs_attr a;

	(void)ctx;
	(void)parent;
	(void)ino;
	/* the state machine must not hold its lock here: this would deadlock (m is NULL while
	 * kvfs_meta_embedded_create drops the files of the previous incarnation) */
	if (m)
		ck_assert_int_eq(m->ops->getattr(m, KVFS_ROOT_INO, &a), 0);
	pthread_mutex_lock(&rm_lock);
	if (rm_count < 64)
		snprintf(rm_names[rm_count], sizeof(rm_names[0]), "%s", name);
	rm_count++;
	pthread_mutex_unlock(&rm_lock);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void meta_open(uint64_t arena)
{
	struct kvfs_meta_embedded_config cfg = {0};

	if (!pa)
		ck_assert_int_eq(kvfs_palloc_create(arena, &pa), 0);
	cfg.dir = tmpdir;
	cfg.local_palloc = pa;
	cfg.local_arena_size = arena;
	cfg.cb.removed = on_removed;
	ck_assert_int_eq(kvfs_meta_embedded_create(&cfg, &m), 0);
	ops = m->ops;
}

/* Restart: close the store and the allocator (DRAM is gone) and open both again. */
static void meta_restart(uint64_t arena)
{
	kvfs_meta_destroy(m);
	m = NULL;
	kvfs_palloc_destroy(pa);
	pa = NULL;
	meta_open(arena);
}

static void setup_arena(uint64_t arena)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/kvfs-test-meta.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	rm_count = 0;
	meta_open(arena);
}

static void setup(void)
{
	setup_arena(1 * GiB);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void teardown(void)
{
	kvfs_meta_destroy(m);
	m = NULL;
	kvfs_palloc_destroy(pa);
	pa = NULL;
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t mkpool(const char *name, uint32_t page_size, uint64_t capacity, uint8_t evict,
		       uint64_t max_file_size)
{
	struct kvfs_pool_attr a = {0};

	snprintf(a.name, sizeof(a.name), "%s", name);
	a.page_size = page_size;
	a.capacity = capacity;
	a.evict = evict;
	a.max_file_size = max_file_size;
	ck_assert_int_eq(ops->pool_create(m, &a), 0);
	ck_assert_uint_ne(a.id, 0);
	return a.root_ino;
}

static uint64_t mkfile(uint64_t dir, const char *name)
{
	struct kvfs_attr a;

	ck_assert_int_eq(ops->create(m, dir, name, 0644, 1, 2, true, &a), 0);
	return a.ino;
}

static uint64_t mkdir_(uint64_t dir, const char *name)
{
	struct kvfs_attr a;

	ck_assert_int_eq(ops->mkdir(m, dir, name, 0755, 0, 0, &a), 0);
	return a.ino;
}

/* Allocate and commit pages [first, first + n) and size (first + n) * page size. */
static void write_pages(uint64_t ino, uint64_t first, uint32_t n, uint32_t ps)
{
	struct kvfs_page_ref refs[64];
	struct kvfs_page_entry ents[64];
	struct kvfs_attr a;

	ck_assert_uint_le(n, 64);
	ck_assert_int_eq(ops->alloc(m, ino, first, n, 1, refs), 0);
	for (uint32_t i = 0; i < n; i++) {
		ents[i].index = first + i;
		ents[i].ref = refs[i];
	}
	ck_assert_int_eq(ops->commit(m, ino, (first + n) * ps, 0, ents, n, &a), 0);
}

static bool exists(uint64_t dir, const char *name)
{
	struct kvfs_attr a;

	return ops->lookup(m, dir, name, &a) == 0;
}

static uint64_t pool_used(uint64_t root)
{
	struct kvfs_statfs st;

	ck_assert_int_eq(ops->statfs(m, root, &st), 0);
	return st.used;
}

/* ------------------------------------------------------------------------------------------ */

START_TEST(test_names)
{
	char name[300];
	uint64_t p = mkpool("p", 0, 0, KVFS_EVICT_LRU, 0);
	struct kvfs_attr a;
	struct kvfs_pool_attr pa_ = {0};

	memset(name, 'x', sizeof(name));
	name[255] = '\0';
	mkfile(p, name);
	ck_assert_int_eq(ops->lookup(m, p, name, &a), 0);
	name[255] = 'x';
	name[256] = '\0';
	ck_assert_int_eq(ops->create(m, p, name, 0644, 0, 0, false, &a), -ENAMETOOLONG);
	ck_assert_int_eq(ops->mkdir(m, p, name, 0755, 0, 0, &a), -ENAMETOOLONG);
	ck_assert_int_eq(ops->lookup(m, p, name, &a), -ENAMETOOLONG);
	ck_assert_int_eq(ops->create(m, p, "a/b", 0644, 0, 0, false, &a), -EINVAL);
	ck_assert_int_eq(ops->create(m, p, "", 0644, 0, 0, false, &a), -EINVAL);
	ck_assert_int_eq(ops->create(m, p, ".", 0644, 0, 0, false, &a), -EINVAL);
	ck_assert_int_eq(ops->mkdir(m, p, "..", 0755, 0, 0, &a), -EINVAL);
	/* any other bytes are fine */
	mkfile(p, "\x01\x7f\xff sp\xc3\xa9"
		  "ce\t.tmp.1.2.uuid");
	mkfile(p, "...");
	mkfile(p, "model@ws@worker@hash@dtype.pt");
	ck_assert(exists(p, "..."));

	/* pool names: up to 64 bytes */
	memset(name, 'p', 64);
	name[64] = '\0';
	ck_assert_int_eq(ops->mkdir(m, KVFS_ROOT_INO, name, 0755, 0, 0, &a), 0);
	name[64] = 'p';
	name[65] = '\0';
	ck_assert_int_eq(ops->mkdir(m, KVFS_ROOT_INO, name, 0755, 0, 0, &a), -ENAMETOOLONG);
	memcpy(pa_.name, "a/b", 4);
	ck_assert_int_eq(ops->pool_create(m, &pa_), -EINVAL);
	/* pool names are stricter than file names: no control characters (they are words in
	 * kvfsctl's output and metrics labels), whichever way the pool is created */
	{
		static const char *const bad[] = {"",	  ".",	     "..",     "a\nb", "a\x01",
						  "\x1f", "del\x7f", "tab\tx", "a/b",  "/"};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			memset(&pa_, 0, sizeof(pa_));
			snprintf(pa_.name, sizeof(pa_.name), "%s", bad[i]);
			ck_assert_msg(ops->pool_create(m, &pa_) == -EINVAL, "pool name %zu", i);
			if (*bad[i])
				ck_assert_int_eq(
					ops->mkdir(m, KVFS_ROOT_INO, bad[i], 0755, 0, 0, &a),
					-EINVAL);
		}
	}
	memset(&pa_, 0, sizeof(pa_));
	memset(pa_.name, 'q', sizeof(pa_.name)); /* 65 bytes, no terminator */
	ck_assert_int_eq(ops->pool_create(m, &pa_), -ENAMETOOLONG);
	ck_assert_int_eq(ops->lookup(m, KVFS_ROOT_INO, "a\nb", &a), -ENOENT);
}
END_TEST

START_TEST(test_pools)
{
	struct kvfs_pool_attr *v, a = {0}, g;
	struct kvfs_attr at;
	size_t n;
	uint64_t kv;

	/* mkdir at the root: a pool with defaults */
	ck_assert_int_eq(ops->mkdir(m, KVFS_ROOT_INO, "kv", 0700, 5, 6, &at), 0);
	kv = at.ino;
	ck_assert(S_ISDIR(at.mode));
	ck_assert_uint_eq(at.mode & 07777, 0700);
	ck_assert_uint_eq(at.uid, 5);
	ck_assert_uint_eq(at.page_size, 1 * MiB);
	ck_assert_int_eq(ops->mkdir(m, KVFS_ROOT_INO, "kv", 0700, 0, 0, &at), -EEXIST);
	ck_assert_int_eq(ops->getattr(m, KVFS_ROOT_INO, &at), 0);
	ck_assert_uint_eq(at.nlink, 3);

	snprintf(a.name, sizeof(a.name), "mamba");
	a.page_size = 256 * KiB;
	a.capacity = 10 * MiB;
	a.evict = KVFS_EVICT_NONE;
	ck_assert_int_eq(ops->pool_create(m, &a), 0);
	ck_assert_int_eq(ops->pool_create(m, &a), -EEXIST);
	ck_assert_int_eq(ops->pool_get(m, a.id, &g), 0);
	ck_assert_str_eq(g.name, "mamba");
	ck_assert_uint_eq(g.page_size, 256 * KiB);
	ck_assert_uint_eq(g.capacity, 10 * MiB);
	ck_assert_uint_eq(g.evict, KVFS_EVICT_NONE);
	ck_assert_uint_eq(g.max_file_size, 16ull << 40);
	ck_assert_uint_eq(g.root_ino, a.root_ino);
	ck_assert_int_eq(ops->pool_get(m, 999, &g), -ENOENT);

	/* invalid options */
	struct kvfs_pool_attr bad = {.page_size = 3 * 64 * KiB};
	snprintf(bad.name, sizeof(bad.name), "bad");
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	bad.page_size = 32 * KiB;
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	bad.page_size = 0;
	bad.evict = 7;
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	/* sizes above KVFS_POOL_SIZE_MAX (2^62) would come back negative from signed JSON:
	 * "16777215T" is 2^64 - 2^40 */
	bad.evict = KVFS_EVICT_LRU;
	bad.capacity = 16777215ull << 40;
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	bad.capacity = KVFS_POOL_SIZE_MAX + 1;
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	bad.capacity = 0;
	bad.max_file_size = UINT64_MAX;
	ck_assert_int_eq(ops->pool_create(m, &bad), -EINVAL);
	bad.max_file_size = 0;
	bad.capacity = KVFS_POOL_SIZE_MAX;
	snprintf(bad.name, sizeof(bad.name), "huge");
	ck_assert_int_eq(ops->pool_create(m, &bad), 0);
	ck_assert_int_eq(ops->pool_get(m, bad.id, &g), 0);
	ck_assert_uint_eq(g.capacity, KVFS_POOL_SIZE_MAX);
	ck_assert_int_eq(ops->pool_drop(m, "huge", false), 0);

	ck_assert_int_eq(ops->pool_list(m, &v, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(v[0].name, "kv");
	ck_assert_str_eq(v[1].name, "mamba");
	free(v);

	/* no regular files at the root; pools are directories */
	ck_assert_int_eq(ops->create(m, KVFS_ROOT_INO, "f", 0644, 0, 0, false, &at), -EPERM);
	ck_assert_int_eq(ops->unlink(m, KVFS_ROOT_INO, "kv"), -EISDIR);

	/* rmdir at the root drops an empty pool only */
	mkfile(kv, "f");
	ck_assert_int_eq(ops->rmdir(m, KVFS_ROOT_INO, "kv"), -ENOTEMPTY);
	ck_assert_int_eq(ops->pool_drop(m, "kv", false), -ENOTEMPTY);
	ck_assert_int_eq(ops->rmdir(m, KVFS_ROOT_INO, "mamba"), 0);
	ck_assert(!exists(KVFS_ROOT_INO, "mamba"));
	ck_assert_int_eq(ops->pool_get(m, a.id, &g), -ENOENT);

	/* forced drop removes everything, pages included */
	uint64_t d = mkdir_(kv, "d");
	uint64_t f = mkfile(d, "g");

	write_pages(f, 0, 3, 1 * MiB);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 3 * MiB);
	ck_assert_int_eq(ops->pool_drop(m, "kv", true), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	ck_assert_int_eq(ops->getattr(m, f, &at), -ENOENT);
	ck_assert_int_eq(ops->getattr(m, kv, &at), -ENOENT);
	ck_assert_int_eq(ops->pool_drop(m, "kv", true), -ENOENT);
	ck_assert_int_eq(ops->pool_list(m, &v, &n), 0);
	ck_assert_uint_eq(n, 0);
	free(v);
	ck_assert_int_eq(ops->getattr(m, KVFS_ROOT_INO, &at), 0);
	ck_assert_uint_eq(at.nlink, 2);
}
END_TEST

START_TEST(test_namespace_errors)
{
	uint64_t p = mkpool("p", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t d = mkdir_(p, "d"), f, f2;
	struct kvfs_attr a, b;

	f = mkfile(d, "f");
	ck_assert_int_eq(ops->lookup(m, d, "nope", &a), -ENOENT);
	ck_assert_int_eq(ops->lookup(m, f, "x", &a), -ENOTDIR);
	ck_assert_int_eq(ops->lookup(m, 12345678, "x", &a), -ENOENT);
	ck_assert_int_eq(ops->create(m, f, "x", 0644, 0, 0, false, &a), -ENOTDIR);
	ck_assert_int_eq(ops->create(m, d, "f", 0644, 0, 0, true, &a), -EEXIST);
	ck_assert_int_eq(ops->create(m, d, "f", 0644, 0, 0, false, &a), 0);
	ck_assert_uint_eq(a.ino, f);
	ck_assert_int_eq(ops->create(m, p, "d", 0644, 0, 0, false, &a), -EISDIR);
	ck_assert_int_eq(ops->mkdir(m, d, "f", 0755, 0, 0, &a), -EEXIST);
	ck_assert_int_eq(ops->unlink(m, p, "d"), -EISDIR);
	ck_assert_int_eq(ops->unlink(m, d, "nope"), -ENOENT);
	ck_assert_int_eq(ops->rmdir(m, d, "f"), -ENOTDIR);
	ck_assert_int_eq(ops->rmdir(m, p, "d"), -ENOTEMPTY);
	ck_assert_int_eq(ops->rmdir(m, p, "nope"), -ENOENT);
	ck_assert_int_eq(ops->getattr(m, 999999, &a), -ENOENT);

	/* attributes */
	ck_assert_int_eq(ops->getattr(m, f, &a), 0);
	ck_assert(S_ISREG(a.mode));
	ck_assert_uint_eq(a.mode & 07777, 0644);
	ck_assert_uint_eq(a.uid, 1);
	ck_assert_uint_eq(a.gid, 2);
	ck_assert_uint_eq(a.nlink, 1);
	ck_assert_uint_eq(a.size, 0);
	ck_assert_uint_eq(a.page_size, PS);
	ck_assert_uint_ne(a.pool, 0);
	ck_assert_int_gt(a.mtime_ns, 0);
	ck_assert_int_eq(ops->getattr(m, p, &b), 0);
	ck_assert_uint_eq(b.nlink, 3); /* ".", its entry, d's ".." */

	struct kvfs_attr set = {.mode = 0600, .uid = 7, .gid = 8, .atime_ns = 11, .mtime_ns = 22};
	ck_assert_int_eq(ops->setattr(m, f, &set,
				      KVFS_SET_MODE | KVFS_SET_UID | KVFS_SET_GID | KVFS_SET_ATIME |
					      KVFS_SET_MTIME,
				      &a),
			 0);
	ck_assert_uint_eq(a.mode, S_IFREG | 0600);
	ck_assert_uint_eq(a.uid, 7);
	ck_assert_uint_eq(a.gid, 8);
	ck_assert_int_eq(a.atime_ns, 11);
	ck_assert_int_eq(a.mtime_ns, 22);
	set.size = 5;
	ck_assert_int_eq(ops->setattr(m, d, &set, KVFS_SET_SIZE, &a), -EISDIR);
	ck_assert_int_eq(ops->setattr(m, 4242, &set, KVFS_SET_MODE, &a), -ENOENT);

	/* a sparse truncate costs nothing */
	set.size = 1ull << 40;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_uint_eq(a.size, 1ull << 40);
	ck_assert_uint_eq(a.blocks, 0);

	/* directory times move with their entries */
	ck_assert_int_eq(ops->getattr(m, d, &b), 0);
	usleep(2000);
	f2 = mkfile(d, "f2");
	ck_assert_int_eq(ops->getattr(m, d, &a), 0);
	ck_assert_int_gt(a.mtime_ns, b.mtime_ns);
	ck_assert_int_eq(ops->unlink(m, d, "f2"), 0);
	ck_assert_int_eq(ops->getattr(m, f2, &a), -ENOENT);
	ck_assert_int_eq(ops->unlink(m, d, "f"), 0);
	ck_assert_int_eq(ops->rmdir(m, p, "d"), 0);
	ck_assert_int_eq(ops->getattr(m, p, &b), 0);
	ck_assert_uint_eq(b.nlink, 2);

	/* open/close and alloc on a directory */
	uint64_t lease;
	struct kvfs_page_ref ref;
	ck_assert_int_eq(ops->open(m, p, 1, &lease, NULL), -EISDIR);
	ck_assert_int_eq(ops->alloc(m, p, 0, 1, 1, &ref), -EISDIR);
	ck_assert_int_eq(ops->close(m, p, 77), -ENOENT);
}
END_TEST

START_TEST(test_rename)
{
	uint64_t p = mkpool("p", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t q = mkpool("q", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t d1 = mkdir_(p, "d1"), d2 = mkdir_(p, "d2"), sub = mkdir_(d1, "sub");
	uint64_t a = mkfile(d1, "a"), b = mkfile(d1, "b"), lease;
	struct kvfs_attr at;
	struct kvfs_layout *l;

	ck_assert_int_eq(ops->rename(m, d1, "a", d2, "a2", 0), 0);
	ck_assert(!exists(d1, "a"));
	ck_assert_int_eq(ops->lookup(m, d2, "a2", &at), 0);
	ck_assert_uint_eq(at.ino, a);
	ck_assert_int_eq(ops->rename(m, d1, "nope", d2, "x", 0), -ENOENT);
	ck_assert_int_eq(ops->rename(m, d1, "b", q, "b", 0), -EXDEV);
	ck_assert_int_eq(ops->rename(m, p, "d1", KVFS_ROOT_INO, "z", 0), -EXDEV);
	ck_assert_int_eq(ops->rename(m, KVFS_ROOT_INO, "p", KVFS_ROOT_INO, "z", 0), -EPERM);
	ck_assert_int_eq(ops->rename(m, d1, "b", d2, "a2", KVFS_RENAME_NOREPLACE), -EEXIST);
	ck_assert_int_eq(ops->rename(m, d1, "b", d2, "a2", 3), -EINVAL);

	/* replace a file that is open: it lives on as an orphan until its last close */
	write_pages(a, 0, 4, PS);
	ck_assert_int_eq(ops->open(m, a, 1, &lease, &l), 0);
	ck_assert_uint_eq(l->npages, 4);
	ck_assert_uint_eq(l->attr.size, 4 * PS);
	for (size_t i = 0; i < l->npages; i++)
		ck_assert_uint_eq(l->pages[i].index, i);
	kvfs_layout_free(l);
	ck_assert_int_eq(ops->rename(m, d1, "b", d2, "a2", 0), 0);
	ck_assert_int_eq(ops->lookup(m, d2, "a2", &at), 0);
	ck_assert_uint_eq(at.ino, b);
	ck_assert_int_eq(ops->getattr(m, a, &at), 0);
	ck_assert_uint_eq(at.nlink, 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * PS);
	ck_assert_int_eq(ops->layout(m, a, &l), 0); /* still readable */
	ck_assert_uint_eq(l->npages, 4);
	kvfs_layout_free(l);
	ck_assert_int_eq(ops->close(m, a, lease + 100), -ENOENT);
	ck_assert_int_eq(ops->close(m, b, lease), -EINVAL);
	ck_assert_int_eq(ops->close(m, a, lease), 0);
	ck_assert_int_eq(ops->getattr(m, a, &at), -ENOENT);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);

	/* unlink of an open file: same */
	write_pages(b, 0, 2, PS);
	ck_assert_int_eq(ops->open(m, b, 1, &lease, NULL), 0);
	ck_assert_int_eq(ops->unlink(m, d2, "a2"), 0);
	ck_assert_int_eq(ops->getattr(m, b, &at), 0);
	ck_assert_uint_eq(at.nlink, 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 2 * PS);
	ck_assert_int_eq(ops->close(m, b, lease), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);

	/* directories */
	uint64_t e = mkdir_(d2, "empty");
	mkfile(sub, "x");
	ck_assert_int_eq(ops->rename(m, p, "d1", d1, "loop", 0), -EINVAL);
	ck_assert_int_eq(ops->rename(m, p, "d1", sub, "loop", 0), -EINVAL);
	ck_assert_int_eq(ops->rename(m, d2, "empty", d1, "sub", 0), -ENOTEMPTY);
	ck_assert_int_eq(ops->rename(m, d1, "sub", d2, "empty", 0), 0);
	ck_assert_int_eq(ops->getattr(m, e, &at), -ENOENT);
	ck_assert_int_eq(ops->lookup(m, d2, "empty", &at), 0);
	ck_assert_uint_eq(at.ino, sub);
	ck_assert(exists(sub, "x"));
	ck_assert_int_eq(ops->getattr(m, d1, &at), 0);
	ck_assert_uint_eq(at.nlink, 2);
	ck_assert_int_eq(ops->getattr(m, d2, &at), 0);
	ck_assert_uint_eq(at.nlink, 3);
	uint64_t f = mkfile(d1, "file");
	ck_assert_int_eq(ops->rename(m, d1, "file", d2, "empty", 0), -EISDIR);
	ck_assert_int_eq(ops->rename(m, d2, "empty", d1, "file", 0), -ENOTDIR);
	/* same file: a no-op */
	ck_assert_int_eq(ops->rename(m, d1, "file", d1, "file", 0), 0);

	/* exchange */
	ck_assert_int_eq(ops->rename(m, d1, "file", d2, "empty", KVFS_RENAME_EXCHANGE), 0);
	ck_assert_int_eq(ops->lookup(m, d1, "file", &at), 0);
	ck_assert_uint_eq(at.ino, sub);
	ck_assert_int_eq(ops->lookup(m, d2, "empty", &at), 0);
	ck_assert_uint_eq(at.ino, f);
	ck_assert_int_eq(ops->getattr(m, d1, &at), 0);
	ck_assert_uint_eq(at.nlink, 3);
	ck_assert_int_eq(ops->getattr(m, d2, &at), 0);
	ck_assert_uint_eq(at.nlink, 2);
	ck_assert_int_eq(ops->rename(m, d1, "file", d2, "nope", KVFS_RENAME_EXCHANGE), -ENOENT);
	ck_assert_int_eq(ops->rename(m, p, "d1", d1, "file", KVFS_RENAME_EXCHANGE), -EINVAL);
}
END_TEST

static int count_entries(uint64_t dir)
{
	struct kvfs_dirent ents[64];
	uint64_t cookie = 0;
	size_t n;
	int total = 0;

	for (;;) {
		ck_assert_int_eq(ops->readdir(m, dir, cookie, ents, 64, &n), 0);
		if (n == 0)
			break;
		total += n;
		cookie = ents[n - 1].cookie;
	}
	return total;
}

START_TEST(test_readdir_cookies)
{
	uint64_t p = mkpool("p", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t d = mkdir_(p, "d");
	struct kvfs_dirent ents[7];
	char name[64];
	uint64_t cookie = 0, prev = 0;
	size_t n;
	int seen[2000] = {0}, created = 1000, removed_next = 0;

	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mkfile(d, name);
	}
	/* between pages: create some, remove some (also ones already listed and ones ahead) */
	for (;;) {
		ck_assert_int_eq(ops->readdir(m, d, cookie, ents, 7, &n), 0);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			int k;

			ck_assert_uint_gt(ents[i].cookie, prev);
			prev = ents[i].cookie;
			ck_assert_int_eq(sscanf(ents[i].name, "f%d", &k), 1);
			ck_assert_int_lt(k, 2000);
			ck_assert_int_eq(seen[k], 0);
			seen[k] = 1;
			ck_assert(S_ISREG(ents[i].attr.mode));
			ck_assert_uint_ne(ents[i].attr.ino, 0);
		}
		cookie = ents[n - 1].cookie;
		if (created < 2000) {
			snprintf(name, sizeof(name), "f%d", created++);
			mkfile(d, name);
		}
		snprintf(name, sizeof(name), "f%d", removed_next);
		removed_next += 3;
		ops->unlink(m, d, name);
	}
	/* every entry that existed from start to end was returned exactly once */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		if (exists(d, name))
			ck_assert_int_eq(seen[i], 1);
	}
	/* no "." or "..", and a fresh listing sees exactly what exists */
	ck_assert_int_eq(ops->readdir(m, d, 0, ents, 7, &n), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert(strcmp(ents[i].name, ".") && strcmp(ents[i].name, ".."));
	ck_assert_int_eq(ops->getattr(m, d, &ents[0].attr), 0);
	ck_assert_int_eq(ops->readdir(m, mkfile(d, "zz"), 0, ents, 7, &n), -ENOTDIR);
	ck_assert_int_eq(ops->readdir(m, 31337, 0, ents, 7, &n), -ENOENT);

	/* the root lists pools */
	ck_assert_int_eq(ops->readdir(m, KVFS_ROOT_INO, 0, ents, 7, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ents[0].name, "p");
	ck_assert(S_ISDIR(ents[0].attr.mode));
}
END_TEST

struct churn {
	uint64_t dir;
	volatile int stop;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	char name[64];
	struct kvfs_attr a;

	for (int i = 0; !c->stop; i++) {
		snprintf(name, sizeof(name), "new%d", i);
		ck_assert_int_eq(ops->create(m, c->dir, name, 0644, 0, 0, true, &a), 0);
		if (i % 2 == 0) {
			snprintf(name, sizeof(name), "old%d", i % 5000);
			ops->unlink(m, c->dir, name);
		}
	}
	return NULL;
}

START_TEST(test_readdir_concurrent)
{
	uint64_t p = mkpool("p", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t d = mkdir_(p, "d");
	struct churn c = {.dir = d};
	struct kvfs_dirent ents[50];
	char name[64];
	pthread_t t;
	static char seen_old[5000];
	uint64_t cookie = 0;
	size_t n;

	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "old%d", i);
		mkfile(d, name);
	}
	memset(seen_old, 0, sizeof(seen_old));
	ck_assert_int_eq(pthread_create(&t, NULL, churn_thread, &c), 0);
	for (int rounds = 0;; rounds++) {
		ck_assert_int_eq(ops->readdir(m, d, cookie, ents, 50, &n), 0);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			int k;

			if (sscanf(ents[i].name, "old%d", &k) == 1) {
				ck_assert_int_eq(seen_old[k], 0);
				seen_old[k] = 1;
			}
		}
		cookie = ents[n - 1].cookie;
		if (rounds > 2000)
			break; /* the creator may outrun us; the old ones are all behind by now */
	}
	c.stop = 1;
	pthread_join(t, NULL);
	for (int i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "old%d", i);
		if (exists(d, name))
			ck_assert_int_eq(seen_old[i], 1);
	}
}
END_TEST

static long rss_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, field, strlen(field)) == 0)
			v = atol(line + strlen(field) + 1);
	}
	fclose(f);
	return v;
}

START_TEST(test_big_dir)
{
	enum { N = 100000 };
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 0);
	struct kvfs_dirent *ents = malloc(1000 * sizeof(*ents));
	struct mallinfo2 mi0, mi1;
	char name[128];
	struct kvfs_attr a;
	double t0, t1, t2, t3, t4;
	uint64_t cookie = 0;
	size_t n, total = 0;
	long anon0 = rss_kb("RssAnon:"), anon1;

	ck_assert_ptr_nonnull(ents);
	mi0 = mallinfo2();
	t0 = now_s();
	for (int i = 0; i < N; i++) {
		/* HiCacheFile-shaped names */
		snprintf(name, sizeof(name), "%016x%016x%016x%016x_llama-3-8b_%d_%d.bin",
			 i * 2654435761u, i, ~i, i * 40503u, i % 8, 1048576);
		ck_assert_int_eq(ops->create(m, p, name, 0644, 0, 0, true, &a), 0);
	}
	t1 = now_s();
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "%016x%016x%016x%016x_llama-3-8b_%d_%d.bin",
			 i * 2654435761u, i, ~i, i * 40503u, i % 8, 1048576);
		ck_assert_int_eq(ops->lookup(m, p, name, &a), 0);
	}
	t2 = now_s();
	for (;;) {
		ck_assert_int_eq(ops->readdir(m, p, cookie, ents, 1000, &n), 0);
		if (!n)
			break;
		total += n;
		cookie = ents[n - 1].cookie;
	}
	t3 = now_s();
	ck_assert_uint_eq(total, N);
	/* memory per file, with three pages each */
	for (int i = 0; i < N; i += 1) {
		snprintf(name, sizeof(name), "%016x%016x%016x%016x_llama-3-8b_%d_%d.bin",
			 i * 2654435761u, i, ~i, i * 40503u, i % 8, 1048576);
		ck_assert_int_eq(ops->lookup(m, p, name, &a), 0);
		write_pages(a.ino, 0, 3, PS);
	}
	mi1 = mallinfo2();
	anon1 = rss_kb("RssAnon:");
	fprintf(stderr,
		"meta: %d files in one dir: create %.0f/s, lookup %.0f/s, readdir %.0f entries/s; "
		"heap %.0f B/file (3 pages each, incl. name ~80 B), RssAnon +%ld KiB, "
		"RssFile %ld KiB\n",
		N, N / (t1 - t0), N / (t2 - t1), N / (t3 - t2),
		(double)(mi1.uordblks - mi0.uordblks) / N, anon1 - anon0, rss_kb("RssFile:"));
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "%016x%016x%016x%016x_llama-3-8b_%d_%d.bin",
			 i * 2654435761u, i, ~i, i * 40503u, i % 8, 1048576);
		ck_assert_int_eq(ops->unlink(m, p, name), 0);
	}
	t4 = now_s();
	fprintf(stderr, "meta: unlink %.0f/s, RssFile %ld KiB\n", N / (t4 - t3),
		rss_kb("RssFile:"));
	ck_assert_int_eq(ops->readdir(m, p, 0, ents, 1000, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), kvfs_palloc_capacity(pa));
	free(ents);
}
END_TEST

START_TEST(test_persistence)
{
	uint64_t lru = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t none = mkpool("keep", 128 * KiB, 64 * MiB, KVFS_EVICT_NONE, 1 * GiB);
	uint64_t d = mkdir_(lru, "dir"), sub = mkdir_(d, "sub");
	uint64_t empty = mkfile(sub, "empty"), full = mkfile(d, "full"),
		 kept = mkfile(none, "kept");
	uint64_t pend = mkfile(none, "pending");
	struct kvfs_page_ref ref;
	struct kvfs_attr a, set = {.size = 12345};
	struct kvfs_pool_attr pl;
	struct kvfs_layout *l;
	uint32_t node, inc1, inc2;
	char buf[64];
	size_t len;

	kvfs_meta_embedded_node(m, &node, &inc1);
	ck_assert_uint_eq(node, 1);
	ck_assert_uint_ge(inc1, 1);
	ck_assert_int_eq(ops->setxattr(m, empty, "user.a", "hello", 5, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, d, "user.dir", "", 0, 0), 0);
	ck_assert_int_eq(ops->setattr(m, empty, &set, KVFS_SET_SIZE, NULL), 0);
	write_pages(full, 0, 3, PS);
	write_pages(kept, 0, 2, 128 * KiB);
	ck_assert_int_eq(ops->alloc(m, pend, 0, 1, 1, &ref), 0);
	ck_assert_int_eq(ops->getattr(m, kept, &a), 0);
	uint64_t kept_size = a.size;

	meta_restart(1 * GiB);
	kvfs_meta_embedded_node(m, &node, &inc2);
	ck_assert_uint_eq(inc2, inc1 + 1);
	/* the namespace, empty files and xattrs survive */
	ck_assert_int_eq(ops->lookup(m, KVFS_ROOT_INO, "kv", &a), 0);
	ck_assert_uint_eq(a.ino, lru);
	ck_assert_int_eq(ops->pool_get(m, a.pool, &pl), 0);
	ck_assert_uint_eq(pl.page_size, PS);
	ck_assert_int_eq(ops->lookup(m, KVFS_ROOT_INO, "keep", &a), 0);
	ck_assert_int_eq(ops->pool_get(m, a.pool, &pl), 0);
	ck_assert_uint_eq(pl.page_size, 128 * KiB);
	ck_assert_uint_eq(pl.capacity, 64 * MiB);
	ck_assert_uint_eq(pl.evict, KVFS_EVICT_NONE);
	ck_assert_uint_eq(pl.max_file_size, 1 * GiB);
	ck_assert_int_eq(ops->lookup(m, d, "sub", &a), 0);
	ck_assert_uint_eq(a.ino, sub);
	ck_assert_int_eq(ops->lookup(m, sub, "empty", &a), 0);
	ck_assert_uint_eq(a.ino, empty);
	ck_assert_uint_eq(a.size, 12345);
	ck_assert_int_eq(ops->getxattr(m, empty, "user.a", buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	ck_assert_int_eq(ops->getxattr(m, d, "user.dir", buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, 0);
	/* a file with pages in an lru pool is dropped: its DRAM is gone */
	ck_assert(!exists(d, "full"));
	ck_assert_int_eq(ops->getattr(m, full, &a), -ENOENT);
	/* in a none pool it is marked lost, size kept, pages removed */
	ck_assert_int_eq(ops->layout(m, kept, &l), 0);
	ck_assert(l->attr.flags & KVFS_ATTR_LOST);
	ck_assert_uint_eq(l->attr.size, kept_size);
	ck_assert_uint_eq(l->npages, 0);
	kvfs_layout_free(l);
	/* the pending allocation is gone and the allocator is empty */
	ck_assert_int_eq(ops->layout(m, pend, &l), 0);
	ck_assert_uint_eq(l->attr.flags & KVFS_ATTR_LOST, 0);
	kvfs_layout_free(l);
	struct kvfs_page_entry e = {.index = 0, .ref = ref};
	ck_assert_int_eq(ops->commit(m, pend, PS, 0, &e, 1, NULL), -ESTALE);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	ck_assert_uint_eq(pool_used(none), 0);
	/* it keeps working, and new inodes never reuse numbers */
	uint64_t f = mkfile(d, "after");
	ck_assert_uint_gt(f, pend);
	write_pages(f, 0, 1, PS);
	ck_assert_int_eq(ops->setattr(m, kept, &(struct kvfs_attr){.size = 0}, KVFS_SET_SIZE, &a),
			 0);
	ck_assert_uint_eq(a.flags & KVFS_ATTR_LOST, 0);
	/* a restart without pages in between keeps everything page-free */
	meta_restart(1 * GiB);
	ck_assert(!exists(d, "after"));
	ck_assert(exists(sub, "empty"));
	ck_assert(exists(none, "kept"));
}
END_TEST

START_TEST(test_persistence_orphan_and_listing)
{
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_NONE, 0), lease;
	uint64_t f = mkfile(p, "open"), g;
	struct kvfs_dirent ents[8];
	size_t n;

	mkfile(p, "a");
	ck_assert_int_eq(ops->open(m, f, 1, &lease, NULL), 0);
	ck_assert_int_eq(ops->unlink(m, p, "open"), 0);
	meta_restart(1 * GiB);
	/* the orphan's holders died with the process */
	struct kvfs_attr a;
	ck_assert_int_eq(ops->getattr(m, f, &a), -ENOENT);
	/* listing continues past old cookies with new entries */
	ck_assert_int_eq(ops->readdir(m, p, 0, ents, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	g = mkfile(p, "b");
	(void)g;
	ck_assert_int_eq(ops->readdir(m, p, ents[0].cookie, ents, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ents[0].name, "b");

	/* a forced drop while a file is open: the orphan keeps its pages until close, and a restart
	 * in between forgets both the orphan and the dropped pool */
	uint64_t q = mkpool("q", PS, 0, KVFS_EVICT_LRU, 0), h = mkfile(q, "h");
	write_pages(h, 0, 2, PS);
	ck_assert_int_eq(ops->open(m, h, 1, &lease, NULL), 0);
	ck_assert_int_eq(ops->pool_drop(m, "q", true), 0);
	ck_assert_int_eq(rm_count, 1);
	ck_assert_str_eq(rm_names[0], "q");
	ck_assert(!exists(KVFS_ROOT_INO, "q"));
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 2 * PS);
	ck_assert_int_eq(ops->getattr(m, h, &a), 0);
	ck_assert_uint_eq(a.nlink, 0);
	ck_assert_uint_eq(a.page_size, PS);
	meta_restart(1 * GiB);
	ck_assert_int_eq(ops->getattr(m, h, &a), -ENOENT);
	mkpool("q", PS, 0, KVFS_EVICT_LRU, 0);
	/* and with the close before the restart */
	uint64_t r2 = mkpool("r", PS, 0, KVFS_EVICT_LRU, 0), h2 = mkfile(r2, "h");
	write_pages(h2, 0, 1, PS);
	ck_assert_int_eq(ops->open(m, h2, 1, &lease, NULL), 0);
	ck_assert_int_eq(ops->pool_drop(m, "r", true), 0);
	ck_assert_int_eq(ops->close(m, h2, lease), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	meta_restart(1 * GiB);
	struct kvfs_pool_attr *v;
	ck_assert_int_eq(ops->pool_list(m, &v, &n), 0);
	ck_assert_uint_eq(n, 2);
	free(v);
}
END_TEST

START_TEST(test_lru_eviction)
{
	/* capacity 4 pages */
	uint64_t p = mkpool("kv", PS, 4 * PS, KVFS_EVICT_LRU, 0);
	uint64_t f[4], e, lease, lease2;
	struct kvfs_pool_attr pl;
	struct kvfs_attr a;
	struct kvfs_statfs st;
	char name[8];

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		f[i] = mkfile(p, name);
		write_pages(f[i], 0, 1, PS);
	}
	ck_assert_int_eq(ops->statfs(m, p, &st), 0);
	ck_assert_uint_eq(st.capacity, 4 * PS);
	ck_assert_uint_eq(st.used, 4 * PS);
	ck_assert_uint_eq(st.free, 4 * PS); /* all evictable */
	ck_assert_uint_eq(st.files, 4);
	/* f0 is in use (open), f1 was used recently (open + close) */
	ck_assert_int_eq(ops->open(m, f[0], 1, &lease, NULL), 0);
	ck_assert_int_eq(ops->open(m, f[1], 1, &lease2, NULL), 0);
	ck_assert_int_eq(ops->close(m, f[1], lease2), 0);
	ck_assert_int_eq(ops->statfs(m, p, &st), 0);
	ck_assert_uint_eq(st.free, 3 * PS);

	e = mkfile(p, "e");
	write_pages(e, 0, 1, PS); /* evicts f2 */
	ck_assert_int_eq(rm_count, 1);
	ck_assert_str_eq(rm_names[0], "f2");
	ck_assert(!exists(p, "f2"));
	write_pages(e, 1, 2, PS); /* evicts f3, then f1 */
	ck_assert_int_eq(rm_count, 3);
	ck_assert_str_eq(rm_names[1], "f3");
	ck_assert_str_eq(rm_names[2], "f1");
	ck_assert(exists(p, "f0"));
	ck_assert_int_eq(ops->getattr(m, p, &a), 0);
	ck_assert_int_eq(ops->pool_get(m, a.pool, &pl), 0);
	ck_assert_uint_eq(pl.evictions, 3);
	ck_assert_uint_eq(pl.evicted_bytes, 3 * PS);
	ck_assert_uint_eq(pl.used, 4 * PS);
	ck_assert_uint_eq(pl.files, 2);
	/* only the open file and the writer's own file are left: nothing more to evict */
	ck_assert_int_eq(ops->alloc(m, e, 3, 1, 1, &(struct kvfs_page_ref){0}), -ENOSPC);
	ck_assert_int_eq(rm_count, 3);
	ck_assert(exists(p, "f0"));
	/* more than the capacity can never fit */
	ck_assert_int_eq(ops->alloc(m, e, 10, 5, 1, (struct kvfs_page_ref[5]){0}), -ENOSPC);
	ck_assert_int_eq(ops->close(m, f[0], lease), 0);
	write_pages(e, 3, 1, PS); /* now f0 goes */
	ck_assert_int_eq(rm_count, 4);
	ck_assert_str_eq(rm_names[3], "f0");
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * PS);
}
END_TEST

START_TEST(test_arena_eviction_global)
{
	/* arena of 16 pages of 64 KiB shared by two lru pools and a none pool */
	uint64_t a = mkpool("a", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t b = mkpool("b", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t c = mkpool("c", PS, 0, KVFS_EVICT_NONE, 0);
	uint64_t fa1 = mkfile(a, "a1"), fb1 = mkfile(b, "b1"), fa2 = mkfile(a, "a2");
	uint64_t fc = mkfile(c, "c1"), fb2;
	struct kvfs_statfs st;

	write_pages(fb1, 0, 4, PS); /* oldest */
	write_pages(fa1, 0, 4, PS);
	write_pages(fa2, 0, 4, PS);
	write_pages(fc, 0, 4, PS);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 0);
	ck_assert_int_eq(ops->statfs(m, KVFS_ROOT_INO, &st), 0);
	ck_assert_uint_eq(st.capacity, 16 * PS);
	ck_assert_uint_eq(st.used, 16 * PS);
	ck_assert_uint_eq(st.free, 12 * PS);
	ck_assert_uint_eq(st.files, 4);
	ck_assert_uint_eq(st.page_size, 0);
	/* b needs room: its own pool's LRU first (b1) */
	fb2 = mkfile(b, "b2");
	write_pages(fb2, 0, 2, PS);
	ck_assert_int_eq(rm_count, 1);
	ck_assert_str_eq(rm_names[0], "b1");
	/* b2 holds 2 pages and the arena has 2 free; 6 more: b has nothing evictable but b2, which
	 * is the writer itself; then the global LRU: a1 */
	write_pages(fb2, 2, 6, PS);
	ck_assert_int_eq(rm_count, 2);
	ck_assert_str_eq(rm_names[1], "a1");
	/* the none pool never evicts its own, but it may take from lru pools */
	uint64_t fc2 = mkfile(c, "c2");
	write_pages(fc2, 0, 2, PS);
	ck_assert_int_eq(rm_count, 3);
	ck_assert(exists(c, "c1"));
	ck_assert(exists(b, "b2"));
	(void)fa2;
}
END_TEST

START_TEST(test_none_enospc)
{
	uint64_t p = mkpool("kv", PS, 3 * PS, KVFS_EVICT_NONE, 0);
	uint64_t f = mkfile(p, "f"), g = mkfile(p, "g");
	struct kvfs_page_ref refs[2];
	struct kvfs_statfs st;
	struct kvfs_layout *l;

	write_pages(f, 0, 2, PS);
	ck_assert_int_eq(ops->statfs(m, p, &st), 0);
	ck_assert_uint_eq(st.free, 1 * PS);
	ck_assert_int_eq(ops->alloc(m, g, 0, 2, 1, refs), -ENOSPC);
	ck_assert_int_eq(rm_count, 0);
	ck_assert_int_eq(ops->layout(m, f, &l), 0);
	ck_assert_uint_eq(l->npages, 2);
	kvfs_layout_free(l);
	ck_assert_uint_eq(pool_used(p), 2 * PS);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 2 * PS);
	write_pages(g, 0, 1, PS);
	ck_assert_int_eq(ops->alloc(m, g, 1, 1, 1, refs), -ENOSPC);
	ck_assert_int_eq(ops->statfs(m, p, &st), 0);
	ck_assert_uint_eq(st.free, 0);
	/* deleting frees capacity */
	ck_assert_int_eq(ops->unlink(m, p, "f"), 0);
	write_pages(g, 1, 2, PS);
}
END_TEST

START_TEST(test_efbig_abort_commit)
{
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 1 * MiB + 1);
	uint64_t f = mkfile(p, "f");
	struct kvfs_page_ref refs[4], ref;
	struct kvfs_page_entry e[4];
	struct kvfs_attr a, set = {0};
	struct kvfs_layout *l;

	/* max 1 MiB + 1: page 16 holds the last byte, page 17 is beyond */
	ck_assert_int_eq(ops->alloc(m, f, 17, 1, 1, refs), -EFBIG);
	ck_assert_int_eq(ops->alloc(m, f, 15, 3, 1, refs), -EFBIG);
	ck_assert_int_eq(ops->alloc(m, f, UINT64_MAX - 1, 2, 1, refs), -EFBIG);
	ck_assert_int_eq(ops->alloc(m, f, 0, 0, 1, refs), -EINVAL);
	set.size = 1 * MiB + 2;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), -EFBIG);
	ck_assert_int_eq(ops->commit(m, f, 1 * MiB + 2, 0, NULL, 0, &a), -EFBIG);

	/* pending pages are invisible, abort releases them */
	ck_assert_int_eq(ops->alloc(m, f, 16, 1, 1, refs), 0);
	ck_assert_uint_eq(refs[0].node, 1);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - PS);
	ck_assert_int_eq(ops->layout(m, f, &l), 0);
	ck_assert_uint_eq(l->npages, 0);
	kvfs_layout_free(l);
	ck_assert_uint_eq(pool_used(p), PS);
	ck_assert_int_eq(ops->abort(m, f, refs, 1), 0);
	ck_assert_int_eq(ops->abort(m, f, refs, 1), 0); /* idempotent */
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	ck_assert_uint_eq(pool_used(p), 0);
	e[0].index = 16;
	e[0].ref = refs[0];
	ck_assert_int_eq(ops->commit(m, f, 1 * MiB + 1, 0, e, 1, &a), -ESTALE);

	/* commit: publishes, bumps version, idempotent; committed pages cannot be allocated */
	ck_assert_int_eq(ops->alloc(m, f, 0, 4, 1, refs), 0);
	for (int i = 0; i < 4; i++) {
		e[i].index = i;
		e[i].ref = refs[i];
	}
	ck_assert_int_eq(ops->getattr(m, f, &a), 0);
	uint64_t v0 = a.version;
	ck_assert_int_eq(ops->commit(m, f, 3 * PS + 10, 1234, e, 4, &a), 0);
	ck_assert_uint_eq(a.size, 3 * PS + 10);
	ck_assert_int_eq(a.mtime_ns, 1234);
	ck_assert_uint_gt(a.version, v0);
	ck_assert_uint_eq(a.blocks, 4 * PS / 512);
	ck_assert_int_eq(ops->commit(m, f, 3 * PS + 10, 0, e, 4, &a), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * PS);
	ck_assert_int_eq(ops->layout(m, f, &l), 0);
	ck_assert_uint_eq(l->npages, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_uint_eq(l->pages[i].index, i);
		ck_assert_uint_eq(l->pages[i].ref.off, refs[i].off);
		ck_assert_uint_eq(l->pages[i].ref.incarnation, refs[i].incarnation);
	}
	kvfs_layout_free(l);
	/* a smaller size never shrinks through commit */
	ck_assert_int_eq(ops->commit(m, f, 10, 0, NULL, 0, &a), 0);
	ck_assert_uint_eq(a.size, 3 * PS + 10);
	ck_assert_int_eq(ops->alloc(m, f, 3, 2, 1, &ref), -EEXIST);
	/* a page committed with another ref is stale */
	e[0].ref.off += PS * 100;
	ck_assert_int_eq(ops->commit(m, f, 0, 0, e, 1, &a), -ESTALE);

	/* truncate frees pages wholly beyond the size */
	v0 = a.version;
	set.size = PS + 1;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_uint_eq(a.size, PS + 1);
	ck_assert_uint_gt(a.version, v0);
	ck_assert_uint_eq(a.blocks, 2 * PS / 512);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 2 * PS);
	ck_assert_uint_eq(pool_used(p), 2 * PS);
	set.size = 0;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);

	/* unlinking a file with pending pages and no lease releases them */
	ck_assert_int_eq(ops->alloc(m, f, 0, 2, 0, refs), 0);
	ck_assert_int_eq(ops->unlink(m, p, "f"), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	ck_assert_uint_eq(pool_used(p), 0);
	ck_assert_int_eq(ops->commit(m, f, 0, 0, NULL, 0, &a), -ENOENT);
}
END_TEST

/*
 * Pages a truncate cuts off a file that a node holds open stay allocated until the last lease
 * goes: that node may still write into them through its page map, and handing them to another
 * file would put one file's bytes into another.
 */
START_TEST(test_truncate_under_lease)
{
	uint64_t p = mkpool("tl", 1 * MiB, 0, KVFS_EVICT_LRU, 0), f = mkfile(p, "f"),
		 g = mkfile(p, "g");
	struct kvfs_attr set = {0}, a;
	struct kvfs_layout *l = NULL;
	struct kvfs_page_ref ref;
	uint64_t lease, lease2;

	write_pages(f, 0, 4, MiB);
	ck_assert_int_eq(ops->open(m, f, 1, &lease, &l), 0);
	kvfs_layout_free(l);
	ck_assert_int_eq(ops->open(m, f, 1, &lease2, NULL), 0);
	set.size = MiB;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_uint_eq(a.blocks, MiB / 512);
	ck_assert_uint_eq(pool_used(p), MiB);
	/* the three cut pages are still taken: a new file cannot get any of them */
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * MiB);
	ck_assert_int_eq(ops->alloc(m, g, 0, 1, 1, &ref), 0);
	ck_assert_int_eq(ops->abort(m, g, &ref, 1), 0);
	ck_assert_int_eq(ops->close(m, f, lease), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * MiB);
	/* the last close frees them */
	ck_assert_int_eq(ops->close(m, f, lease2), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - MiB);
	/* unlinked while leased and cut: everything goes at the last close */
	write_pages(f, 1, 3, MiB);
	ck_assert_int_eq(ops->open(m, f, 1, &lease, NULL), 0);
	set.size = 0;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_int_eq(ops->unlink(m, p, "f"), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - 4 * MiB);
	ck_assert_int_eq(ops->close(m, f, lease), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB);
	/* without a lease a truncate frees at once */
	write_pages(g, 0, 2, MiB);
	set.size = 1;
	ck_assert_int_eq(ops->setattr(m, g, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_uint_eq(kvfs_palloc_free_bytes(pa), 1 * GiB - MiB);
}
END_TEST

/* truncate(2) changes the times only with the size; explicit times always win */
START_TEST(test_truncate_times)
{
	uint64_t p = mkpool("tt", 1 * MiB, 0, KVFS_EVICT_LRU, 0), f = mkfile(p, "f");
	struct kvfs_attr set = {0}, a;

	set.mtime_ns = set.ctime_ns = 1000;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_MTIME | KVFS_SET_CTIME, &a), 0);
	ck_assert_int_eq(a.mtime_ns, 1000);
	set.size = 0;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_int_eq(a.mtime_ns, 1000);
	ck_assert_int_eq(a.ctime_ns, 1000);
	set.size = 10;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_SIZE, &a), 0);
	ck_assert_int_gt(a.mtime_ns, 1000);
	ck_assert_int_gt(a.ctime_ns, 1000);
	set.mtime_ns = set.ctime_ns = 2000;
	ck_assert_int_eq(
		ops->setattr(m, f, &set, KVFS_SET_SIZE | KVFS_SET_MTIME | KVFS_SET_CTIME, &a), 0);
	ck_assert_int_eq(a.mtime_ns, 2000);
	ck_assert_int_eq(a.ctime_ns, 2000);
	/* a mode change is a status change */
	set.mode = 0600;
	ck_assert_int_eq(ops->setattr(m, f, &set, KVFS_SET_MODE, &a), 0);
	ck_assert_int_gt(a.ctime_ns, 2000);
	ck_assert_int_eq(a.mtime_ns, 2000);
}
END_TEST

START_TEST(test_xattrs)
{
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t f = mkfile(p, "f");
	static char big[64 * 1024 + 1];
	char buf[256], name[300];
	size_t len;

	ck_assert_int_eq(ops->getxattr(m, f, "user.x", buf, sizeof(buf), &len), -ENODATA);
	ck_assert_int_eq(ops->setxattr(m, f, "user.x", "1", 1, XATTR_REPLACE), -ENODATA);
	ck_assert_int_eq(ops->setxattr(m, f, "user.x", "1", 1, XATTR_CREATE), 0);
	ck_assert_int_eq(ops->setxattr(m, f, "user.x", "2", 1, XATTR_CREATE), -EEXIST);
	ck_assert_int_eq(ops->setxattr(m, f, "user.x", "22", 2, XATTR_REPLACE), 0);
	ck_assert_int_eq(ops->setxattr(m, f, "user.y", "yyy", 3, 0), 0);
	ck_assert_int_eq(ops->getxattr(m, f, "user.x", NULL, 0, &len), 0);
	ck_assert_uint_eq(len, 2);
	ck_assert_int_eq(ops->getxattr(m, f, "user.x", buf, 1, &len), -ERANGE);
	ck_assert_int_eq(ops->getxattr(m, f, "user.x", buf, 2, &len), 0);
	ck_assert(memcmp(buf, "22", 2) == 0);
	ck_assert_int_eq(ops->listxattr(m, f, NULL, 0, &len), 0);
	ck_assert_uint_eq(len, strlen("user.x") + strlen("user.y") + 2);
	ck_assert_int_eq(ops->listxattr(m, f, buf, 3, &len), -ERANGE);
	ck_assert_int_eq(ops->listxattr(m, f, buf, sizeof(buf), &len), 0);
	ck_assert(memmem(buf, len, "user.x\0", 7) && memmem(buf, len, "user.y\0", 7));
	ck_assert_int_eq(ops->removexattr(m, f, "user.x"), 0);
	ck_assert_int_eq(ops->removexattr(m, f, "user.x"), -ENODATA);
	ck_assert_int_eq(ops->setxattr(m, f, "trusted.x", "1", 1, 0), -ENOTSUP);
	ck_assert_int_eq(ops->setxattr(m, f, "user.big", big, sizeof(big) - 1, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, f, "user.big", big, sizeof(big), 0), -E2BIG);
	memset(name, 'n', sizeof(name));
	memcpy(name, "user.", 5);
	name[255] = '\0';
	ck_assert_int_eq(ops->setxattr(m, f, name, "v", 1, 0), 0);
	name[255] = 'n';
	name[256] = '\0';
	ck_assert_int_eq(ops->setxattr(m, f, name, "v", 1, 0), -ERANGE);
	ck_assert_int_eq(ops->setxattr(m, 98765, "user.x", "1", 1, 0), -ENOENT);
	ck_assert_int_eq(ops->setxattr(m, p, "user.onadir", "1", 1, 0), 0);
	/* xattrs go with their file */
	ck_assert_int_eq(ops->unlink(m, p, "f"), 0);
	ck_assert_int_eq(ops->getxattr(m, f, "user.y", buf, sizeof(buf), &len), -ENOENT);
}
END_TEST

/* Per-file bounds (meta.h): count, names with their NULs, values; ENOSPC past them, E2BIG for
 * one value above 64 KiB; replacing at the limit works. */
START_TEST(test_xattr_bounds)
{
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t f = mkfile(p, "count"), g = mkfile(p, "names"), h = mkfile(p, "values");
	static char big[64 * 1024 + 1], list[KVFS_XATTR_NAMES_MAX];
	char name[KVFS_NAME_MAX + 1];
	size_t len;

	for (int i = 0; i < KVFS_XATTR_COUNT_MAX; i++) {
		snprintf(name, sizeof(name), "user.a%04d", i);
		ck_assert_int_eq(ops->setxattr(m, f, name, "v", 1, 0), 0);
	}
	ck_assert_int_eq(ops->setxattr(m, f, "user.one-more", "v", 1, 0), -ENOSPC);
	ck_assert_int_eq(ops->setxattr(m, f, "user.a0007", "w", 1, XATTR_REPLACE), 0);
	ck_assert_int_eq(ops->setxattr(m, f, "user.a0008", "longer", 6, 0), 0);
	ck_assert_int_eq(ops->removexattr(m, f, "user.a0000"), 0);
	ck_assert_int_eq(ops->setxattr(m, f, "user.one-more", "v", 1, 0), 0);

	/* 256 names of 255 bytes: 64 KiB with their NULs, exactly what listxattr may return */
	memset(name, 'n', KVFS_NAME_MAX);
	memcpy(name, "user.", 5);
	name[KVFS_NAME_MAX] = '\0';
	for (int i = 0; i < 257; i++) {
		char num[8];

		snprintf(num, sizeof(num), "%04d", i);
		memcpy(name + 5, num, 4);
		ck_assert_int_eq(ops->setxattr(m, g, name, NULL, 0, 0), i < 256 ? 0 : -ENOSPC);
	}
	ck_assert_int_eq(ops->listxattr(m, g, NULL, 0, &len), 0);
	ck_assert_uint_eq(len, KVFS_XATTR_NAMES_MAX);
	ck_assert_int_eq(ops->listxattr(m, g, list, sizeof(list), &len), 0);

	/* values: two full-size ones fill the file; same-size replacements still work */
	memset(big, 'b', sizeof(big));
	ck_assert_int_eq(ops->setxattr(m, h, "user.v1", big, 64 * 1024, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v2", big, 64 * 1024, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v3", "x", 1, 0), -ENOSPC);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v3", NULL, 0, 0), 0); /* no value bytes */
	ck_assert_int_eq(ops->setxattr(m, h, "user.v1", big + 1, 64 * 1024, XATTR_REPLACE), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v2", big, 64 * 1024 - 1, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v2", big, 64 * 1024, 0), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v2", big, 64 * 1024 + 1, 0), -E2BIG);
	ck_assert_int_eq(ops->getxattr(m, h, "user.v2", NULL, 0, &len), 0);
	ck_assert_uint_eq(len, 64 * 1024);
	ck_assert_int_eq(ops->removexattr(m, h, "user.v2"), 0);
	ck_assert_int_eq(ops->setxattr(m, h, "user.v4", "x", 1, 0), 0);
}
END_TEST

struct worker {
	uint64_t dir;
	uint64_t shared;
	int id;
};

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	char name[64], name2[64];
	struct kvfs_attr a;
	struct kvfs_dirent ents[16];
	size_t n;

	for (int i = 0; i < 400; i++) {
		uint64_t ino, lease;

		snprintf(name, sizeof(name), "t%d.tmp", i);
		snprintf(name2, sizeof(name2), "t%d_%d", w->id, i % 50);
		ck_assert_int_eq(ops->create(m, w->dir, name, 0644, 0, 0, true, &a), 0);
		ino = a.ino;
		write_pages(ino, 0, 1 + i % 3, PS);
		/* publish into the shared dir, replacing what is there */
		ck_assert_int_eq(ops->rename(m, w->dir, name, w->shared, name2, 0), 0);
		if (ops->lookup(m, w->shared, name2, &a) == 0 &&
		    ops->open(m, a.ino, 1, &lease, NULL) == 0)
			ck_assert_int_eq(ops->close(m, a.ino, lease), 0);
		ops->readdir(m, w->shared, 0, ents, 16, &n);
	}
	return NULL;
}

START_TEST(test_threads)
{
	uint64_t p = mkpool("kv", PS, 0, KVFS_EVICT_LRU, 0);
	uint64_t shared = mkdir_(p, "shared");
	struct worker w[4];
	pthread_t t[4];
	struct kvfs_statfs st;
	char name[16];
	double t0 = now_s();

	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		w[i] = (struct worker){.dir = mkdir_(p, name), .shared = shared, .id = i};
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker_thread, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	fprintf(stderr,
		"meta: 4 threads x 400 create+alloc+commit+rename+open/close: %.0f files/s\n",
		1600 / (now_s() - t0));
	ck_assert_int_eq(count_entries(shared), 4 * 50);
	ck_assert_int_eq(ops->statfs(m, p, &st), 0);
	ck_assert_uint_eq(st.files, 200);
	/* every page the pool holds is allocated, and no other */
	ck_assert_uint_eq(st.used, kvfs_palloc_capacity(pa) - kvfs_palloc_free_bytes(pa));
	meta_restart(1 * GiB);
	ck_assert_int_eq(count_entries(shared), 0); /* all had pages: dropped */
	ck_assert_int_eq(count_entries(p), 5);
}
END_TEST

static void setup_small(void)
{
	setup_arena(16 * PS);
}

static void setup_big(void)
{
	setup_arena(32 * GiB);
}

Suite *unit_suite(void)
{
	Suite *s = suite_create("meta");
	TCase *tc = tcase_create("core");
	TCase *small = tcase_create("small-arena");
	TCase *big = tcase_create("big");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_pools);
	tcase_add_test(tc, test_namespace_errors);
	tcase_add_test(tc, test_rename);
	tcase_add_test(tc, test_readdir_cookies);
	tcase_add_test(tc, test_readdir_concurrent);
	tcase_add_test(tc, test_persistence);
	tcase_add_test(tc, test_persistence_orphan_and_listing);
	tcase_add_test(tc, test_lru_eviction);
	tcase_add_test(tc, test_none_enospc);
	tcase_add_test(tc, test_efbig_abort_commit);
	tcase_add_test(tc, test_truncate_under_lease);
	tcase_add_test(tc, test_truncate_times);
	tcase_add_test(tc, test_xattrs);
	tcase_add_test(tc, test_xattr_bounds);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(small, setup_small, teardown);
	tcase_add_test(small, test_arena_eviction_global);
	suite_add_tcase(s, small);

	tcase_add_checked_fixture(big, setup_big, teardown);
	tcase_set_timeout(big, 280);
	tcase_add_test(big, test_big_dir);
	suite_add_tcase(s, big);
	return s;
}
