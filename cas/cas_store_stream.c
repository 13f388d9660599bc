/*
 * Streaming writer and reader of the CAS (ByteStream Write / Read).
 *
 * Writer, raw input: bytes are hashed and compressed on the fly into a
 * temp file with a bounded buffer, so memory does not grow with the blob.
 * Writer, zstd input: the client's frame is decoded chunk by chunk only to
 * hash and count it, and the client's compressed bytes themselves are what
 * goes to disk: once the digest verifies, they are a valid frame of the
 * blob, so recompressing would only burn CPU. Either way, if the result is
 * not below 97% of the raw size, commit decodes the temp file into a raw
 * one, so the ".z only when it pays" rule holds for every path.
 *
 * Reader: raw files are read (and seeked) directly; zstd files are decoded
 * from the start and the bytes before the offset are discarded. Whenever
 * the reader sees every byte of the blob (offset 0, or any offset of a .z
 * file, which is decoded from the start anyway) it hashes them and checks
 * the digest at the end; on mismatch the blob is dropped and the last read
 * fails with DB_EDIGEST. Serving the stored frame (as_zstd on a .z) is not
 * verified here; our frames carry a zstd checksum for the client to check.
 */
#include "cas_store_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cas_writer {
  cas_store *s;
  reapi_digest d;
  cas_key k;
  int zin; /* input is zstd */
  int fd;
  char tmp[CAS_PATH_MAX];
  reapi_hasher *h;
  ZSTD_CCtx *cctx; /* raw input */
  ZSTD_DCtx *dctx; /* zstd input */
  uint8_t *buf;    /* compress output / decode scratch, CAS_IO_CHUNK */
  int64_t in_off;  /* input bytes accepted */
  int64_t logical; /* uncompressed bytes seen */
  uint64_t stored; /* bytes in the temp file */
  size_t zret;     /* last decode result; 0 = at a frame boundary */
  int err;         /* sticky: after a failure only abort is valid */
};

static void writer_free(cas_writer *w) {
  if (!w)
    return;
  if (w->fd >= 0)
    close(w->fd);
  if (w->tmp[0])
    unlinkat(w->s->rootfd, w->tmp, 0);
  reapi_hasher_free(w->h);
  cas_cctx_put(w->s, w->cctx);
  cas_dctx_put(w->s, w->dctx);
  free(w->buf);
  free(w);
}

int cas_writer_new(cas_store *s, const reapi_digest *d, int input_is_zstd,
                   cas_writer **out) {
  int rv;
  cas_writer *w;

  *out = NULL;
  w = calloc(1, sizeof(*w));
  if (!w)
    return DB_ENOMEM;
  w->s = s;
  w->fd = -1;
  w->zin = input_is_zstd != 0;
  w->zret = 1;
  if ((rv = cas_key_from_digest(d, &w->k)) != 0)
    goto fail;
  w->d = *d;
  w->h = reapi_hasher_new();
  w->buf = malloc(CAS_IO_CHUNK);
  if (w->zin)
    w->dctx = cas_dctx_get(s);
  else
    w->cctx = cas_cctx_get(s);
  if (!w->h || !w->buf || !(w->zin ? (void *)w->dctx : (void *)w->cctx)) {
    rv = DB_ENOMEM;
    goto fail;
  }
  if (w->cctx)
    ZSTD_CCtx_setPledgedSrcSize(w->cctx, (unsigned long long)d->size);
  if ((rv = cas_tmp_create(s, w->tmp, &w->fd)) != 0)
    goto fail;
  *out = w;
  return 0;
fail:
  writer_free(w);
  return rv;
}

static int write_raw(cas_writer *w, const void *data, size_t len) {
  ZSTD_inBuffer in = {data, len, 0};

  if ((uint64_t)len > (uint64_t)(w->d.size - w->logical))
    return DB_EDIGEST;
  reapi_hasher_update(w->h, data, len);
  w->logical += (int64_t)len;
  while (in.pos < in.size) {
    ZSTD_outBuffer ob = {w->buf, CAS_IO_CHUNK, 0};
    int rv;
    if (ZSTD_isError(ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_continue)))
      return DB_ECOMPRESS;
    if ((rv = cas_write_all(w->fd, w->buf, ob.pos)) != 0)
      return rv;
    w->stored += ob.pos;
  }
  return 0;
}

