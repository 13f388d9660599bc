/*
 * Internals shared by rpc_server.c (connections, nghttp2 session
 * callbacks, shutdown), rpc_server_listen.c (listeners, accept, post
 * queue) and rpc_server_call.c (call object, request metadata, message
 * reassembly, response queue and data provider).
 * Not installed; only the three translation units above include it.
 *
 * Object graph (all on the loop thread):
 *   rpc_server 1--n rpc_conn 1--n rpc_call
 * An rpc_call lives from the request HEADERS until nghttp2 closes the
 * stream (on_stream_close) or the connection is torn down; both paths end
 * in rpc__call_destroy(), which runs the handler's on_close first. Nothing
 * frees a call synchronously from inside a handler callback: rpc_call_*
 * functions only submit frames and schedule a flush, and frames leave (and
 * streams close) later, from rpc__conn_flush() or the read path.
 */
#ifndef RPC_SERVER_INT_H
#define RPC_SERVER_INT_H

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_server.h"

struct event;
struct evbuffer;
struct ssl_st;
struct ssl_ctx_st;

#define RPC__METHOD_BUCKETS 64
/* Stop pulling frames out of nghttp2 once this much is waiting for the
 * socket; reading also pauses above it (a peer that does not read). */
#define RPC__OUT_HIGH_WATER (1024 * 1024)
/* Request metadata limit (name + value + 32 per field, as HTTP/2 counts). */
#define RPC__MAX_HEADER_LIST 16384

typedef struct rpc__method_ent {
  rpc_method m;
  uint32_t hash;
  struct rpc__method_ent *next;
} rpc__method_ent;

typedef struct rpc__hdr {
  struct rpc__hdr *next;
  char *name;  /* points into the same allocation */
  char *value; /* NUL-terminated */
} rpc__hdr;

typedef struct rpc_conn rpc_conn;

struct rpc_call {
  rpc_conn *conn;
  int32_t stream_id;
  const rpc__method_ent *method; /* NULL until dispatched / unknown path */
  rpc_call *prev, *next;         /* conn->calls */
  rpc_call *wnext;               /* conn->writable list */
  void *data;

  /* request */
  char *path;
  rpc__hdr *hdrs;
  size_t hdr_bytes;
  char *content_type; /* borrowed from hdrs */
  char *method_str;   /* borrowed from hdrs (":method") */
  char *encoding;     /* borrowed from hdrs ("grpc-encoding") */
  int64_t deadline;
  struct event *deadline_ev;
  struct event *rst_ev;  /* delayed RST_STREAM(NO_ERROR) after early end */
  struct event *hold_ev; /* releases a held client-streaming response */
  uint32_t nmsgs;

  /* reassembly of one length-prefixed message */
  uint8_t prefix[5];
  size_t prefix_have;
  size_t msg_len;  /* valid once prefix_have == 5 */
  size_t msg_have; /* bytes of the body in rbuf */
  uint8_t *rbuf;
  size_t rbuf_cap;
  size_t held_len; /* unary request waiting for the half-close */

  /* response */
  struct evbuffer *sendq; /* framed messages not yet in a DATA frame */
  int status;
  char *status_msg;     /* percent-encoded, or NULL */
  char *status_details; /* base64, or NULL */
  const char *accept_encoding;

  unsigned dispatched : 1;      /* method resolved; on_close owed */
  unsigned headers_sent : 1;    /* response HEADERS submitted */
  unsigned finished : 1;        /* status decided (trailers pending) */
  unsigned end_sent : 1;        /* END_STREAM from us hit the wire */
  unsigned remote_closed : 1;   /* client half-closed */
  unsigned rst_sent : 1;        /* RST_STREAM(NO_ERROR) after early end */
  unsigned released : 1;        /* early response let go before half-close */
  unsigned closed : 1;          /* on_close ran or is running */
  unsigned deferred : 1;        /* data provider returned DEFERRED */
  unsigned deadline_hit : 1;    /* its deadline passed (ended or reset) */
  unsigned want_writable : 1;   /* a send happened since on_writable */
  unsigned writable_queued : 1; /* on conn->writable list */
  unsigned discard : 1;         /* drop further request bytes */
  unsigned held : 1;            /* rbuf holds the unary request */
};

struct rpc_conn {
  rpc_server *srv;
  rpc_conn *prev, *next;
  int fd;
  nghttp2_session *session;
  struct event *rev, *wev, *flush_ev;
  struct evbuffer *out;
  rpc_call *calls;
  rpc_call *writable, *writable_tail;
  struct ssl_st *ssl;                /* NULL on a plaintext (h2c) server */
  size_t tls_wlen;                   /* length of an SSL_write to offer again */
  unsigned tls_read_wants_write : 1; /* SSL_read waits for writability */
  unsigned tls_write_wants_read : 1; /* SSL_write waits for readability */
  unsigned tls_peeked : 1;           /* first bytes checked for h2c */
  unsigned wev_armed : 1;
  unsigned reading_paused : 1;
  unsigned in_recv : 1;
  unsigned goaway_final : 1;
};

typedef struct rpc__post {
  struct rpc__post *next;
  void (*fn)(void *);
  void *arg;
} rpc__post;

typedef struct rpc__listener {
  int fd;
  int port;
  struct event *ev;
} rpc__listener;

