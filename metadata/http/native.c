/* SPDX-License-Identifier: MIT */
/*
 * native.c - kvfs-meta's native /v1/ routes (docs/API.md) on the metadata state machine
 * (metadata/state.h), and node membership (native.h).
 *
 * Each handler has the signature kvfs_meta_route_fn (server.h): decode the body with codec.h,
 * call the matching meta_state_*() function, encode its result with codec.h. Handlers run on
 * the server's threads concurrently; the state machine does its own locking, and the only state
 * here is the membership table (guarded by native->lock, see native.h for the lock order).
 *
 * Batch forms (lookup_batch, getattr_batch, exists) answer 200 with one result per item; an
 * item that failed carries its own {"errno", "error"}.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "native.h"
#include "server.h"
#include "state.h"

#define BATCH_MAX   65536u /* items of a batch request */
#define ALLOC_MAX   65536u /* pages of one alloc */
#define PAGES_MAX   (1u << 22)
#define READDIR_MAX 4096u
#define XATTR_MAX   (64u * 1024)

struct member {
	uint32_t id;
	uint32_t inc;
	int64_t last_ms; /* CLOCK_MONOTONIC of the last heartbeat (or register / resume grace) */
	bool pending;	 /* known from before a restart, not resumed yet */
};

struct kvfs_meta_native {
	struct meta_state *s; /* borrowed */
	uint32_t heartbeat_ms;
	uint32_t timeout_ms;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* guarded by lock: */
	struct member *members; /* nodes believed alive */
	size_t nmembers, cap;
	uint64_t epoch; /* bumped when the set of alive nodes changes */
	bool stop;

	pthread_t timer;
	_Atomic uint64_t declared_dead;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- membership table (caller holds n->lock) ---- */

static struct member *member_find(struct kvfs_meta_native *n, uint32_t id)
{
	for (size_t i = 0; i < n->nmembers; i++)
		if (n->members[i].id == id)
			return &n->members[i];
	return NULL;
}

static int member_set(struct kvfs_meta_native *n, uint32_t id, uint32_t inc, int64_t now)
{
	struct member *m = member_find(n, id);

	if (!m) {
		if (n->nmembers == n->cap) {
			size_t cap = n->cap ? n->cap * 2 : 16;
			struct member *v = realloc(n->members, cap * sizeof(*v));

			if (!v)
				return -ENOMEM;
			n->members = v;
			n->cap = cap;
		}
		m = &n->members[n->nmembers++];
		m->id = id;
		n->epoch++;
	} else if (m->inc != inc) {
		n->epoch++;
	}
	m->inc = inc;
	m->last_ms = now;
	m->pending = false;
	return 0;
}

static void member_del(struct kvfs_meta_native *n, uint32_t id)
{
	struct member *m = member_find(n, id);

	if (!m)
		return;
	*m = n->members[--n->nmembers];
	n->epoch++;
}

static void *timer_main(void *arg)
{
	struct kvfs_meta_native *n = arg;
	uint32_t tick = n->heartbeat_ms / 2 ? n->heartbeat_ms / 2 : 1;

	if (tick > 500)
		tick = 500;
	pthread_mutex_lock(&n->lock);
	while (!n->stop) {
		struct timespec ts;
		int64_t now;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)tick * 1000000;
		ts.tv_sec += ts.tv_nsec / 1000000000;
		ts.tv_nsec %= 1000000000;
		pthread_cond_timedwait(&n->cond, &n->lock, &ts);
		if (n->stop)
			break;
		now = mono_ms();
		for (size_t i = 0; i < n->nmembers;) {
			struct member m = n->members[i];

			if (now - m.last_ms <= (int64_t)n->timeout_ms) {
				i++;
				continue;
			}
			/* Under n->lock, so no heartbeat can resume it in between (native.h). A
			 * failure other than -ESTALE (store error) is retried on the next tick. */
			if (meta_state_node_leave_inc(n->s, m.id, m.inc) < 0 &&
			    meta_state_node_resume(n->s, m.id, m.inc) == 0) {
				i++;
				continue;
			}
			member_del(n, m.id);
			atomic_fetch_add(&n->declared_dead, 1);
		}
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int kvfs_meta_native_create(const struct kvfs_meta_native_config *cfg,
			    struct kvfs_meta_native **ret)
{
	struct kvfs_meta_native *n;
	struct meta_state_node *nodes = NULL;
	size_t nn = 0;
	pthread_condattr_t ca;
	int64_t now = mono_ms();
	int r;

	if (!cfg || !cfg->state)
		return -EINVAL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->s = cfg->state;
	n->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : KVFS_META_HEARTBEAT_MS;
	n->timeout_ms = cfg->node_timeout_ms ? cfg->node_timeout_ms : KVFS_META_NODE_TIMEOUT_MS;
	pthread_mutex_init(&n->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&n->cond, &ca);
	pthread_condattr_destroy(&ca);

	/* Nodes known from before a restart get one timeout to come back. */
	r = meta_state_node_list(n->s, &nodes, &nn);
	if (r < 0)
		goto err_free;
	for (size_t i = 0; i < nn && r == 0; i++)
		if (!nodes[i].dead) {
			r = member_set(n, nodes[i].info.id, nodes[i].info.incarnation, now);
			if (r == 0)
				member_find(n, nodes[i].info.id)->pending = true;
		}
	free(nodes);
	if (r < 0)
		goto err_free;
	r = -pthread_create(&n->timer, NULL, timer_main, n);
	if (r < 0)
		goto err_free;
	*ret = n;
	return 0;

err_free:
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n->members);
	free(n);
	return r;
}

void kvfs_meta_native_destroy(struct kvfs_meta_native *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->timer, NULL);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n->members);
	free(n);
}

