/* Input-root materialisation; see worker_materialize.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "reapi_pb.h"
#include "worker_int.h"
#include "worker_materialize.h"

#define PATHMAX 4096

/* One distinct Directory message. */
typedef struct dnode {
  reapi_digest d;
  PbDirectory *pb;
  int expanded; /* children queued by fetch_dirs */
  int totals_done;
  uint64_t files, bytes; /* whole subtree */
} dnode;

typedef struct dmap {
  dnode *slots;
  size_t cap, n;
} dmap;

typedef struct mat_ctx {
  wk_cache *c;
  cas_client *cas;
  const wk_mat_opts *o;
  wk_mat *m;
  dmap map;
  wk_cache_want *wants;
  size_t nwants, capwants;
} mat_ctx;

static size_t dslot(const dmap *mp, const reapi_digest *d) {
  uint64_t h = 0;
  for (int i = 0; i < 16; i++)
    h = h * 31 + (unsigned char)d->hash[i];
  h ^= (uint64_t)d->size;
  return (size_t)h & (mp->cap - 1);
}

static dnode *dmap_find(dmap *mp, const reapi_digest *d) {
  if (!mp->cap)
    return NULL;
  for (size_t i = dslot(mp, d);; i = (i + 1) & (mp->cap - 1)) {
    if (!mp->slots[i].d.hash[0])
      return NULL;
    if (reapi_digest_eq(&mp->slots[i].d, d))
      return &mp->slots[i];
  }
}

static dnode *dmap_add(dmap *mp, const reapi_digest *d) {
  if ((mp->n + 1) * 2 > mp->cap) {
    dmap nm = {0};
    nm.cap = mp->cap ? mp->cap * 2 : 64;
    nm.slots = calloc(nm.cap, sizeof(dnode));
    if (!nm.slots)
      return NULL;
    for (size_t i = 0; i < mp->cap; i++) {
      if (!mp->slots[i].d.hash[0])
        continue;
      size_t j = dslot(&nm, &mp->slots[i].d);
      while (nm.slots[j].d.hash[0])
        j = (j + 1) & (nm.cap - 1);
      nm.slots[j] = mp->slots[i];
    }
    nm.n = mp->n;
    free(mp->slots);
    *mp = nm;
  }
  size_t i = dslot(mp, d);
  while (mp->slots[i].d.hash[0])
    i = (i + 1) & (mp->cap - 1);
  memset(&mp->slots[i], 0, sizeof(dnode));
  mp->slots[i].d = *d;
  mp->n++;
  return &mp->slots[i];
}

static void dmap_free(dmap *mp) {
  for (size_t i = 0; i < mp->cap; i++)
    if (mp->slots[i].pb)
      build__bazel__remote__execution__v2__directory__free_unpacked(
          mp->slots[i].pb, NULL);
  free(mp->slots);
  memset(mp, 0, sizeof(*mp));
}

static int want_add(mat_ctx *x, const reapi_digest *d, int exec) {
  if (x->nwants == x->capwants) {
    size_t nc = x->capwants ? x->capwants * 2 : 256;
    wk_cache_want *w = realloc(x->wants, nc * sizeof(*w));
    if (!w)
      return DB_ENOMEM;
    x->wants = w;
    x->capwants = nc;
  }
  x->wants[x->nwants].digest = *d;
  x->wants[x->nwants].exec = exec;
  x->nwants++;
  return 0;
}

/* Record what the CAS lacks among x->wants for the PreconditionFailure. */
static void note_missing(mat_ctx *x) {
  reapi_digest *ds = malloc((x->nwants + 1) * sizeof(*ds));
  if (!ds)
    return;
  for (size_t i = 0; i < x->nwants; i++)
    ds[i] = x->wants[i].digest;
  free(x->m->missing);
  x->m->missing = NULL;
  x->m->nmissing = 0;
  cas_client_find_missing(x->cas, ds, x->nwants, &x->m->missing,
                          &x->m->nmissing);
  free(ds);
}

/* Append the subdirectory digests of n to *next. */
static int push_children(dnode *n, reapi_digest **next, size_t *nnext,
                         size_t *capnext) {
  n->expanded = 1;
  for (size_t k = 0; k < n->pb->n_directories; k++) {
    reapi_digest cd;
    int rv = reapi_pb_digest_get(n->pb->directories[k]->digest, &cd);
    if (rv != 0)
      return rv;
    if (*nnext == *capnext) {
      size_t nc = *capnext ? *capnext * 2 : 64;
      reapi_digest *t = realloc(*next, nc * sizeof(*t));
      if (!t)
        return DB_ENOMEM;
      *next = t;
      *capnext = nc;
    }
    (*next)[(*nnext)++] = cd;
  }
  return 0;
}

