/*
 * Whole-blob writes: cas_store_put and cas_store_put_batch (one syncfs for
 * a whole batch). Publishing and the index are in cas_store.c and
 * cas_store_index.c.
 */
#include "cas_store_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Compress data into fd as one frame. Sets *stored to the frame size.
 * cctx: a context the caller holds, or NULL to use one from the pool. */
static int compress_to_fd(cas_store *s, ZSTD_CCtx *held, int fd,
                          const void *data, size_t len, uint64_t *stored) {
  int rv = 0;
  size_t ret, cap = ZSTD_compressBound(len);
  ZSTD_CCtx *cctx = held ? held : cas_cctx_get(s);
  ZSTD_inBuffer in = {data, len, 0};
  uint8_t *buf;

  /* Bounded buffer: a 64 MiB put does not need a second 64 MiB. */
  cap = cap < CAS_IO_CHUNK ? cap : CAS_IO_CHUNK;
  buf = malloc(cap);
  *stored = 0;
  if (!cctx || !buf) {
    rv = DB_ENOMEM;
    goto out;
  }
  ZSTD_CCtx_reset(cctx, ZSTD_reset_session_only);
  ZSTD_CCtx_setPledgedSrcSize(cctx, len);
  do {
    ZSTD_outBuffer ob = {buf, cap, 0};
    ret = ZSTD_compressStream2(cctx, &ob, &in, ZSTD_e_end);
    if (ZSTD_isError(ret)) {
      rv = DB_ECOMPRESS;
      goto out;
    }
    if ((rv = cas_write_all(fd, buf, ob.pos)) != 0)
      goto out;
    *stored += ob.pos;
  } while (ret != 0);
out:
  if (!held)
    cas_cctx_put(s, cctx);
  free(buf);
  return rv;
}

int cas_store_put(cas_store *s, const reapi_digest *d, const void *data,
                  size_t len) {
  int rv, fd = -1, fmt = CAS_FMT_RAW;
  uint64_t stored = len;
  cas_key k;
  reapi_digest got;
  char tmp[CAS_PATH_MAX];

  tmp[0] = '\0';
  if ((rv = cas_key_from_digest(d, &k)) != 0)
    return rv;
  if ((uint64_t)d->size != len)
    return DB_EDIGEST;
  reapi_digest_of(data, len, &got);
  if (!reapi_digest_eq(&got, d))
    return DB_EDIGEST;
  if (len == 0 || cas_lookup(s, &k, NULL, NULL, NULL) == 0)
    return 0; /* verified above, so the stored copy is the same bytes */
  if ((rv = cas_tmp_create(s, tmp, &fd)) != 0)
    goto out;
  if (len >= CAS_TINY_BLOB) {
    if ((rv = compress_to_fd(s, NULL, fd, data, len, &stored)) != 0)
      goto out;
    if (CAS_KEEP_ZSTD(stored, len)) {
      fmt = CAS_FMT_ZSTD;
    } else if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
      rv = cas_err_errno();
      goto out;
    }
  }
  if (fmt == CAS_FMT_RAW) {
    stored = len;
    if ((rv = cas_write_all(fd, data, len)) != 0)
      goto out;
  }
  rv = cas_publish(s, tmp, fd, &k, fmt, stored);
  tmp[0] = '\0'; /* publish consumed it */
out:
  if (fd >= 0)
    close(fd);
  if (tmp[0])
    unlinkat(s->rootfd, tmp, 0);
  return rv;
}

/* ---- batch put ----
 * Per blob the work is the same as cas_store_put(); what changes is the
 * order: verify and compress everything, write every temp file, make them
 * all durable at once, then rename. The single fdatasync per blob (a
 * journal commit and a disk cache flush each, ~0.4 ms) becomes one syncfs
 * per batch. syncfs flushes the whole filesystem, dirty data of others
 * included; for a few blobs the per-file fdatasync is cheaper. */

typedef struct batch_item {
  cas_key k;
  size_t i; /* index into the caller's arrays */
  int fmt;
  uint64_t stored;
  char tmp[CAS_PATH_MAX]; /* "" once published or removed */
} batch_item;

