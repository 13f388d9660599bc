/*
 * google.bytestream.ByteStream for the CAS: Read (server-streaming),
 * Write (client-streaming, resumable) and QueryWriteStatus, for plain
 * blobs/ and compressed-blobs/zstd/ resource names.
 *
 * Writes stream straight into a cas_writer (temp file, verified at commit),
 * so an upload of any size needs bounded memory and a truncated or aborted
 * upload never becomes visible. A partial upload is kept, keyed by its
 * resource name, so the client can QueryWriteStatus and resume it.
 */
#include "cas_resource.h"
#include "cas_service_int.h"

#include "db_err.h"
#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define BS "/google.bytestream.ByteStream/"
#define READ_CHUNK ((size_t)256 << 10)
#define READ_HIGH_WATER ((size_t)2 << 20)
#define UPLOAD_KEEP_MS (10 * 60 * 1000)
#define UPLOAD_KEEP_MAX 256

typedef struct cas_upload {
  struct cas_upload *next;
  char *name;
  cas_resource res;
  cas_writer *w;
  int busy;        /* attached to a live Write call */
  int64_t expires; /* rpc_now_ms() deadline while idle */
} cas_upload;

/* ---- partial upload table ---- */

static void upload_free(cas_upload *u) {
  cas_writer_abort(u->w);
  free(u->name);
  free(u);
}

static void upload_unlink(cas_service *svc, cas_upload *u) {
  cas_upload **pp;
  for (pp = &svc->uploads; *pp; pp = &(*pp)->next) {
    if (*pp == u) {
      *pp = u->next;
      return;
    }
  }
}

/* Drop idle uploads past their expiry, and the oldest idle ones beyond
 * the cap, so abandoned uploads cannot fill the temp directory. */
static void uploads_gc(cas_service *svc) {
  int64_t now = rpc_now_ms();
  size_t idle = 0;
  cas_upload **pp = &svc->uploads;

  while (*pp) {
    cas_upload *u = *pp;
    if (!u->busy && (u->expires < now || idle >= UPLOAD_KEEP_MAX)) {
      *pp = u->next;
      upload_free(u);
      continue;
    }
    if (!u->busy)
      idle++;
    pp = &u->next;
  }
}

static cas_upload *upload_find(cas_service *svc, const char *name) {
  for (cas_upload *u = svc->uploads; u; u = u->next)
    if (!strcmp(u->name, name))
      return u;
  return NULL;
}

void cas_bytestream_cleanup(cas_service *svc) {
  while (svc->uploads) {
    cas_upload *u = svc->uploads;
    svc->uploads = u->next;
    upload_free(u);
  }
}

static int resource_error(rpc_call *call, int rc, const char *name) {
  char msg[512];
  if (rc == DB_EUNSUPP)
    snprintf(msg, sizeof(msg), "unsupported compressor in resource name '%s'",
             name);
  else
    snprintf(msg, sizeof(msg), "invalid resource name '%.400s'", name);
  return rpc_call_finish(call, RPC_INVALID_ARGUMENT, msg);
}

/* ---- Read ---- */

typedef struct bs_read {
  cas_reader *r;
  ZSTD_CCtx *cctx;   /* compressing a raw stream (zstd read at offset) */
  int64_t remaining; /* read_limit left; -1 = unlimited */
  int in_eof;
  uint8_t *buf;
  uint8_t *zbuf;
} bs_read;

static void bs_read_free(bs_read *st) {
  if (!st)
    return;
  cas_reader_close(st->r);
  ZSTD_freeCCtx(st->cctx);
  free(st->buf);
  free(st->zbuf);
  free(st);
}

static int send_chunk(rpc_call *call, const uint8_t *data, size_t len) {
  Google__Bytestream__ReadResponse resp =
      GOOGLE__BYTESTREAM__READ_RESPONSE__INIT;
  uint8_t *buf = NULL;
  size_t blen = 0;
  int rc;

  resp.data.data = (uint8_t *)data;
  resp.data.len = len;
  rc = reapi_pb_pack(&resp.base, &buf, &blen);
  if (rc == 0)
    rc = rpc_call_send(call, buf ? buf : (const uint8_t *)"", blen);
  free(buf);
  return rc;
}

/* Produce response messages until the queue is comfortably full or the
 * blob is done. Called first from on_message, then from on_writable. */
