/*
 * Unit tests for cas/cas_store.c: whole-blob API, formats, persistence,
 * eviction, corruption handling and the action cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "db_err.h"
#include "db_log.h"
#include "store_mode.h"
#include "test_util.h"
#include "test_fixture.h"

static void put_blob(cas_store *s, const uint8_t *p, size_t n,
                     reapi_digest *d) {
  reapi_digest_of(p, n, d);
  assert_int_equal(cas_store_put(s, d, p, n), 0);
}

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

static void test_roundtrip(void **state) {
  fixture *f = *state;
  size_t sizes[] = {1, 63, 64, 1000, 4096, 1 << 20};
  reapi_digest d, absent;
  cas_store_stats st;
  uint8_t *got = (uint8_t *)1;
  size_t len = 1;

  /* The empty blob always exists. */
  assert_int_equal(cas_store_has(f->s, &reapi_digest_empty), 1);
  assert_int_equal(cas_store_get(f->s, &reapi_digest_empty, &got, &len), 0);
  assert_null(got);
  assert_int_equal(len, 0);
  assert_int_equal(cas_store_put(f->s, &reapi_digest_empty, NULL, 0), 0);

  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uint8_t *p = malloc(sizes[i]);
    tu_fill_text(p, sizes[i], i);
    reapi_digest_of(p, sizes[i], &d);
    assert_int_equal(cas_store_has(f->s, &d), 0);
    assert_int_equal(cas_store_put(f->s, &d, p, sizes[i]), 0);
    assert_int_equal(cas_store_has(f->s, &d), 1);
    /* storing again is a cheap success */
    assert_int_equal(cas_store_put(f->s, &d, p, sizes[i]), 0);
    check_get(f->s, &d, p, sizes[i]);
    free(p);
  }
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 6);
  assert_int_equal(st.logical_bytes, 1 + 63 + 64 + 1000 + 4096 + (1 << 20));
  assert_true(st.stored_bytes < st.logical_bytes);

  reapi_digest_of("nope", 4, &absent);
  assert_int_equal(cas_store_has(f->s, &absent), 0);
  assert_int_equal(cas_store_get(f->s, &absent, &got, &len), DB_ENOTFOUND);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
}

static void test_digest_mismatch(void **state) {
  fixture *f = *state;
  uint8_t p[5000];
  reapi_digest d;

  tu_fill_text(p, sizeof(p), 1);
  reapi_digest_of(p, sizeof(p), &d);
  p[10] ^= 1;
  assert_int_equal(cas_store_put(f->s, &d, p, sizeof(p)), DB_EDIGEST);
  assert_int_equal(cas_store_put(f->s, &d, p, sizeof(p) - 1), DB_EDIGEST);
  assert_int_equal(cas_store_has(f->s, &d), 0);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
}

