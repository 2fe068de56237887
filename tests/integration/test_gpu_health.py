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
from gpudra_testkit.harness.objects import bound, node_slices
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


def test_the_kubelet_hears_the_unhealthy_device_of_the_pod_that_holds_it(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    """KEP-4680: the node daemon's NodeWatchResources stream, as the kubelet stand-in reads it
    into the pod's allocatedResourcesStatus."""
    d, h = node_daemon(
        "dgx-h100", extra_args=["--health-recovery-s", "1", "--health-heartbeat-s", "1"]
    )
    plugin = h.plugins[DRIVER_NAME]
    assert plugin.health_service  # advertised in the registration's supported versions
    plugin.watch_health()
    claim = gpu_claim("on-3", namespace, 1, "device.attributes['gpu.gpudra.io'].index == 3")
    kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
    kube.create(resources.PODS, pod("p", namespace, "on-3", node=d.node_name), namespace=namespace)
    wait_for("pod bound", lambda: bound(kube, namespace, "p"), 60)
    resp = h.prepare_pod(kube.get(resources.PODS, "p", namespace=namespace), DRIVER_NAME)
    assert all(not r.error for r in resp.values()) and resp
    uid = kube.get(resources.RESOURCECLAIMS, "on-3", namespace=namespace)["metadata"]["uid"]
    key = f"k8s.{DRIVER_NAME}/claim={uid}-gpu-3"  # the CDI device ID, as the kubelet names it

    def health_of_pod() -> str | None:
        got = h.pod_health(namespace, "p", DRIVER_NAME)
        assert list(got) == [key], got
        return got[key].health if got[key] else None

    wait_for("the device healthy", lambda: health_of_pod() == "Healthy", 10, interval=0.05)
    heard = plugin.health_messages
    wait_for("a heartbeat", lambda: plugin.health_messages >= heard + 2, 5, interval=0.05)
    began = time.monotonic()
    inject(d, "--gpu", "3", "--xid", "79")
    wait_for("the device unhealthy", lambda: health_of_pod() == "Unhealthy", 2, interval=0.05)
    print(f"XID 79 on gpu-3: Unhealthy in the pod's health after {time.monotonic() - began:.2f}s")
    h3 = plugin.device_health(d.node_name, "gpu-3")
    assert h3 is not None and h3.message.startswith("XID 79"), h3
    others = [plugin.device_health(d.node_name, f"gpu-{i}") for i in (0, 1, 2, 4, 5, 6, 7)]
    assert all(o is not None and o.health == "Healthy" for o in others), others
    assert h3.timeout_s == 3 and abs(h3.last_updated - time.time()) < 5
    inject(d, "--gpu", "3", "--recover")
    wait_for("the device healthy again", lambda: health_of_pod() == "Healthy", 5, interval=0.05)
    assert not plugin.health_error


def test_the_controller_keeps_claims_off_a_tainted_gpu_and_says_why(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
    controller: Callable[..., Any],
) -> None:
    d, _ = node_daemon(
        "dgx-h100",
        extra_args=["--health-recovery-s", str(RECOVERY_S), "--controller-managed-gpus", "all"],
    )
    wait_for("slices", lambda: node_slices(kube, d.node_name))
    inject(d, "--gpu", "3", "--xid", "79")
    xid = ("gpu.gpudra.io/xid", "79", "NoSchedule")
    wait_for("the XID taint", lambda: xid in taints(kube, d.node_name, "gpu-3"), 2, interval=0.05)
    controller()
    only3 = gpu_claim("only-3", namespace, 1, "device.attributes['gpu.gpudra.io'].index == 3")
    kube.create(resources.RESOURCECLAIMS, only3, namespace=namespace)
    kube.create(
        resources.PODS,
        pod("p3", namespace, "only-3", node=d.node_name, gated=True),
        namespace=namespace,
    )
    three_or_four = gpu_claim(
        "three-or-four", namespace, 1, "device.attributes['gpu.gpudra.io'].index in [3, 4]"
    )
    kube.create(resources.RESOURCECLAIMS, three_or_four, namespace=namespace)
    kube.create(
        resources.PODS,
        pod("p34", namespace, "three-or-four", node=d.node_name, gated=True),
        namespace=namespace,
    )

    def unplaceable() -> str | None:
        for e in kube.list(resources.EVENTS, namespace=namespace).items:
            if e["involvedObject"].get("name") == "p3" and e["reason"] == "Unplaceable":
                return str(e["message"])
        return None

    why = wait_for("the controller's verdict", unplaceable, 60)
    print(f"controller: {why}")
    assert "gpu-3 is tainted gpu.gpudra.io/xid=79:NoSchedule since 20" in why
    assert bound(kube, namespace, "p3") is None

    def devices(name: str) -> list[str]:
        c = kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)
        alloc = (c.get("status") or {}).get("allocation") or {}
        return [r["device"] for r in alloc.get("devices", {}).get("results", [])]

    assert wait_for("three-or-four allocated", lambda: devices("three-or-four"), 60) == ["gpu-4"]
    inject(d, "--gpu", "3", "--recover")
    assert wait_for("only-3 allocated after recovery", lambda: devices("only-3"), 60) == ["gpu-3"]
    assert wait_for("p3 bound", lambda: bound(kube, namespace, "p3"), 30) == d.node_name


