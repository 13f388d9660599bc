/*
 * The scheduler's periodic checks, run every tick (sched.c): workers that
 * missed their heartbeats, leases that overran the action timeout,
 * keepalives and progress re-sends, queued actions no connected worker can
 * run, and actions no client waits for any more (the orphan timeout).
 */
#include "sched_int.h"

#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>

#define KEEPALIVE_MS 5000
#define PROGRESS_MS 30000
#define LEASE_GRACE_MS 60000
#define MISSED_BEATS 3
/* The orphan scan walks every known operation (up to max_retained), so
 * it runs a few times a second, not every tick. */
#define ORPHAN_SCAN_MS 250

typedef Distbuild__Worker__V1__WorkerCommand WorkerCmd;

typedef struct queue_scan {
  sched *s;
  int64_t now;
  sched_op **expired;
  size_t n, cap;
} queue_scan;

static int any_worker_matches(sched *s, const sched_op *op) {
  const sched_worker *w;
  for (w = s->workers; w; w = w->next)
    if (w->call && sched_platform_subset(&op->platform, &w->platform))
      return 1;
  return 0;
}

/* No worker that could run op has been connected for the queue timeout
 * (counted from the scheduler's start or from the last such worker
 * leaving): the action fails at once instead of waiting the timeout out
 * again, as Buildbarn drops a platform queue that no worker has served for
 * a while. A build then compiles locally at full speed: no worker at all,
 * or workers of another kind only (another CPU for -C target-cpu=native).
 * Actions whose worker just left still get the whole timeout for it to
 * come back. */
static int unmatched_too_long(const sched *s, const sched_op *op, int64_t now) {
  int64_t since = s->started_ms;
  for (size_t i = 0; i < s->n_departed; i++)
    if (s->departed[i].left_ms > since &&
        sched_platform_subset(&op->platform, &s->departed[i].platform))
      since = s->departed[i].left_ms;
  return now - since >= s->o.queue_timeout_ms;
}

static void scan_op(sched_op *op, void *ctx) {
  queue_scan *qs = ctx;

  if (op->matched_gen != qs->s->workers_gen || !op->matched_gen) {
    op->matched_gen = qs->s->workers_gen;
    op->matchable = any_worker_matches(qs->s, op);
  }
  if (op->matchable) {
    op->unmatched_since = 0;
    return;
  }
  if (!op->unmatched_since)
    op->unmatched_since = qs->now;
  if (qs->now - op->unmatched_since < qs->s->o.queue_timeout_ms &&
      !unmatched_too_long(qs->s, op, qs->now))
    return;
  if (qs->n == qs->cap) {
    size_t cap = qs->cap ? qs->cap * 2 : 16;
    sched_op **n = realloc(qs->expired, cap * sizeof(*n));
    if (!n)
      return; /* try again next tick */
    qs->expired = n;
    qs->cap = cap;
  }
  qs->expired[qs->n++] = op;
}

typedef struct orphan_scan {
  int64_t now, timeout_ms;
  int pending; /* orphans not yet due */
  sched_op **due;
  size_t n, cap;
} orphan_scan;

static int find_orphan(const char *key, void *val, void *ctx) {
  orphan_scan *os = ctx;
  sched_op *op = val;

  (void)key;
  if (op->stage == SCHED_STAGE_COMPLETED || op->watchers || !op->orphaned_ms)
    return 0;
  if (os->now - op->orphaned_ms < os->timeout_ms) {
    os->pending = 1;
    return 0;
  }
  if (os->n == os->cap) {
    size_t cap = os->cap ? os->cap * 2 : 16;
    sched_op **n = realloc(os->due, cap * sizeof(*n));
    if (!n) {
      os->pending = 1; /* try again next tick */
      return 0;
    }
    os->due = n;
    os->cap = cap;
  }
  os->due[os->n++] = op;
  return 0;
}

/* Cancel every operation that no client has watched for the orphan
 * timeout, as Buildbarn does: the client that wanted it is gone (a
 * cargo build interrupted, a wrapper that fell back to local rustc), so
 * its queue slot or worker slot is better spent on work someone waits
 * for. A queued op leaves the queue; a running one is killed on its
 * worker. Neither is cached; a later Execute starts afresh. */
