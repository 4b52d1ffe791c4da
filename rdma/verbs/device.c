/* SPDX-License-Identifier: MIT */
/*
 * device.c - the `verbs` backend's devices and memory: for every RDMA device this engine
 * uses, its PD, the arena's MR (registered once, REMOTE_READ | REMOTE_WRITE | LOCAL_WRITE), a
 * registered staging area for buffers that are not registered (first fit over 4 KiB units),
 * the completion channel and its thread (post.c); and the ranges the caller registered with
 * kvfs_xfer_mem_reg(), registered on every device.
 *
 * A device is set up on first use (by the CM thread when a connection resolves to it, or at
 * init for a listener bound to its address) and lives until fini. There is deliberately no
 * implicit MR cache: see verbs_i.h.
 *
 * Lock order: v->lock (devices, ranges), then dev->staging_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "verbs_i.h"

/* Staging: first fit over units; caller holds nothing. Returns the first unit or -ENOSPC. */
long kvfs_verbs_staging_alloc(struct dev *d, size_t units)
{
	size_t run = 0;
	long r = -ENOSPC;

	if (!units || units > STAGING_UNITS)
		return -ENOSPC;
	pthread_mutex_lock(&d->staging_lock);
	for (size_t i = 0; i < STAGING_UNITS; i++) {
		run = d->staging_used[i] ? 0 : run + 1;
		if (run == units) {
			memset(&d->staging_used[i + 1 - units], 1, units);
			r = (long)(i + 1 - units);
			break;
		}
	}
	pthread_mutex_unlock(&d->staging_lock);
	return r;
}

void kvfs_verbs_staging_free(struct dev *d, size_t first, size_t units)
{
	pthread_mutex_lock(&d->staging_lock);
	memset(&d->staging_used[first], 0, units);
	pthread_mutex_unlock(&d->staging_lock);
}

/* Tear down a device; accepts a half-built one (NULL members). No QP may use it any more. */
void kvfs_verbs_dev_destroy(struct dev *d)
{
	struct verbs *v;

	if (!d)
		return;
	v = d->v;
	if (d->thread_started) {
		uint64_t one = 1;

		if (write(d->stop_efd, &one, sizeof(one)) < 0) {
			/* cannot fail for a fresh eventfd counter */
		}
		pthread_join(d->thread, NULL);
	}
	if (d->stop_efd >= 0)
		close(d->stop_efd);
	for (struct range *rg = v->ranges; rg; rg = rg->next)
		if (rg->mr[d->idx]) {
			ibv_dereg_mr(rg->mr[d->idx]);
			rg->mr[d->idx] = NULL;
		}
	if (d->passive_cq)
		ibv_destroy_cq(d->passive_cq);
	if (d->chan)
		ibv_destroy_comp_channel(d->chan);
	if (d->staging_mr)
		ibv_dereg_mr(d->staging_mr);
	free(d->staging);
	if (d->arena_mr)
		ibv_dereg_mr(d->arena_mr);
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	pthread_mutex_destroy(&d->poll_lock);
	pthread_mutex_destroy(&d->staging_lock);
	free(d);
}

/*
 * The device behind @ctx, set up on first use: PD, the arena's MR, the staging area, the
 * registered ranges, a completion channel and its thread. Caller holds v->lock for writing.
 */
