/*
 * ContentAddressableStorage services and registration of all storage
 * services. ActionCache and Capabilities live in cas_ac_service.c,
 * ByteStream in cas_bytestream.c.
 */
#include "cas_service_int.h"

#include "db_err.h"
#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define SVC_PREFIX "/build.bazel.remote.execution.v2."
/* Blobs decompressed from a batch are held in memory; a digest claiming
 * more than this must go through ByteStream. */
#define BATCH_BLOB_MAX ((int64_t)256 << 20)

typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest FmbReq;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse FmbResp;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest BubReq;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request
    BubReqItem;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse BubResp;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsResponse__Response
    BubRespItem;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest BrbReq;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse BrbResp;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response
    BrbRespItem;
typedef Build__Bazel__Remote__Execution__V2__GetTreeRequest GtReq;
typedef Build__Bazel__Remote__Execution__V2__GetTreeResponse GtResp;

void cas_svc_reply(rpc_call *call, const ProtobufCMessage *m) {
  uint8_t *buf = NULL;
  size_t len = 0;
  int rc = reapi_pb_pack(m, &buf, &len);

  if (rc == 0)
    rc = rpc_call_send(call, buf ? buf : (const uint8_t *)"", len);
  free(buf);
  if (rc)
    cas_svc_fail(call, rc, "sending response");
  else
    rpc_call_finish(call, RPC_OK, NULL);
}

void cas_svc_fail(rpc_call *call, int err, const char *what) {
  char msg[512];
  snprintf(msg, sizeof(msg), "%s: %s", what, db_strerror(err));
  rpc_call_finish(call, rpc_code_from_err(err), msg);
}

static Google__Rpc__Status *status_new(int code, const char *msg) {
  Google__Rpc__Status *st = calloc(1, sizeof(*st));
  if (!st)
    return NULL;
  google__rpc__status__init(st);
  st->code = code;
  st->message = msg ? strdup(msg) : NULL;
  if (!st->message)
    st->message = (char *)protobuf_c_empty_string;
  return st;
}

static void status_free(Google__Rpc__Status *st) {
  if (!st)
    return;
  if (st->message != protobuf_c_empty_string)
    free(st->message);
  free(st);
}

/* Finish call with INVALID_ARGUMENT unless fn names SHA-256 (or is unset).
 * Returns 1 when the request may go on. */
static int check_digest_fn(rpc_call *call, int fn) {
  if (reapi_pb_digest_function_ok(fn))
    return 1;
  rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                  "only the SHA256 digest function is supported");
  return 0;
}

/* Finish call with INVALID_ARGUMENT when a batch of total bytes is over the
 * advertised max_batch_total_size_bytes. Returns 1 when it fits. */
static int check_batch_size(rpc_call *call, const cas_service *svc,
                            size_t total) {
  char m[128];

  if (total <= svc->max_batch)
    return 1;
  snprintf(m, sizeof(m), "batch of %zu bytes exceeds the limit of %zu", total,
           svc->max_batch);
  rpc_call_finish(call, RPC_INVALID_ARGUMENT, m);
  return 0;
}

/* ---- FindMissingBlobs ---- */

static void fmb_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  FmbReq *req;
  FmbResp resp =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_RESPONSE__INIT;
  reapi_digest d;
  size_t i;

  req = build__bazel__remote__execution__v2__find_missing_blobs_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed FindMissingBlobsRequest");
    return;
  }
  if (!check_digest_fn(call, req->digest_function))
    goto out;
  resp.missing_blob_digests =
      malloc((req->n_blob_digests + 1) * sizeof(*resp.missing_blob_digests));
  if (!resp.missing_blob_digests) {
    cas_svc_fail(call, DB_ENOMEM, "FindMissingBlobs");
    goto out;
  }
  for (i = 0; i < req->n_blob_digests; i++) {
    if (reapi_pb_digest_get(req->blob_digests[i], &d)) {
      char m[96];
      snprintf(m, sizeof(m), "invalid digest at blob_digests[%zu]", i);
      rpc_call_finish(call, RPC_INVALID_ARGUMENT, m);
      goto out;
    }
    if (!cas_store_has(svc->store, &d))
      resp.missing_blob_digests[resp.n_missing_blob_digests++] =
          req->blob_digests[i];
  }
  cas_svc_reply(call, &resp.base);