static void cancel_orphans(sched *s, int64_t now) {
  orphan_scan os = {0};

  if (!s->orphans || s->o.orphan_timeout_ms < 0 ||
      now - s->last_orphan_scan_ms < ORPHAN_SCAN_MS)
    return;
  s->last_orphan_scan_ms = now;
  os.now = now;
  os.timeout_ms = s->o.orphan_timeout_ms;
  sched_map_sweep(s->ops, find_orphan, &os);
  s->orphans = os.pending;
  for (size_t i = 0; i < os.n; i++) {
    sched_op *op = os.due[i];
    sched_lease *l = op->lease;
    char where[160];

    if (l) {
      snprintf(where, sizeof(where), "killed on worker %s", l->w->id);
      sched_lease_cancel(l);
      sched_lease_end(s, l);
    } else {
      snprintf(where, sizeof(where), "dropped from the queue");
    }
    DB_INFO("sched", "job cancelled: %s (%s): no client for %.1fs", op->name,
            where, (double)(now - op->orphaned_ms) / 1000.0);
    sched_op_fail(s, op, RPC_CANCELLED,
                  "cancelled: no client waited for the action for %.1fs",
                  (double)(now - op->orphaned_ms) / 1000.0);
  }
  free(os.due);
}

static int resend_progress(const char *key, void *val, void *ctx) {
  sched_op *op = val;
  (void)key;
  if (op->watchers && op->stage != SCHED_STAGE_COMPLETED)
    sched_op_notify(ctx, op);
  return 0;
}

/* Ticks come every 50 ms. When the scheduler itself did not run for
 * longer than a heartbeat interval (stopped, swapped out, its host frozen
 * or suspended), the workers' heartbeats are still waiting unread in the
 * sockets: that gap must not count as silence, or one stall of the
 * scheduler would drop every worker and requeue every running action. */
static void forgive_stall(sched *s, int64_t now) {
  int64_t gap = now - s->last_tick_ms;
  sched_worker *w;

  s->last_tick_ms = now;
  if (gap <= s->o.heartbeat_ms)
    return;
  DB_WARN("sched",
          "the scheduler did not run for %lld ms; that time does not count "
          "against worker heartbeats",
          (long long)gap);
  for (w = s->workers; w; w = w->next)
    w->last_hb_ms = w->last_hb_ms + gap < now ? w->last_hb_ms + gap : now;
}

void sched_tick(sched *s, int64_t now) {
  sched_worker *w, *next;
  queue_scan qs = {0};
  size_t i;

  forgive_stall(s, now);
  for (w = s->workers; w; w = next) {
    sched_lease *l, *ln;
    next = w->next;
    if (now - w->last_hb_ms > MISSED_BEATS * s->o.heartbeat_ms) {
      char why[96];
      snprintf(why, sizeof(why), "no heartbeat for %lld ms",
               (long long)(now - w->last_hb_ms));
      sched_worker_gone(s, w, why);
      next = s->workers; /* the list may have changed; rescan */
      continue;
    }
    for (l = w->leases; l; l = ln) {
      ln = l->next;
      if (now - l->start_ms > l->op->timeout_ms + LEASE_GRACE_MS) {
        sched_lease_cancel(l);
        sched_lease_lost(s, l, "no result within the action timeout");
      }
    }
  }
  if (now - s->last_keepalive_ms >= KEEPALIVE_MS) {
    WorkerCmd ka = DISTBUILD__WORKER__V1__WORKER_COMMAND__INIT;
    ka.command_case = DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_KEEPALIVE;
    ka.keepalive = 1;
    s->last_keepalive_ms = now;
    for (w = s->workers; w; w = w->next)
      if (w->call)
        sched_worker_send(w->call, &ka);
  }
  if (now - s->last_progress_ms >= PROGRESS_MS) {
    s->last_progress_ms = now;
    sched_map_sweep(s->ops, resend_progress, s);
  }
  qs.s = s;
  qs.now = now;
  sched_queue_each(&s->q, scan_op, &qs);
  for (i = 0; i < qs.n; i++) {
    sched_op *op = qs.expired[i];
    char plat[512];
    sched_platform_str(&op->platform, plat, sizeof(plat));
    if (s->n_workers == 0)
      sched_op_fail(s, op, RPC_UNAVAILABLE,
                    "no worker connected within %.1fs (action platform %s)",
                    (double)s->o.queue_timeout_ms / 1000.0, plat);
    else
      sched_op_fail(s, op, RPC_FAILED_PRECONDITION,
                    "no connected worker matches the action platform %s "
                    "(none has for %.1fs)",
                    plat, (double)s->o.queue_timeout_ms / 1000.0);
  }
  free(qs.expired);
  cancel_orphans(s, now);
  sched_dispatch(s);
}
