/*
 * Internal interfaces between the sandbox modules.  Not installed.
 *
 * Two error models (see the C style reference, habit 7):
 *  - parent side (sbx.c, sbx_cgroup.c, plan building): int return, 0 or a
 *    negative DB_E* code, one cleanup label;
 *  - child side (everything after clone()): functions return 0 or -errno
 *    and record the failing step in a sbx_msg; the orchestrator writes it
 *    to the report pipe and calls _exit(127).
 * Child-side code runs in a copy of a possibly multi-threaded parent, so it
 * must only make system calls: no malloc, no stdio, no locks.  Everything it
 * needs is prepared by the parent in a sbx_plan.
 */
#ifndef SBX_INT_H
#define SBX_INT_H

#include "sandbox.h"

#include <linux/filter.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* ---- report pipe messages (child -> parent) ------------------------------ */

enum sbx_step {
  SBX_STEP_NONE = 0,
  SBX_STEP_SYNC,
  SBX_STEP_IDS,
  SBX_STEP_MOUNT,
  SBX_STEP_NET,
  SBX_STEP_UTS,
  SBX_STEP_CAPS,
  SBX_STEP_RLIMIT,
  SBX_STEP_INIT,
  SBX_STEP_STDIO,
  SBX_STEP_CWD,
  SBX_STEP_SECCOMP,
  SBX_STEP_EXEC,
};

enum { SBX_MSG_ERROR = 1, SBX_MSG_STATUS = 2 };

/* One message, written with a single write(2) (< PIPE_BUF: atomic). */
struct sbx_msg {
  int kind;   /* SBX_MSG_* */
  int step;   /* enum sbx_step, for errors */
  int err;    /* errno, for errors */
  int status; /* wait status of the action, for SBX_MSG_STATUS */
  char detail[192];
};

const char *sbx_step_name(int step);

/* ---- the plan: everything the child needs, built by the parent ------------
 */

enum sbx_op_kind {
  SBX_OP_BIND_RO,
  SBX_OP_BIND_RW,
  SBX_OP_BIND_DEV, /* device node: writable, nosuid, noexec, no nodev */
  SBX_OP_TMPFS,
  SBX_OP_SYMLINK,
  SBX_OP_PROC,
  SBX_OP_DIR,
  SBX_OP_REMOUNT_RO, /* make an earlier tmpfs (e.g. /dev) read-only */
};

struct sbx_op {
  int kind;
  const char *src;  /* binds: source path; symlinks: target */
  int src_host;     /* 1: a host path, opened before the root tmpfs hides it */
  int src_is_dir;   /* binds: the mount point to create is a directory */
  const char *dst;  /* absolute path under the staging dir (owned) */
  const char *data; /* tmpfs options */
};

#define SBX_MAX_OPS 256
#define SBX_MAX_DEVS 4
#define SBX_STACK_SIZE (256 * 1024)

/* Internal request kinds beyond sbx_mount_kind (default layout). */
enum { SBX_REQ_SYMLINK = 100 };

struct sbx_req_mount {
  int kind; /* sbx_mount_kind or SBX_REQ_SYMLINK */
  char *src;
  char *dst;
};

/* The request (opaque to users, shared by sbx.c and sbx_mount.c). */
struct sbx_request {
  char **argv;
  char **envp;
  char *cwd;
  struct sbx_req_mount *mounts;
  size_t n_mounts, cap_mounts;
  sbx_limits limits;
  sbx_mode mode;
  int stdio_fd[3];
  char *stdio_path[3];
  int cancel_fd; /* borrowed; -1 = none (sbx_request_set_cancel_fd) */
  /* Extra special files bound into /dev (sbx_request_add_dev). */
  char *dev_src[SBX_MAX_DEVS];
  char *dev_name[SBX_MAX_DEVS];
  size_t n_devs;
  int probe_only;   /* internal: the probe's test sandbox */
  int force_legacy; /* internal/tests: SBX_FORCE_LEGACY_MOUNT=1 */
};

