/*
 * The feature probe: computed once per process (pthread_once), read-only
 * afterwards.  It also owns the two immutable objects every sandbox child
 * uses: the compiled seccomp program and libcap's empty capability set.
 * Building them once keeps sbx_run() fast and the child allocation-free.
 */
#include "sbx_int.h"

#include "db_err.h"
#include "db_log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static sbx_features g_f;
static struct sock_fprog g_prog;
static void *g_caps;

const struct sock_fprog *sbx_probe_seccomp(void) {
  return g_prog.filter ? &g_prog : NULL;
}

void *sbx_probe_caps(void) {
  return g_caps;
}

static void add_detail(const char *s) {
  size_t l = strlen(g_f.detail);
  sbx_util_msg(g_f.detail + l, sizeof(g_f.detail) - l, "%s%s", l ? "; " : "",
               s);
}

static void test_sandbox(void) {
  static const char *const argv[] = {"/sbx-probe", NULL};
  sbx_request *req = NULL;
  sbx_result res;
  sbx_plan plan;
  char msg[300];
  int rc;

  rc = sbx_request_new(&req);
  if (rc == 0)
    rc = sbx_request_set_argv(req, argv);
  if (rc == 0)
    rc = sbx_request_add_default_layout(req);
  if (rc != 0) {
    add_detail("test sandbox: out of memory");
    goto out;
  }
  req->probe_only = 1;
  memset(&res, 0, sizeof(res));
  sbx_plan_init(&plan, req, &g_f);
  rc = sbx_run_plan(&plan, req, &res);
  if (rc == 0 && res.exited && res.exit_code == 0) {
    g_f.sandbox_ok = 1;
  } else {
    sbx_util_msg(msg, sizeof(msg), "test sandbox failed: %s",
                 rc ? res.error : "non-zero exit");
    add_detail(msg);
  }
out:
  sbx_request_free(req);
}

static void probe_once(void) {
  char why[256];

  memset(&g_f, 0, sizeof(g_f));
  /* Root runs actions as nobody; anyone else as themselves. */
  g_f.host_uid = geteuid() == 0 ? 65534 : geteuid();
  g_f.host_gid = geteuid() == 0 ? 65534 : getegid();
  g_caps = sbx_caps_prepare();
  g_f.caps = g_caps != NULL;
  if (!g_f.caps)
    add_detail("libcap: cap_init failed");
  if (sbx_seccomp_build(&g_prog, why, sizeof(why)) == 0)
    g_f.seccomp = 1;
  else
    add_detail(why);
  g_f.mount_api = sbx_mount_api_available();
  sbx_cgroup_probe(&g_f);
  /* A complete test sandbox proves every namespace at once; only when it
   * fails do we clone namespace by namespace to say which one is missing. */
  if (g_f.caps && g_f.seccomp) {
    g_f.ns = SBX_NS_ALL;
    test_sandbox();
    if (g_f.sandbox_ok)
      return;
  }
  g_f.ns = sbx_ns_probe(why, sizeof(why));
  if (g_f.ns != SBX_NS_ALL)
    add_detail(why);
}

const sbx_features *sbx_probe(void) {
  pthread_once(&g_once, probe_once);
  return &g_f;
}

static size_t cat(char *buf, size_t len, size_t off, const char *s) {
  if (off < len)
    sbx_util_msg(buf + off, len - off, "%s", s);
  return off + strlen(s);
}

size_t sbx_features_format(const sbx_features *f, char *buf, size_t len) {
  static const char *const ns_names[] = {"user", "mount", "pid",
                                         "net",  "ipc",   "uts"};
  static const char *const ctrl_names[] = {"memory", "pids", "cpu"};
  char missing[256] = "";
  size_t off = 0, i, ml = 0;
  int first = 1;

  if (len == 0)
    return 0;
  buf[0] = '\0';
  off = cat(buf, len, off, "sandbox: namespaces=");
  for (i = 0; i < 6; i++) {
    if (f->ns & (1u << i)) {
      off = cat(buf, len, off, first ? "" : ",");
      off = cat(buf, len, off, ns_names[i]);
      first = 0;
    } else {
      ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%s%s-ns",
                             ml ? "," : "", ns_names[i]);
    }
  }
  if (first)
    off = cat(buf, len, off, "none");
  off = cat(buf, len, off, f->seccomp ? " seccomp=on" : " seccomp=off");
  off = cat(buf, len, off, f->caps ? " caps=dropped" : " caps=kept");
  off = cat(buf, len, off,
            f->cgroup == SBX_CGROUP_V2   ? " cgroup=v2("
            : f->cgroup == SBX_CGROUP_V1 ? " cgroup=v1("
                                         : " cgroup=none");
  first = 1;
  for (i = 0; i < 3 && f->cgroup != SBX_CGROUP_NONE; i++) {
    if (f->cgroup_ctrl & (1u << i)) {
      off = cat(buf, len, off, first ? "" : ",");
      off = cat(buf, len, off, ctrl_names[i]);
      first = 0;
    }
  }
  if (f->cgroup != SBX_CGROUP_NONE)
    off = cat(buf, len, off, ")");
  off = cat(buf, len, off, " limits=");
  for (i = 0; i < 3; i++) {
    if (f->cgroup_ctrl & (1u << i)) {
      off = cat(buf, len, off, ctrl_names[i]);
      off = cat(buf, len, off, ",");
    } else if (ml < sizeof(missing)) {
      ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%s%s-limit",
                             ml ? "," : "", ctrl_names[i]);
    }
  }
  off = cat(buf, len, off, "timeout");
  if (!f->seccomp && ml < sizeof(missing))
    ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%sseccomp",
                           ml ? "," : "");
  if (f->ns == SBX_NS_ALL && !f->sandbox_ok && ml < sizeof(missing))
    ml += (size_t)snprintf(missing + ml, sizeof(missing) - ml, "%stest-sandbox",
                           ml ? "," : "");
  if (!f->mount_api)
    off = cat(buf, len, off, " mounts=legacy");
  {
    char ids[64];
    snprintf(ids, sizeof(ids), " uid=%u", (unsigned)f->host_uid);
    off = cat(buf, len, off, ids);
  }
  if (missing[0]) {
    off = cat(buf, len, off, " unavailable=");
    off = cat(buf, len, off, missing);
    if (f->detail[0]) {
      off = cat(buf, len, off, " (");
      off = cat(buf, len, off, f->detail);
      off = cat(buf, len, off, ")");
    }
  }
  return off < len ? off : len - 1;
}

int sbx_mode_parse(const char *s, sbx_mode *out) {
  if (!strcmp(s, "namespaces") || !strcmp(s, "ns") || !strcmp(s, "full"))
    *out = SBX_MODE_NAMESPACES;
  else if (!strcmp(s, "none"))
    *out = SBX_MODE_NONE;
  else
    return DB_EINVAL;
  return 0;
}

int sbx_check_mode(sbx_mode mode, char *err, size_t errlen) {
  const sbx_features *f = sbx_probe();
  char line[768];

  if (mode == SBX_MODE_NONE) {
    DB_WARN("sandbox", "--sandbox=none: actions run UNSANDBOXED (no "
                       "namespaces, no filesystem isolation, no network "
                       "isolation); use only on trusted inputs");
    return 0;
  }
  if (f->ns == SBX_NS_ALL && f->sandbox_ok && f->seccomp && f->caps)
    return 0;
  sbx_features_format(f, line, sizeof(line));
  sbx_util_msg(err, errlen,
               "%s -- refusing to start without the sandbox; pass "
               "--sandbox=none to run actions unsandboxed",
               line);
  return DB_EUNSUPP;
}
