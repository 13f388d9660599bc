/* Library-level integration tests of sbx_run(): results, errors, limits,
 * and concurrent use from several threads (the worker's slots). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "db_err.h"
#include "sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const g_env[] = {"PATH=/usr/bin:/bin", NULL};

static sbx_request *mkreq(const char *const *argv) {
  sbx_request *r = NULL;
  assert_int_equal(sbx_request_new(&r), 0);
  assert_int_equal(sbx_request_set_argv(r, argv), 0);
  assert_int_equal(sbx_request_set_env(r, g_env), 0);
  assert_int_equal(sbx_request_add_default_layout(r), 0);
  return r;
}

static void test_exit_code(void **state) {
  const char *argv[] = {"sh", "-c", "exit 3", NULL};
  sbx_request *r = mkreq(argv);
  sbx_result res;
  (void)state;
  assert_int_equal(sbx_run(r, &res), 0);
  assert_true(res.exited);
  assert_int_equal(res.exit_code, 3);
  assert_false(res.timed_out);
  assert_true(res.wall_us > 0);
  sbx_request_free(r);
}

static void test_pipe_capture(void **state) {
  const char *argv[] = {"sh", "-c", "echo out; echo err >&2; pwd", NULL};
  sbx_request *r = mkreq(argv);
  sbx_result res;
  char buf[256];
  int p[2];
  ssize_t n;
  (void)state;
  assert_int_equal(pipe(p), 0);
  sbx_request_set_stdio_fd(r, 1, p[1]);
  sbx_request_set_stdio_fd(r, 2, p[1]);
  assert_int_equal(sbx_request_add_mount(r, SBX_MOUNT_TMPFS, NULL, "/w/x"), 0);
  assert_int_equal(sbx_request_set_cwd(r, "/w/x"), 0);
  assert_int_equal(sbx_run(r, &res), 0);
  close(p[1]);
  n = read(p[0], buf, sizeof(buf) - 1);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_string_equal(buf, "out\nerr\n/w/x\n");
  close(p[0]);
  sbx_request_free(r);
}

static void test_timeout(void **state) {
  const char *argv[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
  sbx_request *r = mkreq(argv);
  sbx_limits lim;
  sbx_result res;
  (void)state;
  memset(&lim, 0, sizeof(lim));
  lim.timeout_ms = 200;
  sbx_request_set_limits(r, &lim);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_true(res.timed_out);
  assert_false(res.exited);
  assert_int_equal(res.term_signal, SIGKILL);
  assert_true(res.wall_us >= 200000 && res.wall_us < 2000000);
  sbx_request_free(r);
}

static void *cancel_later(void *arg) {
  uint64_t one = 1;
  usleep(200 * 1000);
  if (write(*(int *)arg, &one, sizeof(one)) != (ssize_t)sizeof(one))
    abort();
  return NULL;
}

/* Cancel a running sandbox from another thread, in both modes; without
 * namespaces the background child must die with the process group. */
static void test_cancel(void **state) {
  const char *argv[] = {"sh", "-c", "sleep 30 & echo $!; wait", NULL};
  const sbx_mode modes[] = {SBX_MODE_NAMESPACES, SBX_MODE_NONE};
  (void)state;
  for (size_t m = 0; m < 2; m++) {
    sbx_request *r = mkreq(argv);
    sbx_result res;
    pthread_t th;
    char buf[32];
    int efd = eventfd(0, EFD_CLOEXEC), p[2];
    ssize_t n;
    assert_true(efd >= 0);
    assert_int_equal(pipe(p), 0);
    sbx_request_set_mode(r, modes[m]);
    sbx_request_set_stdio_fd(r, 1, p[1]);
    sbx_request_set_cancel_fd(r, efd);
    assert_int_equal(pthread_create(&th, NULL, cancel_later, &efd), 0);
    assert_int_equal(sbx_run(r, &res), 0);
    pthread_join(th, NULL);
    close(p[1]);
    assert_true(res.cancelled);
    assert_false(res.timed_out);
    assert_false(res.exited);
    assert_int_equal(res.term_signal, SIGKILL);
    assert_true(res.wall_us >= 150000 && res.wall_us < 5000000);
    n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    if (modes[m] == SBX_MODE_NONE) { /* a host pid: it must be gone */
      pid_t bg = (pid_t)atoi(buf);
      int i;
      assert_true(bg > 1);
      for (i = 0; i < 200 && kill(bg, 0) == 0; i++)
        usleep(10 * 1000); /* until init reaps it */
      assert_int_equal(kill(bg, 0), -1);
      assert_int_equal(errno, ESRCH);
    }
    sbx_request_free(r);
    close(efd);
  }
}

/* A cancel fd already readable: the run ends at once; an idle one
 * changes nothing. */
