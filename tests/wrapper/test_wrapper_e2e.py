#!/usr/bin/env python3
"""End to end: cargo through cargo-distbuild-wrapper against a real
scheduler and two workers (separate processes).

Checks: the build succeeds and the binary prints the expected lines; every
rlib/rmeta and the binary are byte-identical to a plain local build; after
`cargo clean` every distributable action is a cache hit and no Execute
reaches a worker; editing one crate misses only it and its dependents;
env!/option_env!/include_str! inputs invalidate; a compile error shows the
same diagnostics as local rustc and is not cached; two concurrent builds
share the CAS (and a fresh checkout at the same path hits 100%); with the
scheduler down the build still succeeds through local fallback.

Everything is offline; CARGO_HOME, caches and target dirs live in a temp
dir under $HOME (the exec root must be a common ancestor of the toolchain
and the workspace other than "/"). Exit 77 = skipped.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

EXPECTED = ["Welcome to TestApp v1.0.0", "[TestApp] 5 + 3 = 8",
            "[TestApp] fib(30) = 832040, gcd(84, 36) = 12"]
LIBS = ["lib_common", "lib_math", "lib_utils", "lib_parser", "lib_advanced"]


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)
    print("  ok: " + msg, flush=True)


def common(a, b):
    pa, pb = a.rstrip("/").split("/"), b.rstrip("/").split("/")
    n = 0
    while n < min(len(pa), len(pb)) and pa[n] == pb[n]:
        n += 1
    return "/".join(pa[:n]) or "/"


class Cluster:
    def __init__(self, bindir, base):
        self.bin = os.path.join(bindir, "cargo-distbuild")
        self.base = base
        self.procs = {}
        self.port = None

    def start_scheduler(self, port=0, extra=()):
        d = os.path.join(self.base, "sched")
        os.makedirs(d, exist_ok=True)
        pf = os.path.join(d, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        log = open(os.path.join(d, "log"), "ab")
        self.procs["sched"] = subprocess.Popen(
            [self.bin, "scheduler", "run", "--listen", "127.0.0.1:%d" % port,
             "--port-file", pf, "--cas-dir", os.path.join(d, "cas"),
             "--http-listen", "off"] + list(extra), stdout=log, stderr=log)
        for _ in range(100):
            if os.path.exists(pf) and open(pf).read().strip():
                break
            time.sleep(0.05)
        self.port = int(open(pf).read().strip())

    def start_workers(self, n=2):
        for i in range(1, n + 1):
            wid = "worker-%d" % i
            log = open(os.path.join(self.base, wid + ".log"), "ab")
            self.procs[wid] = subprocess.Popen(
                [self.bin, "worker", "run", "--id", wid, "--scheduler",
                 "127.0.0.1:%d" % self.port, "--cache-dir",
                 os.path.join(self.base, wid)], stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.sched_log().count("worker joined") >= n:
                return
            time.sleep(0.1)
        raise Fail("workers did not join")

    def sched_log(self):
        return open(os.path.join(self.base, "sched", "log"),
                    errors="replace").read()

    def dispatches(self):
        return self.sched_log().count("dispatching")

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


class Env:
    def __init__(self, bindir, base, cluster):
        self.bindir = bindir
        self.cluster = cluster
        self.env = dict(os.environ)
        self.env.update({
            "CARGO_HOME": os.path.join(base, "cargo-home"),
            "CARGO_DISTBUILD_CACHE_DIR": os.path.join(base, "cache"),
            "CARGO_DISTBUILD_STATS_DIR": os.path.join(base, "stats"),
            "CARGO_DISTBUILD_TIMEOUT": "120",
            "CARGO_TERM_COLOR": "never",
        })
        for k in ("RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER",
                  "CARGO_TARGET_DIR", "CARGO_DISTBUILD_LOG", "TESTAPP_CHANNEL",
                  "TESTAPP_GREETING", "CARGO_BUILD_TARGET_DIR"):
            self.env.pop(k, None)

    def run(self, cmd, cwd, extra=None, check_rc=True):
        env = dict(self.env)
        env["CARGO_DISTBUILD_SCHEDULER"] = "127.0.0.1:%d" % self.cluster.port
        env.update(extra or {})
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if check_rc and p.returncode != 0:
            print(p.stdout)
            raise Fail("%s failed (%d)" % (" ".join(cmd), p.returncode))
        return p

    def distbuild(self, ws, extra=None, check_rc=True):
        # The cargo-subcommand argv shape: cargo-distbuild distbuild build
        p = self.run([os.path.join(self.bindir, "cargo-distbuild"),
                      "distbuild", "build", "--offline"], ws, extra, check_rc)
        st = json.loads(self.run([os.path.join(self.bindir, "cargo-distbuild"),
                                  "stats", "--json"], ws).stdout)
        return p, st["last_build"]

    def cargo(self, args, ws, extra=None, check_rc=True):
        e = {"CARGO_INCREMENTAL": "0"}
        e.update(extra or {})
        return self.run(["cargo"] + args, ws, e, check_rc)


def compiled(out):
    return sorted(set(re.findall(r"\[distbuild\] (\w+): compiled on", out)))


def copy_ws(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("target"))


def artifacts(ws):
    deps = os.path.join(ws, "target", "debug", "deps")
    out = {}
    for f in sorted(os.listdir(deps)):
        if f.endswith((".rlib", ".rmeta")):
            out[f] = open(os.path.join(deps, f), "rb").read()
    out["main-binary"] = open(os.path.join(ws, "target", "debug",
                                           "main-binary"), "rb").read()
    return out


def diagnostics(out):
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("error"))
    end = next(i for i, l in enumerate(lines)
               if l.startswith("error: could not compile"))
    return "\n".join(l for l in lines[start:end]
                     if not l.startswith("[distbuild]"))


def scratch_base(prefix):
    """A new directory under $HOME/.cache for one test's cluster, caches and
    workspaces, or None (after printing why: the test is skipped) when it
    shares no exec root with the toolchain but "/"."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], text=True,
                             capture_output=True, check=True).stdout.strip()
    home = os.path.expanduser("~")
    os.makedirs(os.path.join(home, ".cache"), exist_ok=True)
    base = tempfile.mkdtemp(prefix=prefix, dir=os.path.join(home, ".cache"))
    if common(sysroot, base) == "/":
        print("SKIP: toolchain %s and %s share no exec root" % (sysroot, base))
        shutil.rmtree(base, ignore_errors=True)
        return None
    return base


