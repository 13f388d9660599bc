/*
 * Build statistics: every wrapper call that compiles a crate appends one
 * record to a local stats file, and `cargo distbuild build` / `stats`
 * aggregate them.
 *
 * File: $CARGO_DISTBUILD_STATS_DIR/stats.log, else <cache dir>/stats.log.
 * One line per record, written with a single write(2) on an O_APPEND
 * descriptor (records are < 1 KiB, so concurrent wrappers never
 * interleave): tab-separated key=value fields, starting with "v1".
 *
 * A record belongs to a build: $CARGO_DISTBUILD_BUILD_ID when set (by
 * `cargo distbuild build`), else "cargo-<parent pid>" (the cargo process
 * that ran the wrapper). The "last build" is the build id of the last
 * record in the file.
 *
 * Compaction: every report reads the whole file, so once an append leaves
 * it above 256 KiB ($CARGO_DISTBUILD_STATS_MAX_BYTES), the records of
 * finished builds are folded into one "kind=sum" line (build "-") holding
 * their totals and fallback reasons. A build is finished once its
 * "kind=end" marker is there (wrap_stats_end, written by `cargo distbuild
 * build` after its report), or when its last record is more than an hour
 * old ($CARGO_DISTBUILD_STATS_KEEP_MS; 0 = at once). The appending build's
 * records are always kept.
 * The file is rewritten and renamed into place under an exclusive flock
 * on stats.log.lock; appends hold it shared, so none is lost. A compactor
 * that finds the lock taken skips the work.
 *
 * Errors: 0 or DB_E*.
 */
#ifndef WRAP_STATS_H
#define WRAP_STATS_H

#include <stdint.h>
#include <stdio.h>

/* Kinds of record. */
#define WRAP_KIND_HIT "hit"           /* action-cache hit */
#define WRAP_KIND_REMOTE "remote"     /* executed on a worker, exit 0 */
#define WRAP_KIND_ERROR "error"       /* executed on a worker, exit != 0 */
#define WRAP_KIND_LOCAL "local"       /* not distributable, ran locally */
#define WRAP_KIND_FALLBACK "fallback" /* distributable, ran locally */

typedef struct wrap_stat_rec {
  const char *kind;
  const char *crate;
  const char *reason; /* may be NULL */
  int exit_code;
  uint64_t up_raw, up_wire, down_raw, down_wire;
  int64_t saved_ms; /* hits: the original execution time */
  int64_t exec_ms;  /* remote: worker execution time */
  int64_t wall_ms;  /* time spent in the wrapper */
  int early;        /* remote: metadata released to cargo before the end */
} wrap_stat_rec;

/* Append one record for the current build. Failures are ignored by
 * callers (stats must never break a build), but reported here. */
int wrap_stats_append(const wrap_stat_rec *r);

#define WRAP_STATS_MAX_REASONS 16

typedef struct wrap_stats_sum {
  uint64_t records, actions, hits, remote, errors, local, fallbacks;
  uint64_t early; /* remote executions whose metadata came early */
  uint64_t up_raw, up_wire, down_raw, down_wire;
  int64_t saved_ms, exec_ms, wall_ms;
  struct {
    char text[160];
    uint64_t count;
  } reasons[WRAP_STATS_MAX_REASONS]; /* fallback reasons, most frequent */
  int n_reasons;
} wrap_stats_sum;

/* Mark build_id as finished (its records may then be folded). */
int wrap_stats_end(const char *build_id);

/* Path of the stats file (malloc'd) or NULL. */
char *wrap_stats_path(void);

/* Aggregate the file: *last for the last build (or for build_id when not
 * NULL), *total for every record, summary lines included. *last_id (may be
 * NULL) receives the build id summarised in *last (malloc'd, NULL if the file
 * is empty). */
int wrap_stats_load(const char *path, const char *build_id,
                    wrap_stats_sum *last, wrap_stats_sum *total,
                    char **last_id);

/* The human-readable report of one summary. */
void wrap_stats_print(FILE *f, const char *title, const wrap_stats_sum *s);
/* A JSON object for one summary (no trailing newline). */
void wrap_stats_json(FILE *f, const wrap_stats_sum *s);

/* The current build id (static storage). */
const char *wrap_stats_build_id(void);

#endif