/* Enter the Directory messages given inline into the map, unexpanded. */
static int seed_dirs(mat_ctx *x) {
  for (size_t i = 0; i < x->o->n_inline_dirs; i++) {
    const ProtobufCBinaryData *b = &x->o->inline_dirs[i];
    reapi_digest d;
    PbDirectory *pb;
    dnode *n;
    reapi_digest_of(b->data, b->len, &d);
    if (dmap_find(&x->map, &d))
      continue;
    pb = build__bazel__remote__execution__v2__directory__unpack(NULL, b->len,
                                                                b->data);
    if (!pb)
      continue; /* not a Directory: fetched like any other, if needed */
    n = dmap_add(&x->map, &d);
    if (!n) {
      build__bazel__remote__execution__v2__directory__free_unpacked(pb, NULL);
      return DB_ENOMEM;
    }
    n->pb = pb;
  }
  return 0;
}

/* Fetch every Directory of the tree not given inline, one batch per
 * level. */
static int fetch_dirs(mat_ctx *x, const reapi_digest *root) {
  reapi_digest *level = NULL, *next = NULL;
  size_t nlevel = 0, nnext = 0, capnext = 0, caplevel = 1;
  int rv = 0;

  level = malloc(sizeof(*level));
  if (!level)
    return DB_ENOMEM;
  level[nlevel++] = *root;
  while (nlevel && rv == 0) {
    x->nwants = 0;
    nnext = 0;
    for (size_t i = 0; i < nlevel && rv == 0; i++) {
      dnode *n = dmap_find(&x->map, &level[i]);
      if (n && n->pb && !n->expanded)
        rv = push_children(n, &next, &nnext, &capnext); /* given inline */
      else if (n)
        continue;
      else if (!dmap_add(&x->map, &level[i]))
        rv = DB_ENOMEM;
      else
        rv = want_add(x, &level[i], 0);
    }
    if (rv == 0 && x->nwants)
      rv = wk_cache_acquire(x->c, x->cas, x->wants, x->nwants, &x->m->fetch);
    if (rv == DB_ENOTFOUND)
      note_missing(x);
    if (rv != 0)
      break;
    for (size_t i = 0; i < x->nwants && rv == 0; i++) {
      dnode *n = dmap_find(&x->map, &x->wants[i].digest);
      uint8_t *buf = NULL;
      size_t len = 0;
      if (!n || n->pb)
        continue;
      rv = wk_cache_read(x->c, x->cas, &n->d, &buf, &len, NULL);
      if (rv != 0)
        break;
      n->pb = build__bazel__remote__execution__v2__directory__unpack(NULL, len,
                                                                     buf);
      free(buf);
      if (!n->pb) {
        snprintf(x->m->err, sizeof(x->m->err), "bad Directory %s", n->d.hash);
        rv = DB_EPROTO;
        break;
      }
      rv = push_children(n, &next, &nnext, &capnext);
    }
    if (x->nwants)
      wk_cache_release(x->c, x->wants, x->nwants);
    {
      reapi_digest *t = level;
      size_t tc = caplevel;
      level = next;
      caplevel = capnext;
      nlevel = nnext;
      next = t;
      capnext = tc;
    }
  }
  free(level);
  free(next);
  return rv;
}

static int totals(mat_ctx *x, dnode *n, int depth) {
  if (n->totals_done)
    return 0;
  if (depth > 256)
    return DB_EINVAL;
  n->files = n->pb->n_files;
  n->bytes = 0;
  for (size_t i = 0; i < n->pb->n_files; i++)
    if (n->pb->files[i]->digest)
      n->bytes += (uint64_t)n->pb->files[i]->digest->size_bytes;
  for (size_t i = 0; i < n->pb->n_directories; i++) {
    reapi_digest cd;
    dnode *cn;
    if (reapi_pb_digest_get(n->pb->directories[i]->digest, &cd) != 0)
      return DB_EINVAL;
    cn = dmap_find(&x->map, &cd);
    if (!cn || !cn->pb || totals(x, cn, depth + 1) != 0)
      return DB_EINVAL;
    n->files += cn->files;
    n->bytes += cn->bytes;
  }
  n->totals_done = 1;
  return 0;
}

