/*
 * cas_bench: CAS client throughput over loopback against a running
 * `cargo-distbuild cas run`, next to the single-core limits measured in the
 * same run (SHA-256, zstd compress at the level used, zstd decompress).
 *
 * Usage: cas_bench HOST:PORT [--small N] [--large-mb M] [--level L]
 *                             [--inflight K]
 * Built as a target of tests/cas_client; bench/cas/run.sh starts a server
 * on a temp root and runs it.
 */
#include "cas_client.h"
#include "cas_test_util.h"
#include "db_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MB (1024.0 * 1024.0)

typedef struct limits {
  double sha;      /* MB/s */
  double comp[2];  /* MB/s, [0] text, [1] random */
  double dec[2];   /* MB/s */
  double dh[2];    /* decompress + hash, MB/s */
  double scomp[2]; /* small blobs: compress blobs/s */
  double sdh[2];   /* small blobs: decompress + hash blobs/s */
} limits;

static int level = 1;

static double rate_dh(double d, double h) {
  return 1.0 / (1.0 / d + 1.0 / h);
}

static void measure_limits(const uint8_t *buf[2], size_t len, size_t small,
                           limits *L) {
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_DCtx *dc = ZSTD_createDCtx();
  size_t cap = ZSTD_compressBound(len);
  uint8_t *z = malloc(cap), *out = malloc(len);
  reapi_digest d;
  double t;

  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
  t = cas_test_now();
  for (int r = 0; r < 2; r++)
    reapi_digest_of(buf[0], len, &d);
  L->sha = 2 * (double)len / MB / (cas_test_now() - t);
  for (int k = 0; k < 2; k++) {
    size_t zl = 0, n = 0;
    t = cas_test_now();
    zl = ZSTD_compress2(cc, z, cap, buf[k], len);
    L->comp[k] = (double)len / MB / (cas_test_now() - t);
    t = cas_test_now();
    for (int r = 0; r < 2; r++)
      ZSTD_decompressDCtx(dc, out, len, z, zl);
    L->dec[k] = 2 * (double)len / MB / (cas_test_now() - t);
    L->dh[k] = rate_dh(L->dec[k], L->sha);
    /* Per small blob: compress; decompress + hash. */
    n = 20000;
    t = cas_test_now();
    for (size_t i = 0; i < n; i++) {
      size_t off = (i * 4099) % (len - small);
      ZSTD_compress2(cc, z + (i % 64) * 2048, 2048, buf[k] + off, small);
    }
    L->scomp[k] = (double)n / (cas_test_now() - t);
    zl = ZSTD_compress2(cc, z, 2048, buf[k], small);
    t = cas_test_now();
    for (size_t i = 0; i < n; i++) {
      if (zl < small)
        ZSTD_decompressDCtx(dc, out, small, z, zl);
      reapi_digest_of(out, small, &d);
    }
    L->sdh[k] = (double)n / (cas_test_now() - t);
  }
  ZSTD_freeCCtx(cc);
  ZSTD_freeDCtx(dc);
  free(z);
  free(out);
}

static void row(const char *what, double v, const char *unit, double lim,
                const char *limwhat) {
  printf("  %-34s %10.0f %-7s %10.0f %-7s %-26s %5.0f%%\n", what, v, unit, lim,
         unit, limwhat, 100.0 * v / lim);
}

static int small_phase(cas_client *c, int k, size_t n, size_t sz,
                       const limits *L, double *fmb) {
  uint8_t *data = malloc(n * sz);
  cas_blob_src *src = calloc(n, sizeof(*src));
  cas_blob_dst *dst = calloc(n, sizeof(*dst));
  reapi_digest *dig = calloc(n, sizeof(*dig)), *missing = NULL;
  size_t nmissing = 0;
  uint64_t raw = 0, wire = 0;
  char what[80];
  double t, up, down, best = 0;
  int rv;

  for (size_t i = 0; i < n; i++) {
    uint8_t *p = data + i * sz;
    if (k == 0)
      cas_test_fill_text(p, sz, 1000003 * (uint64_t)i + 17);
    else
      cas_test_fill_random(p, sz, 1000003 * (uint64_t)i + 18);
    reapi_digest_of(p, sz, &dig[i]);
    src[i].digest = dig[i];
    src[i].data = p;
    dst[i].digest = dig[i];
  }
  t = cas_test_now();
  rv = cas_client_upload(c, src, n, &raw, &wire);
  up = (double)n / (cas_test_now() - t);
  if (rv != 0)
    goto out;
  t = cas_test_now();
  rv = cas_client_download(c, dst, n, NULL, NULL);
  down = (double)n / (cas_test_now() - t);
  if (rv != 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    if (dst[i].len != sz || memcmp(dst[i].data, data + i * sz, sz)) {
      rv = DB_EDIGEST;
      goto out;
    }
  }
  if (k == 0) {
    for (int r = 0; r < 3; r++) {
      t = cas_test_now();
      rv = cas_client_find_missing(c, dig, n, &missing, &nmissing);
      t = (double)n / (cas_test_now() - t);
      free(missing);
      missing = NULL;
      if (rv != 0 || nmissing != 0)
        goto out;
      if (t > best)
        best = t;
    }
    *fmb = best;
  }
  snprintf(what, sizeof(what), "upload   %zuk x %zu B %s", n / 1000, sz,
           k ? "random" : "text");
  row(what, up, "blobs/s", L->scomp[k] < L->sdh[k] ? L->scomp[k] : L->sdh[k],
      L->scomp[k] < L->sdh[k] ? "(client compress)" : "(srv decompress+hash)");
  printf("  %-34s wire/raw %.2f\n", "", (double)wire / (double)raw);
  snprintf(what, sizeof(what), "download %zuk x %zu B %s", n / 1000, sz,
           k ? "random" : "text");
  row(what, down, "blobs/s", L->sdh[k], "(decompress+hash)");
out:
  for (size_t i = 0; i < n; i++)
    free(dst[i].data);
  free(data);
  free(src);
  free(dst);
  free(dig);
  return rv;
}

