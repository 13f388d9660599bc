/*
 * The spawner: a small helper process that creates the sandboxes of a
 * large caller (the worker).
 *
 * Why: sbx_run() clones the sandbox's pid 1 from the calling process.
 * That clone copies the page tables of all of the caller's memory, and it
 * write-protects every private page, so each page the caller's threads
 * write afterwards takes a copy-on-write fault.  For the worker (tens of
 * MB, several busy threads) that was about 1000 faults per action.  nsjail
 * and Bazel's linux-sandbox avoid it the same way: the process that forks
 * sandboxes stays small.  The spawner is a fork of the caller made once,
 * early, while the caller is still small and single-threaded.
 *
 * Protocol (both ends are the same executable):
 *  - control socket (SOCK_SEQPACKET, one per spawner): each message is one
 *    byte carrying, as SCM_RIGHTS, the spawner's end of a fresh
 *    SOCK_STREAM socketpair made for one run;
 *  - on that run socket the caller sends a struct spawn_hdr with the
 *    stdio fds and the cancel fd as SCM_RIGHTS, then the request bytes
 *    (sbx_wire.c); the spawner runs the request in a thread of its own
 *    with sbx_run(), closes the fds it received, and answers with a
 *    struct spawn_reply.
 * So a slow action never holds up another, and the fds travel with the
 * request they belong to.
 *
 * Lifetime: the spawner dies with the thread that started it
 * (PR_SET_PDEATHSIG), and every sandbox dies with the spawner thread that
 * cloned it, so killing the caller still takes every sandbox down.  When
 * the caller closes the control socket (sbx_shutdown()) the spawner lets
 * runs in flight finish, removes its cgroup anchors and exits.  If the
 * spawner dies, runs in flight fail with DB_ESYS and later ones run
 * in-process again.
 */
#include "sbx_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HDR_MAGIC 0x51584253u   /* "SBXQ" */
#define REPLY_MAGIC 0x52584253u /* "SBXR" */
/* Requests are argv, environment and mount lists: far below this. */
#define MAX_REQUEST_BYTES (64u << 20)
/* How long sbx_shutdown() waits for the spawner to remove its anchors. */
#define STOP_WAIT_MS 5000

struct spawn_hdr {
  uint32_t magic;
  uint32_t nfds; /* stdin, stdout, stderr, then the cancel fd if any */
  uint64_t len;  /* request bytes that follow */
};

struct spawn_reply {
  uint32_t magic;
  int32_t rc; /* what sbx_run() returned in the spawner */
  sbx_result res;
};

/* Caller side.  g_ctl stays open until sbx_shutdown(), even after the
 * spawner died (g_dead), so no run can race with the fd being reused. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_ctl = -1;
static pid_t g_pid = -1;
static pid_t g_owner = -1;
static int g_dead;
static pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;

/* A forked child of the owner holds a copy of the control socket: it must
 * not keep the spawner alive or use it (its sandboxes would not die with
 * it).  Raw clones (the sandboxes) skip this, and close every fd anyway. */
static void atfork_child(void) {
  if (g_ctl >= 0)
    close(g_ctl);
  g_ctl = -1;
  g_pid = -1;
  g_owner = -1;
  g_dead = 0;
  pthread_mutex_init(&g_mu, NULL);
}

static void register_atfork(void) {
  pthread_atfork(NULL, NULL, atfork_child);
}

/* ---- spawner side ---------------------------------------------------------
 */

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_cv = PTHREAD_COND_INITIALIZER;
static int s_inflight;

static int read_all(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n == 0 ? -EPIPE : -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Receive the header and the fds that come with it.  Returns the number of
 * fds (stored in fds[]), or -1: EOF, error, or more fds than announced. */
static int recv_hdr(int fd, struct spawn_hdr *h, int fds[4]) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(4 * sizeof(int))];
  } u;
  struct iovec iov = {h, sizeof(*h)};
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t n;
  int nfds = 0, bad = 0;

  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = sizeof(u.buf);
  do {
    n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0)
    return -1;
  for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    size_t k;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int v;
      memcpy(&v, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (nfds < 4)
        fds[nfds++] = v;
      else
        close(v);
    }
  }
  bad = (msg.msg_flags & MSG_CTRUNC) != 0;
  if (!bad && (size_t)n < sizeof(*h))
    bad = read_all(fd, (char *)h + n, sizeof(*h) - (size_t)n) != 0;
  if (bad || h->magic != HDR_MAGIC || h->nfds != (uint32_t)nfds || nfds < 3) {
    for (int i = 0; i < nfds; i++)
      close(fds[i]);
    return -1;
  }
  return nfds;
}

