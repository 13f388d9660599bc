/*
 * `cargo distbuild build` and `cargo distbuild stats`, dispatched from the
 * cargo-distbuild binary's main. Both accept being called as a cargo
 * subcommand (cargo runs `cargo-distbuild distbuild build ...`; main
 * strips the "distbuild" word before calling these).
 *
 * build [--workspace-only] [--scheduler HOST:PORT] [cargo build args...]
 *   Runs `cargo build` with the wrapper set (RUSTC_WRAPPER, or
 *   RUSTC_WORKSPACE_WRAPPER with --workspace-only), CARGO_INCREMENTAL=0
 *   and a fresh CARGO_DISTBUILD_BUILD_ID, then prints the action-cache
 *   report of that build to stderr. With cargo's -q/--quiet the wrapper's
 *   progress lines drop to warnings (CARGO_DISTBUILD_LOG=warn, unless set).
 *   Exit code: cargo's.
 *   check, test, run, bench and doc work the same way: the word is passed
 *   on to cargo (wrap_cli_is_cargo_command).
 * stats [--json]
 *   The last build and the cumulative totals from the stats store.
 */
#ifndef WRAP_CLI_H
#define WRAP_CLI_H

/* 1 if word is a cargo command that wrap_cli_build runs ("build",
 * "check", "test", "run", "bench", "doc"), else 0. */
int wrap_cli_is_cargo_command(const char *word);

/* argv[0] is the subcommand word: a cargo command (wrap_cli_is_cargo_command)
 * or "stats". */
int wrap_cli_build(int argc, char **argv);
int wrap_cli_stats(int argc, char **argv);

#endif
