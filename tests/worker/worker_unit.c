/*
 * Unit tests of libworker against the real `cargo-distbuild cas run`:
 *   relpath      output/working-directory path validation
 *   cache_lru    LRU budget, pinned entries survive eviction
 *   cache_dedup  concurrent fetches of the same blobs: each fetched once
 *   cache_parallel  a large fetch split across threads and clients
 *   materialize  hardlinks out of the cache, modes, writable dirs, trees
 *   outputs      files / directories (Tree messages) / symlinks, escaping
 *   jobs         the shared jobserver: implicit tokens, leaks and tampering
 *                repaired when idle
 * Usage: worker_unit CASE BINARY
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas_client.h"
#include "cas_test_util.h"
#include "db_err.h"
#include "reapi_pb.h"
#include "worker_cache.h"
#include "worker_early.h"
#include "worker_int.h"
#include "worker_jobs.h"
#include "worker_materialize.h"
#include "worker_outputs.h"

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);    \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static cas_test_server srv;
static char *tmp;

static cas_client *client(void) {
  cas_client *c = NULL;
  CHECK(cas_client_new(srv.target, NULL, &c) == 0);
  return c;
}

static void put(cas_client *c, const void *data, size_t len, reapi_digest *d) {
  cas_blob_src s = {0};
  reapi_digest_of(data, len, d);
  s.digest = *d;
  s.data = data;
  CHECK(cas_client_upload(c, &s, 1, NULL, NULL) == 0);
}

static void test_relpath(void) {
  CHECK(wk_relpath_ok("a/b.txt", 0));
  CHECK(wk_relpath_ok("", 1));
  CHECK(!wk_relpath_ok("", 0));
  CHECK(!wk_relpath_ok("../x", 0));
  CHECK(!wk_relpath_ok("a/../../x", 0));
  CHECK(!wk_relpath_ok("a/./b", 0));
  CHECK(!wk_relpath_ok("/etc/passwd", 0));
  CHECK(!wk_relpath_ok("a//b", 0));
  CHECK(!wk_relpath_ok("a/", 0));
  CHECK(wk_relpath_ok("..a/b..", 0));
}

/* rustc's artifact notifications, as the early-outputs watcher reads them. */
static void test_early_parse(void) {
  char a[] =
      "{\"$message_type\":\"artifact\",\"artifact\":\"/w/t/libx-1.rmeta\","
      "\"emit\":\"metadata\"}";
  char b[] = "{\"$message_type\":\"artifact\",\"emit\":\"dep-info\","
             "\"artifact\":\"x.d\"}";
  char esc[] = "{\"$message_type\":\"artifact\",\"artifact\":\"/a\\\"b\","
               "\"emit\":\"metadata\"}";
  char diag[] = "{\"$message_type\":\"diagnostic\",\"rendered\":"
                "\"\\\"artifact\\\":\\\"x\\\"\",\"emit\":\"metadata\"}";
  char trunc[] = "{\"$message_type\":\"artifact\",\"artifact\":\"/w/x";
  const char *emit = NULL, *path = NULL;
  CHECK(wk_early_parse_artifact(a, &emit, &path) == 1);
  CHECK(!strcmp(emit, "metadata") && !strcmp(path, "/w/t/libx-1.rmeta"));
  CHECK(wk_early_parse_artifact(b, &emit, &path) == 1);
  CHECK(!strcmp(emit, "dep-info") && !strcmp(path, "x.d"));
  CHECK(wk_early_parse_artifact(esc, &emit, &path) == 0);
  CHECK(wk_early_parse_artifact(diag, &emit, &path) == 0);
  CHECK(wk_early_parse_artifact(trunc, &emit, &path) == 0);
}

