#!/usr/bin/python3
"""A CAS (python3-grpcio) that damages the first upload of every blob.

For the cas_client retry test, answering as our server does when request
bytes were damaged on the way: the first ByteStream Write of each blob
gets INVALID_ARGUMENT "corrupt zstd stream"; the first BatchUpdateBlobs
call fails as a whole with INTERNAL "Invalid Compressed-Flag in message
prefix", and the first entry of each blob in a later call gets
INVALID_ARGUMENT "uploaded data does not match the digest".
Later uploads are verified against their digests and kept in memory.
Prints "PORT <n>" once it serves; at SIGTERM prints one line per blob:
"BLOB <hash>/<size> attempts <n> stored <0|1>".
Usage: flaky_cas_server.py
"""
import hashlib
import os
import signal
import sys
import threading
from concurrent import futures

import grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "pylib"))
import reapi_py  # noqa: E402

re_pb2, bs_pb2, status_pb2 = reapi_py.load_protos()
from build.bazel.semver import semver_pb2  # noqa: E402

CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
CAPS = "/build.bazel.remote.execution.v2.Capabilities/"
BS = "/google.bytestream.ByteStream/"

lock = threading.Lock()
stored = {}    # "hash/size" -> bytes
attempts = {}  # "hash/size" -> uploads seen
batch_calls = [0]


def key(d):
    return "%s/%d" % (d.hash, d.size_bytes)


def first_attempt(k):
    with lock:
        attempts[k] = attempts.get(k, 0) + 1
        return attempts[k] == 1


def verify_store(k, data):
    h, size = k.split("/")
    if hashlib.sha256(data).hexdigest() != h or len(data) != int(size):
        return False
    with lock:
        stored[k] = data
    return True


def caps(req, ctx):
    r = re_pb2.ServerCapabilities()
    cc = r.cache_capabilities
    cc.digest_functions.append(re_pb2.DigestFunction.SHA256)
    cc.max_batch_total_size_bytes = 4 << 20
    r.low_api_version.major = 2
    r.high_api_version.major = 2
    return r.SerializeToString()


def find_missing(req, ctx):
    q = re_pb2.FindMissingBlobsRequest.FromString(req)
    r = re_pb2.FindMissingBlobsResponse()
    with lock:
        for d in q.blob_digests:
            if key(d) not in stored:
                r.missing_blob_digests.add().CopyFrom(d)
    return r.SerializeToString()


def batch_update(req, ctx):
    q = re_pb2.BatchUpdateBlobsRequest.FromString(req)
    r = re_pb2.BatchUpdateBlobsResponse()
    with lock:
        batch_calls[0] += 1
        whole_call_fails = batch_calls[0] == 1
    if whole_call_fails:
        for e in q.requests:
            first_attempt(key(e.digest))
        ctx.abort(grpc.StatusCode.INTERNAL,
                  "Invalid Compressed-Flag in message prefix")
    for e in q.requests:
        k = key(e.digest)
        out = r.responses.add()
        out.digest.CopyFrom(e.digest)
        if first_attempt(k) or not verify_store(k, e.data):
            out.status.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            out.status.message = "uploaded data does not match the digest"
    return r.SerializeToString()


def write(req_iter, ctx):
    name, data = None, b""
    for m in req_iter:
        w = bs_pb2.WriteRequest.FromString(m)
        if w.resource_name:
            name = w.resource_name
        data += w.data
        if w.finish_write:
            break
    parts = name.split("/")
    i = parts.index("uploads")
    if parts[i + 2] != "blobs":
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "only blobs/ expected")
    k = "%s/%s" % (parts[i + 3], parts[i + 4])
    if first_attempt(k):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "corrupt zstd stream")
    if not verify_store(k, data):
        ctx.abort(grpc.StatusCode.INVALID_ARGUMENT,
                  "uploaded data does not match the digest")
    r = bs_pb2.WriteResponse()
    r.committed_size = len(data)
    return r.SerializeToString()


def main():
    ident = lambda b: b  # noqa: E731
    handlers = {
        CAPS + "GetCapabilities": grpc.unary_unary_rpc_method_handler(
            caps, ident, ident),
        CAS + "FindMissingBlobs": grpc.unary_unary_rpc_method_handler(
            find_missing, ident, ident),
        CAS + "BatchUpdateBlobs": grpc.unary_unary_rpc_method_handler(
            batch_update, ident, ident),
        BS + "Write": grpc.stream_unary_rpc_method_handler(
            write, ident, ident),
    }

    class H(grpc.GenericRpcHandler):
        def service(self, details):
            return handlers.get(details.method)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((H(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(0)
    with lock:
        for k in sorted(attempts):
            print("BLOB %s attempts %d stored %d"
                  % (k, attempts[k], k in stored), flush=True)


if __name__ == "__main__":
    main()
