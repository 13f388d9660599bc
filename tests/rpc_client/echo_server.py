#!/usr/bin/python3
"""Independent gRPC test server for the rpc_client tests (python3-grpcio).

Raw-bytes generic handler for /test.Echo/{Unary,ServerStream,ClientStream,
Fail,StreamFail,Slow}. Prints "PORT <n>" on stdout once it serves.
Usage: echo_server.py [PORT]   (0 or absent: pick a free port)
"""
import hashlib
import struct
import sys
import threading
import time
from concurrent import futures

import grpc


def unary(req, ctx):
    return req


def server_stream(req, ctx):
    # req: count (u32 BE), size (u32 BE). Message i starts with i (u32 BE)
    # and is filled with byte (i & 0xff).
    count, size = struct.unpack(">II", req[:8])
    for i in range(count):
        body = bytes([i & 0xFF]) * size
        if size >= 4:
            body = struct.pack(">I", i) + body[4:]
        yield body


def client_stream(req_iter, ctx):
    # Answer: count (u64 BE), total bytes (u64 BE), sha256 of the
    # concatenated messages.
    h = hashlib.sha256()
    n = 0
    total = 0
    for m in req_iter:
        h.update(m)
        n += 1
        total += len(m)
    return struct.pack(">QQ", n, total) + h.digest()


def client_stream_early(req_iter, ctx):
    # Answers after the first message while the client is still sending
    # (like ByteStream.Write for a blob the server already has).
    first = next(req_iter)
    return b"early:%d" % len(first)


def _fail(req, ctx):
    # req: code (u32 BE), details length (u32 BE), details bytes, then the
    # UTF-8 message.
    code, dlen = struct.unpack(">II", req[:8])
    details = req[8:8 + dlen]
    msg = req[8 + dlen:].decode("utf-8")
    if dlen:
        ctx.set_trailing_metadata((("grpc-status-details-bin", details),
                                   ("x-extra", "kept")))
    st = [c for c in grpc.StatusCode if c.value[0] == code][0]
    ctx.abort(st, msg)


def fail(req, ctx):
    # Aborts before anything is sent: Trailers-Only response.
    _fail(req, ctx)


def stream_fail(req, ctx):
    # Sends headers and two messages first, then fails in the trailers.
    yield b"one"
    yield b"two"
    _fail(req, ctx)


_inflight = 0
_peak = 0
_lock = threading.Lock()


def slow(req, ctx):
    # req: sleep milliseconds (u32 BE). Answers peak concurrency (u32 BE).
    global _inflight, _peak
    (ms,) = struct.unpack(">I", req[:4])
    with _lock:
        _inflight += 1
        _peak = max(_peak, _inflight)
    try:
        deadline = time.monotonic() + ms / 1000.0
        while time.monotonic() < deadline and ctx.is_active():
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        with _lock:
            peak = _peak
        return struct.pack(">I", peak)
    finally:
        with _lock:
            _inflight -= 1


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "ClientStreamEarly":
            grpc.stream_unary_rpc_method_handler(client_stream_early),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "StreamFail": grpc.unary_stream_rpc_method_handler(stream_fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=300),
        options=[("grpc.max_receive_message_length", -1),
                 ("grpc.max_send_message_length", -1),
                 ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:%d" % port)
    if port == 0:
        print("BIND_FAILED", flush=True)
        sys.exit(1)
    server.start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
