/* SPDX-License-Identifier: MIT */
/*
 * kvfsctl.c - the administration CLI: pools, stats and file layout of a kvfs mount.
 *
 * kvfsctl never talks to the metadata service itself. It speaks the control file protocol of
 * docs/USAGE.md to the daemon behind a mount: open MNT/.kvfs/ctl read-write, one write() of a
 * JSON request, then pread() from offset 0 until EOF for the JSON reply. So it works the same
 * in embedded and cluster mode, needs no address or token, and is authorised by the mount's
 * own permissions.
 *
 * Output: human-readable tables by default, the daemon's raw reply with --json.
 * Exit codes: 0 ok, 1 an error (from the daemon, or finding the mount or file), 2 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "meta.h"
#include "pool.h"
#include "util.h"

#define EXIT_OK	   0
#define EXIT_FAIL  1
#define EXIT_USAGE 2

#define CTL_PATH    "/.kvfs/ctl"
#define REQUEST_MAX (64 * 1024)
#define FUSE_FSTYPE "fuse.kvfs"
#define MOUNTS_FILE "/proc/self/mounts"

static const char *prog = "kvfsctl";

static const char usage_text[] =
	"Usage: kvfsctl [-m MOUNTPOINT] COMMAND [ARGS] [OPTIONS]\n"
	"\n"
	"Manage and inspect a kvfs mount (a distributed KV-cache page pool).\n"
	"\n"
	"Commands:\n"
	"  pool create NAME [--page-size SIZE] [--capacity SIZE] [--evict lru|none]\n"
	"                   [--max-file-size SIZE]\n"
	"                      create pool NAME (a directory at the mount's root).\n"
	"                      --page-size: allocation unit, a power of two from 64K to 16M\n"
	"                                   (default 1M); fixed for the pool's life.\n"
	"                      --capacity:  most bytes the pool may hold (default 0 = the arena).\n"
	"                      --evict:     lru (default) removes least recently used closed\n"
	"                                   files when full; none fails writes with ENOSPC.\n"
	"                      --max-file-size: largest file (default 16T).\n"
	"  pool list           list pools with their settings and usage.\n"
	"  pool drop NAME [--force]\n"
	"                      drop pool NAME; it must be empty unless --force, which deletes\n"
	"                      every file in it.\n"
	"  layout FILE         show where FILE's pages live: page index, node, incarnation,\n"
	"                      arena offset, and the runs they merge into.\n"
	"  stats               node, pool, filesystem and transfer counters.\n"
	"  help                this text.\n"
	"\n"
	"Options:\n"
	"  -m, --mount MNT     the kvfs mount point. Default: $KVFS_MNT, else the only\n"
	"                      fuse.kvfs mount in /proc/self/mounts.\n"
	"      --json          print the daemon's raw JSON reply instead of a table.\n"
	"  -h, --help          this text.\n"
	"  -V, --version       print the version.\n"
	"\n"
	"SIZE is a number of bytes with an optional suffix K, M, G or T (powers of 1024):\n"
	"1048576, 1M and 1MiB are the same.\n"
	"\n"
	"Examples:\n"
	"  kvfsctl -m /mnt/kvfs pool create kv --page-size 2M --capacity 64G --evict lru\n"
	"  kvfsctl pool list\n"
	"  KVFS_MNT=/mnt/kvfs kvfsctl stats --json | jq .stats.xfer\n"
	"  kvfsctl layout /mnt/kvfs/kv/0f3a..._llama_0_1048576.bin\n"
	"  kvfsctl pool drop kv --force\n"
	"\n"
	"Exit status: 0 success, 1 error (reported by the daemon, or the mount or file could not\n"
	"be used), 2 invalid command line.\n";

/* Options, as bits, so each command can say which it accepts. */
enum {
	OPT_JSON = 1 << 0,
	OPT_PAGE_SIZE = 1 << 1,
	OPT_CAPACITY = 1 << 2,
	OPT_EVICT = 1 << 3,
	OPT_MAX_FILE_SIZE = 1 << 4,
	OPT_FORCE = 1 << 5,
};

struct args {
	const char *mnt;
	unsigned seen; /* OPT_* given on the command line */
	uint64_t page_size;
	uint64_t capacity;
	uint64_t max_file_size;
	const char *evict;
	bool json;
	bool force;
	char **words; /* positional words: the command and its arguments */
	int nwords;
};

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------------------------------------ */
/* Sizes */

