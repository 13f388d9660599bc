/* Unit tests for the rustc wrapper: argument parsing and output paths,
 * Merkle tree canonical form, the digest cache, dep-info, config and
 * stats parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_err.h"
#include "reapi_pb.h"
#include "wrap_args.h"
#include "wrap_config.h"
#include "wrap_dcache.h"
#include "wrap_hash.h"
#include "wrap_state.h"
#include "wrap_stats.h"
#include "wrap_tree.h"
#include "wrap_util.h"

static char g_tmp[256];

static int setup_tmp(void **state) {
  (void)state;
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/wrapper-unit-XXXXXX");
  assert_non_null(mkdtemp(g_tmp));
  setenv("CARGO_DISTBUILD_DCACHE_RACY_MS", "0", 1);
  return 0;
}

static int teardown_tmp(void **state) {
  char cmd[300];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_tmp);
  if (system(cmd) != 0)
    return 1;
  return 0;
}

static void write_file(const char *path, const char *text) {
  assert_int_equal(wrap_write_atomic(path, text, strlen(text), 0644), 0);
}

/* ---- arguments ---- */

static void test_args_lib(void **state) {
  char *argv[] = {"/tc/bin/rustc",
                  "--crate-name",
                  "lib_math",
                  "--edition=2021",
                  "lib-math/src/lib.rs",
                  "--error-format=json",
                  "--crate-type",
                  "lib",
                  "--emit=dep-info,metadata,link",
                  "-C",
                  "embed-bitcode=no",
                  "-C",
                  "metadata=deee9b4e39e07170",
                  "-C",
                  "extra-filename=-45abb0decdb475cb",
                  "--out-dir",
                  "/ws/target/debug/deps",
                  "-C",
                  "incremental=/ws/target/debug/incremental",
                  "-L",
                  "dependency=/ws/target/debug/deps",
                  "--extern",
                  "lib_common=/ws/target/debug/deps/liblib_common-e1.rmeta",
                  "-Cincremental=/x"};
  wrap_args *a = NULL;
  wrap_strv outs = {0}, rargs = {0};
  (void)state;
  assert_int_equal(
      wrap_args_parse(sizeof(argv) / sizeof(argv[0]), argv, "/ws", &a), 0);
  assert_string_equal(a->crate_name, "lib_math");
  assert_string_equal(a->src, "/ws/lib-math/src/lib.rs");
  assert_string_equal(a->out_dir, "/ws/target/debug/deps");
  assert_string_equal(a->extra_filename, "-45abb0decdb475cb");
  assert_true(a->has_incremental);
  assert_int_equal(a->n_externs, 1);
  assert_string_equal(a->externs[0].name, "lib_common");
  assert_string_equal(a->externs[0].path,
                      "/ws/target/debug/deps/liblib_common-e1.rmeta");
  assert_int_equal(a->n_libdirs, 1);
  assert_string_equal(a->libdirs[0].kind, "dependency");
  assert_null(wrap_args_local_reason(a));
  assert_int_equal(wrap_args_outputs(a, &outs), 0);
  assert_int_equal(outs.n, 3);
  assert_string_equal(
      outs.v[0], "/ws/target/debug/deps/liblib_math-45abb0decdb475cb.rlib");
  assert_string_equal(
      outs.v[1], "/ws/target/debug/deps/liblib_math-45abb0decdb475cb.rmeta");
  assert_string_equal(outs.v[2],
                      "/ws/target/debug/deps/lib_math-45abb0decdb475cb.d");
  assert_int_equal(wrap_args_remote_argv(a, &rargs), 0);
  for (size_t i = 0; i < rargs.n; i++)
    assert_null(strstr(rargs.v[i], "incremental"));
  assert_int_equal(rargs.n, (sizeof(argv) / sizeof(argv[0])) - 1 - 3);
  wrap_strv_free(&outs);
  wrap_strv_free(&rargs);
  wrap_args_free(a);
}

static void check_local(char **argv, int argc, const char *want) {
  wrap_args *a = NULL;
  const char *r;
  assert_int_equal(wrap_args_parse(argc, argv, "/ws", &a), 0);
  r = wrap_args_local_reason(a);
  assert_non_null(r);
  assert_string_equal(r, want);
  wrap_args_free(a);
}

