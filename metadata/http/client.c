/* SPDX-License-Identifier: MIT */
/*
 * client.c - the `http` implementation of struct kvfs_meta_ops over libcurl (see meta_http.h).
 *
 * One call: encode the request with codec.h, take a curl handle from the pool, POST it with
 * the time left before the call's deadline as CURLOPT_TIMEOUT_MS, put the handle back, decode
 * the answer. Errors: a transport failure is -EIO; an HTTP error is the errno of its JSON body
 * (or of the status when the body has none). Idempotent calls retry after -EIO or 502/503/504
 * with exponential backoff while the deadline allows.
 *
 * Locks: h->lock guards the handle free list and the node identity; it is never held across a
 * network call. The heartbeat thread sleeps on h->cond (with h->lock) between heartbeats.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "meta_http.h"

#define DEFAULT_TIMEOUT_MS 5000u
#define DEFAULT_RETRIES	   4u
#define BACKOFF_MS	   10
#define READDIR_BATCH	   1024u

struct conn {
	struct conn *next;
	CURL *curl;
};

struct http {
	struct kvfs_meta base;	 /* first: ops table */
	char *url;		 /* without a trailing '/' */
	struct curl_slist *hdrs; /* shared by every handle, read-only after create */
	uint32_t timeout_ms;
	uint32_t retries;
	struct kvfs_meta_http_config cfg; /* callbacks and ctx; url/token not kept */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* guarded by lock: */
	struct conn *free_conns;
	struct kvfs_node_info node; /* node.incarnation == 0: not registered */
	uint32_t heartbeat_ms;
	uint64_t epoch;
	bool hb_running;
	bool hb_stop;
	pthread_t hb_thread;
};

struct buf {
	char *p;
	size_t len, cap;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct buf *b = userdata;
	size_t n = size * nmemb;

	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return 0; /* makes curl fail the transfer */
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, ptr, n);
	b->len += n;
	b->p[b->len] = 0;
	return n;
}

/* ---- the handle pool ---- */

static struct conn *conn_get(struct http *h)
{
	struct conn *c;

	pthread_mutex_lock(&h->lock);
	c = h->free_conns;
	if (c)
		h->free_conns = c->next;
	pthread_mutex_unlock(&h->lock);
	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return NULL;
	}
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h->hdrs);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
	return c;
}

static void conn_put(struct http *h, struct conn *c)
{
	pthread_mutex_lock(&h->lock);
	c->next = h->free_conns;
	h->free_conns = c;
	pthread_mutex_unlock(&h->lock);
}

/* ---- one call ---- */

static int status_errno(long status)
{
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
		return -EACCES;
	case 403:
		return -EPERM;
	case 404:
		return -ENOENT;
	case 409:
		return -EEXIST;
	case 410:
		return -ESTALE;
	case 413:
		return -EMSGSIZE;
	case 501:
		return -ENOSYS;
	case 503:
		return -EAGAIN;
	case 504:
		return -ETIMEDOUT;
	case 507:
		return -ENOSPC;
	default:
		return -EIO;
	}
}

/* One POST. Returns 0 with *ret_status and the body in @b, or -EIO for a transport failure. */
static int post_once(struct http *h, const char *path, const char *body, size_t len,
		     int64_t timeout_ms, long *ret_status, struct buf *b)
{
	char url[512];
	struct conn *c;
	CURLcode rc;
	long status = 0;

	if (snprintf(url, sizeof(url), "%s%s", h->url, path) >= (int)sizeof(url))
		return -EINVAL;
	c = conn_get(h);
	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, (long)len);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	rc = curl_easy_perform(c->curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	conn_put(h, c);
	if (rc != CURLE_OK)
		return -EIO;
	*ret_status = status;
	return 0;
}

/*
 * POST @req (consumed) to @path. On success *ret_resp (may be NULL) is the answer object, or
 * NULL for 204. Retries per the header's rules when @idem.
 */
