/*
 * cas_client against the real `cargo-distbuild cas run` server.
 * Usage: cas_client_test CASE /path/to/cargo-distbuild
 * Each ctest test runs one CASE in its own process with its own server.
 * cas_client_test retry HOST:PORT runs against flaky_cas_server.py
 * (test_retry.py starts it), which damages every blob's first upload.
 */
#include "cas_client.h"
#include "cas_test_util.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "db_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_RV(expr, want)                                                   \
  do {                                                                         \
    int rv_ = (expr);                                                          \
    if (rv_ != (want)) {                                                       \
      fprintf(stderr, "%s:%d: %s = %s, want %s\n", __FILE__, __LINE__, #expr,  \
              db_strerror(rv_), db_strerror(want));                            \
      last_status();                                                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static const char *bin;
static cas_client *cur; /* for diagnostics */

static void last_status(void) {
  const rpc_status *st = cur ? cas_client_last_status(cur) : NULL;
  if (st && st->code)
    fprintf(stderr, "  last status: %s: %s\n", rpc_code_name(st->code),
            st->message ? st->message : "");
}

static char *tmp;
static cas_test_server srv;

typedef struct blob {
  uint8_t *data;
  size_t len;
  reapi_digest d;
} blob;

static void blob_make(blob *b, size_t len, int text, uint64_t seed) {
  b->data = malloc(len ? len : 1);
  b->len = len;
  if (text)
    cas_test_fill_text(b->data, len, seed);
  else
    cas_test_fill_random(b->data, len, seed);
  reapi_digest_of(b->data, len, &b->d);
}

static cas_client *connect_client(const cas_client_opts *o) {
  cas_client *c = NULL;
  CHECK_RV(cas_client_new(srv.target, o, &c), 0);
  cur = c;
  return c;
}

/* Upload a mix, check find_missing, download to memory and files. */
static void run_roundtrip(const cas_client_opts *o) {
  enum { NB = 40 };
  blob b[NB + 1];
  cas_blob_src src[NB + 2];
  cas_blob_dst dst[NB + 2];
  reapi_digest dig[NB + 2], *missing = NULL;
  size_t nmissing = 99, n = 0;
  uint64_t raw = 0, wire = 0;
  char path[NB + 2][300], fsrc[300];
  cas_client *c = connect_client(o);

  if (!c)
    return;
  blob_make(&b[0], 0, 0, 1);
  blob_make(&b[1], 100, 1, 2);
  blob_make(&b[2], 2 << 20, 1, 3); /* compressible, ByteStream */
  blob_make(&b[3], 3 << 20, 0, 4); /* random, ByteStream */
  blob_make(&b[4], 5000, 0, 5);    /* random small: identity in batch */
  for (int i = 5; i < NB; i++)
    blob_make(&b[i], (size_t)(i * 997) % 70000, i & 1, (uint64_t)i + 10);
  blob_make(&b[NB], (3 << 20) / 2, 1, 99); /* file source, ByteStream */
  snprintf(fsrc, sizeof(fsrc), "%s/src.bin", tmp);
  CHECK(cas_test_write(fsrc, b[NB].data, b[NB].len) == 0);
  for (int i = 0; i < NB; i++) {
    src[n] = (cas_blob_src){b[i].d, b[i].data, NULL};
    dig[n++] = b[i].d;
  }
  src[n] = (cas_blob_src){b[NB].d, NULL, fsrc};
  dig[n++] = b[NB].d;
  src[n] = src[1]; /* a duplicate */
  dig[n++] = b[1].d;

  CHECK_RV(cas_client_find_missing(c, dig, n, &missing, &nmissing), 0);
  CHECK(nmissing >= NB - 1); /* all but the empty blob */
  free(missing);
  CHECK_RV(cas_client_upload(c, src, n, &raw, &wire), 0);
  CHECK(raw > wire);
  CHECK(raw > (6u << 20));
  fprintf(stderr, "upload: raw %llu wire %llu\n", (unsigned long long)raw,
          (unsigned long long)wire);
  CHECK_RV(cas_client_find_missing(c, dig, n, &missing, &nmissing), 0);
  CHECK(nmissing == 0);
  free(missing);
  /* A second upload sends nothing. */
  CHECK_RV(cas_client_upload(c, src, n, &raw, &wire), 0);
  CHECK(raw == 0 && wire == 0);

  /* Download: even indices to memory, odd ones to files. */
  for (size_t i = 0; i < n; i++) {
    memset(&dst[i], 0, sizeof(dst[i]));
    dst[i].digest = dig[i];
    if (i & 1) {
      snprintf(path[i], sizeof(path[i]), "%s/out%zu", tmp, i);
      dst[i].path = path[i];
      dst[i].mode = 0640;
    }
  }
  CHECK_RV(cas_client_download(c, dst, n, &raw, &wire), 0);
  CHECK(raw > wire);
  for (size_t i = 0; i < n; i++) {
    const blob *e = i == NB ? &b[NB] : i == NB + 1 ? &b[1] : &b[i];
    if (dst[i].path) {
      uint8_t *got;
      size_t len;
      struct stat st;
      CHECK(cas_test_read(dst[i].path, &got, &len) == 0);
      CHECK(len == e->len && (len == 0 || !memcmp(got, e->data, len)));
      CHECK(stat(dst[i].path, &st) == 0 && (st.st_mode & 0777) == 0640);
      free(got);
    } else {
      CHECK(dst[i].len == e->len &&
            (e->len == 0 || !memcmp(dst[i].data, e->data, e->len)));
    }
    free(dst[i].data);
  }
  for (int i = 0; i <= NB; i++)
    free(b[i].data);
  cas_client_free(c);
}

static void case_roundtrip(void) {
  run_roundtrip(NULL);
}

/* Many ByteStream transfers at once, small batches, few slots. */
static void case_streams(void) {
  cas_client_opts o = {0};
  o.stream_threshold = 8192;
  o.batch_limit = 64 << 10;
  o.max_inflight = 4;
  o.zstd_level = 3;
  run_roundtrip(&o);
}

/* ---- trees ---- */

typedef Build__Bazel__Remote__Execution__V2__Directory pb_dir;
typedef Build__Bazel__Remote__Execution__V2__FileNode pb_file;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode pb_dnode;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode pb_link;
typedef Build__Bazel__Remote__Execution__V2__Digest pb_digest;

typedef struct packed {
  uint8_t *data;
  size_t len;
  reapi_digest d;
  pb_digest pd;
} packed;

static void pack_dir(pb_dir *dir, packed *out) {
  out->len =
      build__bazel__remote__execution__v2__directory__get_packed_size(dir);
  out->data = malloc(out->len + 1);
  build__bazel__remote__execution__v2__directory__pack(dir, out->data);
  reapi_digest_of(out->data, out->len, &out->d);
  out->pd = (pb_digest)BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  out->pd.hash = out->d.hash;
  out->pd.size_bytes = out->d.size;
}

static pb_digest pdig(reapi_digest *d) {
  pb_digest p = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  p.hash = d->hash;
  p.size_bytes = d->size;
  return p;
}

static void check_file(const char *dir, const char *rel, const blob *want,
                       int exec) {
  char p[512];
  uint8_t *got = NULL;
  size_t len = 0;
  struct stat st;

  snprintf(p, sizeof(p), "%s/%s", dir, rel);
  CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
  CHECK(((st.st_mode & 0111) != 0) == exec);
  CHECK(cas_test_read(p, &got, &len) == 0);
  CHECK(len == want->len && (len == 0 || !memcmp(got, want->data, len)));
  if (len != want->len)
    fprintf(stderr, "  %s: %zu bytes, want %zu\n", rel, len, want->len);
  free(got);
}

static void case_tree(void) {
  blob x, y, big, empty;
  pb_digest dx, dy, dbig, dempty;
  packed pdeeper, psub, proot;
  char out[300], lt[300];
  ssize_t ll;
  cas_client *c = connect_client(NULL);

  if (!c)
    return;
  blob_make(&x, 3000, 1, 1);
  blob_make(&y, 200, 1, 2);
  blob_make(&big, 2 << 20, 1, 3);
  blob_make(&empty, 0, 0, 0);
  dx = pdig(&x.d);
  dy = pdig(&y.d);
  dbig = pdig(&big.d);
  dempty = pdig(&empty.d);

  /* deeper: { c.txt = x, e.txt = empty } */
  pb_file f_c = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  pb_file f_e = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  f_c.name = "c.txt", f_c.digest = &dx;
  f_e.name = "e.txt", f_e.digest = &dempty;
  pb_file *deeper_files[] = {&f_c, &f_e};
  pb_dir deeper = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
  deeper.n_files = 2, deeper.files = deeper_files;
  pack_dir(&deeper, &pdeeper);

  /* sub: { b.txt = x, big.bin = big, tool (exec) = y, deeper/, link ->
   * ../a.txt } */
  pb_file f_b = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  pb_file f_big = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  pb_file f_tool = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  f_b.name = "b.txt", f_b.digest = &dx;
  f_big.name = "big.bin", f_big.digest = &dbig;
  f_tool.name = "tool", f_tool.digest = &dy, f_tool.is_executable = 1;
  pb_file *sub_files[] = {&f_b, &f_big, &f_tool};
  pb_dnode n_deeper = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY_NODE__INIT;
  n_deeper.name = "deeper", n_deeper.digest = &pdeeper.pd;
  pb_dnode *sub_dirs[] = {&n_deeper};
  pb_link l = BUILD__BAZEL__REMOTE__EXECUTION__V2__SYMLINK_NODE__INIT;
  l.name = "link", l.target = "../a.txt";
  pb_link *sub_links[] = {&l};
  pb_dir sub = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
  sub.n_files = 3, sub.files = sub_files;
  sub.n_directories = 1, sub.directories = sub_dirs;
  sub.n_symlinks = 1, sub.symlinks = sub_links;
  pack_dir(&sub, &psub);

  /* root: { a.txt = x, run.sh (exec) = x, sub/, sub2/ (= sub again) } */
  pb_file f_a = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  pb_file f_run = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
  f_a.name = "a.txt", f_a.digest = &dx;
  f_run.name = "run.sh", f_run.digest = &dx, f_run.is_executable = 1;
  pb_file *root_files[] = {&f_a, &f_run};
  pb_dnode n_sub = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY_NODE__INIT;
  pb_dnode n_sub2 = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY_NODE__INIT;
  n_sub.name = "sub", n_sub.digest = &psub.pd;
  n_sub2.name = "sub2", n_sub2.digest = &psub.pd;
  pb_dnode *root_dirs[] = {&n_sub, &n_sub2};
  pb_dir root = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
  root.n_files = 2, root.files = root_files;
  root.n_directories = 2, root.directories = root_dirs;
  pack_dir(&root, &proot);

  cas_blob_src src[] = {
      {x.d, x.data, NULL},       {y.d, y.data, NULL},
      {big.d, big.data, NULL},   {pdeeper.d, pdeeper.data, NULL},
      {psub.d, psub.data, NULL}, {proot.d, proot.data, NULL},
  };
  CHECK_RV(cas_client_upload(c, src, 6, NULL, NULL), 0);

  snprintf(out, sizeof(out), "%s/tree", tmp);
  CHECK_RV(cas_client_fetch_tree(c, &proot.d, out), 0);
  check_file(out, "a.txt", &x, 0);
  check_file(out, "run.sh", &x, 1);
  for (int k = 0; k < 2; k++) {
    char rel[400];
    const char *s = k ? "sub2" : "sub";
    snprintf(rel, sizeof(rel), "%s/b.txt", s);
    check_file(out, rel, &x, 0);
    snprintf(rel, sizeof(rel), "%s/big.bin", s);
    check_file(out, rel, &big, 0);
    snprintf(rel, sizeof(rel), "%s/tool", s);
    check_file(out, rel, &y, 1);
    snprintf(rel, sizeof(rel), "%s/deeper/c.txt", s);
    check_file(out, rel, &x, 0);
    snprintf(rel, sizeof(rel), "%s/deeper/e.txt", s);
    check_file(out, rel, &empty, 0);
    snprintf(rel, sizeof(rel), "%s/%s/link", out, s);
    ll = readlink(rel, lt, sizeof(lt) - 1);
    CHECK(ll == 8 && !memcmp(lt, "../a.txt", 8));
  }
  /* A non-empty target directory is refused. */
  CHECK_RV(cas_client_fetch_tree(c, &proot.d, out), DB_EEXIST);
  /* A missing root. */
  snprintf(out, sizeof(out), "%s/tree2", tmp);
  CHECK(cas_client_fetch_tree(c, &x.d, out) != 0); /* x is not a Directory */
  {
    reapi_digest nope;
    reapi_digest_of("no such directory", 17, &nope);
    snprintf(out, sizeof(out), "%s/tree3", tmp);
    CHECK_RV(cas_client_fetch_tree(c, &nope, out), DB_ENOTFOUND);
  }
  free(x.data), free(y.data), free(big.data), free(empty.data);
  free(pdeeper.data), free(psub.data), free(proot.data);
  cas_client_free(c);
}

/* ---- errors ---- */

static int free_port(void) {
  struct sockaddr_in a = {0};
  socklen_t al = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

static void case_errors(void) {
  blob small, large;
  cas_blob_dst d[3];
  char p[300], target[64];
  cas_client *c = connect_client(NULL), *dead = NULL;
  reapi_digest *missing = NULL;
  size_t nmissing = 0;
  double t0;

  if (!c)
    return;
  blob_make(&small, 1000, 1, 77);
  blob_make(&large, 2 << 20, 1, 78);
  memset(d, 0, sizeof(d));
  d[0].digest = small.d;
  CHECK_RV(cas_client_download(c, d, 1, NULL, NULL), DB_ENOTFOUND);
  CHECK(cas_client_last_status(c)->code == 5);
  d[0].digest = large.d;
  CHECK_RV(cas_client_download(c, d, 1, NULL, NULL), DB_ENOTFOUND);
  snprintf(p, sizeof(p), "%s/missing", tmp);
  d[0].path = p;
  d[0].mode = 0644;
  CHECK_RV(cas_client_download(c, d, 1, NULL, NULL), DB_ENOTFOUND);
  CHECK(access(p, F_OK) != 0); /* nothing visible */
  /* The empty blob is never fetched and always exists. */
  memset(d, 0, sizeof(d));
  d[0].digest = reapi_digest_empty;
  CHECK_RV(cas_client_download(c, d, 1, NULL, NULL), 0);
  CHECK(d[0].len == 0);
  free(d[0].data);
  /* Mixed: one present, one missing -> DB_ENOTFOUND, the present one is
   * still delivered. */
  {
    cas_blob_src s = {small.d, small.data, NULL};
    CHECK_RV(cas_client_upload(c, &s, 1, NULL, NULL), 0);
    memset(d, 0, sizeof(d));
    d[0].digest = small.d;
    d[1].digest = large.d;
    CHECK_RV(cas_client_download(c, d, 2, NULL, NULL), DB_ENOTFOUND);
    CHECK(d[0].len == small.len && d[0].data &&
          !memcmp(d[0].data, small.data, small.len));
    free(d[0].data);
    free(d[1].data);
  }
  /* A wrong digest is refused by the server. */
  {
    cas_blob_src s = {large.d, small.data, NULL};
    s.digest.size = (int64_t)small.len;
    CHECK(cas_client_upload(c, &s, 1, NULL, NULL) != 0);
    s.digest = large.d;
    s.data = large.data;
    s.digest.hash[0] = s.digest.hash[0] == 'a' ? 'b' : 'a';
    CHECK(cas_client_upload(c, &s, 1, NULL, NULL) != 0);
  }
  /* Server not running: a clean, quick DB_EUNAVAIL. */
  snprintf(target, sizeof(target), "127.0.0.1:%d", free_port());
  CHECK_RV(cas_client_new(target, NULL, &dead), 0);
  if (dead) {
    cas_blob_src s = {small.d, small.data, NULL};
    t0 = cas_test_now();
    CHECK_RV(cas_client_upload(dead, &s, 1, NULL, NULL), DB_EUNAVAIL);
    CHECK_RV(cas_client_find_missing(dead, &small.d, 1, &missing, &nmissing),
             DB_EUNAVAIL);
    memset(d, 0, sizeof(d));
    d[0].digest = small.d;
    CHECK_RV(cas_client_download(dead, d, 1, NULL, NULL), DB_EUNAVAIL);
    CHECK(cas_test_now() - t0 < 10.0);
    cas_client_free(dead);
  }
  free(small.data);
  free(large.data);
  cas_client_free(c);
}

/* Every blob's first upload is refused as damaged (INVALID_ARGUMENT):
 * cas_client_upload asks again what is missing and uploads it once more.
 * test_retry.py checks the server saw exactly two attempts per blob. */
static int case_retry(const char *target) {
  blob small, large;
  cas_blob_src s[2];
  cas_client_opts o = {0};
  cas_client *c = NULL;
  uint64_t raw = 0, wire = 0;

  blob_make(&small, 3000, 1, 1);
  blob_make(&large, (3u << 20) + 17, 0, 2); /* above the stream threshold */
  /* The fake server announces no compressor: Writes use blobs/. */
  CHECK_RV(cas_client_new(target, &o, &c), 0);
  cur = c;
  if (c) {
    s[0] = (cas_blob_src){small.d, small.data, NULL};
    s[1] = (cas_blob_src){large.d, large.data, NULL};
    CHECK_RV(cas_client_upload(c, s, 2, &raw, &wire), 0);
    /* Both stored; the damaged first Write went over the wire too. */
    CHECK(raw >= (uint64_t)(small.len + large.len));
    CHECK(wire >= 2 * (uint64_t)large.len);
    /* A second call finds nothing missing and sends nothing. */
    CHECK_RV(cas_client_upload(c, s, 2, &raw, &wire), 0);
    CHECK(raw == 0 && wire == 0);
    cas_client_free(c);
  }
  free(small.data);
  free(large.data);
  fprintf(stderr, "retry: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } cases[] = {{"roundtrip", case_roundtrip},
               {"streams", case_streams},
               {"tree", case_tree},
               {"errors", case_errors}};
  int found = 0;

  if (argc != 3) {
    fprintf(stderr, "usage: %s CASE /path/to/cargo-distbuild\n", argv[0]);
    return 2;
  }
  if (!strcmp(argv[1], "retry"))
    return case_retry(argv[2]);
  bin = argv[2];
  tmp = cas_test_mkdtemp("cas_client");
  if (!tmp || cas_test_server_start(bin, tmp, &srv) != 0) {
    fprintf(stderr, "cannot start the CAS server\n");
    return 1;
  }
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (!strcmp(argv[1], cases[i].name)) {
      cases[i].fn();
      found = 1;
    }
  }
  cas_test_server_stop(&srv);
  cas_test_rmrf(tmp);
  free(tmp);
  if (!found) {
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
  }
  fprintf(stderr, "%s: %d failure(s)\n", argv[1], failures);
  return failures ? 1 : 0;
}
