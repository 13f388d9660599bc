/*
 * Cgroup anchors: threads that wait inside a fresh cgroup set before any
 * action needs it, so that the sandbox forked from one starts inside its
 * cgroups without a migration (cgroup v1 only).
 *
 * Why: moving a task into a cgroup (a write to cgroup.procs) takes the
 * kernel's cgroup_threadgroup_rwsem for writing, and that waits for an RCU
 * grace period whenever the lock was idle.  On this project's 2-CPU hosts
 * (kernel 6.18, v1 hybrid) that is 5-20 ms per action, paid between clone()
 * and the go-ahead: on the critical path of every pipelined crate.  A
 * child inherits the cgroups of the thread that forks it under the read
 * side of the same lock, which costs nothing, and v1 can move one thread
 * on its own (the "tasks" file).  So an anchor moves itself into the next
 * set while nothing waits for it, and pays the grace period there.
 *
 * cgroup v2 does not allow threads of one process in different domain
 * cgroups; clone3(CLONE_INTO_CGROUP) is the v2 way to the same end and is
 * not done here, so v2 hosts still attach.
 *
 * Life of an anchor: PREPARING (make a set, move into it; the move out of
 * the previous set is the same write) -> READY -> TAKEN by one sbx_run,
 * which now owns the set and writes its limits -> FORK: the anchor clones
 * the sandbox there, hands back the pid and goes on PREPARING.  It stays in
 * the action's set for one grace period after the fork, so pids.max is one
 * higher until it has left, and the cgroup kill skips this process's pid.
 * An anchor is a pthread, never a thread-group leader, and the memcg OOM
 * killer only walks leaders, so it cannot pick this process meanwhile.
 * Anchors never exit: PR_SET_PDEATHSIG of the sandboxes they forked is tied
 * to them.  One that cannot make a set parks, out of every action's set.
 */
#include "sbx_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Anchors per process: the worker's spawner needs one per slot. */
#define ANCHOR_MAX 16
/* How long sbx_anchor_take() waits for one being prepared: less than the
 * 5-20 ms attach it saves when the wait pays off, and a bounded loss when
 * it does not (the caller then attaches as before). */
#define TAKE_WAIT_MS 10

enum { A_PREPARING, A_READY, A_TAKEN, A_FORK, A_QUIT, A_DEAD };

/* One fork request, owned by the caller of sbx_anchor_fork().  The reply is
 * written here, not into the anchor: once the anchor is back in the pool,
 * another run may take it and fork again before this caller wakes up. */
struct fork_req {
  sbx_plan *plan; /* NULL: give the anchor back without forking */
  unsigned long flags;
  pid_t pid;
  int pidfd;
  int err;
  const char *what; /* the step that failed */
  int done;         /* under g_mu */
};

struct sbx_anchor {
  int state;               /* A_*, under g_mu */
  sbx_limits shape;        /* which hierarchies its sets have */
  sbx_cgroup *cg;          /* the set it sits in while READY */
  char pids_dir[PATH_MAX]; /* set it forked into: pids.max to restore */
  unsigned pids;
  struct fork_req *req; /* while A_FORK, under g_mu */
  struct sbx_anchor *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static sbx_anchor *g_list;
static int g_n;
static int g_broken; /* an anchor could not prepare, or shutdown: no more */
static int g_seen;   /* limited runs so far: one alone needs no anchor */

static int same_shape(const sbx_limits *a, const sbx_limits *b) {
  return !a->pids == !b->pids && !a->cpu_millis == !b->cpu_millis;
}

/* Runs in the anchor thread: clone the sandbox child from here.  The
 * caller waits for r->done, so r stays valid until then. */
static void do_fork(struct fork_req *r) {
  int pidfd = -1;
  const char *what = "clone";
  pid_t pid = 0;
  if (r->plan)
    pid = sbx_clone_pid1(r->plan, r->flags, &pidfd, &what);
  r->err = errno;
  r->pid = pid;
  r->pidfd = pid > 0 ? pidfd : -1;
  r->what = what;
}

/* Give the action's set its exact pids.max once this thread has left. */
static void restore_pids(const char *dir, unsigned pids) {
  char path[PATH_MAX + 16], v[32];
  snprintf(path, sizeof(path), "%s/pids.max", dir);
  snprintf(v, sizeof(v), "%u", pids);
  (void)sbx_util_write_str(path, v); /* gone already when the run was short */
}

static void *anchor_main(void *arg) {
  sbx_anchor *a = arg;
  char dir[PATH_MAX];
  unsigned pids;
  struct fork_req *r;
  for (;;) {
    sbx_cgroup *cg = NULL;
    int rc = sbx_cgroup_new_anchor(&a->shape, &cg);
    pthread_mutex_lock(&g_mu);
    snprintf(dir, sizeof(dir), "%s", a->pids_dir);
    pids = a->pids;
    a->pids_dir[0] = '\0';
    pthread_mutex_unlock(&g_mu);
    if (rc != 0 || !cg)
      break;
    if (dir[0])
      restore_pids(dir, pids);
    pthread_mutex_lock(&g_mu);
    a->cg = cg;
    a->state = A_READY;
    pthread_cond_broadcast(&g_cv);
    while (a->state != A_FORK && a->state != A_QUIT)
      pthread_cond_wait(&g_cv, &g_mu);
    if (a->state == A_QUIT) {
      pthread_mutex_unlock(&g_mu);
      sbx_cgroup_leave_thread();
      sbx_cgroup_free(cg);
      pthread_mutex_lock(&g_mu);
      a->cg = NULL;
      goto park;
    }
    r = a->req;
    pthread_mutex_unlock(&g_mu);
    do_fork(r);
    pthread_mutex_lock(&g_mu);
    r->done = 1;
    a->req = NULL;
    a->state = A_PREPARING;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
  }
  /* Out of every action's set, then park for good (see the top). */
  sbx_cgroup_leave_thread();
  if (dir[0])
    restore_pids(dir, pids);
  DB_WARN("sandbox", "a cgroup anchor could not prepare a cgroup; sandboxes "
                     "are attached after clone() instead");
  pthread_mutex_lock(&g_mu);
  g_broken = 1;
park:
  a->state = A_DEAD;
  pthread_cond_broadcast(&g_cv);
  for (;;)
    pthread_cond_wait(&g_cv, &g_mu);
  return NULL;
}

/* Under g_mu: add an anchor for |lim|'s shape; it becomes READY later. */
static void spawn(const sbx_limits *lim) {
  pthread_attr_t at;
  pthread_t th;
  sbx_anchor *a = calloc(1, sizeof(*a));
  if (!a)
    return;
  a->state = A_PREPARING;
  a->shape = *lim;
  if (pthread_attr_init(&at) != 0) {
    free(a);
    return;
  }
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&th, &at, anchor_main, a) == 0) {
    a->next = g_list;
    g_list = a;
    g_n++;
  } else {
    free(a);
  }
  pthread_attr_destroy(&at);
}

