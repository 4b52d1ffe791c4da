/* SPDX-License-Identifier: MIT */
/*
 * main.c - the kvfs daemon: parse options, build the arena, the page allocator, the metadata
 * state machine and the transfer engine, mount, serve, and tear down in reverse order.
 *
 * Daemon mode forks before anything that owns threads or an LMDB environment is created (LMDB
 * environments must not cross a fork); the parent waits on a pipe until the child reports the
 * mount live or an error, so `kvfs MNT` returns only once MNT is usable and its exit status is
 * the truth.
 *
 * A previous daemon that died leaves a dead FUSE mount ("Transport endpoint is not connected");
 * it is detached before mounting again. A live kvfs mount on the same point is refused.
 */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "fs_i.h"
#include "util.h"
#include "meta_http.h"
#include "pool.h"
#include "xfer.h"

struct pool_opt {
	struct kvfs_pool_attr attr;
	struct pool_opt *next;
};

struct options {
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
	struct pool_opt *pools;
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

static void usage(FILE *f)
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

static int parse_pool(const char *spec, struct pool_opt **ret)
{
	struct pool_opt *p = calloc(1, sizeof(*p));
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

static int parse_args(int argc, char **argv, struct options *o)
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
	struct pool_opt **tail = &o->pools;
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
			usage(stdout);
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
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return -EINVAL;
	}
	o->mountpoint = argv[optind];
	return 0;
}

static char *default_data_dir(const char *mnt)
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
static int abs_mountpoint(const char *path, char *ret, size_t size)
{
	char dir[PATH_MAX], real[PATH_MAX], *slash;
	const char *base;

	if (strlen(path) >= sizeof(dir))
		return -ENAMETOOLONG;
	strcpy(dir, path);
	while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
		dir[strlen(dir) - 1] = 0;
	slash = strrchr(dir, '/');
	if (!slash) {
		base = dir;
		if (!realpath(".", real))
			return -errno;
	} else {
		*slash = 0;
		base = slash + 1;
		if (!realpath(slash == dir ? "/" : dir, real))
			return -errno;
	}
	if (!*base || !strcmp(base, "."))
		return snprintf(ret, size, "%s", real) >= (int)size ? -ENAMETOOLONG : 0;
	if (snprintf(ret, size, "%s%s%s", real, strcmp(real, "/") ? "/" : "", base) >= (int)size)
		return -ENAMETOOLONG;
	return 0;
}

/* Is there a kvfs mount at @mnt (an absolute path)? */
static bool is_mounted(const char *mnt)
{
	char line[4096];
	bool found = false;
	FILE *f;

	f = fopen("/proc/self/mounts", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char dev[1024], dir[PATH_MAX], type[256];

		if (sscanf(line, "%1023s %4095s %255s", dev, dir, type) == 3 && !strcmp(dir, mnt) &&
		    !strcmp(type, "fuse.kvfs"))
			found = true;
	}
	fclose(f);
	return found;
}

/*
 * Detach a dead kvfs mount left by a daemon that died; refuse a live one. statfs always
 * reaches the daemon (stat of the root may be answered from the kernel's attribute cache), so
 * it tells a dead connection (ENOTCONN/ECONNABORTED) from a live one.
 */
static int recover_stale_mount(const char *mnt)
{
	struct statvfs sv;
	pid_t pid;
	int status;

	if (!is_mounted(mnt)) {
		struct stat st;

		/* a dead FUSE mount of another file system is not ours to remove */
		if (stat(mnt, &st) < 0)
			return -errno;
		return 0;
	}
	if (statvfs(mnt, &sv) == 0)
		return -EBUSY;
	if (errno != ENOTCONN && errno != ECONNABORTED)
		return -errno;
	fprintf(stderr, "kvfs: %s is a stale mount of a dead daemon; unmounting it\n", mnt);
	if (umount2(mnt, MNT_DETACH) == 0)
		return 0;
	/* not root: let the setuid helper do it */
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", mnt, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return -EBUSY;
	return 0;
}

/*
 * Raise the kernel read-ahead of our mount: FUSE caps it at the bdi default (128 KiB) at INIT
 * time whatever max_readahead we ask for; the bdi's sysfs knob is the only way past that, and
 * 1 MiB sequential reads of multi-MiB files are what KV-cache loads look like.
 */
