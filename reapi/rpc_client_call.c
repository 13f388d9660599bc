/*
 * One gRPC call on a libcurl easy handle: the handle's constant options
 * and callbacks, request framing (unary body or messages pulled from the
 * producer), response reassembly, grpc-status from headers/trailers and
 * the mapping of HTTP, HTTP/2 and curl errors to gRPC codes. The client
 * handle, dispatch and the run loop are in rpc_client.c; see
 * rpc_client_int.h.
 */
#include "rpc_client_int.h"

#include "db_err.h"
#include "db_log.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define RPC_RBUF_KEEP (64u << 10) /* receive buffer kept across calls */
#define RPC_UL_BUFSIZE (512L << 10)
#define RPC_DL_BUFSIZE (256L << 10)

/* ---- status helpers ---- */

void rpc_client__status_move(rpc_status *dst, rpc_status *src) {
  rpc_status_clear(dst);
  *dst = *src;
  src->code = RPC_OK;
  src->message = NULL;
  src->details = NULL;
  src->details_len = 0;
}

void rpc_client__set_local(struct rpc_stream *s, int code, const char *fmt,
                           ...) {
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

/* 1 if curl's error is TLS's: the handshake, certificate verification or
 * the client's own TLS files. */
static int tls_error(const struct rpc_stream *s, CURLcode rc) {
  switch (rc) {
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
#if LIBCURL_VERSION_NUM >= 0x074d00 /* 7.77.0 */
  case CURLE_SSL_CLIENTCERT:
#endif
  case CURLE_USE_SSL_FAILED:
    return 1;
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
    /* With TLS 1.3 a server that refuses our certificate says so in an
     * alert after the handshake: the first read fails ("OpenSSL SSL_read:
     * ... SSL routines::tlsv13 alert certificate required"). A plain
     * errno (connection reset) is no TLS matter. */
    return s->c->tls && strstr(s->errbuf, "SSL routines") != NULL;
  default:
    return 0;
  }
}

/* 1 if a TLS connection broke before the server answered anything on it:
 * how a server that rejects our certificate (or wants one) looks to the
 * calls that did not read its alert, or when it sent none. */
static int tls_closed_unanswered(const struct rpc_stream *s, CURLcode rc) {
  if (!s->c->tls || !(s->flags & S_READY) || s->got_headers ||
      s->c->answered == s->conn_gen)
    return 0;
  switch (rc) {
  case CURLE_HTTP2_STREAM:
  case CURLE_HTTP2:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
    return !strstr(s->errbuf, "(err "); /* not a stream reset */
  default:
    return 0;
  }
}

void rpc_client__resolve_status(struct rpc_stream *s, CURLcode rc,
                                rpc_status *out) {
  long http = 0;
  unsigned long h2err;
  const char *why = s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc);

  if ((s->flags & S_CANCEL) && !s->have_local) {
    rpc_status_setf(out, RPC_CANCELLED, "call cancelled");
    return;
  }
  if (s->have_local) {
    rpc_client__status_move(out, &s->local);
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
    rpc_client__status_move(out, &s->st);
    /* A clean status must not hide a truncated final message. */
    if (out->code == RPC_OK && (s->in_msg || s->rpfx_have))
      rpc_status_setf(out, RPC_INTERNAL,
                      "stream ended inside a message (%zu of %zu bytes)",
                      s->in_msg ? s->rmsg_have : s->rpfx_have,
                      s->in_msg ? s->rmsg_len : (size_t)5);
    return;
  }
  if (tls_error(s, rc)) {
    rpc_status_setf(out, RPC_UNAVAILABLE, RPC_TLS_PREFIX "%s", why);
    return;
  }
  if (tls_closed_unanswered(s, rc)) {
    rpc_status_setf(out, RPC_UNAVAILABLE,
                    RPC_TLS_PREFIX "connection closed right after the "
                                   "handshake, before any answer (client "
                                   "certificate missing or rejected?): %s",
                    why);
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
    rpc_client__set_local(s, RPC_CANCELLED,
                          "cancelled by the message callback");
    return -1;
  }
  return 0;
}

