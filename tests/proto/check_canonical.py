#!/usr/bin/python3
"""Cross-check protobuf-c encodings against Python protobuf.

Python's encoder always writes fields in field-number order, which is the
REAPI canonical form. This script builds the same messages as
canonical_gen.c, independently, and requires:
  1. C bytes == Python bytes, and the C digest == hashlib SHA-256/size;
  2. Python's bytes parse in C and re-encode to the very same bytes;
  3. C's bytes parse in Python into an equal message.
Any differing byte fails the test (exit 1).

Run with Debian's /usr/bin/python3 (python3-protobuf); modules are generated
from reapi/proto at test time with /usr/bin/protoc. The google/protobuf
well-known types are not regenerated: Python's own copies are used, which
also proves ours are wire-identical to them.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

PROTOS = [
    "google/rpc/code.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "google/longrunning/operations.proto",
    "google/bytestream/bytestream.proto",
    "build/bazel/semver/semver.proto",
    "build/bazel/remote/execution/v2/remote_execution.proto",
]


def generate(protoc, proto_root, out):
    subprocess.run([protoc, "-I" + proto_root, "--python_out=" + out] + PROTOS,
                   check=True)
    # "build" gets real packages so no other "build" on sys.path can shadow
    # it; "google" must stay a namespace package to merge with
    # google.protobuf.
    for d in ["build", "build/bazel", "build/bazel/remote",
              "build/bazel/remote/execution", "build/bazel/remote/execution/v2",
              "build/bazel/semver"]:
        open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def ser(m):
    # deterministic only affects map entry order (sorted by key).
    return m.SerializeToString(deterministic=True)


def digest_str(data):
    return "%s/%d" % (hashlib.sha256(data).hexdigest(), len(data))


def build_messages():
    from google.protobuf import any_pb2
    from google.rpc import status_pb2, error_details_pb2
    from google.longrunning import operations_pb2
    from google.bytestream import bytestream_pb2
    from build.bazel.remote.execution.v2 import remote_execution_pb2 as re

    def blob_digest(content):
        if isinstance(content, str):
            content = content.encode()
        return re.Digest(hash=hashlib.sha256(content).hexdigest(),
                         size_bytes=len(content))

    def msg_digest(m):
        b = ser(m)
        return re.Digest(hash=hashlib.sha256(b).hexdigest(), size_bytes=len(b))

    def any_of(m):
        return any_pb2.Any(type_url="type.googleapis.com/" +
                           m.DESCRIPTOR.full_name, value=ser(m))

    out = []  # (label, message) in the C program's order

    # Directories and tree.
    src = re.Directory(files=[
        re.FileNode(name="lib.rs", digest=blob_digest("pub fn f() {}\n")),
        re.FileNode(name="main.rs",
                    digest=blob_digest('fn main() { println!("hi"); }\n')),
    ])
    out.append(("dir_src", src))

    root = re.Directory()
    root.files.add(name="Cargo.toml",
                   digest=blob_digest('[package]\nname = "demo"\n'))
    sh = root.files.add(name="build.sh",
                        digest=blob_digest("#!/bin/sh\nexit 0\n"),
                        is_executable=True)
    sh.node_properties.mtime.seconds = 1700000000
    sh.node_properties.mtime.nanos = 123456789
    sh.node_properties.unix_mode.value = 0o755
    root.directories.add(name="src", digest=msg_digest(src))
    root.symlinks.add(name="current", target="src/main.rs")
    up = root.symlinks.add(name="up", target="../outside/\u00e9t\u00e9")
    up.node_properties.unix_mode.SetInParent()  # present, value 0
    root.node_properties.properties.add(name="owner", value="root")
    root.node_properties.properties.add(name="xattr.user.tag", value="")
    root.node_properties.mtime.seconds = -1
    out.append(("dir_root", root))

    empty = re.Directory()
    out.append(("dir_empty", empty))
    out.append(("tree", re.Tree(root=root, children=[src])))

    # Commands.
    path_env = re.Command.EnvironmentVariable(name="PATH", value="/usr/bin:/bin")
    cmd_full = re.Command(
        arguments=["/opt/rust/bin/rustc", "--crate-name", "demo",
                   "--edition=2021", "src/main.rs", "-C", "opt-level=3",
                   "--cfg", 'feature="d\u00e9j\u00e0"'],
        environment_variables=[
            re.Command.EnvironmentVariable(name="CARGO_PKG_NAME", value="demo"),
            re.Command.EnvironmentVariable(name="EMPTY", value=""),
            path_env,
        ],
        output_files=["target/debug/demo"],
        output_directories=["", "target/debug/deps"],
        output_paths=["target/debug/demo", "target/debug/deps"],
        platform=re.Platform(properties=[
            re.Platform.Property(name="OSFamily", value="linux"),
            re.Platform.Property(name="container-image",
                                 value="docker://rust@sha256:00ff"),
        ]),
        working_directory="work/crate",
        output_node_properties=["mtime", "unix_mode"],
        output_directory_format=re.Command.DIRECTORY_ONLY,
    )
    out.append(("command_full", cmd_full))
    cmd_min = re.Command(arguments=["rustc", "-vV"],
                         environment_variables=[path_env],
                         output_paths=["out"])
    out.append(("command_min", cmd_min))

    # Actions.
    action_full = re.Action(
        command_digest=msg_digest(cmd_full),
        input_root_digest=msg_digest(root),
        do_not_cache=True,
        salt=bytes([0x00, 0xFF, 0x10, 0x80, 0x7F]),
        platform=re.Platform(
            properties=[re.Platform.Property(name="pool", value="rust")]),
    )
    action_full.timeout.seconds = 600
    action_full.timeout.nanos = 5
    out.append(("action_full", action_full))
    d_action = msg_digest(action_full)
    out.append(("action_min", re.Action(command_digest=msg_digest(cmd_min),
                                        input_root_digest=msg_digest(empty))))
    presence = re.Action(command_digest=msg_digest(cmd_min),
                         input_root_digest=msg_digest(empty))
    presence.timeout.SetInParent()
    presence.platform.SetInParent()
    out.append(("action_presence", presence))

    # Results.
    oprops = re.NodeProperties(
        properties=[re.NodeProperty(name="unix_mode", value="0755")])
    md = re.ExecutedActionMetadata(worker="worker-1")
    for i, f in enumerate(["queued_timestamp", "worker_start_timestamp",
                           "worker_completed_timestamp",
                           "input_fetch_start_timestamp",
                           "input_fetch_completed_timestamp",
                           "execution_start_timestamp",
                           "execution_completed_timestamp",
                           "output_upload_start_timestamp",
                           "output_upload_completed_timestamp"]):
        ts = getattr(md, f)
        ts.seconds = 1700000000 + i
        ts.nanos = i * 1000
    md.virtual_execution_duration.seconds = 3
    md.virtual_execution_duration.nanos = 250000000
    md.auxiliary_metadata.append(any_of(re.ToolDetails(
        tool_name="cargo-distbuild", tool_version="0.1.0")))
    result = re.ActionResult(
        output_files=[
            re.OutputFile(path="target/debug/demo", digest=blob_digest("ELF..."),
                          is_executable=True, contents=b"ELF...",
                          node_properties=oprops),
            re.OutputFile(path="target/debug/demo.d",
                          digest=blob_digest("compiling demo\n")),
        ],
        output_file_symlinks=[
            re.OutputSymlink(path="target/debug/link", target="demo")],
        output_symlinks=[
            re.OutputSymlink(path="target/debug/dlink", target="deps"),
            re.OutputSymlink(path="target/debug/link", target="demo",
                             node_properties=oprops),
        ],
        output_directories=[re.OutputDirectory(
            path="target/debug/deps", tree_digest=blob_digest("tree"),
            is_topologically_sorted=True,
            root_directory_digest=blob_digest("rootdir"))],
        output_directory_symlinks=[
            re.OutputSymlink(path="target/debug/dlink", target="deps")],
        exit_code=-1,
        stdout_raw=b"compiling demo\n",
        stdout_digest=blob_digest("compiling demo\n"),
        stderr_raw=b"warning: unused\n",
        stderr_digest=blob_digest("warning: unused\n"),
        execution_metadata=md,
    )
    out.append(("action_result_full", result))
    md_min = re.ExecutedActionMetadata(worker="w")
    out.append(("action_result_min",
                re.ActionResult(execution_metadata=md_min)))

    out.append(("execute_request", re.ExecuteRequest(
        instance_name="main", skip_cache_lookup=True, action_digest=d_action,
        execution_policy=re.ExecutionPolicy(priority=-5),
        results_cache_policy=re.ResultsCachePolicy(priority=7),
        digest_function=re.DigestFunction.SHA256,
        inline_stdout=True, inline_stderr=True,
        inline_output_files=["a", "b/c"])))

    def subject(d):
        return "blobs/%s/%d" % (d.hash, d.size_bytes)
    pf = error_details_pb2.PreconditionFailure(violations=[
        error_details_pb2.PreconditionFailure.Violation(
            type="MISSING", subject=subject(msg_digest(root))),
        error_details_pb2.PreconditionFailure.Violation(
            type="MISSING", subject=subject(msg_digest(src)),
            description="input blob not in CAS"),
    ])
    out.append(("precondition_failure", pf))
    st = status_pb2.Status(code=9, message="missing inputs",
                           details=[any_of(pf)])
    out.append(("status_precondition", st))

    resp = re.ExecuteResponse(result=result, cached_result=True, status=st,
                              message="done")
    resp.server_logs["worker.log"].digest.CopyFrom(blob_digest("log text"))
    resp.server_logs["sandbox.log"].digest.CopyFrom(blob_digest("log text"))
    resp.server_logs["sandbox.log"].human_readable = True
    out.append(("execute_response", resp))

    eom = re.ExecuteOperationMetadata(
        stage=re.ExecutionStage.COMPLETED, action_digest=d_action,
        stdout_stream_name="logs/stdout", partial_execution_metadata=md_min,
        digest_function=re.DigestFunction.SHA256)
    out.append(("execute_operation_metadata", eom))
    out.append(("operation_response", operations_pb2.Operation(
        name="operations/7d7f0c6e-0000-4000-8000-000000000001",
        metadata=any_of(eom), done=True, response=any_of(resp))))
    out.append(("operation_error", operations_pb2.Operation(
        name="operations/x", done=True, error=st)))
    out.append(("operation_running", operations_pb2.Operation(
        name="operations/y", metadata=any_of(eom))))

    # CAS, capabilities, ByteStream, metadata.
    pc = re.PriorityCapabilities(priorities=[
        re.PriorityCapabilities.PriorityRange(min_priority=-10,
                                              max_priority=10)])
    out.append(("server_capabilities", re.ServerCapabilities(
        cache_capabilities=re.CacheCapabilities(
            digest_functions=[re.DigestFunction.SHA256,
                              re.DigestFunction.BLAKE3],
            action_cache_update_capabilities=re.ActionCacheUpdateCapabilities(
                update_enabled=True),
            cache_priority_capabilities=pc,
            max_batch_total_size_bytes=4 * 1024 * 1024,
            symlink_absolute_path_strategy=(
                re.SymlinkAbsolutePathStrategy.ALLOWED),
            supported_compressors=[re.Compressor.ZSTD, re.Compressor.DEFLATE],
            supported_batch_update_compressors=[re.Compressor.ZSTD]),
        execution_capabilities=re.ExecutionCapabilities(
            digest_function=re.DigestFunction.SHA256, exec_enabled=True,
            execution_priority_capabilities=pc,
            supported_node_properties=["OSFamily", "pool"],
            digest_functions=[re.DigestFunction.SHA256]),
        low_api_version={"major": 2},
        high_api_version={"major": 2, "minor": 3})))

    brr = re.BatchReadBlobsResponse()
    r1 = brr.responses.add(digest=msg_digest(src), data=b"\x28\xb5\x2f\xfd",
                           compressor=re.Compressor.ZSTD)
    r1.status.SetInParent()  # OK status: present but empty
    brr.responses.add(digest=msg_digest(root),
                      status=status_pb2.Status(code=5, message="not found"))
    out.append(("batch_read_blobs_response", brr))

    out.append(("batch_update_blobs_request", re.BatchUpdateBlobsRequest(
        requests=[re.BatchUpdateBlobsRequest.Request(
            digest=msg_digest(src), data=b"abc\0def",
            compressor=re.Compressor.IDENTITY)],
        digest_function=re.DigestFunction.SHA256)))
    out.append(("find_missing_blobs_response", re.FindMissingBlobsResponse(
        missing_blob_digests=[msg_digest(src), msg_digest(empty)])))
    out.append(("bytestream_write_request", bytestream_pb2.WriteRequest(
        resource_name="uploads/6f1c5e1a-7f4b-4d4e-9a51-3c1d2b0a9e8f/blobs/"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0",
        write_offset=1048576, finish_write=True, data=b"chunk")))
    ri = error_details_pb2.RetryInfo()
    ri.retry_delay.nanos = 500000000
    out.append(("retry_info", ri))
    out.append(("request_metadata", re.RequestMetadata(
        tool_details=re.ToolDetails(tool_name="cargo-distbuild",
                                    tool_version="0.1.0"),
        action_id="a1", tool_invocation_id="inv",
        correlated_invocations_id="corr", action_mnemonic="RustCompile",
        target_id="demo", configuration_id="dev")))
    return out


def parse_c_output(text):
    """LABEL TYPE HEX DIGEST lines -> ordered list of tuples."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        label, typ, hx, dg = line.split(" ")
        rows.append((label, typ, b"" if hx == "-" else bytes.fromhex(hx), dg))
    return rows


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def compare(what, label, typ, want, got_typ, got, got_digest):
    errs = []
    if got_typ != typ:
        errs.append("type %s != %s" % (got_typ, typ))
    if got != want:
        i = first_diff(want, got)
        errs.append("bytes differ at offset %d (python %d bytes, C %d bytes)\n"
                    "    python: %s\n    C:      %s"
                    % (i, len(want), len(got), want.hex(), got.hex()))
    if got_digest != digest_str(want):
        errs.append("digest %s != %s" % (got_digest, digest_str(want)))
    for e in errs:
        print("FAIL %s %s: %s" % (what, label, e))
    return not errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True, help="canonical_gen binary")
    ap.add_argument("--proto-root", required=True)
    ap.add_argument("--protoc", default="/usr/bin/protoc")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="proto_canonical.") as tmp:
        generate(args.protoc, args.proto_root, tmp)
        msgs = build_messages()

        ok = True
        emitted = subprocess.run([args.gen, "emit"], check=True,
                                 capture_output=True, text=True).stdout
        c_rows = parse_c_output(emitted)
        if [r[0] for r in c_rows] != [m[0] for m in msgs]:
            print("FAIL: label lists differ\n  C:      %s\n  python: %s"
                  % ([r[0] for r in c_rows], [m[0] for m in msgs]))
            return 1

        # 1 + 3: C encoding == Python encoding; C bytes parse in Python.
        for (label, m), (_, ctyp, cbytes, cdig) in zip(msgs, c_rows):
            want = ser(m)
            ok &= compare("C-encode", label, m.DESCRIPTOR.full_name, want,
                          ctyp, cbytes, cdig)
            # Re-encoding (not ==) is the equality test: == on messages
            # holding Any makes the C++ backend log noise about our types.
            back = type(m)()
            back.ParseFromString(cbytes)
            if ser(back) != want:
                print("FAIL python-parse %s: C bytes decode to a different "
                      "message" % label)
                ok = False

        # 2: Python bytes -> C unpack -> C pack == same bytes.
        feed = "".join("%s %s %s\n" % (label, m.DESCRIPTOR.full_name,
                                       ser(m).hex() or "-")
                       for label, m in msgs)
        rs = subprocess.run([args.gen, "reserialize"], input=feed, check=True,
                            capture_output=True, text=True).stdout
        r_rows = parse_c_output(rs)
        if len(r_rows) != len(msgs):
            print("FAIL: reserialize returned %d of %d messages"
                  % (len(r_rows), len(msgs)))
            return 1
        for (label, m), (rlabel, rtyp, rbytes, rdig) in zip(msgs, r_rows):
            ok &= rlabel == label
            ok &= compare("C-reencode", label, m.DESCRIPTOR.full_name,
                          ser(m), rtyp, rbytes, rdig)

        print("%s: %d messages compared (encode, re-encode, parse)"
              % ("OK" if ok else "FAILED", len(msgs)))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
