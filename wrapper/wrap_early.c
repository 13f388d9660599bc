/* Early outputs on the client; see wrap_early.h. */
#include "wrap_early.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "reapi_pb.h"
#include "wrap_util.h"

/* 1 if abs was written early with digest d and is still there. */
int wrap_early_same(const wrap_remote_result *res, const char *abs,
                    const reapi_digest *d) {
  for (size_t i = 0; i < res->n_early; i++)
    if (strcmp(res->early_paths[i], abs) == 0)
      return reapi_digest_eq(&res->early_digests[i], d) &&
             access(abs, F_OK) == 0;
  return 0;
}

/* 1 if path names the crate metadata or its dep-info: the outputs a hit
 * writes first, so cargo can start the dependents (see wrap_early_hit). */
int wrap_early_kind(const char *path) {
  size_t l = strlen(path);
  return (l > 6 && strcmp(path + l - 6, ".rmeta") == 0) ||
         (l > 2 && strcmp(path + l - 2, ".d") == 0);
}

/* Early files are on disk: record them in res (taking paths and dg), and
 * if the caller agrees (progress "early") write the stderr prefix that
 * announces them and keep a copy of it. */
static void release_early(wrap_remote_result *res, char **paths,
                          reapi_digest *dg, size_t n, const uint8_t *prefix,
                          size_t prefix_len, wrap_remote_progress_fn progress,
                          void *pctx) {
  uint8_t *copy;
  res->early_paths = paths;
  res->early_digests = dg;
  res->n_early = n;
  if (progress == NULL || progress(pctx, "early", res) != 1)
    return;
  copy = malloc(prefix_len + 1);
  if (copy == NULL)
    return;
  memcpy(copy, prefix, prefix_len);
  if (wrap_write_all(STDERR_FILENO, copy, prefix_len) != 0) {
    free(copy);
    return;
  }
  res->early_err = copy;
  res->early_err_len = prefix_len;
  res->early_released = 1;
}

/* Write an output that came inline after checking it against d: 0,
 * DB_EDIGEST, or the write's error. */
static int write_inline(const char *abs, const PbOutputFile *f,
                        const reapi_digest *d) {
  reapi_digest got;
  reapi_digest_of(f->contents.data, f->contents.len, &got);
  if (!reapi_digest_eq(&got, d))
    return DB_EDIGEST;
  return wrap_write_atomic(abs, f->contents.data, f->contents.len,
                           f->is_executable ? 0755 : 0644);
}

/* A hit, pipelined like a local rustc: write the .rmeta and .d that came
 * inline in the ActionResult, and if the caller agrees (progress "early")
 * write rustc's stderr up to its metadata notice, so cargo starts the
 * dependents while the .rlib downloads. Anything missing (a notice, an
 * inline file, a matching digest) just skips this; fetch_outputs then
 * writes everything. */
void wrap_early_hit(const wrap_action *act, const PbActionResult *ar,
                    wrap_remote_result *res, wrap_remote_progress_fn progress,
                    void *pctx) {
  size_t end, n = 0, cap = ar->n_output_files;
  char **paths = NULL;
  reapi_digest *dg = NULL;
  int have_rmeta = 0, have_d = 0;

  if (progress == NULL || ar->exit_code != 0 || res->n_early > 0 ||
      (ar->stderr_digest && ar->stderr_digest->size_bytes > 0 &&
       ar->stderr_raw.len == 0))
    return;
  end = wrap_rustc_metadata_prefix(ar->stderr_raw.data, ar->stderr_raw.len);
  if (end == 0 || cap == 0)
    return;
  paths = calloc(cap, sizeof(*paths));
  dg = calloc(cap, sizeof(*dg));
  if (paths == NULL || dg == NULL)
    goto out;
  for (size_t i = 0; i < ar->n_output_files; i++) {
    const PbOutputFile *f = ar->output_files[i];
    char *abs;
    if (f->path == NULL || !wrap_early_kind(f->path))
      continue;
    if (reapi_pb_digest_get(f->digest, &dg[n]) != 0 ||
        (size_t)dg[n].size != f->contents.len)
      goto out; /* not inlined (or not valid): no early path */
    abs = wrap_path_join(act->out_base, f->path);
    if (abs == NULL || !wrap_strv_has(&act->outputs, abs) ||
        write_inline(abs, f, &dg[n]) != 0) {
      free(abs);
      goto out;
    }
    if (strcmp(abs + strlen(abs) - 2, ".d") == 0)
      have_d = 1;
    else
      have_rmeta = 1;
    paths[n++] = abs;
  }
  if (!have_rmeta || !have_d)
    goto out;
  release_early(res, paths, dg, n, ar->stderr_raw.data, end, progress, pctx);
  paths = NULL;
  dg = NULL;
out:
  /* Files written above stay: they are the hit's own outputs. */
  for (size_t i = 0; paths && i < n; i++)
    free(paths[i]);
  free(paths);
  free(dg);
}