static void test_cancel_before_and_never(void **state) {
  const char *slow[] = {"sleep", "30", NULL};
  const char *quick[] = {"sh", "-c", "exit 4", NULL};
  uint64_t one = 1;
  int efd = eventfd(0, EFD_CLOEXEC);
  sbx_request *r;
  sbx_result res;
  (void)state;
  assert_true(efd >= 0);
  r = mkreq(quick);
  sbx_request_set_cancel_fd(r, efd);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_false(res.cancelled);
  assert_true(res.exited);
  assert_int_equal(res.exit_code, 4);
  sbx_request_free(r);
  assert_int_equal(write(efd, &one, sizeof(one)), (ssize_t)sizeof(one));
  r = mkreq(slow);
  sbx_request_set_cancel_fd(r, efd);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_true(res.cancelled);
  assert_false(res.exited);
  assert_true(res.wall_us < 5000000);
  sbx_request_free(r);
  close(efd);
}

/* The pid of a process with an argument equal to arg, or 0. */
static pid_t find_proc(const char *arg) {
  DIR *d = opendir("/proc");
  struct dirent *de;
  pid_t found = 0;

  assert_non_null(d);
  while (!found && (de = readdir(d)) != NULL) {
    char path[300], buf[512];
    ssize_t n;
    int fd;
    if (de->d_name[0] < '0' || de->d_name[0] > '9')
      continue;
    snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
      buf[n] = '\0';
      if (strcmp(buf + i, arg) == 0)
        found = (pid_t)atoi(de->d_name);
    }
  }
  closedir(d);
  return found;
}

/* SIGKILL the process that called sbx_run(): the sandbox must die with
 * it, in both modes (the kernel clears PR_SET_PDEATHSIG when the child
 * switches ids, so it has to be armed again). */
static void test_supervisor_killed(void **state) {
  const sbx_mode modes[] = {SBX_MODE_NAMESPACES, SBX_MODE_NONE};
  (void)state;
  for (size_t m = 0; m < 2; m++) {
    char arg[32];
    pid_t sup;
    int i, st;
    snprintf(arg, sizeof(arg), "%d.%zu", 40000 + (int)(getpid() % 10000), m);
    sup = fork();
    assert_true(sup >= 0);
    if (sup == 0) {
      const char *argv[] = {"sleep", arg, NULL};
      sbx_request *r = NULL;
      sbx_result res;
      if (sbx_request_new(&r) || sbx_request_set_argv(r, argv) ||
          sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r))
        _exit(2);
      sbx_request_set_mode(r, modes[m]);
      _exit(sbx_run(r, &res) == 0 ? 0 : 3);
    }
    for (i = 0; i < 500 && !find_proc(arg); i++)
      usleep(10 * 1000);
    assert_true(find_proc(arg) > 0);
    kill(sup, SIGKILL);
    assert_int_equal(waitpid(sup, &st, 0), sup);
    for (i = 0; i < 300 && find_proc(arg); i++)
      usleep(10 * 1000);
    assert_int_equal(find_proc(arg), 0);
  }
}

static void test_file_size_limit(void **state) {
  const char *argv[] = {"head", "-c", "100000", "/dev/zero", NULL};
  sbx_request *r = mkreq(argv);
  sbx_limits lim;
  sbx_result res;
  char path[] = "/tmp/sbx-fsize-XXXXXX";
  int fd = mkstemp(path);
  (void)state;
  assert_true(fd >= 0);
  memset(&lim, 0, sizeof(lim));
  lim.max_file_bytes = 4096;
  sbx_request_set_limits(r, &lim);
  sbx_request_set_stdio_fd(r, 1, fd);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_int_equal(res.term_signal, SIGXFSZ);
  assert_true(lseek(fd, 0, SEEK_END) <= 4096);
  close(fd);
  unlink(path);
  sbx_request_free(r);
}

/* The niceness the sandboxed command saw (field 19 of /proc/self/stat). */
static int run_nice(sbx_mode mode, uint32_t nice) {
  const char *argv[] = {"cat", "/proc/self/stat", NULL};
  sbx_request *r = mkreq(argv);
  sbx_limits lim;
  sbx_result res;
  char buf[1024], *p;
  int fds[2], v = -100;
  ssize_t n;
  memset(&lim, 0, sizeof(lim));
  lim.nice = nice;
  sbx_request_set_limits(r, &lim);
  sbx_request_set_mode(r, mode);
  assert_int_equal(pipe(fds), 0);
  sbx_request_set_stdio_fd(r, 1, fds[1]);
  assert_int_equal(sbx_run(r, &res), 0);
  close(fds[1]);
  assert_true(res.exited && res.exit_code == 0);
  n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  assert_true(n > 0);
  buf[n] = '\0';
  /* After "pid (comm) ": state is field 3, nice field 19. */
  p = strrchr(buf, ')');
  assert_non_null(p);
  p += 2;
  for (int f = 3; f < 19 && p; f++) {
    p = strchr(p, ' ');
    if (p)
      p++;
  }
  assert_non_null(p);
  v = atoi(p);
  sbx_request_free(r);
  return v;
}

