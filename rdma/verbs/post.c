/* SPDX-License-Identifier: MIT */
/*
 * post.c - the `verbs` backend's data path: a request becomes chains of work requests,
 * posted in order on the peer's QP; the completion thread of each device reaps them and reports
 * the segments; a failure breaks the connection and fails what it carried.
 *
 * See verbs_i.h for the posting rules (chains, multi-SGE, one doorbell per request), the
 * completion rules (one CQ per connection, one channel and thread per device, wr_id bit 0 marks
 * a chain's last WR) and what a break fails with. A post's state says who holds it:
 *   P_QUEUED     waiting for the connection or for send queue room; maybe partly posted
 *   P_POSTED     every chain posted, waiting for completions
 *   P_REPORTING  every chain done; being reported without the lock (cancel waits for it)
 *   P_ORPHAN     ibv_post_send failed half-way: reported when the CM thread destroyed the QP
 *
 * Lock order: dev->poll_lock (the completion thread, while it polls and handles CQEs), then
 * peer->lock. ibv_post_send() runs under peer->lock (it never blocks); no lock is held across
 * kvfs_xfer_seg_done().
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "verbs_i.h"

static int wc_error(enum ibv_wc_status st, int fail_code)
{
	switch (st) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_WR_FLUSH_ERR:
		return fail_code ? fail_code : -EIO;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
		return -EINVAL; /* the peer refused the range or the rkey */
	default:
		return fail_code ? fail_code : -EIO;
	}
}

static void post_link_locked(struct peer *p, struct vpost *post)
{
	post->prev = p->posts_tail;
	post->next = NULL;
	if (p->posts_tail)
		p->posts_tail->next = post;
	else
		p->posts = post;
	p->posts_tail = post;
}

void kvfs_verbs_post_unlink_locked(struct peer *p, struct vpost *post)
{
	if (post->prev)
		post->prev->next = post->next;
	else
		p->posts = post->next;
	if (post->next)
		post->next->prev = post->prev;
	else
		p->posts_tail = post->prev;
	post->prev = post->next = NULL;
}

/* Give back staging and one-off registrations. */
static void post_release(struct vpost *post)
{
	if (post->sx)
		for (uint32_t i = 0; i < post->nsegs; i++)
			if (post->sx[i].mr) {
				ibv_dereg_mr(post->sx[i].mr);
				post->sx[i].mr = NULL;
			}
	if (post->stage_units) {
		kvfs_verbs_staging_free(post->dev, post->stage_unit, post->stage_units);
		post->stage_units = 0;
	}
}

void kvfs_verbs_post_free(struct vpost *post)
{
	post_release(post);
	free(post->chains);
	free(post->wrs);
	free(post->sges);
	free(post->sx);
	free(post);
}

static void done_add(struct done_list *dl, struct vpost *post)
{
	post->dnext = dl->head;
	dl->head = post;
}

/*
 * Every chain of @post is done: mark it for reporting. It stays on p->posts until reported, so
 * a cancel of its request waits for the report to end. Caller holds p->lock.
 */
void kvfs_verbs_post_finish_locked(struct peer *p, struct vpost *post, struct done_list *dl)
{
	for (uint32_t c = 0; c < post->nchains; c++) {
		const struct chain *ch = &post->chains[c];

		for (uint32_t s = ch->first_seg; s < ch->first_seg + ch->nsegs; s++)
			if (!post->sx[s].result)
				post->sx[s].result = ch->result;
	}
	if (post->next_chain && post->state != P_ORPHAN) /* it counted as posted */
		p->nposted--;
	post->state = P_REPORTING;
	done_add(dl, post);
}

/* Fail a post none of whose chains is posted, every segment with @err. Caller holds p->lock. */
static void post_fail_locked(struct peer *p, struct vpost *post, int err, struct done_list *dl)
{
	for (uint32_t s = 0; s < post->nsegs; s++)
		if (!post->sx[s].result)
			post->sx[s].result = err;
	post->nchains = 0;
	kvfs_verbs_post_finish_locked(p, post, dl);
}

/*
 * Report what @dl holds: copy bounced READs out, release memory, tell the engine, free. Runs
 * without any lock; a cancel waiting for one of these posts is woken after.
 */