static void test_args_local(void **state) {
  char *vv[] = {"rustc", "-vV"};
  char *pr[] = {
      "rustc",        "-",  "--crate-name", "___", "--print=file-names",
      "--crate-type", "bin"};
  char *bin[] = {"rustc",        "--crate-name", "main_binary", "src/main.rs",
                 "--crate-type", "bin",          "--out-dir",   "/ws/t"};
  char *bs[] = {"rustc",     "--crate-name", "build_script_build",
                "build.rs",  "--crate-type", "bin",
                "--out-dir", "/ws/t"};
  char *pm[] = {"rustc",        "--crate-name", "serde_derive", "src/lib.rs",
                "--crate-type", "proc-macro",   "--out-dir",    "/ws/t"};
  char *em[] = {"rustc",           "--crate-name", "x",
                "src/lib.rs",      "--crate-type", "rlib",
                "--emit=asm,link", "--out-dir",    "/ws/t"};
  (void)state;
  check_local(vv, 2, "query (-vV/--print)");
  check_local(pr, 7, "query (-vV/--print)");
  check_local(bin, 8, "binary crate");
  check_local(bs, 8, "build script");
  check_local(pm, 8, "proc-macro crate");
  check_local(em, 9, "unsupported --emit/--test/@file");
}

static void test_args_extern_forms(void **state) {
  char *argv[] = {"rustc",
                  "--crate-name",
                  "a",
                  "src/lib.rs",
                  "--crate-type=rlib",
                  "--emit",
                  "link",
                  "--out-dir=o",
                  "--extern",
                  "priv:serde=deps/libserde.rlib",
                  "--extern",
                  "proc_macro",
                  "-Ldependency=deps",
                  "-L",
                  "native=/n",
                  "-lstatic=foo"};
  wrap_args *a = NULL;
  (void)state;
  assert_int_equal(wrap_args_parse(16, argv, "/w", &a), 0);
  assert_string_equal(a->out_dir, "/w/o");
  assert_int_equal(a->n_externs, 2);
  assert_string_equal(a->externs[0].name, "serde");
  assert_string_equal(a->externs[0].path, "/w/deps/libserde.rlib");
  assert_null(a->externs[1].path);
  assert_int_equal(a->n_libdirs, 2);
  assert_string_equal(a->libdirs[0].path, "/w/deps");
  assert_string_equal(a->libdirs[1].kind, "native");
  assert_true(a->has_native_libs);
  assert_null(wrap_args_local_reason(a));
  assert_false(wrap_args_uses_proc_macro(a)); /* an rlib and a sysroot crate */
  wrap_args_free(a);
  argv[9] = "serde_derive=/deps/libserde_derive-1a2b.so";
  assert_int_equal(wrap_args_parse(16, argv, "/w", &a), 0);
  assert_true(wrap_args_uses_proc_macro(a));
  wrap_args_free(a);
}

/* native_cpu of a library compile with the given codegen arguments
 * appended (n of them); the call stays distributable. */
static int native_of(char **extra, int n) {
  char *argv[16] = {"rustc",       "--crate-name", "a",
                    "src/lib.rs",  "--crate-type", "lib",
                    "--emit=link", "--out-dir",    "o"};
  wrap_args *a = NULL;
  int base = 9, r;
  for (int i = 0; i < n; i++)
    argv[base + i] = extra[i];
  assert_int_equal(wrap_args_parse(base + n, argv, "/w", &a), 0);
  r = a->native_cpu;
  assert_null(wrap_args_local_reason(a));
  wrap_args_free(a);
  return r;
}

/* -C target-cpu=native in each spelling rustc accepts; the last
 * target-cpu wins, as in rustc. */
static void test_args_native_cpu(void **state) {
  char *sep[] = {"-C", "target-cpu=native"};
  char *joined[] = {"-Ctarget-cpu=native"};
  char *lng[] = {"--codegen=target_cpu=native"};
  char *later[] = {"-Ctarget-cpu=native", "-C", "target-cpu=x86-64"};
  char *named[] = {"-Ctarget-cpu=znver3"};
  (void)state;
  assert_int_equal(native_of(sep, 2), 1);
  assert_int_equal(native_of(joined, 1), 1);
  assert_int_equal(native_of(lng, 1), 1);
  assert_int_equal(native_of(later, 3), 0);
  assert_int_equal(native_of(named, 1), 0);
}