static void *tune_readahead(void *arg)
{
	struct kvfs_fs *fs = arg;
	char path[128], line[4096];
	unsigned maj = 0, min = 0;
	FILE *f;

	/* INIT sets the kernel's read-ahead; ours must come after its reply */
	for (int i = 0; i < 500 && !atomic_load(&fs->inited); i++)
		usleep(10000);
	usleep(50000);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char dir[PATH_MAX];
		unsigned a, b;

		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, dir) == 3 &&
		    !strcmp(dir, fs->mountpoint) && strstr(line, "fuse.kvfs")) {
			maj = a;
			min = b;
		}
	}
	fclose(f);
	if (!maj && !min)
		return NULL;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "4096\n");
		fclose(f);
	}
	return NULL;
}

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
static void on_peers_changed(void *ctx, const struct kvfs_node_info *alive, size_t n)
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

static int refresh_peers(struct kvfs_fs *fs)
{
	struct kvfs_node_info *nodes = NULL;
	size_t n = 0;
	int r = kvfs_meta_node_list(fs->meta, true, &nodes, &n);

	if (r == 0) {
		on_peers_changed(fs, nodes, n);
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
static int join_cluster(struct kvfs_fs *fs, const struct options *o, const char *data_dir)
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
	hc.peers_changed = on_peers_changed;
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

static int ensure_pools(struct kvfs_fs *fs, struct pool_opt *pools)
{
	for (struct pool_opt *p = pools; p; p = p->next) {
		struct kvfs_attr a;
		int r = fs->meta->ops->lookup(fs->meta, KVFS_ROOT_INO, p->attr.name, &a);

		if (r == 0)
			continue;
		if (r != -ENOENT)
			return r;
		r = fs->meta->ops->pool_create(fs->meta, &p->attr);
		if (r < 0 && r != -EEXIST) {
			fprintf(stderr, "kvfs: cannot create pool %s: %s\n", p->attr.name,
				strerror(-r));
			return r;
		}
	}
	return 0;
}

/* Tell the waiting parent how the start went (daemon mode). */
static void report_ready(int fd, int r)
{
	if (fd >= 0) {
		if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
			/* the parent is gone; nothing to tell */
		}
		close(fd);
	}
}

static int daemonize(int *ret_fd)
{
	int pfd[2], r = 0;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		ssize_t n;

		close(pfd[1]);
		n = read(pfd[0], &r, sizeof(r));
		if (n != (ssize_t)sizeof(r))
			r = -EIO;
		_exit(r == 0 ? 0 : 1);
	}
	close(pfd[0]);
	if (setsid() < 0)
		return -errno;
	*ret_fd = pfd[1];
	return 0;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

int main(int argc, char **argv)
{
	struct options o = {0};
	struct kvfs_fs fs = {0};
	struct kvfs_meta_embedded_config mc = {0};
	struct kvfs_xfer_config xc = {0};
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc = NULL;
	struct fuse_session *se = NULL;
	char *data_dir = NULL, lockpath[PATH_MAX], real_mnt[PATH_MAX];
	int r, ready_fd = -1, lock_fd = -1;
	pthread_t ra_thread;
	bool ra_started = false;
	uint32_t inc = 0;

	/* Every FUSE worker thread would otherwise get a malloc arena of its own, each keeping
	 * its own free memory: with 100,000 files that was ~10 MiB of RSS for nothing. */
	mallopt(M_ARENA_MAX, 2);

	r = parse_args(argc, argv, &o);
	if (r < 0)
		return 2;

	r = abs_mountpoint(o.mountpoint, real_mnt, sizeof(real_mnt));
	if (r == 0)
		r = recover_stale_mount(real_mnt);
	if (r == -EBUSY) {
		fprintf(stderr, "kvfs: %s is already mounted by a live kvfs\n", o.mountpoint);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "kvfs: mount point %s: %s\n", o.mountpoint, strerror(-r));
		return 1;
	}
	data_dir = o.data_dir ? strdup(o.data_dir) : default_data_dir(real_mnt);
	if (!data_dir) {
		fprintf(stderr, "kvfs: out of memory\n");
		return 1;
	}
	r = kvfs_mkdir_p(data_dir, 0700);
	if (r < 0) {
		fprintf(stderr, "kvfs: data directory %s: %s\n", data_dir, strerror(-r));
		goto err_free;
	}
	/* one daemon per store: LMDB alone would let two daemons share it */
	snprintf(lockpath, sizeof(lockpath), "%s/kvfs.lock", data_dir);
	lock_fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		r = -errno;
		fprintf(stderr, "kvfs: data directory %s is in use by another kvfs (%s)\n",
			data_dir, strerror(-r));
		goto err_free;
	}

	if (!o.foreground) {
		r = daemonize(&ready_fd);
		if (r < 0) {
			fprintf(stderr, "kvfs: cannot daemonize: %s\n", strerror(-r));
			goto err_free;
		}
	}

	kvfs_fs_init(&fs);
	fs.mountpoint = real_mnt;
	fs.entry_timeout = fs.attr_timeout = o.timeout;
	/*
	 * Shared metadata changes behind this kernel's back. Names are not cached at all, so a
	 * rename or unlink on another node is seen by the next path walk here (rename is atomic
	 * cluster-wide); attributes are cached for a second, and an open that sees a new version
	 * drops them (close-to-open). --timeout trades this for fewer metadata round trips.
	 */
	if (o.meta_url && !o.timeout_set) {
		fs.entry_timeout = 0.0;
		fs.attr_timeout = 1.0;
	}
	fs.cache_mode = o.cache;
	fs.placement_spread = o.spread;
	if (o.cache_remote) {
		char *list = strdup(o.cache_remote), *save = NULL, *tok;

		r = list ? fs_hitcache_create(o.cache_remote_size ? o.cache_remote_size
								  : 1ull << 30,
					      &fs.hitcache)
			 : -ENOMEM;
		for (tok = list && r == 0 ? strtok_r(list, ",", &save) : NULL; tok;
		     tok = strtok_r(NULL, ",", &save)) {
			char **n = realloc(fs.hit_pools, (fs.nhit_pools + 1) * sizeof(*n));

			if (!n || !(n[fs.nhit_pools] = strdup(tok))) {
				if (n)
					fs.hit_pools = n;
				r = -ENOMEM;
				break;
			}
			fs.hit_pools = n;
			fs.nhit_pools++;
		}
		free(list);
		if (r < 0) {
			fprintf(stderr, "kvfs: --cache-remote: %s\n", strerror(-r));
			goto err_fini;
		}
	}
	fs.zero = mmap(NULL, KVFS_PAGE_MAX, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fs.zero == MAP_FAILED) {
		r = -errno;
		fprintf(stderr, "kvfs: cannot map the zero page: %s\n", strerror(-r));
		goto err_fini;
	}
	r = kvfs_arena_create(o.dram,
			      (o.hugepages ? KVFS_ARENA_HUGEPAGES : 0) |
				      (o.prefault ? KVFS_ARENA_PREFAULT : 0),
			      &fs.arena);
	if (r < 0) {
		fprintf(stderr, "kvfs: cannot create a %llu-byte arena%s: %s\n",
			(unsigned long long)o.dram, o.hugepages ? " of huge pages" : "",
			strerror(-r));
		goto err_unmap_zero;
	}
	fs.arena_size = kvfs_arena_size(fs.arena);
	if (o.meta_url) {
		r = join_cluster(&fs, &o, data_dir);
		if (r < 0)
			goto err_destroy_arena;
	} else {
		r = kvfs_palloc_create(fs.arena_size, &fs.palloc);
		if (r < 0) {
			fprintf(stderr, "kvfs: cannot create the page allocator: %s\n",
				strerror(-r));
			goto err_destroy_arena;
		}
		mc.dir = data_dir;
		mc.local_palloc = fs.palloc;
		mc.local_arena_size = fs.arena_size;
		mc.cb.removed = kvfs_fs_meta_removed;
		mc.cb.ctx = &fs;
		mc.sync = o.sync;
		r = kvfs_meta_embedded_create(&mc, &fs.meta);
		if (r < 0) {
			fprintf(stderr, "kvfs: cannot open the metadata store in %s: %s\n",
				data_dir, strerror(-r));
			goto err_destroy_palloc;
		}
		kvfs_meta_embedded_node(fs.meta, &fs.node, &inc);
		fs.incarnation = inc;
	}
	r = ensure_pools(&fs, o.pools);
	if (r < 0)
		goto err_destroy_meta;
	xc.self_node = fs.node;
	xc.self_incarnation = fs.incarnation;
	xc.arena = fs.arena;
	xc.default_timeout_ns = 5ull * 1000000000ull;
	xc.token = fs.token;
	xc.listen_addr = o.meta_url ? o.node_addr : NULL;
	xc.verbs_listen_addr = o.meta_url && !o.force_tcp ? o.rdma_addr : NULL;
	r = kvfs_xfer_engine_create(&xc, &fs.xfer);
	if (r < 0) {
		fprintf(stderr, "kvfs: cannot start the transfer engine%s%s: %s\n",
			xc.listen_addr ? " on " : "", xc.listen_addr ? xc.listen_addr : "",
			strerror(-r));
		goto err_destroy_meta;
	}
	if (o.meta_url) {
		struct kvfs_node_info *nodes = NULL;
		size_t n = 0;

		fs.use_verbs = o.rdma_addr && !o.force_tcp &&
			       kvfs_xfer_backend_status(fs.xfer, KVFS_XFER_VERBS) == 0;
		if (o.rdma_addr && !o.force_tcp && !fs.use_verbs)
			fprintf(stderr,
				"kvfs: verbs unavailable (%s); peers are reached over tcp\n",
				strerror(-kvfs_xfer_backend_status(fs.xfer, KVFS_XFER_VERBS)));
		atomic_store(&fs.xfer_ready, true);
		fs.refresh_peers = refresh_peers;
		if (kvfs_meta_node_list(fs.meta, true, &nodes, &n) == 0) {
			on_peers_changed(&fs, nodes, n);
			free(nodes);
		}
	}

	/* argv for libfuse: name, mount options */
	if (fuse_opt_add_arg(&args, "kvfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, "fsname=kvfs,subtype=kvfs,default_permissions") ||
	    (o.fuse_opts &&
	     (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, o.fuse_opts))) ||
	    (o.debug && fuse_opt_add_arg(&args, "-d"))) {
		r = -ENOMEM;
		goto err_destroy_xfer;
	}
	se = fuse_session_new(&args, &kvfs_fs_ops, sizeof(kvfs_fs_ops), &fs);
	if (!se) {
		r = -EINVAL;
		fprintf(stderr, "kvfs: cannot create the FUSE session (bad -o option?)\n");
		goto err_destroy_xfer;
	}
	if (fuse_set_signal_handlers(se) != 0) {
		r = -EIO;
		goto err_destroy_session;
	}
	if (fuse_session_mount(se, real_mnt) != 0) {
		r = -EIO;
		fprintf(stderr, "kvfs: cannot mount on %s\n", real_mnt);
		goto err_remove_signals;
	}
	fs.se = se;
	r = kvfs_fs_start_notifier(&fs);
	if (r < 0)
		goto err_unmount;
	if (pthread_create(&ra_thread, NULL, tune_readahead, &fs) == 0)
		ra_started = true;

	if (!o.foreground) {
		if (chdir("/") < 0) {
			/* keep going: the cwd only matters for relative paths we no longer use */
		}
		detach_stdio();
	}
	report_ready(ready_fd, 0);
	ready_fd = -1;

	lc = fuse_loop_cfg_create();
	if (!lc) {
		r = -ENOMEM;
		goto err_stop_ra;
	}
	fuse_loop_cfg_set_clone_fd(lc, 1);
	fuse_loop_cfg_set_max_threads(lc, o.threads);
	fuse_loop_cfg_set_idle_threads(lc, o.threads > 4 ? o.threads / 2 : o.threads);
	r = fuse_session_loop_mt(se, lc);
	r = r > 0 ? 0 : r; /* a positive value is the signal that ended the loop */
	fuse_loop_cfg_destroy(lc);

