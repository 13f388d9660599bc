/*
 * The REAPI storage services on an rpc_server: ContentAddressableStorage
 * (FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, GetTree),
 * google.bytestream.ByteStream (Read, Write, QueryWriteStatus), ActionCache
 * (GetActionResult, UpdateActionResult) and Capabilities.
 *
 * All handlers run on the server's loop thread.
 */
#ifndef CAS_SERVICE_H
#define CAS_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "cas_store.h"
#include "rpc_server.h"

typedef struct cas_service cas_service;

typedef struct cas_service_opts {
  size_t max_batch_bytes; /* advertised max_batch_total_size_bytes;
                             0 = 4 MiB */
  int exec_enabled;       /* advertise ExecutionCapabilities (scheduler) */
  int zstd_level;         /* for compressing reads on the wire; 0 = 1 */
} cas_service_opts;

/* store is borrowed and must outlive the service. opts may be NULL.
 * *out owned by caller: cas_service_free(). */
int cas_service_new(cas_store *store, const cas_service_opts *opts,
                    cas_service **out);

/* Register every method on srv. Call once, before the server runs. */
int cas_service_register(cas_service *svc, rpc_server *srv);

/* Free the service (after the server is freed: open calls hold it). */
void cas_service_free(cas_service *svc);

/* Check that every blob an ActionResult references is present in the
 * store (output files, output directory trees and their files, stdout and
 * stderr). Returns 1 if complete, 0 if not, negative DB_E* for a
 * malformed result. Shared with the scheduler's cache lookup. */
int cas_service_result_complete(cas_store *store, const uint8_t *ar,
                                size_t len);

#endif
