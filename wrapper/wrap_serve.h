/*
 * The client server of one `cargo distbuild build` (like sccache's local
 * server, but per build and fork-based).
 *
 * It is a forked copy of cargo-distbuild that has the wrapper's libraries
 * (libcurl, OpenSSL, protobuf-c, zstd) loaded and initialised and the
 * digest cache in memory. For each distributable rustc call the wrapper's
 * front connects (wrap_sock.h) instead of exec'ing the remote client, and
 * the server forks one child per connection (refreshing the digest cache
 * from disk first, so records other calls appended are seen). The child
 * reads the request, takes over the front's descriptors, working
 * directory, umask and environment, runs the same code as
 * cargo-distbuild-wrapper-remote (wrap_exec_main_with, with the preloaded
 * digest cache) and sends the exit status.
 *
 * A thread in the child kills its process group (the call and any rustc
 * it started) if the front goes away first: cargo killed it, or the build
 * was interrupted. The child dies with the server, and the server with the
 * process that started it (PR_SET_PDEATHSIG). Only the user running the
 * build can connect (the socket lives in a 0700 directory, and the peer's
 * uid is checked).
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
