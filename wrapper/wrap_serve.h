/*
 * The client server of one `cargo distbuild build` (like sccache's local
 * server, but per build and fork-based).
 *
 * It is a forked copy of cargo-distbuild that has the wrapper's libraries
 * (libcurl, OpenSSL, protobuf-c, zstd) loaded and initialised and the
 * digest cache in memory. For each distributable rustc call the wrapper's
 * front connects (wrap_sock.h) instead of exec'ing the remote client; the
 * server forks a handler, which forks the call itself: the call's child
 * takes over the front's descriptors, working directory, umask and
 * environment and runs the same code as cargo-distbuild-wrapper-remote
 * (wrap_exec_main_with), with the preloaded digest cache (refreshed from
 * disk before each fork, so records other calls appended are seen).
 *
 * The handler reports the exit status to the front, and kills the call's
 * process group if the front goes away first (cargo killed it, or the
 * build was interrupted). Only the user running the build may connect
 * (the socket lives in a 0700 directory, and the peer's uid is checked).
 * The server dies with the process that started it (PR_SET_PDEATHSIG).
 *
 * Errors: 0 or a negative DB_E* code. A handle is owned by the caller.
 */
#ifndef WRAP_SERVE_H
#define WRAP_SERVE_H

typedef struct wrap_serve wrap_serve;

/* Create a private socket directory (under $XDG_RUNTIME_DIR when set,
 * else $TMPDIR or /tmp), listen, and fork the server. cache_dir: the
 * wrapper cache directory whose digest cache is preloaded (copied).
 * The server's own warnings go to this process's stderr. */
int wrap_serve_start(const char *cache_dir, wrap_serve **out);

/* The socket path, for WRAP_SOCK_ENV. Borrowed. */
const char *wrap_serve_path(const wrap_serve *s);

/* Stop the server (calls still running finish on their own), remove the
 * socket and its directory, and free s. NULL ok. */
void wrap_serve_stop(wrap_serve *s);

#endif