/* ---- helpers ---- */

#define JI(x) ((json_int_t)(x))

static struct meta_state *st(void *ctx)
{
	return ((struct kvfs_meta_native *)ctx)->s;
}

static int oom(struct kvfs_meta_json_error *err)
{
	return kvfs_meta_json_fail(err, -ENOMEM, "out of memory");
}

/* Set *ret to @j, or fail with -ENOMEM when the encoder ran out of memory. */
static int answer(json_t *j, json_t **ret, struct kvfs_meta_json_error *err)
{
	if (!j)
		return oom(err);
	*ret = j;
	return 0;
}

static int answer_attr(const struct kvfs_attr *a, json_t **ret, struct kvfs_meta_json_error *err)
{
	return answer(json_pack("{so}", "attr", kvfs_meta_json_from_attr(a)), ret, err);
}

static json_t *error_item(int r)
{
	return json_pack("{si ss}", "errno", -r, "error", strerror(-r));
}

static json_t *node_json(const struct meta_state_node *nd)
{
	json_t *j = kvfs_meta_json_from_node(&nd->info);

	if (j && (json_object_set_new(j, "alive", json_boolean(nd->alive)) ||
		  json_object_set_new(j, "capacity", json_integer((json_int_t)nd->capacity)) ||
		  json_object_set_new(j, "free", json_integer((json_int_t)nd->free)))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ---- membership ---- */

static int route_node_register(void *ctx, const json_t *req, json_t **ret,
			       struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_native *n = ctx;
	struct meta_state_node *nodes = NULL;
	struct kvfs_node_info info;
	json_t *j, *peers;
	uint64_t epoch;
	size_t nn = 0;
	int r;

	r = kvfs_meta_json_to_node(req, &info, err);
	if (r)
		return r;
	/* Register under n->lock: the timer must not declare the new incarnation dead with the
	 * silence of the old one. */
	pthread_mutex_lock(&n->lock);
	r = meta_state_node_register(n->s, &info, NULL);
	if (r == 0)
		r = member_set(n, info.id, info.incarnation, mono_ms());
	epoch = n->epoch;
	pthread_mutex_unlock(&n->lock);
	if (r)
		return r;
	r = meta_state_node_list(n->s, &nodes, &nn);
	if (r)
		return r;
	j = kvfs_meta_json_from_node(&info);
	peers = json_array();
	for (size_t i = 0; i < nn; i++)
		if (nodes[i].alive && nodes[i].info.id != info.id)
			json_array_append_new(peers, node_json(&nodes[i]));
	free(nodes);
	if (j && peers &&
	    !json_object_update_new(j,
				    json_pack("{sI sI sI sO}", "heartbeat_ms", JI(n->heartbeat_ms),
					      "dead_after_ms", JI(n->timeout_ms), "epoch",
					      JI(epoch), "peers", peers))) {
		json_decref(peers);
		*ret = j;
		return 0;
	}
	json_decref(peers);
	json_decref(j);
	return oom(err);
}

static int route_node_heartbeat(void *ctx, const json_t *req, json_t **ret,
				struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_native *n = ctx;
	struct member *m;
	uint32_t id, inc;
	size_t alive;
	uint64_t epoch;
	int r;

	if ((r = kvfs_meta_json_u32(req, "id", true, 0, &id, err)) ||
	    (r = kvfs_meta_json_u32(req, "incarnation", true, 0, &inc, err)))
		return r;
	pthread_mutex_lock(&n->lock);
	m = member_find(n, id);
	if (m && m->inc == inc && !m->pending) {
		m->last_ms = mono_ms();
	} else {
		r = meta_state_node_resume(n->s, id, inc);
		if (r == 0)
			r = member_set(n, id, inc, mono_ms());
	}
	alive = n->nmembers;
	epoch = n->epoch;
	pthread_mutex_unlock(&n->lock);
	if (r == -ESTALE || r == -ENOENT)
		return kvfs_meta_json_fail(err, -ESTALE,
					   "node %" PRIu32 " incarnation %" PRIu32
					   " is not alive: register again",
					   id, inc);
	if (r)
		return r;
	return answer(json_pack("{sI sI}", "alive", JI(alive), "epoch", JI(epoch)), ret, err);
}

static int route_node_leave(void *ctx, const json_t *req, json_t **ret,
			    struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_native *n = ctx;
	uint32_t id, inc;
	int r;

	if ((r = kvfs_meta_json_u32(req, "id", true, 0, &id, err)) ||
	    (r = kvfs_meta_json_u32(req, "incarnation", false, 0, &inc, err)))
		return r;
	pthread_mutex_lock(&n->lock);
	r = meta_state_node_leave_inc(n->s, id, inc);
	if (r == 0) {
		member_del(n, id);
	} else if (r == -ESTALE) {
		r = 0; /* that incarnation is gone already: leaving twice is fine */
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

static int route_node_list(void *ctx, const json_t *req, json_t **ret,
			   struct kvfs_meta_json_error *err)
{
	struct kvfs_meta_native *n = ctx;
	struct meta_state_node *nodes = NULL;
	size_t nn = 0;
	uint64_t epoch;
	bool alive_only;
	json_t *arr;
	int r;

	r = kvfs_meta_json_bool(req, "alive_only", false, false, &alive_only, err);
	if (r)
		return r;
	pthread_mutex_lock(&n->lock);
	epoch = n->epoch;
	pthread_mutex_unlock(&n->lock);
	r = meta_state_node_list(n->s, &nodes, &nn);
	if (r)
		return r;
	arr = json_array();
	for (size_t i = 0; arr && i < nn; i++)
		if (!alive_only || nodes[i].alive)
			if (json_array_append_new(arr, node_json(&nodes[i]))) {
				json_decref(arr);
				arr = NULL;
			}
	free(nodes);
	if (!arr)
		return oom(err);
	return answer(json_pack("{so sI}", "nodes", arr, "epoch", JI(epoch)), ret, err);
}

/* ---- pools ---- */

static int route_pool_create(void *ctx, const json_t *req, json_t **ret,
			     struct kvfs_meta_json_error *err)
{
	struct kvfs_pool_attr a;
	int r = kvfs_meta_json_to_pool(req, true, &a, err);

	if (r)
		return r;
	a.id = 0;
	r = meta_state_pool_create(st(ctx), &a);
	if (r)
		return r;
	return answer(kvfs_meta_json_from_pool(&a), ret, err);
}

static int route_pool_list(void *ctx, const json_t *req, json_t **ret,
			   struct kvfs_meta_json_error *err)
{
	struct kvfs_pool_attr *pools = NULL;
	size_t np = 0;
	json_t *arr;
	int r = meta_state_pool_list(st(ctx), &pools, &np);

	if (r)
		return r;
	arr = json_array();
	for (size_t i = 0; arr && i < np; i++)
		if (json_array_append_new(arr, kvfs_meta_json_from_pool(&pools[i]))) {
			json_decref(arr);
			arr = NULL;
		}
	free(pools);
	if (!arr)
		return oom(err);
	return answer(json_pack("{so}", "pools", arr), ret, err);
}

static int route_pool_get(void *ctx, const json_t *req, json_t **ret,
			  struct kvfs_meta_json_error *err)
{
	struct kvfs_pool_attr a;
	uint32_t id;
	int r;

	if ((r = kvfs_meta_json_u32(req, "id", true, 0, &id, err)) ||
	    (r = meta_state_pool_get(st(ctx), id, &a)))
		return r;
	return answer(kvfs_meta_json_from_pool(&a), ret, err);
}

static int route_pool_drop(void *ctx, const json_t *req, json_t **ret,
			   struct kvfs_meta_json_error *err)
{
	char name[KVFS_POOL_NAME_MAX + 1];
	bool force;
	int r;

	if ((r = kvfs_meta_json_str(req, "name", true, NULL, name, KVFS_POOL_NAME_MAX, err)) ||
	    (r = kvfs_meta_json_bool(req, "force", false, false, &force, err)))
		return r;
	return meta_state_pool_drop(st(ctx), name, force);
}

/* ---- namespace reads ---- */

static int parent_name(const json_t *req, uint64_t *parent, char *name,
		       struct kvfs_meta_json_error *err)
{
	int r;

	if ((r = kvfs_meta_json_u64(req, "parent", true, 0, parent, err)) ||
	    (r = kvfs_meta_json_name(req, "name", true, name, KVFS_NAME_MAX, err)))
		return r;
	if (!name[0])
		return kvfs_meta_json_fail(err, -EINVAL, "field 'name' must not be empty");
	return 0;
}

static int route_lookup(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	struct kvfs_attr a;
	uint64_t parent;
	int r;

	if ((r = parent_name(req, &parent, name, err)) ||
	    (r = meta_state_lookup(st(ctx), parent, name, &a)))
		return r;
	return answer_attr(&a, ret, err);
}

/* One lookup_batch item: its result object (success or error). */
static json_t *lookup_item(struct meta_state *s, const json_t *item, bool layout)
{
	struct kvfs_meta_json_error ierr = {{0}};
	char name[KVFS_NAME_MAX + 1];
	struct kvfs_layout *l = NULL;
	struct kvfs_attr a;
	uint64_t parent;
	json_t *j;
	int r;

	r = parent_name(item, &parent, name, &ierr);
	if (r)
		return json_pack("{si ss}", "errno", -r, "error", ierr.msg);
	r = meta_state_lookup(s, parent, name, &a);
	if (r == 0 && layout && S_ISREG(a.mode)) {
		r = meta_state_layout(s, a.ino, &l);
		if (r == 0)
			a = l->attr;
	}
	if (r)
		return error_item(r);
	if (l) {
		j = kvfs_meta_json_from_layout(l);
		kvfs_layout_free(l);
		return j;
	}
	if (layout)
		return json_pack("{so s[]}", "attr", kvfs_meta_json_from_attr(&a), "pages");
	return json_pack("{so}", "attr", kvfs_meta_json_from_attr(&a));
}

static int route_lookup_batch(void *ctx, const json_t *req, json_t **ret,
			      struct kvfs_meta_json_error *err)
{
	json_t *items = NULL, *res;
	bool layout;
	int r;

	if ((r = kvfs_meta_json_array(req, "items", true, BATCH_MAX, &items, err)) ||
	    (r = kvfs_meta_json_bool(req, "layout", false, false, &layout, err)))
		return r;
	res = json_array();
	for (size_t i = 0; res && i < json_array_size(items); i++)
		if (json_array_append_new(res,
					  lookup_item(st(ctx), json_array_get(items, i), layout))) {
			json_decref(res);
			res = NULL;
		}
	if (!res)
		return oom(err);
	return answer(json_pack("{so}", "results", res), ret, err);
}

static int route_getattr(void *ctx, const json_t *req, json_t **ret,
			 struct kvfs_meta_json_error *err)
{
	struct kvfs_attr a;
	uint64_t ino;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = meta_state_getattr(st(ctx), ino, &a)))
		return r;
	return answer_attr(&a, ret, err);
}

static int route_getattr_batch(void *ctx, const json_t *req, json_t **ret,
			       struct kvfs_meta_json_error *err)
{
	json_t *inos = NULL, *res;
	int r = kvfs_meta_json_array(req, "inos", true, BATCH_MAX, &inos, err);

	if (r)
		return r;
	for (size_t i = 0; i < json_array_size(inos); i++) {
		json_t *v = json_array_get(inos, i);

		if (!json_is_integer(v))
			return kvfs_meta_json_fail(err, -EPROTO, "inos[%zu] must be an integer", i);
		if (json_integer_value(v) < 0)
			return kvfs_meta_json_fail(err, -EINVAL, "inos[%zu] must not be negative",
						   i);
	}
	res = json_array();
	for (size_t i = 0; res && i < json_array_size(inos); i++) {
		struct kvfs_attr a;
		json_t *item;

		r = meta_state_getattr(st(ctx),
				       (uint64_t)json_integer_value(json_array_get(inos, i)), &a);
		item = r ? error_item(r) : json_pack("{so}", "attr", kvfs_meta_json_from_attr(&a));
		if (json_array_append_new(res, item)) {
			json_decref(res);
			res = NULL;
		}
	}
	if (!res)
		return oom(err);
	return answer(json_pack("{so}", "results", res), ret, err);
}

static int route_layout(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	struct kvfs_layout *l;
	uint64_t ino;
	json_t *j;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = meta_state_layout(st(ctx), ino, &l)))
		return r;
	j = kvfs_meta_json_from_layout(l);
	kvfs_layout_free(l);
	return answer(j, ret, err);
}