out:
  free(resp.missing_blob_digests);
  build__bazel__remote__execution__v2__find_missing_blobs_request__free_unpacked(
      req, NULL);
}

/* ---- BatchUpdateBlobs ---- */

/* Decoded items of one BatchUpdateBlobs request held at once: the zstd
 * ones are decompressed up front so that the store can take them as one
 * batch (one sync). Past this many uncompressed bytes the batch is stored
 * in several parts, so a request of highly compressible blobs cannot make
 * the server hold gigabytes. */
#define BUB_PART_BYTES ((size_t)64 << 20)

/* 1 if a streaming decoder with zstd's default limit (window <= 2^27, what
 * the store's readers use) can decode this frame: a stored frame must stay
 * readable, and one-shot ZSTD_decompress does not enforce that limit.
 * Header: magic(4), descriptor (bit 5: single segment, window = content
 * size), then the window descriptor byte unless single segment. */
static int frame_window_ok(const uint8_t *f, size_t n, int64_t size) {
  if (n < 6)
    return 0;
  if (f[4] & 0x20)
    return size <= ((int64_t)1 << 27);
  return 10 + (f[5] >> 3) < 27; /* 2^27 + mantissa would be over */
}

/* Check one batch item and decompress it if it is zstd. Returns RPC_OK with
 * d, data and len set (*raw: a buffer to free afterwards, or NULL), or the
 * gRPC code with why filled. */
static int bub_store_one(const BubReqItem *it, reapi_digest *d,
                         const void **data, size_t *len, uint8_t **raw,
                         const void **frame, size_t *flen, char *why,
                         size_t whylen) {
  size_t n;

  *raw = NULL;
  *frame = NULL;
  *flen = 0;
  *data = it->data.data;
  *len = it->data.len;
  if (reapi_pb_digest_get(it->digest, d)) {
    snprintf(why, whylen, "invalid digest");
    return RPC_INVALID_ARGUMENT;
  }
  if (it->compressor == PB_COMPRESSOR_IDENTITY)
    return RPC_OK;
  if (it->compressor != PB_COMPRESSOR_ZSTD) {
    snprintf(why, whylen, "unsupported compressor %d", (int)it->compressor);
    return RPC_INVALID_ARGUMENT;
  }
  if (d->size > BATCH_BLOB_MAX) {
    snprintf(why, whylen, "blob too large for a batch; use ByteStream");
    return RPC_INVALID_ARGUMENT;
  }
  *raw = malloc(d->size ? (size_t)d->size : 1);
  if (!*raw) {
    snprintf(why, whylen, "out of memory");
    return RPC_RESOURCE_EXHAUSTED;
  }
  n = ZSTD_decompress(*raw, (size_t)d->size, it->data.data, it->data.len);
  if (ZSTD_isError(n) || n != (size_t)d->size) {
    snprintf(why, whylen, "zstd data does not decompress to %lld bytes%s%s",
             (long long)d->size, ZSTD_isError(n) ? ": " : "",
             ZSTD_isError(n) ? ZSTD_getErrorName(n) : "");
    free(*raw);
    *raw = NULL;
    return RPC_INVALID_ARGUMENT;
  }
  *data = *raw;
  *len = n;
  /* Exactly one frame (no trailing frames or bytes): the store may keep
   * the client's frame as is instead of compressing the blob again. */
  if (ZSTD_findFrameCompressedSize(it->data.data, it->data.len) ==
          it->data.len &&
      frame_window_ok(it->data.data, it->data.len, d->size)) {
    *frame = it->data.data;
    *flen = it->data.len;
  }
  return RPC_OK;
}

