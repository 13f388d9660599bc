/*
 * Internal to libscheduler: the scheduler state and the helpers shared by
 * its files. Not part of the public API. Loop thread only.
 *
 * Ownership: the ops map owns every sched_op (freed by the retention GC);
 * the workers list owns sched_worker; a worker owns its leases. Watchers
 * are owned by their rpc_call (freed in on_close) and link to their op
 * until the op completes.
 */
#ifndef SCHED_INT_H
#define SCHED_INT_H

#include "sched.h"

#include "distbuild/worker/v1/worker.pb-c.h"
#include "reapi_pb.h"

#include <stdarg.h>

typedef Build__Bazel__Remote__Execution__V2__Action PbAction;
typedef Build__Bazel__Remote__Execution__V2__Command PbCommand;
typedef Build__Bazel__Remote__Execution__V2__Platform PbPlatform;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse PbExecResp;

#define SCHED_STAGE_QUEUED                                                     \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_STAGE__VALUE__QUEUED
#define SCHED_STAGE_EXECUTING                                                  \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_STAGE__VALUE__EXECUTING
#define SCHED_STAGE_COMPLETED                                                  \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_STAGE__VALUE__COMPLETED

/* ---- string-keyed hash map (sched_map.c); keys copied, values borrowed */
typedef struct sched_map sched_map;
int sched_map_new(sched_map **out);
void sched_map_free(sched_map *m); /* values untouched; NULL ok */
void *sched_map_get(const sched_map *m, const char *key);
/* Insert or replace. DB_ENOMEM. */
int sched_map_put(sched_map *m, const char *key, void *val);
/* Remove; returns the old value or NULL. */
void *sched_map_del(sched_map *m, const char *key);
size_t sched_map_size(const sched_map *m);
/* Remove every entry for which drop(key, val, ctx) returns non-zero. */
void sched_map_sweep(sched_map *m, int (*drop)(const char *, void *, void *),
                     void *ctx);

/* ---- platforms ---- */
typedef struct sched_prop {
  char *name;
  char *value;
} sched_prop;

typedef struct sched_platform {
  size_t n;
  sched_prop *p;
} sched_platform;

int sched_platform_copy(sched_platform *dst, const PbPlatform *src);
void sched_platform_clear(sched_platform *p);
/* 1 if every property of want is in have. */
int sched_platform_subset(const sched_platform *want,
                          const sched_platform *have);
/* "k=v,k2=v2" ("(empty)" for none) into buf. */
void sched_platform_str(const sched_platform *p, char *buf, size_t len);

/* Distinct platforms of departed workers remembered (sched.departed). */
#define SCHED_DEPARTED_MAX 64

/* ---- operations ---- */
typedef struct sched_op sched_op;
typedef struct sched_inv sched_inv;
typedef struct sched_lease sched_lease;
typedef struct sched_worker sched_worker;

typedef struct sched_watch {
  rpc_call *call;
  sched_op *op; /* NULL once detached */
  struct sched_watch *next, *prev;
} sched_watch;

struct sched_op {
  char name[64];
  char *dedup_key; /* set while registered in s->inflight */
  reapi_digest action;
  char *instance;
  char *invocation; /* tool_invocation_id ("" if none) */
  int stage;
  int cacheable;
  int64_t timeout_ms;
  sched_platform platform;
  int attempts;          /* dispatches so far */
  uint64_t avoid_worker; /* serial of the worker its last attempt failed on:
                            another one goes first; 0 = none */
  int64_t submitted_ms;  /* rpc_now_ms() at creation */
  int64_t queued_wall_s; /* wall clock, for Assignment.queued_timestamp */
  int32_t queued_wall_ns;
  int64_t unmatched_since; /* 0 while some connected worker matches */
  unsigned matched_gen;    /* s->workers_gen when checked */
  int matchable;
  int64_t done_ms;
  int64_t orphaned_ms; /* when its last watcher left; 0 while watched */
  char *last_error;    /* why the last attempt was lost */
  /* The serialized Action and Command, sent along with each Assignment;
   * freed once the op completes. */
  uint8_t *action_pb, *command_pb;
  size_t action_len, command_len;
  /* Directory messages read while checking the inputs, sent along with
   * each Assignment too (Assignment.directories); freed with the above. */
  ProtobufCBinaryData *dirs;
  size_t n_dirs;
  /* fair queue links (sched_queue.c) */
  sched_inv *inv;
  sched_op *qnext, *qprev;
  sched_lease *lease; /* while EXECUTING */
  sched_watch *watchers;
  uint8_t *final_op; /* serialized final Operation once COMPLETED */
  size_t final_len;
  sched_op *dnext; /* retention FIFO of completed ops */
};

