/*
 * rpc_client against an independent gRPC server (python3-grpcio, see
 * echo_server.py) when things go wrong: error statuses and framing,
 * deadlines, a refused or restarted server, oversized messages and
 * cancellation. Usage: rpc_client_fail_test CASE /path/to/echo_server.py.
 */
#include "rpc_test_fixture.h"

#include "db_err.h"

#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- errors ---- */

struct hdr_probe {
  int in_trailers; /* past the blank line that ends the header block */
  int status_in_headers, status_in_trailers;
};

static size_t probe_header(char *line, size_t sz, size_t n, void *ud) {
  struct hdr_probe *p = ud;
  size_t len = sz * n;

  if (len <= 2 && (line[0] == '\r' || line[0] == '\n'))
    p->in_trailers = 1;
  else if (len > 12 && strncasecmp(line, "grpc-status:", 12) == 0) {
    if (p->in_trailers)
      p->status_in_trailers++;
    else
      p->status_in_headers++;
  }
  return len;
}

static size_t probe_write(char *d, size_t sz, size_t n, void *ud) {
  return sz * n;
}

/* Ask the server with plain libcurl how it frames the status of a call,
 * to know that the client test really covers a Trailers-Only response. */
static void probe_framing(int port, const char *path, const uint8_t *body,
                          size_t len, struct hdr_probe *p) {
  CURL *e = curl_easy_init();
  struct curl_slist *h = NULL;
  char url[128];
  uint8_t *framed = malloc(len + 5);

  framed[0] = 0;
  rpct_put32(framed + 1, (uint32_t)len);
  memcpy(framed + 5, body, len);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  h = curl_slist_append(h, "content-type: application/grpc");
  h = curl_slist_append(h, "te: trailers");
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, framed);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(len + 5));
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, probe_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, p);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, probe_write);
  curl_easy_setopt(e, CURLOPT_PROXY, "");
  curl_easy_perform(e);
  curl_easy_cleanup(e);
  curl_slist_free_all(h);
  free(framed);
}

struct sf_ctx {
  int msgs, done;
  rpc_status st;
};

static int sf_on_message(void *ctx, const uint8_t *m, size_t len) {
  ((struct sf_ctx *)ctx)->msgs++;
  return 0;
}

static void sf_on_done(void *ctx, const rpc_status *st) {
  struct sf_ctx *x = ctx;

  x->done++;
  x->st.code = st->code;
  x->st.message = st->message ? strdup(st->message) : NULL;
  if (st->details_len) {
    x->st.details = malloc(st->details_len);
    memcpy(x->st.details, st->details, st->details_len);
    x->st.details_len = st->details_len;
  }
}

