/* Front <-> client server wire format; see wrap_sock.h. */
#include "wrap_sock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "db_err.h"

extern char **environ;

static const char REQ_MAGIC[4] = {'D', 'B', 'W', '1'};

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static int inheritable(int fd) {
  int fl = fcntl(fd, F_GETFD);
  return fl >= 0 && !(fl & FD_CLOEXEC);
}

/* The descriptors exec would have passed on to rustc, in ascending order. */
static int collect_fds(int *fds) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) {
    for (int f = 0; f < 256 && n < WRAP_SOCK_MAX_FDS; f++)
      if (inheritable(f))
        fds[n++] = f;
    return n;
  }
  for (struct dirent *de; (de = readdir(d)) != NULL;) {
    char *end;
    long f = strtol(de->d_name, &end, 10);
    if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end != '\0' ||
        f >= WRAP_SOCK_MAX_FD_NUM || f == dirfd(d) || !inheritable((int)f))
      continue;
    if (n == WRAP_SOCK_MAX_FDS)
      break;
    /* insertion keeps them sorted; there are only a handful */
    int i = n++;
    while (i > 0 && fds[i - 1] > f) {
      fds[i] = fds[i - 1];
      i--;
    }
    fds[i] = (int)f;
  }
  closedir(d);
  return n;
}

/* Serialize the request; *out malloc'd. */
static int encode(int argc, char **argv, const int *fds, int nfds,
                  uint8_t **out, size_t *out_len) {
  char cwd[4096];
  size_t len = 8 + 4 + 4 * (size_t)nfds + 12, envc = 0;
  uint8_t *buf, *p;
  mode_t um;
  if (getcwd(cwd, sizeof(cwd)) == NULL)
    return DB_EIO;
  len += strlen(cwd) + 1;
  for (int i = 0; i < argc; i++)
    len += strlen(argv[i]) + 1;
  for (char **e = environ; e && *e; e++, envc++)
    len += strlen(*e) + 1;
  if (len - 8 > WRAP_SOCK_MAX_REQ ||
      (size_t)argc + envc > WRAP_SOCK_MAX_STRINGS)
    return DB_ETOOBIG;
  buf = malloc(len);
  if (buf == NULL)
    return DB_ENOMEM;
  um = umask(022);
  umask(um);
  memcpy(buf, REQ_MAGIC, 4);
  put_u32(buf + 4, (uint32_t)(len - 8));
  p = buf + 8;
  put_u32(p, (uint32_t)nfds);
  p += 4;
  for (int i = 0; i < nfds; i++, p += 4)
    put_u32(p, (uint32_t)fds[i]);
  put_u32(p, (uint32_t)um);
  put_u32(p + 4, (uint32_t)argc);
  put_u32(p + 8, (uint32_t)envc);
  p += 12;
  {
    size_t l = strlen(cwd) + 1;
    memcpy(p, cwd, l);
    p += l;
  }
  for (int i = 0; i < argc; i++) {
    size_t l = strlen(argv[i]) + 1;
    memcpy(p, argv[i], l);
    p += l;
  }
  for (char **e = environ; e && *e; e++) {
    size_t l = strlen(*e) + 1;
    memcpy(p, *e, l);
    p += l;
  }
  *out = buf;
  *out_len = len;
  return 0;
}

static int send_request(int s, const uint8_t *buf, size_t len, const int *fds,
                        int nfds) {
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * WRAP_SOCK_MAX_FDS)];
  } cm;
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  ssize_t w;
  size_t off;
  memset(&cm, 0, sizeof(cm));
  if (nfds > 0) {
    mh.msg_control = cm.b;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    cm.h.cmsg_level = SOL_SOCKET;
    cm.h.cmsg_type = SCM_RIGHTS;
    cm.h.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(&cm.h), fds, sizeof(int) * (size_t)nfds);
  }
  do
    w = sendmsg(s, &mh, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  if (w <= 0)
    return DB_EUNAVAIL;
  for (off = (size_t)w; off < len;) {
    w = send(s, buf + off, len - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return DB_EUNAVAIL;
    off += (size_t)w;
  }
  return 0;
}

/* Read exactly n bytes; 0, or DB_EUNAVAIL at EOF / error. */
static int read_full(int fd, void *p, size_t n) {
  uint8_t *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return DB_EUNAVAIL;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

int wrap_sock_call(const char *path, int argc, char **argv, int *code) {
  struct sockaddr_un sa;
  uint8_t *buf = NULL, ans[5];
  size_t len = 0;
  int fds[WRAP_SOCK_MAX_FDS], nfds, s = -1, rv;
  if (path == NULL || strlen(path) >= sizeof(sa.sun_path) || argc < 1)
    return DB_EUNAVAIL;
  nfds = collect_fds(fds);
  rv = encode(argc, argv, fds, nfds, &buf, &len);
  if (rv != 0) {
    rv = DB_EUNAVAIL;
    goto out;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    rv = DB_EUNAVAIL;
    goto out;
  }
  rv = send_request(s, buf, len, fds, nfds);
  if (rv == 0 && (read_full(s, ans, 1) != 0 || ans[0] != 'A'))
    rv = DB_EUNAVAIL;
  if (rv != 0)
    goto out;
  /* Started: from here on a lost server means an unknown outcome. */
  if (read_full(s, ans, 5) != 0 || ans[0] != 'X') {
    rv = DB_EIO;
    goto out;
  }
  *code = (int)(int32_t)get_u32(ans + 1);
out:
  if (s >= 0)
    close(s);
  free(buf);
  return rv;
}

/* --- server side --- */

static void close_fds(int *fds, int n) {
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
}

/* recvmsg the header with its descriptors. */
static int recv_header(int fd, uint8_t hdr[8], int *fds, int *nfds) {
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * WRAP_SOCK_MAX_FDS)];
  } cm;
  struct iovec iov = {.iov_base = hdr, .iov_len = 8};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
  ssize_t r;
  int rv = 0;
  *nfds = 0;
  mh.msg_control = cm.b;
  mh.msg_controllen = sizeof(cm.b);
  do
    r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r <= 0)
    return DB_EUNAVAIL;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
      continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (*nfds < WRAP_SOCK_MAX_FDS)
        fds[(*nfds)++] = f;
      else {
        close(f);
        rv = DB_EPROTO;
      }
    }
  }
  if (mh.msg_flags & MSG_CTRUNC)
    rv = DB_EPROTO;
  if (rv == 0 && (size_t)r < 8 && read_full(fd, hdr + r, 8 - (size_t)r) != 0)
    rv = DB_EPROTO;
  return rv;
}

