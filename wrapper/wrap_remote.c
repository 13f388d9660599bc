/* Remote execution of one action; see wrap_remote.h. */
#include "wrap_remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cas_client.h"
#include "db_err.h"
#include "db_log.h"
#include "reapi_pb.h"
#include "rpc_client.h"
#include "wrap_early.h"
#include "distbuild/worker/v1/worker.pb-c.h"

typedef Build__Bazel__Remote__Execution__V2__GetActionResultRequest PbGetAR;
typedef Build__Bazel__Remote__Execution__V2__ExecuteRequest PbExecReq;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse PbExecResp;
typedef Build__Bazel__Remote__Execution__V2__WaitExecutionRequest PbWaitReq;
typedef Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata PbMeta;
typedef Build__Bazel__Remote__Execution__V2__ExecuteOperationMetadata EOMeta;

#define PATH_GET_AR                                                            \
  "/build.bazel.remote.execution.v2.ActionCache/GetActionResult"
#define PATH_EXECUTE "/build.bazel.remote.execution.v2.Execution/Execute"
#define PATH_WAIT "/build.bazel.remote.execution.v2.Execution/WaitExecution"
#define PATH_CAPABILITIES                                                      \
  "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"
#define EXEC_RESP_TYPE                                                         \
  "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse"

struct wrap_remote {
  char *target;
  const rpc_channel_opts *channel; /* borrowed */
  cas_client *cas;
  cas_client *cas2; /* early outputs, fetched while cas runs the stream */
  int64_t timeout_ms;
  int64_t stall_ms;
};

int wrap_remote_new(const char *target, const rpc_channel_opts *channel,
                    int64_t timeout_ms, int64_t stall_ms, wrap_remote **out) {
  wrap_remote *r = calloc(1, sizeof(*r));
  cas_client_opts o = {0};
  int rv;
  *out = NULL;
  if (r == NULL)
    return DB_ENOMEM;
  r->target = strdup(target);
  r->channel = channel;
  r->timeout_ms = timeout_ms > 0 ? timeout_ms : 600000;
  r->stall_ms = stall_ms > 0 ? stall_ms : 0;
  o.timeout_ms = 60000;
  o.idle_timeout_ms = r->stall_ms;
  o.max_inflight = 16;
  o.channel = channel;
  rv = r->target ? cas_client_new(target, &o, &r->cas) : DB_ENOMEM;
  if (rv != 0) {
    wrap_remote_free(r);
    return rv;
  }
  *out = r;
  return 0;
}

void wrap_remote_free(wrap_remote *r) {
  if (r == NULL)
    return;
  cas_client_free(r->cas);
  cas_client_free(r->cas2);
  free(r->target);
  free(r);
}

void wrap_remote_result_clear(wrap_remote_result *res) {
  free(res->out);
  free(res->err);
  for (size_t i = 0; i < res->n_early; i++)
    free(res->early_paths[i]);
  free(res->early_paths);
  free(res->early_digests);
  free(res->early_err);
  memset(res, 0, sizeof(*res));
}

static int64_t ts_ms(const Google__Protobuf__Timestamp *t) {
  return t ? t->seconds * 1000 + t->nanos / 1000000 : 0;
}

static int64_t span(const Google__Protobuf__Timestamp *a,
                    const Google__Protobuf__Timestamp *b) {
  return a && b ? ts_ms(b) - ts_ms(a) : 0;
}

static int64_t exec_duration(const PbMeta *m) {
  if (m == NULL)
    return 0;
  if (m->execution_start_timestamp && m->execution_completed_timestamp)
    return ts_ms(m->execution_completed_timestamp) -
           ts_ms(m->execution_start_timestamp);
  if (m->worker_start_timestamp && m->worker_completed_timestamp)
    return ts_ms(m->worker_completed_timestamp) -
           ts_ms(m->worker_start_timestamp);
  return 0;
}

static void reason(wrap_remote_result *res, const char *what,
                   const rpc_status *st) {
  snprintf(res->reason, sizeof(res->reason), "%s: %s%s%s", what,
           rpc_code_name(st->code), st->message ? " " : "",
           st->message ? st->message : "");
}

