/*
 * The front of cargo-distbuild-wrapper: the part that runs for every rustc
 * call cargo makes. It decides whether the call is distributable and, if
 * not (queries, build scripts, binaries, proc-macros, probes, ...), records
 * what the report needs and execs rustc itself. Distributable calls go to
 * the build's client server when CARGO_DISTBUILD_CLIENT_SOCKET names one
 * (wrap_sock.h, wrap_serve.h), else exec the remote client
 * (cargo-distbuild-wrapper-remote, next to this binary), which links
 * libcurl: loading libcurl and its dependencies costs ~6.5 ms per process
 * here, which local calls never pay and served calls no longer do.
 *
 * Errors: these functions only return when exec fails (127) or on usage
 * errors (2).
 */
#ifndef WRAP_FRONT_H
#define WRAP_FRONT_H

#include <stdint.h>

#include "wrap_args.h"

/* NULL if the call can run remotely, else why it runs locally (static
 * string): the argument checks of wrap_args_local_reason(), a build
 * script's rustc probe, or CARGO_DISTBUILD_DISABLE. */
const char *wrap_front_local_reason(const wrap_args *a);

/* Record a local compile call (closure + stats) and exec rustc (argv[0]).
 * start_ms: when the wrapper started. Returns only if exec fails. */
int wrap_front_exec_local(const wrap_args *a, char **argv, const char *reason,
                          int64_t start_ms);

/* The wrapper's main: argv[0] is rustc. remote_exe: the remote client to
 * exec for distributable calls that no client server took (argv passed
 * through unchanged). A served call returns its exit code; 1 with one
 * line on stderr if the server died during the call. */
int wrap_front_main(int argc, char **argv, const char *remote_exe);

#endif
