/*
 * gRPC server over h2c (prior knowledge) or TLS: method table, connections,
 * nghttp2 session callbacks, lifecycle and graceful shutdown. Listeners
 * (accept) and the cross-thread post queue are in rpc_server_listen.c; the
 * per-call half lives in rpc_server_call.c; see rpc_server_int.h.
 *
 * I/O model: raw nonblocking sockets with libevent events. Reads go into
 * one server-wide 256 KiB buffer (loop-thread only) and straight into
 * nghttp2_session_mem_recv(); DATA chunks reach handlers without being
 * copied again when a message lies in one chunk. Writes: nghttp2 frames
 * are appended to a per-connection output evbuffer (send_callback for
 * control frames, send_data_callback with NO_COPY for DATA) and written
 * with writev (evbuffer_write). nghttp2 is only driven from the top of
 * the stack (read handler, write handler, flush event), never re-entered
 * from a handler: rpc_call_send/finish just submit and schedule a flush.
 * With TLS the socket reads and writes go through OpenSSL
 * (rpc_server_tls.c); everything above them is the same.
 */
#include "rpc_server_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_COMP "rpc-server"
#define READ_BUF_SIZE (256 * 1024)
#define READS_PER_EVENT 4
#define FLUSH_ROUNDS 16
#define NOTICE_TO_GOAWAY_MS 100
#define MAX_SEND_FRAME (256 * 1024)

static void conn_free(rpc_conn *c);
static void conn_flush(rpc_conn *c);
static int conn_send(rpc_conn *c);

/* ---- methods ---- */

static uint32_t path_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  size_t i;

  for (i = 0; i < len; i++) {
    h ^= (uint8_t)s[i];
    h *= 16777619u;
  }
  return h;
}

const rpc__method_ent *rpc__server_find(const rpc_server *srv, const char *path,
                                        size_t len) {
  uint32_t h = path_hash(path, len);
  const rpc__method_ent *e;

  for (e = srv->methods[h % RPC__METHOD_BUCKETS]; e; e = e->next)
    if (e->hash == h && strncmp(e->m.path, path, len) == 0 &&
        e->m.path[len] == '\0')
      return e;
  return NULL;
}

int rpc_server_add_method(rpc_server *srv, const rpc_method *m) {
  rpc__method_ent *e;
  size_t len;

  if (!srv || !m || !m->path || m->path[0] != '/' ||
      (m->kind != RPC_KIND_UNARY && m->kind != RPC_KIND_SERVER_STREAMING &&
       m->kind != RPC_KIND_CLIENT_STREAMING))
    return DB_EINVAL;
  len = strlen(m->path);
  if (rpc__server_find(srv, m->path, len))
    return DB_EEXIST;
  e = calloc(1, sizeof(*e));
  if (!e)
    return DB_ENOMEM;
  e->m = *m;
  e->hash = path_hash(m->path, len);
  e->next = srv->methods[e->hash % RPC__METHOD_BUCKETS];
  srv->methods[e->hash % RPC__METHOD_BUCKETS] = e;
  return 0;
}

/* ---- nghttp2 callbacks ---- */

static ssize_t send_cb(nghttp2_session *session, const uint8_t *data,
                       size_t length, int flags, void *user_data) {
  rpc_conn *c = user_data;

  (void)session;
  (void)flags;
  if (evbuffer_get_length(c->out) >= RPC__OUT_HIGH_WATER)
    return NGHTTP2_ERR_WOULDBLOCK;
  if (evbuffer_add(c->out, data, length) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)length;
}

