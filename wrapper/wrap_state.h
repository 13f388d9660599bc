/*
 * Small persistent records the wrapper keeps between rustc calls, under
 * the cache directory (wrap_cache_dir()):
 *
 *  closure/<artifact path>.closure
 *               For an artifact the wrapper compiled (rlib / rmeta, by
 *               its absolute path, which must be normal: no ".", ".." or
 *               empty component): the absolute paths of every extern
 *               artifact that compile needed, transitively.
 *               Written before the compile (it depends only on the
 *               arguments), read when a dependent names the artifact in
 *               --extern, so the dependent's input root holds exactly its
 *               dependency closure.
 *  crates/<h>   Per crate (h: wrap_hash_crate_key()): the environment
 *               variable names rustc read (dep-info "# env-dep:" lines)
 *               and the source files outside the package directory, from
 *               the last successful compile. Included in the next action.
 *
 * Records are replaced atomically (temp file + rename), so concurrent
 * wrappers see either the old or the new record. Errors: 0 or DB_E*;
 * DB_ENOTFOUND when no record exists.
 */
#ifndef WRAP_STATE_H
#define WRAP_STATE_H

#include "wrap_util.h"

/* Record closure (absolute paths) for each of the artifacts. DB_EINVAL
 * (nothing more written) at an artifact path that is not normal and
 * absolute. */
int wrap_state_closure_put(const char *cache_dir, const wrap_strv *artifacts,
                           const wrap_strv *closure);
/* Append the recorded closure of artifact to out. DB_ENOTFOUND when there
 * is none, which includes a path that could not have one. */
int wrap_state_closure_get(const char *cache_dir, const char *artifact,
                           wrap_strv *out);

/* Per-crate records under key (wrap_hash_crate_key(), 32 hex chars). */
int wrap_state_crate_load(const char *cache_dir, const char *key,
                          wrap_strv *env_names, wrap_strv *files);
int wrap_state_crate_save(const char *cache_dir, const char *key,
                          const wrap_strv *env_names, const wrap_strv *files);

/* Parse a Makefile-style dep-info file as rustc writes it: *files gets
 * every dependency path (made absolute against cwd), *env every variable
 * name of a "# env-dep:NAME[=VALUE]" line. Either output may be NULL. */
int wrap_depinfo_parse(const char *text, const char *cwd, wrap_strv *files,
                       wrap_strv *env);

#endif
