/*
 * Error codes shared by every cargo-distbuild module.
 *
 * Functions return int: 0 on success, one of the negative DB_E* codes on
 * failure. db_strerror() turns a code into a static, human-readable string.
 */
#ifndef DB_ERR_H
#define DB_ERR_H

enum {
  DB_OK = 0,
  DB_ENOMEM = -1,      /* allocation failed */
  DB_EIO = -2,         /* read/write/fsync failed */
  DB_EINVAL = -3,      /* caller passed bad arguments or malformed data */
  DB_ENOTFOUND = -4,   /* blob, entry or resource does not exist */
  DB_ENOSPC = -5,      /* disk full or size budget cannot fit the item */
  DB_EDIGEST = -6,     /* content does not match its digest */
  DB_EPROTO = -7,      /* peer violated the protocol (bad framing, protobuf) */
  DB_ETIMEDOUT = -8,   /* deadline passed */
  DB_EUNAVAIL = -9,    /* peer unreachable or went away */
  DB_EEXIST = -10,     /* item already exists */
  DB_ETOOBIG = -11,    /* message or item exceeds a configured limit */
  DB_ECANCELLED = -12, /* operation cancelled */
  DB_ESYS = -13,       /* a system call failed; errno has details */
  DB_EUNSUPP = -14,    /* feature not available on this host */
  DB_ECOMPRESS = -15,  /* zstd compression/decompression failed */
};

/* Static string for a DB_E* code (never NULL). */
const char *db_strerror(int code);

/* Map an errno value to the closest DB_E* code. */
int db_err_from_errno(int err);

#endif
