/*
 * The action cache: serialized ActionResults keyed by action digest,
 * replaced atomically (temp file, fdatasync, rename). In background sync
 * mode the rename waits for the syncer (cas_store_sync.c) and the entry
 * is served from memory meanwhile.
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
  if (s->sync_mode == CAS_SYNC_BACKGROUND &&
      (rv = cas_sync_ac_get(s, &k, data, len)) != DB_ENOTFOUND)
    goto out; /* queued, not yet renamed: served from memory */
  rv = 0;
  cas_ac_path(&k, path);
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
  if (s->sync_mode == CAS_SYNC_BACKGROUND) {
    /* The syncer renames it once it and the blobs before it are durable. */
    if ((rv = cas_sync_ac_put(s, &k, tmp, data, len)) == 0)
      tmp[0] = '\0';
    goto out;
  }
  if (fdatasync(fd) != 0) {
    rv = cas_err_errno();
    goto out;
  }
  cas_ac_path(&k, path);
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
  int rv = cas_key_from_digest(action, &k), queued = 0;

  if (rv != 0)
    return rv;
  if (s->sync_mode == CAS_SYNC_BACKGROUND)
    queued = cas_sync_ac_remove(s, &k);
  cas_ac_path(&k, path);
  if (unlinkat(s->rootfd, path, 0) != 0 && (errno != ENOENT || !queued))
    rv = cas_err_errno();
  return rv;
}
