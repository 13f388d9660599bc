/* Output collection and Tree building; see worker_outputs.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "worker_outputs.h"

#define PATHMAX 4096
#define MAX_DEPTH 256

static int upload_push(wk_upload *u, const cas_blob_src *s) {
  if (u->n == u->cap) {
    size_t nc = u->cap ? u->cap * 2 : 32;
    cas_blob_src *v = realloc(u->v, nc * sizeof(*v));
    if (!v)
      return DB_ENOMEM;
    u->v = v;
    u->cap = nc;
  }
  u->v[u->n++] = *s;
  return 0;
}

/* SHA-256 of what is left to read on fd. 0 or DB_E*. */
static int hash_fd(int fd, reapi_digest *out) {
  static __thread uint8_t buf[1 << 16];
  reapi_hasher *h = reapi_hasher_new();
  ssize_t r;

  if (!h)
    return DB_ENOMEM;
  while ((r = read(fd, buf, sizeof(buf))) != 0) {
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int rv = db_err_from_errno(errno);
      reapi_hasher_free(h);
      return rv;
    }
    reapi_hasher_update(h, buf, (size_t)r);
  }
  reapi_hasher_final(h, out); /* frees h */
  return 0;
}

static int same_file(const wk_known_file *k, const char *path,
                     const struct stat *st) {
  return k->dev == st->st_dev && k->ino == st->st_ino &&
         k->size == st->st_size && k->mtime.tv_sec == st->st_mtim.tv_sec &&
         k->mtime.tv_nsec == st->st_mtim.tv_nsec &&
         k->ctime.tv_sec == st->st_ctim.tv_sec &&
         k->ctime.tv_nsec == st->st_ctim.tv_nsec && !strcmp(k->path, path);
}

int wk_known_file_hash(const char *path, wk_known_file *k) {
  struct stat st;
  int fd, rv;

  if (strlen(path) >= sizeof(k->path))
    return DB_EINVAL;
  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return db_err_from_errno(errno);
  rv = fstat(fd, &st) == 0 ? 0 : db_err_from_errno(errno);
  if (rv == 0 && !S_ISREG(st.st_mode))
    rv = DB_EINVAL;
  if (rv == 0)
    rv = hash_fd(fd, &k->digest);
  /* The digest is of what was read: a file that grew or shrank under us
   * must not be vouched for with the first stat's size. */
  if (rv == 0 && st.st_size != k->digest.size)
    rv = DB_EIO;
  close(fd);
  if (rv != 0)
    return rv;
  snprintf(k->path, sizeof(k->path), "%s", path);
  k->dev = st.st_dev;
  k->ino = st.st_ino;
  k->size = st.st_size;
  k->mtime = st.st_mtim;
  k->ctime = st.st_ctim;
  return 0;
}

int wk_upload_add_file(wk_upload *u, wk_arena *a, const char *path,
                       reapi_digest *out) {
  cas_blob_src s = {0};
  struct stat st;
  int fd = -1, rv = 0;

  fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return db_err_from_errno(errno);
  if (u->nknown && fstat(fd, &st) == 0) {
    for (size_t i = 0; i < u->nknown; i++) {
      if (same_file(&u->known[i], path, &st)) {
        *out = u->known[i].digest;
        goto out;
      }
    }
  }
  rv = hash_fd(fd, out);
  if (rv != 0)
    goto out;
  s.digest = *out;
  s.path = wk_arena_strdup(a, path);
  rv = s.path ? upload_push(u, &s) : DB_ENOMEM;
out:
  close(fd);
  return rv;
}

int wk_upload_add_data(wk_upload *u, wk_arena *a, const void *data, size_t len,
                       reapi_digest *out) {
  cas_blob_src s = {0};
  void *copy = NULL;

  reapi_digest_of(data, len, out);
  if (len) {
    copy = wk_arena_alloc(a, len);
    if (!copy)
      return DB_ENOMEM;
    memcpy(copy, data, len);
  }
  s.digest = *out;
  s.data = copy ? copy : "";
  return upload_push(u, &s);
}

void wk_upload_free(wk_upload *u) {
  free(u->v);
  memset(u, 0, sizeof(*u));
}

/* ---- directories as Tree messages ---------------------------------------- */

typedef struct tree_ctx {
  wk_arena *a;
  wk_upload *u;
  PbDirectory **children; /* distinct child Directory messages */
  reapi_digest *child_digests;
  size_t nchildren, capchildren;
} tree_ctx;

