/* /healthz and /metrics; see worker_http.h. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_err.h"
#include "worker_http.h"

struct wk_http {
  struct event_base *base;
  struct evhttp *http;
  pthread_t thread;
  int started;
  wk_metrics *m;
  wk_cache *cache;
  char id[128];
};

static void on_healthz(struct evhttp_request *req, void *arg) {
  struct evbuffer *b = evbuffer_new();
  (void)arg;
  if (!b) {
    evhttp_send_error(req, 500, NULL);
    return;
  }
  evbuffer_add_printf(b, "ok\n");
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain");
  evhttp_send_reply(req, 200, "OK", b);
  evbuffer_free(b);
}

#define METRIC(b, type, name, help, id, v)                                     \
  evbuffer_add_printf(b,                                                       \
                      "# HELP " name " " help "\n# TYPE " name " " type        \
                      "\n" name "{worker=\"%s\"} %llu\n",                      \
                      id, (unsigned long long)(v))

static void on_metrics(struct evhttp_request *req, void *arg) {
  wk_http *h = arg;
  wk_metrics *m = h->m;
  wk_cache_stats cs;
  struct evbuffer *b = evbuffer_new();

  if (!b) {
    evhttp_send_error(req, 500, NULL);
    return;
  }
  wk_cache_get_stats(h->cache, &cs);
  METRIC(b, "counter", "distbuild_worker_actions_run_total",
         "Actions executed.", h->id, atomic_load(&m->actions_run));
  METRIC(b, "counter", "distbuild_worker_actions_failed_total",
         "Actions with a non-zero exit code or a non-OK status.", h->id,
         atomic_load(&m->actions_failed));
  METRIC(b, "counter", "distbuild_worker_actions_infra_error_total",
         "Actions that failed for infrastructure reasons.", h->id,
         atomic_load(&m->actions_infra));
  METRIC(b, "counter", "distbuild_worker_actions_timeout_total",
         "Actions killed by their timeout.", h->id,
         atomic_load(&m->actions_timeout));
  METRIC(b, "counter", "distbuild_worker_actions_cancelled_total",
         "Running actions killed because the scheduler cancelled them.", h->id,
         atomic_load(&m->actions_cancelled));
  METRIC(b, "gauge", "distbuild_worker_slots", "Execution slots.", h->id,
         atomic_load(&m->slots));
  METRIC(b, "gauge", "distbuild_worker_busy_slots", "Slots running an action.",
         h->id, atomic_load(&m->busy_slots));
  METRIC(b, "counter", "distbuild_worker_cache_hits_total",
         "Input blobs found in the local cache.", h->id,
         atomic_load(&m->cache_hits));
  METRIC(b, "counter", "distbuild_worker_cache_misses_total",
         "Input blobs fetched from the CAS.", h->id,
         atomic_load(&m->cache_misses));
  METRIC(b, "counter", "distbuild_worker_bytes_fetched_total",
         "Raw bytes fetched from the CAS.", h->id,
         atomic_load(&m->bytes_fetched));
  METRIC(b, "counter", "distbuild_worker_bytes_uploaded_total",
         "Raw output bytes uploaded.", h->id, atomic_load(&m->bytes_uploaded));
  METRIC(b, "counter", "distbuild_worker_tree_hits_total",
         "Immutable subtrees bound from the tree cache.", h->id,
         atomic_load(&m->tree_hits));
  METRIC(b, "counter", "distbuild_worker_tree_builds_total",
         "Immutable subtrees materialised.", h->id,
         atomic_load(&m->tree_builds));
  METRIC(b, "counter", "distbuild_worker_sessions_total",
         "Sessions opened with the scheduler.", h->id,
         atomic_load(&m->sessions));
  METRIC(b, "gauge", "distbuild_worker_connected",
         "1 while a session with the scheduler is open.", h->id,
         atomic_load(&m->connected));
  METRIC(b, "counter", "distbuild_worker_completes_failed_total",
         "Results that could not be reported.", h->id,
         atomic_load(&m->completes_failed));
  METRIC(b, "gauge", "distbuild_worker_cache_files", "Files in the cache.",
         h->id, cs.files);
  METRIC(b, "gauge", "distbuild_worker_cache_bytes", "Bytes in the file cache.",
         h->id, cs.file_bytes);
  METRIC(b, "counter", "distbuild_worker_cache_evictions_total",
         "Files evicted from the cache.", h->id, cs.file_evictions);
  METRIC(b, "gauge", "distbuild_worker_tree_cache_trees",
         "Trees in the tree cache.", h->id, cs.trees);
  METRIC(b, "gauge", "distbuild_worker_tree_cache_bytes",
         "Bytes of the trees in the tree cache.", h->id, cs.tree_bytes);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; version=0.0.4");
  evhttp_send_reply(req, 200, "OK", b);
  evbuffer_free(b);
}

static void use_pthreads(void) {
  evthread_use_pthreads();
}

static void *http_main(void *arg) {
  wk_http *h = arg;
  event_base_dispatch(h->base);
  return NULL;
}

int wk_http_start(int port, const char *worker_id, wk_metrics *m,
                  wk_cache *cache, wk_http **out) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  wk_http *h = calloc(1, sizeof(*h));
  int rv = DB_ENOMEM;

  *out = NULL;
  if (!h)
    return DB_ENOMEM;
  pthread_once(&once, use_pthreads);
  h->m = m;
  h->cache = cache;
  snprintf(h->id, sizeof(h->id), "%s", worker_id);
  h->base = event_base_new();
  if (!h->base)
    goto fail;
  h->http = evhttp_new(h->base);
  if (!h->http)
    goto fail;
  evhttp_set_cb(h->http, "/healthz", on_healthz, h);
  evhttp_set_cb(h->http, "/metrics", on_metrics, h);
  rv = DB_EUNAVAIL;
  if (evhttp_bind_socket(h->http, "127.0.0.1", (ev_uint16_t)port) != 0)
    goto fail;
  rv = DB_ESYS;
  if (pthread_create(&h->thread, NULL, http_main, h) != 0)
    goto fail;
  h->started = 1;
  *out = h;
  return 0;
fail:
  wk_http_stop(h);
  return rv;
}

void wk_http_stop(wk_http *h) {
  if (!h)
    return;
  if (h->started) {
    event_base_loopbreak(h->base);
    pthread_join(h->thread, NULL);
  }
  if (h->http)
    evhttp_free(h->http);
  if (h->base)
    event_base_free(h->base);
  free(h);
}
