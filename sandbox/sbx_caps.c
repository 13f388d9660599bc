/*
 * Step 5: privileges.  With libcap: every capability dropped from the
 * bounding set (so no later execve can regain one), the ambient set
 * cleared, then the inheritable, permitted and effective sets emptied with
 * one cap_set_proc().  Then PR_SET_NO_NEW_PRIVS (setuid/setgid bits and
 * file capabilities are ignored from here on; it is also what lets an
 * unprivileged process load the seccomp filter), and the rlimits:
 * RLIMIT_CORE 0, RLIMIT_FSIZE (maximum output file size) and RLIMIT_CPU,
 * and the niceness (raising it needs no privilege).
 *
 * The empty cap_t is allocated once by the parent (sbx_caps_prepare) so the
 * child does not allocate; libcap's cap_drop_bound, cap_reset_ambient and
 * cap_set_proc only issue prctl/capset system calls.
 */
#include "sbx_int.h"

#include <errno.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>

void *sbx_caps_prepare(void) {
  cap_t c = cap_init(); /* all three sets empty */
  return c;
}

int sbx_caps_drop(const sbx_plan *p, struct sbx_msg *m) {
  cap_value_t v, last = (cap_value_t)cap_max_bits();

  for (v = 0; v < last; v++) {
    /* EINVAL: a capability this kernel does not know. */
    if (cap_drop_bound(v) < 0 && errno != EINVAL)
      return sbx_util_fail(m, SBX_STEP_CAPS, errno, "cap_drop_bound");
  }
  if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() < 0)
    return sbx_util_fail(m, SBX_STEP_CAPS, errno, "cap_reset_ambient");
  if (cap_set_proc((cap_t)p->caps_empty) < 0)
    return sbx_util_fail(m, SBX_STEP_CAPS, errno, "cap_set_proc");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return sbx_util_fail(m, SBX_STEP_CAPS, errno, "no_new_privs");
  return 0;
}

int sbx_caps_rlimits(const sbx_plan *p, struct sbx_msg *m) {
  struct rlimit rl = {0, 0};

  if (setrlimit(RLIMIT_CORE, &rl) < 0)
    return sbx_util_fail(m, SBX_STEP_RLIMIT, errno, "RLIMIT_CORE");
  if (p->limits.max_file_bytes) {
    rl.rlim_cur = rl.rlim_max = p->limits.max_file_bytes;
    if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
      return sbx_util_fail(m, SBX_STEP_RLIMIT, errno, "RLIMIT_FSIZE");
  }
  if (p->limits.cpu_seconds) {
    rl.rlim_cur = p->limits.cpu_seconds;
    rl.rlim_max = p->limits.cpu_seconds + 1; /* SIGXCPU, then SIGKILL */
    if (setrlimit(RLIMIT_CPU, &rl) < 0)
      return sbx_util_fail(m, SBX_STEP_RLIMIT, errno, "RLIMIT_CPU");
  }
  if (p->limits.nice) {
    int cur;
    errno = 0;
    cur = getpriority(PRIO_PROCESS, 0);
    if (cur == -1 && errno != 0)
      return sbx_util_fail(m, SBX_STEP_RLIMIT, errno, "getpriority");
    cur += (int)(p->limits.nice > 39 ? 39 : p->limits.nice);
    if (setpriority(PRIO_PROCESS, 0, cur > 19 ? 19 : cur) < 0)
      return sbx_util_fail(m, SBX_STEP_RLIMIT, errno, "setpriority");
  }
  return 0;
}
