/*
 * Input-root materialisation: turn a REAPI input root (a Merkle tree of
 * Directory messages) into a host directory for one action.
 *
 * - Directory messages come through the local cache (one batched fetch per
 *   tree level on a cold worker, none on a warm one), except those passed
 *   in opts.inline_dirs.
 * - Files are hardlinked out of the file cache (mode 0444 / 0555, owned by
 *   the worker). Hardlinks share the inode, so the action must not be able
 *   to modify them: the sandbox runs it as an unprivileged host id that
 *   owns neither the files nor (outside the output parents) the
 *   directories, and the input root is bound read-only. When that cannot
 *   hold (the action's host id equals the worker's, or there is no
 *   sandbox) files are copied instead (opts.copy_writable / copy_all).
 * - Large immutable subtrees (more than tree_min_files files or
 *   tree_min_bytes bytes, or under a configured prefix, and containing no
 *   output parent directory) are not linked file by file: they are
 *   materialised once per Directory digest in the tree cache and the
 *   caller binds them read-only at their path (an empty mount-point
 *   directory is created for each).
 * - The parent directories of output paths are created and given to
 *   (wuid, wgid) so the action can write there.
 */
#ifndef WORKER_MATERIALIZE_H
#define WORKER_MATERIALIZE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <protobuf-c/protobuf-c.h>

#include "cas_client.h"
#include "worker_cache.h"

typedef struct wk_mat_opts {
  uint64_t tree_min_files; /* 0 = never by count */
  uint64_t tree_min_bytes; /* 0 = never by size */
  const char *const *tree_prefixes;
  size_t n_tree_prefixes;
  /* Directories (relative to the input root, "" = the root itself) that
   * must exist and be writable by (wuid, wgid). */
  const char *const *writable_dirs;
  size_t n_writable;
  uid_t wuid;
  gid_t wgid;
  int copy_writable; /* copy, not link, files below writable dirs */
  int copy_all;      /* copy every file; trees become symlinks */
  /* Serialized Directory messages already at hand (the scheduler sends
   * the input root's new ones with the Assignment): each is used under
   * the digest computed here, so a wrong one is merely unused. Borrowed. */
  const ProtobufCBinaryData *inline_dirs;
  size_t n_inline_dirs;
} wk_mat_opts;

typedef struct wk_mat_bind {
  char *rel;           /* path relative to the input root */
  char *src;           /* tree-cache directory to bind read-only */
  reapi_digest digest; /* pinned tree */
} wk_mat_bind;

typedef struct wk_mat {
  wk_mat_bind *binds; /* read-only binds, parents before children */
  size_t nbinds;
  wk_fetch_stats fetch;  /* files + directories */
  uint64_t files_linked; /* files placed by this call */
  uint64_t trees_built, trees_hit;
  reapi_digest *missing; /* on DB_ENOTFOUND: blobs the CAS lacks */
  size_t nmissing;
  char err[256]; /* failure detail */
} wk_mat;

/* Materialise root into dir (an existing, empty directory). On success
 * *m holds pinned trees: release with wk_mat_release() after the run. On
 * failure nothing stays pinned (wk_mat_release() still frees m's memory). */
int wk_materialize(wk_cache *c, cas_client *cas, const reapi_digest *root,
                   const char *dir, const wk_mat_opts *o, wk_mat *m);
void wk_mat_release(wk_cache *c, wk_mat *m);

#endif
