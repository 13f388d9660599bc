/* One action, start to finish; see worker_exec.h. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_err.h"
#include "db_log.h"
#include "reapi_pb.h"
#include "worker_exec.h"
#include "worker_early.h"
#include "worker_materialize.h"
#include "worker_outputs.h"

#define PATHMAX 4096
/* A status was set (1) unless that ran out of memory (DB_ENOMEM). */
#define ST(x) ((x) == 0 ? 1 : (x))

typedef Build__Bazel__Remote__Execution__V2__Action PbAction;
typedef Build__Bazel__Remote__Execution__V2__Command PbCommand;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse PbExecResp;
typedef Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata PbMeta;
typedef Build__Bazel__Remote__Execution__V2__Platform PbPlatform;

typedef struct job {
  wk_exec_env *env;
  wk_exec_result *out;
  wk_arena *a;
  PbExecResp *resp;
  PbActionResult *ar;
  PbMeta *meta;
  PbAction *action;
  PbCommand *cmd;
  char dir[PATHMAX];  /* host action directory */
  char root[PATHMAX]; /* dir/root: the input root */
  char exec_root[PATHMAX];
  const char **writable;
  size_t nwritable;
  wk_mat mat;
  int mat_done;
  sbx_result sres;
  int ran;
  wk_early_done early; /* what the stderr watcher did during the run */
  const char *lease_id;
  char err[512];
} job;

void wk_exec_result_free(wk_exec_result *r) {
  wk_arena_free(&r->arena);
  r->resp = NULL;
  if (r->dir[0])
    wk_rmrf(r->dir);
  r->dir[0] = '\0';
}

static int set_status(job *j, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_status(job *j, int code, const char *fmt, ...) {
  Google__Rpc__Status *st = wk_arena_alloc(j->a, sizeof(*st));
  char msg[1024];
  va_list ap;

  if (!st)
    return DB_ENOMEM;
  google__rpc__status__init(st);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  st->code = code;
  st->message = wk_arena_strdup(j->a, msg);
  j->resp->status = st;
  j->resp->message = st->message;
  if (code != 0)
    DB_WARN("worker", "slot %d: %s: %s", j->env->slot, rpc_code_name(code),
            msg);
  return st->message ? 0 : DB_ENOMEM;
}

/* FAILED_PRECONDITION with one MISSING violation per blob. */
static int set_missing(job *j, const reapi_digest *ds, size_t n,
                       const char *what) {
  Google__Rpc__PreconditionFailure pf;
  Google__Rpc__PreconditionFailure__Violation **v;
  Google__Protobuf__Any *any;
  uint8_t *packed = NULL;
  size_t plen = 0;
  int rv;

  rv = set_status(j, RPC_FAILED_PRECONDITION, "%s: %zu blob(s) missing", what,
                  n);
  if (rv != 0)
    return rv;
  google__rpc__precondition_failure__init(&pf);
  v = wk_arena_alloc(j->a, (n + 1) * sizeof(*v));
  if (!v)
    return DB_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    v[i] = wk_arena_alloc(j->a, sizeof(**v));
    if (!v[i])
      return DB_ENOMEM;
    google__rpc__precondition_failure__violation__init(v[i]);
    v[i]->type = "MISSING";
    v[i]->subject = wk_arena_printf(j->a, "blobs/%s/%lld", ds[i].hash,
                                    (long long)ds[i].size);
    if (!v[i]->subject)
      return DB_ENOMEM;
  }
  pf.n_violations = n;
  pf.violations = v;
  rv = reapi_pb_pack(&pf.base, &packed, &plen);
  if (rv != 0)
    return rv;
  any = wk_arena_alloc(j->a, sizeof(*any));
  if (!any) {
    free(packed);
    return DB_ENOMEM;
  }
  google__protobuf__any__init(any);
  any->type_url = "type.googleapis.com/google.rpc.PreconditionFailure";
  any->value.data = wk_arena_alloc(j->a, plen + 1);
  if (!any->value.data) {
    free(packed);
    return DB_ENOMEM;
  }
  if (plen)
    memcpy(any->value.data, packed, plen);
  any->value.len = plen;
  free(packed);
  j->resp->status->details = wk_arena_alloc(j->a, sizeof(any));
  if (!j->resp->status->details)
    return DB_ENOMEM;
  j->resp->status->details[0] = any;
  j->resp->status->n_details = 1;
  return 0;
}

