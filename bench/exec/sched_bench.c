/*
 * sched_bench: Execute throughput and latency for an action-cache hit
 * against a running scheduler, over loopback, with the project's own
 * gRPC client (libcurl, HTTP/2 multiplexed).
 *
 * usage: sched_bench HOST:PORT [seconds=5] [threads=4] [inflight=32]
 *
 * Uploads one Action (+ Command, empty input root) and an ActionResult,
 * then: (1) one call at a time for p50/p99 of a lone request; (2) threads
 * x inflight concurrent Execute calls (one rpc_client per thread) for
 * hits/s and latency under load. Every response is checked to be a done
 * Operation (a cache hit).
 */
#include "reapi_pb.h"
#include "rpc_client.h"
#include "rpc_status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXEC "/build.bazel.remote.execution.v2.Execution/Execute"
#define MAX_SAMPLES (1 << 22)

typedef Build__Bazel__Remote__Execution__V2__Action Action;
typedef Build__Bazel__Remote__Execution__V2__Command Command;

static const char *g_target;
static const char *g_path = EXEC;
static int g_unary;
static uint8_t *g_req;
static size_t g_req_len;
static int64_t g_end_ms;
static int g_inflight;

typedef struct worker {
  pthread_t th;
  rpc_client *c;
  double *lat; /* ms */
  size_t n, cap;
  long errors;
  long not_done;
} worker;

typedef struct call_ctx {
  worker *w;
  double start;
  int done_seen;
} call_ctx;

static void start_one(worker *w);

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int on_msg(void *p, const uint8_t *m, size_t len) {
  call_ctx *cc = p;
  Google__Longrunning__Operation *op =
      g_unary ? NULL : google__longrunning__operation__unpack(NULL, len, m);
  if (op) {
    cc->done_seen = op->done;
    google__longrunning__operation__free_unpacked(op, NULL);
  }
  return 0;
}

static void on_done(void *p, const rpc_status *st) {
  call_ctx *cc = p;
  worker *w = cc->w;
  double now = now_ms();

  if (st->code != RPC_OK) {
    if (!w->errors)
      fprintf(stderr, "first error: %s: %s\n", rpc_code_name(st->code),
              st->message ? st->message : "");
    w->errors++;
  } else if (!cc->done_seen)
    w->not_done++;
  if (w->n < w->cap)
    w->lat[w->n++] = now - cc->start;
  free(cc);
  if (rpc_now_ms() < g_end_ms)
    start_one(w);
}

static void start_one(worker *w) {
  static const rpc_stream_cbs cbs = {on_msg, NULL, on_done};
  call_ctx *cc = calloc(1, sizeof(*cc));
  if (!cc)
    return;
  cc->w = w;
  cc->done_seen = g_unary;
  cc->start = now_ms();
  if (rpc_client_start(w->c, g_path, g_req, g_req_len, 10000, &cbs, cc, NULL))
    free(cc);
}