/* The scheduler did not answer: refused, reset, silent, or TLS failed (st
 * may be NULL). Sets res->sched_down and the reason. */
static void sched_down(const wrap_remote *r, wrap_remote_result *res,
                       const rpc_status *st) {
  const char *m = st && st->message ? st->message : "UNAVAILABLE";
  size_t pl = strlen(RPC_NOT_RESPONDING);
  int silent = strncmp(m, RPC_NOT_RESPONDING, pl) == 0;
  int tls = strncmp(m, RPC_TLS_PREFIX, strlen(RPC_TLS_PREFIX)) == 0;
  if (silent && strncmp(m + pl, ": ", 2) == 0)
    m += pl + 2; /* the reason says "not responding" already */
  /* No breaker for TLS: it fails as fast as a breaker would, and every
   * call's fallback line then says why instead of "(recently)". */
  res->sched_down = tls      ? 0
                    : silent ? WRAP_SCHED_SILENT
                             : WRAP_SCHED_UNREACHABLE;
  snprintf(res->reason, sizeof(res->reason), "scheduler %s at %s (%s)",
           silent ? "not responding" : "unreachable", r->target, m);
}

/* 1 if the server refused our credentials (a missing or bad token, a
 * certificate it does not accept for this call). */
static int refused(const rpc_status *st) {
  return st->code == RPC_UNAUTHENTICATED || st->code == RPC_PERMISSION_DENIED;
}

/* A CAS call failed with rv: the reason from its last status. */
static void cas_failed(const wrap_remote *r, wrap_remote_result *res,
                       const char *what, int rv) {
  const rpc_status *st = cas_client_last_status(r->cas);
  if (rv == DB_EUNAVAIL)
    sched_down(r, res, st);
  else if (refused(st))
    reason(res, what, st); /* the code, not "protocol error" */
  else
    snprintf(res->reason, sizeof(res->reason), "%s: %s (%s)", what,
             db_strerror(rv),
             st->message ? st->message : rpc_code_name(st->code));
}

/* Download the outputs of ar (only paths the action declared), then
 * stdout/stderr into memory. */