static void test_paths(void **state) {
  char *p;
  char buf[64];
  (void)state;
  p = wrap_path_abs("a/./b/../c//d/", "/x/y");
  assert_string_equal(p, "/x/y/a/c/d");
  free(p);
  p = wrap_path_abs("../../..", "/x");
  assert_string_equal(p, "/");
  free(p);
  snprintf(buf, sizeof(buf), "/root/.rustup/tc");
  wrap_path_common(buf, "/root/src/ws");
  assert_string_equal(buf, "/root");
  snprintf(buf, sizeof(buf), "/root/ab");
  wrap_path_common(buf, "/root/abc");
  assert_string_equal(buf, "/root");
  snprintf(buf, sizeof(buf), "/work/x");
  wrap_path_common(buf, "/root/x");
  assert_string_equal(buf, "/");
  snprintf(buf, sizeof(buf), "/a/b");
  wrap_path_common(buf, "/a/b/c");
  assert_string_equal(buf, "/a/b");
  assert_string_equal(wrap_path_rel("/a/b/c", "/a"), "b/c");
  assert_string_equal(wrap_path_rel("/a", "/a"), "");
  assert_null(wrap_path_rel("/ab", "/a"));
}

/* ---- Merkle tree ---- */

/* Hand-encoded Directory{files:[{name, digest{hash,size}, exec}]} bytes. */
static size_t enc_file_dir(uint8_t *out, const char *name,
                           const reapi_digest *d, int exec) {
  size_t n = 0, nl = strlen(name);
  size_t dlen = 2 + 64 + (d->size ? 2 : 0);
  size_t flen = 2 + nl + 2 + dlen + (exec ? 2 : 0);
  out[n++] = 0x0a; /* Directory.files */
  out[n++] = (uint8_t)flen;
  out[n++] = 0x0a; /* FileNode.name */
  out[n++] = (uint8_t)nl;
  memcpy(out + n, name, nl);
  n += nl;
  out[n++] = 0x12; /* FileNode.digest */
  out[n++] = (uint8_t)dlen;
  out[n++] = 0x0a; /* Digest.hash */
  out[n++] = 64;
  memcpy(out + n, d->hash, 64);
  n += 64;
  if (d->size) {
    out[n++] = 0x10; /* Digest.size_bytes */
    out[n++] = (uint8_t)d->size;
  }
  if (exec) {
    out[n++] = 0x20; /* FileNode.is_executable */
    out[n++] = 1;
  }
  return n;
}

