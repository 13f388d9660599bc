/* cargo-distbuild-wrapper-remote: the remote half of the rustc wrapper
 * (action building, CAS, Execute), exec'd by cargo-distbuild-wrapper for
 * distributable calls with the same arguments: RUSTC [ARGS...]. It decides
 * again, so running it directly is equivalent to the wrapper. */
#include <stdio.h>

#include "wrap_exec.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: cargo-distbuild-wrapper-remote RUSTC [ARGS...]\n");
    return 2;
  }
  return wrap_exec_main(argc - 1, argv + 1);
}