static int name_ok(const char *s) {
  return s && *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* rel is (an ancestor of, or equal to) some writable dir. */
static int output_ancestor(const wk_mat_opts *o, const char *rel) {
  size_t n = strlen(rel);
  for (size_t i = 0; i < o->n_writable; i++) {
    const char *w = o->writable_dirs[i];
    if (n == 0 || (!strncmp(w, rel, n) && (w[n] == '\0' || w[n] == '/')))
      return 1;
  }
  return 0;
}

/* rel is inside (or equal to) a writable dir. */
static int under_writable(const wk_mat_opts *o, const char *rel) {
  for (size_t i = 0; i < o->n_writable; i++) {
    const char *w = o->writable_dirs[i];
    size_t n = strlen(w);
    if (n == 0 || (!strncmp(rel, w, n) && (rel[n] == '\0' || rel[n] == '/')))
      return 1;
  }
  return 0;
}

static int qualifies(const wk_mat_opts *o, const dnode *n, const char *rel) {
  if (o->tree_min_files && n->files > o->tree_min_files)
    return 1;
  if (o->tree_min_bytes && n->bytes > o->tree_min_bytes)
    return 1;
  for (size_t i = 0; i < o->n_tree_prefixes; i++) {
    const char *p = o->tree_prefixes[i];
    size_t len = strlen(p);
    if (!strncmp(rel, p, len) && (rel[len] == '\0' || rel[len] == '/'))
      return 1;
  }
  return 0;
}

/* Place one cached file at dst: hardlink, or copy when asked / needed. */
static int place_file(mat_ctx *x, const reapi_digest *d, int exec,
                      const char *dst, int copy) {
  char src[PATHMAX];
  wk_cache_path(x->c, d, exec, src, sizeof(src));
  if (!copy) {
    if (link(src, dst) == 0)
      return 0;
    if (errno != EMLINK && errno != EXDEV && errno != EPERM)
      return db_err_from_errno(errno);
  }
  return wk_copy_file(src, dst, exec ? 0555 : 0444);
}

/* Collect the files under n (recursively) into wants. */
static int want_subtree(mat_ctx *x, dnode *n, int depth) {
  int rv = 0;
  if (depth > 256)
    return DB_EINVAL;
  for (size_t i = 0; i < n->pb->n_files && rv == 0; i++) {
    reapi_digest fd;
    rv = reapi_pb_digest_get(n->pb->files[i]->digest, &fd);
    if (rv == 0)
      rv = want_add(x, &fd, n->pb->files[i]->is_executable);
  }
  for (size_t i = 0; i < n->pb->n_directories && rv == 0; i++) {
    reapi_digest cd;
    rv = reapi_pb_digest_get(n->pb->directories[i]->digest, &cd);
    if (rv == 0)
      rv = want_subtree(x, dmap_find(&x->map, &cd), depth + 1);
  }
  return rv;
}

/* Write n's contents into host dir `dir` (exists). Used for trees (all
 * linked, directories frozen 0555 afterwards). */
static int write_tree(mat_ctx *x, dnode *n, const char *dir, int depth) {
  char p[PATHMAX];
  int rv = 0;

  if (depth > 256)
    return DB_EINVAL;
  for (size_t i = 0; i < n->pb->n_files && rv == 0; i++) {
    PbFileNode *f = n->pb->files[i];
    reapi_digest fd;
    if (!name_ok(f->name) || reapi_pb_digest_get(f->digest, &fd) != 0)
      return DB_EINVAL;
    snprintf(p, sizeof(p), "%s/%s", dir, f->name);
    rv = place_file(x, &fd, f->is_executable, p, x->o->copy_all);
  }
  for (size_t i = 0; i < n->pb->n_symlinks && rv == 0; i++) {
    PbSymlinkNode *s = n->pb->symlinks[i];
    if (!name_ok(s->name) || !s->target)
      return DB_EINVAL;
    snprintf(p, sizeof(p), "%s/%s", dir, s->name);
    if (symlink(s->target, p) != 0)
      rv = db_err_from_errno(errno);
  }
  for (size_t i = 0; i < n->pb->n_directories && rv == 0; i++) {
    PbDirectoryNode *dn = n->pb->directories[i];
    reapi_digest cd;
    if (!name_ok(dn->name) || reapi_pb_digest_get(dn->digest, &cd) != 0)
      return DB_EINVAL;
    snprintf(p, sizeof(p), "%s/%s", dir, dn->name);
    if (mkdir(p, 0755) != 0)
      return db_err_from_errno(errno);
    rv = write_tree(x, dmap_find(&x->map, &cd), p, depth + 1);
    if (rv == 0 && chmod(p, 0555) != 0)
      rv = db_err_from_errno(errno);
  }
  return rv;
}

typedef struct tree_build {
  mat_ctx *x;
  dnode *n;
} tree_build;

static int tree_build_cb(void *ctx, const char *dir) {
  tree_build *b = ctx;
  mat_ctx *x = b->x;
  size_t first = x->nwants;
  int rv;

  /* Pin the subtree's files (usually already present from the prefetch). */
  rv = want_subtree(x, b->n, 0);
  if (rv == 0)
    rv = wk_cache_acquire(x->c, x->cas, x->wants + first, x->nwants - first,
                          NULL);
  if (rv == 0) {
    rv = write_tree(x, b->n, dir, 0);
    wk_cache_release(x->c, x->wants + first, x->nwants - first);
  }
  x->nwants = first;
  return rv;
}

static int add_bind(wk_mat *m, const char *rel, const char *src,
                    const reapi_digest *d) {
  wk_mat_bind *b = realloc(m->binds, (m->nbinds + 1) * sizeof(*b));
  if (!b)
    return DB_ENOMEM;
  m->binds = b;
  b = &m->binds[m->nbinds];
  b->rel = strdup(rel);
  b->src = strdup(src);
  b->digest = *d;
  if (!b->rel || !b->src) {
    free(b->rel);
    free(b->src);
    return DB_ENOMEM;
  }
  m->nbinds++;
  return 0;
}

/* Pass 1 (plan): decide binds, collect the wants of linked files and of
 * trees to build. Pass 2 (place, after the fetch): create everything. */
static int walk(mat_ctx *x, dnode *n, const char *rel, const char *host,
                int place, int depth) {
  char r[PATHMAX], h[PATHMAX];
  int rv = 0;

  if (depth > 256)
    return DB_EINVAL;
  for (size_t i = 0; i < n->pb->n_files && rv == 0; i++) {
    PbFileNode *f = n->pb->files[i];
    reapi_digest fd;
    if (!name_ok(f->name) || reapi_pb_digest_get(f->digest, &fd) != 0) {
      snprintf(x->m->err, sizeof(x->m->err), "bad file node in %s", rel);
      return DB_EINVAL;
    }
    if (!place) {
      rv = want_add(x, &fd, f->is_executable);
      continue;
    }
    snprintf(r, sizeof(r), "%s%s%s", rel, *rel ? "/" : "", f->name);
    snprintf(h, sizeof(h), "%s/%s", host, f->name);
    rv = place_file(x, &fd, f->is_executable, h,
                    x->o->copy_all ||
                        (x->o->copy_writable && under_writable(x->o, r)));
    if (rv == 0)
      x->m->files_linked++;
  }
  for (size_t i = 0; place && i < n->pb->n_symlinks && rv == 0; i++) {
    PbSymlinkNode *s = n->pb->symlinks[i];
    if (!name_ok(s->name) || !s->target)
      return DB_EINVAL;
    snprintf(h, sizeof(h), "%s/%s", host, s->name);
    if (symlink(s->target, h) != 0)
      rv = db_err_from_errno(errno);
  }
  for (size_t i = 0; i < n->pb->n_directories && rv == 0; i++) {
    PbDirectoryNode *dn = n->pb->directories[i];
    reapi_digest cd;
    dnode *cn;
    if (!name_ok(dn->name) || reapi_pb_digest_get(dn->digest, &cd) != 0)
      return DB_EINVAL;
    cn = dmap_find(&x->map, &cd);
    if (!cn || !cn->pb)
      return DB_EINVAL;
    snprintf(r, sizeof(r), "%s%s%s", rel, *rel ? "/" : "", dn->name);
    snprintf(h, sizeof(h), "%s/%s", host, dn->name);
    if (place && mkdir(h, 0755) != 0)
      return db_err_from_errno(errno);
    if (!output_ancestor(x->o, r) && qualifies(x->o, cn, r)) {
      if (!place) {
        if (!wk_cache_tree_has(x->c, &cd))
          rv = want_subtree(x, cn, depth + 1); /* prefetch */
        continue;
      }
      tree_build tb = {x, cn};
      char src[PATHMAX];
      int built = 0;
      rv = wk_cache_tree_acquire(x->c, &cd, cn->bytes, tree_build_cb, &tb, src,
                                 sizeof(src), &built);
      if (rv != 0)
        break;
      if (built)
        x->m->trees_built++;
      else
        x->m->trees_hit++;
      rv = add_bind(x->m, r, src, &cd);
      if (rv != 0) {
        wk_cache_tree_release(x->c, &cd);
        break;
      }
      if (x->o->copy_all) {
        /* No sandbox to bind with: point at the tree instead. */
        if (rmdir(h) != 0 || symlink(src, h) != 0)
          rv = db_err_from_errno(errno);
      }
      continue;
    }
    rv = walk(x, cn, r, h, place, depth + 1);
  }
  return rv;
}

/* Create the writable directories (mkdir -p inside dir, never through a
 * symlink) and hand them to (wuid, wgid). */
static int make_writable(mat_ctx *x, const char *dir) {
  char p[PATHMAX];
  int rv = 0;

  for (size_t i = 0; i < x->o->n_writable && rv == 0; i++) {
    const char *w = x->o->writable_dirs[i];
    struct stat st;
    snprintf(p, sizeof(p), "%s%s%s", dir, *w ? "/" : "", w);
    for (size_t k = strlen(dir) + 1; k <= strlen(p); k++) {
      if (p[k] != '/' && p[k] != '\0')
        continue;
      char save = p[k];
      p[k] = '\0';
      if (mkdir(p, 0755) != 0 && errno != EEXIST)
        rv = db_err_from_errno(errno);
      else if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode))
        rv = DB_EINVAL;
      p[k] = save;
      if (rv != 0) {
        snprintf(x->m->err, sizeof(x->m->err),
                 "output parent %s is not a directory in the input root", w);
        return rv;
      }
    }
    if (lchown(p, x->o->wuid, x->o->wgid) != 0 && geteuid() == 0)
      rv = db_err_from_errno(errno);
  }
  return rv;
}