/* One run, in a thread of the spawner; |fd| is the run socket. */
static void serve(int fd) {
  struct spawn_hdr h;
  struct spawn_reply rep;
  sbx_request *req = NULL;
  unsigned char *buf = NULL;
  int fds[4] = {-1, -1, -1, -1}, nfds;

  memset(&rep, 0, sizeof(rep));
  rep.magic = REPLY_MAGIC;
  rep.rc = DB_EINVAL;
  nfds = recv_hdr(fd, &h, fds);
  if (nfds < 0 || h.len > MAX_REQUEST_BYTES) {
    sbx_util_msg(rep.res.error, sizeof(rep.res.error),
                 "malformed request to the sandbox spawner");
    goto reply;
  }
  buf = malloc(h.len ? (size_t)h.len : 1);
  if (!buf) {
    rep.rc = DB_ENOMEM;
    goto reply;
  }
  if (read_all(fd, buf, (size_t)h.len) != 0)
    goto out; /* the caller is gone: nobody to answer */
  rep.rc = sbx_wire_decode(buf, (size_t)h.len, &req);
  if (rep.rc != 0) {
    sbx_util_msg(rep.res.error, sizeof(rep.res.error),
                 "malformed request to the sandbox spawner");
    goto reply;
  }
  for (int i = 0; i < 3; i++)
    req->stdio_fd[i] = fds[i];
  req->cancel_fd = nfds > 3 ? fds[3] : -1;
  rep.rc = sbx_run(req, &rep.res);
reply:
  /* Close our copies first: the caller may wait for EOF on a stdio pipe
   * as soon as it has the reply. */
  for (int i = 0; i < 4; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  fds[0] = fds[1] = fds[2] = fds[3] = -1;
  (void)send_all(fd, &rep, sizeof(rep));
out:
  for (int i = 0; i < 4; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  sbx_request_free(req);
  free(buf);
  close(fd);
}

static void *serve_main(void *arg) {
  serve((int)(intptr_t)arg);
  pthread_mutex_lock(&s_mu);
  s_inflight--;
  pthread_cond_broadcast(&s_cv);
  pthread_mutex_unlock(&s_mu);
  return NULL;
}

/* Next run socket from the control socket: >= 0, -1 = EOF or error. */
static int recv_run_socket(int ctl) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  char byte;
  struct iovec iov = {&byte, 1};
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t n;
  int fd = -1;

  for (;;) {
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof(u.buf);
    n = recvmsg(ctl, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int))) {
      memcpy(&fd, CMSG_DATA(c), sizeof(int));
      return fd;
    }
  }
}

static void spawner_main(int ctl) __attribute__((noreturn));

static void spawner_main(int ctl) {
  pthread_attr_t at;
  int fd;
  /* The caller decides when to stop: a terminal's Ctrl-C or a TERM sent to
   * the process group must not kill sandboxes it is still accounting. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_NAME, "sbx-spawner", 0, 0, 0);
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  while ((fd = recv_run_socket(ctl)) >= 0) {
    pthread_t th;
    pthread_mutex_lock(&s_mu);
    s_inflight++;
    pthread_mutex_unlock(&s_mu);
    if (pthread_create(&th, &at, serve_main, (void *)(intptr_t)fd) != 0)
      serve_main((void *)(intptr_t)fd); /* no thread: serve it here */
  }
  pthread_mutex_lock(&s_mu);
  while (s_inflight > 0)
    pthread_cond_wait(&s_cv, &s_mu);
  pthread_mutex_unlock(&s_mu);
  sbx_shutdown(); /* this process's anchors and their cgroups */
  _exit(0);
}

/* ---- caller side ----------------------------------------------------------
 */

static int count_threads(void) {
  char buf[4096];
  const char *p;
  if (sbx_util_read_str("/proc/self/status", buf, sizeof(buf)) < 0)
    return -1;
  p = strstr(buf, "\nThreads:");
  return p ? atoi(p + 9) : -1;
}