static int fetch_outputs(wrap_remote *r, const wrap_action *act,
                         const PbActionResult *ar, wrap_remote_result *res) {
  cas_blob_dst *dst = calloc(ar->n_output_files + 2, sizeof(*dst));
  char **paths = calloc(ar->n_output_files + 1, sizeof(*paths));
  size_t n = 0;
  int rv = 0, iout = -1, ierr = -1;
  if (dst == NULL || paths == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < ar->n_output_files; i++) {
    const PbOutputFile *f = ar->output_files[i];
    char *abs = wrap_path_join(act->out_base, f->path);
    if (abs == NULL) {
      rv = DB_ENOMEM;
      goto out;
    }
    if (!wrap_strv_has(&act->outputs, abs) ||
        reapi_pb_digest_get(f->digest, &dst[n].digest) != 0) {
      DB_WARN("wrapper", "ignoring unexpected output %s", f->path);
      free(abs);
      continue;
    }
    if (wrap_early_same(res, abs, &dst[n].digest)) {
      /* Already written early: rewriting would move its mtime past the
       * dependents that cargo started on it. */
      free(abs);
      continue;
    }
    paths[n] = abs;
    dst[n].path = abs;
    dst[n].mode = f->is_executable ? 0755 : 0644;
    n++;
  }
  if (ar->stdout_raw.len == 0 && ar->stdout_digest &&
      ar->stdout_digest->size_bytes > 0 &&
      reapi_pb_digest_get(ar->stdout_digest, &dst[n].digest) == 0)
    iout = (int)n++;
  if (ar->stderr_raw.len == 0 && ar->stderr_digest &&
      ar->stderr_digest->size_bytes > 0 &&
      reapi_pb_digest_get(ar->stderr_digest, &dst[n].digest) == 0)
    ierr = (int)n++;
  if (n > 0) {
    uint64_t raw = 0, wire = 0;
    rv = cas_client_download(r->cas, dst, n, &raw, &wire);
    res->down_raw += raw;
    res->down_wire += wire;
    if (rv != 0) {
      cas_failed(r, res, "downloading outputs failed", rv);
      goto out;
    }
  }
  if (iout >= 0) {
    res->out = dst[iout].data;
    res->out_len = dst[iout].len;
    dst[iout].data = NULL;
  } else if (ar->stdout_raw.len > 0) {
    res->out = malloc(ar->stdout_raw.len);
    if (res->out == NULL) {
      rv = DB_ENOMEM;
      goto out;
    }
    memcpy(res->out, ar->stdout_raw.data, ar->stdout_raw.len);
    res->out_len = ar->stdout_raw.len;
  }
  if (ierr >= 0) {
    res->err = dst[ierr].data;
    res->err_len = dst[ierr].len;
    dst[ierr].data = NULL;
  } else if (ar->stderr_raw.len > 0) {
    res->err = malloc(ar->stderr_raw.len);
    if (res->err == NULL) {
      rv = DB_ENOMEM;
      goto out;
    }
    memcpy(res->err, ar->stderr_raw.data, ar->stderr_raw.len);
    res->err_len = ar->stderr_raw.len;
  }
  res->exit_code = ar->exit_code;
  res->exec_ms = exec_duration(ar->execution_metadata);
  if (ar->execution_metadata) {
    const PbMeta *m = ar->execution_metadata;
    res->w_queue = span(m->queued_timestamp, m->worker_start_timestamp);
    res->w_inputs = span(m->input_fetch_start_timestamp,
                         m->input_fetch_completed_timestamp);
    res->w_run = res->exec_ms;
    res->w_outputs = span(m->output_upload_start_timestamp,
                          m->output_upload_completed_timestamp);
  }
  if (ar->execution_metadata && ar->execution_metadata->worker)
    snprintf(res->worker, sizeof(res->worker), "%s",
             ar->execution_metadata->worker);
out:
  for (size_t i = 0; dst && i < n; i++)
    free(dst[i].data);
  for (size_t i = 0; paths && paths[i]; i++)
    free(paths[i]);
  free(paths);
  free(dst);
  return rv;
}

/* GetActionResult: 1 hit (*ar set), 0 miss, negative on failure. */
static int lookup(wrap_remote *r, const wrap_action *act, PbActionResult **ar,
                  wrap_remote_result *res) {
  PbGetAR req =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
  PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  reapi_digest ad = act->action_digest;
  uint8_t *buf = NULL, *resp = NULL;
  size_t len = 0, resp_len = 0;
  rpc_status st = {0};
  char **inl = calloc(act->outputs.n + 1, sizeof(*inl));
  int rv;
  *ar = NULL;
  reapi_pb_digest_set(&d, &ad);
  req.action_digest = &d;
  req.inline_stdout = 1;
  req.inline_stderr = 1;
  /* The .rmeta and .d come inside the ActionResult, so a hit can announce
   * the metadata before any download. The server inlines within a budget
   * and leaves the rest to be fetched. */
  for (size_t i = 0; inl && i < act->outputs.n; i++) {
    const char *rel = wrap_path_rel(act->outputs.v[i], act->out_base);
    if (rel != NULL && *rel && wrap_early_kind(rel))
      inl[req.n_inline_output_files++] = (char *)rel;
  }
  req.inline_output_files = inl;
  req.digest_function = PB_DIGEST_SHA256;
  rv = reapi_pb_pack(&req.base, &buf, &len);
  if (rv == 0)
    rv = rpc_client_unary(cas_client_rpc(r->cas), PATH_GET_AR, buf, len, 30000,
                          &resp, &resp_len, &st);
  if (rv != 0) {
    snprintf(res->reason, sizeof(res->reason), "action cache lookup: %s",
             db_strerror(rv));
  } else if (st.code == RPC_NOT_FOUND) {
    rv = 0;
  } else if (st.code != RPC_OK) {
    if (st.code == RPC_UNAVAILABLE)
      sched_down(r, res, &st);
    else
      reason(res, "action cache lookup failed", &st);
    rv = st.code == RPC_UNAVAILABLE ? DB_EUNAVAIL : DB_EPROTO;
  } else {
    *ar = build__bazel__remote__execution__v2__action_result__unpack(
        NULL, resp_len, resp ? resp : (const uint8_t *)"");
    if (*ar == NULL) {
      snprintf(res->reason, sizeof(res->reason), "bad ActionResult");
      rv = DB_EPROTO;
    } else {
      rv = 1;
    }
  }
  rpc_status_clear(&st);
  free(inl);
  free(buf);
  free(resp);
  return rv;
}

