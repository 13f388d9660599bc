"""Test certificates and tokens for TLS tests (the openssl command)."""
import os
import subprocess


_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


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
        self.other_ca_key = j("o.key")
        for ca, key in ((self.ca, self.ca_key),
                        (self.other_ca, self.other_ca_key)):
            _openssl("req", "-x509", *_EC, "-days", "2", "-subj",
                     "/CN=e2e-ca", "-keyout", key, "-out", ca)
        self.san = j("san.ext")
        with open(self.san, "w") as f:
            f.write("subjectAltName=%s,IP:127.0.0.1\n" %
                    ",".join("DNS:" + n for n in names))
        self.issue(self.cert, self.key, "localhost")
        self.issue(self.client_cert, self.client_key, "e2e-client",
                   server=False)
        with open(self.tokens, "w") as f:
            f.write("# tokens for the e2e test\n\n  %s  \nsecond-token\n"
                    % token)

    def issue(self, crt, key, name, server=True, other_ca=False):
        """A new key and certificate for name at crt/key, signed by our CA
        or the other one; a server certificate carries the SAN names."""
        ca, ca_key = ((self.other_ca, self.other_ca_key) if other_ca
                      else (self.ca, self.ca_key))
        _openssl("req", *_EC, "-subj", "/CN=" + name, "-keyout", key,
                 "-out", crt + ".csr")
        _openssl("x509", "-req", "-in", crt + ".csr", "-CA", ca, "-CAkey",
                 ca_key, "-CAcreateserial", "-days", "2", "-out", crt,
                 *(["-extfile", self.san] if server else []))

    def creds(self, client_cert=True, token=True, ca=None):
        """grpcio credentials: our CA (or ca), optionally a client
        certificate and a bearer token (sent as "authorization: Bearer
        ..."): ours when token is True, none when False, else the string."""
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
                c, grpc.access_token_call_credentials(
                    self.token if token is True else token))
        return c