/* Parse a complete 5-byte prefix; 0, or -1 with a local status set. */
static int take_prefix(struct rpc_stream *s, const uint8_t *p, size_t *len) {
  size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 |
             (size_t)p[4];

  if (p[0] != 0) {
    rpc_client__set_local(s, RPC_INTERNAL,
                          "compressed response message without grpc-encoding");
    return -1;
  }
  if (n > s->c->max_msg) {
    rpc_client__set_local(s, RPC_RESOURCE_EXHAUSTED,
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
  s->last_io = rpc_now_ms();
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
        rpc_client__set_local(s, RPC_RESOURCE_EXHAUSTED,
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

/* TLS: 1 if ALPN chose HTTP/2 for this response (status line in line). */
static int negotiated_h2(struct rpc_stream *s, const char *line, size_t len) {
  long v = 0;

  if (curl_easy_getinfo(s->easy, CURLINFO_HTTP_VERSION, &v) == CURLE_OK &&
      v != 0)
    return v == CURL_HTTP_VERSION_2_0;
  return len >= 7 && memcmp(line, "HTTP/2 ", 7) == 0;
}

/* Sees the response headers and, at the end, the trailers: grpc-status can
 * be in either block (Trailers-Only responses). */
static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct rpc_stream *s = ud;
  size_t len = size * nmemb, vlen;
  const char *v;

  s->last_io = rpc_now_ms();
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    s->got_headers = 1;
    s->c->answered = s->conn_gen;
    if (s->c->tls && !negotiated_h2(s, line, len)) {
      /* gRPC needs HTTP/2: the server lacks "h2" in ALPN (a plain HTTPS
       * server, or a proxy that speaks HTTP/1.1 to us). */
      size_t n = strcspn(line, " \r\n");
      rpc_client__set_local(s, RPC_UNAVAILABLE,
                            RPC_TLS_PREFIX "the server did not negotiate "
                                           "HTTP/2 over TLS (ALPN); it "
                                           "answered %.*s",
                            (int)n, line);
      return 0;
    }
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
  s->last_io = rpc_now_ms();
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
        rpc_client__set_local(s, RPC_CANCELLED,
                              "request stream aborted by producer (%d)", r);
        return CURL_READFUNC_ABORT;
      }
      if (r == 0) {
        free(m);
        s->flags |= S_EOS;
        break;
      }
      if (mlen > UINT32_MAX) {
        free(m);
        rpc_client__set_local(
            s, RPC_RESOURCE_EXHAUSTED,
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
 * fails before sending anything and dispatch() (rpc_client.c) sends it
 * again, first in line, with prior knowledge. A TLS client follows the
 * same rule (one transfer opens the connection, S_PK), though all of its
 * transfers use 2TLS and ALPN.
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

/* Connected (or reused), right before the request goes out. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port) {
  struct rpc_stream *s = ud;

  s->flags |= S_READY;
  if (s->flags & S_PK) {
    s->c->conn = CONN_UP;
    s->c->conn_gen++;
  }
  s->conn_gen = s->c->conn_gen;
  return CURL_PREREQFUNC_OK;
}

/* ---- stream lifecycle ---- */

void rpc_client__stream_destroy(struct rpc_stream *s) {
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

struct rpc_stream *rpc_client__stream_create(rpc_client *c) {
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
  if (c->tls) {
    /* Verification is curl's default; say so rather than rely on it. */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->tls_ca)
      SET(CURLOPT_CAINFO, c->tls_ca);
    if (c->tls_cert) {
      SET(CURLOPT_SSLCERT, c->tls_cert);
      SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (c->tls_key) {
      SET(CURLOPT_SSLKEY, c->tls_key);
      SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
  }
  if (getenv("CARGO_DISTBUILD_RPC_TRACE")) /* curl's own trace */
    SET(CURLOPT_VERBOSE, 1L);
#undef SET
  if (bad) {
    DB_ERROR(RPC_LOG, "libcurl rejected a required option");
    rpc_client__stream_destroy(s);
    return NULL;
  }
  return s;
}

/* Clear per-call state; keeps the easy handle and a small receive buffer. */
void rpc_client__stream_reset(struct rpc_stream *s) {
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
  s->conn_gen = 0;
  s->deadline = 0;
  s->idle_ms = 0;
  s->last_io = 0;
  s->cbs.on_message = NULL;
  s->cbs.produce = NULL;
  s->cbs.on_done = NULL;
  s->ctx = NULL;
  s->errbuf[0] = '\0';
  s->prev = s->next = s->qnext = NULL;
}