static int upload(wrap_remote *r, const wrap_action *act,
                  wrap_remote_result *res) {
  const cas_blob_src *tb;
  size_t tn;
  cas_blob_src *all;
  uint64_t raw = 0, wire = 0;
  int rv = wrap_tree_blobs(act->tree, &tb, &tn, NULL);
  if (rv != 0)
    return rv;
  all = calloc(tn + 2, sizeof(*all));
  if (all == NULL)
    return DB_ENOMEM;
  memcpy(all, tb, tn * sizeof(*all));
  all[tn].digest = act->command_digest;
  all[tn].data = act->command;
  all[tn + 1].digest = act->action_digest;
  all[tn + 1].data = act->action;
  rv = cas_client_upload(r->cas, all, tn + 2, &raw, &wire);
  res->up_raw += raw;
  res->up_wire += wire;
  res->up_blobs = tn + 2;
  if (rv != 0)
    cas_failed(r, res, "CAS upload failed", rv);
  free(all);
  return rv;
}

/* 1 if a FAILED_PRECONDITION status lists MISSING blobs (inputs evicted or
 * never uploaded), as opposed to e.g. "no worker matches the platform". */
static int missing_blobs(const Google__Rpc__Status *st) {
  int found = 0;
  for (size_t i = 0; st && i < st->n_details && !found; i++) {
    const Google__Protobuf__Any *a = st->details[i];
    Google__Rpc__PreconditionFailure *pf;
    const char *t = a->type_url ? strrchr(a->type_url, '/') : NULL;
    if (t == NULL || strcmp(t + 1, "google.rpc.PreconditionFailure") != 0)
      continue;
    pf = google__rpc__precondition_failure__unpack(NULL, a->value.len,
                                                   a->value.data);
    for (size_t k = 0; pf && k < pf->n_violations; k++)
      if (pf->violations[k]->type &&
          strcmp(pf->violations[k]->type, "MISSING") == 0)
        found = 1;
    if (pf)
      google__rpc__precondition_failure__free_unpacked(pf, NULL);
  }
  return found;
}

static int missing_blobs_rpc(const rpc_status *st) {
  Google__Rpc__Status *s;
  int r;
  if (st->code != RPC_FAILED_PRECONDITION || st->details == NULL)
    return 0;
  s = google__rpc__status__unpack(NULL, st->details_len, st->details);
  r = s ? missing_blobs(s) : 0;
  if (s)
    google__rpc__status__free_unpacked(s, NULL);
  return r;
}

typedef struct exec_ctx {
  char *op_name;
  PbExecResp *resp;
  rpc_status st;
  int done;
  int ended;       /* the stream's on_done ran */
  int64_t last_ms; /* last message, or last sign of life from a probe */
  int silent;      /* a probe went unanswered: the scheduler is not there */
  /* for early outputs */
  wrap_remote *r;
  const wrap_action *act;
  wrap_remote_result *res;
  wrap_remote_progress_fn progress;
  void *pctx;
} exec_ctx;

