/*
 * Wrapper configuration: the scheduler address, TLS material and metadata
 * headers (Bazel's --remote_executor, --tls_certificate,
 * --tls_client_certificate, --tls_client_key and --remote_header).
 *
 *   setting          environment                      config.toml key
 *   scheduler        CARGO_DISTBUILD_SCHEDULER        scheduler
 *   CA bundle        CARGO_DISTBUILD_TLS_CA           tls_ca
 *   client cert      CARGO_DISTBUILD_TLS_CERT         tls_cert
 *   its key          CARGO_DISTBUILD_TLS_KEY          tls_key
 *   headers          CARGO_DISTBUILD_REMOTE_HEADERS   remote_headers
 *
 * Each setting on its own: its environment variable when set and not
 * empty; for the headers, else the remote_headers key of the file named by
 * CARGO_DISTBUILD_HEADERS_FILE (see wrap_config_export); else the key in
 * the nearest .distbuild/config.toml of the working
 * directory or of a parent directory that has it; else in
 * $XDG_CONFIG_HOME/cargo-distbuild/config.toml (or ~/.config/...); else
 * the default (127.0.0.1:8980; no TLS files, no headers).
 *
 * Values: the scheduler is "host:port", "grpc://host:port" (the prefix is
 * dropped) or "grpcs://host:port" (TLS, kept). The TLS keys are PEM file
 * paths; relative ones are taken against the directory holding
 * .distbuild/ (the XDG file's directory for that file) or, from the
 * environment, against the working directory, and made absolute here, as
 * the wrapper runs in many crate directories. Headers are "name=value"
 * entries: one per line in the environment, a TOML array of strings (or
 * one string) in the file; see rpc_client_header_parse for the rules.
 */
#ifndef WRAP_CONFIG_H
#define WRAP_CONFIG_H

#include "rpc_client.h"
#include "wrap_util.h"

#define WRAP_DEFAULT_SCHEDULER "127.0.0.1:8980"
/* Set by wrap_config_export: the config file to take the headers from. */
#define WRAP_HEADERS_FILE_ENV "CARGO_DISTBUILD_HEADERS_FILE"

typedef struct wrap_config {
  char *scheduler;       /* "host:port" or "grpcs://host:port"; never NULL */
  int scheduler_default; /* 1: no setting named it */
  char *tls_ca;          /* absolute paths, or NULL */
  char *tls_cert;
  char *tls_key;
  wrap_strv headers;  /* "name=value", each valid; headers.v may be NULL */
  char *headers_file; /* absolute path of the config file that gave the
                         headers, or NULL (the environment, or none) */
  /* Points into the fields above, for cas_client_opts.channel. */
  rpc_channel_opts channel;
} wrap_config;

/* Look every setting up (cwd may be NULL: getcwd) into *cfg, which the
 * caller clears with wrap_config_clear() whatever the result. 0; DB_EINVAL
 * for a malformed value or a bad header, with *why (malloc'd, caller
 * frees; never naming a header's value) saying where; DB_ENOMEM. */
int wrap_config_load(const char *cwd, wrap_config *cfg, char **why);
void wrap_config_clear(wrap_config *cfg); /* resets to {0} */

/* Put cfg's settings into this process's environment (variables of the
 * table above; the scheduler unless it is the default), so that programs
 * started from here see the same settings with absolute paths whatever
 * their working directory. Headers from a config file stay out of it (they
 * may be credentials, and everything cargo starts would see them): only
 * the file's path goes, as WRAP_HEADERS_FILE_ENV, which the lookup reads
 * instead of searching. 0 or DB_ENOMEM. */
int wrap_config_export(const wrap_config *cfg);

/* The value of `key = ...` in TOML text (top level or any table; the first
 * line that assigns key decides): a string ("basic" with escapes, or
 * 'literal') appends one element to out, an array of strings (which may
 * span lines, with comments and a trailing comma) each element. 1 found,
 * 0 absent, DB_EINVAL malformed, DB_ENOMEM. */
int wrap_config_parse_key(const char *text, const char *key, wrap_strv *out);

/* Parse `scheduler = "..."` from TOML text, dropping a "grpc://" prefix.
 * Malloc'd value, or NULL if absent or malformed. */
char *wrap_config_parse_scheduler(const char *text);

#endif