int wk_materialize(wk_cache *c, cas_client *cas, const reapi_digest *root,
                   const char *dir, const wk_mat_opts *o, wk_mat *m) {
  mat_ctx x = {0};
  dnode *rn;
  int rv;

  memset(m, 0, sizeof(*m));
  x.c = c;
  x.cas = cas;
  x.o = o;
  x.m = m;
  rv = seed_dirs(&x);
  if (rv == 0)
    rv = fetch_dirs(&x, root);
  if (rv != 0)
    goto out;
  rn = dmap_find(&x.map, root);
  rv = DB_EINVAL;
  if (!rn || !rn->pb)
    goto out;
  for (size_t i = 0; i < x.map.cap; i++)
    if (x.map.slots[i].pb && totals(&x, &x.map.slots[i], 0) != 0)
      goto out;
  /* Plan, fetch every file at once, then place. */
  x.nwants = 0;
  rv = walk(&x, rn, "", dir, 0, 0);
  if (rv != 0)
    goto out;
  {
    size_t n = x.nwants;
    rv = wk_cache_acquire(c, cas, x.wants, n, &m->fetch);
    if (rv == DB_ENOTFOUND)
      note_missing(&x);
    if (rv != 0)
      goto out;
    x.nwants = n;
    rv = walk(&x, rn, "", dir, 1, 0);
    if (rv == 0)
      rv = make_writable(&x, dir);
    wk_cache_release(c, x.wants, n);
  }
out:
  if (rv != 0 && !m->err[0])
    snprintf(m->err, sizeof(m->err), "materialising input root: %s",
             db_strerror(rv));
  if (rv != 0) {
    for (size_t i = 0; i < m->nbinds; i++)
      wk_cache_tree_release(c, &m->binds[i].digest);
    for (size_t i = 0; i < m->nbinds; i++) {
      free(m->binds[i].rel);
      free(m->binds[i].src);
    }
    free(m->binds);
    m->binds = NULL;
    m->nbinds = 0;
  }
  dmap_free(&x.map);
  free(x.wants);
  return rv;
}

void wk_mat_release(wk_cache *c, wk_mat *m) {
  for (size_t i = 0; i < m->nbinds; i++) {
    wk_cache_tree_release(c, &m->binds[i].digest);
    free(m->binds[i].rel);
    free(m->binds[i].src);
  }
  free(m->binds);
  free(m->missing);
  m->binds = NULL;
  m->missing = NULL;
  m->nbinds = m->nmissing = 0;
}
