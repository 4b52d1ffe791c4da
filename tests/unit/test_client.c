/* SPDX-License-Identifier: MIT */
/*
 * test_client.c - Check runner for metadata/http/client.c: the `http` ops table against a real
 * kvfs-meta (the binary named by $KVFS_META_BIN, started on a free loopback port with its own
 * data directory), and kvfs-meta's native routes and membership through it.
 *
 * Cases: every op of struct kvfs_meta_ops round trip; names that are any bytes (not UTF-8, 255
 * long) through every op that carries one and back from readdir and listxattr; errors come back
 * as their errno; a node that stops heartbeating is declared dead (its lru files dropped, its
 * none files marked lost) and gets -ESTALE; the heartbeat thread re-registers after that and
 * reports it; the service killed with -9 makes calls fail with -EIO within their deadline;
 * restarted on the same port, calls work again, committed state is there and a node resumes
 * with its incarnation.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "meta_http.h"

#define MiB (1024ull * 1024)

struct svc {
	pid_t pid;
	unsigned port;
	char dir[64];
	char log[96];
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Start kvfs-meta on @port (0: any; the bound port is read from its log). */
static void svc_start(struct svc *s, unsigned port, const char *timeout_ms)
{
	const char *bin = getenv("KVFS_META_BIN");
	char listen[64], hb[16];
	int64_t t0 = now_ms();

	ck_assert_msg(bin && *bin, "KVFS_META_BIN is not set");
	if (!s->dir[0]) {
		snprintf(s->dir, sizeof(s->dir), "/tmp/kvfs-client.XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(s->dir));
		snprintf(s->log, sizeof(s->log), "%s.log", s->dir);
	}
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	snprintf(hb, sizeof(hb), "%d", 100);
	unlink(s->log);
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		char data[96];

		snprintf(data, sizeof(data), "%s/data", s->dir);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test must not leave it running */
		dup2(fd, 2);
		execl(bin, bin, "--listen", listen, "--data", data, "--threads", "2",
		      "--heartbeat-ms", hb, "--node-timeout-ms", timeout_ms, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		char buf[512] = {0};
		FILE *f = fopen(s->log, "r");
		char *p;

		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);

			buf[n] = 0;
			fclose(f);
		}
		p = strstr(buf, "(port ");
		if (p) {
			s->port = (unsigned)atoi(p + 6);
			break;
		}
		ck_assert_msg(now_ms() - t0 < 10000, "kvfs-meta did not start: %s", buf);
		usleep(10000);
	}
}

static void svc_kill(struct svc *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

/* A clean stop must exit 0 (under ASan: no leak). */
static void svc_stop(struct svc *s)
{
	char cmd[256];
	int status = 0;

	ck_assert_int_eq(kill(s->pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(s->pid, &status, 0), s->pid);
	s->pid = 0;
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "kvfs-meta did not stop cleanly (status %#x), see %s", status, s->log);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", s->dir, s->log);
	ck_assert_int_eq(system(cmd), 0);
}

static struct kvfs_meta *client(const struct svc *s, uint32_t timeout_ms, bool heartbeat,
				void (*rereg)(void *, const struct kvfs_node_info *), void *ctx)
{
	struct kvfs_meta_http_config cfg = {0};
	struct kvfs_meta *m = NULL;
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s->port);
	cfg.url = url;
	cfg.timeout_ms = timeout_ms;
	cfg.heartbeat = heartbeat;
	cfg.reregistered = rereg;
	cfg.ctx = ctx;
	ck_assert_int_eq(kvfs_meta_http_create(&cfg, &m), 0);
	return m;
}

static uint32_t reg(struct kvfs_meta *m, uint32_t id, const char *addr)
{
	struct kvfs_node_info info = {.id = id, .arena_size = 64 * MiB};

	snprintf(info.addr, sizeof(info.addr), "%s", addr);
	ck_assert_int_eq(m->ops->node_register(m, &info), 0);
	ck_assert_uint_ne(info.id, 0);
	ck_assert_uint_ne(info.incarnation, 0);
	return info.id;
}