static int infra_code(int err) {
  switch (err) {
  case DB_EUNAVAIL:
  case DB_ETIMEDOUT:
  case DB_ECANCELLED:
    return RPC_UNAVAILABLE;
  case DB_EINVAL:
  case DB_EPROTO:
    return RPC_INVALID_ARGUMENT;
  case DB_ENOSPC:
    return RPC_RESOURCE_EXHAUSTED;
  default:
    return RPC_INTERNAL;
  }
}

/* Read a message blob through the cache. */
static int read_blob(job *j, const PbDigest *pd, const char *what,
                     uint8_t **data, size_t *len) {
  reapi_digest d;
  int rv;

  if (reapi_pb_digest_get(pd, &d) != 0)
    return ST(set_status(j, RPC_INVALID_ARGUMENT, "bad %s digest", what));
  rv = wk_cache_read(j->env->cache, j->env->cas, &d, data, len, NULL);
  if (rv == DB_ENOTFOUND)
    return ST(set_missing(j, &d, 1, what));
  if (rv != 0)
    return ST(set_status(j, infra_code(rv), "fetching %s %s: %s", what, d.hash,
                         db_strerror(rv)));
  return 0;
}

/* The copy the scheduler sent along with the Assignment when it matches
 * the digest (saves a CAS round trip each), else read_blob(). */
static int read_inline_or_blob(job *j, const ProtobufCBinaryData *inl,
                               const PbDigest *pd, const char *what,
                               uint8_t **data, size_t *len) {
  reapi_digest want, got;

  if (inl->len > 0 && reapi_pb_digest_get(pd, &want) == 0) {
    reapi_digest_of(inl->data, inl->len, &got);
    if (reapi_digest_eq(&got, &want)) {
      *data = malloc(inl->len);
      if (!*data)
        return DB_ENOMEM;
      memcpy(*data, inl->data, inl->len);
      *len = inl->len;
      return 0;
    }
    DB_WARN("worker", "inline %s does not match its digest; fetching it", what);
  }
  return read_blob(j, pd, what, data, len);
}

static const char *platform_get(const PbPlatform *p, const char *name) {
  if (!p)
    return NULL;
  for (size_t i = 0; i < p->n_properties; i++)
    if (p->properties[i]->name && !strcmp(p->properties[i]->name, name))
      return p->properties[i]->value;
  return NULL;
}

static int abspath_ok(const char *p) {
  return p && p[0] == '/' && p[1] && wk_relpath_ok(p + 1, 0);
}

/* Validate the Command; decide the exec root and the writable dirs.
 * Returns 0, 1 (status set), or DB_ENOMEM. */
