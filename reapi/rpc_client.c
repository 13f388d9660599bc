/*
 * gRPC client on libcurl's multi interface (HTTP/2 prior knowledge).
 *
 * Design notes:
 *  - One CURLM per rpc_client with CURLPIPE_MULTIPLEX, one connection per
 *    host and PIPEWAIT on every transfer: all calls become streams on one
 *    TCP connection. A dead connection is dropped by curl and the next call
 *    connects again.
 *  - An rpc_stream owns its easy handle for life. Finished streams go to a
 *    free list with the handle's constant options still set, so a new call
 *    only sets URL, header list, body size and timeout.
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
 */
#include "rpc_client.h"

#include "db_err.h"
#include "db_log.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define RPC_LOG "rpc_client"
#define RPC_DEFAULT_MAX_MSG ((size_t)64 << 20)
#define RPC_DEFAULT_CONNECT_MS 5000
#define RPC_MAX_STREAMS 1000L /* our cap on concurrent streams/connection */
#define RPC_FREE_MAX 1024     /* idle streams (easy handles) kept for reuse */
#define RPC_RBUF_KEEP (64u << 10) /* receive buffer kept across calls */
#define RPC_UL_BUFSIZE (512L << 10)
#define RPC_DL_BUFSIZE (256L << 10)

enum {
  S_QUEUED = 1 << 0,  /* in the start queue, not yet handed to curl */
  S_ADDED = 1 << 1,   /* easy handle is in the multi handle */
  S_CANCEL = 1 << 2,  /* cancel requested, not yet finished */
  S_STREAM = 1 << 3,  /* client streaming: body comes from produce() */
  S_EOS = 1 << 4,     /* producer reported the end of the stream */
  S_PK = 1 << 5,      /* sent with prior knowledge: may open the connection */
  S_READY = 1 << 6,   /* connected (pre-request callback ran) */
  S_REFUSED = 1 << 7, /* we refused it a new socket: dispatch again */
};

/* What we know of the one connection (see dispatch()). */
enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP };

struct rpc_stream {
  rpc_client *c;
  CURL *easy;
  struct rpc_stream *prev, *next; /* active list, or next = free list */
  struct rpc_stream *qnext;       /* start queue */
  rpc_stream_cbs cbs;
  void *ctx;
  unsigned flags;
  uint64_t seq;     /* start order, for failing queued calls */
  int64_t deadline; /* rpc_now_ms() based; 0 = none */
  size_t nproduced; /* messages taken from produce() */

  /* Request: unary body (framed) or the current streamed message. */
  uint8_t *req;
  size_t req_len, req_off;
  uint8_t pfx[5];
  size_t pfx_off; /* 5 = prefix of the current streamed message sent */

  /* Response reassembly. */
  uint8_t rpfx[5];
  size_t rpfx_have;
  int in_msg;
  uint8_t *rbuf;
  size_t rbuf_cap, rmsg_len, rmsg_have;

  /* Status from headers/trailers, and a local status that overrides it. */
  int have_status;
  int got_headers; /* saw the response's HTTP status line */
  rpc_status st;
  int have_local;
  rpc_status local;

  struct curl_slist tmo_node; /* "grpc-timeout: ..." -> c->hdrs */
  char tmo_hdr[32];
  char errbuf[CURL_ERROR_SIZE];
};

struct rpc_client {
  CURLM *multi;
  char *base_url; /* "http://host:port" */
  size_t base_len;
  size_t max_msg;
  long connect_ms;
  struct curl_slist *hdrs;
  struct rpc_stream *active; /* started and not finished, doubly linked */
  struct rpc_stream *qhead, *qtail; /* start queue */
  struct rpc_stream *free_list;
  int nfree;
  int pending;
  int ncancel;       /* streams with S_CANCEL not yet finished */
  int conn;          /* CONN_* */
  int fd;            /* the connection's socket, -1 if none */
  uint64_t seq;      /* last start sequence number */
  uint64_t fail_seq; /* fail queued calls up to this seq with fail_st */
  rpc_status fail_st;
  int in_perform; /* inside curl_multi_perform (curl callbacks) */
  int closing;
};

