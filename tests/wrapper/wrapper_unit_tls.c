/* Unit tests for the client side of TLS and metadata headers: the
 * wrapper's config reader (tls_* keys, remote_headers arrays, lookup order,
 * relative paths, export), header validation and grpcs:// targets in
 * rpc_client_new. No server involved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_err.h"
#include "rpc_client.h"
#include "wrap_config.h"
#include "wrap_util.h"

static char g_tmp[256];

static const char *const k_env[] = {
    "CARGO_DISTBUILD_SCHEDULER",      "CARGO_DISTBUILD_TLS_CA",
    "CARGO_DISTBUILD_TLS_CERT",       "CARGO_DISTBUILD_TLS_KEY",
    "CARGO_DISTBUILD_REMOTE_HEADERS", WRAP_HEADERS_FILE_ENV};

static void clear_env(void) {
  for (size_t i = 0; i < sizeof(k_env) / sizeof(k_env[0]); i++)
    unsetenv(k_env[i]);
}

static int setup_tmp(void **state) {
  (void)state;
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/wrapper-unit-tls-XXXXXX");
  if (mkdtemp(g_tmp) == NULL)
    return 1;
  /* No configuration of the machine running the tests may leak in. */
  clear_env();
  setenv("HOME", g_tmp, 1);
  unsetenv("XDG_CONFIG_HOME");
  return 0;
}

static int teardown_tmp(void **state) {
  char cmd[300];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
  return system(cmd) != 0;
}

static void write_file(const char *path, const char *text) {
  assert_int_equal(wrap_write_atomic(path, text, strlen(text), 0644), 0);
}

static char *tmp_path(const char *rel) {
  char *p = wrap_path_join(g_tmp, rel);
  assert_non_null(p);
  return p;
}

/* got must be g_tmp/rel. */
static void assert_tmp_path(const char *got, const char *rel) {
  char *exp = tmp_path(rel);
  assert_non_null(got);
  assert_string_equal(got, exp);
  free(exp);
}

/* ---- the TOML subset ---- */

static void test_parse_key(void **state) {
  wrap_strv v = {0};
  (void)state;
  assert_int_equal(
      wrap_config_parse_key("tls_ca = \"a b.pem\" # c\n", "tls_ca", &v), 1);
  assert_int_equal(v.n, 1);
  assert_string_equal(v.v[0], "a b.pem");
  wrap_strv_free(&v);
  /* A longer key that starts the same is another key. */
  assert_int_equal(wrap_config_parse_key("tls_ca_x = \"no\"\n[t]\n"
                                         "  tls_ca='C:\\x'\n",
                                         "tls_ca", &v),
                   1);
  assert_string_equal(v.v[0], "C:\\x");
  wrap_strv_free(&v);
  assert_int_equal(wrap_config_parse_key("x = \"q\\\"\\\\\\t\"\n", "x", &v), 1);
  assert_string_equal(v.v[0], "q\"\\\t");
  wrap_strv_free(&v);
  assert_int_equal(wrap_config_parse_key("a = 1\n", "tls_cert", &v), 0);
  assert_int_equal(v.n, 0);
}

