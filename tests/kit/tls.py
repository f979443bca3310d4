"""Certificates for the encrypted-DNS tests (DoT, DoH), and TLS clients that trust them."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path


def make_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (it is its own CA), made with the openssl CLI."""
    cert, key = tmp_path / "dot.crt", tmp_path / "dot.key"
    subprocess.run(
        [
            *["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"],
            *("-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def client_context(cert: Path, name: str) -> ssl.SSLContext:
    """A client context that trusts only ``cert`` (the test's own CA), for ``name``."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = True
    return context


def served_cert(port: int, cert: Path, name: str, *, alpn: tuple[str, ...] = ()) -> bytes:
    """The DER certificate a TLS listener on 127.0.0.1:``port`` presents to a new connection
    (verified against ``cert``: a server presenting any other fails the handshake)."""
    context = client_context(cert, name)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return tls.getpeercert(binary_form=True)


def der(cert: Path) -> bytes:
    """The DER bytes of the PEM certificate file ``cert``."""
    return ssl.PEM_cert_to_DER_cert(cert.read_text())
