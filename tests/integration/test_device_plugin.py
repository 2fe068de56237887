"""``gpudra device-plugin`` on kwok nodes of the real control plane, through the kubelet
stand-in (``gpudra_testkit.harness.dpkubelet``): the plugin is the chart's DaemonSet container
as a process; the stand-in speaks the real v1beta1 contract and writes the node's capacity
and allocatable as the kubelet does, so kube-scheduler places ``nvidia.com/gpu`` pods by what
the plugin advertises.  What a real kubelet does with the answers (Allocate, CDI into a
container) is ``test_device_plugin_real_node.py``."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from gpudra.kube import KubeClient, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra_testkit.harness.deviceplugin import DevicePluginProcess
from gpudra_testkit.harness.dpkubelet import DevicePluginKubelet
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration
GPU = "nvidia.com/gpu"
NVIDIA = Path(__file__).parents[1] / "data" / "nvidia-device-plugin"


class Node:
    def __init__(self, kube: KubeClient, name: str, plugin: DevicePluginProcess) -> None:
        self.kube, self.name, self.plugin = kube, name, plugin
        self.kubelet = DevicePluginKubelet(
            plugin.device_plugin_dir, client=kube, node_name=name, stop_grace_s=0
        )

    def mock(self) -> MockBackend:
        """The plugin's mock GPUs, through the state file it reads."""
        return MockBackend(
            load_machine(self.plugin.profile),
            node_name=self.name,
            state_file=self.plugin.state_file,
        )

    def status(self, key: str = "allocatable") -> dict[str, str]:
        return dict(self.kube.get(resources.NODES, self.name)["status"].get(key) or {})

    def wait_status(
        self, want: dict[str, str], key: str = "allocatable", timeout: float = 30
    ) -> float:
        began = time.monotonic()
        wait_for(
            f"node {self.name} {key} {want}",
            lambda: all(self.status(key).get(k) == v for k, v in want.items()),
            timeout,
            interval=0.05,
        )
        return time.monotonic() - began


@pytest.fixture
def dp_node(kube: KubeClient, make_node: Callable[..., str]) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []
    root = Path(tempfile.mkdtemp(prefix="gpudra-dp-", dir="/tmp"))

    def start(
        profile: str,
        values: dict[str, Any] | None = None,
        before: Callable[[Node], None] | None = None,
    ) -> Node:
        name = make_node(f"dp-{profile}")
        values = {"extraConfig": {"healthRecoveryS": 0.5}, **(values or {})}
        n = Node(kube, name, DevicePluginProcess(name, profile, root / name, values=values))
        if before is not None:
            before(n)
        n.kubelet.start()
        n.plugin.start()
        started.append(n)
        return n

    yield start
    for n in started:
        n.plugin.stop()
        n.kubelet.stop()
    shutil.rmtree(root, ignore_errors=True)


def gpu_pod(name: str, node: str, count: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [
                {"name": "c", "image": "busybox", "resources": {"limits": {GPU: str(count)}}}
            ],
        },
    }


def test_kube_scheduler_places_gpu_limits_by_what_the_plugin_advertises(
    kube: KubeClient, dp_node: Callable[..., Node], namespace: str
) -> None:
    n = dp_node("dgx-h100")
    n.wait_status({GPU: "8"}, "capacity")
    n.wait_status({GPU: "8"})
    for i in range(5):
        kube.create(resources.PODS, gpu_pod(f"p{i}", n.name, 2), namespace=namespace)

    def placed() -> tuple[list[str], list[str]] | None:
        pods = kube.list(resources.PODS, namespace=namespace).items
        bound = sorted(p["metadata"]["name"] for p in pods if p["spec"].get("nodeName"))
        refused = sorted(
            p["metadata"]["name"]
            for p in pods
            if any(
                c.get("reason") == "Unschedulable" and f"Insufficient {GPU}" in c.get("message", "")
                for c in (p.get("status") or {}).get("conditions") or []
            )
        )
        return (bound, refused) if len(bound) == 4 and len(refused) == 1 else None

    bound, refused = wait_for("4 pods bound, 1 refused for nvidia.com/gpu", placed, 60)
    print(f"bound {bound}, refused {refused} (8 GPUs, 2 per pod)")