/* Add files written early after the first release (paths and dg taken on
 * success). */
static int append_early(wrap_remote_result *res, char **paths, reapi_digest *dg,
                        size_t n) {
  size_t total = res->n_early + n;
  char **np = realloc(res->early_paths, total * sizeof(*np));
  reapi_digest *nd;
  if (np == NULL)
    return DB_ENOMEM;
  res->early_paths = np;
  nd = realloc(res->early_digests, total * sizeof(*nd));
  if (nd == NULL)
    return DB_ENOMEM;
  res->early_digests = nd;
  memcpy(np + res->n_early, paths, n * sizeof(*np));
  memcpy(nd + res->n_early, dg, n * sizeof(*nd));
  res->n_early = total;
  free(paths);
  free(dg);
  return 0;
}

/* Write the EarlyOutputs files (declared outputs only; written from their
 * inline contents after a digest check, else fetched on a second
 * connection since this one is busy with the stream). The first message
 * then releases the stderr prefix if the caller agrees; a later one, with
 * an empty prefix (the .rlib at rustc's link notice), only adds files.
 * Any problem just skips the early path: the final result carries
 * everything. */
void wrap_early_write(const Distbuild__Worker__V1__EarlyOutputs *eo,
                      const wrap_action *act, const char *target,
                      const rpc_channel_opts *channel, int64_t stall_ms,
                      cas_client **cas2, wrap_remote_result *res,
                      wrap_remote_progress_fn progress, void *pctx) {
  int more = eo->stderr_prefix.len == 0;
  cas_blob_dst *dst = NULL;
  char **paths = NULL;
  reapi_digest *dg = NULL;
  size_t n = 0, nd = 0;
  uint64_t raw = 0, wire = 0, inl = 0;
  int rv = DB_ENOMEM;

  if (eo->n_files == 0 || (!more && res->n_early > 0))
    return;
  dst = calloc(eo->n_files, sizeof(*dst));
  paths = calloc(eo->n_files, sizeof(*paths));
  dg = calloc(eo->n_files, sizeof(*dg));
  if (!dst || !paths || !dg)
    goto out;
  for (size_t i = 0; i < eo->n_files; i++) {
    const PbOutputFile *f = eo->files[i];
    char *p = f->path ? wrap_path_join(act->out_base, f->path) : NULL;
    if (p == NULL || !wrap_strv_has(&act->outputs, p) ||
        reapi_pb_digest_get(f->digest, &dg[n]) != 0) {
      free(p);
      rv = DB_EINVAL;
      goto out;
    }
    if (more && wrap_early_same(res, p, &dg[n])) {
      free(p);
      continue;
    }
    paths[n] = p;
    if (f->contents.len > 0 || dg[n].size == 0) {
      rv = write_inline(p, f, &dg[n]);
      n++;
      if (rv != 0)
        goto out;
      inl += f->contents.len;
      continue;
    }
    dst[nd].digest = dg[n];
    dst[nd].path = p;
    dst[nd].mode = f->is_executable ? 0755 : 0644;
    nd++;
    n++;
  }
  rv = 0;
  if (nd > 0 && *cas2 == NULL) {
    cas_client_opts o = {0};
    o.timeout_ms = 60000;
    o.idle_timeout_ms = stall_ms;
    o.channel = channel;
    rv = cas_client_new(target, &o, cas2);
  }
  if (rv == 0 && nd > 0)
    rv = cas_client_download(*cas2, dst, nd, &raw, &wire);
  /* Inline bytes came as they are, inside the stream. */
  res->down_raw += raw + inl;
  res->down_wire += wire + inl;
  if (rv != 0 || n == 0)
    goto out;
  if (more) {
    rv = append_early(res, paths, dg, n);
    if (rv != 0)
      goto out;
  } else {
    release_early(res, paths, dg, n, eo->stderr_prefix.data,
                  eo->stderr_prefix.len, progress, pctx);
  }
  paths = NULL;
  dg = NULL;
out:
  if (rv != 0)
    DB_DEBUG("wrapper", "early outputs skipped: %s", db_strerror(rv));
  for (size_t i = 0; paths && i < n; i++)
    free(paths[i]);
  free(paths);
  free(dg);
  free(dst);
}