static int plan(job *j) {
  PbCommand *c = j->cmd;
  const char *wd = c->working_directory ? c->working_directory : "";
  const char *er;
  size_t n = c->n_output_paths ? c->n_output_paths
                               : c->n_output_files + c->n_output_directories;

  if (c->n_arguments == 0 || !c->arguments[0] || !c->arguments[0][0])
    return ST(set_status(j, RPC_INVALID_ARGUMENT, "Command has no arguments"));
  if (!wk_relpath_ok(wd, 1))
    return ST(set_status(j, RPC_INVALID_ARGUMENT,
                         "working_directory '%s' is not a clean relative path",
                         wd));
  for (size_t i = 0; i < c->n_environment_variables; i++)
    if (!c->environment_variables[i]->name ||
        !c->environment_variables[i]->name[0] ||
        strchr(c->environment_variables[i]->name, '='))
      return ST(
          set_status(j, RPC_INVALID_ARGUMENT, "bad environment variable"));
  er = platform_get(j->action->platform, WORKER_EXEC_ROOT_PROPERTY);
  if (!er)
    er = platform_get(c->platform, WORKER_EXEC_ROOT_PROPERTY);
  if (!er)
    er = WORKER_DEFAULT_EXEC_ROOT;
  if (!abspath_ok(er))
    return ST(set_status(j, RPC_INVALID_ARGUMENT,
                         "%s '%s' is not a clean absolute path",
                         WORKER_EXEC_ROOT_PROPERTY, er));
  snprintf(j->exec_root, sizeof(j->exec_root), "%s", er);
  j->writable = wk_arena_alloc(j->a, (n + 1) * sizeof(char *));
  if (!j->writable)
    return DB_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *p;
    int is_dir = 0;
    char *parent, *slash;
    if (c->n_output_paths) {
      p = c->output_paths[i];
    } else if (i < c->n_output_files) {
      p = c->output_files[i];
    } else {
      p = c->output_directories[i - c->n_output_files];
      is_dir = 1;
    }
    if (!wk_relpath_ok(p, is_dir))
      return ST(
          set_status(j, RPC_INVALID_ARGUMENT,
                     "output path '%s' is not a clean relative path inside "
                     "the input root",
                     p ? p : ""));
    parent = wk_arena_printf(j->a, "%s%s%s", wd, *wd && *p ? "/" : "", p);
    if (!parent)
      return DB_ENOMEM;
    slash = strrchr(parent, '/');
    if (*p == '\0')
      ; /* output directory "" = the working directory itself */
    else if (slash)
      *slash = '\0';
    else
      parent[0] = '\0';
    size_t k = 0;
    for (; k < j->nwritable; k++)
      if (!strcmp(j->writable[k], parent))
        break;
    if (k == j->nwritable)
      j->writable[j->nwritable++] = parent;
  }
  return 0;
}

static int cmp_len(const void *x, const void *y) {
  size_t a = strlen(*(const char *const *)x),
         b = strlen(*(const char *const *)y);
  return a < b ? -1 : a > b;
}

