"""GPU faults become device taints in the node's ResourceSlices, with the real control plane
(1.37 and, in ``make test-oldest``, 1.34): faults are injected with ``gpudra mock inject`` into
the mock node's state file; kube-scheduler keeps claims off a tainted GPU, ``gpudra explain``
names the taint, and a recovered GPU is schedulable again after the damping time."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpudra.kube import KubeClient, resources
from gpudra.resourceapi import DRIVER_NAME
from gpudra_testkit.builders import gpu_claim, pod
from gpudra_testkit.harness.kubelet import KubeletHarness
from gpudra_testkit.harness.nodedaemon import NodeDaemon
from gpudra_testkit.harness.objects import node_slices
from gpudra_testkit.harness.waiting import wait_for

pytestmark = pytest.mark.integration
RECOVERY_S = 3.0
GPUDRA = str(Path(sys.executable).parent / "gpudra")


def taints(kube: KubeClient, node: str, device: str) -> list[tuple[str, str, str]]:
    for s in node_slices(kube, node, DRIVER_NAME):
        for d in s["spec"].get("devices") or []:
            if d["name"] == device:
                return [(t["key"], t.get("value", ""), t["effect"]) for t in d.get("taints") or []]
    return []


def inject(d: NodeDaemon, *args: str) -> None:
    subprocess.run([GPUDRA, "mock", "inject", "--state-file", str(d.state_file), *args], check=True)


def unschedulable(kube: KubeClient, ns: str, name: str) -> str | None:
    p = kube.get(resources.PODS, name, namespace=ns)
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable":
            return str(c.get("message", ""))
    return None


def test_an_xid_taints_its_gpu_the_scheduler_avoids_it_and_recovery_frees_it(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    d, _ = node_daemon("dgx-h100", extra_args=["--health-recovery-s", str(RECOVERY_S)])
    wait_for(
        "slices",
        lambda: taints(kube, d.node_name, "gpu-3") == [] and node_slices(kube, d.node_name),
    )
    began = time.monotonic()
    inject(d, "--gpu", "3", "--xid", "79")
    xid = ("gpu.gpudra.io/xid", "79", "NoSchedule")
    wait_for(
        "the XID taint on gpu-3",
        lambda: xid in taints(kube, d.node_name, "gpu-3"),
        2,
        interval=0.05,
    )
    print(f"XID 79 on GPU 3: taint in the slice after {time.monotonic() - began:.2f}s")
    assert all(taints(kube, d.node_name, f"gpu-{i}") == [] for i in (0, 1, 2, 4, 5, 6, 7))

    # a claim that can only be gpu-3: kube-scheduler does not allocate it
    only3 = gpu_claim("only-3", namespace, 1, "device.attributes['gpu.gpudra.io'].index == 3")
    kube.create(resources.RESOURCECLAIMS, only3, namespace=namespace)
    kube.create(
        resources.PODS, pod("p3", namespace, "only-3", node=d.node_name), namespace=namespace
    )
    why = wait_for("kube-scheduler's verdict", lambda: unschedulable(kube, namespace, "p3"), 60)
    print(f"kube-scheduler: {why}")
    claim = kube.get(resources.RESOURCECLAIMS, "only-3", namespace=namespace)
    assert not (claim.get("status") or {}).get("allocation")

    # gpudra explain names the taint and its time
    path = tmp_path / "only-3.yaml"
    path.write_text(
        yaml.safe_dump({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", **only3})
    )
    out = subprocess.run(
        [
            GPUDRA,
            "explain",
            "-f",
            str(path),
            "--kubeconfig",
            str(d.kubeconfig),
            "--node",
            d.node_name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print(out.stdout + out.stderr)
    assert "gpu-3 is tainted gpu.gpudra.io/xid=79:NoSchedule since 20" in out.stdout

    # recovery: the taint goes after the damping time, and the pending claim gets gpu-3
    recovered = time.monotonic()
    inject(d, "--gpu", "3", "--recover")
    wait_for(
        "the taint gone",
        lambda: taints(kube, d.node_name, "gpu-3") == [],
        RECOVERY_S + 5,
        interval=0.05,
    )
    took = time.monotonic() - recovered
    print(f"recovered: taint removed after {took:.2f}s (damping {RECOVERY_S:g}s)")
    assert took >= RECOVERY_S - 0.5

    def allocated() -> Any:
        c = kube.get(resources.RESOURCECLAIMS, "only-3", namespace=namespace)
        return (c.get("status") or {}).get("allocation")

    alloc = wait_for("gpu-3 allocated again", allocated, 60)
    assert alloc["devices"]["results"][0]["device"] == "gpu-3"


def test_a_non_fatal_xid_changes_nothing_schedulable(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
) -> None:
    d, _ = node_daemon("dgx-h100", extra_args=["--health-recovery-s", "0"])
    wait_for("slices", lambda: node_slices(kube, d.node_name))
    minor = kube.server_version()[1]
    inject(d, "--gpu", "2", "--xid", "13")
    inject(d, "--gpu", "5", "--xid", "79")  # a fatal one after it: proves the 13 was handled
    wait_for("the fatal taint", lambda: taints(kube, d.node_name, "gpu-5"), 5, interval=0.05)
    got = taints(kube, d.node_name, "gpu-2")
    print(f"1.{minor}: XID 13 on gpu-2 -> taints {got}")
    if minor >= 35:
        assert got == [("gpu.gpudra.io/xid", "13", "None")]
    else:
        assert got == []  # 1.34 has no effect None: nothing is published


def test_a_lost_gpu_stays_in_the_slice_with_a_no_execute_taint(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
) -> None:
    d, _ = node_daemon("dgx-h100", extra_args=["--health-recovery-s", "0"])
    wait_for("slices", lambda: node_slices(kube, d.node_name))
    inject(d, "--gpu", "6", "--lost")
    lost = ("gpu.gpudra.io/gpu-lost", "true", "NoExecute")
    wait_for("the lost taint", lambda: lost in taints(kube, d.node_name, "gpu-6"), 2, interval=0.05)
    assert all(taints(kube, d.node_name, f"gpu-{i}") == [] for i in (0, 1, 2, 3, 4, 5, 7))
    inject(d, "--gpu", "6", "--recover")
    wait_for(
        "the lost taint gone", lambda: taints(kube, d.node_name, "gpu-6") == [], 5, interval=0.05
    )
