/* rustc argument parsing; see wrap_args.h. */
#include "wrap_args.h"

#include <stdlib.h>
#include <string.h>

#include "db_err.h"

/* Options that take a value (separately or after '='). */
static const char *const k_long_val[] = {"--crate-name",
                                         "--edition",
                                         "--crate-type",
                                         "--emit",
                                         "--out-dir",
                                         "--codegen",
                                         "--extern",
                                         "--target",
                                         "--cfg",
                                         "--check-cfg",
                                         "--cap-lints",
                                         "--error-format",
                                         "--json",
                                         "--color",
                                         "--print",
                                         "--sysroot",
                                         "--remap-path-prefix",
                                         "--explain",
                                         "--diagnostic-width",
                                         "--force-warn",
                                         "--env-set",
                                         "--crate-attr",
                                         "--extern-location",
                                         "--warn",
                                         "--allow",
                                         "--deny",
                                         "--forbid",
                                         "--out",
                                         NULL};
static const char k_short_val[] = "CLlAWDFoZ";

static int is_long_val(const char *opt, size_t len) {
  for (int i = 0; k_long_val[i]; i++)
    if (strlen(k_long_val[i]) == len && strncmp(k_long_val[i], opt, len) == 0)
      return 1;
  return 0;
}

static int add_extern(wrap_args *a, const char *v) {
  const char *colon = strchr(v, ':');
  const char *eq = strchr(v, '=');
  wrap_extern *e;
  wrap_extern *ne = realloc(a->externs, (a->n_externs + 1) * sizeof(*ne));
  if (ne == NULL)
    return DB_ENOMEM;
  a->externs = ne;
  e = &a->externs[a->n_externs];
  /* Modifiers such as "priv:" or "noprelude:" precede the name. */
  if (colon != NULL && (eq == NULL || colon < eq))
    v = colon + 1;
  eq = strchr(v, '=');
  e->name = eq ? strndup(v, (size_t)(eq - v)) : strdup(v);
  e->path = eq ? wrap_path_abs(eq + 1, a->cwd) : NULL;
  if (e->name == NULL || (eq && e->path == NULL)) {
    free(e->name);
    free(e->path);
    return DB_ENOMEM;
  }
  a->n_externs++;
  return 0;
}

static int add_libdir(wrap_args *a, const char *v) {
  const char *eq = strchr(v, '=');
  wrap_libdir *nl = realloc(a->libdirs, (a->n_libdirs + 1) * sizeof(*nl));
  wrap_libdir *l;
  if (nl == NULL)
    return DB_ENOMEM;
  a->libdirs = nl;
  l = &a->libdirs[a->n_libdirs];
  if (eq != NULL &&
      (strncmp(v, "dependency=", 11) == 0 || strncmp(v, "native=", 7) == 0 ||
       strncmp(v, "crate=", 6) == 0 || strncmp(v, "framework=", 10) == 0 ||
       strncmp(v, "all=", 4) == 0)) {
    l->kind = strndup(v, (size_t)(eq - v));
    v = eq + 1;
  } else {
    l->kind = strdup("all");
  }
  l->path = wrap_path_abs(v, a->cwd);
  if (l->kind == NULL || l->path == NULL) {
    free(l->kind);
    free(l->path);
    return DB_ENOMEM;
  }
  a->n_libdirs++;
  return 0;
}

static int set_str(char **dst, const char *v) {
  free(*dst);
  *dst = strdup(v);
  return *dst ? 0 : DB_ENOMEM;
}

