/*
 * In-memory index of the CAS: a chained hash table keyed by (SHA-256,
 * size) plus an intrusive LRU list, and the start-up scan that rebuilds
 * both from cas/XX/ file names and mtimes.
 */
#include "cas_store_int.h"

#include "db_err.h"
#include "db_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDX_INITIAL_BUCKETS 1024

/* The key is already a cryptographic hash, so its first bytes are a
 * perfectly good table hash; mixing in the size costs nothing. */
static size_t key_hash(const cas_key *k) {
  uint64_t h;
  memcpy(&h, k->hash, sizeof(h));
  return (size_t)(h ^ ((uint64_t)k->size * 0x9e3779b97f4a7c15ULL));
}

static int key_eq(const cas_key *a, const cas_key *b) {
  return a->size == b->size && memcmp(a->hash, b->hash, 32) == 0;
}

int cas_idx_init(cas_index *idx) {
  memset(idx, 0, sizeof(*idx));
  idx->buckets = calloc(IDX_INITIAL_BUCKETS, sizeof(*idx->buckets));
  if (!idx->buckets)
    return DB_ENOMEM;
  idx->nbuckets = IDX_INITIAL_BUCKETS;
  idx->lru.next = idx->lru.prev = &idx->lru;
  return 0;
}

void cas_idx_free(cas_index *idx) {
  cas_entry *e, *next;

  if (!idx->buckets)
    return;
  for (e = idx->lru.next; e != &idx->lru; e = next) {
    next = e->next;
    free(e);
  }
  free(idx->buckets);
  memset(idx, 0, sizeof(*idx));
}

cas_entry *cas_idx_find(cas_index *idx, const cas_key *k) {
  cas_entry *e = idx->buckets[key_hash(k) & (idx->nbuckets - 1)];

  while (e && !key_eq(&e->key, k))
    e = e->hnext;
  return e;
}

static int idx_grow(cas_index *idx) {
  size_t n = idx->nbuckets * 2, i;
  cas_entry **nb = calloc(n, sizeof(*nb));

  if (!nb)
    return DB_ENOMEM;
  for (i = 0; i < idx->nbuckets; i++) {
    cas_entry *e = idx->buckets[i], *next;
    for (; e; e = next) {
      size_t b = key_hash(&e->key) & (n - 1);
      next = e->hnext;
      e->hnext = nb[b];
      nb[b] = e;
    }
  }
  free(idx->buckets);
  idx->buckets = nb;
  idx->nbuckets = n;
  return 0;
}

