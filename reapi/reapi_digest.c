#include "reapi_digest.h"

#include "db_err.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const reapi_digest reapi_digest_empty = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0};

struct reapi_hasher {
  EVP_MD_CTX *ctx;
  int64_t size;
};

/* OpenSSL 3 looks the algorithm up again on every use of EVP_sha256(): about
 * 180 ns more per small digest, and about 1 ms for a process's first one.
 * Fetched once and kept for the life of the process instead. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) {
  g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void) {
  (void)pthread_once(&g_sha256_once, fetch_sha256);
  return g_sha256 ? g_sha256 : EVP_sha256();
}

void reapi_digest_init(void) {
  (void)sha256();
}

static void hex_encode(const unsigned char *in, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[in[i] >> 4];
    out[2 * i + 1] = hex[in[i] & 15];
  }
  out[2 * n] = '\0';
}

void reapi_digest_of(const void *data, size_t len, reapi_digest *out) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  /* EVP_Digest is the one-shot path; it cannot fail for SHA-256 short of
   * OOM inside OpenSSL, in which case we leave a recognisably bad digest. */
  if (!EVP_Digest(data ? data : "", len, md, &mdlen, sha256(), NULL)) {
    memset(out->hash, '0', REAPI_HASH_HEX_LEN);
    out->hash[REAPI_HASH_HEX_LEN] = '\0';
    out->size = -1;
    return;
  }
  hex_encode(md, 32, out->hash);
  out->size = (int64_t)len;
}

reapi_hasher *reapi_hasher_new(void) {
  reapi_hasher *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  h->ctx = EVP_MD_CTX_new();
  if (!h->ctx || !EVP_DigestInit_ex(h->ctx, sha256(), NULL)) {
    reapi_hasher_free(h);
    return NULL;
  }
  return h;
}

void reapi_hasher_update(reapi_hasher *h, const void *data, size_t len) {
  if (len == 0)
    return;
  EVP_DigestUpdate(h->ctx, data, len);
  h->size += (int64_t)len;
}

void reapi_hasher_final(reapi_hasher *h, reapi_digest *out) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_DigestFinal_ex(h->ctx, md, &mdlen);
  hex_encode(md, 32, out->hash);
  out->size = h->size;
  reapi_hasher_free(h);
}

void reapi_hasher_free(reapi_hasher *h) {
  if (!h)
    return;
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

int reapi_digest_set(reapi_digest *out, const char *hash, int64_t size) {
  if (!hash || size < 0 || strlen(hash) != REAPI_HASH_HEX_LEN)
    return DB_EINVAL;
  for (int i = 0; i < REAPI_HASH_HEX_LEN; i++) {
    char c = hash[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return DB_EINVAL;
  }
  memcpy(out->hash, hash, REAPI_HASH_HEX_LEN + 1);
  out->size = size;
  return 0;
}

int reapi_digest_parse(const char *s, size_t len, reapi_digest *out) {
  char hash[REAPI_HASH_HEX_LEN + 1];
  int64_t size = 0;
  size_t i;

  if (len < REAPI_HASH_HEX_LEN + 2 || s[REAPI_HASH_HEX_LEN] != '/')
    return DB_EINVAL;
  memcpy(hash, s, REAPI_HASH_HEX_LEN);
  hash[REAPI_HASH_HEX_LEN] = '\0';
  /* Decimal size, no sign, no leading zeros beyond "0", no overflow. */
  for (i = REAPI_HASH_HEX_LEN + 1; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return DB_EINVAL;
    if (size > (INT64_MAX - (s[i] - '0')) / 10)
      return DB_EINVAL;
    size = size * 10 + (s[i] - '0');
  }
  if (len - (REAPI_HASH_HEX_LEN + 1) > 1 && s[REAPI_HASH_HEX_LEN + 1] == '0')
    return DB_EINVAL;
  return reapi_digest_set(out, hash, size);
}

int reapi_digest_eq(const reapi_digest *a, const reapi_digest *b) {
  return a->size == b->size &&
         memcmp(a->hash, b->hash, REAPI_HASH_HEX_LEN) == 0;
}

char *reapi_digest_str(const reapi_digest *d, char *buf) {
  snprintf(buf, REAPI_DIGEST_STR_MAX, "%s/%lld", d->hash, (long long)d->size);
  return buf;
}
