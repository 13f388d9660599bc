"""Test harness for the scheduler: runs `cargo-distbuild scheduler run`,
builds actions from our own protos, and provides a scripted worker that
speaks distbuild.worker.v1 (Connect / Heartbeat / Complete) so scheduler
logic can be tested deterministically without a sandbox.
"""
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "pylib"))
import reapi_py  # noqa: E402

import grpc  # noqa: E402

warnings.simplefilter("ignore", ResourceWarning)

re_pb2, bs_pb2, status_pb2 = reapi_py.load_protos()
from distbuild.worker.v1 import worker_pb2  # noqa: E402
from google.longrunning import operations_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402

EXEC = "/build.bazel.remote.execution.v2.Execution/"
CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
AC = "/build.bazel.remote.execution.v2.ActionCache/"
CAPS = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"
WS = "/distbuild.worker.v1.WorkerService/"
REQMETA = "build.bazel.remote.execution.v2.requestmetadata-bin"
STAGE = re_pb2.ExecutionStage


def pbd(data):
    h, n = reapi_py.digest_of(data)
    return re_pb2.Digest(hash=h, size_bytes=n)


def platform(**props):
    return re_pb2.Platform(properties=[
        re_pb2.Platform.Property(name=k, value=v)
        for k, v in sorted(props.items())])


def _read(path):
    with open(path) as f:
        return f.read().strip()


