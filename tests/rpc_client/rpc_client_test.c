/*
 * rpc_client against an independent gRPC server (python3-grpcio, see
 * echo_server.py): the four call kinds, concurrency and throughput.
 * Usage: rpc_client_test CASE /path/to/echo_server.py; each ctest test
 * runs one CASE in its own process with its own server.
 */
#include "rpc_test_fixture.h"

#include "db_err.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- unary ---- */

static void test_unary(void) {
  static const size_t sizes[] = {0, 1, 16 << 10, 5 << 20, 3, 0};
  rpc_client *c = rpct_client_for(rpct_server_start(0), NULL);
  size_t i, j;

  CHECK(rpc_client_set_header(c, "x-test", "1") == 0);
  CHECK(rpc_client_set_header(c, "Bad Name", "1") == DB_EINVAL);
  CHECK(rpc_client_set_header(c, "x-crlf", "a\r\nb") == DB_EINVAL);
  for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t *req = malloc(sizes[i] + 1), *resp = NULL;
    size_t rlen = 12345;
    rpc_status st = {0};
    for (j = 0; j < sizes[i]; j++)
      req[j] = (uint8_t)(j * 7 + i);
    CHECK(rpc_client_unary(c, "/test.Echo/Unary", req, sizes[i], 10000, &resp,
                           &rlen, &st) == 0);
    CHECK_CODE(&st, RPC_OK);
    CHECK(rlen == sizes[i]);
    CHECK(sizes[i] == 0 ? resp == NULL
                        : (resp && memcmp(resp, req, sizes[i]) == 0));
    free(resp);
    free(req);
    rpc_status_clear(&st);
  }
  CHECK(rpc_client_pending(c) == 0);
  rpc_client_free(c);
  rpct_server_stop();
}

/* ---- server streaming ---- */

struct ss_ctx {
  uint32_t count, size, got, bad;
  uint32_t stop_after; /* cancel by returning 1 at this message (0: never) */
  int done;
  rpc_status st;
};

static int ss_on_message(void *ctx, const uint8_t *m, size_t len) {
  struct ss_ctx *x = ctx;
  uint32_t i = x->got++;
  size_t k;

  if (len != x->size || rpct_get32(m) != i)
    x->bad++;
  for (k = 4; k < len; k++) {
    if (m[k] != (uint8_t)i) {
      x->bad++;
      break;
    }
  }
  return x->stop_after && x->got == x->stop_after;
}

static void ss_on_done(void *ctx, const rpc_status *st) {
  struct ss_ctx *x = ctx;

  x->done++;
  x->st.code = st->code;
  if (st->message)
    x->st.message = strdup(st->message);
}

static void test_server_stream(void) {
  rpc_client *c = rpct_client_for(rpct_server_start(0), NULL);
  rpc_stream_cbs cbs = {ss_on_message, NULL, ss_on_done};
  struct ss_ctx a = {.count = 1000, .size = 1000};
  struct ss_ctx b = {.count = 1000, .size = 100, .stop_after = 10};
  struct ss_ctx d = {.count = 50, .size = 70000}; /* spans DATA frames */
  uint8_t req[8];
  rpc_stream *s = NULL;

  rpct_put32(req, a.count);
  rpct_put32(req + 4, a.size);
  CHECK(rpc_client_start(c, "/test.Echo/ServerStream", req, 8, 20000, &cbs, &a,
                         &s) == 0);
  CHECK(s != NULL);
  rpct_put32(req, b.count);
  rpct_put32(req + 4, b.size);
  CHECK(rpc_client_start(c, "/test.Echo/ServerStream", req, 8, 20000, &cbs, &b,
                         NULL) == 0);
  rpct_put32(req, d.count);
  rpct_put32(req + 4, d.size);
  CHECK(rpc_client_start(c, "/test.Echo/ServerStream", req, 8, 20000, &cbs, &d,
                         NULL) == 0);
  CHECK(rpc_client_pending(c) == 3);
  CHECK(rpc_client_run(c, 30000) == 0);
  CHECK(a.done == 1 && b.done == 1 && d.done == 1);
  CHECK_CODE(&a.st, RPC_OK);
  CHECK(a.got == 1000 && a.bad == 0);
  CHECK_CODE(&b.st, RPC_CANCELLED); /* on_message asked to stop */
  CHECK(b.got == 10 && b.bad == 0);
  CHECK_CODE(&d.st, RPC_OK);
  CHECK(d.got == 50 && d.bad == 0);
  rpc_status_clear(&a.st);
  rpc_status_clear(&b.st);
  rpc_status_clear(&d.st);
  rpc_client_free(c);
  rpct_server_stop();
}

/* ---- client streaming ---- */

#define CS_CHUNK ((size_t)1 << 20)
#define CS_TOTAL ((size_t)100 << 20)

struct cs_ctx {
  size_t sent;
  uint64_t nmsg;
  EVP_MD_CTX *md;
  long rss_base, rss_max;
  uint8_t resp[48];
  size_t resp_len;
  int done;
  rpc_status st;
};

