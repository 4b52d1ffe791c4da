/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the transfer engine as an object: create and destroy, the backend slots, and the
 * calls that are about backends rather than batches (status, listen addresses, memory
 * registration, counters).
 *
 * The engine owns no thread. Batches (batch.c) are routed and posted by the submitting thread
 * and completed by whatever thread a backend reports from; the peer table (peers.c) is fed by
 * the membership thread. Backends are compiled in (builtin_backends below) and each one is
 * initialised at create: one that fails is left out (status says why) and its peers are
 * unreachable, except `local`, and `tcp` when a listen address was asked for: those failures
 * fail create. See xfer_i.h for the backend contract and engine_i.h for the lock order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_i.h"

#define DEFAULT_TIMEOUT_NS (30ull * 1000000000ull) /* when the config leaves it 0 */

static const char *const backend_names[KVFS_XFER_NBACKENDS] = {
	[KVFS_XFER_LOCAL] = "local",
	[KVFS_XFER_TCP] = "tcp",
	[KVFS_XFER_VERBS] = "verbs",
};

static const struct kvfs_xfer_backend_ops *const builtin_backends[KVFS_XFER_NBACKENDS] = {
	[KVFS_XFER_LOCAL] = &kvfs_xfer_local_ops,
	[KVFS_XFER_TCP] = &kvfs_xfer_tcp_ops,
#if KVFS_HAVE_RDMA
	[KVFS_XFER_VERBS] = &kvfs_xfer_verbs_ops,
#endif
};

/* See engine_i.h. */
void kvfs_xfer_cnt_add(struct xfer_counters *c, uint64_t ops, uint64_t transfers, uint64_t bytes,
		       uint64_t errors)
{
	if (!c)
		return;
	if (ops)
		atomic_fetch_add_explicit(&c->ops, ops, memory_order_relaxed);
	if (transfers)
		atomic_fetch_add_explicit(&c->transfers, transfers, memory_order_relaxed);
	if (bytes)
		atomic_fetch_add_explicit(&c->bytes, bytes, memory_order_relaxed);
	if (errors)
		atomic_fetch_add_explicit(&c->errors, errors, memory_order_relaxed);
}

/* See xfer.h. */
const char *kvfs_xfer_backend_name(enum kvfs_xfer_backend_id id)
{
	return (unsigned)id < KVFS_XFER_NBACKENDS ? backend_names[id] : "unknown";
}

/* Fini every backend that was set up, in reverse order of init. */
static void backends_fini(struct kvfs_xfer_engine *eng)
{
	for (int id = KVFS_XFER_NBACKENDS; id-- > 0;)
		if (eng->be[id].ops && eng->be[id].ops->fini)
			eng->be[id].ops->fini(eng->be[id].priv);
}

/* See xfer.h and the file comment for which backend failures fail create. */
int kvfs_xfer_engine_create(const struct kvfs_xfer_config *cfg, struct kvfs_xfer_engine **ret)
{
	struct kvfs_xfer_engine *eng;
	int r;

	if (!cfg || !ret || (cfg->token && strlen(cfg->token) > KVFS_XFER_TOKEN_MAX))
		return -EINVAL;
	eng = calloc(1, sizeof(*eng));
	if (!eng)
		return -ENOMEM;
	eng->cfg = *cfg;
	if (!eng->cfg.default_timeout_ns)
		eng->cfg.default_timeout_ns = DEFAULT_TIMEOUT_NS;
	pthread_mutex_init(&eng->lock, NULL);
	pthread_rwlock_init(&eng->peers_lock, NULL);

	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = builtin_backends[id];

		if (!ops) {
			eng->be[id].status = -EOPNOTSUPP;
			continue;
		}
		if (ops->init) {
			r = ops->init(eng, &eng->cfg, &eng->be[id].priv);
			if (r < 0) {
				eng->be[id].status = r;
				/*
				 * The local backend is not optional: without it nothing works. A
				 * server that was asked for and cannot listen is an error too.
				 */
				if (id == KVFS_XFER_LOCAL ||
				    (id == KVFS_XFER_TCP && cfg->listen_addr))
					goto err_fini_backends;
				continue;
			}
		}
		eng->be[id].ops = ops;
	}
	/* The caller's strings need not outlive create: backends took copies. */
	eng->cfg.token = NULL;
	eng->cfg.listen_addr = NULL;
	eng->cfg.verbs_listen_addr = NULL;
	*ret = eng;
	return 0;

