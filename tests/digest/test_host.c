/* Unit tests for reapi/reapi_host.c: the ISA name and the CPU identity
 * that -C target-cpu=native actions are matched on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "db_err.h"
#include "reapi_host.h"

#define X86(model, flags)                                                      \
  "processor\t: 0\n"                                                           \
  "vendor_id\t: GenuineIntel\n"                                                \
  "cpu family\t: 6\n"                                                          \
  "model\t\t: " model "\n"                                                     \
  "model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz\n"                             \
  "stepping\t: 3\n"                                                            \
  "cpu MHz\t\t: 2000.170\n"                                                    \
  "flags\t\t: " flags "\n"                                                     \
  "bugs\t\t: spectre_v1\n"                                                     \
  "\n"

static void id_of(const char *text, char *buf, size_t len) {
  assert_int_equal(reapi_host_cpu_parse(text, buf, len), 0);
}

static void test_x86(void **state) {
  char a[128], b[128];
  (void)state;
  id_of(X86("85", "fpu sse sse2 avx2"), a, sizeof(a));
  /* vendor-family-model-16 hex digits of the flags' hash */
  assert_int_equal(strncmp(a, "GenuineIntel-6-85-", 18), 0);
  assert_int_equal(strlen(a), 18 + 16);
  assert_int_equal(strspn(a + 18, "0123456789abcdef"), 16);
  /* The kernel's order of the flags does not matter, spacing neither. */
  id_of(X86("85", "avx2  sse2 fpu sse"), b, sizeof(b));
  assert_string_equal(a, b);
  /* A feature more, or another model, is another CPU. */
  id_of(X86("85", "fpu sse sse2 avx2 avx512f"), b, sizeof(b));
  assert_string_not_equal(a, b);
  id_of(X86("106", "fpu sse sse2 avx2"), b, sizeof(b));
  assert_string_not_equal(a, b);
  assert_int_equal(strncmp(b, "GenuineIntel-6-106-", 19), 0);
  /* Only the first processor's block counts (the rest repeat it; the
   * stepping, speed and bug list are not part of it). */
  id_of(X86("85", "fpu sse sse2 avx2") X86("99", "fpu"), b, sizeof(b));
  assert_string_equal(a, b);
}

static void test_arm(void **state) {
  const char *neo = "processor\t: 0\n"
                    "BogoMIPS\t: 243.75\n"
                    "Features\t: fp asimd evtstrm aes crc32 atomics\n"
                    "CPU implementer\t: 0x41\n"
                    "CPU architecture: 8\n"
                    "CPU variant\t: 0x3\n"
                    "CPU part\t: 0xd0c\n"
                    "CPU revision\t: 1\n";
  const char *other = "processor\t: 0\n"
                      "Features\t: fp asimd evtstrm aes crc32 atomics\n"
                      "CPU implementer\t: 0x41\n"
                      "CPU architecture: 8\n"
                      "CPU variant\t: 0x1\n"
                      "CPU part\t: 0xd40\n";
  char a[128], b[128];
  (void)state;
  id_of(neo, a, sizeof(a));
  assert_int_equal(strncmp(a, "arm-0x41-8-0x3-0xd0c-", 21), 0);
  id_of(other, b, sizeof(b));
  assert_string_not_equal(a, b);
}

static void test_bad(void **state) {
  char buf[128], tiny[8];
  (void)state;
  assert_int_equal(reapi_host_cpu_parse("", buf, sizeof(buf)), DB_EUNSUPP);
  assert_int_equal(
      reapi_host_cpu_parse("processor\t: 0\nmodel\t: 3\n", buf, sizeof(buf)),
      DB_EUNSUPP);
  assert_int_equal(reapi_host_cpu_parse(X86("85", "fpu"), tiny, sizeof(tiny)),
                   DB_EINVAL);
  /* No flags line: still an identity (of a CPU that reports none). */
  assert_int_equal(reapi_host_cpu_parse("vendor_id\t: X\ncpu family\t: 1\n"
                                        "model\t: 2\n",
                                        buf, sizeof(buf)),
                   0);
  assert_int_equal(strncmp(buf, "X-1-2-", 6), 0);
}

static void test_this_machine(void **state) {
  struct utsname u;
  char isa[64], cpu[128], again[128];
  (void)state;
  assert_int_equal(uname(&u), 0);
  assert_int_equal(reapi_host_isa(isa, sizeof(isa)), 0);
  assert_string_equal(isa,
                      strcmp(u.machine, "x86_64") == 0 ? "x86-64" : u.machine);
  assert_int_equal(reapi_host_isa(isa, 3), DB_EINVAL);
  /* Linux on x86 or Arm: /proc/cpuinfo names the CPU, the same each time. */
  assert_int_equal(reapi_host_cpu(cpu, sizeof(cpu)), 0);
  assert_int_equal(reapi_host_cpu(again, sizeof(again)), 0);
  assert_string_equal(cpu, again);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_x86),
      cmocka_unit_test(test_arm),
      cmocka_unit_test(test_bad),
      cmocka_unit_test(test_this_machine),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