/* Answer @names (@hex: the "names_hex" twin) of exists into @res. A name that cannot exist
 * (empty, too long, with a NUL, bad hex) is false; a bad type fails the request. */
static int exists_of(struct meta_state *s, uint64_t parent, const json_t *names, bool hex,
		     json_t *res, struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];

	for (size_t i = 0; i < json_array_size(names); i++) {
		const json_t *v = json_array_get(names, i);
		struct kvfs_attr a;
		bool ex = false;
		int r;

		if (!json_is_string(v))
			return kvfs_meta_json_fail(err, -EPROTO, "names%s[%zu] must be a string",
						   hex ? "_hex" : "", i);
		if (kvfs_meta_json_name_item(v, hex, "names", i, name, KVFS_NAME_MAX, NULL) == 0 &&
		    name[0]) {
			r = meta_state_lookup(s, parent, name, &a);
			if (r && r != -ENOENT && r != -ENAMETOOLONG && r != -EINVAL)
				return r; /* e.g. the parent is missing or not a directory */
			ex = r == 0;
		}
		if (json_array_append_new(res, json_boolean(ex)))
			return oom(err);
	}
	return 0;
}

static int route_exists(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	json_t *names = NULL, *hex = NULL, *res = NULL, *res_hex = NULL;
	uint64_t parent;
	int r;

	if ((r = kvfs_meta_json_u64(req, "parent", true, 0, &parent, err)) ||
	    (r = kvfs_meta_json_array(req, "names", false, BATCH_MAX, &names, err)) ||
	    (r = kvfs_meta_json_array(req, "names_hex", false, BATCH_MAX, &hex, err)))
		return r;
	if (!names && !hex)
		return kvfs_meta_json_fail(err, -EPROTO, "missing field 'names' (or 'names_hex')");
	res = json_array();
	res_hex = hex ? json_array() : NULL;
	if (!res || (hex && !res_hex)) {
		r = oom(err);
		goto err_free;
	}
	if ((r = exists_of(st(ctx), parent, names, false, res, err)) ||
	    (r = exists_of(st(ctx), parent, hex, true, res_hex, err)))
		goto err_free;
	/* "exists_hex" answers "names_hex", item for item, and only when it was asked */
	r = answer(hex ? json_pack("{so so}", "exists", res, "exists_hex", res_hex)
		       : json_pack("{so}", "exists", res),
		   ret, err);
	return r;

err_free:
	json_decref(res_hex);
	json_decref(res);
	return r;
}

