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
#include "test_util.h"

static char g_mnt[256];

static void test_disk_full(void **state) {
  cas_store_opts o = {g_mnt, 0, 0};
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

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_disk_full)};
  int rv;

  tu_tmpdir(g_mnt, sizeof(g_mnt));
  if (mount("tmpfs", g_mnt, "tmpfs", 0, "size=1m") != 0) {
    fprintf(stderr, "SKIP: cannot mount tmpfs: %s\n", strerror(errno));
    rmdir(g_mnt);
    return 77;
  }
  db_log_set_level(DB_LOG_ERROR);
  rv = cmocka_run_group_tests(tests, NULL, NULL);
  umount2(g_mnt, MNT_DETACH);
  rmdir(g_mnt);
  return rv;
}
