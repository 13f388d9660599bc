"""End-to-end: scheduler + two workers as real processes, driven by an
independent REAPI client. Usage: test_e2e.py BINARY CASE."""
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import (Cluster, Tree, check, grpc, metric, pbd,  # noqa: E402
                     error_details_pb2)

BIN = sys.argv[1]
SH = "/bin/sh"


def ok(r, c, what=""):
    check(r.status.code == 0, "%s: status %s" % (what, r.status), c)


def case_basic(c):
    """Inputs read, outputs (file, directory, symlink) returned."""
    t = Tree({"src": {"a.txt": b"alpha\n", "tool.sh": ("x", b"#!/bin/sh\n"
                                                      b"echo tool:$1\n")},
              "big": {"b.bin": os.urandom(300000)}})
    script = ("cat src/a.txt src/a.txt > out/copy.txt && "
              "./src/tool.sh run > out/tool.txt && "
              "mkdir -p gen/sub && cp big/b.bin gen/sub/b.bin && "
              "printf x > gen/x && chmod +x gen/x && ln -s copy.txt out/ln && "
              "echo to-stdout && echo to-stderr >&2 && pwd")
    dg, _ = c.client.make_action([SH, "-c", script], t,
                                 outputs=["out/copy.txt", "out/tool.txt",
                                          "gen", "out/ln", "out/none"])
    r = c.client.execute(dg)
    ok(r, c, "basic")
    res = r.result
    check(res.exit_code == 0, res, c)
    check(c.client.output_file(res, "out/copy.txt") == b"alpha\nalpha\n",
          "copy", c)
    check(c.client.output_file(res, "out/tool.txt") == b"tool:run\n", "tool",
          c)
    files, od = c.client.output_tree(res, "gen")
    big = t.blobs[[h for h, b in t.blobs.items() if len(b) == 300000][0]]
    check(files == {"sub/b.bin": big, "x": b"x"}, "tree %s" % files.keys(),
          c)
    check(od.root_directory_digest.size_bytes > 0, "root dir digest", c)
    check([(s.path, s.target) for s in res.output_symlinks] ==
          [("out/ln", "copy.txt")], "symlinks", c)
    check(res.stdout_raw == b"to-stdout\n/work\n", res.stdout_raw, c)
    check(c.client.read_blob(res.stdout_digest) == b"to-stdout\n/work\n",
          "stdout digest", c)
    check(c.client.read_blob(res.stderr_digest) == b"to-stderr\n", "stderr",
          c)
    md = res.execution_metadata
    check(md.worker in ("worker-1", "worker-2"), md.worker, c)
    for f in ("queued_timestamp", "worker_start_timestamp",
              "input_fetch_start_timestamp",
              "input_fetch_completed_timestamp", "execution_start_timestamp",
              "execution_completed_timestamp",
              "output_upload_start_timestamp",
              "output_upload_completed_timestamp",
              "worker_completed_timestamp"):
        check(md.HasField(f), "metadata " + f, c)
    check(len(md.auxiliary_metadata) == 1 and md.auxiliary_metadata[0]
          .type_url.endswith("distbuild.worker.v1.ResourceUsage"),
          "resource usage", c)
    from distbuild.worker.v1 import worker_pb2
    ru = worker_pb2.ResourceUsage()
    md.auxiliary_metadata[0].Unpack(ru)
    check(ru.peak_memory_bytes > 0, ru, c)
    # exec-root-path and working directory
    dg, _ = c.client.make_action([SH, "-c", "pwd > ../o.txt; ls"], Tree(
        {"w": {"f": b""}}), outputs=["../o.txt"], wd="w",
        platform={"exec-root-path": "/home/builder/ws"})
    r = c.client.execute(dg)
    check(r.status.code == 3, "../o.txt from w is refused: %s" % r.status, c)
    dg, _ = c.client.make_action([SH, "-c", "pwd > o.txt; ls"], Tree(
        {"w": {"f": b""}}), outputs=["o.txt"], wd="w",
        platform={"OSFamily": "linux"},
        cmd_platform={"exec-root-path": "/home/builder/ws"})
    r = c.client.execute(dg)
    ok(r, c, "exec root")
    check(c.client.output_file(r.result, "o.txt") == b"/home/builder/ws/w\n",
          "exec root path", c)
    check(r.result.stdout_raw == b"f\no.txt\n", r.result.stdout_raw, c)