/* Take the next NUL-terminated string of [*p, end). */
static const char *next_str(char **p, char *end) {
  char *s = *p, *nul;
  if (s >= end || (nul = memchr(s, '\0', (size_t)(end - s))) == NULL)
    return NULL;
  *p = nul + 1;
  return s;
}

static int decode(wrap_sock_req *r, size_t len) {
  uint8_t *p = (uint8_t *)r->buf, *end = p + len;
  char *sp;
  uint32_t nfds, argc, envc;
  if (len < 16)
    return DB_EPROTO;
  nfds = get_u32(p);
  if (nfds != (uint32_t)r->nfds || len < 16 + 4 * (size_t)nfds)
    return DB_EPROTO;
  for (uint32_t i = 0; i < nfds; i++) {
    uint32_t n = get_u32(p + 4 + 4 * i);
    if (n >= WRAP_SOCK_MAX_FD_NUM)
      return DB_EPROTO;
    for (uint32_t j = 0; j < i; j++)
      if ((uint32_t)r->fd_nums[j] == n)
        return DB_EPROTO;
    r->fd_nums[i] = (int)n;
  }
  p += 4 + 4 * (size_t)nfds;
  r->umask_bits = get_u32(p) & 0777;
  argc = get_u32(p + 4);
  envc = get_u32(p + 8);
  p += 12;
  if (argc < 1 || (uint64_t)argc + envc > WRAP_SOCK_MAX_STRINGS)
    return DB_EPROTO;
  r->argv = calloc((size_t)argc + 1, sizeof(char *));
  r->env = calloc((size_t)envc + 1, sizeof(char *));
  if (r->argv == NULL || r->env == NULL)
    return DB_ENOMEM;
  sp = (char *)p;
  if ((r->cwd = next_str(&sp, (char *)end)) == NULL || r->cwd[0] != '/')
    return DB_EPROTO;
  for (uint32_t i = 0; i < argc; i++)
    if ((r->argv[i] = (char *)next_str(&sp, (char *)end)) == NULL)
      return DB_EPROTO;
  for (uint32_t i = 0; i < envc; i++)
    if ((r->env[i] = (char *)next_str(&sp, (char *)end)) == NULL)
      return DB_EPROTO;
  if (sp != (char *)end)
    return DB_EPROTO; /* trailing bytes */
  r->argc = (int)argc;
  r->envc = (int)envc;
  return 0;
}

int wrap_sock_recv(int fd, wrap_sock_req **out) {
  wrap_sock_req *r = calloc(1, sizeof(*r));
  uint8_t hdr[8];
  uint32_t len;
  int rv;
  *out = NULL;
  if (r == NULL)
    return DB_ENOMEM;
  rv = recv_header(fd, hdr, r->fds, &r->nfds);
  if (rv != 0)
    goto out;
  len = get_u32(hdr + 4);
  if (memcmp(hdr, REQ_MAGIC, 4) != 0 || len > WRAP_SOCK_MAX_REQ) {
    rv = DB_EPROTO;
    goto out;
  }
  r->buf = malloc((size_t)len + 1);
  if (r->buf == NULL) {
    rv = DB_ENOMEM;
    goto out;
  }
  /* Past the header, an early end is a truncated request. */
  rv = read_full(fd, r->buf, len) == 0 ? decode(r, len) : DB_EPROTO;
out:
  if (rv != 0) {
    wrap_sock_req_free(r);
    r = NULL;
  }
  *out = r;
  return rv;
}

void wrap_sock_req_free(wrap_sock_req *r) {
  if (r == NULL)
    return;
  close_fds(r->fds, r->nfds);
  free(r->argv);
  free(r->env);
  free(r->buf);
  free(r);
}

static int send_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return DB_EUNAVAIL;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int wrap_sock_send_started(int fd) {
  const uint8_t a = 'A';
  return send_all(fd, &a, 1);
}

int wrap_sock_send_status(int fd, int code) {
  uint8_t m[5] = {'X'};
  put_u32(m + 1, (uint32_t)(int32_t)code);
  return send_all(fd, m, 5);
}