static void test_cache_lru(void) {
  cas_client *c = client();
  wk_cache *wc = NULL;
  wk_cache_stats st;
  reapi_digest d[6];
  char dir[512], path[4096];
  uint8_t buf[1000];

  snprintf(dir, sizeof(dir), "%s/lru", tmp);
  CHECK(wk_cache_open(dir, 3500, 0, &wc) == 0);
  for (int i = 0; i < 6; i++) {
    cas_test_fill_random(buf, sizeof(buf), (uint64_t)i + 1);
    put(c, buf, sizeof(buf), &d[i]);
  }
  wk_cache_want pinned = {d[0], 0};
  CHECK(wk_cache_acquire(wc, c, &pinned, 1, NULL) == 0); /* held */
  for (int i = 1; i < 6; i++) {
    wk_cache_want w = {d[i], i % 2};
    wk_fetch_stats fs = {0};
    CHECK(wk_cache_acquire(wc, c, &w, 1, &fs) == 0);
    CHECK(fs.misses == 1 && fs.bytes == 1000);
    wk_cache_path(wc, &d[i], i % 2, path, sizeof(path));
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK((sb.st_mode & 0777) == (i % 2 ? 0555 : 0444));
    wk_cache_release(wc, &w, 1);
  }
  wk_cache_get_stats(wc, &st);
  CHECK(st.file_bytes <= 3500);
  CHECK(st.file_evictions >= 3);
  wk_cache_path(wc, &d[0], 0, path, sizeof(path));
  CHECK(access(path, F_OK) == 0); /* pinned: never evicted */
  wk_cache_path(wc, &d[1], 1, path, sizeof(path));
  CHECK(access(path, F_OK) != 0); /* the oldest unpinned one went */
  wk_cache_want recent = {d[5], 1};
  wk_fetch_stats fs = {0};
  CHECK(wk_cache_acquire(wc, c, &recent, 1, &fs) == 0);
  CHECK(fs.hits == 1 && fs.misses == 0);
  wk_cache_release(wc, &recent, 1);
  wk_cache_release(wc, &pinned, 1);
  wk_cache_close(wc);
  /* Re-open: the index is rebuilt from disk. */
  CHECK(wk_cache_open(dir, 3500, 0, &wc) == 0);
  wk_cache_get_stats(wc, &st);
  CHECK(st.files >= 2 && st.file_bytes <= 3500);
  wk_cache_close(wc);
  cas_client_free(c);
}

#define NBLOBS 60
#define NTHREADS 6
static reapi_digest dd[NBLOBS];
static wk_cache *dcache;
static uint64_t dmisses[NTHREADS];

static void *dedup_thread(void *arg) {
  int t = (int)(intptr_t)arg;
  cas_client *c = client();
  wk_cache_want w[NBLOBS];
  wk_fetch_stats fs = {0};

  for (int i = 0; i < NBLOBS; i++) {
    w[i].digest = dd[(i + t * 7) % NBLOBS];
    w[i].exec = 0;
  }
  CHECK(wk_cache_acquire(dcache, c, w, NBLOBS, &fs) == 0);
  dmisses[t] = fs.misses;
  for (int i = 0; i < NBLOBS; i++) {
    char path[4096];
    struct stat sb;
    wk_cache_path(dcache, &w[i].digest, 0, path, sizeof(path));
    CHECK(stat(path, &sb) == 0 && sb.st_size == w[i].digest.size);
  }
  wk_cache_release(dcache, w, NBLOBS);
  cas_client_free(c);
  return NULL;
}

