/*
 * Limits and accounting: cgroup v2 where it is usable, else cgroup v1
 * (memory, pids, cpu hierarchies), else none (the probe line says so).
 *
 * The worker's own cgroup is the parent of every per-action cgroup: on a
 * v1/v2 hybrid host /proc/self/cgroup may say "memory:/process_api/<id>",
 * and the action's memory cgroup is created below that path, so limits of
 * the enclosing job still apply.
 *
 * v2 delegation (the "no internal processes" rule): controllers can only be
 * enabled for children of a cgroup that has no processes of its own.  If
 * ours has none enabled, the probe creates a leaf "<ours>/sbx-worker",
 * moves this process into it, then writes "+memory +pids +cpu" to our
 * cgroup's subtree_control; per-action cgroups are siblings of the leaf.
 *
 * Per action: "<base>/sbx-<pid>-<n>", limits written, the sandbox's pid 1
 * attached before it is released (so every descendant is inside), stats
 * read after the final reap, then rmdir.  On v1 the set is usually made
 * earlier by an anchor thread that moved itself in and forks pid 1 there
 * (sbx_anchor.c), so no attach is needed.
 */
#include "sbx_int.h"

#include "db_err.h"
#include "db_log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { CG_MEMORY = 0, CG_PIDS = 1, CG_CPU = 2, CG_N = 3 };
static const char *const cg_names[CG_N] = {"memory", "pids", "cpu"};

/* Written once by sbx_cgroup_probe() (inside the probe's pthread_once),
 * read-only afterwards. */
static struct {
  sbx_cgroup_mode mode;
  unsigned ctrl;
  char base[CG_N][PATH_MAX]; /* v1: one per controller; v2: base[0] */
} g_cg;

static atomic_uint g_seq;

struct sbx_cgroup {
  sbx_cgroup_mode mode;
  int n;         /* directories in use */
  int idx[CG_N]; /* controller of each directory (v1) */
  char dir[CG_N][PATH_MAX];
};

/* ---- parsers --------------------------------------------------------------
 */

int sbx_cgroup_parse_kv(const char *text, const char *key, uint64_t *out) {
  size_t kl = strlen(key);
  const char *l = text;
  while (l && *l) {
    if (!strncmp(l, key, kl) && l[kl] == ' ') {
      char *end;
      unsigned long long v = strtoull(l + kl + 1, &end, 10);
      if (end == l + kl + 1)
        return DB_EINVAL;
      *out = v;
      return 0;
    }
    l = strchr(l, '\n');
    if (l)
      l++;
  }
  return DB_ENOTFOUND;
}

static int has_token(const char *list, size_t len, const char *tok) {
  size_t tl = strlen(tok);
  const char *p = list, *end = list + len;
  while (p < end) {
    const char *c = memchr(p, ',', (size_t)(end - p));
    size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
    if (n == tl && !memcmp(p, tok, tl))
      return 1;
    p += n + 1;
  }
  return 0;
}

int sbx_cgroup_parse_self(const char *text, const char *ctrl, char *out,
                          size_t cap) {
  const char *l = text;
  while (l && *l) {
    const char *c1 = strchr(l, ':'), *c2, *nl = strchr(l, '\n');
    size_t plen;
    if (!c1)
      break;
    c2 = strchr(c1 + 1, ':');
    if (!c2 || (nl && c2 > nl))
      goto next;
    plen = nl ? (size_t)(nl - c2 - 1) : strlen(c2 + 1);
    if ((ctrl[0] == '\0' && c2 == c1 + 1 && !strncmp(l, "0:", 2)) ||
        (ctrl[0] != '\0' && has_token(c1 + 1, (size_t)(c2 - c1 - 1), ctrl))) {
      if (plen + 1 > cap)
        return DB_ETOOBIG;
      memcpy(out, c2 + 1, plen);
      out[plen] = '\0';
      return 0;
    }
  next:
    l = nl ? nl + 1 : NULL;
  }
  return DB_ENOTFOUND;
}

/* Find the mount of a cgroup hierarchy in mountinfo text: fstype "cgroup2"
 * (ctrl == NULL) or "cgroup" with |ctrl| among its super options.  Writes
 * the mount point and the mount's root. */