static void test_format_choice(void **state) {
  fixture *f = *state;
  size_t n = 256 * 1024;
  uint8_t *text = malloc(n), *rnd = malloc(n), tiny[10] = "tiny blob";
  reapi_digest dt, dr, dtiny;
  char path[512];

  tu_fill_text(text, n, 2);
  tu_fill_random(rnd, n, 3);
  put_blob(f->s, text, n, &dt);
  put_blob(f->s, rnd, n, &dr);
  put_blob(f->s, tiny, sizeof(tiny), &dtiny);
  tu_blob_path(f->root, &dt, 'z', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &dr, 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  tu_blob_path(f->root, &dtiny, 'r', path, sizeof(path));
  assert_true(tu_exists(path));
  check_get(f->s, &dt, text, n);
  check_get(f->s, &dr, rnd, n);
  check_get(f->s, &dtiny, tiny, sizeof(tiny));
  free(text);
  free(rnd);
}

static void test_reopen_rebuilds_index(void **state) {
  fixture *f = *state;
  uint8_t p[3000];
  reapi_digest d[20];
  cas_store_stats before, after;

  for (int i = 0; i < 20; i++) {
    if (i % 2)
      tu_fill_text(p, sizeof(p), (uint64_t)i);
    else
      tu_fill_random(p, sizeof(p), (uint64_t)i);
    put_blob(f->s, p, sizeof(p), &d[i]);
  }
  cas_store_get_stats(f->s, &before);
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  cas_store_get_stats(f->s, &after);
  assert_int_equal(after.blobs, 20);
  assert_int_equal(after.stored_bytes, before.stored_bytes);
  assert_int_equal(after.logical_bytes, before.logical_bytes);
  for (int i = 0; i < 20; i++) {
    if (i % 2)
      tu_fill_text(p, sizeof(p), (uint64_t)i);
    else
      tu_fill_random(p, sizeof(p), (uint64_t)i);
    assert_int_equal(cas_store_has(f->s, &d[i]), 1);
    check_get(f->s, &d[i], p, sizeof(p));
  }
}

static void test_tmp_cleaned_at_open(void **state) {
  fixture *f = *state;
  char path[512];
  FILE *fp;

  cas_store_close(f->s);
  f->s = NULL;
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/tmp/leftover.%d", f->root, i);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("partial", fp);
    fclose(fp);
  }
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 3);
  f->s = open_store(f->root, 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
}

/* A writer killed before commit: nothing visible, and its temp file is
 * swept at the next open. */
static void test_crashed_writer_leaves_nothing(void **state) {
  fixture *f = *state;
  uint8_t p[100000];
  reapi_digest d;
  pid_t pid;
  int status;

  tu_fill_text(p, sizeof(p), 9);
  reapi_digest_of(p, sizeof(p), &d);
  cas_store_close(f->s);
  f->s = NULL;
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    cas_store *s = NULL;
    cas_writer *w = NULL;
    cas_store_opts o = {
        .root = f->root, .max_bytes = 0, .sync = store_sync_mode()};
    if (cas_store_open(&o, &s) != 0 || cas_writer_new(s, &d, 0, &w) != 0 ||
        cas_writer_write(w, p, sizeof(p) / 2) != 0)
      _exit(1);
    _exit(0); /* "crash": no commit, no abort, no close */
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 1);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 0);
  f->s = open_store(f->root, 0);
  assert_int_equal(cas_store_has(f->s, &d), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
}

static void test_lru_eviction(void **state) {
  fixture *f = *state;
  enum { N = 10, SZ = 10000 };
  uint8_t p[SZ];
  reapi_digest d[N];
  cas_store_stats st;

  /* Random blobs stay raw: each costs exactly SZ bytes of budget. */
  cas_store_close(f->s);
  f->s = open_store(f->root, 5 * SZ);
  for (int i = 0; i < 5; i++) {
    tu_fill_random(p, SZ, (uint64_t)i + 100);
    put_blob(f->s, p, SZ, &d[i]);
  }
  /* blob 0 is the oldest, but used now: blob 1 must go first. */
  assert_int_equal(cas_store_has(f->s, &d[0]), 1);
  tu_fill_random(p, SZ, 105);
  put_blob(f->s, p, SZ, &d[5]);
  assert_int_equal(cas_store_has(f->s, &d[1]), 0);
  assert_int_equal(cas_store_has(f->s, &d[0]), 1);
  tu_fill_random(p, SZ, 106);
  put_blob(f->s, p, SZ, &d[6]);
  assert_int_equal(cas_store_has(f->s, &d[2]), 0);
  assert_int_equal(cas_store_has(f->s, &d[0]), 1);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 5);
  assert_int_equal(st.stored_bytes, 5 * SZ);
  assert_int_equal(st.evictions, 2);
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 5);

  /* A blob larger than the whole budget cannot be stored. */
  {
    uint8_t *big = malloc(6 * SZ);
    reapi_digest db;
    tu_fill_random(big, 6 * SZ, 7);
    reapi_digest_of(big, 6 * SZ, &db);
    assert_int_equal(cas_store_put(f->s, &db, big, 6 * SZ), DB_ENOSPC);
    assert_int_equal(cas_store_has(f->s, &db), 0);
    free(big);
  }
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
}

