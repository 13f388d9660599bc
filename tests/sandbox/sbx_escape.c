/*
 * Escape attempts, run inside the sandbox by escape.sh.  Each subcommand
 * tries one thing and prints what happened; the exit status says whether
 * the attempt SUCCEEDED (0) or was refused (1), so the script can assert
 * either way and also run positive controls outside the sandbox.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

static int do_listen(void) {
  struct sockaddr_in a;
  socklen_t l = sizeof(a);
  int s = socket(AF_INET, SOCK_STREAM, 0), c;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      listen(s, 16) < 0 || getsockname(s, (struct sockaddr *)&a, &l) < 0) {
    perror("listen");
    return 2;
  }
  printf("%d\n", ntohs(a.sin_port));
  fflush(stdout);
  alarm(60);
  for (;;) {
    c = accept(s, NULL, NULL);
    if (c >= 0) {
      if (write(c, "hello\n", 6) < 0) {
      }
      close(c);
    }
  }
}

static int do_connect(int port) {
  struct sockaddr_in a;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
    printf("connect 127.0.0.1:%d: %s\n", port, strerror(errno));
    return 1;
  }
  printf("connected to 127.0.0.1:%d\n", port);
  return 0;
}

static int do_ptrace(pid_t pid) {
  if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0) {
    printf("ptrace %d: %s\n", (int)pid, strerror(errno));
    return 1;
  }
  printf("ptrace %d: attached\n", (int)pid);
  waitpid(pid, NULL, __WALL); /* the attach stop, then let it go */
  ptrace(PTRACE_DETACH, pid, NULL, NULL);
  return 0;
}

#define TRY(name, expr)                                                        \
  do {                                                                         \
    long r_ = (long)(expr);                                                    \
    printf("%-24s %s\n", name, r_ < 0 ? strerror(errno) : "SUCCEEDED");        \
    if (r_ >= 0)                                                               \
      ok++;                                                                    \
  } while (0)

static int do_ns(void) {
  int ok = 0, fd;
  struct {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        stack_size, tls;
  } ca;
  long pid;

  TRY("mount tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, NULL));
  TRY("umount /proc", umount2("/proc", MNT_DETACH));
  TRY("unshare(NEWUSER)", unshare(CLONE_NEWUSER));
  TRY("unshare(NEWNS)", unshare(CLONE_NEWNS));
  TRY("unshare(NEWNET)", unshare(CLONE_NEWNET));
  fd = open("/proc/self/ns/mnt", O_RDONLY);
  TRY("setns(mnt)", setns(fd, 0));
  TRY("chroot", chroot("/tmp"));
  TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
#ifdef SYS_open_tree
  TRY("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/usr", 1));
  TRY("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
#endif
  /* clone with a namespace flag; a successful child exits at once. */
  pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  TRY("clone(NEWUSER)", pid);
  pid = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  TRY("clone(NEWNET)", pid);
  memset(&ca, 0, sizeof(ca));
  ca.exit_signal = SIGCHLD;
  pid = syscall(SYS_clone3, &ca, sizeof(ca));
  if (pid == 0)
    _exit(0);
  if (pid > 0)
    waitpid((pid_t)pid, NULL, 0);
  printf("%-24s %s\n", "clone3 (want ENOSYS)",
         pid < 0 ? strerror(errno) : "SUCCEEDED");
  if (!(pid < 0 && errno == ENOSYS))
    ok++;
  TRY("keyctl", syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0));
  TRY("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
  TRY("bpf", syscall(SYS_bpf, 0, NULL, 0));
  TRY("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  TRY("userfaultfd", syscall(SYS_userfaultfd, 0));
#ifdef SYS_io_uring_setup
  TRY("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
#endif
  TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
  TRY("sethostname", sethostname("evil", 4));
  /* A fork without namespace flags must still work. */
  pid = fork();
  if (pid == 0)
    _exit(0);
  printf("%-24s %s\n", "plain fork (want ok)", pid < 0 ? "FAILED" : "ok");
  if (pid < 0)
    ok++;
  else
    waitpid((pid_t)pid, NULL, 0);
  return ok == 0 ? 1 : 0; /* 1: everything refused */
}

static int do_i386(void) {
  long ret = 20; /* i386 __NR_getpid */
  __asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
  printf("i386 getpid = %ld\n", ret);
  return 0;
}

static int do_x32(void) {
  long r = syscall(39 | 0x40000000L); /* x32 getpid */
  printf("x32 getpid = %ld (%s)\n", r, r < 0 ? strerror(errno) : "ok");
  return r < 0 ? 1 : 0;
}

static int do_forkbomb(int max) {
  int n = 0, err = 0;
  for (n = 0; n < max; n++) {
    pid_t p = fork();
    if (p == 0) {
      pause();
      _exit(0);
    }
    if (p < 0) {
      err = errno;
      break;
    }
  }
  printf("forked %d (%s)\n", n, err ? strerror(err) : "no failure");
  return n < max ? 1 : 0;
}

static int do_memhog(long mb) {
  long i;
  for (i = 0; i < mb; i++) {
    char *p = malloc(1 << 20);
    if (!p) {
      printf("malloc failed at %ld MiB\n", i);
      return 1;
    }
    memset(p, (int)i, 1 << 20);
  }
  printf("allocated %ld MiB\n", mb);
  return 0;
}

static int do_daemonize(const char *marker) {
  pid_t p = fork();
  if (p < 0)
    return 2;
  if (p > 0) {
    waitpid(p, NULL, 0); /* first child exits at once */
    printf("daemonized\n");
    fflush(stdout);
    return 0;
  }
  setsid();
  p = fork();
  if (p != 0)
    _exit(0);
  /* grandchild: detached, re-parented to pid 1 */
  prctl(PR_SET_NAME, marker);
  close(0);
  close(1);
  close(2);
  for (;;)
    sleep(1);
}

static int do_ids(void) {
  char line[256];
  FILE *f = fopen("/proc/self/status", "r");
  printf("euid=%d egid=%d", (int)geteuid(), (int)getegid());
  while (f && fgets(line, sizeof(line), f))
    if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7))
      printf(" %.*s", (int)strcspn(line, "\n"), line);
  printf("\n");
  if (f)
    fclose(f);
  return 0;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "";
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(cmd, "listen"))
    return do_listen();
  if (!strcmp(cmd, "connect") && argc > 2)
    return do_connect(atoi(argv[2]));
  if (!strcmp(cmd, "ptrace") && argc > 2)
    return do_ptrace((pid_t)atoi(argv[2]));
  if (!strcmp(cmd, "ns"))
    return do_ns();
  if (!strcmp(cmd, "i386"))
    return do_i386();
  if (!strcmp(cmd, "x32"))
    return do_x32();
  if (!strcmp(cmd, "forkbomb") && argc > 2)
    return do_forkbomb(atoi(argv[2]));
  if (!strcmp(cmd, "memhog") && argc > 2)
    return do_memhog(atol(argv[2]));
  if (!strcmp(cmd, "daemonize") && argc > 2)
    return do_daemonize(argv[2]);
  if (!strcmp(cmd, "ids"))
    return do_ids();
  fprintf(stderr, "usage: sbx_escape listen|connect PORT|ptrace PID|ns|i386|"
                  "x32|forkbomb N|memhog MB|daemonize NAME|ids\n");
  return 2;
}