/* Build and run the sandbox request. 0, 1 (status set) or DB_ENOMEM. */
static int run_sandbox(job *j, uint64_t timeout_ms) {
  const worker_config *cfg = j->env->cfg;
  PbCommand *c = j->cmd;
  const char *wd = c->working_directory ? c->working_directory : "";
  int none = cfg->sandbox_mode == SBX_MODE_NONE;
  const char *base = none ? j->root : j->exec_root;
  sbx_request *req = NULL;
  const char **argv = NULL, **envp = NULL;
  char path[PATHMAX], dst[PATHMAX], so[PATHMAX], se[PATHMAX];
  sbx_limits lim = {0};
  wk_early *early = NULL;
  wk_jobs *jobs = j->env->jobs;
  size_t nenv = 0;
  int root_rw = 0, rv, erv, took = 0;

  rv = sbx_request_new(&req);
  if (rv != 0)
    return rv;
  argv = wk_arena_alloc(j->a, (c->n_arguments + 1) * sizeof(char *));
  envp =
      wk_arena_alloc(j->a, (c->n_environment_variables + 2) * sizeof(char *));
  rv = DB_ENOMEM;
  if (!argv || !envp)
    goto out;
  for (size_t i = 0; i < c->n_arguments; i++)
    argv[i] = c->arguments[i] ? c->arguments[i] : "";
  /* A relative program path is relative to the working directory. */
  if (argv[0][0] != '/' && strchr(argv[0], '/')) {
    argv[0] =
        wk_arena_printf(j->a, "%s%s%s/%s", base, *wd ? "/" : "", wd, argv[0]);
    if (!argv[0])
      goto out;
  }
  for (size_t i = 0; i < c->n_environment_variables; i++) {
    const char *name = c->environment_variables[i]->name;
    /* A client's jobserver cannot be reached from here; ours replaces it. */
    if (jobs && name && !strcmp(name, "CARGO_MAKEFLAGS"))
      continue;
    envp[nenv] = wk_arena_printf(j->a, "%s=%s", name ? name : "",
                                 c->environment_variables[i]->value
                                     ? c->environment_variables[i]->value
                                     : "");
    if (!envp[nenv++])
      goto out;
  }
  if (jobs) {
    envp[nenv] =
        wk_arena_printf(j->a, "CARGO_MAKEFLAGS=-j --jobserver-auth=fifo:%s",
                        none ? wk_jobs_path(jobs) : "/dev/jobserver");
    if (!envp[nenv++])
      goto out;
  }
  rv = wk_pathf(path, sizeof(path), "%s%s%s", base, *wd ? "/" : "", wd);
  if (rv == 0)
    rv = wk_pathf(so, sizeof(so), "%s/stdout", j->dir);
  if (rv == 0)
    rv = wk_pathf(se, sizeof(se), "%s/stderr", j->dir);
  if (rv == 0)
    rv = wk_pathf(dst, sizeof(dst), "%s%s%s", j->root, *wd ? "/" : "", wd);
  if (rv == 0)
    rv = sbx_request_set_argv(req, argv);
  if (rv == 0)
    rv = sbx_request_set_env(req, envp);
  if (rv == 0)
    rv = sbx_request_set_cwd(req, path);
  if (rv == 0)
    rv = sbx_request_set_stdio_path(req, 1, so);
  if (rv == 0) {
    /* stderr through the early-outputs watcher (see worker_early.h). */
    wk_early_cfg ec = {0};
    int wfd = -1;
    ec.cas = j->env->cas;
    ec.worker_id = cfg->id;
    ec.session_id = j->env->session_id;
    ec.lease_id = j->lease_id;
    ec.sandbox_wd = path;
    ec.host_wd = dst;
    ec.outputs = (const char *const *)(c->n_output_paths ? c->output_paths
                                                         : c->output_files);
    ec.n_outputs = c->n_output_paths ? c->n_output_paths : c->n_output_files;
    ec.stderr_path = se;
    rv = wk_early_start(&ec, &wfd, &early);
    if (rv == 0)
      rv = sbx_request_set_stdio_fd(req, 2, wfd);
    else if (rv != DB_ENOMEM)
      rv = sbx_request_set_stdio_path(req, 2, se);
  }
  sbx_request_set_mode(req, cfg->sandbox_mode);
  if (rv == 0 && !none) {
    rv = sbx_request_add_default_layout(req);
    if (rv == 0 && jobs)
      rv = sbx_request_add_dev(req, wk_jobs_path(jobs), "jobserver");
    qsort(j->writable, j->nwritable, sizeof(char *), cmp_len);
    for (size_t i = 0; i < j->nwritable; i++)
      if (!j->writable[i][0])
        root_rw = 1;
    if (rv == 0)
      rv = sbx_request_add_mount(
          req, root_rw ? SBX_MOUNT_RW_BIND : SBX_MOUNT_RO_BIND, j->root,
          j->exec_root);
    for (size_t i = 0; rv == 0 && i < j->nwritable; i++) {
      if (!j->writable[i][0])
        continue;
      rv = wk_pathf(path, sizeof(path), "%s/%s", j->root, j->writable[i]);
      if (rv == 0)
        rv = wk_pathf(dst, sizeof(dst), "%s/%s", j->exec_root, j->writable[i]);
      if (rv == 0)
        rv = sbx_request_add_mount(req, SBX_MOUNT_RW_BIND, path, dst);
    }
    for (size_t i = 0; rv == 0 && i < j->mat.nbinds; i++) {
      rv = wk_pathf(dst, sizeof(dst), "%s/%s", j->exec_root,
                    j->mat.binds[i].rel);
      if (rv == 0)
        rv = sbx_request_add_mount(req, SBX_MOUNT_RO_BIND, j->mat.binds[i].src,
                                   dst);
    }
  }
  if (rv != 0)
    goto out;
  lim.timeout_ms = timeout_ms;
  lim.memory_bytes = cfg->memory_limit;
  lim.pids = cfg->pids_limit;
  lim.nice = cfg->nice;
  sbx_request_set_limits(req, &lim);
  sbx_request_set_cancel_fd(req, j->env->cancel_fd);
  j->meta->execution_start_timestamp = wk_now_ts(j->a);
  took = jobs ? wk_jobs_begin(jobs) : 0;
  rv = sbx_run(req, &j->sres);
  if (jobs) /* every process of the action is gone now */
    wk_jobs_end(jobs, took);
  j->meta->execution_completed_timestamp = wk_now_ts(j->a);
  erv = wk_early_stop(early, &j->early);
  early = NULL;
  if (rv == 0 && erv != 0)
    rv = ST(set_status(j, RPC_INTERNAL, "writing the action's stderr: %s",
                       db_strerror(erv)));
  if (rv == DB_ENOMEM || rv == 1)
    goto out;
  if (rv != 0) {
    int code = rv == DB_ENOTFOUND || rv == DB_EINVAL ? RPC_INVALID_ARGUMENT
                                                     : RPC_INTERNAL;
    rv = ST(
        set_status(j, code, "sandbox: %s: %s", db_strerror(rv), j->sres.error));
    goto out;
  }
  j->ran = 1;
out:
  (void)wk_early_stop(early, NULL);
  sbx_request_free(req);
  return rv;
}

