"""``gpudra device-plugin`` with a real kubelet and containerd (no stand-in).

The kubelet registers the plugin on its hard-coded ``/var/lib/kubelet/device-plugins``,
writes the node's ``nvidia.com/gpu`` capacity from ListAndWatch, asks GetPreferredAllocation
and Allocate when a pod with ``limits: {nvidia.com/gpu: 2}`` starts, and containerd applies the
CDI devices of the answer to a real container, whose own output must name exactly the GPUs
the kubelet recorded for it.  Then the kubelet restarts (it removes every socket in its dir):
the plugin registers again within a second and new pods still get GPUs.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudra.cdi.spec import CONTROL_NODES, DEVICE_PLUGIN_SPEC_FILE
from gpudra.kube import KubeClient, NotFound, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra_testkit.builders import unique
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness import examples
from gpudra_testkit.harness.deviceplugin import DevicePluginProcess
from gpudra_testkit.harness.objects import gone
from gpudra_testkit.harness.waiting import wait_for
from gpudra_testkit.localcluster.realnode import RealNode

pytestmark = pytest.mark.integration
PROFILE = "dgx-h100"
GPU = "nvidia.com/gpu"
KUBELET_DP_DIR = Path("/var/lib/kubelet/device-plugins")  # the kubelet's, whatever --root-dir
CHECKPOINT = KUBELET_DP_DIR / "kubelet_internal_checkpoint"
EXAMPLE = REPO / "deploy" / "examples" / "device-plugin" / "two-gpus.yaml"


@pytest.fixture(scope="module")
def plugin(real_node: RealNode, kube: KubeClient) -> Iterator[DevicePluginProcess]:
    p = DevicePluginProcess(
        real_node.name,
        PROFILE,
        real_node.layout.kubelet_root,
        cdi_root=real_node.layout.cdi_dir,
        socket_dir=KUBELET_DP_DIR,
        values={"extraConfig": {"healthRecoveryS": 0.5}},
    )
    p.start()
    try:
        wait_for("capacity nvidia.com/gpu 8", lambda: capacity(kube, real_node.name) == "8", 60)
        yield p
    finally:
        p.stop()


def capacity(kube: KubeClient, node: str, key: str = "capacity") -> str | None:
    return (kube.get(resources.NODES, node)["status"].get(key) or {}).get(GPU)


@pytest.fixture
def ns(kube: KubeClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = unique(f"dp-{request.node.name}")
    kube.create(resources.NAMESPACES, {"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFound):
        kube.delete(resources.NAMESPACES, name)
    wait_for(f"namespace {name} gone", lambda: gone(kube, resources.NAMESPACES, name), 90)


def kubelet_allocation(pod_uid: str) -> list[str]:
    """The device IDs the kubelet's own checkpoint records for the pod's GPUs."""
    data = json.loads(CHECKPOINT.read_text())["Data"]
    ids: list[str] = []
    for e in data.get("PodDeviceEntries") or []:
        if e["PodUID"] == pod_uid and e["ResourceName"] == GPU:
            dev = e["DeviceIDs"]
            ids += [i for v in dev.values() for i in v] if isinstance(dev, dict) else list(dev)
    return ids


def run_pod(kube: KubeClient, node: str, ns: str) -> tuple[dict[str, Any], str]:
    name = examples.apply_example(kube, EXAMPLE, ns, node)
    examples.wait_running(kube, ns, name)
    log = examples.pod_log(kube, ns, name, lines=3)
    return kube.get(resources.PODS, name, namespace=ns), log


def check_output(log: str, allocated: list[str], minors: dict[str, int]) -> None:
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    visible = env.get("NVIDIA_VISIBLE_DEVICES", "").split(",")
    assert sorted(visible) == sorted(allocated), log
    per_device = {k: v for k, v in env.items() if k.startswith("GPUDRA_DEVICE_")}
    assert sorted(per_device.values()) == sorted(allocated), log  # CDI edits applied
    nodes = [line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("device ")]
    gpu_nodes = sorted(n for n in nodes if re.fullmatch(r"/dev/nvidia\d+", n))
    assert gpu_nodes == sorted(f"/dev/nvidia{minors[u]}" for u in allocated), log
    assert all(c in nodes for c in CONTROL_NODES), log


def test_a_pod_with_two_gpu_limits_runs_with_exactly_its_two_gpus(
    kube: KubeClient, real_node: RealNode, plugin: DevicePluginProcess, ns: str
) -> None:
    pod, log = run_pod(kube, real_node.name, ns)
    allocated = kubelet_allocation(pod["metadata"]["uid"])
    print(
        f"two-gpus on {real_node.name} ({kube.server_version()}), kubelet chose {allocated}:\n{log}"
    )
    assert len(allocated) == 2
    inv = MockBackend(load_machine(PROFILE), node_name=real_node.name).inventory()
    check_output(log, allocated, {g.uuid: g.minor for g in inv.gpus})
    spec = real_node.layout.cdi_dir / DEVICE_PLUGIN_SPEC_FILE
    assert spec.exists()
    print(f"CDI spec on disk: {spec} ({len(json.loads(spec.read_text())['devices'])} devices)")
    assert capacity(kube, real_node.name, "allocatable") == "8"  # allocatable is capacity
    # the kubelet asked for the preferred pair, then allocated what it chose
    assert "preferred nvidia.com/gpu: 2 of 8 available" in plugin.log_text()
    assert "allocated nvidia.com/gpu: gpu-" in plugin.log_text()


def test_a_lost_gpu_drops_the_real_kubelets_allocatable_by_one(
    kube: KubeClient, real_node: RealNode, plugin: DevicePluginProcess
) -> None:
    mock = MockBackend(
        load_machine(PROFILE), node_name=real_node.name, state_file=plugin.state_file
    )
    lost_at = time.monotonic()
    mock.fall_off_bus(6)
    try:
        wait_for(
            "allocatable 7",
            lambda: capacity(kube, real_node.name, "allocatable") == "7",
            15,
            interval=0.05,
        )
        took = time.monotonic() - lost_at
        print(
            f"GPU 6 lost: the real kubelet's node status says allocatable 7 after {took:.2f}s "
            "(its node status update period is 2 s here)"
        )
        assert capacity(kube, real_node.name) == "8"
    finally:
        mock.recover(6)
    wait_for("allocatable 8", lambda: capacity(kube, real_node.name, "allocatable") == "8", 15)


def test_a_kubelet_restart_is_followed_by_a_registration_within_a_second(
    kube: KubeClient, real_node: RealNode, plugin: DevicePluginProcess, ns: str
) -> None:
    pod, _ = run_pod(kube, real_node.name, ns)
    before = plugin.log_text().count("registered nvidia.com/gpu")
    real_node.restart_kubelet(kube)

    def reregistered() -> list[float]:
        ages = re.findall(
            r"registered nvidia\.com/gpu \(endpoint \S+\) with the kubelet; kubelet\.sock is "
            r"([0-9.]+) s old",
            plugin.log_text(),
        )
        return [float(a) for a in ages[before:]]

    ages = wait_for("the plugin registered again", reregistered, 30)
    print(f"re-registered {ages[0]:.3f}s after the kubelet created its new kubelet.sock")
    assert ages[0] < 1.0
    wait_for("capacity back", lambda: capacity(kube, real_node.name, "allocatable") == "8", 60)
    assert examples.phase(kube, ns, pod["metadata"]["name"]) == "Running"
    # the restarted kubelet still gets GPUs from the plugin for a new pod
    kube.delete(resources.PODS, pod["metadata"]["name"], namespace=ns, grace_period_seconds=1)
    wait_for(
        "the pod gone", lambda: examples.phase(kube, ns, pod["metadata"]["name"]) == "Gone", 60
    )
    pod2, log2 = run_pod(kube, real_node.name, ns)
    inv = MockBackend(load_machine(PROFILE), node_name=real_node.name).inventory()
    check_output(
        log2, kubelet_allocation(pod2["metadata"]["uid"]), {g.uuid: g.minor for g in inv.gpus}
    )
