"""A certificate authority and a broker certificate for 127.0.0.1, made with openssl as a user would."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    """A CA's certificate (what clients trust) and key (what signs the broker's certificate)."""

    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_authority(directory: Path, name: str) -> Authority:
    """A self-signed CA valid for two days."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}", cwd=directory)
    return Authority(cert, key)


def make_broker_pem(directory: Path, authority: Authority) -> Path:
    """The broker's key (PKCS#8, unencrypted) and its certificate for 127.0.0.1 and localhost, signed by the CA,
    followed by the CA's certificate: one PEM file, as Kafka's PEM keystore takes it."""
    key, request, cert = directory / "broker.key", directory / "broker.csr", directory / "broker.crt"
    extensions = directory / "broker.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
             "-subj", "/CN=127.0.0.1", cwd=directory)
    _openssl("x509", "-req", "-in", str(request), "-CA", str(authority.cert), "-CAkey", str(authority.key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions), cwd=directory)
    pem = directory / "broker.pem"
    pem.write_text(key.read_text() + cert.read_text() + authority.cert.read_text())
    return pem