static void bub_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  BubReq *req;
  BubResp resp =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_UPDATE_BLOBS_RESPONSE__INIT;
  BubRespItem *items = NULL;
  /* One part of the batch on its way to the store; idx maps back to the
   * request item. raws: decompressed buffers to free after the part. */
  reapi_digest *pd = NULL;
  const void **pdata = NULL, **pframe = NULL;
  size_t *plen = NULL, *pflen = NULL, *pidx = NULL, np = 0, pbytes = 0;
  uint8_t **praw = NULL;
  int *prc = NULL, *codes = NULL;
  char **whys = NULL;
  size_t i, j, total = 0, n;

  req = build__bazel__remote__execution__v2__batch_update_blobs_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed BatchUpdateBlobsRequest");
    return;
  }
  if (!check_digest_fn(call, req->digest_function))
    goto out;
  for (i = 0; i < req->n_requests; i++)
    total += req->requests[i]->data.len;
  if (!check_batch_size(call, svc, total))
    goto out;
  n = req->n_requests + 1;
  items = calloc(n, sizeof(*items));
  resp.responses = calloc(n, sizeof(*resp.responses));
  codes = calloc(n, sizeof(*codes));
  whys = calloc(n, sizeof(*whys));
  pd = calloc(n, sizeof(*pd));
  pdata = calloc(n, sizeof(*pdata));
  plen = calloc(n, sizeof(*plen));
  pframe = calloc(n, sizeof(*pframe));
  pflen = calloc(n, sizeof(*pflen));
  pidx = calloc(n, sizeof(*pidx));
  praw = calloc(n, sizeof(*praw));
  prc = calloc(n, sizeof(*prc));
  if (!items || !resp.responses || !codes || !whys || !pd || !pdata || !plen ||
      !pframe || !pflen || !pidx || !praw || !prc) {
    cas_svc_fail(call, DB_ENOMEM, "BatchUpdateBlobs");
    goto out;
  }
  for (i = 0; i <= req->n_requests; i++) {
    char why[256] = "";
    int code = RPC_OK, rc;

    if (i < req->n_requests) {
      code =
          bub_store_one(req->requests[i], &pd[np], &pdata[np], &plen[np],
                        &praw[np], &pframe[np], &pflen[np], why, sizeof(why));
      if (code != RPC_OK) {
        codes[i] = code;
        whys[i] = strdup(why);
        continue;
      }
    }
    /* Store the part when it is complete: at the end, or when this item
     * would take it over the memory bound (then this item starts the next
     * part). */
    if (np > 0 &&
        (i == req->n_requests || pbytes + plen[np] > BUB_PART_BYTES)) {
      reapi_digest keep_d = pd[np];
      const void *keep_data = pdata[np];
      size_t keep_len = plen[np];
      uint8_t *keep_raw = praw[np];
      const void *keep_frame = pframe[np];
      size_t keep_flen = pflen[np];

      /* A failure of the whole call sets every prc[] as well. */
      (void)cas_store_put_batch_frames(svc->store, np, pd, pdata, plen, pframe,
                                       pflen, prc);
      for (j = 0; j < np; j++) {
        size_t k = pidx[j];
        rc = prc[j];
        if (rc == DB_EDIGEST) {
          reapi_digest got;
          reapi_digest_of(pdata[j], plen[j], &got);
          snprintf(why, sizeof(why), "digest mismatch: data hashes to %s/%lld",
                   got.hash, (long long)got.size);
          codes[k] = RPC_INVALID_ARGUMENT;
        } else if (rc) {
          snprintf(why, sizeof(why), "store: %s", db_strerror(rc));
          codes[k] = rpc_code_from_err(rc);
        }
        if (rc)
          whys[k] = strdup(why);
        free(praw[j]);
        praw[j] = NULL;
      }
      pd[0] = keep_d;
      pdata[0] = keep_data;
      plen[0] = keep_len;
      praw[0] = keep_raw;
      pframe[0] = keep_frame;
      pflen[0] = keep_flen;
      np = 0;
      pbytes = 0;
    }
    if (i < req->n_requests) {
      pidx[np] = i;
      pbytes += plen[np];
      np++;
    }
  }
  for (i = 0; i < req->n_requests; i++) {
    int code = codes[i];
    build__bazel__remote__execution__v2__batch_update_blobs_response__response__init(
        &items[i]);
    items[i].digest = req->requests[i]->digest;
    /* A failed strdup loses only the message, never the code. */
    items[i].status = status_new(code, code ? whys[i] : NULL);
    if (code)
      DB_WARN("cas", "BatchUpdateBlobs: %s/%lld: %s",
              req->requests[i]->digest ? req->requests[i]->digest->hash : "?",
              req->requests[i]->digest
                  ? (long long)req->requests[i]->digest->size_bytes
                  : -1LL,
              whys[i] ? whys[i] : "?");
    resp.responses[i] = &items[i];
    resp.n_responses++;
  }
  cas_svc_reply(call, &resp.base);
