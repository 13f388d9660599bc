/*
 * cas_client_download: BatchReadBlobs (acceptable_compressors = [ZSTD])
 * for small blobs, ByteStream Read for large ones, in parallel through the
 * job pump. Each distinct digest is fetched once; duplicates are copied
 * (or read back from the first file) afterwards. The empty blob is never
 * fetched.
 */
#include <stdlib.h>
#include <string.h>

#include "cas_client_int.h"
#include "db_err.h"
#include "db_log.h"

typedef struct down_job {
  cas_pump *p;
  size_t first, n; /* batch: range in ctx->small */
  int complete;    /* the response was parsed */
} down_job;

typedef struct down_ctx {
  cas_blob_dst *dsts;
  cas_dset set;  /* digest -> first dst holding it */
  size_t *small; /* dst indices fetched in batches */
  size_t *large; /* dst indices fetched through ByteStream */
  size_t nlarge;
  down_job *jobs; /* nlarge stream jobs first, then batches */
  uint64_t raw, wire;
  int err;
  int notfound;
} down_ctx;

static const reapi_digest *dst_get(void *arr, size_t i) {
  return &((cas_blob_dst *)arr)[i].digest;
}

/* Deliver verified bytes (ownership of buf passes here) to dst. */
static int deliver(cas_blob_dst *d, uint8_t *buf, size_t len) {
  int rv = 0;

  if (!d->path) {
    d->data = buf;
    d->len = len;
    return 0;
  }
  rv = cas_client__write_file(d->path, d->mode, buf, len);
  free(buf);
  return rv;
}

/* One BatchReadBlobsResponse.Response. */
static int batch_entry(
    cas_client *c, down_ctx *x,
    const Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response
        *e) {
  reapi_digest d, got;
  const uint8_t *data = e->data.data;
  size_t dlen = e->data.len, idx, size;
  uint8_t *buf = NULL;
  int zstd = e->compressor == PB_COMPRESSOR_ZSTD;
  int rv;

  rv = DB_EPROTO;
  if (!e->digest)
    goto out;
  rv = reapi_pb_digest_get(e->digest, &d);
  if (rv != 0)
    goto out;
  rv = DB_EPROTO;
  if (!zstd && e->compressor != PB_COMPRESSOR_IDENTITY)
    goto out; /* a compressor we did not ask for */
  idx = cas_client__dset_find(&x->set, &d);
  if (idx == SIZE_MAX)
    goto out;
  if (e->status && e->status->code != RPC_OK) {
    rpc_status st = {0};
    rpc_status_setf(&st, e->status->code, "BatchReadBlobs %s: %s", d.hash,
                    e->status->message);
    rv = cas_client__status_err(c, &st);
    rpc_status_clear(&st);
    goto out;
  }
  size = (size_t)d.size;
  rv = DB_ENOMEM;
  buf = malloc(size + 1);
  if (!buf)
    goto out;
  if (zstd) {
    size_t r = ZSTD_decompressDCtx(c->dctx, buf, size + 1, data, dlen);
    rv = DB_ECOMPRESS;
    if (ZSTD_isError(r))
      goto out;
    rv = DB_EDIGEST;
    if (r != size)
      goto out;
  } else {
    rv = DB_EDIGEST;
    if (dlen != size)
      goto out;
    if (size)
      memcpy(buf, data, size);
  }
  reapi_digest_of(buf, size, &got);
  rv = DB_EDIGEST;
  if (!reapi_digest_eq(&got, &d))
    goto out;
  x->wire += dlen;
  x->raw += size;
  rv = deliver(&x->dsts[idx], buf, size);
  buf = NULL;
out:
  free(buf);
  return rv;
}

static int batch_on_message(void *ctx, const uint8_t *msg, size_t len) {
  down_job *j = ctx;
  down_ctx *x = j->p->ctx;
  Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse *r;
  int rv = DB_EPROTO;

  r = build__bazel__remote__execution__v2__batch_read_blobs_response__unpack(
      NULL, len, msg);
  if (!r || r->n_responses != j->n)
    goto out;
  for (size_t k = 0; k < r->n_responses; k++) {
    rv = batch_entry(j->p->c, x, r->responses[k]);
    if (rv == DB_ENOTFOUND) {
      x->notfound = 1;
    } else if (rv != 0) {
      DB_DEBUG("cas-client", "BatchReadBlobs entry: %s", db_strerror(rv));
      goto out;
    }
  }
  j->complete = 1;
  rv = 0;
out:
  if (r)
    build__bazel__remote__execution__v2__batch_read_blobs_response__free_unpacked(
        r, NULL);
  cas_client__set_err(&x->err, rv);
  return rv != 0;
}

static void batch_on_done(void *ctx, const rpc_status *st) {
  down_job *j = ctx;
  down_ctx *x = j->p->ctx;
  int rv = x->err ? x->err : cas_client__done_err(j->p->c, st, j->complete);

  cas_client__pump_done(j->p, rv, __func__);
}

