/*
 * The Execution service: Execute and WaitExecution, and the operations
 * they stream.
 *
 * Operation state machine (op->stage):
 *   Execute --(cache hit)-------------------------------> COMPLETED
 *   Execute --(merge with identical in-flight op)-------> (that op)
 *   Execute --(inputs ok)--> QUEUED --(dispatch)--> EXECUTING --> COMPLETED
 *                              ^                        |
 *                              +---(worker lost, attempts left)
 *   QUEUED --(no matching worker for queue_timeout)--> COMPLETED (error)
 * Every stage change is streamed to every watcher (Execute and
 * WaitExecution calls). COMPLETED ops keep their final Operation for
 * retention_ms so a client can re-attach with WaitExecution.
 */
#include "sched_int.h"

#include "cas_service.h"
#include "db_err.h"
#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXEC_PREFIX "/build.bazel.remote.execution.v2.Execution/"
#define TYPE_EOM                                                               \
  "type.googleapis.com/"                                                       \
  "build.bazel.remote.execution.v2.ExecuteOperationMetadata"
#define TYPE_ER                                                                \
  "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"
#define REQMETA_HDR "build.bazel.remote.execution.v2.requestmetadata-bin"

typedef Build__Bazel__Remote__Execution__V2__ExecuteRequest ExecReq;
typedef Build__Bazel__Remote__Execution__V2__ExecuteOperationMetadata EOM;
typedef Build__Bazel__Remote__Execution__V2__WaitExecutionRequest WaitReq;
typedef Build__Bazel__Remote__Execution__V2__RequestMetadata ReqMeta;
typedef Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata PbMeta;

void sched_op_free(sched_op *op) {
  if (!op)
    return;
  sched_platform_clear(&op->platform);
  free(op->dedup_key);
  free(op->instance);
  free(op->invocation);
  free(op->last_error);
  free(op->final_op);
  free(op->action_pb);
  free(op->command_pb);
  sched_dirs_free(op->dirs, op->n_dirs);
  free(op);
}

static sched_op *op_new(sched *s, const reapi_digest *ad,
                        const char *instance) {
  sched_op *op = calloc(1, sizeof(*op));

  if (!op)
    return NULL;
  sched_new_id(s, "operations/", op->name, sizeof(op->name));
  op->action = *ad;
  op->instance = sched_strdup(instance);
  op->submitted_ms = rpc_now_ms();
  op->stage = SCHED_STAGE_QUEUED;
  if (!op->instance || sched_map_put(s->ops, op->name, op)) {
    sched_op_free(op);
    return NULL;
  }
  return op;
}

/* Serialize the Operation for op at stage; resp (ExecuteResponse bytes)
 * only when done; partial (may be NULL) becomes the metadata's
 * partial_execution_metadata. */
static int pack_operation(const sched_op *op, int stage, const uint8_t *resp,
                          size_t rlen, int done, PbMeta *partial, uint8_t **out,
                          size_t *len) {
  Google__Longrunning__Operation o = GOOGLE__LONGRUNNING__OPERATION__INIT;
  Google__Protobuf__Any meta = GOOGLE__PROTOBUF__ANY__INIT;
  Google__Protobuf__Any ranyv = GOOGLE__PROTOBUF__ANY__INIT;
  EOM eom =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_OPERATION_METADATA__INIT;
  PbDigest pd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  reapi_digest ad = op->action;
  uint8_t *mbuf = NULL;
  size_t mlen = 0;
  int rc;

  reapi_pb_digest_set(&pd, &ad);
  eom.stage = stage;
  eom.action_digest = &pd;
  eom.digest_function = PB_DIGEST_SHA256;
  eom.partial_execution_metadata = partial;
  rc = reapi_pb_pack(&eom.base, &mbuf, &mlen);
  if (rc)
    return rc;
  meta.type_url = TYPE_EOM;
  meta.value.data = mbuf;
  meta.value.len = mlen;
  o.name = (char *)op->name;
  o.metadata = &meta;
  o.done = done;
  if (done) {
    ranyv.type_url = TYPE_ER;
    ranyv.value.data = (uint8_t *)resp;
    ranyv.value.len = rlen;
    o.result_case = GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE;
    o.response = &ranyv;
  }
  rc = reapi_pb_pack(&o.base, out, len);
  free(mbuf);
  return rc;
}

