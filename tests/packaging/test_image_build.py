"""deploy/image/build.py, the daemonless image builder: its package closure and naming as data,
its image config against the Dockerfile's final stage (parsed here, so the two cannot drift),
and one real build run in a chroot as the image's user."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tomllib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gpudra_testkit.checkout import REPO

DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@cache
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_build", REPO / "deploy/image/build.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def dockerfile_final_stage() -> dict[str, Any]:
    """ENV, LABEL, USER, ENTRYPOINT and CMD of the Dockerfile's last stage."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
    last = max(i for i, x in enumerate(lines) if x.startswith("FROM "))
    got: dict[str, Any] = {"ENV": {}, "LABEL": {}}
    for line in lines[last + 1 :]:
        op, _, rest = line.partition(" ")
        if op in ("ENV", "LABEL"):
            got[op].update(kv.split("=", 1) for kv in shlex.split(rest))
        elif op in ("ENTRYPOINT", "CMD"):
            got[op] = json.loads(rest)
        else:
            got[op] = rest.strip()
    return got


GRAPH = """\
app
  Depends: libc6
 |Depends: media-types
  Depends: mime-support
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
  Recommends: perl
libc6
  PreDepends: libgcc-s1
libgcc-s1
  Depends: libc6
media-types
mime-support
  Depends: perl
debconf
  Depends: perl
perl
lonely
  Depends: <awk>
    mawk
"""

CLOSURES = [
    pytest.param(["app"], ["debconf"], ["app", "libc6", "libgcc-s1", "media-types"],
                 id="first-alternative-and-excluded-group-dropped"),
    pytest.param(["app", "mime-support"], ["debconf"],
                 ["app", "libc6", "libgcc-s1", "media-types", "mime-support", "perl"],
                 id="perl-dragged-in-only-when-rooted"),
    pytest.param(["lonely"], ["awk"], ["lonely"], id="excluded-virtual-dependency"),
    pytest.param(["libc6"], [], ["libc6", "libgcc-s1"], id="cycle"),
]  # fmt: skip


@pytest.mark.parametrize(("roots", "exclude", "want"), CLOSURES)
def test_closure(roots: list[str], exclude: list[str], want: list[str]) -> None:
    b = builder()
    assert b.closure(b.parse_depends(GRAPH), roots, exclude) == want


@pytest.mark.parametrize(
    ("roots", "message"),
    [
        pytest.param(["lonely"], "virtual only", id="unprovided-virtual"),
        pytest.param(["nosuch"], "not in the apt-cache", id="unknown-package"),
    ],
)
def test_closure_refuses_to_guess(roots: list[str], message: str) -> None:
    b = builder()
    with pytest.raises(b.BuildError, match=message):
        b.closure(b.parse_depends(GRAPH), roots, [])


def test_parse_depends_keeps_only_depends_and_predepends() -> None:
    graph = builder().parse_depends(GRAPH)
    assert graph["app"] == [("libc6",), ("media-types", "mime-support"),
                            ("debconf", "<debconf-2.0>")]  # fmt: skip
    assert graph["media-types"] == []


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("gpudra:local", "docker.io/library/gpudra:local"),
        ("gpudra/gpudra:1", "docker.io/gpudra/gpudra:1"),
        ("registry.example:5000/gpudra:1", "registry.example:5000/gpudra:1"),
        ("localhost/gpudra:1", "localhost/gpudra:1"),
        ("docker.io/library/gpudra:local", "docker.io/library/gpudra:local"),
    ],
)
def test_names_are_those_the_kubelet_looks_up(name: str, want: str) -> None:
    assert builder().normalize_name(name) == want


def test_wheel_platforms_stop_at_the_base_glibc() -> None:
    tags = builder().manylinux_platforms("2.36-9+deb12u14")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert "manylinux_2_37_x86_64" not in tags
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)


def assert_matches_dockerfile(config: dict[str, Any]) -> None:
    """``config`` (an OCI image config's ``config``) is what the Dockerfile's image runs with."""
    want = dockerfile_final_stage()
    assert config["Entrypoint"] == want["ENTRYPOINT"]
    assert config["Cmd"] == want["CMD"]
    assert config["User"] == want["USER"] == "65532:65532"
    assert config["Labels"] == want["LABEL"]
    env = dict(e.split("=", 1) for e in config["Env"])
    for key, value in want["ENV"].items():  # $PATH: the base's, Debian's default here
        assert env[key] == value.replace("$PATH", DEBIAN_PATH), key


