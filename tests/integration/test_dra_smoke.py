"""DRA end to end on the real control plane, with hand-written objects and no driver.

A DeviceClass and a ResourceSlice for a kwok node stand in for a driver.  kube-controller-manager
creates each pod's claim from a ResourceClaimTemplate, kube-scheduler allocates a device from the
slice and binds the pod, kwok marks it Running.  Also checks that the gated slice fields gpudra
needs (device taints, partitionable-device counters) survive a write on this version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gpudra.kube import KubeClient, resources
from gpudra_testkit import builders
from gpudra_testkit.localcluster import LocalCluster

pytestmark = pytest.mark.integration

DRIVER = "gpu.smoke.gpudra.io"


def _slice(name: str, node: str, devices: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return builders.resource_slice(node, devices, name=name, driver=DRIVER, **spec)


def _gpu(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "attributes": {"model": {"string": "smoke-80g"}, "index": {"int": int(name[-1])}},
        "capacity": {"memory": {"value": "80Gi"}},
    }


def _pod(name: str, namespace: str, node: str, template: str) -> dict[str, Any]:
    return builders.pod(name, namespace, template=template, node=node, image="example.invalid/cuda")


def _one_gpu_template(namespace: str, device_class: str) -> dict[str, Any]:
    model = f'device.attributes["{DRIVER}"].model == "smoke-80g"'
    request = {
        "name": "gpu",
        "exactly": {
            "deviceClassName": device_class,
            "allocationMode": "ExactCount",
            "count": 1,
            "selectors": [{"cel": {"expression": model}}],
        },
    }
    return {
        "metadata": {"name": "one-gpu", "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [request]}}},
    }


def test_scheduler_allocates_from_our_slice(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    cluster_objects: Any,
    wait_pods: Callable[..., list[dict[str, Any]]],
) -> None:
    node = make_node("dra", labels={"gpudra.io/smoke": "true"})
    device_class = f"smoke-gpu-{namespace}"
    cluster_objects(
        resources.DEVICECLASSES,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
        },
    )
    cluster_objects(
        resources.RESOURCESLICES, _slice(f"{node}-gpus", node, [_gpu("gpu-0"), _gpu("gpu-1")])
    )
    kube.create(resources.RESOURCECLAIMTEMPLATES, _one_gpu_template(namespace, device_class))
    for name in ("p0", "p1", "p2"):
        kube.create(resources.PODS, _pod(name, namespace, node, "one-gpu"))

    pods = wait_pods(namespace, lambda ps: sum(_phase(p) == "Running" for p in ps) == 2)
    devices = set()
    for pod in pods:
        if _phase(pod) != "Running":
            # Two devices, three pods: the third stays unbound, not squeezed onto a used GPU.
            assert "nodeName" not in pod["spec"]
            continue
        assert pod["spec"]["nodeName"] == node
        [claim_status] = pod["status"]["resourceClaimStatuses"]
        claim = kube.get(
            resources.RESOURCECLAIMS, claim_status["resourceClaimName"], namespace=namespace
        )
        owner = claim["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Pod", pod["metadata"]["name"])
        allocation = claim["status"]["allocation"]
        [result] = allocation["devices"]["results"]
        assert (result["driver"], result["pool"], result["request"]) == (DRIVER, node, "gpu")
        devices.add(result["device"])
        assert node in str(allocation["nodeSelector"]["nodeSelectorTerms"])
        assert [r["uid"] for r in claim["status"]["reservedFor"]] == [pod["metadata"]["uid"]]
    assert devices == {"gpu-0", "gpu-1"}
    [pending] = [p for p in pods if _phase(p) != "Running"]
    conditions = {c["type"]: c for c in pending["status"].get("conditions") or []}
    assert conditions["PodScheduled"]["status"] == "False"


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def test_gated_slice_fields_survive(
    cluster: LocalCluster, kube: KubeClient, make_node: Callable[..., str], cluster_objects: Any
) -> None:
    """Device taints and shared counters are alpha (off) before 1.36: without the shared gate
    string the apiserver would silently drop them."""
    node = make_node("gates", wait=False)
    taint = {"key": "gpudra.io/unhealthy", "value": "xid-79", "effect": "NoSchedule"}
    counters = [{"name": "gpu-0-mem", "counters": {"memory": {"value": "80Gi"}}}]
    mig = {
        **_gpu("mig-0"),
        "consumesCounters": [
            {"counterSet": "gpu-0-mem", "counters": {"memory": {"value": "10Gi"}}}
        ],
    }
    tainted = {**_gpu("gpu-0"), "taints": [taint]}
    if cluster.version.minor == 34:
        # 1.34: the counter sets live in the slice whose devices consume them.
        objs = [_slice(f"{node}-all", node, [tainted, mig], sharedCounters=counters)]
    else:
        # 1.35+: a slice carries either counters or devices; both in one pool.
        pool = {"name": node, "generation": 1, "resourceSliceCount": 2}
        counter_slice = _slice(
            f"{node}-counters", node, [], pool=dict(pool), sharedCounters=counters
        )
        del counter_slice["spec"]["devices"]
        objs = [counter_slice, _slice(f"{node}-devices", node, [tainted, mig], pool=dict(pool))]
    stored = [cluster_objects(resources.RESOURCESLICES, o) for o in objs]
    devices = {d["name"]: d for s in stored for d in s["spec"].get("devices") or []}
    assert [t["key"] for t in devices["gpu-0"].get("taints", [])] == [taint["key"]]
    assert devices["mig-0"].get("consumesCounters"), "consumesCounters was dropped"
    assert any(s["spec"].get("sharedCounters") for s in stored), "sharedCounters was dropped"
