/*
 * The request as bytes, for the spawner (sbx_spawn.c): the caller encodes
 * an sbx_request, the spawner decodes it and runs it.
 *
 * Both ends are the same executable (the spawner is a fork of the caller),
 * so integers travel in host byte order; the decoder still checks every
 * length and value, because a short or garbled message must become an
 * error, never an out-of-bounds read or a half-built request.  The fds
 * (stdio, cancel) are not part of the bytes: they travel beside them as
 * SCM_RIGHTS.
 *
 * Layout: magic, mode, force_legacy, the limits field by field, argv,
 * envp, cwd, mounts (kind, has_src, src, dst), devs (src, name).  A string
 * is a u32 length and its bytes without the NUL; a vector is a u32 count
 * and its strings.
 */
#include "sbx_int.h"

#include "db_err.h"

#include <stdlib.h>
#include <string.h>

#define WIRE_MAGIC 0x31574253u /* "SBW1" */

struct wbuf {
  unsigned char *p;
  size_t len, cap;
  int err;
};

static void put(struct wbuf *b, const void *src, size_t n) {
  if (b->err)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    unsigned char *p;
    while (cap < b->len + n)
      cap *= 2;
    p = realloc(b->p, cap);
    if (!p) {
      b->err = DB_ENOMEM;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
}

static void put_u32(struct wbuf *b, uint32_t v) {
  put(b, &v, sizeof(v));
}

static void put_u64(struct wbuf *b, uint64_t v) {
  put(b, &v, sizeof(v));
}

static void put_str(struct wbuf *b, const char *s) {
  size_t n = strlen(s);
  if (n > UINT32_MAX) {
    b->err = DB_ETOOBIG;
    return;
  }
  put_u32(b, (uint32_t)n);
  put(b, s, n);
}

static void put_strv(struct wbuf *b, char *const *v) {
  uint32_t n = 0;
  while (v && v[n])
    n++;
  put_u32(b, n);
  for (uint32_t i = 0; i < n; i++)
    put_str(b, v[i]);
}

int sbx_wire_encode(const sbx_request *r, unsigned char **out, size_t *len) {
  struct wbuf b = {NULL, 0, 0, 0};
  const sbx_limits *l = &r->limits;
  put_u32(&b, WIRE_MAGIC);
  put_u32(&b, (uint32_t)r->mode);
  put_u32(&b, (uint32_t)r->force_legacy);
  put_u64(&b, l->memory_bytes);
  put_u32(&b, l->pids);
  put_u32(&b, l->cpu_millis);
  put_u32(&b, l->cpu_seconds);
  put_u64(&b, l->timeout_ms);
  put_u64(&b, l->max_file_bytes);
  put_u32(&b, l->nice);
  put_strv(&b, r->argv);
  put_strv(&b, r->envp);
  put_str(&b, r->cwd);
  put_u32(&b, (uint32_t)r->n_mounts);
  for (size_t i = 0; i < r->n_mounts; i++) {
    put_u32(&b, (uint32_t)r->mounts[i].kind);
    put_u32(&b, r->mounts[i].src != NULL);
    if (r->mounts[i].src)
      put_str(&b, r->mounts[i].src);
    put_str(&b, r->mounts[i].dst);
  }
  put_u32(&b, (uint32_t)r->n_devs);
  for (size_t i = 0; i < r->n_devs; i++) {
    put_str(&b, r->dev_src[i]);
    put_str(&b, r->dev_name[i]);
  }
  if (b.err) {
    free(b.p);
    *out = NULL;
    *len = 0;
    return b.err;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}

/* ---- decoding -------------------------------------------------------------
 */

struct rbuf {
  const unsigned char *p;
  size_t len, off;
};

static int get(struct rbuf *b, void *dst, size_t n) {
  if (b->len - b->off < n)
    return DB_EINVAL;
  memcpy(dst, b->p + b->off, n);
  b->off += n;
  return 0;
}

static int get_u32(struct rbuf *b, uint32_t *v) {
  return get(b, v, sizeof(*v));
}

static int get_u64(struct rbuf *b, uint64_t *v) {
  return get(b, v, sizeof(*v));
}

/* A fresh NUL-terminated copy; embedded NULs are malformed. */
static int get_str(struct rbuf *b, char **out) {
  uint32_t n;
  char *s;
  *out = NULL;
  if (get_u32(b, &n) != 0 || b->len - b->off < n ||
      memchr(b->p + b->off, '\0', n))
    return DB_EINVAL;
  s = malloc((size_t)n + 1);
  if (!s)
    return DB_ENOMEM;
  memcpy(s, b->p + b->off, n);
  s[n] = '\0';
  b->off += n;
  *out = s;
  return 0;
}

/* A count of items of at least |min| bytes each: bounded by what is left,
 * so a garbled count cannot ask for a huge allocation. */
static int get_count(struct rbuf *b, size_t min, uint32_t *n) {
  if (get_u32(b, n) != 0 || *n > (b->len - b->off) / min)
    return DB_EINVAL;
  return 0;
}

static int get_strv(struct rbuf *b, char ***out) {
  uint32_t n = 0;
  char **v;
  int rc;
  if ((rc = get_count(b, sizeof(uint32_t), &n)) != 0)
    return rc;
  v = calloc((size_t)n + 1, sizeof(*v));
  if (!v)
    return DB_ENOMEM;
  for (uint32_t i = 0; i < n; i++) {
    rc = get_str(b, &v[i]);
    if (rc != 0)
      break;
  }
  if (rc != 0) {
    for (uint32_t i = 0; i < n; i++)
      free(v[i]);
    free(v);
    return rc;
  }
  free(*out);
  *out = v;
  return 0;
}

static int get_limits(struct rbuf *b, sbx_limits *l) {
  if (get_u64(b, &l->memory_bytes) != 0 || get_u32(b, &l->pids) != 0 ||
      get_u32(b, &l->cpu_millis) != 0 || get_u32(b, &l->cpu_seconds) != 0 ||
      get_u64(b, &l->timeout_ms) != 0 || get_u64(b, &l->max_file_bytes) != 0 ||
      get_u32(b, &l->nice) != 0)
    return DB_EINVAL;
  return 0;
}

static int get_mounts(struct rbuf *b, sbx_request *r) {
  uint32_t n = 0;
  int rc = get_count(b, 3 * sizeof(uint32_t), &n);
  for (uint32_t i = 0; rc == 0 && i < n; i++) {
    uint32_t kind, has_src;
    char *src = NULL, *dst = NULL;
    rc = get_u32(b, &kind) || get_u32(b, &has_src) ? DB_EINVAL : 0;
    if (rc == 0 && has_src > 1)
      rc = DB_EINVAL;
    if (rc == 0 && has_src)
      rc = get_str(b, &src);
    if (rc == 0)
      rc = get_str(b, &dst);
    /* The same rules as the setters; symlink targets may be relative. */
    if (rc == 0 && (!dst[0] || dst[0] != '/'))
      rc = DB_EINVAL;
    if (rc == 0) {
      if (kind == SBX_MOUNT_TMPFS)
        rc = src ? DB_EINVAL : 0;
      else if (kind == SBX_MOUNT_RO_BIND || kind == SBX_MOUNT_RW_BIND)
        rc = src && src[0] == '/' ? 0 : DB_EINVAL;
      else if (kind == SBX_REQ_SYMLINK)
        rc = src && src[0] ? 0 : DB_EINVAL;
      else
        rc = DB_EINVAL;
    }
    if (rc == 0)
      rc = sbx_request_push_mount(r, (int)kind, src, dst);
    free(src);
    free(dst);
  }
  return rc;
}

static int get_devs(struct rbuf *b, sbx_request *r) {
  uint32_t n = 0;
  int rc = get_count(b, 2 * sizeof(uint32_t), &n);
  if (rc == 0 && n > SBX_MAX_DEVS)
    rc = DB_EINVAL;
  for (uint32_t i = 0; rc == 0 && i < n; i++) {
    char *src = NULL, *name = NULL;
    rc = get_str(b, &src);
    if (rc == 0)
      rc = get_str(b, &name);
    if (rc == 0)
      rc = sbx_request_add_dev(r, src, name);
    if (rc == DB_ETOOBIG)
      rc = DB_EINVAL;
    free(src);
    free(name);
  }
  return rc;
}

int sbx_wire_decode(const void *buf, size_t len, sbx_request **out) {
  struct rbuf b = {buf, len, 0};
  sbx_request *r = NULL;
  uint32_t magic = 0, mode = 0, legacy = 0;
  char *cwd = NULL;
  int rc;

  *out = NULL;
  rc = sbx_request_new(&r);
  if (rc != 0)
    return rc;
  if (get_u32(&b, &magic) != 0 || magic != WIRE_MAGIC ||
      get_u32(&b, &mode) != 0 || mode > SBX_MODE_NONE ||
      get_u32(&b, &legacy) != 0 || legacy > 1 ||
      get_limits(&b, &r->limits) != 0) {
    rc = DB_EINVAL;
    goto out;
  }
  r->mode = (sbx_mode)mode;
  r->force_legacy = (int)legacy;
  if ((rc = get_strv(&b, &r->argv)) != 0 ||
      (rc = get_strv(&b, &r->envp)) != 0 || (rc = get_str(&b, &cwd)) != 0)
    goto out;
  if (!r->argv[0] || !r->argv[0][0] || cwd[0] != '/') {
    rc = DB_EINVAL;
    goto out;
  }
  free(r->cwd);
  r->cwd = cwd;
  cwd = NULL;
  if ((rc = get_mounts(&b, r)) != 0 || (rc = get_devs(&b, r)) != 0)
    goto out;
  if (b.off != b.len)
    rc = DB_EINVAL; /* trailing bytes: not what the encoder wrote */
out:
  free(cwd);
  if (rc != 0) {
    sbx_request_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

/* For the unit tests: the decoder rebuilds what the encoder saw. */
int sbx_wire_equal(const sbx_request *a, const sbx_request *b) {
  size_t i;
  const sbx_limits *la = &a->limits, *lb = &b->limits;
  if (a->mode != b->mode || a->force_legacy != b->force_legacy ||
      la->memory_bytes != lb->memory_bytes || la->pids != lb->pids ||
      la->cpu_millis != lb->cpu_millis || la->cpu_seconds != lb->cpu_seconds ||
      la->timeout_ms != lb->timeout_ms ||
      la->max_file_bytes != lb->max_file_bytes || la->nice != lb->nice ||
      strcmp(a->cwd, b->cwd) != 0 || a->n_mounts != b->n_mounts ||
      a->n_devs != b->n_devs)
    return 0;
  for (i = 0; a->argv[i] || b->argv[i]; i++)
    if (!a->argv[i] || !b->argv[i] || strcmp(a->argv[i], b->argv[i]))
      return 0;
  for (i = 0; a->envp[i] || b->envp[i]; i++)
    if (!a->envp[i] || !b->envp[i] || strcmp(a->envp[i], b->envp[i]))
      return 0;
  for (i = 0; i < a->n_mounts; i++) {
    const struct sbx_req_mount *x = &a->mounts[i], *y = &b->mounts[i];
    if (x->kind != y->kind || !x->src != !y->src ||
        (x->src && strcmp(x->src, y->src)) || strcmp(x->dst, y->dst))
      return 0;
  }
  for (i = 0; i < a->n_devs; i++)
    if (strcmp(a->dev_src[i], b->dev_src[i]) ||
        strcmp(a->dev_name[i], b->dev_name[i]))
      return 0;
  return 1;
}
