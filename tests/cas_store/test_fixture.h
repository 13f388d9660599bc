/*
 * Shared cmocka fixture for the store tests: a fresh store in a temp
 * directory per test. Include after cmocka.h and test_util.h.
 */
#ifndef CAS_STORE_TEST_FIXTURE_H
#define CAS_STORE_TEST_FIXTURE_H

typedef struct fixture {
  char root[256];
  cas_store *s;
} fixture;

static inline cas_store *open_store(const char *root, uint64_t max_bytes) {
  cas_store_opts o = {
      .root = root, .max_bytes = max_bytes, .sync = store_sync_mode()};
  cas_store *s = NULL;
  assert_int_equal(cas_store_open(&o, &s), 0);
  return s;
}

static inline int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  tu_tmpdir(f->root, sizeof(f->root));
  f->s = open_store(f->root, 0);
  *state = f;
  return 0;
}

static inline int teardown(void **state) {
  fixture *f = *state;
  cas_store_close(f->s);
  tu_rm_rf(f->root);
  free(f);
  return 0;
}

#endif