static int cmp_str(const void *x, const void *y) {
  return strcmp(*(char *const *)x, *(char *const *)y);
}

static int add_child(tree_ctx *t, PbDirectory *d, const reapi_digest *dg) {
  for (size_t i = 0; i < t->nchildren; i++)
    if (reapi_digest_eq(&t->child_digests[i], dg))
      return 0;
  if (t->nchildren == t->capchildren) {
    size_t nc = t->capchildren ? t->capchildren * 2 : 16;
    PbDirectory **c = realloc(t->children, nc * sizeof(*c));
    reapi_digest *g;
    if (!c)
      return DB_ENOMEM;
    t->children = c;
    g = realloc(t->child_digests, nc * sizeof(*g));
    if (!g)
      return DB_ENOMEM;
    t->child_digests = g;
    t->capchildren = nc;
  }
  t->children[t->nchildren] = d;
  t->child_digests[t->nchildren] = *dg;
  t->nchildren++;
  return 0;
}

/* Build the Directory for host dir `path`; *out and its digest. Child
 * Directory messages are recorded in t and queued for upload. */
static int build_dir(tree_ctx *t, const char *path, int depth,
                     PbDirectory **out, reapi_digest *dg) {
  DIR *dh = NULL;
  struct dirent *de;
  char **names = NULL;
  size_t nnames = 0, cap = 0, nf = 0, nd = 0, ns = 0;
  PbDirectory *d;
  uint8_t *packed = NULL;
  size_t plen = 0;
  int rv = 0;

  if (depth > MAX_DEPTH)
    return DB_EINVAL;
  d = wk_arena_alloc(t->a, sizeof(*d));
  if (!d)
    return DB_ENOMEM;
  build__bazel__remote__execution__v2__directory__init(d);
  dh = opendir(path);
  if (!dh)
    return db_err_from_errno(errno);
  while ((de = readdir(dh)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (nnames == cap) {
      size_t nc = cap ? cap * 2 : 32;
      char **v = realloc(names, nc * sizeof(*v));
      if (!v) {
        rv = DB_ENOMEM;
        goto out;
      }
      names = v;
      cap = nc;
    }
    names[nnames] = wk_arena_strdup(t->a, de->d_name);
    if (!names[nnames]) {
      rv = DB_ENOMEM;
      goto out;
    }
    nnames++;
  }
  /* Canonical form: every list sorted by name (UTF-8 bytes). */
  if (nnames)
    qsort(names, nnames, sizeof(*names), cmp_str);
  d->files = wk_arena_alloc(t->a, (nnames + 1) * sizeof(PbFileNode *));
  d->directories =
      wk_arena_alloc(t->a, (nnames + 1) * sizeof(PbDirectoryNode *));
  d->symlinks = wk_arena_alloc(t->a, (nnames + 1) * sizeof(PbSymlinkNode *));
  if (!d->files || !d->directories || !d->symlinks) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < nnames && rv == 0; i++) {
    char child[PATHMAX];
    struct stat st;
    snprintf(child, sizeof(child), "%s/%s", path, names[i]);
    if (lstat(child, &st) != 0) {
      rv = db_err_from_errno(errno);
      break;
    }
    if (S_ISREG(st.st_mode)) {
      PbFileNode *f = wk_arena_alloc(t->a, sizeof(*f));
      reapi_digest fd;
      if (!f) {
        rv = DB_ENOMEM;
        break;
      }
      build__bazel__remote__execution__v2__file_node__init(f);
      rv = wk_upload_add_file(t->u, t->a, child, &fd);
      if (rv != 0)
        break;
      f->name = names[i];
      f->digest = wk_arena_digest(t->a, &fd);
      f->is_executable = (st.st_mode & S_IXUSR) != 0;
      if (!f->digest)
        rv = DB_ENOMEM;
      d->files[nf++] = f;
    } else if (S_ISDIR(st.st_mode)) {
      PbDirectoryNode *n = wk_arena_alloc(t->a, sizeof(*n));
      PbDirectory *cd = NULL;
      reapi_digest cdg;
      if (!n) {
        rv = DB_ENOMEM;
        break;
      }
      build__bazel__remote__execution__v2__directory_node__init(n);
      rv = build_dir(t, child, depth + 1, &cd, &cdg);
      if (rv == 0)
        rv = add_child(t, cd, &cdg);
      if (rv != 0)
        break;
      n->name = names[i];
      n->digest = wk_arena_digest(t->a, &cdg);
      if (!n->digest)
        rv = DB_ENOMEM;
      d->directories[nd++] = n;
    } else if (S_ISLNK(st.st_mode)) {
      PbSymlinkNode *s = wk_arena_alloc(t->a, sizeof(*s));
      char *target = wk_arena_alloc(t->a, PATHMAX);
      ssize_t tl;
      if (!s || !target) {
        rv = DB_ENOMEM;
        break;
      }
      build__bazel__remote__execution__v2__symlink_node__init(s);
      tl = readlink(child, target, PATHMAX - 1);
      if (tl < 0) {
        rv = db_err_from_errno(errno);
        break;
      }
      target[tl] = '\0';
      s->name = names[i];
      s->target = target;
      d->symlinks[ns++] = s;
    }
    /* sockets, fifos, devices: not representable, skipped */
  }
  if (rv != 0)
    goto out;
  d->n_files = nf;
  d->n_directories = nd;
  d->n_symlinks = ns;
  rv = reapi_pb_pack(&d->base, &packed, &plen);
  if (rv != 0)
    goto out;
  rv = wk_upload_add_data(t->u, t->a, packed, plen, dg);
  *out = d;
out:
  free(packed);
  free(names);
  if (dh)
    closedir(dh);
  return rv;
}