/* The LRU order survives a restart through file mtimes. */
static void test_lru_order_after_reopen(void **state) {
  fixture *f = *state;
  enum { SZ = 10000 };
  uint8_t p[SZ];
  reapi_digest d[4];
  char path[512];

  for (int i = 0; i < 4; i++) {
    struct timeval tv[2];
    tu_fill_random(p, SZ, (uint64_t)i + 200);
    put_blob(f->s, p, SZ, &d[i]);
    /* blob 2 oldest, then 0, 3, 1 */
    tv[0].tv_sec = tv[1].tv_sec = 1000000 + (i == 2   ? 0
                                             : i == 0 ? 10
                                             : i == 3 ? 20
                                                      : 30);
    tv[0].tv_usec = tv[1].tv_usec = 0;
    tu_blob_path(f->root, &d[i], 'r', path, sizeof(path));
    assert_int_equal(utimes(path, tv), 0);
  }
  cas_store_close(f->s);
  f->s = open_store(f->root, 2 * SZ); /* budget shrank: two must go */
  assert_int_equal(cas_store_has(f->s, &d[2]), 0);
  assert_int_equal(cas_store_has(f->s, &d[0]), 0);
  assert_int_equal(cas_store_has(f->s, &d[3]), 1);
  assert_int_equal(cas_store_has(f->s, &d[1]), 1);
}

static void test_reader_survives_eviction(void **state) {
  fixture *f = *state;
  enum { SZ = 300000 };
  uint8_t *p = malloc(SZ), *q = malloc(SZ), *out = malloc(SZ);
  reapi_digest d, d2;
  cas_reader *r = NULL;
  size_t got = 0, n;

  cas_store_close(f->s);
  f->s = open_store(f->root, SZ + SZ / 2);
  tu_fill_random(p, SZ, 1);
  tu_fill_random(q, SZ, 2);
  put_blob(f->s, p, SZ, &d);
  assert_int_equal(cas_reader_open(f->s, &d, 0, 0, &r), 0);
  assert_int_equal(cas_reader_read(r, out, 1000, &n), 0);
  got += n;
  put_blob(f->s, q, SZ, &d2); /* evicts d */
  assert_int_equal(cas_store_has(f->s, &d), 0);
  do {
    assert_int_equal(cas_reader_read(r, out + got, SZ - got, &n), 0);
    got += n;
  } while (n > 0);
  assert_int_equal(got, SZ);
  assert_memory_equal(out, p, SZ);
  cas_reader_close(r);
  free(p);
  free(q);
  free(out);
}

static void corrupt_file(const char *path, off_t at) {
  int fd = open(path, O_RDWR);
  uint8_t b;
  assert_true(fd >= 0);
  assert_int_equal(pread(fd, &b, 1, at), 1);
  b ^= 0x55;
  assert_int_equal(pwrite(fd, &b, 1, at), 1);
  close(fd);
}

