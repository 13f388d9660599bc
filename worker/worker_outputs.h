/*
 * Output collection: after the action ran, turn its output paths into
 * ActionResult entries (OutputFile, OutputDirectory with a Tree blob,
 * OutputSymlink) and queue every blob for one upload.
 *
 * Paths are relative to the action's working directory and must be clean
 * (wk_relpath_ok); a path whose parent components leave the tree through a
 * symlink is not followed (treated as absent). Nothing runs in the action
 * directory any more when this is called, so checking with lstat and then
 * reading by path is race-free.
 */
#ifndef WORKER_OUTPUTS_H
#define WORKER_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "cas_client.h"
#include "reapi_pb.h"
#include "worker_int.h"

/* A file already uploaded to the CAS, with the identity it had when it was
 * hashed (worker_early.c uploads rustc's .rlib as soon as rustc announces
 * it, while rustc is still exiting). */
typedef struct wk_known_file {
  char path[4096]; /* host path */
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime, ctime;
  reapi_digest digest;
} wk_known_file;

/* Open, fstat and hash the file at path into *k. 0 or DB_E*. */
int wk_known_file_hash(const char *path, wk_known_file *k);

/* Blobs to upload; the sources (paths, data) live in an arena. */
typedef struct wk_upload {
  cas_blob_src *v;
  size_t n, cap;
  /* Borrowed, may be NULL: files known to be in the CAS already. */
  const wk_known_file *known;
  size_t nknown;
} wk_upload;

/* Hash the file at path and queue it; *out gets its digest. A file in
 * u->known whose path, device, inode, size, mtime and ctime all still
 * match is not read again and not queued: *out is its known digest. */
int wk_upload_add_file(wk_upload *u, wk_arena *a, const char *path,
                       reapi_digest *out);
/* Queue bytes (copied into a); *out gets their digest. */
int wk_upload_add_data(wk_upload *u, wk_arena *a, const void *data, size_t len,
                       reapi_digest *out);
void wk_upload_free(wk_upload *u);

/* Collect outputs found under the host directory wd into ar (arena a owns
 * everything added), queueing blobs into u. With npaths > 0 output_paths
 * semantics apply (files, directories and symlinks decided by what is
 * there); else the legacy output_files / output_directories lists.
 * Returns 0, DB_EINVAL for an output that has the wrong type under the
 * legacy rules (err says which), or another DB_E* for I/O failures. */
int wk_outputs_collect(const char *wd, const char *const *paths, size_t npaths,
                       const char *const *files, size_t nfiles,
                       const char *const *dirs, size_t ndirs, wk_arena *a,
                       wk_upload *u, PbActionResult *ar, char *err,
                       size_t errlen);

#endif
