/* cargo-distbuild-wrapper: RUSTC_WRAPPER / RUSTC_WORKSPACE_WRAPPER entry.
 * cargo runs it as `cargo-distbuild-wrapper /path/to/rustc ARGS...`. This
 * binary is the light front (wrap_front.h); distributable calls continue in
 * cargo-distbuild-wrapper-remote from the same directory. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wrap_front.h"

#define REMOTE_EXE "cargo-distbuild-wrapper-remote"

int main(int argc, char **argv) {
  char self[PATH_MAX], remote[PATH_MAX + sizeof(REMOTE_EXE) + 1];
  const char *rp = NULL;
  ssize_t n;
  if (argc < 2 || strcmp(argv[1], "--help") == 0) {
    fprintf(argc < 2 ? stderr : stdout,
            "usage: cargo-distbuild-wrapper RUSTC [ARGS...]\n"
            "Set as RUSTC_WRAPPER or RUSTC_WORKSPACE_WRAPPER for cargo.\n");
    return argc < 2 ? 2 : 0;
  }
  n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    char *slash;
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash != NULL) {
      *slash = '\0';
      snprintf(remote, sizeof(remote), "%s/%s", self, REMOTE_EXE);
      rp = remote;
    }
  }
  return wrap_front_main(argc - 1, argv + 1, rp);
}
