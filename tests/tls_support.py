"""TLS material made at test time with openssl: a throwaway CA and a server certificate it signs."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# What Python's ssl module (and its strict X.509 checks) and Java's TLS want of a server certificate.
SERVER_EXTENSIONS = """\
subjectAltName=IP:127.0.0.1,DNS:localhost
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
"""


@dataclass(frozen=True)
class ServerTls:
    ca: Path  # PEM certificate of the CA, for the clients' trust
    cert: Path  # PEM certificate of the server, for 127.0.0.1 and localhost
    key: Path  # its private key, unencrypted PKCS#8 PEM


def openssl_missing() -> str | None:
    return None if shutil.which("openssl") else "no openssl to make test certificates (apt-get install openssl)"


def make_server_tls(directory: Path) -> ServerTls:
    """A CA and a server certificate it signs, valid for a day, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text(SERVER_EXTENSIONS)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=axiswatch test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial"),
        *("-days", "1", "-out", str(cert), "-extfile", str(extensions)),
    )
    for private in (key, ca_key):
        private.chmod(0o600)
    return ServerTls(ca=ca, cert=cert, key=key)
