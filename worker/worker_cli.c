/* `cargo-distbuild worker run ...`: flags, start-up checks, signals. */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "reapi_host.h"
#include "rpc_client.h"
#include "sandbox.h"
#include "worker.h"
#include "worker_cli.h"
#include "worker_int.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

void worker_config_defaults(worker_config *cfg) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);

  memset(cfg, 0, sizeof(*cfg));
  cfg->scheduler = "127.0.0.1:8980";
  cfg->instance_name = "";
  cfg->slots = n > 0 ? (int)n : 1;
  cfg->jobs = (unsigned)cfg->slots;
  cfg->cache_bytes = 10ull << 30;
  cfg->sandbox_mode = SBX_MODE_NAMESPACES;
  cfg->tree_min_files = 1000;
  cfg->tree_min_bytes = 64ull << 20;
  cfg->pids_limit = 4096;
  cfg->inline_limit = 4096;
  /* A thread per CPU: the fetch is CPU-bound (zstd, SHA-256, copying).
   * Capped so that a big machine does not open dozens of connections. */
  cfg->fetch_threads = cfg->slots < 4 ? cfg->slots : 4;
  cfg->fetch_min_bytes = 32ull << 20;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: cargo-distbuild worker run [options]\n"
          "  --id NAME             worker name (default worker-1)\n"
          "  --scheduler HOST:PORT scheduler endpoint (default "
          "127.0.0.1:8980;\n"
          "                        grpcs://HOST:PORT for TLS)\n"
          "  --tls-ca FILE         PEM CA bundle that verifies a grpcs://\n"
          "                        scheduler (default: the system's CAs)\n"
          "  --tls-cert FILE       client certificate (PEM), for mutual "
          "TLS\n"
          "  --tls-key FILE        its private key (PEM; default: in\n"
          "                        --tls-cert)\n"
          "  --remote-header NAME=VALUE\n"
          "                        metadata sent on every call to the\n"
          "                        scheduler, e.g. \"authorization=Bearer "
          "T\"\n"
          "                        (repeatable)\n"
          "  --port N              serve /healthz and /metrics on "
          "127.0.0.1:N\n"
          "  --slots N             concurrent actions (default: CPUs)\n"
          "  --jobs N              jobserver tokens the actions' compilers\n"
          "                        share (default: CPUs; 0 = none)\n"
          "  --fetch-threads N     connections for a large download into\n"
          "                        the cache, e.g. the toolchain\n"
          "                        (default: CPUs, at most 4)\n"
          "  --platform K=V        platform property (repeatable; defaults\n"
          "                        OSFamily=linux, ISA of this machine,\n"
          "                        host-cpu=<this CPU's identity>)\n"
          "  --cache-dir DIR       local cache (default .distbuild/worker-ID)\n"
          "  --cache-size SIZE     file-cache budget, e.g. 10G (default 10G)\n"
          "  --tree-cache-size SIZE tree-cache budget (default: cache size)\n"
          "  --tree-min-files N    bind subtrees with more files (1000)\n"
          "  --tree-min-bytes SIZE bind subtrees with more bytes (64M)\n"
          "  --tree-prefix PATH    always bind subtrees under PATH "
          "(repeatable)\n"
          "  --memory-limit SIZE   per-action memory limit (default none)\n"
          "  --pids-limit N        per-action task limit (default 4096)\n"
          "  --nice N              added to the actions' niceness, 0-19\n"
          "                        (default 0)\n"
          "  --instance-name NAME  REAPI instance for CAS calls\n"
          "  --sandbox MODE        namespaces (default) | none\n"
          "Environment: CARGO_DISTBUILD_TLS_CA, _TLS_CERT, _TLS_KEY and\n"
          "CARGO_DISTBUILD_REMOTE_HEADERS (NAME=VALUE lines), as for the\n"
          "wrapper; flags override the TLS files and add headers. A token\n"
          "in the environment stays out of ps.\n");
}

/* The shared libraries rustc and its linker driver load at run time. */
static void check_runtime_libs(void) {
  static const char *const libs[] = {"libc.so.6", "libgcc_s.so.1", "libz.so.1",
                                     "libm.so.6"};
  for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
    void *h = dlopen(libs[i], RTLD_LAZY | RTLD_LOCAL);
    if (!h)
      DB_WARN("worker",
              "system library %s not found: rustc actions may "
              "fail (%s)",
              libs[i], dlerror());
    else
      dlclose(h);
  }
}

