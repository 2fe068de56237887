"""Build the gpudra container image without Docker or a registry: an OCI layout tarball.

The Dockerfile stays the recipe for registry builds; this is its equivalent for machines with
no image builder, written so that ``ctr -n k8s.io images import`` accepts the result (the
tarball itself is written by `gpudra_testkit.localcluster.ociimage`, so the test kit must be
installed: ``make install``).  The stages mirror the Dockerfile's:

1. *wheel*: ``pip wheel --no-deps --no-build-isolation`` over a copy of exactly what the
   Dockerfile copies (pyproject.toml, README.md, src/ without ``__pycache__``).
2. *base* (layer 1): the python:3.11-slim-bookworm equivalent, assembled from Debian bookworm
   packages: the Depends/PreDepends closure of python3.11-minimal, libpython3.11-stdlib,
   ca-certificates and libstdc++6 (grpcio, cel-expr-python), fetched with ``apt-get download``
   and unpacked with ``dpkg-deb -x`` in a merged-/usr tree.  Maintainer scripts never run, so
   the few files they would create are written here (CA bundle, passwd/group with uid/gid
   65532 "nonroot", dpkg status for image scanners).  The unpacked tree is cached under
   ``${GPUDRA_CACHE:-~/.cache/gpudra}/image-base/<hash of the name=version list>``.
   Python is Debian's ``/usr/bin/python3.11`` (3.11.2 plus Debian's security fixes), where
   the Dockerfile's base has python.org's 3.11.14 in ``/usr/local``: the same minor version
   and ABI, so the same wheels; ``PATH`` is Debian's default rather than the python image's.
3. *venv* (layer 2): ``/opt/gpudra`` made by the image's own ``python3.11 -m venv`` (in a
   chroot), filled by the host's pip with ``--target`` for the image's platform tags (cp311,
   manylinux up to the base's glibc), the wheel and its runtime dependencies only; no pip.
4. *config*: the Dockerfile's final stage (env, user 65532:65532, entrypoint, cmd, labels);
   tests/packaging compares the two so they cannot drift.

Before writing, the image is run in a chroot as uid 65532 (``gpudra --version``, a mock
``discover``, and an import of every native extension); a failure names the command and its
stderr.  The output is content-addressed: when the sources, the base package list and this
builder are unchanged, the existing tarball is returned at once (``"cached": true``).

    python deploy/image/build.py [--out PATH] [--name gpudra:local]   # needs root (chroot)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpudra_testkit.localcluster import ociimage
from gpudra_testkit.localcluster.ociimage import (
    ImageConfig,
    LayerWriter,
    WrittenImage,
    write_image,
)

REPO = Path(__file__).resolve().parents[2]

CACHE = Path(os.environ.get("GPUDRA_CACHE") or Path.home() / ".cache" / "gpudra")
DEFAULT_OUT = CACHE / "images" / "gpudra-local.tar"
DEFAULT_NAME = "docker.io/library/gpudra:local"
PY = "python3.11"
VENV = "/opt/gpudra"
SITE = f"{VENV}/lib/{PY}/site-packages"
UID = 65532

ROOTS = (
    "base-files",  # the FHS tree, /usr/lib/os-release (scanners identify the distro by it)
    f"{PY}-minimal",
    f"libpython{PY.removeprefix('python')}-stdlib",
    "ca-certificates",
    "libstdc++6",  # C++ extensions: grpcio, cel-expr-python
    "libgcc-s1",
)
# Needed only by maintainer scripts, which never run here (we unpack, we do not install):
#   debconf: ca-certificates' postinst asks which CAs to trust (its Depends is debconf |
#     debconf-2.0; excluding it drops the whole alternative, perl and cdebconf with it);
#   dpkg, install-info: readline-common's dpkg | install-info, for the info directory;
#   awk: base-files' postinst.
# mime-support (and mailcap, perl) never enter: libpython3.11-stdlib takes the first
# alternative of media-types | mime-support, as apt does.
EXCLUDE = frozenset({"debconf", "debconf-2.0", "dpkg", "install-info", "awk"})
# What debian:bookworm-slim keeps out (/etc/dpkg/dpkg.cfg.d/docker), copyright files kept.
DROP = ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
        "usr/share/linda", "usr/share/groff")  # fmt: skip
USR_MERGED = ("bin", "sbin", "lib", "lib64")

PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {
    "PATH": PATH,
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "LANG": "C.UTF-8",  # inherited from the python base image in the Dockerfile's build
}
LABELS = {
    "org.opencontainers.image.title": "gpudra",
    "org.opencontainers.image.description": "Kubernetes DRA GPU driver: node daemon and controller",
    "org.opencontainers.image.source": "https://github.com/gpudra/gpudra",
    "org.opencontainers.image.licenses": "Apache-2.0",
}
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"nonroot:x:{UID}:{UID}:nonroot:/nonexistent:/usr/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnonroot:x:{UID}:\nnogroup:x:65534:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
CONSOLE_SCRIPT = f"""#!{VENV}/bin/python
import sys
from gpudra.cli.main import main
if __name__ == "__main__":
    sys.exit(main())
