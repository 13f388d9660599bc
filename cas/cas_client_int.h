/*
 * Internals of the CAS client shared by cas_client*.c. Not a public API:
 * symbols use the cas_client__ prefix.
 *
 * Concurrency model: every bulk operation is a list of jobs (one RPC each)
 * driven by a cas_pump, which keeps at most max_inflight RPCs started on
 * the shared rpc_client and starts the next job from the on_done callback
 * of the previous one (and, as a fallback, from its own run loop).
 */
#ifndef CAS_CLIENT_INT_H
#define CAS_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include <zstd.h>

#include "cas_client.h"
#include "reapi_pb.h"
#include "rpc_client.h"

#define CAS_PATH_CAS                                                           \
  "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
#define CAS_PATH_BS "/google.bytestream.ByteStream/"

/* Chunk of compressed (or raw) bytes per ByteStream WriteRequest. */
#define CAS_CLIENT_CHUNK (512 * 1024)
/* Estimated protobuf overhead of one blob entry in a batch request. */
#define CAS_CLIENT_ENTRY_OVERHEAD 96
/* Room left in a batch request for the instance name and framing. */
#define CAS_CLIENT_BATCH_SLACK 4096

struct cas_client {
  rpc_client *rpc;
  char *instance;     /* "" or the instance name */
  size_t batch_limit; /* effective, after Capabilities */
  size_t stream_threshold;
  int max_inflight;
  int zstd_level;
  int64_t timeout_ms;
  int caps_loaded;
  int bs_zstd;     /* ByteStream compressed-blobs/zstd usable */
  int batch_zstd;  /* zstd in BatchUpdateBlobs / BatchReadBlobs */
  ZSTD_CCtx *cctx; /* for batch entries (single-threaded) */
  ZSTD_DCtx *dctx;
  uint64_t rng[2]; /* uuid generator state */
  rpc_status last; /* last failed remote status */
};

/* 1 when a blob of sz bytes goes in a batch request, 0 when it needs a
 * ByteStream of its own. */
int cas_client__fits_batch(const cas_client *c, uint64_t sz);

/* Packs consecutive small blobs into batch jobs of about an even share of
 * the total across the in-flight calls (between 256 KiB and the batch
 * limit), so uploads and downloads use the same sizing. */
typedef struct cas_batcher {
  size_t target, acc;
  int started;
} cas_batcher;
void cas_client__batcher_init(const cas_client *c, uint64_t small_bytes,
                              cas_batcher *b);
/* Account one more blob of sz bytes; 1 when it must open a new batch. */
int cas_client__batcher_next(cas_batcher *b, uint64_t sz);

/* ---- job pump ---- */
typedef struct cas_pump cas_pump;
/* Start the RPC of job i. Returns 0 (the RPC's on_done must eventually
 * call cas_client__pump_done) or a negative DB_E* (no RPC started). */
typedef int (*cas_pump_start_fn)(cas_pump *p, size_t i);

struct cas_pump {
  cas_client *c;
  size_t njobs;
  size_t next;
  int inflight;
  int err;      /* first error; stops starting new jobs */
  int notfound; /* some job ended with DB_ENOTFOUND (others go on) */
  cas_pump_start_fn start;
  void *ctx;
  int in_fill;
  int max_inflight; /* 0 = the client's max_inflight */
};

void cas_client__pump_init(cas_pump *p, cas_client *c, size_t njobs,
                           cas_pump_start_fn start, void *ctx);
/* Record the end of one RPC (err 0 or DB_E*) and start more jobs. what
 * names the call for the debug log. */
void cas_client__pump_done(cas_pump *p, int err, const char *what);
/* Run until every job has finished. Returns the first error or 0. */
int cas_client__pump_run(cas_pump *p);
/* Error precedence: keep the first error, but let DB_ENOTFOUND stay
 * visible unless something worse happened. */
void cas_client__set_err(int *slot, int err);

/* ---- helpers ---- */
/* Load Capabilities once (batch limit, compressors). */
int cas_client__caps(cas_client *c);
/* Map a remote status to DB_E* and remember it in c->last. OK -> 0. */
int cas_client__status_err(cas_client *c, const rpc_status *st);
/* Final status of a call whose response was `complete` (every expected
 * message received and, for blobs, verified). A complete response whose
 * trailers libcurl lost (rpc_client's synthesized INTERNAL "server closed
 * the stream without grpc-status", see cas_client.c) counts as OK. */
int cas_client__done_err(cas_client *c, const rpc_status *st, int complete);
/* Separator to print after c->instance in resource names: "/" or "". */
const char *cas_client__sep(const cas_client *c);
/* A fresh v4 uuid, 36 characters + NUL. */
void cas_client__uuid(cas_client *c, char out[37]);

/* Digest -> index open-addressing set. */
typedef struct cas_dset {
  size_t cap;   /* power of two */
  size_t *slot; /* index + 1, 0 = empty */
  const reapi_digest *(*get)(void *arr, size_t i);
  void *arr;
} cas_dset;
int cas_client__dset_init(cas_dset *s, size_t n,
                          const reapi_digest *(*get)(void *arr, size_t i),
                          void *arr);
/* Insert i; returns i when new, or the index already holding its digest. */
size_t cas_client__dset_add(cas_dset *s, size_t i);
/* Index holding d, or SIZE_MAX. */
size_t cas_client__dset_find(const cas_dset *s, const reapi_digest *d);
void cas_client__dset_free(cas_dset *s);

/* Read a whole small file; checks its size equals want. */
int cas_client__read_file(const char *path, size_t want, uint8_t **out);
/* Write data atomically to path (temp + fsync-less rename) with mode. */
int cas_client__write_file(const char *path, int mode, const void *data,
                           size_t len);
/* Create a temp file next to path; *tmp malloc'd. */
int cas_client__tmp_open(const char *path, int mode, char **tmp, int *fd);
/* Copy file src to dst (atomically) with mode. */
int cas_client__copy_file(const char *src, const char *dst, int mode);

/* ---- ByteStream (cas_client_stream.c) ---- */
/* Upload one blob through ByteStream Write: start the RPC on pump p (its
 * on_done calls cas_client__pump_done). *wire / *raw grow by the payload
 * bytes sent and, on success, by the blob size. src is borrowed until
 * then. */
int cas_client__bs_write_start(cas_pump *p, const cas_blob_src *src,
                               uint64_t *wire, uint64_t *raw);
/* Download one blob through ByteStream Read into dst (memory or file),
 * verifying it; same conventions. */
int cas_client__bs_read_start(cas_pump *p, cas_blob_dst *dst, uint64_t *wire,
                              uint64_t *raw);

/* Pack a request message into a malloc'd buffer (never NULL on success,
 * even for an empty message). Returns 0 or DB_ENOMEM. */
int cas_client__pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);

/* Point a protobuf Digest at d (borrowed; packing never writes through
 * it). */
void cas_client__pb_digest_ref(PbDigest *pb, const reapi_digest *d);

#endif
