/* Scheduler lifecycle, the periodic tick, ids and platform helpers. */
#include "sched_int.h"

#include "db_err.h"
#include "db_log.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define TICK_MS 50

char *sched_strdup(const char *s) {
  return strdup(s ? s : "");
}

void sched_new_id(sched *s, const char *prefix, char *buf, size_t len) {
  /* Unique per process (counter) and across restarts (random seed). */
  snprintf(buf, len, "%s%016llx%08llx", prefix, (unsigned long long)s->id_seed,
           (unsigned long long)++s->id_ctr);
}

int sched_platform_copy(sched_platform *dst, const PbPlatform *src) {
  size_t i;

  memset(dst, 0, sizeof(*dst));
  if (!src || src->n_properties == 0)
    return 0;
  dst->p = calloc(src->n_properties, sizeof(*dst->p));
  if (!dst->p)
    return DB_ENOMEM;
  for (i = 0; i < src->n_properties; i++) {
    /* exec-root-path says where the worker mounts the input root; any
     * worker can honour it, so it is not matched against workers. */
    if (!strcmp(src->properties[i]->name, REAPI_PROP_EXEC_ROOT))
      continue;
    sched_prop *pr = &dst->p[dst->n++];
    pr->name = sched_strdup(src->properties[i]->name);
    pr->value = sched_strdup(src->properties[i]->value);
    if (!pr->name || !pr->value) {
      sched_platform_clear(dst);
      return DB_ENOMEM;
    }
  }
  return 0;
}

void sched_platform_clear(sched_platform *p) {
  size_t i;
  for (i = 0; i < p->n; i++) {
    free(p->p[i].name);
    free(p->p[i].value);
  }
  free(p->p);
  memset(p, 0, sizeof(*p));
}

int sched_platform_subset(const sched_platform *want,
                          const sched_platform *have) {
  size_t i, j;
  for (i = 0; i < want->n; i++) {
    for (j = 0; j < have->n; j++)
      if (!strcmp(want->p[i].name, have->p[j].name) &&
          !strcmp(want->p[i].value, have->p[j].value))
        break;
    if (j == have->n)
      return 0;
  }
  return 1;
}

void sched_platform_str(const sched_platform *p, char *buf, size_t len) {
  size_t i, off = 0;

  if (len == 0)
    return;
  buf[0] = '\0';
  if (p->n == 0) {
    snprintf(buf, len, "(empty)");
    return;
  }
  for (i = 0; i < p->n && off < len; i++) {
    int n = snprintf(buf + off, len - off, "%s%s=%s", i ? "," : "",
                     p->p[i].name, p->p[i].value);
    if (n < 0)
      break;
    off += (size_t)n;
  }
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  sched *s = arg;
  int64_t now = rpc_now_ms();

  (void)fd;
  (void)what;
  if (s->stopping)
    return;
  sched_tick(s, now);
  sched_ops_gc(s, now);
}

int sched_new(struct event_base *base, rpc_server *srv, cas_store *store,
              const sched_opts *opts, sched **out) {
  struct timeval tv = {0, TICK_MS * 1000};
  sched *s;
  int rc = DB_ENOMEM;

  s = calloc(1, sizeof(*s));
  if (!s)
    return DB_ENOMEM;
  s->base = base;
  s->srv = srv;
  s->store = store;
  if (opts)
    s->o = *opts;
  if (s->o.heartbeat_ms <= 0)
    s->o.heartbeat_ms = 1000;
  if (s->o.queue_timeout_ms <= 0)
    s->o.queue_timeout_ms = 60000;
  if (s->o.max_timeout_ms <= 0)
    s->o.max_timeout_ms = 3600000;
  if (s->o.default_timeout_ms <= 0)
    s->o.default_timeout_ms = 600000;
  if (s->o.default_timeout_ms > s->o.max_timeout_ms)
    s->o.default_timeout_ms = s->o.max_timeout_ms;
  if (s->o.orphan_timeout_ms == 0)
    s->o.orphan_timeout_ms = 60000;
  if (s->o.retention_ms <= 0)
    s->o.retention_ms = 600000;
  if (s->o.max_retained == 0)
    s->o.max_retained = 50000;
  if (s->o.max_attempts <= 0)
    s->o.max_attempts = 3;
  if (getrandom(&s->id_seed, sizeof(s->id_seed), 0) != sizeof(s->id_seed))
    s->id_seed = (uint64_t)time(NULL) ^ ((uint64_t)rpc_now_ms() << 20);
  if (sched_map_new(&s->ops) || sched_map_new(&s->inflight) ||
      sched_map_new(&s->leases) || sched_map_new(&s->trees) ||
      sched_queue_init(&s->q))
    goto fail;
  s->last_tick_ms = s->started_ms = rpc_now_ms();
  s->tick = event_new(base, -1, EV_PERSIST, on_tick, s);
  if (!s->tick || event_add(s->tick, &tv))
    goto fail;
  rc = sched_exec_register(s);
  if (rc == 0)
    rc = sched_workers_register(s);
  if (rc)
    goto fail;
  *out = s;
  return 0;
fail:
  sched_free(s);
  return rc;
}

void sched_shutdown(sched *s) {
  if (!s || s->stopping)
    return;
  s->stopping = 1;
  sched_workers_shutdown(s);
  sched_exec_shutdown(s);
}

static int free_op(const char *key, void *val, void *ctx) {
  (void)key;
  (void)ctx;
  sched_op_free(val);
  return 1;
}

void sched_free(sched *s) {
  if (!s)
    return;
  s->stopping = 1;
  if (s->tick)
    event_free(s->tick);
  sched_workers_free(s);
  for (size_t i = 0; i < s->n_departed; i++)
    sched_platform_clear(&s->departed[i].platform);
  sched_queue_clear(&s->q);
  if (s->ops)
    sched_map_sweep(s->ops, free_op, NULL);
  sched_map_free(s->ops);
  sched_map_free(s->inflight);
  sched_map_free(s->leases);
  sched_map_free(s->trees);
  free(s);
}

void sched_get_stats(const sched *s, sched_stats *out) {
  const sched_worker *w;

  memset(out, 0, sizeof(*out));
  out->submitted = s->c.submitted;
  out->cache_hits = s->c.cache_hits;
  out->cache_misses = s->c.cache_misses;
  out->merged = s->c.merged;
  out->executed = s->c.executed;
  out->failed = s->c.failed;
  out->requeued = s->c.requeued;
  out->rejected = s->c.rejected;
  out->cancelled = s->c.cancelled;
  out->queue_depth = s->q.depth;
  out->running = s->running;
  out->operations = sched_map_size(s->ops);
  for (w = s->workers; w; w = w->next) {
    out->workers++;
    out->slots += (size_t)w->slots;
    out->busy_slots += (size_t)w->busy;
  }
}