/* ---- status helpers ---- */

static void status_move(rpc_status *dst, rpc_status *src) {
  rpc_status_clear(dst);
  *dst = *src;
  src->code = RPC_OK;
  src->message = NULL;
  src->details = NULL;
  src->details_len = 0;
}

static void set_local(struct rpc_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_local(struct rpc_stream *s, int code, const char *fmt, ...) {
  va_list ap;
  char *msg = NULL;

  if (s->have_local)
    return; /* the first local reason wins */
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  rpc_status_clear(&s->local);
  s->local.code = code;
  s->local.message = msg;
  s->have_local = 1;
}

/* gRPC spec: HTTP status -> gRPC code when grpc-status is missing. */
static int code_from_http(long http) {
  switch (http) {
  case 400:
    return RPC_INTERNAL;
  case 401:
    return RPC_UNAUTHENTICATED;
  case 403:
    return RPC_PERMISSION_DENIED;
  case 404:
    return RPC_UNIMPLEMENTED;
  case 429:
  case 502:
  case 503:
  case 504:
    return RPC_UNAVAILABLE;
  default:
    return RPC_UNKNOWN;
  }
}

/* gRPC spec: RST_STREAM error code -> gRPC code. */
static int code_from_h2(unsigned long h2err) {
  switch (h2err) {
  case 0x7: /* REFUSED_STREAM */
    return RPC_UNAVAILABLE;
  case 0x8: /* CANCEL */
    return RPC_CANCELLED;
  case 0xb: /* ENHANCE_YOUR_CALM */
    return RPC_RESOURCE_EXHAUSTED;
  case 0xc: /* INADEQUATE_SECURITY */
    return RPC_PERMISSION_DENIED;
  default:
    return RPC_INTERNAL;
  }
}

/* curl reports a reset stream as "... (err N)" in the error buffer. */
static int parse_h2_err(const char *errbuf, unsigned long *out) {
  const char *p = strstr(errbuf, "(err ");
  char *end;

  if (!p)
    return 0;
  *out = strtoul(p + 5, &end, 10);
  return end != p + 5 && *end == ')';
}

static void resolve_status(struct rpc_stream *s, CURLcode rc, rpc_status *out) {
  long http = 0;
  unsigned long h2err;
  const char *why = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);

  if (s->flags & S_CANCEL) {
    rpc_status_setf(out, RPC_CANCELLED, "call cancelled");
    return;
  }
  if (s->have_local) {
    status_move(out, &s->local);
    return;
  }
  if (s->have_status && !s->got_headers) {
    /* libcurl 7.88 drops a response's header block and data when they
     * arrive in one read with RST_STREAM(NO_ERROR), yet passes on the
     * trailers. Whatever the server said, the response is lost. */
    rpc_status_setf(out, RPC_UNAVAILABLE,
                    "response lost: stream reset by the server before its "
                    "headers were delivered (server status %s)",
                    rpc_code_name(s->st.code));
    return;
  }
  if (s->have_status) {
    status_move(out, &s->st);
    /* A clean status must not hide a truncated final message. */
    if (out->code == RPC_OK && (s->in_msg || s->rpfx_have))
      rpc_status_setf(out, RPC_INTERNAL,
                      "stream ended inside a message (%zu of %zu bytes)",
                      s->in_msg ? s->rmsg_have : s->rpfx_have,
                      s->in_msg ? s->rmsg_len : (size_t)5);
    return;
  }
  switch (rc) {
  case CURLE_OK:
    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &http);
    if (http != 200)
      rpc_status_setf(out, code_from_http(http),
                      "HTTP status %ld without grpc-status", http);
    else
      rpc_status_setf(out, RPC_INTERNAL,
                      "server closed the stream without grpc-status");
    return;
  case CURLE_OPERATION_TIMEDOUT:
    if (!(s->flags & S_READY) && (!s->deadline || rpc_now_ms() < s->deadline)) {
      /* The connect timeout, not the call's deadline. */
      rpc_status_setf(out, RPC_UNAVAILABLE, "transport: %s", why);
      return;
    }
    rpc_status_setf(out, RPC_DEADLINE_EXCEEDED, "deadline exceeded: %s", why);
    return;
  case CURLE_HTTP2_STREAM:
    if (parse_h2_err(s->errbuf, &h2err)) {
      rpc_status_setf(out, code_from_h2(h2err), "stream reset: %s", why);
      return;
    }
    rpc_status_setf(out, RPC_UNAVAILABLE, "transport: %s", why);
    return;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_HTTP2:
  case CURLE_PARTIAL_FILE:
  case CURLE_UNSUPPORTED_PROTOCOL:
    rpc_status_setf(out, RPC_UNAVAILABLE, "transport: %s", why);
    return;
  case CURLE_OUT_OF_MEMORY:
    rpc_status_setf(out, RPC_RESOURCE_EXHAUSTED, "client out of memory");
    return;
  default:
    rpc_status_setf(out, RPC_INTERNAL, "transport: %s (curl %d)", why, (int)rc);
    return;
  }
}

