/*
 * Test server for the gRPC transport: raw-bytes methods, no protobuf.
 *
 *   /test.Echo/Unary         echo the request
 *   /test.Echo/ServerStream  request = u32 count, u32 size (big-endian);
 *                            streams count messages of size bytes, message
 *                            i filled with byte (i & 0xff); produced from
 *                            on_writable so the queue stays small
 *   /test.Echo/ClientStream  replies u64 messages, u64 bytes at half-close
 *   /test.Echo/Sink          like ClientStream for big uploads; checks that
 *                            message i starts and ends with byte (i & 0xff);
 *                            replies "msgs=N bytes=N bad=N hwm_kb=N"
 *   /test.Echo/Fail          request = 1 byte code + UTF-8 message; finishes
 *                            with that code, message, and the whole request
 *                            as grpc-status-details-bin
 *   /test.Echo/Slow          never answers (deadline / cancel tests)
 *   /test.Echo/Delay         request = u32 ms; echoes it after ms
 *   /test.Echo/Thread        echo produced by another thread via
 *                            rpc_server_post
 *   /test.Echo/Stats         text counters of on_close codes per method
 *   /test.Echo/Early         client-streaming; echoes the first message and
 *                            finishes at once
 *
 * Options: --port N (0), --max-msg BYTES, --grace-ms N, --window BYTES.
 * Prints "PORT <n>" on stdout; SIGTERM = graceful shutdown, exit 0.
 */
#include "rpc_server.h"

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  M_UNARY,
  M_SSTREAM,
  M_CSTREAM,
  M_SINK,
  M_FAIL,
  M_SLOW,
  M_DELAY,
  M_THREAD,
  M_STATS,
  M_EARLY,
  M_COUNT
};
static const char *method_names[M_COUNT] = {
    "Unary", "ServerStream", "ClientStream", "Sink",  "Fail",
    "Slow",  "Delay",        "Thread",       "Stats", "Early"};
static long closes[M_COUNT][17];
static long active;
static struct event_base *g_base;
static rpc_server *g_srv;

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static void put_u64(uint8_t *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static long vm_hwm_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;

  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static void count_close(rpc_call *call, int code) {
  intptr_t m = (intptr_t)rpc_call_method_data(call);
  if (code >= 0 && code <= 16)
    closes[m][code]++;
  active--;
}

/* ---- Unary / Fail / Stats ---- */

static void unary_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  active++;
  rpc_call_set_data(call, (void *)1);
  rpc_call_send(call, msg, len);
  rpc_call_finish(call, RPC_OK, NULL);
}

static void generic_close(rpc_call *call, int code) {
  if (rpc_call_data(call))
    count_close(call, code);
  else
    closes[(intptr_t)rpc_call_method_data(call)]
          [code >= 0 && code <= 16 ? code : RPC_UNKNOWN]++;
}

static void fail_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  char *text;

  active++;
  rpc_call_set_data(call, (void *)1);
  if (len < 1) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "empty request");
    return;
  }
  text = strndup((const char *)msg + 1, len - 1);
  rpc_call_finish_details(call, msg[0], text, msg, len);
  free(text);
}

static void stats_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  char buf[4096];
  size_t off = 0;
  int m, c;

  (void)msg;
  (void)len;
  off += (size_t)snprintf(buf + off, sizeof(buf) - off, "active=%ld\n", active);
  for (m = 0; m < M_COUNT; m++)
    for (c = 0; c <= 16; c++)
      if (closes[m][c])
        off +=
            (size_t)snprintf(buf + off, sizeof(buf) - off, "%s.%s=%ld\n",
                             method_names[m], rpc_code_name(c), closes[m][c]);
  rpc_call_send(call, (const uint8_t *)buf, off);
  rpc_call_finish(call, RPC_OK, NULL);
}

/* ---- ServerStream ---- */

typedef struct sstream {
  uint32_t left, size, idx;
  uint8_t *buf;
} sstream;

static void sstream_produce(rpc_call *call) {
  sstream *s = rpc_call_data(call);

  while (s->left > 0 && rpc_call_queued_bytes(call) < 256 * 1024) {
    memset(s->buf, (int)(s->idx & 0xff), s->size);
    if (rpc_call_send(call, s->buf, s->size) != 0)
      return;
    s->idx++;
    s->left--;
  }
  if (s->left == 0)
    rpc_call_finish(call, RPC_OK, NULL);
}

