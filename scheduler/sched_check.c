/*
 * Input validation before an action is queued: the Action and Command
 * blobs, argv and output paths, and the whole input root (every Directory
 * and every file blob). Missing blobs are answered FAILED_PRECONDITION with
 * a google.rpc.PreconditionFailure listing "blobs/{hash}/{size}" subjects.
 *
 * Directories found complete are remembered for TREE_TTL_MS (s->trees), so
 * the shared toolchain subtree is walked once, not once per action.
 */
#include "sched_int.h"

#include "db_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TREE_TTL_MS 30000
#define TREE_CACHE_MAX 200000
#define MAX_DEPTH 256
#define MAX_REPORTED 5000
/* Directory bytes collected per action for Assignment.directories: a
 * rustc input root's new directories are a few KB; a huge tree is left
 * for the worker to fetch. */
#define SCHED_INLINE_DIRS_MAX (256 * 1024)

typedef struct walk {
  sched *s;
  sched_map *seen; /* directories visited in this walk, missing files */
  reapi_digest *missing;
  size_t n_missing, cap_missing;
  int64_t now;
  int bad; /* malformed Directory found: INVALID_ARGUMENT */
  char bad_msg[200];
  ProtobufCBinaryData *dirs; /* Directory messages read, owned */
  size_t n_dirs, cap_dirs, dir_bytes;
} walk;

void sched_dirs_free(ProtobufCBinaryData *dirs, size_t n) {
  for (size_t i = 0; dirs && i < n; i++)
    free(dirs[i].data);
  free(dirs);
}

/* Keep a Directory message for the Assignment (takes *data on success). */
static void keep_dir(walk *w, uint8_t **data, size_t len) {
  if (w->dir_bytes + len > SCHED_INLINE_DIRS_MAX)
    return;
  if (w->n_dirs == w->cap_dirs) {
    size_t cap = w->cap_dirs ? w->cap_dirs * 2 : 16;
    ProtobufCBinaryData *n = realloc(w->dirs, cap * sizeof(*n));
    if (!n)
      return; /* only an optimisation */
    w->dirs = n;
    w->cap_dirs = cap;
  }
  w->dirs[w->n_dirs].data = *data;
  w->dirs[w->n_dirs].len = len;
  w->n_dirs++;
  w->dir_bytes += len;
  *data = NULL;
}

static int add_missing(walk *w, const reapi_digest *d) {
  char key[REAPI_DIGEST_STR_MAX + 2];

  key[0] = 'm';
  reapi_digest_str(d, key + 1);
  if (sched_map_get(w->seen, key))
    return 0;
  if (sched_map_put(w->seen, key, (void *)1))
    return DB_ENOMEM;
  if (w->n_missing >= MAX_REPORTED)
    return 0;
  if (w->n_missing == w->cap_missing) {
    size_t cap = w->cap_missing ? w->cap_missing * 2 : 16;
    reapi_digest *n = realloc(w->missing, cap * sizeof(*n));
    if (!n)
      return DB_ENOMEM;
    w->missing = n;
    w->cap_missing = cap;
  }
  w->missing[w->n_missing++] = *d;
  return 0;
}

/* Returns 1 if the subtree at d is complete, 0 if not, negative DB_E*. */
static int walk_dir(walk *w, const reapi_digest *d, int depth) {
  char key[REAPI_DIGEST_STR_MAX + 2];
  PbDirectory *dir = NULL;
  uint8_t *data = NULL;
  size_t len = 0, i;
  intptr_t exp;
  int rc, complete = 1;

  if (d->size == 0)
    return 1; /* the empty Directory */
  key[0] = 'd';
  reapi_digest_str(d, key + 1);
  exp = (intptr_t)sched_map_get(w->s->trees, key + 1);
  if (exp && exp > w->now)
    return 1;
  if (sched_map_get(w->seen, key))
    return 1; /* counted where first seen */
  if (sched_map_put(w->seen, key, (void *)1))
    return DB_ENOMEM;
  if (depth > MAX_DEPTH) {
    w->bad = 1;
    snprintf(w->bad_msg, sizeof(w->bad_msg), "input tree deeper than %d levels",
             MAX_DEPTH);
    return 0;
  }
  rc = cas_store_get(w->s->store, d, &data, &len);
  if (rc == DB_ENOTFOUND) {
    rc = add_missing(w, d);
    return rc ? rc : 0;
  }
  if (rc)
    return rc;
  dir = build__bazel__remote__execution__v2__directory__unpack(NULL, len, data);
  if (!dir) {
    w->bad = 1;
    snprintf(w->bad_msg, sizeof(w->bad_msg),
             "input Directory %.16s.../%lld is not a valid Directory", d->hash,
             (long long)d->size);
    complete = 0;
    goto out;
  }
  for (i = 0; i < dir->n_files; i++) {
    reapi_digest fd;
    if (reapi_pb_digest_get(dir->files[i]->digest, &fd)) {
      w->bad = 1;
      snprintf(w->bad_msg, sizeof(w->bad_msg),
               "invalid digest for input file '%s'", dir->files[i]->name);
      complete = 0;
      goto out;
    }
    if (!cas_store_has(w->s->store, &fd)) {
      complete = 0;
      rc = add_missing(w, &fd);
      if (rc)
        goto out;
    }
  }
  for (i = 0; i < dir->n_directories; i++) {
    reapi_digest sd;
    if (reapi_pb_digest_get(dir->directories[i]->digest, &sd)) {
      w->bad = 1;
      snprintf(w->bad_msg, sizeof(w->bad_msg),
               "invalid digest for input directory '%s'",
               dir->directories[i]->name);
      complete = 0;
      goto out;
    }
    rc = walk_dir(w, &sd, depth + 1);
    if (rc < 0)
      goto out;
    if (rc == 0)
      complete = 0;
  }
  if (complete && sched_map_size(w->s->trees) < TREE_CACHE_MAX)
    sched_map_put(w->s->trees, key + 1,
                  (void *)(intptr_t)(w->now + TREE_TTL_MS));
  keep_dir(w, &data, len);
  rc = 0;
out:
  if (dir)
    build__bazel__remote__execution__v2__directory__free_unpacked(dir, NULL);
  free(data);
  return rc < 0 ? rc : complete;
}

