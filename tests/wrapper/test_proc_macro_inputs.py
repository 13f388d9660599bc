#!/usr/bin/env python3
"""End to end: a proc-macro that reads a file no dep-info names.

A proc-macro runs inside rustc and may read files, variables or the network
(sqlx reads its query data and DATABASE_URL) without telling rustc, so the
action lacks them and the remote compile fails where a local one succeeds.
With a scheduler and a real worker:

1. the first compile of the crate fails remotely and runs locally (no
   dep-info known yet); the build succeeds;
2. after an edit (dep-info now known), the remote failure is again not
   reported: the crate uses proc-macros, so local rustc decides; the build
   succeeds;
3. a crate that uses a proc-macro harmlessly still runs remotely;
4. a genuine error in the first crate fails the build with the diagnostics
   of local rustc, and nothing is cached.

Exit 77 = skipped.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_wrapper_e2e import check, diagnostics, run_edge_case  # noqa: E402

FILES = {
    "Cargo.toml": '[workspace]\nmembers = ["pmac", "user", "plain"]\n'
                  'resolver = "2"\n',
    "shared.txt": "hello from outside the package\n",
    "pmac/Cargo.toml": '[package]\nname = "pmac"\nversion = "0.1.0"\n'
                       'edition = "2021"\n\n[lib]\nproc-macro = true\n',
    "pmac/src/lib.rs": """use proc_macro::TokenStream;

/// The workspace's shared.txt as a string literal, read without telling
/// rustc (no dep-info names it).
#[proc_macro]
pub fn shared_text(_: TokenStream) -> TokenStream {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    let p = std::path::Path::new(&dir).join("../shared.txt");
    let s = std::fs::read_to_string(&p).expect("shared.txt");
    format!("{:?}", s.trim()).parse().unwrap()
}

/// Reads nothing.
#[proc_macro]
pub fn answer(_: TokenStream) -> TokenStream {
    "42u32".parse().unwrap()
}
""",
    "user/Cargo.toml": '[package]\nname = "user"\nversion = "0.1.0"\n'
                       'edition = "2021"\n\n[dependencies]\n'
                       'pmac = { path = "../pmac" }\n',
    "user/src/lib.rs": "pub fn text() -> &'static str {\n"
                       "    pmac::shared_text!()\n}\n",
    "plain/Cargo.toml": '[package]\nname = "plain"\nversion = "0.1.0"\n'
                        'edition = "2021"\n\n[dependencies]\n'
                        'pmac = { path = "../pmac" }\n',
    "plain/src/lib.rs": "pub fn answer() -> u32 {\n    pmac::answer!()\n}\n",
}


def write(ws, rel, text, mode="w"):
    path = os.path.join(ws, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def lines(out, word):
    return [l.strip() for l in out.splitlines()
            if l.startswith("[distbuild] %s:" % word)]


def scenario(base, cl, E, ws):
    for rel, text in FILES.items():
        write(ws, rel, text)
    cl.start_scheduler()
    cl.start_workers(1)

    print("1. first compile: the remote failure is not reported")
    p, st = E.distbuild(ws)
    first = p.stdout
    check(any("remote compile failed" in l for l in lines(p.stdout,
                                                           "user")),
          "user: %s" % lines(p.stdout, "user")[-1])
    check(st["fallbacks"] == 1, "one fallback, the build succeeds")

    print("2. after an edit: still local rustc's verdict")
    write(ws, "user/src/lib.rs", "pub fn one() -> u32 {\n    1\n}\n", "a")
    p, st = E.distbuild(ws)
    check(any("uses proc-macros" in l for l in lines(p.stdout, "user")),
          "user: %s" % lines(p.stdout, "user")[-1])
    check(st["fallbacks"] == 1 and st["remote_executions"] == 0,
          "the build succeeds through local rustc")

    print("3. a harmless proc-macro user runs remotely")
    check(any("compiled on" in l for l in lines(first, "plain")),
          "plain: %s" % lines(first, "plain")[-1])

    print("4. a genuine error: local rustc's diagnostics, not cached")
    write(ws, "user/src/lib.rs",
          'pub fn bad() -> u32 {\n    "not a number"\n}\n', "a")
    lp = E.cargo(["build", "--offline"], ws,
                 {"CARGO_TARGET_DIR": os.path.join(base, "local")},
                 check_rc=False)
    for attempt in (1, 2):
        p, st = E.distbuild(ws, check_rc=False)
        check(p.returncode != 0 and lp.returncode != 0 and
              diagnostics(p.stdout) == diagnostics(lp.stdout),
              "build %d fails with local rustc's diagnostics" % attempt)
        check(st["action_cache_hits"] == 0 and
              any("uses proc-macros" in l for l in lines(p.stdout,
                                                         "user")),
              "build %d: tried remotely again, no cached failure"
              % attempt)


def main():
    return run_edge_case("distbuild-procmacro-", scenario,
                         ("sched/log", "worker-1.log"))


if __name__ == "__main__":
    sys.exit(main())
