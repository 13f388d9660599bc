/*
 * WorkerService: worker sessions (Connect stream), heartbeats, leases,
 * dispatch and requeue.
 *
 * A session lives from Connect until its stream closes, it misses
 * heartbeats for 3 intervals, or the same worker_id connects again. Each
 * dispatch creates a lease (unique id per attempt). When a session ends,
 * its leases are lost: the op goes back to the front of its invocation's
 * queue unless it already had max_attempts dispatches, in which case it
 * fails with UNAVAILABLE. A Complete naming an unknown or stale lease is
 * answered OK and otherwise ignored (the worker has nothing to retry).
 */
#include "sched_int.h"

#include "db_err.h"
#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKER_PREFIX "/distbuild.worker.v1.WorkerService/"

typedef Distbuild__Worker__V1__ConnectRequest ConnReq;
typedef Distbuild__Worker__V1__WorkerCommand WorkerCmd;
typedef Distbuild__Worker__V1__Assignment Assignment;
typedef Distbuild__Worker__V1__HeartbeatRequest HbReq;
typedef Distbuild__Worker__V1__HeartbeatResponse HbResp;
typedef Distbuild__Worker__V1__CompleteRequest CompReq;
typedef Distbuild__Worker__V1__CompleteResponse CompResp;
typedef Distbuild__Worker__V1__ProgressRequest ProgReq;
typedef Distbuild__Worker__V1__ProgressResponse ProgResp;

int sched_worker_send(rpc_call *call, const WorkerCmd *cmd) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = reapi_pb_pack(&cmd->base, &buf, &len);

  if (rc == 0)
    rc = rpc_call_send(call, buf ? buf : (const uint8_t *)"", len);
  free(buf);
  return rc;
}