static int batch_item_cmp(const void *a, const void *b) {
  const batch_item *x = a, *y = b;
  int c = memcmp(x->k.hash, y->k.hash, sizeof(x->k.hash));

  if (c != 0)
    return c;
  if (x->k.size != y->k.size)
    return x->k.size < y->k.size ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i; /* first occurrence first */
}

/* Write one verified blob to a new temp file, compressed when it pays.
 * zbuf/zcap: scratch for in-memory compression, grown as needed. */
static int batch_write_one(cas_store *s, ZSTD_CCtx *cctx, batch_item *it,
                           const void *data, const void *frame, size_t flen,
                           uint8_t **zbuf, size_t *zcap, int per_file_sync) {
  int rv = 0, fd = -1, have = 0;
  size_t len = (size_t)it->k.size;
  const void *out = data;

  it->fmt = CAS_FMT_RAW;
  it->stored = len;
  if (frame && len >= CAS_TINY_BLOB && CAS_KEEP_ZSTD(flen, len)) {
    /* The caller's frame of these (verified) bytes: store it as is. */
    it->fmt = CAS_FMT_ZSTD;
    it->stored = flen;
    out = frame;
    have = 1;
  } else if (len >= CAS_TINY_BLOB && len <= CAS_BATCH_INMEM_MAX) {
    size_t bound = ZSTD_compressBound(len), z;
    if (bound > *zcap) {
      uint8_t *nb = realloc(*zbuf, bound);
      if (!nb)
        return DB_ENOMEM;
      *zbuf = nb;
      *zcap = bound;
    }
    z = ZSTD_compress2(cctx, *zbuf, *zcap, data, len);
    if (ZSTD_isError(z))
      return DB_ECOMPRESS;
    if (CAS_KEEP_ZSTD(z, len)) {
      it->fmt = CAS_FMT_ZSTD;
      it->stored = z;
      out = *zbuf;
    }
  }
  /* Checked before writing: a blob over the budget costs no I/O. */
  if (s->max_bytes && it->stored > s->max_bytes)
    return DB_ENOSPC;
  if ((rv = cas_tmp_create(s, it->tmp, &fd)) != 0)
    return rv;
  if (!have && len > CAS_BATCH_INMEM_MAX) {
    /* Large blob: stream it through the bounded compressor. */
    rv = compress_to_fd(s, cctx, fd, data, len, &it->stored);
    if (rv == 0 && CAS_KEEP_ZSTD(it->stored, len)) {
      it->fmt = CAS_FMT_ZSTD;
      out = NULL;
    } else if (rv == 0) {
      it->stored = len;
      if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        rv = cas_err_errno();
    }
  }
  if (rv == 0 && out)
    rv = cas_write_all(fd, out, (size_t)it->stored);
  if (rv == 0 && per_file_sync && fdatasync(fd) != 0)
    rv = cas_err_errno();
  /* Closing before the sync is fine: syncfs writes back every dirty inode
   * of the filesystem, open or not, and keeps the fd count bounded. */
  if (close(fd) != 0 && rv == 0)
    rv = cas_err_errno(); /* e.g. NFS reporting a write error late */
  if (rv != 0) {
    unlinkat(s->rootfd, it->tmp, 0);
    it->tmp[0] = '\0';
  }
  return rv;
}

int cas_store_put_batch(cas_store *s, size_t n, const reapi_digest *digests,
                        const void *const *datas, const size_t *lens,
                        int *results) {
  return cas_store_put_batch_frames(s, n, digests, datas, lens, NULL, NULL,
                                    results);
}

