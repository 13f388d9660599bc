/*
 * On-disk CAS: open/close, whole-blob put/get, publishing temp files,
 * zstd context pools and the action cache. The index lives in
 * cas_store_index.c, streaming I/O in cas_store_stream.c; the locking
 * rules are in cas_store_int.h.
 *
 * Durability (CAS_SYNC_EACH): every blob and AC entry is fdatasync'd (a
 * batch of blobs: syncfs'd together) before it is renamed into place, so
 * after a crash a visible file is always complete. The directory is not
 * fsync'd after the rename: a crash may lose a recently added blob, which
 * for a cache is a miss, never corruption. CAS_SYNC_BACKGROUND moves the
 * sync off the write path (cas_store_sync.c).
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
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---- */

int cas_err_errno(void) {
  /* EDQUOT and EFBIG are "full" for our purposes; db_err maps them. */
  return db_err_from_errno(errno);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static int hex_to_bin(const char *hex, uint8_t *out) {
  for (int i = 0; i < 32; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return DB_EINVAL;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

int cas_key_from_digest(const reapi_digest *d, cas_key *k) {
  if (!d || d->size < 0 || hex_to_bin(d->hash, k->hash) != 0)
    return DB_EINVAL;
  k->size = d->size;
  return 0;
}

int cas_is_empty_digest(const reapi_digest *d) {
  return reapi_digest_eq(d, &reapi_digest_empty);
}

void cas_key_hex(const cas_key *k, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[k->hash[i] >> 4];
    hex[2 * i + 1] = digits[k->hash[i] & 15];
  }
  hex[64] = '\0';
}

void cas_blob_path(const cas_key *k, int fmt, char *buf) {
  char hex[65];
  cas_key_hex(k, hex);
  snprintf(buf, CAS_PATH_MAX, "cas/%.2s/%s-%lld.%c", hex, hex,
           (long long)k->size, fmt == CAS_FMT_ZSTD ? 'z' : 'r');
}

/* Parse "HASH-SIZE.z" / "HASH-SIZE.r". */
int cas_parse_blob_name(const char *name, cas_key *k, int *fmt) {
  size_t len = strlen(name), i;
  int64_t size = 0;

  if (len < 64 + 4 || name[64] != '-' || name[len - 2] != '.' ||
      hex_to_bin(name, k->hash) != 0)
    return DB_EINVAL;
  if (name[len - 1] == 'z')
    *fmt = CAS_FMT_ZSTD;
  else if (name[len - 1] == 'r')
    *fmt = CAS_FMT_RAW;
  else
    return DB_EINVAL;
  for (i = 65; i < len - 2; i++) {
    if (name[i] < '0' || name[i] > '9' || size > (INT64_MAX - 9) / 10)
      return DB_EINVAL;
    size = size * 10 + (name[i] - '0');
  }
  k->size = size;
  return 0;
}

int cas_write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;

  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return cas_err_errno();
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int cas_tmp_create(cas_store *s, char *name, int *fd) {
  uint64_t seq = atomic_fetch_add(&s->tmp_seq, 1);

  snprintf(name, CAS_PATH_MAX, "tmp/%ld.%llu", (long)s->pid,
           (unsigned long long)seq);
  *fd = openat(s->rootfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (*fd < 0) {
    name[0] = '\0'; /* nothing to clean up */
    return cas_err_errno();
  }
  return 0;
}

static int64_t now_coarse(void) {
  struct timespec ts;
  /* Served from the vDSO: no system call on the has() fast path. */
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return ts.tv_sec;
}

/* ---- zstd context pools ----
 * Creating a CCtx allocates its tables; reusing one across blobs keeps
 * the small-blob path allocation-free. Parameters survive session
 * resets, so they are set once at creation. */

ZSTD_CCtx *cas_cctx_get(cas_store *s) {
  ZSTD_CCtx *c = NULL;

  pthread_mutex_lock(&s->pool_mu);
  if (s->ncpool > 0)
    c = s->cpool[--s->ncpool];
  pthread_mutex_unlock(&s->pool_mu);
  if (c) {
    ZSTD_CCtx_reset(c, ZSTD_reset_session_only);
    return c;
  }
  c = ZSTD_createCCtx();
  if (!c)
    return NULL;
  /* The checksum lets any client decompressing our stored frame detect
   * on-disk corruption that we serve without decoding (as_zstd). */
  if (ZSTD_isError(
          ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, s->level)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1))) {
    ZSTD_freeCCtx(c);
    return NULL;
  }
  return c;
}

void cas_cctx_put(cas_store *s, ZSTD_CCtx *c) {
  if (!c)
    return;
  pthread_mutex_lock(&s->pool_mu);
  if (s->ncpool < CAS_POOL_MAX) {
    s->cpool[s->ncpool++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&s->pool_mu);
  ZSTD_freeCCtx(c);
}

ZSTD_DCtx *cas_dctx_get(cas_store *s) {
  ZSTD_DCtx *d = NULL;

  pthread_mutex_lock(&s->pool_mu);
  if (s->ndpool > 0)
    d = s->dpool[--s->ndpool];
  pthread_mutex_unlock(&s->pool_mu);
  if (d) {
    ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
    return d;
  }
  return ZSTD_createDCtx();
}

void cas_dctx_put(cas_store *s, ZSTD_DCtx *d) {
  if (!d)
    return;
  pthread_mutex_lock(&s->pool_mu);
  if (s->ndpool < CAS_POOL_MAX) {
    s->dpool[s->ndpool++] = d;
    d = NULL;
  }
  pthread_mutex_unlock(&s->pool_mu);
  ZSTD_freeDCtx(d);
}

int cas_unzstd_file(cas_store *s, int in, int out) {
  int rv = 0;
  size_t ret = 1;
  ZSTD_DCtx *dctx = cas_dctx_get(s);
  uint8_t *ibuf = malloc(CAS_IO_CHUNK), *obuf = malloc(CAS_IO_CHUNK);

  if (!dctx || !ibuf || !obuf) {
    rv = DB_ENOMEM;
    goto out;
  }
  if (lseek(in, 0, SEEK_SET) < 0) {
    rv = cas_err_errno();
    goto out;
  }
  for (;;) {
    ssize_t r = read(in, ibuf, CAS_IO_CHUNK);
    ZSTD_inBuffer ib = {ibuf, 0, 0};
    if (r < 0) {
      rv = cas_err_errno();
      goto out;
    }
    if (r == 0)
      break;
    ib.size = (size_t)r;
    while (ib.pos < ib.size) {
      ZSTD_outBuffer ob = {obuf, CAS_IO_CHUNK, 0};
      ret = ZSTD_decompressStream(dctx, &ob, &ib);
      if (ZSTD_isError(ret)) {
        rv = DB_ECOMPRESS;
        goto out;
      }
      rv = cas_write_all(out, obuf, ob.pos);
      if (rv != 0)
        goto out;
    }
  }
  /* Drain output the decoder still holds once input is exhausted. */
  while (ret != 0) {
    ZSTD_inBuffer ib = {NULL, 0, 0};
    ZSTD_outBuffer ob = {obuf, CAS_IO_CHUNK, 0};
    ret = ZSTD_decompressStream(dctx, &ob, &ib);
    if (ZSTD_isError(ret) || ob.pos == 0) {
      rv = DB_ECOMPRESS;
      goto out;
    }
    rv = cas_write_all(out, obuf, ob.pos);
    if (rv != 0)
      goto out;
  }
out:
  cas_dctx_put(s, dctx);
  free(ibuf);
  free(obuf);
  return rv;
}

/* ---- index operations that touch the disk ---- */

int cas_lookup(cas_store *s, const cas_key *k, int *fmt, uint64_t *stored,
               uint64_t *gen) {
  cas_entry *e;
  int64_t now = now_coarse(), touch = 0;
  char path[CAS_PATH_MAX];

  pthread_mutex_lock(&s->mu);
  e = cas_idx_find(&s->idx, k);
  if (e) {
    cas_idx_lru_front(&s->idx, e);
    if (fmt)
      *fmt = e->fmt;
    if (stored)
      *stored = e->stored;
    if (gen)
      *gen = e->gen;
    /* Persist recency now and then so the LRU order survives a restart,
     * without a utimensat() on every hit. */
    if (now - e->touched >= CAS_TOUCH_SECS) {
      e->touched = now;
      touch = 1;
      cas_blob_path(k, e->fmt, path);
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (touch)
    (void)utimensat(s->rootfd, path, NULL, 0); /* evicted meanwhile: fine */
  return e ? 0 : DB_ENOTFOUND;
}

static void unlink_victims(cas_store *s, cas_entry *victims) {
  char path[CAS_PATH_MAX];

  while (victims) {
    cas_entry *next = victims->next;
    cas_blob_path(&victims->key, victims->fmt, path);
    if (unlinkat(s->rootfd, path, 0) != 0 && errno != ENOENT)
      DB_WARN("cas", "evict %s: %s", path, strerror(errno));
    free(victims);
    victims = next;
  }
}

/* cas_publish() once the temp file's data is durable. */
int cas_publish_synced(cas_store *s, const char *tmpname, const cas_key *k,
                       int fmt, uint64_t stored) {
  int rv = 0, ns_locked = 0;
  cas_entry *e = NULL, *victims = NULL;
  char path[CAS_PATH_MAX];

  if (s->max_bytes && stored > s->max_bytes) {
    rv = DB_ENOSPC;
    goto out;
  }
  e = calloc(1, sizeof(*e)); /* before the rename: no OOM after it */
  if (!e) {
    rv = DB_ENOMEM;
    goto out;
  }
  e->key = *k;
  e->fmt = fmt;
  e->stored = stored;
  e->touched = now_coarse();
  cas_blob_path(k, fmt, path);

  pthread_mutex_lock(&s->ns_mu);
  ns_locked = 1;
  pthread_mutex_lock(&s->mu);
  if (cas_idx_find(&s->idx, k)) {
    /* A concurrent writer won: its file is identical content. */
    pthread_mutex_unlock(&s->mu);
    goto out;
  }
  pthread_mutex_unlock(&s->mu);
  if (renameat(s->rootfd, tmpname, s->rootfd, path) != 0) {
    rv = cas_err_errno();
    goto out;
  }
  tmpname = NULL; /* consumed */
  pthread_mutex_lock(&s->mu);
  e->gen = ++s->next_gen;
  cas_idx_insert(&s->idx, e);
  s->stored_bytes += stored;
  s->logical_bytes += (uint64_t)k->size;
  victims = cas_idx_evict_locked(s, e);
  e = NULL;
  pthread_mutex_unlock(&s->mu);
  /* Still under ns_mu: no writer can re-create a victim's name before we
   * unlink it. Open readers keep their fd. */
  unlink_victims(s, victims);
  if (s->sync_mode == CAS_SYNC_BACKGROUND)
    (void)cas_sync_note_blob(s, k); /* sync_mu is a leaf: fine here */
out:
  if (ns_locked)
    pthread_mutex_unlock(&s->ns_mu);
  if (tmpname)
    unlinkat(s->rootfd, tmpname, 0);
  free(e);
  return rv;
}

int cas_publish(cas_store *s, const char *tmpname, int fd, const cas_key *k,
                int fmt, uint64_t stored) {
  if ((s->max_bytes && stored > s->max_bytes) ||
      s->sync_mode == CAS_SYNC_BACKGROUND)
    return cas_publish_synced(s, tmpname, k, fmt, stored);
  /* Data must reach the disk before the name does. */
  if (fdatasync(fd) != 0) {
    int rv = cas_err_errno();
    unlinkat(s->rootfd, tmpname, 0);
    return rv;
  }
  return cas_publish_synced(s, tmpname, k, fmt, stored);
}

void cas_drop_corrupt(cas_store *s, const cas_key *k, uint64_t gen) {
  cas_entry *e;
  char path[CAS_PATH_MAX];

  pthread_mutex_lock(&s->ns_mu);
  pthread_mutex_lock(&s->mu);
  e = cas_idx_find(&s->idx, k);
  /* gen differs: the blob was evicted and written again since the reader
   * opened it; the new file is not the corrupt one. */
  if (e && e->gen == gen) {
    cas_idx_remove(&s->idx, e);
    s->stored_bytes -= e->stored;
    s->logical_bytes -= (uint64_t)e->key.size;
  } else {
    e = NULL;
  }
  pthread_mutex_unlock(&s->mu);
  if (e) {
    cas_blob_path(k, e->fmt, path);
    DB_ERROR("cas", "corrupt blob %s dropped", path);
    unlinkat(s->rootfd, path, 0);
    free(e);
  }
  pthread_mutex_unlock(&s->ns_mu);
}

void cas_drop_key(cas_store *s, const cas_key *k) {
  cas_entry *e;
  uint64_t gen = 0;

  pthread_mutex_lock(&s->mu);
  e = cas_idx_find(&s->idx, k);
  if (e)
    gen = e->gen;
  pthread_mutex_unlock(&s->mu);
  if (e)
    cas_drop_corrupt(s, k, gen);
}

/* ---- open / close ---- */

static int mkdir_p(const char *path) {
  char buf[4096];
  size_t len = strlen(path);

  if (len == 0 || len >= sizeof(buf))
    return DB_EINVAL;
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return cas_err_errno();
    buf[i] = path[i];
  }
  return 0;
}

static int mkdir_at(int dfd, const char *name) {
  if (mkdirat(dfd, name, 0755) != 0 && errno != EEXIST)
    return cas_err_errno();
  return 0;
}

/* Everything in tmp/ belongs to a writer of a previous run (we hold the
 * root flock, so no live process owns any of it). */
static int clean_tmp(cas_store *s) {
  int rv = 0, dfd;
  DIR *dir = NULL;
  struct dirent *de;

  dfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || !(dir = fdopendir(dfd))) {
    rv = cas_err_errno();
    if (dfd >= 0)
      close(dfd);
    goto out;
  }
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (unlinkat(dirfd(dir), de->d_name, 0) != 0)
      DB_WARN("cas", "cannot remove tmp/%s: %s", de->d_name, strerror(errno));
  }
out:
  if (dir)
    closedir(dir);
  return rv;
}

/* Create cas/00..ff and ac/00..ff once, so the write path never mkdirs. */
static int make_layout(cas_store *s) {
  int rv;
  char name[16];

  if ((rv = mkdir_at(s->rootfd, "cas")) != 0 ||
      (rv = mkdir_at(s->rootfd, "ac")) != 0 ||
      (rv = mkdir_at(s->rootfd, "tmp")) != 0)
    return rv;
  for (int i = 0; i < 256; i++) {
    snprintf(name, sizeof(name), "cas/%02x", i);
    if ((rv = mkdir_at(s->rootfd, name)) != 0)
      return rv;
    snprintf(name, sizeof(name), "ac/%02x", i);
    if ((rv = mkdir_at(s->rootfd, name)) != 0)
      return rv;
  }
  return 0;
}

int cas_store_open(const cas_store_opts *opts, cas_store **out) {
  int rv;
  cas_store *s = NULL;
  cas_entry *victims;

  *out = NULL;
  if (!opts || !opts->root || opts->zstd_level < 0 ||
      opts->zstd_level > ZSTD_maxCLevel() ||
      (opts->sync != CAS_SYNC_EACH && opts->sync != CAS_SYNC_BACKGROUND) ||
      opts->sync_delay_ms < 0 || opts->sync_delay_ms > 10000)
    return DB_EINVAL;
  s = calloc(1, sizeof(*s));
  if (!s)
    return DB_ENOMEM;
  s->rootfd = -1;
  s->syncfd = -1;
  s->sync_mode = opts->sync;
  s->sync_delay_ms =
      opts->sync_delay_ms ? opts->sync_delay_ms : CAS_SYNC_DELAY_MS_DEFAULT;
  s->pid = getpid(); /* temp names; getpid() is a real syscall */
  s->max_bytes = opts->max_bytes;
  s->level = opts->zstd_level ? opts->zstd_level : 3;
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->ns_mu, NULL);
  pthread_mutex_init(&s->pool_mu, NULL);
  atomic_init(&s->tmp_seq, 0);
  if ((rv = cas_idx_init(&s->idx)) != 0 || (rv = mkdir_p(opts->root)) != 0)
    goto fail;
  s->rootfd = open(opts->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->rootfd < 0) {
    rv = cas_err_errno();
    goto fail;
  }
  /* One process per root: clean_tmp() would delete a live writer's
   * files, and two indexes would disagree about the budget. */
  if (flock(s->rootfd, LOCK_EX | LOCK_NB) != 0) {
    rv = errno == EWOULDBLOCK ? DB_EEXIST : cas_err_errno();
    DB_ERROR("cas", "%s is in use by another process", opts->root);
    goto fail;
  }
  if ((rv = make_layout(s)) != 0 || (rv = clean_tmp(s)) != 0 ||
      (rv = cas_idx_load(s)) != 0)
    goto fail;
  /* The budget may have shrunk since the last run. */
  victims = cas_idx_evict_locked(s, NULL);
  unlink_victims(s, victims);
  if ((rv = cas_sync_start(s)) != 0)
    goto fail;
  DB_INFO("cas", "opened %s: %zu blobs, %llu bytes stored", opts->root,
          s->idx.count, (unsigned long long)s->stored_bytes);
  *out = s;
  return 0;
fail:
  cas_store_close(s);
  return rv;
}