static rpc_call *stream_call(nghttp2_session *session, int32_t stream_id) {
  return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers_cb(nghttp2_session *session,
                               const nghttp2_frame *frame, void *user_data) {
  rpc_conn *c = user_data;
  rpc_call *call;

  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  call = rpc__call_new(c, frame->hd.stream_id);
  if (!call)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
  return 0;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data) {
  rpc_call *call;

  (void)flags;
  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0; /* request trailers carry nothing we use */
  call = stream_call(session, frame->hd.stream_id);
  if (!call)
    return 0;
  if (namelen == 5 && memcmp(name, ":path", 5) == 0 && !call->path) {
    call->path = strndup((const char *)value, valuelen);
    if (!call->path)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  return rpc__call_on_header(call, name, namelen, value, valuelen);
}

static int on_frame_recv_cb(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data) {
  rpc_call *call;

  (void)user_data;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  call = stream_call(session, frame->hd.stream_id);
  if (!call)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS &&
      frame->headers.cat == NGHTTP2_HCAT_REQUEST)
    rpc__call_on_request(call);
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
    rpc__call_on_half_close(call);
  return 0;
}

static int on_data_chunk_recv_cb(nghttp2_session *session, uint8_t flags,
                                 int32_t stream_id, const uint8_t *data,
                                 size_t len, void *user_data) {
  rpc_call *call = stream_call(session, stream_id);

  (void)flags;
  (void)user_data;
  if (!call) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  rpc__call_on_data(call, data, len);
  return 0;
}

static int on_frame_send_cb(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data) {
  rpc_call *call;

  (void)user_data;
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  call = stream_call(session, frame->hd.stream_id);
  if (call)
    rpc__call_on_end_sent(call);
  return 0;
}

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id,
                              uint32_t error_code, void *user_data) {
  rpc_call *call = stream_call(session, stream_id);

  (void)user_data;
  if (!call)
    return 0;
  DB_DEBUG(LOG_COMP, "stream %d closed (h2 error %u)", stream_id, error_code);
  nghttp2_session_set_stream_user_data(session, stream_id, NULL);
  rpc__call_destroy(call);
  return 0;
}

static ssize_t read_length_cb(nghttp2_session *session, uint8_t frame_type,
                              int32_t stream_id,
                              int32_t session_remote_window_size,
                              int32_t stream_remote_window_size,
                              uint32_t remote_max_frame_size, void *user_data) {
  ssize_t n = remote_max_frame_size;

  (void)session;
  (void)frame_type;
  (void)stream_id;
  (void)user_data;
  if (n > MAX_SEND_FRAME)
    n = MAX_SEND_FRAME;
  if (n > session_remote_window_size)
    n = session_remote_window_size;
  if (n > stream_remote_window_size)
    n = stream_remote_window_size;
  return n > 0 ? n : 1;
}

static int error_cb(nghttp2_session *session, int lib_error_code,
                    const char *msg, size_t len, void *user_data) {
  (void)session;
  (void)user_data;
  DB_DEBUG(LOG_COMP, "h2: %.*s (%d)", (int)len, msg, lib_error_code);
  return 0;
}

static int setup_callbacks(rpc_server *srv) {
  nghttp2_session_callbacks *cbs;

  if (nghttp2_session_callbacks_new(&cbs) != 0)
    return DB_ENOMEM;
  nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
  nghttp2_session_callbacks_set_send_data_callback(cbs, rpc__call_send_data);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                          on_begin_headers_cb);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv_cb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cbs, on_data_chunk_recv_cb);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send_cb);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                         on_stream_close_cb);
  nghttp2_session_callbacks_set_data_source_read_length_callback(
      cbs, read_length_cb);
  nghttp2_session_callbacks_set_error_callback2(cbs, error_cb);
  srv->cbs = cbs;
  if (nghttp2_option_new(&srv->h2opt) != 0)
    return DB_ENOMEM;
  /* We credit flow control ourselves once handlers consumed the bytes. */
  nghttp2_option_set_no_auto_window_update(srv->h2opt, 1);
  /* libcurl 7.88 ends every finished stream with RST_STREAM(STREAM_CLOSED).
   * nghttp2's rapid-reset guard (CVE-2023-44487; burst 1000, 33/s by
   * default) then kills a busy client's connection after ~1000 calls.
   * Allow one reset per call at our real call rates; a flood beyond that
   * is still cut off. */
  nghttp2_option_set_stream_reset_rate_limit(srv->h2opt, 100000, 50000);
  return 0;
}

/* ---- connections ---- */

void rpc__conn_schedule_flush(rpc_conn *c) {
  /* The read path flushes when mem_recv returns; otherwise defer to the
   * loop so nghttp2 is never re-entered from inside its callbacks. */
  if (!c->in_recv)
    event_active(c->flush_ev, EV_TIMEOUT, 0);
}

static void conn_set_write(rpc_conn *c, int on) {
  if (on && !c->wev_armed) {
    event_add(c->wev, NULL);
    c->wev_armed = 1;
  } else if (!on && c->wev_armed) {
    event_del(c->wev);
    c->wev_armed = 0;
  }
}

