#!/usr/bin/python3
"""Drive rpc_echo_server with an independent client.

Usage: test_grpc.py SERVER_BINARY CASE

Most cases use grpc-core (Debian's python3-grpcio, generic calls with raw
bytes). The "raw" case speaks HTTP/2 by hand over a socket (HPACK blocks
from the server are decoded with libnghttp2's standalone inflater through
ctypes; everything else is plain bytes) to send what a well-behaved client
never sends.
"""
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import grpc

OPTS = [("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1)]
SERVER = None


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([SERVER] + list(args),
                                     stdout=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        check(line.startswith("PORT "), "server did not print its port")
        self.port = int(line.split()[1])
        self.addr = "127.0.0.1:%d" % self.port

    def channel(self):
        return grpc.insecure_channel(self.addr, options=OPTS)

    def stats(self):
        with self.channel() as ch:
            txt = ch.unary_unary("/test.Echo/Stats")(b"", timeout=5).decode()
        return dict(l.split("=", 1) for l in txt.split("\n") if l)

    def wait_stat(self, key, want, timeout=3.0):
        end = time.time() + timeout
        while True:
            st = self.stats()
            if st.get(key) == str(want) or time.time() > end:
                return st
            time.sleep(0.05)

    def stop(self, timeout=10):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        check(rc == 0, "server exit code %d" % rc)


def expect_error(fn, code, *args, **kw):
    try:
        fn(*args, **kw)
    except grpc.RpcError as e:
        check(e.code() == code, "want %s, got %s (%s)" %
              (code, e.code(), e.details()))
        return e
    raise AssertionError("call succeeded, wanted %s" % code)


# ---------------------------------------------------------------- cases


def case_unary(srv):
    with srv.channel() as ch:
        u = ch.unary_unary("/test.Echo/Unary")
        for n in (0, 1, 16 * 1024, 5 * 1024 * 1024):
            req = os.urandom(n)
            check(u(req, timeout=10) == req, "echo of %d bytes" % n)
        # metadata does not upset anything; te/user-agent come from grpc
        check(u(b"m", metadata=[("x-a", "1"), ("x-b-bin", b"\0\1")],
                timeout=5) == b"m", "echo with metadata")
    st = srv.stats()
    check(st.get("Unary.OK") == "5", "server saw 5 OK closes: %s" % st)


def case_server_stream(srv):
    with srv.channel() as ch:
        ss = ch.unary_stream("/test.Echo/ServerStream")
        msgs = list(ss(struct.pack(">II", 1000, 100), timeout=10))
        check(len(msgs) == 1000, "got %d messages" % len(msgs))
        for i, m in enumerate(msgs):
            check(m == bytes([i & 255]) * 100, "message %d content" % i)
        # 64 x 1 MiB: flow control + on_writable pacing
        n = 0
        for i, m in enumerate(ss(struct.pack(">II", 64, 1 << 20),
                                 timeout=20)):
            check(len(m) == 1 << 20 and m[0] == i & 255 and
                  m[-1] == i & 255, "big message %d" % i)
            n += 1
        check(n == 64, "got %d big messages" % n)
        check(list(ss(struct.pack(">II", 0, 0), timeout=5)) == [],
              "empty stream")


def case_client_stream(srv):
    with srv.channel() as ch:
        cs = ch.stream_unary("/test.Echo/ClientStream")
        sizes = [(i * 7919) % 70000 for i in range(1000)]
        msgs = [bytes([i & 255]) * n for i, n in enumerate(sizes)]
        r = struct.unpack(">QQ", cs(iter(msgs), timeout=20))
        check(r == (1000, sum(sizes)), "client stream totals %r" % (r,))
        r = struct.unpack(">QQ", cs(iter([]), timeout=5))
        check(r == (0, 0), "empty client stream %r" % (r,))


def case_concurrent(srv):
    with srv.channel() as ch:
        u = ch.unary_unary("/test.Echo/Unary")
        futs = [(i, u.future(b"req-%d" % i * (1 + i % 50), timeout=30))
                for i in range(500)]
        for i, f in futs:
            check(f.result() == b"req-%d" % i * (1 + i % 50),
                  "concurrent call %d" % i)
        # mixed shapes on the same connection
        ss = ch.unary_stream("/test.Echo/ServerStream")
        streams = [ss(struct.pack(">II", 50, 1000), timeout=30)
                   for _ in range(20)]
        futs = [u.future(b"x" * 100000, timeout=30) for _ in range(50)]
        for s in streams:
            check(len(list(s)) == 50, "stream length")
        for f in futs:
            check(f.result() == b"x" * 100000, "unary among streams")
    st = srv.stats()
    check(st.get("Unary.OK") == "550" and st.get("active") == "0",
          "stats %s" % st)


def case_thread_post(srv):
    with srv.channel() as ch:
        t = ch.unary_unary("/test.Echo/Thread")
        futs = [(i, t.future(b"t%d" % i, timeout=30)) for i in range(200)]
        for i, f in futs:
            check(f.result() == b"t%d" % i, "posted reply %d" % i)
    st = srv.stats()
    check(st.get("Thread.OK") == "200", "stats %s" % st)


def case_errors(srv):
    with srv.channel() as ch:
        f = ch.unary_unary("/test.Echo/Fail")
        text = "échec: naïve ✓ 100% \"quoted\" 日本"
        req = bytes([9]) + text.encode()
        e = expect_error(f, grpc.StatusCode.FAILED_PRECONDITION, req,
                         timeout=5)
        check(e.details() == text, "message %r" % e.details())
        md = dict(e.trailing_metadata())
        check(md.get("grpc-status-details-bin") == req,
              "details-bin %r" % md.get("grpc-status-details-bin"))
        e = expect_error(f, grpc.StatusCode.NOT_FOUND, bytes([5]),
                         timeout=5)
        check(e.details() in ("", None), "empty message %r" % e.details())
        e = expect_error(ch.unary_unary("/test.Echo/NoSuch"),
                         grpc.StatusCode.UNIMPLEMENTED, b"", timeout=5)
        check("/test.Echo/NoSuch" in e.details(), e.details())
        expect_error(ch.unary_unary("/other.Svc/Unary"),
                     grpc.StatusCode.UNIMPLEMENTED, b"x" * 100000,
                     timeout=5)
        # cardinality: two requests / no request on a unary method
        u2 = ch.stream_unary("/test.Echo/Unary")
        expect_error(u2, grpc.StatusCode.UNIMPLEMENTED, iter([b"a", b"b"]),
                     timeout=5)
        expect_error(u2, grpc.StatusCode.UNIMPLEMENTED, iter([]), timeout=5)
        # the connection is still fine
        check(ch.unary_unary("/test.Echo/Unary")(b"ok", timeout=5) == b"ok",
              "echo after errors")


def case_oversize(srv):
    # server started with --max-msg 1024
    with srv.channel() as ch:
        u = ch.unary_unary("/test.Echo/Unary")
        check(u(b"a" * 1024, timeout=5) == b"a" * 1024, "at the limit")
        e = expect_error(u, grpc.StatusCode.RESOURCE_EXHAUSTED, b"a" * 1025,
                         timeout=5)
        check("1025" in e.details(), e.details())
        cs = ch.stream_unary("/test.Echo/ClientStream")
        expect_error(cs, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     iter([b"x" * 10, b"y" * (1 << 20)]), timeout=5)
        check(u(b"b", timeout=5) == b"b", "echo after oversize")


def case_deadline(srv):
    with srv.channel() as ch:
        t0 = time.time()
        expect_error(ch.unary_unary("/test.Echo/Slow"),
                     grpc.StatusCode.DEADLINE_EXCEEDED, b"", timeout=1.0)
        # 1 s, not less: on a loaded 2-core box a shorter deadline can
        # expire before the request reaches the server at all.
        check(time.time() - t0 < 3, "deadline took too long")
    # The client's own RST(CANCEL) at its deadline usually beats the
    # server's timer by a hair; either way on_close must have run.
    st = srv.wait_stat("active", 0)
    n = int(st.get("Slow.CANCELLED", 0)) + \
        int(st.get("Slow.DEADLINE_EXCEEDED", 0))
    check(n == 1 and st.get("active") == "0", "server on_close: %s" % st)


def case_cancel(srv):
    with srv.channel() as ch:
        f = ch.unary_unary("/test.Echo/Slow").future(b"", timeout=30)
        time.sleep(0.3)
        check(f.cancel(), "cancel")
        st = srv.wait_stat("Slow.CANCELLED", 1)
        check(st.get("Slow.CANCELLED") == "1", "stats %s" % st)
        # cancel a client stream mid-upload
        ev = threading.Event()

        def gen():
            yield b"a" * 1000
            ev.wait(10)
            yield b"b"
        f = ch.stream_unary("/test.Echo/ClientStream").future(gen(),
                                                             timeout=30)
        time.sleep(0.3)
        check(f.cancel(), "cancel stream")
        ev.set()
        st = srv.wait_stat("ClientStream.CANCELLED", 1)
        check(st.get("ClientStream.CANCELLED") == "1" and
              st.get("active") == "0", "stats %s" % st)


def case_shutdown(srv):
    ch = srv.channel()
    delay = ch.unary_unary("/test.Echo/Delay")
    check(delay(struct.pack(">I", 1), timeout=5) == struct.pack(">I", 1),
          "warm-up")
    fut = delay.future(struct.pack(">I", 800), timeout=10)
    time.sleep(0.2)
    t0 = time.time()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.4)  # notice + final GOAWAY are out
    expect_error(delay, grpc.StatusCode.UNAVAILABLE, struct.pack(">I", 1),
                 timeout=3)
    with srv.channel() as ch2:
        expect_error(ch2.unary_unary("/test.Echo/Unary"),
                     grpc.StatusCode.UNAVAILABLE, b"x", timeout=3)
    check(fut.result() == struct.pack(">I", 800), "in-flight call completed")
    rc = srv.proc.wait(5)
    check(rc == 0, "exit code %d" % rc)
    check(time.time() - t0 < 3, "server did not exit promptly")
    ch.close()

    # Grace period runs out: the stuck call is cut, the server still exits.
    srv2 = Server("--grace-ms", "500")
    ch = srv2.channel()
    f = ch.unary_unary("/test.Echo/Slow").future(b"", timeout=30)
    time.sleep(0.2)
    t0 = time.time()
    srv2.proc.send_signal(signal.SIGTERM)
    rc = srv2.proc.wait(5)
    check(rc == 0, "exit code %d" % rc)
    check(0.4 < time.time() - t0 < 3, "grace period %.2f" % (time.time() - t0))
    try:
        f.result(timeout=5)
        raise AssertionError("stuck call succeeded")
    except grpc.RpcError as e:
        check(e.code() in (grpc.StatusCode.UNAVAILABLE,
                           grpc.StatusCode.CANCELLED,
                           grpc.StatusCode.INTERNAL), "stuck call: %s" %
              e.code())
    ch.close()


def case_upload_1g(srv):
    n, size = 1024, 1 << 20
    buf = bytearray(size)

    def gen():
        for i in range(n):
            buf[0] = buf[-1] = i & 255
            yield bytes(buf)
    with srv.channel() as ch:
        t0 = time.time()
        r = ch.stream_unary("/test.Echo/Sink")(gen(), timeout=60).decode()
        dt = time.time() - t0
    kv = dict(x.split("=") for x in r.split())
    print("1 GiB upload: %.2f s (%.0f MB/s), server VmHWM %s kB" %
          (dt, n * size / dt / 1e6, kv["hwm_kb"]))
    check(kv["msgs"] == str(n) and kv["bytes"] == str(n * size) and
          kv["bad"] == "0", r)
    check(0 < int(kv["hwm_kb"]) < 200 * 1024, "server peak RSS " + r)


# ---------------------------------------------------------------- raw h2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINUP = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS = 1, 4


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xffff, ftype, flags,
                       sid) + payload


def hpack_literal(headers):
    out = b""
    for k, v in headers:
        k, v = k.encode(), v.encode()
        assert len(k) < 127 and len(v) < 127
        out += bytes([0, len(k)]) + k + bytes([len(v)]) + v
    return out


def req_headers(path, extra=(), ctype="application/grpc"):
    h = [(":method", "POST"), (":scheme", "http"), (":path", path),
         (":authority", "localhost"), ("te", "trailers")]
    if ctype:
        h.append(("content-type", ctype))
    return hpack_literal(h + list(extra))


class NV(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("value", ctypes.c_void_p),
                ("namelen", ctypes.c_size_t), ("valuelen", ctypes.c_size_t),
                ("flags", ctypes.c_uint8)]


class Inflater:
    """HPACK decoder: libnghttp2's standalone nghttp2_hd_inflate API."""

    def __init__(self):
        self.lib = ctypes.CDLL("libnghttp2.so.14")
        self.lib.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
        self.lib.nghttp2_hd_inflate_hd2.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(NV),
            ctypes.POINTER(ctypes.c_int), ctypes.c_char_p, ctypes.c_size_t,
            ctypes.c_int]
        self.ptr = ctypes.c_void_p()
        check(self.lib.nghttp2_hd_inflate_new(ctypes.byref(self.ptr)) == 0,
              "inflater")

    def inflate(self, block):
        out, off = [], 0
        while True:
            nv, fl = NV(), ctypes.c_int(0)
            rv = self.lib.nghttp2_hd_inflate_hd2(
                self.ptr, ctypes.byref(nv), ctypes.byref(fl), block[off:],
                len(block) - off, 1)
            check(rv >= 0, "HPACK decode error %d" % rv)
            off += rv
            if fl.value & 2:
                out.append((ctypes.string_at(nv.name, nv.namelen).decode(),
                            ctypes.string_at(nv.value,
                                             nv.valuelen).decode()))
            if fl.value & 1:
                self.lib.nghttp2_hd_inflate_end_headers(self.ptr)
                return out


