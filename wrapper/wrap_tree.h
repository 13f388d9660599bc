/*
 * REAPI input-root builder: collects files (by path relative to the exec
 * root) and produces the canonical Merkle tree of Directory messages.
 *
 * Canonical form (REAPI v2): every Directory lists files, directories and
 * symlinks each sorted by name (byte order), names are single path
 * segments and unique, and messages are serialised by protobuf-c in field
 * number order; a Directory's digest is the SHA-256 of those bytes.
 *
 * Symlinks on the client are followed (a symlinked file becomes a regular
 * file node with the target's content, a symlinked directory a directory),
 * so the worker never needs anything outside the input root. The
 * executable bit comes from the owner-x bit of the file.
 *
 * Ownership: a wrap_tree owns everything it builds; blob lists returned by
 * wrap_tree_blobs() borrow from the tree and stay valid until
 * wrap_tree_free(). Threading: single-threaded. Errors: 0 or DB_E*.
 */
#ifndef WRAP_TREE_H
#define WRAP_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "cas_client.h"
#include "reapi_digest.h"
#include "wrap_dcache.h"

typedef struct wrap_tree wrap_tree;

/* dc (borrowed, may be NULL = hash every file) provides file digests. */
int wrap_tree_new(wrap_dcache *dc, wrap_tree **out);
void wrap_tree_free(wrap_tree *t); /* NULL ok */

/* Add the file at abs_path as rel_path ("a/b/c"). Adding the same path
 * twice is fine when the content is equal; DB_EEXIST otherwise, or when a
 * directory already has that name. */
int wrap_tree_add_file(wrap_tree *t, const char *rel_path,
                       const char *abs_path);

/* Add a file from memory (copied). */
int wrap_tree_add_blob(wrap_tree *t, const char *rel_path, const void *data,
                       size_t len, int executable);

/* Make sure the directory rel_path exists ("" = the root). */
int wrap_tree_add_dir(wrap_tree *t, const char *rel_path);

/* Skip predicate for wrap_tree_add_tree: return 1 to leave out the
 * directory entry name (a file or directory) found in abs_dir. */
typedef int (*wrap_tree_skip_fn)(void *ctx, const char *abs_dir,
                                 const char *name, int is_dir);

/* Recursively add the directory abs_dir as rel_path. skip may be NULL. */
int wrap_tree_add_tree(wrap_tree *t, const char *rel_path, const char *abs_dir,
                       wrap_tree_skip_fn skip, void *ctx);

/* Compute every Directory message and the root digest. After this no
 * more additions are allowed. */
int wrap_tree_finish(wrap_tree *t, reapi_digest *root);

/* All blobs of the finished tree (Directory messages in memory, files by
 * path, deduplicated by digest). *blobs is owned by the tree. Also
 * returns the total size in bytes (may be NULL). */
int wrap_tree_blobs(wrap_tree *t, const cas_blob_src **blobs, size_t *n,
                    uint64_t *total_bytes);

/* Number of files in the tree. */
size_t wrap_tree_file_count(const wrap_tree *t);

#endif
