/*
 * Orchestration and the public request/run API.
 *
 * Supervisor (the calling thread), per sbx_run():
 *   build the plan (paths, stdio, mount list) -> create the cgroup with its
 *   limits, or take one an anchor thread already sits in (sbx_anchor.c) ->
 *   pipes -> clone() with every namespace and a pidfd, from the anchor if
 *   there is one -> write the uid/gid maps -> attach the child to the
 *   cgroup unless it was forked inside it -> release it through the
 *   sync pipe -> poll the pidfd until exit, timeout or cancellation (then:
 *   SIGKILL pid 1, which takes the whole PID namespace down, plus
 *   cgroup.kill) -> reap
 *   -> read the report pipe -> cgroup stats -> rmdir.
 *
 * Child (pid 1 of the new PID namespace), in the documented order:
 *   PR_SET_PDEATHSIG, close foreign fds, wait for the go-ahead (EOF means
 *   the supervisor died: exit) -> open bind sources -> switch ids (step 1)
 *   -> mounts (2) -> loopback (3) -> hostname (4) -> capabilities,
 *   no_new_privs, rlimits (5) -> init + action (6) -> seccomp + execve (7).
 * Any failure is written to the report pipe as a struct sbx_msg, then
 * _exit(127).
 */
#include "sbx_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

const char *sbx_step_name(int step) {
  static const char *const names[] = {
      "none",     "sync",         "ids",     "mount", "network",
      "hostname", "capabilities", "rlimits", "init",  "stdio",
      "cwd",      "seccomp",      "execve"};
  if (step < 0 || step > SBX_STEP_EXEC)
    return "?";
  return names[step];
}

/* ---- request --------------------------------------------------------------
 */

static void free_strv(char **v) {
  size_t i;
  if (!v)
    return;
  for (i = 0; v[i]; i++)
    free(v[i]);
  free(v);
}

static int dup_strv(const char *const *in, char ***out) {
  size_t n = 0, i;
  char **v;
  while (in && in[n])
    n++;
  v = calloc(n + 1, sizeof(*v));
  if (!v)
    return DB_ENOMEM;
  for (i = 0; i < n; i++) {
    v[i] = strdup(in[i]);
    if (!v[i]) {
      free_strv(v);
      return DB_ENOMEM;
    }
  }
  free_strv(*out);
  *out = v;
  return 0;
}

int sbx_request_new(sbx_request **out) {
  sbx_request *r = calloc(1, sizeof(*r));
  *out = NULL;
  if (!r)
    return DB_ENOMEM;
  r->stdio_fd[0] = r->stdio_fd[1] = r->stdio_fd[2] = -1;
  r->cancel_fd = -1;
  r->envp = calloc(1, sizeof(char *));
  r->cwd = strdup("/");
  if (!r->envp || !r->cwd) {
    sbx_request_free(r);
    return DB_ENOMEM;
  }
  *out = r;
  return 0;
}

void sbx_request_free(sbx_request *r) {
  size_t i;
  if (!r)
    return;
  free_strv(r->argv);
  free_strv(r->envp);
  free(r->cwd);
  for (i = 0; i < r->n_mounts; i++) {
    free(r->mounts[i].src);
    free(r->mounts[i].dst);
  }
  free(r->mounts);
  for (i = 0; i < 3; i++)
    free(r->stdio_path[i]);
  for (i = 0; i < r->n_devs; i++) {
    free(r->dev_src[i]);
    free(r->dev_name[i]);
  }
  free(r);
}

