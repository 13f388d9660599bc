/* Extern closures; see wrap_closure.h. */
#include "wrap_closure.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "db_err.h"
#include "db_log.h"
#include "wrap_state.h"

/* All lib* artifacts in the -L dependency= dirs (no closure record). */
static int add_wide(const wrap_args *a, wrap_strv *externs) {
  int rv = 0;
  for (size_t i = 0; i < a->n_libdirs && rv == 0; i++) {
    DIR *d;
    struct dirent *de;
    if (strcmp(a->libdirs[i].kind, "dependency") != 0)
      continue;
    d = opendir(a->libdirs[i].path);
    if (d == NULL)
      continue;
    while (rv == 0 && (de = readdir(d)) != NULL) {
      const char *n = de->d_name;
      size_t l = strlen(n);
      if (strncmp(n, "lib", 3) != 0)
        continue;
      if ((l > 5 && strcmp(n + l - 5, ".rlib") == 0) ||
          (l > 6 && strcmp(n + l - 6, ".rmeta") == 0) ||
          (l > 3 && strcmp(n + l - 3, ".so") == 0)) {
        char *f = wrap_path_join(a->libdirs[i].path, n);
        rv = f ? wrap_strv_take(externs, f) : DB_ENOMEM;
      }
    }
    closedir(d);
  }
  return rv;
}

int wrap_closure_collect(const wrap_args *a, const char *cache_dir,
                         wrap_strv *externs) {
  int rv = 0, wide = 0;
  for (size_t i = 0; i < a->n_externs && rv == 0; i++) {
    const char *p = a->externs[i].path;
    if (p == NULL)
      continue;
    rv = wrap_strv_add(externs, p);
    if (rv == 0) {
      size_t l = strlen(p);
      if (l > 3 && strcmp(p + l - 3, ".so") == 0)
        continue; /* proc-macro: its deps are linked in */
      rv = wrap_state_closure_get(cache_dir, p, externs);
      if (rv == DB_ENOTFOUND) {
        DB_DEBUG("wrapper", "no closure record for %s", p);
        wide = 1;
        rv = 0;
      }
    }
  }
  if (rv == 0 && wide)
    rv = add_wide(a, externs);
  if (rv == 0)
    wrap_strv_sort_uniq(externs);
  return rv;
}

int wrap_closure_record(const wrap_args *args, const char *cache_dir) {
  wrap_strv outs = {0}, externs = {0};
  int rv;
  if (args->out_dir == NULL || args->crate_name == NULL)
    return 0;
  rv = wrap_closure_collect(args, cache_dir, &externs);
  if (rv == 0) {
    const char *x = args->extra_filename ? args->extra_filename : "";
    rv = wrap_strv_take(
        &outs, wrap_fmt("%s/lib%s%s.rlib", args->out_dir, args->crate_name, x));
    if (rv == 0)
      rv = wrap_strv_take(&outs, wrap_fmt("%s/lib%s%s.rmeta", args->out_dir,
                                          args->crate_name, x));
  }
  if (rv == 0)
    rv = wrap_state_closure_put(cache_dir, &outs, &externs);
  wrap_strv_free(&outs);
  wrap_strv_free(&externs);
  return rv;
}