void kvfs_verbs_done_report(struct done_list *dl)
{
	struct vpost *post, *next;

	for (post = dl->head; post; post = next) {
		struct peer *p = post->p;
		struct kvfs_xfer_req *req = post->req;
		const struct kvfs_xfer_seg *segs = req->segs;
		uint32_t n = post->nsegs;

		next = post->dnext;
		for (uint32_t s = 0; s < n; s++)
			if (!post->sx[s].result && post->sx[s].stage &&
			    segs[s].dir == KVFS_XFER_READ)
				memcpy(segs[s].buf, post->sx[s].stage, segs[s].len);
		post_release(post);
		/* After the last seg_done, req may be gone. */
		for (uint32_t s = 0; s < n; s++)
			kvfs_xfer_seg_done(req, s, post->sx[s].result);
		pthread_mutex_lock(&p->lock);
		kvfs_verbs_post_unlink_locked(p, post);
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		kvfs_verbs_post_free(post);
	}
	dl->head = NULL;
}

/*
 * Local memory for segment @s: arena or registered range in place, else staging (taken for the
 * whole post at once), else a one-off registration. Returns 0 or the segment's error.
 */
static int seg_local(struct verbs *v, struct vpost *post, uint32_t s, char **ret_stage_cursor)
{
	const struct kvfs_xfer_seg *seg = &post->req->segs[s];
	struct segx *x = &post->sx[s];
	struct dev *d = post->dev;

	if (kvfs_verbs_lkey_find(v, d, seg->buf, seg->len, &x->lkey))
		return 0;
	if (*ret_stage_cursor) {
		x->stage = *ret_stage_cursor;
		x->lkey = d->staging_mr->lkey;
		*ret_stage_cursor += (seg->len + STAGING_UNIT - 1) / STAGING_UNIT * STAGING_UNIT;
		if (seg->dir == KVFS_XFER_WRITE)
			memcpy(x->stage, seg->buf, seg->len);
		return 0;
	}
	x->mr = ibv_reg_mr(d->pd, seg->buf, seg->len,
			   seg->dir == KVFS_XFER_READ ? IBV_ACCESS_LOCAL_WRITE : 0);
	if (!x->mr)
		return errno ? -errno : -ENOMEM;
	x->lkey = x->mr->lkey;
	return 0;
}

/*
 * Turn @post into chains of WRs for the current connection. Caller holds p->lock, p->state is
 * C_UP. Segments the peer's arena cannot hold fail with -EINVAL here, without a WR. Returns 0
 * or an error for the whole post.
 */