static int call(struct http *h, const char *path, json_t *req, bool idem, json_t **ret_resp)
{
	int64_t deadline = mono_ms() + h->timeout_ms;
	struct buf b = {0};
	uint32_t attempt = 0;
	long status = 0;
	char *body;
	int r;

	if (!req)
		return -ENOMEM;
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!body)
		return -ENOMEM;
	for (;;) {
		int64_t left = deadline - mono_ms();
		bool retryable;

		b.len = 0;
		r = left > 0 ? post_once(h, path, body, strlen(body), left, &status, &b) : -EIO;
		if (r == 0 && status >= 200 && status < 300)
			break;
		if (r == 0) {
			json_t *j = NULL;
			uint64_t e = 0;

			r = status_errno(status);
			if (b.len && kvfs_meta_json_parse(b.p, b.len, &j, NULL) == 0 &&
			    kvfs_meta_json_u64(j, "errno", true, 0, &e, NULL) == 0 && e > 0 &&
			    e < 4096)
				r = -(int)e;
			json_decref(j);
			retryable = status == 502 || status == 503 || status == 504;
		} else {
			retryable = r == -EIO;
		}
		left = deadline - mono_ms();
		if (!idem || !retryable || attempt >= h->retries || left <= 0)
			goto out;
		int64_t wait = (int64_t)BACKOFF_MS << (attempt < 10 ? attempt : 10);

		if (wait >= left)
			wait = left - 1;
		if (wait > 0)
			sleep_ms(wait);
		attempt++;
		if (mono_ms() >= deadline)
			goto out;
	}
	if (ret_resp) {
		*ret_resp = NULL;
		if (status != 204 && b.len) {
			r = kvfs_meta_json_parse(b.p, b.len, ret_resp, NULL);
			if (r)
				r = -EIO; /* the service answered garbage */
		}
	}
out:
	free(b.p);
	free(body);
	return r;
}

static struct http *hp(struct kvfs_meta *m)
{
	return (struct http *)m;
}

#define JI(x) ((json_int_t)(x))

/* @req (consumed) with the name @name under @key, in codec.h's encoding of names; NULL when out
 * of memory (call() answers that with -ENOMEM). */
static json_t *named(json_t *req, const char *key, const char *name)
{
	if (req && kvfs_meta_json_set_name(req, key, name)) {
		json_decref(req);
		return NULL;
	}
	return req;
}

/* Decode the "attr" member of @resp (consumed) into *ret. */
static int attr_of(json_t *resp, struct kvfs_attr *ret)
{
	struct kvfs_attr a;
	int r;

	if (!resp)
		return -EIO;
	r = kvfs_meta_json_to_attr(json_object_get(resp, "attr"), false, &a, NULL);
	json_decref(resp);
	if (r)
		return -EIO;
	if (ret)
		*ret = a;
	return 0;
}

/* ---- membership ---- */

static void *hb_main(void *arg);

static int cl_node_register(struct kvfs_meta *m, struct kvfs_node_info *info)
{
	struct http *h = hp(m);
	json_t *resp = NULL;
	struct kvfs_node_info got;
	uint64_t hb = 0, epoch = 0;
	bool start = false;
	int r;

	r = call(h, "/v1/node/register",
		 json_pack("{sI sI ss}", "id", JI(info->id), "arena_size", JI(info->arena_size),
			   "addr", info->addr),
		 false, &resp);
	if (r)
		return r;
	if (!resp || kvfs_meta_json_to_node(resp, &got, NULL) ||
	    kvfs_meta_json_u64(resp, "heartbeat_ms", false, 1000, &hb, NULL) ||
	    kvfs_meta_json_u64(resp, "epoch", false, 0, &epoch, NULL)) {
		json_decref(resp);
		return -EIO;
	}
	json_decref(resp);
	pthread_mutex_lock(&h->lock);
	h->node = got;
	h->heartbeat_ms = hb && hb < 60000 ? (uint32_t)hb : 1000;
	h->epoch = epoch;
	if (h->cfg.heartbeat && !h->hb_running && !h->hb_stop) {
		r = -pthread_create(&h->hb_thread, NULL, hb_main, h);
		h->hb_running = r == 0;
		start = true;
	}
	pthread_mutex_unlock(&h->lock);
	if (start && r)
		return r;
	*info = got;
	return 0;
}

static int cl_node_leave(struct kvfs_meta *m, uint32_t node)
{
	struct http *h = hp(m);
	uint32_t inc = 0;
	int r;

	pthread_mutex_lock(&h->lock);
	if (node == h->node.id)
		inc = h->node.incarnation;
	pthread_mutex_unlock(&h->lock);
	r = call(h, "/v1/node/leave", json_pack("{sI sI}", "id", JI(node), "incarnation", JI(inc)),
		 true, NULL);
	if (r == 0 && inc) {
		pthread_mutex_lock(&h->lock);
		if (h->node.id == node && h->node.incarnation == inc)
			h->node.incarnation = 0; /* the heartbeat thread stops beating */
		pthread_mutex_unlock(&h->lock);
	}
	return r;
}

