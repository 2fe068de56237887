"""The cluster controller on the real control plane: topology-aware placement, gangs,
restart safety and bad input.  The controller runs as a real ``gpudra controller`` process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from gpudra.kube import KubeClient, resources
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra_testkit.builders import gpu_claim, pod
from gpudra_testkit.harness.objects import bound, publish
from gpudra_testkit.harness.waiting import allocation, wait_for

pytestmark = pytest.mark.integration
ALL = frozenset(range(8))


def allocated_gpus(kube: KubeClient, ns: str, claim_name: str) -> list[int]:
    c = kube.get(resources.RESOURCECLAIMS, claim_name, namespace=ns)
    alloc = (c.get("status") or {}).get("allocation") or {}
    return sorted(
        int(r["device"].split("-")[1]) for r in alloc.get("devices", {}).get("results", [])
    )


def events(kube: KubeClient, ns: str, pod_name: str) -> list[dict[str, Any]]:
    return [
        e
        for e in kube.list(resources.EVENTS, namespace=ns).items
        if e["involvedObject"].get("name") == pod_name
    ]


def dgx1_bandwidth(gpus: list[int]) -> float:
    topo = MockBackend(load_machine("dgx1-v100"), node_name="x").inventory().topology
    return topo.set_bandwidth(gpus)


def test_gated_pod_gets_max_bandwidth_where_the_scheduler_does_not(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    a, b = make_node("dgx1-a"), make_node("dgx1-b")
    publish(kube, kube.get(resources.NODES, a), "dgx1-v100")
    # on b every GPU but gpu-1 is controller-managed; gpu-1 stays the scheduler's
    publish(kube, kube.get(resources.NODES, b), "dgx1-v100", frozenset({0, 2, 3, 4, 5, 6, 7}))
    for n in (a, b):
        # one GPU already in use on each node: first fit then breaks the first quad
        kube.create(
            resources.RESOURCECLAIMS,
            gpu_claim(f"busy-{n}", namespace, 1, "device.attributes['gpu.gpudra.io'].index == 1"),
        )
        kube.create(resources.PODS, pod(f"busy-{n}", namespace, f"busy-{n}", node=n))
        wait_for("busy pod bound", lambda n=n: bound(kube, namespace, f"busy-{n}"))
    kube.create(resources.RESOURCECLAIMS, gpu_claim("sched", namespace, 4))
    kube.create(resources.PODS, pod("sched", namespace, "sched", node=a))
    wait_for("scheduler pod bound", lambda: bound(kube, namespace, "sched"))
    theirs = allocated_gpus(kube, namespace, "sched")
    controller()
    kube.create(resources.RESOURCECLAIMS, gpu_claim("ctrl", namespace, 4))
    kube.create(resources.PODS, pod("ctrl", namespace, "ctrl", node=b, gated=True))
    assert wait_for("controller pod bound", lambda: bound(kube, namespace, "ctrl")) == b
    ours = allocated_gpus(kube, namespace, "ctrl")
    print(
        f"\nscheduler: {theirs} = {dgx1_bandwidth(theirs)} GB/s; "
        f"controller: {ours} = {dgx1_bandwidth(ours)} GB/s"
    )
    assert ours == [4, 5, 6, 7] and dgx1_bandwidth(ours) == 450.0
    assert dgx1_bandwidth(theirs) < dgx1_bandwidth(ours)
    assert any(e["reason"] == "Allocated" for e in events(kube, namespace, "ctrl"))


def test_device_config_in_allocations_is_the_schedulers(
    device_classes: None,
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    controller: Callable[[], Any],
) -> None:
    """The same claim (class config + claim config) allocated by kube-scheduler and by the
    controller: ``status.allocation.devices.config`` must be identical."""
    cls = f"cfg-{namespace}"[:60]
    kube.create(
        resources.DEVICECLASSES,
        {
            "metadata": {"name": cls},
            "spec": {
                "selectors": [{"cel": {"expression": "device.driver == 'gpu.gpudra.io'"}}],
                "config": [
                    {"opaque": {"driver": "gpu.gpudra.io", "parameters": {"from": "class"}}}
                ],
            },
        },
    )
    n = make_node("cfg")
    publish(kube, kube.get(resources.NODES, n), "dgx-h100", frozenset({4, 5, 6, 7}))
    for name, gated in (("sched", False), ("ctrl", True)):
        c = gpu_claim(name, namespace, 1)
        c["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = cls
        c["spec"]["devices"]["requests"].append(
            {"name": "more", "exactly": {"deviceClassName": cls, "count": 1}}
        )
        c["spec"]["devices"]["requests"].append(
            {"name": "extra", "exactly": {"deviceClassName": "gpu.gpudra.io", "count": 1}}
        )
        c["spec"]["devices"]["config"] = [
            {
                "requests": ["gpus"],
                "opaque": {"driver": "gpu.gpudra.io", "parameters": {"from": "claim"}},
            },
            {"opaque": {"driver": "other.example.com", "parameters": {"x": 1}}},
        ]
        kube.create(resources.RESOURCECLAIMS, c)
        if gated:
            controller()
        kube.create(resources.PODS, pod(name, namespace, name, node=n, gated=gated))
        wait_for(f"{name} bound", lambda name=name: bound(kube, namespace, name))
    try:
        got = {
            name: kube.get(resources.RESOURCECLAIMS, name, namespace=namespace)["status"][
                "allocation"
            ]["devices"]
            for name in ("sched", "ctrl")
        }
        assert got["ctrl"]["config"] == got["sched"]["config"], got
        assert got["sched"]["config"][0]["source"] == "FromClass"
    finally:
        kube.delete(resources.DEVICECLASSES, cls)


def test_gang_waits_all_or_nothing_then_places_when_a_node_appears(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    nodes = [make_node("gang") for _ in range(3)]
    for n in nodes:
        publish(kube, kube.get(resources.NODES, n), "dgx-h100", ALL)
    controller()
    labels = {"gpudra.io/gang": "train", "gpudra.io/gang-size": "4"}
    for i in range(4):
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"w{i}", namespace, 8))
        kube.create(resources.PODS, pod(f"w{i}", namespace, f"w{i}", gated=True, labels=labels))
    ev = wait_for(
        "unplaceable event",
        lambda: [e for e in events(kube, namespace, "w0") if e["reason"] == "Unplaceable"],
    )
    msg = ev[0]["message"]
    assert msg.startswith(f"gang {namespace}/gang:train: cannot allocate"), msg
    assert "needs at least 8 device(s); 0 of 8 are free" in msg, msg
    time.sleep(1.5)
    assert all(allocated_gpus(kube, namespace, f"w{i}") == [] for i in range(4))  # nothing partial
    assert all(bound(kube, namespace, f"w{i}") is None for i in range(4))
    extra = make_node("gang")
    publish(kube, kube.get(resources.NODES, extra), "dgx-h100", ALL)
    placed = wait_for(
        "all 4 gang pods bound",
        lambda: (
            [bound(kube, namespace, f"w{i}") for i in range(4)]
            if all(bound(kube, namespace, f"w{i}") for i in range(4))
            else None
        ),
        timeout=60,
    )
    assert sorted(placed) == sorted([*nodes, extra])
    assert all(allocated_gpus(kube, namespace, f"w{i}") == list(range(8)) for i in range(4))


def test_restart_mid_gang_ends_fully_allocated(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    nodes = [make_node("crash") for _ in range(2)]
    for n in nodes:
        publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    labels = {"gpudra.io/gang": "g", "gpudra.io/gang-size": "2"}
    for i in range(2):
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"m{i}", namespace, 4))
        kube.create(resources.PODS, pod(f"m{i}", namespace, f"m{i}", gated=True, labels=labels))
    # what a controller killed after its first claim write leaves behind
    kube.patch_status(
        resources.RESOURCECLAIMS,
        "m0",
        {"status": {"allocation": allocation(nodes[1], [f"gpu-{i}" for i in range(4)])}},
        namespace=namespace,
    )
    controller()
    placed = wait_for(
        "both bound",
        lambda: (
            [bound(kube, namespace, f"m{i}") for i in range(2)]
            if all(bound(kube, namespace, f"m{i}") for i in range(2))
            else None
        ),
    )
    assert sorted(placed) == sorted(nodes)
    assert any(e["reason"] == "RolledBack" for e in events(kube, namespace, "m0"))


def test_bad_input_gets_events_and_others_are_still_served(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    n = make_node("bad")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    kube.create(resources.RESOURCECLAIMS, gpu_claim("c1", namespace, 1))
    kube.create(resources.RESOURCECLAIMS, gpu_claim("c2", namespace, 1))
    kube.create(
        resources.PODS,
        pod(
            "g1",
            namespace,
            "c1",
            gated=True,
            labels={"gpudra.io/gang": "x", "gpudra.io/gang-size": "2"},
        ),
    )
    kube.create(
        resources.PODS,
        pod(
            "g2",
            namespace,
            "c2",
            gated=True,
            labels={"gpudra.io/gang": "x", "gpudra.io/gang-size": "3"},
        ),
    )
    kube.create(resources.PODS, pod("noclaims", namespace, "", gated=True))
    bad_class = gpu_claim("c3", namespace, 1)
    bad_class["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "tpu.example.com"
    kube.create(resources.RESOURCECLAIMS, bad_class)
    kube.create(resources.PODS, pod("badclass", namespace, "c3", gated=True))
    kube.create(resources.RESOURCECLAIMS, gpu_claim("ok", namespace, 2))
    kube.create(resources.PODS, pod("good", namespace, "ok", gated=True))
    controller()
    assert wait_for("good pod bound", lambda: bound(kube, namespace, "good")) == n

    def message(pod_name: str) -> str:
        ev = [e for e in events(kube, namespace, pod_name) if e["type"] == "Warning"]
        return ev[0]["message"] if ev else ""

    assert "disagree on gpudra.io/gang-size" in wait_for("gang event", lambda: message("g1"))
    assert "has no resource claims" in wait_for("no-claims event", lambda: message("noclaims"))
    assert "device class 'tpu.example.com' does not exist" in wait_for(
        "class event", lambda: message("badclass")
    )
    cond = [
        c
        for c in kube.get(resources.PODS, "badclass", namespace=namespace)["status"].get(
            "conditions", []
        )
        if c["type"] == "gpudra.io/Placement"
    ]
    assert cond and cond[0]["status"] == "False" and cond[0]["reason"] == "Unplaceable"


def test_scheduler_and_controller_never_share_a_device(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[[], Any],
) -> None:
    """Ungated pods (kube-scheduler) and gated pods (controller) compete for the same nodes:
    GPUs 4-7 of each node are controller-managed (tainted), 0-3 are the scheduler's."""
    nodes = [make_node("stress") for _ in range(3)]
    for n in nodes:
        publish(kube, kube.get(resources.NODES, n), "dgx-h100", frozenset({4, 5, 6, 7}))
    controller()
    for i in range(12):  # exactly the scheduler's 12 GPUs
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"s{i}", namespace, 1))
        kube.create(resources.PODS, pod(f"s{i}", namespace, f"s{i}"))
        if i % 2 == 0:  # and the controller's 12 GPUs, interleaved
            kube.create(resources.RESOURCECLAIMS, gpu_claim(f"c{i}", namespace, 2))
            kube.create(resources.PODS, pod(f"c{i}", namespace, f"c{i}", gated=True))
    names = [f"s{i}" for i in range(12)] + [f"c{i}" for i in range(0, 12, 2)]
    wait_for("every pod bound", lambda: all(bound(kube, namespace, n) for n in names), 90)
    owners: dict[tuple[str, str], str] = {}
    for c in kube.list(resources.RESOURCECLAIMS, namespace=namespace).items:
        alloc = (c.get("status") or {}).get("allocation") or {}
        for r in alloc.get("devices", {}).get("results", []):
            key = (r["pool"], r["device"])
            assert key not in owners, (
                f"{key} allocated to {owners[key]} and {c['metadata']['name']}"
            )
            owners[key] = c["metadata"]["name"]
    assert len(owners) == 24
    managed = {k for k, v in owners.items() if v.startswith("c")}
    assert all(int(d.split("-")[1]) >= 4 for _, d in managed)
    print(
        f"\nstress: 12 scheduler pods + 6 controller pods bound, {len(owners)} devices, "
        "0 shared, 0 stuck"
    )


