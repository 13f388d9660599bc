/*
 * Step 1: namespaces and identity.
 *
 * The parent clones the child with every namespace at once (clone, not
 * unshare: Bazel notes unshare can fail with EINVAL due to a race, and the
 * user namespace created in the same call owns all the others).  The
 * parent, which holds CAP_SETUID/CAP_SETGID in the outer namespace when it
 * is root, then writes single-id maps for the child: inside SBX_INSIDE_ID
 * maps to the host id the action runs as.  Inside uid 0 stays unmapped, so
 * exec never grants capabilities and no file looks root-owned-and-ours.
 */
#include "sbx_int.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/syscall.h>

unsigned long sbx_ns_clone_flags(void) {
  return CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
         CLONE_NEWIPC | CLONE_NEWUTS;
}

static int try_clone(unsigned long flags) {
  int st = 0;
  pid_t pid = sbx_util_clone(flags | SIGCHLD, NULL);
  if (pid < 0)
    return -errno;
  if (pid == 0)
    _exit(0);
  while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
  }
  return 0;
}

unsigned sbx_ns_probe(char *why, size_t len) {
  static const struct {
    unsigned bit;
    unsigned long flag;
    const char *name;
  } tab[] = {
      {SBX_NS_MOUNT, CLONE_NEWNS, "mount"}, {SBX_NS_PID, CLONE_NEWPID, "pid"},
      {SBX_NS_NET, CLONE_NEWNET, "net"},    {SBX_NS_IPC, CLONE_NEWIPC, "ipc"},
      {SBX_NS_UTS, CLONE_NEWUTS, "uts"},
  };
  unsigned ok = 0;
  size_t i;
  int rc;

  why[0] = '\0';
  rc = try_clone(sbx_ns_clone_flags());
  if (rc == 0)
    return SBX_NS_ALL;
  /* Something is missing: find out exactly what. */
  if (try_clone(CLONE_NEWUSER) == 0)
    ok |= SBX_NS_USER;
  else
    sbx_util_msg(why, len, "user namespace: %s", strerror(-rc));
  for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
    unsigned long base = (ok & SBX_NS_USER) ? CLONE_NEWUSER : 0;
    int r = try_clone(base | tab[i].flag);
    if (r == 0) {
      ok |= tab[i].bit;
    } else if (why[0] == '\0') {
      sbx_util_msg(why, len, "%s namespace: %s", tab[i].name, strerror(-r));
    }
  }
  return ok;
}

int sbx_ns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid,
                      int allow_setgroups) {
  char path[64], line[64];
  int rc;

  snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
  sbx_util_msg(line, sizeof(line), "%u %u 1\n", (unsigned)SBX_INSIDE_ID,
               (unsigned)host_uid);
  rc = sbx_util_write_str(path, line);
  if (rc != 0)
    return rc;
  /* Without CAP_SETGID outside, the kernel requires "deny" first. */
  snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
  rc = sbx_util_write_str(path, allow_setgroups ? "allow" : "deny");
  if (rc != 0 && rc != -ENOENT)
    return rc;
  snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
  sbx_util_msg(line, sizeof(line), "%u %u 1\n", (unsigned)SBX_INSIDE_ID,
               (unsigned)host_gid);
  return sbx_util_write_str(path, line);
}

int sbx_ns_switch_ids(const sbx_plan *p, struct sbx_msg *m) {
  /* Inside uid 0 is unmapped, so this transition never counts as leaving
   * "root": the capabilities held in the new user namespace survive it and
   * are dropped explicitly in step 5. */
  /* Raw system calls: glibc's set*id() broadcast the change to every
   * thread it knows of, and this copy of a multi-threaded parent has only
   * one thread left. */
  if (p->drop_groups && syscall(SYS_setgroups, 0, NULL) < 0)
    return sbx_util_fail(m, SBX_STEP_IDS, errno, "setgroups");
  if (syscall(SYS_setresgid, p->in_gid, p->in_gid, p->in_gid) < 0)
    return sbx_util_fail(m, SBX_STEP_IDS, errno, "setresgid");
  if (syscall(SYS_setresuid, p->in_uid, p->in_uid, p->in_uid) < 0)
    return sbx_util_fail(m, SBX_STEP_IDS, errno, "setresuid");
  /* Changing the effective ids cleared PR_SET_PDEATHSIG (prctl(2)), and
   * without it a sandbox outlives a worker killed with SIGKILL. Arm it
   * again, then make sure the supervisor did not die in between: once
   * nobody holds the report pipe's read end, its write end polls POLLERR. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
    return sbx_util_fail(m, SBX_STEP_IDS, errno, "PR_SET_PDEATHSIG");
  {
    struct pollfd pw = {p->report_wr, POLLOUT, 0};
    if (poll(&pw, 1, 0) == 1 && (pw.revents & POLLERR))
      _exit(127);
  }
  return 0;
}
