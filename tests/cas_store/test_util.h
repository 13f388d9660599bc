/*
 * Helpers shared by the cas_store tests and bench: scratch directories,
 * deterministic data, counting files.
 */
#ifndef CAS_STORE_TEST_UTIL_H
#define CAS_STORE_TEST_UTIL_H

#include <dirent.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas_store.h"

static int tu_rm_cb(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static inline void tu_rm_rf(const char *path) {
  nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* mkdtemp under $TMPDIR (or /tmp); buf receives the path. */
static inline void tu_tmpdir(char *buf, size_t cap) {
  const char *base = getenv("TMPDIR");
  snprintf(buf, cap, "%s/cas_store_test.XXXXXX", base ? base : "/tmp");
  if (!mkdtemp(buf)) {
    perror("mkdtemp");
    abort();
  }
}

static inline uint64_t tu_rand(uint64_t *st) {
  /* xorshift64*: deterministic and fast enough for megabytes. */
  uint64_t x = *st;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *st = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Incompressible bytes. */
static inline void tu_fill_random(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t st = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(tu_rand(&st) >> 56);
}

/* Compressible bytes (~3-5x with zstd -3): words from a small dictionary,
 * like source text or symbol tables. */
static inline void tu_fill_text(uint8_t *p, size_t n, uint64_t seed) {
  static const char *words[] = {
      "fn ",  "let ",    "mut ",  "impl ",   "struct ", "self",
      "::",   "core",    "alloc", "Vec<u8>", "Option",  "Some(",
      "None", "match ",  " => ",  "{\n",     "}\n",     "return ",
      "pub ", "crate::", "std::", "u64",     "usize",   "&str"};
  uint64_t st = seed * 2654435761u + 7;
  size_t i = 0;
  while (i < n) {
    uint64_t r = tu_rand(&st);
    const char *w = words[r % (sizeof(words) / sizeof(words[0]))];
    size_t wl = strlen(w);
    if ((r >> 32) % 8 == 0) {
      /* some numbers so that it is not trivially repetitive */
      char num[24];
      wl = (size_t)snprintf(num, sizeof(num), "%u ", (unsigned)(r >> 40));
      for (size_t j = 0; j < wl && i < n; j++)
        p[i++] = (uint8_t)num[j];
      continue;
    }
    for (size_t j = 0; j < wl && i < n; j++)
      p[i++] = (uint8_t)w[j];
  }
}

/* Count regular files under root/sub (recursively, one level of shards). */
static inline int tu_count_files(const char *root, const char *sub,
                                 const char *suffix) {
  char path[4096];
  int count = 0;
  DIR *d, *d2;
  struct dirent *de, *de2;

  if (snprintf(path, sizeof(path), "%s/%s", root, sub) >= (int)sizeof(path))
    return -1;
  d = opendir(path);
  if (!d)
    return 0;
  while ((de = readdir(d)) != NULL) {
    char p2[4096];
    struct stat st;
    if (de->d_name[0] == '.')
      continue;
    if (snprintf(p2, sizeof(p2), "%s/%s", path, de->d_name) >=
            (int)sizeof(p2) ||
        stat(p2, &st) != 0)
      continue;
    if (S_ISREG(st.st_mode)) {
      size_t l = strlen(de->d_name), sl = suffix ? strlen(suffix) : 0;
      if (!suffix || (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0))
        count++;
      continue;
    }
    d2 = opendir(p2);
    if (!d2)
      continue;
    while ((de2 = readdir(d2)) != NULL) {
      size_t l = strlen(de2->d_name), sl = suffix ? strlen(suffix) : 0;
      if (de2->d_name[0] == '.')
        continue;
      if (!suffix || (l >= sl && strcmp(de2->d_name + l - sl, suffix) == 0))
        count++;
    }
    closedir(d2);
  }
  closedir(d);
  return count;
}

/* Path of a blob file with the given suffix ('z' or 'r'). */
static inline void tu_blob_path(const char *root, const reapi_digest *d,
                                char fmt, char *buf, size_t cap) {
  if (snprintf(buf, cap, "%s/cas/%.2s/%s-%lld.%c", root, d->hash, d->hash,
               (long long)d->size, fmt) >= (int)cap)
    abort();
}

static inline int tu_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

#endif
