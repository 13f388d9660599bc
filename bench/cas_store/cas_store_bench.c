/*
 * cas_store throughput: small-blob put/get/has rates (single puts and
 * put_batch), large-blob MB/s,
 * next to raw SHA-256 and zstd speeds measured in the same run.
 *
 * usage: cas_store_bench [root-dir] [threads] [small-count]
 * CAS_STORE_TEST_SYNC=background opens the store in background-sync mode.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <zstd.h>

#include "db_err.h"
#include "db_log.h"
#include "store_mode.h"
#include "test_util.h"

#define BIG (64u << 20)
#define SMALL 1024

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rv) {
  fprintf(stderr, "%s: %s\n", what, db_strerror(rv));
  exit(1);
}

typedef struct small_job {
  cas_store *s;
  uint8_t *data; /* count * SMALL */
  reapi_digest *d;
  int count;
  atomic_int next;
  int get;
} small_job;

static void *small_worker(void *arg) {
  small_job *j = arg;
  for (;;) {
    int i = atomic_fetch_add(&j->next, 1), rv;
    if (i >= j->count)
      break;
    if (j->get) {
      uint8_t *got = NULL;
      size_t len = 0;
      rv = cas_store_get(j->s, &j->d[i], &got, &len);
      free(got);
    } else {
      rv = cas_store_put(j->s, &j->d[i], j->data + (size_t)i * SMALL, SMALL);
    }
    if (rv != 0)
      die(j->get ? "get" : "put", rv);
  }
  return NULL;
}

static double run_small(small_job *j, int threads, int get) {
  pthread_t th[64];
  double t0 = now_s();
  j->get = get;
  atomic_store(&j->next, 0);
  for (int t = 0; t < threads; t++)
    pthread_create(&th[t], NULL, small_worker, j);
  for (int t = 0; t < threads; t++)
    pthread_join(th[t], NULL);
  return (double)j->count / (now_s() - t0);
}

/* Batch puts: threads take `per` consecutive blobs at a time. */
typedef struct batch_job {
  cas_store *s;
  const void **ptrs; /* count pointers into data */
  size_t *lens;
  reapi_digest *d;
  int count, per;
  atomic_int next;
} batch_job;

static void *batch_worker(void *arg) {
  batch_job *j = arg;
  int *res = malloc((size_t)j->per * sizeof(*res));
  for (;;) {
    int i = atomic_fetch_add(&j->next, j->per), n, rv;
    if (i >= j->count)
      break;
    n = j->count - i < j->per ? j->count - i : j->per;
    rv = cas_store_put_batch(j->s, (size_t)n, j->d + i, j->ptrs + i,
                             j->lens + i, res);
    if (rv != 0)
      die("put_batch", rv);
    for (int k = 0; k < n; k++)
      if (res[k] != 0)
        die("put_batch blob", res[k]);
  }
  free(res);
  return NULL;
}

/* Fresh content (seed) so that every put really writes. */
static double run_batch(cas_store *s, uint8_t *data, int count, int per,
                        int threads, uint64_t seed) {
  batch_job j;
  pthread_t th[64];
  double t0, rate;

  j.s = s;
  j.count = count;
  j.per = per;
  j.ptrs = malloc((size_t)count * sizeof(*j.ptrs));
  j.lens = malloc((size_t)count * sizeof(*j.lens));
  j.d = malloc((size_t)count * sizeof(*j.d));
  for (int i = 0; i < count; i++) {
    uint8_t *p = data + (size_t)i * SMALL;
    tu_fill_text(p, SMALL, seed + (uint64_t)i);
    reapi_digest_of(p, SMALL, &j.d[i]);
    j.ptrs[i] = p;
    j.lens[i] = SMALL;
  }
  atomic_store(&j.next, 0);
  t0 = now_s();
  for (int t = 0; t < threads; t++)
    pthread_create(&th[t], NULL, batch_worker, &j);
  for (int t = 0; t < threads; t++)
    pthread_join(th[t], NULL);
  rate = (double)count / (now_s() - t0);
  free(j.ptrs);
  free(j.lens);
  free(j.d);
  return rate;
}