int sched_check_missing_status(const reapi_digest *missing, size_t n,
                               const char *what, rpc_status *st) {
  Google__Rpc__PreconditionFailure pf = GOOGLE__RPC__PRECONDITION_FAILURE__INIT;
  Google__Rpc__PreconditionFailure__Violation *vs = NULL, **vp = NULL;
  Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
  Google__Protobuf__Any *anyp = &any;
  Google__Rpc__Status gst = GOOGLE__RPC__STATUS__INIT;
  char(*subj)[REAPI_DIGEST_STR_MAX + 8] = NULL;
  uint8_t *pfbuf = NULL;
  size_t pflen = 0, i;
  char msg[256];
  int rc = DB_ENOMEM;

  vs = calloc(n ? n : 1, sizeof(*vs));
  vp = calloc(n ? n : 1, sizeof(*vp));
  subj = calloc(n ? n : 1, sizeof(*subj));
  if (!vs || !vp || !subj)
    goto out;
  for (i = 0; i < n; i++) {
    char ds[REAPI_DIGEST_STR_MAX];
    google__rpc__precondition_failure__violation__init(&vs[i]);
    snprintf(subj[i], sizeof(subj[i]), "blobs/%s",
             reapi_digest_str(&missing[i], ds));
    vs[i].type = "MISSING";
    vs[i].subject = subj[i];
    vs[i].description = (char *)what;
    vp[i] = &vs[i];
  }
  pf.n_violations = n;
  pf.violations = vp;
  rc = reapi_pb_pack(&pf.base, &pfbuf, &pflen);
  if (rc)
    goto out;
  any.type_url = "type.googleapis.com/google.rpc.PreconditionFailure";
  any.value.data = pfbuf;
  any.value.len = pflen;
  snprintf(msg, sizeof(msg), "%zu blob%s missing from the CAS (%s)", n,
           n == 1 ? "" : "s", what);
  gst.code = RPC_FAILED_PRECONDITION;
  gst.message = msg;
  gst.n_details = 1;
  gst.details = &anyp;
  rpc_status_clear(st);
  rc = reapi_pb_pack(&gst.base, &st->details, &st->details_len);
  if (rc)
    goto out;
  rpc_status_setf(st, RPC_FAILED_PRECONDITION, "%s", msg);
out:
  free(pfbuf);
  free(subj);
  free(vp);
  free(vs);
  if (rc)
    rpc_status_setf(st, RPC_INTERNAL, "building PreconditionFailure: %s",
                    db_strerror(rc));
  return rc;
}

int sched_check_action(sched *s, const reapi_digest *d, PbAction **out,
                       uint8_t **raw, size_t *raw_len, rpc_status *st) {
  uint8_t *data = NULL;
  size_t len = 0;
  int rc;

  *out = NULL;
  *raw = NULL;
  *raw_len = 0;
  rc = cas_store_get(s->store, d, &data, &len);
  if (rc == DB_ENOTFOUND) {
    sched_check_missing_status(d, 1, "Action", st);
    return RPC_FAILED_PRECONDITION;
  }
  if (rc) {
    rpc_status_setf(st, rpc_code_from_err(rc), "reading Action: %s",
                    db_strerror(rc));
    return st->code;
  }
  *out = build__bazel__remote__execution__v2__action__unpack(NULL, len, data);
  if (!*out) {
    free(data);
    rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                    "Action %.16s... is not a valid Action message", d->hash);
    return RPC_INVALID_ARGUMENT;
  }
  *raw = data;
  *raw_len = len;
  return 0;
}

