/*
 * Unit tests for cas/cas_store_stream.c (streaming writer and reader) and
 * for concurrent use of one store from several threads.
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

typedef struct fixture {
  char root[256];
  cas_store *s;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  cas_store_opts o = {
      .root = f->root, .max_bytes = 0, .sync = store_sync_mode()};
  tu_tmpdir(f->root, sizeof(f->root));
  assert_int_equal(cas_store_open(&o, &f->s), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  cas_store_close(f->s);
  tu_rm_rf(f->root);
  free(f);
  return 0;
}

/* Feed p in uneven chunks. Returns the first error. */
static int feed(cas_writer *w, const uint8_t *p, size_t n) {
  size_t off = 0, chunk = 1;
  while (off < n) {
    size_t c = n - off < chunk ? n - off : chunk;
    int rv = cas_writer_write(w, p + off, c);
    if (rv != 0)
      return rv;
    off += c;
    chunk = chunk * 3 + 7;
  }
  return 0;
}

static uint8_t *zcompress(const uint8_t *p, size_t n, int level, size_t *zn) {
  size_t cap = ZSTD_compressBound(n);
  uint8_t *z = malloc(cap);
  *zn = ZSTD_compress(z, cap, p, n, level);
  assert_false(ZSTD_isError(*zn));
  return z;
}

static void check_get(cas_store *s, const reapi_digest *d, const uint8_t *p,
                      size_t n) {
  uint8_t *got = NULL;
  size_t len = 0;
  assert_int_equal(cas_store_get(s, d, &got, &len), 0);
  assert_int_equal(len, n);
  if (n)
    assert_memory_equal(got, p, n);
  free(got);
}