static void send_or_drop(rpc_call *call, const uint8_t *buf, size_t len) {
  rpc_call_send(call, buf ? buf : (const uint8_t *)"", len);
}

void sched_op_notify(sched *s, sched_op *op) {
  uint8_t *buf = NULL;
  size_t len = 0;
  sched_watch *w;

  (void)s;
  if (!op->watchers || op->stage == SCHED_STAGE_COMPLETED)
    return;
  if (pack_operation(op, op->stage, NULL, 0, 0, NULL, &buf, &len))
    return;
  for (w = op->watchers; w; w = w->next)
    send_or_drop(w->call, buf, len);
  free(buf);
}

void sched_op_notify_early(sched *s, sched_op *op, const char *worker,
                           const uint8_t *early, size_t early_len) {
  PbMeta m =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTED_ACTION_METADATA__INIT;
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT, *anys[1] = {&any};
  uint8_t *buf = NULL;
  size_t len = 0;
  sched_watch *w;

  (void)s;
  if (!op->watchers || op->stage != SCHED_STAGE_EXECUTING)
    return;
  any.type_url = SCHED_TYPE_EARLY;
  any.value.data = (uint8_t *)early;
  any.value.len = early_len;
  m.worker = (char *)worker;
  m.auxiliary_metadata = anys;
  m.n_auxiliary_metadata = 1;
  if (pack_operation(op, op->stage, NULL, 0, 0, &m, &buf, &len))
    return;
  for (w = op->watchers; w; w = w->next)
    send_or_drop(w->call, buf, len);
  free(buf);
}

/* Deliver the final Operation to a watcher's call and finish it. */
static void finish_watcher(const sched_op *op, rpc_call *call) {
  if (!op->final_op) {
    rpc_call_finish(call, RPC_INTERNAL, "could not encode the result");
    return;
  }
  send_or_drop(call, op->final_op, op->final_len);
  rpc_call_finish(call, RPC_OK, NULL);
}

static void retain(sched *s, sched_op *op) {
  op->done_ms = rpc_now_ms();
  op->dnext = NULL;
  if (s->done_tail)
    s->done_tail->dnext = op;
  else
    s->done_head = op;
  s->done_tail = op;
  s->n_done++;
}

void sched_op_complete(sched *s, sched_op *op, const PbExecResp *resp) {
  sched_watch *w, *next;
  uint8_t *rbuf = NULL;
  size_t rlen = 0;
  int code = resp->status ? resp->status->code : 0;
  int exit_code = resp->result ? resp->result->exit_code : -1;

  if (op->stage == SCHED_STAGE_COMPLETED)
    return;
  if (op->inv)
    sched_queue_remove(&s->q, op);
  if (op->dedup_key) {
    sched_map_del(s->inflight, op->dedup_key);
    free(op->dedup_key);
    op->dedup_key = NULL;
  }
  op->stage = SCHED_STAGE_COMPLETED;
  /* Only dispatch needs them; a retained op must not keep a rustc
   * Command (kilobytes of environment) for up to max_retained ops. */
  free(op->action_pb);
  free(op->command_pb);
  op->action_pb = op->command_pb = NULL;
  op->action_len = op->command_len = 0;
  sched_dirs_free(op->dirs, op->n_dirs);
  op->dirs = NULL;
  op->n_dirs = 0;
  if (reapi_pb_pack(&resp->base, &rbuf, &rlen) ||
      pack_operation(op, SCHED_STAGE_COMPLETED, rbuf, rlen, 1, NULL,
                     &op->final_op, &op->final_len)) {
    free(op->final_op);
    op->final_op = NULL;
  }
  free(rbuf);
  retain(s, op);
  if (code == RPC_OK && exit_code == 0)
    s->c.executed++;
  else if (code == RPC_CANCELLED)
    s->c.cancelled++;
  else
    s->c.failed++;
  if (code == RPC_OK)
    DB_INFO("sched", "job completed: %s exit %d in %.3fs%s%s", op->name,
            exit_code, (double)(op->done_ms - op->submitted_ms) / 1000.0,
            resp->result && resp->result->execution_metadata &&
                    resp->result->execution_metadata->worker[0]
                ? " on "
                : "",
            resp->result && resp->result->execution_metadata
                ? resp->result->execution_metadata->worker
                : "");
  else
    DB_INFO("sched", "job failed: %s after %.3fs: %s: %s", op->name,
            (double)(op->done_ms - op->submitted_ms) / 1000.0,
            rpc_code_name(code), resp->status->message);
  /* Detach everyone first: finishing a call must not see a half-edited
   * list. */
  w = op->watchers;
  op->watchers = NULL;
  for (; w; w = next) {
    next = w->next;
    w->op = NULL;
    w->next = w->prev = NULL;
    finish_watcher(op, w->call);
  }
}