static void lru_unlink(cas_entry *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

static void lru_push_front(cas_index *idx, cas_entry *e) {
  e->prev = &idx->lru;
  e->next = idx->lru.next;
  idx->lru.next->prev = e;
  idx->lru.next = e;
}

/* New entries go to the LRU front: a blob just written is the most
 * recently used one. */
int cas_idx_insert(cas_index *idx, cas_entry *e) {
  size_t b;

  /* Load factor 1: chains stay short and growth is rare. A failed growth
   * only makes chains longer, so it is not an error for the caller. */
  if (idx->count >= idx->nbuckets)
    (void)idx_grow(idx);
  b = key_hash(&e->key) & (idx->nbuckets - 1);
  e->hnext = idx->buckets[b];
  idx->buckets[b] = e;
  lru_push_front(idx, e);
  idx->count++;
  return 0;
}

void cas_idx_remove(cas_index *idx, cas_entry *e) {
  cas_entry **pp = &idx->buckets[key_hash(&e->key) & (idx->nbuckets - 1)];

  while (*pp && *pp != e)
    pp = &(*pp)->hnext;
  if (*pp)
    *pp = e->hnext;
  lru_unlink(e);
  e->hnext = e->prev = e->next = NULL;
  idx->count--;
}

void cas_idx_lru_front(cas_index *idx, cas_entry *e) {
  if (idx->lru.next == e)
    return;
  lru_unlink(e);
  lru_push_front(idx, e);
}

cas_entry *cas_idx_evict_locked(cas_store *s, const cas_entry *keep) {
  cas_entry *victims = NULL;

  if (s->max_bytes == 0)
    return NULL;
  while (s->stored_bytes > s->max_bytes) {
    cas_entry *e = s->idx.lru.prev;
    if (e == &s->idx.lru || e == keep)
      break;
    cas_idx_remove(&s->idx, e);
    s->stored_bytes -= e->stored;
    s->logical_bytes -= (uint64_t)e->key.size;
    s->evictions++;
    e->next = victims;
    victims = e;
  }
  return victims;
}

/* ---- start-up scan ---- */

typedef struct scan_item {
  cas_entry *e;
  struct timespec mtime;
} scan_item;

static int cmp_mtime(const void *a, const void *b) {
  const scan_item *x = a, *y = b;

  if (x->mtime.tv_sec != y->mtime.tv_sec)
    return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
  if (x->mtime.tv_nsec != y->mtime.tv_nsec)
    return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
  return 0;
}

/* Scan one shard directory, appending entries to *items. Files that are
 * not blobs are left alone (with a warning); a raw blob whose length does
 * not match its name is known-corrupt and deleted. */
static int scan_shard(cas_store *s, const char *shard, scan_item **items,
                      size_t *n, size_t *cap) {
  int rv = 0, dfd;
  DIR *dir = NULL;
  struct dirent *de;

  dfd = openat(s->rootfd, shard, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    rv = errno == ENOENT ? 0 : cas_err_errno();
    goto out;
  }
  dir = fdopendir(dfd);
  if (!dir) {
    close(dfd);
    rv = cas_err_errno();
    goto out;
  }
  while ((de = readdir(dir)) != NULL) {
    cas_key k;
    int fmt;
    struct stat st;
    cas_entry *e;

    if (de->d_name[0] == '.')
      continue;
    if (cas_parse_blob_name(de->d_name, &k, &fmt) != 0 ||
        fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode)) {
      DB_WARN("cas", "ignoring unexpected file %s/%s", shard, de->d_name);
      continue;
    }
    if (fmt == CAS_FMT_RAW && st.st_size != k.size) {
      DB_WARN("cas", "deleting truncated blob %s/%s", shard, de->d_name);
      unlinkat(dirfd(dir), de->d_name, 0);
      continue;
    }
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 1024;
      scan_item *ni = realloc(*items, nc * sizeof(*ni));
      if (!ni) {
        rv = DB_ENOMEM;
        goto out;
      }
      *items = ni;
      *cap = nc;
    }
    e = calloc(1, sizeof(*e));
    if (!e) {
      rv = DB_ENOMEM;
      goto out;
    }
    e->key = k;
    e->fmt = fmt;
    e->stored = (uint64_t)st.st_size;
    e->touched = st.st_mtim.tv_sec;
    (*items)[*n].e = e;
    (*items)[*n].mtime = st.st_mtim;
    (*n)++;
  }
out:
  if (dir)
    closedir(dir);
  return rv;
}

int cas_idx_load(cas_store *s) {
  int rv = 0;
  scan_item *items = NULL;
  size_t n = 0, cap = 0, i;
  char shard[16];

  for (i = 0; i < 256 && rv == 0; i++) {
    snprintf(shard, sizeof(shard), "cas/%02zx", i);
    rv = scan_shard(s, shard, &items, &n, &cap);
  }
  if (rv != 0)
    goto out;
  /* Oldest first: each insert goes to the LRU front, so the newest mtime
   * ends up most recent. */
  if (n > 1) /* qsort(NULL, 0) is undefined */
    qsort(items, n, sizeof(*items), cmp_mtime);
  for (i = 0; i < n; i++) {
    cas_entry *e = items[i].e;
    items[i].e = NULL;
    if (cas_idx_find(&s->idx, &e->key)) {
      /* Both HASH.z and HASH.r: a crash between two renames cannot cause
       * this (ns_mu), but a copied-in tree might. Keep the first. */
      char path[CAS_PATH_MAX];
      cas_blob_path(&e->key, e->fmt, path);
      DB_WARN("cas", "deleting duplicate blob %s", path);
      unlinkat(s->rootfd, path, 0);
      free(e);
      continue;
    }
    e->gen = ++s->next_gen;
    cas_idx_insert(&s->idx, e);
    s->stored_bytes += e->stored;
    s->logical_bytes += (uint64_t)e->key.size;
  }
out:
  for (i = 0; i < n; i++)
    free(items[i].e);
  free(items);
  return rv;
}