static int cl_node_self(struct kvfs_meta *m, struct kvfs_node_info *ret)
{
	struct http *h = hp(m);
	int r = 0;

	pthread_mutex_lock(&h->lock);
	if (h->node.incarnation)
		*ret = h->node;
	else
		r = -ENOENT;
	pthread_mutex_unlock(&h->lock);
	return r;
}

/* One heartbeat; *ret_epoch gets the membership epoch of the answer. */
static int heartbeat(struct http *h, uint32_t *ret_alive, uint64_t *ret_epoch)
{
	struct kvfs_node_info me;
	json_t *resp = NULL;
	uint64_t alive = 0, epoch = 0;
	int r;

	r = cl_node_self(&h->base, &me);
	if (r)
		return r;
	r = call(h, "/v1/node/heartbeat",
		 json_pack("{sI sI}", "id", JI(me.id), "incarnation", JI(me.incarnation)), true,
		 &resp);
	if (r)
		return r;
	if (!resp || kvfs_meta_json_u64(resp, "alive", true, 0, &alive, NULL) ||
	    kvfs_meta_json_u64(resp, "epoch", false, 0, &epoch, NULL))
		r = -EIO;
	json_decref(resp);
	if (r == 0 && ret_alive)
		*ret_alive = (uint32_t)alive;
	if (r == 0 && ret_epoch)
		*ret_epoch = epoch;
	return r;
}

static int cl_heartbeat(struct kvfs_meta *m, uint32_t *ret_alive)
{
	return heartbeat(hp(m), ret_alive, NULL);
}

static int cl_node_list(struct kvfs_meta *m, bool alive_only, struct kvfs_node_info **ret_nodes,
			size_t *ret_n)
{
	struct kvfs_node_info *v;
	json_t *resp = NULL, *arr;
	size_t n;
	int r;

	r = call(hp(m), "/v1/node/list", json_pack("{sb}", "alive_only", alive_only), true, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "nodes") : NULL;
	n = json_array_size(arr);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		json_decref(resp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && r == 0; i++)
		if (kvfs_meta_json_to_node(json_array_get(arr, i), &v[i], NULL))
			r = -EIO;
	json_decref(resp);
	if (r) {
		free(v);
		return r;
	}
	*ret_nodes = v;
	*ret_n = n;
	return 0;
}

static int cl_node_usage(struct kvfs_meta *m, uint32_t node, uint64_t *ret_capacity,
			 uint64_t *ret_free)
{
	json_t *resp = NULL, *arr;
	int r;

	r = call(hp(m), "/v1/node/list", json_pack("{sb}", "alive_only", true), true, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "nodes") : NULL;
	r = -ENOENT;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *n = json_array_get(arr, i);
		json_t *cap = json_object_get(n, "capacity"), *fr = json_object_get(n, "free");

		if (json_integer_value(json_object_get(n, "id")) != (json_int_t)node)
			continue;
		if (!json_is_integer(cap) || !json_is_integer(fr)) {
			r = -EPROTO;
			break;
		}
		*ret_capacity = (uint64_t)json_integer_value(cap);
		*ret_free = (uint64_t)json_integer_value(fr);
		r = 0;
		break;
	}
	json_decref(resp);
	return r;
}