class RawConn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.hp = Inflater()

    def send(self, b):
        self.s.sendall(b)

    def start(self):
        self.send(PREFACE + frame(SETTINGS, 0, 0))

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                return None
            b += c
        return b

    def read_frame(self):
        hd = self.recv_exact(9)
        if hd is None:
            return None
        n = hd[0] << 16 | hd[1] << 8 | hd[2]
        payload = self.recv_exact(n) if n else b""
        ftype, flags, sid = hd[3], hd[4], struct.unpack(">I", hd[5:])[0]
        if ftype == SETTINGS and not flags & 1:
            self.send(frame(SETTINGS, 1, 0))
        return ftype, flags, sid & 0x7fffffff, payload

    def events(self, sid, timeout=5):
        """Frames of stream sid until it ends: list of (kind, value)."""
        self.s.settimeout(timeout)
        ev = []
        while True:
            f = self.read_frame()
            check(f is not None, "connection closed early: %s" % ev)
            ftype, flags, fsid, payload = f
            if fsid != sid:
                continue
            if ftype == HEADERS:
                check(flags & END_HEADERS, "CONTINUATION not expected")
                ev.append(("headers", dict(self.hp.inflate(payload))))
            elif ftype == DATA:
                ev.append(("data", payload))
            elif ftype == RST:
                ev.append(("rst", struct.unpack(">I", payload)[0]))
                return ev
            if flags & END_STREAM:
                return ev

    def closed_by_peer(self, timeout=5):
        """True once the server closes the socket (GOAWAY is allowed)."""
        self.s.settimeout(timeout)
        try:
            while True:
                f = self.read_frame()
                if f is None:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def grpc_msg(payload, flag=0, claim=None):
    n = len(payload) if claim is None else claim
    return bytes([flag]) + struct.pack(">I", n) + payload


