/* cargo-distbuild: dispatches "<component> <verb>" to the component CLIs. */
#include "cas_cli.h"
#include "sbx_cli.h"
#include "sched_cli.h"
#include "worker_cli.h"
#include "wrap_cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f, "usage: cargo-distbuild <command> [args]\n"
             "commands:\n"
             "  cas run      serve a standalone CAS + action cache\n"
             "  sandbox run  run one command in the sandbox (debug)\n"
             "  scheduler run  serve the REAPI endpoint with execution\n"
             "  worker run   execute actions for a scheduler\n"
             "  build        cargo build through the wrapper + cache report\n"
             "  check, test, run, bench, doc\n"
             "               the same for those cargo commands\n"
             "  stats        action-cache statistics [--json]\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  /* As a cargo subcommand: cargo runs `cargo-distbuild distbuild ...`. */
  if (!strcmp(argv[1], "distbuild")) {
    argc--;
    argv++;
    if (argc < 2) {
      usage(stderr);
      return 2;
    }
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "cas"))
    return cas_cli_main(argc - 1, argv + 1);
  if (!strcmp(argv[1], "scheduler"))
    return sched_cli_main(argc - 1, argv + 1);
  if (!strcmp(argv[1], "sandbox"))
    return sbx_cli_main(argc - 1, argv + 1);
  if (!strcmp(argv[1], "worker"))
    return worker_cli_main(argc - 1, argv + 1);
  if (wrap_cli_is_cargo_command(argv[1]))
    return wrap_cli_build(argc - 1, argv + 1);
  if (!strcmp(argv[1], "stats"))
    return wrap_cli_stats(argc - 1, argv + 1);
  fprintf(stderr, "cargo-distbuild: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
