/* cargo distbuild build / stats; see wrap_cli.h. */
#include "wrap_cli.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_err.h"
#include "wrap_config.h"
#include "wrap_serve.h"
#include "wrap_sock.h"
#include "wrap_stats.h"
#include "wrap_util.h"

/* The wrapper binary: next to this executable, else on PATH. */
static char *find_wrapper(void) {
  char self[PATH_MAX];
  const char *e = getenv("CARGO_DISTBUILD_WRAPPER");
  ssize_t n;
  struct stat st;
  if (e != NULL && *e)
    return strdup(e);
  n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    char *slash, *p;
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash != NULL) {
      *slash = '\0';
      p = wrap_fmt("%s/cargo-distbuild-wrapper", self);
      if (p != NULL && stat(p, &st) == 0 && (st.st_mode & S_IXUSR))
        return p;
      free(p);
    }
  }
  e = getenv("PATH");
  if (e != NULL) {
    char *path = strdup(e), *save = NULL;
    for (char *d = path ? strtok_r(path, ":", &save) : NULL; d;
         d = strtok_r(NULL, ":", &save)) {
      char *p = wrap_fmt("%s/cargo-distbuild-wrapper", d);
      if (p != NULL && stat(p, &st) == 0 && (st.st_mode & S_IXUSR)) {
        free(path);
        return p;
      }
      free(p);
    }
    free(path);
  }
  return NULL;
}

/* Look the wrapper's settings up once, from here, and hand them to the
 * wrappers in the environment: they run in every crate's directory, and a
 * registry crate's is outside the workspace and its .distbuild/ (relative
 * paths become absolute on the way). 0, or 1 after saying what is wrong. */
static int export_config(void) {
  wrap_config cfg;
  char *why = NULL;
  int rv = wrap_config_load(NULL, &cfg, &why);

  if (rv == 0)
    rv = wrap_config_export(&cfg);
  if (rv != 0)
    fprintf(stderr, "cargo-distbuild: %s\n", why ? why : db_strerror(rv));
  wrap_config_clear(&cfg);
  free(why);
  return rv != 0;
}

/* The running cargo, for forward_signal. */
static volatile sig_atomic_t g_cargo_pid;

/* SIGTERM / SIGHUP sent to us go on to cargo; we wait for it to end and
 * then clean up (the client server's socket directory) as usual. */
static void forward_signal(int sig) {
  if (g_cargo_pid > 0)
    (void)kill((pid_t)g_cargo_pid, sig);
}

/* Cargo commands that compile with rustc and so can run through the
 * wrapper. The report follows whatever cargo printed (for run and test, the
 * program's own output), on stderr. */
static const char *const k_cargo_commands[] = {"build", "check", "test", "run",
                                               "bench", "doc",   NULL};

int wrap_cli_is_cargo_command(const char *word) {
  for (int i = 0; k_cargo_commands[i]; i++)
    if (strcmp(word, k_cargo_commands[i]) == 0)
      return 1;
  return 0;
}

static void build_usage(FILE *f, const char *sub) {
  fprintf(f,
          "usage: cargo distbuild %s [--workspace-only] "
          "[--scheduler HOST:PORT] [cargo %s args...]\n"
          "(also: build, check, test, run, bench, doc)\n",
          sub, sub);
}

