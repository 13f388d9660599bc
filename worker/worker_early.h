/*
 * Early outputs: the action's stderr goes through a pipe that a watcher
 * thread tees into the stderr file, and when rustc announces its metadata
 * ({"$message_type":"artifact",...,"emit":"metadata"}) the watcher uploads
 * that .rmeta (and the dep-info announced before it) to the CAS and sends
 * WorkerService.Progress with an EarlyOutputs message. The scheduler relays
 * it to the Execute clients, so cargo can start dependent crates while this
 * one is still generating code (cargo's pipelining, across machines).
 *
 * Only files the Command declares as outputs are sent, and only once per
 * run. A failure to send is logged and otherwise ignored: the final
 * ActionResult carries every output anyway.
 *
 * When rustc then announces a declared output with "emit":"link" (the
 * .rlib, written in full by then), the watcher uploads it to the CAS at
 * once: rustc still takes about 10 ms to exit, and the output upload after
 * the run no longer includes it. If the metadata went out, a second
 * Progress names the uploaded file (EarlyOutputs with an empty
 * stderr_prefix), so clients fetch it meanwhile. wk_early_stop() hands
 * back what was
 * uploaded and its identity, so that a file changed since is hashed and
 * uploaded again (worker_outputs.h, wk_known_file).
 *
 * Threading: between wk_early_start() and wk_early_stop() the watcher
 * thread owns cfg->cas (the slot's client, idle while the sandbox runs);
 * the caller must not use it in that window.
 */
#ifndef WORKER_EARLY_H
#define WORKER_EARLY_H

#include <stddef.h>

#include "cas_client.h"
#include "worker_outputs.h"

typedef struct wk_early wk_early;

#define WK_EARLY_MAX_LINKED 4

/* What the watcher did during the run. */
typedef struct wk_early_done {
  int sent;                                  /* EarlyOutputs went out */
  wk_known_file linked[WK_EARLY_MAX_LINKED]; /* "link" outputs uploaded */
  size_t nlinked;
  uint64_t linked_bytes; /* raw bytes those uploads sent */
} wk_early_done;

typedef struct wk_early_cfg {
  cas_client *cas;        /* borrowed, see above */
  const char *worker_id;  /* for ProgressRequest (copied) */
  const char *session_id; /* may be "" (copied) */
  const char *lease_id;   /* (copied) */
  /* The working directory as paths inside the sandbox spell it (rustc's
   * absolute artifact paths start with it) and where it is on the host. */
  const char *sandbox_wd; /* (copied) */
  const char *host_wd;    /* (copied) */
  /* Declared output files, relative to the working directory (copied). */
  const char *const *outputs;
  size_t n_outputs;
  const char *stderr_path; /* the file that gets every byte (created) */
} wk_early_cfg;

/* Create the pipe and the stderr file, and start the watcher.
 * *write_fd: the pipe's write end (O_CLOEXEC) for the sandbox's fd 2; it
 * stays owned by the watcher (closed by wk_early_stop()).
 * Returns 0, DB_ENOMEM, or DB_EIO (pipe, file or thread creation). */
int wk_early_start(const wk_early_cfg *cfg, int *write_fd, wk_early **out);

/* After the sandbox has returned: close the write end, drain what is left
 * (bounded wait if a stray process still holds the pipe), join and free.
 * Returns 0, or DB_EIO if writing the stderr file failed (the file is then
 * incomplete). *done (may be NULL) is filled in (zeroed first).
 * NULL e is a no-op returning 0. */
int wk_early_stop(wk_early *e, wk_early_done *done);

/* Parse one rustc JSON line: 1 and *emit / path (borrowed from buf,
 * NUL-terminated in place) when it is an artifact notification with a
 * plain path, else 0. Exposed for tests. */
int wk_early_parse_artifact(char *buf, const char **emit, const char **path);

#endif
