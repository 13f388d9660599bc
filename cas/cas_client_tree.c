/*
 * cas_client_fetch_tree: GetTree (paged, server-streaming), then create
 * directories and symlinks, and download every distinct file once;
 * duplicates become hardlinks (same executable bit) or copies.
 *
 * A Directory is identified by the digest of its canonical encoding,
 * which protobuf-c's packer produces (field order, no defaults, packed
 * repeated scalars; see the canonical-encoding test in tests/proto), so each
 * unpacked message is packed again and hashed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas_client_int.h"
#include "db_err.h"

#define TREE_MAX_DEPTH 512

typedef Build__Bazel__Remote__Execution__V2__Directory pb_dir;
typedef Build__Bazel__Remote__Execution__V2__Digest pb_digest;

typedef Build__Bazel__Remote__Execution__V2__GetTreeResponse pb_tree_resp;

typedef struct tree_dir {
  reapi_digest digest;
  const pb_dir *msg; /* borrowed from one of tree_ctx.resps */
} tree_dir;

typedef struct tree_ctx {
  cas_client *c;
  tree_dir *dirs;
  size_t ndirs, cap;
  pb_tree_resp **resps; /* every response, owning the Directory messages */
  size_t nresps, rcap;
  uint8_t *enc; /* re-encoding buffer */
  size_t enc_cap;
  char *token; /* next_page_token of the last response */
  size_t msgs; /* responses of the current request */
  int err;
  /* files */
  cas_blob_dst *files;
  size_t nfiles, fcap;
} tree_ctx;

static const reapi_digest *dir_get(void *arr, size_t i) {
  return &((tree_dir *)arr)[i].digest;
}

static const reapi_digest *file_get(void *arr, size_t i) {
  return &((cas_blob_dst *)arr)[i].digest;
}

static int tree_add_dir(tree_ctx *x, const pb_dir *m) {
  size_t len =
      build__bazel__remote__execution__v2__directory__get_packed_size(m);

  if (x->ndirs == x->cap) {
    size_t nc = x->cap ? x->cap * 2 : 64;
    tree_dir *d = realloc(x->dirs, nc * sizeof(*d));
    if (!d)
      return DB_ENOMEM;
    x->dirs = d;
    x->cap = nc;
  }
  if (len > x->enc_cap) {
    size_t nc = len > 2 * x->enc_cap ? len : 2 * x->enc_cap;
    uint8_t *e = realloc(x->enc, nc);
    if (!e)
      return DB_ENOMEM;
    x->enc = e;
    x->enc_cap = nc;
  }
  len = build__bazel__remote__execution__v2__directory__pack(m, x->enc);
  reapi_digest_of(x->enc, len, &x->dirs[x->ndirs].digest);
  x->dirs[x->ndirs++].msg = m;
  return 0;
}

static int tree_on_message(void *ctx, const uint8_t *msg, size_t len) {
  cas_pump *p = ctx;
  tree_ctx *x = p->ctx;
  pb_tree_resp *r;
  int rv = DB_ENOMEM;

  free(x->token);
  x->token = NULL;
  x->msgs++;
  if (x->nresps == x->rcap) {
    size_t nc = x->rcap ? x->rcap * 2 : 16;
    pb_tree_resp **n = realloc(x->resps, nc * sizeof(*n));
    if (!n)
      goto out;
    x->resps = n;
    x->rcap = nc;
  }
  rv = DB_EPROTO;
  r = build__bazel__remote__execution__v2__get_tree_response__unpack(NULL, len,
                                                                     msg);
  if (!r)
    goto out;
  x->resps[x->nresps++] = r;
  for (size_t k = 0; k < r->n_directories; k++) {
    rv = tree_add_dir(x, r->directories[k]);
    if (rv != 0)
      goto out;
  }
  rv = 0;
  if (r->next_page_token[0]) {
    x->token = strdup(r->next_page_token);
    rv = x->token ? 0 : DB_ENOMEM;
  }
out:
  cas_client__set_err(&x->err, rv);
  return rv != 0;
}

static void tree_on_done(void *ctx, const rpc_status *st) {
  cas_pump *p = ctx;
  tree_ctx *x = p->ctx;

  /* Missing subtrees of a truncated answer are caught by the walk. */
  cas_client__pump_done(
      p, x->err ? x->err : cas_client__done_err(p->c, st, x->msgs > 0),
      __func__);
}