static int parse_emit(wrap_args *a, const char *v) {
  char *dup = strdup(v), *save = NULL;
  int rv = 0;
  if (dup == NULL)
    return DB_ENOMEM;
  for (char *k = strtok_r(dup, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(k, '=');
    if (eq != NULL)
      *eq++ = '\0';
    if (strcmp(k, "dep-info") == 0) {
      a->emit_depinfo = 1;
      if (eq != NULL) {
        free(a->emit_depinfo_path);
        a->emit_depinfo_path = wrap_path_abs(eq, a->cwd);
        if (a->emit_depinfo_path == NULL)
          rv = DB_ENOMEM;
      }
    } else if (strcmp(k, "metadata") == 0 && eq == NULL) {
      a->emit_metadata = 1;
    } else if (strcmp(k, "link") == 0 && eq == NULL) {
      a->emit_link = 1;
    } else {
      a->emit_other = 1;
    }
  }
  free(dup);
  return rv;
}

static int parse_codegen(wrap_args *a, const char *v) {
  if (strncmp(v, "extra-filename=", 15) == 0)
    return set_str(&a->extra_filename, v + 15);
  if (strncmp(v, "incremental", 11) == 0)
    a->has_incremental = 1;
  else if (strncmp(v, "save-temps", 10) == 0)
    a->save_temps = 1;
  else if (strncmp(v, "target-cpu=", 11) == 0 ||
           strncmp(v, "target_cpu=", 11) == 0)
    a->native_cpu = strcmp(v + 11, "native") == 0; /* the last one wins */
  return 0;
}

/* Handle one option with its value. */
static int apply(wrap_args *a, const char *opt, const char *v) {
  if (strcmp(opt, "--crate-name") == 0)
    return set_str(&a->crate_name, v);
  if (strcmp(opt, "--crate-type") == 0) {
    char *dup = strdup(v), *save = NULL;
    int rv = 0;
    if (dup == NULL)
      return DB_ENOMEM;
    for (char *k = strtok_r(dup, ",", &save); k && rv == 0;
         k = strtok_r(NULL, ",", &save))
      if (!wrap_strv_has(&a->crate_types, k))
        rv = wrap_strv_add(&a->crate_types, k);
    free(dup);
    return rv;
  }
  if (strcmp(opt, "--emit") == 0)
    return parse_emit(a, v);
  if (strcmp(opt, "--out-dir") == 0) {
    free(a->out_dir);
    a->out_dir = wrap_path_abs(v, a->cwd);
    return a->out_dir ? 0 : DB_ENOMEM;
  }
  if (strcmp(opt, "-C") == 0 || strcmp(opt, "--codegen") == 0)
    return parse_codegen(a, v);
  if (strcmp(opt, "--extern") == 0)
    return add_extern(a, v);
  if (strcmp(opt, "-L") == 0)
    return add_libdir(a, v);
  if (strcmp(opt, "-l") == 0) {
    a->has_native_libs = 1;
    return 0;
  }
  if (strcmp(opt, "--target") == 0)
    return set_str(&a->target, v);
  if (strcmp(opt, "--print") == 0) {
    a->has_print = 1;
    return 0;
  }
  if (strcmp(opt, "-o") == 0 || strcmp(opt, "--out") == 0 ||
      strcmp(opt, "--sysroot") == 0) {
    a->has_output = 1; /* handled locally */
    return 0;
  }
  if (strcmp(opt, "-Z") == 0 && strncmp(v, "unpretty", 8) == 0)
    a->has_print = 1;
  return 0;
}

int wrap_args_parse(int argc, char *const *argv, const char *cwd,
                    wrap_args **out) {
  wrap_args *a = calloc(1, sizeof(*a));
  int rv = 0;
  *out = NULL;
  if (a == NULL)
    return DB_ENOMEM;
  a->cwd = wrap_path_abs(cwd ? cwd : ".", NULL);
  a->rustc = strdup(argc > 0 ? argv[0] : "rustc");
  if (a->cwd == NULL || a->rustc == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (int i = 1; i < argc && rv == 0; i++) {
    const char *s = argv[i];
    rv = wrap_strv_add(&a->args, s);
    if (rv != 0)
      break;
    if (strcmp(s, "-") == 0) {
      a->stdin_src = 1;
    } else if (strcmp(s, "-vV") == 0 || strcmp(s, "-V") == 0 ||
               strcmp(s, "--version") == 0 || strcmp(s, "-h") == 0 ||
               strcmp(s, "--help") == 0) {
      a->has_print = 1;
    } else if (s[0] == '@') {
      a->emit_other = 1;
    } else if (s[0] == '-' && s[1] == '-') {
      const char *eq = strchr(s, '=');
      size_t len = eq ? (size_t)(eq - s) : strlen(s);
      if (is_long_val(s, len)) {
        char *opt = strndup(s, len);
        const char *v = eq ? eq + 1 : NULL;
        if (opt == NULL) {
          rv = DB_ENOMEM;
          break;
        }
        if (v == NULL && i + 1 < argc) {
          v = argv[++i];
          rv = wrap_strv_add(&a->args, v);
        }
        if (rv == 0 && v != NULL)
          rv = apply(a, opt, v);
        free(opt);
      } else if (strcmp(s, "--test") == 0) {
        a->emit_other = 1; /* test harness binary */
      }
    } else if (s[0] == '-' && s[1] != '\0' && strchr(k_short_val, s[1])) {
      char opt[3] = {'-', s[1], '\0'};
      const char *v = s[2] ? s + 2 : NULL;
      if (v == NULL && i + 1 < argc) {
        v = argv[++i];
        rv = wrap_strv_add(&a->args, v);
      }
      if (rv == 0 && v != NULL)
        rv = apply(a, opt, v);
    } else if (s[0] != '-') {
      free(a->src);
      a->src = wrap_path_abs(s, a->cwd);
      if (a->src == NULL)
        rv = DB_ENOMEM;
    }
  }
  if (rv != 0)
    goto out;
  *out = a;
  a = NULL;
out:
  wrap_args_free(a);
  return rv;
}

void wrap_args_free(wrap_args *a) {
  if (a == NULL)
    return;
  for (size_t i = 0; i < a->n_externs; i++) {
    free(a->externs[i].name);
    free(a->externs[i].path);
  }
  for (size_t i = 0; i < a->n_libdirs; i++) {
    free(a->libdirs[i].kind);
    free(a->libdirs[i].path);
  }
  free(a->externs);
  free(a->libdirs);
  wrap_strv_free(&a->args);
  wrap_strv_free(&a->crate_types);
  free(a->rustc);
  free(a->cwd);
  free(a->crate_name);
  free(a->src);
  free(a->out_dir);
  free(a->extra_filename);
  free(a->target);
  free(a->emit_depinfo_path);
  free(a);
}

int wrap_args_is_compile(const wrap_args *a) {
  return !a->has_print && !a->stdin_src && a->src != NULL &&
         a->crate_name != NULL;
}

const char *wrap_args_local_reason(const wrap_args *a) {
  if (a->has_print)
    return "query (-vV/--print)";
  if (a->stdin_src)
    return "input from stdin";
  if (a->src == NULL || a->crate_name == NULL)
    return "no input crate";
  if (strncmp(a->crate_name, "build_script_", 13) == 0)
    return "build script";
  if (a->crate_types.n == 0)
    return "binary crate";
  if (a->crate_types.n > 1)
    return "several crate types";
  if (strcmp(a->crate_types.v[0], "lib") != 0 &&
      strcmp(a->crate_types.v[0], "rlib") != 0) {
    if (strcmp(a->crate_types.v[0], "proc-macro") == 0)
      return "proc-macro crate";
    if (strcmp(a->crate_types.v[0], "bin") == 0)
      return "binary crate";
    return "non-rlib crate type";
  }
  if (a->emit_other || a->save_temps)
    return "unsupported --emit/--test/@file";
  if (a->has_output)
    return "-o/--sysroot";
  if (a->out_dir == NULL)
    return "no --out-dir";
  if (!a->emit_link && !a->emit_metadata)
    return "nothing to emit";
  return NULL;
}

int wrap_args_uses_proc_macro(const wrap_args *a) {
  for (size_t i = 0; i < a->n_externs; i++) {
    const char *p = a->externs[i].path;
    size_t l = p ? strlen(p) : 0;
    if (l > 3 && strcmp(p + l - 3, ".so") == 0)
      return 1;
  }
  return 0;
}

int wrap_args_outputs(const wrap_args *a, wrap_strv *out) {
  const char *x = a->extra_filename ? a->extra_filename : "";
  int rv = 0;
  if (a->out_dir == NULL || a->crate_name == NULL)
    return DB_EINVAL;
  if (a->emit_link)
    rv = wrap_strv_take(
        out, wrap_fmt("%s/lib%s%s.rlib", a->out_dir, a->crate_name, x));
  if (rv == 0 && a->emit_metadata)
    rv = wrap_strv_take(
        out, wrap_fmt("%s/lib%s%s.rmeta", a->out_dir, a->crate_name, x));
  if (rv == 0 && a->emit_depinfo) {
    if (a->emit_depinfo_path)
      rv = wrap_strv_add(out, a->emit_depinfo_path);
    else
      rv = wrap_strv_take(out,
                          wrap_fmt("%s/%s%s.d", a->out_dir, a->crate_name, x));
  }
  return rv;
}

int wrap_args_remote_argv(const wrap_args *a, wrap_strv *out) {
  int rv = 0;
  for (size_t i = 0; i < a->args.n && rv == 0; i++) {
    const char *s = a->args.v[i];
    if ((strcmp(s, "-C") == 0 || strcmp(s, "--codegen") == 0) &&
        i + 1 < a->args.n &&
        strncmp(a->args.v[i + 1], "incremental", 11) == 0) {
      i++;
      continue;
    }
    if ((strncmp(s, "-Cincremental", 13) == 0) ||
        strncmp(s, "--codegen=incremental", 21) == 0)
      continue;
    rv = wrap_strv_add(out, s);
  }
  return rv;
}