/* EarlyOutputs carried in an in-progress Operation's metadata, if any. */
static void early_from_metadata(exec_ctx *x, const Google__Protobuf__Any *m) {
  EOMeta *eom;
  const char *t = m && m->type_url ? strrchr(m->type_url, '/') : NULL;
  if (t == NULL || x->res == NULL ||
      strcmp(t + 1, "build.bazel.remote.execution.v2.ExecuteOperationMetadata"))
    return;
  eom = build__bazel__remote__execution__v2__execute_operation_metadata__unpack(
      NULL, m->value.len, m->value.data);
  if (eom == NULL)
    return;
  for (size_t i = 0; eom->partial_execution_metadata &&
                     i < eom->partial_execution_metadata->n_auxiliary_metadata;
       i++) {
    const Google__Protobuf__Any *a =
        eom->partial_execution_metadata->auxiliary_metadata[i];
    const char *at = a->type_url ? strrchr(a->type_url, '/') : NULL;
    Distbuild__Worker__V1__EarlyOutputs *eo;
    if (at == NULL || strcmp(at + 1, "distbuild.worker.v1.EarlyOutputs") != 0)
      continue;
    eo = distbuild__worker__v1__early_outputs__unpack(NULL, a->value.len,
                                                      a->value.data);
    if (eo) {
      wrap_early_write(eo, x->act, x->r->target, x->r->channel, x->r->stall_ms,
                       &x->r->cas2, x->res, x->progress, x->pctx);
      distbuild__worker__v1__early_outputs__free_unpacked(eo, NULL);
    }
  }
  build__bazel__remote__execution__v2__execute_operation_metadata__free_unpacked(
      eom, NULL);
}

static int on_op(void *vctx, const uint8_t *msg, size_t len) {
  exec_ctx *x = vctx;
  Google__Longrunning__Operation *op =
      google__longrunning__operation__unpack(NULL, len, msg);
  x->last_ms = rpc_now_ms();
  if (op == NULL)
    return 1;
  if (op->name && *op->name && x->op_name == NULL)
    x->op_name = strdup(op->name);
  if (!op->done && op->metadata)
    early_from_metadata(x, op->metadata);
  if (op->done) {
    x->done = 1;
    if (op->result_case == GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE &&
        op->response) {
      if (x->resp)
        build__bazel__remote__execution__v2__execute_response__free_unpacked(
            x->resp, NULL);
      x->resp = build__bazel__remote__execution__v2__execute_response__unpack(
          NULL, op->response->value.len, op->response->value.data);
    } else if (op->result_case ==
                   GOOGLE__LONGRUNNING__OPERATION__RESULT_ERROR &&
               op->error) {
      rpc_status_setf(&x->st, op->error->code, "%s",
                      op->error->message ? op->error->message : "");
    }
  }
  google__longrunning__operation__free_unpacked(op, NULL);
  return 0;
}

static void on_done(void *vctx, const rpc_status *st) {
  exec_ctx *x = vctx;
  x->ended = 1;
  if (x->st.code == RPC_OK)
    rpc_status_setf(&x->st, st->code, "%s", st->message ? st->message : "");
}

/* A liveness probe: GetCapabilities, which every REAPI server answers at
 * once. Any answer, even an error status, means the server is there. */
typedef struct probe_ctx {
  rpc_stream *s; /* NULL when no probe runs */
  int answered;
  int ended;
} probe_ctx;

static int probe_msg(void *ctx, const uint8_t *msg, size_t len) {
  (void)ctx;
  (void)msg;
  (void)len;
  return 0;
}

static void probe_done(void *ctx, const rpc_status *st) {
  probe_ctx *p = ctx;
  p->ended = 1;
  p->answered = st->code != RPC_UNAVAILABLE &&
                st->code != RPC_DEADLINE_EXCEEDED && st->code != RPC_CANCELLED;
}

/* Probe when the stream has been quiet for half the stall timeout; a
 * probe the server leaves unanswered for the stall timeout ends the
 * stream as silent. The Execute stream itself may rightly be quiet for as
 * long as the compile runs, so it has no idle timeout of its own. */