/* "1M", "64K", "1.5G": exact with the largest fitting unit, else one decimal. */
static const char *fmt_size(uint64_t v, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int u = -1;
	double d = (double)v;

	if (v < 1024) {
		snprintf(buf, len, "%" PRIu64, v);
		return buf;
	}
	for (int i = 5; i >= 0; i--) {
		uint64_t unit = 1ull << (10 * (i + 1));

		if (v >= unit) {
			u = i;
			d = (double)v / (double)unit;
			if (v % unit == 0) {
				snprintf(buf, len, "%" PRIu64 "%c", v / unit, units[i]);
				return buf;
			}
			break;
		}
	}
	snprintf(buf, len, "%.1f%c", d, units[u]);
	return buf;
}

static const char *fmt_hex(uint64_t v, char *buf, size_t len)
{
	snprintf(buf, len, "0x%" PRIx64, v);
	return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Mount discovery */

/* Undo the octal escapes (\040 for space, ...) of /proc/self/mounts, in place. */
static void unescape_mount(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Find the single fuse.kvfs mount. Returns 0 and a malloc'd path, or prints why and -errno. */
static int find_mount(char **ret)
{
	FILE *f = fopen(MOUNTS_FILE, "re");
	char *line = NULL, *found = NULL;
	size_t cap = 0;
	int n = 0;

	if (!f) {
		int r = -errno;

		errmsg("cannot read %s: %s; give the mount point with -m", MOUNTS_FILE,
		       strerror(-r));
		return r;
	}
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL;
		char *dev = strtok_r(line, " \t\n", &save);
		char *dir = dev ? strtok_r(NULL, " \t\n", &save) : NULL;
		char *type = dir ? strtok_r(NULL, " \t\n", &save) : NULL;

		if (!type || strcmp(type, FUSE_FSTYPE) != 0)
			continue;
		unescape_mount(dir);
		if (n++ == 0) {
			found = strdup(dir);
			if (!found)
				break;
		} else {
			if (n == 2)
				errmsg("several kvfs mounts; choose one with -m or $KVFS_MNT:\n  %s",
				       found);
			fprintf(stderr, "  %s\n", dir);
		}
	}
	free(line);
	fclose(f);
	if (n == 1 && found) {
		*ret = found;
		return 0;
	}
	free(found);
	if (n == 0)
		errmsg("no kvfs mount found in %s; start kvfs or give the mount point with -m "
		       "or $KVFS_MNT",
		       MOUNTS_FILE);
	else if (n == 1)
		errmsg("out of memory");
	return n == 0 ? -ENOENT : n == 1 ? -ENOMEM : -EEXIST;
}

/* ------------------------------------------------------------------------------------------ */
/* The control file */

/*
 * Send @req to MNT/.kvfs/ctl and read the whole reply. Returns 0 and a malloc'd, NUL-
 * terminated *ret_reply (length *ret_len), or prints why and returns a negative errno.
 */
static int ctl_call(const char *mnt, json_t *req, char **ret_reply, size_t *ret_len)
{
	char *path = NULL, *body, *reply = NULL;
	size_t len, cap = 0, got = 0;
	ssize_t w;
	int fd, r;

	body = json_dumps(req, JSON_COMPACT);
	if (!body) {
		errmsg("out of memory");
		return -ENOMEM;
	}
	len = strlen(body);
	if (len > REQUEST_MAX) {
		errmsg("request too large (%zu bytes, the limit is %d)", len, REQUEST_MAX);
		r = -E2BIG;
		goto out_free_body;
	}
	if (asprintf(&path, "%s%s", mnt, CTL_PATH) < 0) {
		path = NULL;
		errmsg("out of memory");
		r = -ENOMEM;
		goto out_free_body;
	}

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			errmsg("%s is not a kvfs mount (no %s)", mnt, path);
		else if (r == -ENOTCONN)
			errmsg("%s: the kvfs daemon is gone (%s); remount it", mnt, strerror(-r));
		else
			errmsg("cannot open %s: %s", path, strerror(-r));
		goto out_free_path;
	}

	do
		w = write(fd, body, len);
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		r = -errno;
		if (r == -EINVAL)
			errmsg("the daemon rejected the request as malformed (%s)", strerror(-r));
		else
			errmsg("cannot write to %s: %s", path, strerror(-r));
		goto out_close_fd;
	}
	if ((size_t)w != len) {
		errmsg("short write to %s (%zd of %zu bytes)", path, w, len);
		r = -EIO;
		goto out_close_fd;
	}

	for (;;) {
		ssize_t n;

		if (cap - got < 4096 + 1) {
			size_t ncap = cap ? cap * 2 : 16384;
			char *p = realloc(reply, ncap);

			if (!p) {
				errmsg("out of memory");
				r = -ENOMEM;
				goto out_free_reply;
			}
			reply = p;
			cap = ncap;
		}
		n = pread(fd, reply + got, cap - got - 1, (off_t)got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			errmsg("cannot read the reply from %s: %s", path, strerror(-r));
			goto out_free_reply;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got == 0) {
		errmsg("empty reply from %s", path);
		r = -EPROTO;
		goto out_free_reply;
	}
	reply[got] = '\0';
	*ret_reply = reply;
	*ret_len = got;
	reply = NULL;
	r = 0;

out_free_reply:
	free(reply);
out_close_fd:
	close(fd);
out_free_path:
	free(path);
out_free_body:
	free(body);
	return r;
}