static int cs_produce(void *ctx, uint8_t **msg, size_t *len) {
  struct cs_ctx *x = ctx;
  size_t n = CS_TOTAL - x->sent, i;
  uint8_t *m;
  long rss;

  if (n == 0)
    return 0;
  /* Vary sizes a little, include an empty message once. */
  if (x->nmsg == 3)
    n = 0;
  else if (n > CS_CHUNK - (x->nmsg % 5) * 1000)
    n = CS_CHUNK - (x->nmsg % 5) * 1000;
  m = malloc(n ? n : 1);
  if (!m)
    return -1;
  for (i = 0; i < n; i += 512)
    m[i] = (uint8_t)(x->nmsg + i);
  for (i = 0; i < n && i < 64; i++)
    m[i] = (uint8_t)(x->sent >> 16);
  EVP_DigestUpdate(x->md, m, n);
  x->sent += n;
  x->nmsg++;
  *msg = m;
  *len = n;
  if ((x->nmsg & 7) == 0) {
    rss = rpct_rss_kib();
    if (rss > x->rss_max)
      x->rss_max = rss;
  }
  return 1;
}

static int cs_on_message(void *ctx, const uint8_t *m, size_t len) {
  struct cs_ctx *x = ctx;

  if (len <= sizeof(x->resp)) {
    memcpy(x->resp, m, len);
    x->resp_len = len;
  }
  return 0;
}

static void cs_on_done(void *ctx, const rpc_status *st) {
  struct cs_ctx *x = ctx;

  x->done++;
  x->st.code = st->code;
  if (st->message)
    x->st.message = strdup(st->message);
}

static int abort_produce(void *ctx, uint8_t **msg, size_t *len) {
  int *n = ctx;

  if ((*n)++ < 3) {
    *msg = calloc(1, 100);
    *len = 100;
    return 1;
  }
  return -5;
}

struct early_ctx {
  int produced, done, code;
  char resp[32];
};

static int early_produce(void *ctx, uint8_t **msg, size_t *len) {
  struct early_ctx *x = ctx;

  if (x->produced >= 320) /* 20 MiB */
    return 0;
  x->produced++;
  *msg = calloc(1, 65536);
  *len = 65536;
  return *msg ? 1 : -1;
}

static int early_on_message(void *ctx, const uint8_t *m, size_t len) {
  struct early_ctx *x = ctx;

  if (len < sizeof(x->resp)) {
    memcpy(x->resp, m, len);
    x->resp[len] = 0;
  }
  return 0;
}

static void early_on_done(void *ctx, const rpc_status *st) {
  struct early_ctx *x = ctx;

  x->done++;
  x->code = st->code;
  fprintf(stderr, "early answer: %s %s after %d messages\n",
          rpc_code_name(st->code), st->message ? st->message : "", x->produced);
}

static void test_client_stream(void) {
  rpc_client *c = rpct_client_for(rpct_server_start(0), NULL);
  rpc_stream_cbs cbs = {cs_on_message, cs_produce, cs_on_done};
  rpc_stream_cbs acbs = {NULL, abort_produce, rpct_count_done};
  struct cs_ctx x = {0};
  uint8_t want[32];
  unsigned int wlen = 0;
  int64_t t0;
  int ab[32] = {0};

  x.md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(x.md, EVP_sha256(), NULL);
  x.rss_base = rpct_rss_kib();
  t0 = rpct_now_ms();
  CHECK(rpc_client_start(c, "/test.Echo/ClientStream", NULL, 0, 60000, &cbs, &x,
                         NULL) == 0);
  CHECK(rpc_client_run(c, 60000) == 0);
  EVP_DigestFinal_ex(x.md, want, &wlen);
  EVP_MD_CTX_free(x.md);
  fprintf(stderr, "client stream: %zu MiB in %lld ms, RSS %ld -> %ld KiB\n",
          x.sent >> 20, (long long)(rpct_now_ms() - t0), x.rss_base, x.rss_max);
  CHECK(x.done == 1);
  CHECK_CODE(&x.st, RPC_OK);
  CHECK(x.sent == CS_TOTAL);
  CHECK(x.resp_len == 48);
  CHECK(rpct_get64(x.resp) == x.nmsg);
  CHECK(rpct_get64(x.resp + 8) == CS_TOTAL);
  CHECK(wlen == 32 && memcmp(x.resp + 16, want, 32) == 0);
  /* 100 MiB went through; the client never held more than a few MiB. */
#ifndef __SANITIZE_ADDRESS__
  CHECK(x.rss_max > 0 && x.rss_max - x.rss_base < 24 * 1024);
#else
  /* ASan's quarantine keeps freed chunks resident: no RSS bound here. */
  fprintf(stderr, "client stream: RSS bound not checked under ASan\n");
#endif
  rpc_status_clear(&x.st);

  /* A producer that fails aborts the call locally with CANCELLED. */
  CHECK(rpc_client_start(c, "/test.Echo/ClientStream", NULL, 0, 10000, &acbs,
                         ab, NULL) == 0);
  CHECK(rpc_client_run(c, 10000) == 0);
  CHECK(ab[10 + RPC_CANCELLED] == 1);

  /* The server answers after the first message, mid-upload. */
  {
    rpc_stream_cbs ecbs = {early_on_message, early_produce, early_on_done};
    struct early_ctx e = {0};
    CHECK(rpc_client_start(c, "/test.Echo/ClientStreamEarly", NULL, 0, 10000,
                           &ecbs, &e, NULL) == 0);
    CHECK(rpc_client_run(c, 10000) == 0);
    CHECK(e.done == 1);
    CHECK(e.produced < 320); /* the upload stopped early */
    /* gRPC wants OK + the answer. libcurl 7.88 may drop a response that
     * comes with RST_STREAM(NO_ERROR); then the client must say
     * UNAVAILABLE, never OK without the message. */
    CHECK((e.code == RPC_OK && strcmp(e.resp, "early:65536") == 0) ||
          (e.code == RPC_UNAVAILABLE && e.resp[0] == 0));
  }
  rpc_client_free(c);
  rpct_server_stop();
}