int sbx_spawner_start(void) {
  int sv[2] = {-1, -1}, rc = 0;
  pid_t parent = getpid(), pid;

  pthread_once(&g_atfork_once, register_atfork);
  (void)sbx_probe(); /* once, here: the spawner inherits the report */
  pthread_mutex_lock(&g_mu);
  if (g_owner == parent && !g_dead) {
    pthread_mutex_unlock(&g_mu);
    return 0;
  }
  if (count_threads() != 1) {
    /* A fork of a multi-threaded process may inherit locks that some other
     * thread held: the spawner must be made before any thread starts. */
    rc = DB_EINVAL;
    goto out;
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    rc = DB_ESYS;
    goto out;
  }
  pid = fork();
  if (pid < 0) {
    rc = DB_ESYS;
    goto out;
  }
  if (pid == 0) {
    close(sv[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
      _exit(0); /* the caller died before the prctl */
    spawner_main(sv[1]);
  }
  close(sv[1]);
  sv[1] = -1;
  if (g_ctl >= 0) /* the one that died: it is reaped, its socket goes */
    close(g_ctl);
  g_ctl = sv[0];
  sv[0] = -1;
  g_pid = pid;
  g_owner = parent;
  g_dead = 0;
out:
  pthread_mutex_unlock(&g_mu);
  for (int i = 0; i < 2; i++)
    if (sv[i] >= 0)
      close(sv[i]);
  return rc;
}

/* The spawner's control socket if this process should use it, else -1;
 * its pid in *pid (or -1). */
static int usable_ctl(pid_t *pid) {
  int fd = -1;
  pid_t p = -1;
  pthread_mutex_lock(&g_mu);
  if (g_owner == getpid() && !g_dead) {
    fd = g_ctl;
    p = g_pid;
  }
  pthread_mutex_unlock(&g_mu);
  if (pid)
    *pid = p;
  return fd;
}

pid_t sbx_spawner_pid(void) {
  pid_t pid;
  (void)usable_ctl(&pid);
  return pid;
}

/* The spawner is gone (its sockets hung up): reap it, say so once. */
static void mark_dead(void) {
  int st = 0, reaped = 0;
  pid_t pid;
  pthread_mutex_lock(&g_mu);
  if (g_dead || g_owner != getpid()) {
    pthread_mutex_unlock(&g_mu);
    return;
  }
  g_dead = 1; /* from here on, runs go in-process without waiting for us */
  pid = g_pid;
  pthread_mutex_unlock(&g_mu);
  /* It closed its sockets by exiting: the zombie follows at once.  Only the
   * thread that set g_dead gets here; sbx_shutdown() reaps it otherwise. */
  for (int i = 0; i < 100 && !reaped; i++) {
    reaped = waitpid(pid, &st, WNOHANG) == pid;
    if (!reaped)
      usleep(10000);
  }
  pthread_mutex_lock(&g_mu);
  if (reaped && g_pid == pid)
    g_pid = -1;
  pthread_mutex_unlock(&g_mu);
  DB_WARN("sandbox",
          "the sandbox spawner process %s; sandboxes are now created by "
          "this process itself",
          !reaped                ? "stopped answering"
          : WIFSIGNALED(st) != 0 ? "was killed"
                                 : "exited");
}

static int send_fds(int fd, const void *data, size_t len, const int *fds,
                    int nfds) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(4 * sizeof(int))];
  } u;
  struct iovec iov = {(void *)data, len};
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t n;

  memset(&u, 0, sizeof(u));
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = u.buf;
  msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
  c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
  memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return -errno;
  return send_all(fd, (const char *)data + n, len - (size_t)n);
}

int sbx_spawn_run(const sbx_request *req, sbx_result *res) {
  struct spawn_hdr h;
  struct spawn_reply rep;
  unsigned char *buf = NULL;
  size_t len = 0;
  int ctl = usable_ctl(NULL), sv[2] = {-1, -1}, owned[3] = {-1, -1, -1};
  int fds[4], rc, e;

  if (ctl < 0)
    return SBX_SPAWN_LOCAL;
  /* Stdio paths are opened here, so that they resolve as they would
   * in-process (the spawner's cwd is the caller's at start-up). */
  rc = sbx_stdio_open(req, fds, owned, res->error, sizeof(res->error));
  if (rc == 0)
    rc = sbx_wire_encode(req, &buf, &len);
  if (rc != 0)
    goto out;
  fds[3] = req->cancel_fd;
  h.magic = HDR_MAGIC;
  h.nfds = req->cancel_fd >= 0 ? 4 : 3;
  h.len = len;
  /* Until the whole request is sent, nothing has run: a spawner that is
   * gone by then costs nothing but the in-process fallback. */
  rc = SBX_SPAWN_LOCAL;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    goto out;
  e = send_fds(ctl, "R", 1, &sv[1], 1);
  close(sv[1]);
  sv[1] = -1;
  if (e == 0)
    e = send_fds(sv[0], &h, sizeof(h), fds, (int)h.nfds);
  if (e == 0)
    e = send_all(sv[0], buf, len);
  if (e != 0) {
    if (e == -EPIPE || e == -ECONNRESET || e == -ECONNREFUSED)
      mark_dead();
    goto out;
  }
  e = read_all(sv[0], &rep, sizeof(rep));
  if (e != 0 || rep.magic != REPLY_MAGIC) {
    mark_dead();
    memset(res, 0, sizeof(*res));
    sbx_util_msg(res->error, sizeof(res->error),
                 "the sandbox spawner process died during the run");
    rc = DB_ESYS;
    goto out;
  }
  *res = rep.res;
  rc = rep.rc;
out:
  for (int i = 0; i < 3; i++)
    if (owned[i] >= 0)
      close(owned[i]);
  if (sv[0] >= 0)
    close(sv[0]);
  free(buf);
  return rc;
}

void sbx_spawn_stop(void) {
  int st;
  pthread_mutex_lock(&g_mu);
  if (g_owner != getpid() || g_ctl < 0) {
    pthread_mutex_unlock(&g_mu);
    return;
  }
  close(g_ctl); /* EOF: the spawner finishes, cleans up and exits */
  g_ctl = -1;
  for (int i = 0; g_pid > 0 && i < STOP_WAIT_MS / 10; i++) {
    if (waitpid(g_pid, &st, WNOHANG) == g_pid)
      g_pid = -1;
    else
      usleep(10000);
  }
  if (g_pid > 0) {
    DB_WARN("sandbox", "the sandbox spawner did not exit; killing it");
    kill(g_pid, SIGKILL);
    while (waitpid(g_pid, &st, 0) < 0 && errno == EINTR) {
    }
  }
  g_pid = -1;
  g_owner = -1;
  g_dead = 0;
  pthread_mutex_unlock(&g_mu);
}
