"""End-to-end over TLS: a scheduler serving grpcs:// (mutual TLS and bearer
tokens), workers connecting with their certificate and token, and an
independent client (grpcio's own TLS stack). Usage: test_tls.py BINARY CASE.

Cases:
  cluster  - actions run through a TLS + mTLS + token scheduler; a 5 MiB
             blob goes both ways through ByteStream.
  refused  - plaintext, no client certificate, an untrusted server
             certificate, a missing and a wrong token are each refused
             with the right status and a log line that names the cause;
             the scheduler keeps serving.
  config   - a scheduler with unusable TLS or token settings does not
             start and says why.
  reload   - SIGHUP rotates the server certificate and the tokens without a
             restart; unusable new files leave the old settings in place.
"""
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_lib import (BS, Cluster, TestPki, Tree, Worker,  # noqa: E402
                     bs_pb2, check, grpc, pbd)

BIN = sys.argv[1]
CAPS = "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities"


def pki_dir():
    return tempfile.mkdtemp(prefix="pki-", dir=os.environ.get("E2E_TMP"))


def secure_cluster(pki, nworkers=2):
    sched = ["--tls-cert", pki.cert, "--tls-key", pki.key,
             "--tls-client-ca", pki.ca, "--auth-token-file", pki.tokens]
    worker = ["--tls-ca", pki.ca, "--tls-cert", pki.client_cert,
              "--tls-key", pki.client_key,
              "--remote-header", "authorization=Bearer " + pki.token]
    return Cluster(BIN, nworkers, worker_extra=worker, sched_extra=sched,
                   client_creds=pki.creds())