int sbx_request_add_dev(sbx_request *r, const char *src, const char *name) {
  static const char *const taken[] = {"null",   "zero",    "full",
                                      "random", "urandom", "fd",
                                      "stdin",  "stdout",  "stderr"};
  size_t i;
  if (!src || src[0] != '/' || !name || !name[0] || strlen(name) > 64 ||
      !strcmp(name, ".") || !strcmp(name, "..") ||
      strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789._-") != strlen(name))
    return DB_EINVAL;
  for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
    if (!strcmp(name, taken[i]))
      return DB_EINVAL;
  for (i = 0; i < r->n_devs; i++)
    if (!strcmp(name, r->dev_name[i]))
      return DB_EINVAL;
  if (r->n_devs >= SBX_MAX_DEVS)
    return DB_ETOOBIG;
  r->dev_src[r->n_devs] = strdup(src);
  r->dev_name[r->n_devs] = strdup(name);
  if (!r->dev_src[r->n_devs] || !r->dev_name[r->n_devs]) {
    free(r->dev_src[r->n_devs]);
    free(r->dev_name[r->n_devs]);
    return DB_ENOMEM;
  }
  r->n_devs++;
  return 0;
}

int sbx_request_set_argv(sbx_request *r, const char *const *argv) {
  if (!argv || !argv[0] || !argv[0][0])
    return DB_EINVAL;
  return dup_strv(argv, &r->argv);
}

int sbx_request_set_env(sbx_request *r, const char *const *envp) {
  return dup_strv(envp, &r->envp);
}

int sbx_request_set_cwd(sbx_request *r, const char *dir) {
  char *d;
  if (!dir || dir[0] != '/')
    return DB_EINVAL;
  d = strdup(dir);
  if (!d)
    return DB_ENOMEM;
  free(r->cwd);
  r->cwd = d;
  return 0;
}

int sbx_request_push_mount(sbx_request *r, int kind, const char *src,
                           const char *dst) {
  struct sbx_req_mount *m;
  if (!dst || dst[0] != '/')
    return DB_EINVAL;
  if (r->n_mounts == r->cap_mounts) {
    size_t cap = r->cap_mounts ? r->cap_mounts * 2 : 16;
    m = realloc(r->mounts, cap * sizeof(*m));
    if (!m)
      return DB_ENOMEM;
    r->mounts = m;
    r->cap_mounts = cap;
  }
  m = &r->mounts[r->n_mounts];
  m->kind = kind;
  m->src = src ? strdup(src) : NULL;
  m->dst = strdup(dst);
  if ((src && !m->src) || !m->dst) {
    free(m->src);
    free(m->dst);
    return DB_ENOMEM;
  }
  r->n_mounts++;
  return 0;
}

int sbx_request_add_mount(sbx_request *r, sbx_mount_kind kind, const char *src,
                          const char *dst) {
  size_t i, n = 0;
  if (kind != SBX_MOUNT_TMPFS && (!src || src[0] != '/'))
    return DB_EINVAL;
  if (kind > SBX_MOUNT_TMPFS || !dst)
    return DB_EINVAL;
  /* Nothing can be mounted on a symlink: a mount at a path the default
   * layout made a symlink (/lib on a merged-/usr host) replaces it. */
  for (i = 0; i < r->n_mounts; i++) {
    struct sbx_req_mount *m = &r->mounts[i];
    if (m->kind == SBX_REQ_SYMLINK && !strcmp(m->dst, dst)) {
      free(m->src);
      free(m->dst);
      continue;
    }
    r->mounts[n++] = *m;
  }
  r->n_mounts = n;
  return sbx_request_push_mount(r, kind, kind == SBX_MOUNT_TMPFS ? NULL : src,
                                dst);
}

int sbx_request_add_default_layout(sbx_request *r) {
  static const char *const dirs[] = {"/usr", "/etc",   "/bin",   "/sbin",
                                     "/lib", "/lib32", "/lib64", "/libx32"};
  size_t i;
  int rc = 0;
  for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && rc == 0; i++) {
    struct stat st;
    char target[4096];
    ssize_t n;
    if (lstat(dirs[i], &st) < 0)
      continue;
    if (S_ISLNK(st.st_mode)) {
      n = readlink(dirs[i], target, sizeof(target) - 1);
      if (n <= 0)
        continue;
      target[n] = '\0';
      rc = sbx_request_push_mount(r, SBX_REQ_SYMLINK, target, dirs[i]);
    } else if (S_ISDIR(st.st_mode)) {
      rc = sbx_request_push_mount(r, SBX_MOUNT_RO_BIND, dirs[i], dirs[i]);
    }
  }
  if (rc == 0)
    rc = sbx_request_push_mount(r, SBX_MOUNT_TMPFS, NULL, "/tmp");
  return rc;
}