int wrap_cli_build(int argc, char **argv) {
  wrap_strv cmd = {0};
  wrap_serve *srv = NULL;
  char *wrapper = NULL, *stats_path = NULL, *id = NULL, *cache = NULL;
  const char *cs = getenv("CARGO_DISTBUILD_CLIENT_SERVER");
  const char *cargo = getenv("CARGO");
  int workspace_only = 0, i = 1, code = 1, progress = -1;
  pid_t pid;
  wrap_stats_sum last, total;

  for (; i < argc; i++) {
    if (strcmp(argv[i], "--workspace-only") == 0) {
      workspace_only = 1;
    } else if (strcmp(argv[i], "--scheduler") == 0 && i + 1 < argc) {
      setenv("CARGO_DISTBUILD_SCHEDULER", argv[++i], 1);
    } else if (strncmp(argv[i], "--scheduler=", 12) == 0) {
      setenv("CARGO_DISTBUILD_SCHEDULER", argv[i] + 12, 1);
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      build_usage(stdout, argv[0]);
      return 0;
    } else {
      break;
    }
  }
  if (export_config() != 0)
    goto out;
  wrapper = find_wrapper();
  if (wrapper == NULL) {
    fprintf(stderr, "cargo-distbuild: cannot find cargo-distbuild-wrapper "
                    "(next to this binary or on PATH)\n");
    goto out;
  }
  id = wrap_fmt("b%lld-%ld", (long long)wrap_now_ms(), (long)getpid());
  if (id == NULL)
    goto out;
  setenv(workspace_only ? "RUSTC_WORKSPACE_WRAPPER" : "RUSTC_WRAPPER", wrapper,
         1);
  setenv("CARGO_INCREMENTAL", "0", 1);
  setenv("CARGO_DISTBUILD_BUILD_ID", id, 1);
  unsetenv(WRAP_PROGRESS_ENV);
  progress = wrap_progress_export(STDERR_FILENO);
  /* The client server saves each distributable call the remote client's
   * start-up; without it the wrapper execs the remote client as before. */
  unsetenv(WRAP_SOCK_ENV);
  if ((cs == NULL || strcmp(cs, "0") != 0) &&
      (cache = wrap_cache_dir()) != NULL) {
    int rv = wrap_serve_start(cache, &srv);
    if (rv == 0)
      setenv(WRAP_SOCK_ENV, wrap_serve_path(srv), 1);
    else
      fprintf(stderr,
              "cargo-distbuild: no client server (%s); each rustc call "
              "starts the remote client itself\n",
              db_strerror(rv));
  }
  /* cargo's -q silences its status lines; ours follow it (warnings, such as
   * a fallback, still show; the report too), unless the user chose a level.
   * Arguments after "--" belong to the program cargo runs. */
  for (int j = i; j < argc && strcmp(argv[j], "--") != 0; j++)
    if ((strcmp(argv[j], "-q") == 0 || strcmp(argv[j], "--quiet") == 0) &&
        getenv("CARGO_DISTBUILD_LOG") == NULL)
      setenv("CARGO_DISTBUILD_LOG", "warn", 1);
  if (wrap_strv_add(&cmd, cargo && *cargo ? cargo : "cargo") != 0 ||
      wrap_strv_add(&cmd, argv[0]) != 0)
    goto out;
  for (; i < argc; i++)
    if (wrap_strv_add(&cmd, argv[i]) != 0)
      goto out;
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    perror("cargo-distbuild: fork");
    goto out;
  }
  if (pid == 0) {
    execvp(cmd.v[0], cmd.v);
    fprintf(stderr, "cargo-distbuild: cannot run %s: %s\n", cmd.v[0],
            strerror(errno));
    _exit(127);
  }
  {
    /* Like system(): a Ctrl-C is for cargo (it gets it from the terminal
     * too), and we outlive it to clean up. */
    struct sigaction ign, fwd, o_int, o_quit, o_term, o_hup;
    memset(&ign, 0, sizeof(ign));
    memset(&fwd, 0, sizeof(fwd));
    ign.sa_handler = SIG_IGN;
    fwd.sa_handler = forward_signal;
    sigemptyset(&ign.sa_mask);
    sigemptyset(&fwd.sa_mask);
    g_cargo_pid = pid;
    sigaction(SIGINT, &ign, &o_int);
    sigaction(SIGQUIT, &ign, &o_quit);
    sigaction(SIGTERM, &fwd, &o_term);
    sigaction(SIGHUP, &fwd, &o_hup);
    code = wrap_wait_code(pid);
    g_cargo_pid = 0;
    sigaction(SIGINT, &o_int, NULL);
    sigaction(SIGQUIT, &o_quit, NULL);
    sigaction(SIGTERM, &o_term, NULL);
    sigaction(SIGHUP, &o_hup, NULL);
  }
  wrap_serve_stop(srv);
  srv = NULL;
  stats_path = wrap_stats_path();
  if (stats_path != NULL &&
      wrap_stats_load(stats_path, id, &last, &total, NULL) == 0) {
    char title[160];
    snprintf(title, sizeof(title), "\ncargo-distbuild report (build %s):", id);
    wrap_stats_print(stderr, title, &last);
  }
  (void)wrap_stats_end(id);
out:
  wrap_serve_stop(srv);
  if (progress >= 0)
    close(progress);
  free(cache);
  free(wrapper);
  free(stats_path);
  free(id);
  wrap_strv_free(&cmd);
  return code;
}

int wrap_cli_stats(int argc, char **argv) {
  int json = 0, rv;
  char *path, *id = NULL;
  wrap_stats_sum last, total;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      printf("usage: cargo distbuild stats [--json]\n");
      return 0;
    } else {
      fprintf(stderr, "cargo-distbuild stats: unknown argument '%s'\n",
              argv[i]);
      return 2;
    }
  }
  path = wrap_stats_path();
  if (path == NULL)
    return 1;
  rv = wrap_stats_load(path, NULL, &last, &total, &id);
  if (rv != 0) {
    fprintf(stderr, "cargo-distbuild stats: cannot read %s\n", path);
    free(path);
    return 1;
  }
  if (json) {
    printf("{\"stats_file\":\"%s\",\"last_build_id\":\"%s\",\"last_build\":",
           path, id ? id : "");
    wrap_stats_json(stdout, &last);
    printf(",\"total\":");
    wrap_stats_json(stdout, &total);
    printf("}\n");
  } else {
    char title[160];
    snprintf(title, sizeof(title), "Last build (%s):", id ? id : "none");
    wrap_stats_print(stdout, title, &last);
    printf("\n");
    wrap_stats_print(stdout, "All builds:", &total);
  }
  free(id);
  free(path);
  return 0;
}
