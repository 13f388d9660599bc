/*
 * ByteStream transfers of single large blobs.
 *
 * Write: resource {instance/}uploads/{uuid}/compressed-blobs/zstd/{hash}/
 * {size} (or .../blobs/... without zstd). The produce callback reads the
 * source lazily (memory or file) and compresses it with
 * ZSTD_compressStream2 into CAS_CLIENT_CHUNK-sized messages, so at most
 * one chunk per stream is in memory. write_offset is 0 first, then the
 * number of (compressed) bytes sent so far; finish_write on the last.
 *
 * Read: resource {instance/}compressed-blobs/zstd/{hash}/{size} (or
 * blobs/...). Each ReadResponse is decompressed as it arrives, hashed, and
 * written to a temp file (renamed into place once verified) or to a
 * buffer of exactly the blob's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cas_client_int.h"
#include "db_err.h"
#include "db_log.h"

#define BS_IN_CHUNK (1u << 20)    /* bytes read from a file source at once */
#define BS_OUT_CHUNK (256u << 10) /* decompression staging for files */

/* ---- Write ---- */

typedef struct bs_write {
  cas_pump *p;
  const cas_blob_src *src;
  char *resource;
  int fd;
  int zstd;
  ZSTD_CCtx *cctx;
  ZSTD_inBuffer in;
  uint8_t *inbuf;
  uint8_t *chunk; /* payload of the next WriteRequest */
  uint64_t read;  /* source bytes consumed (read from the file) */
  int eof;        /* whole source is in `in` */
  int64_t offset; /* payload bytes sent */
  int finished;   /* finish_write sent */
  int acked;      /* WriteResponse received */
  uint64_t *wire, *raw;
  int err;
} bs_write;

static void bs_write_free(bs_write *w) {
  if (!w)
    return;
  if (w->fd >= 0)
    close(w->fd);
  ZSTD_freeCCtx(w->cctx);
  free(w->inbuf);
  free(w->chunk);
  free(w->resource);
  free(w);
}

/* Make sure w->in has unread input unless the source is exhausted. */
static int bs_refill(bs_write *w) {
  uint64_t size = (uint64_t)w->src->digest.size;
  ssize_t r;

  if (w->eof || w->in.pos < w->in.size)
    return 0;
  if (w->src->data) {
    w->in.src = w->src->data;
    w->in.size = (size_t)size;
    w->in.pos = 0;
    w->read = size;
    w->eof = 1;
    return 0;
  }
  do {
    r = read(w->fd, w->inbuf, BS_IN_CHUNK);
  } while (r < 0 && errno == EINTR);
  if (r < 0)
    return DB_EIO;
  w->in.src = w->inbuf;
  w->in.size = (size_t)r;
  w->in.pos = 0;
  w->read += (uint64_t)r;
  if (w->read > size)
    return DB_EDIGEST; /* the file grew since it was hashed */
  if (r == 0) {
    if (w->read != size)
      return DB_EDIGEST;
    w->eof = 1;
  }
  return 0;
}

/* Fill dst (capacity cap) with the next payload bytes; *fin set when this
 * is the last chunk. */
static int bs_fill(bs_write *w, uint8_t *dst, size_t cap, size_t *n, int *fin) {
  uint64_t size = (uint64_t)w->src->digest.size;
  int rv;

  *n = 0;
  *fin = 0;
  if (!w->zstd) {
    while (*n < cap) {
      size_t k;
      rv = bs_refill(w);
      if (rv != 0)
        return rv;
      k = w->in.size - w->in.pos;
      if (k == 0)
        break;
      if (k > cap - *n)
        k = cap - *n;
      memcpy(dst + *n, (const uint8_t *)w->in.src + w->in.pos, k);
      w->in.pos += k;
      *n += k;
    }
    *fin = (uint64_t)w->offset + *n == size;
    return 0;
  }
  ZSTD_outBuffer out = {dst, cap, 0};
  while (out.pos < out.size) {
    ZSTD_EndDirective mode;
    size_t r;
    rv = bs_refill(w);
    if (rv != 0)
      return rv;
    mode = w->eof && w->in.pos == w->in.size ? ZSTD_e_end : ZSTD_e_continue;
    r = ZSTD_compressStream2(w->cctx, &out, &w->in, mode);
    if (ZSTD_isError(r))
      return DB_ECOMPRESS;
    if (mode == ZSTD_e_end && r == 0) {
      *fin = 1;
      break;
    }
  }
  *n = out.pos;
  return 0;
}