static void test_tree_canonical(void **state) {
  wrap_tree *t1 = NULL, *t2 = NULL, *t3 = NULL;
  reapi_digest r1, r2, r3, fd, want, sub;
  uint8_t enc[256];
  size_t n;
  const cas_blob_src *blobs;
  size_t nb;
  (void)state;
  /* Same content, different insertion order: same root. */
  assert_int_equal(wrap_tree_new(NULL, &t1), 0);
  assert_int_equal(wrap_tree_add_blob(t1, "b/z.rs", "z", 1, 0), 0);
  assert_int_equal(wrap_tree_add_blob(t1, "a.rs", "a", 1, 0), 0);
  assert_int_equal(wrap_tree_add_blob(t1, "b/y.rs", "y", 1, 1), 0);
  assert_int_equal(wrap_tree_add_dir(t1, "c/empty"), 0);
  assert_int_equal(wrap_tree_finish(t1, &r1), 0);
  assert_int_equal(wrap_tree_new(NULL, &t2), 0);
  assert_int_equal(wrap_tree_add_dir(t2, "c/empty"), 0);
  assert_int_equal(wrap_tree_add_blob(t2, "b/y.rs", "y", 1, 1), 0);
  assert_int_equal(wrap_tree_add_blob(t2, "a.rs", "a", 1, 0), 0);
  assert_int_equal(wrap_tree_add_blob(t2, "b/z.rs", "z", 1, 0), 0);
  assert_int_equal(wrap_tree_add_blob(t2, "b/z.rs", "z", 1, 0), 0); /* dup */
  assert_int_equal(wrap_tree_finish(t2, &r2), 0);
  assert_true(reapi_digest_eq(&r1, &r2));
  assert_int_equal(wrap_tree_blobs(t1, &blobs, &nb, NULL), 0);
  /* root, b, c, c/empty (= empty blob), 3 files */
  assert_int_equal(nb, 7);
  /* Conflicts are reported. */
  assert_int_equal(wrap_tree_new(NULL, &t3), 0);
  assert_int_equal(wrap_tree_add_blob(t3, "x", "1", 1, 0), 0);
  assert_int_equal(wrap_tree_add_blob(t3, "x", "2", 1, 0), DB_EEXIST);
  assert_int_equal(wrap_tree_add_dir(t3, "x"), DB_EEXIST);
  assert_int_equal(wrap_tree_add_blob(t3, "../x", "2", 1, 0), DB_EINVAL);
  wrap_tree_free(t3);
  /* Exact bytes: root{files:[a.rs]} against a hand encoding. */
  assert_int_equal(wrap_tree_new(NULL, &t3), 0);
  assert_int_equal(wrap_tree_add_blob(t3, "sub/main.rs", "fn", 2, 1), 0);
  assert_int_equal(wrap_tree_finish(t3, &r3), 0);
  reapi_digest_of("fn", 2, &fd);
  n = enc_file_dir(enc, "main.rs", &fd, 1);
  reapi_digest_of(enc, n, &sub);
  {
    /* root{directories:[{name:"sub", digest:sub}]} */
    uint8_t root[128];
    size_t k = 0, dlen = 2 + 64 + 2;
    root[k++] = 0x12; /* Directory.directories */
    root[k++] = (uint8_t)(2 + 3 + 2 + dlen);
    root[k++] = 0x0a;
    root[k++] = 3;
    memcpy(root + k, "sub", 3);
    k += 3;
    root[k++] = 0x12;
    root[k++] = (uint8_t)dlen;
    root[k++] = 0x0a;
    root[k++] = 64;
    memcpy(root + k, sub.hash, 64);
    k += 64;
    root[k++] = 0x10;
    root[k++] = (uint8_t)sub.size;
    reapi_digest_of(root, k, &want);
  }
  assert_true(reapi_digest_eq(&r3, &want));
  wrap_tree_free(t1);
  wrap_tree_free(t2);
  wrap_tree_free(t3);
}

static int skip_target(void *ctx, const char *dir, const char *name,
                       int is_dir) {
  (void)ctx;
  (void)dir;
  return is_dir && strcmp(name, "target") == 0;
}

static void test_tree_from_disk(void **state) {
  char p[512];
  wrap_tree *t = NULL;
  reapi_digest r;
  (void)state;
  snprintf(p, sizeof(p), "%s/pkg/src/lib.rs", g_tmp);
  write_file(p, "pub fn f() {}\n");
  snprintf(p, sizeof(p), "%s/pkg/target/junk", g_tmp);
  write_file(p, "junk");
  snprintf(p, sizeof(p), "%s/pkg", g_tmp);
  assert_int_equal(wrap_tree_new(NULL, &t), 0);
  assert_int_equal(wrap_tree_add_tree(t, "w/pkg", p, skip_target, NULL), 0);
  assert_int_equal(wrap_tree_file_count(t), 1);
  assert_int_equal(wrap_tree_finish(t, &r), 0);
  wrap_tree_free(t);
}

/* ---- digest cache ---- */

static void test_dcache(void **state) {
  char dir[300], f[300];
  wrap_dcache *dc = NULL;
  reapi_digest d1, d2, want;
  uint64_t hits, hashed;
  (void)state;
  snprintf(dir, sizeof(dir), "%s/dc", g_tmp);
  snprintf(f, sizeof(f), "%s/file.txt", g_tmp);
  write_file(f, "hello");
  reapi_digest_of("hello", 5, &want);
  assert_int_equal(wrap_dcache_open(dir, &dc), 0);
  assert_int_equal(wrap_dcache_digest(dc, f, NULL, &d1), 0);
  assert_true(reapi_digest_eq(&d1, &want));
  wrap_dcache_counts(dc, &hits, &hashed);
  assert_int_equal(hashed, 1);
  wrap_dcache_free(dc);
  /* A new process (handle) finds it on disk. */
  assert_int_equal(wrap_dcache_open(dir, &dc), 0);
  assert_int_equal(wrap_dcache_digest(dc, f, NULL, &d2), 0);
  wrap_dcache_counts(dc, &hits, &hashed);
  assert_int_equal(hits, 1);
  assert_int_equal(hashed, 0);
  assert_true(reapi_digest_eq(&d2, &want));
  wrap_dcache_free(dc);
  /* Same size, new content: ctime/mtime changed, so it is re-hashed. */
  usleep(20000);
  {
    int fd = open(f, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "jello", 5), 5);
    close(fd);
  }
  reapi_digest_of("jello", 5, &want);
  assert_int_equal(wrap_dcache_open(dir, &dc), 0);
  assert_int_equal(wrap_dcache_digest(dc, f, NULL, &d2), 0);
  assert_true(reapi_digest_eq(&d2, &want));
  wrap_dcache_counts(dc, &hits, &hashed);
  assert_int_equal(hashed, 1);
  wrap_dcache_free(dc);
}

