/* Building the REAPI Action for one rustc call; see wrap_action.h. */
#include "wrap_action.h"
#include "wrap_closure.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "reapi_host.h"
#include "reapi_pb.h"
#include "wrap_hash.h"
#include "wrap_state.h"

typedef Build__Bazel__Remote__Execution__V2__Command PbCommand;
typedef Build__Bazel__Remote__Execution__V2__Command__EnvironmentVariable
    PbEnvVar;
typedef Build__Bazel__Remote__Execution__V2__Action PbAction;
typedef Build__Bazel__Remote__Execution__V2__Platform PbPlatform;
typedef Build__Bazel__Remote__Execution__V2__Platform__Property PbProperty;

/* CARGO_* variables that are user configuration, not what cargo sets for
 * rustc: they would make actions differ between users for nothing. */
static const char *const k_cargo_deny[] = {"CARGO_HOME",
                                           "CARGO_MAKEFLAGS",
                                           "CARGO_INCREMENTAL",
                                           "CARGO_TARGET_DIR",
                                           "CARGO_LOG",
                                           "CARGO_CACHE_RUSTC_INFO",
                                           "CARGO_DISTBUILD_",
                                           "CARGO_TERM_",
                                           "CARGO_BUILD_",
                                           "CARGO_NET_",
                                           "CARGO_HTTP_",
                                           "CARGO_REGISTRIES_",
                                           "CARGO_REGISTRY_",
                                           "CARGO_PROFILE_",
                                           "CARGO_ALIAS_",
                                           "CARGO_ENCODED_RUSTFLAGS",
                                           "CARGO_UNSTABLE_",
                                           "CARGO_TARGET_X",
                                           NULL};

const char *wrap_env_get(char *const *envp, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; envp && envp[i]; i++)
    if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
      return envp[i] + n + 1;
  return NULL;
}

static int cargo_var_wanted(const char *kv) {
  if (strncmp(kv, "CARGO", 5) != 0 || (kv[5] != '=' && kv[5] != '_'))
    return 0;
  for (int i = 0; k_cargo_deny[i]; i++) {
    size_t n = strlen(k_cargo_deny[i]);
    if (strncmp(kv, k_cargo_deny[i], n) == 0 &&
        (k_cargo_deny[i][n - 1] == '_' || kv[n] == '='))
      return 0;
  }
  return 1;
}

