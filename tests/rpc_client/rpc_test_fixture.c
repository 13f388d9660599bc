/* The rpc_client tests' server, helpers and runner; see rpc_test_fixture.h. */
#include "rpc_test_fixture.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int rpct_failures;
static const char *rpct_server_script;

static pid_t rpct_server_pid = -1;

void rpct_server_stop(void) {
  int status;

  if (rpct_server_pid > 0) {
    kill(rpct_server_pid, SIGKILL);
    waitpid(rpct_server_pid, &status, 0);
    rpct_server_pid = -1;
  }
}

/* 1 when every thread of pid is stopped ('T' in /proc/PID/task/TID/stat). */
static int all_threads_stopped(pid_t pid) {
  char path[64], buf[512];
  struct dirent *e;
  DIR *d;
  int stopped = 1, seen = 0;

  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  d = opendir(path);
  if (!d)
    return 0;
  while (stopped && (e = readdir(d)) != NULL) {
    FILE *f;
    char *rp;
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/%d/task/%.20s/stat", (int)pid,
             e->d_name);
    f = fopen(path, "r");
    if (!f)
      continue; /* the thread just exited */
    if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) != NULL) {
      seen++;
      stopped = rp[1] == ' ' && (rp[2] == 'T' || rp[2] == 't');
    }
    fclose(f);
  }
  closedir(d);
  return stopped && seen > 0;
}

int rpct_server_signal(int sig) {
  int i;

  if (rpct_server_pid <= 0 || kill(rpct_server_pid, sig) != 0)
    return -1;
  /* kill() only queues the stop: a thread of the server that is running
   * or waking up may still answer a request sent right after. Wait until
   * the kernel shows all of them stopped. */
  for (i = 0; sig == SIGSTOP && i < 2000; i++) {
    if (all_threads_stopped(rpct_server_pid))
      return 0;
    usleep(1000);
  }
  return sig == SIGSTOP ? -1 : 0;
}

/* Start the server on port (0 = any); returns its port or exits. */
int rpct_server_start(int port) {
  int pfd[2], n = 0, got = -1, tries;
  char buf[128], arg[16];
  FILE *f;

  for (tries = 0; tries < 50; tries++) {
    if (pipe(pfd) != 0)
      abort();
    snprintf(arg, sizeof(arg), "%d", port);
    rpct_server_pid = fork();
    if (rpct_server_pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(pfd[1], 1);
      close(pfd[0]);
      close(pfd[1]);
      execl("/usr/bin/python3", "python3", rpct_server_script, arg,
            (char *)NULL);
      _exit(127);
    }
    close(pfd[1]);
    f = fdopen(pfd[0], "r");
    got = -1;
    if (f && fgets(buf, sizeof(buf), f) && sscanf(buf, "PORT %d", &n) == 1)
      got = n;
    if (f)
      fclose(f);
    if (got > 0)
      break;
    /* Rebinding a just-freed port can fail briefly: retry. */
    rpct_server_stop();
    if (port == 0)
      break;
    usleep(100000);
  }
  if (got <= 0) {
    fprintf(stderr, "cannot start %s\n", rpct_server_script);
    exit(2);
  }
  return got;
}

rpc_client *rpct_client_for(int port, const rpc_client_opts *o) {
  char target[64];
  rpc_client *c = NULL;

  snprintf(target, sizeof(target), "grpc://127.0.0.1:%d", port);
  if (rpc_client_new(target, o, &c) != 0) {
    fprintf(stderr, "rpc_client_new failed\n");
    exit(2);
  }
  return c;
}

int64_t rpct_now_ms(void) {
  return rpc_now_ms();
}

/* ESTABLISHED client sockets (remote port = port) in /proc/net/tcp{,6}. */
/* 1 if this process holds the socket with this inode. Other tests may run
 * at the same time, and a socket of theirs can show the same port. */
static int own_socket(unsigned long ino) {
  char want[64], path[300], got[64];
  DIR *d = opendir("/proc/self/fd");
  struct dirent *de;
  int found = 0;

  if (!d)
    return 1;
  snprintf(want, sizeof(want), "socket:[%lu]", ino);
  while (!found && (de = readdir(d)) != NULL) {
    ssize_t n;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
    n = readlink(path, got, sizeof(got) - 1);
    if (n > 0) {
      got[n] = '\0';
      found = strcmp(got, want) == 0;
    }
  }
  closedir(d);
  return found;
}

/* This process's established TCP connections to port. */
int rpct_count_connections(int port) {
  const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  char line[512], rem[64];
  unsigned st;
  unsigned long ino;
  int n = 0;
  size_t i;

  for (i = 0; i < 2; i++) {
    FILE *f = fopen(files[i], "r");
    if (!f)
      continue;
    while (fgets(line, sizeof(line), f)) {
      char *colon;
      if (sscanf(line, "%*s %*s %63s %x %*s %*s %*s %*s %*s %lu", rem, &st,
                 &ino) != 3)
        continue;
      colon = strrchr(rem, ':');
      if (colon && st == 1 && strtol(colon + 1, NULL, 16) == port &&
          own_socket(ino))
        n++;
    }
    fclose(f);
  }
  return n;
}

long rpct_rss_kib(void) {
  char line[256];
  long v = -1;
  FILE *f = fopen("/proc/self/status", "r");

  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "VmRSS: %ld", &v) == 1)
      break;
  }
  fclose(f);
  return v;
}

void rpct_put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

uint32_t rpct_get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

uint64_t rpct_get64(const uint8_t *p) {
  return (uint64_t)rpct_get32(p) << 32 | rpct_get32(p + 4);
}

void rpct_count_done(void *ctx, const rpc_status *st) {
  int *n = ctx;

  n[10 + st->code]++;
}

int rpct_main(int argc, char **argv, const rpct_case *cases, size_t n) {
  size_t i;

  if (argc != 3) {
    fprintf(stderr, "usage: %s CASE echo_server.py\n", argv[0]);
    return 2;
  }
  rpct_server_script = argv[2];
  signal(SIGPIPE, SIG_IGN);
  atexit(rpct_server_stop);
  for (i = 0; i < n; i++) {
    if (strcmp(cases[i].name, argv[1]) == 0) {
      cases[i].fn();
      if (rpct_failures)
        fprintf(stderr, "%s: %d check(s) failed\n", argv[1], rpct_failures);
      else
        fprintf(stderr, "%s: ok\n", argv[1]);
      return rpct_failures ? 1 : 0;
    }
  }
  fprintf(stderr, "unknown case %s\n", argv[1]);
  return 2;
}
