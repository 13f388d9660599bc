/*
 * Internals shared by cas_store.c (open, put/get, action cache),
 * cas_store_index.c (hash table + LRU + start-up scan) and
 * cas_store_stream.c (streaming writer and reader). Not a public header.
 *
 * Locking (order: ns_mu before mu; pool_mu is a leaf):
 *   mu      guards the index, the LRU list and the counters. It is held
 *           only for in-memory work, never across a system call, so
 *           cas_store_has() on a hit costs one uncontended lock.
 *   ns_mu   serialises changes to the names under cas/ (rename into
 *           place, unlink on eviction or corruption). Holding it while
 *           checking the index and renaming makes "is it there yet?" and
 *           "put it there" one step, so two writers of the same blob
 *           produce one file and an eviction can never unlink a file a
 *           concurrent writer has just renamed into place.
 *   pool_mu guards the zstd context pools.
 */
#ifndef CAS_STORE_INT_H
#define CAS_STORE_INT_H

#include "cas_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zstd.h>

enum { CAS_FMT_RAW = 0, CAS_FMT_ZSTD = 1 };

/* Below this size a blob is stored raw without trying zstd: a frame costs
 * ~10 bytes of header and the file takes a disk block either way. */
#define CAS_TINY_BLOB 64
/* Kept compressed only when the frame is below 97% of the raw size. */
#define CAS_KEEP_ZSTD(stored, logical) ((stored)*100 < (logical)*97)
/* Recency is persisted as file mtime at most this often per blob. */
#define CAS_TOUCH_SECS 600
/* I/O chunk for streaming paths. */
#define CAS_IO_CHUNK (128 * 1024)
#define CAS_POOL_MAX 16
/* cas_store_put_batch: blobs up to this size are compressed in memory (one
 * write each); larger ones stream through a CAS_IO_CHUNK buffer. */
#define CAS_BATCH_INMEM_MAX ((size_t)1 << 20)
/* cas_store_put_batch: up to this many new blobs are fdatasync'd one by
 * one; more share one syncfs (measured: bench/cas_store). */
#define CAS_BATCH_FSYNC_MAX 1
/* "cas/ab/<64 hex>-<20 digits>.z" plus NUL, with room to spare. */
#define CAS_PATH_MAX 112

typedef struct cas_key {
  uint8_t hash[32];
  int64_t size;
} cas_key;

typedef struct cas_entry {
  cas_key key;
  uint64_t stored; /* bytes on disk */
  uint64_t gen;    /* unique per insert: tells a reader whether the entry it
                      opened is still the indexed one */
  int64_t touched; /* seconds; mtime last written to the file */
  int fmt;         /* CAS_FMT_* */
  struct cas_entry *hnext;       /* bucket chain */
  struct cas_entry *prev, *next; /* LRU list; also victim list (next) */
} cas_entry;

typedef struct cas_index {
  cas_entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  cas_entry lru; /* sentinel: lru.next is most recent, lru.prev least */
} cas_index;

typedef struct cas_ac_pending cas_ac_pending;

struct cas_store {
  int rootfd; /* all paths are relative to it; flock'd for exclusivity */
  pid_t pid;
  uint64_t max_bytes;
  int level;
  pthread_mutex_t mu;
  pthread_mutex_t ns_mu;
  pthread_mutex_t pool_mu;
  cas_index idx;
  uint64_t stored_bytes, logical_bytes, evictions, next_gen;
  atomic_uint_fast64_t tmp_seq;
  ZSTD_CCtx *cpool[CAS_POOL_MAX];
  int ncpool;
  ZSTD_DCtx *dpool[CAS_POOL_MAX];
  int ndpool;
  /* Background durability (cas_store_sync.c); sync_mu guards all below
   * and is a leaf lock except that the syncer calls cas_drop_key (ns_mu,
   * mu) without holding it. */
  int sync_mode; /* CAS_SYNC_* */
  int sync_delay_ms;
  int syncfd; /* -1 unless background */
  int sync_inited, syncer_started;
  pthread_t syncer;
  pthread_mutex_t sync_mu;
  pthread_cond_t sync_cv;      /* to the syncer: work or stop */
  pthread_cond_t sync_done_cv; /* from the syncer: a round finished */
  int sync_dirty, sync_now, sync_stop;
  cas_key *epoch; /* blobs published since the last round started */
  size_t nepoch, epoch_cap;
  cas_ac_pending *ac_pending; /* newest first */
  uint64_t rounds_started, syncs, sync_failures, flushed_failures;
};