def edge_case(prefix):
    """The set-up shared by the single-scenario scripts (argv[1] = bin dir):
    (base, Cluster, Env, workspace path), or None when skipped."""
    bindir = os.path.abspath(sys.argv[1])
    base = scratch_base(prefix)
    if base is None:
        return None
    cl = Cluster(bindir, base)
    return base, cl, Env(bindir, base, cl), os.path.join(base, "ws")


def make_crate(path, name, lib):
    """A one-library package at path: Cargo.toml and src/lib.rs = lib."""
    os.makedirs(os.path.join(path, "src"))
    with open(os.path.join(path, "Cargo.toml"), "w") as f:
        f.write('[package]\nname = "%s"\nversion = "0.1.0"\n'
                'edition = "2021"\n\n[lib]\npath = "src/lib.rs"\n' % name)
    with open(os.path.join(path, "src", "lib.rs"), "w") as f:
        f.write(lib)


def finish(cl, base, ok, logs=()):
    """Stop the cluster; on failure print the tail of each log (relative to
    base); remove base."""
    cl.stop_all()
    for name in logs if not ok else ():
        path = os.path.join(base, name)
        if os.path.exists(path):
            print("--- %s ---\n%s" % (name, open(
                path, errors="replace").read()[-3000:]))
    shutil.rmtree(base, ignore_errors=True)


