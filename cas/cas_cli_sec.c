/* Server TLS / bearer-token CLI settings; see cas_cli_sec.h. */
#include "cas_cli_sec.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_FILE_MAX (1 << 20)

static const char *env_of(const char *prefix, const char *name) {
  char key[128];
  const char *v;

  snprintf(key, sizeof(key), "%s%s", prefix, name);
  v = getenv(key);
  return v && *v ? v : NULL;
}

void cas_cli_sec_init(cas_cli_sec *s, const char *env_prefix) {
  memset(s, 0, sizeof(*s));
  s->tls_cert = env_of(env_prefix, "TLS_CERT");
  s->tls_key = env_of(env_prefix, "TLS_KEY");
  s->tls_client_ca = env_of(env_prefix, "TLS_CLIENT_CA");
  s->token_file = env_of(env_prefix, "AUTH_TOKEN_FILE");
}

int cas_cli_sec_option(cas_cli_sec *s, int opt, const char *value) {
  switch (opt) {
  case CAS_CLI_SEC_TLS_CERT:
    s->tls_cert = value;
    return 1;
  case CAS_CLI_SEC_TLS_KEY:
    s->tls_key = value;
    return 1;
  case CAS_CLI_SEC_TLS_CLIENT_CA:
    s->tls_client_ca = value;
    return 1;
  case CAS_CLI_SEC_TOKEN_FILE:
    s->token_file = value;
    return 1;
  default:
    return 0;
  }
}

void cas_cli_sec_tokens_free(char **tokens) {
  size_t i;

  if (!tokens)
    return;
  for (i = 0; tokens[i]; i++) {
    OPENSSL_cleanse(tokens[i], strlen(tokens[i]));
    free(tokens[i]);
  }
  free(tokens);
}

int cas_cli_sec_parse_tokens(const char *text, char ***out) {
  char **v = NULL;
  size_t n = 0;
  const char *l = text;
  int rv = DB_ENOMEM;

  *out = NULL;
  while (l && *l) {
    const char *nl = strchr(l, '\n');
    const char *e = nl ? nl : l + strlen(l);
    char **nv;

    while (l < e && (*l == ' ' || *l == '\t'))
      l++;
    while (e > l && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      e--;
    if (e > l && *l != '#') {
      nv = realloc(v, (n + 2) * sizeof(*v));
      if (!nv)
        goto out;
      v = nv;
      v[n] = strndup(l, (size_t)(e - l));
      v[n + 1] = NULL;
      if (!v[n])
        goto out;
      n++;
    }
    l = nl ? nl + 1 : NULL;
  }
  if (n == 0) {
    rv = DB_EINVAL;
    goto out;
  }
  *out = v;
  v = NULL;
  rv = 0;
out:
  cas_cli_sec_tokens_free(v);
  return rv;
}

static int read_text(const char *path, char **out) {
  FILE *f = fopen(path, "re");
  char *buf = NULL;
  size_t n;
  int rv = DB_EIO;

  *out = NULL;
  if (!f)
    return DB_EIO;
  buf = malloc(TOKEN_FILE_MAX + 1);
  if (!buf) {
    rv = DB_ENOMEM;
    goto out;
  }
  n = fread(buf, 1, TOKEN_FILE_MAX + 1, f);
  if (ferror(f))
    goto out;
  if (n > TOKEN_FILE_MAX) {
    rv = DB_ETOOBIG;
    goto out;
  }
  buf[n] = '\0';
  *out = buf;
  buf = NULL;
  rv = 0;
out:
  if (buf)
    OPENSSL_cleanse(buf, TOKEN_FILE_MAX + 1);
  free(buf);
  fclose(f);
  return rv;
}

/* The token file's tokens into *out (NULL when there is no token file).
 * On failure, why (n bytes) says what is wrong. */
static int load_tokens(const cas_cli_sec *s, char ***out, char *why, size_t n) {
  char *text = NULL;
  int rv;

  *out = NULL;
  if (!s->token_file)
    return 0;
  rv = read_text(s->token_file, &text);
  if (rv != 0) {
    snprintf(why, n, "cannot read --auth-token-file %s: %s", s->token_file,
             rv == DB_EIO ? strerror(errno) : db_strerror(rv));
    return rv;
  }
  rv = cas_cli_sec_parse_tokens(text, out);
  if (rv != 0)
    snprintf(why, n, "--auth-token-file %s: %s", s->token_file,
             rv == DB_EINVAL ? "holds no token" : db_strerror(rv));
  OPENSSL_cleanse(text, strlen(text));
  free(text);
  return rv;
}

/* o's TLS files and tokens from s. */
static void fill_opts(const cas_cli_sec *s, char **tokens, rpc_server_opts *o) {
  o->tls_cert_file = s->tls_cert;
  o->tls_key_file = s->tls_key;
  o->tls_client_ca_file = s->tls_client_ca;
  o->auth_tokens = (const char *const *)tokens;
}

/* One line that says how clients must connect. */
static void describe(const cas_cli_sec *s, const char *what) {
  size_t n = 0;

  while (s->tokens && s->tokens[n])
    n++;
  DB_INFO("security", "%s%s; %s", what,
          !s->tls_cert       ? "plaintext h2c (grpc://)"
          : s->tls_client_ca ? "TLS (grpcs://), client certificates required"
                             : "TLS (grpcs://)",
          n ? "bearer token required" : "no authorization");
}

int cas_cli_sec_apply(cas_cli_sec *s, rpc_server_opts *o, const char *prog) {
  char why[512];
  int rv;

  if ((s->tls_key || s->tls_client_ca) && !s->tls_cert) {
    fprintf(stderr, "%s: --tls-key and --tls-client-ca need --tls-cert\n",
            prog);
    return DB_EINVAL;
  }
  rv = load_tokens(s, &s->tokens, why, sizeof(why));
  if (rv != 0) {
    fprintf(stderr, "%s: %s\n", prog, why);
    return rv;
  }
  fill_opts(s, s->tokens, o);
  describe(s, "");
  return 0;
}

static void on_hup(evutil_socket_t sig, short what, void *arg) {
  cas_cli_sec *s = arg;
  rpc_server_opts o = {0};
  char **tokens = NULL;
  char why[512];

  (void)sig;
  (void)what;
  if (load_tokens(s, &tokens, why, sizeof(why)) != 0) {
    DB_ERROR("security", "SIGHUP: %s; keeping the previous settings", why);
    return;
  }
  fill_opts(s, tokens, &o);
  if (rpc_server_reload_security(s->srv, &o) != 0) {
    DB_ERROR("security", "SIGHUP: reload failed (above); keeping the "
                         "previous settings");
    cas_cli_sec_tokens_free(tokens);
    return;
  }
  cas_cli_sec_tokens_free(s->tokens);
  s->tokens = tokens;
  describe(s, "SIGHUP: reloaded the certificate files and tokens: ");
}

int cas_cli_sec_watch(cas_cli_sec *s, struct event_base *base,
                      rpc_server *srv) {
  s->srv = srv;
  s->hup = evsignal_new(base, SIGHUP, on_hup, s);
  if (!s->hup || event_add(s->hup, NULL) != 0)
    return DB_ENOMEM;
  return 0;
}

void cas_cli_sec_fini(cas_cli_sec *s) {
  if (s->hup)
    event_free(s->hup);
  s->hup = NULL;
  cas_cli_sec_tokens_free(s->tokens);
  s->tokens = NULL;
}