static void test_corruption_detected(void **state) {
  fixture *f = *state;
  enum { SZ = 50000 };
  uint8_t *text = malloc(SZ), *rnd = malloc(SZ), *got = NULL;
  reapi_digest dt, dr;
  char pt[512], pr[512];
  size_t len;
  cas_store_stats st;

  tu_fill_text(text, SZ, 5);
  tu_fill_random(rnd, SZ, 6);
  put_blob(f->s, text, SZ, &dt);
  put_blob(f->s, rnd, SZ, &dr);
  tu_blob_path(f->root, &dt, 'z', pt, sizeof(pt));
  tu_blob_path(f->root, &dr, 'r', pr, sizeof(pr));
  corrupt_file(pt, 200);
  corrupt_file(pr, SZ / 2);

  assert_int_equal(cas_store_get(f->s, &dt, &got, &len), DB_EDIGEST);
  assert_null(got);
  assert_int_equal(cas_store_get(f->s, &dr, &got, &len), DB_EDIGEST);
  assert_int_equal(cas_store_has(f->s, &dt), 0);
  assert_int_equal(cas_store_has(f->s, &dr), 0);
  assert_false(tu_exists(pt));
  assert_false(tu_exists(pr));
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.blobs, 0);
  assert_int_equal(st.stored_bytes, 0);

  /* A truncated raw blob is caught at open (length check) ... */
  put_blob(f->s, rnd, SZ, &dr);
  assert_int_equal(truncate(pr, SZ - 1), 0);
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  assert_int_equal(cas_store_has(f->s, &dr), 0);
  /* ... and a truncated .z one on read. */
  put_blob(f->s, text, SZ, &dt);
  {
    struct stat sb;
    assert_int_equal(stat(pt, &sb), 0);
    assert_int_equal(truncate(pt, sb.st_size - 5), 0);
  }
  assert_int_equal(cas_store_get(f->s, &dt, &got, &len), DB_EDIGEST);
  assert_int_equal(cas_store_has(f->s, &dt), 0);
  /* It can be stored again afterwards. */
  put_blob(f->s, text, SZ, &dt);
  check_get(f->s, &dt, text, SZ);
  free(text);
  free(rnd);
}

static void test_action_cache(void **state) {
  fixture *f = *state;
  reapi_digest a, other;
  uint8_t *got = NULL;
  size_t len = 0;

  reapi_digest_of("action", 6, &a);
  reapi_digest_of("other", 5, &other);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), DB_ENOTFOUND);
  assert_int_equal(cas_ac_put(f->s, &a, "result-1", 8), 0);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), 0);
  assert_int_equal(len, 8);
  assert_memory_equal(got, "result-1", 8);
  free(got);
  assert_int_equal(cas_ac_put(f->s, &a, "second result", 13), 0);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), 0);
  assert_int_equal(len, 13);
  assert_memory_equal(got, "second result", 13);
  free(got);
  assert_int_equal(cas_ac_put(f->s, &other, "", 0), 0);
  assert_int_equal(cas_ac_get(f->s, &other, &got, &len), 0);
  assert_int_equal(len, 0);
  free(got);
  assert_int_equal(cas_ac_remove(f->s, &a), 0);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), DB_ENOTFOUND);
  assert_int_equal(cas_ac_remove(f->s, &a), DB_ENOTFOUND);
  assert_int_equal(cas_store_flush(f->s), 0); /* background: queued ones */
  assert_int_equal(tu_count_files(f->root, "ac", NULL), 1);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  /* AC entries survive a reopen; they are not part of the CAS budget. */
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  assert_int_equal(cas_ac_get(f->s, &other, &got, &len), 0);
  free(got);
}

static cas_store *open_background(const char *root, int delay_ms) {
  cas_store_opts o = {
      .root = root, .sync = CAS_SYNC_BACKGROUND, .sync_delay_ms = delay_ms};
  cas_store *s = NULL;
  assert_int_equal(cas_store_open(&o, &s), 0);
  return s;
}

/* Background durability: blobs are visible at once, action-cache entries
 * are served from memory and only reach ac/ after a sync round. */
