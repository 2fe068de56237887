"""The CEL conformance table (tests/data/cel-conformance.yaml) against gpudra and kube-scheduler.

Each device of the table gets its own kwok node and ResourceSlice; each (expression, device) cell
becomes a ResourceClaim with one request using the expression, and a pod pinned to that device's
node.  Bound means selected, Unschedulable means not selected, SchedulerError means a CEL runtime
error aborted the allocation, and a claim the apiserver rejects means the expression is invalid.
The slice carries one identical copy of its device per expression, so every pod whose selector
matches can be bound at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudra.allocation.cel import CelCompileError, DeviceInput, compile_selector, evaluate
from gpudra.kube import Invalid, KubeClient, resources
from gpudra_testkit import builders
from gpudra_testkit.builders import unique

pytestmark = pytest.mark.integration

TABLE = yaml.safe_load((Path(__file__).parents[1] / "data" / "cel-conformance.yaml").read_text())
DRIVER: str = TABLE["driver"]
DEVICES: dict[str, dict[str, Any]] = {n: d or {} for n, d in TABLE["devices"].items()}
CASES: list[dict[str, Any]] = TABLE["cases"]
Verdict = bool | str  # True, False, "error" or "invalid"


def expected(case: dict[str, Any], *, gpudra: bool) -> dict[str, Verdict]:
    want = case.get("gpudra", case["expect"]) if gpudra else case["expect"]
    return dict.fromkeys(DEVICES, "invalid") if want == "invalid" else dict(want)


def gpudra_verdicts(expression: str) -> dict[str, Verdict]:
    try:
        selector = compile_selector(expression)
    except CelCompileError:
        return dict.fromkeys(DEVICES, "invalid")
    verdicts: dict[str, Verdict] = {}
    for name, body in DEVICES.items():
        selected, reason = evaluate(selector, DeviceInput.from_slice_device(DRIVER, body))
        verdicts[name] = "error" if reason else selected
    return verdicts


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_gpudra_agrees_with_the_table(case: dict[str, Any]) -> None:
    assert gpudra_verdicts(case["expression"]) == expected(case, gpudra=True)


def _slice(node: dict[str, Any], device: dict[str, Any], copies: int) -> dict[str, Any]:
    name = node["metadata"]["name"]
    devices = [{**device, "name": f"dev-{i}"} for i in range(copies)]
    owner = builders.node_owner(node)
    return builders.resource_slice(name, devices, name=f"{name}-cel", driver=DRIVER, owner=owner)


def _claim(name: str, namespace: str, device_class: str, expression: str) -> dict[str, Any]:
    request = {
        "name": "dev",
        "exactly": {
            "deviceClassName": device_class,
            "allocationMode": "ExactCount",
            "count": 1,
            "selectors": [{"cel": {"expression": expression}}],
        },
    }
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"devices": {"requests": [request]}},
    }


def _pod(name: str, namespace: str, node: str, claim: str) -> dict[str, Any]:
    labels = {"cell": name}
    image = "example.invalid/cel"
    return builders.pod(name, namespace, claim, node=node, labels=labels, image=image)


def _pod_verdict(pod: dict[str, Any]) -> Verdict | None:
    if (pod.get("spec") or {}).get("nodeName"):
        return True
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return {"Unschedulable": False, "SchedulerError": "error"}.get(cond.get("reason", ""))
    return None


def test_kube_scheduler_agrees_with_the_table(
    kube: KubeClient,
    make_node: Callable[..., str],
    cluster_objects: Callable[[Any, dict[str, Any]], Any],
) -> None:
    nodes = {d: make_node(f"cel-{d}") for d in DEVICES}
    device_class = unique("cel-conformance")
    selector = {"cel": {"expression": f'device.driver == "{DRIVER}"'}}
    cluster_objects(
        resources.DEVICECLASSES,
        {"metadata": {"name": device_class}, "spec": {"selectors": [selector]}},
    )
    for dev, node in nodes.items():
        node_obj = kube.get(resources.NODES, node)
        cluster_objects(resources.RESOURCESLICES, _slice(node_obj, DEVICES[dev], len(CASES)))
    namespace = unique("cel-conformance")
    cluster_objects(resources.NAMESPACES, {"metadata": {"name": namespace}})

    actual: dict[str, dict[str, Verdict]] = {c["name"]: {} for c in CASES}
    cells: dict[str, tuple[str, str]] = {}  # pod name -> (case, device)
    for i, case in enumerate(CASES):
        for dev, node in nodes.items():
            name = f"c{i:02d}-{dev}"
            try:
                kube.create(
                    resources.RESOURCECLAIMS,
                    _claim(name, namespace, device_class, case["expression"]),
                )
            except Invalid:
                actual[case["name"]][dev] = "invalid"
                continue
            kube.create(resources.PODS, _pod(name, namespace, node, name))
            cells[name] = (case["name"], dev)

    deadline = time.monotonic() + 120
    pending = dict(cells)
    while pending and time.monotonic() < deadline:
        for pod in kube.list(resources.PODS, namespace=namespace).items:
            name = pod["metadata"]["name"]
            verdict = _pod_verdict(pod)
            if name in pending and verdict is not None:
                case_name, dev = pending.pop(name)
                actual[case_name][dev] = verdict
        time.sleep(0.5)
    assert not pending, f"pods without a scheduling decision: {sorted(pending)}"

    mismatches = {
        c["name"]: (actual[c["name"]], expected(c, gpudra=False))
        for c in CASES
        if actual[c["name"]] != expected(c, gpudra=False)
    }
    assert not mismatches, f"kube-scheduler disagrees with the table: {mismatches}"
