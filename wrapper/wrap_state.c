/* Persistent per-artifact and per-crate records; see wrap_state.h. */
#include "wrap_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_err.h"

static char *record_path(const char *cache_dir, const char *kind,
                         const char *key) {
  return wrap_fmt("%s/%s/%s", cache_dir, kind, key);
}

/* 1 if path is absolute and normal: no empty, "." or ".." component and no
 * trailing '/'. Only such a path may become a record path below, so a
 * record can never land outside closure/. */
static int normal_abs(const char *path) {
  const char *c = path;
  if (path[0] != '/')
    return 0;
  while (*c == '/') {
    const char *e = strchr(c + 1, '/');
    size_t n = e ? (size_t)(e - c - 1) : strlen(c + 1);
    if (n == 0 || (n == 1 && c[1] == '.') ||
        (n == 2 && c[1] == '.' && c[2] == '.'))
      return 0;
    c += n + 1;
  }
  return 1;
}

/* closure/<artifact path>.closure: the path itself is the key, so the
 * front needs no hash function (and no libcrypto). NULL (with *err set)
 * for a path that cannot be a key. */
static char *closure_path(const char *cache_dir, const char *artifact,
                          int *err) {
  char *p;
  if (!normal_abs(artifact)) {
    *err = DB_EINVAL;
    return NULL;
  }
  p = wrap_fmt("%s/closure%s.closure", cache_dir, artifact);
  *err = p ? 0 : DB_ENOMEM;
  return p;
}

static int write_lines(const char *path, const char *prefix, const wrap_strv *a,
                       const char *prefix2, const wrap_strv *b) {
  size_t len = 0, o = 0;
  char *buf;
  int rv;
  for (size_t i = 0; a && i < a->n; i++)
    len += strlen(prefix) + strlen(a->v[i]) + 1;
  for (size_t i = 0; b && i < b->n; i++)
    len += strlen(prefix2) + strlen(b->v[i]) + 1;
  buf = malloc(len + 1);
  if (buf == NULL)
    return DB_ENOMEM;
  for (size_t i = 0; a && i < a->n; i++)
    o += (size_t)snprintf(buf + o, len + 1 - o, "%s%s\n", prefix, a->v[i]);
  for (size_t i = 0; b && i < b->n; i++)
    o += (size_t)snprintf(buf + o, len + 1 - o, "%s%s\n", prefix2, b->v[i]);
  {
    /* Most calls record what the last one did: reading is much cheaper
     * than creating and renaming a file. */
    char *cur = NULL;
    size_t cur_len = 0;
    if (wrap_read_file(path, o + 1, &cur, &cur_len) == 0 && cur_len == o &&
        memcmp(cur, buf, o) == 0)
      rv = 0;
    else
      rv = wrap_write_atomic(path, buf, o, 0644);
    free(cur);
  }
  free(buf);
  return rv;
}

int wrap_state_closure_put(const char *cache_dir, const wrap_strv *artifacts,
                           const wrap_strv *closure) {
  int rv = 0;
  for (size_t i = 0; i < artifacts->n && rv == 0; i++) {
    char *p = closure_path(cache_dir, artifacts->v[i], &rv);
    if (p == NULL)
      return rv;
    rv = write_lines(p, "", closure, "", NULL);
    free(p);
  }
  return rv;
}

static int read_lines(const char *path, const char *prefix, wrap_strv *a,
                      const char *prefix2, wrap_strv *b) {
  char *text = NULL, *save = NULL;
  int rv = wrap_read_file(path, 16u << 20, &text, NULL);
  if (rv != 0)
    return rv;
  for (char *l = strtok_r(text, "\n", &save); l && rv == 0;
       l = strtok_r(NULL, "\n", &save)) {
    size_t p1 = strlen(prefix), p2 = prefix2 ? strlen(prefix2) : 0;
    if (a && strncmp(l, prefix, p1) == 0 && (prefix2 == NULL || p1 > 0)) {
      if (!wrap_strv_has(a, l + p1))
        rv = wrap_strv_add(a, l + p1);
    } else if (b && prefix2 && strncmp(l, prefix2, p2) == 0) {
      if (!wrap_strv_has(b, l + p2))
        rv = wrap_strv_add(b, l + p2);
    }
  }
  free(text);
  return rv;
}

int wrap_state_closure_get(const char *cache_dir, const char *artifact,
                           wrap_strv *out) {
  int rv;
  char *p = closure_path(cache_dir, artifact, &rv);
  if (p == NULL)
    return rv == DB_EINVAL ? DB_ENOTFOUND : rv;
  rv = read_lines(p, "", out, NULL, NULL);
  free(p);
  return rv;
}

int wrap_state_crate_load(const char *cache_dir, const char *key,
                          wrap_strv *env_names, wrap_strv *files) {
  char *p = record_path(cache_dir, "crates", key);
  int rv;
  if (p == NULL)
    return DB_ENOMEM;
  rv = read_lines(p, "env ", env_names, "file ", files);
  free(p);
  return rv;
}

int wrap_state_crate_save(const char *cache_dir, const char *key,
                          const wrap_strv *env_names, const wrap_strv *files) {
  char *p = record_path(cache_dir, "crates", key);
  int rv;
  if (p == NULL)
    return DB_ENOMEM;
  rv = write_lines(p, "env ", env_names, "file ", files);
  free(p);
  return rv;
}

/* Next whitespace-separated token with Makefile escapes ("\ ") undone. */
static char *next_token(const char **pp) {
  const char *p = *pp;
  char *tok, *o;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p == '\0' || *p == '\n') {
    *pp = p;
    return NULL;
  }
  tok = malloc(strlen(p) + 1);
  if (tok == NULL)
    return NULL;
  o = tok;
  while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
    if (p[0] == '\\' && (p[1] == ' ' || p[1] == '\\' || p[1] == '#'))
      p++;
    *o++ = *p++;
  }
  *o = '\0';
  *pp = p;
  return tok;
}

int wrap_depinfo_parse(const char *text, const char *cwd, wrap_strv *files,
                       wrap_strv *env) {
  const char *line = text;
  int rv = 0;
  while (line && *line && rv == 0) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    if (strncmp(line, "# env-dep:", 10) == 0) {
      const char *n = line + 10;
      size_t nlen = 0;
      while (nlen < len - 10 && n[nlen] != '=')
        nlen++;
      if (env != NULL) {
        char *name = strndup(n, nlen);
        if (name == NULL)
          rv = DB_ENOMEM;
        else if (wrap_strv_has(env, name))
          free(name);
        else
          rv = wrap_strv_take(env, name);
      }
    } else if (line[0] != '#' && files != NULL) {
      /* "target: dep dep ..." -- the separator is the first ": " or a
       * trailing ':'. */
      const char *sep = NULL;
      for (size_t i = 0; i < len; i++) {
        if (line[i] == ':' && (i + 1 == len || line[i + 1] == ' ')) {
          sep = line + i + 1;
          break;
        }
      }
      if (sep != NULL) {
        char *seg = strndup(sep, len - (size_t)(sep - line));
        const char *p = seg;
        char *tok;
        if (seg == NULL)
          return DB_ENOMEM;
        while (rv == 0 && (tok = next_token(&p)) != NULL) {
          char *abs = wrap_path_abs(tok, cwd);
          free(tok);
          if (abs == NULL)
            rv = DB_ENOMEM;
          else if (wrap_strv_has(files, abs))
            free(abs);
          else
            rv = wrap_strv_take(files, abs);
        }
        free(seg);
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  return rv;
}