static int route_readdir(void *ctx, const json_t *req, json_t **ret,
			 struct kvfs_meta_json_error *err)
{
	struct kvfs_dirent *ents;
	uint64_t dir, cookie;
	uint32_t max;
	size_t got = 0;
	json_t *arr;
	int r;

	if ((r = kvfs_meta_json_u64(req, "dir", true, 0, &dir, err)) ||
	    (r = kvfs_meta_json_u64(req, "cookie", false, 0, &cookie, err)) ||
	    (r = kvfs_meta_json_u32(req, "max", false, 256, &max, err)))
		return r;
	if (!max)
		return kvfs_meta_json_fail(err, -EINVAL, "field 'max' must be at least 1");
	if (max > READDIR_MAX)
		max = READDIR_MAX;
	ents = malloc(max * sizeof(*ents));
	if (!ents)
		return oom(err);
	r = meta_state_readdir(st(ctx), dir, cookie, ents, max, &got);
	if (r) {
		free(ents);
		return r;
	}
	arr = json_array();
	for (size_t i = 0; arr && i < got; i++)
		if (json_array_append_new(arr, kvfs_meta_json_from_dirent(&ents[i]))) {
			json_decref(arr);
			arr = NULL;
		}
	free(ents);
	if (!arr)
		return oom(err);
	return answer(json_pack("{so}", "entries", arr), ret, err);
}