static int bs_produce(void *ctx, uint8_t **msg, size_t *len) {
  bs_write *w = ctx;
  Google__Bytestream__WriteRequest req =
      GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
  size_t n;
  int fin, rv;

  if (w->finished || w->err)
    return w->err ? -1 : 0;
  rv = DB_ENOMEM;
  if (!w->chunk && !(w->chunk = malloc(CAS_CLIENT_CHUNK)))
    goto out;
  rv = bs_fill(w, w->chunk, CAS_CLIENT_CHUNK, &n, &fin);
  if (rv != 0)
    goto out;
  if (w->offset == 0)
    req.resource_name = w->resource;
  req.write_offset = w->offset;
  req.finish_write = fin;
  req.data.data = w->chunk;
  req.data.len = n;
  rv = cas_client__pack(&req.base, msg, len);
  if (rv != 0)
    goto out;
  w->offset += (int64_t)n;
  *w->wire += n;
  w->finished = fin;
out:
  if (rv != 0) {
    w->err = rv;
    return -1;
  }
  return 1;
}

static int bs_write_on_message(void *ctx, const uint8_t *msg, size_t len) {
  bs_write *w = ctx;

  (void)msg;
  (void)len; /* committed_size: the status says everything we need */
  w->acked = 1;
  return 0;
}

static void bs_write_on_done(void *ctx, const rpc_status *st) {
  bs_write *w = ctx;
  cas_pump *p = w->p;
  int rv = w->err ? w->err : cas_client__done_err(p->c, st, w->acked);

  if (rv == 0)
    *w->raw += (uint64_t)w->src->digest.size;
  bs_write_free(w);
  cas_client__pump_done(p, rv, __func__);
}

int cas_client__bs_write_start(cas_pump *p, const cas_blob_src *src,
                               uint64_t *wire, uint64_t *raw) {
  static const rpc_stream_cbs cbs = {bs_write_on_message, bs_produce,
                                     bs_write_on_done};
  cas_client *c = p->c;
  bs_write *w = NULL;
  char uuid[37], hs[REAPI_DIGEST_STR_MAX];
  int rv = DB_ENOMEM;
  int n;

  w = calloc(1, sizeof(*w));
  if (!w)
    goto out;
  w->p = p;
  w->src = src;
  w->fd = -1;
  w->wire = wire;
  w->raw = raw;
  w->zstd = c->bs_zstd;
  cas_client__uuid(c, uuid);
  reapi_digest_str(&src->digest, hs);
  n = snprintf(NULL, 0, "%s%suploads/%s/%s%s", c->instance, cas_client__sep(c),
               uuid, w->zstd ? "compressed-blobs/zstd/" : "blobs/", hs);
  w->resource = malloc((size_t)n + 1);
  if (!w->resource)
    goto out;
  snprintf(w->resource, (size_t)n + 1, "%s%suploads/%s/%s%s", c->instance,
           cas_client__sep(c), uuid,
           w->zstd ? "compressed-blobs/zstd/" : "blobs/", hs);
  if (!src->data) {
    w->inbuf = malloc(BS_IN_CHUNK);
    if (!w->inbuf)
      goto out;
    w->fd = open(src->path, O_RDONLY | O_CLOEXEC);
    if (w->fd < 0) {
      rv = db_err_from_errno(errno);
      goto out;
    }
    posix_fadvise(w->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  if (w->zstd) {
    w->cctx = ZSTD_createCCtx();
    if (!w->cctx)
      goto out;
    rv = DB_ECOMPRESS;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel,
                                            c->zstd_level)) ||
        ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(
            w->cctx, (unsigned long long)src->digest.size)))
      goto out;
  }
  rv = rpc_client_start(c->rpc, CAS_PATH_BS "Write", NULL, 0, c->timeout_ms,
                        &cbs, w, NULL);
  if (rv != 0)
    goto out;
  w = NULL; /* owned by the call now; freed in on_done */