static void conn_set_read(rpc_conn *c, int on) {
  if (on && c->reading_paused) {
    event_add(c->rev, NULL);
    c->reading_paused = 0;
    if (rpc__tls_pending(c))
      event_active(c->rev, EV_READ, 0);
  } else if (!on && !c->reading_paused) {
    event_del(c->rev);
    c->reading_paused = 1;
  }
}

/* Push frames out: nghttp2 -> c->out -> socket, running on_writable
 * handlers between rounds. May free c. */
static void conn_flush(rpc_conn *c) {
  int round, rv;

  for (round = 0; round < FLUSH_ROUNDS; round++) {
    rv = nghttp2_session_send(c->session);
    if (rv != 0) {
      DB_DEBUG(LOG_COMP, "fd %d: session_send: %s", c->fd,
               nghttp2_strerror(rv));
      conn_free(c);
      return;
    }
    if (c->writable) {
      rpc__conn_run_writables(c);
      continue;
    }
    if (evbuffer_get_length(c->out) > 0) {
      if (conn_send(c) < 0) {
        conn_free(c);
        return;
      }
      if (evbuffer_get_length(c->out) > 0) {
        /* A TLS write that waits for the peer's handshake bytes resumes
         * from the read handler instead. */
        conn_set_write(c, !c->tls_write_wants_read);
        conn_set_read(c, c->tls_write_wants_read ||
                             evbuffer_get_length(c->out) < RPC__OUT_HIGH_WATER);
        return;
      }
    }
    if (!nghttp2_session_want_write(c->session))
      break;
  }
  conn_set_write(c, c->tls_read_wants_write);
  conn_set_read(c, 1);
  if (round == FLUSH_ROUNDS) {
    /* Still more to send: yield to other connections, continue soon. */
    event_active(c->flush_ev, EV_TIMEOUT, 0);
    return;
  }
  if (!nghttp2_session_want_read(c->session) &&
      !nghttp2_session_want_write(c->session))
    conn_free(c);
}

/* Socket (or TLS) to c->out's peer: bytes read, or RPC__IO_*. */
static ssize_t conn_recv(rpc_conn *c, uint8_t *buf, size_t len) {
  ssize_t n;

  if (c->ssl)
    return rpc__tls_recv(c, buf, len);
  do
    n = read(c->fd, buf, len);
  while (n < 0 && errno == EINTR);
  if (n >= 0)
    return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return RPC__IO_AGAIN;
  DB_DEBUG(LOG_COMP, "fd %d: read: %s", c->fd, strerror(errno));
  return RPC__IO_FATAL;
}

/* Hand as much of c->out to the socket as it takes: 0 or RPC__IO_FATAL. */
static int conn_send(rpc_conn *c) {
  int n;

  if (c->ssl)
    return rpc__tls_send(c);
  n = evbuffer_write(c->out, c->fd);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    DB_DEBUG(LOG_COMP, "fd %d: write: %s", c->fd, strerror(errno));
    return RPC__IO_FATAL;
  }
  return 0;
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_conn *c = arg;
  rpc_server *srv = c->srv;
  ssize_t n, rv;
  int i;

  (void)what;
  for (i = 0; i < READS_PER_EVENT; i++) {
    n = conn_recv(c, srv->rbuf, srv->rbuf_size);
    if (n == RPC__IO_AGAIN)
      break;
    if (n == RPC__IO_EOF || n == RPC__IO_FATAL) {
      conn_free(c);
      return;
    }
    c->in_recv = 1;
    rv = nghttp2_session_mem_recv(c->session, srv->rbuf, (size_t)n);
    c->in_recv = 0;
    if (rv < 0) {
      DB_DEBUG(LOG_COMP, "fd %d: mem_recv: %s", (int)fd,
               nghttp2_strerror((int)rv));
      conn_free(c);
      return;
    }
    if ((size_t)n < srv->rbuf_size ||
        evbuffer_get_length(c->out) >= RPC__OUT_HIGH_WATER)
      break;
  }
  /* Records OpenSSL already decrypted make no fd event: come back. */
  if (!c->reading_paused && rpc__tls_pending(c))
    event_active(c->rev, EV_READ, 0);
  conn_flush(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_conn *c = arg;

  (void)what;
  if (c->tls_read_wants_write) {
    c->tls_read_wants_write = 0;
    conn_read_cb(fd, EV_READ, c); /* flushes too */
    return;
  }
  conn_flush(c);
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  conn_flush(arg);
}