static void test_parse_array(void **state) {
  wrap_strv v = {0};
  (void)state;
  assert_int_equal(
      wrap_config_parse_key("remote_headers = [\"authorization=Bearer abc\", "
                            "'x-team=rust']\n",
                            "remote_headers", &v),
      1);
  assert_int_equal(v.n, 2);
  assert_string_equal(v.v[0], "authorization=Bearer abc");
  assert_string_equal(v.v[1], "x-team=rust");
  wrap_strv_free(&v);
  /* Over several lines, with comments and a trailing comma. */
  assert_int_equal(wrap_config_parse_key("scheduler = \"h:1\"\n"
                                         "remote_headers = [\n"
                                         "  \"a=1\", # first\n"
                                         "  # nothing\n"
                                         "  \"b=2\",\n"
                                         "]\n"
                                         "tls_ca = \"x\"\n",
                                         "remote_headers", &v),
                   1);
  assert_int_equal(v.n, 2);
  assert_string_equal(v.v[1], "b=2");
  wrap_strv_free(&v);
  assert_int_equal(
      wrap_config_parse_key("remote_headers = []\n", "remote_headers", &v), 1);
  assert_int_equal(v.n, 0);
  /* Malformed: unterminated, not a string, junk after, bad escape. */
  assert_int_equal(wrap_config_parse_key("remote_headers = [\"a=1\"\n",
                                         "remote_headers", &v),
                   DB_EINVAL);
  wrap_strv_free(&v);
  assert_int_equal(
      wrap_config_parse_key("remote_headers = [1]\n", "remote_headers", &v),
      DB_EINVAL);
  assert_int_equal(wrap_config_parse_key("tls_ca = \"a\" b\n", "tls_ca", &v),
                   DB_EINVAL);
  wrap_strv_free(&v);
  assert_int_equal(wrap_config_parse_key("tls_ca = \"a\n\"\n", "tls_ca", &v),
                   DB_EINVAL);
  assert_int_equal(wrap_config_parse_key("tls_ca = \"\\q\"\n", "tls_ca", &v),
                   DB_EINVAL);
  assert_int_equal(wrap_config_parse_key("tls_ca = x\n", "tls_ca", &v),
                   DB_EINVAL);
  assert_int_equal(v.n, 0);
}

static void test_parse_scheduler(void **state) {
  char *s;
  (void)state;
  s = wrap_config_parse_scheduler("scheduler = \"grpcs://ci.example:443\"\n");
  assert_string_equal(s, "grpcs://ci.example:443");
  free(s);
  s = wrap_config_parse_scheduler("scheduler = 'grpc://10.0.0.1:9000'\n");
  assert_string_equal(s, "10.0.0.1:9000");
  free(s);
}

/* ---- lookup ---- */

static void test_load_files(void **state) {
  wrap_config cfg;
  char *why = NULL, *cwd = tmp_path("ws/crate/src");
  char *root = tmp_path("ws/.distbuild/config.toml");
  char *inner = tmp_path("ws/crate/.distbuild/config.toml");
  char *xdg = tmp_path("xdg/cargo-distbuild/config.toml");
  char *xdg_home = tmp_path("xdg");
  (void)state;
  clear_env();
  assert_int_equal(wrap_mkdirs(cwd), 0);
  write_file(root, "scheduler = \"grpcs://sched.example:8980\"\n"
                   "tls_ca = \"pki/ca.pem\"\n"
                   "tls_cert = \"/abs/client.pem\"\n"
                   "remote_headers = [\"Authorization=Bearer abc\",\n"
                   "                  \"x-team=rust\"]\n");
  /* The nearest file that has a key decides it; here only tls_cert. */
  write_file(inner, "# crate settings\ntls_cert = \"../c.pem\"\n");
  write_file(xdg, "tls_key = \"keys/k.pem\"\ntls_ca = \"unused.pem\"\n");
  setenv("XDG_CONFIG_HOME", xdg_home, 1);
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
  assert_null(why);
  assert_string_equal(cfg.scheduler, "grpcs://sched.example:8980");
  assert_int_equal(cfg.scheduler_default, 0);
  assert_tmp_path(cfg.tls_ca, "ws/pki/ca.pem");
  assert_ptr_equal(cfg.channel.tls_ca_file, cfg.tls_ca);
  assert_tmp_path(cfg.tls_cert, "ws/c.pem");
  assert_tmp_path(cfg.tls_key, "xdg/cargo-distbuild/keys/k.pem");
  assert_int_equal(cfg.headers.n, 2);
  assert_string_equal(cfg.channel.headers[0], "Authorization=Bearer abc");
  assert_string_equal(cfg.channel.headers[1], "x-team=rust");
  assert_null(cfg.channel.headers[2]);
  wrap_config_clear(&cfg);

  /* The environment first; empty variables count as unset; relative
   * paths there are taken against the working directory. */
  setenv("CARGO_DISTBUILD_SCHEDULER", "grpc://plain:1", 1);
  setenv("CARGO_DISTBUILD_TLS_CA", "", 1);
  setenv("CARGO_DISTBUILD_TLS_KEY", "k2.pem", 1);
  setenv("CARGO_DISTBUILD_REMOTE_HEADERS",
         "\n  authorization=Bearer xyz \r\n\nx-a=1=2\n", 1);
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
  assert_string_equal(cfg.scheduler, "plain:1");
  assert_tmp_path(cfg.tls_ca, "ws/pki/ca.pem");
  assert_tmp_path(cfg.tls_key, "ws/crate/src/k2.pem");
  assert_int_equal(cfg.headers.n, 2);
  assert_string_equal(cfg.headers.v[0], "authorization=Bearer xyz");
  assert_string_equal(cfg.headers.v[1], "x-a=1=2");
  wrap_config_clear(&cfg);

  clear_env();
  unsetenv("XDG_CONFIG_HOME");
  free(cwd);
  free(root);
  free(inner);
  free(xdg);
  free(xdg_home);
}

