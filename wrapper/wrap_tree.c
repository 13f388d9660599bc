/* REAPI input-root Merkle tree builder; see wrap_tree.h. */
#include "wrap_tree.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "db_err.h"
#include "reapi_pb.h"
#include "wrap_util.h"

typedef struct tnode {
  char *name;
  int is_dir;
  /* file */
  char *abs_path; /* or NULL when data is set */
  uint8_t *data;
  int executable;
  /* dir */
  struct tnode **kids;
  size_t nkids, capkids;
  uint8_t *packed; /* serialised Directory */
  size_t packed_len;
  reapi_digest digest;
} tnode;

struct wrap_tree {
  wrap_dcache *dc;
  tnode root;
  int finished;
  size_t nfiles;
  cas_blob_src *blobs;
  size_t nblobs, capblobs;
  uint64_t total;
};

static void node_free(tnode *n) {
  for (size_t i = 0; i < n->nkids; i++) {
    node_free(n->kids[i]);
    free(n->kids[i]);
  }
  free(n->kids);
  free(n->name);
  free(n->abs_path);
  free(n->data);
  free(n->packed);
}

int wrap_tree_new(wrap_dcache *dc, wrap_tree **out) {
  wrap_tree *t = calloc(1, sizeof(*t));
  *out = NULL;
  if (t == NULL)
    return DB_ENOMEM;
  t->dc = dc;
  t->root.is_dir = 1;
  t->root.name = strdup("");
  if (t->root.name == NULL) {
    free(t);
    return DB_ENOMEM;
  }
  *out = t;
  return 0;
}

void wrap_tree_free(wrap_tree *t) {
  if (t == NULL)
    return;
  node_free(&t->root);
  free(t->blobs);
  free(t);
}

size_t wrap_tree_file_count(const wrap_tree *t) {
  return t->nfiles;
}

static tnode *child(tnode *dir, const char *name, size_t len) {
  for (size_t i = 0; i < dir->nkids; i++) {
    if (strlen(dir->kids[i]->name) == len &&
        memcmp(dir->kids[i]->name, name, len) == 0)
      return dir->kids[i];
  }
  return NULL;
}

static int add_child(tnode *dir, const char *name, size_t len, int is_dir,
                     tnode **out) {
  tnode *n;
  if (dir->nkids == dir->capkids) {
    size_t cap = dir->capkids ? dir->capkids * 2 : 8;
    tnode **k = realloc(dir->kids, cap * sizeof(*k));
    if (k == NULL)
      return DB_ENOMEM;
    dir->kids = k;
    dir->capkids = cap;
  }
  n = calloc(1, sizeof(*n));
  if (n == NULL)
    return DB_ENOMEM;
  n->name = strndup(name, len);
  if (n->name == NULL) {
    free(n);
    return DB_ENOMEM;
  }
  n->is_dir = is_dir;
  dir->kids[dir->nkids++] = n;
  *out = n;
  return 0;
}

/* Walk rel (creating directories); with leaf_file the last segment is
 * returned as a new or existing file node. */