/* Read up to cap bytes of a file into the arena (for inlining). */
static int slurp(wk_arena *a, const char *path, size_t cap,
                 ProtobufCBinaryData *out) {
  struct stat st;
  int fd;
  ssize_t r;

  out->data = NULL;
  out->len = 0;
  if (stat(path, &st) != 0 || (size_t)st.st_size >= cap || st.st_size == 0)
    return 0;
  out->data = wk_arena_alloc(a, (size_t)st.st_size + 1);
  if (!out->data)
    return DB_ENOMEM;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  r = read(fd, out->data, (size_t)st.st_size);
  close(fd);
  out->len = r > 0 ? (size_t)r : 0;
  return 0;
}

static int add_usage(job *j) {
  Distbuild__Worker__V1__ResourceUsage ru;
  Google__Protobuf__Any *any;
  uint8_t *packed = NULL;
  size_t plen = 0;
  int rv;

  distbuild__worker__v1__resource_usage__init(&ru);
  ru.peak_memory_bytes = j->sres.peak_memory_bytes;
  ru.user_cpu_ms = j->sres.user_us / 1000;
  ru.system_cpu_ms = j->sres.sys_us / 1000;
  ru.wall_ms = j->sres.wall_us / 1000;
  ru.timed_out = j->sres.timed_out != 0;
  ru.oom_killed = j->sres.oom_killed != 0;
  ru.input_bytes_fetched = j->mat.fetch.bytes;
  ru.input_files_cached = j->mat.fetch.hits;
  ru.input_files_fetched = j->mat.fetch.misses;
  ru.input_trees_bound = j->mat.nbinds;
  rv = reapi_pb_pack(&ru.base, &packed, &plen);
  if (rv != 0)
    return rv;
  any = wk_arena_alloc(j->a, sizeof(*any));
  rv = DB_ENOMEM;
  if (!any)
    goto out;
  google__protobuf__any__init(any);
  any->type_url = "type.googleapis.com/distbuild.worker.v1.ResourceUsage";
  any->value.data = wk_arena_alloc(j->a, plen + 1);
  if (!any->value.data)
    goto out;
  if (plen)
    memcpy(any->value.data, packed, plen);
  any->value.len = plen;
  j->meta->auxiliary_metadata = wk_arena_alloc(j->a, sizeof(any));
  if (!j->meta->auxiliary_metadata)
    goto out;
  j->meta->auxiliary_metadata[0] = any;
  j->meta->n_auxiliary_metadata = 1;
  rv = 0;
out:
  free(packed);
  return rv;
}

