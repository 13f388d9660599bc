/*
 * gRPC client on libcurl's multi interface (HTTP/2: prior knowledge over
 * cleartext, ALPN over TLS).
 *
 * Design notes:
 *  - One CURLM per rpc_client with CURLPIPE_MULTIPLEX, one connection per
 *    host and PIPEWAIT on every transfer: all calls become streams on one
 *    TCP connection. A dead connection is dropped by curl and the next call
 *    connects again.
 *  - An rpc_stream owns its easy handle for life. Finished streams go to a
 *    free list with the handle's constant options still set, so a new call
 *    only sets URL, header list, body size and timeout.
 *  - One transfer opens the connection and the others wait for it, then
 *    multiplex on it (dispatch()). For h2c that is forced by a libcurl
 *    7.88 bug (see on_opensocket() in rpc_client_call.c); for TLS it keeps
 *    a burst of calls from racing to open connections before ALPN has
 *    told curl that the first one multiplexes. Only the HTTP version
 *    differs: prior knowledge for h2c, CURL_HTTP_VERSION_2TLS for TLS.
 *  - The header list (content-type, te, custom metadata) is shared by all
 *    calls. A call with a deadline prepends one stack-free list node of its
 *    own ("grpc-timeout: ...") whose next pointer is the shared list, so no
 *    call builds or frees a curl_slist.
 *  - Request bodies go through the read callback. Client streaming asks the
 *    producer for the next message only when curl's upload buffer has room,
 *    so memory stays bounded by that buffer plus one message.
 *  - The write callback reassembles length-prefixed messages across chunks
 *    and hands whole messages to on_message (zero-copy when a message lies
 *    within one chunk).
 *  - Everything that calls user callbacks other than on_message/produce
 *    (which run inside curl's callbacks) happens outside curl_multi_perform,
 *    so on_done may start and cancel calls freely. Starts and cancels are
 *    queued and applied by the run loop.
 *
 * This file: the client handle, connection state, start queue and
 * dispatch, the run loop and the public API. One call's easy handle and
 * callbacks are in rpc_client_call.c; target parsing and metadata headers
 * in rpc_client_target.c (see rpc_client_int.h).
 */
#include "rpc_client_int.h"

#include "db_err.h"
#include "db_log.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define RPC_DEFAULT_MAX_MSG ((size_t)64 << 20)
#define RPC_DEFAULT_CONNECT_MS 5000
#define RPC_MAX_STREAMS 1000L /* our cap on concurrent streams/connection */
#define RPC_FREE_MAX 1024     /* idle streams (easy handles) kept for reuse */

/* ---- stream lifecycle ---- */