void sched_op_fail(sched *s, sched_op *op, int code, const char *fmt, ...) {
  PbExecResp er = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_RESPONSE__INIT;
  Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
  char *msg = NULL;
  va_list ap;

  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  st.code = code;
  st.message = msg ? msg : (char *)"scheduler error";
  er.status = &st;
  sched_op_complete(s, op, &er);
  free(msg);
}

void sched_ops_gc(sched *s, int64_t now) {
  while (s->done_head && (now - s->done_head->done_ms > s->o.retention_ms ||
                          s->n_done > s->o.max_retained)) {
    sched_op *op = s->done_head;
    s->done_head = op->dnext;
    if (!s->done_head)
      s->done_tail = NULL;
    s->n_done--;
    sched_map_del(s->ops, op->name);
    sched_op_free(op);
  }
}

/* Attach call to op and send the current state (or the final one). */
static int watch(sched *s, sched_op *op, rpc_call *call) {
  uint8_t *buf = NULL;
  size_t len = 0;
  sched_watch *w;
  int rc;

  if (op->stage == SCHED_STAGE_COMPLETED) {
    finish_watcher(op, call);
    return 0;
  }
  w = calloc(1, sizeof(*w));
  if (!w)
    return DB_ENOMEM;
  rc = pack_operation(op, op->stage, NULL, 0, 0, NULL, &buf, &len);
  if (rc) {
    free(w);
    return rc;
  }
  w->call = call;
  w->op = op;
  op->orphaned_ms = 0;
  w->next = op->watchers;
  if (op->watchers)
    op->watchers->prev = w;
  op->watchers = w;
  rpc_call_set_data(call, w);
  send_or_drop(call, buf, len);
  free(buf);
  (void)s;
  return 0;
}

static void watch_on_close(rpc_call *call, int code) {
  sched_watch *w = rpc_call_data(call);
  sched *s = rpc_call_method_data(call);

  (void)code;
  if (!w)
    return;
  if (w->op) {
    if (w->prev)
      w->prev->next = w->next;
    else
      w->op->watchers = w->next;
    if (w->next)
      w->next->prev = w->prev;
    /* The client may come back (WaitExecution) or resubmit; the tick
     * cancels the op if nobody has within the orphan timeout. */
    if (!w->op->watchers && w->op->stage != SCHED_STAGE_COMPLETED) {
      w->op->orphaned_ms = rpc_now_ms();
      s->orphans = 1;
    }
  }
  free(w);
}

static int send_shutdown(const char *key, void *val, void *ctx) {
  sched_op *op = val;
  sched_watch *w = op->watchers, *next;

  (void)key;
  (void)ctx;
  op->watchers = NULL;
  for (; w; w = next) {
    next = w->next;
    w->op = NULL;
    rpc_call_finish(w->call, RPC_UNAVAILABLE,
                    "scheduler shutting down; retry the action");
  }
  return 0;
}

void sched_exec_shutdown(sched *s) {
  sched_map_sweep(s->ops, send_shutdown, NULL);
}

/* tool_invocation_id from the RequestMetadata header, "" if absent. */
static void invocation_of(rpc_call *call, char *buf, size_t len) {
  const char *h = rpc_call_header(call, REQMETA_HDR);
  uint8_t *raw = NULL;
  size_t rawlen = 0;
  ReqMeta *rm;

  buf[0] = '\0';
  if (!h || rpc_b64_decode(h, strlen(h), &raw, &rawlen))
    return;
  rm = build__bazel__remote__execution__v2__request_metadata__unpack(
      NULL, rawlen, raw);
  free(raw);
  if (!rm)
    return;
  snprintf(buf, len, "%s", rm->tool_invocation_id);
  build__bazel__remote__execution__v2__request_metadata__free_unpacked(rm,
                                                                       NULL);
}

