"""https on loopback for tests: a throwaway CA and a server certificate for 127.0.0.1 and
localhost (made with `cryptography`), an SSL context that trusts only that CA, and an ASGI
app served over TLS by uvicorn on a free port in a background thread.

    with TlsServer(app, certfile, keyfile) as server:  # (certfile, keyfile, cafile) = tls_files
        ClientDocuments(exempt_origins=[server.origin], ssl_context=trusting(cafile))
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from luma_mcp.simulator.app import ServerThread


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """(certfile, keyfile, cafile) in `folder`: a CA valid for a day, and a server
    certificate it signed for IP 127.0.0.1 and the name localhost."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("luma-mcp test CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certfile, keyfile, cafile = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    certfile.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(_pem_key(server_key))
    keyfile.chmod(0o600)
    cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return certfile, keyfile, cafile


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(certfile, keyfile, cafile), made once per session; import it where it is used."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def trusting(cafile: Path) -> ssl.SSLContext:
    """A client SSL context that trusts only the test CA (hostname checked as usual)."""
    return ssl.create_default_context(cafile=str(cafile))


class TlsServer(ServerThread):
    """An ASGI app served over https by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: Any, certfile: Path, keyfile: Path, host: str = "127.0.0.1") -> None:
        super().__init__(app, host, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile))

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def origin(self) -> tuple[str, int]:
        """(host, port), as `exempt_origins` takes it."""
        return self.host, self.port