static void active_unlink(rpc_client *c, struct rpc_stream *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    c->active = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

/* Finish a call: report its status and recycle the stream. Must not run
 * inside curl_multi_perform. */
static void stream_finish(rpc_client *c, struct rpc_stream *s, CURLcode rc) {
  rpc_status st = {0};
  rpc_stream_cbs cbs = s->cbs;
  void *ctx = s->ctx;

  rpc_client__resolve_status(s, rc, &st);
  if ((s->flags & S_PK) && c->conn == CONN_CONNECTING) {
    /* The call that was to open the connection ended before connecting:
     * fail the calls queued behind it the same way, unless cancelled. */
    c->conn = CONN_DOWN;
    if (!(s->flags & (S_READY | S_CANCEL)) && st.code == RPC_UNAVAILABLE) {
      c->fail_seq = c->seq;
      rpc_status_clear(&c->fail_st);
      c->fail_st.code = st.code;
      c->fail_st.message = st.message ? strdup(st.message) : NULL;
    }
  }
  if (s->flags & S_CANCEL)
    c->ncancel--;
  if (s->flags & S_ADDED)
    curl_multi_remove_handle(c->multi, s->easy);
  active_unlink(c, s);
  c->pending--;
  rpc_client__stream_reset(s);
  if (c->nfree < RPC_FREE_MAX && !c->closing) {
    s->next = c->free_list;
    c->free_list = s;
    c->nfree++;
  } else {
    rpc_client__stream_destroy(s);
  }
  /* The handle is recycled before on_done so that on_done may start new
   * calls on it; the status lives on our stack. */
  if (cbs.on_done)
    cbs.on_done(ctx, &st);
  rpc_status_clear(&st);
}

/* ---- public API ---- */

int rpc_client_global_init(void) {
  /* Never paired with curl_global_cleanup: the reference stays held. */
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : DB_ENOMEM;
}

int rpc_client_new(const char *target, const rpc_client_opts *opts,
                   rpc_client **out) {
  rpc_client *c = NULL;
  static const char *const base[] = {
      "content-type: application/grpc+proto",
      "te: trailers",
      "Accept:", /* drop curl's default "accept: * / *" */
      "Expect:",
  };
  size_t i;
  int rv;

  if (!out)
    return DB_EINVAL;
  *out = NULL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return DB_ENOMEM;
  c = calloc(1, sizeof(*c));
  if (!c) {
    rv = DB_ENOMEM;
    goto fail;
  }
  c->fd = -1;
  rv = rpc_client__parse_target(target, &c->base_url, &c->tls);
  if (rv < 0)
    goto fail;
  c->base_len = strlen(c->base_url);
  c->max_msg = opts && opts->max_message_size ? opts->max_message_size
                                              : RPC_DEFAULT_MAX_MSG;
  c->connect_ms = opts && opts->connect_timeout_ms > 0
                      ? opts->connect_timeout_ms
                      : RPC_DEFAULT_CONNECT_MS;
  c->idle_ms = opts && opts->idle_timeout_ms > 0 ? opts->idle_timeout_ms : 0;
  for (i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
    struct curl_slist *l = curl_slist_append(c->hdrs, base[i]);
    if (!l) {
      rv = DB_ENOMEM;
      goto fail;
    }
    c->hdrs = l;
  }
  rv = rpc_client__apply_channel(c, opts ? opts->channel : NULL);
  if (rv < 0)
    goto fail;
  c->multi = curl_multi_init();
  if (!c->multi) {
    rv = DB_ENOMEM;
    goto fail;
  }
  curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
  curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
  curl_multi_setopt(c->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, RPC_MAX_STREAMS);
  curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 4L);
  *out = c;
  return 0;

fail:
  if (c) {
    curl_slist_free_all(c->hdrs);
    free(c->base_url);
    free(c->tls_ca);
    free(c->tls_cert);
    free(c->tls_key);
    free(c);
  }
  curl_global_cleanup();
  return rv;
}

void rpc_client_free(rpc_client *c) {
  struct rpc_stream *s;

  if (!c)
    return;
  c->closing = 1; /* no new calls from on_done; nothing goes to free list */
  c->qhead = c->qtail = NULL;
  while (c->active) {
    s = c->active;
    if (!(s->flags & S_CANCEL)) {
      s->flags |= S_CANCEL;
      c->ncancel++;
    }
    stream_finish(c, s, CURLE_OK);
  }
  while (c->free_list) {
    s = c->free_list;
    c->free_list = s->next;
    rpc_client__stream_destroy(s);
  }
  curl_multi_cleanup(c->multi);
  rpc_status_clear(&c->fail_st);
  curl_slist_free_all(c->hdrs);
  free(c->base_url);
  free(c->tls_ca);
  free(c->tls_cert);
  free(c->tls_key);
  free(c);
  curl_global_cleanup();
}

static void queue_push(rpc_client *c, struct rpc_stream *s, int front) {
  s->flags |= S_QUEUED;
  if (front) {
    s->qnext = c->qhead;
    c->qhead = s;
    if (!c->qtail)
      c->qtail = s;
    return;
  }
  s->qnext = NULL;
  if (c->qtail)
    c->qtail->qnext = s;
  else
    c->qhead = s;
  c->qtail = s;
}

static void queue_remove(rpc_client *c, struct rpc_stream *s) {
  struct rpc_stream **pp = &c->qhead, *prev = NULL;

  while (*pp && *pp != s) {
    prev = *pp;
    pp = &(*pp)->qnext;
  }
  if (!*pp)
    return;
  *pp = s->qnext;
  if (c->qtail == s)
    c->qtail = prev;
  s->qnext = NULL;
  s->flags &= ~(unsigned)S_QUEUED;
}

