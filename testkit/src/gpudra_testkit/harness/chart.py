"""The Helm chart as tests see it: rendered by the real helm CLI, turned into processes.

``render`` runs ``helm template`` on ``charts/gpudra`` (helm built from the Go module proxy by
``deploy/controlplane/build.sh helm``, cached like the control plane).  ``launch`` turns the
rendered DaemonSet or Deployment into the argv, environment and config files of a local
process: the container's command and args as rendered, its env (downward-API fields filled in
as the kubelet would), and its ConfigMap volumes written to a directory that replaces their
mount path.  Host paths need no mapping: tests render with ``kubeletPlugin.kubeletDir`` and
``cdiDir`` pointing at their own directories, and the chart mounts host paths at the same
paths.  The one thing a test adds is ``--kubeconfig`` (a pod would use its in-cluster token).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from gpudra_testkit.checkout import REPO
from gpudra_testkit.localcluster.binaries import cache_dir, read_versions

CHART = REPO / "charts" / "gpudra"


class HelmMissing(Exception):
    """The helm binary is not built; the message says how to build it."""


def helm_path() -> Path:
    version = read_versions()["DEFAULT_HELM_VERSION"]
    path = cache_dir() / f"helm-v{version}" / "bin" / "helm"
    if not path.is_file():
        raise HelmMissing(
            f"helm v{version} is not built ({path} missing): run "
            "deploy/controlplane/build.sh helm (or make cluster-binaries)"
        )
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the helm CLI on its own, empty config and cache (no repositories, no plugins)."""
    home = cache_dir() / "helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    p = subprocess.run(
        [str(helm_path()), *args], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    if check and p.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p


@lru_cache(maxsize=64)
def _render(
    values_json: str,
    release: str,
    namespace: str,
    kube_version: str | None,
    api_versions: tuple[str, ...],
) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if kube_version:
        args += ["--kube-version", kube_version]
    for v in api_versions:
        args += ["--api-versions", v]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as vfile:
        vfile.write(values_json)
        vfile.flush()
        return helm(*args, "--values", vfile.name).stdout


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "gpudra",
    namespace: str = "gpudra-system",
    kube_version: str | None = None,
    api_versions: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders for these values (fresh copies each call)."""
    text = _render(
        json.dumps(values or {}, sort_keys=True), release, namespace, kube_version, api_versions
    )
    return [d for d in yaml.safe_load_all(text) if d]


def find(objs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The one rendered object of ``kind`` (and ``app.kubernetes.io/component``)."""

    def component_of(o: dict[str, Any]) -> str | None:
        return (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component")

    hits = [o for o in objs if o["kind"] == kind and component in (None, component_of(o))]
    if len(hits) != 1:
        raise AssertionError(f"expected one {kind} {component or ''}, rendered {len(hits)}")
    return hits[0]


@dataclass
class Launch:
    """How to run a rendered container as a local process."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def gpudra_executable() -> str:
    """The ``gpudra`` console script of this interpreter's environment (what the image runs)."""
    script = Path(sys.executable).parent / "gpudra"
    found = str(script) if script.exists() else shutil.which("gpudra")
    if not found:
        raise AssertionError("no gpudra console script next to the interpreter: pip install -e .")
    return found


def launch(
    objs: list[dict[str, Any]],
    kind: str,
    *,
    node_name: str,
    files_dir: Path,
    component: str | None = None,
) -> Launch:
    """The argv and env of the first container of the rendered ``kind`` (DaemonSet or
    Deployment; ``component``: the one with that ``app.kubernetes.io/component``, where the
    chart renders several), with its ConfigMap volumes written under ``files_dir``."""
    workload = find(objs, kind, component)
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    command = container.get("command") or []
    if command != ["gpudra"]:
        raise AssertionError(f"the chart's {kind} runs {command}, not the gpudra CLI")
    mounts: dict[str, str] = {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        cm = volumes[m["name"]].get("configMap")
        if not cm:
            continue
        data = next(
            o["data"]
            for o in objs
            if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm["name"]
        )
        target = files_dir / m["name"]
        target.mkdir(parents=True, exist_ok=True)
        for key, text in data.items():
            (target / key).write_text(text)
        mounts[m["mountPath"].rstrip("/") + "/"] = f"{target}/"
    args = []
    for arg in container.get("args") or []:
        local_arg = arg
        for mount, local in mounts.items():
            local_arg = local_arg.replace(mount, local)
        args.append(local_arg)
    fields = {"spec.nodeName": node_name, "metadata.namespace": workload["metadata"]["namespace"]}
    env = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return Launch(argv=[gpudra_executable(), *args], env=env)
