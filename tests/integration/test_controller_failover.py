"""Two controller replicas on one cluster, and writes that race other writers.

In process, so clocks and slow passes can be injected; everything else is real: the API
server, the Lease, kube-scheduler binding the ungated pods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpudra.controller.leader import LeaderElector
from gpudra.controller.reconciler import NotLeader, Reconciler
from gpudra.kube import KubeClient, resources
from gpudra.kube.objects import PatchType
from gpudra.metrics.controller import ControllerMetrics
from gpudra_testkit.builders import gpu_claim, pod
from gpudra_testkit.harness.objects import publish
from gpudra_testkit.harness.waiting import allocation, wait_for

pytestmark = pytest.mark.integration
ALL = frozenset(range(8))


@dataclass
class Hooked:
    """gpudra's API client with a hook before chosen calls (to slow a pass or let another
    writer in)."""

    client: KubeClient
    before: Callable[[str, tuple[Any, ...], dict[str, Any]], None] = lambda m, a, k: None

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.client, name)
        if name not in ("list", "get", "patch", "patch_status", "create", "replace"):
            return real

        def call(*args: Any, **kw: Any) -> Any:
            self.before(name, args, kw)
            return real(*args, **kw)

        return call


def reconciler(client: Any) -> Reconciler:
    return Reconciler(client, metrics=ControllerMetrics(), unschedulable_deadline_s=600)


def gates(kube: KubeClient, ns: str, name: str) -> list[str]:
    p = kube.get(resources.PODS, name, namespace=ns)
    return [g["name"] for g in p["spec"].get("schedulingGates") or []]


def test_only_our_gate_is_removed_while_another_controller_removes_its_own(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
) -> None:
    """The pod carries another controller's gate before ours; that controller removes it
    between our read and our write.  Replacing the whole list (the old code) re-added it, which
    the API server refuses, so the pod stayed gated; removing only ours, tested at its index
    and retried once, ungates it in the same pass."""
    n = make_node("gates")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    kube.create(resources.RESOURCECLAIMS, gpu_claim("c", namespace, 1))
    body = pod("p", namespace, "c", gated=True)
    body["spec"]["schedulingGates"] = [
        {"name": "example.com/other"},
        {"name": "gpudra.io/topology"},
    ]
    kube.create(resources.PODS, body)

    def other_controller(method: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if (
            method == "patch"
            and args[0] is resources.PODS
            and gates(kube, namespace, "p")[0:1] == ["example.com/other"]
        ):
            kube.patch(
                resources.PODS,
                "p",
                [{"op": "remove", "path": "/spec/schedulingGates/0"}],
                namespace=namespace,
                patch_type=PatchType.JSON,
            )

    reconciler(Hooked(kube, other_controller)).run_pass()
    assert gates(kube, namespace, "p") == []


def test_a_stale_release_never_clears_a_newer_allocation(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
) -> None:
    """A claim this controller allocated is unused when the pass reads it; before the pass
    releases it, another replica (leading now) allocates it afresh.  The release was decided
    from the old snapshot and must not clear the new allocation."""
    n = make_node("stale")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    kube.create(resources.RESOURCECLAIMS, gpu_claim("orphan", namespace, 1))
    old = allocation(n, ["gpu-0"], tolerate_managed=True)
    kube.patch_status(
        resources.RESOURCECLAIMS, "orphan", {"status": {"allocation": old}}, namespace=namespace
    )
    new = allocation(n, ["gpu-3"], tolerate_managed=True)
    fired = []

    def newer_leader(method: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if method == "patch_status" and args[0] is resources.RESOURCECLAIMS and not fired:
            fired.append(1)
            for a in (None, new):
                kube.patch_status(
                    resources.RESOURCECLAIMS,
                    "orphan",
                    {"status": {"allocation": a}},
                    namespace=namespace,
                )

    reconciler(Hooked(kube, newer_leader)).run_pass()
    assert fired, "the pass did not try to release the unused claim"
    got = kube.get(resources.RESOURCECLAIMS, "orphan", namespace=namespace)["status"]
    assert got.get("allocation", {}).get("devices") == new["devices"]


def test_a_replica_that_may_not_write_writes_nothing(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
) -> None:
    n = make_node("fenced")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)
    kube.create(resources.RESOURCECLAIMS, gpu_claim("c", namespace, 1))
    kube.create(resources.PODS, pod("p", namespace, "c", gated=True))
    r = reconciler(kube)
    r.may_write = lambda: False
    with pytest.raises(NotLeader):
        r.run_pass()
    c = kube.get(resources.RESOURCECLAIMS, "c", namespace=namespace)
    assert not (c.get("status") or {}).get("allocation")
    assert gates(kube, namespace, "p") == ["gpudra.io/topology"]


@dataclass
class Replica:
    name: str
    elector: LeaderElector
    reconciler: Reconciler
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.reconciler.may_write = self.elector.leading
        for target in (self._elect, self._loop):
            t = threading.Thread(target=target, daemon=True, name=self.name)
            t.start()
            self.threads.append(t)

    def _elect(self) -> None:
        self.elector.run(self.stop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            if self.elector.leading():
                try:
                    self.reconciler.run_pass()
                except NotLeader:
                    pass
                except Exception:
                    pass
            self.stop.wait(0.2)

    def halt(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for r in made:
        r.halt()


def test_two_replicas_with_skewed_clocks_and_a_slow_pass_never_double_allocate(
    kube: KubeClient,
    namespace: str,
    make_node: Callable[..., str],
    device_classes: None,
    replicas: list[Replica],
) -> None:
    """Replica a leads; its passes are slowed beyond the lease duration; b's wall clock runs
    an hour ahead.  Gated pods compete for the last GPUs.  The lease must have one holder at
    a time, no device may end up in two claims, and no allocation written by one replica may
    be released by the other."""
    n = make_node("race")
    publish(kube, kube.get(resources.NODES, n), "pcie-l4", ALL)  # 4 GPUs
    writes: list[tuple[str, str, str]] = []  # (replica, claim, "alloc" | "release")
    lock = threading.Lock()

    def recorder(who: str, slow: bool) -> Callable[[str, tuple[Any, ...], dict[str, Any]], None]:
        def before(method: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
            if slow and method == "list" and args[0] is resources.RESOURCESLICES:
                time.sleep(4.0)  # longer than the 3 s lease
            if method == "patch_status" and args[0] is resources.RESOURCECLAIMS:
                kind = "alloc" if args[2]["status"]["allocation"] else "release"
                with lock:
                    writes.append((who, args[1], kind))

        return before

    def replica(who: str, slow: bool, wall: Callable[[], float]) -> Replica:
        client = Hooked(kube, recorder(who, slow))
        e = LeaderElector(
            client,  # type: ignore[arg-type]
            name="race",
            namespace=namespace,
            identity=who,
            lease_duration_s=3.0,
            renew_deadline_s=2.0,
            retry_period_s=0.5,
            wall_clock=wall,
        )
        r = Replica(who, e, reconciler(client))
        replicas.append(r)
        return r

    a = replica("a", slow=True, wall=time.time)
    a.start()
    wait_for("a leads", a.elector.leading, 10)
    b = replica("b", slow=False, wall=lambda: time.time() + 3600)
    b.start()
    for i in range(6):  # 6 pods x 1 GPU for 4 GPUs
        kube.create(resources.RESOURCECLAIMS, gpu_claim(f"c{i}", namespace, 1))
        kube.create(resources.PODS, pod(f"p{i}", namespace, f"c{i}", gated=True))
    both = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        both += a.elector.leading() and b.elector.leading()
        time.sleep(0.05)
    assert both == 0, f"both replicas led at once in {both} samples"
    held: dict[str, str] = {}
    for c in kube.list(resources.RESOURCECLAIMS, namespace=namespace).items:
        for r in (
            ((c.get("status") or {}).get("allocation") or {}).get("devices", {}).get("results", [])
        ):
            dev = f"{r['pool']}/{r['device']}"
            assert dev not in held, f"{dev} allocated to {held[dev]} and {c['metadata']['name']}"
            held[dev] = c["metadata"]["name"]
    assert len(held) == 4, f"the 4 GPUs were not all placed: {held}"
    writer = {}
    for who, name, kind in writes:
        if kind == "alloc":
            writer[name] = who
        elif name in writer and writer[name] != who:
            pytest.fail(f"{who} released {name}, allocated by {writer[name]}")
