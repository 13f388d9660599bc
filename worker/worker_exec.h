/*
 * One action, start to finish: fetch Action + Command, materialise the
 * input root, run the command in the sandbox, collect and upload outputs,
 * and build the ExecuteResponse for WorkerService.Complete.
 *
 * Exec-root convention: the input root is mounted inside the sandbox at
 * the absolute path named by the platform property "exec-root-path"
 * (Action.platform first, then the deprecated Command.platform), so that
 * absolute client paths (rustc's --remap-path-prefix-free output, dep-info)
 * come out as in a local build; without it, at /work. With
 * --sandbox=none the command runs in the host action directory instead.
 */
#ifndef WORKER_EXEC_H
#define WORKER_EXEC_H

#include <stdint.h>

#include "cas_client.h"
#include "distbuild/worker/v1/worker.pb-c.h"
#include "sandbox.h"
#include "worker.h"
#include "worker_cache.h"
#include "worker_int.h"
#include "worker_jobs.h"

typedef struct wk_exec_env {
  const worker_config *cfg;
  wk_cache *cache;
  wk_jobs *jobs;   /* the shared jobserver, or NULL */
  cas_client *cas; /* this thread's */
  wk_metrics *metrics;
  const sbx_features *feat;
  int slot;
  int cancel_fd;       /* readable: the scheduler cancelled this slot's
                          current action (borrowed; -1 = never) */
  uint64_t seq;        /* per-slot counter for action directory names */
  char session_id[80]; /* current scheduler session, for Progress */
} wk_exec_env;

typedef struct wk_exec_result {
  wk_arena arena; /* owns resp and everything it points to */
  Build__Bazel__Remote__Execution__V2__ExecuteResponse *resp;
  /* The action's directory, still on disk: removing a tree of hardlinks
   * takes milliseconds, which the result need not wait for. */
  char dir[4096];
} wk_exec_result;

/* Run one assignment. Always fills out->resp (its status tells infra
 * failures apart from completed runs) unless memory runs out (DB_ENOMEM).
 * When env->cancel_fd turns readable the sandbox is killed and the status
 * is CANCELLED, with no result and no outputs uploaded.
 * Free with wk_exec_result_free(), after sending the result: it also
 * removes the action's directory. */
int wk_exec_run(wk_exec_env *env, const Distbuild__Worker__V1__Assignment *a,
                wk_exec_result *out);
void wk_exec_result_free(wk_exec_result *r);

#endif