"""
# Every native extension the image ships, imported in the chroot before the image is written.
NATIVE_IMPORTS = "import grpc, cel_expr_python.cel, pydantic_core, yaml, google.protobuf, ssl"


class BuildError(RuntimeError):
    """A stage failed; the message names the command and what it printed."""


# ---- pure parts ------------------------------------------------------------------------------

Graph = dict[str, list[tuple[str, ...]]]


def parse_depends(text: str) -> Graph:
    """``apt-cache depends --recurse`` output as package -> [alternatives of each dependency].

    Only Depends and PreDepends count; a line starting with ``|`` is an alternative of the next
    line; virtual packages keep their ``<name>`` brackets (their providers are not chosen).
    """
    graph: Graph = {}
    current: list[tuple[str, ...]] = []
    pending: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current = graph[line.strip()] = []
            pending = []
            continue
        if line.startswith("    "):  # a provider of the virtual package above
            continue
        entry = line.strip()
        alternative = entry.startswith("|")
        kind, _, dep = entry.lstrip("|").partition(": ")
        if kind not in ("Depends", "PreDepends"):
            continue
        pending.append(dep)
        if not alternative:
            current.append(tuple(pending))
            pending = []
    return graph


def closure(graph: Graph, roots: Iterable[str], exclude: Iterable[str]) -> list[str]:
    """The packages to unpack: from ``roots``, each dependency's first real alternative.

    A dependency with an excluded alternative is dropped whole (a deliberate "not needed at
    runtime"); one with no real package among its alternatives is an error, not a guess.
    """
    excluded = {e.strip("<>") for e in exclude}
    chosen: set[str] = set()
    todo = [r for r in roots if r not in excluded]
    while todo:
        pkg = todo.pop()
        if pkg in chosen:
            continue
        if pkg not in graph:
            raise BuildError(f"{pkg}: not in the apt-cache depends output")
        chosen.add(pkg)
        for alts in graph[pkg]:
            if any(a.strip("<>") in excluded for a in alts):
                continue
            real = [a for a in alts if not a.startswith("<")]
            if not real:
                raise BuildError(f"{pkg} depends on {' | '.join(alts)}: virtual only; exclude it")
            todo.append(real[0])
    return sorted(chosen)


def image_config() -> ImageConfig:
    """The Dockerfile's final stage (ENV, USER, ENTRYPOINT, CMD, LABEL)."""
    return ImageConfig(
        entrypoint=["gpudra"],
        cmd=["--help"],
        env=[f"{k}={v}" for k, v in ENV.items()],
        user=f"{UID}:{UID}",
        labels=dict(LABELS),
    )


def manylinux_platforms(glibc: str, arch: str = "x86_64") -> list[str]:
    """pip ``--platform`` tags a wheel may carry to run on ``glibc`` (e.g. "2.36-9+deb12u14")."""
    minor = int(glibc.partition("-")[0].split(".")[1])
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    return [*tags, f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]


def normalize_name(name: str) -> str:
    """The name the kubelet looks up: ``gpudra:local`` is ``docker.io/library/gpudra:local``."""
    first, sep, _ = name.partition("/")
    if not sep:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


# ---- IO --------------------------------------------------------------------------------------


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> str:
    try:
        proc = subprocess.run(  # not check=True: the error below carries the command's stderr
            list(cmd),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"{' '.join(cmd)}: {e}") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise BuildError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def base_packages() -> dict[str, str]:
    """name -> candidate version of the base closure, as apt sees it now."""
    only_depends = [f"--no-{k}" for k in ("recommends", "suggests", "conflicts", "breaks",
                                          "replaces", "enhances")]  # fmt: skip
    text = run(["apt-cache", "depends", "--recurse", *only_depends, *ROOTS])
    names = closure(parse_depends(text), ROOTS, EXCLUDE)
    versions: dict[str, str] = {}
    name = ""
    for line in run(["apt-cache", "show", "--no-all-versions", *names]).splitlines():
        key, _, value = line.partition(": ")
        if key == "Package":
            name = value
        elif key == "Version" and name not in versions:
            versions[name] = value
    if missing := sorted(set(names) - set(versions)):
        raise BuildError(f"apt-cache show has no candidate for {missing}")
    return versions


def merge_usr(root: Path) -> None:
    """Move /bin, /sbin, /lib, /lib64 into /usr and leave symlinks, as bookworm's usrmerge."""
    for d in USR_MERGED:
        top, usr = root / d, root / "usr" / d
        usr.mkdir(parents=True, exist_ok=True)
        if top.is_dir() and not top.is_symlink():
            for src in sorted(top.rglob("*")):
                dst = usr / src.relative_to(top)
                if src.is_dir() and not src.is_symlink():
                    dst.mkdir(exist_ok=True)
                else:
                    dst.unlink(missing_ok=True)
                    src.rename(dst)
            shutil.rmtree(top)
        top.symlink_to(f"usr/{d}")


def assemble_base(root: Path, debs: Path, versions: Mapping[str, str]) -> None:
    """Unpack the packages into ``root`` and write what their maintainer scripts would."""
    debs.mkdir(parents=True)
    root.mkdir(parents=True)
    run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
         *(f"{n}={v}" for n, v in sorted(versions.items()))], cwd=debs)  # fmt: skip
    status = []
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)])
        status.append(
            run(["dpkg-deb", "-f", str(deb)]).rstrip("\n") + "\nStatus: install ok installed\n"
        )
    merge_usr(root)
    for d in DROP:
        shutil.rmtree(root / d, ignore_errors=True)
    for doc in (root / "usr/share/doc").iterdir():
        for p in doc.iterdir():
            if p.name == "copyright":
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    etc = root / "etc"
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    (etc / "nsswitch.conf").write_text(NSSWITCH)
    (etc / "os-release").unlink(missing_ok=True)
    (etc / "os-release").symlink_to("../usr/lib/os-release")
    certs = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))  # update-ca-certificates
    (etc / "ssl/certs/ca-certificates.crt").write_bytes(b"".join(c.read_bytes() for c in certs))
    for d in ("tmp", "var/tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(0o1777)
    for alias in ("python3", "python"):  # as in the python image
        (root / "usr/bin" / alias).symlink_to(PY)
    (root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("\n".join(status))


def cached_base(versions: Mapping[str, str], key: str) -> Path:
    """The unpacked base tree for ``key``, assembled once (atomically) and then reused."""
    done = CACHE / "image-base" / key
    if (done / "rootfs").is_dir():
        return done / "rootfs"
    done.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=done.parent, prefix=f".{key}-") as tmp:
        stage = Path(tmp) / "base"
        assemble_base(stage / "rootfs", Path(tmp) / "debs", versions)
        (stage / "packages.txt").write_text(
            "".join(f"{n}={v}\n" for n, v in sorted(versions.items()))
        )
        stage.rename(done)
    return done / "rootfs"


def build_wheel(dist: Path) -> Path:
    """Stage "wheel": the Dockerfile's COPY of pyproject.toml, README.md and src/, then pip."""
    src = dist.parent / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), "."], cwd=src)  # fmt: skip
    (wheel,) = dist.glob("gpudra-*.whl")
    return wheel


