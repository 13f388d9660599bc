#include "reapi_pb.h"

#include "db_err.h"

#include <stdlib.h>

int reapi_pb_digest_get(const PbDigest *pb, reapi_digest *out) {
  if (!pb)
    return DB_EINVAL;
  return reapi_digest_set(out, pb->hash, pb->size_bytes);
}

void reapi_pb_digest_set(PbDigest *pb, reapi_digest *d) {
  build__bazel__remote__execution__v2__digest__init(pb);
  pb->hash = d->hash;
  pb->size_bytes = d->size;
}

int reapi_pb_digest_function_ok(int fn) {
  return fn == PB_DIGEST_UNKNOWN || fn == PB_DIGEST_SHA256;
}

int reapi_pb_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = NULL;

  if (n > 0) {
    buf = malloc(n);
    if (!buf)
      return DB_ENOMEM;
    protobuf_c_message_pack(m, buf);
  }
  *out = buf;
  *len = n;
  return 0;
}