static void test_cache_dedup(void) {
  cas_client *c = client();
  pthread_t th[NTHREADS];
  char dir[512];
  static uint8_t buf[200000];
  uint64_t total = 0;

  for (int i = 0; i < NBLOBS; i++) {
    size_t n = i % 10 == 0 ? sizeof(buf) : 2000 + (size_t)i;
    cas_test_fill_random(buf, n, (uint64_t)i + 100);
    put(c, buf, n, &dd[i]);
  }
  snprintf(dir, sizeof(dir), "%s/dedup", tmp);
  CHECK(wk_cache_open(dir, 0, 0, &dcache) == 0);
  for (int t = 0; t < NTHREADS; t++)
    CHECK(pthread_create(&th[t], NULL, dedup_thread, (void *)(intptr_t)t) == 0);
  for (int t = 0; t < NTHREADS; t++)
    pthread_join(th[t], NULL);
  for (int t = 0; t < NTHREADS; t++)
    total += dmisses[t];
  fprintf(stderr, "dedup: %llu fetches for %d blobs x %d threads\n",
          (unsigned long long)total, NBLOBS, NTHREADS);
  CHECK(total == NBLOBS);
  wk_cache_close(dcache);
  cas_client_free(c);
}

/* ---- cache_parallel: a large fetch split across threads ---- */

#define PBLOBS 24
static int make_calls;

static int make_ok(void *ctx, cas_client **out) {
  (void)ctx;
  __atomic_add_fetch(&make_calls, 1, __ATOMIC_SEQ_CST);
  return cas_client_new(srv.target, NULL, out);
}

static int make_fail(void *ctx, cas_client **out) {
  (void)ctx;
  __atomic_add_fetch(&make_calls, 1, __ATOMIC_SEQ_CST);
  *out = NULL;
  return DB_EUNAVAIL;
}

/* Opens a new cache under tmp/name, fetches w[0..n) with the given split,
 * checks every file's content against its digest, and returns the result
 * of the acquire (the cache is closed again). */
static int fetch_split(const char *name, const wk_cache_want *w, size_t n,
                       int threads, uint64_t min_bytes, wk_fetch_client_fn fn,
                       uint64_t *bytes) {
  cas_client *c = client();
  wk_cache *wc = NULL;
  wk_fetch_stats fs = {0};
  wk_fetch_opts fo = {threads, min_bytes, fn, NULL};
  char dir[512];
  int rv;

  snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
  CHECK(wk_cache_open(dir, 0, 0, &wc) == 0);
  wk_cache_set_fetch(wc, &fo);
  make_calls = 0;
  rv = wk_cache_acquire(wc, c, w, n, &fs);
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    uint8_t *b = NULL;
    size_t len = 0;
    reapi_digest got;
    wk_cache_path(wc, &w[i].digest, 0, path, sizeof(path));
    if (cas_test_read(path, &b, &len) != 0) {
      CHECK(rv != 0); /* only a failed fetch may leave a blob out */
      continue;
    }
    reapi_digest_of(b, len, &got);
    CHECK(reapi_digest_eq(&got, &w[i].digest)); /* never a torn file */
    free(b);
  }
  if (rv == 0) {
    CHECK(fs.misses == n);
    wk_cache_release(wc, w, n);
  }
  *bytes = fs.bytes;
  wk_cache_close(wc);
  cas_client_free(c);
  return rv;
}

static void test_cache_parallel(void) {
  cas_client *c = client();
  static uint8_t buf[3 << 20];
  wk_cache_want w[PBLOBS + 1];
  uint64_t total = 0, got = 0;

  /* Large blobs go through ByteStream, small ones in batches: both kinds
   * end up in every group. */
  for (int i = 0; i < PBLOBS; i++) {
    size_t n = i % 4 == 0 ? (size_t)(1 << 20) + 4096 * (size_t)i
                          : 3000 + 977 * (size_t)i;
    cas_test_fill_random(buf, n, (uint64_t)i + 500);
    put(c, buf, n, &w[i].digest);
    w[i].exec = 0;
    total += n;
  }

  /* Split in three: two helper clients, all blobs intact. */
  CHECK(fetch_split("par3", w, PBLOBS, 3, 0, make_ok, &got) == 0);
  CHECK(make_calls == 2 && got == total);
  /* Under the size threshold: one thread, no helper. */
  CHECK(fetch_split("par_small", w, PBLOBS, 3, total + 1, make_ok, &got) == 0);
  CHECK(make_calls == 0 && got == total);
  /* No helper client can be made: the caller's client fetches it all. */
  CHECK(fetch_split("par_nohelp", w, PBLOBS, 4, 0, make_fail, &got) == 0);
  CHECK(make_calls == 3 && got == total);
  /* A blob the CAS lacks: "not found", the others complete or absent,
   * nothing left pinned (the cache closes). */
  reapi_digest_of("not in the CAS", 14, &w[PBLOBS].digest);
  w[PBLOBS].exec = 0;
  CHECK(fetch_split("par_missing", w, PBLOBS + 1, 3, 0, make_ok, &got) ==
        DB_ENOTFOUND);
  CHECK(make_calls == 2);
  cas_client_free(c);
}

