/* Large downloads split across threads; see worker_fetch.h. */
#include "worker_fetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db_err.h"
#include "db_log.h"

#define MAX_GROUPS 16

typedef struct group {
  cas_blob_dst *dsts; /* copies of the caller's; data/len copied back */
  size_t *idx;        /* their positions in the caller's array */
  size_t n;
  uint64_t planned; /* bytes assigned */
  uint64_t raw;     /* bytes fetched */
  cas_client *cas;  /* the helper's own client, or NULL */
  int thread;       /* 1: running on a thread of its own */
  int rv;
} group;

typedef struct sized {
  const reapi_digest *d;
  size_t i;
} sized;

/* Larger first; equal digests next to each other. */
static int larger_first(const void *a, const void *b) {
  const reapi_digest *x = ((const sized *)a)->d, *y = ((const sized *)b)->d;
  if (x->size != y->size)
    return x->size < y->size ? 1 : -1;
  return strcmp(x->hash, y->hash);
}

static void *run_group(void *arg) {
  group *g = arg;
  g->rv = cas_client_download(g->cas, g->dsts, g->n, &g->raw, NULL);
  return NULL;
}

/* Keeps the first error, except that any other error beats "not found"
 * (which only says some blob is missing). */
static int merge_err(int rv, int next) {
  if (rv == 0 || (rv == DB_ENOTFOUND && next != 0))
    return next;
  return rv;
}

int wk_fetch_download(cas_client *cas, const wk_fetch_opts *o,
                      cas_blob_dst *dsts, size_t n, uint64_t *bytes_raw) {
  group g[MAX_GROUPS] = {{0}};
  pthread_t th[MAX_GROUPS];
  sized *order = NULL;
  uint64_t total = 0;
  size_t k = 1;
  int rv = DB_ENOMEM;

  if (bytes_raw)
    *bytes_raw = 0;
  for (size_t i = 0; i < n; i++) {
    dsts[i].data = NULL;
    dsts[i].len = 0;
    total += (uint64_t)dsts[i].digest.size;
  }
  if (o && o->make && o->threads > 1 && total >= o->min_bytes)
    k = (size_t)o->threads;
  if (k > MAX_GROUPS)
    k = MAX_GROUPS;
  if (k > n)
    k = n;
  if (k <= 1)
    return cas_client_download(cas, dsts, n, bytes_raw, NULL);

  order = malloc(n * sizeof(*order));
  if (!order)
    goto out;
  for (size_t i = 0; i < k; i++) {
    g[i].dsts = calloc(n, sizeof(*g[i].dsts));
    g[i].idx = calloc(n, sizeof(*g[i].idx));
    if (!g[i].dsts || !g[i].idx)
      goto out;
  }
  /* Largest first, each to the group with the fewest bytes so far: the
   * groups end up within one blob of each other. A digest wanted twice (as
   * a file and as an executable) stays in one group, whose download
   * fetches it once. */
  for (size_t i = 0; i < n; i++) {
    order[i].d = &dsts[i].digest;
    order[i].i = i;
  }
  qsort(order, n, sizeof(*order), larger_first);
  for (size_t j = 0, best = 0; j < n; j++) {
    if (j == 0 || !reapi_digest_eq(order[j].d, order[j - 1].d)) {
      best = 0;
      for (size_t i = 1; i < k; i++)
        if (g[i].planned < g[best].planned)
          best = i;
      g[best].planned += (uint64_t)order[j].d->size;
    }
    g[best].idx[g[best].n] = order[j].i;
    g[best].dsts[g[best].n++] = dsts[order[j].i];
  }

  DB_INFO("worker", "fetching %zu blobs (%.1f MB) over %zu connections", n,
          (double)total / 1e6, k);
  /* Group 0 is ours. Each other one gets a client and a thread; without
   * either, it waits for ours and uses our client. */
  g[0].cas = cas;
  for (size_t i = 1; i < k; i++)
    if (o->make(o->ctx, &g[i].cas) == 0)
      g[i].thread = pthread_create(&th[i], NULL, run_group, &g[i]) == 0;
    else
      g[i].cas = NULL;
  run_group(&g[0]);
  rv = g[0].rv;
  for (size_t i = 1; i < k; i++) {
    if (g[i].thread)
      pthread_join(th[i], NULL);
    else
      g[i].rv = cas_client_download(cas, g[i].dsts, g[i].n, &g[i].raw, NULL);
    rv = merge_err(rv, g[i].rv);
  }
  for (size_t i = 0; i < k; i++) {
    if (bytes_raw)
      *bytes_raw += g[i].raw;
    for (size_t j = 0; j < g[i].n; j++) {
      dsts[g[i].idx[j]].data = g[i].dsts[j].data;
      dsts[g[i].idx[j]].len = g[i].dsts[j].len;
    }
  }
out:
  for (size_t i = 1; i < k; i++)
    cas_client_free(g[i].cas);
  for (size_t i = 0; i < k; i++) {
    free(g[i].dsts);
    free(g[i].idx);
  }
  free(order);
  return rv;
}