def case_raw(srv):
    ok = srv.channel()
    u = ok.unary_unary("/test.Echo/Unary")
    check(u(b"before", timeout=5) == b"before", "warm-up")

    # 1. preface, then garbage: the connection dies, nothing else does
    c = RawConn(srv.port)
    c.start()
    c.send(b"\xff" * 64)
    check(c.closed_by_peer(), "garbage connection not closed")
    c = RawConn(srv.port)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    check(c.closed_by_peer(), "HTTP/1.1 connection not closed")

    # 2. a truncated frame, left hanging while another connection works,
    #    then the client goes away
    hang = RawConn(srv.port)
    hang.start()
    hang.send(frame(HEADERS, END_HEADERS, 1, req_headers(
        "/test.Echo/Unary"))[:12])
    check(u(b"during", timeout=5) == b"during", "other connection works")
    hang.s.close()

    c = RawConn(srv.port)
    c.start()
    # 3. truncated length-prefixed message then END_STREAM -> INTERNAL
    c.send(frame(HEADERS, END_HEADERS, 1, req_headers("/test.Echo/Unary")) +
           frame(DATA, END_STREAM, 1, grpc_msg(b"0123456789", claim=100)))
    ev = c.events(1)
    check(ev and ev[0][0] == "headers", "response %s" % ev)
    h = ev[0][1]
    check(h.get(":status") == "200" and h.get("grpc-status") == "13" and
          "content-type" in h, "trailers-only INTERNAL: %s" % ev)
    # 4. a message split over many DATA frames, then two in one frame
    body = os.urandom(3000)
    m = grpc_msg(body)
    data = b"".join(frame(DATA, 0, 3, m[i:i + 7])
                    for i in range(0, len(m), 7))
    c.send(frame(HEADERS, END_HEADERS, 3, req_headers(
        "/test.Echo/Unary", ctype="application/grpc+proto")) + data +
        frame(DATA, END_STREAM, 3, b""))
    ev = c.events(3)
    check([e[0] for e in ev] == ["headers", "data", "headers"],
          "unary shape %s" % ev)
    check(ev[1][1] == m, "echo over split frames")
    check(ev[2][1].get("grpc-status") == "0", "status %s" % ev)
    # 4b. a DATA frame that ends exactly after the 5-byte prefix, the body
    #     in the next frame (was a memcpy from a NULL buffer under UBSan)
    c2 = RawConn(srv.port)
    c2.start()
    m = grpc_msg(b"prefix-then-body")
    c2.send(frame(HEADERS, END_HEADERS, 1, req_headers("/test.Echo/Unary")) +
            frame(DATA, 0, 1, m[:5]) + frame(DATA, END_STREAM, 1, m[5:]))
    ev = c2.events(1)
    check(len(ev) == 3 and ev[1][1] == m and
          ev[2][1].get("grpc-status") == "0",
          "echo with the prefix alone in a frame: %s" % ev)
    two = grpc_msg(b"a" * 10) + grpc_msg(b"b" * 20) + grpc_msg(b"")
    c.send(frame(HEADERS, END_HEADERS, 5, req_headers(
        "/test.Echo/ClientStream")) + frame(DATA, END_STREAM, 5, two))
    ev = c.events(5)
    check(ev[1][1] == grpc_msg(struct.pack(">QQ", 3, 30)),
          "3 messages in one frame %s" % ev)
    # 5. wrong content-type -> HTTP 415
    c.send(frame(HEADERS, END_HEADERS | END_STREAM, 7, req_headers(
        "/test.Echo/Unary", ctype="application/json")))
    ev = c.events(7)
    check(ev[0][1].get(":status") == "415", "415: %s" % ev)
    # 6. Compressed-Flag without grpc-encoding -> INTERNAL; with an
    #    unsupported grpc-encoding -> UNIMPLEMENTED + grpc-accept-encoding
    c.send(frame(HEADERS, END_HEADERS, 9, req_headers("/test.Echo/Unary")) +
           frame(DATA, END_STREAM, 9, grpc_msg(b"zz", flag=1)))
    ev = c.events(9)
    check(ev[0][1].get("grpc-status") == "13", "flag w/o encoding %s" % ev)
    c.send(frame(HEADERS, END_HEADERS, 11, req_headers(
        "/test.Echo/Unary", extra=[("grpc-encoding", "gzip")])) +
        frame(DATA, END_STREAM, 11, grpc_msg(b"zz", flag=1)))
    ev = c.events(11)
    h = ev[0][1]
    check(h.get("grpc-status") == "12" and
          h.get("grpc-accept-encoding") == "identity", "gzip: %s" % ev)
    # 7. server-side deadline: Slow with grpc-timeout and no client timer
    t0 = time.time()
    c.send(frame(HEADERS, END_HEADERS, 13, req_headers(
        "/test.Echo/Slow", extra=[("grpc-timeout", "200m")])) +
        frame(DATA, END_STREAM, 13, grpc_msg(b"")))
    ev = c.events(13, timeout=5)
    dt = time.time() - t0
    # Nothing was queued: a Trailers-Only DEADLINE_EXCEEDED, so a client
    # whose own timer is late does not read a reset as CANCELLED.
    check(len(ev) == 1 and ev[0][0] == "headers" and
          ev[0][1].get("grpc-status") == "4" and
          ev[0][1].get("grpc-message") == "deadline exceeded",
          "deadline trailers: %s" % ev)
    check(0.15 < dt < 2, "deadline fired after %.3f s" % dt)
    st = srv.wait_stat("Slow.DEADLINE_EXCEEDED", 1)
    check(st.get("Slow.DEADLINE_EXCEEDED") == "1", "stats %s" % st)
    # 7b. a client-streaming call whose client is still sending at the
    #     deadline is reset at once (a held response could wait a second)
    c.send(frame(HEADERS, END_HEADERS, 15, req_headers(
        "/test.Echo/ClientStream", extra=[("grpc-timeout", "200m")])) +
        frame(DATA, 0, 15, grpc_msg(b"part")))
    ev = c.events(15, timeout=5)
    check(ev == [("rst", 8)], "streaming deadline RST(CANCEL): %s" % ev)
    st = srv.wait_stat("ClientStream.DEADLINE_EXCEEDED", 1)
    check(st.get("ClientStream.DEADLINE_EXCEEDED") == "1", "stats %s" % st)
    # 8. early server close while the client still streams -> trailers,
    #    then, once the client sends more, RST_STREAM(NO_ERROR) (deferred
    #    so that it never shares a read with the trailers: libcurl 7.88
    #    drops the response in that case)
    c.send(frame(HEADERS, END_HEADERS, 17, req_headers("/test.Echo/Nope")) +
           frame(DATA, 0, 17, grpc_msg(b"x")))
    ev = c.events(17)
    check(ev[0][1].get("grpc-status") == "12", "unknown: %s" % ev)
    c.send(frame(DATA, 0, 17, grpc_msg(b"more")))
    f = c.read_frame()
    while f[0] != RST:
        f = c.read_frame()
    check(f[2] == 17 and f[3] == b"\0\0\0\0", "RST(NO_ERROR) %s" % (f,))
    # 9. client RST_STREAM on an open call -> on_close(CANCELLED)
    c.send(frame(HEADERS, END_HEADERS, 19, req_headers("/test.Echo/Slow")) +
           frame(DATA, END_STREAM, 19, grpc_msg(b"")))
    time.sleep(0.1)
    c.send(frame(RST, 0, 19, struct.pack(">I", 8)))
    st = srv.wait_stat("Slow.CANCELLED", 1)
    check(st.get("Slow.CANCELLED") == "1", "stats %s" % st)
    # 10. dropping the connection with calls open -> CANCELLED for all
    for sid in (21, 23, 25):
        c.send(frame(HEADERS, END_HEADERS, sid, req_headers(
            "/test.Echo/Slow")) + frame(DATA, END_STREAM, sid,
                                        grpc_msg(b"")))
    time.sleep(0.2)
    check(srv.stats().get("active") == "3", "3 slow calls open")
    c.s.close()
    st = srv.wait_stat("Slow.CANCELLED", 4)
    check(st.get("Slow.CANCELLED") == "4" and st.get("active") == "0",
          "stats %s" % st)
    # 11. PING is answered
    c = RawConn(srv.port)
    c.start()
    c.send(frame(PING, 0, 0, b"12345678"))
    while True:
        f = c.read_frame()
        check(f is not None, "no PING ack")
        if f[0] == PING:
            check(f[1] & 1 and f[3] == b"12345678", "PING ack %s" % (f,))
            break
    c.s.close()

    check(u(b"after", timeout=5) == b"after", "server survived")
    ok.close()