/* ---- curl callbacks ---- */

static int deliver(struct rpc_stream *s, const uint8_t *msg, size_t len) {
  if (s->cbs.on_message && s->cbs.on_message(s->ctx, msg, len) != 0) {
    set_local(s, RPC_CANCELLED, "cancelled by the message callback");
    return -1;
  }
  return 0;
}

/* Parse a complete 5-byte prefix; 0, or -1 with a local status set. */
static int take_prefix(struct rpc_stream *s, const uint8_t *p, size_t *len) {
  size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 |
             (size_t)p[4];

  if (p[0] != 0) {
    set_local(s, RPC_INTERNAL,
              "compressed response message without grpc-encoding");
    return -1;
  }
  if (n > s->c->max_msg) {
    set_local(s, RPC_RESOURCE_EXHAUSTED,
              "received message larger than max (%zu vs. %zu)", n,
              s->c->max_msg);
    return -1;
  }
  *len = n;
  return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  struct rpc_stream *s = ud;
  const uint8_t *d = (const uint8_t *)ptr;
  size_t total = size * nmemb, len = total, mlen, take;

  if (s->flags & S_CANCEL)
    return 0;
  while (len > 0) {
    if (s->in_msg) {
      take = s->rmsg_len - s->rmsg_have;
      if (take > len)
        take = len;
      memcpy(s->rbuf + s->rmsg_have, d, take);
      s->rmsg_have += take;
      d += take;
      len -= take;
      if (s->rmsg_have < s->rmsg_len)
        break;
      s->in_msg = 0;
      if (deliver(s, s->rbuf, s->rmsg_len) < 0)
        return 0;
      continue;
    }
    if (s->rpfx_have == 0 && len >= 5) {
      if (take_prefix(s, d, &mlen) < 0)
        return 0;
      d += 5;
      len -= 5;
    } else {
      take = 5 - s->rpfx_have;
      if (take > len)
        take = len;
      memcpy(s->rpfx + s->rpfx_have, d, take);
      s->rpfx_have += take;
      d += take;
      len -= take;
      if (s->rpfx_have < 5)
        break;
      s->rpfx_have = 0;
      if (take_prefix(s, s->rpfx, &mlen) < 0)
        return 0;
    }
    if (len >= mlen) { /* whole message in this chunk: no copy */
      if (deliver(s, d, mlen) < 0)
        return 0;
      d += mlen;
      len -= mlen;
      continue;
    }
    if (s->rbuf_cap < mlen) {
      free(s->rbuf);
      s->rbuf = malloc(mlen);
      s->rbuf_cap = s->rbuf ? mlen : 0;
      if (!s->rbuf) {
        set_local(s, RPC_RESOURCE_EXHAUSTED,
                  "out of memory for a %zu-byte message", mlen);
        return 0;
      }
    }
    memcpy(s->rbuf, d, len);
    s->rmsg_len = mlen;
    s->rmsg_have = len;
    s->in_msg = 1;
    len = 0;
  }
  return total;
}

