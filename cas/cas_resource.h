/*
 * ByteStream resource names (REAPI v2):
 *   read:  [INSTANCE/]blobs/HASH/SIZE
 *          [INSTANCE/]compressed-blobs/COMPRESSOR/HASH/SIZE
 *   write: [INSTANCE/]uploads/UUID/blobs/HASH/SIZE[/METADATA...]
 *          [INSTANCE/]uploads/UUID/compressed-blobs/COMPRESSOR/HASH/SIZE[/...]
 * The digest-function segment is omitted for SHA-256 (the only function
 * this server speaks); an explicit "sha256/" segment is tolerated.
 */
#ifndef CAS_RESOURCE_H
#define CAS_RESOURCE_H

#include "reapi_digest.h"

typedef enum cas_compressor {
  CAS_COMPRESSOR_IDENTITY = 0,
  CAS_COMPRESSOR_ZSTD = 1,
} cas_compressor;

typedef struct cas_resource {
  reapi_digest digest;
  cas_compressor compressor;
  char instance[256]; /* may be "" */
  char uuid[64];      /* write names only */
} cas_resource;

/* Parse name. is_write selects the uploads/ form. Returns 0, DB_EINVAL for
 * a malformed name, or DB_EUNSUPP for a compressor other than zstd. */
int cas_resource_parse(const char *name, int is_write, cas_resource *out);

#endif