def case_early(srv):
    """A client-streaming call that finishes while the client still sends:
    the response is held until the client half-closes (libcurl 7.88 loses
    trailers that arrive during its upload), or sent after ~1 s and then
    followed by RST_STREAM(NO_ERROR) if the client never half-closes."""
    c = RawConn(srv.port)
    c.start()
    c.send(frame(HEADERS, END_HEADERS, 1, req_headers("/test.Echo/Early")) +
           frame(DATA, 0, 1, grpc_msg(b"first")))
    held = []
    c.s.settimeout(0.3)
    try:
        while True:
            f = c.read_frame()
            if f is None:
                break
            if f[0] == HEADERS:
                c.hp.inflate(f[3])  # keep the HPACK table in step
            if f[2] == 1:
                held.append(f)
    except socket.timeout:
        pass
    check(not any(f[1] & END_STREAM or f[0] == RST for f in held),
          "response ended before the client half-closed: %s" % held)
    c.send(frame(DATA, END_STREAM, 1, b""))
    ev = c.events(1)
    body = b"".join(v for k, v in ev if k == "data")
    check(body.endswith(b"first"), "echo after half-close: %s" % ev)
    check(ev[-1][0] == "headers" and ev[-1][1].get("grpc-status") == "0",
          "trailers after half-close: %s" % ev)
    # A client that never half-closes still gets its answer, then a reset.
    t0 = time.time()
    c.send(frame(HEADERS, END_HEADERS, 3, req_headers("/test.Echo/Early")) +
           frame(DATA, 0, 3, grpc_msg(b"second")))
    ev = c.events(3, timeout=5)
    dt = time.time() - t0
    check(ev[-1][0] == "headers" and ev[-1][1].get("grpc-status") == "0",
          "held response released: %s" % ev)
    check(0.5 < dt < 4, "released after %.2f s" % dt)
    f = c.read_frame()
    while f is not None and f[2] != 3:
        f = c.read_frame()
    check(f is not None and f[0] == RST and f[3] == b"\0\0\0\0",
          "RST_STREAM(NO_ERROR) after the released response: %s" % (f,))


CASES = {
    "unary": ((), case_unary),
    "server_stream": ((), case_server_stream),
    "client_stream": ((), case_client_stream),
    "concurrent": ((), case_concurrent),
    "thread_post": ((), case_thread_post),
    "errors": ((), case_errors),
    "oversize": (("--max-msg", "1024"), case_oversize),
    "deadline": ((), case_deadline),
    "cancel": ((), case_cancel),
    "shutdown": (("--grace-ms", "3000"), case_shutdown),
    "upload_1g": ((), case_upload_1g),
    "raw": ((), case_raw),
    "early": ((), case_early),
}


def main():
    global SERVER
    SERVER = sys.argv[1]
    args, fn = CASES[sys.argv[2]]
    srv = Server(*args)
    try:
        fn(srv)
        if srv.proc.poll() is None:
            srv.stop()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    print("PASS", sys.argv[2])


if __name__ == "__main__":
    main()
