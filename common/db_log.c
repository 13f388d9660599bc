#include "db_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = -2; /* -2: not initialised yet */
static int g_fd = STDERR_FILENO;

static int level_from_env(void) {
  const char *s = getenv("CARGO_DISTBUILD_LOG");
  if (!s || !*s)
    return DB_LOG_INFO;
  if (!strcmp(s, "quiet"))
    return DB_LOG_ERROR - 1;
  if (!strcmp(s, "error"))
    return DB_LOG_ERROR;
  if (!strcmp(s, "warn"))
    return DB_LOG_WARN;
  if (!strcmp(s, "debug"))
    return DB_LOG_DEBUG;
  return DB_LOG_INFO;
}

void db_log_set_level(int level) {
  g_level = level;
}

void db_log_reset_level(void) {
  g_level = -2;
}

void db_log_set_fd(int fd) {
  g_fd = fd;
}

int db_log_level(void) {
  /* A benign race: every thread computes the same value. */
  if (g_level == -2)
    g_level = level_from_env();
  return g_level;
}

void db_log(int level, const char *component, const char *fmt, ...) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  char line[2048];
  struct timespec ts;
  struct tm tm;
  size_t n;
  int r;
  va_list ap;

  if (level > db_log_level())
    return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  r = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %-5s [%s] ",
               tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
               names[level < 0 ? 0 : (level > 3 ? 3 : level)], component);
  n = r < 0 ? 0 : (size_t)r;
  va_start(ap, fmt);
  r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  if (r > 0)
    n += (size_t)r < sizeof(line) - n - 1 ? (size_t)r : sizeof(line) - n - 2;
  line[n++] = '\n';
  /* One write(2) so concurrent lines do not interleave. */
  if (write(g_fd, line, n) < 0) {
    /* Nothing sensible to do if stderr is gone. */
  }
}