typedef struct sbx_plan {
  /* mounts */
  struct sbx_op *ops;
  size_t n_ops;
  const char *stage; /* staging directory for the new root ("/tmp") */
  int legacy_mount;  /* 1: mount(2) + mountinfo remounts, not mount_setattr */
  /* identity */
  uid_t in_uid;
  gid_t in_gid;
  uid_t host_uid; /* what in_uid maps to */
  gid_t host_gid;
  int drop_groups; /* setgroups(0, NULL): needs setgroups "allow" */
  /* action */
  char *const *argv;
  char *const *envp;
  const char *path; /* PATH for the lookup of argv[0] */
  const char *cwd;  /* inside the sandbox */
  int stdio[3];
  int sync_rd;   /* parent's go-ahead; EOF = parent died */
  int report_wr; /* struct sbx_msg stream to the parent */
  sbx_limits limits;
  void *action_stack; /* SBX_STACK_SIZE bytes for the vfork-like action */
  int use_ns;         /* 0 in SBX_MODE_NONE */
  int probe_only;     /* the action exits 0 instead of execve */
  /* immutable, from the probe */
  const struct sock_fprog *seccomp;
  void *caps_empty; /* cap_t */
  int net_fd;       /* pooled network namespace the child starts in, or -1 */
  int pid1_fd;      /* memfd of the sbx-init program, or -1: see sbx_init.c */
} sbx_plan;

/* ---- sbx_util.c: async-signal-safe helpers --------------------------------
 */

int sbx_util_write_all(int fd, const void *buf, size_t len);
/* dst = a + b, fails with -ENAMETOOLONG. */
int sbx_util_join(char *dst, size_t cap, const char *a, const char *b);
size_t sbx_util_strlcpy(char *dst, const char *src, size_t cap);
/* Append v in decimal to the NUL-terminated string in dst (capacity cap),
 * without stdio; -ENAMETOOLONG if it does not fit. */
int sbx_util_append_uint(char *dst, size_t cap, unsigned v);
int sbx_util_mkdir_p(const char *path, mode_t mode);
/* Close every fd except |keep| (unsorted, may contain -1). */
void sbx_util_close_except(const int *keep, size_t n);
/* Write |s| to an existing file (cgroup/proc knobs). 0 or -errno. */
int sbx_util_write_str(const char *path, const char *s);
/* Read up to cap-1 bytes, NUL-terminate. Returns length or -errno. */
ssize_t sbx_util_read_str(const char *path, char *buf, size_t cap);
uint64_t sbx_util_now_us(void);
/* snprintf for messages where truncation is fine (parent side only). */
void sbx_util_msg(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Raw fork-like clone: child returns 0.  pidfd may be NULL. */
pid_t sbx_util_clone(unsigned long flags, int *pidfd);
/* Name the calling task (PR_SET_NAME, 15 bytes kept) by the raw system
 * call, safe in a raw clone of a multi-threaded process: a sanitizer's
 * prctl() interceptor records the name under a lock that another thread
 * may have held at the clone, and the child would wait on it forever. */
void sbx_util_set_name(const char *name);
/* Record an error in |m| (detail may be NULL). Returns -err. */
int sbx_util_fail(struct sbx_msg *m, int step, int err, const char *detail);

/* ---- sbx_ns.c ------------------------------------------------------------ */

unsigned long sbx_ns_clone_flags(void);
/* Probe which namespaces can be created; returns SBX_NS_* bits. */
unsigned sbx_ns_probe(char *why, size_t len);
/* Parent: write setgroups, uid_map, gid_map of |pid|. 0 or -errno. */
int sbx_ns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid,
                      int allow_setgroups);
/* Child: become in_uid/in_gid (capabilities in the new userns are kept). */
int sbx_ns_switch_ids(const sbx_plan *p, struct sbx_msg *m);

/* ---- sbx_mount.c ----------------------------------------------------------
 */

/* Parent: build p->ops from the request's mounts. */
int sbx_mount_plan_build(const sbx_request *req, sbx_plan *p, char *err,
                         size_t errlen);
void sbx_mount_plan_free(sbx_plan *p);
/* Child, before the ids change: O_PATH fds on the host bind sources
 * (fds[i] for p->ops[i], -1 where unused).  0 or -errno. */
int sbx_mount_open_sources(const sbx_plan *p, int *fds, struct sbx_msg *m);
/* Child: the rest of the mount step, ending inside the new root. */
int sbx_mount_setup(const sbx_plan *p, const int *fds, struct sbx_msg *m);
int sbx_mount_api_available(void);

/* ---- sbx_net.c / sbx_uts.c ------------------------------------------------
 */

int sbx_net_loopback_up(struct sbx_msg *m);
/* Reusable network namespaces (see sbx_net.c).  get: an fd on an idle
 * namespace whose "lo" is up, or -1 when the pool cannot be used here (not
 * root); the caller owns it until put.  enter: switch the calling thread
 * into it for the clone; leave: back to the thread's own namespace (aborts
 * the process if that fails: the thread must not stay in the sandbox's
 * namespace). */
