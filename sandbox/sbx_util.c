/*
 * Async-signal-safe helpers shared by the parent and the cloned child.
 * Nothing here allocates memory or takes a lock.
 */
#include "sbx_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

int sbx_util_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int sbx_util_append_uint(char *dst, size_t cap, unsigned v) {
  char digits[12];
  size_t n = 0, len = strlen(dst);
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0);
  if (len + n + 1 > cap)
    return -ENAMETOOLONG;
  while (n > 0)
    dst[len++] = digits[--n];
  dst[len] = '\0';
  return 0;
}

size_t sbx_util_strlcpy(char *dst, const char *src, size_t cap) {
  size_t n = strlen(src);
  if (cap > 0) {
    size_t c = n < cap - 1 ? n : cap - 1;
    memcpy(dst, src, c);
    dst[c] = '\0';
  }
  return n;
}

int sbx_util_join(char *dst, size_t cap, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + lb + 1 > cap)
    return -ENAMETOOLONG;
  memcpy(dst, a, la);
  memcpy(dst + la, b, lb + 1);
  return 0;
}

int sbx_util_mkdir_p(const char *path, mode_t mode) {
  char buf[4096];
  size_t i, n = strlen(path);

  if (n == 0 || n >= sizeof(buf))
    return -ENAMETOOLONG;
  memcpy(buf, path, n + 1);
  for (i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    buf[i] = '\0';
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
      return -errno;
    if (i < n)
      buf[i] = '/';
  }
  return 0;
}

void sbx_util_close_except(const int *keep, size_t n) {
  int sorted[16];
  size_t m = 0, i, j;
  unsigned int lo = 0;

  for (i = 0; i < n && m < 16; i++) {
    if (keep[i] < 0)
      continue;
    /* Insertion sort, dropping duplicates. */
    for (j = m; j > 0 && sorted[j - 1] > keep[i]; j--)
      sorted[j] = sorted[j - 1];
    if (j > 0 && sorted[j - 1] == keep[i]) {
      for (; j < m; j++)
        sorted[j] = sorted[j + 1];
      continue;
    }
    sorted[j] = keep[i];
    m++;
  }
  for (i = 0; i <= m; i++) {
    unsigned int hi = i < m ? (unsigned int)sorted[i] : ~0U;
    if (hi > lo) {
      if (syscall(SYS_close_range, lo, hi - 1, 0) < 0) {
        /* Pre-5.9 kernel: close one by one up to the fd limit. */
        struct rlimit rl;
        unsigned int fd, top = hi;
        if (i == m) {
          top = 65536;
          if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top)
            top = (unsigned int)rl.rlim_cur;
        }
        for (fd = lo; fd < top; fd++)
          close((int)fd);
      }
    }
    if (i < m)
      lo = (unsigned int)sorted[i] + 1;
  }
}

int sbx_util_write_str(const char *path, const char *s) {
  int fd, rc;
  fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  rc = sbx_util_write_all(fd, s, strlen(s));
  close(fd);
  return rc;
}

ssize_t sbx_util_read_str(const char *path, char *buf, size_t cap) {
  size_t off = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  while (off + 1 < cap) {
    ssize_t n = read(fd, buf + off, cap - 1 - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    if (n == 0)
      break;
    off += (size_t)n;
  }
  close(fd);
  buf[off] = '\0';
  return (ssize_t)off;
}

uint64_t sbx_util_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sbx_util_set_name(const char *name) {
  (void)syscall(SYS_prctl, PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

pid_t sbx_util_clone(unsigned long flags, int *pidfd) {
  /* Raw clone without CLONE_VM behaves like fork() but skips glibc's
   * atfork handlers and malloc locking, which is what we want in a copy
   * of a multi-threaded process that only makes system calls afterwards.
   * x86_64 / aarch64 argument order: flags, stack, parent_tid, child_tid,
   * tls. */
  if (pidfd) {
    *pidfd = -1;
    flags |= CLONE_PIDFD;
  }
  return (pid_t)syscall(SYS_clone, flags, NULL, pidfd, NULL, NULL);
}

int sbx_util_fail(struct sbx_msg *m, int step, int err, const char *detail) {
  m->kind = SBX_MSG_ERROR;
  m->step = step;
  m->err = err;
  m->detail[0] = '\0';
  if (detail)
    sbx_util_strlcpy(m->detail, detail, sizeof(m->detail));
  return -err;
}

void sbx_util_msg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}