/* Relative, '/'-separated, no ".." segment, no leading '/'. */
static int path_ok(const char *p, int allow_empty) {
  const char *seg = p;

  if (!*p)
    return allow_empty;
  if (*p == '/')
    return 0;
  while (seg) {
    const char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if (n == 2 && seg[0] == '.' && seg[1] == '.')
      return 0;
    seg = end ? end + 1 : NULL;
  }
  return 1;
}

static int check_command(const PbCommand *c, rpc_status *st) {
  size_t i;

  if (c->n_arguments == 0 || !c->arguments[0][0]) {
    rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                    "Command has an empty argv (arguments[0] is required)");
    return RPC_INVALID_ARGUMENT;
  }
  for (i = 0; i < c->n_output_paths; i++)
    if (!path_ok(c->output_paths[i], 0))
      goto bad_path;
  for (i = 0; i < c->n_output_files; i++)
    if (!path_ok(c->output_files[i], 0))
      goto bad_file;
  for (i = 0; i < c->n_output_directories; i++)
    if (!path_ok(c->output_directories[i], 1))
      goto bad_dir;
  if (!path_ok(c->working_directory, 1)) {
    rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                    "working_directory '%s' escapes the input root",
                    c->working_directory);
    return RPC_INVALID_ARGUMENT;
  }
  return 0;
bad_path:
  rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                  "output path '%s' must be relative and stay inside the "
                  "input root",
                  c->output_paths[i]);
  return RPC_INVALID_ARGUMENT;
bad_file:
  rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                  "output file '%s' must be relative and stay inside the "
                  "input root",
                  c->output_files[i]);
  return RPC_INVALID_ARGUMENT;
bad_dir:
  rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                  "output directory '%s' must be relative and stay inside "
                  "the input root",
                  c->output_directories[i]);
  return RPC_INVALID_ARGUMENT;
}

static int drop_expired(const char *key, void *val, void *ctx) {
  (void)key;
  return (intptr_t)val <= *(int64_t *)ctx;
}

int sched_check_inputs(sched *s, const PbAction *a, PbCommand **cmd_out,
                       uint8_t **raw, size_t *raw_len,
                       ProtobufCBinaryData **dirs, size_t *n_dirs,
                       rpc_status *st) {
  walk w = {0};
  reapi_digest cd, rd;
  uint8_t *data = NULL;
  size_t len = 0;
  int rc, code = 0, have_cmd = 0;

  *cmd_out = NULL;
  *raw = NULL;
  *raw_len = 0;
  *dirs = NULL;
  *n_dirs = 0;
  w.s = s;
  w.now = rpc_now_ms();
  if (reapi_pb_digest_get(a->command_digest, &cd) ||
      reapi_pb_digest_get(a->input_root_digest, &rd)) {
    rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                    "Action needs valid command_digest and input_root_digest");
    return RPC_INVALID_ARGUMENT;
  }
  rc = sched_map_new(&w.seen);
  if (rc)
    goto fail_rc;
  rc = cas_store_get(s->store, &cd, &data, &len);
  if (rc == DB_ENOTFOUND) {
    rc = add_missing(&w, &cd);
  } else if (rc == 0) {
    have_cmd = 1;
    *cmd_out =
        build__bazel__remote__execution__v2__command__unpack(NULL, len, data);
    if (!*cmd_out) {
      rpc_status_setf(st, RPC_INVALID_ARGUMENT,
                      "Command %.16s... is not a valid Command message",
                      cd.hash);
      code = RPC_INVALID_ARGUMENT;
      goto out;
    }
    code = check_command(*cmd_out, st);
    if (code)
      goto out;
  }
  if (rc)
    goto fail_rc;
  if (sched_map_size(s->trees) >= TREE_CACHE_MAX)
    sched_map_sweep(s->trees, drop_expired, &w.now);
  rc = walk_dir(&w, &rd, 0);
  if (rc < 0)
    goto fail_rc;
  if (w.bad) {
    rpc_status_setf(st, RPC_INVALID_ARGUMENT, "%s", w.bad_msg);
    code = RPC_INVALID_ARGUMENT;
    goto out;
  }
  if (w.n_missing) {
    sched_check_missing_status(
        w.missing, w.n_missing,
        have_cmd ? "input tree" : "Command and input tree", st);
    code = st->code;
  }
  goto out;
fail_rc:
  rpc_status_setf(st, rpc_code_from_err(rc), "checking inputs: %s",
                  db_strerror(rc));
  code = st->code;
out:
  if (code == 0 && have_cmd) {
    *raw = data; /* handed to the caller */
    *raw_len = len;
    data = NULL;
    *dirs = w.dirs;
    *n_dirs = w.n_dirs;
    w.dirs = NULL;
    w.n_dirs = 0;
  }
  sched_dirs_free(w.dirs, w.n_dirs);
  free(data);
  free(w.missing);
  sched_map_free(w.seen);
  if (code && *cmd_out) {
    build__bazel__remote__execution__v2__command__free_unpacked(*cmd_out, NULL);
    *cmd_out = NULL;
  }
  return code;
}