static int write_zstd(cas_writer *w, const void *data, size_t len) {
  ZSTD_inBuffer in = {data, len, 0};
  int full = 0, rv;

  /* Decode in bounded chunks; a frame that inflates beyond the expected
   * size fails at the first chunk past it, not after filling a disk.
   * A full output buffer may hide more output, unless the frame ended. */
  while (in.pos < in.size || (full && w->zret != 0)) {
    ZSTD_outBuffer ob = {w->buf, CAS_IO_CHUNK, 0};
    size_t ret = ZSTD_decompressStream(w->dctx, &ob, &in);
    if (ZSTD_isError(ret))
      return DB_ECOMPRESS;
    if ((uint64_t)ob.pos > (uint64_t)(w->d.size - w->logical))
      return DB_EDIGEST;
    reapi_hasher_update(w->h, w->buf, ob.pos);
    w->logical += (int64_t)ob.pos;
    w->zret = ret;
    full = ob.pos == ob.size;
  }
  if ((rv = cas_write_all(w->fd, data, len)) != 0)
    return rv;
  w->stored += len;
  return 0;
}

int cas_writer_write(cas_writer *w, const void *data, size_t len) {
  if (w->err)
    return w->err;
  if (len == 0)
    return 0;
  w->err = w->zin ? write_zstd(w, data, len) : write_raw(w, data, len);
  if (w->err == 0)
    w->in_off += (int64_t)len;
  return w->err;
}

int64_t cas_writer_offset(const cas_writer *w) {
  return w->in_off;
}

static int finish_raw_frame(cas_writer *w) {
  ZSTD_inBuffer in = {NULL, 0, 0};
  size_t ret;
  int rv;

  do {
    ZSTD_outBuffer ob = {w->buf, CAS_IO_CHUNK, 0};
    ret = ZSTD_compressStream2(w->cctx, &ob, &in, ZSTD_e_end);
    if (ZSTD_isError(ret))
      return DB_ECOMPRESS;
    if ((rv = cas_write_all(w->fd, w->buf, ob.pos)) != 0)
      return rv;
    w->stored += ob.pos;
  } while (ret != 0);
  return 0;
}

/* Replace the temp .z file by its decoded content. */
static int convert_to_raw(cas_writer *w) {
  int rv, fd2 = -1;
  char tmp2[CAS_PATH_MAX];

  if ((rv = cas_tmp_create(w->s, tmp2, &fd2)) != 0)
    goto out;
  if ((rv = cas_unzstd_file(w->s, w->fd, fd2)) != 0)
    goto out;
  close(w->fd);
  unlinkat(w->s->rootfd, w->tmp, 0);
  memcpy(w->tmp, tmp2, sizeof(tmp2));
  w->fd = fd2;
  tmp2[0] = '\0';
  fd2 = -1;
  w->stored = (uint64_t)w->d.size;
out:
  if (fd2 >= 0)
    close(fd2);
  if (tmp2[0])
    unlinkat(w->s->rootfd, tmp2, 0);
  return rv;
}

int cas_writer_commit(cas_writer *w) {
  int rv = w->err, fmt = CAS_FMT_ZSTD;
  reapi_digest got;
  reapi_hasher *h;

  if (rv != 0)
    goto out;
  if (w->logical != w->d.size) {
    rv = DB_EDIGEST;
    goto out;
  }
  if (w->zin && w->in_off > 0 && w->zret != 0) {
    rv = DB_ECOMPRESS; /* truncated frame */
    goto out;
  }
  if (!w->zin && (rv = finish_raw_frame(w)) != 0)
    goto out;
  h = w->h;
  w->h = NULL;
  reapi_hasher_final(h, &got);
  if (!reapi_digest_eq(&got, &w->d)) {
    rv = DB_EDIGEST;
    goto out;
  }
  if (w->d.size == 0)
    goto out; /* the empty blob is always present; nothing to store */
  if (!CAS_KEEP_ZSTD(w->stored, (uint64_t)w->d.size)) {
    if ((rv = convert_to_raw(w)) != 0)
      goto out;
    fmt = CAS_FMT_RAW;
  }
  rv = cas_publish(w->s, w->tmp, w->fd, &w->k, fmt, w->stored);
  w->tmp[0] = '\0'; /* publish consumed it */
out:
  writer_free(w);
  return rv;
}

void cas_writer_abort(cas_writer *w) {
  writer_free(w);
}

/* ---- reader ---- */

struct cas_reader {
  cas_store *s;
  reapi_digest d;
  cas_key k;
  uint64_t gen;
  int fd; /* -1 for the empty blob */
  int fmt, as_zstd;
  int64_t skip;     /* logical bytes still to discard (.z, plain) */
  int64_t produced; /* logical bytes read or decoded so far */
  reapi_hasher *h;  /* NULL when not every byte passes through */
  ZSTD_DCtx *dctx;
  ZSTD_CCtx *cctx;
  uint8_t *ibuf;
  size_t icap;
  ZSTD_inBuffer in;
  int file_eof;
  size_t zret;   /* last decode result; 0 = frame complete */
  int zended;    /* on-the-fly frame fully emitted */
  int done, err; /* sticky */
};