static void test_nice(void **state) {
  int base = getpriority(PRIO_PROCESS, 0);
  (void)state;
  assert_int_equal(run_nice(SBX_MODE_NAMESPACES, 0), base);
  assert_int_equal(run_nice(SBX_MODE_NAMESPACES, 7),
                   base + 7 > 19 ? 19 : base + 7);
  assert_int_equal(run_nice(SBX_MODE_NONE, 3), base + 3 > 19 ? 19 : base + 3);
  assert_int_equal(run_nice(SBX_MODE_NAMESPACES, 30), 19);
  /* The caller's own priority is untouched. */
  assert_int_equal(getpriority(PRIO_PROCESS, 0), base);
}

static void test_errors(void **state) {
  const char *missing[] = {"/no/such/program", NULL};
  const char *ok[] = {"/bin/true", NULL};
  sbx_request *r = mkreq(missing);
  sbx_result res;
  (void)state;
  assert_int_equal(sbx_run(r, &res), DB_ENOTFOUND);
  assert_non_null(strstr(res.error, "/no/such/program"));
  sbx_request_free(r);
  r = mkreq(ok);
  assert_int_equal(
      sbx_request_add_mount(r, SBX_MOUNT_RO_BIND, "/no/such/dir", "/x"), 0);
  assert_int_equal(sbx_run(r, &res), DB_ENOTFOUND);
  assert_non_null(strstr(res.error, "/no/such/dir"));
  sbx_request_free(r);
  r = mkreq(ok);
  assert_int_equal(sbx_request_set_cwd(r, "/usr/no-such-dir"), 0);
  assert_int_equal(sbx_run(r, &res), DB_ENOTFOUND);
  sbx_request_free(r);
}

/* sbx_request_add_dev: names are checked, and a FIFO bound at /dev/NAME is
 * shared with the host (the worker's jobserver). */
static void test_dev(void **state) {
  const char *argv[] = {"sh", "-c",
                        "test -p /dev/jobserver && head -c 1 /dev/jobserver "
                        "&& printf x > /dev/jobserver",
                        NULL};
  const char *ok[] = {"/bin/true", NULL};
  char dir[] = "/tmp/sbx-dev-XXXXXX", fifo[64], reg[64], buf[8];
  sbx_request *r = mkreq(argv);
  sbx_result res;
  int p[2], fd;
  ssize_t n;
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(fifo, sizeof(fifo), "%s/js", dir);
  snprintf(reg, sizeof(reg), "%s/reg", dir);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  assert_int_equal(chmod(fifo, 0666), 0);
  fd = open(fifo, O_RDWR | O_NONBLOCK);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "+", 1), 1);
  /* Bad requests. */
  assert_int_equal(sbx_request_add_dev(r, fifo, ""), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, fifo, "a/b"), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, fifo, ".."), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, fifo, "null"), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, fifo, "stdout"), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, "js", "jobserver"), DB_EINVAL);
  assert_int_equal(sbx_request_add_dev(r, fifo, "jobserver"), 0);
  assert_int_equal(sbx_request_add_dev(r, fifo, "jobserver"), DB_EINVAL);
  assert_int_equal(pipe(p), 0);
  sbx_request_set_stdio_fd(r, 1, p[1]);
  assert_int_equal(sbx_run(r, &res), 0);
  close(p[1]);
  assert_true(res.exited);
  assert_int_equal(res.exit_code, 0);
  n = read(p[0], buf, sizeof(buf));
  assert_int_equal(n, 1);
  assert_int_equal(buf[0], '+'); /* the host's token */
  close(p[0]);
  n = read(fd, buf, sizeof(buf));
  assert_int_equal(n, 1);
  assert_int_equal(buf[0], 'x'); /* what the action wrote back */
  sbx_request_free(r);
  /* At most 4; then only FIFOs and character devices, and they must exist. */
  r = mkreq(ok);
  assert_int_equal(sbx_request_add_dev(r, fifo, "a"), 0);
  assert_int_equal(sbx_request_add_dev(r, fifo, "b"), 0);
  assert_int_equal(sbx_request_add_dev(r, fifo, "c"), 0);
  assert_int_equal(sbx_request_add_dev(r, "/dev/null", "d"), 0);
  assert_int_equal(sbx_request_add_dev(r, fifo, "e"), DB_ETOOBIG);
  assert_int_equal(sbx_run(r, &res), 0);
  sbx_request_free(r);
  close(open(reg, O_WRONLY | O_CREAT, 0644));
  r = mkreq(ok);
  assert_int_equal(sbx_request_add_dev(r, reg, "reg"), 0);
  assert_int_equal(sbx_run(r, &res), DB_EINVAL);
  assert_non_null(strstr(res.error, "not a FIFO"));
  sbx_request_free(r);
  unlink(reg);
  r = mkreq(ok);
  assert_int_equal(sbx_request_add_dev(r, reg, "gone"), 0);
  assert_int_equal(sbx_run(r, &res), DB_ENOTFOUND);
  sbx_request_free(r);
  close(fd);
  unlink(fifo);
  rmdir(dir);
}

