/* SPDX-License-Identifier: MIT */
/*
 * meta_main.c - the kvfs-meta program: parse options, open the 3FS store (in --data) and the
 * native metadata state machine (in --data/native), start node membership and the HTTP
 * server, wait for SIGINT/SIGTERM, shut down cleanly (a clean stop also persists LRU recency).
 * Nodes registered over HTTP own no allocator here: the state machine creates one per node
 * (meta_state_node_register(s, info, NULL)). The only place in metadata/http that logs.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hf3fs.h"
#include "native.h"
#include "routes.h"
#include "server.h"
#include "state.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs-meta [options]\n"
		"  --listen ADDR:PORT     listen address (default 127.0.0.1:9300; [::1]:PORT for v6)\n"
		"  --data DIR             LMDB state directory (default ./kvfs-meta-data)\n"
		"  --token-file FILE      require 'Authorization: Bearer TOKEN' on mutating routes\n"
		"  --threads N            server threads (default: online CPUs)\n"
		"  --body-max BYTES       largest request body (default 16 MiB; larger: 413)\n"
		"  --lease-ms MS          3FS read lease and restart grace (default %d, 0 = off)\n"
		"  --reserve-ttl-ms MS    reclaim 3FS reservations older than this when full\n"
		"                         (default %d, 0 = never)\n"
		"  --map-size BYTES       LMDB map size of each store (default 4 GiB 3FS, 8 GiB native)\n"
		"  --sync                 fsync every change (survives power loss; slower)\n"
		"  --heartbeat-ms MS      heartbeat period told to nodes (default %u)\n"
		"  --node-timeout-ms MS   declare a node dead after this silence (default %u)\n"
		"  --help                 this text\n",
		KVFS_META_HF3FS_LEASE_MS, KVFS_META_HF3FS_RESERVE_TTL_MS, KVFS_META_HEARTBEAT_MS,
		KVFS_META_NODE_TIMEOUT_MS);
}

static int read_token(const char *path, char **ret)
{
	char buf[512];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	if (!buf[0] || strchr(buf, ' ') || strchr(buf, '\t'))
		return -EINVAL;
	*ret = strdup(buf);
	return *ret ? 0 : -ENOMEM;
}

static int parse_u64(const char *s, unsigned long long *ret)
{
	char *end;

	errno = 0;
	*ret = strtoull(s, &end, 0);
	return errno || *end || !*s || *s == '-' ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data", required_argument, NULL, 'd'},
		{"token-file", required_argument, NULL, 't'},
		{"threads", required_argument, NULL, 'T'},
		{"body-max", required_argument, NULL, 'b'},
		{"lease-ms", required_argument, NULL, 'L'},
		{"reserve-ttl-ms", required_argument, NULL, 'R'},
		{"map-size", required_argument, NULL, 'm'},
		{"sync", no_argument, NULL, 's'},
		{"heartbeat-ms", required_argument, NULL, 'H'},
		{"node-timeout-ms", required_argument, NULL, 'N'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct kvfs_meta_hf3fs_config hcfg = {.dir = "kvfs-meta-data",
					      .lease_ms = KVFS_META_HF3FS_LEASE_MS,
					      .reserve_ttl_ms = KVFS_META_HF3FS_RESERVE_TTL_MS};
	struct kvfs_meta_server_config scfg = {.listen = "127.0.0.1:9300"};
	struct kvfs_meta_hf3fs *h = NULL;
	struct kvfs_meta_3fs_ctx hctx = {0};
	struct kvfs_meta_server *srv = NULL;
	struct kvfs_meta_native_config ncfg = {0};
	struct kvfs_meta_native *native = NULL;
	struct meta_state_config mcfg = {0};
	struct meta_state *state = NULL;
	char *native_dir = NULL;
	const char *token_file = NULL;
	char *token = NULL;
	unsigned long long v;
	sigset_t set;
	int c, sig, r;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			scfg.listen = optarg;
			break;
		case 'd':
			hcfg.dir = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 's':
			hcfg.sync = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'T':
		case 'b':
		case 'L':
		case 'R':
		case 'm':
		case 'H':
		case 'N':
			if (parse_u64(optarg, &v) || (c != 'b' && c != 'm' && v > 0xffffffffull)) {
				fprintf(stderr, "kvfs-meta: bad number '%s'\n", optarg);
				return 2;
			}
			if (c == 'T')
				scfg.threads = (unsigned)v;
			else if (c == 'b')
				scfg.body_max = v;
			else if (c == 'L')
				hcfg.lease_ms = (uint32_t)v;
			else if (c == 'R')
				hcfg.reserve_ttl_ms = (uint32_t)v;
			else if (c == 'H')
				ncfg.heartbeat_ms = (uint32_t)v;
			else if (c == 'N')
				ncfg.node_timeout_ms = (uint32_t)v;
			else
				hcfg.map_size = v;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if (token_file) {
		r = read_token(token_file, &token);
		if (r) {
			fprintf(stderr, "kvfs-meta: token file %s: %s\n", token_file,
				r == -EINVAL ? "empty or contains spaces" : strerror(-r));
			return 1;
		}
		scfg.token = token;
	}

	/* Signals are taken synchronously below; server threads must not get them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* undocumented switch for before/after measurements of the fast 3FS parser */
	hctx.no_fast_parse = getenv("KVFS_META_NO_FAST_PARSE") != NULL;
	signal(SIGPIPE, SIG_IGN);

	r = kvfs_meta_hf3fs_open(&hcfg, &h);
	if (r) {
		fprintf(stderr, "kvfs-meta: open store %s: %s\n", hcfg.dir, strerror(-r));
		goto out;
	}
	hctx.store = h;
	scfg.routes = &kvfs_meta_3fs_routes;
	scfg.routes_ctx = &hctx;
	if (asprintf(&native_dir, "%s/native", hcfg.dir) < 0) {
		native_dir = NULL;
		r = -ENOMEM;
		goto out;
	}
	mcfg.dir = native_dir;
	mcfg.sync = hcfg.sync;
	mcfg.map_size = hcfg.map_size;
	r = meta_state_create(&mcfg, &state);
	if (r) {
		fprintf(stderr, "kvfs-meta: open store %s: %s\n", native_dir, strerror(-r));
		goto out;
	}
	ncfg.state = state;
	r = kvfs_meta_native_create(&ncfg, &native);
	if (r) {
		fprintf(stderr, "kvfs-meta: membership: %s\n", strerror(-r));
		goto out;
	}
	scfg.native_ctx = native;
	scfg.native_metrics = kvfs_meta_native_metrics;
	r = kvfs_meta_server_create(&scfg, &srv);
	if (r) {
		fprintf(stderr, "kvfs-meta: listen on %s: %s\n", scfg.listen, strerror(-r));
		goto out;
	}
	fprintf(stderr, "kvfs-meta: listening on %s (port %u), data %s%s%s\n", scfg.listen,
		kvfs_meta_server_port(srv), hcfg.dir, token ? ", token required" : "",
		hcfg.sync ? ", sync" : "");
	sigwait(&set, &sig);
	fprintf(stderr, "kvfs-meta: %s, stopping\n", strsignal(sig));
	r = 0;
out:
	kvfs_meta_server_destroy(srv);
	kvfs_meta_native_destroy(native);
	meta_state_destroy(state);
	free(native_dir);
	kvfs_meta_hf3fs_close(h);
	free(token);
	return r ? 1 : 0;
}