int sbx_net_pool_get(void);
void sbx_net_pool_put(int fd);
int sbx_net_pool_enter(int fd);
void sbx_net_pool_leave(void);
#define SBX_HOSTNAME "localhost"
int sbx_uts_set_hostname(struct sbx_msg *m);

/* ---- sbx_caps.c ------------------------------------------------------------
 */

/* Once: an empty cap_t for the child (never freed). NULL on failure. */
void *sbx_caps_prepare(void);
/* Child: bounding, ambient, inheritable/permitted/effective, NNP, rlimits. */
int sbx_caps_drop(const sbx_plan *p, struct sbx_msg *m);
int sbx_caps_rlimits(const sbx_plan *p, struct sbx_msg *m);

/* ---- sbx_seccomp.c ----------------------------------------------------------
 */

/* Once: compile the filter to BPF.  0 or a DB_E* code. */
int sbx_seccomp_build(struct sock_fprog *out, char *err, size_t errlen);
/* Child: load the filter (NNP must already be set). */
int sbx_seccomp_apply(const struct sock_fprog *prog, struct sbx_msg *m);

/* ---- sbx_init.c -------------------------------------------------------------
 */

/* Child (pid 1): fork the action, reap everything, report its status,
 * exit.  Never returns. */
void sbx_init_run(const sbx_plan *p) __attribute__((noreturn));
/* The action process: stdio, cwd, signals, seccomp, execve.  Never returns. */
void sbx_init_exec_action(const sbx_plan *p) __attribute__((noreturn));
void sbx_child_die(const sbx_plan *p, const struct sbx_msg *m)
    __attribute__((noreturn));
/* Parent: a memfd holding the sbx-init program, made once per process and
 * kept open (CLOEXEC); -1 if this kernel refuses (pid 1 then stays the
 * in-process init).  Thread-safe. */
int sbx_init_image_fd(void);

/* ---- sbx_reap.c ------------------------------------------------------------
 */

/* Pid 1's loop: reap every child until |action| exits, write its wait
 * status to |report_fd| as SBX_MSG_STATUS, _exit(0).  System calls only. */
void sbx_reap_report(pid_t action, int report_fd) __attribute__((noreturn));

/* The sbx-init executable's bytes (sbx_pid1_image.c). */
extern const unsigned char sbx_pid1_image[], sbx_pid1_image_end[];

/* ---- sbx_cgroup.c ----------------------------------------------------------
 */

typedef struct sbx_cgroup sbx_cgroup;

/* Once: choose the backend (v2 where writable, delegating as needed, else
 * v1 memory/pids/cpu), record it in |f|. */
void sbx_cgroup_probe(sbx_features *f);
/* Create a per-action cgroup with |lim| applied.  *out is NULL when no
 * backend is available.  0 or DB_E*. Free with sbx_cgroup_free(). */
int sbx_cgroup_new(const sbx_limits *lim, sbx_cgroup **out, char *err,
                   size_t errlen);
/* Write |lim| into an existing cgroup; pids.max gets |extra_tasks| more
 * (an anchor thread still inside).  0 or DB_ESYS with |err| filled. */
int sbx_cgroup_apply(sbx_cgroup *cg, const sbx_limits *lim,
                     unsigned extra_tasks, char *err, size_t errlen);
int sbx_cgroup_attach(sbx_cgroup *cg, pid_t pid);
/* Anchors (v1 only, see sbx_anchor.c): create a limit-less cgroup set with
 * the hierarchies |lim| needs and move the calling thread into it.
 * 0 (*out owned by the caller), DB_EUNSUPP (not v1), DB_E* otherwise. */
int sbx_cgroup_new_anchor(const sbx_limits *lim, sbx_cgroup **out);
/* Move the calling thread back to the cgroups per-action ones are made in. */
void sbx_cgroup_leave_thread(void);
/* Copy the v1 pids directory of |cg| into |out|. 0 or DB_ENOTFOUND. */
int sbx_cgroup_pids_dir(const sbx_cgroup *cg, char *out, size_t cap);
/* Kill every process in the cgroup (v2 cgroup.kill, else each pid). */
void sbx_cgroup_kill(sbx_cgroup *cg);
/* Read accounting; fields not available are left untouched. */
void sbx_cgroup_stats(sbx_cgroup *cg, sbx_result *res);
/* Remove the cgroup (waits briefly for it to empty) and free. NULL-safe. */
void sbx_cgroup_free(sbx_cgroup *cg);
sbx_cgroup_mode sbx_cgroup_mode_of(const sbx_cgroup *cg);

