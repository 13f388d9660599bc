/*
 * The wire format between the wrapper's front and the client server
 * (wrap_serve.h), over a Unix stream socket.
 *
 * Why: a distributable call used to exec cargo-distbuild-wrapper-remote,
 * which loads libcurl and ~30 other libraries and then loads the digest
 * cache: ~7 ms per call before any work. `cargo distbuild build` now runs
 * one client server per build that has all of that loaded already and
 * forks a child per call; the front hands the call over instead of exec'ing.
 *
 * A request carries everything exec would have passed on: argv, the
 * environment, the working directory, the umask, and the open file
 * descriptors the front inherited from cargo (stdin, stdout, stderr, the
 * jobserver), which travel as SCM_RIGHTS and are put back at the same
 * numbers in the child. The server answers one byte 'A' once the call has
 * started, then 'X' and the exit status (int32, little endian).
 *
 *   request: "DBW1", u32 payload length, payload:
 *            u32 nfds, u32 fd numbers[nfds], u32 umask, u32 argc, u32 envc,
 *            then NUL-terminated strings: cwd, argv[0..argc), env[0..envc)
 *   (all integers little endian; the fds ride on the first sendmsg)
 *
 * Errors: 0 or a negative DB_E* code. Nothing here allocates on the
 * front's path except the request buffer.
 */
#ifndef WRAP_SOCK_H
#define WRAP_SOCK_H

#include <stddef.h>
#include <stdint.h>

/* Environment variable naming the client server's socket. */
#define WRAP_SOCK_ENV "CARGO_DISTBUILD_CLIENT_SOCKET"

enum {
  WRAP_SOCK_MAX_FDS = 64,          /* descriptors passed per call */
  WRAP_SOCK_MAX_FD_NUM = 1024,     /* highest fd number passed on */
  WRAP_SOCK_MAX_REQ = 16 << 20,    /* payload bytes */
  WRAP_SOCK_MAX_STRINGS = 1 << 16, /* argc + envc */
};

/* Run one call through the server at socket path: sends argv (argv[0] =
 * rustc), environ, the cwd, the umask and this process's inheritable fds
 * (those without FD_CLOEXEC, numbers below WRAP_SOCK_MAX_FD_NUM); waits
 * for the exit status.
 * Returns 0 with *code set; DB_EUNAVAIL if the call never started (no
 * server, refused, or it closed before 'A': the caller may run the call
 * another way); DB_EIO if the server went away after the call started
 * (the outcome is unknown; output may have been written). */
int wrap_sock_call(const char *path, int argc, char **argv, int *code);

/* A decoded request. All pointers point into buf; fds are owned (closed
 * by wrap_sock_req_free unless taken). */
typedef struct wrap_sock_req {
  char *buf;
  const char *cwd;
  char **argv; /* argc entries, NULL-terminated */
  int argc;
  char **env; /* envc entries, NULL-terminated */
  int envc;
  unsigned umask_bits;
  int nfds;
  int fds[WRAP_SOCK_MAX_FDS];     /* received descriptors */
  int fd_nums[WRAP_SOCK_MAX_FDS]; /* the number each had in the front */
} wrap_sock_req;

/* Read and validate one request from fd (blocking; give fd a receive
 * timeout). DB_EPROTO on anything malformed (bad magic, lengths, counts,
 * fd numbers, a descriptor count that does not match the fds that
 * arrived, or a request cut short), DB_EUNAVAIL if the peer closed (or
 * timed out) before sending anything. *out owned by the caller:
 * wrap_sock_req_free(). */
int wrap_sock_recv(int fd, wrap_sock_req **out);
void wrap_sock_req_free(wrap_sock_req *r); /* NULL ok */

/* Server side answers. */
int wrap_sock_send_started(int fd);
int wrap_sock_send_status(int fd, int code);

#endif