static int dev_get_locked(struct verbs *v, struct ibv_context *ctx, struct dev **ret_dev)
{
	struct ibv_device_attr da;
	struct ibv_port_attr pa;
	struct dev *d;
	int r;

	for (unsigned i = 0; i < v->ndevs; i++)
		if (v->devs[i]->ctx == ctx) {
			*ret_dev = v->devs[i];
			return 0;
		}
	if (v->ndevs == MAX_DEVS)
		return -ENOSPC;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->v = v;
	d->idx = v->ndevs;
	d->ctx = ctx;
	d->stop_efd = -1;
	pthread_mutex_init(&d->staging_lock, NULL);
	pthread_mutex_init(&d->poll_lock, NULL);

	r = -ibv_query_device(ctx, &da);
	if (r < 0)
		goto err_destroy;
	r = -ibv_query_port(ctx, 1, &pa);
	if (r < 0)
		goto err_destroy;
	d->max_sge = (uint32_t)(da.max_sge < MAX_SGE ? da.max_sge : MAX_SGE);
	d->max_sge_rd = da.max_sge_rd > 0 && (uint32_t)da.max_sge_rd < d->max_sge
				? (uint32_t)da.max_sge_rd
				: d->max_sge;
	d->max_msg = pa.max_msg_sz && pa.max_msg_sz < (1u << 30) ? pa.max_msg_sz : (1u << 30);
	d->rd_atomic =
		(uint32_t)(da.max_qp_init_rd_atom < RD_ATOMIC ? da.max_qp_init_rd_atom : RD_ATOMIC);
	if (d->rd_atomic > (uint32_t)da.max_qp_rd_atom)
		d->rd_atomic = (uint32_t)da.max_qp_rd_atom;
	if (!d->max_sge || !d->rd_atomic) {
		r = -EOPNOTSUPP;
		goto err_destroy;
	}

	d->pd = ibv_alloc_pd(ctx);
	if (!d->pd) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	if (v->arena_base && v->arena_size) {
		d->arena_mr = ibv_reg_mr(d->pd, v->arena_base, v->arena_size,
					 IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ |
						 IBV_ACCESS_REMOTE_WRITE);
		if (!d->arena_mr) {
			r = errno ? -errno : -ENOMEM;
			goto err_destroy;
		}
	}
	d->staging = aligned_alloc(STAGING_UNIT, STAGING_SIZE);
	if (!d->staging) {
		r = -ENOMEM;
		goto err_destroy;
	}
	d->staging_mr = ibv_reg_mr(d->pd, d->staging, STAGING_SIZE, IBV_ACCESS_LOCAL_WRITE);
	if (!d->staging_mr) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	for (struct range *rg = v->ranges; rg; rg = rg->next) {
		rg->mr[d->idx] = ibv_reg_mr(d->pd, rg->addr, rg->len, IBV_ACCESS_LOCAL_WRITE);
		if (!rg->mr[d->idx]) {
			r = errno ? -errno : -ENOMEM;
			goto err_destroy;
		}
	}
	d->chan = ibv_create_comp_channel(ctx);
	if (!d->chan) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	if (fcntl(d->chan->fd, F_SETFL, fcntl(d->chan->fd, F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		goto err_destroy;
	}
	d->passive_cq = ibv_create_cq(ctx, 4, NULL, NULL, 0);
	if (!d->passive_cq) {
		r = errno ? -errno : -ENOMEM;
		goto err_destroy;
	}
	d->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->stop_efd < 0) {
		r = -errno;
		goto err_destroy;
	}
	r = -pthread_create(&d->thread, NULL, kvfs_verbs_comp_main, d);
	if (r < 0)
		goto err_destroy;
	d->thread_started = true;
	v->devs[v->ndevs++] = d;
	*ret_dev = d;
	return 0;

err_destroy:
	/* dev_destroy releases in reverse order whatever was built (NULL members are skipped) */
	kvfs_verbs_dev_destroy(d);
	return r;
}

struct dev *kvfs_verbs_dev_get(struct verbs *v, struct ibv_context *ctx, int *ret_err)
{
	struct dev *d = NULL;

	pthread_rwlock_wrlock(&v->lock);
	*ret_err = dev_get_locked(v, ctx, &d);
	pthread_rwlock_unlock(&v->lock);
	return d;
}

/* lkey of a local range in the arena or a registered range; false: bounce it. */
bool kvfs_verbs_lkey_find(struct verbs *v, struct dev *d, const char *buf, uint64_t len,
			  uint32_t *ret_lkey)
{
	bool found = false;

	if (d->arena_mr && buf >= v->arena_base && len <= v->arena_size &&
	    (uint64_t)(buf - v->arena_base) <= v->arena_size - len) {
		*ret_lkey = d->arena_mr->lkey;
		return true;
	}
	pthread_rwlock_rdlock(&v->lock);
	for (struct range *rg = v->ranges; rg; rg = rg->next)
		if (rg->mr[d->idx] && buf >= rg->addr && len <= rg->len &&
		    (size_t)(buf - rg->addr) <= rg->len - len) {
			*ret_lkey = rg->mr[d->idx]->lkey;
			found = true;
			break;
		}
	pthread_rwlock_unlock(&v->lock);
	return found;
}

int kvfs_verbs_mem_reg(void *priv, void *buf, size_t len)
{
	struct verbs *v = priv;
	struct range *rg;
	unsigned i;
	int r = 0;

	rg = calloc(1, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	rg->addr = buf;
	rg->len = len;
	pthread_rwlock_wrlock(&v->lock);
	for (struct range *o = v->ranges; o; o = o->next)
		if (o->addr == (char *)buf) {
			r = -EEXIST;
			goto err_unlock;
		}
	for (i = 0; i < v->ndevs; i++) {
		rg->mr[i] = ibv_reg_mr(v->devs[i]->pd, buf, len, IBV_ACCESS_LOCAL_WRITE);
		if (!rg->mr[i]) {
			r = errno ? -errno : -ENOMEM;
			goto err_dereg;
		}
	}
	rg->next = v->ranges;
	v->ranges = rg;
	pthread_rwlock_unlock(&v->lock);
	return 0;

err_dereg:
	while (i-- > 0)
		ibv_dereg_mr(rg->mr[i]);
err_unlock:
	pthread_rwlock_unlock(&v->lock);
	free(rg);
	return r;
}

int kvfs_verbs_mem_dereg(void *priv, void *buf)
{
	struct verbs *v = priv;
	struct range *rg = NULL;

	pthread_rwlock_wrlock(&v->lock);
	for (struct range **pp = &v->ranges; *pp; pp = &(*pp)->next)
		if ((*pp)->addr == (char *)buf) {
			rg = *pp;
			*pp = rg->next;
			break;
		}
	pthread_rwlock_unlock(&v->lock);
	if (!rg)
		return -ENOENT;
	for (unsigned i = 0; i < MAX_DEVS; i++)
		if (rg->mr[i])
			ibv_dereg_mr(rg->mr[i]);
	free(rg);
	return 0;
}
