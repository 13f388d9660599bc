/*
 * gRPC server: one call (one HTTP/2 stream).
 *
 * Request side: header fields are kept in a list (rpc_server_hdr.c); DATA
 * chunks are cut into length-prefixed messages. A message that lies whole
 * inside one chunk goes to on_message straight from nghttp2's buffer (no copy);
 * only messages split across chunks are copied into call->rbuf, which grows as
 * bytes arrive (a forged 64 MiB length prefix costs nothing until the
 * bytes come). Flow-control credit for a chunk is returned after the
 * handler has seen every whole message in it, so the peer can only have
 * one window outstanding plus the partial message we hold.
 *
 * Response side: rpc_call_send() appends the framed message to an evbuffer
 * (the one copy the API promises); the data provider hands nghttp2 lengths
 * only (NGHTTP2_DATA_FLAG_NO_COPY) and rpc__call_send_data() moves the
 * bytes into the connection's output evbuffer with evbuffer_remove_buffer,
 * which relinks whole chains instead of copying them. When the queue is
 * empty and the call is not finished the provider returns DEFERRED; send
 * and finish resume it. Trailers go with EOF|NO_END_STREAM.
 */
#include "rpc_server_int.h"

#include "db_err.h"
#include "db_log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_COMP "rpc-server"
#define RBUF_KEEP_MAX (4u * 1024 * 1024)
/* Delay of the RST_STREAM(NO_ERROR) after an early end (see
 * rpc__call_on_end_sent). */
#define EARLY_RST_DELAY_US 20000
/* How long a finished client-streaming response waits for the client's
 * END_STREAM before it goes out anyway (see hold_response). */
#define HOLD_RESPONSE_MS 1000

#define MAKE_NV(n, v, vlen)                                                    \
  {                                                                            \
    (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen),                     \
        NGHTTP2_NV_FLAG_NO_COPY_NAME                                           \
  }

static int call_done(const rpc_call *call) {
  return call->finished || call->closed || call->deadline_hit;
}

static const rpc_server_opts *call_opts(const rpc_call *call) {
  return &call->conn->srv->opts;
}

rpc_call *rpc__call_new(rpc_conn *c, int32_t stream_id) {
  rpc_call *call = calloc(1, sizeof(*call));

  if (!call)
    return NULL;
  call->sendq = evbuffer_new();
  if (!call->sendq) {
    free(call);
    return NULL;
  }
  call->conn = c;
  call->stream_id = stream_id;
  call->next = c->calls;
  if (c->calls)
    c->calls->prev = call;
  c->calls = call;
  return call;
}

static void writable_unlink(rpc_call *call) {
  rpc_conn *c = call->conn;
  rpc_call **pp, *prev = NULL;

  if (!call->writable_queued)
    return;
  for (pp = &c->writable; *pp; prev = *pp, pp = &(*pp)->wnext) {
    if (*pp == call) {
      *pp = call->wnext;
      if (c->writable_tail == call)
        c->writable_tail = prev;
      break;
    }
  }
  call->wnext = NULL;
  call->writable_queued = 0;
}

void rpc__call_destroy(rpc_call *call) {
  rpc_conn *c = call->conn;
  rpc__hdr *h, *hn;

  if (call->dispatched && !call->closed) {
    int code;
    if (call->end_sent)
      code = call->status;
    else if (call->deadline_hit)
      code = RPC_DEADLINE_EXCEEDED;
    else
      code = RPC_CANCELLED;
    call->closed = 1;
    if (call->method->m.on_close)
      call->method->m.on_close(call, code);
  }
  call->closed = 1;
  writable_unlink(call);
  if (call->prev)
    call->prev->next = call->next;
  else
    c->calls = call->next;
  if (call->next)
    call->next->prev = call->prev;
  if (call->deadline_ev)
    event_free(call->deadline_ev);
  if (call->rst_ev)
    event_free(call->rst_ev);
  if (call->hold_ev)
    event_free(call->hold_ev);
  for (h = call->hdrs; h; h = hn) {
    hn = h->next;
    free(h);
  }
  free(call->path);
  free(call->rbuf);
  free(call->status_msg);
  free(call->status_details);
  evbuffer_free(call->sendq);
  free(call);
}

/* ---- finishing ---- */

