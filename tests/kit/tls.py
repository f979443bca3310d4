"""Certificates for the DNS-over-TLS tests."""

from __future__ import annotations

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