static int find_mount(char *info, const char *ctrl, char *mnt, char *root) {
  char *line, *save = NULL;
  for (line = strtok_r(info, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char r[PATH_MAX], mp[PATH_MAX], fstype[64], src[256], opts[512];
    const char *dash = strstr(line, " - ");
    if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", r, mp) != 2)
      continue;
    if (sscanf(dash + 3, "%63s %255s %511s", fstype, src, opts) != 3)
      continue;
    if (ctrl
            ? (strcmp(fstype, "cgroup") || !has_token(opts, strlen(opts), ctrl))
            : strcmp(fstype, "cgroup2"))
      continue;
    snprintf(mnt, PATH_MAX, "%s", mp);
    snprintf(root, PATH_MAX, "%s", r);
    return 0;
  }
  return DB_ENOTFOUND;
}

static char *slurp(const char *path) {
  size_t cap = 1 << 16;
  char *buf = malloc(cap);
  ssize_t n;
  if (!buf)
    return NULL;
  for (;;) {
    n = sbx_util_read_str(path, buf, cap);
    if (n < 0 || (size_t)n + 1 < cap)
      break;
    cap *= 4;
    free(buf);
    buf = malloc(cap);
    if (!buf)
      return NULL;
  }
  if (n < 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* dir = mount point + (cgroup path without the mount's root). */
static int hier_dir(const char *self, const char *mounts, const char *ctrl,
                    char *dir) {
  char path[PATH_MAX], mnt[PATH_MAX], root[PATH_MAX];
  char *info = strdup(mounts);
  const char *rel;
  size_t rl;
  int rc;

  if (!info)
    return DB_ENOMEM;
  rc = sbx_cgroup_parse_self(self, ctrl ? ctrl : "", path, sizeof(path));
  if (rc == 0)
    rc = find_mount(info, ctrl, mnt, root);
  free(info);
  if (rc != 0)
    return rc;
  rl = strlen(root);
  rel = path;
  if (strcmp(root, "/") && !strncmp(path, root, rl))
    rel = path + rl;
  if (snprintf(dir, PATH_MAX, "%s%s", mnt, strcmp(rel, "/") ? rel : "") >=
      PATH_MAX)
    return DB_ETOOBIG;
  return 0;
}

/* Can we create child cgroups here?  access(2) sees read-only mounts and
 * permissions without the cost of a real mkdir/rmdir (slow for v1 memcg). */
static int try_mkdir(const char *base) {
  char procs[PATH_MAX + 16];
  snprintf(procs, sizeof(procs), "%s/cgroup.procs", base);
  if (access(base, W_OK | X_OK) < 0 || access(procs, W_OK) < 0)
    return -errno;
  return 0;
}

static int probe_v2(const char *self, const char *mounts, char *why,
                    size_t wl) {
  char dir[PATH_MAX], file[PATH_MAX + 32], buf[512], pid[32];
  char leaf[PATH_MAX + 16];
  int rc;

  if (hier_dir(self, mounts, NULL, dir) != 0)
    return -1;
  snprintf(file, sizeof(file), "%s/cgroup.controllers", dir);
  if (sbx_util_read_str(file, buf, sizeof(buf)) < 0 || !strstr(buf, "memory") ||
      !strstr(buf, "pids")) {
    sbx_util_msg(why, wl, "cgroup v2 at %s lacks memory/pids controllers", dir);
    return -1;
  }
  if (try_mkdir(dir) < 0) {
    sbx_util_msg(why, wl, "cgroup v2 at %s not writable", dir);
    return -1;
  }
  snprintf(file, sizeof(file), "%s/cgroup.subtree_control", dir);
  if (sbx_util_read_str(file, buf, sizeof(buf)) < 0)
    buf[0] = '\0';
  if (!strstr(buf, "memory") || !strstr(buf, "pids")) {
    /* Delegate: leaf for ourselves, then enable controllers. */
    snprintf(leaf, sizeof(leaf), "%s/sbx-worker", dir);
    if (mkdir(leaf, 0755) < 0 && errno != EEXIST) {
      sbx_util_msg(why, wl, "cgroup v2: mkdir %s: %s", leaf, strerror(errno));
      return -1;
    }
    snprintf(file, sizeof(file), "%s/cgroup.procs", leaf);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    rc = sbx_util_write_str(file, pid);
    if (rc == 0) {
      snprintf(file, sizeof(file), "%s/cgroup.subtree_control", dir);
      rc = sbx_util_write_str(file, "+memory +pids");
      if (rc == 0)
        sbx_util_write_str(file, "+cpu"); /* optional */
    }
    if (rc != 0) {
      sbx_util_msg(why, wl, "cgroup v2: delegation in %s failed: %s", dir,
                   strerror(-rc));
      return -1;
    }
    sbx_util_read_str(file, buf, sizeof(buf));
  }
  g_cg.mode = SBX_CGROUP_V2;
  g_cg.ctrl =
      SBX_CTRL_MEMORY | SBX_CTRL_PIDS | (strstr(buf, "cpu") ? SBX_CTRL_CPU : 0);
  snprintf(g_cg.base[0], PATH_MAX, "%s", dir);
  return 0;
}

static void probe_v1(const char *self, const char *mounts, char *why,
                     size_t wl) {
  int i;
  for (i = 0; i < CG_N; i++) {
    char dir[PATH_MAX];
    if (hier_dir(self, mounts, cg_names[i], dir) != 0)
      continue;
    if (try_mkdir(dir) < 0) {
      if (why[0] == '\0')
        sbx_util_msg(why, wl, "cgroup v1 %s at %s not writable", cg_names[i],
                     dir);
      continue;
    }
    snprintf(g_cg.base[i], PATH_MAX, "%s", dir);
    g_cg.ctrl |= 1u << i;
  }
  if (g_cg.ctrl)
    g_cg.mode = SBX_CGROUP_V1;
}

/* Remove "sbx-<pid>-<n>" cgroups left by a worker that was SIGKILLed
 * before its cleanup ran (its pid no longer exists; empty cgroups only). */
static void reap_stale(const char *base) {
  DIR *d = opendir(base);
  struct dirent *e;
  char path[PATH_MAX + 300];
  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    long pid;
    char *end;
    if (strncmp(e->d_name, "sbx-", 4))
      continue;
    pid = strtol(e->d_name + 4, &end, 10);
    if (end == e->d_name + 4 || *end != '-' || pid <= 0 ||
        kill((pid_t)pid, 0) == 0 || errno != ESRCH)
      continue;
    snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
    if (rmdir(path) == 0)
      DB_DEBUG("sandbox", "removed stale cgroup %s", path);
  }
  closedir(d);
}

void sbx_cgroup_probe(sbx_features *f) {
  char *self = slurp("/proc/self/cgroup");
  char *mounts = slurp("/proc/self/mountinfo");
  char why[256] = "";

  memset(&g_cg, 0, sizeof(g_cg));
  if (self && mounts && probe_v2(self, mounts, why, sizeof(why)) != 0) {
    char why1[256] = "";
    probe_v1(self, mounts, why1, sizeof(why1));
    if (g_cg.mode == SBX_CGROUP_NONE && why[0] == '\0')
      sbx_util_msg(why, sizeof(why), "%s", why1[0] ? why1 : "no cgroup found");
  }
  for (int i = 0; i < CG_N; i++)
    if (g_cg.base[i][0])
      reap_stale(g_cg.base[i]);
  f->cgroup = g_cg.mode;
  f->cgroup_ctrl = g_cg.ctrl;
  if (g_cg.mode == SBX_CGROUP_NONE || g_cg.ctrl != 7) {
    size_t l = strlen(f->detail);
    sbx_util_msg(f->detail + l, sizeof(f->detail) - l, "%s%s", l ? "; " : "",
                 why[0] ? why : "some cgroup controllers unavailable");
  }
  free(self);
  free(mounts);
}

/* ---- per action ------------------------------------------------------------
 */

static int write_knob(const char *dir, const char *knob, const char *val,
                      char *err, size_t errlen) {
  char path[PATH_MAX + 64];
  int rc;
  snprintf(path, sizeof(path), "%s/%s", dir, knob);
  rc = sbx_util_write_str(path, val);
  if (rc != 0)
    sbx_util_msg(err, errlen, "cgroup: write %s: %s", path, strerror(-rc));
  return rc;
}

/* Make the directories |lim| needs, without writing any limit. */
static int cg_create(const sbx_limits *lim, sbx_cgroup **out, char *err,
                     size_t errlen) {
  sbx_cgroup *cg;
  char name[64];
  int i, rc = 0;

  *out = NULL;
  if (g_cg.mode == SBX_CGROUP_NONE)
    return 0;
  cg = calloc(1, sizeof(*cg));
  if (!cg)
    return DB_ENOMEM;
  cg->mode = g_cg.mode;
  snprintf(name, sizeof(name), "sbx-%d-%u", (int)getpid(),
           atomic_fetch_add(&g_seq, 1));
  for (i = 0; i < CG_N; i++) {
    /* v2: one directory.  v1: memory always (accounting), pids and cpu
     * only when limited. */
    if (cg->mode == SBX_CGROUP_V2 ? i > 0 : !(g_cg.ctrl & (1u << i)))
      continue;
    if (cg->mode == SBX_CGROUP_V1 &&
        ((i == CG_PIDS && !lim->pids) || (i == CG_CPU && !lim->cpu_millis)))
      continue;
    if (snprintf(cg->dir[cg->n], PATH_MAX, "%s/%s", g_cg.base[i], name) >=
        PATH_MAX) {
      sbx_util_msg(err, errlen, "cgroup: path too long under %s", g_cg.base[i]);
      rc = DB_EINVAL;
      goto fail;
    }
    if (mkdir(cg->dir[cg->n], 0755) < 0) {
      sbx_util_msg(err, errlen, "cgroup: mkdir %s: %s", cg->dir[cg->n],
                   strerror(errno));
      rc = DB_ESYS;
      goto fail;
    }
    cg->idx[cg->n++] = i;
  }
  *out = cg;
  return 0;
fail:
  sbx_cgroup_free(cg);
  return rc;
}

int sbx_cgroup_apply(sbx_cgroup *cg, const sbx_limits *lim,
                     unsigned extra_tasks, char *err, size_t errlen) {
  char v[64];
  int i, rc = 0;

  for (i = 0; i < cg->n && rc == 0; i++) {
    const char *d = cg->dir[i];
    int v2 = cg->mode == SBX_CGROUP_V2;
    if ((v2 || cg->idx[i] == CG_MEMORY) && lim->memory_bytes) {
      snprintf(v, sizeof(v), "%" PRIu64, lim->memory_bytes);
      rc = write_knob(d, v2 ? "memory.max" : "memory.limit_in_bytes", v, err,
                      errlen);
      /* No swapping instead of the OOM kill (absent without swap
       * accounting: ignored). */
      if (rc == 0)
        write_knob(d, v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes",
                   v2 ? "0" : v, err, errlen);
    }
    if (rc == 0 && (v2 || cg->idx[i] == CG_PIDS) && lim->pids) {
      snprintf(v, sizeof(v), "%u", lim->pids + extra_tasks);
      rc = write_knob(d, "pids.max", v, err, errlen);
    }
    if (rc == 0 && (v2 || cg->idx[i] == CG_CPU) && lim->cpu_millis &&
        (g_cg.ctrl & SBX_CTRL_CPU)) {
      if (v2) {
        snprintf(v, sizeof(v), "%u 100000", lim->cpu_millis * 100);
        rc = write_knob(d, "cpu.max", v, err, errlen);
      } else {
        rc = write_knob(d, "cpu.cfs_period_us", "100000", err, errlen);
        snprintf(v, sizeof(v), "%u", lim->cpu_millis * 100);
        if (rc == 0)
          rc = write_knob(d, "cpu.cfs_quota_us", v, err, errlen);
      }
    }
  }
  if (rc != 0)
    return DB_ESYS;
  err[0] = '\0';
  return 0;
}

int sbx_cgroup_new(const sbx_limits *lim, sbx_cgroup **out, char *err,
                   size_t errlen) {
  int rc = cg_create(lim, out, err, errlen);
  if (rc == 0 && *out) {
    rc = sbx_cgroup_apply(*out, lim, 0, err, errlen);
    if (rc != 0) {
      sbx_cgroup_free(*out);
      *out = NULL;
    }
  }
  return rc;
}

/* v1 moves single threads through "tasks"; v2 has no such file for domain
 * cgroups, which is why anchors are v1 only. */
static int move_thread(const char *dir) {
  char path[PATH_MAX + 16], v[32];
  snprintf(path, sizeof(path), "%s/tasks", dir);
  snprintf(v, sizeof(v), "%ld", (long)syscall(SYS_gettid));
  return sbx_util_write_str(path, v);
}

static int enter_thread(sbx_cgroup *cg) {
  int rc;
  if (cg->mode != SBX_CGROUP_V1)
    return DB_EUNSUPP;
  for (int i = 0; i < cg->n; i++) {
    rc = move_thread(cg->dir[i]);
    if (rc != 0)
      return DB_ESYS;
  }
  return 0;
}

int sbx_cgroup_new_anchor(const sbx_limits *lim, sbx_cgroup **out) {
  char err[256];
  int rc;
  *out = NULL;
  if (g_cg.mode != SBX_CGROUP_V1)
    return DB_EUNSUPP;
  rc = cg_create(lim, out, err, sizeof(err));
  if (rc == 0 && *out) {
    rc = enter_thread(*out);
    if (rc != 0) {
      DB_WARN("sandbox", "cgroup anchor: %s", db_strerror(rc));
      sbx_cgroup_leave_thread();
      sbx_cgroup_free(*out);
      *out = NULL;
    }
  }
  return rc;
}

void sbx_cgroup_leave_thread(void) {
  for (int i = 0; i < CG_N; i++)
    if (g_cg.mode == SBX_CGROUP_V1 && g_cg.base[i][0] &&
        move_thread(g_cg.base[i]) != 0)
      DB_WARN("sandbox", "cannot move a thread back to %s", g_cg.base[i]);
}

int sbx_cgroup_pids_dir(const sbx_cgroup *cg, char *out, size_t cap) {
  for (int i = 0; cg && i < cg->n; i++)
    if (cg->idx[i] == CG_PIDS && cg->mode == SBX_CGROUP_V1)
      return sbx_util_strlcpy(out, cg->dir[i], cap) < cap ? 0 : DB_ETOOBIG;
  return DB_ENOTFOUND;
}

sbx_cgroup_mode sbx_cgroup_mode_of(const sbx_cgroup *cg) {
  return cg ? cg->mode : SBX_CGROUP_NONE;
}

int sbx_cgroup_attach(sbx_cgroup *cg, pid_t pid) {
  char v[32], path[PATH_MAX + 32];
  int i, rc;
  snprintf(v, sizeof(v), "%d", (int)pid);
  for (i = 0; i < cg->n; i++) {
    snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dir[i]);
    rc = sbx_util_write_str(path, v);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Kill every pid listed in |dir|/cgroup.procs. Returns how many. */
static int kill_listed(const char *dir) {
  char path[PATH_MAX + 32], buf[8192], *p, *end;
  int n = 0;
  snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
  if (sbx_util_read_str(path, buf, sizeof(buf)) <= 0)
    return 0;
  for (p = buf; *p; p = end) {
    long pid = strtol(p, &end, 10);
    if (end == p)
      break;
    /* A cgroup anchor (a thread of this process) may still sit here. */
    if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, SIGKILL) == 0)
      n++;
  }
  return n;
}

void sbx_cgroup_kill(sbx_cgroup *cg) {
  char path[PATH_MAX + 32];
  int round;
  if (!cg || cg->n == 0)
    return;
  if (cg->mode == SBX_CGROUP_V2) {
    snprintf(path, sizeof(path), "%s/cgroup.kill", cg->dir[0]);
    if (sbx_util_write_str(path, "1") == 0)
      return;
  }
  for (round = 0; round < 10 && kill_listed(cg->dir[0]) > 0; round++) {
  }
}

void sbx_cgroup_stats(sbx_cgroup *cg, sbx_result *res) {
  char path[PATH_MAX + 32], buf[4096];
  uint64_t v;
  int i;
  if (!cg)
    return;
  for (i = 0; i < cg->n; i++) {
    const char *d = cg->dir[i];
    if (cg->mode == SBX_CGROUP_V2) {
      snprintf(path, sizeof(path), "%s/memory.peak", d);
      if (sbx_util_read_str(path, buf, sizeof(buf)) > 0)
        res->peak_memory_bytes = strtoull(buf, NULL, 10);
      snprintf(path, sizeof(path), "%s/memory.events", d);
      if (sbx_util_read_str(path, buf, sizeof(buf)) > 0 &&
          sbx_cgroup_parse_kv(buf, "oom_kill", &v) == 0 && v > 0)
        res->oom_killed = 1;
      snprintf(path, sizeof(path), "%s/cpu.stat", d);
      if (sbx_util_read_str(path, buf, sizeof(buf)) > 0) {
        if (sbx_cgroup_parse_kv(buf, "user_usec", &v) == 0)
          res->user_us = v;
        if (sbx_cgroup_parse_kv(buf, "system_usec", &v) == 0)
          res->sys_us = v;
      }
    } else if (cg->idx[i] == CG_MEMORY) {
      snprintf(path, sizeof(path), "%s/memory.max_usage_in_bytes", d);
      if (sbx_util_read_str(path, buf, sizeof(buf)) > 0)
        res->peak_memory_bytes = strtoull(buf, NULL, 10);
      snprintf(path, sizeof(path), "%s/memory.oom_control", d);
      if (sbx_util_read_str(path, buf, sizeof(buf)) > 0 &&
          sbx_cgroup_parse_kv(buf, "oom_kill", &v) == 0 && v > 0)
        res->oom_killed = 1;
    }
  }
}

void sbx_cgroup_free(sbx_cgroup *cg) {
  int i, tries;
  if (!cg)
    return;
  for (i = 0; i < cg->n; i++) {
    /* Empty once the final reap is done; allow the kernel a moment. */
    for (tries = 0; tries < 200; tries++) {
      if (rmdir(cg->dir[i]) == 0 || errno != EBUSY)
        break;
      kill_listed(cg->dir[i]);
      usleep(1000);
    }
    if (tries == 200)
      DB_WARN("sandbox", "cgroup %s still busy, left behind", cg->dir[i]);
  }
  free(cg);
}
