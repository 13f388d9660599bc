/*
 * The action cache: serialized ActionResults keyed by action digest,
 * replaced atomically (temp file, fdatasync, rename).
 */
#include "cas_store_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void ac_path(const cas_key *k, char *buf) {
  char hex[65];
  cas_key_hex(k, hex);
  snprintf(buf, CAS_PATH_MAX, "ac/%.2s/%s-%lld", hex, hex, (long long)k->size);
}

/* ---- action cache ---- */

int cas_ac_get(cas_store *s, const reapi_digest *action, uint8_t **data,
               size_t *len) {
  int rv = 0, fd = -1;
  cas_key k;
  struct stat st;
  uint8_t *buf = NULL;
  size_t got = 0;
  char path[CAS_PATH_MAX];

  *data = NULL;
  *len = 0;
  if ((rv = cas_key_from_digest(action, &k)) != 0)
    goto out;
  ac_path(&k, path);
  fd = openat(s->rootfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    rv = cas_err_errno();
    goto out;
  }
  buf = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
  if (!buf) {
    rv = DB_ENOMEM;
    goto out;
  }
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      rv = r < 0 ? cas_err_errno() : DB_EIO;
      goto out;
    }
    got += (size_t)r;
  }
  *data = buf;
  *len = got;
  buf = NULL;
out:
  if (fd >= 0)
    close(fd);
  free(buf);
  return rv;
}

int cas_ac_put(cas_store *s, const reapi_digest *action, const void *data,
               size_t len) {
  int rv, fd = -1;
  cas_key k;
  char tmp[CAS_PATH_MAX], path[CAS_PATH_MAX];

  tmp[0] = '\0';
  if ((rv = cas_key_from_digest(action, &k)) != 0)
    goto out;
  if ((rv = cas_tmp_create(s, tmp, &fd)) != 0)
    goto out;
  if ((rv = cas_write_all(fd, data, len)) != 0)
    goto out;
  if (fdatasync(fd) != 0) {
    rv = cas_err_errno();
    goto out;
  }
  ac_path(&k, path);
  /* rename() replaces atomically: readers see the old or the new entry. */
  if (renameat(s->rootfd, tmp, s->rootfd, path) != 0) {
    rv = cas_err_errno();
    goto out;
  }
  tmp[0] = '\0';
out:
  if (fd >= 0)
    close(fd);
  if (tmp[0])
    unlinkat(s->rootfd, tmp, 0);
  return rv;
}

int cas_ac_remove(cas_store *s, const reapi_digest *action) {
  cas_key k;
  char path[CAS_PATH_MAX];
  int rv = cas_key_from_digest(action, &k);

  if (rv != 0)
    return rv;
  ac_path(&k, path);
  return unlinkat(s->rootfd, path, 0) == 0 ? 0 : cas_err_errno();
}
