/* SPDX-License-Identifier: MIT */
/*
 * peers.c - cluster membership of a node (--meta): join through kvfs-meta (the node id kept in
 * DATA/node-id, a new incarnation each start), follow the set of alive peers the heartbeat
 * reports, and point the transfer engine at them (verbs where both ends have it, TCP
 * otherwise).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "main_i.h"
#include "meta_http.h"
#include "util.h"
#include "xfer.h"

/*
 * A node advertises "HOST:PORT" (TCP) or "HOST:PORT,rdma=IP:PORT" (TCP and verbs; the metadata
 * service keeps the string opaque). Verbs is used when both ends have it and --transport tcp
 * was not given; anything that fails falls back to TCP.
 */
static void peer_connect(struct kvfs_fs *fs, struct kvfs_xfer_engine *eng,
			 const struct kvfs_node_info *n)
{
	char tcp[sizeof(n->addr)], *rdma;

	snprintf(tcp, sizeof(tcp), "%s", n->addr);
	rdma = strstr(tcp, ",rdma=");
	if (rdma) {
		*rdma = 0;
		rdma += strlen(",rdma=");
		if (fs->use_verbs &&
		    kvfs_xfer_peer_set(eng, n->id, n->incarnation, rdma, KVFS_XFER_VERBS) == 0)
			return;
	}
	kvfs_xfer_peer_set(eng, n->id, n->incarnation, tcp, KVFS_XFER_TCP);
}

/*
 * --meta: the set of alive nodes changed. Point the engine at every live peer (a restarted peer
 * comes back with a new incarnation and replaces its entry) and fail everything in flight to
 * peers that are gone. Runs on the client's heartbeat thread.
 */
void fs_on_peers_changed(void *ctx, const struct kvfs_node_info *alive, size_t n)
{
	struct kvfs_fs *fs = ctx;
	struct kvfs_xfer_engine *eng = atomic_load(&fs->xfer_ready) ? fs->xfer : NULL;

	if (!eng)
		return; /* the engine starts later and loads the list itself */
	pthread_mutex_lock(&fs->peers_lock);
	for (size_t i = 0; i < fs->npeers; i++) {
		bool still = false;

		for (size_t j = 0; j < n; j++)
			if (alive[j].id == fs->peers[i])
				still = true;
		if (!still)
			kvfs_xfer_peer_down(eng, fs->peers[i]);
	}
	fs->npeers = 0;
	for (size_t j = 0; j < n && fs->npeers < KVFS_FS_MAX_PEERS; j++) {
		if (alive[j].id == fs->node || !alive[j].addr[0])
			continue;
		peer_connect(fs, eng, &alive[j]);
		fs->peers[fs->npeers++] = alive[j].id;
	}
	pthread_mutex_unlock(&fs->peers_lock);
}

int fs_refresh_peers(struct kvfs_fs *fs)
{
	struct kvfs_node_info *nodes = NULL;
	size_t n = 0;
	int r = kvfs_meta_node_list(fs->meta, true, &nodes, &n);

	if (r == 0) {
		fs_on_peers_changed(fs, nodes, n);
		free(nodes);
	}
	return r;
}

/* --meta: the service made us register again (declared dead, or it lost our incarnation). */
static void on_reregistered(void *ctx, const struct kvfs_node_info *info)
{
	struct kvfs_fs *fs = ctx;

	/* every page of the old incarnation is gone for the cluster: from now on our own old
	 * pages compare as a stale incarnation and their reads fail with EIO */
	fs->incarnation = info->incarnation;
	fprintf(stderr, "kvfs: re-registered as node %u incarnation %u\n", info->id,
		info->incarnation);
}

static int read_token(const char *path, char **ret)
{
	char buf[4096];
	size_t n;
	FILE *f = fopen(path, "re");

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = 0;
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

/*
 * Join the cluster at o->meta_url: create the HTTP metadata client, register this node (with
 * the id remembered in DATA/node-id, so a restarted node comes back as itself with a new
 * incarnation and its old pages are never trusted) and let the client heartbeat.
 */
int fs_join_cluster(struct kvfs_fs *fs, const struct fs_options *o, const char *data_dir)
{
	struct kvfs_meta_http_config hc = {0};
	struct kvfs_node_info info = {0};
	char idpath[PATH_MAX], *token = NULL;
	FILE *f;
	int r;

	if (o->token_file) {
		r = read_token(o->token_file, &token);
		if (r < 0) {
			fprintf(stderr, "kvfs: --token-file %s: %s\n", o->token_file, strerror(-r));
			return r;
		}
	}
	hc.url = o->meta_url;
	hc.token = token;
	hc.heartbeat = true;
	hc.reregistered = on_reregistered;
	hc.peers_changed = fs_on_peers_changed;
	hc.ctx = fs;
	r = kvfs_meta_http_create(&hc, &fs->meta);
	fs->token = token; /* the engine authenticates peers with it too */
	if (r < 0) {
		fprintf(stderr, "kvfs: --meta %s: %s\n", o->meta_url, strerror(-r));
		return r;
	}
	snprintf(idpath, sizeof(idpath), "%s/node-id", data_dir);
	f = fopen(idpath, "re");
	if (f) {
		unsigned id = 0;

		if (fscanf(f, "%u", &id) == 1)
			info.id = id;
		fclose(f);
	}
	info.arena_size = fs->arena_size;
	if (o->node_addr && o->rdma_addr && !o->force_tcp)
		r = snprintf(info.addr, sizeof(info.addr), "%s,rdma=%s", o->node_addr,
			     o->rdma_addr);
	else
		r = snprintf(info.addr, sizeof(info.addr), "%s", o->node_addr ? o->node_addr : "");
	if (r < 0 || (size_t)r >= sizeof(info.addr)) {
		fprintf(stderr, "kvfs: --node-addr/--rdma-addr: too long\n");
		r = -EINVAL;
		goto err_destroy_meta;
	}
	r = fs->meta->ops->node_register(fs->meta, &info);
	if (r < 0) {
		fprintf(stderr, "kvfs: cannot register with kvfs-meta at %s: %s\n", o->meta_url,
			strerror(-r));
		goto err_destroy_meta;
	}
	f = fopen(idpath, "we");
	if (!f || fprintf(f, "%u\n", info.id) < 0 || fclose(f) != 0) {
		r = -errno;
		fprintf(stderr, "kvfs: cannot remember the node id in %s: %s\n", idpath,
			strerror(-r));
		goto err_destroy_meta;
	}
	fs->node = info.id;
	fs->incarnation = info.incarnation;
	return 0;

err_destroy_meta:
	kvfs_meta_destroy(fs->meta);
	fs->meta = NULL;
	return r;
}
