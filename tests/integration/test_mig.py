"""Dynamic MIG on the real control plane: partitionable devices published by the node daemon,
placements chosen by kube-scheduler, MIG instances created at prepare and destroyed at
unprepare (mock backend), and an explanation when a GPU has no room left."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import parse_claim
from gpudra.kube import KubeClient, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import pod
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.waiting import allocation, wait_for
from gpudra_testkit.localcluster.probes import free_port

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


def results(kube: KubeClient, ns: str, name: str) -> list[dict[str, Any]]:
    c = kube.get(resources.RESOURCECLAIMS, name, namespace=ns)
    return ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])


def test_dynamic_mig_placements_scheduler_prepare_and_refusal(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    port = free_port()
    d, harness = node_daemon(
        "dgx-h100-mig", extra_args=["--dynamic-mig-gpus", "all", "--metrics-port", str(port)]
    )
    node = d.node_name
    if kube.server_version()[1] < 35:
        # 1.34's partitionable-device layout differs: static MIG only (these GPUs have no
        # instances, so nothing is published), and the log says why
        one = wait_for(
            "slices",
            lambda: (
                kube.list(resources.RESOURCESLICES, field_selector=f"spec.nodeName={node}").items
            ),
        )
        assert [s["spec"].get("devices") or [] for s in one] == [[]]
        assert "publishing static MIG only" in d.logs()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"gpudra_node_dynamic_mig_published 0.0" in metrics
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
        kube.create(resources.PODS, pod(name, namespace, name, node=node))
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
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b"gpudra_node_dynamic_mig_published 1.0" in metrics
    assert b'gpudra_node_claim_operations_total{operation="prepare",outcome="ok"} 3.0' in metrics


def allocated(kube: KubeClient, ns: str, name: str, node: str, device: str) -> tuple[str, str, str]:
    c = kube.create(resources.RESOURCECLAIMS, mig_claim(name, ns, "any"))
    kube.patch_status(
        resources.RESOURCECLAIMS,
        name,
        {"status": {"allocation": allocation(node, [device], request="mig")}},
        namespace=ns,
    )
    return ns, name, c["metadata"]["uid"]


def dynamic_mig_or_skip(kube: KubeClient) -> None:
    """The dynamic-MIG-only tests: a 1.34 server has no partitionable-device layout, so the
    GPUs asked for are static MIG there (what that means: test_mig_modes.py, on 1.34)."""
    if kube.server_version()[1] < 35:
        pytest.skip("dynamic MIG needs the 1.35+ partitionable-device layout")


def test_mig_bad_input_is_a_per_claim_error(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    dynamic_mig_or_skip(kube)
    d, harness = node_daemon("dgx-h100-mig", extra_args=["--dynamic-mig-gpus", "0-3"])
    node = d.node_name
    plugin = harness.plugins[DRIVER_NAME]
    mock = MockBackend(load_machine("dgx-h100-mig"), node_name=node, state_file=d.state_file)
    external = mock.create_mig_device(mock.inventory().gpus[1].uuid, "3g.40gb", 0)
    unsupported = allocated(kube, namespace, "u", node, "gpu-0-mig-5g50gb-99-0")
    taken = allocated(kube, namespace, "t", node, "gpu-1-mig-3g40gb-9-0")
    fine = allocated(kube, namespace, "f", node, "gpu-1-mig-3g40gb-9-4")
    resp = plugin.prepare([unsupported, taken, fine])
    assert "unknown device 'gpu-0-mig-5g50gb-99-0'" in resp[unsupported[2]].error
    assert f"taken by instance {external.uuid}, which gpudra did not create" in resp[taken[2]].error
    assert resp[fine[2]].error == ""
    assert sorted(m["start"] for m in json.loads(d.state_file.read_text())["mig"]) == [0, 4]


def test_mig_disabled_gpu_refuses_with_the_reason(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("dgx-h100", extra_args=["--dynamic-mig-gpus", "0"])
    ref = allocated(kube, namespace, "x", d.node_name, "gpu-0-mig-1g10gb-19-0")
    out = harness.plugins[DRIVER_NAME].prepare([ref])[ref[2]]
    if kube.server_version()[1] < 35:  # no dynamic MIG: GPU 0 is a whole GPU, no placements
        assert "unknown device 'gpu-0-mig-1g10gb-19-0'" in out.error
        return
    assert "MIG mode is disabled on GPU 0" in out.error


def test_crash_between_create_and_record_and_between_destroy_and_record(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    dynamic_mig_or_skip(kube)
    d, harness = node_daemon("dgx-h100-mig", extra_args=["--dynamic-mig-gpus", "all"])
    node = d.node_name
    ref = allocated(kube, namespace, "c", node, "gpu-2-mig-1g10gb-19-0")
    first = harness.plugins[DRIVER_NAME].prepare([ref])[ref[2]]
    assert first.error == ""
    mig_uuid = json.loads(d.state_file.read_text())["mig"][0]["uuid"]
    # killed right after the instance was created, before "prepared" was recorded
    d.kill()
    checkpoint = d.plugin_dir / "checkpoint.json"
    doc = json.loads(checkpoint.read_text())
    doc["claims"][ref[2]]["state"] = "preparing"
    doc["claims"][ref[2]]["devices"][0]["uuid"] = ""
    checkpoint.write_text(json.dumps(doc))
    d.start()
    plugin = harness.wait_for_plugin(DRIVER_NAME)
    again = plugin.prepare([ref])[ref[2]]
    assert again.error == ""
    state = json.loads(d.state_file.read_text())["mig"]
    assert [m["uuid"] for m in state] == [mig_uuid]  # adopted, not created twice
    # killed right after the instance was destroyed, before the claim was forgotten
    d.kill()
    mock = MockBackend(load_machine("dgx-h100-mig"), node_name=node, state_file=d.state_file)
    mock.destroy_mig_device(mig_uuid)
    d.start()
    plugin = harness.wait_for_plugin(DRIVER_NAME)
    assert plugin.unprepare([ref]) == {ref[2]: ""}
    assert json.loads(checkpoint.read_text())["claims"] == {}
    assert json.loads(d.state_file.read_text())["mig"] == []


def test_unknown_instances_are_reported_and_removed_when_asked(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
) -> None:
    dynamic_mig_or_skip(kube)
    d, _ = node_daemon("dgx-h100-mig", extra_args=["--dynamic-mig-gpus", "all"])
    d.stop()
    mock = MockBackend(load_machine("dgx-h100-mig"), node_name=d.node_name, state_file=d.state_file)
    stray = mock.create_mig_device(mock.inventory().gpus[5].uuid, "2g.20gb", 2)
    d.start()
    wait_for("report", lambda: stray.uuid in d.logs() and "held by no claim" in d.logs())
    assert [m["uuid"] for m in json.loads(d.state_file.read_text())["mig"]] == [stray.uuid]
    d.stop()
    d.extra_args.append("--remove-unknown-mig")
    d.start()
    wait_for("removed", lambda: json.loads(d.state_file.read_text())["mig"] == [])