/* Collect outputs + stdout/stderr and upload. 0, 1 (status set), DB_E*. */
static int finish(job *j) {
  PbCommand *c = j->cmd;
  const char *wd = c->working_directory ? c->working_directory : "";
  char host[PATHMAX], p[PATHMAX];
  wk_upload u = {0};
  reapi_digest d;
  uint64_t raw = 0, wire = 0;
  int rv;

  j->meta->output_upload_start_timestamp = wk_now_ts(j->a);
  u.known = j->early.linked;
  u.nknown = j->early.nlinked;
  atomic_fetch_add(&j->env->metrics->bytes_uploaded, j->early.linked_bytes);
  if (wk_pathf(host, sizeof(host), "%s%s%s", j->root, *wd ? "/" : "", wd)) {
    rv = ST(set_status(j, RPC_INVALID_ARGUMENT, "working directory too long"));
    goto out;
  }
  rv = wk_outputs_collect(
      host, (const char *const *)c->output_paths, c->n_output_paths,
      (const char *const *)c->output_files, c->n_output_files,
      (const char *const *)c->output_directories, c->n_output_directories, j->a,
      &u, j->ar, j->err, sizeof(j->err));
  if (rv == DB_EINVAL) {
    rv = ST(set_status(j, RPC_FAILED_PRECONDITION, "%s", j->err));
    goto out;
  }
  for (int s = 1; rv == 0 && s <= 2; s++) {
    rv = wk_pathf(p, sizeof(p), "%s/%s", j->dir, s == 1 ? "stdout" : "stderr");
    if (rv != 0)
      break;
    if (access(p, F_OK) != 0) {
      d = reapi_digest_empty;
    } else {
      rv = wk_upload_add_file(&u, j->a, p, &d);
      if (rv == 0)
        rv = slurp(j->a, p, j->env->cfg->inline_limit,
                   s == 1 ? &j->ar->stdout_raw : &j->ar->stderr_raw);
    }
    if (rv != 0)
      break;
    if (s == 1)
      j->ar->stdout_digest = wk_arena_digest(j->a, &d);
    else
      j->ar->stderr_digest = wk_arena_digest(j->a, &d);
  }
  if (rv != 0) {
    rv = rv == DB_ENOMEM
             ? rv
             : ST(set_status(j, RPC_INTERNAL, "collecting outputs: %s",
                             db_strerror(rv)));
    goto out;
  }
  rv = cas_client_upload(j->env->cas, u.v, u.n, &raw, &wire);
  atomic_fetch_add(&j->env->metrics->bytes_uploaded, raw);
  if (rv != 0) {
    const rpc_status *st = cas_client_last_status(j->env->cas);
    rv = ST(set_status(j, RPC_UNAVAILABLE, "uploading outputs: %s (%s)",
                       db_strerror(rv), st && st->message ? st->message : ""));
    goto out;
  }
  j->meta->output_upload_completed_timestamp = wk_now_ts(j->a);
out:
  wk_upload_free(&u);
  return rv;
}

/* 1 once the scheduler has cancelled the action (see wk_exec_env). */
static int cancelled(const job *j) {
  struct pollfd p = {j->env->cancel_fd, POLLIN, 0};
  return j->env->cancel_fd >= 0 && poll(&p, 1, 0) > 0;
}

static int set_cancelled(job *j) {
  j->ran = 0;
  return set_status(j, RPC_CANCELLED,
                    "cancelled by the scheduler: no client waits for it");
}

