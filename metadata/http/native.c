/* SPDX-License-Identifier: MIT */
/*
 * native.c - the table of kvfs-meta's native /v1/ routes (docs/API.md).
 *
 * Every route of the native API is listed here with whether it needs the bearer token. The
 * handlers are not wired yet: they belong on the metadata state machine (metadata/state.h),
 * which kvfs-meta will own as the native_ctx of its server config. Until a handler is set, its
 * route answers 501 {"error": "... not implemented ...", "errno": ENOSYS}. A handler has the
 * signature kvfs_meta_route_fn (server.h): decode the body with codec.h, call the matching
 * meta_state_*() function, encode its result with codec.h.
 */
#include "server.h"

const struct kvfs_meta_route kvfs_meta_native_routes[] = {
	/* membership */
	{"/v1/node/register", true, NULL},
	{"/v1/node/heartbeat", true, NULL},
	{"/v1/node/leave", true, NULL},
	{"/v1/node/list", false, NULL},
	/* pools */
	{"/v1/pool/create", true, NULL},
	{"/v1/pool/list", false, NULL},
	{"/v1/pool/get", false, NULL},
	{"/v1/pool/drop", true, NULL},
	/* namespace reads, single and batch */
	{"/v1/lookup", false, NULL},
	{"/v1/lookup_batch", false, NULL},
	{"/v1/getattr", false, NULL},
	{"/v1/getattr_batch", false, NULL},
	{"/v1/layout", false, NULL},
	{"/v1/exists", false, NULL},
	{"/v1/readdir", false, NULL},
	{"/v1/statfs", false, NULL},
	/* namespace changes */
	{"/v1/create", true, NULL},
	{"/v1/mkdir", true, NULL},
	{"/v1/unlink", true, NULL},
	{"/v1/rmdir", true, NULL},
	{"/v1/rename", true, NULL},
	{"/v1/setattr", true, NULL},
	/* data placement */
	{"/v1/alloc", true, NULL},
	{"/v1/commit", true, NULL},
	{"/v1/abort", true, NULL},
	/* leases */
	{"/v1/open", true, NULL},
	{"/v1/close", true, NULL},
	/* xattrs */
	{"/v1/xattr/set", true, NULL},
	{"/v1/xattr/get", false, NULL},
	{"/v1/xattr/list", false, NULL},
	{"/v1/xattr/remove", true, NULL},
};

const size_t kvfs_meta_native_nroutes =
	sizeof(kvfs_meta_native_routes) / sizeof(kvfs_meta_native_routes[0]);
