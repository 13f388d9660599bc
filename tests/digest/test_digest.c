/*
 * Unit tests for reapi/reapi_digest.c: SHA-256 digests (FIPS 180-2 test
 * vectors), incremental hashing, and the strict "HASH/SIZE" parser that
 * guards ByteStream resource names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "db_err.h"
#include "reapi_digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY_HASH                                                             \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_HASH                                                               \
  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define MILLION_A_HASH                                                         \
  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

/* ------------------------------------------------------------- hashing */

static void test_empty_blob(void **state) {
  reapi_digest d;
  reapi_digest_of(NULL, 0, &d);
  assert_string_equal(d.hash, EMPTY_HASH);
  assert_int_equal(d.size, 0);
  assert_true(reapi_digest_eq(&d, &reapi_digest_empty));
  assert_string_equal(reapi_digest_empty.hash, EMPTY_HASH);
  assert_int_equal(reapi_digest_empty.size, 0);
}

static void test_known_vectors(void **state) {
  static const struct {
    const char *in;
    const char *hash;
  } v[] = {
      {"abc", ABC_HASH},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {"The quick brown fox jumps over the lazy dog",
       "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
  };
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
    reapi_digest d;
    reapi_digest_of(v[i].in, strlen(v[i].in), &d);
    assert_string_equal(d.hash, v[i].hash);
    assert_int_equal(d.size, (int64_t)strlen(v[i].in));
  }
}

/* Binary data: embedded NULs must be hashed, not treated as terminators. */
static void test_binary_data(void **state) {
  static const unsigned char bytes[] = {'a', 0, 'b'};
  reapi_digest with_nul, prefix;
  reapi_digest_of(bytes, sizeof(bytes), &with_nul);
  reapi_digest_of(bytes, 1, &prefix);
  assert_int_equal(with_nul.size, 3);
  assert_string_not_equal(with_nul.hash, prefix.hash);
}

static void test_hasher_matches_one_shot(void **state) {
  const size_t total = 1000000;
  static const size_t chunks[] = {1, 7, 64, 1000, 65536, 1000000};
  char *buf = malloc(total);
  reapi_digest one;
  assert_non_null(buf);
  memset(buf, 'a', total);
  reapi_digest_of(buf, total, &one);
  assert_string_equal(one.hash, MILLION_A_HASH);
  assert_int_equal(one.size, (int64_t)total);

  /* Chunk sizes straddle SHA-256's 64-byte block in every way. */
  for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
    reapi_hasher *h = reapi_hasher_new();
    reapi_digest inc;
    assert_non_null(h);
    for (size_t off = 0; off < total; off += chunks[c]) {
      size_t n = total - off < chunks[c] ? total - off : chunks[c];
      reapi_hasher_update(h, buf + off, n);
      reapi_hasher_update(h, NULL, 0); /* empty updates are no-ops */
    }
    reapi_hasher_final(h, &inc);
    assert_true(reapi_digest_eq(&inc, &one));
  }
  free(buf);
}

static void test_hasher_empty_and_discard(void **state) {
  reapi_digest d;
  reapi_hasher *h = reapi_hasher_new();
  assert_non_null(h);
  reapi_hasher_final(h, &d);
  assert_true(reapi_digest_eq(&d, &reapi_digest_empty));

  /* Discarding mid-stream must not leak (checked under ASan). */
  h = reapi_hasher_new();
  assert_non_null(h);
  reapi_hasher_update(h, "abc", 3);
  reapi_hasher_free(h);
  reapi_hasher_free(NULL);
}

/* ------------------------------------------------------------- set / eq */

static void test_set(void **state) {
  reapi_digest d;
  assert_int_equal(reapi_digest_set(&d, ABC_HASH, 3), 0);
  assert_string_equal(d.hash, ABC_HASH);
  assert_int_equal(d.size, 3);
  assert_int_equal(reapi_digest_set(&d, EMPTY_HASH, 0), 0);

  assert_int_equal(reapi_digest_set(&d, NULL, 0), DB_EINVAL);
  assert_int_equal(reapi_digest_set(&d, ABC_HASH, -1), DB_EINVAL);
  assert_int_equal(reapi_digest_set(&d, "", 0), DB_EINVAL);
  assert_int_equal(reapi_digest_set(&d, ABC_HASH "0", 3), DB_EINVAL);
  assert_int_equal(
      reapi_digest_set(
          &d, "a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
          3),
      DB_EINVAL);
  assert_int_equal(
      reapi_digest_set(
          &d,
          "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
          3),
      DB_EINVAL);
}

static void test_eq(void **state) {
  reapi_digest a, b;
  assert_int_equal(reapi_digest_set(&a, ABC_HASH, 3), 0);
  b = a;
  assert_true(reapi_digest_eq(&a, &b));
  b.size = 4; /* same hash, other size: a different digest */
  assert_false(reapi_digest_eq(&a, &b));
  b = a;
  b.hash[63] = 'e';
  assert_false(reapi_digest_eq(&a, &b));
}