int rpc_client_start(rpc_client *c, const char *path, const uint8_t *req,
                     size_t len, int64_t timeout_ms, const rpc_stream_cbs *cbs,
                     void *ctx, rpc_stream **out) {
  struct rpc_stream *s;
  char stackurl[256];
  char *url = stackurl;
  size_t plen;
  int rv = 0;

  if (out)
    *out = NULL;
  if (!c || !path || path[0] != '/' || (len > 0 && !req) ||
      (req && cbs && cbs->produce))
    return DB_EINVAL;
  if (c->closing)
    return DB_ECANCELLED;
  if (len > UINT32_MAX)
    return DB_ETOOBIG;
  plen = strlen(path);
  if (c->base_len + plen + 1 > sizeof(stackurl)) {
    url = malloc(c->base_len + plen + 1);
    if (!url)
      return DB_ENOMEM;
  }
  memcpy(url, c->base_url, c->base_len);
  memcpy(url + c->base_len, path, plen + 1);

  s = c->free_list;
  if (s) {
    c->free_list = s->next;
    c->nfree--;
    s->next = NULL;
  } else {
    s = rpc_client__stream_create(c);
    if (!s) {
      rv = DB_ENOMEM;
      goto out;
    }
  }
  if (cbs)
    s->cbs = *cbs;
  s->ctx = ctx;
  if (s->cbs.produce) {
    s->flags |= S_STREAM;
    s->pfx_off = 5; /* no message yet: ask the producer first */
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
  } else {
    s->req = malloc(len + 5);
    if (!s->req) {
      rpc_client__stream_reset(s);
      s->next = c->free_list;
      c->free_list = s;
      c->nfree++;
      rv = DB_ENOMEM;
      goto out;
    }
    s->req[0] = 0;
    s->req[1] = (uint8_t)(len >> 24);
    s->req[2] = (uint8_t)(len >> 16);
    s->req[3] = (uint8_t)(len >> 8);
    s->req[4] = (uint8_t)len;
    if (len)
      memcpy(s->req + 5, req, len);
    s->req_len = len + 5;
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)s->req_len);
  }
  curl_easy_setopt(s->easy, CURLOPT_URL, url);
  s->deadline = timeout_ms > 0 ? rpc_now_ms() + timeout_ms : 0;
  s->idle_ms = c->idle_ms;
  s->seq = ++c->seq;

  /* Active list (for free/cancel) and start queue (handed to curl by the
   * next run, outside any curl callback). */
  s->prev = NULL;
  s->next = c->active;
  if (c->active)
    c->active->prev = s;
  c->active = s;
  queue_push(c, s, 0);
  c->pending++;
  if (out)
    *out = s;

out:
  if (url != stackurl)
    free(url);
  return rv;
}

void rpc_stream_set_idle_timeout(rpc_stream *s, int64_t ms) {
  if (s)
    s->idle_ms = ms > 0 ? ms : 0;
}

void rpc_stream_cancel(rpc_stream *s) {
  if (!s || (s->flags & S_CANCEL))
    return;
  s->flags |= S_CANCEL; /* callbacks now abort; the run loop finishes it */
  s->c->ncancel++;
}

int rpc_client_pending(const rpc_client *c) {
  return c ? c->pending : 0;
}

/* Set the per-dispatch options: protocol mode and the remaining time.
 * Returns 0, or -1 when the deadline already passed. */
static int prepare(rpc_client *c, struct rpc_stream *s, int pk) {
  int64_t rem = 0;

  if (s->deadline) {
    rem = s->deadline - rpc_now_ms();
    if (rem <= 0)
      return -1;
  }
  if (pk)
    s->flags |= S_PK;
  /* TLS: ALPN offers h2 on every transfer. h2c: only the one that opens
   * the connection may use prior knowledge (see on_opensocket()); the
   * others multiplex on it with 2TLS. */
  curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION,
                   pk && !c->tls ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                 : (long)CURL_HTTP_VERSION_2TLS);
  if (rem > 0) {
    memcpy(s->tmo_hdr, "grpc-timeout: ", 14);
    rpc_timeout_format(rem, s->tmo_hdr + 14, sizeof(s->tmo_hdr) - 14);
    s->tmo_node.next = c->hdrs;
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, &s->tmo_node);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS,
                     rem > LONG_MAX ? LONG_MAX : (long)rem);
  } else {
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 0L);
  }
  return 0;
}

/*
 * Hand queued calls to curl. With no connection, only the first call goes
 * (S_PK: with prior knowledge for h2c, through the TLS handshake for TLS)
 * and opens it; the others wait in the queue until it is connected and
 * then multiplex on it (see on_opensocket()).
 */