static void *hb_main(void *arg)
{
	struct http *h = arg;

	pthread_mutex_lock(&h->lock);
	while (!h->hb_stop) {
		struct kvfs_node_info me, *peers = NULL;
		struct timespec ts;
		uint64_t epoch = 0, old_epoch;
		size_t np = 0;
		int r;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(h->heartbeat_ms % 1000) * 1000000;
		ts.tv_sec += h->heartbeat_ms / 1000 + ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&h->cond, &h->lock, &ts);
		if (h->hb_stop)
			break;
		if (!h->node.incarnation)
			continue; /* left */
		me = h->node;
		old_epoch = h->epoch;
		pthread_mutex_unlock(&h->lock);

		r = heartbeat(h, NULL, &epoch);
		if (r == -ESTALE) {
			/* declared dead or forgotten: a new incarnation, the old pages are gone */
			struct kvfs_node_info info = me;

			info.incarnation = 0;
			r = cl_node_register(&h->base, &info);
			if (r == 0 && h->cfg.reregistered)
				h->cfg.reregistered(h->cfg.ctx, &info);
			epoch = old_epoch + 1; /* fetch the peers again */
		}
		if (r == 0 && epoch != old_epoch && h->cfg.peers_changed &&
		    cl_node_list(&h->base, true, &peers, &np) == 0) {
			h->cfg.peers_changed(h->cfg.ctx, peers, np);
			free(peers);
		}
		pthread_mutex_lock(&h->lock);
		if (r == 0)
			h->epoch = epoch;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* ---- pools ---- */

static int cl_pool_create(struct kvfs_meta *m, struct kvfs_pool_attr *attr)
{
	struct kvfs_pool_attr a;
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/pool/create",
		 json_pack("{ss sI sI sI ss}", "name", attr->name, "page_size", JI(attr->page_size),
			   "capacity", JI(attr->capacity), "max_file_size", JI(attr->max_file_size),
			   "evict", attr->evict == KVFS_EVICT_NONE ? "none" : "lru"),
		 false, &resp);
	if (r)
		return r;
	r = resp ? kvfs_meta_json_to_pool(resp, false, &a, NULL) : -EIO;
	json_decref(resp);
	if (r)
		return -EIO;
	*attr = a;
	return 0;
}

static int cl_pool_list(struct kvfs_meta *m, struct kvfs_pool_attr **ret_pools, size_t *ret_n)
{
	struct kvfs_pool_attr *v;
	json_t *resp = NULL, *arr;
	size_t n;
	int r;

	r = call(hp(m), "/v1/pool/list", json_object(), true, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "pools") : NULL;
	n = json_array_size(arr);
	v = calloc(n ? n : 1, sizeof(*v));
	if (!v) {
		json_decref(resp);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n && r == 0; i++)
		if (kvfs_meta_json_to_pool(json_array_get(arr, i), false, &v[i], NULL))
			r = -EIO;
	json_decref(resp);
	if (r) {
		free(v);
		return r;
	}
	*ret_pools = v;
	*ret_n = n;
	return 0;
}

static int cl_pool_get(struct kvfs_meta *m, uint32_t pool, struct kvfs_pool_attr *ret)
{
	struct kvfs_pool_attr a;
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/pool/get", json_pack("{sI}", "id", JI(pool)), true, &resp);
	if (r)
		return r;
	r = resp ? kvfs_meta_json_to_pool(resp, false, &a, NULL) : -EIO;
	json_decref(resp);
	if (r)
		return -EIO;
	*ret = a;
	return 0;
}

static int cl_pool_drop(struct kvfs_meta *m, const char *name, bool force)
{
	return call(hp(m), "/v1/pool/drop", json_pack("{ss sb}", "name", name, "force", force),
		    false, NULL);
}

/* ---- namespace ---- */

static int cl_lookup(struct kvfs_meta *m, uint64_t parent, const char *name,
		     struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/lookup", named(json_pack("{sI}", "parent", JI(parent)), "name", name),
		 true, &resp);
	return r ? r : attr_of(resp, ret_attr);
}

static int cl_getattr(struct kvfs_meta *m, uint64_t ino, struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r = call(hp(m), "/v1/getattr", json_pack("{sI}", "ino", JI(ino)), true, &resp);

	return r ? r : attr_of(resp, ret_attr);
}

static int layout_of(json_t *resp, struct kvfs_layout **ret)
{
	int r;

	if (!resp)
		return -EIO;
	r = kvfs_meta_json_to_layout(resp, ret, NULL);
	json_decref(resp);
	return r ? (r == -ENOMEM ? r : -EIO) : 0;
}

static int cl_layout(struct kvfs_meta *m, uint64_t ino, struct kvfs_layout **ret_layout)
{
	json_t *resp = NULL;
	int r = call(hp(m), "/v1/layout", json_pack("{sI}", "ino", JI(ino)), true, &resp);

	return r ? r : layout_of(resp, ret_layout);
}

static int cl_create(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		     uint32_t uid, uint32_t gid, bool excl, struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/create",
		 named(json_pack("{sI sI sI sI sb}", "parent", JI(parent), "mode", JI(mode), "uid",
				 JI(uid), "gid", JI(gid), "excl", excl),
		       "name", name),
		 false, &resp);
	return r ? r : attr_of(resp, ret_attr);
}