out:
  for (i = 0; items && i < resp.n_responses; i++)
    status_free(items[i].status);
  for (i = 0; whys && i < req->n_requests; i++)
    free(whys[i]);
  for (i = 0; praw && i < np; i++)
    free(praw[i]);
  free(items);
  free(resp.responses);
  free(codes);
  free(whys);
  free(pd);
  free(pdata);
  free(plen);
  free(pframe);
  free(pflen);
  free(pidx);
  free(praw);
  free(prc);
  build__bazel__remote__execution__v2__batch_update_blobs_request__free_unpacked(
      req, NULL);
}

/* ---- BatchReadBlobs ---- */

/* Read a whole blob through a reader (as a zstd frame or raw). */
static int read_all(cas_store *st, const reapi_digest *d, int as_zstd,
                    uint8_t **out, size_t *outlen) {
  cas_reader *r = NULL;
  uint8_t *buf = NULL;
  size_t cap = 0, len = 0, n;
  int rc;

  if (!as_zstd)
    return cas_store_get(st, d, out, outlen);
  rc = cas_reader_open(st, d, 0, 1, &r);
  if (rc)
    return rc;
  cap = (size_t)d->size / 2 + 64;
  buf = malloc(cap);
  if (!buf) {
    rc = DB_ENOMEM;
    goto out;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = DB_ENOMEM;
        goto out;
      }
      buf = nb;
      cap *= 2;
    }
    rc = cas_reader_read(r, buf + len, cap - len, &n);
    if (rc)
      goto out;
    if (n == 0)
      break;
    len += n;
  }
  *out = buf;
  *outlen = len;
  buf = NULL;
out:
  free(buf);
  cas_reader_close(r);
  return rc;
}

static void brb_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  BrbReq *req;
  BrbResp resp =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_RESPONSE__INIT;
  BrbRespItem *items = NULL;
  size_t i, total = 0;
  int zstd_ok = 0;

  req = build__bazel__remote__execution__v2__batch_read_blobs_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed BatchReadBlobsRequest");
    return;
  }
  if (!check_digest_fn(call, req->digest_function))
    goto out;
  for (i = 0; i < req->n_acceptable_compressors; i++)
    if (req->acceptable_compressors[i] == PB_COMPRESSOR_ZSTD)
      zstd_ok = 1;
  for (i = 0; i < req->n_digests; i++) {
    if (!req->digests[i] || req->digests[i]->size_bytes < 0) {
      rpc_call_finish(call, RPC_INVALID_ARGUMENT, "invalid digest in request");
      goto out;
    }
    total += (size_t)req->digests[i]->size_bytes;
  }
  if (!check_batch_size(call, svc, total))
    goto out;
  items = calloc(req->n_digests + 1, sizeof(*items));
  resp.responses = calloc(req->n_digests + 1, sizeof(*resp.responses));
  if (!items || !resp.responses) {
    cas_svc_fail(call, DB_ENOMEM, "BatchReadBlobs");
    goto out;
  }
  for (i = 0; i < req->n_digests; i++) {
    BrbRespItem *it = &items[i];
    reapi_digest d;
    uint8_t *data = NULL;
    size_t dlen = 0;
    int rc, code = RPC_OK;
    char why[160] = "";

    build__bazel__remote__execution__v2__batch_read_blobs_response__response__init(
        it);
    it->digest = req->digests[i];
    resp.responses[resp.n_responses++] = it;
    if (reapi_pb_digest_get(req->digests[i], &d)) {
      it->status = status_new(RPC_INVALID_ARGUMENT, "invalid digest");
      continue;
    }
    /* Tiny blobs are not worth a zstd frame header. */
    rc = read_all(svc->store, &d, zstd_ok && d.size > 64, &data, &dlen);
    if (rc) {
      code = rpc_code_from_err(rc);
      snprintf(why, sizeof(why), "%s", db_strerror(rc));
    } else {
      it->data.data = data;
      it->data.len = dlen;
      it->compressor = (zstd_ok && d.size > 64) ? PB_COMPRESSOR_ZSTD
                                                : PB_COMPRESSOR_IDENTITY;
    }
    it->status = status_new(code, code ? why : NULL);
  }
  cas_svc_reply(call, &resp.base);