static void server_check_done(rpc_server *srv) {
  if (srv->shutting_down && srv->nconns == 0 && srv->done_ev)
    event_active(srv->done_ev, EV_TIMEOUT, 0);
}

/* Tear down: every call gets on_close(CANCELLED) (unless it ended), then
 * the session and the socket go. */
static void conn_free(rpc_conn *c) {
  rpc_server *srv = c->srv;

  while (c->calls)
    rpc__call_destroy(c->calls);
  nghttp2_session_del(c->session);
  if (c->rev)
    event_free(c->rev);
  if (c->wev)
    event_free(c->wev);
  if (c->flush_ev)
    event_free(c->flush_ev);
  if (c->out)
    evbuffer_free(c->out);
  rpc__tls_conn_free(c);
  if (c->fd >= 0)
    close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  srv->nconns--;
  free(c);
  server_check_done(srv);
}

int rpc__conn_new(rpc_server *srv, int fd) {
  rpc_conn *c = calloc(1, sizeof(*c));
  nghttp2_settings_entry iv[3];
  int32_t conn_window;
  int rv = DB_ENOMEM;

  if (!c) {
    close(fd);
    return DB_ENOMEM;
  }
  c->srv = srv;
  c->fd = fd;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  c->reading_paused = 1;
  c->out = evbuffer_new();
  c->rev = event_new(srv->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
  c->wev = event_new(srv->base, fd, EV_WRITE | EV_PERSIST, conn_write_cb, c);
  c->flush_ev = event_new(srv->base, -1, 0, conn_flush_cb, c);
  if (!c->out || !c->rev || !c->wev || !c->flush_ev)
    goto fail;
  if (srv->tls && rpc__tls_conn_start(c) != 0)
    goto fail;
  if (nghttp2_session_server_new2(&c->session, srv->cbs, c, srv->h2opt) != 0)
    goto fail;
  iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
  iv[0].value = srv->opts.max_concurrent;
  iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
  iv[1].value = srv->opts.stream_window;
  iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
  iv[2].value = RPC__MAX_HEADER_LIST;
  if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3) != 0)
    goto fail;
  /* Connection window: room for several streams at full speed. */
  conn_window = srv->opts.stream_window > (1u << 28)
                    ? INT32_MAX
                    : (int32_t)(srv->opts.stream_window * 4);
  if (conn_window < 16 * 1024 * 1024)
    conn_window = 16 * 1024 * 1024;
  nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                        conn_window);
  conn_set_read(c, 1);
  conn_flush(c);
  return 0;

fail:
  conn_free(c);
  return rv;
}

/* ---- lifecycle ---- */

int rpc_server_new(struct event_base *base, const rpc_server_opts *opts,
                   rpc_server **out) {
  rpc_server *srv;
  int rv = DB_ENOMEM;

  if (!base || !out)
    return DB_EINVAL;
  *out = NULL;
  srv = calloc(1, sizeof(*srv));
  if (!srv)
    return DB_ENOMEM;
  srv->base = base;
  srv->post_fd = -1;
  if (opts)
    srv->opts = *opts;
  if (!srv->opts.max_message_size)
    srv->opts.max_message_size = 64u * 1024 * 1024;
  if (srv->opts.max_message_size > UINT32_MAX)
    srv->opts.max_message_size = UINT32_MAX;
  if (!srv->opts.stream_window)
    srv->opts.stream_window = 1024 * 1024;
  if (srv->opts.stream_window > INT32_MAX)
    srv->opts.stream_window = INT32_MAX;
  if (!srv->opts.max_concurrent)
    srv->opts.max_concurrent = 1000;
  if (!srv->opts.write_low_water)
    srv->opts.write_low_water = 1024 * 1024;
  if (srv->opts.shutdown_grace_ms <= 0)
    srv->opts.shutdown_grace_ms = 5000;
  pthread_mutex_init(&srv->post_mu, NULL);
  srv->rbuf_size = READ_BUF_SIZE;
  srv->rbuf = malloc(srv->rbuf_size);
  if (!srv->rbuf)
    goto fail;
  rv = setup_callbacks(srv);
  if (rv != 0)
    goto fail;
  rv = rpc__security_apply(srv, &srv->opts, 1);
  if (rv != 0)
    goto fail;
  /* The caller's strings are not ours to keep. */
  srv->opts.tls_cert_file = srv->opts.tls_key_file = NULL;
  srv->opts.tls_client_ca_file = NULL;
  srv->opts.auth_tokens = NULL;
  rv = rpc__server_post_init(srv);
  if (rv != 0)
    goto fail;
  *out = srv;
  return 0;

fail:
  rpc_server_free(srv);
  return rv;
}

