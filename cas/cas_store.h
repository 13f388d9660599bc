/*
 * On-disk content-addressable store and action-cache store.
 *
 * Layout under root:
 *   cas/XX/HASH-SIZE.z   zstd-compressed blob (XX = first two hex digits)
 *   cas/XX/HASH-SIZE.r   blob kept raw (it did not compress)
 *   ac/XX/HASH-SIZE      serialized ActionResult, keyed by action digest
 *   tmp/                 temporary files; anything here at start-up is
 *                        a leftover of a crash and is deleted
 * A blob is written to tmp/, verified against its digest and renamed into
 * place. Durability is chosen at open (cas_store_opts.sync):
 *   CAS_SYNC_EACH        fsync'd (a batch: one syncfs for all its blobs)
 *                        before the rename, so a crash never leaves a
 *                        visible partial blob. Each write waits for the
 *                        disk (milliseconds on virtual disks).
 *   CAS_SYNC_BACKGROUND  renamed at once; a syncer thread makes everything
 *                        durable with one syncfs per burst (group commit,
 *                        sync_delay_ms after the first write). A crash of
 *                        the machine may lose blobs of the last interval,
 *                        or leave them empty or torn: the start-up scan
 *                        drops short files and readers verify digests, so
 *                        that is a miss, never wrong data. An action-cache
 *                        entry is only renamed into place after a syncfs
 *                        that covers it and the blobs written before it
 *                        (until then cas_ac_get serves it from memory), so
 *                        a durable entry never references a lost blob
 *                        that it was written after. A process crash loses
 *                        only such queued entries.
 *
 * The in-memory index (digest -> stored size, format, LRU position) is
 * rebuilt by scanning cas/ at open. When the stored bytes exceed the
 * budget, least-recently-used blobs are evicted.
 *
 * Threading: every function is safe to call from several threads at once
 * on the same store (an internal mutex guards the index; file I/O runs
 * outside it). Readers and writers handles are single-threaded.
 *
 * Errors: 0 or a negative DB_E* code. DB_ENOSPC for a full disk or a blob
 * larger than the whole budget; DB_EDIGEST when content does not match.
 */
#ifndef CAS_STORE_H
#define CAS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "reapi_digest.h"

typedef struct cas_store cas_store;
typedef struct cas_writer cas_writer;
typedef struct cas_reader cas_reader;

enum { CAS_SYNC_EACH = 0, CAS_SYNC_BACKGROUND = 1 };
#define CAS_SYNC_DELAY_MS_DEFAULT 20

typedef struct cas_store_opts {
  const char *root;   /* directory, created if missing (copied) */
  uint64_t max_bytes; /* budget for stored (on-disk) bytes; 0 = none */
  int zstd_level;     /* 0 = default (3) */
  int sync;           /* CAS_SYNC_*; 0 = CAS_SYNC_EACH */
  int sync_delay_ms;  /* background: group-commit delay; 0 = default */
} cas_store_opts;

typedef struct cas_store_stats {
  uint64_t blobs;
  uint64_t stored_bytes;  /* on disk */
  uint64_t logical_bytes; /* uncompressed sizes */
  uint64_t evictions;
  uint64_t syncs;         /* background sync rounds finished */
  uint64_t sync_failures; /* rounds whose syncfs failed */
} cas_store_stats;

/* Open (and index) a store. *out owned by caller: cas_store_close().
 * DB_EINVAL for bad opts, DB_EEXIST if another process has the root. */
int cas_store_open(const cas_store_opts *opts, cas_store **out);
/* Background mode: makes everything written so far durable first. */
void cas_store_close(cas_store *s); /* NULL ok */

/* Background mode: block until everything written before the call is
 * durable and queued action-cache entries are in place. DB_EIO if a sync
 * failed since the last flush (those blobs were dropped). A no-op (0) in
 * CAS_SYNC_EACH mode. */
int cas_store_flush(cas_store *s);
void cas_store_get_stats(cas_store *s, cas_store_stats *out);

/* 1 if present (the empty blob always is), 0 if not. Refreshes the blob's
 * LRU position when present. */
int cas_store_has(cas_store *s, const reapi_digest *d);

/* Store a whole blob: verify data against d, compress, write atomically.
 * Storing an existing blob is a cheap success. */
int cas_store_put(cas_store *s, const reapi_digest *d, const void *data,
                  size_t len);

