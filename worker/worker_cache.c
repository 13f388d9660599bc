/* Local file cache and tree cache; see worker_cache.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "worker_cache.h"
#include "worker_int.h"

enum { ST_FETCHING = 0, ST_PRESENT = 1, ST_FAILED = 2 };
enum { K_FILE = 0, K_TREE = 1 };

typedef struct entry {
  reapi_digest d;
  int exec;
  int kind;
  int state;
  const void *owner; /* token of the fetching call */
  uint64_t pins;
  uint64_t bytes;
  struct entry *hnext;         /* hash chain */
  struct entry *lprev, *lnext; /* LRU list (present entries) */
} entry;

typedef struct lru {
  entry *head, *tail; /* head = most recently used */
  uint64_t bytes, count, budget, evictions;
} lru;

struct wk_cache {
  char *dir;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry **tab;
  size_t nbuckets, nentries;
  lru lists[2];
  uint64_t seq;
  wk_fetch_opts fetch; /* set before use; read-only after */
};

static size_t key_hash(const reapi_digest *d, int exec, int kind) {
  uint64_t h = 0;
  for (int i = 0; i < 16; i++) {
    char ch = d->hash[i];
    h = (h << 4) | (uint64_t)(ch >= 'a' ? ch - 'a' + 10 : ch - '0');
  }
  h ^= (uint64_t)d->size * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t)(exec * 2 + kind) * 0xff51afd7ed558ccdull;
  return (size_t)h;
}

static entry *find(wk_cache *c, const reapi_digest *d, int exec, int kind) {
  entry *e = c->tab[key_hash(d, exec, kind) & (c->nbuckets - 1)];
  for (; e; e = e->hnext)
    if (e->kind == kind && e->exec == exec && reapi_digest_eq(&e->d, d))
      return e;
  return NULL;
}

static int grow(wk_cache *c) {
  size_t nb = c->nbuckets * 2;
  entry **t = calloc(nb, sizeof(*t));

  if (!t)
    return DB_ENOMEM;
  for (size_t i = 0; i < c->nbuckets; i++) {
    entry *e = c->tab[i];
    while (e) {
      entry *n = e->hnext;
      size_t b = key_hash(&e->d, e->exec, e->kind) & (nb - 1);
      e->hnext = t[b];
      t[b] = e;
      e = n;
    }
  }
  free(c->tab);
  c->tab = t;
  c->nbuckets = nb;
  return 0;
}

static entry *insert(wk_cache *c, const reapi_digest *d, int exec, int kind) {
  entry *e;
  size_t b;

  if (c->nentries + 1 > c->nbuckets && grow(c) != 0)
    return NULL;
  e = calloc(1, sizeof(*e));
  if (!e)
    return NULL;
  e->d = *d;
  e->exec = exec;
  e->kind = kind;
  b = key_hash(d, exec, kind) & (c->nbuckets - 1);
  e->hnext = c->tab[b];
  c->tab[b] = e;
  c->nentries++;
  return e;
}