static int cl_mkdir(struct kvfs_meta *m, uint64_t parent, const char *name, uint32_t mode,
		    uint32_t uid, uint32_t gid, struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/mkdir",
		 named(json_pack("{sI sI sI sI}", "parent", JI(parent), "mode", JI(mode), "uid",
				 JI(uid), "gid", JI(gid)),
		       "name", name),
		 false, &resp);
	return r ? r : attr_of(resp, ret_attr);
}

static int cl_unlink(struct kvfs_meta *m, uint64_t parent, const char *name)
{
	return call(hp(m), "/v1/unlink",
		    named(json_pack("{sI}", "parent", JI(parent)), "name", name), false, NULL);
}

static int cl_rmdir(struct kvfs_meta *m, uint64_t parent, const char *name)
{
	return call(hp(m), "/v1/rmdir",
		    named(json_pack("{sI}", "parent", JI(parent)), "name", name), false, NULL);
}

static int cl_rename(struct kvfs_meta *m, uint64_t parent, const char *name, uint64_t newparent,
		     const char *newname, unsigned flags)
{
	return call(hp(m), "/v1/rename",
		    named(named(json_pack("{sI sI sI}", "parent", JI(parent), "newparent",
					  JI(newparent), "flags", JI(flags)),
				"name", name),
			  "newname", newname),
		    false, NULL);
}

static int cl_setattr(struct kvfs_meta *m, uint64_t ino, const struct kvfs_attr *attr,
		      unsigned valid, struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/setattr",
		 json_pack("{sI sI so}", "ino", JI(ino), "valid", JI(valid), "attr",
			   kvfs_meta_json_from_attr(attr)),
		 false, &resp);
	return r ? r : attr_of(resp, ret_attr);
}

static int cl_readdir(struct kvfs_meta *m, uint64_t dir, uint64_t cookie,
		      struct kvfs_dirent *ret_ents, size_t max, size_t *ret_n)
{
	json_t *resp = NULL, *arr;
	size_t n;
	int r;

	if (!max) {
		*ret_n = 0;
		return 0;
	}
	r = call(hp(m), "/v1/readdir",
		 json_pack("{sI sI sI}", "dir", JI(dir), "cookie", JI(cookie), "max",
			   JI(max < READDIR_BATCH ? max : READDIR_BATCH)),
		 true, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "entries") : NULL;
	n = json_array_size(arr);
	if (!json_is_array(arr) || n > max)
		r = -EIO;
	for (size_t i = 0; i < n && r == 0; i++)
		if (kvfs_meta_json_to_dirent(json_array_get(arr, i), &ret_ents[i], NULL))
			r = -EIO;
	json_decref(resp);
	if (r == 0)
		*ret_n = n;
	return r;
}

/* ---- data placement ---- */

static int cl_alloc(struct kvfs_meta *m, uint64_t ino, uint64_t first, uint32_t n,
		    uint32_t prefer_node, struct kvfs_page_ref *ret_refs)
{
	json_t *resp = NULL, *arr;
	int r;

	r = call(hp(m), "/v1/alloc",
		 json_pack("{sI sI sI sI}", "ino", JI(ino), "first", JI(first), "n", JI(n),
			   "prefer_node", JI(prefer_node)),
		 false, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "refs") : NULL;
	if (json_array_size(arr) != n)
		r = -EIO;
	for (uint32_t i = 0; i < n && r == 0; i++)
		if (kvfs_meta_json_to_ref(json_array_get(arr, i), &ret_refs[i], NULL))
			r = -EIO;
	json_decref(resp);
	return r;
}

static int cl_commit(struct kvfs_meta *m, uint64_t ino, uint64_t size, int64_t mtime_ns,
		     const struct kvfs_page_entry *pages, size_t n, struct kvfs_attr *ret_attr)
{
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/commit",
		 json_pack("{sI sI sI so}", "ino", JI(ino), "size", JI(size), "mtime_ns",
			   JI(mtime_ns), "pages", kvfs_meta_json_from_pages(pages, n)),
		 true, &resp);
	return r ? r : attr_of(resp, ret_attr);
}

static int cl_abort(struct kvfs_meta *m, uint64_t ino, const struct kvfs_page_ref *refs, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, kvfs_meta_json_from_ref(&refs[i]))) {
			json_decref(arr);
			arr = NULL;
		}
	if (!arr)
		return -ENOMEM;
	return call(hp(m), "/v1/abort", json_pack("{sI so}", "ino", JI(ino), "refs", arr), false,
		    NULL);
}

