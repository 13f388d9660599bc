/*
 * Step 2: the mount namespace.
 *
 * Parent side: sbx_mount_plan_build() turns the request into a list of
 * operations with every path precomputed (the child cannot allocate).
 *
 * Child side, in this order (nsjail's order, bwrap's recursive read-only):
 *   a. open an O_PATH fd on every host bind source, while the host tree is
 *      still fully visible and before the ids are switched (so a source
 *      under the staging directory, or under root's 0700 home, works);
 *   b. "/" made MS_REC|MS_PRIVATE, so nothing propagates back to the host;
 *   c. a tmpfs on the staging directory: the new root;
 *   d. the request's mounts: recursive binds, read-only ones with every
 *      submount read-only too (mount_setattr(AT_RECURSIVE) on the detached
 *      tree before it is attached, or, on kernels before 5.12, bind then
 *      remount each mount found in /proc/self/mountinfo, keeping the
 *      locked flags), tmpfs, symlinks;
 *   e. a minimal /dev: null, zero, full, random, urandom bound from the host,
 *      fd/stdin/stdout/stderr symlinks, then made read-only;
 *   f. a fresh /proc (we are pid 1 of a new PID namespace), with /proc/sys
 *      and /proc/sysrq-trigger covered read-only as bwrap does;
 *   g. pivot_root(".", ".") inside the new root, then the old root
 *      detached with umount2(MNT_DETACH) (the runc/LXC trick);
 *   h. the root tmpfs remounted read-only: only explicit writable mounts
 *      and tmpfs stay writable.
 * The ids are switched (sbx_ns_switch_ids) between a. and b.; see sbx.c.
 */
#include "sbx_int.h"

#include "db_err.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* ---- parent side ------------------------------------------------------------
 */

static int path_ok(const char *p) {
  const char *c;
  if (!p || p[0] != '/')
    return 0;
  for (c = p; (c = strstr(c, "..")) != NULL; c += 2) {
    if ((c == p || c[-1] == '/') && (c[2] == '/' || c[2] == '\0'))
      return 0;
  }
  return strlen(p) < 2048;
}

static int add_op(sbx_plan *p, int kind, const char *src, int src_host,
                  int is_dir, const char *dst, const char *data) {
  struct sbx_op *op;
  char *full;
  size_t n;

  if (p->n_ops >= SBX_MAX_OPS)
    return DB_ETOOBIG;
  n = strlen(p->stage) + strlen(dst) + 1;
  full = malloc(n);
  if (!full)
    return DB_ENOMEM;
  snprintf(full, n, "%s%s", p->stage, strcmp(dst, "/") ? dst : "");
  op = &p->ops[p->n_ops++];
  op->kind = kind;
  op->src = src;
  op->src_host = src_host;
  op->src_is_dir = is_dir;
  op->dst = full;
  op->data = data;
  return 0;
}

