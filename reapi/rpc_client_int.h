/*
 * Internals shared by rpc_client.c (client handle, connection state,
 * dispatch and start queue, run loop, public API) and rpc_client_call.c
 * (one call: easy-handle setup, request framing, response reassembly,
 * header/trailer parsing, status mapping). Not installed; only the two
 * translation units above include it. See rpc_client.c for the design.
 */
#ifndef RPC_CLIENT_INT_H
#define RPC_CLIENT_INT_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_client.h"

#define RPC_LOG "rpc_client"

enum {
  S_QUEUED = 1 << 0,  /* in the start queue, not yet handed to curl */
  S_ADDED = 1 << 1,   /* easy handle is in the multi handle */
  S_CANCEL = 1 << 2,  /* cancel requested, not yet finished */
  S_STREAM = 1 << 3,  /* client streaming: body comes from produce() */
  S_EOS = 1 << 4,     /* producer reported the end of the stream */
  S_PK = 1 << 5,      /* may open the connection (h2c: prior knowledge) */
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
  uint64_t seq;      /* start order, for failing queued calls */
  int64_t deadline;  /* rpc_now_ms() based; 0 = none */
  int64_t idle_ms;   /* no byte moved this long: not responding; 0 = off */
  int64_t last_io;   /* rpc_now_ms() of the call's last byte either way */
  uint64_t conn_gen; /* c->conn_gen of the connection it went out on */
  size_t nproduced;  /* messages taken from produce() */

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
  char *base_url; /* "http://host:port", or "https://..." with tls */
  size_t base_len;
  int tls;      /* grpcs://: HTTP/2 by ALPN over TLS */
  char *tls_ca; /* PEM files for curl (NULL = curl's default) */
  char *tls_cert;
  char *tls_key;
  size_t max_msg;
  long connect_ms;
  int64_t idle_ms;    /* default idle timeout of new calls; 0 = off */
  int64_t last_drive; /* rpc_now_ms() of the last drive() */
  struct curl_slist *hdrs;
  struct rpc_stream *active; /* started and not finished, doubly linked */
  struct rpc_stream *qhead, *qtail; /* start queue */
  struct rpc_stream *free_list;
  int nfree;
  int pending;
  int ncancel;       /* streams with S_CANCEL not yet finished */
  int conn;          /* CONN_* */
  uint64_t conn_gen; /* connections opened so far (TLS diagnosis) */
  uint64_t answered; /* conn_gen of the last one that sent a response */
  int fd;            /* the connection's socket, -1 if none */
  uint64_t seq;      /* last start sequence number */
  uint64_t fail_seq; /* fail queued calls up to this seq with fail_st */
  rpc_status fail_st;
  int in_perform; /* inside curl_multi_perform (curl callbacks) */
  int closing;
};

/* ---- rpc_client_target.c ---- */

/* "HOST:PORT", "grpc://HOST:PORT" or "grpcs://HOST[:PORT]": *url the base
 * URL (malloc'd), *tls 1 for grpcs. 0, DB_EINVAL or DB_ENOMEM. */
int rpc_client__parse_target(const char *target, char **url, int *tls);
/* Copy ch's TLS files (for a TLS client) and add its headers (ch may be
 * NULL). 0, DB_EINVAL (a bad header entry) or DB_ENOMEM. */
int rpc_client__apply_channel(rpc_client *c, const rpc_channel_opts *ch);

/* ---- rpc_client_call.c ---- */

/* Move src into dst (clearing dst first); src is left empty (RPC_OK). */
void rpc_client__status_move(rpc_status *dst, rpc_status *src);
/* Record a local status for the call; the first local reason wins. */
void rpc_client__set_local(struct rpc_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The call's final status from its local status, the server's
 * headers/trailers and curl's result (consumes s->st and s->local). */
void rpc_client__resolve_status(struct rpc_stream *s, CURLcode rc,
                                rpc_status *out);
/* New stream with its easy handle and the constant options set. */
struct rpc_stream *rpc_client__stream_create(rpc_client *c);
void rpc_client__stream_destroy(struct rpc_stream *s);
/* Clear per-call state; keeps the easy handle and a small receive buffer. */
void rpc_client__stream_reset(struct rpc_stream *s);

#endif
