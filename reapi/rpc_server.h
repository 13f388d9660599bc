/*
 * gRPC server over HTTP/2 cleartext (h2c with prior knowledge), built on
 * nghttp2 and a libevent event_base owned by the caller.
 *
 * Threading: every function here, and every callback, runs on the thread
 * that runs the event_base ("the loop thread"), except rpc_server_post(),
 * which may be called from any thread to hand work back to the loop.
 *
 * Framing: requests are reassembled from DATA frames into whole
 * length-prefixed messages before on_message is called. A message larger
 * than max_message_size fails the call with RESOURCE_EXHAUSTED. Flow
 * control credit is returned only after on_message returns, so a slow
 * handler (or a 1 GiB upload) never makes the server buffer more than about
 * one window plus one message per stream.
 *
 * Errors: functions return 0 or a negative DB_E* code.
 */
#ifndef RPC_SERVER_H
#define RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"

struct event_base;

typedef struct rpc_server rpc_server;
typedef struct rpc_call rpc_call;

typedef enum rpc_kind {
  RPC_KIND_UNARY = 0,
  RPC_KIND_SERVER_STREAMING = 1,
  RPC_KIND_CLIENT_STREAMING = 2,
} rpc_kind;

/*
 * One method. The server copies the struct (not the strings: path must
 * outlive the server, typically a string literal).
 *
 * Lifecycle of a call:
 *   on_message   - once per request message. Unary and server-streaming
 *                  methods get exactly one; a second one, or none before
 *                  the half-close, fails the call with UNIMPLEMENTED /
 *                  INTERNAL as gRPC prescribes. msg is valid only during the
 *                  callback. For unary and server-streaming methods the
 *                  message is delivered once the client half-closed (so a
 *                  second message is rejected before the handler runs).
 *   on_half_close- client-streaming only: the client sent END_STREAM. The
 *                  handler must eventually call rpc_call_finish().
 *   on_writable  - optional: the queued response bytes dropped below the
 *                  low-water mark (see rpc_call_queued_bytes); a streaming
 *                  handler produces its next messages here instead of
 *                  queueing a whole 1 GiB blob. Armed by rpc_call_send;
 *                  if the handler queued nothing it is called again as
 *                  the queue drains further (so it may be spurious).
 *   on_close     - always called exactly once, last, when the stream is
 *                  gone (finished, cancelled by RST_STREAM, deadline passed,
 *                  connection lost, server freed). code is the status sent
 *                  or RPC_CANCELLED / RPC_DEADLINE_EXCEEDED (the latter
 *                  when the server's own grpc-timeout timer fired; a
 *                  client that resets at its deadline gives CANCELLED).
 *                  Called for every call routed to the method, also when
 *                  on_message never ran (rpc_call_data() is NULL then).
 *                  Free per-call state here; the rpc_call pointer is
 *                  invalid afterwards.
 * Handlers may call rpc_call_finish() from any callback (or later, e.g.
 * from a function passed to rpc_server_post), at most once.
 */
typedef struct rpc_method {
  const char *path; /* "/package.Service/Method" */
  rpc_kind kind;
  void (*on_message)(rpc_call *call, const uint8_t *msg, size_t len);
  void (*on_half_close)(rpc_call *call);
  void (*on_writable)(rpc_call *call);
  void (*on_close)(rpc_call *call, int code);
  void *method_data; /* borrowed; returned by rpc_call_method_data() */
} rpc_method;

typedef struct rpc_server_opts {
  size_t max_message_size; /* 0 = default 64 MiB */
  uint32_t stream_window;  /* per-stream receive window; 0 = 1 MiB */
  uint32_t max_concurrent; /* SETTINGS_MAX_CONCURRENT_STREAMS; 0 = 1000 */
  size_t write_low_water;  /* on_writable threshold; 0 = 1 MiB */
  int shutdown_grace_ms;   /* in-flight calls get this long after GOAWAY;
                              0 = 5000 */
  /* TLS (grpcs://): with a certificate set, every listener speaks only
   * TLS 1.2+ with ALPN "h2"; a client that does not is refused in the
   * handshake. Files are read by rpc_server_new (PEM). */
  const char *tls_cert_file;      /* certificate chain, leaf first */
  const char *tls_key_file;       /* private key; NULL = in the cert file */
  const char *tls_client_ca_file; /* set: mutual TLS, clients must present
                                     a certificate this CA signed */
  /* NULL-terminated list of accepted bearer tokens; when set, a call
   * without "authorization: Bearer <one of them>" ends UNAUTHENTICATED
   * before any handler sees it. Only their SHA-256 digests are kept. */
  const char *const *auth_tokens;
} rpc_server_opts;

