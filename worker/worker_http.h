/*
 * The worker's small HTTP endpoint on 127.0.0.1:port (libevent evhttp, own
 * thread): GET /healthz -> "ok", GET /metrics -> Prometheus text format.
 */
#ifndef WORKER_HTTP_H
#define WORKER_HTTP_H

#include "worker_cache.h"
#include "worker_int.h"

typedef struct wk_http wk_http;

/* Bind and start serving. m and cache are borrowed and must outlive the
 * server. *out owned by the caller: wk_http_stop(). DB_EUNAVAIL when the
 * port cannot be bound. */
int wk_http_start(int port, const char *worker_id, wk_metrics *m,
                  wk_cache *cache, wk_http **out);
void wk_http_stop(wk_http *h); /* NULL ok; joins the thread */

#endif