void sbx_request_set_limits(sbx_request *r, const sbx_limits *lim) {
  r->limits = *lim;
}

void sbx_request_set_mode(sbx_request *r, sbx_mode mode) {
  r->mode = mode;
}

int sbx_request_set_stdio_fd(sbx_request *r, int stream, int fd) {
  if (stream < 0 || stream > 2)
    return DB_EINVAL;
  free(r->stdio_path[stream]);
  r->stdio_path[stream] = NULL;
  r->stdio_fd[stream] = fd;
  return 0;
}

void sbx_request_set_cancel_fd(sbx_request *r, int fd) {
  r->cancel_fd = fd;
}

int sbx_request_set_stdio_path(sbx_request *r, int stream, const char *path) {
  char *p;
  if (stream < 0 || stream > 2 || !path)
    return DB_EINVAL;
  p = strdup(path);
  if (!p)
    return DB_ENOMEM;
  free(r->stdio_path[stream]);
  r->stdio_path[stream] = p;
  r->stdio_fd[stream] = -1;
  return 0;
}

/* ---- child ----------------------------------------------------------------
 */

static void child_main(sbx_plan *p) __attribute__((noreturn));

static void child_main(sbx_plan *p) {
  struct sbx_msg m;
  int fds[SBX_MAX_OPS];
  int keep[6] = {p->sync_rd,  p->report_wr, p->stdio[0],
                 p->stdio[1], p->stdio[2],  p->pid1_fd};
  char go = 0;
  ssize_t n;

  memset(&m, 0, sizeof(m));
  /* If the supervisor thread dies, so does the sandbox (pid 1 dying kills
   * the namespace).  The go-ahead read below closes the race where the
   * supervisor died before this prctl.  Switching ids clears it again;
   * sbx_ns_switch_ids() re-arms it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  /* Fds other threads opened without O_CLOEXEC, or pipes of concurrent
   * sandboxes: none of them belong here. */
  sbx_util_close_except(keep, 6);
  do {
    n = read(p->sync_rd, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || go != 'G')
    _exit(127);
  close(p->sync_rd);
  if (p->use_ns) {
    if (sbx_mount_open_sources(p, fds, &m) < 0 ||
        sbx_ns_switch_ids(p, &m) < 0 || sbx_mount_setup(p, fds, &m) < 0 ||
        (p->net_fd >= 0 ? 0 : sbx_net_loopback_up(&m)) < 0 ||
        sbx_uts_set_hostname(&m) < 0 || sbx_caps_drop(p, &m) < 0)
      sbx_child_die(p, &m);
  } else if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    sbx_util_fail(&m, SBX_STEP_CAPS, errno, "no_new_privs");
    sbx_child_die(p, &m);
  }
  if (sbx_caps_rlimits(p, &m) < 0)
    sbx_child_die(p, &m);
  if (p->use_ns)
    sbx_init_run(p);
  sbx_init_exec_action(p);
}

/* ---- supervisor ------------------------------------------------------------
 */

static int setup_error(const struct sbx_msg *m, sbx_result *res) {
  sbx_util_msg(res->error, sizeof(res->error), "%s%s%s%s: %s",
               m->step == SBX_STEP_EXEC ? "" : "sandbox set-up failed at ",
               sbx_step_name(m->step), m->detail[0] ? " " : "", m->detail,
               strerror(m->err));
  if (m->err == ENOENT && (m->step == SBX_STEP_EXEC || m->step == SBX_STEP_CWD))
    return DB_ENOTFOUND;
  return DB_ESYS;
}

