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


@dataclass(frozen=True)
class NodeBinaries:
    """The programs of a real node: the kubelet of the cluster's version, containerd (built like
    the control plane) and the host's runc, CNI plugins and static busybox (Debian packages,
    ``make node-prereqs``)."""

    kubelet: Path
    containerd: Path
    ctr: Path
    shim: Path
    runc: Path = Path("/usr/sbin/runc")
    cni_bin_dir: Path = Path("/usr/lib/cni")
    busybox: Path = Path("/bin/busybox")

    def all(self) -> dict[str, Path]:
        return {
            "kubelet": self.kubelet,
            "containerd": self.containerd,
            "ctr": self.ctr,
            "containerd-shim-runc-v2": self.shim,
            "runc": self.runc,
            "CNI bridge plugin": self.cni_bin_dir / "bridge",
            "CNI host-local plugin": self.cni_bin_dir / "host-local",
            "CNI loopback plugin": self.cni_bin_dir / "loopback",
            "busybox (static)": self.busybox,
        }


def locate_node(k8s_version: str | None = None, *, cache: Path | None = None) -> NodeBinaries:
    """The real node's programs for ``k8s_version``; `BinariesMissing` says how to get what is
    absent (built ones: ``make cluster-binaries``; host ones: ``make node-prereqs``)."""
    pins = read_versions()
    control_plane = expected(k8s_version, cache=cache)
    k8s = control_plane.k8s_version
    cbin = (cache or cache_dir()) / f"containerd-v{pins['DEFAULT_CONTAINERD_VERSION']}" / "bin"
    found = NodeBinaries(
        kubelet=control_plane.kube_apiserver.parent / "kubelet",  # built with the control plane
        containerd=cbin / "containerd",
        ctr=cbin / "ctr",
        shim=cbin / "containerd-shim-runc-v2",
    )
    missing = _not_executable(found.all())
    if missing:
        built = {"kubelet", "containerd", "ctr", "containerd-shim-runc-v2"}
        how = []
        if built & set(missing):
            suffix = "" if k8s == pins["DEFAULT_K8S_VERSION"] else f" K8S_VERSION={k8s}"
            how.append(f"make cluster-binaries{suffix}")
        if set(missing) - built:
            how.append(
                "make node-prereqs (as root: runc, containernetworking-plugins, busybox-static)"
            )
        raise BinariesMissing(
            f"the real node's programs for Kubernetes {k8s} are missing "
            f"({', '.join(missing)}); run {' and '.join(how)}"
        )
    return found


def _not_executable(paths: dict[str, Path]) -> list[str]:
    return [name for name, p in paths.items() if not os.access(p, os.X_OK)]


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
    missing = _not_executable(found.all())
    if missing and build_missing:
        build(found.k8s_version)
        missing = _not_executable(found.all())
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
