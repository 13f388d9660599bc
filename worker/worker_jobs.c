/* The worker's shared jobserver; see worker_jobs.h. */
#include "worker_jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"

#define MAX_TOKENS 4096u

struct wk_jobs {
  pthread_mutex_t mu;
  int fd; /* O_RDWR | O_NONBLOCK: both ends, kept for the worker's life */
  unsigned tokens;
  unsigned running; /* actions between begin and end */
  char path[4096];
};

/* Write n tokens ('+', as GNU make does). 0 or DB_ESYS. */
static int put_tokens(int fd, unsigned n) {
  char buf[256];
  memset(buf, '+', sizeof(buf));
  while (n > 0) {
    size_t k = n < sizeof(buf) ? n : sizeof(buf);
    ssize_t w = write(fd, buf, k);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return DB_ESYS;
    n -= (unsigned)w;
  }
  return 0;
}

int wk_jobs_new(const char *dir, unsigned tokens, wk_jobs **out) {
  wk_jobs *j;
  int rv = DB_EINVAL;

  *out = NULL;
  if (!dir || tokens < 1 || tokens > MAX_TOKENS)
    return DB_EINVAL;
  j = calloc(1, sizeof(*j));
  if (!j)
    return DB_ENOMEM;
  j->fd = -1;
  j->tokens = tokens;
  pthread_mutex_init(&j->mu, NULL);
  if (snprintf(j->path, sizeof(j->path), "%s/jobserver", dir) >=
      (int)sizeof(j->path))
    goto out;
  rv = DB_ESYS;
  /* A stale FIFO may still be open in a dead worker's orphans: a new one
   * keeps their token traffic out of ours. */
  if (unlink(j->path) < 0 && errno != ENOENT) {
    DB_ERROR("worker", "jobserver %s: %s", j->path, strerror(errno));
    goto out;
  }
  if (mkfifo(j->path, 0600) < 0 || chmod(j->path, 0666) < 0) {
    DB_ERROR("worker", "jobserver %s: %s", j->path, strerror(errno));
    goto out;
  }
  /* O_RDWR on a FIFO never blocks on open and keeps the pipe alive. */
  j->fd = open(j->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (j->fd < 0 || put_tokens(j->fd, tokens) != 0) {
    DB_ERROR("worker", "jobserver %s: %s", j->path, strerror(errno));
    goto out;
  }
  rv = 0;
out:
  if (rv == 0)
    *out = j;
  else
    wk_jobs_free(j);
  return rv;
}

void wk_jobs_free(wk_jobs *j) {
  if (!j)
    return;
  if (j->fd >= 0) {
    close(j->fd);
    unlink(j->path);
  }
  pthread_mutex_destroy(&j->mu);
  free(j);
}

const char *wk_jobs_path(const wk_jobs *j) {
  return j->path;
}

int wk_jobs_begin(wk_jobs *j) {
  char c;
  ssize_t r;
  pthread_mutex_lock(&j->mu);
  do
    r = read(j->fd, &c, 1);
  while (r < 0 && errno == EINTR);
  j->running++;
  pthread_mutex_unlock(&j->mu);
  return r == 1;
}

/* Tokens queued in the FIFO, or -1. */
static int queued(int fd) {
  int n = 0;
  return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

void wk_jobs_end(wk_jobs *j, int took) {
  int n;
  pthread_mutex_lock(&j->mu);
  if (took && put_tokens(j->fd, 1) != 0)
    DB_WARN("worker", "jobserver: cannot return a token: %s", strerror(errno));
  if (j->running > 0)
    j->running--;
  if (j->running == 0 && (n = queued(j->fd)) >= 0 && (unsigned)n != j->tokens) {
    /* Nobody holds a token now: anything but the full pool is a leak (an
     * action killed mid-build) or tampering. */
    DB_DEBUG("worker", "jobserver: %d token(s) queued, resetting to %u", n,
             j->tokens);
    if ((unsigned)n < j->tokens) {
      (void)put_tokens(j->fd, j->tokens - (unsigned)n);
    } else {
      char buf[256];
      unsigned extra = (unsigned)n - j->tokens;
      while (extra > 0) {
        ssize_t r = read(j->fd, buf, extra < sizeof(buf) ? extra : sizeof(buf));
        if (r <= 0)
          break;
        extra -= (unsigned)r;
      }
    }
  }
  pthread_mutex_unlock(&j->mu);
}

int wk_jobs_available(wk_jobs *j) {
  int n;
  pthread_mutex_lock(&j->mu);
  n = queued(j->fd);
  pthread_mutex_unlock(&j->mu);
  return n < 0 ? DB_ESYS : n;
}