static void reply(rpc_call *call, const ProtobufCMessage *m) {
  uint8_t *buf = NULL;
  size_t len = 0;

  if (reapi_pb_pack(m, &buf, &len)) {
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  rpc_call_send(call, buf ? buf : (const uint8_t *)"", len);
  rpc_call_finish(call, RPC_OK, NULL);
  free(buf);
}

void sched_lease_cancel(sched_lease *l) {
  WorkerCmd c = DISTBUILD__WORKER__V1__WORKER_COMMAND__INIT;

  c.command_case =
      DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_CANCEL_LEASE_ID;
  c.cancel_lease_id = l->id;
  if (l->w->call)
    sched_worker_send(l->w->call, &c);
}

/* Free a lease and its slot; the op is left as it is. */
void sched_lease_end(sched *s, sched_lease *l) {
  sched_worker *w = l->w;

  if (l->prev)
    l->prev->next = l->next;
  else
    w->leases = l->next;
  if (l->next)
    l->next->prev = l->prev;
  w->busy--;
  s->running--;
  sched_map_del(s->leases, l->id);
  if (l->op->lease == l)
    l->op->lease = NULL;
  free(l);
}

/* The attempt behind l is lost: requeue its op or fail it. */
void sched_lease_lost(sched *s, sched_lease *l, const char *reason) {
  sched_op *op = l->op;
  char wid[128];

  snprintf(wid, sizeof(wid), "%s", l->w->id);
  sched_lease_end(s, l);
  free(op->last_error);
  op->last_error = NULL;
  if (asprintf(&op->last_error, "worker %s: %s", wid, reason) < 0)
    op->last_error = NULL;
  if (op->attempts >= s->o.max_attempts) {
    sched_op_fail(s, op, RPC_UNAVAILABLE,
                  "action failed after %d attempts; last attempt: %s",
                  op->attempts,
                  op->last_error ? op->last_error : "worker lost");
    return;
  }
  op->stage = SCHED_STAGE_QUEUED;
  if (sched_queue_push(&s->q, op, op->invocation, 1)) {
    sched_op_fail(s, op, RPC_RESOURCE_EXHAUSTED, "out of memory requeueing");
    return;
  }
  s->c.requeued++;
  DB_INFO("sched", "job requeued: %s (attempt %d lost on worker %s: %s)",
          op->name, op->attempts, wid, reason);
  sched_op_notify(s, op);
}

/* Remember that a worker of this platform left just now (takes the
 * platform over). Entries older than the queue timeout are dropped; when
 * every slot holds a recent one, the oldest goes. */
static void remember_departed(sched *s, sched_platform *p) {
  int64_t now = rpc_now_ms();
  size_t i, j, oldest = 0;

  for (i = j = 0; i < s->n_departed; i++) {
    if (now - s->departed[i].left_ms >= s->o.queue_timeout_ms) {
      sched_platform_clear(&s->departed[i].platform);
      continue;
    }
    s->departed[j++] = s->departed[i];
  }
  s->n_departed = j;
  for (i = 0; i < s->n_departed; i++)
    if (sched_platform_subset(p, &s->departed[i].platform) &&
        sched_platform_subset(&s->departed[i].platform, p)) {
      s->departed[i].left_ms = now;
      sched_platform_clear(p);
      return;
    }
  if (s->n_departed == SCHED_DEPARTED_MAX) {
    for (i = 1; i < s->n_departed; i++)
      if (s->departed[i].left_ms < s->departed[oldest].left_ms)
        oldest = i;
    sched_platform_clear(&s->departed[oldest].platform);
    s->departed[oldest] = s->departed[--s->n_departed];
  }
  s->departed[s->n_departed].platform = *p;
  s->departed[s->n_departed++].left_ms = now;
  p->n = 0;
  p->p = NULL;
}

/* End a worker session: requeue its leases, free it. */
void sched_worker_gone(sched *s, sched_worker *w, const char *reason) {
  int n = 0;

  if (w->call) {
    rpc_call_set_data(w->call, NULL);
    rpc_call_finish(w->call, RPC_UNAVAILABLE, reason);
    w->call = NULL;
  }
  if (w->prev)
    w->prev->next = w->next;
  else
    s->workers = w->next;
  if (w->next)
    w->next->prev = w->prev;
  s->n_workers--;
  s->workers_gen++;
  while (w->leases) {
    sched_lease_lost(s, w->leases, reason);
    n++;
  }
  DB_INFO("sched", "worker left: %s (%s); %d action%s requeued or failed",
          w->id, reason, n, n == 1 ? "" : "s");
  remember_departed(s, &w->platform);
  free(w->id);
  free(w->session);
  free(w);
  sched_dispatch(s);
}

/* The matching worker with the most free slots, or NULL to wait. The
 * worker op's last attempt failed on (its disk may be full, its CAS link
 * broken) is used only when no other matching worker is connected: while
 * one is, the op waits for it, busy or not. */
static sched_worker *pick_worker(sched *s, const sched_op *op) {
  sched_worker *w, *best = NULL, *avoided = NULL;
  int best_free = 0, others = 0;

  for (w = s->workers; w; w = w->next) {
    int fr = w->slots - w->busy;
    if (!w->call || !sched_platform_subset(&op->platform, &w->platform))
      continue;
    if (op->avoid_worker && w->serial == op->avoid_worker) {
      if (fr > 0)
        avoided = w;
      continue;
    }
    others = 1;
    if (fr > best_free) {
      best = w;
      best_free = fr;
    }
  }
  return best ? best : others ? NULL : avoided;
}

static int can_run(sched_op *op, void *ctx) {
  return pick_worker(ctx, op) != NULL;
}

/* Dispatch op to w. Returns 0, or DB_E* with op untouched (not queued). */
static int assign(sched *s, sched_op *op, sched_worker *w) {
  WorkerCmd cmd = DISTBUILD__WORKER__V1__WORKER_COMMAND__INIT;
  Assignment as = DISTBUILD__WORKER__V1__ASSIGNMENT__INIT;
  PbDigest pd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  reapi_digest ad = op->action;
  sched_lease *l;
  int rc;

  l = calloc(1, sizeof(*l));
  if (!l)
    return DB_ENOMEM;
  sched_new_id(s, "lease-", l->id, sizeof(l->id));
  reapi_pb_digest_set(&pd, &ad);
  ts.seconds = op->queued_wall_s;
  ts.nanos = op->queued_wall_ns;
  as.lease_id = l->id;
  as.instance_name = op->instance;
  as.action_digest = &pd;
  as.queued_timestamp = &ts;
  as.timeout_ms = op->timeout_ms;
  as.attempt = op->attempts + 1;
  as.action.data = op->action_pb;
  as.action.len = op->action_len;
  as.command.data = op->command_pb;
  as.command.len = op->command_len;
  as.n_directories = op->n_dirs;
  as.directories = op->dirs;
  cmd.command_case = DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_ASSIGN;
  cmd.assign = &as;
  rc = sched_map_put(s->leases, l->id, l);
  if (rc == 0) {
    rc = sched_worker_send(w->call, &cmd);
    if (rc)
      sched_map_del(s->leases, l->id);
  }
  if (rc) {
    free(l);
    return rc;
  }
  op->attempts++;
  op->stage = SCHED_STAGE_EXECUTING;
  op->lease = l;
  l->op = op;
  l->w = w;
  l->start_ms = rpc_now_ms();
  l->next = w->leases;
  if (w->leases)
    w->leases->prev = l;
  w->leases = l;
  w->busy++;
  s->running++;
  DB_INFO("sched",
          "dispatching %s (action %.12s/%lld) to worker %s "
          "(attempt %d, %s)",
          op->name, op->action.hash, (long long)op->action.size, w->id,
          op->attempts, l->id);
  sched_op_notify(s, op);
  return 0;
}

void sched_dispatch(sched *s) {
  if (s->stopping)
    return;
  if (s->dispatching) {
    s->redispatch = 1;
    return;
  }
  s->dispatching = 1;
  do {
    s->redispatch = 0;
    for (;;) {
      sched_worker *w;
      sched_op *op;
      int free_slots = 0;

      for (w = s->workers; w; w = w->next)
        if (w->call && w->busy < w->slots)
          free_slots = 1;
      if (!free_slots || !s->q.depth)
        break;
      op = sched_queue_pick(&s->q, can_run, s);
      if (!op)
        break;
      w = pick_worker(s, op);
      if (assign(s, op, w)) {
        /* Back to the front; the worker's stream is broken. */
        sched_queue_push(&s->q, op, op->invocation, 1);
        sched_worker_gone(s, w, "cannot send assignment");
      }
    }
  } while (s->redispatch && !s->stopping);
  s->dispatching = 0;
}

static sched_worker *find_session(sched *s, const char *session) {
  sched_worker *w;
  for (w = s->workers; w; w = w->next)
    if (!strcmp(w->session, session))
      return w;
  return NULL;
}

static void connect_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  sched *s = rpc_call_method_data(call);
  WorkerCmd first = DISTBUILD__WORKER__V1__WORKER_COMMAND__INIT;
  sched_worker *w = NULL, *old;
  ConnReq *req;
  char plat[512];

  req = distbuild__worker__v1__connect_request__unpack(NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed ConnectRequest");
    return;
  }
  if (s->stopping) {
    rpc_call_finish(call, RPC_UNAVAILABLE, "scheduler shutting down");
    goto out;
  }
  if (!req->worker_id[0] || !req->session_id[0]) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "ConnectRequest needs worker_id and session_id");
    goto out;
  }
  for (old = s->workers; old; old = old->next)
    if (!strcmp(old->id, req->worker_id) ||
        !strcmp(old->session, req->session_id))
      break;
  if (old)
    sched_worker_gone(s, old, "replaced by a new session");
  w = calloc(1, sizeof(*w));
  if (!w || !(w->id = strdup(req->worker_id)) ||
      !(w->session = strdup(req->session_id)) ||
      sched_platform_copy(&w->platform, req->platform)) {
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    goto fail;
  }
  w->slots = req->slots > 0 ? req->slots : 1;
  w->call = call;
  w->joined_ms = w->last_hb_ms = rpc_now_ms();
  w->serial = ++s->worker_serial;
  first.command_case = DISTBUILD__WORKER__V1__WORKER_COMMAND__COMMAND_KEEPALIVE;
  first.keepalive = 1;
  first.heartbeat_interval_ms = s->o.heartbeat_ms;
  if (sched_worker_send(call, &first)) {
    rpc_call_finish(call, RPC_INTERNAL, "cannot send the first command");
    goto fail;
  }
  rpc_call_set_data(call, w);
  w->next = s->workers;
  if (s->workers)
    s->workers->prev = w;
  s->workers = w;
  s->n_workers++;
  s->workers_gen++;
  sched_platform_str(&w->platform, plat, sizeof(plat));
  DB_INFO("sched", "worker joined: %s (%d slot%s, platform %s%s%s)", w->id,
          w->slots, w->slots == 1 ? "" : "s", plat,
          req->sandbox_features[0] ? "; " : "", req->sandbox_features);
  sched_dispatch(s);
  goto out;