static int file_read(cas_reader *r, void *buf, size_t cap, size_t *n) {
  ssize_t got;

  do {
    got = read(r->fd, buf, cap);
  } while (got < 0 && errno == EINTR);
  if (got < 0)
    return errno == EIO ? DB_EIO : cas_err_errno();
  *n = (size_t)got;
  return 0;
}

static int refill(cas_reader *r) {
  size_t n = 0;
  int rv;

  if (r->file_eof || r->in.pos < r->in.size)
    return 0;
  if ((rv = file_read(r, r->ibuf, r->icap, &n)) != 0)
    return rv;
  r->in.src = r->ibuf;
  r->in.size = n;
  r->in.pos = 0;
  r->file_eof = n == 0;
  if (r->cctx && n > 0) {
    /* Compressing a raw file: hash the input once, as it is loaded. */
    reapi_hasher_update(r->h, r->ibuf, n);
    r->produced += (int64_t)n;
  }
  return 0;
}

/* End of the logical stream: check nothing follows and the digest. */
static int finish(cas_reader *r) {
  reapi_digest got;
  reapi_hasher *h = r->h;

  if (r->produced != r->d.size)
    return DB_EDIGEST;
  if (h) {
    r->h = NULL;
    reapi_hasher_final(h, &got);
    if (!reapi_digest_eq(&got, &r->d))
      return DB_EDIGEST;
  }
  r->done = 1;
  return 0;
}

static int read_raw(cas_reader *r, uint8_t *buf, size_t cap, size_t *n) {
  uint8_t extra;
  size_t want = (size_t)(r->d.size - r->produced), got = 0;
  int rv;

  if (want == 0) {
    /* All bytes delivered: the file must end here. */
    if (r->fd >= 0 && (rv = file_read(r, &extra, 1, &got)) != 0)
      return rv;
    return got ? DB_EDIGEST : finish(r);
  }
  if (cap == 0)
    return DB_EINVAL;
  if ((rv = file_read(r, buf, cap < want ? cap : want, &got)) != 0)
    return rv;
  if (got == 0)
    return DB_EDIGEST; /* truncated */
  if (r->h)
    reapi_hasher_update(r->h, buf, got);
  r->produced += (int64_t)got;
  *n = got;
  return 0;
}

static int read_unzstd(cas_reader *r, uint8_t *buf, size_t cap, size_t *n) {
  uint8_t scratch[64];
  int rv;

  for (;;) {
    size_t want = (size_t)(r->d.size - r->produced), ret;
    ZSTD_outBuffer ob = {buf, cap, 0};
    if (want == 0) {
      /* Decode into scratch: any byte there is one byte too many. */
      ob.dst = scratch;
      ob.size = sizeof(scratch);
    } else if (cap == 0) {
      return DB_EINVAL;
    } else if (r->skip > 0 && (uint64_t)r->skip < ob.size) {
      ob.size = (size_t)r->skip;
    }
    if ((rv = refill(r)) != 0)
      return rv;
    /* Input exhausted at a frame end: done. (Calling the decoder again
     * would start a new frame and return its header-size hint.) */
    if (r->in.pos == r->in.size && r->file_eof && r->zret == 0)
      return finish(r);
    ret = ZSTD_decompressStream(r->dctx, &ob, &r->in);
    if (ZSTD_isError(ret) || ob.pos > want)
      return DB_EDIGEST;
    r->zret = ret;
    if (ob.pos > 0) {
      reapi_hasher_update(r->h, ob.dst, ob.pos);
      r->produced += (int64_t)ob.pos;
      if (r->skip > 0) {
        r->skip -= (int64_t)ob.pos; /* skipping reuses the caller's buffer */
        continue;
      }
      *n = ob.pos;
      return 0;
    }
    if (r->in.pos == r->in.size && r->file_eof && r->zret != 0)
      return DB_EDIGEST; /* no progress, frame incomplete: truncated */
  }
}

static int read_stored_frame(cas_reader *r, uint8_t *buf, size_t cap,
                             size_t *n) {
  int rv;

  if (cap == 0)
    return DB_EINVAL;
  if ((rv = file_read(r, buf, cap, n)) != 0)
    return rv;
  if (*n == 0)
    r->done = 1;
  return 0;
}

static int read_zstd_on_the_fly(cas_reader *r, uint8_t *buf, size_t cap,
                                size_t *n) {
  int rv;

  if (cap == 0)
    return DB_EINVAL;
  while (!r->zended) {
    ZSTD_outBuffer ob = {buf, cap, 0};
    size_t ret;
    if ((rv = refill(r)) != 0)
      return rv;
    if (r->produced > r->d.size)
      return DB_EDIGEST; /* file longer than the blob */
    ret = ZSTD_compressStream2(r->cctx, &ob, &r->in,
                               r->file_eof ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(ret))
      return DB_ECOMPRESS;
    if (r->file_eof && ret == 0)
      r->zended = 1;
    if (ob.pos > 0) {
      *n = ob.pos;
      return 0;
    }
  }
  return finish(r);
}