err_stop_ra:
	if (ra_started)
		pthread_join(ra_thread, NULL);
err_unmount:
	kvfs_fs_stop_notifier(&fs); /* it sends through the session: stop it first */
	fs.se = NULL;
	fuse_session_unmount(se);
err_remove_signals:
	fuse_remove_signal_handlers(se);
err_destroy_session:
	fuse_session_destroy(se);
err_destroy_xfer:
	atomic_store(&fs.xfer_ready, false);
	kvfs_xfer_engine_destroy(fs.xfer);
err_destroy_meta:
	kvfs_meta_destroy(fs.meta);
err_destroy_palloc:
	kvfs_palloc_destroy(fs.palloc);
err_destroy_arena:
	kvfs_arena_destroy(fs.arena);
err_unmap_zero:
	if (fs.zero && fs.zero != MAP_FAILED)
		munmap((void *)fs.zero, KVFS_PAGE_MAX);
err_fini:
	kvfs_fs_fini(&fs);
	fs_hitcache_destroy(fs.hitcache);
	for (size_t i = 0; i < fs.nhit_pools; i++)
		free(fs.hit_pools[i]);
	free(fs.hit_pools);
	report_ready(ready_fd, r < 0 ? r : -EIO);
err_free:
	fuse_opt_free_args(&args);
	free(data_dir);
	free(fs.token);
	free(o.fuse_opts);
	while (o.pools) {
		struct pool_opt *n = o.pools->next;

		free(o.pools);
		o.pools = n;
	}
	if (lock_fd >= 0)
		close(lock_fd);
	return r < 0 ? 1 : 0;
}