int cas_store_put_batch_frames(cas_store *s, size_t n,
                               const reapi_digest *digests,
                               const void *const *datas, const size_t *lens,
                               const void *const *frames,
                               const size_t *frame_lens, int *results) {
  batch_item *items = NULL;
  size_t *first = NULL, np = 0, nu = 0, nw = 0, i, zcap = 0;
  uint8_t *zbuf = NULL;
  ZSTD_CCtx *cctx = NULL;
  int rv = 0, syncfd = -1, per_file_sync;

  if (n == 0)
    return 0;
  if (!s || !digests || !datas || !lens || !results) {
    if (results)
      for (i = 0; i < n; i++)
        results[i] = DB_EINVAL;
    return DB_EINVAL;
  }
  items = malloc(n * sizeof(*items));
  first = malloc(n * sizeof(*first));
  if (!items || !first) {
    rv = DB_ENOMEM;
    goto fail;
  }

  /* 1. Verify; set aside what is missing from the store. */
  for (i = 0; i < n; i++) {
    reapi_digest got;
    batch_item *it = &items[np];

    first[i] = i;
    results[i] = cas_key_from_digest(&digests[i], &it->k);
    if (results[i] != 0)
      continue;
    if ((uint64_t)digests[i].size != lens[i] || (lens[i] > 0 && !datas[i])) {
      results[i] = DB_EDIGEST;
      continue;
    }
    reapi_digest_of(datas[i], lens[i], &got);
    if (!reapi_digest_eq(&got, &digests[i])) {
      results[i] = DB_EDIGEST;
      continue;
    }
    if (lens[i] == 0 || cas_lookup(s, &it->k, NULL, NULL, NULL) == 0)
      continue; /* verified, so the stored copy is the same bytes */
    it->i = i;
    it->tmp[0] = '\0';
    np++;
  }

  /* 2. One write per distinct digest; repeats take the first's result. */
  if (np > 1)
    qsort(items, np, sizeof(*items), batch_item_cmp);
  for (i = 0; i < np; i++) {
    if (nu > 0 && items[nu - 1].k.size == items[i].k.size &&
        memcmp(items[nu - 1].k.hash, items[i].k.hash, 32) == 0) {
      first[items[i].i] = items[nu - 1].i;
      continue;
    }
    items[nu++] = items[i];
  }
  if (nu == 0)
    goto out;

  /* 3. Compress and write temp files. A failed blob (disk full, ...)
   * removes its own temp file and does not stop the others. */
  /* Background mode: the syncer makes them durable after the rename. */
  per_file_sync = nu <= CAS_BATCH_FSYNC_MAX && s->sync_mode == CAS_SYNC_EACH;
  if (!per_file_sync && s->sync_mode == CAS_SYNC_EACH) {
    /* syncfs reports a writeback error once per open file description
     * (errseq): a descriptor of our own, opened before our writes, sees
     * every error since, even one another batch's syncfs has reported. */
    syncfd = openat(s->rootfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (syncfd < 0) {
      rv = cas_err_errno();
      goto fail;
    }
  }
  if (!(cctx = cas_cctx_get(s))) {
    rv = DB_ENOMEM;
    goto fail;
  }
  for (i = 0; i < nu; i++) {
    batch_item *it = &items[i];
    const void *fr = frames && frame_lens ? frames[it->i] : NULL;
    results[it->i] = batch_write_one(s, cctx, it, datas[it->i], fr,
                                     fr ? frame_lens[it->i] : 0, &zbuf, &zcap,
                                     per_file_sync);
    if (results[it->i] == 0)
      nw++;
  }
  cas_cctx_put(s, cctx);
  cctx = NULL;

  /* 4. Data must reach the disk before the names do. */
  if (nw > 0 && syncfd >= 0 && syncfs(syncfd) != 0) {
    int err = cas_err_errno();
    DB_ERROR("cas", "syncfs: %s; %zu blobs of a batch not stored",
             strerror(errno), nw);
    for (i = 0; i < nu; i++) {
      if (!items[i].tmp[0])
        continue;
      unlinkat(s->rootfd, items[i].tmp, 0);
      items[i].tmp[0] = '\0';
      results[items[i].i] = err;
    }
  }

  /* 5. Rename into place and index. */
  for (i = 0; i < nu; i++) {
    batch_item *it = &items[i];
    if (!it->tmp[0])
      continue;
    results[it->i] =
        cas_publish_synced(s, it->tmp, &it->k, it->fmt, it->stored);
    it->tmp[0] = '\0';
  }
out:
  for (i = 0; i < n; i++)
    if (first[i] != i)
      results[i] = results[first[i]];
  goto done;
fail:
  /* Nothing renamed yet: drop any temp file and report rv for all. */
  for (i = 0; items && i < nu; i++)
    if (items[i].tmp[0])
      unlinkat(s->rootfd, items[i].tmp, 0);
  for (i = 0; i < n; i++)
    results[i] = rv;
done:
  if (syncfd >= 0)
    close(syncfd);
  cas_cctx_put(s, cctx);
  free(zbuf);
  free(items);
  free(first);
  return rv;
}