class Scheduler:
    """`cargo-distbuild scheduler run` on free ports in a temp dir."""

    def __init__(self, binary, extra=()):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="sched-test-")
        self.extra = list(extra)
        self.proc = None

    def start(self, timeout=15):
        pf = os.path.join(self.dir, "port")
        hpf = os.path.join(self.dir, "hport")
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen(
            [self.binary, "scheduler", "run", "--listen", "127.0.0.1:0",
             "--http-listen", "127.0.0.1:0", "--cas-dir",
             os.path.join(self.dir, "cas"), "--port-file", pf,
             "--http-port-file", hpf] + self.extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(hpf) and _read(hpf):
                self.port = int(_read(pf))
                self.http_port = int(_read(hpf))
                self.target = "127.0.0.1:%d" % self.port
                return self.target
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("scheduler did not start: " + self.output())

    def stop(self):
        rc = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc:
            rc = self.proc.returncode
        self.proc = None
        return rc

    def output(self):
        with open(self.log.name) as f:
            return f.read()

    def close(self):
        self.log.close()

    def http(self, path):
        with urllib.request.urlopen(
                "http://127.0.0.1:%d%s" % (self.http_port, path),
                timeout=5) as r:
            return r.status, r.read().decode()

    def metric(self, name):
        _, text = self.http("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise KeyError(name)


class Client:
    """REAPI client side: uploads, actions, Execute, WaitExecution."""

    def __init__(self, target):
        self.ch = grpc.insecure_channel(target)

    def close(self):
        self.ch.close()

    def unary(self, path, req, resp_cls, timeout=10):
        raw = self.ch.unary_unary(path)(req.SerializeToString(),
                                        timeout=timeout)
        return resp_cls.FromString(raw)

    def upload(self, blobs):
        reqs = [re_pb2.BatchUpdateBlobsRequest.Request(digest=pbd(b), data=b)
                for b in blobs]
        r = self.unary(CAS + "BatchUpdateBlobs",
                       re_pb2.BatchUpdateBlobsRequest(requests=reqs),
                       re_pb2.BatchUpdateBlobsResponse)
        for x in r.responses:
            assert x.status.code == 0, x.status

    def make_action(self, argv=("rustc", "--crate-name", "x"),
                    files=None, outputs=("out",), plat=None,
                    action_plat=None, do_not_cache=False, timeout_s=None,
                    skip_upload=(), salt=None):
        """Build and upload Command, input tree and Action. Blobs whose
        names appear in skip_upload ("command", "action", "root", or a file
        name) are left out. Returns (action_digest, {name: digest})."""
        files = files if files is not None else {
            "main.rs": b"fn main() {}\n", "lib.rs": b"pub fn f() {}\n"}
        sub = re_pb2.Directory(files=[
            re_pb2.FileNode(name="inner.rs", digest=pbd(b"// inner\n"))])
        subb = sub.SerializeToString()
        root = re_pb2.Directory(
            files=[re_pb2.FileNode(name=n, digest=pbd(d))
                   for n, d in sorted(files.items())],
            directories=[re_pb2.DirectoryNode(name="src", digest=pbd(subb))])
        rootb = root.SerializeToString()
        cmd = re_pb2.Command(arguments=list(argv), output_paths=list(outputs))
        if plat is not None:
            cmd.platform.CopyFrom(plat)
        cmdb = cmd.SerializeToString()
        act = re_pb2.Action(command_digest=pbd(cmdb),
                            input_root_digest=pbd(rootb),
                            do_not_cache=do_not_cache,
                            salt=(salt or uuid.uuid4().hex).encode())
        if timeout_s is not None:
            act.timeout.seconds = timeout_s
        if action_plat is not None:
            act.platform.CopyFrom(action_plat)
        actb = act.SerializeToString()
        named = {"command": cmdb, "root": rootb, "action": actb,
                 "inner.rs": b"// inner\n", "src": subb}
        named.update(files)
        self.upload([b for n, b in named.items() if n not in skip_upload])
        return pbd(actb), {n: pbd(b) for n, b in named.items()}

    def execute_call(self, digest, skip_cache_lookup=False, invocation=None,
                     timeout=30):
        md = None
        if invocation is not None:
            md = [(REQMETA, re_pb2.RequestMetadata(
                tool_invocation_id=invocation).SerializeToString())]
        req = re_pb2.ExecuteRequest(action_digest=digest,
                                    skip_cache_lookup=skip_cache_lookup)
        return self.ch.unary_stream(EXEC + "Execute")(
            req.SerializeToString(), timeout=timeout, metadata=md)

    def execute(self, digest, **kw):
        """Run Execute to the end; returns the list of Operations."""
        return [operations_pb2.Operation.FromString(m)
                for m in self.execute_call(digest, **kw)]

    def wait_call(self, name, timeout=30):
        req = re_pb2.WaitExecutionRequest(name=name)
        return self.ch.unary_stream(EXEC + "WaitExecution")(
            req.SerializeToString(), timeout=timeout)


def stage_of(op):
    md = re_pb2.ExecuteOperationMetadata()
    assert op.metadata.Unpack(md)
    return md.stage


early_of = reapi_py.early_outputs_of


def response_of(op):
    assert op.done
    r = re_pb2.ExecuteResponse()
    assert op.response.type_url == (
        "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse")
    assert op.response.Unpack(r)
    return r


def status_details(err):
    """google.rpc.Status from grpc-status-details-bin of an RpcError."""
    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            return status_pb2.Status.FromString(v)
    return None


class FakeWorker:
    """A scripted worker. mode "auto": answer every assignment with
    exit_code (after delay); mode "manual": the test calls complete()."""

    def __init__(self, target, worker_id, plat=None, slots=1, mode="auto",
                 exit_code=0, delay=0.0, status_code=0, heartbeat=True):
        self.target = target
        self.worker_id = worker_id
        self.plat = plat if plat is not None else platform(OSFamily="linux")
        self.slots = slots
        self.mode = mode
        self.exit_code = exit_code
        self.delay = delay
        self.status_code = status_code
        self.heartbeat = heartbeat
        self.assignments = []       # every Assignment received, in order
        self.cancels = []           # lease ids the scheduler cancelled
        self.q = queue.Queue()      # Assignments for manual mode
        self.running = set()
        self.hb_interval = None
        self.stopped = threading.Event()
        self.closed_code = None
        self.lock = threading.Lock()

    def start(self):
        self.ch = grpc.insecure_channel(self.target)
        self.session = uuid.uuid4().hex
        req = worker_pb2.ConnectRequest(
            worker_id=self.worker_id, session_id=self.session,
            platform=self.plat, slots=self.slots,
            sandbox_features="fake (test harness)")
        self.stream = self.ch.unary_stream(WS + "Connect")(
            req.SerializeToString())
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._beat, daemon=True).start()
        assert self.ready.wait(5), "no first WorkerCommand"
        return self

    def _read(self):
        try:
            for raw in self.stream:
                cmd = worker_pb2.WorkerCommand.FromString(raw)
                if cmd.heartbeat_interval_ms:
                    self.hb_interval = cmd.heartbeat_interval_ms
                self.ready.set()
                if cmd.WhichOneof("command") == "cancel_lease_id":
                    with self.lock:
                        self.cancels.append(cmd.cancel_lease_id)
                        self.running.discard(cmd.cancel_lease_id)
                if cmd.HasField("assign"):
                    a = cmd.assign
                    with self.lock:
                        self.assignments.append(a)
                        self.running.add(a.lease_id)
                    if self.mode == "auto":
                        threading.Thread(target=self._auto, args=(a,),
                                         daemon=True).start()
                    else:
                        self.q.put(a)
        except grpc.RpcError as e:
            self.closed_code = e.code()
        self.ready.set()

    def _beat(self):
        while not self.stopped.is_set():
            time.sleep((self.hb_interval or 200) / 1000.0)
            if self.stopped.is_set() or not self.heartbeat:
                continue
            with self.lock:
                ids = sorted(self.running)
            try:
                self.ch.unary_unary(WS + "Heartbeat")(
                    worker_pb2.HeartbeatRequest(
                        worker_id=self.worker_id, session_id=self.session,
                        lease_ids=ids).SerializeToString(), timeout=5)
            except grpc.RpcError:
                pass

    def _auto(self, a):
        if self.delay:
            time.sleep(self.delay)
        self.complete(a, exit_code=self.exit_code,
                      status_code=self.status_code)

    def next_assignment(self, timeout=10):
        return self.q.get(timeout=timeout)

    def complete(self, a, exit_code=0, status_code=0, message=""):
        out = ("output of %s" % a.action_digest.hash).encode()
        so = ("stdout %s" % a.lease_id).encode()
        Client.upload(self, [out, so])
        res = re_pb2.ActionResult(
            exit_code=exit_code,
            output_files=[re_pb2.OutputFile(path="out", digest=pbd(out))],
            stdout_digest=pbd(so))
        res.execution_metadata.worker = self.worker_id
        resp = re_pb2.ExecuteResponse(result=res)
        resp.status.code = status_code
        resp.status.message = message
        with self.lock:
            self.running.discard(a.lease_id)
        self.ch.unary_unary(WS + "Complete")(worker_pb2.CompleteRequest(
            worker_id=self.worker_id, session_id=self.session,
            lease_id=a.lease_id, response=resp).SerializeToString(),
            timeout=10)

    def progress(self, a, files, stderr_prefix, upload=True, session=None,
                 inline=None):
        """Send WorkerService.Progress with EarlyOutputs for lease a;
        files: {path: bytes} (uploaded first unless upload=False).
        inline: {path: bytes} sent as OutputFile.contents instead (the
        digest is still that of files[path])."""
        if upload and files and not inline:
            Client.upload(self, list(files.values()))
        inline = inline or {}
        early = worker_pb2.EarlyOutputs(
            stderr_prefix=stderr_prefix,
            files=[re_pb2.OutputFile(path=p, digest=pbd(b),
                                     contents=inline.get(p, b""))
                   for p, b in sorted(files.items())])
        return self.unary(WS + "Progress", worker_pb2.ProgressRequest(
            worker_id=self.worker_id,
            session_id=self.session if session is None else session,
            lease_id=a.lease_id, early=early), worker_pb2.ProgressResponse)

    def unary(self, path, req, resp_cls, timeout=10):
        return Client.unary(self, path, req, resp_cls, timeout)

    def drop(self):
        """Die: close the stream and stop heartbeating."""
        self.stopped.set()
        self.stream.cancel()
        self.ch.close()

    def stop(self):
        self.drop()