static void sstream_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  sstream *s;

  if (len != 8) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "want 8 bytes");
    return;
  }
  s = calloc(1, sizeof(*s));
  s->left = get_u32(msg);
  s->size = get_u32(msg + 4);
  s->buf = malloc(s->size ? s->size : 1);
  active++;
  rpc_call_set_data(call, s);
  sstream_produce(call);
}

static void sstream_close(rpc_call *call, int code) {
  sstream *s = rpc_call_data(call);
  if (s) {
    free(s->buf);
    free(s);
  }
  generic_close(call, code);
}

/* ---- ClientStream / Sink ---- */

typedef struct cstream {
  uint64_t msgs, bytes, bad;
} cstream;

static cstream *cstream_get(rpc_call *call) {
  cstream *s = rpc_call_data(call);
  if (!s) {
    s = calloc(1, sizeof(*s));
    active++;
    rpc_call_set_data(call, s);
  }
  return s;
}

static void cstream_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  cstream *s = cstream_get(call);
  uint8_t want = (uint8_t)(s->msgs & 0xff);

  if (len > 0 && (msg[0] != want || msg[len - 1] != want))
    s->bad++;
  s->msgs++;
  s->bytes += len;
}

static void cstream_half_close(rpc_call *call) {
  cstream *s = cstream_get(call);
  uint8_t out[16];
  char text[160];

  if ((intptr_t)rpc_call_method_data(call) == M_SINK) {
    int n =
        snprintf(text, sizeof(text), "msgs=%llu bytes=%llu bad=%llu hwm_kb=%ld",
                 (unsigned long long)s->msgs, (unsigned long long)s->bytes,
                 (unsigned long long)s->bad, vm_hwm_kb());
    rpc_call_send(call, (const uint8_t *)text, (size_t)n);
  } else {
    put_u64(out, s->msgs);
    put_u64(out + 8, s->bytes);
    rpc_call_send(call, out, 16);
  }
  rpc_call_finish(call, RPC_OK, NULL);
}

/* Early: a client-streaming method that answers (echo) and finishes at the
 * first message, while the client may still be sending. */
static void early_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  if (rpc_call_is_closed(call))
    return;
  rpc_call_send(call, msg, len);
  rpc_call_finish(call, RPC_OK, NULL);
}

static void cstream_close(rpc_call *call, int code) {
  cstream *s = rpc_call_data(call);
  if (s) {
    free(s);
    count_close(call, code);
  } else {
    generic_close(call, code);
  }
}

/* ---- Slow / Delay ---- */

static void slow_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  (void)msg;
  (void)len;
  active++;
  rpc_call_set_data(call, (void *)1);
}

typedef struct delay {
  rpc_call *call;
  struct event *ev;
  uint8_t req[4];
} delay;

static void delay_fire(evutil_socket_t fd, short what, void *arg) {
  delay *d = arg;
  (void)fd;
  (void)what;
  rpc_call_send(d->call, d->req, 4);
  rpc_call_finish(d->call, RPC_OK, NULL);
}

static void delay_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  delay *d;
  struct timeval tv;
  uint32_t ms;

  if (len != 4) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "want 4 bytes");
    return;
  }
  ms = get_u32(msg);
  d = calloc(1, sizeof(*d));
  d->call = call;
  memcpy(d->req, msg, 4);
  d->ev = evtimer_new(g_base, delay_fire, d);
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  evtimer_add(d->ev, &tv);
  active++;
  rpc_call_set_data(call, d);
}

static void delay_close(rpc_call *call, int code) {
  delay *d = rpc_call_data(call);
  if (d) {
    event_free(d->ev);
    free(d);
    count_close(call, code);
  } else {
    generic_close(call, code);
  }
}

/* ---- Thread: reply produced off the loop thread ---- */

typedef struct tjob {
  rpc_call *call; /* NULL once closed */
  int refs;       /* loop-thread only */
  uint8_t *req;
  size_t len;
} tjob;

static void tjob_unref(tjob *j) {
  if (--j->refs == 0) {
    free(j->req);
    free(j);
  }
}

static void tjob_done(void *arg) {
  tjob *j = arg;
  if (j->call) {
    rpc_call_send(j->call, j->req, j->len);
    rpc_call_finish(j->call, RPC_OK, NULL);
  }
  tjob_unref(j);
}

static void *tjob_thread(void *arg) {
  struct timespec ts = {0, 5 * 1000 * 1000};
  nanosleep(&ts, NULL);
  if (rpc_server_post(g_srv, tjob_done, arg) != 0)
    abort();
  return NULL;
}

