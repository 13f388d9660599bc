#include "rpc_status.h"

#include "db_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *rpc_code_name(int code) {
  static const char *names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  if (code < 0 || code > 16)
    return "UNKNOWN_CODE";
  return names[code];
}

int rpc_code_from_err(int db_err) {
  switch (db_err) {
  case DB_OK:
    return RPC_OK;
  case DB_EINVAL:
  case DB_EDIGEST:
  case DB_EPROTO:
  case DB_ECOMPRESS:
    return RPC_INVALID_ARGUMENT;
  case DB_ENOTFOUND:
    return RPC_NOT_FOUND;
  case DB_ENOSPC:
  case DB_ETOOBIG:
  case DB_ENOMEM:
    return RPC_RESOURCE_EXHAUSTED;
  case DB_ETIMEDOUT:
    return RPC_DEADLINE_EXCEEDED;
  case DB_EUNAVAIL:
    return RPC_UNAVAILABLE;
  case DB_EEXIST:
    return RPC_ALREADY_EXISTS;
  case DB_ECANCELLED:
    return RPC_CANCELLED;
  case DB_EUNSUPP:
    return RPC_UNIMPLEMENTED;
  default:
    return RPC_INTERNAL;
  }
}

void rpc_status_clear(rpc_status *st) {
  if (!st)
    return;
  free(st->message);
  free(st->details);
  st->code = RPC_OK;
  st->message = NULL;
  st->details = NULL;
  st->details_len = 0;
}

void rpc_status_setf(rpc_status *st, int code, const char *fmt, ...) {
  va_list ap;
  char *msg = NULL;

  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  free(st->message);
  st->message = msg;
  st->code = code;
}

static int keep_plain(unsigned char c) {
  return c >= 0x20 && c <= 0x7e && c != '%';
}

char *rpc_message_encode(const char *msg) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0, i;
  char *out, *p;

  if (!msg)
    msg = "";
  for (i = 0; msg[i]; i++)
    n += keep_plain((unsigned char)msg[i]) ? 1 : 3;
  out = malloc(n + 1);
  if (!out)
    return NULL;
  p = out;
  for (i = 0; msg[i]; i++) {
    unsigned char c = (unsigned char)msg[i];
    if (keep_plain(c)) {
      *p++ = (char)c;
    } else {
      *p++ = '%';
      *p++ = hex[c >> 4];
      *p++ = hex[c & 15];
    }
  }
  *p = '\0';
  return out;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

char *rpc_message_decode(const char *s, size_t len) {
  char *out = malloc(len + 1);
  size_t i, o = 0;

  if (!out)
    return NULL;
  for (i = 0; i < len; i++) {
    int hi, lo;
    /* A malformed escape is copied through verbatim (decoders must not
     * fail on bad encodings). */
    if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
        (lo = hexval(s[i + 2])) >= 0) {
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

int rpc_timeout_parse(const char *s, int64_t *ms_out) {
  int64_t v = 0;
  size_t i, n;
  char unit;

  if (!s)
    return DB_EINVAL;
  n = strlen(s);
  /* At most 8 digits plus one unit character. */
  if (n < 2 || n > 9)
    return DB_EINVAL;
  for (i = 0; i + 1 < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return DB_EINVAL;
    v = v * 10 + (s[i] - '0');
  }
  unit = s[n - 1];
  switch (unit) {
  case 'H':
    *ms_out = v * 3600000;
    break;
  case 'M':
    *ms_out = v * 60000;
    break;
  case 'S':
    *ms_out = v * 1000;
    break;
  case 'm':
    *ms_out = v;
    break;
  case 'u':
    *ms_out = (v + 999) / 1000;
    break;
  case 'n':
    *ms_out = (v + 999999) / 1000000;
    break;
  default:
    return DB_EINVAL;
  }
  return 0;
}

void rpc_timeout_format(int64_t ms, char *buf, size_t buflen) {
  if (ms < 0)
    ms = 0;
  /* Keep within 8 digits by moving to coarser units. */
  if (ms <= 99999999)
    snprintf(buf, buflen, "%lldm", (long long)ms);
  else if ((ms + 999) / 1000 <= 99999999) /* rounded up: stay <= 8 digits */
    snprintf(buf, buflen, "%lldS", (long long)((ms + 999) / 1000));
  else
    snprintf(buf, buflen, "%lldH", (long long)((ms / 1000 + 3599) / 3600));
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int rpc_b64_encode(const uint8_t *in, size_t len, char **out) {
  size_t olen = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0);
  char *o = malloc(olen + 1);
  size_t i, j = 0;

  if (!o)
    return DB_ENOMEM;
  for (i = 0; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    o[j++] = b64chars[v >> 18 & 63];
    o[j++] = b64chars[v >> 12 & 63];
    o[j++] = b64chars[v >> 6 & 63];
    o[j++] = b64chars[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    o[j++] = b64chars[v >> 18 & 63];
    o[j++] = b64chars[v >> 12 & 63];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    o[j++] = b64chars[v >> 18 & 63];
    o[j++] = b64chars[v >> 12 & 63];
    o[j++] = b64chars[v >> 6 & 63];
  }
  o[j] = '\0';
  *out = o;
  return 0;
}

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+' || c == '-')
    return 62;
  if (c == '/' || c == '_')
    return 63;
  return -1;
}

int rpc_b64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen) {
  uint8_t *o;
  uint32_t acc = 0;
  int bits = 0;
  size_t i, j = 0;

  while (len > 0 && in[len - 1] == '=')
    len--;
  if (len % 4 == 1)
    return DB_EINVAL;
  o = malloc(len * 3 / 4 + 1);
  if (!o)
    return DB_ENOMEM;
  for (i = 0; i < len; i++) {
    int v = b64val(in[i]);
    if (v < 0) {
      free(o);
      return DB_EINVAL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[j++] = (uint8_t)(acc >> bits);
    }
  }
  *out = o;
  *outlen = j;
  return 0;
}

int64_t rpc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