static void test_dcache_concurrent(void **state) {
  char dir[300], f[300], db[340];
  wrap_dcache *dc = NULL;
  reapi_digest d;
  uint64_t hits, hashed;
  int fd;
  (void)state;
  snprintf(dir, sizeof(dir), "%s/dc2", g_tmp);
  /* 8 processes append records for 8 x 20 files at the same time. */
  for (int i = 0; i < 160; i++) {
    char text[32];
    snprintf(f, sizeof(f), "%s/c/f%03d", g_tmp, i);
    snprintf(text, sizeof(text), "content %d", i);
    write_file(f, text);
  }
  for (int k = 0; k < 8; k++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      wrap_dcache *c = NULL;
      if (wrap_dcache_open(dir, &c) != 0)
        _exit(1);
      for (int i = k * 20; i < k * 20 + 20; i++) {
        snprintf(f, sizeof(f), "%s/c/f%03d", g_tmp, i);
        if (wrap_dcache_digest(c, f, NULL, &d) != 0)
          _exit(1);
      }
      wrap_dcache_free(c);
      _exit(0);
    }
  }
  for (int k = 0; k < 8; k++) {
    int st = 0;
    assert_true(wait(&st) > 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  /* A torn record at the end is skipped. */
  snprintf(db, sizeof(db), "%s/digests.v1", dir);
  fd = open(db, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "0000deadbeef 12", 15), 15);
  close(fd);
  assert_int_equal(wrap_dcache_open(dir, &dc), 0);
  for (int i = 0; i < 160; i++) {
    snprintf(f, sizeof(f), "%s/c/f%03d", g_tmp, i);
    assert_int_equal(wrap_dcache_digest(dc, f, NULL, &d), 0);
  }
  wrap_dcache_counts(dc, &hits, &hashed);
  assert_int_equal(hits, 160);
  assert_int_equal(hashed, 0);
  wrap_dcache_free(dc);
}

/* ---- dep-info, records, config, stats ---- */

static void test_depinfo(void **state) {
  const char *d =
      "/ws/t/deps/lib_common-1.d: lib-common/src/lib.rs "
      "/ws/t/build/x/out/build_info.rs lib-common/src/../data/a\\ b.txt\n"
      "\n"
      "lib-common/src/lib.rs:\n"
      "# env-dep:CARGO_PKG_VERSION=0.1.0\n"
      "# env-dep:TESTAPP_GREETING\n"
      "# env-dep:OUT_DIR=/ws/t/build/x/out\n";
  wrap_strv files = {0}, env = {0};
  (void)state;
  assert_int_equal(wrap_depinfo_parse(d, "/ws", &files, &env), 0);
  assert_int_equal(files.n, 3);
  assert_string_equal(files.v[0], "/ws/lib-common/src/lib.rs");
  assert_string_equal(files.v[2], "/ws/lib-common/data/a b.txt");
  assert_int_equal(env.n, 3);
  assert_true(wrap_strv_has(&env, "TESTAPP_GREETING"));
  assert_true(wrap_strv_has(&env, "CARGO_PKG_VERSION"));
  wrap_strv_free(&files);
  wrap_strv_free(&env);
}