static int collect_dir(const char *host, const char *rel, wk_arena *a,
                       wk_upload *u, PbOutputDirectory **out) {
  tree_ctx t = {0};
  PbDirectory *root = NULL;
  reapi_digest rdg, tdg;
  PbTree tree;
  PbOutputDirectory *od;
  uint8_t *packed = NULL;
  size_t plen = 0;
  int rv;

  t.a = a;
  t.u = u;
  rv = build_dir(&t, host, 0, &root, &rdg);
  if (rv != 0)
    goto out;
  build__bazel__remote__execution__v2__tree__init(&tree);
  tree.root = root;
  tree.n_children = t.nchildren;
  tree.children = t.children;
  rv = reapi_pb_pack(&tree.base, &packed, &plen);
  if (rv != 0)
    goto out;
  rv = wk_upload_add_data(u, a, packed, plen, &tdg);
  if (rv != 0)
    goto out;
  od = wk_arena_alloc(a, sizeof(*od));
  rv = DB_ENOMEM;
  if (!od)
    goto out;
  build__bazel__remote__execution__v2__output_directory__init(od);
  od->path = wk_arena_strdup(a, rel);
  od->tree_digest = wk_arena_digest(a, &tdg);
  od->root_directory_digest = wk_arena_digest(a, &rdg);
  if (!od->path || !od->tree_digest || !od->root_directory_digest)
    goto out;
  *out = od;
  rv = 0;
out:
  free(packed);
  free(t.children);
  free(t.child_digests);
  return rv;
}

/* lstat wd/rel without following symlinks in rel's parent components.
 * Returns 0 (st filled), DB_ENOTFOUND (absent, or a parent is not a real
 * directory), or DB_E*. host receives the full path. */
static int safe_lstat(const char *wd, const char *rel, char *host,
                      size_t hostlen, struct stat *st) {
  size_t base;

  snprintf(host, hostlen, "%s/%s", wd, rel);
  base = strlen(wd) + 1;
  for (size_t i = base; host[i]; i++) {
    if (host[i] != '/')
      continue;
    host[i] = '\0';
    int ok = lstat(host, st) == 0 && S_ISDIR(st->st_mode);
    host[i] = '/';
    if (!ok)
      return DB_ENOTFOUND;
  }
  if (lstat(host, st) != 0)
    return errno == ENOENT || errno == ENOTDIR ? DB_ENOTFOUND
                                               : db_err_from_errno(errno);
  return 0;
}

typedef struct out_lists {
  PbOutputFile **files;
  PbOutputDirectory **dirs;
  Build__Bazel__Remote__Execution__V2__OutputSymlink **links;
  size_t nf, nd, nl;
} out_lists;