/* Directory builder for tests. */
static void dir_put(cas_client *c, PbDirectory *d, reapi_digest *out) {
  uint8_t *b = NULL;
  size_t n = 0;
  CHECK(reapi_pb_pack(&d->base, &b, &n) == 0);
  put(c, b ? b : (uint8_t *)"", n, out);
  free(b);
}

static void test_materialize(void) {
  cas_client *c = client();
  wk_cache *wc = NULL;
  reapi_digest fa, fx, big[5], dtc, dout, droot;
  PbDigest pa, px, pb[5], ptc, pout;
  PbFileNode na, nx, nb[5], *tcf[5], *rootf[2];
  PbDirectoryNode ntc, nout, *rootd[2];
  PbSymlinkNode ln, *rootl[1];
  PbDirectory tc, outd, root;
  char dir[512], p[4096], cp[4096];
  char names[5][8];
  const char *writable[] = {"out"};
  wk_mat_opts o = {0};
  wk_mat m;
  struct stat s1, s2;

  put(c, "hello\n", 6, &fa);
  put(c, "#!/bin/sh\n", 10, &fx);
  build__bazel__remote__execution__v2__directory__init(&tc);
  for (int i = 0; i < 5; i++) {
    char data[32];
    snprintf(data, sizeof(data), "toolchain file %d", i);
    put(c, data, strlen(data), &big[i]);
    reapi_pb_digest_set(&pb[i], &big[i]);
    build__bazel__remote__execution__v2__file_node__init(&nb[i]);
    snprintf(names[i], sizeof(names[i]), "f%d", i);
    nb[i].name = names[i];
    nb[i].digest = &pb[i];
    tcf[i] = &nb[i];
  }
  tc.n_files = 5;
  tc.files = tcf;
  dir_put(c, &tc, &dtc);
  build__bazel__remote__execution__v2__directory__init(&outd);
  dir_put(c, &outd, &dout);
  build__bazel__remote__execution__v2__file_node__init(&na);
  build__bazel__remote__execution__v2__file_node__init(&nx);
  reapi_pb_digest_set(&pa, &fa);
  reapi_pb_digest_set(&px, &fx);
  na.name = "a.txt";
  na.digest = &pa;
  nx.name = "run.sh";
  nx.digest = &px;
  nx.is_executable = 1;
  rootf[0] = &na;
  rootf[1] = &nx;
  build__bazel__remote__execution__v2__directory_node__init(&ntc);
  build__bazel__remote__execution__v2__directory_node__init(&nout);
  reapi_pb_digest_set(&ptc, &dtc);
  reapi_pb_digest_set(&pout, &dout);
  nout.name = "out";
  nout.digest = &pout;
  ntc.name = "tc";
  ntc.digest = &ptc;
  rootd[0] = &nout;
  rootd[1] = &ntc;
  build__bazel__remote__execution__v2__symlink_node__init(&ln);
  ln.name = "link";
  ln.target = "a.txt";
  rootl[0] = &ln;
  build__bazel__remote__execution__v2__directory__init(&root);
  root.n_files = 2;
  root.files = rootf;
  root.n_directories = 2;
  root.directories = rootd;
  root.n_symlinks = 1;
  root.symlinks = rootl;
  dir_put(c, &root, &droot);

  snprintf(dir, sizeof(dir), "%s/mcache", tmp);
  CHECK(wk_cache_open(dir, 0, 0, &wc) == 0);
  o.tree_min_files = 3;
  o.writable_dirs = writable;
  o.n_writable = 1;
  o.wuid = 65534;
  o.wgid = 65534;
  for (int round = 0; round < 2; round++) {
    snprintf(dir, sizeof(dir), "%s/action%d", tmp, round);
    CHECK(mkdir(dir, 0755) == 0);
    CHECK(wk_materialize(wc, c, &droot, dir, &o, &m) == 0);
    snprintf(p, sizeof(p), "%s/a.txt", dir);
    wk_cache_path(wc, &fa, 0, cp, sizeof(cp));
    CHECK(lstat(p, &s1) == 0 && stat(cp, &s2) == 0);
    CHECK(s1.st_ino == s2.st_ino); /* a hardlink of the cache file */
    CHECK((s1.st_mode & 0777) == 0444);
    snprintf(p, sizeof(p), "%s/run.sh", dir);
    CHECK(stat(p, &s1) == 0 && (s1.st_mode & 0777) == 0555);
    snprintf(p, sizeof(p), "%s/link", dir);
    CHECK(lstat(p, &s1) == 0 && S_ISLNK(s1.st_mode));
    snprintf(p, sizeof(p), "%s/out", dir);
    CHECK(stat(p, &s1) == 0 && S_ISDIR(s1.st_mode));
    if (geteuid() == 0)
      CHECK(s1.st_uid == 65534);
    /* The big subtree is a bind from the tree cache, not linked. */
    CHECK(m.nbinds == 1 && !strcmp(m.binds[0].rel, "tc"));
    CHECK(round == 0 ? m.trees_built == 1 : m.trees_hit == 1);
    snprintf(p, sizeof(p), "%s/tc/f0", dir);
    CHECK(access(p, F_OK) != 0); /* empty mount point */
    snprintf(p, sizeof(p), "%s/f3", m.binds[0].src);
    CHECK(access(p, F_OK) == 0);
    CHECK(stat(m.binds[0].src, &s1) == 0 && (s1.st_mode & 0222) == 0);
    wk_mat_release(wc, &m);
    /* Files in the writable dir are not the tree's concern here. */
  }
  /* Missing input: DB_ENOTFOUND with the missing digest reported. */
  {
    reapi_digest ghost, groot;
    PbDigest pg;
    PbFileNode ng, *gf[1];
    PbDirectory gd;
    reapi_digest_of("never uploaded", 14, &ghost);
    reapi_pb_digest_set(&pg, &ghost);
    build__bazel__remote__execution__v2__file_node__init(&ng);
    ng.name = "ghost";
    ng.digest = &pg;
    gf[0] = &ng;
    build__bazel__remote__execution__v2__directory__init(&gd);
    gd.n_files = 1;
    gd.files = gf;
    dir_put(c, &gd, &groot);
    snprintf(dir, sizeof(dir), "%s/action-ghost", tmp);
    CHECK(mkdir(dir, 0755) == 0);
    wk_mat_opts o2 = {0};
    CHECK(wk_materialize(wc, c, &groot, dir, &o2, &m) == DB_ENOTFOUND);
    CHECK(m.nmissing == 1 && reapi_digest_eq(&m.missing[0], &ghost));
    wk_mat_release(wc, &m);
  }
  wk_cache_close(wc);
  cas_client_free(c);
}

