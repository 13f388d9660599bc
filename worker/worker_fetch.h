/*
 * Large downloads split across threads, for the worker's cache.
 *
 * One cas_client is one connection driven by one thread, so a big fetch
 * (the toolchain on a worker's first action: hundreds of MB to decompress,
 * hash and write) is bound to one core. wk_fetch_download splits such a
 * fetch into groups of about equal bytes and runs each group on a thread
 * of its own, with a client made for it by the caller's factory.
 *
 * Errors: 0 or negative DB_E*.
 */
#ifndef WORKER_FETCH_H
#define WORKER_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "cas_client.h"

/* Makes a new cas_client for one helper thread (the caller of
 * wk_fetch_download frees it). 0 or DB_E*. */
typedef int (*wk_fetch_client_fn)(void *ctx, cas_client **out);

typedef struct wk_fetch_opts {
  int threads;             /* at most this many downloads at once; <= 1 off */
  uint64_t min_bytes;      /* fetches smaller than this stay on one thread */
  wk_fetch_client_fn make; /* NULL: off */
  void *ctx;               /* for make (borrowed) */
} wk_fetch_opts;

/* As cas_client_download(cas, dsts, n, bytes_raw, NULL), on up to
 * o->threads threads when the fetch is large enough. cas (the caller's)
 * serves one group itself. A group whose helper client cannot be made is
 * fetched with cas after the others. o may be NULL (one thread). The first
 * error of any group is returned; the other groups still finish, so every
 * destination is either complete or absent (as cas_client_download
 * leaves it). */
int wk_fetch_download(cas_client *cas, const wk_fetch_opts *o,
                      cas_blob_dst *dsts, size_t n, uint64_t *bytes_raw);

#endif
