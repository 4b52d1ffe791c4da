/* SPDX-License-Identifier: MIT */
/*
 * ctl.c - the daemon's control surface inside the mount: /.kvfs/stats (a JSON snapshot taken
 * at open) and /.kvfs/ctl (write one JSON request, read the JSON reply on the same handle).
 *
 * Going through the mount rather than a socket means kvfsctl needs nothing but the mount
 * point, works the same in embedded and cluster mode, and is guarded by the mount's own
 * permissions. The protocol is documented in docs/USAGE.md.
 */
#define FUSE_USE_VERSION 312

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fs_i.h"
#include "util.h"
#include "pool.h"
#include "xfer.h"

static const char *evict_name(uint8_t e)
{
	return e == KVFS_EVICT_NONE ? "none" : "lru";
}

static json_t *pool_json(const struct kvfs_pool_attr *p)
{
	return json_pack("{s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I}", "name", p->name,
			 "id", (json_int_t)p->id, "page_size", (json_int_t)p->page_size, "capacity",
			 (json_int_t)p->capacity, "evict", evict_name(p->evict), "max_file_size",
			 (json_int_t)p->max_file_size, "used_bytes", (json_int_t)p->used, "files",
			 (json_int_t)p->files, "evictions", (json_int_t)p->evictions,
			 "evicted_bytes", (json_int_t)p->evicted_bytes);
}

#define COUNTER(x)                                                                                 \
	{                                                                                          \
#x, offsetof(struct fs_counters, x)                                                \
	}

static const struct {
	const char *name;
	size_t offset;
} fs_counter_names[] = {
	COUNTER(lookups),
	COUNTER(getattrs),
	COUNTER(opens),
	COUNTER(releases),
	COUNTER(reads),
	COUNTER(read_bytes),
	COUNTER(read_holes),
	COUNTER(read_errors),
	COUNTER(writes),
	COUNTER(write_bytes),
	COUNTER(write_errors),
	COUNTER(commits),
	COUNTER(creates),
	COUNTER(unlinks),
	COUNTER(renames),
	COUNTER(mkdirs),
	COUNTER(rmdirs),
	COUNTER(readdirs),
	COUNTER(truncates),
	COUNTER(fsyncs),
	COUNTER(evict_notices),
	COUNTER(cache_pushes),
	COUNTER(cache_push_bytes),
	COUNTER(readaheads),
	COUNTER(remote_hits),
};

static json_t *stats_json(struct kvfs_fs *fs)
{
	struct kvfs_palloc_stats ps;
	struct kvfs_pool_attr *pools = NULL;
	size_t npools = 0;
	json_t *root, *jp, *xf, *fsj;

	memset(&ps, 0, sizeof(ps));
	if (fs->palloc) {
		kvfs_palloc_get_stats(fs->palloc, &ps);
	} else {
		/* cluster mode: the service allocates in our arena; ask it what it holds here */
		uint64_t cap, free_bytes;

		if (kvfs_meta_node_usage(fs->meta, fs->node, &cap, &free_bytes) == 0) {
			ps.free = free_bytes;
			ps.used = cap > free_bytes ? cap - free_bytes : 0;
		}
	}
	root = json_object();
	json_object_set_new(
		root, "node",
		json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)fs->node,
			  "incarnation", (json_int_t)fs->incarnation, "arena_bytes",
			  (json_int_t)fs->arena_size, "used_bytes", (json_int_t)ps.used,
			  "free_bytes", (json_int_t)ps.free, "pinned_pages",
			  (json_int_t)ps.pinned_pages, "deferred_bytes", (json_int_t)ps.deferred,
			  "largest_free_run", (json_int_t)ps.largest_run));
	if (!fs->palloc) {
		/* cluster mode: the service's totals over every node's arena */
		struct kvfs_statfs sf;

		if (fs->meta->ops->statfs(fs->meta, KVFS_ROOT_INO, &sf) == 0)
			json_object_set_new(root, "cluster",
					    json_pack("{s:I, s:I, s:I, s:I}", "capacity",
						      (json_int_t)sf.capacity, "used_bytes",
						      (json_int_t)sf.used, "free_bytes",
						      (json_int_t)sf.free, "files",
						      (json_int_t)sf.files));
	}
	jp = json_array();
	if (fs->meta->ops->pool_list(fs->meta, &pools, &npools) == 0) {
		for (size_t i = 0; i < npools; i++)
			json_array_append_new(jp, pool_json(&pools[i]));
		free(pools);
	}
	json_object_set_new(root, "pools", jp);
	fsj = json_object();
	for (size_t i = 0; i < sizeof(fs_counter_names) / sizeof(fs_counter_names[0]); i++) {
		_Atomic uint64_t *c =
			(_Atomic uint64_t *)((char *)&fs->ctr + fs_counter_names[i].offset);

		json_object_set_new(
			fsj, fs_counter_names[i].name,
			json_integer((json_int_t)atomic_load_explicit(c, memory_order_relaxed)));
	}
	json_object_set_new(root, "fs", fsj);
	xf = json_object();
	for (int b = 0; b < KVFS_XFER_NBACKENDS; b++) {
		struct kvfs_xfer_counters c;

		kvfs_xfer_get_counters(fs->xfer, (enum kvfs_xfer_backend_id)b, &c);
		json_object_set_new(xf, kvfs_xfer_backend_name((enum kvfs_xfer_backend_id)b),
				    json_pack("{s:I, s:I, s:I, s:I}", "ops", (json_int_t)c.ops,
					      "transfers", (json_int_t)c.transfers, "bytes",
					      (json_int_t)c.bytes, "errors", (json_int_t)c.errors));
	}
	json_object_set_new(root, "xfer", xf);
	if (fs->hitcache) {
		uint64_t bytes, hits, misses, inserts, evictions;

		fs_hitcache_stats(fs->hitcache, &bytes, &hits, &misses, &inserts, &evictions);
		json_object_set_new(root, "remote_cache",
				    json_pack("{s:I, s:I, s:I, s:I, s:I}", "bytes",
					      (json_int_t)bytes, "hits", (json_int_t)hits, "misses",
					      (json_int_t)misses, "inserts", (json_int_t)inserts,
					      "evictions", (json_int_t)evictions));
	}
	{
		/* the same per peer (cluster mode): ops, transfers after merging, bytes, errors */
		json_t *xp = json_object();

		pthread_mutex_lock(&fs->peers_lock);
		for (size_t i = 0; i < fs->npeers; i++) {
			struct kvfs_xfer_counters c;
			char key[16];

			if (kvfs_xfer_get_peer_counters(fs->xfer, fs->peers[i], &c) < 0)
				continue;
			snprintf(key, sizeof(key), "%u", fs->peers[i]);
			json_object_set_new(
				xp, key,
				json_pack("{s:I, s:I, s:I, s:I}", "ops", (json_int_t)c.ops,
					  "transfers", (json_int_t)c.transfers, "bytes",
					  (json_int_t)c.bytes, "errors", (json_int_t)c.errors));
		}
		pthread_mutex_unlock(&fs->peers_lock);
		json_object_set_new(root, "xfer_peers", xp);
	}
	return root;
}