def case_cache_hit(c):
    t = Tree({"in.txt": b"cache me\n"})
    dg, _ = c.client.make_action([SH, "-c", "cat in.txt > out.txt"], t,
                                 outputs=["out.txt"], salt="fixed")
    r1 = c.client.execute(dg)
    ok(r1, c)
    n = c.executions()
    r2 = c.client.execute(dg)
    ok(r2, c)
    check(r2.cached_result, "second run is a cache hit", c)
    check(c.executions() == n, "no worker involved", c)
    check(c.client.output_file(r2.result, "out.txt") == b"cache me\n", "", c)
    check(c.client.get_action_result(dg).exit_code == 0, "AC entry", c)
    # A second action on the same inputs: served from the worker cache.
    hits = sum(w.metric("distbuild_worker_cache_hits_total")
               for w in c.workers)
    for _ in range(4):
        dg, _ = c.client.make_action([SH, "-c", "cat in.txt"], t)
        ok(c.client.execute(dg), c)
    check(sum(w.metric("distbuild_worker_cache_hits_total")
              for w in c.workers) > hits, "worker cache hits", c)


def case_dedup(c):
    t = Tree({"in.txt": b"dedup\n"})
    dg, _ = c.client.make_action(
        [SH, "-c", "sleep 0.5; cat in.txt > out.txt"], t, outputs=["out.txt"])
    n = c.executions()
    results = [None] * 20

    def run(i):
        results[i] = c.client.execute(dg)
    th = [threading.Thread(target=run, args=(i,)) for i in range(20)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    for r in results:
        ok(r, c, "dedup")
        check(c.client.output_file(r.result, "out.txt") == b"dedup\n", "", c)
    check(c.executions() == n + 1, "20 submissions, %d executions" %
          (c.executions() - n), c)


def case_failing(c):
    dg, _ = c.client.make_action([SH, "-c", "echo bad >&2; exit 3"],
                                 salt="fail")
    r = c.client.execute(dg)
    ok(r, c)
    check(r.result.exit_code == 3, r.result, c)
    check(r.result.stderr_raw == b"bad\n", r.result.stderr_raw, c)
    try:
        c.client.get_action_result(dg)
        check(False, "failed action was cached", c)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, e, c)
    n = c.executions()
    r = c.client.execute(dg)
    check(not r.cached_result and c.executions() == n + 1, "re-run", c)


def case_platform(c):
    dg, _ = c.client.make_action(["/bin/true"], platform={"OSFamily":
                                                          "windows"})
    r = c.client.execute(dg, timeout=30)
    check(r.status.code != 0, "platform mismatch: %s" % r.status, c)
    # Only worker-2 has pool=special.
    dg, _ = c.client.make_action(["/bin/true"], platform={"pool": "special"})
    r = c.client.execute(dg, timeout=30)
    ok(r, c, "platform match")
    check(r.result.execution_metadata.worker == "worker-2",
          r.result.execution_metadata.worker, c)


def case_missing(c):
    t = Tree({"a.txt": b"never uploaded %f" % time.time()})
    dg, named = c.client.make_action(["/bin/cat", "a.txt"], t, upload=False)
    c.client.upload([named["command"], named["action"], t.blobs[t.root.hash]])
    r = c.client.execute(dg)
    check(r.status.code == 9, "FAILED_PRECONDITION: %s" % r.status, c)
    pf = error_details_pb2.PreconditionFailure()
    check(any(d.Unpack(pf) for d in r.status.details), "details", c)
    want = [h for h, b in t.blobs.items() if h != t.root.hash][0]
    check(any(v.type == "MISSING" and want in v.subject
              for v in pf.violations), pf, c)


def case_bad_command(c):
    dg, _ = c.client.make_action([])
    r = c.client.execute(dg)
    check(r.status.code == 3, "empty argv: %s" % r.status, c)
    dg, _ = c.client.make_action([SH, "-c", "echo x > ../x"], outputs=["../x"])
    r = c.client.execute(dg)
    check(r.status.code == 3, "../x: %s" % r.status, c)
    dg, _ = c.client.make_action(["/nonexistent/prog"])
    r = c.client.execute(dg)
    check(r.status.code != 0 or r.result.exit_code != 0,
          "missing program: %s" % r, c)


