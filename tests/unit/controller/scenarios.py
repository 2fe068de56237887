"""The controller's decision scenarios as data: a DGX-1V node whose GPUs the controller
manages, gated pods and claims as the controller reads them, and ``run`` to decide every
group of pods (shared by the decision and memory tests)."""

from __future__ import annotations

from typing import Any

from gpudra.allocation.cluster import ClusterView
from gpudra.catalogue.catalogue import build_catalogue
from gpudra.controller.decide import decide
from gpudra.controller.groups import group_pods
from gpudra.nvml.mock import MockBackend, load_machine
from gpudra.resourceslices.builder import desired_slices
from gpudra_testkit.builders import (
    GATE,
    counted_claim,
    device_class,
    gated_pod,
    schedulable_node,
)

TS = "2026-11-27T00:00:00Z"


def pod(
    name: str, *claims: str, gated: bool = True, labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return gated_pod(name, *claims, gates=(GATE,) if gated else (), labels=labels, **spec)


def claim(name: str, count: int = 1, allocated: bool = False) -> dict[str, Any]:
    return counted_claim(name, count, allocated=allocated)


def node(name: str, **extra: Any) -> dict[str, Any]:
    return schedulable_node(name, cpu="4", **extra)


def setup(managed: frozenset[int] = frozenset(range(8))) -> tuple[ClusterView, dict[str, Any]]:
    inv = MockBackend(load_machine("dgx1-v100"), node_name="n1").inventory()
    slices = desired_slices(build_catalogue(inv, managed=managed), driver="gpu.gpudra.io")
    nodes = {"n1": node("n1")}
    view = ClusterView.from_objects(
        slices=slices, classes=[device_class()], nodes=list(nodes.values())
    )
    return view, nodes


def run(pods: list[dict[str, Any]], claims: list[dict[str, Any]], **kw: Any) -> list[Any]:
    view, nodes = kw.pop("setup", None) or setup()
    by_key = {("ns", c["metadata"]["name"]): c for c in claims}
    return [
        decide(g, claims=by_key, view=view, nodes=nodes, pods_by_node={}, timestamp=TS)
        for g in group_pods(pods)
    ]
