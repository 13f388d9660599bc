/*
 * exec_bench: throughput and latency of sandboxed no-op actions through the
 * scheduler and its workers. Every action is distinct (its salt differs),
 * so nothing is served from the action cache.
 *
 *   exec_bench HOST:PORT [actions=2000] [inflight=64] [program=/bin/true]
 *
 * Prints actions/s, p50/p99 client latency, and where the time went, from
 * ExecutedActionMetadata: scheduler (queued -> worker start, and worker
 * done -> client), input fetch, execution (sandbox set-up + the program),
 * output upload, and the rest of the worker's time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reapi_pb.h"
#include "rpc_client.h"

typedef struct call {
  int idx;
  double t0, t1;
  uint8_t *last;
  size_t last_len;
  int code;
} call;

typedef struct stats {
  double *lat;
  size_t n, failed;
  double sched, fetch, exec, upload, other, total;
} stats;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double ts_s(const Google__Protobuf__Timestamp *t) {
  return t ? (double)t->seconds + (double)t->nanos / 1e9 : 0;
}

static int on_msg(void *ctx, const uint8_t *m, size_t len) {
  call *c = ctx;
  free(c->last);
  c->last = malloc(len ? len : 1);
  if (!c->last)
    return 1;
  memcpy(c->last, m, len);
  c->last_len = len;
  return 0;
}

static stats g;

static void on_done(void *ctx, const rpc_status *st) {
  call *c = ctx;
  Google__Longrunning__Operation *op = NULL;
  Build__Bazel__Remote__Execution__V2__ExecuteResponse *er = NULL;

  c->t1 = now_s();
  c->code = st->code;
  if (st->code == 0 && c->last)
    op = google__longrunning__operation__unpack(NULL, c->last_len, c->last);
  if (op && op->done &&
      op->result_case == GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE)
    er = build__bazel__remote__execution__v2__execute_response__unpack(
        NULL, op->response->value.len, op->response->value.data);
  if (!er || (er->status && er->status->code) || !er->result ||
      er->result->exit_code != 0 || !er->result->execution_metadata) {
    g.failed++;
    if (g.failed < 5)
      fprintf(stderr, "action %d failed: grpc %d %s %s\n", c->idx, st->code,
              st->message ? st->message : "",
              er && er->status && er->status->message ? er->status->message
                                                      : "");
  } else {
    Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata *m =
        er->result->execution_metadata;
    double q = ts_s(m->queued_timestamp), ws = ts_s(m->worker_start_timestamp),
           wc = ts_s(m->worker_completed_timestamp);
    double fetch = ts_s(m->input_fetch_completed_timestamp) -
                   ts_s(m->input_fetch_start_timestamp);
    double exec = ts_s(m->execution_completed_timestamp) -
                  ts_s(m->execution_start_timestamp);
    double up = ts_s(m->output_upload_completed_timestamp) -
                ts_s(m->output_upload_start_timestamp);
    double total = c->t1 - c->t0;
    double sched = (ws - q) + (c->t1 - wc) + (q - c->t0);
    g.sched += sched;
    g.fetch += fetch;
    g.exec += exec;
    g.upload += up;
    g.other += (wc - ws) - fetch - exec - up;
    g.total += total;
    g.lat[g.n++] = total;
  }
  if (er)
    build__bazel__remote__execution__v2__execute_response__free_unpacked(er,
                                                                         NULL);
  if (op)
    google__longrunning__operation__free_unpacked(op, NULL);
  free(c->last);
  c->last = NULL;
  c->idx = -1;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int pack_digest(const ProtobufCMessage *m, uint8_t **buf, size_t *len,
                       reapi_digest *d) {
  if (reapi_pb_pack(m, buf, len) != 0)
    return -1;
  reapi_digest_of(*buf, *len, d);
  return 0;
}

/* BatchUpdateBlobs of n blobs. */
static int upload(rpc_client *rc, uint8_t **bufs, size_t *lens,
                  reapi_digest *ds, size_t n) {
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest req;
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *rs;
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request **rp;
  PbDigest *pd;
  uint8_t *buf = NULL, *resp = NULL;
  size_t len = 0, rlen = 0;
  rpc_status st = {0};
  int rv = -1;

  rs = calloc(n, sizeof(*rs));
  rp = calloc(n, sizeof(*rp));
  pd = calloc(n, sizeof(*pd));
  if (!rs || !rp || !pd)
    goto out;
  build__bazel__remote__execution__v2__batch_update_blobs_request__init(&req);
  for (size_t i = 0; i < n; i++) {
    build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(
        &rs[i]);
    reapi_pb_digest_set(&pd[i], &ds[i]);
    rs[i].digest = &pd[i];
    rs[i].data.data = bufs[i];
    rs[i].data.len = lens[i];
    rp[i] = &rs[i];
  }
  req.n_requests = n;
  req.requests = rp;
  if (reapi_pb_pack(&req.base, &buf, &len) != 0)
    goto out;
  if (rpc_client_unary(rc,
                       "/build.bazel.remote.execution.v2."
                       "ContentAddressableStorage/BatchUpdateBlobs",
                       buf, len, 30000, &resp, &rlen, &st) == 0 &&
      st.code == 0)
    rv = 0;
  else
    fprintf(stderr, "upload: %d %s\n", st.code, st.message ? st.message : "");
out:
  rpc_status_clear(&st);
  free(buf);
  free(resp);
  free(rs);
  free(rp);
  free(pd);
  return rv;
}