static void test_mode_none(void **state) {
  const char *argv[] = {"sh", "-c", "test -d /root && exit 7", NULL};
  sbx_request *r = mkreq(argv);
  sbx_result res;
  (void)state;
  sbx_request_set_mode(r, SBX_MODE_NONE);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_int_equal(res.exit_code, 7); /* the host's /root: no isolation */
  sbx_request_free(r);
}

#define THREADS 8
#define RUNS 6

struct job {
  int id;
  int failures;
};

static void *worker(void *arg) {
  struct job *j = arg;
  char script[64];
  int i;
  snprintf(script, sizeof(script), "echo %d; exit %d", j->id, j->id + 10);
  for (i = 0; i < RUNS; i++) {
    const char *argv[] = {"sh", "-c", script, NULL};
    sbx_request *r = NULL;
    sbx_result res;
    char buf[32];
    int p[2];
    ssize_t n;
    if (sbx_request_new(&r) || sbx_request_set_argv(r, argv) ||
        sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r) ||
        pipe(p)) {
      j->failures++;
      sbx_request_free(r);
      continue;
    }
    sbx_request_set_stdio_fd(r, 1, p[1]);
    if (sbx_run(r, &res) != 0 || !res.exited || res.exit_code != j->id + 10)
      j->failures++;
    close(p[1]);
    n = read(p[0], buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    if (atoi(buf) != j->id)
      j->failures++;
    close(p[0]);
    sbx_request_free(r);
  }
  return NULL;
}

static void test_threads(void **state) {
  pthread_t t[THREADS];
  struct job jobs[THREADS];
  int i;
  (void)state;
  for (i = 0; i < THREADS; i++) {
    jobs[i].id = i;
    jobs[i].failures = 0;
    assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
  }
  for (i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(jobs[i].failures, 0);
  }
}

/* Run |script| with sh -c, capture stdout into |out|. */
static void run_sh(const char *script, char *out, size_t cap) {
  const char *argv[] = {"sh", "-c", script, NULL};
  sbx_request *r = mkreq(argv);
  sbx_result res;
  ssize_t n, off = 0;
  int p[2];
  assert_int_equal(pipe(p), 0);
  sbx_request_set_stdio_fd(r, 1, p[1]);
  assert_int_equal(sbx_run(r, &res), 0);
  close(p[1]);
  while ((n = read(p[0], out + off, cap - 1 - (size_t)off)) > 0)
    off += n;
  out[off] = '\0';
  close(p[0]);
  assert_true(res.exited);
  assert_int_equal(res.exit_code, 0);
  sbx_request_free(r);
}

/* A root worker reuses network namespaces (sbx_net.c): the next sandbox
 * must find nothing of the previous one's (a daemonized listener), a
 * working "lo", and no way to reconfigure it. */
static void test_net_reuse(void **state) {
  char out[4096];
  (void)state;
  if (access("/usr/bin/python3", X_OK) != 0) {
    skip();
    return;
  }
  run_sh("python3 -c 'import socket,os,time\n"
         "s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen()\n"
         "os.fork() and os._exit(0); time.sleep(60)' &\n"
         "sleep 0.2; grep -c \" 0A \" /proc/net/tcp",
         out, sizeof(out));
  assert_string_equal(out, "1\n");
  run_sh(
      "grep -c \" 0A \" /proc/net/tcp; "
      "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
      "python3 -c 'import socket\n"
      "s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen()\n"
      "c=socket.create_connection(s.getsockname()); print(\"lo-ok\")'; "
      "python3 -c 'import socket,fcntl,struct\n"
      "try:\n"
      " fcntl.ioctl(socket.socket(),0x8914,struct.pack(\"16sh\",b\"lo\",0))\n"
      " print(\"lo-down\")\n"
      "except OSError as e: print(\"denied\")'",
      out, sizeof(out));
  assert_string_equal(out, "0\nlo\nlo-ok\ndenied\n");
}

/* ---- cgroup anchors (sbx_anchor.c, cgroup v1 only) ---------------------- */

