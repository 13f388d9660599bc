/*
 * The debug CLI: cargo-distbuild sandbox run [options] -- CMD ARGS
 */
#ifndef SBX_CLI_H
#define SBX_CLI_H

/* argv[0] = "sandbox", argv[1] = "run", ...  Returns the process exit code:
 * the command's exit code, 128+signal when it was killed, 124 on timeout,
 * 125 for sandbox errors, 127 when the command could not be executed, 2 for
 * usage errors. */
int sbx_cli_main(int argc, char **argv);

#endif
