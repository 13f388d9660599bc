#!/usr/bin/env python3
"""End to end: crates built with -C target-cpu=native.

rustc compiles such a crate for the CPU it runs on, so the action must name
the client's CPU (platform property host-cpu) and only a worker with the
same CPU may run it. With a scheduler and real workers:

1. a worker on this machine (same CPU) runs the native compile, and the
   rlib is byte-identical to a local build with the same flags;
2. with only a worker that claims another CPU: the same action is still an
   action-cache hit (same client CPU); a changed crate is not sent to that
   worker but compiled locally, with the scheduler's reason and without
   waiting out a fresh queue timeout per crate; the same crate without
   native runs remotely on that worker.

Exit 77 = skipped.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_wrapper_e2e import (Fail, check, make_crate,  # noqa: E402
                              run_edge_case)

LIB = """
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
pub fn scale(v: &mut [f64], k: f64) {
    for x in v.iter_mut() {
        *x *= k;
    }
}
"""
NATIVE = {"RUSTFLAGS": "-C target-cpu=native"}


def rlib(ws):
    deps = os.path.join(ws, "target", "debug", "deps")
    names = [f for f in os.listdir(deps) if f.endswith(".rlib")]
    if len(names) != 1:
        raise Fail("expected one rlib in %s, found %s" % (deps, names))
    return open(os.path.join(deps, names[0]), "rb").read()


def start_worker(cl, wid, extra=()):
    log = open(os.path.join(cl.base, wid + ".log"), "ab")
    cl.procs[wid] = subprocess.Popen(
        [cl.bin, "worker", "run", "--id", wid, "--scheduler",
         "127.0.0.1:%d" % cl.port, "--cache-dir",
         os.path.join(cl.base, wid)] + list(extra), stdout=log, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        if "worker joined: %s " % wid in cl.sched_log():
            return
        time.sleep(0.1)
    raise Fail("%s did not join" % wid)


def scenario(base, cl, E, ws):
    make_crate(ws, "nat", LIB)
    cl.start_scheduler(extra=["--queue-timeout", "5"])
    start_worker(cl, "same-cpu")
    joined = [l for l in cl.sched_log().splitlines()
              if "worker joined: same-cpu" in l][0]
    check("host-cpu=" in joined,
          "a worker advertises its CPU: " + joined.split("platform ")[1]
          .split(";")[0])

    print("1. native crate, worker on the same CPU")
    p, st = E.distbuild(ws, NATIVE)
    check(st["remote_executions"] == 1 and st["fallbacks"] == 0,
          "it runs remotely (%d remote, %d fallbacks)"
          % (st["remote_executions"], st["fallbacks"]))
    remote = rlib(ws)
    E.cargo(["clean", "-q"], ws)
    E.cargo(["build", "--offline", "-q"], ws, NATIVE)
    check(rlib(ws) == remote,
          "the rlib is byte-identical to a local native build")

    print("2. only a worker that claims another CPU")
    cl.stop("same-cpu")
    start_worker(cl, "other-cpu", ["--platform", "host-cpu=other"])
    E.cargo(["clean", "-q"], ws)
    p, st = E.distbuild(ws, NATIVE)
    check(st["action_cache_hits"] == 1,
          "the native action is still a cache hit for this client's CPU")
    with open(os.path.join(ws, "src", "lib.rs"), "a") as f:
        f.write("pub fn one() -> u32 { 1 }\n")
    # The same-CPU worker left just now: the scheduler gives it the
    # queue timeout (5 s) to come back before the action fails.
    t = time.time()
    p, st = E.distbuild(ws, NATIVE)
    took = time.time() - t
    check(st["fallbacks"] == 1 and st["remote_executions"] == 0,
          "a changed native crate is not run on the other CPU "
          "(%d fallback)" % st["fallbacks"])
    check("no connected worker matches" in p.stdout and
          "host-cpu=" in p.stdout,
          "the fallback line says why: " + [
              l for l in p.stdout.splitlines()
              if "running rustc locally" in l][0].strip())
    check(took < 20, "after the queue timeout, not longer (%.1fs)" % took)
    with open(os.path.join(ws, "src", "lib.rs"), "a") as f:
        f.write("pub fn two() -> u32 { 2 }\n")
    t = time.time()
    p, st = E.distbuild(ws, NATIVE)
    took = time.time() - t
    check(st["fallbacks"] == 1,
          "once no same-CPU worker has been there for the queue "
          "timeout, the next one falls back at once (%.1fs)" % took)
    check(took < 4, "without waiting the timeout out again")
    p, st = E.distbuild(ws)
    check(st["remote_executions"] == 1 and st["fallbacks"] == 0,
          "without native, the crate runs on that worker")


def main():
    return run_edge_case("distbuild-native-", scenario,
                         ("sched/log", "same-cpu.log", "other-cpu.log"))


if __name__ == "__main__":
    sys.exit(main())
