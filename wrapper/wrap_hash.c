/* Record names by SHA-256; see wrap_hash.h. */
#include "wrap_hash.h"

#include <stdlib.h>
#include <string.h>

#include "reapi_digest.h"
#include "wrap_util.h"

void wrap_hash_str(const char *s, char *out, size_t n) {
  reapi_digest d;
  reapi_digest_of(s, strlen(s), &d);
  if (n > REAPI_HASH_HEX_LEN)
    n = REAPI_HASH_HEX_LEN;
  memcpy(out, d.hash, n);
  out[n] = '\0';
}

void wrap_hash_crate_key(const char *crate, const char *manifest_dir,
                         char key[33]) {
  char *s = wrap_fmt("%s\n%s", crate, manifest_dir ? manifest_dir : "");
  wrap_hash_str(s ? s : crate, key, 32);
  free(s);
}
