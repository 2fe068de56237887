"""The node daemon on the real control plane, driven by the kubelet harness over gRPC.

Each test gets a kwok node, a ``gpudra kubelet-plugin`` process on a mock profile and a
kubelet harness for that node; kube-scheduler and kube-controller-manager do the rest.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.cdi.spec import spec_file_name
from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import pod
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import allocated_claim, apply_file, gone, node_slices
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration


def devices_of(kube: KubeClient, node: str) -> dict[str, dict[str, Any]]:
    slices = node_slices(kube, node, DRIVER_NAME)
    return {d["name"]: d for s in slices for d in s["spec"].get("devices", [])}


@pytest.mark.parametrize(
    ("profile", "gpus"), [("dgx-h100", 8), ("dgx1-v100", 8), ("pcie-l4", 4), ("gb200-tray", 4)]
)
def test_profiles_publish_slices_the_api_server_accepts(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    profile: str,
    gpus: int,
) -> None:
    d, _ = node_daemon(profile)
    devices = wait_for("slices", lambda: devices_of(kube, d.node_name))
    assert sorted(devices) == [f"gpu-{i}" for i in range(gpus)]
    attrs = devices["gpu-0"]["attributes"]
    assert attrs["type"] == {"string": "gpu"}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert "version" in attrs["driverVersion"] and "resource.kubernetes.io/pciBusID" in attrs
    (slice_,) = node_slices(kube, d.node_name, DRIVER_NAME)
    assert slice_["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert slice_["spec"]["pool"] == {"name": d.node_name, "generation": 1, "resourceSliceCount": 1}
    if profile == "pcie-l4":
        assert "nvlinkGroup" not in attrs
    if profile == "gb200-tray":
        assert attrs["nvlinkClique"]["string"].endswith(".1")


def make_pod(kube: KubeClient, namespace: str, name: str, template: str, node: str) -> None:
    kube.create(resources.PODS, pod(name, namespace, template=template, node=node))


def nvlink_pair_template(kube: KubeClient, namespace: str) -> None:
    apply_file(kube, REPO / "deploy" / "examples" / "nvlink-pair.yaml", namespace)
    kube.delete(resources.PODS, "nvlink-pair", namespace=namespace, grace_period_seconds=0)


def scheduled(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    pod = kube.get(resources.PODS, name, namespace=namespace)
    return (
        pod
        if pod["spec"].get("nodeName") and pod.get("status", {}).get("resourceClaimStatuses")
        else None
    )


def claim_of(kube: KubeClient, pod: dict[str, Any]) -> dict[str, Any]:
    name = pod["status"]["resourceClaimStatuses"][0]["resourceClaimName"]
    return kube.get(resources.RESOURCECLAIMS, name, namespace=pod["metadata"]["namespace"])


def test_nvlink_pair_is_allocated_by_the_scheduler_prepared_and_unprepared(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("dgx1-v100")
    devices = wait_for("slices", lambda: devices_of(kube, d.node_name))
    nvlink_pair_template(kube, namespace)
    make_pod(kube, namespace, "trainer", "nvlink-pair", d.node_name)
    pod = wait_for(
        "pod bound with an allocated claim", lambda: scheduled(kube, namespace, "trainer")
    )
    claim = claim_of(kube, pod)
    results = claim["status"]["allocation"]["devices"]["results"]
    chosen = sorted(r["device"] for r in results)
    assert len(chosen) == 2 and all(r["driver"] == DRIVER_NAME for r in results)
    groups = {devices[c]["attributes"]["nvlinkGroup"]["string"] for c in chosen}
    assert len(groups) == 1  # pairwise NVLink-linked
    resp = harness.prepare_pod(pod, DRIVER_NAME)
    uid = claim["metadata"]["uid"]
    assert resp[uid].error == ""
    assert sorted(dev.device_name for dev in resp[uid].devices) == chosen
    assert all(dev.request_names == ["gpus"] for dev in resp[uid].devices)
    spec = json.loads((d.cdi_dir / spec_file_name(uid)).read_text())
    visible = next(e for e in spec["containerEdits"]["env"] if e.startswith("NVIDIA_VISIBLE"))
    want = sorted(devices[c]["attributes"]["uuid"]["string"] for c in chosen)
    assert sorted(visible.split("=", 1)[1].split(",")) == want
    assert sorted(dev.cdi_device_ids[0] for dev in resp[uid].devices) == sorted(
        f"k8s.gpu.gpudra.io/claim={uid}-{c}" for c in chosen
    )
    kube.delete(resources.PODS, "trainer", namespace=namespace, grace_period_seconds=0)
    wait_for("pod gone", lambda: gone(kube, resources.PODS, "trainer", namespace))
    harness.sync(DRIVER_NAME)
    assert not (d.cdi_dir / spec_file_name(uid)).exists()
    checkpoint = json.loads((d.plugin_dir / "checkpoint.json").read_text())
    assert uid not in checkpoint["claims"]


def test_sigkill_after_prepare_then_restart_is_idempotent(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("dgx-h100")
    wait_for("slices", lambda: devices_of(kube, d.node_name))
    nvlink_pair_template(kube, namespace)
    make_pod(kube, namespace, "p", "nvlink-pair", d.node_name)
    pod = wait_for("pod bound", lambda: scheduled(kube, namespace, "p"))
    uid = claim_of(kube, pod)["metadata"]["uid"]
    first = harness.prepare_pod(pod, DRIVER_NAME)[uid]
    assert first.error == ""
    d.kill()
    d.start()
    harness.wait_for_plugin(DRIVER_NAME)
    again = harness.prepare_pod(pod, DRIVER_NAME)[uid]
    assert again.error == ""
    assert [(x.device_name, list(x.cdi_device_ids)) for x in again.devices] == [
        (x.device_name, list(x.cdi_device_ids)) for x in first.devices
    ]
    errors = harness.unprepare_pod(namespace, "p", DRIVER_NAME)
    assert errors == {uid: ""}
    assert not (d.cdi_dir / spec_file_name(uid)).exists()
    assert json.loads((d.plugin_dir / "checkpoint.json").read_text())["claims"] == {}


def test_kubelet_restart_slices_come_back_within_5s(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]], kube: KubeClient
) -> None:
    d, harness = node_daemon("pcie-l4")
    wait_for("slices", lambda: devices_of(kube, d.node_name))
    started = time.monotonic()
    harness.restart(DRIVER_NAME)
    devices = wait_for("republished slices", lambda: devices_of(kube, d.node_name), timeout=5.0)
    assert len(devices) == 4
    assert time.monotonic() - started < 5.0


def test_bad_claims_get_specific_errors_and_good_ones_still_prepare(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("dgx-h100")
    node = d.node_name
    plugin = harness.plugins[DRIVER_NAME]
    good = allocated_claim(
        kube, namespace, "good", driver=DRIVER_NAME, pool=node, device="gpu-1", node=node
    )
    other_node = allocated_claim(
        kube,
        namespace,
        "elsewhere",
        driver=DRIVER_NAME,
        pool="node-x",
        device="gpu-0",
        node="node-x",
    )
    other_driver = allocated_claim(
        kube, namespace, "foreign", driver="gpu.example.com", pool=node, device="gpu-0", node=node
    )
    unknown = allocated_claim(
        kube, namespace, "ghost", driver=DRIVER_NAME, pool=node, device="gpu-99", node=node
    )
    same_device = allocated_claim(
        kube, namespace, "thief", driver=DRIVER_NAME, pool=node, device="gpu-1", node=node
    )
    resp = plugin.prepare([good, other_node, other_driver, unknown])
    assert resp[good[2]].error == "" and [x.device_name for x in resp[good[2]].devices] == ["gpu-1"]
    assert "allocated for node node-x, not this node" in resp[other_node[2]].error
    assert f"no devices of driver {DRIVER_NAME}" in resp[other_driver[2]].error
    assert "gpu.example.com" in resp[other_driver[2]].error
    assert "unknown device 'gpu-99'" in resp[unknown[2]].error
    stolen = plugin.prepare([same_device])[same_device[2]]
    assert "gpu-1" in stolen.error and "already prepared for claim" in stolen.error
    wrong_uid = plugin.prepare([(namespace, "good", "00000000-0000-0000-0000-000000000000")])
    assert "was deleted and recreated" in next(iter(wrong_uid.values())).error
    assert plugin.prepare([]) == {}  # the liveness probe's empty call succeeds


def test_corrupt_checkpoint_is_kept_and_state_rebuilt(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("pcie-l4")
    node = d.node_name
    ref = allocated_claim(
        kube, namespace, "c1", driver=DRIVER_NAME, pool=node, device="gpu-2", node=node
    )
    first = harness.plugins[DRIVER_NAME].prepare([ref])[ref[2]]
    assert first.error == ""
    d.stop()
    checkpoint = d.plugin_dir / "checkpoint.json"
    checkpoint.write_text('{"version": 1, "claims": {"x": ')
    d.start()
    plugin = harness.wait_for_plugin(DRIVER_NAME)
    copies = list(d.plugin_dir.glob("checkpoint.json.bad-*"))
    assert len(copies) == 1 and copies[0].read_text() == '{"version": 1, "claims": {"x": '
    assert "unreadable" in d.logs()
    again = plugin.prepare([ref])[ref[2]]
    assert again.error == "" and [x.device_name for x in again.devices] == ["gpu-2"]
    thief = allocated_claim(
        kube, namespace, "c2", driver=DRIVER_NAME, pool=node, device="gpu-2", node=node
    )
    assert "already prepared" in plugin.prepare([thief])[thief[2]].error
    assert plugin.unprepare([ref]) == {ref[2]: ""}


def test_unwritable_cdi_dir_is_a_per_claim_error(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    d, harness = node_daemon("pcie-l4")
    node = d.node_name
    d.stop()
    with contextlib.suppress(FileNotFoundError):
        for f in d.cdi_dir.iterdir():
            f.unlink()
        d.cdi_dir.rmdir()
    d.cdi_dir.write_text("not a directory")  # even root cannot write below a file
    d.start()
    plugin = harness.wait_for_plugin(DRIVER_NAME)
    ref = allocated_claim(
        kube, namespace, "c", driver=DRIVER_NAME, pool=node, device="gpu-0", node=node
    )
    out = plugin.prepare([ref])[ref[2]]
    assert "cannot write CDI spec" in out.error and str(d.cdi_dir) in out.error
    checkpoint = json.loads((d.plugin_dir / "checkpoint.json").read_text())
    # rolled back: no record that could outlive the failure, the kubelet's retry starts over
    assert ref[2] not in checkpoint["claims"]
    d.cdi_dir.unlink()
    assert plugin.prepare([ref])[ref[2]].error == ""