static int dump(json_t *j, char **ret_buf, size_t *ret_len)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	size_t len;

	json_decref(j);
	if (!s)
		return -ENOMEM;
	len = strlen(s);
	/* a trailing newline makes `cat` output pleasant */
	s = realloc(s, len + 2);
	if (!s)
		return -ENOMEM;
	s[len++] = '\n';
	s[len] = 0;
	*ret_buf = s;
	*ret_len = len;
	return 0;
}

int kvfs_fs_stats_json(struct kvfs_fs *fs, char **ret_buf, size_t *ret_len)
{
	return dump(stats_json(fs), ret_buf, ret_len);
}

static json_t *error_reply(int err, const char *what)
{
	return json_pack("{s:b, s:i, s:s}", "ok", 0, "errno", err, "error",
			 what ? what : strerror(err));
}

/* A pool size: a non-negative integer or a string like "4M", at most KVFS_POOL_SIZE_MAX. */
static int get_size_field(json_t *req, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(req, key);
	uint64_t x;
	int r;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		x = (uint64_t)json_integer_value(v);
	} else if (json_is_string(v)) {
		r = kvfs_parse_size(json_string_value(v), &x);
		if (r < 0)
			return r;
	} else {
		return -EINVAL;
	}
	if (x > KVFS_POOL_SIZE_MAX)
		return -ERANGE;
	*ret = x;
	return 0;
}

static json_t *cmd_pool_create(struct kvfs_fs *fs, json_t *req)
{
	struct kvfs_pool_attr pa = {0};
	const char *name = json_string_value(json_object_get(req, "name"));
	const char *evict = json_string_value(json_object_get(req, "evict"));
	uint64_t page_size = 0;
	int r;

	/* a "\u0000" in the name never gets here: the request parser refuses it */
	if (!name || kvfs_pool_name_check(name))
		return error_reply(EINVAL, "\"name\" must be 1-64 bytes, not \".\" or \"..\", "
					   "without '/' or control characters");
	snprintf(pa.name, sizeof(pa.name), "%s", name);
	if ((r = get_size_field(req, "page_size", &page_size)) < 0 ||
	    (r = get_size_field(req, "capacity", &pa.capacity)) < 0 ||
	    (r = get_size_field(req, "max_file_size", &pa.max_file_size)) < 0)
		return error_reply(
			EINVAL, r == -ERANGE
					? "sizes must be at most 4E (2^62 bytes)"
					: "sizes must be non-negative integers or strings like 4M");
	if (page_size && !kvfs_page_size_valid(page_size))
		return error_reply(EINVAL, "page_size must be a power of two from 64K to 16M");
	pa.page_size = (uint32_t)page_size;
	if (!evict || !strcmp(evict, "lru"))
		pa.evict = KVFS_EVICT_LRU;
	else if (!strcmp(evict, "none"))
		pa.evict = KVFS_EVICT_NONE;
	else
		return error_reply(EINVAL, "evict must be \"lru\" or \"none\"");
	if (!strcmp(name, FS_CTLDIR_NAME))
		return error_reply(EEXIST, "the name .kvfs is reserved");
	r = fs->meta->ops->pool_create(fs->meta, &pa);
	if (r < 0)
		return error_reply(-r, NULL);
	/* the kernel may remember a miss for this name at the root */
	kvfs_fs_meta_removed(fs, KVFS_ROOT_INO, pa.name, 0);
	fs->meta->ops->pool_get(fs->meta, pa.id, &pa);
	return json_pack("{s:b, s:o}", "ok", 1, "pool", pool_json(&pa));
}

