#!/usr/bin/env python3
"""The client server of `cargo distbuild build` (wrapper/wrap_serve.h).

`cargo-distbuild build` runs $CARGO with CARGO_DISTBUILD_CLIENT_SOCKET set.
Here $CARGO is this very script (in "fake cargo" mode), so the checks run
while the real server is up:

  1. a call handed over through the socket gets the front's stdout, stderr,
     an extra inherited descriptor, cwd, umask and environment, and the
     front exits with rustc's code;
  2. malformed requests are refused (no 'A'), logged, and the server keeps
     serving;
  3. with the socket gone the front runs the call itself (the remote client);
  4. killing the front kills the call and its rustc;
  5. killing the call's process makes the front fail with one line, and its
     rustc dies too;
  6. the socket lives in a 0700 directory, removed when the build ends,
     also when the build is stopped by SIGTERM or a Ctrl-C (SIGINT to the
     process group).

rustc is a fake too (a script in a fake toolchain), and the scheduler
address is a dead port, so each call falls back to "local" rustc, which is
the fake: what it sees is what a real rustc would have seen.
"""
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

FAKE_RUSTC = r'''#!%(py)s
import json, os, sys, time
mode = os.environ.get("FAKE_MODE", "report")
if mode == "report":
    um = os.umask(0)
    if os.environ.get("FAKE_FD7"):
        os.write(7, b"fd7 ok\n")
    sys.stdout.write("OUT-LINE\n")
    sys.stderr.write("ERR-LINE\n")
    with open(os.environ["FAKE_REPORT"], "w") as f:
        json.dump({"cwd": os.getcwd(), "umask": um,
                   "mark": os.environ.get("FAKE_MARK")}, f)
    sys.exit(3)
with open(os.environ["FAKE_PIDFILE"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(60)
'''


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)
    print("  ok: " + msg, flush=True)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, secs=5.0):
    end = time.time() + secs
    while time.time() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_file(path, secs=10.0):
    end = time.time() + secs
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.02)
    return False


def rustc_argv(base):
    src = os.path.join(base, "src", "lib.rs")
    return [os.path.join(base, "tc", "bin", "rustc"), "--crate-name", "demo",
            "--edition=2021", src, "--crate-type", "lib",
            "--emit=dep-info,metadata,link", "--out-dir",
            os.path.join(base, "out")]


def front(base, extra=None, **kw):
    env = dict(os.environ)
    env.update(extra or {})
    return [os.path.join(os.environ["FAKE_BINDIR"], "cargo-distbuild-wrapper")
            ] + rustc_argv(base), env


def fake_cargo():
    """Runs inside `cargo-distbuild build`."""
    base = os.environ["FAKE_BASE"]
    sock = os.environ.get("CARGO_DISTBUILD_CLIENT_SOCKET", "")
    with open(os.path.join(base, "socket-path"), "w") as f:
        f.write(sock)
    if os.environ.get("FAKE_SLEEP"):
        time.sleep(60)  # until a signal ends the build
        return 0
    check(sock != "" and stat.S_ISSOCK(os.stat(sock).st_mode),
          "CARGO_DISTBUILD_CLIENT_SOCKET names a socket")
    check(stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700,
          "its directory is private (0700)")

    print("1. a call through the server", flush=True)
    report = os.path.join(base, "report.json")
    fd7 = os.path.join(base, "fd7.txt")
    work = os.path.join(base, "work")
    cmd, env = front(base, {"FAKE_MODE": "report", "FAKE_REPORT": report,
                            "FAKE_MARK": "m-42", "FAKE_FD7": "1",
                            "CARGO_DISTBUILD_LOG": "debug"})
    with open(fd7, "wb") as f7:
        os.dup2(f7.fileno(), 7)
        os.set_inheritable(7, True)
        old = os.umask(0o027)
        p = subprocess.run(cmd, cwd=work, env=env, capture_output=True,
                           text=True, pass_fds=(7,))
        os.umask(old)
        os.close(7)
    check(p.returncode == 3, "front exits with rustc's code (%d)"
          % p.returncode)
    check("client server: call" in p.stderr,
          "the call ran in the client server")
    check(p.stdout == "OUT-LINE\n", "rustc's stdout reached the front's: %r"
          % p.stdout)
    check("ERR-LINE" in p.stderr, "rustc's stderr reached the front's")
    check(open(fd7).read() == "fd7 ok\n", "an inherited descriptor (7) too")
    r = json.load(open(report))
    check(r["cwd"] == work, "cwd carried over")
    check(r["umask"] == 0o027, "umask carried over (%o)" % r["umask"])
    check(r["mark"] == "m-42", "environment carried over")

    print("2. malformed requests", flush=True)
    hdr = b"DBW1"
    bad = {
        "garbage": b"GARBAGE!" + b"x" * 64,
        "huge length": hdr + struct.pack("<I", 0xFFFFFFFF),
        "truncated": hdr + struct.pack("<I", 100) + b"\0" * 10,
        "fd count mismatch": hdr + struct.pack("<I", 20) +
        struct.pack("<IIIII", 2, 0, 1, 0o22, 1),
        "argc 0": hdr + struct.pack("<I", 18) +
        struct.pack("<IIII", 0, 0o22, 0, 0) + b"/\0",
        "strings short of counts": hdr + struct.pack("<I", 20) +
        struct.pack("<IIII", 0, 0o22, 3, 0) + b"/\0x\0",
    }
    for name, data in bad.items():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sock)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            got = s.recv(16)
        except ConnectionResetError:  # closed with our bytes unread
            got = b""
        s.close()
        check(got == b"", "%s: refused, nothing started" % name)
    cmd, env = front(base, {"FAKE_MODE": "report", "FAKE_REPORT": report})
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    check(p.returncode == 3 and p.stdout == "OUT-LINE\n",
          "the server still serves (%d, %r)" % (p.returncode, p.stderr[-200:]))

    print("3. no server: the front runs the call itself", flush=True)
    cmd, env = front(base, {"FAKE_MODE": "report", "FAKE_REPORT": report,
                            "CARGO_DISTBUILD_CLIENT_SOCKET":
                            os.path.join(base, "no-such.sock")})
    p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    check(p.returncode == 3 and p.stdout == "OUT-LINE\n",
          "same result without the server")

    print("4. the front is killed: the call and its rustc die", flush=True)
    pidfile = os.path.join(base, "pid4")
    cmd, env = front(base, {"FAKE_MODE": "sleep", "FAKE_PIDFILE": pidfile})
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    check(wait_file(pidfile), "rustc started")
    rpid = int(open(pidfile).read())
    p.kill()
    p.wait()
    check(wait_gone(rpid), "rustc %d killed with the front" % rpid)

    print("5. the call's process is killed: the front fails", flush=True)
    pidfile = os.path.join(base, "pid5")
    cmd, env = front(base, {"FAKE_MODE": "sleep", "FAKE_PIDFILE": pidfile})
    p = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    check(wait_file(pidfile), "rustc started")
    rpid = int(open(pidfile).read())
    with open("/proc/%d/stat" % rpid) as f:
        call_pid = int(f.read().split(")")[-1].split()[1])
    os.kill(call_pid, signal.SIGKILL)
    out, err = p.communicate(timeout=20)
    check(p.returncode == 1 and "client server went away" in err,
          "front exits 1 with one line: %r" % err[-120:])
    check(wait_gone(rpid), "rustc %d died with the call" % rpid)
    return 0