static void done_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_server *srv = arg;
  void (*done)(void *) = srv->done;

  (void)fd;
  (void)what;
  if (srv->nconns > 0)
    return;
  if (srv->goaway_ev)
    event_del(srv->goaway_ev);
  if (srv->grace_ev)
    event_del(srv->grace_ev);
  srv->done = NULL;
  if (done)
    done(srv->done_arg);
}

static void grace_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_server *srv = arg;

  (void)fd;
  (void)what;
  if (srv->nconns > 0)
    DB_INFO(LOG_COMP,
            "shutdown grace period over: cancelling calls on %zu "
            "connection(s)",
            srv->nconns);
  while (srv->conns) {
    rpc_conn *c = srv->conns;
    /* Best effort: GOAWAY out now, then drop whatever is left. */
    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    nghttp2_session_send(c->session);
    evbuffer_write(c->out, c->fd);
    conn_free(c);
  }
}

static void goaway_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_server *srv = arg;
  rpc_conn *c, *next;
  struct timeval tv;
  int ms = srv->opts.shutdown_grace_ms - NOTICE_TO_GOAWAY_MS;

  (void)fd;
  (void)what;
  for (c = srv->conns; c; c = next) {
    next = c->next;
    c->goaway_final = 1;
    nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
    conn_flush(c); /* may free c (idle connection) */
  }
  if (ms < 0)
    ms = 0;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  if (srv->grace_ev)
    evtimer_add(srv->grace_ev, &tv);
}

void rpc_server_shutdown(rpc_server *srv, void (*done)(void *), void *arg) {
  rpc_conn *c;
  struct timeval tv;
  int ms;

  if (!srv)
    return;
  if (srv->shutting_down) {
    if (done && !srv->done) {
      srv->done = done;
      srv->done_arg = arg;
      server_check_done(srv);
    }
    return;
  }
  srv->shutting_down = 1;
  srv->done = done;
  srv->done_arg = arg;
  rpc__server_close_listeners(srv);
  srv->done_ev = event_new(srv->base, -1, 0, done_cb, srv);
  srv->goaway_ev = evtimer_new(srv->base, goaway_cb, srv);
  srv->grace_ev = evtimer_new(srv->base, grace_cb, srv);
  /* Two-step GOAWAY (RFC 9113 6.8): a notice with the maximum stream id
   * so requests already in flight are still accepted, then after about
   * one round trip the final GOAWAY with the last stream we processed. */
  for (c = srv->conns; c; c = c->next) {
    nghttp2_submit_shutdown_notice(c->session);
    rpc__conn_schedule_flush(c);
  }
  ms = srv->opts.shutdown_grace_ms < NOTICE_TO_GOAWAY_MS
           ? srv->opts.shutdown_grace_ms
           : NOTICE_TO_GOAWAY_MS;
  tv.tv_sec = 0;
  tv.tv_usec = ms * 1000;
  if (srv->goaway_ev)
    evtimer_add(srv->goaway_ev, &tv);
  server_check_done(srv);
}

void rpc_server_free(rpc_server *srv) {
  size_t i;

  if (!srv)
    return;
  srv->shutting_down = 1;
  while (srv->conns)
    conn_free(srv->conns);
  rpc__server_close_listeners(srv);
  for (i = 0; i < RPC__METHOD_BUCKETS; i++) {
    while (srv->methods[i]) {
      rpc__method_ent *e = srv->methods[i];
      srv->methods[i] = e->next;
      free(e);
    }
  }
  rpc__server_post_fini(srv);
  if (srv->done_ev)
    event_free(srv->done_ev);
  if (srv->goaway_ev)
    event_free(srv->goaway_ev);
  if (srv->grace_ev)
    event_free(srv->grace_ev);
  if (srv->cbs)
    nghttp2_session_callbacks_del(srv->cbs);
  if (srv->h2opt)
    nghttp2_option_del(srv->h2opt);
  pthread_mutex_destroy(&srv->post_mu);
  rpc__tls_ctx_free(srv->tls);
  free(srv->auth);
  free(srv->rbuf);
  free(srv);
}