static void watch(wrap_remote *r, rpc_client *c, rpc_stream *s, exec_ctx *x,
                  probe_ctx *p) {
  static const rpc_stream_cbs pcbs = {probe_msg, NULL, probe_done};
  int64_t now = rpc_now_ms();
  if (p->s != NULL && p->ended) {
    p->s = NULL;
    if (p->answered) {
      x->last_ms = now;
    } else if (!x->ended) {
      x->silent = 1;
      rpc_status_setf(&x->st, RPC_UNAVAILABLE,
                      RPC_NOT_RESPONDING ": no answer to a probe in %lld ms",
                      (long long)r->stall_ms);
      rpc_stream_cancel(s);
    }
  }
  if (p->s == NULL && !x->ended && !x->silent &&
      now - x->last_ms >= r->stall_ms / 2) {
    p->ended = p->answered = 0;
    if (rpc_client_start(c, PATH_CAPABILITIES, NULL, 0, r->stall_ms, &pcbs, p,
                         &p->s) != 0)
      p->s = NULL;
  }
}

/* One Execute or WaitExecution stream. */
static int stream(wrap_remote *r, const char *path, const uint8_t *req,
                  size_t len, exec_ctx *x) {
  rpc_stream_cbs cbs = {on_op, NULL, on_done};
  rpc_client *c = cas_client_rpc(r->cas);
  rpc_stream *s = NULL;
  probe_ctx p = {0};
  int rv;
  rpc_status_clear(&x->st);
  x->done = x->ended = 0;
  x->last_ms = rpc_now_ms();
  rv = rpc_client_start(c, path, req, len, r->timeout_ms, &cbs, x, &s);
  if (rv == 0)
    rpc_stream_set_idle_timeout(s, 0);
  while (rv == 0 && !x->ended) {
    int n = rpc_client_run(c, 1000);
    if (n < 0)
      rv = n;
    else if (n == 0)
      break;
    else if (r->stall_ms > 0)
      watch(r, c, s, x, &p);
  }
  /* The stream ended: a probe still out is of no use now. */
  if (p.s != NULL && !p.ended) {
    rpc_stream_cancel(p.s);
    while (rv == 0 && !p.ended) {
      int n = rpc_client_run(c, 1000);
      if (n <= 0)
        rv = n;
    }
  }
  return rv;
}

/* Execute with WaitExecution on a broken stream. On success *resp is the
 * ExecuteResponse (caller frees). */
static int execute(wrap_remote *r, const wrap_action *act, PbExecResp **resp,
                   wrap_remote_result *res, wrap_remote_progress_fn progress,
                   void *pctx) {
  PbExecReq er = BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_REQUEST__INIT;
  PbDigest d = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  reapi_digest ad = act->action_digest;
  exec_ctx x = {0};
  uint8_t *buf = NULL;
  size_t len = 0;
  int rv, waits = 0, execs = 0;
  *resp = NULL;
  x.r = r;
  x.act = act;
  x.res = res;
  x.progress = progress;
  x.pctx = pctx;
  reapi_pb_digest_set(&d, &ad);
  er.action_digest = &d;
  er.digest_function = PB_DIGEST_SHA256;
  rv = reapi_pb_pack(&er.base, &buf, &len);
  if (rv != 0)
    goto out;
again:
  execs++;
  free(x.op_name);
  x.op_name = NULL;
  rv = stream(r, PATH_EXECUTE, buf, len, &x);
  /* (Not after silence: reattaching would only wait for it again.) */
  while (rv == 0 && !x.done && !x.silent && x.op_name != NULL && waits < 3 &&
         (x.st.code == RPC_UNAVAILABLE || x.st.code == RPC_INTERNAL ||
          x.st.code == RPC_OK || x.st.code == RPC_CANCELLED)) {
    /* The stream broke before the result: reattach. */
    PbWaitReq wr =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__WAIT_EXECUTION_REQUEST__INIT;
    uint8_t *wbuf = NULL;
    size_t wlen = 0;
    struct timespec ts = {0, 200 * 1000000L};
    waits++;
    nanosleep(&ts, NULL);
    wr.name = x.op_name;
    rv = reapi_pb_pack(&wr.base, &wbuf, &wlen);
    if (rv == 0)
      rv = stream(r, PATH_WAIT, wbuf, wlen, &x);
    free(wbuf);
    if (rv == 0 && x.st.code == RPC_NOT_FOUND && execs < 2)
      goto again; /* the operation is gone: run it again */
  }
  if (rv != 0) {
    snprintf(res->reason, sizeof(res->reason), "execute: %s", db_strerror(rv));
    goto out;
  }
  if (!x.done || x.resp == NULL) {
    if (x.st.code == RPC_UNAVAILABLE && (x.op_name == NULL || x.silent))
      sched_down(r, res, &x.st);
    else
      reason(res,
             x.done           ? "execution failed"
             : refused(&x.st) ? "execution refused"
                              : "execution stream broken",
             &x.st);
    rv = missing_blobs_rpc(&x.st) ? DB_ENOTFOUND : DB_EUNAVAIL;
    goto out;
  }
  *resp = x.resp;
  x.resp = NULL;
out:
  if (x.resp)
    build__bazel__remote__execution__v2__execute_response__free_unpacked(x.resp,
                                                                         NULL);
  rpc_status_clear(&x.st);
  free(x.op_name);
  free(buf);
  return rv;
}