static int add_file(const char *host, const char *rel, const struct stat *st,
                    wk_arena *a, wk_upload *u, out_lists *l) {
  PbOutputFile *f = wk_arena_alloc(a, sizeof(*f));
  reapi_digest dg;
  int rv;

  if (!f)
    return DB_ENOMEM;
  build__bazel__remote__execution__v2__output_file__init(f);
  rv = wk_upload_add_file(u, a, host, &dg);
  if (rv != 0)
    return rv;
  f->path = wk_arena_strdup(a, rel);
  f->digest = wk_arena_digest(a, &dg);
  f->is_executable = (st->st_mode & S_IXUSR) != 0;
  if (!f->path || !f->digest)
    return DB_ENOMEM;
  l->files[l->nf++] = f;
  return 0;
}

static int add_link(const char *host, const char *rel, wk_arena *a,
                    Build__Bazel__Remote__Execution__V2__OutputSymlink **v,
                    size_t *n) {
  Build__Bazel__Remote__Execution__V2__OutputSymlink *s;
  char *target = wk_arena_alloc(a, PATHMAX);
  ssize_t tl;

  s = wk_arena_alloc(a, sizeof(*s));
  if (!s || !target)
    return DB_ENOMEM;
  build__bazel__remote__execution__v2__output_symlink__init(s);
  tl = readlink(host, target, PATHMAX - 1);
  if (tl < 0)
    return db_err_from_errno(errno);
  target[tl] = '\0';
  s->path = wk_arena_strdup(a, rel);
  s->target = target;
  if (!s->path)
    return DB_ENOMEM;
  v[(*n)++] = s;
  return 0;
}

int wk_outputs_collect(const char *wd, const char *const *paths, size_t npaths,
                       const char *const *files, size_t nfiles,
                       const char *const *dirs, size_t ndirs, wk_arena *a,
                       wk_upload *u, PbActionResult *ar, char *err,
                       size_t errlen) {
  size_t total = npaths ? npaths : nfiles + ndirs;
  Build__Bazel__Remote__Execution__V2__OutputSymlink **flinks, **dlinks;
  size_t nfl = 0, ndl = 0;
  out_lists l = {0};
  char host[PATHMAX];
  struct stat st;
  int rv = 0;

  l.files = wk_arena_alloc(a, (total + 1) * sizeof(*l.files));
  l.dirs = wk_arena_alloc(a, (total + 1) * sizeof(*l.dirs));
  l.links = wk_arena_alloc(a, (total + 1) * sizeof(*l.links));
  flinks = wk_arena_alloc(a, (total + 1) * sizeof(*flinks));
  dlinks = wk_arena_alloc(a, (total + 1) * sizeof(*dlinks));
  if (!l.files || !l.dirs || !l.links || !flinks || !dlinks)
    return DB_ENOMEM;
  for (size_t i = 0; i < total && rv == 0; i++) {
    int legacy_dir = !npaths && i >= nfiles;
    const char *rel = npaths       ? paths[i]
                      : legacy_dir ? dirs[i - nfiles]
                                   : files[i];
    rv = safe_lstat(wd, rel, host, sizeof(host), &st);
    if (rv == DB_ENOTFOUND) {
      rv = 0; /* an output the action did not produce */
      continue;
    }
    if (rv != 0)
      break;
    if (S_ISLNK(st.st_mode)) {
      if (npaths)
        rv = add_link(host, rel, a, l.links, &l.nl);
      else if (legacy_dir)
        rv = add_link(host, rel, a, dlinks, &ndl);
      else
        rv = add_link(host, rel, a, flinks, &nfl);
    } else if (S_ISREG(st.st_mode)) {
      if (legacy_dir) {
        snprintf(err, errlen, "output directory %s is a regular file", rel);
        rv = DB_EINVAL;
        break;
      }
      rv = add_file(host, rel, &st, a, u, &l);
    } else if (S_ISDIR(st.st_mode)) {
      if (!npaths && !legacy_dir) {
        snprintf(err, errlen, "output file %s is a directory", rel);
        rv = DB_EINVAL;
        break;
      }
      rv = collect_dir(host, rel, a, u, &l.dirs[l.nd]);
      if (rv == 0)
        l.nd++;
    }
  }
  if (rv != 0)
    return rv;
  ar->output_files = l.files;
  ar->n_output_files = l.nf;
  ar->output_directories = l.dirs;
  ar->n_output_directories = l.nd;
  ar->output_symlinks = l.links;
  ar->n_output_symlinks = l.nl;
  ar->output_file_symlinks = flinks;
  ar->n_output_file_symlinks = nfl;
  ar->output_directory_symlinks = dlinks;
  ar->n_output_directory_symlinks = ndl;
  return 0;
}