def install_venv(root: Path, wheel: Path, glibc: str, work: Path) -> None:
    """Stage "install": a venv made by the image's python, the wheel and its dependencies."""
    run(["chroot", str(root), f"/usr/bin/{PY}", "-m", "venv", "--without-pip", VENV])
    target = work / "target"
    platforms = [f"--platform={p}" for p in manylinux_platforms(glibc)]
    run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(target),
         "--only-binary=:all:", "--implementation=cp", "--python-version=3.11", "--abi=cp311",
         *platforms, str(wheel)])  # fmt: skip
    venv = root / VENV.lstrip("/")
    for script in sorted((target / "bin").iterdir()) if (target / "bin").is_dir() else []:
        body = script.read_bytes()
        if body.startswith(b"#!"):  # pip wrote the host's interpreter there
            body = f"#!{VENV}/bin/python".encode() + body[body.index(b"\n") :]
        (venv / "bin" / script.name).write_bytes(body)
        (venv / "bin" / script.name).chmod(0o755)
    shutil.rmtree(target / "bin", ignore_errors=True)
    site = root / SITE.lstrip("/")
    for p in sorted(target.iterdir()):
        p.rename(site / p.name)
    (venv / "bin/gpudra").write_text(CONSOLE_SCRIPT)
    (venv / "bin/gpudra").chmod(0o755)
    for record in site.glob("gpudra-*.dist-info/RECORD"):  # direct_url.json names this
        (record.parent / "direct_url.json").unlink(missing_ok=True)  # build's temporary dir:
        lines = record.read_text().splitlines(keepends=True)  # drop it, for stable digests
        record.write_text("".join(x for x in lines if "/direct_url.json," not in x))
    # No bytecode, like pip itself is left out: 76 MB less; each process start compiles in
    # memory instead (measured: 1.0 s to import the daemons' modules, 0.33 s with .pyc files).
    for p in [*site.glob("pip"), *site.glob("pip-*.dist-info"), *site.rglob("__pycache__")]:
        shutil.rmtree(p)