/* Directory messages given inline (Assignment.directories) stand in for
 * the CAS: a tree whose Directory blobs were never uploaded materialises
 * from them, a blob that is no Directory is ignored, and without them the
 * same tree is missing from the CAS. */
static void test_materialize_inline(void) {
  cas_client *c = client();
  wk_cache *wc = NULL;
  reapi_digest fa, dsub, droot;
  PbDigest pa, psub;
  PbFileNode na, *subf[1];
  PbDirectoryNode nsub, *rootd[1];
  PbDirectory sub, root;
  ProtobufCBinaryData inl[3];
  uint8_t *bsub = NULL, *broot = NULL;
  size_t lsub = 0, lroot = 0;
  char dir[512], p[4096];
  wk_mat_opts o = {0};
  wk_mat m;
  struct stat st;

  put(c, "inline\n", 7, &fa);
  reapi_pb_digest_set(&pa, &fa);
  build__bazel__remote__execution__v2__file_node__init(&na);
  na.name = "f.txt";
  na.digest = &pa;
  subf[0] = &na;
  build__bazel__remote__execution__v2__directory__init(&sub);
  sub.n_files = 1;
  sub.files = subf;
  CHECK(reapi_pb_pack(&sub.base, &bsub, &lsub) == 0);
  reapi_digest_of(bsub, lsub, &dsub);
  reapi_pb_digest_set(&psub, &dsub);
  build__bazel__remote__execution__v2__directory_node__init(&nsub);
  nsub.name = "sub";
  nsub.digest = &psub;
  rootd[0] = &nsub;
  build__bazel__remote__execution__v2__directory__init(&root);
  root.n_directories = 1;
  root.directories = rootd;
  CHECK(reapi_pb_pack(&root.base, &broot, &lroot) == 0);
  reapi_digest_of(broot, lroot, &droot);

  snprintf(dir, sizeof(dir), "%s/icache", tmp);
  CHECK(wk_cache_open(dir, 0, 0, &wc) == 0);
  static const char junk[] = "\xff\xff not a Directory";
  inl[0].data = (uint8_t *)junk;
  inl[0].len = sizeof(junk) - 1;
  inl[1].data = broot;
  inl[1].len = lroot;
  inl[2].data = bsub;
  inl[2].len = lsub;
  o.inline_dirs = inl;
  o.n_inline_dirs = 3;
  snprintf(dir, sizeof(dir), "%s/inline-action", tmp);
  CHECK(mkdir(dir, 0755) == 0);
  CHECK(wk_materialize(wc, c, &droot, dir, &o, &m) == 0);
  snprintf(p, sizeof(p), "%s/sub/f.txt", dir);
  CHECK(stat(p, &st) == 0 && st.st_size == 7);
  CHECK(m.fetch.misses == 1); /* the file; no Directory was fetched */
  wk_mat_release(wc, &m);

  o.n_inline_dirs = 0;
  snprintf(dir, sizeof(dir), "%s/inline-none", tmp);
  CHECK(mkdir(dir, 0755) == 0);
  CHECK(wk_materialize(wc, c, &droot, dir, &o, &m) == DB_ENOTFOUND);
  wk_mat_release(wc, &m);
  free(bsub);
  free(broot);
  wk_cache_close(wc);
  cas_client_free(c);
}