def run_edge_case(prefix, scenario, logs):
    """Run scenario(base, cluster, env, workspace) with the edge_case()
    set-up; a Fail is reported, and logs (relative to base) are printed on
    failure. The exit code: 0, 1, or 77 when skipped."""
    setup = edge_case(prefix)
    if setup is None:
        return 77
    base, cl, E, ws = setup
    ok = False
    try:
        scenario(base, cl, E, ws)
        ok = True
    except Fail as e:
        print("FAIL: %s" % e)
    finally:
        finish(cl, base, ok, logs)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--workspace", required=True)
    a = ap.parse_args()
    bindir = os.path.abspath(a.bin_dir)
    base = scratch_base("distbuild-wrapper-e2e-")
    if base is None:
        return 77
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], text=True,
                             capture_output=True, check=True).stdout.strip()
    cl = Cluster(bindir, base)
    E = Env(bindir, base, cl)
    ok = False
    try:
        cl.start_scheduler()
        cl.start_workers(2)
        ws = os.path.join(base, "ws1")
        copy_ws(a.workspace, ws)
        t0 = time.time()

        print("1. local baseline, then a distributed cold build", flush=True)
        E.cargo(["build", "--offline"], ws)
        local = artifacts(ws)
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws)
        check(st["actions"] == 5 and st["remote_executions"] == 5 and
              st["fallbacks"] == 0, "5 remote executions, no fallback: %s"
              % {k: st[k] for k in ("actions", "remote_executions",
                                    "fallbacks", "local")})
        check(st["local"] == 2, "build script + binary ran locally")
        check("cargo-distbuild report" in p.stdout, "report printed")
        # cargo pipelining across machines: each crate's .rmeta reached cargo
        # before its remote action finished (worker EarlyOutputs).
        check(st.get("pipelined") == 5,
              "5/5 remote crates pipelined (metadata early): %s"
              % st.get("pipelined"))
        check("pipelined: metadata released early" in p.stdout,
              "report counts pipelined crates")
        run = subprocess.run([os.path.join(ws, "target/debug/main-binary")],
                             capture_output=True, text=True, check=True)
        check(run.stdout.splitlines()[:3] == EXPECTED, "binary output")
        remote = artifacts(ws)
        check(sorted(remote) == sorted(local) and
              all(remote[k] == local[k] for k in local),
              "%d rlib/rmeta files and the binary byte-identical to local"
              % (len(local) - 1))
        p, _ = E.distbuild(ws)
        check("Compiling" not in p.stdout,
              "no-op rebuild compiles nothing (early outputs kept their "
              "mtimes)")
        # cargo replays a fresh crate's cached stderr; progress lines go
        # around it, so a no-op build does not repeat "cache miss" lines.
        check("[distbuild]" not in p.stdout,
              "no-op rebuild repeats no progress line")

        print("2. cargo clean + rebuild: all hits", flush=True)
        d0 = cl.dispatches()
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws, {"CARGO_DISTBUILD_LOG": "debug"})
        check(st["action_cache_hits"] == 5 and st["remote_executions"] == 0,
              "5/5 action-cache hits")
        # Hits are pipelined too: the .rmeta and .d come inline with the
        # ActionResult and cargo hears of the metadata before the .rlib.
        check(p.stdout.count("early metadata released") == 5,
              "5/5 hits released their metadata early")
        check(cl.dispatches() == d0, "no Execute reached a worker")
        check("hit rate:                            100%" in p.stdout,
              "report says 100%")
        check(st["time_saved_ms"] > 0, "time saved reported")
        check(artifacts(ws) == local, "hit outputs byte-identical")
        # Without the client server each call execs the remote client.
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws, {"CARGO_DISTBUILD_CLIENT_SERVER": "0",
                                 "CARGO_DISTBUILD_LOG": "debug"})
        check(st["action_cache_hits"] == 5 and artifacts(ws) == local and
              "client server: call" not in p.stdout,
              "5/5 hits without the client server too")
        # The default level shows one line per hit; quiet shows none, and
        # the report still comes.
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws)
        check(p.stdout.count("[distbuild]") == 5, "default level: a line per "
              "hit (%d)" % p.stdout.count("[distbuild]"))
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws, {"CARGO_DISTBUILD_LOG": "quiet"})
        check(st["action_cache_hits"] == 5 and "[distbuild]" not in p.stdout
              and "cargo-distbuild report" in p.stdout,
              "CARGO_DISTBUILD_LOG=quiet: 5/5 hits, no progress line, "
              "still the report")

        print("2b. cargo distbuild run / test / check", flush=True)
        p = E.run([os.path.join(bindir, "cargo-distbuild"), "distbuild",
                   "run", "--offline", "--bin", "main-binary"], ws)
        check(EXPECTED[0] in p.stdout and "cargo-distbuild report" in
              p.stdout, "run: the binary's output, then the report")
        p = E.run([os.path.join(bindir, "cargo-distbuild"), "distbuild",
                   "test", "--offline"], ws)
        st = json.loads(E.run([os.path.join(bindir, "cargo-distbuild"),
                               "stats", "--json"], ws).stdout)["last_build"]
        check(p.stdout.count("test result: ok") >= 6 and st["fallbacks"] == 0
              and st["local"] >= 6,
              "test: the test harnesses compile locally and pass (%d local)"
              % st["local"])
        p, st = E.distbuild(ws)  # the tests' builds changed nothing
        check(st["actions"] == 0 and "Compiling" not in p.stdout,
              "build after test: nothing to do")
        p = E.run([os.path.join(bindir, "cargo-distbuild"), "distbuild",
                   "check", "--offline", "-q"], ws)
        st = json.loads(E.run([os.path.join(bindir, "cargo-distbuild"),
                               "stats", "--json"], ws).stdout)["last_build"]
        check(st["actions"] == 5 and st["remote_executions"] +
              st["action_cache_hits"] == 5 and st["fallbacks"] == 0,
              "check: 5 metadata-only actions, remote")
        check("[distbuild]" not in p.stdout and
              "cargo-distbuild report" in p.stdout,
              "check -q: no progress lines, still the report")

        print("3. edit lib-utils: only it and its dependents miss", flush=True)
        with open(os.path.join(ws, "lib-utils/src/lib.rs"), "a") as f:
            f.write("\npub fn e2e_marker() -> u32 {\n    7\n}\n")
        p, st = E.distbuild(ws)
        check(compiled(p.stdout) == ["lib_advanced", "lib_parser",
                                     "lib_utils"],
              "misses: %s" % compiled(p.stdout))

        print("4. env! / option_env! / include_str! invalidate", flush=True)
        p, st = E.distbuild(ws, {"TESTAPP_CHANNEL": "beta"})
        check("lib_common" in compiled(p.stdout), "build-script env -> miss")
        run = subprocess.run([os.path.join(ws, "target/debug/main-binary")],
                             capture_output=True, text=True, check=True)
        check('"channel": "beta"' in run.stdout, "binary sees channel beta")
        with open(os.path.join(ws, "lib-common/data/app_name.txt"), "w") as f:
            f.write("DistApp")
        p, st = E.distbuild(ws, {"TESTAPP_CHANNEL": "beta"})
        check("lib_common" in compiled(p.stdout), "include_str! file -> miss")
        p, st = E.distbuild(ws, {"TESTAPP_CHANNEL": "beta",
                                 "TESTAPP_GREETING": "Howdy"})
        check("lib_common" in compiled(p.stdout), "option_env! var -> miss")
        run = subprocess.run([os.path.join(ws, "target/debug/main-binary")],
                             capture_output=True, text=True, check=True)
        check(run.stdout.startswith("Howdy DistApp v1.0.0"),
              "binary: %r" % run.stdout.splitlines()[0])

        print("5. compile error: same diagnostics, not cached", flush=True)
        src = os.path.join(ws, "lib-math/src/lib.rs")
        orig = open(src).read()
        with open(src, "a") as f:
            f.write('\npub fn broken() -> u32 {\n    "not a number"\n}\n')
        extra = {"TESTAPP_CHANNEL": "beta", "TESTAPP_GREETING": "Howdy"}
        lp = E.cargo(["build", "--offline"], ws,
                     dict(extra, CARGO_TARGET_DIR=os.path.join(base, "lt")),
                     check_rc=False)
        p, st = E.distbuild(ws, extra, check_rc=False)
        check(p.returncode != 0 and lp.returncode != 0, "non-zero exit")
        dd, dl = diagnostics(p.stdout), diagnostics(lp.stdout)
        check(dd == dl, "diagnostics identical to local rustc" +
              ("" if dd == dl else
               "\n--- local\n%s\n--- distbuild\n%s" % (dl, dd)))
        check(st["compile_errors"] == 1 and st["fallbacks"] == 0,
              "the error ran remotely")
        p, st = E.distbuild(ws, extra, check_rc=False)
        check(st["compile_errors"] == 1 and st["action_cache_hits"] == 0,
              "failed action not cached")
        # cargo renders the error it gets from the wrapper in many writes to
        # the terminal our progress lines share, so the line must go out
        # before the wrapper hands rustc's output over. strace slows every
        # write down (20 ms) so that a line written after would land inside.
        sp = E.run(["strace", "-f", "-o", "/dev/null", "-e", "trace=write",
                    "-e", "inject=write:delay_exit=20000",
                    os.path.join(bindir, "cargo-distbuild"), "distbuild",
                    "build", "--offline"], ws, extra, check_rc=False)
        check("lib_math: compile error on" in sp.stdout and
              re.search(r".\[distbuild\]", sp.stdout) is None,
              "the progress line never lands inside cargo's rendering of "
              "the error")
        with open(src, "w") as f:
            f.write(orig)

        print("6. two concurrent builds share the cache", flush=True)
        ws2, ws3 = os.path.join(base, "ws2"), os.path.join(base, "ws3")
        copy_ws(a.workspace, ws2)
        copy_ws(a.workspace, ws3)
        env = dict(E.env)
        env["CARGO_DISTBUILD_SCHEDULER"] = "127.0.0.1:%d" % cl.port
        procs = [subprocess.Popen(
            [os.path.join(bindir, "cargo-distbuild"), "build", "--offline"],
            cwd=w, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) for w in (ws2, ws3)]
        outs = [pr.communicate()[0] for pr in procs]
        check(all(pr.returncode == 0 for pr in procs), "both builds succeed")
        for out in outs:
            m = re.search(r"uploaded: +([\d.]+ \w+) on the wire", out)
            check(m and not m.group(1).endswith(("MB", "GB")),
                  "toolchain not uploaded again (%s)" % m.group(1))
            check("local fallbacks:                     0" in out,
                  "no fallback")
        copy_ws(a.workspace, ws2)  # a fresh checkout at the same path
        p, st = E.distbuild(ws2)
        check(st["action_cache_hits"] == 5, "fresh checkout: 5/5 hits")

        print("6b. a build script's rustc probe runs locally", flush=True)
        pdir = os.path.join(base, "probe")
        os.makedirs(pdir, exist_ok=True)
        with open(os.path.join(pdir, "probe.rs"), "w") as f:
            f.write("pub fn probe() {}\n")
        d0 = cl.dispatches()
        p = E.run([os.path.join(bindir, "cargo-distbuild-wrapper"),
                   os.path.join(sysroot, "bin", "rustc"),
                   "--crate-name", "probe", "--crate-type", "lib",
                   "--emit=dep-info,metadata", "--out-dir", pdir,
                   os.path.join(pdir, "probe.rs")], pdir,
                  {"CARGO_CFG_TARGET_ARCH": "x86_64"})
        check(os.path.exists(os.path.join(pdir, "libprobe.rmeta")),
              "probe compiled")
        check(cl.dispatches() == d0, "no Execute for the probe")
        with open(os.path.join(base, "stats", "stats.log")) as f:
            last = f.read().splitlines()[-1]
        check("kind=local" in last and "reason=build-script probe" in last,
              "recorded as a local call: %s" % last[-60:])

        print("6c. the wrapper front stays light; no remote client: local",
              flush=True)
        ldd = subprocess.run(["ldd", os.path.join(bindir,
                                                  "cargo-distbuild-wrapper")],
                             capture_output=True, text=True).stdout
        check("libcurl" not in ldd and "libnghttp2" not in ldd,
              "cargo-distbuild-wrapper links neither libcurl nor nghttp2")
        lone = os.path.join(base, "lone")
        os.makedirs(lone, exist_ok=True)
        shutil.copy(os.path.join(bindir, "cargo-distbuild-wrapper"), lone)
        os.remove(os.path.join(pdir, "libprobe.rmeta"))
        d0 = cl.dispatches()
        p = E.run([os.path.join(lone, "cargo-distbuild-wrapper"),
                   os.path.join(sysroot, "bin", "rustc"),
                   "--crate-name", "probe", "--crate-type", "lib",
                   "--emit=dep-info,metadata", "--out-dir", pdir,
                   os.path.join(pdir, "probe.rs")], pdir)
        check(os.path.exists(os.path.join(pdir, "libprobe.rmeta")) and
              cl.dispatches() == d0, "compiled locally, no Execute")
        check("cannot run the remote client" in p.stdout,
              "one line says why: %r" % p.stdout[-200:])
        with open(os.path.join(base, "stats", "stats.log")) as f:
            last = f.read().splitlines()[-1]
        check("kind=local" in last and "remote client missing" in last,
              "recorded: %s" % last[-60:])

        print("7a. scheduler frozen mid-build: fallback after the stall "
              "timeout", flush=True)
        # SIGSTOP keeps the listening socket and the connections open, as
        # a hung or cut-off host does: nothing is refused, nothing answers.
        ws4 = os.path.join(base, "ws4")
        copy_ws(a.workspace, ws4)
        # Its own cache dir: the breaker it trips must not reach step 7.
        env = dict(E.env, CARGO_DISTBUILD_SCHEDULER="127.0.0.1:%d" % cl.port,
                   CARGO_DISTBUILD_STALL_TIMEOUT="2",
                   CARGO_DISTBUILD_CACHE_DIR=os.path.join(base, "cache-7a"))
        d0 = cl.dispatches()
        t = time.time()
        pr = subprocess.Popen(
            [os.path.join(bindir, "cargo-distbuild"), "build", "--offline"],
            cwd=ws4, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        sched = cl.procs["sched"]
        while cl.dispatches() == d0 and pr.poll() is None and \
                time.time() - t < 60:
            time.sleep(0.02)
        sched.send_signal(signal.SIGSTOP)
        try:
            out = pr.communicate(timeout=300)[0]
        finally:
            sched.send_signal(signal.SIGCONT)
        dt = time.time() - t
        st = json.loads(E.run([os.path.join(bindir, "cargo-distbuild"),
                               "stats", "--json"], ws4).stdout)["last_build"]
        if pr.returncode != 0:
            print(out)
        check(pr.returncode == 0 and cl.dispatches() > d0,
              "build succeeds with the scheduler frozen after its first "
              "dispatch")
        check(st["actions"] == 5 and st["fallbacks"] == 5,
              "5 fallbacks counted: %s" % st.get("fallback_reasons"))
        check(re.search(r"lib_common: running rustc locally: scheduler not "
                        r"responding at \S+ \(no answer to a probe in "
                        r"2000 ms\)", out),
              "the waiting call gave up after an unanswered probe")
        check(len(re.findall(r"^\[distbuild\] \w+: running rustc locally: "
                             r"scheduler not responding at \S+ \(recently\)",
                             out, re.M)) == 4,
              "later calls skipped the silent scheduler at once")
        # The wait was the stall timeout, not CARGO_DISTBUILD_TIMEOUT (120 s).
        check(dt < 60, "build took %.1fs" % dt)

        print("7. scheduler down: local fallback", flush=True)
        cl.stop("sched")
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws, extra)
        check(st["fallbacks"] == 5 and st["actions"] == 5,
              "5 fallbacks counted")
        check("unreachable" in p.stdout, "fallback reason printed")
        E.cargo(["clean"], ws)
        p, st = E.distbuild(ws, dict(extra, CARGO_DISTBUILD_LOG="quiet"))
        rep = p.stdout[p.stdout.find("cargo-distbuild report"):]
        check(st["fallbacks"] == 5 and "[distbuild]" not in p.stdout and
              "unreachable" in rep,
              "quiet: no fallback lines, the report still gives the reason")
        run = subprocess.run([os.path.join(ws, "target/debug/main-binary")],
                             capture_output=True, text=True, check=True)
        check(run.stdout.startswith("Howdy DistApp"), "binary still works")
        print("wrapper e2e: ok (%.1fs)" % (time.time() - t0))
        ok = True
        return 0
    except Fail as e:
        print("FAIL: %s" % e)
        for f in ("sched/log", "worker-1.log", "worker-2.log"):
            path = os.path.join(base, f)
            if os.path.exists(path):
                print("--- %s (tail)" % f)
                print("".join(open(path, errors="replace").readlines()[-15:]))
        return 1
    finally:
        cl.stop_all()
        if ok:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