static void test_records(void **state) {
  wrap_strv arts = {0}, clo = {0}, got = {0}, env = {0}, files = {0};
  char key[33];
  (void)state;
  wrap_strv_add(&arts, "/ws/t/deps/liba-1.rlib");
  wrap_strv_add(&arts, "/ws/t/deps/liba-1.rmeta");
  wrap_strv_add(&clo, "/ws/t/deps/libb-2.rmeta");
  assert_int_equal(wrap_state_closure_put(g_tmp, &arts, &clo), 0);
  assert_int_equal(
      wrap_state_closure_get(g_tmp, "/ws/t/deps/liba-1.rmeta", &got), 0);
  assert_int_equal(got.n, 1);
  assert_string_equal(got.v[0], "/ws/t/deps/libb-2.rmeta");
  assert_int_equal(wrap_state_closure_get(g_tmp, "/nope", &got), DB_ENOTFOUND);
  {
    /* The artifact path is the record's name: it must stay inside
     * closure/, so only normal absolute paths are keys. */
    char *rec = wrap_fmt("%s/closure/ws/t/deps/liba-1.rlib.closure", g_tmp);
    struct stat st;
    wrap_strv bad = {0};
    assert_int_equal(stat(rec, &st), 0);
    free(rec);
    wrap_strv_add(&bad, "/ws/t/../../../escaped.rlib");
    assert_int_equal(wrap_state_closure_put(g_tmp, &bad, &clo), DB_EINVAL);
    wrap_strv_free(&bad);
    wrap_strv_add(&bad, "rel/liba.rlib");
    assert_int_equal(wrap_state_closure_put(g_tmp, &bad, &clo), DB_EINVAL);
    wrap_strv_free(&bad);
    wrap_strv_add(&bad, "/ws//t/./liba.rlib");
    assert_int_equal(wrap_state_closure_put(g_tmp, &bad, &clo), DB_EINVAL);
    wrap_strv_free(&bad);
    rec = wrap_fmt("%s/escaped.rlib.closure", g_tmp);
    assert_int_not_equal(stat(rec, &st), 0);
    free(rec);
    assert_int_equal(
        wrap_state_closure_get(g_tmp, "/ws/t/../t/deps/liba-1.rlib", &got),
        DB_ENOTFOUND);
    assert_int_equal(
        wrap_state_closure_get(g_tmp, "ws/t/deps/liba-1.rlib", &got),
        DB_ENOTFOUND);
    assert_int_equal(got.n, 1);
  }
  wrap_hash_crate_key("a", "/ws/a", key);
  assert_int_equal(wrap_state_crate_load(g_tmp, key, &env, &files),
                   DB_ENOTFOUND);
  wrap_strv_add(&env, "X");
  wrap_strv_add(&files, "/other/f.txt");
  assert_int_equal(wrap_state_crate_save(g_tmp, key, &env, &files), 0);
  wrap_strv_free(&env);
  wrap_strv_free(&files);
  assert_int_equal(wrap_state_crate_load(g_tmp, key, &env, &files), 0);
  assert_int_equal(env.n, 1);
  assert_string_equal(env.v[0], "X");
  assert_int_equal(files.n, 1);
  wrap_strv_free(&arts);
  wrap_strv_free(&clo);
  wrap_strv_free(&got);
  wrap_strv_free(&env);
  wrap_strv_free(&files);
}

static void test_config(void **state) {
  char *v;
  (void)state;
  v = wrap_config_parse_scheduler("# c\n[client]\n  scheduler = "
                                  "\"grpc://10.0.0.1:9000\"\nx = 1\n");
  assert_string_equal(v, "10.0.0.1:9000");
  free(v);
  assert_null(wrap_config_parse_scheduler("schedulers = 1\n"));
}