def case_immutable(c):
    """Inputs are hardlinks of the worker's cache: an action must not be
    able to change them."""
    data = b"precious %f\n" % time.time()
    t = Tree({"in": {"p.txt": data}, "out": {"q.txt": data}})
    script = ("r=0; for f in in/p.txt out/q.txt; do "
              "(echo evil >> $f) 2>/dev/null && r=1; "
              "(: > $f) 2>/dev/null && r=1; "
              "chmod 666 $f 2>/dev/null && r=1; done; "
              "rm -f out/q.txt && echo replaced > out/q.txt; "
              "cat in/p.txt; exit $r")
    dg, _ = c.client.make_action([SH, "-c", script], t,
                                 outputs=["out/q.txt"])
    r = c.client.execute(dg)
    ok(r, c)
    check(r.result.exit_code == 0, "an input was modified: %s" % r.result, c)
    check(r.result.stdout_raw == data, r.result.stdout_raw, c)
    check(c.client.output_file(r.result, "out/q.txt") == b"replaced\n",
          "own dir", c)
    h = pbd(data).hash
    for w in c.workers:
        p = os.path.join(w.cache_dir, "files", h[:2], "%s-%d" % (h,
                                                                 len(data)))
        if os.path.exists(p):
            check(open(p, "rb").read() == data, "cache copy intact", c)
            check(os.stat(p).st_mode & 0o777 == 0o444, "mode", c)
    dg, _ = c.client.make_action([SH, "-c", "cat in/p.txt out/q.txt"], t)
    r = c.client.execute(dg)
    check(r.result.stdout_raw == data + data, "later action sees inputs", c)
    # Each action's directory is removed right after its result went out.
    left = []
    for _ in range(100):
        dirs = [os.path.join(w.cache_dir, "actions") for w in c.workers]
        left = [e for d in dirs if os.path.isdir(d) for e in os.listdir(d)]
        if not left:
            break
        time.sleep(0.05)
    check(not left, "action directories removed: %s" % left, c)


def ancestors(pid):
    """The parent chain of pid (empty once it is gone)."""
    out = []
    while pid > 1:
        try:
            with open("/proc/%d/stat" % pid) as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.append(pid)
    return out


def pids_matching(tag):
    out = subprocess.run(["pgrep", "-f", tag], capture_output=True,
                         text=True).stdout.split()
    return [p for p in out if int(p) != os.getpid()]


def case_timeout(c):
    tag = "7%d" % (os.getpid() % 100000)
    script = ("sleep %s1 & (setsid sh -c 'sleep %s2' &) ; "
              "nohup sleep %s3 >/dev/null 2>&1 & echo started; sleep %s4"
              % (tag, tag, tag, tag))
    dg, _ = c.client.make_action([SH, "-c", script], outputs=["o"],
                                 timeout_s=1)
    t0 = time.time()
    r = c.client.execute(dg)
    check(r.status.code == 4, "DEADLINE_EXCEEDED: %s" % r.status, c)
    check(time.time() - t0 < 10, "killed promptly", c)
    check(r.result.stdout_raw == b"started\n", "partial result %s" % r, c)
    time.sleep(0.3)
    check(not pids_matching("sleep %s" % tag), "processes survived: %s" %
          pids_matching("sleep %s" % tag), c)
    try:
        c.client.get_action_result(dg)
        check(False, "timed-out action cached", c)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, e, c)


def execute_on_some_worker(c, dg):
    """Start Execute of dg in a thread; return (the thread, the dict its
    response lands in under "r", the worker that took the action)."""
    box = {}
    th = threading.Thread(target=lambda: box.update(r=c.client.execute(
        dg, timeout=60)))
    th.start()
    deadline = time.time() + 10
    while time.time() < deadline:
        for w in c.workers:
            if w.metric("distbuild_worker_busy_slots") > 0:
                return th, box, w
        time.sleep(0.05)
    check(False, "nobody picked it up", c)


