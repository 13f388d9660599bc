/*
 * CAS client helpers on top of rpc_client: upload and download sets of
 * blobs (FindMissingBlobs first, small blobs in BatchUpdateBlobs /
 * BatchReadBlobs, large ones through ByteStream compressed-blobs/zstd, all
 * in parallel over one multiplexed HTTP/2 connection), and fetching a
 * whole input tree into a directory. Every downloaded blob is verified
 * against its digest before it becomes visible.
 *
 * Threading: a cas_client is single-threaded (one per thread).
 * Errors: 0 or a negative DB_E* code; the last remote status (code and
 * message) is available through cas_client_last_status() for logging.
 */
#ifndef CAS_CLIENT_H
#define CAS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "reapi_digest.h"
#include "rpc_client.h"
#include "rpc_status.h"

typedef struct cas_client cas_client;

typedef struct cas_client_opts {
  const char *instance_name; /* "" by default (copied) */
  size_t batch_limit;        /* max bytes per batch request; 0 = ask the
                                server's Capabilities (fallback 4 MiB) */
  size_t stream_threshold;   /* blobs >= this go through ByteStream;
                                0 = 1 MiB */
  int max_inflight;          /* concurrent RPCs; 0 = 16 */
  int zstd_level;            /* 0 = 1 (fast, the wire is loopback/LAN) */
  int64_t timeout_ms;        /* per RPC; 0 = 60000 */
  int idle_timeout_ms;       /* rpc_client_opts.idle_timeout_ms; 0 = off */
  /* TLS material and metadata headers (rpc_client_opts.channel; borrowed,
   * copied by cas_client_new); NULL = none. */
  const rpc_channel_opts *channel;
} cas_client_opts;

/* target as for rpc_client_new ("HOST:PORT", "grpcs://HOST:PORT"). opts
 * may be NULL. DB_EINVAL for a bad target or channel header. */
int cas_client_new(const char *target, const cas_client_opts *opts,
                   cas_client **out);
void cas_client_free(cas_client *c); /* NULL ok */

/* The underlying rpc_client (borrowed), e.g. to make other REAPI calls on
 * the same connection. */
struct rpc_client *cas_client_rpc(cas_client *c);

/* Status of the last failed remote call (borrowed; valid until the next
 * call). */
const rpc_status *cas_client_last_status(const cas_client *c);

/* A blob to upload: either in memory (data) or in a file (path). The
 * digest must be right; the server rejects mismatches. */
typedef struct cas_blob_src {
  reapi_digest digest;
  const void *data; /* borrowed, or NULL when path is set */
  const char *path; /* borrowed, or NULL when data is set */
} cas_blob_src;

/* Which of digests[0..n) the server lacks (never the empty blob; each
 * missing digest listed once). *missing is malloc'd (caller
 * frees), *nmissing its length. */
int cas_client_find_missing(cas_client *c, const reapi_digest *digests,
                            size_t n, reapi_digest **missing, size_t *nmissing);

/* Upload what the server is missing among blobs[0..n). Duplicates are
 * fine; the empty blob is never sent. A file source must still match its
 * digest's size (DB_EDIGEST otherwise). *bytes_raw / *bytes_wire (may be NULL)
 * receive the uncompressed and on-the-wire byte counts actually uploaded.
 * When the upload fails as damaged data does (the server refused the bytes
 * as not matching the digest we computed, or a stream broke on a protocol
 * error), what is still missing is uploaded once more, one RPC at a time,
 * before the call fails. */
int cas_client_upload(cas_client *c, const cas_blob_src *blobs, size_t n,
                      uint64_t *bytes_raw, uint64_t *bytes_wire);

/* A download destination: into memory (*data malloc'd, caller frees) when
 * path is NULL, else written atomically to path (temp file + rename) with
 * the given mode. */
typedef struct cas_blob_dst {
  reapi_digest digest;
  const char *path; /* borrowed; NULL = memory */
  int mode;         /* file mode when path is set, e.g. 0644 or 0755 */
  uint8_t *data;    /* out, memory destinations */
  size_t len;       /* out */
} cas_blob_dst;

/* Download dsts[0..n), verifying each digest. DB_ENOTFOUND if the server
 * lacks any (the others may already be written). data/len are reset on
 * entry; whatever the result, the caller frees every dst's data (NULL for
 * file destinations and for the empty blob, which is never fetched).
 * Duplicate digests are fetched once and copied. */
int cas_client_download(cas_client *c, cas_blob_dst *dsts, size_t n,
                        uint64_t *bytes_raw, uint64_t *bytes_wire);

/* Materialise the Directory tree rooted at root into dir (created if
 * missing; must be empty or absent): directories, files (executable bit
 * honoured) and symlinks. Uses GetTree, then downloads the files. */
int cas_client_fetch_tree(cas_client *c, const reapi_digest *root,
                          const char *dir);

#endif