/* ---- cas_store_index.c ---- */
int cas_idx_init(cas_index *idx);
void cas_idx_free(cas_index *idx); /* frees every entry */
cas_entry *cas_idx_find(cas_index *idx, const cas_key *k);
int cas_idx_insert(cas_index *idx, cas_entry *e); /* DB_ENOMEM on growth */
void cas_idx_remove(cas_index *idx, cas_entry *e);
void cas_idx_lru_front(cas_index *idx, cas_entry *e); /* most recent */
/* Scan cas/ and fill the index, least recent (oldest mtime) last. */
int cas_idx_load(cas_store *s);
/* Under mu: unlink LRU entries until the budget holds, never `keep`.
 * Returns the victims chained through ->next; the caller unlinks their
 * files (under ns_mu) and frees them. */
cas_entry *cas_idx_evict_locked(cas_store *s, const cas_entry *keep);

/* ---- cas_store.c ---- */
/* Lowercase hex of k's hash into hex (at least 65 bytes). */
void cas_key_hex(const cas_key *k, char *hex);
int cas_key_from_digest(const reapi_digest *d, cas_key *k);
int cas_is_empty_digest(const reapi_digest *d);
void cas_blob_path(const cas_key *k, int fmt, char *buf);
int cas_parse_blob_name(const char *name, cas_key *k, int *fmt);
int cas_err_errno(void);
int cas_write_all(int fd, const void *buf, size_t len);
/* Create tmp/<unique>; name receives the relative path (CAS_PATH_MAX). */
int cas_tmp_create(cas_store *s, char *name, int *fd);
/* fdatasync tmp, rename it to the blob path unless the blob is already
 * indexed, index it and evict. The temp name is gone afterwards in every
 * case; fd is not closed. */
/* cas_publish() for a temp file whose data is already durable (a batch
 * synced with syncfs). Same results and locking as cas_publish(). */
int cas_publish_synced(cas_store *s, const char *tmpname, const cas_key *k,
                       int fmt, uint64_t stored);
int cas_publish(cas_store *s, const char *tmpname, int fd, const cas_key *k,
                int fmt, uint64_t stored);
/* Drop a blob whose file was found corrupt, if entry gen still matches. */
void cas_drop_corrupt(cas_store *s, const cas_key *k, uint64_t gen);
/* Drop whatever blob is indexed under k (a failed background sync). */
void cas_drop_key(cas_store *s, const cas_key *k);
/* Look up and refresh recency; copies out fmt, stored size and gen. */
int cas_lookup(cas_store *s, const cas_key *k, int *fmt, uint64_t *stored,
               uint64_t *gen);
ZSTD_CCtx *cas_cctx_get(cas_store *s);
void cas_cctx_put(cas_store *s, ZSTD_CCtx *c);
ZSTD_DCtx *cas_dctx_get(cas_store *s);
void cas_dctx_put(cas_store *s, ZSTD_DCtx *d);
/* Decompress zstd file `in` (from offset 0) into raw file `out`. */
int cas_unzstd_file(cas_store *s, int in, int out);

/* ---- cas_store_sync.c ---- */
void cas_ac_path(const cas_key *k, char *buf);
/* Set up the sync state; starts the syncer thread in background mode. */
int cas_sync_start(cas_store *s);
/* Final round (background mode), join, free. Safe if never started. */
void cas_sync_stop(cas_store *s);
/* A blob was renamed into place without a sync: remember it for the next
 * round and wake the syncer. */
int cas_sync_note_blob(cas_store *s, const cas_key *k);
/* Queue an action-cache entry whose data is in tmpname (not yet synced):
 * it is renamed into place after the next successful round, and served
 * from a copy of data until then. Takes over tmpname on success. */
int cas_sync_ac_put(cas_store *s, const cas_key *k, const char *tmpname,
                    const void *data, size_t len);
/* The newest queued entry for k: 0, DB_ENOTFOUND or DB_ENOMEM. */
int cas_sync_ac_get(cas_store *s, const cas_key *k, uint8_t **data,
                    size_t *len);
/* Queued entries for k are dropped instead of renamed; 1 if there were. */
int cas_sync_ac_remove(cas_store *s, const cas_key *k);
void cas_sync_stats(cas_store *s, uint64_t *syncs, uint64_t *failures);

#endif
