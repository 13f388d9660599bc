/*
 * Short SHA-256 names for the remote client's records (crate records, the
 * scheduler breaker). Kept out of libwraplite on purpose: the front that
 * cargo runs for every rustc call must not load libcrypto (about 1 ms per
 * process on these machines), so nothing it links may hash.
 */
#ifndef WRAP_HASH_H
#define WRAP_HASH_H

#include <stddef.h>

/* Hex SHA-256 of s, truncated to n hex chars (n <= 64), into out (n + 1
 * bytes). */
void wrap_hash_str(const char *s, char *out, size_t n);

/* Key of a crate's record (wrap_state.h) from its crate name and manifest
 * directory (NULL = none), into key (33 bytes). */
void wrap_hash_crate_key(const char *crate, const char *manifest_dir,
                         char key[33]);

#endif
