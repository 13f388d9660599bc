"""Test certificates and tokens for TLS tests (the openssl command)."""
import os
import subprocess


class TestPki:
    """A throw-away CA with a server certificate for localhost/127.0.0.1
    and a client certificate, made with the openssl command; plus a
    bearer-token file. Paths are attributes."""

    def __init__(self, d, token="e2e-token-1", names=("localhost",)):
        """names: DNS names the server certificate carries (besides
        127.0.0.1)."""
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.token = token
        j = lambda n: os.path.join(d, n)  # noqa: E731
        self.ca, self.ca_key = j("ca.pem"), j("ca.key")
        self.cert, self.key = j("server.pem"), j("server.key")
        self.client_cert, self.client_key = j("client.pem"), j("client.key")
        self.other_ca = j("other-ca.pem")
        self.tokens = j("tokens")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes"]

        def run(*args):
            subprocess.run(["openssl"] + list(args), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        for ca, key in ((self.ca, self.ca_key), (self.other_ca, j("o.key"))):
            run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=e2e-ca",
                "-keyout", key, "-out", ca)
        with open(j("san.ext"), "w") as f:
            f.write("subjectAltName=%s,IP:127.0.0.1\n" %
                    ",".join("DNS:" + n for n in names))
        for name, crt, key, ext in (
                ("localhost", self.cert, self.key, ["-extfile", j("san.ext")]),
                ("e2e-client", self.client_cert, self.client_key, [])):
            run("req", *ec, "-subj", "/CN=" + name, "-keyout", key, "-out",
                crt + ".csr")
            run("x509", "-req", "-in", crt + ".csr", "-CA", self.ca,
                "-CAkey", self.ca_key, "-CAcreateserial", "-days", "2",
                "-out", crt, *ext)
        with open(self.tokens, "w") as f:
            f.write("# tokens for the e2e test\n\n  %s  \nsecond-token\n"
                    % token)

    def creds(self, client_cert=True, token=True, ca=None):
        """grpcio credentials: our CA, optionally a client certificate and
        the bearer token (sent as "authorization: Bearer ...")."""
        def rd(p):
            with open(p, "rb") as f:
                return f.read()
        import grpc
        c = grpc.ssl_channel_credentials(
            root_certificates=rd(ca or self.ca),
            private_key=rd(self.client_key) if client_cert else None,
            certificate_chain=rd(self.client_cert) if client_cert else None)
        if token:
            c = grpc.composite_channel_credentials(
                c, grpc.access_token_call_credentials(self.token))
        return c