static int run_job(job *j, const Distbuild__Worker__V1__Assignment *a) {
  const worker_config *cfg = j->env->cfg;
  const sbx_features *f = j->env->feat;
  reapi_digest ad, rd;
  uint8_t *buf = NULL;
  size_t len = 0;
  wk_mat_opts mo = {0};
  uint64_t timeout_ms;
  int rv;

  j->meta->input_fetch_start_timestamp = wk_now_ts(j->a);
  if (reapi_pb_digest_get(a->action_digest, &ad) != 0)
    return set_status(j, RPC_INVALID_ARGUMENT, "bad action digest");
  rv = read_inline_or_blob(j, &a->action, a->action_digest, "Action", &buf,
                           &len);
  if (rv != 0)
    return rv < 0 ? rv : 0;
  j->action =
      build__bazel__remote__execution__v2__action__unpack(NULL, len, buf);
  free(buf);
  buf = NULL;
  if (!j->action)
    return set_status(j, RPC_INVALID_ARGUMENT, "Action %s does not parse",
                      ad.hash);
  rv = read_inline_or_blob(j, &a->command, j->action->command_digest, "Command",
                           &buf, &len);
  if (rv != 0)
    return rv < 0 ? rv : 0;
  j->cmd = build__bazel__remote__execution__v2__command__unpack(NULL, len, buf);
  free(buf);
  if (!j->cmd)
    return set_status(j, RPC_INVALID_ARGUMENT, "Command does not parse");
  rv = plan(j);
  if (rv != 0)
    return rv < 0 ? rv : 0;
  if (reapi_pb_digest_get(j->action->input_root_digest, &rd) != 0)
    return set_status(j, RPC_INVALID_ARGUMENT, "bad input root digest");

  /* The action directory: dir/root is the input root. */
  if (wk_pathf(j->dir, sizeof(j->dir), "%s/actions/s%d-%llu",
               wk_cache_dir(j->env->cache), j->env->slot,
               (unsigned long long)++j->env->seq) ||
      wk_pathf(j->root, sizeof(j->root), "%s/root", j->dir))
    return set_status(j, RPC_INTERNAL, "cache directory path too long");
  wk_rmrf(j->dir);
  if (wk_mkdirs(j->root, 0755) != 0)
    return set_status(j, RPC_INTERNAL, "cannot create %s: %s", j->root,
                      strerror(errno));
  mo.tree_min_files = cfg->tree_min_files;
  mo.tree_min_bytes = cfg->tree_min_bytes;
  mo.tree_prefixes = cfg->tree_prefixes;
  mo.n_tree_prefixes = cfg->n_tree_prefixes;
  mo.writable_dirs = j->writable;
  mo.n_writable = j->nwritable;
  mo.wuid = f->host_uid;
  mo.wgid = f->host_gid;
  mo.copy_all = cfg->sandbox_mode == SBX_MODE_NONE;
  mo.copy_writable = f->host_uid == geteuid();
  mo.inline_dirs = a->directories;
  mo.n_inline_dirs = a->n_directories;
  rv = wk_materialize(j->env->cache, j->env->cas, &rd, j->root, &mo, &j->mat);
  j->mat_done = 1;
  atomic_fetch_add(&j->env->metrics->cache_hits, j->mat.fetch.hits);
  atomic_fetch_add(&j->env->metrics->cache_misses, j->mat.fetch.misses);
  atomic_fetch_add(&j->env->metrics->bytes_fetched, j->mat.fetch.bytes);
  atomic_fetch_add(&j->env->metrics->tree_hits, j->mat.trees_hit);
  atomic_fetch_add(&j->env->metrics->tree_builds, j->mat.trees_built);
  if (rv == DB_ENOTFOUND && j->mat.nmissing)
    return set_missing(j, j->mat.missing, j->mat.nmissing, "input root");
  if (rv == DB_ENOTFOUND)
    return set_status(j, RPC_FAILED_PRECONDITION,
                      "input root: a blob vanished from the CAS during the "
                      "download (%s)",
                      j->mat.err);
  if (rv == DB_ENOMEM)
    return rv;
  if (rv != 0)
    return set_status(j, infra_code(rv), "%s", j->mat.err);
  j->meta->input_fetch_completed_timestamp = wk_now_ts(j->a);
  if (cancelled(j))
    return set_cancelled(j);

  timeout_ms = a->timeout_ms > 0 ? (uint64_t)a->timeout_ms : 0;
  if (!timeout_ms && j->action->timeout)
    timeout_ms = (uint64_t)j->action->timeout->seconds * 1000 +
                 (uint64_t)j->action->timeout->nanos / 1000000;
  rv = run_sandbox(j, timeout_ms);
  if (rv != 0)
    return rv < 0 ? rv : 0;
  if (j->sres.cancelled)
    return set_cancelled(j);
  j->ar->exit_code =
      j->sres.exited ? j->sres.exit_code : 128 + j->sres.term_signal;
  rv = finish(j);
  if (rv != 0)
    return rv < 0 ? rv : 0;
  rv = add_usage(j);
  if (rv != 0)
    return rv;
  if (j->sres.timed_out)
    return set_status(j, RPC_DEADLINE_EXCEEDED,
                      "action timed out after %llu ms; process tree killed",
                      (unsigned long long)timeout_ms);
  return set_status(j, RPC_OK, "%s", "");
}

