/* Helpers shared by the wrapper modules; see wrap_util.h. */
#include "wrap_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db_err.h"

int wrap_strv_take(wrap_strv *sv, char *s) {
  if (s == NULL)
    return DB_ENOMEM;
  if (sv->n + 2 > sv->cap) {
    size_t cap = sv->cap ? sv->cap * 2 : 16;
    char **v = realloc(sv->v, cap * sizeof(*v));
    if (v == NULL) {
      free(s);
      return DB_ENOMEM;
    }
    sv->v = v;
    sv->cap = cap;
  }
  sv->v[sv->n++] = s;
  sv->v[sv->n] = NULL;
  return 0;
}

int wrap_strv_add(wrap_strv *sv, const char *s) {
  return wrap_strv_take(sv, strdup(s));
}

int wrap_strv_has(const wrap_strv *sv, const char *s) {
  for (size_t i = 0; i < sv->n; i++)
    if (strcmp(sv->v[i], s) == 0)
      return 1;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void wrap_strv_sort_uniq(wrap_strv *sv) {
  size_t j = 0;
  if (sv->n == 0)
    return;
  qsort(sv->v, sv->n, sizeof(char *), cmp_str);
  for (size_t i = 1; i < sv->n; i++) {
    if (strcmp(sv->v[i], sv->v[j]) == 0)
      free(sv->v[i]);
    else
      sv->v[++j] = sv->v[i];
  }
  sv->n = j + 1;
  sv->v[sv->n] = NULL;
}

void wrap_strv_free(wrap_strv *sv) {
  for (size_t i = 0; i < sv->n; i++)
    free(sv->v[i]);
  free(sv->v);
  sv->v = NULL;
  sv->n = sv->cap = 0;
}

char *wrap_fmt(const char *fmt, ...) {
  va_list ap;
  char *s = NULL;
  va_start(ap, fmt);
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

char *wrap_path_join(const char *a, const char *b) {
  size_t la = strlen(a);
  while (la > 0 && a[la - 1] == '/')
    la--;
  while (*b == '/')
    b++;
  if (*b == '\0')
    return la ? strndup(a, la) : strdup("/");
  return wrap_fmt("%.*s/%s", (int)la, a, b);
}

char *wrap_path_abs(const char *path, const char *cwd) {
  char buf[PATH_MAX];
  char *joined;
  char *out;
  size_t o = 0;
  if (path[0] == '/') {
    joined = strdup(path);
  } else {
    if (cwd == NULL) {
      if (getcwd(buf, sizeof(buf)) == NULL)
        return NULL;
      cwd = buf;
    }
    joined = wrap_fmt("%s/%s", cwd, path);
  }
  if (joined == NULL)
    return NULL;
  out = malloc(strlen(joined) + 2);
  if (out == NULL) {
    free(joined);
    return NULL;
  }
  /* Walk the components, keeping a stack in out. */
  for (char *p = joined; *p;) {
    char *seg;
    size_t len;
    while (*p == '/')
      p++;
    if (*p == '\0')
      break;
    seg = p;
    while (*p && *p != '/')
      p++;
    len = (size_t)(p - seg);
    if (len == 1 && seg[0] == '.')
      continue;
    if (len == 2 && seg[0] == '.' && seg[1] == '.') {
      while (o > 0 && out[o - 1] != '/')
        o--;
      if (o > 0)
        o--;
      continue;
    }
    out[o++] = '/';
    memcpy(out + o, seg, len);
    o += len;
  }
  if (o == 0)
    out[o++] = '/';
  out[o] = '\0';
  free(joined);
  return out;
}

int wrap_path_under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (strcmp(dir, "/") == 0)
    return path[0] == '/';
  if (strncmp(path, dir, n) != 0)
    return 0;
  return path[n] == '\0' || path[n] == '/';
}

void wrap_path_common(char *a, const char *b) {
  size_t i = 0, last = 0;
  while (a[i] && a[i] == b[i]) {
    if (a[i] == '/')
      last = i;
    i++;
  }
  if ((a[i] == '\0' || a[i] == '/') && (b[i] == '\0' || b[i] == '/'))
    last = i;
  if (last == 0) {
    a[0] = '/';
    a[1] = '\0';
    return;
  }
  a[last] = '\0';
}

const char *wrap_path_rel(const char *path, const char *root) {
  size_t n = strlen(root);
  if (!wrap_path_under(path, root))
    return NULL;
  if (strcmp(root, "/") == 0)
    return path + 1;
  return path[n] == '/' ? path + n + 1 : path + n;
}

int wrap_read_file(const char *path, size_t max, char **out, size_t *len) {
  int fd = -1, rv = 0;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  *out = NULL;
  if (len)
    *len = 0;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? DB_ENOTFOUND : DB_EIO;
  for (;;) {
    ssize_t r;
    if (n + 1 >= cap) {
      char *nb;
      cap = cap ? cap * 2 : 4096;
      nb = realloc(buf, cap);
      if (nb == NULL) {
        rv = DB_ENOMEM;
        goto out;
      }
      buf = nb;
    }
    r = read(fd, buf + n, cap - n - 1);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      rv = DB_EIO;
      goto out;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (max && n > max) {
      rv = DB_ETOOBIG;
      goto out;
    }
  }
  if (buf == NULL) {
    buf = malloc(1);
    if (buf == NULL) {
      rv = DB_ENOMEM;
      goto out;
    }
  }
  buf[n] = '\0';
  *out = buf;
  buf = NULL;
  if (len)
    *len = n;
out:
  free(buf);
  close(fd);
  return rv;
}

int wrap_mkdirs(const char *path) {
  char *p = strdup(path);
  int rv = 0;
  if (p == NULL)
    return DB_ENOMEM;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        rv = db_err_from_errno(errno);
        break;
      }
      *s = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return rv;
}