static json_t *cmd_pool_list(struct kvfs_fs *fs)
{
	struct kvfs_pool_attr *pools = NULL;
	size_t n = 0;
	json_t *arr;
	int r;

	r = fs->meta->ops->pool_list(fs->meta, &pools, &n);
	if (r < 0)
		return error_reply(-r, NULL);
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, pool_json(&pools[i]));
	free(pools);
	return json_pack("{s:b, s:o}", "ok", 1, "pools", arr);
}

static json_t *cmd_pool_drop(struct kvfs_fs *fs, json_t *req)
{
	const char *name = json_string_value(json_object_get(req, "name"));
	int r;

	if (!name)
		return error_reply(EINVAL, "\"name\" must be a string");
	r = fs->meta->ops->pool_drop(fs->meta, name, json_is_true(json_object_get(req, "force")));
	if (r < 0)
		return error_reply(-r, NULL);
	kvfs_fs_meta_removed(fs, KVFS_ROOT_INO, name, 0);
	return json_pack("{s:b}", "ok", 1);
}

/* Walk a mount-relative path through the metadata namespace. */
static int resolve(struct kvfs_fs *fs, const char *path, struct kvfs_attr *ret)
{
	char *copy = strdup(path), *save = NULL, *tok;
	struct kvfs_attr a = {0};
	int r = 0;

	if (!copy)
		return -ENOMEM;
	a.ino = KVFS_ROOT_INO;
	for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (!strcmp(tok, "."))
			continue;
		r = fs->meta->ops->lookup(fs->meta, a.ino, tok, &a);
		if (r < 0)
			break;
	}
	free(copy);
	if (r == 0)
		*ret = a;
	return r;
}

static json_t *cmd_layout(struct kvfs_fs *fs, json_t *req)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	struct kvfs_layout *l = NULL;
	struct kvfs_attr a;
	json_t *pages, *reply;
	int r;

	if (!path)
		return error_reply(EINVAL, "\"path\" must be a string");
	r = resolve(fs, path, &a);
	if (r == 0)
		r = fs->meta->ops->layout(fs->meta, a.ino, &l);
	if (r < 0)
		return error_reply(-r, NULL);
	pages = json_array();
	for (size_t i = 0; i < l->npages; i++) {
		const struct kvfs_page_entry *p = &l->pages[i];

		json_array_append_new(pages, json_pack("{s:I, s:I, s:I, s:I}", "index",
						       (json_int_t)p->index, "node",
						       (json_int_t)p->ref.node, "incarnation",
						       (json_int_t)p->ref.incarnation, "off",
						       (json_int_t)p->ref.off));
	}
	reply = json_pack("{s:b, s:I, s:I, s:I, s:I, s:b, s:o}", "ok", 1, "ino",
			  (json_int_t)l->attr.ino, "size", (json_int_t)l->attr.size, "page_size",
			  (json_int_t)l->attr.page_size, "version", (json_int_t)l->attr.version,
			  "lost", (l->attr.flags & KVFS_ATTR_LOST) != 0, "pages", pages);
	kvfs_layout_free(l);
	return reply;
}

int kvfs_fs_ctl(struct kvfs_fs *fs, const char *req, size_t len, char **ret_buf, size_t *ret_len)
{
	json_error_t jerr;
	json_t *j, *reply;
	const char *cmd;

	j = json_loadb(req, len, 0, &jerr);
	if (!j)
		return -EINVAL;
	cmd = json_string_value(json_object_get(j, "cmd"));
	if (!json_is_object(j) || !cmd) {
		json_decref(j);
		return -EINVAL;
	}
	if (!strcmp(cmd, "pool_create"))
		reply = cmd_pool_create(fs, j);
	else if (!strcmp(cmd, "pool_list"))
		reply = cmd_pool_list(fs);
	else if (!strcmp(cmd, "pool_drop"))
		reply = cmd_pool_drop(fs, j);
	else if (!strcmp(cmd, "stats"))
		reply = json_pack("{s:b, s:o}", "ok", 1, "stats", stats_json(fs));
	else if (!strcmp(cmd, "layout"))
		reply = cmd_layout(fs, j);
	else
		reply = error_reply(EINVAL, "unknown cmd");
	json_decref(j);
	return dump(reply, ret_buf, ret_len);
}