int cas_reader_open(cas_store *s, const reapi_digest *d, int64_t offset,
                    int as_zstd, cas_reader **out) {
  int rv = 0, tries = 0, need_h;
  uint64_t stored = 0;
  cas_reader *r = NULL;
  char path[CAS_PATH_MAX];

  *out = NULL;
  r = calloc(1, sizeof(*r));
  if (!r)
    return DB_ENOMEM;
  r->s = s;
  r->fd = -1;
  r->zret = 1;
  r->as_zstd = as_zstd != 0;
  if ((rv = cas_key_from_digest(d, &r->k)) != 0)
    goto fail;
  r->d = *d;
  if (offset < 0 || offset > d->size || (as_zstd && offset != 0)) {
    rv = DB_EINVAL;
    goto fail;
  }
  if (d->size == 0) {
    if (!cas_is_empty_digest(d)) {
      rv = DB_ENOTFOUND;
      goto fail;
    }
    r->fmt = CAS_FMT_RAW;
    r->file_eof = 1;
  } else {
    /* Eviction and a re-put in another format can slip between lookup and
     * open; look up again rather than report a present blob missing. */
    do {
      if ((rv = cas_lookup(s, &r->k, &r->fmt, &stored, &r->gen)) != 0)
        goto fail;
      cas_blob_path(&r->k, r->fmt, path);
      r->fd = openat(s->rootfd, path, O_RDONLY | O_CLOEXEC);
    } while (r->fd < 0 && errno == ENOENT && ++tries < 3);
    if (r->fd < 0) {
      rv = cas_err_errno();
      goto fail;
    }
  }
  /* Hash whenever every byte of the blob passes through us. */
  need_h = !(r->fmt == CAS_FMT_ZSTD && r->as_zstd) &&
           (r->fmt == CAS_FMT_ZSTD || offset == 0);
  if (need_h)
    r->h = reapi_hasher_new();
  if (r->fmt == CAS_FMT_RAW && offset > 0 &&
      lseek(r->fd, offset, SEEK_SET) < 0) {
    rv = cas_err_errno();
    goto fail;
  }
  if (r->fmt == CAS_FMT_RAW)
    r->produced = offset;
  else
    r->skip = offset;
  if (r->fmt == CAS_FMT_ZSTD && !r->as_zstd) {
    r->dctx = cas_dctx_get(s);
    r->icap = stored < CAS_IO_CHUNK ? (size_t)stored : CAS_IO_CHUNK;
  } else if (r->fmt == CAS_FMT_RAW && r->as_zstd) {
    r->cctx = cas_cctx_get(s);
    if (r->cctx)
      ZSTD_CCtx_setPledgedSrcSize(r->cctx, (unsigned long long)d->size);
    r->icap = d->size < CAS_IO_CHUNK ? (size_t)d->size : CAS_IO_CHUNK;
  }
  if (r->icap == 0 && (r->dctx || r->cctx))
    r->icap = 1;
  if (r->icap && !(r->ibuf = malloc(r->icap))) {
    rv = DB_ENOMEM;
    goto fail;
  }
  if ((need_h && !r->h) ||
      (r->fmt == CAS_FMT_ZSTD && !r->as_zstd && !r->dctx) ||
      (r->fmt == CAS_FMT_RAW && r->as_zstd && !r->cctx)) {
    rv = DB_ENOMEM;
    goto fail;
  }
  *out = r;
  return 0;
fail:
  cas_reader_close(r);
  return rv;
}

int cas_reader_read(cas_reader *r, void *buf, size_t cap, size_t *n) {
  int rv;

  *n = 0;
  if (r->err)
    return r->err;
  if (r->done)
    return 0;
  if (r->fmt == CAS_FMT_RAW)
    rv = r->as_zstd ? read_zstd_on_the_fly(r, buf, cap, n)
                    : read_raw(r, buf, cap, n);
  else
    rv = r->as_zstd ? read_stored_frame(r, buf, cap, n)
                    : read_unzstd(r, buf, cap, n);
  if (rv == DB_EDIGEST) {
    /* Corruption on disk must not be served again. */
    cas_drop_corrupt(r->s, &r->k, r->gen);
  }
  if (rv != 0) {
    *n = 0;
    r->err = rv;
  }
  return rv;
}

void cas_reader_close(cas_reader *r) {
  if (!r)
    return;
  if (r->fd >= 0)
    close(r->fd);
  reapi_hasher_free(r->h);
  cas_dctx_put(r->s, r->dctx);
  cas_cctx_put(r->s, r->cctx);
  free(r->ibuf);
  free(r);
}
