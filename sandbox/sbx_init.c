/*
 * Step 6: pid 1 of the sandbox's PID namespace, and the action process.
 *
 * pid 1 forks the action (pid 2), then execs the small sbx-init program
 * from a memfd (sbx_pid1.c; in-process if that fails), so that nothing of
 * the worker's memory stays in the sandbox.  It reaps every process that
 * ends up as its child (orphans are re-parented to it).  When pid 2 exits,
 * pid 1 reports pid 2's wait status to the supervisor and exits; the
 * kernel then SIGKILLs whatever is left in the namespace, so no daemon
 * outlives its action (bwrap's do_init, Bazel's linux-sandbox-pid1).  The
 * supervisor likewise kills the whole tree on timeout by killing pid 1.
 *
 * The action process: a new session (no controlling terminal to inject
 * into), stdio, every other fd closed, cwd, default signal dispositions and
 * an empty mask, then the seccomp filter, loaded last, right before
 * execve (bwrap: "so that filters don't need to handle anything above").
 */
#include "sbx_int.h"

#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

void sbx_child_die(const sbx_plan *p, const struct sbx_msg *m) {
  sbx_util_write_all(p->report_wr, m, sizeof(*m));
  _exit(127);
}

static void reset_signals(void) {
  struct sigaction sa;
  sigset_t all;
  int s;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (s = 1; s < NSIG; s++)
    sigaction(s, &sa, NULL); /* EINVAL for SIGKILL/SIGSTOP/RT: ignored */
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

/* execve argv[0], searching |path| when it has no slash (like execvp, but
 * in the sandbox's PATH and without allocating). */
static int exec_search(const sbx_plan *p) {
  const char *file = p->argv[0], *dir = p->path;
  char buf[4096];
  int saved = ENOENT;

  if (strchr(file, '/')) {
    execve(file, p->argv, p->envp);
    return errno;
  }
  while (dir && *dir) {
    const char *end = strchr(dir, ':');
    size_t dl = end ? (size_t)(end - dir) : strlen(dir);
    if (dl + 1 + strlen(file) + 1 <= sizeof(buf)) {
      memcpy(buf, dl ? dir : ".", dl ? dl : 1);
      buf[dl ? dl : 1] = '/';
      memcpy(buf + (dl ? dl : 1) + 1, file, strlen(file) + 1);
      execve(buf, p->argv, p->envp);
      if (errno != ENOENT && errno != ENOTDIR)
        saved = errno;
    }
    dir = end ? end + 1 : NULL;
  }
  return saved;
}

void sbx_init_exec_action(const sbx_plan *p) {
  struct sbx_msg m;
  int fd[3], keep[4];
  int i, err;

  memset(&m, 0, sizeof(m));
  setsid();
  /* Move sources out of 0..2 first so a dup2 cannot clobber one. */
  for (i = 0; i < 3; i++) {
    fd[i] = p->stdio[i];
    if (fd[i] < 3 && fd[i] != i)
      fd[i] = fcntl(fd[i], F_DUPFD_CLOEXEC, 3);
    if (fd[i] < 0) {
      sbx_util_fail(&m, SBX_STEP_STDIO, errno, "dup");
      sbx_child_die(p, &m);
    }
  }
  for (i = 0; i < 3; i++) {
    if ((fd[i] != i ? dup2(fd[i], i) : fcntl(i, F_SETFD, 0)) < 0) {
      sbx_util_fail(&m, SBX_STEP_STDIO, errno, "dup2");
      sbx_child_die(p, &m);
    }
  }
  /* Everything but stdio and the CLOEXEC report pipe. */
  keep[0] = 0;
  keep[1] = 1;
  keep[2] = 2;
  keep[3] = p->report_wr;
  sbx_util_close_except(keep, 4);
  if (p->cwd && chdir(p->cwd) < 0) {
    sbx_util_fail(&m, SBX_STEP_CWD, errno, p->cwd);
    sbx_child_die(p, &m);
  }
  umask(022);
  reset_signals();
  if (p->seccomp && sbx_seccomp_apply(p->seccomp, &m) < 0)
    sbx_child_die(p, &m);
  if (p->probe_only)
    _exit(0);
  err = exec_search(p);
  sbx_util_fail(&m, SBX_STEP_EXEC, err, p->argv[0]);
  sbx_child_die(p, &m);
}

/* ASan flags the stack switch of the vfork-like path ("stack type
 * default"); sanitizer builds use the fork-like clone instead. */
#if defined(__SANITIZE_ADDRESS__)
#define SBX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SBX_ASAN 1
#endif
#endif
#ifndef SBX_ASAN
#define SBX_ASAN 0
#endif

static int action_main(void *arg) {
  sbx_init_exec_action(arg);
}

/* Become the sbx-init program (sbx_pid1.c), which drops this copy of the
 * worker's memory (tokens, keys) instead of keeping it in the sandbox for
 * the action's whole life.  Returns only if the execve failed; pid 1 then
 * reaps in-process. */
static void exec_pid1(const sbx_plan *p, pid_t action) {
  char name[] = "sbx-init", pid_s[12] = "", fd_s[12] = "";
  char *argv[] = {name, pid_s, fd_s, NULL}, *envp[] = {NULL};
  int flags = fcntl(p->report_wr, F_GETFD);

  if (p->pid1_fd < 0 || flags < 0 ||
      fcntl(p->report_wr, F_SETFD, flags & ~FD_CLOEXEC) < 0)
    return;
  sbx_util_append_uint(pid_s, sizeof(pid_s), (unsigned)action);
  sbx_util_append_uint(fd_s, sizeof(fd_s), (unsigned)p->report_wr);
  syscall(SYS_execveat, p->pid1_fd, "", argv, envp, AT_EMPTY_PATH);
  fcntl(p->report_wr, F_SETFD, flags);
}

void sbx_init_run(const sbx_plan *p) {
  struct sbx_msg m;
  pid_t action;

  memset(&m, 0, sizeof(m));
  /* vfork-like: the action borrows pid 1's address space (no page-table
   * copy of what is a copy of the whole worker) on its own stack, and pid 1
   * sleeps until the execve.  The action only makes system calls. */
  action = -1;
  if (p->action_stack && !SBX_ASAN)
    action = clone(action_main, (char *)p->action_stack + SBX_STACK_SIZE,
                   CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)p);
  if (action < 0)
    action = sbx_util_clone(SIGCHLD, NULL);
  if (action < 0) {
    sbx_util_fail(&m, SBX_STEP_INIT, errno, "fork action");
    sbx_child_die(p, &m);
  }
  if (action == 0)
    sbx_init_exec_action(p);
  sbx_util_set_name("sbx-init");
  exec_pid1(p, action);
  sbx_reap_report(action, p->report_wr);
}

/* ---- parent side ----------------------------------------------------------
 */

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

static pthread_once_t g_image_once = PTHREAD_ONCE_INIT;
static int g_image_fd = -1;

static void make_image_fd(void) {
  size_t len = (size_t)(sbx_pid1_image_end - sbx_pid1_image);
  int fd;

  /* MFD_EXEC: kernels with vm.memfd_noexec would otherwise seal it
   * non-executable; older kernels reject the flag. */
  fd = (int)syscall(SYS_memfd_create, "sbx-init",
                    MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL)
    fd = (int)syscall(SYS_memfd_create, "sbx-init",
                      MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    DB_DEBUG("sandbox", "memfd for sbx-init: %s; pid 1 reaps in-process",
             strerror(errno));
    return;
  }
  if (sbx_util_write_all(fd, sbx_pid1_image, len) < 0 ||
      fcntl(fd, F_ADD_SEALS,
            F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
    DB_DEBUG("sandbox", "sbx-init image: %s; pid 1 reaps in-process",
             strerror(errno));
    close(fd);
    return;
  }
  g_image_fd = fd;
}

int sbx_init_image_fd(void) {
  pthread_once(&g_image_once, make_image_fd);
  return g_image_fd;
}
