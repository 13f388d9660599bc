"""Shared helpers for the Python-driven integration tests.

Generates Python protobuf modules from the project's own .proto files (with
Debian's protoc, so the generated code matches Debian's python3-protobuf),
and gives a thin raw-bytes gRPC wrapper over python3-grpcio: an independent
gRPC implementation to check our wire format against.
"""
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROTO_ROOT = os.path.join(REPO, "reapi", "proto")

_gen_dir = None


def load_protos():
    """Generate *_pb2 modules once per process and put them on sys.path."""
    global _gen_dir
    if _gen_dir is None:
        _gen_dir = tempfile.mkdtemp(prefix="reapi-py-")
        protos = []
        for root, _, files in os.walk(PROTO_ROOT):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), PROTO_ROOT)
                # The well-known types come from python3-protobuf itself.
                if f.endswith(".proto") and not rel.startswith("google/protobuf/"):
                    protos.append(rel)
        subprocess.run(["protoc", "-I" + PROTO_ROOT, "--python_out=" + _gen_dir]
                       + sorted(protos), check=True)
        sys.path.insert(0, _gen_dir)
    from build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
    from google.bytestream import bytestream_pb2 as bs_pb2
    from google.rpc import status_pb2
    return re_pb2, bs_pb2, status_pb2


def early_outputs_of(op):
    """The distbuild.worker.v1.EarlyOutputs an in-progress Operation
    carries in partial_execution_metadata.auxiliary_metadata, or None.
    Call load_protos() first."""
    from build.bazel.remote.execution.v2 import remote_execution_pb2
    from distbuild.worker.v1 import worker_pb2
    m = remote_execution_pb2.ExecuteOperationMetadata()
    op.metadata.Unpack(m)
    for a in m.partial_execution_metadata.auxiliary_metadata:
        if a.type_url.endswith("/distbuild.worker.v1.EarlyOutputs"):
            e = worker_pb2.EarlyOutputs()
            a.Unpack(e)
            return e
    return None


def digest_of(data):
    return hashlib.sha256(data).hexdigest(), len(data)


class RawChannel:
    """gRPC calls with bytes in and bytes out (no stubs needed)."""

    def __init__(self, target, max_msg=256 << 20):
        import grpc
        self.grpc = grpc
        self.ch = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", max_msg),
            ("grpc.max_send_message_length", max_msg),
        ])

    def unary(self, path, req, timeout=30, metadata=None):
        f = self.ch.unary_unary(path)
        return f(req, timeout=timeout, metadata=metadata)

    def server_stream(self, path, req, timeout=30):
        f = self.ch.unary_stream(path)
        return list(f(req, timeout=timeout))

    def client_stream(self, path, reqs, timeout=60):
        f = self.ch.stream_unary(path)
        return f(iter(reqs), timeout=timeout)

    def close(self):
        self.ch.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """Runs `cargo-distbuild cas run` on a free port in a temp root."""

    def __init__(self, binary, root, extra=()):
        self.binary = binary
        self.root = root
        self.extra = list(extra)
        self.proc = None
        self.port = None

    def start(self, timeout=15):
        port_file = os.path.join(tempfile.mkdtemp(prefix="cas-port-"), "port")
        self.log = open(os.path.join(os.path.dirname(port_file), "log"), "w+")
        self.proc = subprocess.Popen(
            [self.binary, "cas", "run", "--listen", "127.0.0.1:0",
             "--root", self.root, "--port-file", port_file] + self.extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(port_file) and open(port_file).read().strip():
                self.port = int(open(port_file).read().strip())
                return "127.0.0.1:%d" % self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.log.seek(0)
        raise RuntimeError("cas run did not start: " + self.log.read())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()
