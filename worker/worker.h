/*
 * libworker: the cargo-distbuild worker (issue 4).
 *
 * A worker connects out to the scheduler (WorkerService.Connect), receives
 * Assignments, and for each one fetches the Action, Command and input root
 * from the CAS into a local cache, materialises the input root (hardlinks
 * out of the cache; large immutable subtrees such as a Rust toolchain bound
 * read-only from a cache of materialised Directory trees), runs the command
 * in the sandbox (libsandbox), uploads the outputs and reports an
 * ExecuteResponse with WorkerService.Complete.
 *
 * Threads: one session thread (Connect stream + heartbeats), one thread per
 * slot (each with its own cas_client), one HTTP thread (/healthz, /metrics).
 */
#ifndef WORKER_H
#define WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "reapi_pb.h"
#include "rpc_client.h"
#include "sandbox.h"

/* Default mount point of the input root inside the sandbox when neither the
 * Action's nor the Command's platform names one ("exec-root-path"). */
#define WORKER_DEFAULT_EXEC_ROOT "/work"
/* Platform property naming the absolute path the input root is mounted at
 * (shared with the scheduler and the wrapper). */
#define WORKER_EXEC_ROOT_PROPERTY REAPI_PROP_EXEC_ROOT

typedef struct worker_config {
  const char *id;            /* "worker-1" */
  const char *scheduler;     /* "HOST:PORT" or "grpcs://HOST:PORT" */
  const char *instance_name; /* default instance for CAS calls ("") */
  /* TLS material (used with a grpcs:// scheduler) and metadata headers for
   * every connection to the scheduler: the session and each slot's CAS
   * client. Strings borrowed; all NULL by default. */
  rpc_channel_opts channel;
  int http_port;             /* /healthz + /metrics on 127.0.0.1; 0 = off */
  int slots;                 /* concurrent actions; >= 1 */
  const char *cache_dir;     /* local cache root (created) */
  uint64_t cache_bytes;      /* file-cache budget (LRU) */
  uint64_t tree_cache_bytes; /* tree-cache budget; 0 = cache_bytes */
  sbx_mode sandbox_mode;
  /* Platform properties as "K=V" (borrowed), announced to the scheduler. */
  const char *const *platform;
  size_t n_platform;
  /* Immutable-subtree detection: a directory of the input root whose
   * subtree holds more than tree_min_files files or tree_min_bytes bytes,
   * or whose path starts with one of tree_prefixes, and which contains no
   * output path, is bound read-only from the tree cache. */
  uint64_t tree_min_files;
  uint64_t tree_min_bytes;
  const char *const *tree_prefixes;
  size_t n_tree_prefixes;
  /* Sandbox limits applied to every action (0 = none). */
  uint64_t memory_limit;
  uint32_t pids_limit;
  /* Added to every action's niceness (0..19; default 0). For a worker
   * that shares its machine with interactive work, as icecream's daemon
   * nices its compiles. On a dedicated 2-CPU test machine 5 vs 0 made no
   * measurable difference to a cold build (16 interleaved pairs). */
  uint32_t nice;
  /* Inline stdout/stderr into the ActionResult below this size. */
  size_t inline_limit;
  /* Jobserver tokens shared by the actions' compilers (worker_jobs.h);
   * 0 = no jobserver. */
  unsigned jobs;
  /* A download of at least fetch_min_bytes into the cache (the toolchain
   * on a new worker) is split across up to fetch_threads connections and
   * threads; 1 = one. */
  int fetch_threads;
  uint64_t fetch_min_bytes;
} worker_config;

/* Fill |cfg| with defaults (slots = jobs = number of CPUs, cache 10 GiB,
 * fetch threads = CPUs up to 4, ...).
 * Strings point to static storage or stay NULL (id, scheduler). */
void worker_config_defaults(worker_config *cfg);

/* Run a worker until *stop becomes non-zero (set it from a signal handler).
 * Returns 0 after a clean stop or a negative DB_E* code when start-up
 * fails (cache directory unusable, HTTP port taken, ...). */
int worker_run(const worker_config *cfg, volatile sig_atomic_t *stop);

#endif