err_fini_backends:
	backends_fini(eng);
	pthread_rwlock_destroy(&eng->peers_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
	return r;
}

/* See xfer.h. Waits (up to each batch's deadline) for every batch in flight. */
void kvfs_xfer_engine_destroy(struct kvfs_xfer_engine *eng)
{
	if (!eng)
		return;
	kvfs_xfer_batches_drain(eng);
	/* Backends free their peer objects, walking the table, which goes after them. */
	backends_fini(eng);
	kvfs_xfer_peers_fini(eng);
	pthread_rwlock_destroy(&eng->peers_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
}

/* See xfer.h. */
int kvfs_xfer_backend_listen_addr(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
				  char *ret_buf, size_t len)
{
	const struct kvfs_xfer_backend_ops *ops;

	if (!eng || !ret_buf || (unsigned)id >= KVFS_XFER_NBACKENDS)
		return -EINVAL;
	ops = eng->be[id].ops;
	if (!ops || !ops->listen_addr)
		return -ENOENT;
	return ops->listen_addr(eng->be[id].priv, ret_buf, len);
}

/* See xfer.h. */
int kvfs_xfer_listen_addr(struct kvfs_xfer_engine *eng, char *ret_buf, size_t len)
{
	return kvfs_xfer_backend_listen_addr(eng, KVFS_XFER_TCP, ret_buf, len);
}

/* See xfer.h. */
int kvfs_xfer_backend_status(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id)
{
	if (!eng || (unsigned)id >= KVFS_XFER_NBACKENDS)
		return -EINVAL;
	return eng->be[id].ops ? 0 : eng->be[id].status;
}

/* See xfer.h. Every backend with a mem_reg slot registers; a failure undoes the others. */
int kvfs_xfer_mem_reg(struct kvfs_xfer_engine *eng, void *buf, size_t len)
{
	int id, r = 0;

	if (!eng || !buf || !len)
		return -EINVAL;
	for (id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_reg) {
			r = ops->mem_reg(eng->be[id].priv, buf, len);
			if (r < 0)
				goto err_dereg;
		}
	}
	return 0;

err_dereg:
	while (--id >= 0) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_reg && ops->mem_dereg)
			ops->mem_dereg(eng->be[id].priv, buf);
	}
	return r;
}

/* See xfer.h. */
int kvfs_xfer_mem_dereg(struct kvfs_xfer_engine *eng, void *buf)
{
	int r = 0;

	if (!eng || !buf)
		return -EINVAL;
	for (int id = 0; id < KVFS_XFER_NBACKENDS; id++) {
		const struct kvfs_xfer_backend_ops *ops = eng->be[id].ops;

		if (ops && ops->mem_dereg) {
			int q = ops->mem_dereg(eng->be[id].priv, buf);

			if (q < 0 && !r)
				r = q;
		}
	}
	return r;
}

/* See xfer.h. Zeroes for a backend that is not built. */
void kvfs_xfer_get_counters(struct kvfs_xfer_engine *eng, enum kvfs_xfer_backend_id id,
			    struct kvfs_xfer_counters *ret)
{
	memset(ret, 0, sizeof(*ret));
	if ((unsigned)id >= KVFS_XFER_NBACKENDS)
		return;
	ret->ops = atomic_load_explicit(&eng->be[id].cnt.ops, memory_order_relaxed);
	ret->transfers = atomic_load_explicit(&eng->be[id].cnt.transfers, memory_order_relaxed);
	ret->bytes = atomic_load_explicit(&eng->be[id].cnt.bytes, memory_order_relaxed);
	ret->errors = atomic_load_explicit(&eng->be[id].cnt.errors, memory_order_relaxed);
	if (eng->be[id].ops && eng->be[id].ops->counters)
		eng->be[id].ops->counters(eng->be[id].priv, ret);
}