static double mbps(size_t bytes, double secs) {
  return (double)bytes / (1 << 20) / secs;
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : "cas_store_bench.root";
  int threads = argc > 2 ? atoi(argv[2]) : 8;
  int count = argc > 3 ? atoi(argv[3]) : 100000;
  uint8_t *big = malloc(BIG), *z = malloc(ZSTD_compressBound(BIG)),
          *back = malloc(BIG);
  size_t zn;
  reapi_digest dg;
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  cas_store_opts o = {.root = root, .sync = store_sync_mode()};
  cas_store *s = NULL;
  small_job j;
  double t0, t;
  int hits = 0;

  if (threads < 1 || threads > 64)
    threads = 8;
  db_log_set_level(DB_LOG_WARN);
  tu_rm_rf(root);
  tu_fill_text(big, BIG, 42);

  /* ---- reference numbers ---- */
  t0 = now_s();
  reapi_digest_of(big, BIG, &dg);
  printf("sha256            %8.0f MB/s\n", mbps(BIG, now_s() - t0));
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  t0 = now_s();
  zn = ZSTD_compress2(cc, z, ZSTD_compressBound(BIG), big, BIG);
  printf("zstd -3 compress  %8.0f MB/s (ratio %.2f)\n", mbps(BIG, now_s() - t0),
         (double)BIG / (double)zn);
  t0 = now_s();
  ZSTD_decompress(back, BIG, z, zn);
  printf("zstd decompress   %8.0f MB/s\n", mbps(BIG, now_s() - t0));

  if (cas_store_open(&o, &s) != 0)
    die("open", DB_EIO);

  /* ---- 1 KiB blobs ---- */
  j.s = s;
  j.count = count;
  j.data = malloc((size_t)count * SMALL);
  j.d = malloc((size_t)count * sizeof(*j.d));
  for (int i = 0; i < count; i++) {
    tu_fill_text(j.data + (size_t)i * SMALL, SMALL, (uint64_t)i + 1000);
    reapi_digest_of(j.data + (size_t)i * SMALL, SMALL, &j.d[i]);
  }
  printf("put  %d x 1 KiB, %2d threads %8.0f blobs/s\n", count, threads,
         run_small(&j, threads, 0));
  t0 = now_s();
  for (int i = 0; i < count; i++)
    hits += cas_store_has(s, &j.d[i]);
  t = now_s() - t0;
  printf("has  %d digests,  1 thread  %8.0f digests/s (%d hits)\n", count,
         count / t, hits);
  printf("get  %d x 1 KiB, %2d threads %8.0f blobs/s\n", count, threads,
         run_small(&j, threads, 1));
  printf("get  %d x 1 KiB,  1 thread  %8.0f blobs/s\n", count,
         run_small(&j, 1, 1));
  {
    /* single-thread put rate: the fsync latency bound */
    small_job j1 = j;
    int n1 = count < 5000 ? count : 5000;
    for (int i = 0; i < n1; i++) {
      j1.data[(size_t)i * SMALL] ^= 0x20; /* new content */
      reapi_digest_of(j1.data + (size_t)i * SMALL, SMALL, &j1.d[i]);
    }
    j1.count = n1;
    printf("put  %d x 1 KiB,  1 thread  %8.0f blobs/s\n", n1,
           run_small(&j1, 1, 0));
  }

  /* ---- batch puts: 1 KiB blobs, 4 MiB per batch (BatchUpdateBlobs) ---- */
  {
    int per = (4 << 20) / SMALL, nsmall = count < 2000 ? count : 2000;
    static const int pers[] = {1, 2, 3, 4, 8, 16, 64};
    printf("put_batch %d x 1 KiB, %d/batch,  1 thread  %8.0f blobs/s\n", count,
           per, run_batch(s, j.data, count, per, 1, 1u << 24));
    printf("put_batch %d x 1 KiB, %d/batch, %2d threads %8.0f blobs/s\n", count,
           per, threads, run_batch(s, j.data, count, per, threads, 2u << 24));
    /* Where syncfs starts beating per-file fdatasync (CAS_BATCH_FSYNC_MAX
     * decides; compare n = 1 with the single-put rate above). */
    for (size_t k = 0; k < sizeof(pers) / sizeof(pers[0]); k++)
      printf("put_batch %d x 1 KiB, %2d/batch,    1 thread  %8.0f blobs/s\n",
             nsmall, pers[k],
             run_batch(s, j.data, nsmall, pers[k], 1, (3u + k) << 24));
  }

  /* ---- 64 MiB blob ---- */
  {
    uint8_t *got = NULL;
    size_t len = 0, n;
    cas_writer *w = NULL;
    cas_reader *r = NULL;
    int rv;

    reapi_digest_of(big, BIG, &dg);
    t0 = now_s();
    if ((rv = cas_store_put(s, &dg, big, BIG)) != 0)
      die("put big", rv);
    printf("put    64 MiB             %8.0f MB/s\n", mbps(BIG, now_s() - t0));
    t0 = now_s();
    if ((rv = cas_store_get(s, &dg, &got, &len)) != 0)
      die("get big", rv);
    printf("get    64 MiB             %8.0f MB/s\n", mbps(BIG, now_s() - t0));
    free(got);

    big[0] ^= 1;
    reapi_digest_of(big, BIG, &dg);
    t0 = now_s();
    if ((rv = cas_writer_new(s, &dg, 0, &w)) != 0)
      die("writer", rv);
    for (size_t off = 0; off < BIG; off += 1 << 20)
      if ((rv = cas_writer_write(w, big + off, 1 << 20)) != 0)
        die("write", rv);
    if ((rv = cas_writer_commit(w)) != 0)
      die("commit", rv);
    printf("writer 64 MiB raw in      %8.0f MB/s\n", mbps(BIG, now_s() - t0));

    big[0] ^= 2;
    reapi_digest_of(big, BIG, &dg);
    zn = ZSTD_compress2(cc, z, ZSTD_compressBound(BIG), big, BIG);
    t0 = now_s();
    if ((rv = cas_writer_new(s, &dg, 1, &w)) != 0)
      die("writer", rv);
    for (size_t off = 0; off < zn; off += 1 << 20)
      if ((rv = cas_writer_write(w, z + off,
                                 zn - off < (1 << 20) ? zn - off : 1 << 20)))
        die("write", rv);
    if ((rv = cas_writer_commit(w)) != 0)
      die("commit", rv);
    printf("writer 64 MiB zstd in     %8.0f MB/s (uncompressed)\n",
           mbps(BIG, now_s() - t0));

    t0 = now_s();
    if ((rv = cas_reader_open(s, &dg, 0, 0, &r)) != 0)
      die("reader", rv);
    do {
      if ((rv = cas_reader_read(r, back, 1 << 20, &n)) != 0)
        die("read", rv);
    } while (n > 0);
    cas_reader_close(r);
    printf("reader 64 MiB plain       %8.0f MB/s\n", mbps(BIG, now_s() - t0));
    t0 = now_s();
    if ((rv = cas_reader_open(s, &dg, 0, 1, &r)) != 0)
      die("reader", rv);
    do {
      if ((rv = cas_reader_read(r, back, 1 << 20, &n)) != 0)
        die("read", rv);
    } while (n > 0);
    cas_reader_close(r);
    printf("reader 64 MiB as_zstd     %8.0f MB/s (uncompressed)\n",
           mbps(BIG, now_s() - t0));

    tu_fill_random(big, BIG, 9);
    reapi_digest_of(big, BIG, &dg);
    t0 = now_s();
    if ((rv = cas_store_put(s, &dg, big, BIG)) != 0)
      die("put random", rv);
    printf("put    64 MiB random      %8.0f MB/s (kept raw)\n",
           mbps(BIG, now_s() - t0));
  }
  cas_store_close(s);
  tu_rm_rf(root);
  ZSTD_freeCCtx(cc);
  free(j.data);
  free(j.d);
  free(big);
  free(z);
  free(back);
  return 0;
}
