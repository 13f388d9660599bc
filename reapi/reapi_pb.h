/*
 * Short aliases for the protoc-c generated REAPI types, and small helpers
 * to move between protobuf Digest messages and reapi_digest values.
 */
#ifndef REAPI_PB_H
#define REAPI_PB_H

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "build/bazel/semver/semver.pb-c.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "google/longrunning/operations.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include "reapi_digest.h"

typedef Build__Bazel__Remote__Execution__V2__Digest PbDigest;
typedef Build__Bazel__Remote__Execution__V2__Directory PbDirectory;
typedef Build__Bazel__Remote__Execution__V2__FileNode PbFileNode;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode PbDirectoryNode;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode PbSymlinkNode;
typedef Build__Bazel__Remote__Execution__V2__ActionResult PbActionResult;
typedef Build__Bazel__Remote__Execution__V2__OutputFile PbOutputFile;
typedef Build__Bazel__Remote__Execution__V2__OutputDirectory PbOutputDirectory;
typedef Build__Bazel__Remote__Execution__V2__Tree PbTree;

#define PB_COMPRESSOR_IDENTITY                                                 \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__IDENTITY
#define PB_COMPRESSOR_ZSTD                                                     \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__COMPRESSOR__VALUE__ZSTD
#define PB_DIGEST_SHA256                                                       \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__SHA256
#define PB_DIGEST_UNKNOWN                                                      \
  BUILD__BAZEL__REMOTE__EXECUTION__V2__DIGEST_FUNCTION__VALUE__UNKNOWN

/* Platform property naming the absolute path at which a worker mounts the
 * input root (the client's exec root), so absolute paths in the command
 * work and outputs match a local build. Not a matching constraint. */
#define REAPI_PROP_EXEC_ROOT "exec-root-path"

/* Validate a protobuf Digest (NULL is invalid) into out.
 * Returns 0 or DB_EINVAL. */
int reapi_pb_digest_get(const PbDigest *pb, reapi_digest *out);

/* Point a PbDigest at d's storage (no copy: pb borrows d->hash). */
void reapi_pb_digest_set(PbDigest *pb, reapi_digest *d);

/* Accept only SHA-256 (or unset) digest functions. */
int reapi_pb_digest_function_ok(int fn);

/* Pack any message into a malloc'd buffer. Returns 0 or DB_ENOMEM; *out
 * is NULL for an empty message. */
int reapi_pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);

#endif