/* ---- leases ---- */

static int cl_open(struct kvfs_meta *m, uint64_t ino, uint32_t node, uint64_t *ret_lease,
		   struct kvfs_layout **ret_layout)
{
	json_t *resp = NULL;
	uint64_t lease = 0;
	int r;

	r = call(hp(m), "/v1/open", json_pack("{sI sI}", "ino", JI(ino), "node", JI(node)), false,
		 &resp);
	if (r)
		return r;
	if (!resp || kvfs_meta_json_u64(resp, "lease", true, 0, &lease, NULL)) {
		json_decref(resp);
		return -EIO;
	}
	r = layout_of(resp, ret_layout);
	if (r == 0)
		*ret_lease = lease;
	return r;
}

static int cl_close(struct kvfs_meta *m, uint64_t ino, uint64_t lease)
{
	int r = call(hp(m), "/v1/close", json_pack("{sI sI}", "ino", JI(ino), "lease", JI(lease)),
		     true, NULL);

	/* the lease is gone: the service restarted (leases are volatile) or a retry found that
	 * the first attempt had closed it; either way the file is not held any more */
	return r == -ENOENT ? 0 : r;
}

/* ---- xattrs ---- */

static int cl_setxattr(struct kvfs_meta *m, uint64_t ino, const char *name, const void *value,
		       size_t len, int flags)
{
	char *enc = kvfs_meta_b64_encode(value, len);
	int r;

	if (!enc)
		return -ENOMEM;
	r = call(hp(m), "/v1/xattr/set",
		 named(json_pack("{sI ss sI}", "ino", JI(ino), "value", enc, "flags", JI(flags)),
		       "name", name),
		 false, NULL);
	free(enc);
	return r;
}

static int cl_getxattr(struct kvfs_meta *m, uint64_t ino, const char *name, void *buf, size_t size,
		       size_t *ret_len)
{
	json_t *resp = NULL, *v;
	void *val = NULL;
	size_t len = 0;
	int r;

	r = call(hp(m), "/v1/xattr/get", named(json_pack("{sI}", "ino", JI(ino)), "name", name),
		 true, &resp);
	if (r)
		return r;
	v = resp ? json_object_get(resp, "value") : NULL;
	if (!json_is_string(v) ||
	    kvfs_meta_b64_decode(json_string_value(v), json_string_length(v), &val, &len))
		r = -EIO;
	json_decref(resp);
	if (r == 0 && size) {
		if (size < len)
			r = -ERANGE;
		else
			memcpy(buf, val, len);
	}
	free(val);
	if (r == 0)
		*ret_len = len;
	return r;
}

/* Advance *off over the names in @arr (@hex: the "names_hex" twin), each with its NUL, copying
 * them to @buf + *off when @buf is not NULL (the caller checked that they fit). -EIO for an
 * answer that is not an array of names. */
static int xattr_names(const json_t *arr, bool hex, char *buf, size_t *off)
{
	char name[KVFS_NAME_MAX + 1];

	if (json_is_null(arr))
		arr = NULL;
	if (arr && !json_is_array(arr))
		return -EIO;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		size_t len;

		if (kvfs_meta_json_name_item(json_array_get(arr, i), hex, "names", i, name,
					     KVFS_NAME_MAX, NULL) ||
		    !name[0])
			return -EIO;
		len = strlen(name) + 1;
		if (buf)
			memcpy(buf + *off, name, len);
		*off += len;
	}
	return 0;
}

static int cl_listxattr(struct kvfs_meta *m, uint64_t ino, char *buf, size_t size, size_t *ret_len)
{
	json_t *resp = NULL, *arr, *hex;
	size_t need = 0, off = 0;
	int r;

	r = call(hp(m), "/v1/xattr/list", json_pack("{sI}", "ino", JI(ino)), true, &resp);
	if (r)
		return r;
	arr = resp ? json_object_get(resp, "names") : NULL;
	hex = resp ? json_object_get(resp, "names_hex") : NULL;
	if (!json_is_array(arr) || xattr_names(arr, false, NULL, &need) ||
	    xattr_names(hex, true, NULL, &need))
		r = -EIO;
	if (r == 0 && size && size < need)
		r = -ERANGE;
	/* the second pass cannot fail: the first checked the same names */
	if (r == 0 && size &&
	    (xattr_names(arr, false, buf, &off) || xattr_names(hex, true, buf, &off)))
		r = -EIO;
	json_decref(resp);
	if (r == 0)
		*ret_len = need;
	return r;
}