out:
  bs_write_free(w);
  return rv;
}

/* ---- Read ---- */

typedef struct bs_read {
  cas_pump *p;
  cas_blob_dst *dst;
  int zstd;
  ZSTD_DCtx *dctx;
  reapi_hasher *h;
  int fd;
  char *tmp;
  uint8_t *mem;   /* memory destination: size + 1 bytes */
  uint8_t *stage; /* file destination: decompression staging */
  uint64_t got;   /* uncompressed bytes produced */
  size_t zlast;   /* last ZSTD_decompressStream result (0 = frame end) */
  uint64_t *wire, *raw;
  int err;
} bs_read;

static void bs_read_free(bs_read *r) {
  if (!r)
    return;
  if (r->fd >= 0)
    close(r->fd);
  if (r->tmp)
    unlink(r->tmp);
  free(r->tmp);
  ZSTD_freeDCtx(r->dctx);
  if (r->h)
    reapi_hasher_free(r->h);
  free(r->mem);
  free(r->stage);
  free(r);
}

/* Consume n decompressed bytes at p: hash, bound-check, write. */
static int bs_sink(bs_read *r, const uint8_t *p, size_t n) {
  uint64_t size = (uint64_t)r->dst->digest.size;
  ssize_t w;

  if (n > size - r->got)
    return DB_EDIGEST;
  reapi_hasher_update(r->h, p, n);
  if (r->mem) {
    if (p != r->mem + r->got)
      memcpy(r->mem + r->got, p, n);
  } else {
    while (n > 0) {
      w = write(r->fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return db_err_from_errno(errno);
      p += w;
      n -= (size_t)w;
      r->got += (uint64_t)w;
    }
    return 0;
  }
  r->got += n;
  return 0;
}

static int bs_read_data(bs_read *r, const uint8_t *data, size_t len) {
  uint64_t size = (uint64_t)r->dst->digest.size;
  ZSTD_inBuffer in = {data, len, 0};
  int rv;

  *r->wire += len;
  if (!r->zstd)
    return bs_sink(r, data, len);
  while (in.pos < in.size) {
    ZSTD_outBuffer out;
    size_t z;
    if (r->mem) {
      /* Decompress in place; one spare byte detects oversized blobs. */
      out.dst = r->mem + r->got;
      out.size = (size_t)(size + 1 - r->got);
    } else {
      out.dst = r->stage;
      out.size = BS_OUT_CHUNK;
    }
    out.pos = 0;
    z = ZSTD_decompressStream(r->dctx, &out, &in);
    if (ZSTD_isError(z))
      return DB_ECOMPRESS;
    r->zlast = z;
    rv = bs_sink(r, out.dst, out.pos);
    if (rv != 0)
      return rv;
  }
  return 0;
}

static int bs_read_on_message(void *ctx, const uint8_t *msg, size_t len) {
  bs_read *r = ctx;
  Google__Bytestream__ReadResponse *m;
  int rv;

  m = google__bytestream__read_response__unpack(NULL, len, msg);
  if (!m) {
    r->err = DB_EPROTO;
    return 1;
  }
  rv = bs_read_data(r, m->data.data, m->data.len);
  google__bytestream__read_response__free_unpacked(m, NULL);
  if (rv != 0) {
    r->err = rv;
    return 1;
  }
  return 0;
}

static int bs_read_finish(bs_read *r) {
  cas_blob_dst *d = r->dst;
  reapi_digest got;

  if (r->got != (uint64_t)d->digest.size || (r->zstd && r->zlast != 0))
    return DB_EDIGEST;
  reapi_hasher_final(r->h, &got);
  r->h = NULL;
  if (!reapi_digest_eq(&got, &d->digest))
    return DB_EDIGEST;
  if (r->mem) {
    d->data = r->mem;
    d->len = (size_t)r->got;
    r->mem = NULL;
    return 0;
  }
  if (close(r->fd) != 0) {
    r->fd = -1;
    return DB_EIO;
  }
  r->fd = -1;
  if (rename(r->tmp, d->path) != 0)
    return db_err_from_errno(errno);
  free(r->tmp);
  r->tmp = NULL;
  return 0;
}

static void bs_read_on_done(void *ctx, const rpc_status *st) {
  bs_read *r = ctx;
  cas_pump *p = r->p;
  int rv = r->err ? r->err
                  : cas_client__done_err(
                        p->c, st, r->got == (uint64_t)r->dst->digest.size);

  if (rv != 0)
    DB_DEBUG("cas-client", "Read %s: %s after %llu of %lld bytes",
             r->dst->digest.hash, db_strerror(rv), (unsigned long long)r->got,
             (long long)r->dst->digest.size);
  if (rv == 0)
    rv = bs_read_finish(r);
  if (rv == 0)
    *r->raw += (uint64_t)r->dst->digest.size;
  bs_read_free(r);
  cas_client__pump_done(p, rv, __func__);
}

int cas_client__bs_read_start(cas_pump *p, cas_blob_dst *dst, uint64_t *wire,
                              uint64_t *raw) {
  static const rpc_stream_cbs cbs = {bs_read_on_message, NULL, bs_read_on_done};
  cas_client *c = p->c;
  bs_read *r = NULL;
  Google__Bytestream__ReadRequest req = GOOGLE__BYTESTREAM__READ_REQUEST__INIT;
  char hs[REAPI_DIGEST_STR_MAX], *res = NULL;
  uint8_t *buf = NULL;
  size_t len;
  int rv = DB_ENOMEM;
  int n;

  r = calloc(1, sizeof(*r));
  if (!r)
    goto out;
  r->p = p;
  r->dst = dst;
  r->fd = -1;
  r->wire = wire;
  r->raw = raw;
  r->zstd = c->bs_zstd;
  r->h = reapi_hasher_new();
  if (!r->h)
    goto out;
  if (r->zstd) {
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx)
      goto out;
  }
  if (dst->path) {
    r->stage = malloc(BS_OUT_CHUNK);
    if (!r->stage)
      goto out;
    rv = cas_client__tmp_open(dst->path, dst->mode, &r->tmp, &r->fd);
    if (rv != 0)
      goto out;
    rv = DB_ENOMEM;
  } else {
    r->mem = malloc((size_t)dst->digest.size + 1);
    if (!r->mem)
      goto out;
  }
  reapi_digest_str(&dst->digest, hs);
  n = snprintf(NULL, 0, "%s%s%s%s", c->instance, cas_client__sep(c),
               r->zstd ? "compressed-blobs/zstd/" : "blobs/", hs);
  res = malloc((size_t)n + 1);
  if (!res)
    goto out;
  snprintf(res, (size_t)n + 1, "%s%s%s%s", c->instance, cas_client__sep(c),
           r->zstd ? "compressed-blobs/zstd/" : "blobs/", hs);
  req.resource_name = res;
  rv = cas_client__pack(&req.base, &buf, &len);
  if (rv != 0)
    goto out;
  rv = rpc_client_start(c->rpc, CAS_PATH_BS "Read", buf, len, c->timeout_ms,
                        &cbs, r, NULL);
  if (rv != 0)
    goto out;
  r = NULL; /* owned by the call now */
out:
  bs_read_free(r);
  free(res);
  free(buf);
  return rv;
}