static int wait_child(pid_t pid, int pidfd, int cancel_fd, const sbx_plan *p,
                      sbx_cgroup *cg, uint64_t t0, sbx_result *res, int *st,
                      struct rusage *ru) {
  uint64_t deadline =
      p->limits.timeout_ms ? t0 + p->limits.timeout_ms * 1000 : 0;
  for (;;) {
    struct pollfd pfd[2] = {{pidfd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    int timeout_ms = -1, r;
    siginfo_t si;
    if (deadline) {
      uint64_t now = sbx_util_now_us();
      timeout_ms = now >= deadline ? 0 : (int)((deadline - now + 999) / 1000);
    }
    if (pidfd < 0) {
      /* No pidfd (kernel < 5.2): poll the exit state every millisecond. */
      memset(&si, 0, sizeof(si));
      if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT | __WALL) ==
              0 &&
          si.si_pid == pid)
        break;
      if (timeout_ms != 0)
        timeout_ms = 1;
    }
    /* poll() ignores entries with a negative fd. */
    r = poll(pfd, 2, timeout_ms);
    if (r < 0 && errno == EINTR)
      continue;
    if (r > 0 && pidfd >= 0 && pfd[0].revents)
      break;
    if (r > 0 && pfd[1].revents) {
      res->cancelled = 1;
    } else if (r == 0 && deadline && sbx_util_now_us() >= deadline) {
      res->timed_out = 1;
    } else {
      continue;
    }
    /* pid 1 of the namespace: the kernel kills every other process in
     * it.  Without namespaces: the process group and the cgroup. */
    kill(pid, SIGKILL);
    if (!p->use_ns)
      kill(-pid, SIGKILL);
    sbx_cgroup_kill(cg);
    break;
  }
  while (wait4(pid, st, __WALL, ru) < 0) {
    if (errno != EINTR)
      return DB_ESYS;
  }
  return 0;
}

