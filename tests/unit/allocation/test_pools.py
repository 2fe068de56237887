"""Pool grouping: one node's slices can neither join nor replace another node's pool."""

from __future__ import annotations

from typing import Any

import pytest

from gpudra.allocation.cluster import ClusterView
from gpudra.allocation.engine import Allocator
from gpudra.allocation.explain import explain
from gpudra.allocation.inputs import parse_claim
from gpudra.allocation.pools import build_pools
from gpudra_testkit.builders import DRIVER, claim, device_class, exactly, node

OTHER = "nic.example.com"


def slice_(
    name: str,
    node_name: str,
    pool: str,
    *devices: str,
    driver: str = DRIVER,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": node_name,
            "pool": {"name": pool, "generation": generation, "resourceSliceCount": 1},
            "devices": [{"name": d, "attributes": {"type": {"string": "gpu"}}} for d in devices],
        },
    }


NODE_B = slice_("b-0", "node-b", "node-b", "gpu-0", "gpu-1")

Built = dict[tuple[str, str], tuple[str, list[str]]]  # (driver, pool) -> (node, devices)

# slices -> the pools built, and the slices ignored
CASES: dict[str, tuple[list[dict[str, Any]], Built, set[str]]] = {
    "own pool named after its node": (
        [NODE_B],
        {(DRIVER, "node-b"): ("node-b", ["gpu-0", "gpu-1"])},
        set(),
    ),
    "impostor does not join another node's pool": (
        [NODE_B, slice_("a-x", "node-a", "node-b", "gpu-9")],
        {(DRIVER, "node-b"): ("node-b", ["gpu-0", "gpu-1"])},
        {"a-x"},
    ),
    "impostor listed first does not own the pool": (
        [slice_("a-x", "node-a", "node-b", "gpu-9"), NODE_B],
        {(DRIVER, "node-b"): ("node-b", ["gpu-0", "gpu-1"])},
        {"a-x"},
    ),
    "impostor's higher generation does not replace the pool": (
        [NODE_B, slice_("a-x", "node-a", "node-b", "gpu-0", generation=9)],
        {(DRIVER, "node-b"): ("node-b", ["gpu-0", "gpu-1"])},
        {"a-x"},
    ),
    "impostor with no victim is no pool": (
        [slice_("a-x", "node-a", "node-z", "gpu-0")],
        {},
        {"a-x"},
    ),
    "other drivers may name node-local pools freely": (
        [slice_("n-0", "node-a", "rack-1/nics", "nic-0", driver=OTHER)],
        {(OTHER, "rack-1/nics"): ("node-a", ["nic-0"])},
        set(),
    ),
    "one pool on two nodes is ambiguous for any driver": (
        [
            slice_("n-a", "node-a", "nics", "nic-0", driver=OTHER),
            slice_("n-b", "node-b", "nics", "nic-0", driver=OTHER, generation=2),
            NODE_B,
        ],
        {(DRIVER, "node-b"): ("node-b", ["gpu-0", "gpu-1"])},
        {"n-a", "n-b"},
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_pools_are_grouped_per_driver_pool_and_node(case: str) -> None:
    slices, want, ignored = CASES[case]
    built = build_pools(slices, own_driver=DRIVER)
    got = {
        (p.driver, p.name): (p.node_name, sorted(d.name for d in p.devices)) for p in built.pools
    }
    assert got == want
    assert {n for i in built.ignored for n in i.slices} == ignored
    for p in built.pools:
        assert all(d.node == p.node_name for d in p.devices)


def test_the_impostor_slice_is_named_with_node_and_pool() -> None:
    built = build_pools([NODE_B, slice_("a-x", "node-a", "node-b", "gpu-9")], own_driver=DRIVER)
    (why,) = built.ignored
    assert (why.driver, why.pool, why.slices) == (DRIVER, "node-b", ("a-x",))
    assert "node 'node-a' names pool 'node-b'" in why.reason
    assert "must be named after its node" in why.reason


def test_the_own_driver_is_the_one_named() -> None:
    """A renamed gpudra driver is pinned, and the default one is then just another driver."""
    impostor = slice_("a-x", "node-a", "node-b", "gpu-9")
    assert build_pools([impostor], own_driver="gpu.example.com").ignored == []
    assert build_pools([impostor], own_driver=DRIVER).pools == []


def view(*slices: dict[str, Any]) -> ClusterView:
    return ClusterView.from_objects(
        slices=list(slices),
        classes=[device_class()],
        nodes=[node("node-a"), node("node-b")],
    )


def test_an_impostor_pool_is_not_allocatable_as_the_other_node() -> None:
    v = view(NODE_B, slice_("a-x", "node-a", "node-b", "gpu-9", generation=2))
    assert sorted(v.devices) == [(DRIVER, "node-b", "gpu-0"), (DRIVER, "node-b", "gpu-1")]
    assert [d.name for d in v.devices_for("node-a")] == []
    assert [d.name for d in v.devices_for("node-b")] == ["gpu-0", "gpu-1"]

    c = [parse_claim(claim(exactly("g", 2)))]
    on_b = Allocator(v).allocate(c, ["node-b"])
    assert on_b.best is not None
    assert {c.device.key for c in on_b.best.solution.choices} == {
        (DRIVER, "node-b", "gpu-0"),
        (DRIVER, "node-b", "gpu-1"),
    }
    on_a = Allocator(v).allocate(c, ["node-a"])
    assert on_a.best is None
    text = explain(on_a, c)
    assert "ResourceSlices ignored" in text
    assert "ResourceSlice a-x of node 'node-a' names pool 'node-b'" in text
