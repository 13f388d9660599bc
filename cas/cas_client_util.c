/*
 * Small helpers of the CAS client: request packing on top of the protoc-c
 * generated code, a digest hash set, and file helpers (temp file +
 * rename).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cas_client_int.h"
#include "db_err.h"

/* ---- protobuf (protobuf-c generated code does the encoding) ---- */

int cas_client__pack(const ProtobufCMessage *m, uint8_t **out, size_t *len) {
  size_t n = protobuf_c_message_get_packed_size(m);

  *out = malloc(n ? n : 1);
  if (!*out)
    return DB_ENOMEM;
  *len = protobuf_c_message_pack(m, *out);
  return 0;
}

void cas_client__pb_digest_ref(PbDigest *pb, const reapi_digest *d) {
  build__bazel__remote__execution__v2__digest__init(pb);
  pb->hash = (char *)d->hash;
  pb->size_bytes = d->size;
}

/* ---- digest set ---- */

static uint64_t digest_key(const reapi_digest *d) {
  uint64_t k = 0;
  for (int i = 0; i < 16; i++) {
    char ch = d->hash[i];
    k = (k << 4) | (uint64_t)(ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
  }
  return k ^ (uint64_t)d->size * 0x9e3779b97f4a7c15ull;
}

int cas_client__dset_init(cas_dset *s, size_t n,
                          const reapi_digest *(*get)(void *arr, size_t i),
                          void *arr) {
  size_t cap = 16;
  while (cap < n * 2)
    cap <<= 1;
  s->cap = cap;
  s->get = get;
  s->arr = arr;
  s->slot = calloc(cap, sizeof(*s->slot));
  return s->slot ? 0 : DB_ENOMEM;
}

size_t cas_client__dset_add(cas_dset *s, size_t i) {
  const reapi_digest *d = s->get(s->arr, i);
  size_t h = (size_t)digest_key(d) & (s->cap - 1);

  for (;;) {
    size_t v = s->slot[h];
    if (v == 0) {
      s->slot[h] = i + 1;
      return i;
    }
    if (reapi_digest_eq(s->get(s->arr, v - 1), d))
      return v - 1;
    h = (h + 1) & (s->cap - 1);
  }
}

size_t cas_client__dset_find(const cas_dset *s, const reapi_digest *d) {
  size_t h = (size_t)digest_key(d) & (s->cap - 1);

  for (;;) {
    size_t v = s->slot[h];
    if (v == 0)
      return SIZE_MAX;
    if (reapi_digest_eq(s->get(s->arr, v - 1), d))
      return v - 1;
    h = (h + 1) & (s->cap - 1);
  }
}

void cas_client__dset_free(cas_dset *s) {
  free(s->slot);
  s->slot = NULL;
}

/* ---- files ---- */

int cas_client__read_file(const char *path, size_t want, uint8_t **out) {
  uint8_t *buf = NULL;
  size_t got = 0;
  int fd = -1;
  int rv;
  ssize_t r;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  rv = DB_ENOMEM;
  buf = malloc(want + 1);
  if (!buf)
    goto out;
  for (;;) {
    r = read(fd, buf + got, want + 1 - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rv = DB_EIO;
      goto out;
    }
    if (r == 0)
      break;
    got += (size_t)r;
    if (got > want)
      break;
  }
  rv = DB_EDIGEST; /* the file changed since it was hashed */
  if (got != want)
    goto out;
  *out = buf;
  buf = NULL;
  rv = 0;
out:
  if (fd >= 0)
    close(fd);
  free(buf);
  return rv;
}

int cas_client__tmp_open(const char *path, int mode, char **tmp, int *fd) {
  size_t n = strlen(path);
  char *t = malloc(n + 16);

  *tmp = NULL;
  *fd = -1;
  if (!t)
    return DB_ENOMEM;
  memcpy(t, path, n);
  memcpy(t + n, ".tmp.XXXXXX", 12);
  *fd = mkostemp(t, O_CLOEXEC);
  if (*fd < 0) {
    int rv = db_err_from_errno(errno);
    free(t);
    return rv;
  }
  if (fchmod(*fd, (mode_t)(mode & 07777)) != 0) {
    int rv = db_err_from_errno(errno);
    close(*fd);
    *fd = -1;
    unlink(t);
    free(t);
    return rv;
  }
  *tmp = t;
  return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return db_err_from_errno(errno);
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

int cas_client__write_file(const char *path, int mode, const void *data,
                           size_t len) {
  char *tmp = NULL;
  int fd = -1;
  int rv;

  rv = cas_client__tmp_open(path, mode, &tmp, &fd);
  if (rv != 0)
    goto out;
  rv = write_all(fd, data, len);
  if (rv != 0)
    goto out;
  rv = close(fd) == 0 ? 0 : DB_EIO;
  fd = -1;
  if (rv != 0)
    goto out;
  if (rename(tmp, path) != 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  free(tmp);
  tmp = NULL;
out:
  if (fd >= 0)
    close(fd);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  return rv;
}

int cas_client__copy_file(const char *src, const char *dst, int mode) {
  char *tmp = NULL;
  uint8_t *buf = NULL;
  int in = -1, fd = -1;
  int rv;
  ssize_t r;

  in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  rv = cas_client__tmp_open(dst, mode, &tmp, &fd);
  if (rv != 0)
    goto out;
  rv = DB_ENOMEM;
  buf = malloc(1 << 16);
  if (!buf)
    goto out;
  for (;;) {
    r = read(in, buf, 1 << 16);
    if (r < 0 && errno == EINTR)
      continue;
    rv = DB_EIO;
    if (r < 0)
      goto out;
    if (r == 0)
      break;
    rv = write_all(fd, buf, (size_t)r);
    if (rv != 0)
      goto out;
  }
  rv = close(fd) == 0 ? 0 : DB_EIO;
  fd = -1;
  if (rv != 0)
    goto out;
  if (rename(tmp, dst) != 0) {
    rv = db_err_from_errno(errno);
    goto out;
  }
  free(tmp);
  tmp = NULL;
  rv = 0;
out:
  if (in >= 0)
    close(in);
  if (fd >= 0)
    close(fd);
  if (tmp) {
    unlink(tmp);
    free(tmp);
  }
  free(buf);
  return rv;
}

int cas_client__fits_batch(const cas_client *c, uint64_t sz) {
  return sz < c->stream_threshold &&
         sz + CAS_CLIENT_ENTRY_OVERHEAD <=
             c->batch_limit - CAS_CLIENT_BATCH_SLACK;
}

void cas_client__batcher_init(const cas_client *c, uint64_t small_bytes,
                              cas_batcher *b) {
  size_t limit = c->batch_limit - CAS_CLIENT_BATCH_SLACK;
  size_t target = (size_t)(small_bytes / (uint64_t)c->max_inflight);

  if (target < (256u << 10))
    target = 256u << 10;
  if (target > limit)
    target = limit;
  b->target = target;
  b->acc = 0;
  b->started = 0;
}

int cas_client__batcher_next(cas_batcher *b, uint64_t sz) {
  size_t n = (size_t)sz + CAS_CLIENT_ENTRY_OVERHEAD;
  int fresh = !b->started || b->acc + n > b->target;

  if (fresh) {
    b->started = 1;
    b->acc = 0;
  }
  b->acc += n;
  return fresh;
}