static int route_statfs(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	struct kvfs_statfs sf;
	uint64_t ino;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", false, KVFS_ROOT_INO, &ino, err)) ||
	    (r = meta_state_statfs(st(ctx), ino, &sf)))
		return r;
	return answer(kvfs_meta_json_from_statfs(&sf), ret, err);
}

/* ---- namespace changes ---- */

static int route_create(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	uint32_t mode, uid, gid;
	struct kvfs_attr a;
	uint64_t parent;
	bool excl;
	int r;

	if ((r = parent_name(req, &parent, name, err)) ||
	    (r = kvfs_meta_json_u32(req, "mode", false, S_IFREG | 0644, &mode, err)) ||
	    (r = kvfs_meta_json_u32(req, "uid", false, 0, &uid, err)) ||
	    (r = kvfs_meta_json_u32(req, "gid", false, 0, &gid, err)) ||
	    (r = kvfs_meta_json_bool(req, "excl", false, false, &excl, err)) ||
	    (r = meta_state_create_file(st(ctx), parent, name, mode, uid, gid, excl, &a)))
		return r;
	return answer_attr(&a, ret, err);
}

static int route_mkdir(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	uint32_t mode, uid, gid;
	struct kvfs_attr a;
	uint64_t parent;
	int r;

	if ((r = parent_name(req, &parent, name, err)) ||
	    (r = kvfs_meta_json_u32(req, "mode", false, S_IFDIR | 0755, &mode, err)) ||
	    (r = kvfs_meta_json_u32(req, "uid", false, 0, &uid, err)) ||
	    (r = kvfs_meta_json_u32(req, "gid", false, 0, &gid, err)) ||
	    (r = meta_state_mkdir(st(ctx), parent, name, mode, uid, gid, &a)))
		return r;
	return answer_attr(&a, ret, err);
}

static int route_unlink(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	uint64_t parent;
	int r = parent_name(req, &parent, name, err);

	return r ? r : meta_state_unlink(st(ctx), parent, name);
}

static int route_rmdir(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	uint64_t parent;
	int r = parent_name(req, &parent, name, err);

	return r ? r : meta_state_rmdir(st(ctx), parent, name);
}

static int route_rename(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1], newname[KVFS_NAME_MAX + 1];
	uint64_t parent, newparent;
	uint32_t flags;
	int r;

	if ((r = parent_name(req, &parent, name, err)) ||
	    (r = kvfs_meta_json_u64(req, "newparent", true, 0, &newparent, err)) ||
	    (r = kvfs_meta_json_name(req, "newname", true, newname, KVFS_NAME_MAX, err)) ||
	    (r = kvfs_meta_json_u32(req, "flags", false, 0, &flags, err)))
		return r;
	if (!newname[0])
		return kvfs_meta_json_fail(err, -EINVAL, "field 'newname' must not be empty");
	return meta_state_rename(st(ctx), parent, name, newparent, newname, flags);
}