static int large_phase(cas_client *c, int k, const uint8_t *buf, size_t len,
                       const limits *L) {
  cas_blob_src src = {{{0}, 0}, buf, NULL};
  cas_blob_dst dst = {{{0}, 0}, NULL, 0, NULL, 0};
  uint64_t raw = 0, wire = 0;
  double t, up, down, lim;
  char what[80];
  int rv;

  reapi_digest_of(buf, len, &src.digest);
  dst.digest = src.digest;
  t = cas_test_now();
  rv = cas_client_upload(c, &src, 1, &raw, &wire);
  up = (double)len / MB / (cas_test_now() - t);
  if (rv != 0)
    return rv;
  t = cas_test_now();
  rv = cas_client_download(c, &dst, 1, NULL, NULL);
  down = (double)len / MB / (cas_test_now() - t);
  if (rv == 0 && (dst.len != len || memcmp(dst.data, buf, len)))
    rv = DB_EDIGEST;
  free(dst.data);
  if (rv != 0)
    return rv;
  lim = L->comp[k] < L->dh[k] ? L->comp[k] : L->dh[k];
  snprintf(what, sizeof(what), "upload   %zu MiB %s", len >> 20,
           k ? "random" : "text");
  row(what, up, "MB/s", lim,
      L->comp[k] < L->dh[k] ? "(client compress)" : "(srv decompress+hash)");
  printf("  %-34s wire/raw %.2f\n", "", (double)wire / (double)raw);
  snprintf(what, sizeof(what), "download %zu MiB %s", len >> 20,
           k ? "random" : "text");
  row(what, down, "MB/s", L->dh[k], "(decompress+hash)");
  return 0;
}

int main(int argc, char **argv) {
  cas_client_opts o = {0};
  rpc_channel_opts ch = {0};
  cas_client *c = NULL;
  size_t nsmall = 100000, large = 64u << 20, small = 1024;
  uint8_t *big[2] = {NULL, NULL};
  const uint8_t *cbig[2];
  limits L;
  double fmb = 0;
  int rv = 1;

  if (argc < 2) {
    fprintf(stderr,
            "usage: %s HOST:PORT|grpcs://HOST:PORT [--small N] "
            "[--large-mb M] [--level L] [--inflight K] [--tls-ca FILE]\n",
            argv[0]);
    return 2;
  }
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--small"))
      nsmall = (size_t)atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--large-mb"))
      large = (size_t)atol(argv[i + 1]) << 20;
    else if (!strcmp(argv[i], "--level"))
      level = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--inflight"))
      o.max_inflight = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--tls-ca"))
      ch.tls_ca_file = argv[i + 1];
  }
  o.channel = &ch;
  if (nsmall == 0 || large == 0) {
    fprintf(stderr, "cas_bench: --small and --large-mb must be positive\n");
    return 2;
  }
  o.zstd_level = level;
  big[0] = malloc(large);
  big[1] = malloc(large);
  if (!big[0] || !big[1])
    goto out;
  cas_test_fill_text(big[0], large, 42);
  cas_test_fill_random(big[1], large, 43);
  cbig[0] = big[0];
  cbig[1] = big[1];
  measure_limits(cbig, large, small, &L);

  printf("cas_bench: server %s, zstd level %d, max_inflight %d\n\n", argv[1],
         level, o.max_inflight ? o.max_inflight : 16);
  printf("Single-core limits measured in this run\n");
  printf("  %-28s %8.0f MB/s\n", "sha256", L.sha);
  printf("  %-28s %8.0f MB/s   random %8.0f MB/s\n", "zstd compress (text)",
         L.comp[0], L.comp[1]);
  printf("  %-28s %8.0f MB/s   random %8.0f MB/s\n", "zstd decompress (text)",
         L.dec[0], L.dec[1]);
  printf("  %-28s %8.0f MB/s   random %8.0f MB/s\n", "decompress+hash (text)",
         L.dh[0], L.dh[1]);
  printf("  %-28s %8.0f /s     random %8.0f /s\n", "1 KiB blob compress",
         L.scomp[0], L.scomp[1]);
  printf("  %-28s %8.0f /s     random %8.0f /s\n", "1 KiB decompress+hash",
         L.sdh[0], L.sdh[1]);
  printf("\n  %-34s %18s %18s %-26s %6s\n", "workload", "result", "limit",
         "(slowest stage)", "%");

  rv = cas_client_new(argv[1], &o, &c);
  if (rv != 0)
    goto out;
  for (int k = 0; k < 2 && rv == 0; k++)
    rv = small_phase(c, k, nsmall, small, &L, &fmb);
  for (int k = 0; k < 2 && rv == 0; k++)
    rv = large_phase(c, k, big[k], large, &L);
  if (rv == 0)
    printf("  %-34s %10.0f digests/s (goal >= 100000)\n",
           "FindMissingBlobs (all present)", fmb);
out:
  if (rv != 0) {
    const rpc_status *st = c ? cas_client_last_status(c) : NULL;
    fprintf(stderr, "cas_bench: %s%s%s\n", db_strerror(rv),
            st && st->message ? ": " : "",
            st && st->message ? st->message : "");
  }
  cas_client_free(c);
  free(big[0]);
  free(big[1]);
  return rv ? 1 : 0;
}
