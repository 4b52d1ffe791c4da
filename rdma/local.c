/* SPDX-License-Identifier: MIT */
/*
 * local.c - the `local` backend: this node's own arena, by memcpy.
 *
 * It serves ops whose peer is this node. check_op turns away offsets outside the arena
 * (-EINVAL) and ops naming another incarnation of this node (-ESTALE: the offset belongs to
 * pages of a previous life of this daemon, whose contents are gone). post copies every segment
 * inline and reports it before returning, so a batch of local ops is done when submit returns.
 * There is nothing to cancel.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "xfer_i.h"

struct local {
	struct kvfs_arena *arena; /* borrowed from the config; NULL: no arena, all -EINVAL */
	char *base;		  /* the arena's memory */
	uint64_t size;		  /* its bytes */
	uint32_t incarnation;	  /* this node's */
};

static int local_init(struct kvfs_xfer_engine *eng, const struct kvfs_xfer_config *cfg,
		      void **ret_priv)
{
	struct local *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->arena = cfg->arena;
	if (l->arena) {
		l->base = kvfs_arena_base(l->arena);
		l->size = kvfs_arena_size(l->arena);
	}
	l->incarnation = cfg->self_incarnation;
	*ret_priv = l;
	return 0;
}

static void local_fini(void *priv)
{
	free(priv);
}

static int local_check_op(void *priv, void *bpeer, const struct kvfs_xfer_op *op)
{
	const struct local *l = priv;

	if (op->incarnation && op->incarnation != l->incarnation)
		return -ESTALE;
	if (op->remote_off >= l->size || op->len > l->size - op->remote_off)
		return -EINVAL;
	return 0;
}

static int local_post(void *priv, struct kvfs_xfer_req *req)
{
	const struct local *l = priv;
	uint32_t nsegs = req->nsegs; /* req may be gone after its last kvfs_xfer_seg_done() */
	struct kvfs_xfer_seg *segs = req->segs;

	for (uint32_t i = 0; i < nsegs; i++) {
		const struct kvfs_xfer_seg *s = &segs[i];
		char *remote = l->base + s->remote_off;

		if (s->dir == KVFS_XFER_READ)
			memcpy(s->buf, remote, s->len);
		else
			memcpy(remote, s->buf, s->len);
		kvfs_xfer_seg_done(req, i, 0);
	}
	return 0;
}

const struct kvfs_xfer_backend_ops kvfs_xfer_local_ops = {
	.name = "local",
	.max_transfer = 0,
	.init = local_init,
	.fini = local_fini,
	.check_op = local_check_op,
	.post = local_post,
	.cancel = NULL,
};