static void bs_read_pump(rpc_call *call) {
  bs_read *st = rpc_call_data(call);
  size_t n;
  int rc;

  while (!rpc_call_is_closed(call) &&
         rpc_call_queued_bytes(call) < READ_HIGH_WATER) {
    size_t want = READ_CHUNK;
    if (st->remaining >= 0 && (int64_t)want > st->remaining)
      want = (size_t)st->remaining;
    n = 0;
    if (!st->in_eof && want > 0) {
      rc = cas_reader_read(st->r, st->buf, want, &n);
      if (rc) {
        cas_svc_fail(call, rc == DB_EDIGEST ? DB_EIO : rc, "reading blob");
        return;
      }
    }
    if (n == 0)
      st->in_eof = 1;
    if (st->remaining >= 0)
      st->remaining -= (int64_t)n;
    if (st->cctx) {
      ZSTD_inBuffer in = {st->buf, n, 0};
      ZSTD_outBuffer out = {st->zbuf, ZSTD_compressBound(READ_CHUNK), 0};
      size_t left = ZSTD_compressStream2(
          st->cctx, &out, &in, st->in_eof ? ZSTD_e_end : ZSTD_e_flush);
      if (ZSTD_isError(left)) {
        cas_svc_fail(call, DB_ECOMPRESS, "compressing blob");
        return;
      }
      if (out.pos && (rc = send_chunk(call, st->zbuf, out.pos))) {
        cas_svc_fail(call, rc, "sending");
        return;
      }
      if (st->in_eof && left != 0)
        continue; /* epilogue did not fit; flush the rest */
    } else if (n > 0 && (rc = send_chunk(call, st->buf, n))) {
      cas_svc_fail(call, rc, "sending");
      return;
    }
    if (st->in_eof) {
      rpc_call_finish(call, RPC_OK, NULL);
      return;
    }
  }
}

static void bs_read_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  Google__Bytestream__ReadRequest *req;
  cas_service *svc = rpc_call_method_data(call);
  cas_resource res;
  bs_read *st = NULL;
  int rc, zstd;

  req = google__bytestream__read_request__unpack(NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed ReadRequest");
    return;
  }
  rc = cas_resource_parse(req->resource_name, 0, &res);
  if (rc) {
    resource_error(call, rc, req->resource_name);
    goto out;
  }
  zstd = res.compressor == CAS_COMPRESSOR_ZSTD;
  if (req->read_offset < 0 || req->read_offset > res.digest.size) {
    rpc_call_finish(call, RPC_OUT_OF_RANGE, "read_offset outside the blob");
    goto out;
  }
  if (req->read_limit < 0 || (zstd && req->read_limit != 0)) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    zstd ? "read_limit must be 0 for compressed-blobs"
                         : "negative read_limit");
    goto out;
  }
  st = calloc(1, sizeof(*st));
  if (!st || !(st->buf = malloc(READ_CHUNK))) {
    cas_svc_fail(call, DB_ENOMEM, "Read");
    goto out;
  }
  st->remaining = req->read_limit > 0 ? req->read_limit : -1;
  /* The stored frame serves offset-0 zstd reads directly; any other zstd
   * read is compressed on the fly from the raw stream. The empty blob is
   * not stored at all, so it takes that path too. */
  if (zstd && (req->read_offset != 0 || res.digest.size == 0)) {
    st->cctx = ZSTD_createCCtx();
    st->zbuf = malloc(ZSTD_compressBound(READ_CHUNK));
    if (!st->cctx || !st->zbuf) {
      cas_svc_fail(call, DB_ENOMEM, "Read");
      goto out;
    }
    ZSTD_CCtx_setParameter(st->cctx, ZSTD_c_compressionLevel, svc->zstd_level);
  }
  if (res.digest.size == 0) {
    st->in_eof = 1;
  } else {
    rc = cas_reader_open(svc->store, &res.digest, req->read_offset,
                         zstd && !st->cctx, &st->r);
    if (rc) {
      cas_svc_fail(call, rc,
                   rc == DB_ENOTFOUND ? "blob not in the CAS" : "opening blob");
      goto out;
    }
  }
  rpc_call_set_data(call, st);
  st = NULL;
  bs_read_pump(call);
out:
  bs_read_free(st);
  google__bytestream__read_request__free_unpacked(req, NULL);
}

static void bs_read_on_writable(rpc_call *call) {
  if (rpc_call_data(call) && !rpc_call_is_closed(call))
    bs_read_pump(call);
}

static void bs_read_on_close(rpc_call *call, int code) {
  bs_read_free(rpc_call_data(call));
  rpc_call_set_data(call, NULL);
}

