/*
 * Small helpers shared by the wrapper modules: a growable string vector,
 * path manipulation, whole-file reads, atomic writes and the per-user
 * cache directory.
 *
 * Errors: 0 or a negative DB_E* code. Strings returned by functions named
 * *_dup / *_join are malloc'd and owned by the caller.
 */
#ifndef WRAP_UTIL_H
#define WRAP_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A vector of owned, NUL-terminated strings (v[n] is always NULL, so it
 * can be passed to execv). Initialise with {0}. */
typedef struct wrap_strv {
  char **v;
  size_t n;
  size_t cap;
} wrap_strv;

/* Append a copy of s. Returns 0 or DB_ENOMEM. */
int wrap_strv_add(wrap_strv *sv, const char *s);
/* Append s, taking ownership (s freed on failure). */
int wrap_strv_take(wrap_strv *sv, char *s);
/* 1 if an element equals s. */
int wrap_strv_has(const wrap_strv *sv, const char *s);
/* Sort lexicographically by bytes and drop duplicates. */
void wrap_strv_sort_uniq(wrap_strv *sv);
void wrap_strv_free(wrap_strv *sv); /* frees elements; resets to {0} */

/* printf into a new malloc'd string; NULL on OOM. */
char *wrap_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Join a and b with exactly one '/' between them. NULL on OOM. */
char *wrap_path_join(const char *a, const char *b);

/* Lexically normalised absolute path: relative paths are taken against
 * cwd (may be NULL = getcwd()); "." and ".." and duplicate slashes are
 * resolved without touching the file system. NULL on OOM. */
char *wrap_path_abs(const char *path, const char *cwd);

/* 1 if path equals dir or lies below it (both absolute, normalised). */
int wrap_path_under(const char *path, const char *dir);

/* Deepest common ancestor directory of two absolute normalised paths
 * (in place into a, which must be a malloc'd buffer). */
void wrap_path_common(char *a, const char *b);

/* Relative path of path below root ("" when equal); NULL if not below.
 * Borrowed pointer into path. */
const char *wrap_path_rel(const char *path, const char *root);

/* Read a whole file (at most max bytes; 0 = no limit) into a malloc'd,
 * NUL-terminated buffer. DB_ENOTFOUND if absent, DB_EIO on errors. */
int wrap_read_file(const char *path, size_t max, char **out, size_t *len);

/* Write data to path atomically (temp file in the same dir + rename),
 * creating parent directories. */
int wrap_write_atomic(const char *path, const void *data, size_t len, int mode);

/* mkdir -p with mode 0755. */
int wrap_mkdirs(const char *path);

/* The wrapper's cache directory: $CARGO_DISTBUILD_CACHE_DIR, else
 * $XDG_CACHE_HOME/cargo-distbuild, else $HOME/.cache/cargo-distbuild.
 * Created if missing. Returns a malloc'd path or NULL. */
char *wrap_cache_dir(void);

/* Wall clock in milliseconds since the epoch. */
int64_t wrap_now_ms(void);

/* write(2) all of p[0, n) to fd, retrying EINTR and short writes.
 * 0, or DB_EIO. */
int wrap_write_all(int fd, const void *p, size_t n);

/* Wait for child pid (EINTR retried): its exit code, or 128 + the signal
 * that ended it. */
int wrap_wait_code(pid_t pid);

/* 1 if line p[0, n) is rustc's JSON notice that the crate's metadata
 * (.rmeta) is written: cargo starts dependents on it, once. */
int wrap_rustc_metadata_notice(const uint8_t *p, size_t n);

/* Length of the prefix of rustc's stderr p[0, n) that ends with the
 * metadata notice's line (newline included); 0 if there is none. */
size_t wrap_rustc_metadata_prefix(const uint8_t *p, size_t n);

/* Where the wrapper's progress lines go. cargo stores every stderr line of
 * a rustc call and replays it whenever the crate is fresh, so a "cache
 * miss" line written there would reappear on every later no-op build.
 * `cargo distbuild` therefore hands its own stderr down to the wrappers as
 * an inherited descriptor named in WRAP_PROGRESS_ENV ("FD:DEV:INODE"). */
#define WRAP_PROGRESS_ENV "CARGO_DISTBUILD_PROGRESS_FD"

/* Duplicate fd to a descriptor >= 3 that descendants inherit (not
 * close-on-exec) and name it in WRAP_PROGRESS_ENV. Returns the new
 * descriptor (the caller closes it when the build is over) or DB_ESYS. */
int wrap_progress_export(int fd);

/* The descriptor WRAP_PROGRESS_ENV names, if it is open and still the same
 * file (device and inode match), else STDERR_FILENO (the wrapper used
 * without `cargo distbuild`). *tty: 1 if it is a terminal. */
int wrap_progress_fd(int *tty);

/* Human-readable byte count ("1.2 MB") into buf. */
const char *wrap_fmt_bytes(uint64_t n, char *buf, size_t buflen);

#endif
