/*
 * Extern closures: which rlib/rmeta files a crate needs, transitively.
 * Each compile records, for its own outputs, the externs it was given plus
 * their recorded closures (wrap_state); a later crate then ships exactly
 * its closure as inputs instead of the whole deps directory.
 *
 * Kept apart from action building so that the light front of the wrapper
 * (wrap_front.h), which records closures for local calls, links neither
 * the CAS client nor libcurl. Errors: 0 or DB_E*.
 */
#ifndef WRAP_CLOSURE_H
#define WRAP_CLOSURE_H

#include "wrap_args.h"
#include "wrap_util.h"

/* Add to externs (sorted, unique on return) every --extern artifact of a
 * and the recorded closure of each. An extern without a record (made
 * before the wrapper was in use) widens the set to every lib* artifact in
 * the -L dependency= directories. */
int wrap_closure_collect(const wrap_args *a, const char *cache_dir,
                         wrap_strv *externs);

/* Write the closure records for this call's outputs (its externs and
 * their closures). Done for every rlib-producing call, local or remote. */
int wrap_closure_record(const wrap_args *args, const char *cache_dir);

#endif
