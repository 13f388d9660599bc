/* `cargo-distbuild scheduler ...` subcommands. */
#ifndef SCHED_CLI_H
#define SCHED_CLI_H

/* argv[0] = "scheduler", argv[1] = verb ("run"). Returns the process exit
 * code. */
int sched_cli_main(int argc, char **argv);

#endif