/* Mount point of the v1 hierarchy with |ctrl| (its root must be "/"). */
static int v1_mount(const char *ctrl, char *out, size_t cap) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[4096], opt[64];
  int found = 0;
  snprintf(opt, sizeof(opt), ",%s", ctrl);
  while (f && !found && fgets(line, sizeof(line), f)) {
    char root[1024], mnt[1024], *dash = strstr(line, " - cgroup ");
    size_t n;
    if (!dash || sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) != 2)
      continue;
    n = strcspn(dash, "\n");
    dash[n] = '\0';
    /* super options end the line: "... rw,pids" */
    if (strcmp(root, "/") == 0 && strlen(dash) >= strlen(opt) &&
        strcmp(dash + strlen(dash) - strlen(opt), opt) == 0) {
      snprintf(out, cap, "%s", mnt);
      found = 1;
    }
  }
  if (f)
    fclose(f);
  return found ? 0 : -1;
}

/* Read a whole (small) file into |out|, NUL-terminated. */
static void read_file(const char *path, char *out, size_t cap) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  out[fread(out, 1, cap - 1, f)] = '\0';
  fclose(f);
}

struct bg_run {
  sbx_request *r;
  sbx_result res;
  int rc;
};

static void *bg_main(void *arg) {
  struct bg_run *b = arg;
  b->rc = sbx_run(b->r, &b->res);
  return NULL;
}

/* The sandbox's cgroup path for |ctrl| from /proc/self/cgroup text. */
static int cg_path(const char *text, const char *ctrl, char *out, size_t cap) {
  char key[64];
  const char *p;
  snprintf(key, sizeof(key), ":%s:", ctrl);
  p = strstr(text, key);
  if (!p)
    return -1;
  p += strlen(key);
  snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
  return 0;
}

static void read_knob(const char *mnt, const char *path, const char *knob,
                      char *out, size_t cap) {
  char file[4096];
  snprintf(file, sizeof(file), "%s%s/%s", mnt, path, knob);
  read_file(file, out, cap);
  if (strchr(out, '\n') == out + strlen(out) - 1)
    out[strlen(out) - 1] = '\0'; /* one line: without its newline */
}

/* After the second limited run has started an anchor, later runs fork
 * inside a prepared cgroup set: the flag says so, the limits are exactly
 * the requested ones once the anchor thread has left (pids.max was one
 * higher while it sat there), this process is not left inside, and the
 * caller's own thread never moved. */
static void test_anchor_placement(void **state) {
  const char *argv[] = {"sh", "-c", "cat /proc/self/cgroup; sleep 0.5", NULL};
  char before[4096], after[4096], out[4096], mem_mnt[1024], pids_mnt[1024];
  char mem[1024], pids[1024], v[256];
  int preplaced = 0;
  (void)state;
  if (sbx_probe()->cgroup != SBX_CGROUP_V1 ||
      v1_mount("memory", mem_mnt, sizeof(mem_mnt)) != 0 ||
      v1_mount("pids", pids_mnt, sizeof(pids_mnt))) {
    skip();
    return;
  }
  read_file("/proc/thread-self/cgroup", before, sizeof(before));
  for (int run = 0; run < 5; run++) {
    struct bg_run b;
    sbx_limits lim;
    pthread_t th;
    ssize_t n, off = 0;
    int p[2];
    memset(&b, 0, sizeof(b));
    memset(&lim, 0, sizeof(lim));
    lim.memory_bytes = 256u << 20;
    lim.pids = 16;
    b.r = mkreq(argv);
    sbx_request_set_limits(b.r, &lim);
    assert_int_equal(pipe(p), 0);
    sbx_request_set_stdio_fd(b.r, 1, p[1]);
    assert_int_equal(pthread_create(&th, NULL, bg_main, &b), 0);
    /* The cgroup lines come first; then the action sleeps. */
    while (off < (ssize_t)sizeof(out) - 1 &&
           (off == 0 || !strstr(out, ":pids:") || !strstr(out, ":memory:") ||
            out[off - 1] != '\n') &&
           (n = read(p[0], out + off, sizeof(out) - 1 - (size_t)off)) > 0) {
      off += n;
      out[off] = '\0';
    }
    if (run > 0) {
      usleep(150000); /* the anchor moves on within a grace period or two */
      assert_int_equal(cg_path(out, "memory", mem, sizeof(mem)), 0);
      assert_int_equal(cg_path(out, "pids", pids, sizeof(pids)), 0);
      assert_non_null(strstr(mem, "/sbx-"));
      read_knob(pids_mnt, pids, "pids.max", v, sizeof(v));
      assert_string_equal(v, "16");
      read_knob(mem_mnt, mem, "memory.limit_in_bytes", v, sizeof(v));
      assert_int_equal(strtoull(v, NULL, 10), 256u << 20);
      /* Only the sandbox's processes: no thread of ours is left there. */
      read_knob(pids_mnt, pids, "cgroup.procs", out, sizeof(out));
      for (char *t = strtok(out, "\n"); t; t = strtok(NULL, "\n")) {
        assert_int_not_equal(atoi(t), (int)getpid());
        assert_int_not_equal(atoi(t), (int)sbx_spawner_pid());
      }
    }
    pthread_join(th, NULL);
    close(p[1]);
    close(p[0]);
    assert_int_equal(b.rc, 0);
    assert_true(b.res.exited && b.res.exit_code == 0);
    assert_int_equal(b.res.cgroup, SBX_CGROUP_V1);
    preplaced += b.res.cgroup_preplaced;
    sbx_request_free(b.r);
    usleep(100000); /* let the anchor prepare the next set */
  }
  assert_true(preplaced >= 3);
  read_file("/proc/thread-self/cgroup", after, sizeof(after));
  assert_string_equal(before, after);
}

