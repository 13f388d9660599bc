#!/usr/bin/env python3
"""End to end: cargo distbuild against a scheduler that serves only TLS,
requires client certificates and a bearer token (grpcs://).

1. With the CA, the client certificate and the token in the environment,
   a crate compiles remotely; after `cargo clean` it is a cache hit.
2. Without the token, or trusting another CA, the build still succeeds
   through local fallback, and the fallback line names the cause.
3. The same settings from .distbuild/config.toml (relative paths, a
   remote_headers array) work from a crate directory, and the token from
   there is not in the environment of the build's build scripts.
The worker takes its token from CARGO_DISTBUILD_REMOTE_HEADERS.

Exit 77 = skipped.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
from test_pki import TestPki  # noqa: E402
from test_wrapper_e2e import (Fail, check, make_crate,  # noqa: E402
                              run_edge_case)

LIB = "pub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n"
TLS_ENV = ("CARGO_DISTBUILD_TLS_CA", "CARGO_DISTBUILD_TLS_CERT",
           "CARGO_DISTBUILD_TLS_KEY", "CARGO_DISTBUILD_REMOTE_HEADERS")


def edit(ws, n):
    with open(os.path.join(ws, "src", "lib.rs"), "a") as f:
        f.write("pub fn f%d() -> u32 { %d }\n" % (n, n))


def fallback_line(out):
    lines = [l.strip() for l in out.splitlines()
             if "running rustc locally" in l]
    return lines[0] if lines else "(no fallback line)\n" + out


def scenario(base, cl, E, ws):
    pki = TestPki(os.path.join(base, "pki"))
    make_crate(ws, "tlsdemo", LIB)
    cl.start_scheduler(extra=[
        "--tls-cert", pki.cert, "--tls-key", pki.key, "--tls-client-ca",
        pki.ca, "--auth-token-file", pki.tokens])
    target = "grpcs://localhost:%d" % cl.port
    log = open(os.path.join(base, "w1.log"), "ab")
    cl.procs["w1"] = subprocess.Popen(
        [cl.bin, "worker", "run", "--id", "w1", "--scheduler", target,
         "--cache-dir", os.path.join(base, "w1"), "--tls-ca", pki.ca,
         "--tls-cert", pki.client_cert, "--tls-key", pki.client_key],
        stdout=log, stderr=log, env=dict(
            os.environ, CARGO_DISTBUILD_REMOTE_HEADERS="authorization="
            "Bearer " + pki.token))
    deadline = time.time() + 15
    while "worker joined: w1 " not in cl.sched_log():
        if time.time() > deadline:
            raise Fail("the TLS worker did not join")
        time.sleep(0.1)
    good = {"CARGO_DISTBUILD_SCHEDULER": target,
            "CARGO_DISTBUILD_TLS_CA": pki.ca,
            "CARGO_DISTBUILD_TLS_CERT": pki.client_cert,
            "CARGO_DISTBUILD_TLS_KEY": pki.client_key,
            "CARGO_DISTBUILD_REMOTE_HEADERS":
                "x-team=rust\nauthorization=Bearer " + pki.token}

    print("1. certificate and token from the environment")
    p, st = E.distbuild(ws, good)
    check(st["remote_executions"] == 1 and st["fallbacks"] == 0,
          "the crate compiles on the worker over TLS (%d remote, %d "
          "fallbacks)" % (st["remote_executions"], st["fallbacks"]))
    E.cargo(["clean", "-q"], ws)
    p, st = E.distbuild(ws, good)
    check(st["action_cache_hits"] == 1, "after cargo clean: a cache hit")

    print("2. refused credentials fall back to local rustc")
    edit(ws, 1)
    notoken = dict(good, CARGO_DISTBUILD_REMOTE_HEADERS="x-team=rust")
    p, st = E.distbuild(ws, notoken)
    line = fallback_line(p.stdout)
    check(st["fallbacks"] == 1 and st["remote_executions"] == 0,
          "no token: local fallback, the build succeeds")
    check("missing credentials" in line, "the line says why: " + line)
    edit(ws, 2)
    p, st = E.distbuild(ws, dict(good,
                                 CARGO_DISTBUILD_TLS_CA=pki.other_ca))
    line = fallback_line(p.stdout)
    check(st["fallbacks"] == 1, "untrusted server certificate: fallback")
    check("TLS" in line, "the line says why: " + line)

    print("3. the same settings from .distbuild/config.toml")
    os.makedirs(os.path.join(ws, ".distbuild"))
    os.symlink(pki.dir, os.path.join(ws, "pki"))
    with open(os.path.join(ws, ".distbuild", "config.toml"), "w") as f:
        f.write('scheduler = "%s"\ntls_ca = "pki/ca.pem"\n'
                'tls_cert = "pki/client.pem"\ntls_key = "pki/client.key"\n'
                'remote_headers = ["x-team=rust", '
                '"authorization=Bearer %s"]\n' % (target, pki.token))
    edit(ws, 3)
    # A build script shows what everything cargo starts can read.
    dump = os.path.join(base, "build-script-env.txt")
    with open(os.path.join(ws, "build.rs"), "w") as f:
        f.write('fn main() {\n    let mut s = String::new();\n'
                '    for (k, v) in std::env::vars() {\n'
                '        s += &format!("{}={}\\n", k, v);\n    }\n'
                '    std::fs::write("%s", s).unwrap();\n}\n' % dump)
    cfg = {k: "" for k in TLS_ENV + ("CARGO_DISTBUILD_SCHEDULER",)}
    E.env = {k: v for k, v in E.env.items() if k not in cfg}
    p, st = E.distbuild(os.path.join(ws, "src"), cfg)
    check(st["remote_executions"] == 1 and st["fallbacks"] == 0,
          "config.toml settings reach the wrapper (%d remote, %d "
          "fallbacks)" % (st["remote_executions"], st["fallbacks"]))
    seen = open(dump).read()
    check("CARGO_DISTBUILD_TLS_CA=" in seen and pki.token not in seen,
          "the token from config.toml is not in a build script's "
          "environment (the other settings are)")


def main():
    return run_edge_case("distbuild-tls-", scenario,
                         ("sched/log", "w1.log"))


if __name__ == "__main__":
    sys.exit(main())
