/* Persistent file-digest cache; see wrap_dcache.h for the format. */
#include "wrap_dcache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "db_err.h"
#include "wrap_util.h"

#define REC_LEN 150
#define COMPACT_BYTES (24u * 1024 * 1024)

typedef struct dc_entry {
  uint64_t dev, ino, size, mtime, ctime;
  char hash[REAPI_HASH_HEX_LEN + 1];
  int used;
} dc_entry;

struct wrap_dcache {
  char *path;      /* digests.v1, NULL for in-memory */
  char *lock_path; /* digests.lock */
  dc_entry *tab;
  size_t cap, count;
  off_t loaded; /* bytes of the file parsed so far */
  uint64_t hits, hashed;
};

/* The racy-timestamp window; CARGO_DISTBUILD_DCACHE_RACY_MS overrides it
 * (tests set 0). */
static uint64_t racy_ns(void) {
  const char *e = getenv("CARGO_DISTBUILD_DCACHE_RACY_MS");
  if (e != NULL && *e)
    return (uint64_t)strtoull(e, NULL, 10) * 1000000ull;
  return 2000000000ull;
}

static uint64_t ts_ns(const struct timespec *ts) {
  return (uint64_t)ts->tv_sec * 1000000000ull + (uint64_t)ts->tv_nsec;
}

static size_t slot_of(const wrap_dcache *dc, uint64_t dev, uint64_t ino) {
  uint64_t h = dev * 0x9E3779B97F4A7C15ull ^ ino * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  return (size_t)(h & (dc->cap - 1));
}

static int tab_grow(wrap_dcache *dc) {
  size_t ncap = dc->cap ? dc->cap * 2 : 1024;
  dc_entry *old = dc->tab;
  size_t ocap = dc->cap;
  dc_entry *nt = calloc(ncap, sizeof(*nt));
  if (nt == NULL)
    return DB_ENOMEM;
  dc->tab = nt;
  dc->cap = ncap;
  dc->count = 0;
  for (size_t i = 0; i < ocap; i++) {
    if (old[i].used) {
      size_t s = slot_of(dc, old[i].dev, old[i].ino);
      while (nt[s].used)
        s = (s + 1) & (ncap - 1);
      nt[s] = old[i];
      dc->count++;
    }
  }
  free(old);
  return 0;
}

static int tab_put(wrap_dcache *dc, const dc_entry *e) {
  size_t s;
  if ((dc->count + 1) * 2 > dc->cap) {
    int rv = tab_grow(dc);
    if (rv != 0)
      return rv;
  }
  s = slot_of(dc, e->dev, e->ino);
  while (dc->tab[s].used &&
         !(dc->tab[s].dev == e->dev && dc->tab[s].ino == e->ino))
    s = (s + 1) & (dc->cap - 1);
  if (!dc->tab[s].used)
    dc->count++;
  dc->tab[s] = *e;
  dc->tab[s].used = 1;
  return 0;
}

static const dc_entry *tab_get(const wrap_dcache *dc, uint64_t dev,
                               uint64_t ino) {
  size_t s;
  if (dc->cap == 0)
    return NULL;
  s = slot_of(dc, dev, ino);
  while (dc->tab[s].used) {
    if (dc->tab[s].dev == dev && dc->tab[s].ino == ino)
      return &dc->tab[s];
    s = (s + 1) & (dc->cap - 1);
  }
  return NULL;
}