/* ---- Write ---- */

typedef struct bs_write {
  cas_upload *up; /* NULL before the first message and after finishing */
  int done;       /* finish_write seen or blob already present */
} bs_write;

static void write_reply(rpc_call *call, int64_t committed) {
  Google__Bytestream__WriteResponse resp =
      GOOGLE__BYTESTREAM__WRITE_RESPONSE__INIT;
  resp.committed_size = committed;
  cas_svc_reply(call, &resp.base);
}

/* Forget the call's upload entirely (error or success). */
static void write_drop(cas_service *svc, bs_write *st, int committed) {
  if (!st->up)
    return;
  upload_unlink(svc, st->up);
  if (committed)
    st->up->w = NULL; /* the writer was consumed by commit */
  upload_free(st->up);
  st->up = NULL;
}

static int write_start(rpc_call *call, cas_service *svc, bs_write *st,
                       const Google__Bytestream__WriteRequest *req) {
  cas_resource res;
  cas_upload *u;
  char msg[256];
  int rc;

  if (!req->resource_name || !*req->resource_name) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "the first WriteRequest must name the resource");
    return -1;
  }
  rc = cas_resource_parse(req->resource_name, 1, &res);
  if (rc) {
    resource_error(call, rc, req->resource_name);
    return -1;
  }
  uploads_gc(svc);
  u = upload_find(svc, req->resource_name);
  if (u && u->busy) {
    rpc_call_finish(call, RPC_ABORTED,
                    "another Write to this resource is in progress");
    return -1;
  }
  if (!u && cas_store_has(svc->store, &res.digest)) {
    /* Already stored: end at once, as the REAPI spec asks. */
    st->done = 1;
    write_reply(call,
                res.compressor == CAS_COMPRESSOR_ZSTD ? -1 : res.digest.size);
    return -1;
  }
  if (!u) {
    if (req->write_offset != 0) {
      snprintf(msg, sizeof(msg),
               "write_offset %lld for a new upload (expected 0)",
               (long long)req->write_offset);
      rpc_call_finish(call, RPC_INVALID_ARGUMENT, msg);
      return -1;
    }
    u = calloc(1, sizeof(*u));
    if (!u || !(u->name = strdup(req->resource_name))) {
      free(u);
      cas_svc_fail(call, DB_ENOMEM, "Write");
      return -1;
    }
    u->res = res;
    rc = cas_writer_new(svc->store, &res.digest,
                        res.compressor == CAS_COMPRESSOR_ZSTD, &u->w);
    if (rc) {
      upload_free(u);
      cas_svc_fail(call, rc, "starting upload");
      return -1;
    }
    u->next = svc->uploads;
    svc->uploads = u;
  }
  u->busy = 1;
  st->up = u;
  return 0;
}

static void bs_write_on_message(rpc_call *call, const uint8_t *msg,
                                size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  bs_write *st = rpc_call_data(call);
  Google__Bytestream__WriteRequest *req;
  char m[256];
  int rc;

  if (!st) {
    st = calloc(1, sizeof(*st));
    if (!st) {
      cas_svc_fail(call, DB_ENOMEM, "Write");
      return;
    }
    rpc_call_set_data(call, st);
  }
  if (st->done || rpc_call_is_closed(call))
    return; /* the call already ended; ignore the rest of the stream */
  req = google__bytestream__write_request__unpack(NULL, len, msg);
  if (!req) {
    write_drop(svc, st, 0);
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed WriteRequest");
    return;
  }
  if (!st->up) {
    if (write_start(call, svc, st, req))
      goto out;
  } else if (req->resource_name && *req->resource_name &&
             strcmp(req->resource_name, st->up->name)) {
    write_drop(svc, st, 0);
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "resource_name changed in the middle of a Write");
    goto out;
  }
  if (req->write_offset != cas_writer_offset(st->up->w)) {
    snprintf(m, sizeof(m), "write_offset %lld, but %lld bytes are committed",
             (long long)req->write_offset,
             (long long)cas_writer_offset(st->up->w));
    /* Keep the partial upload: the client can resume from QueryWriteStatus. */
    st->up->busy = 0;
    st->up->expires = rpc_now_ms() + UPLOAD_KEEP_MS;
    st->up = NULL;
    st->done = 1;
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, m);
    goto out;
  }
  if (req->data.len > 0) {
    rc = cas_writer_write(st->up->w, req->data.data, req->data.len);
    if (rc) {
      write_drop(svc, st, 0);
      st->done = 1;
      if (rc == DB_EDIGEST)
        rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                        "more data than the digest's size");
      else if (rc == DB_ECOMPRESS)
        rpc_call_finish(call, RPC_INVALID_ARGUMENT, "corrupt zstd stream");
      else
        cas_svc_fail(call, rc, "writing blob");
      goto out;
    }
  }
  if (req->finish_write) {
    int64_t committed = cas_writer_offset(st->up->w);
    cas_upload *u = st->up;
    st->done = 1;
    rc = cas_writer_commit(u->w);
    write_drop(svc, st, 1);
    if (rc == DB_EDIGEST) {
      rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                      "uploaded data does not match the digest");
    } else if (rc) {
      cas_svc_fail(call, rc, "storing blob");
    } else {
      write_reply(call, committed);
    }
  }
