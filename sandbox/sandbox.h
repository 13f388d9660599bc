/*
 * libsandbox: run one command in a Linux namespace + seccomp + cgroup
 * sandbox (issue 3).  Public API for the worker and the debug CLI.
 *
 * Set-up order, one module per kernel facility (see sbx.c for details):
 *   1. sbx_ns.c      clone(NEWUSER|NEWNS|NEWPID|NEWNET|NEWIPC|NEWUTS),
 *                    uid/gid maps written by the parent, ids switched.
 *   2. sbx_mount.c   "/" made private, tmpfs root, recursive read-only
 *                    binds, minimal /dev, fresh /proc, pivot_root, old
 *                    root detached, root remounted read-only.
 *   3. sbx_net.c     loopback up, nothing else (a root worker reuses idle
 *                    network namespaces it owns, "lo" already up).
 *   4. sbx_uts.c     fixed hostname.
 *   5. sbx_caps.c    all capabilities dropped (libcap), no_new_privs,
 *                    RLIMIT_CORE=0, RLIMIT_FSIZE, RLIMIT_CPU.
 *   6. sbx_init.c    pid 1 forks the action and reaps everything.
 *   7. sbx_seccomp.c libseccomp deny-list, loaded last, right before execve.
 * Limits and accounting live in sbx_cgroup.c (v2, v1 fallback); the
 * wall-clock timeout kills pid 1, which takes the whole PID namespace down.
 *
 * Identity: the action runs as uid/gid SBX_INSIDE_ID inside the sandbox.
 * The user namespace maps only that id, to the caller's uid/gid, or, when
 * the caller is root, to an unprivileged host id (65534 by default).  No
 * id maps to 0 inside, so there is no "root" in the sandbox at all.  As a
 * consequence, writable bind sources must be writable by that host id
 * (sbx_features.host_uid / host_gid).
 *
 * Thread safety: sbx_probe() is initialised once (pthread_once); sbx_run()
 * may be called concurrently from several threads with distinct requests.
 * Global state: the probe, the cgroup anchors and the spawner.  sbx_run()
 * must not be used while another thread reaps children with
 * waitpid(-1, ...).
 */
#ifndef SANDBOX_H
#define SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Uid and gid of the action inside the sandbox. */
#define SBX_INSIDE_ID 1000

/* ---- feature probe ------------------------------------------------------ */

enum {
  SBX_NS_USER = 1 << 0,
  SBX_NS_MOUNT = 1 << 1,
  SBX_NS_PID = 1 << 2,
  SBX_NS_NET = 1 << 3,
  SBX_NS_IPC = 1 << 4,
  SBX_NS_UTS = 1 << 5,
  SBX_NS_ALL = (1 << 6) - 1,
};

typedef enum sbx_cgroup_mode {
  SBX_CGROUP_NONE = 0,
  SBX_CGROUP_V1 = 1,
  SBX_CGROUP_V2 = 2,
} sbx_cgroup_mode;

enum {
  SBX_CTRL_MEMORY = 1 << 0,
  SBX_CTRL_PIDS = 1 << 1,
  SBX_CTRL_CPU = 1 << 2,
};

/* What this host supports, computed once per process by sbx_probe(). */
typedef struct sbx_features {
  unsigned ns;            /* SBX_NS_* bits that can be created */
  int sandbox_ok;         /* 1: a full test sandbox was set up and torn down */
  int seccomp;            /* 1: filter compiled and loadable */
  int caps;               /* 1: capabilities can be dropped with libcap */
  int mount_api;          /* 1: open_tree/mount_setattr (else legacy remount) */
  sbx_cgroup_mode cgroup; /* cgroup backend used for limits */
  unsigned cgroup_ctrl;   /* SBX_CTRL_* usable with that backend */
  uid_t host_uid;         /* host uid/gid the action runs as */
  gid_t host_gid;
  char detail[512]; /* why something is missing ("" if nothing) */
} sbx_features;

/* Probe the host once (thread-safe; later calls return the same report).
 * The first call may take a few milliseconds: it clones a test sandbox,
 * compiles the seccomp filter and, for cgroup v2, delegates: if the current
 * cgroup has no controllers enabled for its children, it moves this process
 * into a leaf "<cgroup>/sbx-worker" and enables memory, pids and cpu.
 * Never returns NULL; the report lives until the process exits. */
const sbx_features *sbx_probe(void);

/* Format the one-line report, e.g. "sandbox: namespaces=user,mount,pid,net,
 * ipc,uts seccomp=on caps=dropped cgroup=v1(memory,pids,cpu)
 * limits=memory,pids,cpu,timeout".  Missing features are named in an
 * "unavailable=..." field.  Returns the length written (truncated to fit
 * |len|, always NUL-terminated when len > 0). */
