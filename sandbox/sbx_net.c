/*
 * Step 3: the network namespace.  A new network namespace has only "lo",
 * down (see below for the pool of reused namespaces a root worker uses).  Bring
 * it up (the kernel then gives it 127.0.0.1/8 and ::1) with SIOCSIFFLAGS, as
 * nsjail and Bazel do; add nothing else, so the action can talk to itself and
 * to no one else (the host's 127.0.0.1 is a different interface in a different
 * namespace).
 */
#include "sbx_int.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
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

/* ---- pooled network namespaces ----------------------------------------------
 *
 * Creating a network namespace costs ~0.5 ms of CPU in clone() and about as
 * much again when the kernel's cleanup_net worker tears it down, plus RCU
 * grace periods: the largest single cost of a no-op action.  A namespace
 * that no process uses any more is as good as new for the next sandbox:
 * sockets die with their processes (pid 1's exit waits until every process
 * of the PID namespace is gone), and nothing else in it can be changed by
 * the sandbox, because the pooled namespace is owned by the worker's user
 * namespace, in which the sandbox holds no capability at all (not even
 * before it drops its own): "lo" is brought up once, here, and cannot be
 * reconfigured, no routes, addresses, sysctls or netfilter rules can be
 * added.  A namespace is checked out by one sandbox at a time, so
 * concurrent actions never share one.
 *
 * setns(CLONE_NEWNET) is per thread, so the supervisor thread enters the
 * namespace just for the clone() and returns right after; other threads of
 * the worker are unaffected.  It needs CAP_SYS_ADMIN in the worker's user
 * namespace: when the worker is not root the pool is disabled and every
 * sandbox gets a fresh namespace from clone(CLONE_NEWNET), as before. */

#define NET_POOL_MAX 256

static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_pool[NET_POOL_MAX];
static int g_pool_n;
static int g_pool_off; /* 1: creating one failed, do not try again */
static __thread int t_home_fd = -1; /* this thread's own namespace */

/* Runs in a short-lived thread, so no thread of the worker ever has to
 * switch back from a namespace it created. */
static void *create_ns(void *arg) {
  struct sbx_msg m;
  int *out = arg;
  *out = -1;
  if (unshare(CLONE_NEWNET) < 0 || sbx_net_loopback_up(&m) < 0)
    return NULL;
  *out = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  return NULL;
}

int sbx_net_pool_get(void) {
  pthread_t th;
  int fd = -1;

  pthread_mutex_lock(&g_pool_mu);
  if (g_pool_n > 0)
    fd = g_pool[--g_pool_n];
  else if (g_pool_off)
    fd = -2;
  pthread_mutex_unlock(&g_pool_mu);
  if (fd != -1)
    return fd < 0 ? -1 : fd;
  if (geteuid() != 0 || pthread_create(&th, NULL, create_ns, &fd) != 0) {
    fd = -1;
  } else {
    pthread_join(th, NULL);
  }
  if (fd < 0) {
    pthread_mutex_lock(&g_pool_mu);
    g_pool_off = 1;
    pthread_mutex_unlock(&g_pool_mu);
  }
  return fd;
}

void sbx_net_pool_put(int fd) {
  if (fd < 0)
    return;
  pthread_mutex_lock(&g_pool_mu);
  if (g_pool_n < NET_POOL_MAX) {
    g_pool[g_pool_n++] = fd;
    fd = -1;
  }
  pthread_mutex_unlock(&g_pool_mu);
  if (fd >= 0)
    close(fd);
}

int sbx_net_pool_enter(int fd) {
  if (t_home_fd < 0) {
    t_home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (t_home_fd < 0)
      return -errno;
  }
  return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

void sbx_net_pool_leave(void) {
  if (setns(t_home_fd, CLONE_NEWNET) < 0)
    abort(); /* never run the worker's own I/O in a sandbox namespace */
}