fail:
  if (w) {
    sched_platform_clear(&w->platform);
    free(w->id);
    free(w->session);
    free(w);
  }
out:
  distbuild__worker__v1__connect_request__free_unpacked(req, NULL);
}

static void connect_on_close(rpc_call *call, int code) {
  sched *s = rpc_call_method_data(call);
  sched_worker *w = rpc_call_data(call);
  char why[64];

  if (!w)
    return;
  w->call = NULL;
  snprintf(why, sizeof(why), "stream closed: %s", rpc_code_name(code));
  if (s->stopping) {
    rpc_call_set_data(call, NULL);
    return; /* sched_workers_free() frees it */
  }
  sched_worker_gone(s, w, why);
}

static void hb_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  sched *s = rpc_call_method_data(call);
  HbResp resp = DISTBUILD__WORKER__V1__HEARTBEAT_RESPONSE__INIT;
  sched_worker *w;
  HbReq *req;
  size_t i;

  req = distbuild__worker__v1__heartbeat_request__unpack(NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed HeartbeatRequest");
    return;
  }
  w = find_session(s, req->session_id);
  if (!w) {
    rpc_call_finish(call, RPC_NOT_FOUND,
                    "unknown worker session; Connect again");
    goto out;
  }
  w->last_hb_ms = rpc_now_ms();
  resp.cancelled_lease_ids =
      calloc(req->n_lease_ids + 1, sizeof(*resp.cancelled_lease_ids));
  if (!resp.cancelled_lease_ids) {
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  for (i = 0; i < req->n_lease_ids; i++) {
    sched_lease *l = sched_map_get(s->leases, req->lease_ids[i]);
    if (!l || l->w != w)
      resp.cancelled_lease_ids[resp.n_cancelled_lease_ids++] =
          req->lease_ids[i];
  }
  reply(call, &resp.base);
  free(resp.cancelled_lease_ids);
out:
  distbuild__worker__v1__heartbeat_request__free_unpacked(req, NULL);
}