def case_worker_kill(c):
    """SIGKILL a busy worker: its sandbox dies with it (a background
    process included), and the action is requeued to the other worker."""
    tag = "9%d" % (os.getpid() % 100000)
    dg, _ = c.client.make_action(
        [SH, "-c", "sleep %s1 & sleep 4; echo done > o" % tag],
        outputs=["o"])
    th, box, victim = execute_on_some_worker(c, dg)
    deadline = time.time() + 10
    while time.time() < deadline and not pids_matching("sleep %s1" % tag):
        time.sleep(0.02)
    check(pids_matching("sleep %s1" % tag), "the action never started", c)
    victim.proc.kill()
    victim.proc.wait()
    # Well before the victim's action would end by itself: what still runs
    # it must be the other worker's (requeued) sandbox.
    other = [w for w in c.workers if w is not victim][0]
    deadline = time.time() + 1.5
    while True:
        leaked = [p for p in pids_matching("sleep %s1" % tag)
                  if other.proc.pid not in ancestors(int(p))]
        if not leaked or time.time() > deadline:
            break
        time.sleep(0.05)
    check(not leaked, "the killed worker's sandbox survived: %s" % leaked, c)
    th.join()
    r = box["r"]
    ok(r, c, "requeued")
    check(r.result.execution_metadata.worker == other.id,
          r.result.execution_metadata.worker, c)
    check(c.client.output_file(r.result, "o") == b"done\n", "", c)
    victim.proc = None


def case_worker_stop(c):
    """SIGTERM on a busy worker: it kills its running action and exits at
    once (the scheduler has requeued the action, so finishing it would be
    wasted), and the other worker runs the action to the end."""
    dg, _ = c.client.make_action([SH, "-c", "sleep 4; echo done > o"],
                                 outputs=["o"])
    th, box, victim = execute_on_some_worker(c, dg)
    t0 = time.time()
    victim.proc.send_signal(signal.SIGTERM)
    rc = victim.proc.wait(timeout=15)
    took = time.time() - t0
    check(rc == 0, "worker exit code %s" % rc, c)
    check(took < 2.5, "worker took %.1fs to stop: it waited for the action"
          % took, c)
    check("stopping: killed 1 running action(s)" in victim.log(),
          "worker log", c)
    check(os.listdir(os.path.join(victim.cache_dir, "actions")) == [],
          "action directory left behind", c)
    victim.proc = None
    th.join()
    r = box["r"]
    ok(r, c, "requeued")
    other = [w for w in c.workers if w is not victim][0]
    check(r.result.execution_metadata.worker == other.id,
          r.result.execution_metadata.worker, c)
    check(c.client.output_file(r.result, "o") == b"done\n", "", c)


def case_sched_restart(c):
    t = Tree({"keep.txt": b"keep me\n"})
    dg0, _ = c.client.make_action([SH, "-c", "cat keep.txt > k"], t,
                                  outputs=["k"])
    r0 = c.client.execute(dg0)
    ok(r0, c)
    dg, _ = c.client.make_action([SH, "-c", "sleep 2; echo late > o"],
                                 outputs=["o"])
    err = {}

    def waiter():
        try:
            c.client.execute(dg, timeout=30, raise_unavailable=True)
            err["e"] = None
        except grpc.RpcError as e:
            err["e"] = e.code()
    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)
    port = c.sched.port
    c.sched.stop(signal.SIGKILL)
    th.join()
    check(err.get("e") == grpc.StatusCode.UNAVAILABLE,
          "client saw %s" % err.get("e"), c)
    # A scheduler that stays away is a warning in each worker's log (after
    # about 5 s; the first failures are quiet, it may just be restarting).
    def warned():
        return all("scheduler %s unreachable for " % w.target in w.log()
                   for w in c.workers)
    deadline = time.time() + 15
    while time.time() < deadline and not warned():
        time.sleep(0.2)
    check(warned(), "workers warn that the scheduler is unreachable", c)
    c.sched.start(port=port)
    deadline = time.time() + 15
    while time.time() < deadline and not all(
            w.metric("distbuild_worker_connected") == 1 for w in c.workers):
        time.sleep(0.1)
    check(all(w.metric("distbuild_worker_connected") == 1
              for w in c.workers), "workers reconnected", c)
    r = c.client.execute(dg, timeout=30)
    ok(r, c, "retry after restart")
    check(c.client.output_file(r.result, "o") == b"late\n", "", c)
    # Nothing lost or corrupted: old result and its blobs are intact.
    ar = c.client.get_action_result(dg0)
    check(c.client.output_file(ar, "k") == b"keep me\n", "AC survived", c)