static int hdr_is(const char *line, size_t len, const char *name, size_t nlen,
                  const char **val, size_t *vlen) {
  const char *v, *e;

  if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
    return 0;
  v = line + nlen + 1;
  e = line + len;
  while (v < e && (*v == ' ' || *v == '\t'))
    v++;
  while (e > v &&
         (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
    e--;
  *val = v;
  *vlen = (size_t)(e - v);
  return 1;
}

#define HDR_IS(line, len, lit, val, vlen)                                      \
  hdr_is(line, len, lit, sizeof(lit) - 1, val, vlen)

/* Sees the response headers and, at the end, the trailers: grpc-status can
 * be in either block (Trailers-Only responses). */
static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct rpc_stream *s = ud;
  size_t len = size * nmemb, vlen;
  const char *v;

  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    s->got_headers = 1;
    return len;
  }
  if (len < 12 || (line[0] != 'g' && line[0] != 'G'))
    return len;
  if (HDR_IS(line, len, "grpc-status", &v, &vlen)) {
    int code = 0;
    size_t i;
    for (i = 0; i < vlen && i < 6; i++) {
      if (v[i] < '0' || v[i] > '9')
        break;
      code = code * 10 + (v[i] - '0');
    }
    if (vlen == 0 || i != vlen)
      code = RPC_UNKNOWN; /* unparsable status */
    s->st.code = code;
    s->have_status = 1;
  } else if (HDR_IS(line, len, "grpc-message", &v, &vlen)) {
    free(s->st.message);
    s->st.message = rpc_message_decode(v, vlen);
  } else if (HDR_IS(line, len, "grpc-status-details-bin", &v, &vlen)) {
    uint8_t *d = NULL;
    size_t dlen = 0;
    if (rpc_b64_decode(v, vlen, &d, &dlen) == 0) {
      free(s->st.details);
      s->st.details = d;
      s->st.details_len = dlen;
    } else {
      DB_DEBUG(RPC_LOG, "ignoring malformed grpc-status-details-bin");
    }
  }
  return len;
}

/* Copy from [src+*off, src+n) into the curl buffer. */
static size_t copy_out(char **dst, size_t *room, const uint8_t *src, size_t n,
                       size_t *off) {
  size_t take = n - *off;

  if (take > *room)
    take = *room;
  memcpy(*dst, src + *off, take);
  *dst += take;
  *room -= take;
  *off += take;
  return take;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud) {
  struct rpc_stream *s = ud;
  size_t room = size * nitems, done = 0;
  char *dst = buf;

  if (s->flags & S_CANCEL)
    return CURL_READFUNC_ABORT;
  if (!(s->flags & S_STREAM))
    return copy_out(&dst, &room, s->req, s->req_len, &s->req_off);
  while (room > 0) {
    if (s->pfx_off < 5) {
      done += copy_out(&dst, &room, s->pfx, 5, &s->pfx_off);
      continue;
    }
    if (s->req_off < s->req_len) {
      done += copy_out(&dst, &room, s->req, s->req_len, &s->req_off);
      continue;
    }
    free(s->req);
    s->req = NULL;
    s->req_len = s->req_off = 0;
    if (s->flags & S_EOS)
      break;
    {
      uint8_t *m = NULL;
      size_t mlen = 0;
      int r = s->cbs.produce(s->ctx, &m, &mlen);
      if (r < 0) {
        free(m);
        set_local(s, RPC_CANCELLED, "request stream aborted by producer (%d)",
                  r);
        return CURL_READFUNC_ABORT;
      }
      if (r == 0) {
        free(m);
        s->flags |= S_EOS;
        break;
      }
      if (mlen > UINT32_MAX) {
        free(m);
        set_local(s, RPC_RESOURCE_EXHAUSTED,
                  "request message of %zu bytes exceeds the wire limit", mlen);
        return CURL_READFUNC_ABORT;
      }
      s->nproduced++;
      s->req = m;
      s->req_len = mlen;
      s->pfx[0] = 0;
      s->pfx[1] = (uint8_t)(mlen >> 24);
      s->pfx[2] = (uint8_t)(mlen >> 16);
      s->pfx[3] = (uint8_t)(mlen >> 8);
      s->pfx[4] = (uint8_t)mlen;
      s->pfx_off = 0;
    }
  }
  return done;
}

