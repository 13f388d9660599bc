/*
 * Wrapper configuration: the scheduler address.
 *
 * Order: $CARGO_DISTBUILD_SCHEDULER; then `scheduler = "host:port"` in
 * .distbuild/config.toml of the working directory or of any parent
 * directory; then $XDG_CONFIG_HOME/cargo-distbuild/config.toml (or
 * ~/.config/...); else 127.0.0.1:8980. A "grpc://" prefix is accepted.
 */
#ifndef WRAP_CONFIG_H
#define WRAP_CONFIG_H

#define WRAP_DEFAULT_SCHEDULER "127.0.0.1:8980"

/* Malloc'd "host:port" (never NULL unless out of memory). cwd may be
 * NULL (getcwd). */
char *wrap_config_scheduler(const char *cwd);

/* Parse `scheduler = "..."` from TOML text (top level or any table; the
 * first match wins). Malloc'd value or NULL if absent. */
char *wrap_config_parse_scheduler(const char *text);

#endif
