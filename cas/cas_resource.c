#include "cas_resource.h"

#include "db_err.h"

#include <string.h>

/* Split the next '/'-separated segment off *p. Returns its length, or -1
 * when nothing is left. */
static int next_seg(const char **p, const char **seg) {
  const char *s = *p, *e;
  if (!s || !*s)
    return -1;
  e = strchr(s, '/');
  *seg = s;
  if (e) {
    *p = e + 1;
    return (int)(e - s);
  }
  *p = s + strlen(s);
  return (int)strlen(s);
}

static int seg_is(const char *seg, int n, const char *word) {
  return (size_t)n == strlen(word) && memcmp(seg, word, (size_t)n) == 0;
}

/* Parse "[sha256/]HASH/SIZE" followed by nothing (reads) or optional
 * metadata segments (writes). */
static int parse_digest_tail(const char *p, int allow_meta, reapi_digest *out) {
  const char *seg, *hash;
  int n;
  char buf[REAPI_DIGEST_STR_MAX];

  n = next_seg(&p, &seg);
  if (n < 0)
    return DB_EINVAL;
  if (seg_is(seg, n, "sha256")) {
    n = next_seg(&p, &seg);
    if (n < 0)
      return DB_EINVAL;
  }
  if (n != REAPI_HASH_HEX_LEN)
    return DB_EINVAL;
  hash = seg;
  n = next_seg(&p, &seg);
  if (n <= 0 || n > 20)
    return DB_EINVAL;
  if (*p && !allow_meta)
    return DB_EINVAL;
  memcpy(buf, hash, REAPI_HASH_HEX_LEN);
  buf[REAPI_HASH_HEX_LEN] = '/';
  memcpy(buf + REAPI_HASH_HEX_LEN + 1, seg, (size_t)n);
  return reapi_digest_parse(buf, REAPI_HASH_HEX_LEN + 1 + (size_t)n, out);
}

int cas_resource_parse(const char *name, int is_write, cas_resource *out) {
  const char *p = name, *seg, *kw;
  const char *inst_end = NULL;
  int n;

  memset(out, 0, sizeof(*out));
  if (!name || !*name || name[0] == '/')
    return DB_EINVAL;
  /* Find the first keyword segment; everything before it is the instance
   * name (the reserved words cannot appear inside an instance name). */
  for (;;) {
    const char *before = p;
    n = next_seg(&p, &seg);
    if (n < 0)
      return DB_EINVAL;
    if ((is_write && seg_is(seg, n, "uploads")) ||
        (!is_write &&
         (seg_is(seg, n, "blobs") || seg_is(seg, n, "compressed-blobs")))) {
      inst_end = before;
      kw = seg;
      break;
    }
    if (seg_is(seg, n, "blobs") || seg_is(seg, n, "compressed-blobs") ||
        seg_is(seg, n, "uploads") || n == 0)
      return DB_EINVAL;
  }
  if (inst_end > name) {
    size_t ilen = (size_t)(inst_end - name) - 1; /* drop the '/' */
    if (ilen >= sizeof(out->instance))
      return DB_EINVAL;
    memcpy(out->instance, name, ilen);
  }
  if (is_write) {
    n = next_seg(&p, &seg);
    if (n <= 0 || (size_t)n >= sizeof(out->uuid))
      return DB_EINVAL;
    memcpy(out->uuid, seg, (size_t)n);
    n = next_seg(&p, &seg);
    if (n < 0)
      return DB_EINVAL;
    kw = seg;
  } else {
    n = (int)strlen("blobs");
    if (kw[0] == 'c')
      n = (int)strlen("compressed-blobs");
  }
  if (seg_is(kw, n, "blobs")) {
    out->compressor = CAS_COMPRESSOR_IDENTITY;
  } else if (seg_is(kw, n, "compressed-blobs")) {
    n = next_seg(&p, &seg);
    if (n <= 0)
      return DB_EINVAL;
    if (!seg_is(seg, n, "zstd"))
      return seg_is(seg, n, "identity") ? DB_EINVAL : DB_EUNSUPP;
    out->compressor = CAS_COMPRESSOR_ZSTD;
  } else {
    return DB_EINVAL;
  }
  return parse_digest_tail(p, is_write, &out->digest);
}
