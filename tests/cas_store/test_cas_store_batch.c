/*
 * Unit tests for cas_store_put_batch(): per-blob results, duplicates,
 * blobs already present, the budget, and concurrency with single puts.
 * (Disk full in a batch: test_cas_store_enospc.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <zstd.h>

#include "db_err.h"
#include "db_log.h"
#include "store_mode.h"
#include "test_util.h"
#include "test_fixture.h"

static void check_get(cas_store *s, const reapi_digest *d, const uint8_t *p,
                      size_t n) {
  uint8_t *got = NULL;
  size_t len = 99;
  assert_int_equal(cas_store_get(s, d, &got, &len), 0);
  assert_int_equal(len, n);
  if (n)
    assert_memory_equal(got, p, n);
  free(got);
}

/* Good blobs of every kind next to bad ones: the good are stored (in the
 * right format), the bad leave nothing behind. */
static void test_batch_mixed(void **state) {
  fixture *f = *state;
  enum { N = 9 };
  size_t big = (3u << 20) / 2; /* over CAS_BATCH_INMEM_MAX: streamed */
  uint8_t *text = malloc(1000), *rnd = malloc(2000), tiny[10] = "tiny blob",
          *large = malloc(big), *bad = malloc(1000), *shortb = malloc(1000);
  reapi_digest d[N];
  const void *p[N];
  size_t l[N];
  int r[N], expect[N];
  cas_store_stats st;
  char path[512];

  tu_fill_text(text, 1000, 1);
  tu_fill_random(rnd, 2000, 2);
  tu_fill_text(large, big, 3);
  tu_fill_text(bad, 1000, 4);
  tu_fill_text(shortb, 1000, 5);
#define SET(i, data, len, exp)                                                 \
  do {                                                                         \
    p[i] = (data);                                                             \
    l[i] = (len);                                                              \
    reapi_digest_of(p[i], l[i], &d[i]);                                        \
    expect[i] = (exp);                                                         \
  } while (0)
  SET(0, text, 1000, 0);
  SET(1, bad, 1000, DB_EDIGEST);
  SET(2, rnd, 2000, 0);
  SET(3, tiny, sizeof(tiny), 0);
  SET(4, NULL, 0, 0); /* the empty blob */
  SET(5, large, big, 0);
  SET(6, shortb, 1000, DB_EDIGEST);
  SET(7, text, 1000, DB_EINVAL);
  SET(8, rnd, 2000, DB_EDIGEST);
#undef SET
  bad[500] ^= 1;      /* content does not match d[1] */
  l[6] = 999;         /* length does not match d[6] */
  d[7].hash[0] = 'Q'; /* not a digest */
  d[8].size = 1999;   /* size in the digest is wrong */

  assert_int_equal(cas_store_put_batch(f->s, N, d, p, l, r), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i], expect[i]);
    assert_int_equal(cas_store_has(f->s, &d[i]), expect[i] == 0);
  }
  bad[500] ^= 1;
  check_get(f->s, &d[0], text, 1000);
  check_get(f->s, &d[2], rnd, 2000);
  check_get(f->s, &d[3], tiny, sizeof(tiny));
  check_get(f->s, &d[5], large, big);
  /* Same format choice as cas_store_put(). */
  tu_blob_path(f->root, &d[0], 'z', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &d[2], 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &d[3], 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &d[5], 'z', path, sizeof(path));
  assert_true(tu_exists(path));
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 4);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 4);
  assert_int_equal(st.logical_bytes, 1000 + 2000 + sizeof(tiny) + big);

  /* The index rebuilt at open agrees. */
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 4);
  check_get(f->s, &d[5], large, big);

  /* n = 0 and missing arrays. */
  assert_int_equal(cas_store_put_batch(f->s, 0, NULL, NULL, NULL, NULL), 0);
  assert_int_equal(cas_store_put_batch(f->s, N, d, NULL, l, r), DB_EINVAL);
  for (int i = 0; i < N; i++)
    assert_int_equal(r[i], DB_EINVAL);
  free(text);
  free(rnd);
  free(large);
  free(bad);
  free(shortb);
}

/* A digest repeated in a batch is written once; a wrong copy of it fails
 * on its own without hurting the right ones. Blobs already present are
 * successes that write nothing. */