static void dispatch(rpc_client *c) {
  struct rpc_stream *s;
  CURLMcode mc;
  uint64_t fail_seq = c->fail_seq;

  c->fail_seq = 0;
  while (c->qhead) {
    s = c->qhead;
    if (!(s->flags & S_CANCEL) && !fail_seq && c->conn == CONN_CONNECTING)
      break;
    queue_remove(c, s);
    if (s->flags & S_CANCEL)
      continue; /* finished by sweep_cancels() */
    if (fail_seq && s->seq <= fail_seq) {
      /* The connection attempt these calls waited for failed. */
      rpc_client__set_local(s, c->fail_st.code, "%s",
                            c->fail_st.message ? c->fail_st.message
                                               : "unavailable");
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    if (c->conn == CONN_CONNECTING) {
      queue_push(c, s, 1);
      break;
    }
    if (prepare(c, s, c->conn == CONN_DOWN) < 0) {
      rpc_client__set_local(s, RPC_DEADLINE_EXCEEDED,
                            "deadline exceeded before sending");
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    mc = curl_multi_add_handle(c->multi, s->easy);
    if (mc != CURLM_OK) {
      rpc_client__set_local(s, RPC_INTERNAL, "curl_multi_add_handle: %s",
                            curl_multi_strerror(mc));
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    s->flags |= S_ADDED;
    s->last_io = rpc_now_ms();
    if (s->flags & S_PK)
      c->conn = CONN_CONNECTING;
  }
}

static void sweep_cancels(rpc_client *c) {
  struct rpc_stream *s;

  /* on_done may cancel or start others: rescan until nothing is left. */
  while (c->ncancel > 0) {
    for (s = c->active; s; s = s->next) {
      if (s->flags & S_CANCEL)
        break;
    }
    if (!s)
      return;
    if (s->flags & S_QUEUED)
      queue_remove(c, s);
    stream_finish(c, s, CURLE_OK);
  }
}

/* A call we kept from opening a connection: queue it again, first. */
static void requeue(rpc_client *c, struct rpc_stream *s) {
  curl_multi_remove_handle(c->multi, s->easy);
  s->flags &= ~(unsigned)(S_ADDED | S_REFUSED | S_PK | S_READY);
  s->req_off = 0;
  s->errbuf[0] = '\0';
  queue_push(c, s, 1);
}

static void drain_done(rpc_client *c) {
  CURLMsg *m;
  int left;
  struct rpc_stream *s;

  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    s = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    if (!s)
      continue;
    if ((s->flags & S_REFUSED) && !(s->flags & (S_CANCEL | S_READY)) &&
        s->nproduced == 0 && !s->have_local)
      requeue(c, s);
    else
      stream_finish(c, s, m->data.result);
  }
}

/*
 * Cork the connection while curl works so that the frames one
 * curl_multi_perform() produces leave in as few segments as possible. Above
 * all, a request's HEADERS and its DATA (END_STREAM) then reach the server
 * together: a server that answers before it has read END_STREAM follows
 * its trailers with RST_STREAM(NO_ERROR), and libcurl 7.88 drops a response
 * that arrives in the same read as such a reset.
 */
static void cork(rpc_client *c, int on) {
  if (c->fd >= 0)
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/*
 * Fail the calls that moved no byte for their idle timeout. Time in which
 * nobody drove the client does not count: the server may well have
 * answered into the socket meanwhile.
 */
static void check_idle(rpc_client *c) {
  int64_t now = rpc_now_ms();
  int undriven = c->last_drive && now - c->last_drive > 1500;
  struct rpc_stream *s;

  c->last_drive = now;
  for (s = c->active; s; s = s->next) {
    if (!(s->flags & S_ADDED) || (s->flags & S_CANCEL) || !s->idle_ms)
      continue;
    if (undriven) {
      s->last_io = now;
    } else if (now - s->last_io >= s->idle_ms) {
      rpc_client__set_local(s, RPC_UNAVAILABLE,
                            RPC_NOT_RESPONDING ": nothing for %lld ms",
                            (long long)s->idle_ms);
      s->flags |= S_CANCEL;
      c->ncancel++;
    }
  }
}

/* One round: start queued calls, let curl work, finish completed calls. */
static int drive(rpc_client *c) {
  CURLMcode mc;
  int running = 0;

  check_idle(c);
  dispatch(c);
  if (c->ncancel)
    sweep_cancels(c);
  c->in_perform = 1;
  cork(c, 1);
  mc = curl_multi_perform(c->multi, &running);
  cork(c, 0);
  c->in_perform = 0;
  if (mc != CURLM_OK) {
    DB_ERROR(RPC_LOG, "curl_multi_perform: %s", curl_multi_strerror(mc));
    return mc == CURLM_OUT_OF_MEMORY ? DB_ENOMEM : DB_EIO;
  }
  drain_done(c);
  if (c->ncancel)
    sweep_cancels(c);
  return 0;
}

static int wait_io(rpc_client *c, int ms) {
  CURLMcode mc;

  if (c->ncancel || c->fail_seq || (c->qhead && c->conn != CONN_CONNECTING))
    return 0; /* work for dispatch()/sweep_cancels(): go round at once */
  mc = curl_multi_poll(c->multi, NULL, 0, ms, NULL);
  if (mc != CURLM_OK) {
    DB_ERROR(RPC_LOG, "curl_multi_poll: %s", curl_multi_strerror(mc));
    return DB_EIO;
  }
  return 0;
}

int rpc_client_run(rpc_client *c, int wait_ms) {
  int64_t deadline = 0, rem;
  int rv;

  if (!c || c->in_perform)
    return DB_EINVAL;
  if (wait_ms >= 0)
    deadline = rpc_now_ms() + wait_ms;
  for (;;) {
    rv = drive(c);
    if (rv < 0)
      return rv;
    if (c->pending == 0)
      return 0;
    rem = 1000;
    if (wait_ms >= 0) {
      rem = deadline - rpc_now_ms();
      if (rem <= 0)
        return c->pending;
      if (rem > 1000)
        rem = 1000;
    }
    rv = wait_io(c, (int)rem);
    if (rv < 0)
      return rv;
  }
}

struct unary_ctx {
  uint8_t *resp;
  size_t len;
  int nmsg;
  int oom;
  int done;
  rpc_status st;
};

static int unary_on_message(void *ctx, const uint8_t *msg, size_t len) {
  struct unary_ctx *u = ctx;

  if (++u->nmsg > 1)
    return 1; /* cardinality violation: reported in unary_on_done */
  if (len) {
    u->resp = malloc(len);
    if (!u->resp) {
      u->oom = 1;
      return 1;
    }
    memcpy(u->resp, msg, len);
  }
  u->len = len;
  return 0;
}

static void unary_on_done(void *ctx, const rpc_status *st) {
  struct unary_ctx *u = ctx;

  u->done = 1;
  u->st.code = st->code;
  if (u->nmsg > 1) {
    rpc_status_setf(&u->st, RPC_UNIMPLEMENTED,
                    "unary call got more than one response message");
    return;
  }
  if (u->oom) {
    rpc_status_setf(&u->st, RPC_RESOURCE_EXHAUSTED,
                    "out of memory for the response");
    return;
  }
  if (st->code == RPC_OK && u->nmsg == 0) {
    rpc_status_setf(&u->st, RPC_UNIMPLEMENTED,
                    "unary call got no response message");
    return;
  }
  if (st->message)
    u->st.message = strdup(st->message);
  if (st->details_len) {
    u->st.details = malloc(st->details_len);
    if (u->st.details) {
      memcpy(u->st.details, st->details, st->details_len);
      u->st.details_len = st->details_len;
    }
  }
}

int rpc_client_unary(rpc_client *c, const char *path, const uint8_t *req,
                     size_t len, int64_t timeout_ms, uint8_t **resp,
                     size_t *resp_len, rpc_status *st) {
  struct unary_ctx u = {0};
  rpc_stream_cbs cbs = {unary_on_message, NULL, unary_on_done};
  int rv;

  if (resp)
    *resp = NULL;
  if (resp_len)
    *resp_len = 0;
  if (!c || !st || c->in_perform)
    return DB_EINVAL;
  rv = rpc_client_start(c, path, req, len, timeout_ms, &cbs, &u, NULL);
  if (rv < 0)
    return rv;
  while (!u.done) {
    rv = drive(c);
    if (rv == 0 && !u.done)
      rv = wait_io(c, 1000);
    if (rv < 0) {
      /* The call is still registered with u on our stack: finish it. */
      struct rpc_stream *s;
      for (s = c->active; s; s = s->next) {
        if (s->ctx == &u)
          break;
      }
      if (s) {
        if (!(s->flags & S_CANCEL)) {
          s->flags |= S_CANCEL;
          c->ncancel++;
        }
        if (s->flags & S_QUEUED) {
          /* Not in curl yet; leave it queued but detached from u. */
          s->cbs.on_message = NULL;
          s->cbs.on_done = NULL;
        } else {
          stream_finish(c, s, CURLE_OK);
        }
      }
      free(u.resp);
      rpc_status_clear(&u.st);
      return rv;
    }
  }
  rpc_client__status_move(st, &u.st);
  if (st->code == RPC_OK) {
    if (resp) {
      *resp = u.resp;
      u.resp = NULL;
    }
    if (resp_len)
      *resp_len = u.len;
  }
  free(u.resp);
  return 0;
}
