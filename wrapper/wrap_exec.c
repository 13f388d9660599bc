/* One wrapper call from start to exit code; see wrap_exec.h. */
#include "wrap_exec.h"
#include "wrap_closure.h"
#include "wrap_front.h"
#include "wrap_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "wrap_action.h"
#include "wrap_args.h"
#include "wrap_config.h"
#include "wrap_remote.h"
#include "wrap_stats.h"
#include "wrap_util.h"

extern char **environ;

/* After an unreachable scheduler, later wrappers skip it for a while
 * instead of each waiting for a connect timeout; after a silent one for
 * longer, since finding out again costs a stall timeout, not a refused
 * connection. */
#define BREAKER_MS 5000
#define BREAKER_SILENT_MS 30000
/* Default for CARGO_DISTBUILD_STALL_TIMEOUT, seconds. */
#define STALL_S 10

typedef struct call {
  wrap_args *args;
  const char *crate;
  char *cache_dir;
  wrap_config cfg;    /* read once per call; its channel serves every
                         connection the call makes */
  const char *target; /* cfg.scheduler */
  int64_t start_ms;
  wrap_stat_rec rec;
  const wrap_action *act; /* the action being run remotely */
  /* An early stderr prefix went out (see wrap_remote.h): nothing may
   * announce the metadata again, not even a local fallback. */
  int early_released;
  wrap_dcache *shared_dc; /* borrowed, preloaded by the client server */
} call;

/* Where say() writes: the descriptor `cargo distbuild` handed down
 * (wrap_progress_fd), looked up once per call in wrap_exec_main_with().
 * Through cargo a line would be replayed on every later build in which the
 * crate is fresh. */
static int g_say_fd = STDERR_FILENO, g_say_tty;

