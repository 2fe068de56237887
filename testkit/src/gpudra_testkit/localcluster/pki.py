"""Credentials of the local control plane, made with the ``openssl`` CLI.

One throw-away CA signs the apiserver's serving certificate (SANs localhost, 127.0.0.1 and the
in-cluster service names) and an admin client certificate with ``O=system:masters``; a separate
key pair signs service-account tokens.  ECDSA P-256 keeps generation fast.  ``openssl`` is used
because the ``cryptography`` package is not a project dependency.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVING_SANS = (
    "DNS:localhost",
    "IP:127.0.0.1",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:10.0.0.1",
)
ADMIN_SUBJECT = "/O=system:masters/CN=gpudra-admin"


class PkiError(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files (all in one directory)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise PkiError("the openssl CLI is needed to create the local cluster's certificates")
    result = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise PkiError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _key(directory: Path, name: str) -> Path:
    path = directory / name
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        path.name,
        cwd=directory,
    )
    path.chmod(0o600)
    return path


def _signed_cert(
    directory: Path, name: str, subject: str, extensions: list[str], ca: tuple[Path, Path]
) -> tuple[Path, Path]:
    key = _key(directory, f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text("\n".join(extensions) + "\n")
    _openssl("req", "-new", "-key", key.name, "-subj", subject, "-out", csr.name, cwd=directory)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr.name,
        "-CA",
        str(ca[0]),
        "-CAkey",
        str(ca[1]),
        "-set_serial",
        str(secrets.randbits(63)),
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        ext.name,
        "-out",
        f"{name}.crt",
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return directory / f"{name}.crt", key


def client_cert(pki: Pki, name: str, subject: str) -> tuple[Path, Path]:
    """A client certificate signed by the cluster CA (e.g. a kubelet's ``system:node:<name>``
    in ``O=system:nodes``), written next to the others as ``<name>.crt``/``<name>.key``."""
    return _signed_cert(
        pki.ca_cert.parent,
        name,
        subject,
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth",
        ],
        (pki.ca_cert, pki.ca_key),
    )


def generate(directory: Path) -> Pki:
    """Create a fresh CA, serving and admin certificates and SA keys in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key(directory, "ca.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        ca_key.name,
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=gpudra-local-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        "ca.crt",
        cwd=directory,
    )
    ca = (directory / "ca.crt", ca_key)
    serving_cert, serving_key = _signed_cert(
        directory,
        "apiserver",
        "/CN=kube-apiserver",
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=" + ",".join(SERVING_SANS),
        ],
        ca,
    )
    admin_cert, admin_key = _signed_cert(
        directory,
        "admin",
        ADMIN_SUBJECT,
        [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth",
        ],
        ca,
    )
    sa_key = _key(directory, "sa.key")
    _openssl("pkey", "-in", sa_key.name, "-pubout", "-out", "sa.pub", cwd=directory)
    return Pki(
        ca_cert=ca[0],
        ca_key=ca_key,
        serving_cert=serving_cert,
        serving_key=serving_key,
        admin_cert=admin_cert,
        admin_key=admin_key,
        sa_key=sa_key,
        sa_pub=directory / "sa.pub",
    )
