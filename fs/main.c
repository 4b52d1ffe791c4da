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
#include "main_i.h"
#include "util.h"
#include "meta_http.h"
#include "pool.h"
#include "xfer.h"

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

static int ensure_pools(struct kvfs_fs *fs, struct fs_pool_opt *pools)
{
	for (struct fs_pool_opt *p = pools; p; p = p->next) {
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
	struct fs_options o = {0};
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

	r = fs_parse_args(argc, argv, &o);
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
	data_dir = o.data_dir ? strdup(o.data_dir) : fs_default_data_dir(real_mnt);
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
		r = fs_join_cluster(&fs, &o, data_dir);
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
		fs.refresh_peers = fs_refresh_peers;
		if (kvfs_meta_node_list(fs.meta, true, &nodes, &n) == 0) {
			fs_on_peers_changed(&fs, nodes, n);
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
		struct fs_pool_opt *n = o.pools->next;

		free(o.pools);
		o.pools = n;
	}
	if (lock_fd >= 0)
		close(lock_fd);
	return r < 0 ? 1 : 0;
}