def test_unused_allocations_are_released_and_stuck_pods_rescued(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[..., Any],
) -> None:
    n = make_node("life")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    # a claim the controller allocated for a gated pod that was deleted before it ran
    kube.create(resources.RESOURCECLAIMS, gpu_claim("orphan", namespace, 1))
    kube.patch_status(
        resources.RESOURCECLAIMS,
        "orphan",
        {"status": {"allocation": allocation(n, ["gpu-3"], tolerate_managed=True)}},
        namespace=namespace,
    )
    controller("--unschedulable-deadline", "2")
    wait_for("orphan released", lambda: allocated_gpus(kube, namespace, "orphan") == [])
    # a pod the controller places but the scheduler will not bind: a pod anti-affinity rule
    # (which the controller's fit check does not model) conflicts with a pod already there
    blocker = {
        "metadata": {"name": "blocker", "namespace": namespace, "labels": {"app": "solo"}},
        "spec": {"nodeName": n, "containers": [{"name": "c", "image": "busybox"}]},
    }
    kube.create(resources.PODS, blocker)
    late = pod("late", namespace, "late", gated=True, node=n, labels={"app": "solo"})
    term = {
        "labelSelector": {"matchLabels": {"app": "solo"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    late["spec"]["affinity"] = {
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    }
    kube.create(resources.RESOURCECLAIMS, gpu_claim("late", namespace, 1))
    kube.create(resources.PODS, late)
    wait_for("allocated", lambda: allocated_gpus(kube, namespace, "late"))
    ev = wait_for(
        "rescheduling event",
        lambda: [e for e in events(kube, namespace, "late") if e["reason"] == "Rescheduling"],
        timeout=30,
    )
    assert "released them" in ev[0]["message"]
    assert bound(kube, namespace, "late") is None


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def elector(kube: KubeClient, namespace: str, who: str, local: Clock, **kw: Any) -> Any:
    from gpudra.controller.leader import LeaderElector

    return LeaderElector(
        kube,
        name="gpudra",
        namespace=namespace,
        identity=who,
        lease_duration_s=10,
        renew_deadline_s=6,
        retry_period_s=1,
        clock=local,
        **kw,
    )


def test_leader_election_one_holder_then_takeover(kube: KubeClient, namespace: str) -> None:
    local = Clock()
    a, b = elector(kube, namespace, "a", local), elector(kube, namespace, "b", local)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    local.t += 5
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    local.t += 9  # 9 s since b saw the record change: not expired yet
    assert not b.try_acquire_or_renew() and not a.leading()  # a's renew deadline passed
    local.t += 2  # 11 s since the last change b saw: a stopped renewing
    assert b.try_acquire_or_renew() and not a.try_acquire_or_renew()
    lease = kube.get(resources.LEASES, "gpudra", namespace=namespace)
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_expiry_is_judged_by_observation_not_by_a_skewed_clock(
    kube: KubeClient, namespace: str
) -> None:
    """b's wall clock is an hour ahead: the renewTime a writes looks ancient to it.  Comparing
    clocks (the old elector) let b take the lease from a live leader at once."""
    local = Clock()
    a = elector(kube, namespace, "a", local)
    b = elector(kube, namespace, "b", local, wall_clock=lambda: time.time() + 3600)
    assert a.try_acquire_or_renew()
    for _ in range(5):
        assert not b.try_acquire_or_renew(), "b took the lease of a leader that renews"
        local.t += 4
        assert a.try_acquire_or_renew() and a.leading()


def test_a_leader_that_cannot_renew_stops_writing_before_anyone_can_take_over(
    kube: KubeClient, namespace: str
) -> None:
    local = Clock()
    a, b = elector(kube, namespace, "a", local), elector(kube, namespace, "b", local)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    # a is cut off from the API server from now on; time passes
    local.t += 6
    assert not a.leading(), "a still believes it leads past its renew deadline"
    assert not b.try_acquire_or_renew()  # and nobody else leads yet either
    local.t += 4
    assert b.try_acquire_or_renew()


def test_release_hands_the_lease_over_at_once(kube: KubeClient, namespace: str) -> None:
    local = Clock()
    a, b = elector(kube, namespace, "a", local), elector(kube, namespace, "b", local)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    a.release()
    assert not a.leading() and b.try_acquire_or_renew()


@pytest.mark.parametrize("delay", [0.05, 0.4, 0.9])
def test_sigkill_during_a_gang_then_restart_converges(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[..., Any],
    delay: float,
) -> None:
    """SIGKILL the controller while it works on a gang (at several moments), restart it: the
    gang ends fully allocated and bound, and no device is allocated twice."""
    nodes = [make_node("kill") for _ in range(4)]
    for n in nodes:
        publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    labels = {"gpudra.io/gang": "k", "gpudra.io/gang-size": "8"}
    first = controller()
    for i in range(8):
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"k{i}", namespace, 2))
        kube.create(resources.PODS, pod(f"k{i}", namespace, f"k{i}", gated=True, labels=labels))
    time.sleep(delay)
    first.kill()
    first.wait(5)
    controller()
    names = [f"k{i}" for i in range(8)]
    wait_for("gang bound", lambda: all(bound(kube, namespace, n) for n in names), timeout=60)
    seen: set[tuple[str, int]] = set()
    for name in names:
        node_name = bound(kube, namespace, name)
        for gpu in allocated_gpus(kube, namespace, name):
            assert (str(node_name), gpu) not in seen
            seen.add((str(node_name), gpu))
    assert len(seen) == 16


def test_controller_places_mig_slices_without_overlap(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    controller: Callable[..., Any],
) -> None:
    if kube.server_version()[1] < 35:
        pytest.skip("dynamic MIG needs the 1.35+ partitionable-device layout")
    n = make_node("mig")
    publish(kube, kube.get(resources.NODES, n), "dgx-h100-mig", ALL, dynamic_mig=ALL)
    controller()
    for name, profile in (("a", "3g.40gb"), ("b", "3g.40gb"), ("c", "1g.10gb")):
        sel = f"device.attributes['gpu.gpudra.io'].profile == '{profile}'"
        c = gpu_claim(name, namespace, 1, sel)
        c["spec"]["devices"]["requests"][0]["exactly"]["deviceClassName"] = "mig.gpudra.io"
        kube.create(resources.RESOURCECLAIMS, c)
        kube.create(resources.PODS, pod(name, namespace, name, gated=True))
    wait_for("all bound", lambda: all(bound(kube, namespace, x) for x in "abc"))
    used: set[tuple[str, int]] = set()
    for x in "abc":
        (r,) = kube.get(resources.RESOURCECLAIMS, x, namespace=namespace)["status"]["allocation"][
            "devices"
        ]["results"]
        minor, start = r["device"].split("-")[1], int(r["device"].split("-")[-1])
        size = {"3g.40gb": 4, "1g.10gb": 1}["3g.40gb" if x in "ab" else "1g.10gb"]
        span = {(minor, i) for i in range(start, start + size)}
        assert not span & used, f"overlap: {r['device']}"
        used |= span
