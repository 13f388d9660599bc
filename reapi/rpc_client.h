/*
 * gRPC client over HTTP/2 on libcurl's multi interface: cleartext with
 * prior knowledge for "grpc://" (and bare "HOST:PORT") targets, TLS with
 * HTTP/2 chosen by ALPN for "grpcs://" targets. All calls started on one
 * rpc_client share one connection (multiplexed streams); when the server
 * restarts, the next call opens a new connection on its own.
 *
 * TLS: the server's certificate is always verified (against the system's
 * CA store or rpc_channel_opts.tls_ca_file) and must name the target's
 * host; a client certificate is presented when one is configured (mutual
 * TLS). A server that does not pick "h2" in ALPN fails the call.
 *
 * Threading: an rpc_client is not thread-safe; use one per thread. The
 * callbacks run inside rpc_client_run()/rpc_client_unary() on the caller's
 * thread.
 *
 * Status: a call's outcome is an rpc_status. Transport failures are mapped
 * as gRPC prescribes: connection refused/reset -> UNAVAILABLE, deadline ->
 * DEADLINE_EXCEEDED, a response without grpc-status -> a synthesized status
 * from the HTTP status (UNKNOWN/INTERNAL/UNAVAILABLE), RST_STREAM codes as in
 * the gRPC HTTP/2 spec. TLS failures (handshake, certificate verification,
 * unusable certificate or key files, no HTTP/2 in ALPN) are UNAVAILABLE
 * with a message that starts with RPC_TLS_PREFIX and carries curl's
 * reason, e.g. "TLS: SSL certificate problem: self-signed certificate".
 *
 * Errors: functions return 0 or a negative DB_E* code (for local failures
 * such as OOM); the remote outcome is always in the rpc_status.
 */
#ifndef RPC_CLIENT_H
#define RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"

typedef struct rpc_client rpc_client;
typedef struct rpc_stream rpc_stream;

/* Start of the status message of a call that hit its idle timeout. */
#define RPC_NOT_RESPONDING "server not responding"
/* Start of the status message of a call that failed in TLS. */
#define RPC_TLS_PREFIX "TLS: "

/* How to reach a server beyond its address; every field may be NULL.
 * Borrowed by the constructors, which copy what they keep. */
typedef struct rpc_channel_opts {
  const char *tls_ca_file;    /* grpcs://: PEM CA bundle that verifies the
                                 server; NULL = the system's CA store */
  const char *tls_cert_file;  /* client certificate (PEM) for mutual TLS */
  const char *tls_key_file;   /* its private key (PEM); NULL = in the
                                 certificate file */
  const char *const *headers; /* NULL-terminated list of "name=value"
                                 metadata sent on every call */
} rpc_channel_opts;

typedef struct rpc_client_opts {
  size_t max_message_size; /* largest response message accepted; 0=64 MiB */
  int connect_timeout_ms;  /* 0 = 5000 */
  /* A call that moves no byte in either direction for this long fails
   * UNAVAILABLE ("server not responding"): a frozen or cut-off server is
   * noticed long before the call's deadline (checked about once a second
   * while the client is driven). 0 = off. Calls that may legitimately
   * stay silent (a server stream waiting for an event) opt out with
   * rpc_stream_set_idle_timeout(). */
  int idle_timeout_ms;
  /* TLS material and metadata (borrowed; NULL = plain defaults). The TLS
   * files are used by "grpcs://" targets only; headers by every target. */
  const rpc_channel_opts *channel;
} rpc_client_opts;

/* Initialise libcurl (and OpenSSL under it) for the life of the process,
 * before any thread or fork: a process that forks a child per call (the
 * wrapper's client server) pays OpenSSL's start-up once, not per child.
 * Optional; rpc_client_new initialises on demand otherwise. 0 or
 * DB_ENOMEM. */
int rpc_client_global_init(void);