/* ---- concurrency over one connection, and throughput ---- */

struct many_ctx {
  int done, ok, peak_max;
  int conns_seen;
};

static int slow_on_message(void *ctx, const uint8_t *m, size_t len) {
  struct many_ctx *x = ctx;

  if (len == 4 && (int)rpct_get32(m) > x->peak_max)
    x->peak_max = (int)rpct_get32(m);
  return 0;
}

static void many_on_done(void *ctx, const rpc_status *st) {
  struct many_ctx *x = ctx;

  x->done++;
  if (st->code == RPC_OK)
    x->ok++;
  else if (x->done - x->ok <= 3)
    fprintf(stderr, "call failed: %s %s\n", rpc_code_name(st->code),
            st->message ? st->message : "");
}

static void test_concurrent(void) {
  int port = rpct_server_start(0), i, n = 250, maxconn = 0, k;
  rpc_client *c = rpct_client_for(port, NULL);
  rpc_stream_cbs cbs = {slow_on_message, NULL, many_on_done};
  struct many_ctx x = {0};
  uint8_t req[4];
  int64_t t0;

  rpct_put32(req, 1500);
  t0 = rpct_now_ms();
  for (i = 0; i < n; i++)
    CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 20000, &cbs, &x,
                           NULL) == 0);
  while (rpc_client_pending(c) > 0) {
    CHECK(rpc_client_run(c, 100) >= 0);
    k = rpct_count_connections(port);
    if (k > maxconn)
      maxconn = k;
  }
  fprintf(stderr,
          "concurrent: %d calls in %lld ms, server peak %d in flight, "
          "max %d connection(s)\n",
          n, (long long)(rpct_now_ms() - t0), x.peak_max, maxconn);
  CHECK(x.done == n && x.ok == n);
  CHECK(x.peak_max >= 200); /* really concurrent on the server */
  CHECK(maxconn == 1);      /* ... and over one TCP connection */
  CHECK(rpct_now_ms() - t0 < 15000);
  rpc_client_free(c);
  rpct_server_stop();
}

static void test_throughput(void) {
  int port = rpct_server_start(0), total = 5000, window = 200, started = 0;
  rpc_client *c = rpct_client_for(port, NULL);
  rpc_stream_cbs cbs = {NULL, NULL, many_on_done};
  struct many_ctx x = {0};
  uint8_t req[32] = {1, 2, 3};
  struct rusage r0, r1;
  int64_t t0, wall;
  double cpu;

  /* Warm up the connection. */
  CHECK(rpc_client_start(c, "/test.Echo/Unary", req, sizeof(req), 5000, &cbs,
                         &x, NULL) == 0);
  CHECK(rpc_client_run(c, 5000) == 0);
  x.done = x.ok = 0;
  getrusage(RUSAGE_SELF, &r0);
  t0 = rpct_now_ms();
  while (x.done < total) {
    while (started < total && started - x.done < window) {
      CHECK(rpc_client_start(c, "/test.Echo/Unary", req, sizeof(req), 10000,
                             &cbs, &x, NULL) == 0);
      started++;
    }
    if (rpc_client_run(c, 0) < 0)
      break;
    if (started - x.done >= window || started == total)
      rpc_client_run(c, 5); /* wait for some progress */
  }
  wall = rpct_now_ms() - t0;
  getrusage(RUSAGE_SELF, &r1);
  cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec -
                 r0.ru_stime.tv_sec) +
        (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec +
                 r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) /
            1e6;
  fprintf(stderr,
          "throughput: %d unary calls, %d in flight: %lld ms wall "
          "(%.0f calls/s, bound by the python server), client CPU %.3f s "
          "(%.0f calls per client CPU second)\n",
          total, window, (long long)wall, total * 1000.0 / (double)wall, cpu,
          cpu > 0 ? total / cpu : 0.0);
  CHECK(x.done == total && x.ok == total);
  CHECK(rpc_client_pending(c) == 0);
  rpc_client_free(c);
  rpct_server_stop();
}

static const rpct_case cases[] = {
    {"unary", test_unary},
    {"server_stream", test_server_stream},
    {"client_stream", test_client_stream},
    {"concurrent", test_concurrent},
    {"throughput", test_throughput},
};

int main(int argc, char **argv) {
  return rpct_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