/* Answer from the action cache. 1 = answered, 0 = miss. */
static int try_cache_hit(sched *s, rpc_call *call, const reapi_digest *ad,
                         const char *instance) {
  PbExecResp er = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_RESPONSE__INIT;
  Google__Rpc__Status ok = GOOGLE__RPC__STATUS__INIT;
  PbActionResult *ar = NULL;
  uint8_t *data = NULL;
  size_t len = 0;
  sched_op *op = NULL;
  int hit = 0;

  if (cas_ac_get(s->store, ad, &data, &len) ||
      cas_service_result_complete(s->store, data, len) != 1)
    goto out;
  ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, len,
                                                                  data);
  if (!ar)
    goto out;
  op = op_new(s, ad, instance);
  if (!op)
    goto out;
  er.result = ar;
  er.cached_result = 1;
  er.status = &ok;
  /* Counted as a hit, not as an execution. */
  op->stage = SCHED_STAGE_COMPLETED;
  {
    uint8_t *rbuf = NULL;
    size_t rlen = 0;
    if (reapi_pb_pack(&er.base, &rbuf, &rlen) == 0)
      pack_operation(op, SCHED_STAGE_COMPLETED, rbuf, rlen, 1, NULL,
                     &op->final_op, &op->final_len);
    free(rbuf);
  }
  retain(s, op);
  hit = 1;
  s->c.cache_hits++;
  DB_INFO("sched", "cache hit: action %.12s/%lld -> %s", ad->hash,
          (long long)ad->size, op->name);
  finish_watcher(op, call);
out:
  if (!hit)
    s->c.cache_misses++;
  if (ar)
    build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
  free(data);
  return hit;
}

static void reject(sched *s, rpc_call *call, rpc_status *st) {
  s->c.rejected++;
  DB_INFO("sched", "job rejected: %s: %s", rpc_code_name(st->code),
          st->message ? st->message : "");
  if (st->details)
    rpc_call_finish_details(call, st->code, st->message, st->details,
                            st->details_len);
  else
    rpc_call_finish(call, st->code, st->message);
}

static int64_t action_timeout_ms(const PbAction *a) {
  if (!a->timeout)
    return 0;
  return a->timeout->seconds * 1000 + (a->timeout->nanos + 999999) / 1000000;
}

