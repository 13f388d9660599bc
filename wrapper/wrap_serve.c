/* The per-build client server; see wrap_serve.h. */
#include "wrap_serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "reapi_digest.h"
#include "rpc_client.h"
#include "wrap_dcache.h"
#include "wrap_exec.h"
#include "wrap_sock.h"
#include "wrap_util.h"

extern char **environ;

struct wrap_serve {
  char *dir;
  char *path;
  pid_t pid;
};

/* A request must arrive this fast once connected: the front sends it in
 * one go, so only a broken peer is slower. */
#define RECV_TIMEOUT_S 10

/* Put the front's descriptors back at their numbers and close everything
 * else up to the highest number in play. Returns the connection's new
 * descriptor (moved out of the way), or DB_ESYS. */
static int place_fds(wrap_sock_req *r, int conn) {
  int hi[WRAP_SOCK_MAX_FDS], top = conn;
  for (int i = 0; i < r->nfds; i++) {
    if (r->fds[i] > top)
      top = r->fds[i];
    if (r->fd_nums[i] > top)
      top = r->fd_nums[i];
  }
  /* Move the received descriptors and the connection above every number
   * in play first, so no dup2 below overwrites one still needed. */
  for (int i = 0; i < r->nfds; i++) {
    hi[i] = fcntl(r->fds[i], F_DUPFD_CLOEXEC, top + 1);
    if (hi[i] < 0)
      return DB_ESYS;
    close(r->fds[i]);
    r->fds[i] = -1;
  }
  {
    int c2 = fcntl(conn, F_DUPFD_CLOEXEC, top + 1);
    if (c2 < 0)
      return DB_ESYS;
    close(conn);
    conn = c2;
  }
  for (int f = 0; f <= top; f++) {
    int keep = 0;
    for (int i = 0; i < r->nfds; i++)
      keep |= hi[i] == f || r->fd_nums[i] == f;
    if (!keep)
      close(f);
  }
  for (int i = 0; i < r->nfds; i++)
    if (dup2(hi[i], r->fd_nums[i]) < 0)
      return DB_ESYS;
  for (int i = 0; i < r->nfds; i++)
    close(hi[i]);
  r->nfds = 0;
  return conn;
}

/* Ends the call if the front hangs up first (cargo killed it, or the build
 * was interrupted): kills this process group, i.e. the call and any rustc
 * it started. After the status went out the front exits, and this kills a
 * call that is only exiting anyway. */
static void *watch_front(void *arg) {
  struct pollfd p = {.fd = (int)(intptr_t)arg, .events = POLLRDHUP};
  while (poll(&p, 1, -1) < 0 && errno == EINTR)
    ;
  (void)kill(0, SIGKILL);
  return NULL;
}

/* One connection, in its own forked process: read the request, become the
 * front (descriptors, cwd, umask, environment), run the call, report. */
static void handle(int conn, pid_t server, wrap_dcache *dc, const char *dc_dir)
    __attribute__((noreturn));
static void handle(int conn, pid_t server, wrap_dcache *dc,
                   const char *dc_dir) {
  struct ucred cr;
  socklen_t cl = sizeof(cr);
  struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
  wrap_sock_req *r = NULL;
  pthread_t th;
  int rv, code;
  /* The server going away (the build ended or was killed) ends the call. */
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != server)
    _exit(1);
  /* A group of its own, for watch_front: a Ctrl-C for the build reaches
   * the front, whose hang-up then ends the call. */
  if (setpgid(0, 0) != 0)
    _exit(1);
  signal(SIGCHLD, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
      cr.uid != getuid())
    _exit(1);
  (void)setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  rv = wrap_sock_recv(conn, &r);
  if (rv != 0) {
    if (rv != DB_EUNAVAIL)
      DB_WARN("wrapper", "client server: bad request: %s", db_strerror(rv));
    _exit(1); /* no 'A': the front runs the call itself */
  }
  conn = place_fds(r, conn);
  if (conn < 0 || chdir(r->cwd) != 0 || wrap_sock_send_started(conn) != 0)
    _exit(1);
  if (pthread_create(&th, NULL, watch_front, (void *)(intptr_t)conn) != 0)
    _exit(1);
  umask((mode_t)r->umask_bits);
  environ = r->env;
  db_log_reset_level();
  DB_DEBUG("wrapper", "client server: call %d runs in pid %d", (int)cr.pid,
           (int)getpid());
  code = wrap_exec_main_with(r->argc, r->argv, dc, dc_dir, 0);
  fflush(NULL);
  (void)wrap_sock_send_status(conn, code);
  /* _exit: the libraries' exit handlers would only free memory. */
  _exit(code);
}