/*
 * Run one request: call, parse, report a daemon error. With --json the raw reply goes to
 * stdout whatever it says. Returns an exit code; on EXIT_OK *ret_obj holds the parsed reply
 * (caller decrefs), NULL with --json.
 */
static int request(const struct args *a, const char *what, json_t *req, json_t **ret_obj)
{
	char *raw = NULL;
	size_t len = 0;
	json_error_t jerr;
	json_t *obj, *ok;
	int r;

	r = ctl_call(a->mnt, req, &raw, &len);
	json_decref(req);
	if (r < 0)
		return EXIT_FAIL;
	if (a->json) {
		fwrite(raw, 1, len, stdout);
		if (raw[len - 1] != '\n')
			fputc('\n', stdout);
	}
	obj = json_loadb(raw, len, 0, &jerr);
	free(raw);
	if (!obj || !json_is_object(obj)) {
		errmsg("%s: malformed reply from the daemon (%s)", what,
		       obj ? "not an object" : jerr.text);
		json_decref(obj);
		return EXIT_FAIL;
	}
	ok = json_object_get(obj, "ok");
	if (!json_is_true(ok)) {
		json_int_t e = json_integer_value(json_object_get(obj, "errno"));
		const char *text = json_string_value(json_object_get(obj, "error"));
		const char *sys = e > 0 && e < 4096 ? strerror((int)e) : "unknown error";

		if (text && *text && strcmp(text, sys) != 0)
			errmsg("%s: %s (%s)", what, sys, text);
		else
			errmsg("%s: %s", what, sys);
		json_decref(obj);
		return EXIT_FAIL;
	}
	if (a->json) {
		json_decref(obj);
		obj = NULL;
	}
	*ret_obj = obj;
	return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Output helpers: tolerant of missing fields (a newer or older daemon). */

static uint64_t jnum(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (json_is_integer(v))
		return (uint64_t)json_integer_value(v);
	if (json_is_real(v))
		return (uint64_t)json_real_value(v);
	return 0;
}

static const char *jstr(json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : dflt;
}

static void print_pools(json_t *pools)
{
	size_t i, wname = 4;
	json_t *p;
	char b1[32], b2[32], b3[32], b4[32];

	json_array_foreach(pools, i, p)
	{
		size_t l = strlen(jstr(p, "name", "?"));

		if (l > wname)
			wname = l;
	}
	printf("%-*s %5s %9s %9s %5s %9s %9s %9s %10s\n", (int)wname, "NAME", "ID", "PAGE",
	       "CAPACITY", "EVICT", "USED", "MAXFILE", "FILES", "EVICTIONS");
	json_array_foreach(pools, i, p)
	{
		uint64_t capacity = jnum(p, "capacity");

		printf("%-*s %5" PRIu64 " %9s %9s %5s %9s %9s %9" PRIu64 " %10" PRIu64 "\n",
		       (int)wname, jstr(p, "name", "?"), jnum(p, "id"),
		       fmt_size(jnum(p, "page_size"), b1, sizeof(b1)),
		       capacity ? fmt_size(capacity, b2, sizeof(b2)) : "-", jstr(p, "evict", "?"),
		       fmt_size(jnum(p, "used_bytes"), b3, sizeof(b3)),
		       fmt_size(jnum(p, "max_file_size"), b4, sizeof(b4)), jnum(p, "files"),
		       jnum(p, "evictions"));
	}
	if (json_array_size(pools) == 0)
		printf("(no pools)\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Commands */

static int cmd_pool_create(const struct args *a)
{
	const char *name = a->words[2];
	json_t *req, *reply = NULL, *pool;
	char b1[32], b2[32];
	int r;

	req = json_pack("{s:s, s:s, s:I, s:I, s:s, s:I}", "cmd", "pool_create", "name", name,
			"page_size", (json_int_t)a->page_size, "capacity", (json_int_t)a->capacity,
			"evict", a->evict ? a->evict : "lru", "max_file_size",
			(json_int_t)a->max_file_size);
	if (!req) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	r = request(a, "pool create", req, &reply);
	if (r != EXIT_OK || !reply)
		return r;
	pool = json_object_get(reply, "pool");
	if (json_is_object(pool))
		printf("created pool %s (id %" PRIu64 ", page size %s, capacity %s, evict %s)\n",
		       jstr(pool, "name", name), jnum(pool, "id"),
		       fmt_size(jnum(pool, "page_size"), b1, sizeof(b1)),
		       jnum(pool, "capacity") ? fmt_size(jnum(pool, "capacity"), b2, sizeof(b2))
					      : "unlimited",
		       jstr(pool, "evict", "?"));
	else
		printf("created pool %s\n", name);
	json_decref(reply);
	return EXIT_OK;
}

static int cmd_pool_list(const struct args *a)
{
	json_t *reply = NULL, *req = json_pack("{s:s}", "cmd", "pool_list");
	int r;

	if (!req) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	r = request(a, "pool list", req, &reply);
	if (r != EXIT_OK || !reply)
		return r;
	print_pools(json_object_get(reply, "pools"));
	json_decref(reply);
	return EXIT_OK;
}

static int cmd_pool_drop(const struct args *a)
{
	json_t *reply = NULL, *req;
	int r;

	req = json_pack("{s:s, s:s, s:b}", "cmd", "pool_drop", "name", a->words[2], "force",
			a->force);
	if (!req) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	r = request(a, "pool drop", req, &reply);
	if (r != EXIT_OK || !reply)
		return r;
	printf("dropped pool %s\n", a->words[2]);
	json_decref(reply);
	return EXIT_OK;
}

static int cmd_stats(const struct args *a)
{
	json_t *reply = NULL, *req = json_pack("{s:s}", "cmd", "stats");
	json_t *st, *node, *fs, *xfer, *v;
	const char *key;
	char b1[32], b2[32], b3[32];
	int r;

	if (!req) {
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	r = request(a, "stats", req, &reply);
	if (r != EXIT_OK || !reply)
		return r;
	st = json_object_get(reply, "stats");
	node = json_object_get(st, "node");
	printf("node %" PRIu64 " (incarnation %" PRIu64 ")\n", jnum(node, "id"),
	       jnum(node, "incarnation"));
	printf("  arena %s, used %s, free %s, pinned pages %" PRIu64 "\n",
	       fmt_size(jnum(node, "arena_bytes"), b1, sizeof(b1)),
	       fmt_size(jnum(node, "used_bytes"), b2, sizeof(b2)),
	       fmt_size(jnum(node, "free_bytes"), b3, sizeof(b3)), jnum(node, "pinned_pages"));

	printf("\npools\n");
	print_pools(json_object_get(st, "pools"));

	fs = json_object_get(st, "fs");
	if (json_is_object(fs)) {
		int col = 0;

		printf("\nfs\n");
		json_object_foreach(fs, key, v)
		{
			if (!json_is_integer(v))
				continue;
			printf("  %-12s %12" PRIu64 "%s", key, (uint64_t)json_integer_value(v),
			       ++col % 3 == 0 ? "\n" : "");
		}
		if (col % 3)
			printf("\n");
	}

	xfer = json_object_get(st, "xfer");
	if (json_is_object(xfer)) {
		printf("\n%-8s %12s %12s %12s %12s\n", "XFER", "OPS", "TRANSFERS", "BYTES",
		       "ERRORS");
		json_object_foreach(xfer, key, v)
		{
			printf("%-8s %12" PRIu64 " %12" PRIu64 " %12s %12" PRIu64 "\n", key,
			       jnum(v, "ops"), jnum(v, "transfers"),
			       fmt_size(jnum(v, "bytes"), b1, sizeof(b1)), jnum(v, "errors"));
		}
	}
	xfer = json_object_get(st, "xfer_peers");
	if (json_is_object(xfer) && json_object_size(xfer)) {
		printf("\n%-8s %12s %12s %12s %12s\n", "PEER", "OPS", "TRANSFERS", "BYTES",
		       "ERRORS");
		json_object_foreach(xfer, key, v)
		{
			printf("node %-3s %12" PRIu64 " %12" PRIu64 " %12s %12" PRIu64 "\n", key,
			       jnum(v, "ops"), jnum(v, "transfers"),
			       fmt_size(jnum(v, "bytes"), b1, sizeof(b1)), jnum(v, "errors"));
		}
	}
	json_decref(reply);
	return EXIT_OK;
}

/*
 * FILE (any path that resolves inside the mount) -> the path relative to the mount root.
 * Returns 0 and a malloc'd string, or prints why and returns -errno.
 */
static int path_in_mount(const char *mnt, const char *file, char **ret)
{
	char *rm = NULL, *rf = NULL, *rel = NULL;
	size_t lm;
	int r;

	rm = realpath(mnt, NULL);
	if (!rm) {
		r = -errno;
		errmsg("%s: %s", mnt, strerror(-r));
		return r;
	}
	rf = realpath(file, NULL);
	if (!rf) {
		r = -errno;
		errmsg("%s: %s", file, strerror(-r));
		goto out;
	}
	lm = strlen(rm);
	if (strcmp(rm, "/") == 0)
		lm = 0;
	if (strncmp(rf, rm, lm) != 0 || (rf[lm] != '/' && rf[lm] != '\0')) {
		errmsg("%s is not inside the kvfs mount %s", file, rm);
		r = -EXDEV;
		goto out;
	}
	if (rf[lm] == '\0' || rf[lm + 1] == '\0') {
		errmsg("%s is the mount's root, not a file in a pool", file);
		r = -EISDIR;
		goto out;
	}
	rel = strdup(rf + lm + 1);
	if (!rel) {
		errmsg("out of memory");
		r = -ENOMEM;
		goto out;
	}
	*ret = rel;
	r = 0;
out:
	free(rf);
	free(rm);
	return r;
}

static int cmd_layout(const struct args *a)
{
	json_t *reply = NULL, *req, *pages, *p;
	char *rel = NULL;
	char b1[32], b2[32];
	uint64_t psize, nruns = 0;
	size_t i, n;
	int r;

	if (path_in_mount(a->mnt, a->words[1], &rel) < 0)
		return EXIT_FAIL;
	req = json_pack("{s:s, s:s}", "cmd", "layout", "path", rel);
	if (!req) {
		free(rel);
		errmsg("out of memory");
		return EXIT_FAIL;
	}
	r = request(a, "layout", req, &reply);
	if (r != EXIT_OK || !reply) {
		free(rel);
		return r;
	}
	psize = jnum(reply, "page_size");
	pages = json_object_get(reply, "pages");
	n = json_array_size(pages);

	/* Runs: consecutive indices on one (node, incarnation) at consecutive offsets. */
	for (i = 0; i < n; i++) {
		json_t *q = i ? json_array_get(pages, i - 1) : NULL;

		p = json_array_get(pages, i);
		if (!q || jnum(p, "index") != jnum(q, "index") + 1 ||
		    jnum(p, "node") != jnum(q, "node") ||
		    jnum(p, "incarnation") != jnum(q, "incarnation") ||
		    jnum(p, "off") != jnum(q, "off") + psize)
			nruns++;
	}
	printf("%s: ino %" PRIu64 ", size %s (%" PRIu64 " bytes), page size %s, version %" PRIu64
	       ", %zu page%s in %" PRIu64 " run%s\n",
	       rel, jnum(reply, "ino"), fmt_size(jnum(reply, "size"), b1, sizeof(b1)),
	       jnum(reply, "size"), fmt_size(psize, b2, sizeof(b2)), jnum(reply, "version"), n,
	       n == 1 ? "" : "s", nruns, nruns == 1 ? "" : "s");
	if (n) {
		printf("\n%10s %6s %11s %18s\n", "INDEX", "NODE", "INCARNATION", "OFFSET");
		json_array_foreach(pages, i, p)
		{
			printf("%10" PRIu64 " %6" PRIu64 " %11" PRIu64 " %18s\n", jnum(p, "index"),
			       jnum(p, "node"), jnum(p, "incarnation"),
			       fmt_hex(jnum(p, "off"), b1, sizeof(b1)));
		}
		printf("\n%21s %6s %11s %18s %10s\n", "RUN (PAGES)", "NODE", "INCARNATION",
		       "OFFSET", "LENGTH");
		for (i = 0; i < n;) {
			json_t *first = json_array_get(pages, i);
			size_t j = i + 1;
			char range[48];

			for (; j < n; j++) {
				json_t *q = json_array_get(pages, j - 1);

				p = json_array_get(pages, j);
				if (jnum(p, "index") != jnum(q, "index") + 1 ||
				    jnum(p, "node") != jnum(q, "node") ||
				    jnum(p, "incarnation") != jnum(q, "incarnation") ||
				    jnum(p, "off") != jnum(q, "off") + psize)
					break;
			}
			snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, jnum(first, "index"),
				 jnum(first, "index") + (j - i) - 1);
			printf("%21s %6" PRIu64 " %11" PRIu64 " %18s %10s\n", range,
			       jnum(first, "node"), jnum(first, "incarnation"),
			       fmt_hex(jnum(first, "off"), b2, sizeof(b2)),
			       fmt_size((uint64_t)(j - i) * psize, b1, sizeof(b1)));
			i = j;
		}
	}
	free(rel);
	json_decref(reply);
	return EXIT_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Command line */

struct command {
	const char *w0, *w1; /* the command's words ("pool", "create") or ("stats", NULL) */
	int nargs;	     /* positional arguments after the words */
	const char *argname;
	unsigned opts; /* OPT_* accepted */
	int (*run)(const struct args *a);
};

static const struct command commands[] = {
	{"pool", "create", 1, "NAME",
	 OPT_JSON | OPT_PAGE_SIZE | OPT_CAPACITY | OPT_EVICT | OPT_MAX_FILE_SIZE, cmd_pool_create},
	{"pool", "list", 0, NULL, OPT_JSON, cmd_pool_list},
	{"pool", "drop", 1, "NAME", OPT_JSON | OPT_FORCE, cmd_pool_drop},
	{"layout", NULL, 1, "FILE", OPT_JSON, cmd_layout},
	{"stats", NULL, 0, NULL, OPT_JSON, cmd_stats},
};

static const char *opt_name(unsigned bit)
{
	switch (bit) {
	case OPT_JSON:
		return "--json";
	case OPT_PAGE_SIZE:
		return "--page-size";
	case OPT_CAPACITY:
		return "--capacity";
	case OPT_EVICT:
		return "--evict";
	case OPT_MAX_FILE_SIZE:
		return "--max-file-size";
	case OPT_FORCE:
		return "--force";
	}
	return "?";
}

static int size_opt(const char *name, const char *val, uint64_t *ret)
{
	uint64_t v = 0;
	int r = kvfs_parse_size(val, &v);

	/* sizes travel as signed 64-bit JSON integers; the service refuses more than 2^62 */
	if (r == -ERANGE || (!r && v > KVFS_POOL_SIZE_MAX))
		return usage_error("%s %s: too large (at most 4E, 2^62 bytes)", name, val);
	if (r < 0)
		return usage_error("%s %s: not a size (use e.g. 65536, 64K, 1M, 2G)", name, val);
	*ret = v;
	return 0;
}

static int check_pool_name(const char *name)
{
	if (!*name)
		return usage_error("empty pool name");
	if (strlen(name) > KVFS_POOL_NAME_MAX)
		return usage_error("pool name longer than %d bytes", KVFS_POOL_NAME_MAX);
	if (strchr(name, '/'))
		return usage_error("pool name '%s' contains '/'", name);
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || name[0] == '.')
		return usage_error("pool name '%s' may not start with '.'", name);
	if (kvfs_pool_name_check(name))
		return usage_error("pool name contains control characters");
	return 0;
}

/* Parse argv into @a. Returns -1 to go on, else an exit code (help, version, usage error). */
static int parse_args(int argc, char **argv, struct args *a)
{
	enum { LO_JSON = 256, LO_PAGE_SIZE, LO_CAPACITY, LO_EVICT, LO_MAX_FILE_SIZE, LO_FORCE };
	static const struct option longopts[] = {
		{"mount", required_argument, NULL, 'm'},
		{"json", no_argument, NULL, LO_JSON},
		{"page-size", required_argument, NULL, LO_PAGE_SIZE},
		{"capacity", required_argument, NULL, LO_CAPACITY},
		{"evict", required_argument, NULL, LO_EVICT},
		{"max-file-size", required_argument, NULL, LO_MAX_FILE_SIZE},
		{"force", no_argument, NULL, LO_FORCE},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!*optarg)
				return usage_error("-m: empty mount point");
			a->mnt = optarg;
			break;
		case LO_JSON:
			a->json = true;
			a->seen |= OPT_JSON;
			break;
		case LO_PAGE_SIZE:
			if (size_opt("--page-size", optarg, &a->page_size))
				return EXIT_USAGE;
			if (!kvfs_page_size_valid(a->page_size))
				return usage_error(
					"--page-size %s: must be a power of two from 64K "
					"to 16M",
					optarg);
			a->seen |= OPT_PAGE_SIZE;
			break;
		case LO_CAPACITY:
			if (size_opt("--capacity", optarg, &a->capacity))
				return EXIT_USAGE;
			a->seen |= OPT_CAPACITY;
			break;
		case LO_MAX_FILE_SIZE:
			if (size_opt("--max-file-size", optarg, &a->max_file_size))
				return EXIT_USAGE;
			a->seen |= OPT_MAX_FILE_SIZE;
			break;
		case LO_EVICT:
			if (strcmp(optarg, "lru") != 0 && strcmp(optarg, "none") != 0)
				return usage_error("--evict %s: must be lru or none", optarg);
			a->evict = optarg;
			a->seen |= OPT_EVICT;
			break;
		case LO_FORCE:
			a->force = true;
			a->seen |= OPT_FORCE;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EXIT_OK;
		case 'V':
			printf("kvfsctl %s\n", KVFS_VERSION);
			return EXIT_OK;
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	a->words = argv + optind;
	a->nwords = argc - optind;
	return -1;
}

int main(int argc, char **argv)
{
	struct args a = {0};
	const struct command *cmd = NULL;
	char *found = NULL;
	int r, consumed;

	r = parse_args(argc, argv, &a);
	if (r >= 0)
		return r;
	if (a.nwords == 0)
		return usage_error("no command given");
	if (strcmp(a.words[0], "help") == 0) {
		fputs(usage_text, stdout);
		return EXIT_OK;
	}

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strcmp(a.words[0], c->w0) != 0)
			continue;
		if (c->w1 && (a.nwords < 2 || strcmp(a.words[1], c->w1) != 0))
			continue;
		cmd = c;
		break;
	}
	if (!cmd) {
		if (strcmp(a.words[0], "pool") == 0 && a.nwords < 2)
			return usage_error("pool: missing subcommand (create, list, drop)");
		if (strcmp(a.words[0], "pool") == 0)
			return usage_error("pool: unknown subcommand '%s'", a.words[1]);
		return usage_error("unknown command '%s'", a.words[0]);
	}
	consumed = cmd->w1 ? 2 : 1;
	if (a.nwords < consumed + cmd->nargs)
		return usage_error("%s%s%s: missing %s", cmd->w0, cmd->w1 ? " " : "",
				   cmd->w1 ? cmd->w1 : "", cmd->argname);
	if (a.nwords > consumed + cmd->nargs)
		return usage_error("%s%s%s: unexpected argument '%s'", cmd->w0, cmd->w1 ? " " : "",
				   cmd->w1 ? cmd->w1 : "", a.words[consumed + cmd->nargs]);
	for (unsigned bit = 1; bit <= OPT_FORCE; bit <<= 1)
		if ((a.seen & bit) && !(cmd->opts & bit))
			return usage_error("%s%s%s does not take %s", cmd->w0, cmd->w1 ? " " : "",
					   cmd->w1 ? cmd->w1 : "", opt_name(bit));
	if (cmd->w1 && cmd->nargs && strcmp(cmd->w0, "pool") == 0 && check_pool_name(a.words[2]))
		return EXIT_USAGE;

	if (!a.mnt) {
		const char *env = getenv("KVFS_MNT");

		if (env && *env) {
			a.mnt = env;
		} else {
			if (find_mount(&found) < 0)
				return EXIT_FAIL;
			a.mnt = found;
		}
	}
	r = cmd->run(&a);
	free(found);
	return r;
}