static int tree_start(cas_pump *p, size_t i) {
  static const rpc_stream_cbs cbs = {tree_on_message, NULL, tree_on_done};
  Build__Bazel__Remote__Execution__V2__GetTreeRequest req =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_TREE_REQUEST__INIT;
  tree_ctx *x = p->ctx;
  cas_client *c = p->c;
  PbDigest root;
  uint8_t *buf = NULL;
  size_t len;
  int rv;

  (void)i;
  x->msgs = 0;
  cas_client__pb_digest_ref(&root, &x->dirs[0].digest);
  req.instance_name = c->instance;
  req.root_digest = &root;
  if (x->token)
    req.page_token = x->token;
  rv = cas_client__pack(&req.base, &buf, &len);
  if (rv != 0)
    return rv;
  rv = rpc_client_start(c->rpc, CAS_PATH_CAS "GetTree", buf, len, c->timeout_ms,
                        &cbs, p, NULL);
  free(buf);
  return rv;
}

/* Fetch every Directory below root into x->dirs[1..]; x->dirs[0] holds the
 * root digest only (msg NULL) while requests are made. */
static int tree_get(tree_ctx *x, const reapi_digest *root) {
  cas_pump p;
  char *prev = NULL;
  int rv = DB_ENOMEM;

  x->dirs = calloc(64, sizeof(*x->dirs));
  if (!x->dirs)
    goto out;
  x->cap = 64;
  x->dirs[0].digest = *root;
  x->ndirs = 1;
  for (int pages = 0;; pages++) {
    cas_client__pump_init(&p, x->c, 1, tree_start, x);
    rv = cas_client__pump_run(&p);
    if (rv == 0)
      rv = x->err;
    if (rv != 0 || !x->token)
      break;
    rv = DB_EPROTO;
    if ((prev && !strcmp(prev, x->token)) || pages > 1000000)
      break; /* a server that never ends its pages */
    free(prev);
    prev = strdup(x->token);
    rv = DB_ENOMEM;
    if (!prev)
      break;
  }
out:
  free(prev);
  return rv;
}

static int name_ok(const char *n) {
  return n[0] && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/');
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 2);

  if (!s)
    return NULL;
  memcpy(s, a, la);
  s[la] = '/';
  memcpy(s + la + 1, b, lb + 1);
  return s;
}

static int add_file(tree_ctx *x, const pb_digest *dg, char *path, int exec) {
  cas_blob_dst *f;
  int rv;

  if (x->nfiles == x->fcap) {
    size_t nc = x->fcap ? x->fcap * 2 : 64;
    cas_blob_dst *nf = realloc(x->files, nc * sizeof(*nf));
    if (!nf) {
      free(path);
      return DB_ENOMEM;
    }
    x->files = nf;
    x->fcap = nc;
  }
  f = &x->files[x->nfiles];
  memset(f, 0, sizeof(*f));
  rv = dg ? reapi_digest_set(&f->digest, dg->hash, dg->size_bytes) : DB_EPROTO;
  if (rv != 0) {
    free(path);
    return rv;
  }
  f->path = path;
  f->mode = exec ? 0755 : 0644;
  x->nfiles++;
  return 0;
}

static int walk(tree_ctx *x, cas_dset *set, const pb_dir *d, const char *dir,
                int depth) {
  char *path = NULL;
  int rv = DB_EPROTO;

  if (depth > TREE_MAX_DEPTH)
    goto out;
  for (size_t i = 0; i < d->n_files; i++) {
    rv = DB_EPROTO;
    if (!name_ok(d->files[i]->name))
      goto out;
    rv = DB_ENOMEM;
    path = join(dir, d->files[i]->name);
    if (!path)
      goto out;
    rv = add_file(x, d->files[i]->digest, path, d->files[i]->is_executable);
    path = NULL;
    if (rv != 0)
      goto out;
  }
  for (size_t i = 0; i < d->n_symlinks; i++) {
    rv = DB_EPROTO;
    if (!name_ok(d->symlinks[i]->name))
      goto out;
    rv = DB_ENOMEM;
    path = join(dir, d->symlinks[i]->name);
    if (!path)
      goto out;
    if (symlink(d->symlinks[i]->target, path) != 0) {
      rv = db_err_from_errno(errno);
      goto out;
    }
    free(path);
    path = NULL;
  }
  for (size_t i = 0; i < d->n_directories; i++) {
    const pb_digest *dg = d->directories[i]->digest;
    reapi_digest cd;
    size_t idx;
    rv = DB_EPROTO;
    if (!name_ok(d->directories[i]->name) || !dg ||
        reapi_digest_set(&cd, dg->hash, dg->size_bytes) != 0)
      goto out;
    idx = cas_client__dset_find(set, &cd);
    rv = DB_ENOTFOUND; /* GetTree leaves out missing subtrees */
    if (idx == SIZE_MAX || !x->dirs[idx].msg)
      goto out;
    rv = DB_ENOMEM;
    path = join(dir, d->directories[i]->name);
    if (!path)
      goto out;
    if (mkdir(path, 0755) != 0) {
      rv = db_err_from_errno(errno);
      goto out;
    }
    rv = walk(x, set, x->dirs[idx].msg, path, depth + 1);
    if (rv != 0)
      goto out;
    free(path);
    path = NULL;
  }
  rv = 0;
out:
  free(path);
  return rv;
}

