/*
 * Persistent file-digest cache, keyed by (dev, inode, size, mtime, ctime).
 *
 * The toolchain alone is ~500 MB; cargo starts one wrapper process per
 * rustc call, many at once. Every process loads the cache file, looks
 * files up by (dev, inode) and trusts the stored hash only if size, mtime
 * and ctime (nanoseconds) all match; otherwise it hashes the file and
 * appends a record.
 *
 * On-disk format (digests.v1): fixed-width text records of 150 bytes,
 *   "DDDDDDDDDDDDDDDD IIIIIIIIIIIIIIII SSSSSSSSSSSSSSSS MMMMMMMMMMMMMMMM
 *    CCCCCCCCCCCCCCCC <64 hex>\n"
 * (five 16-digit hex fields and the SHA-256, one space apart, no line
 * break inside). Writers append a record with a single write(2) on an
 * O_APPEND descriptor, so concurrent wrappers never interleave; readers
 * skip any record that is not exactly well-formed (e.g. a torn tail after
 * a crash). Later records override earlier ones. When the file grows past
 * a limit, one process (holding an flock on digests.lock) rewrites it with
 * only the live entries and renames it into place; appends that race with
 * the rename are lost, which only costs a re-hash later.
 *
 * Racy-timestamp guard (as in git's index): a file whose mtime or ctime
 * is less than two seconds old is hashed but not recorded, because a
 * second write within the same timestamp tick could go unnoticed
 * (CARGO_DISTBUILD_DCACHE_RACY_MS changes the window; tests use 0).
 *
 * Threading: a wrap_dcache is single-threaded. Errors: 0 or DB_E*.
 */
#ifndef WRAP_DCACHE_H
#define WRAP_DCACHE_H

#include <stdint.h>
#include <sys/stat.h>

#include "reapi_digest.h"

typedef struct wrap_dcache wrap_dcache;

/* Open (or create) the cache in dir (copied). path NULL gives a purely
 * in-memory cache. *out owned by the caller: wrap_dcache_free(). */
int wrap_dcache_open(const char *dir, wrap_dcache **out);
void wrap_dcache_free(wrap_dcache *dc); /* NULL ok */

/* Digest of the regular file at path; st may be NULL (then stat(2) is
 * called; symlinks are followed). Uses and updates the cache. */
int wrap_dcache_digest(wrap_dcache *dc, const char *path, const struct stat *st,
                       reapi_digest *out);

/* Re-read records appended by other processes since the last load. */
int wrap_dcache_refresh(wrap_dcache *dc);

/* Counters for tests and debugging: lookups answered from the cache and
 * files actually hashed by this handle. */
void wrap_dcache_counts(const wrap_dcache *dc, uint64_t *hits,
                        uint64_t *hashed);

/* Hash a file without any cache. */
int wrap_digest_file(const char *path, reapi_digest *out);

#endif
