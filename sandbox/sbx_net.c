/*
 * Step 3: the network namespace.  A new network namespace has only "lo",
 * down.  Bring it up (the kernel then gives it 127.0.0.1/8 and ::1) with
 * SIOCSIFFLAGS, as nsjail and Bazel do; add nothing else, so the action
 * can talk to itself and to no one else (the host's 127.0.0.1 is a
 * different interface in a different namespace).
 */
#include "sbx_int.h"

#include <errno.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int sbx_net_loopback_up(struct sbx_msg *m) {
  struct ifreq ifr;
  int fd, rc = 0;

  fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sbx_util_fail(m, SBX_STEP_NET, errno, "socket");
  memset(&ifr, 0, sizeof(ifr));
  sbx_util_strlcpy(ifr.ifr_name, "lo", sizeof(ifr.ifr_name));
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
    rc = sbx_util_fail(m, SBX_STEP_NET, errno, "SIOCGIFFLAGS lo");
    goto out;
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    rc = sbx_util_fail(m, SBX_STEP_NET, errno, "SIOCSIFFLAGS lo");
out:
  close(fd);
  return rc;
}
