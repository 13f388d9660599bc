/* Internal to the cas service files: the service struct and shared
 * helpers. Not part of the public API. */
#ifndef CAS_SERVICE_INT_H
#define CAS_SERVICE_INT_H

#include "cas_service.h"
#include "reapi_pb.h"

struct cas_upload;

struct cas_service {
  cas_store *store;
  size_t max_batch;
  int exec_enabled;
  int zstd_level;
  /* Partial ByteStream uploads kept for resumption, by resource name. */
  struct cas_upload *uploads;
};

/* Pack m, send it as the single response, finish OK. */
void cas_svc_reply(rpc_call *call, const ProtobufCMessage *m);

/* Finish call with the status that matches a DB_E* error. */
void cas_svc_fail(rpc_call *call, int err, const char *what);

/* ActionCache and Capabilities handlers (cas_ac_service.c). */
void cas_svc_gar_on_message(rpc_call *call, const uint8_t *msg, size_t len);
void cas_svc_uar_on_message(rpc_call *call, const uint8_t *msg, size_t len);
void cas_svc_caps_on_message(rpc_call *call, const uint8_t *msg, size_t len);

/* Register the ByteStream methods (cas_bytestream.c). */
int cas_bytestream_register(cas_service *svc, rpc_server *srv);
/* Drop all kept partial uploads (service teardown). */
void cas_bytestream_cleanup(cas_service *svc);

#endif
