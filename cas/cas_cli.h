/* `cargo-distbuild cas ...` subcommands. */
#ifndef CAS_CLI_H
#define CAS_CLI_H

/* argv[0] = "cas", argv[1] = verb ("run"). Returns the process exit code. */
int cas_cli_main(int argc, char **argv);

/* Parse a size such as "10G", "512M", "4096", "1.5G" (binary units).
 * Returns 0 or DB_EINVAL. Shared by other CLIs. */
int cas_cli_parse_size(const char *s, unsigned long long *out);

/* Parse a --sync value: "background" (the default when s is NULL or
 * empty) or "always", into *mode (CAS_SYNC_*). Returns 0 or DB_EINVAL. */
int cas_cli_parse_sync(const char *s, int *mode);

#endif