static void write_file(const char *path, const char *s, int mode) {
  CHECK(cas_test_write(path, s, strlen(s)) == 0);
  CHECK(chmod(path, (mode_t)mode) == 0);
}

static void test_outputs(void) {
  cas_client *c = client();
  char wd[512], p[4096];
  const char *paths[] = {"f.txt", "d", "l", "none", "esc/x", "d2"};
  wk_arena a = {0};
  wk_upload u = {0};
  PbActionResult ar;
  char err[256] = "";
  reapi_digest *missing = NULL;
  size_t nmissing = 0;

  snprintf(wd, sizeof(wd), "%s/outwd", tmp);
  CHECK(wk_mkdirs(wd, 0755) == 0);
  snprintf(p, sizeof(p), "%s/f.txt", wd);
  write_file(p, "file\n", 0644);
  snprintf(p, sizeof(p), "%s/d/sub/deeper", wd);
  CHECK(wk_mkdirs(p, 0755) == 0);
  snprintf(p, sizeof(p), "%s/d/b", wd);
  write_file(p, "same\n", 0755);
  snprintf(p, sizeof(p), "%s/d/sub/a", wd);
  write_file(p, "same\n", 0644);
  snprintf(p, sizeof(p), "%s/d/sub/deeper/c", wd);
  write_file(p, "deep\n", 0644);
  snprintf(p, sizeof(p), "%s/d/ln", wd);
  CHECK(symlink("sub/a", p) == 0);
  snprintf(p, sizeof(p), "%s/l", wd);
  CHECK(symlink("f.txt", p) == 0);
  snprintf(p, sizeof(p), "%s/esc", wd);
  CHECK(symlink("/etc", p) == 0); /* esc/x must not be followed */
  snprintf(p, sizeof(p), "%s/d2/sub", wd);
  CHECK(wk_mkdirs(p, 0755) == 0); /* same shape twice: children dedup */

  build__bazel__remote__execution__v2__action_result__init(&ar);
  CHECK(wk_outputs_collect(wd, paths, 6, NULL, 0, NULL, 0, &a, &u, &ar, err,
                           sizeof(err)) == 0);
  CHECK(ar.n_output_files == 1 && !strcmp(ar.output_files[0]->path, "f.txt"));
  CHECK(!ar.output_files[0]->is_executable);
  CHECK(ar.n_output_symlinks == 1 &&
        !strcmp(ar.output_symlinks[0]->target, "f.txt"));
  CHECK(ar.n_output_directories == 2);
  CHECK(cas_client_upload(c, u.v, u.n, NULL, NULL) == 0);
  {
    PbOutputDirectory *od = ar.output_directories[0];
    reapi_digest td;
    cas_blob_dst dst = {0};
    PbTree *t;
    CHECK(!strcmp(od->path, "d"));
    CHECK(reapi_pb_digest_get(od->tree_digest, &td) == 0);
    dst.digest = td;
    CHECK(cas_client_download(c, &dst, 1, NULL, NULL) == 0);
    t = build__bazel__remote__execution__v2__tree__unpack(NULL, dst.len,
                                                          dst.data);
    CHECK(t && t->root);
    CHECK(t->root->n_files == 1 && !strcmp(t->root->files[0]->name, "b") &&
          t->root->files[0]->is_executable);
    CHECK(t->root->n_directories == 1 &&
          !strcmp(t->root->directories[0]->name, "sub"));
    CHECK(t->root->n_symlinks == 1);
    CHECK(t->n_children == 2); /* sub, sub/deeper */
    /* root_directory_digest is the digest of the encoded root. */
    {
      uint8_t *b = NULL;
      size_t n = 0;
      reapi_digest rd, want;
      CHECK(reapi_pb_pack(&t->root->base, &b, &n) == 0);
      reapi_digest_of(b, n, &rd);
      CHECK(reapi_pb_digest_get(od->root_directory_digest, &want) == 0);
      CHECK(reapi_digest_eq(&rd, &want));
      free(b);
    }
    build__bazel__remote__execution__v2__tree__free_unpacked(t, NULL);
    free(dst.data);
  }
  {
    reapi_digest *all = calloc(u.n, sizeof(*all));
    for (size_t i = 0; i < u.n; i++)
      all[i] = u.v[i].digest;
    CHECK(cas_client_find_missing(c, all, u.n, &missing, &nmissing) == 0);
    CHECK(nmissing == 0);
    free(all);
    free(missing);
  }
  wk_upload_free(&u);
  wk_arena_free(&a);
  /* Legacy lists: a directory named as an output file is an error. */
  {
    const char *files[] = {"d"};
    build__bazel__remote__execution__v2__action_result__init(&ar);
    CHECK(wk_outputs_collect(wd, NULL, 0, files, 1, NULL, 0, &a, &u, &ar, err,
                             sizeof(err)) == DB_EINVAL);
    wk_upload_free(&u);
    wk_arena_free(&a);
  }
  cas_client_free(c);
}