int wrap_remote_run(wrap_remote *r, const wrap_action *act,
                    wrap_remote_progress_fn progress, void *pctx,
                    wrap_remote_result *res) {
  PbActionResult *ar = NULL;
  PbExecResp *er = NULL;
  int rv, attempt;
  int64_t t = rpc_now_ms(), t2;
  rv = lookup(r, act, &ar, res);
  t2 = rpc_now_ms();
  res->t_lookup = t2 - t;
  t = t2;
  if (rv < 0)
    goto out;
  if (rv == 1) {
    wrap_early_hit(act, ar, res, progress, pctx);
    rv = fetch_outputs(r, act, ar, res);
    res->t_download = rpc_now_ms() - t;
    if (rv == 0) {
      rv = WRAP_REMOTE_HIT;
      goto out;
    }
    /* Outputs gone from the CAS: execute again. */
    res->reason[0] = '\0';
  }
  for (attempt = 0; attempt < 2; attempt++) {
    t = rpc_now_ms();
    rv = upload(r, act, res);
    res->t_upload += rpc_now_ms() - t;
    if (rv != 0)
      goto out;
    if (attempt == 0 && progress)
      progress(pctx, "miss", res);
    t = rpc_now_ms();
    rv = execute(r, act, &er, res, progress, pctx);
    res->t_execute += rpc_now_ms() - t;
    if (rv == DB_ENOTFOUND && attempt == 0) {
      res->reason[0] = '\0';
      continue; /* missing inputs (evicted?): upload again */
    }
    if (rv != 0)
      goto out;
    if (er->status && er->status->code != RPC_OK) {
      if (er->status->code == RPC_FAILED_PRECONDITION && attempt == 0 &&
          missing_blobs(er->status)) {
        build__bazel__remote__execution__v2__execute_response__free_unpacked(
            er, NULL);
        er = NULL;
        continue;
      }
      snprintf(res->reason, sizeof(res->reason), "execution failed: %s %s",
               rpc_code_name(er->status->code),
               er->status->message ? er->status->message : "");
      rv = DB_EUNAVAIL;
      goto out;
    }
    break;
  }
  if (er == NULL || er->result == NULL) {
    if (res->reason[0] == '\0')
      snprintf(res->reason, sizeof(res->reason),
               "execution returned no result");
    rv = DB_EPROTO;
    goto out;
  }
  t = rpc_now_ms();
  rv = fetch_outputs(r, act, er->result, res);
  res->t_download = rpc_now_ms() - t;
  if (rv == 0)
    rv = er->cached_result ? WRAP_REMOTE_HIT : WRAP_REMOTE_EXECUTED;
out:
  if (ar)
    build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
  if (er)
    build__bazel__remote__execution__v2__execute_response__free_unpacked(er,
                                                                         NULL);
  return rv;
}
