"""Dynamic MIG on the real control plane: partitionable devices published by the node daemon,
placements chosen by kube-scheduler, MIG instances created at prepare and destroyed at
unprepare (mock backend), and an explanation when a GPU has no room left."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import parse_claim
from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from tests.harness.kubelet import KubeletHarness
from tests.harness.nodedaemon import NodeDaemon
from tests.harness.waiting import wait_for
from tests.integration.test_kubelet_plugin import device_classes, node_daemon  # noqa: F401

pytestmark = pytest.mark.integration


def mig_claim(name: str, ns: str, profile: str, parent: str | None = None) -> dict[str, Any]:
    sel = f"device.attributes['gpu.gpudra.io'].profile == '{profile}'"
    if parent:
        sel += f" && device.attributes['gpu.gpudra.io'].parentUUID == '{parent}'"
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "mig",
                        "exactly": {
                            "deviceClassName": "mig.gpudra.io",
                            "selectors": [{"cel": {"expression": sel}}],
                        },
                    }
                ]
            }
        },
    }


def pod(name: str, ns: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"claims": [{"name": "m"}]}}
            ],
            "resourceClaims": [{"name": "m", "resourceClaimName": name}],
        },
    }


def results(kube: KubeClient, ns: str, name: str) -> list[dict[str, Any]]:
    c = kube.get(resources.RESOURCECLAIMS, name, namespace=ns)
    return ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])


def test_dynamic_mig_placements_scheduler_prepare_and_refusal(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],  # noqa: F811 - a fixture
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("dgx-h100-mig", extra_args=["--dynamic-mig-gpus", "all"])
    node = d.node_name
    if kube.server_version()[1] < 35:
        # 1.34's partitionable-device layout differs: whole GPUs only, and the log says why
        one = wait_for(
            "slices",
            lambda: (
                kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={node}").items
            ),
        )
        assert [len(s["spec"]["devices"]) for s in one] == [8]
        assert "publishing whole GPUs only" in d.logs()
        return

    def node_slices() -> list[dict[str, Any]] | None:
        found = kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={node}").items
        return found if len(found) == 9 else None

    slices = wait_for("9 slices", node_slices)
    devices = [x for s in slices for x in s["spec"].get("devices", [])]
    counters = [c for s in slices for c in s["spec"].get("sharedCounters", [])]
    assert len(devices) == 8 * 26 and len(counters) == 8  # 25 placements + the whole GPU each
    by_name = {x["name"]: x["attributes"] for x in devices}

    def parent_of(claim_name: str) -> str:
        dev = results(kube, namespace, claim_name)[0]["device"]
        return str(by_name[dev]["parentUUID"]["string"])

    for name, profile, same_gpu_as in (
        ("a", "3g.40gb", None),
        ("b", "3g.40gb", "a"),
        ("c", "1g.10gb", None),
    ):
        parent = parent_of(same_gpu_as) if same_gpu_as else None
        kube.create(resources.RESOURCECLAIMS, mig_claim(name, namespace, profile, parent))
        kube.create(resources.PODS, pod(name, namespace, node))
        wait_for(f"{name} allocated", lambda n=name: results(kube, namespace, n))
    placed = {n: results(kube, namespace, n)[0]["device"] for n in "abc"}
    spans = []
    for dev in placed.values():
        a = by_name[dev]
        start, size = a["placementStart"]["int"], a["placementSize"]["int"]
        spans.append((a["parentUUID"]["string"], set(range(start, start + size))))
    for i, (p1, s1) in enumerate(spans):
        for p2, s2 in spans[i + 1 :]:
            assert p1 != p2 or not s1 & s2, f"overlapping placements: {placed}"
    # the kubelet prepares: the mock now holds exactly those instances
    for name in "abc":
        p = kube.get(resources.PODS, name, namespace=namespace)
        wait_for(
            "bound",
            lambda n=name: kube.get(resources.PODS, n, namespace=namespace)["spec"].get("nodeName"),
        )
        p = kube.get(resources.PODS, name, namespace=namespace)
        resp = harness.prepare_pod(p, DRIVER_NAME)
        assert all(not r.error for r in resp.values()), resp
    state = json.loads(d.state_file.read_text())
    held = sorted((m["profile"], m["start"]) for m in state["mig"])
    want = sorted(
        (by_name[dev]["profile"]["string"], by_name[dev]["placementStart"]["int"])
        for dev in placed.values()
    )
    assert held == want
    # one more 3g.40gb on the GPU that holds both 3g.40gb instances: refused, with the reason
    full_parent = parent_of("a")
    assert parent_of("b") == full_parent  # 3g.40gb at 0:4 and 4:4: that GPU is full
    extra = mig_claim("d", namespace, "3g.40gb", parent=full_parent)
    view = ClusterView.from_objects(
        slices=kube.list(resources.RESOURCESLICES).items,
        classes=kube.list(resources.DEVICECLASSES).items,
        nodes=[kube.get(resources.NODES, node)],
        claims=kube.list(resources.RESOURCECLAIMS).items,
    )
    outcome = Allocator(view).allocate([parse_claim(extra)], [node])
    assert outcome.best is None
    text = explain(outcome, [parse_claim(extra)])
    assert "2 already allocated" in text and "needs 1 device(s), 0 remain" in text, text
    # deleting the pods unprepares: the instances are destroyed
    for name in "abc":
        kube.delete(resources.PODS, name, namespace=namespace, grace_period_seconds=0)
        assert harness.unprepare_pod(namespace, name, DRIVER_NAME)
    assert json.loads(d.state_file.read_text())["mig"] == []
