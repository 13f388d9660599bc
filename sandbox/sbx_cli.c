/*
 * cargo-distbuild sandbox run [options] -- CMD ARGS
 *
 * A debug front end for libsandbox.  With no options: the host's system
 * directories read-only, an empty writable tmpfs work directory /work as
 * the cwd, and a tmpfs /tmp, so `sandbox run -- /bin/sh -c '...'` works.
 */
#include "sbx_cli.h"

#include "sandbox.h"

#include "db_err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: cargo-distbuild sandbox run [options] -- CMD [ARGS...]\n"
          "  --timeout SECONDS     wall-clock limit; the whole tree is killed\n"
          "  --memory BYTES        memory limit (suffixes K, M, G)\n"
          "  --pids N              task limit (threads count)\n"
          "  --cpu CPUS            CPU bandwidth, e.g. 1.5\n"
          "  --max-file-size BYTES largest file the command may write\n"
          "  --nice N              lower the command's CPU priority by N\n"
          "  --ro-bind SRC[:DST]   bind a host path read-only\n"
          "  --bind SRC[:DST]      bind a host path writable (it must be\n"
          "                        writable by the sandbox's host uid)\n"
          "  --tmpfs DST           empty writable tmpfs\n"
          "  --cwd DIR             working directory (default: tmpfs /work)\n"
          "  --setenv K=V          add to the environment (default: PATH,\n"
          "                        HOME=/tmp, TMPDIR=/tmp)\n"
          "  --stdout FILE, --stderr FILE   capture to host files\n"
          "  --sandbox=MODE        namespaces (default) or none (UNSAFE)\n"
          "  -q, --quiet           no probe / summary lines on stderr\n"
          "exit: the command's code; 128+N if killed by signal N; 124 on\n"
          "timeout; 125 sandbox error; 127 command not executable\n");
}

static int parse_size(const char *s, uint64_t *out) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || v < 0)
    return DB_EINVAL;
  switch (*end) {
  case 'k':
  case 'K':
    v *= 1024;
    end++;
    break;
  case 'm':
  case 'M':
    v *= 1024 * 1024;
    end++;
    break;
  case 'g':
  case 'G':
    v *= 1024.0 * 1024 * 1024;
    end++;
    break;
  default:
    break;
  }
  if (*end == 'i' || *end == 'B')
    end++;
  if (*end != '\0')
    return DB_EINVAL;
  *out = (uint64_t)v;
  return 0;
}

static int add_bind(sbx_request *req, sbx_mount_kind kind, const char *arg) {
  char src[4096];
  const char *colon = strchr(arg, ':');
  if (!colon)
    return sbx_request_add_mount(req, kind, arg, arg);
  if ((size_t)(colon - arg) >= sizeof(src))
    return DB_EINVAL;
  memcpy(src, arg, (size_t)(colon - arg));
  src[colon - arg] = '\0';
  return sbx_request_add_mount(req, kind, src, colon + 1);
}

static int env_add(char ***env, size_t *n, const char *kv) {
  size_t i, kl = strcspn(kv, "=");
  char **e;
  if (kv[kl] != '=')
    return DB_EINVAL;
  for (i = 0; i < *n; i++) {
    if (!strncmp((*env)[i], kv, kl + 1)) {
      (*env)[i] = (char *)kv;
      return 0;
    }
  }
  e = realloc(*env, (*n + 2) * sizeof(*e));
  if (!e)
    return DB_ENOMEM;
  e[(*n)++] = (char *)kv;
  e[*n] = NULL;
  *env = e;
  return 0;
}

