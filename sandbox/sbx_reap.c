/*
 * The reaping loop of the sandbox's pid 1, shared by the in-process init
 * (sbx_init.c) and the small init program it execs (sbx_pid1.c).  Only
 * system calls: it runs in a copy of the multi-threaded worker.
 */
#include "sbx_int.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void sbx_reap_report(pid_t action, int report_fd) {
  struct sbx_msg m;
  pid_t w;
  int st = 0, action_st = 0;

  memset(&m, 0, sizeof(m));
  for (;;) {
    w = waitpid(-1, &st, __WALL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      break; /* ECHILD: cannot happen before the action is reaped */
    if (w == action) {
      action_st = st;
      break;
    }
  }
  m.kind = SBX_MSG_STATUS;
  m.status = action_st;
  sbx_util_write_all(report_fd, &m, sizeof(m));
  _exit(0);
}