out:
  for (i = 0; items && i < resp.n_responses; i++) {
    free(items[i].data.data);
    status_free(items[i].status);
  }
  free(items);
  free(resp.responses);
  build__bazel__remote__execution__v2__batch_read_blobs_request__free_unpacked(
      req, NULL);
}

/* ---- GetTree ---- */

#define TREE_PAGE_DEFAULT 1000
#define TREE_PAGE_BYTES ((size_t)2 << 20)

typedef struct tree_walk {
  PbDirectory **dirs;
  size_t n, cap;
  reapi_digest *seen;
  size_t nseen, seencap;
} tree_walk;

static int walk_seen(tree_walk *w, const reapi_digest *d) {
  for (size_t i = 0; i < w->nseen; i++)
    if (reapi_digest_eq(&w->seen[i], d))
      return 1;
  return 0;
}

/* Add one directory to the walk unless already seen. A missing root is
 * DB_ENOTFOUND; missing subtrees are left out, as the spec allows. */
static int tree_add(cas_store *st, const reapi_digest *d, tree_walk *w,
                    int is_root) {
  uint8_t *data = NULL;
  size_t len = 0;
  PbDirectory *dir;
  int rc;

  if (walk_seen(w, d))
    return 0;
  if (w->nseen == w->seencap) {
    size_t nc = w->seencap ? w->seencap * 2 : 64;
    reapi_digest *ns = realloc(w->seen, nc * sizeof(*ns));
    if (!ns)
      return DB_ENOMEM;
    w->seen = ns;
    w->seencap = nc;
  }
  w->seen[w->nseen++] = *d;
  rc = cas_store_get(st, d, &data, &len);
  if (rc == DB_ENOTFOUND && !is_root)
    return 0;
  if (rc)
    return rc;
  dir = build__bazel__remote__execution__v2__directory__unpack(NULL, len, data);
  free(data);
  if (!dir)
    return DB_EPROTO;
  if (w->n == w->cap) {
    size_t nc = w->cap ? w->cap * 2 : 64;
    PbDirectory **nd = realloc(w->dirs, nc * sizeof(*nd));
    if (!nd) {
      build__bazel__remote__execution__v2__directory__free_unpacked(dir, NULL);
      return DB_ENOMEM;
    }
    w->dirs = nd;
    w->cap = nc;
  }
  w->dirs[w->n++] = dir;
  return 0;
}

/* Breadth-first walk from root; each distinct Directory appears once. */
static int tree_collect(cas_store *st, const reapi_digest *root, tree_walk *w) {
  int rc = tree_add(st, root, w, 1);

  for (size_t head = 0; rc == 0 && head < w->n; head++) {
    PbDirectory *d = w->dirs[head];
    for (size_t k = 0; rc == 0 && k < d->n_directories; k++) {
      reapi_digest cd;
      if (reapi_pb_digest_get(d->directories[k]->digest, &cd))
        return DB_EPROTO;
      rc = tree_add(st, &cd, w, 0);
    }
  }
  return rc;
}

static void tree_walk_free(tree_walk *w) {
  for (size_t i = 0; i < w->n; i++)
    build__bazel__remote__execution__v2__directory__free_unpacked(w->dirs[i],
                                                                  NULL);
  free(w->dirs);
  free(w->seen);
}

