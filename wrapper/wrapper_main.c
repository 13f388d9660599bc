/* cargo-distbuild-wrapper: RUSTC_WRAPPER / RUSTC_WORKSPACE_WRAPPER entry.
 * cargo runs it as `cargo-distbuild-wrapper /path/to/rustc ARGS...`. */
#include <stdio.h>
#include <string.h>

#include "wrap_exec.h"

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    fprintf(argc < 2 ? stderr : stdout,
            "usage: cargo-distbuild-wrapper RUSTC [ARGS...]\n"
            "Set as RUSTC_WRAPPER or RUSTC_WORKSPACE_WRAPPER for cargo.\n");
    return argc < 2 ? 2 : 0;
  }
  return wrap_exec_main(argc - 1, argv + 1);
}