static void test_batch_duplicates_and_present(void **state) {
  fixture *f = *state;
  enum { N = 6 };
  uint8_t a[3000], b[3000], wrong[3000], c[500];
  reapi_digest da, db, dc;
  reapi_digest d[N];
  const void *p[N];
  size_t l[N];
  int r[N];
  cas_store_stats st;

  tu_fill_text(a, sizeof(a), 10);
  tu_fill_text(b, sizeof(b), 11);
  tu_fill_text(c, sizeof(c), 12);
  memcpy(wrong, a, sizeof(a));
  wrong[7] ^= 0x40;
  reapi_digest_of(a, sizeof(a), &da);
  reapi_digest_of(b, sizeof(b), &db);
  reapi_digest_of(c, sizeof(c), &dc);
  assert_int_equal(cas_store_put(f->s, &dc, c, sizeof(c)), 0);

  d[0] = da, p[0] = wrong, l[0] = sizeof(a); /* bad copy first */
  d[1] = da, p[1] = a, l[1] = sizeof(a);
  d[2] = db, p[2] = b, l[2] = sizeof(b);
  d[3] = da, p[3] = a, l[3] = sizeof(a);
  d[4] = dc, p[4] = c, l[4] = sizeof(c); /* already present */
  d[5] = db, p[5] = b, l[5] = sizeof(b);
  assert_int_equal(cas_store_put_batch(f->s, N, d, p, l, r), 0);
  assert_int_equal(r[0], DB_EDIGEST);
  for (int i = 1; i < N; i++)
    assert_int_equal(r[i], 0);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 3);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 3);
  assert_int_equal(st.logical_bytes, 2 * sizeof(a) + sizeof(c));
  check_get(f->s, &da, a, sizeof(a));
  check_get(f->s, &db, b, sizeof(b));

  /* All present now: the whole batch is a cheap success. */
  assert_int_equal(cas_store_put_batch(f->s, N - 1, d + 1, p + 1, l + 1, r), 0);
  for (int i = 0; i < N - 1; i++)
    assert_int_equal(r[i], 0);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 3);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 3);

  /* A batch of one (the per-file fdatasync path). */
  c[0] ^= 1;
  reapi_digest_of(c, sizeof(c), &dc);
  p[0] = c;
  l[0] = sizeof(c);
  assert_int_equal(cas_store_put_batch(f->s, 1, &dc, p, l, r), 0);
  assert_int_equal(r[0], 0);
  check_get(f->s, &dc, c, sizeof(c));
}

/* With a budget: a blob larger than the whole budget fails alone; the
 * others are stored and older blobs evicted to make room. */
static void test_batch_budget(void **state) {
  fixture *f = *state;
  enum { N = 4, SZ = 40000 };
  uint8_t *buf = malloc((size_t)N * SZ), *huge = malloc(200000);
  reapi_digest d[N + 1];
  const void *p[N + 1];
  size_t l[N + 1];
  int r[N + 1];
  cas_store_stats st;

  cas_store_close(f->s);
  f->s = open_store(f->root, 100000);
  for (int i = 0; i < N; i++) {
    p[i] = buf + (size_t)i * SZ;
    l[i] = SZ;
    tu_fill_random(buf + (size_t)i * SZ, SZ, (uint64_t)i + 20);
    reapi_digest_of(p[i], SZ, &d[i]);
  }
  tu_fill_random(huge, 200000, 99);
  p[N] = huge;
  l[N] = 200000;
  reapi_digest_of(huge, 200000, &d[N]);
  assert_int_equal(cas_store_put_batch(f->s, N + 1, d, p, l, r), 0);
  for (int i = 0; i < N; i++)
    assert_int_equal(r[i], 0);
  assert_int_equal(r[N], DB_ENOSPC);
  assert_int_equal(cas_store_has(f->s, &d[N]), 0);
  cas_store_get_stats(f->s, &st);
  assert_true(st.stored_bytes <= 100000);
  assert_int_equal(st.blobs, 2); /* 4 x 40000 raw in a 100000 budget */
  assert_true(st.evictions >= 2);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 2);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  free(buf);
  free(huge);
}

/* Batches and single puts of overlapping blobs from several threads. */
enum { CC_BLOBS = 600, CC_SZ = 700, CC_THREADS = 4, CC_PER = 50 };

typedef struct cc_job {
  cas_store *s;
  const uint8_t *data;
  const reapi_digest *d;
  int tid;
  int failures;
} cc_job;

static void *cc_worker(void *arg) {
  cc_job *j = arg;
  const void *p[CC_PER];
  size_t l[CC_PER];
  int r[CC_PER];

  /* Even threads batch, odd ones put one by one; each walks the blobs
   * from a different start, so every blob is written concurrently. */
  for (int k = 0; k < CC_BLOBS; k += CC_PER) {
    int base = (k + j->tid * CC_BLOBS / CC_THREADS) % CC_BLOBS;
    if (j->tid % 2 == 0) {
      for (int i = 0; i < CC_PER; i++) {
        p[i] = j->data + (size_t)(base + i) * CC_SZ;
        l[i] = CC_SZ;
      }
      if (cas_store_put_batch(j->s, CC_PER, j->d + base, p, l, r) != 0)
        j->failures++;
      for (int i = 0; i < CC_PER; i++)
        j->failures += r[i] != 0;
    } else {
      for (int i = 0; i < CC_PER; i++)
        j->failures +=
            cas_store_put(j->s, &j->d[base + i],
                          j->data + (size_t)(base + i) * CC_SZ, CC_SZ) != 0;
    }
  }
  return NULL;
}