static void test_writer_raw(void **state) {
  fixture *f = *state;
  size_t n = 3 * 1024 * 1024 + 17;
  uint8_t *p = malloc(n);
  reapi_digest d, wrong;
  cas_writer *w = NULL;
  char path[512];

  tu_fill_text(p, n, 1);
  reapi_digest_of(p, n, &d);

  /* too long: fails at the write that crosses the size */
  wrong = d;
  wrong.size = 1000;
  assert_int_equal(cas_writer_new(f->s, &wrong, 0, &w), 0);
  assert_int_equal(cas_writer_write(w, p, 999), 0);
  assert_int_equal(cas_writer_write(w, p + 999, 2), DB_EDIGEST);
  assert_int_equal(cas_writer_write(w, p, 1), DB_EDIGEST); /* sticky */
  cas_writer_abort(w);

  /* too short */
  assert_int_equal(cas_writer_new(f->s, &d, 0, &w), 0);
  assert_int_equal(feed(w, p, n - 1), 0);
  assert_int_equal(cas_writer_commit(w), DB_EDIGEST);

  /* right size, wrong hash */
  wrong = d;
  wrong.hash[0] = wrong.hash[0] == 'a' ? 'b' : 'a';
  assert_int_equal(cas_writer_new(f->s, &wrong, 0, &w), 0);
  assert_int_equal(feed(w, p, n), 0);
  assert_int_equal(cas_writer_commit(w), DB_EDIGEST);
  assert_int_equal(cas_store_has(f->s, &wrong), 0);

  /* partial then abort */
  assert_int_equal(cas_writer_new(f->s, &d, 0, &w), 0);
  assert_int_equal(feed(w, p, n / 2), 0);
  cas_writer_abort(w);
  assert_int_equal(cas_store_has(f->s, &d), 0);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);

  /* success */
  assert_int_equal(cas_writer_new(f->s, &d, 0, &w), 0);
  assert_int_equal(feed(w, p, n), 0);
  assert_int_equal(cas_writer_offset(w), (int64_t)n);
  assert_int_equal(cas_writer_commit(w), 0);
  assert_int_equal(cas_store_has(f->s, &d), 1);
  tu_blob_path(f->root, &d, 'z', path, sizeof(path));
  assert_true(tu_exists(path));
  check_get(f->s, &d, p, n);

  /* random data through the writer ends up raw */
  tu_fill_random(p, n, 2);
  reapi_digest_of(p, n, &d);
  assert_int_equal(cas_writer_new(f->s, &d, 0, &w), 0);
  assert_int_equal(feed(w, p, n), 0);
  assert_int_equal(cas_writer_commit(w), 0);
  tu_blob_path(f->root, &d, 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  check_get(f->s, &d, p, n);

  /* empty blob */
  assert_int_equal(cas_writer_new(f->s, &reapi_digest_empty, 0, &w), 0);
  assert_int_equal(cas_writer_commit(w), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  free(p);
}

static void test_writer_zstd(void **state) {
  fixture *f = *state;
  size_t n = 2 * 1024 * 1024 + 5, zn, rn;
  uint8_t *p = malloc(n), *z, *rz, *big, *bz, *stored;
  reapi_digest d, dr, wrong;
  cas_writer *w = NULL;
  char path[512];
  FILE *fp;

  tu_fill_text(p, n, 3);
  reapi_digest_of(p, n, &d);
  z = zcompress(p, n, 7, &zn);

  /* corrupt frame */
  {
    uint8_t *bad = malloc(zn);
    int rv;
    memcpy(bad, z, zn);
    for (size_t i = zn / 3; i < zn / 3 + 64; i++)
      bad[i] ^= 0xa5;
    assert_int_equal(cas_writer_new(f->s, &d, 1, &w), 0);
    rv = feed(w, bad, zn);
    if (rv == 0)
      rv = cas_writer_commit(w);
    else
      cas_writer_abort(w);
    assert_true(rv == DB_ECOMPRESS || rv == DB_EDIGEST);
    free(bad);
  }
  /* truncated frame */
  assert_int_equal(cas_writer_new(f->s, &d, 1, &w), 0);
  assert_int_equal(feed(w, z, zn - 10), 0);
  assert_true(cas_writer_commit(w) < 0);

  /* a frame that inflates past the expected size fails early */
  big = malloc(64 * 1024 * 1024);
  memset(big, 'x', 64 * 1024 * 1024);
  bz = zcompress(big, 64 * 1024 * 1024, 1, &rn);
  wrong = d;
  wrong.size = 4096;
  assert_int_equal(cas_writer_new(f->s, &wrong, 1, &w), 0);
  assert_int_equal(cas_writer_write(w, bz, rn), DB_EDIGEST);
  cas_writer_abort(w);
  free(big);
  free(bz);

  /* wrong hash */
  wrong = d;
  wrong.hash[5] = wrong.hash[5] == '0' ? '1' : '0';
  assert_int_equal(cas_writer_new(f->s, &wrong, 1, &w), 0);
  assert_int_equal(feed(w, z, zn), 0);
  assert_int_equal(cas_writer_commit(w), DB_EDIGEST);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);

  /* success: the client's frame is stored as is */
  assert_int_equal(cas_writer_new(f->s, &d, 1, &w), 0);
  assert_int_equal(feed(w, z, zn), 0);
  assert_int_equal(cas_writer_offset(w), (int64_t)zn);
  assert_int_equal(cas_writer_commit(w), 0);
  check_get(f->s, &d, p, n);
  tu_blob_path(f->root, &d, 'z', path, sizeof(path));
  fp = fopen(path, "rb");
  assert_non_null(fp);
  stored = malloc(zn + 1);
  assert_int_equal(fread(stored, 1, zn + 1, fp), zn);
  fclose(fp);
  assert_memory_equal(stored, z, zn);
  free(stored);

  /* a compressed upload of random data is kept raw */
  tu_fill_random(p, n, 4);
  reapi_digest_of(p, n, &dr);
  rz = zcompress(p, n, 3, &rn);
  assert_int_equal(cas_writer_new(f->s, &dr, 1, &w), 0);
  assert_int_equal(feed(w, rz, rn), 0);
  assert_int_equal(cas_writer_commit(w), 0);
  tu_blob_path(f->root, &dr, 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  check_get(f->s, &dr, p, n);
  free(rz);

  /* compressed empty blob */
  rz = zcompress(NULL, 0, 3, &rn);
  assert_int_equal(cas_writer_new(f->s, &reapi_digest_empty, 1, &w), 0);
  assert_int_equal(feed(w, rz, rn), 0);
  assert_int_equal(cas_writer_commit(w), 0);
  free(rz);
  free(z);
  free(p);
}

/* Read everything from a reader with an awkward buffer size. */
static uint8_t *drain(cas_reader *r, size_t *len, int *rv) {
  size_t cap = 1 << 20, got = 0, n;
  uint8_t *out = malloc(cap);
  for (;;) {
    if (got + 777 > cap)
      out = realloc(out, cap *= 2);
    *rv = cas_reader_read(r, out + got, 777, &n);
    if (*rv != 0 || n == 0)
      break;
    got += n;
  }
  *len = got;
  return out;
}

static void check_reads(cas_store *s, const reapi_digest *d, const uint8_t *p,
                        size_t n) {
  int64_t offs[] = {0, 1, 1000, (int64_t)n / 2, (int64_t)n - 1, (int64_t)n};
  cas_reader *r = NULL;
  size_t len, un;
  uint8_t *out, *plain;
  int rv;

  for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
    if (offs[i] < 0 || offs[i] > (int64_t)n)
      continue;
    assert_int_equal(cas_reader_open(s, d, offs[i], 0, &r), 0);
    out = drain(r, &len, &rv);
    assert_int_equal(rv, 0);
    assert_int_equal(len, n - (size_t)offs[i]);
    if (len)
      assert_memory_equal(out, p + offs[i], len);
    free(out);
    cas_reader_close(r);
  }
  assert_int_equal(cas_reader_open(s, d, (int64_t)n + 1, 0, &r), DB_EINVAL);
  assert_int_equal(cas_reader_open(s, d, 1, 1, &r), DB_EINVAL);

  assert_int_equal(cas_reader_open(s, d, 0, 1, &r), 0);
  out = drain(r, &len, &rv);
  assert_int_equal(rv, 0);
  cas_reader_close(r);
  plain = malloc(n + 1);
  un = ZSTD_decompress(plain, n + 1, out, len);
  assert_false(ZSTD_isError(un));
  assert_int_equal(un, n);
  if (n)
    assert_memory_equal(plain, p, n);
  assert_int_equal(ZSTD_getFrameContentSize(out, len), n);
  free(plain);
  free(out);
}