/* ---- fair queue (sched_queue.c): one FIFO per invocation, served
 * round-robin. */
typedef struct sched_queue {
  sched_map *invs; /* tool_invocation_id -> sched_inv */
  sched_inv *ring; /* invocations with queued ops; ring->next is next */
  size_t depth;
} sched_queue;

int sched_queue_init(sched_queue *q);
void sched_queue_clear(sched_queue *q); /* ops are not freed */
/* Append (front = 0) or prepend (front = 1, for requeues). */
int sched_queue_push(sched_queue *q, sched_op *op, const char *invocation,
                     int front);
void sched_queue_remove(sched_queue *q, sched_op *op);
/* Pick the next op round-robin across invocations: within an invocation
 * the oldest op for which can_run(op, ctx) returns non-zero. The op is
 * removed from the queue. NULL if none can run. */
sched_op *sched_queue_pick(sched_queue *q, int (*can_run)(sched_op *, void *),
                           void *ctx);
/* Visit every queued op (the callback must not modify the queue). */
void sched_queue_each(sched_queue *q, void (*fn)(sched_op *, void *),
                      void *ctx);

/* ---- workers ---- */
struct sched_lease {
  char id[64];
  sched_op *op;
  sched_worker *w;
  int64_t start_ms;
  sched_lease *next, *prev;
};

struct sched_worker {
  char *id;
  char *session;
  sched_platform platform;
  int slots;
  int busy;
  rpc_call *call; /* the Connect stream; NULL once gone */
  int64_t joined_ms;
  int64_t last_hb_ms;
  uint64_t serial; /* unique per session, never reused */
  sched_lease *leases;
  sched_worker *next, *prev;
};

typedef struct sched_counters {
  uint64_t submitted, cache_hits, cache_misses, merged, executed, failed,
      requeued, rejected, cancelled;
} sched_counters;

struct sched {
  struct event_base *base;
  rpc_server *srv;
  cas_store *store;
  sched_opts o;
  int stopping;
  sched_map *ops;      /* name -> op */
  sched_map *inflight; /* dedup key -> op (cacheable, not done) */
  sched_map *leases;   /* lease id -> lease */
  sched_map *trees;    /* directory digest -> expiry (complete subtree) */
  sched_queue q;
  sched_worker *workers;
  size_t n_workers;
  unsigned workers_gen; /* bumped when the worker set changes */
  int dispatching;      /* sched_dispatch() is running */
  int redispatch;       /* ... and should loop once more */
  size_t running;
  sched_op *done_head, *done_tail;
  size_t n_done;
  struct event *tick;
  int64_t last_keepalive_ms;
  int64_t last_tick_ms; /* to notice a loop that did not run */
  int64_t started_ms;   /* when this scheduler started */
  /* The distinct platforms of workers that left within the queue timeout,
   * with the time the last of each left: an unmatched action waits only
   * while one of them may come back (sched_tick.c). Platforms owned. */
  struct {
    sched_platform platform;
    int64_t left_ms;
  } departed[SCHED_DEPARTED_MAX];
  size_t n_departed;
  int64_t last_progress_ms; /* last periodic re-send to watchers */
  int orphans;              /* some op may have lost its last watcher */
  int64_t last_orphan_scan_ms;
  uint64_t id_seed;
  uint64_t worker_serial; /* last sched_worker.serial handed out */
  uint64_t id_ctr;
  sched_counters c;
};

