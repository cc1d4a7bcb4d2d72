"""Throw-away TLS certificates for tests, made with the ``openssl`` command.

:func:`make_certificates` writes a CA, a server certificate for
``127.0.0.1`` and ``localhost`` (key and certificate in one PEM file, as
ZooKeeper's PEM key store wants it) and a client certificate signed by the
same CA. They are valid for two days.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zkpoll.exceptions import ZkpollError

__all__ = ["Certificates", "make_certificates"]

_SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"


@dataclass(frozen=True)
class Certificates:
    """Paths of the files :func:`make_certificates` wrote."""

    ca: Path               #: CA certificate (trust store of both sides)
    server_pem: Path       #: server key + certificate
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path, ca_name: str = "zkpoll-test-ca") -> Certificates:
    """Write a CA and a server and a client certificate into ``directory``.

    :raises ZkpollError: ``openssl`` is missing or failed (with its output).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ZkpollError("cannot make test certificates: `openssl` not found "
                          "(`apt-get install -y openssl`)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "san.cnf").write_text(_SAN)

    def run(*args: str) -> None:
        done = subprocess.run([openssl, *args], cwd=directory, capture_output=True,
                              text=True, check=False, stdin=subprocess.DEVNULL, timeout=60)
        if done.returncode != 0:
            raise ZkpollError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "2", "-subj", f"/CN={ca_name}")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.cnf")
    server_pem = directory / "server.pem"
    server_pem.write_text((directory / "server.key").read_text()
                          + (directory / "server.crt").read_text())
    return Certificates(directory / "ca.pem", server_pem, directory / "client.crt",
                        directory / "client.key")
