/*
 * Turning one distributable rustc call into a REAPI Action.
 *
 * Exec root. The worker mounts the input root at the absolute path given
 * in the platform property "exec-root-path" and runs rustc there, so the
 * absolute paths cargo puts on the command line (sources, --out-dir,
 * --extern, -L, OUT_DIR, the rustc binary) are valid unchanged and the
 * outputs (rlib, rmeta, dep-info, the JSON artifact messages on stderr)
 * are byte-identical to a local build. The exec root is the deepest
 * common ancestor of every path involved: the sysroot
 * (`rustc --print sysroot`), the working directory, the package
 * directory, OUT_DIR, --out-dir and each extern artifact. With rustup
 * under /root/.rustup and the workspace under /root/src that is "/root";
 * registry crates under /root/.cargo/registry share it. "/" itself is not
 * allowed (the sandbox provides its own /proc, /dev, /tmp and system
 * libraries), so when the only common ancestor is "/" the call runs
 * locally and the reason names the two paths. Input-root paths are
 * relative to the exec root. The Action's platform carries OSFamily=linux,
 * ISA (this machine's, reapi_host.h) and, for -C target-cpu=native,
 * host-cpu (what the scheduler matches workers on); exec-root-path
 * goes in the Command's platform, which the worker reads as well, so it
 * still keys the action through the Command digest. Outputs are relative
 * to the working directory (REAPI); when --out-dir is not below rustc's
 * cwd (registry crates) the command is `/usr/bin/env -C <cwd> rustc ...`
 * with the exec root as working directory. Consequence of reproducing
 * absolute paths: two checkouts at different paths do not share action
 * results (they share CAS blobs such as the toolchain); the same path on
 * another machine or after a fresh clone does.
 *
 * Input root (one Merkle tree, see wrap_tree.h):
 *  - the toolchain subset rustc needs: <sysroot>/bin/rustc, the shared
 *    libraries directly in <sysroot>/lib, and <sysroot>/lib/rustlib/<T>/lib
 *    for each target T that has a std (or only --target);
 *  - the package directory (CARGO_MANIFEST_DIR) without VCS directories,
 *    .distbuild and any Cargo target directory (marked by CACHEDIR.TAG);
 *  - OUT_DIR of the build script, if any;
 *  - each --extern artifact plus its recorded transitive closure (see
 *    wrap_state.h); if an artifact has no record (compiled without the
 *    wrapper) every lib* artifact of the -L dependency= directories is
 *    included instead;
 *  - source files outside the package directory recorded from the last
 *    dep-info of this crate; native -L dirs when -l is used;
 *  - empty working and output directories.
 *
 * Environment: every CARGO_* variable cargo sets for rustc (CARGO_PKG_*,
 * CARGO_MANIFEST_*, CARGO_CRATE_NAME, CARGO_PRIMARY_PACKAGE, ...; not the
 * user's configuration variables such as CARGO_HOME or CARGO_MAKEFLAGS),
 * OUT_DIR, RUSTC_BOOTSTRAP, the variables the build script exported with
 * cargo:rustc-env (read from its output file next to OUT_DIR), and the
 * variables dep-info reported as read by env!/option_env! in earlier
 * compiles of the crate. The names in the action are kept so the caller
 * can check the new dep-info for variables that were missed.
 *
 * Ownership: a wrap_action owns all its fields; free with
 * wrap_action_free(). Fields are read-only for callers. Errors: 0 or
 * DB_E*; DB_EUNSUPP with *reason set (static or owned by the action) when
 * the call cannot run remotely.
 */
#ifndef WRAP_ACTION_H
#define WRAP_ACTION_H

#include <stddef.h>
#include <stdint.h>

#include "reapi_digest.h"
#include "wrap_args.h"
#include "wrap_dcache.h"
#include "wrap_tree.h"
#include "wrap_util.h"

typedef struct wrap_action {
  char *exec_root;     /* absolute */
  char *sysroot;       /* absolute */
  char *out_base;      /* absolute dir the Command's output paths (and the
                          ActionResult's) are relative to: the working
                          directory, or the exec root when rustc runs via
                          /usr/bin/env -C */
  wrap_strv outputs;   /* absolute output paths */
  wrap_strv env_names; /* names of the variables in the Command */
  char crate_key[33];  /* wrap_state crate record key */
  int have_record;     /* a crate record existed */
  uint8_t *command;    /* serialised Command */
  size_t command_len;
  reapi_digest command_digest;
  uint8_t *action; /* serialised Action */
  size_t action_len;
  reapi_digest action_digest;
  reapi_digest input_root;
  wrap_tree *tree;
  char *reason; /* why not remote (owned), NULL otherwise */
} wrap_action;

/* Build the action for args. envp is the environment rustc would see.
 * cache_dir (borrowed) holds the state records; dc the digest cache.
 * extra_env (may be NULL) lists more variable names to include. */
int wrap_action_build(const wrap_args *args, char *const *envp,
                      const char *cache_dir, wrap_dcache *dc,
                      const wrap_strv *extra_env, wrap_action **out,
                      const char **reason);
void wrap_action_free(wrap_action *act); /* NULL ok */

/* After a successful compile: parse the dep-info output and save the
 * crate record (env names, files outside the package dir). If missing is
 * not NULL, it receives env names from dep-info that are set in envp but
 * were not part of the action's environment. */
int wrap_action_learn(const wrap_args *args, char *const *envp,
                      const char *cache_dir, const wrap_action *act,
                      wrap_strv *missing);

/* Value of name in envp, or NULL. */
const char *wrap_env_get(char *const *envp, const char *name);

#endif