/* sched.c */
void sched_new_id(sched *s, const char *prefix, char *buf, size_t len);
char *sched_strdup(const char *s); /* NULL -> "" copy; NULL on OOM */

/* sched_exec.c */
int sched_exec_register(sched *s);
/* Send the op's current stage to every watcher. */
void sched_op_notify(sched *s, sched_op *op);
/* Relay a worker's EarlyOutputs (packed bytes, borrowed) to every watcher
 * as partial_execution_metadata.auxiliary_metadata (stage EXECUTING). */
#define SCHED_TYPE_EARLY "type.googleapis.com/distbuild.worker.v1.EarlyOutputs"
void sched_op_notify_early(sched *s, sched_op *op, const char *worker,
                           const uint8_t *early, size_t early_len);
/* Complete op with resp (borrowed; packed). Finishes every watcher, drops
 * the in-flight entry, starts the retention clock. */
void sched_op_complete(sched *s, sched_op *op, const PbExecResp *resp);
/* Complete with an error status only. */
void sched_op_fail(sched *s, sched_op *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Drop completed ops past retention. */
void sched_ops_gc(sched *s, int64_t now);
/* End every watcher with UNAVAILABLE (shutdown). */
void sched_exec_shutdown(sched *s);
void sched_op_free(sched_op *op);

/* sched_workers.c */
int sched_workers_register(sched *s);
/* Hand queued ops to free worker slots. */
void sched_dispatch(sched *s);
void sched_workers_shutdown(sched *s);
void sched_workers_free(sched *s);
/* Send cmd on a worker's Connect stream; 0 or a negative DB_E* code. */
int sched_worker_send(rpc_call *call,
                      const Distbuild__Worker__V1__WorkerCommand *cmd);
/* End a worker session: requeue (or fail) its leases, free it. */
void sched_worker_gone(sched *s, sched_worker *w, const char *reason);
/* Free a lease and its worker slot; the op is left as it is. */
void sched_lease_end(sched *s, sched_lease *l);
/* The attempt behind l is lost: requeue its op, or fail it after
 * max_attempts. Frees l. */
void sched_lease_lost(sched *s, sched_lease *l, const char *reason);
/* Tell l's worker to drop or kill the attempt (cancel_lease_id); l stays
 * (end or lose it next). */
void sched_lease_cancel(sched_lease *l);

/* sched_tick.c */
/* Liveness, keepalives, lease overruns, queue and orphan timeouts. */
void sched_tick(sched *s, int64_t now);

/* sched_check.c */
/* Load and parse the Action. On failure returns non-zero and fills st
 * (FAILED_PRECONDITION with PreconditionFailure details when missing,
 * INVALID_ARGUMENT when malformed). *out: free with
 * build__bazel__remote__execution__v2__action__free_unpacked. On success
 * *raw (malloc'd, caller frees; may be NULL for an empty message) and
 * *raw_len receive the serialized Action. */
int sched_check_action(sched *s, const reapi_digest *d, PbAction **out,
                       uint8_t **raw, size_t *raw_len, rpc_status *st);
/* Load and validate the Command, and check the whole input tree is in the
 * CAS. On failure returns non-zero and fills st. *cmd_out is the parsed
 * Command (caller frees with ..._command__free_unpacked); on success *raw
 * and *raw_len receive it serialized, as for sched_check_action, and
 * *dirs / *n_dirs the serialized Directory messages the walk read (at most
 * SCHED_INLINE_DIRS_MAX bytes in all; free with sched_dirs_free). */
int sched_check_inputs(sched *s, const PbAction *a, PbCommand **cmd_out,
                       uint8_t **raw, size_t *raw_len,
                       ProtobufCBinaryData **dirs, size_t *n_dirs,
                       rpc_status *st);
/* Free n serialized Directory messages and the array. NULL ok. */
void sched_dirs_free(ProtobufCBinaryData *dirs, size_t n);
/* Build a serialized google.rpc.Status with a PreconditionFailure listing
 * digests as MISSING into st (code FAILED_PRECONDITION). */
int sched_check_missing_status(const reapi_digest *missing, size_t n,
                               const char *what, rpc_status *st);

#endif