static void test_batch_concurrent(void **state) {
  fixture *f = *state;
  uint8_t *data = malloc((size_t)CC_BLOBS * CC_SZ);
  reapi_digest *d = malloc(CC_BLOBS * sizeof(*d));
  pthread_t th[CC_THREADS];
  cc_job jobs[CC_THREADS];
  cas_store_stats st;

  for (int i = 0; i < CC_BLOBS; i++) {
    tu_fill_text(data + (size_t)i * CC_SZ, CC_SZ, (uint64_t)i + 500);
    reapi_digest_of(data + (size_t)i * CC_SZ, CC_SZ, &d[i]);
  }
  for (int t = 0; t < CC_THREADS; t++) {
    jobs[t] = (cc_job){f->s, data, d, t, 0};
    assert_int_equal(pthread_create(&th[t], NULL, cc_worker, &jobs[t]), 0);
  }
  for (int t = 0; t < CC_THREADS; t++) {
    pthread_join(th[t], NULL);
    assert_int_equal(jobs[t].failures, 0);
  }
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, CC_BLOBS);
  assert_int_equal(st.logical_bytes, (uint64_t)CC_BLOBS * CC_SZ);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), CC_BLOBS);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  for (int i = 0; i < CC_BLOBS; i += 37)
    check_get(f->s, &d[i], data + (size_t)i * CC_SZ, CC_SZ);
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, CC_BLOBS);
  free(data);
  free(d);
}

/* cas_store_put_batch_frames: a paying frame is stored byte for byte (no
 * recompression; read back raw and as zstd), one that does not pay and a
 * tiny blob's are ignored, a bad blob with a frame is still rejected. */
static void test_batch_frames(void **state) {
  fixture *f = *state;
  enum { N = 5 };
  size_t big = (3u << 20) / 2, tl = 4000, rl = 3000;
  uint8_t *text = malloc(tl), *rnd = malloc(rl), *large = malloc(big);
  uint8_t tiny[40] = "a tiny blob, kept raw whatever happens";
  uint8_t *fr[N] = {0}, *got = NULL, zb[8192];
  reapi_digest d[N];
  const void *p[N], *fp[N];
  size_t l[N], fl[N], len = 0, n;
  int r[N], i;
  char path[512];
  cas_reader *rd = NULL;

  tu_fill_text(text, tl, 11);
  tu_fill_random(rnd, rl, 12);
  tu_fill_text(large, big, 13);
  p[0] = text, l[0] = tl;
  p[1] = rnd, l[1] = rl;
  p[2] = tiny, l[2] = sizeof(tiny);
  p[3] = large, l[3] = big;
  p[4] = text, l[4] = tl;
  for (i = 0; i < N; i++) {
    size_t cap = ZSTD_compressBound(l[i]);
    fr[i] = malloc(cap);
    /* Level 19: surely not what the store itself would produce. */
    fl[i] = ZSTD_compress(fr[i], cap, p[i], l[i], 19);
    assert_false(ZSTD_isError(fl[i]));
    fp[i] = fr[i];
    reapi_digest_of(p[i], l[i], &d[i]);
  }
  d[4].hash[5] = d[4].hash[5] == 'a' ? 'b' : 'a'; /* frame cannot save it */
  assert_int_equal(cas_store_put_batch_frames(f->s, N, d, p, l, fp, fl, r), 0);
  for (i = 0; i < 4; i++)
    assert_int_equal(r[i], 0);
  assert_int_equal(r[4], DB_EDIGEST);
  assert_false(cas_store_has(f->s, &d[4]));
  for (i = 0; i < 4; i++)
    check_get(f->s, &d[i], p[i], l[i]);
  tu_blob_path(f->root, &d[1], 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &d[2], 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  /* The text blob's stored frame is the caller's frame. */
  assert_int_equal(cas_reader_open(f->s, &d[0], 0, 1, &rd), 0);
  while (cas_reader_read(rd, zb + len, sizeof(zb) - len, &n) == 0 && n)
    len += n;
  cas_reader_close(rd);
  assert_int_equal(len, fl[0]);
  assert_memory_equal(zb, fr[0], fl[0]);
  tu_blob_path(f->root, &d[3], 'z', path, sizeof(path));
  assert_true(tu_exists(path));
  assert_int_equal(cas_store_get(f->s, &d[3], &got, &len), 0);
  assert_int_equal(len, big);
  free(got);
  /* Index rebuilt at open agrees on the stored size. */
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  check_get(f->s, &d[3], large, big);
  for (i = 0; i < N; i++)
    free(fr[i]);
  free(text);
  free(rnd);
  free(large);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batch_mixed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_duplicates_and_present, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_batch_budget, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_frames, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_concurrent, setup, teardown),
  };
  db_log_set_level(DB_LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
