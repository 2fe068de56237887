"""Write OCI image tarballs without a registry or an image builder (standard library only).

An image is a list of layers (each an uncompressed tar, built with `LayerWriter`) plus the
config (entrypoint, cmd, env, user, working dir).  `write_image` gzips the layers and writes
an OCI image layout tarball (``oci-layout``, ``index.json``, ``blobs/sha256/...``) that
``ctr -n k8s.io images import`` accepts; the index names the image with both
``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``.  Everything has fixed
timestamps and owners, so the same inputs give the same digests.

`busybox_layer` is the one-binary userland of the local real node's pause and workload images
(Debian's ``busybox-static``, every applet a symlink).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MTIME = 1700000000  # fixed, so digests are reproducible
BUSYBOX = Path("/bin/busybox")
ETC_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
ETC_GROUP = b"root:x:0:\nnobody:x:65534:\n"


class LayerWriter:
    """An uncompressed layer tar in memory; paths are relative to the image root."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(  # noqa: SIM115 - closed by data()
            fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT
        )
        self._names: set[str] = set()

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo | None:
        name = name.strip("/")
        if name in self._names:
            return None
        self._names.add(name)
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = kind, mode, MTIME, 0, 0
        return ti

    def directory(self, name: str, mode: int = 0o755) -> None:
        ti = self._info(name, tarfile.DIRTYPE, mode)
        if ti is not None:
            self._tar.addfile(ti)

    def parents(self, name: str) -> None:
        parts = name.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.directory("/".join(parts[:i]))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.parents(name)
        ti = self._info(name, tarfile.REGTYPE, mode)
        if ti is not None:
            ti.size = len(data)
            self._tar.addfile(ti, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        self.parents(name)
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        if ti is not None:
            ti.linkname = target
            self._tar.addfile(ti)

    def tree(self, source: Path, prefix: str) -> None:
        """Copy a host directory tree (files, dirs, symlinks; permissions kept) to ``prefix``."""
        self.directory(prefix)
        for root, dirs, files in os.walk(source):
            dirs.sort()
            rel = Path(root).relative_to(source)
            for d in dirs:
                p = Path(root) / d
                target = f"{prefix}/{rel / d}"
                if p.is_symlink():
                    self.symlink(target, str(p.readlink()))
                else:
                    self.directory(target, stat.S_IMODE(p.stat().st_mode))
            for f in sorted(files):
                p = Path(root) / f
                target = f"{prefix}/{rel / f}"
                if p.is_symlink():
                    self.symlink(target, str(p.readlink()))
                elif p.is_file():
                    self.file(target, p.read_bytes(), stat.S_IMODE(p.stat().st_mode))

    def data(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    env: Sequence[str] = ("PATH=/usr/local/bin:/usr/bin:/bin",)
    user: str = ""
    working_dir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WrittenImage:
    path: Path
    name: str
    manifest_digest: str
    layer_bytes: int  # compressed
    uncompressed_bytes: int


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime = len(data), 0o644, MTIME
    tf.addfile(ti, io.BytesIO(data))


def write_image(
    out: Path, name: str, layers: Sequence[bytes], config: ImageConfig, *, arch: str = "amd64"
) -> WrittenImage:
    """Write the OCI layout tarball of an image made of ``layers`` (uncompressed tars)."""
    gz = [gzip.compress(raw, compresslevel=6, mtime=0) for raw in layers]
    cfg: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(MTIME)),
        "architecture": arch,
        "os": "linux",
        "config": {"Env": list(config.env), "WorkingDir": config.working_dir},
        "rootfs": {"type": "layers", "diff_ids": [_sha(raw) for raw in layers]},
        "history": [{"created_by": "gpudra_testkit.localcluster.ociimage"} for _ in layers],
    }
    if config.entrypoint:
        cfg["config"]["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        cfg["config"]["Cmd"] = list(config.cmd)
    if config.user:
        cfg["config"]["User"] = config.user
    if config.labels:
        cfg["config"]["Labels"] = dict(config.labels)
    cfg_b = json.dumps(cfg, separators=(",", ":"), sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha(cfg_b),
            "size": len(cfg_b),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": _sha(g),
                "size": len(g),
            }
            for g in gz
        ],
    }
    man_b = json.dumps(manifest, separators=(",", ":")).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _sha(man_b),
                "size": len(man_b),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name,
                },
            }
        ],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for blob in [*gz, cfg_b, man_b]:
            _add(tf, "blobs/sha256/" + _sha(blob).removeprefix("sha256:"), blob)
        _add(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tf, "index.json", json.dumps(index, separators=(",", ":")).encode())
    tmp.replace(out)
    return WrittenImage(
        path=out,
        name=name,
        manifest_digest=_sha(man_b),
        layer_bytes=sum(len(g) for g in gz),
        uncompressed_bytes=sum(len(raw) for raw in layers),
    )


def busybox_layer(busybox: Path = BUSYBOX) -> bytes:
    """/bin/busybox with a symlink per applet, /etc/passwd and /etc/group, the usual dirs."""
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    layer = LayerWriter()
    for d in ("bin", "dev", "etc", "proc", "sys", "root", "var", "usr", "usr/bin"):
        layer.directory(d)
    layer.directory("tmp", 0o1777)
    layer.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in sorted(set(applets) - {"busybox"}):
        layer.symlink(f"bin/{applet}", "busybox")
    layer.file("etc/passwd", ETC_PASSWD)
    layer.file("etc/group", ETC_GROUP)
    return layer.data()
