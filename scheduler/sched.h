/*
 * libscheduler: the REAPI Execution service (Execute, WaitExecution) and
 * the worker protocol (distbuild.worker.v1.WorkerService) on an rpc_server
 * that also hosts the CAS services.
 *
 * Pipeline of one Execute: load + validate the Action, action-cache lookup
 * (unless skip_cache_lookup or do_not_cache), merge with an identical
 * in-flight operation, check that every input blob exists, queue (fair
 * share between tool_invocation_ids), dispatch to a worker whose platform
 * is a superset of the action's, lease with heartbeats, requeue on worker
 * loss (bounded attempts), store cacheable successes in the action cache.
 *
 * Threading: everything runs on the event_base's loop thread (the same
 * loop as the rpc_server). No function here is thread-safe.
 *
 * Errors: 0 or a negative DB_E* code.
 */
#ifndef SCHED_H
#define SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "cas_store.h"
#include "rpc_server.h"

struct event_base;

typedef struct sched sched;

typedef struct sched_opts {
  int64_t heartbeat_ms;       /* worker heartbeat interval; 0 = 1000. A
                                 worker silent for 3 intervals is dead. */
  int64_t queue_timeout_ms;   /* how long an action no connected worker
                                 can run may wait; 0 = 60000. Once no
                                 worker at all has been connected for
                                 this long, new actions fail at once. */
  int64_t max_timeout_ms;     /* largest Action.timeout accepted;
                                 0 = 3600000 */
  int64_t default_timeout_ms; /* imposed when the Action has none;
                                 0 = 600000 (capped at max_timeout_ms) */
  int64_t retention_ms;       /* completed operations stay resolvable by
                                 WaitExecution this long; 0 = 600000 */
  size_t max_retained;        /* ... and at most this many; 0 = 50000 */
  int max_attempts;           /* dispatches per action before it fails
                                 UNAVAILABLE; 0 = 3 */
  int64_t orphan_timeout_ms;  /* an action no Execute / WaitExecution
                                 stream has watched for this long is
                                 cancelled: dropped from the queue, or
                                 killed on its worker, and not cached;
                                 0 = 60000, < 0 = never */
} sched_opts;

/* Counters and gauges for /metrics and tests. */
typedef struct sched_stats {
  uint64_t submitted;    /* Execute calls accepted (incl. hits, merges) */
  uint64_t cache_hits;   /* answered from the action cache */
  uint64_t cache_misses; /* looked up, not found (or incomplete) */
  uint64_t merged;       /* attached to an identical in-flight action */
  uint64_t executed;     /* completed by a worker, status OK, exit 0 */
  uint64_t failed;       /* completed with non-OK status or exit != 0 */
  uint64_t requeued;     /* attempts lost with a worker and requeued */
  uint64_t rejected;     /* Execute refused (missing inputs, invalid) */
  uint64_t cancelled;    /* cancelled: no client waited for them */
  size_t queue_depth;    /* operations waiting for a worker */
  size_t running;        /* operations on a worker */
  size_t operations;     /* operations known (incl. retained ones) */
  size_t workers;        /* connected worker sessions */
  size_t slots;          /* total slots of connected workers */
  size_t busy_slots;     /* slots running an action */
} sched_stats;

/*
 * Create the scheduler and register Execution and WorkerService methods on
 * srv. base, srv and store are borrowed and must outlive the scheduler;
 * opts may be NULL. The CAS services are registered separately
 * (cas_service with exec_enabled = 1). *out owned by the caller.
 */
int sched_new(struct event_base *base, rpc_server *srv, cas_store *store,
              const sched_opts *opts, sched **out);

/* Begin shutdown: end every worker stream and every waiting Execute /
 * WaitExecution stream with UNAVAILABLE so rpc_server_shutdown() drains
 * at once. Later calls are refused with UNAVAILABLE. */
void sched_shutdown(sched *s);

/* Free after rpc_server_free() (open calls point at the scheduler). NULL
 * is a no-op. */
void sched_free(sched *s);

void sched_get_stats(const sched *s, sched_stats *out);

/* ---- HTTP: /healthz and Prometheus /metrics (libevent evhttp) ---- */

typedef struct sched_http sched_http;

/* Serve on "HOST:PORT" (port 0 picks one) on base. s is borrowed. */
int sched_http_new(sched *s, struct event_base *base, const char *host_port,
                   sched_http **out);
int sched_http_port(const sched_http *h);
void sched_http_free(sched_http *h); /* NULL ok */

#endif
