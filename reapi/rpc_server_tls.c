/*
 * TLS and bearer-token checks for rpc_server (see rpc_server_int.h).
 *
 * TLS runs OpenSSL directly on the connection's nonblocking socket rather
 * than through a bufferevent, so the plaintext and TLS paths share the
 * read buffer, the output evbuffer and the flush loop in rpc_server.c;
 * only the two I/O primitives differ. OpenSSL may need the opposite
 * direction to make progress (a handshake inside SSL_write waits for the
 * ClientHello; SSL_read may have to send): the connection records that in
 * want_write / want_read and rpc_server.c retries the stalled side when
 * the other event fires.
 */
#include "rpc_server_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LOG_COMP "rpc-server"
/* Largest plaintext handed to one SSL_write: four full TLS records. */
#define TLS_WRITE_MAX (64 * 1024)

static const unsigned char ALPN_H2[] = {2, 'h', '2'};

/* The most recent OpenSSL error, for a log line (static buffer). */
static const char *tls_errstr(void) {
  static char buf[256];
  unsigned long e = ERR_peek_last_error();

  if (!e)
    return "no OpenSSL error recorded";
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

/* gRPC needs HTTP/2: a client that cannot speak it over TLS is refused in
 * the handshake (no_application_protocol) instead of failing later on the
 * connection preface. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  unsigned char *sel = NULL;

  (void)ssl;
  (void)arg;
  if (SSL_select_next_proto(&sel, outlen, ALPN_H2, sizeof(ALPN_H2), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

int rpc__tls_ctx_new(const rpc_server_opts *o, SSL_CTX **out) {
  SSL_CTX *ctx = NULL;
  const char *key = o->tls_key_file ? o->tls_key_file : o->tls_cert_file;
  int rv = DB_EINVAL;

  *out = NULL;
  ERR_clear_error();
  ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    rv = DB_ENOMEM;
    goto out;
  }
  /* RFC 9113 9.2: HTTP/2 over TLS needs 1.2 or later, no compression, no
   * renegotiation. */
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1) {
    DB_ERROR(LOG_COMP, "TLS certificate %s: %s", o->tls_cert_file,
             tls_errstr());
    goto out;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    DB_ERROR(LOG_COMP, "TLS private key %s: %s", key, tls_errstr());
    goto out;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    DB_ERROR(LOG_COMP, "TLS private key %s does not match certificate %s", key,
             o->tls_cert_file);
    goto out;
  }
  if (o->tls_client_ca_file) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->tls_client_ca_file);
    if (!names ||
        SSL_CTX_load_verify_locations(ctx, o->tls_client_ca_file, NULL) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      DB_ERROR(LOG_COMP, "TLS client CA %s: %s", o->tls_client_ca_file,
               tls_errstr());
      goto out;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* takes names */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
  }
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  *out = ctx;
  ctx = NULL;
  rv = 0;
out:
  SSL_CTX_free(ctx);
  return rv;
}

void rpc__tls_ctx_free(SSL_CTX *ctx) {
  SSL_CTX_free(ctx);
}

int rpc__tls_conn_start(rpc_conn *c) {
  c->ssl = SSL_new(c->srv->tls);
  if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
    return DB_ENOMEM;
  SSL_set_accept_state(c->ssl);
  return 0;
}

void rpc__tls_conn_free(rpc_conn *c) {
  if (!c->ssl)
    return;
  /* No close_notify: the socket is closed right after, and a peer that is
   * gone would only make SSL_shutdown fail. */
  SSL_free(c->ssl);
  c->ssl = NULL;
}

/* One failed SSL_read/SSL_write: RPC__IO_AGAIN (noting which direction
 * OpenSSL waits for), RPC__IO_EOF or RPC__IO_FATAL. */