static void test_background_sync(void **state) {
  fixture *f = *state;
  reapi_digest d, a, b;
  cas_store_stats st;
  uint8_t blob[5000], *got = NULL;
  size_t len = 0;

  cas_store_close(f->s);
  /* A delay far longer than the test: only flush/close sync. */
  f->s = open_background(f->root, 10000);
  tu_fill_text(blob, sizeof(blob), 7);
  put_blob(f->s, blob, sizeof(blob), &d);
  assert_int_equal(cas_store_has(f->s, &d), 1);
  check_get(f->s, &d, blob, sizeof(blob));
  assert_int_equal(tu_count_files(f->root, "cas", NULL), 1);

  reapi_digest_of("action-a", 8, &a);
  reapi_digest_of("action-b", 8, &b);
  assert_int_equal(cas_ac_put(f->s, &a, "old", 3), 0);
  assert_int_equal(cas_ac_put(f->s, &a, "new result", 10), 0);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), 0);
  assert_int_equal(len, 10);
  assert_memory_equal(got, "new result", 10);
  free(got);
  /* Queued, not renamed: the data waits in tmp/. */
  assert_int_equal(tu_count_files(f->root, "ac", NULL), 0);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 2);
  cas_store_get_stats(f->s, &st);
  assert_int_equal(st.syncs, 0);

  /* A queued entry removed before its sync never reaches ac/. */
  assert_int_equal(cas_ac_put(f->s, &b, "gone", 4), 0);
  assert_int_equal(cas_ac_remove(f->s, &b), 0);
  assert_int_equal(cas_ac_get(f->s, &b, &got, &len), DB_ENOTFOUND);

  assert_int_equal(cas_store_flush(f->s), 0);
  cas_store_get_stats(f->s, &st);
  assert_true(st.syncs >= 1);
  assert_int_equal(st.sync_failures, 0);
  assert_int_equal(tu_count_files(f->root, "ac", NULL), 1);
  assert_int_equal(tu_count_files(f->root, "tmp", NULL), 0);
  assert_int_equal(cas_ac_get(f->s, &a, &got, &len), 0);
  assert_int_equal(len, 10); /* the newest put won the renames */
  assert_memory_equal(got, "new result", 10);
  free(got);

  /* close() syncs what is still queued; a synchronous store sees it. */
  assert_int_equal(cas_ac_put(f->s, &b, "kept", 4), 0);
  cas_store_close(f->s);
  f->s = open_store(f->root, 0);
  assert_int_equal(cas_ac_get(f->s, &b, &got, &len), 0);
  assert_int_equal(len, 4);
  assert_memory_equal(got, "kept", 4);
  free(got);
  check_get(f->s, &d, blob, sizeof(blob));
}

/* With a short delay the syncer commits a burst on its own. */
static void test_background_group_commit(void **state) {
  fixture *f = *state;
  reapi_digest a;
  cas_store_stats st;
  int i;

  cas_store_close(f->s);
  f->s = open_background(f->root, 5);
  reapi_digest_of("action", 6, &a);
  assert_int_equal(cas_ac_put(f->s, &a, "r", 1), 0);
  for (i = 0; i < 400; i++) { /* up to 2 s */
    if (tu_count_files(f->root, "ac", NULL) == 1)
      break;
    usleep(5000);
  }
  assert_int_equal(tu_count_files(f->root, "ac", NULL), 1);
  cas_store_get_stats(f->s, &st);
  assert_true(st.syncs >= 1);
}

static void test_bad_args(void **state) {
  fixture *f = *state;
  reapi_digest bad = reapi_digest_empty;
  cas_store_opts o = {
      .root = f->root, .max_bytes = 0, .sync = store_sync_mode()};
  cas_store *s2 = NULL;

  bad.hash[3] = 'X';
  bad.size = 5;
  assert_int_equal(cas_store_has(f->s, &bad), 0);
  assert_int_equal(cas_store_put(f->s, &bad, "12345", 5), DB_EINVAL);
  /* A second open of the same root is refused (flock). */
  assert_int_equal(cas_store_open(&o, &s2), DB_EEXIST);
  assert_null(s2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_sync, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_group_commit, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_format_choice, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reopen_rebuilds_index, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_tmp_cleaned_at_open, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_crashed_writer_leaves_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_lru_eviction, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lru_order_after_reopen, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_reader_survives_eviction, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_corruption_detected, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_action_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
  };
  db_log_set_level(DB_LOG_ERROR - 1); /* corruption tests log on purpose */
  return cmocka_run_group_tests(tests, NULL, NULL);
}
