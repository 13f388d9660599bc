"""e2e_rustc: the host's rustc, shipped through the CAS as part of the
input root, compiles a tiny crate on a worker; the .rlib must be
byte-identical to a local compile. The toolchain is a large immutable
subtree, so the worker binds it from its tree cache (built once, then hit).
Usage: test_rustc.py BINARY"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import Cluster, check, pbd, re_pb2, tree_from_host  # noqa: E402

BIN = sys.argv[1]
ARGS = ["--crate-type", "lib", "--crate-name", "tiny", "--edition", "2021",
        "src/lib.rs", "-o", "o/libtiny.rlib"]
SRC = b"pub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n"


def toolchain_tree(sysroot, blobs, paths):
    """bin/rustc, lib/*.so*, lib/rustlib/<host>/lib: what rustc needs to
    build an rlib."""
    host = subprocess.run(["rustc", "-vV"], capture_output=True,
                          text=True).stdout
    triple = [x.split()[1] for x in host.splitlines()
              if x.startswith("host:")][0]
    stage = tempfile.mkdtemp(prefix="tc-", dir=os.environ.get("E2E_TMP"))
    os.makedirs(os.path.join(stage, "bin"))
    os.symlink(os.path.join(sysroot, "bin", "rustc"),
               os.path.join(stage, "bin", "rustc"))
    os.makedirs(os.path.join(stage, "lib", "rustlib", triple))
    for f in os.listdir(os.path.join(sysroot, "lib")):
        if ".so" in f:
            os.symlink(os.path.join(sysroot, "lib", f),
                       os.path.join(stage, "lib", f))
    os.symlink(os.path.join(sysroot, "lib", "rustlib", triple, "lib"),
               os.path.join(stage, "lib", "rustlib", triple, "lib"))
    return stage


def host_tree(path, blobs, paths, follow_top=True):
    """tree_from_host, following the staging symlinks."""
    d = re_pb2.Directory()
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isdir(p):
            d.directories.add(name=name, digest=host_tree(p, blobs, paths))
        elif os.path.isfile(p):
            d.files.add(name=name, digest=tree_from_host_file(p, paths),
                        is_executable=os.access(p, os.X_OK))
    b = d.SerializeToString()
    blobs[pbd(b).hash] = b
    return pbd(b)


_hcache = {}


def tree_from_host_file(p, paths):
    import hashlib
    real = os.path.realpath(p)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    if key not in _hcache:
        h = hashlib.sha256()
        with open(real, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _hcache[key] = h.hexdigest()
    dg = re_pb2.Digest(hash=_hcache[key], size_bytes=st.st_size)
    paths[dg.hash] = (real, st.st_size)
    return dg


def main():
    sysroot = subprocess.run(["rustc", "--print", "sysroot"],
                             capture_output=True, text=True,
                             check=True).stdout.strip()
    c = Cluster(BIN, 2)
    failed = True
    try:
        ws = os.path.join(c.dir, "ws")
        os.makedirs(os.path.join(ws, "src"))
        os.makedirs(os.path.join(ws, "o"))
        with open(os.path.join(ws, "src", "lib.rs"), "wb") as f:
            f.write(SRC)
        subprocess.run(["rustc"] + ARGS, cwd=ws, check=True)
        local = open(os.path.join(ws, "o", "libtiny.rlib"), "rb").read()

        blobs, paths = {}, {}
        t0 = time.time()
        stage = toolchain_tree(sysroot, blobs, paths)
        tc = host_tree(stage, blobs, paths)
        src = re_pb2.Directory()
        src.files.add(name="lib.rs", digest=pbd(SRC))
        srcb = src.SerializeToString()
        root = re_pb2.Directory()
        root.directories.add(name="src", digest=pbd(srcb))
        root.directories.add(name="tc", digest=tc)
        rootb = root.SerializeToString()
        c.client.upload_files(paths)
        c.client.upload([SRC, srcb, rootb] + list(blobs.values()))
        print("toolchain: %d files, %.0f MB, hashed+uploaded in %.1fs" % (
            len(paths), sum(s for _, s in paths.values()) / 1e6,
            time.time() - t0))

        class T:
            pass
        tree = T()
        tree.root = pbd(rootb)
        tree.blobs = {}
        times = []
        for i in range(3):
            dg, _ = c.client.make_action(
                ["tc/bin/rustc"] + ARGS, tree, outputs=["o/libtiny.rlib"],
                env={"PATH": "/usr/bin:/bin"},
                platform={"OSFamily": "linux"},
                cmd_platform={"exec-root-path": ws}, salt="run%d" % i)
            t1 = time.time()
            r = c.client.execute(dg, timeout=300)
            times.append(time.time() - t1)
            check(r.status.code == 0, r.status, c)
            check(r.result.exit_code == 0, r.result.stderr_raw, c)
            remote = c.client.output_file(r.result, "o/libtiny.rlib")
            check(remote == local, "rlib differs from the local compile "
                  "(%d vs %d bytes)" % (len(remote), len(local)), c)
        builds = sum(w.metric("distbuild_worker_tree_builds_total")
                     for w in c.workers)
        hits = sum(w.metric("distbuild_worker_tree_hits_total")
                   for w in c.workers)
        print("remote compiles: %s s; tree builds %d, tree hits %d" % (
            ", ".join("%.2f" % t for t in times), builds, hits))
        check(builds >= 1 and hits >= 1 and builds <= 2,
              "toolchain bound from the tree cache", c)
        shutil.rmtree(stage, ignore_errors=True)
        failed = False
        print("e2e rustc: ok")
    finally:
        c.close(keep=failed)


if __name__ == "__main__":
    main()