def test_a_lost_gpu_drops_allocatable_by_one_within_2s_and_comes_back(
    dp_node: Callable[..., Node],
) -> None:
    n = dp_node("dgx-h100")
    n.wait_status({GPU: "8"})
    lost_at = time.monotonic()
    n.mock().fall_off_bus(3)
    n.kubelet.wait_devices(GPU, lambda d: list(d.values()).count("Unhealthy") == 1, timeout=2)
    unhealthy_after = time.monotonic() - lost_at
    n.wait_status({GPU: "7"}, timeout=2)
    allocatable_after = time.monotonic() - lost_at
    assert n.status("capacity")[GPU] == "8"
    print(
        f"GPU 3 lost: Unhealthy in ListAndWatch after {unhealthy_after:.2f}s, node allocatable "
        f"8 -> 7 after {allocatable_after:.2f}s"
    )
    xid_at = time.monotonic()
    n.mock().inject_xid(5, 79)
    n.wait_status({GPU: "6"}, timeout=2)
    print(f"XID 79 on GPU 5: allocatable 7 -> 6 after {time.monotonic() - xid_at:.2f}s")
    n.mock().recover(3)
    n.mock().recover(5)
    n.wait_status({GPU: "8"}, timeout=5)


SEVEN_1G = {i: [("1g.10gb", s) for s in range(7)] for i in range(8)}


def mig_layout(layout: dict[int, list[tuple[str, int]]]) -> Callable[[Node], None]:
    def make(n: Node) -> None:
        m = n.mock()
        gpus = m.inventory().gpus
        for index, migs in layout.items():
            for profile, start in migs:
                m.create_mig_device(gpus[index].uuid, profile, start)

    return make


def test_mig_strategy_single_on_static_instances(dp_node: Callable[..., Node]) -> None:
    n = dp_node("dgx-h100-mig", {"migStrategy": "single"}, before=mig_layout(SEVEN_1G))
    n.wait_status({GPU: "56"}, "capacity")
    print(f"single: capacity {GPU}={n.status('capacity')[GPU]}")


def test_mig_strategy_mixed_on_static_instances(dp_node: Callable[..., Node]) -> None:
    layout = {i: [("3g.40gb", 0), ("2g.20gb", 4), ("1g.10gb", 6)] for i in range(4)} | {
        i: [("7g.80gb", 0)] for i in range(4, 8)
    }
    n = dp_node("dgx-h100-mig", {"migStrategy": "mixed"}, before=mig_layout(layout))
    want = {
        "nvidia.com/mig-3g.40gb": "4",
        "nvidia.com/mig-2g.20gb": "4",
        "nvidia.com/mig-1g.10gb": "4",
        "nvidia.com/mig-7g.80gb": "4",
        GPU: "0",
    }
    n.wait_status(want, "capacity")
    got = sorted((k, v) for k, v in n.status("capacity").items() if "nvidia" in k)
    print(f"mixed: capacity {got}")


def test_mig_strategy_single_refuses_mixed_profiles_and_advertises_none(
    dp_node: Callable[..., Node],
) -> None:
    layout = {0: [("1g.10gb", 0)], 1: [("3g.40gb", 0)]}
    n = dp_node("dgx-h100-mig", {"migStrategy": "single"}, before=mig_layout(layout))
    n.wait_status({GPU: "0"}, "capacity")
    wait_for(
        "the reason in the log",
        lambda: "the MIG devices have different profiles (1g.10gb, 3g.40gb)" in n.plugin.log_text(),
        10,
    )


def test_nvidias_time_slicing_config_unchanged_gives_32_and_nvidias_error(
    dp_node: Callable[..., Node],
) -> None:
    config = yaml.safe_load((NVIDIA / "time-slicing-strict.yaml").read_text())
    n = dp_node("dgx-h100", {"config": config})
    n.wait_status({GPU: "32"}, "capacity")
    ids = sorted(n.kubelet.devices(GPU))
    with pytest.raises(grpc.RpcError) as e:
        n.kubelet.allocate(GPU, [ids[:2]])
    print(f"Allocate of 2 replicas: {e.value.code().name}: {e.value.details()}")
    assert e.value.details() == (
        "request for 'nvidia.com/gpu: 2' too large: maximum request size for shared resources is 1"
    )
    ok = n.kubelet.allocate(GPU, [ids[:1]])
    assert ok.container_responses[0].envs["NVIDIA_VISIBLE_DEVICES"] == ids[0].split("::")[0]


def test_a_kubelet_restart_is_answered_with_a_registration_within_1s(
    dp_node: Callable[..., Node],
) -> None:
    n = dp_node("dgx-h100")
    n.wait_status({GPU: "8"})
    delays = []
    for _ in range(3):
        reborn = n.kubelet.restart()
        reg = n.kubelet.wait_registered(GPU, after=reborn, timeout=5)
        delays.append(reg.received - reborn)
        n.wait_status({GPU: "8"}, timeout=10)
    print(f"re-registered after kubelet restarts: {', '.join(f'{d:.3f}s' for d in delays)}")
    assert max(delays) < 1.0