out:
  google__bytestream__write_request__free_unpacked(req, NULL);
}

static void bs_write_on_half_close(rpc_call *call) {
  cas_service *svc = rpc_call_method_data(call);
  bs_write *st = rpc_call_data(call);
  char m[160];

  if (rpc_call_is_closed(call))
    return;
  if (!st || !st->up) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "empty Write stream");
    return;
  }
  (void)svc;
  /* Ended without finish_write: keep the bytes for a resumed upload. */
  snprintf(m, sizeof(m),
           "stream ended before finish_write; %lld bytes kept for resumption",
           (long long)cas_writer_offset(st->up->w));
  st->up->busy = 0;
  st->up->expires = rpc_now_ms() + UPLOAD_KEEP_MS;
  st->up = NULL;
  rpc_call_finish(call, RPC_INVALID_ARGUMENT, m);
}

static void bs_write_on_close(rpc_call *call, int code) {
  bs_write *st = rpc_call_data(call);

  if (st && st->up) {
    /* Client went away mid-upload: nothing becomes visible; the partial
     * bytes stay in a temp file for resumption until they expire. */
    st->up->busy = 0;
    st->up->expires = rpc_now_ms() + UPLOAD_KEEP_MS;
  }
  free(st);
  rpc_call_set_data(call, NULL);
}

/* ---- QueryWriteStatus ---- */

static void bs_qws_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  Google__Bytestream__QueryWriteStatusRequest *req;
  Google__Bytestream__QueryWriteStatusResponse resp =
      GOOGLE__BYTESTREAM__QUERY_WRITE_STATUS_RESPONSE__INIT;
  cas_resource res;
  cas_upload *u;
  int rc;

  req = google__bytestream__query_write_status_request__unpack(NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed QueryWriteStatusRequest");
    return;
  }
  rc = cas_resource_parse(req->resource_name, 1, &res);
  if (rc) {
    resource_error(call, rc, req->resource_name);
    goto out;
  }
  u = upload_find(svc, req->resource_name);
  if (u) {
    resp.committed_size = cas_writer_offset(u->w);
    resp.complete = 0;
  } else if (cas_store_has(svc->store, &res.digest)) {
    resp.committed_size =
        res.compressor == CAS_COMPRESSOR_ZSTD ? -1 : res.digest.size;
    resp.complete = 1;
  } else {
    rpc_call_finish(call, RPC_NOT_FOUND, "no such upload");
    goto out;
  }
  cas_svc_reply(call, &resp.base);
out:
  google__bytestream__query_write_status_request__free_unpacked(req, NULL);
}

int cas_bytestream_register(cas_service *svc, rpc_server *srv) {
  rpc_method rd = {0}, wr = {0}, q = {0};
  int rc;

  rd.path = BS "Read";
  rd.kind = RPC_KIND_SERVER_STREAMING;
  rd.on_message = bs_read_on_message;
  rd.on_writable = bs_read_on_writable;
  rd.on_close = bs_read_on_close;
  rd.method_data = svc;
  wr.path = BS "Write";
  wr.kind = RPC_KIND_CLIENT_STREAMING;
  wr.on_message = bs_write_on_message;
  wr.on_half_close = bs_write_on_half_close;
  wr.on_close = bs_write_on_close;
  wr.method_data = svc;
  q.path = BS "QueryWriteStatus";
  q.kind = RPC_KIND_UNARY;
  q.on_message = bs_qws_on_message;
  q.method_data = svc;
  if ((rc = rpc_server_add_method(srv, &rd)) ||
      (rc = rpc_server_add_method(srv, &wr)))
    return rc;
  return rpc_server_add_method(srv, &q);
}