def case_cas_failure(c):
    """An input vanishes from the scheduler's CAS behind its back: the
    worker's download fails and the client gets a clear error."""
    data = b"vanishing %f\n" % time.time() * 1000
    t = Tree({"v.bin": data})
    dg, _ = c.client.make_action(["/bin/cat", "v.bin"], t)
    h = pbd(data).hash
    shard = os.path.join(c.sched.cas_dir, "cas", h[:2])
    gone = [f for f in os.listdir(shard) if f.startswith(h)]
    check(gone, "blob stored", c)
    for f in gone:
        os.unlink(os.path.join(shard, f))
    t0 = time.time()
    r = c.client.execute(dg, timeout=60)
    check(r.status.code != 0, "status %s" % r.status, c)
    check(time.time() - t0 < 30, "no hang", c)
    print("cas failure status:", r.status.code, r.status.message)


def case_early(c):
    """rustc-style metadata notifications on stderr: the worker sends the
    announced (declared) .rmeta and dep-info as EarlyOutputs while the
    action still runs, then the .rlib at its link notice; the final result
    still has everything."""
    from e2e_lib import operations_pb2, re_pb2, reapi_py
    root = "/home/builder/ws"
    lines = [
        b'{"$message_type":"diagnostic","rendered":"warning: x"}\n',
        b'{"$message_type":"artifact","artifact":"lib.d","emit":"dep-info"}\n',
        # not a declared output: ignored
        b'{"$message_type":"artifact","artifact":"/etc/hostname",'
        b'"emit":"metadata"}\n',
        b'{"$message_type":"artifact","artifact":"' + root.encode() +
        b'/w/lib.rmeta","emit":"metadata"}\n',
        b'{"$message_type":"artifact","artifact":"' + root.encode() +
        b'/w/lib.rlib","emit":"link"}\n']
    def sh(b):
        return "printf '%s\\n' '" + b[:-1].decode() + "' >&2"
    script = "; ".join([
        sh(lines[0]), "printf dep > lib.d", sh(lines[1]), sh(lines[2]),
        "printf meta > lib.rmeta", sh(lines[3]), "sleep 1",
        "printf rlib > lib.rlib", sh(lines[4])])
    dg, _ = c.client.make_action(
        [SH, "-c", script], Tree({"w": {"src.rs": b""}}),
        outputs=["lib.d", "lib.rmeta", "lib.rlib"], wd="w",
        platform={"exec-root-path": root})
    req = re_pb2.ExecuteRequest(action_digest=dg)
    ops, t_early = [], None
    for m in c.client.ch.unary_stream(
            "/build.bazel.remote.execution.v2.Execution/Execute")(
            req.SerializeToString(), timeout=60):
        op = operations_pb2.Operation.FromString(m)
        ops.append((time.time(), op))
    early = [(t, op, e) for t, op in ops
             for e in [reapi_py.early_outputs_of(op)] if e is not None]
    # The metadata message, then a files-only one for the .rlib at its
    # link notice.
    check(len(early) == 2, "two EarlyOutputs messages, got %d" % len(early),
          c)
    t, op, e = early[0]
    check(not op.done, "early outputs come before the end", c)
    check(ops[-1][0] - t > 0.5,
          "...while the action still runs (%.2fs before the end)"
          % (ops[-1][0] - t), c)
    check(e.stderr_prefix == b"".join(lines[:4]),
          "stderr prefix ends with the metadata line: %r" % e.stderr_prefix,
          c)
    check(sorted((f.path, f.digest.hash) for f in e.files) ==
          sorted([("lib.d", pbd(b"dep").hash),
                  ("lib.rmeta", pbd(b"meta").hash)]),
          "the dep-info and the .rmeta: %s" % e.files, c)
    check(sorted(f.contents for f in e.files) == [b"dep", b"meta"],
          "small files come inline", c)
    for f in e.files:
        c.client.read_blob(f.digest)  # and are in the CAS already
    _, op2, e2 = early[1]
    check(not op2.done and e2.stderr_prefix == b"",
          "the link message releases no stderr", c)
    check([(f.path, f.digest.hash) for f in e2.files] ==
          [("lib.rlib", pbd(b"rlib").hash)], "the .rlib: %s" % e2.files, c)
    check(c.client.read_blob(e2.files[0].digest) == b"rlib",
          "the .rlib is in the CAS before the end", c)
    final = re_pb2.ExecuteResponse()
    ops[-1][1].response.Unpack(final)
    ok(final, c, "early")
    res = final.result
    check(c.client.read_blob(res.stderr_digest) == b"".join(lines),
          "final stderr complete", c)
    check(c.client.output_file(res, "lib.rlib") == b"rlib" and
          c.client.output_file(res, "lib.rmeta") == b"meta",
          "final outputs", c)