/* A worker's infrastructure failures, worth another attempt elsewhere.
 * RESOURCE_EXHAUSTED from a worker is its own disk filling up (an action
 * out of memory is an exit status, not this). */
static int retryable(int code) {
  return code == RPC_UNAVAILABLE || code == RPC_INTERNAL ||
         code == RPC_UNKNOWN || code == RPC_ABORTED ||
         code == RPC_RESOURCE_EXHAUSTED;
}

static void store_result(sched *s, sched_op *op, const PbActionResult *r) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = reapi_pb_pack(&r->base, &buf, &len);

  if (rc == 0)
    rc =
        cas_ac_put(s->store, &op->action, buf ? buf : (const uint8_t *)"", len);
  if (rc)
    DB_WARN("sched", "%s: cannot store result in the action cache: %s",
            op->name, db_strerror(rc));
  free(buf);
}

static void complete_on_message(rpc_call *call, const uint8_t *msg,
                                size_t len) {
  sched *s = rpc_call_method_data(call);
  CompResp resp = DISTBUILD__WORKER__V1__COMPLETE_RESPONSE__INIT;
  PbExecResp empty =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_RESPONSE__INIT;
  PbExecResp *er;
  sched_lease *l;
  sched_op *op;
  CompReq *req;
  int code;

  req = distbuild__worker__v1__complete_request__unpack(NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed CompleteRequest");
    return;
  }
  l = sched_map_get(s->leases, req->lease_id);
  if (!l || (req->session_id[0] && strcmp(l->w->session, req->session_id))) {
    DB_INFO("sched", "ignoring Complete for stale lease %s from %s",
            req->lease_id, req->worker_id);
    reply(call, &resp.base);
    goto out;
  }
  op = l->op;
  l->w->last_hb_ms = rpc_now_ms();
  er = req->response ? req->response : &empty;
  code = er->status ? er->status->code : RPC_OK;
  if (code == RPC_OK && !er->result) {
    sched_lease_end(s, l);
    sched_op_fail(s, op, RPC_INTERNAL,
                  "worker %s reported OK without an ActionResult",
                  req->worker_id);
  } else if (code != RPC_OK && retryable(code) &&
             op->attempts < s->o.max_attempts) {
    char why[300];
    snprintf(why, sizeof(why), "%s: %.200s", rpc_code_name(code),
             er->status->message);
    op->avoid_worker = l->w->serial;
    sched_lease_lost(s, l, why);
  } else {
    sched_lease_end(s, l);
    er->cached_result = 0;
    if (code == RPC_OK && er->result->exit_code == 0 && op->cacheable)
      store_result(s, op, er->result);
    sched_op_complete(s, op, er);
  }
  reply(call, &resp.base);
  sched_dispatch(s);
out:
  distbuild__worker__v1__complete_request__free_unpacked(req, NULL);
}