static int batch_start(cas_pump *p, down_job *j) {
  static const rpc_stream_cbs cbs = {batch_on_message, NULL, batch_on_done};
  /* Servers may still answer IDENTITY, which is always accepted. */
  static const Build__Bazel__Remote__Execution__V2__Compressor__Value zstd[] = {
      PB_COMPRESSOR_ZSTD};
  Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest req =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_REQUEST__INIT;
  cas_client *c = p->c;
  down_ctx *x = p->ctx;
  PbDigest *pd, **pp;
  uint8_t *buf = NULL;
  size_t len;
  int rv;

  pd = malloc(j->n * (sizeof(*pd) + sizeof(*pp)) + 1);
  if (!pd)
    return DB_ENOMEM;
  pp = (PbDigest **)(pd + j->n);
  for (size_t k = 0; k < j->n; k++) {
    cas_client__pb_digest_ref(&pd[k], &x->dsts[x->small[j->first + k]].digest);
    pp[k] = &pd[k];
  }
  req.instance_name = c->instance;
  req.n_digests = j->n;
  req.digests = pp;
  req.n_acceptable_compressors = 1;
  req.acceptable_compressors =
      (Build__Bazel__Remote__Execution__V2__Compressor__Value *)zstd;
  rv = cas_client__pack(&req.base, &buf, &len);
  free(pd);
  if (rv != 0)
    return rv;
  rv = rpc_client_start(c->rpc, CAS_PATH_CAS "BatchReadBlobs", buf, len,
                        c->timeout_ms, &cbs, j, NULL);
  free(buf);
  return rv;
}

static int down_start(cas_pump *p, size_t i) {
  down_ctx *x = p->ctx;
  down_job *j = &x->jobs[i];

  j->p = p;
  if (i < x->nlarge)
    return cas_client__bs_read_start(p, &x->dsts[x->large[i]], &x->wire,
                                     &x->raw);
  return batch_start(p, j);
}

/* Split the small blobs into batch jobs (after the nlarge stream jobs). */
static size_t plan_batches(cas_client *c, down_ctx *x, size_t nsmall,
                           uint64_t small_bytes) {
  cas_batcher bt;
  size_t nj = x->nlarge;

  cas_client__batcher_init(c, small_bytes, &bt);
  for (size_t k = 0; k < nsmall; k++) {
    if (cas_client__batcher_next(&bt,
                                 (uint64_t)x->dsts[x->small[k]].digest.size)) {
      x->jobs[nj].first = k;
      x->jobs[nj].n = 0;
      nj++;
    }
    x->jobs[nj - 1].n++;
  }
  return nj;
}

/* Fill duplicate dst i from its first occurrence f (already fetched). */
static int dup_from(cas_blob_dst *d, const cas_blob_dst *f) {
  uint8_t *buf = NULL;
  int rv;

  if (!f->path) {
    if (!d->path) {
      d->data = malloc(f->len ? f->len : 1);
      if (!d->data)
        return DB_ENOMEM;
      if (f->len)
        memcpy(d->data, f->data, f->len);
      d->len = f->len;
      return 0;
    }
    return cas_client__write_file(d->path, d->mode, f->data, f->len);
  }
  if (d->path)
    return cas_client__copy_file(f->path, d->path, d->mode);
  rv = cas_client__read_file(f->path, (size_t)f->digest.size, &buf);
  if (rv != 0)
    return rv;
  d->data = buf;
  d->len = (size_t)f->digest.size;
  return 0;
}

int cas_client_download(cas_client *c, cas_blob_dst *dsts, size_t n,
                        uint64_t *bytes_raw, uint64_t *bytes_wire) {
  down_ctx x = {0};
  cas_pump p;
  size_t *first = NULL;
  size_t nsmall = 0, njobs;
  uint64_t small_bytes = 0;
  int rv;

  if (bytes_raw)
    *bytes_raw = 0;
  if (bytes_wire)
    *bytes_wire = 0;
  for (size_t i = 0; i < n; i++) {
    dsts[i].data = NULL;
    dsts[i].len = 0;
  }
  rv = cas_client__caps(c);
  if (rv != 0)
    goto out;
  x.dsts = dsts;
  rv = DB_ENOMEM;
  first = malloc((n ? n : 1) * sizeof(*first));
  x.small = malloc((n ? n : 1) * sizeof(*x.small));
  x.large = malloc((n ? n : 1) * sizeof(*x.large));
  x.jobs = calloc(n ? n : 1, sizeof(*x.jobs));
  if (!first || !x.small || !x.large || !x.jobs)
    goto out;
  rv = cas_client__dset_init(&x.set, n, dst_get, dsts);
  if (rv != 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    size_t sz = (size_t)dsts[i].digest.size;
    first[i] = cas_client__dset_add(&x.set, i);
    if (first[i] != i)
      continue;
    if (sz == 0) {
      /* The empty blob always exists and is never fetched. */
      if (dsts[i].path)
        rv = cas_client__write_file(dsts[i].path, dsts[i].mode, NULL, 0);
      if (rv != 0)
        goto out;
    } else if (cas_client__fits_batch(c, sz)) {
      x.small[nsmall++] = i;
      small_bytes += sz;
    } else {
      x.large[x.nlarge++] = i;
    }
  }
  njobs = plan_batches(c, &x, nsmall, small_bytes);
  cas_client__pump_init(&p, c, njobs, down_start, &x);
  rv = cas_client__pump_run(&p);
  cas_client__set_err(&rv, x.err);
  if (rv == 0 && x.notfound)
    rv = DB_ENOTFOUND;
  if (rv != 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    if (first[i] == i)
      continue;
    rv = dup_from(&dsts[i], &dsts[first[i]]);
    if (rv != 0)
      goto out;
  }
  if (bytes_raw)
    *bytes_raw = x.raw;
  if (bytes_wire)
    *bytes_wire = x.wire;
out:
  cas_client__dset_free(&x.set);
  free(x.jobs);
  free(x.small);
  free(x.large);
  free(first);
  return rv;
}