static int route_setattr(void *ctx, const json_t *req, json_t **ret,
			 struct kvfs_meta_json_error *err)
{
	struct kvfs_attr in = {0}, a;
	json_t *aj = NULL;
	uint32_t valid;
	uint64_t ino;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_u32(req, "valid", true, 0, &valid, err)))
		return r;
	aj = json_object_get(req, "attr");
	if (aj && !json_is_null(aj) && (r = kvfs_meta_json_to_attr(aj, true, &in, err)))
		return r;
	r = meta_state_setattr(st(ctx), ino, &in, valid, &a);
	if (r)
		return r;
	return answer_attr(&a, ret, err);
}

/* ---- data placement ---- */

static int route_alloc(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	struct kvfs_page_ref *refs;
	uint64_t ino, first;
	uint32_t n, prefer;
	json_t *arr;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_u64(req, "first", true, 0, &first, err)) ||
	    (r = kvfs_meta_json_u32(req, "n", true, 0, &n, err)) ||
	    (r = kvfs_meta_json_u32(req, "prefer_node", false, 0, &prefer, err)))
		return r;
	if (!n || n > ALLOC_MAX)
		return kvfs_meta_json_fail(err, -EINVAL, "field 'n' must be in 1 .. %u", ALLOC_MAX);
	refs = malloc(n * sizeof(*refs));
	if (!refs)
		return oom(err);
	r = meta_state_alloc(st(ctx), ino, first, n, prefer, refs);
	if (r) {
		free(refs);
		return r;
	}
	arr = json_array();
	for (uint32_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, kvfs_meta_json_from_ref(&refs[i]))) {
			json_decref(arr);
			arr = NULL;
		}
	free(refs);
	if (!arr)
		return oom(err);
	return answer(json_pack("{so}", "refs", arr), ret, err);
}

static int route_commit(void *ctx, const json_t *req, json_t **ret,
			struct kvfs_meta_json_error *err)
{
	struct kvfs_page_entry *pages = NULL;
	struct kvfs_attr a;
	uint64_t ino, size;
	int64_t mtime;
	json_t *pj = NULL;
	size_t np = 0;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_u64(req, "size", true, 0, &size, err)) ||
	    (r = kvfs_meta_json_i64(req, "mtime_ns", false, 0, &mtime, err)) ||
	    (r = kvfs_meta_json_array(req, "pages", false, PAGES_MAX, &pj, err)))
		return r;
	if (pj && (r = kvfs_meta_json_to_pages(pj, PAGES_MAX, false, &pages, &np, err)))
		return r;
	r = meta_state_commit(st(ctx), ino, size, mtime, pages, np, &a);
	free(pages);
	if (r)
		return r;
	return answer_attr(&a, ret, err);
}

static int route_abort(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	struct kvfs_page_ref *refs;
	json_t *arr = NULL;
	uint64_t ino;
	size_t n;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_array(req, "refs", true, PAGES_MAX, &arr, err)))
		return r;
	n = json_array_size(arr);
	refs = malloc((n ? n : 1) * sizeof(*refs));
	if (!refs)
		return oom(err);
	for (size_t i = 0; i < n; i++) {
		r = kvfs_meta_json_to_ref(json_array_get(arr, i), &refs[i], err);
		if (r) {
			free(refs);
			return r;
		}
	}
	r = meta_state_abort(st(ctx), ino, refs, n);
	free(refs);
	return r;
}

/* ---- leases ---- */

static int route_open(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	struct kvfs_layout *l;
	uint64_t ino, lease;
	uint32_t node;
	json_t *j;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_u32(req, "node", false, 0, &node, err)) ||
	    (r = meta_state_open(st(ctx), ino, node, &lease, &l)))
		return r;
	j = kvfs_meta_json_from_layout(l);
	kvfs_layout_free(l);
	if (j && json_object_set_new(j, "lease", json_integer(JI(lease)))) {
		json_decref(j);
		j = NULL;
	}
	if (!j) {
		meta_state_close(st(ctx), ino, lease);
		return oom(err);
	}
	*ret = j;
	return 0;
}

static int route_close(void *ctx, const json_t *req, json_t **ret, struct kvfs_meta_json_error *err)
{
	uint64_t ino, lease;
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err)) ||
	    (r = kvfs_meta_json_u64(req, "lease", true, 0, &lease, err)))
		return r;
	return meta_state_close(st(ctx), ino, lease);
}

/* ---- xattrs ---- */

static int ino_xname(const json_t *req, uint64_t *ino, char *name, struct kvfs_meta_json_error *err)
{
	int r;

	if ((r = kvfs_meta_json_u64(req, "ino", true, 0, ino, err)) ||
	    (r = kvfs_meta_json_name(req, "name", true, name, KVFS_NAME_MAX, err)))
		return r;
	return 0;
}

static int route_xattr_set(void *ctx, const json_t *req, json_t **ret,
			   struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	const json_t *v;
	void *val = NULL;
	size_t len = 0;
	uint32_t flags;
	uint64_t ino;
	int r;

	if ((r = ino_xname(req, &ino, name, err)) ||
	    (r = kvfs_meta_json_u32(req, "flags", false, 0, &flags, err)))
		return r;
	v = json_object_get(req, "value");
	if (!json_is_string(v))
		return kvfs_meta_json_fail(err, -EPROTO, "field 'value' must be a base64 string");
	r = kvfs_meta_b64_decode(json_string_value(v), json_string_length(v), &val, &len);
	if (r)
		return kvfs_meta_json_fail(err, r, "field 'value' is not valid base64");
	r = meta_state_setxattr(st(ctx), ino, name, val, len, (int)flags);
	free(val);
	return r;
}