static void test_load_defaults_and_errors(void **state) {
  wrap_config cfg;
  char *why = NULL, *cwd = tmp_path("bad/sub"), *f;
  (void)state;
  clear_env();
  assert_int_equal(wrap_mkdirs(cwd), 0);
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
  assert_string_equal(cfg.scheduler, WRAP_DEFAULT_SCHEDULER);
  assert_int_equal(cfg.scheduler_default, 1);
  assert_null(cfg.tls_ca);
  assert_null(cfg.channel.headers);
  wrap_config_clear(&cfg);

  /* A reserved header name: the file and the name are named, never the
   * value. */
  f = tmp_path("bad/.distbuild/config.toml");
  write_file(f, "remote_headers = [\"te=secret-value\"]\n");
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), DB_EINVAL);
  assert_non_null(why);
  assert_non_null(strstr(why, "config.toml"));
  assert_non_null(strstr(why, "'te=...'"));
  assert_null(strstr(why, "secret-value"));
  wrap_config_clear(&cfg);
  free(why);
  why = NULL;
  write_file(f, "tls_ca = [\"a.pem\"\n");
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), DB_EINVAL);
  assert_non_null(strstr(why, "tls_ca"));
  wrap_config_clear(&cfg);
  free(why);
  why = NULL;
  setenv("CARGO_DISTBUILD_REMOTE_HEADERS", "grpc-timeout=1", 1);
  write_file(f, "");
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), DB_EINVAL);
  assert_non_null(strstr(why, "CARGO_DISTBUILD_REMOTE_HEADERS"));
  wrap_config_clear(&cfg);
  free(why);
  clear_env();
  free(f);
  free(cwd);
}

static void test_export(void **state) {
  wrap_config cfg;
  char *why = NULL, *cwd = tmp_path("exp"), *f;
  (void)state;
  clear_env();
  f = tmp_path("exp/.distbuild/config.toml");
  write_file(f, "tls_ca = \"ca.pem\"\nremote_headers = [\"a=1\", \"b=2\"]\n");
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
  assert_int_equal(wrap_config_export(&cfg), 0);
  /* The default scheduler is not exported: nothing named it. */
  assert_null(getenv("CARGO_DISTBUILD_SCHEDULER"));
  assert_string_equal(getenv("CARGO_DISTBUILD_TLS_CA"), cfg.tls_ca);
  /* Headers from a file (credentials, often) stay out of the environment
   * that every build script sees: only the file's path is exported. */
  assert_null(getenv("CARGO_DISTBUILD_REMOTE_HEADERS"));
  assert_string_equal(getenv(WRAP_HEADERS_FILE_ENV), f);
  wrap_config_clear(&cfg);
  /* What was exported reads back the same from anywhere. */
  assert_int_equal(wrap_config_load("/", &cfg, &why), 0);
  assert_tmp_path(cfg.tls_ca, "exp/ca.pem");
  assert_int_equal(cfg.headers.n, 2);
  assert_string_equal(cfg.headers.v[1], "b=2");
  wrap_config_clear(&cfg);

  /* An empty list hides the user-wide file's headers, from anywhere too. */
  clear_env();
  write_file(f, "remote_headers = []\n");
  {
    char *xdg = tmp_path("expxdg/cargo-distbuild/config.toml");
    char *xdg_home = tmp_path("expxdg");
    write_file(xdg, "remote_headers = [\"authorization=Bearer u\"]\n");
    setenv("XDG_CONFIG_HOME", xdg_home, 1);
    assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
    assert_int_equal(cfg.headers.n, 0);
    assert_int_equal(wrap_config_export(&cfg), 0);
    wrap_config_clear(&cfg);
    assert_int_equal(wrap_config_load("/", &cfg, &why), 0);
    assert_int_equal(cfg.headers.n, 0);
    wrap_config_clear(&cfg);
    unsetenv("XDG_CONFIG_HOME");
    free(xdg);
    free(xdg_home);
  }

  /* Headers the user put in the environment stay there as they were. */
  clear_env();
  setenv("CARGO_DISTBUILD_REMOTE_HEADERS", "x-env=1", 1);
  assert_int_equal(wrap_config_load(cwd, &cfg, &why), 0);
  assert_null(cfg.headers_file);
  assert_int_equal(wrap_config_export(&cfg), 0);
  assert_string_equal(getenv("CARGO_DISTBUILD_REMOTE_HEADERS"), "x-env=1");
  assert_null(getenv(WRAP_HEADERS_FILE_ENV));
  wrap_config_clear(&cfg);
  clear_env();
  free(f);
  free(cwd);
}

