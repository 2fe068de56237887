"""Where the control-plane binaries of a version live, and how to get them.

Binaries are built from the Go module proxy by ``deploy/controlplane/build.sh`` and cached
outside the clone under ``${GPUDRA_CACHE:-~/.cache/gpudra}/{k8s,etcd,kwok}-v<version>/bin``.
Locating never builds; building happens only when asked (``make cluster-binaries`` or
``locate(..., build=True)``), because a cold build takes tens of minutes.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CONTROLPLANE_DIR_ENV = "GPUDRA_CONTROLPLANE_DIR"


class BinariesMissing(RuntimeError):
    """Some binary of the requested version is not in the cache."""


def controlplane_dir() -> Path:
    """``deploy/controlplane`` of the source checkout (or ``$GPUDRA_CONTROLPLANE_DIR``)."""
    override = os.environ.get(CONTROLPLANE_DIR_ENV)
    if override:
        return Path(override)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "deploy" / "controlplane"
        if (candidate / "versions.env").is_file():
            return candidate
    raise BinariesMissing(
        f"deploy/controlplane not found above {__file__}; run from a source checkout "
        f"or set {CONTROLPLANE_DIR_ENV}"
    )


def read_versions(path: Path | None = None) -> dict[str, str]:
    """The ``KEY=value`` pins of ``deploy/controlplane/versions.env``."""
    path = path or controlplane_dir() / "versions.env"
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip().strip("\"'")
    return pins


def default_k8s_version() -> str:
    return read_versions()["DEFAULT_K8S_VERSION"]


def cache_dir() -> Path:
    return Path(os.environ.get("GPUDRA_CACHE") or Path.home() / ".cache" / "gpudra")


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every program the local cluster runs."""

    k8s_version: str
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path

    def all(self) -> dict[str, Path]:
        return {
            "etcd": self.etcd,
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kubectl": self.kubectl,
            "kwok": self.kwok,
        }


def expected(k8s_version: str | None = None, *, cache: Path | None = None) -> Binaries:
    """The paths the binaries of ``k8s_version`` (default: the pinned default) should have."""
    pins = read_versions()
    k8s = (k8s_version or pins["DEFAULT_K8S_VERSION"]).removeprefix("v")
    root = cache or cache_dir()
    kbin = root / f"k8s-v{k8s}" / "bin"
    return Binaries(
        k8s_version=k8s,
        etcd=root / f"etcd-v{pins['DEFAULT_ETCD_VERSION']}" / "bin" / "etcd",
        kube_apiserver=kbin / "kube-apiserver",
        kube_controller_manager=kbin / "kube-controller-manager",
        kube_scheduler=kbin / "kube-scheduler",
        kubectl=kbin / "kubectl",
        kwok=root / f"kwok-v{pins['DEFAULT_KWOK_VERSION']}" / "bin" / "kwok",
    )


def build(k8s_version: str | None = None) -> None:
    """Run ``deploy/controlplane/build.sh all`` (slow when cold; prints progress to stderr)."""
    env = dict(os.environ)
    if k8s_version:
        env["K8S_VERSION"] = k8s_version
    script = controlplane_dir() / "build.sh"
    subprocess.run([str(script), "all"], env=env, check=True, stdout=subprocess.DEVNULL)


def locate(k8s_version: str | None = None, *, build_missing: bool = False) -> Binaries:
    """The binaries of ``k8s_version``; `BinariesMissing` says how to build what is absent."""
    found = expected(k8s_version)
    missing = [name for name, p in found.all().items() if not os.access(p, os.X_OK)]
    if missing and build_missing:
        build(found.k8s_version)
        missing = [name for name, p in found.all().items() if not os.access(p, os.X_OK)]
    if missing:
        default = read_versions()["DEFAULT_K8S_VERSION"]
        how = "make cluster-binaries"
        if found.k8s_version != default:
            how = f"make cluster-binaries K8S_VERSION={found.k8s_version}"
        raise BinariesMissing(
            f"control-plane binaries for Kubernetes {found.k8s_version} are missing "
            f"({', '.join(missing)} under {cache_dir()}); run `{how}` "
            "(a cold build takes 20-40 minutes)"
        )
    return found