def case_early_link(c):
    """A declared output announced with "emit":"link" is in the CAS while
    the action still runs; if the action rewrites it afterwards, the result
    has (and the CAS holds) what the file finally contains."""
    root = "/home/builder/ws"
    def seq(a, b):
        return b"".join(b"%d\n" % i for i in range(a, b + 1))
    def notice():
        return ("printf '%s\\n' '{\"$message_type\":\"artifact\","
                "\"artifact\":\"" + root + "/w/lib.rlib\","
                "\"emit\":\"link\"}' >&2")
    # Same size before and after the rewrite: only the identity check
    # (inode, size, mtime, ctime) can tell the two apart.
    cases = [("kept", 10001, "seq 10001 20000 > lib.rlib; " + notice() +
              "; sleep 1.5", seq(10001, 20000)),
             ("rewritten", 40001, "seq 40001 50000 > lib.rlib; " + notice() +
              "; sleep 0.8; seq 50001 60000 > lib.rlib", seq(50001, 60000))]
    for name, lo, script, final in cases:
        dg, _ = c.client.make_action(
            [SH, "-c", script], Tree({"w": {"src.rs": b""}}),
            outputs=["lib.rlib"], wd="w", platform={"exec-root-path": root})
        first = pbd(seq(lo, lo + 9999))
        check(c.client.find_missing([first]) == {first.hash},
              "%s: not in the CAS before the run" % name, c)
        box = {}
        th = threading.Thread(target=lambda: box.update(r=c.client.execute(dg)))
        th.start()
        seen = None
        while th.is_alive():
            if seen is None and not c.client.find_missing([first]):
                seen = time.time()
            time.sleep(0.05)
        th.join()
        done = time.time()
        r = box["r"]
        ok(r, c, name)
        check(r.result.exit_code == 0, r.result, c)
        check(seen is not None and done - seen > 0.3,
              "%s: uploaded at the notice, before the end (%s)" %
              (name, seen and done - seen), c)
        check(c.client.output_file(r.result, "lib.rlib") == final,
              "%s: final content" % name, c)
        got = [f.digest.hash for f in r.result.output_files
               if f.path == "lib.rlib"]
        check(got == [pbd(final).hash], "%s: digest %s" % (name, got), c)


def case_jobserver(c):
    """The worker's jobserver (one worker, --jobs 3): the action sees it in
    CARGO_MAKEFLAGS instead of the client's, as a FIFO at /dev/jobserver
    holding 2 free tokens (its slot holds the third). Tokens an action
    keeps are back in the pool for the next one."""
    script = ('printf "%s\\n" "$CARGO_MAKEFLAGS"; '
              'test -p /dev/jobserver && echo fifo; '
              'timeout 1 head -c 2 /dev/jobserver | wc -c; '
              'timeout 1 head -c 1 /dev/jobserver | wc -c')
    for salt in ("leak-1", "leak-2"):
        dg, _ = c.client.make_action(
            [SH, "-c", script], env={"CARGO_MAKEFLAGS": "-j --jobserver-auth=3,4"},
            salt=salt)
        r = c.client.execute(dg)
        ok(r, c, salt)
        check(r.result.exit_code == 0, r.result, c)
        # Both runs take the 2 free tokens and keep them: the second run
        # finds them again only because the idle worker refilled its pool.
        check(r.result.stdout_raw ==
              b"-j --jobserver-auth=fifo:/dev/jobserver\nfifo\n2\n0\n",
              "%s: %r" % (salt, r.result.stdout_raw), c)
    fifo = os.path.join(c.workers[0].cache_dir, "jobserver")
    check(os.path.exists(fifo), "FIFO in the cache dir", c)
    c.workers[0].stop()
    check(not os.path.exists(fifo), "FIFO removed on exit", c)
    # Where no FIFO can be made, the worker warns and runs without one.
    os.makedirs(os.path.join(fifo, "in-the-way"))
    c.workers[0].start()
    dg, _ = c.client.make_action(
        [SH, "-c", 'printf "[%s]" "$CARGO_MAKEFLAGS"; '
         'test -e /dev/jobserver || echo " none"'], salt="no-fifo")
    r = c.client.execute(dg)
    ok(r, c, "no-fifo")
    check(r.result.stdout_raw == b"[] none\n", r.result.stdout_raw, c)
    check("no jobserver in" in c.workers[0].log(), "warned", c)