/* ---- rpc_client: headers and targets ---- */

static void test_header_parse(void **state) {
  static const char *const bad[] = {
      "novalue",        "=v",           "grpc-timeout=1",  ":path=/x",
      "content-type=x", "TE=x",         "host=h",          "bad name=1",
      "x=a\nb",         "x-\xc3\xa9=1", "connection=close"};
  char *n, *v;
  (void)state;
  assert_int_equal(rpc_client_header_parse("Authorization=Bearer a=b", &n, &v),
                   0);
  assert_string_equal(n, "authorization");
  assert_string_equal(v, "Bearer a=b");
  free(n);
  free(v);
  assert_int_equal(rpc_client_header_parse("x-empty=", &n, &v), 0);
  assert_string_equal(v, "");
  free(n);
  free(v);
  assert_int_equal(rpc_client_header_parse("x.y_z-1-bin=AAEC", &n, &v), 0);
  free(n);
  free(v);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(rpc_client_header_parse(bad[i], &n, &v), DB_EINVAL);
    assert_null(n);
    assert_null(v);
  }
}

static void test_targets(void **state) {
  static const char *const good[] = {
      "grpcs://h.example:443", "grpcs://h.example",  "grpcs://[::1]:8980",
      "grpcs://[::1]",         "grpc://127.0.0.1:1", "127.0.0.1:8980"};
  static const char *const bad[] = {"grpcs://", "grpcs://h:",  "grpcs://h:0",
                                    "grpc://h", "https://h:1", "grpcs://h:1/x"};
  const char *hdrs[] = {"authorization=Bearer t", "x-team=rust", NULL};
  const char *badh[] = {"x-ok=1", "content-type=text/plain", NULL};
  rpc_channel_opts ch = {"/nonexistent/ca.pem", "/nonexistent/c.pem", NULL,
                         hdrs};
  rpc_client_opts o = {0};
  rpc_client *c;
  (void)state;
  o.channel = &ch;
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    /* The TLS files are only read when a connection opens. */
    assert_int_equal(rpc_client_new(good[i], &o, &c), 0);
    rpc_client_free(c);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(rpc_client_new(bad[i], &o, &c), DB_EINVAL);
    assert_null(c);
  }
  ch.headers = badh;
  assert_int_equal(rpc_client_new("grpcs://h:1", &o, &c), DB_EINVAL);
  assert_null(c);
  assert_int_equal(rpc_client_new("h:1", NULL, &c), 0);
  assert_int_equal(rpc_client_set_header(c, "te", "x"), DB_EINVAL);
  assert_int_equal(rpc_client_set_header(c, "x-fine", "x"), 0);
  rpc_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_key),
      cmocka_unit_test(test_parse_array),
      cmocka_unit_test(test_parse_scheduler),
      cmocka_unit_test(test_load_files),
      cmocka_unit_test(test_load_defaults_and_errors),
      cmocka_unit_test(test_export),
      cmocka_unit_test(test_header_parse),
      cmocka_unit_test(test_targets),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