def wait_log(proc_log, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in proc_log():
            return True
        time.sleep(0.05)
    return False


def case_cluster():
    pki = TestPki(pki_dir())
    c = secure_cluster(pki)
    failed = True
    try:
        check("TLS (grpcs://), client certificates required; bearer token "
              "required" in c.sched.log(), "startup line", c)
        # Actions on both workers, over their TLS sessions.
        results = []
        for i in range(4):
            t = Tree({"in.txt": b"input %d\n" % i})
            dg, _ = c.client.make_action(
                ["/bin/sh", "-c", "tr a-z A-Z < in.txt > out.txt"], t,
                outputs=["out.txt"])
            r = c.client.execute(dg)
            check(r.status.code == 0 and r.result.exit_code == 0,
                  "action %d: %s" % (i, r), c)
            results.append(c.client.output_file(r.result, "out.txt"))
        check(results == [b"INPUT %d\n" % i for i in range(4)],
              "outputs %r" % results, c)
        check(c.executions() == 4, "executions %s" % c.executions(), c)
        # A blob larger than many TLS records, both ways.
        data = os.urandom(5 << 20)
        dg = pbd(data)
        c.client.write_stream(dg, [data[i:i + (1 << 20)]
                                   for i in range(0, len(data), 1 << 20)])
        got = b"".join(
            bs_pb2.ReadResponse.FromString(m).data
            for m in c.client.ch.unary_stream(BS + "Read")(
                bs_pb2.ReadRequest(resource_name="blobs/%s/%d" % (
                    dg.hash, dg.size_bytes)).SerializeToString(),
                timeout=30))
        check(got == data, "5 MiB round trip", c)
        miss = c.client.find_missing([dg])
        check(len(miss) == 0, "blob stored", c)
        failed = False
    finally:
        c.close(keep=failed)


def expect_error(ch, code, text):
    try:
        ch.unary_unary(CAPS)(b"", timeout=5)
    except grpc.RpcError as e:
        check(e.code() == code, "%s: got %s %s" % (text, e.code(),
                                                   e.details()))
        if text:
            check(text in (e.details() or ""), "%r not in %r" %
                  (text, e.details()))
        return
    raise AssertionError("call succeeded; expected %s" % code)


def case_refused():
    pki = TestPki(pki_dir())
    c = secure_cluster(pki, nworkers=1)
    failed = True
    port = c.sched.port
    local = "localhost:%d" % port
    try:
        # Plaintext HTTP/2 to the TLS port: refused, and the log says what
        # the client should do.
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        expect_error(ch, grpc.StatusCode.UNAVAILABLE, "")
        ch.close()
        check(wait_log(c.sched.log, "plaintext HTTP/2 (grpc://) client on "
                       "this TLS listener"), "plaintext log line", c)
        # No client certificate: the handshake fails.
        ch = grpc.secure_channel(local, pki.creds(client_cert=False))
        expect_error(ch, grpc.StatusCode.UNAVAILABLE, "")
        ch.close()
        check(wait_log(c.sched.log, "TLS handshake failed"),
              "handshake failure logged", c)
        # A server certificate the client does not trust.
        ch = grpc.secure_channel(local, pki.creds(ca=pki.other_ca))
        expect_error(ch, grpc.StatusCode.UNAVAILABLE, "")
        ch.close()
        # Good TLS, no token / a wrong token: UNAUTHENTICATED, nothing run.
        ch = grpc.secure_channel(local, pki.creds(token=False))
        expect_error(ch, grpc.StatusCode.UNAUTHENTICATED,
                     "missing credentials")
        ch.close()
        bad = grpc.composite_channel_credentials(
            pki.creds(token=False), grpc.access_token_call_credentials("x"))
        ch = grpc.secure_channel(local, bad)
        expect_error(ch, grpc.StatusCode.UNAUTHENTICATED,
                     "invalid bearer token")
        ch.close()
        # The second token in the file is accepted too.
        second = grpc.composite_channel_credentials(
            pki.creds(token=False),
            grpc.access_token_call_credentials("second-token"))
        ch = grpc.secure_channel(local, second)
        ch.unary_unary(CAPS)(b"", timeout=5)
        ch.close()
        # Workers with a wrong token, without TLS, or trusting another CA
        # never connect, and each says why.
        for wid, extra, why in (
                ("w-token", ["--tls-ca", pki.ca, "--tls-cert",
                             pki.client_cert, "--tls-key", pki.client_key,
                             "--remote-header", "authorization=Bearer nope"],
                 "invalid bearer token"),
                ("w-ca", ["--tls-ca", pki.other_ca, "--tls-cert",
                          pki.client_cert, "--tls-key", pki.client_key],
                 "TLS: ")):
            w = Worker(BIN, c.dir, wid, c.sched.target, extra)
            w.start(wait_connected=False)
            try:
                check(wait_log(w.log, why), "%s: %r not in log:\n%s" %
                      (wid, why, w.log()), c)
                check(w.metric("distbuild_worker_connected") == 0,
                      wid + " connected", c)
            finally:
                w.stop()
        # After all that, the real worker and client still work.
        t = Tree({"a": b"ok\n"})
        dg, _ = c.client.make_action(["/bin/cat", "a"], t)
        r = c.client.execute(dg)
        check(r.status.code == 0 and r.result.exit_code == 0,
              "action after refusals: %s" % r, c)
        failed = False
    finally:
        c.close(keep=failed)


def case_config():
    pki = TestPki(pki_dir())
    d = pki.dir
    empty = os.path.join(d, "empty-tokens")
    with open(empty, "w") as f:
        f.write("# nothing here\n\n")
    for args, want in (
            (["--tls-cert", pki.cert, "--tls-key", pki.client_key],
             "TLS private key"),
            (["--tls-cert", os.path.join(d, "absent.pem")],
             "TLS certificate"),
            (["--tls-key", pki.key], "need --tls-cert"),
            (["--auth-token-file", empty], "holds no token"),
            (["--auth-token-file", os.path.join(d, "absent")],
             "cannot read --auth-token-file")):
        p = subprocess.run(
            [BIN, "scheduler", "run", "--listen", "127.0.0.1:0",
             "--http-listen", "off", "--cas-dir", os.path.join(d, "cas")]
            + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=20)
        out = p.stdout.decode()
        check(p.returncode != 0, "%s: started anyway:\n%s" % (args, out))
        check(want in out, "%s: %r not in:\n%s" % (args, want, out))


def case_reload():
    pki = TestPki(pki_dir())
    c = secure_cluster(pki, nworkers=1)
    local = "localhost:%d" % c.sched.port
    failed = True

    def caps(creds):
        ch = grpc.secure_channel(local, creds)
        try:
            ch.unary_unary(CAPS)(b"", timeout=5)
            return "OK"
        except grpc.RpcError as e:
            return "%s %s" % (e.code().name, e.details())
        finally:
            ch.close()

    def hup(n):
        c.sched.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while c.sched.log().count("SIGHUP:") < n:
            check(time.time() < deadline, "no SIGHUP line", c)
            time.sleep(0.05)
        return c.sched.log().splitlines()[-1]

    def run_action(what):
        t = Tree({"f": what.encode()})
        dg, _ = c.client.make_action(["/bin/cat", "f"], t)
        r = c.client.execute(dg)
        check(r.status.code == 0 and r.result.exit_code == 0,
              "%s: %s" % (what, r), c)

    def served_cert():
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", c.sched.port), 5) as so:
            with ctx.wrap_socket(so, server_hostname="localhost") as t:
                return t.getpeercert(binary_form=True)

    def file_cert():
        with open(pki.cert) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    try:
        # A new server certificate (same CA): new connections get it, and
        # the worker, whose slots open new connections, keeps working.
        check(served_cert() == file_cert(), "serves the first certificate")
        run_action("before the rotation")
        first = file_cert()
        pki.issue(pki.cert, pki.key, "localhost")
        line = hup(1)
        check("reloaded" in line, "reload logged: " + line, c)
        check(served_cert() == file_cert() != first,
              "new connections get the new certificate", c)
        run_action("after the certificate rotation")
        # Token rotation: the old token is refused, the new one accepted.
        with open(pki.tokens, "w") as f:
            f.write("rotated-token\n")
        hup(2)
        new = pki.creds(token="rotated-token")
        old = pki.creds()
        check(caps(new) == "OK", "the new token is accepted", c)
        got = caps(old)
        check(got.startswith("UNAUTHENTICATED invalid bearer token"),
              "the old token is refused: " + got, c)
        # Unusable files: the previous settings stay.
        with open(pki.cert, "w") as f:
            f.write("not a certificate\n")
        line = hup(3)
        check("keeping the previous settings" in line,
              "a bad reload is refused: " + line, c)
        check(caps(new) == "OK", "and the server still serves", c)
        with open(pki.tokens, "w") as f:
            f.write("# none\n")
        line = hup(4)
        check("holds no token" in line and "keeping" in line,
              "an empty token file is refused: " + line, c)
        check(caps(new) == "OK", "the rotated token still works", c)
        failed = False
    finally:
        c.close(keep=failed)


CASES = {"cluster": case_cluster, "refused": case_refused,
         "config": case_config, "reload": case_reload}

if __name__ == "__main__":
    CASES[sys.argv[2]]()
    print("tls %s: ok" % sys.argv[2])