static int push(const char ***v, size_t *n, const char *s) {
  const char **t = realloc(*v, (*n + 2) * sizeof(char *));
  if (!t)
    return DB_ENOMEM;
  t[(*n)++] = s;
  t[*n] = NULL;
  *v = t;
  return 0;
}

static int has_key(const char *const *v, size_t n, const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; i < n; i++)
    if (!strncmp(v[i], key, k) && v[i][k] == '=')
      return 1;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A --tls-* file: readable now (a typo fails at start-up, not at every
 * connection attempt), and absolute in buf, as --cache-dir. 0 or -1
 * (reported). */
static int tls_path(const char *flag, const char *v, char *buf, size_t n) {
  char cwd[512];

  if (access(v, R_OK) != 0) {
    fprintf(stderr, "worker run: %s %s: %s\n", flag, v, strerror(errno));
    return -1;
  }
  if (v[0] == '/' ? wk_pathf(buf, n, "%s", v) != 0
                  : !getcwd(cwd, sizeof(cwd)) ||
                        wk_pathf(buf, n, "%s/%s", cwd, v) != 0) {
    fprintf(stderr, "worker run: cannot make %s absolute\n", flag);
    return -1;
  }
  return 0;
}

static const char *env_or_null(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* A --remote-header NAME=VALUE as rpc_client_new will take it. 0 or -1
 * (reported without the value, which may be a secret). */
static int check_header(const char *v) {
  char *name = NULL, *value = NULL;
  int rv = rpc_client_header_parse(v, &name, &value);

  free(name);
  free(value);
  if (rv == 0)
    return 0;
  fprintf(stderr,
          "worker run: bad --remote-header '%.*s=...': want NAME=VALUE with "
          "NAME of [A-Za-z0-9-_.], not grpc-*, content-type, te or another "
          "the transport sets, and VALUE printable ASCII\n",
          (int)strcspn(v, "="), v);
  return -1;
}

static int cmd_run(int argc, char **argv) {
  worker_config cfg;
  const char **plat = NULL, **prefixes = NULL, **headers = NULL;
  const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL;
  char *env_headers = NULL;
  size_t nplat = 0, nprefixes = 0, nheaders = 0;
  char cache_dir[1024], err[512], isa_prop[96], cpu_prop[160];
  char ca_abs[1024], cert_abs[1024], key_abs[1024];
  struct sigaction sa;
  int rv = 2;

  worker_config_defaults(&cfg);
  cfg.id = "worker-1";
  cache_dir[0] = '\0';
  /* The wrapper's variables work here too; a token in the environment
   * stays out of `ps`, unlike a --remote-header argument. */
  tls_ca = env_or_null("CARGO_DISTBUILD_TLS_CA");
  tls_cert = env_or_null("CARGO_DISTBUILD_TLS_CERT");
  tls_key = env_or_null("CARGO_DISTBUILD_TLS_KEY");
  if (env_or_null("CARGO_DISTBUILD_REMOTE_HEADERS")) {
    env_headers = strdup(getenv("CARGO_DISTBUILD_REMOTE_HEADERS"));
    if (!env_headers) {
      rv = 1;
      goto out;
    }
    for (char *save = NULL, *h = strtok_r(env_headers, "\n", &save); h;
         h = strtok_r(NULL, "\n", &save)) {
      if (check_header(h) != 0)
        goto out;
      if (push(&headers, &nheaders, h) != 0) {
        rv = 1;
        goto out;
      }
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    const char *eq = strchr(a, '=');
    char flag[64];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      rv = 0;
      goto out;
    }
    if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof(flag)) {
      memcpy(flag, a, (size_t)(eq - a));
      flag[eq - a] = '\0';
      v = eq + 1;
    } else {
      snprintf(flag, sizeof(flag), "%s", a);
      if (i + 1 < argc)
        v = argv[i + 1];
      if (v)
        i++;
    }
    if (!v) {
      fprintf(stderr, "worker run: %s needs a value\n", flag);
      goto out;
    }
    uint64_t n = 0;
    if (!strcmp(flag, "--id"))
      cfg.id = v;
    else if (!strcmp(flag, "--scheduler"))
      cfg.scheduler = v;
    else if (!strcmp(flag, "--instance-name"))
      cfg.instance_name = v;
    else if (!strcmp(flag, "--cache-dir"))
      snprintf(cache_dir, sizeof(cache_dir), "%s", v);
    else if (!strcmp(flag, "--platform") && strchr(v, '=') && v[0] != '=')
      push(&plat, &nplat, v);
    else if (!strcmp(flag, "--tree-prefix"))
      push(&prefixes, &nprefixes, v);
    else if (!strcmp(flag, "--tls-ca"))
      tls_ca = v;
    else if (!strcmp(flag, "--tls-cert"))
      tls_cert = v;
    else if (!strcmp(flag, "--tls-key"))
      tls_key = v;
    else if (!strcmp(flag, "--remote-header")) {
      if (check_header(v) != 0)
        goto out;
      if (push(&headers, &nheaders, v) != 0) {
        rv = 1;
        goto out;
      }
    } else if (!strcmp(flag, "--sandbox")) {
      if (sbx_mode_parse(v, &cfg.sandbox_mode) != 0) {
        fprintf(stderr, "worker run: --sandbox must be namespaces or none\n");
        goto out;
      }
    } else if ((!strcmp(flag, "--port") || !strcmp(flag, "--slots") ||
                !strcmp(flag, "--jobs") || !strcmp(flag, "--pids-limit") ||
                !strcmp(flag, "--fetch-threads") || !strcmp(flag, "--nice") ||
                !strcmp(flag, "--tree-min-files")) &&
               wk_parse_size(v, &n) == 0 && n < (1u << 30)) {
      if (!strcmp(flag, "--port"))
        cfg.http_port = (int)n;
      else if (!strcmp(flag, "--slots"))
        cfg.slots = (int)n;
      else if (!strcmp(flag, "--jobs"))
        cfg.jobs = (unsigned)n;
      else if (!strcmp(flag, "--fetch-threads"))
        cfg.fetch_threads = n > 0 ? (int)n : 1;
      else if (!strcmp(flag, "--pids-limit"))
        cfg.pids_limit = (uint32_t)n;
      else if (!strcmp(flag, "--nice"))
        cfg.nice = (uint32_t)n;
      else
        cfg.tree_min_files = n;
    } else if ((!strcmp(flag, "--cache-size") ||
                !strcmp(flag, "--tree-cache-size") ||
                !strcmp(flag, "--tree-min-bytes") ||
                !strcmp(flag, "--memory-limit")) &&
               wk_parse_size(v, &n) == 0) {
      if (!strcmp(flag, "--cache-size"))
        cfg.cache_bytes = n;
      else if (!strcmp(flag, "--tree-cache-size"))
        cfg.tree_cache_bytes = n;
      else if (!strcmp(flag, "--tree-min-bytes"))
        cfg.tree_min_bytes = n;
      else
        cfg.memory_limit = n;
    } else {
      fprintf(stderr, "worker run: bad option %s %s\n", flag, v);
      usage(stderr);
      goto out;
    }
  }
  if (cfg.slots < 1 || cfg.slots > 1024 || cfg.http_port > 65535 ||
      cfg.jobs > 4096 || cfg.nice > 19 || !cfg.id[0]) {
    fprintf(stderr,
            "worker run: bad --slots, --jobs, --nice, --port or --id\n");
    goto out;
  }
  if (!cache_dir[0])
    snprintf(cache_dir, sizeof(cache_dir), ".distbuild/worker-%s", cfg.id);
  if (cache_dir[0] != '/') {
    /* Sandbox bind sources must be absolute: anchor a relative cache
     * directory at the current directory once, at start-up. */
    char cwd[512], abs[1024];
    if (!getcwd(cwd, sizeof(cwd)) ||
        wk_pathf(abs, sizeof(abs), "%s/%s", cwd, cache_dir) ||
        wk_pathf(cache_dir, sizeof(cache_dir), "%s", abs)) {
      fprintf(stderr, "worker run: cannot make --cache-dir absolute\n");
      goto out;
    }
  }
  cfg.cache_dir = cache_dir;
  if ((tls_ca && tls_path("--tls-ca", tls_ca, ca_abs, sizeof(ca_abs))) ||
      (tls_cert &&
       tls_path("--tls-cert", tls_cert, cert_abs, sizeof(cert_abs))) ||
      (tls_key && tls_path("--tls-key", tls_key, key_abs, sizeof(key_abs))))
    goto out;
  cfg.channel.tls_ca_file = tls_ca ? ca_abs : NULL;
  cfg.channel.tls_cert_file = tls_cert ? cert_abs : NULL;
  cfg.channel.tls_key_file = tls_key ? key_abs : NULL;
  cfg.channel.headers = headers;
  if ((tls_ca || tls_cert || tls_key) && strncmp(cfg.scheduler, "grpcs://", 8))
    fprintf(stderr,
            "worker %s: --tls-* apply to a grpcs:// scheduler only; %s is "
            "reached without TLS\n",
            cfg.id, cfg.scheduler);
  if (!has_key(plat, nplat, "OSFamily"))
    push(&plat, &nplat, "OSFamily=linux");
  if (!has_key(plat, nplat, REAPI_HOST_ISA_KEY)) {
    char isa[64] = "x86-64";
    if (reapi_host_isa(isa, sizeof(isa)) != 0)
      DB_WARN("worker", "cannot tell this machine's ISA; assuming x86-64");
    snprintf(isa_prop, sizeof(isa_prop), "%s=%s", REAPI_HOST_ISA_KEY, isa);
    push(&plat, &nplat, isa_prop);
  }
  /* Actions compiled with -C target-cpu=native ask for the client's CPU
   * (reapi_host.h): advertise ours so that only those of this CPU come
   * here. */
  if (!has_key(plat, nplat, REAPI_HOST_CPU_KEY)) {
    char cpu[128];
    int crv = reapi_host_cpu(cpu, sizeof(cpu));
    if (crv == 0) {
      snprintf(cpu_prop, sizeof(cpu_prop), "%s=%s", REAPI_HOST_CPU_KEY, cpu);
      push(&plat, &nplat, cpu_prop);
    } else {
      DB_WARN("worker",
              "cannot identify this CPU (%s): no action built for "
              "-C target-cpu=native will run here",
              db_strerror(crv));
    }
  }
  if (!plat) {
    rv = 1;
    goto out;
  }
  qsort(plat, nplat, sizeof(char *), cmp_str);
  cfg.platform = plat;
  cfg.n_platform = nplat;
  cfg.tree_prefixes = prefixes;
  cfg.n_tree_prefixes = nprefixes;

  {
    char line[512];
    sbx_features_format(sbx_probe(), line, sizeof(line));
    fprintf(stderr, "worker %s: %s\n", cfg.id, line);
  }
  if (sbx_check_mode(cfg.sandbox_mode, err, sizeof(err)) != 0) {
    fprintf(stderr, "worker %s: refusing to start: %s\n", cfg.id, err);
    rv = 1;
    goto out;
  }
  if (cfg.sandbox_mode == SBX_MODE_NONE)
    fprintf(stderr,
            "worker %s: WARNING: --sandbox=none: actions run unsandboxed as "
            "this user; input files are copied, not linked\n",
            cfg.id);
  check_runtime_libs();
  /* Before any thread starts: the spawner is a fork of this process while
   * it is still small, and creates every sandbox from then on. */
  rv = sbx_spawner_start();
  if (rv == 0)
    fprintf(stderr, "worker %s: sandboxes are created by spawner process %d\n",
            cfg.id, (int)sbx_spawner_pid());
  else
    fprintf(stderr,
            "worker %s: no sandbox spawner process (%s); sandboxes are "
            "created by the worker itself\n",
            cfg.id,
            rv == DB_EINVAL ? "other threads already run" : db_strerror(rv));

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  rv = worker_run(&cfg, &g_stop) == 0 ? 0 : 1;
  sbx_shutdown(); /* the cgroup anchors' sets */
out:
  free(plat);
  free(prefixes);
  free(headers);
  free(env_headers);
  return rv;
}

int worker_cli_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "run"))
    return cmd_run(argc - 1, argv + 1);
  fprintf(stderr, "cargo-distbuild worker: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
