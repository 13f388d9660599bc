"""End-to-end harness: a real scheduler and real workers as processes,
driven by an independent REAPI client (Debian's python3-grpcio, messages
generated from our own .proto files by tests/pylib/reapi_py.py)."""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "pylib"))
import reapi_py  # noqa: E402
from test_pki import TestPki  # noqa: E402,F401

import grpc  # noqa: E402

warnings.simplefilter("ignore", ResourceWarning)

re_pb2, bs_pb2, status_pb2 = reapi_py.load_protos()
from distbuild.worker.v1 import worker_pb2  # noqa: E402,F401
from google.longrunning import operations_pb2  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402,F401

EXEC = "/build.bazel.remote.execution.v2.Execution/"
CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
AC = "/build.bazel.remote.execution.v2.ActionCache/"
BS = "/google.bytestream.ByteStream/"


def pbd(data):
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(),
                         size_bytes=len(data))


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _wait_file(path, proc, timeout, what, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and _read(path):
            return _read(path)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("%s did not start:\n%s" % (what, _read(log)))


def http_get(port, path, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=timeout) as r:
        return r.status, r.read().decode()


def metric(port, name):
    _, text = http_get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


class Scheduler:
    def __init__(self, binary, workdir, extra=()):
        self.binary = binary
        self.dir = workdir
        self.cas_dir = os.path.join(workdir, "sched-cas")
        self.extra = list(extra)
        self.proc = None
        self.port = 0

    def start(self, port=0, timeout=15):
        pf = os.path.join(self.dir, "sched.port")
        hpf = os.path.join(self.dir, "sched.hport")
        for f in (pf, hpf):
            if os.path.exists(f):
                os.unlink(f)
        self.logname = os.path.join(self.dir, "sched.log")
        log = open(self.logname, "a")
        self.proc = subprocess.Popen(
            [self.binary, "scheduler", "run", "--listen",
             "127.0.0.1:%d" % port, "--http-listen", "127.0.0.1:0",
             "--cas-dir", self.cas_dir, "--port-file", pf,
             "--http-port-file", hpf] + self.extra,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_file(hpf, self.proc, timeout, "scheduler", self.logname)
        self.port = int(_wait_file(pf, self.proc, timeout, "scheduler",
                                   self.logname))
        self.http_port = int(_read(hpf))
        # The test certificate names localhost, which TLS clients verify.
        self.target = ("grpcs://localhost:%d" % self.port
                       if "--tls-cert" in self.extra
                       else "127.0.0.1:%d" % self.port)
        return self.target

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        return _read(self.logname)


class Worker:
    def __init__(self, binary, workdir, wid, target, extra=()):
        self.binary = binary
        self.id = wid
        self.target = target
        self.cache_dir = os.path.join(workdir, "cache-" + wid)
        self.logname = os.path.join(workdir, wid + ".log")
        self.extra = list(extra)
        self.proc = None
        self.port = reapi_py.free_port()

    def start(self, wait_connected=True, timeout=20):
        log = open(self.logname, "a")
        self.proc = subprocess.Popen(
            [self.binary, "worker", "run", "--id", self.id, "--port",
             str(self.port), "--scheduler", self.target, "--cache-dir",
             self.cache_dir] + self.extra,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("worker exited:\n" + self.log())
            try:
                if not wait_connected or self.metric(
                        "distbuild_worker_connected") == 1:
                    return
            except (OSError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError("worker did not connect:\n" + self.log())

    def metric(self, name):
        return metric(self.port, name)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        return _read(self.logname)


class Cluster:
    """A scheduler and n workers in a temp dir."""

    def __init__(self, binary, nworkers=2, worker_extra=(), sched_extra=(),
                 client_creds=None):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="e2e-", dir=os.environ.get(
            "E2E_TMP", os.getcwd()))
        os.chmod(self.dir, 0o755)
        self.sched = Scheduler(binary, self.dir, sched_extra)
        self.sched.start()
        self.workers = []
        for i in range(nworkers):
            w = Worker(binary, self.dir, "worker-%d" % (i + 1),
                       self.sched.target, worker_extra)
            w.start()
            self.workers.append(w)
        self.client = Client(self.sched.target, client_creds)

    def executions(self):
        return sum(w.metric("distbuild_worker_actions_run_total")
                   for w in self.workers if w.proc)

    def close(self, keep=False):
        self.client.close()
        for w in self.workers:
            w.stop()
        self.sched.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dump(self):
        out = ["--- scheduler ---", self.sched.log()]
        for w in self.workers:
            out += ["--- %s ---" % w.id, w.log()]
        return "\n".join(out)


class Tree:
    """Builds a REAPI input tree from a nested dict:
    name -> bytes | ("x", bytes) executable | ("link", target) | dict."""

    def __init__(self, spec):
        self.blobs = {}
        self.root = self._dir(spec)

    def _dir(self, spec):
        d = re_pb2.Directory()
        for name in sorted(spec):
            v = spec[name]
            if isinstance(v, dict):
                cd = self._dir(v)
                d.directories.add(name=name, digest=cd)
            elif isinstance(v, tuple) and v[0] == "link":
                d.symlinks.add(name=name, target=v[1])
            else:
                exe = isinstance(v, tuple)
                data = v[1] if exe else v
                self.blobs[pbd(data).hash] = data
                d.files.add(name=name, digest=pbd(data), is_executable=exe)
        b = d.SerializeToString()
        self.blobs[pbd(b).hash] = b
        return pbd(b)


def tree_from_host(path, blobs, paths=None):
    """Directory digest of a host directory (files recorded as paths in
    `paths` by hash, so large files are streamed, not held)."""
    d = re_pb2.Directory()
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.islink(p):
            d.symlinks.add(name=name, target=os.readlink(p))
        elif os.path.isdir(p):
            d.directories.add(name=name, digest=tree_from_host(p, blobs,
                                                               paths))
        elif os.path.isfile(p):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            dg = re_pb2.Digest(hash=h.hexdigest(),
                               size_bytes=os.path.getsize(p))
            paths[dg.hash] = (p, dg.size_bytes)
            d.files.add(name=name, digest=dg,
                        is_executable=os.access(p, os.X_OK))
    b = d.SerializeToString()
    blobs[pbd(b).hash] = b
    return pbd(b)


class Client:
    def __init__(self, target, creds=None):
        """creds: grpc channel credentials for a grpcs:// target."""
        self.target = target
        opts = [("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20)]
        if target.startswith("grpcs://"):
            self.ch = grpc.secure_channel(target[8:], creds, options=opts)
        else:
            self.ch = grpc.insecure_channel(target, options=opts)

    def close(self):
        self.ch.close()

    def unary(self, path, req, resp_cls, timeout=30):
        raw = self.ch.unary_unary(path)(req.SerializeToString(),
                                        timeout=timeout)
        return resp_cls.FromString(raw)

    def find_missing(self, digests):
        r = self.unary(CAS + "FindMissingBlobs",
                       re_pb2.FindMissingBlobsRequest(blob_digests=digests),
                       re_pb2.FindMissingBlobsResponse)
        return set(d.hash for d in r.missing_blob_digests)

    def upload(self, blobs):
        """blobs: list of bytes."""
        batch, size = [], 0
        for b in blobs:
            if len(b) > (2 << 20):
                self.write_stream(pbd(b), [b])
                continue
            batch.append(b)
            size += len(b)
            if size > (2 << 20):
                self._batch(batch)
                batch, size = [], 0
        if batch:
            self._batch(batch)

    def _batch(self, blobs):
        reqs = [re_pb2.BatchUpdateBlobsRequest.Request(digest=pbd(b), data=b)
                for b in blobs]
        r = self.unary(CAS + "BatchUpdateBlobs",
                       re_pb2.BatchUpdateBlobsRequest(requests=reqs),
                       re_pb2.BatchUpdateBlobsResponse)
        for x in r.responses:
            assert x.status.code == 0, x.status

    def write_stream(self, dg, chunks):
        name = "uploads/%s/blobs/%s/%d" % (uuid.uuid4(), dg.hash,
                                           dg.size_bytes)

        def gen():
            off = 0
            first = True
            for c in chunks:
                for i in range(0, max(len(c), 1), 1 << 20):
                    part = c[i:i + (1 << 20)]
                    yield bs_pb2.WriteRequest(
                        resource_name=name if first else "",
                        write_offset=off, data=part).SerializeToString()
                    first = False
                    off += len(part)
            yield bs_pb2.WriteRequest(resource_name=name if first else "",
                                      write_offset=off,
                                      finish_write=True).SerializeToString()
        self.ch.stream_unary(BS + "Write")(gen(), timeout=300)

    def upload_files(self, paths):
        """paths: hash -> (host path, size); uploads what is missing."""
        digests = [re_pb2.Digest(hash=h, size_bytes=s)
                   for h, (p, s) in paths.items()]
        missing = self.find_missing(digests)
        small = []
        for h in missing:
            p, s = paths[h]
            if s > (2 << 20):
                def chunks(p=p):
                    with open(p, "rb") as f:
                        for c in iter(lambda: f.read(1 << 20), b""):
                            yield c
                self.write_stream(re_pb2.Digest(hash=h, size_bytes=s),
                                  chunks())
            else:
                with open(p, "rb") as f:
                    small.append(f.read())
        self.upload(small)

    def read_blob(self, dg):
        if dg.size_bytes == 0:
            return b""
        r = self.unary(CAS + "BatchReadBlobs",
                       re_pb2.BatchReadBlobsRequest(digests=[dg]),
                       re_pb2.BatchReadBlobsResponse)
        assert r.responses[0].status.code == 0, r.responses[0].status
        return r.responses[0].data

    def make_action(self, argv, tree=None, outputs=(), env=None, wd="",
                    platform=None, timeout_s=None, salt=None,
                    do_not_cache=False, upload=True, output_files=(),
                    output_dirs=(), cmd_platform=None):
        tree = tree if tree is not None else Tree({})
        cmd = re_pb2.Command(arguments=list(argv), output_paths=list(outputs),
                             output_files=list(output_files),
                             output_directories=list(output_dirs),
                             working_directory=wd)
        for k in sorted(env or {}):
            cmd.environment_variables.add(name=k, value=env[k])
        for k in sorted(cmd_platform or {}):
            cmd.platform.properties.add(name=k, value=cmd_platform[k])
        cmdb = cmd.SerializeToString()
        act = re_pb2.Action(command_digest=pbd(cmdb),
                            input_root_digest=tree.root,
                            do_not_cache=do_not_cache,
                            salt=(salt if salt is not None
                                  else uuid.uuid4().hex).encode())
        if platform:
            for k in sorted(platform):
                act.platform.properties.add(name=k, value=platform[k])
        if timeout_s is not None:
            act.timeout.seconds = timeout_s
        actb = act.SerializeToString()
        if upload:
            self.upload([cmdb, actb] + list(tree.blobs.values()))
        return pbd(actb), {"command": cmdb, "action": actb}

    def execute(self, digest, skip_cache_lookup=False, timeout=60,
                raise_unavailable=False):
        """Execute to the end; returns the final ExecuteResponse. A gRPC
        error on the call itself (e.g. INVALID_ARGUMENT before an Operation
        exists) is folded into ExecuteResponse.status, details included;
        UNAVAILABLE / DEADLINE_EXCEEDED on the call are raised when asked."""
        req = re_pb2.ExecuteRequest(action_digest=digest,
                                    skip_cache_lookup=skip_cache_lookup)
        last = None
        try:
            for m in self.ch.unary_stream(EXEC + "Execute")(
                    req.SerializeToString(), timeout=timeout):
                last = operations_pb2.Operation.FromString(m)
        except grpc.RpcError as e:
            if raise_unavailable and e.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            resp = re_pb2.ExecuteResponse()
            resp.status.code = e.code().value[0]
            resp.status.message = e.details() or ""
            for k, v in (e.trailing_metadata() or ()):
                if k == "grpc-status-details-bin":
                    st = status_pb2.Status.FromString(v)
                    resp.status.details.extend(st.details)
            return resp
        assert last is not None and last.done, last
        resp = re_pb2.ExecuteResponse()
        last.response.Unpack(resp)
        return resp

    def get_action_result(self, digest):
        return self.unary(AC + "GetActionResult",
                          re_pb2.GetActionResultRequest(action_digest=digest),
                          re_pb2.ActionResult)

    def output_file(self, result, path):
        for f in result.output_files:
            if f.path == path:
                return self.read_blob(f.digest)
        raise KeyError(path)

    def output_tree(self, result, path):
        """{relpath: bytes} of an output directory."""
        for d in result.output_directories:
            if d.path == path:
                tree = re_pb2.Tree.FromString(self.read_blob(d.tree_digest))
                dirs = {pbd(c.SerializeToString()).hash: c
                        for c in tree.children}
                out = {}

                def walk(dm, pre):
                    for f in dm.files:
                        out[pre + f.name] = self.read_blob(f.digest)
                    for sd in dm.directories:
                        walk(dirs[sd.digest.hash], pre + sd.name + "/")
                walk(tree.root, "")
                return out, d
        raise KeyError(path)


def check(cond, msg, cluster=None):
    if not cond:
        if cluster is not None:
            print(cluster.dump())
        raise AssertionError(msg)