def verify(root: Path) -> None:
    """Run the image's entrypoint in a chroot as the image's user and environment."""
    env = {**ENV, "HOME": "/nonexistent"}
    chroot = [shutil.which("chroot") or "/usr/sbin/chroot", f"--userspec={UID}:{UID}", str(root)]
    version = run([*chroot, f"{VENV}/bin/gpudra", "--version"], env=env, timeout=120)
    out = run([*chroot, f"{VENV}/bin/gpudra", "discover", "--backend", "mock", "--profile",
               "dgx-h100", "-o", "json"], env=env, timeout=120)  # fmt: skip
    try:
        gpus = json.loads(out)["gpus"]
    except (ValueError, KeyError) as e:
        raise BuildError(f"gpudra discover in the image printed no GPU list: {out[:500]}") from e
    if not gpus:
        raise BuildError("gpudra discover in the image found no mock GPUs")
    run([*chroot, f"{VENV}/bin/python", "-c", NATIVE_IMPORTS], env=env, timeout=120)
    print(f"verified in chroot: {version.strip()}, {len(gpus)} mock GPUs", file=sys.stderr)


def layer_of(source: Path, prefix: str = "") -> bytes:
    """A layer holding ``source`` at ``prefix`` (the image root when empty)."""
    layer = LayerWriter()
    parts = [p for p in prefix.split("/") if p]
    for i in range(1, len(parts) + 1):
        layer.directory("/".join(parts[:i]))
    for p in sorted(source.iterdir()):
        name = "/".join([*parts, p.name])
        if p.is_symlink():
            layer.symlink(name, str(p.readlink()))
        elif p.is_dir():
            layer.directory(name, p.stat().st_mode & 0o7777)
            layer.tree(p, name)
        else:
            layer.file(name, p.read_bytes(), p.stat().st_mode & 0o7777)
    return layer.data()


def source_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    for p in sorted((REPO / "src").rglob("*")):
        rel = p.relative_to(REPO).parts
        if p.is_file() and not any(x == "__pycache__" or x.endswith(".egg-info") for x in rel):
            files.append(p)
    return files


def build(out: Path, name: str) -> dict[str, Any]:
    """Build (or reuse) the image tarball at ``out``; the summary the CLI prints."""
    start = time.monotonic()
    name = normalize_name(name)
    if os.geteuid() != 0:
        raise BuildError("needs root: the image is assembled and checked in a chroot")
    if sys.version_info[:2] != (3, 11):
        raise BuildError(f"run with Python 3.11 (the image's), not {sys.version.split()[0]}")
    versions = base_packages()
    me = [Path(__file__).resolve(), Path(ociimage.__file__).resolve()]
    base_key = digest(
        [*(f"{n}={v}".encode() for n, v in sorted(versions.items())), me[0].read_bytes()]
    )
    sources = [str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() for p in source_files()]
    key = digest([base_key.encode(), name.encode(), *(p.read_bytes() for p in me), *sources])
    stamp = out.with_name(out.name + ".json")
    if out.is_file() and stamp.is_file():
        previous = json.loads(stamp.read_text())
        if previous.get("key") == key and previous.get("size") == out.stat().st_size:
            return {
                **previous["summary"],
                "seconds": round(time.monotonic() - start, 1),
                "cached": True,
            }
    base = cached_base(versions, base_key)
    with tempfile.TemporaryDirectory(prefix="gpudra-image-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        root = work / "rootfs"
        shutil.copytree(base, root, symlinks=True)
        install_venv(root, wheel, versions["libc6"], work)
        verify(root)
        layers = [layer_of(base), layer_of(root / VENV.lstrip("/"), VENV)]
    image: WrittenImage = write_image(out, name, layers, image_config())
    summary = {
        "path": str(image.path),
        "name": image.name,
        "seconds": round(time.monotonic() - start, 1),
        "compressed_bytes": image.layer_bytes,
        "uncompressed_bytes": image.uncompressed_bytes,
        "manifest_digest": image.manifest_digest,
        "cached": False,
    }
    stamp.write_text(
        json.dumps(
            {"key": key, "size": out.stat().st_size, "packages": versions, "summary": summary},
            indent=1,
        )
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    ap.add_argument("--name", default=DEFAULT_NAME, help=f"image name (default {DEFAULT_NAME})")
    args = ap.parse_args(argv)
    try:
        summary = build(args.out.resolve(), args.name)
    except BuildError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