static void test_errors(void) {
  int port = rpct_server_start(0);
  rpc_client *c = rpct_client_for(port, NULL);
  static const char umsg[] =
      "no such blob: \xc3\xbc\x62\x65r 100% \xe2\x9c\x93";
  static const uint8_t details[] = {0x08, 0x09, 0x12, 0x00, 0xff,
                                    0x0a, 0x0d, 0x25, 0x80, 0x01};
  uint8_t req[256], *resp = NULL;
  size_t rlen, n;
  rpc_status st = {0};
  struct hdr_probe p1 = {0}, p2 = {0};
  rpc_stream_cbs cbs = {sf_on_message, NULL, sf_on_done};
  struct sf_ctx sf = {0};

  rpct_put32(req, RPC_FAILED_PRECONDITION);
  rpct_put32(req + 4, sizeof(details));
  memcpy(req + 8, details, sizeof(details));
  memcpy(req + 8 + sizeof(details), umsg, strlen(umsg));
  n = 8 + sizeof(details) + strlen(umsg);

  /* Fail aborts before sending anything: Trailers-Only. */
  probe_framing(port, "/test.Echo/Fail", req, n, &p1);
  CHECK(p1.status_in_headers == 1 && p1.status_in_trailers == 0);
  CHECK(rpc_client_unary(c, "/test.Echo/Fail", req, n, 5000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_FAILED_PRECONDITION);
  CHECK(st.message && strcmp(st.message, umsg) == 0);
  CHECK(st.details_len == sizeof(details) &&
        memcmp(st.details, details, sizeof(details)) == 0);
  CHECK(resp == NULL);
  rpc_status_clear(&st);

  /* StreamFail sends headers and messages, then the status in trailers. */
  probe_framing(port, "/test.Echo/StreamFail", req, n, &p2);
  CHECK(p2.status_in_headers == 0 && p2.status_in_trailers == 1);
  CHECK(rpc_client_start(c, "/test.Echo/StreamFail", req, n, 5000, &cbs, &sf,
                         NULL) == 0);
  CHECK(rpc_client_run(c, 10000) == 0);
  CHECK(sf.done == 1 && sf.msgs == 2);
  CHECK_CODE(&sf.st, RPC_FAILED_PRECONDITION);
  CHECK(sf.st.message && strcmp(sf.st.message, umsg) == 0);
  CHECK(sf.st.details_len == sizeof(details) &&
        memcmp(sf.st.details, details, sizeof(details)) == 0);
  rpc_status_clear(&sf.st);

  /* A code without details, plain message. */
  rpct_put32(req, RPC_NOT_FOUND);
  rpct_put32(req + 4, 0);
  memcpy(req + 8, "missing", 7);
  CHECK(rpc_client_unary(c, "/test.Echo/Fail", req, 15, 5000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_NOT_FOUND);
  CHECK(st.message && strcmp(st.message, "missing") == 0);
  CHECK(st.details == NULL && st.details_len == 0);
  rpc_status_clear(&st);

  /* Unknown method and unknown service. */
  CHECK(rpc_client_unary(c, "/test.Echo/Nope", req, 4, 5000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_UNIMPLEMENTED);
  rpc_status_clear(&st);
  CHECK(rpc_client_unary(c, "/no.Such/Service", req, 4, 5000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_UNIMPLEMENTED);
  rpc_status_clear(&st);

  /* A unary call answered by a stream of 3 messages: cardinality. */
  rpct_put32(req, 3);
  rpct_put32(req + 4, 8);
  CHECK(rpc_client_unary(c, "/test.Echo/ServerStream", req, 8, 5000, &resp,
                         &rlen, &st) == 0);
  CHECK_CODE(&st, RPC_UNIMPLEMENTED);
  CHECK(resp == NULL);
  rpc_status_clear(&st);

  /* Bad arguments are local errors. */
  CHECK(rpc_client_unary(c, "no-slash", req, 4, 0, &resp, &rlen, &st) ==
        DB_EINVAL);
  CHECK(rpc_client_start(c, "/a/b", NULL, 5, 0, NULL, NULL, NULL) == DB_EINVAL);

  /* The connection is still good. */
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", req, 4, 5000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_OK);
  CHECK(rlen == 4);
  free(resp);
  rpc_status_clear(&st);
  rpc_client_free(c);
  rpct_server_stop();
}

/* One unary call with a u32 argument (for Slow: milliseconds to sleep);
 * prints and returns its wall time. st receives the status (caller clears
 * it); the response is dropped. */
static int64_t timed_unary(rpc_client *c, const char *what, const char *path,
                           uint32_t arg, int64_t timeout_ms, rpc_status *st) {
  uint8_t req[4], *resp = NULL;
  size_t rlen;
  int64_t t0 = rpct_now_ms(), el;

  rpct_put32(req, arg);
  CHECK(rpc_client_unary(c, path, req, 4, timeout_ms, &resp, &rlen, st) == 0);
  el = rpct_now_ms() - t0;
  fprintf(stderr, "%s: %s after %lld ms (%s)\n", what, rpc_code_name(st->code),
          (long long)el, st->message ? st->message : "");
  free(resp);
  return el;
}

static void test_deadline(void) {
  rpc_client *c = rpct_client_for(rpct_server_start(0), NULL);
  rpc_status st = {0};
  int64_t el;

  el = timed_unary(c, "deadline", "/test.Echo/Slow", 5000, 300, &st);
  CHECK_CODE(&st, RPC_DEADLINE_EXCEEDED);
  CHECK(el >= 250 && el < 1500);
  rpc_status_clear(&st);
  /* Same client, next call fine. */
  timed_unary(c, "next", "/test.Echo/Slow", 10, 5000, &st);
  CHECK_CODE(&st, RPC_OK);
  rpc_status_clear(&st);
  rpc_client_free(c);
  rpct_server_stop();
}

/* A server that stops answering (slow handler, frozen process) is noticed
 * after the idle timeout, long before the deadline; a call that opted out
 * waits; a server that answers in time is unaffected. */
static void test_idle(void) {
  rpc_client_opts o = {0};
  rpc_client *c;
  rpc_stream *s = NULL;
  uint8_t req[4];
  rpc_status st = {0};
  int64_t el;
  int n[40] = {0};
  rpc_stream_cbs cbs = {NULL, NULL, rpct_count_done};

  o.idle_timeout_ms = 1000;
  c = rpct_client_for(rpct_server_start(0), &o);
  el = timed_unary(c, "idle", "/test.Echo/Slow", 8000, 20000, &st);
  CHECK_CODE(&st, RPC_UNAVAILABLE);
  CHECK(st.message && strstr(st.message, "not responding") != NULL);
  CHECK(el >= 900 && el < 5000);
  rpc_status_clear(&st);

  /* Opted out: a 2.5 s silence is waited for. */
  rpct_put32(req, 2500);
  CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 20000, &cbs, n, &s) ==
        0);
  rpc_stream_set_idle_timeout(s, 0);
  while (rpc_client_run(c, 1000) > 0)
    ;
  CHECK(n[10 + RPC_OK] == 1);

  /* Answers within the idle timeout pass, on the same client. */
  timed_unary(c, "in time", "/test.Echo/Slow", 300, 20000, &st);
  CHECK_CODE(&st, RPC_OK);
  rpc_status_clear(&st);

  /* A frozen server: the connection is open, nothing answers. */
  CHECK(rpct_server_signal(SIGSTOP) == 0);
  el = timed_unary(c, "frozen", "/test.Echo/Unary", 0, 20000, &st);
  CHECK_CODE(&st, RPC_UNAVAILABLE);
  CHECK(el < 5000);
  rpc_status_clear(&st);
  CHECK(rpct_server_signal(SIGCONT) == 0);
  timed_unary(c, "thawed", "/test.Echo/Unary", 0, 5000, &st);
  CHECK_CODE(&st, RPC_OK);
  rpc_status_clear(&st);
  rpc_client_free(c);
  rpct_server_stop();
}

static void test_refused(void) {
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  rpc_client *c;
  rpc_status st = {0};
  uint8_t *resp = NULL;
  size_t rlen;
  int64_t t0;

  /* A port that was just free: nobody listens there. */
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
  port = ntohs(a.sin_port);
  close(fd);
  c = rpct_client_for(port, NULL);
  t0 = rpct_now_ms();
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", (const uint8_t *)"x", 1, 5000,
                         &resp, &rlen, &st) == 0);
  CHECK_CODE(&st, RPC_UNAVAILABLE);
  CHECK(rpct_now_ms() - t0 < 2000);
  rpc_status_clear(&st);
  rpc_client_free(c);

  {
    rpc_client *bad = NULL;
    CHECK(rpc_client_new("127.0.0.1", NULL, &bad) == DB_EINVAL);
    CHECK(rpc_client_new("http://127.0.0.1:80", NULL, &bad) == DB_EINVAL);
    CHECK(rpc_client_new("127.0.0.1:99999", NULL, &bad) == DB_EINVAL);
    CHECK(rpc_client_new("[::1]:8980", NULL, &bad) == 0);
    rpc_client_free(bad);
  }
}

