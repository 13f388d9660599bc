/*
 * rustc command-line parsing for the wrapper: what crate is compiled, of
 * which type, where its outputs go, which extern artifacts and search
 * paths it needs, and whether the call can run remotely at all.
 *
 * Distributable calls are library crates (--crate-type lib or rlib, one
 * type only) compiled from a file with --emit limited to dep-info,
 * metadata and link into --out-dir. Everything else (binaries,
 * proc-macros, dylibs, build scripts, -vV, --print, stdin input, unknown
 * emit kinds, -o, save-temps) runs rustc locally.
 *
 * Ownership: a wrap_args owns copies of every string; free it with
 * wrap_args_free(). Errors: 0 or DB_E*.
 */
#ifndef WRAP_ARGS_H
#define WRAP_ARGS_H

#include <stddef.h>

#include "wrap_util.h"

typedef struct wrap_extern {
  char *name;
  char *path; /* absolute, or NULL for "--extern name" */
} wrap_extern;

typedef struct wrap_libdir {
  char *kind; /* "dependency", "native", "crate", "framework", "all" */
  char *path; /* absolute */
} wrap_libdir;

typedef struct wrap_args {
  char *rustc;    /* as given by cargo */
  wrap_strv args; /* the rustc arguments (without rustc itself) */
  char *cwd;      /* absolute working directory */
  char *crate_name;
  wrap_strv crate_types;
  char *src;     /* absolute input file, NULL for none */
  int stdin_src; /* input is "-" */
  char *out_dir; /* absolute, NULL if none */
  char *extra_filename;
  char *target; /* --target value or NULL */
  int emit_depinfo, emit_metadata, emit_link, emit_other;
  char *emit_depinfo_path; /* explicit --emit=dep-info=PATH (absolute) */
  int has_output;          /* -o */
  int has_print;           /* --print or -vV / --version */
  int has_incremental;
  int has_native_libs; /* -l */
  int save_temps;
  int native_cpu; /* -C target-cpu=native: the output depends on the CPU */
  wrap_extern *externs;
  size_t n_externs;
  wrap_libdir *libdirs;
  size_t n_libdirs;
} wrap_args;

/* Parse rustc's argv (argv[0] is rustc itself). cwd may be NULL
 * (getcwd). *out owned by the caller. @file arguments are not expanded
 * (cargo does not use them); such calls are marked not distributable. */
int wrap_args_parse(int argc, char *const *argv, const char *cwd,
                    wrap_args **out);
void wrap_args_free(wrap_args *a); /* NULL ok */

/* NULL if the call can run remotely, else a short static reason why it
 * runs locally ("binary crate", "build script", ...). */
const char *wrap_args_local_reason(const wrap_args *a);

/* 1 if the call is a compile of a non-distributable crate (bin, proc-macro,
 * build script ...), 0 for queries such as -vV or --print. */
int wrap_args_is_compile(const wrap_args *a);

/* 1 if the crate loads a proc-macro (an --extern that is a shared object):
 * code that runs inside rustc and may read files, variables or the network
 * that neither the command line nor dep-info names. */
int wrap_args_uses_proc_macro(const wrap_args *a);

/* The absolute output files of a distributable call, in emit order:
 * lib<crate><extra>.rlib, .rmeta and <crate><extra>.d under out_dir
 * (or the explicit dep-info path). */
int wrap_args_outputs(const wrap_args *a, wrap_strv *out);

/* The argument list to send to the remote rustc: the original arguments
 * minus -C incremental=... (a local cache directory). */
int wrap_args_remote_argv(const wrap_args *a, wrap_strv *out);

#endif