/* curl may rewind the body to resend a request on a new connection. */
static int on_seek(void *ud, curl_off_t off, int origin) {
  struct rpc_stream *s = ud;

  if (origin != SEEK_SET || off != 0)
    return CURL_SEEKFUNC_CANTSEEK;
  if (s->flags & S_STREAM) {
    if (s->nproduced > 0)
      return CURL_SEEKFUNC_CANTSEEK; /* produced messages are gone */
    return CURL_SEEKFUNC_OK;
  }
  s->req_off = 0;
  return CURL_SEEKFUNC_OK;
}

/*
 * libcurl 7.88 bug (curl #10634, fixed in 8.0): a transfer using
 * CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE that reuses an h2c connection stacks
 * a second HTTP/2 filter on it and fails with "Error in the HTTP2 framing
 * layer". So only a transfer that opens the connection may use prior
 * knowledge; every other one uses CURL_HTTP_VERSION_2TLS, which multiplexes
 * on the existing h2c connection but would speak HTTP/1.1 on a new one.
 * This callback keeps the latter from ever opening a socket: the transfer
 * fails before sending anything and dispatch() sends it again, first in
 * line, with prior knowledge.
 */
static curl_socket_t on_opensocket(void *ud, curlsocktype purpose,
                                   struct curl_sockaddr *a) {
  struct rpc_stream *s = ud;
  curl_socket_t fd;

  if (!(s->flags & S_PK)) {
    s->flags |= S_REFUSED;
    if (s->c->conn == CONN_UP)
      s->c->conn = CONN_DOWN;
    return CURL_SOCKET_BAD;
  }
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd >= 0)
    s->c->fd = fd;
  return fd;
}

static int on_closesocket(void *ud, curl_socket_t fd) {
  rpc_client *c = ud;

  if (c->fd == fd)
    c->fd = -1;
  return close(fd);
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

/* Connected (or reused), right before the request goes out. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port) {
  struct rpc_stream *s = ud;

  s->flags |= S_READY;
  if (s->flags & S_PK)
    s->c->conn = CONN_UP;
  return CURL_PREREQFUNC_OK;
}

/* ---- stream lifecycle ---- */

static void stream_destroy(struct rpc_stream *s) {
  if (!s)
    return;
  if (s->easy)
    curl_easy_cleanup(s->easy);
  free(s->req);
  free(s->rbuf);
  rpc_status_clear(&s->st);
  rpc_status_clear(&s->local);
  free(s);
}

static struct rpc_stream *stream_create(rpc_client *c) {
  struct rpc_stream *s = calloc(1, sizeof(*s));
  CURL *e;
  int bad = 0;

  if (!s)
    return NULL;
  e = curl_easy_init();
  if (!e) {
    free(s);
    return NULL;
  }
  s->easy = e;
  s->c = c;
  s->tmo_node.data = s->tmo_hdr;
#define SET(opt, val) bad |= curl_easy_setopt(e, opt, val) != CURLE_OK
  SET(CURLOPT_PIPEWAIT, 1L);
  SET(CURLOPT_POST, 1L);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_PROXY, ""); /* never route gRPC through http_proxy */
  SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
  SET(CURLOPT_USERAGENT, "cargo-distbuild");
  SET(CURLOPT_TCP_NODELAY, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, 30L);
  SET(CURLOPT_TCP_KEEPINTVL, 10L);
  SET(CURLOPT_BUFFERSIZE, RPC_DL_BUFSIZE);
  SET(CURLOPT_UPLOAD_BUFFERSIZE, RPC_UL_BUFSIZE);
  SET(CURLOPT_READFUNCTION, on_read);
  SET(CURLOPT_READDATA, s);
  SET(CURLOPT_WRITEFUNCTION, on_write);
  SET(CURLOPT_WRITEDATA, s);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, s);
  SET(CURLOPT_SEEKFUNCTION, on_seek);
  SET(CURLOPT_SEEKDATA, s);
  SET(CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
  SET(CURLOPT_OPENSOCKETDATA, s);
  SET(CURLOPT_CLOSESOCKETFUNCTION, on_closesocket);
  SET(CURLOPT_CLOSESOCKETDATA, c);
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, s);
  SET(CURLOPT_ERRORBUFFER, s->errbuf);
  SET(CURLOPT_PRIVATE, (void *)s);
  if (getenv("CARGO_DISTBUILD_RPC_TRACE")) /* curl's own trace */
    SET(CURLOPT_VERBOSE, 1L);