static void test_restart(void) {
  int port = rpct_server_start(0);
  rpc_client *c = rpct_client_for(port, NULL);
  rpc_status st = {0};
  uint8_t *resp = NULL;
  size_t rlen;
  int i;

  for (i = 0; i < 3; i++) {
    CHECK(rpc_client_unary(c, "/test.Echo/Unary", (const uint8_t *)"hi", 2,
                           5000, &resp, &rlen, &st) == 0);
    CHECK_CODE(&st, RPC_OK);
    free(resp);
    rpc_status_clear(&st);
  }
  rpct_server_stop();
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", (const uint8_t *)"hi", 2, 5000,
                         &resp, &rlen, &st) == 0);
  CHECK_CODE(&st, RPC_UNAVAILABLE);
  rpc_status_clear(&st);
  CHECK(rpct_server_start(port) == port);
  /* The very first call after the restart must succeed. */
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", (const uint8_t *)"again", 5,
                         5000, &resp, &rlen, &st) == 0);
  CHECK_CODE(&st, RPC_OK);
  CHECK(rlen == 5 && resp && memcmp(resp, "again", 5) == 0);
  free(resp);
  rpc_status_clear(&st);
  /* Restart while the old connection is idle in curl's cache. */
  rpct_server_stop();
  CHECK(rpct_server_start(port) == port);
  usleep(100000);
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", (const uint8_t *)"third", 5,
                         5000, &resp, &rlen, &st) == 0);
  CHECK_CODE(&st, RPC_OK);
  free(resp);
  rpc_status_clear(&st);
  rpc_client_free(c);
  rpct_server_stop();
}