int sbx_mount_plan_build(const sbx_request *req, sbx_plan *p, char *err,
                         size_t errlen) {
  static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/full",
                                     "/dev/random", "/dev/urandom"};
  static const char *const devlinks[][2] = {{"/dev/fd", "/proc/self/fd"},
                                            {"/dev/stdin", "/proc/self/fd/0"},
                                            {"/dev/stdout", "/proc/self/fd/1"},
                                            {"/dev/stderr", "/proc/self/fd/2"}};
  struct stat st;
  size_t i;
  int rc = 0;

  p->stage = "/tmp";
  if (stat(p->stage, &st) < 0 || !S_ISDIR(st.st_mode))
    p->stage = "/mnt";
  p->ops = calloc(SBX_MAX_OPS, sizeof(*p->ops));
  if (!p->ops)
    return DB_ENOMEM;
  p->n_ops = 0;
  for (i = 0; i < req->n_mounts && rc == 0; i++) {
    const struct sbx_req_mount *m = &req->mounts[i];
    if (!path_ok(m->dst) || !strcmp(m->dst, "/")) {
      sbx_util_msg(err, errlen, "mount destination must be absolute: %s",
                   m->dst);
      rc = DB_EINVAL;
      break;
    }
    switch (m->kind) {
    case SBX_MOUNT_RO_BIND:
    case SBX_MOUNT_RW_BIND:
      if (!path_ok(m->src) || stat(m->src, &st) < 0) {
        sbx_util_msg(err, errlen, "bind source %s: %s", m->src,
                     path_ok(m->src) ? strerror(errno)
                                     : "not an absolute path");
        rc = path_ok(m->src) ? DB_ENOTFOUND : DB_EINVAL;
        break;
      }
      rc = add_op(
          p, m->kind == SBX_MOUNT_RO_BIND ? SBX_OP_BIND_RO : SBX_OP_BIND_RW,
          m->src, 1, S_ISDIR(st.st_mode), m->dst, NULL);
      break;
    case SBX_MOUNT_TMPFS:
      rc = add_op(p, SBX_OP_TMPFS, NULL, 0, 1, m->dst,
                  strcmp(m->dst, "/tmp") ? "mode=0755" : "mode=1777");
      break;
    case SBX_REQ_SYMLINK:
      rc = add_op(p, SBX_OP_SYMLINK, m->src, 0, 0, m->dst, NULL);
      break;
    default:
      rc = DB_EINVAL;
    }
  }
  /* /dev: tmpfs, device binds, symlinks, then read-only. */
  if (rc == 0)
    rc = add_op(p, SBX_OP_TMPFS, NULL, 0, 1, "/dev", "mode=0755");
  for (i = 0; i < 5 && rc == 0; i++)
    rc = add_op(p, SBX_OP_BIND_DEV, devs[i], 1, 0, devs[i], NULL);
  for (i = 0; i < req->n_devs && rc == 0; i++) {
    char dst[80];
    /* Only special files: a regular file bound here would be a writable
     * path that escapes the declared outputs. */
    if (stat(req->dev_src[i], &st) < 0) {
      sbx_util_msg(err, errlen, "/dev/%s: %s: %s", req->dev_name[i],
                   req->dev_src[i], strerror(errno));
      rc = DB_ENOTFOUND;
      break;
    }
    if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
      sbx_util_msg(err, errlen, "/dev/%s: %s: not a FIFO or character device",
                   req->dev_name[i], req->dev_src[i]);
      rc = DB_EINVAL;
      break;
    }
    snprintf(dst, sizeof(dst), "/dev/%s", req->dev_name[i]);
    rc = add_op(p, SBX_OP_BIND_DEV, req->dev_src[i], 1, 0, dst, NULL);
  }
  for (i = 0; i < 4 && rc == 0; i++)
    rc = add_op(p, SBX_OP_SYMLINK, devlinks[i][1], 0, 0, devlinks[i][0], NULL);
  if (rc == 0)
    rc = add_op(p, SBX_OP_REMOUNT_RO, NULL, 0, 1, "/dev", NULL);
  /* A fresh /proc, its global knobs read-only. */
  if (rc == 0)
    rc = add_op(p, SBX_OP_PROC, NULL, 0, 1, "/proc", NULL);
  if (rc == 0)
    rc = add_op(p, SBX_OP_BIND_RO, NULL, 0, 1, "/proc/sys", NULL);
  if (rc == 0)
    rc = add_op(p, SBX_OP_BIND_RO, NULL, 0, 0, "/proc/sysrq-trigger", NULL);
  /* The working directory exists even when no mount provides it. */
  if (rc == 0 && strcmp(p->cwd, "/"))
    rc = add_op(p, SBX_OP_DIR, NULL, 0, 1, p->cwd, NULL);
  if (rc != 0 && err[0] == '\0')
    sbx_util_msg(err, errlen, "mount plan: %s", db_strerror(rc));
  return rc;
}

void sbx_mount_plan_free(sbx_plan *p) {
  size_t i;
  if (!p->ops)
    return;
  for (i = 0; i < p->n_ops; i++)
    free((char *)p->ops[i].dst);
  free(p->ops);
  p->ops = NULL;
  p->n_ops = 0;
}

/* ---- child side -------------------------------------------------------------
 */

int sbx_mount_api_available(void) {
  /* mount_setattr with an invalid fd: ENOSYS means the API is missing. */
  struct mount_attr a;
  memset(&a, 0, sizeof(a));
  return !(syscall(SYS_mount_setattr, -1, "", AT_EMPTY_PATH, &a, sizeof(a)) <
               0 &&
           errno == ENOSYS);
}

