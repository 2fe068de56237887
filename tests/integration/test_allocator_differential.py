"""Differential test: gpudra's allocator against the real kube-scheduler, on random cases.

A seeded generator builds kwok nodes with slices from the mock profiles and random claims.
For every claim, in the current cluster state:
  1. gpudra decides feasibility (best mode) from the API objects;
  2. the scheduler decides: the claim and an unpinned pod using it are created; the pod is
     either bound (feasible) or marked Unschedulable; then both are deleted again;
  3. the two verdicts must agree;
  4. when feasible, gpudra's allocation is written into a fresh claim's status and a pod
     using that claim must be bound by the scheduler to gpudra's node (so the scheduler
     accepts it).  These pods stay, so the cluster fills up as the cases go on.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import parse_claim
from gpudra.kube import KubeClient, NotFound, resources
from gpudra_testkit.builders import pod
from gpudra_testkit.checkout import REPO
from gpudra_testkit.harness.claimgen import random_claim, random_profiles, random_share_claim
from gpudra_testkit.harness.objects import apply_file, publish

pytestmark = pytest.mark.integration
SEED = int(os.environ.get("GPUDRA_DIFF_SEED", "20261127"))
CASES = int(os.environ.get("GPUDRA_DIFF_CASES", "40"))
NODES = 5


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verdict(kube: KubeClient, namespace: str, name: str, timeout: float = 30.0) -> str | None:
    """The bound node, or None once the scheduler marks the pod Unschedulable."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = kube.get(resources.PODS, name, namespace=namespace)
        if p["spec"].get("nodeName"):
            return str(p["spec"]["nodeName"])
        for c in (p.get("status") or {}).get("conditions") or []:
            # SchedulerError: a selector failed at run time (the whole pod fails, by design)
            if c.get("type") == "PodScheduled" and c.get("reason") in (
                "Unschedulable",
                "SchedulerError",
            ):
                return None
        time.sleep(0.05)
    raise AssertionError(f"pod {namespace}/{name} neither bound nor unschedulable in {timeout}s")