static void serve(int lfd, pid_t parent, const char *cache_dir)
    __attribute__((noreturn));
static void serve(int lfd, pid_t parent, const char *cache_dir) {
  wrap_dcache *dc = NULL;
  pid_t self = getpid();
  (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent)
    _exit(0);
  /* Calls are reaped by the kernel; each resets this for itself. */
  signal(SIGCHLD, SIG_IGN);
  if (wrap_dcache_open(cache_dir, &dc) != 0)
    dc = NULL;
  (void)rpc_client_global_init();
  reapi_digest_init();
  for (;;) {
    pid_t pid;
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        usleep(10000);
        continue;
      }
      DB_WARN("wrapper", "client server: accept: %s", strerror(errno));
      _exit(1);
    }
    if (dc != NULL)
      (void)wrap_dcache_refresh(dc);
    pid = fork();
    if (pid == 0) {
      close(lfd);
      handle(c, self, dc, cache_dir);
    }
    close(c); /* on fork failure the front sees no 'A' and carries on */
  }
}

static char *socket_dir(void) {
  const char *base = getenv("XDG_RUNTIME_DIR");
  struct stat st;
  if (base == NULL || *base == '\0' || stat(base, &st) != 0 ||
      !S_ISDIR(st.st_mode))
    base = getenv("TMPDIR");
  if (base == NULL || *base == '\0')
    base = "/tmp";
  return wrap_fmt("%s/cargo-distbuild-XXXXXX", base);
}

int wrap_serve_start(const char *cache_dir, wrap_serve **out) {
  wrap_serve *s = calloc(1, sizeof(*s));
  struct sockaddr_un sa;
  int lfd = -1, rv = 0;
  pid_t parent = getpid();
  *out = NULL;
  if (s == NULL || (s->dir = socket_dir()) == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  if (mkdtemp(s->dir) == NULL) { /* mode 0700 */
    free(s->dir);
    s->dir = NULL;
    rv = DB_ESYS;
    goto out;
  }
  s->path = wrap_fmt("%s/client.sock", s->dir);
  if (s->path == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(s->path) >= sizeof(sa.sun_path)) {
    rv = DB_ETOOBIG;
    goto out;
  }
  memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
  lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(lfd, 128) != 0) {
    rv = DB_ESYS;
    goto out;
  }
  fflush(NULL);
  s->pid = fork();
  if (s->pid < 0) {
    rv = DB_ESYS;
    goto out;
  }
  if (s->pid == 0)
    serve(lfd, parent, cache_dir);
out:
  if (lfd >= 0)
    close(lfd);
  if (rv != 0) {
    wrap_serve_stop(s);
    s = NULL;
  }
  *out = s;
  return rv;
}

const char *wrap_serve_path(const wrap_serve *s) {
  return s->path;
}

void wrap_serve_stop(wrap_serve *s) {
  if (s == NULL)
    return;
  if (s->pid > 0) {
    (void)kill(s->pid, SIGTERM);
    while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  if (s->path != NULL)
    (void)unlink(s->path);
  if (s->dir != NULL)
    (void)rmdir(s->dir);
  free(s->path);
  free(s->dir);
  free(s);
}