void cas_store_close(cas_store *s) {
  if (!s)
    return;
  cas_sync_stop(s); /* the last round still needs the index */
  cas_idx_free(&s->idx);
  for (int i = 0; i < s->ncpool; i++)
    ZSTD_freeCCtx(s->cpool[i]);
  for (int i = 0; i < s->ndpool; i++)
    ZSTD_freeDCtx(s->dpool[i]);
  if (s->rootfd >= 0)
    close(s->rootfd); /* releases the flock */
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->ns_mu);
  pthread_mutex_destroy(&s->pool_mu);
  free(s);
}

void cas_store_get_stats(cas_store *s, cas_store_stats *out) {
  pthread_mutex_lock(&s->mu);
  out->blobs = s->idx.count;
  out->stored_bytes = s->stored_bytes;
  out->logical_bytes = s->logical_bytes;
  out->evictions = s->evictions;
  pthread_mutex_unlock(&s->mu);
  out->syncs = out->sync_failures = 0;
  if (s->sync_inited)
    cas_sync_stats(s, &out->syncs, &out->sync_failures);
}

/* ---- whole-blob API ---- */

int cas_store_has(cas_store *s, const reapi_digest *d) {
  cas_key k;

  if (cas_key_from_digest(d, &k) != 0)
    return 0;
  if (k.size == 0)
    return cas_is_empty_digest(d);
  return cas_lookup(s, &k, NULL, NULL, NULL) == 0;
}

int cas_store_get(cas_store *s, const reapi_digest *d, uint8_t **data,
                  size_t *len) {
  int rv;
  cas_reader *r = NULL;
  uint8_t *buf = NULL;
  size_t got = 0, n;

  *data = NULL;
  *len = 0;
  if ((rv = cas_reader_open(s, d, 0, 0, &r)) != 0)
    goto out;
  if (d->size > 0 && !(buf = malloc((size_t)d->size))) {
    rv = DB_ENOMEM;
    goto out;
  }
  /* The reader verifies size and digest when it reaches the end, so keep
   * reading (with no room left) until it reports the end. */
  for (;;) {
    uint8_t none;
    rv = cas_reader_read(r, buf ? buf + got : &none, (size_t)d->size - got, &n);
    if (rv != 0 || n == 0)
      break;
    got += n;
  }
  if (rv != 0)
    goto out;
  *data = buf;
  *len = got;
  buf = NULL;
out:
  cas_reader_close(r);
  free(buf);
  return rv;
}
