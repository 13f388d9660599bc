/*
 * sbx_bench lib N: time N runs of /bin/true (a) directly with fork+exec
 * and (b) through sbx_run() with the default layout, in one process after
 * the one-time probe, the way the worker calls it; (c) the same with memory
 * and pids limits (a cgroup per run).  Prints medians in microseconds:
 *   "direct_us=... sandbox_us=... sandbox_cgroup_us=..."
 * sbx_bench exec N CMD ARGS...: median of fork+exec+wait of CMD, N times
 * (for bwrap and the CLI): "median_us=..."
 * sbx_bench caller N MB PAGES: what sandboxes cost a large caller (the
 * worker), in-process and through a spawner (sbx_spawner_start), two
 * rounds each, every round in a fresh process holding MB MiB of written
 * memory that writes PAGES of its pages after every run, as the worker's
 * threads do between actions.  Per round and run: median wall time of the
 * run, CPU (the caller's, plus its children's: sandboxes, spawner) and
 * the caller's minor faults:
 *   "mode=inproc wall_us=... cpu_us=... caller_faults=..."
 */
#include "sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double run_sandboxed(int with_cgroup) {
  static const char *const argv[] = {"/bin/true", NULL};
  static const char *const env[] = {"PATH=/usr/bin:/bin", NULL};
  sbx_request *r = NULL;
  sbx_result res;
  sbx_limits lim;
  double t0, t1;
  memset(&lim, 0, sizeof(lim));
  if (with_cgroup) {
    lim.memory_bytes = 1u << 30;
    lim.pids = 256;
  }
  if (sbx_request_new(&r) || sbx_request_set_argv(r, argv) ||
      sbx_request_set_env(r, env) || sbx_request_add_default_layout(r) ||
      sbx_request_add_mount(r, SBX_MOUNT_TMPFS, NULL, "/work") ||
      sbx_request_set_cwd(r, "/work"))
    exit(1);
  sbx_request_set_limits(r, &lim);
  t0 = now_us();
  if (sbx_run(r, &res) != 0 || !res.exited || res.exit_code != 0) {
    fprintf(stderr, "sbx_run failed: %s\n", res.error);
    exit(1);
  }
  t1 = now_us();
  sbx_request_free(r);
  return t1 - t0;
}

static double run_direct(char **argv) {
  double t0 = now_us();
  pid_t p = fork();
  int st = 0;
  if (p == 0) {
    execv(argv[0], argv);
    _exit(127);
  }
  waitpid(p, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "%s failed (status %d)\n", argv[0], st);
    exit(1);
  }
  return now_us() - t0;
}

static int exec_mode(int n, char **argv) {
  double *v = calloc((size_t)n, sizeof(double));
  int i;
  if (!v)
    return 1;
  for (i = 0; i < 5; i++)
    run_direct(argv);
  for (i = 0; i < n; i++)
    v[i] = run_direct(argv);
  printf("median_us=%.0f\n", median(v, n));
  free(v);
  return 0;
}

static double tv_us(struct timeval t) {
  return t.tv_sec * 1e6 + t.tv_usec;
}

/* One round in this (fresh, single-threaded) process; prints one line. */
static int caller_round(int n, size_t mb, size_t pages, int spawner) {
  size_t len = mb << 20, npages = len / 4096, step;
  struct rusage self0, self1, kids;
  double *w = calloc((size_t)n, sizeof(double)), cpu;
  unsigned char *mem;
  if (!w)
    return 1;
  if (spawner && sbx_spawner_start() != 0) {
    fprintf(stderr, "sbx_spawner_start failed\n");
    return 1;
  }
  mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
  if (mem == MAP_FAILED)
    return 1;
  memset(mem, 1, len);
  step = pages && pages < npages ? npages / pages : 1;
  run_sandboxed(0); /* warm-up: the spawner's first run */
  getrusage(RUSAGE_SELF, &self0);
  for (int i = 0; i < n; i++) {
    w[i] = run_sandboxed(0);
    for (size_t p = 0; p < npages; p += step)
      mem[p * 4096] = (unsigned char)i;
  }
  getrusage(RUSAGE_SELF, &self1);
  sbx_shutdown(); /* reaps the spawner: its CPU joins the children's */
  getrusage(RUSAGE_CHILDREN, &kids);
  cpu = tv_us(self1.ru_utime) + tv_us(self1.ru_stime) - tv_us(self0.ru_utime) -
        tv_us(self0.ru_stime) + tv_us(kids.ru_utime) + tv_us(kids.ru_stime);
  printf("mode=%s wall_us=%.0f cpu_us=%.0f caller_faults=%.0f\n",
         spawner ? "spawner" : "inproc", median(w, n), cpu / n,
         (double)(self1.ru_minflt - self0.ru_minflt) / n);
  fflush(stdout);
  return 0;
}

static int caller_mode(int n, size_t mb, size_t pages) {
  for (int round = 0; round < 4; round++) {
    int st = 0;
    pid_t pid = fork();
    if (pid == 0)
      _exit(caller_round(n, mb, pages, round % 2));
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0)
      return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  static char *truev[] = {"/bin/true", NULL};
  int n = argc > 2 ? atoi(argv[2]) : 200, i;
  double *d = calloc((size_t)n, sizeof(double));
  double *s = calloc((size_t)n, sizeof(double));
  double *c = calloc((size_t)n, sizeof(double));
  char line[1024];
  char err[1024];
  if (argc > 3 && !strcmp(argv[1], "exec"))
    return exec_mode(n, argv + 3);
  if (argc > 4 && !strcmp(argv[1], "caller"))
    return caller_mode(n, (size_t)atoi(argv[3]), (size_t)atoi(argv[4]));
  if (argc < 2 || strcmp(argv[1], "lib") || !d || !s || !c || n < 1) {
    fprintf(stderr, "usage: sbx_bench lib N | exec N CMD ARGS... | "
                    "caller N MB PAGES\n");
    return 2;
  }
  {
    double t0 = now_us();
    sbx_probe();
    fprintf(stderr, "probe_us=%.0f\n", now_us() - t0);
  }
  sbx_features_format(sbx_probe(), line, sizeof(line));
  fprintf(stderr, "%s\n", line);
  if (sbx_check_mode(SBX_MODE_NAMESPACES, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    return 77;
  }
  for (i = 0; i < 10; i++) /* warm-up */
    run_sandboxed(0);
  for (i = 0; i < n; i++) {
    d[i] = run_direct(truev);
    s[i] = run_sandboxed(0);
    c[i] = run_sandboxed(1);
  }
  printf("direct_us=%.0f sandbox_us=%.0f sandbox_cgroup_us=%.0f\n",
         median(d, n), median(s, n), median(c, n));
  free(d);
  free(s);
  free(c);
  return 0;
}