/* Progress: relay EarlyOutputs of a running lease to its Execute clients.
 * Every file must name a valid digest whose blob is already in the CAS or
 * comes inline (stored here first), so a client never sees an output it
 * cannot fetch. */
static void progress_on_message(rpc_call *call, const uint8_t *msg,
                                size_t len) {
  sched *s = rpc_call_method_data(call);
  ProgResp resp = DISTBUILD__WORKER__V1__PROGRESS_RESPONSE__INIT;
  uint8_t *early = NULL;
  size_t elen = 0;
  sched_lease *l;
  ProgReq *req;

  req = distbuild__worker__v1__progress_request__unpack(NULL, len, msg);
  if (!req || !req->early) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    req ? "ProgressRequest without early outputs"
                        : "malformed ProgressRequest");
    goto out;
  }
  for (size_t i = 0; i < req->early->n_files; i++) {
    const PbOutputFile *f = req->early->files[i];
    reapi_digest d;
    if (!f->path || !f->path[0] || reapi_pb_digest_get(f->digest, &d) != 0) {
      rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                      "early output without a path or a valid digest");
      goto out;
    }
    if (f->contents.len > 0 || d.size == 0) {
      /* Inline: stored here (cas_store_put verifies it against d), so the
       * final ActionResult can name it like any other output. */
      int prv = cas_store_put(s->store, &d, f->contents.data, f->contents.len);
      if (prv == DB_EDIGEST || prv == DB_EINVAL) {
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "an inline early output does not match its digest");
        goto out;
      }
      if (prv != 0) {
        rpc_call_finish(
            call, prv == DB_ENOSPC ? RPC_RESOURCE_EXHAUSTED : RPC_INTERNAL,
            "cannot store an inline early output");
        goto out;
      }
    } else if (cas_store_has(s->store, &d) != 1) {
      rpc_call_finish(call, RPC_FAILED_PRECONDITION,
                      "an early output is not in the CAS");
      goto out;
    }
  }
  l = sched_map_get(s->leases, req->lease_id);
  if (!l || (req->session_id[0] && strcmp(l->w->session, req->session_id))) {
    /* Stale: the lease was requeued or cancelled. Nothing to relay. */
    reply(call, &resp.base);
    goto out;
  }
  l->w->last_hb_ms = rpc_now_ms();
  if (reapi_pb_pack(&req->early->base, &early, &elen) != 0) {
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    goto out;
  }
  sched_op_notify_early(s, l->op, req->worker_id, early, elen);
  reply(call, &resp.base);
out:
  free(early);
  if (req)
    distbuild__worker__v1__progress_request__free_unpacked(req, NULL);
}

int sched_workers_register(sched *s) {
  rpc_method m = {0};
  int rc;

  m.method_data = s;
  m.path = WORKER_PREFIX "Connect";
  m.kind = RPC_KIND_SERVER_STREAMING;
  m.on_message = connect_on_message;
  m.on_close = connect_on_close;
  rc = rpc_server_add_method(s->srv, &m);
  if (rc)
    return rc;
  m.kind = RPC_KIND_UNARY;
  m.on_close = NULL;
  m.path = WORKER_PREFIX "Heartbeat";
  m.on_message = hb_on_message;
  rc = rpc_server_add_method(s->srv, &m);
  if (rc)
    return rc;
  m.path = WORKER_PREFIX "Complete";
  m.on_message = complete_on_message;
  rc = rpc_server_add_method(s->srv, &m);
  if (rc)
    return rc;
  m.path = WORKER_PREFIX "Progress";
  m.on_message = progress_on_message;
  return rpc_server_add_method(s->srv, &m);
}

void sched_workers_shutdown(sched *s) {
  sched_worker *w;
  for (w = s->workers; w; w = w->next) {
    if (w->call) {
      rpc_call_set_data(w->call, NULL);
      rpc_call_finish(w->call, RPC_UNAVAILABLE, "scheduler shutting down");
      w->call = NULL;
    }
  }
}

void sched_workers_free(sched *s) {
  sched_worker *w, *wn;

  for (w = s->workers; w; w = wn) {
    sched_lease *l, *ln;
    wn = w->next;
    if (w->call)
      rpc_call_set_data(w->call, NULL);
    for (l = w->leases; l; l = ln) {
      ln = l->next;
      free(l);
    }
    sched_platform_clear(&w->platform);
    free(w->id);
    free(w->session);
    free(w);
  }
  s->workers = NULL;
}
