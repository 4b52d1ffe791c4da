/* SPDX-License-Identifier: MIT */
/*
 * main_i.h - what the daemon's start-up shares: the command line (options.c), cluster
 * membership (peers.c) and main.c, which builds and tears down everything in order.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fs_i.h"

struct fs_pool_opt {
	struct kvfs_pool_attr attr;
	struct fs_pool_opt *next;
};

struct fs_options {
	const char *mountpoint;
	const char *data_dir;
	uint64_t dram;
	bool foreground;
	bool debug;
	bool hugepages;
	bool prefault;
	bool sync;
	double timeout;
	char *fuse_opts;
	struct fs_pool_opt *pools;
	unsigned threads;
	enum fs_cache_mode cache;
	bool timeout_set;
	const char *meta_url;	  /* --meta: join a cluster through kvfs-meta */
	const char *token_file;	  /* --token-file */
	const char *node_addr;	  /* --node-addr: our data address, advertised to peers */
	const char *rdma_addr;	  /* --rdma-addr: an RDMA device address for the verbs backend */
	bool force_tcp;		  /* --transport tcp */
	bool spread;		  /* --placement spread */
	const char *cache_remote; /* --cache-remote POOL[,POOL...] */
	uint64_t cache_remote_size;
};

/* options.c */
void fs_usage(FILE *f);
/* Parse the command line into @o (which owns what it allocates: pools, fuse_opts). Returns 0,
 * or a negative errno after printing why; --help and --version print and exit(0) here. */
int fs_parse_args(int argc, char **argv, struct fs_options *o);
/* The data directory for a mount point when --data is not given (malloc'd), or NULL. */
char *fs_default_data_dir(const char *mnt);

/* peers.c */
int fs_join_cluster(struct kvfs_fs *fs, const struct fs_options *o, const char *data_dir);
void fs_on_peers_changed(void *ctx, const struct kvfs_node_info *alive, size_t n);
int fs_refresh_peers(struct kvfs_fs *fs);