static size_t status_nv(rpc_call *call, nghttp2_nv *nv, char *codebuf) {
  size_t n = 0;
  int len = snprintf(codebuf, 12, "%d", call->status);

  nv[n++] = (nghttp2_nv)MAKE_NV("grpc-status", codebuf, (size_t)len);
  if (call->status_msg)
    nv[n++] = (nghttp2_nv)MAKE_NV("grpc-message", call->status_msg,
                                  strlen(call->status_msg));
  if (call->status_details)
    nv[n++] =
        (nghttp2_nv)MAKE_NV("grpc-status-details-bin", call->status_details,
                            strlen(call->status_details));
  if (call->accept_encoding)
    nv[n++] = (nghttp2_nv)MAKE_NV("grpc-accept-encoding", call->accept_encoding,
                                  strlen(call->accept_encoding));
  return n;
}

static void drop_rbuf(rpc_call *call) {
  free(call->rbuf);
  call->rbuf = NULL;
  call->rbuf_cap = 0;
  call->msg_have = 0;
  call->prefix_have = 0;
  call->held = 0;
}

/* A client-streaming call that finishes while the client is still sending
 * keeps the rest of its response (message and trailers) until the client
 * half-closes: libcurl 7.88 loses trailers that arrive while its upload is
 * still running, and then waits for the stream to end until its deadline.
 * The client's remaining DATA is consumed and dropped meanwhile; a client
 * that never half-closes gets the response after HOLD_RESPONSE_MS. */
static int holding(const rpc_call *call) {
  return call->finished && !call->remote_closed && !call->released &&
         call->method && call->method->m.kind == RPC_KIND_CLIENT_STREAMING;
}

static void release_response(rpc_call *call) {
  if (call->deferred) {
    call->deferred = 0;
    nghttp2_session_resume_data(call->conn->session, call->stream_id);
    rpc__conn_schedule_flush(call->conn);
  }
}

static void hold_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_call *call = arg;
  (void)fd;
  (void)what;
  call->released = 1;
  release_response(call);
}

static void hold_response(rpc_call *call) {
  struct timeval tv = {HOLD_RESPONSE_MS / 1000,
                       (HOLD_RESPONSE_MS % 1000) * 1000};
  if (!holding(call))
    return;
  if (!call->hold_ev)
    call->hold_ev = evtimer_new(call->conn->srv->base, hold_cb, call);
  if (call->hold_ev)
    evtimer_add(call->hold_ev, &tv);
  else
    call->released = 1; /* out of memory: send now */
}

static int finish_impl(rpc_call *call, int code, const char *message,
                       const uint8_t *details, size_t details_len,
                       const char *accept_encoding) {
  rpc_conn *c = call->conn;
  int rv;

  if (call_done(call))
    return DB_EINVAL;
  if (code < 0 || code > 16)
    code = RPC_UNKNOWN;
  if (message && *message) {
    call->status_msg = rpc_message_encode(message);
    if (!call->status_msg)
      return DB_ENOMEM;
  }
  if (details && details_len > 0) {
    rv = rpc_b64_encode(details, details_len, &call->status_details);
    if (rv != 0) {
      free(call->status_msg);
      call->status_msg = NULL;
      return rv;
    }
  }
  call->status = code;
  call->accept_encoding = accept_encoding;
  call->finished = 1;
  call->discard = 1;
  drop_rbuf(call);
  if (!call->headers_sent) {
    /* Trailers-Only: one HEADERS block with END_STREAM. */
    nghttp2_nv nv[7];
    char codebuf[12];
    size_t n = 0;

    nv[n++] = (nghttp2_nv)MAKE_NV(":status", "200", 3);
    nv[n++] = (nghttp2_nv)MAKE_NV("content-type", "application/grpc", 16);
    n += status_nv(call, nv + n, codebuf);
    call->headers_sent = 1;
    rv = nghttp2_submit_response(c->session, call->stream_id, nv, n, NULL);
    if (rv != 0)
      DB_WARN(LOG_COMP, "stream %d: submit trailers-only: %s", call->stream_id,
              nghttp2_strerror(rv));
  } else {
    hold_response(call);
    if (call->deferred && !holding(call)) {
      call->deferred = 0;
      nghttp2_session_resume_data(c->session, call->stream_id);
    }
  }
  rpc__conn_schedule_flush(c);
  return 0;
}

