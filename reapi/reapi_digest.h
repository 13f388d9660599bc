/*
 * REAPI digests: SHA-256 (through OpenSSL's libcrypto) plus size.
 */
#ifndef REAPI_DIGEST_H
#define REAPI_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define REAPI_HASH_HEX_LEN 64

/* A digest by value: lowercase hex hash, NUL-terminated, and the size. */
typedef struct reapi_digest {
  char hash[REAPI_HASH_HEX_LEN + 1];
  int64_t size;
} reapi_digest;

/* The digest of the empty blob (servers must behave as if it always
 * exists). */
extern const reapi_digest reapi_digest_empty;

/* Look SHA-256 up in OpenSSL now rather than at the first digest. The
 * digest functions do it themselves (once per process, thread-safe); a
 * server that forks a child per request calls this first so that every
 * child inherits the lookup instead of paying about 1 ms for it. */
void reapi_digest_init(void);

/* Digest of a buffer. data may be NULL when len is 0. */
void reapi_digest_of(const void *data, size_t len, reapi_digest *out);

/* Incremental hashing. The context is opaque; _new returns NULL on OOM.
 * _final writes the digest (size = bytes fed) and frees the context. */
typedef struct reapi_hasher reapi_hasher;
reapi_hasher *reapi_hasher_new(void);
void reapi_hasher_update(reapi_hasher *h, const void *data, size_t len);
void reapi_hasher_final(reapi_hasher *h, reapi_digest *out);
void reapi_hasher_free(reapi_hasher *h); /* discard without a result */

/* Validate and copy a (hash, size) pair, e.g. from a protobuf Digest.
 * hash must be 64 lowercase hex characters and size >= 0.
 * Returns 0 or DB_EINVAL. */
int reapi_digest_set(reapi_digest *out, const char *hash, int64_t size);

/* Parse "HASH/SIZE" (as in ByteStream resource names) from s, reading at
 * most len bytes. Returns 0 or DB_EINVAL. */
int reapi_digest_parse(const char *s, size_t len, reapi_digest *out);

/* Equality of hash and size. */
int reapi_digest_eq(const reapi_digest *a, const reapi_digest *b);

/* Format as "HASH/SIZE" into buf (at least REAPI_DIGEST_STR_MAX bytes). */
#define REAPI_DIGEST_STR_MAX (REAPI_HASH_HEX_LEN + 1 + 21)
char *reapi_digest_str(const reapi_digest *d, char *buf);

#endif