static int parse_hex16(const char *p, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (uint64_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (uint64_t)(c - 'a' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

static int parse_rec(const char *r, dc_entry *e) {
  uint64_t *f[5] = {&e->dev, &e->ino, &e->size, &e->mtime, &e->ctime};
  for (int i = 0; i < 5; i++) {
    if (parse_hex16(r + i * 17, f[i]) != 0 || r[i * 17 + 16] != ' ')
      return -1;
  }
  memcpy(e->hash, r + 85, REAPI_HASH_HEX_LEN);
  e->hash[REAPI_HASH_HEX_LEN] = '\0';
  for (int i = 0; i < REAPI_HASH_HEX_LEN; i++) {
    char c = e->hash[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return -1;
  }
  return r[REC_LEN - 1] == '\n' ? 0 : -1;
}

static void fmt_rec(const dc_entry *e, char *r) {
  snprintf(r, REC_LEN + 1,
           "%016" PRIx64 " %016" PRIx64 " %016" PRIx64 " %016" PRIx64
           " %016" PRIx64 " %s\n",
           e->dev, e->ino, e->size, e->mtime, e->ctime, e->hash);
}

int wrap_dcache_refresh(wrap_dcache *dc) {
  int fd, rv = 0;
  struct stat st;
  char *buf = NULL;
  size_t len, off = 0;
  if (dc->path == NULL)
    return 0;
  fd = open(dc->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : DB_EIO;
  if (fstat(fd, &st) != 0) {
    rv = DB_EIO;
    goto out;
  }
  if (st.st_size < dc->loaded)
    dc->loaded = 0; /* compacted by someone: reload from the start */
  if (st.st_size == dc->loaded)
    goto out;
  len = (size_t)(st.st_size - dc->loaded);
  buf = malloc(len);
  if (buf == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  {
    ssize_t r = pread(fd, buf, len, dc->loaded);
    if (r < 0) {
      rv = DB_EIO;
      goto out;
    }
    len = (size_t)r;
  }
  while (off + REC_LEN <= len) {
    dc_entry e;
    if (parse_rec(buf + off, &e) == 0) {
      rv = tab_put(dc, &e);
      if (rv != 0)
        goto out;
      off += REC_LEN;
    } else {
      /* Resynchronise after a torn record: skip to the next newline. */
      char *nl = memchr(buf + off, '\n', len - off);
      if (nl == NULL)
        break;
      off = (size_t)(nl - buf) + 1;
    }
  }
  dc->loaded += (off_t)off;
out:
  free(buf);
  close(fd);
  return rv;
}

int wrap_dcache_open(const char *dir, wrap_dcache **out) {
  wrap_dcache *dc = calloc(1, sizeof(*dc));
  int rv = 0;
  *out = NULL;
  if (dc == NULL)
    return DB_ENOMEM;
  if (dir != NULL) {
    (void)wrap_mkdirs(dir);
    dc->path = wrap_path_join(dir, "digests.v1");
    dc->lock_path = wrap_path_join(dir, "digests.lock");
    if (dc->path == NULL || dc->lock_path == NULL) {
      rv = DB_ENOMEM;
      goto out;
    }
    rv = wrap_dcache_refresh(dc);
    if (rv == DB_ENOMEM)
      goto out;
    rv = 0;
  }
  *out = dc;
  dc = NULL;
out:
  wrap_dcache_free(dc);
  return rv;
}

void wrap_dcache_free(wrap_dcache *dc) {
  if (dc == NULL)
    return;
  free(dc->tab);
  free(dc->path);
  free(dc->lock_path);
  free(dc);
}

void wrap_dcache_counts(const wrap_dcache *dc, uint64_t *hits,
                        uint64_t *hashed) {
  if (hits)
    *hits = dc->hits;
  if (hashed)
    *hashed = dc->hashed;
}

int wrap_digest_file(const char *path, reapi_digest *out) {
  static char buf[1 << 18];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  reapi_hasher *h;
  int rv = 0;
  if (fd < 0)
    return errno == ENOENT ? DB_ENOTFOUND : DB_EIO;
  h = reapi_hasher_new();
  if (h == NULL) {
    close(fd);
    return DB_ENOMEM;
  }
  for (;;) {
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rv = DB_EIO;
      break;
    }
    if (r == 0)
      break;
    reapi_hasher_update(h, buf, (size_t)r);
  }
  close(fd);
  if (rv != 0) {
    reapi_hasher_free(h);
    return rv;
  }
  reapi_hasher_final(h, out);
  return 0;
}

/* Rewrite the file with only the live entries (one process at a time). */
static void compact(wrap_dcache *dc) {
  int lfd = open(dc->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  char *tmp = NULL, *buf = NULL;
  size_t n = 0;
  if (lfd < 0)
    return;
  if (flock(lfd, LOCK_EX | LOCK_NB) != 0)
    goto out;
  if (wrap_dcache_refresh(dc) != 0)
    goto out;
  buf = malloc(dc->count * REC_LEN + 1);
  tmp = wrap_fmt("%s.compact.%ld", dc->path, (long)getpid());
  if (buf == NULL || tmp == NULL)
    goto out;
  for (size_t i = 0; i < dc->cap; i++) {
    if (dc->tab[i].used) {
      fmt_rec(&dc->tab[i], buf + n);
      n += REC_LEN;
    }
  }
  if (wrap_write_atomic(dc->path, buf, n, 0644) == 0)
    dc->loaded = (off_t)n;
out:
  free(tmp);
  free(buf);
  close(lfd);
}

static void append(wrap_dcache *dc, const dc_entry *e) {
  char rec[REC_LEN + 1];
  int fd;
  struct stat st;
  if (dc->path == NULL)
    return;
  fd = open(dc->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return;
  fmt_rec(e, rec);
  if (write(fd, rec, REC_LEN) != REC_LEN) {
    /* A short write leaves a torn record that readers skip. */
  }
  if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > COMPACT_BYTES) {
    close(fd);
    compact(dc);
    return;
  }
  close(fd);
}

int wrap_dcache_digest(wrap_dcache *dc, const char *path,
                       const struct stat *stp, reapi_digest *out) {
  struct stat st;
  const dc_entry *hit;
  dc_entry e;
  struct timespec now;
  int rv;
  if (stp == NULL) {
    if (stat(path, &st) != 0)
      return errno == ENOENT ? DB_ENOTFOUND : DB_EIO;
    stp = &st;
  }
  memset(&e, 0, sizeof(e));
  e.dev = (uint64_t)stp->st_dev;
  e.ino = (uint64_t)stp->st_ino;
  e.size = (uint64_t)stp->st_size;
  e.mtime = ts_ns(&stp->st_mtim);
  e.ctime = ts_ns(&stp->st_ctim);
  hit = tab_get(dc, e.dev, e.ino);
  if (hit != NULL && hit->size == e.size && hit->mtime == e.mtime &&
      hit->ctime == e.ctime) {
    memcpy(out->hash, hit->hash, sizeof(out->hash));
    out->size = (int64_t)e.size;
    dc->hits++;
    return 0;
  }
  rv = wrap_digest_file(path, out);
  if (rv != 0)
    return rv;
  dc->hashed++;
  if ((uint64_t)out->size != e.size)
    return 0; /* changed while we read it: do not record */
  memcpy(e.hash, out->hash, sizeof(e.hash));
  clock_gettime(CLOCK_REALTIME, &now);
  if (tab_put(dc, &e) != 0)
    return 0;
  if (ts_ns(&now) > e.mtime + racy_ns() && ts_ns(&now) > e.ctime + racy_ns())
    append(dc, &e);
  return 0;
}