int main(int argc, char **argv) {
  const char *target = argc > 1 ? argv[1] : "127.0.0.1:8980";
  size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
  int inflight = argc > 3 ? atoi(argv[3]) : 64;
  const char *prog = argc > 4 ? argv[4] : "/bin/true";
  Build__Bazel__Remote__Execution__V2__Command cmd;
  Build__Bazel__Remote__Execution__V2__Directory root;
  char *args[] = {(char *)prog, NULL};
  uint8_t *cmdb = NULL, *rootb = NULL, **actb;
  size_t cmdl = 0, rootl = 0, *actl;
  reapi_digest cmdd, rootd, *actd;
  PbDigest cmdpd, rootpd;
  rpc_client *rc = NULL;
  call *calls;
  size_t next = 0, done = 0;
  double t0, t1;

  if (n == 0 || inflight <= 0)
    return 2;
  actb = calloc(n, sizeof(*actb));
  actl = calloc(n, sizeof(*actl));
  actd = calloc(n, sizeof(*actd));
  calls = calloc((size_t)inflight, sizeof(*calls));
  g.lat = calloc(n, sizeof(double));
  if (!actb || !actl || !actd || !calls || !g.lat)
    return 1;
  if (rpc_client_new(target, NULL, &rc) != 0)
    return 1;
  build__bazel__remote__execution__v2__command__init(&cmd);
  cmd.n_arguments = 1;
  cmd.arguments = args;
  build__bazel__remote__execution__v2__directory__init(&root);
  if (pack_digest(&cmd.base, &cmdb, &cmdl, &cmdd) ||
      pack_digest(&root.base, &rootb, &rootl, &rootd))
    return 1;
  reapi_pb_digest_set(&cmdpd, &cmdd);
  reapi_pb_digest_set(&rootpd, &rootd);
  {
    uint8_t *b[1] = {cmdb};
    size_t l[1] = {cmdl};
    reapi_digest d[1] = {cmdd};
    if (upload(rc, b, l, d, 1))
      return 1;
  }
  /* The empty root is the empty blob: always present. */
  for (size_t i = 0; i < n; i++) {
    Build__Bazel__Remote__Execution__V2__Action a;
    char salt[64];
    build__bazel__remote__execution__v2__action__init(&a);
    a.command_digest = &cmdpd;
    a.input_root_digest = &rootpd;
    snprintf(salt, sizeof(salt), "bench-%ld-%zu", (long)time(NULL), i);
    a.salt.data = (uint8_t *)salt;
    a.salt.len = strlen(salt);
    if (pack_digest(&a.base, &actb[i], &actl[i], &actd[i]))
      return 1;
  }
  for (size_t i = 0; i < n; i += 500)
    if (upload(rc, actb + i, actl + i, actd + i, n - i < 500 ? n - i : 500))
      return 1;
  for (int k = 0; k < inflight; k++)
    calls[k].idx = -1;

  t0 = now_s();
  while (done < n) {
    for (int k = 0; k < inflight && next < n; k++) {
      Build__Bazel__Remote__Execution__V2__ExecuteRequest req;
      PbDigest pd;
      rpc_stream_cbs cbs = {on_msg, NULL, on_done};
      uint8_t *buf = NULL;
      size_t len = 0;
      if (calls[k].idx >= 0)
        continue;
      build__bazel__remote__execution__v2__execute_request__init(&req);
      reapi_pb_digest_set(&pd, &actd[next]);
      req.action_digest = &pd;
      if (reapi_pb_pack(&req.base, &buf, &len) != 0)
        return 1;
      calls[k].idx = (int)next;
      calls[k].t0 = now_s();
      if (rpc_client_start(rc,
                           "/build.bazel.remote.execution.v2.Execution/Execute",
                           buf, len, 120000, &cbs, &calls[k], NULL) != 0)
        return 1;
      free(buf);
      next++;
    }
    rpc_client_run(rc, 5);
    done = g.n + g.failed;
  }
  t1 = now_s();
  qsort(g.lat, g.n, sizeof(double), cmp_d);
  printf("actions: %zu ok, %zu failed, %d in flight, program %s\n", g.n,
         g.failed, inflight, prog);
  printf("throughput: %.1f actions/s (%.2f s)\n", (double)n / (t1 - t0),
         t1 - t0);
  if (g.n) {
    printf("latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
           g.lat[g.n / 2] * 1e3, g.lat[(g.n * 99) / 100] * 1e3,
           g.lat[g.n - 1] * 1e3);
    printf("time share (mean per action %.1f ms): scheduler+queue %.0f%%, "
           "input fetch %.0f%%, sandbox run %.0f%%, upload %.0f%%, "
           "other worker %.0f%%\n",
           g.total / (double)g.n * 1e3, 100 * g.sched / g.total,
           100 * g.fetch / g.total, 100 * g.exec / g.total,
           100 * g.upload / g.total, 100 * g.other / g.total);
    printf("mean ms: scheduler+queue %.2f, fetch %.2f, sandbox %.2f, upload "
           "%.2f, other %.2f\n",
           g.sched / (double)g.n * 1e3, g.fetch / (double)g.n * 1e3,
           g.exec / (double)g.n * 1e3, g.upload / (double)g.n * 1e3,
           g.other / (double)g.n * 1e3);
  }
  rpc_client_free(rc);
  return g.failed ? 1 : 0;
}