def main():
    if os.environ.get("FAKE_BASE"):
        try:
            return fake_cargo()
        except Fail as e:
            print("FAIL: %s" % e, flush=True)
            return 1
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    a = ap.parse_args()
    bindir = os.path.abspath(a.bin_dir)
    base = tempfile.mkdtemp(prefix="distbuild-client-server-")
    os.makedirs(os.path.join(base, "tc", "bin"))
    os.makedirs(os.path.join(base, "tc", "lib", "rustlib"))
    os.makedirs(os.path.join(base, "src"))
    os.makedirs(os.path.join(base, "out"))
    os.makedirs(os.path.join(base, "work"))
    with open(os.path.join(base, "src", "lib.rs"), "w") as f:
        f.write("pub fn demo() {}\n")
    rustc = os.path.join(base, "tc", "bin", "rustc")
    with open(rustc, "w") as f:
        f.write(FAKE_RUSTC % {"py": sys.executable})
    os.chmod(rustc, 0o755)
    # A port nothing listens on: every call falls back to the fake rustc.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    env = dict(os.environ)
    for k in ("CARGO_DISTBUILD_CLIENT_SOCKET", "CARGO_DISTBUILD_CLIENT_SERVER",
              "CARGO_DISTBUILD_LOG", "RUSTC_WRAPPER"):
        env.pop(k, None)
    cargo = os.path.join(base, "cargo")
    with open(cargo, "w") as f:
        f.write("#!/bin/sh\nexec '%s' '%s' \"$@\"\n"
                % (sys.executable, os.path.abspath(__file__)))
    os.chmod(cargo, 0o755)
    env.update({
        "CARGO": cargo,
        "FAKE_BASE": base,
        "FAKE_BINDIR": bindir,
        "CARGO_DISTBUILD_SCHEDULER": "127.0.0.1:%d" % dead,
        "CARGO_DISTBUILD_CACHE_DIR": os.path.join(base, "cache"),
        "CARGO_DISTBUILD_STATS_DIR": os.path.join(base, "stats"),
    })
    p = subprocess.run([os.path.join(bindir, "cargo-distbuild"), "build"],
                       env=env, capture_output=True, text=True, timeout=300)
    sys.stdout.write(p.stdout)
    try:
        check(p.returncode == 0, "the checks inside the build passed")
        check(p.stderr.count("client server: bad request") == 6,
              "each malformed request logged once:\n%s" % p.stderr[-800:])
        sock = open(os.path.join(base, "socket-path")).read()
        check(not os.path.exists(os.path.dirname(sock)),
              "socket directory removed after the build")
        for how in ("SIGTERM", "SIGINT to the group"):
            path = os.path.join(base, "socket-path")
            os.remove(path)
            b = subprocess.Popen([os.path.join(bindir, "cargo-distbuild"),
                                  "build"], env=dict(env, FAKE_SLEEP="1"),
                                 stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL,
                                 start_new_session=True)
            check(wait_file(path), "%s: build started" % how)
            sock = open(path).read()
            if how == "SIGTERM":
                b.send_signal(signal.SIGTERM)
            else:
                os.killpg(b.pid, signal.SIGINT)
            rc = b.wait(timeout=30)
            check(rc != 0 and not os.path.exists(os.path.dirname(sock)),
                  "%s: build ends (%d), socket directory removed" % (how, rc))
    except Fail as e:
        print("FAIL: %s" % e)
        print(p.stderr[-3000:])
        return 1
    subprocess.run(["rm", "-rf", base])
    print("client server: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
