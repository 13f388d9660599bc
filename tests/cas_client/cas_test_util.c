/* See cas_test_util.h. */
#include "cas_test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double cas_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cas_test_server_start(const char *bin, const char *dir,
                          cas_test_server *s) {
  char pf[300];
  double t0;

  memset(s, 0, sizeof(*s));
  snprintf(s->root, sizeof(s->root), "%s/store", dir);
  snprintf(pf, sizeof(pf), "%s/port", dir);
  unlink(pf);
  s->pid = fork();
  if (s->pid < 0)
    return -1;
  if (s->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setenv("CARGO_DISTBUILD_LOG", "warn", 0);
    execl(bin, bin, "cas", "run", "--listen", "127.0.0.1:0", "--root", s->root,
          "--port-file", pf, (char *)NULL);
    _exit(127);
  }
  t0 = cas_test_now();
  while (cas_test_now() - t0 < 10.0) {
    FILE *f = fopen(pf, "r");
    int port = 0;
    if (f) {
      if (fscanf(f, "%d", &port) == 1 && port > 0) {
        fclose(f);
        s->port = port;
        snprintf(s->target, sizeof(s->target), "127.0.0.1:%d", port);
        return 0;
      }
      fclose(f);
    }
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
      s->pid = 0;
      return -1;
    }
    usleep(10000);
  }
  cas_test_server_stop(s);
  return -1;
}

void cas_test_server_stop(cas_test_server *s) {
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
      if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
        s->pid = 0;
        return;
      }
      usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
  }
}

char *cas_test_mkdtemp(const char *tag) {
  const char *t = getenv("TMPDIR");
  char *p;

  if (!t || !*t)
    t = "/tmp";
  if (asprintf(&p, "%s/%s_XXXXXX", t, tag) < 0)
    return NULL;
  if (!mkdtemp(p)) {
    free(p);
    return NULL;
  }
  return p;
}

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(p);
  return 0;
}

void cas_test_rmrf(const char *path) {
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static uint64_t xs(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

void cas_test_fill_random(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t i = 0;

  for (; i + 8 <= n; i += 8) {
    uint64_t v = xs(&s);
    memcpy(p + i, &v, 8);
  }
  for (; i < n; i++)
    p[i] = (uint8_t)xs(&s);
}

void cas_test_fill_text(uint8_t *p, size_t n, uint64_t seed) {
  static const char *const words[] = {
      "fn",     "let",   "mut",    "struct",  "impl",      "pub",    "return",
      "if",     "else",  "match",  "self",    "Some",      "None",   "Ok",
      "Err",    "usize", "u64",    "String",  "Vec",       "static", "const",
      "int",    "char",  "size_t", "uint8_t", "while",     "for",    "break",
      "buffer", "len",   "offset", "digest",  "request",   "status", "config",
      "error",  "=",     "+=",     "->",      "::",        "(",      ")",
      "{",      "}",     ";",      ",",       "&",         "*",      "0",
      "1",      "42",    "0x7f",   "// TODO", "/* note */"};
  const size_t nw = sizeof(words) / sizeof(words[0]);
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
  size_t i = 0;
  int col = 0, indent = 2;

  while (i < n) {
    uint64_t r = xs(&s);
    const char *w = words[r % nw];
    size_t wl = strlen(w);
    if (col == 0) {
      for (int k = 0; k < indent && i < n; k++)
        p[i++] = ' ';
      col = indent;
    }
    for (size_t k = 0; k < wl && i < n; k++)
      p[i++] = (uint8_t)w[k];
    col += (int)wl;
    if (i < n) {
      if (col > 60 || (r >> 32) % 11 == 0) {
        p[i++] = '\n';
        col = 0;
        indent = (int)((r >> 40) % 4) * 2;
      } else {
        p[i++] = ' ';
        col++;
      }
    }
  }
}

int cas_test_write(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  int rv = 0;

  if (!f)
    return -1;
  if (n && fwrite(p, 1, n, f) != n)
    rv = -1;
  if (fclose(f) != 0)
    rv = -1;
  return rv;
}

int cas_test_read(const char *path, uint8_t **p, size_t *n) {
  FILE *f = fopen(path, "rb");
  struct stat st;
  uint8_t *b;

  *p = NULL;
  *n = 0;
  if (!f)
    return -1;
  if (fstat(fileno(f), &st) != 0) {
    fclose(f);
    return -1;
  }
  b = malloc((size_t)st.st_size + 1);
  if (!b || fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    free(b);
    fclose(f);
    return -1;
  }
  fclose(f);
  *p = b;
  *n = (size_t)st.st_size;
  return 0;
}