int wrap_write_atomic(const char *path, const void *data, size_t len,
                      int mode) {
  char *tmp = NULL, *dir = NULL, *slash;
  int fd = -1, rv = 0;
  const char *p = data;
  dir = strdup(path);
  if (dir == NULL)
    return DB_ENOMEM;
  slash = strrchr(dir, '/');
  if (slash != NULL && slash != dir) {
    *slash = '\0';
    (void)wrap_mkdirs(dir);
  }
  tmp = wrap_fmt("%s.tmp.%ld", path, (long)getpid());
  if (tmp == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      rv = DB_EIO;
      goto out;
    }
    p += w;
    len -= (size_t)w;
  }
  if (fchmod(fd, (mode_t)mode) != 0 || close(fd) != 0) {
    fd = -1;
    rv = DB_EIO;
    goto out;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    rv = db_err_from_errno(errno);
out:
  if (fd >= 0)
    close(fd);
  if (rv != 0 && tmp != NULL)
    unlink(tmp);
  free(tmp);
  free(dir);
  return rv;
}

char *wrap_cache_dir(void) {
  const char *e = getenv("CARGO_DISTBUILD_CACHE_DIR");
  char *d;
  if (e != NULL && *e)
    d = strdup(e);
  else if ((e = getenv("XDG_CACHE_HOME")) != NULL && *e)
    d = wrap_path_join(e, "cargo-distbuild");
  else if ((e = getenv("HOME")) != NULL && *e)
    d = wrap_fmt("%s/.cache/cargo-distbuild", e);
  else
    d = strdup("/tmp/cargo-distbuild-cache");
  if (d != NULL && wrap_mkdirs(d) != 0) {
    free(d);
    d = NULL;
  }
  return d;
}

int64_t wrap_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int wrap_write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return DB_EIO;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

int wrap_wait_code(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

static int has(const uint8_t *p, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(p + i, needle, k) == 0)
      return 1;
  return 0;
}

int wrap_rustc_metadata_notice(const uint8_t *p, size_t n) {
  return n > 0 && p[0] == '{' && has(p, n, "\"$message_type\":\"artifact\"") &&
         has(p, n, "\"emit\":\"metadata\"");
}

size_t wrap_rustc_metadata_prefix(const uint8_t *p, size_t n) {
  for (size_t off = 0; off < n;) {
    const uint8_t *nl = memchr(p + off, '\n', n - off);
    if (nl == NULL)
      return 0; /* a notice always ends its line */
    size_t end = (size_t)(nl - p) + 1;
    if (wrap_rustc_metadata_notice(p + off, end - off))
      return end;
    off = end;
  }
  return 0;
}

const char *wrap_fmt_bytes(uint64_t n, char *buf, size_t buflen) {
  if (n < 1024)
    snprintf(buf, buflen, "%llu B", (unsigned long long)n);
  else if (n < 1024 * 1024)
    snprintf(buf, buflen, "%.1f KB", (double)n / 1024.0);
  else if (n < 1024ull * 1024 * 1024)
    snprintf(buf, buflen, "%.1f MB", (double)n / (1024.0 * 1024.0));
  else
    snprintf(buf, buflen, "%.2f GB", (double)n / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

int wrap_progress_export(int fd) {
  struct stat st;
  char v[96];
  int nfd = fcntl(fd, F_DUPFD, 3); /* F_DUPFD: not close-on-exec */
  if (nfd < 0)
    return DB_ESYS;
  if (fstat(nfd, &st) != 0) {
    close(nfd);
    return DB_ESYS;
  }
  snprintf(v, sizeof(v), "%d:%llu:%llu", nfd, (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino);
  setenv(WRAP_PROGRESS_ENV, v, 1);
  return nfd;
}

int wrap_progress_fd(int *tty) {
  const char *e = getenv(WRAP_PROGRESS_ENV);
  unsigned long long dev, ino;
  struct stat st;
  int fd = STDERR_FILENO, n;
  if (e != NULL && sscanf(e, "%d:%llu:%llu", &n, &dev, &ino) == 3 && n > 2 &&
      fstat(n, &st) == 0 && (unsigned long long)st.st_dev == dev &&
      (unsigned long long)st.st_ino == ino)
    fd = n;
  *tty = isatty(fd);
  return fd;
}