/* A progress line, in one write, to g_say_fd. */
static void say(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(int level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  int n;
  if (level > db_log_level())
    return;
  /* On a terminal, erase cargo's progress bar first, as cargo does before
   * each line it prints; cargo draws it again. */
  n = snprintf(line, sizeof(line), "%s[distbuild] ",
               g_say_tty ? "\r\x1b[K" : "");
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  if (write(g_say_fd, line, (size_t)n) < 0) {
    /* stderr gone: nothing to do */
  }
}

/* Write p[0, n) without metadata notifications; returns how many bytes
 * were consumed (complete lines, plus the tail when final). */
static size_t write_filtered_part(int fd, const uint8_t *p, size_t n,
                                  int final) {
  size_t off = 0;
  while (off < n) {
    const uint8_t *nl = memchr(p + off, '\n', n - off);
    size_t end = nl ? (size_t)(nl - p) + 1 : n;
    if (nl == NULL && !final)
      break;
    if (!wrap_rustc_metadata_notice(p + off, end - off))
      (void)wrap_write_all(fd, p + off, end - off);
    off = end;
  }
  return off;
}

static void write_filtered(int fd, const uint8_t *p, size_t n) {
  (void)write_filtered_part(fd, p, n, 1);
}

/* Copy a child's stderr from rfd to ours without metadata notifications. */
static void filter_stream(int rfd) {
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    ssize_t r;
    if (cap - len < 16384) {
      uint8_t *nb = realloc(buf, cap ? cap * 2 : 65536);
      if (nb == NULL)
        break;
      buf = nb;
      cap = cap ? cap * 2 : 65536;
    }
    r = read(rfd, buf + len, cap - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
    size_t used = write_filtered_part(STDERR_FILENO, buf, len, 0);
    memmove(buf, buf + used, len - used);
    len -= used;
  }
  if (buf)
    (void)write_filtered_part(STDERR_FILENO, buf, len, 1);
  free(buf);
}

static void finish_rec(call *c, const char *kind, int exit_code) {
  c->rec.kind = kind;
  c->rec.crate = c->crate;
  c->rec.exit_code = exit_code;
  c->rec.wall_ms = wrap_now_ms() - c->start_ms;
  (void)wrap_stats_append(&c->rec);
}

static char *breaker_path(const call *c) {
  char key[17];
  wrap_hash_str(c->target, key, 16);
  return wrap_fmt("%s/unreachable-%s", c->cache_dir, key);
}

/* 0 when the scheduler may be tried, else the WRAP_SCHED_* that tripped
 * the breaker (the file's size tells which) less than its hold time ago. */
static int breaker_open(const call *c) {
  char *p = breaker_path(c);
  struct stat st;
  int kind = 0;
  if (p != NULL && stat(p, &st) == 0) {
    int64_t age = wrap_now_ms() - ((int64_t)st.st_mtim.tv_sec * 1000 +
                                   st.st_mtim.tv_nsec / 1000000);
    int silent = st.st_size > 0;
    if (age >= 0 && age < (silent ? BREAKER_SILENT_MS : BREAKER_MS))
      kind = silent ? WRAP_SCHED_SILENT : WRAP_SCHED_UNREACHABLE;
  }
  free(p);
  return kind;
}

/* kind: the WRAP_SCHED_* that makes later calls skip the scheduler. */
static void breaker_trip(const call *c, int kind) {
  char *p = breaker_path(c);
  if (p == NULL)
    return;
  if (kind == WRAP_SCHED_SILENT)
    (void)wrap_write_atomic(p, "silent", 6, 0644);
  else
    (void)wrap_write_atomic(p, "", 0, 0644);
  free(p);
}

/* Run rustc locally as a child (so dep-info can be learnt afterwards).
 * After an early release its stderr goes through the metadata filter. */
static int run_local(call *c, char **argv) {
  pid_t pid, parent = getpid();
  int st = 0, p[2] = {-1, -1};
  if (c->early_released && pipe2(p, O_CLOEXEC) != 0)
    return 127;
  pid = fork();
  if (pid < 0) {
    if (p[0] >= 0) {
      close(p[0]);
      close(p[1]);
    }
    return 127;
  }
  if (pid == 0) {
    /* rustc dies with us: killing the wrapper ends the compile. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    if (p[1] >= 0 && dup2(p[1], STDERR_FILENO) < 0)
      _exit(127);
    execv(argv[0], argv);
    fprintf(stderr, "cargo-distbuild-wrapper: cannot run %s: %s\n", argv[0],
            strerror(errno));
    _exit(127);
  }
  if (p[0] >= 0) {
    close(p[1]);
    filter_stream(p[0]);
    close(p[0]);
  }
  st = wrap_wait_code(pid);
  if (st == 0 && c->cache_dir != NULL)
    (void)wrap_action_learn(c->args, environ, c->cache_dir, NULL, NULL);
  return st;
}

static int fallback(call *c, char **argv, const char *why) {
  int code;
  say(DB_LOG_WARN, "%s: running rustc locally: %s", c->crate, why);
  c->rec.reason = why;
  code = run_local(c, argv);
  finish_rec(c, WRAP_KIND_FALLBACK, code);
  return code;
}

/* Early outputs may be announced to cargo only if their dep-info came with
 * them and names no environment variable the action lacked: otherwise the
 * action reruns and dependents would have started on stale metadata. */
static int early_ok(call *c, const wrap_remote_result *r) {
  wrap_strv missing = {0};
  int have_d = 0, ok;
  for (size_t i = 0; i < r->n_early; i++) {
    size_t l = strlen(r->early_paths[i]);
    if (l > 2 && strcmp(r->early_paths[i] + l - 2, ".d") == 0)
      have_d = 1;
  }
  if (!have_d || c->act == NULL)
    return 0;
  ok = wrap_action_learn(c->args, environ, c->cache_dir, c->act, &missing) ==
           0 &&
       missing.n == 0;
  wrap_strv_free(&missing);
  if (ok)
    c->early_released = 1;
  DB_DEBUG("wrapper", "%s: early metadata %s after %lld ms", c->crate,
           ok ? "released" : "held", (long long)(wrap_now_ms() - c->start_ms));
  return ok;
}

static int on_progress(void *ctx, const char *stage,
                       const wrap_remote_result *r) {
  call *c = ctx;
  char b[32];
  if (strcmp(stage, "miss") == 0)
    say(DB_LOG_INFO, "%s: cache miss, executing remotely (uploaded %s)",
        c->crate, wrap_fmt_bytes(r->up_wire, b, sizeof(b)));
  else if (strcmp(stage, "early") == 0)
    return early_ok(c, r);
  return 0;
}

/* One debug line per remote round: where the wall time of this call went
 * (start-up and action building, then each remote phase). */
static void log_timing(const call *c, const wrap_dcache *dc, int64_t built_ms,
                       const wrap_remote_result *r) {
  uint64_t cached = 0, hashed = 0;
  if (db_log_level() < DB_LOG_DEBUG)
    return;
  wrap_dcache_counts(dc, &cached, &hashed);
  DB_DEBUG(
      "wrapper",
      "%s: timing ms: build %lld (%llu files hashed, %llu cached), lookup "
      "%lld, upload %lld, execute %lld (queue %lld, inputs %lld, run %lld, "
      "outputs %lld), download %lld, total %lld",
      c->crate, (long long)(built_ms - c->start_ms), (unsigned long long)hashed,
      (unsigned long long)cached, (long long)r->t_lookup,
      (long long)r->t_upload, (long long)r->t_execute, (long long)r->w_queue,
      (long long)r->w_inputs, (long long)r->w_run, (long long)r->w_outputs,
      (long long)r->t_download, (long long)(wrap_now_ms() - c->start_ms));
}

static int distributed(call *c, char **argv) {
  wrap_dcache *dc = NULL;
  wrap_action *act = NULL;
  wrap_remote *rem = NULL;
  wrap_remote_result res = {0};
  wrap_strv extra = {0}, missing = {0};
  const char *reason = NULL;
  const char *e;
  char *why = NULL;
  int64_t timeout_s = 600, stall_s = STALL_S, built_ms = 0;
  int rv, code = 0, down;

  rv = wrap_config_load(c->args->cwd, &c->cfg, &why);
  if (rv != 0) {
    code = fallback(c, argv, why ? why : db_strerror(rv));
    free(why);
    return code;
  }
  c->target = c->cfg.scheduler;
  (void)wrap_closure_record(c->args, c->cache_dir);
  if ((down = breaker_open(c)) != 0) {
    why = wrap_fmt("scheduler %s at %s (recently)",
                   down == WRAP_SCHED_SILENT ? "not responding" : "unreachable",
                   c->target);
    code = fallback(c, argv, why ? why : "scheduler unreachable");
    free(why);
    return code;
  }
  e = getenv("CARGO_DISTBUILD_TIMEOUT");
  if (e != NULL && atoi(e) > 0)
    timeout_s = atoi(e);
  e = getenv("CARGO_DISTBUILD_STALL_TIMEOUT");
  if (e != NULL && *e)
    stall_s = atoi(e) > 0 ? atoi(e) : 0;
  /* The client server's preloaded cache, else our own. */
  rv = c->shared_dc ? 0 : wrap_dcache_open(c->cache_dir, &dc);
  if (rv == 0 && c->shared_dc != NULL)
    dc = c->shared_dc;
  if (rv == 0)
    rv = wrap_remote_new(c->target, &c->cfg.channel, timeout_s * 1000,
                         stall_s * 1000, &rem);
  if (rv == DB_EINVAL) {
    why = wrap_fmt("bad scheduler address %s", c->target);
    code = fallback(c, argv, why ? why : db_strerror(rv));
    free(why);
    goto out;
  }
  if (rv != 0) {
    code = fallback(c, argv, db_strerror(rv));
    goto out;
  }
  for (int round = 0; round < 2; round++) {
    wrap_action_free(act);
    act = NULL;
    wrap_remote_result_clear(&res);
    rv = wrap_action_build(c->args, environ, c->cache_dir, dc, &extra, &act,
                           &reason);
    if (rv != 0) {
      code = fallback(c, argv, reason ? reason : db_strerror(rv));
      goto out;
    }
    built_ms = wrap_now_ms();
    c->act = act;
    rv = wrap_remote_run(rem, act, on_progress, c, &res);
    c->act = NULL;
    log_timing(c, dc, built_ms, &res);
    c->rec.up_raw += res.up_raw;
    c->rec.up_wire += res.up_wire;
    c->rec.down_raw += res.down_raw;
    c->rec.down_wire += res.down_wire;
    if (rv < 0) {
      if (res.sched_down)
        breaker_trip(c, res.sched_down);
      code = fallback(c, argv, res.reason[0] ? res.reason : db_strerror(rv));
      goto out;
    }
    if (res.exit_code != 0)
      break;
    wrap_strv_free(&missing);
    (void)wrap_action_learn(c->args, environ, c->cache_dir, act, &missing);
    if (missing.n == 0)
      break;
    /* rustc read variables the action did not carry: run again with them
     * (the result just written may differ from a local build). */
    for (size_t i = 0; i < missing.n; i++)
      (void)wrap_strv_add(&extra, missing.v[i]);
    say(DB_LOG_INFO, "%s: dep-info names %s, rebuilding with it", c->crate,
        missing.v[0]);
    if (round == 1) {
      code = fallback(c, argv, "environment dependencies keep changing");
      goto out;
    }
  }
  if (res.exit_code != 0 && !act->have_record) {
    /* First compile of this crate failed remotely: the action may lack an
     * input only dep-info would have told us about. Trust local rustc. */
    code = fallback(c, argv, "remote compile failed before dep-info was known");
    goto out;
  }
  if (res.exit_code != 0 && wrap_args_uses_proc_macro(c->args)) {
    /* A proc-macro may have read a file, a variable or the network that no
     * dep-info names (sqlx's query data, DATABASE_URL): the error may be
     * the sandbox's. Local rustc decides, as it would without us. */
    code = fallback(c, argv,
                    "remote compile failed and the crate uses proc-macros");
    goto out;
  }
  code = res.exit_code;
  /* Our line before rustc's output: cargo renders the diagnostics replayed
   * below with many writes to the terminal that the line goes to, and a
   * line written meanwhile would land in the middle of one of them. */
  if (rv == WRAP_REMOTE_HIT)
    say(DB_LOG_INFO, "%s: cache hit (saved %.2fs)", c->crate,
        (double)res.exec_ms / 1000.0);
  else
    say(DB_LOG_INFO, "%s: %s on %s in %.2fs", c->crate,
        code == 0 ? "compiled" : "compile error",
        res.worker[0] ? res.worker : "worker", (double)res.exec_ms / 1000.0);
  (void)wrap_write_all(STDOUT_FILENO, res.out, res.out_len);
  if (res.early_released && res.err_len >= res.early_err_len &&
      memcmp(res.err, res.early_err, res.early_err_len) == 0)
    (void)wrap_write_all(STDERR_FILENO, res.err + res.early_err_len,
                         res.err_len - res.early_err_len);
  else if (c->early_released)
    write_filtered(STDERR_FILENO, res.err, res.err_len);
  else
    (void)wrap_write_all(STDERR_FILENO, res.err, res.err_len);
  if (rv == WRAP_REMOTE_HIT) {
    c->rec.saved_ms = res.exec_ms;
    finish_rec(c, WRAP_KIND_HIT, code);
  } else {
    c->rec.exec_ms = res.exec_ms;
    c->rec.early = res.early_released;
    finish_rec(c, code == 0 ? WRAP_KIND_REMOTE : WRAP_KIND_ERROR, code);
  }
out:
  wrap_remote_result_clear(&res);
  wrap_strv_free(&extra);
  wrap_strv_free(&missing);
  wrap_action_free(act);
  wrap_remote_free(rem);
  if (dc != c->shared_dc)
    wrap_dcache_free(dc);
  return code;
}

int wrap_exec_main(int argc, char **argv) {
  return wrap_exec_main_with(argc, argv, NULL, NULL, 1);
}

/* Exit code of a child that runs rustc as the wrapper would have exec'd
 * it: a (NULL a: argv unparsed) and reason as for wrap_front_exec_local. */
static int local_child(const wrap_args *a, char **argv, const char *reason,
                       int64_t start_ms) {
  pid_t pid = fork();
  if (pid < 0)
    return 127;
  if (pid == 0) {
    if (a != NULL)
      _exit(wrap_front_exec_local(a, argv, reason, start_ms));
    execv(argv[0], argv);
    _exit(127);
  }
  return wrap_wait_code(pid);
}

int wrap_exec_main_with(int argc, char **argv, wrap_dcache *dc,
                        const char *dc_dir, int may_exec) {
  call c;
  const char *reason;
  int code;
  memset(&c, 0, sizeof(c));
  c.start_ms = wrap_now_ms();
  /* Log lines must not be replayed by cargo either. */
  g_say_fd = wrap_progress_fd(&g_say_tty);
  db_log_set_fd(g_say_fd);
  if (argc < 1) {
    fprintf(stderr, "usage: cargo-distbuild-wrapper RUSTC [ARGS...]\n");
    return 2;
  }
  if (wrap_args_parse(argc, argv, NULL, &c.args) != 0) {
    if (!may_exec)
      return local_child(NULL, argv, NULL, c.start_ms);
    execv(argv[0], argv);
    fprintf(stderr, "cargo-distbuild-wrapper: cannot run %s: %s\n", argv[0],
            strerror(errno));
    return 127;
  }
  c.crate = c.args->crate_name ? c.args->crate_name : "?";
  /* The front decided already; decide again for direct invocations. */
  reason = wrap_front_local_reason(c.args);
  if (reason == NULL && (c.cache_dir = wrap_cache_dir()) == NULL)
    reason = "no cache directory";
  if (reason != NULL) {
    code = may_exec ? wrap_front_exec_local(c.args, argv, reason, c.start_ms)
                    : local_child(c.args, argv, reason, c.start_ms);
    goto out;
  }
  if (dc != NULL && dc_dir != NULL && strcmp(dc_dir, c.cache_dir) == 0)
    c.shared_dc = dc;
  code = distributed(&c, argv);
out:
  free(c.cache_dir);
  wrap_config_clear(&c.cfg);
  wrap_args_free(c.args);
  return code;
}
