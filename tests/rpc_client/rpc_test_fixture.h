/*
 * Shared by the rpc_client tests (rpc_client_test.c, rpc_client_fail_test.c):
 * the independent gRPC server they run against (Debian's python3-grpcio,
 * echo_server.py), helpers, and the one-case-per-process runner.
 */
#ifndef RPC_TEST_FIXTURE_H
#define RPC_TEST_FIXTURE_H

#include <stdint.h>
#include <stdio.h>

#include "rpc_client.h"

/* Checks that failed so far; the runner turns it into the exit code. */
extern int rpct_failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      rpct_failures++;                                                         \
    }                                                                          \
  } while (0)

#define CHECK_CODE(st, want)                                                   \
  do {                                                                         \
    if ((st)->code != (want)) {                                                \
      fprintf(stderr, "%s:%d: status %s (%s), want %s\n", __FILE__, __LINE__,  \
              rpc_code_name((st)->code), (st)->message ? (st)->message : "",   \
              rpc_code_name(want));                                            \
      rpct_failures++;                                                         \
    }                                                                          \
  } while (0)

/* Start echo_server.py on port (0 = any); returns its port or exits 2. */
int rpct_server_start(int port);
/* Send it a signal (SIGSTOP freezes it with its connections open);
 * 0 or -1. */
int rpct_server_signal(int sig);
/* Kill and reap it (no-op when not running). */
void rpct_server_stop(void);
/* A client for 127.0.0.1:port (owned by the caller) or exit 2. */
rpc_client *rpct_client_for(int port, const rpc_client_opts *o);
int64_t rpct_now_ms(void);
/* This process's established TCP connections to port. */
int rpct_count_connections(int port);
/* This process's resident set in KiB, or -1. */
long rpct_rss_kib(void);
void rpct_put32(uint8_t *p, uint32_t v);
uint32_t rpct_get32(const uint8_t *p);
uint64_t rpct_get64(const uint8_t *p);
/* rpc_stream done callback: ctx is an int array; counts n[10 + code]. */
void rpct_count_done(void *ctx, const rpc_status *st);

typedef struct rpct_case {
  const char *name;
  void (*fn)(void);
} rpct_case;

/* main(): argv is CASE echo_server.py; runs the named case of cases[n]
 * with the server script set, and returns the process exit code. */
int rpct_main(int argc, char **argv, const rpct_case *cases, size_t n);

#endif
