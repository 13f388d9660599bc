/*
 * The worker's jobserver: one GNU make jobserver shared by every slot, so
 * that the compilers of concurrent actions share the worker's CPUs the way
 * cargo's -jN shares them between local rustc processes.
 *
 * Without it, rustc finds no jobserver and makes its own with 32 tokens:
 * each action then runs up to 16 LLVM threads, and two actions on a
 * 2-CPU worker run 32 threads on 2 CPUs. Measured locally, that costs
 * about 5% of a build's wall time.
 *
 * The jobserver is a FIFO in the worker's cache directory, opened by the
 * worker for its whole life (a FIFO's tokens live only while someone
 * holds it open). It starts with |tokens| one-byte tokens. Each action
 * takes one token for its own process (its "implicit" token) when one is
 * free, and gives it back when it ends, so a lone action may use every CPU
 * and two actions share them. The action sees the FIFO as /dev/jobserver
 * (the path with --sandbox=none) through
 *   CARGO_MAKEFLAGS=-j --jobserver-auth=fifo:PATH
 * which rustc, cargo and the jobserver crate read.
 *
 * An action killed while holding tokens (timeout, OOM) would leak them,
 * and a hostile one may take or add tokens. Whenever no action is running,
 * the pool is reset to exactly |tokens|: nobody holds one then.
 *
 * Thread-safe. Errors: negative DB_E* codes.
 */
#ifndef WORKER_JOBS_H
#define WORKER_JOBS_H

typedef struct wk_jobs wk_jobs;

/* Create the FIFO <dir>/jobserver (replacing a stale one), mode 0666 so
 * the sandbox's unprivileged user may open it, and fill it with |tokens|
 * (1..4096) tokens. *out is owned by the caller (wk_jobs_free).
 * Returns 0, DB_EINVAL, DB_ESYS or DB_ENOMEM. */
int wk_jobs_new(const char *dir, unsigned tokens, wk_jobs **out);

/* Close and remove the FIFO. NULL is accepted. */
void wk_jobs_free(wk_jobs *j);

/* The FIFO's host path (owned by |j|). */
const char *wk_jobs_path(const wk_jobs *j);

/* An action starts: take its implicit token if one is free (never
 * blocks). Returns 1 when a token was taken, else 0; pass it to
 * wk_jobs_end. */
int wk_jobs_begin(wk_jobs *j);

/* An action ended (every process of it is gone): return its token, and
 * reset the pool when no action is running any more. */
void wk_jobs_end(wk_jobs *j, int took);

/* Tokens in the FIFO now (for tests); DB_ESYS on error. */
int wk_jobs_available(wk_jobs *j);

#endif
