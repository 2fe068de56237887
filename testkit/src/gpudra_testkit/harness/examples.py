"""deploy/examples as pods on a real node: apply one in its namespace, wait until its container
runs, read what it printed (through the API server and the real kubelet, as ``kubectl logs``),
and check it with the same pure checks ``make kind-e2e`` uses (deploy/kind/e2e.py)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from gpudra.kube import KubeClient, NotFound, resources
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness.waiting import wait_for

EXAMPLE_DIR = REPO / "deploy" / "examples"
EXAMPLES = sorted(EXAMPLE_DIR.glob("*.yaml"))
KINDS = {
    "ResourceClaimTemplate": resources.RESOURCECLAIMTEMPLATES,
    "ResourceClaim": resources.RESOURCECLAIMS,
    "Pod": resources.PODS,
}


@cache
def e2e() -> ModuleType:
    """deploy/kind/e2e.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("kind_e2e", REPO / "deploy" / "kind" / "e2e.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def example(name: str) -> Path:
    """deploy/examples/<name>.yaml"""
    return EXAMPLE_DIR / f"{name}.yaml"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply_example(kube: KubeClient, path: Path, namespace: str, node: str) -> str:
    """Create the example's objects in ``namespace``, its pod pinned to ``node`` by a node
    selector (the scheduler still allocates the claim); returns the pod's name."""
    pod = ""
    for d in docs(path):
        if d["kind"] == "Pod":
            d["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
            pod = d["metadata"]["name"]
        kube.create(KINDS[d["kind"]], d, namespace=namespace)
    return pod


def phase(kube: KubeClient, namespace: str, pod: str) -> str:
    try:
        return str(
            kube.get(resources.PODS, pod, namespace=namespace).get("status", {}).get("phase")
        )
    except NotFound:
        return "Gone"


def wait_running(kube: KubeClient, namespace: str, pod: str, timeout: float = 90.0) -> None:
    def running() -> bool:
        p = kube.get(resources.PODS, pod, namespace=namespace)
        statuses = (p.get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and all("running" in (s.get("state") or {}) for s in statuses)

    try:
        wait_for(f"{namespace}/{pod} running", running, timeout)
    except AssertionError as e:
        status = kube.get(resources.PODS, pod, namespace=namespace).get("status")
        events = [
            f"{ev.get('reason')}: {ev.get('message')}"
            for ev in kube.list(resources.EVENTS, namespace=namespace).items
        ]
        raise AssertionError(f"{e}\nstatus: {status}\nevents: {events}") from None


def pod_log(kube: KubeClient, namespace: str, pod: str, *, lines: int = 1) -> str:
    """The container's output once it has printed at least ``lines`` lines."""

    def read() -> str:
        text = kube.get_text(f"/api/v1/namespaces/{namespace}/pods/{pod}/log")
        return text if len(text.splitlines()) >= lines else ""

    return str(wait_for(f"{namespace}/{pod} log", read, 30))


def allocated_uuids(kube: KubeClient, namespace: str, pod: str) -> set[str]:
    """The UUIDs of the devices allocated to the pod's claims, from the node's slices."""
    p = kube.get(resources.PODS, pod, namespace=namespace)
    statuses = p["status"].get("resourceClaimStatuses") or []
    generated = {s["name"]: s.get("resourceClaimName") for s in statuses}  # from templates
    names = [
        c.get("resourceClaimName") or generated[c["name"]] for c in p["spec"]["resourceClaims"]
    ]
    uuids = set()
    for name in names:
        claim = kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)
        for r in claim["status"]["allocation"]["devices"]["results"]:
            uuids.add(device_uuid(kube, r["pool"], r["device"]))
    return uuids


def device_uuid(kube: KubeClient, pool: str, device: str) -> str:
    for s in kube.list(resources.RESOURCESLICES).items:
        if s["spec"]["pool"]["name"] != pool:
            continue
        for d in s["spec"].get("devices") or []:
            if d["name"] == device:
                return str(d["attributes"]["uuid"]["string"])
    raise AssertionError(f"device {pool}/{device} is in no slice")


def printed_uuids(log: str) -> set[str]:
    for line in log.splitlines():
        if line.startswith("NVIDIA_VISIBLE_DEVICES="):
            return {u for u in line.partition("=")[2].split(",") if u}
    return set()


def run_example(kube: KubeClient, node: str, path: Path, namespace: str) -> tuple[str, str]:
    """Apply an example with its pod on ``node``, wait until it runs and check what it printed
    (the GPUs its claim asked for, the UUIDs allocated); returns (pod, log)."""
    pod = apply_example(kube, path, namespace, node)
    wait_running(kube, namespace, pod)
    log = pod_log(kube, namespace, pod, lines=3)
    problems = e2e().check_env(log, e2e().expected_devices(docs(path)))
    assert not problems, f"{path.name}: {problems}\n{log}"
    assert printed_uuids(log) == allocated_uuids(kube, namespace, pod)
    return pod, log
