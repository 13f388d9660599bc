/*
 * The rpc_client's target and channel: parsing "grpc://" / "grpcs://"
 * targets, validating metadata entries, copying the TLS files and adding
 * the headers (see rpc_client_int.h).
 */
#include "rpc_client_int.h"

#include "db_err.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bare HOST:PORT is h2c, as Bazel's grpc://; grpcs:// without a port
 * takes gRPC's TLS default, 443. */
int rpc_client__parse_target(const char *target, char **url, int *tls) {
  const char *hp = target, *colon, *p, *dflt = "";
  size_t hlen;
  char *u;

  *tls = 0;
  if (!target)
    return DB_EINVAL;
  if (strncmp(hp, "grpc://", 7) == 0) {
    hp += 7;
  } else if (strncmp(hp, "grpcs://", 8) == 0) {
    hp += 8;
    *tls = 1;
  } else if (strstr(hp, "://")) {
    return DB_EINVAL;
  }
  if (hp[0] == '[') { /* [v6]:port */
    p = strchr(hp, ']');
    if (!p || (p[1] != ':' && !(*tls && p[1] == '\0')))
      return DB_EINVAL;
    colon = p + 1;
  } else {
    colon = strrchr(hp, ':');
    if (!colon && *tls)
      colon = hp + strlen(hp); /* no port: gRPC's default for TLS */
    if (!colon || memchr(hp, ':', (size_t)(colon - hp)))
      return DB_EINVAL;
  }
  hlen = (size_t)(colon - hp);
  if (hlen == 0 || hlen > 255)
    return DB_EINVAL;
  for (p = hp; p < colon; p++) {
    if (*p <= ' ' || *p == '/' || *p == '@' || *p == '?' || *p == '#' ||
        (unsigned char)*p >= 0x7f)
      return DB_EINVAL;
  }
  if (*colon == '\0') {
    dflt = ":443";
  } else {
    long port = 0;
    size_t n = 0;
    for (p = colon + 1; *p; p++, n++) {
      if (*p < '0' || *p > '9' || n >= 5)
        return DB_EINVAL;
      port = port * 10 + (*p - '0');
    }
    if (n == 0 || port < 1 || port > 65535)
      return DB_EINVAL;
  }
  if (asprintf(&u, "%s://%s%s", *tls ? "https" : "http", hp, dflt) < 0)
    return DB_ENOMEM;
  *url = u;
  return 0;
}

/* Names the transport sets itself, or that HTTP/2 forbids. */
static const char *const k_reserved_headers[] = {
    "content-type", "content-length",   "te",      "host",
    "connection",   "keep-alive",       "upgrade", "proxy-connection",
    "expect",       "transfer-encoding"};

static int valid_header_name(const char *n) {
  size_t i;

  if (!n[0] || n[0] == ':' || strncmp(n, "grpc-", 5) == 0)
    return 0;
  for (i = 0; n[i]; i++) {
    char ch = n[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
          ch == '_' || ch == '.'))
      return 0;
  }
  for (i = 0; i < sizeof(k_reserved_headers) / sizeof(k_reserved_headers[0]);
       i++) {
    if (strcmp(n, k_reserved_headers[i]) == 0)
      return 0;
  }
  return 1;
}

static int valid_header_value(const char *v) {
  size_t i;

  for (i = 0; v[i]; i++) {
    if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
      return 0;
  }
  return 1;
}

int rpc_client_header_parse(const char *entry, char **name, char **value) {
  const char *eq = entry ? strchr(entry, '=') : NULL;
  char *n = NULL, *v = NULL;
  size_t i;
  int rv = DB_EINVAL;

  if (name)
    *name = NULL;
  if (value)
    *value = NULL;
  if (!eq || !name || !value)
    return DB_EINVAL;
  n = strndup(entry, (size_t)(eq - entry));
  v = strdup(eq + 1);
  if (!n || !v) {
    rv = DB_ENOMEM;
    goto out;
  }
  for (i = 0; n[i]; i++) /* metadata names are lowercase on the wire */
    n[i] = (char)tolower((unsigned char)n[i]);
  if (!valid_header_name(n) || !valid_header_value(v))
    goto out;
  *name = n;
  *value = v;
  n = v = NULL;
  rv = 0;
out:
  free(n);
  free(v);
  return rv;
}

/* Copy the TLS files (grpcs:// only) and add the metadata entries. */
int rpc_client__apply_channel(rpc_client *c, const rpc_channel_opts *ch) {
  const char *const *h;
  char *name = NULL, *value = NULL;
  int rv = 0;

  if (!ch)
    return 0;
  if (c->tls) {
    if ((ch->tls_ca_file && !(c->tls_ca = strdup(ch->tls_ca_file))) ||
        (ch->tls_cert_file && !(c->tls_cert = strdup(ch->tls_cert_file))) ||
        (ch->tls_key_file && !(c->tls_key = strdup(ch->tls_key_file))))
      return DB_ENOMEM;
  }
  for (h = ch->headers; h && *h && rv == 0; h++) {
    rv = rpc_client_header_parse(*h, &name, &value);
    if (rv == 0)
      rv = rpc_client_set_header(c, name, value);
    free(name);
    free(value);
  }
  return rv;
}

int rpc_client_set_header(rpc_client *c, const char *name, const char *value) {
  struct curl_slist *l;
  char *line;

  if (!c || !name || !value || !valid_header_name(name) ||
      !valid_header_value(value))
    return DB_EINVAL;
  /* curl sends "name;" as an empty header ("name:" would remove it). */
  if (asprintf(&line, value[0] ? "%s: %s" : "%s;", name, value) < 0)
    return DB_ENOMEM;
  /* Appending keeps the head pointer that queued calls hold valid. */
  l = curl_slist_append(c->hdrs, line);
  free(line);
  if (!l)
    return DB_ENOMEM;
  c->hdrs = l;
  return 0;
}
