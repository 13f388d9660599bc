/*
 * Internal declarations shared by the worker's modules (not installed).
 */
#ifndef WORKER_INT_H
#define WORKER_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "reapi_pb.h"

/* ---- metrics (worker_http.c exports them) -------------------------------- */

typedef struct wk_metrics {
  atomic_uint_fast64_t actions_run;       /* completed executions */
  atomic_uint_fast64_t actions_failed;    /* exit code != 0 or non-OK status */
  atomic_uint_fast64_t actions_infra;     /* non-OK ExecuteResponse.status */
  atomic_uint_fast64_t actions_timeout;   /* DEADLINE_EXCEEDED */
  atomic_uint_fast64_t actions_cancelled; /* killed on the scheduler's word */
  atomic_uint_fast64_t busy_slots;        /* gauge */
  atomic_uint_fast64_t slots;             /* gauge */
  atomic_uint_fast64_t cache_hits;        /* input files found locally */
  atomic_uint_fast64_t cache_misses;      /* input files fetched */
  atomic_uint_fast64_t bytes_fetched;     /* raw bytes downloaded */
  atomic_uint_fast64_t bytes_uploaded;    /* raw bytes uploaded */
  atomic_uint_fast64_t tree_hits;         /* subtrees bound from tree cache */
  atomic_uint_fast64_t tree_builds;       /* subtrees materialised */
  atomic_uint_fast64_t sessions;          /* successful Connects */
  atomic_uint_fast64_t connected;         /* gauge: session open */
  atomic_uint_fast64_t completes_failed;  /* Complete calls given up */
} wk_metrics;

/* ---- arena: many small allocations freed at once ------------------------- */

typedef struct wk_arena {
  struct wk_arena_blk *head;
} wk_arena;

/* Zeroed memory owned by the arena; NULL on OOM. */
void *wk_arena_alloc(wk_arena *a, size_t n);
char *wk_arena_strdup(wk_arena *a, const char *s);
char *wk_arena_printf(wk_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Copy d into an arena-owned PbDigest; NULL on OOM. */
PbDigest *wk_arena_digest(wk_arena *a, const reapi_digest *d);
void wk_arena_free(wk_arena *a); /* frees everything; a stays usable */

/* ---- small helpers (worker_util.c) --------------------------------------- */

/* Wall clock now as a Timestamp allocated in a. */
Google__Protobuf__Timestamp *wk_now_ts(wk_arena *a);
/* Remove a tree (chmod'ing read-only directories first). Best effort;
 * returns 0 or DB_E*. A missing path is success. */
int wk_rmrf(const char *path);
/* snprintf into buf that reports truncation: 0, or DB_EINVAL when the
 * result did not fit (a silently cut path would name another file). */
int wk_pathf(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* mkdir -p with mode for the created components. */
int wk_mkdirs(const char *path, int mode);
/* Is rel a clean relative path ("a/b", no "", ".", ".." components, no
 * leading or trailing '/')? The empty string is allowed when allow_empty. */
int wk_relpath_ok(const char *rel, int allow_empty);
/* Copy a regular file (data only) to dst created with mode. */
int wk_copy_file(const char *src, const char *dst, int mode);
/* Read exactly n bytes from fd into buf (EINTR retried). 0, or DB_EIO on
 * an error or a file shorter than n. */
int wk_read_full(int fd, void *buf, size_t n);
/* Parse "10G", "512M", "4096" (binary units). 0 or DB_EINVAL. */
int wk_parse_size(const char *s, uint64_t *out);

#endif
