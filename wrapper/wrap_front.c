/* The wrapper's light front; see wrap_front.h. */
#include "wrap_front.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_err.h"
#include "wrap_closure.h"
#include "wrap_sock.h"
#include "wrap_stats.h"
#include "wrap_util.h"

const char *wrap_front_local_reason(const wrap_args *a) {
  const char *dis = getenv("CARGO_DISTBUILD_DISABLE");
  const char *reason = wrap_args_local_reason(a);
  /* Cargo sets CARGO_CFG_* only for build scripts (and their children), so
   * this rustc call is a build script's feature probe (anyhow, proc-macro2,
   * thiserror, ...), not a crate of the build: a tiny compile that is often
   * meant to fail, cheaper here than a round trip. */
  if (reason == NULL && getenv("CARGO_CFG_TARGET_ARCH") != NULL)
    reason = "build-script probe";
  if (reason == NULL && dis != NULL && *dis && strcmp(dis, "0") != 0)
    reason = "CARGO_DISTBUILD_DISABLE is set";
  return reason;
}

static int exec_rustc(char **argv) {
  execv(argv[0], argv);
  fprintf(stderr, "cargo-distbuild-wrapper: cannot run %s: %s\n", argv[0],
          strerror(errno));
  return 127;
}

/* 1 if the call can write an rlib or rmeta that a later call names in
 * --extern: only those need a closure record. */
static int makes_extern(const wrap_args *a) {
  for (size_t i = 0; i < a->crate_types.n; i++)
    if (strcmp(a->crate_types.v[i], "lib") == 0 ||
        strcmp(a->crate_types.v[i], "rlib") == 0)
      return a->out_dir != NULL;
  return 0;
}

int wrap_front_exec_local(const wrap_args *a, char **argv, const char *reason,
                          int64_t start_ms) {
  if (wrap_args_is_compile(a)) {
    wrap_stat_rec rec;
    /* rlib outputs of local calls still get closure records; binaries and
     * build scripts, most local calls, have none to write. */
    if (makes_extern(a)) {
      char *cd = wrap_cache_dir();
      if (cd != NULL)
        (void)wrap_closure_record(a, cd);
      free(cd);
    }
    memset(&rec, 0, sizeof(rec));
    rec.kind = WRAP_KIND_LOCAL;
    rec.crate = a->crate_name ? a->crate_name : "?";
    rec.reason = reason;
    rec.wall_ms = wrap_now_ms() - start_ms;
    (void)wrap_stats_append(&rec);
  }
  return exec_rustc(argv);
}

int wrap_front_main(int argc, char **argv, const char *remote_exe) {
  int64_t start = wrap_now_ms();
  wrap_args *a = NULL;
  const char *reason, *sock;
  char **rargv;
  if (argc < 1) {
    fprintf(stderr, "usage: cargo-distbuild-wrapper RUSTC [ARGS...]\n");
    return 2;
  }
  if (wrap_args_parse(argc, argv, NULL, &a) != 0)
    return exec_rustc(argv);
  reason = wrap_front_local_reason(a);
  if (reason != NULL)
    return wrap_front_exec_local(a, argv, reason, start);
  wrap_args_free(a);
  sock = getenv(WRAP_SOCK_ENV);
  if (sock != NULL && *sock) {
    /* `cargo distbuild build` runs a client server: hand the call over. */
    int code = 0, rv = wrap_sock_call(sock, argc, argv, &code);
    if (rv == 0)
      return code;
    if (rv == DB_EIO) {
      /* Its output may be half written: running it again could announce
       * the same artifact to cargo twice. */
      fprintf(stderr, "[distbuild] the client server went away during this "
                      "rustc call; its outcome is unknown\n");
      return 1;
    }
    /* Not started (no server, or it refused): the remote client does it. */
  }
  /* Distributable: hand over to the remote client, argv unchanged. */
  rargv = calloc((size_t)argc + 2, sizeof(*rargv));
  if (rargv != NULL && remote_exe != NULL) {
    rargv[0] = (char *)remote_exe;
    memcpy(rargv + 1, argv, (size_t)argc * sizeof(*rargv));
    execv(remote_exe, rargv);
  }
  fprintf(stderr,
          "[distbuild] cannot run the remote client %s (%s); "
          "running rustc locally\n",
          remote_exe ? remote_exe : "?", strerror(errno));
  free(rargv);
  if (wrap_args_parse(argc, argv, NULL, &a) != 0)
    return exec_rustc(argv);
  return wrap_front_exec_local(a, argv, "remote client missing", start);
}