/* Create a server on base (borrowed; must outlive the server). opts may be
 * NULL for defaults; its strings are used during the call only. *out is
 * owned by the caller: rpc_server_free(). DB_EINVAL when the TLS files
 * cannot be used (the reason is logged) or a token is empty. */
int rpc_server_new(struct event_base *base, const rpc_server_opts *opts,
                   rpc_server **out);

/* Replace the TLS certificate, key, client CA and accepted tokens with
 * opts' (the other fields are ignored), e.g. on SIGHUP: certificate or
 * token rotation without a restart. New connections and calls see the new
 * settings; open TLS connections keep their session. All or nothing: on
 * failure the old settings stay and the reason is logged. TLS cannot be
 * turned on or off (DB_EINVAL). Loop thread only. 0, DB_EINVAL, DB_ENOMEM. */
int rpc_server_reload_security(rpc_server *srv, const rpc_server_opts *opts);

/* Register a method (copied). Unknown paths answer UNIMPLEMENTED.
 * DB_EEXIST if path is already registered. */
int rpc_server_add_method(rpc_server *srv, const rpc_method *m);

/* Listen on "HOST:PORT" ("127.0.0.1:8981", "0.0.0.0:0", "[::1]:8980").
 * Port 0 picks a free port; read it back with rpc_server_port(). May be
 * called more than once for several listeners. */
int rpc_server_listen(rpc_server *srv, const char *host_port);
int rpc_server_port(const rpc_server *srv); /* first listener's port */

/* Graceful stop: close listeners, send GOAWAY on every connection, let
 * in-flight calls finish within the grace period, then cancel the rest.
 * When no connection is left, done(arg) runs on the loop (may be NULL). */
void rpc_server_shutdown(rpc_server *srv, void (*done)(void *), void *arg);

/* Immediate teardown: every open call gets on_close(RPC_CANCELLED).
 * Functions posted but not yet run are dropped. Not from inside a
 * handler callback (done() of rpc_server_shutdown is fine). NULL is a
 * no-op. */
void rpc_server_free(rpc_server *srv);

/* Thread-safe: run fn(arg) on the loop thread soon. DB_ENOMEM on failure.
 * Uses its own eventfd, so evthread_use_pthreads() is not required. */
int rpc_server_post(rpc_server *srv, void (*fn)(void *), void *arg);

/* ---- Per-call API (loop thread only) ---- */

void *rpc_call_method_data(const rpc_call *call);
void rpc_call_set_data(rpc_call *call, void *data); /* handler's state */
void *rpc_call_data(const rpc_call *call);
rpc_server *rpc_call_server(const rpc_call *call);

/* Request metadata by lower-case name ("requestmetadata-bin" style names
 * are returned raw, still base64). NULL when absent. Valid for the call's
 * life. Repeated fields come back joined with ','. */
const char *rpc_call_header(const rpc_call *call, const char *name);

/* Absolute deadline from grpc-timeout (rpc_now_ms() clock), 0 if none. The
 * server itself fails the call with DEADLINE_EXCEEDED when it passes. */
int64_t rpc_call_deadline(const rpc_call *call);

/* Queue one response message (copied, framed with the 5-byte prefix).
 * Response headers go out before the first message. DB_EINVAL after
 * finish, DB_ETOOBIG over max_message_size. */
int rpc_call_send(rpc_call *call, const uint8_t *msg, size_t len);

/* Bytes queued and not yet handed to the socket. */
size_t rpc_call_queued_bytes(const rpc_call *call);

/* Finish with a status. If no message was sent, a Trailers-Only response
 * goes out. message may be NULL; it is percent-encoded for you. If the
 * client has not half-closed, RST_STREAM(NO_ERROR) follows the trailers. */
int rpc_call_finish(rpc_call *call, int code, const char *message);

/* As rpc_call_finish, adding grpc-status-details-bin carrying a serialized
 * google.rpc.Status (borrowed; encoded as base64 internally). */
int rpc_call_finish_details(rpc_call *call, int code, const char *message,
                            const uint8_t *status_pb, size_t status_len);

/* 1 once the call finished or was cancelled (further sends are dropped). */
int rpc_call_is_closed(const rpc_call *call);

#endif