/* Create dir, or accept an existing empty directory. */
static int make_root(const char *dir) {
  DIR *dp;
  struct dirent *e;
  int rv = 0;

  if (mkdir(dir, 0755) == 0)
    return 0;
  if (errno != EEXIST)
    return db_err_from_errno(errno);
  dp = opendir(dir);
  if (!dp)
    return db_err_from_errno(errno);
  while ((e = readdir(dp)) != NULL) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      rv = DB_EEXIST;
      break;
    }
  }
  closedir(dp);
  return rv;
}

/* Materialise duplicates (files[i] with the digest of files[first[i]]). */
static int link_dups(tree_ctx *x, cas_blob_dst *files, const size_t *first) {
  int rv = 0;

  for (size_t i = 0; i < x->nfiles; i++) {
    const cas_blob_dst *f = &files[first[i]];
    if (first[i] == i)
      continue;
    if (f->mode == files[i].mode && link(f->path, files[i].path) == 0)
      continue;
    rv = cas_client__copy_file(f->path, files[i].path, files[i].mode);
    if (rv != 0)
      break;
  }
  return rv;
}

int cas_client_fetch_tree(cas_client *c, const reapi_digest *root,
                          const char *dir) {
  tree_ctx x = {0};
  cas_dset set = {0}, fset = {0};
  cas_blob_dst *uniq = NULL;
  size_t *first = NULL;
  size_t nu = 0, ridx;
  int rv;

  x.c = c;
  rv = cas_client__caps(c);
  if (rv != 0)
    goto out;
  rv = tree_get(&x, root);
  if (rv != 0)
    goto out;
  rv = cas_client__dset_init(&set, x.ndirs, dir_get, x.dirs);
  if (rv != 0)
    goto out;
  for (size_t i = 1; i < x.ndirs; i++)
    cas_client__dset_add(&set, i);
  ridx = cas_client__dset_find(&set, root);
  rv = DB_ENOTFOUND;
  if (ridx == SIZE_MAX)
    goto out;
  rv = make_root(dir);
  if (rv != 0)
    goto out;
  rv = walk(&x, &set, x.dirs[ridx].msg, dir, 0);
  if (rv != 0)
    goto out;
  /* One download per distinct digest. */
  rv = DB_ENOMEM;
  first = malloc((x.nfiles ? x.nfiles : 1) * sizeof(*first));
  uniq = malloc((x.nfiles ? x.nfiles : 1) * sizeof(*uniq));
  if (!first || !uniq)
    goto out;
  rv = cas_client__dset_init(&fset, x.nfiles, file_get, x.files);
  if (rv != 0)
    goto out;
  for (size_t i = 0; i < x.nfiles; i++) {
    first[i] = cas_client__dset_add(&fset, i);
    if (first[i] == i)
      uniq[nu++] = x.files[i];
  }
  rv = cas_client_download(c, uniq, nu, NULL, NULL);
  if (rv != 0)
    goto out;
  rv = link_dups(&x, x.files, first);
out:
  cas_client__dset_free(&fset);
  cas_client__dset_free(&set);
  for (size_t i = 0; i < x.nresps; i++)
    build__bazel__remote__execution__v2__get_tree_response__free_unpacked(
        x.resps[i], NULL);
  free(x.resps);
  free(x.enc);
  for (size_t i = 0; i < x.nfiles; i++)
    free((char *)x.files[i].path);
  free(x.files);
  free(x.dirs);
  free(x.token);
  free(first);
  free(uniq);
  return rv;
}
