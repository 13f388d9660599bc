"""CAS, ByteStream, ActionCache and Capabilities services, driven by an
independent gRPC client (Debian's python3-grpcio with messages generated
from our .proto files). Run: python3 test_cas_service.py BINARY
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "pylib"))
import reapi_py  # noqa: E402

import grpc  # noqa: E402
import zstandard  # noqa: E402

re_pb2, bs_pb2, status_pb2 = reapi_py.load_protos()
BINARY = None

CAS = "/build.bazel.remote.execution.v2.ContentAddressableStorage/"
AC = "/build.bazel.remote.execution.v2.ActionCache/"
CAPS = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"
BS = "/google.bytestream.ByteStream/"
ZSTD = re_pb2.Compressor.ZSTD
IDENTITY = re_pb2.Compressor.IDENTITY


def pbd(data):
    h, n = reapi_py.digest_of(data)
    return re_pb2.Digest(hash=h, size_bytes=n)


def rname(d):
    return "%s/%d" % (d.hash, d.size_bytes)


def source_text(n):
    """Deterministic compressible text that looks like code."""
    line = b"fn compute_%d(x: u64) -> u64 { x.wrapping_mul(%d) ^ 0x5bd1e995 }\n"
    out, i = [], 0
    while sum(map(len, out)) < n:
        out.append(line % (i, i * 7919))
        i += 1
    return b"".join(out)[:n]


class CasServiceTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="cas-svc-")
        self.server = reapi_py.Server(BINARY, self.root)
        self.target = self.server.start()
        self.ch = reapi_py.RawChannel(self.target)

    def tearDown(self):
        self.ch.close()
        rc = self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self.assertEqual(rc, 0, "cas run must exit 0 on SIGTERM")

    # -- helpers --
    def call(self, method, req, resp_cls, **kw):
        raw = self.ch.unary(method, req.SerializeToString(), **kw)
        return resp_cls.FromString(raw)

    def find_missing(self, digests):
        r = self.call(CAS + "FindMissingBlobs",
                      re_pb2.FindMissingBlobsRequest(blob_digests=digests),
                      re_pb2.FindMissingBlobsResponse)
        return [(d.hash, d.size_bytes) for d in r.missing_blob_digests]

    def batch_update(self, blobs, zstd=False):
        reqs = []
        for b in blobs:
            if zstd:
                reqs.append(re_pb2.BatchUpdateBlobsRequest.Request(
                    digest=pbd(b), data=zstandard.compress(b), compressor=ZSTD))
            else:
                reqs.append(re_pb2.BatchUpdateBlobsRequest.Request(
                    digest=pbd(b), data=b))
        return self.call(CAS + "BatchUpdateBlobs",
                         re_pb2.BatchUpdateBlobsRequest(requests=reqs),
                         re_pb2.BatchUpdateBlobsResponse)

    def bs_write(self, name, data, chunk=64 << 10, finish=True, offset=0):
        def gen():
            pos = 0
            first = True
            while True:
                part = data[pos:pos + chunk]
                last = pos + len(part) >= len(data)
                yield bs_pb2.WriteRequest(
                    resource_name=name if first else "",
                    write_offset=offset + pos, data=part,
                    finish_write=finish and last).SerializeToString()
                first = False
                pos += len(part)
                if last:
                    return
        raw = self.ch.client_stream(BS + "Write", gen())
        return bs_pb2.WriteResponse.FromString(raw)

    def bs_read(self, name, offset=0, limit=0):
        msgs = self.ch.server_stream(BS + "Read", bs_pb2.ReadRequest(
            resource_name=name, read_offset=offset,
            read_limit=limit).SerializeToString())
        return b"".join(bs_pb2.ReadResponse.FromString(m).data for m in msgs)

    def assertCode(self, ctx, code):
        self.assertEqual(ctx.exception.code(), code,
                         ctx.exception.details())

    def blob_files(self):
        out = []
        for dirpath, _, files in os.walk(os.path.join(self.root, "cas")):
            out += [os.path.join(dirpath, f) for f in files]
        return out

    # -- tests --
    def test_capabilities(self):
        caps = self.call(CAPS, re_pb2.GetCapabilitiesRequest(),
                         re_pb2.ServerCapabilities)
        cc = caps.cache_capabilities
        self.assertIn(re_pb2.DigestFunction.SHA256, cc.digest_functions)
        self.assertIn(ZSTD, cc.supported_compressors)
        self.assertIn(ZSTD, cc.supported_batch_update_compressors)
        self.assertGreater(cc.max_batch_total_size_bytes, 0)
        self.assertTrue(cc.action_cache_update_capabilities.update_enabled)
        self.assertEqual(caps.low_api_version.major, 2)
        self.assertGreaterEqual(caps.high_api_version.minor, 0)
        # A standalone CAS does not execute.
        self.assertFalse(caps.HasField("execution_capabilities"))

    def test_batch_roundtrip_identity_and_zstd(self):
        blobs = [b"hello", source_text(100000), os.urandom(5000), b""]
        missing = self.find_missing([pbd(b) for b in blobs])
        # The empty blob always exists.
        self.assertEqual(len(missing), 3)
        r = self.batch_update(blobs[:2], zstd=True)
        self.assertTrue(all(x.status.code == 0 for x in r.responses), r)
        r = self.batch_update(blobs[2:3])
        self.assertTrue(all(x.status.code == 0 for x in r.responses), r)
        self.assertEqual(self.find_missing([pbd(b) for b in blobs]), [])
        for comps in ([], [ZSTD]):
            resp = self.call(CAS + "BatchReadBlobs", re_pb2.BatchReadBlobsRequest(
                digests=[pbd(b) for b in blobs], acceptable_compressors=comps),
                re_pb2.BatchReadBlobsResponse)
            self.assertEqual(len(resp.responses), len(blobs))
            for b, item in zip(blobs, resp.responses):
                self.assertEqual(item.status.code, 0)
                data = item.data
                if item.compressor == ZSTD:
                    self.assertIn(ZSTD, comps)
                    data = zstandard.ZstdDecompressor().decompress(
                        data, max_output_size=len(b) + 1)
                self.assertEqual(data, b)
        # The compressible blob is stored compressed at rest.
        sizes = sorted(os.path.getsize(f) for f in self.blob_files())
        self.assertLess(sizes[-1], 100000)

    def test_batch_read_missing_is_per_blob_not_found(self):
        resp = self.call(CAS + "BatchReadBlobs", re_pb2.BatchReadBlobsRequest(
            digests=[pbd(b"nope")]), re_pb2.BatchReadBlobsResponse)
        self.assertEqual(resp.responses[0].status.code,
                         grpc.StatusCode.NOT_FOUND.value[0])

    def test_digest_mismatch_stores_nothing(self):
        bad = re_pb2.BatchUpdateBlobsRequest.Request(
            digest=pbd(b"expected"), data=b"different")
        good = re_pb2.BatchUpdateBlobsRequest.Request(digest=pbd(b"ok"),
                                                      data=b"ok")
        r = self.call(CAS + "BatchUpdateBlobs",
                      re_pb2.BatchUpdateBlobsRequest(requests=[bad, good]),
                      re_pb2.BatchUpdateBlobsResponse)
        self.assertEqual(r.responses[0].status.code,
                         grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertIn("mismatch", r.responses[0].status.message)
        self.assertEqual(r.responses[1].status.code, 0)
        self.assertEqual(self.find_missing([pbd(b"expected")]),
                         [(pbd(b"expected").hash, 8)])
        # Same through ByteStream: INVALID_ARGUMENT and nothing visible.
        d = pbd(b"A" * 200000)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.bs_write("uploads/%s/blobs/%s" % (uuid.uuid4(), rname(d)),
                          b"B" * 200000)
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(len(self.find_missing([d])), 1)
        self.assertEqual(len(self.blob_files()), 1)  # just "ok"

    def test_bytestream_roundtrip(self):
        text = source_text(3 << 20)
        rnd = os.urandom(2 << 20)
        for data, comp in ((text, False), (rnd, False), (text, True),
                           (rnd, True)):
            d = pbd(data)
            if comp:
                name = "uploads/%s/compressed-blobs/zstd/%s" % (uuid.uuid4(),
                                                                rname(d))
                payload = zstandard.compress(data)
            else:
                name = "uploads/%s/blobs/%s" % (uuid.uuid4(), rname(d))
                payload = data
            w = self.bs_write(name, payload)
            self.assertIn(w.committed_size, (len(payload), -1))
            self.assertEqual(self.bs_read("blobs/" + rname(d)), data)
            z = self.bs_read("compressed-blobs/zstd/" + rname(d))
            self.assertEqual(zstandard.ZstdDecompressor().decompressobj()
                             .decompress(z), data)
        # Offsets and limits on plain reads.
        d = pbd(text)
        self.assertEqual(self.bs_read("blobs/" + rname(d), 1000, 5000),
                         text[1000:6000])
        # Writing an existing blob ends at once.
        w = self.bs_write("uploads/%s/blobs/%s" % (uuid.uuid4(), rname(d)),
                          text)
        self.assertEqual(w.committed_size, len(text))
        # Instance names are accepted in front of the resource.
        self.assertEqual(self.bs_read("main/blobs/" + rname(d), 0, 10),
                         text[:10])

    def test_bytestream_resumable_write(self):
        data = source_text(1 << 20)
        d = pbd(data)
        name = "uploads/%s/blobs/%s" % (uuid.uuid4(), rname(d))
        half = len(data) // 2
        # A stream that ends without finish_write keeps what it sent.
        with self.assertRaises(grpc.RpcError):
            self.bs_write(name, data[:half], finish=False)
        q = self.call(BS + "QueryWriteStatus",
                      bs_pb2.QueryWriteStatusRequest(resource_name=name),
                      bs_pb2.QueryWriteStatusResponse)
        self.assertEqual(q.committed_size, half)
        self.assertFalse(q.complete)
        self.assertEqual(len(self.find_missing([d])), 1)
        # Resuming at the wrong offset is refused...
        with self.assertRaises(grpc.RpcError) as ctx:
            self.bs_write(name, data[half + 10:], offset=half + 10)
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        # ...at the committed offset it completes.
        w = self.bs_write(name, data[half:], offset=half)
        self.assertEqual(w.committed_size, len(data))
        self.assertEqual(self.bs_read("blobs/" + rname(d)), data)
        q = self.call(BS + "QueryWriteStatus",
                      bs_pb2.QueryWriteStatusRequest(resource_name=name),
                      bs_pb2.QueryWriteStatusResponse)
        self.assertTrue(q.complete)

    def test_client_disconnect_mid_upload_leaves_nothing(self):
        data = os.urandom(4 << 20)
        d = pbd(data)
        name = "uploads/%s/blobs/%s" % (uuid.uuid4(), rname(d))

        def gen():
            yield bs_pb2.WriteRequest(resource_name=name, write_offset=0,
                                      data=data[:1 << 20]).SerializeToString()
            raise RuntimeError("client dies mid-upload")
        with self.assertRaises(grpc.RpcError):
            self.ch.client_stream(BS + "Write", gen())
        self.assertEqual(len(self.find_missing([d])), 1)
        self.assertEqual(self.blob_files(), [])
        with self.assertRaises(grpc.RpcError) as ctx:
            self.bs_read("blobs/" + rname(d))
        self.assertCode(ctx, grpc.StatusCode.NOT_FOUND)

    def test_get_tree_paged(self):
        f1, f2 = b"leaf one", b"leaf two"
        leaf = re_pb2.Directory(files=[re_pb2.FileNode(name="a.rs",
                                                       digest=pbd(f1))])
        mid = re_pb2.Directory(
            files=[re_pb2.FileNode(name="b.rs", digest=pbd(f2))],
            directories=[re_pb2.DirectoryNode(
                name="leaf", digest=pbd(leaf.SerializeToString()))])
        root = re_pb2.Directory(directories=[
            re_pb2.DirectoryNode(name="m1", digest=pbd(mid.SerializeToString())),
            re_pb2.DirectoryNode(name="m2", digest=pbd(leaf.SerializeToString())),
        ])
        blobs = [x.SerializeToString() for x in (leaf, mid, root)]
        self.batch_update(blobs)
        msgs = self.ch.server_stream(CAS + "GetTree", re_pb2.GetTreeRequest(
            root_digest=pbd(blobs[2]), page_size=1).SerializeToString())
        pages = [re_pb2.GetTreeResponse.FromString(m) for m in msgs]
        dirs = [d for p in pages for d in p.directories]
        self.assertEqual(len(dirs), 3)  # leaf appears once
        self.assertEqual(dirs[0], root)
        self.assertEqual(set(x.SerializeToString() for x in dirs), set(blobs))
        self.assertTrue(all(p.next_page_token for p in pages[:-1]))
        self.assertEqual(pages[-1].next_page_token, "")
        with self.assertRaises(grpc.RpcError) as ctx:
            self.ch.server_stream(CAS + "GetTree", re_pb2.GetTreeRequest(
                root_digest=pbd(b"absent")).SerializeToString())
        self.assertCode(ctx, grpc.StatusCode.NOT_FOUND)

    def test_action_cache(self):
        out = b"compiled output"
        action = pbd(b"an action")
        ar = re_pb2.ActionResult(
            output_files=[re_pb2.OutputFile(path="out/lib.rlib",
                                            digest=pbd(out))],
            exit_code=0, stdout_digest=pbd(b"some stdout"),
            execution_metadata=re_pb2.ExecutedActionMetadata(worker="w1"))
        with self.assertRaises(grpc.RpcError) as ctx:
            self.call(AC + "GetActionResult", re_pb2.GetActionResultRequest(
                action_digest=action), re_pb2.ActionResult)
        self.assertCode(ctx, grpc.StatusCode.NOT_FOUND)
        # Outputs must be in the CAS before the result is accepted.
        with self.assertRaises(grpc.RpcError) as ctx:
            self.call(AC + "UpdateActionResult",
                      re_pb2.UpdateActionResultRequest(action_digest=action,
                                                       action_result=ar),
                      re_pb2.ActionResult)
        self.assertCode(ctx, grpc.StatusCode.FAILED_PRECONDITION)
        self.batch_update([out, b"some stdout"])
        got = self.call(AC + "UpdateActionResult",
                        re_pb2.UpdateActionResultRequest(action_digest=action,
                                                         action_result=ar),
                        re_pb2.ActionResult)
        self.assertEqual(got, ar)
        got = self.call(AC + "GetActionResult", re_pb2.GetActionResultRequest(
            action_digest=action, inline_stdout=True), re_pb2.ActionResult)
        self.assertEqual(got.stdout_raw, b"some stdout")
        got.ClearField("stdout_raw")
        self.assertEqual(got, ar)
        # Remove the output blob behind the server's back and restart: the
        # index is rebuilt and the stale result is a miss, not a broken hit.
        self.ch.close()
        self.assertEqual(self.server.stop(), 0)
        h = pbd(out).hash
        victims = [f for f in self.blob_files()
                   if os.path.basename(f).startswith(h)]
        self.assertEqual(len(victims), 1)
        os.unlink(victims[0])
        self.target = self.server.start()
        self.ch = reapi_py.RawChannel(self.target)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.call(AC + "GetActionResult", re_pb2.GetActionResultRequest(
                action_digest=action), re_pb2.ActionResult)
        self.assertCode(ctx, grpc.StatusCode.NOT_FOUND)

    def test_bad_input(self):
        # Malformed protobuf.
        for m in ("FindMissingBlobs", "BatchUpdateBlobs", "BatchReadBlobs"):
            with self.assertRaises(grpc.RpcError) as ctx:
                self.ch.unary(CAS + m, b"\xff\xff\xff\xff\x0f\x01")
            self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.ch.unary(AC + "GetActionResult", b"\x12\x05abc")
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        # Bad digests.
        with self.assertRaises(grpc.RpcError) as ctx:
            self.find_missing([re_pb2.Digest(hash="XYZ", size_bytes=1)])
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        # Unknown method.
        with self.assertRaises(grpc.RpcError) as ctx:
            self.ch.unary(CAS + "NoSuchMethod", b"")
        self.assertCode(ctx, grpc.StatusCode.UNIMPLEMENTED)
        # Bad resource names.
        for name in ("", "blobs/abc/12", "blobs/" + "a" * 64,
                     "compressed-blobs/brotli/%s/1" % ("a" * 64),
                     "blobs/%s/-1" % ("a" * 64), "../blobs/x/1"):
            with self.assertRaises(grpc.RpcError) as ctx:
                self.bs_read(name)
            self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.bs_write("blobs/%s/5" % ("a" * 64), b"hello")
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        # read_offset past the end.
        d = pbd(b"0123456789")
        self.batch_update([b"0123456789"])
        with self.assertRaises(grpc.RpcError) as ctx:
            self.bs_read("blobs/" + rname(d), offset=11)
        self.assertCode(ctx, grpc.StatusCode.OUT_OF_RANGE)
        # Oversize message (over the server's 64 MiB limit).
        with self.assertRaises(grpc.RpcError) as ctx:
            self.ch.unary(CAS + "FindMissingBlobs", b"\x0a" + b"\x00" * (65 << 20))
        self.assertCode(ctx, grpc.StatusCode.RESOURCE_EXHAUSTED)
        # A batch over the advertised limit is refused as a whole.
        big = os.urandom(5 << 20)
        with self.assertRaises(grpc.RpcError) as ctx:
            self.batch_update([big])
        self.assertCode(ctx, grpc.StatusCode.INVALID_ARGUMENT)
        # Corrupt zstd in a batch: per-blob INVALID_ARGUMENT, nothing stored.
        r = self.call(CAS + "BatchUpdateBlobs", re_pb2.BatchUpdateBlobsRequest(
            requests=[re_pb2.BatchUpdateBlobsRequest.Request(
                digest=pbd(b"zzz"), data=b"not zstd", compressor=ZSTD)]),
            re_pb2.BatchUpdateBlobsResponse)
        self.assertEqual(r.responses[0].status.code,
                         grpc.StatusCode.INVALID_ARGUMENT.value[0])
        self.assertEqual(len(self.find_missing([pbd(b"zzz")])), 1)
        # The server is still healthy after all of that.
        self.assertEqual(self.bs_read("blobs/" + rname(d)), b"0123456789")


class DiskFullTest(unittest.TestCase):
    def test_disk_full(self):
        mnt = tempfile.mkdtemp(prefix="cas-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                            mnt], capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a small tmpfs here: " +
                          r.stderr.decode())
        server = reapi_py.Server(BINARY, os.path.join(mnt, "root"))
        try:
            ch = reapi_py.RawChannel(server.start())
            data = os.urandom(3 << 20)
            d = pbd(data)
            with self.assertRaises(grpc.RpcError) as ctx:
                def gen():
                    for i in range(0, len(data), 256 << 10):
                        yield bs_pb2.WriteRequest(
                            resource_name="uploads/%s/blobs/%s" % (
                                uuid.uuid4(), rname(d)) if i == 0 else "",
                            write_offset=i, data=data[i:i + (256 << 10)],
                            finish_write=i + (256 << 10) >= len(data)
                        ).SerializeToString()
                ch.client_stream(BS + "Write", gen())
            self.assertEqual(ctx.exception.code(),
                             grpc.StatusCode.RESOURCE_EXHAUSTED,
                             ctx.exception.details())
            # Nothing partial is visible and the store still works.
            fm = re_pb2.FindMissingBlobsResponse.FromString(ch.unary(
                CAS + "FindMissingBlobs", re_pb2.FindMissingBlobsRequest(
                    blob_digests=[d]).SerializeToString()))
            self.assertEqual(len(fm.missing_blob_digests), 1)
            small = b"still works"
            r = re_pb2.BatchUpdateBlobsResponse.FromString(ch.unary(
                CAS + "BatchUpdateBlobs", re_pb2.BatchUpdateBlobsRequest(
                    requests=[re_pb2.BatchUpdateBlobsRequest.Request(
                        digest=pbd(small), data=small)]).SerializeToString()))
            self.assertEqual(r.responses[0].status.code, 0)
            ch.close()
        finally:
            server.stop()
            subprocess.run(["umount", mnt])
            os.rmdir(mnt)


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