/* An anchored run that is killed (timeout, then the OOM killer) takes
 * down its whole sandbox and nothing of this process: the anchor thread
 * may still be in the set when the kill lists it. */
static void test_anchor_kill(void **state) {
  const char *slow[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
  const char *hog[] = {
      "sh", "-c", "v=$(head -c 200000000 /dev/zero | tr '\\000' a); echo no",
      NULL};
  sbx_limits lim;
  sbx_result res;
  sbx_request *r;
  (void)state;
  if (sbx_probe()->cgroup != SBX_CGROUP_V1) {
    skip();
    return;
  }
  memset(&lim, 0, sizeof(lim));
  lim.memory_bytes = 64u << 20;
  lim.pids = 32;
  /* Quick runs end while the anchor still sits in the set: the kill at
   * the end of every run must spare us. */
  for (int run = 0; run < 6; run++) {
    const char *quick[] = {"true", NULL};
    r = mkreq(quick);
    sbx_request_set_limits(r, &lim);
    assert_int_equal(sbx_run(r, &res), 0);
    assert_true(res.exited && res.exit_code == 0);
    sbx_request_free(r);
    usleep(30000);
  }
  assert_true(res.cgroup_preplaced);
  lim.timeout_ms = 300;
  for (int run = 0; run < 3; run++) {
    r = mkreq(slow);
    sbx_request_set_limits(r, &lim);
    assert_int_equal(sbx_run(r, &res), 0);
    assert_true(res.timed_out);
    assert_int_equal(res.term_signal, SIGKILL);
    sbx_request_free(r);
    usleep(50000);
  }
  assert_true(res.cgroup_preplaced);
  lim.timeout_ms = 20000;
  r = mkreq(hog);
  sbx_request_set_limits(r, &lim);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_true(res.oom_killed);
  assert_true(res.cgroup_preplaced);
  sbx_request_free(r);
}

#define ANCHOR_THREADS 4
#define ANCHOR_RUNS 100

static void *limited_runs(void *arg) {
  const char *argv[] = {"/bin/true", NULL};
  int *failures = arg;
  sbx_limits lim;
  memset(&lim, 0, sizeof(lim));
  lim.memory_bytes = 256u << 20;
  lim.pids = 64;
  for (int i = 0; i < ANCHOR_RUNS; i++) {
    sbx_request *r = NULL;
    sbx_result res;
    if (sbx_request_new(&r) || sbx_request_set_argv(r, argv) ||
        sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r)) {
      (*failures)++;
      sbx_request_free(r);
      continue;
    }
    sbx_request_set_limits(r, &lim);
    if (sbx_run(r, &res) != 0 || !res.exited || res.exit_code != 0) {
      if (*failures == 0)
        fprintf(stderr, "limited run failed: %s\n", res.error);
      (*failures)++;
    }
    sbx_request_free(r);
  }
  return NULL;
}

/* Limited runs from several threads at once, so that anchors are taken
 * again as soon as they are back in the pool: each run must get its own
 * sandbox's pid (a run that read another's wrote the uid map of a sandbox
 * that was not its own: "uid/gid map: Operation not permitted"). */
static void test_anchor_threads(void **state) {
  pthread_t t[ANCHOR_THREADS];
  int failures[ANCHOR_THREADS] = {0};
  (void)state;
  for (int i = 0; i < ANCHOR_THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, limited_runs, &failures[i]),
                     0);
  for (int i = 0; i < ANCHOR_THREADS; i++) {
    pthread_join(t[i], NULL);
    assert_int_equal(failures[i], 0);
  }
}

/* Count "sbx-<owner>-*" cgroups in the v1 hierarchy of |ctrl|: the
 * process that makes them is the spawner when there is one. */
static int own_cgroups(const char *ctrl, pid_t owner) {
  char mnt[1024], self[4096], path[1024], dir[2048], prefix[64];
  struct dirent *e;
  DIR *d;
  int n = 0;
  read_file("/proc/self/cgroup", self, sizeof(self));
  assert_int_equal(v1_mount(ctrl, mnt, sizeof(mnt)), 0);
  assert_int_equal(cg_path(self, ctrl, path, sizeof(path)), 0);
  snprintf(dir, sizeof(dir), "%s%s", mnt, path);
  snprintf(prefix, sizeof(prefix), "sbx-%d-", (int)owner);
  d = opendir(dir);
  assert_non_null(d);
  while ((e = readdir(d)) != NULL)
    n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
  closedir(d);
  return n;
}