static void test_reader(void **state) {
  fixture *f = *state;
  size_t n = 700 * 1024 + 3;
  uint8_t *text = malloc(n), *rnd = malloc(n), small[100];
  reapi_digest dt, dr, ds, absent;
  cas_reader *r = NULL;

  tu_fill_text(text, n, 11);
  tu_fill_random(rnd, n, 12);
  tu_fill_text(small, sizeof(small), 13);
  reapi_digest_of(text, n, &dt);
  reapi_digest_of(rnd, n, &dr);
  reapi_digest_of(small, sizeof(small), &ds);
  assert_int_equal(cas_store_put(f->s, &dt, text, n), 0);
  assert_int_equal(cas_store_put(f->s, &dr, rnd, n), 0);
  assert_int_equal(cas_store_put(f->s, &ds, small, sizeof(small)), 0);
  check_reads(f->s, &dt, text, n);
  check_reads(f->s, &dr, rnd, n);
  check_reads(f->s, &ds, small, sizeof(small));
  check_reads(f->s, &reapi_digest_empty, NULL, 0);
  reapi_digest_of("absent", 6, &absent);
  assert_int_equal(cas_reader_open(f->s, &absent, 0, 0, &r), DB_ENOTFOUND);
  free(text);
  free(rnd);
}

/* Two writers of the same blob at once: both succeed, one file. */
static void test_two_writers_same_blob(void **state) {
  fixture *f = *state;
  size_t n = 200000, zn;
  uint8_t *p = malloc(n), *z;
  reapi_digest d;
  cas_writer *a = NULL, *b = NULL;

  tu_fill_text(p, n, 21);
  reapi_digest_of(p, n, &d);
  z = zcompress(p, n, 9, &zn);
  assert_int_equal(cas_writer_new(f->s, &d, 0, &a), 0);
  assert_int_equal(cas_writer_new(f->s, &d, 1, &b), 0);
  assert_int_equal(feed(a, p, n), 0);
  assert_int_equal(feed(b, z, zn), 0);
  assert_int_equal(cas_writer_commit(b), 0);
  assert_int_equal(cas_writer_commit(a), 0);
  assert_int_equal(cas_store_put(f->s, &d, p, n), 0);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 1);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  check_get(f->s, &d, p, n);
  free(z);
  free(p);
}

/* ---- several threads on overlapping digests, with evictions ---- */

enum { CT_BLOBS = 48, CT_THREADS = 6, CT_ITERS = 400 };

typedef struct ct_shared {
  cas_store *s;
  uint8_t *data[CT_BLOBS];
  size_t len[CT_BLOBS];
  reapi_digest d[CT_BLOBS];
  int errors;
  pthread_mutex_t mu;
} ct_shared;

typedef struct ct_arg {
  ct_shared *sh;
  int id;
} ct_arg;

static void ct_fail(ct_shared *sh, const char *what, int i, int rv) {
  pthread_mutex_lock(&sh->mu);
  sh->errors++;
  fprintf(stderr, "thread op %s blob %d: %s\n", what, i, db_strerror(rv));
  pthread_mutex_unlock(&sh->mu);
}

