"""The wheel the container image installs (Dockerfile: ``pip wheel`` then ``pip install``) is
self-contained: installed on its own, away from this checkout, it runs with its data files
(mock profiles, MIG tables) and the ``gpudra`` entry point.  It is the product only: the test
kit (local cluster, harness; testkit/, its own distribution) is not in it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from gpudra_testkit.checkout import REPO


def test_the_image_wheel_runs_on_its_own(tmp_path: Path) -> None:
    # built from exactly what the Dockerfile copies, so a stale build/ of the checkout (which
    # setuptools would package) cannot hide or add files
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("gpudra-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpudra/devices/data/mig-profiles.yaml" in names
    assert "gpudra/py.typed" in names
    kit = [n for n in names if "gpudra_testkit" in n or "localcluster" in n or "harness" in n]
    assert not kit, f"test infrastructure in the product wheel: {kit}"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "gpudra = gpudra.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
         str(tmp_path / "site"), str(wheel)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    where = subprocess.run(
        [sys.executable, "-c", "import gpudra; print(gpudra.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert where.startswith(str(tmp_path / "site")), where  # not this checkout's src/
    out = subprocess.run(
        [sys.executable, "-m", "gpudra", "discover", "--backend", "mock", "--profile",
         "dgx1-v100", "-o", "json"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=env,
    ).stdout  # fmt: skip
    assert len(json.loads(out)["gpus"]) == 8