static void test_jobs(void) {
  wk_jobs *j = NULL;
  char path[600], c;
  int fd, t1, t2;
  struct stat st;

  CHECK(wk_jobs_new(tmp, 0, &j) == DB_EINVAL && j == NULL);
  CHECK(wk_jobs_new(tmp, 5000, &j) == DB_EINVAL);
  /* A stale file where the FIFO goes is replaced. */
  snprintf(path, sizeof(path), "%s/jobserver", tmp);
  close(open(path, O_WRONLY | O_CREAT, 0644));
  CHECK(wk_jobs_new(tmp, 3, &j) == 0);
  CHECK(strcmp(wk_jobs_path(j), path) == 0);
  CHECK(stat(path, &st) == 0 && S_ISFIFO(st.st_mode) &&
        (st.st_mode & 0777) == 0666);
  CHECK(wk_jobs_available(j) == 3);
  /* Each action takes its implicit token while one is free. */
  t1 = wk_jobs_begin(j);
  t2 = wk_jobs_begin(j);
  CHECK(t1 == 1 && t2 == 1 && wk_jobs_available(j) == 1);
  /* An action (a compiler in it) takes the last token and dies with it. */
  fd = open(path, O_RDWR | O_NONBLOCK);
  CHECK(fd >= 0 && read(fd, &c, 1) == 1 && c == '+');
  CHECK(wk_jobs_begin(j) == 0); /* a third action runs on no token */
  wk_jobs_end(j, 0);
  wk_jobs_end(j, t1);
  CHECK(wk_jobs_available(j) == 1); /* one action still runs: no reset */
  wk_jobs_end(j, t2);
  CHECK(wk_jobs_available(j) == 3); /* idle: the leak is repaired */
  /* Tampering (tokens added) is undone the same way. */
  CHECK(write(fd, "+++++", 5) == 5 && wk_jobs_available(j) == 8);
  t1 = wk_jobs_begin(j);
  wk_jobs_end(j, t1);
  CHECK(wk_jobs_available(j) == 3);
  close(fd);
  wk_jobs_free(j);
  CHECK(access(path, F_OK) != 0); /* removed */
}

