/*
 * Early outputs on the client: outputs written before the action's final
 * result, so cargo can start dependent crates as it does with a local
 * rustc's pipelining.
 *
 * - On a cache hit, the .rmeta and .d inlined in the ActionResult are
 *   written first, with rustc's stderr up to its metadata notice
 *   (wrap_early_hit).
 * - While an action runs, the worker's EarlyOutputs (relayed by the
 *   scheduler, worker.proto) are written as they come: the first message
 *   (.rmeta and .d) may release its stderr prefix; later ones with an empty
 *   prefix add files such as the .rlib at rustc's link notice
 *   (wrap_early_write).
 *
 * Files are written only if the action declared them and their digest
 * checks out. Whatever goes wrong just skips the early path: the final
 * result carries every output, and wrap_early_same() tells the final
 * download which files are already in place. Results are recorded in
 * wrap_remote_result (early_paths, early_digests, early_released, ...).
 */
#ifndef WRAP_EARLY_H
#define WRAP_EARLY_H

#include "cas_client.h"
#include "distbuild/worker/v1/worker.pb-c.h"
#include "reapi_digest.h"
#include "reapi_pb.h"
#include "wrap_action.h"
#include "wrap_remote.h"

/* 1 if path (any form) names crate metadata or dep-info (.rmeta, .d): what
 * is written first. */
int wrap_early_kind(const char *path);

/* 1 if abs was written early with digest d and is still there. */
int wrap_early_same(const wrap_remote_result *res, const char *abs,
                    const reapi_digest *d);

/* A hit: write the inlined .rmeta and .d and, if progress agrees, release
 * the stderr prefix up to the metadata notice. */
void wrap_early_hit(const wrap_action *act, const PbActionResult *ar,
                    wrap_remote_result *res, wrap_remote_progress_fn progress,
                    void *pctx);

/* One relayed EarlyOutputs message: write its files (inline contents, else
 * fetched through *cas2, a second connection to target with channel's TLS
 * material and headers (borrowed, may be NULL), created on first use, with
 * stall_ms as its idle timeout, and owned by the caller). */
void wrap_early_write(const Distbuild__Worker__V1__EarlyOutputs *eo,
                      const wrap_action *act, const char *target,
                      const rpc_channel_opts *channel, int64_t stall_ms,
                      cas_client **cas2, wrap_remote_result *res,
                      wrap_remote_progress_fn progress, void *pctx);

#endif
