/*
 * Helpers shared by the cas_client tests and the cas_bench benchmark:
 * run the real `cargo-distbuild cas run` server on a free port in a temp
 * directory, and generate deterministic test data.
 */
#ifndef CAS_TEST_UTIL_H
#define CAS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct cas_test_server {
  pid_t pid;
  int port;
  char target[64]; /* "127.0.0.1:PORT" */
  char root[256];  /* store root (inside the temp dir) */
} cas_test_server;

/* Start `bin cas run --listen 127.0.0.1:0 --root DIR/store --port-file ..`
 * and wait (<= 10 s) until it reports its port. 0 or -1. */
int cas_test_server_start(const char *bin, const char *dir, cas_test_server *s);
void cas_test_server_stop(cas_test_server *s);

/* mkdtemp under $TMPDIR or /tmp; *out malloc'd. */
char *cas_test_mkdtemp(const char *tag);
/* rm -rf path (best effort). */
void cas_test_rmrf(const char *path);

/* Deterministic data: xorshift random bytes, or source-code-like text
 * (compresses ~4-6x with zstd -1). */
void cas_test_fill_random(uint8_t *p, size_t n, uint64_t seed);
void cas_test_fill_text(uint8_t *p, size_t n, uint64_t seed);

/* Write a file; 0 or -1. */
int cas_test_write(const char *path, const void *p, size_t n);
/* Read a whole file (malloc'd); 0 or -1. */
int cas_test_read(const char *path, uint8_t **p, size_t *n);

double cas_test_now(void); /* seconds, monotonic */

#endif