/* Unescape the octal sequences (\040 ...) of a mountinfo field in place. */
static void unescape(char *s) {
  char *r = s, *w = s;
  while (*r) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
        r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

static unsigned long kept_flags(const char *mp) {
  struct statvfs sv;
  unsigned long f = 0;
  if (statvfs(mp, &sv) < 0)
    return 0;
  if (sv.f_flag & ST_NOEXEC)
    f |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME)
    f |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME)
    f |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME)
    f |= MS_RELATIME;
  if (sv.f_flag & ST_RDONLY)
    f |= MS_RDONLY;
  if (sv.f_flag & ST_NODEV)
    f |= MS_NODEV;
  return f;
}

/* Legacy: remount |dst| and every mount below it with |flags| added,
 * keeping each mount's existing (possibly locked) flags. */
static int remount_tree(const char *dst, unsigned long flags,
                        struct sbx_msg *m) {
  const size_t cap = 8u << 20;
  size_t len = 0, dl = strlen(dst);
  char *buf, *line, *next;
  int fd, rc = 0;

  buf = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
  if (buf == MAP_FAILED)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "mmap");
  fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = sbx_util_fail(m, SBX_STEP_MOUNT, errno, "/proc/self/mountinfo");
    goto out;
  }
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  for (line = buf; line && *line && rc == 0; line = next) {
    char *f[5];
    int i;
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    /* id parent major:minor root mountpoint ... */
    for (i = 0; i < 5; i++) {
      f[i] = line;
      line = strchr(line, ' ');
      if (!line)
        break;
      *line++ = '\0';
    }
    if (i < 4)
      continue;
    unescape(f[4]);
    if (strncmp(f[4], dst, dl) != 0 || (f[4][dl] != '\0' && f[4][dl] != '/'))
      continue;
    if (mount(NULL, f[4], NULL, MS_BIND | MS_REMOUNT | flags | kept_flags(f[4]),
              NULL) < 0) {
      rc = sbx_util_fail(m, SBX_STEP_MOUNT, errno, f[4]);
    }
  }
out:
  munmap(buf, cap);
  return rc;
}

static int make_mountpoint(const struct sbx_op *op, struct sbx_msg *m) {
  char parent[4096];
  char *slash;
  int rc, fd;

  sbx_util_strlcpy(parent, op->dst, sizeof(parent));
  slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = '\0';
    rc = sbx_util_mkdir_p(parent, 0755);
    if (rc < 0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, -rc, parent);
  }
  if (op->src_is_dir) {
    if (mkdir(op->dst, 0755) < 0 && errno != EEXIST)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
    return 0;
  }
  fd = open(op->dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno != EEXIST && errno != EROFS)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
  if (fd >= 0)
    close(fd);
  return 0;
}

