/*
 * gRPC server: a call's request header fields, kept in a small list.
 * Duplicate fields are joined with ',' (the gRPC metadata rule), and the
 * list's total size is capped (RPC__MAX_HEADER_LIST).
 */
#include "rpc_server_int.h"

#include <stdlib.h>
#include <string.h>

static rpc__hdr *hdr_find(const rpc_call *call, const char *name, size_t len) {
  rpc__hdr *h;

  for (h = call->hdrs; h; h = h->next)
    if (strncmp(h->name, name, len) == 0 && h->name[len] == '\0')
      return h;
  return NULL;
}

int rpc__call_on_header(rpc_call *call, const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen) {
  rpc__hdr *h, *old, **pp;
  size_t oldlen = 0;

  call->hdr_bytes += namelen + valuelen + 32;
  if (call->hdr_bytes > RPC__MAX_HEADER_LIST)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  old = hdr_find(call, (const char *)name, namelen);
  if (old && name[0] == ':')
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 checks too */
  if (old)
    oldlen = strlen(old->value) + 1; /* "old," */
  h = malloc(sizeof(*h) + namelen + 1 + oldlen + valuelen + 1);
  if (!h)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  h->name = (char *)(h + 1);
  memcpy(h->name, name, namelen);
  h->name[namelen] = '\0';
  h->value = h->name + namelen + 1;
  if (old) {
    /* Duplicate fields join with ',' (gRPC metadata rule). */
    memcpy(h->value, old->value, oldlen - 1);
    h->value[oldlen - 1] = ',';
  }
  memcpy(h->value + oldlen, value, valuelen);
  h->value[oldlen + valuelen] = '\0';
  if (old) {
    for (pp = &call->hdrs; *pp != old; pp = &(*pp)->next)
      ;
    *pp = h;
    h->next = old->next;
    free(old);
  } else {
    h->next = call->hdrs;
    call->hdrs = h;
  }
  return 0;
}

const char *rpc_call_header(const rpc_call *call, const char *name) {
  rpc__hdr *h;

  if (!call || !name)
    return NULL;
  h = hdr_find(call, name, strlen(name));
  return h ? h->value : NULL;
}