static void unhash(wk_cache *c, entry *e) {
  entry **pp = &c->tab[key_hash(&e->d, e->exec, e->kind) & (c->nbuckets - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
  c->nentries--;
}

static void lru_unlink(lru *l, entry *e) {
  if (e->lprev)
    e->lprev->lnext = e->lnext;
  else
    l->head = e->lnext;
  if (e->lnext)
    e->lnext->lprev = e->lprev;
  else
    l->tail = e->lprev;
  e->lprev = e->lnext = NULL;
}

static void lru_push(lru *l, entry *e) {
  e->lprev = NULL;
  e->lnext = l->head;
  if (l->head)
    l->head->lprev = e;
  l->head = e;
  if (!l->tail)
    l->tail = e;
}

static void lru_touch(lru *l, entry *e) {
  if (l->head == e)
    return;
  lru_unlink(l, e);
  lru_push(l, e);
}

static void file_path(const char *dir, const reapi_digest *d, int exec,
                      char *buf, size_t len) {
  snprintf(buf, len, "%s/files/%.2s/%s-%lld%s", dir, d->hash, d->hash,
           (long long)d->size, exec ? "-x" : "");
}

static void tree_path(const char *dir, const reapi_digest *d, char *buf,
                      size_t len) {
  snprintf(buf, len, "%s/trees/%s-%lld", dir, d->hash, (long long)d->size);
}

void wk_cache_path(const wk_cache *c, const reapi_digest *d, int exec,
                   char *buf, size_t len) {
  file_path(c->dir, d, exec, buf, len);
}

const char *wk_cache_dir(const wk_cache *c) {
  return c->dir;
}

void wk_cache_set_fetch(wk_cache *c, const wk_fetch_opts *o) {
  c->fetch = *o;
}

/* Present an entry to its LRU list. Caller holds mu. */
static void make_present(wk_cache *c, entry *e, uint64_t bytes) {
  lru *l = &c->lists[e->kind];
  e->state = ST_PRESENT;
  e->bytes = bytes;
  e->owner = NULL;
  l->bytes += bytes;
  l->count++;
  lru_push(l, e);
}

/* Evict unpinned entries from the cold end until within budget. Caller
 * holds mu; trees are renamed into tmp/ here and removed by the caller
 * through *trash (a malloc'd array of paths). */
static void evict(wk_cache *c, int kind, char ***trash, size_t *ntrash) {
  lru *l = &c->lists[kind];
  entry *e = l->tail;
  char path[4096], dst[4096];

  while (l->budget && l->bytes > l->budget && e) {
    entry *prev = e->lprev;
    if (e->pins == 0) {
      if (kind == K_FILE) {
        file_path(c->dir, &e->d, e->exec, path, sizeof(path));
        unlink(path);
      } else {
        tree_path(c->dir, &e->d, path, sizeof(path));
        snprintf(dst, sizeof(dst), "%s/tmp/evict-%llu", c->dir,
                 (unsigned long long)++c->seq);
        /* Unseal so a non-root worker may move it (see tree build). */
        chmod(path, 0755);
        if (rename(path, dst) == 0 && trash) {
          char **t = realloc(*trash, (*ntrash + 1) * sizeof(char *));
          if (t) {
            *trash = t;
            t[*ntrash] = strdup(dst);
            if (t[*ntrash])
              (*ntrash)++;
          }
        }
      }
      lru_unlink(l, e);
      l->bytes -= e->bytes;
      l->count--;
      l->evictions++;
      unhash(c, e);
      free(e);
    }
    e = prev;
  }
}

static void empty_trash(char **trash, size_t n) {
  for (size_t i = 0; i < n; i++) {
    wk_rmrf(trash[i]);
    free(trash[i]);
  }
  free(trash);
}

/* Index files/XX/ at start-up; drop temp leftovers. */
static int scan_files(wk_cache *c) {
  char path[4096];
  int rv = 0;

  for (int i = 0; i < 256; i++) {
    DIR *dh;
    struct dirent *de;
    snprintf(path, sizeof(path), "%s/files/%02x", c->dir, i);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return db_err_from_errno(errno);
    dh = opendir(path);
    if (!dh)
      return db_err_from_errno(errno);
    while ((de = readdir(dh)) != NULL) {
      reapi_digest d;
      char hash[REAPI_HASH_HEX_LEN + 1];
      long long size = -1;
      char x[4] = "";
      struct stat st;
      entry *e;
      if (de->d_name[0] == '.')
        continue;
      if (strstr(de->d_name, ".tmp.") ||
          sscanf(de->d_name, "%64[0-9a-f]-%lld%3s", hash, &size, x) < 2 ||
          reapi_digest_set(&d, hash, size) != 0 || (x[0] && strcmp(x, "-x")) ||
          fstatat(dirfd(dh), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode) || st.st_size != size ||
          find(c, &d, x[0] != 0, K_FILE)) {
        unlinkat(dirfd(dh), de->d_name, 0);
        continue;
      }
      e = insert(c, &d, x[0] != 0, K_FILE);
      if (!e) {
        rv = DB_ENOMEM;
        break;
      }
      make_present(c, e, (uint64_t)size);
    }
    closedir(dh);
    if (rv != 0)
      break;
  }
  return rv;
}

int wk_cache_open(const char *dir, uint64_t file_budget, uint64_t tree_budget,
                  wk_cache **out) {
  wk_cache *c = calloc(1, sizeof(*c));
  char path[4096];
  int rv = DB_ENOMEM;

  *out = NULL;
  if (!c)
    return DB_ENOMEM;
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->dir = strdup(dir);
  c->nbuckets = 1024;
  c->tab = calloc(c->nbuckets, sizeof(*c->tab));
  if (!c->dir || !c->tab)
    goto fail;
  c->lists[K_FILE].budget = file_budget;
  c->lists[K_TREE].budget = tree_budget;
  rv = wk_mkdirs(dir, 0755);
  if (rv != 0)
    goto fail;
  /* Trees and temp files are rebuilt from files/ on demand: start clean. */
  snprintf(path, sizeof(path), "%s/trees", dir);
  rv = wk_rmrf(path);
  if (rv == 0) {
    snprintf(path, sizeof(path), "%s/tmp", dir);
    rv = wk_rmrf(path);
  }
  for (int i = 0; rv == 0 && i < 3; i++) {
    static const char *const sub[] = {"files", "trees", "tmp"};
    snprintf(path, sizeof(path), "%s/%s", dir, sub[i]);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      rv = db_err_from_errno(errno);
  }
  if (rv != 0)
    goto fail;
  /* Probe writability once, so a broken cache fails at start-up. */
  snprintf(path, sizeof(path), "%s/tmp/.probe", dir);
  {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      rv = db_err_from_errno(errno);
      goto fail;
    }
    close(fd);
    unlink(path);
  }
  rv = scan_files(c);
  if (rv != 0)
    goto fail;
  pthread_mutex_lock(&c->mu);
  evict(c, K_FILE, NULL, NULL);
  pthread_mutex_unlock(&c->mu);
  *out = c;
  return 0;
fail:
  wk_cache_close(c);
  return rv;
}

void wk_cache_close(wk_cache *c) {
  if (!c)
    return;
  if (c->tab) {
    for (size_t i = 0; i < c->nbuckets; i++) {
      entry *e = c->tab[i];
      while (e) {
        entry *n = e->hnext;
        free(e);
        e = n;
      }
    }
  }
  free(c->tab);
  free(c->dir);
  pthread_cond_destroy(&c->cv);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

void wk_cache_get_stats(wk_cache *c, wk_cache_stats *out) {
  pthread_mutex_lock(&c->mu);
  out->files = c->lists[K_FILE].count;
  out->file_bytes = c->lists[K_FILE].bytes;
  out->file_evictions = c->lists[K_FILE].evictions;
  out->trees = c->lists[K_TREE].count;
  out->tree_bytes = c->lists[K_TREE].bytes;
  out->tree_evictions = c->lists[K_TREE].evictions;
  pthread_mutex_unlock(&c->mu);
}

/* Drop one pin of each of w[0..n). Caller holds mu. */
static void unpin_locked(wk_cache *c, const wk_cache_want *w, size_t n) {
  for (size_t i = 0; i < n; i++) {
    entry *e = find(c, &w[i].digest, w[i].exec != 0, K_FILE);
    if (!e || e->pins == 0)
      continue;
    e->pins--;
    if (e->pins == 0 && e->state == ST_FAILED) {
      unhash(c, e);
      free(e);
    }
  }
}

void wk_cache_release(wk_cache *c, const wk_cache_want *w, size_t n) {
  pthread_mutex_lock(&c->mu);
  unpin_locked(c, w, n);
  evict(c, K_FILE, NULL, NULL);
  pthread_mutex_unlock(&c->mu);
}

/* Create the empty blob's file (never downloaded). */
static int make_empty(const char *path, int exec) {
  char tmp[4200];
  int fd;

  snprintf(tmp, sizeof(tmp), "%s.tmp.e%ld", path, (long)pthread_self());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return db_err_from_errno(errno);
  if (fchmod(fd, exec ? 0555 : 0444) != 0 || close(fd) != 0) {
    unlink(tmp);
    return DB_EIO;
  }
  if (rename(tmp, path) != 0) {
    int rv = db_err_from_errno(errno);
    unlink(tmp);
    return rv;
  }
  return 0;
}

int wk_cache_acquire(wk_cache *c, cas_client *cas, const wk_cache_want *w,
                     size_t n, wk_fetch_stats *st) {
  char token;
  size_t *mine = NULL, nmine = 0, ndl = 0;
  cas_blob_dst *dsts = NULL;
  char(*paths)[4096] = NULL;
  uint64_t bytes = 0;
  int rv = 0, dl_rv = 0;

  if (n == 0)
    return 0;
  mine = calloc(n, sizeof(*mine));
  if (!mine)
    return DB_ENOMEM;

  /* 1. Pin everything; claim what nobody has. */
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < n; i++) {
    int exec = w[i].exec != 0;
    entry *e = find(c, &w[i].digest, exec, K_FILE);
    if (!e) {
      e = insert(c, &w[i].digest, exec, K_FILE);
      if (!e) {
        unpin_locked(c, w, i);
        pthread_mutex_unlock(&c->mu);
        rv = DB_ENOMEM;
        goto out;
      }
      e->state = ST_FETCHING;
      e->owner = &token;
      mine[nmine++] = i;
    } else if (e->state == ST_FAILED && e->owner != &token) {
      e->state = ST_FETCHING;
      e->owner = &token;
      mine[nmine++] = i;
    } else if (e->state == ST_PRESENT) {
      lru_touch(&c->lists[K_FILE], e);
    }
    e->pins++;
  }
  pthread_mutex_unlock(&c->mu);

  /* 2. Fetch ours in one call (the empty blob is made locally). */
  if (nmine) {
    dsts = calloc(nmine, sizeof(*dsts));
    paths = calloc(nmine, sizeof(*paths));
    if (!dsts || !paths) {
      dl_rv = DB_ENOMEM;
    } else {
      for (size_t k = 0; k < nmine; k++) {
        const wk_cache_want *x = &w[mine[k]];
        file_path(c->dir, &x->digest, x->exec != 0, paths[k], sizeof(paths[k]));
        if (x->digest.size == 0) {
          int r = make_empty(paths[k], x->exec != 0);
          if (r != 0)
            dl_rv = r;
          continue;
        }
        dsts[ndl].digest = x->digest;
        dsts[ndl].path = paths[k];
        dsts[ndl].mode = x->exec ? 0555 : 0444;
        ndl++;
      }
      if (ndl && dl_rv == 0)
        dl_rv = wk_fetch_download(cas, &c->fetch, dsts, ndl, &bytes);
    }
  }

  /* 3. Publish ours, then wait for the ones others fetch. */
  pthread_mutex_lock(&c->mu);
  for (size_t k = 0; k < nmine; k++) {
    const wk_cache_want *x = &w[mine[k]];
    entry *e = find(c, &x->digest, x->exec != 0, K_FILE);
    struct stat sb;
    if (!e || e->state != ST_FETCHING || e->owner != &token)
      continue;
    if (paths && stat(paths[k], &sb) == 0 && sb.st_size == x->digest.size) {
      make_present(c, e, (uint64_t)x->digest.size);
    } else {
      e->state = ST_FAILED;
      e->owner = NULL;
      if (dl_rv == 0)
        dl_rv = DB_EIO;
    }
  }
  pthread_cond_broadcast(&c->cv);
  rv = dl_rv;
  for (size_t i = 0; rv == 0 && i < n; i++) {
    entry *e = find(c, &w[i].digest, w[i].exec != 0, K_FILE);
    while (e && e->state == ST_FETCHING) {
      pthread_cond_wait(&c->cv, &c->mu);
      e = find(c, &w[i].digest, w[i].exec != 0, K_FILE);
    }
    if (!e || e->state != ST_PRESENT)
      rv = DB_EUNAVAIL; /* the other fetch failed */
  }
  if (rv != 0)
    unpin_locked(c, w, n);
  evict(c, K_FILE, NULL, NULL);
  pthread_mutex_unlock(&c->mu);
  if (st) {
    st->misses += nmine;
    st->hits += n - nmine;
    st->bytes += bytes;
  }
out:
  free(paths);
  free(dsts);
  free(mine);
  return rv;
}

int wk_cache_read(wk_cache *c, cas_client *cas, const reapi_digest *d,
                  uint8_t **data, size_t *len, wk_fetch_stats *st) {
  wk_cache_want w = {*d, 0};
  char path[4096];
  uint8_t *buf = NULL;
  int fd = -1, rv;

  *data = NULL;
  *len = 0;
  if (d->size == 0)
    return 0;
  rv = wk_cache_acquire(c, cas, &w, 1, st);
  if (rv != 0)
    return rv;
  file_path(c->dir, d, 0, path, sizeof(path));
  buf = malloc((size_t)d->size);
  rv = DB_ENOMEM;
  if (!buf)
    goto out;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  rv = DB_EIO;
  if (fd < 0 || wk_read_full(fd, buf, (size_t)d->size) != 0)
    goto out;
  *data = buf;
  *len = (size_t)d->size;
  buf = NULL;
  rv = 0;
out:
  if (fd >= 0)
    close(fd);
  free(buf);
  wk_cache_release(c, &w, 1);
  return rv;
}

/* ---- tree cache ---------------------------------------------------------- */

int wk_cache_tree_has(wk_cache *c, const reapi_digest *d) {
  entry *e;
  int has;

  pthread_mutex_lock(&c->mu);
  e = find(c, d, 0, K_TREE);
  has = e && e->state == ST_PRESENT;
  pthread_mutex_unlock(&c->mu);
  return has;
}

int wk_cache_tree_acquire(wk_cache *c, const reapi_digest *d, uint64_t bytes,
                          wk_tree_build_fn build, void *ctx, char *path,
                          size_t pathlen, int *built) {
  char token;
  char tmp[4096];
  char **trash = NULL;
  size_t ntrash = 0;
  entry *e;
  int rv = 0, mine = 0;

  if (built)
    *built = 0;
  tree_path(c->dir, d, path, pathlen);
  pthread_mutex_lock(&c->mu);
  for (;;) {
    e = find(c, d, 0, K_TREE);
    if (!e) {
      e = insert(c, d, 0, K_TREE);
      if (!e) {
        rv = DB_ENOMEM;
        break;
      }
    }
    if (e->state == ST_PRESENT) {
      lru_touch(&c->lists[K_TREE], e);
      e->pins++;
      break;
    }
    if (e->state == ST_FAILED || (e->state == ST_FETCHING && !e->owner)) {
      e->state = ST_FETCHING;
      e->owner = &token;
      e->pins++;
      mine = 1;
      snprintf(tmp, sizeof(tmp), "%s/tmp/tree-%llu", c->dir,
               (unsigned long long)++c->seq);
      break;
    }
    pthread_cond_wait(&c->cv, &c->mu);
  }
  pthread_mutex_unlock(&c->mu);
  if (rv != 0 || !mine)
    return rv;

  rv = mkdir(tmp, 0755) == 0 ? 0 : db_err_from_errno(errno);
  if (rv == 0)
    rv = build(ctx, tmp);
  /* Move first, then seal: moving a directory to a new parent needs
   * write permission on it, which a non-root worker loses at 0555. */
  if (rv == 0 && rename(tmp, path) != 0)
    rv = db_err_from_errno(errno);
  if (rv == 0 && chmod(path, 0555) != 0) {
    rv = db_err_from_errno(errno);
    wk_rmrf(path);
  }
  if (rv != 0)
    wk_rmrf(tmp);

  pthread_mutex_lock(&c->mu);
  if (rv == 0) {
    make_present(c, e, bytes);
    if (built)
      *built = 1;
  } else {
    e->state = ST_FAILED;
    e->owner = NULL;
    e->pins--;
    if (e->pins == 0) {
      unhash(c, e);
      free(e);
    }
  }
  pthread_cond_broadcast(&c->cv);
  evict(c, K_TREE, &trash, &ntrash);
  pthread_mutex_unlock(&c->mu);
  empty_trash(trash, ntrash);
  return rv;
}

void wk_cache_tree_release(wk_cache *c, const reapi_digest *d) {
  char **trash = NULL;
  size_t ntrash = 0;
  entry *e;

  pthread_mutex_lock(&c->mu);
  e = find(c, d, 0, K_TREE);
  if (e && e->pins > 0)
    e->pins--;
  evict(c, K_TREE, &trash, &ntrash);
  pthread_mutex_unlock(&c->mu);
  empty_trash(trash, ntrash);
}