/* Store many whole blobs at once (BatchUpdateBlobs): the same checks and
 * format choice as cas_store_put() for each blob, but one durability point
 * for the whole batch instead of one fdatasync per blob. Each blob is
 * verified against digests[i] (DB_EDIGEST: nothing stored for it),
 * compressed (one reused zstd context; blobs under 64 bytes or that do not
 * compress stay raw) and written to a temp file; then all temp files are
 * made durable together with one syncfs() of the store's filesystem (or one
 * fdatasync per file when the batch is so small that this is faster), and
 * only then each is renamed into place and indexed. A crash at any point
 * leaves every visible blob complete; a failed sync stores nothing.
 *
 * results[i] receives 0 or the DB_E* code of blob i (DB_EINVAL for a bad
 * digest, DB_EDIGEST, DB_ENOSPC, DB_EIO, ...). Blobs already present, the
 * empty blob and repeats of a digest within the batch are cheap successes
 * (a repeat gets the result of its first occurrence). Returns 0 when every
 * results[i] is meaningful; a negative DB_E* (DB_EINVAL for NULL arrays
 * with n > 0, DB_ENOMEM) only for a failure of the whole call, which then
 * stores nothing and sets every results[i] to that code. datas[i] may be
 * NULL when lens[i] is 0. Thread-safe like cas_store_put(); concurrent
 * batches and single puts of the same blob produce one file. */
int cas_store_put_batch(cas_store *s, size_t n, const reapi_digest *digests,
                        const void *const *datas, const size_t *lens,
                        int *results);

/* As cas_store_put_batch(), with an optional ready zstd frame per blob
 * (additive API for BatchUpdateBlobs items that arrive compressed): when
 * frames is non-NULL and frames[i] is non-NULL, frames[i] (frame_lens[i]
 * bytes) must be exactly one complete zstd frame that decodes to datas[i];
 * the caller guarantees this (e.g. it produced datas[i] by decoding it).
 * datas[i] is still what is verified against digests[i]. If the frame pays
 * (same "< 97%" rule, blob not tiny) it is written as is instead of
 * recompressing datas[i]; otherwise the blob is handled as without it. */
int cas_store_put_batch_frames(cas_store *s, size_t n,
                               const reapi_digest *digests,
                               const void *const *datas, const size_t *lens,
                               const void *const *frames,
                               const size_t *frame_lens, int *results);

/* Read a whole blob, uncompressed. *data is malloc'd (caller frees; NULL
 * for the empty blob). DB_ENOTFOUND if absent. */
int cas_store_get(cas_store *s, const reapi_digest *d, uint8_t **data,
                  size_t *len);

/* ---- Streaming write (ByteStream Write, large uploads) ----
 * input_is_zstd: the bytes fed are one zstd frame of the blob; they are
 * decompressed to verify the digest. The writer owns a temp file until
 * commit or abort. */
int cas_writer_new(cas_store *s, const reapi_digest *d, int input_is_zstd,
                   cas_writer **out);
/* Feed bytes. Fails early with DB_EDIGEST when the uncompressed length
 * exceeds d->size, DB_ECOMPRESS on a corrupt zstd stream, DB_ENOSPC when
 * the disk is full. After a failure only abort is valid. */
int cas_writer_write(cas_writer *w, const void *data, size_t len);
/* Bytes accepted so far, in input space (compressed bytes for zstd). */
int64_t cas_writer_offset(const cas_writer *w);
/* Verify digest and size, then atomically publish. Frees w in every case.
 * DB_EDIGEST (nothing stored) on mismatch. */
int cas_writer_commit(cas_writer *w);
void cas_writer_abort(cas_writer *w); /* discard; frees w; NULL ok */

/* ---- Streaming read (ByteStream Read) ----
 * as_zstd = 0: uncompressed bytes starting at offset.
 * as_zstd = 1: one zstd frame of the blob (the stored frame when the blob
 *              is kept compressed; compressed on the fly otherwise); offset
 *              must be 0.
 * An open reader keeps the blob readable even if it is evicted meanwhile.
 * DB_ENOTFOUND if absent, DB_EINVAL for offset > size. */
int cas_reader_open(cas_store *s, const reapi_digest *d, int64_t offset,
                    int as_zstd, cas_reader **out);
/* Read up to cap bytes into buf; *n = 0 means end. DB_EIO / DB_EDIGEST
 * (on-disk corruption detected; the blob is then dropped from the store). */
int cas_reader_read(cas_reader *r, void *buf, size_t cap, size_t *n);
void cas_reader_close(cas_reader *r); /* NULL ok */

/* ---- Action cache: serialized ActionResult keyed by action digest ---- */

/* *data malloc'd (caller frees). DB_ENOTFOUND if absent. The caller checks
 * that the referenced output blobs still exist. */
int cas_ac_get(cas_store *s, const reapi_digest *action, uint8_t **data,
               size_t *len);
/* Replace atomically (temp file + rename). */
int cas_ac_put(cas_store *s, const reapi_digest *action, const void *data,
               size_t len);
/* Remove an entry (e.g. one that references evicted blobs). */
int cas_ac_remove(cas_store *s, const reapi_digest *action);

#endif
