#!/usr/bin/python3
"""Rough server-side cost of the gRPC transport, measured with a Python
(grpc-core) client. The Python client cannot saturate the server on a small
box, so this reports the *server's* CPU time per RPC / per GB from
/proc/PID/stat and derives a per-core capacity; the wall-clock rates are
the client's limit, not the server's. Use the C client (reapi/rpc_client)
for real load once it exists.

Usage: server_cpu.py path/to/rpc_echo_server [unary_calls] [stream_mib]
"""
import os
import signal
import struct
import subprocess
import sys
import time

import grpc

OPTS = [("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1)]
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def main():
    server = sys.argv[1]
    ncalls = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    mib = int(sys.argv[3]) if len(sys.argv) > 3 else 2048
    p = subprocess.Popen([server], stdout=subprocess.PIPE)
    port = int(p.stdout.readline().split()[1])
    ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=OPTS)
    u = ch.unary_unary("/test.Echo/Unary")
    u(b"warm", timeout=5)

    c0, t0 = cpu(p.pid), time.time()
    window = 200
    futs = []
    for i in range(ncalls):
        futs.append(u.future(b"0123456789abcdef", timeout=60))
        if len(futs) >= window:
            for f in futs:
                f.result()
            futs = []
    for f in futs:
        f.result()
    dc, dt = cpu(p.pid) - c0, time.time() - t0
    print("unary 16 B: %d calls, wall %.0f calls/s (client-bound), server "
          "CPU %.1f us/call => ~%.0f calls/s per server core" %
          (ncalls, ncalls / dt, dc / ncalls * 1e6,
           ncalls / dc if dc else float("inf")))

    ss = ch.unary_stream("/test.Echo/ServerStream")
    c0, t0 = cpu(p.pid), time.time()
    n = 0
    for m in ss(struct.pack(">II", mib, 1 << 20), timeout=120):
        n += len(m)
    dc, dt = cpu(p.pid) - c0, time.time() - t0
    print("server-stream %d MiB: wall %.0f MB/s, server CPU %.2f s => ~%.0f "
          "MB/s per server core" % (mib, n / dt / 1e6, dc,
                                    n / dc / 1e6 if dc else float("inf")))

    buf = bytes(1 << 20)
    cs = ch.stream_unary("/test.Echo/ClientStream")
    c0, t0 = cpu(p.pid), time.time()
    cs((buf for _ in range(mib)), timeout=120)
    dc, dt = cpu(p.pid) - c0, time.time() - t0
    n = mib << 20
    print("client-stream %d MiB: wall %.0f MB/s, server CPU %.2f s => ~%.0f "
          "MB/s per server core" % (mib, n / dt / 1e6, dc,
                                    n / dc / 1e6 if dc else float("inf")))
    ch.close()
    p.send_signal(signal.SIGTERM)
    p.wait(10)


if __name__ == "__main__":
    main()
