/*
 * sbx-init: what the sandbox's pid 1 execs once the action runs.
 *
 *   sbx-init ACTION_PID REPORT_FD
 *
 * Until this execve, pid 1 is a fork of the worker: a copy of all of its
 * memory (bearer tokens and TLS keys included) that would live as long as
 * the action, inside the sandbox's namespaces, and pin the old copy of
 * every page the worker writes meanwhile.  This program holds nothing of
 * the worker: it only reaps, reports the action's wait status on
 * REPORT_FD and exits (sbx_reap_report).  Linked statically, without
 * sanitizers, so it needs nothing inside the sandbox; libsandbox carries
 * it (sbx_pid1_image.c) and runs it from a memfd.
 */
#include "sbx_int.h"

#include <stdlib.h>
#include <sys/prctl.h>

int main(int argc, char **argv) {
  char *end1 = NULL, *end2 = NULL;
  long pid, fd;

  if (argc != 3)
    return 127;
  pid = strtol(argv[1], &end1, 10);
  fd = strtol(argv[2], &end2, 10);
  if (*end1 || *end2 || pid <= 0 || fd < 0)
    return 127;
  prctl(PR_SET_NAME, "sbx-init", 0, 0, 0);
  /* execve made it dumpable again: the action (same uid) must not attach
   * to it or open /proc/1/mem and write to the report pipe through it. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  sbx_reap_report((pid_t)pid, (int)fd);
}
