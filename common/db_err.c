#include "db_err.h"

#include <errno.h>

const char *db_strerror(int code) {
  switch (code) {
  case DB_OK:
    return "success";
  case DB_ENOMEM:
    return "out of memory";
  case DB_EIO:
    return "I/O error";
  case DB_EINVAL:
    return "invalid argument";
  case DB_ENOTFOUND:
    return "not found";
  case DB_ENOSPC:
    return "no space left";
  case DB_EDIGEST:
    return "digest mismatch";
  case DB_EPROTO:
    return "protocol error";
  case DB_ETIMEDOUT:
    return "deadline exceeded";
  case DB_EUNAVAIL:
    return "unavailable";
  case DB_EEXIST:
    return "already exists";
  case DB_ETOOBIG:
    return "too large";
  case DB_ECANCELLED:
    return "cancelled";
  case DB_ESYS:
    return "system call failed";
  case DB_EUNSUPP:
    return "not supported on this host";
  case DB_ECOMPRESS:
    return "compression error";
  default:
    return "unknown error";
  }
}

int db_err_from_errno(int err) {
  switch (err) {
  case 0:
    return DB_OK;
  case ENOMEM:
    return DB_ENOMEM;
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return DB_ENOSPC;
  case ENOENT:
    return DB_ENOTFOUND;
  case EEXIST:
    return DB_EEXIST;
  case EINVAL:
    return DB_EINVAL;
  case ETIMEDOUT:
    return DB_ETIMEDOUT;
  case EIO:
    return DB_EIO;
  default:
    return DB_ESYS;
  }
}
