/* SPDX-License-Identifier: MIT */
/*
 * options.c - the daemon's command line: every option, its parsing and checks, the usage text,
 * and where the metadata lives when --data is not given.
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
#include "pool.h"
#include "util.h"
#include "xfer.h"

void fs_usage(FILE *f)
{
	fprintf(f,
		"usage: kvfs [OPTIONS] MOUNTPOINT\n"
		"\n"
		"Mount a kvfs page pool at MOUNTPOINT, served from this node's DRAM.\n"
		"\n"
		"  -f, --foreground        stay in the foreground\n"
		"  -d, --debug             FUSE debug output (implies -f)\n"
		"      --dram SIZE         DRAM arena size (default 1G; K/M/G/T suffixes)\n"
		"      --data DIR          metadata store directory (default /var/lib/kvfs/<mount>)\n"
		"      --pool SPEC         make sure a pool exists: NAME[,page-size=SIZE]\n"
		"                          [,capacity=SIZE][,evict=lru|none][,max-file-size=SIZE]\n"
		"                          (repeatable; options apply when the pool is created)\n"
		"      --hugepages         back the arena with huge pages\n"
		"      --prefault          fault the arena in at start\n"
		"      --sync              fsync the metadata store on every change\n"
		"      --timeout SECS      kernel entry/attribute cache timeout (default 3600)\n"
		"      --threads N         maximum FUSE worker threads (default 16)\n"
		"      --cache MODE        page cache for read-only opens: auto (default: first read\n"
		"                          direct, then pushed into the page cache), page, direct\n"
		"      --meta URL          join a cluster: metadata from kvfs-meta at URL\n"
		"                          (default: embedded, this node only)\n"
		"      --token-file F      cluster token for kvfs-meta and peers\n"
		"      --node-addr H:P     this node's data address (TCP) advertised to peers\n"
		"      --rdma-addr IP:P    serve and reach peers with RDMA verbs on this device\n"
		"                          address (peers that advertise one use verbs, others TCP)\n"
		"      --transport T       auto (default: verbs where both sides have it) or tcp\n"
		"      --cache-remote POOLS keep copies of remote pages read from these pools\n"
		"                          (comma-separated names) in this node's DRAM\n"
		"      --cache-remote-size SIZE  bound of those copies (default 1G)\n"
		"      --placement P       where new pages go: local (default; peers when full)\n"
		"                          or spread (this node and its peers in turn)\n"
		"  -o OPTS                 extra FUSE mount options (e.g. allow_other)\n"
		"  -h, --help              this help\n"
		"  -V, --version           print the version\n"
		"\n"
		"Example:\n"
		"  kvfs -f --dram 4G --pool kv --pool mamba,page-size=64K /mnt/kvfs\n"
		"\n"
		"The mount holds one directory per pool; MOUNTPOINT/.kvfs/stats shows counters.\n"
		"SIGINT or SIGTERM unmounts. See kvfsctl --help for pool management.\n");
}

static int parse_pool(const char *spec, struct fs_pool_opt **ret)
{
	struct fs_pool_opt *p = calloc(1, sizeof(*p));
	char *copy = strdup(spec), *save = NULL, *tok;
	int r = 0;
	bool first = true;

	if (!p || !copy) {
		r = -ENOMEM;
		goto out;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;

		if (first) {
			if (eq || kvfs_pool_name_check(tok)) {
				r = -EINVAL;
				goto out;
			}
			snprintf(p->attr.name, sizeof(p->attr.name), "%s", tok);
			first = false;
			continue;
		}
		if (!eq) {
			r = -EINVAL;
			goto out;
		}
		*eq++ = 0;
		if (!strcmp(tok, "evict")) {
			if (!strcmp(eq, "lru"))
				p->attr.evict = KVFS_EVICT_LRU;
			else if (!strcmp(eq, "none"))
				p->attr.evict = KVFS_EVICT_NONE;
			else
				r = -EINVAL;
		} else if ((r = kvfs_parse_size(eq, &v)) < 0) {
			/* -EINVAL (syntax) or -ERANGE (does not fit in 64 bits) */
		} else if (!strcmp(tok, "page-size")) {
			if (!kvfs_page_size_valid(v))
				r = -EINVAL;
			p->attr.page_size = (uint32_t)v;
		} else if (v > KVFS_POOL_SIZE_MAX &&
			   (!strcmp(tok, "capacity") || !strcmp(tok, "max-file-size"))) {
			r = -ERANGE;
		} else if (!strcmp(tok, "capacity")) {
			p->attr.capacity = v;
		} else if (!strcmp(tok, "max-file-size")) {
			p->attr.max_file_size = v;
		} else {
			r = -EINVAL;
		}
		if (r < 0)
			goto out;
	}
	if (first)
		r = -EINVAL;