static void test_max_message(void) {
  rpc_client_opts o = {.max_message_size = 1 << 20};
  rpc_client *c = rpct_client_for(rpct_server_start(0), &o);
  size_t big = 2 << 20, small = 1 << 20;
  uint8_t *req = calloc(1, big), *resp = NULL;
  size_t rlen;
  rpc_status st = {0};

  CHECK(rpc_client_unary(c, "/test.Echo/Unary", req, big, 10000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_RESOURCE_EXHAUSTED);
  CHECK(resp == NULL);
  rpc_status_clear(&st);
  /* Exactly the limit is fine, on the same client. */
  CHECK(rpc_client_unary(c, "/test.Echo/Unary", req, small, 10000, &resp, &rlen,
                         &st) == 0);
  CHECK_CODE(&st, RPC_OK);
  CHECK(rlen == small);
  free(resp);
  free(req);
  rpc_status_clear(&st);
  rpc_client_free(c);
  rpct_server_stop();
}

static void test_cancel(void) {
  rpc_client *c = rpct_client_for(rpct_server_start(0), NULL);
  rpc_stream_cbs cbs = {NULL, NULL, rpct_count_done};
  int cnt[32] = {0}, cnt2[32] = {0}, i;
  uint8_t req[4];
  rpc_stream *s = NULL;
  int64_t t0;

  rpct_put32(req, 5000);
  CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 0, &cbs, cnt, &s) == 0);
  CHECK(rpc_client_run(c, 300) == 1); /* still running */
  t0 = rpct_now_ms();
  rpc_stream_cancel(s);
  CHECK(cnt[10 + RPC_CANCELLED] == 0); /* on_done only inside run */
  CHECK(rpc_client_run(c, 5000) == 0);
  CHECK(rpct_now_ms() - t0 < 500);
  CHECK(cnt[10 + RPC_CANCELLED] == 1);

  /* Cancel before anything was sent. */
  CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 0, &cbs, cnt, &s) == 0);
  rpc_stream_cancel(s);
  rpc_stream_cancel(s); /* twice is harmless */
  CHECK(rpc_client_run(c, 5000) == 0);
  CHECK(cnt[10 + RPC_CANCELLED] == 2);

  /* rpc_client_free cancels what is left, on_done once each. */
  for (i = 0; i < 20; i++)
    CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 0, &cbs, cnt2, NULL) ==
          0);
  CHECK(rpc_client_run(c, 200) == 20);
  for (i = 0; i < 5; i++)
    CHECK(rpc_client_start(c, "/test.Echo/Slow", req, 4, 0, &cbs, cnt2, NULL) ==
          0);
  rpc_client_free(c);
  CHECK(cnt2[10 + RPC_CANCELLED] == 25);
  for (i = 0; i < 17; i++) {
    if (i != RPC_CANCELLED)
      CHECK(cnt2[10 + i] == 0 && cnt[10 + i] == 0);
  }
  rpct_server_stop();
}

static const rpct_case cases[] = {
    {"errors", test_errors},
    {"deadline", test_deadline},
    {"refused", test_refused},
    {"restart", test_restart},
    {"max_message", test_max_message},
    {"cancel", test_cancel},
    {"idle", test_idle},
};

int main(int argc, char **argv) {
  return rpct_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
