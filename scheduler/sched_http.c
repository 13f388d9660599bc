/* /healthz and Prometheus /metrics over HTTP/1.1 (libevent evhttp). */
#include "sched_int.h"

#include "db_err.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sched_http {
  sched *s;
  struct evhttp *http;
  int port;
};

static void metrics(const sched *s, struct evbuffer *b) {
  sched_stats st;
  uint64_t lookups;

  sched_get_stats(s, &st);
  lookups = st.cache_hits + st.cache_misses;
  evbuffer_add_printf(
      b,
      "# HELP distbuild_scheduler_queue_depth Actions waiting for a "
      "worker.\n"
      "# TYPE distbuild_scheduler_queue_depth gauge\n"
      "distbuild_scheduler_queue_depth %zu\n"
      "# HELP distbuild_scheduler_running Actions running on workers.\n"
      "# TYPE distbuild_scheduler_running gauge\n"
      "distbuild_scheduler_running %zu\n"
      "# HELP distbuild_scheduler_actions_total Actions by outcome.\n"
      "# TYPE distbuild_scheduler_actions_total counter\n"
      "distbuild_scheduler_actions_total{outcome=\"cache_hit\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"executed\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"failed\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"requeued\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"merged\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"rejected\"} %llu\n"
      "distbuild_scheduler_actions_total{outcome=\"cancelled\"} %llu\n"
      "# HELP distbuild_scheduler_execute_requests_total Execute calls "
      "accepted.\n"
      "# TYPE distbuild_scheduler_execute_requests_total counter\n"
      "distbuild_scheduler_execute_requests_total %llu\n"
      "# HELP distbuild_scheduler_action_cache_lookups_total Action-cache "
      "lookups before execution.\n"
      "# TYPE distbuild_scheduler_action_cache_lookups_total counter\n"
      "distbuild_scheduler_action_cache_lookups_total{result=\"hit\"} %llu\n"
      "distbuild_scheduler_action_cache_lookups_total{result=\"miss\"} %llu\n"
      "# HELP distbuild_scheduler_action_cache_hit_ratio Hits / lookups.\n"
      "# TYPE distbuild_scheduler_action_cache_hit_ratio gauge\n"
      "distbuild_scheduler_action_cache_hit_ratio %.6f\n"
      "# HELP distbuild_scheduler_workers Connected worker sessions.\n"
      "# TYPE distbuild_scheduler_workers gauge\n"
      "distbuild_scheduler_workers %zu\n"
      "# HELP distbuild_scheduler_worker_slots Slots of connected workers.\n"
      "# TYPE distbuild_scheduler_worker_slots gauge\n"
      "distbuild_scheduler_worker_slots %zu\n"
      "# HELP distbuild_scheduler_busy_slots Slots running an action.\n"
      "# TYPE distbuild_scheduler_busy_slots gauge\n"
      "distbuild_scheduler_busy_slots %zu\n"
      "# HELP distbuild_scheduler_operations Operations known (incl. "
      "completed ones kept for WaitExecution).\n"
      "# TYPE distbuild_scheduler_operations gauge\n"
      "distbuild_scheduler_operations %zu\n",
      st.queue_depth, st.running, (unsigned long long)st.cache_hits,
      (unsigned long long)st.executed, (unsigned long long)st.failed,
      (unsigned long long)st.requeued, (unsigned long long)st.merged,
      (unsigned long long)st.rejected, (unsigned long long)st.cancelled,
      (unsigned long long)st.submitted, (unsigned long long)st.cache_hits,
      (unsigned long long)st.cache_misses,
      lookups ? (double)st.cache_hits / (double)lookups : 0.0, st.workers,
      st.slots, st.busy_slots, st.operations);
  if (s->store) {
    cas_store_stats cs;
    cas_store_get_stats(s->store, &cs);
    evbuffer_add_printf(
        b,
        "# HELP distbuild_cas_blobs Blobs in the embedded CAS.\n"
        "# TYPE distbuild_cas_blobs gauge\n"
        "distbuild_cas_blobs %llu\n"
        "# HELP distbuild_cas_stored_bytes Bytes on disk (compressed).\n"
        "# TYPE distbuild_cas_stored_bytes gauge\n"
        "distbuild_cas_stored_bytes %llu\n"
        "# HELP distbuild_cas_evictions_total Blobs evicted for the budget.\n"
        "# TYPE distbuild_cas_evictions_total counter\n"
        "distbuild_cas_evictions_total %llu\n"
        "# HELP distbuild_cas_syncs_total Background sync rounds (--sync "
        "background).\n"
        "# TYPE distbuild_cas_syncs_total counter\n"
        "distbuild_cas_syncs_total %llu\n"
        "# HELP distbuild_cas_sync_failures_total Rounds whose syncfs failed "
        "(their blobs were dropped).\n"
        "# TYPE distbuild_cas_sync_failures_total counter\n"
        "distbuild_cas_sync_failures_total %llu\n",
        (unsigned long long)cs.blobs, (unsigned long long)cs.stored_bytes,
        (unsigned long long)cs.evictions, (unsigned long long)cs.syncs,
        (unsigned long long)cs.sync_failures);
  }
}

static void on_request(struct evhttp_request *req, void *arg) {
  sched_http *h = arg;
  const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
  struct evbuffer *b = evbuffer_new();
  struct evkeyvalq *out = evhttp_request_get_output_headers(req);

  if (!b) {
    evhttp_send_error(req, 500, "out of memory");
    return;
  }
  if (path && !strcmp(path, "/healthz")) {
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(b, "ok\n");
    evhttp_send_reply(req, 200, "OK", b);
  } else if (path && !strcmp(path, "/metrics")) {
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    metrics(h->s, b);
    evhttp_send_reply(req, 200, "OK", b);
  } else {
    evbuffer_add_printf(b, "not found; try /healthz or /metrics\n");
    evhttp_send_reply(req, 404, "Not Found", b);
  }
  evbuffer_free(b);
}

int sched_http_new(sched *s, struct event_base *base, const char *host_port,
                   sched_http **out) {
  struct evhttp_bound_socket *bs;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  const char *colon = strrchr(host_port, ':');
  char host[256];
  size_t hl;
  sched_http *h;
  long port;
  char *end;

  if (!colon)
    return DB_EINVAL;
  port = strtol(colon + 1, &end, 10);
  hl = (size_t)(colon - host_port);
  if (*end || port < 0 || port > 65535 || hl == 0 || hl >= sizeof(host))
    return DB_EINVAL;
  if (host_port[0] == '[' && hl >= 2 && host_port[hl - 1] == ']') {
    memcpy(host, host_port + 1, hl - 2);
    host[hl - 2] = '\0';
  } else {
    memcpy(host, host_port, hl);
    host[hl] = '\0';
  }
  h = calloc(1, sizeof(*h));
  if (!h)
    return DB_ENOMEM;
  h->s = s;
  h->http = evhttp_new(base);
  if (!h->http) {
    free(h);
    return DB_ENOMEM;
  }
  evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  evhttp_set_gencb(h->http, on_request, h);
  bs = evhttp_bind_socket_with_handle(h->http, host, (unsigned short)port);
  if (!bs) {
    sched_http_free(h);
    return DB_EUNAVAIL;
  }
  if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                  &sl) == 0) {
    if (ss.ss_family == AF_INET)
      h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  *out = h;
  return 0;
}

int sched_http_port(const sched_http *h) {
  return h ? h->port : 0;
}

void sched_http_free(sched_http *h) {
  if (!h)
    return;
  if (h->http)
    evhttp_free(h->http);
  free(h);
}
