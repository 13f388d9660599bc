/*
 * Disk-full behaviour of cas/cas_store.c on a real, small tmpfs.
 * Needs mount(2) (root); exits 77 (ctest SKIP_RETURN_CODE) otherwise.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/mount.h>

#include "db_err.h"
#include "db_log.h"
#include "store_mode.h"
#include "test_util.h"

static char g_mnt[256], g_mnt2[256];

static void test_disk_full(void **state) {
  cas_store_opts o = {.root = g_mnt, .max_bytes = 0, .sync = store_sync_mode()};
  cas_store *s = NULL;
  enum { SZ = 200 * 1024, MAXB = 16 };
  uint8_t *p = malloc(SZ);
  reapi_digest d[MAXB], full;
  cas_writer *w = NULL;
  cas_store_stats st;
  int stored = 0, rv = 0;
  (void)state;

  assert_int_equal(cas_store_open(&o, &s), 0);
  /* Random data stays raw, so each blob really takes SZ bytes. */
  for (int i = 0; i < MAXB; i++) {
    tu_fill_random(p, SZ, (uint64_t)i + 1);
    reapi_digest_of(p, SZ, &d[i]);
    rv = cas_store_put(s, &d[i], p, SZ);
    if (rv != 0)
      break;
    stored++;
  }
  assert_int_equal(rv, DB_ENOSPC);
  assert_true(stored >= 1 && stored < MAXB);
  full = d[stored];
  assert_int_equal(cas_store_has(s, &full), 0);
  assert_int_equal(tu_count_files(g_mnt, "tmp", NULL), 0);
  assert_int_equal(tu_count_files(g_mnt, "cas", NULL), stored);
  cas_store_get_stats(s, &st);
  assert_int_equal(st.blobs, (uint64_t)stored);

  /* The streaming writer fails the same way and cleans up. */
  assert_int_equal(cas_writer_new(s, &full, 0, &w), 0);
  tu_fill_random(p, SZ, (uint64_t)stored + 1);
  rv = cas_writer_write(w, p, SZ);
  if (rv == 0)
    rv = cas_writer_commit(w);
  else
    cas_writer_abort(w);
  assert_int_equal(rv, DB_ENOSPC);
  assert_int_equal(cas_store_has(s, &full), 0);
  assert_int_equal(tu_count_files(g_mnt, "tmp", NULL), 0);

  /* The action cache too. */
  assert_int_equal(cas_ac_put(s, &full, p, SZ), DB_ENOSPC);
  assert_int_equal(tu_count_files(g_mnt, "tmp", NULL), 0);

  /* What was stored before is intact. */
  for (int i = 0; i < stored; i++) {
    uint8_t *got = NULL;
    size_t len = 0;
    tu_fill_random(p, SZ, (uint64_t)i + 1);
    assert_int_equal(cas_store_get(s, &d[i], &got, &len), 0);
    assert_int_equal(len, SZ);
    assert_memory_equal(got, p, SZ);
    free(got);
  }
  cas_store_close(s);
  free(p);
}

/* A batch that does not fit: the blobs that fit are stored, the others
 * fail with DB_ENOSPC and leave no temp file; the index matches the disk,
 * also after a reopen. Runs on its own tmpfs (g_mnt2). */
static void test_batch_disk_full(void **state) {
  cas_store_opts o = {
      .root = g_mnt2, .max_bytes = 0, .sync = store_sync_mode()};
  cas_store *s = NULL;
  enum { SZ = 150 * 1024, N = 10 };
  uint8_t *buf = malloc((size_t)N * SZ), small[3000];
  reapi_digest d[N + 1];
  const void *p[N + 1];
  size_t l[N + 1];
  int r[N + 1], ok = 0, ok2 = 0;
  cas_store_stats st;
  (void)state;

  assert_int_equal(cas_store_open(&o, &s), 0);
  for (int i = 0; i < N; i++) {
    p[i] = buf + (size_t)i * SZ;
    l[i] = SZ;
    tu_fill_random(buf + (size_t)i * SZ, SZ, (uint64_t)i + 100);
    reapi_digest_of(p[i], SZ, &d[i]);
  }
  /* 1.5 MB of random (raw) data into 1 MB. */
  assert_int_equal(cas_store_put_batch(s, N, d, p, l, r), 0);
  for (int i = 0; i < N; i++) {
    assert_true(r[i] == 0 || r[i] == DB_ENOSPC);
    ok += r[i] == 0;
    assert_int_equal(cas_store_has(s, &d[i]), r[i] == 0);
  }
  assert_true(ok >= 1 && ok < N);
  assert_int_equal(tu_count_files(g_mnt2, "tmp", NULL), 0);
  assert_int_equal(tu_count_files(g_mnt2, "cas", NULL), ok);
  cas_store_get_stats(s, &st);
  assert_int_equal(st.blobs, (uint64_t)ok);
  assert_int_equal(st.stored_bytes, (uint64_t)ok * SZ);

  /* Again, with a small blob that still fits: the stored ones are cheap
   * successes, the rest fail again, the small one is stored. */
  tu_fill_random(small, sizeof(small), 7);
  p[N] = small;
  l[N] = sizeof(small);
  reapi_digest_of(small, sizeof(small), &d[N]);
  assert_int_equal(cas_store_put_batch(s, N + 1, d, p, l, r), 0);
  for (int i = 0; i < N; i++) {
    assert_true(r[i] == 0 || r[i] == DB_ENOSPC);
    assert_int_equal(cas_store_has(s, &d[i]), r[i] == 0);
    ok2 += r[i] == 0;
  }
  assert_int_equal(ok2, ok);
  assert_int_equal(r[N], 0);
  assert_int_equal(tu_count_files(g_mnt2, "tmp", NULL), 0);
  assert_int_equal(tu_count_files(g_mnt2, "cas", NULL), ok + 1);

  /* The index rebuilt from disk agrees, and the contents are intact. */
  cas_store_close(s);
  assert_int_equal(cas_store_open(&o, &s), 0);
  cas_store_get_stats(s, &st);
  assert_int_equal(st.blobs, (uint64_t)ok + 1);
  for (int i = 0; i < N; i++) {
    uint8_t *got = NULL;
    size_t len = 0;
    if (!cas_store_has(s, &d[i]))
      continue;
    assert_int_equal(cas_store_get(s, &d[i], &got, &len), 0);
    assert_int_equal(len, SZ);
    assert_memory_equal(got, p[i], SZ);
    free(got);
  }
  cas_store_close(s);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_disk_full),
                                     cmocka_unit_test(test_batch_disk_full)};
  int rv;

  tu_tmpdir(g_mnt, sizeof(g_mnt));
  tu_tmpdir(g_mnt2, sizeof(g_mnt2));
  if (mount("tmpfs", g_mnt, "tmpfs", 0, "size=1m") != 0 ||
      mount("tmpfs", g_mnt2, "tmpfs", 0, "size=1m") != 0) {
    fprintf(stderr, "SKIP: cannot mount tmpfs: %s\n", strerror(errno));
    umount2(g_mnt, MNT_DETACH);
    rmdir(g_mnt);
    rmdir(g_mnt2);
    return 77;
  }
  db_log_set_level(DB_LOG_ERROR);
  rv = cmocka_run_group_tests(tests, NULL, NULL);
  umount2(g_mnt, MNT_DETACH);
  umount2(g_mnt2, MNT_DETACH);
  rmdir(g_mnt);
  rmdir(g_mnt2);
  return rv;
}