static int post_build_locked(struct peer *p, struct vpost *post)
{
	struct verbs *v = p->v;
	const struct kvfs_xfer_req *req = post->req;
	struct dev *d = p->dev;
	uint32_t n = post->nsegs, nwr = 0, nsge = 0, nchains = 0, chunks = 0;
	size_t bounce = 0;
	char *cursor = NULL;
	struct ibv_send_wr *wr = NULL;

	if (req->incarnation && req->incarnation != p->rinc)
		return -ESTALE;
	post->dev = d;
	for (uint32_t s = 0; s < n; s++) {
		const struct kvfs_xfer_seg *seg = &req->segs[s];
		uint32_t lk;

		if (seg->remote_off >= p->rlen || seg->len > p->rlen - seg->remote_off) {
			post->sx[s].result = -EINVAL;
			continue;
		}
		/* pieces: split by max_msg, plus one where it continues a WR begun before */
		chunks += (uint32_t)((seg->len + d->max_msg - 1) / d->max_msg) + 1;
		if (!kvfs_verbs_lkey_find(v, d, seg->buf, seg->len, &lk))
			bounce += (seg->len + STAGING_UNIT - 1) / STAGING_UNIT;
	}
	if (bounce) {
		long u = kvfs_verbs_staging_alloc(d, bounce);

		if (u >= 0) {
			post->stage_unit = (size_t)u;
			post->stage_units = bounce;
			cursor = d->staging + (size_t)u * STAGING_UNIT;
		}
	}
	post->chains = calloc(n ? n : 1, sizeof(*post->chains));
	post->wrs = calloc(chunks ? chunks : 1, sizeof(*post->wrs));
	post->sges = calloc(chunks ? chunks : 1, sizeof(*post->sges));
	if (!post->chains || !post->wrs || !post->sges)
		return -ENOMEM;
	post->built = true;

	for (uint32_t s = 0; s < n; s++) {
		const struct kvfs_xfer_seg *seg = &req->segs[s];
		struct chain *ch = nchains ? &post->chains[nchains - 1] : NULL;
		uint64_t left = seg->len, roff = seg->remote_off;
		char *laddr;
		uint32_t need;
		int r;

		if (post->sx[s].result)
			continue;
		r = seg_local(v, post, s, &cursor);
		if (r < 0) {
			post->sx[s].result = r;
			continue;
		}
		laddr = post->sx[s].stage ? post->sx[s].stage : seg->buf;
		need = (uint32_t)((seg->len + d->max_msg - 1) / d->max_msg) + 1;
		/* A chain ends at a segment boundary: per op always, else when the SQ is full. */
		if (!ch || v->per_op || ch->nwr + need > SQ_DEPTH) {
			ch = &post->chains[nchains++];
			*ch = (struct chain){.post = post, .first_wr = nwr, .first_seg = s};
			wr = NULL;
		}
		ch->nsegs = s + 1 - ch->first_seg;
		while (left) {
			uint32_t max_sge = seg->dir == KVFS_XFER_READ ? d->max_sge_rd : d->max_sge;
			uint64_t chunk;
			bool append = false;
			struct ibv_sge *last;
			uint64_t wlen = 0;

			/* The current WR's length and whether this piece continues it remotely. */
			if (wr) {
				for (int i = 0; i < wr->num_sge; i++)
					wlen += wr->sg_list[i].length;
				append = !v->per_op &&
					 wr->opcode == (seg->dir == KVFS_XFER_READ
								? IBV_WR_RDMA_READ
								: IBV_WR_RDMA_WRITE) &&
					 wr->wr.rdma.remote_addr + wlen == p->raddr + roff &&
					 wlen < d->max_msg;
			}
			last = append ? &wr->sg_list[wr->num_sge - 1] : NULL;
			/* A piece contiguous with the last SGE only lengthens it. */
			if (append &&
			    !(last->lkey == post->sx[s].lkey &&
			      last->addr + last->length == (uint64_t)(uintptr_t)laddr) &&
			    (uint32_t)wr->num_sge >= max_sge)
				append = false;
			if (!append) {
				wr = &post->wrs[nwr++];
				*wr = (struct ibv_send_wr){
					.wr_id = (uint64_t)(uintptr_t)ch,
					.sg_list = &post->sges[nsge],
					.num_sge = 0,
					.opcode = seg->dir == KVFS_XFER_READ ? IBV_WR_RDMA_READ
									     : IBV_WR_RDMA_WRITE,
					.wr.rdma = {.remote_addr = p->raddr + roff,
						    .rkey = p->rkey}};
				if (nwr > ch->first_wr + 1)
					post->wrs[nwr - 2].next = wr;
				ch->nwr++;
				wlen = 0;
				last = NULL;
			}
			chunk = left < d->max_msg - wlen ? left : d->max_msg - wlen;
			if (last && last->lkey == post->sx[s].lkey &&
			    last->addr + last->length == (uint64_t)(uintptr_t)laddr) {
				last->length += (uint32_t)chunk;
			} else {
				post->sges[nsge++] =
					(struct ibv_sge){.addr = (uint64_t)(uintptr_t)laddr,
							 .length = (uint32_t)chunk,
							 .lkey = post->sx[s].lkey};
				wr->num_sge++;
			}
			laddr += chunk;
			roff += chunk;
			left -= chunk;
		}
	}
	/* Close each chain: the last WR is signalled and carries the "last" bit. */
	for (uint32_t c = 0; c < nchains; c++) {
		struct chain *ch = &post->chains[c];
		struct ibv_send_wr *lw = &post->wrs[ch->first_wr + ch->nwr - 1];

		lw->next = NULL;
		lw->send_flags = IBV_SEND_SIGNALED;
		lw->wr_id |= 1;
	}
	post->nchains = nchains;
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections: posting, breaking */

/*
 * Post what the send queue has room for, in order. Caller holds p->lock. A post that cannot be
 * built fails whole; one whose segments all failed their checks is done without a WR.
 */
void kvfs_verbs_pump_locked(struct peer *p, struct done_list *dl)
{
	struct verbs *v = p->v;
	struct vpost *post, *next;

	if (p->state != C_UP)
		return;
	for (post = p->posts; post; post = next) {
		next = post->next;
		if (post->state != P_QUEUED)
			continue;
		if (!post->built) {
			int r = post_build_locked(p, post);

			if (r < 0) {
				post_release(post);
				post_fail_locked(p, post, r, dl);
				continue;
			}
			if (!post->nchains) {
				kvfs_verbs_post_finish_locked(p, post, dl);
				continue;
			}
		}
		while (post->next_chain < post->nchains) {
			struct chain *ch = &post->chains[post->next_chain];
			struct ibv_send_wr *bad = NULL;
			int r;

			if (ch->nwr > p->sq_free)
				return; /* in order: later posts wait too */
			r = -ibv_post_send(p->id->qp, &post->wrs[ch->first_wr], &bad);
			atomic_fetch_add_explicit(&v->doorbells, 1, memory_order_relaxed);
			if (r < 0) {
				/*
				 * Nothing or part of the chain went out, without its signalled WR:
				 * its memory stays in use until the QP is gone. Break; the CM
				 * thread reports it after destroying the QP.
				 */
				uint32_t sent =
					(uint32_t)(bad ? bad - &post->wrs[ch->first_wr] : 0);

				atomic_fetch_add_explicit(&v->wrs, sent, memory_order_relaxed);
				for (uint32_t c = post->next_chain; c < post->nchains; c++)
					post->chains[c].result = r;
				if (post->next_chain) /* orphans do not hold the teardown back */
					p->nposted--;
				post->next_chain = post->nchains;
				post->state = P_ORPHAN;
				/* breaking fails the posts after this one */
				p->fail_code = -EIO;
				p->state = C_BROKEN;
				ibv_modify_qp(p->id->qp,
					      &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
					      IBV_QP_STATE);
				for (struct vpost *q = next, *qn; q; q = qn) {
					qn = q->next;
					if (q->state == P_QUEUED)
						post_fail_locked(p, q, -EIO, dl);
				}
				kvfs_verbs_cm_kick(v);
				return;
			}
			atomic_fetch_add_explicit(&v->wrs, ch->nwr, memory_order_relaxed);
			p->sq_free -= ch->nwr;
			if (!post->next_chain)
				p->nposted++;
			post->next_chain++;
		}
		post->state = P_POSTED;
	}
}

/*
 * Break the connection with @err: QP to error (posted chains flush with @err), queued posts
 * fail now (a partly posted one: its unposted chains), the CM thread tears it down once
 * nothing is posted. Caller holds p->lock.
 */
void kvfs_verbs_break_locked(struct peer *p, int err, struct done_list *dl)
{
	struct vpost *post, *next;

	if (p->state == C_UP || p->state == C_CONNECTING) {
		p->fail_code = err;
		if (p->state == C_UP && p->id && p->id->qp)
			ibv_modify_qp(p->id->qp, &(struct ibv_qp_attr){.qp_state = IBV_QPS_ERR},
				      IBV_QP_STATE);
		p->state = C_BROKEN;
		kvfs_verbs_cm_kick(p->v);
	}
	for (post = p->posts; post; post = next) {
		next = post->next;
		if (post->state != P_QUEUED)
			continue;
		if (!post->next_chain) {
			post_fail_locked(p, post, err, dl);
			continue;
		}
		for (uint32_t c = post->next_chain; c < post->nchains; c++) {
			post->chains[c].result = err;
			post->chains[c].done = true;
			post->chains_done++;
		}
		post->next_chain = post->nchains;
		post->state = P_POSTED;
		if (post->chains_done == post->nchains)
			kvfs_verbs_post_finish_locked(p, post, dl);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* Completion thread (one per device) */

static void wc_handle(struct verbs *v, const struct ibv_wc *wc, struct done_list *dl)
{
	struct chain *ch = (struct chain *)(uintptr_t)(wc->wr_id & ~(uint64_t)1);
	bool last = wc->wr_id & 1;
	struct vpost *post = ch->post;
	struct peer *p = post->p;

	pthread_mutex_lock(&p->lock);
	if (wc->status != IBV_WC_SUCCESS) {
		int err = wc_error(wc->status, p->fail_code);

		if (!ch->result)
			ch->result = err;
		if (p->state == C_UP)
			kvfs_verbs_break_locked(p, err == -EINVAL ? -EIO : err, dl);
	}
	if (last && !ch->done) {
		ch->done = true;
		p->sq_free += ch->nwr;
		if (++post->chains_done == post->nchains && post->state == P_POSTED)
			kvfs_verbs_post_finish_locked(p, post, dl);
		kvfs_verbs_pump_locked(p, dl);
		if (p->state == C_BROKEN && !p->nposted)
			kvfs_verbs_cm_kick(v);
	}
	pthread_mutex_unlock(&p->lock);
}

#define WC_BATCH 32

void *kvfs_verbs_comp_main(void *arg)
{
	struct dev *d = arg;
	struct verbs *v = d->v;
	struct pollfd pfd[2] = {{.fd = d->chan->fd, .events = POLLIN},
				{.fd = d->stop_efd, .events = POLLIN}};
	struct ibv_wc *wcs = malloc((SQ_DEPTH + WC_BATCH) * sizeof(*wcs));

	if (!wcs)
		return NULL;
	for (;;) {
		struct done_list dl = {0};
		struct ibv_cq *cq;
		void *cq_ctx;
		int n = 0, k;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		/* Under poll_lock: the CM thread destroys CQs only when we are not in one. */
		pthread_mutex_lock(&d->poll_lock);
		if (ibv_get_cq_event(d->chan, &cq, &cq_ctx) < 0) {
			pthread_mutex_unlock(&d->poll_lock);
			continue;
		}
		ibv_ack_cq_events(cq, 1);
		if (ibv_req_notify_cq(cq, 0) == 0) {
			/* Drain: re-armed before the last poll, so no CQE slips by. */
			while (n < SQ_DEPTH && (k = ibv_poll_cq(cq, WC_BATCH, wcs + n)) > 0)
				n += k;
		}
		atomic_fetch_add_explicit(&v->completions, (uint64_t)n, memory_order_relaxed);
		/*
		 * Still under poll_lock: a teardown that destroys this CQ (and frees orphaned
		 * chains) waits until no polled CQE of it is left unhandled.
		 */
		for (int i = 0; i < n; i++)
			wc_handle(v, &wcs[i], &dl);
		pthread_mutex_unlock(&d->poll_lock);
		kvfs_verbs_done_report(&dl);
	}
	free(wcs);
	return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Ops */

int kvfs_verbs_post(void *priv, struct kvfs_xfer_req *req)
{
	struct verbs *v = priv;
	struct peer *p = req->bpeer;
	struct done_list dl = {0};
	struct vpost *post;

	post = calloc(1, sizeof(*post));
	if (!post)
		return -ENOMEM;
	post->sx = calloc(req->nsegs, sizeof(*post->sx));
	if (!post->sx) {
		free(post);
		return -ENOMEM;
	}
	post->p = p;
	post->req = req;
	post->nsegs = req->nsegs;
	post->state = P_QUEUED;

	pthread_mutex_lock(&p->lock);
	if (p->down) {
		pthread_mutex_unlock(&p->lock);
		kvfs_verbs_post_free(post);
		return -ESTALE;
	}
	post_link_locked(p, post);
	if (p->state == C_UP)
		kvfs_verbs_pump_locked(p, &dl);
	else if (p->state == C_DOWN)
		kvfs_verbs_cm_kick(v);
	pthread_mutex_unlock(&p->lock);
	kvfs_verbs_done_report(&dl);
	return 0;
}

/* See xfer_i.h: when this returns, nothing of @req is touched or reported again. */
void kvfs_verbs_cancel(void *priv, struct kvfs_xfer_req *req)
{
	struct peer *p = req->bpeer;
	struct done_list dl = {0};
	struct vpost *post;

	pthread_mutex_lock(&p->lock);
again:
	for (post = p->posts; post; post = post->next) {
		if (post->req != req)
			continue;
		if (post->state == P_QUEUED && !post->next_chain) {
			kvfs_verbs_post_unlink_locked(p, post);
			kvfs_verbs_post_free(post);
			goto again;
		}
		if (post->state == P_QUEUED || post->state == P_POSTED) {
			/* On the wire past its deadline: the peer is stuck; flush everything. */
			kvfs_verbs_break_locked(p, -ETIMEDOUT, &dl);
			pthread_mutex_unlock(&p->lock);
			kvfs_verbs_done_report(&dl);
			pthread_mutex_lock(&p->lock);
			goto again;
		}
		/* P_REPORTING, P_ORPHAN: wait until it is reported */
		pthread_cond_wait(&p->cond, &p->lock);
		goto again;
	}
	pthread_mutex_unlock(&p->lock);
}