static void thread_msg(rpc_call *call, const uint8_t *msg, size_t len) {
  tjob *j = calloc(1, sizeof(*j));
  pthread_t th;

  j->call = call;
  j->refs = 2;
  j->req = malloc(len ? len : 1);
  memcpy(j->req, msg, len);
  j->len = len;
  active++;
  rpc_call_set_data(call, j);
  if (pthread_create(&th, NULL, tjob_thread, j) != 0)
    abort();
  pthread_detach(th);
}

static void thread_close(rpc_call *call, int code) {
  tjob *j = rpc_call_data(call);
  if (j) {
    j->call = NULL;
    tjob_unref(j);
    count_close(call, code);
  } else {
    generic_close(call, code);
  }
}

/* ---- main ---- */

static void on_done(void *arg) {
  (void)arg;
  fprintf(stderr, "echo_server: shutdown complete\n");
  event_base_loopexit(g_base, NULL);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  fprintf(stderr, "echo_server: SIGTERM, shutting down\n");
  rpc_server_shutdown(g_srv, on_done, NULL);
}

int main(int argc, char **argv) {
  rpc_server_opts opts;
  struct event *sig;
  char addr[64];
  int port = 0, i, rv;
  rpc_method m[M_COUNT];
  char paths[M_COUNT][64];

  memset(&opts, 0, sizeof(opts));
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
      port = atoi(argv[++i]);
    else if (strcmp(argv[i], "--max-msg") == 0 && i + 1 < argc)
      opts.max_message_size = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--grace-ms") == 0 && i + 1 < argc)
      opts.shutdown_grace_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
      opts.stream_window = (uint32_t)strtoul(argv[++i], NULL, 10);
    else {
      fprintf(stderr,
              "usage: %s [--port N] [--max-msg B] [--grace-ms N] "
              "[--window B]\n",
              argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  g_base = event_base_new();
  if (!g_base || rpc_server_new(g_base, &opts, &g_srv) != 0)
    return 1;
  memset(m, 0, sizeof(m));
  for (i = 0; i < M_COUNT; i++) {
    snprintf(paths[i], sizeof(paths[i]), "/test.Echo/%s", method_names[i]);
    m[i].path = paths[i];
    m[i].kind = RPC_KIND_UNARY;
    m[i].on_close = generic_close;
    m[i].method_data = (void *)(intptr_t)i;
  }
  m[M_UNARY].on_message = unary_msg;
  m[M_SSTREAM].kind = RPC_KIND_SERVER_STREAMING;
  m[M_SSTREAM].on_message = sstream_msg;
  m[M_SSTREAM].on_writable = sstream_produce;
  m[M_SSTREAM].on_close = sstream_close;
  m[M_CSTREAM].kind = RPC_KIND_CLIENT_STREAMING;
  m[M_CSTREAM].on_message = cstream_msg;
  m[M_CSTREAM].on_half_close = cstream_half_close;
  m[M_CSTREAM].on_close = cstream_close;
  m[M_SINK] = m[M_CSTREAM];
  m[M_SINK].path = paths[M_SINK];
  m[M_SINK].method_data = (void *)(intptr_t)M_SINK;
  m[M_FAIL].on_message = fail_msg;
  m[M_SLOW].on_message = slow_msg;
  m[M_DELAY].on_message = delay_msg;
  m[M_DELAY].on_close = delay_close;
  m[M_THREAD].on_message = thread_msg;
  m[M_THREAD].on_close = thread_close;
  m[M_STATS].on_message = stats_msg;
  m[M_EARLY].kind = RPC_KIND_CLIENT_STREAMING;
  m[M_EARLY].on_message = early_msg;
  for (i = 0; i < M_COUNT; i++) {
    rv = rpc_server_add_method(g_srv, &m[i]);
    if (rv != 0)
      return 1;
  }
  if (rpc_server_add_method(g_srv, &m[M_UNARY]) == 0) {
    fprintf(stderr, "duplicate registration accepted\n");
    return 1;
  }
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  rv = rpc_server_listen(g_srv, addr);
  if (rv != 0) {
    fprintf(stderr, "listen %s failed: %d\n", addr, rv);
    return 1;
  }
  sig = evsignal_new(g_base, SIGTERM, on_sigterm, NULL);
  evsignal_add(sig, NULL);
  printf("PORT %d\n", rpc_server_port(g_srv));
  fflush(stdout);
  event_base_dispatch(g_base);
  rpc_server_free(g_srv);
  event_free(sig);
  event_base_free(g_base);
  return 0;
}
