/*
 * The remote half of one wrapper call: action-cache lookup, upload of the
 * missing inputs, Execute (following the Operation stream, WaitExecution
 * when the stream breaks), and download of the outputs.
 *
 * Outcome: WRAP_REMOTE_HIT / WRAP_REMOTE_EXECUTED with the rustc exit code,
 * outputs written (atomically, modes from the ActionResult) and stdout /
 * stderr captured in memory for the caller to replay; or a negative DB_E*
 * code for an infrastructure failure with a one-line reason in
 * res->reason (the caller falls back to local rustc).
 *
 * Ownership: wrap_remote_result owns its buffers; wrap_remote_result_clear()
 * frees them. A wrap_remote is one connection to the scheduler; not
 * thread-safe.
 */
#ifndef WRAP_REMOTE_H
#define WRAP_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_client.h"
#include "wrap_action.h"

enum { WRAP_REMOTE_HIT = 1, WRAP_REMOTE_EXECUTED = 2 };

/* Why the scheduler was given up on (wrap_remote_result.sched_down). */
enum { WRAP_SCHED_UNREACHABLE = 1, WRAP_SCHED_SILENT = 2 };

typedef struct wrap_remote_result {
  int exit_code;
  uint8_t *out; /* stdout bytes */
  size_t out_len;
  uint8_t *err; /* stderr bytes */
  size_t err_len;
  int64_t exec_ms; /* execution duration from ExecutedActionMetadata */
  char worker[64];
  uint64_t up_raw, up_wire, down_raw, down_wire;
  size_t up_blobs;
  char reason[256]; /* infrastructure failure, for the fallback line */
  int sched_down;   /* 0, or WRAP_SCHED_*: the scheduler refused the
                       connection, or stopped answering */
  /* Phase wall times in ms, for the debug timing line: this client's
   * lookup / upload / Execute stream / output download, and the worker's
   * queue-to-start, input fetch, run and output upload (from the
   * ExecutedActionMetadata timestamps; 0 when absent). */
  int64_t t_lookup, t_upload, t_execute, t_download;
  int64_t w_queue, w_inputs, w_run, w_outputs;
  /* Early outputs (see worker_early.h): files written while the action
   * still ran, and whether the stderr prefix announcing them has already
   * been written to our stderr (then the final stderr is replayed from
   * where the prefix ends, and nothing may announce them again). */
  char **early_paths; /* absolute, owned */
  reapi_digest *early_digests;
  size_t n_early;
  int early_released;
  uint8_t *early_err; /* the released prefix, owned */
  size_t early_err_len;
} wrap_remote_result;

typedef struct wrap_remote wrap_remote;

/* Progress callback. stage "miss": after upload, before Execute (return
 * value ignored). stage "early": early outputs were just written to disk;
 * return 1 to let the stderr prefix that announces them go to our stderr
 * now (the caller checked e.g. the early dep-info), 0 to hold it until the
 * action ends. */
typedef int (*wrap_remote_progress_fn)(void *ctx, const char *stage,
                                       const wrap_remote_result *r);

/* target "HOST:PORT" or "grpcs://HOST:PORT" (copied). channel: TLS
 * material and metadata headers for every connection (borrowed: it must
 * outlive r, which connects again for early outputs; NULL = none).
 * timeout_ms bounds one Execute. stall_ms (0 = never): a call that moves
 * nothing for this long fails, and an Execute stream quiet for half of it
 * is checked with a probe call that must be answered within stall_ms;
 * either failure is WRAP_SCHED_SILENT. A TLS failure (RPC_TLS_PREFIX)
 * sets no sched_down: it is as quick to meet again, and each fallback
 * line then names it. DB_EINVAL for a bad target. */
int wrap_remote_new(const char *target, const rpc_channel_opts *channel,
                    int64_t timeout_ms, int64_t stall_ms, wrap_remote **out);
void wrap_remote_free(wrap_remote *r); /* NULL ok */

/* Run act remotely. Returns WRAP_REMOTE_HIT, WRAP_REMOTE_EXECUTED or a
 * negative DB_E* (res->reason says why). */
int wrap_remote_run(wrap_remote *r, const wrap_action *act,
                    wrap_remote_progress_fn progress, void *pctx,
                    wrap_remote_result *res);

void wrap_remote_result_clear(wrap_remote_result *res);

#endif