int wk_exec_run(wk_exec_env *env, const Distbuild__Worker__V1__Assignment *a,
                wk_exec_result *out) {
  job j;
  int rv = DB_ENOMEM;

  memset(&j, 0, sizeof(j));
  memset(out, 0, sizeof(*out));
  j.env = env;
  j.lease_id = a->lease_id;
  j.out = out;
  j.a = &out->arena;
  j.resp = wk_arena_alloc(j.a, sizeof(*j.resp));
  j.ar = wk_arena_alloc(j.a, sizeof(*j.ar));
  j.meta = wk_arena_alloc(j.a, sizeof(*j.meta));
  if (!j.resp || !j.ar || !j.meta)
    goto out;
  build__bazel__remote__execution__v2__execute_response__init(j.resp);
  out->resp = j.resp;
  build__bazel__remote__execution__v2__action_result__init(j.ar);
  build__bazel__remote__execution__v2__executed_action_metadata__init(j.meta);
  j.resp->result = j.ar;
  j.ar->execution_metadata = j.meta;
  j.meta->worker = wk_arena_strdup(j.a, env->cfg->id);
  j.meta->worker_start_timestamp = wk_now_ts(j.a);
  if (a->queued_timestamp) {
    j.meta->queued_timestamp =
        wk_arena_alloc(j.a, sizeof(Google__Protobuf__Timestamp));
    if (j.meta->queued_timestamp) {
      google__protobuf__timestamp__init(j.meta->queued_timestamp);
      j.meta->queued_timestamp->seconds = a->queued_timestamp->seconds;
      j.meta->queued_timestamp->nanos = a->queued_timestamp->nanos;
    }
  }
  rv = run_job(&j, a);
  j.meta->worker_completed_timestamp = wk_now_ts(j.a);
  if (rv == 0 && !j.resp->status)
    rv = set_status(&j, RPC_INTERNAL, "no result");
  if (rv == 0) {
    int code = j.resp->status->code;
    if (code == RPC_CANCELLED) {
      atomic_fetch_add(&env->metrics->actions_cancelled, 1);
    } else {
      atomic_fetch_add(&env->metrics->actions_run, 1);
      if (code != 0 || j.ar->exit_code != 0)
        atomic_fetch_add(&env->metrics->actions_failed, 1);
      if (code != 0 && code != RPC_DEADLINE_EXCEEDED)
        atomic_fetch_add(&env->metrics->actions_infra, 1);
      if (code == RPC_DEADLINE_EXCEEDED)
        atomic_fetch_add(&env->metrics->actions_timeout, 1);
    }
    /* Only a run that produced a result reports one. */
    if (!j.ran)
      j.resp->result = NULL;
    DB_DEBUG("worker",
             "slot %d: lease %s: %s exit=%d ran=%d cpu_ms=%llu+%llu "
             "wall_ms=%llu%s %s",
             env->slot, a->lease_id, rpc_code_name(code), j.ar->exit_code,
             j.ran, (unsigned long long)(j.sres.user_us / 1000),
             (unsigned long long)(j.sres.sys_us / 1000),
             (unsigned long long)(j.sres.wall_us / 1000),
             j.sres.cgroup_preplaced ? " cgroup=preplaced" : "",
             j.resp->status->message);
  }
out:
  if (j.mat_done)
    wk_mat_release(env->cache, &j.mat);
  if (j.dir[0] && rv == 0)
    snprintf(out->dir, sizeof(out->dir), "%s", j.dir); /* see the header */
  else if (j.dir[0])
    wk_rmrf(j.dir);
  if (j.action)
    build__bazel__remote__execution__v2__action__free_unpacked(j.action, NULL);
  if (j.cmd)
    build__bazel__remote__execution__v2__command__free_unpacked(j.cmd, NULL);
  if (rv != 0)
    wk_exec_result_free(out);
  return rv;
}