/* target: "HOST:PORT", "grpc://HOST:PORT" (cleartext) or
 * "grpcs://HOST[:PORT]" (TLS; port 443 by default), copied. opts may be
 * NULL. *out owned by caller: rpc_client_free(). DB_EINVAL for a bad
 * target or a bad opts->channel->headers entry (see
 * rpc_client_header_parse). */
int rpc_client_new(const char *target, const rpc_client_opts *opts,
                   rpc_client **out);
void rpc_client_free(rpc_client *c); /* cancels running calls; NULL ok */

/* Add a metadata header to every later call ("name", "value", both
 * copied). For -bin names pass the raw bytes' base64 yourself (see
 * rpc_b64_encode). DB_EINVAL for a name rpc_client_header_parse would
 * reject, or a value with bytes outside 0x20..0x7e. */
int rpc_client_set_header(rpc_client *c, const char *name, const char *value);

/* Split one metadata entry "name=value" (Bazel's --remote_header) at its
 * first '=' into *name, lowercased, and *value (both malloc'd, caller
 * frees; NULL on failure). DB_EINVAL when the name is empty, has a
 * character outside [a-z0-9-_.], starts with "grpc-" or ':', or is one
 * the transport sets itself (content-type, te, host, connection, ...), or
 * when the value has a byte outside 0x20..0x7e; DB_ENOMEM. */
int rpc_client_header_parse(const char *entry, char **name, char **value);

/*
 * Callbacks of one call. ctx is passed through untouched.
 *  on_message: one whole response message (valid during the callback).
 *              Return 0 to go on, non-zero to cancel the call (its status
 *              becomes CANCELLED unless the callback set one later).
 *  produce:    client-streaming only: fill *msg and *len with the next request
 *              message (malloc'd; ownership passes to the client) and
 *              return 1; return 0 at end of stream; negative to abort the
 *              call. Called only when the transport wants more data, so a
 *              1 GiB upload is never in memory at once.
 *  on_done:    exactly once, with the final status (borrowed for the
 *              callback). After it the rpc_stream handle is invalid.
 */
typedef struct rpc_stream_cbs {
  int (*on_message)(void *ctx, const uint8_t *msg, size_t len);
  int (*produce)(void *ctx, uint8_t **msg, size_t *len);
  void (*on_done)(void *ctx, const rpc_status *st);
} rpc_stream_cbs;

/*
 * Start a call. For unary and server-streaming calls pass the single
 * request in req/len (copied) and a NULL produce; for client-streaming
 * pass req NULL and a produce callback. timeout_ms > 0 sets grpc-timeout
 * and a local deadline; 0 means none. *out (may be NULL) is valid until
 * on_done runs. Nothing is sent until rpc_client_run*() is called.
 */
int rpc_client_start(rpc_client *c, const char *path, const uint8_t *req,
                     size_t len, int64_t timeout_ms, const rpc_stream_cbs *cbs,
                     void *ctx, rpc_stream **out);

/* Override the client's idle timeout for one call (ms, 0 = none). Only
 * before the first rpc_client_run*() after rpc_client_start(). */
void rpc_stream_set_idle_timeout(rpc_stream *s, int64_t ms);

/* Cancel a running call: RST_STREAM(CANCEL); on_done gets CANCELLED. */
void rpc_stream_cancel(rpc_stream *s);

/* Drive all started calls until none is left, or until wait_ms passes
 * (wait_ms < 0: no limit). Returns the number still running (0 = all
 * done) or a negative DB_E* code. */
int rpc_client_run(rpc_client *c, int wait_ms);

/* Number of calls started and not yet done. */
int rpc_client_pending(const rpc_client *c);

/*
 * Blocking unary call: runs only this call to completion (other started
 * calls make progress too). On OK, *resp (malloc'd, caller frees; may be
 * NULL for an empty message) and *resp_len hold the response. st receives
 * the status (caller clears it). Returns 0, or DB_E* for local failure.
 */
int rpc_client_unary(rpc_client *c, const char *path, const uint8_t *req,
                     size_t len, int64_t timeout_ms, uint8_t **resp,
                     size_t *resp_len, rpc_status *st);

#endif