static void test_stats(void **state) {
  char dir[300], *path;
  wrap_stats_sum last, total;
  char *id = NULL;
  wrap_stat_rec r;
  (void)state;
  snprintf(dir, sizeof(dir), "%s/stats", g_tmp);
  setenv("CARGO_DISTBUILD_STATS_DIR", dir, 1);
  setenv("CARGO_DISTBUILD_BUILD_ID", "one", 1);
  memset(&r, 0, sizeof(r));
  r.kind = WRAP_KIND_REMOTE;
  r.crate = "a";
  r.up_wire = 100;
  assert_int_equal(wrap_stats_append(&r), 0);
  setenv("CARGO_DISTBUILD_BUILD_ID", "two", 1);
  r.kind = WRAP_KIND_HIT;
  r.saved_ms = 1500;
  r.up_wire = 0;
  assert_int_equal(wrap_stats_append(&r), 0);
  r.kind = WRAP_KIND_FALLBACK;
  r.saved_ms = 0;
  r.reason = "scheduler\tunreachable";
  assert_int_equal(wrap_stats_append(&r), 0);
  r.kind = WRAP_KIND_LOCAL;
  r.reason = NULL;
  assert_int_equal(wrap_stats_append(&r), 0);
  path = wrap_stats_path();
  assert_int_equal(wrap_stats_load(path, NULL, &last, &total, &id), 0);
  assert_string_equal(id, "two");
  assert_int_equal(last.actions, 2);
  assert_int_equal(last.hits, 1);
  assert_int_equal(last.fallbacks, 1);
  assert_int_equal(last.local, 1);
  assert_int_equal(last.saved_ms, 1500);
  assert_int_equal(last.n_reasons, 1);
  assert_string_equal(last.reasons[0].text, "scheduler unreachable");
  assert_int_equal(total.actions, 3);
  assert_int_equal(total.remote, 1);
  assert_int_equal(total.up_wire, 100);
  free(id);
  free(path);
  unsetenv("CARGO_DISTBUILD_STATS_DIR");
  unsetenv("CARGO_DISTBUILD_BUILD_ID");
}

/* Past CARGO_DISTBUILD_STATS_MAX_BYTES, finished builds fold into one
 * summary line: totals stay exact, the file stays small, and a build that
 * may still be running keeps its own records. */
static void test_stats_compact(void **state) {
  char dir[300], *path, *text = NULL, b[16];
  wrap_stats_sum last, total;
  char *id = NULL;
  size_t len = 0;
  wrap_stat_rec r;
  (void)state;
  snprintf(dir, sizeof(dir), "%s/stats-compact", g_tmp);
  setenv("CARGO_DISTBUILD_STATS_DIR", dir, 1);
  setenv("CARGO_DISTBUILD_STATS_MAX_BYTES", "1500", 1);
  setenv("CARGO_DISTBUILD_STATS_KEEP_MS", "0", 1);
  memset(&r, 0, sizeof(r));
  r.crate = "c";
  for (int i = 0; i < 10; i++) {
    snprintf(b, sizeof(b), "b%d", i);
    setenv("CARGO_DISTBUILD_BUILD_ID", b, 1);
    r.kind = WRAP_KIND_REMOTE;
    r.up_wire = 10;
    r.saved_ms = 0;
    r.reason = NULL;
    assert_int_equal(wrap_stats_append(&r), 0);
    r.kind = WRAP_KIND_HIT;
    r.up_wire = 0;
    r.saved_ms = 100;
    assert_int_equal(wrap_stats_append(&r), 0);
    r.kind = WRAP_KIND_FALLBACK;
    r.saved_ms = 0;
    r.reason = i % 2 ? "scheduler unreachable" : "timeout";
    assert_int_equal(wrap_stats_append(&r), 0);
  }
  path = wrap_stats_path();
  assert_int_equal(wrap_read_file(path, 0, &text, &len), 0);
  assert_non_null(strstr(text, "kind=sum"));
  assert_true(len < 2000); /* 30 records are ~5.5 KB */
  free(text);
  assert_int_equal(wrap_stats_load(path, NULL, &last, &total, &id), 0);
  assert_string_equal(id, "b9");
  assert_int_equal(last.actions, 3);
  assert_int_equal(last.hits, 1);
  assert_int_equal(total.records, 30);
  assert_int_equal(total.actions, 30);
  assert_int_equal(total.hits, 10);
  assert_int_equal(total.remote, 10);
  assert_int_equal(total.fallbacks, 10);
  assert_int_equal(total.up_wire, 100);
  assert_int_equal(total.saved_ms, 1000);
  assert_int_equal(total.n_reasons, 2);
  for (int i = 0; i < 2; i++)
    assert_int_equal(total.reasons[i].count, 5);
  free(id);
  /* Builds with recent records may still be running: nothing of theirs
   * is folded, so each can still report itself exactly. */
  unsetenv("CARGO_DISTBUILD_STATS_KEEP_MS");
  for (int i = 0; i < 20; i++) {
    setenv("CARGO_DISTBUILD_BUILD_ID", i % 2 ? "x" : "y", 1);
    r.kind = WRAP_KIND_REMOTE;
    r.reason = NULL;
    assert_int_equal(wrap_stats_append(&r), 0);
  }
  assert_int_equal(wrap_stats_load(path, "x", &last, &total, NULL), 0);
  assert_int_equal(last.remote, 10);
  assert_int_equal(wrap_stats_load(path, "y", &last, &total, NULL), 0);
  assert_int_equal(last.remote, 10);
  assert_int_equal(total.records, 50);
  /* ...unless their end marker says they are over (what `cargo distbuild
   * build` writes after its report): then they fold at once. */
  assert_int_equal(wrap_stats_end("x"), 0);
  assert_int_equal(wrap_stats_end("y"), 0);
  setenv("CARGO_DISTBUILD_BUILD_ID", "z", 1);
  for (int i = 0; i < 3; i++)
    assert_int_equal(wrap_stats_append(&r), 0);
  assert_int_equal(wrap_read_file(path, 0, &text, &len), 0);
  assert_null(strstr(text, "build=x\t"));
  assert_null(strstr(text, "build=y\t"));
  assert_non_null(strstr(text, "build=z\t"));
  free(text);
  assert_int_equal(wrap_stats_load(path, NULL, &last, &total, &id), 0);
  assert_string_equal(id, "z");
  assert_int_equal(last.remote, 3);
  assert_int_equal(total.records, 53);
  assert_int_equal(total.remote, 33);
  free(id);
  free(path);
  unsetenv("CARGO_DISTBUILD_STATS_DIR");
  unsetenv("CARGO_DISTBUILD_STATS_MAX_BYTES");
  unsetenv("CARGO_DISTBUILD_BUILD_ID");
}

