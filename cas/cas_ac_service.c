/*
 * ActionCache (GetActionResult, UpdateActionResult) and Capabilities.
 * A cached result whose outputs are no longer all in the CAS is dropped
 * and reported as a miss, never served half-broken.
 */
#include "cas_service_int.h"

#include "db_err.h"
#include "db_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Budget for stdout/stderr/file contents inlined into an ActionResult. */
#define INLINE_BUDGET ((size_t)1 << 20)

typedef Build__Bazel__Remote__Execution__V2__GetActionResultRequest GarReq;
typedef Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest UarReq;

/* ---- ActionCache ---- */

static int blob_present(cas_store *st, const PbDigest *pb) {
  reapi_digest d;
  if (!pb)
    return 1;
  if (reapi_pb_digest_get(pb, &d))
    return -1;
  return cas_store_has(st, &d);
}

static int tree_complete(cas_store *st, const PbDigest *tree_pb) {
  reapi_digest d;
  uint8_t *data = NULL;
  size_t len = 0, i, k;
  PbTree *tree;
  int ok = 1;

  if (reapi_pb_digest_get(tree_pb, &d))
    return DB_EINVAL;
  if (cas_store_get(st, &d, &data, &len))
    return 0;
  tree = build__bazel__remote__execution__v2__tree__unpack(NULL, len, data);
  free(data);
  if (!tree)
    return DB_EINVAL;
  for (i = 0; ok == 1 && i <= tree->n_children; i++) {
    PbDirectory *dir = i == 0 ? tree->root : tree->children[i - 1];
    if (!dir)
      continue;
    for (k = 0; ok == 1 && k < dir->n_files; k++)
      ok = blob_present(st, dir->files[k]->digest);
  }
  build__bazel__remote__execution__v2__tree__free_unpacked(tree, NULL);
  return ok < 0 ? DB_EINVAL : ok;
}

static int result_complete(cas_store *st, const PbActionResult *ar) {
  size_t i;
  int ok = 1;

  for (i = 0; ok == 1 && i < ar->n_output_files; i++)
    ok = blob_present(st, ar->output_files[i]->digest);
  for (i = 0; ok == 1 && i < ar->n_output_directories; i++)
    ok = tree_complete(st, ar->output_directories[i]->tree_digest);
  if (ok == 1)
    ok = blob_present(st, ar->stdout_digest);
  if (ok == 1)
    ok = blob_present(st, ar->stderr_digest);
  return ok < 0 ? DB_EINVAL : ok;
}

int cas_service_result_complete(cas_store *store, const uint8_t *data,
                                size_t len) {
  PbActionResult *ar;
  int ok;

  ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, len,
                                                                  data);
  if (!ar)
    return DB_EINVAL;
  ok = result_complete(store, ar);
  build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
  return ok;
}

/* Fill an inline field from the CAS when asked and small enough. */
static void inline_blob(cas_store *st, const PbDigest *pb,
                        ProtobufCBinaryData *field, size_t *budget) {
  reapi_digest d;
  uint8_t *data = NULL;
  size_t len = 0;

  if (!pb || field->len || reapi_pb_digest_get(pb, &d) || d.size == 0 ||
      (size_t)d.size > *budget)
    return;
  if (cas_store_get(st, &d, &data, &len))
    return;
  field->data = data;
  field->len = len;
  *budget -= len;
}

void cas_svc_gar_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  GarReq *req;
  PbActionResult *ar = NULL;
  reapi_digest d;
  uint8_t *data = NULL;
  size_t dlen = 0, i, k, budget = INLINE_BUDGET;
  int rc;

  req = build__bazel__remote__execution__v2__get_action_result_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed GetActionResultRequest");
    return;
  }
  if (reapi_pb_digest_get(req->action_digest, &d)) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT, "invalid action_digest");
    goto out;
  }
  rc = cas_ac_get(svc->store, &d, &data, &dlen);
  if (rc == DB_ENOTFOUND) {
    rpc_call_finish(call, RPC_NOT_FOUND, "action result not in the cache");
    goto out;
  }
  if (rc) {
    cas_svc_fail(call, rc, "GetActionResult");
    goto out;
  }
  ar = build__bazel__remote__execution__v2__action_result__unpack(NULL, dlen,
                                                                  data);
  if (!ar || result_complete(svc->store, ar) != 1) {
    /* A result whose outputs were evicted is useless (and one that no
     * longer parses is corrupt): drop it and report a miss. */
    DB_INFO("cas", "action %s: cached result %s, dropping it", d.hash,
            ar ? "references evicted blobs" : "is corrupt");
    cas_ac_remove(svc->store, &d);
    rpc_call_finish(call, RPC_NOT_FOUND,
                    "cached action result references blobs no longer in "
                    "the CAS");
    goto out;
  }
  /* Inlined buffers are malloc'd, so free_unpacked (default allocator)
   * releases them with the rest of the message. */
  if (req->inline_stdout)
    inline_blob(svc->store, ar->stdout_digest, &ar->stdout_raw, &budget);
  if (req->inline_stderr)
    inline_blob(svc->store, ar->stderr_digest, &ar->stderr_raw, &budget);
  for (i = 0; i < ar->n_output_files; i++) {
    PbOutputFile *f = ar->output_files[i];
    for (k = 0; k < req->n_inline_output_files; k++) {
      if (!strcmp(req->inline_output_files[k], f->path) && !f->contents.len) {
        inline_blob(svc->store, f->digest, &f->contents, &budget);
        break;
      }
    }
  }
  cas_svc_reply(call, &ar->base);