static void gt_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  GtReq *req;
  tree_walk w = {0};
  reapi_digest root;
  size_t start = 0, page, i;
  int rc;

  req = build__bazel__remote__execution__v2__get_tree_request__unpack(NULL, len,
                                                                      msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "malformed GetTreeRequest");
    return;
  }
  if (reapi_pb_digest_get(req->root_digest, &root)) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "invalid root_digest");
    goto out;
  }
  if (req->page_token && *req->page_token) {
    char *end;
    unsigned long long v = strtoull(req->page_token, &end, 10);
    if (*end) {
      rpc_call_finish(call, RPC_INVALID_ARGUMENT, "invalid page_token");
      goto out;
    }
    start = (size_t)v;
  }
  page = req->page_size > 0 ? (size_t)req->page_size : TREE_PAGE_DEFAULT;
  rc = tree_collect(svc->store, &root, &w);
  if (rc == DB_ENOTFOUND) {
    rpc_call_finish(call, RPC_NOT_FOUND, "root directory not in the CAS");
    goto out;
  }
  if (rc) {
    cas_svc_fail(call, rc == DB_EPROTO ? DB_EINVAL : rc,
                 "GetTree: reading the tree");
    goto out;
  }
  if (start > w.n) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "page_token out of range");
    goto out;
  }
  /* Stream pages; each response carries the token of the next page. */
  i = start;
  do {
    GtResp resp = BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_TREE_RESPONSE__INIT;
    char token[32] = "";
    size_t bytes = 0;
    uint8_t *buf = NULL;
    size_t blen = 0;

    resp.directories = w.dirs + i;
    while (i < w.n && resp.n_directories < page && bytes < TREE_PAGE_BYTES) {
      bytes += protobuf_c_message_get_packed_size(&w.dirs[i]->base);
      resp.n_directories++;
      i++;
    }
    if (i < w.n) {
      snprintf(token, sizeof(token), "%zu", i);
      resp.next_page_token = token;
    }
    rc = reapi_pb_pack(&resp.base, &buf, &blen);
    if (rc == 0)
      rc = rpc_call_send(call, buf ? buf : (const uint8_t *)"", blen);
    free(buf);
    if (rc) {
      cas_svc_fail(call, rc, "GetTree");
      goto out;
    }
  } while (i < w.n);
  rpc_call_finish(call, RPC_OK, NULL);
out:
  tree_walk_free(&w);
  build__bazel__remote__execution__v2__get_tree_request__free_unpacked(req,
                                                                       NULL);
}

/* ---- registration ---- */

int cas_service_new(cas_store *store, const cas_service_opts *opts,
                    cas_service **out) {
  cas_service *svc = calloc(1, sizeof(*svc));
  if (!svc)
    return DB_ENOMEM;
  svc->store = store;
  svc->max_batch =
      opts && opts->max_batch_bytes ? opts->max_batch_bytes : (size_t)4 << 20;
  svc->exec_enabled = opts ? opts->exec_enabled : 0;
  svc->zstd_level = opts && opts->zstd_level ? opts->zstd_level : 1;
  *out = svc;
  return 0;
}

void cas_service_free(cas_service *svc) {
  if (!svc)
    return;
  cas_bytestream_cleanup(svc);
  free(svc);
}

int cas_service_register(cas_service *svc, rpc_server *srv) {
  static const struct {
    const char *path;
    void (*on_message)(rpc_call *, const uint8_t *, size_t);
    rpc_kind kind;
  } methods[] = {
      {SVC_PREFIX "ContentAddressableStorage/FindMissingBlobs", fmb_on_message,
       RPC_KIND_UNARY},
      {SVC_PREFIX "ContentAddressableStorage/BatchUpdateBlobs", bub_on_message,
       RPC_KIND_UNARY},
      {SVC_PREFIX "ContentAddressableStorage/BatchReadBlobs", brb_on_message,
       RPC_KIND_UNARY},
      {SVC_PREFIX "ContentAddressableStorage/GetTree", gt_on_message,
       RPC_KIND_SERVER_STREAMING},
      {SVC_PREFIX "ActionCache/GetActionResult", cas_svc_gar_on_message,
       RPC_KIND_UNARY},
      {SVC_PREFIX "ActionCache/UpdateActionResult", cas_svc_uar_on_message,
       RPC_KIND_UNARY},
      {SVC_PREFIX "Capabilities/GetCapabilities", cas_svc_caps_on_message,
       RPC_KIND_UNARY},
  };
  size_t i;
  int rc;

  for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
    rpc_method m = {0};
    m.path = methods[i].path;
    m.kind = methods[i].kind;
    m.on_message = methods[i].on_message;
    m.method_data = svc;
    rc = rpc_server_add_method(srv, &m);
    if (rc)
      return rc;
  }
  return cas_bytestream_register(svc, srv);
}
