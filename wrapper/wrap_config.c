/* Wrapper configuration lookup; see wrap_config.h. */
#include "wrap_config.h"

#include <stdlib.h>
#include <string.h>

#include "db_err.h"

enum { K_SCHEDULER, K_TLS_CA, K_TLS_CERT, K_TLS_KEY, K_HEADERS, K_N };

/* The settings, indexed by K_*. */
static const struct setting {
  const char *key;
  const char *env;
} k_settings[K_N] = {
    {"scheduler", "CARGO_DISTBUILD_SCHEDULER"},
    {"tls_ca", "CARGO_DISTBUILD_TLS_CA"},
    {"tls_cert", "CARGO_DISTBUILD_TLS_CERT"},
    {"tls_key", "CARGO_DISTBUILD_TLS_KEY"},
    {"remote_headers", "CARGO_DISTBUILD_REMOTE_HEADERS"},
};

/* ---- the TOML subset: `key = "string"` and `key = ["a", "b"]` ---- */

static const char *skip_blank(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* Blanks, line ends and comments, as between the elements of an array. */
static const char *skip_space(const char *p) {
  for (;;) {
    p = skip_blank(p);
    if (*p == '#') {
      while (*p && *p != '\n')
        p++;
    } else if (*p == '\n' || *p == '\r') {
      p++;
    } else {
      return p;
    }
  }
}

/* The string at *pp, on one line: "basic" (escapes \" \\ \b \t \n \f \r)
 * or 'literal'. Appended to out; *pp moves past the closing quote. */
static int parse_string(const char **pp, wrap_strv *out) {
  const char *p = *pp, *e;
  char q = *p++, *s, *o;

  if (q != '"' && q != '\'')
    return DB_EINVAL;
  for (e = p; *e && *e != q && *e != '\n'; e++) {
    if (q == '"' && *e == '\\') {
      if (e[1] == '\0' || e[1] == '\n')
        break;
      e++;
    }
  }
  if (*e != q)
    return DB_EINVAL;
  s = o = malloc((size_t)(e - p) + 1);
  if (s == NULL)
    return DB_ENOMEM;
  for (; p < e; p++) {
    char ch = *p;
    if (q == '"' && ch == '\\') {
      const char *from = "\"\\btnfr", *to = "\"\\\b\t\n\f\r";
      const char *hit = strchr(from, *++p);
      if (hit == NULL) { /* \u escapes and the like: not needed here */
        free(s);
        return DB_EINVAL;
      }
      ch = to[hit - from];
    }
    *o++ = ch;
  }
  *o = '\0';
  *pp = e + 1;
  return wrap_strv_take(out, s);
}

/* The value after `key =`: a string, or an array of strings. */
static int parse_value(const char *p, wrap_strv *out) {
  int rv;

  if (*p != '[') {
    rv = parse_string(&p, out);
    p = skip_blank(p);
    if (rv == 0 && *p != '\0' && *p != '#' && *p != '\n' && *p != '\r')
      rv = DB_EINVAL; /* something after the string */
    return rv;
  }
  p = skip_space(p + 1);
  while (*p != ']') {
    rv = parse_string(&p, out);
    if (rv != 0)
      return rv;
    p = skip_space(p);
    if (*p == ',')
      p = skip_space(p + 1);
    else if (*p != ']')
      return DB_EINVAL;
  }
  return 0;
}

int wrap_config_parse_key(const char *text, const char *key, wrap_strv *out) {
  size_t klen = strlen(key);
  const char *l = text;

  while (l != NULL && *l) {
    const char *nl = strchr(l, '\n');
    const char *p = skip_blank(l);
    if (strncmp(p, key, klen) == 0) {
      p = skip_blank(p + klen);
      if (*p == '=') {
        int rv = parse_value(skip_blank(p + 1), out);
        return rv == 0 ? 1 : rv;
      }
    }
    l = nl ? nl + 1 : NULL;
  }
  return 0;
}

static const char *strip_grpc(const char *target) {
  return strncmp(target, "grpc://", 7) == 0 ? target + 7 : target;
}

char *wrap_config_parse_scheduler(const char *text) {
  wrap_strv v = {0};
  char *s = NULL;

  if (wrap_config_parse_key(text, "scheduler", &v) == 1 && v.n == 1)
    s = strdup(strip_grpc(v.v[0]));
  wrap_strv_free(&v);
  return s;
}

/* ---- lookup ---- */

/* Store setting k's value v (from src: a variable or a file; relative
 * paths against base, NULL = getcwd). An empty value sets nothing, so
 * a file can hide what a more general one says. */
static int take(wrap_config *cfg, int k, const wrap_strv *v, const char *base,
                const char *src, char **why) {
  const char *s = v->n > 0 ? v->v[0] : "";
  char **field = k == K_TLS_CA     ? &cfg->tls_ca
                 : k == K_TLS_CERT ? &cfg->tls_cert
                                   : &cfg->tls_key;

  if (k == K_HEADERS) {
    for (size_t i = 0; i < v->n; i++) {
      char *name = NULL, *value = NULL;
      int rv = rpc_client_header_parse(v->v[i], &name, &value);
      free(name);
      free(value);
      if (rv == DB_EINVAL)
        *why = wrap_fmt("%s: bad remote header '%.*s=...': want name=value, "
                        "the name of [A-Za-z0-9-_.] and none the transport "
                        "sets (grpc-*, content-type, te, ...)",
                        src, (int)strcspn(v->v[i], "="), v->v[i]);
      if (rv == 0)
        rv = wrap_strv_add(&cfg->headers, v->v[i]);
      if (rv != 0)
        return rv;
    }
    return 0;
  }
  if (*s == '\0')
    return 0;
  if (k == K_SCHEDULER) {
    cfg->scheduler = strdup(strip_grpc(s));
    return cfg->scheduler ? 0 : DB_ENOMEM;
  }
  *field = wrap_path_abs(s, base);
  return *field ? 0 : DB_ENOMEM;
}

/* The environment's value of setting k into v: headers one per line
 * (blank lines and surrounding blanks ignored). */
static int env_value(int k, const char *e, wrap_strv *v) {
  if (k != K_HEADERS)
    return wrap_strv_add(v, e);
  while (*e) {
    const char *end = strchr(e, '\n'), *b;
    if (end == NULL)
      end = e + strlen(e);
    b = end;
    e = skip_blank(e);
    while (b > e && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
      b--;
    if (b > e) {
      char *line = strndup(e, (size_t)(b - e));
      int rv = line ? wrap_strv_take(v, line) : DB_ENOMEM;
      if (rv != 0)
        return rv;
    }
    e = *end ? end + 1 : end;
  }
  return 0;
}

/* The settings not yet done that file path has (relative paths against
 * base). An absent or unreadable file has none. */
static int from_file(wrap_config *cfg, const char *path, const char *base,
                     int *done, char **why) {
  char *text = NULL;
  int rv = 0;

  if (wrap_read_file(path, 1u << 20, &text, NULL) != 0)
    return 0;
  for (int k = 0; k < K_N && rv == 0; k++) {
    wrap_strv v = {0};
    if (done[k])
      continue;
    rv = wrap_config_parse_key(text, k_settings[k].key, &v);
    if (rv == DB_EINVAL)
      *why = wrap_fmt("%s: malformed value of %s (want a string%s)", path,
                      k_settings[k].key,
                      k == K_HEADERS ? " or an array of strings" : "");
    if (rv == 1) {
      char *src = wrap_fmt("%s (%s)", path, k_settings[k].key);
      rv = src ? take(cfg, k, &v, base, src, why) : DB_ENOMEM;
      done[k] = 1;
      free(src);
      if (rv == 0 && k == K_HEADERS &&
          (cfg->headers_file = wrap_path_abs(path, NULL)) == NULL)
        rv = DB_ENOMEM;
    }
    wrap_strv_free(&v);
  }
  free(text);
  return rv;
}

static int all_done(const int *done) {
  for (int k = 0; k < K_N; k++)
    if (!done[k])
      return 0;
  return 1;
}

int wrap_config_load(const char *cwd, wrap_config *cfg, char **why) {
  int done[K_N] = {0}, rv = 0;
  char *dir = NULL, *f = NULL;
  const char *e;

  memset(cfg, 0, sizeof(*cfg));
  *why = NULL;
  for (int k = 0; k < K_N && rv == 0; k++) {
    wrap_strv v = {0};
    e = getenv(k_settings[k].env);
    if (e == NULL || *e == '\0')
      continue;
    rv = env_value(k, e, &v);
    if (rv == 0)
      rv = take(cfg, k, &v, cwd, k_settings[k].env, why);
    done[k] = 1;
    wrap_strv_free(&v);
  }
  /* The headers' file as `cargo distbuild` found it (rather than their
   * values in the environment, where every build script would see them). */
  e = getenv(WRAP_HEADERS_FILE_ENV);
  if (rv == 0 && !done[K_HEADERS] && e != NULL && *e) {
    int only[K_N];
    for (int k = 0; k < K_N; k++)
      only[k] = k != K_HEADERS;
    rv = from_file(cfg, e, NULL, only, why);
    done[K_HEADERS] = 1;
  }
  /* .distbuild/config.toml here and in every parent directory. */
  dir = rv == 0 ? wrap_path_abs(cwd ? cwd : ".", NULL) : NULL;
  while (rv == 0 && dir != NULL && !all_done(done)) {
    char *slash;
    f = wrap_path_join(dir, ".distbuild/config.toml");
    rv = f ? from_file(cfg, f, dir, done, why) : DB_ENOMEM;
    free(f);
    slash = strrchr(dir, '/');
    if (slash == NULL || strcmp(dir, "/") == 0)
      break;
    if (slash == dir)
      slash[1] = '\0';
    else
      *slash = '\0';
  }
  free(dir);
  dir = NULL;
  if (rv == 0 && !all_done(done)) {
    if ((e = getenv("XDG_CONFIG_HOME")) != NULL && *e)
      dir = wrap_fmt("%s/cargo-distbuild", e);
    else if ((e = getenv("HOME")) != NULL && *e)
      dir = wrap_fmt("%s/.config/cargo-distbuild", e);
    f = dir ? wrap_path_join(dir, "config.toml") : NULL;
    if (f != NULL)
      rv = from_file(cfg, f, dir, done, why);
    free(f);
    free(dir);
  }
  if (rv == 0 && cfg->scheduler == NULL) {
    cfg->scheduler = strdup(WRAP_DEFAULT_SCHEDULER);
    cfg->scheduler_default = 1;
    if (cfg->scheduler == NULL)
      rv = DB_ENOMEM;
  }
  cfg->channel.tls_ca_file = cfg->tls_ca;
  cfg->channel.tls_cert_file = cfg->tls_cert;
  cfg->channel.tls_key_file = cfg->tls_key;
  cfg->channel.headers = (const char *const *)cfg->headers.v;
  if (rv != 0 && *why == NULL)
    *why = wrap_fmt("configuration: %s", db_strerror(rv));
  return rv;
}

void wrap_config_clear(wrap_config *cfg) {
  free(cfg->scheduler);
  free(cfg->tls_ca);
  free(cfg->tls_cert);
  free(cfg->tls_key);
  free(cfg->headers_file);
  wrap_strv_free(&cfg->headers);
  memset(cfg, 0, sizeof(*cfg));
}

static int export_values(const char *const *val) {
  for (int k = 0; k < K_N; k++)
    if (val[k] != NULL && setenv(k_settings[k].env, val[k], 1) != 0)
      return DB_ENOMEM;
  return 0;
}

int wrap_config_export(const wrap_config *cfg) {
  const char *val[K_N] = {cfg->scheduler_default ? NULL : cfg->scheduler,
                          cfg->tls_ca, cfg->tls_cert, cfg->tls_key, NULL};
  char *headers = NULL;
  size_t len = 0;
  int rv = 0;

  if (cfg->headers_file != NULL) {
    if (setenv(WRAP_HEADERS_FILE_ENV, cfg->headers_file, 1) != 0)
      return DB_ENOMEM;
    return export_values(val);
  }
  for (size_t i = 0; i < cfg->headers.n; i++)
    len += strlen(cfg->headers.v[i]) + 1;
  if (len > 0) {
    headers = calloc(1, len);
    if (headers == NULL)
      return DB_ENOMEM;
    for (size_t i = 0; i < cfg->headers.n; i++) {
      if (i > 0)
        strcat(headers, "\n");
      strcat(headers, cfg->headers.v[i]);
    }
    val[K_HEADERS] = headers;
  }
  rv = export_values(val);
  free(headers);
  return rv;
}