int sbx_stdio_open(const sbx_request *req, int fds[3], int owned[3], char *err,
                   size_t errlen) {
  for (int i = 0; i < 3; i++) {
    fds[i] = owned[i] = -1;
    if (!req->stdio_path[i] && req->stdio_fd[i] >= 0) {
      fds[i] = req->stdio_fd[i];
      continue;
    }
    if (req->stdio_path[i])
      owned[i] = open(req->stdio_path[i],
                      i == 0 ? O_RDONLY | O_CLOEXEC
                             : O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0644);
    else
      owned[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (owned[i] < 0) {
      sbx_util_msg(err, errlen, "open %s: %s",
                   req->stdio_path[i] ? req->stdio_path[i] : "/dev/null",
                   strerror(errno));
      for (int j = 0; j < i; j++)
        if (owned[j] >= 0)
          close(owned[j]);
      owned[0] = owned[1] = owned[2] = -1;
      return DB_EIO;
    }
    fds[i] = owned[i];
  }
  return 0;
}

pid_t sbx_clone_pid1(sbx_plan *p, unsigned long flags, int *pidfd,
                     const char **what) {
  pid_t pid;
  int rc, e;
  /* setns(CLONE_NEWNET) is per thread: enter just for the clone. */
  rc = p->net_fd >= 0 ? sbx_net_pool_enter(p->net_fd) : 0;
  if (rc != 0) {
    *what = "setns net";
    errno = -rc;
    return -1;
  }
  *what = "clone";
  pid = sbx_util_clone(flags | SIGCHLD, pidfd);
  if (pid < 0 && errno == EINVAL) /* no CLONE_PIDFD */
    pid = sbx_util_clone(flags | SIGCHLD, NULL);
  if (pid == 0)
    child_main(p);
  e = errno;
  if (p->net_fd >= 0)
    sbx_net_pool_leave();
  errno = e;
  return pid;
}

int sbx_run_plan(sbx_plan *p, const sbx_request *req, sbx_result *res) {
  sbx_cgroup *cg = NULL;
  sbx_anchor *anchor = NULL;
  const char *what = "clone";
  int sync_fd[2] = {-1, -1}, rep[2] = {-1, -1}, owned[3] = {-1, -1, -1};
  int pidfd = -1, rc = 0, st = 0, i, have_status = 0, action_st = 0;
  struct sbx_msg m, first_err;
  struct rusage ru;
  uint64_t t0;
  pid_t pid = -1;
  unsigned long flags;
  const sbx_limits *lim = &req->limits;

  memset(&first_err, 0, sizeof(first_err));
  memset(&ru, 0, sizeof(ru));
  rc = sbx_stdio_open(req, p->stdio, owned, res->error, sizeof(res->error));
  if (rc != 0)
    goto out;
  if (p->use_ns) {
    rc = sbx_mount_plan_build(req, p, res->error, sizeof(res->error));
    if (rc != 0)
      goto out;
  }
  if (lim->memory_bytes || lim->pids || lim->cpu_millis) {
    /* Preferably a set some thread of ours already sits in (sbx_anchor.c):
     * no migration, so no grace period, between clone() and the go-ahead. */
    anchor = sbx_anchor_take(lim, &cg);
    if (anchor)
      rc = sbx_cgroup_apply(cg, lim, 1, res->error, sizeof(res->error));
    else
      rc = sbx_cgroup_new(lim, &cg, res->error, sizeof(res->error));
    if (rc != 0)
      goto out;
  }
  p->action_stack = mmap(NULL, SBX_STACK_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (p->action_stack == MAP_FAILED)
    p->action_stack = NULL; /* fall back to a fork-like clone */
  if (pipe2(sync_fd, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
    rc = DB_ESYS;
    sbx_util_msg(res->error, sizeof(res->error), "pipe: %s", strerror(errno));
    goto out;
  }
  p->sync_rd = sync_fd[0];
  p->report_wr = rep[1];
  flags = p->use_ns ? sbx_ns_clone_flags() : 0;
  if (p->use_ns)
    p->net_fd = sbx_net_pool_get();
  if (p->net_fd >= 0)
    flags &= ~(unsigned long)CLONE_NEWNET;
  t0 = sbx_util_now_us();
  if (anchor) {
    pid = sbx_anchor_fork(anchor, p, flags, &pidfd, &what);
    anchor = NULL;
    res->cgroup_preplaced = pid > 0;
  } else {
    pid = sbx_clone_pid1(p, flags, &pidfd, &what);
  }
  if (pid < 0) {
    rc = DB_ESYS;
    sbx_util_msg(res->error, sizeof(res->error), "%s: %s", what,
                 strerror(errno));
    goto out;
  }
  close(sync_fd[0]);
  close(rep[1]);
  sync_fd[0] = rep[1] = -1;
  if (p->use_ns) {
    rc = sbx_ns_write_maps(pid, p->host_uid, p->host_gid, p->drop_groups);
    if (rc != 0)
      sbx_util_msg(res->error, sizeof(res->error), "uid/gid map: %s",
                   strerror(-rc));
  }
  if (rc == 0 && cg && !res->cgroup_preplaced) {
    rc = sbx_cgroup_attach(cg, pid);
    if (rc != 0)
      sbx_util_msg(res->error, sizeof(res->error), "cgroup attach: %s",
                   strerror(-rc));
  }
  if (rc == 0 && write(sync_fd[1], "G", 1) != 1)
    rc = -errno;
  close(sync_fd[1]);
  sync_fd[1] = -1;
  if (rc != 0) {
    kill(pid, SIGKILL); /* it is waiting for the go-ahead */
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
    rc = DB_ESYS;
    goto out;
  }
  rc = wait_child(pid, pidfd, req->cancel_fd, p, cg, t0, res, &st, &ru);
  res->wall_us = sbx_util_now_us() - t0;
  if (rc != 0) {
    /* pid 1 may not be reaped: never hand its namespace to another run. */
    if (p->net_fd >= 0)
      close(p->net_fd);
    p->net_fd = -1;
    goto out;
  }
  if (!p->use_ns)
    kill(-pid, SIGKILL); /* stragglers of the process group */
  /* Every holder of the write end is gone: read the messages. */
  fcntl(rep[0], F_SETFL, O_NONBLOCK);
  while (read(rep[0], &m, sizeof(m)) == (ssize_t)sizeof(m)) {
    if (m.kind == SBX_MSG_ERROR && first_err.kind == 0)
      first_err = m;
    else if (m.kind == SBX_MSG_STATUS) {
      have_status = 1;
      action_st = m.status;
    }
  }
  if (!p->use_ns) {
    have_status = 1;
    action_st = st;
  }
  if (first_err.kind == SBX_MSG_ERROR && !res->timed_out && !res->cancelled) {
    rc = setup_error(&first_err, res);
    goto out;
  }
  if (!have_status) /* pid 1 itself was killed (timeout, OOM) */
    action_st = st;
  res->exited = WIFEXITED(action_st);
  res->exit_code = res->exited ? WEXITSTATUS(action_st) : -1;
  res->term_signal = WIFSIGNALED(action_st) ? WTERMSIG(action_st) : 0;
  res->user_us =
      (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
  res->sys_us =
      (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
  res->peak_memory_bytes = (uint64_t)ru.ru_maxrss * 1024u;
  res->cgroup = sbx_cgroup_mode_of(cg);
  sbx_cgroup_stats(cg, res);
out:
  if (anchor) /* taken but not forked from: it leaves cg, then cg goes */
    sbx_anchor_fork(anchor, NULL, 0, NULL, NULL);
  if (cg && pid > 0)
    sbx_cgroup_kill(cg);
  sbx_cgroup_free(cg);
  for (i = 0; i < 2; i++) {
    if (sync_fd[i] >= 0)
      close(sync_fd[i]);
    if (rep[i] >= 0)
      close(rep[i]);
  }
  for (i = 0; i < 3; i++)
    if (owned[i] >= 0)
      close(owned[i]);
  if (pidfd >= 0)
    close(pidfd);
  /* pid 1 is reaped (or was never started): nothing uses the namespace. */
  sbx_net_pool_put(p->net_fd);
  p->net_fd = -1;
  if (p->action_stack)
    munmap(p->action_stack, SBX_STACK_SIZE);
  p->action_stack = NULL;
  sbx_mount_plan_free(p);
  return rc;
}

static const char *env_path(char *const *envp) {
  size_t i;
  for (i = 0; envp && envp[i]; i++)
    if (!strncmp(envp[i], "PATH=", 5))
      return envp[i] + 5;
  return DEFAULT_PATH;
}

int sbx_plan_init(sbx_plan *p, const sbx_request *req, const sbx_features *f) {
  memset(p, 0, sizeof(*p));
  p->sync_rd = p->report_wr = p->net_fd = -1;
  p->pid1_fd = req->mode == SBX_MODE_NAMESPACES ? sbx_init_image_fd() : -1;
  p->argv = req->argv;
  p->envp = req->envp;
  p->path = env_path(req->envp);
  p->cwd = req->cwd;
  p->limits = req->limits;
  p->use_ns = req->mode == SBX_MODE_NAMESPACES;
  p->probe_only = req->probe_only;
  p->legacy_mount = req->force_legacy || !f->mount_api ||
                    (getenv("SBX_FORCE_LEGACY_MOUNT") &&
                     !strcmp(getenv("SBX_FORCE_LEGACY_MOUNT"), "1"));
  p->in_uid = SBX_INSIDE_ID;
  p->in_gid = SBX_INSIDE_ID;
  p->host_uid = f->host_uid;
  p->host_gid = f->host_gid;
  p->drop_groups = geteuid() == 0;
  p->seccomp = sbx_probe_seccomp();
  p->caps_empty = sbx_probe_caps();
  return 0;
}

int sbx_run(const sbx_request *req, sbx_result *res) {
  const sbx_features *f;
  sbx_plan plan;
  int rc;

  memset(res, 0, sizeof(*res));
  if (!req || !req->argv) {
    sbx_util_msg(res->error, sizeof(res->error), "no command");
    return DB_EINVAL;
  }
  f = sbx_probe();
  if (req->mode == SBX_MODE_NAMESPACES &&
      (f->ns != SBX_NS_ALL || !f->sandbox_ok || !f->seccomp || !f->caps)) {
    sbx_util_msg(res->error, sizeof(res->error),
                 "sandbox unavailable (%s); refusing to run unsandboxed",
                 f->detail);
    return DB_EUNSUPP;
  }
  rc = sbx_spawn_run(req, res);
  if (rc != SBX_SPAWN_LOCAL)
    return rc;
  sbx_plan_init(&plan, req, f);
  if (req->mode == SBX_MODE_NONE)
    DB_DEBUG("sandbox", "running %s UNSANDBOXED (--sandbox=none)",
             req->argv[0]);
  return sbx_run_plan(&plan, req, res);
}
