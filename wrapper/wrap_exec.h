/*
 * The cargo-distbuild-wrapper flow for one rustc call (argv[0] = rustc,
 * argv[1..] = its arguments, as cargo passes them after the wrapper):
 *
 *  - not distributable (binaries, proc-macros, build scripts, queries):
 *    execv(rustc) at once, after appending a "local" stats record;
 *  - distributable: build the Action, GetActionResult; on a hit download
 *    the outputs; on a miss upload the missing inputs and Execute; write
 *    the outputs, replay stdout/stderr byte for byte, exit with rustc's
 *    code. Infrastructure failures fall back to a local rustc with one line
 *    saying why; compile errors are replayed like local rustc output.
 *
 * Environment: CARGO_DISTBUILD_SCHEDULER, _TLS_CA, _TLS_CERT, _TLS_KEY and
 * _REMOTE_HEADERS (see wrap_config.h),
 * CARGO_DISTBUILD_LOG=quiet|error|warn|info|debug (progress lines are
 * info, fallback lines warn), CARGO_DISTBUILD_DISABLE=1 (always local),
 * CARGO_DISTBUILD_TIMEOUT (seconds per remote execution, default 600),
 * CARGO_DISTBUILD_STALL_TIMEOUT (seconds a scheduler may stay silent
 * before the call falls back, default 10, 0 = wait for the timeout).
 */
#ifndef WRAP_EXEC_H
#define WRAP_EXEC_H

#include "wrap_dcache.h"

/* Returns the process exit code, or does not return (execv). */
int wrap_exec_main(int argc, char **argv);

/* The same, with a digest cache that is already loaded (the client server
 * keeps one; see wrap_serve.h). dc is borrowed and used only when dc_dir
 * equals this call's cache directory; otherwise the call opens its own.
 * may_exec 0: a call that turns out local runs rustc as a child and
 * returns its exit code instead of replacing this process. */
int wrap_exec_main_with(int argc, char **argv, wrap_dcache *dc,
                        const char *dc_dir, int may_exec);

#endif