static uint64_t pool(struct kvfs_meta *m, const char *name, uint8_t evict)
{
	struct kvfs_pool_attr a = {.evict = evict};

	snprintf(a.name, sizeof(a.name), "%s", name);
	ck_assert_int_eq(m->ops->pool_create(m, &a), 0);
	ck_assert_uint_ne(a.root_ino, 0);
	return a.root_ino;
}

/* A file of @np pages on @node, committed. */
static uint64_t file(struct kvfs_meta *m, uint64_t dir, const char *name, uint32_t node,
		     uint32_t np)
{
	struct kvfs_page_entry pages[8];
	struct kvfs_page_ref refs[8];
	struct kvfs_attr a;

	ck_assert_int_eq(m->ops->create(m, dir, name, S_IFREG | 0644, 0, 0, true, &a), 0);
	ck_assert_int_eq(m->ops->alloc(m, a.ino, 0, np, node, refs), 0);
	for (uint32_t i = 0; i < np; i++) {
		ck_assert_uint_eq(refs[i].node, node);
		pages[i] = (struct kvfs_page_entry){.index = i, .ref = refs[i]};
	}
	ck_assert_int_eq(m->ops->commit(m, a.ino, np * MiB, 0, pages, np, &a), 0);
	ck_assert_uint_eq(a.size, np * MiB);
	return a.ino;
}