def test_a_lost_gpu_with_no_execute_evicts_the_pod_using_it_and_no_other(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    """kube-controller-manager's device-taint eviction acts on the NoExecute gpu-lost taint."""
    d, _ = node_daemon("dgx-h100", extra_args=["--health-recovery-s", "0"])
    for gpu in (6, 2):
        claim = gpu_claim(
            f"on-{gpu}", namespace, 1, f"device.attributes['gpu.gpudra.io'].index == {gpu}"
        )
        kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
        kube.create(
            resources.PODS,
            pod(f"p{gpu}", namespace, f"on-{gpu}", node=d.node_name),
            namespace=namespace,
        )

    def phase(name: str) -> str | None:
        p = kube.get(resources.PODS, name, namespace=namespace)
        return (p.get("status") or {}).get("phase")

    for name in ("p6", "p2"):
        wait_for(f"{name} running", lambda name=name: phase(name) == "Running", 60)
    began = time.monotonic()
    inject(d, "--gpu", "6", "--lost")

    def evicted() -> bool:
        items = kube.list(resources.PODS, namespace=namespace).items
        p6 = [p for p in items if p["metadata"]["name"] == "p6"]
        return not p6 or bool(p6[0]["metadata"].get("deletionTimestamp"))

    wait_for("p6 evicted", evicted, 60, interval=0.1)
    print(f"gpu-6 lost: its pod evicted after {time.monotonic() - began:.2f}s")
    p2 = kube.get(resources.PODS, "p2", namespace=namespace)
    assert not p2["metadata"].get("deletionTimestamp") and phase("p2") == "Running"
    assert all(taints(kube, d.node_name, f"gpu-{i}") == [] for i in (0, 1, 2, 3, 4, 5, 7))


def test_a_claim_that_tolerates_the_taint_still_gets_the_device(
    node_daemon: Callable[..., tuple[NodeDaemon, KubeletHarness]],
    kube: KubeClient,
    namespace: str,
) -> None:
    """Upstream semantics: kube-scheduler allocates a tainted device to a claim tolerating it."""
    d, _ = node_daemon("dgx-h100", extra_args=["--health-recovery-s", "0"])
    wait_for("slices", lambda: node_slices(kube, d.node_name))
    inject(d, "--gpu", "1", "--xid", "79")
    xid = ("gpu.gpudra.io/xid", "79", "NoSchedule")
    wait_for("the XID taint", lambda: xid in taints(kube, d.node_name, "gpu-1"), 2, interval=0.05)
    claim = gpu_claim("tolerant", namespace, 1, "device.attributes['gpu.gpudra.io'].index == 1")
    claim["spec"]["devices"]["requests"][0]["exactly"]["tolerations"] = [
        {"key": "gpu.gpudra.io/xid", "operator": "Exists", "effect": "NoSchedule"}
    ]
    kube.create(resources.RESOURCECLAIMS, claim, namespace=namespace)
    kube.create(
        resources.PODS, pod("p1", namespace, "tolerant", node=d.node_name), namespace=namespace
    )
    assert wait_for("p1 bound", lambda: bound(kube, namespace, "p1"), 60) == d.node_name
    c = kube.get(resources.RESOURCECLAIMS, "tolerant", namespace=namespace)
    assert [r["device"] for r in c["status"]["allocation"]["devices"]["results"]] == ["gpu-1"]