static int cl_removexattr(struct kvfs_meta *m, uint64_t ino, const char *name)
{
	return call(hp(m), "/v1/xattr/remove",
		    named(json_pack("{sI}", "ino", JI(ino)), "name", name), false, NULL);
}

static int cl_statfs(struct kvfs_meta *m, uint64_t ino, struct kvfs_statfs *ret)
{
	struct kvfs_statfs sf;
	json_t *resp = NULL;
	int r;

	r = call(hp(m), "/v1/statfs", json_pack("{sI}", "ino", JI(ino)), true, &resp);
	if (r)
		return r;
	r = resp ? kvfs_meta_json_to_statfs(resp, &sf, NULL) : -EIO;
	json_decref(resp);
	if (r)
		return -EIO;
	*ret = sf;
	return 0;
}

static void cl_destroy(struct kvfs_meta *m)
{
	struct http *h = hp(m);
	bool join;

	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->hb_stop = true;
	join = h->hb_running;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (join)
		pthread_join(h->hb_thread, NULL);
	while (h->free_conns) {
		struct conn *c = h->free_conns;

		h->free_conns = c->next;
		curl_easy_cleanup(c->curl);
		free(c);
	}
	curl_slist_free_all(h->hdrs);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h->url);
	free(h);
}

static const struct kvfs_meta_ops http_ops = {
	.name = "http",
	.node_register = cl_node_register,
	.node_leave = cl_node_leave,
	.pool_create = cl_pool_create,
	.pool_list = cl_pool_list,
	.pool_get = cl_pool_get,
	.pool_drop = cl_pool_drop,
	.lookup = cl_lookup,
	.getattr = cl_getattr,
	.layout = cl_layout,
	.create = cl_create,
	.mkdir = cl_mkdir,
	.unlink = cl_unlink,
	.rmdir = cl_rmdir,
	.rename = cl_rename,
	.setattr = cl_setattr,
	.readdir = cl_readdir,
	.alloc = cl_alloc,
	.commit = cl_commit,
	.abort = cl_abort,
	.open = cl_open,
	.close = cl_close,
	.setxattr = cl_setxattr,
	.getxattr = cl_getxattr,
	.listxattr = cl_listxattr,
	.removexattr = cl_removexattr,
	.statfs = cl_statfs,
	.node_self = cl_node_self,
	.heartbeat = cl_heartbeat,
	.node_list = cl_node_list,
	.node_usage = cl_node_usage,
	.destroy = cl_destroy,
};

int kvfs_meta_http_create(const struct kvfs_meta_http_config *cfg, struct kvfs_meta **ret)
{
	struct curl_slist *l;
	pthread_condattr_t ca;
	struct http *h;
	size_t ulen;
	char *auth = NULL;

	if (!cfg || !cfg->url || strncmp(cfg->url, "http://", 7) || !cfg->url[7])
		return -EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return -ENOMEM;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->base.ops = &http_ops;
	h->cfg = *cfg;
	h->cfg.url = NULL;
	h->cfg.token = NULL;
	h->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
	h->retries = cfg->retries ? cfg->retries : DEFAULT_RETRIES;
	h->heartbeat_ms = 1000;
	h->url = strdup(cfg->url);
	if (!h->url)
		goto err_free;
	ulen = strlen(h->url);
	while (ulen > 7 && h->url[ulen - 1] == '/')
		h->url[--ulen] = 0;

	/* "Expect:" off: curl would wait for 100-continue on bodies over 1 KiB */
	l = curl_slist_append(NULL, "Content-Type: application/json");
	if (l)
		h->hdrs = l;
	if (l && !(l = curl_slist_append(h->hdrs, "Expect:")))
		goto err_free;
	if (l && cfg->token && *cfg->token) {
		if (asprintf(&auth, "Authorization: Bearer %s", cfg->token) < 0) {
			auth = NULL;
			goto err_free;
		}
		l = curl_slist_append(h->hdrs, auth);
		free(auth);
	}
	if (!l)
		goto err_free;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	*ret = &h->base;
	return 0;

err_free:
	curl_slist_free_all(h->hdrs);
	free(h->url);
	free(h);
	return -ENOMEM;
}