out:
	free(copy);
	if (r < 0)
		free(p);
	else
		*ret = p;
	return r;
}

int fs_parse_args(int argc, char **argv, struct fs_options *o)
{
	enum {
		OPT_DRAM = 256,
		OPT_DATA,
		OPT_POOL,
		OPT_HUGE,
		OPT_PREFAULT,
		OPT_SYNC,
		OPT_TIMEOUT,
		OPT_THREADS,
		OPT_CACHE,
		OPT_META,
		OPT_TOKEN,
		OPT_NODE_ADDR,
		OPT_RDMA_ADDR,
		OPT_TRANSPORT,
		OPT_PLACEMENT,
		OPT_CACHE_REMOTE,
		OPT_CACHE_REMOTE_SIZE
	};
	static const struct option longopts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"debug", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"dram", required_argument, NULL, OPT_DRAM},
		{"data", required_argument, NULL, OPT_DATA},
		{"pool", required_argument, NULL, OPT_POOL},
		{"hugepages", no_argument, NULL, OPT_HUGE},
		{"prefault", no_argument, NULL, OPT_PREFAULT},
		{"sync", no_argument, NULL, OPT_SYNC},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"cache", required_argument, NULL, OPT_CACHE},
		{"meta", required_argument, NULL, OPT_META},
		{"token-file", required_argument, NULL, OPT_TOKEN},
		{"node-addr", required_argument, NULL, OPT_NODE_ADDR},
		{"rdma-addr", required_argument, NULL, OPT_RDMA_ADDR},
		{"transport", required_argument, NULL, OPT_TRANSPORT},
		{"placement", required_argument, NULL, OPT_PLACEMENT},
		{"cache-remote", required_argument, NULL, OPT_CACHE_REMOTE},
		{"cache-remote-size", required_argument, NULL, OPT_CACHE_REMOTE_SIZE},
		{NULL, 0, NULL, 0},
	};
	struct fs_pool_opt **tail = &o->pools;
	int c, r;

	o->dram = 1ull << 30;
	o->timeout = 3600.0;
	o->threads = 16;
	while ((c = getopt_long(argc, argv, "fdhVo:", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = o->foreground = true;
			break;
		case 'h':
			fs_usage(stdout);
			exit(0);
		case 'V':
			printf("kvfs %s\n", KVFS_VERSION);
			exit(0);
		case 'o':
			if (o->fuse_opts) {
				char *n;

				if (asprintf(&n, "%s,%s", o->fuse_opts, optarg) < 0)
					return -ENOMEM;
				free(o->fuse_opts);
				o->fuse_opts = n;
			} else {
				o->fuse_opts = strdup(optarg);
			}
			break;
		case OPT_DRAM:
			if (kvfs_parse_size(optarg, &o->dram) < 0 || o->dram < KVFS_PAGE_MAX) {
				fprintf(stderr,
					"kvfs: --dram: want a size of at least 16M, got '%s'\n",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_DATA:
			o->data_dir = optarg;
			break;
		case OPT_POOL:
			r = parse_pool(optarg, tail);
			if (r < 0) {
				fprintf(stderr, "kvfs: --pool: cannot parse '%s': %s\n", optarg,
					r == -ERANGE ? "a size above 4E (2^62 bytes)"
						     : "a pool name is 1-64 bytes, not . or .., "
						       "without '/' or control characters; "
						       "options are KEY=SIZE or evict=lru|none");
				return -EINVAL;
			}
			tail = &(*tail)->next;
			break;
		case OPT_HUGE:
			o->hugepages = true;
			break;
		case OPT_PREFAULT:
			o->prefault = true;
			break;
		case OPT_SYNC:
			o->sync = true;
			break;
		case OPT_TIMEOUT:
			o->timeout = strtod(optarg, NULL);
			o->timeout_set = true;
			if (o->timeout < 0) {
				fprintf(stderr, "kvfs: --timeout: want seconds >= 0\n");
				return -EINVAL;
			}
			break;
		case OPT_THREADS:
			o->threads = (unsigned)strtoul(optarg, NULL, 10);
			if (o->threads < 1)
				o->threads = 1;
			break;
		case OPT_META:
			o->meta_url = optarg;
			break;
		case OPT_TOKEN:
			o->token_file = optarg;
			break;
		case OPT_NODE_ADDR:
			o->node_addr = optarg;
			break;
		case OPT_RDMA_ADDR:
			o->rdma_addr = optarg;
			break;
		case OPT_CACHE_REMOTE:
			o->cache_remote = optarg;
			break;
		case OPT_CACHE_REMOTE_SIZE:
			if (kvfs_parse_size(optarg, &o->cache_remote_size) < 0) {
				fprintf(stderr, "kvfs: --cache-remote-size: not a size: %s\n",
					optarg);
				return -EINVAL;
			}
			break;
		case OPT_PLACEMENT:
			if (!strcmp(optarg, "spread")) {
				o->spread = true;
			} else if (strcmp(optarg, "local")) {
				fprintf(stderr, "kvfs: --placement: want local or spread\n");
				return -EINVAL;
			}
			break;
		case OPT_TRANSPORT:
			if (!strcmp(optarg, "tcp")) {
				o->force_tcp = true;
			} else if (strcmp(optarg, "auto")) {
				fprintf(stderr, "kvfs: --transport: want auto or tcp\n");
				return -EINVAL;
			}
			break;
		case OPT_CACHE:
			if (!strcmp(optarg, "auto")) {
				o->cache = FS_CACHE_AUTO;
			} else if (!strcmp(optarg, "page")) {
				o->cache = FS_CACHE_PAGE;
			} else if (!strcmp(optarg, "direct")) {
				o->cache = FS_CACHE_DIRECT;
			} else {
				fprintf(stderr, "kvfs: --cache: want auto, page or direct\n");
				return -EINVAL;
			}
			break;
		default:
			fs_usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		fs_usage(stderr);
		return -EINVAL;
	}
	o->mountpoint = argv[optind];
	return 0;
}

char *fs_default_data_dir(const char *mnt)
{
	const char *base;
	char *escaped, *dir = NULL;

	escaped = strdup(mnt);
	if (!escaped)
		return NULL;
	for (char *p = escaped; *p; p++)
		if (*p == '/')
			*p = '_';
	if (geteuid() == 0) {
		base = "/var/lib/kvfs";
		if (asprintf(&dir, "%s/%s", base, escaped) < 0)
			dir = NULL;
	} else {
		const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

		if (xdg && *xdg) {
			if (asprintf(&dir, "%s/kvfs/%s", xdg, escaped) < 0)
				dir = NULL;
		} else if (asprintf(&dir, "%s/.local/state/kvfs/%s", home ? home : "/tmp",
				    escaped) < 0) {
			dir = NULL;
		}
	}
	free(escaped);
	return dir;
}

/*
 * Absolute path of @path without following its last component, which may be a dead mount
 * that every stat fails on.
 */
