/* Arena and filesystem helpers shared by the worker modules. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_err.h"
#include "worker_int.h"

struct wk_arena_blk {
  struct wk_arena_blk *next;
  max_align_t data[];
};

void *wk_arena_alloc(wk_arena *a, size_t n) {
  struct wk_arena_blk *b = calloc(1, sizeof(*b) + n);

  if (!b)
    return NULL;
  b->next = a->head;
  a->head = b;
  return b->data;
}

char *wk_arena_strdup(wk_arena *a, const char *s) {
  size_t n = strlen(s);
  char *p = wk_arena_alloc(a, n + 1);

  if (p)
    memcpy(p, s, n);
  return p;
}

int wk_pathf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  int r;

  va_start(ap, fmt);
  r = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return r < 0 || (size_t)r >= n ? DB_EINVAL : 0;
}

char *wk_arena_printf(wk_arena *a, const char *fmt, ...) {
  va_list ap;
  int n;
  char *p;

  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  p = wk_arena_alloc(a, (size_t)n + 1);
  if (!p)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

PbDigest *wk_arena_digest(wk_arena *a, const reapi_digest *d) {
  PbDigest *pb = wk_arena_alloc(a, sizeof(*pb));
  char *h;

  if (!pb)
    return NULL;
  build__bazel__remote__execution__v2__digest__init(pb);
  h = wk_arena_strdup(a, d->hash);
  if (!h)
    return NULL;
  pb->hash = h;
  pb->size_bytes = d->size;
  return pb;
}

void wk_arena_free(wk_arena *a) {
  while (a->head) {
    struct wk_arena_blk *n = a->head->next;
    free(a->head);
    a->head = n;
  }
}

Google__Protobuf__Timestamp *wk_now_ts(wk_arena *a) {
  Google__Protobuf__Timestamp *t = wk_arena_alloc(a, sizeof(*t));
  struct timespec ts;

  if (!t)
    return NULL;
  google__protobuf__timestamp__init(t);
  clock_gettime(CLOCK_REALTIME, &ts);
  t->seconds = ts.tv_sec;
  t->nanos = (int32_t)ts.tv_nsec;
  return t;
}

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw) {
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D)
    return rmdir(p) == 0 || errno == ENOENT ? 0 : 0;
  (void)st;
  unlink(p);
  return 0;
}

static int chmod_cb(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)ftw;
  if (flag == FTW_D && (st->st_mode & 0700) != 0700)
    chmod(p, (st->st_mode & 07777) | 0700);
  return 0;
}

int wk_rmrf(const char *path) {
  struct stat st;

  if (lstat(path, &st) != 0)
    return errno == ENOENT ? 0 : db_err_from_errno(errno);
  if (!S_ISDIR(st.st_mode))
    return unlink(path) == 0 ? 0 : db_err_from_errno(errno);
  /* Root ignores directory modes, an unprivileged worker does not. */
  if (geteuid() != 0)
    nftw(path, chmod_cb, 32, FTW_PHYS);
  nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
  return lstat(path, &st) == 0 ? DB_EIO : 0;
}

int wk_mkdirs(const char *path, int mode) {
  char buf[4096];
  size_t n = strlen(path);

  if (n == 0 || n >= sizeof(buf))
    return DB_EINVAL;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    buf[i] = '\0';
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST)
      return db_err_from_errno(errno);
    buf[i] = i == n ? '\0' : '/';
  }
  return 0;
}

int wk_relpath_ok(const char *rel, int allow_empty) {
  const char *p = rel;

  if (!rel)
    return 0;
  if (*rel == '\0')
    return allow_empty;
  if (*rel == '/')
    return 0;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0 || (len == 1 && p[0] == '.') ||
        (len == 2 && p[0] == '.' && p[1] == '.'))
      return 0;
    if (!e)
      break;
    p = e + 1;
    if (*p == '\0')
      return 0; /* trailing slash */
  }
  return 1;
}

int wk_copy_file(const char *src, const char *dst, int mode) {
  char buf[65536];
  int in = -1, out = -1;
  int rv = 0;
  ssize_t r;

  in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
  if (out < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  while ((r = read(in, buf, sizeof(buf))) > 0) {
    ssize_t off = 0;
    while (off < r) {
      ssize_t w = write(out, buf + off, (size_t)(r - off));
      if (w < 0) {
        if (errno == EINTR)
          continue;
        rv = db_err_from_errno(errno);
        goto out;
      }
      off += w;
    }
  }
  if (r < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  if (fchmod(out, (mode_t)mode) != 0)
    rv = db_err_from_errno(errno);
out:
  if (in >= 0)
    close(in);
  if (out >= 0 && close(out) != 0 && rv == 0)
    rv = DB_EIO;
  return rv;
}

int wk_read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return DB_EIO;
    got += (size_t)r;
  }
  return 0;
}

int wk_parse_size(const char *s, uint64_t *out) {
  char *end = NULL;
  unsigned long long v;
  uint64_t mul = 1;

  if (!s || !*s)
    return DB_EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0 || end == s)
    return DB_EINVAL;
  switch (*end) {
  case '\0':
    break;
  case 'k':
  case 'K':
    mul = 1ull << 10;
    break;
  case 'm':
  case 'M':
    mul = 1ull << 20;
    break;
  case 'g':
  case 'G':
    mul = 1ull << 30;
    break;
  case 't':
  case 'T':
    mul = 1ull << 40;
    break;
  default:
    return DB_EINVAL;
  }
  if (*end && end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB") &&
      strcmp(end + 1, "b"))
    return DB_EINVAL;
  *out = (uint64_t)v * mul;
  return 0;
}