def test_config_is_the_dockerfiles_final_stage() -> None:
    c = builder().image_config()
    assert_matches_dockerfile({"Entrypoint": list(c.entrypoint), "Cmd": list(c.cmd),
                               "User": c.user, "Labels": c.labels, "Env": list(c.env)})  # fmt: skip


def build_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (the image is assembled and run in a chroot)"
    if not all(shutil.which(t) for t in ("apt-get", "apt-cache", "dpkg-deb", "chroot")):
        return "needs apt-get, apt-cache, dpkg-deb and chroot (a Debian host)"
    probe = subprocess.run(["apt-cache", "show", "--no-all-versions", "python3.11-minimal"],
                           capture_output=True, check=False)  # fmt: skip
    if probe.returncode != 0:
        return "needs apt sources with bookworm's python3.11-minimal"
    return None


def test_the_built_image_runs_as_the_dockerfile_says(tmp_path: Path) -> None:
    if os.environ.get("GPUDRA_SKIP_REAL_NODE") == "1":
        pytest.skip("GPUDRA_SKIP_REAL_NODE=1: the local image build is left out on request")
    if reason := build_prerequisite():  # the real-node tier needs this image: fail, never skip
        pytest.fail(f"cannot build the image here: {reason} (GPUDRA_SKIP_REAL_NODE=1 "
                    "leaves the real-node tier out)", pytrace=False)  # fmt: skip
    b = builder()
    out = tmp_path / "gpudra.tar"
    summary = b.build(out, "gpudra:test")
    assert summary["name"] == "docker.io/library/gpudra:test"
    assert summary["cached"] is False
    again = b.build(out, "gpudra:test")
    assert again["cached"] is True
    assert again["manifest_digest"] == summary["manifest_digest"]
    packages = json.loads(out.with_name(out.name + ".json").read_text())["packages"]
    assert {"python3.11-minimal", "libpython3.11-stdlib", "libstdc++6"} <= set(packages)
    assert not {"perl-base", "debconf", "dpkg", "mime-support"} & set(packages)

    with tarfile.open(out) as tf:
        index = json.loads(blob_at(tf, "index.json"))
        (entry,) = index["manifests"]
        assert entry["annotations"]["io.containerd.image.name"] == summary["name"]
        assert entry["digest"] == summary["manifest_digest"]
        manifest = json.loads(blob_at(tf, entry["digest"]))
        config = json.loads(blob_at(tf, manifest["config"]["digest"]))
        assert_matches_dockerfile(config["config"])
        root = tmp_path / "rootfs"
        members: list[dict[str, int]] = []
        for layer in manifest["layers"]:
            (tmp_path / "layer.tgz").write_bytes(blob_at(tf, layer["digest"]))
            with tarfile.open(tmp_path / "layer.tgz") as lt:
                members.append({m.name: m.mode for m in lt.getmembers()})
                lt.extractall(root, filter="fully_trusted")  # our own layers, modes kept
    base, venv = members
    assert base["tmp"] == base["var/tmp"] == 0o1777
    assert all(n.startswith("opt") for n in venv)  # the venv layer holds /opt/gpudra only
    assert not [n for n in venv if "__pycache__" in n or "/site-packages/pip" in n]
    assert "nonroot:x:65532:65532:" in (root / "etc/passwd").read_text()

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    env = dict(e.split("=", 1) for e in config["config"]["Env"])
    got = subprocess.run(
        ["chroot", f"--userspec={config['config']['User']}", str(root),
         *config["config"]["Entrypoint"], "--version"],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert got.strip() == f"gpudra {version}"


def blob_at(tf: tarfile.TarFile, name: str) -> bytes:
    """A file of the OCI layout, by path or by ``sha256:`` digest."""
    if name.startswith("sha256:"):
        name = "blobs/sha256/" + name.removeprefix("sha256:")
    f = tf.extractfile(name)
    assert f is not None
    return f.read()
