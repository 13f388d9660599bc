/* Wrapper configuration lookup; see wrap_config.h. */
#include "wrap_config.h"

#include <stdlib.h>
#include <string.h>

#include "wrap_util.h"

char *wrap_config_parse_scheduler(const char *text) {
  const char *l = text;
  while (l && *l) {
    const char *nl = strchr(l, '\n');
    const char *p = l;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncmp(p, "scheduler", 9) == 0) {
      p += 9;
      while (*p == ' ' || *p == '\t')
        p++;
      if (*p == '=') {
        const char *end;
        p++;
        while (*p == ' ' || *p == '\t')
          p++;
        if (*p == '"' || *p == '\'') {
          char q = *p++;
          end = strchr(p, q);
          if (end != NULL && (nl == NULL || end < nl)) {
            if (strncmp(p, "grpc://", 7) == 0)
              p += 7;
            return strndup(p, (size_t)(end - p));
          }
        }
      }
    }
    l = nl ? nl + 1 : NULL;
  }
  return NULL;
}

static char *from_file(const char *path) {
  char *text = NULL, *v;
  if (wrap_read_file(path, 1u << 20, &text, NULL) != 0)
    return NULL;
  v = wrap_config_parse_scheduler(text);
  free(text);
  return v;
}

char *wrap_config_scheduler(const char *cwd) {
  const char *e = getenv("CARGO_DISTBUILD_SCHEDULER");
  char *dir, *v = NULL;
  if (e != NULL && *e)
    return strdup(strncmp(e, "grpc://", 7) == 0 ? e + 7 : e);
  dir = wrap_path_abs(cwd ? cwd : ".", NULL);
  while (dir != NULL && v == NULL) {
    char *f = wrap_path_join(dir, ".distbuild/config.toml");
    char *slash;
    if (f != NULL)
      v = from_file(f);
    free(f);
    slash = strrchr(dir, '/');
    if (v != NULL || slash == NULL || strcmp(dir, "/") == 0)
      break;
    if (slash == dir)
      slash[1] = '\0';
    else
      *slash = '\0';
  }
  free(dir);
  if (v == NULL) {
    char *f = NULL;
    if ((e = getenv("XDG_CONFIG_HOME")) != NULL && *e)
      f = wrap_fmt("%s/cargo-distbuild/config.toml", e);
    else if ((e = getenv("HOME")) != NULL && *e)
      f = wrap_fmt("%s/.config/cargo-distbuild/config.toml", e);
    if (f != NULL)
      v = from_file(f);
    free(f);
  }
  return v ? v : strdup(WRAP_DEFAULT_SCHEDULER);
}