struct rpc_server {
  struct event_base *base;
  rpc_server_opts opts;
  rpc__method_ent *methods[RPC__METHOD_BUCKETS];
  rpc__listener *listeners;
  size_t nlisteners;
  rpc_conn *conns;
  size_t nconns;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *h2opt;
  uint8_t *rbuf;
  size_t rbuf_size;
  struct ssl_ctx_st *tls;    /* every connection speaks TLS when set */
  unsigned char (*auth)[32]; /* SHA-256 of each accepted bearer token */
  size_t nauth;              /* 0 = no authorization required */

  /* shutdown */
  int shutting_down;
  void (*done)(void *);
  void *done_arg;
  struct event *goaway_ev; /* notice -> final GOAWAY */
  struct event *grace_ev;  /* final GOAWAY -> cancel the rest */
  struct event *done_ev;   /* runs done() from the loop */

  /* rpc_server_post */
  pthread_mutex_t post_mu;
  rpc__post *post_head, *post_tail;
  int post_fd; /* eventfd */
  struct event *post_ev;
};

/* ---- rpc_server.c ---- */

/* Lookup by exact path; NULL if not registered. */
const rpc__method_ent *rpc__server_find(const rpc_server *srv, const char *path,
                                        size_t len);
/* Ask for nghttp2_session_send() + socket write soon (from any loop-thread
 * context, including handler callbacks inside nghttp2 callbacks). */
void rpc__conn_schedule_flush(rpc_conn *c);
/* Set up a connection on an accepted nonblocking socket (takes fd, also
 * on failure). 0, or DB_ENOMEM. */
int rpc__conn_new(rpc_server *srv, int fd);

/* ---- rpc_server_listen.c ---- */

/* Stop accepting: free the listener events and close their sockets. */
void rpc__server_close_listeners(rpc_server *srv);
/* The post queue's eventfd and its event (post_mu is set up by the caller).
 * 0, DB_ESYS or DB_ENOMEM; rpc__server_post_fini() undoes a partial one. */
int rpc__server_post_init(rpc_server *srv);
/* Drop posts that never ran (not called), free the event, close the fd. */
void rpc__server_post_fini(rpc_server *srv);

/* ---- rpc_server_tls.c ---- */

/* Results of the connection I/O primitives besides a byte count. */
#define RPC__IO_EOF 0
#define RPC__IO_AGAIN (-1)
#define RPC__IO_FATAL (-2)

/* Server TLS context from opts' certificate, key and client CA (logs why
 * it cannot). *out is freed with rpc__tls_ctx_free. 0, DB_EINVAL (files
 * unusable) or DB_ENOMEM. */
int rpc__tls_ctx_new(const rpc_server_opts *o, struct ssl_ctx_st **out);
void rpc__tls_ctx_free(struct ssl_ctx_st *ctx); /* NULL ok */
/* TLS state for a new connection (server side of the handshake). 0 or
 * DB_ENOMEM; rpc__tls_conn_free cleans up either way. */
int rpc__tls_conn_start(rpc_conn *c);
void rpc__tls_conn_free(rpc_conn *c);
/* Decrypted bytes into buf: > 0, or RPC__IO_EOF / _AGAIN / _FATAL. */
ssize_t rpc__tls_recv(rpc_conn *c, uint8_t *buf, size_t n);
/* Encrypt and send as much of c->out as the socket takes: 0 (maybe with
 * bytes left; see tls_* flags) or RPC__IO_FATAL. */
int rpc__tls_send(rpc_conn *c);
/* Decrypted bytes buffered inside OpenSSL, which poll cannot see. */
int rpc__tls_pending(const rpc_conn *c);
/* Build the TLS context and token digests o asks for and put them in
 * place of srv's (all or nothing; the reason is logged). After start-up
 * (initial 0), TLS cannot be turned on or off. 0, DB_EINVAL, DB_ENOMEM. */
int rpc__security_apply(rpc_server *srv, const rpc_server_opts *o, int initial);
/* NULL when authz (the request's "authorization" value, may be NULL)
 * carries an accepted bearer token, else why not (static text). */
const char *rpc__auth_check(const rpc_server *srv, const char *authz);

/* ---- rpc_server_call.c ---- */

/* New call for stream_id, linked into c->calls. NULL on OOM. */
rpc_call *rpc__call_new(rpc_conn *c, int32_t stream_id);
/* Run on_close (once, if dispatched) with the final code, unlink, free. */
void rpc__call_destroy(rpc_call *call);
/* One request header field; returns 0 or an nghttp2 error code for the
 * callback to return. */
int rpc__call_on_header(rpc_call *call, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen);
/* Request headers complete: validate, resolve the method, arm deadline. */
void rpc__call_on_request(rpc_call *call);
/* A chunk of DATA payload. Credits flow control for it before return. */
void rpc__call_on_data(rpc_call *call, const uint8_t *data, size_t len);
/* The client sent END_STREAM. */
void rpc__call_on_half_close(rpc_call *call);
/* A frame with END_STREAM left for this stream (trailers or
 * trailers-only). */
void rpc__call_on_end_sent(rpc_call *call);
/* Fail the call from the server side (trailers-only if possible). */
void rpc__call_fail(rpc_call *call, int code, const char *msg);
/* Run on_writable for calls that asked for it (outside nghttp2). */
void rpc__conn_run_writables(rpc_conn *c);
/* nghttp2 callbacks for the response body (NO_COPY path). */
ssize_t rpc__call_data_read(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *flags,
                            nghttp2_data_source *source, void *user_data);
int rpc__call_send_data(nghttp2_session *session, nghttp2_frame *frame,
                        const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *user_data);

#endif