out:
  if (ar)
    build__bazel__remote__execution__v2__action_result__free_unpacked(ar, NULL);
  free(data);
  build__bazel__remote__execution__v2__get_action_result_request__free_unpacked(
      req, NULL);
}

void cas_svc_uar_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  UarReq *req;
  reapi_digest d;
  uint8_t *buf = NULL;
  size_t blen = 0;
  int rc;

  req =
      build__bazel__remote__execution__v2__update_action_result_request__unpack(
          NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed UpdateActionResultRequest");
    return;
  }
  if (reapi_pb_digest_get(req->action_digest, &d) || !req->action_result) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "invalid action_digest or missing action_result");
    goto out;
  }
  rc = result_complete(svc->store, req->action_result);
  if (rc < 0) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "action_result holds an invalid digest");
    goto out;
  }
  if (rc == 0) {
    rpc_call_finish(call, RPC_FAILED_PRECONDITION,
                    "action_result references blobs missing from the CAS; "
                    "upload them first");
    goto out;
  }
  rc = reapi_pb_pack(&req->action_result->base, &buf, &blen);
  if (rc == 0)
    rc = cas_ac_put(svc->store, &d, buf ? buf : (const uint8_t *)"", blen);
  if (rc) {
    cas_svc_fail(call, rc, "UpdateActionResult");
    goto out;
  }
  cas_svc_reply(call, &req->action_result->base);
out:
  free(buf);
  build__bazel__remote__execution__v2__update_action_result_request__free_unpacked(
      req, NULL);
}

/* ---- Capabilities ---- */

void cas_svc_caps_on_message(rpc_call *call, const uint8_t *msg, size_t len) {
  cas_service *svc = rpc_call_method_data(call);
  Build__Bazel__Remote__Execution__V2__GetCapabilitiesRequest *req;
  Build__Bazel__Remote__Execution__V2__ServerCapabilities caps =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__SERVER_CAPABILITIES__INIT;
  Build__Bazel__Remote__Execution__V2__CacheCapabilities cache =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__CACHE_CAPABILITIES__INIT;
  Build__Bazel__Remote__Execution__V2__ExecutionCapabilities exec =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__EXECUTION_CAPABILITIES__INIT;
  Build__Bazel__Remote__Execution__V2__ActionCacheUpdateCapabilities acu =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_CACHE_UPDATE_CAPABILITIES__INIT;
  Build__Bazel__Semver__SemVer low = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
  Build__Bazel__Semver__SemVer high = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
  Build__Bazel__Semver__SemVer dep = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
  Build__Bazel__Remote__Execution__V2__DigestFunction__Value fns[] = {
      PB_DIGEST_SHA256};
  Build__Bazel__Remote__Execution__V2__Compressor__Value comps[] = {
      PB_COMPRESSOR_ZSTD};

  req = build__bazel__remote__execution__v2__get_capabilities_request__unpack(
      NULL, len, msg);
  if (!req) {
    rpc_call_finish(call, RPC_INVALID_ARGUMENT,
                    "malformed GetCapabilitiesRequest");
    return;
  }
  cache.n_digest_functions = 1;
  cache.digest_functions = fns;
  acu.update_enabled = 1;
  cache.action_cache_update_capabilities = &acu;
  cache.max_batch_total_size_bytes = (int64_t)svc->max_batch;
  cache.symlink_absolute_path_strategy =
      BUILD__BAZEL__REMOTE__EXECUTION__V2__SYMLINK_ABSOLUTE_PATH_STRATEGY__VALUE__ALLOWED;
  cache.n_supported_compressors = 1;
  cache.supported_compressors = comps;
  cache.n_supported_batch_update_compressors = 1;
  cache.supported_batch_update_compressors = comps;
  caps.cache_capabilities = &cache;
  if (svc->exec_enabled) {
    exec.digest_function = PB_DIGEST_SHA256;
    exec.exec_enabled = 1;
    exec.n_digest_functions = 1;
    exec.digest_functions = fns;
    caps.execution_capabilities = &exec;
  }
  dep.major = 2;
  low.major = 2;
  high.major = 2;
  high.minor = 3;
  caps.deprecated_api_version = &dep;
  caps.low_api_version = &low;
  caps.high_api_version = &high;
  cas_svc_reply(call, &caps.base);
  build__bazel__remote__execution__v2__get_capabilities_request__free_unpacked(
      req, NULL);
}
