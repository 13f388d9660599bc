/*
 * TLS and bearer-token settings shared by the server CLIs (`scheduler
 * run`, `cas run`): the flags --tls-cert, --tls-key, --tls-client-ca and
 * --auth-token-file, their environment defaults, and loading the token
 * file into rpc_server_opts.
 */
#ifndef CAS_CLI_SEC_H
#define CAS_CLI_SEC_H

#include "rpc_server.h"

/* getopt_long codes of the four flags (outside the ASCII range so they
 * never clash with a CLI's own short codes). */
enum {
  CAS_CLI_SEC_TLS_CERT = 0x1000,
  CAS_CLI_SEC_TLS_KEY,
  CAS_CLI_SEC_TLS_CLIENT_CA,
  CAS_CLI_SEC_TOKEN_FILE
};

/* Entries for a getopt_long table (spread with CAS_CLI_SEC_LONGOPTS). */
#define CAS_CLI_SEC_LONGOPTS                                                   \
  {"tls-cert", required_argument, NULL, CAS_CLI_SEC_TLS_CERT},                 \
      {"tls-key", required_argument, NULL, CAS_CLI_SEC_TLS_KEY},               \
      {"tls-client-ca", required_argument, NULL, CAS_CLI_SEC_TLS_CLIENT_CA}, { \
    "auth-token-file", required_argument, NULL, CAS_CLI_SEC_TOKEN_FILE         \
  }

#define CAS_CLI_SEC_USAGE                                                      \
  "  --tls-cert FILE        serve TLS only (grpcs://) with this PEM "          \
  "certificate\n"                                                              \
  "                         chain\n"                                           \
  "  --tls-key FILE         its PEM private key (default: in the "             \
  "certificate file)\n"                                                        \
  "  --tls-client-ca FILE   mutual TLS: require client certificates "          \
  "signed by\n"                                                                \
  "                         this CA\n"                                         \
  "  --auth-token-file FILE require \"authorization: Bearer <token>\" "        \
  "on every\n"                                                                 \
  "                         call, with one of the file's tokens (one per "     \
  "line)\n"                                                                    \
  "                         SIGHUP reads the TLS files and tokens again\n"

struct event;
struct event_base;

typedef struct cas_cli_sec {
  const char *tls_cert, *tls_key, *tls_client_ca, *token_file; /* borrowed */
  char **tokens;     /* owned: loaded by cas_cli_sec_apply, and on SIGHUP */
  struct event *hup; /* owned: cas_cli_sec_watch */
  rpc_server *srv;   /* borrowed */
} cas_cli_sec;

/* Defaults from env_prefix + "TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA" and
 * "AUTH_TOKEN_FILE" (e.g. prefix "CARGO_DISTBUILD_SCHEDULER_"). */
void cas_cli_sec_init(cas_cli_sec *s, const char *env_prefix);

/* 1 if opt is one of the four codes (value stored), else 0. */
int cas_cli_sec_option(cas_cli_sec *s, int opt, const char *value);

/* Load the token file and point o's TLS and token fields at s (which must
 * outlive rpc_server_new). Prints why to stderr, prefixed with prog, and
 * returns DB_EINVAL / DB_EIO / DB_ENOMEM on failure; 0 otherwise. */
int cas_cli_sec_apply(cas_cli_sec *s, rpc_server_opts *o, const char *prog);

/* On SIGHUP, read the token file and the TLS files again and hand them to
 * srv (rpc_server_reload_security): rotation without a restart. A file
 * that cannot be used keeps the previous settings; both outcomes are
 * logged. srv and base are borrowed and must outlive s's event (freed by
 * cas_cli_sec_fini). 0 or DB_ENOMEM. */
int cas_cli_sec_watch(cas_cli_sec *s, struct event_base *base, rpc_server *srv);

/* Free the loaded tokens (scrubbed first) and the SIGHUP event. */
void cas_cli_sec_fini(cas_cli_sec *s);

/* Parse token-file text: one token per line, surrounding blanks trimmed,
 * empty lines and lines starting with '#' skipped. *out is a
 * NULL-terminated malloc'd array (free with cas_cli_sec_tokens_free).
 * DB_EINVAL when no token is found, DB_ENOMEM. */
int cas_cli_sec_parse_tokens(const char *text, char ***out);
void cas_cli_sec_tokens_free(char **tokens); /* NULL ok */

#endif