/* Concurrent appenders while compaction keeps rewriting the file: the
 * shared/exclusive lock must not let a single record fall into a file
 * that is being replaced. */
static void test_stats_compact_concurrent(void **state) {
  char dir[300], *path;
  wrap_stats_sum last, total;
  pid_t kids[4];
  (void)state;
  snprintf(dir, sizeof(dir), "%s/stats-concurrent", g_tmp);
  setenv("CARGO_DISTBUILD_STATS_DIR", dir, 1);
  setenv("CARGO_DISTBUILD_STATS_MAX_BYTES", "3000", 1);
  setenv("CARGO_DISTBUILD_STATS_KEEP_MS", "0", 1);
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    assert_true(kids[k] >= 0);
    if (kids[k] == 0) {
      wrap_stat_rec r;
      char b[16];
      int bad = 0;
      memset(&r, 0, sizeof(r));
      r.kind = WRAP_KIND_REMOTE;
      r.crate = "c";
      r.up_wire = 1;
      for (int i = 0; i < 150; i++) {
        /* A new build every 10 records, so there is always something to
         * fold. */
        snprintf(b, sizeof(b), "k%d-%d", k, i / 10);
        setenv("CARGO_DISTBUILD_BUILD_ID", b, 1);
        bad |= wrap_stats_append(&r) != 0;
      }
      _exit(bad);
    }
  }
  for (int k = 0; k < 4; k++) {
    int st = 0;
    assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  path = wrap_stats_path();
  assert_int_equal(wrap_stats_load(path, NULL, &last, &total, NULL), 0);
  assert_int_equal(total.remote, 600);
  assert_int_equal(total.up_wire, 600);
  free(path);
  unsetenv("CARGO_DISTBUILD_STATS_DIR");
  unsetenv("CARGO_DISTBUILD_STATS_MAX_BYTES");
  unsetenv("CARGO_DISTBUILD_STATS_KEEP_MS");
  unsetenv("CARGO_DISTBUILD_BUILD_ID");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_args_lib),
      cmocka_unit_test(test_args_local),
      cmocka_unit_test(test_args_extern_forms),
      cmocka_unit_test(test_args_native_cpu),
      cmocka_unit_test(test_paths),
      cmocka_unit_test(test_tree_canonical),
      cmocka_unit_test(test_tree_from_disk),
      cmocka_unit_test(test_dcache),
      cmocka_unit_test(test_dcache_concurrent),
      cmocka_unit_test(test_depinfo),
      cmocka_unit_test(test_records),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_stats_compact),
      cmocka_unit_test(test_stats_compact_concurrent),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
