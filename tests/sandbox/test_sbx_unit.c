/* Unit tests for the sandbox's pure parts: cgroup file parsers, the probe
 * line, the request API's validation and the child-safe helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "db_err.h"
#include "sandbox.h"
#include "sbx_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_parse_kv(void **state) {
  const char *oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  const char *ev = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n";
  uint64_t v = 0;
  (void)state;
  assert_int_equal(sbx_cgroup_parse_kv(oom, "oom_kill", &v), 0);
  assert_int_equal(v, 3);
  /* "oom" must not match "oom_kill" nor "oom_kill_disable". */
  assert_int_equal(sbx_cgroup_parse_kv(ev, "oom", &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(sbx_cgroup_parse_kv(ev, "max", &v), 0);
  assert_int_equal(v, 12);
  assert_int_equal(sbx_cgroup_parse_kv(ev, "absent", &v), DB_ENOTFOUND);
  assert_int_equal(sbx_cgroup_parse_kv("", "x", &v), DB_ENOTFOUND);
}

static void test_parse_self(void **state) {
  const char *hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n"
                       "2:cpuacct:/acct\n1:cpu:/c\n0::/\n";
  const char *merged = "3:cpu,cpuacct:/x/y\n0::/user.slice/w\n";
  char out[256];
  (void)state;
  assert_int_equal(sbx_cgroup_parse_self(hybrid, "memory", out, sizeof(out)),
                   0);
  assert_string_equal(out, "/process_api/abc");
  /* Exact token match: "cpu" is not "cpuacct". */
  assert_int_equal(sbx_cgroup_parse_self(hybrid, "cpu", out, sizeof(out)), 0);
  assert_string_equal(out, "/c");
  assert_int_equal(sbx_cgroup_parse_self(hybrid, "", out, sizeof(out)), 0);
  assert_string_equal(out, "/");
  assert_int_equal(sbx_cgroup_parse_self(merged, "cpu", out, sizeof(out)), 0);
  assert_string_equal(out, "/x/y");
  assert_int_equal(sbx_cgroup_parse_self(merged, "", out, sizeof(out)), 0);
  assert_string_equal(out, "/user.slice/w");
  assert_int_equal(sbx_cgroup_parse_self(merged, "pids", out, sizeof(out)),
                   DB_ENOTFOUND);
  assert_int_equal(sbx_cgroup_parse_self(hybrid, "memory", out, 4), DB_ETOOBIG);
}

static void test_format_full(void **state) {
  sbx_features f;
  char line[512];
  (void)state;
  memset(&f, 0, sizeof(f));
  f.ns = SBX_NS_ALL;
  f.sandbox_ok = f.seccomp = f.caps = f.mount_api = 1;
  f.cgroup = SBX_CGROUP_V1;
  f.cgroup_ctrl = SBX_CTRL_MEMORY | SBX_CTRL_PIDS | SBX_CTRL_CPU;
  f.host_uid = 65534;
  sbx_features_format(&f, line, sizeof(line));
  assert_string_equal(line, "sandbox: namespaces=user,mount,pid,net,ipc,uts "
                            "seccomp=on caps=dropped cgroup=v1(memory,pids,"
                            "cpu) limits=memory,pids,cpu,timeout uid=65534");
}

static void test_format_missing(void **state) {
  sbx_features f;
  char line[512];
  (void)state;
  memset(&f, 0, sizeof(f));
  f.ns = SBX_NS_ALL & ~SBX_NS_NET;
  f.seccomp = f.caps = f.mount_api = 1;
  f.cgroup = SBX_CGROUP_V2;
  f.cgroup_ctrl = SBX_CTRL_MEMORY | SBX_CTRL_PIDS;
  snprintf(f.detail, sizeof(f.detail),
           "net namespace: Operation not permitted");
  sbx_features_format(&f, line, sizeof(line));
  assert_non_null(strstr(line, "namespaces=user,mount,pid,ipc,uts "));
  assert_non_null(strstr(line, "cgroup=v2(memory,pids)"));
  assert_non_null(strstr(line, "unavailable=net-ns,cpu-limit"));
  assert_non_null(strstr(line, "(net namespace: Operation not permitted)"));
  /* Truncation keeps the buffer terminated. */
  assert_int_equal(sbx_features_format(&f, line, 10), 9);
  assert_int_equal(strlen(line), 9);
}

static void test_mode_parse(void **state) {
  sbx_mode m;
  (void)state;
  assert_int_equal(sbx_mode_parse("none", &m), 0);
  assert_int_equal(m, SBX_MODE_NONE);
  assert_int_equal(sbx_mode_parse("namespaces", &m), 0);
  assert_int_equal(m, SBX_MODE_NAMESPACES);
  assert_int_equal(sbx_mode_parse("off", &m), DB_EINVAL);
}

static void test_request_validation(void **state) {
  sbx_request *r = NULL;
  const char *empty[] = {NULL};
  const char *argv[] = {"/bin/true", NULL};
  (void)state;
  assert_int_equal(sbx_request_new(&r), 0);
  assert_int_equal(sbx_request_set_argv(r, empty), DB_EINVAL);
  assert_int_equal(sbx_request_set_argv(r, NULL), DB_EINVAL);
  assert_int_equal(sbx_request_set_argv(r, argv), 0);
  assert_int_equal(sbx_request_set_cwd(r, "relative"), DB_EINVAL);
  assert_int_equal(sbx_request_add_mount(r, SBX_MOUNT_RO_BIND, "rel", "/x"),
                   DB_EINVAL);
  assert_int_equal(sbx_request_add_mount(r, SBX_MOUNT_RO_BIND, "/x", "rel"),
                   DB_EINVAL);
  assert_int_equal(sbx_request_add_mount(r, SBX_MOUNT_TMPFS, NULL, "/t"), 0);
  assert_int_equal(sbx_request_set_stdio_fd(r, 3, 1), DB_EINVAL);
  assert_int_equal(sbx_request_set_stdio_path(r, 1, "/dev/null"), 0);
  assert_int_equal(sbx_request_add_default_layout(r), 0);
  sbx_request_free(r);
  sbx_request_free(NULL);
}

static void test_util_append_uint(void **state) {
  char buf[16] = "/proc/self/fd/";
  char small[4] = "ab";
  (void)state;
  assert_int_equal(sbx_util_append_uint(buf, sizeof(buf), 7), 0);
  assert_string_equal(buf, "/proc/self/fd/7");
  buf[0] = '\0';
  assert_int_equal(sbx_util_append_uint(buf, sizeof(buf), 4294967295u), 0);
  assert_string_equal(buf, "4294967295");
  buf[0] = '\0';
  assert_int_equal(sbx_util_append_uint(buf, sizeof(buf), 0), 0);
  assert_string_equal(buf, "0");
  /* "ab" + "1" + NUL fits in 4; "ab" + "12" + NUL does not, untouched. */
  assert_int_equal(sbx_util_append_uint(small, sizeof(small), 1), 0);
  assert_string_equal(small, "ab1");
  small[2] = '\0';
  assert_int_equal(sbx_util_append_uint(small, sizeof(small), 12),
                   -ENAMETOOLONG);
  assert_string_equal(small, "ab");
}

static void test_util_join_mkdir(void **state) {
  char buf[8], dir[64], path[128];
  struct stat st;
  (void)state;
  assert_int_equal(sbx_util_join(buf, sizeof(buf), "/tmp", "/x"), 0);
  assert_string_equal(buf, "/tmp/x");
  assert_int_equal(sbx_util_join(buf, sizeof(buf), "/tmp", "/xyz"),
                   -ENAMETOOLONG);
  snprintf(dir, sizeof(dir), "/tmp/sbx-unit-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/a/b/c", dir);
  assert_int_equal(sbx_util_mkdir_p(path, 0755), 0);
  assert_int_equal(sbx_util_mkdir_p(path, 0755), 0); /* idempotent */
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  rmdir(path);
  snprintf(path, sizeof(path), "%s/a/b", dir);
  rmdir(path);
  snprintf(path, sizeof(path), "%s/a", dir);
  rmdir(path);
  rmdir(dir);
}

static void test_util_close_except(void **state) {
  int a, b, c;
  pid_t pid;
  int st;
  (void)state;
  a = open("/dev/null", O_RDONLY);
  b = open("/dev/null", O_RDONLY);
  c = open("/dev/null", O_RDONLY);
  pid = fork();
  if (pid == 0) {
    int keep[] = {0, 1, 2, c, -1, c};
    sbx_util_close_except(keep, 6);
    _exit(fcntl(a, F_GETFD) == -1 && fcntl(b, F_GETFD) == -1 &&
                  fcntl(c, F_GETFD) != -1 && fcntl(2, F_GETFD) != -1
              ? 0
              : 1);
  }
  assert_true(pid > 0);
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  close(a);
  close(b);
  close(c);
}

/* A request the spawner gets (sbx_wire.c): every field as the caller set
 * it, the default layout's symlinks included. */
static sbx_request *rich_request(void) {
  const char *argv[] = {"rustc", "--crate-name", "x", "", "a b\tc", NULL};
  const char *env[] = {"PATH=/usr/bin", "EMPTY=", NULL};
  sbx_limits lim = {123456789012ull, 77, 1500, 9, 60000, 1u << 30, 5};
  sbx_request *r = NULL;
  assert_int_equal(sbx_request_new(&r), 0);
  assert_int_equal(sbx_request_set_argv(r, argv), 0);
  assert_int_equal(sbx_request_set_env(r, env), 0);
  assert_int_equal(sbx_request_set_cwd(r, "/w/src"), 0);
  assert_int_equal(sbx_request_add_default_layout(r), 0);
  assert_int_equal(sbx_request_add_mount(r, SBX_MOUNT_RW_BIND, "/tmp", "/w"),
                   0);
  assert_int_equal(sbx_request_add_dev(r, "/dev/null", "jobserver"), 0);
  sbx_request_set_limits(r, &lim);
  sbx_request_set_mode(r, SBX_MODE_NONE);
  return r;
}

static void test_wire_roundtrip(void **state) {
  sbx_request *r = rich_request(), *d = NULL;
  unsigned char *buf = NULL;
  size_t len = 0;
  (void)state;
  assert_int_equal(sbx_wire_encode(r, &buf, &len), 0);
  assert_int_equal(sbx_wire_decode(buf, len, &d), 0);
  assert_true(sbx_wire_equal(r, d));
  /* The comparison itself can tell two requests apart. */
  assert_int_equal(sbx_request_set_cwd(d, "/w"), 0);
  assert_false(sbx_wire_equal(r, d));
  sbx_request_free(d);
  free(buf);
  sbx_request_free(r);
}

/* Anything the encoder could not have written is DB_EINVAL: every
 * truncation, trailing bytes, a bad magic, an embedded NUL, a count
 * larger than the bytes left, an unknown mount kind. */
static void test_wire_malformed(void **state) {
  sbx_request *r = rich_request(), *d = NULL;
  unsigned char *buf = NULL, *big;
  size_t len = 0, argc_off = 4 * 3 + 8 * 3 + 4 * 4;
  uint32_t v;
  (void)state;
  assert_int_equal(sbx_wire_encode(r, &buf, &len), 0);
  for (size_t n = 0; n < len; n++) {
    assert_int_equal(sbx_wire_decode(buf, n, &d), DB_EINVAL);
    assert_null(d);
  }
  big = malloc(len + 1);
  assert_non_null(big);
  memcpy(big, buf, len);
  big[len] = 0;
  assert_int_equal(sbx_wire_decode(big, len + 1, &d), DB_EINVAL);
  free(big);
  buf[0] ^= 1; /* magic */
  assert_int_equal(sbx_wire_decode(buf, len, &d), DB_EINVAL);
  buf[0] ^= 1;
  memcpy(&v, buf + argc_off, 4); /* argc, then "rustc" */
  assert_int_equal(v, 5);
  v = 0x7fffffff;
  memcpy(buf + argc_off, &v, 4);
  assert_int_equal(sbx_wire_decode(buf, len, &d), DB_EINVAL);
  v = 5;
  memcpy(buf + argc_off, &v, 4);
  buf[argc_off + 8 + 2] = '\0'; /* "ru\0tc" */
  assert_int_equal(sbx_wire_decode(buf, len, &d), DB_EINVAL);
  buf[argc_off + 8 + 2] = 's';
  assert_int_equal(sbx_wire_decode(buf, len, &d), 0);
  sbx_request_free(d);
  free(buf);
  /* An unknown mount kind, and a relative bind source. */
  r->mounts[r->n_mounts - 1].kind = 7;
  assert_int_equal(sbx_wire_encode(r, &buf, &len), 0);
  assert_int_equal(sbx_wire_decode(buf, len, &d), DB_EINVAL);
  free(buf);
  r->mounts[r->n_mounts - 1].kind = SBX_MOUNT_RW_BIND;
  r->mounts[r->n_mounts - 1].src[0] = 't';
  assert_int_equal(sbx_wire_encode(r, &buf, &len), 0);
  assert_int_equal(sbx_wire_decode(buf, len, &d), DB_EINVAL);
  free(buf);
  sbx_request_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_util_append_uint),
      cmocka_unit_test(test_parse_kv),
      cmocka_unit_test(test_parse_self),
      cmocka_unit_test(test_format_full),
      cmocka_unit_test(test_format_missing),
      cmocka_unit_test(test_mode_parse),
      cmocka_unit_test(test_request_validation),
      cmocka_unit_test(test_util_join_mkdir),
      cmocka_unit_test(test_util_close_except),
      cmocka_unit_test(test_wire_roundtrip),
      cmocka_unit_test(test_wire_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
