"""Container tests (issue 6): the image built from container/Dockerfile,
a scheduler and two workers as containers on a private Docker network, the
scheduler's port published on 127.0.0.1, driven from the host by an
independent REAPI client (Debian's python3-grpcio, tests/e2e/e2e_lib.py).

usage: test_container.py REPO_ROOT CASE [BIN_DIR]
CASE: image | exec | worker_kill | worker_pause | worker_partition |
      sched_restart | cargo_build
(cargo_build needs BIN_DIR, the build dir holding cargo-distbuild and
cargo-distbuild-wrapper, and cargo/rustc on PATH.)
Exit 77 (ctest SKIP_RETURN_CODE) when no Docker engine answers."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

os.environ["no_proxy"] = "*"
os.environ.pop("http_proxy", None)
os.environ.pop("https_proxy", None)

SKIP = 77
ROOT = os.path.abspath(sys.argv[1])
CASE = sys.argv[2]
BIN_DIR = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else None
IMAGE = os.environ.get("CARGO_DISTBUILD_TEST_IMAGE", "cargo-distbuild:ctest")
LOCAL_BASE = "cargo-distbuild/debian:bookworm-slim"
# Least privilege for the full sandbox (container/README.md); the image's
# entrypoint drops to uid 10001 without capabilities before the worker runs.
WORKER_PRIV = ["--user", "0", "--cap-add", "SYS_ADMIN",
               "--security-opt", "seccomp=unconfined",
               "--security-opt", "apparmor=unconfined"]
FULL_SANDBOX = "namespaces=user,mount,pid,net,ipc,uts seccomp=on caps=dropped"

sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))


def log(msg):
    print("container %s: %s" % (CASE, msg), flush=True)


def docker(*args, check=True, timeout=120, capture=True):
    r = subprocess.run(["docker"] + list(args), timeout=timeout,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.STDOUT if capture else None)
    out = r.stdout.decode(errors="replace") if capture else ""
    if check and r.returncode != 0:
        raise RuntimeError("docker %s failed (%d): %s" %
                           (" ".join(args), r.returncode, out[-2000:]))
    return out


def docker_available():
    try:
        r = subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "docker not runnable: %s" % e
    if r.returncode != 0:
        return "docker info failed: %s" % r.stderr.decode(errors="replace")[
            -300:].strip()
    return None


# ---- image -----------------------------------------------------------------

def build_images():
    base = os.environ.get("CARGO_DISTBUILD_BASE_IMAGE")
    if not base:
        t = time.time()
        subprocess.run([os.path.join(ROOT, "container", "build-base.sh")],
                       check=True, timeout=1200)
        log("base image %s ready in %.1fs" % (LOCAL_BASE, time.time() - t))
        base = LOCAL_BASE
    t = time.time()
    r = subprocess.run(["docker", "build", "-q", "--build-arg",
                        "BASE_IMAGE=" + base, "-f",
                        os.path.join(ROOT, "container", "Dockerfile"), "-t",
                        IMAGE, ROOT], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=1800)
    if r.returncode != 0:
        print(r.stdout.decode(errors="replace")[-5000:])
        raise RuntimeError("docker build failed")
    log("image %s built in %.1fs" % (IMAGE, time.time() - t))
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE).strip())
    log("image size %.1f MB" % (size / 1e6))
    # What must (not) be in the image.
    out = docker("run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                 "id -u; ls /usr/local/bin; command -v rustc cargo || true; "
                 "ldd /usr/local/bin/cargo-distbuild | grep -c 'not found' "
                 "|| true; ls /lib/x86_64-linux-gnu/libgcc_s.so.1 "
                 "/lib/x86_64-linux-gnu/libz.so.1")
    lines = out.split()
    assert lines[0] == "10001", "image does not run as distbuild: " + out
    assert "cargo-distbuild" in lines, out
    assert "rustc" not in out.replace("/usr/local/bin", ""), out
    assert "libgcc_s.so.1" in out and "libz.so.1" in out, out
    # Without the documented privileges the worker refuses to start.
    r = subprocess.run(["docker", "run", "--rm", IMAGE, "worker", "run",
                        "--id", "nopriv", "--scheduler", "127.0.0.1:1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    msg = r.stdout.decode(errors="replace")
    assert r.returncode != 0 and "refusing to start" in msg, msg
    log("unprivileged worker refuses, as it should: " +
        msg.splitlines()[0][:160])
    log("ok")


# ---- cluster ---------------------------------------------------------------

class Cluster:
    def __init__(self):
        self.p = "cdbt-%d-%s" % (os.getpid(), uuid.uuid4().hex[:6])
        self.net = self.p + "-net"
        self.vol = self.p + "-cas"
        self.sched = self.p + "-sched"
        self.workers = [self.p + "-w1", self.p + "-w2"]
        self.client = None
        self.created = []
        self.port = None
        self.pki = None  # a test_pki.TestPki: TLS, client certs, a token

    def start(self):
        docker("image", "inspect", IMAGE)
        docker("network", "create", "--label", "cargo-distbuild-test=" +
               self.p, self.net)
        docker("volume", "create", "--label", "cargo-distbuild-test=" +
               self.p, self.vol)
        self.start_sched()
        tls = []
        if self.pki:
            # The token travels in the environment, the PEM files through a
            # read-only mount, as container/README.md shows.
            tls = ["-v", self.pki.dir + ":/pki:ro", "-e",
                   "CARGO_DISTBUILD_REMOTE_HEADERS=authorization=Bearer " +
                   self.pki.token]
        for w in self.workers:
            docker("run", "-d", "--name", w, "--hostname", w, "--network",
                   self.net, "--label", "cargo-distbuild-test=" + self.p,
                   *WORKER_PRIV, *tls, IMAGE, "worker", "run", "--id", w,
                   "--scheduler", ("grpcs://sched:8980" if self.pki
                                   else "sched:8980"), "--port", "6001",
                   "--cache-dir", "/var/lib/cargo-distbuild/worker",
                   *(["--tls-ca", "/pki/ca.pem", "--tls-cert",
                      "/pki/client.pem", "--tls-key", "/pki/client.key"]
                     if self.pki else []))
        self.wait_workers(2)
        for w in self.workers:
            line = self.logs(w).splitlines()[0]
            log("%s: %s" % (w, line))
            assert FULL_SANDBOX in line, "sandbox incomplete: " + line
            assert "limits=memory,pids,cpu,timeout" in line, line
            assert "unavailable=" not in line, line

    def start_sched(self):
        docker("run", "-d", "--name", self.sched, "--network", self.net,
               "--network-alias", "sched", "--label",
               "cargo-distbuild-test=" + self.p, "-v",
               self.vol + ":/var/lib/cargo-distbuild/cas", "-p",
               "127.0.0.1::8980",
               *(["-v", self.pki.dir + ":/pki:ro"] if self.pki else []),
               IMAGE, "scheduler", "run",
               *(["--tls-cert", "/pki/server.pem", "--tls-key",
                  "/pki/server.key", "--tls-client-ca", "/pki/ca.pem",
                  "--auth-token-file", "/pki/tokens"] if self.pki else []))
        self.connect()

    def connect(self):
        import e2e_lib
        deadline = time.time() + 30
        port = None
        while time.time() < deadline:
            out = docker("port", self.sched, "8980/tcp", check=False)
            m = re.search(r"127\.0\.0\.1:(\d+)", out)
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.2)
        assert port, "scheduler port not published"
        self.port = port
        if self.client:
            self.client.close()
        self.client = (e2e_lib.Client("grpcs://localhost:%d" % port,
                                      self.pki.creds()) if self.pki else
                       e2e_lib.Client("127.0.0.1:%d" % port))
        while time.time() < deadline:
            try:
                self.client.find_missing([])
                return
            except Exception:  # noqa: BLE001 (grpc errors while starting)
                time.sleep(0.3)
        raise RuntimeError("scheduler not reachable on 127.0.0.1:%d\n%s" %
                           (port, self.logs(self.sched)))

    def metric(self, container, port, name):
        out = docker("exec", container, "curl", "-fsS",
                     "http://127.0.0.1:%d/metrics" % port, check=False,
                     timeout=20)
        # name may carry its labels, e.g. 'x_total{outcome="requeued"}'.
        pat = (re.escape(name) if "{" in name else
               re.escape(name) + r"(?:\{[^}]*\})?")
        m = re.search(r"^%s (\S+)$" % pat, out, re.M)
        return float(m.group(1)) if m else -1

    def wait_workers(self, n, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.metric(self.sched, 8990,
                           "distbuild_scheduler_workers") >= n:
                return
            time.sleep(0.5)
        raise RuntimeError("%d workers did not connect\n%s" %
                           (n, self.dump()))

    def logs(self, name):
        return docker("logs", name, check=False)

    def dump(self):
        return "\n".join("---- %s\n%s" % (c, self.logs(c)[-3000:])
                         for c in [self.sched] + self.workers)

    def close(self):
        if self.client:
            self.client.close()
        label = "label=cargo-distbuild-test=" + self.p
        ids = docker("ps", "-aq", "--filter", label, check=False).split()
        if ids:
            docker("rm", "-f", "-v", *ids, check=False)
        docker("network", "rm", self.net, check=False)
        docker("volume", "rm", "-f", self.vol, check=False)
        if self.pki:
            shutil.rmtree(self.pki.dir, ignore_errors=True)


def ok(r, c, what=""):
    if r.status.code != 0 or r.result.exit_code != 0:
        print(c.dump())
        raise AssertionError("%s: status %s exit %d stderr %r" % (
            what, r.status, r.result.exit_code,
            c.client.read_blob(r.result.stderr_digest)
            if r.result.HasField("stderr_digest") else b""))


def execute_all(c, digests, timeout=120):
    res = [None] * len(digests)

    def run(i):
        res[i] = c.client.execute(digests[i], timeout=timeout)
    ths = [threading.Thread(target=run, args=(i,))
           for i in range(len(digests))]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return res


SH = "/bin/sh"


def case_exec(c):
    """Real actions from the host run sandboxed on both worker containers."""
    acts = []
    for i in range(8):
        dg, _ = c.client.make_action(
            [SH, "-c", "sleep 1; id -u > uid; cat /proc/self/cgroup > cg; "
             "cat in.txt > out.txt; echo %d >> out.txt" % i],
            tree=__import__("e2e_lib").Tree({"in.txt": b"hello\n"}),
            outputs=["uid", "cg", "out.txt"])
        acts.append(dg)
    t = time.time()
    res = execute_all(c, acts)
    log("8 actions in %.1fs" % (time.time() - t))
    seen = set()
    for i, r in enumerate(res):
        ok(r, c, "action %d" % i)
        seen.add(r.result.execution_metadata.worker)
        assert c.client.output_file(r.result, "out.txt") == \
            b"hello\n%d\n" % i
        assert c.client.output_file(r.result, "uid") == b"1000\n"
        cg = c.client.output_file(r.result, "cg").decode()
        assert re.search(r"memory:.*/sbx-\d+-\d+", cg), cg
    log("worker ids in ExecutedActionMetadata: %s" % sorted(seen))
    assert seen == set(c.workers), seen
    # The same actions again: answered from the action cache.
    res = execute_all(c, acts)
    assert all(r.cached_result for r in res), [r.cached_result for r in res]


def start_on_a_worker(c):
    """Execute a 4 s action (output "o": "done") in a thread; return (its
    digest, the thread, the box its result lands in, the worker running
    it)."""
    dg, _ = c.client.make_action([SH, "-c", "sleep 4; echo done > o"],
                                 outputs=["o"])
    box = {}
    th = threading.Thread(target=lambda: box.update(
        r=c.client.execute(dg, timeout=120)))
    th.start()
    deadline = time.time() + 20
    while time.time() < deadline:
        for w in c.workers:
            if c.metric(w, 6001, "distbuild_worker_busy_slots") > 0:
                return dg, th, box, w
        time.sleep(0.1)
    raise AssertionError("no worker picked the action up\n" + c.dump())


def finished_elsewhere(c, th, box, victim, what):
    """The action of start_on_a_worker() ended OK on the other worker."""
    th.join(150)
    assert "r" in box, "execute did not return " + what
    r = box["r"]
    ok(r, c, what)
    other = [w for w in c.workers if w != victim][0]
    assert r.result.execution_metadata.worker == other, \
        r.result.execution_metadata.worker
    assert c.client.output_file(r.result, "o") == b"done\n"
    log("requeued and finished on %s" % other)
    return other


def case_worker_kill(c):
    """`docker kill` the worker running an action: it is requeued."""
    _, th, box, victim = start_on_a_worker(c)
    docker("kill", victim)
    log("killed %s mid-action" % victim)
    finished_elsewhere(c, th, box, victim, "after docker kill")


REQUEUED = 'distbuild_scheduler_actions_total{outcome="requeued"}'
EXECUTED = 'distbuild_scheduler_actions_total{outcome="executed"}'


def both_workers_run(c, tag):
    """Fresh actions spread over both workers again."""
    acts = [c.client.make_action(
        [SH, "-c", "sleep 1; echo %s %d > o" % (tag, i)], outputs=["o"])[0]
        for i in range(8)]
    seen = set()
    for i, r in enumerate(execute_all(c, acts)):
        ok(r, c, "%s action %d" % (tag, i))
        seen.add(r.result.execution_metadata.worker)
    log("%s: actions ran on %s" % (tag, sorted(seen)))
    assert seen == set(c.workers), seen


def wait_log(c, name, pattern, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = re.search(pattern, c.logs(name))
        if m:
            return m
        time.sleep(0.5)
    raise AssertionError("%s never logged %r\n%s" % (name, pattern,
                                                      c.dump()))


def case_worker_pause(c):
    """`docker pause` freezes the worker running an action: a host that
    stalls with its TCP connection open. The scheduler requeues the action
    after the missed heartbeats; when the worker thaws, its late result
    for the dead lease is refused and it joins again."""
    dg, th, box, victim = start_on_a_worker(c)
    docker("pause", victim)
    log("paused %s mid-action" % victim)
    try:
        other = finished_elsewhere(c, th, box, victim, "while paused")
    finally:
        docker("unpause", victim)
    assert c.metric(c.sched, 8990, REQUEUED) == 1
    c.wait_workers(2)
    m = wait_log(c, c.sched, r"ignoring Complete for stale lease \S+ from %s"
                 % re.escape(victim))
    log("scheduler: %s" % m.group(0))
    assert c.metric(c.sched, 8990, EXECUTED) == 1, "stale result counted"
    ar = c.client.get_action_result(dg)
    assert ar.execution_metadata.worker == other, ar.execution_metadata
    both_workers_run(c, "after-pause")


def case_worker_partition(c):
    """`docker network disconnect` cuts the worker running an action off
    the network: the action is requeued, and once the network is back the
    worker finds its session gone and joins again."""
    _, th, box, victim = start_on_a_worker(c)
    docker("network", "disconnect", c.net, victim)
    log("cut %s off mid-action" % victim)
    try:
        finished_elsewhere(c, th, box, victim, "while cut off")
    finally:
        docker("network", "connect", c.net, victim)
    assert c.metric(c.sched, 8990, REQUEUED) == 1
    t = time.time()
    c.wait_workers(2, timeout=120)
    log("%s back after %.1fs" % (victim, time.time() - t))
    m = wait_log(c, victim, r"session \S+ ended: .*; reconnecting")
    log("%s: %s" % (victim, m.group(0)))
    both_workers_run(c, "after-partition")


def case_sched_restart(c):
    """The action cache lives on the scheduler's volume: after a restart of
    the scheduler container the second run is all hits."""
    import e2e_lib
    tree = e2e_lib.Tree({"src.txt": b"restart me\n"})
    acts = []
    for i in range(6):
        dg, _ = c.client.make_action(
            [SH, "-c", "tr a-z A-Z < src.txt > o; echo %d >> o" % i], tree,
            outputs=["o"], salt="restart-%s-%d" % (c.p, i))
        acts.append(dg)
    first = execute_all(c, acts)
    for i, r in enumerate(first):
        ok(r, c, "first run %d" % i)
        assert not r.cached_result
    docker("restart", "-t", "20", c.sched, timeout=60)
    log("scheduler container restarted")
    c.connect()
    c.wait_workers(2)
    second = execute_all(c, acts)
    hits = sum(1 for r in second if r.status.code == 0 and r.cached_result)
    log("second run: %d/%d action-cache hits" % (hits, len(acts)))
    assert hits == len(acts), [(r.status.code, r.cached_result)
                               for r in second]
    for a, b in zip(first, second):
        assert c.client.output_file(b.result, "o") == \
            c.client.output_file(a.result, "o")
    # A fresh action still runs on the re-connected workers.
    dg, _ = c.client.make_action([SH, "-c", "echo after > o"], outputs=["o"])
    r = c.client.execute(dg, timeout=60)
    ok(r, c, "after restart")
    assert r.result.execution_metadata.worker in c.workers


# ---- cargo distbuild build from the host -----------------------------------

EXPECTED = ["Welcome to TestApp v1.0.0", "[TestApp] 5 + 3 = 8",
            "[TestApp] fib(30) = 832040, gcd(84, 36) = 12"]
DISPATCH = re.compile(r"dispatching \S+ \(action \S+\) to worker (\S+) ")


def copy_ws(dst):
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "test-workspace"), dst,
                    ignore=shutil.ignore_patterns("target"))


def artifacts(ws):
    deps = os.path.join(ws, "target", "debug", "deps")
    out = {f: open(os.path.join(deps, f), "rb").read()
           for f in sorted(os.listdir(deps))
           if f.endswith((".rlib", ".rmeta"))}
    out["main-binary"] = open(os.path.join(ws, "target", "debug",
                                           "main-binary"), "rb").read()
    return out


def run_binary(ws):
    return subprocess.run([os.path.join(ws, "target/debug/main-binary")],
                          capture_output=True, text=True,
                          check=True).stdout.splitlines()


class Host:
    """cargo / cargo distbuild on the host against the published port."""

    def __init__(self, c, base):
        self.c = c
        self.env = dict(os.environ)
        for k in ("RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER",
                  "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR",
                  "CARGO_DISTBUILD_LOG", "TESTAPP_CHANNEL",
                  "TESTAPP_GREETING"):
            self.env.pop(k, None)
        self.env.update({
            "PATH": BIN_DIR + os.pathsep + os.environ.get("PATH", ""),
            "CARGO_HOME": os.path.join(base, "cargo-home"),
            "CARGO_DISTBUILD_CACHE_DIR": os.path.join(base, "cache"),
            "CARGO_DISTBUILD_STATS_DIR": os.path.join(base, "stats"),
            "CARGO_DISTBUILD_TIMEOUT": "120",
            "CARGO_INCREMENTAL": "0",
            "CARGO_TERM_COLOR": "never",
            "CARGO_TERM_PROGRESS_WHEN": "never",
        })

    def run(self, cmd, ws, check=True):
        env = dict(self.env,
                   CARGO_DISTBUILD_SCHEDULER="127.0.0.1:%d" % self.c.port)
        return subprocess.run(cmd, cwd=ws, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=240, check=False)

    def checked(self, cmd, ws):
        p = self.run(cmd, ws)
        if p.returncode != 0:
            print(p.stdout)
            raise AssertionError("%s failed (%d)" % (" ".join(cmd),
                                                     p.returncode))
        return p

    def distbuild_cmd(self):
        return ["cargo", "distbuild", "build", "--offline"]

    def distbuild(self, ws):
        t = time.time()
        p = self.checked(self.distbuild_cmd(), ws)
        dt = time.time() - t
        st = json.loads(self.checked(["cargo-distbuild", "stats", "--json"],
                                     ws).stdout)["last_build"]
        return p, st, dt


def dispatched(c):
    return DISPATCH.findall(c.logs(c.sched))


def case_cargo_build(c):
    """`cargo distbuild build` of test-workspace from the host: compiles run
    in both worker containers, outputs byte-identical to a local build, warm
    rebuild all hits, and a `docker kill`ed worker mid-build is survived."""
    if not BIN_DIR or not shutil.which("cargo"):
        raise AssertionError("cargo_build needs BIN_DIR and cargo on PATH")
    for b in ("cargo-distbuild", "cargo-distbuild-wrapper",
              "cargo-distbuild-wrapper-remote"):
        assert os.access(os.path.join(BIN_DIR, b), os.X_OK), b
    home = os.path.expanduser("~")
    os.makedirs(os.path.join(home, ".cache"), exist_ok=True)
    # Next to the toolchain (~/.rustup): the wrapper's exec root is the
    # deepest common ancestor of both.
    base = tempfile.mkdtemp(prefix="cdbt-cargo-",
                            dir=os.path.join(home, ".cache"))
    try:
        _cargo_build(c, Host(c, base), base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cargo_build(c, h, base):
    ws = os.path.join(base, "ws")

    # 1. Plain local build at the path, moved aside; then distributed there.
    copy_ws(ws)
    t = time.time()
    h.checked(["cargo", "build", "--offline"], ws)
    log("local cargo build: %.1fs" % (time.time() - t))
    local = artifacts(ws)
    os.rename(ws, ws + "-local")
    copy_ws(ws)
    d0 = len(dispatched(c))
    p, st, dt = h.distbuild(ws)
    log("cold cargo distbuild build: %.1fs (toolchain upload into an empty "
        "CAS included)" % dt)
    log("stats: %s" % {k: st[k] for k in ("actions", "remote_executions",
                                          "fallbacks", "local")})
    assert st["actions"] == 5 and st["remote_executions"] == 5 and \
        st["fallbacks"] == 0 and st["local"] == 2, (st, p.stdout)
    on = re.findall(r"\[distbuild\] (\w+): compiled on (\S+) in", p.stdout)
    log("compiled on: %s" % on)
    assert len(on) == 5 and {w for _, w in on} <= set(c.workers), p.stdout
    disp = dispatched(c)[d0:]
    log("scheduler dispatches: %s" % disp)
    assert len(disp) == 5, disp
    assert sorted(disp) == sorted(w for _, w in on), (disp, on)
    seen = set(disp)
    assert run_binary(ws)[:3] == EXPECTED, run_binary(ws)
    remote = artifacts(ws)
    assert sorted(remote) == sorted(local), (sorted(remote), sorted(local))
    diff = [k for k in local if remote[k] != local[k]]
    assert not diff, "differ from the local build: %s" % diff
    log("%d rlib/rmeta files and the binary byte-identical to local"
        % (len(local) - 1))

    # 2. cargo clean + rebuild: every action an action-cache hit.
    h.checked(["cargo", "clean"], ws)
    d0 = len(dispatched(c))
    p, st, dt = h.distbuild(ws)
    log("warm cargo distbuild build (after cargo clean): %.1fs" % dt)
    assert st["actions"] == 5 and st["action_cache_hits"] == 5 and \
        st["remote_executions"] == 0 and st["fallbacks"] == 0, st
    assert len(dispatched(c)) == d0, "an Execute reached a worker"
    assert artifacts(ws) == local, "hit outputs differ"
    log("warm: 5/5 action-cache hits, no dispatch, outputs identical")

    # 3. A fresh checkout elsewhere (new paths: all misses) with lib-utils
    # touched, while one worker is `docker kill`ed at its first dispatch.
    ws2 = os.path.join(base, "ws-kill")
    copy_ws(ws2)
    with open(os.path.join(ws2, "lib-utils/src/lib.rs"), "a") as f:
        f.write("\npub fn container_marker() -> u32 {\n    6\n}\n")
    d0 = len(dispatched(c))
    env = dict(h.env, CARGO_DISTBUILD_SCHEDULER="127.0.0.1:%d" % c.port)
    proc = subprocess.Popen(h.distbuild_cmd(), cwd=ws2, env=env,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline and \
            proc.poll() is None:
        new = dispatched(c)[d0:]
        if new:
            victim = new[0]
            docker("kill", victim)
        else:
            time.sleep(0.05)
    out = proc.communicate(timeout=240)[0]
    assert victim, "no dispatch seen before the build ended\n" + out
    slog = c.logs(c.sched)
    log("killed %s at its first dispatch; scheduler: %s" % (victim, [
        l.split("sched: ", 1)[-1][:110] for l in slog.splitlines()
        if ("requeued" in l or "worker left" in l) and victim in l]))
    if proc.returncode != 0:
        print(out)
    assert proc.returncode == 0, "build failed after docker kill"
    st = json.loads(h.checked(["cargo-distbuild", "stats", "--json"],
                              ws2).stdout)["last_build"]
    log("after kill: %s" % {k: st[k] for k in (
        "actions", "remote_executions", "fallbacks", "fallback_reasons")})
    assert st["actions"] == 5, st
    assert run_binary(ws2)[0] == "Welcome to TestApp v1.0.0"
    disp = dispatched(c)[d0:]
    seen |= set(disp)
    log("workers dispatched to over the run: %s" % sorted(seen))
    assert seen == set(c.workers), seen


def case_tls(c):
    """Scheduler and workers in containers over mutual TLS with a bearer
    token (files mounted read-only, the token in the environment); the
    host's client uses TLS too. Actions run on both workers."""
    for w in c.workers:
        assert "connected to grpcs://sched:8980" in c.logs(w), c.logs(w)
    assert "client certificates required; bearer token required" in \
        c.logs(c.sched), c.logs(c.sched)
    case_exec(c)


CASES = {"exec": case_exec, "worker_kill": case_worker_kill,
         "worker_pause": case_worker_pause,
         "worker_partition": case_worker_partition,
         "sched_restart": case_sched_restart,
         "cargo_build": case_cargo_build, "tls": case_tls}


def main():
    why = docker_available()
    if not why and CASE == "cargo_build" and not shutil.which("cargo"):
        why = "cargo not on PATH"
    elif why:
        why = "no Docker engine (%s)" % why
    if why:
        print("container %s: SKIP: %s" % (CASE, why))
        return SKIP
    if CASE == "image":
        build_images()
        return 0
    c = Cluster()
    if CASE == "tls":
        sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
        from test_pki import TestPki
        d = tempfile.mkdtemp(prefix="cdbt-pki-")
        c.pki = TestPki(d, names=("sched", "localhost"))
        # The scheduler runs as an unprivileged user in its container.
        os.chmod(d, 0o755)
        for f in os.listdir(d):
            os.chmod(os.path.join(d, f), 0o644)
    try:
        t = time.time()
        c.start()
        log("cluster up in %.1fs" % (time.time() - t))
        CASES[CASE](c)
        log("ok")
        return 0
    except Exception:
        print(c.dump())
        raise
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