def case_orphan(c):
    """The client gives up on a running action: after the scheduler's
    orphan timeout the worker kills its whole process tree, caches
    nothing, and the slot runs the next action."""
    tag = "8%d" % (os.getpid() % 100000)
    w = c.workers[0]
    dg, _ = c.client.make_action(
        [SH, "-c", "sleep %s1 & sleep %s2; echo done > o" % (tag, tag)],
        outputs=["o"])
    r = c.client.execute(dg, timeout=1.5)  # the client leaves after 1.5 s
    check(r.status.code == 4, "client deadline: %s" % r.status, c)
    check(w.metric("distbuild_worker_busy_slots") == 1, "still running", c)
    deadline = time.time() + 10
    while time.time() < deadline and (
            pids_matching("sleep %s" % tag) or
            w.metric("distbuild_worker_busy_slots") != 0):
        time.sleep(0.05)
    check(not pids_matching("sleep %s" % tag), "processes survived: %s" %
          pids_matching("sleep %s" % tag), c)
    check(w.metric("distbuild_worker_busy_slots") == 0, "slot freed", c)
    check(w.metric("distbuild_worker_actions_cancelled_total") == 1,
          "counted as cancelled", c)
    check(w.metric("distbuild_worker_actions_run_total") == 0,
          "not counted as run", c)
    check(metric(c.sched.http_port,
                 'distbuild_scheduler_actions_total{outcome="cancelled"}')
          == 1, "scheduler counted it", c)
    check("cancelled by the scheduler" in w.log(), "worker log", c)
    try:
        c.client.get_action_result(dg)
        check(False, "cancelled action cached", c)
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND, e, c)
    deadline = time.time() + 5
    actions = os.path.join(w.cache_dir, "actions")
    while time.time() < deadline and os.listdir(actions):
        time.sleep(0.05)
    check(os.listdir(actions) == [], "action dir left: %s" %
          os.listdir(actions), c)
    dg2, _ = c.client.make_action([SH, "-c", "echo next > o"], outputs=["o"])
    r2 = c.client.execute(dg2)
    ok(r2, c, "next action")
    check(c.client.output_file(r2.result, "o") == b"next\n", "", c)