static void exec_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  sched *s = rpc_call_method_data(call);
  ExecReq *req;
  PbAction *a = NULL;
  PbCommand *cmd = NULL;
  rpc_status st = {0};
  reapi_digest ad;
  uint8_t *araw = NULL, *craw = NULL;
  size_t alen = 0, clen = 0, ndirs = 0;
  ProtobufCBinaryData *dirs = NULL;
  sched_op *op = NULL;
  char inv[128], key[REAPI_DIGEST_STR_MAX + 260];
  int64_t tmo;

  key[0] = '\0';
  req = build__bazel__remote__execution__v2__execute_request__unpack(NULL, len,
                                                                     msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed ExecuteRequest");
    return;
  }
  if (s->stopping) {
    rpc_call_finish(call, RPC_UNAVAILABLE, "scheduler shutting down");
    goto out;
  }
  if (!reapi_pb_digest_function_ok(req->digest_function)) {
    rpc_status_setf(&st, RPC_INVALID_ARGUMENT,
                    "only the SHA256 digest function is supported");
    goto rejected;
  }
  if (reapi_pb_digest_get(req->action_digest, &ad)) {
    rpc_status_setf(&st, RPC_INVALID_ARGUMENT, "invalid action_digest");
    goto rejected;
  }
  s->c.submitted++;
  if (sched_check_action(s, &ad, &a, &araw, &alen, &st))
    goto rejected;
  tmo = action_timeout_ms(a);
  if (tmo > s->o.max_timeout_ms) {
    rpc_status_setf(&st, RPC_INVALID_ARGUMENT,
                    "Action timeout %.3fs exceeds the server maximum %.0fs",
                    (double)tmo / 1000.0, (double)s->o.max_timeout_ms / 1000.0);
    goto rejected;
  }
  if (tmo <= 0)
    tmo = s->o.default_timeout_ms;
  if (!a->do_not_cache && !req->skip_cache_lookup &&
      try_cache_hit(s, call, &ad, req->instance_name))
    goto out;
  if (!a->do_not_cache) {
    char ds[REAPI_DIGEST_STR_MAX];
    snprintf(key, sizeof(key), "%s\n%s", req->instance_name,
             reapi_digest_str(&ad, ds));
    op = sched_map_get(s->inflight, key);
    if (op) {
      s->c.merged++;
      DB_INFO("sched", "job merged: action %.12s/%lld joins %s", ad.hash,
              (long long)ad.size, op->name);
      if (watch(s, op, call))
        rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
      goto out;
    }
  }
  if (sched_check_inputs(s, a, &cmd, &craw, &clen, &dirs, &ndirs, &st))
    goto rejected;
  invocation_of(call, inv, sizeof(inv));
  op = op_new(s, &ad, req->instance_name);
  if (!op)
    goto oom;
  op->cacheable = !a->do_not_cache;
  op->action_pb = araw;
  op->action_len = alen;
  op->command_pb = craw;
  op->command_len = clen;
  op->dirs = dirs;
  op->n_dirs = ndirs;
  araw = craw = NULL;
  dirs = NULL;
  ndirs = 0;
  op->invocation = strdup(inv);
  if (!op->invocation)
    goto oom_op;
  op->timeout_ms = tmo;
  {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    op->queued_wall_s = ts.tv_sec;
    op->queued_wall_ns = (int32_t)ts.tv_nsec;
  }
  if (sched_platform_copy(&op->platform,
                          a->platform && a->platform->n_properties
                              ? a->platform
                              : cmd->platform))
    goto oom_op;
  if (op->cacheable) {
    op->dedup_key = strdup(key);
    if (!op->dedup_key || sched_map_put(s->inflight, key, op))
      goto oom_op;
  }
  if (sched_queue_push(&s->q, op, op->invocation, 0))
    goto oom_op;
  DB_INFO("sched",
          "job submitted: %s action %.12s/%lld (%s, invocation %.12s, "
          "queue %zu)",
          op->name, ad.hash, (long long)ad.size, cmd->arguments[0],
          inv[0] ? inv : "-", s->q.depth);
  if (watch(s, op, call))
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
  sched_dispatch(s);
  goto out;
oom_op:
  /* Not queued yet: complete it with the error so it is retained and
   * freed like any other op. */
  sched_op_fail(s, op, RPC_RESOURCE_EXHAUSTED, "out of memory");
oom:
  rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
  goto out;
rejected:
  reject(s, call, &st);
out:
  free(araw);
  free(craw);
  sched_dirs_free(dirs, ndirs);
  rpc_status_clear(&st);
  if (cmd)
    build__bazel__remote__execution__v2__command__free_unpacked(cmd, NULL);
  if (a)
    build__bazel__remote__execution__v2__action__free_unpacked(a, NULL);
  build__bazel__remote__execution__v2__execute_request__free_unpacked(req,
                                                                      NULL);
}

static void wait_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  sched *s = rpc_call_method_data(call);
  WaitReq *req;
  sched_op *op;

  req = build__bazel__remote__execution__v2__wait_execution_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed WaitExecutionRequest");
    return;
  }
  op = sched_map_get(s->ops, req->name);
  if (!op) {
    char m[200];
    snprintf(m, sizeof(m), "operation '%.120s' not found; call Execute again",
             req->name);
    rpc_call_finish(call, RPC_NOT_FOUND, m);
  } else if (s->stopping && op->stage != SCHED_STAGE_COMPLETED) {
    rpc_call_finish(call, RPC_UNAVAILABLE, "scheduler shutting down");
  } else if (watch(s, op, call)) {
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
  }
  build__bazel__remote__execution__v2__wait_execution_request__free_unpacked(
      req, NULL);
}

int sched_exec_register(sched *s) {
  rpc_method m = {0};
  int rc;

  m.kind = RPC_KIND_SERVER_STREAMING;
  m.on_close = watch_on_close;
  m.method_data = s;
  m.path = EXEC_PREFIX "Execute";
  m.on_message = exec_on_message;
  rc = rpc_server_add_method(s->srv, &m);
  if (rc)
    return rc;
  m.path = EXEC_PREFIX "WaitExecution";
  m.on_message = wait_on_message;
  return rpc_server_add_method(s->srv, &m);
}