static int walk(wrap_tree *t, const char *rel, int leaf_file, tnode **out) {
  tnode *cur = &t->root;
  const char *p = rel;
  if (t->finished)
    return DB_EINVAL;
  while (*p == '/')
    p++;
  while (*p) {
    const char *seg = p;
    size_t len;
    int last;
    tnode *n;
    while (*p && *p != '/')
      p++;
    len = (size_t)(p - seg);
    while (*p == '/')
      p++;
    last = (*p == '\0');
    if ((len == 1 && seg[0] == '.') ||
        (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return DB_EINVAL;
    n = child(cur, seg, len);
    if (n == NULL) {
      int rv = add_child(cur, seg, len, !(last && leaf_file), &n);
      if (rv != 0)
        return rv;
    } else if (n->is_dir == (last && leaf_file)) {
      return DB_EEXIST;
    }
    cur = n;
  }
  if (leaf_file && cur == &t->root)
    return DB_EINVAL;
  *out = cur;
  return 0;
}

int wrap_tree_add_dir(wrap_tree *t, const char *rel_path) {
  tnode *n;
  return walk(t, rel_path, 0, &n);
}

static int set_file(wrap_tree *t, tnode *n, const reapi_digest *d, int exec) {
  if (n->digest.hash[0] != '\0') {
    /* Already present: fine if identical. */
    if (!reapi_digest_eq(&n->digest, d))
      return DB_EEXIST;
    return 1;
  }
  n->digest = *d;
  n->executable = exec;
  t->nfiles++;
  return 0;
}

static int add_file_st(wrap_tree *t, const char *rel_path, const char *abs_path,
                       const struct stat *st) {
  tnode *n;
  reapi_digest d;
  int rv = walk(t, rel_path, 1, &n);
  if (rv != 0)
    return rv;
  rv = t->dc ? wrap_dcache_digest(t->dc, abs_path, st, &d)
             : wrap_digest_file(abs_path, &d);
  if (rv != 0)
    return rv;
  rv = set_file(t, n, &d, (st->st_mode & S_IXUSR) != 0);
  if (rv == 1)
    return 0;
  if (rv != 0)
    return rv;
  n->abs_path = strdup(abs_path);
  return n->abs_path ? 0 : DB_ENOMEM;
}

int wrap_tree_add_file(wrap_tree *t, const char *rel_path,
                       const char *abs_path) {
  struct stat st;
  if (stat(abs_path, &st) != 0)
    return errno == ENOENT ? DB_ENOTFOUND : DB_EIO;
  if (S_ISDIR(st.st_mode))
    return wrap_tree_add_tree(t, rel_path, abs_path, NULL, NULL);
  if (!S_ISREG(st.st_mode))
    return DB_EINVAL;
  return add_file_st(t, rel_path, abs_path, &st);
}

int wrap_tree_add_blob(wrap_tree *t, const char *rel_path, const void *data,
                       size_t len, int executable) {
  tnode *n;
  reapi_digest d;
  int rv = walk(t, rel_path, 1, &n);
  if (rv != 0)
    return rv;
  reapi_digest_of(data, len, &d);
  rv = set_file(t, n, &d, executable);
  if (rv == 1)
    return 0;
  if (rv != 0)
    return rv;
  n->data = malloc(len ? len : 1);
  if (n->data == NULL)
    return DB_ENOMEM;
  if (len)
    memcpy(n->data, data, len);
  return 0;
}

static int add_tree_rec(wrap_tree *t, const char *rel, const char *abs,
                        wrap_tree_skip_fn skip, void *ctx, int depth) {
  DIR *d;
  struct dirent *de;
  int rv;
  if (depth > 64)
    return DB_EINVAL; /* symlink loop */
  rv = wrap_tree_add_dir(t, rel);
  if (rv != 0)
    return rv;
  d = opendir(abs);
  if (d == NULL)
    return errno == ENOENT ? DB_ENOTFOUND : DB_EIO;
  while (rv == 0 && (de = readdir(d)) != NULL) {
    struct stat st;
    char *ca, *cr;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    ca = wrap_path_join(abs, de->d_name);
    cr = *rel ? wrap_fmt("%s/%s", rel, de->d_name) : strdup(de->d_name);
    if (ca == NULL || cr == NULL) {
      rv = DB_ENOMEM;
    } else if (stat(ca, &st) != 0) {
      /* Dangling symlink or vanished file: not an input. */
    } else if (S_ISDIR(st.st_mode)) {
      if (skip == NULL || !skip(ctx, abs, de->d_name, 1))
        rv = add_tree_rec(t, cr, ca, skip, ctx, depth + 1);
    } else if (S_ISREG(st.st_mode)) {
      if (skip == NULL || !skip(ctx, abs, de->d_name, 0))
        rv = add_file_st(t, cr, ca, &st);
    }
    free(ca);
    free(cr);
  }
  closedir(d);
  return rv;
}

int wrap_tree_add_tree(wrap_tree *t, const char *rel_path, const char *abs_dir,
                       wrap_tree_skip_fn skip, void *ctx) {
  return add_tree_rec(t, rel_path, abs_dir, skip, ctx, 0);
}

static int cmp_node(const void *a, const void *b) {
  return strcmp((*(tnode *const *)a)->name, (*(tnode *const *)b)->name);
}

static int push_blob(wrap_tree *t, const reapi_digest *d, const void *data,
                     const char *path) {
  if (t->nblobs == t->capblobs) {
    size_t cap = t->capblobs ? t->capblobs * 2 : 64;
    cas_blob_src *b = realloc(t->blobs, cap * sizeof(*b));
    if (b == NULL)
      return DB_ENOMEM;
    t->blobs = b;
    t->capblobs = cap;
  }
  t->blobs[t->nblobs].digest = *d;
  t->blobs[t->nblobs].data = data;
  t->blobs[t->nblobs].path = path;
  t->nblobs++;
  t->total += (uint64_t)d->size;
  return 0;
}

static int finish_dir(wrap_tree *t, tnode *dir) {
  PbDirectory pd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY__INIT;
  PbFileNode *fn = NULL, **fp = NULL;
  PbDirectoryNode *dn = NULL, **dp = NULL;
  PbDigest *dg = NULL;
  size_t nf = 0, nd = 0;
  int rv = 0;
  if (dir->nkids)
    qsort(dir->kids, dir->nkids, sizeof(tnode *), cmp_node);
  for (size_t i = 0; i < dir->nkids; i++) {
    if (dir->kids[i]->is_dir) {
      rv = finish_dir(t, dir->kids[i]);
      if (rv != 0)
        return rv;
    }
  }
  fn = calloc(dir->nkids + 1, sizeof(*fn));
  fp = calloc(dir->nkids + 1, sizeof(*fp));
  dn = calloc(dir->nkids + 1, sizeof(*dn));
  dp = calloc(dir->nkids + 1, sizeof(*dp));
  dg = calloc(dir->nkids + 1, sizeof(*dg));
  if (!fn || !fp || !dn || !dp || !dg) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < dir->nkids; i++) {
    tnode *k = dir->kids[i];
    PbDigest init = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
    dg[i] = init;
    reapi_pb_digest_set(&dg[i], &k->digest);
    if (k->is_dir) {
      PbDirectoryNode di =
          BUILD__BAZEL__REMOTE__EXECUTION__V2__DIRECTORY_NODE__INIT;
      dn[nd] = di;
      dn[nd].name = k->name;
      dn[nd].digest = &dg[i];
      dp[nd] = &dn[nd];
      nd++;
    } else {
      PbFileNode fi = BUILD__BAZEL__REMOTE__EXECUTION__V2__FILE_NODE__INIT;
      fn[nf] = fi;
      fn[nf].name = k->name;
      fn[nf].digest = &dg[i];
      fn[nf].is_executable = k->executable;
      fp[nf] = &fn[nf];
      nf++;
    }
  }
  pd.n_files = nf;
  pd.files = fp;
  pd.n_directories = nd;
  pd.directories = dp;
  rv = reapi_pb_pack(&pd.base, &dir->packed, &dir->packed_len);
  if (rv != 0)
    goto out;
  reapi_digest_of(dir->packed, dir->packed_len, &dir->digest);
out:
  free(fn);
  free(fp);
  free(dn);
  free(dp);
  free(dg);
  return rv;
}

static int cmp_blob(const void *a, const void *b) {
  const cas_blob_src *x = a, *y = b;
  return strcmp(x->digest.hash, y->digest.hash);
}

static int collect(wrap_tree *t, tnode *n) {
  int rv;
  if (!n->is_dir)
    return push_blob(t, &n->digest, n->data, n->abs_path);
  rv = push_blob(t, &n->digest, n->packed ? (void *)n->packed : (void *)"",
                 NULL);
  for (size_t i = 0; rv == 0 && i < n->nkids; i++)
    rv = collect(t, n->kids[i]);
  return rv;
}

int wrap_tree_finish(wrap_tree *t, reapi_digest *root) {
  int rv;
  size_t j = 0;
  if (t->finished)
    return DB_EINVAL;
  rv = finish_dir(t, &t->root);
  if (rv != 0)
    return rv;
  t->finished = 1;
  rv = collect(t, &t->root);
  if (rv != 0)
    return rv;
  /* Deduplicate by digest (equal content = one upload). */
  if (t->nblobs > 1) {
    qsort(t->blobs, t->nblobs, sizeof(*t->blobs), cmp_blob);
    t->total = (uint64_t)t->blobs[0].digest.size;
    for (size_t i = 1; i < t->nblobs; i++) {
      if (!reapi_digest_eq(&t->blobs[i].digest, &t->blobs[j].digest)) {
        t->blobs[++j] = t->blobs[i];
        t->total += (uint64_t)t->blobs[i].digest.size;
      }
    }
    t->nblobs = j + 1;
  }
  *root = t->root.digest;
  return 0;
}

int wrap_tree_blobs(wrap_tree *t, const cas_blob_src **blobs, size_t *n,
                    uint64_t *total_bytes) {
  if (!t->finished)
    return DB_EINVAL;
  *blobs = t->blobs;
  *n = t->nblobs;
  if (total_bytes)
    *total_bytes = t->total;
  return 0;
}