sbx_anchor *sbx_anchor_take(const sbx_limits *lim, sbx_cgroup **cg) {
  struct timespec dl;
  sbx_anchor *a;
  int preparing = 0;

  *cg = NULL;
  if (sbx_probe()->cgroup != SBX_CGROUP_V1)
    return NULL;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_nsec += TAKE_WAIT_MS * 1000000L;
  if (dl.tv_nsec >= 1000000000L) {
    dl.tv_sec++;
    dl.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&g_mu);
  for (; !g_broken;) {
    preparing = 0;
    for (a = g_list; a; a = a->next) {
      if (!same_shape(&a->shape, lim))
        continue;
      if (a->state == A_READY) {
        a->state = A_TAKEN;
        *cg = a->cg;
        a->cg = NULL;
        if (sbx_cgroup_pids_dir(*cg, a->pids_dir, sizeof(a->pids_dir)) != 0)
          a->pids_dir[0] = '\0';
        a->pids = lim->pids;
        pthread_mutex_unlock(&g_mu);
        return a;
      }
      preparing |= a->state == A_PREPARING;
    }
    if (!preparing || pthread_cond_timedwait(&g_cv, &g_mu, &dl) == ETIMEDOUT)
      break;
  }
  /* Every anchor of this shape is busy: one more for next time, unless
   * this is the process's first limited run (a one-shot CLI run would only
   * leave an empty cgroup behind). */
  if (!g_broken && !preparing && g_seen && g_n < ANCHOR_MAX)
    spawn(lim);
  g_seen = 1;
  pthread_mutex_unlock(&g_mu);
  return NULL;
}

pid_t sbx_anchor_fork(sbx_anchor *a, sbx_plan *p, unsigned long flags,
                      int *pidfd, const char **what) {
  struct fork_req r;
  memset(&r, 0, sizeof(r));
  r.plan = p;
  r.flags = flags;
  r.pidfd = -1;
  pthread_mutex_lock(&g_mu);
  if (!p)
    a->pids_dir[0] = '\0'; /* the set is not the action's: nothing to fix */
  a->req = &r;
  a->state = A_FORK;
  pthread_cond_broadcast(&g_cv);
  /* Not "while A_FORK": by the time this thread runs again, the anchor may
   * be READY, TAKEN or forking for another run. */
  while (!r.done)
    pthread_cond_wait(&g_cv, &g_mu);
  pthread_mutex_unlock(&g_mu);
  if (what)
    *what = r.what;
  if (pidfd)
    *pidfd = r.pidfd;
  else if (r.pidfd >= 0)
    close(r.pidfd);
  if (r.pid < 0)
    errno = r.err;
  return r.pid;
}

void sbx_shutdown(void) {
  struct timespec dl;
  int busy = 1;
  sbx_spawn_stop(); /* it removes its own anchors */
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 2;
  pthread_mutex_lock(&g_mu);
  g_broken = 1;
  while (busy) {
    busy = 0;
    for (sbx_anchor *a = g_list; a; a = a->next) {
      if (a->state == A_READY) {
        a->state = A_QUIT;
        pthread_cond_broadcast(&g_cv);
      }
      busy |= a->state != A_DEAD;
    }
    if (busy && pthread_cond_timedwait(&g_cv, &g_mu, &dl) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&g_mu);
}