static void *ct_main(void *argp) {
  ct_arg *a = argp;
  ct_shared *sh = a->sh;
  uint64_t st = (uint64_t)a->id * 7919 + 1;

  for (int it = 0; it < CT_ITERS; it++) {
    uint64_t r = tu_rand(&st);
    int i = (int)(r % CT_BLOBS), op = (int)((r >> 32) % 4), rv;
    uint8_t *got = NULL;
    size_t len = 0;
    cas_writer *w = NULL;
    cas_reader *rd = NULL;

    switch (op) {
    case 0:
      rv = cas_store_put(sh->s, &sh->d[i], sh->data[i], sh->len[i]);
      if (rv != 0)
        ct_fail(sh, "put", i, rv);
      break;
    case 1:
      rv = cas_writer_new(sh->s, &sh->d[i], 0, &w);
      if (rv == 0)
        rv = feed(w, sh->data[i], sh->len[i]);
      rv = rv == 0 ? cas_writer_commit(w) : (cas_writer_abort(w), rv);
      if (rv != 0)
        ct_fail(sh, "write", i, rv);
      break;
    case 2:
      /* absent (evicted) is fine; wrong bytes never are */
      rv = cas_store_get(sh->s, &sh->d[i], &got, &len);
      if (rv == 0 && (len != sh->len[i] || memcmp(got, sh->data[i], len)))
        ct_fail(sh, "get-content", i, DB_EDIGEST);
      else if (rv != 0 && rv != DB_ENOTFOUND)
        ct_fail(sh, "get", i, rv);
      free(got);
      break;
    default:
      rv = cas_reader_open(sh->s, &sh->d[i], (int64_t)(r >> 40) % 2 * 100, 0,
                           &rd);
      if (rv == 0) {
        int rrv;
        uint8_t *out = drain(rd, &len, &rrv);
        size_t off = sh->len[i] - len;
        if (rrv != 0 || memcmp(out, sh->data[i] + off, len) != 0)
          ct_fail(sh, "read", i, rrv ? rrv : DB_EDIGEST);
        free(out);
        cas_reader_close(rd);
      } else if (rv != DB_ENOTFOUND) {
        ct_fail(sh, "reader_open", i, rv);
      }
      (void)cas_store_has(sh->s, &sh->d[i]);
      break;
    }
  }
  return NULL;
}

static void test_concurrent(void **state) {
  fixture *f = *state;
  ct_shared *sh = calloc(1, sizeof(*sh));
  pthread_t th[CT_THREADS];
  ct_arg args[CT_THREADS];
  cas_store_opts o = {
      .root = f->root, .max_bytes = 0, .sync = store_sync_mode()};
  uint64_t total = 0;
  cas_store_stats st;

  for (int i = 0; i < CT_BLOBS; i++) {
    sh->len[i] = 1000 + (size_t)i * 4000;
    sh->data[i] = malloc(sh->len[i]);
    if (i % 3 == 0)
      tu_fill_random(sh->data[i], sh->len[i], (uint64_t)i);
    else
      tu_fill_text(sh->data[i], sh->len[i], (uint64_t)i);
    reapi_digest_of(sh->data[i], sh->len[i], &sh->d[i]);
    total += sh->len[i];
  }
  /* A budget of about a third of the data keeps eviction busy. */
  cas_store_close(f->s);
  o.max_bytes = total / 3;
  assert_int_equal(cas_store_open(&o, &f->s), 0);
  sh->s = f->s;
  pthread_mutex_init(&sh->mu, NULL);
  for (int t = 0; t < CT_THREADS; t++) {
    args[t].sh = sh;
    args[t].id = t;
    assert_int_equal(pthread_create(&th[t], NULL, ct_main, &args[t]), 0);
  }
  for (int t = 0; t < CT_THREADS; t++)
    pthread_join(th[t], NULL);
  assert_int_equal(sh->errors, 0);
  cas_store_get_stats(f->s, &st);
  assert_true(st.stored_bytes <= o.max_bytes);
  assert_true(st.evictions > 0);
  /* index and disk agree, and every indexed blob is intact */
  assert_int_equal(tu_count_files(f->root, "cas", NULL), (int)st.blobs);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  for (int i = 0; i < CT_BLOBS; i++) {
    if (cas_store_has(f->s, &sh->d[i]))
      check_get(f->s, &sh->d[i], sh->data[i], sh->len[i]);
    free(sh->data[i]);
  }
  pthread_mutex_destroy(&sh->mu);
  free(sh);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_writer_raw, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_zstd, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reader, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_writers_same_blob, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
  };
  db_log_set_level(DB_LOG_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