size_t sbx_features_format(const sbx_features *f, char *buf, size_t len);

/* Sandbox mode chosen by the operator. */
typedef enum sbx_mode {
  SBX_MODE_NAMESPACES = 0, /* the full sandbox (default) */
  SBX_MODE_NONE = 1,       /* explicit --sandbox=none: no isolation */
} sbx_mode;

/* Decide whether a worker may start in |mode|.  SBX_MODE_NAMESPACES needs
 * every namespace, a working test sandbox and seccomp; otherwise returns
 * DB_EUNSUPP and writes the reason (naming the missing feature and the
 * --sandbox=none escape hatch) into |err|.  SBX_MODE_NONE always returns 0
 * and logs a warning that actions run unsandboxed. */
int sbx_check_mode(sbx_mode mode, char *err, size_t errlen);

/* Parse "namespaces" / "none" (as given to --sandbox=).  0 or DB_EINVAL. */
int sbx_mode_parse(const char *s, sbx_mode *out);

/* ---- request --------------------------------------------------------------
 */

typedef struct sbx_limits {
  uint64_t memory_bytes;   /* cgroup memory (and memsw) limit; 0 = none */
  uint32_t pids;           /* cgroup pids.max (tasks, i.e. threads); 0 = none */
  uint32_t cpu_millis;     /* CPU bandwidth in 1/1000 CPUs; 0 = none */
  uint32_t cpu_seconds;    /* RLIMIT_CPU per process; 0 = none */
  uint64_t timeout_ms;     /* wall clock, whole tree killed; 0 = none */
  uint64_t max_file_bytes; /* RLIMIT_FSIZE; 0 = none */
  /* Added to the niceness (lower CPU priority, capped at 19); 0 = none.
   * A worker nices actions so its own short coordination work (and the
   * machine's other work) is not queued behind long compiles. */
  uint32_t nice;
} sbx_limits;

typedef enum sbx_mount_kind {
  SBX_MOUNT_RO_BIND = 0, /* recursive bind, every submount read-only */
  SBX_MOUNT_RW_BIND = 1, /* recursive bind, writable (nosuid, nodev) */
  SBX_MOUNT_TMPFS = 2,   /* empty writable tmpfs (src ignored) */
} sbx_mount_kind;

typedef struct sbx_request sbx_request;

/* Allocate an empty request: no argv, empty environment, cwd "/",
 * no mounts, no limits, stdin/stdout/stderr on /dev/null.
 * Returns 0 or DB_ENOMEM.  Free with sbx_request_free(). */
int sbx_request_new(sbx_request **out);
void sbx_request_free(sbx_request *req);

/* All setters copy their arguments; the caller keeps ownership of what it
 * passed.  They return 0, DB_ENOMEM, or DB_EINVAL for bad arguments. */

/* NULL-terminated argv; argv[0] is the program: an absolute path inside the
 * sandbox or a name looked up in the request's PATH (default
 * "/usr/local/bin:/usr/bin:/bin"). */
int sbx_request_set_argv(sbx_request *req, const char *const *argv);
/* NULL-terminated "K=V" list; the action sees exactly this environment. */
int sbx_request_set_env(sbx_request *req, const char *const *envp);
/* Working directory inside the sandbox (absolute). Created on the root
 * tmpfs if it is not inside a mount. */
int sbx_request_set_cwd(sbx_request *req, const char *dir);

/* Add a mount.  |dst| is absolute inside the sandbox; |src| is a host path
 * (ignored for tmpfs).  Mounts are applied in the order added, so a
 * writable output directory may be placed inside a read-only input root
 * added before it (its mount point must then exist in the input root).
 * A mount at a path that sbx_request_add_default_layout() made a symlink
 * replaces that symlink. */
int sbx_request_add_mount(sbx_request *req, sbx_mount_kind kind,
                          const char *src, const char *dst);
/* The host's system directories read-only (/usr, /etc, and /bin, /sbin,
 * /lib, /lib32, /lib64, /libx32 as binds or, when they are symlinks as on
 * merged-/usr systems, as the same symlinks) plus a tmpfs /tmp. */
int sbx_request_add_default_layout(sbx_request *req);

/* Bind the host special file |src| (a FIFO or character device that the
 * caller controls, e.g. a jobserver FIFO) read-write at /dev/|name| inside
 * the sandbox.  |name| is [A-Za-z0-9._-]+ and not one of the built-in
 * entries (null, zero, full, random, urandom, fd, stdin, stdout, stderr).
 * At most 4.  Ignored in SBX_MODE_NONE.  sbx_run() then fails with
 * DB_ENOTFOUND when |src| is missing, DB_EINVAL when it is not a FIFO or
 * character device.
 * Returns 0, DB_EINVAL (bad name or path, duplicate), DB_ETOOBIG or
 * DB_ENOMEM. */
