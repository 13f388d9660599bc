/* Unit tests for ByteStream resource-name parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cas_resource.h"
#include "db_err.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_read_names(void **state) {
  cas_resource r;
  (void)state;
  assert_int_equal(cas_resource_parse("blobs/" H64 "/42", 0, &r), 0);
  assert_string_equal(r.digest.hash, H64);
  assert_int_equal(r.digest.size, 42);
  assert_int_equal(r.compressor, CAS_COMPRESSOR_IDENTITY);
  assert_string_equal(r.instance, "");

  assert_int_equal(
      cas_resource_parse("a/b/compressed-blobs/zstd/" H64 "/7", 0, &r), 0);
  assert_string_equal(r.instance, "a/b");
  assert_int_equal(r.compressor, CAS_COMPRESSOR_ZSTD);
  assert_int_equal(r.digest.size, 7);

  /* An explicit sha256 segment is tolerated. */
  assert_int_equal(cas_resource_parse("blobs/sha256/" H64 "/1", 0, &r), 0);
}

static void test_write_names(void **state) {
  cas_resource r;
  (void)state;
  assert_int_equal(
      cas_resource_parse("uploads/u-1/blobs/" H64 "/9/extra/meta", 1, &r), 0);
  assert_string_equal(r.uuid, "u-1");
  assert_int_equal(r.digest.size, 9);
  assert_int_equal(cas_resource_parse(
                       "inst/uploads/u/compressed-blobs/zstd/" H64 "/3", 1, &r),
                   0);
  assert_string_equal(r.instance, "inst");
  assert_int_equal(r.compressor, CAS_COMPRESSOR_ZSTD);
}

static void test_bad_names(void **state) {
  cas_resource r;
  static const char *bad_read[] = {
      "",
      "/blobs/" H64 "/1",
      "blobs/" H64,
      "blobs/" H64 "/",
      "blobs/" H64 "/1/extra",
      "blobs/" H64 "/-1",
      "blobs/" H64 "/01",
      "blobs/ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef01234567/1",
      "blobs/abc/1",
      "uploads/u/blobs/" H64 "/1",
      "compressed-blobs/identity/" H64 "/1",
      "x//blobs/" H64 "/1",
      "blobs/" H64 "/99999999999999999999",
  };
  (void)state;
  for (size_t i = 0; i < sizeof(bad_read) / sizeof(bad_read[0]); i++) {
    int rc = cas_resource_parse(bad_read[i], 0, &r);
    if (rc != DB_EINVAL)
      fail_msg("accepted bad read name '%s' (rc %d)", bad_read[i], rc);
  }
  assert_int_equal(cas_resource_parse("blobs/" H64 "/1", 1, &r), DB_EINVAL);
  assert_int_equal(cas_resource_parse("uploads//blobs/" H64 "/1", 1, &r),
                   DB_EINVAL);
  assert_int_equal(
      cas_resource_parse("compressed-blobs/brotli/" H64 "/1", 0, &r),
      DB_EUNSUPP);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_names),
      cmocka_unit_test(test_write_names),
      cmocka_unit_test(test_bad_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