int sbx_cli_main(int argc, char **argv) {
  sbx_request *req = NULL;
  sbx_limits lim;
  sbx_result res;
  sbx_mode mode = SBX_MODE_NAMESPACES;
  char **env = NULL, line[1024];
  size_t nenv = 0;
  const char *cwd = NULL;
  int i, rc, quiet = 0, code = 125;

  memset(&lim, 0, sizeof(lim));
  if (argc < 2 || strcmp(argv[1], "run")) {
    usage(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
    return 2;
  }
  rc = sbx_request_new(&req);
  for (i = 0; rc == 0 && i < 3; i++)
    rc = sbx_request_set_stdio_fd(req, i, i); /* inherit ours */
  if (rc == 0)
    rc = sbx_request_add_default_layout(req);
  /* The default work dir goes first so that binds below /work (given
   * later on the command line) are mounted on top of it. */
  for (i = 2; i < argc && strcmp(argv[i], "--"); i++)
    if (!strcmp(argv[i], "--cwd"))
      cwd = "";
  if (rc == 0 && !cwd)
    rc = sbx_request_add_mount(req, SBX_MOUNT_TMPFS, NULL, "/work");
  cwd = NULL;
  if (rc == 0)
    rc = env_add(&env, &nenv, "PATH=/usr/local/bin:/usr/bin:/bin");
  if (rc == 0)
    rc = env_add(&env, &nenv, "HOME=/tmp");
  if (rc == 0)
    rc = env_add(&env, &nenv, "TMPDIR=/tmp");
  for (i = 2; rc == 0 && i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t n;
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      code = 0;
      goto out;
    }
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
      quiet = 1;
      continue;
    }
    if (!strncmp(a, "--sandbox=", 10)) {
      rc = sbx_mode_parse(a + 10, &mode);
      continue;
    }
    if (!v) {
      fprintf(stderr, "sandbox: %s needs an argument\n", a);
      rc = DB_EINVAL;
      break;
    }
    i++;
    if (!strcmp(a, "--timeout")) {
      double s = strtod(v, NULL);
      rc = s > 0 ? 0 : DB_EINVAL;
      lim.timeout_ms = (uint64_t)(s * 1000);
    } else if (!strcmp(a, "--memory")) {
      rc = parse_size(v, &lim.memory_bytes);
    } else if (!strcmp(a, "--max-file-size")) {
      rc = parse_size(v, &lim.max_file_bytes);
    } else if (!strcmp(a, "--nice")) {
      rc = parse_size(v, &n);
      rc = rc == 0 && n <= 19 ? 0 : DB_EINVAL;
      lim.nice = (uint32_t)n;
    } else if (!strcmp(a, "--pids")) {
      rc = parse_size(v, &n);
      lim.pids = (uint32_t)n;
    } else if (!strcmp(a, "--cpu")) {
      double c = strtod(v, NULL);
      rc = c > 0 ? 0 : DB_EINVAL;
      lim.cpu_millis = (uint32_t)(c * 1000);
    } else if (!strcmp(a, "--ro-bind")) {
      rc = add_bind(req, SBX_MOUNT_RO_BIND, v);
    } else if (!strcmp(a, "--bind")) {
      rc = add_bind(req, SBX_MOUNT_RW_BIND, v);
    } else if (!strcmp(a, "--tmpfs")) {
      rc = sbx_request_add_mount(req, SBX_MOUNT_TMPFS, NULL, v);
    } else if (!strcmp(a, "--cwd")) {
      cwd = v;
    } else if (!strcmp(a, "--setenv")) {
      rc = env_add(&env, &nenv, v);
    } else if (!strcmp(a, "--stdout")) {
      rc = sbx_request_set_stdio_path(req, 1, v);
    } else if (!strcmp(a, "--stderr")) {
      rc = sbx_request_set_stdio_path(req, 2, v);
    } else {
      fprintf(stderr, "sandbox: unknown option %s\n", a);
      rc = DB_EINVAL;
    }
    if (rc != 0)
      fprintf(stderr, "sandbox: bad value for %s: %s\n", a, v);
  }
  if (rc == 0 && i >= argc) {
    fprintf(stderr, "sandbox: no command (use -- CMD ARGS)\n");
    rc = DB_EINVAL;
  }
  if (rc != 0) {
    usage(stderr);
    code = 2;
    goto out;
  }
  rc = sbx_request_set_cwd(req, cwd ? cwd : "/work");
  if (rc == 0)
    rc = sbx_request_set_env(req, (const char *const *)env);
  if (rc == 0)
    rc = sbx_request_set_argv(req, (const char *const *)argv + i);
  if (rc != 0) {
    fprintf(stderr, "sandbox: %s\n", db_strerror(rc));
    code = rc == DB_EINVAL ? 2 : 125;
    goto out;
  }
  sbx_request_set_limits(req, &lim);
  sbx_request_set_mode(req, mode);
  if (!quiet) {
    sbx_features_format(sbx_probe(), line, sizeof(line));
    fprintf(stderr, "%s\n", line);
  }
  rc = sbx_check_mode(mode, line, sizeof(line));
  if (rc != 0) {
    fprintf(stderr, "%s\n", line);
    goto out;
  }
  rc = sbx_run(req, &res);
  if (rc != 0) {
    fprintf(stderr, "sandbox: %s\n", res.error);
    code = (rc == DB_ENOTFOUND && strstr(res.error, "execve")) ? 127 : 125;
    goto out;
  }
  code = res.exited ? res.exit_code : 128 + res.term_signal;
  if (res.timed_out)
    code = 124;
  if (!quiet || res.timed_out || res.oom_killed) {
    fprintf(stderr,
            "sandbox: %s%d%s%s wall=%.1fms user=%.1fms sys=%.1fms "
            "peak=%" PRIu64 "KiB cgroup=%s\n",
            res.exited ? "exit=" : "signal=",
            res.exited ? res.exit_code : res.term_signal,
            res.timed_out ? " timed-out" : "",
            res.oom_killed ? " oom-killed" : "", res.wall_us / 1000.0,
            res.user_us / 1000.0, res.sys_us / 1000.0,
            res.peak_memory_bytes / 1024,
            res.cgroup == SBX_CGROUP_V2   ? "v2"
            : res.cgroup == SBX_CGROUP_V1 ? "v1"
                                          : "none");
  }
out:
  free(env);
  sbx_request_free(req);
  return code;
}