int sbx_request_add_dev(sbx_request *req, const char *src, const char *name);

void sbx_request_set_limits(sbx_request *req, const sbx_limits *lim);
void sbx_request_set_mode(sbx_request *req, sbx_mode mode);

/* Where the action's stdin/stdout/stderr go.  |stream| is 0, 1 or 2.
 * set_fd: the fd is borrowed for the duration of sbx_run() (-1 = /dev/null).
 * set_path: a host file opened by sbx_run() (stdout/stderr: created or
 * truncated, mode 0644; stdin: read).  The last call for a stream wins. */
int sbx_request_set_stdio_fd(sbx_request *req, int stream, int fd);
int sbx_request_set_stdio_path(sbx_request *req, int stream, const char *path);

/* Cancellation: sbx_run() kills the whole sandbox as soon as |fd| polls
 * readable (an eventfd or a pipe that another thread writes to), sets
 * res->cancelled and returns 0.  The fd is borrowed for the duration of
 * sbx_run() and never read, so one written before sbx_run() starts
 * cancels the run at once.  -1 (the default) = not cancellable. */
void sbx_request_set_cancel_fd(sbx_request *req, int fd);

/* ---- run ------------------------------------------------------------------
 */

typedef struct sbx_result {
  int exited; /* 1: exited normally with exit_code */
  int exit_code;
  int term_signal;            /* signal that killed it (when !exited) */
  int timed_out;              /* killed by the wall-clock timeout */
  int cancelled;              /* killed because the cancel fd fired */
  int oom_killed;             /* the cgroup OOM killer fired */
  uint64_t wall_us;           /* clone() to final reap */
  uint64_t user_us, sys_us;   /* CPU of every process in the sandbox */
  uint64_t peak_memory_bytes; /* cgroup peak, else max RSS of one process */
  sbx_cgroup_mode cgroup;     /* backend that applied limits / accounting */
  int cgroup_preplaced;       /* forked inside a cgroup prepared in advance
                                 (v1 anchor): no migration after clone() */
  char error[256];            /* set-up failure detail when sbx_run fails */
} sbx_result;

/* Run |req| and wait for it (and every process it started) to finish.
 * Returns 0 when the command ran, whatever its exit status (see |res|).
 * Returns a negative DB_E* code, with |res->error| filled, when the sandbox
 * could not be set up or the program could not be executed:
 *   DB_EINVAL   bad request (no argv, relative paths, ...)
 *   DB_ENOTFOUND a bind source or the program does not exist
 *   DB_EUNSUPP  namespaces unavailable (and mode is not SBX_MODE_NONE)
 *   DB_ESYS     a set-up step failed (the step and errno are in res->error)
 *   DB_ENOMEM   allocation failed
 * Thread-safe for distinct requests. */
int sbx_run(const sbx_request *req, sbx_result *res);

/* With cgroup v1 limits, sbx_run() keeps helper threads ("anchors", at most
 * one per concurrent caller, 16 in all) that wait inside prepared cgroups
 * so that a sandbox needs no cgroup migration; they live as long as the
 * process.  Call this before exiting, once no sbx_run() is in progress, to
 * remove their cgroups (else the next prober removes them).  Takes about
 * one RCU grace period per anchor; sbx_run() attaches as before afterwards. */
void sbx_shutdown(void);

/* ---- spawner ----------------------------------------------------------------
 */

/* Have a small helper process, the spawner, create this process's
 * sandboxes from now on (see sbx_spawn.c for why: cloning a large,
 * multi-threaded caller for every sandbox costs page-table copies and
 * copy-on-write faults in the caller).  The spawner is a fork of the
 * caller, so call this early in main(), before any other thread starts,
 * from a thread that lives as long as the process: the spawner dies with
 * that thread, and every sandbox with the spawner.
 * Afterwards sbx_run() sends each request, with its fds, to the spawner and
 * returns what sbx_run() returned there.  Children forked from this
 * process, and runs after the spawner died, run in-process as before (a
 * run in flight when it died fails with DB_ESYS).  sbx_shutdown() stops
 * and reaps it.  Probes the host first (sbx_probe()).
 * Returns 0 (also when it already runs), DB_EINVAL when this process
 * already has other threads, DB_ESYS when socketpair() or fork() failed;
 * sbx_run() stays in-process on error. */
int sbx_spawner_start(void);
/* The spawner's pid, or -1 when this process runs sandboxes itself. */
pid_t sbx_spawner_pid(void);

#endif