static int do_bind(const struct sbx_op *op, int src_fd, int legacy,
                   struct sbx_msg *m) {
  unsigned long flags = MS_NOSUID;
  uint64_t attr = MOUNT_ATTR_NOSUID;
  char proc_path[64];
  const char *src = op->src ? op->src : op->dst;
  int tfd, rc;

  if (op->kind == SBX_OP_BIND_DEV) {
    flags |= MS_NOEXEC;
    attr |= MOUNT_ATTR_NOEXEC;
  } else {
    flags |= MS_NODEV;
    attr |= MOUNT_ATTR_NODEV;
  }
  if (op->kind == SBX_OP_BIND_RO) {
    flags |= MS_RDONLY;
    attr |= MOUNT_ATTR_RDONLY;
  }
  if (!legacy) {
    struct mount_attr ma;
    tfd = (int)syscall(SYS_open_tree, src_fd >= 0 ? src_fd : AT_FDCWD,
                       src_fd >= 0 ? "" : src,
                       OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE |
                           (src_fd >= 0 ? AT_EMPTY_PATH : 0));
    if (tfd < 0 && errno == ENOENT && !op->src)
      return 0; /* optional /proc entry this kernel does not show */
    if (tfd < 0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, src);
    /* Read-only before it is attached: never a writable window. */
    memset(&ma, 0, sizeof(ma));
    ma.attr_set = attr;
    rc = (int)syscall(SYS_mount_setattr, tfd, "", AT_EMPTY_PATH | AT_RECURSIVE,
                      &ma, sizeof(ma));
    if (rc == 0)
      rc = (int)syscall(SYS_move_mount, tfd, "", AT_FDCWD, op->dst,
                        MOVE_MOUNT_F_EMPTY_PATH);
    if (rc < 0)
      rc = sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
    close(tfd);
    return rc;
  }
  if (src_fd >= 0) {
    /* "/proc/self/fd/N" without snprintf (child side). */
    sbx_util_strlcpy(proc_path, "/proc/self/fd/", sizeof(proc_path));
    sbx_util_append_uint(proc_path, sizeof(proc_path), (unsigned)src_fd);
    src = proc_path;
  }
  if (mount(src, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (errno == ENOENT && !op->src)
      return 0; /* optional /proc entry this kernel does not show */
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
  }
  return remount_tree(op->dst, flags, m);
}

static int apply_op(const struct sbx_op *op, int src_fd, int legacy,
                    struct sbx_msg *m) {
  int rc;

  switch (op->kind) {
  case SBX_OP_BIND_RO:
  case SBX_OP_BIND_RW:
  case SBX_OP_BIND_DEV:
    if (op->src || op->kind != SBX_OP_BIND_RO) {
      rc = make_mountpoint(op, m);
      if (rc < 0)
        return rc;
    }
    return do_bind(op, src_fd, legacy, m);
  case SBX_OP_TMPFS:
    rc = make_mountpoint(op, m);
    if (rc < 0)
      return rc;
    if (mount("tmpfs", op->dst, "tmpfs", MS_NOSUID | MS_NODEV, op->data) < 0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
    return 0;
  case SBX_OP_REMOUNT_RO:
    if (mount(NULL, op->dst, NULL,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
              NULL) < 0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
    return 0;
  case SBX_OP_SYMLINK: {
    char parent[4096];
    char *slash;
    sbx_util_strlcpy(parent, op->dst, sizeof(parent));
    slash = strrchr(parent, '/');
    if (slash && slash != parent) {
      *slash = '\0';
      rc = sbx_util_mkdir_p(parent, 0755);
      if (rc < 0)
        return sbx_util_fail(m, SBX_STEP_MOUNT, -rc, parent);
    }
    if (symlink(op->src, op->dst) < 0 && errno != EEXIST)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, op->dst);
    return 0;
  }
  case SBX_OP_PROC:
    rc = make_mountpoint(op, m);
    if (rc < 0)
      return rc;
    if (mount("proc", op->dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
        0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "fresh /proc");
    return 0;
  case SBX_OP_DIR:
    rc = sbx_util_mkdir_p(op->dst, 0755);
    /* Inside a read-only bind the directory must already exist. */
    if (rc < 0 && rc != -EROFS)
      return sbx_util_fail(m, SBX_STEP_MOUNT, -rc, op->dst);
    return 0;
  default:
    return sbx_util_fail(m, SBX_STEP_MOUNT, EINVAL, "unknown op");
  }
}

int sbx_mount_open_sources(const sbx_plan *p, int *fds, struct sbx_msg *m) {
  size_t i;
  for (i = 0; i < p->n_ops; i++) {
    fds[i] = -1;
    if (!p->ops[i].src_host)
      continue;
    fds[i] = open(p->ops[i].src, O_PATH | O_CLOEXEC);
    if (fds[i] < 0)
      return sbx_util_fail(m, SBX_STEP_MOUNT, errno, p->ops[i].src);
  }
  return 0;
}

/* Report |m|'s path as the sandbox sees it: ops work under the staging
 * directory, which means nothing to the user. */
static void unstage(const sbx_plan *p, struct sbx_msg *m) {
  size_t n = strlen(p->stage);
  if (!strncmp(m->detail, p->stage, n) && m->detail[n] == '/')
    memmove(m->detail, m->detail + n, strlen(m->detail + n) + 1);
}

int sbx_mount_setup(const sbx_plan *p, const int *fds, struct sbx_msg *m) {
  size_t i;
  int rc;

  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "make / private");
  if (mount("tmpfs", p->stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "tmpfs root");
  for (i = 0; i < p->n_ops; i++) {
    rc = apply_op(&p->ops[i], fds[i], p->legacy_mount, m);
    if (rc < 0) {
      unstage(p, m);
      return rc;
    }
    if (fds[i] >= 0)
      close(fds[i]);
  }
  if (chdir(p->stage) < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "chdir new root");
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "pivot_root");
  /* The old root is now stacked on "/": detach it. */
  if (umount2(".", MNT_DETACH) < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "detach old root");
  if (chdir("/") < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "chdir /");
  if (mount(NULL, "/", NULL,
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
    return sbx_util_fail(m, SBX_STEP_MOUNT, errno, "read-only root");
  return 0;
}