static int route_xattr_get(void *ctx, const json_t *req, json_t **ret,
			   struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	char *buf, *enc;
	size_t len = 0;
	uint64_t ino;
	int r;

	r = ino_xname(req, &ino, name, err);
	if (r)
		return r;
	buf = malloc(XATTR_MAX);
	if (!buf)
		return oom(err);
	r = meta_state_getxattr(st(ctx), ino, name, buf, XATTR_MAX, &len);
	enc = r ? NULL : kvfs_meta_b64_encode(buf, len);
	free(buf);
	if (r)
		return r;
	if (!enc)
		return oom(err);
	r = answer(json_pack("{ss}", "value", enc), ret, err);
	free(enc);
	return r;
}

static int route_xattr_list(void *ctx, const json_t *req, json_t **ret,
			    struct kvfs_meta_json_error *err)
{
	char *buf = NULL;
	size_t len = 0;
	uint64_t ino;
	json_t *arr, *hex;
	int r;

	r = kvfs_meta_json_u64(req, "ino", true, 0, &ino, err);
	if (r)
		return r;
	/* size the buffer, then fill it; a set in between makes it -ERANGE: try again */
	do {
		free(buf);
		buf = NULL;
		r = meta_state_listxattr(st(ctx), ino, NULL, 0, &len);
		if (r)
			return r;
		buf = malloc(len + 1);
		if (!buf)
			return oom(err);
		r = len ? meta_state_listxattr(st(ctx), ino, buf, len, &len) : 0;
	} while (r == -ERANGE);
	if (r) {
		free(buf);
		return r;
	}
	/* UTF-8 names in "names", the others in "names_hex" (only when there are some) */
	arr = json_array();
	hex = json_array();
	r = arr && hex ? 0 : -ENOMEM;
	for (size_t off = 0; r == 0 && off < len; off += strlen(buf + off) + 1)
		r = kvfs_meta_json_append_name(arr, hex, buf + off);
	free(buf);
	if (r) {
		json_decref(arr);
		json_decref(hex);
		return oom(err);
	}
	if (json_array_size(hex))
		return answer(json_pack("{so so}", "names", arr, "names_hex", hex), ret, err);
	json_decref(hex);
	return answer(json_pack("{so}", "names", arr), ret, err);
}

static int route_xattr_remove(void *ctx, const json_t *req, json_t **ret,
			      struct kvfs_meta_json_error *err)
{
	char name[KVFS_NAME_MAX + 1];
	uint64_t ino;
	int r = ino_xname(req, &ino, name, err);

	return r ? r : meta_state_removexattr(st(ctx), ino, name);
}

/* ---- /metrics ---- */

struct text {
	char *p;
	size_t len, cap;
	bool failed;
};

static void tprintf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tprintf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		char *np;

		while (cap - t->len <= (size_t)n)
			cap *= 2;
		np = realloc(t->p, cap);
		if (!np) {
			t->failed = true;
			return;
		}
		t->p = np;
		t->cap = cap;
	}
}

/* A label value: escape quotes and backslashes, newlines become spaces. */
static void label(const char *in, char *out, size_t size)
{
	size_t o = 0;

	for (; *in && o + 3 < size; in++) {
		if (*in == '"' || *in == '\\')
			out[o++] = '\\';
		out[o++] = *in == '\n' ? ' ' : *in;
	}
	out[o] = 0;
}