/* Run argv, capture the first line of stdout into *out. */
static int run_capture(char *const *argv, char **out) {
  int pfd[2], st = 0, rv = 0;
  pid_t pid;
  char buf[4096];
  size_t n = 0;
  *out = NULL;
  if (pipe(pfd) != 0)
    return DB_ESYS;
  pid = fork();
  if (pid < 0) {
    close(pfd[0]);
    close(pfd[1]);
    return DB_ESYS;
  }
  if (pid == 0) {
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(pfd[1]);
  for (;;) {
    ssize_t r = read(pfd[0], buf + n, sizeof(buf) - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
    if (n == sizeof(buf) - 1)
      break;
  }
  close(pfd[0]);
  st = wrap_wait_code(pid);
  buf[n] = '\0';
  buf[strcspn(buf, "\n")] = '\0';
  if (st != 0 || buf[0] == '\0')
    rv = DB_EIO;
  else if ((*out = strdup(buf)) == NULL)
    rv = DB_ENOMEM;
  return rv;
}

/* The sysroot: <rustc>/../.. when that looks like a toolchain, else
 * `rustc --print sysroot`. */
static int find_sysroot(const char *rustc, char **out) {
  char *abs = NULL, *probe = NULL;
  int rv = 0;
  *out = NULL;
  if (strchr(rustc, '/') != NULL) {
    abs = wrap_path_abs(rustc, NULL);
    if (abs == NULL)
      return DB_ENOMEM;
    char *s = strrchr(abs, '/');
    if (s != NULL && s > abs && strncmp(s - 4, "/bin", 4) == 0) {
      struct stat st;
      s[-4] = '\0';
      probe = wrap_fmt("%s/lib/rustlib", abs);
      if (probe != NULL && stat(probe, &st) == 0 && S_ISDIR(st.st_mode)) {
        *out = abs;
        abs = NULL;
        goto out;
      }
    }
  }
  {
    char *argv[] = {(char *)rustc, "--print", "sysroot", NULL};
    rv = run_capture(argv, out);
  }
out:
  free(abs);
  free(probe);
  return rv;
}

/* Package-directory filter: no VCS dirs, no cargo target dirs. */
static int skip_pkg(void *ctx, const char *abs_dir, const char *name,
                    int is_dir) {
  struct stat st;
  char *tag;
  int r;
  (void)ctx;
  if (!is_dir)
    return 0;
  if (strcmp(name, ".git") == 0 || strcmp(name, ".hg") == 0 ||
      strcmp(name, ".svn") == 0 || strcmp(name, ".distbuild") == 0)
    return 1;
  tag = wrap_fmt("%s/%s/CACHEDIR.TAG", abs_dir, name);
  r = tag != NULL && stat(tag, &st) == 0;
  free(tag);
  return r;
}

typedef struct builder {
  const wrap_args *a;
  char *const *envp;
  const char *cache_dir;
  wrap_action *act;
  wrap_strv inputs;  /* absolute files / dirs to add, for the root calc */
  wrap_strv externs; /* extern artifacts incl. closures */
  wrap_strv files;   /* recorded extra files */
  const char *manifest_dir;
  const char *out_dir_env;
} builder;

static int add_rel(builder *b, const char *abs, int tree) {
  const char *rel = wrap_path_rel(abs, b->act->exec_root);
  if (rel == NULL)
    return DB_EINVAL;
  if (tree == 2)
    return wrap_tree_add_dir(b->act->tree, rel);
  if (tree == 1)
    return wrap_tree_add_tree(b->act->tree, rel, abs, skip_pkg, NULL);
  return wrap_tree_add_file(b->act->tree, rel, abs);
}

static int add_toolchain(builder *b) {
  const char *sys = b->act->sysroot;
  char *p = NULL, *rustc = NULL;
  DIR *d = NULL;
  struct dirent *de;
  int rv;
  rustc = wrap_fmt("%s/bin/rustc", sys);
  if (rustc == NULL)
    return DB_ENOMEM;
  rv = add_rel(b, rustc, 0);
  if (rv != 0)
    goto out;
  p = wrap_fmt("%s/lib", sys);
  if (p == NULL || (d = opendir(p)) == NULL) {
    rv = p ? DB_EIO : DB_ENOMEM;
    goto out;
  }
  while (rv == 0 && (de = readdir(d)) != NULL) {
    char *f;
    struct stat st;
    if (strstr(de->d_name, ".so") == NULL)
      continue;
    f = wrap_fmt("%s/%s", p, de->d_name);
    if (f == NULL) {
      rv = DB_ENOMEM;
      break;
    }
    if (stat(f, &st) == 0 && S_ISREG(st.st_mode))
      rv = add_rel(b, f, 0);
    free(f);
  }
  closedir(d);
  d = NULL;
  free(p);
  p = wrap_fmt("%s/lib/rustlib", sys);
  if (rv != 0 || p == NULL || (d = opendir(p)) == NULL) {
    rv = rv ? rv : (p ? DB_EIO : DB_ENOMEM);
    goto out;
  }
  while (rv == 0 && (de = readdir(d)) != NULL) {
    char *lib;
    struct stat st;
    if (de->d_name[0] == '.')
      continue;
    if (b->a->target != NULL && strcmp(de->d_name, b->a->target) != 0)
      continue;
    lib = wrap_fmt("%s/%s/lib", p, de->d_name);
    if (lib == NULL) {
      rv = DB_ENOMEM;
      break;
    }
    if (stat(lib, &st) == 0 && S_ISDIR(st.st_mode))
      rv = add_rel(b, lib, 1);
    free(lib);
  }
out:
  if (d != NULL)
    closedir(d);
  free(p);
  free(rustc);
  return rv;
}

static int collect_externs(builder *b) {
  return wrap_closure_collect(b->a, b->cache_dir, &b->externs);
}

/* Build-script variables: cargo:rustc-env=K=V lines of <OUT_DIR>/../output */
static int add_script_env(builder *b, wrap_strv *names) {
  char *path, *text = NULL, *save = NULL;
  int rv;
  if (b->out_dir_env == NULL)
    return 0;
  path = wrap_fmt("%s/../output", b->out_dir_env);
  if (path == NULL)
    return DB_ENOMEM;
  rv = wrap_read_file(path, 4u << 20, &text, NULL);
  free(path);
  if (rv != 0)
    return rv == DB_ENOMEM ? rv : 0;
  for (char *l = strtok_r(text, "\n", &save); l && rv == 0;
       l = strtok_r(NULL, "\n", &save)) {
    char *k = NULL, *eq;
    if (strncmp(l, "cargo:rustc-env=", 16) == 0)
      k = l + 16;
    else if (strncmp(l, "cargo::rustc-env=", 17) == 0)
      k = l + 17;
    if (k == NULL || (eq = strchr(k, '=')) == NULL)
      continue;
    *eq = '\0';
    if (!wrap_strv_has(names, k))
      rv = wrap_strv_add(names, k);
  }
  free(text);
  return rv;
}

static int build_env(builder *b, const wrap_strv *extra, wrap_strv *names) {
  int rv = 0;
  for (size_t i = 0; b->envp[i] && rv == 0; i++) {
    const char *kv = b->envp[i];
    const char *eq = strchr(kv, '=');
    if (eq == NULL)
      continue;
    if (cargo_var_wanted(kv) || strncmp(kv, "OUT_DIR=", 8) == 0 ||
        strncmp(kv, "RUSTC_BOOTSTRAP=", 16) == 0) {
      char *n = strndup(kv, (size_t)(eq - kv));
      rv = n ? wrap_strv_take(names, n) : DB_ENOMEM;
    }
  }
  if (rv == 0)
    rv = add_script_env(b, names);
  for (size_t i = 0; extra && i < extra->n && rv == 0; i++)
    rv = wrap_strv_add(names, extra->v[i]);
  if (rv != 0)
    return rv;
  wrap_strv_sort_uniq(names);
  /* Keep only variables that are set (absence is the default). */
  {
    size_t j = 0;
    for (size_t i = 0; i < names->n; i++) {
      if (wrap_env_get(b->envp, names->v[i]) != NULL)
        names->v[j++] = names->v[i];
      else
        free(names->v[i]);
    }
    names->n = j;
    if (names->v)
      names->v[j] = NULL;
  }
  return 0;
}

static int compute_root(builder *b, const char **reason) {
  wrap_action *act = b->act;
  const char *first = NULL;
  act->exec_root = strdup(act->sysroot);
  if (act->exec_root == NULL)
    return DB_ENOMEM;
  for (size_t i = 0; i < b->inputs.n; i++) {
    wrap_path_common(act->exec_root, b->inputs.v[i]);
    if (strcmp(act->exec_root, "/") == 0 && first == NULL) {
      first = b->inputs.v[i];
      free(act->reason);
      act->reason = wrap_fmt("no common exec root below / for %s and %s",
                             act->sysroot, first);
      *reason = act->reason ? act->reason : "no common exec root below /";
      return DB_EUNSUPP;
    }
  }
  return 0;
}

static int pack_command(builder *b, const wrap_strv *names,
                        const char **reason) {
  wrap_action *act = b->act;
  PbCommand cmd = BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__INIT;
  PbPlatform plat = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__INIT;
  PbPlatform aplat = BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__INIT;
  PbProperty props[4], *pp[4], *app[3];
  char isa[64], cpu[128];
  size_t np = 3, nap = 2;
  PbEnvVar *ev = NULL, **evp = NULL;
  wrap_strv argv = {0}, outs = {0};
  char *rustc = NULL;
  int rv = 0;
  PbAction pa = BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION__INIT;
  PbDigest cd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  PbDigest rd = BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST__INIT;
  /* Sorted by name, as REAPI wants platform properties. */
  const char *pn[4] = {REAPI_HOST_ISA_KEY, "OSFamily", "exec-root-path",
                       REAPI_HOST_CPU_KEY};
  const char *pv[4] = {isa, "linux", act->exec_root, cpu};

  rv = reapi_host_isa(isa, sizeof(isa));
  if (rv == 0 && b->a->native_cpu) {
    /* -C target-cpu=native compiles for the CPU rustc runs on: key the
     * action by ours, and let only a worker with the same CPU run it. */
    np = 4;
    rv = reapi_host_cpu(cpu, sizeof(cpu));
    if (rv != 0)
      *reason = "-C target-cpu=native on a CPU the wrapper cannot identify";
  }
  if (rv != 0)
    goto out;

  /* REAPI output paths are relative to the working directory and cannot
   * climb out of it. When an output lies outside rustc's working
   * directory (registry crates: cwd is the package source, --out-dir the
   * workspace's target dir), rustc runs from the exec root through
   * `/usr/bin/env -C <cwd>` so its view (getcwd, relative paths) is
   * unchanged. */
  int under = 1;
  for (size_t i = 0; i < act->outputs.n; i++)
    if (!wrap_path_under(act->outputs.v[i], b->a->cwd))
      under = 0;
  act->out_base = strdup(under ? b->a->cwd : act->exec_root);
  if (act->out_base == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  if (!under)
    rv = wrap_strv_add(&argv, "/usr/bin/env");
  if (rv == 0 && !under)
    rv = wrap_strv_add(&argv, "-C");
  if (rv == 0 && !under)
    rv = wrap_strv_add(&argv, b->a->cwd);
  rustc = strchr(b->a->rustc, '/') ? wrap_path_abs(b->a->rustc, b->a->cwd)
                                   : wrap_fmt("%s/bin/rustc", act->sysroot);
  if (rv == 0)
    rv = rustc ? wrap_strv_take(&argv, rustc) : DB_ENOMEM;
  if (rv == 0)
    rv = wrap_args_remote_argv(b->a, &argv);
  for (size_t i = 0; rv == 0 && i < act->outputs.n; i++) {
    const char *rel = wrap_path_rel(act->outputs.v[i], act->out_base);
    rv = rel ? wrap_strv_add(&outs, rel) : DB_EINVAL;
  }
  if (rv != 0)
    goto out;
  wrap_strv_sort_uniq(&outs);
  ev = calloc(names->n + 1, sizeof(*ev));
  evp = calloc(names->n + 1, sizeof(*evp));
  if (ev == NULL || evp == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (size_t i = 0; i < names->n; i++) {
    PbEnvVar init =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__COMMAND__ENVIRONMENT_VARIABLE__INIT;
    ev[i] = init;
    ev[i].name = names->v[i];
    ev[i].value = (char *)wrap_env_get(b->envp, names->v[i]);
    evp[i] = &ev[i];
  }
  for (size_t i = 0; i < np; i++) {
    PbProperty init =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__PLATFORM__PROPERTY__INIT;
    props[i] = init;
    props[i].name = (char *)pn[i];
    props[i].value = (char *)pv[i];
    pp[i] = &props[i];
  }
  plat.n_properties = np;
  plat.properties = pp;
  cmd.n_arguments = argv.n;
  cmd.arguments = argv.v;
  cmd.n_environment_variables = names->n;
  cmd.environment_variables = evp;
  cmd.n_output_files = outs.n;
  cmd.output_files = outs.v;
  cmd.n_output_paths = outs.n;
  cmd.output_paths = outs.v;
  cmd.platform = &plat;
  {
    const char *wd = wrap_path_rel(act->out_base, act->exec_root);
    cmd.working_directory = (char *)(wd ? wd : "");
  }
  rv = reapi_pb_pack(&cmd.base, &act->command, &act->command_len);
  if (rv != 0)
    goto out;
  reapi_digest_of(act->command, act->command_len, &act->command_digest);
  reapi_pb_digest_set(&cd, &act->command_digest);
  reapi_pb_digest_set(&rd, &act->input_root);
  pa.command_digest = &cd;
  pa.input_root_digest = &rd;
  /* The Action's platform is what the scheduler matches workers on, so it
   * carries only OSFamily, ISA and host-cpu; exec-root-path rides in the
   * Command's platform (which the worker reads too) and still keys the
   * action through the Command digest. */
  app[0] = pp[0];
  app[1] = pp[1];
  if (np == 4)
    app[nap++] = pp[3];
  aplat.n_properties = nap;
  aplat.properties = app;
  pa.platform = &aplat;
  rv = reapi_pb_pack(&pa.base, &act->action, &act->action_len);
  if (rv == 0)
    reapi_digest_of(act->action, act->action_len, &act->action_digest);
out:
  free(ev);
  free(evp);
  wrap_strv_free(&argv);
  wrap_strv_free(&outs);
  return rv;
}

static char *dir_of(const char *p) {
  const char *s = strrchr(p, '/');
  if (s == NULL || s == p)
    return strdup("/");
  return strndup(p, (size_t)(s - p));
}

static int build(builder *b, wrap_dcache *dc, const wrap_strv *extra_env,
                 const char **reason) {
  wrap_action *act = b->act;
  wrap_strv names = {0};
  const wrap_args *a = b->a;
  int rv;

  rv = find_sysroot(a->rustc, &act->sysroot);
  if (rv != 0) {
    *reason = "cannot determine the rustc sysroot";
    return DB_EUNSUPP;
  }
  b->manifest_dir = wrap_env_get(b->envp, "CARGO_MANIFEST_DIR");
  b->out_dir_env = wrap_env_get(b->envp, "OUT_DIR");
  wrap_hash_crate_key(a->crate_name, b->manifest_dir ? b->manifest_dir : "",
                      act->crate_key);
  rv = wrap_state_crate_load(b->cache_dir, act->crate_key, &names, &b->files);
  act->have_record = (rv == 0);
  if (rv != 0 && rv != DB_ENOTFOUND)
    goto out;
  rv = wrap_args_outputs(a, &act->outputs);
  if (rv == 0)
    rv = collect_externs(b);
  if (rv != 0)
    goto out;
  /* Every path that must be inside the exec root. */
  rv = wrap_strv_add(&b->inputs, a->cwd);
  if (rv == 0)
    rv = wrap_strv_add(&b->inputs, a->src);
  if (rv == 0 && b->manifest_dir)
    rv = wrap_strv_add(&b->inputs, b->manifest_dir);
  if (rv == 0 && b->out_dir_env)
    rv = wrap_strv_add(&b->inputs, b->out_dir_env);
  for (size_t i = 0; rv == 0 && i < act->outputs.n; i++)
    rv = wrap_strv_add(&b->inputs, act->outputs.v[i]);
  for (size_t i = 0; rv == 0 && i < b->externs.n; i++)
    rv = wrap_strv_add(&b->inputs, b->externs.v[i]);
  for (size_t i = 0; rv == 0 && i < a->n_libdirs; i++)
    if (strcmp(a->libdirs[i].kind, "dependency") == 0 ||
        (a->has_native_libs && strcmp(a->libdirs[i].kind, "crate") != 0))
      rv = wrap_strv_add(&b->inputs, a->libdirs[i].path);
  if (rv != 0)
    goto out;
  rv = compute_root(b, reason);
  if (rv != 0)
    goto out;

  rv = wrap_tree_new(dc, &act->tree);
  if (rv == 0)
    rv = add_toolchain(b);
  if (rv == 0 && b->manifest_dir)
    rv = add_rel(b, b->manifest_dir, 1);
  if (rv == 0 &&
      (b->manifest_dir == NULL || !wrap_path_under(a->src, b->manifest_dir)))
    rv = add_rel(b, a->src, 0);
  if (rv == 0 && b->out_dir_env) {
    struct stat st;
    if (stat(b->out_dir_env, &st) == 0)
      rv = add_rel(b, b->out_dir_env, 1);
  }
  for (size_t i = 0; rv == 0 && i < b->externs.n; i++)
    rv = add_rel(b, b->externs.v[i], 0);
  for (size_t i = 0; rv == 0 && i < b->files.n; i++) {
    struct stat st;
    const char *f = b->files.v[i];
    if (!wrap_path_under(f, act->exec_root) || stat(f, &st) != 0 ||
        !S_ISREG(st.st_mode))
      continue;
    rv = add_rel(b, f, 0);
    if (rv == DB_EEXIST)
      rv = 0;
  }
  for (size_t i = 0; rv == 0 && a->has_native_libs && i < a->n_libdirs; i++) {
    const wrap_libdir *l = &a->libdirs[i];
    struct stat st;
    if (strcmp(l->kind, "native") != 0 && strcmp(l->kind, "all") != 0)
      continue;
    if (stat(l->path, &st) == 0 && S_ISDIR(st.st_mode))
      rv = add_rel(b, l->path, 1);
  }
  if (rv == 0)
    rv = add_rel(b, a->cwd, 2);
  for (size_t i = 0; rv == 0 && i < act->outputs.n; i++) {
    char *d = dir_of(act->outputs.v[i]);
    rv = d ? add_rel(b, d, 2) : DB_ENOMEM;
    free(d);
  }
  if (rv == 0)
    rv = wrap_tree_finish(act->tree, &act->input_root);
  if (rv != 0) {
    *reason = "cannot collect the inputs";
    DB_DEBUG("wrapper", "input tree: %s", db_strerror(rv));
    goto out;
  }
  rv = build_env(b, extra_env, &names);
  if (rv == 0)
    rv = pack_command(b, &names, reason);
  if (rv == 0) {
    act->env_names = names;
    names = (wrap_strv){0};
  }
out:
  wrap_strv_free(&names);
  return rv;
}

int wrap_action_build(const wrap_args *args, char *const *envp,
                      const char *cache_dir, wrap_dcache *dc,
                      const wrap_strv *extra_env, wrap_action **out,
                      const char **reason) {
  builder b;
  int rv;
  *out = NULL;
  *reason = NULL;
  memset(&b, 0, sizeof(b));
  b.a = args;
  b.envp = envp;
  b.cache_dir = cache_dir;
  b.act = calloc(1, sizeof(*b.act));
  if (b.act == NULL)
    return DB_ENOMEM;
  rv = build(&b, dc, extra_env, reason);
  wrap_strv_free(&b.inputs);
  wrap_strv_free(&b.externs);
  wrap_strv_free(&b.files);
  if (rv != 0 && rv != DB_EUNSUPP) {
    wrap_action_free(b.act);
    return rv;
  }
  *out = b.act; /* on DB_EUNSUPP too: *reason may point into it */
  return rv;
}

void wrap_action_free(wrap_action *act) {
  if (act == NULL)
    return;
  free(act->exec_root);
  free(act->out_base);
  free(act->sysroot);
  wrap_strv_free(&act->outputs);
  wrap_strv_free(&act->env_names);
  free(act->command);
  free(act->action);
  wrap_tree_free(act->tree);
  free(act->reason);
  free(act);
}

int wrap_action_learn(const wrap_args *args, char *const *envp,
                      const char *cache_dir, const wrap_action *act,
                      wrap_strv *missing) {
  const char *mdir = wrap_env_get(envp, "CARGO_MANIFEST_DIR");
  const char *odir = wrap_env_get(envp, "OUT_DIR");
  wrap_strv outs = {0}, files = {0}, env = {0}, keep = {0};
  char *text = NULL, key[33];
  int rv;
  if (!args->emit_depinfo)
    return 0;
  rv = wrap_args_outputs(args, &outs);
  if (rv != 0 || outs.n == 0)
    goto out;
  rv = wrap_read_file(outs.v[outs.n - 1], 64u << 20, &text, NULL);
  if (rv != 0)
    goto out;
  rv = wrap_depinfo_parse(text, args->cwd, &files, &env);
  if (rv != 0)
    goto out;
  /* Keep only files the package dir / OUT_DIR / sysroot do not cover. */
  for (size_t i = 0; i < files.n && rv == 0; i++) {
    const char *f = files.v[i];
    if ((mdir && wrap_path_under(f, mdir)) ||
        (odir && wrap_path_under(f, odir)) ||
        (act && wrap_path_under(f, act->sysroot)))
      continue;
    rv = wrap_strv_add(&keep, f);
  }
  if (rv != 0)
    goto out;
  wrap_strv_sort_uniq(&env);
  wrap_strv_sort_uniq(&keep);
  wrap_hash_crate_key(args->crate_name, mdir ? mdir : "", key);
  rv = wrap_state_crate_save(cache_dir, key, &env, &keep);
  for (size_t i = 0; rv == 0 && missing && act && i < env.n; i++) {
    if (!wrap_strv_has(&act->env_names, env.v[i]) &&
        wrap_env_get(envp, env.v[i]) != NULL)
      rv = wrap_strv_add(missing, env.v[i]);
  }
out:
  free(text);
  wrap_strv_free(&outs);
  wrap_strv_free(&files);
  wrap_strv_free(&env);
  wrap_strv_free(&keep);
  return rv;
}