static ssize_t tls_fail(rpc_conn *c, int r, int reading) {
  int e = SSL_get_error(c->ssl, r);

  switch (e) {
  case SSL_ERROR_WANT_READ:
    if (!reading)
      c->tls_write_wants_read = 1;
    return RPC__IO_AGAIN;
  case SSL_ERROR_WANT_WRITE:
    if (reading)
      c->tls_read_wants_write = 1;
    return RPC__IO_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return RPC__IO_EOF;
  case SSL_ERROR_SYSCALL:
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return RPC__IO_AGAIN;
    if (ERR_peek_error() == 0 &&
        (errno == 0 || errno == ECONNRESET || errno == EPIPE))
      return RPC__IO_EOF; /* peer went away without close_notify */
    break;
  default:
    break;
  }
  if (!SSL_is_init_finished(c->ssl) &&
      !(e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_last_error()) ==
                                  SSL_R_UNEXPECTED_EOF_WHILE_READING))
    /* Almost always a misconfigured client (an untrusted certificate, no
     * client certificate): say so once. A peer that only connects and
     * closes (a port probe) is not worth a warning. */
    DB_WARN(LOG_COMP, "fd %d: TLS handshake failed: %s", c->fd,
            e == SSL_ERROR_SSL ? tls_errstr() : strerror(errno));
  else
    DB_DEBUG(LOG_COMP, "fd %d: TLS: %s", c->fd,
             e == SSL_ERROR_SSL ? tls_errstr() : strerror(errno));
  ERR_clear_error();
  return RPC__IO_FATAL;
}

/* The commonest mistake is a grpc:// client on a grpcs:// listener; its
 * first bytes are the HTTP/2 preface, which OpenSSL would only call a
 * "wrong version number". Look before the handshake reads anything. */
static int plaintext_client(rpc_conn *c) {
  char pfx[3];
  ssize_t n;

  do
    n = recv(c->fd, pfx, sizeof(pfx), MSG_PEEK);
  while (n < 0 && errno == EINTR);
  if (n < (ssize_t)sizeof(pfx) || memcmp(pfx, "PRI", 3) != 0)
    return 0;
  DB_WARN(LOG_COMP,
          "fd %d: a plaintext HTTP/2 (grpc://) client on this TLS "
          "listener; it must connect with grpcs://",
          c->fd);
  return 1;
}

ssize_t rpc__tls_recv(rpc_conn *c, uint8_t *buf, size_t n) {
  size_t got = 0;

  if (!c->tls_peeked) {
    c->tls_peeked = 1;
    if (plaintext_client(c))
      return RPC__IO_FATAL;
  }
  c->tls_write_wants_read = 0;
  /* SSL_read returns one record (<= 16 KiB) at a time: gather several so
   * nghttp2 sees as much per call as on a plaintext connection. An error
   * after some bytes is reported by the next call. */
  while (got < n) {
    size_t want = n - got > INT32_MAX ? INT32_MAX : n - got;
    int r;

    ERR_clear_error();
    errno = 0;
    r = SSL_read(c->ssl, buf + got, (int)want);
    if (r <= 0) {
      ssize_t f = tls_fail(c, r, 1);
      return got > 0 ? (ssize_t)got : f;
    }
    got += (size_t)r;
  }
  return (ssize_t)got;
}

int rpc__tls_send(rpc_conn *c) {
  /* The read side drives the handshake, so that it sees the client's first
   * bytes before OpenSSL does (plaintext_client). */
  if (!SSL_is_init_finished(c->ssl)) {
    c->tls_write_wants_read = 1;
    return 0;
  }
  while (evbuffer_get_length(c->out) > 0) {
    struct evbuffer_iovec v;
    size_t len;
    int r;

    if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1)
      break;
    /* After WANT_WRITE OpenSSL wants the same length offered again. */
    len = c->tls_wlen ? c->tls_wlen
                      : (v.iov_len > TLS_WRITE_MAX ? TLS_WRITE_MAX : v.iov_len);
    if (len > v.iov_len)
      len = v.iov_len;
    ERR_clear_error();
    errno = 0;
    r = SSL_write(c->ssl, v.iov_base, (int)len);
    if (r <= 0) {
      ssize_t f = tls_fail(c, r, 0);
      if (f == RPC__IO_AGAIN) {
        c->tls_wlen = len;
        return 0;
      }
      return RPC__IO_FATAL;
    }
    c->tls_wlen = 0;
    evbuffer_drain(c->out, (size_t)r);
  }
  return 0;
}