int rpc_call_finish(rpc_call *call, int code, const char *message) {
  if (!call)
    return DB_EINVAL;
  return finish_impl(call, code, message, NULL, 0, NULL);
}

int rpc_call_finish_details(rpc_call *call, int code, const char *message,
                            const uint8_t *status_pb, size_t status_len) {
  if (!call)
    return DB_EINVAL;
  return finish_impl(call, code, message, status_pb, status_len, NULL);
}

void rpc__call_fail(rpc_call *call, int code, const char *msg) {
  DB_DEBUG(LOG_COMP, "stream %d %s: %s: %s", call->stream_id,
           call->path ? call->path : "?", rpc_code_name(code), msg);
  finish_impl(call, code, msg, NULL, 0, NULL);
}

static void respond_http(rpc_call *call, const char *status) {
  nghttp2_nv nv[] = {MAKE_NV(":status", status, strlen(status))};

  call->finished = 1;
  call->discard = 1;
  call->headers_sent = 1;
  nghttp2_submit_response(call->conn->session, call->stream_id, nv, 1, NULL);
}

/* ---- request lifecycle ---- */

static void deadline_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_call *call = arg;
  int ended;

  (void)fd;
  (void)what;
  if (call->end_sent || call->closed)
    return;
  DB_DEBUG(LOG_COMP, "stream %d %s: deadline exceeded", call->stream_id,
           call->path);
  /* With nothing queued, end the call with DEADLINE_EXCEEDED, as grpc-core
   * does: a client whose own timer is late must not read a reset as
   * CANCELLED. Queued DATA could sit behind a closed window, so then, or
   * if the status cannot be set, reset the stream at once. */
  ended = evbuffer_get_length(call->sendq) == 0 &&
          (call->remote_closed ||
           call->method->m.kind != RPC_KIND_CLIENT_STREAMING) &&
          finish_impl(call, RPC_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0,
                      NULL) == 0;
  call->deadline_hit = 1; /* after finish_impl, which refuses a done call */
  if (ended)
    return;
  call->discard = 1;
  nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE,
                            call->stream_id, NGHTTP2_CANCEL);
  rpc__conn_schedule_flush(call->conn);
}

void rpc__call_on_request(rpc_call *call) {
  rpc_server *srv = call->conn->srv;
  const char *ct = rpc_call_header(call, "content-type");
  const char *method = rpc_call_header(call, ":method");
  const char *tmo;
  const rpc__method_ent *m;
  int64_t ms;
  char msg[256];

  if (!method || strcmp(method, "POST") != 0) {
    respond_http(call, "405");
    return;
  }
  /* "application/grpc" optionally followed by "+proto", "+json", ";..." */
  if (!ct || strncmp(ct, "application/grpc", 16) != 0 ||
      (ct[16] != '\0' && ct[16] != '+' && ct[16] != ';')) {
    respond_http(call, "415");
    return;
  }
  if (srv->nauth) {
    const char *why =
        rpc__auth_check(srv, rpc_call_header(call, "authorization"));
    if (why) {
      rpc__call_fail(call, RPC_UNAUTHENTICATED, why);
      return;
    }
  }
  call->encoding = (char *)rpc_call_header(call, "grpc-encoding");
  m = call->path ? rpc__server_find(srv, call->path, strlen(call->path)) : NULL;
  if (!m) {
    snprintf(msg, sizeof(msg), "Method not found: %.200s",
             call->path ? call->path : "(none)");
    rpc__call_fail(call, RPC_UNIMPLEMENTED, msg);
    return;
  }
  call->method = m;
  call->dispatched = 1;
  tmo = rpc_call_header(call, "grpc-timeout");
  if (tmo) {
    if (rpc_timeout_parse(tmo, &ms) != 0) {
      DB_DEBUG(LOG_COMP, "ignoring malformed grpc-timeout '%s'", tmo);
    } else {
      struct timeval tv;
      call->deadline = rpc_now_ms() + ms;
      call->deadline_ev = evtimer_new(srv->base, deadline_cb, call);
      if (!call->deadline_ev) {
        rpc__call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
      }
      tv.tv_sec = (time_t)(ms / 1000);
      tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
      evtimer_add(call->deadline_ev, &tv);
    }
  }
}

