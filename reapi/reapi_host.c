/* Machine identity for platform matching; see reapi_host.h. */
#include "reapi_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "db_err.h"
#include "reapi_digest.h"

int reapi_host_isa(char *buf, size_t len) {
  struct utsname u;
  const char *m;
  int n;
  if (uname(&u) != 0)
    return DB_ESYS;
  m = strcmp(u.machine, "x86_64") == 0 ? "x86-64" : u.machine;
  n = snprintf(buf, len, "%s", m);
  return n < 0 || (size_t)n >= len ? DB_EINVAL : 0;
}

/* The fields of one cpuinfo block that the identity is made of. */
enum {
  F_VENDOR,
  F_FAMILY,
  F_MODEL,
  F_FLAGS,
  F_IMPL,
  F_ARCH,
  F_VAR,
  F_PART,
  F_FEAT,
  F_N
};
static const char *const field_names[F_N] = {
    "vendor_id",        "cpu family",  "model",    "flags",   "CPU implementer",
    "CPU architecture", "CPU variant", "CPU part", "Features"};

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The first 16 hex digits of the SHA-256 of the sorted, space-separated
 * flags: the order the kernel lists them in must not matter. */
static int flags_hash(const char *flags, char out[17]) {
  char *copy = strdup(flags), *joined = NULL, *save = NULL, *t;
  char **tok = NULL;
  size_t n = 0, cap = 0, off = 0;
  reapi_digest d;
  int rv = copy ? 0 : DB_ENOMEM;

  for (t = copy ? strtok_r(copy, " \t", &save) : NULL; t && rv == 0;
       t = strtok_r(NULL, " \t", &save)) {
    if (n == cap) {
      char **g = realloc(tok, (cap ? cap * 2 : 64) * sizeof(*tok));
      if (g == NULL) {
        rv = DB_ENOMEM;
        break;
      }
      tok = g;
      cap = cap ? cap * 2 : 64;
    }
    tok[n++] = t;
  }
  if (rv == 0 && n > 0)
    qsort(tok, n, sizeof(*tok), cmp_str);
  if (rv == 0 && (joined = malloc(strlen(flags) + 2)) == NULL)
    rv = DB_ENOMEM;
  for (size_t i = 0; i < n && rv == 0; i++) {
    size_t l = strlen(tok[i]);
    memcpy(joined + off, tok[i], l);
    joined[off + l] = ' ';
    off += l + 1;
  }
  if (rv == 0) {
    reapi_digest_of(joined, off, &d);
    memcpy(out, d.hash, 16);
    out[16] = '\0';
  }
  free(joined);
  free(tok);
  free(copy);
  return rv;
}

/* Copy a field value into dst, keeping it usable inside a property value
 * and a log line: letters, digits and '.' stay, the rest becomes '_'. */
static void clean(char *dst, size_t len, const char *v, size_t n) {
  size_t i;
  for (i = 0; i < n && i + 1 < len; i++) {
    char c = v[i];
    dst[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '.'
                 ? c
                 : '_';
  }
  dst[i] = '\0';
}

int reapi_host_cpu_parse(const char *cpuinfo, char *buf, size_t len) {
  const char *val[F_N] = {0};
  size_t vlen[F_N] = {0};
  char part[F_N][64], hash[17];
  const char *p = cpuinfo, *fl;
  int rv, n, seen = 0;

  while (*p) {
    const char *eol = strchr(p, '\n'), *colon;
    size_t ll = eol ? (size_t)(eol - p) : strlen(p);
    if (ll == 0) {
      if (seen) /* the end of the first processor's block */
        break;
    } else if ((colon = memchr(p, ':', ll)) != NULL) {
      size_t kl = (size_t)(colon - p);
      while (kl > 0 && (p[kl - 1] == ' ' || p[kl - 1] == '\t'))
        kl--;
      for (int f = 0; f < F_N; f++)
        if (val[f] == NULL && strlen(field_names[f]) == kl &&
            strncmp(p, field_names[f], kl) == 0) {
          const char *v = colon + 1;
          while (v < p + ll && (*v == ' ' || *v == '\t'))
            v++;
          val[f] = v;
          vlen[f] = (size_t)(p + ll - v);
        }
      seen = 1;
    }
    p += ll + (eol ? 1 : 0);
  }
  for (int f = 0; f < F_N; f++)
    clean(part[f], sizeof(part[f]), val[f] ? val[f] : "", vlen[f]);
  if (val[F_VENDOR] && val[F_FAMILY] && val[F_MODEL])
    n = F_FLAGS;
  else if (val[F_IMPL] && val[F_PART])
    n = F_FEAT;
  else
    return DB_EUNSUPP;
  fl = val[n] ? val[n] : "";
  {
    char *flags = strndup(fl, vlen[n]);
    if (flags == NULL)
      return DB_ENOMEM;
    rv = flags_hash(flags, hash);
    free(flags);
  }
  if (rv != 0)
    return rv;
  if (n == F_FLAGS)
    n = snprintf(buf, len, "%s-%s-%s-%s", part[F_VENDOR], part[F_FAMILY],
                 part[F_MODEL], hash);
  else
    n = snprintf(buf, len, "arm-%s-%s-%s-%s-%s", part[F_IMPL], part[F_ARCH],
                 part[F_VAR], part[F_PART], hash);
  return n < 0 || (size_t)n >= len ? DB_EINVAL : 0;
}

int reapi_host_cpu(char *buf, size_t len) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char *text = NULL;
  size_t n = 0, cap = 0;
  int rv = f ? 0 : DB_EIO;

  while (rv == 0) {
    size_t got;
    if (cap - n < 4096) {
      char *g = realloc(text, cap + 65536);
      if (g == NULL) {
        rv = DB_ENOMEM;
        break;
      }
      text = g;
      cap += 65536;
    }
    got = fread(text + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) {
      if (ferror(f))
        rv = DB_EIO;
      break;
    }
  }
  if (rv == 0 && text == NULL)
    rv = DB_EIO;
  if (rv == 0) {
    text[n] = '\0';
    rv = reapi_host_cpu_parse(text, buf, len);
  }
  if (f)
    fclose(f);
  free(text);
  return rv;
}