#undef SET
  if (bad) {
    DB_ERROR(RPC_LOG, "libcurl rejected a required option");
    stream_destroy(s);
    return NULL;
  }
  return s;
}

/* Clear per-call state; keeps the easy handle and a small receive buffer. */
static void stream_reset(struct rpc_stream *s) {
  free(s->req);
  s->req = NULL;
  s->req_len = s->req_off = 0;
  s->pfx_off = 0;
  s->rpfx_have = 0;
  s->in_msg = 0;
  s->rmsg_len = s->rmsg_have = 0;
  if (s->rbuf_cap > RPC_RBUF_KEEP) {
    free(s->rbuf);
    s->rbuf = NULL;
    s->rbuf_cap = 0;
  }
  s->have_status = 0;
  s->got_headers = 0;
  rpc_status_clear(&s->st);
  s->have_local = 0;
  rpc_status_clear(&s->local);
  s->flags = 0;
  s->nproduced = 0;
  s->deadline = 0;
  s->cbs.on_message = NULL;
  s->cbs.produce = NULL;
  s->cbs.on_done = NULL;
  s->ctx = NULL;
  s->errbuf[0] = '\0';
  s->prev = s->next = s->qnext = NULL;
}

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

  resolve_status(s, rc, &st);
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
  stream_reset(s);
  if (c->nfree < RPC_FREE_MAX && !c->closing) {
    s->next = c->free_list;
    c->free_list = s;
    c->nfree++;
  } else {
    stream_destroy(s);
  }
  /* The handle is recycled before on_done so that on_done may start new
   * calls on it; the status lives on our stack. */
  if (cbs.on_done)
    cbs.on_done(ctx, &st);
  rpc_status_clear(&st);
}

/* ---- public API ---- */