int rpc__tls_pending(const rpc_conn *c) {
  return c->ssl && SSL_pending(c->ssl) > 0;
}

/* ---- bearer tokens ---- */

static void token_hash(const char *tok, size_t len, unsigned char out[32]) {
  unsigned int n = 32;
  EVP_Digest(tok, len, out, &n, EVP_sha256(), NULL);
}

/* Digests of tokens (NULL-terminated, at least one, none empty) into
 * *out (malloc'd) and *n. 0, DB_EINVAL or DB_ENOMEM. */
static int auth_digests(const char *const *tokens, unsigned char (**out)[32],
                        size_t *n) {
  unsigned char(*d)[32] = NULL;
  size_t k = 0, i;

  *out = NULL;
  *n = 0;
  while (tokens[k])
    k++;
  if (k == 0)
    return DB_EINVAL;
  d = calloc(k, sizeof(*d));
  if (!d)
    return DB_ENOMEM;
  /* Only digests are kept, and compared in constant time: neither a core
   * dump nor response timing gives a token away. */
  for (i = 0; i < k; i++) {
    if (!tokens[i][0]) {
      free(d);
      return DB_EINVAL;
    }
    token_hash(tokens[i], strlen(tokens[i]), d[i]);
  }
  *out = d;
  *n = k;
  return 0;
}

int rpc__security_apply(rpc_server *srv, const rpc_server_opts *o,
                        int initial) {
  SSL_CTX *ctx = NULL;
  unsigned char(*auth)[32] = NULL;
  size_t nauth = 0;
  int rv = DB_EINVAL;

  if (!o->tls_cert_file && (o->tls_key_file || o->tls_client_ca_file)) {
    DB_ERROR(LOG_COMP, "a TLS key or client CA needs a TLS certificate too");
    goto out;
  }
  if (!initial && !o->tls_cert_file != !srv->tls) {
    /* Clients were told grpc:// or grpcs://; that is not ours to change. */
    DB_ERROR(LOG_COMP, "TLS cannot be switched %s while serving",
             srv->tls ? "off" : "on");
    goto out;
  }
  if (o->tls_cert_file && (rv = rpc__tls_ctx_new(o, &ctx)) != 0)
    goto out;
  if (o->auth_tokens && (rv = auth_digests(o->auth_tokens, &auth, &nauth)))
    goto out;
  /* Connections already open keep their SSL, which holds its own
   * reference to the old context; new ones get the new one. */
  SSL_CTX_free(srv->tls);
  srv->tls = ctx;
  ctx = NULL;
  free(srv->auth);
  srv->auth = auth;
  srv->nauth = nauth;
  auth = NULL;
  rv = 0;
out:
  SSL_CTX_free(ctx);
  free(auth);
  return rv;
}

int rpc_server_reload_security(rpc_server *srv, const rpc_server_opts *opts) {
  if (!srv || !opts)
    return DB_EINVAL;
  return rpc__security_apply(srv, opts, 0);
}

const char *rpc__auth_check(const rpc_server *srv, const char *authz) {
  unsigned char h[32];
  size_t i;
  int ok = 0;

  if (!authz)
    return "missing credentials: send \"authorization: Bearer <token>\"";
  if (strncasecmp(authz, "Bearer ", 7) != 0)
    return "unsupported authorization scheme: expected \"Bearer <token>\"";
  authz += 7;
  while (*authz == ' ')
    authz++;
  token_hash(authz, strlen(authz), h);
  for (i = 0; i < srv->nauth; i++)
    ok |= CRYPTO_memcmp(h, srv->auth[i], sizeof(h)) == 0;
  return ok ? NULL : "invalid bearer token";
}