int main(int argc, char **argv) {
  int rv = 0;

  if (argc < 3)
    return 2;
  tmp = cas_test_mkdtemp("worker-unit");
  CHECK(tmp);
  chmod(tmp, 0755);
  if (strcmp(argv[1], "relpath") && strcmp(argv[1], "early_parse") &&
      strcmp(argv[1], "jobs")) {
    char d[600];
    snprintf(d, sizeof(d), "%s/srv", tmp);
    CHECK(mkdir(d, 0755) == 0);
    CHECK(cas_test_server_start(argv[2], d, &srv) == 0);
  }
  if (!strcmp(argv[1], "relpath"))
    test_relpath();
  else if (!strcmp(argv[1], "early_parse"))
    test_early_parse();
  else if (!strcmp(argv[1], "cache_lru"))
    test_cache_lru();
  else if (!strcmp(argv[1], "cache_dedup"))
    test_cache_dedup();
  else if (!strcmp(argv[1], "cache_parallel"))
    test_cache_parallel();
  else if (!strcmp(argv[1], "materialize"))
    test_materialize();
  else if (!strcmp(argv[1], "materialize_inline"))
    test_materialize_inline();
  else if (!strcmp(argv[1], "outputs"))
    test_outputs();
  else if (!strcmp(argv[1], "jobs"))
    test_jobs();
  else
    rv = 2;
  cas_test_server_stop(&srv);
  cas_test_rmrf(tmp);
  free(tmp);
  if (rv == 0)
    printf("worker_%s: ok\n", argv[1]);
  return rv;
}