static int rbuf_reserve(rpc_call *call, size_t need);

/* A whole request message. Client-streaming calls get it at once. For
 * unary and server-streaming methods it is held until the half-close, so
 * that a second message is a clean UNIMPLEMENTED before the handler has
 * answered (as grpc-java does); clients send END_STREAM with the request,
 * so this costs no round trip, only a copy when the message was not
 * already reassembled in rbuf. */
static void deliver(rpc_call *call, const uint8_t *msg, size_t len) {
  call->nmsgs++;
  if (call->method->m.kind == RPC_KIND_CLIENT_STREAMING) {
    if (call->method->m.on_message)
      call->method->m.on_message(call, msg, len);
    return;
  }
  if (msg != call->rbuf && len > 0) {
    if (rbuf_reserve(call, len) != 0) {
      rpc__call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    memcpy(call->rbuf, msg, len);
  }
  call->held = 1;
  call->held_len = len;
}

/* The 5-byte prefix is complete: check it. 0 to go on, -1 if failed. */
static int check_prefix(rpc_call *call) {
  const rpc_server_opts *o = call_opts(call);
  char msg[160];

  call->msg_len = (size_t)call->prefix[1] << 24 |
                  (size_t)call->prefix[2] << 16 | (size_t)call->prefix[3] << 8 |
                  call->prefix[4];
  call->msg_have = 0;
  if (call->prefix[0] == 1 && call->encoding &&
      strcmp(call->encoding, "identity") != 0) {
    snprintf(msg, sizeof(msg), "Compression '%.64s' is not supported",
             call->encoding);
    finish_impl(call, RPC_UNIMPLEMENTED, msg, NULL, 0, "identity");
    return -1;
  }
  if (call->prefix[0] != 0) {
    rpc__call_fail(call, RPC_INTERNAL,
                   call->prefix[0] == 1
                       ? "Compressed-Flag set without grpc-encoding"
                       : "Invalid Compressed-Flag in message prefix");
    return -1;
  }
  if (call->msg_len > o->max_message_size) {
    snprintf(msg, sizeof(msg), "Received message larger than max (%zu vs. %zu)",
             call->msg_len, o->max_message_size);
    rpc__call_fail(call, RPC_RESOURCE_EXHAUSTED, msg);
    return -1;
  }
  if (call->method->m.kind != RPC_KIND_CLIENT_STREAMING && call->nmsgs > 0) {
    rpc__call_fail(call, RPC_UNIMPLEMENTED,
                   "More than one request message for a unary-request "
                   "method");
    return -1;
  }
  return 0;
}

static int rbuf_reserve(rpc_call *call, size_t need) {
  size_t cap = call->rbuf_cap ? call->rbuf_cap : 16384;
  uint8_t *p;

  if (need <= call->rbuf_cap)
    return 0;
  while (cap < need)
    cap *= 2;
  if (cap > call->msg_len)
    cap = call->msg_len;
  p = realloc(call->rbuf, cap);
  if (!p)
    return DB_ENOMEM;
  call->rbuf = p;
  call->rbuf_cap = cap;
  return 0;
}

/* RST_STREAM(NO_ERROR) after our END_STREAM, while the client still
 * sends (see rpc__call_on_end_sent). At most once per call. */
static void early_rst(rpc_call *call) {
  if (call->remote_closed || call->rst_sent)
    return;
  call->rst_sent = 1;
  nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE,
                            call->stream_id, NGHTTP2_NO_ERROR);
  rpc__conn_schedule_flush(call->conn);
}

static void early_rst_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  early_rst(arg);
}