int kvfs_meta_native_metrics(void *ctx, char **ret_text, size_t *ret_len)
{
	struct kvfs_meta_native *n = ctx;
	struct meta_state_node *nodes = NULL;
	struct kvfs_pool_attr *pools = NULL;
	struct meta_state_stats ss;
	struct text t = {0};
	size_t nn = 0, np = 0, alive = 0, members;
	char esc[2 * KVFS_POOL_NAME_MAX + 8], aesc[160];
	int r;

	r = meta_state_node_list(n->s, &nodes, &nn);
	if (r)
		return r;
	r = meta_state_pool_list(n->s, &pools, &np);
	if (r) {
		free(nodes);
		return r;
	}
	pthread_mutex_lock(&n->lock);
	members = n->nmembers;
	pthread_mutex_unlock(&n->lock);
	for (size_t i = 0; i < nn; i++)
		alive += nodes[i].alive;

	tprintf(&t,
		"# Native state: nodes.\n"
		"# TYPE kvfs_meta_nodes_alive gauge\nkvfs_meta_nodes_alive %zu\n"
		"# TYPE kvfs_meta_nodes_heartbeating gauge\n"
		"kvfs_meta_nodes_heartbeating %zu\n"
		"# TYPE kvfs_meta_nodes_known gauge\nkvfs_meta_nodes_known %zu\n"
		"# TYPE kvfs_meta_nodes_declared_dead_total counter\n"
		"kvfs_meta_nodes_declared_dead_total %" PRIu64 "\n",
		alive, members, nn, atomic_load(&n->declared_dead));
	for (size_t i = 0; i < nn; i++) {
		const struct meta_state_node *d = &nodes[i];

		label(d->info.addr, aesc, sizeof(aesc));
		tprintf(&t,
			"kvfs_meta_node_alive{node=\"%" PRIu32 "\",addr=\"%s\"} %d\n"
			"kvfs_meta_node_incarnation{node=\"%" PRIu32 "\"} %" PRIu32 "\n"
			"kvfs_meta_node_arena_bytes{node=\"%" PRIu32 "\"} %" PRIu64 "\n"
			"kvfs_meta_node_used_bytes{node=\"%" PRIu32 "\"} %" PRIu64 "\n"
			"kvfs_meta_node_free_bytes{node=\"%" PRIu32 "\"} %" PRIu64 "\n",
			d->info.id, aesc, d->alive, d->info.id, d->info.incarnation, d->info.id,
			d->info.arena_size, d->info.id, d->capacity - d->free, d->info.id, d->free);
	}
	tprintf(&t, "# Native state: pools (pages in the pool's page size).\n");
	for (size_t i = 0; i < np; i++) {
		const struct kvfs_pool_attr *p = &pools[i];
		struct kvfs_statfs sf = {0};
		uint64_t ps = p->page_size ? p->page_size : 1;

		meta_state_statfs(n->s, p->root_ino, &sf);
		label(p->name, esc, sizeof(esc));
		tprintf(&t,
			"kvfs_meta_pool_page_size_bytes{pool=\"%s\"} %" PRIu64 "\n"
			"kvfs_meta_pool_pages_used{pool=\"%s\"} %" PRIu64 "\n"
			"kvfs_meta_pool_pages_free{pool=\"%s\"} %" PRIu64 "\n"
			"kvfs_meta_pool_files{pool=\"%s\"} %" PRIu64 "\n"
			"kvfs_meta_pool_evictions_total{pool=\"%s\"} %" PRIu64 "\n"
			"kvfs_meta_pool_evicted_bytes_total{pool=\"%s\"} %" PRIu64 "\n",
			esc, ps, esc, p->used / ps, esc, sf.free / ps, esc, p->files, esc,
			p->evictions, esc, p->evicted_bytes);
	}
	meta_state_get_stats(n->s, &ss);
	tprintf(&t,
		"kvfs_meta_inodes %" PRIu64 "\nkvfs_meta_names %" PRIu64
		"\nkvfs_meta_leases %" PRIu64 "\nkvfs_meta_orphans %" PRIu64 "\n",
		ss.inodes, ss.dirents, ss.leases, ss.orphans);
	free(nodes);
	free(pools);
	if (t.failed) {
		free(t.p);
		return -ENOMEM;
	}
	*ret_text = t.p;
	*ret_len = t.len;
	return 0;
}

/* ---- the table ---- */

const struct kvfs_meta_route kvfs_meta_native_routes[] = {
	/* membership */
	{"/v1/node/register", true, route_node_register},
	{"/v1/node/heartbeat", true, route_node_heartbeat},
	{"/v1/node/leave", true, route_node_leave},
	{"/v1/node/list", false, route_node_list},
	/* pools */
	{"/v1/pool/create", true, route_pool_create},
	{"/v1/pool/list", false, route_pool_list},
	{"/v1/pool/get", false, route_pool_get},
	{"/v1/pool/drop", true, route_pool_drop},
	/* namespace reads, single and batch */
	{"/v1/lookup", false, route_lookup},
	{"/v1/lookup_batch", false, route_lookup_batch},
	{"/v1/getattr", false, route_getattr},
	{"/v1/getattr_batch", false, route_getattr_batch},
	{"/v1/layout", false, route_layout},
	{"/v1/exists", false, route_exists},
	{"/v1/readdir", false, route_readdir},
	{"/v1/statfs", false, route_statfs},
	/* namespace changes */
	{"/v1/create", true, route_create},
	{"/v1/mkdir", true, route_mkdir},
	{"/v1/unlink", true, route_unlink},
	{"/v1/rmdir", true, route_rmdir},
	{"/v1/rename", true, route_rename},
	{"/v1/setattr", true, route_setattr},
	/* data placement */
	{"/v1/alloc", true, route_alloc},
	{"/v1/commit", true, route_commit},
	{"/v1/abort", true, route_abort},
	/* leases */
	{"/v1/open", true, route_open},
	{"/v1/close", true, route_close},
	/* xattrs */
	{"/v1/xattr/set", true, route_xattr_set},
	{"/v1/xattr/get", false, route_xattr_get},
	{"/v1/xattr/list", false, route_xattr_list},
	{"/v1/xattr/remove", true, route_xattr_remove},
};

const size_t kvfs_meta_native_nroutes =
	sizeof(kvfs_meta_native_routes) / sizeof(kvfs_meta_native_routes[0]);