def tmpfs_usage(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def case_worker_disk_full(c):
    """A worker whose cache disk fills up: the action fails there with
    RESOURCE_EXHAUSTED, is retried on a worker with room (not on the full
    one again), and the full worker leaves no partial files behind and
    keeps running what fits."""
    full, roomy = c.workers
    full.stop()
    roomy.stop()
    os.makedirs(full.cache_dir, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                       full.cache_dir]).returncode != 0:
        print("e2e worker_disk_full: SKIP: cannot mount a tmpfs (not root?)")
        sys.exit(77)
    infra = "distbuild_worker_actions_infra_error_total"
    try:
        full.start()
        base = tmpfs_usage(full.cache_dir)
        big = os.urandom(6 << 20)  # incompressible, larger than the disk
        dg, _ = c.client.make_action(["/bin/sh", "-c", "wc -c < big > o"],
                                     Tree({"big": big}), outputs=["o"])
        # 1. The full worker alone: every attempt fails, and says why.
        n0 = full.metric(infra)
        r = c.client.execute(dg, timeout=60)
        print("on the full worker alone:", r.status.code, r.status.message)
        check(r.status.code == 8 and "space" in r.status.message,
              "RESOURCE_EXHAUSTED, naming the full disk", c)
        check(full.metric(infra) - n0 == 3, "after 3 attempts", c)
        used = tmpfs_usage(full.cache_dir)
        check(used - base < (1 << 20), "no partial input left behind "
              "(%d bytes more than at start)" % (used - base), c)
        # 2. Both workers, the full one first in line (it joined last): the
        # retry goes to the other one, the failed action was not cached.
        full.stop()
        roomy.start()
        full.start()
        n0 = full.metric(infra)
        r = c.client.execute(dg, timeout=60)
        ok(r, c, "retried on the worker with room")
        check(r.result.execution_metadata.worker == roomy.id and
              c.client.output_file(r.result, "o").strip() ==
              b"%d" % len(big), "ran on %s" %
              r.result.execution_metadata.worker, c)
        check(full.metric(infra) == n0 + 1,
              "one attempt failed on the full worker, the retry went "
              "elsewhere (%d failures)" % (full.metric(infra) - n0), c)
        # 2b. The same with the other worker busy (both its slots): the
        # retry waits for it rather than going back to the full worker.
        full.stop()
        sleeps = [c.client.make_action([SH, "-c", "sleep 3; echo %d > o" % i],
                                       outputs=["o"])[0] for i in range(2)]
        box = {}
        ths = [threading.Thread(target=lambda i=i: box.update(
            {i: c.client.execute(sleeps[i], timeout=60)})) for i in range(2)]
        for t in ths:
            t.start()
        deadline = time.time() + 10
        while roomy.metric("distbuild_worker_busy_slots") < 2 and \
                time.time() < deadline:
            time.sleep(0.05)
        check(roomy.metric("distbuild_worker_busy_slots") == 2,
              "the other worker is busy", c)
        full.start()
        n0 = full.metric(infra)
        big2 = os.urandom(6 << 20)
        dg3, _ = c.client.make_action(["/bin/sh", "-c", "wc -c < big > o"],
                                      Tree({"big": big2}), outputs=["o"])
        r = c.client.execute(dg3, timeout=60)
        for t in ths:
            t.join()
        ok(r, c, "retried on the busy worker once it was free")
        check(r.result.execution_metadata.worker == roomy.id,
              "ran on %s" % r.result.execution_metadata.worker, c)
        check(full.metric(infra) == n0 + 1, "the full worker was tried "
              "once (%d failures)" % (full.metric(infra) - n0), c)
        check(all(box[i].status.code == 0 for i in range(2)),
              "the sleepers finished", c)
        # 3. The full worker still runs what fits.
        roomy.stop()
        dg2, _ = c.client.make_action([SH, "-c", "cat s > o"],
                                      Tree({"s": b"small\n"}),
                                      outputs=["o"])
        r = c.client.execute(dg2, timeout=60)
        ok(r, c, "small action on the full worker")
        check(r.result.execution_metadata.worker == full.id and
              c.client.output_file(r.result, "o") == b"small\n",
              "ran on %s" % r.result.execution_metadata.worker, c)
    finally:
        full.stop()
        subprocess.run(["umount", "-l", full.cache_dir])


CASES = {
    "early_link": (case_early_link, {}),
    "jobserver": (case_jobserver, {"nworkers": 1,
                                   "worker_extra": ["--jobs", "3"]}),
    "early": (case_early, {}),
    "basic": (case_basic, {}),
    "cache_hit": (case_cache_hit, {}),
    "dedup": (case_dedup, {}),
    "failing": (case_failing, {}),
    "platform": (case_platform, {"sched_extra": ["--queue-timeout", "2"]}),
    "missing": (case_missing, {}),
    "bad_command": (case_bad_command, {}),
    "immutable": (case_immutable, {}),
    "timeout": (case_timeout, {}),
    "worker_kill": (case_worker_kill, {}),
    "worker_stop": (case_worker_stop, {}),
    "sched_restart": (case_sched_restart, {}),
    "cas_failure": (case_cas_failure, {}),
    "worker_disk_full": (case_worker_disk_full, {}),
    "orphan": (case_orphan, {"nworkers": 1,
                             "sched_extra": ["--orphan-timeout", "1"]}),
}


def main():
    name = sys.argv[2]
    fn, kw = CASES[name]
    extra = ()
    if name == "platform":
        extra = ()
    kw = dict(kw)
    c = Cluster(BIN, kw.pop("nworkers", 2),
                worker_extra=kw.pop("worker_extra", extra), **kw)
    if name == "platform":
        w = c.workers[1]
        w.stop()
        w.extra = ["--platform", "pool=special"]
        w.start()
    failed = True
    try:
        fn(c)
        failed = False
        print("e2e %s: ok" % name)
    finally:
        c.close(keep=failed)


if __name__ == "__main__":
    main()