static void *run(void *arg) {
  worker *w = arg;
  int i;
  for (i = 0; i < g_inflight; i++)
    start_one(w);
  while (rpc_client_run(w->c, 100) > 0)
    ;
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int unary(rpc_client *c, const char *path, const ProtobufCMessage *m) {
  uint8_t *buf = NULL, *resp = NULL;
  size_t len = 0, rlen = 0;
  rpc_status st = {0};
  int rc = reapi_pb_pack(m, &buf, &len);

  if (rc == 0)
    rc = rpc_client_unary(c, path, buf, len, 10000, &resp, &rlen, &st);
  if (rc == 0 && st.code != RPC_OK) {
    fprintf(stderr, "%s: %s: %s\n", path, rpc_code_name(st.code),
            st.message ? st.message : "");
    rc = -1;
  }
  rpc_status_clear(&st);
  free(buf);
  free(resp);
  return rc;
}

/* Upload Command + Action, store an ActionResult; fill g_req. */
static int setup(rpc_client *c) {
  Command cmd = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__INIT;
  Action act = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
  PbDigest cd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  PbDigest rd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  PbDigest ad = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest bub =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_REQUEST__INIT;
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request r[2];
  Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request *rp[2];
  Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest uar =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
  Build__Bazel__Remote__Execution__V2__ExecuteRequest er =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTE_REQUEST__INIT;
  Build__Bazel__Remote__Execution__V2__GetActionResultRequest gar =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
  Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata md =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTED_ACTION_METADATA__INIT;
  PbActionResult ar = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
  char *argv[] = {"rustc", "--crate-name", "bench", "src/lib.rs"};
  char salt[64];
  reapi_digest dc, dr, da;
  uint8_t *cb = NULL, *ab = NULL;
  size_t cl = 0, al = 0;
  int rc;

  cmd.n_arguments = 4;
  cmd.arguments = argv;
  rc = reapi_pb_pack(&cmd.base, &cb, &cl);
  if (rc)
    return rc;
  reapi_digest_of(cb, cl, &dc);
  reapi_digest_of(NULL, 0, &dr);
  reapi_pb_digest_set(&cd, &dc);
  reapi_pb_digest_set(&rd, &dr);
  act.command_digest = &cd;
  act.input_root_digest = &rd;
  snprintf(salt, sizeof(salt), "bench-%lld", (long long)rpc_now_ms());
  act.salt.data = (uint8_t *)salt;
  act.salt.len = strlen(salt);
  rc = reapi_pb_pack(&act.base, &ab, &al);
  if (rc)
    goto out;
  reapi_digest_of(ab, al, &da);
  reapi_pb_digest_set(&ad, &da);
  build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(
      &r[0]);
  build__bazel__remote__execution__v2__batch_update_blobs_request__request__init(
      &r[1]);
  r[0].digest = &cd;
  r[0].data.data = cb;
  r[0].data.len = cl;
  r[1].digest = &ad;
  r[1].data.data = ab;
  r[1].data.len = al;
  rp[0] = &r[0];
  rp[1] = &r[1];
  bub.n_requests = 2;
  bub.requests = rp;
  rc = unary(c,
             "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
             "BatchUpdateBlobs",
             &bub.base);
  if (rc)
    goto out;
  md.worker = "bench";
  ar.execution_metadata = &md;
  uar.action_digest = &ad;
  uar.action_result = &ar;
  rc = unary(c,
             "/build.bazel.remote.execution.v2.ActionCache/"
             "UpdateActionResult",
             &uar.base);
  if (rc)
    goto out;
  er.action_digest = &ad;
  gar.action_digest = &ad;
  if (!g_unary)
    rc = reapi_pb_pack(&er.base, &g_req, &g_req_len);
  else
    rc = reapi_pb_pack(&gar.base, &g_req, &g_req_len);
out:
  free(cb);
  free(ab);
  return rc;
}

static void report(const char *what, double *lat, size_t n, double secs) {
  qsort(lat, n, sizeof(*lat), cmp);
  printf("%-28s %8zu calls %10.0f hits/s  p50 %6.3f ms  p99 %6.3f ms\n", what,
         n, secs > 0 ? (double)n / secs : 0.0, n ? lat[n / 2] : 0.0,
         n ? lat[(n * 99) / 100] : 0.0);
}

int main(int argc, char **argv) {
  double secs = argc > 2 ? atof(argv[2]) : 5.0;
  int threads = argc > 3 ? atoi(argv[3]) : 4;
  worker *ws, one = {0};
  double *all;
  size_t total = 0;
  long errors = 0, not_done = 0;
  int64_t t0;
  int i;

  if (argc < 2) {
    fprintf(stderr, "usage: sched_bench HOST:PORT [seconds] [threads] "
                    "[inflight per thread]\n");
    return 2;
  }
  g_target = argv[1];
  /* SCHED_BENCH_UNARY=1: GetActionResult instead, to compare with a plain
   * unary call on the same transport. */
  g_unary = getenv("SCHED_BENCH_UNARY") != NULL;
  if (g_unary)
    g_path = "/build.bazel.remote.execution.v2.ActionCache/GetActionResult";
  g_inflight = argc > 4 ? atoi(argv[4]) : 32;
  if (rpc_client_new(g_target, NULL, &one.c) || setup(one.c)) {
    fprintf(stderr, "setup failed\n");
    return 1;
  }
  /* (1) Lone requests: latency without queueing. */
  one.cap = 1 << 20;
  one.lat = calloc(one.cap, sizeof(double));
  g_inflight = 1;
  g_end_ms = rpc_now_ms() + (int64_t)(secs * 200);
  t0 = rpc_now_ms();
  run(&one);
  report("sequential (1 in flight)", one.lat, one.n,
         (double)(rpc_now_ms() - t0) / 1000.0);
  rpc_client_free(one.c);
  /* (2) Concurrent load. */
  g_inflight = argc > 4 ? atoi(argv[4]) : 32;
  ws = calloc((size_t)threads, sizeof(*ws));
  all = calloc(MAX_SAMPLES, sizeof(double));
  g_end_ms = rpc_now_ms() + (int64_t)(secs * 1000);
  t0 = rpc_now_ms();
  for (i = 0; i < threads; i++) {
    ws[i].cap = MAX_SAMPLES / (size_t)threads;
    ws[i].lat = calloc(ws[i].cap, sizeof(double));
    if (rpc_client_new(g_target, NULL, &ws[i].c))
      return 1;
    pthread_create(&ws[i].th, NULL, run, &ws[i]);
  }
  for (i = 0; i < threads; i++) {
    pthread_join(ws[i].th, NULL);
    memcpy(all + total, ws[i].lat, ws[i].n * sizeof(double));
    total += ws[i].n;
    errors += ws[i].errors + ws[i].not_done;
    not_done += ws[i].not_done;
    rpc_client_free(ws[i].c);
    free(ws[i].lat);
  }
  {
    char what[64];
    snprintf(what, sizeof(what), "concurrent (%dx%d in flight)", threads,
             g_inflight);
    report(what, all, total, (double)(rpc_now_ms() - t0) / 1000.0);
  }
  printf("errors: %ld (not a cache hit: %ld)\n", errors + one.errors,
         not_done + one.not_done);
  free(all);
  free(ws);
  free(one.lat);
  return errors ? 1 : 0;
}