static int parse_target(const char *target, char **url) {
  const char *hp = target, *colon, *p;
  size_t hlen;
  char *u;

  if (!target)
    return DB_EINVAL;
  if (strncmp(hp, "grpc://", 7) == 0)
    hp += 7;
  else if (strncmp(hp, "grpcs://", 8) == 0)
    return DB_EUNSUPP; /* TLS not implemented yet */
  else if (strstr(hp, "://"))
    return DB_EINVAL;
  if (hp[0] == '[') { /* [v6]:port */
    p = strchr(hp, ']');
    if (!p || p[1] != ':')
      return DB_EINVAL;
    colon = p + 1;
  } else {
    colon = strrchr(hp, ':');
    if (!colon || memchr(hp, ':', (size_t)(colon - hp)))
      return DB_EINVAL;
  }
  hlen = (size_t)(colon - hp);
  if (hlen == 0 || hlen > 255)
    return DB_EINVAL;
  for (p = hp; p < colon; p++) {
    if (*p <= ' ' || *p == '/' || *p == '@' || *p == '?' || *p == '#' ||
        (unsigned char)*p >= 0x7f)
      return DB_EINVAL;
  }
  {
    long port = 0;
    size_t n = 0;
    for (p = colon + 1; *p; p++, n++) {
      if (*p < '0' || *p > '9' || n >= 5)
        return DB_EINVAL;
      port = port * 10 + (*p - '0');
    }
    if (n == 0 || port < 1 || port > 65535)
      return DB_EINVAL;
  }
  if (asprintf(&u, "http://%s", hp) < 0)
    return DB_ENOMEM;
  *url = u;
  return 0;
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
  rv = parse_target(target, &c->base_url);
  if (rv < 0)
    goto fail;
  c->base_len = strlen(c->base_url);
  c->max_msg = opts && opts->max_message_size ? opts->max_message_size
                                              : RPC_DEFAULT_MAX_MSG;
  c->connect_ms = opts && opts->connect_timeout_ms > 0
                      ? opts->connect_timeout_ms
                      : RPC_DEFAULT_CONNECT_MS;
  for (i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
    struct curl_slist *l = curl_slist_append(c->hdrs, base[i]);
    if (!l) {
      rv = DB_ENOMEM;
      goto fail;
    }
    c->hdrs = l;
  }
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
    stream_destroy(s);
  }
  curl_multi_cleanup(c->multi);
  rpc_status_clear(&c->fail_st);
  curl_slist_free_all(c->hdrs);
  free(c->base_url);
  free(c);
  curl_global_cleanup();
}

static int valid_header_name(const char *n) {
  size_t i;

  if (!n[0] || strncmp(n, "grpc-", 5) == 0)
    return 0;
  for (i = 0; n[i]; i++) {
    char ch = n[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
          ch == '_' || ch == '.'))
      return 0;
  }
  return 1;
}

int rpc_client_set_header(rpc_client *c, const char *name, const char *value) {
  struct curl_slist *l;
  char *line;
  size_t i;

  if (!c || !name || !value || !valid_header_name(name))
    return DB_EINVAL;
  for (i = 0; value[i]; i++) {
    if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e)
      return DB_EINVAL;
  }
  /* curl sends "name;" as an empty header ("name:" would remove it). */
  if (asprintf(&line, value[0] ? "%s: %s" : "%s;", name, value) < 0)
    return DB_ENOMEM;
  /* Appending keeps the head pointer that queued calls hold valid. */
  l = curl_slist_append(c->hdrs, line);
  free(line);
  if (!l)
    return DB_ENOMEM;
  c->hdrs = l;
  return 0;
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
    s = stream_create(c);
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
      stream_reset(s);
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
  curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION,
                   pk ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
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
 * (with prior knowledge) and opens it; the others wait in the queue until
 * it is connected and then multiplex on it (see on_opensocket()).
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
      set_local(s, c->fail_st.code, "%s",
                c->fail_st.message ? c->fail_st.message : "unavailable");
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    if (c->conn == CONN_CONNECTING) {
      queue_push(c, s, 1);
      break;
    }
    if (prepare(c, s, c->conn == CONN_DOWN) < 0) {
      set_local(s, RPC_DEADLINE_EXCEEDED, "deadline exceeded before sending");
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    mc = curl_multi_add_handle(c->multi, s->easy);
    if (mc != CURLM_OK) {
      set_local(s, RPC_INTERNAL, "curl_multi_add_handle: %s",
                curl_multi_strerror(mc));
      stream_finish(c, s, CURLE_OK);
      continue;
    }
    s->flags |= S_ADDED;
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

/* One round: start queued calls, let curl work, finish completed calls. */
static int drive(rpc_client *c) {
  CURLMcode mc;
  int running = 0;

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
  status_move(st, &u.st);
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