/* sbx.c: clone the sandbox's pid 1 (|flags| | SIGCHLD) from the calling
 * thread, in the pooled network namespace p->net_fd when there is one
 * (setns is per thread).  The child runs the set-up and never returns.
 * Returns the pid, or -1 with errno set and *what naming the failed step
 * ("setns net" or "clone"). */
pid_t sbx_clone_pid1(sbx_plan *p, unsigned long flags, int *pidfd,
                     const char **what);

/* ---- sbx_anchor.c ----------------------------------------------------------
 */

typedef struct sbx_anchor sbx_anchor;

/* A ready anchor whose cgroup set fits |lim|, waiting briefly for one that
 * is being prepared; NULL when there is none (then one is started for next
 * time, and the caller creates and attaches a cgroup itself).  The caller
 * owns *cg from here on: it writes the limits, then calls
 * sbx_anchor_fork() or sbx_anchor_fork(a, NULL, ...) to give the anchor
 * back without forking. */
sbx_anchor *sbx_anchor_take(const sbx_limits *lim, sbx_cgroup **cg);
/* Have the anchor thread run sbx_clone_pid1(|p|, |flags|) from inside its
 * cgroup set.  Returns the pid (the child is this process's to reap), or -1
 * with errno set and *what naming the failed step.  p == NULL: no fork,
 * returns 0.  Either way |a| goes back to its pool and must not be used
 * again.  pidfd and what may be NULL. */
pid_t sbx_anchor_fork(sbx_anchor *a, sbx_plan *p, unsigned long flags,
                      int *pidfd, const char **what);

/* Cgroup-file parsers, exposed for unit tests.
 * Find the value of |key| in "key value\n" lines. 0 or DB_ENOTFOUND. */
int sbx_cgroup_parse_kv(const char *text, const char *key, uint64_t *out);
/* Given /proc/self/cgroup text, the path of the v1 hierarchy that holds
 * |ctrl| (or the v2 path when ctrl is ""). 0 or DB_ENOTFOUND. */
int sbx_cgroup_parse_self(const char *text, const char *ctrl, char *out,
                          size_t cap);

/* ---- sbx_probe.c ------------------------------------------------------------
 */

/* The once-built immutable pieces the child needs. */
const struct sock_fprog *sbx_probe_seccomp(void);
void *sbx_probe_caps(void);

/* ---- sbx_wire.c / sbx_spawn.c --------------------------------------------
 */

/* Serialise |req| without its fds into a malloc'd buffer (*out, owned by
 * the caller).  0, DB_ENOMEM or DB_ETOOBIG. */
int sbx_wire_encode(const sbx_request *req, unsigned char **out, size_t *len);
/* Rebuild a request from |len| bytes; its fds are left at -1.  0 (*out
 * owned by the caller), DB_EINVAL for anything the encoder could not have
 * written (truncated, trailing bytes, bad values), DB_ENOMEM. */
int sbx_wire_decode(const void *buf, size_t len, sbx_request **out);
/* Unit tests: 1 when |a| and |b| hold the same request, fds aside. */
int sbx_wire_equal(const sbx_request *a, const sbx_request *b);

/* sbx_spawn_run() did not hand the request over: run it in-process. */
#define SBX_SPAWN_LOCAL 1
/* Run |req| through this process's spawner.  Returns SBX_SPAWN_LOCAL when
 * there is none (or it is gone and nothing ran), else what sbx_run()
 * returned there, with |res| filled; DB_ESYS if the spawner died during
 * the run. */
int sbx_spawn_run(const sbx_request *req, sbx_result *res);
/* Close the control socket and reap the spawner (sbx_shutdown()). */
void sbx_spawn_stop(void);

/* ---- sbx.c ----------------------------------------------------------------
 */

/* Append a mount of any kind, SBX_REQ_SYMLINK included (copies src, dst).
 * 0, DB_EINVAL (dst not absolute) or DB_ENOMEM. */
int sbx_request_push_mount(sbx_request *r, int kind, const char *src,
                           const char *dst);
/* The action's stdio: fds[i] is the request's fd, or a file this opens
 * (the stdio path, else /dev/null) and stores in owned[i] for the caller
 * to close; owned[i] is -1 otherwise.  0, or DB_EIO with |err| naming the
 * file (nothing left open). */
int sbx_stdio_open(const sbx_request *req, int fds[3], int owned[3], char *err,
                   size_t errlen);

/* Fill |p| from |req| and the probe report. Always 0. */
int sbx_plan_init(sbx_plan *p, const sbx_request *req, const sbx_features *f);
/* Run a plan (used by sbx_run and by the probe's test sandbox). */
int sbx_run_plan(sbx_plan *p, const sbx_request *req, sbx_result *res);

#endif
