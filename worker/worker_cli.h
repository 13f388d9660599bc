/* `cargo-distbuild worker ...` subcommands. */
#ifndef WORKER_CLI_H
#define WORKER_CLI_H

/* argv[0] is "worker"; e.g. {"worker", "run", "--id", "w1", ...}.
 * Returns the process exit code. */
int worker_cli_main(int argc, char **argv);

#endif
