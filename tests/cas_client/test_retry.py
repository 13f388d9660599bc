#!/usr/bin/python3
"""cas_client_upload against a CAS that damages every blob's first upload.

Starts flaky_cas_server.py, runs `cas_client_test retry HOST:PORT`, then
checks that each blob was uploaded exactly twice and stored.
Usage: test_retry.py /path/to/cas_client_test
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    test_bin = sys.argv[1]
    srv = subprocess.Popen([sys.executable,
                            os.path.join(HERE, "flaky_cas_server.py")],
                           stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        r = subprocess.run([test_bin, "retry", "127.0.0.1:%d" % port],
                           stderr=subprocess.PIPE, text=True, timeout=120)
        sys.stderr.write(r.stderr)
        assert r.returncode == 0, "cas_client_test retry failed"
        assert "uploading what is still missing once more" in r.stderr, \
            "the retry was not logged"
    finally:
        srv.terminate()
        out, _ = srv.communicate(timeout=30)
    blobs = [l.split() for l in out.splitlines() if l.startswith("BLOB ")]
    print("server:", blobs)
    assert len(blobs) == 2, blobs
    for b in blobs:
        assert b[3] == "2" and b[5] == "1", b  # attempts 2, stored 1
    print("retry: ok")


if __name__ == "__main__":
    main()