/* ---------------------------------------------------------------- parse */

static int parse(const char *s, reapi_digest *d) {
  return reapi_digest_parse(s, strlen(s), d);
}

static void test_parse_accepts(void **state) {
  reapi_digest d;
  assert_int_equal(parse(ABC_HASH "/123", &d), 0);
  assert_string_equal(d.hash, ABC_HASH);
  assert_int_equal(d.size, 123);

  assert_int_equal(parse(EMPTY_HASH "/0", &d), 0);
  assert_true(reapi_digest_eq(&d, &reapi_digest_empty));

  assert_int_equal(parse(ABC_HASH "/1099511627776", &d), 0);
  assert_int_equal(d.size, INT64_C(1099511627776));

  /* Largest value the overflow guard lets through. */
  assert_int_equal(parse(ABC_HASH "/9223372036854775799", &d), 0);
  assert_int_equal(d.size, INT64_C(9223372036854775799));
}

/* Only len bytes are read, so a digest can be parsed in place inside a
 * longer resource name ("blobs/HASH/SIZE/metadata"). */
static void test_parse_respects_len(void **state) {
  const char *s = ABC_HASH "/123/optional/metadata";
  reapi_digest d;
  assert_int_equal(reapi_digest_parse(s, REAPI_HASH_HEX_LEN + 4, &d), 0);
  assert_int_equal(d.size, 123);
  assert_int_equal(reapi_digest_parse(s, REAPI_HASH_HEX_LEN + 3, &d), 0);
  assert_int_equal(d.size, 12);
  /* The whole string has trailing junk after the size. */
  assert_int_equal(parse(s, &d), DB_EINVAL);
  /* Too short to hold a hash, slash and one digit. */
  assert_int_equal(reapi_digest_parse(s, REAPI_HASH_HEX_LEN + 1, &d),
                   DB_EINVAL);
  assert_int_equal(reapi_digest_parse(s, 0, &d), DB_EINVAL);
}

static void test_parse_rejects(void **state) {
  static const char *const bad[] = {
      /* hash */
      "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD/3",
      "Ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/3",
      "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/3",
      "a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/3",
      ABC_HASH "0/3",
      "/3",
      /* separator and size */
      ABC_HASH,
      ABC_HASH "/",
      ABC_HASH "-3",
      ABC_HASH "/-1",
      ABC_HASH "/+1",
      ABC_HASH "/ 1",
      ABC_HASH "/0123",
      ABC_HASH "/00",
      ABC_HASH "/9223372036854775808",
      ABC_HASH "/18446744073709551616",
      ABC_HASH "/99999999999999999999999",
      ABC_HASH "/123x",
      ABC_HASH "/123 ",
      ABC_HASH "/123/",
      ABC_HASH "/1.5",
      ABC_HASH "/0x10",
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    reapi_digest d;
    if (parse(bad[i], &d) != DB_EINVAL)
      fail_msg("accepted bad digest string \"%s\"", bad[i]);
  }
}

/* A NUL inside the hash part must not shorten it silently. */
static void test_parse_rejects_embedded_nul(void **state) {
  char s[] = ABC_HASH "/3";
  reapi_digest d;
  s[10] = '\0';
  assert_int_equal(reapi_digest_parse(s, sizeof(s) - 1, &d), DB_EINVAL);
  s[10] = 'f';
  s[REAPI_HASH_HEX_LEN + 1] = '\0';
  assert_int_equal(reapi_digest_parse(s, sizeof(s) - 1, &d), DB_EINVAL);
}

static void test_str_round_trip(void **state) {
  reapi_digest a, b;
  char buf[REAPI_DIGEST_STR_MAX];
  assert_int_equal(reapi_digest_set(&a, ABC_HASH, INT64_C(4294967296)), 0);
  assert_ptr_equal(reapi_digest_str(&a, buf), buf);
  assert_string_equal(buf, ABC_HASH "/4294967296");
  assert_int_equal(parse(buf, &b), 0);
  assert_true(reapi_digest_eq(&a, &b));

  reapi_digest_str(&reapi_digest_empty, buf);
  assert_string_equal(buf, EMPTY_HASH "/0");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_blob),
      cmocka_unit_test(test_known_vectors),
      cmocka_unit_test(test_binary_data),
      cmocka_unit_test(test_hasher_matches_one_shot),
      cmocka_unit_test(test_hasher_empty_and_discard),
      cmocka_unit_test(test_set),
      cmocka_unit_test(test_eq),
      cmocka_unit_test(test_parse_accepts),
      cmocka_unit_test(test_parse_respects_len),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_parse_rejects_embedded_nul),
      cmocka_unit_test(test_str_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
