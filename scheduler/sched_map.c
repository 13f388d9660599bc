/* A small chained hash map with string keys (FNV-1a), grown at load 1. */
#include "sched_int.h"

#include "db_err.h"

#include <stdlib.h>
#include <string.h>

typedef struct map_ent {
  struct map_ent *next;
  uint64_t hash;
  void *val;
  char key[]; /* NUL-terminated copy */
} map_ent;

struct sched_map {
  map_ent **b;
  size_t nb; /* power of two */
  size_t n;
};

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) {
    h ^= (unsigned char)*s++;
    h *= 1099511628211ULL;
  }
  return h;
}

int sched_map_new(sched_map **out) {
  sched_map *m = calloc(1, sizeof(*m));
  if (!m)
    return DB_ENOMEM;
  m->nb = 64;
  m->b = calloc(m->nb, sizeof(*m->b));
  if (!m->b) {
    free(m);
    return DB_ENOMEM;
  }
  *out = m;
  return 0;
}

void sched_map_free(sched_map *m) {
  size_t i;
  if (!m)
    return;
  for (i = 0; i < m->nb; i++) {
    map_ent *e = m->b[i], *n;
    for (; e; e = n) {
      n = e->next;
      free(e);
    }
  }
  free(m->b);
  free(m);
}

static map_ent **find(const sched_map *m, const char *key, uint64_t h) {
  map_ent **pp = &m->b[h & (m->nb - 1)];
  for (; *pp; pp = &(*pp)->next)
    if ((*pp)->hash == h && !strcmp((*pp)->key, key))
      return pp;
  return pp;
}

void *sched_map_get(const sched_map *m, const char *key) {
  uint64_t h = fnv1a(key);
  map_ent **pp = find(m, key, h);
  return *pp ? (*pp)->val : NULL;
}

static void grow(sched_map *m) {
  size_t nb = m->nb * 2, i;
  map_ent **b = calloc(nb, sizeof(*b));
  if (!b)
    return; /* keep the longer chains */
  for (i = 0; i < m->nb; i++) {
    map_ent *e = m->b[i], *n;
    for (; e; e = n) {
      n = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
    }
  }
  free(m->b);
  m->b = b;
  m->nb = nb;
}

int sched_map_put(sched_map *m, const char *key, void *val) {
  uint64_t h = fnv1a(key);
  map_ent **pp = find(m, key, h);
  size_t klen;

  if (*pp) {
    (*pp)->val = val;
    return 0;
  }
  klen = strlen(key);
  *pp = malloc(sizeof(map_ent) + klen + 1);
  if (!*pp)
    return DB_ENOMEM;
  (*pp)->next = NULL;
  (*pp)->hash = h;
  (*pp)->val = val;
  memcpy((*pp)->key, key, klen + 1);
  if (++m->n > m->nb)
    grow(m);
  return 0;
}

void *sched_map_del(sched_map *m, const char *key) {
  uint64_t h = fnv1a(key);
  map_ent **pp = find(m, key, h);
  map_ent *e = *pp;
  void *val;

  if (!e)
    return NULL;
  *pp = e->next;
  val = e->val;
  free(e);
  m->n--;
  return val;
}

size_t sched_map_size(const sched_map *m) {
  return m->n;
}

void sched_map_sweep(sched_map *m, int (*drop)(const char *, void *, void *),
                     void *ctx) {
  size_t i;
  for (i = 0; i < m->nb; i++) {
    map_ent **pp = &m->b[i];
    while (*pp) {
      map_ent *e = *pp;
      if (drop(e->key, e->val, ctx)) {
        *pp = e->next;
        free(e);
        m->n--;
      } else {
        pp = &e->next;
      }
    }
  }
}