START_TEST(every_op)
{
	struct svc s = {0};
	struct kvfs_meta *m;
	struct kvfs_pool_attr *pools, pa;
	struct kvfs_node_info *nodes, me;
	struct kvfs_layout *l;
	struct kvfs_dirent ents[8];
	struct kvfs_statfs sf;
	struct kvfs_attr a, d, set = {0};
	struct kvfs_page_ref refs[2];
	char buf[64];
	uint64_t root, ino, lease;
	uint32_t n1, n2, alive = 0;
	size_t n, len;

	svc_start(&s, 0, "60000");
	m = client(&s, 3000, false, NULL, NULL);
	ck_assert_str_eq(m->ops->name, "http");
	ck_assert_int_eq(kvfs_meta_node_self(m, &me), -ENOENT);
	n1 = reg(m, 0, "127.0.0.1:9401");
	n2 = reg(m, 0, "127.0.0.1:9402");
	ck_assert_uint_ne(n1, n2);
	ck_assert_int_eq(kvfs_meta_node_self(m, &me), 0);
	ck_assert_uint_eq(me.id, n2);
	ck_assert_int_eq(kvfs_meta_heartbeat(m, &alive), 0);
	ck_assert_uint_eq(alive, 2);
	ck_assert_int_eq(kvfs_meta_node_list(m, true, &nodes, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(nodes[0].addr, "127.0.0.1:9401");
	free(nodes);

	/* pools */
	root = pool(m, "kv", KVFS_EVICT_LRU);
	ck_assert_int_eq(m->ops->pool_list(m, &pools, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(pools[0].name, "kv");
	ck_assert_int_eq(m->ops->pool_get(m, pools[0].id, &pa), 0);
	ck_assert_uint_eq(pa.root_ino, root);
	free(pools);
	strcpy(pa.name, "kv");
	ck_assert_int_eq(m->ops->pool_create(m, &pa), -EEXIST);
	/* refused names and sizes come back as EINVAL through the native route */
	strcpy(pa.name, "a\nb");
	ck_assert_int_eq(m->ops->pool_create(m, &pa), -EINVAL);
	strcpy(pa.name, "big");
	pa.capacity = 16777215ull << 40; /* "16777215T" */
	ck_assert_int_eq(m->ops->pool_create(m, &pa), -EINVAL);
	pa.capacity = KVFS_POOL_SIZE_MAX + 1;
	ck_assert_int_eq(m->ops->pool_create(m, &pa), -EINVAL);
	ck_assert_int_eq(m->ops->lookup(m, KVFS_ROOT_INO, "big", &a), -ENOENT);
	ck_assert_int_eq(m->ops->pool_get(m, 999, &pa), -ENOENT);

	/* namespace */
	ck_assert_int_eq(m->ops->mkdir(m, root, "d", S_IFDIR | 0755, 1, 2, &d), 0);
	ck_assert(S_ISDIR(d.mode));
	ino = file(m, d.ino, "f.bin", n1, 2);
	ck_assert_int_eq(m->ops->create(m, d.ino, "f.bin", S_IFREG | 0644, 0, 0, true, &a),
			 -EEXIST);
	ck_assert_int_eq(m->ops->lookup(m, d.ino, "f.bin", &a), 0);
	ck_assert_uint_eq(a.ino, ino);
	ck_assert_int_eq(m->ops->lookup(m, d.ino, "nope", &a), -ENOENT);
	ck_assert_int_eq(m->ops->getattr(m, ino, &a), 0);
	ck_assert_uint_eq(a.size, 2 * MiB);
	ck_assert_int_eq(m->ops->layout(m, ino, &l), 0);
	ck_assert_uint_eq(l->npages, 2);
	ck_assert_uint_eq(l->pages[1].index, 1);
	ck_assert_uint_eq(l->pages[1].ref.node, n1);
	kvfs_layout_free(l);
	ck_assert_int_eq(m->ops->readdir(m, d.ino, 0, ents, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ents[0].name, "f.bin");
	ck_assert_int_eq(m->ops->readdir(m, d.ino, ents[0].cookie, ents, 8, &n), 0);
	ck_assert_uint_eq(n, 0);
	set.mode = 0600;
	ck_assert_int_eq(m->ops->setattr(m, ino, &set, KVFS_SET_MODE, &a), 0);
	ck_assert_uint_eq(a.mode & 07777, 0600);
	ck_assert_int_eq(m->ops->rename(m, d.ino, "f.bin", root, "g.bin", 0), 0);
	ck_assert_int_eq(m->ops->lookup(m, root, "g.bin", &a), 0);
	ck_assert_int_eq(m->ops->rename(m, d.ino, "f.bin", root, "g.bin", 0), -ENOENT);

	/* alloc + abort, open + close */
	ck_assert_int_eq(m->ops->alloc(m, ino, 2, 2, n2, refs), 0);
	ck_assert_uint_eq(refs[0].node, n2);
	ck_assert_int_eq(m->ops->abort(m, ino, refs, 2), 0);
	ck_assert_int_eq(m->ops->open(m, ino, n1, &lease, &l), 0);
	ck_assert_uint_eq(l->npages, 2);
	kvfs_layout_free(l);
	ck_assert_int_eq(m->ops->close(m, ino, lease), 0);

	/* xattrs */
	ck_assert_int_eq(m->ops->setxattr(m, ino, "user.model", "llama\0x", 7, 0), 0);
	ck_assert_int_eq(m->ops->getxattr(m, ino, "user.model", NULL, 0, &len), 0);
	ck_assert_uint_eq(len, 7);
	ck_assert_int_eq(m->ops->getxattr(m, ino, "user.model", buf, 3, &len), -ERANGE);
	ck_assert_int_eq(m->ops->getxattr(m, ino, "user.model", buf, sizeof(buf), &len), 0);
	ck_assert_mem_eq(buf, "llama\0x", 7);
	ck_assert_int_eq(m->ops->listxattr(m, ino, buf, sizeof(buf), &len), 0);
	ck_assert_uint_eq(len, sizeof("user.model"));
	ck_assert_str_eq(buf, "user.model");
	ck_assert_int_eq(m->ops->removexattr(m, ino, "user.model"), 0);
	{
		/* the per-file bounds come back as their errno: E2BIG (413), ENOSPC (507) */
		static char big[64 * 1024 + 1];

		ck_assert_int_eq(m->ops->setxattr(m, ino, "user.big", big, sizeof(big), 0), -E2BIG);
		ck_assert_int_eq(m->ops->setxattr(m, ino, "user.v1", big, 64 * 1024, 0), 0);
		ck_assert_int_eq(m->ops->setxattr(m, ino, "user.v2", big, 64 * 1024, 0), 0);
		ck_assert_int_eq(m->ops->setxattr(m, ino, "user.v3", "x", 1, 0), -ENOSPC);
		ck_assert_int_eq(m->ops->removexattr(m, ino, "user.v1"), 0);
		ck_assert_int_eq(m->ops->removexattr(m, ino, "user.v2"), 0);
	}
	ck_assert_int_eq(m->ops->getxattr(m, ino, "user.model", buf, sizeof(buf), &len), -ENODATA);

	/* statfs, unlink, rmdir, drop, leave */
	ck_assert_int_eq(m->ops->statfs(m, KVFS_ROOT_INO, &sf), 0);
	ck_assert_uint_eq(sf.capacity, 128 * MiB);
	ck_assert_uint_eq(sf.used, 2 * MiB);
	ck_assert_int_eq(m->ops->statfs(m, root, &sf), 0);
	ck_assert_uint_eq(sf.page_size, MiB);
	ck_assert_int_eq(m->ops->rmdir(m, root, "d"), 0);
	ck_assert_int_eq(m->ops->pool_drop(m, "kv", false), -ENOTEMPTY);
	ck_assert_int_eq(m->ops->unlink(m, root, "g.bin"), 0);
	ck_assert_int_eq(m->ops->pool_drop(m, "kv", false), 0);
	ck_assert_int_eq(m->ops->node_leave(m, n2), 0);
	ck_assert_int_eq(kvfs_meta_heartbeat(m, &alive), -ENOENT);
	ck_assert_int_eq(kvfs_meta_node_list(m, true, &nodes, &n), 0);
	ck_assert_uint_eq(n, 1);
	free(nodes);

	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

/* Names are bytes: every byte but NUL and '/', UTF-8 or not, up to 255, through every op that
 * carries one, and back byte-exact from readdir and listxattr. */
START_TEST(byte_names)
{
	static const char *const odd[] = {"\xfe\xff",
					  "\x01\x7f\xfe\xff",
					  "a\xc3",
					  "\xc0\xaf",
					  "\xed\xa0\x80",
					  "\xe5\x90\x8d.bin",
					  "new\nline",
					  "q\"'\\*?[]",
					  "\x80"
					  "x",
					  "-dash\xf8\x88"};
	char names[8][KVFS_NAME_MAX + 1], got[8][KVFS_NAME_MAX + 1], mv[KVFS_NAME_MAX + 1];
	struct kvfs_dirent ents[16];
	struct kvfs_attr a, d;
	struct svc s = {0};
	struct kvfs_meta *m;
	char buf[1024], val[8];
	uint64_t root;
	size_t n, len, nn = 0;

	svc_start(&s, 0, "60000");
	m = client(&s, 3000, false, NULL, NULL);
	reg(m, 0, "127.0.0.1:9401");
	root = pool(m, "kv", KVFS_EVICT_LRU);

	/* each odd name: create, lookup, rename to NAME.r, unlink; a directory of it too */
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		snprintf(mv, sizeof(mv), "%s.r", odd[i]);
		ck_assert_msg(m->ops->create(m, root, odd[i], S_IFREG | 0644, 0, 0, true, &a) == 0,
			      "create of odd name %zu", i);
		ck_assert_int_eq(m->ops->lookup(m, root, odd[i], &d), 0);
		ck_assert_uint_eq(d.ino, a.ino);
		ck_assert_int_eq(m->ops->rename(m, root, odd[i], root, mv, 0), 0);
		ck_assert_int_eq(m->ops->lookup(m, root, odd[i], &d), -ENOENT);
		ck_assert_int_eq(m->ops->lookup(m, root, mv, &d), 0);
		ck_assert_int_eq(m->ops->unlink(m, root, mv), 0);
		ck_assert_int_eq(m->ops->mkdir(m, root, odd[i], S_IFDIR | 0755, 0, 0, &d), 0);
		ck_assert_int_eq(m->ops->rmdir(m, root, odd[i]), 0);
	}
	ck_assert_int_eq(m->ops->lookup(m, root, "\xfe\xfd-missing", &a), -ENOENT);
	ck_assert_int_eq(m->ops->unlink(m, root, "\xfe\xfd-missing"), -ENOENT);

	/* 255-byte names, bytes 0x01..0xff without '/', come back from readdir as they went */
	for (int k = 0; k < 8; k++) {
		for (int i = 0; i < KVFS_NAME_MAX; i++) {
			int b = 1 + (i + 37 * k) % 254;

			names[k][i] = (char)(b + (b >= '/'));
		}
		names[k][KVFS_NAME_MAX] = 0;
		if (k == 7)
			snprintf(names[k], sizeof(names[k]), "plain-%d", k); /* and a UTF-8 one */
		ck_assert_int_eq(m->ops->create(m, root, names[k], S_IFREG | 0644, 0, 0, true, &a),
				 0);
	}
	for (uint64_t cookie = 0;; cookie = ents[n - 1].cookie) {
		ck_assert_int_eq(m->ops->readdir(m, root, cookie, ents, 3, &n), 0);
		if (!n)
			break;
		for (size_t i = 0; i < n; i++) {
			ck_assert_uint_lt(nn, 8);
			memcpy(got[nn++], ents[i].name, sizeof(ents[i].name));
		}
	}
	ck_assert_uint_eq(nn, 8);
	for (int k = 0; k < 8; k++) {
		bool found = false;

		for (size_t i = 0; i < nn; i++)
			found |= !strcmp(got[i], names[k]);
		ck_assert_msg(found, "readdir lost name %d", k);
	}

	/* xattr names that are not UTF-8: set, get, list, remove */
	ck_assert_int_eq(m->ops->lookup(m, root, names[0], &a), 0);
	ck_assert_int_eq(m->ops->setxattr(m, a.ino, "user.\xfe\xff", "raw", 3, 0), 0);
	ck_assert_int_eq(m->ops->setxattr(m, a.ino, "user.ok", "ok", 2, 0), 0);
	memcpy(names[1], "user.", 5); /* a 255-byte xattr name that is not UTF-8 */
	ck_assert_int_eq(m->ops->setxattr(m, a.ino, names[1], "long", 4, 0), 0);
	ck_assert_int_eq(m->ops->getxattr(m, a.ino, "user.\xfe\xff", val, sizeof(val), &len), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(val, "raw", 3);
	ck_assert_int_eq(m->ops->getxattr(m, a.ino, names[1], val, sizeof(val), &len), 0);
	ck_assert_mem_eq(val, "long", 4);
	ck_assert_int_eq(m->ops->listxattr(m, a.ino, NULL, 0, &len), 0);
	ck_assert_uint_eq(len, sizeof("user.\xfe\xff") + sizeof("user.ok") + KVFS_NAME_MAX + 1);
	ck_assert_int_eq(m->ops->listxattr(m, a.ino, buf, len - 1, &n), -ERANGE);
	ck_assert_int_eq(m->ops->listxattr(m, a.ino, buf, sizeof(buf), &n), 0);
	ck_assert_uint_eq(n, len);
	nn = 0;
	for (size_t off = 0; off < n; off += strlen(buf + off) + 1)
		nn += !strcmp(buf + off, "user.\xfe\xff") * 1 + !strcmp(buf + off, "user.ok") * 2 +
		      !strcmp(buf + off, names[1]) * 4;
	ck_assert_uint_eq(nn, 7);
	ck_assert_int_eq(m->ops->removexattr(m, a.ino, "user.\xfe\xff"), 0);
	ck_assert_int_eq(m->ops->getxattr(m, a.ino, "user.\xfe\xff", val, sizeof(val), &len),
			 -ENODATA);
	ck_assert_int_eq(m->ops->removexattr(m, a.ino, "user.\xfe\xff"), -ENODATA);

	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

/* A node that stops heartbeating is declared dead: lru files dropped, none files lost. */
START_TEST(node_death)
{
	struct svc s = {0};
	struct kvfs_meta *m, *dead;
	struct kvfs_attr a;
	uint64_t lru, none;
	uint32_t live, gone, alive = 0;
	int64_t t0;

	svc_start(&s, 0, "500");
	m = client(&s, 3000, true, NULL, NULL);
	dead = client(&s, 3000, false, NULL, NULL);
	live = reg(m, 0, "127.0.0.1:1");
	gone = reg(dead, 0, "127.0.0.1:2");
	lru = pool(m, "cache", KVFS_EVICT_LRU);
	none = pool(m, "keep", KVFS_EVICT_NONE);
	file(m, lru, "a", gone, 1);
	file(m, lru, "b", live, 1);
	file(m, none, "c", gone, 1);

	t0 = now_ms();
	while (m->ops->lookup(m, lru, "a", &a) == 0)
		ck_assert_msg(now_ms() - t0 < 5000, "node %u never declared dead", gone);
	ck_assert_int_ge(now_ms() - t0, 300);
	ck_assert_int_eq(m->ops->lookup(m, lru, "b", &a), 0);
	ck_assert_int_eq(m->ops->lookup(m, none, "c", &a), 0);
	ck_assert(a.flags & KVFS_ATTR_LOST);
	ck_assert_int_eq(kvfs_meta_heartbeat(dead, NULL), -ESTALE);
	ck_assert_int_eq(kvfs_meta_heartbeat(m, &alive), 0);
	ck_assert_uint_eq(alive, 1);

	kvfs_meta_destroy(dead);
	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

static _Atomic unsigned rereg_count;
static _Atomic uint32_t rereg_inc;

static void on_rereg(void *ctx, const struct kvfs_node_info *info)
{
	atomic_store(&rereg_inc, info->incarnation);
	atomic_fetch_add(&rereg_count, 1);
}

/* Declared dead while alive: the heartbeat thread registers again with a new incarnation. */
START_TEST(reregister)
{
	struct svc s = {0};
	struct kvfs_meta *m, *admin;
	struct kvfs_node_info me;
	uint32_t id;
	int64_t t0;

	svc_start(&s, 0, "2000");
	m = client(&s, 2000, true, on_rereg, NULL);
	admin = client(&s, 2000, false, NULL, NULL);
	id = reg(m, 0, "127.0.0.1:7");
	ck_assert_int_eq(kvfs_meta_node_self(m, &me), 0);
	/* another party declares it gone (as the timer would) */
	ck_assert_int_eq(admin->ops->node_leave(admin, id), 0);
	t0 = now_ms();
	while (!atomic_load(&rereg_count))
		ck_assert_msg(now_ms() - t0 < 5000, "no re-register");
	ck_assert_uint_gt(atomic_load(&rereg_inc), me.incarnation);
	ck_assert_int_eq(kvfs_meta_heartbeat(m, NULL), 0);
	kvfs_meta_destroy(admin);
	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

/* kill -9: -EIO within the deadline; restart: calls work, state and the node's pages are back. */
START_TEST(service_restart)
{
	struct svc s = {0};
	struct kvfs_meta *m;
	struct kvfs_node_info me;
	struct kvfs_layout *l;
	struct kvfs_attr a;
	uint64_t root, ino;
	unsigned port;
	int64_t t0, dt;

	svc_start(&s, 0, "3000");
	m = client(&s, 800, false, NULL, NULL);
	reg(m, 0, "127.0.0.1:3");
	ck_assert_int_eq(kvfs_meta_node_self(m, &me), 0);
	root = pool(m, "kv", KVFS_EVICT_LRU);
	ino = file(m, root, "kept", me.id, 2);
	port = s.port;

	svc_kill(&s);
	t0 = now_ms();
	ck_assert_int_eq(m->ops->lookup(m, root, "kept", &a), -EIO); /* idempotent: retried */
	dt = now_ms() - t0;
	ck_assert_int_le(dt, 800 + 200);
	t0 = now_ms();
	ck_assert_int_eq(m->ops->create(m, root, "x", S_IFREG | 0644, 0, 0, true, &a), -EIO);
	ck_assert_int_le(now_ms() - t0, 800 + 200);
	ck_assert_int_eq(kvfs_meta_heartbeat(m, NULL), -EIO);

	svc_start(&s, port, "3000");
	ck_assert_int_eq(m->ops->lookup(m, root, "kept", &a), 0);
	ck_assert_uint_eq(a.ino, ino);
	ck_assert_int_eq(m->ops->layout(m, ino, &l), 0);
	ck_assert_uint_eq(l->npages, 2);
	ck_assert_uint_eq(l->pages[0].ref.incarnation, me.incarnation);
	kvfs_layout_free(l);
	/* the node heartbeats with the incarnation it had: resumed, its pages still valid */
	ck_assert_int_eq(kvfs_meta_heartbeat(m, NULL), 0);
	file(m, root, "after", me.id, 1);
	ck_assert_int_eq(m->ops->layout(m, ino, &l), 0);
	ck_assert_uint_eq(l->npages, 2);
	kvfs_layout_free(l);

	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

/* A node that does not come back after a restart of the service is declared dead. */
START_TEST(restart_without_node)
{
	struct svc s = {0};
	struct kvfs_meta *m;
	struct kvfs_node_info me;
	struct kvfs_attr a;
	uint64_t root;
	unsigned port;
	int64_t t0;

	svc_start(&s, 0, "400");
	m = client(&s, 1000, false, NULL, NULL);
	reg(m, 0, "127.0.0.1:4");
	ck_assert_int_eq(kvfs_meta_node_self(m, &me), 0);
	root = pool(m, "kv", KVFS_EVICT_LRU);
	file(m, root, "f", me.id, 1);
	port = s.port;
	svc_kill(&s);
	svc_start(&s, port, "400");
	t0 = now_ms();
	while (m->ops->lookup(m, root, "f", &a) == 0)
		ck_assert_msg(now_ms() - t0 < 5000, "node never declared dead after restart");
	ck_assert_int_eq(kvfs_meta_heartbeat(m, NULL), -ESTALE);
	kvfs_meta_destroy(m);
	svc_stop(&s);
}
END_TEST

START_TEST(bad_config)
{
	struct kvfs_meta_http_config cfg = {0};
	struct kvfs_meta *m = NULL;

	ck_assert_int_eq(kvfs_meta_http_create(&cfg, &m), -EINVAL);
	cfg.url = "https://x";
	ck_assert_int_eq(kvfs_meta_http_create(&cfg, &m), -EINVAL);
	cfg.url = "http://127.0.0.1:1";
	cfg.timeout_ms = 300;
	ck_assert_int_eq(kvfs_meta_http_create(&cfg, &m), 0);
	ck_assert_int_eq(m->ops->getattr(m, 1, &(struct kvfs_attr){0}), -EIO);
	kvfs_meta_destroy(m);
	kvfs_meta_destroy(NULL);
}
END_TEST

Suite *unit_suite(void)
{
	Suite *s;
	TCase *tc;

	if (!getenv("KVFS_META_BIN")) {
		fprintf(stderr, "SKIP: KVFS_META_BIN is not set\n");
		return NULL;
	}
	signal(SIGPIPE, SIG_IGN);
	s = suite_create("client");
	tc = tcase_create("http");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, bad_config);
	tcase_add_test(tc, every_op);
	tcase_add_test(tc, byte_names);
	tcase_add_test(tc, node_death);
	tcase_add_test(tc, reregister);
	tcase_add_test(tc, service_restart);
	tcase_add_test(tc, restart_without_node);
	suite_add_tcase(s, tc);
	return s;
}