def bound_eventually(kube: KubeClient, namespace: str, name: str, timeout: float = 30.0) -> str:
    """The node a pod whose claims are already allocated is bound to.  kube-scheduler may
    first call it Unschedulable while the devices of the claim deleted just before are still
    in its in-flight allocations, and retry once it sees the deletion: only a pod still
    unbound at the deadline fails, with the scheduler's last word."""
    deadline = time.monotonic() + timeout
    why = ""
    while time.monotonic() < deadline:
        p = kube.get(resources.PODS, name, namespace=namespace)
        if p["spec"].get("nodeName"):
            return str(p["spec"]["nodeName"])
        for c in (p.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled":
                why = str(c.get("message", ""))
        time.sleep(0.05)
    raise AssertionError(f"pod {namespace}/{name} not bound in {timeout}s: {why}")


def delete_and_wait(kube: KubeClient, res: Any, name: str, namespace: str) -> None:
    try:
        kube.delete(res, name, namespace=namespace, grace_period_seconds=0)
    except NotFound:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            kube.get(res, name, namespace=namespace)
        except NotFound:
            return
        time.sleep(0.05)
    raise AssertionError(f"{res.plural} {namespace}/{name} was not deleted")


def cluster_view(kube: KubeClient, nodes: list[str]) -> ClusterView:
    return ClusterView.from_objects(
        slices=kube.list(resources.RESOURCESLICES).items,
        classes=kube.list(resources.DEVICECLASSES).items,
        nodes=[n for n in kube.list(resources.NODES).items if n["metadata"]["name"] in nodes],
        claims=kube.list(resources.RESOURCECLAIMS).items,
    )


def run_cases(
    kube: KubeClient,
    namespace: str,
    nodes: list[str],
    generate: Callable[[random.Random, str, str], dict[str, Any]],
    rng: random.Random,
    *,
    cases: int,
    prefix: str,
) -> dict[str, int]:
    """The differential loop (module docstring) over ``cases`` generated claims."""
    stats = {"feasible": 0, "infeasible": 0, "accepted": 0, "shares": 0}
    for i in range(cases):
        raw = generate(rng, f"{prefix}s{i}", namespace)
        # gpudra reads the claim as stored: the API server drops fields whose gate is off
        stored = kube.create(resources.RESOURCECLAIMS, raw)
        view = cluster_view(kube, nodes)
        parsed = parse_claim(stored)
        ours = Allocator(view).allocate([parsed], nodes)
        kube.create(resources.PODS, pod(f"{prefix}s{i}", namespace, f"{prefix}s{i}"))
        theirs = verdict(kube, namespace, f"{prefix}s{i}")
        delete_and_wait(kube, resources.PODS, f"{prefix}s{i}", namespace)
        delete_and_wait(kube, resources.RESOURCECLAIMS, f"{prefix}s{i}", namespace)
        assert ours.feasible == (theirs is not None), (
            f"case {i} (seed {SEED}): gpudra says {'feasible' if ours.feasible else 'no'}, "
            f"kube-scheduler says {theirs or 'unschedulable'}; claim: {stored['spec']}\n"
            f"gpudra's explanation:\n{explain(ours, [parsed])}"
        )
        if ours.best is None:
            stats["infeasible"] += 1
            continue
        stats["feasible"] += 1
        mine = dict(raw, metadata={"name": f"{prefix}g{i}", "namespace": namespace})
        kube.create(resources.RESOURCECLAIMS, mine)
        allocation = ours.best.allocation(parsed, timestamp=now())
        assert allocation["devices"]["results"], allocation
        stats["shares"] += sum(1 for r in allocation["devices"]["results"] if "shareID" in r)
        kube.patch_status(
            resources.RESOURCECLAIMS,
            f"{prefix}g{i}",
            {"status": {"allocation": allocation}},
            namespace=namespace,
        )
        kube.create(resources.PODS, pod(f"{prefix}g{i}", namespace, f"{prefix}g{i}"))
        bound = bound_eventually(kube, namespace, f"{prefix}g{i}")
        assert bound == ours.best.node, (
            f"case {i}: scheduler bound to {bound}, not {ours.best.node}"
        )
        stats["accepted"] += 1
    return stats


def test_allocator_agrees_with_kube_scheduler(
    kube: KubeClient, namespace: str, make_node: Callable[..., str]
) -> None:
    rng = random.Random(SEED)
    apply_file(kube, REPO / "deploy" / "deviceclasses.yaml")
    nodes = []
    for profile in random_profiles(rng, NODES):
        name = make_node(f"diff-{profile}")
        publish(kube, kube.get(resources.NODES, name), profile)
        nodes.append(name)
    stats = run_cases(kube, namespace, nodes, random_claim, rng, cases=CASES, prefix="")
    print(f"\ndifferential test (seed {SEED}): {CASES} cases, {stats}")
    assert stats["feasible"] and stats["infeasible"], stats  # the generator covers both sides


# node profile, its GPUs published for shares, and the shares capacity (0: none)
SHARED_NODES = (("dgx-h100", "0-7", 4), ("pcie-l4", "0-1", 0), ("dgx-a100", "0-3", 0))


def test_allocator_agrees_with_kube_scheduler_on_shares(
    kube: KubeClient, namespace: str, make_node: Callable[..., str]
) -> None:
    """Consumable capacity: GPUs shared by several claims, each asking part of the memory
    (and multiprocessors, shares); the cluster fills up with shares as the cases go on.  On
    a server without consumable capacity (before 1.36) the fields are dropped and the same
    cases run on plain devices."""
    rng = random.Random(SEED + 1)
    apply_file(kube, REPO / "deploy" / "deviceclasses.yaml")
    nodes = []
    for profile, gpus, shares in SHARED_NODES:
        name = make_node(f"share-{profile}")
        first, _, last = gpus.partition("-")
        shared = frozenset(range(int(first), int(last) + 1))
        publish(kube, kube.get(resources.NODES, name), profile, shared=shared, shares=shares)
        nodes.append(name)
    consumable = kube.server_version()[1] >= 36
    generate = functools.partial(random_share_claim, consumable=consumable)
    stats = run_cases(kube, namespace, nodes, generate, rng, cases=CASES, prefix="sh")
    print(f"\ndifferential test on shares (seed {SEED + 1}): {CASES} cases, {stats}")
    assert stats["feasible"] and stats["infeasible"], stats
    if consumable:
        assert stats["shares"] > CASES // 4, stats  # the cases do exercise shares