/* Anchors sit in cgroups of their own between runs; sbx_shutdown()
 * removes them all, and later runs still work (attached as before). */
static void test_anchor_shutdown(void **state) {
  const char *argv[] = {"true", NULL};
  char mnt[1024];
  sbx_limits lim;
  sbx_result res;
  sbx_request *r;
  pid_t spawner = sbx_spawner_pid(), owner = spawner > 0 ? spawner : getpid();
  (void)state;
  if (sbx_probe()->cgroup != SBX_CGROUP_V1 ||
      v1_mount("pids", mnt, sizeof(mnt)) != 0) {
    skip();
    return;
  }
  usleep(100000); /* anchors of the tests above are ready again */
  assert_true(own_cgroups("memory", owner) >= 1);
  assert_true(own_cgroups("pids", owner) >= 1);
  sbx_shutdown();
  assert_int_equal(own_cgroups("memory", owner), 0);
  assert_int_equal(own_cgroups("pids", owner), 0);
  if (spawner > 0) { /* stopped and reaped: later runs are in-process */
    assert_int_equal(kill(spawner, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_int_equal(sbx_spawner_pid(), -1);
  }
  memset(&lim, 0, sizeof(lim));
  lim.memory_bytes = 64u << 20;
  lim.pids = 8;
  r = mkreq(argv);
  sbx_request_set_limits(r, &lim);
  assert_int_equal(sbx_run(r, &res), 0);
  assert_true(res.exited && res.exit_code == 0);
  assert_false(res.cgroup_preplaced);
  sbx_request_free(r);
  assert_int_equal(own_cgroups("memory", getpid()), 0);
}

/* ---- the spawner (sbx_spawn.c) ------------------------------------------ */

/* /proc/PID/FILE into |buf| (NUL-terminated); -1 when the process is
 * gone. */
static int read_proc(pid_t pid, const char *file, char *buf, size_t cap) {
  char path[64];
  int fd, n;
  snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = (int)read(fd, buf, cap - 1);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  return 0;
}

/* PPid of |pid| from /proc, or -1. */
static pid_t ppid_of(pid_t pid) {
  char buf[4096], *p;
  if (read_proc(pid, "status", buf, sizeof(buf)) != 0)
    return -1;
  p = strstr(buf, "\nPPid:");
  return p ? (pid_t)atoi(p + 6) : -1;
}

/* Gone, or a zombie waiting for init: either way it runs nothing. */
static int proc_gone(pid_t pid) {
  char buf[512], *p;
  if (read_proc(pid, "stat", buf, sizeof(buf)) != 0)
    return 1;
  p = strrchr(buf, ')');
  return !p || p[2] == 'Z';
}

static void *run_sleep(void *arg) {
  const char *argv[] = {"sleep", arg, NULL};
  sbx_request *r = NULL;
  sbx_result res;
  if (sbx_request_new(&r) || sbx_request_set_argv(r, argv) ||
      sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r))
    abort();
  (void)sbx_run(r, &res);
  sbx_request_free(r);
  return NULL;
}

/* With a spawner, the sandbox's pid 1 is its child, not ours. */
static void test_spawner_parent(void **state) {
  pid_t sp = sbx_spawner_pid(), action, pid1;
  char arg[32], comm[64];
  pthread_t th;
  int i;
  (void)state;
  if (sp <= 0) {
    skip();
    return;
  }
  snprintf(arg, sizeof(arg), "1.%05d7", (int)(getpid() % 100000));
  assert_int_equal(pthread_create(&th, NULL, run_sleep, arg), 0);
  for (i = 0; i < 500 && !(action = find_proc(arg)); i++)
    usleep(10 * 1000);
  assert_true(action > 0);
  pid1 = ppid_of(action);
  assert_true(pid1 > 0);
  assert_int_equal(ppid_of(pid1), sp);
  assert_int_equal(ppid_of(sp), getpid());
  assert_int_equal(read_proc(sp, "comm", comm, sizeof(comm)), 0);
  assert_string_equal(comm, "sbx-spawner\n");
  pthread_join(th, NULL);
}

/* SIGKILL the process that started a spawner, mid-run: the spawner and
 * the sandbox go with it. */
static void test_spawner_owner_killed(void **state) {
  char arg[32];
  pid_t owner, sp = -1;
  int p[2], i, st;
  (void)state;
  snprintf(arg, sizeof(arg), "%d.3", 30000 + (int)(getpid() % 10000));
  assert_int_equal(pipe(p), 0);
  owner = fork();
  assert_true(owner >= 0);
  if (owner == 0) {
    close(p[0]);
    if (sbx_spawner_start() != 0)
      _exit(2);
    sp = sbx_spawner_pid();
    if (write(p[1], &sp, sizeof(sp)) != (ssize_t)sizeof(sp))
      _exit(3);
    run_sleep(arg);
    _exit(0);
  }
  close(p[1]);
  assert_int_equal(read(p[0], &sp, sizeof(sp)), (ssize_t)sizeof(sp));
  close(p[0]);
  assert_true(sp > 0);
  assert_int_equal(ppid_of(sp), owner);
  for (i = 0; i < 500 && !find_proc(arg); i++)
    usleep(10 * 1000);
  assert_true(find_proc(arg) > 0);
  kill(owner, SIGKILL);
  assert_int_equal(waitpid(owner, &st, 0), owner);
  for (i = 0; i < 300 && (find_proc(arg) || !proc_gone(sp)); i++)
    usleep(10 * 1000);
  assert_int_equal(find_proc(arg), 0);
  assert_true(proc_gone(sp));
}

/* The spawner dies mid-run: that run fails with DB_ESYS and its sandbox
 * is gone; the next run works in-process.  In a child of ours, so that
 * this process keeps its spawner. */
static int killed_midrun(void) {
  const char *quick[] = {"sh", "-c", "exit 5", NULL};
  char arg[32];
  const char *slow[] = {"sleep", arg, NULL};
  sbx_request *r = NULL;
  sbx_result res;
  sbx_limits lim;
  pid_t sp, action = 0, killer;
  int i, rc;

  snprintf(arg, sizeof(arg), "%d.5", 30000 + (int)(getpid() % 10000));
  if (sbx_spawner_start() != 0 || (sp = sbx_spawner_pid()) <= 0)
    return 10;
  if (sbx_request_new(&r) || sbx_request_set_argv(r, slow) ||
      sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r))
    return 11;
  memset(&lim, 0, sizeof(lim));
  lim.timeout_ms = 20000; /* should the kill not end it */
  sbx_request_set_limits(r, &lim);
  killer = fork();
  if (killer == 0) { /* waits for the action, then kills the spawner */
    for (i = 0; i < 500 && !find_proc(arg); i++)
      usleep(10 * 1000);
    kill(sp, SIGKILL);
    _exit(0);
  }
  rc = sbx_run(r, &res);
  waitpid(killer, NULL, 0);
  if (rc != DB_ESYS || !strstr(res.error, "spawner"))
    return 12;
  if (sbx_spawner_pid() != -1)
    return 13;
  for (i = 0; i < 300 && (action = find_proc(arg)) != 0; i++)
    usleep(10 * 1000);
  if (action != 0)
    return 14;
  sbx_request_free(r);
  r = NULL;
  if (sbx_request_new(&r) || sbx_request_set_argv(r, quick) ||
      sbx_request_set_env(r, g_env) || sbx_request_add_default_layout(r))
    return 15;
  rc = sbx_run(r, &res);
  sbx_request_free(r);
  if (rc != 0 || !res.exited || res.exit_code != 5)
    return 16;
  return 0;
}

