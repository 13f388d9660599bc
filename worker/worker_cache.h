/*
 * The worker's local caches, under one directory:
 *
 *   files/XX/HASH-SIZE     raw blob, mode 0444, owned by the worker
 *   files/XX/HASH-SIZE-x   the same content as an executable, mode 0555
 *                          (the mode lives on the inode, and inputs are
 *                          hardlinked, so the two variants are two files)
 *   trees/HASH-SIZE/       a materialised Directory tree (files hardlinked
 *                          from files/), bound read-only into sandboxes
 *   tmp/                   partial trees; emptied at start-up
 *
 * Both caches have an LRU size budget. Entries in use are pinned and never
 * evicted; evicting a file only removes the cache's name for it, so
 * hardlinks already placed in action directories stay valid.
 * Concurrent requests for the same blob or tree are de-duplicated: the
 * first caller fetches (or builds), later callers wait for it.
 *
 * Threading: every function is thread-safe. Each caller passes its own
 * cas_client (a cas_client is single-threaded).
 * Errors: 0 or negative DB_E*.
 */
#ifndef WORKER_CACHE_H
#define WORKER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cas_client.h"
#include "reapi_digest.h"
#include "worker_fetch.h"

typedef struct wk_cache wk_cache;

typedef struct wk_cache_want {
  reapi_digest digest;
  int exec; /* 1: the 0555 variant */
} wk_cache_want;

typedef struct wk_fetch_stats {
  uint64_t hits;   /* wants already present (or being fetched by others) */
  uint64_t misses; /* wants fetched by this call */
  uint64_t bytes;  /* raw bytes fetched by this call */
} wk_fetch_stats;

typedef struct wk_cache_stats {
  uint64_t files, file_bytes, file_evictions;
  uint64_t trees, tree_bytes, tree_evictions;
} wk_cache_stats;

/* Open (creating dir and its layout) and index what is already there.
 * file_budget / tree_budget: LRU budgets in bytes (0 = unlimited).
 * *out owned by the caller: wk_cache_close(). */
int wk_cache_open(const char *dir, uint64_t file_budget, uint64_t tree_budget,
                  wk_cache **out);
void wk_cache_close(wk_cache *c); /* NULL ok; nothing may be pinned */

const char *wk_cache_dir(const wk_cache *c); /* borrowed */

/* How wk_cache_acquire splits a large download across threads (copied;
 * o->ctx must outlive the cache). Call before the cache is shared: the
 * default is one thread, with the caller's client. */
void wk_cache_set_fetch(wk_cache *c, const wk_fetch_opts *o);

void wk_cache_get_stats(wk_cache *c, wk_cache_stats *out);

/* Make every blob of w[0..n) present and pin it (duplicates allowed; each
 * occurrence is one pin). Missing blobs are downloaded with cas (split
 * across threads when large; see wk_cache_set_fetch); blobs another
 * thread is fetching are waited for. On success release the same array with
 * wk_cache_release(). On failure nothing stays pinned: DB_ENOTFOUND when the
 * CAS lacks a blob, DB_EUNAVAIL / DB_EIO / ... otherwise. st may be NULL. */
int wk_cache_acquire(wk_cache *c, cas_client *cas, const wk_cache_want *w,
                     size_t n, wk_fetch_stats *st);
void wk_cache_release(wk_cache *c, const wk_cache_want *w, size_t n);

/* Host path of a cached file into buf (valid to use while pinned). */
void wk_cache_path(const wk_cache *c, const reapi_digest *d, int exec,
                   char *buf, size_t len);

/* Fetch (through the cache) and read a whole blob: Action, Command,
 * Directory. *data malloc'd (caller frees; NULL for the empty blob). */
int wk_cache_read(wk_cache *c, cas_client *cas, const reapi_digest *d,
                  uint8_t **data, size_t *len, wk_fetch_stats *st);

/* Fills dir (created, empty) with the tree; 0 or DB_E*. */
typedef int (*wk_tree_build_fn)(void *ctx, const char *dir);

/* 1 if the tree for d is present (not pinned; a hint only). */
int wk_cache_tree_has(wk_cache *c, const reapi_digest *d);

/* Pin the materialised tree of Directory digest d, building it with
 * build(ctx, tmpdir) when absent (one builder at a time per digest; others
 * wait). bytes is the tree's logical size for the budget. On success the
 * tree's path is written to path and *built (may be NULL) says whether
 * this call built it. Release with wk_cache_tree_release(). */
int wk_cache_tree_acquire(wk_cache *c, const reapi_digest *d, uint64_t bytes,
                          wk_tree_build_fn build, void *ctx, char *path,
                          size_t pathlen, int *built);
void wk_cache_tree_release(wk_cache *c, const reapi_digest *d);

#endif