void rpc__call_on_data(rpc_call *call, const uint8_t *data, size_t len) {
  rpc_conn *c = call->conn;
  size_t total = len, take;

  if (call->end_sent)
    early_rst(call);

  while (len > 0 && !call->discard && call->dispatched && !call_done(call)) {
    if (call->prefix_have < 5) {
      take = 5 - call->prefix_have;
      if (take > len)
        take = len;
      memcpy(call->prefix + call->prefix_have, data, take);
      call->prefix_have += take;
      data += take;
      len -= take;
      if (call->prefix_have < 5)
        break;
      if (check_prefix(call) != 0)
        break;
    }
    if (call->msg_have == 0 && len >= call->msg_len) {
      /* Whole message inside this chunk: hand it over in place. */
      call->prefix_have = 0;
      deliver(call, data, call->msg_len);
      data += call->msg_len;
      len -= call->msg_len;
      continue;
    }
    if (len == 0)
      break; /* the prefix ended this chunk; the body comes in the next */
    take = call->msg_len - call->msg_have;
    if (take > len)
      take = len;
    if (rbuf_reserve(call, call->msg_have + take) != 0) {
      rpc__call_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
      break;
    }
    memcpy(call->rbuf + call->msg_have, data, take);
    call->msg_have += take;
    data += take;
    len -= take;
    if (call->msg_have == call->msg_len) {
      call->prefix_have = 0;
      call->msg_have = 0;
      deliver(call, call->rbuf, call->msg_len);
      if (!call->held && call->rbuf_cap > RBUF_KEEP_MAX)
        drop_rbuf(call);
    }
  }
  /* Everything in this chunk was either handled or copied into rbuf. */
  nghttp2_session_consume(c->session, call->stream_id, total);
}

void rpc__call_on_half_close(rpc_call *call) {
  call->remote_closed = 1;
  if (call->finished)
    release_response(call);
  if (!call->dispatched || call_done(call))
    return;
  if (call->prefix_have > 0 || call->msg_have > 0) {
    /* A framing error of the request stream, like a request that does not
     * parse: INTERNAL (gRPC libraries never produce INVALID_ARGUMENT). */
    rpc__call_fail(call, RPC_INTERNAL,
                   "Request stream ended inside a length-prefixed message");
    return;
  }
  if (call->method->m.kind != RPC_KIND_CLIENT_STREAMING) {
    if (!call->held) {
      rpc__call_fail(call, RPC_UNIMPLEMENTED,
                     "No request message for a unary-request method");
      return;
    }
    call->held = 0;
    if (call->method->m.on_message)
      call->method->m.on_message(
          call, call->held_len ? call->rbuf : (const uint8_t *)"",
          call->held_len);
    if (call->rbuf_cap > RBUF_KEEP_MAX || call_done(call))
      drop_rbuf(call);
    return;
  }
  if (call->method->m.on_half_close)
    call->method->m.on_half_close(call);
}

void rpc__call_on_end_sent(rpc_call *call) {
  struct timeval tv = {0, EARLY_RST_DELAY_US};

  call->end_sent = 1;
  if (call->deadline_ev)
    event_del(call->deadline_ev);
  /* An early close (the client is still sending) must be followed by
   * RST_STREAM(NO_ERROR), as the gRPC HTTP/2 spec asks: otherwise a client
   * blocked on flow control for the rest of its upload waits forever. But
   * libcurl 7.88 drops a response whose trailers and RST_STREAM land in
   * the same read, so the reset goes out in a later write: when more
   * request DATA arrives (rpc__call_on_data) or after a short delay,
   * whichever comes first. */
  if (call->remote_closed)
    return;
  if (!call->rst_ev)
    call->rst_ev = evtimer_new(call->conn->srv->base, early_rst_cb, call);
  if (call->rst_ev)
    evtimer_add(call->rst_ev, &tv);
  else
    early_rst(call); /* out of memory: better early than never */
}

/* ---- response ---- */

int rpc_call_send(rpc_call *call, const uint8_t *msg, size_t len) {
  rpc_conn *c;
  uint8_t pfx[5];
  int rv;

  if (!call || (!msg && len > 0))
    return DB_EINVAL;
  if (call_done(call))
    return DB_EINVAL;
  if (len > call_opts(call)->max_message_size || len > UINT32_MAX)
    return DB_ETOOBIG;
  c = call->conn;
  pfx[0] = 0;
  pfx[1] = (uint8_t)(len >> 24);
  pfx[2] = (uint8_t)(len >> 16);
  pfx[3] = (uint8_t)(len >> 8);
  pfx[4] = (uint8_t)len;
  /* After a successful expand the two adds cannot fail. */
  if (evbuffer_expand(call->sendq, len + 5) != 0)
    return DB_ENOMEM;
  evbuffer_add(call->sendq, pfx, 5);
  if (len > 0)
    evbuffer_add(call->sendq, msg, len);
  if (!call->headers_sent) {
    nghttp2_nv nv[] = {MAKE_NV(":status", "200", 3),
                       MAKE_NV("content-type", "application/grpc", 16)};
    nghttp2_data_provider prd;

    prd.source.ptr = call;
    prd.read_callback = rpc__call_data_read;
    rv = nghttp2_submit_response(c->session, call->stream_id, nv, 2, &prd);
    if (rv != 0) {
      DB_WARN(LOG_COMP, "stream %d: submit response: %s", call->stream_id,
              nghttp2_strerror(rv));
      return DB_EPROTO;
    }
    call->headers_sent = 1;
  } else if (call->deferred) {
    call->deferred = 0;
    nghttp2_session_resume_data(c->session, call->stream_id);
  }
  call->want_writable = 1;
  rpc__conn_schedule_flush(c);
  return 0;
}