static void test_spawner_killed_midrun(void **state) {
  pid_t child;
  int st = 0;
  (void)state;
  child = fork();
  assert_true(child >= 0);
  if (child == 0)
    _exit(killed_midrun());
  assert_int_equal(waitpid(child, &st, 0), child);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exit_code),
      cmocka_unit_test(test_pipe_capture),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_cancel_before_and_never),
      cmocka_unit_test(test_supervisor_killed),
      cmocka_unit_test(test_file_size_limit),
      cmocka_unit_test(test_nice),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_mode_none),
      cmocka_unit_test(test_threads),
      cmocka_unit_test(test_net_reuse),
      cmocka_unit_test(test_dev),
      cmocka_unit_test(test_spawner_parent),
      cmocka_unit_test(test_spawner_owner_killed),
      cmocka_unit_test(test_spawner_killed_midrun),
      cmocka_unit_test(test_anchor_placement),
      cmocka_unit_test(test_anchor_kill),
      cmocka_unit_test(test_anchor_threads),
      cmocka_unit_test(test_anchor_shutdown),
  };
  char err[1024];
  if (sbx_check_mode(SBX_MODE_NAMESPACES, err, sizeof(err)) != 0) {
    printf("SKIP: %s\n", err);
    return 77;
  }
  /* "spawner": the same tests with every run going through a spawner
   * (what the worker does); test_anchor_shutdown stops it last. */
  if (argc > 1 && strcmp(argv[1], "spawner") == 0) {
    if (sbx_spawner_start() != 0 || sbx_spawner_pid() <= 0) {
      printf("cannot start the spawner\n");
      return 1;
    }
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