size_t rpc_call_queued_bytes(const rpc_call *call) {
  return call ? evbuffer_get_length(call->sendq) : 0;
}

ssize_t rpc__call_data_read(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data) {
  rpc_call *call = source->ptr;
  size_t qlen = evbuffer_get_length(call->sendq);
  size_t n = qlen < length ? qlen : length;

  (void)buf;
  (void)user_data;
  if ((qlen == 0 && !call->finished) || holding(call)) {
    call->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  if (call->finished && n == qlen) {
    nghttp2_nv nv[4];
    char codebuf[12];
    size_t nnv = status_nv(call, nv, codebuf);
    int rv;

    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    rv = nghttp2_submit_trailer(session, stream_id, nv, nnv);
    if (rv != 0) {
      DB_WARN(LOG_COMP, "stream %d: submit trailer: %s", stream_id,
              nghttp2_strerror(rv));
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

int rpc__call_send_data(nghttp2_session *session, nghttp2_frame *frame,
                        const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *user_data) {
  rpc_conn *c = user_data;
  rpc_call *call = source->ptr;
  size_t padlen = frame->data.padlen;
  size_t qlen;

  (void)session;
  if (evbuffer_get_length(c->out) >= RPC__OUT_HIGH_WATER)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (evbuffer_add(c->out, framehd, 9) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (padlen > 0) {
    uint8_t b = (uint8_t)(padlen - 1);
    evbuffer_add(c->out, &b, 1);
  }
  if (length > 0 &&
      evbuffer_remove_buffer(call->sendq, c->out, length) != (int)length)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (padlen > 1) {
    static const uint8_t zeros[256];
    evbuffer_add(c->out, zeros, padlen - 1);
  }
  qlen = evbuffer_get_length(call->sendq);
  if (call->want_writable && !call->finished && call->dispatched &&
      call->method->m.on_writable && !call->writable_queued &&
      qlen < call_opts(call)->write_low_water) {
    call->want_writable = 0;
    call->writable_queued = 1;
    call->wnext = NULL;
    if (c->writable_tail)
      c->writable_tail->wnext = call;
    else
      c->writable = call;
    c->writable_tail = call;
  }
  return 0;
}

void rpc__conn_run_writables(rpc_conn *c) {
  rpc_call *list = c->writable, *call;

  c->writable = c->writable_tail = NULL;
  while (list) {
    call = list;
    list = call->wnext;
    call->wnext = NULL;
    call->writable_queued = 0;
    if (call_done(call))
      continue;
    call->method->m.on_writable(call);
    /* A handler may wait for a smaller queue than the low-water mark; if
     * it sent nothing, ask again as more drains so it cannot stall. */
    if (!call->want_writable && evbuffer_get_length(call->sendq) > 0)
      call->want_writable = 1;
  }
}

/* ---- accessors ---- */

void *rpc_call_method_data(const rpc_call *call) {
  return call && call->method ? call->method->m.method_data : NULL;
}

void rpc_call_set_data(rpc_call *call, void *data) {
  if (call)
    call->data = data;
}

void *rpc_call_data(const rpc_call *call) {
  return call ? call->data : NULL;
}

rpc_server *rpc_call_server(const rpc_call *call) {
  return call ? call->conn->srv : NULL;
}

int64_t rpc_call_deadline(const rpc_call *call) {
  return call ? call->deadline : 0;
}

int rpc_call_is_closed(const rpc_call *call) {
  return !call || call_done(call);
}
